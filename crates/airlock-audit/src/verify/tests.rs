//! Tamper tests: each way of altering a log or its checkpoints, and the seq, line and reason
//! `verify` names for it.

use std::fs;
use std::path::{Path, PathBuf};

use super::*;
use crate::chain::{Chain, ChainOptions, checkpoints_path};
use crate::checkpoint::HostKey;
use crate::event::{self, Decision, Event, Source, kind};
use crate::time::Timestamp;

struct Fixture {
    _dir: tempfile::TempDir,
    log: PathBuf,
    key: PublicKey,
    /// The log's lines, each with its `\n`.
    lines: Vec<String>,
}

fn ev(n: u64) -> Event {
    Event::new(Source::Host, kind::FS_WRITE)
        .with_decision(Decision::Allow)
        .with_detail(format!("event {n}"))
}

/// A sealed log of 10 records with checkpoints at 3, 6, 9 and a final one at 10.
fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    let key = HostKey::generate().unwrap();
    let public = key.public_key();
    let mut options = ChainOptions::new("sb1", key);
    options.checkpoints.every_events = 3;
    let (mut chain, _) = Chain::open(&log, options).unwrap();
    for n in 1..=10 {
        chain.append(&ev(n)).unwrap();
    }
    chain.finish().unwrap();
    let lines = fs::read_to_string(&log)
        .unwrap()
        .split_inclusive('\n')
        .map(str::to_owned)
        .collect();
    Fixture {
        _dir: dir,
        log,
        key: public,
        lines,
    }
}

impl Fixture {
    fn write(&self, lines: &[String]) {
        fs::write(&self.log, lines.concat()).unwrap();
    }

    fn verify(&self) -> Result<Report, VerifyError> {
        verify(
            &self.log,
            Some(&checkpoints_path(&self.log)),
            Some(&self.key),
        )
    }

    /// (file, seq, line) of the error, and the error.
    fn fail(&self) -> (AuditFile, Option<u64>, usize, VerifyErrorKind) {
        let e = self.verify().unwrap_err();
        (e.file, e.seq, e.line, e.kind)
    }

    fn hash(&self, seq: usize) -> String {
        Record::parse(self.lines[seq - 1].trim_end().as_bytes())
            .unwrap()
            .hash
    }
}

#[test]
fn intact_log_verifies() {
    let f = fixture();
    let report = f.verify().unwrap();
    assert_eq!(
        report,
        Report {
            records: 10,
            last_seq: 10,
            last_hash: f.hash(10),
            checkpoints_verified: 4,
            last_checkpoint_seq: Some(10),
            sealed: true,
            signer: Some(f.key),
            signer_trusted: true,
            tail_incomplete: None,
            checkpoint_tail_incomplete: None,
            runs: vec![crate::Run {
                sandbox: report.runs[0].sandbox.clone(),
                first_seq: 1,
                last_seq: 10,
                sealed: true,
            }],
        }
    );
    assert_eq!(
        report.to_string(),
        format!(
            "ok: 10 records (seq 1..10), 4 checkpoints verified, last at seq 10, signed by trusted key {}",
            f.key
        )
    );
    // Without a trusted key, the same log verifies but says so.
    let untrusted = verify(&f.log, Some(&checkpoints_path(&f.log)), None).unwrap();
    assert_eq!(
        (untrusted.signer, untrusted.signer_trusted),
        (Some(f.key), false)
    );
}

#[test]
fn every_single_bit_flip_in_a_record_names_that_record() {
    let f = fixture();
    let target = 5;
    let original = f.lines[target - 1].clone().into_bytes();
    // Every byte of the line including its newline, two different bit flips each.
    for at in 0..original.len() {
        for bit in [0x01u8, 0x80] {
            let mut bytes = original.clone();
            bytes[at] ^= bit;
            let mut lines: Vec<Vec<u8>> = f.lines.iter().map(|l| l.clone().into_bytes()).collect();
            lines[target - 1] = bytes;
            fs::write(&f.log, lines.concat()).unwrap();
            // Checkpoints are not needed to catch an edit (and their Ed25519 checks are
            // slow in debug builds, 1,200 times over).
            let e = verify(&f.log, None, None).unwrap_err();
            assert_eq!(
                (e.file, e.seq, e.line),
                (AuditFile::Log, Some(5), 5),
                "flip {bit:#x} at byte {at}: {e}"
            );
        }
    }
}

