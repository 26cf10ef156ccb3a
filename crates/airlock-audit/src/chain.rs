//! The chain appender: owns one sandbox's log file, stamps each [`Event`] with `seq`, `ts`,
//! `sandbox` and `prev`, hashes it and writes it as one line; writes signed checkpoints to the
//! sidecar. Used directly by tests and tools, and by the [`crate::AuditSink`] writer thread in
//! a running sandbox.
//!
//! **Writes.** Each record is one `write_all` of the whole line including `\n` on a file
//! opened in append mode, so a crash leaves at most one incomplete line at the end. Durability
//! follows [`Fsync`]. One appender per log: the log is locked (`flock`, exclusive) while open.
//!
//! **Resume.** Opening an existing log reads its last complete line, checks that record's
//! hash and continues after it. An incomplete last line (crash mid-write) is cut off, logged,
//! reported in [`Opened`] and recorded in the chain as an `audit.recovered` record; complete
//! records are never removed. An incomplete last line that is in fact a whole valid record
//! missing only its `\n` is kept and completed.

use std::fs::{File, OpenOptions};
use std::io::{self, Read as _, Write as _};
use std::os::unix::fs::{FileExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::checkpoint::{Checkpoint, CheckpointError, HostKey};
use crate::event::{self, Event, Record, RecordError, Source, ZERO_HASH, kind};
use crate::time::Timestamp;

/// Default: a checkpoint at least every this many records.
pub const DEFAULT_CHECKPOINT_EVERY_EVENTS: u64 = 1000;
/// Default: a checkpoint at least this long after the first record it does not cover.
pub const DEFAULT_CHECKPOINT_EVERY: Duration = Duration::from_secs(5);

/// The sidecar checkpoint file of a log: `<log>.checkpoints`.
pub fn checkpoints_path(log: &Path) -> PathBuf {
    let mut s = log.as_os_str().to_owned();
    s.push(".checkpoints");
    PathBuf::from(s)
}

/// When the appender calls `fsync` (`sync_data`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fsync {
    /// Never; records reach the OS on every append and survive a process crash, not a host
    /// crash.
    Never,
    /// Before and after writing each checkpoint, and at close (default): a host crash loses
    /// at most the records after the last checkpoint, and a checkpoint never reaches disk
    /// before the records it covers.
    #[default]
    Checkpoint,
    /// After every record, and as for `Checkpoint`.
    Always,
}

/// How often checkpoints are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointPolicy {
    /// Write one when this many records are not yet covered (at least 1).
    pub every_events: u64,
    /// Write one when the oldest uncovered record is this old (checked on append and
    /// [`Chain::tick`]).
    pub every: Duration,
}

impl Default for CheckpointPolicy {
    fn default() -> Self {
        Self {
            every_events: DEFAULT_CHECKPOINT_EVERY_EVENTS,
            every: DEFAULT_CHECKPOINT_EVERY,
        }
    }
}

/// How to open a chain.
#[derive(Debug)]
pub struct ChainOptions {
    /// Sandbox id written into every record; an existing log must have the same one.
    pub sandbox: String,
    /// Checkpoint signing key; `None` writes no checkpoints (then truncation of the log's
    /// end cannot be detected).
    pub key: Option<HostKey>,
    /// Checkpoint frequency.
    pub checkpoints: CheckpointPolicy,
    /// Durability.
    pub fsync: Fsync,
}

impl ChainOptions {
    /// Options with checkpoints signed by `key` and default frequency and durability.
    pub fn new(sandbox: impl Into<String>, key: HostKey) -> Self {
        Self {
            sandbox: sandbox.into(),
            key: Some(key),
            checkpoints: CheckpointPolicy::default(),
            fsync: Fsync::default(),
        }
    }
}

/// What [`Chain::open`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Opened {
    /// Seq of the last record already in the log (0 for a new log).
    pub last_seq: u64,
    /// Bytes of an incomplete last log line that were cut off.
    pub truncated_bytes: u64,
    /// Bytes of an incomplete last checkpoint line that were cut off.
    pub checkpoint_truncated_bytes: u64,
}

/// Final state of a closed chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Seq of the last record.
    pub last_seq: u64,
    /// Hash of the last record.
    pub last_hash: String,
}

