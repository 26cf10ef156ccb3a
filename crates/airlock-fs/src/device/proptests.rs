//! Fuzzing the filesystem gateway where guest bytes enter it: sessions of FUSE requests, each
//! put in guest memory as a descriptor chain and handed to [`answer`], the device's path for
//! one request (virtiofsd's `Server` decodes it and calls [`GatedFs`], which checks names, works
//! out paths and asks the policy, then virtiofsd's `PassthroughFs` over a temporary share).
//! Decoding the FUSE structs and descriptor chains is virtiofsd's and rust-vmm's code; what is
//! ours is everything `GatedFs` does with what they decode, and the device's handling of the
//! result. The requests are made from a table of each opcode's fields (`proptests/requests.rs`),
//! with node ids and file handles from earlier replies, names from a pool of hostile ones, and
//! lengths that lie; the gateway keeps one, two or many inner inodes, with or without a quota.
//!
//! Properties: no request panics or blocks (each session runs on its own thread with a
//! deadline); every reply fits the buffer and is a well-formed FUSE reply to that request; no
//! reply carries the bytes of a `deny_read` file or of a file outside the share; after the
//! session, nothing outside the share has changed and the `deny_write` and protected files
//! are intact; every event the gateway reports would reach the supervisor. `fallocate` and
//! `copy_file_range` lengths are capped at 1 MiB so a run cannot fill the disk.
//! `testdata/corpus/fuse/` holds hand-written sessions replayed on every run
//! (`docs/fuzzing.md`).

// Requests are built by cutting generated numbers down to the fields' widths.
#![allow(clippy::indexing_slicing, clippy::cast_possible_truncation)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use proptest::prelude::*;
use virtio_bindings::virtio_ring::VRING_DESC_F_WRITE;
use virtio_queue::desc::RawDescriptor;
use virtio_queue::desc::split::Descriptor as SplitDescriptor;
use virtio_queue::mock::MockSplitQueue;
use virtiofsd::passthrough::PassthroughFs;
use vm_memory::{Bytes, GuestAddress};

use super::*;
use crate::backend::GatedFs;
use crate::events::{FsEvent, FsEvents, FsLine};
use crate::gate::Gate;
use crate::serve::passthrough_config;
use airlock_policy::MountMode;
use requests::{ENTRY_OPS, Known, OPEN_OPS, Req, encode, name, request};

/// `default` cases per run unless `PROPTEST_CASES` says otherwise.
fn cases(default: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    ProptestConfig {
        cases,
        max_shrink_iters: 256,
        ..ProptestConfig::default()
    }
}

const REQ: u64 = 0x10_0000;
const REPLY: u64 = 0x20_0000;
const MEM_SIZE: usize = 0x30_0000;
const OUT_HEADER: usize = 16;
/// Size of `fuse_entry_out`: the node id is its first field.
const ENTRY_OUT: usize = 128;
const PRIVATE: &[u8] = b"CANARY-deny-read-6d1f";
const OUTSIDE: &[u8] = b"CANARY-outside-share-93ab";
/// How long one session may take before a request is deemed blocked.
const DEADLINE: Duration = Duration::from_secs(10);

/// Events reported by the gateway, each checked to survive the trip to the supervisor.
#[derive(Default)]
struct Lines(Mutex<Vec<String>>);

impl FsEvents for Lines {
    fn record(&self, e: &FsEvent) {
        let line = serde_json::to_vec(&FsLine::from(e)).unwrap_or_default();
        if FsLine::parse(&line).is_none() {
            self.0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(format!("event the supervisor would drop: {e:?}"));
        }
    }
}

/// A temporary tree: `share/` served at /workspace, `outside/` next to it.
struct Rig {
    dir: tempfile::TempDir,
    mem: Mem,
    server: Server<GatedFs<PassthroughFs>>,
    lines: Arc<Lines>,
}

