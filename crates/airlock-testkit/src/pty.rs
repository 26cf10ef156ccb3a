//! Runs a command on a new host pseudo-terminal, as a user's terminal would: the command is the
//! leader of a new session whose controlling terminal is the pty, so Ctrl-C typed into it
//! becomes SIGINT for its foreground process group, a resize becomes SIGWINCH, and
//! `isatty(0)` holds.
//!
//! [`Pty`] collects everything the command writes on a reader thread; tests look at it with
//! the ANSI escape sequences stripped ([`strip_ansi`]), type into it with [`Pty::send`], and
//! resize it with [`Pty::resize`].
//!
//! ```no_run
//! use airlock_testkit::pty::Pty;
//! use std::process::Command;
//! use std::time::Duration;
//!
//! let mut c = Command::new("sh");
//! c.args(["-c", "stty size; read x; echo got:$x"]);
//! let mut pty = Pty::spawn(c, 40, 120).unwrap();
//! assert!(pty.wait_for("40 120", Duration::from_secs(10)));
//! pty.send(b"hello\r");
//! assert!(pty.wait_for("got:hello", Duration::from_secs(10)));
//! assert!(pty.wait_exit(Duration::from_secs(10)).unwrap().success());
//! ```

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;
use nix::pty::{PtyMaster, grantpt, posix_openpt, ptsname_r, unlockpt};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// `TERM` the command gets unless its `Command` sets one.
pub const DEFAULT_TERM: &str = "xterm-256color";

/// How long [`Drop`] waits after SIGTERM before it sends SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(20);

/// A command running on its own pseudo-terminal; killed (SIGTERM, then SIGKILL) if still
/// running when dropped.
pub struct Pty {
    child: Child,
    master: Arc<PtyMaster>,
    output: Arc<Output>,
    status: Option<ExitStatus>,
}

/// What the command wrote, shared with the reader thread.
#[derive(Default)]
struct Output {
    state: Mutex<OutputState>,
    changed: Condvar,
}

#[derive(Default)]
struct OutputState {
    bytes: Vec<u8>,
    /// The reader saw end of file (every slave descriptor closed) or an error.
    eof: bool,
}

