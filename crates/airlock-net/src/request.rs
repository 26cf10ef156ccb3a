//! Pure parser of an HTTP/1.x proxy request head.
//!
//! Called by `conn.rs` each time new bytes arrive from the guest: [`parse`] returns
//! [`Parse::Complete`] with the head and the number of bytes it used, [`Parse::Incomplete`]
//! when more bytes are needed, or [`Parse::Rejected`]. Nothing here does I/O, so it is
//! property-tested on arbitrary bytes and every prefix of the captured inputs in
//! `testdata/request/`. What follows the head has parsers of its own, re-exported here:
//! `chunked.rs` tracks where a chunked request body ends ([`ChunkedBody`]) and `status.rs`
//! reads the status of the upstream's response ([`scan_status`]).
//!
//! Accepted: `CONNECT host:port` (authority-form) and `METHOD http://host[:port]/path` (absolute
//! form), `HTTP/1.0` or `HTTP/1.1`. The parser is deliberately stricter than RFC 9112, because
//! the gateway forwards what it parsed and a lenient parser in front of a server that reads the
//! same bytes differently is how requests get smuggled:
//! - every line ends in CRLF; a bare LF or a bare CR anywhere is rejected (RFC 9112 §2.2 lets a
//!   recipient accept a bare LF; we do not), and so are leading empty lines;
//! - single spaces between the three parts of the request line;
//! - header names are tokens with no space before the colon; obs-fold, NUL and other controls
//!   but HTAB in values are rejected;
//! - origin-form (`GET /path`), asterisk-form, `https://` and user-info targets are rejected:
//!   the gateway only proxies;
//! - absolute-form needs exactly one `Host` header; `CONNECT` may have at most one;
//! - `Content-Length` must be one header of decimal digits; `Transfer-Encoding` may only be
//!   exactly `chunked` (HTTP/1.1 only) and never together with `Content-Length`; `CONNECT` has no
//!   body.

mod chunked;
mod status;

pub use chunked::{
    ChunkedBody, ChunkedError, MAX_CHUNK_LINE_LEN, MAX_CHUNK_SIZE_DIGITS, MAX_TRAILER_LEN,
};
pub use status::{response_status, scan_status};

use std::fmt;

/// Longest request head, request line and headers and the final empty line included.
pub const MAX_HEAD_LEN: usize = 16 * 1024;
/// Most header fields in one head.
pub const MAX_HEADERS: usize = 64;
/// Longest line (request line or header field), CRLF excluded.
pub const MAX_LINE_LEN: usize = 8 * 1024;
/// Longest method name.
pub const MAX_METHOD_LEN: usize = 32;
/// Longest host in a request target or `Host` header (a DNS name is at most 253 bytes; the
/// rest leaves room for a bracketed IPv6 literal and a trailing dot).
pub const MAX_HOST_LEN: usize = 255;

/// The outcome of [`parse`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parse {
    /// A whole, valid head.
    Complete {
        /// The parsed head.
        head: RequestHead,
        /// Bytes of the input the head took, final CRLF included; the rest is body or tunnel
        /// data.
        consumed: usize,
    },
    /// Valid so far; more bytes are needed.
    Incomplete,
    /// Malformed or over a limit; no amount of further input can make it valid.
    Rejected(RequestError),
}

