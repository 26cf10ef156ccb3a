//! The audit sink: how gateways and the supervisor hand events to the one writer thread that
//! owns a sandbox's [`Chain`]. [`spawn`] starts the thread and returns a cloneable
//! [`AuditSink`] for producers and an [`AuditWriter`] for the owner, who calls
//! [`AuditWriter::finish`] at teardown.
//!
//! **Overload.** The queue is a bounded `sync_channel`. [`AuditSink::try_emit`] never blocks:
//! when the queue is full the event is dropped and counted, and the writer appends an
//! `audit.dropped` record with the count as soon as it runs again (after the next record or
//! within one poll interval), so drops are visible in the log itself. Events emitted after the
//! writer stopped cannot be recorded; they are counted as `unrecorded` and the emitter gets
//! [`EmitError::Closed`].
//!
//! **Shutdown.** `finish` marks the sink closed, waits until no producer is mid-send, writes
//! everything still queued plus any pending `audit.dropped`, and closes the chain (final
//! checkpoint). No accepted event is lost in the hand-over.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use serde::Serialize;

use crate::chain::{Chain, ChainError, Summary};
use crate::event::{Decision, Event, Source, kind};
use crate::limit::{Bucket, GUEST_LIMIT, GuestBudget, QUEUE_FULL};

/// Default queue capacity.
pub const DEFAULT_CAPACITY: usize = 4096;
/// Default interval at which an idle writer records pending drops and due checkpoints.
pub const DEFAULT_POLL: Duration = Duration::from_millis(100);

/// Options for [`spawn`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SinkOptions {
    /// Events that may wait in the queue (at least 1).
    pub capacity: usize,
    /// How long the idle writer sleeps between housekeeping rounds.
    pub poll: Duration,
    /// What guest reports may take, on top of `capacity` (which stays the host's).
    pub guest: GuestBudget,
}

impl Default for SinkOptions {
    fn default() -> Self {
        Self {
            capacity: DEFAULT_CAPACITY,
            poll: DEFAULT_POLL,
            guest: GuestBudget::default(),
        }
    }
}

/// Why an event was not queued. Either way it has been counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EmitError {
    /// The queue was full; the event was dropped and will be reported by an `audit.dropped`
    /// record.
    #[error("audit queue full; event dropped and counted")]
    Full,
    /// The writer has stopped (finished or failed); the event could not be recorded.
    #[error("audit writer stopped; event not recorded")]
    Closed,
}

/// Errors from [`spawn`] and [`AuditWriter::finish`].
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The writer thread could not be started.
    #[error("starting audit writer thread")]
    Spawn(#[source] std::io::Error),
    /// The chain failed; the writer stopped at that point.
    #[error("audit writer failed")]
    Chain(#[from] ChainError),
    /// The writer thread panicked.
    #[error("audit writer thread panicked")]
    Panicked,
}

/// A snapshot of the sink's counters, for `airlock` metrics (JSON via serde).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    /// Records appended by the writer, including `audit.dropped` records.
    pub written: u64,
    /// Events dropped because the queue was full.
    pub dropped: u64,
    /// Guest reports dropped over their budget (rate or queue share).
    pub guest_dropped: u64,
    /// Events emitted after the writer stopped (not in the log).
    pub unrecorded: u64,
    /// Events with `decision: deny`, by the first segment of their kind (`fs`, `net`, ...),
    /// counted when emitted, whether or not they were then dropped.
    pub denials: BTreeMap<String, u64>,
    /// True once the writer has stopped because the chain failed.
    pub failed: bool,
}

enum Msg {
    Event(Box<Event>),
    /// From `AuditWriter::finish`: close after draining.
    Finish,
    /// Test hook: the writer signals `started`, then waits on `release`.
    #[cfg(test)]
    Hold {
        started: SyncSender<()>,
        release: Receiver<()>,
    },
}

#[derive(Default)]
struct Shared {
    written: AtomicU64,
    dropped: AtomicU64,
    /// Drops not yet recorded in the log.
    pending_drops: AtomicU64,
    unrecorded: AtomicU64,
    guest_dropped: AtomicU64,
    pending_guest_drops: AtomicU64,
    /// Events in the queue now, by who produced them: the host's at most `capacity` (unless
    /// sent blocking), the guest's at most `guest.queued`.
    host_queued: AtomicU64,
    host_limit: u64,
    guest_queued: AtomicU64,
    guest_limit: u64,
    guest_bucket: Mutex<Option<Bucket>>,
    failed: AtomicBool,
    /// Set by `finish` (or a failed writer); producers then stop sending.
    closed: AtomicBool,
    /// Producers between their `closed` check and the end of their send.
    in_flight: AtomicU64,
    denials: Mutex<BTreeMap<String, u64>>,
}

