//! Overlay tests on temporary directories: snapshot, changes, diffs, apply with conflicts and
//! planted symlinks, the policy re-check, discard.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::*;

/// Every entry below `root` (never following symlinks): kind, permission bits, and the
/// contents' hash or the link target.
pub(super) fn listing(root: &Path) -> BTreeMap<String, String> {
    pub(super) fn walk(root: &Path, rel: &Path, out: &mut BTreeMap<String, String>) {
        let mut names: Vec<_> = std::fs::read_dir(root.join(rel))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        for name in names {
            let rel = rel.join(&name);
            let path = root.join(&rel);
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let mode = meta.mode() & 0o7777;
            let key = rel.to_str().unwrap().to_owned();
            let ft = meta.file_type();
            let value = if ft.is_symlink() {
                format!("link {}", std::fs::read_link(&path).unwrap().display())
            } else if ft.is_dir() {
                walk(root, &rel, out);
                format!("dir {mode:o}")
            } else if ft.is_file() {
                let data = std::fs::read(&path).unwrap();
                format!("file {mode:o} {}", hex::encode(Sha256::digest(&data)))
            } else {
                "special".to_owned()
            };
            out.insert(key, value);
        }
    }
    let mut out = BTreeMap::new();
    walk(root, Path::new(""), &mut out);
    out
}

pub(super) fn field<'v>(v: &'v serde_json::Value, key: &str) -> &'v serde_json::Value {
    v.get(key).unwrap_or_else(|| panic!("no {key} in {v}"))
}

pub(super) fn write(path: &Path, data: impl AsRef<[u8]>) {
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p).unwrap();
    }
    std::fs::write(path, data).unwrap();
}

pub(super) fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A workspace with text and binary files, an executable, nested directories, symlinks
/// inside and outside, and a FIFO.
pub(super) struct Fixture {
    pub(super) _tmp: tempfile::TempDir,
    pub(super) host: PathBuf,
    pub(super) state: PathBuf,
    pub(super) outside: PathBuf,
}

impl Fixture {
    pub(super) fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let host = tmp.path().join("ws");
        let outside = tmp.path().join("outside");
        let state = tmp.path().join("state/overlays/sbx-1");
        write(&outside.join("secret"), "outside secret\n");
        write(&host.join("a.txt"), "one\ntwo\nthree\n");
        write(&host.join("bin.dat"), [0u8, 1, 2, 3, 0, 255]);
        write(&host.join("run.sh"), "#!/bin/sh\necho hi\n");
        chmod(&host.join("run.sh"), 0o755);
        write(&host.join("sub/x.txt"), "x\n");
        write(&host.join("sub/nested/deep.txt"), "deep\n");
        write(&host.join("gone/g1.txt"), "g1\n");
        write(&host.join("gone/inner/g2.txt"), "g2\n");
        symlink("a.txt", host.join("link_in")).unwrap();
        symlink(outside.join("secret"), host.join("link_out")).unwrap();
        symlink(&outside, host.join("dir_out")).unwrap();
        nix::unistd::mkfifo(
            &host.join("pipe"),
            nix::sys::stat::Mode::from_bits_truncate(0o644),
        )
        .unwrap();
        Fixture {
            _tmp: tmp,
            host,
            state,
            outside,
        }
    }

    pub(super) fn create(&self) -> Overlay {
        Overlay::create(&self.host, &self.state, None).unwrap()
    }
}

pub(super) fn summary(changes: &[Change]) -> Vec<(String, ChangeKind, EntryKind)> {
    changes
        .iter()
        .map(|c| (c.path.clone(), c.kind, c.entry))
        .collect()
}

pub(super) fn ch(
    path: &str,
    kind: ChangeKind,
    entry: EntryKind,
) -> (String, ChangeKind, EntryKind) {
    (path.to_owned(), kind, entry)
}

