//! The helpers every request of [`GatedFs`] uses: name and path checks, the gate's outcome
//! enforced and reported, entries the inner side returns taken over.

use std::ffi::CStr;
use std::io;
use std::sync::MutexGuard;
use std::sync::PoisonError;

use virtiofsd::filesystem::{Context, Entry, FileSystem};

use super::GatedFs;
use super::err;
use super::linked;
use crate::events::FsEvent;
use crate::gate::Request;
use crate::gate::{Outcome, errno_for, gateway_deny};
use crate::paths::{PathError, PathMap, validate_name};
use crate::reason;

impl<F> GatedFs<F>
where
    F: FileSystem<Inode = u64, Handle = u64>,
{
    pub(super) fn map(&self) -> MutexGuard<'_, PathMap> {
        // The map is left consistent between statements, so a panic elsewhere while holding
        // the lock does not make it unusable.
        self.paths.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn record(&self, o: &Outcome) {
        self.events.record(&FsEvent {
            op: o.kind,
            mount: self.gate.mount().to_owned(),
            path: o.path.clone(),
            path2: o.path2.clone(),
            decision: o.decision.verdict,
            rule: o.decision.rule.clone(),
            reason: o.decision.reason,
            count: None,
        });
    }

    /// Reports and refuses a denial; lets an allowed request through.
    pub(super) fn enforce(&self, o: &Outcome) -> io::Result<()> {
        if o.is_allowed() {
            return Ok(());
        }
        tracing::debug!(
            kind = o.kind,
            path = ?o.path,
            path2 = ?o.path2,
            rule = %o.decision.rule,
            reason = o.decision.reason,
            "fs request denied"
        );
        self.record(o);
        Err(err(o.errno()))
    }

    /// Reports an allowed state change once the inner filesystem has done it.
    pub(super) fn done<T>(&self, o: &Outcome, result: io::Result<T>) -> io::Result<T> {
        if result.is_ok() && o.report {
            self.record(o);
        }
        result
    }

    /// A refusal by the gateway itself, reported like a policy denial.
    pub(super) fn refuse(
        &self,
        kind: &'static str,
        path: String,
        rule: &str,
        why: &'static str,
    ) -> io::Error {
        let o = Outcome {
            kind,
            decision: gateway_deny(rule, why),
            path,
            path2: None,
            report: true,
        };
        // `enforce` always fails for a denial.
        self.enforce(&o)
            .err()
            .unwrap_or_else(|| err(errno_for(why)))
    }

    /// Checks `name` (one UTF-8 component) before anything else looks at the request.
    pub(super) fn name<'n>(
        &self,
        kind: &'static str,
        parent: u64,
        name: &'n CStr,
    ) -> io::Result<&'n str> {
        let bytes = name.to_bytes();
        validate_name(bytes).map_err(|_| {
            let parent_path = self
                .map()
                .paths(parent)
                .ok()
                .and_then(|p| p.into_iter().next())
                .unwrap_or_default();
            let shown = bytes.escape_ascii().to_string();
            let path = if parent_path.is_empty() {
                shown
            } else {
                format!("{parent_path}/{shown}")
            };
            self.refuse(kind, path, reason::rule::NAME, reason::INVALID_NAME)
        })
    }

    /// Every path of a node the guest may use. Unknown ids are `EBADF`; a node whose path
    /// cannot be worked out is refused (and reported).
    pub(super) fn node(&self, kind: &'static str, ino: u64) -> io::Result<Vec<String>> {
        let result = self.map().paths(ino);
        self.known(kind, result)
    }

    /// Every path `name` has in directory `parent`.
    pub(super) fn child(
        &self,
        kind: &'static str,
        parent: u64,
        name: &str,
    ) -> io::Result<Vec<String>> {
        let result = self.map().child_paths(parent, name);
        self.known(kind, result)
    }

    pub(super) fn known(
        &self,
        kind: &'static str,
        result: Result<Vec<String>, PathError>,
    ) -> io::Result<Vec<String>> {
        match result {
            Ok(paths) => Ok(paths),
            Err(PathError::UnknownNode(_)) => Err(err(libc::EBADF)),
            Err(e) => Err(self.refuse(
                kind,
                format!("<{e}>"),
                reason::rule::PATH,
                reason::UNKNOWN_PATH,
            )),
        }
    }

    pub(super) fn live(&self, ino: u64) -> io::Result<()> {
        if self.map().is_live(ino) {
            Ok(())
        } else {
            Err(err(libc::EBADF))
        }
    }
}

