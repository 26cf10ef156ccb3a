//! Handlers: each checks its input (400 naming the field), finds the sandbox (404), and calls
//! the [`Daemon`]. Streams (exec output, events) are NDJSON bodies fed by bounded queues. The
//! routes are in `router.rs`.

use crate::daemon::{Daemon, DaemonError, changes, exec, files};
use crate::error;
use crate::types::{
    ChangeList, CreateSandboxRequest, ErrorBody, EventsQuery, ExecBody, ExecLine, FileList,
    FileStat, FileWritten, PathQuery, SandboxInfo, SandboxList, SignalBody, StdinBody,
    TerminalSize,
};
use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde::de::DeserializeOwned;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncSeekExt};
use tokio::sync::mpsc;

/// Media type of the streamed endpoints.
pub const NDJSON: &str = "application/x-ndjson";
/// How often a followed audit log is polled.
const FOLLOW_POLL: Duration = Duration::from_millis(200);

pub(crate) type Shared = State<Arc<Daemon>>;

/// A JSON body, with parse errors as 400s that name the field and position.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e| body_rejection(&e.body_text(), e.status()))?;
        let bytes: &[u8] = if bytes.is_empty() { b"{}" } else { &bytes };
        serde_json::from_slice(bytes).map(JsonBody).map_err(|e| {
            DaemonError::bad("body", format!("invalid JSON request: {e}")).into_response()
        })
    }
}

fn body_rejection(text: &str, status: StatusCode) -> Response {
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        error::response(status, "payload_too_large", format!("body: {text}"))
    } else {
        error::response(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("body: {text}"),
        )
    }
}

/// Query parameters, with parse errors as 400s.
pub struct Params<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> axum::extract::FromRequestParts<S> for Params<T> {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::try_from_uri(&parts.uri)
            .map(|q| Params(q.0))
            .map_err(|e| DaemonError::bad("query", e.body_text()).into_response())
    }
}

/// An NDJSON body fed by a queue; holds whatever must live as long as the stream.
struct LineBody {
    rx: mpsc::Receiver<Vec<u8>>,
    _guard: Option<exec::AbortOnDrop>,
}

impl http_body::Body for LineBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        self.rx
            .poll_recv(cx)
            .map(|o| o.map(|line| Ok(http_body::Frame::data(Bytes::from(line)))))
    }
}

fn ndjson(body: LineBody, status: StatusCode) -> Response {
    let mut r = Response::new(Body::new(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(NDJSON));
    r
}

/// The OpenAPI document of this API.
#[utoipa::path(get, path = "/openapi.json", tag = "meta",
    responses((status = 200, description = "The OpenAPI 3.1 document (this file)", content_type = "application/json", body = Object)))]
pub async fn openapi_json(axum::Extension(doc): axum::Extension<Arc<OpenApiJson>>) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], doc.0.clone()).into_response()
}

/// The OpenAPI document as served (the router adds it; see `crate::openapi::document`).
#[derive(Debug)]
pub struct OpenApiJson(pub String);

/// Create a sandbox and wait until it is running.
///
/// Boots a fresh guest (a few seconds under TCG; boots are queued beyond the daemon's
/// `--max-starting`). The policy is given as text (`policy`) or a shipped `profile`; shares,
/// limits and the audit log follow it exactly as for `airlock run`.
#[utoipa::path(post, path = "/v1/sandboxes", tag = "sandboxes",
    request_body = CreateSandboxRequest,
    responses(
        (status = 201, description = "Running", body = SandboxInfo),
        (status = 400, description = "Bad input; `detail` names the field", body = ErrorBody),
        (status = 409, description = "The daemon is at its sandbox limit", body = ErrorBody),
        (status = 500, description = "The sandbox did not boot (`boot_failed`) or the host failed", body = ErrorBody)))]
pub async fn create_sandbox(
    State(d): Shared,
    JsonBody(body): JsonBody<CreateSandboxRequest>,
) -> Result<Response, DaemonError> {
    let info = d.create(body).await?;
    Ok((StatusCode::CREATED, axum::Json(info)).into_response())
}

/// List sandboxes.
#[utoipa::path(get, path = "/v1/sandboxes", tag = "sandboxes",
    responses((status = 200, description = "Every sandbox, oldest first", body = SandboxList)))]
pub async fn list_sandboxes(State(d): Shared) -> axum::Json<SandboxList> {
    axum::Json(SandboxList {
        sandboxes: d.list(),
    })
}

