//! File read, write, stat and list for the API, done *inside* the guest: each operation is an
//! exec of the image's own tools (`cat`, `stat`, `sh`) as the policy's workload user, with the
//! same `no_new_privs`, seccomp and Landlock as any command.
//!
//! Why not read the files from the host: the guest's filesystem (its root, `/tmp`, the
//! writable layer) is not visible on the host at all, and for the shares this keeps exactly one
//! enforcement path. A file under a share goes through the fs gateway, which applies
//! `deny_read`, `deny_write`, `ro` and the protected paths and audits the operation as it would
//! for the agent; a file elsewhere is confined by Landlock's write set and the guest's own
//! permissions. The API can therefore never read or write what the workload could not.
//! The cost is an exec per operation (a few milliseconds under KVM, more under TCG) and
//! whole-file transfers bounded by [`MAX_FILE_BYTES`].

use super::entry::{Entry, lock};
use super::error::DaemonError;
use crate::types::{FileList, FileStat, FileWritten};
use airlock_supervisor::{ExecIo, ExecOutcome};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::sync::mpsc;

/// Largest file read or written through the API.
pub const MAX_FILE_BYTES: usize = 64 * 1024 * 1024;
/// Largest listing output.
const MAX_LIST_BYTES: usize = 16 * 1024 * 1024;
/// `stat` format: size, octal mode, uid, gid, mtime, then the type in words (which may contain
/// spaces, so it comes last). No `%n`: names can hold newlines.
const STAT_FORMAT: &str = "%s %a %u %g %Y %F";

/// Lists a directory: the names NUL-terminated, an empty name, then one `stat` line per name.
const LIST_SCRIPT: &str = r#"cd -- "$1" || exit 2
set --
for f in .* *; do
  case $f in .|..) continue ;; esac
  [ -e "$f" ] || [ -L "$f" ] || continue
  set -- "$@" "$f"
done
for f; do printf '%s\0' "$f"; done
printf '\0'
[ $# -eq 0 ] || exec stat -c "$0" -- "$@"
"#;

/// Collects a stream into memory, failing past a limit.
#[derive(Clone)]
struct Capture {
    buf: Arc<Mutex<Vec<u8>>>,
    limit: usize,
}

impl Capture {
    fn new(limit: usize) -> Capture {
        Capture {
            buf: Arc::new(Mutex::new(Vec::new())),
            limit,
        }
    }

    fn take(&self) -> Vec<u8> {
        std::mem::take(&mut *lock(&self.buf))
    }
}

impl tokio::io::AsyncWrite for Capture {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let mut buf = lock(&self.buf);
        if buf.len().saturating_add(data.len()) > self.limit {
            return Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::FileTooLarge,
                "output over the limit",
            )));
        }
        buf.extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// What one helper command produced.
struct Ran {
    code: i32,
    stdout: Vec<u8>,
    stderr: String,
}

/// Runs `argv` as the workload in `entry`, feeding `stdin`, capturing up to `limit` bytes.
async fn run(
    entry: &Arc<Entry>,
    argv: Vec<String>,
    stdin: Option<Vec<u8>>,
    limit: usize,
    path: &str,
) -> Result<Ran, DaemonError> {
    let sandbox = entry.running()?;
    entry.touch();
    let tool = argv.first().cloned().unwrap_or_default();
    let mut request = airlock_supervisor::launch::exec_request(
        entry.policy(),
        argv,
        Vec::new(),
        Some("/".into()),
        None,
    );
    if let Some(config) = entry.image_config() {
        airlock_supervisor::launch::apply_image_config(&mut request, &config, true);
    }
    let stdin = stdin.map(|data| {
        let (tx, rx) = mpsc::channel(1);
        tokio::spawn(async move {
            for chunk in data.chunks(airlock_proto::codec::DATA_CHUNK) {
                if tx.send(chunk.to_vec()).await.is_err() {
                    return;
                }
            }
        });
        rx
    });
    let out = Capture::new(limit);
    let err = Capture::new(64 * 1024);
    let (_control_tx, control) = mpsc::unbounded_channel();
    let io = ExecIo {
        stdin,
        stdout: Box::pin(out.clone()),
        stderr: Box::pin(err.clone()),
        control,
    };
    let mut stopping = entry.stopping();
    let outcome = tokio::select! {
        r = sandbox.exec(request, io) => r,
        _ = stopping.wait_for(|s| *s) => {
            return Err(DaemonError::Conflict(format!("sandbox {} was stopped", entry.id())));
        }
    };
    entry.touch();
    let outcome = match outcome {
        Ok(o) => o,
        Err(airlock_supervisor::SandboxError::Io { source, .. })
            if source.kind() == std::io::ErrorKind::FileTooLarge =>
        {
            return Err(DaemonError::TooLarge(format!(
                "{path}: larger than the API's limit of {limit} bytes; use exec to stream it"
            )));
        }
        Err(e) => {
            return Err(DaemonError::Internal(format!(
                "{path}: {}",
                airlock_jail::error_chain(&e)
            )));
        }
    };
    match outcome {
        ExecOutcome::Exited { status, .. } => Ok(Ran {
            code: status.shell_code(),
            stdout: out.take(),
            stderr: String::from_utf8_lossy(&err.take()).into_owned(),
        }),
        ExecOutcome::SpawnFailed { message, .. } => Err(DaemonError::Internal(format!(
            "the image cannot run `{tool}` for the files API: {}",
            message.escape_debug()
        ))),
    }
}

