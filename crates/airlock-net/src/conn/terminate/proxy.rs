//! One request on a terminated connection: the HTTP rules decide on its method and path; a
//! placeholder in the URL, in another header than its credential's, or to another host refuses
//! it (`credential.leak_attempt`); a placeholder in its credential's header to its host is
//! replaced by the value (`credential.inject`); the body streams upstream scanned; the response
//! streams back. Every request is one event, recorded when its response ends.

use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use airlock_audit::kind;
use airlock_policy::{Policy, Target};
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode, Uri};

use super::super::splice::Progress;
use super::bodies::{Counted, Leak, ProxyBody, Scanned, full};
use crate::config::Shared;
use crate::events::{NetDecision, NetEvent};
use crate::reason;
use crate::secrets::Secrets;

/// The upstream connection requests go out on.
pub(super) enum Upstream {
    /// HTTP/1.1: one request at a time.
    H1(tokio::sync::Mutex<hyper::client::conn::http1::SendRequest<ProxyBody>>),
    /// HTTP/2: requests multiplexed.
    H2(hyper::client::conn::http2::SendRequest<ProxyBody>),
}

/// What every request of one terminated connection shares.
pub(super) struct Proxy {
    pub(super) shared: Arc<Shared>,
    pub(super) policy: Arc<Policy>,
    pub(super) secrets: Arc<Secrets>,
    pub(super) target: Target,
    pub(super) port: u16,
    /// The host as recorded.
    pub(super) host: String,
    pub(super) ip: Option<IpAddr>,
    pub(super) progress: Arc<Progress>,
    pub(super) upstream: Upstream,
}

