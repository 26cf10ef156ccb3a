//! `airlock audit verify`: recomputes every record's hash and link and checks the signed
//! checkpoints, reporting the first place where the log stops being the one that was written.
//!
//! Per log line, in order: it parses; its hash matches its contents and it is in canonical
//! form (an edit); its seq is the next one (a deletion, a move, an insertion); its `prev` is the
//! previous record's hash (an insertion or replacement with a self-consistent record). Per
//! checkpoint: its signature verifies, its key is the trusted one (or, without a trusted key,
//! the same as the first checkpoint's), seqs do not decrease, and the log's record at that
//! seq has the signed hash. A checkpoint beyond the end of the log means the log was
//! truncated. An incomplete last line (crash mid-write) is not an error: it is reported in
//! [`Report::tail_incomplete`] and everything before it is verified.

use std::fmt;
use std::fs::File;
use std::io::{self, BufReader, Read as _};
use std::path::Path;

use crate::checkpoint::{Checkpoint, CheckpointError, PublicKey};
use crate::event::{Record, RecordError, ZERO_HASH, kind};

/// Which file an error is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditFile {
    /// The JSONL log.
    Log,
    /// The `<log>.checkpoints` sidecar.
    Checkpoints,
}

impl fmt::Display for AuditFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Log => "audit log",
            Self::Checkpoints => "checkpoint file",
        })
    }
}

/// An incomplete last line, left by a crash while writing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IncompleteTail {
    /// Bytes after the last `\n`.
    pub bytes: u64,
    /// Seq of the last complete record (0 if none).
    pub after_seq: u64,
}

impl fmt::Display for IncompleteTail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "tail: {} bytes incomplete after seq {}",
            self.bytes, self.after_seq
        )
    }
}

/// What a successful verification established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Complete records verified.
    pub records: u64,
    /// Seq of the last complete record (0 for an empty log).
    pub last_seq: u64,
    /// Hash of the last complete record ([`ZERO_HASH`] for an empty log).
    pub last_hash: String,
    /// Checkpoints whose signature, key and hash were verified against the log.
    pub checkpoints_verified: usize,
    /// Seq of the last checkpoint, if any.
    pub last_checkpoint_seq: Option<u64>,
    /// The last checkpoint is a final one and covers the last record: the log was closed
    /// cleanly and nothing can have been cut from its end. When false, records after
    /// `last_checkpoint_seq` are chained but not signed.
    pub sealed: bool,
    /// Key that signed the checkpoints.
    pub signer: Option<PublicKey>,
    /// True when a trusted key was given (and so `signer` equals it). Without one, a
    /// verifier only knows that one key signed everything, not whose it is.
    pub signer_trusted: bool,
    /// An incomplete last log line.
    pub tail_incomplete: Option<IncompleteTail>,
    /// Bytes of an incomplete last checkpoint line.
    pub checkpoint_tail_incomplete: Option<u64>,
    /// The runs that wrote the log, in order: one unless a fixed `audit.path` served several.
    pub runs: Vec<Run>,
}

/// The records one sandbox's run appended to a log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    /// The sandbox id.
    pub sandbox: String,
    /// Seq of its first record (an `audit.run` record unless it is the log's first run).
    pub first_seq: u64,
    /// Seq of its last record.
    pub last_seq: u64,
    /// A final checkpoint covers its last record: the run closed its log cleanly.
    pub sealed: bool,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ok: {} records", self.records)?;
        if self.records > 0 {
            write!(f, " (seq 1..{})", self.last_seq)?;
        }
        write!(f, ", {} checkpoints verified", self.checkpoints_verified)?;
        if let Some(seq) = self.last_checkpoint_seq {
            write!(f, ", last at seq {seq}")?;
        }
        match (&self.signer, self.signer_trusted) {
            (Some(k), true) => write!(f, ", signed by trusted key {k}")?,
            (Some(k), false) => {
                write!(f, ", signed by key {k} (not checked against a trusted key)")?
            }
            (None, _) => {}
        }
        if !self.sealed {
            write!(f, "; not sealed by a final checkpoint")?;
            if self.last_checkpoint_seq.unwrap_or(0) < self.last_seq {
                write!(
                    f,
                    " (records after seq {} are unsigned)",
                    self.last_checkpoint_seq.unwrap_or(0)
                )?;
            }
        }
        if self.runs.len() > 1 {
            for (i, run) in self.runs.iter().enumerate() {
                write!(
                    f,
                    "\nrun {}: sandbox {}, seq {}..{}{}",
                    i + 1,
                    run.sandbox,
                    run.first_seq,
                    run.last_seq,
                    if run.sealed {
                        ", sealed"
                    } else {
                        ", not sealed"
                    }
                )?;
            }
        }
        if let Some(tail) = &self.tail_incomplete {
            write!(f, "\n{tail}")?;
        }
        if let Some(n) = self.checkpoint_tail_incomplete {
            write!(f, "\ncheckpoint file tail: {n} bytes incomplete")?;
        }
        Ok(())
    }
}

