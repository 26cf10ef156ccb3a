//! End-to-end throughput and latency of the egress gateway on loopback, against a direct
//! connection to the same local server, measured in one run. Run by `bench/egress.sh`
//! (`cargo bench -p airlock-net --bench throughput`); prints a Markdown table.
//!
//! - throughput: one 100 MB response (`GET /big`), direct, through the gateway as plain HTTP
//!   (absolute-form), and through a CONNECT tunnel (origin-form GET inside it);
//! - latency: median of 200 small GETs, each on a new connection (the gateway serves one
//!   request per connection, so the direct baseline opens one per request too).
//!
//! Without `--bench` (as under `cargo test --benches`) it runs a quick smoke version.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use airlock_net::{Gateway, NoEvents, system_resolver};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const SMALL_BODY: &[u8] = b"ok";

/// How the client reaches the origin.
#[derive(Clone, Copy)]
enum Route {
    Direct,
    Plain,
    Tunnel,
}

struct Setup {
    origin: SocketAddr,
    gateway: SocketAddr,
    big: u64,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (big, requests, repeats) = if full {
        (100_000_000u64, 200usize, 3usize)
    } else {
        (1_000_000, 5, 1)
    };
    let origin = start_origin(big).await;
    let port = origin.port();
    let policy = airlock_policy::load_str(
        &format!("[network]\nallow = [\"127.0.0.1:{port}\"]\n"),
        Path::new("bench.toml"),
    )
    .unwrap();
    let gw = Gateway::new(Arc::new(policy), system_resolver(), Arc::new(NoEvents));
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let gateway = listener.local_addr().unwrap();
    let (stop, rx) = tokio::sync::watch::channel(false);
    let serving = gw.clone();
    let task = tokio::spawn(async move { serving.serve_tcp(listener, rx).await });
    let setup = Setup {
        origin,
        gateway,
        big,
    };

    let mut rows = Vec::new();
    let mb = big as f64 / 1e6;
    let direct = throughput(&setup, Route::Direct, repeats).await;
    for (name, route) in [
        ("plain HTTP", Route::Plain),
        ("CONNECT tunnel", Route::Tunnel),
    ] {
        let via = throughput(&setup, route, repeats).await;
        rows.push((
            format!("GET {mb:.0} MB, {name} (MB/s)"),
            mb / direct.as_secs_f64(),
            mb / via.as_secs_f64(),
        ));
    }
    let direct = latency(&setup, Route::Direct, requests).await;
    for (name, route) in [
        ("plain HTTP", Route::Plain),
        ("CONNECT tunnel", Route::Tunnel),
    ] {
        let via = latency(&setup, route, requests).await;
        rows.push((
            format!("small GET, {name}: median of {requests} (µs)"),
            direct.as_secs_f64() * 1e6,
            via.as_secs_f64() * 1e6,
        ));
    }

    println!("egress gateway vs direct, loopback, {} cores", cores());
    println!();
    println!("| measure | direct | gateway | gateway/direct |");
    println!("|---|---:|---:|---:|");
    for (name, d, g) in rows {
        println!("| {name} | {d:.1} | {g:.1} | {:.2} |", g / d);
    }
    let c = gw.counters();
    println!();
    println!(
        "gateway counters: {} requests, {} allowed, {} denied, {} errors, {} bytes up, {} bytes down",
        c.requests, c.allowed, c.denied, c.errors, c.bytes_up, c.bytes_down
    );
    assert_eq!(
        c.denied + c.errors,
        0,
        "every benchmark request must be allowed"
    );
    stop.send(true).unwrap();
    task.await.unwrap();
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Median time of `repeats` big transfers.
async fn throughput(setup: &Setup, route: Route, repeats: usize) -> Duration {
    let mut times = Vec::new();
    for _ in 0..repeats {
        let started = Instant::now();
        let body = fetch(setup, route, "/big").await;
        times.push(started.elapsed());
        assert_eq!(body, setup.big, "short transfer");
    }
    median(times)
}

/// Median time of `n` small GETs, each on its own connection.
async fn latency(setup: &Setup, route: Route, n: usize) -> Duration {
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        let body = fetch(setup, route, "/small").await;
        times.push(started.elapsed());
        assert_eq!(body, SMALL_BODY.len() as u64);
    }
    median(times)
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

/// Fetches `path`; returns the body length (everything after the response head).
async fn fetch(setup: &Setup, route: Route, path: &str) -> u64 {
    let origin = setup.origin;
    let mut s;
    let request = match route {
        Route::Direct => {
            s = TcpStream::connect(origin).await.unwrap();
            format!("GET {path} HTTP/1.1\r\nHost: {origin}\r\n\r\n")
        }
        Route::Plain => {
            s = TcpStream::connect(setup.gateway).await.unwrap();
            format!("GET http://{origin}{path} HTTP/1.1\r\nHost: {origin}\r\n\r\n")
        }
        Route::Tunnel => {
            s = TcpStream::connect(setup.gateway).await.unwrap();
            s.set_nodelay(true).unwrap();
            s.write_all(format!("CONNECT {origin} HTTP/1.1\r\nHost: {origin}\r\n\r\n").as_bytes())
                .await
                .unwrap();
            let want = b"HTTP/1.1 200 Connection established\r\n\r\n";
            let mut got = vec![0u8; want.len()];
            s.read_exact(&mut got).await.unwrap();
            assert_eq!(&got[..], want);
            format!("GET {path} HTTP/1.1\r\nHost: {origin}\r\n\r\n")
        }
    };
    s.set_nodelay(true).unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 256 * 1024];
    let mut head = Vec::new();
    let mut body = 0u64;
    let mut in_body = false;
    loop {
        let n = s.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        if in_body {
            body += n as u64;
            continue;
        }
        head.extend_from_slice(&buf[..n]);
        if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            assert!(
                head.starts_with(b"HTTP/1.1 200 "),
                "{:?}",
                String::from_utf8_lossy(&head)
            );
            body = (head.len() - end - 4) as u64;
            in_body = true;
        }
    }
    body
}

/// An origin server: `GET /big` answers `big` bytes, anything else [`SMALL_BODY`]; one
/// request per connection.
async fn start_origin(big: u64) -> SocketAddr {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            s.set_nodelay(true).unwrap();
            tokio::spawn(async move {
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
                let reply = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
                );
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
                let _ = s.shutdown().await;
                // Wait for the client to close first, so this side does not collect
                // TIME_WAIT sockets over hundreds of requests.
                let _ = tokio::time::timeout(Duration::from_secs(5), s.read(&mut chunk)).await;
            });
        }
    });
    addr
}
