#![allow(clippy::indexing_slicing)]

use super::*;
use airlock_audit::{Chain, ChainOptions, Event, FsInfo, HostKey, NetInfo, ProcInfo};
use proptest::prelude::*;
use std::io::Write as _;

fn write_log(path: &Path, events: &[Event]) {
    let key = HostKey::generate().unwrap();
    let (mut chain, _) = Chain::open(path, ChainOptions::new("sb-test", key)).unwrap();
    for e in events {
        chain.append(e).unwrap();
    }
    chain.finish().unwrap();
}

fn fs(kind: &str, decision: Decision, path: &str) -> Event {
    Event::new(Source::Host, kind)
        .with_decision(decision)
        .with_rule("filesystem.protected \".git/hooks/**\"")
        .with_reason("protected_path")
        .with_fs(FsInfo {
            op: "create".into(),
            path: path.into(),
            to: None,
            mount: Some("/workspace".into()),
        })
}

fn net(host: &str, decision: Decision, bytes_in: u64) -> Event {
    Event::new(Source::Host, kind::NET_CONNECT)
        .with_decision(decision)
        .with_net(NetInfo {
            host: Some(host.into()),
            port: Some(443),
            bytes_in: Some(bytes_in),
            bytes_out: Some(10),
            ..NetInfo::default()
        })
}

fn sample() -> Vec<Event> {
    vec![
        Event::new(Source::Host, kind::SANDBOX_START)
            .with_decision(Decision::Allow)
            .with_detail(
                "policy /p/policy.toml, image tiny; 1 cpus, 512 MiB, accel tcg (why); layers: x",
            ),
        Event::new(Source::Host, kind::SANDBOX_BIND).with_detail(
            "policy /p (sha256 ab); shares: /w at /workspace (overlay); bound in 3 ms",
        ),
        fs(kind::FS_CREATE, Decision::Allow, "/workspace/a.txt"),
        fs(
            kind::FS_CREATE,
            Decision::Deny,
            "/workspace/.git/hooks/pre-commit",
        ),
        net("api.example.com", Decision::Allow, 1000),
        net("evil.example", Decision::Deny, 0),
        Event::new(Source::Guest, kind::PROC_EXEC).with_proc(ProcInfo {
            pid: Some(7),
            argv: vec!["sh".into(), "-c".into(), "<script>".into()],
            ..ProcInfo::default()
        }),
        Event::new(Source::Host, kind::SANDBOX_END)
            .with_decision(Decision::Allow)
            .with_detail("command ended: Code { code: 3 }, 0 OOM kill(s); airlock exits 3"),
    ]
}

#[test]
fn a_log_is_indexed_with_its_sums() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("sb-test.jsonl");
    write_log(&log, &sample());
    let mut ix = LogIndex::new(&log);
    assert_eq!(ix.refresh().unwrap(), 8);
    let s = ix.summary();
    assert_eq!(s.records, 8);
    assert_eq!(s.image.as_deref(), Some("tiny"));
    assert_eq!(s.policy.as_deref(), Some("/p/policy.toml"));
    assert_eq!(s.accel.as_deref(), Some("tcg"));
    assert_eq!(s.shares.as_deref(), Some("/w at /workspace (overlay)"));
    assert_eq!(s.exit, Some(3));
    assert!(s.ended.is_some());
    assert_eq!(s.fs_ops, 2);
    assert_eq!((s.net_requests, s.bytes_in, s.bytes_out), (2, 1000, 20));
    assert_eq!(s.processes, 1);
    assert_eq!(s.denials.get("fs"), Some(&1));
    assert_eq!(s.denials.get("net"), Some(&1));
    assert_eq!(ix.hosts().get("evil.example").map(|t| t.denied), Some(1));
    assert_eq!(ix.refused().len(), 1);
    assert_eq!(ix.refused()[0].path, "/workspace/.git/hooks/pre-commit");
    assert_eq!(ix.refused()[0].reason.as_deref(), Some("protected_path"));
    let per_minute: u64 = ix.minutes().map(|(_, c)| c.iter().sum::<u64>()).sum();
    assert_eq!(per_minute, 8);
}

#[test]
fn filters_and_pages_select_the_right_records() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("sb-test.jsonl");
    write_log(&log, &sample());
    let mut ix = LogIndex::new(&log);
    ix.refresh().unwrap();
    let deny = Query {
        decisions: vec![1],
        ..Query::default()
    };
    let (n, page) = ix.select(&deny, 0, 10);
    assert_eq!(n, 2);
    assert_eq!(page.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![4, 6]);
    let net_only = Query {
        areas: vec![area_of("net.connect")],
        ..Query::default()
    };
    assert_eq!(ix.select(&net_only, 0, 10).0, 2);
    let guest = Query {
        source: Some(1),
        ..Query::default()
    };
    let (n, page) = ix.select(&guest, 0, 10);
    assert_eq!((n, page[0].seq), (1, 7));
    // Paging: second page of two.
    let (n, page) = ix.select(&Query::default(), 2, 2);
    assert_eq!(n, 8);
    assert_eq!(page.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![3, 4]);
    // After a seq.
    let after = Query {
        after: 6,
        ..Query::default()
    };
    assert_eq!(ix.select(&after, 0, 10).0, 2);
    // The lines read back are the records.
    let lines = ix.read(&page).unwrap();
    let r = Record::parse(&lines[1]).unwrap();
    assert_eq!(r.seq, 4);
    assert_eq!(r.event.decision, Some(Decision::Deny));
}

