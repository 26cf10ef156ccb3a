//! Keys stay on the host: the real Claude Code CLI gets a placeholder, the egress gateway
//! terminates TLS to the (HTTPS, test-CA) fake API and writes the key into the request; a
//! placeholder sent anywhere else is refused and audited; a `command:` source is run again
//! after its ttl; HTTPS method/path rules apply; and nothing in the guest or in any output of
//! the run holds the key.

use airlock_testkit::audit::{Decision, kind};
use airlock_testkit::models::{FakeAnthropic, Task};
use airlock_testkit::tls::TestCa;
use airlock_testkit::{Airlock, text, write_policy};

/// `key` with one character in brackets: a grep pattern that matches the key but does not
/// contain it, so the scan itself leaves no trace of it.
fn pattern(key: &str) -> String {
    format!("{}[{}]{}", &key[..5], &key[5..6], &key[6..])
}

fn random_hex(n: usize) -> String {
    let bytes = std::fs::read("/proc/sys/kernel/random/uuid").unwrap();
    let mut s: String = text(&bytes)
        .chars()
        .filter(char::is_ascii_hexdigit)
        .collect();
    while s.len() < n {
        s.push_str(&random_hex(n - s.len()));
    }
    s.truncate(n);
    s
}

#[test]
fn claude_code_works_with_the_key_only_on_the_host() {
    let a = Airlock::start();
    let ws = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    let ca_path = ca.write(dir.path());
    let api = FakeAnthropic::start_tls(Task::default(), &ca);
    let other = FakeAnthropic::start_tls(Task::default(), &ca);
    let rotating = FakeAnthropic::start_tls(Task::default(), &ca);
    let key = format!("sk-ant-test-{}", random_hex(32));
    let counter = dir.path().join("mints");
    let mint = format!(
        "sh -c 'n=$(cat {c} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {c}; echo minted-$n'",
        c = counter.display()
    );
    let (p1, p2, p3) = (api.port(), other.port(), rotating.port());
    let policy = write_policy(
        dir.path(),
        &format!(
            r#"extends = "claude-code"
[network]
allow = ["127.0.0.1:{p1}", "127.0.0.1:{p2}", "127.0.0.1:{p3}"]
extra_ca = [{ca:?}]

# The second host is terminated through its HTTP rules.
[[network.http]]
host = "127.0.0.1:{p2}"
action = "allow"
[[network.http]]
host = "127.0.0.1:{p2}"
methods = ["POST"]
path = "/v1/forbidden"
action = "deny"

# Replaces the profile's entry of the same name: the fake API instead of api.anthropic.com.
[[network.credentials]]
name = "anthropic"
host = "127.0.0.1:{p1}"
header = "x-api-key"
source = "env:AIRLOCK_TEST_ANTHROPIC_KEY"
guest_env = "ANTHROPIC_API_KEY"

[[network.credentials]]
name = "rotating"
host = "127.0.0.1:{p3}"
header = "authorization"
format = "Bearer {{}}"
source = "command:{mint}"
ttl = "1s"
guest_env = "ROTATING_TOKEN"
"#,
            ca = ca_path.display().to_string(),
            mint = mint.replace('\\', "\\\\").replace('"', "\\\""),
        ),
    );
    let p = pattern(&key);
    let script = format!(
        r#"claude -p 'Create hello.txt with the greeting.' --dangerously-skip-permissions
echo "claude-rc=$?"
curl -s -o /dev/null -w 'leak-status=%{{http_code}}\n' -H "x-api-key: $ANTHROPIC_API_KEY" https://127.0.0.1:{p2}/v1/messages
curl -s -o /dev/null -w 'forbidden-status=%{{http_code}}\n' -X POST -d x https://127.0.0.1:{p2}/v1/forbidden
curl -s -o /dev/null -w 'ok-status=%{{http_code}}\n' https://127.0.0.1:{p2}/api/hello
curl -s -o /dev/null -w 'rotating-1=%{{http_code}}\n' -H "Authorization: Bearer $ROTATING_TOKEN" https://127.0.0.1:{p3}/api/hello
sleep 2
curl -s -o /dev/null -w 'rotating-2=%{{http_code}}\n' -H "Authorization: Bearer $ROTATING_TOKEN" https://127.0.0.1:{p3}/api/hello
P='{p}'
echo "env-hits=$(env | grep -c -e "$P")"
echo "proc-hits=$(cat /proc/[0-9]*/environ /proc/[0-9]*/cmdline 2>/dev/null | tr '\0' '\n' | grep -c -e "$P")"
echo "file-hits=$(grep -rlas -e "$P" / --exclude-dir=proc --exclude-dir=sys --exclude-dir=dev 2>/dev/null | wc -l)"
echo "placeholder-set=$(test -n "$ANTHROPIC_API_KEY" && echo yes)"
"#
    );
    let out = a
        .command([
            "run",
            // Keep the state dir (gateway logs, console, the guest's disk) to search it too.
            "--keep",
            "--agent",
            "claude-code",
            "--policy",
            &policy,
            "--workspace",
            ws.path().to_str().unwrap(),
            "-e",
            "no_proxy=none",
            "-e",
            "NO_PROXY=none",
            "-e",
            &format!("ANTHROPIC_BASE_URL={}", api.url()),
            "-e",
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1",
            "--",
            "sh",
            "-c",
            &script,
        ])
        .env("AIRLOCK_TEST_ANTHROPIC_KEY", &key)
        .env("AIRLOCK_LOG", "debug")
        .output()
        .unwrap();
    let stdout = text(&out.stdout);
    let stderr = text(&out.stderr);
    let report = format!("stdout:\n{stdout}\nstderr:\n{stderr}");
    for line in [
        "claude-rc=0",
        "leak-status=403",
        "forbidden-status=403",
        "ok-status=200",
        "rotating-1=200",
        "rotating-2=200",
        "env-hits=0",
        "proc-hits=0",
        "file-hits=0",
        "placeholder-set=yes",
    ] {
        assert!(
            stdout.lines().any(|l| l == line),
            "no {line:?} in\n{report}"
        );
    }
    // The agent did its task, and the API got the real key.
    let task = api.task();
    assert_eq!(
        std::fs::read_to_string(ws.path().join(&task.file)).unwrap_or_default(),
        task.content,
        "{report}"
    );
    assert!(
        api.seen()
            .iter()
            .any(|r| r.header("x-api-key") == Some(key.as_str())),
        "the API never got the key: {:?}",
        api.seen()
            .iter()
            .map(|r| r.header("x-api-key"))
            .collect::<Vec<_>>()
    );
    // The second host never got the placeholder (nor the key); only the allowed GET reached it.
    let to_other: Vec<String> = other
        .seen()
        .iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert_eq!(to_other, ["GET /api/hello"], "{report}");
    // The command was run at start, and again whenever its 1 s ttl was over: the request
    // after the 2 s pause carries the next value it printed.
    let seen = rotating.seen();
    let minted: Vec<u32> = seen
        .iter()
        .filter_map(|r| {
            r.header("authorization")?
                .strip_prefix("Bearer minted-")?
                .parse()
                .ok()
        })
        .collect();
    assert_eq!(minted.len(), 2, "{report}");
    assert_eq!(minted[1], minted[0] + 1, "{minted:?}");
    let runs: u32 = std::fs::read_to_string(&counter)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(runs, minted[1], "the command ran {runs} times");

    // Audited: the injections, the leak attempt, the refused POST; never the value.
    let log = a.audit();
    let with = |k: &'static str, credential: &'static str, port: u16| {
        move |e: &airlock_testkit::audit::Event| {
            e.kind == k
                && e.net.as_ref().is_some_and(|n| {
                    n.credential.as_deref() == Some(credential) && n.port == Some(port)
                })
        }
    };
    assert!(
        log.has(with(kind::CREDENTIAL_INJECT, "anthropic", p1)),
        "{log}"
    );
    assert!(
        log.has(with(kind::CREDENTIAL_INJECT, "rotating", p3)),
        "{log}"
    );
    assert!(
        log.has(|e| with(kind::CREDENTIAL_LEAK_ATTEMPT, "anthropic", p2)(e)
            && e.decision == Some(Decision::Deny)
            && e.reason.as_deref() == Some("placeholder_in_header")),
        "{log}"
    );
    assert!(
        log.has(|e| e.kind == kind::NET_HTTP
            && e.decision == Some(Decision::Deny)
            && e.net
                .as_ref()
                .is_some_and(|n| n.path.as_deref() == Some("/v1/forbidden")
                    && n.method.as_deref() == Some("POST"))),
        "{log}"
    );
    let audit_text: String = a
        .audit_logs()
        .iter()
        .map(|(path, _)| std::fs::read_to_string(path).unwrap())
        .collect();
    for (what, output) in [
        ("stdout", &stdout),
        ("stderr", &stderr),
        ("audit log", &audit_text),
    ] {
        assert!(!output.contains(&key), "the key is in the {what}");
        assert!(
            !output.contains("minted-"),
            "a minted token is in the {what}"
        );
    }
    // Nor any file the run left on the host: gateway and engine logs (at debug level), the
    // console, the guest's disk image (once every process of the run is gone).
    a.assert_processes_gone();
    let found = std::process::Command::new("grep")
        .args(["-rlaF", "-e", &key, "-e", "minted-"])
        .arg(a.state_dir())
        .output()
        .unwrap();
    assert_eq!(
        found.status.code(),
        Some(1),
        "found in: {}",
        text(&found.stdout)
    );
    for entry in std::fs::read_dir(a.state_dir()).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            std::fs::remove_dir_all(&path).unwrap();
        } else {
            std::fs::remove_file(&path).unwrap();
        }
    }
    a.assert_clean();
}