fn write(path: &Path, bytes: &[u8]) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap_or_else(|e| panic!("{e}"));
    }
    std::fs::write(path, bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

/// The gateway's limits for one session: inner inodes kept, and the share's quota.
#[derive(Debug, Clone, Copy)]
struct Limits {
    resident: usize,
    quota: Option<u64>,
}

fn rig(limits: Limits) -> Rig {
    airlock_jail::ns::unshare_fs().unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let base = std::fs::canonicalize(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    let share = base.join("share");
    write(&share.join("file"), b"hello\n");
    write(&share.join("dir/inner"), b"inner\n");
    write(&share.join("private/key"), PRIVATE);
    write(&share.join("locked/file"), b"LOCKED\n");
    write(&share.join(".git/hooks/pre-commit"), b"HOOK\n");
    write(&base.join("outside/canary"), OUTSIDE);
    let link = |target: &Path, name: &str| {
        std::os::unix::fs::symlink(target, share.join(name)).unwrap_or_else(|e| panic!("{e}"));
    };
    link(Path::new("../outside"), "escape");
    link(&base.join("outside"), "abs");
    let root = share
        .to_str()
        .unwrap_or_else(|| panic!("non-UTF-8 temp dir"));
    let text = format!(
        "[[filesystem.mounts]]\nhost = {root:?}\nguest = \"/workspace\"\nmode = \"rw\"\n\
         [filesystem]\ndeny_read = [\"private/**\"]\ndeny_write = [\"locked/**\"]\n"
    );
    let policy =
        airlock_policy::load_str(&text, Path::new("/t.toml")).unwrap_or_else(|e| panic!("{e}"));
    let inner =
        PassthroughFs::new(passthrough_config(root, 1000)).unwrap_or_else(|e| panic!("{e}"));
    let gate = Gate::new(Arc::new(policy), "/workspace", MountMode::Rw, Some(root));
    let lines = Arc::new(Lines::default());
    let mut fs = GatedFs::new(inner, gate, lines.clone(), &share).with_limits(64, limits.resident);
    if let Some(bytes) = limits.quota {
        fs = fs.with_quota(bytes);
    }
    let mem = Mem::from_ranges(&[(GuestAddress(0), MEM_SIZE)]).unwrap_or_else(|e| panic!("{e}"));
    Rig {
        dir,
        mem,
        server: Server::new(fs),
        lines,
    }
}

impl Rig {
    /// Sends one request; the reply length and the reply bytes.
    fn send(
        &self,
        request: &[u8],
        split: Option<usize>,
        reply_len: u32,
    ) -> Result<Vec<u8>, String> {
        self.mem
            .write_slice(request, GuestAddress(REQ))
            .map_err(|e| e.to_string())?;
        let zero = vec![0u8; reply_len as usize];
        self.mem
            .write_slice(&zero, GuestAddress(REPLY))
            .map_err(|e| e.to_string())?;
        let q = MockSplitQueue::new(&self.mem, 16);
        let readable = |addr: u64, len: usize| {
            RawDescriptor::from(SplitDescriptor::new(addr, len as u32, 0, 0))
        };
        let mut descs = match split {
            Some(at) if at > 0 && at < request.len() => vec![
                readable(REQ, at),
                readable(REQ + at as u64, request.len() - at),
            ],
            _ => vec![readable(REQ, request.len())],
        };
        descs.push(RawDescriptor::from(SplitDescriptor::new(
            REPLY,
            reply_len,
            VRING_DESC_F_WRITE as u16,
            0,
        )));
        let chain = q.build_desc_chain(&descs).map_err(|e| format!("{e:?}"))?;
        let len = match answer(&self.server, &self.mem, chain) {
            Ok(len) => len,
            // Refused as malformed: the device answers nothing.
            Err(_) => return Ok(Vec::new()),
        };
        if len > reply_len as usize {
            return Err(format!("{len}-byte reply in a {reply_len}-byte buffer"));
        }
        let mut reply = vec![0u8; len];
        self.mem
            .read_slice(&mut reply, GuestAddress(REPLY))
            .map_err(|e| e.to_string())?;
        Ok(reply)
    }

    fn share(&self) -> PathBuf {
        self.base().join("share")
    }

    fn base(&self) -> PathBuf {
        std::fs::canonicalize(self.dir.path()).unwrap_or_else(|_| self.dir.path().to_owned())
    }
}

fn u64_at(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
}

/// Checks one reply and learns the node ids and handles it hands out.
fn check_reply(op: u32, unique: u64, reply: &[u8], known: &mut Known) -> Result<i32, String> {
    if reply.is_empty() {
        return Ok(1);
    }
    if reply.len() < OUT_HEADER {
        return Err(format!("{}-byte reply", reply.len()));
    }
    let len = u32::from_le_bytes(reply[..4].try_into().unwrap_or_default()) as usize;
    let error = i32::from_le_bytes(reply[4..8].try_into().unwrap_or_default());
    if len != reply.len() || u64_at(reply, 8) != Some(unique) {
        return Err(format!(
            "reply header {len}/{:?} for {}/{unique}",
            u64_at(reply, 8),
            reply.len()
        ));
    }
    if !(-4095..=0).contains(&error) || (error != 0 && len != OUT_HEADER) {
        return Err(format!("error {error} with {len} bytes"));
    }
    for canary in [PRIVATE, OUTSIDE] {
        if reply.windows(canary.len()).any(|w| w == canary) {
            return Err(format!(
                "opcode {op} returned {:?}",
                String::from_utf8_lossy(canary)
            ));
        }
    }
    if error == 0 && (op == 26 || op == 38) {
        // A new mount or none: the gateway forgot every node and handle.
        *known = Known::default();
    }
    if error == 0 && ENTRY_OPS.contains(&op) {
        known
            .nodes
            .extend(u64_at(reply, OUT_HEADER).filter(|&n| n != 0));
        if op == 35 {
            known.handles.extend(u64_at(reply, OUT_HEADER + ENTRY_OUT));
        }
    }
    if error == 0 && OPEN_OPS.contains(&op) {
        known.handles.extend(u64_at(reply, OUT_HEADER));
    }
    Ok(error)
}

/// After a session: the world outside the share, the `deny_write` file and the protected
/// hook are as they were, and every event reached the supervisor.
fn check_world(rig: &Rig) -> Result<(), String> {
    let names = |dir: &Path| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    };
    let base = rig.base();
    if names(&base) != ["outside", "share"] || names(&base.join("outside")) != ["canary"] {
        return Err(format!("outside the share changed: {:?}", names(&base)));
    }
    let share = rig.share();
    for (path, want) in [
        (base.join("outside/canary"), OUTSIDE),
        (share.join("locked/file"), b"LOCKED\n".as_slice()),
        (share.join(".git/hooks/pre-commit"), b"HOOK\n".as_slice()),
    ] {
        let regular = std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_file());
        if !regular || std::fs::read(&path).ok().as_deref() != Some(want) {
            return Err(format!("{} changed", path.display()));
        }
    }
    let lost = rig.lines.0.lock().unwrap_or_else(PoisonError::into_inner);
    match lost.first() {
        Some(e) => Err(e.clone()),
        None => Ok(()),
    }
}

