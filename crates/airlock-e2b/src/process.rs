//! envd's `process.Process/Start`, a Connect server-streaming RPC with the JSON codec: the
//! request is one enveloped `StartRequest`; the response streams `StartResponse` frames
//! (`start{pid}`, `data{stdout|stderr}`, `keepalive`, `end{...}`) and the end-of-stream frame.
//!
//! The command runs through the daemon's own exec (`airlock_api::daemon::exec::start`): the
//! same argument checks, policy, audit records and teardown as `POST /v1/sandboxes/{id}/exec`.
//! Its NDJSON lines are translated frame by frame; dropping the response (the client went
//! away) ends the command, as for the REST exec.

use crate::error::E2bError;
use crate::frame::{self, FLAG_END_STREAM};
use crate::state::E2b;
use airlock_api::daemon::exec;
use airlock_api::types::{ExecBody, ExecExit, ExecLine};
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::mpsc;

/// Media type of Connect streaming with the JSON codec.
pub const CONNECT_JSON: &str = "application/connect+json";
/// Largest `StartRequest` message accepted.
pub const MAX_REQUEST: usize = 1024 * 1024;
/// Keepalive interval when the client asks for none (`Keepalive-Ping-Interval`, seconds).
const DEFAULT_KEEPALIVE: Duration = Duration::from_secs(50);
/// Shell that stands in for `/bin/bash` in images without bash (see `shell_argv`).
const BASH_OR_SH: &str = "if [ -x /bin/bash ]; then exec /bin/bash \"$@\"; fi; \
                          shift; exec /bin/sh \"$@\"";

/// `ProcessConfig` as the SDK sends it (proto JSON names).
#[derive(Debug, Default, Deserialize)]
struct ProcessConfig {
    #[serde(default)]
    cmd: String,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    envs: BTreeMap<String, String>,
    #[serde(default)]
    cwd: Option<String>,
}

/// `StartRequest` (proto JSON names).
#[derive(Debug, Default, Deserialize)]
struct StartRequest {
    #[serde(default)]
    process: Option<ProcessConfig>,
    #[serde(default)]
    pty: Option<serde_json::Value>,
}

/// The argv run for `cmd args`: the SDK always asks for `/bin/bash -l -c CMD`; images without
/// bash (airlock's `tiny` is busybox) run `CMD` with `/bin/sh -c` instead, decided in the guest
/// by a `/bin/sh` wrapper. Anything else runs as given.
pub fn shell_argv(cmd: String, args: Vec<String>) -> Vec<String> {
    if cmd != "/bin/bash" {
        return std::iter::once(cmd).chain(args).collect();
    }
    let mut argv = vec![
        "/bin/sh".to_string(),
        "-c".to_string(),
        BASH_OR_SH.to_string(),
        "airlock-e2b".to_string(),
    ];
    // `$@` is bash's arguments; for sh a leading `-l` is dropped by the wrapper's `shift`.
    if args.first().map(String::as_str) != Some("-l") {
        argv.push("-l".into());
    }
    argv.extend(args);
    argv
}

/// Parses the enveloped `StartRequest` into the daemon's exec body.
pub fn exec_body(
    body: &[u8],
    sandbox_envs: &BTreeMap<String, String>,
) -> Result<ExecBody, E2bError> {
    let msg = frame::decode_single(body, MAX_REQUEST)
        .map_err(|e| E2bError::bad("body", format!("bad Connect frame: {e}")))?;
    let req: StartRequest = serde_json::from_slice(msg)
        .map_err(|e| E2bError::bad("body", format!("invalid StartRequest JSON: {e}")))?;
    if req.pty.is_some() {
        return Err(E2bError::Unsupported("PTY".into()));
    }
    let p = req
        .process
        .ok_or_else(|| E2bError::bad("process", "StartRequest has no process"))?;
    let mut env = sandbox_envs.clone();
    env.extend(p.envs);
    Ok(ExecBody {
        argv: shell_argv(p.cmd, p.args),
        env,
        cwd: p.cwd.filter(|c| !c.is_empty()),
        // Stdin is not kept open: SendInput is not implemented (docs/e2b.md).
        stdin_open: false,
        ..ExecBody::default()
    })
}

/// `POST /process.Process/Start`.
pub async fn start(
    State(e2b): State<Arc<E2b>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, E2bError> {
    let (entry, envs) = e2b.sandbox_of(&headers)?;
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ct.starts_with(CONNECT_JSON) {
        return Err(E2bError::bad(
            "Content-Type",
            format!("{ct:?}: this server speaks Connect with {CONNECT_JSON} only"),
        ));
    }
    let keepalive = headers
        .get("keepalive-ping-interval")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|s| (1..=3600).contains(s))
        .map_or(DEFAULT_KEEPALIVE, Duration::from_secs);
    let started = exec::start(&entry, exec_body(&body, &envs)?)?;
    let mut ticks = tokio::time::interval(keepalive);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.reset();
    let stream = EventBody {
        rx: started.lines,
        _guard: started.guard,
        ticks,
        done: false,
    };
    let mut r = Response::new(Body::new(stream));
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONNECT_JSON));
    Ok(r)
}

