//! The E2B routes, and serving them on a TCP listener until the daemon stops.
//!
//! One listener answers both of the SDK's base URLs (`E2B_API_URL` and `E2B_SANDBOX_URL` name
//! the same address): the control plane (`/v2/sandboxes`, `/sandboxes/{id}`) needs the
//! `X-API-Key`; envd's routes (`/files`, `/process.Process/*`) are routed by `E2b-Sandbox-Id`
//! and need that sandbox's `X-Access-Token`.

use crate::error::E2bError;
use crate::state::E2b;
use crate::{api, files, process, signal};
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use std::sync::Arc;

/// Largest request body (the daemon's file limit, 64 MiB, plus multipart framing).
const MAX_BODY: usize = 65 * 1024 * 1024;

/// The E2B router over `e2b`.
pub fn router(e2b: Arc<E2b>) -> Router {
    Router::new()
        .route("/health", get(api::health))
        .route("/v2/sandboxes", post(api::create))
        .route("/sandboxes", post(api::create))
        .route("/sandboxes/{id}", delete(api::kill))
        .route("/files", get(files::read).post(files::write))
        .route("/process.Process/Start", post(process::start))
        .route("/process.Process/SendSignal", post(signal::send_signal))
        .route("/process.Process/{method}", post(process::unimplemented))
        .route(
            "/filesystem.Filesystem/{method}",
            post(process::unimplemented),
        )
        .fallback(no_route)
        .method_not_allowed_fallback(wrong_method)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(e2b)
}

/// Reads (and drops) the body first, so the connection stays usable for the next request.
async fn no_route(req: Request) -> Response {
    let what = format!("{} {}", req.method(), req.uri().path());
    let _ = axum::body::to_bytes(req.into_body(), MAX_BODY).await;
    E2bError::Unsupported(what).into_response()
}

/// Other methods on known paths are E2B operations airlock lacks (`GET /sandboxes/{id}` is
/// `get_info`), so they are 501 as well.
async fn wrong_method(req: Request) -> Response {
    no_route(req).await
}

/// Serves `e2b` on `tcp` until `stop` turns true.
pub fn serve(
    e2b: Arc<E2b>,
    tcp: tokio::net::TcpListener,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<std::io::Result<()>> {
    let app = router(e2b);
    tokio::spawn(async move {
        axum::serve(tcp, app)
            .with_graceful_shutdown(async move {
                let _ = stop.wait_for(|s| *s).await;
            })
            .await
    })
}