/// The warm pool: per image, how many guests are kept, ready and booting, and how creates
/// fared.
#[utoipa::path(get, path = "/v1/pool", tag = "sandboxes",
    responses(
        (status = 200, description = "The pool", body = crate::daemon::pool::PoolStatus),
        (status = 404, description = "The daemon keeps no pool (start it with --pool IMAGE=N)", body = ErrorBody)))]
pub async fn get_pool(
    State(d): Shared,
) -> Result<axum::Json<crate::daemon::pool::PoolStatus>, DaemonError> {
    d.pool_status().map(axum::Json).ok_or_else(|| {
        DaemonError::NotFound("this daemon keeps no warm pool; start it with --pool IMAGE=N".into())
    })
}

/// Get one sandbox.
#[utoipa::path(get, path = "/v1/sandboxes/{id}", tag = "sandboxes",
    params(("id" = String, Path, description = "Sandbox id")),
    responses(
        (status = 200, description = "The sandbox", body = SandboxInfo),
        (status = 404, description = "No such sandbox", body = ErrorBody)))]
pub async fn get_sandbox(
    State(d): Shared,
    Path(id): Path<String>,
) -> Result<axum::Json<SandboxInfo>, DaemonError> {
    Ok(axum::Json(d.get(&id)?.info()))
}

/// Delete a sandbox: stop it if running (ending its execs), then forget it.
///
/// Nothing it started is left: its processes, state dir and engine cgroup are gone, and its
/// audit log is sealed with `sandbox.end`. The log itself, and overlay copies, stay.
#[utoipa::path(delete, path = "/v1/sandboxes/{id}", tag = "sandboxes",
    params(("id" = String, Path, description = "Sandbox id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such sandbox", body = ErrorBody),
        (status = 409, description = "It is still starting or already stopping", body = ErrorBody)))]
pub async fn delete_sandbox(
    State(d): Shared,
    Path(id): Path<String>,
) -> Result<StatusCode, DaemonError> {
    finish_detached(async move { d.delete(&id).await }).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Runs a teardown on its own task, so a client that disconnects (or is killed) mid-request
/// cannot cancel it half-way and leave the sandbox `stopping` with its audit log unsealed.
async fn finish_detached<T: Send + 'static>(
    work: impl std::future::Future<Output = Result<T, DaemonError>> + Send + 'static,
) -> Result<T, DaemonError> {
    tokio::spawn(work)
        .await
        .map_err(|e| DaemonError::Internal(format!("teardown task: {e}")))?
}

/// Stop a sandbox but keep its record (status `stopped`, with the reason).
#[utoipa::path(post, path = "/v1/sandboxes/{id}/stop", tag = "sandboxes",
    params(("id" = String, Path, description = "Sandbox id")),
    responses(
        (status = 200, description = "Stopped (stopping a stopped sandbox is a no-op)", body = SandboxInfo),
        (status = 404, description = "No such sandbox", body = ErrorBody),
        (status = 409, description = "It is still starting or already stopping", body = ErrorBody)))]
pub async fn stop_sandbox(
    State(d): Shared,
    Path(id): Path<String>,
) -> Result<axum::Json<SandboxInfo>, DaemonError> {
    let stopped = finish_detached(async move { d.stop(&id, "stopped through the API").await });
    Ok(axum::Json(stopped.await?))
}

/// Run a command and stream its output.
///
/// The response is NDJSON (`application/x-ndjson`), one `ExecLine` per line: first
/// `{"exec_id": ...}`, then `{"stream": "stdout"|"stderr", "data": <base64>}` as output arrives,
/// last `{"exit": {...}}`, or `{"error": {...}}` if the exec broke (for example the sandbox was
/// stopped). The exec id is also in the `Airlock-Exec-Id` header. Closing the connection ends
/// the command. The command runs as the policy's workload user with its seccomp profile, pids
/// limit and Landlock set, starting in the workspace mount unless `cwd` is given.
#[utoipa::path(post, path = "/v1/sandboxes/{id}/exec", tag = "exec",
    params(("id" = String, Path, description = "Sandbox id")),
    request_body = ExecBody,
    responses(
        (status = 200, description = "NDJSON stream of ExecLine objects", content_type = "application/x-ndjson", body = ExecLine,
            headers(("Airlock-Exec-Id" = String, description = "The exec id"))),
        (status = 400, description = "Bad input; `detail` names the field", body = ErrorBody),
        (status = 404, description = "No such sandbox", body = ErrorBody),
        (status = 409, description = "The sandbox is not running", body = ErrorBody)))]
