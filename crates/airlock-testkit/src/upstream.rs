//! Small HTTP/1.1 servers on 127.0.0.1 for tests: each request's head is read, recorded, and
//! answered by the test's handler, then the connection is closed.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

/// One request as the server saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenRequest {
    /// Method, e.g. `GET`.
    pub method: String,
    /// Request target as sent (origin-form path, usually).
    pub path: String,
    /// Header lines as `(name, value)`, names as sent.
    pub headers: Vec<(String, String)>,
}

impl SeenRequest {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A reply: status line text (e.g. `200 OK`) and body.
pub type Reply = (&'static str, Vec<u8>);

/// A running server; it serves until the test process ends.
pub struct Upstream {
    port: u16,
    seen: Arc<Mutex<Vec<SeenRequest>>>,
}

impl Upstream {
    /// Serves every request with `handler`.
    pub fn start(handler: impl Fn(&SeenRequest) -> Reply + Send + Sync + 'static) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen: Arc<Mutex<Vec<SeenRequest>>> = Arc::default();
        let handler = Arc::new(handler);
        let record = seen.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let handler = handler.clone();
                let record = record.clone();
                std::thread::spawn(move || {
                    let Some(req) = read_head(&mut conn) else {
                        return;
                    };
                    record.lock().unwrap().push(req.clone());
                    let (status, body) = handler(&req);
                    let _ = write!(
                        conn,
                        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = conn.write_all(&body);
                });
            }
        });
        Upstream { port, seen }
    }

    /// Answers every request with `hello from PATH`.
    pub fn hello() -> Upstream {
        Upstream::start(|r| ("200 OK", format!("hello from {}\n", r.path).into_bytes()))
    }

    /// Its port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The requests served so far.
    pub fn seen(&self) -> Vec<SeenRequest> {
        self.seen.lock().unwrap().clone()
    }
}

/// Reads a request head (up to the blank line, at most 64 KiB).
fn read_head(conn: &mut std::net::TcpStream) -> Option<SeenRequest> {
    let mut buf = [0u8; 8192];
    let mut head = Vec::new();
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => return None,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
        if head.len() > 64 * 1024 {
            return None;
        }
    }
    parse_head(&head)
}

/// Parses a request head (request line and header lines; anything after the blank line is
/// ignored). `None` if the request line is not `METHOD TARGET ...`. Shared with
/// [`crate::models`], whose servers read bodies too.
pub(crate) fn parse_head(head: &[u8]) -> Option<SeenRequest> {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n");
    let mut first = lines.next()?.split_whitespace();
    let method = first.next()?.to_string();
    let path = first.next()?.to_string();
    let headers = lines
        .take_while(|l| !l.is_empty())
        .filter_map(|l| {
            let (n, v) = l.split_once(':')?;
            Some((n.trim().to_string(), v.trim().to_string()))
        })
        .collect();
    Some(SeenRequest {
        method,
        path,
        headers,
    })
}
