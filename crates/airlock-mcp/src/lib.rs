//! `airlock mcp`: an MCP server that gives a model airlock sandboxes as tools.
//!
//! A client (Claude Code, any MCP host) starts `airlock mcp` and speaks MCP over its stdin and
//! stdout ([`server::serve_stdio`], built on rmcp, the official Rust SDK), or connects to it over
//! Streamable HTTP on a loopback address with a bearer token ([`http`]). Each tool call is
//! checked here (arguments against their schema in `args`, profile and workspace against the
//! user's allow-list in `allow`, the sandbox id against the ones this session created in
//! `calls`) and then carried out by the airlock daemon over its unix socket, with the same
//! client the CLI uses. The sandboxes are the daemon's: booted, enforced and audited exactly
//! as `airlock create` would. Failures, policy denials included, come back as `isError` tool
//! results (`error`). `tools` is the catalogue a model reads; `exec` and `audit` hold the two
//! tools that need more than one request's worth of logic.

pub mod allow;
pub mod args;
pub mod audit;
pub mod calls;
pub mod error;
pub mod exec;
pub mod http;
pub mod server;
pub mod tools;

pub use allow::Allowed;
pub use error::{ConfigError, ToolError};
pub use http::HttpListener;
pub use server::{AirlockMcp, serve_stdio};