pub async fn exec_command(
    State(d): Shared,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<ExecBody>,
) -> Result<Response, DaemonError> {
    let entry = d.get(&id)?;
    let started = exec::start(&entry, body)?;
    let mut r = ndjson(
        LineBody {
            rx: started.lines,
            _guard: Some(started.guard),
        },
        StatusCode::OK,
    );
    if let Ok(v) = HeaderValue::from_str(&started.exec_id) {
        r.headers_mut().insert("airlock-exec-id", v);
    }
    Ok(r)
}

fn exec_handle(
    d: &Daemon,
    id: &str,
    exec_id: &str,
) -> Result<Arc<crate::daemon::ExecHandle>, DaemonError> {
    let entry = d.get(id)?;
    entry.touch();
    exec::handle(&entry, exec_id)
}

/// Send stdin to a running exec (started with `stdin_open: true`).
#[utoipa::path(post, path = "/v1/sandboxes/{id}/execs/{exec_id}/stdin", tag = "exec",
    params(("id" = String, Path, description = "Sandbox id"), ("exec_id" = String, Path, description = "Exec id")),
    request_body = StdinBody,
    responses(
        (status = 204, description = "Queued (waits while the command is not reading)"),
        (status = 400, description = "Bad input", body = ErrorBody),
        (status = 404, description = "No such sandbox or running exec", body = ErrorBody),
        (status = 409, description = "Stdin is closed or the command ended", body = ErrorBody)))]
pub async fn exec_stdin(
    State(d): Shared,
    Path((id, exec_id)): Path<(String, String)>,
    JsonBody(body): JsonBody<StdinBody>,
) -> Result<StatusCode, DaemonError> {
    let handle = exec_handle(&d, &id, &exec_id)?;
    let data = body
        .data
        .as_deref()
        .map(|s| base64::engine::general_purpose::STANDARD.decode(s))
        .transpose()
        .map_err(|e| DaemonError::bad("data", format!("not valid base64: {e}")))?
        .unwrap_or_default();
    handle.stdin(data, body.eof).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Send a signal to a running exec's process group.
#[utoipa::path(post, path = "/v1/sandboxes/{id}/execs/{exec_id}/signal", tag = "exec",
    params(("id" = String, Path, description = "Sandbox id"), ("exec_id" = String, Path, description = "Exec id")),
    request_body = SignalBody,
    responses(
        (status = 204, description = "Delivered to the guest"),
        (status = 400, description = "Unknown signal", body = ErrorBody),
        (status = 404, description = "No such sandbox or running exec", body = ErrorBody),
        (status = 409, description = "The command ended", body = ErrorBody)))]
pub async fn exec_signal(
    State(d): Shared,
    Path((id, exec_id)): Path<(String, String)>,
    JsonBody(body): JsonBody<SignalBody>,
) -> Result<StatusCode, DaemonError> {
    let handle = exec_handle(&d, &id, &exec_id)?;
    handle.signal(exec::parse_signal(&body.signal)?)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Resize a running exec's terminal.
#[utoipa::path(post, path = "/v1/sandboxes/{id}/execs/{exec_id}/resize", tag = "exec",
    params(("id" = String, Path, description = "Sandbox id"), ("exec_id" = String, Path, description = "Exec id")),
    request_body = TerminalSize,
    responses(
        (status = 204, description = "Delivered to the guest"),
        (status = 400, description = "Size out of range", body = ErrorBody),
        (status = 404, description = "No such sandbox or running exec", body = ErrorBody),
        (status = 409, description = "The exec has no terminal, or ended", body = ErrorBody)))]
pub async fn exec_resize(
    State(d): Shared,
    Path((id, exec_id)): Path<(String, String)>,
    JsonBody(body): JsonBody<TerminalSize>,
) -> Result<StatusCode, DaemonError> {
    let handle = exec_handle(&d, &id, &exec_id)?;
    handle.resize(body)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Stream the sandbox's audit events.
///
/// NDJSON: each line is one audit record exactly as in the hash-chained log (see
/// `docs/audit.md`). With `follow=true` the stream stays open and carries new records until the
/// sandbox's `sandbox.end`.
#[utoipa::path(get, path = "/v1/sandboxes/{id}/events", tag = "observe",
    params(("id" = String, Path, description = "Sandbox id"), EventsQuery),
    responses(
        (status = 200, description = "NDJSON stream of audit records", content_type = "application/x-ndjson", body = Object),
        (status = 404, description = "No such sandbox", body = ErrorBody),
        (status = 409, description = "The sandbox keeps no audit log", body = ErrorBody)))]
