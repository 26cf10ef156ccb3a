//! [`GatedFs`]: the `FileSystem` the vhost-user device serves. It wraps virtiofsd's
//! `PassthroughFs` (or any `FileSystem` with `u64` nodes and handles): check the request's
//! names, work out its paths, ask the gate, then call the inner filesystem, then keep the path
//! map in step and report the event.
//!
//! Called by virtiofsd's `Server` on the device's worker threads (`device.rs`), and directly by
//! the tests with crafted requests. Operations on open handles (read, write, fallocate,
//! copy_file_range, lseek, flush, fsync, release) were decided when the handle was opened and
//! go straight through. Operations this wrapper does not implement (ioctl, tmpfile, locks,
//! DAX mappings) get virtiofsd's default `ENOSYS`.

use std::ffi::CStr;
use std::io;
use std::time::Duration;

use virtiofsd::filesystem::{
    Context, Entry, Extensions, FileSystem, FsOptions, GetxattrReply, ListxattrReply, OpenOptions,
    SetattrValid, SetxattrFlags, ZeroCopyReader, ZeroCopyWriter,
};
use virtiofsd::fuse;

mod guard;
mod helpers;
mod linked;
mod nodes;
mod quota;

use nodes::Check;
pub(crate) use nodes::DEFAULT_MAX_RESIDENT;
pub use nodes::GatedFs;

use crate::filtered_dir::FilteredDir;
use crate::gate::Request;
use crate::paths::ROOT_INODE;
use airlock_audit::kind;

fn err(errno: i32) -> io::Error {
    io::Error::from_raw_os_error(errno)
}

/// Refuses a guest offset past `off_t`: virtiofsd 1.14 converts it with `unwrap` and panics.
fn file_offset(offset: u64) -> io::Result<i64> {
    i64::try_from(offset).map_err(|_| err(libc::EINVAL))
}