/// Errors of the appender.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// Reading or writing a file failed.
    #[error("audit log {}", path.display())]
    Io {
        /// The log or checkpoint file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// Another appender has the log open.
    #[error("audit log {} is in use by another writer", path.display())]
    Locked {
        /// The log.
        path: PathBuf,
    },
    /// The last complete record of an existing log is invalid: the log was damaged or
    /// edited, and appending would extend a broken chain.
    #[error("audit log {}: last record (at byte {offset}) is invalid; run `airlock audit verify`", path.display())]
    Corrupt {
        /// The log.
        path: PathBuf,
        /// Byte offset of the record's line.
        offset: u64,
        /// What is wrong with it.
        #[source]
        source: RecordError,
    },
    /// The existing log belongs to another sandbox.
    #[error("audit log {} belongs to sandbox {found:?}, not {expected:?}", path.display())]
    SandboxMismatch {
        /// The log.
        path: PathBuf,
        /// Sandbox id in the log.
        found: String,
        /// Sandbox id asked for.
        expected: String,
    },
    /// The last checkpoint line is invalid.
    #[error("checkpoint file {}, line {line}", path.display())]
    CheckpointCorrupt {
        /// The checkpoint file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        #[source]
        source: CheckpointError,
    },
    /// The last checkpoint covers records the log no longer has: the log was truncated.
    #[error("audit log {} ends at seq {log_seq} but its last checkpoint signs seq {checkpoint_seq}; the log was truncated", path.display())]
    CheckpointAhead {
        /// The log.
        path: PathBuf,
        /// Seq in the checkpoint.
        checkpoint_seq: u64,
        /// Last seq in the log.
        log_seq: u64,
    },
    /// The last checkpoint's hash disagrees with the log's record at its seq.
    #[error("audit log {}: record {seq} differs from its signed checkpoint", path.display())]
    CheckpointMismatch {
        /// The log.
        path: PathBuf,
        /// The seq both name.
        seq: u64,
    },
    /// The log has records but its checkpoint file is gone.
    #[error("checkpoint file {} is missing but the log has records; it was deleted, or the log was written without a key", path.display())]
    CheckpointsMissing {
        /// The checkpoint file.
        path: PathBuf,
    },
    /// Existing checkpoints were signed with a different key.
    #[error("checkpoint file {} was signed with another key", path.display())]
    KeyChanged {
        /// The checkpoint file.
        path: PathBuf,
    },
    /// An earlier write failed; the appender refuses further writes.
    #[error("audit log {} is unusable after an earlier write error", path.display())]
    Broken {
        /// The log.
        path: PathBuf,
    },
}

struct Checkpointer {
    key: HostKey,
    file: File,
    path: PathBuf,
    policy: CheckpointPolicy,
    /// Seq covered by the last checkpoint written or found.
    covered: u64,
    /// When the oldest record not yet covered was appended.
    uncovered_since: Option<Instant>,
}

/// An open, locked audit log.
pub struct Chain {
    file: File,
    path: PathBuf,
    sandbox: String,
    seq: u64,
    prev: String,
    last_ts: Timestamp,
    fsync: Fsync,
    /// Length of the file up to the end of the last complete record.
    len: u64,
    broken: bool,
    checkpoints: Option<Checkpointer>,
}

impl std::fmt::Debug for Chain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chain")
            .field("path", &self.path)
            .field("sandbox", &self.sandbox)
            .field("seq", &self.seq)
            .finish_non_exhaustive()
    }
}

/// Where the last lines of a file are.
struct Tail {
    /// Start offset and bytes (without `\n`) of the last complete line.
    last: Option<(u64, Vec<u8>)>,
    /// Start offset and bytes of an incomplete line after it (no `\n`), if any.
    partial: Option<(u64, Vec<u8>)>,
}

