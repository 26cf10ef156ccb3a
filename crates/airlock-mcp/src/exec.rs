//! `sandbox_exec`: runs one shell command through the daemon's streamed exec, keeps the head
//! of each output stream up to a cap (counting the rest), and gives up at the timeout by
//! closing the stream, which ends the command in the guest.

use crate::args::ExecArgs;
use crate::error::ToolError;
use airlock_api::client::{Client, Lines};
use airlock_api::types::{ExecBody, ExecExit, ExecLine};
use base64::Engine as _;
use hyper::Method;
use serde::Serialize;
use std::time::Duration;

const TOOL: &str = "sandbox_exec";

/// What `sandbox_exec` returns.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct ExecOutcome {
    /// The shell's status: the exit code, 128+N for signal N, 126/127 when the command could
    /// not run; absent when it timed out.
    pub exit_code: Option<i32>,
    /// Standard output (UTF-8, invalid bytes replaced), at most the cap.
    pub stdout: String,
    /// Standard error, likewise.
    pub stderr: String,
    /// Whether stdout was longer than the cap.
    pub stdout_truncated: bool,
    /// Whether stderr was longer than the cap.
    pub stderr_truncated: bool,
    /// Bytes the command wrote to stdout in all.
    pub stdout_bytes: u64,
    /// Bytes the command wrote to stderr in all.
    pub stderr_bytes: u64,
    /// Whether the timeout ended the command.
    pub timed_out: bool,
    /// Processes of the command's tree that the guest's OOM killer ended.
    pub oom_kills: u32,
    /// Why the command could not start, if it did not (`not_found`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spawn_error: Option<String>,
    /// When the command failed: the policy's refusals recorded in the audit log while it ran
    /// (kind, rule, reason, and the path or host), most recent last.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub policy_denials: Vec<serde_json::Value>,
}

/// One output stream, keeping its first `max` bytes.
#[derive(Debug, Default)]
struct Capped {
    kept: Vec<u8>,
    total: u64,
}

impl Capped {
    fn push(&mut self, data: &[u8], max: usize) {
        self.total = self.total.saturating_add(data.len() as u64);
        let room = max.saturating_sub(self.kept.len());
        self.kept
            .extend_from_slice(data.get(..room.min(data.len())).unwrap_or_default());
    }
}

/// Folds an exec's lines into an [`ExecOutcome`].
#[derive(Debug)]
pub struct Collector {
    max: usize,
    stdout: Capped,
    stderr: Capped,
    exit: Option<ExecExit>,
}

impl Collector {
    /// A collector keeping at most `max` bytes of each stream.
    pub fn new(max: usize) -> Collector {
        Collector {
            max,
            stdout: Capped::default(),
            stderr: Capped::default(),
            exit: None,
        }
    }

    /// Takes one line of the stream; `Ok(true)` once the exec ended.
    pub fn line(&mut self, bytes: &[u8]) -> Result<bool, ToolError> {
        let line: ExecLine = serde_json::from_slice(bytes).map_err(|e| ToolError::Reply {
            tool: TOOL,
            reason: format!("an exec line is not JSON of the expected shape: {e}"),
        })?;
        if let Some(err) = line.error {
            return Err(ToolError::Reply {
                tool: TOOL,
                reason: format!("the exec broke: {}", err.detail),
            });
        }
        if let (Some(stream), Some(data)) = (&line.stream, &line.data) {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(data)
                .map_err(|e| ToolError::Reply {
                    tool: TOOL,
                    reason: format!("output is not base64: {e}"),
                })?;
            match stream.as_str() {
                "stdout" => self.stdout.push(&bytes, self.max),
                _ => self.stderr.push(&bytes, self.max),
            }
        }
        if let Some(exit) = line.exit {
            self.exit = Some(exit);
            return Ok(true);
        }
        Ok(false)
    }

