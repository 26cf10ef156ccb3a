//! Resuming an existing log after a crash: find its last complete line by reading backwards,
//! check that record and continue after it, and deal with an incomplete last line, keeping it
//! if it is a whole valid record missing only its `\n` and cutting it off otherwise. A cut is
//! logged and recorded in the chain as an `audit.recovered` record. Called by [`Chain::open`].
//!
//! Complete records are never removed: only bytes after the last `\n` can be cut.

use std::fs::File;
use std::io::{self, Write as _};
use std::os::unix::fs::FileExt as _;

use super::Chain;
use super::error::ChainError;
use super::options::Opened;
use crate::event::{Event, Record, Source, kind};

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

impl Chain {
    /// Resumes after the last complete record of a log that is `len` bytes long, then keeps or
    /// cuts an incomplete line after it. Returns the bytes cut (0 when none).
    pub(super) fn resume(&mut self, len: u64) -> Result<u64, ChainError> {
        let path = self.path.clone();
        let io_err = |source| ChainError::Io {
            path: path.clone(),
            source,
        };
        let mut truncated_bytes = 0;
        if len > 0 {
            let tail = scan_tail(&self.file, len).map_err(io_err)?;
            if let Some((offset, line)) = &tail.last {
                let record = Record::parse_checked(line).map_err(|source| ChainError::Corrupt {
                    path: path.clone(),
                    offset: *offset,
                    source,
                })?;
                self.adopt(record)?;
            }
            if let Some((offset, bytes)) = tail.partial
                && !self.recover_tail(offset, &bytes)?
            {
                truncated_bytes = len - offset;
            }
        }
        Ok(truncated_bytes)
    }

    /// Logs what [`Chain::open`] cut off and records it in the chain, so the log itself says
    /// that (and how much) was lost.
    pub(super) fn record_recovery(&mut self, opened: &Opened) -> Result<(), ChainError> {
        tracing::warn!(
            log = %self.path.display(),
            after_seq = self.seq,
            log_bytes = opened.truncated_bytes,
            checkpoint_bytes = opened.checkpoint_truncated_bytes,
            "audit log ended in an incomplete line (crash while writing); cut it off"
        );
        let event = Event::new(Source::Host, kind::AUDIT_RECOVERED)
            .with_count(opened.truncated_bytes)
            .with_detail(format!(
                "reopened after an incomplete write: removed {} bytes after seq {} from the log and {} bytes from the checkpoint file",
                opened.truncated_bytes, self.seq, opened.checkpoint_truncated_bytes
            ));
        self.append(&event)?;
        Ok(())
    }

    /// Records that this run continues a log an earlier run (`previous`) wrote, so `audit
    /// verify` accepts the change of sandbox id exactly here and can name each run.
    pub(super) fn record_new_run(&mut self, previous: &str) -> Result<(), ChainError> {
        let event = Event::new(Source::Host, kind::AUDIT_RUN).with_detail(format!(
            "run of sandbox {} continues this log after sandbox {previous} (seq {})",
            self.sandbox, self.seq
        ));
        self.append(&event)?;
        Ok(())
    }

    /// Continues the chain after `record`, the last complete one in the file.
    /// A record of another sandbox means an earlier run used this log: this run continues
    /// the same chain after it (see [`Chain::record_new_run`]).
    fn adopt(&mut self, record: Record) -> Result<(), ChainError> {
        self.previous_run = (record.sandbox != self.sandbox).then(|| record.sandbox.clone());
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
}
