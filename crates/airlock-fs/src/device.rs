//! The vhost-user-fs device: virtqueues in, FUSE requests to virtiofsd's `Server` (which calls
//! our [`GatedFs`](crate::GatedFs)), replies back to the used ring.
//!
//! This plays the part of virtiofsd's `VhostUserFsBackend`, which we do not use because it
//! calls `process::exit(1)` when a request cannot be decoded: a hostile guest could then end
//! the whole supervisor. Here a malformed request is answered with an empty reply and logged,
//! and a panic while serving one request is caught and treated the same way. We also hand
//! `vhost-user-backend` one exit event we own, so that stopping the gateway ends its vring
//! thread, and we offer no migration, dirty logging, DAX window or config space (QEMU takes
//! the tag from its command line).
//!
//! Threads: `vhost-user-backend` runs one vring thread (`handle_event`), which pops descriptor
//! chains and hands each to a small pool of worker threads; the workers decode, decide, do the
//! I/O and return the chain. The last chain of a batch the vring thread serves itself, once it
//! has taken on the workers' confinement: a guest that waits for each reply (a `find`, a
//! `stat` loop) then pays no hand-over to another thread, while requests queued together
//! still run in parallel. Built by `serve.rs`.
//!
//! Late binding: a device may start without a filesystem ([`FsDevice::unbound`]), so a warm
//! guest can boot with it before anyone knows the share. Until [`FsDevice::bind`], every
//! request is answered `ENODEV`. `bind` starts the workers on the calling thread, so they
//! inherit whatever confinement that thread took on once it knew the share.

use std::io;
use std::ops::Deref;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};
use std::thread::JoinHandle;

use vhost::vhost_user::message::{VhostUserProtocolFeatures, VhostUserVirtioFeatures};
use vhost_user_backend::bitmap::BitmapMmapRegion;
use vhost_user_backend::{VhostUserBackend, VringMutex, VringState, VringT};
use virtio_bindings::virtio_config::VIRTIO_F_VERSION_1;
use virtio_bindings::virtio_ring::{VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC};
use virtio_queue::{DescriptorChain, QueueOwnedT};
use virtiofsd::descriptor_utils::{Reader, Writer};
use virtiofsd::filesystem::FileSystem;
use virtiofsd::fuse;
use virtiofsd::server::Server;
use vm_memory::{
    GuestAddressSpace, GuestMemory, GuestMemoryAtomic, GuestMemoryLoadGuard, GuestMemoryMmap,
};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::event::{
    EventConsumer, EventFlag, EventNotifier, new_event_consumer_and_notifier,
};

type Mem = GuestMemoryMmap<BitmapMmapRegion>;
type MemAtomic = GuestMemoryAtomic<Mem>;
type Chain = DescriptorChain<GuestMemoryLoadGuard<Mem>>;
/// The vring type the device is served with.
pub type Vring = VringMutex<MemAtomic>;

/// Largest queue the device accepts; QEMU's `vhost-user-fs-device` allows at most 1024.
const QUEUE_SIZE: usize = 1024;
/// The high-priority queue and one request queue.
const NUM_QUEUES: usize = 2;
/// `device_event` numbers are queue indices.
const HIPRIO_QUEUE_EVENT: u16 = 0;
const REQ_QUEUE_EVENT: u16 = 1;
/// FUSE opcodes whose reply virtiofsd writes through a split writer.
const FUSE_READ: u32 = 15;
const FUSE_READDIR: u32 = 28;
const FUSE_READDIRPLUS: u32 = 44;

