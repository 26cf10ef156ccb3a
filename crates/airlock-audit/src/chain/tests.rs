//! Tests of the appender: the chain and its checkpoint cadence, resuming after a crash,
//! recovery of a cut-off tail, and the logs it refuses to extend.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;
use crate::checkpoint::{Checkpoint, HostKey};
use crate::event::{self, Decision, Event, Record, RecordError, Source, ZERO_HASH, kind};
use crate::time::Timestamp;
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
            previous_run: None,
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

#[test]
fn a_second_run_continues_the_log_and_verify_names_each_run() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    let (mut chain, _) = Chain::open(&log, options(dir.path())).unwrap();
    chain.append(&ev(1)).unwrap();
    chain.append(&ev(2)).unwrap();
    chain.finish().unwrap();

    let mut second = options(dir.path());
    second.sandbox = "sb2".into();
    let (mut chain, opened) = Chain::open(&log, second).unwrap();
    assert_eq!(opened.previous_run.as_deref(), Some("sb1"));
    assert_eq!(opened.last_seq, 2);
    chain.append(&ev(3)).unwrap();
    chain.finish().unwrap();

    // Interrupted: no final checkpoint for the third run.
    let mut third = options(dir.path());
    third.sandbox = "sb3".into();
    let (mut chain, _) = Chain::open(&log, third).unwrap();
    chain.append(&ev(4)).unwrap();
    chain.checkpoint().unwrap();
    drop(chain);

    let records = lines(&log);
    assert_eq!(records.len(), 6);
    assert_eq!(records[2].event.kind, kind::AUDIT_RUN);
    assert_eq!(records[2].sandbox, "sb2");
    assert_eq!(records[2].prev, records[1].hash, "one chain across runs");
    let report = verify(&log, Some(&checkpoints_path(&log)), None).unwrap();
    let runs: Vec<(&str, u64, u64, bool)> = report
        .runs
        .iter()
        .map(|r| (r.sandbox.as_str(), r.first_seq, r.last_seq, r.sealed))
        .collect();
    assert_eq!(
        runs,
        [
            ("sb1", 1, 2, true),
            ("sb2", 3, 4, true),
            ("sb3", 5, 6, false)
        ]
    );
    let shown = report.to_string();
    assert!(
        shown.contains("run 2: sandbox sb2, seq 3..4, sealed"),
        "{shown}"
    );
    assert!(
        shown.contains("run 3: sandbox sb3, seq 5..6, not sealed"),
        "{shown}"
    );
}

#[test]
fn verify_refuses_a_change_of_sandbox_without_a_run_record() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    let (mut chain, _) = Chain::open(&log, options(dir.path())).unwrap();
    chain.append(&ev(1)).unwrap();
    chain.finish().unwrap();
    let mut second = options(dir.path());
    second.sandbox = "sb2".into();
    let (mut chain, _) = Chain::open(&log, second).unwrap();
    chain.append(&ev(2)).unwrap();
    chain.finish().unwrap();

    // Drop the `audit.run` record and re-chain the rest as a forger with the hashes (but
    // not the key) would: the change of sandbox is then refused.
    let mut records = lines(&log);
    records.remove(1);
    let mut prev = ZERO_HASH.to_owned();
    let mut text = Vec::new();
    for (i, r) in records.iter().enumerate() {
        let (line, hash) = crate::event::encode(i as u64 + 1, r.ts, &r.sandbox, &r.event, &prev);
        text.extend_from_slice(&line);
        prev = hash;
    }
    fs::write(&log, text).unwrap();
    fs::remove_file(checkpoints_path(&log)).unwrap();
    let err = verify(&log, None, None).unwrap_err();
    assert!(
        matches!(&err.kind, crate::VerifyErrorKind::SandboxChanged { expected, found } if expected == "sb1" && found == "sb2"),
        "{err}"
    );
    assert_eq!(err.seq, Some(2));
}