#[test]
fn edited_value_is_a_hash_mismatch() {
    let f = fixture();
    let mut lines = f.lines.clone();
    lines[4] = lines[4].replace("event 5", "event X");
    f.write(&lines);
    let (file, seq, line, kind) = f.fail();
    assert_eq!((file, seq, line), (AuditFile::Log, Some(5), 5));
    assert!(
        matches!(&kind, VerifyErrorKind::HashMismatch { stated, .. } if *stated == f.hash(5)),
        "{kind:?}"
    );
    let msg = f.verify().unwrap_err().to_string();
    assert!(
        msg.starts_with("audit log line 5, seq 5: hash mismatch: record was edited"),
        "{msg}"
    );
}

#[test]
fn deleted_line_is_a_seq_gap() {
    let f = fixture();
    let mut lines = f.lines.clone();
    lines.remove(4);
    f.write(&lines);
    let (file, seq, line, kind) = f.fail();
    assert_eq!((file, seq, line), (AuditFile::Log, Some(5), 5));
    assert!(
        matches!(
            kind,
            VerifyErrorKind::SeqGap {
                expected: 5,
                found: 6
            }
        ),
        "{kind:?}"
    );
    assert_eq!(
        f.verify().unwrap_err().to_string(),
        "audit log line 5, seq 5: seq gap: expected seq 5, found 6; record 5 was deleted"
    );
}

#[test]
fn swapped_lines_are_out_of_order() {
    let f = fixture();
    let mut lines = f.lines.clone();
    lines.swap(4, 5);
    f.write(&lines);
    let (file, seq, line, kind) = f.fail();
    assert_eq!((file, seq, line), (AuditFile::Log, Some(5), 5));
    assert!(
        matches!(
            kind,
            VerifyErrorKind::SeqMoved {
                expected: 5,
                found: 6,
                at_line: 6
            }
        ),
        "{kind:?}"
    );
}

#[test]
fn inserted_forged_line_is_caught() {
    let f = fixture();

    // A copy of record 4 with a changed detail, inserted after it: its hash is wrong.
    let mut lines = f.lines.clone();
    lines.insert(4, f.lines[3].replace("event 4", "forged"));
    f.write(&lines);
    let (file, seq, line, kind) = f.fail();
    assert_eq!((file, seq, line), (AuditFile::Log, Some(5), 5));
    assert!(
        matches!(kind, VerifyErrorKind::HashMismatch { .. }),
        "{kind:?}"
    );

    // A well-formed record 5 chained to record 4: the real record 5 then repeats seq 5.
    let (forged, _) = event::encode(
        5,
        Timestamp::now(),
        "sb1",
        &Event::new(Source::Host, kind::SANDBOX_END),
        &f.hash(4),
    );
    let mut lines = f.lines.clone();
    lines.insert(4, String::from_utf8(forged).unwrap());
    f.write(&lines);
    let (file, seq, line, kind) = f.fail();
    assert_eq!((file, seq, line), (AuditFile::Log, Some(5), 6));
    assert!(
        matches!(
            kind,
            VerifyErrorKind::SeqOutOfOrder {
                expected: 6,
                found: 5
            }
        ),
        "{kind:?}"
    );

    // A well-formed record with the right seq but a wrong prev.
    let (forged, _) = event::encode(
        5,
        Timestamp::now(),
        "sb1",
        &Event::new(Source::Host, kind::SANDBOX_END),
        &f.hash(3),
    );
    let mut lines = f.lines.clone();
    lines[4] = String::from_utf8(forged).unwrap();
    f.write(&lines);
    let (file, seq, line, kind) = f.fail();
    assert_eq!((file, seq, line), (AuditFile::Log, Some(5), 5));
    assert!(
        matches!(&kind, VerifyErrorKind::PrevMismatch { expected, found } if *expected == f.hash(4) && *found == f.hash(3)),
        "{kind:?}"
    );
}

