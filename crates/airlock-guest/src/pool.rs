//! Worker threads kept for the next job: exec sessions, their output pumps and input readers,
//! and egress tunnels each need a thread, and under emulation starting one costs milliseconds
//! (stack mapping, clone, TLS set-up), so a finished worker waits for more work instead of
//! exiting.
//!
//! A job handed to the pool always runs: on an idle worker that takes it, else on a new thread.
//! Hand-off is a rendezvous, so a worker that is leaving (idle too long) can never take a job
//! and drop it.

use std::io;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

/// A job and where to say it is done: said once its worker is back in the pool (or gone), so a
/// caller that waits for one job and then hands over the next finds that worker idle.
type Job = (Box<dyn FnOnce() + Send + 'static>, SyncSender<()>);

/// Idle workers kept at most; a worker finding the pool full leaves.
const MAX_IDLE: usize = 16;
/// An idle worker leaves after this long without work.
const IDLE_LIMIT: Duration = Duration::from_secs(60);

/// Hand-off ends of the idle workers (some may have left since: handing to them fails).
static IDLE: Mutex<Vec<SyncSender<Job>>> = Mutex::new(Vec::new());

/// Says when a job has finished (or panicked).
pub struct Done(Receiver<()>);

impl Done {
    /// Waits for the job.
    pub fn join(self) {
        let _ = self.0.recv();
    }
}

/// Runs `job` on an idle worker, or on a new thread named `name` when none is idle.
pub fn spawn(name: &str, job: impl FnOnce() + Send + 'static) -> io::Result<Done> {
    let (done_tx, done_rx) = sync_channel(1);
    let mut job: Job = (Box::new(job), done_tx);
    loop {
        let idle = IDLE.lock().unwrap_or_else(PoisonError::into_inner).pop();
        let Some(worker) = idle else { break };
        match worker.send(job) {
            Ok(()) => return Ok(Done(done_rx)),
            Err(back) => job = back.0, // that worker has left
        }
    }
    let (tx, rx) = sync_channel::<Job>(0);
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || work(job, &tx, &rx))?;
    Ok(Done(done_rx))
}

fn work(first: Job, me: &SyncSender<Job>, jobs: &Receiver<Job>) {
    let mut job = first;
    loop {
        let (run, done) = job;
        run(); // a panic ends this worker; `done` is dropped, which also wakes the caller
        let full = {
            let mut idle = IDLE.lock().unwrap_or_else(PoisonError::into_inner);
            let full = idle.len() >= MAX_IDLE;
            if !full {
                idle.push(me.clone());
            }
            full
        };
        let _ = done.send(());
        if full {
            return;
        }
        match jobs.recv_timeout(IDLE_LIMIT) {
            Ok(next) => job = next,
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn every_job_runs_and_workers_are_reused() {
        let ran = Arc::new(AtomicUsize::new(0));
        let threads = Arc::new(Mutex::new(std::collections::HashSet::new()));
        for _ in 0..20 {
            let (ran, threads) = (ran.clone(), threads.clone());
            spawn("test", move || {
                ran.fetch_add(1, Ordering::SeqCst);
                threads.lock().unwrap().insert(std::thread::current().id());
            })
            .unwrap()
            .join();
        }
        assert_eq!(ran.load(Ordering::SeqCst), 20);
        // One after another: a finished job's worker is idle before its caller hears of it, so
        // each next job finds one (other tests share the pool: a bound, not exactly one).
        assert!(threads.lock().unwrap().len() < 10);
    }

    #[test]
    fn concurrent_jobs_each_get_a_thread() {
        // Three jobs that wait for each other can only finish if each runs on its own thread.
        let barrier = Arc::new(std::sync::Barrier::new(3));
        let done: Vec<Done> = (0..3)
            .map(|_| {
                let b = barrier.clone();
                spawn("test", move || {
                    b.wait();
                })
                .unwrap()
            })
            .collect();
        for d in done {
            d.join();
        }
    }

    #[test]
    fn a_panicking_job_still_reports_done() {
        let d = spawn("test", || panic!("job failed")).unwrap();
        d.join();
        let ran = Arc::new(AtomicUsize::new(0));
        let r = ran.clone();
        spawn("test", move || {
            r.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap()
        .join();
        assert_eq!(ran.load(Ordering::SeqCst), 1);
    }
}
