//! The audit record schema and its canonical encoding. Producers (gateways, supervisor) build
//! an [`Event`]; the chain appender wraps it into a [`Record`] with `seq`, `ts`, `sandbox`,
//! `prev` and `hash`; the verifier and the reader parse records back with [`Record::parse`].
//!
//! **Canonical bytes.** A record's line is the JSON object produced by serializing the record
//! with keys in this fixed order, `None` fields and empty lists omitted, no whitespace, and
//! `serde_json`'s string escaping:
//!
//! `seq, ts, sandbox, source, kind, decision, rule, reason, fs, net, proc, count, detail, prev, hash`
//!
//! (nested objects likewise in declared order). `hash` is the lowercase hex SHA-256 of the
//! same object *without* its `hash` key, i.e. of the exact bytes up to and excluding
//! `,"hash":`, followed by `}`. A verifier recomputes those bytes from the parsed values, so
//! any edit — including one that keeps the JSON meaning, like added whitespace — is caught.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::time::Timestamp;

/// `prev` of the first record: 64 zeros.
pub const ZERO_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The documented event kinds (see `docs/audit.md`).
pub mod kind;

/// Whether a kind is well formed: at least two dot-separated segments of `[a-z0-9_]`.
pub fn is_valid_kind(kind: &str) -> bool {
    let mut segments = 0;
    for seg in kind.split('.') {
        if seg.is_empty()
            || !seg
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            return false;
        }
        segments += 1;
    }
    segments >= 2
}

/// Who observed an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// Observed by a host component (gateway, supervisor): authoritative.
    Host,
    /// Reported by the in-guest agent: informative, never authoritative.
    Guest,
}

impl Source {
    /// The keyword written in records.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Host => "host",
            Self::Guest => "guest",
        }
    }
}

/// The outcome recorded for an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    /// Allowed by policy.
    Allow,
    /// Refused by policy.
    Deny,
    /// Failed for a reason other than policy.
    Error,
}

impl Decision {
    /// The keyword written in records.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
            Self::Error => "error",
        }
    }
}

/// Filesystem subject of an event, as seen at the fs gateway.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FsInfo {
    /// Operation as the gateway saw it, e.g. `open`, `write`, `rename`, `unlink`.
    pub op: String,
    /// Guest path the operation names (guest-controlled).
    pub path: String,
    /// Second path: rename/link destination or symlink target (guest-controlled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// Guest mount point of the share, e.g. `/workspace`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mount: Option<String>,
}

/// Network subject of an event, as seen at the egress gateway.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetInfo {
    /// Requested host name or address literal (guest-controlled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Requested port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Address the host resolved and connected to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// HTTP method (guest-controlled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// HTTP request path (guest-controlled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// HTTP response status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Bytes from the remote to the guest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_in: Option<u64>,
    /// Bytes from the guest to the remote.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_out: Option<u64>,
    /// Connection or request duration in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// The credential injected or whose placeholder leaked (its name, never its value).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

/// Process subject of an event, as reported by the guest agent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcInfo {
    /// Guest process id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// Guest parent process id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ppid: Option<u32>,
    /// Guest user id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    /// Command line (guest-controlled).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub argv: Vec<String>,
    /// Working directory (guest-controlled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    /// Exit status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit: Option<i32>,
    /// Terminating signal number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
}

/// What a producer reports: everything in a record except what the chain assigns
/// (`seq`, `ts`, `sandbox`, `prev`, `hash`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Who observed it.
    pub source: Source,
    /// Dotted kind, e.g. `fs.write`; see [`kind`].
    pub kind: String,
    /// Outcome, for events that record a decision.
    pub decision: Option<Decision>,
    /// The policy entry that decided, e.g. `network.allow[2] "api.example.com"`.
    pub rule: Option<String>,
    /// Why, as a snake_case constant shared with error replies (`airlock_policy::reason`,
    /// e.g. `not_allowed`, `protected_path`).
    pub reason: Option<String>,
    /// Filesystem subject.
    pub fs: Option<FsInfo>,
    /// Network subject.
    pub net: Option<NetInfo>,
    /// Process subject.
    pub proc: Option<ProcInfo>,
    /// A count the kind defines, e.g. dropped events for `audit.dropped`.
    pub count: Option<u64>,
    /// Free text: explanation, message, error.
    pub detail: Option<String>,
    /// Fields cut to the record's cap ([`crate::cap_fields`]), with their full length and hash.
    pub cut: Vec<Cut>,
}

