//! The routes of the API, and the bearer-token check the TCP listener adds in front of them.

use crate::daemon::Daemon;
use crate::error;
use crate::server::*;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{get, post};
use std::sync::Arc;

/// Largest JSON request body.
const MAX_JSON_BODY: usize = 96 * 1024 * 1024;

/// The API router over `daemon`.
pub fn router(daemon: Arc<Daemon>) -> Router {
    Router::new()
        .route("/openapi.json", get(openapi_json))
        .route("/v1/sandboxes", post(create_sandbox).get(list_sandboxes))
        .route("/v1/pool", get(get_pool))
        .route(
            "/v1/sandboxes/{id}",
            get(get_sandbox).delete(delete_sandbox),
        )
        .route("/v1/sandboxes/{id}/stop", post(stop_sandbox))
        .route("/v1/sandboxes/{id}/exec", post(exec_command))
        .route("/v1/sandboxes/{id}/execs/{exec_id}/stdin", post(exec_stdin))
        .route(
            "/v1/sandboxes/{id}/execs/{exec_id}/signal",
            post(exec_signal),
        )
        .route(
            "/v1/sandboxes/{id}/execs/{exec_id}/resize",
            post(exec_resize),
        )
        .route("/v1/sandboxes/{id}/events", get(sandbox_events))
        .route("/v1/sandboxes/{id}/stats", get(sandbox_stats))
        .route("/v1/sandboxes/{id}/files", get(read_file).put(write_file))
        .route("/v1/sandboxes/{id}/files/stat", get(stat_file))
        .route("/v1/sandboxes/{id}/files/list", get(list_files))
        .route("/v1/sandboxes/{id}/changes", get(sandbox_changes))
        .fallback(no_route)
        .method_not_allowed_fallback(wrong_method)
        .layer(DefaultBodyLimit::max(MAX_JSON_BODY))
        .layer(axum::Extension(Arc::new(OpenApiJson(
            crate::openapi::document(),
        ))))
        .with_state(daemon)
}

/// The router behind a bearer-token check (for the TCP listener).
pub fn with_token(router: Router, token: &str) -> Router {
    let digest = Arc::new(digest(token.as_bytes()));
    router.layer(axum::middleware::from_fn(
        move |req: Request, next: Next| {
            let digest = digest.clone();
            async move {
                let given = req
                    .headers()
                    .get(header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("Bearer "))
                    .map(|t| digest_matches(&digest, t.trim().as_bytes()));
                match given {
                    Some(true) => next.run(req).await,
                    _ => {
                        let mut r = error::response(
                            StatusCode::UNAUTHORIZED,
                            "unauthorized",
                            "this listener requires the header Authorization: Bearer <token>",
                        );
                        r.headers_mut()
                            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                        r
                    }
                }
            }
        },
    ))
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).into()
}

/// Compares digests in constant time (hashing first hides the token's length too).
fn digest_matches(expected: &[u8; 32], given: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    expected.ct_eq(&digest(given)).into()
}

async fn no_route(req: Request) -> Response {
    error::response(
        StatusCode::NOT_FOUND,
        "not_found",
        format!(
            "no route {} {}; see GET /openapi.json",
            req.method(),
            req.uri().path()
        ),
    )
}

async fn wrong_method(req: Request) -> Response {
    error::response(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!(
            "{} is not allowed on {}; see GET /openapi.json",
            req.method(),
            req.uri().path()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_by_digest() {
        let d = digest(b"s3cret-token");
        assert!(digest_matches(&d, b"s3cret-token"));
        assert!(!digest_matches(&d, b"s3cret-tokem"));
        assert!(!digest_matches(&d, b""));
    }
}
