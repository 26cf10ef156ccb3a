//! Crafted requests fed straight to [`GatedFs`] over a real `PassthroughFs` on a temporary
//! directory: malformed names, bogus node ids, protected paths reached every way we know,
//! symlinks out of the share, and the events each produces.

use std::ffi::CString;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use airlock_policy::reason::{ALLOWED, PROTECTED_PATH};
use airlock_policy::{MountMode, Verdict};
use virtiofsd::filesystem::{Context, Extensions, FileSystem, FsOptions, SetattrValid};
use virtiofsd::passthrough::PassthroughFs;

use super::*;
use crate::events::{FsEvent, FsEvents};
use crate::gate::Gate;
use crate::paths::ROOT_INODE;
use crate::reason;
use crate::serve::passthrough_config;

pub(super) const ROOT: u64 = ROOT_INODE;
pub(super) const MOUNT0: &str = "filesystem.mounts[0] \"/workspace\"";
pub(super) const PROT_HOOKS: &str = "filesystem.protected \".git/hooks/**\"";
pub(super) const PROT_CONFIG: &str = "filesystem.protected \".git/config\"";

#[derive(Default)]
pub(super) struct Recorder(Mutex<Vec<FsEvent>>);

impl FsEvents for Recorder {
    fn record(&self, e: &FsEvent) {
        self.0.lock().unwrap().push(e.clone());
    }
}

impl Recorder {
    pub(super) fn take(&self) -> Vec<FsEvent> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

pub(super) struct Fixture {
    pub(super) _dir: tempfile::TempDir,
    pub(super) root: PathBuf,
    pub(super) outside: PathBuf,
    pub(super) fs: GatedFs<PassthroughFs>,
    pub(super) events: Arc<Recorder>,
}

pub(super) fn fixture(mode: MountMode) -> Fixture {
    fixture_limited(mode, u64::MAX, DEFAULT_MAX_RESIDENT)
}

/// A fixture whose gateway holds at most `max_open` open files and `max_resident` inodes.
pub(super) fn fixture_limited(mode: MountMode, max_open: u64, max_resident: usize) -> Fixture {
    fixture_seeded(mode, max_open, max_resident, |_| {})
}

/// A fixture whose share `seed` fills before the gateway starts.
pub(super) fn fixture_seeded(
    mode: MountMode,
    max_open: u64,
    max_resident: usize,
    seed: impl FnOnce(&Path),
) -> Fixture {
    // PassthroughFs sets the umask to 0: keep that to this test's thread.
    airlock_jail::ns::unshare_fs().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("share");
    fs::create_dir(&root).unwrap();
    let root = fs::canonicalize(&root).unwrap();
    seed(&root);
    let outside = dir.path().join("host-secret.txt");
    fs::write(&outside, "host secret").unwrap();
    let text = format!(
        r#"
[[filesystem.mounts]]
host = {root:?}
guest = "/workspace"
mode = "rw"

[filesystem]
deny_read = [".env", "secrets/**"]
deny_write = ["Cargo.lock"]
"#,
        root = root.display().to_string()
    );
    let policy = Arc::new(
        airlock_policy::load_str(&text, Path::new("/test/policy.toml"))
            .unwrap_or_else(|e| panic!("{e}")),
    );
    let root_str = root.to_str().unwrap();
    let inner = PassthroughFs::new(passthrough_config(root_str, 10_000)).unwrap();
    let gate = Gate::new(policy, "/workspace", mode, Some(root_str));
    let events = Arc::new(Recorder::default());
    let fs = GatedFs::new(inner, gate, events.clone() as Arc<dyn FsEvents>, &root)
        .with_limits(max_open, max_resident);
    fs.init(FsOptions::empty()).unwrap();
    Fixture {
        _dir: dir,
        root,
        outside,
        fs,
        events,
    }
}

pub(super) fn ctx() -> Context {
    Context {
        uid: 0.into(),
        gid: 0.into(),
        pid: 1,
    }
}

pub(super) fn c(s: &str) -> CString {
    CString::new(s).unwrap()
}

pub(super) fn cb(b: &[u8]) -> CString {
    CString::new(b).unwrap()
}

pub(super) fn errno<T>(r: io::Result<T>) -> i32 {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.raw_os_error().unwrap_or_else(|| panic!("no errno: {e}")),
    }
}

