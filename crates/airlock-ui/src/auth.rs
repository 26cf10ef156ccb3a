//! Who may use the page: whoever holds the token printed at start, from this machine only.
//!
//! - Every request, the page and its assets included, must carry the token: as
//!   `Authorization: Bearer`, as `?token=` (the printed URL), or as the cookie the page sets
//!   when it is opened with the token (`HttpOnly`, `SameSite=Strict`, named after the port).
//!   Without it the answer is 401, whatever the path.
//! - The `Host` header must name the loopback address served, so a DNS-rebinding page in the
//!   user's browser cannot reach it under another name.
//! - A request that changes state (anything but GET and HEAD) must come from the page itself:
//!   its `Origin` must be this server, and its body JSON (which a cross-site form cannot send).
//! - Every response carries a Content-Security-Policy without inline scripts, `nosniff`,
//!   `no-referrer` and a frame ban.

use crate::error::json_error;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use std::sync::Arc;
use subtle::ConstantTimeEq as _;

/// The page's Content-Security-Policy: scripts, styles and connections from this origin only,
/// no inline script or style, no plugins, no framing, no form posts elsewhere.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; \
frame-ancestors 'none'";

/// A fresh token: 32 random bytes as hex.
pub fn new_token() -> Result<String, String> {
    let mut raw = [0u8; 32];
    getrandom::fill(&mut raw).map_err(|e| e.to_string())?;
    Ok(hex::encode(raw))
}

/// The token and the port it guards.
#[derive(Debug)]
pub struct Guard {
    token: String,
    port: u16,
}

impl Guard {
    /// Guards the page on `port` with `token`.
    pub fn new(token: String, port: u16) -> Guard {
        Guard { token, port }
    }

    fn cookie_name(&self) -> String {
        format!("airlock_ui_{}", self.port)
    }

    fn matches(&self, offered: &str) -> bool {
        offered.len() == self.token.len()
            && bool::from(offered.as_bytes().ct_eq(self.token.as_bytes()))
    }

    /// Whether `host` (the `Host` header) names this server.
    fn host_ok(&self, host: &str) -> bool {
        [
            format!("127.0.0.1:{}", self.port),
            format!("localhost:{}", self.port),
            format!("[::1]:{}", self.port),
        ]
        .iter()
        .any(|h| h == host)
    }

    /// The token offered by `req`, and whether it came in the query.
    fn offered(&self, req: &Request) -> (Option<String>, bool) {
        if let Some(q) = req.uri().query() {
            for pair in q.split('&') {
                if let Some(t) = pair.strip_prefix("token=") {
                    return (Some(t.to_string()), true);
                }
            }
        }
        let headers = req.headers();
        if let Some(t) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
        {
            return (Some(t.to_string()), false);
        }
        (cookie(headers, &self.cookie_name()), false)
    }
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// The middleware in front of every route.
pub async fn check(State(guard): State<Arc<Guard>>, req: Request, next: Next) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default()
        .to_string();
    if !guard.host_ok(&host) {
        return secured(json_error(
            StatusCode::FORBIDDEN,
            "this page answers only to its loopback address (Host header refused)",
        ));
    }
    let (offered, in_query) = guard.offered(&req);
    if !offered.as_deref().is_some_and(|t| guard.matches(t)) {
        return secured(json_error(
            StatusCode::UNAUTHORIZED,
            "missing or wrong token: open the URL that `airlock ui` printed",
        ));
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let origin = req
            .headers()
            .get(header::ORIGIN)
            .and_then(|o| o.to_str().ok());
        if origin != Some(format!("http://{host}").as_str()) {
            return secured(json_error(
                StatusCode::FORBIDDEN,
                "cross-origin request refused: changes can be made from the review page only",
            ));
        }
        let json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|c| c.to_str().ok())
            .is_some_and(|c| c.starts_with("application/json"));
        if !json {
            return secured(json_error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "changes need a JSON body (Content-Type: application/json)",
            ));
        }
    }
    let mut resp = next.run(req).await;
    if in_query {
        let value = format!(
            "{}={}; Path=/; HttpOnly; SameSite=Strict",
            guard.cookie_name(),
            guard.token
        );
        if let Ok(v) = HeaderValue::from_str(&value) {
            resp.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    secured(resp)
}

/// Adds the security headers.
fn secured(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}
