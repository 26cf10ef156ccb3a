//! Process events for the audit trail: exec and exit of every guest process, from the kernel's
//! proc connector (`CONFIG_PROC_EVENTS`), sent to the host as `source: guest` reports.
//!
//! [`parse`] is a pure, bounds-checked parser of one netlink datagram; [`subscribe`] opens the socket and [`run`] reads it.
//! When the kernel's socket buffer overruns (a fork bomb), the loss is counted and reported,
//! never hidden.

use airlock_proto::{ExitStatus, GuestEvent};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// Netlink message header length.
const NLMSG_HDR: usize = 16;
/// Connector message header length (`struct cn_msg` without data).
const CN_MSG_HDR: usize = 20;
/// `struct proc_event` header: what, cpu, timestamp.
const EVENT_HDR: usize = 16;
const PROC_EVENT_EXEC: u32 = 0x0000_0002;
const PROC_EVENT_EXIT: u32 = 0x8000_0000;
const PROC_EVENT_COMM: u32 = 0x0000_0200;
/// How long a rename waits for the `exec` that usually follows it (exec renames first).
const COMM_WAIT: std::time::Duration = std::time::Duration::from_millis(250);
/// Bytes of argv reported per exec; longer command lines are truncated and flagged.
const MAX_ARGV_BYTES: usize = 4096;

/// A raw event from the connector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawEvent {
    /// `exec` by a process.
    Exec {
        /// Thread group id (the process id).
        tgid: u32,
    },
    /// A thread renamed itself (also part of every exec). Busybox runs applets in a forked
    /// child without `exec` and renames it, so this is how those commands become visible.
    Comm {
        /// Thread id.
        pid: u32,
        /// Thread group id.
        tgid: u32,
        /// The new name (up to 15 bytes).
        comm: String,
    },
    /// Exit of a thread; a process exit when `pid == tgid`.
    Exit {
        /// Thread id.
        pid: u32,
        /// Thread group id.
        tgid: u32,
        /// Wait status as `waitpid` encodes it.
        code: u32,
    },
}

fn u32_at(buf: &[u8], off: usize) -> Option<u32> {
    let b = buf.get(off..off.checked_add(4)?)?;
    Some(u32::from_ne_bytes(<[u8; 4]>::try_from(b).ok()?))
}

fn u16_at(buf: &[u8], off: usize) -> Option<u16> {
    let b = buf.get(off..off.checked_add(2)?)?;
    Some(u16::from_ne_bytes(<[u8; 2]>::try_from(b).ok()?))
}

/// Parses every connector message in one datagram; malformed parts are skipped.
pub fn parse(datagram: &[u8]) -> Vec<RawEvent> {
    let mut out = Vec::new();
    let mut off = 0usize;
    while let Some(len) = u32_at(datagram, off).and_then(|l| usize::try_from(l).ok()) {
        if len < NLMSG_HDR {
            break;
        }
        let Some(msg) = off.checked_add(len).and_then(|end| datagram.get(off..end)) else {
            break;
        };
        if let Some(ev) = parse_one(msg) {
            out.push(ev);
        }
        // Netlink messages are 4-byte aligned.
        off = match off.checked_add(len.next_multiple_of(4)) {
            Some(o) => o,
            None => break,
        };
    }
    out
}

fn parse_one(msg: &[u8]) -> Option<RawEvent> {
    let cn = msg.get(NLMSG_HDR..)?;
    let data_len = usize::from(u16_at(cn, 16)?);
    let data = cn.get(CN_MSG_HDR..CN_MSG_HDR.checked_add(data_len)?)?;
    let what = u32_at(data, 0)?;
    let body = data.get(EVENT_HDR..)?;
    match what {
        PROC_EVENT_EXEC => Some(RawEvent::Exec {
            tgid: u32_at(body, 4)?,
        }),
        PROC_EVENT_COMM => {
            let name = body.get(8..24)?;
            let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
            Some(RawEvent::Comm {
                pid: u32_at(body, 0)?,
                tgid: u32_at(body, 4)?,
                comm: String::from_utf8_lossy(name.get(..end).unwrap_or_default()).into_owned(),
            })
        }
        PROC_EVENT_EXIT => Some(RawEvent::Exit {
            pid: u32_at(body, 0)?,
            tgid: u32_at(body, 4)?,
            code: u32_at(body, 8)?,
        }),
        _ => None,
    }
}