/// Maps a failed tool's stderr to an API error about `path`.
fn failure(path: &str, ran: &Ran) -> DaemonError {
    let msg = ran.stderr.trim();
    let user = "as the workload user";
    let detail = |what: &str| format!("{path}: {what} (in the guest, {user})");
    // busybox sh says "nonexistent directory" for a redirect into a missing directory.
    if msg.contains("No such file or directory") || msg.contains("nonexistent directory") {
        DaemonError::NotFound(detail("no such file or directory"))
    } else if msg.contains("Permission denied")
        || msg.contains("Operation not permitted")
        || msg.contains("Read-only file system")
    {
        DaemonError::Forbidden(detail(&format!(
            "refused: {}",
            airlock_audit::display_safe(msg)
        )))
    } else if msg.contains("Is a directory") {
        DaemonError::bad("path", detail("is a directory"))
    } else if msg.contains("Not a directory") {
        DaemonError::bad("path", detail("a component is not a directory"))
    } else {
        DaemonError::Internal(detail(&format!(
            "failed with status {}: {}",
            ran.code,
            airlock_audit::display_safe(msg)
        )))
    }
}

/// Checks an API path: absolute, no NUL.
pub fn check_path(path: &str) -> Result<(), DaemonError> {
    if !path.starts_with('/') || path.contains('\0') {
        return Err(DaemonError::bad(
            "path",
            format!("{path:?} must be an absolute path inside the guest"),
        ));
    }
    Ok(())
}

/// Reads a whole file.
pub async fn read(entry: &Arc<Entry>, path: &str) -> Result<Vec<u8>, DaemonError> {
    check_path(path)?;
    let argv = vec!["cat".into(), "--".into(), path.into()];
    let ran = run(entry, argv, None, MAX_FILE_BYTES, path).await?;
    if ran.code != 0 {
        return Err(failure(path, &ran));
    }
    Ok(ran.stdout)
}

/// Writes (creates or truncates) a file, then sets `mode` if given.
pub async fn write(
    entry: &Arc<Entry>,
    path: &str,
    data: Vec<u8>,
    mode: Option<&str>,
) -> Result<FileWritten, DaemonError> {
    check_path(path)?;
    if let Some(m) = mode
        && (!(3..=4).contains(&m.len()) || !m.chars().all(|c| ('0'..='7').contains(&c)))
    {
        return Err(DaemonError::bad(
            "mode",
            format!("{m:?} is not octal permission bits such as 644"),
        ));
    }
    if data.len() > MAX_FILE_BYTES {
        return Err(DaemonError::TooLarge(format!(
            "{path}: {} bytes is over the API's limit of {MAX_FILE_BYTES}",
            data.len()
        )));
    }
    let size = data.len() as u64;
    let script = match mode {
        Some(_) => r#"cat > "$1" && chmod "$2" "$1""#,
        None => r#"cat > "$1""#,
    };
    let mut argv: Vec<String> = vec!["sh".into(), "-c".into(), script.into(), "sh".into()];
    argv.push(path.into());
    argv.extend(mode.map(str::to_string));
    let ran = run(entry, argv, Some(data), 64 * 1024, path).await?;
    if ran.code != 0 {
        return Err(failure(path, &ran));
    }
    Ok(FileWritten {
        path: path.into(),
        size,
    })
}

