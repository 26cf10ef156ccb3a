use std::io::{Read, Write};
use std::net::TcpStream;

use serde_json::{Value, json};

use super::*;

/// A reply as a plain HTTP client sees it.
struct Got {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Got {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }

    /// The server-sent events as `(event name, data)`.
    fn events(&self) -> Vec<(String, Value)> {
        assert_eq!(self.header("content-type"), Some("text/event-stream"));
        let text = String::from_utf8(self.body.clone()).unwrap();
        text.split("\n\n")
            .filter(|e| !e.is_empty())
            .map(|e| {
                let mut name = String::new();
                let mut data = String::new();
                for line in e.lines() {
                    if let Some(v) = line.strip_prefix("event: ") {
                        name = v.to_string();
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data.push_str(v);
                    }
                }
                let data: Value = serde_json::from_str(&data).unwrap();
                // Every event names itself in its data too, as the real APIs do.
                assert_eq!(data["type"], name.as_str(), "{e}");
                (name, data)
            })
            .collect()
    }
}

/// Sends raw request bytes and reads the whole reply (the server closes the connection).
fn send_raw(server: &ModelServer, raw: &[u8]) -> Got {
    let mut conn = TcpStream::connect(("127.0.0.1", server.port())).unwrap();
    conn.write_all(raw).unwrap();
    let mut all = Vec::new();
    conn.read_to_end(&mut all).unwrap();
    let end = all.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let head = String::from_utf8(all[..end].to_vec()).unwrap();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    let body = all[end..].to_vec();
    let got = Got {
        status,
        headers,
        body,
    };
    // A reply to HEAD announces the length of a body it does not carry.
    if let Some(len) = got
        .header("content-length")
        .filter(|_| !raw.starts_with(b"HEAD "))
    {
        assert_eq!(len.parse::<usize>().unwrap(), got.body.len());
    }
    got
}

/// `METHOD PATH` with `headers` and a JSON `body` (if any).
fn request(
    server: &ModelServer,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&Value>,
) -> Got {
    let body = body.map(Value::to_string).unwrap_or_default();
    let mut raw = format!("{method} {path} HTTP/1.1\r\nHost: fake\r\n");
    for (n, v) in headers {
        raw.push_str(&format!("{n}: {v}\r\n"));
    }
    raw.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    send_raw(server, raw.as_bytes())
}

fn names(events: &[(String, Value)]) -> Vec<&str> {
    events.iter().map(|(n, _)| n.as_str()).collect()
}

/// The concatenated `delta.FIELD` of Anthropic `content_block_delta` events.
fn anthropic_deltas(events: &[(String, Value)], field: &str) -> String {
    events
        .iter()
        .filter(|(n, _)| n == "content_block_delta")
        .map(|(_, d)| d["delta"][field].as_str().unwrap().to_string())
        .collect()
}

fn claude_tools() -> Value {
    json!([
        { "name": "Bash", "description": "Run a command", "input_schema": { "type": "object" } },
        { "name": "Read", "description": "Read a file", "input_schema": { "type": "object" } },
    ])
}

