//! The share's quota (`filesystem.quota`): how much the guest may grow the host filesystem by
//! through this share in one run. The gateway keeps the host's free space above what it was at
//! binding minus the quota; a write that would take it lower fails with `ENOSPC`, and the
//! first refusal in each second is recorded (`fs.limit`, with the quota as its count).
//!
//! Free space is measured, not added up per file: deleting files gives space back, sparse
//! writes cost nothing, and the host keeps its space whoever else writes to it. Between two
//! `statvfs` calls the gateway subtracts what it let through, and asks again before it refuses
//! anything, every 64 MiB and every 100 ms.

use std::io;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::events::{FsEvent, FsEvents};
use crate::reason;
use airlock_audit::kind;
use airlock_policy::Verdict;

/// Bytes let through between two measurements at most.
const RECHECK_BYTES: u64 = 64 << 20;
/// Age of a measurement at most.
const RECHECK_AGE: Duration = Duration::from_millis(100);

#[derive(Debug)]
struct State {
    /// Free bytes the host must keep: free at the first write minus the quota.
    floor: Option<u64>,
    /// Free bytes at the last measurement, and what was let through since.
    free: u64,
    since: u64,
    measured: Instant,
    reported: Option<Instant>,
}

/// Free bytes on the share's filesystem.
type Measure = Box<dyn Fn() -> io::Result<u64> + Send + Sync>;

/// The quota of one share.
pub(super) struct Quota {
    /// Bytes; `None`: no quota (a read-only share).
    limit: Option<u64>,
    free: Measure,
    state: Mutex<State>,
}

impl std::fmt::Debug for Quota {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Quota")
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}

impl Quota {
    /// The quota of the share this process sees at `root`.
    pub(super) fn new(limit: Option<u64>, root: PathBuf) -> Quota {
        // Free bytes for an unprivileged writer.
        Self::measured_by(
            limit,
            Box::new(move || {
                let st = nix::sys::statvfs::statvfs(&root).map_err(io::Error::from)?;
                Ok(st.blocks_available().saturating_mul(st.fragment_size()))
            }),
        )
    }

    fn measured_by(limit: Option<u64>, free: Measure) -> Quota {
        Quota {
            limit,
            free,
            state: Mutex::new(State {
                floor: None,
                free: 0,
                since: 0,
                measured: Instant::now(),
                reported: None,
            }),
        }
    }

    /// Before a write of `bytes` to share path `path` on `mount`: refuses it with `ENOSPC`
    /// when it would take the host's free space below the floor.
    pub(super) fn admit(
        &self,
        bytes: u64,
        mount: &str,
        path: &dyn Fn() -> String,
        events: &dyn FsEvents,
    ) -> io::Result<()> {
        let Some(limit) = self.limit else {
            return Ok(());
        };
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let floor = match s.floor {
            Some(f) => f,
            None => {
                s.free = self.free()?;
                s.measured = Instant::now();
                let f = s.free.saturating_sub(limit);
                s.floor = Some(f);
                f
            }
        };
        let fits = |s: &State| s.free.saturating_sub(s.since) >= floor.saturating_add(bytes);
        if !fits(&s) || s.since >= RECHECK_BYTES || s.measured.elapsed() >= RECHECK_AGE {
            s.free = self.free()?;
            s.since = 0;
            s.measured = Instant::now();
        }
        if fits(&s) {
            s.since = s.since.saturating_add(bytes);
            return Ok(());
        }
        if s.reported
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(1))
        {
            s.reported = Some(Instant::now());
            tracing::warn!(quota = limit, "the guest reached the share's quota");
            events.record(&FsEvent {
                op: kind::FS_LIMIT,
                mount: mount.to_owned(),
                path: path(),
                path2: None,
                decision: Verdict::Deny,
                rule: reason::rule::QUOTA.to_owned(),
                reason: reason::QUOTA,
                count: Some(limit),
            });
        }
        Err(io::Error::from_raw_os_error(libc::ENOSPC))
    }

    fn free(&self) -> io::Result<u64> {
        (self.free)()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[derive(Default)]
    struct Recorded(Mutex<Vec<FsEvent>>);
    impl FsEvents for Recorded {
        fn record(&self, e: &FsEvent) {
            self.0.lock().unwrap().push(e.clone());
        }
    }

    #[test]
    fn writes_stop_at_the_quota_and_deleting_gives_space_back() {
        const MIB: u64 = 1 << 20;
        let disk = Arc::new(AtomicU64::new(1000 * MIB));
        let d = Arc::clone(&disk);
        let q = Quota::measured_by(
            Some(10 * MIB),
            Box::new(move || Ok(d.load(Ordering::SeqCst))),
        );
        let events = Recorded::default();
        let path = || "big.bin".to_owned();
        // The guest writes 1 MiB at a time; the disk fills as it does.
        let mut written = 0;
        while q.admit(MIB, "/workspace", &path, &events).is_ok() {
            disk.fetch_sub(MIB, Ordering::SeqCst);
            written += MIB;
            assert!(written <= 10 * MIB, "went past the quota");
        }
        assert_eq!(written, 10 * MIB);
        let err = q.admit(MIB, "/workspace", &path, &events).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOSPC));
        let recorded = events.0.lock().unwrap().clone();
        let [first] = recorded.as_slice() else {
            panic!("one record per second at most: {recorded:?}");
        };
        assert_eq!(
            (first.op, first.reason, first.count, first.path.as_str()),
            (kind::FS_LIMIT, reason::QUOTA, Some(10 * MIB), "big.bin")
        );
        // Deleting 4 MiB makes room for 4 MiB more.
        disk.fetch_add(4 * MIB, Ordering::SeqCst);
        for _ in 0..4 {
            q.admit(MIB, "/workspace", &path, &events).unwrap();
            disk.fetch_sub(MIB, Ordering::SeqCst);
        }
        assert!(q.admit(MIB, "/workspace", &path, &events).is_err());
        // Another host process filling the disk shrinks what the guest may still take.
        let q = Quota::measured_by(
            Some(10 * MIB),
            Box::new({
                let d = Arc::clone(&disk);
                move || Ok(d.load(Ordering::SeqCst))
            }),
        );
        q.admit(MIB, "/workspace", &path, &events).unwrap();
        disk.fetch_sub(MIB, Ordering::SeqCst);
        disk.fetch_sub(8 * MIB, Ordering::SeqCst);
        // Seen at the next measurement, at most RECHECK_AGE later.
        std::thread::sleep(RECHECK_AGE);
        assert!(q.admit(2 * MIB, "/workspace", &path, &events).is_err());
        q.admit(MIB, "/workspace", &path, &events).unwrap();
        // No quota: nothing is measured or refused.
        let none = Quota::measured_by(None, Box::new(|| Err(io::Error::other("not measured"))));
        none.admit(u64::MAX, "/workspace", &path, &events).unwrap();
    }
}
