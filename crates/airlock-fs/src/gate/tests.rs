//! The gate table: every request kind against protected, `deny_read`, `deny_write` and `ro`.

use std::path::Path;
use std::sync::Arc;

use airlock_policy::reason::{ALLOWED, PROTECTED_PATH, READ_DENIED};
use airlock_policy::{MountMode, Policy, Verdict};

use super::*;

pub(super) const RW: &str = "/workspace";
pub(super) const RO: &str = "/data";

pub(super) fn policy() -> Arc<Policy> {
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

pub(super) fn rw() -> Gate {
    Gate::new(policy(), RW, MountMode::Rw, Some("/host/ws"))
}

pub(super) fn ro() -> Gate {
    Gate::new(policy(), RO, MountMode::Ro, None)
}

pub(super) fn p(s: &str) -> Vec<String> {
    vec![s.to_owned()]
}

/// (verdict, rule, reason, kind, report)
pub(super) fn summary(o: &Outcome) -> (Verdict, String, &'static str, &'static str, bool) {
    (
        o.decision.verdict,
        o.decision.rule.clone(),
        o.decision.reason,
        o.kind,
        o.report,
    )
}

pub(super) const PROT_HOOKS: &str = "filesystem.protected \".git/hooks/**\"";
pub(super) const PROT_CONFIG: &str = "filesystem.protected \".git/config\"";
pub(super) const MOUNT0: &str = "filesystem.mounts[0] \"/workspace\"";
pub(super) const MOUNT1: &str = "filesystem.mounts[1] \"/data\"";
pub(super) const O_WR: u32 = libc::O_WRONLY as u32;
pub(super) const O_RDWR: u32 = libc::O_RDWR as u32;
pub(super) const O_TRUNC: u32 = libc::O_TRUNC as u32;
pub(super) const O_CREAT: u32 = libc::O_CREAT as u32;
pub(super) const O_EXCL: u32 = libc::O_EXCL as u32;

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
