//! The checkpoint sidecar of a chain, `<log>.checkpoints`: opening it on resume (cutting an
//! incomplete last line and checking that its last checkpoint agrees with the log and the key),
//! deciding when a checkpoint is due under the [`CheckpointPolicy`], and signing and writing
//! one. [`Chain::open`], [`Chain::append`] and [`Chain::finish`] call into it; the sink's
//! writer thread calls [`Chain::tick`] when idle.

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::error::ChainError;
use super::options::{CheckpointPolicy, Fsync};
use super::{Chain, Checkpointer, open_rw};
use crate::checkpoint::{Checkpoint, HostKey};
use crate::time::Timestamp;

/// The sidecar checkpoint file of a log: `<log>.checkpoints`.
pub fn checkpoints_path(log: &Path) -> PathBuf {
    let mut s = log.as_os_str().to_owned();
    s.push(".checkpoints");
    PathBuf::from(s)
}

impl Chain {
    /// Opens the sidecar, cuts an incomplete last line, and checks that its last checkpoint
    /// agrees with the log. Returns the checkpointer and the bytes cut.
    pub(super) fn open_checkpoints(
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

    /// Writes a checkpoint if the time limit has passed; call it periodically when idle.
    pub fn tick(&mut self) -> Result<(), ChainError> {
        self.checkpoint_if_due()
    }

    pub(super) fn checkpoint_if_due(&mut self) -> Result<(), ChainError> {
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

    pub(super) fn write_checkpoint(&mut self, is_final: bool) -> Result<(), ChainError> {
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
}
