//! `airlock mcp --http ADDR`: the same server over MCP's Streamable HTTP transport, at `/mcp`,
//! for clients that connect rather than spawn. Every request needs the bearer token (the
//! daemon's `with_token` check, compared in constant time), and the address must be loopback:
//! whoever reaches this endpoint creates sandboxes as the user. rmcp's own `Host` check (loopback
//! names only) guards against DNS rebinding from a browser.

use crate::error::ConfigError;
use crate::server::AirlockMcp;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use std::net::SocketAddr;
use std::sync::Arc;

/// The path the MCP endpoint is served at.
pub const ENDPOINT: &str = "/mcp";

/// A bound Streamable HTTP listener, not yet serving.
#[derive(Debug)]
pub struct HttpListener {
    listener: tokio::net::TcpListener,
    addr: SocketAddr,
}

impl HttpListener {
    /// Binds `addr`, which must be a loopback address.
    pub async fn bind(addr: SocketAddr) -> Result<HttpListener, ConfigError> {
        if !addr.ip().is_loopback() {
            return Err(ConfigError::NotLoopback(addr));
        }
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| ConfigError::Bind { addr, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| ConfigError::Bind { addr, source })?;
        Ok(HttpListener { listener, addr })
    }

    /// The address bound (with the port chosen, for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves `server` to clients presenting `token`, until the process ends. All HTTP
    /// sessions share one [`crate::calls::Session`]: the token is one principal, and requests
    /// of the stateless protocol version get a fresh service each.
    pub async fn serve(self, server: AirlockMcp, token: &str) -> Result<(), ConfigError> {
        let config = StreamableHttpServerConfig::default();
        let service = StreamableHttpService::new(
            move || Ok(server.clone()),
            Arc::new(LocalSessionManager::default()),
            config,
        );
        let router = axum::Router::new().nest_service(ENDPOINT, service);
        let router = airlock_api::router::with_token(router, token);
        axum::serve(self.listener, router)
            .await
            .map_err(ConfigError::Serve)
    }
}