/// Where and why verification failed.
#[derive(Debug)]
pub struct VerifyError {
    /// File the problem is in.
    pub file: AuditFile,
    /// The seq concerned: the first record that is missing, altered or misplaced, or the
    /// checkpoint's seq; `None` when unknown (an unreadable checkpoint line, an I/O error).
    pub seq: Option<u64>,
    /// 1-based line in `file` (0 when the file could not be read at all).
    pub line: usize,
    /// What is wrong.
    pub kind: VerifyErrorKind,
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if self.line > 0 {
            write!(f, " line {}", self.line)?;
        }
        if let Some(seq) = self.seq {
            write!(f, ", seq {seq}")?;
        }
        write!(f, ": {}", self.kind)
    }
}

impl std::error::Error for VerifyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&self.kind)
    }
}

/// The ways a log or its checkpoints can be wrong.
#[derive(Debug, thiserror::Error)]
pub enum VerifyErrorKind {
    /// The file could not be read.
    #[error("cannot read")]
    Io(#[source] io::Error),
    /// Verification of checkpoints was asked for but the sidecar does not exist (the
    /// appender creates it when it opens the log).
    #[error("missing: it was deleted, or the log was not written with checkpoints")]
    CheckpointsMissing,
    /// The line is not a record.
    #[error("{0}")]
    Unparseable(String),
    /// The record's hash does not match its contents: it was edited.
    #[error("hash mismatch: record was edited (says {stated}, contents hash to {computed})")]
    HashMismatch {
        /// Hash written in the record.
        stated: String,
        /// Hash of its contents.
        computed: String,
    },
    /// The record's hash is right but its bytes were reformatted.
    #[error("record was reformatted after it was written (not canonical)")]
    NotCanonical,
    /// `prev` is not the previous record's hash: a record was replaced or inserted.
    #[error(
        "prev mismatch: record does not follow the previous one (prev {found}, previous hash {expected})"
    )]
    PrevMismatch {
        /// Hash of the previous record.
        expected: String,
        /// `prev` written in this record.
        found: String,
    },
    /// A seq is missing: the record with seq `expected` was deleted.
    #[error("seq gap: expected seq {expected}, found {found}; record {expected} was deleted")]
    SeqGap {
        /// The seq that should be here.
        expected: u64,
        /// The seq that is here.
        found: u64,
    },
    /// Records are out of order: `expected` appears later, at `at_line`.
    #[error(
        "seq out of order: expected seq {expected}, found {found}; record {expected} was moved to line {at_line}"
    )]
    SeqMoved {
        /// The seq that should be here.
        expected: u64,
        /// The seq that is here.
        found: u64,
        /// Where `expected` is.
        at_line: usize,
    },
    /// A seq at or before one already seen: an inserted, duplicated or moved-back record.
    #[error(
        "seq out of order: seq {found} again where {expected} was expected (record inserted, duplicated or moved)"
    )]
    SeqOutOfOrder {
        /// The seq that should be here.
        expected: u64,
        /// The seq that is here.
        found: u64,
    },
    /// A record names another sandbox than the record before it, and is not the `audit.run`
    /// record with which a new run takes over a log.
    #[error("sandbox changed from {expected:?} to {found:?}")]
    SandboxChanged {
        /// Sandbox of the first record.
        expected: String,
        /// Sandbox of this record.
        found: String,
    },
    /// A checkpoint line is unreadable, reformatted or has a bad signature.
    #[error("invalid checkpoint: {0}")]
    CheckpointInvalid(CheckpointError),
    /// A checkpoint is signed by a key other than the trusted one.
    #[error("checkpoint signed by untrusted key {key}")]
    UntrustedKey {
        /// The signing key.
        key: PublicKey,
    },
    /// Without a trusted key: a checkpoint signed by a different key than the first.
    #[error("checkpoint signed by key {found}, but earlier checkpoints by {first}")]
    KeyChanged {
        /// Key of the first checkpoint.
        first: PublicKey,
        /// Key of this one.
        found: PublicKey,
    },
    /// Checkpoint seqs went backwards.
    #[error("checkpoint seq {found} is before the previous checkpoint's seq {previous}")]
    CheckpointOrder {
        /// Seq of the previous checkpoint.
        previous: u64,
        /// Seq of this one.
        found: u64,
    },
    /// Two checkpoints sign different hashes for one seq.
    #[error("checkpoint disagrees with checkpoint line {other_line} about seq {seq}")]
    CheckpointConflict {
        /// The seq.
        seq: u64,
        /// The other checkpoint's line.
        other_line: usize,
    },
    /// The log's record differs from what a checkpoint signed: the log up to here was
    /// rewritten (a consistent rewrite of the chain, which only the signature catches).
    #[error(
        "record differs from signed checkpoint (checkpoint line {checkpoint_line} signs hash {signed} for sandbox {sandbox:?}); records up to here were rewritten"
    )]
    CheckpointMismatch {
        /// Line of the checkpoint.
        checkpoint_line: usize,
        /// Hash it signs.
        signed: String,
        /// Sandbox it signs.
        sandbox: String,
    },
    /// A checkpoint signs a seq beyond the end of the log: records were cut off.
    #[error(
        "log truncated: it ends at seq {last_seq} but checkpoint line {checkpoint_line} signs seq {checkpoint_seq}"
    )]
    Truncated {
        /// Last seq in the log.
        last_seq: u64,
        /// Line of the checkpoint.
        checkpoint_line: usize,
        /// Seq it signs.
        checkpoint_seq: u64,
    },
}

