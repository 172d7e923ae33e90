//! The UI's stylesheet, script and icon, compiled into the binary and served
//! under a path that names their content's hash, so that a browser may keep
//! them for a year and still never runs an old script against a new page.

use std::sync::OnceLock;

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

/// Name, content type and bytes of every asset.
const FILES: [(&str, &str, &[u8]); 3] = [
    ("app.css", "text/css; charset=utf-8", include_bytes!("assets/app.css")),
    ("app.js", "text/javascript; charset=utf-8", include_bytes!("assets/app.js")),
    ("icon.svg", "image/svg+xml", include_bytes!("assets/icon.svg")),
];

/// The first 12 hex digits of the hash of all assets.
fn version() -> &'static str {
    static VERSION: OnceLock<String> = OnceLock::new();
    VERSION.get_or_init(|| {
        let mut h = Sha256::new();
        for (name, _, bytes) in FILES {
            h.update(name.as_bytes());
            h.update(bytes);
        }
        hex::encode(&h.finalize()[..6])
    })
}

/// Where the page finds asset `file`.
pub fn url(file: &str) -> String {
    format!("/assets/{}/{file}", version())
}

/// `GET /assets/{version}/{file}`: public, cached for a year when the
/// version is the current one (a stale version gets today's file, uncached).
pub async fn serve(Path((v, file)): Path<(String, String)>) -> Response {
    let Some((_, kind, bytes)) = FILES.iter().find(|(name, _, _)| *name == file) else {
        return (StatusCode::NOT_FOUND, "no such asset").into_response();
    };
    let cache = if v == version() { "public, max-age=31536000, immutable" } else { "no-cache" };
    let mut resp = (*bytes).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    resp
}