#[test]
fn consistent_rewrite_of_the_chain_is_caught_by_the_next_checkpoint() {
    let f = fixture();
    // Re-chain everything from record 5 on with an edited record 5, as an attacker without
    // the key would have to.
    let mut lines: Vec<String> = f.lines[..4].to_vec();
    let mut prev = f.hash(4);
    for line in &f.lines[4..] {
        let mut r = Record::parse(line.trim_end().as_bytes()).unwrap();
        if r.seq == 5 {
            r.event.detail = Some("rewritten".into());
        }
        let (line, hash) = event::encode(r.seq, r.ts, &r.sandbox, &r.event, &prev);
        lines.push(String::from_utf8(line).unwrap());
        prev = hash;
    }
    f.write(&lines);
    let (file, seq, line, kind) = f.fail();
    // The first checkpoint after the edit is at seq 6.
    assert_eq!((file, seq, line), (AuditFile::Log, Some(6), 6));
    assert!(
        matches!(&kind, VerifyErrorKind::CheckpointMismatch { checkpoint_line: 2, signed, .. } if *signed == f.hash(6)),
        "{kind:?}"
    );
}

#[test]
fn dropped_last_lines_are_caught_by_checkpoints() {
    let f = fixture();
    f.write(&f.lines[..9]);
    let (file, seq, line, kind) = f.fail();
    assert_eq!((file, seq, line), (AuditFile::Log, Some(10), 10));
    assert!(
        matches!(
            kind,
            VerifyErrorKind::Truncated {
                last_seq: 9,
                checkpoint_line: 4,
                checkpoint_seq: 10
            }
        ),
        "{kind:?}"
    );
    assert_eq!(
        f.verify().unwrap_err().to_string(),
        "audit log line 10, seq 10: log truncated: it ends at seq 9 but checkpoint line 4 signs seq 10"
    );

    f.write(&f.lines[..7]);
    let (_, seq, _, kind) = f.fail();
    assert_eq!(seq, Some(8));
    assert!(
        matches!(
            kind,
            VerifyErrorKind::Truncated {
                last_seq: 7,
                checkpoint_line: 3,
                checkpoint_seq: 9
            }
        ),
        "{kind:?}"
    );

    f.write(&[]);
    let (_, seq, line, _) = f.fail();
    assert_eq!((seq, line), (Some(1), 1));
}

#[test]
fn removing_the_final_checkpoint_too_leaves_the_log_unsealed() {
    let f = fixture();
    f.write(&f.lines[..9]);
    let cps = checkpoints_path(&f.log);
    let text = fs::read_to_string(&cps).unwrap();
    let kept: Vec<&str> = text.split_inclusive('\n').take(3).collect();
    fs::write(&cps, kept.concat()).unwrap();
    let report = f.verify().unwrap();
    assert_eq!(
        (report.last_seq, report.last_checkpoint_seq, report.sealed),
        (9, Some(9), false)
    );
    assert!(
        report
            .to_string()
            .contains("not sealed by a final checkpoint")
    );
}