fn log_err(seq: Option<u64>, line: usize, kind: VerifyErrorKind) -> VerifyError {
    VerifyError {
        file: AuditFile::Log,
        seq,
        line,
        kind,
    }
}

fn cp_err(seq: Option<u64>, line: usize, kind: VerifyErrorKind) -> VerifyError {
    VerifyError {
        file: AuditFile::Checkpoints,
        seq,
        line,
        kind,
    }
}

/// Valid checkpoints, in file order, with their line numbers.
struct Checkpoints {
    list: Vec<(usize, Checkpoint)>,
    signer: Option<PublicKey>,
    tail: Option<u64>,
}

fn load_checkpoints(path: &Path, trusted: Option<&PublicKey>) -> Result<Checkpoints, VerifyError> {
    let mut text = Vec::new();
    match File::open(path) {
        Ok(mut f) => f
            .read_to_end(&mut text)
            .map_err(|e| cp_err(None, 0, VerifyErrorKind::Io(e)))?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(cp_err(None, 0, VerifyErrorKind::CheckpointsMissing));
        }
        Err(e) => return Err(cp_err(None, 0, VerifyErrorKind::Io(e))),
    };
    let complete = text.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
    let tail = (complete < text.len()).then(|| (text.len() - complete) as u64);
    let mut list: Vec<(usize, Checkpoint)> = Vec::new();
    let mut signer = trusted.copied();
    let body = &text[..complete];
    let body = body.strip_suffix(b"\n").unwrap_or(body);
    let lines = body.split(|&b| b == b'\n').filter(|_| !body.is_empty());
    for (i, line) in lines.enumerate() {
        let n = i + 1;
        let cp = Checkpoint::parse(line)
            .map_err(|e| cp_err(None, n, VerifyErrorKind::CheckpointInvalid(e)))?;
        match (trusted, signer) {
            (Some(t), _) if cp.key != *t => {
                return Err(cp_err(
                    Some(cp.seq),
                    n,
                    VerifyErrorKind::UntrustedKey { key: cp.key },
                ));
            }
            (None, Some(first)) if cp.key != first => {
                return Err(cp_err(
                    Some(cp.seq),
                    n,
                    VerifyErrorKind::KeyChanged {
                        first,
                        found: cp.key,
                    },
                ));
            }
            _ => signer = Some(cp.key),
        }
        if let Some((prev_line, prev)) = list.last() {
            if cp.seq < prev.seq {
                return Err(cp_err(
                    Some(cp.seq),
                    n,
                    VerifyErrorKind::CheckpointOrder {
                        previous: prev.seq,
                        found: cp.seq,
                    },
                ));
            }
            if cp.seq == prev.seq && (cp.hash != prev.hash || cp.sandbox != prev.sandbox) {
                return Err(cp_err(
                    Some(cp.seq),
                    n,
                    VerifyErrorKind::CheckpointConflict {
                        seq: cp.seq,
                        other_line: *prev_line,
                    },
                ));
            }
        }
        list.push((n, cp));
    }
    Ok(Checkpoints {
        signer: signer.filter(|_| !list.is_empty()),
        list,
        tail,
    })
}

