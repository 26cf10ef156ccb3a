//! `airlock mcp`: serve airlock's sandbox tools to an MCP client over stdio, or over
//! Streamable HTTP with `--http`. The work is in `airlock-mcp`; this parses the user's
//! allow-list and starts it. Logs go to stderr only: stdout carries the protocol.

use airlock_mcp::{AirlockMcp, Allowed};
use anyhow::Context;
use clap::Args;
use std::path::PathBuf;

/// Arguments of `airlock mcp`.
#[derive(Debug, Args)]
pub struct McpArgs {
    /// A policy profile clients may choose: a shipped one by NAME, or NAME=FILE for a policy
    /// file of yours, read once now (repeatable; the first is the default). Clients choose among
    /// these by name and can never send a policy of their own. Default: `default`.
    #[arg(long = "allow-profile", value_name = "NAME[=FILE]")]
    allow_profile: Vec<String>,
    /// A host directory a client may share as a workspace, itself or anything beneath it
    /// (repeatable; the first is the default). Default: the current directory.
    #[arg(long = "allow-workspace", value_name = "DIR")]
    allow_workspace: Vec<PathBuf>,
    /// The daemon's unix socket (default: $AIRLOCK_SOCKET, /run/airlock/airlock.sock as root,
    /// else $XDG_RUNTIME_DIR/airlock.sock or /tmp/airlock-$UID/airlock.sock).
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// Serve MCP's Streamable HTTP transport at http://ADDR/mcp instead of stdio (a loopback
    /// address only, e.g. 127.0.0.1:8765; port 0 picks one). Needs --token-file.
    #[arg(long, value_name = "ADDR", requires = "token_file")]
    http: Option<std::net::SocketAddr>,
    /// With --http: the file holding the bearer token every request must carry (at least 16
    /// characters; mode 0600 or stricter).
    #[arg(long, value_name = "FILE", requires = "http")]
    token_file: Option<PathBuf>,
}

/// `airlock mcp`: serves until the client closes stdin.
pub fn main(args: McpArgs) -> anyhow::Result<u8> {
    let cwd = std::env::current_dir().context("reading the current directory")?;
    let allowed = Allowed::new(&args.allow_profile, &args.allow_workspace, &cwd)?;
    let socket = args
        .socket
        .unwrap_or_else(airlock_api::socket::default_socket);
    tracing::info!(socket = %socket.display(), profiles = ?allowed.profiles(), "airlock mcp");
    let server = AirlockMcp::new(airlock_api::client::Client::new(socket), allowed);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    match (args.http, args.token_file) {
        (Some(addr), Some(token_file)) => {
            let token = airlock_api::listen::read_token(&token_file)
                .map_err(airlock_mcp::ConfigError::Token)?;
            rt.block_on(async {
                let listener = airlock_mcp::HttpListener::bind(addr).await?;
                crate::ui::note!(
                    "airlock mcp: serving MCP over Streamable HTTP at http://{}{}",
                    listener.local_addr(),
                    airlock_mcp::http::ENDPOINT
                );
                listener.serve(server, &token).await
            })?;
        }
        _ => rt.block_on(airlock_mcp::serve_stdio(server))?,
    }
    rt.shutdown_background();
    Ok(0)
}