pub async fn sandbox_events(
    State(d): Shared,
    Path(id): Path<String>,
    Params(q): Params<EventsQuery>,
) -> Result<Response, DaemonError> {
    let entry = d.get(&id)?;
    let log = entry
        .audit_log()
        .cloned()
        .ok_or_else(|| DaemonError::Conflict(format!("sandbox {id} keeps no audit log")))?;
    let (tx, rx) = mpsc::channel(64);
    let task = tokio::spawn(async move {
        if let Err(e) = tail(&log, q.follow, &tx).await {
            let l = exec::line(
                &serde_json::json!({"error": {"error": "internal", "detail": format!("reading {}: {e}", log.display())}}),
            );
            let _ = tx.send(l).await;
        }
    });
    Ok(ndjson(
        LineBody {
            rx,
            _guard: Some(exec::AbortOnDrop::new(task)),
        },
        StatusCode::OK,
    ))
}

/// Sends the log's complete lines; with `follow`, keeps going until `sandbox.end`.
async fn tail(
    log: &std::path::Path,
    follow: bool,
    tx: &mpsc::Sender<Vec<u8>>,
) -> std::io::Result<()> {
    let mut pos = 0u64;
    let mut partial = Vec::new();
    loop {
        let mut ended = false;
        match tokio::fs::File::open(log).await {
            Ok(mut file) => {
                file.seek(std::io::SeekFrom::Start(pos)).await?;
                let mut reader = tokio::io::BufReader::new(file);
                loop {
                    let mut line = Vec::new();
                    let n = reader.read_until(b'\n', &mut line).await?;
                    if n == 0 {
                        break;
                    }
                    pos += n as u64;
                    partial.extend_from_slice(&line);
                    if !partial.ends_with(b"\n") {
                        continue; // a record being written; complete it next round
                    }
                    let full = std::mem::take(&mut partial);
                    if let Ok(r) = airlock_audit::Record::parse(full.trim_ascii_end()) {
                        ended |= r.event.kind == airlock_audit::kind::SANDBOX_END;
                    }
                    if tx.send(full).await.is_err() {
                        return Ok(());
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        if !follow || ended || tx.is_closed() {
            return Ok(());
        }
        tokio::time::sleep(FOLLOW_POLL).await;
    }
}

/// Counters of the sandbox, the same JSON as `airlock stats`.
#[utoipa::path(get, path = "/v1/sandboxes/{id}/stats", tag = "observe",
    params(("id" = String, Path, description = "Sandbox id")),
    responses(
        (status = 200, description = "Engine CPU and memory, fs operations, network bytes, processes, denials", body = Object),
        (status = 404, description = "No such sandbox", body = ErrorBody)))]
pub async fn sandbox_stats(
    State(d): Shared,
    Path(id): Path<String>,
) -> Result<axum::Json<airlock_supervisor::Stats>, DaemonError> {
    let entry = d.get(&id)?;
    let running = entry.running().is_ok();
    let live = airlock_supervisor::state_root()
        .join(&id)
        .join("stats.json");
    if running
        && let Ok(bytes) = tokio::fs::read(&live).await
        && let Ok(stats) = serde_json::from_slice(&bytes)
    {
        return Ok(axum::Json(stats));
    }
    let Some(log) = entry.audit_log().cloned() else {
        return Err(DaemonError::Conflict(format!(
            "sandbox {id} keeps no audit log"
        )));
    };
    let records = tokio::task::spawn_blocking(move || {
        airlock_audit::read_log(&log, &airlock_audit::Filter::default())
    })
    .await
    .map_err(|e| DaemonError::Internal(format!("stats task: {e}")))?
    .map_err(|e| DaemonError::Internal(format!("reading the audit log: {e}")))?;
    let mut stats = airlock_supervisor::Stats::from_records(&id, &records);
    stats.running = running;
    Ok(axum::Json(stats))
}

/// Read a file in the guest (as the workload user; see the API README for why).
#[utoipa::path(get, path = "/v1/sandboxes/{id}/files", tag = "files",
    params(("id" = String, Path, description = "Sandbox id"), PathQuery),
    responses(
        (status = 200, description = "The file's bytes", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 400, description = "Bad path, or a directory", body = ErrorBody),
        (status = 403, description = "The policy or the guest refused it", body = ErrorBody),
        (status = 404, description = "No such sandbox or file", body = ErrorBody),
        (status = 409, description = "The sandbox is not running", body = ErrorBody),
        (status = 413, description = "Larger than 64 MiB", body = ErrorBody)))]
