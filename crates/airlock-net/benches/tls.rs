//! HTTPS through the egress gateway on loopback, in one run: direct to the origin, through a
//! CONNECT tunnel the gateway passes through (SNI check, splice), and through a tunnel whose
//! TLS the gateway terminates (leaf certificate, upstream TLS verified, the request decided and
//! a credential written into it). Run by `bench/egress.sh`
//! (`cargo bench -p airlock-net --bench tls`); prints a Markdown table.
//!
//! Rounds alternate the three routes, so a slow spell of a shared machine falls on all alike.
//! The gateway runs on a runtime of its own, as in its process (two worker threads); client
//! and origin share a second one. Each throughput round runs twice: once with every thread
//! free to use every core, and once with the gateway's threads held to one core and the client's
//! and origin's to the others, as on a host where the guest's vCPU and a remote origin do
//! not take the gateway's CPU.
//!
//! - throughput: median of 15 rounds of one 100 MB response on one connection;
//! - CPU: the mean over those rounds, of the whole process and of the gateway's threads;
//! - latency: median of 200 small GETs, each on a new connection (TCP, CONNECT, TLS handshake
//!   and the request).
//!
//! Without `--bench` (as under `cargo test --benches`) it runs a quick smoke version.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use airlock_net::secrets::{SecretSpec, Secrets};
use airlock_net::tls::{self, Authority};
use airlock_net::{Gateway, NoEvents, Termination, system_resolver};
use airlock_policy::Target;
use nix::sched::{CpuSet, sched_setaffinity};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const SMALL_BODY: &[u8] = b"ok";
const PLACEHOLDER: &str = "airlock-bench-0123456789abcdef0123456789abcdef";

#[derive(Clone, Copy, PartialEq)]
enum Route {
    Direct,
    Passthrough,
    Terminated,
}

struct Setup {
    /// Passed through by the gateway.
    plain_origin: SocketAddr,
    /// Terminated by the gateway (a credential names it).
    term_origin: SocketAddr,
    gateway: SocketAddr,
    /// What the client trusts: the origin CA and the sandbox CA.
    client: Arc<rustls::ClientConfig>,
    big: u64,
    /// The threads of the client and origin (with the main thread) and of the gateway.
    ends: Threads,
    gateway_threads: Threads,
}

/// Thread ids of a runtime's workers, recorded as they start.
#[derive(Clone, Default)]
struct Threads(Arc<std::sync::Mutex<Vec<Pid>>>);

impl Threads {
    fn add_current(&self) {
        self.0.lock().unwrap().push(nix::unistd::gettid());
    }

    fn runtime(&self, name: &str, workers: usize) -> tokio::runtime::Runtime {
        let t = self.clone();
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .thread_name(name)
            .enable_all()
            .on_thread_start(move || t.add_current())
            .build()
            .unwrap()
    }

    /// Holds every thread to `cpus`.
    fn pin(&self, cpus: &CpuSet) {
        for tid in self.0.lock().unwrap().iter() {
            sched_setaffinity(*tid, cpus).unwrap();
        }
    }

    /// CPU time these threads used so far (user and system).
    fn cpu_time(&self) -> Duration {
        let tids = self.0.lock().unwrap();
        let ticks: u64 = tids
            .iter()
            .map(|tid| proc_ticks(&format!("/proc/self/task/{tid}/stat")))
            .sum();
        Duration::from_millis(ticks * 10)
    }
}

/// Where each party's threads may run.
#[derive(Clone, Copy, PartialEq)]
enum Placement {
    /// Every thread on every core.
    Shared,
    /// The gateway on the last core, client and origin on the others.
    OwnCore,
}

fn main() {
    let ends = Threads::default();
    let gateway_threads = Threads::default();
    let runtime = ends.runtime("ends", 2);
    // The gateway's process runs two worker threads.
    let gateway_runtime = gateway_threads.runtime("gateway", 2);
    ends.add_current();
    runtime.block_on(run(ends, gateway_threads, gateway_runtime.handle().clone()));
}

