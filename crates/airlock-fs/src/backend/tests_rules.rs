//! GatedFs tests: symlinks, events, deny_read/deny_write, read-only shares, device nodes and set-ID bits, listings, init.

use super::tests::*;
use super::*;
use crate::reason;
use airlock_policy::reason::{ALLOWED, READ_DENIED, READ_ONLY_MOUNT, WRITE_DENIED};
use airlock_policy::{MountMode, Verdict};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use virtiofsd::filesystem::DirectoryIterator;
use virtiofsd::filesystem::{Extensions, FileSystem, FsOptions, SetattrValid};

#[test]
fn symlinks_never_lead_out_of_the_share() {
    let f = fixture(MountMode::Rw);
    let outside_dir = f.outside.parent().unwrap().join("outside-dir");
    fs::create_dir(&outside_dir).unwrap();
    fs::write(outside_dir.join("secret.txt"), "host secret").unwrap();
    std::os::unix::fs::symlink(&f.outside, f.host("escape")).unwrap();
    std::os::unix::fs::symlink(&outside_dir, f.host("escape-dir")).unwrap();
    std::os::unix::fs::symlink("../host-secret.txt", f.host("escape-rel")).unwrap();

    for name in ["escape", "escape-rel"] {
        let e = f.fs.lookup(ctx(), ROOT, &c(name)).unwrap();
        // the node is the link itself, not what it points to
        assert_eq!(e.attr.mode & libc::S_IFMT, libc::S_IFLNK, "{name}");
        // PassthroughFs opens only regular files and directories: a link node is EBADF
        assert_eq!(errno(f.open(e.inode, libc::O_RDONLY)), libc::EBADF);
        assert_eq!(errno(f.open(e.inode, libc::O_WRONLY)), libc::EBADF);
        assert!(f.fs.opendir(ctx(), e.inode, 0).is_err());
        // readlink returns the text of the link, which is the guest's to resolve
        let target = f.fs.readlink(ctx(), e.inode).unwrap();
        assert!(target.ends_with(b"host-secret.txt"));
    }
    // a link to a directory is not followed as a parent either
    let dir_link = f.lookup(ROOT, "escape-dir").unwrap();
    assert_eq!(errno(f.lookup(dir_link, "secret.txt")), libc::ENOTDIR);
    assert!(f.mkdir(dir_link, "x").is_err());
    assert!(f.create(dir_link, "x").is_err());
    assert!(!outside_dir.join("x").exists());
    // `..` from the root is refused by name, never resolved
    assert_eq!(errno(f.lookup(ROOT, "..")), libc::EINVAL);
    assert_eq!(fs::read_to_string(&f.outside).unwrap(), "host secret");
}

