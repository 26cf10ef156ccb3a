//! Audit logs as typed records: each line parsed strictly and its hash checked
//! (`airlock_audit::Record::parse_checked`), so a test asserts on fields (`kind`, `decision`,
//! `rule`, `fs.path`, ...), never on substrings of JSON lines.

pub use airlock_audit::{Decision, Event, FsInfo, NetInfo, ProcInfo, Record, Source, kind};
use std::fmt;
use std::path::Path;

/// One audit log, read whole.
#[derive(Debug, Clone)]
pub struct Log {
    /// Its records, in order.
    pub records: Vec<Record>,
}

impl Log {
    /// Reads and checks every line of the log at `path`; panics naming the first bad line.
    pub fn read(path: &Path) -> Log {
        let text = std::fs::read(path)
            .unwrap_or_else(|e| panic!("reading audit log {}: {e}", path.display()));
        Log::parse(&path.display().to_string(), &text)
    }

    /// Checks every line of `text`, records as written to a log (e.g. the body of the API's
    /// `/events`); panics naming `origin` and the first bad line.
    pub fn parse(origin: &str, text: &[u8]) -> Log {
        let records = text
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .enumerate()
            .map(|(i, line)| {
                Record::parse_checked(line).unwrap_or_else(|e| {
                    panic!(
                        "{origin}: line {}: {e}: {}",
                        i + 1,
                        String::from_utf8_lossy(line)
                    )
                })
            })
            .collect();
        Log { records }
    }

    /// The events, in order.
    pub fn events(&self) -> impl Iterator<Item = &Event> {
        self.records.iter().map(|r| &r.event)
    }

    /// The events of `kind`.
    pub fn of_kind<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Event> + 'a {
        self.events().filter(move |e| e.kind == kind)
    }

    /// The first event matching `pred`.
    pub fn find(&self, pred: impl Fn(&Event) -> bool) -> Option<&Event> {
        self.events().find(|e| pred(e))
    }

    /// Whether an event matches `pred`.
    pub fn has(&self, pred: impl Fn(&Event) -> bool) -> bool {
        self.find(pred).is_some()
    }

    /// The first event of `kind`; panics, showing the log, if there is none.
    pub fn first(&self, kind: &str) -> &Event {
        self.events()
            .find(|e| e.kind == kind)
            .unwrap_or_else(|| panic!("no {kind} record in:\n{self}"))
    }
}

/// `kind` with `decision`.
pub fn is(kind: &str, decision: Decision) -> impl Fn(&Event) -> bool + '_ {
    move |e| e.kind == kind && e.decision == Some(decision)
}

/// `kind` observed by `source`.
pub fn from(source: Source, kind: &str) -> impl Fn(&Event) -> bool + '_ {
    move |e| e.source == source && e.kind == kind
}

/// `kind` with `decision` on share path `path`.
pub fn fs_is<'a>(kind: &'a str, decision: Decision, path: &'a str) -> impl Fn(&Event) -> bool + 'a {
    move |e| {
        e.kind == kind
            && e.decision == Some(decision)
            && e.fs.as_ref().is_some_and(|f| f.path == path)
    }
}

/// `kind` with `decision` for host `host`.
pub fn net_is<'a>(
    kind: &'a str,
    decision: Decision,
    host: &'a str,
) -> impl Fn(&Event) -> bool + 'a {
    move |e| {
        e.kind == kind
            && e.decision == Some(decision)
            && e.net
                .as_ref()
                .is_some_and(|n| n.host.as_deref() == Some(host))
    }
}

impl fmt::Display for Log {
    /// One line per record: seq, source, kind, decision, rule, subject; for failure messages.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for r in &self.records {
            let e = &r.event;
            let subject =
                e.fs.as_ref()
                    .map(|x| x.path.clone())
                    .or_else(|| e.net.as_ref().and_then(|n| n.host.clone()))
                    .or_else(|| e.proc.as_ref().map(|p| p.argv.join(" ")))
                    .unwrap_or_default();
            writeln!(
                f,
                "{:>4} {:?} {} {:?} {} {} {}",
                r.seq,
                e.source,
                e.kind,
                e.decision,
                e.rule.as_deref().unwrap_or(""),
                subject,
                e.detail.as_deref().unwrap_or("")
            )?;
        }
        Ok(())
    }
}
