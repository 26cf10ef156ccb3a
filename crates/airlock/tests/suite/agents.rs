//! The real agent CLIs, installed from their registries by the kits, run inside airlock against
//! the test suite's own fake model APIs (no model is reachable from CI): each is given one task,
//! "create hello.txt with this content", which the fake API scripts as one shell tool call.
//! Each test checks the file on the host, what the fake API received, and the audit log.

use airlock_testkit::audit::{Decision, Log, Source, from, fs_is, kind, net_is};
use airlock_testkit::models::{FakeAnthropic, FakeOpenAi, ModelServer, Task};
use airlock_testkit::{Airlock, text, write_policy};
use std::path::Path;

/// A policy extending the kit's profile that also lets the guest reach the fake API.
///
/// The fake API listens on the host's 127.0.0.1; an explicit address entry is the one way a
/// policy opens a loopback address.
fn policy_for(dir: &Path, profile: &str, server: &ModelServer) -> String {
    write_policy(
        dir,
        &format!(
            "extends = {profile:?}\n[network]\nallow = [\"127.0.0.1:{}\"]\n",
            server.port()
        ),
    )
}

/// `airlock run --agent KIT --policy P --workspace WS -e ENV... -- ARGV`.
///
/// The guest's `no_proxy` exempts its own 127.0.0.1 from the egress proxy; the fake API is on
/// the host's, so the agent is told to use the proxy for it too.
fn run_agent(
    a: &Airlock,
    kit: &str,
    policy: &str,
    ws: &Path,
    env: &[(&str, &str)],
    argv: &[&str],
) -> std::process::Output {
    let mut args: Vec<String> = [
        "run",
        "--agent",
        kit,
        "--policy",
        policy,
        "--workspace",
        ws.to_str().unwrap(),
        "-e",
        "no_proxy=none",
        "-e",
        "NO_PROXY=none",
    ]
    .map(String::from)
    .to_vec();
    for (k, v) in env {
        args.push("-e".into());
        args.push(format!("{k}={v}"));
    }
    args.push("--".into());
    args.extend(argv.iter().map(|s| s.to_string()));
    a.run(&args)
}

/// What every agent test checks once the agent has finished its task.
fn assert_task_done(
    a: &Airlock,
    out: &std::process::Output,
    ws: &Path,
    server: &ModelServer,
    key_header: &str,
) {
    let task = server.task();
    assert!(
        out.status.success(),
        "status {:?}\nstdout: {}\nstderr: {}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(ws.join(&task.file)).unwrap_or_default(),
        task.content,
        "the agent did not write {} on the host workspace; stderr: {}",
        task.file,
        text(&out.stderr)
    );
    assert!(server.tool_calls_served() >= 1 && server.finished());
    let seen = server.seen();
    assert!(
        seen.iter()
            .any(|r| r.header(key_header).is_some_and(|v| v.contains("test-key"))),
        "no request carried the key in {key_header}: {:?}",
        seen.iter().map(|r| &r.path).collect::<Vec<_>>()
    );
    assert_audited(&a.audit(), server);
}

/// The audit log holds the agent's connection to the API, the process its shell tool started
/// and the file it wrote.
pub(super) fn assert_audited(log: &Log, server: &ModelServer) {
    let task = server.task();
    assert!(
        log.has(|e| (net_is(kind::NET_HTTP, Decision::Allow, "127.0.0.1")(e)
            || net_is(kind::NET_CONNECT, Decision::Allow, "127.0.0.1")(e))
            && e.net.as_ref().and_then(|n| n.port) == Some(server.port())),
        "no allowed connection to the API in\n{log}"
    );
    assert!(
        log.has(|e| from(Source::Guest, kind::PROC_EXEC)(e)
            && e.proc
                .as_ref()
                .is_some_and(|p| p.argv.iter().any(|a| a.contains(&task.file)))),
        "no proc.exec of the agent's shell command in\n{log}"
    );
    assert!(
        log.has(fs_is(kind::FS_CREATE, Decision::Allow, &task.file))
            || log.has(fs_is(kind::FS_WRITE, Decision::Allow, &task.file)),
        "no fs record of {} in\n{log}",
        task.file
    );
}

#[test]
fn claude_code_does_a_task_against_the_fake_api_and_keeps_its_session() {
    let a = Airlock::start();
    let ws = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let server = FakeAnthropic::start(Task::default());
    let policy = policy_for(dir.path(), "claude-code", &server);
    let url = server.url();
    let out = run_agent(
        &a,
        "claude-code",
        &policy,
        ws.path(),
        &[
            ("ANTHROPIC_BASE_URL", &url),
            ("ANTHROPIC_API_KEY", "test-key"),
            ("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1"),
        ],
        &[
            "claude",
            "-p",
            "Create hello.txt with the greeting.",
            "--dangerously-skip-permissions",
        ],
    );
    assert_task_done(&a, &out, ws.path(), &server, "x-api-key");
    assert!(
        text(&out.stdout).contains(&server.task().final_text),
        "{}",
        text(&out.stdout)
    );

    // The session went to the agent's home, kept on the host, and the next run sees it.
    let homes = a.run(["agent", "homes"]);
    let listing = text(&homes.stdout);
    assert!(listing.contains("claude-code"), "{listing}");
    let out = run_agent(
        &a,
        "claude-code",
        &policy,
        ws.path(),
        &[],
        &[
            "sh",
            "-c",
            "ls ~/.claude/projects/*/*.jsonl | wc -l; test -s ~/.claude.json && echo config",
        ],
    );
    let stdout = text(&out.stdout);
    assert!(
        stdout
            .lines()
            .next()
            .and_then(|n| n.trim().parse::<u32>().ok())
            >= Some(1)
            && stdout.contains("config"),
        "the second run does not see the first run's session: {stdout}{}",
        text(&out.stderr)
    );
    // Removed on request, with nothing of the user's own home touched.
    let rm = a.run([
        "agent",
        "homes",
        "rm",
        "claude-code",
        "--workspace",
        ws.path().to_str().unwrap(),
    ]);
    assert!(rm.status.success(), "{}", text(&rm.stderr));
    assert_eq!(
        std::fs::read_dir(a.homes_dir().join("claude-code"))
            .unwrap()
            .count(),
        0
    );
    a.assert_clean();
}

