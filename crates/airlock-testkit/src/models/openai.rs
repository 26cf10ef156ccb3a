//! The OpenAI Responses API, as far as Codex CLI needs it.

use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::atomic::Ordering;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use super::{ModelRequest, ModelServer, Reply, Shared, Task, default_addr, halves, sse_event};

/// The model name [`FakeOpenAi::codex_args`] selects; Codex shapes its request (tools, prompt)
/// by it, and this one gets the `exec_command` tool.
pub const CODEX_MODEL: &str = "gpt-5.1-codex";

/// A fake OpenAI Responses API playing a [`Task`] for Codex CLI; its API base is
/// `{url}/v1` (see [`FakeOpenAi::codex_args`]).
///
/// - `POST /v1/responses` (or `/responses`): on the main conversation (its `tools` offer a
///   shell tool: `exec_command`, `shell_command` or `shell`) one `function_call` of that tool
///   running the task's command until a `function_call_output` is in the input, then an
///   assistant message with the task's final text; any other conversation gets a short
///   message. SSE when `"stream": true`, else one JSON response object.
/// - `GET /v1/responses` (a WebSocket upgrade attempt): 426, so Codex falls back to HTTP.
/// - Anything else: 404 with an OpenAI-style JSON error.
pub struct FakeOpenAi {
    server: ModelServer,
}

impl FakeOpenAi {
    /// Serves `task` on 127.0.0.1 on an ephemeral port.
    pub fn start(task: Task) -> FakeOpenAi {
        FakeOpenAi::start_on(default_addr(), task).expect("binding the fake OpenAI API")
    }

    /// Serves `task` on `addr` (port 0 for an ephemeral one).
    pub fn start_on(addr: SocketAddr, task: Task) -> std::io::Result<FakeOpenAi> {
        Ok(FakeOpenAi {
            server: ModelServer::start(addr, task, route, None)?,
        })
    }

    /// `codex` options that make it use the fake API at `url` (as the CLI reaches it, e.g.
    /// [`ModelServer::url`] natively) as a provider `fake` over the Responses API, model
    /// [`CODEX_MODEL`], with the key from `$OPENAI_API_KEY` (sent as `Authorization: Bearer`).
    pub fn codex_args(url: &str) -> Vec<String> {
        let provider = format!(
            r#"model_providers.fake={{name="fake",base_url="{}/v1",{}}}"#,
            url.trim_end_matches('/'),
            r#"env_key="OPENAI_API_KEY",wire_api="responses""#,
        );
        [
            "-c",
            &format!("model={CODEX_MODEL}"),
            "-c",
            "model_provider=fake",
            "-c",
            &provider,
        ]
        .map(String::from)
        .to_vec()
    }
}

impl Deref for FakeOpenAi {
    type Target = ModelServer;

    fn deref(&self) -> &ModelServer {
        &self.server
    }
}

fn route(req: &ModelRequest, shared: &Shared) -> Reply {
    match (req.method.as_str(), req.route()) {
        ("POST", "/v1/responses" | "/responses") => responses(req, shared),
        // Codex tries a WebSocket on the responses URL when the provider allows it; an HTTP
        // error there makes it use plain HTTP.
        ("GET", "/v1/responses" | "/responses") => error(
            426,
            "invalid_request_error",
            "the fake OpenAI API does not speak WebSocket; use HTTP POST",
        ),
        (method, path) => error(
            404,
            "invalid_request_error",
            &format!("the fake OpenAI API has no {method} {path}"),
        ),
    }
}

/// An OpenAI-style error reply.
fn error(status: u16, kind: &str, message: &str) -> Reply {
    Reply::json(
        status,
        &json!({ "error": { "message": message, "type": kind, "param": null, "code": null } }),
    )
}

/// The shell tools Codex offers depending on model and features, with how each takes a command.
fn shell_call(tool: &str, command: &str) -> Option<Value> {
    match tool {
        // Unified exec: one command line, run by the user's shell.
        "exec_command" => Some(json!({ "cmd": command })),
        "shell_command" => Some(json!({ "command": command })),
        // The classic tool takes an argv.
        "shell" => Some(json!({ "command": ["bash", "-lc", command] })),
        _ => None,
    }
}