/// Headers that belong to one hop and are not forwarded.
const HOP_BY_HOP: [&str; 7] = [
    "connection",
    "proxy-connection",
    "keep-alive",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

impl Proxy {
    fn event(&self, method: &str, path: &str) -> NetEvent {
        NetEvent {
            kind: kind::NET_HTTP,
            host: self.host.clone(),
            port: self.port,
            ip: self.ip,
            method: Some(method.to_owned()),
            path: Some(path.to_owned()),
            status: None,
            decision: NetDecision::Allow,
            rule: String::new(),
            reason: airlock_policy::reason::ALLOWED,
            bytes_up: 0,
            bytes_down: 0,
            duration_ms: 0,
            credential: None,
        }
    }

    fn record(&self, mut ev: NetEvent, started: Instant) {
        ev.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.shared.stats.count(&ev);
        self.shared.events.record(&ev);
    }

    /// Refuses the request: records `ev` as denied and answers `403` naming the rule.
    fn refuse(&self, mut ev: NetEvent, started: Instant, detail: &str) -> Response<ProxyBody> {
        ev.decision = NetDecision::Deny;
        ev.status = Some(403);
        let header = format!("deny; rule={}", printable(&ev.rule));
        let body = format!(
            "airlock egress gateway: deny ({}, rule {}){detail}\n",
            ev.reason,
            printable(&ev.rule)
        );
        self.record(ev, started);
        reply(StatusCode::FORBIDDEN, &header, body)
    }

    fn leak(
        &self,
        mut ev: NetEvent,
        started: Instant,
        credential: &str,
        rule: &str,
        why: &'static str,
    ) -> Response<ProxyBody> {
        tracing::warn!(credential, host = %self.host, reason = why, "credential placeholder refused");
        ev.kind = kind::CREDENTIAL_LEAK_ATTEMPT;
        ev.rule = rule.to_owned();
        ev.reason = why;
        ev.credential = Some(credential.to_owned());
        self.refuse(ev, started, "")
    }

    fn failed(
        &self,
        mut ev: NetEvent,
        started: Instant,
        rule: &str,
        why: &'static str,
    ) -> Response<ProxyBody> {
        ev.decision = NetDecision::Error;
        ev.rule = rule.to_owned();
        ev.reason = why;
        ev.status = Some(502);
        let header = format!("error; reason={why}");
        self.record(ev, started);
        reply(
            StatusCode::BAD_GATEWAY,
            &header,
            format!("airlock egress gateway: error ({why})\n"),
        )
    }

    /// Serves one request from the guest.
    pub(super) async fn handle(
        self: Arc<Self>,
        mut req: Request<Incoming>,
    ) -> Result<Response<ProxyBody>, Infallible> {
        let started = Instant::now();
        let method = req.method().as_str().to_owned();
        let target = req
            .uri()
            .path_and_query()
            .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned());
        let mut ev = self.event(&method, &target);

        let decision = self
            .policy
            .decide_http(&self.host, self.port, &method, &target);
        ev.rule = decision.rule.clone();
        ev.reason = decision.reason;
        if !decision.is_allowed() {
            return Ok(self.refuse(ev, started, ""));
        }
        if let Some(s) = self.secrets.find(target.as_bytes()) {
            let (name, rule) = (s.credential.name.clone(), s.credential.rule.clone());
            return Ok(self.leak(ev, started, &name, &rule, reason::LEAK_URL));
        }
        // Headers: the value goes into its own header to its own host; a placeholder anywhere
        // else refuses the request.
        let names: Vec<HeaderName> = req.headers().keys().cloned().collect();
        for name in names {
            let values: Vec<HeaderValue> = req.headers().get_all(&name).iter().cloned().collect();
            let mut rewritten = Vec::with_capacity(values.len());
            let mut changed = false;
            for value in values {
                let Some(s) = self.secrets.find_in_header(value.as_bytes()) else {
                    rewritten.push(value);
                    continue;
                };
                if !s.goes_to(&self.target, self.port, name.as_str()) {
                    let (n, rule) = (s.credential.name.clone(), s.credential.rule.clone());
                    return Ok(self.leak(ev, started, &n, &rule, reason::LEAK_HEADER));
                }
                let secret = match self.secrets.value(s).await {
                    Ok(v) => v,
                    Err(why) => {
                        tracing::warn!(credential = %s.credential.name, %why, "credential unavailable");
                        ev.credential = Some(s.credential.name.clone());
                        let rule = s.credential.rule.clone();
                        return Ok(self.failed(ev, started, &rule, reason::CREDENTIAL_UNAVAILABLE));
                    }
                };
                let Ok(mut v) = HeaderValue::from_str(&s.header_value(&secret)) else {
                    ev.credential = Some(s.credential.name.clone());
                    let rule = s.credential.rule.clone();
                    return Ok(self.failed(ev, started, &rule, reason::CREDENTIAL_UNAVAILABLE));
                };
                v.set_sensitive(true);
                rewritten.push(v);
                changed = true;
                ev.kind = kind::CREDENTIAL_INJECT;
                ev.credential = Some(s.credential.name.clone());
                ev.rule = s.credential.rule.clone();
                ev.reason = reason::INJECTED;
            }
            if changed {
                req.headers_mut().remove(&name);
                for v in rewritten {
                    req.headers_mut().append(name.clone(), v);
                }
            }
        }

        let guest_upgrade = is_upgrade(&req).then(|| hyper::upgrade::on(&mut req));
        let leak: Leak = Arc::default();
        let req_bytes = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (mut parts, body) = req.into_parts();
        let body = Scanned::new(
            body,
            self.secrets.clone(),
            leak.clone(),
            req_bytes.clone(),
            self.progress.clone(),
            self.shared.clone(),
        )
        .boxed_unsync();
        let upgrade = guest_upgrade.is_some();
        for h in HOP_BY_HOP {
            if upgrade && (h == "connection" || h == "upgrade") {
                continue;
            }
            parts.headers.remove(h);
        }
        let authority = match self.port {
            443 => host_for_uri(&self.target),
            p => format!("{}:{p}", host_for_uri(&self.target)),
        };
        let sent = match &self.upstream {
            Upstream::H2(send) => {
                parts.version = hyper::Version::HTTP_2;
                parts.headers.remove(header::HOST);
                parts.uri = match Uri::builder()
                    .scheme("https")
                    .authority(authority.as_str())
                    .path_and_query(target.as_str())
                    .build()
                {
                    Ok(u) => u,
                    Err(_) => {
                        return Ok(self.failed(
                            ev,
                            started,
                            reason::RULE_REQUEST,
                            reason::MALFORMED_REQUEST,
                        ));
                    }
                };
                let mut send = send.clone();
                send.send_request(Request::from_parts(parts, body)).await
            }
            Upstream::H1(send) => {
                parts.version = hyper::Version::HTTP_11;
                parts.uri = match target.parse::<Uri>() {
                    Ok(u) => u,
                    Err(_) => {
                        return Ok(self.failed(
                            ev,
                            started,
                            reason::RULE_REQUEST,
                            reason::MALFORMED_REQUEST,
                        ));
                    }
                };
                if !parts.headers.contains_key(header::HOST)
                    && let Ok(v) = HeaderValue::from_str(&authority)
                {
                    parts.headers.insert(header::HOST, v);
                }
                let mut send = send.lock().await;
                if send.ready().await.is_err() {
                    return Ok(self.failed(
                        ev,
                        started,
                        reason::RULE_UPSTREAM,
                        reason::UPSTREAM_FAILED,
                    ));
                }
                send.send_request(Request::from_parts(parts, body)).await
            }
        };
        let mut resp = match sent {
            Ok(r) => r,
            Err(e) => {
                if let Some(name) = leak.get() {
                    let rule = self
                        .policy
                        .credentials()
                        .iter()
                        .find(|c| &c.name == name)
                        .map(|c| c.rule.clone())
                        .unwrap_or_default();
                    return Ok(self.leak(ev, started, &name.clone(), &rule, reason::LEAK_BODY));
                }
                tracing::info!(error = %e, "upstream request failed");
                return Ok(self.failed(
                    ev,
                    started,
                    reason::RULE_UPSTREAM,
                    reason::UPSTREAM_FAILED,
                ));
            }
        };
        let status = resp.status();
        ev.status = Some(status.as_u16());

        if status == StatusCode::SWITCHING_PROTOCOLS
            && let Some(guest) = guest_upgrade
        {
            let upstream = hyper::upgrade::on(&mut resp);
            let proxy = self.clone();
            tokio::spawn(async move {
                match tokio::try_join!(guest, upstream) {
                    Ok((g, u)) => {
                        let (up, down) = splice_counted(
                            hyper_util::rt::TokioIo::new(g),
                            hyper_util::rt::TokioIo::new(u),
                            &proxy.shared,
                        )
                        .await;
                        ev.bytes_up = up;
                        ev.bytes_down = down;
                    }
                    Err(e) => tracing::debug!(error = %e, "upgrade failed"),
                }
                proxy.record(ev, started);
            });
            let (parts, _) = resp.into_parts();
            return Ok(Response::from_parts(parts, full(Bytes::new())));
        }

        let (mut parts, body) = resp.into_parts();
        for h in HOP_BY_HOP {
            parts.headers.remove(h);
        }
        let proxy = self.clone();
        let record = Box::new(move |down: u64| {
            ev.bytes_down = down;
            ev.bytes_up = req_bytes.load(Ordering::Relaxed);
            if let Some(name) = leak.get() {
                ev.kind = kind::CREDENTIAL_LEAK_ATTEMPT;
                ev.decision = NetDecision::Deny;
                ev.reason = reason::LEAK_BODY;
                ev.credential = Some(name.clone());
            }
            proxy.record(ev, started);
        });
        let body = Counted::new(body, self.progress.clone(), self.shared.clone(), record);
        Ok(Response::from_parts(parts, body.boxed_unsync()))
    }
}

