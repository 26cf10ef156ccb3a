//! The review page (`airlock ui`) in a real browser: Debian's chromium, driven through
//! chromedriver with fantoccini. Sandboxes really run; the page is read the way a user reads it.

use airlock_testkit::audit::{Decision, kind};
use airlock_testkit::upstream::Upstream;
use airlock_testkit::{Airlock, text, wait_until, write_policy};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const XSS_NAME: &str = "<img src=x onerror=alert(1)>.txt";

/// A child process killed when dropped.
/// A child killed on drop, with a directory removed after it (the browser's profile).
struct Killed {
    child: Child,
    _profile: Option<tempfile::TempDir>,
}

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `airlock ui` for this test's audit and overlay dirs; returns it and the URL it printed.
fn start_ui(a: &Airlock, overlays: &Path) -> (Killed, String) {
    let mut child = a
        .command(["ui", "--listen", "127.0.0.1:0"])
        .env("AIRLOCK_OVERLAY_DIR", overlays)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line.trim().to_string();
    assert!(
        url.starts_with("http://127.0.0.1:") && url.contains("?token="),
        "{url:?}"
    );
    (
        Killed {
            child,
            _profile: None,
        },
        url,
    )
}

/// chromedriver on a free port, and a headless chromium session through it.
async fn browser() -> (Killed, Client) {
    for tool in ["/usr/bin/chromium", "/usr/bin/chromedriver"] {
        assert!(
            Path::new(tool).exists(),
            "{tool} is missing: run ./scripts/setup --tests (installs Debian's chromium and chromium-driver)"
        );
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let profile = tempfile::Builder::new()
        .prefix("airlock-ui-test-profile-")
        .tempdir()
        .unwrap();
    let profile_arg = format!("--user-data-dir={}", profile.path().display());
    let driver = Killed {
        child: Command::new("/usr/bin/chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
        _profile: Some(profile),
    };
    assert!(
        wait_until(Duration::from_secs(30), || std::net::TcpStream::connect((
            "127.0.0.1",
            port
        ))
        .is_ok()),
        "chromedriver did not start"
    );
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": "/usr/bin/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1400,1000", profile_arg],
        }),
    );
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    let client = ClientBuilder::new(connector)
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .unwrap();
    (driver, client)
}

/// Evaluates `expr` (a JS expression) in the page.
async fn js(c: &Client, expr: &str) -> Value {
    c.execute(&format!("return ({expr});"), vec![])
        .await
        .unwrap()
}

