//! Overlay tests on temporary directories: snapshot, changes, diffs, apply with conflicts and
//! planted symlinks, the policy re-check, discard.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::*;

/// Every entry below `root` (never following symlinks): kind, permission bits, and the
/// contents' hash or the link target.
fn listing(root: &Path) -> BTreeMap<String, String> {
    fn walk(root: &Path, rel: &Path, out: &mut BTreeMap<String, String>) {
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

fn field<'v>(v: &'v serde_json::Value, key: &str) -> &'v serde_json::Value {
    v.get(key).unwrap_or_else(|| panic!("no {key} in {v}"))
}

fn write(path: &Path, data: impl AsRef<[u8]>) {
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p).unwrap();
    }
    std::fs::write(path, data).unwrap();
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A workspace with text and binary files, an executable, nested directories, symlinks
/// inside and outside, and a FIFO.
struct Fixture {
    _tmp: tempfile::TempDir,
    host: PathBuf,
    state: PathBuf,
    outside: PathBuf,
}

impl Fixture {
    fn new() -> Self {
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

    fn create(&self) -> Overlay {
        Overlay::create(&self.host, &self.state, None).unwrap()
    }
}

fn summary(changes: &[Change]) -> Vec<(String, ChangeKind, EntryKind)> {
    changes
        .iter()
        .map(|c| (c.path.clone(), c.kind, c.entry))
        .collect()
}

fn ch(path: &str, kind: ChangeKind, entry: EntryKind) -> (String, ChangeKind, EntryKind) {
    (path.to_owned(), kind, entry)
}

/// The usual edits, made directly in the copy.
fn edit(upper: &Path) {
    write(&upper.join("a.txt"), "one\nTWO\nthree\n");
    write(&upper.join("new.txt"), "brand new\n");
    std::fs::remove_file(upper.join("sub/x.txt")).unwrap();
    std::fs::remove_dir_all(upper.join("gone")).unwrap();
    chmod(&upper.join("run.sh"), 0o644);
    std::fs::remove_file(upper.join("link_in")).unwrap();
    symlink("new.txt", upper.join("link_in")).unwrap();
}

fn edited_changes() -> Vec<(String, ChangeKind, EntryKind)> {
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

fn without_pipe(mut l: BTreeMap<String, String>) -> BTreeMap<String, String> {
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
fn apply_makes_the_host_match_the_copy() {
    let f = Fixture::new();
    let ov = f.create();
    edit(ov.upper());
    let report = ov.apply(&ApplyGuard::allow_all(), false).unwrap();
    let mut expected: Vec<String> = edited_changes().into_iter().map(|c| c.0).collect();
    expected.sort();
    assert_eq!(
        report,
        ApplyReport {
            applied: expected,
            conflicts: vec![],
            denied: vec![],
        }
    );
    assert_eq!(listing(ov.upper()), without_pipe(listing(&f.host)));
    // the FIFO was never copied and is left alone
    assert!(
        std::fs::symlink_metadata(f.host.join("pipe"))
            .unwrap()
            .file_type()
            .is_fifo()
    );
    // no temporary files left behind
    assert!(
        listing(&f.host)
            .keys()
            .all(|k| !k.contains(".airlock-apply"))
    );
    // applying again finds everything in place
    let again = ov.apply(&ApplyGuard::allow_all(), false).unwrap();
    assert_eq!(again.conflicts, vec![]);
    assert_eq!(again.applied.len(), report.applied.len());
}

use std::os::unix::fs::FileTypeExt;

#[test]
fn a_file_changed_on_the_host_is_a_conflict_unless_forced() {
    let f = Fixture::new();
    let ov = f.create();
    edit(ov.upper());
    write(&f.host.join("a.txt"), "edited on the host\n");
    write(&f.host.join("new.txt"), "also made on the host\n");
    std::fs::remove_file(f.host.join("sub/x.txt")).unwrap();
    write(&f.host.join("gone/inner/host-made.txt"), "keep me\n");

    let report = ov.apply(&ApplyGuard::allow_all(), false).unwrap();
    let conflicts: Vec<(&str, ConflictReason)> = report
        .conflicts
        .iter()
        .map(|c| (c.path.as_str(), c.reason))
        .collect();
    assert_eq!(
        conflicts,
        vec![
            ("a.txt", ConflictReason::ChangedOnHost),
            ("gone", ConflictReason::DirectoryNotEmpty),
            ("gone/inner", ConflictReason::DirectoryNotEmpty),
            ("new.txt", ConflictReason::CreatedOnHost),
        ]
    );
    // x.txt was deleted on both sides: already as wanted
    assert!(report.applied.contains(&"sub/x.txt".to_owned()));
    assert!(report.applied.contains(&"run.sh".to_owned()));
    assert_eq!(
        std::fs::read_to_string(f.host.join("a.txt")).unwrap(),
        "edited on the host\n"
    );
    assert_eq!(
        std::fs::read_to_string(f.host.join("new.txt")).unwrap(),
        "also made on the host\n"
    );
    assert_eq!(
        std::fs::read_to_string(f.host.join("gone/inner/host-made.txt")).unwrap(),
        "keep me\n"
    );

    // force overwrites the files, but never removes what the host added to a directory
    let report = ov.apply(&ApplyGuard::allow_all(), true).unwrap();
    let conflicts: Vec<&str> = report.conflicts.iter().map(|c| c.path.as_str()).collect();
    assert_eq!(conflicts, vec!["gone", "gone/inner"]);
    assert_eq!(
        std::fs::read_to_string(f.host.join("a.txt")).unwrap(),
        "one\nTWO\nthree\n"
    );
    assert_eq!(
        std::fs::read_to_string(f.host.join("new.txt")).unwrap(),
        "brand new\n"
    );
    assert!(f.host.join("gone/inner/host-made.txt").exists());
    assert!(!f.host.join("gone/g1.txt").exists());
}

#[test]
fn a_file_deleted_on_the_host_is_a_conflict() {
    let f = Fixture::new();
    let ov = f.create();
    write(&ov.upper().join("a.txt"), "changed\n");
    std::fs::remove_file(f.host.join("a.txt")).unwrap();
    let report = ov.apply(&ApplyGuard::allow_all(), false).unwrap();
    assert_eq!(
        report.conflicts,
        vec![Conflict {
            path: "a.txt".to_owned(),
            reason: ConflictReason::DeletedOnHost
        }]
    );
    assert!(!f.host.join("a.txt").exists());
}

#[test]
fn apply_never_follows_a_symlink_planted_on_the_host() {
    let f = Fixture::new();
    let ov = f.create();
    write(&ov.upper().join("sub/nested/deep.txt"), "guest edit\n");
    write(&ov.upper().join("sub/new.txt"), "guest new\n");
    std::fs::remove_file(ov.upper().join("sub/x.txt")).unwrap();
    write(&ov.upper().join("sub/nested/more/evil.txt"), "evil\n");

    // after the snapshot, `sub` on the host becomes a link to a directory outside, laid out
    // the same way
    let trap = f.outside.join("trap");
    write(&trap.join("x.txt"), "x\n");
    write(&trap.join("nested/deep.txt"), "deep\n");
    let trap_before = listing(&f.outside);
    std::fs::remove_dir_all(f.host.join("sub")).unwrap();
    symlink(&trap, f.host.join("sub")).unwrap();

    for force in [false, true] {
        let report = ov.apply(&ApplyGuard::allow_all(), force).unwrap();
        let mut conflicts: Vec<(&str, ConflictReason)> = report
            .conflicts
            .iter()
            .map(|c| (c.path.as_str(), c.reason))
            .collect();
        conflicts.sort();
        assert_eq!(
            conflicts,
            vec![
                ("sub/nested/deep.txt", ConflictReason::ParentNotDirectory),
                ("sub/nested/more", ConflictReason::ParentNotDirectory),
                (
                    "sub/nested/more/evil.txt",
                    ConflictReason::ParentNotDirectory
                ),
                ("sub/new.txt", ConflictReason::ParentNotDirectory),
                ("sub/x.txt", ConflictReason::ParentNotDirectory),
            ],
            "force = {force}"
        );
        assert_eq!(listing(&f.outside), trap_before, "nothing written outside");
    }
    // a file replaced by a symlink is a changed file: never written through
    let ov2_state = f.state.with_file_name("sbx-2");
    let ov2 = Overlay::create(&f.host, &ov2_state, None).unwrap();
    write(&ov2.upper().join("a.txt"), "through the link?\n");
    std::fs::remove_file(f.host.join("a.txt")).unwrap();
    symlink(f.outside.join("secret"), f.host.join("a.txt")).unwrap();
    let report = ov2.apply(&ApplyGuard::allow_all(), false).unwrap();
    assert_eq!(
        report.conflicts.first().unwrap().reason,
        ConflictReason::ChangedOnHost
    );
    // with force the link itself is replaced, its target untouched
    ov2.apply(&ApplyGuard::allow_all(), true).unwrap();
    assert_eq!(
        std::fs::read_to_string(f.outside.join("secret")).unwrap(),
        "outside secret\n"
    );
    assert!(
        std::fs::symlink_metadata(f.host.join("a.txt"))
            .unwrap()
            .is_file()
    );
}

#[test]
fn apply_refuses_what_the_policy_protects() {
    let f = Fixture::new();
    write(&f.host.join("Cargo.lock"), "locked\n");
    let ov = f.create();
    // Written into the copy behind the gateway's back: apply must still refuse them.
    write(
        &ov.upper().join(".git/hooks/pre-commit"),
        "#!/bin/sh\nevil\n",
    );
    write(&ov.upper().join(".claude/settings.json"), "{}\n");
    write(&ov.upper().join("Cargo.lock"), "unlocked\n");
    symlink(
        f.host.canonicalize().unwrap().join(".git/config"),
        ov.upper().join("cfg"),
    )
    .unwrap();
    write(&ov.upper().join("fine.txt"), "ok\n");

    let text = format!(
        "[[filesystem.mounts]]\nhost = {:?}\nguest = \"/workspace\"\nmode = \"overlay\"\n\n[filesystem]\ndeny_write = [\"Cargo.lock\"]\n",
        f.host.display().to_string()
    );
    let policy = Arc::new(airlock_policy::load_str(&text, Path::new("/t/policy.toml")).unwrap());
    let guard = ApplyGuard::new(Arc::clone(&policy), "/workspace/", ov.host_dir()).unwrap();
    let report = ov.apply(&guard, true).unwrap();
    let denied: Vec<(&str, &str)> = report
        .denied
        .iter()
        .map(|d| (d.path.as_str(), d.decision.reason))
        .collect();
    assert_eq!(
        denied,
        vec![
            (".claude", "protected_path"),
            (".claude/settings.json", "protected_path"),
            (".git/hooks", "protected_path"),
            (".git/hooks/pre-commit", "protected_path"),
            ("Cargo.lock", "write_denied"),
            ("cfg", "protected_path"),
        ]
    );
    assert_eq!(
        report.applied,
        vec![".git".to_owned(), "fine.txt".to_owned()]
    );
    assert!(!f.host.join(".git/hooks").exists());
    assert!(!f.host.join(".claude").exists());
    assert!(std::fs::symlink_metadata(f.host.join("cfg")).is_err());
    assert_eq!(
        std::fs::read_to_string(f.host.join("Cargo.lock")).unwrap(),
        "locked\n"
    );

    // the guard checks that the policy shares the directory the overlay copied
    let err = ApplyGuard::new(Arc::clone(&policy), "/data", ov.host_dir()).unwrap_err();
    assert!(matches!(err, OverlayError::UnknownMount(_)), "{err}");
    let other = tempfile::tempdir().unwrap();
    let text = format!(
        "[[filesystem.mounts]]\nhost = {:?}\nguest = \"/workspace\"\nmode = \"overlay\"\n",
        other.path().display().to_string()
    );
    let policy = Arc::new(airlock_policy::load_str(&text, Path::new("/t/p.toml")).unwrap());
    let err = ApplyGuard::new(policy, "/workspace", ov.host_dir()).unwrap_err();
    assert!(matches!(err, OverlayError::HostMismatch { .. }), "{err}");
}

#[test]
fn apply_drops_set_id_bits_and_keeps_owners() {
    let f = Fixture::new();
    let ov = f.create();
    write(&ov.upper().join("tool"), "#!/bin/sh\n");
    chmod(&ov.upper().join("tool"), 0o4755);
    let report = ov.apply(&ApplyGuard::allow_all(), false).unwrap();
    assert_eq!(report.applied, vec!["tool".to_owned()]);
    let m = std::fs::metadata(f.host.join("tool")).unwrap();
    assert_eq!(m.mode() & 0o7777, 0o755);
    let dir = std::fs::metadata(&f.host).unwrap();
    assert_eq!((m.uid(), m.gid()), (dir.uid(), dir.gid()));
}

#[test]
fn discard_removes_everything() {
    let f = Fixture::new();
    let ov = f.create();
    edit(ov.upper());
    write(&ov.upper().join("locked/inner/f"), "x");
    chmod(&ov.upper().join("locked/inner"), 0o500);
    chmod(&ov.upper().join("locked"), 0o000);
    let dir = ov.dir().to_owned();
    let before = listing(&f.host);
    ov.discard().unwrap();
    assert!(!dir.exists());
    assert_eq!(listing(&f.host), before);
    assert!(f.outside.join("secret").exists());
}

#[test]
fn refuses_bad_places_and_bad_manifests() {
    let f = Fixture::new();
    // inside the host directory: the guest would see it, the copy would copy itself
    let err = Overlay::create(&f.host, &f.host.join(".airlock/ov"), None).unwrap_err();
    assert!(matches!(err, OverlayError::Nested { .. }), "{err}");
    assert!(
        !f.host.join(".airlock").exists(),
        "nothing created in the host tree"
    );
    let err = Overlay::create(&f.host, f.host.parent().unwrap(), None).unwrap_err();
    assert!(matches!(err, OverlayError::Nested { .. }), "{err}");
    let err = Overlay::create(&f.host, &f.outside, None).unwrap_err();
    assert!(matches!(err, OverlayError::NotEmpty(_)), "{err}");
    let err = Overlay::create(&f.host.join("a.txt"), &f.state, None).unwrap_err();
    assert!(matches!(err, OverlayError::NotADirectory(_)), "{err}");
    let err = Overlay::create(&f.host.join("missing"), &f.state, None).unwrap_err();
    assert!(matches!(err, OverlayError::HostDir { .. }), "{err}");
    assert!(!f.state.exists());

    // an empty existing directory is fine
    std::fs::create_dir_all(&f.state).unwrap();
    let ov = f.create();
    let err = Overlay::create(&f.host, &f.state, None).unwrap_err();
    assert!(matches!(err, OverlayError::NotEmpty(_)), "{err}");

    let err = Overlay::open(&f.host).unwrap_err();
    assert!(matches!(err, OverlayError::Io { .. }), "{err}");
    assert!(err.to_string().contains("manifest.json"), "{err}");
    let err = Overlay::open_upper(&f.host).unwrap_err();
    assert!(matches!(err, OverlayError::NotAnUpper(_)), "{err}");

    let path = ov.dir().join(MANIFEST_FILE);
    let good = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, good.replace("\"a.txt\"", "\"../a.txt\"")).unwrap();
    let err = Overlay::open(ov.dir()).unwrap_err();
    assert!(matches!(err, OverlayError::ManifestPath { .. }), "{err}");
    std::fs::write(&path, good.replace("\"version\": 1", "\"version\": 7")).unwrap();
    let err = Overlay::open(ov.dir()).unwrap_err();
    assert!(
        matches!(err, OverlayError::ManifestVersion { found: 7, .. }),
        "{err}"
    );
    std::fs::write(&path, "{").unwrap();
    let err = Overlay::open(ov.dir()).unwrap_err();
    assert!(matches!(err, OverlayError::Manifest { .. }), "{err}");
}

#[test]
fn unreadable_host_entries_are_skipped_unless_we_are_root() {
    let f = Fixture::new();
    write(&f.host.join("private/key"), "k\n");
    write(&f.host.join("locked.txt"), "l\n");
    chmod(&f.host.join("locked.txt"), 0o000);
    chmod(&f.host.join("private"), 0o000);
    let ov = f.create();
    chmod(&f.host.join("private"), 0o755);
    let mut reasons: Vec<(&str, &str)> = ov
        .skipped()
        .iter()
        .map(|s| (s.path.as_str(), s.reason.as_str()))
        .collect();
    reasons.sort();
    if nix::unistd::geteuid().is_root() {
        // root reads everything: copied like any other file
        assert_eq!(reasons, vec![("pipe", "fifo")]);
        assert!(ov.upper().join("private/key").exists());
    } else {
        assert_eq!(
            reasons,
            vec![
                ("locked.txt", "unreadable"),
                ("pipe", "fifo"),
                ("private", "unreadable")
            ]
        );
        assert!(!ov.upper().join("locked.txt").exists());
        assert!(!ov.upper().join("private").exists());
    }
    assert!(ov.changes().unwrap().is_empty());
}