/// A producer handle; clone it freely across threads.
#[derive(Clone)]
pub struct AuditSink {
    tx: SyncSender<Msg>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for AuditSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditSink")
            .field("counters", &self.counters())
            .finish()
    }
}

/// The owner's handle on the writer thread.
#[derive(Debug)]
pub struct AuditWriter {
    sink: AuditSink,
    handle: JoinHandle<Result<Summary, ChainError>>,
}

/// Starts the writer thread for `chain`. The thread enters the caller's current tracing span.
pub fn spawn(chain: Chain, options: SinkOptions) -> Result<(AuditSink, AuditWriter), SinkError> {
    // Guest reports never hold more than their share, so host records always find room.
    let (tx, rx) = mpsc::sync_channel(options.capacity.max(1) + options.guest.queued);
    let shared = Arc::new(Shared {
        host_limit: options.capacity.max(1) as u64,
        guest_limit: options.guest.queued as u64,
        guest_bucket: Mutex::new(Some(Bucket::new(
            options.guest.per_second,
            options.guest.burst,
        ))),
        ..Shared::default()
    });
    let span = tracing::Span::current();
    let writer = Writer {
        chain,
        rx,
        shared: Arc::clone(&shared),
        poll: options.poll,
    };
    let handle = std::thread::Builder::new()
        .name("airlock-audit".into())
        .spawn(move || {
            let _entered = span.enter();
            writer.run()
        })
        .map_err(SinkError::Spawn)?;
    let sink = AuditSink { tx, shared };
    Ok((sink.clone(), AuditWriter { sink, handle }))
}

impl AuditSink {
    /// Queues an event without blocking. On a full queue the event is dropped and counted
    /// (and later recorded as `audit.dropped`).
    pub fn try_emit(&self, event: Event) -> Result<(), EmitError> {
        self.send(event, false)
    }

    /// Queues an event, waiting while the queue is full. For rare events that must not be
    /// dropped (lifecycle), from threads that may block.
    pub fn emit(&self, event: Event) -> Result<(), EmitError> {
        self.send(event, true)
    }

    fn send(&self, mut event: Event, block: bool) -> Result<(), EmitError> {
        let s = &*self.shared;
        crate::cap::cap_fields(&mut event, crate::cap::FIELD_CAP);
        let guest = event.source == Source::Guest;
        let queued = if guest {
            &s.guest_queued
        } else {
            &s.host_queued
        };
        if event.decision == Some(Decision::Deny) {
            let prefix = event.kind.split('.').next().unwrap_or_default();
            let mut denials = s.denials.lock().unwrap_or_else(|e| e.into_inner());
            *denials.entry(prefix.to_owned()).or_default() += 1;
        }
        // Paired with `Writer::close`: either the writer sees us in flight and waits for
        // this send, or we see `closed` and do not send (SeqCst orders the two).
        s.in_flight.fetch_add(1, Ordering::SeqCst);
        let result = if s.closed.load(Ordering::SeqCst) {
            Err(EmitError::Closed)
        } else if block {
            // Blocking sends are the host's rare lifecycle records: they wait for room.
            queued.fetch_add(1, Ordering::SeqCst);
            self.tx
                .send(Msg::Event(Box::new(event)))
                .map_err(|_| EmitError::Closed)
        } else if !self.admit(guest) {
            Err(EmitError::Full)
        } else {
            match self.tx.try_send(Msg::Event(Box::new(event))) {
                Ok(()) => Ok(()),
                Err(TrySendError::Full(_)) => Err(EmitError::Full),
                Err(TrySendError::Disconnected(_)) => Err(EmitError::Closed),
            }
        };
        match result {
            Err(EmitError::Full) => {
                // Still in flight, so a closing writer waits for this before its last
                // `audit.dropped` record.
                if guest {
                    s.guest_dropped.fetch_add(1, Ordering::Relaxed);
                    s.pending_guest_drops.fetch_add(1, Ordering::SeqCst);
                } else {
                    s.dropped.fetch_add(1, Ordering::Relaxed);
                    s.pending_drops.fetch_add(1, Ordering::SeqCst);
                }
            }
            Err(EmitError::Closed) => {
                s.unrecorded.fetch_add(1, Ordering::Relaxed);
            }
            Ok(()) => {}
        }
        s.in_flight.fetch_sub(1, Ordering::SeqCst);
        result
    }