/// Why a head was rejected. Every variant maps to the audit reason
/// [`MALFORMED_REQUEST`](crate::reason::MALFORMED_REQUEST); the message goes into the error
/// reply and the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// The head is longer than [`MAX_HEAD_LEN`].
    #[error("request head longer than {MAX_HEAD_LEN} bytes")]
    HeadTooLarge,
    /// A line is longer than [`MAX_LINE_LEN`].
    #[error("line longer than {MAX_LINE_LEN} bytes")]
    LineTooLong,
    /// More than [`MAX_HEADERS`] header fields.
    #[error("more than {MAX_HEADERS} header fields")]
    TooManyHeaders,
    /// A line ends in LF without CR.
    #[error("line ends in a bare LF")]
    BareLf,
    /// A CR not followed by LF.
    #[error("bare CR in line")]
    BareCr,
    /// The head starts with an empty line.
    #[error("empty line before the request line")]
    LeadingEmptyLine,
    /// The request line is not `method SP target SP version`.
    #[error("malformed request line")]
    RequestLine,
    /// The method is empty, too long or not a token.
    #[error("method is not a token")]
    Method,
    /// Not `HTTP/1.0` or `HTTP/1.1`.
    #[error("unsupported HTTP version")]
    Version,
    /// The request target has a byte outside visible ASCII, or is not a valid authority or
    /// absolute URI.
    #[error("malformed request target")]
    Target,
    /// A path-only (origin-form) or `*` target: not a proxy request.
    #[error("request target is not absolute: not a proxy request")]
    NotAbsolute,
    /// An absolute URI with a scheme other than `http` (use CONNECT for https).
    #[error("unsupported scheme in request target")]
    Scheme,
    /// `user:password@` in the target.
    #[error("user info in request target")]
    UserInfo,
    /// A fragment (`#`) in the target.
    #[error("fragment in request target")]
    Fragment,
    /// A port that is empty, not decimal, or outside 1–65535.
    #[error("invalid port")]
    Port,
    /// A header line without a colon, with an empty or non-token name, or with space before the
    /// colon.
    #[error("malformed header field")]
    HeaderSyntax,
    /// A header line starting with space or tab (obsolete line folding).
    #[error("obsolete line folding")]
    ObsFold,
    /// NUL or another control character (but HTAB) in a header value.
    #[error("control character in header value")]
    HeaderValue,
    /// An absolute-form request without a `Host` header.
    #[error("missing Host header")]
    MissingHost,
    /// More than one `Host` header.
    #[error("duplicate Host header")]
    DuplicateHost,
    /// A `Host` header that is not `host[:port]`.
    #[error("malformed Host header")]
    BadHost,
    /// A `Content-Length` that is not one decimal number, or appears twice.
    #[error("invalid Content-Length")]
    ContentLength,
    /// Both `Transfer-Encoding` and `Content-Length`.
    #[error("both Transfer-Encoding and Content-Length")]
    LengthAndEncoding,
    /// A `Transfer-Encoding` other than exactly `chunked`, twice, or in HTTP/1.0.
    #[error("unsupported Transfer-Encoding")]
    TransferEncoding,
    /// A `CONNECT` request with a body.
    #[error("CONNECT request with a body")]
    ConnectBody,
}

/// HTTP version of the request line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// `HTTP/1.0`
    Http10,
    /// `HTTP/1.1`
    Http11,
}

impl Version {
    /// The text as in a request line.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http10 => "HTTP/1.0",
            Self::Http11 => "HTTP/1.1",
        }
    }
}

/// Where the request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestTarget {
    /// `CONNECT host:port`: a tunnel.
    Connect {
        /// Host as written (a name, an IPv4 literal, or a bracketed IPv6 literal); not
        /// canonicalised.
        host: String,
        /// Port (1–65535).
        port: u16,
    },
    /// `METHOD http://host[:port]/path?query`: a plain-HTTP request.
    Absolute {
        /// Host as written; not canonicalised.
        host: String,
        /// Port; 80 when the URI names none.
        port: u16,
        /// Origin-form target to forward: the path and query, `/` when the URI has none.
        path: String,
    },
}

/// A `host[:port]` as found in a `Host` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authority {
    /// Host as written; not canonicalised.
    pub host: String,
    /// Port, when given.
    pub port: Option<u16>,
}

/// One header field.
#[derive(Clone, PartialEq, Eq)]
pub struct Header {
    /// Field name as written (a token; compare case-insensitively).
    pub name: String,
    /// Field value without surrounding whitespace; may hold obs-text (bytes ≥ 0x80), never
    /// controls but HTAB.
    pub value: Vec<u8>,
}

impl fmt::Debug for Header {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {:?}",
            self.name,
            String::from_utf8_lossy(&self.value)
        )
    }
}

/// How the request body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body.
    None,
    /// `Content-Length: n`.
    Length(u64),
    /// `Transfer-Encoding: chunked`; see [`ChunkedBody`].
    Chunked,
}

/// A parsed request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    /// Method (a token, case as written).
    pub method: String,
    /// Target.
    pub target: RequestTarget,
    /// Version.
    pub version: Version,
    /// Every header field, in order, `Host` included.
    pub headers: Vec<Header>,
    /// The `Host` header, parsed.
    pub host_header: Option<Authority>,
    /// Body framing.
    pub body: BodyFraming,
}

/// Parses a request head from the start of `buf`. Only the first [`MAX_HEAD_LEN`] bytes are
/// looked at.
pub fn parse(buf: &[u8]) -> Parse {
    match parse_inner(buf) {
        Ok(Some((head, consumed))) => Parse::Complete { head, consumed },
        Ok(None) => Parse::Incomplete,
        Err(e) => Parse::Rejected(e),
    }
}

