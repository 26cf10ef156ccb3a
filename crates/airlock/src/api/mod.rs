//! The daemon's REST API: JSON over HTTP/1.1 on a unix socket (and optionally TCP with a bearer
//! token), its wire types, its OpenAPI document, and the client the CLI uses.
//!
//! `server` maps routes to the [`crate::daemon::Daemon`]; every error is a JSON
//! [`types::ErrorBody`] with the status that fits. `openapi` derives the OpenAPI 3.1 document from
//! the handlers' annotations and the wire types; `docs/api/openapi.json` is a copy a test keeps
//! equal.

pub mod client;
pub mod error;
pub mod openapi;
pub mod server;
pub mod types;

use std::path::PathBuf;

/// The socket the daemon listens on and the CLI connects to: `$AIRLOCK_SOCKET`, else
/// `/run/airlock/airlock.sock` for root, else `$XDG_RUNTIME_DIR/airlock.sock`, else
/// `/tmp/airlock-<uid>/airlock.sock`.
pub fn default_socket() -> PathBuf {
    if let Some(p) = std::env::var_os("AIRLOCK_SOCKET") {
        return PathBuf::from(p);
    }
    if nix::unistd::geteuid().is_root() {
        return PathBuf::from("/run/airlock/airlock.sock");
    }
    if let Some(d) = std::env::var_os("XDG_RUNTIME_DIR") {
        return PathBuf::from(d).join("airlock.sock");
    }
    PathBuf::from(format!(
        "/tmp/airlock-{}/airlock.sock",
        nix::unistd::getuid()
    ))
}