fn responses(req: &ModelRequest, shared: &Shared) -> Reply {
    let Some(body) = req.json() else {
        return error(400, "invalid_request_error", "the body is not JSON");
    };
    let Some(input) = body.get("input").and_then(Value::as_array) else {
        return error(
            400,
            "invalid_request_error",
            "input: expected an array of items",
        );
    };
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or(CODEX_MODEL);
    let stream = body.get("stream").and_then(Value::as_bool) == Some(true);
    let task = &shared.task;
    let shell = body
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|t| t["type"] == "function")
        .find_map(|t| {
            let name = t["name"].as_str()?;
            Some((name.to_string(), shell_call(name, &task.command)?))
        });
    let answered = input
        .iter()
        .any(|item| item["type"] == "function_call_output");
    let item = match shell {
        Some((name, arguments)) if !answered => {
            shared.tool_calls.fetch_add(1, Ordering::SeqCst);
            json!({
                "type": "function_call", "id": shared.id("fc"), "call_id": shared.id("call"),
                "name": name, "arguments": arguments.to_string(), "status": "completed",
            })
        }
        Some(_) => {
            shared.finals.fetch_add(1, Ordering::SeqCst);
            message(&shared.id("msg"), &task.final_text)
        }
        None => message(&shared.id("msg"), "OK"),
    };
    let created_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let input_tokens = req.body.len() / 4 + 1;
    let response = json!({
        "id": shared.id("resp"), "object": "response", "created_at": created_at,
        "status": "completed", "model": model, "output": [item],
        "usage": {
            "input_tokens": input_tokens,
            "input_tokens_details": { "cached_tokens": 0 },
            "output_tokens": 12,
            "output_tokens_details": { "reasoning_tokens": 0 },
            "total_tokens": input_tokens + 12,
        },
    });
    if !stream {
        return Reply::json(200, &response);
    }
    Reply::sse(stream_response(&response, &item))
}

/// An assistant message item.
fn message(id: &str, text: &str) -> Value {
    json!({
        "type": "message", "id": id, "role": "assistant", "status": "completed",
        "content": [{ "type": "output_text", "text": text, "annotations": [] }],
    })
}

/// The SSE events of a response with the one output `item`, its arguments or text split over
/// two deltas as the real API streams them.
fn stream_response(response: &Value, item: &Value) -> String {
    let mut events = Vec::new();
    let mut pending = response.clone();
    pending["status"] = json!("in_progress");
    pending["output"] = json!([]);
    pending["usage"] = Value::Null;
    events.push(json!({ "type": "response.created", "response": pending }));
    events.push(json!({ "type": "response.in_progress", "response": pending }));
    let item_id = &item["id"];
    let mut added = item.clone();
    added["status"] = json!("in_progress");
    if item["type"] == "function_call" {
        let arguments = item["arguments"].as_str().unwrap_or_default();
        added["arguments"] = json!("");
        events.push(
            json!({ "type": "response.output_item.added", "output_index": 0, "item": added }),
        );
        for delta in halves(arguments) {
            events.push(json!({
                "type": "response.function_call_arguments.delta",
                "item_id": item_id, "output_index": 0, "delta": delta,
            }));
        }
        events.push(json!({
            "type": "response.function_call_arguments.done",
            "item_id": item_id, "output_index": 0, "arguments": arguments,
        }));
    } else {
        let part = &item["content"][0];
        let text = part["text"].as_str().unwrap_or_default();
        added["content"] = json!([]);
        events.push(
            json!({ "type": "response.output_item.added", "output_index": 0, "item": added }),
        );
        let at = |kind: &str| {
            json!({
                "type": kind, "item_id": item_id, "output_index": 0, "content_index": 0,
            })
        };
        let mut part_added = at("response.content_part.added");
        part_added["part"] = json!({ "type": "output_text", "text": "", "annotations": [] });
        events.push(part_added);
        for delta in halves(text) {
            let mut e = at("response.output_text.delta");
            e["delta"] = json!(delta);
            events.push(e);
        }
        let mut done = at("response.output_text.done");
        done["text"] = json!(text);
        events.push(done);
        let mut part_done = at("response.content_part.done");
        part_done["part"] = part.clone();
        events.push(part_done);
    }
    events.push(json!({ "type": "response.output_item.done", "output_index": 0, "item": item }));
    events.push(json!({ "type": "response.completed", "response": response }));
    let mut out = String::new();
    for (n, mut event) in events.into_iter().enumerate() {
        event["sequence_number"] = json!(n);
        let name = event["type"].as_str().unwrap_or_default().to_string();
        sse_event(&mut out, &name, &event);
    }
    out
}