/// The usual edits, made directly in the copy.
pub(super) fn edit(upper: &Path) {
    write(&upper.join("a.txt"), "one\nTWO\nthree\n");
    write(&upper.join("new.txt"), "brand new\n");
    std::fs::remove_file(upper.join("sub/x.txt")).unwrap();
    std::fs::remove_dir_all(upper.join("gone")).unwrap();
    chmod(&upper.join("run.sh"), 0o644);
    std::fs::remove_file(upper.join("link_in")).unwrap();
    symlink("new.txt", upper.join("link_in")).unwrap();
}

pub(super) fn edited_changes() -> Vec<(String, ChangeKind, EntryKind)> {
    use ChangeKind::*;
    use EntryKind::*;
    vec![
        ch("a.txt", Modified, File),
        ch("gone", Deleted, Dir),
        ch("gone/g1.txt", Deleted, File),
        ch("gone/inner", Deleted, Dir),
        ch("gone/inner/g2.txt", Deleted, File),
        ch("link_in", Modified, Symlink),
        ch("new.txt", Added, File),
        ch("run.sh", Modified, File),
        ch("sub/x.txt", Deleted, File),
    ]
}

pub(super) fn without_pipe(mut l: BTreeMap<String, String>) -> BTreeMap<String, String> {
    l.remove("pipe");
    l
}