/// Reads the rest of the log looking for a record with `seq`; returns its line number.
fn find_seq(
    lines: &mut impl Iterator<Item = io::Result<Vec<u8>>>,
    seq: u64,
    from: usize,
) -> Option<usize> {
    let mut n = from;
    for line in lines {
        let line = line.ok()?;
        n += 1;
        if line.last() == Some(&b'\n')
            && Record::parse(&line[..line.len() - 1]).is_ok_and(|r| r.seq == seq)
        {
            return Some(n);
        }
    }
    None
}

/// Lines of a reader including their `\n` (the last one may lack it).
fn raw_lines(reader: impl io::BufRead) -> impl Iterator<Item = io::Result<Vec<u8>>> {
    let mut reader = reader;
    std::iter::from_fn(move || {
        let mut buf = Vec::new();
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) => None,
            Ok(_) => Some(Ok(buf)),
            Err(e) => Some(Err(e)),
        }
    })
}

/// Verifies the log at `log`. With `checkpoints` (normally [`crate::checkpoints_path`] of the
/// log) the sidecar must exist and every checkpoint must verify and agree with the log; with
/// `trusted`, every checkpoint must be signed by that key.
pub fn verify(
    log: &Path,
    checkpoints: Option<&Path>,
    trusted: Option<&PublicKey>,
) -> Result<Report, VerifyError> {
    let cps = match checkpoints {
        Some(p) => load_checkpoints(p, trusted)?,
        None => Checkpoints {
            list: Vec::new(),
            signer: None,
            tail: None,
        },
    };
    let file = File::open(log).map_err(|e| log_err(None, 0, VerifyErrorKind::Io(e)))?;
    let mut lines = raw_lines(BufReader::with_capacity(1 << 16, file));

    let mut next_cp = 0;
    let mut verified = 0;
    // Checkpoints of the empty log (seq 0) sign the zero hash.
    while let Some((n, cp)) = cps.list.get(next_cp).filter(|(_, cp)| cp.seq == 0) {
        if cp.hash != ZERO_HASH {
            return Err(cp_err(
                Some(0),
                *n,
                VerifyErrorKind::CheckpointInvalid(CheckpointError::Syntax(
                    "seq 0 must sign the zero hash".into(),
                )),
            ));
        }
        verified += 1;
        next_cp += 1;
    }

    let mut line_no = 0;
    let mut expected = 1u64;
    let mut prev = ZERO_HASH.to_owned();
    let mut runs: Vec<Run> = Vec::new();
    let mut tail = None;
    while let Some(raw) = lines.next() {
        let raw = raw.map_err(|e| log_err(None, line_no + 1, VerifyErrorKind::Io(e)))?;
        let Some(line) = raw.strip_suffix(b"\n") else {
            tail = Some(IncompleteTail {
                bytes: raw.len() as u64,
                after_seq: expected - 1,
            });
            break;
        };
        line_no += 1;
        let here = |kind| log_err(Some(expected), line_no, kind);
        let record =
            Record::parse(line).map_err(|e| here(VerifyErrorKind::Unparseable(e.to_string())))?;
        record.check(line).map_err(|e| {
            here(match e {
                RecordError::Syntax(s) => VerifyErrorKind::Unparseable(s),
                RecordError::HashMismatch { stated, computed } => {
                    VerifyErrorKind::HashMismatch { stated, computed }
                }
                RecordError::NotCanonical => VerifyErrorKind::NotCanonical,
            })
        })?;
        if record.seq > expected {
            let found = record.seq;
            let kind = match find_seq(&mut lines, expected, line_no) {
                Some(at_line) => VerifyErrorKind::SeqMoved {
                    expected,
                    found,
                    at_line,
                },
                None => VerifyErrorKind::SeqGap { expected, found },
            };
            return Err(here(kind));
        }
        if record.seq < expected {
            return Err(log_err(
                Some(record.seq),
                line_no,
                VerifyErrorKind::SeqOutOfOrder {
                    expected,
                    found: record.seq,
                },
            ));
        }
        if record.prev != prev {
            return Err(here(VerifyErrorKind::PrevMismatch {
                expected: prev,
                found: record.prev,
            }));
        }
        match runs.last_mut() {
            None => runs.push(Run {
                sandbox: record.sandbox.clone(),
                first_seq: record.seq,
                last_seq: record.seq,
                sealed: false,
            }),
            // Another sandbox may only take over with the record that says so.
            Some(run) if run.sandbox != record.sandbox => {
                if record.event.kind != kind::AUDIT_RUN {
                    return Err(here(VerifyErrorKind::SandboxChanged {
                        expected: run.sandbox.clone(),
                        found: record.sandbox,
                    }));
                }
                runs.push(Run {
                    sandbox: record.sandbox.clone(),
                    first_seq: record.seq,
                    last_seq: record.seq,
                    sealed: false,
                });
            }
            Some(run) => {
                run.last_seq = record.seq;
                run.sealed = false;
            }
        }
        while let Some((n, cp)) = cps.list.get(next_cp).filter(|(_, cp)| cp.seq == record.seq) {
            if cp.hash != record.hash || cp.sandbox != record.sandbox {
                return Err(here(VerifyErrorKind::CheckpointMismatch {
                    checkpoint_line: *n,
                    signed: cp.hash.clone(),
                    sandbox: cp.sandbox.clone(),
                }));
            }
            if cp.is_final
                && let Some(run) = runs.last_mut()
            {
                run.sealed = true;
            }
            verified += 1;
            next_cp += 1;
        }
        prev = record.hash;
        expected += 1;
    }
    let last_seq = expected - 1;
    if let Some((n, cp)) = cps.list.get(next_cp) {
        return Err(log_err(
            Some(last_seq + 1),
            line_no + 1,
            VerifyErrorKind::Truncated {
                last_seq,
                checkpoint_line: *n,
                checkpoint_seq: cp.seq,
            },
        ));
    }
    let last_cp = cps.list.last().map(|(_, cp)| cp);
    Ok(Report {
        records: last_seq,
        last_seq,
        last_hash: prev,
        checkpoints_verified: verified,
        last_checkpoint_seq: last_cp.map(|cp| cp.seq),
        sealed: last_cp.is_some_and(|cp| cp.is_final && cp.seq == last_seq) && tail.is_none(),
        signer: cps.signer,
        signer_trusted: trusted.is_some() && cps.signer.is_some(),
        tail_incomplete: tail,
        checkpoint_tail_incomplete: cps.tail,
        runs,
    })
}

#[cfg(test)]
mod tests;
