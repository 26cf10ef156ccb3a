//! Reading a log back for `airlock audit show` and `airlock events`: [`read_log`] parses the
//! records that pass a [`Filter`], and [`format_timeline`] / [`format_record`] render one
//! human line per record, with every string passed through [`display_safe`] so guest text
//! cannot forge lines or drive the terminal. Reading does not verify the chain; that is
//! [`crate::verify`]'s job.

use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, BufRead as _, BufReader};
use std::path::{Path, PathBuf};

use globset::{GlobBuilder, GlobMatcher};

use crate::escape::display_safe;
use crate::event::{Decision, Record, RecordError};
use crate::time::Timestamp;

/// Which records [`read_log`] returns. Empty fields match everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Glob on the kind, `*` matching across dots (`net.*`, `*.deny`).
    pub kind: Option<String>,
    /// Only records with this decision.
    pub decision: Option<Decision>,
    /// Only records stamped at or after this time.
    pub since: Option<Timestamp>,
}

/// Errors reading a log.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The file could not be read.
    #[error("reading audit log {}", path.display())]
    Io {
        /// The log.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The kind filter is not a valid glob.
    #[error("invalid kind filter {glob:?}: {reason}")]
    BadFilter {
        /// The glob.
        glob: String,
        /// Why.
        reason: String,
    },
    /// A complete line is not a record.
    #[error("audit log {}, line {line}", path.display())]
    Line {
        /// The log.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// Why.
        #[source]
        source: RecordError,
    },
}

struct CompiledFilter {
    kind: Option<GlobMatcher>,
    decision: Option<Decision>,
    since: Option<Timestamp>,
}

impl CompiledFilter {
    fn new(f: &Filter) -> Result<Self, ReadError> {
        let kind = match &f.kind {
            None => None,
            Some(g) => Some(
                GlobBuilder::new(g)
                    .build()
                    .map_err(|e| ReadError::BadFilter {
                        glob: g.clone(),
                        reason: e.kind().to_string(),
                    })?
                    .compile_matcher(),
            ),
        };
        Ok(Self {
            kind,
            decision: f.decision,
            since: f.since,
        })
    }

    fn matches(&self, r: &Record) -> bool {
        self.kind.as_ref().is_none_or(|k| k.is_match(&r.event.kind))
            && self.decision.is_none_or(|d| r.event.decision == Some(d))
            && self.since.is_none_or(|t| r.ts >= t)
    }
}

/// Parses the complete lines of the log at `path` and returns the records matching `filter`,
/// in file order. An incomplete last line is ignored.
pub fn read_log(path: &Path, filter: &Filter) -> Result<Vec<Record>, ReadError> {
    let filter = CompiledFilter::new(filter)?;
    let io_err = |source| ReadError::Io {
        path: path.to_owned(),
        source,
    };
    let mut reader = BufReader::new(File::open(path).map_err(io_err)?);
    let mut out = Vec::new();
    let mut buf = Vec::new();
    let mut line = 0;
    loop {
        buf.clear();
        if reader.read_until(b'\n', &mut buf).map_err(io_err)? == 0 {
            break;
        }
        let Some(text) = buf.strip_suffix(b"\n") else {
            break;
        };
        line += 1;
        let record = Record::parse(text).map_err(|source| ReadError::Line {
            path: path.to_owned(),
            line,
            source,
        })?;
        if filter.matches(&record) {
            out.push(record);
        }
    }
    Ok(out)
}

/// Quotes an argv element for display: escaped, and in double quotes when it is empty or
/// contains spaces or quotes, so element boundaries stay visible.
fn display_arg(arg: &str) -> String {
    let safe = display_safe(arg);
    if safe.is_empty() || safe.contains([' ', '"', '\'']) {
        format!("\"{}\"", safe.replace('"', "\\\""))
    } else {
        safe
    }
}

