//! Fake model APIs, so tests can run the real agent CLIs (Claude Code, Codex) with no real model
//! behind them.
//!
//! Each server plays one scripted [`Task`]: on the agent's main conversation it first asks for
//! one shell tool call that writes a file, and once the tool's result comes back it answers with
//! a final text and ends the turn. Side requests the CLIs make on their own (titles, quota
//! checks, token counts, probes) get short, harmless answers, so the CLI carries on. Every
//! request is recorded with its headers and body, so tests can check e.g. which API key arrived.
//!
//! [`FakeAnthropic`] speaks the Anthropic Messages API (Claude Code), [`FakeOpenAi`] the OpenAI
//! Responses API (Codex CLI). Like [`crate::upstream::Upstream`] they are small threaded
//! HTTP/1.1 servers that answer each request and close the connection.

mod anthropic;
mod openai;

pub use anthropic::{CLAUDE_SHELL_TOOL, FakeAnthropic};
pub use openai::{CODEX_MODEL, FakeOpenAi};

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde_json::Value;

/// What the fake model asks the agent to do: run one shell command that writes `file` with
/// `content`, then finish with `final_text`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    /// File the command writes, relative to the agent's working directory.
    pub file: String,
    /// Exact content the command writes.
    pub content: String,
    /// The shell command the tool call carries.
    pub command: String,
    /// What the tool call says it does (Claude Code's `Bash` tool wants a description).
    pub description: String,
    /// The final answer after the tool result came back.
    pub final_text: String,
}

impl Task {
    /// Writes `content` to `file` with `printf '%s' 'CONTENT' > 'FILE'` (both shell-quoted, so
    /// any content, newlines and quotes included, arrives byte for byte).
    pub fn write_file(file: &str, content: &str) -> Task {
        Task {
            file: file.to_string(),
            content: content.to_string(),
            command: format!(
                "printf '%s' {} > {}",
                shell_quote(content),
                shell_quote(file)
            ),
            description: format!("Write {file}"),
            final_text: format!("Done: I created {file}."),
        }
    }

    /// The same task with another shell command (e.g. one expected to fail in the sandbox).
    pub fn with_command(mut self, command: impl Into<String>) -> Task {
        self.command = command.into();
        self
    }

    /// The same task with another final answer.
    pub fn with_final_text(mut self, text: impl Into<String>) -> Task {
        self.final_text = text.into();
        self
    }
}

impl Default for Task {
    /// `hello.txt` with `hello from airlock\n`.
    fn default() -> Task {
        Task::write_file("hello.txt", "hello from airlock\n")
    }
}

/// `s` in single quotes for a POSIX shell.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// One request as a fake model server saw it, body included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelRequest {
    /// Method, e.g. `POST`.
    pub method: String,
    /// Request target as sent, query included (e.g. `/v1/messages?beta=true`).
    pub path: String,
    /// Header lines as `(name, value)`, names as sent.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked if it was sent chunked.
    pub body: Vec<u8>,
}

impl ModelRequest {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The path without the query string.
    pub fn route(&self) -> &str {
        self.path.split('?').next().unwrap_or_default()
    }

    /// The API key the client sent: `x-api-key`, else the token of `authorization: Bearer`.
    pub fn api_key(&self) -> Option<&str> {
        self.header("x-api-key").or_else(|| {
            let auth = self.header("authorization")?;
            let (scheme, token) = auth.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        })
    }

    /// The body parsed as JSON, if it is JSON.
    pub fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// A running fake model server; it serves until the test process ends. [`FakeAnthropic`] and
/// [`FakeOpenAi`] dereference to it.
pub struct ModelServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    tls: bool,
}

impl ModelServer {
    /// Its port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `http://IP:PORT` (`https` when it serves TLS), with 127.0.0.1 when it listens on all
    /// addresses.
    pub fn url(&self) -> String {
        let ip = match self.addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", SocketAddr::new(ip, self.addr.port()))
    }

    /// The task it plays.
    pub fn task(&self) -> &Task {
        &self.shared.task
    }

    /// The requests served so far, in arrival order.
    pub fn seen(&self) -> Vec<ModelRequest> {
        lock(&self.shared.seen).clone()
    }

    /// How many replies asking for the shell tool call were sent (a retrying client makes this
    /// more than one).
    pub fn tool_calls_served(&self) -> usize {
        self.shared.tool_calls.load(Ordering::SeqCst)
    }

