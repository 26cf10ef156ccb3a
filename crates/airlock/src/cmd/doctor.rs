//! `airlock doctor`: what this host offers and what airlock will use, with reasons.

use airlock_image::{Cache, kernel, tiny};
use airlock_supervisor::state_root;
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
        println!("{} {label:<17} {text}", if good { "ok  " } else { "FAIL" });
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
    for finding in airlock_image::debian::doctor_findings(&cache) {
        println!("warn {:<17} {finding}", "image debian");
    }
    line("state dir", true, state_root().display().to_string());
    let nofile = airlock_jail::rlimit::nofile_ceiling();
    let budget = airlock_fs::guest_fd_budget_for(nofile);
    line(
        "open files",
        true,
        format!(
            "gateways get RLIMIT_NOFILE {nofile}: a share serves up to {} files open at once \
             (or filesystem.max_open) and keeps at most {} descriptors for the nodes the guest \
             knows, so trees of any size work (nodes beyond that are reopened by name and \
             checked)",
            budget / 2,
            airlock_fs::MAX_RESIDENT
        ),
    );

    // Behind a TLS-inspecting proxy the host trusts roots a fresh guest image does not.
    let extra = airlock_supervisor::credentials::host_extra_roots();
    if extra.is_empty() {
        line(
            "host CA roots",
            true,
            "the host trusts no CA beyond the system set".into(),
        );
    } else {
        println!(
            "warn {:<17} {}",
            "host CA roots",
            format_args!(
                "the host trusts {} CA certificate file(s) beyond the system set ({} or \
                 SSL_CERT_FILE), which guest images lack: HTTPS from a sandbox through a \
                 TLS-inspecting proxy fails until the policy sets [network] trust_host_ca = true",
                extra.len(),
                airlock_supervisor::credentials::LOCAL_CA_DIR
            )
        );
    }
    match airlock_supervisor::credentials::authority_dir() {
        Ok(dir) => line(
            "egress CA",
            true,
            format!(
                "terminates TLS only to hosts a credential or HTTP rule names; {} ({})",
                dir.join("ca.pem").display(),
                if dir.join("ca-key.pem").exists() {
                    "made"
                } else {
                    "made on first use"
                }
            ),
        ),
        Err(e) => line("egress CA", false, e.to_string()),
    }

    // Protections, as this host will give them; a policy may require them (`sandbox.require`).
    for p in airlock_supervisor::protections::probe() {
        println!(
            "{} {:<17} {}",
            if p.available { "ok  " } else { "no  " },
            p.name,
            p.detail
        );
    }
    line(
        "engine filters",
        true,
        "QEMU -sandbox plus airlock's seccomp deny-list; no capabilities, no_new_privs".into(),
    );
    line(
        "disk limit",
        which("mkfs.ext4"),
        "the guest's writable layer is an ext4 disk of sandbox.disk (needs mkfs.ext4 from \
         e2fsprogs)"
            .into(),
    );
    line(
        "in-guest",
        true,
        "workload as `agent` with no_new_privs, Landlock (writes only to its shares, /tmp, home, \
         /dev), seccomp per policy, pids and memory cgroup per command"
            .into(),
    );
    line(
        "gateway jails",
        true,
        format!(
            "fs and egress gateways in processes of their own: seccomp allow-lists, Landlock, no \
             capabilities beyond file serving{}",
            if nix::unistd::geteuid().is_root() {
                "; own uid (egress) and a mount namespace holding only the share (fs)"
            } else {
                " (uid and mount jails need root)"
            }
        ),
    );
    Ok(if ok { 0 } else { 1 })
}

fn which(name: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|d| d.join(name).is_file()))
}
