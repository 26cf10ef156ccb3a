//! [`ChainError`], every way opening or appending to a chain can fail. Its own module so the
//! chain, its checkpoint sidecar and its crash recovery all return it without depending on each
//! other; the sink's writer thread reports it.

use std::io;
use std::path::PathBuf;

use crate::checkpoint::CheckpointError;
use crate::event::RecordError;

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