impl Output {
    fn lock(&self) -> MutexGuard<'_, OutputState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Pty {
    /// Spawns `cmd` with stdin, stdout and stderr on the slave side of a new pty sized
    /// `rows`x`cols`, in a new session with the pty as its controlling terminal. `TERM` is
    /// [`DEFAULT_TERM`] unless `cmd` sets it.
    pub fn spawn(mut cmd: Command, rows: u16, cols: u16) -> std::io::Result<Pty> {
        // CLOEXEC from the start: tests spawn processes on other threads, and none of them may
        // inherit either side (a stray slave would keep the reader from ever seeing EOF).
        let master = posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)?;
        grantpt(&master)?;
        unlockpt(&master)?;
        let name = ptsname_r(&master)?;
        set_size(&master, rows, cols)?;
        // std opens with O_CLOEXEC; O_NOCTTY keeps the pty from becoming the test's terminal.
        let slave = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOCTTY)
            .open(&name)?;
        if !cmd.get_envs().any(|(k, _)| k == "TERM") {
            cmd.env("TERM", DEFAULT_TERM);
        }
        cmd.stdin(slave.try_clone()?)
            .stdout(slave.try_clone()?)
            .stderr(slave);
        // SAFETY: the closure runs in the child between fork and exec, where only
        // async-signal-safe calls are allowed: setsid(2) and ioctl(2) are system calls that
        // allocate nothing and touch no lock. std has already put the slave on fds 0-2, so
        // TIOCSCTTY on fd 0 (its integer argument 0: do not steal a terminal another session
        // holds) makes the fresh session's controlling terminal the pty.
        unsafe {
            cmd.pre_exec(|| {
                nix::unistd::setsid()?;
                if libc::ioctl(0, libc::TIOCSCTTY, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn()?;
        // Our copies of the slave go with the Command: once the child and whatever inherited
        // them are gone, reads on the master end.
        drop(cmd);
        let master = Arc::new(master);
        let output = Arc::new(Output::default());
        let (reading, shared) = (master.clone(), output.clone());
        std::thread::Builder::new()
            .name("pty-reader".into())
            .spawn(move || read_all(&reading, &shared))?;
        Ok(Pty {
            child,
            master,
            output,
            status: None,
        })
    }

    /// The command's pid (also its session and process group id).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Types `bytes` into the terminal (e.g. `b"ls\r"`, or `b"\x03"` for Ctrl-C).
    pub fn send(&self, bytes: &[u8]) {
        (&*self.master)
            .write_all(bytes)
            .expect("writing to the pty master");
    }

    /// Sets the terminal's size; the kernel sends SIGWINCH to its foreground process group.
    pub fn resize(&self, rows: u16, cols: u16) {
        set_size(&self.master, rows, cols).expect("TIOCSWINSZ on the pty master");
    }

    /// Whether the terminal is in raw mode, as `cfmakeraw` leaves it: no line editing
    /// (`ICANON`), no echo (`ECHO`), and no signals from keys (`ISIG`), so Ctrl-C is a byte
    /// for the command rather than SIGINT.
    pub fn is_raw(&self) -> bool {
        use nix::sys::termios::{LocalFlags, tcgetattr};
        let t = tcgetattr(&*self.master).expect("tcgetattr on the pty master");
        !t.local_flags
            .intersects(LocalFlags::ICANON | LocalFlags::ECHO | LocalFlags::ISIG)
    }

    /// Everything the command wrote so far, as written.
    pub fn raw(&self) -> Vec<u8> {
        self.output.lock().bytes.clone()
    }

    /// How many bytes the command wrote so far: a mark for [`Pty::text_since`] and
    /// [`Pty::wait_since`].
    pub fn mark(&self) -> usize {
        self.output.lock().bytes.len()
    }

    /// Everything the command wrote so far, escape sequences stripped ([`strip_ansi`]).
    pub fn text(&self) -> String {
        self.text_since(0)
    }

    /// What the command wrote after `mark`, escape sequences stripped.
    pub fn text_since(&self, mark: usize) -> String {
        let state = self.output.lock();
        strip_ansi(state.bytes.get(mark..).unwrap_or_default())
    }

    /// Waits until the stripped output contains `needle`; false on timeout.
    pub fn wait_for(&self, needle: &str, timeout: Duration) -> bool {
        self.wait_since(0, |text| text.contains(needle), timeout)
    }

    /// Waits until `pred` holds for the stripped output; false on timeout.
    pub fn wait_until(&self, pred: impl FnMut(&str) -> bool, timeout: Duration) -> bool {
        self.wait_since(0, pred, timeout)
    }

    /// Waits until `pred` holds for the stripped output after `mark` ([`Pty::mark`]); false
    /// on timeout, or once the output ended without it holding.
    pub fn wait_since(
        &self,
        mark: usize,
        mut pred: impl FnMut(&str) -> bool,
        timeout: Duration,
    ) -> bool {
        let deadline = Instant::now() + timeout;
        let mut state = self.output.lock();
        loop {
            if pred(&strip_ansi(state.bytes.get(mark..).unwrap_or_default())) {
                return true;
            }
            let now = Instant::now();
            if state.eof || now >= deadline {
                return false;
            }
            state = self
                .output
                .changed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Waits for the command to exit; `None` on timeout. Once it exited, also waits a little
    /// for the rest of its output, so [`Pty::text`] has all of it.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if self.status.is_none() {
            let deadline = Instant::now() + timeout;
            loop {
                if let Some(status) = self.child.try_wait().expect("waiting for the child") {
                    self.status = Some(status);
                    break;
                }
                if Instant::now() >= deadline {
                    return None;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            // Descendants that inherited the slave may keep it open: do not wait on them long.
            let deadline = Instant::now() + Duration::from_secs(5);
            let mut state = self.output.lock();
            while !state.eof && Instant::now() < deadline {
                state = self
                    .output
                    .changed
                    .wait_timeout(state, Duration::from_millis(100))
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
        }
        self.status
    }
}

impl Drop for Pty {
    fn drop(&mut self) {
        if self.status.is_some() || matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        let pid = Pid::from_raw(i32::try_from(self.child.id()).unwrap_or(i32::MAX));
        // The command alone, not its process group: airlock tears its sandbox down on SIGTERM.
        let _ = kill(pid, Signal::SIGTERM);
        let deadline = Instant::now() + TERM_GRACE;
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// TIOCSWINSZ on the master: sets the size of the terminal.
fn set_size(master: &PtyMaster, rows: u16, cols: u16) -> std::io::Result<()> {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one `struct winsize` through the pointer, which points at a live
    // local; the fd is an open pty master owned by `master`. nix has no safe wrapper for it.
    let rc = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The reader thread: appends everything read from `master` to `output` until end of file
/// (Linux reports EIO once no slave descriptor is open).
fn read_all(mut master: &PtyMaster, output: &Output) {
    let mut buf = [0u8; 16 << 10];
    loop {
        match master.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                output
                    .lock()
                    .bytes
                    .extend_from_slice(buf.get(..n).unwrap_or_default());
                output.changed.notify_all();
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    output.lock().eof = true;
    output.changed.notify_all();
}

/// `bytes` as text with terminal escape sequences taken out, so tests can look for what a
/// screen shows:
///
/// - CSI sequences (`ESC [ ... final`) go, except that cursor-forward (`ESC [ n C`) becomes
///   `n` spaces and a move to an absolute column (`G`) one space, as TUIs skip blank cells
///   with them, and a move to another line (`H`, `f`, `d`, `A`, `B`, `E`, `F`) becomes a line
///   break;
/// - OSC (`ESC ] ... BEL` or `... ESC \`) and the other string sequences (DCS, SOS, PM, APC)
///   go with their payload;
/// - two- and three-byte escapes (`ESC 7`, `ESC ( B`, ...) go;
/// - `\r\n` becomes `\n`, a lone `\r` a line break, and other control bytes but `\n` and `\t`
///   go.
///
/// Invalid UTF-8 is replaced; a sequence cut off at the end is dropped.
pub fn strip_ansi(bytes: &[u8]) -> String {
    const ESC: u8 = 0x1b;
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            ESC => match bytes.get(i + 1) {
                Some(b'[') => {
                    // Parameters and intermediates, then one final byte in 0x40..=0x7e.
                    let start = i + 2;
                    let mut j = start;
                    while bytes.get(j).is_some_and(|c| (0x20..=0x3f).contains(c)) {
                        j += 1;
                    }
                    let Some(&fin) = bytes.get(j) else { break };
                    let params = bytes.get(start..j).unwrap_or_default();
                    let last = out.last().copied();
                    match fin {
                        b'C' => {
                            let n = std::str::from_utf8(params)
                                .ok()
                                .and_then(|p| p.parse::<usize>().ok())
                                .unwrap_or(1)
                                .clamp(1, 1000);
                            out.extend(std::iter::repeat_n(b' ', n));
                        }
                        // Absolute column: a gap between runs of text on one line.
                        b'G' | b'`' if last.is_some_and(|c| c != b'\n' && c != b' ') => {
                            out.push(b' ');
                        }
                        b'H' | b'f' | b'd' | b'A' | b'B' | b'E' | b'F'
                            if last.is_some_and(|c| c != b'\n') =>
                        {
                            out.push(b'\n');
                        }
                        _ => {}
                    }
                    i = j + 1;
                }
                Some(b']' | b'P' | b'X' | b'^' | b'_') => {
                    // A string up to BEL (OSC only, but harmless elsewhere) or ST (ESC \).
                    let mut j = i + 2;
                    loop {
                        match bytes.get(j) {
                            None => {
                                i = j;
                                break;
                            }
                            Some(0x07) => {
                                i = j + 1;
                                break;
                            }
                            Some(&ESC) if bytes.get(j + 1) == Some(&b'\\') => {
                                i = j + 2;
                                break;
                            }
                            Some(_) => j += 1,
                        }
                    }
                }
                // Character set designation: ESC ( B and the like.
                Some(b'(' | b')' | b'*' | b'+' | b'-' | b'.' | b'/' | b'#' | b'%' | b' ') => {
                    i += 3;
                }
                Some(_) => i += 2,
                None => break,
            },
            b'\r' => {
                if bytes.get(i + 1) != Some(&b'\n') {
                    out.push(b'\n');
                }
                i += 1;
            }
            b'\n' | b'\t' => {
                out.push(b);
                i += 1;
            }
            0..0x20 | 0x7f => i += 1,
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_secs(20);

    fn sh(script: &str) -> Command {
        let mut c = Command::new("sh");
        c.args(["-c", script]);
        c
    }

    #[test]
    fn strips_escape_sequences() {
        assert_eq!(
            strip_ansi(b"\x1b[1;31mred\x1b[0m \x1b]0;title\x07x\x1b[3Cy\x1b]8;;u\x1b\\z"),
            "red x   yz"
        );
        assert_eq!(strip_ansi(b"a\r\nb\rc\x1b(Bd\x1b7e\x1b[?25l"), "a\nb\ncde");
        assert_eq!(strip_ansi(b"one\x1b[2;1Htwo\x1bP1$r\x1b\\"), "one\ntwo");
        assert_eq!(
            strip_ansi(b"\x1b[3GDone:\x1b[9GI\x1b[11Gmade it.\x1b[1Bnext"),
            "Done: I made it.\nnext"
        );
        // Cut off mid-sequence: the rest is dropped.
        assert_eq!(strip_ansi(b"ok\x1b[38;5"), "ok");
        assert_eq!(strip_ansi("héllo ✓".as_bytes()), "héllo ✓");
    }

    #[test]
    fn the_command_sees_a_terminal_of_the_size_and_gets_input() {
        let mut pty = Pty::spawn(
            sh("test -t 0 && test -t 1 && echo tty; stty size; read x; echo got:$x"),
            40,
            120,
        )
        .unwrap();
        assert!(pty.wait_for("40 120", T), "{:?}", pty.text());
        assert!(pty.text().contains("tty"), "{:?}", pty.text());
        assert!(!pty.is_raw());
        pty.send(b"hello\r");
        assert!(pty.wait_for("got:hello", T), "{:?}", pty.text());
        assert!(pty.wait_exit(T).unwrap().success());
    }

    #[test]
    fn a_resize_reaches_the_foreground_process_group() {
        let pty = Pty::spawn(
            sh("trap 'stty size' WINCH; echo ready; i=0; \
                while [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done"),
            40,
            120,
        )
        .unwrap();
        assert!(pty.wait_for("ready", T), "{:?}", pty.text());
        let mark = pty.mark();
        pty.resize(30, 100);
        assert!(
            pty.wait_since(mark, |t| t.contains("30 100"), T),
            "{:?}",
            pty.text()
        );
        // Dropped while running: killed.
    }

    #[test]
    fn ctrl_c_interrupts_the_foreground_process_and_the_status_comes_back() {
        let mut pty = Pty::spawn(
            sh("trap 'echo got-int; kill $!' INT; sleep 30 & echo ready; wait; echo after; exit 7"),
            24,
            80,
        )
        .unwrap();
        assert!(pty.wait_for("ready", T), "{:?}", pty.text());
        // On a loaded host the shell may not be waiting yet when the first ^C lands; a user
        // presses it again too.
        let mut interrupted = false;
        for _ in 0..10 {
            pty.send(b"\x03");
            if pty.wait_for("got-int", Duration::from_secs(2)) {
                interrupted = true;
                break;
            }
        }
        assert!(interrupted, "{:?}", pty.text());
        assert!(pty.wait_for("after", T), "{:?}", pty.text());
        assert_eq!(pty.wait_exit(T).unwrap().code(), Some(7));
    }

    #[test]
    fn raw_mode_is_seen_from_the_master() {
        let mut pty =
            Pty::spawn(sh("stty raw -echo; echo raw; read x; stty sane"), 24, 80).unwrap();
        assert!(pty.wait_for("raw", T), "{:?}", pty.text());
        assert!(pty.is_raw());
        // Raw: Ctrl-C is a byte for `read`, which then ends at the line feed.
        pty.send(b"\x03\n");
        assert!(pty.wait_exit(T).unwrap().success(), "{:?}", pty.text());
        assert!(!pty.is_raw());
    }

    #[test]
    fn dropping_a_running_command_ends_it() {
        let pty = Pty::spawn(sh("echo ready; exec sleep 600"), 24, 80).unwrap();
        assert!(pty.wait_for("ready", T), "{:?}", pty.text());
        let pid = Pid::from_raw(i32::try_from(pty.pid()).unwrap());
        drop(pty);
        // Reaped: the pid no longer names our child.
        assert!(kill(pid, None).is_err());
    }
}
