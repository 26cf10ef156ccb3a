//! The page: one HTML file, one script, one style sheet, compiled into the binary. The script
//! builds every element from data with `textContent` and attributes, never from HTML strings,
//! so nothing a guest wrote (file names, URLs, argv, output) can become markup or script.

use crate::error::UiError;
use axum::extract::Path;
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};

const INDEX: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const APP_CSS: &str = include_str!("assets/app.css");

/// `GET /`.
pub async fn index() -> Html<&'static str> {
    Html(INDEX)
}

/// `GET /assets/{name}`.
pub async fn asset(Path(name): Path<String>) -> Result<Response, UiError> {
    let (body, kind) = match name.as_str() {
        "app.js" => (APP_JS, "text/javascript; charset=utf-8"),
        "app.css" => (APP_CSS, "text/css; charset=utf-8"),
        _ => return Err(UiError::NotFound(format!("no asset {name:?}"))),
    };
    Ok(([(header::CONTENT_TYPE, kind)], body).into_response())
}