/// (op, path, path2, verdict, rule, reason)
pub(super) type Ev = (
    &'static str,
    String,
    Option<String>,
    Verdict,
    String,
    &'static str,
);

pub(super) fn ev(e: &FsEvent) -> Ev {
    (
        e.op,
        e.path.clone(),
        e.path2.clone(),
        e.decision,
        e.rule.clone(),
        e.reason,
    )
}

pub(super) fn deny(op: &'static str, path: &str, rule: &str, reason: &'static str) -> Ev {
    (
        op,
        path.to_owned(),
        None,
        Verdict::Deny,
        rule.to_owned(),
        reason,
    )
}

pub(super) fn allow(op: &'static str, path: &str) -> Ev {
    (
        op,
        path.to_owned(),
        None,
        Verdict::Allow,
        MOUNT0.to_owned(),
        ALLOWED,
    )
}

impl Fixture {
    pub(super) fn lookup(&self, parent: u64, name: &str) -> io::Result<u64> {
        self.fs.lookup(ctx(), parent, &c(name)).map(|e| e.inode)
    }

    pub(super) fn mkdir(&self, parent: u64, name: &str) -> io::Result<u64> {
        self.fs
            .mkdir(ctx(), parent, &c(name), 0o755, 0, Extensions::default())
            .map(|e| e.inode)
    }

    pub(super) fn create(&self, parent: u64, name: &str) -> io::Result<u64> {
        let flags = (libc::O_WRONLY | libc::O_CREAT) as u32;
        self.fs
            .create(
                ctx(),
                parent,
                &c(name),
                0o644,
                false,
                flags,
                0,
                Extensions::default(),
            )
            .map(|(e, _, _)| e.inode)
    }

    pub(super) fn open(&self, inode: u64, flags: i32) -> io::Result<()> {
        self.fs
            .open(ctx(), inode, false, u32::try_from(flags).unwrap())
            .map(drop)
    }