/// Connect's reply to an RPC airlock does not implement. The body is read (and dropped) so the
/// connection stays usable for the client's next request.
pub async fn unimplemented(Path(method): Path<String>, _body: Bytes) -> Response {
    let e = E2bError::Unsupported(format!("RPC {method}"));
    (StatusCode::NOT_IMPLEMENTED, axum::Json(e.connect_json())).into_response()
}

/// The response body: exec lines become Connect frames, with keepalives in between.
struct EventBody {
    rx: mpsc::Receiver<Vec<u8>>,
    _guard: exec::AbortOnDrop,
    ticks: tokio::time::Interval,
    done: bool,
}

impl http_body::Body for EventBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        if self.done {
            return Poll::Ready(None);
        }
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(line)) => {
                let (bytes, last) = frames_of_line(&line);
                self.done = last;
                Poll::Ready(Some(Ok(http_body::Frame::data(Bytes::from(bytes)))))
            }
            Poll::Ready(None) => {
                // The exec task ended without an exit line: it was aborted.
                self.done = true;
                let err = serde_json::json!({"error": {"code": "aborted", "message": "the command's stream ended without an exit status"}});
                Poll::Ready(Some(Ok(http_body::Frame::data(Bytes::from(end_frame(
                    &err,
                ))))))
            }
            Poll::Pending => match self.ticks.poll_tick(cx) {
                Poll::Ready(_) => {
                    let ka = serde_json::json!({"event": {"keepalive": {}}});
                    Poll::Ready(Some(Ok(http_body::Frame::data(Bytes::from(
                        message_frame(&ka),
                    )))))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

fn message_frame(v: &serde_json::Value) -> Vec<u8> {
    frame::encode(0, &serde_json::to_vec(v).unwrap_or_default())
}

fn end_frame(v: &serde_json::Value) -> Vec<u8> {
    frame::encode(FLAG_END_STREAM, &serde_json::to_vec(v).unwrap_or_default())
}

/// The frames for one exec NDJSON line, and whether the stream ends with them.
pub fn frames_of_line(line: &[u8]) -> (Vec<u8>, bool) {
    let parsed: ExecLine = match serde_json::from_slice(line) {
        Ok(l) => l,
        Err(e) => {
            let err = serde_json::json!({"error": {"code": "internal", "message": format!("bad exec line: {e}")}});
            return (end_frame(&err), true);
        }
    };
    if let Some(id) = parsed.exec_id {
        let pid: u32 = id.trim_start_matches('e').parse().unwrap_or(0);
        return (
            message_frame(&serde_json::json!({"event": {"start": {"pid": pid}}})),
            false,
        );
    }
    if let (Some(stream), Some(data)) = (parsed.stream, parsed.data) {
        return (
            message_frame(&serde_json::json!({"event": {"data": {stream: data}}})),
            false,
        );
    }
    if let Some(exit) = parsed.exit {
        let mut out = message_frame(&end_event(&exit));
        out.extend(end_frame(&serde_json::json!({})));
        return (out, true);
    }
    let message = parsed
        .error
        .map(|e| e.detail)
        .unwrap_or_else(|| "the exec stream carried an unknown line".into());
    let err = serde_json::json!({"error": {"code": "unavailable", "message": message}});
    (end_frame(&err), true)
}

/// envd's `EndEvent` for how the command ended.
fn end_event(exit: &ExecExit) -> serde_json::Value {
    let status = match (exit.code, exit.signal, &exit.spawn_error) {
        (_, _, Some(err)) => format!("{err}: {}", exit.message.as_deref().unwrap_or("")),
        (_, Some(sig), _) => format!("signal: {sig}"),
        (code, None, None) => format!("exit status {}", code.unwrap_or(exit.exit_code)),
    };
    let mut end = serde_json::json!({
        "exitCode": exit.exit_code,
        "exited": exit.signal.is_none() && exit.spawn_error.is_none(),
        "status": status,
    });
    if exit.spawn_error.is_some()
        && let Some(obj) = end.as_object_mut()
    {
        obj.insert("error".into(), serde_json::Value::String(status));
    }
    serde_json::json!({"event": {"end": end}})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(mut b: &[u8]) -> Vec<(u8, serde_json::Value)> {
        let mut out = Vec::new();
        while let Some((f, used)) = frame::decode(b, 1 << 20).unwrap() {
            out.push((f.flags, serde_json::from_slice(f.data).unwrap()));
            b = b.get(used..).unwrap();
        }
        assert!(b.is_empty());
        out
    }

    fn body(interval: Duration) -> (mpsc::Sender<Vec<u8>>, EventBody) {
        let (tx, rx) = mpsc::channel(4);
        let mut ticks = tokio::time::interval(interval);
        ticks.reset();
        let guard = exec::AbortOnDrop::new(tokio::spawn(async {}));
        let b = EventBody {
            rx,
            _guard: guard,
            ticks,
            done: false,
        };
        (tx, b)
    }

    async fn next(b: &mut EventBody) -> Option<Vec<(u8, serde_json::Value)>> {
        use http_body::Body as _;
        let f = std::future::poll_fn(|cx| std::pin::Pin::new(&mut *b).poll_frame(cx)).await?;
        Some(frames(&f.unwrap().into_data().unwrap()))
    }

    #[tokio::test]
    async fn the_stream_keeps_alive_until_the_exit() {
        let (tx, mut b) = body(Duration::from_millis(20));
        tx.send(br#"{"exec_id":"e1"}"#.to_vec()).await.unwrap();
        let start = next(&mut b).await.unwrap();
        assert_eq!(
            start,
            [(0, serde_json::json!({"event":{"start":{"pid":1}}}))]
        );
        // Nothing to say: a keepalive event after the interval.
        let ka = next(&mut b).await.unwrap();
        assert_eq!(ka, [(0, serde_json::json!({"event":{"keepalive":{}}}))]);
        tx.send(br#"{"exit":{"exit_code":0,"code":0}}"#.to_vec())
            .await
            .unwrap();
        let end = next(&mut b).await.unwrap();
        assert_eq!(end.len(), 2);
        assert_eq!(end.last(), Some(&(FLAG_END_STREAM, serde_json::json!({}))));
        assert_eq!(next(&mut b).await, None);
    }

    #[tokio::test]
    async fn a_stream_cut_short_ends_with_an_error() {
        let (tx, mut b) = body(Duration::from_secs(3600));
        drop(tx);
        let end = next(&mut b).await.unwrap();
        let [(flags, err)] = end.as_slice() else {
            panic!("{end:?}")
        };
        assert_eq!(*flags, FLAG_END_STREAM);
        assert_eq!(
            err.pointer("/error/code"),
            Some(&serde_json::json!("aborted"))
        );
        assert_eq!(next(&mut b).await, None);
    }

    #[test]
    fn bash_runs_through_a_wrapper_that_falls_back_to_sh() {
        let argv = shell_argv(
            "/bin/bash".into(),
            vec!["-l".into(), "-c".into(), "echo hi".into()],
        );
        assert_eq!(
            argv,
            [
                "/bin/sh",
                "-c",
                BASH_OR_SH,
                "airlock-e2b",
                "-l",
                "-c",
                "echo hi"
            ]
        );
        assert_eq!(shell_argv("ls".into(), vec!["/".into()]), ["ls", "/"]);
    }

    #[test]
    fn start_requests_become_exec_bodies() {
        let msg = br#"{"process":{"cmd":"/bin/bash","args":["-l","-c","echo $A"],"envs":{"A":"1"},"cwd":"/tmp"},"stdin":false}"#;
        let mut envs = BTreeMap::new();
        envs.insert("B".to_string(), "2".to_string());
        let b = exec_body(&frame::encode(0, msg), &envs).unwrap();
        assert_eq!(b.argv.last().map(String::as_str), Some("echo $A"));
        assert_eq!(b.env.len(), 2);
        assert_eq!(b.cwd.as_deref(), Some("/tmp"));
        let bad = exec_body(msg, &envs).unwrap_err();
        assert!(bad.to_string().contains("bad Connect frame"), "{bad}");
        let pty = br#"{"process":{"cmd":"sh"},"pty":{"size":{"rows":1,"cols":1}}}"#;
        assert!(matches!(
            exec_body(&frame::encode(0, pty), &envs),
            Err(E2bError::Unsupported(_))
        ));
        assert!(exec_body(&frame::encode(0, b"[1"), &envs).is_err());
    }

    #[test]
    fn exec_lines_become_events() {
        let (b, last) = frames_of_line(br#"{"exec_id":"e7"}"#);
        assert!(!last);
        assert_eq!(
            frames(&b),
            [(0, serde_json::json!({"event":{"start":{"pid":7}}}))]
        );
        let (b, _) = frames_of_line(br#"{"stream":"stderr","data":"aGk="}"#);
        assert_eq!(
            frames(&b),
            [(0, serde_json::json!({"event":{"data":{"stderr":"aGk="}}}))]
        );
        let (b, last) = frames_of_line(br#"{"exit":{"exit_code":3,"code":3,"oom_kills":0}}"#);
        assert!(last);
        assert_eq!(
            frames(&b),
            [
                (
                    0,
                    serde_json::json!({"event":{"end":{"exitCode":3,"exited":true,"status":"exit status 3"}}})
                ),
                (FLAG_END_STREAM, serde_json::json!({}))
            ]
        );
        let (b, last) =
            frames_of_line(br#"{"error":{"error":"conflict","detail":"the sandbox was stopped"}}"#);
        assert!(last);
        assert_eq!(
            frames(&b),
            [(
                FLAG_END_STREAM,
                serde_json::json!({"error":{"code":"unavailable","message":"the sandbox was stopped"}})
            )]
        );
        let (b, last) = frames_of_line(b"garbage");
        assert!(last);
        let (flags, _) = frames(&b).into_iter().next().unwrap();
        assert_eq!(flags, FLAG_END_STREAM);
    }
}
