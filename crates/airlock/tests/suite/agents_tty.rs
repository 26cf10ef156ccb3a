//! Interactive use through a real terminal: `airlock run -t` on a host pseudo-terminal
//! ([`Pty`]), as a user at a terminal runs it. The host terminal goes raw, so keys (Ctrl-C
//! included) reach the guest's pty as bytes; its size goes along at the start and on every
//! SIGWINCH; the command's exit status comes back.
//!
//! The first test checks that plumbing with a shell script on the tiny image; the second drives
//! the real Claude Code TUI against the fake Anthropic API: type a task, see the reply rendered,
//! resize, quit.

use airlock_testkit::audit::kind;
use airlock_testkit::models::{FakeAnthropic, ModelServer, Task};
use airlock_testkit::pty::Pty;
use airlock_testkit::{Airlock, text, wait_until, write_policy};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Booting a VM under TCG, and the first run of a kit, which may install it.
const START: Duration = Duration::from_secs(900);
/// One step of an interactive session (a reply, a redraw, an exit) in a running VM.
const STEP: Duration = Duration::from_secs(300);

/// The last part of `s`, for failure messages about a long screen log.
fn tail(s: &str) -> &str {
    let mut from = s.len().saturating_sub(4000);
    while !s.is_char_boundary(from) {
        from += 1;
    }
    &s[from..]
}

/// Whether the screen log `text` shows `s`, blanks aside: a TUI that redraws only what changed
/// may reach a cell by moving the cursor rather than writing blanks, or write a line in parts.
fn shows(text: &str, s: &str) -> bool {
    let squash = |x: &str| x.chars().filter(|c| !c.is_whitespace()).collect::<String>();
    squash(text).contains(&squash(s))
}

/// Whether `text` has a line that is exactly `n` box-drawing rules: Claude Code draws one
/// above and one below its prompt, as wide as the terminal.
fn has_rule_of_width(text: &str, n: usize) -> bool {
    text.lines().any(|l| {
        let l = l.trim();
        !l.is_empty() && l.chars().all(|c| c == '─') && l.chars().count() == n
    })
}

/// One `airlock run -t` session of a shell script on a 40x120 terminal: the size, a typed
/// line, a resize to 30x100, Ctrl-C, and the exit status, each checked from the guest's side.
fn tty_session(a: &Airlock, route: &str) {
    // The INT trap ends the loop, so airlock's exit status is the script's own 7 and not that
    // of a signal; a lone `sleep` at a time keeps the foreground process group busy. `stop`
    // is set before the traps: a trap may run before the loop starts (right after the WINCH
    // trap, say), and must still end it.
    let script = "stop=; trap 'stty size' WINCH; trap 'echo got-int; stop=1' INT; \
                  stty size; echo ready; read line; echo \"line:$line\"; \
                  n=0; while [ -z \"$stop\" ] && [ $n -lt 600 ]; \
                  do sleep 1; n=$((n+1)); done; \
                  echo after; exit 7";
    let started = Instant::now();
    let args = [
        "run",
        "-t",
        "--profile",
        "default",
        "--",
        "sh",
        "-c",
        script,
    ];
    let mut pty = Pty::spawn(a.command(args), 40, 120).unwrap();
    assert!(
        pty.wait_for("ready", START),
        "{route}: {}",
        tail(&pty.text())
    );
    // The size the host terminal had when the command started.
    assert!(
        pty.text().contains("40 120"),
        "{route}: {}",
        tail(&pty.text())
    );
    eprintln!("tty {route}: command started after {:?}", started.elapsed());

    // Typed input, through the guest's line discipline (Enter sends CR; ICRNL makes it LF).
    pty.send(b"hello\r");
    assert!(
        pty.wait_for("line:hello", STEP),
        "{route}: the typed line did not arrive: {}",
        tail(&pty.text())
    );

    // A resize: SIGWINCH for airlock, a resize of the guest's pty, SIGWINCH for the script.
    let mark = pty.mark();
    pty.resize(30, 100);
    assert!(
        pty.wait_since(mark, |t| t.contains("30 100"), STEP),
        "{route}: the guest never saw the new size: {}",
        tail(&pty.text())
    );

    // Ctrl-C is a byte on a raw terminal: the guest's line discipline turns it into SIGINT for
    // the script's foreground process group, and airlock itself carries on. (Were the host
    // terminal not raw, airlock would get SIGINT and forward it as a signal instead.)
    assert!(
        pty.is_raw(),
        "{route}: airlock did not put the terminal in raw mode"
    );
    let mark = pty.mark();
    pty.send(b"\x03");
    assert!(
        pty.wait_since(mark, |t| t.contains("got-int") && t.contains("after"), STEP),
        "{route}: Ctrl-C did not reach the guest's foreground process: {}",
        tail(&pty.text())
    );
    let status = pty.wait_exit(STEP).expect("airlock did not exit");
    let screen = pty.text();
    assert_eq!(status.code(), Some(7), "{route}: {}", tail(&screen));
    assert!(
        !screen.contains("airlock: interrupted"),
        "{route}: {}",
        tail(&screen)
    );
    assert!(
        !pty.is_raw(),
        "{route}: airlock left the terminal in raw mode"
    );
    eprintln!("tty {route}: done after {:?}", started.elapsed());
}

