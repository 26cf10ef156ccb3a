//! Chain append throughput: `cargo bench -p airlock-audit --bench append`. Appends N typical
//! `fs.write` events to a log in a temporary directory and prints events per second for the
//! bare chain, with signed checkpoints (default cadence, with and without fsync), and through
//! the sink's writer thread. Figures only; nothing is asserted.

use std::time::{Duration, Instant};

use airlock_audit::{
    Chain, ChainOptions, CheckpointPolicy, Decision, Event, FsInfo, Fsync, HostKey, SinkOptions,
    Source, kind, spawn, verify,
};

const N: u64 = 100_000;

type Outcome = Result<(Duration, u64), Box<dyn std::error::Error>>;
type Case = (&'static str, Box<dyn Fn() -> Outcome>);

fn event(n: u64) -> Event {
    Event::new(Source::Host, kind::FS_WRITE)
        .with_decision(Decision::Allow)
        .with_rule("filesystem.share[0]")
        .with_fs(FsInfo {
            op: "write".into(),
            path: format!("/workspace/src/module_{}/file_{n}.rs", n % 97),
            to: None,
            mount: Some("/workspace".into()),
        })
}

fn options(key: Option<HostKey>, fsync: Fsync) -> ChainOptions {
    ChainOptions {
        sandbox: "bench-0001".into(),
        key,
        checkpoints: CheckpointPolicy::default(),
        fsync,
    }
}

fn key() -> HostKey {
    match HostKey::generate() {
        Ok(k) => k,
        Err(e) => panic!("generating key: {e}"),
    }
}

/// Appends N events with a chain opened with `options`; returns the elapsed time.
fn run_chain(options: ChainOptions) -> Outcome {
    let dir = tempfile::tempdir()?;
    let log = dir.path().join("audit.jsonl");
    let events: Vec<Event> = (0..N).map(event).collect();
    let start = Instant::now();
    let (mut chain, _) = Chain::open(&log, options)?;
    for e in &events {
        chain.append(e)?;
    }
    chain.finish()?;
    let elapsed = start.elapsed();
    Ok((elapsed, std::fs::metadata(&log)?.len()))
}

/// Same through the sink (one producer, blocking emit so nothing is dropped).
fn run_sink() -> Outcome {
    let dir = tempfile::tempdir()?;
    let log = dir.path().join("audit.jsonl");
    let events: Vec<Event> = (0..N).map(event).collect();
    let start = Instant::now();
    let (chain, _) = Chain::open(&log, options(Some(key()), Fsync::Checkpoint))?;
    let (sink, writer) = spawn(chain, SinkOptions::default())?;
    for e in events {
        sink.emit(e)?;
    }
    writer.finish()?;
    Ok((start.elapsed(), std::fs::metadata(&log)?.len()))
}

fn run_verify() -> Outcome {
    let dir = tempfile::tempdir()?;
    let log = dir.path().join("audit.jsonl");
    let key = key();
    let public = key.public_key();
    let (mut chain, _) = Chain::open(&log, options(Some(key), Fsync::Never))?;
    for n in 0..N {
        chain.append(&event(n))?;
    }
    chain.finish()?;
    let start = Instant::now();
    let report = verify(
        &log,
        Some(&airlock_audit::checkpoints_path(&log)),
        Some(&public),
    )?;
    assert_eq!(report.records, N);
    Ok((start.elapsed(), std::fs::metadata(&log)?.len()))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cases: Vec<Case> = vec![
        (
            "chain, no checkpoints",
            Box::new(|| run_chain(options(None, Fsync::Never))),
        ),
        (
            "chain + checkpoints (1000/5s), fsync at checkpoints",
            Box::new(|| run_chain(options(Some(key()), Fsync::Checkpoint))),
        ),
        (
            "chain + checkpoints (1000/5s), no fsync",
            Box::new(|| run_chain(options(Some(key()), Fsync::Never))),
        ),
        (
            "sink (writer thread) + checkpoints, fsync at checkpoints",
            Box::new(run_sink),
        ),
        ("verify with checkpoints (read side)", Box::new(run_verify)),
    ];
    // Warm-up (page cache, allocator, CPU frequency), not reported.
    run_chain(options(None, Fsync::Never))?;
    println!("N = {N} events");
    println!(
        "{:<58} {:>10} {:>12} {:>10}",
        "case", "time", "events/s", "B/record"
    );
    for (name, run) in cases {
        let (elapsed, bytes) = run()?;
        let rate = N as f64 / elapsed.as_secs_f64();
        println!(
            "{name:<58} {:>8.1}ms {:>12.0} {:>10}",
            elapsed.as_secs_f64() * 1000.0,
            rate,
            bytes / N
        );
    }
    Ok(())
}
