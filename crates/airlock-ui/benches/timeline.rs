//! The review page's timeline over a large log: `cargo bench -p airlock-ui --bench timeline`.
//! Writes a log of 100,000 records (every 50th a denial), then times what the page does (index
//! the log once, count and fetch one filtered page, fetch a page in the middle, pick up 1,000
//! appended records) against the baseline of parsing the whole log the way `airlock audit show`
//! does, in the same run. Figures only; nothing is asserted.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use airlock_audit::{Chain, ChainOptions, Decision, Event, Filter, FsInfo, HostKey, Source, kind};
use airlock_ui::index::{LogIndex, Query};
use std::time::{Duration, Instant};

const N: u64 = 100_000;
const PAGE: usize = 200;

fn event(n: u64) -> Event {
    let deny = n.is_multiple_of(50);
    Event::new(
        Source::Host,
        if deny {
            kind::FS_CREATE
        } else {
            kind::FS_WRITE
        },
    )
    .with_decision(if deny {
        Decision::Deny
    } else {
        Decision::Allow
    })
    .with_rule("filesystem.mounts[0] \"/workspace\"")
    .with_fs(FsInfo {
        op: "write".into(),
        path: format!("/workspace/src/module_{}/file_{n}.rs", n % 97),
        to: None,
        mount: Some("/workspace".into()),
    })
}

fn time<T>(f: impl FnOnce() -> T) -> (Duration, T) {
    let t0 = Instant::now();
    let out = f();
    (t0.elapsed(), out)
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("sb-bench.jsonl");
    let key = HostKey::generate().unwrap();
    let (mut chain, _) = Chain::open(&log, ChainOptions::new("sb-bench", key)).unwrap();
    for n in 0..N {
        chain.append(&event(n)).unwrap();
    }
    let bytes = std::fs::metadata(&log).unwrap().len();

    let (baseline, all) = time(|| airlock_audit::read_log(&log, &Filter::default()).unwrap());
    assert_eq!(all.len() as u64, N);
    let mut ix = LogIndex::new(&log);
    let (index, added) = time(|| ix.refresh().unwrap());
    assert_eq!(added as u64, N);
    let deny = Query {
        decisions: vec![1],
        ..Query::default()
    };
    let (filtered, (matched, page)) = time(|| {
        let (matched, page) = ix.select(&deny, 0, PAGE);
        (matched, ix.read(&page).unwrap())
    });
    assert_eq!((matched, page.len()), (N as usize / 50, PAGE));
    let (middle, page) = time(|| {
        let (_, page) = ix.select(&Query::default(), N as usize / 2, PAGE);
        ix.read(&page).unwrap()
    });
    assert_eq!(page.len(), PAGE);
    for n in N..N + 1000 {
        chain.append(&event(n)).unwrap();
    }
    let (grow, added) = time(|| ix.refresh().unwrap());
    assert_eq!(added, 1000);

    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let ratio = |d: Duration| ms(d) / ms(baseline);
    println!(
        "log: {N} records, {:.1} MiB; baseline: parse the whole log (`airlock audit show`)",
        bytes as f64 / (1024.0 * 1024.0)
    );
    println!("{:<52} {:>10} {:>12}", "step", "ms", "vs baseline");
    for (name, d) in [
        ("baseline: read_log, every record parsed", baseline),
        ("index the log once (first open)", index),
        ("count denials + read their first page of 200", filtered),
        ("page of 200 at record 50,000", middle),
        ("pick up 1,000 appended records (live)", grow),
    ] {
        println!("{name:<52} {:>10.1} {:>11.3}x", ms(d), ratio(d));
    }
    let entry = std::mem::size_of::<airlock_ui::index::Entry>();
    println!(
        "index memory: {} bytes per record, {:.1} MiB for the log",
        entry,
        (entry as f64 * N as f64) / (1024.0 * 1024.0)
    );
    let _ = chain.finish();
}