    /// Whether the final answer was sent, which happens only after the tool result came back.
    pub fn finished(&self) -> bool {
        self.shared.finals.load(Ordering::SeqCst) > 0
    }

    /// Binds `addr` and serves each connection on its own thread with `api`.
    fn start(
        addr: SocketAddr,
        task: Task,
        api: fn(&ModelRequest, &Shared) -> Reply,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> std::io::Result<ModelServer> {
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            task,
            seen: Mutex::default(),
            tool_calls: AtomicUsize::new(0),
            finals: AtomicUsize::new(0),
            ids: AtomicU64::new(1),
        });
        let serving = shared.clone();
        let is_tls = tls.is_some();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                // A client that stalls must not pin the thread forever.
                let _ = conn.set_read_timeout(Some(Duration::from_secs(60)));
                let shared = serving.clone();
                let tls = tls.clone();
                std::thread::spawn(move || match tls {
                    None => serve(conn, &shared, api),
                    Some(config) => {
                        let Ok(session) = rustls::ServerConnection::new(config) else {
                            return;
                        };
                        serve(rustls::StreamOwned::new(session, conn), &shared, api);
                    }
                });
            }
        });
        Ok(ModelServer {
            addr,
            shared,
            tls: is_tls,
        })
    }
}

/// The default listen address: loopback on an ephemeral port, as [`crate::upstream::Upstream`].
fn default_addr() -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0)
}

/// State the connection threads share.
struct Shared {
    task: Task,
    seen: Mutex<Vec<ModelRequest>>,
    tool_calls: AtomicUsize,
    finals: AtomicUsize,
    /// Source of unique ids for messages, responses and tool calls.
    ids: AtomicU64,
}

impl Shared {
    /// A fresh id with `prefix`, e.g. `toolu_fake_3`.
    fn id(&self, prefix: &str) -> String {
        format!("{prefix}_fake_{}", self.ids.fetch_add(1, Ordering::SeqCst))
    }
}

/// Locks `m`, ignoring poisoning: a panicking test thread must not take the server down.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// An HTTP reply.
struct Reply {
    status: u16,
    content_type: &'static str,
    body: Vec<u8>,
}

impl Reply {
    fn json(status: u16, body: &Value) -> Reply {
        Reply {
            status,
            content_type: "application/json",
            body: body.to_string().into_bytes(),
        }
    }

    fn sse(body: String) -> Reply {
        Reply {
            status: 200,
            content_type: "text/event-stream",
            body: body.into_bytes(),
        }
    }

    fn empty(status: u16) -> Reply {
        Reply {
            status,
            content_type: "text/plain",
            body: Vec::new(),
        }
    }
}

/// The reason phrase for the statuses these servers send.
fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        413 => "Payload Too Large",
        415 => "Unsupported Media Type",
        426 => "Upgrade Required",
        _ => "Error",
    }
}

/// Appends one server-sent event to `out`.
fn sse_event(out: &mut String, name: &str, data: &Value) {
    out.push_str("event: ");
    out.push_str(name);
    out.push_str("\ndata: ");
    out.push_str(&data.to_string());
    out.push_str("\n\n");
}

/// `s` split in two at a char boundary near its middle, to stream it as two deltas.
fn halves(s: &str) -> [&str; 2] {
    let mut mid = s.len() / 2;
    while !s.is_char_boundary(mid) {
        mid += 1;
    }
    let (a, b) = s.split_at(mid);
    [a, b]
}

/// Largest request body accepted; the CLIs send the whole conversation each turn.
const MAX_BODY: usize = 32 << 20;
/// Largest request head accepted.
const MAX_HEAD: usize = 64 << 10;

/// Serves one connection: one request, one reply, close. Errors only end the connection.
fn serve(mut conn: impl Read + Write, shared: &Shared, api: fn(&ModelRequest, &Shared) -> Reply) {
    let (reply, head_only) = match read_request(&mut conn) {
        Ok(None) => return,
        Ok(Some(req)) => {
            lock(&shared.seen).push(req.clone());
            (api(&req, shared), req.method == "HEAD")
        }
        Err(reply) => (reply, false),
    };
    let head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n\
         Cache-Control: no-cache\r\nConnection: close\r\n\r\n",
        reply.status,
        reason(reply.status),
        reply.content_type,
        reply.body.len()
    );
    let _ = conn.write_all(head.as_bytes());
    if !head_only {
        let _ = conn.write_all(&reply.body);
    }
    let _ = conn.flush();
}

