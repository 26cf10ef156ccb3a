//! The CLI's client for the daemon: HTTP/1.1 over the unix socket, one connection per request.
//! Error replies come back as [`ClientError::Api`] with the daemon's code and message; a socket
//! nobody listens on is [`ClientError::NoDaemon`], which the CLI turns into "start one with
//! `airlock daemon &`".

use crate::types::ErrorBody;
use axum::body::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::path::{Path, PathBuf};

/// Why a call to the daemon failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing listens on the socket.
    #[error(
        "no airlock daemon is listening on {} ({source}); start one with `airlock daemon &`",
        socket.display()
    )]
    NoDaemon {
        /// The socket tried.
        socket: PathBuf,
        /// Why connecting failed.
        #[source]
        source: std::io::Error,
    },
    /// The socket is in the fallback directory, which is not this user's alone.
    #[error("not connecting to a daemon through {}", socket.display())]
    UnsafeSocketDir {
        /// The socket.
        socket: PathBuf,
        /// What is wrong with its directory.
        #[source]
        source: crate::socket::SocketDirError,
    },
    /// The daemon answered with an error.
    #[error("{}", body.detail)]
    Api {
        /// HTTP status.
        status: StatusCode,
        /// The daemon's error body.
        body: ErrorBody,
    },
    /// The exchange itself failed.
    #[error("talking to the daemon: {0}")]
    Transport(String),
}

/// A client for the daemon at one socket.
#[derive(Debug, Clone)]
pub struct Client {
    socket: PathBuf,
}

impl Client {
    /// A client for `socket`.
    pub fn new(socket: impl Into<PathBuf>) -> Client {
        Client {
            socket: socket.into(),
        }
    }

    /// The socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Sends one request; returns the response whatever its status.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<(&'static str, Vec<u8>)>,
    ) -> Result<Response<Incoming>, ClientError> {
        crate::socket::check_before_connect(&self.socket).map_err(|source| {
            ClientError::UnsafeSocketDir {
                socket: self.socket.clone(),
                source,
            }
        })?;
        let stream = tokio::net::UnixStream::connect(&self.socket)
            .await
            .map_err(|source| ClientError::NoDaemon {
                socket: self.socket.clone(),
                source,
            })?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, "airlock");
        let bytes = match body {
            Some((content_type, bytes)) => {
                req = req.header(hyper::header::CONTENT_TYPE, content_type);
                bytes
            }
            None => Vec::new(),
        };
        let req = req
            .body(Full::new(Bytes::from(bytes)))
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        sender
            .send_request(req)
            .await
            .map_err(|e| ClientError::Transport(e.to_string()))
    }

    /// Sends a request and turns an error status into [`ClientError::Api`].
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<(&'static str, Vec<u8>)>,
    ) -> Result<Response<Incoming>, ClientError> {
        let resp = self.send(method, path, body).await?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let bytes = collect(resp).await?;
        let body = serde_json::from_slice(&bytes).unwrap_or_else(|_| ErrorBody {
            error: "unknown".into(),
            detail: format!(
                "{status}: {}",
                airlock_audit::display_safe(&String::from_utf8_lossy(&bytes))
            ),
        });
        Err(ClientError::Api { status, body })
    }

    /// A JSON request and a JSON reply.
    pub async fn json<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> Result<T, ClientError> {
        let body = body
            .map(|b| serde_json::to_vec(b).map(|v| ("application/json", v)))
            .transpose()
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        let resp = self.call(method, path, body).await?;
        let bytes = collect(resp).await?;
        serde_json::from_slice(&bytes)
            .map_err(|e| ClientError::Transport(format!("unexpected reply: {e}")))
    }
}

/// The whole body of a response.
pub async fn collect(resp: Response<Incoming>) -> Result<Bytes, ClientError> {
    resp.into_body()
        .collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(|e| ClientError::Transport(e.to_string()))
}

/// Reads an NDJSON body line by line.
pub struct Lines {
    body: Incoming,
    buf: Vec<u8>,
    done: bool,
}

impl Lines {
    /// Lines of `resp`'s body.
    pub fn new(resp: Response<Incoming>) -> Lines {
        Lines {
            body: resp.into_body(),
            buf: Vec::new(),
            done: false,
        }
    }

    /// The next complete line (without its `\n`), or `None` at the end.
    pub async fn next(&mut self) -> Result<Option<Vec<u8>>, ClientError> {
        loop {
            if let Some(i) = self.buf.iter().position(|b| *b == b'\n') {
                let mut line: Vec<u8> = self.buf.drain(..=i).collect();
                line.pop();
                return Ok(Some(line));
            }
            if self.done {
                return Ok((!self.buf.is_empty()).then(|| std::mem::take(&mut self.buf)));
            }
            match self.body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.buf.extend_from_slice(&data);
                    }
                }
                Some(Err(e)) => return Err(ClientError::Transport(e.to_string())),
                None => self.done = true,
            }
        }
    }
}

/// Percent-encodes a query value.
pub fn encode_query(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_encoded() {
        assert_eq!(encode_query("/a b/c&d=é"), "/a%20b/c%26d%3D%C3%A9");
    }
}