#[test]
fn run_t_bridges_size_input_resize_ctrl_c_and_exit_status() {
    let a = Airlock::start();
    tty_session(&a, "local boot");
    a.assert_clean();

    // The same through a daemon, whose exec API carries the terminal instead.
    let d = a.daemon(&[]);
    let before = audit_log_names(&a);
    tty_session(&a, "through the daemon");
    let (_, log) = a
        .audit_logs()
        .into_iter()
        .find(|(p, _)| !before.contains(p))
        .expect("no audit log of the daemon's sandbox");
    assert_eq!(
        log.first(kind::SANDBOX_END).detail.as_deref(),
        Some("deleted through the API"),
        "the run did not go through the daemon"
    );
    a.assert_processes_gone();
    d.stop();
    a.assert_clean();
}

/// A policy extending `claude-code` that also lets the guest reach the fake API on the host's
/// 127.0.0.1 (an explicit address entry is the one way a policy opens a loopback address).
fn policy_for(dir: &Path, server: &ModelServer) -> String {
    write_policy(
        dir,
        &format!(
            "extends = \"claude-code\"\n[network]\nallow = [\"127.0.0.1:{}\"]\n",
            server.port()
        ),
    )
}

/// `~/.claude.json` for the agent home, so the TUI opens straight at its prompt. Claude Code
/// 2.1.332 otherwise shows, in turn: first-run onboarding (theme picker, then a connectivity
/// check of api.anthropic.com that fails here: `hasCompletedOnboarding` skips both), "Detected
/// a custom API key ... use this API key?" (answered by `customApiKeyResponses`, keyed by the
/// key's last 20 characters), and the folder trust dialog for the working directory, /workspace
/// in the guest (`hasTrustDialogAccepted`). `theme` and `hasCompletedProjectOnboarding` are
/// what a finished onboarding leaves; the TUI comes up without them too.
fn claude_config(api_key: &str) -> String {
    serde_json::json!({
        "hasCompletedOnboarding": true,
        "theme": "dark",
        "customApiKeyResponses": { "approved": [api_key], "rejected": [] },
        "projects": {
            "/workspace": { "hasTrustDialogAccepted": true, "hasCompletedProjectOnboarding": true }
        }
    })
    .to_string()
}

/// `~/.claude/settings.json`: skips the "running in Bypass Permissions mode" disclaimer that
/// `--dangerously-skip-permissions` otherwise shows at every start until accepted.
const CLAUDE_SETTINGS: &str = r#"{"skipDangerousModePermissionPrompt": true}"#;

fn audit_log_names(a: &Airlock) -> Vec<PathBuf> {
    a.audit_logs().into_iter().map(|(p, _)| p).collect()
}