/// Reads backwards from the end of a file until the last complete line is found.
fn scan_tail(file: &File, len: u64) -> io::Result<Tail> {
    let mut window: u64 = 64 * 1024;
    loop {
        let start = len.saturating_sub(window);
        let size = usize::try_from(len - start).map_err(io::Error::other)?;
        let mut buf = vec![0u8; size];
        file.read_exact_at(&mut buf, start)?;
        let Some(nl) = buf.iter().rposition(|&b| b == b'\n') else {
            if start == 0 {
                return Ok(Tail {
                    last: None,
                    partial: (!buf.is_empty()).then_some((0, buf)),
                });
            }
            window = window.saturating_mul(2);
            continue;
        };
        let line_start = match buf[..nl].iter().rposition(|&b| b == b'\n') {
            Some(p) => p + 1,
            None if start == 0 => 0,
            None => {
                window = window.saturating_mul(2);
                continue;
            }
        };
        let partial = buf[nl + 1..].to_vec();
        let to_u64 = |n: usize| start + n as u64;
        return Ok(Tail {
            last: Some((to_u64(line_start), buf[line_start..nl].to_vec())),
            partial: (!partial.is_empty()).then(|| (to_u64(nl + 1), partial)),
        });
    }
}

fn open_rw(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)
}

impl Chain {
    /// Opens (creating if needed) the log at `path` and its checkpoint sidecar, locks it,
    /// and resumes after its last complete record.
    pub fn open(path: &Path, options: ChainOptions) -> Result<(Self, Opened), ChainError> {
        let io_err = |source| ChainError::Io {
            path: path.to_owned(),
            source,
        };
        let file = open_rw(path).map_err(io_err)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(ChainError::Locked {
                    path: path.to_owned(),
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io_err(e)),
        }
        let len = file.metadata().map_err(io_err)?.len();
        let mut chain = Self {
            file,
            path: path.to_owned(),
            sandbox: options.sandbox,
            seq: 0,
            prev: ZERO_HASH.to_owned(),
            last_ts: Timestamp::from_millis(0),
            fsync: options.fsync,
            len,
            broken: false,
            checkpoints: None,
        };
        let mut opened = Opened::default();
        if len > 0 {
            let tail = scan_tail(&chain.file, len).map_err(io_err)?;
            if let Some((offset, line)) = &tail.last {
                let record = Record::parse_checked(line).map_err(|source| ChainError::Corrupt {
                    path: path.to_owned(),
                    offset: *offset,
                    source,
                })?;
                chain.adopt(record)?;
            }
            if let Some((offset, bytes)) = tail.partial
                && !chain.recover_tail(offset, &bytes)?
            {
                opened.truncated_bytes = len - offset;
            }
        }
        opened.last_seq = chain.seq;
        if let Some(key) = options.key {
            let (cp, cut) = chain.open_checkpoints(path, key, options.checkpoints)?;
            chain.checkpoints = Some(cp);
            opened.checkpoint_truncated_bytes = cut;
        }
        if opened.truncated_bytes > 0 || opened.checkpoint_truncated_bytes > 0 {
            tracing::warn!(
                log = %path.display(),
                after_seq = chain.seq,
                log_bytes = opened.truncated_bytes,
                checkpoint_bytes = opened.checkpoint_truncated_bytes,
                "audit log ended in an incomplete line (crash while writing); cut it off"
            );
            let event = Event::new(Source::Host, kind::AUDIT_RECOVERED)
                .with_count(opened.truncated_bytes)
                .with_detail(format!(
                    "reopened after an incomplete write: removed {} bytes after seq {} from the log and {} bytes from the checkpoint file",
                    opened.truncated_bytes, chain.seq, opened.checkpoint_truncated_bytes
                ));
            chain.append(&event)?;
        }
        Ok((chain, opened))
    }

    /// Continues the chain after `record`, the last complete one in the file.
    fn adopt(&mut self, record: Record) -> Result<(), ChainError> {
        if record.sandbox != self.sandbox {
            return Err(ChainError::SandboxMismatch {
                path: self.path.clone(),
                found: record.sandbox,
                expected: self.sandbox.clone(),
            });
        }
        self.seq = record.seq;
        self.prev = record.hash;
        self.last_ts = record.ts;
        Ok(())
    }

