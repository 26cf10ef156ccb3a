//! Gate tests: deny_read and deny_write, read-only shares, the gateway's own refusals, open flags, unknown mounts.

use super::tests::*;
use super::*;
use airlock_policy::reason::{ALLOWED, PROTECTED_PATH, READ_DENIED, READ_ONLY_MOUNT, WRITE_DENIED};
use airlock_policy::{MountMode, Verdict};

#[test]
fn deny_read_refuses_reading_contents_not_names() {
    let g = rw();
    let env = p(".env");
    let read_deny = |kind| {
        (
            Verdict::Deny,
            "filesystem.deny_read[0] \".env\"".to_owned(),
            READ_DENIED,
            kind,
            true,
        )
    };
    assert_eq!(
        summary(&g.check(&Request::Open {
            paths: &env,
            flags: 0
        })),
        read_deny(kind::FS_OPEN)
    );
    assert_eq!(
        summary(&g.check(&Request::Open {
            paths: &env,
            flags: O_RDWR
        })),
        read_deny(kind::FS_WRITE)
    );
    assert_eq!(
        summary(&g.check(&Request::Read { paths: &env })),
        read_deny(kind::FS_OPEN)
    );
    // writing it blind is allowed (deny_read is about reading)
    let o = g.check(&Request::Open {
        paths: &env,
        flags: O_WR,
    });
    assert_eq!(
        summary(&o),
        (
            Verdict::Allow,
            MOUNT0.to_owned(),
            ALLOWED,
            kind::FS_WRITE,
            true
        )
    );
    // a directory's contents
    let secrets = p("secrets");
    let o = g.check(&Request::Opendir { paths: &secrets });
    assert_eq!(o.decision.reason, READ_DENIED);
    assert!(g.check(&Request::Opendir { paths: &p("") }).is_allowed());
    // creating over an existing secret with read access reads it, unless O_EXCL
    let key = p("secrets/key");
    assert!(
        !g.check(&Request::Create {
            paths: &key,
            flags: O_RDWR | O_CREAT,
            mode: 0o600
        })
        .is_allowed()
    );
    assert!(
        g.check(&Request::Create {
            paths: &key,
            flags: O_RDWR | O_CREAT | O_EXCL,
            mode: 0o600
        })
        .is_allowed()
    );
    // moving it away to read it elsewhere
    assert_eq!(
        g.check(&Request::Rename {
            from: &env,
            to: &p("x"),
            flags: 0
        })
        .decision
        .reason,
        READ_DENIED
    );
}

#[test]
fn deny_write_refuses_changes() {
    let g = rw();
    let lock = p("Cargo.lock");
    let want = |kind| {
        (
            Verdict::Deny,
            "filesystem.deny_write[0] \"Cargo.lock\"".to_owned(),
            WRITE_DENIED,
            kind,
            true,
        )
    };
    assert_eq!(
        summary(&g.check(&Request::Open {
            paths: &lock,
            flags: O_WR | O_TRUNC
        })),
        want(kind::FS_WRITE)
    );
    assert_eq!(
        summary(&g.check(&Request::Unlink { paths: &lock })),
        want(kind::FS_UNLINK)
    );
    assert_eq!(
        summary(&g.check(&Request::Rename {
            from: &p("new.lock"),
            to: &lock,
            flags: 0
        })),
        want(kind::FS_RENAME)
    );
    assert!(
        g.check(&Request::Open {
            paths: &lock,
            flags: 0
        })
        .is_allowed()
    );
}

#[test]
fn ro_share_refuses_every_change_with_erofs() {
    let g = ro();
    let f = p("notes.txt");
    let reqs = [
        Request::Open {
            paths: &f,
            flags: O_WR,
        },
        Request::Open {
            paths: &f,
            flags: O_TRUNC,
        },
        Request::Create {
            paths: &f,
            flags: O_WR | O_CREAT,
            mode: 0o644,
        },
        Request::Mknod {
            paths: &f,
            mode: libc::S_IFIFO | 0o644,
        },
        Request::Mkdir {
            paths: &f,
            mode: 0o755,
        },
        Request::Unlink { paths: &f },
        Request::Rename {
            from: &f,
            to: &p("b"),
            flags: 0,
        },
        Request::Link {
            from: &f,
            to: &p("b"),
        },
        Request::Symlink {
            paths: &f,
            target: b"x",
        },
        Request::Setattr {
            paths: &f,
            valid: SetattrValid::MTIME.bits(),
            mode: 0,
            is_dir: false,
        },
        Request::Setxattr { paths: &f },
    ];
    for req in reqs {
        let o = g.check(&req);
        assert_eq!(
            (
                o.decision.verdict,
                o.decision.rule.as_str(),
                o.decision.reason,
                o.errno(),
                o.report
            ),
            (Verdict::Deny, MOUNT1, READ_ONLY_MOUNT, libc::EROFS, true),
            "{req:?}"
        );
    }
    let o = g.check(&Request::Open {
        paths: &f,
        flags: 0,
    });
    assert_eq!(
        summary(&o),
        (
            Verdict::Allow,
            MOUNT1.to_owned(),
            ALLOWED,
            kind::FS_OPEN,
            false
        )
    );
    // the share's mode wins even if the policy's mount says rw
    let g = Gate::new(policy(), RW, MountMode::Ro, None);
    assert_eq!(
        g.check(&Request::Unlink { paths: &f }).decision.reason,
        READ_ONLY_MOUNT
    );
    // and protected paths keep their own rule
    let o = g.check(&Request::Unlink {
        paths: &p(".git/config"),
    });
    assert_eq!(o.decision.reason, PROTECTED_PATH);
}

