//! Start-up benchmark for the walking skeleton (`cargo bench -p airlock --bench skeleton`).
//!
//! Prints one table, all measured in this invocation:
//! - baseline: bare QEMU boot of the same kernel and initramfs to power-off (init is busybox
//!   `reboot -f`; vsock only, no shares or disk), median of N, taking turns with the cold runs;
//! - cold `airlock run -- true`: wall time (median of N), split into the phases airlock reports
//!   with `--timings`, and its ratio to the baseline;
//! - warm exec round trip: `true` run repeatedly in one already-booted sandbox.

use airlock_image::Cache;
use airlock_proto::ExecRequest;
use airlock_supervisor::{ExecIo, ExecOutcome, ExecTimings, Images, Sandbox, SandboxConfig};
use airlock_vm::qemu::QemuEngine;
use airlock_vm::vsock::VsockBackend;
use airlock_vm::{BootSpec, Engine, Vm};
use std::time::{Duration, Instant};

const COLD_RUNS: usize = 7;
const WARM_EXECS: usize = 30;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn main() -> anyhow::Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    let cache = Cache::from_env()?;
    let images = Images::resolve(&cache, &indicatif::ProgressBar::hidden())?;
    let accel = airlock_vm::accel::probe();
    let state = tempfile::Builder::new()
        .prefix("al-bench-")
        .tempdir_in("/tmp")?;

    // Baseline and cold runs take turns, so that drift on a shared host moves both alike.
    let mut baseline = Vec::new();
    let mut cold: Vec<serde_json::Value> = Vec::new();
    for i in 0..COLD_RUNS {
        // Baseline: the engine alone, same kernel and initramfs, no shares or disk.
        let dir = state.path().join(format!("base{i}"));
        std::fs::create_dir_all(&dir)?;
        let ms = rt.block_on(async {
            let t0 = Instant::now();
            let mut backend = VsockBackend::start(&dir, &dir.join("vsock.log")).await?;
            let spec = BootSpec {
                kernel: images.kernel.vmlinux.clone(),
                initrd: images.tiny.initrd.clone(),
                cmdline: "rdinit=/sbin/reboot -- -f".into(),
                cpus: 1,
                memory_mib: 512,
                state_dir: dir.clone(),
                accel: accel.accel,
                console_log: dir.join("console.log"),
                engine_log: dir.join("qemu.log"),
                vsock_socket: backend.socket.clone(),
                fs_devices: vec![],
                drives: vec![],
                host_limits: None,
            };
            let mut vm = QemuEngine::locate()?.boot(&spec)?;
            let status = tokio::time::timeout(Duration::from_secs(60), vm.wait()).await??;
            backend.stop().await;
            anyhow::ensure!(status.success(), "baseline QEMU exited with {status}");
            Ok::<_, anyhow::Error>(t0.elapsed().as_secs_f64() * 1000.0)
        })?;
        baseline.push(ms);

        // A cold airlock run through the real CLI.
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_airlock"))
            .args(["run", "--timings", "--", "true"])
            .env("AIRLOCK_STATE_DIR", state.path())
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "airlock run failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let line = String::from_utf8_lossy(&out.stderr)
            .lines()
            .last()
            .unwrap_or_default()
            .to_string();
        cold.push(serde_json::from_str(&line)?);
    }
    let phase = |k: &str| median(cold.iter().filter_map(|v| v.get(k)?.as_f64()).collect());
    let f = |k: &str, v: &serde_json::Value| v.get(k).and_then(|x| x.as_f64()).unwrap_or(f64::NAN);
    let derived = |g: &dyn Fn(&serde_json::Value) -> f64| median(cold.iter().map(g).collect());

    // Warm exec round trips in one booted sandbox.
    let warm = rt.block_on(async {
        let config = SandboxConfig {
            cpus: 1,
            memory_mib: 512,
            disk_bytes: 1 << 30,
            require_host_limits: false,
            keep: false,
            boot_timeout: Duration::from_secs(60),
            accel: accel.clone(),
            audit: None,
            description: "bench".into(),
            policy: std::sync::Arc::new(
                airlock_policy::load_profile("offline").map_err(|e| anyhow::anyhow!("{e}"))?,
            ),
            shares: vec![],
            spare_shares: 0,
            id: None,
            resolver: airlock_net::system_resolver(),
            tls_ports: vec![443],
            egress_tls: None,
        };
        let sandbox = Sandbox::start(&config, &images).await?;
        let mut times = Vec::new();
        // Alternating: the default hardening, then none (root, no seccomp, no no_new_privs), so
        // the cost of setting up the hardening shows as a difference in the same guest.
        for i in 0..2 * WARM_EXECS {
            let hardened = i % 2 == 0;
            let (_tx, control) = tokio::sync::mpsc::unbounded_channel();
            let io = ExecIo {
                stdin: None,
                stdout: Box::pin(tokio::io::sink()),
                stderr: Box::pin(tokio::io::sink()),
                control,
            };
            let req = ExecRequest {
                argv: vec!["true".into()],
                env: vec![],
                cwd: None,
                tty: None,
                user: hardened.then(|| "agent".into()),
                no_new_privs: hardened,
                seccomp: if hardened {
                    airlock_proto::SeccompProfile::Default
                } else {
                    airlock_proto::SeccompProfile::Unconfined
                },
                pids_max: None,
                landlock_write: None,
                root: None,
            };
            let t0 = Instant::now();
            let outcome = sandbox.exec(req, io).await?;
            let total = t0.elapsed().as_secs_f64() * 1000.0;
            let ExecOutcome::Exited { timings, .. } = outcome else {
                anyhow::bail!("`true` did not run: {outcome:?}");
            };
            times.push((hardened, total, timings));
        }
        sandbox.shutdown("bench done").await?;
        Ok::<_, anyhow::Error>(times)
    })?;

    let base = median(baseline);
    let total = phase("total_ms");
    println!(
        "airlock walking-skeleton start-up ({} accelerator: {})",
        accel.accel, accel.reason
    );
    println!("{:<46} {:>10} {:>8}", "measurement", "median ms", "ratio");
    println!(
        "{:<46} {:>10.0} {:>8}",
        format!("baseline: bare QEMU boot to power-off (n={COLD_RUNS})"),
        base,
        "1.00"
    );
    println!(
        "{:<46} {:>10.0} {:>8.2}",
        format!("cold `airlock run -- true` (n={COLD_RUNS})"),
        total,
        total / base
    );
    for (label, key) in [
        ("  image resolve", "image_resolve_ms"),
        (
            "  engine start (vsock backend + qemu spawn)",
            "engine_start_ms",
        ),
        ("  guest ready (boot to agent ready)", "guest_ready_ms"),
        ("    host: until the guest kernel's clock starts", "-qemu"),
        ("    guest: kernel boot to agent start", "-kernel"),
        ("    guest: agent init (fs, disk root, cgroups)", "-init"),
        (
            "    guest: init done to ready (listen, connect)",
            "-connect",
        ),
        ("  exec round trip", "exec_ms"),
        ("    host: vsock connect", "exec_connect_ms"),
        (
            "    guest: accept to request decoded",
            "exec_guest_request_ms",
        ),
        (
            "    guest: set-up (user, cgroup, filters)",
            "exec_guest_setup_ms",
        ),
        ("    guest: fork, hardening, exec", "exec_guest_spawn_ms"),
        ("    guest: running to exit reaped", "exec_guest_run_ms"),
        ("    guest: exit to output drained", "exec_guest_drain_ms"),
        ("  teardown", "teardown_ms"),
    ] {
        let value = match key {
            // The guest's stages, from its clock (kernel boot = 0), per run, then the median.
            "-qemu" => derived(&|v| f("guest_ready_ms", v) - f("guest_uptime_ms", v)),
            "-kernel" => derived(&|v| f("guest_agent_start_ms", v)),
            "-init" => derived(&|v| f("guest_init_done_ms", v) - f("guest_agent_start_ms", v)),
            "-connect" => derived(&|v| f("guest_uptime_ms", v) - f("guest_init_done_ms", v)),
            _ => phase(key),
        };
        println!("{:<46} {:>10.1} {:>8.2}", label, value, value / base);
    }
    // The warm round trip, split by stage: host connect, then the guest agent's own account;
    // what is left is the frames' way over vsock and the host's handling of them.
    for hardened in [true, false] {
        let runs: Vec<_> = warm.iter().filter(|r| r.0 == hardened).collect();
        let med = |f: &dyn Fn(&(bool, f64, ExecTimings)) -> f64| {
            median(runs.iter().map(|r| f(r)).collect())
        };
        let us = |v: u64| v as f64 / 1000.0;
        let w = med(&|r| r.1);
        let label = if hardened {
            "default hardening: user agent, seccomp, no_new_privs"
        } else {
            "no hardening: root, no seccomp"
        };
        println!(
            "{:<46} {:>10.1} {:>8.3}",
            format!("warm exec round trip, running guest (n={WARM_EXECS})"),
            w,
            w / base
        );
        println!("  ({label})");
        let connect = med(&|r| us(r.2.connect_us));
        let request = med(&|r| us(r.2.guest.request_us));
        let setup = med(&|r| us(r.2.guest.setup_us));
        let spawn = med(&|r| us(r.2.guest.spawn_us));
        let run = med(&|r| us(r.2.guest.run_us));
        let drain = med(&|r| us(r.2.guest.drain_us));
        let rest = med(&|r| {
            r.1 - us(r.2.connect_us)
                - us(r.2.guest.request_us)
                - us(r.2.guest.setup_us)
                - us(r.2.guest.spawn_us)
                - us(r.2.guest.run_us)
                - us(r.2.guest.drain_us)
        });
        for (label, v) in [
            ("  host: vsock connect (CONNECT handshake)", connect),
            ("  guest: accept to request decoded", request),
            ("  guest: set-up (user, cgroup, filters)", setup),
            ("  guest: fork, hardening, exec", spawn),
            ("  guest: running to exit reaped", run),
            ("  guest: exit to output drained", drain),
            ("  rest: frames over vsock, host handling", rest),
        ] {
            println!("{:<46} {:>10.1} {:>8.3}", label, v, v / base);
        }
    }
    Ok(())
}
