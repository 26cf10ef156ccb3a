//! Serves one share on a vhost-user-fs socket and prints every gateway event, for trying the
//! gateway with a real QEMU by hand (see `docs/filesystem.md`, "Trying it").
//!
//! `cargo run -p airlock-fs --example serve -- SOCKET HOST_DIR [rw|ro] [POLICY_FILE]`
//!
//! Without a policy file, the share is mounted at `/workspace` with only the built-in
//! protected paths. Serves until QEMU disconnects.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use airlock_fs::{FsEvent, FsEvents, FsGateway, Share};
use airlock_policy::MountMode;

struct Print;

impl FsEvents for Print {
    fn record(&self, e: &FsEvent) {
        println!(
            "{} {} {:?}{} rule={} reason={}",
            e.decision,
            e.op,
            e.path,
            e.path2
                .as_ref()
                .map(|p| format!(" -> {p:?}"))
                .unwrap_or_default(),
            e.rule,
            e.reason
        );
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(socket), Some(dir)) = (args.first(), args.get(1)) else {
        eprintln!("usage: serve SOCKET HOST_DIR [rw|ro] [POLICY_FILE]");
        return ExitCode::from(2);
    };
    let mode = match args.get(2).map(String::as_str) {
        None | Some("rw") => MountMode::Rw,
        Some("ro") => MountMode::Ro,
        Some(other) => {
            eprintln!("unknown mode {other:?}");
            return ExitCode::from(2);
        }
    };
    let policy = match args.get(3) {
        Some(file) => airlock_policy::load_file(Path::new(file)),
        None => {
            let text = format!(
                "[[filesystem.mounts]]\nhost = {dir:?}\nguest = \"/workspace\"\nmode = {:?}\n",
                mode.as_str()
            );
            airlock_policy::load_str(&text, Path::new("serve.toml"))
        }
    };
    let policy = match policy {
        Ok(p) => Arc::new(p),
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let share = Share {
        host_dir: PathBuf::from(dir),
        guest_path: "/workspace".to_owned(),
        mode,
    };
    match FsGateway::start(Path::new(socket), share, policy, Arc::new(Print)) {
        Ok(gw) => {
            eprintln!("serving {dir} on {socket}");
            gw.join();
            ExitCode::SUCCESS
        }
        Err(e) => {
            let mut msg = e.to_string();
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                msg.push_str(&format!(": {s}"));
                src = s.source();
            }
            eprintln!("{msg}");
            ExitCode::FAILURE
        }
    }
}
