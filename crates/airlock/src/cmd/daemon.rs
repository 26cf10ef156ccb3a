//! `airlock daemon`: serve the REST API on a unix socket (and optionally TCP with a bearer
//! token) and keep sandboxes alive between commands.
//!
//! Start-up order: resolve the kernel and initramfs once, lock the registry, reap what a
//! previous daemon left, bind the sockets, serve. SIGINT/SIGTERM stop every sandbox (sealing
//! their audit logs), release the registry and remove the socket.

use super::args::parse_duration;
use airlock_api::daemon::registry::Registry;
use airlock_api::daemon::{Daemon, DaemonConfig};
use airlock_api::listen;
use anyhow::{Context, bail};
use clap::Args;
use std::path::PathBuf;
use std::time::Duration;

/// Arguments of `airlock daemon`.
#[derive(Debug, Args)]
pub struct DaemonArgs {
    /// Unix socket to serve on (default: $AIRLOCK_SOCKET, /run/airlock/airlock.sock as root,
    /// else $XDG_RUNTIME_DIR/airlock.sock).
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// Let this group use the socket (mode 0660 instead of 0600).
    #[arg(long, value_name = "NAME")]
    group: Option<String>,
    /// Also serve on this TCP address; every request must then carry the token.
    #[arg(long, value_name = "ADDR", requires = "token_file")]
    tcp: Option<std::net::SocketAddr>,
    /// File holding the bearer token for --tcp, and the API key for --e2b (at least 16
    /// characters; mode 0600 or stricter).
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// Also serve an E2B-compatible API on this TCP address, for the official `e2b` SDK with
    /// E2B_API_URL and E2B_SANDBOX_URL set to http://ADDR and E2B_API_KEY to the token
    /// (see docs/e2b.md).
    #[arg(long, value_name = "ADDR", requires = "token_file")]
    e2b: Option<std::net::SocketAddr>,
    /// Policy file for sandboxes created through --e2b (default: profile `default`).
    #[arg(long, value_name = "FILE", requires = "e2b")]
    e2b_policy: Option<PathBuf>,
    /// Host directory shared as the workspace of every --e2b sandbox (default: a fresh empty
    /// directory per sandbox, removed when it is killed).
    #[arg(long, value_name = "DIR", requires = "e2b")]
    e2b_workspace: Option<PathBuf>,
    /// Stop sandboxes idle this long (no API call, no running exec); `0` never.
    #[arg(long, value_name = "DURATION", default_value = "30m", value_parser = parse_duration)]
    idle_timeout: Duration,
    /// Stop sandboxes this long after creation; `0` never.
    #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = parse_duration)]
    max_lifetime: Duration,
    /// Most sandboxes alive at once.
    #[arg(long, value_name = "N", default_value_t = 64)]
    max_sandboxes: usize,
    /// Most sandboxes booting at once (default: the number of CPUs).
    #[arg(long, value_name = "N")]
    max_starting: Option<usize>,
    /// Keep N guests of IMAGE booted and unbound, so creates (and `airlock run`) claim one
    /// instead of booting (repeatable; e.g. `--pool tiny=2`).
    #[arg(long = "pool", value_name = "IMAGE=N", value_parser = parse_pool)]
    pool: Vec<(String, usize)>,
    /// Replace warm guests older than this.
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = parse_duration)]
    pool_ttl: Duration,
    /// Filesystem devices per warm guest: the most shares a policy may have to use the pool.
    #[arg(long, value_name = "N", default_value_t = 2, value_parser = clap::value_parser!(u8).range(1..=8))]
    pool_shares: u8,
    /// Print the OpenAPI document and exit.
    #[arg(long)]
    openapi: bool,
}

/// `IMAGE=N`: an image name (`tiny` or one built with `airlock image build`) and a pool size.
fn parse_pool(s: &str) -> Result<(String, usize), String> {
    let (image, n) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: expected IMAGE=N, e.g. tiny=2"))?;
    if image.is_empty()
        || !image
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(format!("{s:?}: {image:?} is not an image name"));
    }
    let n: usize = n
        .parse()
        .map_err(|_| format!("{s:?}: {n:?} is not a number of guests"))?;
    if n > 64 {
        return Err(format!("{s:?}: at most 64 warm guests per image"));
    }
    Ok((image.to_string(), n))
}

/// How --e2b sandboxes are made: the policy text (read once, at start) and the workspace.
fn e2b_config(args: &DaemonArgs) -> anyhow::Result<airlock_e2b::E2bConfig> {
    let policy = match &args.e2b_policy {
        Some(f) => {
            let path =
                std::path::absolute(f).with_context(|| format!("--e2b-policy {}", f.display()))?;
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading --e2b-policy {}", path.display()))?;
            Some((text, path))
        }
        None => None,
    };
    let workspace = match &args.e2b_workspace {
        Some(d) => {
            let dir = std::fs::canonicalize(d)
                .with_context(|| format!("--e2b-workspace {}", d.display()))?;
            if !dir.is_dir() {
                bail!("--e2b-workspace {}: not a directory", d.display());
            }
            Some(dir)
        }
        None => None,
    };
    Ok(airlock_e2b::E2bConfig { policy, workspace })
}