/// Stats one path (without following a final symlink).
pub async fn stat(entry: &Arc<Entry>, path: &str) -> Result<FileStat, DaemonError> {
    check_path(path)?;
    let argv = vec![
        "stat".into(),
        "-c".into(),
        STAT_FORMAT.into(),
        "--".into(),
        path.into(),
    ];
    let ran = run(entry, argv, None, 64 * 1024, path).await?;
    if ran.code != 0 {
        return Err(failure(path, &ran));
    }
    let text = String::from_utf8_lossy(&ran.stdout);
    parse_stat_line(path, text.lines().next().unwrap_or_default())
        .ok_or_else(|| DaemonError::Internal(format!("{path}: unexpected stat output {text:?}")))
}

/// Lists a directory's entries with their metadata.
pub async fn list(entry: &Arc<Entry>, path: &str) -> Result<FileList, DaemonError> {
    check_path(path)?;
    let argv = vec![
        "sh".into(),
        "-c".into(),
        LIST_SCRIPT.into(),
        STAT_FORMAT.into(),
        path.into(),
    ];
    let ran = run(entry, argv, None, MAX_LIST_BYTES, path).await?;
    if ran.code != 0 {
        return Err(failure(path, &ran));
    }
    let entries = parse_listing(&ran.stdout).ok_or_else(|| {
        DaemonError::Internal(format!(
            "{path}: the directory changed while it was listed; retry"
        ))
    })?;
    Ok(FileList {
        path: path.into(),
        entries,
    })
}

/// Parses one `STAT_FORMAT` line for `name`.
fn parse_stat_line(name: &str, line: &str) -> Option<FileStat> {
    let mut f = line.splitn(6, ' ');
    let size = f.next()?.parse().ok()?;
    let mode = f.next()?.to_string();
    let uid = f.next()?.parse().ok()?;
    let gid = f.next()?.parse().ok()?;
    let mtime = f.next()?.parse().ok()?;
    let words = f.next()?;
    let kind = match words {
        w if w.contains("regular") => "file",
        "directory" => "directory",
        "symbolic link" => "symlink",
        "fifo" | "FIFO" => "fifo",
        "socket" => "socket",
        w if w.starts_with("character") => "char_device",
        w if w.starts_with("block") => "block_device",
        _ => "other",
    };
    Some(FileStat {
        path: name.into(),
        kind: kind.into(),
        size,
        mode,
        uid,
        gid,
        mtime,
    })
}

/// Parses [`LIST_SCRIPT`]'s output; `None` when names and stat lines do not pair up.
fn parse_listing(out: &[u8]) -> Option<Vec<FileStat>> {
    let mut names = Vec::new();
    let mut rest = out;
    loop {
        let end = rest.iter().position(|b| *b == 0)?;
        let name = rest.get(..end)?;
        rest = rest.get(end + 1..)?;
        if name.is_empty() {
            break;
        }
        names.push(String::from_utf8_lossy(name).into_owned());
    }
    let text = String::from_utf8_lossy(rest);
    let lines: Vec<&str> = text.lines().collect();
    if lines.len() != names.len() {
        return None;
    }
    let mut entries = names
        .iter()
        .zip(lines)
        .map(|(n, l)| parse_stat_line(n, l))
        .collect::<Option<Vec<_>>>()?;
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    Some(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines() {
        assert_eq!(
            parse_stat_line("/etc/passwd", "120 644 0 0 1700000000 regular file"),
            Some(FileStat {
                path: "/etc/passwd".into(),
                kind: "file".into(),
                size: 120,
                mode: "644".into(),
                uid: 0,
                gid: 0,
                mtime: 1_700_000_000,
            })
        );
        assert_eq!(
            parse_stat_line("x", "0 777 0 0 1 symbolic link")
                .unwrap()
                .kind,
            "symlink"
        );
        assert!(parse_stat_line("x", "garbage").is_none());
    }

    #[test]
    fn listings_pair_names_with_lines() {
        let out = b"b\0a\nline\0\0\
                    1 644 1000 1000 5 regular file\n\
                    2 755 1000 1000 6 directory\n";
        let entries = parse_listing(out).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].path, "a\nline");
        assert_eq!(entries[0].kind, "directory");
        assert_eq!(entries[1].path, "b");
        assert_eq!(parse_listing(b"\0").unwrap(), vec![]);
        assert!(
            parse_listing(b"a\0\0").is_none(),
            "a name without a stat line"
        );
    }
}
