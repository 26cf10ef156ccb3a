//! The daemon's listeners: its unix socket (owner-only, or shared with one group), an optional
//! TCP listener behind a bearer token, and serving the API on both until told to stop.

use crate::daemon::Daemon;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Shortest bearer token accepted.
const MIN_TOKEN_LEN: usize = 16;

/// Why a listener could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    /// Another daemon answers on the socket.
    #[error("a daemon is already listening on {} (stop it first, or pass --socket)", .0.display())]
    InUse(PathBuf),
    /// The token file is unusable.
    #[error("--token-file {}: {why}", path.display())]
    Token {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// The fallback socket directory is missing protection.
    #[error("refusing the socket directory")]
    SocketDir(#[source] crate::socket::SocketDirError),
    /// `--group` with the socket in the fallback directory, which must stay owner-only.
    #[error(
        "--group needs a socket outside {}, which stays owner-only; pass --socket with a path \
         in a directory of your own",
        .0.display()
    )]
    GroupInFallback(PathBuf),
    /// A file operation failed.
    #[error("{what} {}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> ListenError {
    let path = path.to_path_buf();
    move |source| ListenError::Io { what, path, source }
}

/// Reads the bearer token: non-empty, long enough, not readable by others.
pub fn read_token(path: &Path) -> Result<String, ListenError> {
    let meta = std::fs::metadata(path).map_err(io("reading the token file", path))?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(ListenError::Token {
            path: path.to_path_buf(),
            why: format!(
                "mode {:o} lets other users read the token; chmod 600 it",
                meta.permissions().mode() & 0o777
            ),
        });
    }
    let token = std::fs::read_to_string(path)
        .map_err(io("reading the token file", path))?
        .trim()
        .to_string();
    if token.len() < MIN_TOKEN_LEN || token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ListenError::Token {
            path: path.to_path_buf(),
            why: format!(
                "the token must be at least {MIN_TOKEN_LEN} characters without spaces (e.g. \
                 `head -c 32 /dev/urandom | base64 > FILE`)"
            ),
        });
    }
    Ok(token)
}

/// Binds the unix socket with mode 0600 (0660 and the group's ownership with `group`),
/// refusing to replace a socket another daemon serves.
pub fn bind_unix(
    socket: &Path,
    group: Option<&nix::unistd::Group>,
) -> Result<tokio::net::UnixListener, ListenError> {
    if let Some(dir) = socket.parent().filter(|d| !d.as_os_str().is_empty()) {
        if crate::socket::in_fallback_dir(socket) {
            if group.is_some() {
                return Err(ListenError::GroupInFallback(dir.to_path_buf()));
            }
            crate::socket::ensure_private_dir(dir).map_err(ListenError::SocketDir)?;
        } else if !dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(if group.is_some() { 0o750 } else { 0o700 })
                .create(dir)
                .map_err(io("creating", dir))?;
            if let Some(g) = group {
                nix::unistd::chown(dir, None, Some(g.gid))
                    .map_err(|e| io("giving the group", dir)(e.into()))?;
            }
        }
    }
    if socket.exists() {
        if std::os::unix::net::UnixStream::connect(socket).is_ok() {
            return Err(ListenError::InUse(socket.to_path_buf()));
        }
        std::fs::remove_file(socket).map_err(io("removing the stale socket", socket))?;
    }
    // Created owner-only, so no other user can connect before the mode is set.
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o177));
    let bound = std::os::unix::net::UnixListener::bind(socket);
    nix::sys::stat::umask(old);
    let listener = bound.map_err(io("binding", socket))?;
    if let Some(g) = group {
        nix::unistd::chown(socket, None, Some(g.gid))
            .map_err(|e| io("giving the group", socket)(e.into()))?;
    }
    let mode = if group.is_some() { 0o660 } else { 0o600 };
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(mode))
        .map_err(io("setting the mode of", socket))?;
    listener
        .set_nonblocking(true)
        .map_err(io("preparing", socket))?;
    tokio::net::UnixListener::from_std(listener).map_err(io("registering", socket))
}

/// Serves the API on `unix` and, with a token, on `tcp`, until `stop` turns true. Returns the
/// server tasks.
pub fn serve(
    daemon: Arc<Daemon>,
    unix: tokio::net::UnixListener,
    tcp: Option<(tokio::net::TcpListener, String)>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<std::io::Result<()>>> {
    let router = crate::router::router(daemon);
    let mut servers = Vec::new();
    if let Some((tcp, token)) = tcp {
        let app = crate::router::with_token(router.clone(), &token);
        let mut stop = stop.clone();
        servers.push(tokio::spawn(async move {
            axum::serve(tcp, app)
                .with_graceful_shutdown(async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await
        }));
    }
    let mut stop = stop;
    servers.push(tokio::spawn(async move {
        axum::serve(unix, router)
            .with_graceful_shutdown(async move {
                let _ = stop.wait_for(|s| *s).await;
            })
            .await
    }));
    servers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_socket_is_refused_in_the_owner_only_fallback_directory() {
        let socket = crate::socket::fallback_dir().join("airlock.sock");
        let group = nix::unistd::Group::from_gid(nix::unistd::getgid())
            .unwrap()
            .unwrap();
        let e = bind_unix(&socket, Some(&group)).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "--group needs a socket outside {}, which stays owner-only; pass --socket with a \
                 path in a directory of your own",
                crate::socket::fallback_dir().display()
            )
        );
    }

    #[test]
    fn tokens_must_be_private_and_long() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("token");
        std::fs::write(&f, "short\n").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(
            read_token(&f)
                .unwrap_err()
                .to_string()
                .contains("at least 16")
        );
        std::fs::write(&f, "0123456789abcdef0123\n").unwrap();
        assert_eq!(read_token(&f).unwrap(), "0123456789abcdef0123");
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(
            read_token(&f)
                .unwrap_err()
                .to_string()
                .contains("chmod 600")
        );
    }
}