/// Runs the daemon until SIGINT or SIGTERM.
pub fn main(args: DaemonArgs) -> anyhow::Result<u8> {
    if args.openapi {
        print!("{}", airlock_api::openapi::document());
        return Ok(0);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let result = rt.block_on(serve(args));
    rt.shutdown_timeout(Duration::from_secs(5));
    result
}

async fn serve(args: DaemonArgs) -> anyhow::Result<u8> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
    if args.token_file.is_some() && args.tcp.is_none() && args.e2b.is_none() {
        bail!("--token-file is for --tcp or --e2b; give one of them");
    }
    let e2b_config = e2b_config(&args)?;
    let token = match &args.token_file {
        Some(f) => Some(listen::read_token(f)?),
        None => None,
    };
    let group = args
        .group
        .as_deref()
        .map(|name| {
            nix::unistd::Group::from_name(name)
                .with_context(|| format!("looking up group {name:?}"))?
                .with_context(|| format!("--group {name}: no such group"))
        })
        .transpose()?;
    let cache = airlock_image::Cache::from_env()?;
    let images = super::image::resolve_images(cache).await?;
    let registry = Registry::open(&Registry::dir_in(&airlock_supervisor::state_root()))?;
    let mut config = DaemonConfig {
        idle_timeout: args.idle_timeout,
        max_lifetime: args.max_lifetime,
        max_sandboxes: args.max_sandboxes,
        ..DaemonConfig::default()
    };
    if let Some(n) = args.max_starting {
        config.max_starting = n.max(1);
    }
    if !args.pool.is_empty() {
        let mut sizes = std::collections::BTreeMap::new();
        for (image, n) in &args.pool {
            if sizes.insert(image.clone(), *n).is_some() {
                bail!("--pool {image}=...: given twice");
            }
        }
        if args.pool_ttl.is_zero() {
            bail!("--pool-ttl must be more than 0");
        }
        config.pool = Some(airlock_api::daemon::pool::PoolConfig {
            sizes,
            ttl: args.pool_ttl,
            fs_slots: usize::from(args.pool_shares),
        });
    }
    let daemon = Daemon::new(config, images, registry);
    for r in daemon.reap_leftovers() {
        crate::ui::note!(
            "airlock: reaped sandbox {} left by a previous daemon ({} process(es) killed{})",
            r.id,
            r.killed.len(),
            if r.recorded {
                "; recorded in its audit log"
            } else {
                ""
            }
        );
    }
    let socket = args
        .socket
        .clone()
        .unwrap_or_else(airlock_api::socket::default_socket);
    let unix = listen::bind_unix(&socket, group.as_ref())?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut tcp_listener = None;
    let mut e2b_server = None;
    if let (Some(addr), Some(token)) = (args.e2b, token.as_deref()) {
        let tcp = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding --e2b {addr}"))?;
        if !addr.ip().is_loopback() {
            crate::ui::note!(
                "airlock: warning: {addr} is not a loopback address and the E2B API has no TLS; \
                 the API key and access tokens cross the network in clear"
            );
        }
        crate::ui::note!("airlock: E2B API listening on http://{addr} (E2B_API_KEY = the token)");
        let e2b = airlock_e2b::E2b::new(daemon.clone(), token, e2b_config);
        e2b_server = Some(airlock_e2b::serve(e2b, tcp, stop_rx.clone()));
    }
    if let (Some(addr), Some(token)) = (args.tcp, token) {
        let tcp = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding --tcp {addr}"))?;
        if !addr.ip().is_loopback() {
            crate::ui::note!(
                "airlock: warning: {addr} is not a loopback address and the API has no TLS; \
                 the token crosses the network in clear"
            );
        }
        crate::ui::note!("airlock: daemon listening on tcp {addr} (bearer token required)");
        tcp_listener = Some((tcp, token));
    }
    crate::ui::note!("airlock: daemon listening on {}", socket.display());
    let mut servers = listen::serve(daemon.clone(), unix, tcp_listener, stop_rx);
    servers.extend(e2b_server);
    let janitor = tokio::spawn(daemon.clone().janitor());
    let keeper = tokio::spawn(daemon.clone().pool_keeper());
    if let Some(status) = daemon.pool_status() {
        for i in &status.images {
            crate::ui::note!(
                "airlock: warm pool: keeping {} {} guest(s) booted (TTL {} s)",
                i.size,
                i.image,
                status.ttl_secs
            );
        }
    }
    let sig = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    crate::ui::note!("airlock: {sig}: stopping every sandbox");
    janitor.abort();
    keeper.abort();
    daemon
        .shutdown(&format!("the daemon stopped ({sig})"))
        .await;
    let _ = stop_tx.send(true);
    for s in servers {
        // Streams still open (a followed event log) must not hold the exit up for long.
        let _ = tokio::time::timeout(Duration::from_secs(3), s).await;
    }
    let _ = std::fs::remove_file(&socket);
    Ok(0)
}