#[test]
fn partial_last_line_is_reported_and_the_rest_verifies() {
    let f = fixture();
    // A crash while writing record 11 (after the final checkpoint of a previous run).
    let mut lines = f.lines.clone();
    lines.push(r#"{"seq":11,"ts":"2026-11"#.to_owned());
    f.write(&lines);
    let report = f.verify().unwrap();
    assert_eq!(
        report.tail_incomplete,
        Some(IncompleteTail {
            bytes: 23,
            after_seq: 10
        })
    );
    assert_eq!((report.records, report.sealed), (10, false));
    assert!(
        report
            .to_string()
            .ends_with("\ntail: 23 bytes incomplete after seq 10"),
        "{report}"
    );
}

#[test]
fn checkpoint_problems() {
    let f = fixture();
    let cps = checkpoints_path(&f.log);
    let text = fs::read_to_string(&cps).unwrap();

    let other = HostKey::generate().unwrap().public_key();
    let e = verify(&f.log, Some(&cps), Some(&other)).unwrap_err();
    assert_eq!(
        (e.file, e.seq, e.line),
        (AuditFile::Checkpoints, Some(3), 1)
    );
    assert!(matches!(e.kind, VerifyErrorKind::UntrustedKey { key } if key == f.key));

    // A checkpoint re-signed with another key, mixed in.
    let forger = HostKey::generate().unwrap();
    let (_, forged) = Checkpoint::sign(&forger, 10, &f.hash(10), Timestamp::now(), "sb1", true);
    fs::write(
        &cps,
        format!("{text}{}", String::from_utf8(forged).unwrap()),
    )
    .unwrap();
    let e = verify(&f.log, Some(&cps), None).unwrap_err();
    assert_eq!(
        (e.file, e.seq, e.line),
        (AuditFile::Checkpoints, Some(10), 5)
    );
    assert!(matches!(e.kind, VerifyErrorKind::KeyChanged { first, .. } if first == f.key));

    // Edited checkpoint.
    fs::write(&cps, text.replacen("\"seq\":3", "\"seq\":4", 1)).unwrap();
    let e = verify(&f.log, Some(&cps), None).unwrap_err();
    assert_eq!((e.file, e.seq, e.line), (AuditFile::Checkpoints, None, 1));
    assert!(matches!(
        e.kind,
        VerifyErrorKind::CheckpointInvalid(CheckpointError::BadSignature)
    ));

    // Reordered checkpoints.
    let mut cp_lines: Vec<&str> = text.split_inclusive('\n').collect();
    cp_lines.swap(0, 1);
    fs::write(&cps, cp_lines.concat()).unwrap();
    let e = verify(&f.log, Some(&cps), None).unwrap_err();
    assert_eq!(
        (e.file, e.seq, e.line),
        (AuditFile::Checkpoints, Some(3), 2)
    );

    // Incomplete last checkpoint line: reported, not an error.
    fs::write(&cps, format!("{text}{{\"seq\":1")).unwrap();
    let report = verify(&f.log, Some(&cps), Some(&f.key)).unwrap();
    assert_eq!(report.checkpoint_tail_incomplete, Some(8));

    fs::remove_file(&cps).unwrap();
    let e = verify(&f.log, Some(&cps), Some(&f.key)).unwrap_err();
    assert!(matches!(e.kind, VerifyErrorKind::CheckpointsMissing));
    assert_eq!(
        e.to_string(),
        "checkpoint file: missing: it was deleted, or the log was not written with checkpoints"
    );
}

#[test]
fn empty_log_with_a_final_checkpoint_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    let key = HostKey::generate().unwrap();
    let public = key.public_key();
    let (chain, _) = Chain::open(&log, ChainOptions::new("sb1", key)).unwrap();
    chain.finish().unwrap();
    let report = verify(&log, Some(&checkpoints_path(&log)), Some(&public)).unwrap();
    assert_eq!(
        (report.records, report.checkpoints_verified, report.sealed),
        (0, 1, true)
    );
}

#[test]
fn unparseable_line_names_line_and_expected_seq() {
    let f = fixture();
    let mut lines = f.lines.clone();
    lines[2] = "not json\n".into();
    f.write(&lines);
    let e = f.verify().unwrap_err();
    assert_eq!((e.file, e.seq, e.line), (AuditFile::Log, Some(3), 3));
    assert!(
        e.to_string()
            .starts_with("audit log line 3, seq 3: unparseable record: expected ident"),
        "{e}"
    );
    let _: &Path = &f.log;
}