    /// Whether an event fits its producer's share of the queue now (and, for a guest report,
    /// the rate limit); if so it holds one slot of that share until the writer takes it.
    fn admit(&self, guest: bool) -> bool {
        let s = &*self.shared;
        if guest {
            let rate_ok = s
                .guest_bucket
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_mut()
                .is_none_or(|b| b.take(std::time::Instant::now()));
            if !rate_ok {
                return false;
            }
        }
        let (queued, limit) = if guest {
            (&s.guest_queued, s.guest_limit)
        } else {
            (&s.host_queued, s.host_limit)
        };
        if queued.fetch_add(1, Ordering::SeqCst) >= limit {
            queued.fetch_sub(1, Ordering::SeqCst);
            return false;
        }
        true
    }

    /// Current counters.
    pub fn counters(&self) -> Counters {
        let s = &*self.shared;
        Counters {
            written: s.written.load(Ordering::Relaxed),
            dropped: s.dropped.load(Ordering::Relaxed),
            guest_dropped: s.guest_dropped.load(Ordering::Relaxed),
            unrecorded: s.unrecorded.load(Ordering::Relaxed),
            denials: s.denials.lock().unwrap_or_else(|e| e.into_inner()).clone(),
            failed: s.failed.load(Ordering::Relaxed),
        }
    }

    /// True once the writer has stopped accepting events.
    pub fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::SeqCst)
    }
}

impl AuditWriter {
    /// Another producer handle.
    pub fn sink(&self) -> AuditSink {
        self.sink.clone()
    }

    /// Stops accepting events, writes everything already accepted, records pending drops,
    /// writes the final checkpoint and joins the thread.
    pub fn finish(self) -> Result<Summary, SinkError> {
        // Waits for queue room if needed; if the writer already stopped (failure), the
        // send fails and the join reports why.
        let _ = self.sink.tx.send(Msg::Finish);
        match self.handle.join() {
            Ok(result) => Ok(result?),
            Err(_) => Err(SinkError::Panicked),
        }
    }

    /// Test hook: blocks the writer thread until the returned sender is dropped or used.
    #[cfg(test)]
    fn hold(&self) -> SyncSender<()> {
        let (started_tx, started_rx) = mpsc::sync_channel(1);
        let (release_tx, release_rx) = mpsc::sync_channel(1);
        let _ = self.sink.tx.send(Msg::Hold {
            started: started_tx,
            release: release_rx,
        });
        let _ = started_rx.recv();
        release_tx
    }
}

struct Writer {
    chain: Chain,
    rx: Receiver<Msg>,
    shared: Arc<Shared>,
    poll: Duration,
}

impl Writer {
    fn run(mut self) -> Result<Summary, ChainError> {
        match self.serve() {
            Ok(()) => self.chain.finish(),
            Err(e) => {
                self.shared.failed.store(true, Ordering::Relaxed);
                tracing::error!(error = %e, "audit writer stopped");
                self.discard();
                Err(e)
            }
        }
    }

    /// After a failure: closes the sink and counts everything still queued or in flight as
    /// unrecorded, so the loss is visible in the counters.
    fn discard(&mut self) {
        self.shared.closed.store(true, Ordering::SeqCst);
        loop {
            let quiet = self.shared.in_flight.load(Ordering::SeqCst) == 0;
            while let Ok(msg) = self.rx.try_recv() {
                if matches!(msg, Msg::Event(_)) {
                    self.shared.unrecorded.fetch_add(1, Ordering::Relaxed);
                }
            }
            if quiet {
                break;
            }
            std::thread::yield_now();
        }
    }

    fn serve(&mut self) -> Result<(), ChainError> {
        loop {
            match self.rx.recv_timeout(self.poll) {
                Ok(Msg::Finish) => return self.close(),
                Ok(msg) => self.handle(msg)?,
                Err(RecvTimeoutError::Timeout) => {}
                // Cannot happen while `AuditWriter` holds a sender; treat like finish.
                Err(RecvTimeoutError::Disconnected) => return self.close(),
            }
            self.record_drops()?;
            self.chain.tick()?;
        }
    }

    fn handle(&mut self, msg: Msg) -> Result<(), ChainError> {
        match msg {
            Msg::Event(event) => {
                let queued = if event.source == Source::Guest {
                    &self.shared.guest_queued
                } else {
                    &self.shared.host_queued
                };
                queued.fetch_sub(1, Ordering::SeqCst);
                self.chain.append(&event)?;
                self.shared.written.fetch_add(1, Ordering::Relaxed);
            }
            Msg::Finish => {}
            #[cfg(test)]
            Msg::Hold { started, release } => {
                let _ = started.send(());
                let _ = release.recv();
            }
        }
        Ok(())
    }

