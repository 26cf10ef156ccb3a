//! What the user sees and feels on this terminal: lines on stderr ([`note!`]), the signals a
//! run catches, raw mode and the window size for `-t`, and the notes about how a command ended.

use airlock_proto::{SpawnFailure, WindowSize};
use anyhow::Context;
use tokio::signal::unix::{Signal, SignalKind, signal};

/// Prints a line on stderr for the user. Unlike `eprintln!` it never panics: a closed stderr
/// (the reader went away) must not turn into a crash in the middle of teardown.
macro_rules! note {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        // A terminal in raw mode does not return the carriage on a newline.
        let end = if $crate::ui::RAW.load(std::sync::atomic::Ordering::Relaxed) {
            "\r\n"
        } else {
            "\n"
        };
        let _ = write!(std::io::stderr(), "{}{end}", format_args!($($arg)*));
    }};
}
pub(crate) use note;

/// SIGINT, SIGTERM and SIGHUP, caught for the whole run so none kills airlock before teardown.
pub(crate) struct Signals {
    int: Signal,
    term: Signal,
    hup: Signal,
}

impl Signals {
    pub(crate) fn install() -> anyhow::Result<Signals> {
        Ok(Signals {
            int: signal(SignalKind::interrupt()).context("installing SIGINT handler")?,
            term: signal(SignalKind::terminate()).context("installing SIGTERM handler")?,
            hup: signal(SignalKind::hangup()).context("installing SIGHUP handler")?,
        })
    }

    /// The next signal number received.
    pub(crate) async fn recv(&mut self) -> i32 {
        tokio::select! {
            _ = self.int.recv() => libc::SIGINT,
            _ = self.term.recv() => libc::SIGTERM,
            _ = self.hup.recv() => libc::SIGHUP,
        }
    }
}

/// Says that the guest's OOM killer ended processes of the command, if it did.
pub(crate) fn note_oom(oom_kills: u32) {
    if oom_kills > 0 {
        note!(
            "airlock: the guest ran out of memory; its OOM killer ended {oom_kills} \
             process(es) of the command (raise [sandbox] memory in the policy)"
        );
    }
}

/// Says that airlock took title or clipboard sequences out of the command's output, if it did.
pub(crate) fn note_removed(count: u64) {
    if count > 0 {
        note!(
            "airlock: removed {count} terminal title or clipboard sequence(s) from the \
             command's output (--allow-title-and-clipboard lets them through)"
        );
    }
}

/// Says why the command could not start, with the guest's message; returns the reason's text.
pub(crate) fn note_spawn_failure(reason: SpawnFailure, message: &str) -> &'static str {
    let what = match reason {
        SpawnFailure::NotFound => "command not found in the guest",
        SpawnFailure::PermissionDenied => "command cannot be executed in the guest",
        SpawnFailure::InvalidRequest => "invalid command request",
        SpawnFailure::Other => "could not start the command in the guest",
    };
    note!("airlock: {what}: {}", message.escape_debug());
    what
}

/// The size of the terminal on stdin or stdout, if either is one.
pub(crate) fn terminal_size() -> Option<WindowSize> {
    for fd in [libc::STDIN_FILENO, libc::STDOUT_FILENO] {
        // SAFETY: `winsize` is plain old data, so all-zero is valid.
        let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
        // SAFETY: TIOCGWINSZ writes one `struct winsize` through the pointer, which points at a
        // live local; the fd is one of our standard streams and an invalid one only yields ENOTTY.
        // JUSTIFICATION: nix has no safe wrapper for TIOCGWINSZ.
        let rc = unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) };
        if rc == 0 && ws.ws_row > 0 && ws.ws_col > 0 {
            return Some(WindowSize {
                rows: ws.ws_row,
                cols: ws.ws_col,
            });
        }
    }
    None
}

/// Puts the terminal on stdin into raw mode until dropped.
pub(crate) struct RawMode {
    saved: nix::sys::termios::Termios,
}

/// Whether this terminal is in raw mode now (so [`note!`] ends lines with `\r\n`).
pub(crate) static RAW: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

impl RawMode {
    pub(crate) fn enter() -> nix::Result<RawMode> {
        use nix::sys::termios::{SetArg, cfmakeraw, tcgetattr, tcsetattr};
        let stdin = std::io::stdin();
        let saved = tcgetattr(&stdin)?;
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        tcsetattr(&stdin, SetArg::TCSANOW, &raw)?;
        RAW.store(true, std::sync::atomic::Ordering::Relaxed);
        Ok(RawMode { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = nix::sys::termios::tcsetattr(
            std::io::stdin(),
            nix::sys::termios::SetArg::TCSANOW,
            &self.saved,
        );
        RAW.store(false, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Prints rows as left-aligned columns two spaces apart, without trailing blanks.
pub(crate) fn print_table<const N: usize>(rows: &[[String; N]]) {
    let mut widths = [0usize; N];
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", line.join("  ").trim_end());
    }
}
