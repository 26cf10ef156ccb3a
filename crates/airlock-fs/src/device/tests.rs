//! Hand-made descriptor chains through the device's request path: malformed requests are
//! answered or dropped, never fatal to the process.

use std::path::Path;
use std::sync::Arc;

use airlock_policy::MountMode;
use virtio_bindings::virtio_ring::VRING_DESC_F_WRITE;
use virtio_queue::desc::RawDescriptor;
use virtio_queue::desc::split::Descriptor as SplitDescriptor;
use virtio_queue::mock::MockSplitQueue;
use virtiofsd::fuse::{InHeader, OutHeader};
use virtiofsd::passthrough::PassthroughFs;
use vm_memory::{ByteValued, Bytes, GuestAddress};

use super::*;
use crate::backend::GatedFs;
use crate::events::NoEvents;
use crate::gate::Gate;
use crate::serve::passthrough_config;

const REQ: u64 = 0x10_0000;
const REPLY: u64 = 0x18_0000;
const OUT_HEADER: u32 = 16;

struct Rig {
    _dir: tempfile::TempDir,
    mem: Mem,
    /// `None`: a device not yet bound to a share.
    server: Option<Server<GatedFs<PassthroughFs>>>,
}

fn rig() -> Rig {
    airlock_jail::ns::unshare_fs().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let fs = gated(dir.path());
    let mem = Mem::from_ranges(&[(GuestAddress(0), 0x20_0000)]).unwrap();
    Rig {
        _dir: dir,
        mem,
        server: Some(Server::new(fs)),
    }
}

/// A gated passthrough filesystem sharing `dir` at /workspace, read-write.
fn gated(dir: &Path) -> GatedFs<PassthroughFs> {
    let root = std::fs::canonicalize(dir).unwrap();
    let root_str = root.to_str().unwrap();
    let text = format!(
        "[[filesystem.mounts]]\nhost = {root_str:?}\nguest = \"/workspace\"\nmode = \"rw\"\n"
    );
    let policy = Arc::new(airlock_policy::load_str(&text, Path::new("/t.toml")).unwrap());
    let inner = PassthroughFs::new(passthrough_config(root_str, 1000)).unwrap();
    let gate = Gate::new(policy, "/workspace", MountMode::Rw, Some(root_str));
    GatedFs::new(inner, gate, Arc::new(NoEvents), &root)
}

fn header(opcode: u32, nodeid: u64, body_len: usize) -> InHeader {
    InHeader {
        len: u32::try_from(std::mem::size_of::<InHeader>() + body_len).unwrap(),
        opcode,
        unique: 7,
        nodeid,
        ..InHeader::default()
    }
}

impl Rig {
    /// Sends `request` with a `reply_len`-byte reply buffer; returns the reply length and
    /// the reply header.
    fn send(&self, request: &[u8], req_addr: u64, reply_len: u32) -> (u32, OutHeader) {
        self.mem.write_slice(request, GuestAddress(REQ)).unwrap();
        self.mem
            .write_slice(&[0u8; 64], GuestAddress(REPLY))
            .unwrap();
        let q = MockSplitQueue::new(&self.mem, 16);
        let descs = [
            RawDescriptor::from(SplitDescriptor::new(
                req_addr,
                u32::try_from(request.len()).unwrap(),
                0,
                0,
            )),
            RawDescriptor::from(SplitDescriptor::new(
                REPLY,
                reply_len,
                u16::try_from(VRING_DESC_F_WRITE).unwrap(),
                0,
            )),
        ];
        let chain = q.build_desc_chain(&descs).unwrap();
        let len = match self.server.as_ref() {
            Some(server) => handle_chain(server, &self.mem, chain),
            None => refuse_unbound(&self.mem, chain),
        };
        let out: OutHeader = self.mem.read_obj(GuestAddress(REPLY)).unwrap();
        (len, out)
    }
}

fn lookup(name: &[u8]) -> Vec<u8> {
    let mut req = header(1, 1, name.len()).as_slice().to_vec();
    req.extend_from_slice(name);
    req
}

#[test]
fn malformed_requests_are_dropped_not_fatal() {
    let r = rig();
    // shorter than a FUSE header
    assert_eq!(r.send(&[1, 2, 3, 4], REQ, 4096).0, 0);
    // header claims less than itself
    let mut h = header(1, 1, 0);
    h.len = 3;
    assert_eq!(r.send(h.as_slice(), REQ, 4096).0, 0);
    // a name without its NUL
    assert_eq!(r.send(&lookup(b"abc"), REQ, 4096).0, 0);
    // no room for the reply
    assert_eq!(r.send(&lookup(b"x\0"), REQ, 4).0, 0);
    // a request outside guest memory
    assert_eq!(r.send(&lookup(b"x\0"), 0x4000_0000, 4096).0, 0);
}