/// A text field longer than the record's cap: kept as its first bytes, with what was there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cut {
    /// Which field, e.g. `net.path` or `proc.argv[2]`.
    pub field: String,
    /// Its full length in bytes.
    pub len: u64,
    /// SHA-256 of its full value, hex.
    pub sha256: String,
}

impl Event {
    /// An event of `kind` with no other fields.
    pub fn new(source: Source, kind: impl Into<String>) -> Self {
        Self {
            source,
            kind: kind.into(),
            decision: None,
            rule: None,
            reason: None,
            fs: None,
            net: None,
            proc: None,
            count: None,
            detail: None,
            cut: Vec::new(),
        }
    }

    /// Sets `decision`.
    pub fn with_decision(mut self, decision: Decision) -> Self {
        self.decision = Some(decision);
        self
    }

    /// Sets `rule`.
    pub fn with_rule(mut self, rule: impl Into<String>) -> Self {
        self.rule = Some(rule.into());
        self
    }

    /// Sets `reason`.
    pub fn with_reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }

    /// Sets `fs`.
    pub fn with_fs(mut self, fs: FsInfo) -> Self {
        self.fs = Some(fs);
        self
    }

    /// Sets `net`.
    pub fn with_net(mut self, net: NetInfo) -> Self {
        self.net = Some(net);
        self
    }

    /// Sets `proc`.
    pub fn with_proc(mut self, proc: ProcInfo) -> Self {
        self.proc = Some(proc);
        self
    }

    /// Sets `count`.
    pub fn with_count(mut self, count: u64) -> Self {
        self.count = Some(count);
        self
    }

    /// Sets `detail`.
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }
}

/// One line of the log: an event plus the fields the chain assigned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Position in the chain, from 1, without gaps.
    pub seq: u64,
    /// When the appender stamped the record.
    pub ts: Timestamp,
    /// Sandbox id.
    pub sandbox: String,
    /// The event.
    pub event: Event,
    /// `hash` of the previous record, [`ZERO_HASH`] for the first.
    pub prev: String,
    /// Lowercase hex SHA-256 of the canonical record without `hash`.
    pub hash: String,
}

/// Why a line is not a valid record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// Not JSON of the record shape (bad syntax, unknown or duplicate field, wrong type).
    #[error("unparseable record: {0}")]
    Syntax(String),
    /// The stated hash is not the hash of the record's contents.
    #[error("hash mismatch: record says {stated}, contents hash to {computed}")]
    HashMismatch {
        /// `hash` as written.
        stated: String,
        /// Hash recomputed from the parsed fields.
        computed: String,
    },
    /// The hash is right but the bytes are not the canonical encoding (reformatted, reordered
    /// keys, `null` fields, different escaping).
    #[error("record is not in canonical form (reformatted after it was written)")]
    NotCanonical,
}

/// Canonical body: the record without `hash`. Keys in this struct's declared order.
#[derive(Serialize)]
struct Body<'a> {
    seq: u64,
    ts: Timestamp,
    sandbox: &'a str,
    source: Source,
    kind: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    decision: Option<Decision>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rule: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fs: Option<&'a FsInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    net: Option<&'a NetInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    proc: Option<&'a ProcInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    count: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<&'a str>,
    #[serde(skip_serializing_if = "<[Cut]>::is_empty")]
    cut: &'a [Cut],
    prev: &'a str,
}

impl<'a> Body<'a> {
    fn new(seq: u64, ts: Timestamp, sandbox: &'a str, event: &'a Event, prev: &'a str) -> Self {
        Self {
            seq,
            ts,
            sandbox,
            source: event.source,
            kind: &event.kind,
            decision: event.decision,
            rule: event.rule.as_deref(),
            reason: event.reason.as_deref(),
            fs: event.fs.as_ref(),
            net: event.net.as_ref(),
            proc: event.proc.as_ref(),
            count: event.count,
            detail: event.detail.as_deref(),
            cut: &event.cut,
            prev,
        }
    }
}

