//! Runs one command against a fake model API, to check a real agent CLI natively:
//!
//! ```text
//! fake_models anthropic|openai -- CMD [ARGS...]
//! ```
//!
//! Starts [`FakeAnthropic`] or [`FakeOpenAi`] with the default [`Task`], runs CMD in the current
//! directory with `FAKE_MODEL_URL` set to the server's URL, then prints every request the
//! server saw and exits 0 only if CMD succeeded, the final answer was served, and the task's
//! file in the current directory has exactly the task's content. Its last stdout line gives the
//! time to the first request and to the command's end: `fake-model-times first_request_ms=N
//! finish_ms=N`. With `FAKE_MODEL_DUMP=DIR` it
//! also writes each request (head and body) to `DIR/NN-METHOD.txt`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, ExitCode};
use std::time::Instant;

use airlock_testkit::models::{FakeAnthropic, FakeOpenAi, ModelServer, Task};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (api, cmd) = match args.split_first() {
        Some((api, rest)) if rest.first().is_some_and(|a| a == "--") && rest.len() > 1 => {
            (api.as_str(), &rest[1..])
        }
        _ => {
            eprintln!("usage: fake_models anthropic|openai -- CMD [ARGS...]");
            return ExitCode::from(2);
        }
    };
    let task = Task::default();
    let anthropic;
    let openai;
    let server: &ModelServer = match api {
        "anthropic" => {
            anthropic = FakeAnthropic::start(task.clone());
            &anthropic
        }
        "openai" => {
            openai = FakeOpenAi::start(task.clone());
            &openai
        }
        other => {
            eprintln!("unknown API {other:?}: anthropic or openai");
            return ExitCode::from(2);
        }
    };
    eprintln!("fake {api} API at {}", server.url());
    let started = Instant::now();
    let child = Command::new(&cmd[0])
        .args(&cmd[1..])
        .env("FAKE_MODEL_URL", server.url())
        .spawn();
    // When the first request arrived, polled (10 ms resolution) while the command runs.
    let mut first_request = None;
    let status = child.and_then(|mut c| {
        loop {
            if first_request.is_none() && !server.seen().is_empty() {
                first_request = Some(started.elapsed());
            }
            if let Some(s) = c.try_wait()? {
                break Ok(s);
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    });
    let took = started.elapsed();
    eprintln!("--- requests seen:");
    let dump = std::env::var_os("FAKE_MODEL_DUMP");
    for (n, r) in server.seen().into_iter().enumerate() {
        if let Some(dir) = &dump {
            let path = std::path::Path::new(dir).join(format!("{n:02}-{}.txt", r.method));
            let mut text = format!("{} {}\n", r.method, r.path);
            for (name, value) in &r.headers {
                text.push_str(&format!("{name}: {value}\n"));
            }
            text.push('\n');
            text.push_str(&String::from_utf8_lossy(&r.body));
            std::fs::write(path, text).unwrap();
        }
        let key_headers: Vec<&str> = ["x-api-key", "authorization"]
            .into_iter()
            .filter(|h| r.header(h).is_some())
            .collect();
        let body = r.json();
        let kind = body.as_ref().map_or(String::new(), |b| {
            let tools = b["tools"].as_array().map_or(0, Vec::len);
            format!(
                " model={} stream={} tools={tools} max_tokens={}",
                b["model"], b["stream"], b["max_tokens"]
            )
        });
        eprintln!(
            "{} {} key={:?} via {:?} ({} bytes){kind}",
            r.method,
            r.path,
            r.api_key(),
            key_headers,
            r.body.len()
        );
    }
    let content = std::fs::read(&task.file).ok();
    let exact = content.as_deref() == Some(task.content.as_bytes());
    eprintln!(
        "--- command: {status:?} in {:.1}s; tool calls served: {}; finished: {}; {}: {}",
        took.as_secs_f64(),
        server.tool_calls_served(),
        server.finished(),
        task.file,
        match &content {
            None => "missing".to_string(),
            Some(_) if exact => "exact content".to_string(),
            Some(c) => format!("wrong content {:?}", String::from_utf8_lossy(c)),
        }
    );
    // One line for scripts (bench/agents.sh).
    println!(
        "fake-model-times first_request_ms={} finish_ms={}",
        first_request.map_or("-".to_string(), |d| d.as_millis().to_string()),
        took.as_millis()
    );
    let ok = status.is_ok_and(|s| s.success()) && server.finished() && exact;
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
