//! Reaps every child of the agent, including orphans re-parented to PID 1, and hands each exit
//! status to whoever spawned that pid.
//!
//! One thread calls `waitpid(-1)`. Spawning goes through [`Reaper::spawn`], which registers the
//! pid under the same lock the reaper takes to deliver, so a fast-exiting child cannot be reaped
//! before anyone listens for it.

use nix::errno::Errno;
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::Pid;
use std::collections::HashMap;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Condvar, Mutex, PoisonError};

/// Shared handle to the reaper thread.
#[derive(Clone, Default)]
pub struct Reaper {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    waiters: Mutex<HashMap<i32, Sender<WaitStatus>>>,
    spawned: Condvar,
}

impl Reaper {
    /// Starts the reaper thread.
    pub fn start() -> std::io::Result<Reaper> {
        let reaper = Reaper::default();
        let inner = reaper.inner.clone();
        std::thread::Builder::new()
            .name("reaper".into())
            .spawn(move || reap_forever(&inner))?;
        Ok(reaper)
    }

    /// Spawns a child with `spawn` and returns it with a receiver for its exit status.
    pub fn spawn<T>(
        &self,
        spawn: impl FnOnce() -> std::io::Result<(T, u32)>,
    ) -> std::io::Result<(T, Receiver<WaitStatus>)> {
        let mut waiters = self
            .inner
            .waiters
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let (child, pid) = spawn()?;
        let (tx, rx) = channel();
        waiters.insert(i32::try_from(pid).unwrap_or(i32::MAX), tx);
        self.inner.spawned.notify_all();
        Ok((child, rx))
    }
}

fn reap_forever(inner: &Inner) {
    loop {
        match waitpid(Pid::from_raw(-1), None) {
            Ok(status) => {
                let Some(pid) = status.pid() else { continue };
                let mut waiters = inner.waiters.lock().unwrap_or_else(PoisonError::into_inner);
                if let Some(tx) = waiters.remove(&pid.as_raw()) {
                    let _ = tx.send(status);
                }
            }
            Err(Errno::ECHILD) => {
                // No children: sleep until the next spawn registers one.
                let waiters = inner.waiters.lock().unwrap_or_else(PoisonError::into_inner);
                let _unused = inner
                    .spawned
                    .wait_while(waiters, |w| w.is_empty())
                    .unwrap_or_else(PoisonError::into_inner);
            }
            Err(_) => continue,
        }
    }
}
