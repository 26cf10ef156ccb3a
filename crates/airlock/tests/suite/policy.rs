//! `airlock policy check|explain|schema` through the CLI (no VM involved).

use airlock_testkit::{Airlock, text};

#[test]
fn every_shipped_profile_checks() {
    let out = Airlock::start().run(["policy", "check", "--profiles"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "ok    profile default\nok    profile offline\nok    profile claude-code\nok    profile codex\nok    profile gemini\nok    profile aider\nok    profile container\nok    profile docker\n"
    );
}

#[test]
fn check_names_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let unknown = dir.path().join("unknown.toml");
    std::fs::write(&unknown, "[sandbox]\ncpus = 1\nbogus = 2\n").unwrap();
    let wildcard = dir.path().join("wildcard.toml");
    std::fs::write(
        &wildcard,
        "[network]\ndefault = \"deny\"\nallow = [\"*\"]\n",
    )
    .unwrap();
    let out = Airlock::start().run([
        "policy",
        "check",
        unknown.to_str().unwrap(),
        wildcard.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!(
            "{}:3:1: sandbox: unknown key `bogus`",
            unknown.display()
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "{}:3:10: network.allow[0]: invalid host pattern \"*\"",
            wildcard.display()
        )),
        "{err}"
    );
}

#[test]
fn explain_claude_code() {
    let out = Airlock::start().run([
        "policy",
        "explain",
        "--profile",
        "claude-code",
        "--connect",
        "api.anthropic.com:443",
        "--connect",
        "evil.example:443",
        "--write",
        ".git/hooks/pre-commit",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("connect api.anthropic.com:443 -> allow (rule: network.allow[0] \"api.anthropic.com:443\""), "{stdout}");
    assert!(
        stdout.contains("connect evil.example:443 -> deny (rule: network.default"),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "write .git/hooks/pre-commit -> deny (rule: filesystem.protected \".git/hooks/**\""
        ),
        "{stdout}"
    );
}

#[test]
fn explain_rejects_bad_queries_and_unknown_profiles() {
    let out = Airlock::start().run([
        "policy",
        "explain",
        "--profile",
        "default",
        "--connect",
        "example.com",
    ]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        text(&out.stderr).contains("has no port"),
        "{}",
        text(&out.stderr)
    );
    let out = Airlock::start().run(["policy", "explain", "--profile", "nope", "--read", "x"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        text(&out.stderr).contains(
            "unknown profile \"nope\"; shipped profiles: default, offline, claude-code, codex, gemini, aider, container, docker"
        ),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn schema_is_json_schema() {
    let out = Airlock::start().run(["policy", "schema"]);
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        v.get("$schema").is_some() || v.get("$defs").is_some(),
        "{v}"
    );
    assert!(text(&out.stdout).contains("sandbox"));
}
