//! The web UI's files, compiled into the binary: it needs nothing but the
//! scheduler (no CDN, no network), and a scheduler upgrade upgrades it.

use axum::Router;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// No script, style or connection beyond the scheduler itself, and no
/// framing by another site.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; img-src 'self' data:; \
     script-src 'self'; style-src 'self'; connect-src 'self'; frame-ancestors 'none'; \
     base-uri 'none'; form-action 'self'";

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// The UI's routes, under `/ui/`.
pub(super) fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route(
            "/ui/",
            get(|| async { asset("text/html; charset=utf-8", include_str!("ui/index.html")) }),
        )
        .route(
            "/ui/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", include_str!("ui/app.js")) }),
        )
        .route(
            "/ui/style.css",
            get(|| async { asset("text/css; charset=utf-8", include_str!("ui/style.css")) }),
        )
        .route(
            "/ui",
            get(|| async { axum::response::Redirect::to("/ui/") }),
        )
}
