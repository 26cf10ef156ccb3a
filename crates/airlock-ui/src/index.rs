//! An index of one audit log, built by reading it once and extended as it grows: for each
//! record its place in the file and the fields the timeline filters on, plus the sums the
//! sandbox list and the charts show. Pages of records are read back from the file by offset,
//! so a log of 100,000 records costs a few megabytes of index, not a copy of the log.
//!
//! The log is guest-influenced data: every line is parsed strictly (`Record::parse`), a line
//! that does not parse is indexed as `unreadable` and shown as such, and every map built from
//! guest-chosen strings (hosts) is bounded.

use airlock_audit::{Decision, Record, Source, kind};
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::{Read as _, Seek as _, SeekFrom};
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};

/// The areas a record's kind falls in (its first segment), in the order the page shows them.
pub const AREAS: [&str; 11] = [
    "fs",
    "net",
    "proc",
    "policy",
    "monitor",
    "credential",
    "sandbox",
    "audit",
    "user",
    "other",
    "unreadable",
];
const OTHER: u8 = 9;
const UNREADABLE: u8 = 10;

/// Decisions as filtered: `none` is a record without one.
pub const DECISIONS: [&str; 4] = ["allow", "deny", "error", "none"];

/// Most destination hosts kept for the bytes-per-host chart; the rest are summed as `(other)`.
pub const MAX_HOSTS: usize = 500;
/// Most refused file changes listed beside the diff.
pub const MAX_REFUSED: usize = 1000;
/// Longest line indexed; a longer one (never written by airlock) is indexed as unreadable.
const MAX_LINE: usize = 1 << 20;

/// Where one record is and what the filters look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// Byte offset of the line.
    pub offset: u64,
    /// Length of the line without its `\n`.
    pub len: u32,
    /// 1-based line number.
    pub line: u32,
    /// The record's seq (0 for an unreadable line).
    pub seq: u64,
    /// Index into [`AREAS`].
    pub area: u8,
    /// Index into [`DECISIONS`].
    pub decision: u8,
    /// 0 host, 1 guest, 2 unknown.
    pub source: u8,
}

/// A refused change of a file, listed beside the overlay diff.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Refused {
    /// The record.
    pub seq: u64,
    /// `fs.write`, `fs.create`, ...
    pub kind: String,
    /// Guest path.
    pub path: String,
    /// The rule that refused it.
    pub rule: Option<String>,
    /// Why.
    pub reason: Option<String>,
}

/// What the sandbox list and the header of a sandbox show.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Records indexed.
    pub records: u64,
    /// Lines that are not records.
    pub unreadable: u64,
    /// Time of the first record.
    pub started: Option<String>,
    /// Time of the `sandbox.end` record.
    pub ended: Option<String>,
    /// Time of the last record.
    pub last: Option<String>,
    /// Image, from `sandbox.start`.
    pub image: Option<String>,
    /// Policy origin, from `sandbox.start`.
    pub policy: Option<String>,
    /// Accelerator, from `sandbox.start`.
    pub accel: Option<String>,
    /// Shares, from `sandbox.bind`.
    pub shares: Option<String>,
    /// How it ended, from `sandbox.end`.
    pub end: Option<String>,
    /// The exit status airlock gave, when `sandbox.end` says.
    pub exit: Option<i64>,
    /// Filesystem operations recorded.
    pub fs_ops: u64,
    /// Network requests recorded.
    pub net_requests: u64,
    /// Bytes into the sandbox.
    pub bytes_in: u64,
    /// Bytes out of the sandbox.
    pub bytes_out: u64,
    /// Processes the guest reported.
    pub processes: u64,
    /// Denials by area.
    pub denials: BTreeMap<String, u64>,
}

/// Per-host traffic for the chart.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct HostTraffic {
    /// Bytes received.
    pub bytes_in: u64,
    /// Bytes sent.
    pub bytes_out: u64,
    /// Requests or connections.
    pub requests: u64,
    /// Of which denied.
    pub denied: u64,
}

