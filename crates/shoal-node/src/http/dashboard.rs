//! The web dashboard: a page and its scripts, embedded in the binary so a
//! node serves them with no internet and no build step (the libraries are
//! vendored by `dashboard/vendor.sh` from an npm lockfile).
//!
//! The assets hold no data and are served without the API token; the page
//! asks for the token when the API refuses it, and sends it with every
//! request it makes (live updates included: it reads server-sent events
//! through `fetch`, which can send a header, not `EventSource`).

use super::error::HttpError;
use axum::Router;
use axum::extract::Path;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use shoal_proto::ErrorCode;

/// Each asset: the name it is served under `/ui/`, its type, its bytes.
const ASSETS: &[(&str, &str, &[u8])] = &[
    ("app.js", JS, include_bytes!("dashboard/app.js")),
    ("style.css", CSS, include_bytes!("dashboard/style.css")),
    (
        "htm-preact.js",
        JS,
        include_bytes!("dashboard/vendor/htm-preact.js"),
    ),
    ("uPlot.js", JS, include_bytes!("dashboard/vendor/uPlot.js")),
    (
        "uPlot.css",
        CSS,
        include_bytes!("dashboard/vendor/uPlot.css"),
    ),
];
const INDEX: &str = include_str!("dashboard/index.html");
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// `/` and `/ui/{asset}`.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", axum::routing::get(index))
        .route("/ui/{asset}", axum::routing::get(asset))
}

async fn index() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        INDEX,
    )
        .into_response()
}

async fn asset(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|(asset, _, _)| *asset == name) {
        Some((_, content_type, bytes)) => (
            [
                (header::CONTENT_TYPE, *content_type),
                // The page names assets without versions: revalidate.
                (header::CACHE_CONTROL, "no-cache"),
            ],
            *bytes,
        )
            .into_response(),
        None => HttpError::new(ErrorCode::NotFound, "no such dashboard asset").into_response(),
    }
}