#[test]
fn a_growing_log_is_indexed_incrementally_and_a_half_line_waits() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("sb-test.jsonl");
    let key = HostKey::generate().unwrap();
    let (mut chain, _) = Chain::open(&log, ChainOptions::new("sb-test", key)).unwrap();
    chain.append(&sample()[0]).unwrap();
    let mut ix = LogIndex::new(&log);
    assert_eq!(ix.refresh().unwrap(), 1);
    chain.append(&sample()[2]).unwrap();
    chain.append(&sample()[3]).unwrap();
    assert_eq!(ix.refresh().unwrap(), 2);
    assert_eq!(ix.refresh().unwrap(), 0);
    drop(chain);
    // Half a line (a writer in the middle of a record) is not indexed until it ends.
    let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    f.write_all(b"{\"seq\":4,").unwrap();
    assert_eq!(ix.refresh().unwrap(), 0);
    f.write_all(b"garbage}\n").unwrap();
    assert_eq!(ix.refresh().unwrap(), 1);
    assert_eq!(ix.summary().unreadable, 1);
    let last = *ix.entries().last().unwrap();
    assert_eq!((last.area, last.seq, last.line), (UNREADABLE, 0, 4));
    // A log replaced by a shorter one is indexed again from the start.
    std::fs::write(&log, b"not json\n").unwrap();
    assert_eq!(ix.refresh().unwrap(), 1);
    assert_eq!(ix.entries().len(), 1);
}

#[test]
fn hosts_are_bounded_whatever_the_guest_connects_to() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("sb-test.jsonl");
    let events: Vec<Event> = (0..MAX_HOSTS + 50)
        .map(|i| net(&format!("h{i}.example"), Decision::Deny, 1))
        .collect();
    write_log(&log, &events);
    let mut ix = LogIndex::new(&log);
    ix.refresh().unwrap();
    assert_eq!(ix.hosts().len(), MAX_HOSTS + 1);
    assert_eq!(ix.hosts().get("(other)").map(|t| t.requests), Some(50));
}

#[test]
fn start_details_of_other_shapes_give_nothing_rather_than_garbage() {
    assert_eq!(parse_start("pooled"), (None, None, None));
    assert_eq!(
        parse_start("policy a, b, image c; accel kvm"),
        (Some("a, b".into()), Some("c".into()), Some("kvm".into()))
    );
}

#[test]
fn a_glance_at_the_ends_of_a_log_gives_its_start_end_and_count() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("sb-test.jsonl");
    let mut events = sample();
    let end = events.pop().unwrap();
    for i in 0..2000 {
        events.push(fs(
            kind::FS_CREATE,
            Decision::Allow,
            &format!("/workspace/f{i}"),
        ));
    }
    events.push(end);
    write_log(&log, &events);
    let s = LogIndex::glance(&log, 8 << 10).unwrap();
    assert_eq!(s.image.as_deref(), Some("tiny"));
    assert_eq!(s.exit, Some(3));
    assert!(s.ended.is_some());
    assert_eq!(
        s.records,
        events.len() as u64,
        "the last seq counts the records"
    );
    assert!(s.fs_ops < 2000, "only the ends were read");
    // A window larger than the log reads it all, once.
    let all = LogIndex::glance(&log, 1 << 30).unwrap();
    assert_eq!(all.fs_ops, 2002);
}

proptest! {
    /// Whatever bytes a log holds, indexing never panics, every line becomes one entry, and
    /// entries point inside the file.
    #[test]
    fn any_bytes_index_without_panicking(lines in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 0..20)) {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("x.jsonl");
        let mut bytes = Vec::new();
        for l in &lines {
            bytes.extend(l.iter().copied().filter(|&b| b != b'\n'));
            bytes.push(b'\n');
        }
        std::fs::write(&log, &bytes).unwrap();
        let mut ix = LogIndex::new(&log);
        ix.refresh().unwrap();
        prop_assert_eq!(ix.entries().len(), lines.len());
        for e in ix.entries() {
            prop_assert!(e.offset + u64::from(e.len) <= bytes.len() as u64);
        }
        let all = ix.entries().to_vec();
        let read = ix.read(&all).unwrap();
        prop_assert_eq!(read.len(), lines.len());
    }
}