/// Moves bytes both ways until each side has finished or failed; returns the bytes moved
/// guest → upstream and upstream → guest (counted as they move, so a reset loses none).
async fn splice_counted<G, U>(guest: G, upstream: U, shared: &Shared) -> (u64, u64)
where
    G: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    U: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (mut gr, mut gw) = tokio::io::split(guest);
    let (mut ur, mut uw) = tokio::io::split(upstream);
    let up = pump(&mut gr, &mut uw, |n| shared.stats.add_up(n));
    let down = pump(&mut ur, &mut gw, |n| shared.stats.add_down(n));
    tokio::join!(up, down)
}

/// Copies `from` to `to` until either ends, then shuts `to` down; returns the bytes copied,
/// each chunk also reported to `moved`.
async fn pump<R, W>(from: &mut R, to: &mut W, moved: impl Fn(usize)) -> u64
where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 16 * 1024];
    let mut total = 0u64;
    while let Ok(n) = from.read(&mut buf).await {
        if n == 0
            || to
                .write_all(buf.get(..n).unwrap_or_default())
                .await
                .is_err()
        {
            break;
        }
        total = total.saturating_add(u64::try_from(n).unwrap_or(u64::MAX));
        moved(n);
    }
    let _ = to.shutdown().await;
    total
}

fn is_upgrade(req: &Request<Incoming>) -> bool {
    req.version() == hyper::Version::HTTP_11 && req.headers().contains_key(header::UPGRADE)
}

fn host_for_uri(target: &Target) -> String {
    match target {
        Target::Ip(IpAddr::V6(ip)) => format!("[{ip}]"),
        other => other.to_string(),
    }
}

fn reply(status: StatusCode, decision: &str, body: String) -> Response<ProxyBody> {
    let mut resp = Response::new(full(body));
    *resp.status_mut() = status;
    if let Ok(v) = HeaderValue::from_str(decision) {
        resp.headers_mut().insert("x-airlock-decision", v);
    }
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// Printable ASCII only, so a rule name cannot break a header.
fn printable(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            if (' '..='~').contains(&c) {
                vec![c]
            } else {
                c.escape_unicode().collect()
            }
        })
        .collect()
}