    /// Handles an incomplete last line at `offset`: keeps it if it is a valid next record
    /// missing only its newline (returns true), otherwise cuts it off (returns false).
    fn recover_tail(&mut self, offset: u64, bytes: &[u8]) -> Result<bool, ChainError> {
        let io_err = |source| ChainError::Io {
            path: self.path.clone(),
            source,
        };
        if let Ok(record) = Record::parse_checked(bytes)
            && record.seq == self.seq + 1
            && record.prev == self.prev
            && record.sandbox == self.sandbox
        {
            (&self.file).write_all(b"\n").map_err(io_err)?;
            self.len += 1;
            self.adopt(record)?;
            return Ok(true);
        }
        self.file.set_len(offset).map_err(io_err)?;
        self.len = offset;
        Ok(false)
    }

    /// Opens the sidecar, cuts an incomplete last line, and checks that its last checkpoint
    /// agrees with the log. Returns the checkpointer and the bytes cut.
    fn open_checkpoints(
        &self,
        log: &Path,
        key: HostKey,
        policy: CheckpointPolicy,
    ) -> Result<(Checkpointer, u64), ChainError> {
        let path = checkpoints_path(log);
        let io_err = |source| ChainError::Io {
            path: path.clone(),
            source,
        };
        // The sidecar is created together with the log, so a log with records but no
        // sidecar had it deleted (or was written without a key): resuming would hide that.
        if self.seq > 0 && !path.try_exists().map_err(io_err)? {
            return Err(ChainError::CheckpointsMissing { path });
        }
        let mut file = open_rw(&path).map_err(io_err)?;
        let mut text = Vec::new();
        file.read_to_end(&mut text).map_err(io_err)?;
        let complete = text.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
        let cut = (text.len() - complete) as u64;
        if cut > 0 {
            file.set_len(complete as u64).map_err(io_err)?;
        }
        let mut covered = 0;
        let lines = text[..complete].split(|&b| b == b'\n');
        if let Some((n, line)) = lines.enumerate().filter(|(_, l)| !l.is_empty()).last() {
            let cp = Checkpoint::parse(line).map_err(|source| ChainError::CheckpointCorrupt {
                path: path.clone(),
                line: n + 1,
                source,
            })?;
            if cp.key != key.public_key() {
                return Err(ChainError::KeyChanged { path });
            }
            if cp.seq > self.seq {
                return Err(ChainError::CheckpointAhead {
                    path: log.to_owned(),
                    checkpoint_seq: cp.seq,
                    log_seq: self.seq,
                });
            }
            if cp.seq == self.seq && cp.hash != self.prev {
                return Err(ChainError::CheckpointMismatch {
                    path: log.to_owned(),
                    seq: cp.seq,
                });
            }
            covered = cp.seq;
        }
        let uncovered_since = (self.seq > covered).then(Instant::now);
        let policy = CheckpointPolicy {
            every_events: policy.every_events.max(1),
            ..policy
        };
        Ok((
            Checkpointer {
                key,
                file,
                path,
                policy,
                covered,
                uncovered_since,
            },
            cut,
        ))
    }

    /// Appends one record for `event` and returns its seq. Writes a checkpoint afterwards
    /// when one is due.
    pub fn append(&mut self, event: &Event) -> Result<u64, ChainError> {
        if self.broken {
            return Err(ChainError::Broken {
                path: self.path.clone(),
            });
        }
        let seq = self.seq + 1;
        // Never let time run backwards within a log, so the timeline sorts.
        let ts = Timestamp::now().max(self.last_ts);
        let (line, hash) = event::encode(seq, ts, &self.sandbox, event, &self.prev);
        if let Err(e) = self.write_line(&line) {
            return Err(self.fail(e));
        }
        self.seq = seq;
        self.prev = hash;
        self.last_ts = ts;
        self.len += line.len() as u64;
        if let Some(cp) = &mut self.checkpoints {
            cp.uncovered_since.get_or_insert_with(Instant::now);
        }
        self.checkpoint_if_due()?;
        Ok(seq)
    }

    fn write_line(&mut self, line: &[u8]) -> io::Result<()> {
        self.file.write_all(line)?;
        self.file.flush()?;
        if self.fsync == Fsync::Always {
            self.file.sync_data()?;
        }
        Ok(())
    }

    /// Marks the chain broken after a failed write and removes any partial line it left.
    fn fail(&mut self, source: io::Error) -> ChainError {
        self.broken = true;
        let _ = self.file.set_len(self.len);
        ChainError::Io {
            path: self.path.clone(),
            source,
        }
    }