    pub(super) fn host(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    pub(super) fn events(&self) -> Vec<Ev> {
        self.events.take().iter().map(ev).collect()
    }
}

#[test]
fn malformed_names_are_refused_before_anything_else() {
    let f = fixture(MountMode::Rw);
    let long = "a".repeat(256);
    let names: Vec<CString> = vec![
        c("a/b"),
        c(".."),
        c("."),
        c("/etc"),
        c("../../etc/passwd"),
        c(""),
        c(&long),
        cb(b"\xff\xfeinvalid"),
    ];
    for name in &names {
        let shown = name.to_bytes().escape_ascii().to_string();
        assert_eq!(
            errno(f.fs.lookup(ctx(), ROOT, name)),
            libc::EINVAL,
            "{shown}"
        );
        let flags = (libc::O_WRONLY | libc::O_CREAT) as u32;
        let r = f.fs.create(
            ctx(),
            ROOT,
            name,
            0o644,
            false,
            flags,
            0,
            Extensions::default(),
        );
        assert_eq!(errno(r), libc::EINVAL, "{shown}");
        let r =
            f.fs.mkdir(ctx(), ROOT, name, 0o755, 0, Extensions::default());
        assert_eq!(errno(r), libc::EINVAL, "{shown}");
        let r = f.fs.mknod(
            ctx(),
            ROOT,
            name,
            libc::S_IFREG | 0o644,
            0,
            0,
            Extensions::default(),
        );
        assert_eq!(errno(r), libc::EINVAL, "{shown}");
        let r =
            f.fs.symlink(ctx(), &c("x"), ROOT, name, Extensions::default());
        assert_eq!(errno(r), libc::EINVAL, "{shown}");
        assert_eq!(
            errno(f.fs.unlink(ctx(), ROOT, name)),
            libc::EINVAL,
            "{shown}"
        );
        assert_eq!(
            errno(f.fs.rmdir(ctx(), ROOT, name)),
            libc::EINVAL,
            "{shown}"
        );
        assert_eq!(
            errno(f.fs.rename(ctx(), ROOT, name, ROOT, &c("ok"), 0)),
            libc::EINVAL
        );
        assert_eq!(
            errno(f.fs.rename(ctx(), ROOT, &c("ok"), ROOT, name, 0)),
            libc::EINVAL
        );
        assert_eq!(errno(f.fs.link(ctx(), ROOT, ROOT, name)), libc::EINVAL);
    }
    // nothing was created next to or above the share
    assert_eq!(fs::read_dir(&f.root).unwrap().count(), 0);
    let parent_entries: Vec<_> = fs::read_dir(f.root.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(parent_entries.len(), 2, "{parent_entries:?}");
    // every refusal is an event, with the name escaped
    let events = f.events();
    assert_eq!(events.len(), names.len() * 10);
    assert!(
        events.iter().all(|e| e.3 == Verdict::Deny
            && e.4 == reason::rule::NAME
            && e.5 == reason::INVALID_NAME)
    );
    assert_eq!(
        *events.first().unwrap(),
        deny(
            kind::FS_LOOKUP,
            "a/b",
            reason::rule::NAME,
            reason::INVALID_NAME
        )
    );
    assert!(events.iter().any(|e| e.1 == "\\xff\\xfeinvalid"));
}

#[test]
fn bogus_node_ids_are_errors_not_panics() {
    let f = fixture(MountMode::Rw);
    fs::write(f.host("file"), "x").unwrap();
    let bogus = [0, 2, 99, 12345, u64::MAX];
    for b in bogus {
        assert_eq!(errno(f.fs.lookup(ctx(), b, &c("file"))), libc::EBADF, "{b}");
        assert_eq!(errno(f.fs.getattr(ctx(), b, None)), libc::EBADF);
        assert_eq!(errno(f.open(b, libc::O_RDONLY)), libc::EBADF);
        assert_eq!(errno(f.open(b, libc::O_WRONLY)), libc::EBADF);
        assert_eq!(errno(f.fs.opendir(ctx(), b, 0)), libc::EBADF);
        assert_eq!(errno(f.fs.readlink(ctx(), b)), libc::EBADF);
        assert_eq!(errno(f.mkdir(b, "d")), libc::EBADF);
        assert_eq!(errno(f.create(b, "n")), libc::EBADF);
        assert_eq!(errno(f.fs.unlink(ctx(), b, &c("file"))), libc::EBADF);
        assert_eq!(
            errno(f.fs.rename(ctx(), b, &c("a"), ROOT, &c("b"), 0)),
            libc::EBADF
        );
        assert_eq!(
            errno(f.fs.rename(ctx(), ROOT, &c("file"), b, &c("b"), 0)),
            libc::EBADF
        );
        assert_eq!(errno(f.fs.link(ctx(), b, ROOT, &c("l"))), libc::EBADF);
        assert_eq!(errno(f.fs.statfs(ctx(), b)), libc::EBADF);
        assert_eq!(errno(f.fs.access(ctx(), b, 0)), libc::EBADF);
        let attr = virtiofsd::fuse::SetattrIn::default();
        let r = f.fs.setattr(ctx(), b, attr, None, SetattrValid::MTIME);
        assert_eq!(errno(r), libc::EBADF);
        // handle-based calls go to PassthroughFs, which checks the handle
        assert!(f.fs.fsync(ctx(), b, false, 77).is_err());
        assert!(f.fs.release(ctx(), b, 0, 77, false, false, None).is_err());
        assert!(f.fs.readdir(ctx(), b, 77, 4096, 0).is_err());
        f.fs.forget(ctx(), b, 1);
        f.fs.batch_forget(ctx(), vec![(b, u64::MAX), (ROOT, 3)]);
    }
    // still serving afterwards
    assert!(f.lookup(ROOT, "file").is_ok());
    assert!(f.events().is_empty(), "unknown ids are not decisions");
}

#[test]
fn forgotten_nodes_are_unknown() {
    let f = fixture(MountMode::Rw);
    fs::write(f.host("file"), "x").unwrap();
    let ino = f.lookup(ROOT, "file").unwrap();
    f.fs.forget(ctx(), ino, 1);
    assert_eq!(errno(f.open(ino, libc::O_WRONLY)), libc::EBADF);
    assert_eq!(errno(f.fs.getattr(ctx(), ino, None)), libc::EBADF);
}

#[test]
fn writing_a_hook_is_denied_when_missing_present_or_recreated() {
    let f = fixture(MountMode::Rw);
    // .git does not exist: mkdir .git is fine, .git/hooks is not
    let git = f.mkdir(ROOT, ".git").unwrap();
    assert_eq!(errno(f.mkdir(git, "hooks")), libc::EACCES);
    assert!(!f.host(".git/hooks").exists());
    // hooks made on the host: creating a hook in it is refused
    fs::create_dir(f.host(".git/hooks")).unwrap();
    let hooks = f.lookup(git, "hooks").unwrap();
    assert_eq!(errno(f.create(hooks, "pre-commit")), libc::EACCES);
    let r = f.fs.mknod(
        ctx(),
        hooks,
        &c("pre-commit"),
        libc::S_IFREG | 0o755,
        0,
        0,
        Extensions::default(),
    );
    assert_eq!(errno(r), libc::EACCES);
    assert!(!f.host(".git/hooks/pre-commit").exists());
    assert_eq!(
        f.events(),
        vec![
            allow(kind::FS_MKDIR, ".git"),
            deny(kind::FS_MKDIR, ".git/hooks", PROT_HOOKS, PROTECTED_PATH),
            deny(
                kind::FS_CREATE,
                ".git/hooks/pre-commit",
                PROT_HOOKS,
                PROTECTED_PATH
            ),
            deny(
                kind::FS_CREATE,
                ".git/hooks/pre-commit",
                PROT_HOOKS,
                PROTECTED_PATH
            ),
        ]
    );

    // mv .git .g: refused
    assert_eq!(
        errno(f.fs.rename(ctx(), ROOT, &c(".git"), ROOT, &c(".g"), 0)),
        libc::EACCES
    );
    assert!(f.host(".git/hooks").is_dir());
    let e = f.events();
    assert_eq!(e.len(), 1);
    assert_eq!(
        {
            let e = e.first().unwrap();
            (e.0, e.1.as_str(), e.2.as_deref(), e.5)
        },
        (kind::FS_RENAME, ".git", Some(".g"), PROTECTED_PATH)
    );

    // suppose it happened anyway (on the host, behind the gateway's back), and the guest
    // recreates .git: the gateway decides on the new path, not on the old node
    fs::rename(f.host(".git"), f.host(".g")).unwrap();
    assert_eq!(errno(f.lookup(ROOT, ".git")), libc::ENOENT);
    let g = f.lookup(ROOT, ".g").unwrap();
    assert_eq!(g, git, "same host directory, same node");
    assert_eq!(f.fs.paths_of(hooks).unwrap(), vec![".g/hooks"]);
    let new_git = f.mkdir(ROOT, ".git").unwrap();
    assert_ne!(new_git, git);
    assert_eq!(errno(f.mkdir(new_git, "hooks")), libc::EACCES);
    fs::create_dir(f.host(".git/hooks")).unwrap();
    let new_hooks = f.lookup(new_git, "hooks").unwrap();
    assert_eq!(errno(f.create(new_hooks, "pre-commit")), libc::EACCES);
    // while the moved-away directory is ordinary now
    let moved = f.create(hooks, "pre-commit").unwrap();
    assert_eq!(f.fs.paths_of(moved).unwrap(), vec![".g/hooks/pre-commit"]);
    assert!(f.host(".g/hooks/pre-commit").exists());
    assert!(!f.host(".git/hooks/pre-commit").exists());
}

#[test]
fn renaming_or_linking_a_prepared_file_into_place_is_denied() {
    let f = fixture(MountMode::Rw);
    fs::create_dir_all(f.host(".git/hooks")).unwrap();
    fs::write(f.host(".git/config"), "[core]\n").unwrap();
    let git = f.lookup(ROOT, ".git").unwrap();
    let hooks = f.lookup(git, "hooks").unwrap();
    let payload = f.create(ROOT, "payload.sh").unwrap();
    f.events();

    let r =
        f.fs.rename(ctx(), ROOT, &c("payload.sh"), hooks, &c("pre-commit"), 0);
    assert_eq!(errno(r), libc::EACCES);
    let r = f.fs.rename(
        ctx(),
        ROOT,
        &c("payload.sh"),
        hooks,
        &c("pre-commit"),
        libc::RENAME_EXCHANGE,
    );
    assert_eq!(errno(r), libc::EACCES);
    assert_eq!(
        errno(f.fs.link(ctx(), payload, hooks, &c("pre-push"))),
        libc::EACCES
    );
    // hard-linking the protected config to an innocent name, to write it through that name
    let config = f.lookup(git, "config").unwrap();
    assert_eq!(
        errno(f.fs.link(ctx(), config, ROOT, &c("innocent"))),
        libc::EACCES
    );
    // symlinks at or to protected places
    let r = f.fs.symlink(
        ctx(),
        &c("/tmp/x"),
        hooks,
        &c("post-checkout"),
        Extensions::default(),
    );
    assert_eq!(errno(r), libc::EACCES);
    let r = f.fs.symlink(
        ctx(),
        &c(".git/hooks"),
        ROOT,
        &c("h"),
        Extensions::default(),
    );
    assert_eq!(errno(r), libc::EACCES);
    assert!(f.host("payload.sh").exists());
    assert_eq!(fs::read_dir(f.host(".git/hooks")).unwrap().count(), 0);
    assert!(!f.host("innocent").exists() && !f.host("h").exists());

    let events = f.events();
    let summary: Vec<_> = events
        .iter()
        .map(|e| (e.0, e.1.as_str(), e.2.as_deref(), e.4.as_str()))
        .collect();
    assert_eq!(
        summary,
        vec![
            (
                kind::FS_RENAME,
                "payload.sh",
                Some(".git/hooks/pre-commit"),
                PROT_HOOKS
            ),
            (
                kind::FS_RENAME,
                "payload.sh",
                Some(".git/hooks/pre-commit"),
                PROT_HOOKS
            ),
            (
                kind::FS_LINK,
                "payload.sh",
                Some(".git/hooks/pre-push"),
                PROT_HOOKS
            ),
            (kind::FS_LINK, ".git/config", Some("innocent"), PROT_CONFIG),
            (
                kind::FS_SYMLINK,
                ".git/hooks/post-checkout",
                Some("/tmp/x"),
                PROT_HOOKS
            ),
            (kind::FS_SYMLINK, "h", Some(".git/hooks"), PROT_HOOKS),
        ]
    );
}

#[test]
fn protected_file_can_be_read_but_not_changed() {
    let f = fixture(MountMode::Rw);
    fs::create_dir(f.host(".git")).unwrap();
    fs::write(f.host(".git/config"), "[core]\n").unwrap();
    let git = f.lookup(ROOT, ".git").unwrap();
    let config = f.lookup(git, "config").unwrap();
    f.open(config, libc::O_RDONLY).unwrap();
    assert!(f.events().is_empty(), "allowed reads are not events");
    for flags in [
        libc::O_WRONLY,
        libc::O_RDWR,
        libc::O_RDONLY | libc::O_TRUNC,
        libc::O_WRONLY | libc::O_APPEND,
    ] {
        assert_eq!(errno(f.open(config, flags)), libc::EACCES, "{flags:#o}");
    }
    let attr = virtiofsd::fuse::SetattrIn {
        mode: 0o777,
        size: 0,
        ..Default::default()
    };
    assert_eq!(
        errno(f.fs.setattr(ctx(), config, attr, None, SetattrValid::MODE)),
        libc::EACCES
    );
    assert_eq!(
        errno(f.fs.setattr(ctx(), config, attr, None, SetattrValid::SIZE)),
        libc::EACCES
    );
    assert_eq!(errno(f.fs.unlink(ctx(), git, &c("config"))), libc::EACCES);
    assert_eq!(
        errno(f.fs.setxattr(
            ctx(),
            config,
            &c("user.x"),
            b"1",
            0,
            virtiofsd::filesystem::SetxattrFlags::empty()
        )),
        libc::EACCES
    );
    assert_eq!(
        fs::read_to_string(f.host(".git/config")).unwrap(),
        "[core]\n"
    );
    let kinds: Vec<_> = f.events().iter().map(|e| (e.0, e.3, e.5)).collect();
    let d = |k| (k, Verdict::Deny, PROTECTED_PATH);
    assert_eq!(
        kinds,
        vec![
            d(kind::FS_WRITE),
            d(kind::FS_WRITE),
            d(kind::FS_WRITE),
            d(kind::FS_WRITE),
            d(kind::FS_SETATTR),
            d(kind::FS_WRITE),
            d(kind::FS_UNLINK),
            d(kind::FS_SETATTR),
        ]
    );
}
