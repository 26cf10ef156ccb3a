//! `airlock-guest`: the agent that runs as `/init` inside every airlock microVM.
//!
//! As PID 1 it sets up the minimal system ([`init`]), then serves the host over vsock: it accepts
//! exec connections ([`exec`]) and reports readiness on the control connection ([`control`]).
//! Everything it receives comes from the host, but it still parses defensively: a bad frame ends
//! that connection, never the agent.
#![warn(clippy::cast_possible_truncation, clippy::cast_sign_loss)]

mod control;
mod docker;
mod exec;
mod harden;
mod init;
mod pool;
mod procmon;
mod proxy;
mod pty;
mod reaper;
mod report;
mod rootfs;
mod session;

use std::process::ExitCode;

fn main() -> ExitCode {
    let pid1 = std::process::id() == 1;
    let mut boot = airlock_proto::BootStages {
        agent_start_ms: control::uptime_ms(),
        init_done_ms: 0,
    };
    let mut root = rootfs::Root::default();
    if pid1 {
        match init::setup() {
            Ok(r) => root = r,
            Err(e) => {
                eprintln!("airlock-guest: init failed: {e}");
                init::power_off();
            }
        }
    }
    boot.init_done_ms = control::uptime_ms();
    let result = control::serve(root.docker, boot);
    if let Err(e) = &result {
        eprintln!("airlock-guest: {e}");
    }
    if pid1 {
        // PID 1 must never return: the kernel would panic. Leave through the reboot syscall,
        // which QEMU (-no-reboot) turns into a clean exit.
        init::power_off();
    }
    if result.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
