//! Audit overhead on a file-heavy workload (`cargo bench -p airlock --bench audit_overhead`).
//!
//! One sandbox with the audit recorder and one without, same image, same share, same workload
//! (creating files on the workspace share, one audit event each); prints the median exec time of
//! each and their ratio, all in this one invocation.

use airlock_image::Cache;
use airlock_proto::ExecRequest;
use airlock_supervisor::{AuditConfig, ExecIo, Images, Sandbox, SandboxConfig};
use std::sync::Arc;
use std::time::{Duration, Instant};

const FILES: u32 = 2000;
const ROUNDS: usize = 3;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

async fn measure(images: &Images, audit: bool) -> anyhow::Result<(f64, u64)> {
    let ws = tempfile::tempdir()?;
    let audit_dir = tempfile::tempdir()?;
    // The policy exactly as `airlock run` loads it (the default profile plus its workspace
    // mount), so the gateways accept the share.
    let policy = airlock_supervisor::launch::load_policy(
        &airlock_supervisor::launch::PolicyChoice::Profile("default".into()),
        Some(ws.path()),
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?
    .policy;
    let share = airlock_fs::Share {
        host_dir: std::fs::canonicalize(ws.path())?,
        guest_path: "/workspace".into(),
        mode: airlock_policy::MountMode::Rw,
    };
    let config = SandboxConfig {
        cpus: 1,
        memory_mib: 512,
        disk_bytes: 1 << 30,
        require_host_limits: false,
        keep: false,
        boot_timeout: Duration::from_secs(120),
        accel: airlock_vm::accel::probe(),
        audit: audit.then(|| AuditConfig {
            path: None,
            dir: audit_dir.path().to_owned(),
            key: audit_dir.path().join("key"),
            monitor: vec![],
            redact: airlock_supervisor::Redactor::default(),
            notify: airlock_supervisor::Notifier::stderr(),
            guest_rate: 2000,
        }),
        description: "bench".into(),
        policy: Arc::new(policy),
        shares: vec![share],
        spare_shares: 0,
        id: None,
        resolver: airlock_net::system_resolver(),
        tls_ports: vec![443],
        egress_tls: None,
    };
    let sandbox = Sandbox::start(&config, images).await?;
    let mut times = Vec::new();
    for round in 0..ROUNDS {
        let (_tx, control) = tokio::sync::mpsc::unbounded_channel();
        let io = ExecIo {
            stdin: None,
            stdout: Box::pin(tokio::io::sink()),
            stderr: Box::pin(tokio::io::sink()),
            control,
        };
        let script = format!(
            "mkdir r{round} && cd r{round} && i=0; while [ $i -lt {FILES} ]; do echo $i > f$i; i=$((i+1)); done"
        );
        let req = ExecRequest {
            argv: vec!["sh".into(), "-c".into(), script],
            env: vec![],
            cwd: Some("/workspace".into()),
            tty: None,
            user: Some("agent".into()),
            no_new_privs: true,
            seccomp: airlock_proto::SeccompProfile::Default,
            pids_max: None,
            landlock_write: None,
            root: None,
        };
        let t0 = Instant::now();
        sandbox.exec(req, io).await?;
        times.push(t0.elapsed().as_secs_f64() * 1000.0);
    }
    let events = sandbox
        .recorder()
        .map_or(0, |r| r.stats("bench", None).events);
    sandbox.shutdown("bench done").await?;
    Ok((median(times), events))
}

fn main() -> anyhow::Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    let images = Images::resolve(&Cache::from_env()?, &indicatif::ProgressBar::hidden())?;
    let (off, _) = rt.block_on(measure(&images, false))?;
    let (on, events) = rt.block_on(measure(&images, true))?;
    println!("audit overhead: {FILES} file creations on the workspace share, median of {ROUNDS}");
    println!("{:<28} {:>10} {:>8}", "measurement", "median ms", "ratio");
    println!(
        "{:<28} {:>10.0} {:>8}",
        "audit off (no recorder)", off, "1.00"
    );
    println!(
        "{:<28} {:>10.0} {:>8.2}",
        "audit on (hash chain)",
        on,
        on / off
    );
    println!("{:<28} {:>10}", "records written (audit on)", events);
    Ok(())
}
