//! airlock's own files inside a share (`Policy::with_reserved`), decided before any rule.

use std::path::Path;

use super::*;
use crate::load::load_with;
use crate::source::Env;

fn policy(text: &str) -> Policy {
    load_with(text, Path::new("test.toml"), &Env::default()).unwrap_or_else(|e| panic!("{e}"))
}

fn d(verdict: Verdict, rule: &str, reason: &'static str) -> Decision {
    Decision {
        verdict,
        rule: rule.to_owned(),
        reason,
    }
}

use Verdict::{Allow, Deny};

#[test]
fn airlock_files_in_a_share_are_read_only_or_hidden_whatever_the_policy_says() {
    use crate::{HostFile, ReservedAccess};
    use FsOp::*;
    let ws = tempfile::tempdir().unwrap();
    let ws_path = std::fs::canonicalize(ws.path()).unwrap();
    let p = policy("[[filesystem.mounts]]\nworkspace = true\nguest = \"/workspace\"\nmode = \"rw\"\nprotected = true\n")
        .with_workspace(&ws_path)
        .unwrap();
    let policy_file = ws_path.join("airlock.toml");
    let log = ws_path.join("logs/audit.jsonl");
    let outside = std::env::temp_dir().join("elsewhere.jsonl");
    let reserved = p.reserve(&[
        HostFile {
            path: &policy_file,
            access: ReservedAccess::ReadOnly,
            what: "policy file",
        },
        HostFile {
            path: &log,
            access: ReservedAccess::Hidden,
            what: "audit log",
        },
        HostFile {
            path: &outside,
            access: ReservedAccess::Hidden,
            what: "audit key",
        },
        HostFile {
            path: &ws_path,
            access: ReservedAccess::Hidden,
            what: "data directory",
        },
    ]);
    assert_eq!(
        reserved
            .iter()
            .map(|r| (r.mount, r.path.as_str()))
            .collect::<Vec<_>>(),
        [(0, "airlock.toml"), (0, "logs/audit.jsonl")],
        "only files strictly inside a share"
    );
    let p = p.with_reserved(reserved).unwrap();
    let pf = "airlock policy file";
    let al = "airlock audit log";
    #[rustfmt::skip]
    let cases: &[(FsOp, &str, Verdict, &str, &'static str)] = &[
        (Read, "airlock.toml", Allow, "filesystem.mounts[0] \"/workspace\"", reason::ALLOWED),
        (Write, "airlock.toml", Deny, pf, reason::AIRLOCK_FILE),
        (Setattr, "./airlock.toml", Deny, pf, reason::AIRLOCK_FILE),
        (Unlink, "airlock.toml", Deny, pf, reason::AIRLOCK_FILE),
        (Rename, "airlock.toml", Deny, pf, reason::AIRLOCK_FILE),
        (Read, "logs/audit.jsonl", Deny, al, reason::AIRLOCK_FILE),
        (Write, "logs/audit.jsonl", Deny, al, reason::AIRLOCK_FILE),
        (Link, "logs/audit.jsonl", Deny, al, reason::AIRLOCK_FILE),
        // Moving the directory that holds it would move it too.
        (Rename, "logs", Deny, al, reason::AIRLOCK_FILE),
        (Create, "logs/other.txt", Allow, "filesystem.mounts[0] \"/workspace\"", reason::ALLOWED),
        (Write, "airlock.toml.bak", Allow, "filesystem.mounts[0] \"/workspace\"", reason::ALLOWED),
    ];
    for (op, path, verdict, rule, why) in cases {
        assert_eq!(
            p.decide_fs("/workspace", *op, path),
            d(*verdict, rule, why),
            "{op} {path}"
        );
    }
    // A gateway loading the same source decides the same way.
    let source: crate::PolicySource =
        serde_json::from_str(&serde_json::to_string(p.source()).unwrap()).unwrap();
    let again = source
        .load_checked_elsewhere(&[Some(ws_path.clone())])
        .unwrap();
    assert_eq!(
        again.decide_fs("/workspace", Read, "logs/audit.jsonl"),
        d(Deny, al, reason::AIRLOCK_FILE)
    );
    // A list naming a mount the policy lacks is refused, not ignored.
    let mut bad = p.reserved().to_vec();
    bad[0].mount = 3;
    let err = p.clone().with_reserved(bad).unwrap_err().to_string();
    assert!(err.contains("names mount 3 of 1"), "{err}");
}