/// Why the device could not be built or an event could not be handled.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// The exit eventfd could not be created.
    #[error("cannot create the exit event")]
    ExitEvent(#[source] io::Error),
    /// A worker thread could not be started.
    #[error("cannot start a worker thread")]
    SpawnWorker(#[source] io::Error),
    /// The frontend kicked a queue that does not exist.
    #[error("event for unknown queue {0}")]
    UnknownQueue(u16),
    /// The event was not readable.
    #[error("unexpected event set {0:?}")]
    NotEpollIn(EventSet),
    /// `bind` was called twice.
    #[error("the device is already bound to a filesystem")]
    AlreadyBound,
    /// A queue was kicked before the guest memory was mapped.
    #[error("no guest memory mapped")]
    NoMemory,
    /// The available ring could not be read.
    #[error("cannot iterate the queue")]
    IterateQueue,
}

impl From<DeviceError> for io::Error {
    fn from(e: DeviceError) -> Self {
        io::Error::other(e)
    }
}

type Job = Box<dyn FnOnce() + Send + 'static>;

/// Confines the calling thread as the workers are confined (a gateway process's Landlock layer
/// for the threads that serve). The vring thread runs it once before serving a request itself.
pub type Confine = Arc<dyn Fn() -> io::Result<()> + Send + Sync>;

/// The vring thread's readiness to serve requests itself ([`FsDevice::inline`]).
const INLINE_UNTRIED: u8 = 0;
const INLINE_READY: u8 = 1;
const INLINE_REFUSED: u8 = 2;

/// A fixed pool of threads, each with its own filesystem attributes (see [`sys::unshare_fs`]).
struct Pool {
    tx: Mutex<Option<Sender<Job>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Pool {
    fn new(size: usize, span: &tracing::Span) -> Result<Self, DeviceError> {
        let (tx, rx) = channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let mut threads = Vec::with_capacity(size);
        for i in 0..size {
            let rx = Arc::clone(&rx);
            let span = span.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("airlock-fs-w{i}"))
                .spawn(move || {
                    let _enter = span.enter();
                    if let Err(e) = airlock_jail::ns::unshare_fs() {
                        // Without a private cwd, fchdir in xattr calls would move the
                        // supervisor's; serve nothing rather than risk it.
                        tracing::error!(error = %e, "fs worker cannot unshare CLONE_FS");
                        return;
                    }
                    worker(&rx);
                });
            match spawned {
                Ok(t) => threads.push(t),
                Err(e) => {
                    drop(tx);
                    for t in threads {
                        let _ = t.join();
                    }
                    return Err(DeviceError::SpawnWorker(e));
                }
            }
        }
        Ok(Self {
            tx: Mutex::new(Some(tx)),
            threads: Mutex::new(threads),
        })
    }

    /// Runs `job` on a worker, or here if the pool is shut down or empty.
    fn run(&self, job: Job) {
        let tx = self.tx.lock().unwrap_or_else(PoisonError::into_inner);
        let job = match tx.as_ref() {
            Some(tx) if !self.is_empty() => match tx.send(job) {
                Ok(()) => return,
                Err(e) => e.0,
            },
            _ => job,
        };
        drop(tx);
        job();
    }

    fn is_empty(&self) -> bool {
        self.threads
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_empty()
    }

    /// Lets queued jobs finish and joins the workers.
    fn shutdown(&self) {
        drop(
            self.tx
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
        let threads =
            std::mem::take(&mut *self.threads.lock().unwrap_or_else(PoisonError::into_inner));
        for t in threads {
            let _ = t.join();
        }
    }
}

fn worker(rx: &Mutex<Receiver<Job>>) {
    loop {
        let job = {
            let rx = rx.lock().unwrap_or_else(PoisonError::into_inner);
            rx.recv()
        };
        match job {
            Ok(job) => job(),
            Err(_) => return,
        }
    }
}

/// The device: a FUSE server over `F` plus the virtqueue plumbing.
pub struct FsDevice<F: FileSystem + Sync> {
    /// Set once, by `bind`, after `pool`.
    server: OnceLock<Arc<Server<F>>>,
    mem: RwLock<Option<MemAtomic>>,
    event_idx: AtomicBool,
    pool: OnceLock<Pool>,
    threads: usize,
    /// Set by `bind`: how the vring thread takes on the workers' confinement.
    confine: OnceLock<Option<Confine>>,
    /// `INLINE_*`: whether the vring thread may serve requests itself.
    inline: AtomicU8,
    exit: Mutex<Option<(EventConsumer, EventNotifier)>>,
    span: tracing::Span,
}

impl<F> FsDevice<F>
where
    F: FileSystem + Send + Sync + 'static,
{
    /// Serves `fs` with `threads` worker threads (0: on the vring thread itself). Call on a
    /// thread that has its own filesystem attributes: the workers inherit them.
    pub fn new(fs: F, threads: usize, span: tracing::Span) -> Result<Self, DeviceError> {
        let device = Self::unbound(threads, span)?;
        device.bind(fs)?;
        Ok(device)
    }

    /// A device with no filesystem yet: it answers every request `ENODEV` until
    /// [`bind`](Self::bind).
    pub fn unbound(threads: usize, span: tracing::Span) -> Result<Self, DeviceError> {
        let exit =
            new_event_consumer_and_notifier(EventFlag::NONBLOCK).map_err(DeviceError::ExitEvent)?;
        Ok(Self {
            server: OnceLock::new(),
            mem: RwLock::new(None),
            event_idx: AtomicBool::new(false),
            pool: OnceLock::new(),
            threads,
            confine: OnceLock::new(),
            inline: AtomicU8::new(INLINE_UNTRIED),
            exit: Mutex::new(Some(exit)),
            span,
        })
    }

    /// Serves `fs` from now on. The workers start here and inherit this thread's filesystem
    /// attributes, credentials and Landlock domain.
    pub fn bind(&self, fs: F) -> Result<(), DeviceError> {
        self.bind_confined(fs, None)
    }

    /// [`bind`](Self::bind), and `confine` gives the vring thread the Landlock domain the
    /// calling thread took on (the vring thread predates it), so that it may serve requests
    /// itself. Without `confine` the calling thread must have taken on none.
    pub fn bind_confined(&self, fs: F, confine: Option<Confine>) -> Result<(), DeviceError> {
        if self.server.get().is_some() {
            return Err(DeviceError::AlreadyBound);
        }
        self.confine
            .set(confine)
            .map_err(|_| DeviceError::AlreadyBound)?;
        let pool = Pool::new(self.threads, &self.span)?;
        self.pool.set(pool).map_err(|_| DeviceError::AlreadyBound)?;
        self.server
            .set(Arc::new(Server::new(fs)))
            .map_err(|_| DeviceError::AlreadyBound)
    }

    /// Whether a filesystem is bound.
    pub fn is_bound(&self) -> bool {
        self.server.get().is_some()
    }

    /// Joins the worker threads once the vhost-user connection is gone.
    pub fn shutdown(&self) {
        if let Some(pool) = self.pool.get() {
            pool.shutdown();
        }
    }

    fn process_queue(&self, vring: &Vring) -> Result<(), DeviceError> {
        let mem = self
            .mem
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .ok_or(DeviceError::NoMemory)?;
        // Take one chain at a time and release the vring lock before serving it: the worker
        // locks the vring again to return it.
        let next = || -> Result<Option<Chain>, DeviceError> {
            let mut state = vring.get_mut();
            Ok(state
                .get_queue_mut()
                .iter(mem.memory())
                .map_err(|_| DeviceError::IterateQueue)?
                .next())
        };
        let mut pending = next()?;
        while let Some(chain) = pending.take() {
            pending = next()?;
            let (Some(server), Some(pool)) = (self.server.get(), self.pool.get()) else {
                let head = chain.head_index();
                let len = refuse_unbound(&mem.memory(), chain);
                let mut state = vring.get_mut();
                return_chain(
                    &mut state,
                    head,
                    len,
                    self.event_idx.load(Ordering::Relaxed),
                );
                continue;
            };
            let event_idx = self.event_idx.load(Ordering::Relaxed);
            // The last of the batch is served here, unless this thread cannot be confined.
            if pending.is_none() && self.inline() {
                serve_chain(server, &mem, vring, chain, event_idx);
                continue;
            }
            let server = Arc::clone(server);
            let mem = mem.clone();
            let vring = vring.clone();
            let span = self.span.clone();
            pool.run(Box::new(move || {
                let _enter = span.enter();
                serve_chain(&server, &mem, &vring, chain, event_idx);
            }));
        }
        Ok(())
    }

    /// Whether the calling (vring) thread may serve requests itself. The first call, after
    /// binding, gives it what the workers have: its own filesystem attributes with the umask
    /// `PassthroughFs` set (0), and the confinement from `bind_confined`. If any step fails
    /// it never serves, and the workers do everything.
    fn inline(&self) -> bool {
        match self.inline.load(Ordering::Acquire) {
            INLINE_READY => return true,
            INLINE_REFUSED => return false,
            _ => {}
        }
        let Some(confine) = self.confine.get() else {
            return false;
        };
        let prepared = airlock_jail::ns::unshare_fs().and_then(|()| {
            // Only after the unshare: the umask is then this thread's alone.
            nix::sys::stat::umask(nix::sys::stat::Mode::empty());
            confine.as_ref().map_or(Ok(()), |c| c())
        });
        let state = match prepared {
            Ok(()) => INLINE_READY,
            Err(e) => {
                tracing::warn!(error = %e, "the vring thread cannot take on the workers' confinement; the workers serve every request");
                INLINE_REFUSED
            }
        };
        self.inline.store(state, Ordering::Release);
        state == INLINE_READY
    }
}

/// Serves one request and returns its chain. A request that cannot be decoded, or whose
/// handling panics, gets an empty reply: the guest sees an I/O error, the host carries on.
fn serve_chain<F: FileSystem + Sync>(
    server: &Server<F>,
    mem: &MemAtomic,
    vring: &Vring,
    chain: Chain,
    event_idx: bool,
) {
    let head = chain.head_index();
    let guard = mem.memory();
    let len = handle_chain(server, &guard, chain);
    let mut state = vring.get_mut();
    return_chain(&mut state, head, len, event_idx);
}

/// Decodes and answers one request; returns the number of reply bytes written (0 when the
/// request was refused as malformed or its handler panicked).
fn handle_chain<F, M>(server: &Server<F>, mem: &Mem, chain: DescriptorChain<M>) -> u32
where
    F: FileSystem + Sync,
    M: Deref + Clone,
    M::Target: GuestMemory + Sized,
{
    let outcome = catch_unwind(AssertUnwindSafe(|| answer(server, mem, chain)));
    let len = match outcome {
        Ok(Ok(len)) => len,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "malformed fs request from the guest");
            0
        }
        Err(_) => {
            tracing::error!("fs request handler panicked; request dropped");
            0
        }
    };
    u32::try_from(len).unwrap_or(0)
}