    /// Writes a checkpoint if the time limit has passed; call it periodically when idle.
    pub fn tick(&mut self) -> Result<(), ChainError> {
        self.checkpoint_if_due()
    }

    fn checkpoint_if_due(&mut self) -> Result<(), ChainError> {
        let due = self.checkpoints.as_ref().is_some_and(|cp| {
            self.seq > cp.covered
                && (self.seq - cp.covered >= cp.policy.every_events
                    || cp
                        .uncovered_since
                        .is_some_and(|t| t.elapsed() >= cp.policy.every))
        });
        if due {
            self.write_checkpoint(false)?;
        }
        Ok(())
    }

    /// Writes a checkpoint of the current last record now (no-op without a key).
    pub fn checkpoint(&mut self) -> Result<(), ChainError> {
        self.write_checkpoint(false)
    }

    fn write_checkpoint(&mut self, is_final: bool) -> Result<(), ChainError> {
        if self.broken {
            return Err(ChainError::Broken {
                path: self.path.clone(),
            });
        }
        let Some(cp) = &mut self.checkpoints else {
            return Ok(());
        };
        if self.fsync != Fsync::Never
            && let Err(e) = self.file.sync_data()
        {
            return Err(ChainError::Io {
                path: self.path.clone(),
                source: e,
            });
        }
        let ts = Timestamp::now().max(self.last_ts);
        let (_, line) =
            Checkpoint::sign(&cp.key, self.seq, &self.prev, ts, &self.sandbox, is_final);
        let written = (|| {
            let len = cp.file.metadata()?.len();
            if let Err(e) = cp.file.write_all(&line) {
                let _ = cp.file.set_len(len);
                return Err(e);
            }
            if self.fsync != Fsync::Never {
                cp.file.sync_data()?;
            }
            Ok(())
        })();
        written.map_err(|source| ChainError::Io {
            path: cp.path.clone(),
            source,
        })?;
        cp.covered = self.seq;
        cp.uncovered_since = None;
        Ok(())
    }

    /// Writes the final checkpoint, syncs (unless [`Fsync::Never`]) and closes the log.
    pub fn finish(mut self) -> Result<Summary, ChainError> {
        self.write_checkpoint(true)?;
        if self.fsync != Fsync::Never {
            self.file.sync_data().map_err(|source| ChainError::Io {
                path: self.path.clone(),
                source,
            })?;
        }
        Ok(Summary {
            last_seq: self.seq,
            last_hash: self.prev.clone(),
        })
    }

    /// Seq of the last record (0 when empty).
    pub fn last_seq(&self) -> u64 {
        self.seq
    }

    /// Hash of the last record ([`ZERO_HASH`] when empty).
    pub fn last_hash(&self) -> &str {
        &self.prev
    }

    /// The log file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The sandbox id.
    pub fn sandbox(&self) -> &str {
        &self.sandbox
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;
    use crate::event::Decision;
    use crate::verify::verify;

    fn key_file(dir: &Path) -> PathBuf {
        dir.join("key")
    }

    fn options(dir: &Path) -> ChainOptions {
        ChainOptions::new("sb1", HostKey::load_or_create(&key_file(dir)).unwrap())
    }

    fn ev(n: u64) -> Event {
        Event::new(Source::Host, kind::FS_WRITE)
            .with_decision(Decision::Allow)
            .with_detail(format!("event {n}"))
    }

    fn lines(path: &Path) -> Vec<Record> {
        fs::read(path)
            .unwrap()
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| Record::parse_checked(l).unwrap())
            .collect()
    }

