//! The requests of the FUSE property test: each opcode's body as a list of fields, filled from
//! generated numbers when the request is sent, so that node ids and file handles can come
//! from earlier replies.

// Requests are built by cutting generated numbers down to the fields' widths.
#![allow(clippy::indexing_slicing, clippy::cast_possible_truncation)]

use proptest::prelude::*;

use crate::paths::ROOT_INODE;

/// One field of a request body, resolved when the request is sent (node ids and handles come
/// from earlier replies). Each takes a selector and a raw value from the generated request.
#[derive(Debug, Clone, Copy)]
enum F {
    Node,
    Fh,
    Mode,
    OFlags,
    Umask,
    Size32,
    Off64,
    /// A length capped at 1 MiB (fallocate, copy_file_range).
    Len64,
    Count64,
    Any32,
    Any64,
    Zero32,
    Name,
    Data,
    DataLen32,
    InitHead,
    SetattrValid,
    RenameFlags,
    Whence,
    Forgets,
}

use F::*;

/// Each opcode's fields, in the order of its `fuse_*_in` struct and what follows it.
const OPS: &[(u32, &[F])] = &[
    (1, &[Name]),
    (2, &[Count64]),
    (3, &[Any32, Zero32, Fh]),
    (
        4,
        &[
            SetattrValid,
            Zero32,
            Fh,
            Off64,
            Any64,
            Any64,
            Any64,
            Any64,
            Any32,
            Any32,
            Any32,
            Mode,
            Zero32,
            Any32,
            Any32,
            Zero32,
        ],
    ),
    (5, &[]),
    (6, &[Name, Name]),
    (8, &[Mode, Any32, Umask, Zero32, Name]),
    (9, &[Mode, Umask, Name]),
    (10, &[Name]),
    (11, &[Name]),
    (12, &[Node, Name, Name]),
    (13, &[Node, Name]),
    (14, &[OFlags, Any32]),
    (15, &[Fh, Off64, Size32, Any32, Any64, Any32, Zero32]),
    (
        16,
        &[Fh, Off64, DataLen32, Any32, Any64, Any32, Zero32, Data],
    ),
    (17, &[]),
    (18, &[Fh, OFlags, Any32, Any64]),
    (20, &[Fh, Any32, Zero32]),
    (21, &[DataLen32, Any32, Any32, Zero32, Name, Data]),
    (22, &[Size32, Zero32, Name]),
    (23, &[Size32, Zero32]),
    (24, &[Name]),
    (25, &[Fh, Any32, Zero32, Any64]),
    (26, &[InitHead]),
    (27, &[OFlags, Any32]),
    (28, &[Fh, Off64, Size32, Any32, Any64, Any32, Zero32]),
    (29, &[Fh, Any32, Any32, Any64]),
    (30, &[Fh, Any32, Zero32]),
    (31, &[Fh, Any64, Off64, Off64, Any32, Any32, Any32, Zero32]),
    (32, &[Fh, Any64, Off64, Off64, Any32, Any32, Any32, Zero32]),
    (33, &[Fh, Any64, Off64, Off64, Any32, Any32, Any32, Zero32]),
    (34, &[Any32, Zero32]),
    (35, &[OFlags, Mode, Umask, Any32, Name]),
    (36, &[Any64]),
    (37, &[Any64, Any32, Zero32]),
    (38, &[]),
    (39, &[Fh, Any32, Any32, Any64, Size32, Size32, Data]),
    (40, &[Fh, Any64, Any32, Any32]),
    (41, &[Data]),
    (42, &[Forgets]),
    (43, &[Fh, Off64, Len64, Any32, Zero32]),
    (44, &[Fh, Off64, Size32, Any32, Any64, Any32, Zero32]),
    (45, &[Node, RenameFlags, Zero32, Name, Name]),
    (46, &[Fh, Off64, Whence, Zero32]),
    (47, &[Fh, Off64, Node, Fh, Off64, Len64, Any64]),
    (48, &[Fh, Off64, Len64, Any64, Off64]),
    (49, &[Size32, Data]),
    (50, &[Any64]),
    (51, &[OFlags, Mode, Umask, Any32]),
];

/// The requests a working mount sends most, drawn more often so sessions get somewhere:
/// lookup, setattr, symlink, mknod, mkdir, unlink, rename, link, open, read, write, create,
/// readdirplus, rename2.
const HOT: &[u32] = &[
    1, 1, 1, 4, 6, 8, 9, 10, 12, 13, 14, 14, 15, 15, 16, 16, 35, 35, 44, 45,
];

/// Opcodes whose reply starts with a `fuse_entry_out` (lookup, symlink, mknod, mkdir, link,
/// create), and those whose reply starts with an open handle (open, opendir).
pub(super) const ENTRY_OPS: &[u32] = &[1, 6, 8, 9, 13, 35];
pub(super) const OPEN_OPS: &[u32] = &[14, 27];