/// The on-disk shape, for parsing.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    seq: u64,
    ts: Timestamp,
    sandbox: String,
    source: Source,
    kind: String,
    #[serde(default)]
    decision: Option<Decision>,
    #[serde(default)]
    rule: Option<String>,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    fs: Option<FsInfo>,
    #[serde(default)]
    net: Option<NetInfo>,
    #[serde(default)]
    proc: Option<ProcInfo>,
    #[serde(default)]
    count: Option<u64>,
    #[serde(default)]
    detail: Option<String>,
    #[serde(default)]
    cut: Vec<Cut>,
    prev: String,
    hash: String,
}

/// Serializes a value the schema can always represent; a failure here would be a bug in the
/// types above (no maps with non-string keys, no floats), so it degrades to an empty object
/// rather than panicking, and the resulting hash mismatch is caught by verification.
fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec())
}

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Splices `"hash":"<hex>"` in before the closing brace of a canonical body and appends `\n`.
fn seal(mut body: Vec<u8>, hash: &str) -> Vec<u8> {
    body.pop(); // the closing '}'
    body.reserve(hash.len() + 12);
    body.extend_from_slice(b",\"hash\":\"");
    body.extend_from_slice(hash.as_bytes());
    body.extend_from_slice(b"\"}\n");
    body
}

/// Encodes a new record: returns its line (with trailing `\n`) and its hash.
pub(crate) fn encode(
    seq: u64,
    ts: Timestamp,
    sandbox: &str,
    event: &Event,
    prev: &str,
) -> (Vec<u8>, String) {
    let body = to_json(&Body::new(seq, ts, sandbox, event, prev));
    let hash = sha256_hex(&body);
    (seal(body, &hash), hash)
}

impl Record {
    /// Parses one line (without its `\n`) into a record. This checks the JSON shape only;
    /// [`Record::check`] checks the hash and canonical form.
    pub fn parse(line: &[u8]) -> Result<Self, RecordError> {
        let l: Line =
            serde_json::from_slice(line).map_err(|e| RecordError::Syntax(e.to_string()))?;
        Ok(Self {
            seq: l.seq,
            ts: l.ts,
            sandbox: l.sandbox,
            event: Event {
                source: l.source,
                kind: l.kind,
                decision: l.decision,
                rule: l.rule,
                reason: l.reason,
                fs: l.fs,
                net: l.net,
                proc: l.proc,
                count: l.count,
                detail: l.detail,
                cut: l.cut,
            },
            prev: l.prev,
            hash: l.hash,
        })
    }

    /// Parses a line and checks that its hash matches its contents and that the line is
    /// exactly the canonical encoding.
    pub fn parse_checked(line: &[u8]) -> Result<Self, RecordError> {
        let record = Self::parse(line)?;
        record.check(line)?;
        Ok(record)
    }

    /// Checks this record, parsed from `line` (without `\n`), against the line's bytes.
    pub fn check(&self, line: &[u8]) -> Result<(), RecordError> {
        let body = to_json(&Body::new(
            self.seq,
            self.ts,
            &self.sandbox,
            &self.event,
            &self.prev,
        ));
        let computed = sha256_hex(&body);
        if computed != self.hash {
            return Err(RecordError::HashMismatch {
                stated: self.hash.clone(),
                computed,
            });
        }
        let canonical = seal(body, &computed);
        if canonical.get(..canonical.len() - 1) != Some(line) {
            return Err(RecordError::NotCanonical);
        }
        Ok(())
    }

