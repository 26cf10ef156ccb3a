//! [`Policy::with_home`]: the agent home share, its decisions, and how a gateway rebuilds it.

use super::*;
use crate::{FsOp, Verdict};

const PROFILE: &str = r#"
[[filesystem.mounts]]
workspace = true
guest = "/workspace"
mode = "rw"
"#;

fn loaded(text: &str, ws: &Path) -> Policy {
    crate::load_str(text, Path::new("test.toml"))
        .and_then(|p| p.with_workspace(ws))
        .unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn the_home_is_a_writable_share_without_protected_paths() {
    let tmp = tempfile::tempdir().unwrap();
    let (ws, home) = (tmp.path().join("ws"), tmp.path().join("home"));
    std::fs::create_dir_all(&ws).unwrap();
    std::fs::create_dir_all(&home).unwrap();
    let p = loaded(PROFILE, &ws).with_home(&home).unwrap();
    let m = p.mounts().last().unwrap();
    assert_eq!(m.guest, AGENT_HOME);
    assert_eq!(m.mode, MountMode::Rw);
    assert!(!m.protected);
    assert_eq!(m.host, MountHost::Path(home.canonicalize().unwrap()));
    assert_eq!(p.unprotected_mounts().count(), 1);
    let d = p.decide_fs(AGENT_HOME, FsOp::Write, ".claude/settings.json");
    assert_eq!(
        (d.verdict, d.rule.as_str()),
        (Verdict::Allow, AGENT_HOME_RULE)
    );
    let d = p.decide_fs("/workspace", FsOp::Write, ".claude/settings.json");
    assert_eq!(d.verdict, Verdict::Deny);

    // What the gateways get rebuilds the same mounts, with or without seeing the host.
    let again = p.source().load().unwrap();
    assert_eq!(again.mounts(), p.mounts());
    let hosts: Vec<Option<PathBuf>> = p
        .mounts()
        .iter()
        .map(|m| match &m.host {
            MountHost::Path(h) => Some(h.clone()),
            MountHost::Workspace => None,
        })
        .collect();
    let jailed = p.source().load_checked_elsewhere(&hosts).unwrap();
    assert_eq!(jailed.mounts(), p.mounts());
    assert!(p.source().load_checked_elsewhere(&hosts[..1]).is_err());
}

#[test]
fn a_home_that_clashes_is_refused_with_the_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let (ws, home) = (tmp.path().join("ws"), tmp.path().join("home"));
    std::fs::create_dir_all(&ws).unwrap();
    std::fs::create_dir_all(&home).unwrap();
    // A share already at /home.
    let text = format!(
        "{PROFILE}\n[[filesystem.mounts]]\nhost = {:?}\nguest = \"/home\"\n",
        home.display().to_string()
    );
    let e = loaded(&text, &ws).with_home(&home).unwrap_err().to_string();
    assert!(
        e.contains("the agent home goes at /home/agent, but filesystem.mounts[1] \"/home\""),
        "{e}"
    );
    // A home holding the workspace would open its protected paths.
    let e = loaded(PROFILE, &ws)
        .with_home(tmp.path())
        .unwrap_err()
        .to_string();
    assert!(e.contains("`protected = false` on host directory"), "{e}");
    // A home that does not exist.
    let e = loaded(PROFILE, &ws)
        .with_home(&tmp.path().join("missing"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("does not exist"), "{e}");
}
