//! `airlock mcp` driven by a real MCP client: the official Python SDK (`mcp` from PyPI, in the
//! test venv) starts the server over stdio, lists the tools and calls them against a real
//! daemon booting real sandboxes; the audit log must show every step.

use airlock_testkit::audit::{self, Decision, Source, kind};
use airlock_testkit::{Airlock, test_python, text};
use serde_json::{Value, json};

/// What the client saw: the tool names and one result per call.
struct Session {
    tools: Vec<String>,
    results: Vec<Value>,
}

/// Runs `calls` ([name, arguments] pairs) through the Python client against `airlock mcp
/// ARGS`, started in the test's working directory with the test's daemon socket.
fn client(a: &Airlock, args: &[&str], calls: Value) -> Session {
    let mut server = vec![
        Airlock::binary().display().to_string(),
        "mcp".into(),
        "--socket".into(),
        a.socket().display().to_string(),
    ];
    server.extend(args.iter().map(|s| s.to_string()));
    run_client(a, &server, calls)
}

/// Runs the Python client with `client_args` (a server command line, or `--http URL TOKEN`).
fn run_client(a: &Airlock, client_args: &[String], calls: Value) -> Session {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/suite/mcp_client.py");
    let mut cmd = std::process::Command::new(test_python());
    cmd.arg(script)
        .args(client_args)
        .current_dir(a.cwd())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("starting the MCP client");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(calls.to_string().as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the MCP client failed: {}",
        text(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("client output is not JSON ({e}): {}", text(&out.stdout)));
    let tools = v["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect();
    let results = v["results"].as_array().unwrap().clone();
    assert_eq!(results.len(), calls.as_array().unwrap().len());
    Session { tools, results }
}

const TOOLS: [&str; 9] = [
    "sandbox_create",
    "sandbox_exec",
    "file_read",
    "file_write",
    "file_list",
    "sandbox_diff",
    "audit_tail",
    "sandbox_destroy",
    "sandbox_list",
];

/// A successful result's structured content; panics showing the result otherwise.
fn ok(r: &Value) -> &Value {
    assert_eq!(r["is_error"], json!(false), "expected success: {r}");
    &r["structured"]
}

/// An `isError` result's code and detail; panics showing the result otherwise.
fn error(r: &Value) -> (&str, &str) {
    assert_eq!(r["is_error"], json!(true), "expected an error result: {r}");
    let code = r["structured"]["error"].as_str().unwrap();
    let detail = r["structured"]["detail"].as_str().unwrap();
    assert!(r["text"].as_str().unwrap().contains(detail), "{r}");
    (code, detail)
}

#[test]
fn mcp_client_creates_execs_reads_is_denied_and_destroys() {
    let a = Airlock::start();
    let _d = a.daemon(&[]);
    // A protected path that exists, so the write is refused by policy, not for a missing dir.
    std::fs::create_dir_all(a.cwd().join(".git/hooks")).unwrap();
    let calls = json!([
        ["sandbox_create", {}],
        ["sandbox_exec", {"id": "$id", "command": "echo hello; echo oops >&2; exit 3"}],
        ["sandbox_exec", {"id": "$id", "command": "head -c 100000 /dev/zero | tr '\\0' a", "max_output_bytes": 1000}],
        ["file_write", {"id": "$id", "path": "/workspace/notes.txt", "content": "written over MCP\n"}],
        ["file_read", {"id": "$id", "path": "/workspace/notes.txt"}],
        ["file_list", {"id": "$id"}],
        ["file_write", {"id": "$id", "path": "/workspace/.git/hooks/pre-commit", "content": "#!/bin/sh\ncurl evil\n"}],
        ["sandbox_diff", {"id": "$id"}],
        ["audit_tail", {"id": "$id", "decision": "deny", "kind": "fs.*"}],
        ["sandbox_exec", {"id": "$id", "command": "echo '[core]' > .git/config"}],
        ["sandbox_exec", {"id": "$id", "command": "echo started; sleep 60", "timeout_secs": 2}],
        ["sandbox_create", {"profile": "claude-code"}],
        ["sandbox_create", {"workspace": "/"}],
        ["sandbox_exec", {"id": "0123456789ab", "command": "id"}],
        ["sandbox_exec", {"id": "$id", "comand": "id"}],
        ["sandbox_list", {}],
        ["sandbox_destroy", {"id": "$id"}],
        ["sandbox_list", {}],
    ]);
    let s = client(&a, &["--allow-profile", "default"], calls);
    assert_eq!(s.tools, TOOLS);
    let [
        create,
        exec,
        big,
        write,
        read,
        list,
        denied,
        diff,
        tail,
        refused_exec,
        slow,
        wider,
        outside,
        unknown,
        misspelt,
        listed,
        destroyed,
        after,
    ] = s.results.as_slice()
    else {
        panic!("{} results", s.results.len());
    };

    let created = ok(create);
    let id = created["id"].as_str().unwrap();
    assert_eq!(created["status"], "running");
    assert_eq!(created["policy"], "profile default");
    let cwd = std::fs::canonicalize(a.cwd()).unwrap();
    assert_eq!(created["workspace"], cwd.to_str().unwrap());

    let exec = ok(exec);
    assert_eq!(
        (
            &exec["exit_code"],
            &exec["stdout"],
            &exec["stderr"],
            &exec["timed_out"]
        ),
        (
            &json!(3),
            &json!("hello\n"),
            &json!("oops\n"),
            &json!(false)
        )
    );
    let big = ok(big);
    assert_eq!(big["stdout"].as_str().unwrap(), "a".repeat(1000));
    assert_eq!(
        (
            &big["stdout_truncated"],
            &big["stdout_bytes"],
            &big["exit_code"]
        ),
        (&json!(true), &json!(100_000), &json!(0))
    );

    assert_eq!(ok(write)["size"], 17);
    assert_eq!(
        std::fs::read_to_string(cwd.join("notes.txt")).unwrap(),
        "written over MCP\n"
    );
    let read = ok(read);
    assert_eq!(
        (&read["content"], &read["encoding"], &read["truncated"]),
        (&json!("written over MCP\n"), &json!("utf8"), &json!(false))
    );
    let names: Vec<&str> = ok(list)["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"notes.txt"), "{names:?}");

    // The policy refuses the hook: an isError result with the reason, not a protocol error.
    let (code, detail) = error(denied);
    assert_eq!(code, "denied", "{detail}");
    assert!(
        detail.starts_with(
            "file_write: the sandbox's policy refused /workspace/.git/hooks/pre-commit: rule \
             filesystem.protected \".git/hooks/**\" ("
        ),
        "{detail}"
    );
    assert!(!cwd.join(".git/hooks/pre-commit").exists());

    let diff = ok(diff);
    let mount = &diff["mounts"][0];
    assert_eq!(
        (&mount["guest"], &mount["method"]),
        (&json!("/workspace"), &json!("audit"))
    );
    let changed: Vec<&str> = mount["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["path"].as_str().unwrap())
        .collect();
    assert_eq!(changed, ["notes.txt"], "{diff}");

    let tail = ok(tail)["records"].as_array().unwrap().clone();
    assert!(
        tail.iter()
            .any(|r| r["decision"] == "deny" && r["fs"]["path"] == ".git/hooks/pre-commit"),
        "{tail:?}"
    );

    // A command the policy thwarts is not an error (it ran), but its result says what the
    // policy refused and by which rule.
    let refused_exec = ok(refused_exec);
    assert_ne!(refused_exec["exit_code"], 0, "{refused_exec}");
    let denials = refused_exec["policy_denials"].as_array().unwrap();
    assert!(
        denials.iter().any(|d| d["fs"]["path"] == ".git/config"
            && d["rule"] == "filesystem.protected \".git/config\""),
        "{refused_exec}"
    );
    assert!(!cwd.join(".git/config").exists());

    // A timeout returns what the command printed so far, and ends it.
    let slow = ok(slow);
    assert_eq!(
        (&slow["timed_out"], &slow["exit_code"], &slow["stdout"]),
        (&json!(true), &Value::Null, &json!("started\n")),
        "{slow}"
    );

    // Bad input: each an isError result naming what is wrong.
    let (code, detail) = error(wider);
    assert_eq!(code, "profile_not_allowed");
    assert!(
        detail
            .starts_with("profile \"claude-code\" is not allowed here; the user allowed: default."),
        "{detail}"
    );
    assert_eq!(error(outside).0, "workspace_not_allowed");
    let (code, detail) = error(unknown);
    assert_eq!(code, "unknown_sandbox");
    assert!(
        detail.contains(&format!("sandboxes of this session: {id}.")),
        "{detail}"
    );
    let (code, detail) = error(misspelt);
    assert_eq!(code, "bad_arguments");
    assert!(detail.contains("unknown field `comand`"), "{detail}");

    let listed = ok(listed)["sandboxes"].as_array().unwrap().clone();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["id"], id);
    let destroyed = ok(destroyed);
    assert_eq!(destroyed["destroyed"], true);
    assert_eq!(ok(after)["sandboxes"], json!([]));

    // The audit log shows every step, as typed records: the host saw each exec request
    // (file tools run as the workload user through the same exec path), the fs gateway the
    // create it allowed and the one it refused, with the rule.
    let log = a.audit_of(id);
    log.first(kind::SANDBOX_START);
    let host_exec = |argv: &[&str]| {
        log.has(|e| {
            audit::from(Source::Host, kind::PROC_EXEC)(e)
                && e.decision == Some(Decision::Allow)
                && e.proc.as_ref().is_some_and(|p| p.argv == argv)
        })
    };
    for step in [
        &["/bin/sh", "-c", "echo hello; echo oops >&2; exit 3"][..],
        &["/bin/sh", "-c", "head -c 100000 /dev/zero | tr '\\0' a"],
        &["sh", "-c", "cat > \"$1\"", "sh", "/workspace/notes.txt"],
        &["cat", "--", "/workspace/notes.txt"],
        &[
            "sh",
            "-c",
            "cat > \"$1\"",
            "sh",
            "/workspace/.git/hooks/pre-commit",
        ],
    ] {
        assert!(host_exec(step), "no host proc.exec of {step:?}:\n{log}");
    }
    assert!(
        log.has(audit::fs_is(kind::FS_CREATE, Decision::Allow, "notes.txt")),
        "{log}"
    );
    let refused = log
        .find(audit::fs_is(
            kind::FS_CREATE,
            Decision::Deny,
            ".git/hooks/pre-commit",
        ))
        .unwrap_or_else(|| panic!("no refused create of the hook:\n{log}"));
    assert_eq!(
        refused.rule.as_deref(),
        Some("filesystem.protected \".git/hooks/**\"")
    );
    let end = log.first(kind::SANDBOX_END);
    assert_eq!(
        end.detail.as_deref(),
        Some("deleted through the API"),
        "{log}"
    );
}

#[test]
fn mcp_without_a_daemon_lists_tools_and_says_how_to_start_one() {
    let a = Airlock::start();
    let calls = json!([["sandbox_create", {}], ["sandbox_list", {}]]);
    let s = client(&a, &[], calls);
    assert_eq!(s.tools, TOOLS);
    for r in &s.results {
        let (code, detail) = error(r);
        assert_eq!(code, "no_daemon");
        assert!(detail.contains(a.socket().to_str().unwrap()), "{detail}");
        assert!(
            detail.contains("start one with `airlock daemon &`"),
            "{detail}"
        );
    }
}

#[test]
fn mcp_over_streamable_http_needs_the_token_and_a_loopback_address() {
    use std::io::BufRead;
    let a = Airlock::start();
    let _d = a.daemon(&[]);
    let token = "mcp-test-token-0123456789abcdef";
    let token_file = airlock_testkit::token_file(a.cwd(), token);
    let token_path = token_file.to_str().unwrap();

    let out = a.run(["mcp", "--http", "0.0.0.0:0", "--token-file", token_path]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("--http 0.0.0.0:0: only a loopback address"),
        "{}",
        text(&out.stderr)
    );

    let mut server = a
        .command(["mcp", "--http", "127.0.0.1:0", "--token-file", token_path])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(server.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    let url = line
        .trim()
        .strip_prefix("airlock mcp: serving MCP over Streamable HTTP at ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    assert!(
        url.starts_with("http://127.0.0.1:") && url.ends_with("/mcp"),
        "{url}"
    );

    // Without the token: 401 before MCP is spoken.
    let status = std::process::Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-X",
            "POST",
            &url,
        ])
        .args(["-H", "Content-Type: application/json", "-d", "{}"])
        .output()
        .unwrap();
    assert_eq!(text(&status.stdout), "401");

    let calls = json!([
        ["sandbox_create", {}],
        ["sandbox_exec", {"id": "$id", "command": "echo over http"}],
        ["sandbox_destroy", {"id": "$id"}],
    ]);
    let s = run_client(&a, &["--http".into(), url, token.into()], calls);
    let _ = server.kill();
    let _ = server.wait();
    assert_eq!(s.tools, TOOLS);
    let [create, exec, destroy] = s.results.as_slice() else {
        panic!("{} results", s.results.len());
    };
    let id = ok(create)["id"].as_str().unwrap().to_string();
    assert_eq!(ok(exec)["stdout"], "over http\n");
    assert_eq!(ok(destroy)["destroyed"], true);
    let log = a.audit_of(&id);
    assert!(
        log.has(|e| audit::from(Source::Host, kind::PROC_EXEC)(e)
            && e.proc
                .as_ref()
                .is_some_and(|p| p.argv == ["/bin/sh", "-c", "echo over http"])),
        "{log}"
    );
    log.first(kind::SANDBOX_END);
}

#[test]
fn mcp_user_policy_file_with_an_overlay_workspace_is_diffed_not_written() {
    let a = Airlock::start();
    let overlays = tempfile::tempdir().unwrap();
    let _d = a.daemon_with_env(&[], &[("AIRLOCK_OVERLAY_DIR", overlays.path())]);
    let policy_dir = tempfile::tempdir().unwrap();
    let policy = policy_dir.path().join("review.toml");
    std::fs::write(
        &policy,
        "[[filesystem.mounts]]\nworkspace = true\nguest = \"/workspace\"\nmode = \"overlay\"\n",
    )
    .unwrap();
    std::fs::write(a.cwd().join("main.txt"), "one\ntwo\n").unwrap();
    let allow = format!("review={}", policy.display());
    let calls = json!([
        ["sandbox_create", {"profile": "review"}],
        ["file_write", {"id": "$id", "path": "/workspace/new.txt", "content": "hello\n"}],
        ["sandbox_exec", {"id": "$id", "command": "echo three >> main.txt"}],
        ["sandbox_diff", {"id": "$id"}],
        ["sandbox_create", {"profile": "default"}],
    ]);
    let s = client(&a, &["--allow-profile", &allow], calls);
    let [create, write, exec, diff, other] = s.results.as_slice() else {
        panic!("{} results", s.results.len());
    };
    let created = ok(create);
    assert_eq!(created["policy"], policy.to_str().unwrap(), "{created}");
    ok(write);
    assert_eq!(ok(exec)["exit_code"], 0);
    let mount = &ok(diff)["mounts"][0];
    assert_eq!(
        (&mount["mode"], &mount["method"]),
        (&json!("overlay"), &json!("overlay"))
    );
    let changes = mount["changes"].as_array().unwrap();
    let kinds: Vec<(&str, &str)> = changes
        .iter()
        .map(|c| (c["path"].as_str().unwrap(), c["kind"].as_str().unwrap()))
        .collect();
    assert_eq!(
        kinds,
        [("main.txt", "modified"), ("new.txt", "added")],
        "{mount}"
    );
    let main_diff = changes[0]["diff"].as_str().unwrap();
    assert!(
        main_diff.contains("\n+three\n") && main_diff.contains("--- a/main.txt"),
        "{main_diff}"
    );
    assert!(changes[1]["diff"].as_str().unwrap().contains("+hello"));
    // The host tree is untouched until the user applies the overlay.
    assert_eq!(
        std::fs::read_to_string(a.cwd().join("main.txt")).unwrap(),
        "one\ntwo\n"
    );
    assert!(!a.cwd().join("new.txt").exists());
    // Only the user's file was allowed: the shipped default is not.
    let (code, detail) = error(other);
    assert_eq!(code, "profile_not_allowed");
    assert!(detail.contains("the user allowed: review."), "{detail}");
    // The client went away without sandbox_destroy: the server deleted its sandbox on the way
    // out, and the overlay copy stays for `airlock diff` and `apply`.
    let id = created["id"].as_str().unwrap();
    let ended = airlock_testkit::wait_until(std::time::Duration::from_secs(60), || {
        a.audit_of(id).has(|e| e.kind == kind::SANDBOX_END)
    });
    let log = a.audit_of(id);
    assert!(ended, "the sandbox was not deleted:\n{log}");
    let end = log.first(kind::SANDBOX_END);
    assert_eq!(
        end.detail.as_deref(),
        Some("deleted through the API"),
        "{log}"
    );
    assert!(overlays.path().join(id).join("meta.json").is_file());
    let bind = log.first(kind::SANDBOX_BIND).clone();
    assert!(
        bind.detail
            .as_deref()
            .is_some_and(|d| d.contains("(overlay)")),
        "{bind:?}"
    );
}