    /// The canonical line for this record, including the trailing `\n` (with `hash` as
    /// stored, so a tampered record re-encodes as tampered).
    pub fn to_line(&self) -> Vec<u8> {
        seal(
            to_json(&Body::new(
                self.seq,
                self.ts,
                &self.sandbox,
                &self.event,
                &self.prev,
            )),
            &self.hash,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Event {
        Event::new(Source::Host, kind::FS_WRITE)
            .with_decision(Decision::Allow)
            .with_rule("filesystem.share[0]")
            .with_reason("allowed")
            .with_fs(FsInfo {
                op: "write".into(),
                path: "/workspace/a\nb".into(),
                to: None,
                mount: Some("/workspace".into()),
            })
    }

    #[test]
    fn canonical_line_has_fixed_key_order_and_hash_of_body() {
        let ts: Timestamp = "2026-11-27T03:12:45.123Z".parse().unwrap();
        let (line, hash) = encode(1, ts, "sb1", &sample(), ZERO_HASH);
        let body = format!(
            concat!(
                r#"{{"seq":1,"ts":"2026-11-27T03:12:45.123Z","sandbox":"sb1","source":"host","#,
                r#""kind":"fs.write","decision":"allow","rule":"filesystem.share[0]","reason":"allowed","#,
                r#""fs":{{"op":"write","path":"/workspace/a\nb","mount":"/workspace"}},"#,
                r#""prev":"{}"}}"#
            ),
            ZERO_HASH
        );
        assert_eq!(hash, hex::encode(Sha256::digest(body.as_bytes())));
        let want = format!("{},\"hash\":\"{hash}\"}}\n", &body[..body.len() - 1]);
        assert_eq!(String::from_utf8(line).unwrap(), want);
    }

    #[test]
    fn round_trip() {
        let ts = Timestamp::from_millis(1_795_749_165_123);
        let mut event = sample();
        event.net = Some(NetInfo {
            host: Some("example.com".into()),
            port: Some(443),
            bytes_in: Some(10),
            ..NetInfo::default()
        });
        event.proc = Some(ProcInfo {
            argv: vec!["sh".into(), "-c".into(), "echo \u{1b}]0;x\u{7}".into()],
            exit: Some(-1),
            ..ProcInfo::default()
        });
        event.count = Some(3);
        event.detail = Some("détail \"quoted\"".into());
        let (line, hash) = encode(7, ts, "sb1", &event, ZERO_HASH);
        let record = Record::parse_checked(&line[..line.len() - 1]).unwrap();
        assert_eq!(
            record,
            Record {
                seq: 7,
                ts,
                sandbox: "sb1".into(),
                event,
                prev: ZERO_HASH.into(),
                hash,
            }
        );
        assert_eq!(record.to_line(), line);
    }

    #[test]
    fn rejects_edits_reformatting_and_unknown_fields() {
        let ts = Timestamp::from_millis(0);
        let (line, hash) = encode(1, ts, "sb1", &sample(), ZERO_HASH);
        let line = String::from_utf8(line).unwrap();
        let line = line.trim_end();

        let edited = line.replace("allow", "deny\"");
        assert!(matches!(
            Record::parse_checked(edited.as_bytes()),
            Err(RecordError::Syntax(_))
        ));
        let edited = line.replace("allow", "deny");
        assert!(matches!(
            Record::parse_checked(edited.as_bytes()),
            Err(RecordError::HashMismatch { stated, .. }) if stated == hash
        ));
        let spaced = line.replacen(",", ", ", 1);
        assert_eq!(
            Record::parse_checked(spaced.as_bytes()),
            Err(RecordError::NotCanonical)
        );
        let escaped = line.replacen("sb1", "sb\\u0031", 1);
        assert_eq!(
            Record::parse_checked(escaped.as_bytes()),
            Err(RecordError::NotCanonical)
        );
        let nulled = line.replacen("\"prev\"", "\"count\":null,\"prev\"", 1);
        assert_eq!(
            Record::parse_checked(nulled.as_bytes()),
            Err(RecordError::NotCanonical)
        );
        let extra = line.replacen("\"prev\"", "\"extra\":1,\"prev\"", 1);
        assert!(matches!(
            Record::parse_checked(extra.as_bytes()),
            Err(RecordError::Syntax(e)) if e.contains("unknown field `extra`")
        ));
        let dup = line.replacen("\"prev\"", "\"rule\":\"x\",\"prev\"", 1);
        assert!(matches!(
            Record::parse_checked(dup.as_bytes()),
            Err(RecordError::Syntax(e)) if e.contains("duplicate field `rule`")
        ));
    }

    #[test]
    fn kind_names() {
        for ok in [kind::FS_WRITE, kind::AUDIT_DROPPED, "a.b.c", "net.x_1"] {
            assert!(is_valid_kind(ok), "{ok}");
        }
        for bad in [
            "",
            "fs",
            "fs.",
            ".fs",
            "Fs.write",
            "fs..write",
            "fs.wr ite",
            "fs.*",
        ] {
            assert!(!is_valid_kind(bad), "{bad}");
        }
    }
}