/// Names: mostly those in the share (and those sessions create), so requests find something;
/// and those a hostile guest would try: dot names, slashes, non-UTF-8, too long.
pub(super) fn name() -> impl Strategy<Value = Vec<u8>> {
    let present: &[&[u8]] = &[
        b"file",
        b"dir",
        b"inner",
        b"private",
        b"key",
        b"locked",
        b".git",
        b"hooks",
        b"pre-commit",
        b"escape",
        b"abs",
        b"new",
        b"x",
    ];
    let hostile: &[&[u8]] = &[
        b".",
        b"..",
        b"",
        b"a/b",
        b"../outside",
        b"\xff\xfe",
        b"\xc3\xa9",
        &[b'n'; 255],
        &[b'n'; 256],
    ];
    prop_oneof![
        12 => proptest::sample::select(present).prop_map(<[u8]>::to_vec),
        4 => proptest::sample::select(hostile).prop_map(<[u8]>::to_vec),
        1 => proptest::collection::vec(any::<u8>(), 0..8),
    ]
}

/// A request before its references are resolved.
#[derive(Debug, Clone)]
pub(super) struct Req {
    pub(super) op: u32,
    /// Header node id (resolved like [`F::Node`]).
    node: (u8, u64),
    /// Selector and raw value for each field, in order.
    seeds: Vec<(u8, u64)>,
    names: Vec<Vec<u8>>,
    data: Vec<u8>,
    /// Header length: 0 right, 1 short, 2 long, 3 arbitrary.
    pub(super) len: (u8, u32),
    /// 0: root (who owns the share here), 1: the agent, 2: arbitrary.
    creds: (u8, u32),
    total_extlen: u16,
    pub(super) reply_len: u32,
    /// Splits the request over two descriptors at this point.
    pub(super) split: Option<prop::sample::Index>,
    trailing: Vec<u8>,
}

pub(super) fn request() -> impl Strategy<Value = Req> {
    let op = prop_oneof![
        10 => proptest::sample::select(OPS).prop_map(|(op, _)| op),
        10 => proptest::sample::select(HOT),
        1 => any::<u32>(),
    ];
    (
        op,
        (any::<u8>(), any::<u64>()),
        proptest::collection::vec((any::<u8>(), any::<u64>()), 16),
        proptest::collection::vec(name(), 0..3),
        proptest::collection::vec(any::<u8>(), 0..64),
        prop_oneof![30 => Just((0u8, 0u32)), 1 => (1u8..4, any::<u32>())],
        (
            prop_oneof![6 => Just(0u8), 1 => Just(1), 1 => Just(2)],
            any::<u32>(),
        ),
        prop_oneof![30 => Just(0u16), 1 => any::<u16>()],
        prop_oneof![30 => Just(8192u32), 1 => 0u32..40, 1 => Just(0x10_0000u32)],
        proptest::option::weighted(0.05, any::<prop::sample::Index>()),
        prop_oneof![30 => Just(Vec::new()), 1 => proptest::collection::vec(any::<u8>(), 1..16)],
    )
        .prop_map(
            |(
                op,
                node,
                seeds,
                names,
                data,
                len,
                creds,
                total_extlen,
                reply_len,
                split,
                trailing,
            )| {
                Req {
                    op,
                    node,
                    seeds,
                    names,
                    data,
                    len,
                    creds,
                    total_extlen,
                    reply_len,
                    split,
                    trailing,
                }
            },
        )
}

/// What earlier replies handed out.
#[derive(Default)]
pub(super) struct Known {
    pub(super) nodes: Vec<u64>,
    pub(super) handles: Vec<u64>,
}

impl Known {
    /// Mostly the node given last (requests build on each other) or the root; sometimes an
    /// earlier node, an id never given, or 0.
    fn node(&self, (sel, raw): (u8, u64)) -> u64 {
        let n = self.nodes.len() as u64;
        match sel % 8 {
            0..=2 => self.nodes.last().copied().unwrap_or(ROOT_INODE),
            3 if n > 0 => self.nodes[(raw % n) as usize],
            6 => raw,
            7 => 0,
            _ => ROOT_INODE,
        }
    }

    /// Mostly the handle given last, sometimes an earlier one or one never given.
    fn handle(&self, (sel, raw): (u8, u64)) -> u64 {
        let n = self.handles.len() as u64;
        match sel % 8 {
            0..=4 if n > 0 => self.handles[(n - 1) as usize],
            5 | 6 if n > 0 => self.handles[(raw % n) as usize],
            _ => raw,
        }
    }
}

fn pick32(sel: u8, raw: u64, values: &[u32]) -> u32 {
    values
        .get(usize::from(sel) % (values.len() + 1))
        .copied()
        .unwrap_or(raw as u32)
}