impl<F> GatedFs<F>
where
    F: FileSystem<Inode = u64, Handle = u64>,
{
    /// The first path of `parent` joined with `name`, for identities of new entries.
    pub(super) fn child_path(&self, parent: u64, name: &str) -> io::Result<String> {
        self.map()
            .child_paths(parent, name)
            .ok()
            .and_then(|p| p.into_iter().next())
            .ok_or_else(|| err(libc::EBADF))
    }

    /// Takes over an entry the inner side returned for `name` in `parent` and records the
    /// link; the entry then carries the guest's id.
    pub(super) fn entry(
        &self,
        ctx: Context,
        parent: u64,
        name: &str,
        result: io::Result<Entry>,
    ) -> io::Result<Entry> {
        let entry = result?;
        let path = match self.child_path(parent, name) {
            Ok(p) => p,
            Err(e) => {
                self.inner.forget(ctx, entry.inode, 1);
                return Err(e);
            }
        };
        let entry = self.adopt(ctx, &path, entry)?;
        self.map().insert(parent, name, entry.inode);
        Ok(entry)
    }

    /// The guest forgot `count` references to `inode`; drops the node with its last one.
    pub(super) fn forget_node(&self, ctx: Context, inode: u64, count: u64) {
        let gone = {
            let mut map = self.map();
            map.forget(inode, count);
            !map.is_live(inode)
        };
        if gone {
            self.drop_node(ctx, inode);
        }
    }
}

impl<F> GatedFs<F>
where
    F: FileSystem<Inode = u64, Handle = u64>,
{
    /// The guest was refused using node `guest` by its name `path`: if that name is refused
    /// reading or writing, remember the file's identity.
    pub(super) fn learn_refused(&self, guest: u64, path: &str) {
        if let (Some((id, _)), Some(r)) = (
            self.nodes.host_of(guest),
            linked::refusal(&self.gate, path.to_owned()),
        ) {
            self.denied.learn(id, r);
        }
    }

    /// Refuses (and records) `op` on node `guest`, known by `paths`, when it uses the file as
    /// `want` and the file has another name where the policy refuses that.
    pub(super) fn refuse_linked(
        &self,
        op: &'static str,
        guest: u64,
        paths: &[String],
        want: linked::Use,
    ) -> io::Result<()> {
        if !want.read && !want.write {
            return Ok(());
        }
        let Some((id, links)) = self.nodes.host_of(guest) else {
            return Ok(());
        };
        // Until the walk is done, only a file that had another name when the guest looked it
        // up waits for it; the rest are checked against what is known so far.
        let Some(other) = self.denied.other_name(id, paths, want, links > 1) else {
            return Ok(());
        };
        // Still a name of this file? An inode number the host reused for a new file is not.
        if self.nodes.identity(&other).ok() != Some(id) {
            self.denied.forget(id);
            return Ok(());
        }
        let theirs = [other];
        let o = |flags: u32| {
            self.gate.check(&Request::Open {
                paths: &theirs,
                flags,
            })
        };
        let (read, write) = (o(libc::O_RDONLY as u32), o(libc::O_WRONLY as u32));
        let rule = if want.read && !read.is_allowed() {
            read.decision.rule
        } else {
            write.decision.rule
        };
        let path = paths.first().cloned().unwrap_or_default();
        tracing::debug!(path = ?path, other = ?theirs, "a hard link to a refused file was refused");
        Err(self.refuse(op, path, &rule, reason::LINKED_TO_DENIED))
    }
}
