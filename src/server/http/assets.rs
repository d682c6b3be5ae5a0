//! The built assets under `/pkg/` (the hydrate bundle's WASM and JS glue,
//! the stylesheet): how long browsers may keep them.
//!
//! `cargo leptos build` writes them with content-hashed names
//! (`hash-files = true` in `Cargo.toml`) and a `hash.txt` beside the server
//! binary; `cargo leptos build --release --precompress` also writes `.br`
//! and `.gz` copies, which leptos_axum's file handler serves to browsers
//! that accept them. A hashed name changes with its content, so those
//! answers may be cached for a year without revalidation; without hashing
//! (a binary started away from its `hash.txt`), browsers must revalidate.

use axum::extract::{Request, State};
use axum::http::header::CACHE_CONTROL;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use leptos::config::LeptosOptions;
use std::sync::Arc;

/// `Cache-Control` of a content-hashed asset (RFC 8246 `immutable`: one
/// year, never revalidated).
pub const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// `Cache-Control` of an asset whose name does not change with its content.
pub const REVALIDATE: &str = "no-cache";

/// Whether `cargo leptos build` left a `hash.txt` (options' `hash_file`)
/// beside the running binary, i.e. whether the bundle's names are
/// content-hashed. `serve` turns `LeptosOptions::hash_files` on when it is
/// there, so the pages link the hashed names.
pub fn hashed_build_present(options: &LeptosOptions) -> bool {
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.join(options.hash_file.as_ref())))
        .is_some_and(|path| path.is_file())
}

/// What [`cache_assets`] needs: the assets' path prefix (`/pkg/`) and
/// whether their names are content-hashed.
#[derive(Clone, Debug)]
pub struct AssetCaching {
    prefix: Arc<str>,
    hashed: bool,
}

impl AssetCaching {
    /// From the Leptos options in force (`site_pkg_dir`, `hash_files`).
    pub fn new(options: &LeptosOptions) -> Self {
        Self {
            prefix: format!("/{}/", options.site_pkg_dir.trim_matches('/')).into(),
            hashed: options.hash_files,
        }
    }
}

/// Middleware: a successful answer under `/pkg/` gets `Cache-Control`
/// [`IMMUTABLE`] when the names are hashed, [`REVALIDATE`] otherwise.
/// Other answers are left as they are.
pub async fn cache_assets(
    State(caching): State<AssetCaching>,
    request: Request,
    next: Next,
) -> Response {
    let asset = request.uri().path().starts_with(&*caching.prefix);
    let mut response = next.run(request).await;
    if asset && response.status().is_success() {
        let value = if caching.hashed {
            IMMUTABLE
        } else {
            REVALIDATE
        };
        response
            .headers_mut()
            .insert(CACHE_CONTROL, HeaderValue::from_static(value));
    }
    response
}