#[test]
fn codex_does_a_task_against_the_fake_api() {
    let a = Airlock::start();
    let ws = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let server = FakeOpenAi::start(Task::default());
    let policy = policy_for(dir.path(), "codex", &server);
    let mut argv: Vec<String> = ["codex", "exec", "--skip-git-repo-check"]
        .map(String::from)
        .to_vec();
    // airlock is the sandbox: Codex's own (bubblewrap) sandbox is off inside it.
    argv.extend(["-s", "danger-full-access"].map(String::from));
    argv.extend(FakeOpenAi::codex_args(&server.url()));
    argv.push("Create hello.txt with the greeting.".into());
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let out = run_agent(
        &a,
        "codex",
        &policy,
        ws.path(),
        &[("OPENAI_API_KEY", "test-key")],
        &argv,
    );
    assert_task_done(&a, &out, ws.path(), &server, "authorization");
    a.assert_clean();
}

#[test]
fn gemini_and_aider_run_in_the_sandbox() {
    for (command, version) in [("gemini", "0.61.0"), ("aider", "0.86.2")] {
        let a = Airlock::start();
        // Chosen by the command's name: no --agent, --image or --profile.
        let out = a.run(["run", "--", command, "--version"]);
        assert!(
            out.status.success(),
            "{command} --version: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        assert!(
            text(&out.stdout).contains(version),
            "{command} --version printed {}",
            text(&out.stdout)
        );
        assert!(
            text(&out.stderr).contains(&format!("airlock: agent kit {command}")),
            "{}",
            text(&out.stderr)
        );
        a.assert_clean();
    }
}

#[test]
fn airlock_run_claude_needs_no_flags() {
    let a = Airlock::start();
    let out = a.run(["run", "--", "claude", "--version"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "2.1.332 (Claude Code)");
    // One line says what was chosen.
    let stderr = text(&out.stderr);
    let notes: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("airlock: agent kit"))
        .collect();
    assert_eq!(notes.len(), 1, "{stderr}");
    assert!(
        notes[0].contains("claude-code 2.1.332") && notes[0].contains("profile claude-code"),
        "{stderr}"
    );
    a.assert_clean();
}

#[test]
fn image_check_and_agent_ls_name_a_kit_behind_its_registry() {
    use super::image::{Mirror, archives_as_built, install, synthetic_manifest};
    use airlock_image::kit::store::{KitManifest, LAYER, MANIFEST, MANIFEST_FORMAT};
    let cache = tempfile::tempdir().unwrap();
    let rootfs = cache.path().join("empty.squashfs");
    std::fs::write(&rootfs, b"").unwrap();
    let m = synthetic_manifest();
    install(cache.path(), &m, &rootfs);
    // Codex recorded at a version long behind npm's.
    let build = cache.path().join("kits/codex/20260101T000000Z-00000000");
    std::fs::create_dir_all(&build).unwrap();
    std::fs::write(build.join(LAYER), b"layer").unwrap();
    KitManifest {
        format: MANIFEST_FORMAT,
        kit: "codex".into(),
        command: "codex".into(),
        registry: airlock_image::kit::Registry::Npm,
        package: "@openai/codex".into(),
        version: "0.1.0".into(),
        integrity: "sha512-old".into(),
        packages: vec![],
        recipe_sha256: "-".into(),
        build_id: "20260101T000000Z-00000000".into(),
        built_at: "2026-01-01T00:00:00Z".into(),
        build_secs: 1,
        artefacts: vec![],
    }
    .write(&build.join(MANIFEST))
    .unwrap();
    std::fs::write(
        cache.path().join("kits/codex/current"),
        "20260101T000000Z-00000000\n",
    )
    .unwrap();

    let mirror = Mirror::bookworm(archives_as_built(&m));
    let out = mirror.image(cache.path(), &["check"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("agent kit codex 0.1.0 -> "), "{stdout}");
    assert!(
        stdout.contains("1 agent kit out of date; run `airlock image update debian`"),
        "{stdout}"
    );
    let out = mirror.image(cache.path(), &["check", "--json"]);
    let report: airlock_image::debian::CheckReport = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report.kits.len(), 1);
    assert!(report.kits[0].outdated(), "{:?}", report.kits);

    let out = Airlock::start()
        .command(["agent", "ls"])
        .env("AIRLOCK_CACHE", cache.path())
        .output()
        .unwrap();
    let listing = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    for kit in ["claude-code", "codex", "gemini", "aider"] {
        assert!(listing.lines().any(|l| l.starts_with(kit)), "{listing}");
    }
    let codex = listing.lines().find(|l| l.starts_with("codex")).unwrap();
    assert!(
        codex.contains("0.171.0") && codex.contains("0.1.0") && codex.contains("update"),
        "{codex}"
    );
}