/// Decodes and answers one request (virtiofsd's `Server` decodes, then calls the filesystem):
/// the number of reply bytes written, or why the request is malformed. Panics propagate; the
/// caller catches them (the property tests in `device/proptests.rs` do not).
fn answer<F, M>(server: &Server<F>, mem: &Mem, chain: DescriptorChain<M>) -> Result<usize, String>
where
    F: FileSystem + Sync,
    M: Deref + Clone,
    M::Target: GuestMemory + Sized,
{
    let reader = Reader::new(mem, chain.clone()).map_err(|e| e.to_string())?;
    let writer = Writer::new(mem, chain.clone()).map_err(|e| e.to_string())?;
    if writer.available_bytes() < size_of::<fuse::OutHeader>() {
        // virtiofsd 1.14 panics on a read or readdir with no room for the reply header
        // (`split_at(..).unwrap()`); refuse it here rather than unwind and log each time.
        let mut peek = Reader::new(mem, chain).map_err(|e| e.to_string())?;
        let header: fuse::InHeader = peek.read_obj().map_err(|e| e.to_string())?;
        if matches!(header.opcode, FUSE_READ | FUSE_READDIR | FUSE_READDIRPLUS) {
            return Err("no room for the reply header".to_owned());
        }
    }
    server
        .handle_message(reader, writer, None::<&mut ()>)
        .map_err(|e| e.to_string())
}

