//! `airlock doctor`: what this host offers and what airlock will use, with reasons.

use airlock::supervisor::state_root;
use airlock_vm::image::{Cache, kernel, tiny};
use airlock_vm::qemu::QemuEngine;
use clap::Args;

/// Arguments of `airlock doctor`.
#[derive(Debug, Args)]
pub struct DoctorArgs {}

/// Prints the report; exit 0 when a sandbox can run (or be built on first use), 1 otherwise.
pub fn main(_args: &DoctorArgs) -> anyhow::Result<u8> {
    let mut ok = true;
    let mut line = |label: &str, good: bool, text: String| {
        ok &= good;
        println!("{} {label:<14} {text}", if good { "ok  " } else { "FAIL" });
    };

    let accel = airlock_vm::accel::probe();
    line(
        "accelerator",
        true,
        format!("{} ({})", accel.accel, accel.reason),
    );

    match QemuEngine::locate() {
        Ok(q) => match q.version() {
            Ok(v) => line("qemu", true, format!("{} — {v}", q.binary().display())),
            Err(e) => line("qemu", false, format!("{}: {e}", q.binary().display())),
        },
        Err(e) => line("qemu", false, e.to_string()),
    }
    match airlock_vm::vsock::locate_backend() {
        Ok(p) => line("vsock backend", true, p.display().to_string()),
        Err(e) => line("vsock backend", false, e.to_string()),
    }

    let cache = Cache::from_env()?;
    line("cache dir", true, cache.root().display().to_string());
    match kernel::cached(&cache) {
        Ok(Some(k)) => line(
            "kernel",
            true,
            format!(
                "cached {} ({}, {}, built in {} s)",
                k.key, k.manifest.release, k.manifest.source, k.manifest.build_secs
            ),
        ),
        Ok(None) => {
            let missing = kernel::missing_build_deps();
            if missing.is_empty() {
                line(
                    "kernel",
                    true,
                    "not built yet; `airlock run` builds it on first use (several minutes)".into(),
                );
            } else {
                let what: Vec<String> = missing.iter().map(|(w, p)| format!("{w} ({p})")).collect();
                line(
                    "kernel",
                    false,
                    format!("not built and cannot be built: missing {}", what.join(", ")),
                );
            }
        }
        Err(e) => line("kernel", false, e.to_string()),
    }
    match tiny::cached(&cache) {
        Ok(Some(p)) => line("image tiny", true, format!("cached {}", p.display())),
        Ok(None) => line(
            "image tiny",
            true,
            "not built yet; built in under a second on first use".into(),
        ),
        Err(e) => line("image tiny", false, e.to_string()),
    }
    line("state dir", true, state_root().display().to_string());

    // Protections, as this host will give them.
    let root = nix::unistd::getuid().is_root();
    line(
        "engine jail",
        true,
        format!(
            "QEMU -sandbox seccomp, no capabilities, no_new_privs; {}",
            if root {
                "own empty network, IPC and UTS namespaces"
            } else {
                "namespaces skipped (needs root; not yet via user namespaces)"
            }
        ),
    );
    line(
        "in-guest",
        true,
        "workload as `agent` with no_new_privs, seccomp per policy, pids cgroup per command".into(),
    );
    let cgroup = if std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        "v2"
    } else {
        "v1"
    };
    println!(
        "note {:<14} host cgroup limits on the engine (host has cgroup {cgroup}), pivot_root jail, \
         gateway seccomp, Landlock in the guest, disk limit",
        "not yet"
    );
    Ok(if ok { 0 } else { 1 })
}
