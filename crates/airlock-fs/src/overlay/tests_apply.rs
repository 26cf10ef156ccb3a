//! Overlay tests: apply (conflicts, planted symlinks, the policy re-check, set-ID bits), discard, bad places and manifests, unreadable entries.

use super::tests::*;
use super::*;
use std::os::unix::fs::{MetadataExt, symlink};
use std::path::Path;
use std::sync::Arc;

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
