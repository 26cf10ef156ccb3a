//! `audit_tail`: the last records of a sandbox's hash-chained audit log, read through the
//! daemon's events stream and filtered here by kind glob and decision. Records are returned as
//! they are in the log, so a reader sees the same `seq`, `rule` and `reason` that
//! `airlock audit show` prints.

use crate::args::{AuditArgs, DecisionArg};
use crate::error::ToolError;
use airlock_api::client::{Client, Lines};
use airlock_audit::{Decision, Record, Timestamp};
use globset::{GlobBuilder, GlobMatcher};
use hyper::Method;
use std::collections::VecDeque;

const TOOL: &str = "audit_tail";

/// Which records `audit_tail` keeps.
#[derive(Debug)]
pub struct AuditFilter {
    kind: Option<GlobMatcher>,
    decision: Option<Decision>,
    since: Option<Timestamp>,
    limit: usize,
}

impl AuditFilter {
    /// The filter of `args`, with `limit` already checked.
    pub fn new(args: &AuditArgs, limit: usize) -> Result<AuditFilter, ToolError> {
        let kind = match &args.kind {
            None => None,
            Some(g) => Some(
                GlobBuilder::new(g)
                    .build()
                    .map_err(|e| ToolError::Invalid {
                        tool: TOOL,
                        field: "kind",
                        reason: format!("{g:?} is not a glob: {}", e.kind()),
                    })?
                    .compile_matcher(),
            ),
        };
        let decision = args.decision.map(|d| match d {
            DecisionArg::Allow => Decision::Allow,
            DecisionArg::Deny => Decision::Deny,
            DecisionArg::Error => Decision::Error,
        });
        Ok(AuditFilter {
            kind,
            decision,
            since: None,
            limit,
        })
    }

    /// Only records stamped at or after `ts` as well.
    pub fn since(mut self, ts: Timestamp) -> AuditFilter {
        self.since = Some(ts);
        self
    }

    fn matches(&self, r: &Record) -> bool {
        self.kind.as_ref().is_none_or(|k| k.is_match(&r.event.kind))
            && self.decision.is_none_or(|d| r.event.decision == Some(d))
            && self.since.is_none_or(|t| r.ts >= t)
    }

    /// The last `limit` matching records of `lines` (one log line each), as JSON.
    pub fn tail<'a>(
        &self,
        lines: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<Vec<serde_json::Value>, ToolError> {
        let mut kept = VecDeque::new();
        for line in lines {
            self.take(line, &mut kept)?;
        }
        Ok(kept.into())
    }

    fn take(&self, line: &[u8], kept: &mut VecDeque<serde_json::Value>) -> Result<(), ToolError> {
        let line = line.trim_ascii_end();
        let record = Record::parse(line).map_err(|e| ToolError::Reply {
            tool: TOOL,
            reason: format!("an audit line is not a valid record: {e}"),
        })?;
        if !self.matches(&record) {
            return Ok(());
        }
        let value = serde_json::from_slice(line).map_err(|e| ToolError::Reply {
            tool: TOOL,
            reason: e.to_string(),
        })?;
        if kept.len() == self.limit {
            kept.pop_front();
        }
        kept.push_back(value);
        Ok(())
    }
}

/// Reads sandbox `id`'s log through the daemon and returns its last matching records.
pub async fn tail(
    client: &Client,
    id: &str,
    filter: &AuditFilter,
) -> Result<Vec<serde_json::Value>, ToolError> {
    let resp = client
        .call(Method::GET, &format!("/v1/sandboxes/{id}/events"), None)
        .await
        .map_err(ToolError::daemon(TOOL))?;
    let mut lines = Lines::new(resp);
    let mut kept = VecDeque::new();
    while let Some(line) = lines.next().await.map_err(ToolError::daemon(TOOL))? {
        filter.take(&line, &mut kept)?;
    }
    Ok(kept.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use airlock_audit::{Chain, ChainOptions, Event, FsInfo, Source, kind};

    fn log() -> Vec<Vec<u8>> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let options = ChainOptions {
            sandbox: "0123456789ab".into(),
            key: None,
            checkpoints: Default::default(),
            fsync: Default::default(),
        };
        let (mut chain, _) = Chain::open(&path, options).unwrap();
        let fs = |k: &str, d: Decision, p: &str| {
            Event::new(Source::Host, k)
                .with_decision(d)
                .with_fs(FsInfo {
                    op: k.trim_start_matches("fs.").into(),
                    path: p.into(),
                    to: None,
                    mount: Some("/workspace".into()),
                })
        };
        chain
            .append(&Event::new(Source::Host, kind::SANDBOX_START))
            .unwrap();
        chain
            .append(&fs(kind::FS_WRITE, Decision::Allow, "a"))
            .unwrap();
        chain
            .append(&fs(kind::FS_WRITE, Decision::Deny, ".git/hooks/x"))
            .unwrap();
        chain
            .append(&fs(kind::FS_OPEN, Decision::Allow, "b"))
            .unwrap();
        chain
            .append(&fs(kind::FS_CREATE, Decision::Deny, ".mcp.json"))
            .unwrap();
        drop(chain);
        std::fs::read(&path)
            .unwrap()
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(<[u8]>::to_vec)
            .collect()
    }

    fn paths(records: &[serde_json::Value]) -> Vec<String> {
        records
            .iter()
            .map(|r| {
                let p = r
                    .pointer("/fs/path")
                    .and_then(|p| p.as_str())
                    .unwrap_or("-");
                format!("{}:{p}", r["kind"].as_str().unwrap())
            })
            .collect()
    }

    #[test]
    fn tail_keeps_the_last_matching_records() {
        let lines = log();
        let all = AuditFilter::new(&AuditArgs::default(), 2).unwrap();
        let got = all.tail(lines.iter().map(Vec::as_slice)).unwrap();
        assert_eq!(paths(&got), ["fs.open:b", "fs.create:.mcp.json"]);
        let denials = AuditArgs {
            decision: Some(DecisionArg::Deny),
            ..AuditArgs::default()
        };
        let got = AuditFilter::new(&denials, 10)
            .unwrap()
            .tail(lines.iter().map(Vec::as_slice))
            .unwrap();
        assert_eq!(
            paths(&got),
            ["fs.write:.git/hooks/x", "fs.create:.mcp.json"]
        );
        let writes = AuditArgs {
            kind: Some("fs.w*".into()),
            ..AuditArgs::default()
        };
        let got = AuditFilter::new(&writes, 10)
            .unwrap()
            .tail(lines.iter().map(Vec::as_slice))
            .unwrap();
        assert_eq!(paths(&got), ["fs.write:a", "fs.write:.git/hooks/x"]);
    }

    #[test]
    fn since_keeps_only_records_stamped_from_then_on() {
        let lines = log();
        let all = AuditFilter::new(&AuditArgs::default(), 100).unwrap();
        let from_epoch = all.since(Timestamp::from_millis(0));
        assert_eq!(
            from_epoch
                .tail(lines.iter().map(Vec::as_slice))
                .unwrap()
                .len(),
            5
        );
        let later = AuditFilter::new(&AuditArgs::default(), 100)
            .unwrap()
            .since(Timestamp::from_millis(u64::MAX / 2));
        assert!(
            later
                .tail(lines.iter().map(Vec::as_slice))
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn a_bad_glob_names_the_argument() {
        let args = AuditArgs {
            kind: Some("fs.[".into()),
            ..AuditArgs::default()
        };
        let e = AuditFilter::new(&args, 1).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("audit_tail: argument `kind`: \"fs.[\" is not a glob"),
            "{e}"
        );
    }
}
