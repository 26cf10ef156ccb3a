//! envd's `process.Process/SendSignal`, a unary Connect RPC (plain JSON body): SIGKILL or SIGTERM
//! to a running command's process group, through the daemon's exec handle, as
//! `POST /v1/sandboxes/{id}/execs/{exec_id}/signal` does. This is what the SDK's
//! `CommandHandle.kill()` and `commands.kill(pid)` send.

use crate::error::E2bError;
use crate::state::E2b;
use airlock_api::daemon::exec;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use std::sync::Arc;

/// `SendSignalRequest` (proto JSON names).
#[derive(Debug, Deserialize)]
struct SignalRequest {
    #[serde(default)]
    process: Option<Selector>,
    #[serde(default)]
    signal: Option<serde_json::Value>,
}

/// `ProcessSelector`: airlock selects by pid only (no tags).
#[derive(Debug, Deserialize)]
struct Selector {
    #[serde(default)]
    pid: Option<u32>,
}

/// The pid and signal number a request names.
pub fn parse(body: &[u8]) -> Result<(u32, i32), E2bError> {
    let req: SignalRequest = serde_json::from_slice(body)
        .map_err(|e| E2bError::bad("body", format!("invalid SendSignalRequest JSON: {e}")))?;
    let pid = req
        .process
        .and_then(|p| p.pid)
        .ok_or_else(|| E2bError::bad("process", "select the process by pid"))?;
    let signal = match req.signal {
        Some(serde_json::Value::String(s)) if s == "SIGNAL_SIGKILL" => 9,
        Some(serde_json::Value::String(s)) if s == "SIGNAL_SIGTERM" => 15,
        Some(v) if v == 9 => 9,
        Some(v) if v == 15 => 15,
        other => {
            return Err(E2bError::bad(
                "signal",
                format!("{other:?}: SIGNAL_SIGKILL or SIGNAL_SIGTERM"),
            ));
        }
    };
    Ok((pid, signal))
}

/// `POST /process.Process/SendSignal`.
pub async fn send_signal(State(e2b): State<Arc<E2b>>, headers: HeaderMap, body: Bytes) -> Response {
    let sent = (|| {
        let (entry, _) = e2b.sandbox_of(&headers)?;
        let (pid, signal) = parse(&body)?;
        exec::handle(&entry, &format!("e{pid}"))?.signal(signal)?;
        Ok::<(), E2bError>(())
    })();
    match sent {
        Ok(()) => axum::Json(serde_json::json!({})).into_response(),
        Err(e) => (e.status(), axum::Json(e.connect_json())).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_name_a_pid_and_a_signal() {
        assert_eq!(
            parse(br#"{"process":{"pid":3},"signal":"SIGNAL_SIGKILL"}"#).unwrap(),
            (3, 9)
        );
        assert_eq!(
            parse(br#"{"process":{"pid":3},"signal":15}"#).unwrap(),
            (3, 15)
        );
        assert!(parse(br#"{"process":{"tag":"x"},"signal":"SIGNAL_SIGKILL"}"#).is_err());
        assert!(parse(br#"{"process":{"pid":3},"signal":"SIGNAL_SIGHUP"}"#).is_err());
        assert!(parse(b"{").is_err());
    }
}
