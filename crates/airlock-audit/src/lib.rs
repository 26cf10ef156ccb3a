//! airlock audit: the tamper-evident record of what a sandboxed workload did. Producers (the
//! fs and egress gateways, the supervisor, the guest agent's reports) build [`Event`]s and hand
//! them to an [`AuditSink`], whose bounded queue never blocks them and counts what it has to
//! drop. One writer thread per sandbox owns the [`Chain`]: it stamps each event with `seq`,
//! `ts`, `prev` and a SHA-256 `hash` over its canonical JSON, appends it as one line, and
//! every N records / T seconds and at close signs a [`Checkpoint`] with the host's Ed25519
//! [`HostKey`] into `<log>.checkpoints`. [`verify`] recomputes the chain and checks the
//! checkpoints, naming the first bad seq; [`read_log`] and [`format_timeline`] render a log
//! for people, escaping guest text with [`display_safe`]. Monitor rules are matched by the policy
//! crate, which parses them. See `docs/audit.md`.

mod cap;
mod chain;
mod checkpoint;
mod escape;
mod event;
mod limit;
mod show;
mod sink;
mod time;
mod verify;

pub use cap::{FIELD_CAP, cap_fields, cut_text};
pub use chain::{
    Chain, ChainError, ChainOptions, CheckpointPolicy, DEFAULT_CHECKPOINT_EVERY,
    DEFAULT_CHECKPOINT_EVERY_EVENTS, Fsync, Opened, Summary, checkpoints_path,
};
pub use checkpoint::{
    Checkpoint, CheckpointError, HostKey, KeyError, PublicKey, PublicKeyError, default_key_path,
};
pub use escape::{display_safe, tail_lines};
pub use event::{
    Cut, Decision, Event, FsInfo, NetInfo, ProcInfo, Record, RecordError, Source, ZERO_HASH,
    is_valid_kind, kind,
};
pub use limit::{GUEST_LIMIT, GuestBudget, QUEUE_FULL};
pub use show::{Filter, ReadError, format_record, format_timeline, read_log};
pub use sink::{
    AuditSink, AuditWriter, Counters, DEFAULT_CAPACITY, DEFAULT_POLL, EmitError, SinkError,
    SinkOptions, spawn,
};
pub use time::{Timestamp, TimestampError};
pub use verify::{AuditFile, IncompleteTail, Report, Run, VerifyError, VerifyErrorKind, verify};