/// Waits until `expr` is truthy in the page; returns its value.
async fn until(c: &Client, what: &str, expr: &str, secs: u64) -> Value {
    let end = Instant::now() + Duration::from_secs(secs);
    loop {
        let v = js(c, expr).await;
        if !(v.is_null() || v == json!(false) || v == json!(0) || v == json!("")) {
            return v;
        }
        if Instant::now() > end {
            let body = js(c, "document.body.innerText").await;
            panic!(
                "timed out waiting for {what}; page:\n{}",
                body.as_str().unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Where screenshots go: `$AIRLOCK_UI_SCREENSHOTS` (the README's images), else a temp dir.
fn shot_dir() -> PathBuf {
    std::env::var_os("AIRLOCK_UI_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
}

async fn screenshot(c: &Client, name: &str) {
    let png = c.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
    std::fs::write(shot_dir().join(name), png).unwrap();
}

/// The timeline row of kind `kind` whose text contains `needle`, as {cls, decision, rule, text}.
fn row_with(kind: &str, needle: &str) -> String {
    format!(
        "(() => {{ const r = [...document.querySelectorAll('#timeline tr.rec')].find(r => r.dataset.kind === {kind:?} && r.textContent.includes({needle:?})); \
         return r ? {{cls: r.className, decision: r.dataset.decision, kind: r.dataset.kind, rule: r.querySelector('.rule').textContent, text: r.textContent}} : null; }})()"
    )
}

fn no_alert_error(e: &fantoccini::error::CmdError) -> bool {
    matches!(e, fantoccini::error::CmdError::Standard(w) if w.error == fantoccini::error::ErrorStatus::NoSuchAlert)
}

#[test]
fn the_review_page_shows_a_run_live_verifies_it_and_applies_or_discards_its_changes() {
    let a = Airlock::start();
    let go = Arc::new(AtomicBool::new(false));
    let flag = go.clone();
    let upstream = Upstream::start(move |r| {
        let body = if r.path == "/go" {
            if flag.load(Ordering::SeqCst) {
                "yes\n"
            } else {
                "no\n"
            }
            .to_string()
        } else {
            format!("hello from {}\n", r.path)
        };
        ("200 OK", body.into_bytes())
    });
    let port = upstream.port();
    let ws = tempfile::tempdir().unwrap();
    std::fs::write(ws.path().join("notes.txt"), "first\n").unwrap();
    std::fs::create_dir_all(ws.path().join(".git/hooks")).unwrap();
    let overlays = tempfile::tempdir().unwrap();
    let policy = write_policy(
        overlays.path(),
        &format!(
            "extends = \"default\"\n[network]\nallow = [\"127.0.0.1:{port}\"]\n\
             [[filesystem.mounts]]\nworkspace = true\nguest = \"/workspace\"\nmode = \"overlay\"\n"
        ),
    );
    // Sandbox A: writes files (one with a name made of HTML), makes an allowed request whose
    // path holds a script tag and a denied one, tries a protected path, then waits for the
    // test's go-ahead before its last write, so the page sees that one arrive live.
    let script = format!(
        "unset no_proxy NO_PROXY; cd /workspace; echo changed > notes.txt; echo new > added.txt; \
         echo x > '{XSS_NAME}'; echo hook > .git/hooks/pre-commit; \
         wget -q -O- 'http://127.0.0.1:{port}/<script>alert(2)</script>'; \
         wget -q -O- http://evil.example/; \
         until wget -q -O- http://127.0.0.1:{port}/go | grep -q yes; do sleep 0.3; done; \
         echo live > live-marker.txt; true"
    );
    let ws_arg = ws.path().to_str().unwrap().to_string();
    let run_a = a
        .command([
            "run",
            "--policy",
            &policy,
            "--workspace",
            &ws_arg,
            "--",
            "sh",
            "-c",
            &script,
        ])
        .env("AIRLOCK_OVERLAY_DIR", overlays.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Its log, once the guest has made the denied request.
    let mut id_a = String::new();
    assert!(
        wait_until(Duration::from_secs(300), || {
            a.audit_logs().into_iter().any(|(path, log)| {
                let hit = log.has(|e| {
                    e.decision == Some(Decision::Deny)
                        && e.net.as_ref().and_then(|n| n.host.as_deref()) == Some("evil.example")
                });
                if hit {
                    id_a = path.file_stem().unwrap().to_string_lossy().into_owned();
                }
                hit
            })
        }),
        "sandbox A never made its denied request"
    );
    let (ui, url) = start_ui(&a, overlays.path());
    let base = url.split("/?token").next().unwrap().to_string();

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (_driver, c) = browser().await;
        c.goto(&url).await.unwrap();
        // The list shows the sandbox, running.
        let listed = until(&c, "sandbox A in the list", &format!(
            "(() => {{ const r = document.querySelector('#sandboxes tr[data-id=\"{id_a}\"]'); return r && r.textContent; }})()"
        ), 30).await;
        assert!(listed.as_str().unwrap().contains("running"), "{listed}");
        // The token left the address bar.
        let href = js(&c, "location.href").await;
        assert!(!href.as_str().unwrap().contains("token"), "{href}");

        // The timeline, live.
        c.goto(&format!("{base}/#/sb/{id_a}")).await.unwrap();
        until(&c, "the timeline", "document.querySelectorAll('#timeline tr.rec').length", 30).await;
        until(&c, "live mode", "document.getElementById('live-state').textContent.includes('following')", 30).await;
        go.store(true, Ordering::SeqCst);
        let live = until(&c, "the live record", &row_with("fs.create", "live-marker.txt"), 300).await;
        assert_eq!(live["kind"], "fs.create", "{live}");
        assert!(live["cls"].as_str().unwrap().contains("fresh"), "appended live, not by a reload: {live}");
        until(&c, "the end of the run", "document.getElementById('live-state').textContent.includes('ended')", 300).await;

        // Integrity: verified once sealed.
        let state = until(&c, "the verified badge", "document.getElementById('integrity').dataset.state === 'verified' && document.getElementById('integrity').textContent", 60).await;
        assert_eq!(state, "verified", "{state}");

        // The denied connection stands out, with its rule.
        c.find(Locator::Css("#f-decision input[value=deny]")).await.unwrap().click().await.unwrap();
        // The filtered page replaces the table asynchronously: wait for it, not for a row the
        // unfiltered table already had.
        until(&c, "the denials-only page", "(() => { const rs = [...document.querySelectorAll('#timeline tr.rec')]; return rs.length > 0 && rs.every(r => r.dataset.decision === 'deny'); })()", 30).await;
        let denied = until(&c, "the denied connection", &row_with("net.http", "evil.example"), 30).await;
        assert_eq!(denied["decision"], "deny", "{denied}");
        assert!(denied["cls"].as_str().unwrap().contains("dec-deny"), "{denied}");
        assert!(denied["rule"].as_str().unwrap().contains("network.default"), "{denied}");
        let bg = js(&c, "(() => { const r = [...document.querySelectorAll('#timeline tr.rec')].find(r => r.dataset.kind === 'net.http' && r.textContent.includes('evil.example')); return getComputedStyle(r).backgroundColor; })()").await;
        assert_ne!(bg, "rgba(0, 0, 0, 0)", "a denial is highlighted");
        let all_denied = js(&c, "[...document.querySelectorAll('#timeline tr.rec')].every(r => r.dataset.decision === 'deny')").await;
        assert_eq!(all_denied, true, "the filter keeps denials only");
        // A record expands to all its fields, the deciding rule among them.
        c.find(Locator::Css("#timeline tr.rec[data-kind=\"net.http\"][data-decision=\"deny\"]")).await.unwrap().click().await.unwrap();
        let fields = until(&c, "the expanded record", "(() => { const f = document.querySelector('#timeline tr.fields'); return f && f.textContent; })()", 30).await;
        let fields = fields.as_str().unwrap();
        assert!(fields.contains("rule") && fields.contains("network.default") && fields.contains("net.host") && fields.contains("hash"), "{fields}");
        c.find(Locator::Css("#f-decision input[value=deny]")).await.unwrap().click().await.unwrap();
        until(&c, "the whole timeline again", "document.querySelectorAll('#timeline tr.dec-allow').length", 30).await;
        js(&c, "(() => { const r = [...document.querySelectorAll('#timeline tr.rec')].find(r => r.dataset.kind === 'net.http' && r.textContent.includes('evil.example')); r.scrollIntoView({block: 'center'}); return true; })()").await;
        screenshot(&c, "ui-timeline.png").await;

        // Guest text is shown as text: no element made from it, no dialog.
        until(&c, "the HTML-named file", &row_with("fs.create", XSS_NAME), 30).await;
        until(&c, "the script-tag path", &row_with("net.http", "<script>alert(2)</script>"), 30).await;
        let injected = js(&c, "document.querySelectorAll('#timeline img, #timeline script, main img').length").await;
        assert_eq!(injected, 0, "no element was made from guest text");
        match c.get_alert_text().await {
            Err(e) if no_alert_error(&e) => {}
            other => panic!("a dialog opened or the check failed: {other:?}"),
        }

        // Charts: events per minute by kind, bytes per host with the denied one marked, memory.
        c.goto(&format!("{base}/#/sb/{id_a}/charts")).await.unwrap();
        until(&c, "the per-minute chart", "document.querySelectorAll('#chart-minutes rect.area-fs').length", 30).await;
        let host = until(&c, "the hosts chart", "(() => { const r = document.querySelector('#chart-hosts tr[data-host=\"evil.example\"]'); return r && r.className; })()", 30).await;
        assert_eq!(host, "has-denials");
        until(&c, "the memory chart", "document.querySelector('#chart-mem polyline')", 30).await;
        screenshot(&c, "ui-charts.png").await;

        // Review: the diff, the refused write, binary marks; then Apply.
        c.goto(&format!("{base}/#/sb/{id_a}/changes")).await.unwrap();
        let diff = until(&c, "the diff", "(() => { const c = document.querySelector('.change[data-path=\"notes.txt\"]'); return c && c.textContent; })()", 30).await;
        assert!(diff.as_str().unwrap().contains("+changed"), "{diff}");
        let names = js(&c, "[...document.querySelectorAll('.change')].map(c => c.dataset.path)").await;
        assert!(names.as_array().unwrap().contains(&json!(XSS_NAME)), "{names}");
        let refused = js(&c, "document.getElementById('refused').textContent").await;
        assert!(refused.as_str().unwrap().contains(".git/hooks/pre-commit"), "{refused}");
        assert_eq!(js(&c, "document.querySelectorAll('#changes img').length").await, 0);
        screenshot(&c, "ui-diff.png").await;
        c.find(Locator::Css("#apply")).await.unwrap().click().await.unwrap();
        let result = until(&c, "the apply result", "(() => { const r = document.getElementById('action-result'); return r.className !== 'muted' && r.textContent; })()", 60).await;
        assert!(result.as_str().unwrap().starts_with("Applied"), "{result}");
        match c.get_alert_text().await {
            Err(e) if no_alert_error(&e) => {}
            other => panic!("a dialog opened: {other:?}"),
        }
        c.close().await.unwrap();
    });
    let out_a = run_a.wait_with_output().unwrap();
    assert!(out_a.status.success(), "{}", text(&out_a.stderr));
    assert_eq!(
        std::fs::read_to_string(ws.path().join("notes.txt")).unwrap(),
        "changed\n"
    );
    assert_eq!(
        std::fs::read_to_string(ws.path().join("added.txt")).unwrap(),
        "new\n"
    );
    assert!(ws.path().join(XSS_NAME).exists());
    assert!(!ws.path().join(".git/hooks/pre-commit").exists());
    let log_a = a.audit_of(&id_a);
    let applied = log_a.first(kind::USER_APPLY);
    assert_eq!(applied.decision, Some(Decision::Allow), "{log_a}");
    assert!(
        applied
            .detail
            .as_deref()
            .unwrap()
            .starts_with("airlock ui: applied"),
        "{log_a}"
    );

    // Sandbox B: its change is discarded from the page and never reaches the workspace.
    let out_b = a
        .command([
            "run",
            "--policy",
            &policy,
            "--workspace",
            &ws_arg,
            "--",
            "sh",
            "-c",
            "cd /workspace && echo discard-me > notes.txt && echo no > discarded.txt",
        ])
        .env("AIRLOCK_OVERLAY_DIR", overlays.path())
        .output()
        .unwrap();
    assert!(out_b.status.success(), "{}", text(&out_b.stderr));
    let id_b = text(&out_b.stderr)
        .split("airlock diff ")
        .nth(1)
        .and_then(|s| s.split('`').next())
        .unwrap()
        .to_string();
    rt.block_on(async {
        let (_driver, c) = browser().await;
        c.goto(&url).await.unwrap();
        c.goto(&format!("{base}/#/sb/{id_b}/changes")).await.unwrap();
        until(&c, "B's diff", "document.querySelector('.change[data-path=\"discarded.txt\"]')", 60).await;
        c.find(Locator::Css("#discard")).await.unwrap().click().await.unwrap();
        let result = until(&c, "the discard result", "(() => { const r = document.getElementById('action-result'); return r.className !== 'muted' && r.textContent; })()", 60).await;
        assert!(result.as_str().unwrap().starts_with("Discarded"), "{result}");
        until(&c, "no overlay left", "document.getElementById('no-overlay')", 30).await;

        // A record edited on disk: the badge says broken, and where.
        let log = a.audit_dir().join(format!("{id_a}.jsonl"));
        let edited = std::fs::read_to_string(&log).unwrap().replacen("evil.example", "good.example", 1);
        std::fs::write(&log, edited).unwrap();
        c.goto(&format!("{base}/#/sb/{id_a}")).await.unwrap();
        c.refresh().await.unwrap();
        let state = until(&c, "the broken badge", "document.getElementById('integrity').dataset.state === 'broken' && document.getElementById('integrity-detail').textContent", 60).await;
        assert!(state.as_str().unwrap().contains("line"), "says where: {state}");
        assert_eq!(js(&c, "document.getElementById('integrity').textContent").await, "BROKEN");
        c.close().await.unwrap();
    });
    assert_eq!(
        std::fs::read_to_string(ws.path().join("notes.txt")).unwrap(),
        "changed\n"
    );
    assert!(!ws.path().join("discarded.txt").exists());
    assert!(!overlays.path().join(&id_b).exists());
    let log_b = a.audit_of(&id_b);
    assert_eq!(
        log_b.first(kind::USER_DISCARD).decision,
        Some(Decision::Allow),
        "{log_b}"
    );
    drop(ui);
    a.assert_clean();
}
