//! One exec session: run the requested command with pipes or a PTY, stream its stdio over the
//! connection, forward resizes and signals, and report how it ended.
//!
//! Threads per session: the session thread (spawn, wait, report), one output pump per stream,
//! an input thread that decodes host frames, and a stdin writer behind a bounded queue so that
//! control frames keep flowing while the workload is slow to read its input.

use crate::harden;
use crate::pty;
use crate::reaper::Reaper;
use airlock_proto::codec::{DATA_CHUNK, Decoder};
use airlock_proto::{
    ExecControl, ExecEvent, ExecRequest, ExitStatus, Frame, GuestEvent, GuestTimings, SpawnFailure,
    Stream, encode,
};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{Signal, killpg};
use nix::sys::wait::WaitStatus;
use nix::unistd::Pid;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;
use vsock::VsockStream;

/// Search path for commands, as Debian's login shells set it.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Chunks of stdin queued for a workload that is not reading (bounded: backpressure beyond it).
const STDIN_QUEUE: usize = 16;
/// After the command exits, an output stream that stays silent this long is held open by a
/// background process; stop waiting for it so the exit status is not delayed forever.
const DRAIN_IDLE_MS: u16 = 200;

/// Names per-command cgroups uniquely.
static NEXT_CGROUP: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// Serves one exec connection to completion; errors end this session only.
pub fn serve(stream: VsockStream, reaper: &Reaper, accepted: Instant) {
    if let Err(e) = session(stream, reaper, accepted) {
        eprintln!("airlock-guest: exec session: {e}");
    }
}

/// Sends frames on the shared connection; after `close` further output is dropped.
struct Writer {
    state: Mutex<WriterState>,
}

struct WriterState {
    stream: VsockStream,
    buf: Vec<u8>,
    closed: bool,
}

impl Writer {
    fn send(&self, frame: &Frame<ExecEvent>) -> io::Result<()> {
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if st.closed {
            return Ok(());
        }
        let WriterState { stream, buf, .. } = &mut *st;
        buf.clear();
        encode(frame, buf).map_err(io::Error::other)?;
        stream.write_all(buf)
    }

    /// Sends the last frame and half-closes the connection.
    fn close_with(&self, frame: &Frame<ExecEvent>) -> io::Result<()> {
        self.send(frame)?;
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        st.closed = true;
        st.stream.shutdown(std::net::Shutdown::Write)
    }
}

/// Reads whole frames from the connection.
struct FrameReader {
    stream: VsockStream,
    decoder: Decoder,
    buf: Vec<u8>,
}

impl FrameReader {
    fn new(stream: VsockStream) -> Self {
        FrameReader {
            stream,
            decoder: Decoder::new(),
            buf: vec![0; DATA_CHUNK],
        }
    }

    /// The next frame, or `None` when the host closed the connection cleanly.
    fn next<M: serde::de::DeserializeOwned>(&mut self) -> io::Result<Option<Frame<M>>> {
        loop {
            if let Some(frame) = self.decoder.next_frame().map_err(io::Error::other)? {
                return Ok(Some(frame));
            }
            let n = self.stream.read(&mut self.buf)?;
            let Some(bytes) = self.buf.get(..n).filter(|b| !b.is_empty()) else {
                self.decoder.finish().map_err(io::Error::other)?;
                return Ok(None);
            };
            self.decoder.extend(bytes);
        }
    }
}

/// Where stdin data goes.
enum StdinSink {
    Pipe(std::process::ChildStdin),
    Pty(std::fs::File),
}