impl<F> FileSystem for GatedFs<F>
where
    F: FileSystem<Inode = u64, Handle = u64>,
{
    type Inode = u64;
    type Handle = u64;
    type DirIter = FilteredDir<F::DirIter>;

    fn init(&self, capable: FsOptions) -> io::Result<FsOptions> {
        // The inner filesystem forgets all nodes on INIT; so do we.
        self.map().reset();
        self.nodes.reset();
        self.inner.init(capable)
    }

    fn destroy(&self) {
        self.inner.destroy();
        self.map().reset();
        self.nodes.reset();
    }

    fn lookup(&self, ctx: Context, parent: u64, name: &CStr) -> io::Result<Entry> {
        let n = self.name(kind::FS_LOOKUP, parent, name)?;
        self.live(parent)?;
        let pin = self.pin(ctx, parent, Check::ByName(kind::FS_LOOKUP))?;
        let result = self.inner.lookup(ctx, pin.inner, name);
        drop(pin);
        match result {
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                // Gone on the host: stop deciding on a stale name.
                self.map().remove(parent, n);
                Err(e)
            }
            result => self.entry(ctx, parent, n, result),
        }
    }

    fn forget(&self, ctx: Context, inode: u64, count: u64) {
        // The root lives as long as the session: a forget of it (the kernel sends one at
        // unmount, a hostile guest any time) would only cut the share off until the next INIT.
        if inode == ROOT_INODE {
            return;
        }
        self.forget_node(ctx, inode, count);
    }

    fn batch_forget(&self, ctx: Context, requests: Vec<(u64, u64)>) {
        for (inode, count) in requests {
            if inode != ROOT_INODE {
                self.forget_node(ctx, inode, count);
            }
        }
    }

    fn getattr(
        &self,
        ctx: Context,
        inode: u64,
        handle: Option<u64>,
    ) -> io::Result<(fuse::Attr, Duration)> {
        self.live(inode)?;
        match handle {
            Some(h) => self.inner.getattr(ctx, self.nodes.handle(h)?, Some(h)),
            None => {
                let pin = self.pin(ctx, inode, Check::Metadata)?;
                self.inner.getattr(ctx, pin.inner, None)
            }
        }
    }

    fn setattr(
        &self,
        ctx: Context,
        inode: u64,
        attr: fuse::SetattrIn,
        handle: Option<u64>,
        valid: SetattrValid,
    ) -> io::Result<(fuse::Attr, Duration)> {
        let paths = self.node(kind::FS_SETATTR, inode)?;
        // On an open file (ftruncate, fchmod) the request acts on the file, not its name.
        let (inner, _pin) = match handle {
            Some(h) => (self.nodes.handle(h)?, None),
            None => {
                let pin = self.pin(ctx, inode, Check::ByName(kind::FS_SETATTR))?;
                (pin.inner, Some(pin))
            }
        };
        let is_dir = if valid.contains(SetattrValid::MODE) && attr.mode & libc::S_ISGID != 0 {
            let (current, _) = self.inner.getattr(ctx, inner, handle)?;
            current.mode & libc::S_IFMT == libc::S_IFDIR
        } else {
            false
        };
        let o = self.gate.check(&Request::Setattr {
            paths: &paths,
            valid: valid.bits(),
            mode: attr.mode,
            is_dir,
        });
        if !o.is_allowed() {
            self.learn_refused(inode, &o.path);
        }
        self.enforce(&o)?;
        let write = linked::Use {
            read: false,
            write: true,
        };
        self.refuse_linked(kind::FS_SETATTR, inode, &paths, write)?;
        let result = self.inner.setattr(ctx, inner, attr, handle, valid);
        self.done(&o, result)
    }

    fn readlink(&self, ctx: Context, inode: u64) -> io::Result<Vec<u8>> {
        let paths = self.node(kind::FS_OPEN, inode)?;
        self.enforce(&self.gate.check(&Request::Read { paths: &paths }))?;
        let pin = self.pin(ctx, inode, Check::ByName(kind::FS_OPEN))?;
        self.inner.readlink(ctx, pin.inner)
    }

    fn symlink(
        &self,
        ctx: Context,
        linkname: &CStr,
        parent: u64,
        name: &CStr,
        extensions: Extensions,
    ) -> io::Result<Entry> {
        let n = self.name(kind::FS_SYMLINK, parent, name)?;
        let paths = self.child(kind::FS_SYMLINK, parent, n)?;
        let o = self.gate.check(&Request::Symlink {
            paths: &paths,
            target: linkname.to_bytes(),
        });
        self.enforce(&o)?;
        let pin = self.pin(ctx, parent, Check::ByName(kind::FS_SYMLINK))?;
        let result = self
            .inner
            .symlink(ctx, linkname, pin.inner, name, extensions);
        drop(pin);
        let result = self.entry(ctx, parent, n, result);
        self.done(&o, result)
    }

    fn mknod(
        &self,
        ctx: Context,
        parent: u64,
        name: &CStr,
        mode: u32,
        rdev: u32,
        umask: u32,
        extensions: Extensions,
    ) -> io::Result<Entry> {
        let n = self.name(kind::FS_CREATE, parent, name)?;
        let paths = self.child(kind::FS_CREATE, parent, n)?;
        let o = self.gate.check(&Request::Mknod {
            paths: &paths,
            mode,
        });
        self.enforce(&o)?;
        let pin = self.pin(ctx, parent, Check::ByName(kind::FS_CREATE))?;
        let result = self
            .inner
            .mknod(ctx, pin.inner, name, mode, rdev, umask, extensions);
        drop(pin);
        let result = self.entry(ctx, parent, n, result);
        self.done(&o, result)
    }

    fn mkdir(
        &self,
        ctx: Context,
        parent: u64,
        name: &CStr,
        mode: u32,
        umask: u32,
        extensions: Extensions,
    ) -> io::Result<Entry> {
        let n = self.name(kind::FS_MKDIR, parent, name)?;
        let paths = self.child(kind::FS_MKDIR, parent, n)?;
        let o = self.gate.check(&Request::Mkdir {
            paths: &paths,
            mode,
        });
        self.enforce(&o)?;
        let pin = self.pin(ctx, parent, Check::ByName(kind::FS_MKDIR))?;
        let result = self
            .inner
            .mkdir(ctx, pin.inner, name, mode, umask, extensions);
        drop(pin);
        let result = self.entry(ctx, parent, n, result);
        self.done(&o, result)
    }

    fn unlink(&self, ctx: Context, parent: u64, name: &CStr) -> io::Result<()> {
        let n = self.name(kind::FS_UNLINK, parent, name)?;
        let paths = self.child(kind::FS_UNLINK, parent, n)?;
        let o = self.gate.check(&Request::Unlink { paths: &paths });
        self.enforce(&o)?;
        let pin = self.pin(ctx, parent, Check::ByName(kind::FS_UNLINK))?;
        let result = self.inner.unlink(ctx, pin.inner, name);
        if result.is_ok() {
            self.map().remove(parent, n);
        }
        self.done(&o, result)
    }

    fn rmdir(&self, ctx: Context, parent: u64, name: &CStr) -> io::Result<()> {
        let n = self.name(kind::FS_UNLINK, parent, name)?;
        let paths = self.child(kind::FS_UNLINK, parent, n)?;
        let o = self.gate.check(&Request::Unlink { paths: &paths });
        self.enforce(&o)?;
        let pin = self.pin(ctx, parent, Check::ByName(kind::FS_UNLINK))?;
        let result = self.inner.rmdir(ctx, pin.inner, name);
        if result.is_ok() {
            self.map().remove(parent, n);
        }
        self.done(&o, result)
    }

    fn rename(
        &self,
        ctx: Context,
        olddir: u64,
        oldname: &CStr,
        newdir: u64,
        newname: &CStr,
        flags: u32,
    ) -> io::Result<()> {
        let old = self.name(kind::FS_RENAME, olddir, oldname)?;
        let new = self.name(kind::FS_RENAME, newdir, newname)?;
        let from = self.child(kind::FS_RENAME, olddir, old)?;
        let to = self.child(kind::FS_RENAME, newdir, new)?;
        let o = self.gate.check(&Request::Rename {
            from: &from,
            to: &to,
            flags,
        });
        self.enforce(&o)?;
        let old_pin = self.pin(ctx, olddir, Check::ByName(kind::FS_RENAME))?;
        let new_pin = self.pin(ctx, newdir, Check::ByName(kind::FS_RENAME))?;
        let result = self
            .inner
            .rename(ctx, old_pin.inner, oldname, new_pin.inner, newname, flags);
        if result.is_ok() {
            let exchange = flags & libc::RENAME_EXCHANGE != 0;
            self.map().rename(olddir, old, newdir, new, exchange);
        }
        self.done(&o, result)
    }

    fn link(&self, ctx: Context, inode: u64, newparent: u64, newname: &CStr) -> io::Result<Entry> {
        let n = self.name(kind::FS_LINK, newparent, newname)?;
        let from = self.node(kind::FS_LINK, inode)?;
        let to = self.child(kind::FS_LINK, newparent, n)?;
        let o = self.gate.check(&Request::Link {
            from: &from,
            to: &to,
        });
        self.enforce(&o)?;
        let pin = self.pin(ctx, inode, Check::ByName(kind::FS_LINK))?;
        let parent_pin = self.pin(ctx, newparent, Check::ByName(kind::FS_LINK))?;
        let result = self.inner.link(ctx, pin.inner, parent_pin.inner, newname);
        drop((pin, parent_pin));
        let result = self.entry(ctx, newparent, n, result);
        self.done(&o, result)
    }

    fn open(
        &self,
        ctx: Context,
        inode: u64,
        kill_priv: bool,
        flags: u32,
    ) -> io::Result<(Option<u64>, OpenOptions)> {
        let paths = self.node(kind::FS_OPEN, inode)?;
        let o = self.gate.check(&Request::Open {
            paths: &paths,
            flags,
        });
        if !o.is_allowed() {
            self.learn_refused(inode, &o.path);
        }
        self.enforce(&o)?;
        let access = flags & libc::O_ACCMODE as u32;
        let want = linked::Use {
            read: access != libc::O_WRONLY as u32,
            write: access != libc::O_RDONLY as u32 || flags & libc::O_TRUNC as u32 != 0,
        };
        self.refuse_linked(kind::FS_OPEN, inode, &paths, want)?;
        self.guard.admit(
            self.nodes.open_handles(),
            self.gate.mount(),
            &o.path,
            &*self.events,
        )?;
        let pin = self.pin(ctx, inode, Check::ByName(kind::FS_OPEN))?;
        let result = self.inner.open(ctx, pin.inner, kill_priv, flags);
        if let Ok((Some(h), _)) = &result {
            self.nodes.opened(*h, pin.inner);
        }
        self.done(&o, result)
    }

    fn create(
        &self,
        ctx: Context,
        parent: u64,
        name: &CStr,
        mode: u32,
        kill_priv: bool,
        flags: u32,
        umask: u32,
        extensions: Extensions,
    ) -> io::Result<(Entry, Option<u64>, OpenOptions)> {
        let n = self.name(kind::FS_CREATE, parent, name)?;
        let paths = self.child(kind::FS_CREATE, parent, n)?;
        let o = self.gate.check(&Request::Create {
            paths: &paths,
            flags,
            mode,
        });
        self.enforce(&o)?;
        self.guard.admit(
            self.nodes.open_handles(),
            self.gate.mount(),
            &o.path,
            &*self.events,
        )?;
        let pin = self.pin(ctx, parent, Check::ByName(kind::FS_CREATE))?;
        let result = self.inner.create(
            ctx, pin.inner, name, mode, kill_priv, flags, umask, extensions,
        );
        drop(pin);
        let result = match result {
            Ok((entry, handle, opts)) => {
                if let Some(h) = handle {
                    self.nodes.opened(h, entry.inode);
                }
                match self.entry(ctx, parent, n, Ok(entry)) {
                    Ok(entry) => Ok((entry, handle, opts)),
                    Err(e) => {
                        if let Some(h) = handle {
                            self.nodes.closed(h);
                            let _ = self.inner.release(ctx, 0, 0, h, false, false, None);
                        }
                        Err(e)
                    }
                }
            }
            Err(e) => Err(e),
        };
        self.done(&o, result)
    }

    fn read<W: ZeroCopyWriter>(
        &self,
        ctx: Context,
        _inode: u64,
        handle: u64,
        w: W,
        size: u32,
        offset: u64,
        lock_owner: Option<u64>,
        flags: u32,
    ) -> io::Result<usize> {
        let inode = self.nodes.handle(handle)?;
        file_offset(offset)?;
        self.inner
            .read(ctx, inode, handle, w, size, offset, lock_owner, flags)
    }

    fn write<R: ZeroCopyReader>(
        &self,
        ctx: Context,
        guest: u64,
        handle: u64,
        r: R,
        size: u32,
        offset: u64,
        lock_owner: Option<u64>,
        delayed_write: bool,
        kill_priv: bool,
        flags: u32,
    ) -> io::Result<usize> {
        let inode = self.nodes.handle(handle)?;
        file_offset(offset)?;
        self.quota.admit(
            u64::from(size),
            self.gate.mount(),
            &|| self.first_path(guest).unwrap_or_default(),
            &*self.events,
        )?;
        self.inner.write(
            ctx,
            inode,
            handle,
            r,
            size,
            offset,
            lock_owner,
            delayed_write,
            kill_priv,
            flags,
        )
    }

    fn flush(&self, ctx: Context, _inode: u64, handle: u64, lock_owner: u64) -> io::Result<()> {
        let inode = self.nodes.handle(handle)?;
        self.inner.flush(ctx, inode, handle, lock_owner)
    }

    fn fsync(&self, ctx: Context, _inode: u64, datasync: bool, handle: u64) -> io::Result<()> {
        let inode = self.nodes.handle(handle)?;
        self.inner.fsync(ctx, inode, datasync, handle)
    }

    fn fallocate(
        &self,
        ctx: Context,
        guest: u64,
        handle: u64,
        mode: u32,
        offset: u64,
        length: u64,
    ) -> io::Result<()> {
        let inode = self.nodes.handle(handle)?;
        // Punching a hole gives space back; every other mode may take some.
        if mode & libc::FALLOC_FL_PUNCH_HOLE as u32 == 0 {
            self.quota.admit(
                length,
                self.gate.mount(),
                &|| self.first_path(guest).unwrap_or_default(),
                &*self.events,
            )?;
        }
        self.inner
            .fallocate(ctx, inode, handle, mode, offset, length)
    }

    fn release(
        &self,
        ctx: Context,
        _inode: u64,
        flags: u32,
        handle: u64,
        flush: bool,
        flock_release: bool,
        lock_owner: Option<u64>,
    ) -> io::Result<()> {
        let inode = self.nodes.closed(handle).ok_or_else(|| err(libc::EBADF))?;
        self.inner
            .release(ctx, inode, flags, handle, flush, flock_release, lock_owner)
    }

    fn statfs(&self, ctx: Context, inode: u64) -> io::Result<libc::statvfs64> {
        self.live(inode)?;
        let pin = self.pin(ctx, inode, Check::Metadata)?;
        self.inner.statfs(ctx, pin.inner)
    }

    fn setxattr(
        &self,
        ctx: Context,
        inode: u64,
        name: &CStr,
        value: &[u8],
        flags: u32,
        extra_flags: SetxattrFlags,
    ) -> io::Result<()> {
        let paths = self.node(kind::FS_SETATTR, inode)?;
        let o = self.gate.check(&Request::Setxattr { paths: &paths });
        self.enforce(&o)?;
        let pin = self.pin(ctx, inode, Check::ByName(kind::FS_SETATTR))?;
        let result = self
            .inner
            .setxattr(ctx, pin.inner, name, value, flags, extra_flags);
        self.done(&o, result)
    }

    fn getxattr(
        &self,
        ctx: Context,
        inode: u64,
        name: &CStr,
        size: u32,
    ) -> io::Result<GetxattrReply> {
        let paths = self.node(kind::FS_OPEN, inode)?;
        self.enforce(&self.gate.check(&Request::Read { paths: &paths }))?;
        let pin = self.pin(ctx, inode, Check::ByName(kind::FS_OPEN))?;
        self.inner.getxattr(ctx, pin.inner, name, size)
    }

    fn listxattr(&self, ctx: Context, inode: u64, size: u32) -> io::Result<ListxattrReply> {
        let paths = self.node(kind::FS_OPEN, inode)?;
        self.enforce(&self.gate.check(&Request::Read { paths: &paths }))?;
        let pin = self.pin(ctx, inode, Check::ByName(kind::FS_OPEN))?;
        self.inner.listxattr(ctx, pin.inner, size)
    }

    fn removexattr(&self, ctx: Context, inode: u64, name: &CStr) -> io::Result<()> {
        let paths = self.node(kind::FS_SETATTR, inode)?;
        let o = self.gate.check(&Request::Setxattr { paths: &paths });
        self.enforce(&o)?;
        let pin = self.pin(ctx, inode, Check::ByName(kind::FS_SETATTR))?;
        let result = self.inner.removexattr(ctx, pin.inner, name);
        self.done(&o, result)
    }

    fn opendir(
        &self,
        ctx: Context,
        inode: u64,
        flags: u32,
    ) -> io::Result<(Option<u64>, OpenOptions)> {
        let paths = self.node(kind::FS_OPEN, inode)?;
        let o = self.gate.check(&Request::Opendir { paths: &paths });
        self.enforce(&o)?;
        self.guard.admit(
            self.nodes.open_handles(),
            self.gate.mount(),
            &o.path,
            &*self.events,
        )?;
        let pin = self.pin(ctx, inode, Check::ByName(kind::FS_OPEN))?;
        let result = self.inner.opendir(ctx, pin.inner, flags);
        if let Ok((Some(h), _)) = &result {
            self.nodes.opened(*h, pin.inner);
        }
        result
    }

    fn readdir(
        &self,
        ctx: Context,
        _inode: u64,
        handle: u64,
        size: u32,
        offset: u64,
    ) -> io::Result<Self::DirIter> {
        let inode = self.nodes.handle(handle)?;
        let inner = self.inner.readdir(ctx, inode, handle, size, offset)?;
        Ok(FilteredDir::new(inner))
    }

    fn fsyncdir(&self, ctx: Context, _inode: u64, datasync: bool, handle: u64) -> io::Result<()> {
        let inode = self.nodes.handle(handle)?;
        self.inner.fsyncdir(ctx, inode, datasync, handle)
    }

    fn releasedir(&self, ctx: Context, _inode: u64, flags: u32, handle: u64) -> io::Result<()> {
        let inode = self.nodes.closed(handle).ok_or_else(|| err(libc::EBADF))?;
        self.inner.releasedir(ctx, inode, flags, handle)
    }

    fn access(&self, ctx: Context, inode: u64, mask: u32) -> io::Result<()> {
        self.live(inode)?;
        let pin = self.pin(ctx, inode, Check::Metadata)?;
        self.inner.access(ctx, pin.inner, mask)
    }

    fn lseek(
        &self,
        ctx: Context,
        _inode: u64,
        handle: u64,
        offset: u64,
        whence: u32,
    ) -> io::Result<u64> {
        let inode = self.nodes.handle(handle)?;
        self.inner.lseek(ctx, inode, handle, offset, whence)
    }

    fn copyfilerange(
        &self,
        ctx: Context,
        _inode_in: u64,
        handle_in: u64,
        offset_in: u64,
        _inode_out: u64,
        handle_out: u64,
        offset_out: u64,
        len: u64,
        flags: u64,
    ) -> io::Result<usize> {
        let inode_in = self.nodes.handle(handle_in)?;
        let inode_out = self.nodes.handle(handle_out)?;
        self.inner.copyfilerange(
            ctx, inode_in, handle_in, offset_in, inode_out, handle_out, offset_out, len, flags,
        )
    }

    fn syncfs(&self, ctx: Context, inode: u64) -> io::Result<()> {
        self.live(inode)?;
        let pin = self.pin(ctx, inode, Check::Metadata)?;
        self.inner.syncfs(ctx, pin.inner)
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_linked;
#[cfg(test)]
mod tests_nodes;
#[cfg(test)]
mod tests_rules;
