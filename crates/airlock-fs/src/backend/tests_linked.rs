//! GatedFs tests: `deny_read` by identity (`linked.rs`), hard links made on the host before
//! and after the gateway started, and an identity that moved on.

use std::fs;

use super::tests::*;
use super::*;
use crate::reason;
use airlock_policy::MountMode;
use airlock_policy::reason::READ_DENIED;

const ENV_RULE: &str = "filesystem.deny_read[0] \".env\"";
const SECRETS_RULE: &str = "filesystem.deny_read[1] \"secrets/**\"";

fn seeded(seed: impl FnOnce(&std::path::Path)) -> Fixture {
    fixture_seeded(MountMode::Rw, u64::MAX, DEFAULT_MAX_RESIDENT, seed)
}

#[test]
fn hard_links_made_before_start_are_refused_under_every_name() {
    let f = seeded(|root| {
        fs::write(root.join(".env"), "TOKEN=secret").unwrap();
        fs::hard_link(root.join(".env"), root.join("notes.txt")).unwrap();
        fs::create_dir_all(root.join("secrets")).unwrap();
        fs::create_dir_all(root.join("src/deep")).unwrap();
        fs::write(root.join("secrets/key.pem"), "KEY").unwrap();
        fs::hard_link(root.join("secrets/key.pem"), root.join("src/deep/key.txt")).unwrap();
        // Links between files nothing refuses stay readable.
        fs::write(root.join("a.txt"), "plain").unwrap();
        fs::hard_link(root.join("a.txt"), root.join("b.txt")).unwrap();
    });
    let notes = f.lookup(ROOT, "notes.txt").unwrap();
    assert_eq!(errno(f.open(notes, libc::O_RDONLY)), libc::EACCES);
    assert_eq!(errno(f.open(notes, libc::O_RDWR)), libc::EACCES);
    let src = f.lookup(ROOT, "src").unwrap();
    let deep = f.lookup(src, "deep").unwrap();
    let key = f.lookup(deep, "key.txt").unwrap();
    assert_eq!(errno(f.open(key, libc::O_RDONLY)), libc::EACCES);
    let b = f.lookup(ROOT, "b.txt").unwrap();
    f.open(b, libc::O_RDONLY).unwrap();
    assert_eq!(
        f.events(),
        vec![
            deny(
                kind::FS_OPEN,
                "notes.txt",
                ENV_RULE,
                reason::LINKED_TO_DENIED
            ),
            deny(
                kind::FS_OPEN,
                "notes.txt",
                ENV_RULE,
                reason::LINKED_TO_DENIED
            ),
            deny(
                kind::FS_OPEN,
                "src/deep/key.txt",
                SECRETS_RULE,
                reason::LINKED_TO_DENIED
            ),
        ]
    );
    // deny_read does not refuse writing, under either name.
    f.open(notes, libc::O_WRONLY).unwrap();
    assert_eq!(fs::read_to_string(f.host(".env")).unwrap(), "TOKEN=secret");
}

#[test]
fn a_link_made_during_the_run_is_refused_once_the_refused_name_was_tried() {
    let f = fixture(MountMode::Rw);
    fs::write(f.host(".env"), "TOKEN=secret").unwrap();
    let env = f.lookup(ROOT, ".env").unwrap();
    assert_eq!(errno(f.open(env, libc::O_RDONLY)), libc::EACCES);
    fs::hard_link(f.host(".env"), f.host("late.txt")).unwrap();
    let late = f.lookup(ROOT, "late.txt").unwrap();
    // The guest holds both names of one node now: refused by name as well as by identity.
    assert_eq!(errno(f.open(late, libc::O_RDONLY)), libc::EACCES);
    let events = f.events();
    assert_eq!(events.last().map(|e| e.5), Some(READ_DENIED), "{events:?}");
    // A fresh session knows only the new name.
    f.fs.init(virtiofsd::filesystem::FsOptions::empty())
        .unwrap();
    let late = f.lookup(ROOT, "late.txt").unwrap();
    assert_eq!(errno(f.open(late, libc::O_RDONLY)), libc::EACCES);
    assert_eq!(
        f.events(),
        vec![deny(
            kind::FS_OPEN,
            "late.txt",
            ENV_RULE,
            reason::LINKED_TO_DENIED
        )]
    );
}

#[test]
fn a_refused_file_renamed_on_the_host_is_judged_by_its_new_name() {
    let f = seeded(|root| fs::write(root.join(".env"), "TOKEN=secret").unwrap());
    // The walk learnt `.env`; the host then renames it (no second name ever existed).
    fs::rename(f.host(".env"), f.host("env.example")).unwrap();
    let moved = f.lookup(ROOT, "env.example").unwrap();
    f.open(moved, libc::O_RDONLY).unwrap();
    assert_eq!(f.events(), vec![]);
}

#[test]
fn a_hard_link_to_a_protected_file_cannot_change_it() {
    let f = seeded(|root| {
        fs::create_dir_all(root.join(".git/hooks")).unwrap();
        fs::write(root.join(".git/hooks/pre-commit"), "#!/bin/sh\nexit 0\n").unwrap();
        fs::hard_link(root.join(".git/hooks/pre-commit"), root.join("hook.sh")).unwrap();
        fs::write(root.join("Cargo.lock"), "# lock\n").unwrap();
        fs::hard_link(root.join("Cargo.lock"), root.join("lock-copy")).unwrap();
    });
    let hook = f.lookup(ROOT, "hook.sh").unwrap();
    // Reading is fine: the hook is protected from change, not secret.
    f.open(hook, libc::O_RDONLY).unwrap();
    assert_eq!(errno(f.open(hook, libc::O_WRONLY)), libc::EACCES);
    assert_eq!(
        errno(f.open(hook, libc::O_RDONLY | libc::O_TRUNC)),
        libc::EACCES
    );
    let chmod = virtiofsd::fuse::SetattrIn {
        mode: 0o755,
        ..Default::default()
    };
    let valid = virtiofsd::filesystem::SetattrValid::MODE;
    assert_eq!(
        errno(f.fs.setattr(ctx(), hook, chmod, None, valid)),
        libc::EACCES
    );
    let lock = f.lookup(ROOT, "lock-copy").unwrap();
    assert_eq!(errno(f.open(lock, libc::O_RDWR)), libc::EACCES);
    let refused = |op, path: &str, rule: &str| deny(op, path, rule, reason::LINKED_TO_DENIED);
    let events: Vec<Ev> = f
        .events()
        .into_iter()
        .filter(|e| e.3 == airlock_policy::Verdict::Deny)
        .collect();
    assert_eq!(
        events,
        vec![
            refused(kind::FS_OPEN, "hook.sh", PROT_HOOKS),
            refused(kind::FS_OPEN, "hook.sh", PROT_HOOKS),
            refused(kind::FS_SETATTR, "hook.sh", PROT_HOOKS),
            refused(
                kind::FS_OPEN,
                "lock-copy",
                "filesystem.deny_write[0] \"Cargo.lock\""
            ),
        ]
    );
    assert_eq!(
        fs::read_to_string(f.host(".git/hooks/pre-commit")).unwrap(),
        "#!/bin/sh\nexit 0\n"
    );
}
