//! The knobs and results of a [`Chain`](super::Chain): how often checkpoints are written
//! ([`CheckpointPolicy`]), when the appender calls `fsync` ([`Fsync`]), how to open a chain
//! ([`ChainOptions`]), and what opening and closing it report ([`Opened`], [`Summary`]). Plain
//! data in its own module so the chain, its checkpoint sidecar and its crash recovery can share
//! it; callers (the sink's writer thread, tools, tests) reach it through the crate root.

use std::time::Duration;

use crate::checkpoint::HostKey;

/// Default: a checkpoint at least every this many records.
pub const DEFAULT_CHECKPOINT_EVERY_EVENTS: u64 = 1000;
/// Default: a checkpoint at least this long after the first record it does not cover.
pub const DEFAULT_CHECKPOINT_EVERY: Duration = Duration::from_secs(5);

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
    /// [`Chain::tick`](super::Chain::tick)).
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

/// What [`Chain::open`](super::Chain::open) found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Opened {
    /// Seq of the last record already in the log (0 for a new log).
    pub last_seq: u64,
    /// Bytes of an incomplete last log line that were cut off.
    pub truncated_bytes: u64,
    /// Bytes of an incomplete last checkpoint line that were cut off.
    pub checkpoint_truncated_bytes: u64,
    /// The sandbox whose run wrote the log's last record, when it is not this one.
    pub previous_run: Option<String>,
}

/// Final state of a closed chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Seq of the last record.
    pub last_seq: u64,
    /// Hash of the last record.
    pub last_hash: String,
}