#[test]
fn snapshot_copies_the_tree_and_records_it() {
    let f = Fixture::new();
    let mut calls = Vec::new();
    let mut progress = |files, bytes| calls.push((files, bytes));
    let ov = Overlay::create(&f.host, &f.state, Some(&mut progress)).unwrap();

    assert_eq!(ov.upper(), f.state.canonicalize().unwrap().join("upper"));
    assert_eq!(ov.host_dir(), f.host.canonicalize().unwrap());
    assert_eq!(listing(ov.upper()), without_pipe(listing(&f.host)));
    // symlinks are copied as links, never followed
    assert_eq!(
        std::fs::read_link(ov.upper().join("link_out")).unwrap(),
        f.outside.join("secret")
    );
    assert!(
        std::fs::symlink_metadata(ov.upper().join("dir_out"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    // the executable bit and mtimes are kept
    let m = std::fs::metadata(ov.upper().join("run.sh")).unwrap();
    assert_eq!(m.mode() & 0o777, 0o755);
    let hm = std::fs::metadata(f.host.join("sub/nested/deep.txt")).unwrap();
    let um = std::fs::metadata(ov.upper().join("sub/nested/deep.txt")).unwrap();
    assert_eq!((um.mtime(), um.mtime_nsec()), (hm.mtime(), hm.mtime_nsec()));
    let hm = std::fs::metadata(f.host.join("sub")).unwrap();
    let um = std::fs::metadata(ov.upper().join("sub")).unwrap();
    assert_eq!(um.mtime(), hm.mtime());
    // the FIFO is skipped and listed
    assert_eq!(
        ov.skipped(),
        &[Skipped {
            path: "pipe".to_owned(),
            reason: "fifo".to_owned()
        }]
    );
    // 6 files: a.txt bin.dat run.sh sub/x.txt sub/nested/deep.txt gone/g1.txt gone/inner/g2.txt
    let total: u64 = [14u64, 6, 18, 2, 5, 3, 3].iter().sum();
    assert_eq!(calls.last(), Some(&(7, total)));
    assert_eq!(calls.len(), 7);

    // the manifest, as written and as read back
    let text = std::fs::read_to_string(ov.dir().join(MANIFEST_FILE)).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(field(&json, "version"), 1);
    assert_eq!(
        field(&json, "host_dir"),
        f.host.canonicalize().unwrap().to_str().unwrap()
    );
    assert!(field(&json, "created_at").as_str().unwrap().ends_with('Z'));
    let a = field(&json, "entries")
        .as_array()
        .unwrap()
        .iter()
        .find(|e| field(e, "path") == "a.txt")
        .unwrap();
    assert_eq!(field(a, "kind"), "file");
    assert_eq!(field(a, "mode"), 0o644);
    assert_eq!(field(a, "size"), 14);
    assert_eq!(
        field(a, "sha256").as_str(),
        Some(hex::encode(Sha256::digest(b"one\ntwo\nthree\n")).as_str())
    );
    let l = field(&json, "entries")
        .as_array()
        .unwrap()
        .iter()
        .find(|e| field(e, "path") == "link_in")
        .unwrap();
    assert_eq!(field(l, "kind"), "symlink");
    assert_eq!(field(l, "target"), "a.txt");
    let mode = std::fs::metadata(ov.dir().join(MANIFEST_FILE))
        .unwrap()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(std::fs::metadata(ov.dir()).unwrap().mode() & 0o777, 0o700);

    let reopened = Overlay::open(&f.state).unwrap();
    assert_eq!(reopened.manifest.entries, ov.manifest.entries);
    assert_eq!(reopened.created_at(), ov.created_at());
    assert!(reopened.changes().unwrap().is_empty());
    let by_upper = Overlay::open_upper(ov.upper()).unwrap();
    assert_eq!(by_upper.dir(), ov.dir());
}

#[test]
fn changes_list_exactly_the_edits_and_the_host_stays_identical() {
    let f = Fixture::new();
    let before = listing(&f.host);
    let ov = f.create();
    assert!(ov.changes().unwrap().is_empty());
    edit(ov.upper());
    let changes = ov.changes().unwrap();
    assert_eq!(summary(&changes), edited_changes());
    assert_eq!(listing(&f.host), before, "the host tree is untouched");

    let run = changes.iter().find(|c| c.path == "run.sh").unwrap();
    assert_eq!(
        (
            run.before.as_ref().unwrap().mode,
            run.after.as_ref().unwrap().mode
        ),
        (0o755, 0o644)
    );
    let link = changes.iter().find(|c| c.path == "link_in").unwrap();
    assert_eq!(
        link.after.as_ref().unwrap().target.as_deref(),
        Some("new.txt")
    );
}

#[test]
fn changes_see_rewrites_that_keep_size_and_mtime() {
    let f = Fixture::new();
    let ov = f.create();
    let path = ov.upper().join("a.txt");
    let old = std::fs::metadata(&path).unwrap();
    write(&path, "one\ntwX\nthree\n");
    // put the mtime back, as `touch -r` would: the ctime still moves
    let t = std::fs::FileTimes::new().set_modified(old.modified().unwrap());
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_times(t)
        .unwrap();
    assert_eq!(
        summary(&ov.changes().unwrap()),
        vec![ch("a.txt", ChangeKind::Modified, EntryKind::File)]
    );
    // same contents written back: no change
    write(&path, "one\ntwo\nthree\n");
    assert!(ov.changes().unwrap().is_empty());
}

#[test]
fn kind_changes_are_a_deletion_and_an_addition() {
    let f = Fixture::new();
    let ov = f.create();
    std::fs::remove_file(ov.upper().join("bin.dat")).unwrap();
    write(&ov.upper().join("bin.dat/inside"), "now a dir\n");
    std::fs::remove_dir_all(ov.upper().join("sub")).unwrap();
    write(&ov.upper().join("sub"), "now a file\n");
    use ChangeKind::*;
    use EntryKind::*;
    assert_eq!(
        summary(&ov.changes().unwrap()),
        vec![
            ch("bin.dat", Deleted, File),
            ch("bin.dat", Added, Dir),
            ch("bin.dat/inside", Added, File),
            ch("sub", Deleted, Dir),
            ch("sub", Added, File),
            ch("sub/nested", Deleted, Dir),
            ch("sub/nested/deep.txt", Deleted, File),
            ch("sub/x.txt", Deleted, File),
        ]
    );
    let report = ov.apply(&ApplyGuard::allow_all(), false).unwrap();
    assert_eq!(report.conflicts, vec![]);
    assert_eq!(listing(ov.upper()), without_pipe(listing(&f.host)));
}

#[test]
fn unified_diff_of_text_and_binary() {
    let f = Fixture::new();
    let ov = f.create();
    edit(ov.upper());
    write(&ov.upper().join("bin.dat"), [0u8, 9, 9]);
    let changes = ov.changes().unwrap();
    let get = |p: &str| changes.iter().find(|c| c.path == p).unwrap();

    let d = ov.unified_diff(get("a.txt")).unwrap().unwrap();
    assert_eq!(
        d,
        "--- a/a.txt\n+++ b/a.txt\n@@ -1,3 +1,3 @@\n one\n-two\n+TWO\n three\n"
    );
    let d = ov.unified_diff(get("new.txt")).unwrap().unwrap();
    assert_eq!(
        d,
        "--- /dev/null\n+++ b/new.txt\n@@ -0,0 +1 @@\n+brand new\n"
    );
    let d = ov.unified_diff(get("sub/x.txt")).unwrap().unwrap();
    assert_eq!(d, "--- a/sub/x.txt\n+++ /dev/null\n@@ -1 +0,0 @@\n-x\n");
    assert_eq!(ov.unified_diff(get("bin.dat")).unwrap(), None);
    assert_eq!(ov.unified_diff(get("link_in")).unwrap(), None);
    assert_eq!(ov.unified_diff(get("gone")).unwrap(), None);
    // mode only: no content change
    assert_eq!(ov.unified_diff(get("run.sh")).unwrap().as_deref(), Some(""));

    // too large for a text diff
    let big = "line\n".repeat(usize::try_from(MAX_DIFF_BYTES / 5 + 1).unwrap());
    write(&ov.upper().join("a.txt"), big);
    let changes = ov.changes().unwrap();
    let a = changes.iter().find(|c| c.path == "a.txt").unwrap();
    assert_eq!(ov.unified_diff(a).unwrap(), None);
}

#[test]
fn snapshot_keeps_hard_links_as_one_file() {
    let f = Fixture::new();
    std::fs::hard_link(f.host.join("a.txt"), f.host.join("a-again.txt")).unwrap();
    std::fs::hard_link(f.host.join("a.txt"), f.host.join("sub/a-third.txt")).unwrap();
    let ov = f.create();
    let ino = |rel: &str| std::fs::metadata(ov.upper().join(rel)).unwrap().ino();
    assert_eq!(ino("a.txt"), ino("a-again.txt"));
    assert_eq!(ino("a.txt"), ino("sub/a-third.txt"));
    assert_ne!(ino("a.txt"), ino("sub/x.txt"));
    // Linking did not make the first name look changed.
    assert!(ov.changes().unwrap().is_empty());
    // A write through one name is a change of every name, as on the host.
    std::fs::write(ov.upper().join("a-again.txt"), "rewritten").unwrap();
    let mut paths: Vec<String> = ov.changes().unwrap().into_iter().map(|c| c.path).collect();
    paths.sort();
    assert_eq!(paths, ["a-again.txt", "a.txt", "sub/a-third.txt"]);
}

#[test]
fn a_walk_passes_over_a_directory_that_vanishes_before_it_is_entered() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("gone/inner/f.txt"), "x");
    write(&dir.path().join("kept/g.txt"), "y");
    let t = tree::Tree::open(dir.path()).unwrap();
    let mut seen = Vec::new();
    let root = dir.path().to_owned();
    tree::walk(
        &t,
        |v: tree::Visit<'_>| -> Result<bool, std::io::Error> {
            let rel = tree::join(v.parent, std::str::from_utf8(v.name).unwrap());
            if rel == "gone" {
                // Removed after its parent was listed, before the walk opens it.
                std::fs::remove_dir_all(root.join("gone")).unwrap();
            }
            seen.push(rel);
            Ok(true)
        },
        |_, _, e| e,
    )
    .unwrap();
    assert_eq!(seen, ["gone", "kept", "kept/g.txt"]);
}
