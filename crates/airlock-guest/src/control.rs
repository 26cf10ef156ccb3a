//! The agent's main loop: start the exec service, tell the host we are ready, and obey the
//! control connection.

use crate::exec;
use crate::init;
use crate::procmon;
use crate::proxy;
use crate::reaper::Reaper;
use crate::report;
use airlock_proto::codec::Decoder;
use airlock_proto::{
    BootStages, CONTROL_PORT, ControlRequest, EXEC_PORT, Frame, GuestEvent, PROTOCOL_VERSION,
};
use std::io::{self, Read};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;
use vsock::{VsockListener, VsockStream};

/// vsock CID of the host.
const HOST_CID: u32 = 2;
/// Attempts to reach the host's control port; the host listens before boot, so retries only
/// cover a slow vsock device start.
const CONNECT_ATTEMPTS: u32 = 50;

/// Serves until the host asks for shutdown (`Ok`) or the control connection is lost (`Err`).
/// With `docker`, the engine starts first, so it comes up while the host binds the sandbox.
/// `boot` says when the agent started and finished its init, for the ready message.
pub fn serve(docker: bool, boot: BootStages) -> io::Result<()> {
    let reaper = Reaper::start()?;
    if docker {
        crate::docker::start(&reaper);
    }
    let listener = VsockListener::bind_with_cid_port(libc::VMADDR_CID_ANY, EXEC_PORT)?;
    thread::Builder::new()
        .name("exec-accept".into())
        .spawn(move || {
            for conn in listener.incoming() {
                match conn {
                    Ok(stream) => {
                        let reaper = reaper.clone();
                        let accepted = std::time::Instant::now();
                        let served = crate::pool::spawn("exec", move || {
                            exec::serve(stream, &reaper, accepted);
                        });
                        if let Err(e) = served {
                            eprintln!("airlock-guest: exec session: {e}");
                        }
                    }
                    Err(e) => eprintln!("airlock-guest: accept: {e}"),
                }
            }
        })?;

    // The forwarder exists from boot; without a gateway bound on the host its connections fail.
    if let Err(e) = proxy::start() {
        eprintln!("airlock-guest: proxy on {}: {e}", proxy::LISTEN);
    }
    let mut control = connect_host()?;
    let writer = Arc::new(Mutex::new(control.try_clone()?));
    report::install(writer.clone());
    let ready = GuestEvent::Ready {
        protocol: PROTOCOL_VERSION,
        agent_version: env!("CARGO_PKG_VERSION").to_string(),
        kernel_release: nix::sys::utsname::uname()
            .map(|u| u.release().to_string_lossy().into_owned())
            .unwrap_or_default(),
        uptime_ms: uptime_ms(),
        boot,
    };
    report::send(&writer, ready)?;
    // Process events start after `ready`, which must be the first message the host sees.
    let flush = procmon::Flush::new()?;
    match procmon::subscribe() {
        Ok(fd) => {
            let writer = writer.clone();
            let flush = flush.clone();
            thread::Builder::new()
                .name("procmon".into())
                .spawn(move || {
                    if let Err(e) = procmon::run(&fd, &flush, |ev| report::send(&writer, ev)) {
                        eprintln!("airlock-guest: process events stopped: {e}");
                    }
                })?;
        }
        Err(e) => eprintln!("airlock-guest: process events unavailable: {e}"),
    }

    let mut decoder = Decoder::new();
    let mut chunk = [0u8; 4096];
    loop {
        while let Some(frame) = decoder
            .next_frame::<ControlRequest>()
            .map_err(io::Error::other)?
        {
            match frame {
                Frame::Message(ControlRequest::Shutdown {}) => {
                    // Report the last processes and sync before the goodbye: the host may
                    // stop the VM as soon as it hears it.
                    flush.flush(Duration::from_millis(500));
                    nix::unistd::sync();
                    report::send(&writer, GuestEvent::Bye {})?;
                    return Ok(());
                }
                Frame::Message(ControlRequest::Mount {
                    id,
                    tag,
                    path,
                    read_only,
                }) => {
                    let reply = match init::mount_share(&tag, &path, read_only) {
                        Ok(()) => GuestEvent::Mounted { id },
                        Err(e) => GuestEvent::MountFailed {
                            id,
                            message: e.to_string(),
                        },
                    };
                    report::send(&writer, reply)?;
                }
                Frame::Message(ControlRequest::Configure { id, ca_pem, env }) => {
                    let reply = match crate::session::configure(&ca_pem, env) {
                        Ok(()) => GuestEvent::Configured { id },
                        Err(e) => GuestEvent::ConfigureFailed {
                            id,
                            message: e.to_string(),
                        },
                    };
                    report::send(&writer, reply)?;
                }
                other => eprintln!("airlock-guest: ignoring control frame {other:?}"),
            }
        }
        let n = control.read(&mut chunk)?;
        match chunk.get(..n) {
            Some(bytes) if !bytes.is_empty() => decoder.extend(bytes),
            _ => return Err(io::Error::other("host closed the control connection")),
        }
    }
}

fn connect_host() -> io::Result<VsockStream> {
    let mut last = None;
    for _ in 0..CONNECT_ATTEMPTS {
        match VsockStream::connect_with_cid_port(HOST_CID, CONTROL_PORT) {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
        thread::sleep(Duration::from_millis(20));
    }
    Err(last.unwrap_or_else(|| io::Error::other("no connect attempt")))
}

/// Milliseconds since the guest kernel booted (CLOCK_BOOTTIME).
pub fn uptime_ms() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME)
        .map(|t| {
            let ms = t
                .tv_sec()
                .saturating_mul(1000)
                .saturating_add(t.tv_nsec() / 1_000_000);
            u64::try_from(ms).unwrap_or(0)
        })
        .unwrap_or(0)
}
