//! rsolv-platform: billing, provisioning and the customer portal behind the
//! RSOLV GitHub Action.
//!
//! One crate, two builds: `ssr` (the server binary; everything under
//! [`server`]) and `hydrate` (the WASM bundle that hydrates [`app`]).

pub mod app;
pub mod types;

#[cfg(feature = "ssr")]
pub mod server;

/// WASM entry point: hydrates the server-rendered page.
#[cfg(feature = "hydrate")]
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    leptos::mount::hydrate_body(app::App);
}
