//! Refusals by identity, not only by name: a file the policy refuses to read (`deny_read`)
//! or to change (`deny_write`, the protected paths, airlock's own files) under one name is
//! refused the same way under every other name it has, so a hard link made on the host (`ln
//! .env notes.txt`, `ln .git/hooks/pre-commit hook.sh`) is no way around the policy.
//!
//! The gateway learns the host identities (device, inode) of refused files in two ways:
//! - when it starts, a background thread walks the share (descriptor-relative, never through
//!   a symlink: `overlay/tree.rs`) and asks the gate about reading and writing every regular
//!   file;
//! - whenever the guest is refused opening a file by its name, that file's identity is added.
//!
//! An open or a change of attributes of a file with more than one name waits for the walk to
//! finish (it runs while the guest boots; other files are checked against what is known so
//! far), then a node whose identity is known is refused what its refused name is refused,
//! unless the name being used is that same name. What
//! this cannot see: a refused file created on the host after the walk, never opened by the
//! guest under its refused name, and linked on the host to a name the guest then opens.
//! A directory renamed while the walk runs may be passed over (the walk never follows it to
//! its new name); files in it are then learnt only by name. Symlinks need nothing here: the guest resolves them, so their targets reach the gate by
//! name.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use crate::gate::{Gate, Request};
use crate::overlay::tree::{self, Kind, Tree, Visit};

/// Host identity of a file: device and inode number.
pub(super) type HostId = (u64, u64);

/// Identities kept at most. Beyond it, only files that already have another name are kept
/// (those are the ones a guest could reach now); a link made later to one of the others is
/// then not caught, and the gateway says so in its log.
const MAX_KNOWN: usize = 200_000;

/// What one file is refused under one of its names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Refused {
    /// The share path it is refused under.
    path: String,
    read: bool,
    write: bool,
}

/// What a request does to a file's contents or attributes.
#[derive(Debug, Clone, Copy)]
pub(super) struct Use {
    pub(super) read: bool,
    pub(super) write: bool,
}

#[derive(Debug, Default)]
struct State {
    /// The walk has finished (or failed).
    done: bool,
    /// Refused file → how it is refused.
    ids: HashMap<HostId, Refused>,
    /// `MAX_KNOWN` was reached.
    full: bool,
}

/// The identities of files the policy refuses to read, on one share.
#[derive(Debug, Default)]
pub(crate) struct Denied {
    state: Mutex<State>,
    walked: Condvar,
}

impl Denied {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts the walk of the share this process sees at `root`, deciding with `gate`.
    pub(crate) fn scan(root: &Path, gate: Gate) -> Arc<Denied> {
        let denied = Arc::new(Denied::default());
        let worker = Arc::clone(&denied);
        let root = root.to_path_buf();
        let spawned = std::thread::Builder::new()
            .name("airlock-fs-linked".to_owned())
            .spawn(move || {
                let started = std::time::Instant::now();
                let result = worker.walk(&root, &gate);
                let mut s = worker.lock();
                match result {
                    Ok(files) => tracing::info!(
                        files,
                        refused = s.ids.len(),
                        ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                        "refused files' identities learnt"
                    ),
                    Err(e) => tracing::warn!(
                        error = %e,
                        refused = s.ids.len(),
                        "the walk for refused files' identities stopped early; hard links to \
                         refused files not yet seen are caught only once the guest opens the \
                         refused name"
                    ),
                }
                s.done = true;
                drop(s);
                worker.walked.notify_all();
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "could not start the walk for refused files' identities");
            denied.lock().done = true;
        }
        denied
    }

    /// Visits every regular file below `root`; returns how many it saw.
    fn walk(&self, root: &Path, gate: &Gate) -> std::io::Result<u64> {
        let tree = Tree::open(root)?;
        let mut files = 0u64;
        tree::walk(
            &tree,
            |v: Visit<'_>| -> std::io::Result<bool> {
                let Ok(name) = std::str::from_utf8(v.name) else {
                    // The gateway never shows such a name to the guest.
                    return Ok(false);
                };
                match tree::kind_of(&v.stat) {
                    // Into every directory we can open; one we cannot is passed over.
                    Kind::Dir => Ok(tree::open_dir_at(v.dir, name).is_ok()),
                    Kind::File => {
                        files += 1;
                        let rel = tree::join(v.parent, name);
                        if let Some(r) = refusal(gate, rel) {
                            self.add((v.stat.st_dev, v.stat.st_ino), v.stat.st_nlink > 1, r);
                        }
                        Ok(false)
                    }
                    Kind::Symlink | Kind::Special(_) => Ok(false),
                }
            },
            |_op, _rel, e| e,
        )?;
        Ok(files)
    }

    fn add(&self, id: HostId, linked_now: bool, refused: Refused) {
        let mut s = self.lock();
        if s.ids.len() >= MAX_KNOWN && !linked_now && !s.ids.contains_key(&id) {
            if !s.full {
                s.full = true;
                tracing::warn!(
                    max = MAX_KNOWN,
                    "too many refused files to remember them all: only those with a hard link \
                     now are kept"
                );
            }
            return;
        }
        s.ids.insert(id, refused);
    }

    /// The guest was refused using the file `id` by one of its names: remember how.
    pub(super) fn learn(&self, id: HostId, refused: Refused) {
        let known = self.lock().ids.get(&id).is_some_and(|r| *r == refused);
        if !known {
            self.add(id, false, refused);
        }
    }

    /// Drops file `id`: its refused name now names another file.
    pub(crate) fn forget(&self, id: HostId) {
        self.lock().ids.remove(&id);
    }

    /// The refused name of file `id` if it is refused `want` there and is not among `paths`
    /// (the names the guest is using); with `wait`, waits for the walk first.
    pub(super) fn other_name(
        &self,
        id: HostId,
        paths: &[String],
        want: Use,
        wait: bool,
    ) -> Option<String> {
        let mut s = self.lock();
        while wait && !s.done {
            s = self.walked.wait(s).unwrap_or_else(PoisonError::into_inner);
        }
        s.ids
            .get(&id)
            .filter(|r| (want.read && r.read) || (want.write && r.write))
            .filter(|r| !paths.contains(&r.path))
            .map(|r| r.path.clone())
    }
}

/// How `gate` refuses the regular file at share path `path`, if it does: reading, and (on a
/// share that is not read-only, where every write is refused anyway) writing.
pub(super) fn refusal(gate: &Gate, path: String) -> Option<Refused> {
    let paths = [path];
    let refused = |flags: u32| {
        !gate
            .check(&Request::Open {
                paths: &paths,
                flags,
            })
            .is_allowed()
    };
    let read = refused(libc::O_RDONLY as u32);
    let write = !gate.read_only() && refused(libc::O_WRONLY as u32);
    let [path] = paths;
    (read || write).then_some(Refused { path, read, write })
}