/// The bytes of `req`'s body, its references resolved against `known`.
fn body(req: &Req, known: &Known) -> Vec<u8> {
    let fields = OPS
        .iter()
        .find(|(op, _)| *op == req.op)
        .map_or(&[Data][..], |(_, f)| *f);
    let mut out = Vec::new();
    let mut seeds = req.seeds.iter().copied().cycle();
    let mut names = req.names.iter();
    for f in fields {
        let (sel, raw) = seeds.next().unwrap_or_default();
        let mut u32_ = |v: u32| out.extend_from_slice(&v.to_le_bytes());
        match f {
            Mode => u32_(pick32(
                sel,
                raw,
                &[
                    libc::S_IFREG | 0o644,
                    libc::S_IFDIR | 0o755,
                    libc::S_IFIFO | 0o644,
                    libc::S_IFSOCK | 0o600,
                    libc::S_IFCHR | 0o644,
                    libc::S_IFLNK | 0o777,
                    0o4755,
                ],
            )),
            OFlags => u32_(pick32(sel, raw, &OPEN_FLAGS)),
            Umask => u32_(pick32(sel, raw, &[0o022])),
            Size32 => u32_(pick32(sel, raw, &[0, 4096, (raw % 65536) as u32])),
            Any32 => u32_(raw as u32),
            Zero32 => u32_(0),
            DataLen32 => u32_(pick32(sel, raw, &[req.data.len() as u32; 4])),
            SetattrValid => u32_(pick32(sel, raw, &[8, 1, (raw & 0x7ff) as u32])),
            RenameFlags => u32_(pick32(sel, raw, &[0, 1, 2, 4])),
            Whence => u32_((raw % 6) as u32),
            InitHead => {
                let minor = pick32(sel, raw, &[31, 38, (raw % 50) as u32]);
                let flags = pick32(sel >> 2, raw, &[0, 1 << 30, (raw as u32) | (1 << 30)]);
                for v in [7, minor, 0x2_0000, flags, (raw >> 32) as u32] {
                    u32_(v);
                }
                out.extend_from_slice(&[0; 44]);
            }
            Node => out.extend_from_slice(&known.node((sel, raw)).to_le_bytes()),
            Fh => out.extend_from_slice(&known.handle((sel, raw)).to_le_bytes()),
            Off64 => {
                let v = match sel % 4 {
                    0 => 0,
                    1 => raw % 8192,
                    2 => raw % (1 << 40),
                    _ => raw,
                };
                out.extend_from_slice(&v.to_le_bytes());
            }
            Len64 => out.extend_from_slice(&(raw % (1 << 20)).to_le_bytes()),
            Count64 => {
                let v = match sel % 3 {
                    0 => 1,
                    1 => raw % 4,
                    _ => raw,
                };
                out.extend_from_slice(&v.to_le_bytes());
            }
            Any64 => out.extend_from_slice(&raw.to_le_bytes()),
            Name => {
                out.extend_from_slice(names.next().map_or(&b"x"[..], Vec::as_slice));
                out.push(0);
            }
            Data => out.extend_from_slice(&req.data),
            Forgets => {
                let n = sel % 4;
                let count = if sel & 0x80 != 0 {
                    raw as u32
                } else {
                    u32::from(n)
                };
                u32_(count);
                u32_(0);
                for i in 0..n {
                    let seed = (sel.wrapping_add(i), raw.rotate_left(u32::from(i)));
                    out.extend_from_slice(&known.node(seed).to_le_bytes());
                    out.extend_from_slice(&(raw % 3).to_le_bytes());
                }
            }
        }
    }
    out.extend_from_slice(&req.trailing);
    out
}

const OPEN_FLAGS: [u32; 7] = [
    libc::O_RDONLY as u32,
    libc::O_WRONLY as u32,
    libc::O_RDWR as u32,
    (libc::O_RDWR | libc::O_TRUNC) as u32,
    (libc::O_WRONLY | libc::O_APPEND) as u32,
    (libc::O_RDONLY | libc::O_DIRECTORY) as u32,
    (libc::O_RDWR | libc::O_CREAT | libc::O_EXCL) as u32,
];

/// The whole request: header and body.
pub(super) fn encode(req: &Req, unique: u64, known: &Known) -> Vec<u8> {
    let body = body(req, known);
    let right = (40 + body.len()) as u32;
    let len = match req.len.0 {
        0 => right,
        1 => right.saturating_sub(req.len.1 % 48 + 1),
        2 => right.saturating_add(req.len.1 % 64 + 1),
        _ => req.len.1,
    };
    let (uid, gid) = match req.creds.0 {
        0 => (0, 0),
        1 => (1000, 1000),
        _ => (req.creds.1, req.creds.1.rotate_left(16)),
    };
    let mut out = Vec::with_capacity(40 + body.len());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&req.op.to_le_bytes());
    out.extend_from_slice(&unique.to_le_bytes());
    out.extend_from_slice(&known.node(req.node).to_le_bytes());
    out.extend_from_slice(&uid.to_le_bytes());
    out.extend_from_slice(&gid.to_le_bytes());
    out.extend_from_slice(&4242u32.to_le_bytes());
    out.extend_from_slice(&req.total_extlen.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&body);
    out
}
