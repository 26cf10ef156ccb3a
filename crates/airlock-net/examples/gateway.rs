//! Runs the egress gateway on a TCP address with a policy file, printing one line per event:
//! for trying clients (`curl -x http://ADDR ...`) by hand.
//!
//! Usage: `cargo run -p airlock-net --example gateway -- POLICY.toml [ADDR]` (ADDR defaults to
//! 127.0.0.1:3128). Names are resolved with the host's resolver. Ctrl-C stops it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::sync::Arc;

use airlock_net::{Gateway, NetEvent, NetEvents, system_resolver};

struct PrintEvents;

impl NetEvents for PrintEvents {
    fn record(&self, e: &NetEvent) {
        eprintln!(
            "{} {} host={:?} port={} ip={:?} method={:?} path={:?} status={:?} rule={:?} reason={} up={} down={} {}ms",
            e.kind,
            e.decision,
            e.host,
            e.port,
            e.ip,
            e.method,
            e.path,
            e.status,
            e.rule,
            e.reason,
            e.bytes_up,
            e.bytes_down,
            e.duration_ms
        );
    }
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let Some(policy_path) = args.next().map(PathBuf::from) else {
        eprintln!("usage: gateway POLICY.toml [ADDR]");
        std::process::exit(2);
    };
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:3128".to_owned());
    let policy = match airlock_policy::load_file(&policy_path) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    };
    let gateway = Gateway::new(Arc::new(policy), system_resolver(), Arc::new(PrintEvents));
    let listener = tokio::net::TcpListener::bind(&addr).await.unwrap();
    eprintln!("egress gateway on {}", listener.local_addr().unwrap());
    let (stop, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        let _ = stop.send(true);
    });
    gateway.serve_tcp(listener, rx).await;
    eprintln!("{:?}", gateway.counters());
}