#[test]
fn an_extra_ca_is_trusted_in_the_guest_only_when_the_policy_names_it() {
    let a = Airlock::start();
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    let ca_path = ca.write(dir.path());
    let server = FakeAnthropic::start_tls(Task::default(), &ca);
    let base = format!(
        "[sandbox]\nimage = \"debian\"\n[network]\nallow = [\"127.0.0.1:{}\"]\n",
        server.port()
    );
    let curl = format!(
        "curl -s -o /dev/null -w '%{{http_code}}\\n' {}/api/hello; echo curl-rc=$?",
        server.url()
    );
    let run = |policy: &str| {
        let out = a.run([
            "run",
            "--policy",
            policy,
            "-e",
            "no_proxy=none",
            "-e",
            "NO_PROXY=none",
            "--",
            "sh",
            "-c",
            &curl,
        ]);
        format!("{}{}", text(&out.stdout), text(&out.stderr))
    };
    let without = run(&write_policy(dir.path(), &base));
    // curl: (60) SSL certificate problem
    assert!(without.contains("curl-rc=60"), "{without}");
    let with = run(&write_policy(
        dir.path(),
        &format!("{base}extra_ca = [{:?}]\n", ca_path.display().to_string()),
    ));
    assert!(with.contains("200\ncurl-rc=0"), "{with}");
    a.assert_clean();
}