#[test]
fn refusals_reach_the_guest_as_errors() {
    let r = rig();
    let (len, out) = r.send(&lookup(b"..\0"), REQ, 4096);
    assert_eq!((len, out.error, out.unique), (OUT_HEADER, -libc::EINVAL, 7));
    let (_, out) = r.send(&lookup(b"a/b\0"), REQ, 4096);
    assert_eq!(out.error, -libc::EINVAL);
    // unknown opcode
    let (_, out) = r.send(header(9999, 1, 0).as_slice(), REQ, 4096);
    assert_eq!(out.error, -libc::ENOSYS);
    // FUSE_TMPFILE (51) is not offered
    let (_, out) = r.send(header(51, 1, 0).as_slice(), REQ, 4096);
    assert_eq!(out.error, -libc::ENOSYS);
    // FUSE_IOCTL (39) neither
    let (_, out) = r.send(header(39, 1, 0).as_slice(), REQ, 4096);
    assert_eq!(out.error, -libc::ENOSYS);
    // oversized length
    let mut h = header(1, 1, 0);
    h.len = u32::MAX;
    let (_, out) = r.send(h.as_slice(), REQ, 4096);
    assert_eq!(out.error, -libc::ENOMEM);
    // bogus node id
    let mut req = header(1, 424242, 2).as_slice().to_vec();
    req.extend_from_slice(b"x\0");
    let (_, out) = r.send(&req, REQ, 4096);
    assert_eq!(out.error, -libc::EBADF);
}

#[test]
fn an_unbound_device_answers_enodev_to_everything() {
    let mut r = rig();
    r.server = None;
    // FUSE_INIT (26), the first request of a mount.
    let (len, out) = r.send(header(26, 0, 0).as_slice(), REQ, 4096);
    assert_eq!((len, out.error, out.unique), (OUT_HEADER, -libc::ENODEV, 7));
    let (_, out) = r.send(&lookup(b"x\0"), REQ, 4096);
    assert_eq!(out.error, -libc::ENODEV);
    // Too short to carry a header, or no room for a reply: no reply at all.
    assert_eq!(r.send(&[1, 2, 3, 4], REQ, 4096).0, 0);
    assert_eq!(r.send(&lookup(b"x\0"), REQ, 4).0, 0);
}

#[test]
fn a_device_binds_once() {
    // PassthroughFs::new sets the umask: keep it to this test's thread.
    airlock_jail::ns::unshare_fs().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let make = || gated(dir.path());
    let device = FsDevice::unbound(1, tracing::Span::none()).unwrap();
    assert!(!device.is_bound());
    device.bind(make()).unwrap();
    assert!(device.is_bound());
    assert!(matches!(
        device.bind(make()),
        Err(DeviceError::AlreadyBound)
    ));
    device.shutdown();
}

/// Calls `inline` twice on a thread of its own (it unshares that thread's filesystem
/// attributes and sets its umask); returns both answers and how often `confine` ran.
fn inline_twice(confine_ok: Option<bool>) -> (bool, bool, usize) {
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let confine: Option<Confine> = confine_ok.map(|ok| {
        let calls = Arc::clone(&calls);
        Arc::new(move || {
            calls.fetch_add(1, Ordering::SeqCst);
            if ok {
                Ok(())
            } else {
                Err(io::Error::other("no Landlock here"))
            }
        }) as Confine
    });
    let (a, b) = std::thread::spawn(move || {
        airlock_jail::ns::unshare_fs().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let device = FsDevice::unbound(1, tracing::Span::none()).unwrap();
        let unbound = device.inline();
        device.bind_confined(gated(dir.path()), confine).unwrap();
        let answers = (device.inline(), device.inline());
        if answers.0 {
            // As PassthroughFs::new left it on the thread that bound: the guest's mode bits
            // reach the host unmasked.
            let was = nix::sys::stat::umask(nix::sys::stat::Mode::empty());
            assert!(was.is_empty(), "umask {was:?}");
        }
        device.shutdown();
        assert!(
            !unbound,
            "an unbound device never serves on the vring thread"
        );
        answers
    })
    .join()
    .unwrap();
    (a, b, calls.load(Ordering::SeqCst))
}

#[test]
fn the_vring_thread_serves_only_once_confined_like_the_workers() {
    // Confinement taken on once, then kept.
    assert_eq!(inline_twice(Some(true)), (true, true, 1));
    // Confinement failed: the workers serve everything, and it is not retried per request.
    assert_eq!(inline_twice(Some(false)), (false, false, 1));
    // In-process (no Landlock domain to match): served after unsharing the fs attributes.
    assert!(inline_twice(None).0);
}
