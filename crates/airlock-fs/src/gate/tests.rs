//! The gate table: every request kind against protected, `deny_read`, `deny_write` and `ro`.

use std::path::Path;
use std::sync::Arc;

use airlock_policy::reason::{ALLOWED, PROTECTED_PATH, READ_DENIED, READ_ONLY_MOUNT, WRITE_DENIED};
use airlock_policy::{MountMode, Policy, Verdict};

use super::*;

const RW: &str = "/workspace";
const RO: &str = "/data";

fn policy() -> Arc<Policy> {
    let dir = std::env::temp_dir();
    let text = format!(
        r#"
[[filesystem.mounts]]
host = {dir:?}
guest = "/workspace"
mode = "rw"

[[filesystem.mounts]]
host = {dir:?}
guest = "/data"
mode = "ro"

[filesystem]
deny_read = [".env", "secrets/**"]
deny_write = ["Cargo.lock"]
"#,
        dir = dir.display().to_string()
    );
    let p = airlock_policy::load_str(&text, Path::new("/test/policy.toml"))
        .unwrap_or_else(|e| panic!("{e}"));
    Arc::new(p)
}

fn rw() -> Gate {
    Gate::new(policy(), RW, MountMode::Rw, Some("/host/ws"))
}

fn ro() -> Gate {
    Gate::new(policy(), RO, MountMode::Ro, None)
}

fn p(s: &str) -> Vec<String> {
    vec![s.to_owned()]
}

/// (verdict, rule, reason, kind, report)
fn summary(o: &Outcome) -> (Verdict, String, &'static str, &'static str, bool) {
    (
        o.decision.verdict,
        o.decision.rule.clone(),
        o.decision.reason,
        o.kind,
        o.report,
    )
}

const PROT_HOOKS: &str = "filesystem.protected \".git/hooks/**\"";
const PROT_CONFIG: &str = "filesystem.protected \".git/config\"";
const MOUNT0: &str = "filesystem.mounts[0] \"/workspace\"";
const MOUNT1: &str = "filesystem.mounts[1] \"/data\"";
const O_WR: u32 = libc::O_WRONLY as u32;
const O_RDWR: u32 = libc::O_RDWR as u32;
const O_TRUNC: u32 = libc::O_TRUNC as u32;
const O_CREAT: u32 = libc::O_CREAT as u32;
const O_EXCL: u32 = libc::O_EXCL as u32;

#[test]
fn protected_paths_refuse_every_change_even_when_missing() {
    let g = rw();
    let hook = p(".git/hooks/pre-commit");
    let deny = |kind| {
        (
            Verdict::Deny,
            PROT_HOOKS.to_owned(),
            PROTECTED_PATH,
            kind,
            true,
        )
    };
    let cases: Vec<(Request<'_>, _)> = vec![
        (
            Request::Create {
                paths: &hook,
                flags: O_WR | O_CREAT,
                mode: 0o755,
            },
            deny(kind::FS_CREATE),
        ),
        (
            Request::Open {
                paths: &hook,
                flags: O_WR,
            },
            deny(kind::FS_WRITE),
        ),
        (
            Request::Open {
                paths: &hook,
                flags: O_TRUNC,
            },
            deny(kind::FS_WRITE),
        ),
        (
            Request::Open {
                paths: &hook,
                flags: O_CREAT,
            },
            deny(kind::FS_WRITE),
        ),
        (
            Request::Mknod {
                paths: &hook,
                mode: libc::S_IFREG | 0o644,
            },
            deny(kind::FS_CREATE),
        ),
        (
            Request::Mkdir {
                paths: &hook,
                mode: 0o755,
            },
            deny(kind::FS_MKDIR),
        ),
        (Request::Unlink { paths: &hook }, deny(kind::FS_UNLINK)),
        (
            Request::Setattr {
                paths: &hook,
                valid: SetattrValid::MODE.bits(),
                mode: 0o755,
                is_dir: false,
            },
            deny(kind::FS_SETATTR),
        ),
        (
            Request::Setattr {
                paths: &hook,
                valid: SetattrValid::SIZE.bits(),
                mode: 0,
                is_dir: false,
            },
            deny(kind::FS_WRITE),
        ),
        (Request::Setxattr { paths: &hook }, deny(kind::FS_SETATTR)),
        (
            Request::Symlink {
                paths: &hook,
                target: b"/bin/sh",
            },
            deny(kind::FS_SYMLINK),
        ),
    ];
    for (req, want) in cases {
        assert_eq!(summary(&g.check(&req)), want, "{req:?}");
    }
    // `mkdir .git/hooks` too: the glob covers the directory it names.
    let hooks_dir = p(".git/hooks");
    assert_eq!(
        summary(&g.check(&Request::Mkdir {
            paths: &hooks_dir,
            mode: 0o755
        })),
        deny(kind::FS_MKDIR)
    );
    // Reading a protected file is fine and is not an event.
    let o = g.check(&Request::Open {
        paths: &hook,
        flags: 0,
    });
    assert_eq!(
        summary(&o),
        (
            Verdict::Allow,
            MOUNT0.to_owned(),
            ALLOWED,
            kind::FS_OPEN,
            false
        )
    );
    // Nested repositories are covered too, case-insensitively.
    let nested = p("vendor/lib/.GIT/Hooks/post-checkout");
    assert!(
        !g.check(&Request::Open {
            paths: &nested,
            flags: O_WR
        })
        .is_allowed()
    );
    let cfg = p(".git/config");
    let o = g.check(&Request::Open {
        paths: &cfg,
        flags: O_RDWR,
    });
    assert_eq!(
        (o.decision.rule.as_str(), o.errno()),
        (PROT_CONFIG, libc::EACCES)
    );
}

