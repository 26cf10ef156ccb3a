//! Audit overhead on a file-heavy workload (`cargo bench -p airlock --bench audit_overhead`).
//!
//! One sandbox with the audit recorder and one without, same image, same share, same workload
//! (creating files on the workspace share, one audit event each); prints the median exec time of
//! each and their ratio, all in this one invocation.

use airlock_image::Cache;
use airlock_proto::ExecRequest;
use airlock_supervisor::{ExecIo, Images, Sandbox, launch};
use std::time::Instant;

const FILES: u32 = 2000;
const ROUNDS: usize = 5;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// A started sandbox and the directories it lives on, dropped after it stops.
struct Bench {
    sandbox: Sandbox,
    _ws: tempfile::TempDir,
    _audit_dir: tempfile::TempDir,
}

async fn start(images: &Images, audit: bool) -> anyhow::Result<Bench> {
    let ws = tempfile::tempdir()?;
    let audit_dir = tempfile::tempdir()?;
    // Prepared exactly as `airlock run` prepares it (the default profile, its workspace share),
    // then only the recorder differs between the two runs.
    let options = launch::LaunchOptions {
        policy: launch::PolicyChoice::Profile("default".into()),
        workspace: Some(std::fs::canonicalize(ws.path())?),
        image: None,
        cpus: Some(1),
        memory_mib: Some(512),
        keep: false,
        env: vec![],
        notify: airlock_supervisor::Notifier::stderr(),
        kit: None,
    };
    let launch = launch::prepare(&options, images)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut config = launch.config;
    config.description = "bench".into();
    config.audit = match config.audit.take() {
        Some(mut a) if audit => {
            a.path = None;
            a.dir = audit_dir.path().to_owned();
            a.key = audit_dir.path().join("key");
            Some(a)
        }
        _ => None,
    };
    let images = &launch.images;
    let sandbox = Sandbox::start(&config, images).await?;
    Ok(Bench {
        sandbox,
        _ws: ws,
        _audit_dir: audit_dir,
    })
}

/// One round of the workload; returns its time in ms.
async fn round(sandbox: &Sandbox, round: usize) -> anyhow::Result<f64> {
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
    Ok(t0.elapsed().as_secs_f64() * 1000.0)
}

/// Both sandboxes run side by side and the rounds alternate, so drift on the host (page
/// cache, other load) falls on both alike.
async fn measure(images: &Images) -> anyhow::Result<(f64, f64, u64)> {
    let off = start(images, false).await?;
    let on = start(images, true).await?;
    let (mut t_off, mut t_on) = (Vec::new(), Vec::new());
    for r in 0..ROUNDS {
        t_off.push(round(&off.sandbox, r).await?);
        t_on.push(round(&on.sandbox, r).await?);
    }
    let events = on
        .sandbox
        .recorder()
        .map_or(0, |r| r.stats("bench", None).events);
    off.sandbox.shutdown("bench done").await?;
    on.sandbox.shutdown("bench done").await?;
    Ok((median(t_off), median(t_on), events))
}

fn main() -> anyhow::Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    let images = Images::resolve(&Cache::from_env()?, &indicatif::ProgressBar::hidden())?;
    let (off, on, events) = rt.block_on(measure(&images))?;
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
