//! Bounded descriptors for any tree: the guest's node ids are decoupled from the passthrough
//! layer's inodes, each of which holds an `O_PATH` descriptor while it exists.
//!
//! A node the guest knows is *resident* while we hold one lookup on an inner inode for it; at
//! most `max_resident` are, and the least recently used beyond that are forgotten on the inner
//! side, closing their descriptors. When the guest uses an evicted node again, it is revived by
//! looking up its path from the share root one component at a time (the passthrough layer opens
//! each with `O_NOFOLLOW` relative to its parent, so no link is ever followed), and it must
//! still be the same file: the host identity (device, inode) of its path, resolved beneath the
//! share without following any link, must equal the one recorded when the guest first learnt
//! the node. Otherwise it is refused and recorded (`gateway.identity`, `replaced_on_host`).
//!
//! The same identity check guards every use of a node by name (open, list, read a link,
//! change attributes, create or remove in a directory): a node the host moved out of the share,
//! or whose name it swapped for a symlink, is never reached through its old descriptor.
//!
//! While nothing is evicted, guest ids equal inner ids (a fresh inner inode number is never
//! a guest id already), so the common case costs one table lookup per request.

use std::collections::{BTreeMap, HashMap};
use std::ffi::CString;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

use virtiofsd::filesystem::{Context, Entry, FileSystem};

use super::guard::{Guard, identity_beneath, identity_beneath_fd, open_root};
use super::linked::Denied;
use super::quota::Quota;
use crate::events::{FsEvent, FsEvents};
use crate::gate::Gate;
use crate::paths::{PathError, PathMap, ROOT_INODE};
use crate::reason;
use airlock_policy::Verdict;

/// Resident nodes when nothing else is configured.
pub(crate) const DEFAULT_MAX_RESIDENT: usize = 2048;

/// Host identity of a file: device and inode number.
type HostId = (u64, u64);

/// One node the guest knows.
#[derive(Debug, Clone, Copy)]
struct Node {
    host: HostId,
    /// Its number of names on the host when the guest last looked it up.
    links: u64,
    /// The inner inode we hold one lookup on, while resident.
    inner: Option<u64>,
    /// Requests using `inner` now: it is not evicted under them.
    pins: u32,
    /// Last use, for the LRU order.
    stamp: u64,
}

/// The translation tables.
#[derive(Debug, Default)]
pub(super) struct Table {
    nodes: HashMap<u64, Node>,
    by_host: HashMap<HostId, u64>,
    by_inner: HashMap<u64, u64>,
    /// Resident, unpinned-or-not nodes by last use (stamp → guest id).
    lru: BTreeMap<u64, u64>,
    clock: u64,
    resident: usize,
    /// Open handle → the inner inode it was opened on.
    handles: HashMap<u64, u64>,
}

/// The node table and its settings.
#[derive(Debug)]
pub(super) struct Nodes {
    table: Mutex<Table>,
    /// Where this process sees the share: identities are resolved beneath it.
    pub(super) root: PathBuf,
    /// `root`, opened on first use: by then the share is mounted there (a gateway starts
    /// before its share is bound). Saves an open and a close on each identity check.
    root_fd: OnceLock<OwnedFd>,
    pub(super) max_resident: usize,
}

impl Nodes {
    pub(super) fn new(root: PathBuf, max_resident: usize) -> Nodes {
        Nodes {
            table: Mutex::new(Table::default()),
            root,
            root_fd: OnceLock::new(),
            max_resident: max_resident.max(16),
        }
    }

    /// Device and inode of share path `rel` ([`identity_beneath`]).
    pub(super) fn identity(&self, rel: &str) -> io::Result<HostId> {
        if let Some(fd) = self.root_fd.get() {
            return identity_beneath_fd(fd, rel);
        }
        // Another thread may have been first: then its descriptor is kept and ours closed.
        let _ = self.root_fd.set(open_root(&self.root)?);
        match self.root_fd.get() {
            Some(fd) => identity_beneath_fd(fd, rel),
            None => identity_beneath(&self.root, rel),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Forgets every node (FUSE `INIT` and `DESTROY`: the inner side forgets too).
    pub(super) fn reset(&self) {
        *self.lock() = Table::default();
    }

    /// Resident nodes now.
    pub(super) fn resident(&self) -> usize {
        self.lock().resident
    }

    /// Records that `handle` was opened on inner inode `inner`.
    pub(super) fn opened(&self, handle: u64, inner: u64) {
        self.lock().handles.insert(handle, inner);
    }

    /// Forgets `handle`; the inner inode it was opened on, if it was known.
    pub(super) fn closed(&self, handle: u64) -> Option<u64> {
        self.lock().handles.remove(&handle)
    }

    /// The inner inode `handle` was opened on; `EBADF` for an unknown handle.
    pub(super) fn handle(&self, handle: u64) -> io::Result<u64> {
        self.lock()
            .handles
            .get(&handle)
            .copied()
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EBADF))
    }