#[test]
fn moving_or_replacing_a_protected_directory_is_refused_but_mkdir_is_not() {
    let g = rw();
    let git = p(".git");
    let elsewhere = p(".g");
    let o = g.check(&Request::Rename {
        from: &git,
        to: &elsewhere,
        flags: 0,
    });
    assert_eq!(summary(&o).0, Verdict::Deny);
    assert_eq!((o.path.as_str(), o.path2.as_deref()), (".git", Some(".g")));
    // renaming a prepared file into place: the destination decides
    let prepared = p("tmp/hook");
    let o = g.check(&Request::Rename {
        from: &prepared,
        to: &p(".git/hooks/pre-commit"),
        flags: 0,
    });
    assert_eq!(
        summary(&o),
        (
            Verdict::Deny,
            PROT_HOOKS.to_owned(),
            PROTECTED_PATH,
            kind::FS_RENAME,
            true
        )
    );
    assert_eq!(
        (o.path.as_str(), o.path2.as_deref()),
        ("tmp/hook", Some(".git/hooks/pre-commit"))
    );
    // a .git file or symlink in place of the directory
    assert!(
        !g.check(&Request::Create {
            paths: &git,
            flags: O_WR | O_CREAT,
            mode: 0o644
        })
        .is_allowed()
    );
    assert!(
        !g.check(&Request::Symlink {
            paths: &git,
            target: b"/tmp/evil"
        })
        .is_allowed()
    );
    assert!(!g.check(&Request::Unlink { paths: &git }).is_allowed());
    // an empty new .git is fine; its hooks stay protected
    let o = g.check(&Request::Mkdir {
        paths: &git,
        mode: 0o755,
    });
    assert_eq!(
        summary(&o),
        (
            Verdict::Allow,
            MOUNT0.to_owned(),
            ALLOWED,
            kind::FS_MKDIR,
            true
        )
    );
    // exchange counts as a rename of both
    let o = g.check(&Request::Rename {
        from: &p("x"),
        to: &git,
        flags: libc::RENAME_EXCHANGE,
    });
    assert!(!o.is_allowed());
}