/// Answers a request to a device with no filesystem yet: `ENODEV`, so a mount fails at once.
/// Returns the reply length (0 for requests without a reply buffer, such as `FORGET`).
fn refuse_unbound<M>(mem: &Mem, chain: DescriptorChain<M>) -> u32
where
    M: Deref + Clone,
    M::Target: GuestMemory + Sized,
{
    let reply = || -> Option<usize> {
        let mut reader = Reader::new(mem, chain.clone()).ok()?;
        let mut writer = Writer::new(mem, chain).ok()?;
        let header: fuse::InHeader = reader.read_obj().ok()?;
        let len = std::mem::size_of::<fuse::OutHeader>();
        writer
            .write_obj(fuse::OutHeader {
                len: u32::try_from(len).ok()?,
                error: -libc::ENODEV,
                unique: header.unique,
            })
            .ok()?;
        Some(len)
    };
    reply().and_then(|n| u32::try_from(n).ok()).unwrap_or(0)
}

fn return_chain(state: &mut VringState<MemAtomic>, head: u16, len: u32, event_idx: bool) {
    if state.add_used(head, len).is_err() {
        tracing::warn!("cannot return a descriptor to the used ring");
    }
    let notify = !event_idx || state.needs_notification().unwrap_or(true);
    if notify && state.signal_used_queue().is_err() {
        tracing::warn!("cannot signal the used queue");
    }
}