fn parse_inner(input: &[u8]) -> Result<Option<(RequestHead, usize)>, RequestError> {
    let buf = input.get(..MAX_HEAD_LEN).unwrap_or(input);
    let mut pos = 0;
    let mut request_line = None;
    let mut headers = Vec::new();
    loop {
        let rest = buf.get(pos..).unwrap_or_default();
        let Some(lf) = rest.iter().position(|&b| b == b'\n') else {
            if rest.len() > MAX_LINE_LEN + 1 {
                return Err(RequestError::LineTooLong);
            }
            if input.len() >= MAX_HEAD_LEN {
                return Err(RequestError::HeadTooLarge);
            }
            // A CR must be followed by LF; a CR before the last byte is already wrong.
            if let Some(cr) = rest.iter().position(|&b| b == b'\r')
                && cr + 1 < rest.len()
            {
                return Err(RequestError::BareCr);
            }
            return Ok(None);
        };
        let with_cr = rest.get(..lf).unwrap_or_default();
        let Some(line) = with_cr.strip_suffix(b"\r") else {
            return Err(RequestError::BareLf);
        };
        if line.contains(&b'\r') {
            return Err(RequestError::BareCr);
        }
        if line.len() > MAX_LINE_LEN {
            return Err(RequestError::LineTooLong);
        }
        pos += lf + 1;
        match request_line {
            None => {
                if line.is_empty() {
                    return Err(RequestError::LeadingEmptyLine);
                }
                request_line = Some(parse_request_line(line)?);
            }
            Some(_) if line.is_empty() => break,
            Some(_) => {
                if headers.len() == MAX_HEADERS {
                    return Err(RequestError::TooManyHeaders);
                }
                headers.push(parse_header(line)?);
            }
        }
    }
    let Some((method, target, version)) = request_line else {
        return Err(RequestError::RequestLine);
    };
    let head = finish(method, target, version, headers)?;
    Ok(Some((head, pos)))
}

/// Checks the header set as a whole: `Host` and body framing.
fn finish(
    method: String,
    target: RequestTarget,
    version: Version,
    headers: Vec<Header>,
) -> Result<RequestHead, RequestError> {
    let mut host_header = None;
    let mut content_length = None;
    let mut chunked = false;
    for h in &headers {
        if h.name.eq_ignore_ascii_case("host") {
            if host_header.is_some() {
                return Err(RequestError::DuplicateHost);
            }
            host_header = Some(parse_host_header(&h.value)?);
        } else if h.name.eq_ignore_ascii_case("content-length") {
            if content_length.is_some() {
                return Err(RequestError::ContentLength);
            }
            content_length = Some(parse_content_length(&h.value)?);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            if chunked || version == Version::Http10 || !h.value.eq_ignore_ascii_case(b"chunked") {
                return Err(RequestError::TransferEncoding);
            }
            chunked = true;
        }
    }
    let body = match (content_length, chunked) {
        (Some(_), true) => return Err(RequestError::LengthAndEncoding),
        (Some(0) | None, false) => BodyFraming::None,
        (Some(n), false) => BodyFraming::Length(n),
        (None, true) => BodyFraming::Chunked,
    };
    match target {
        RequestTarget::Connect { .. } if body != BodyFraming::None => {
            return Err(RequestError::ConnectBody);
        }
        RequestTarget::Absolute { .. } if host_header.is_none() => {
            return Err(RequestError::MissingHost);
        }
        _ => {}
    }
    Ok(RequestHead {
        method,
        target,
        version,
        headers,
        host_header,
        body,
    })
}

fn parse_request_line(line: &[u8]) -> Result<(String, RequestTarget, Version), RequestError> {
    let mut parts = line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(RequestError::RequestLine);
    };
    if method.is_empty() || method.len() > MAX_METHOD_LEN || !method.iter().all(|&b| is_tchar(b)) {
        return Err(RequestError::Method);
    }
    let version = match version {
        b"HTTP/1.1" => Version::Http11,
        b"HTTP/1.0" => Version::Http10,
        _ => return Err(RequestError::Version),
    };
    if target.is_empty() || !target.iter().all(|&b| (0x21..=0x7e).contains(&b)) {
        return Err(RequestError::Target);
    }
    let method = ascii(method)?;
    // Visible ASCII only, checked above.
    let target_text = ascii(target)?;
    let target = if method == "CONNECT" {
        let (host, port) = split_authority(&target_text)?;
        RequestTarget::Connect {
            host,
            port: port.ok_or(RequestError::Port)?,
        }
    } else {
        parse_absolute(&target_text)?
    };
    Ok((method, target, version))
}

