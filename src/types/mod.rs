//! Isomorphic types: compiled into the server and the WASM bundle alike.
//!
//! - [`values`]: parsed domain values (parse, don't validate);
//! - [`views`]: what the UI shows;
//! - [`error`]: the error type server functions return to the UI;
//! - [`ai`]: AI gateway usage and budgets as the pages show them;
//! - [`urls`]: URLs from outside, parsed (GitHub links) and gated (`href`s).

pub mod admin;
pub mod ai;
pub mod billing;
pub mod error;
pub mod portal;
pub mod urls;
pub mod values;
pub mod views;

pub use error::AppError;
