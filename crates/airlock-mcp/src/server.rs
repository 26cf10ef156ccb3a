//! The MCP side: [`AirlockMcp`] answers `initialize`, `tools/list` and `tools/call` through
//! rmcp, the official Rust SDK, and [`serve_stdio`] runs it over the process's stdin and
//! stdout. Every tool failure is a result marked `isError` (see `error.rs`); only a call to a
//! tool that does not exist is a protocol error, as the MCP specification says.

use crate::allow::Allowed;
use crate::calls::Session;
use crate::error::{ConfigError, ToolError};
use crate::tools;
use airlock_api::client::Client;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    InitializeResult, ListToolsResult, PaginatedRequestParams, ServerCapabilities,
};
use rmcp::service::{RequestContext, RoleServer};
use rmcp::{ErrorData, ServerHandler, ServiceExt};
use serde_json::{Value, json};
use std::sync::Arc;

/// The MCP server: a catalogue of tools over one [`Session`] with the daemon.
#[derive(Debug, Clone)]
pub struct AirlockMcp {
    session: Arc<Session>,
}

impl AirlockMcp {
    /// A server talking to the daemon at `client`'s socket, letting clients choose only
    /// among `allowed`.
    pub fn new(client: Client, allowed: Allowed) -> AirlockMcp {
        AirlockMcp {
            session: Arc::new(Session::new(client, allowed)),
        }
    }

    /// Runs one tool and shapes its outcome as a tool result; `None` for an unknown tool.
    pub async fn run_tool(
        &self,
        name: &str,
        args: Option<serde_json::Map<String, Value>>,
    ) -> Option<CallToolResult> {
        let outcome = self.session.call(name, args).await?;
        Some(match outcome {
            Ok(value) => success(value),
            Err(e) => failure(name, &e),
        })
    }
}

/// A result whose text is the pretty JSON a model reads, and whose structured content is the
/// same value for programs.
fn success(value: Value) -> CallToolResult {
    let text = serde_json::to_string_pretty(&value).unwrap_or_else(|_| value.to_string());
    let mut result = CallToolResult::success(vec![ContentBlock::text(text)]);
    result.structured_content = Some(value);
    result
}

/// An `isError` result: the error chain as text, and `{error, detail}` as structured content.
fn failure(tool: &str, e: &ToolError) -> CallToolResult {
    let detail = e.chain();
    tracing::debug!(tool, code = e.code(), %detail, "tool failed");
    let mut result = CallToolResult::error(vec![ContentBlock::text(format!(
        "error ({}): {detail}",
        e.code()
    ))]);
    result.structured_content = Some(json!({ "error": e.code(), "detail": detail }));
    result
}

impl ServerHandler for AirlockMcp {
    fn get_info(&self) -> InitializeResult {
        let mut server = Implementation::new("airlock", env!("CARGO_PKG_VERSION"));
        server.title = Some("airlock sandboxes".into());
        InitializeResult::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(server)
            .with_instructions(tools::INSTRUCTIONS)
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(tools::catalogue(
            self.session.allowed(),
        )))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        match self.run_tool(&request.name, request.arguments).await {
            Some(result) => Ok(result.into()),
            None => Err(ErrorData::invalid_params(
                format!(
                    "unknown tool {:?}; tools: {}",
                    request.name,
                    tools::NAMES.join(", ")
                ),
                None,
            )),
        }
    }
}

/// Serves `server` over stdin and stdout until the client closes its end, then destroys the
/// sandboxes the session left (their audit logs and overlay copies stay).
pub async fn serve_stdio(server: AirlockMcp) -> Result<(), ConfigError> {
    let session = server.session.clone();
    let served = serve(server).await;
    for (id, e) in session.destroy_all().await {
        tracing::warn!(%id, error = %e.chain(), "could not destroy a sandbox of the session");
    }
    served
}

async fn serve(server: AirlockMcp) -> Result<(), ConfigError> {
    let running = server
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|e| ConfigError::Serve(std::io::Error::other(e.to_string())))?;
    running
        .waiting()
        .await
        .map_err(|e| ConfigError::Serve(std::io::Error::other(e.to_string())))?;
    Ok(())
}
