//! A running exec's input side: its stdin queue and its control channel (signals, resizes).

use super::error::DaemonError;
use crate::types::TerminalSize;
use airlock_proto::{ExecControl, WindowSize};
use tokio::sync::mpsc;

/// A running exec's input side.
pub struct ExecHandle {
    pub(super) stdin: tokio::sync::Mutex<Option<mpsc::Sender<Vec<u8>>>>,
    pub(super) control: mpsc::UnboundedSender<ExecControl>,
    pub(super) tty: bool,
}

impl ExecHandle {
    /// Sends stdin bytes, then closes stdin if `eof`.
    pub async fn stdin(&self, data: Vec<u8>, eof: bool) -> Result<(), DaemonError> {
        let mut guard = self.stdin.lock().await;
        let Some(tx) = guard.as_ref() else {
            return Err(DaemonError::Conflict(
                "this exec's stdin is closed (it was not opened with stdin_open, or eof was sent)"
                    .into(),
            ));
        };
        if !data.is_empty() && tx.send(data).await.is_err() {
            return Err(DaemonError::Conflict("the command has ended".into()));
        }
        if eof {
            *guard = None;
        }
        Ok(())
    }

    /// Delivers a signal to the command's process group.
    pub fn signal(&self, signal: i32) -> Result<(), DaemonError> {
        self.control
            .send(ExecControl::Signal { signal })
            .map_err(|_| DaemonError::Conflict("the command has ended".into()))
    }

    /// Resizes the command's terminal.
    pub fn resize(&self, size: TerminalSize) -> Result<(), DaemonError> {
        if !self.tty {
            return Err(DaemonError::Conflict(
                "this exec has no terminal (start it with tty: true)".into(),
            ));
        }
        check_size(&size)?;
        self.control
            .send(ExecControl::Resize {
                size: WindowSize {
                    rows: size.rows,
                    cols: size.cols,
                },
            })
            .map_err(|_| DaemonError::Conflict("the command has ended".into()))
    }
}

pub(super) fn check_size(size: &TerminalSize) -> Result<(), DaemonError> {
    if !(1..=1000).contains(&size.rows) || !(1..=1000).contains(&size.cols) {
        return Err(DaemonError::bad(
            "size",
            format!(
                "{}x{} is out of range (rows and cols 1..=1000)",
                size.rows, size.cols
            ),
        ));
    }
    Ok(())
}