/// Decodes a wait status.
pub fn exit_status(code: u32) -> ExitStatus {
    let sig = code & 0x7f;
    if sig == 0 {
        ExitStatus::Code {
            code: i32::try_from((code >> 8) & 0xff).unwrap_or(0),
        }
    } else {
        ExitStatus::Signal {
            signal: i32::try_from(sig).unwrap_or(0),
        }
    }
}

/// The kernel's `comm` for a program named `argv0`: its base name, cut to 15 bytes.
fn comm_of(argv0: &str) -> String {
    let base = argv0.rsplit('/').next().unwrap_or(argv0);
    let mut end = base.len().min(15);
    while !base.is_char_boundary(end) {
        end -= 1;
    }
    base.get(..end).unwrap_or_default().to_string()
}

/// Splits a `/proc/PID/cmdline` into argv, keeping at most [`MAX_ARGV_BYTES`].
pub fn split_cmdline(raw: &[u8]) -> (Vec<String>, bool) {
    let truncated = raw.len() > MAX_ARGV_BYTES;
    let raw = raw.get(..MAX_ARGV_BYTES).unwrap_or(raw);
    let raw = raw.strip_suffix(b"\0").unwrap_or(raw);
    if raw.is_empty() {
        return (Vec::new(), truncated);
    }
    (
        raw.split(|&b| b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect(),
        truncated,
    )
}

/// Turns a raw event into the report for the host, reading `/proc` for exec details.
/// Thread exits and the agent's own exit are not reported.
pub fn report(ev: RawEvent) -> Option<GuestEvent> {
    match ev {
        RawEvent::Exec { tgid } => {
            let proc_dir = format!("/proc/{tgid}");
            let cmdline = read_limited(&format!("{proc_dir}/cmdline"));
            let (argv, argv_truncated) = split_cmdline(&cmdline);
            let cwd = std::fs::read_link(format!("{proc_dir}/cwd"))
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default();
            let status =
                String::from_utf8_lossy(&read_limited(&format!("{proc_dir}/status"))).into_owned();
            let field = |name: &str| {
                status
                    .lines()
                    .find_map(|l| l.strip_prefix(name))
                    .and_then(|v| v.split_whitespace().next())
                    .and_then(|v| v.parse::<u32>().ok())
                    .unwrap_or(0)
            };
            Some(GuestEvent::ProcExec {
                pid: tgid,
                ppid: field("PPid:"),
                uid: field("Uid:"),
                argv,
                argv_truncated,
                cwd,
            })
        }
        RawEvent::Exit { pid, tgid, code } if pid == tgid && pid != 1 => {
            Some(GuestEvent::ProcExit {
                pid,
                status: exit_status(code),
            })
        }
        RawEvent::Exit { .. } | RawEvent::Comm { .. } => None,
    }
}

fn read_limited(path: &str) -> Vec<u8> {
    use std::io::Read;
    let mut buf = Vec::new();
    if let Ok(f) = std::fs::File::open(path) {
        let _ = f
            .take(u64::try_from(MAX_ARGV_BYTES + 1).unwrap_or(u64::MAX))
            .read_to_end(&mut buf);
    }
    buf
}

/// Opens the connector socket and subscribes to process events.
pub fn subscribe() -> io::Result<OwnedFd> {
    // SAFETY: socket(2) with constant arguments; the returned fd is checked and owned below.
    // JUSTIFICATION: nix has no NETLINK_CONNECTOR protocol constant.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            libc::NETLINK_CONNECTOR,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh, valid descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: sockaddr_nl is plain old data; zero is a valid initial value.
    let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    addr.nl_family = libc::sa_family_t::try_from(libc::AF_NETLINK).unwrap_or(0);
    addr.nl_pid = std::process::id();
    addr.nl_groups = libc::CN_IDX_PROC;
    let addr_len = libc::socklen_t::try_from(std::mem::size_of::<libc::sockaddr_nl>()).unwrap_or(0);
    // SAFETY: bind reads `addr_len` bytes from a live, initialised sockaddr_nl.
    if unsafe { libc::bind(fd.as_raw_fd(), (&raw const addr).cast(), addr_len) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut msg = Vec::with_capacity(NLMSG_HDR + CN_MSG_HDR + 4);
    let total = u32::try_from(NLMSG_HDR + CN_MSG_HDR + 4).unwrap_or(0);
    msg.extend_from_slice(&total.to_ne_bytes());
    msg.extend_from_slice(&u16::try_from(libc::NLMSG_DONE).unwrap_or(3).to_ne_bytes());
    msg.extend_from_slice(&0u16.to_ne_bytes()); // flags
    msg.extend_from_slice(&0u32.to_ne_bytes()); // seq
    msg.extend_from_slice(&std::process::id().to_ne_bytes());
    msg.extend_from_slice(&libc::CN_IDX_PROC.to_ne_bytes());
    msg.extend_from_slice(&libc::CN_VAL_PROC.to_ne_bytes());
    msg.extend_from_slice(&0u32.to_ne_bytes()); // seq
    msg.extend_from_slice(&0u32.to_ne_bytes()); // ack
    msg.extend_from_slice(&4u16.to_ne_bytes()); // data len
    msg.extend_from_slice(&0u16.to_ne_bytes()); // flags
    msg.extend_from_slice(&1u32.to_ne_bytes()); // PROC_CN_MCAST_LISTEN
    // SAFETY: send reads `msg.len()` bytes from a live buffer on a valid socket.
    let sent = unsafe { libc::send(fd.as_raw_fd(), msg.as_ptr().cast(), msg.len(), 0) };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

/// Asks [`run`] to report everything it holds now (before power-off) and waits for it.
///
/// A request wakes [`run`] through a pipe, so the reader sleeps in `poll` with no timeout while
/// nothing is pending: an idle guest has no periodic wake-ups from here.
#[derive(Clone)]
pub struct Flush {
    inner: std::sync::Arc<(std::sync::Mutex<FlushState>, std::sync::Condvar)>,
    /// Read end (polled by [`run`]) and write end (one byte per request), both non-blocking.
    wake: std::sync::Arc<(OwnedFd, OwnedFd)>,
}

#[derive(Default)]
struct FlushState {
    requested: u64,
    done: u64,
}

impl Flush {
    /// A flush handle with its wake-up pipe.
    pub fn new() -> io::Result<Flush> {
        let flags = nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK;
        let wake = nix::unistd::pipe2(flags)?;
        Ok(Flush {
            inner: std::sync::Arc::default(),
            wake: std::sync::Arc::new(wake),
        })
    }

    /// Requests a flush and waits up to `limit` for it.
    pub fn flush(&self, limit: std::time::Duration) {
        let (lock, cv) = &*self.inner;
        let mut st = lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        st.requested += 1;
        let want = st.requested;
        // A full pipe already holds a wake-up, so a failed write loses nothing.
        let _ = nix::unistd::write(&self.wake.1, &[1]);
        let _unused = cv
            .wait_timeout_while(st, limit, |s| s.done < want)
            .unwrap_or_else(std::sync::PoisonError::into_inner);
    }

    fn pending(&self) -> Option<u64> {
        let st = self
            .inner
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        (st.requested > st.done).then_some(st.requested)
    }

    fn done(&self, upto: u64) {
        let (lock, cv) = &*self.inner;
        lock.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .done = upto;
        cv.notify_all();
    }

    /// Empties the wake-up pipe (requests are counted in the state, not the bytes).
    fn clear_wake(&self) {
        let mut sink = [0u8; 64];
        while matches!(nix::unistd::read(self.wake.0.as_raw_fd(), &mut sink), Ok(n) if n > 0) {}
    }
}

/// Reads events forever, handing each report to `emit`; counts overruns. On a [`Flush`]
/// request it reports what it holds at once.
pub fn run(
    fd: &OwnedFd,
    flush: &Flush,
    mut emit: impl FnMut(GuestEvent) -> io::Result<()>,
) -> io::Result<()> {
    use std::time::Instant;
    // Renames not yet known to be part of an exec: (tgid, when, new name). Reported when no
    // exec follows in time, or when the process exits, reading argv then (busybox rewrites it
    // after renaming).
    let mut pending: Vec<(u32, Instant, String, Option<GuestEvent>)> = Vec::new();
    // At rename time uid, ppid and cwd are right but argv may still be the parent's; later the
    // applet has usually rewritten argv, unless it already exited: then its name stands in.
    let applet = |tgid: u32, comm: String, early: Option<GuestEvent>| {
        let late = report(RawEvent::Exec { tgid });
        let late_argv = match &late {
            Some(GuestEvent::ProcExec { argv, .. }) if !argv.is_empty() => Some(argv.clone()),
            _ => None,
        };
        match early {
            Some(GuestEvent::ProcExec {
                pid,
                ppid,
                uid,
                argv,
                cwd,
                ..
            }) => {
                let fresh = late_argv.filter(|l| *l != argv);
                Some(GuestEvent::ProcExec {
                    pid,
                    ppid,
                    uid,
                    argv_truncated: fresh.is_none(),
                    argv: fresh.unwrap_or_else(|| vec![comm]),
                    cwd,
                })
            }
            _ => late,
        }
    };
    // Processes whose exec was reported: their later renames (busybox names itself after the
    // applet) are not new commands. Entries leave at exit; the cap bounds missed exits.
    // The name each exec'd process had right after its exec: a later rename to another name is
    // busybox running an applet inside that process (e.g. the last command of `sh -c`).
    let mut execd: std::collections::HashMap<u32, String> = std::collections::HashMap::new();
    const EXECD_CAP: usize = 65_536;
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    use std::os::fd::AsFd;
    let mut buf = vec![0u8; 64 * 1024];
    let mut drained = false;
    loop {
        // Sleep until an event or a flush request; with renames pending, until the oldest is due.
        let timeout = match pending.iter().map(|(_, at, ..)| *at).min() {
            None => PollTimeout::NONE,
            Some(oldest) => {
                let left = COMM_WAIT.saturating_sub(oldest.elapsed()).as_millis();
                PollTimeout::from(u16::try_from(left).unwrap_or(u16::MAX))
            }
        };
        if drained {
            let mut fds = [
                PollFd::new(fd.as_fd(), PollFlags::POLLIN),
                PollFd::new(flush.wake.0.as_fd(), PollFlags::POLLIN),
            ];
            match poll(&mut fds, timeout) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
            flush.clear_wake();
        }
        drained = false;
        match nix::sys::socket::recv(
            fd.as_raw_fd(),
            &mut buf,
            nix::sys::socket::MsgFlags::MSG_DONTWAIT,
        ) {
            Ok(n) => {
                for ev in parse(buf.get(..n).unwrap_or_default()) {
                    match ev {
                        RawEvent::Comm { pid, tgid, comm }
                            if pid == tgid && tgid != 1 && execd.get(&tgid) != Some(&comm) =>
                        {
                            let early = report(RawEvent::Exec { tgid });
                            pending.push((tgid, Instant::now(), comm, early));
                        }
                        RawEvent::Comm { .. } => {}
                        RawEvent::Exec { tgid } => {
                            // The renames exec itself makes: drop them.
                            let mut renamed = None;
                            pending.retain(|(p, _, comm, _)| {
                                if *p == tgid {
                                    renamed = Some(comm.clone());
                                }
                                *p != tgid
                            });
                            if execd.len() >= EXECD_CAP {
                                execd.clear();
                            }
                            let r = report(ev);
                            // Busybox renames itself to its applet after exec: remember the
                            // name argv[0] implies, so that rename is not taken for a new command.
                            let name = match &r {
                                Some(GuestEvent::ProcExec { argv, .. }) => {
                                    argv.first().map(|a| comm_of(a))
                                }
                                _ => None,
                            };
                            execd.insert(tgid, name.or(renamed).unwrap_or_default());
                            if let Some(r) = r {
                                emit(r)?;
                            }
                        }
                        RawEvent::Exit { pid, tgid, .. } => {
                            if pid == tgid {
                                execd.remove(&tgid);
                            }
                            // A renamed process that exits without exec ran as an applet.
                            let (done, keep): (Vec<_>, Vec<_>) =
                                pending.drain(..).partition(|(p, ..)| *p == tgid);
                            pending = keep;
                            for (p, _, comm, early) in done {
                                if let Some(r) = applet(p, comm, early) {
                                    emit(r)?;
                                }
                            }
                            if let Some(r) = report(ev) {
                                emit(r)?;
                            }
                        }
                    }
                }
            }
            Err(nix::errno::Errno::EAGAIN) => drained = true,
            Err(nix::errno::Errno::EINTR) => {}
            Err(nix::errno::Errno::ENOBUFS) => emit(GuestEvent::EventsDropped { count: 1 })?,
            Err(e) => return Err(e.into()),
        }
        // A flush is served once a receive came back empty, i.e. the socket is drained.
        let flushing = flush.pending().filter(|_| drained);
        let now = Instant::now();
        let (due, keep): (Vec<_>, Vec<_>) = pending
            .drain(..)
            .partition(|(_, at, ..)| flushing.is_some() || now.duration_since(*at) >= COMM_WAIT);
        pending = keep;
        for (p, _, comm, early) in due {
            if let Some(r) = applet(p, comm, early) {
                emit(r)?;
            }
        }
        if let Some(upto) = flushing {
            flush.done(upto);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn datagram(what: u32, body: &[u32]) -> Vec<u8> {
        let mut data = Vec::new();
        data.extend_from_slice(&what.to_ne_bytes());
        data.extend_from_slice(&0u32.to_ne_bytes());
        data.extend_from_slice(&0u64.to_ne_bytes());
        for v in body {
            data.extend_from_slice(&v.to_ne_bytes());
        }
        let mut cn = vec![0u8; 16];
        cn.extend_from_slice(&u16::try_from(data.len()).unwrap().to_ne_bytes());
        cn.extend_from_slice(&0u16.to_ne_bytes());
        cn.extend_from_slice(&data);
        let mut msg = u32::try_from(16 + cn.len()).unwrap().to_ne_bytes().to_vec();
        msg.extend_from_slice(&[0u8; 12]);
        msg.extend_from_slice(&cn);
        msg
    }

    #[test]
    fn parses_exec_and_exit() {
        assert_eq!(
            parse(&datagram(PROC_EVENT_EXEC, &[42, 42])),
            vec![RawEvent::Exec { tgid: 42 }]
        );
        let exit = datagram(PROC_EVENT_EXIT, &[43, 42, 7 << 8, 17, 1, 1]);
        assert_eq!(
            parse(&exit),
            vec![RawEvent::Exit {
                pid: 43,
                tgid: 42,
                code: 7 << 8
            }]
        );
        assert_eq!(
            report(RawEvent::Exit {
                pid: 43,
                tgid: 42,
                code: 0
            }),
            None,
            "threads are not processes"
        );
    }

    #[test]
    fn comm_names() {
        assert_eq!(comm_of("/usr/bin/python3"), "python3");
        assert_eq!(comm_of("a-very-long-program-name"), "a-very-long-pro");
        assert_eq!(comm_of(""), "");
    }

    #[test]
    fn parses_renames() {
        let mut d = datagram(PROC_EVENT_COMM, &[9, 9]);
        // comm[16] after pid and tgid, NUL-padded; extend the data length by 16.
        let name = *b"ls\0\0\0\0\0\0\0\0\0\0\0\0\0\0";
        d.extend_from_slice(&name);
        let data_len = u16::from_ne_bytes([d[32], d[33]]) + 16;
        d[32..34].copy_from_slice(&data_len.to_ne_bytes());
        let total = u32::try_from(d.len()).unwrap();
        d[..4].copy_from_slice(&total.to_ne_bytes());
        assert_eq!(
            parse(&d),
            vec![RawEvent::Comm {
                pid: 9,
                tgid: 9,
                comm: "ls".into()
            }]
        );
    }

    #[test]
    fn every_prefix_and_garbage_is_safe() {
        let d = datagram(PROC_EVENT_EXIT, &[5, 5, 9, 17, 1, 1]);
        for n in 0..d.len() {
            assert!(parse(&d[..n]).is_empty(), "prefix {n}");
        }
        let mut huge = d.clone();
        huge[..4].copy_from_slice(&u32::MAX.to_ne_bytes());
        assert!(parse(&huge).is_empty());
        assert!(parse(&[0xff; 3]).is_empty());
    }

    #[test]
    fn statuses_and_cmdlines() {
        assert_eq!(exit_status(7 << 8), ExitStatus::Code { code: 7 });
        assert_eq!(exit_status(9), ExitStatus::Signal { signal: 9 });
        assert_eq!(
            split_cmdline(b"ls\0-l\0"),
            (vec!["ls".to_string(), "-l".to_string()], false)
        );
        assert_eq!(split_cmdline(b""), (vec![], false));
        let long = vec![b'a'; MAX_ARGV_BYTES + 10];
        let (argv, truncated) = split_cmdline(&long);
        assert!(truncated);
        assert_eq!(argv[0].len(), MAX_ARGV_BYTES);
    }
}