pub async fn read_file(
    State(d): Shared,
    Path(id): Path<String>,
    Params(q): Params<PathQuery>,
) -> Result<Response, DaemonError> {
    if q.mode.is_some() {
        return Err(DaemonError::bad("mode", "only meaningful with PUT"));
    }
    let entry = d.get(&id)?;
    let data = files::read(&entry, &q.path).await?;
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], data).into_response())
}

/// Write a file in the guest (create or replace; as the workload user).
#[utoipa::path(put, path = "/v1/sandboxes/{id}/files", tag = "files",
    params(("id" = String, Path, description = "Sandbox id"), PathQuery),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "The new content"),
    responses(
        (status = 200, description = "Written", body = FileWritten),
        (status = 400, description = "Bad path or mode", body = ErrorBody),
        (status = 403, description = "The policy or the guest refused it", body = ErrorBody),
        (status = 404, description = "No such sandbox, or the parent directory is missing", body = ErrorBody),
        (status = 409, description = "The sandbox is not running", body = ErrorBody),
        (status = 413, description = "Larger than 64 MiB", body = ErrorBody)))]
pub async fn write_file(
    State(d): Shared,
    Path(id): Path<String>,
    Params(q): Params<PathQuery>,
    body: Bytes,
) -> Result<axum::Json<FileWritten>, DaemonError> {
    let entry = d.get(&id)?;
    Ok(axum::Json(
        files::write(&entry, &q.path, body.to_vec(), q.mode.as_deref()).await?,
    ))
}

/// Stat a path in the guest (a final symlink is not followed).
#[utoipa::path(get, path = "/v1/sandboxes/{id}/files/stat", tag = "files",
    params(("id" = String, Path, description = "Sandbox id"), PathQuery),
    responses(
        (status = 200, description = "Its metadata", body = FileStat),
        (status = 400, description = "Bad path", body = ErrorBody),
        (status = 403, description = "Refused", body = ErrorBody),
        (status = 404, description = "No such sandbox or path", body = ErrorBody),
        (status = 409, description = "The sandbox is not running", body = ErrorBody)))]
pub async fn stat_file(
    State(d): Shared,
    Path(id): Path<String>,
    Params(q): Params<PathQuery>,
) -> Result<axum::Json<FileStat>, DaemonError> {
    let entry = d.get(&id)?;
    Ok(axum::Json(files::stat(&entry, &q.path).await?))
}

/// List a directory in the guest.
#[utoipa::path(get, path = "/v1/sandboxes/{id}/files/list", tag = "files",
    params(("id" = String, Path, description = "Sandbox id"), PathQuery),
    responses(
        (status = 200, description = "Its entries", body = FileList),
        (status = 400, description = "Bad path, or not a directory", body = ErrorBody),
        (status = 403, description = "Refused", body = ErrorBody),
        (status = 404, description = "No such sandbox or directory", body = ErrorBody),
        (status = 409, description = "The sandbox is not running", body = ErrorBody)))]
pub async fn list_files(
    State(d): Shared,
    Path(id): Path<String>,
    Params(q): Params<PathQuery>,
) -> Result<axum::Json<FileList>, DaemonError> {
    let entry = d.get(&id)?;
    Ok(axum::Json(files::list(&entry, &q.path).await?))
}

/// What the workload changed in the sandbox's writable shares.
///
/// For an `overlay` share: the added, modified and deleted paths of the private copy (as
/// `airlock diff` shows them), with unified diffs for text files. For an `rw` share, whose
/// writes reach the host at once: the paths the filesystem gateway allowed the guest to modify,
/// from the audit log. Works while the sandbox runs and after it stopped.
#[utoipa::path(get, path = "/v1/sandboxes/{id}/changes", tag = "files",
    params(("id" = String, Path, description = "Sandbox id")),
    responses(
        (status = 200, description = "The changes, per writable mount", body = ChangeList),
        (status = 404, description = "No such sandbox", body = ErrorBody),
        (status = 409, description = "The sandbox keeps no audit log", body = ErrorBody)))]
pub async fn sandbox_changes(
    State(d): Shared,
    Path(id): Path<String>,
) -> Result<axum::Json<ChangeList>, DaemonError> {
    let entry = d.get(&id)?;
    entry.touch();
    tokio::task::spawn_blocking(move || changes::changes(&entry))
        .await
        .map_err(|e| DaemonError::Internal(format!("changes task: {e}")))?
        .map(axum::Json)
}
