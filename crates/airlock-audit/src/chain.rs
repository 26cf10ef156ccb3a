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
//! hash and continues after it. A log whose last record is another sandbox's was written by an
//! earlier run (a fixed `audit.path`): the chain goes on across runs, and the new run's first
//! record is `audit.run`, naming the run before it. An incomplete last line (crash mid-write) is cut off, logged,
//! reported in [`Opened`] and recorded in the chain as an `audit.recovered` record; complete
//! records are never removed. An incomplete last line that is in fact a whole valid record
//! missing only its `\n` is kept and completed.
//!
//! The parts live beside it: [`ChainOptions`] and its kin in `options.rs`, [`ChainError`] in
//! `error.rs`, crash recovery in `recover.rs`, and the checkpoint sidecar in `sidecar.rs` (the
//! last two extend [`Chain`]'s `impl`). This file holds the chain's state, opening and
//! appending.

mod error;
mod options;
mod recover;
mod sidecar;
#[cfg(test)]
mod tests;

pub use error::ChainError;
pub use options::{
    ChainOptions, CheckpointPolicy, DEFAULT_CHECKPOINT_EVERY, DEFAULT_CHECKPOINT_EVERY_EVENTS,
    Fsync, Opened, Summary,
};
pub use sidecar::checkpoints_path;

use std::fs::{File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::checkpoint::HostKey;
use crate::event::{self, Event, ZERO_HASH};
use crate::time::Timestamp;

/// The checkpoint side of an open chain. Its code is in `sidecar.rs`; the struct stays here
/// because [`Chain`] holds one and `sidecar.rs` already depends on this file.
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
    /// The sandbox of the log's last record when it was another one (set on resume).
    previous_run: Option<String>,
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

/// Opens the log or its sidecar for reading and appending, creating it owner-only.
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
            previous_run: None,
        };
        let truncated_bytes = chain.resume(len)?;
        let mut opened = Opened {
            last_seq: chain.seq,
            truncated_bytes,
            ..Opened::default()
        };
        if let Some(key) = options.key {
            let (cp, cut) = chain.open_checkpoints(path, key, options.checkpoints)?;
            chain.checkpoints = Some(cp);
            opened.checkpoint_truncated_bytes = cut;
        }
        // A new run says so first, so every record after it (a recovery note too) is its own.
        if let Some(previous) = chain.previous_run.take() {
            opened.previous_run = Some(previous.clone());
            chain.record_new_run(&previous)?;
        }
        if opened.truncated_bytes > 0 || opened.checkpoint_truncated_bytes > 0 {
            chain.record_recovery(&opened)?;
        }
        Ok((chain, opened))
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