/// The index of one log.
#[derive(Debug)]
pub struct LogIndex {
    path: PathBuf,
    entries: Vec<Entry>,
    /// Bytes of the file indexed (always at a line end).
    indexed: u64,
    summary: Summary,
    /// Records per minute (epoch minute) and area.
    minutes: BTreeMap<u64, [u64; AREAS.len()]>,
    hosts: BTreeMap<String, HostTraffic>,
    refused: Vec<Refused>,
}

/// A filter of the timeline.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    /// Areas to keep (indexes into [`AREAS`]); empty keeps all.
    pub areas: Vec<u8>,
    /// Decisions to keep (indexes into [`DECISIONS`]); empty keeps all.
    pub decisions: Vec<u8>,
    /// Source to keep: 0 host, 1 guest; `None` keeps both.
    pub source: Option<u8>,
    /// Only records with a seq above this.
    pub after: u64,
}

impl Query {
    /// Whether `e` passes.
    pub fn keeps(&self, e: &Entry) -> bool {
        (self.areas.is_empty() || self.areas.contains(&e.area))
            && (self.decisions.is_empty() || self.decisions.contains(&e.decision))
            && self.source.is_none_or(|s| s == e.source)
            && (e.seq > self.after || (self.after == 0 && e.seq == 0))
    }
}

impl LogIndex {
    /// An empty index of the log at `path` (call [`refresh`](Self::refresh) to read it).
    pub fn new(path: &Path) -> LogIndex {
        LogIndex {
            path: path.to_owned(),
            entries: Vec::new(),
            indexed: 0,
            summary: Summary::default(),
            minutes: BTreeMap::new(),
            hosts: BTreeMap::new(),
            refused: Vec::new(),
        }
    }

    /// The log file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads what was appended since the last call. A file that shrank (cut or replaced) is
    /// indexed again from the start. Returns how many entries were added.
    pub fn refresh(&mut self) -> std::io::Result<usize> {
        let mut file = std::fs::File::open(&self.path)?;
        let len = file.metadata()?.len();
        if len < self.indexed {
            *self = LogIndex::new(&self.path);
        }
        if len == self.indexed {
            return Ok(0);
        }
        file.seek(SeekFrom::Start(self.indexed))?;
        let mut buf = Vec::new();
        file.take(len - self.indexed).read_to_end(&mut buf)?;
        let before = self.entries.len();
        let mut start = 0usize;
        while let Some(nl) = buf
            .get(start..)
            .and_then(|b| b.iter().position(|&c| c == b'\n'))
        {
            let end = start + nl;
            let line = buf.get(start..end).unwrap_or_default();
            let offset = self.indexed + start as u64;
            self.add(offset, line);
            start = end + 1;
        }
        // An incomplete last line (being written) waits for its newline.
        self.indexed += start as u64;
        Ok(self.entries.len() - before)
    }

    fn add(&mut self, offset: u64, line: &[u8]) {
        let number = u32::try_from(self.entries.len() + 1).unwrap_or(u32::MAX);
        let len = u32::try_from(line.len()).unwrap_or(u32::MAX);
        let parsed = if line.len() > MAX_LINE {
            None
        } else {
            Record::parse(line).ok()
        };
        let Some(r) = parsed else {
            self.summary.unreadable += 1;
            self.entries.push(Entry {
                offset,
                len,
                line: number,
                seq: 0,
                area: UNREADABLE,
                decision: 3,
                source: 2,
            });
            return;
        };
        let area = area_of(&r.event.kind);
        let decision = match r.event.decision {
            Some(Decision::Allow) => 0,
            Some(Decision::Deny) => 1,
            Some(Decision::Error) => 2,
            None => 3,
        };
        let source = match r.event.source {
            Source::Host => 0,
            Source::Guest => 1,
        };
        self.entries.push(Entry {
            offset,
            len,
            line: number,
            seq: r.seq,
            area,
            decision,
            source,
        });
        self.account(&r, area);
    }