/// One human line for a record (no trailing newline):
/// `seq  ts  source  kind  decision  rule=…  subject  detail`.
pub fn format_record(r: &Record) -> String {
    let e = &r.event;
    let mut s = format!(
        "{:>6}  {}  {:<5}  {:<15}  {:<5}",
        r.seq,
        r.ts,
        e.source.as_str(),
        display_safe(&e.kind),
        e.decision.map_or("-", Decision::as_str),
    );
    if let Some(rule) = &e.rule {
        let _ = write!(s, "  rule={}", display_safe(rule));
    }
    if let Some(reason) = &e.reason {
        let _ = write!(s, "  reason={}", display_safe(reason));
    }
    if let Some(fs) = &e.fs {
        let _ = write!(s, "  {}", display_safe(&fs.path));
        if let Some(to) = &fs.to {
            let _ = write!(s, " -> {}", display_safe(to));
        }
    }
    if let Some(n) = &e.net {
        s.push(' ');
        if let Some(h) = &n.host {
            let _ = write!(s, " {}", display_safe(h));
            if let Some(p) = n.port {
                let _ = write!(s, ":{p}");
            }
        }
        if let Some(ip) = &n.ip {
            let _ = write!(s, " ip={}", display_safe(ip));
        }
        if let Some(m) = &n.method {
            let _ = write!(s, " {}", display_safe(m));
        }
        if let Some(p) = &n.path {
            let _ = write!(s, " {}", display_safe(p));
        }
        if let Some(st) = n.status {
            let _ = write!(s, " status={st}");
        }
        if let Some(b) = n.bytes_in {
            let _ = write!(s, " in={b}");
        }
        if let Some(b) = n.bytes_out {
            let _ = write!(s, " out={b}");
        }
        if let Some(d) = n.duration_ms {
            let _ = write!(s, " {d}ms");
        }
    }
    if let Some(p) = &e.proc {
        s.push(' ');
        if let Some(pid) = p.pid {
            let _ = write!(s, " pid={pid}");
        }
        if let Some(uid) = p.uid {
            let _ = write!(s, " uid={uid}");
        }
        if let Some(cwd) = &p.cwd {
            let _ = write!(s, " cwd={}", display_arg(cwd));
        }
        for arg in &p.argv {
            let _ = write!(s, " {}", display_arg(arg));
        }
        if let Some(x) = p.exit {
            let _ = write!(s, " exit={x}");
        }
        if let Some(sig) = p.signal {
            let _ = write!(s, " signal={sig}");
        }
    }
    if let Some(c) = e.count {
        let _ = write!(s, "  count={c}");
    }
    if let Some(d) = &e.detail {
        let _ = write!(s, "  {}", display_safe(d));
    }
    // Column padding of an event without rule or subject.
    s.truncate(s.trim_end_matches(' ').len());
    s
}

/// One line per record, each ending in `\n`.
pub fn format_timeline(records: &[Record]) -> String {
    let mut out = String::new();
    for r in records {
        out.push_str(&format_record(r));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::{Chain, ChainOptions};
    use crate::checkpoint::HostKey;
    use crate::event::{Event, FsInfo, NetInfo, ProcInfo, Source, kind};

    fn write_log(path: &Path) {
        let (mut chain, _) =
            Chain::open(path, ChainOptions::new("sb1", HostKey::generate().unwrap())).unwrap();
        let events = [
            Event::new(Source::Host, kind::SANDBOX_START),
            Event::new(Source::Host, kind::FS_WRITE)
                .with_decision(Decision::Allow)
                .with_rule("filesystem.share[0]")
                .with_fs(FsInfo {
                    op: "write".into(),
                    path: "/workspace/evil\n     9  forged\x1b]0;title\x07".into(),
                    to: None,
                    mount: Some("/workspace".into()),
                }),
            Event::new(Source::Host, kind::NET_CONNECT)
                .with_decision(Decision::Deny)
                .with_rule("network.default")
                .with_reason("not_allowed")
                .with_net(NetInfo {
                    host: Some("evil.example".into()),
                    port: Some(443),
                    ..NetInfo::default()
                }),
            Event::new(Source::Guest, kind::PROC_EXEC).with_proc(ProcInfo {
                pid: Some(42),
                argv: vec!["sh".into(), "-c".into(), "echo \u{202e}hi".into()],
                ..ProcInfo::default()
            }),
        ];
        for e in &events {
            chain.append(e).unwrap();
        }
        chain.finish().unwrap();
    }

    fn strip_ts(s: &str) -> String {
        s.lines()
            .map(|l| format!("{}{}", &l[..8], &l[32..]))
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn timeline_escapes_guest_text() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        write_log(&path);
        let records = read_log(&path, &Filter::default()).unwrap();
        let text = format_timeline(&records);
        assert_eq!(text.lines().count(), 4);
        assert!(!text.contains('\x1b') && !text.contains('\u{202e}'));
        assert_eq!(
            strip_ts(&text),
            [
                "     1    host   sandbox.start    -",
                "     2    host   fs.write         allow  rule=filesystem.share[0]  /workspace/evil\\n     9  forged\\x1b]0;title\\x07",
                "     3    host   net.connect      deny   rule=network.default  reason=not_allowed  evil.example:443",
                "     4    guest  proc.exec        -      pid=42 sh -c \"echo \\u{202e}hi\"",
            ]
            .join("\n")
        );
    }

    #[test]
    fn filters() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        write_log(&path);
        let seqs = |f: Filter| -> Vec<u64> {
            read_log(&path, &f).unwrap().iter().map(|r| r.seq).collect()
        };
        assert_eq!(seqs(Filter::default()), [1, 2, 3, 4]);
        let kind = |k: &str| Filter {
            kind: Some(k.into()),
            ..Filter::default()
        };
        assert_eq!(seqs(kind("net.*")), [3]);
        assert_eq!(seqs(kind("*.*t")), [1, 3]);
        assert_eq!(
            seqs(Filter {
                decision: Some(Decision::Allow),
                ..Filter::default()
            }),
            [2]
        );
        let future = Timestamp::from_millis(Timestamp::now().as_millis() + 3_600_000);
        assert_eq!(
            seqs(Filter {
                since: Some(future),
                ..Filter::default()
            }),
            Vec::<u64>::new()
        );
        assert_eq!(
            seqs(Filter {
                since: Some("2020-01-01".parse().unwrap()),
                ..Filter::default()
            }),
            [1, 2, 3, 4]
        );
        assert!(matches!(
            read_log(&path, &kind("[")),
            Err(ReadError::BadFilter { .. })
        ));
    }
}