/// Parses `http://authority[/path][?query]`.
fn parse_absolute(target: &str) -> Result<RequestTarget, RequestError> {
    if target.starts_with('/') || target == "*" {
        return Err(RequestError::NotAbsolute);
    }
    let Some((scheme, rest)) = target.split_once("://") else {
        return Err(RequestError::Target);
    };
    if !scheme.eq_ignore_ascii_case("http") {
        return Err(RequestError::Scheme);
    }
    if rest.contains('#') {
        return Err(RequestError::Fragment);
    }
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    if authority.contains('@') {
        return Err(RequestError::UserInfo);
    }
    let (host, port) = split_authority(authority)?;
    let path = match path.chars().next() {
        None => "/".to_owned(),
        Some('?') => format!("/{path}"),
        Some(_) => path.to_owned(),
    };
    Ok(RequestTarget::Absolute {
        host,
        port: port.unwrap_or(80),
        path,
    })
}

fn parse_host_header(value: &[u8]) -> Result<Authority, RequestError> {
    let text = std::str::from_utf8(value).map_err(|_| RequestError::BadHost)?;
    if !text.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        return Err(RequestError::BadHost);
    }
    let (host, port) = split_authority(text).map_err(|_| RequestError::BadHost)?;
    Ok(Authority { host, port })
}

/// Splits `host[:port]`, where host is a name or IPv4 literal (`[A-Za-z0-9._-]`) or a bracketed
/// IPv6 literal (`[` hex digits, `:` and `.` `]`). Zone identifiers are refused.
fn split_authority(text: &str) -> Result<(String, Option<u16>), RequestError> {
    let (host, port) = if let Some(inner) = text.strip_prefix('[') {
        let Some(close) = inner.find(']') else {
            return Err(RequestError::Target);
        };
        let (addr, after) = inner.split_at(close);
        let after = after.get(1..).unwrap_or_default();
        if addr.is_empty()
            || !addr
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return Err(RequestError::Target);
        }
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p),
            None if after.is_empty() => None,
            None => return Err(RequestError::Target),
        };
        (text.get(..close + 2).unwrap_or(text), port)
    } else {
        match text.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (text, None),
        }
    };
    if host.is_empty() || host.len() > MAX_HOST_LEN {
        return Err(RequestError::Target);
    }
    if !host.starts_with('[')
        && !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
    {
        return Err(RequestError::Target);
    }
    let port = port.map(parse_port).transpose()?;
    Ok((host.to_owned(), port))
}

fn parse_port(text: &str) -> Result<u16, RequestError> {
    if text.is_empty() || text.len() > 5 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(RequestError::Port);
    }
    match text.parse::<u16>() {
        Ok(0) | Err(_) => Err(RequestError::Port),
        Ok(p) => Ok(p),
    }
}

fn parse_content_length(value: &[u8]) -> Result<u64, RequestError> {
    // 19 digits always fit in a u64.
    if value.is_empty() || value.len() > 19 || !value.iter().all(u8::is_ascii_digit) {
        return Err(RequestError::ContentLength);
    }
    value.iter().try_fold(0u64, |n, &d| {
        n.checked_mul(10)
            .and_then(|n| n.checked_add(u64::from(d - b'0')))
            .ok_or(RequestError::ContentLength)
    })
}

fn parse_header(line: &[u8]) -> Result<Header, RequestError> {
    if matches!(line.first(), Some(b' ' | b'\t')) {
        return Err(RequestError::ObsFold);
    }
    let Some(colon) = line.iter().position(|&b| b == b':') else {
        return Err(RequestError::HeaderSyntax);
    };
    let name = line.get(..colon).unwrap_or_default();
    if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
        return Err(RequestError::HeaderSyntax);
    }
    let value = line.get(colon + 1..).unwrap_or_default();
    if value.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Err(RequestError::HeaderValue);
    }
    let value = trim_ows(value);
    Ok(Header {
        name: ascii(name)?,
        value: value.to_vec(),
    })
}

fn trim_ows(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

/// RFC 9110 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn ascii(bytes: &[u8]) -> Result<String, RequestError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| RequestError::RequestLine)
}

#[cfg(test)]
mod tests;