    /// The outcome so far; `timed_out` when the stream was given up on.
    pub fn finish(self, timed_out: bool) -> ExecOutcome {
        let max = self.max as u64;
        let exit = self.exit.unwrap_or_default();
        ExecOutcome {
            exit_code: (!timed_out).then_some(exit.exit_code),
            stdout: String::from_utf8_lossy(&self.stdout.kept).into_owned(),
            stderr: String::from_utf8_lossy(&self.stderr.kept).into_owned(),
            stdout_truncated: self.stdout.total > max,
            stderr_truncated: self.stderr.total > max,
            stdout_bytes: self.stdout.total,
            stderr_bytes: self.stderr.total,
            timed_out,
            oom_kills: exit.oom_kills,
            spawn_error: exit.spawn_error,
            policy_denials: Vec::new(),
        }
    }
}

/// Runs `args.command` in sandbox `args.id` (already checked) and collects its outcome.
pub async fn run(
    client: &Client,
    args: &ExecArgs,
    timeout: Duration,
    max: usize,
) -> Result<ExecOutcome, ToolError> {
    let body = ExecBody {
        argv: vec!["/bin/sh".into(), "-c".into(), args.command.clone()],
        cwd: args.cwd.clone(),
        stdin: args
            .stdin
            .as_ref()
            .map(|s| base64::engine::general_purpose::STANDARD.encode(s)),
        ..ExecBody::default()
    };
    let json = serde_json::to_vec(&body).map_err(|e| ToolError::Reply {
        tool: TOOL,
        reason: e.to_string(),
    })?;
    let path = format!("/v1/sandboxes/{}/exec", args.id);
    let mut collector = Collector::new(max);
    let streamed = async {
        let resp = client
            .call(Method::POST, &path, Some(("application/json", json)))
            .await
            .map_err(ToolError::daemon(TOOL))?;
        let mut lines = Lines::new(resp);
        while let Some(line) = lines.next().await.map_err(ToolError::daemon(TOOL))? {
            if collector.line(&line)? {
                return Ok(());
            }
        }
        Err(ToolError::Reply {
            tool: TOOL,
            reason: "the exec stream ended without an exit status".into(),
        })
    };
    // Dropping the stream on timeout closes the connection; the daemon then ends the command.
    let timed_out = match tokio::time::timeout(timeout, streamed).await {
        Ok(result) => {
            result?;
            false
        }
        Err(_) => true,
    };
    Ok(collector.finish(timed_out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(v: serde_json::Value) -> Vec<u8> {
        serde_json::to_vec(&v).unwrap()
    }

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    #[test]
    fn streams_are_capped_at_the_head_and_counted() {
        let mut c = Collector::new(5);
        assert!(!c.line(&line(serde_json::json!({"exec_id": "e1"}))).unwrap());
        for (stream, data) in [
            ("stdout", "hel"),
            ("stderr", "oops"),
            ("stdout", "lo world"),
        ] {
            let l = line(serde_json::json!({"stream": stream, "data": b64(data)}));
            assert!(!c.line(&l).unwrap());
        }
        let end = line(serde_json::json!({"exit": {"exit_code": 3, "code": 3, "oom_kills": 0}}));
        assert!(c.line(&end).unwrap());
        assert_eq!(
            c.finish(false),
            ExecOutcome {
                exit_code: Some(3),
                stdout: "hello".into(),
                stderr: "oops".into(),
                stdout_truncated: true,
                stderr_truncated: false,
                stdout_bytes: 11,
                stderr_bytes: 4,
                timed_out: false,
                oom_kills: 0,
                spawn_error: None,
                policy_denials: Vec::new(),
            }
        );
    }

    #[test]
    fn a_timeout_has_no_exit_code_and_a_broken_exec_is_an_error() {
        let mut c = Collector::new(64);
        c.line(&line(
            serde_json::json!({"stream": "stdout", "data": b64("partial")}),
        ))
        .unwrap();
        let out = c.finish(true);
        assert_eq!(
            (out.exit_code, out.timed_out, out.stdout.as_str()),
            (None, true, "partial")
        );
        let mut c = Collector::new(64);
        let e = c
            .line(&line(
                serde_json::json!({"error": {"error": "conflict", "detail": "sandbox stopped"}}),
            ))
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "sandbox_exec: unexpected reply from the daemon: the exec broke: sandbox stopped"
        );
        let e = c.line(b"not json").unwrap_err();
        assert_eq!(e.code(), "daemon_error");
    }
}