fn session(stream: VsockStream, reaper: &Reaper, accepted: Instant) -> io::Result<()> {
    let mut reader = FrameReader::new(stream.try_clone()?);
    let writer = Arc::new(Writer {
        state: Mutex::new(WriterState {
            stream,
            buf: Vec::new(),
            closed: false,
        }),
    });
    let request: ExecRequest = match reader.next()? {
        Some(Frame::Message(req)) => req,
        Some(_) => return Err(io::Error::other("first frame is not an exec request")),
        None => return Ok(()),
    };
    let requested = Instant::now();

    if let Err(message) = crate::docker::wait_ready() {
        let reason = SpawnFailure::Other;
        return writer.close_with(&Frame::Message(ExecEvent::SpawnFailed { reason, message }));
    }
    let spawned = match spawn(&request, reaper) {
        Ok(s) => s,
        Err((reason, message)) => {
            return writer.close_with(&Frame::Message(ExecEvent::SpawnFailed { reason, message }));
        }
    };
    let Spawned {
        cgroup,
        pid,
        status_rx,
        outputs,
        stdin,
        pty_master,
        forking,
    } = spawned;
    let running = Instant::now();
    writer.send(&Frame::Message(ExecEvent::Started { pid }))?;
    let pgid = Pid::from_raw(i32::try_from(pid).unwrap_or(i32::MAX));
    let exited = Arc::new(AtomicBool::new(false));

    // The exit notifier: the write end is dropped when the command exits, which wakes the pumps.
    let (exit_r, exit_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    let exit_r = Arc::new(exit_r);
    let pumps = {
        let (writer, exit_r) = (writer.clone(), exit_r.clone());
        crate::pool::spawn("exec-output", move || pump(outputs, &writer, &exit_r))
    };
    {
        let exited = exited.clone();
        let started = crate::pool::spawn("exec-input", move || {
            input(reader, stdin, pty_master, pgid, &exited);
        });
        if let Err(e) = started {
            eprintln!("airlock-guest: exec input: {e}");
        }
    }

    let status = match status_rx.recv() {
        Ok(WaitStatus::Signaled(_, sig, _)) => ExitStatus::Signal { signal: sig as i32 },
        Ok(WaitStatus::Exited(_, code)) => ExitStatus::Code { code },
        Ok(other) => {
            return Err(io::Error::other(format!(
                "unexpected wait status {other:?}"
            )));
        }
        Err(_) => return Err(io::Error::other("reaper stopped")),
    };
    let ended = Instant::now();
    exited.store(true, Ordering::SeqCst);
    drop(exit_w);
    match pumps {
        Ok(pumps) => pumps.join(),
        Err(e) => eprintln!("airlock-guest: exec output: {e}"),
    }
    let oom_kills = cgroup.as_ref().map_or(0, |g| g.oom_kills());
    let us = |from: Instant, to: Instant| {
        u64::try_from(to.saturating_duration_since(from).as_micros()).unwrap_or(u64::MAX)
    };
    let timings = GuestTimings {
        request_us: us(accepted, requested),
        setup_us: us(requested, forking),
        spawn_us: us(forking, running),
        run_us: us(running, ended),
        drain_us: us(ended, Instant::now()),
    };
    writer.close_with(&Frame::Message(ExecEvent::Exited {
        status,
        oom_kills,
        timings,
    }))
}

struct Spawned {
    /// Kept for the session: removing the group waits until the command is gone.
    cgroup: Option<Arc<harden::CommandCgroup>>,
    pid: u32,
    status_rx: Receiver<WaitStatus>,
    outputs: Vec<(OwnedFd, Stream)>,
    stdin: StdinSink,
    pty_master: Option<OwnedFd>,
    /// When the fork began (for the exec's timings).
    forking: Instant,
}

fn spawn(req: &ExecRequest, reaper: &Reaper) -> Result<Spawned, (SpawnFailure, String)> {
    let invalid = |m: String| (SpawnFailure::InvalidRequest, m);
    let (program, args) = req
        .argv
        .split_first()
        .ok_or_else(|| invalid("empty argv".into()))?;
    let cwd = req.cwd.as_deref().unwrap_or("/");
    // Inside a container root, files are looked up in it (checks made before the chroot).
    let guest_path = |p: &str| match &req.root {
        Some(root) => harden::root::inside(root, p),
        None => Some(std::path::PathBuf::from(p)),
    };
    let root = match &req.root {
        Some(root) => Some(harden::root::prepare(root, cwd).map_err(invalid)?),
        None => None,
    };
    let account = match &req.user {
        Some(name) => {
            let read = |p: &str| {
                guest_path(p)
                    .and_then(|p| std::fs::read_to_string(p).ok())
                    .unwrap_or_default()
            };
            let passwd = read("/etc/passwd");
            let group = read("/etc/group");
            let account = harden::resolve_user(&passwd, &group, name);
            Some(account.ok_or_else(|| {
                invalid(format!("user {name:?} does not exist in the guest image"))
            })?)
        }
        None => None,
    };
    // Every command gets its own group, so its OOM kills can be counted even without a pids cap.
    let cgroup = {
        let name = format!("exec-{}", NEXT_CGROUP.fetch_add(1, Ordering::Relaxed));
        let group = harden::CommandCgroup::create(crate::init::CGROUP_ROOT, &name, req.pids_max)
            .map_err(|e| {
                (
                    SpawnFailure::Other,
                    format!("creating the command's cgroup: {e}"),
                )
            })?;
        Some(Arc::new(group))
    };
    let child_cgroup = cgroup.clone();
    let mut filters = harden::filters_cached(req.seccomp).map_err(|e| {
        (
            SpawnFailure::Other,
            format!("building the seccomp filter: {e}"),
        )
    })?;
    // Denials reach this agent as notifications: it answers EPERM and reports each one.
    let denial_channel = match filters.first_mut() {
        Some(first) => {
            harden::notify_denials(first);
            let (ours, theirs) = nix::sys::socket::socketpair(
                nix::sys::socket::AddressFamily::Unix,
                nix::sys::socket::SockType::Datagram,
                None,
                nix::sys::socket::SockFlag::SOCK_CLOEXEC,
            )
            .map_err(|e| (SpawnFailure::Other, format!("socketpair: {e}")))?;
            Some((ours, theirs))
        }
        None => None,
    };
    let notify_fd = denial_channel
        .as_ref()
        .map(|(_, theirs)| theirs.as_raw_fd());
    let home = account.as_ref().map_or("/root", |a| a.home.as_str());
    let landlock = match &req.landlock_write {
        Some(dirs) => Some(harden::landlock_writes(dirs, home).map_err(|e| {
            (
                SpawnFailure::Other,
                format!("building the Landlock ruleset: {e}"),
            )
        })?),
        None => None,
    };
    let mut cmd = Command::new(program);
    cmd.args(args).env_clear();
    cmd.env("PATH", DEFAULT_PATH)
        .env("HOME", home)
        .env("LANG", "C.UTF-8");
    // Every process sees the egress forwarder; the host decides what it may reach.
    cmd.envs(crate::proxy::PROXY_ENV);
    cmd.env(crate::proxy::PIP_PROXY.0, crate::proxy::PIP_PROXY.1);
    // Trusted certificates and credential placeholders, from the host at binding.
    cmd.envs(crate::session::env());
    cmd.env(
        "TERM",
        if req.tty.is_some() {
            "xterm-256color"
        } else {
            "dumb"
        },
    );
    for (k, v) in &req.env {
        if k.is_empty() || k.contains('=') || k.contains('\0') || v.contains('\0') {
            return Err(invalid(format!("invalid environment variable {k:?}")));
        }
        cmd.env(k, v);
    }
    if !guest_path(cwd).is_some_and(|p| p.is_dir()) {
        return Err(invalid(format!(
            "working directory {cwd:?} does not exist in the guest"
        )));
    }
    // In a container root the child changes directory itself, after its chroot.
    if root.is_none() {
        cmd.current_dir(cwd);
    }

    let other = |e: io::Error| (SpawnFailure::Other, e.to_string());
    let req_nnp = req.no_new_privs;
    let mut pty_master = None;
    if let Some(size) = req.tty {
        let (master, slave) = pty::open(size).map_err(other)?;
        cmd.stdin(Stdio::from(slave.try_clone().map_err(other)?));
        cmd.stdout(Stdio::from(slave.try_clone().map_err(other)?));
        cmd.stderr(Stdio::from(slave));
        pty_master = Some(master);
    } else {
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
    }
    let tty = req.tty.is_some();
    // SAFETY: the closure runs between fork and exec in the child; it only makes raw syscalls
    // (setsid, the terminal ioctl, and those of the `enter_in_child`s and `apply_in_child`), all
    // async-signal-safe, and only reads memory it owns. A new session makes the command a
    // process group the host can signal as a whole.
    unsafe {
        cmd.pre_exec(move || {
            nix::unistd::setsid()?;
            if tty {
                pty::make_controlling_terminal()?;
            }
            if let Some(g) = &child_cgroup {
                g.enter_in_child()?;
            }
            if let Some(r) = &root {
                harden::root::enter_in_child(r)?;
            }
            harden::apply_in_child(
                account.as_ref(),
                req_nnp,
                landlock.as_ref(),
                &filters,
                notify_fd,
            )
        });
    }

    let forking = Instant::now();
    let spawn_result = reaper.spawn(|| {
        let child = cmd.spawn()?;
        let pid = child.id();
        Ok((child, pid))
    });
    drop(cmd); // closes our copies of the PTY slave, so the master sees EIO when the command ends
    let (mut child, status_rx) = spawn_result.map_err(|e| {
        let reason = match e.kind() {
            io::ErrorKind::NotFound => SpawnFailure::NotFound,
            io::ErrorKind::PermissionDenied => SpawnFailure::PermissionDenied,
            io::ErrorKind::InvalidInput => SpawnFailure::InvalidRequest,
            _ => SpawnFailure::Other,
        };
        (reason, format!("{program}: {e}"))
    })?;
    let pid = child.id();
    if let Some((ours, theirs)) = denial_channel {
        drop(theirs);
        let served = harden::receive_listener(&ours).and_then(|listener| {
            harden::DenialServer::get(report_denial)?.add(listener);
            Ok(())
        });
        if let Err(e) = served {
            eprintln!("airlock-guest: seccomp notifications: {e}");
        }
    }

    let (outputs, stdin) = match pty_master.as_ref() {
        Some(master) => {
            let out = master.try_clone().map_err(other)?;
            let input = std::fs::File::from(master.try_clone().map_err(other)?);
            (vec![(out, Stream::Stdout)], StdinSink::Pty(input))
        }
        None => {
            let missing = || (SpawnFailure::Other, "child pipes missing".to_string());
            let stdout = child.stdout.take().ok_or_else(missing)?;
            let stderr = child.stderr.take().ok_or_else(missing)?;
            let stdin = child.stdin.take().ok_or_else(missing)?;
            (
                vec![
                    (OwnedFd::from(stdout), Stream::Stdout),
                    (OwnedFd::from(stderr), Stream::Stderr),
                ],
                StdinSink::Pipe(stdin),
            )
        }
    };
    Ok(Spawned {
        cgroup,
        pid,
        status_rx,
        outputs,
        stdin,
        pty_master,
        forking,
    })
}

/// Reports a refused syscall to the host.
fn report_denial(d: harden::Denial) {
    let (syscall, reason) = harden::describe(d.nr);
    crate::report::report(GuestEvent::SyscallDenied {
        pid: d.pid,
        syscall: syscall.to_string(),
        reason: reason.to_string(),
    });
}

/// Copies the output streams to the host until each reaches EOF, or until they idle after the
/// command exited. One thread serves them all: a thread per stream costs milliseconds per exec
/// under emulation.
fn pump(outputs: Vec<(OwnedFd, Stream)>, writer: &Writer, exit_r: &OwnedFd) {
    let mut open: Vec<(std::fs::File, Stream)> = outputs
        .into_iter()
        .map(|(fd, which)| (std::fs::File::from(fd), which))
        .collect();
    let mut buf = vec![0u8; DATA_CHUNK];
    let mut command_exited = false;
    while !open.is_empty() {
        let timeout = if command_exited {
            PollTimeout::from(DRAIN_IDLE_MS)
        } else {
            PollTimeout::NONE
        };
        let mut fds: Vec<PollFd<'_>> = open
            .iter()
            .map(|(f, _)| PollFd::new(f.as_fd(), PollFlags::POLLIN))
            .collect();
        if !command_exited {
            fds.push(PollFd::new(exit_r.as_fd(), PollFlags::POLLIN));
        }
        match poll(&mut fds, timeout) {
            Ok(0) => break, // idle after exit: a background process holds the streams
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => break,
        }
        let ready: Vec<bool> = fds.iter().map(|f| f.any().unwrap_or(false)).collect();
        drop(fds);
        if !command_exited && ready.get(open.len()).copied().unwrap_or(false) {
            command_exited = true;
        }
        let mut ended = vec![false; open.len()];
        for (((file, which), ready), ended) in open.iter_mut().zip(&ready).zip(&mut ended) {
            if !*ready {
                continue;
            }
            match file.read(&mut buf) {
                Ok(0) => *ended = true,
                Ok(n) => {
                    let chunk = buf.get(..n).unwrap_or_default().to_vec();
                    if writer.send(&Frame::Data(*which, chunk)).is_err() {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // EIO on a PTY master once the last slave holder is gone.
                Err(_) => *ended = true,
            }
            if *ended {
                let _ = writer.send(&Frame::Eof(*which));
            }
        }
        let mut ended = ended.into_iter();
        open.retain(|_| !ended.next().unwrap_or(false));
    }
    for (_, which) in open {
        let _ = writer.send(&Frame::Eof(which));
    }
}

/// Decodes host frames: stdin data, resizes, signals. A vanished host kills the command.
///
/// The stdin writer thread starts with the first data: most commands get none, and a thread
/// costs milliseconds per exec under emulation.
fn input(
    mut reader: FrameReader,
    stdin: StdinSink,
    pty_master: Option<OwnedFd>,
    pgid: Pid,
    exited: &AtomicBool,
) {
    let is_pty = matches!(stdin, StdinSink::Pty(_));
    let mut stdin = Some(stdin);
    let mut stdin_tx: Option<SyncSender<Option<Vec<u8>>>> = None;
    // The sender for stdin data, starting the writer on first use; `None` once stdin ended.
    let sender = |stdin: &mut Option<StdinSink>, tx: &mut Option<SyncSender<_>>| {
        if tx.is_none()
            && let Some(sink) = stdin.take()
        {
            let (new_tx, rx) = sync_channel::<Option<Vec<u8>>>(STDIN_QUEUE);
            let started = crate::pool::spawn("exec-stdin", move || stdin_writer(sink, &rx));
            if let Err(e) = started {
                eprintln!("airlock-guest: exec stdin: {e}");
            }
            *tx = Some(new_tx);
        }
        tx.clone()
    };
    let mut stdin_ended = false;
    loop {
        match reader.next::<ExecControl>() {
            Ok(Some(Frame::Data(Stream::Stdin, bytes))) => {
                if !stdin_ended && let Some(tx) = sender(&mut stdin, &mut stdin_tx) {
                    let _ = tx.send(Some(bytes));
                }
            }
            Ok(Some(Frame::Eof(Stream::Stdin))) => {
                if !stdin_ended {
                    stdin_ended = true;
                    if is_pty {
                        // On a terminal, end-of-input is the VEOF character (^D).
                        if let Some(tx) = sender(&mut stdin, &mut stdin_tx) {
                            let _ = tx.send(Some(vec![0x04]));
                        }
                    } else if let Some(tx) = stdin_tx.take() {
                        let _ = tx.send(None);
                    } else {
                        stdin = None; // closes the command's stdin
                    }
                }
            }
            Ok(Some(Frame::Message(ExecControl::Resize { size }))) => {
                if let Some(master) = &pty_master {
                    let _ = pty::resize(master.as_fd(), size);
                }
            }
            Ok(Some(Frame::Message(ExecControl::Signal { signal }))) => {
                if let Ok(sig) = Signal::try_from(signal)
                    && !exited.load(Ordering::SeqCst)
                {
                    let _ = killpg(pgid, sig);
                }
            }
            Ok(Some(other)) => {
                eprintln!("airlock-guest: ignoring unexpected frame {other:?}");
            }
            Ok(None) | Err(_) => {
                if !exited.load(Ordering::SeqCst) {
                    let _ = killpg(pgid, Signal::SIGKILL);
                }
                return;
            }
        }
    }
}

/// Writes queued stdin to the command; `None` closes its stdin.
fn stdin_writer(sink: StdinSink, rx: &Receiver<Option<Vec<u8>>>) {
    let mut sink = Some(sink);
    while let Ok(item) = rx.recv() {
        match (item, sink.as_mut()) {
            (Some(bytes), Some(StdinSink::Pipe(p))) => {
                if p.write_all(&bytes).is_err() {
                    sink = None; // the command closed its stdin; discard the rest
                }
            }
            (Some(bytes), Some(StdinSink::Pty(f))) => {
                if f.write_all(&bytes).is_err() {
                    sink = None;
                }
            }
            (None, _) => sink = None,
            (Some(_), None) => {}
        }
    }
}