/// Runs a session on its own thread (the gateway's workers each have their own filesystem
/// attributes); an error names the request that failed, or blocked.
fn run_session<T: Send + 'static>(
    limits: Limits,
    session: T,
    send: fn(&Rig, &mut Known, T) -> Result<(), String>,
) -> Result<(), String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
            let rig = rig(limits);
            let mut known = Known::default();
            send(&rig, &mut known, session).and_then(|()| check_world(&rig))
        }));
        let _ = tx.send(result.unwrap_or_else(|p| {
            let why = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()));
            Err(format!("panicked: {}", why.unwrap_or_default()))
        }));
    });
    rx.recv_timeout(DEADLINE)
        .unwrap_or_else(|_| Err("a request blocked".to_owned()))
}

fn send_generated(rig: &Rig, known: &mut Known, reqs: Vec<Req>) -> Result<(), String> {
    for (i, req) in reqs.iter().enumerate() {
        let unique = i as u64 + 1;
        let bytes = encode(req, unique, known);
        let split = req.split.map(|s| s.index(bytes.len() + 1));
        let reply = rig
            .send(&bytes, split, req.reply_len)
            .map_err(|e| format!("request {i} (opcode {}): {e}", req.op))?;
        check_reply(req.op, unique, &reply, known)
            .map_err(|e| format!("request {i} (opcode {}): {e}", req.op))?;
    }
    Ok(())
}

/// A session: usually INIT first, as a kernel does, then requests.
fn session() -> impl Strategy<Value = (Limits, Vec<Req>)> {
    let init = request().prop_map(|mut r| {
        r.op = 26;
        r.len = (0, 0);
        r.reply_len = 8192;
        r
    });
    (
        prop_oneof![Just(1usize), Just(2), Just(crate::MAX_RESIDENT)],
        prop_oneof![
            Just(None),
            Just(Some(0u64)),
            Just(Some(64 << 10)),
            Just(Some(1 << 30))
        ],
        proptest::option::weighted(0.9, init),
        proptest::collection::vec(request(), 1..24),
    )
        .prop_map(|(resident, quota, init, rest)| {
            let limits = Limits { resident, quota };
            (limits, init.into_iter().chain(rest).collect())
        })
}

proptest! {
    #![proptest_config(cases(256))]

    /// Sessions of generated requests keep every property in the module comment.
    #[test]
    fn guest_requests_keep_the_gateway_safe((limits, reqs) in session()) {
        run_session(limits, reqs, send_generated).map_err(TestCaseError::fail)?;
    }
}

proptest! {
    #![proptest_config(cases(5000))]

    /// A name the gateway accepts is one whole UTF-8 path component, as sent.
    #[test]
    fn accepted_names_are_single_components(bytes in prop_oneof![name(), proptest::collection::vec(any::<u8>(), 0..300)]) {
        if let Ok(s) = crate::paths::validate_name(&bytes) {
            prop_assert_eq!(s.as_bytes(), &bytes[..]);
            prop_assert!(!s.is_empty() && s.len() <= crate::MAX_NAME_LEN);
            prop_assert!(s != "." && s != ".." && !s.contains(['/', '\0']));
        }
    }
}

mod corpus;
mod requests;
