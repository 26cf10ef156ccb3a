//! `airlock ui`: serve the local review page (`airlock-ui`) until Ctrl-C. The URL it prints
//! carries a fresh token; without it the page answers 401.

use anyhow::Context;
use clap::Args;
use std::io::Write as _;
use std::path::PathBuf;

/// Arguments of `airlock ui`.
#[derive(Debug, Args)]
pub struct UiArgs {
    /// Where to listen: a loopback address only (port 0 picks a free one).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    listen: std::net::SocketAddr,
    /// Open the page in the desktop's browser (with xdg-open).
    #[arg(long)]
    open: bool,
    /// The audit dir whose logs are shown (default: $AIRLOCK_AUDIT_DIR, else
    /// ~/.local/state/airlock/audit).
    #[arg(long, value_name = "DIR")]
    audit_dir: Option<PathBuf>,
    /// Trust this public key (hex) for checkpoints instead of the local host key.
    #[arg(long, value_name = "HEX")]
    key: Option<String>,
}

/// Serves until SIGINT or SIGTERM.
pub fn main(args: UiArgs) -> anyhow::Result<u8> {
    let audit_dir = args
        .audit_dir
        .or_else(airlock_supervisor::default_audit_dir)
        .context("no audit dir: set AIRLOCK_AUDIT_DIR or HOME, or pass --audit-dir")?;
    let trusted_key = match &args.key {
        Some(hex) => Some(
            hex.parse::<airlock_audit::PublicKey>()
                .map_err(|e| anyhow::anyhow!("--key: {e}"))?,
        ),
        None => airlock_audit::default_key_path()
            .filter(|p| p.exists())
            .map(|p| airlock_audit::HostKey::load(&p).map(|k| k.public_key()))
            .transpose()
            .context("loading this host's audit key")?,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async {
        let ui = airlock_ui::Ui::bind(airlock_ui::UiOptions {
            listen: args.listen,
            audit_dir: audit_dir.clone(),
            trusted_key,
        })
        .await?;
        let url = ui.url();
        // The URL alone on stdout, so scripts can read it; the rest on stderr.
        let mut out = std::io::stdout();
        writeln!(out, "{url}")?;
        out.flush()?;
        crate::ui::note!(
            "airlock ui: serving the sandboxes of {} at the URL above (it carries this start's token); Ctrl-C stops",
            audit_dir.display()
        );
        if args.open {
            match std::process::Command::new("xdg-open").arg(&url).spawn() {
                Ok(_) => {}
                Err(e) => crate::ui::note!("airlock ui: could not run xdg-open ({e}); open the URL yourself"),
            }
        }
        let stop = async {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
            }
        };
        ui.serve(stop).await?;
        anyhow::Ok(0)
    })
}