async fn run(ends: Threads, gateway_threads: Threads, gateway_runtime: tokio::runtime::Handle) {
    let full = std::env::args().any(|a| a == "--bench");
    let (big, requests, repeats) = if full {
        (100_000_000u64, 200usize, 15usize)
    } else {
        (1_000_000, 5, 1)
    };
    let origin_ca = Authority::generate().unwrap();
    let origin_tls = Authority::from_pem(&origin_ca)
        .unwrap()
        .server_config(&Target::parse("127.0.0.1").unwrap(), &[tls::HTTP11])
        .unwrap();
    let plain_origin = start_origin(big, origin_tls.clone()).await;
    let term_origin = start_origin(big, origin_tls).await;
    let (p1, p2) = (plain_origin.port(), term_origin.port());
    let policy_text = format!(
        r#"[network]
allow = ["127.0.0.1:{p1}", "127.0.0.1:{p2}"]
allow_private = true
[[network.credentials]]
name = "bench"
host = "127.0.0.1:{p2}"
header = "x-api-key"
source = "env:BENCH_KEY"
"#
    );
    let policy = airlock_policy::load_str(&policy_text, Path::new("bench.toml")).unwrap();
    let gw = Gateway::new(
        Arc::new(policy.clone()),
        system_resolver(),
        Arc::new(NoEvents),
    );
    let sandbox_ca = Authority::generate().unwrap();
    gw.set_termination(Termination::new(
        Authority::from_pem(&sandbox_ca).unwrap(),
        Arc::new(tls::roots(std::slice::from_ref(&origin_ca.cert)).0),
        Arc::new(Secrets::new(
            &policy,
            vec![SecretSpec {
                name: "bench".into(),
                placeholder: PLACEHOLDER.into(),
                value: Some("sk-bench-value".into()),
            }],
            None,
        )),
    ));
    // Made here, registered with the gateway's runtime there.
    let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    listener.set_nonblocking(true).unwrap();
    let gateway = listener.local_addr().unwrap();
    let (stop, rx) = tokio::sync::watch::channel(false);
    let serving = gw.clone();
    let task = gateway_runtime.spawn(async move {
        let listener = TcpListener::from_std(listener).unwrap();
        serving.serve_tcp(listener, rx).await
    });
    let roots = tls::roots(&[origin_ca.cert.clone(), sandbox_ca.cert.clone()]).0;
    let setup = Setup {
        plain_origin,
        term_origin,
        gateway,
        client: tls::client_config(Arc::new(roots), &[tls::HTTP11]).unwrap(),
        big,
        ends,
        gateway_threads,
    };

    let mb = big as f64 / 1e6;
    let mut rows = Vec::new();
    let routes = [Route::Direct, Route::Passthrough, Route::Terminated];
    let placements = placements();
    let measured = throughput(&setup, &routes, &placements, repeats).await;
    for (placement, per_route) in placements.iter().zip(&measured) {
        let (name, cpu_note) = match placement.0 {
            Placement::Shared => ("every thread on every core", "all parties"),
            Placement::OwnCore => (
                "the gateway on a core of its own",
                "all parties, gateway on its core",
            ),
        };
        rows.push((
            format!("GET {mb:.0} MB over HTTPS, {name} (MB/s)"),
            per_route
                .iter()
                .map(|m| mb / m.wall.as_secs_f64())
                .collect::<Vec<_>>(),
        ));
        // With every core busy, throughput can be no better than the inverse of the CPU each
        // byte costs.
        rows.push((
            format!("CPU time for {mb:.0} MB, {cpu_note} (ms)"),
            per_route
                .iter()
                .map(|m| m.cpu.as_secs_f64() * 1e3)
                .collect(),
        ));
        if placement.0 == Placement::OwnCore {
            rows.push((
                format!("CPU time for {mb:.0} MB, the gateway's threads (ms)"),
                per_route
                    .iter()
                    .map(|m| m.gateway_cpu.as_secs_f64() * 1e3)
                    .collect(),
            ));
        }
    }
    let l = latency(&setup, &routes, requests).await;
    rows.push((
        format!("small HTTPS GET, new connection: median of {requests} (µs)"),
        l.iter().map(|d| d.as_secs_f64() * 1e6).collect(),
    ));

    println!(
        "HTTPS through the egress gateway: direct vs CONNECT passthrough vs terminated, loopback, {} cores",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!();
    println!("| measure | direct | passthrough | terminated | terminated/passthrough |");
    println!("|---|---:|---:|---:|---:|");
    for (name, v) in rows {
        println!(
            "| {name} | {:.1} | {:.1} | {:.1} | {:.2} |",
            v[0],
            v[1],
            v[2],
            v[2] / v[1]
        );
    }
    match placements
        .iter()
        .find_map(|(p, cores)| (*p == Placement::OwnCore).then_some(cores))
    {
        Some(Some((_, gateway))) => {
            let core = (0..CpuSet::count()).find(|&c| gateway.is_set(c).unwrap_or(false));
            println!(
                "every thread on every core: client, origin and the gateway's two threads compete for all cores; \
                 the gateway on a core of its own: its threads held to core {}, client and origin to the others, \
                 as when the guest's vCPU and a remote origin do not take the gateway's CPU; \
                 CPU rows are means over the rounds",
                core.map_or_else(|| "?".to_owned(), |c| c.to_string())
            );
        }
        _ => println!("one core only: the gateway could not be given a core of its own"),
    }
    let c = gw.counters();
    assert_eq!(
        c.denied + c.errors,
        0,
        "every benchmark request must be allowed"
    );
    stop.send(true).unwrap();
    task.await.unwrap();
}

/// One route's figures for a big transfer.
#[derive(Clone, Copy, Default)]
struct Measured {
    /// Median wall time.
    wall: Duration,
    /// Mean CPU time of the whole process (user + system, every thread).
    cpu: Duration,
    /// Mean CPU time of the gateway's threads.
    gateway_cpu: Duration,
}

/// The placements to measure, with the cores of each party (`None`: every core). Holding the
/// gateway to a core needs at least two.
fn placements() -> Vec<(Placement, Option<(CpuSet, CpuSet)>)> {
    let mut out = vec![(Placement::Shared, None)];
    let all = nix::sched::sched_getaffinity(Pid::from_raw(0)).unwrap();
    let cpus: Vec<usize> = (0..CpuSet::count())
        .filter(|&c| all.is_set(c).unwrap_or(false))
        .collect();
    if let Some((&last, rest)) = cpus.split_last()
        && !rest.is_empty()
    {
        let mut gateway = CpuSet::new();
        gateway.set(last).unwrap();
        let mut ends = CpuSet::new();
        for &c in rest {
            ends.set(c).unwrap();
        }
        out.push((Placement::OwnCore, Some((ends, gateway))));
    }
    out
}

/// Per placement and route: the big transfer's [`Measured`] figures. Each round runs every
/// placement and, in each, every route, so a slow spell of a shared machine falls on all alike.
async fn throughput(
    setup: &Setup,
    routes: &[Route],
    placements: &[(Placement, Option<(CpuSet, CpuSet)>)],
    rounds: usize,
) -> Vec<Vec<Measured>> {
    let all = nix::sched::sched_getaffinity(Pid::from_raw(0)).unwrap();
    let mut runs = vec![vec![Vec::new(); routes.len()]; placements.len()];
    for _ in 0..rounds {
        for ((_, cores), runs) in placements.iter().zip(&mut runs) {
            let (ends, gateway) = cores.as_ref().map_or((&all, &all), |(e, g)| (e, g));
            setup.ends.pin(ends);
            setup.gateway_threads.pin(gateway);
            for (route, runs) in routes.iter().zip(runs.iter_mut()) {
                let (cpu, gateway_cpu) = (cpu_time(), setup.gateway_threads.cpu_time());
                let started = Instant::now();
                let body = fetch(setup, *route, "/big").await;
                runs.push(Measured {
                    wall: started.elapsed(),
                    cpu: cpu_time().saturating_sub(cpu),
                    gateway_cpu: setup.gateway_threads.cpu_time().saturating_sub(gateway_cpu),
                });
                assert_eq!(body, setup.big, "short transfer");
            }
        }
    }
    setup.ends.pin(&all);
    setup.gateway_threads.pin(&all);
    let n = u32::try_from(rounds).unwrap();
    runs.into_iter()
        .map(|per_route| {
            per_route
                .into_iter()
                .map(|runs| Measured {
                    wall: median(runs.iter().map(|m| m.wall).collect()),
                    cpu: runs.iter().map(|m| m.cpu).sum::<Duration>() / n,
                    gateway_cpu: runs.iter().map(|m| m.gateway_cpu).sum::<Duration>() / n,
                })
                .collect()
        })
        .collect()
}

/// CPU time this process used so far (all threads, user and system).
fn cpu_time() -> Duration {
    Duration::from_millis(proc_ticks("/proc/self/stat") * 10)
}

/// User plus system time from a `stat` file of `/proc` (in clock ticks, which Linux reports at
/// 100 per second whatever the kernel's HZ).
fn proc_ticks(path: &str) -> u64 {
    let stat = std::fs::read_to_string(path).unwrap();
    // Fields after the command name, which ends at the last ')'.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

/// Per route, the median time of `n` small GETs; the routes take turns.
async fn latency(setup: &Setup, routes: &[Route], n: usize) -> Vec<Duration> {
    let mut times = vec![Vec::with_capacity(n); routes.len()];
    for _ in 0..n {
        for (route, times) in routes.iter().zip(&mut times) {
            let started = Instant::now();
            let body = fetch(setup, *route, "/small").await;
            times.push(started.elapsed());
            assert_eq!(body, SMALL_BODY.len() as u64);
        }
    }
    times.into_iter().map(median).collect()
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

/// Fetches `path` over TLS on the route; returns the body length.
async fn fetch(setup: &Setup, route: Route, path: &str) -> u64 {
    let origin = if route == Route::Terminated {
        setup.term_origin
    } else {
        setup.plain_origin
    };
    let tcp = match route {
        Route::Direct => TcpStream::connect(origin).await.unwrap(),
        _ => {
            let mut s = TcpStream::connect(setup.gateway).await.unwrap();
            s.set_nodelay(true).unwrap();
            s.write_all(format!("CONNECT {origin} HTTP/1.1\r\nHost: {origin}\r\n\r\n").as_bytes())
                .await
                .unwrap();
            let want = b"HTTP/1.1 200 Connection established\r\n\r\n";
            let mut got = vec![0u8; want.len()];
            s.read_exact(&mut got).await.unwrap();
            assert_eq!(&got[..], want);
            s
        }
    };
    tcp.set_nodelay(true).unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut s = tokio_rustls::TlsConnector::from(setup.client.clone())
        .connect(name, tcp)
        .await
        .unwrap();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {origin}\r\nx-api-key: {PLACEHOLDER}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(request.as_bytes()).await.unwrap();
    // A TLS stream may still hold the request's record after write_all: send it now.
    s.flush().await.unwrap();
    read_response(&mut s).await
}

/// Reads one response with a `Content-Length`; returns the body length.
async fn read_response<S: AsyncRead + Unpin>(s: &mut S) -> u64 {
    let mut buf = vec![0u8; 256 * 1024];
    let mut head = Vec::new();
    let (mut body, want) = loop {
        let n = s.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed before the head");
        head.extend_from_slice(&buf[..n]);
        if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            let text = String::from_utf8_lossy(&head[..end]).to_ascii_lowercase();
            assert!(text.starts_with("http/1.1 200 "), "{text}");
            let len: u64 = text
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .unwrap()
                .trim()
                .parse()
                .unwrap();
            break ((head.len() - end - 4) as u64, len);
        }
    };
    while body < want {
        let n = s.read(&mut buf).await.unwrap();
        assert!(n > 0, "short body");
        body += n as u64;
    }
    body
}

/// An HTTPS origin: `GET /big` answers `big` bytes, anything else [`SMALL_BODY`].
async fn start_origin(big: u64, config: Arc<rustls::ServerConfig>) -> SocketAddr {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            tcp.set_nodelay(true).unwrap();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut s) = acceptor.accept(tcp).await else {
                    return;
                };
                serve_one(&mut s, big).await;
            });
        }
    });
    addr
}

async fn serve_one<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S, big: u64) {
    let mut head = Vec::new();
    let mut chunk = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&chunk[..n]),
        }
    }
    let is_big = head.starts_with(b"GET /big ");
    let len = if is_big { big } else { SMALL_BODY.len() as u64 };
    let reply = format!("HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n");
    if s.write_all(reply.as_bytes()).await.is_err() {
        return;
    }
    if is_big {
        let block = vec![0x61u8; 256 * 1024];
        let mut left = big;
        while left > 0 {
            let n = left.min(block.len() as u64) as usize;
            if s.write_all(&block[..n]).await.is_err() {
                return;
            }
            left -= n as u64;
        }
    } else if s.write_all(SMALL_BODY).await.is_err() {
        return;
    }
    let _ = s.flush().await;
    let _ = s.shutdown().await;
}
