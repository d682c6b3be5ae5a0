//! The error type shared by server functions and the UI.

use serde::{Deserialize, Serialize};
use server_fn_codec::FromServerFnError;

// `server_fn` is re-exported by leptos; alias it so the paths read plainly.
mod server_fn_codec {
    pub use leptos::server_fn::codec::JsonEncoding;
    pub use leptos::server_fn::error::{FromServerFnError, ServerFnErrorErr};
}

/// What went wrong, as the UI may show it. The message is always safe to
/// display: internal causes are logged on the server and replaced by
/// [`AppError::Internal`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "kind", content = "message", rename_all = "snake_case")]
pub enum AppError {
    /// The input was rejected; the message says which field and why.
    #[error("{0}")]
    Validation(String),
    /// The request conflicts with existing data (e.g. email already registered).
    #[error("{0}")]
    Conflict(String),
    /// Not signed in (or the session expired): sign in again.
    #[error("please sign in")]
    Unauthorized,
    /// Signed in, but not allowed to do this.
    #[error("you are not allowed to do this")]
    Forbidden,
    /// Too many attempts; the message says when to try again.
    #[error("{0}")]
    RateLimited(String),
    /// The thing asked for does not exist (or is not the caller's).
    #[error("not found")]
    NotFound,
    /// The server could not do it right now; trying again later may work.
    #[error("something went wrong on our side; please try again")]
    Internal,
    /// Transport or framework failure (network down, bad response).
    #[error("{0}")]
    Transport(String),
}

impl FromServerFnError for AppError {
    type Encoder = server_fn_codec::JsonEncoding;

    fn from_server_fn_error(value: server_fn_codec::ServerFnErrorErr) -> Self {
        use server_fn_codec::ServerFnErrorErr as E;
        match value {
            E::Args(msg) | E::MissingArg(msg) => AppError::Validation(msg),
            other => AppError::Transport(other.to_string()),
        }
    }
}
