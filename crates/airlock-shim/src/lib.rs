//! `containerd-shim-airlock-v2`: a containerd runtime shim (task API v2, containerd 1.6 and
//! 1.7) that runs each container, or each Kubernetes pod, in its own airlock microVM.
//!
//! containerd starts the shim with `--runtime io.containerd.airlock.v2` (or a CRI runtime
//! handler of that type). Containers of one pod share one shim process, grouped by the CRI
//! sandbox id, and so one VM. Each container's root filesystem is mounted on the host from
//! containerd's snapshot and shared into the VM through an airlock filesystem gateway; its
//! processes run there chrooted into it. The VM runs under a policy the node admin approved
//! ([`config`]); the pod's audit log is written like any sandbox's.

pub mod config;
pub mod pod;
pub mod process;
pub mod service;
pub mod shim;
pub mod spec;
mod task;

/// The runtime id containerd knows the shim by.
pub const RUNTIME_ID: &str = "io.containerd.airlock.v2";

/// Runs the shim (called from the `containerd-shim-airlock-v2` binary's `main`).
pub fn main() -> std::process::ExitCode {
    // Gateways are started as `airlock __gateway ...`: use the airlock installed beside us.
    if std::env::var_os("AIRLOCK_SELF").is_none()
        && let Some(airlock) = std::env::current_exe()
            .ok()
            .map(|e| e.with_file_name("airlock"))
            .filter(|p| p.is_file())
    {
        // SAFETY: no other thread exists yet (the runtime is built below), so nothing reads the
        // environment concurrently.
        unsafe { std::env::set_var("AIRLOCK_SELF", airlock) };
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{RUNTIME_ID}: starting the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    // The supervisor waits for its own children (VM engine, gateways, image tools); a
    // shim-wide SIGCHLD reaper would take their exit statuses from it.
    let config = containerd_shim::Config {
        no_reaper: true,
        no_sub_reaper: true,
        ..Default::default()
    };
    runtime.block_on(containerd_shim::asynchronous::run::<shim::AirlockShim>(
        RUNTIME_ID,
        Some(config),
    ));
    std::process::ExitCode::SUCCESS
}