    fn account(&mut self, r: &Record, area: u8) {
        let e = &r.event;
        let ts = r.ts.to_string();
        let s = &mut self.summary;
        s.records += 1;
        if s.started.is_none() {
            s.started = Some(ts.clone());
        }
        s.last = Some(ts);
        let minute = r.ts.as_millis() / 60_000;
        // A log spans at most one row per minute it ran; a forged far-apart timestamp adds one.
        if let Some(row) = self.minutes.get_mut(&minute) {
            if let Some(c) = row.get_mut(usize::from(area)) {
                *c += 1;
            }
        } else if self.minutes.len() < 100_000 {
            let mut row = [0; AREAS.len()];
            if let Some(c) = row.get_mut(usize::from(area)) {
                *c = 1;
            }
            self.minutes.insert(minute, row);
        }
        if e.decision == Some(Decision::Deny) {
            let name = AREAS.get(usize::from(area)).copied().unwrap_or("other");
            *s.denials.entry(name.to_string()).or_default() += 1;
        }
        match e.kind.as_str() {
            kind::SANDBOX_START => {
                if let Some(d) = &e.detail {
                    let (policy, image, accel) = parse_start(d);
                    s.policy = policy;
                    s.image = image;
                    s.accel = accel;
                }
            }
            kind::SANDBOX_BIND => {
                s.shares = e.detail.as_deref().and_then(|d| {
                    let rest = d.split_once("shares: ")?.1;
                    Some(
                        rest.rsplit_once("; bound in")
                            .map_or(rest, |(a, _)| a)
                            .to_string(),
                    )
                });
            }
            kind::SANDBOX_END => {
                s.ended = s.last.clone();
                s.end = e.detail.clone();
                s.exit = e
                    .detail
                    .as_deref()
                    .and_then(|d| d.rsplit_once("airlock exits "))
                    .and_then(|(_, n)| n.trim().parse().ok());
            }
            _ => {}
        }
        if e.kind.starts_with("fs.") {
            s.fs_ops += 1;
            if e.decision == Some(Decision::Deny)
                && e.source == Source::Host
                && self.refused.len() < MAX_REFUSED
                && let Some(fs) = &e.fs
                && e.kind != kind::FS_OPEN
                && e.kind != kind::FS_LOOKUP
            {
                self.refused.push(Refused {
                    seq: r.seq,
                    kind: e.kind.clone(),
                    path: fs.path.clone(),
                    rule: e.rule.clone(),
                    reason: e.reason.clone(),
                });
            }
        }
        if e.kind == kind::PROC_EXEC && e.source == Source::Guest {
            s.processes += 1;
        }
        if let Some(n) = &e.net {
            s.net_requests += 1;
            s.bytes_in += n.bytes_in.unwrap_or(0);
            s.bytes_out += n.bytes_out.unwrap_or(0);
            let host = n.host.clone().or_else(|| n.ip.clone()).unwrap_or_default();
            let key = if self.hosts.contains_key(&host) || self.hosts.len() < MAX_HOSTS {
                host
            } else {
                "(other)".to_string()
            };
            let t = self.hosts.entry(key).or_default();
            t.bytes_in += n.bytes_in.unwrap_or(0);
            t.bytes_out += n.bytes_out.unwrap_or(0);
            t.requests += 1;
            t.denied += u64::from(e.decision == Some(Decision::Deny));
        }
    }

    /// Bytes of the log indexed so far.
    pub fn indexed_bytes(&self) -> u64 {
        self.indexed
    }