#[test]
fn hard_links_check_both_sides() {
    let g = rw();
    // linking a protected file to a new name: the source is protected
    let o = g.check(&Request::Link {
        from: &p(".git/config"),
        to: &p("innocent"),
    });
    assert_eq!(
        summary(&o),
        (
            Verdict::Deny,
            PROT_CONFIG.to_owned(),
            PROTECTED_PATH,
            kind::FS_LINK,
            true
        )
    );
    assert_eq!(o.path2.as_deref(), Some("innocent"));
    // a link into a protected place: the destination is protected
    let o = g.check(&Request::Link {
        from: &p("payload.sh"),
        to: &p(".git/hooks/pre-push"),
    });
    assert_eq!(summary(&o).1, PROT_HOOKS);
    // a read-denied file may not get another name
    let o = g.check(&Request::Link {
        from: &p(".env"),
        to: &p("env.txt"),
    });
    assert_eq!(summary(&o).2, READ_DENIED);
    // every known name of a multiply-linked node counts
    let names = vec!["a".to_owned(), ".git/config".to_owned()];
    let o = g.check(&Request::Open {
        paths: &names,
        flags: O_WR,
    });
    assert_eq!(
        (o.decision.reason, o.path.as_str()),
        (PROTECTED_PATH, ".git/config")
    );
    let o = g.check(&Request::Link {
        from: &p("a"),
        to: &p("b"),
    });
    assert_eq!(
        summary(&o),
        (
            Verdict::Allow,
            MOUNT0.to_owned(),
            ALLOWED,
            kind::FS_LINK,
            true
        )
    );
}

#[test]
fn symlinks_are_checked_where_they_are_and_where_they_point_inside_the_share() {
    let g = rw();
    let at = p("tools/hook");
    let cases: Vec<(&[u8], Verdict)> = vec![
        (b"../.git/hooks/pre-commit", Verdict::Deny),
        (b"../.git", Verdict::Deny),
        (b"/workspace/.git/hooks", Verdict::Deny),
        (b"/host/ws/.git/config", Verdict::Deny),
        (b"../secrets/key", Verdict::Deny),
        (b"run.sh", Verdict::Allow),
        (b"../src/./main.rs", Verdict::Allow),
        (b"/usr/bin/python3", Verdict::Allow),
        (b"../../../etc/passwd", Verdict::Allow),
        (b"/workspacefoo/.git/config", Verdict::Allow),
    ];
    for (target, want) in cases {
        let o = g.check(&Request::Symlink { paths: &at, target });
        assert_eq!(
            o.decision.verdict,
            want,
            "{}",
            String::from_utf8_lossy(target)
        );
        assert_eq!(o.kind, kind::FS_SYMLINK);
        assert!(o.report);
        assert_eq!(o.path, "tools/hook");
        assert_eq!(o.path2.as_deref().map(str::as_bytes), Some(target));
    }
    for bad in [&b"\xff"[..], b"", b"a\0b"] {
        let o = g.check(&Request::Symlink {
            paths: &at,
            target: bad,
        });
        assert_eq!(
            (o.decision.reason, o.errno()),
            (reason::INVALID_NAME, libc::EINVAL)
        );
    }
    assert_eq!(g.resolve_target("a/b/link", "../c"), Some("a/c".to_owned()));
    assert_eq!(g.resolve_target("link", "."), Some(String::new()));
    assert_eq!(g.resolve_target("link", ".."), None);
    assert_eq!(g.resolve_target("link", "/workspace"), Some(String::new()));
}

#[test]
fn host_aliases_resolve_like_the_host_dir() {
    // An overlay share is served from a copy; links naming the original directory are
    // checked as links into the share.
    let g = Gate::new(policy(), RW, MountMode::Overlay, Some("/state/ov/upper"))
        .with_host_alias("/home/u/proj/");
    assert_eq!(
        g.resolve_target("l", "/home/u/proj/.git/hooks"),
        Some(".git/hooks".to_owned())
    );
    assert_eq!(
        g.resolve_target("l", "/state/ov/upper/a"),
        Some("a".to_owned())
    );
    assert_eq!(g.resolve_target("l", "/home/u/project/a"), None);
    let at = p("h");
    let o = g.check(&Request::Symlink {
        paths: &at,
        target: b"/home/u/proj/.git/hooks",
    });
    assert_eq!(o.decision.reason, PROTECTED_PATH);
}

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