    /// The host identity recorded for guest node `guest`, and its number of names then.
    pub(super) fn host_of(&self, guest: u64) -> Option<(HostId, u64)> {
        self.lock().nodes.get(&guest).map(|n| (n.host, n.links))
    }

    /// Open handles now.
    pub(super) fn open_handles(&self) -> usize {
        self.lock().handles.len()
    }
}

impl Table {
    fn touch(&mut self, guest: u64) {
        self.clock += 1;
        let stamp = self.clock;
        if let Some(n) = self.nodes.get_mut(&guest) {
            if n.inner.is_some() {
                self.lru.remove(&n.stamp);
                self.lru.insert(stamp, guest);
            }
            n.stamp = stamp;
        }
    }

    /// Unpinned resident nodes beyond `max`, least recently used first, made non-resident;
    /// returns their inner inodes, to forget outside the lock.
    fn evict(&mut self, max: usize) -> Vec<u64> {
        let mut out = Vec::new();
        let mut skipped = Vec::new();
        while self.resident > max {
            let Some((stamp, guest)) = self.lru.pop_first() else {
                break;
            };
            let Some(n) = self.nodes.get_mut(&guest) else {
                continue;
            };
            if n.pins > 0 || guest == ROOT_INODE {
                skipped.push((stamp, guest));
                continue;
            }
            if let Some(inner) = n.inner.take() {
                self.by_inner.remove(&inner);
                self.resident -= 1;
                out.push(inner);
            }
        }
        self.lru.extend(skipped);
        out
    }
}

/// A node in use by one request: its inner inode stays resident until this is dropped.
pub(super) struct Pin<'a> {
    nodes: &'a Nodes,
    guest: u64,
    /// The inner inode to hand to the passthrough layer.
    pub(super) inner: u64,
}

impl Drop for Pin<'_> {
    fn drop(&mut self) {
        if self.guest == ROOT_INODE {
            return;
        }
        let mut t = self.nodes.lock();
        if let Some(n) = t.nodes.get_mut(&self.guest) {
            n.pins = n.pins.saturating_sub(1);
        }
    }
}

/// The policy-enforcing `FileSystem`.
pub struct GatedFs<F> {
    pub(super) inner: F,
    pub(super) gate: Gate,
    pub(super) paths: Mutex<PathMap>,
    pub(super) events: Arc<dyn FsEvents>,
    /// The open-file limit (`guard.rs`).
    pub(super) guard: Guard,
    /// How much the guest may grow the host filesystem by (`quota.rs`).
    pub(super) quota: Quota,
    /// Identities of the files the policy refuses to read (`linked.rs`).
    pub(super) denied: Arc<Denied>,
    /// Guest node ids and the inner inodes resident for them (`nodes.rs`).
    pub(super) nodes: Nodes,
}

impl<F> GatedFs<F>
where
    F: FileSystem<Inode = u64, Handle = u64>,
{
    /// Wraps `inner`, which serves the share this process sees at `root`; every decision goes
    /// through `gate` and is reported to `events`.
    pub fn new(inner: F, gate: Gate, events: Arc<dyn FsEvents>, root: &Path) -> Self {
        let gate_for_walk = gate.clone();
        Self {
            inner,
            gate,
            paths: Mutex::new(PathMap::new()),
            events,
            guard: Guard::new(u64::MAX),
            quota: Quota::new(None, root.to_path_buf()),
            nodes: Nodes::new(root.to_path_buf(), DEFAULT_MAX_RESIDENT),
            denied: Denied::scan(root, gate_for_walk),
        }
    }

    /// Limits: at most `max_open` files open at once (more fail with `ENFILE`, the first
    /// refusal recorded), at most `max_resident` inner inodes (each a descriptor) held for
    /// the nodes the guest knows.
    pub fn with_limits(mut self, max_open: u64, max_resident: usize) -> Self {
        self.guard = Guard::new(max_open);
        self.nodes = Nodes::new(self.nodes.root.clone(), max_resident);
        self
    }

    /// At most `bytes` of growth of the host filesystem through this share in this run;
    /// writes beyond it fail with `ENOSPC`, recorded.
    pub fn with_quota(mut self, bytes: u64) -> Self {
        self.quota = Quota::new(Some(bytes), self.nodes.root.clone());
        self
    }

    /// Inner inodes held now (for tests and diagnostics).
    pub fn resident(&self) -> usize {
        self.nodes.resident()
    }

    /// The wrapped filesystem.
    pub fn inner(&self) -> &F {
        &self.inner
    }

    /// The gate deciding requests.
    pub fn gate(&self) -> &Gate {
        &self.gate
    }

    /// The paths the gateway currently knows for node `ino` (for tests and diagnostics).
    pub fn paths_of(&self, ino: u64) -> Result<Vec<String>, PathError> {
        self.map().paths(ino)
    }
}

