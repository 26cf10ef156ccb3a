//! Where the daemon's unix socket lives.

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