#[test]
fn claude_code_tui_through_a_real_terminal() {
    let a = Airlock::start();
    let ws = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let server = FakeAnthropic::start(Task::default());
    let task = server.task().clone();
    let policy = policy_for(dir.path(), &server);
    let ws_arg = ws.path().to_str().unwrap();
    let base = [
        "run",
        "--agent",
        "claude-code",
        "--policy",
        &policy,
        "--workspace",
        ws_arg,
    ];

    // Seed the agent home (kept on the host, per workspace) with what a user's first session
    // would have left there.
    let started = Instant::now();
    let mut seed: Vec<&str> = base.to_vec();
    seed.extend([
        "--",
        "sh",
        "-c",
        "mkdir -p ~/.claude && printf '%s' \"$1\" > ~/.claude/settings.json \
         && cat > ~/.claude.json",
        "sh",
        CLAUDE_SETTINGS,
    ]);
    let out = a.run_with_input(&seed, claude_config("test-key").into_bytes());
    assert!(
        out.status.success(),
        "seeding the agent home: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    eprintln!("claude tui: agent home seeded in {:?}", started.elapsed());
    let before = audit_log_names(&a);

    let url = server.url();
    let env = [
        format!("ANTHROPIC_BASE_URL={url}"),
        "ANTHROPIC_API_KEY=test-key".into(),
        // The guest's no_proxy exempts its own 127.0.0.1; the fake API is on the host's.
        "no_proxy=none".into(),
        "NO_PROXY=none".into(),
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1".into(),
    ];
    let mut args: Vec<&str> = base.to_vec();
    args.insert(1, "-t");
    for e in &env {
        args.extend(["-e", e]);
    }
    args.extend(["--", "claude", "--dangerously-skip-permissions"]);
    let started = Instant::now();
    let mut pty = Pty::spawn(a.command(&args), 40, 120).unwrap();

    // The prompt: the banner, the input box between two rules as wide as the terminal, and
    // the permission mode below it.
    assert!(
        pty.wait_until(
            |t| shows(t, "Claude Code v2.1.332")
                && shows(t, "bypass permissions on")
                && has_rule_of_width(t, 120),
            START
        ),
        "the TUI did not come up at its prompt: {}",
        tail(&pty.text())
    );
    eprintln!("claude tui: prompt after {:?}", started.elapsed());

    // Typed, then submitted once the input box shows it (typed together, the Enter would be
    // part of a paste).
    let prompt = "Create hello.txt with the greeting.";
    let mark = pty.mark();
    pty.send(prompt.as_bytes());
    assert!(
        pty.wait_since(mark, |t| shows(t, prompt), STEP),
        "the typed prompt was not echoed: {}",
        tail(&pty.text())
    );
    let mark = pty.mark();
    pty.send(b"\r");
    assert!(
        pty.wait_since(mark, |t| shows(t, &task.final_text), STEP),
        "the reply was not rendered: {}",
        tail(&pty.text())
    );
    eprintln!("claude tui: reply after {:?}", started.elapsed());
    let file = ws.path().join(&task.file);
    assert!(
        wait_until(STEP, || std::fs::read_to_string(&file).ok().as_deref()
            == Some(task.content.as_str())),
        "{} on the host workspace: {:?}",
        task.file,
        std::fs::read_to_string(&file)
    );
    assert!(server.tool_calls_served() >= 1 && server.finished());
    assert!(
        server
            .seen()
            .iter()
            .any(|r| r.api_key() == Some("test-key")),
        "no request carried the key"
    );

    // A resize: the TUI redraws its rules at the new width.
    let mark = pty.mark();
    pty.resize(30, 100);
    assert!(
        pty.wait_since(mark, |t| has_rule_of_width(t, 100), STEP),
        "the TUI did not redraw at 100 columns: {}",
        tail(&pty.text_since(mark))
    );

    // Ctrl-C at the empty prompt is a key for the TUI, which asks for another to exit; airlock
    // neither dies of it nor forwards it as a signal.
    assert!(pty.is_raw(), "airlock did not put the terminal in raw mode");
    let mark = pty.mark();
    pty.send(b"\x03");
    assert!(
        pty.wait_since(mark, |t| shows(t, "Press Ctrl-C again to exit"), STEP),
        "Ctrl-C did not reach the TUI: {}",
        tail(&pty.text_since(mark))
    );

    // Quit with /exit; airlock exits with claude's status and restores the terminal.
    let mark = pty.mark();
    pty.send(b"/exit");
    assert!(
        pty.wait_since(mark, |t| shows(t, "/exit"), STEP),
        "{}",
        tail(&pty.text())
    );
    pty.send(b"\r");
    let status = pty.wait_exit(STEP).expect("claude did not exit on /exit");
    assert_eq!(status.code(), Some(0), "{}", tail(&pty.text()));
    assert!(!pty.is_raw(), "airlock left the terminal in raw mode");
    eprintln!("claude tui: done after {:?}", started.elapsed());

    // This session's audit log: the API call, the agent's shell command and its file.
    let (_, log) = a
        .audit_logs()
        .into_iter()
        .find(|(p, _)| !before.contains(p))
        .expect("no audit log of the TUI session");
    super::agents::assert_audited(&log, &server);
    a.assert_clean();
}
