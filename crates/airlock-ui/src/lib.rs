//! `airlock ui`: a local review page of what sandboxes did.
//!
//! One process serves, on a loopback address only, a page that lists the sandboxes whose audit
//! logs are in the audit dir, shows one sandbox's timeline (filtered and paged on the server,
//! new records streamed live while it runs), the result of verifying its log, what it changed
//! in its overlay shares with Apply and Discard, and charts of its run.
//!
//! - [`auth`]: the per-start token, the Host and Origin checks, the security headers.
//! - [`index`]: an incremental index of one log (offsets and filter fields; sums for charts).
//! - [`catalog`]: the logs of the audit dir, their indexes and verification results.
//! - [`api`]: the JSON endpoints; [`stream`]: the live timeline (server-sent events);
//!   [`rows`]: the filter parameters and record rows both share.
//! - [`assets`]: the page itself (HTML, CSS, JS as files, no build step, no inline script).
// Logs are guest-influenced: no indexing or narrowing cast that could panic or wrap on them.
#![warn(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::indexing_slicing
)]

pub mod api;
pub mod assets;
pub mod auth;
pub mod catalog;
pub mod error;
pub mod index;
pub mod rows;
pub mod stream;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

pub use error::UiError;

/// What `airlock ui` serves and where.
#[derive(Debug, Clone)]
pub struct UiOptions {
    /// Where to listen; must be a loopback address.
    pub listen: SocketAddr,
    /// The audit dir whose logs are listed.
    pub audit_dir: PathBuf,
    /// The key checkpoints must be signed with (this host's audit key); `None` checks only
    /// that one key signed everything, and the page says the signer is not trusted.
    pub trusted_key: Option<airlock_audit::PublicKey>,
}

/// Why the page could not be served.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The address is not loopback: the page must not be reachable from another host.
    #[error("{0} is not a loopback address: the review page listens on 127.0.0.1 or ::1 only")]
    NotLoopback(SocketAddr),
    /// Binding failed.
    #[error("listening on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// No randomness for the token.
    #[error("making the access token: {0}")]
    Token(String),
    /// Serving failed.
    #[error("serving")]
    Serve(#[source] std::io::Error),
}

/// A bound review page, not yet serving.
#[derive(Debug)]
pub struct Ui {
    listener: tokio::net::TcpListener,
    addr: SocketAddr,
    token: String,
    catalog: Arc<catalog::Catalog>,
}

impl Ui {
    /// Binds `options.listen` and makes a fresh token.
    pub async fn bind(options: UiOptions) -> Result<Ui, ServeError> {
        if !options.listen.ip().is_loopback() {
            return Err(ServeError::NotLoopback(options.listen));
        }
        let listener = tokio::net::TcpListener::bind(options.listen)
            .await
            .map_err(|source| ServeError::Bind {
                addr: options.listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| ServeError::Bind {
            addr: options.listen,
            source,
        })?;
        let token = auth::new_token().map_err(ServeError::Token)?;
        Ok(Ui {
            listener,
            addr,
            token,
            catalog: Arc::new(catalog::Catalog::new(
                options.audit_dir,
                options.trusted_key,
            )),
        })
    }

    /// The address served.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The URL to open: it carries the token.
    pub fn url(&self) -> String {
        format!("http://{}/?token={}", self.addr, self.token)
    }

    /// Serves until `shutdown` completes.
    pub async fn serve(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        let guard = Arc::new(auth::Guard::new(self.token, self.addr.port()));
        let app = api::router(self.catalog, guard);
        axum::serve(self.listener, app)
            .with_graceful_shutdown(shutdown)
            .await
            .map_err(ServeError::Serve)
    }
}