#[test]
fn gateway_refusals() {
    let g = rw();
    let f = p("dev");
    for mode in [
        libc::S_IFCHR | 0o666,
        libc::S_IFBLK | 0o600,
        libc::S_IFDIR | 0o755,
    ] {
        let o = g.check(&Request::Mknod { paths: &f, mode });
        assert_eq!(
            (o.decision.reason, o.errno(), o.report),
            (reason::DEVICE_NODE, libc::EPERM, true)
        );
    }
    assert!(
        g.check(&Request::Mknod {
            paths: &f,
            mode: libc::S_IFIFO | 0o644
        })
        .is_allowed()
    );
    let setuid = g.check(&Request::Create {
        paths: &f,
        flags: O_WR | O_CREAT,
        mode: 0o4755,
    });
    assert_eq!(
        (setuid.decision.reason, setuid.errno()),
        (reason::SETID_BITS, libc::EPERM)
    );
    let setgid = g.check(&Request::Setattr {
        paths: &f,
        valid: SetattrValid::MODE.bits(),
        mode: 0o2755,
        is_dir: false,
    });
    assert_eq!(setgid.decision.reason, reason::SETID_BITS);
    let setgid_dir = g.check(&Request::Setattr {
        paths: &f,
        valid: SetattrValid::MODE.bits(),
        mode: 0o2775,
        is_dir: true,
    });
    assert!(setgid_dir.is_allowed());
    assert!(
        g.check(&Request::Mkdir {
            paths: &f,
            mode: 0o2775
        })
        .is_allowed()
    );
    assert!(
        !g.check(&Request::Mkdir {
            paths: &f,
            mode: 0o4775
        })
        .is_allowed()
    );
    let whiteout = g.check(&Request::Rename {
        from: &f,
        to: &p("x"),
        flags: libc::RENAME_WHITEOUT,
    });
    assert_eq!(
        (whiteout.decision.reason, whiteout.errno()),
        (reason::UNSUPPORTED_FLAGS, libc::EINVAL)
    );
    // nothing to decide on: refused
    let none: Vec<String> = Vec::new();
    let o = g.check(&Request::Unlink { paths: &none });
    assert_eq!(o.decision.reason, reason::UNKNOWN_PATH);
}

#[test]
fn open_flags() {
    let f = |flags: i32| OpenIntent::from_flags(u32::try_from(flags).unwrap());
    let i = |read, write, create, exclusive| OpenIntent {
        read,
        write,
        create,
        exclusive,
    };
    assert_eq!(f(libc::O_RDONLY), i(true, false, false, false));
    assert_eq!(f(libc::O_WRONLY), i(false, true, false, false));
    assert_eq!(f(libc::O_RDWR), i(true, true, false, false));
    assert_eq!(f(libc::O_ACCMODE), i(true, true, false, false));
    assert_eq!(
        f(libc::O_RDONLY | libc::O_TRUNC),
        i(true, true, false, false)
    );
    assert_eq!(
        f(libc::O_RDONLY | libc::O_APPEND),
        i(true, false, false, false)
    );
    assert_eq!(
        f(libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL),
        i(false, true, true, true)
    );
}

#[test]
fn unknown_mount_denies_everything() {
    let g = Gate::new(policy(), "/elsewhere", MountMode::Rw, None);
    let o = g.check(&Request::Open {
        paths: &p("a"),
        flags: 0,
    });
    assert_eq!(
        (o.decision.verdict, o.decision.reason, o.report),
        (Verdict::Deny, airlock_policy::reason::UNKNOWN_MOUNT, true)
    );
}