    fn record_drops(&mut self) -> Result<(), ChainError> {
        let s = Arc::clone(&self.shared);
        self.record_drop_count(&s.pending_drops, QUEUE_FULL, "audit queue full")?;
        self.record_drop_count(
            &s.pending_guest_drops,
            GUEST_LIMIT,
            "guest reports over this sandbox's budget (rate or queue share); host records are \
             queued apart and unaffected",
        )
    }

    fn record_drop_count(
        &mut self,
        pending: &AtomicU64,
        reason: &str,
        detail: &str,
    ) -> Result<(), ChainError> {
        let n = pending.swap(0, Ordering::SeqCst);
        if n > 0 {
            let event = Event::new(Source::Host, kind::AUDIT_DROPPED)
                .with_count(n)
                .with_reason(reason)
                .with_detail(detail);
            if let Err(e) = self.chain.append(&event) {
                pending.fetch_add(n, Ordering::SeqCst);
                return Err(e);
            }
            self.shared.written.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Closes the sink and writes everything accepted before that.
    fn close(&mut self) -> Result<(), ChainError> {
        self.shared.closed.store(true, Ordering::SeqCst);
        loop {
            // Read in-flight first: once it is 0 after `closed` is set, no further send can
            // start, so the drain below is the last.
            let quiet = self.shared.in_flight.load(Ordering::SeqCst) == 0;
            while let Ok(msg) = self.rx.try_recv() {
                self.handle(msg)?;
            }
            if quiet {
                break;
            }
            std::thread::yield_now();
        }
        self.record_drops()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::ChainOptions;
    use crate::checkpoint::HostKey;
    use crate::event::Record;
    use crate::verify::verify;

    fn chain(dir: &std::path::Path) -> Chain {
        let options = ChainOptions::new("sb1", HostKey::generate().unwrap());
        Chain::open(&dir.join("audit.jsonl"), options).unwrap().0
    }

    fn records(dir: &std::path::Path) -> Vec<Record> {
        std::fs::read(dir.join("audit.jsonl"))
            .unwrap()
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| Record::parse_checked(l).unwrap())
            .collect()
    }

    fn ev(n: u64) -> Event {
        Event::new(Source::Host, "net.connect")
            .with_decision(if n.is_multiple_of(2) {
                Decision::Deny
            } else {
                Decision::Allow
            })
            .with_count(n)
    }

    #[test]
    fn handles_are_thread_safe() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<AuditSink>();
        send_sync::<AuditWriter>();
    }

    #[test]
    fn overload_is_recorded_as_audit_dropped_with_the_count() {
        let dir = tempfile::tempdir().unwrap();
        let (sink, writer) = spawn(
            chain(dir.path()),
            SinkOptions {
                capacity: 2,
                poll: Duration::from_millis(10),
                guest: GuestBudget::default(),
            },
        )
        .unwrap();
        let release = writer.hold();
        let results: Vec<_> = (1..=7).map(|n| sink.try_emit(ev(n))).collect();
        assert_eq!(
            results,
            [
                Ok(()),
                Ok(()),
                Err(EmitError::Full),
                Err(EmitError::Full),
                Err(EmitError::Full),
                Err(EmitError::Full),
                Err(EmitError::Full)
            ]
        );
        drop(release);
        let summary = writer.finish().unwrap();
        assert_eq!(summary.last_seq, 3);

        let got: Vec<_> = records(dir.path())
            .into_iter()
            .map(|r| (r.seq, r.event.kind, r.event.count))
            .collect();
        assert_eq!(
            got,
            [
                // Recorded as soon as the writer runs again, before the queued events.
                (1, "audit.dropped".to_owned(), Some(5)),
                (2, "net.connect".to_owned(), Some(1)),
                (3, "net.connect".to_owned(), Some(2)),
            ]
        );
        assert_eq!(
            sink.counters(),
            Counters {
                written: 3,
                dropped: 5,
                guest_dropped: 0,
                unrecorded: 0,
                denials: BTreeMap::from([("net".to_owned(), 3)]),
                failed: false,
            }
        );
        assert_eq!(sink.try_emit(ev(8)), Err(EmitError::Closed));
        assert_eq!(sink.counters().unrecorded, 1);
        let report = verify(
            &dir.path().join("audit.jsonl"),
            Some(&crate::checkpoints_path(&dir.path().join("audit.jsonl"))),
            None,
        )
        .unwrap();
        assert!(report.sealed);
    }

    #[test]
    fn many_producers_lose_nothing_they_were_told_was_accepted() {
        let dir = tempfile::tempdir().unwrap();
        let (sink, writer) = spawn(
            chain(dir.path()),
            SinkOptions {
                capacity: 8,
                poll: Duration::from_millis(5),
                guest: GuestBudget::default(),
            },
        )
        .unwrap();
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let sink = sink.clone();
                std::thread::spawn(move || {
                    (0..2000u64)
                        .filter(|&n| sink.try_emit(ev(n)).is_ok())
                        .count() as u64
                })
            })
            .collect();
        let accepted: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
        writer.finish().unwrap();
        let recs = records(dir.path());
        let events = recs
            .iter()
            .filter(|r| r.event.kind == "net.connect")
            .count() as u64;
        let dropped: u64 = recs
            .iter()
            .filter(|r| r.event.kind == kind::AUDIT_DROPPED)
            .filter_map(|r| r.event.count)
            .sum();
        assert_eq!(events, accepted);
        assert_eq!(events + dropped, 8000);
        let c = sink.counters();
        assert_eq!((c.dropped, c.written), (dropped, recs.len() as u64));
    }

    #[test]
    fn finish_writes_everything_already_queued() {
        let dir = tempfile::tempdir().unwrap();
        let (sink, writer) = spawn(
            chain(dir.path()),
            SinkOptions {
                capacity: 4,
                poll: Duration::from_secs(60),
                guest: GuestBudget::default(),
            },
        )
        .unwrap();
        let release = writer.hold();
        for n in 1..=3 {
            assert_eq!(sink.try_emit(ev(n)), Ok(()));
        }
        drop(release);
        let summary = writer.finish().unwrap();
        assert_eq!(summary.last_seq, 3);
        let counts: Vec<_> = records(dir.path())
            .into_iter()
            .map(|r| r.event.count)
            .collect();
        assert_eq!(counts, [Some(1), Some(2), Some(3)]);
        assert_eq!(sink.emit(ev(4)), Err(EmitError::Closed));
    }

    #[test]
    fn a_guest_flood_keeps_to_its_budget_and_every_host_record_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let (sink, writer) = spawn(
            chain(dir.path()),
            SinkOptions {
                capacity: 64,
                poll: Duration::from_millis(10),
                guest: GuestBudget {
                    queued: 16,
                    per_second: 1,
                    burst: 100,
                },
            },
        )
        .unwrap();
        // The writer is held: guest reports fill their share, host records still fit.
        let release = writer.hold();
        let started = std::time::Instant::now();
        let mut guest_ok = 0;
        for i in 0..10_000u64 {
            let r = sink.try_emit(Event::new(Source::Guest, kind::PROC_EXEC).with_count(i));
            guest_ok += u64::from(r.is_ok());
            if i % 200 == 0 {
                sink.try_emit(ev(i))
                    .expect("a host record always finds room");
            }
        }
        assert_eq!(guest_ok, 16, "the queue share");
        drop(release);
        // Past the burst, the rate limit holds the rest back.
        for i in 0..1000u64 {
            let r = sink.try_emit(Event::new(Source::Guest, kind::PROC_EXEC).with_count(i));
            guest_ok += u64::from(r.is_ok());
        }
        // The burst, plus one a second for however long this took on a loaded machine.
        let allowed = 100 + started.elapsed().as_secs() + 1;
        assert!(guest_ok <= allowed, "{guest_ok} > {allowed}");
        writer.finish().unwrap();

        let recs = records(dir.path());
        let host: Vec<_> = recs
            .iter()
            .filter(|r| r.event.kind == "net.connect")
            .collect();
        assert_eq!(host.len(), 50, "every host record");
        let guest = recs
            .iter()
            .filter(|r| r.event.source == Source::Guest)
            .count() as u64;
        let dropped: u64 = recs
            .iter()
            .filter(|r| r.event.kind == kind::AUDIT_DROPPED)
            .map(|r| {
                assert_eq!(r.event.reason.as_deref(), Some(GUEST_LIMIT));
                r.event.count.unwrap()
            })
            .sum();
        assert_eq!(guest, guest_ok);
        assert_eq!(
            guest + dropped,
            11_000,
            "every guest report recorded or counted"
        );
        assert_eq!(sink.counters().guest_dropped, dropped);
        assert_eq!(sink.counters().dropped, 0);
        verify(&dir.path().join("audit.jsonl"), None, None).unwrap();
    }
}