#[test]
fn anthropic_streams_a_bash_call_then_the_final_answer() {
    let task = Task::default();
    let server = FakeAnthropic::start(task.clone());
    let first = json!({
        "model": "claude-test", "max_tokens": 1000, "stream": true, "tools": claude_tools(),
        "messages": [{ "role": "user", "content": "create hello.txt" }],
    });
    let got = request(
        &server,
        "POST",
        "/v1/messages?beta=true",
        &[("x-api-key", "k-1"), ("anthropic-version", "2023-06-01")],
        Some(&first),
    );
    assert_eq!(got.status, 200);
    let events = got.events();
    assert_eq!(
        names(&events),
        [
            "message_start",
            "ping",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    assert_eq!(events[0].1["message"]["model"], "claude-test");
    let block = &events[2].1["content_block"];
    assert_eq!(block["type"], "tool_use");
    assert_eq!(block["name"], "Bash");
    let tool_id = block["id"].as_str().unwrap().to_string();
    let input: Value = serde_json::from_str(&anthropic_deltas(&events, "partial_json")).unwrap();
    assert_eq!(
        input,
        json!({ "command": task.command, "description": task.description })
    );
    assert_eq!(events[6].1["delta"]["stop_reason"], "tool_use");
    assert_eq!(server.tool_calls_served(), 1);
    assert!(!server.finished());

    let second = json!({
        "model": "claude-test", "max_tokens": 1000, "stream": true, "tools": claude_tools(),
        "messages": [
            { "role": "user", "content": "create hello.txt" },
            { "role": "assistant", "content": [
                { "type": "tool_use", "id": tool_id, "name": "Bash", "input": input },
            ]},
            { "role": "user", "content": [
                { "type": "tool_result", "tool_use_id": tool_id, "content": "" },
            ]},
        ],
    });
    let got = request(
        &server,
        "POST",
        "/v1/messages?beta=true",
        &[("x-api-key", "k-1")],
        Some(&second),
    );
    let events = got.events();
    assert_eq!(events[2].1["content_block"]["type"], "text");
    assert_eq!(anthropic_deltas(&events, "text"), task.final_text);
    assert_eq!(events[6].1["delta"]["stop_reason"], "end_turn");
    assert_eq!(server.tool_calls_served(), 1);
    assert!(server.finished());

    let seen = server.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].method, "POST");
    assert_eq!(seen[0].path, "/v1/messages?beta=true");
    assert_eq!(seen[0].route(), "/v1/messages");
    assert_eq!(seen[0].header("X-Api-Key"), Some("k-1"));
    assert_eq!(seen[0].api_key(), Some("k-1"));
    assert_eq!(seen[0].header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(seen[0].json(), Some(first));
    assert_eq!(seen[1].json(), Some(second));
}

#[test]
fn anthropic_answers_side_requests_and_probes() {
    let server = FakeAnthropic::start(Task::default());
    // A side conversation (no Bash tool), not streamed: one short JSON message.
    let quota = json!({
        "model": "claude-test", "max_tokens": 1,
        "messages": [{ "role": "user", "content": "quota" }],
    });
    let got = request(&server, "POST", "/v1/messages", &[], Some(&quota));
    assert_eq!(got.status, 200);
    let msg = got.json();
    assert_eq!(msg["type"], "message");
    assert_eq!(msg["content"], json!([{ "type": "text", "text": "OK" }]));
    assert_eq!(msg["stop_reason"], "end_turn");
    assert_eq!(server.tool_calls_served(), 0);

    // The main conversation, not streamed: the tool call as one JSON message.
    let main = json!({
        "model": "claude-test", "max_tokens": 100, "tools": claude_tools(),
        "messages": [{ "role": "user", "content": "go" }],
    });
    let msg = request(&server, "POST", "/v1/messages", &[], Some(&main)).json();
    assert_eq!(msg["content"][0]["type"], "tool_use");
    assert_eq!(msg["content"][0]["input"]["command"], server.task().command);
    assert_eq!(msg["stop_reason"], "tool_use");
    assert_eq!(server.tool_calls_served(), 1);

    let got = request(
        &server,
        "POST",
        "/v1/messages/count_tokens",
        &[],
        Some(&main),
    );
    assert_eq!(got.status, 200);
    assert!(got.json()["input_tokens"].as_u64().unwrap() > 0);

    let got = request(&server, "HEAD", "/api/hello", &[], None);
    assert_eq!(got.status, 200);
    assert!(got.body.is_empty());

    let got = request(&server, "GET", "/v1/models/nope", &[], None);
    assert_eq!(got.status, 404);
    assert_eq!(got.json()["type"], "error");
    assert_eq!(got.json()["error"]["type"], "not_found_error");
    assert_eq!(server.seen().len(), 5);
}

#[test]
fn malformed_requests_get_400() {
    let server = FakeAnthropic::start(Task::default());
    let got = send_raw(
        &server,
        b"POST /v1/messages HTTP/1.1\r\nContent-Length: 8\r\n\r\nnot json",
    );
    assert_eq!(got.status, 400);
    assert_eq!(got.json()["error"]["type"], "invalid_request_error");
    let got = send_raw(
        &server,
        b"POST /v1/messages HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}",
    );
    assert_eq!(got.status, 400, "no messages");
    let got = send_raw(&server, b"\r\n\r\n");
    assert_eq!(got.status, 400, "no request line");
    let got = send_raw(
        &server,
        b"POST /v1/messages HTTP/1.1\r\nContent-Length: lots\r\n\r\n",
    );
    assert_eq!(got.status, 400, "bad content-length");
    let got = send_raw(
        &server,
        b"POST /v1/messages HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    );
    assert_eq!(got.status, 400, "bad chunk size");
    let got = send_raw(
        &server,
        b"POST /v1/messages HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\n",
    );
    assert_eq!(got.status, 400, "huge chunk");
    let got = send_raw(
        &server,
        b"POST /v1/messages HTTP/1.1\r\nContent-Encoding: zstd\r\nContent-Length: 0\r\n\r\n",
    );
    assert_eq!(got.status, 415);
    // The server is still serving.
    let got = request(&server, "HEAD", "/", &[], None);
    assert_eq!(got.status, 200);
}

#[test]
fn chunked_bodies_are_read() {
    let server = FakeAnthropic::start(Task::default());
    let body = json!({
        "model": "m", "max_tokens": 1, "messages": [{ "role": "user", "content": "hi" }],
    })
    .to_string();
    let (a, b) = body.split_at(10);
    let raw = format!(
        "POST /v1/messages HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n\
         {:x}\r\n{a}\r\n{:x};ext=1\r\n{b}\r\n0\r\nX-Trailer: 1\r\n\r\n",
        a.len(),
        b.len()
    );
    let got = send_raw(&server, raw.as_bytes());
    assert_eq!(got.status, 200);
    assert_eq!(server.seen()[0].body, body.as_bytes());
}

fn codex_request(tools: Value, input: Value) -> Value {
    json!({
        "model": "gpt-test", "stream": true, "tools": tools, "input": input,
        "tool_choice": "auto", "parallel_tool_calls": true,
    })
}

fn exec_command_tool() -> Value {
    json!([
        { "type": "function", "name": "exec_command", "parameters": { "type": "object" } },
        { "type": "function", "name": "view_image", "parameters": { "type": "object" } },
        { "type": "web_search" },
    ])
}

fn user_says(text: &str) -> Value {
    json!({
        "type": "message", "role": "user",
        "content": [{ "type": "input_text", "text": text }],
    })
}

#[test]
fn openai_streams_a_function_call_then_the_final_message() {
    let task = Task::write_file("out.txt", "x");
    let server = FakeOpenAi::start(task.clone());
    let first = codex_request(exec_command_tool(), json!([user_says("create out.txt")]));
    let got = request(
        &server,
        "POST",
        "/v1/responses",
        &[("authorization", "Bearer sk-1")],
        Some(&first),
    );
    assert_eq!(got.status, 200);
    let events = got.events();
    assert_eq!(
        names(&events),
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.done",
            "response.output_item.done",
            "response.completed"
        ]
    );
    for (n, (_, e)) in events.iter().enumerate() {
        assert_eq!(e["sequence_number"], n);
    }
    let item = &events[6].1["item"];
    assert_eq!(item["type"], "function_call");
    assert_eq!(item["name"], "exec_command");
    let deltas: String = events[3..5]
        .iter()
        .map(|(_, e)| e["delta"].as_str().unwrap())
        .collect();
    assert_eq!(deltas, item["arguments"].as_str().unwrap());
    let arguments: Value = serde_json::from_str(item["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(arguments, json!({ "cmd": task.command }));
    let completed = &events[7].1["response"];
    assert_eq!(completed["status"], "completed");
    assert_eq!(completed["output"], json!([item]));
    assert_eq!(completed["model"], "gpt-test");
    assert!(completed["usage"]["total_tokens"].as_u64().unwrap() > 0);
    assert_eq!(events[0].1["response"]["id"], completed["id"]);
    assert_eq!(server.tool_calls_served(), 1);
    assert!(!server.finished());

    let second = codex_request(
        exec_command_tool(),
        json!([
            user_says("create out.txt"),
            item,
            { "type": "function_call_output", "call_id": item["call_id"], "output": "exit 0" },
        ]),
    );
    let got = request(
        &server,
        "POST",
        "/v1/responses",
        &[("authorization", "Bearer sk-1")],
        Some(&second),
    );
    let events = got.events();
    let deltas: String = events
        .iter()
        .filter(|(n, _)| n == "response.output_text.delta")
        .map(|(_, e)| e["delta"].as_str().unwrap())
        .collect();
    assert_eq!(deltas, task.final_text);
    let done = &events
        .iter()
        .find(|(n, _)| n == "response.output_item.done")
        .unwrap()
        .1["item"];
    assert_eq!(done["type"], "message");
    assert_eq!(done["role"], "assistant");
    assert_eq!(done["content"][0]["text"], task.final_text);
    assert_eq!(events.last().unwrap().0, "response.completed");
    assert_eq!(server.tool_calls_served(), 1);
    assert!(server.finished());

    let seen = server.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].header("authorization"), Some("Bearer sk-1"));
    assert_eq!(seen[0].api_key(), Some("sk-1"));
    assert_eq!(seen[1].json(), Some(second));
}

#[test]
fn openai_uses_whichever_shell_tool_is_offered() {
    let server = FakeOpenAi::start(Task::default());
    let command = server.task().command.clone();
    let call = |tool: &str| {
        let mut body = codex_request(
            json!([{ "type": "function", "name": tool, "parameters": {} }]),
            json!([user_says("go")]),
        );
        body["stream"] = json!(false);
        let got = request(&server, "POST", "/responses", &[], Some(&body));
        assert_eq!(got.status, 200);
        let item = got.json()["output"][0].clone();
        (item["type"].clone(), item["arguments"].clone())
    };
    let args = |v: Value| -> Value { serde_json::from_str(v.as_str().unwrap()).unwrap() };
    let (kind, a) = call("shell");
    assert_eq!(kind, "function_call");
    assert_eq!(args(a), json!({ "command": ["bash", "-lc", command] }));
    let (_, a) = call("shell_command");
    assert_eq!(args(a), json!({ "command": command }));
    assert_eq!(server.tool_calls_served(), 2);
    // No shell tool: a side request, answered with a short message.
    let (kind, _) = call("view_image");
    assert_eq!(kind, "message");
    assert_eq!(server.tool_calls_served(), 2);
    assert!(!server.finished());
}

#[test]
fn openai_refuses_websockets_and_unknown_paths() {
    let server = FakeOpenAi::start(Task::default());
    let got = request(
        &server,
        "GET",
        "/v1/responses",
        &[
            ("Connection", "Upgrade"),
            ("Upgrade", "websocket"),
            ("Sec-WebSocket-Version", "13"),
        ],
        None,
    );
    assert_eq!(got.status, 426);
    assert!(got.json()["error"]["message"].is_string());
    let got = request(&server, "GET", "/v1/models", &[], None);
    assert_eq!(got.status, 404);
    assert!(got.json()["error"]["message"].is_string());
    let got = request(&server, "POST", "/v1/responses", &[], Some(&json!({})));
    assert_eq!(got.status, 400, "no input");
    assert_eq!(server.seen().len(), 3);
}

#[test]
fn codex_args_name_the_provider() {
    let args = FakeOpenAi::codex_args("http://10.0.0.1:99/");
    assert_eq!(
        args,
        [
            "-c",
            "model=gpt-5.1-codex",
            "-c",
            "model_provider=fake",
            "-c",
            concat!(
                r#"model_providers.fake={name="fake",base_url="http://10.0.0.1:99/v1","#,
                r#"env_key="OPENAI_API_KEY",wire_api="responses"}"#
            ),
        ]
    );
}

#[test]
fn task_commands_write_the_exact_content() {
    let dir = tempfile::tempdir().unwrap();
    for content in ["hello\n", "it's \"quoted\" $HOME `x` \\n %s %%\n\nend", ""] {
        let task = Task::write_file("a b.txt", content);
        let status = std::process::Command::new("sh")
            .args(["-c", &task.command])
            .current_dir(dir.path())
            .status()
            .unwrap();
        assert!(status.success());
        assert_eq!(
            std::fs::read_to_string(dir.path().join("a b.txt")).unwrap(),
            content
        );
    }
}

#[test]
fn listens_where_asked() {
    let any: SocketAddr = "0.0.0.0:0".parse().unwrap();
    let server = FakeAnthropic::start_on(any, Task::default()).unwrap();
    assert_eq!(server.url(), format!("http://127.0.0.1:{}", server.port()));
    assert_eq!(request(&server, "GET", "/", &[], None).status, 200);
    let server = FakeOpenAi::start(Task::default());
    assert_eq!(server.url(), format!("http://127.0.0.1:{}", server.port()));
}