impl<F> VhostUserBackend for FsDevice<F>
where
    F: FileSystem + Send + Sync + 'static,
{
    type Bitmap = BitmapMmapRegion;
    type Vring = Vring;

    fn num_queues(&self) -> usize {
        NUM_QUEUES
    }

    fn max_queue_size(&self) -> usize {
        QUEUE_SIZE
    }

    fn features(&self) -> u64 {
        (1 << VIRTIO_F_VERSION_1)
            | (1 << VIRTIO_RING_F_INDIRECT_DESC)
            | (1 << VIRTIO_RING_F_EVENT_IDX)
            | VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits()
    }

    fn protocol_features(&self) -> VhostUserProtocolFeatures {
        VhostUserProtocolFeatures::MQ
            | VhostUserProtocolFeatures::REPLY_ACK
            | VhostUserProtocolFeatures::CONFIGURE_MEM_SLOTS
            | VhostUserProtocolFeatures::RESET_DEVICE
    }

    fn reset_device(&self) {
        if let Some(server) = self.server.get() {
            server.destroy();
        }
    }

    fn set_event_idx(&self, enabled: bool) {
        self.event_idx.store(enabled, Ordering::Relaxed);
    }

    fn update_memory(&self, mem: MemAtomic) -> io::Result<()> {
        *self.mem.write().unwrap_or_else(PoisonError::into_inner) = Some(mem);
        Ok(())
    }

    fn exit_event(&self, _thread_index: usize) -> Option<(EventConsumer, EventNotifier)> {
        // One vring thread (the default `queues_per_thread`), so one event, taken once.
        self.exit
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    fn handle_event(
        &self,
        device_event: u16,
        evset: EventSet,
        vrings: &[Vring],
        _thread_id: usize,
    ) -> io::Result<()> {
        let _enter = self.span.enter();
        if evset != EventSet::IN {
            return Err(DeviceError::NotEpollIn(evset).into());
        }
        let index = match device_event {
            HIPRIO_QUEUE_EVENT | REQ_QUEUE_EVENT => usize::from(device_event),
            other => return Err(DeviceError::UnknownQueue(other).into()),
        };
        let vring = vrings
            .get(index)
            .ok_or(DeviceError::UnknownQueue(device_event))?;
        if self.event_idx.load(Ordering::Relaxed) {
            // With EVENT_IDX, keep going until no new request arrived while we worked.
            loop {
                vring
                    .disable_notification()
                    .map_err(|_| DeviceError::IterateQueue)?;
                self.process_queue(vring)?;
                if !vring
                    .enable_notification()
                    .map_err(|_| DeviceError::IterateQueue)?
                {
                    break;
                }
            }
        } else {
            self.process_queue(vring)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