/// Reads one request. `Ok(None)` when the client went away before a whole head; `Err` carries
/// the reply for a malformed or unsupported request.
fn read_request(conn: &mut impl Read) -> Result<Option<ModelRequest>, Reply> {
    let bad = |msg: &str| Reply {
        status: 400,
        content_type: "text/plain",
        body: format!("bad request: {msg}\n").into_bytes(),
    };
    let mut data = Vec::new();
    let mut buf = [0u8; 16 << 10];
    let head_end = loop {
        if let Some(i) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if data.len() > MAX_HEAD {
            return Err(bad("head too large"));
        }
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => return Ok(None),
            Ok(n) => data.extend_from_slice(&buf[..n]),
        }
    };
    let Some(head) = crate::upstream::parse_head(&data[..head_end]) else {
        return Err(bad("no request line"));
    };
    let mut rest = data.split_off(head_end);
    let header = |name: &str| {
        head.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    if header("content-encoding").is_some_and(|e| !e.eq_ignore_ascii_case("identity")) {
        return Err(Reply {
            status: 415,
            content_type: "text/plain",
            body: b"compressed request bodies are not supported\n".to_vec(),
        });
    }
    let chunked =
        header("transfer-encoding").is_some_and(|t| t.to_ascii_lowercase().contains("chunked"));
    let body = if chunked {
        read_chunked(conn, rest).map_err(bad)?
    } else {
        let len = match header("content-length") {
            None => 0,
            Some(v) => v.parse::<usize>().map_err(|_| bad("bad content-length"))?,
        };
        if len > MAX_BODY {
            return Err(Reply::empty(413));
        }
        while rest.len() < len {
            match conn.read(&mut buf) {
                Ok(0) | Err(_) => return Err(bad("body shorter than content-length")),
                Ok(n) => rest.extend_from_slice(&buf[..n]),
            }
        }
        rest.truncate(len);
        rest
    };
    Ok(Some(ModelRequest {
        method: head.method,
        path: head.path,
        headers: head.headers,
        body,
    }))
}

/// Reads a chunked body whose first bytes are `data`; trailers are read and dropped.
fn read_chunked(conn: &mut dyn Read, data: Vec<u8>) -> Result<Vec<u8>, &'static str> {
    let mut input = Buffered { conn, data, pos: 0 };
    let mut body = Vec::new();
    loop {
        let line = input.line()?;
        let line = String::from_utf8_lossy(&line);
        let size = line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size, 16).map_err(|_| "bad chunk size")?;
        if size == 0 {
            // Trailer lines, up to the empty one.
            while !input.line()?.is_empty() {}
            return Ok(body);
        }
        if size > MAX_BODY - body.len() {
            return Err("body too large");
        }
        input.fill(size + 2)?;
        let chunk = &input.data[input.pos..input.pos + size + 2];
        if !chunk.ends_with(b"\r\n") {
            return Err("chunk not followed by CRLF");
        }
        body.extend_from_slice(&chunk[..size]);
        input.pos += size + 2;
    }
}

/// A connection with the bytes already read from it and how far they were consumed.
struct Buffered<'a> {
    conn: &'a mut dyn Read,
    data: Vec<u8>,
    pos: usize,
}

impl Buffered<'_> {
    /// Reads until at least `n` unconsumed bytes are buffered.
    fn fill(&mut self, n: usize) -> Result<(), &'static str> {
        let mut buf = [0u8; 16 << 10];
        while self.data.len() - self.pos < n {
            match self.conn.read(&mut buf) {
                Ok(0) | Err(_) => return Err("chunked body cut short"),
                Ok(k) => self.data.extend_from_slice(&buf[..k]),
            }
        }
        Ok(())
    }

    /// The next CRLF-terminated line, without the CRLF.
    fn line(&mut self) -> Result<Vec<u8>, &'static str> {
        loop {
            let rest = &self.data[self.pos..];
            if let Some(i) = rest.windows(2).position(|w| w == b"\r\n") {
                let line = rest[..i].to_vec();
                self.pos += i + 2;
                return Ok(line);
            }
            if rest.len() > MAX_HEAD {
                return Err("chunk line too long");
            }
            let have = rest.len();
            self.fill(have + 1)?;
        }
    }
}

#[cfg(test)]
mod tests;