#[test]
fn allowed_changes_are_events_with_the_mount_rule() {
    let f = fixture(MountMode::Rw);
    let src = f.mkdir(ROOT, "src").unwrap();
    let main = f.create(src, "main.rs").unwrap();
    f.open(main, libc::O_WRONLY | libc::O_TRUNC).unwrap();
    f.open(main, libc::O_RDONLY).unwrap();
    let attr = virtiofsd::fuse::SetattrIn {
        mode: 0o600,
        ..Default::default()
    };
    f.fs.setattr(ctx(), main, attr, None, SetattrValid::MODE)
        .unwrap();
    let r = f.fs.symlink(
        ctx(),
        &c("main.rs"),
        src,
        &c("lib.rs"),
        Extensions::default(),
    );
    r.unwrap();
    f.fs.rename(ctx(), src, &c("main.rs"), ROOT, &c("main.rs"), 0)
        .unwrap();
    f.fs.link(ctx(), main, src, &c("again.rs")).unwrap();
    f.fs.unlink(ctx(), src, &c("again.rs")).unwrap();
    f.fs.unlink(ctx(), src, &c("lib.rs")).unwrap();
    f.fs.rmdir(ctx(), ROOT, &c("src")).unwrap();
    let mut rename = allow(kind::FS_RENAME, "src/main.rs");
    rename.2 = Some("main.rs".to_owned());
    let mut link = allow(kind::FS_LINK, "main.rs");
    link.2 = Some("src/again.rs".to_owned());
    let mut symlink = allow(kind::FS_SYMLINK, "src/lib.rs");
    symlink.2 = Some("main.rs".to_owned());
    assert_eq!(
        f.events(),
        vec![
            allow(kind::FS_MKDIR, "src"),
            allow(kind::FS_CREATE, "src/main.rs"),
            allow(kind::FS_WRITE, "src/main.rs"),
            allow(kind::FS_SETATTR, "src/main.rs"),
            symlink,
            rename,
            link,
            allow(kind::FS_UNLINK, "src/again.rs"),
            allow(kind::FS_UNLINK, "src/lib.rs"),
            allow(kind::FS_UNLINK, "src"),
        ]
    );
    assert!(f.host("main.rs").is_file());
    assert_eq!(
        fs::metadata(f.host("main.rs"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
}

#[test]
fn events_follow_renamed_ancestors() {
    let f = fixture(MountMode::Rw);
    fs::create_dir(f.host("c")).unwrap();
    fs::write(f.host("c/f"), "x").unwrap();
    let dir = f.lookup(ROOT, "c").unwrap();
    let file = f.lookup(dir, "f").unwrap();
    f.fs.rename(ctx(), ROOT, &c("c"), ROOT, &c("d"), 0).unwrap();
    f.events();
    f.open(file, libc::O_WRONLY).unwrap();
    assert_eq!(f.events(), vec![allow(kind::FS_WRITE, "d/f")]);
    assert_eq!(f.fs.paths_of(file).unwrap(), vec!["d/f"]);
}

#[test]
fn deny_read_and_deny_write() {
    let f = fixture(MountMode::Rw);
    fs::write(f.host(".env"), "TOKEN=1").unwrap();
    fs::create_dir(f.host("secrets")).unwrap();
    fs::write(f.host("secrets/key"), "k").unwrap();
    fs::write(f.host("Cargo.lock"), "lock").unwrap();
    let env = f.lookup(ROOT, ".env").unwrap();
    let secrets = f.lookup(ROOT, "secrets").unwrap();
    let key = f.lookup(secrets, "key").unwrap();
    let lock = f.lookup(ROOT, "Cargo.lock").unwrap();
    // names stay visible (lookup and getattr work), contents do not
    f.fs.getattr(ctx(), env, None).unwrap();
    assert_eq!(errno(f.open(env, libc::O_RDONLY)), libc::EACCES);
    assert_eq!(errno(f.open(key, libc::O_RDWR)), libc::EACCES);
    assert_eq!(errno(f.fs.opendir(ctx(), secrets, 0)), libc::EACCES);
    // the root listing still shows them
    let (handle, _) = f.fs.opendir(ctx(), ROOT, 0).unwrap();
    let mut names = Vec::new();
    let mut dir = f.fs.readdir(ctx(), ROOT, handle.unwrap(), 4096, 0).unwrap();
    while let Some(e) = dir.next() {
        names.push(e.name.to_string_lossy().into_owned());
    }
    names.sort();
    assert_eq!(names, vec![".", "..", ".env", "Cargo.lock", "secrets"]);
    // unlinking a secret does not make the still-known node readable
    f.fs.unlink(ctx(), ROOT, &c(".env")).unwrap();
    assert_eq!(errno(f.open(env, libc::O_RDONLY)), libc::EACCES);
    // deny_write
    f.open(lock, libc::O_RDONLY).unwrap();
    assert_eq!(errno(f.open(lock, libc::O_WRONLY)), libc::EACCES);
    let events = f.events();
    let summary: Vec<_> = events
        .iter()
        .map(|e| (e.0, e.1.as_str(), e.3, e.5))
        .collect();
    assert_eq!(
        summary,
        vec![
            (kind::FS_OPEN, ".env", Verdict::Deny, READ_DENIED),
            (kind::FS_WRITE, "secrets/key", Verdict::Deny, READ_DENIED),
            (kind::FS_OPEN, "secrets", Verdict::Deny, READ_DENIED),
            (kind::FS_UNLINK, ".env", Verdict::Allow, ALLOWED),
            (kind::FS_OPEN, ".env", Verdict::Deny, READ_DENIED),
            (kind::FS_WRITE, "Cargo.lock", Verdict::Deny, WRITE_DENIED),
        ]
    );
}

#[test]
fn ro_share_refuses_every_change() {
    let f = fixture(MountMode::Ro);
    fs::write(f.host("notes.txt"), "n").unwrap();
    fs::create_dir(f.host("d")).unwrap();
    let notes = f.lookup(ROOT, "notes.txt").unwrap();
    let d = f.lookup(ROOT, "d").unwrap();
    f.open(notes, libc::O_RDONLY).unwrap();
    assert_eq!(errno(f.open(notes, libc::O_WRONLY)), libc::EROFS);
    assert_eq!(
        errno(f.open(notes, libc::O_RDONLY | libc::O_TRUNC)),
        libc::EROFS
    );
    assert_eq!(errno(f.create(ROOT, "new")), libc::EROFS);
    assert_eq!(errno(f.mkdir(ROOT, "new")), libc::EROFS);
    assert_eq!(
        errno(f.fs.unlink(ctx(), ROOT, &c("notes.txt"))),
        libc::EROFS
    );
    assert_eq!(errno(f.fs.rmdir(ctx(), ROOT, &c("d"))), libc::EROFS);
    assert_eq!(
        errno(f.fs.rename(ctx(), ROOT, &c("notes.txt"), d, &c("n"), 0)),
        libc::EROFS
    );
    assert_eq!(errno(f.fs.link(ctx(), notes, d, &c("n"))), libc::EROFS);
    let r =
        f.fs.symlink(ctx(), &c("x"), ROOT, &c("l"), Extensions::default());
    assert_eq!(errno(r), libc::EROFS);
    let attr = virtiofsd::fuse::SetattrIn::default();
    assert_eq!(
        errno(f.fs.setattr(ctx(), notes, attr, None, SetattrValid::MTIME)),
        libc::EROFS
    );
    let events = f.events();
    assert_eq!(events.len(), 10);
    assert!(
        events
            .iter()
            .all(|e| e.3 == Verdict::Deny && e.5 == READ_ONLY_MOUNT && e.4 == MOUNT0)
    );
    assert_eq!(fs::read_dir(&f.root).unwrap().count(), 2);
}

#[test]
fn device_nodes_and_setid_bits_are_refused() {
    let f = fixture(MountMode::Rw);
    let dev = libc::makedev(8, 0);
    let rdev = u32::try_from(dev).unwrap();
    for mode in [libc::S_IFCHR | 0o666, libc::S_IFBLK | 0o666] {
        let r = f.fs.mknod(
            ctx(),
            ROOT,
            &c("disk"),
            mode,
            rdev,
            0,
            Extensions::default(),
        );
        assert_eq!(errno(r), libc::EPERM);
    }
    let r =
        f.fs.rename(ctx(), ROOT, &c("a"), ROOT, &c("b"), libc::RENAME_WHITEOUT);
    assert_eq!(errno(r), libc::EINVAL);
    let flags = (libc::O_WRONLY | libc::O_CREAT) as u32;
    let r = f.fs.create(
        ctx(),
        ROOT,
        &c("suid"),
        0o4755,
        false,
        flags,
        0,
        Extensions::default(),
    );
    assert_eq!(errno(r), libc::EPERM);
    let file = f.create(ROOT, "tool").unwrap();
    let attr = virtiofsd::fuse::SetattrIn {
        mode: 0o6755,
        ..Default::default()
    };
    assert_eq!(
        errno(f.fs.setattr(ctx(), file, attr, None, SetattrValid::MODE)),
        libc::EPERM
    );
    // set-group-ID on a directory is ordinary
    let dir = f.mkdir(ROOT, "shared").unwrap();
    let attr = virtiofsd::fuse::SetattrIn {
        mode: 0o2775,
        ..Default::default()
    };
    f.fs.setattr(ctx(), dir, attr, None, SetattrValid::MODE)
        .unwrap();
    // a FIFO is fine
    f.fs.mknod(
        ctx(),
        ROOT,
        &c("fifo"),
        libc::S_IFIFO | 0o644,
        0,
        0,
        Extensions::default(),
    )
    .unwrap();
    assert!(!f.host("disk").exists() && !f.host("suid").exists());
    assert_eq!(
        fs::metadata(f.host("tool")).unwrap().permissions().mode() & 0o7000,
        0
    );
    let reasons: Vec<_> = f
        .events()
        .iter()
        .filter(|e| e.3 == Verdict::Deny)
        .map(|e| e.5)
        .collect();
    assert_eq!(
        reasons,
        vec![
            reason::DEVICE_NODE,
            reason::DEVICE_NODE,
            reason::UNSUPPORTED_FLAGS,
            reason::SETID_BITS,
            reason::SETID_BITS
        ]
    );
}

#[test]
fn non_utf8_host_names_are_hidden_from_listings() {
    let f = fixture(MountMode::Rw);
    let weird = std::ffi::OsStr::from_bytes(b"bad\xffname");
    fs::write(f.root.join(weird), "x").unwrap();
    fs::write(f.host("good"), "x").unwrap();
    fs::write(f.root.join("l".repeat(255)), "x").unwrap();
    let (handle, _) = f.fs.opendir(ctx(), ROOT, 0).unwrap();
    let mut names = Vec::new();
    let mut dir =
        f.fs.readdir(ctx(), ROOT, handle.unwrap(), 65536, 0)
            .unwrap();
    while let Some(e) = dir.next() {
        names.push(e.name.to_bytes().to_vec());
    }
    names.sort();
    let want: Vec<Vec<u8>> = vec![
        b".".to_vec(),
        b"..".to_vec(),
        b"good".to_vec(),
        vec![b'l'; 255],
    ];
    assert_eq!(names, want);
    assert_eq!(
        errno(f.fs.lookup(ctx(), ROOT, &cb(b"bad\xffname"))),
        libc::EINVAL
    );
}

#[test]
fn init_and_destroy_reset_the_path_map() {
    let f = fixture(MountMode::Rw);
    fs::write(f.host("file"), "x").unwrap();
    let ino = f.lookup(ROOT, "file").unwrap();
    f.fs.destroy();
    f.fs.init(FsOptions::empty()).unwrap();
    assert_eq!(errno(f.open(ino, libc::O_RDONLY)), libc::EBADF);
    assert!(f.lookup(ROOT, "file").is_ok());
}