/// Whether a use of a node checks that it still sits at its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Check {
    /// Metadata only (getattr, statfs, access): no check.
    Metadata,
    /// Acts on the node through its name: checked, refused and recorded if replaced.
    ByName(&'static str),
}

impl<F> GatedFs<F>
where
    F: FileSystem<Inode = u64, Handle = u64>,
{
    /// The inner inode for guest node `guest`, resident (revived if needed) and pinned for
    /// the request; with [`Check::ByName`], refused if the node no longer sits at its name.
    pub(super) fn pin(&self, ctx: Context, guest: u64, check: Check) -> io::Result<Pin<'_>> {
        if guest == ROOT_INODE {
            return Ok(Pin {
                nodes: &self.nodes,
                guest,
                inner: ROOT_INODE,
            });
        }
        let host = {
            let mut t = self.nodes.lock();
            let Some(n) = t.nodes.get(&guest).copied() else {
                return Err(io::Error::from_raw_os_error(libc::EBADF));
            };
            if check == Check::Metadata
                && let Some(inner) = n.inner
            {
                if let Some(m) = t.nodes.get_mut(&guest) {
                    m.pins += 1;
                }
                t.touch(guest);
                return Ok(Pin {
                    nodes: &self.nodes,
                    guest,
                    inner,
                });
            }
            n.host
        };
        let path = self.first_path(guest)?;
        if let Check::ByName(op) = check
            && self.nodes.identity(&path).ok() != Some(host)
        {
            return Err(self.replaced(op, &path));
        }
        // Resident now? Pin it; otherwise revive it by name.
        {
            let mut t = self.nodes.lock();
            if let Some(n) = t.nodes.get_mut(&guest)
                && let Some(inner) = n.inner
            {
                n.pins += 1;
                t.touch(guest);
                return Ok(Pin {
                    nodes: &self.nodes,
                    guest,
                    inner,
                });
            }
        }
        let entry = self.walk(ctx, &path)?;
        // The name must still lead to the node the guest holds.
        let found = self.nodes.identity(&path).ok();
        if found != Some(host) || found.map(|h| h.1) != Some(entry.attr.ino) {
            self.inner.forget(ctx, entry.inode, 1);
            return Err(self.replaced(
                match check {
                    Check::ByName(op) => op,
                    Check::Metadata => airlock_audit::kind::FS_LOOKUP,
                },
                &path,
            ));
        }
        let (evicted, pin_inner) = {
            let mut t = self.nodes.lock();
            let current = t.nodes.get(&guest).copied();
            let inner = match current {
                None => {
                    // Forgotten meanwhile.
                    drop(t);
                    self.inner.forget(ctx, entry.inode, 1);
                    return Err(io::Error::from_raw_os_error(libc::EBADF));
                }
                Some(Node { inner: Some(_), .. }) => {
                    // Revived meanwhile by another request: keep that one.
                    drop(t);
                    self.inner.forget(ctx, entry.inode, 1);
                    return self.pin(ctx, guest, Check::Metadata);
                }
                Some(_) => entry.inode,
            };
            t.clock += 1;
            let stamp = t.clock;
            if let Some(n) = t.nodes.get_mut(&guest) {
                n.inner = Some(inner);
                n.pins += 1;
                n.stamp = stamp;
            }
            t.by_inner.insert(inner, guest);
            t.lru.insert(stamp, guest);
            t.resident += 1;
            (t.evict(self.nodes.max_resident), inner)
        };
        for inner in evicted {
            self.inner.forget(ctx, inner, 1);
        }
        Ok(Pin {
            nodes: &self.nodes,
            guest,
            inner: pin_inner,
        })
    }

    /// Looks `path` up from the share root, one component at a time; returns the last entry
    /// (one inner lookup held on it) and forgets the intermediate ones.
    fn walk(&self, ctx: Context, path: &str) -> io::Result<Entry> {
        let mut parent: Option<Entry> = None;
        for comp in path.split('/').filter(|c| !c.is_empty()) {
            let name =
                CString::new(comp).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
            let at = parent.as_ref().map_or(ROOT_INODE, |e| e.inode);
            let result = self.inner.lookup(ctx, at, &name);
            if let Some(p) = parent.take() {
                self.inner.forget(ctx, p.inode, 1);
            }
            parent = Some(result?);
        }
        parent.ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))
    }

    /// Takes over an entry the inner side just returned for share path `path` (one inner
    /// lookup held on `entry.inode`): the guest sees the node's guest id. A node the guest
    /// already knows keeps its id; a new one gets the inner id.
    pub(super) fn adopt(&self, ctx: Context, path: &str, mut entry: Entry) -> io::Result<Entry> {
        if entry.inode == 0 {
            return Ok(entry);
        }
        // The identity is resolved by name on our side: it must be the entry's inode.
        let host = match self.nodes.identity(path) {
            Ok(h) if h.1 == entry.attr.ino => h,
            _ => {
                self.inner.forget(ctx, entry.inode, 1);
                return Err(io::Error::from_raw_os_error(libc::ESTALE));
            }
        };
        let (guest, extra, evicted) = {
            let mut t = self.nodes.lock();
            match t.by_host.get(&host).copied() {
                Some(guest) => {
                    if let Some(n) = t.nodes.get_mut(&guest) {
                        n.links = entry.attr.nlink.into();
                    }
                    let resident = t.nodes.get(&guest).and_then(|n| n.inner);
                    match resident {
                        // Already held once: drop the lookup just taken.
                        Some(inner) if inner == entry.inode => {
                            t.touch(guest);
                            (guest, Some(entry.inode), Vec::new())
                        }
                        Some(_) => {
                            // The inner side has two inodes for one file (it should not):
                            // keep the one we hold.
                            t.touch(guest);
                            (guest, Some(entry.inode), Vec::new())
                        }
                        None => {
                            t.clock += 1;
                            let stamp = t.clock;
                            if let Some(n) = t.nodes.get_mut(&guest) {
                                n.inner = Some(entry.inode);
                                n.stamp = stamp;
                            }
                            t.by_inner.insert(entry.inode, guest);
                            t.lru.insert(stamp, guest);
                            t.resident += 1;
                            let evicted = t.evict(self.nodes.max_resident);
                            (guest, None, evicted)
                        }
                    }
                }
                None => {
                    let guest = entry.inode;
                    t.clock += 1;
                    let stamp = t.clock;
                    t.nodes.insert(
                        guest,
                        Node {
                            host,
                            links: entry.attr.nlink.into(),
                            inner: Some(entry.inode),
                            pins: 0,
                            stamp,
                        },
                    );
                    t.by_host.insert(host, guest);
                    t.by_inner.insert(entry.inode, guest);
                    t.lru.insert(stamp, guest);
                    t.resident += 1;
                    let evicted = t.evict(self.nodes.max_resident);
                    (guest, None, evicted)
                }
            }
        };
        if let Some(inner) = extra {
            self.inner.forget(ctx, inner, 1);
        }
        for inner in evicted {
            self.inner.forget(ctx, inner, 1);
        }
        entry.inode = guest;
        Ok(entry)
    }

    /// The guest dropped its last reference to `guest`: forget it, and its inner inode.
    pub(super) fn drop_node(&self, ctx: Context, guest: u64) {
        let inner = {
            let mut t = self.nodes.lock();
            let Some(n) = t.nodes.remove(&guest) else {
                return;
            };
            t.by_host.remove(&n.host);
            t.lru.remove(&n.stamp);
            n.inner.inspect(|inner| {
                t.by_inner.remove(inner);
                t.resident -= 1;
            })
        };
        if let Some(inner) = inner {
            self.inner.forget(ctx, inner, 1);
        }
    }

    /// The first path of a live node.
    pub(super) fn first_path(&self, guest: u64) -> io::Result<String> {
        self.map()
            .paths(guest)
            .ok()
            .and_then(|p| p.into_iter().next())
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EBADF))
    }

    /// Records and returns the refusal of a node no longer at its name.
    fn replaced(&self, op: &'static str, path: &str) -> io::Error {
        tracing::debug!(path = ?path, "a node no longer at its name was refused");
        self.events.record(&FsEvent {
            op,
            mount: self.gate.mount().to_owned(),
            path: path.to_owned(),
            path2: None,
            decision: Verdict::Deny,
            rule: reason::rule::IDENTITY.to_owned(),
            reason: reason::REPLACED_ON_HOST,
            count: None,
        });
        io::Error::from_raw_os_error(libc::ESTALE)
    }
}
