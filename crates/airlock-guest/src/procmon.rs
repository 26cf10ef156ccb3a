//! Process events for the audit trail: exec and exit of every guest process, from the kernel's
//! proc connector (`CONFIG_PROC_EVENTS`), sent to the host as `source: guest` reports.
//!
//! [`parse`] is a pure, bounds-checked parser of one netlink datagram; [`start`] owns the socket.
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
/// Bytes of argv reported per exec; longer command lines are truncated and flagged.
const MAX_ARGV_BYTES: usize = 4096;

/// A raw event from the connector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawEvent {
    /// `exec` by a process.
    Exec {
        /// Thread group id (the process id).
        tgid: u32,
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
        RawEvent::Exit { .. } => None,
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

/// Reads events forever, handing each report to `emit`; counts overruns.
pub fn run(fd: &OwnedFd, mut emit: impl FnMut(GuestEvent) -> io::Result<()>) -> io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match nix::sys::socket::recv(
            fd.as_raw_fd(),
            &mut buf,
            nix::sys::socket::MsgFlags::empty(),
        ) {
            Ok(n) => {
                for ev in parse(buf.get(..n).unwrap_or_default()) {
                    if let Some(report) = report(ev) {
                        emit(report)?;
                    }
                }
            }
            Err(nix::errno::Errno::ENOBUFS) => emit(GuestEvent::EventsDropped { count: 1 })?,
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
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
