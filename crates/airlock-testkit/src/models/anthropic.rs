//! The Anthropic Messages API, as far as Claude Code needs it.

use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::atomic::Ordering;

use serde_json::{Value, json};

use super::{ModelRequest, ModelServer, Reply, Shared, Task, default_addr, halves, sse_event};

/// Claude Code's shell tool: its presence in `tools` marks the agent's main conversation.
pub const CLAUDE_SHELL_TOOL: &str = "Bash";

/// A fake Anthropic API (`ANTHROPIC_BASE_URL` = [`ModelServer::url`]) playing a [`Task`] for
/// Claude Code.
///
/// - `POST /v1/messages` (any query, e.g. `?beta=true`): on the main conversation (its `tools`
///   offer `Bash`) a `Bash` `tool_use` running the task's command until a `tool_result` is in
///   the conversation, then the task's final text with `end_turn`; on any other conversation
///   (titles, quota checks) a short text. SSE when `"stream": true`, else one JSON message.
/// - `POST /v1/messages/count_tokens`: a rough count.
/// - `HEAD`/`GET` `/` and `/api/hello` (Claude Code's connectivity probe): 200.
/// - Anything else: 404 with an Anthropic-style JSON error.
pub struct FakeAnthropic {
    server: ModelServer,
}

impl FakeAnthropic {
    /// Serves `task` on 127.0.0.1 on an ephemeral port.
    pub fn start(task: Task) -> FakeAnthropic {
        FakeAnthropic::start_on(default_addr(), task).expect("binding the fake Anthropic API")
    }

    /// Serves `task` on `addr` (port 0 for an ephemeral one).
    pub fn start_on(addr: SocketAddr, task: Task) -> std::io::Result<FakeAnthropic> {
        Ok(FakeAnthropic {
            server: ModelServer::start(addr, task, route, None)?,
        })
    }
}

impl FakeAnthropic {
    /// Serves `task` over HTTPS on 127.0.0.1, with a certificate from `ca`.
    pub fn start_tls(task: Task, ca: &crate::tls::TestCa) -> FakeAnthropic {
        FakeAnthropic {
            server: ModelServer::start(default_addr(), task, route, Some(ca.server_config()))
                .expect("binding the fake Anthropic API"),
        }
    }
}

impl Deref for FakeAnthropic {
    type Target = ModelServer;

    fn deref(&self) -> &ModelServer {
        &self.server
    }
}

fn route(req: &ModelRequest, shared: &Shared) -> Reply {
    match (req.method.as_str(), req.route()) {
        ("HEAD" | "GET", "/" | "/api/hello") => Reply::json(200, &json!({})),
        ("POST", "/v1/messages") => messages(req, shared),
        ("POST", "/v1/messages/count_tokens") => match req.json() {
            Some(_) => Reply::json(200, &json!({ "input_tokens": rough_tokens(&req.body) })),
            None => error(400, "invalid_request_error", "the body is not JSON"),
        },
        (method, path) => error(
            404,
            "not_found_error",
            &format!("the fake Anthropic API has no {method} {path}"),
        ),
    }
}

/// An Anthropic-style error reply.
fn error(status: u16, kind: &str, message: &str) -> Reply {
    Reply::json(
        status,
        &json!({ "type": "error", "error": { "type": kind, "message": message } }),
    )
}

/// About four bytes per token, which is all any client does with it.
fn rough_tokens(body: &[u8]) -> usize {
    body.len() / 4 + 1
}

fn messages(req: &ModelRequest, shared: &Shared) -> Reply {
    let Some(body) = req.json() else {
        return error(400, "invalid_request_error", "the body is not JSON");
    };
    let Some(messages) = body.get("messages").and_then(Value::as_array) else {
        return error(400, "invalid_request_error", "messages: field required");
    };
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("claude-fake");
    let stream = body.get("stream").and_then(Value::as_bool) == Some(true);
    let task = &shared.task;
    let (content, stop) = if !offers_tool(&body, CLAUDE_SHELL_TOOL) {
        (json!({ "type": "text", "text": "OK" }), "end_turn")
    } else if has_tool_result(messages) {
        shared.finals.fetch_add(1, Ordering::SeqCst);
        (
            json!({ "type": "text", "text": task.final_text }),
            "end_turn",
        )
    } else {
        shared.tool_calls.fetch_add(1, Ordering::SeqCst);
        let input = json!({ "command": task.command, "description": task.description });
        let id = shared.id("toolu");
        (
            json!({ "type": "tool_use", "id": id, "name": CLAUDE_SHELL_TOOL, "input": input }),
            "tool_use",
        )
    };
    let id = shared.id("msg");
    let usage = json!({
        "input_tokens": rough_tokens(&req.body),
        "output_tokens": 12,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
    });
    if !stream {
        return Reply::json(
            200,
            &json!({
                "id": id, "type": "message", "role": "assistant", "model": model,
                "content": [content], "stop_reason": stop, "stop_sequence": null, "usage": usage,
            }),
        );
    }
    Reply::sse(stream_message(&id, model, &content, stop, &usage))
}

/// The SSE events of a one-block message, the block's text or input split over two deltas so
/// the client has to put it together as with the real API.
fn stream_message(id: &str, model: &str, block: &Value, stop: &str, usage: &Value) -> String {
    let mut out = String::new();
    sse_event(
        &mut out,
        "message_start",
        &json!({
            "type": "message_start",
            "message": {
                "id": id, "type": "message", "role": "assistant", "model": model, "content": [],
                "stop_reason": null, "stop_sequence": null, "usage": usage,
            },
        }),
    );
    sse_event(&mut out, "ping", &json!({ "type": "ping" }));
    let (start, full, delta_kind, field) = if block["type"] == "tool_use" {
        let mut start = block.clone();
        start["input"] = json!({});
        (
            start,
            block["input"].to_string(),
            "input_json_delta",
            "partial_json",
        )
    } else {
        let text = block["text"].as_str().unwrap_or_default().to_string();
        (
            json!({ "type": "text", "text": "" }),
            text,
            "text_delta",
            "text",
        )
    };
    sse_event(
        &mut out,
        "content_block_start",
        &json!({ "type": "content_block_start", "index": 0, "content_block": start }),
    );
    for part in halves(&full) {
        sse_event(
            &mut out,
            "content_block_delta",
            &json!({
                "type": "content_block_delta", "index": 0,
                "delta": { "type": delta_kind, field: part },
            }),
        );
    }
    sse_event(
        &mut out,
        "content_block_stop",
        &json!({ "type": "content_block_stop", "index": 0 }),
    );
    sse_event(
        &mut out,
        "message_delta",
        &json!({
            "type": "message_delta",
            "delta": { "stop_reason": stop, "stop_sequence": null },
            "usage": { "output_tokens": usage["output_tokens"] },
        }),
    );
    sse_event(&mut out, "message_stop", &json!({ "type": "message_stop" }));
    out
}

/// Whether the request's `tools` offer one named `name`.
fn offers_tool(body: &Value, name: &str) -> bool {
    body.get("tools")
        .and_then(Value::as_array)
        .is_some_and(|tools| tools.iter().any(|t| t["name"] == name))
}

/// Whether any message carries a `tool_result` block, i.e. the tool call was answered.
fn has_tool_result(messages: &[Value]) -> bool {
    messages.iter().any(|m| {
        m["content"]
            .as_array()
            .is_some_and(|blocks| blocks.iter().any(|b| b["type"] == "tool_result"))
    })
}
