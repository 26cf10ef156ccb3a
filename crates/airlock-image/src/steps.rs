//! Running one build step of an image or kit build: a command whose stdout and stderr go to
//! `build.log` while its latest line is shown on the progress bar as `[n/total] name · line`.
//! A failed step becomes [`ImageError::BuildFailed`] with the log's last lines.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::OwnedFd;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::{ImageError, io_err};
use indicatif::ProgressBar;
use std::fs::File;
use std::path::PathBuf;

/// Lines of the log shown when a step fails.
const TAIL_LINES: usize = 25;

/// The log and progress bar of one build.
pub(crate) struct Steps<'a> {
    log: File,
    log_path: PathBuf,
    bar: &'a ProgressBar,
    total: usize,
}

impl<'a> Steps<'a> {
    /// Creates `log_path`; steps are shown as `[n/total]` on `bar`.
    pub(crate) fn create(
        log_path: PathBuf,
        bar: &'a ProgressBar,
        total: usize,
    ) -> Result<Steps<'a>, ImageError> {
        let log =
            File::create(&log_path).map_err(io_err(format!("creating {}", log_path.display())))?;
        Ok(Steps {
            log,
            log_path,
            bar,
            total,
        })
    }

    /// Shows step `n` on the bar and marks its start in the log.
    pub(crate) fn set_step(&self, n: usize, name: &str) {
        self.bar.set_message(format!("[{n}/{}] {name}", self.total));
        let _ = writeln!(&self.log, "==> {name}");
    }

    /// Runs one command with stdout and stderr in the log; the latest line goes on the bar.
    pub(crate) fn run(&mut self, n: usize, name: &str, mut cmd: Command) -> Result<(), ImageError> {
        self.set_step(n, name);
        let _ = writeln!(self.log, "$ {cmd:?}");
        let (reader, writer) = pipe()?;
        let writer2 = writer.try_clone().map_err(io_err("duplicating a pipe"))?;
        airlock_jail::child::die_with_parent(&mut cmd);
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::from(writer))
            .stderr(Stdio::from(writer2))
            .spawn()
            .map_err(io_err(format!("starting {name}")))?;
        // The command holds the write ends; drop it so the reader sees EOF when the child ends.
        drop(cmd);
        for line in BufReader::new(std::fs::File::from(reader))
            .split(b'\n')
            .map_while(Result::ok)
        {
            let _ = self.log.write_all(&line);
            let _ = self.log.write_all(b"\n");
            let text = String::from_utf8_lossy(&line);
            // apt redraws progress with carriage returns; show the last segment.
            let text = text.rsplit('\r').next().unwrap_or_default().trim();
            if !text.is_empty() {
                let short: String = text.chars().take(72).collect();
                self.bar
                    .set_message(format!("[{n}/{}] {name} · {short}", self.total));
            }
        }
        let status = child
            .wait()
            .map_err(io_err(format!("waiting for {name}")))?;
        if status.success() {
            return Ok(());
        }
        let _ = writeln!(self.log, "==> {name} failed: {status}");
        Err(ImageError::BuildFailed {
            step: name.to_string(),
            log: self.log_path.clone(),
            tail: tail(&self.log_path, TAIL_LINES),
        })
    }
}

/// A close-on-exec pipe for a step's output.
fn pipe() -> Result<(OwnedFd, OwnedFd), ImageError> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| ImageError::Io {
        context: "creating a pipe".into(),
        source: e.into(),
    })
}

/// The last `n` lines of a file.
fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read(path).unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let lines: Vec<&str> = text.lines().collect();
    lines
        .get(lines.len().saturating_sub(n)..)
        .unwrap_or_default()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_takes_the_last_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("log");
        std::fs::write(&p, "1\n2\n3\n").unwrap();
        assert_eq!(tail(&p, 2), "2\n3");
        assert_eq!(tail(&p, 10), "1\n2\n3");
        assert_eq!(tail(&dir.path().join("none"), 2), "");
    }
}