    fn checkpoints(log: &Path) -> Vec<(u64, bool)> {
        fs::read(checkpoints_path(log))
            .unwrap()
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| Checkpoint::parse(l).unwrap())
            .map(|c| (c.seq, c.is_final))
            .collect()
    }

    fn verified(log: &Path) -> crate::Report {
        let key = HostKey::load(&key_file(log.parent().unwrap())).unwrap();
        verify(log, Some(&checkpoints_path(log)), Some(&key.public_key())).unwrap()
    }

    #[test]
    fn appends_chain_and_checkpoints_on_cadence_and_at_finish() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("audit.jsonl");
        let mut opts = options(dir.path());
        opts.checkpoints.every_events = 3;
        let (mut chain, opened) = Chain::open(&log, opts).unwrap();
        assert_eq!(opened, Opened::default());
        for n in 1..=7 {
            assert_eq!(chain.append(&ev(n)).unwrap(), n);
        }
        let summary = chain.finish().unwrap();
        let records = lines(&log);
        assert_eq!(records.len(), 7);
        assert_eq!(records[0].prev, ZERO_HASH);
        for pair in records.windows(2) {
            assert_eq!(pair[1].prev, pair[0].hash);
            assert!(pair[1].ts >= pair[0].ts);
        }
        assert_eq!(summary.last_hash, records[6].hash);
        assert_eq!(checkpoints(&log), [(3, false), (6, false), (7, true)]);
        assert!(verified(&log).sealed);
        use std::os::unix::fs::MetadataExt as _;
        assert_eq!(fs::metadata(&log).unwrap().mode() & 0o777, 0o600);
        assert_eq!(
            fs::metadata(checkpoints_path(&log)).unwrap().mode() & 0o777,
            0o600
        );
    }

    #[test]
    fn time_based_checkpoint_on_tick() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("audit.jsonl");
        let mut opts = options(dir.path());
        // Long enough that a stalled test machine does not reach it between append and the
        // first tick.
        opts.checkpoints.every = Duration::from_millis(500);
        let (mut chain, _) = Chain::open(&log, opts).unwrap();
        chain.append(&ev(1)).unwrap();
        chain.tick().unwrap();
        assert_eq!(checkpoints(&log), []);
        std::thread::sleep(Duration::from_millis(550));
        chain.tick().unwrap();
        assert_eq!(checkpoints(&log), [(1, false)]);
        // Idle: nothing new to cover, no new checkpoint.
        std::thread::sleep(Duration::from_millis(550));
        chain.tick().unwrap();
        assert_eq!(checkpoints(&log), [(1, false)]);
        chain.finish().unwrap();
        assert_eq!(checkpoints(&log), [(1, false), (1, true)]);
    }

    #[test]
    fn resume_after_a_crash_continues_the_chain() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("audit.jsonl");
        let (mut chain, _) = Chain::open(&log, options(dir.path())).unwrap();
        for n in 1..=3 {
            chain.append(&ev(n)).unwrap();
        }
        let hash3 = chain.last_hash().to_owned();
        drop(chain); // crash: no final checkpoint
        let (mut chain, opened) = Chain::open(&log, options(dir.path())).unwrap();
        assert_eq!(
            opened,
            Opened {
                last_seq: 3,
                ..Opened::default()
            }
        );
        assert_eq!(chain.append(&ev(4)).unwrap(), 4);
        chain.finish().unwrap();
        let records = lines(&log);
        assert_eq!(records[3].prev, hash3);
        assert_eq!(records[3].event.detail.as_deref(), Some("event 4"));
        assert_eq!(verified(&log).records, 4);
    }

    #[test]
    fn partial_last_line_is_cut_reported_and_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("audit.jsonl");
        let (mut chain, _) = Chain::open(&log, options(dir.path())).unwrap();
        for n in 1..=3 {
            chain.append(&ev(n)).unwrap();
        }
        chain.finish().unwrap();
        let complete = fs::read(&log).unwrap();
        let partial = br#"{"seq":4,"ts":"2026-11-27T03:12:45.1"#;
        fs::write(&log, [&complete[..], &partial[..]].concat()).unwrap();
        let mut cps = fs::read(checkpoints_path(&log)).unwrap();
        cps.extend_from_slice(b"{\"seq\":9");
        fs::write(checkpoints_path(&log), cps).unwrap();

        let (chain, opened) = Chain::open(&log, options(dir.path())).unwrap();
        assert_eq!(
            opened,
            Opened {
                last_seq: 3,
                truncated_bytes: partial.len() as u64,
                checkpoint_truncated_bytes: 8,
            }
        );
        chain.finish().unwrap();
        let records = lines(&log);
        assert_eq!(records.len(), 4);
        assert_eq!(records[3].event.kind, kind::AUDIT_RECOVERED);
        assert_eq!(records[3].event.count, Some(partial.len() as u64));
        assert!(fs::read(&log).unwrap().starts_with(&complete));
        let report = verified(&log);
        assert_eq!((report.records, report.sealed), (4, true));
    }

    #[test]
    fn a_whole_record_missing_only_its_newline_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("audit.jsonl");
        let (mut chain, _) = Chain::open(&log, options(dir.path())).unwrap();
        chain.append(&ev(1)).unwrap();
        let (line, _) = event::encode(2, Timestamp::now(), "sb1", &ev(2), chain.last_hash());
        drop(chain);
        let mut bytes = fs::read(&log).unwrap();
        bytes.extend_from_slice(&line[..line.len() - 1]);
        fs::write(&log, bytes).unwrap();
        let (mut chain, opened) = Chain::open(&log, options(dir.path())).unwrap();
        assert_eq!(
            opened,
            Opened {
                last_seq: 2,
                ..Opened::default()
            }
        );
        chain.append(&ev(3)).unwrap();
        chain.finish().unwrap();
        assert_eq!(verified(&log).records, 3);
    }

    #[test]
    fn first_record_cut_mid_write() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("audit.jsonl");
        fs::write(&log, b"{\"seq\":1,\"ts").unwrap();
        let (chain, opened) = Chain::open(&log, options(dir.path())).unwrap();
        assert_eq!(opened.truncated_bytes, 12);
        chain.finish().unwrap();
        let records = lines(&log);
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].event.kind, kind::AUDIT_RECOVERED);
        assert_eq!(records[0].prev, ZERO_HASH);
    }

    #[test]
    fn refuses_to_extend_a_damaged_or_foreign_log() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("audit.jsonl");
        let (mut chain, _) = Chain::open(&log, options(dir.path())).unwrap();
        chain.append(&ev(1)).unwrap();
        chain.append(&ev(2)).unwrap();

        // One appender at a time.
        let err = Chain::open(&log, options(dir.path())).unwrap_err();
        assert!(matches!(err, ChainError::Locked { .. }), "{err:?}");
        chain.finish().unwrap();

        let mut other = options(dir.path());
        other.sandbox = "sb2".into();
        let err = Chain::open(&log, other).unwrap_err();
        assert!(
            matches!(&err, ChainError::SandboxMismatch { found, expected, .. } if found == "sb1" && expected == "sb2"),
            "{err:?}"
        );

        let cps = fs::read(checkpoints_path(&log)).unwrap();
        fs::remove_file(checkpoints_path(&log)).unwrap();
        let err = Chain::open(&log, options(dir.path())).unwrap_err();
        assert!(
            matches!(err, ChainError::CheckpointsMissing { .. }),
            "{err:?}"
        );
        fs::write(checkpoints_path(&log), cps).unwrap();

        let other_key = ChainOptions::new("sb1", HostKey::generate().unwrap());
        let err = Chain::open(&log, other_key).unwrap_err();
        assert!(matches!(err, ChainError::KeyChanged { .. }), "{err:?}");

        let text = fs::read_to_string(&log).unwrap();
        let last_line_start = text.trim_end().rfind('\n').unwrap() + 1;

        // Truncated below the last checkpoint.
        fs::write(&log, &text[..last_line_start]).unwrap();
        let err = Chain::open(&log, options(dir.path())).unwrap_err();
        assert!(
            matches!(
                err,
                ChainError::CheckpointAhead {
                    checkpoint_seq: 2,
                    log_seq: 1,
                    ..
                }
            ),
            "{err:?}"
        );

        // Edited last record.
        fs::write(&log, text.replace("event 2", "event X")).unwrap();
        let err = Chain::open(&log, options(dir.path())).unwrap_err();
        assert!(
            matches!(
                err,
                ChainError::Corrupt {
                    source: RecordError::HashMismatch { .. },
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn without_a_key_no_checkpoints_are_written() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("audit.jsonl");
        let opts = ChainOptions {
            key: None,
            ..options(dir.path())
        };
        let (mut chain, _) = Chain::open(&log, opts).unwrap();
        chain.append(&ev(1)).unwrap();
        chain.finish().unwrap();
        assert!(!checkpoints_path(&log).exists());
        let report = verify(&log, None, None).unwrap();
        assert_eq!((report.records, report.sealed), (1, false));
    }
}