    /// A summary of a large log from its first and last `window` bytes only: where and how it
    /// started and ended, and its last seq as the record count. Sums that need every record
    /// (fs ops, bytes, denials) cover only what those windows hold.
    pub fn glance(path: &Path, window: u64) -> std::io::Result<Summary> {
        let mut file = std::fs::File::open(path)?;
        let len = file.metadata()?.len();
        let mut ix = LogIndex::new(path);
        let mut head = Vec::new();
        (&mut file).take(window.min(len)).read_to_end(&mut head)?;
        // Complete lines of the head only.
        if let Some(end) = head.iter().rposition(|&b| b == b'\n') {
            for line in head.get(..end).unwrap_or_default().split(|&b| b == b'\n') {
                ix.add(0, line);
            }
        }
        let tail_start = len.saturating_sub(window).max(window.min(len));
        if tail_start < len {
            file.seek(SeekFrom::Start(tail_start))?;
            let mut tail = Vec::new();
            file.take(len - tail_start).read_to_end(&mut tail)?;
            // Drop the partial first line and any unfinished last line.
            let first = tail
                .iter()
                .position(|&b| b == b'\n')
                .map_or(tail.len(), |n| n + 1);
            let last = tail.iter().rposition(|&b| b == b'\n').unwrap_or(0);
            if first <= last {
                for line in tail
                    .get(first..last)
                    .unwrap_or_default()
                    .split(|&b| b == b'\n')
                {
                    ix.add(0, line);
                }
            }
        }
        let last_seq = ix.entries.iter().map(|e| e.seq).max().unwrap_or(0);
        let mut summary = ix.summary;
        summary.records = summary.records.max(last_seq);
        Ok(summary)
    }

    /// The sums so far.
    pub fn summary(&self) -> &Summary {
        &self.summary
    }

    /// Every entry, in file order.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Records per minute by area: `(epoch minute, counts in AREAS order)`.
    pub fn minutes(&self) -> impl Iterator<Item = (u64, &[u64; AREAS.len()])> {
        self.minutes.iter().map(|(m, c)| (*m, c))
    }

    /// Traffic by destination host.
    pub fn hosts(&self) -> &BTreeMap<String, HostTraffic> {
        &self.hosts
    }

    /// Refused file changes (host-observed `fs.*` denials other than reads).
    pub fn refused(&self) -> &[Refused] {
        &self.refused
    }

    /// Entries passing `q`: how many there are, and those from `offset` on, at most `limit`.
    pub fn select(&self, q: &Query, offset: usize, limit: usize) -> (usize, Vec<Entry>) {
        let mut matched = 0;
        let mut page = Vec::new();
        for e in self.entries.iter().filter(|e| q.keeps(e)) {
            if matched >= offset && page.len() < limit {
                page.push(*e);
            }
            matched += 1;
        }
        (matched, page)
    }

    /// Reads the lines of `entries` back from the file.
    pub fn read(&self, entries: &[Entry]) -> std::io::Result<Vec<Vec<u8>>> {
        let file = std::fs::File::open(&self.path)?;
        let mut out = Vec::with_capacity(entries.len());
        for e in entries {
            let len = usize::try_from(e.len).unwrap_or(usize::MAX).min(MAX_LINE);
            let mut buf = vec![0; len];
            let n = read_at_most(&file, &mut buf, e.offset)?;
            buf.truncate(n);
            out.push(buf);
        }
        Ok(out)
    }
}

fn read_at_most(file: &std::fs::File, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        let Some(rest) = buf.get_mut(done..) else {
            break;
        };
        match file.read_at(rest, offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// The area of a kind: its first segment when it is one of [`AREAS`], else `other`.
pub fn area_of(kind: &str) -> u8 {
    let first = kind.split('.').next().unwrap_or_default();
    AREAS
        .iter()
        .take(usize::from(OTHER))
        .position(|a| *a == first)
        .and_then(|i| u8::try_from(i).ok())
        .unwrap_or(OTHER)
}

/// `policy ORIGIN, image NAME; N cpus, M MiB, accel ACCEL ...` as written by the supervisor.
fn parse_start(detail: &str) -> (Option<String>, Option<String>, Option<String>) {
    let head = detail.split(';').next().unwrap_or_default();
    let (policy, image) = match head.strip_prefix("policy ") {
        Some(rest) => match rest.rsplit_once(", image ") {
            Some((p, i)) => (Some(p.to_string()), Some(i.to_string())),
            None => (Some(rest.to_string()), None),
        },
        None => (None, None),
    };
    let accel = detail
        .split_once("accel ")
        .map(|(_, r)| {
            r.split([' ', ';', ','])
                .next()
                .unwrap_or_default()
                .to_string()
        })
        .filter(|a| !a.is_empty());
    (policy, image, accel)
}

#[cfg(test)]
mod tests;
