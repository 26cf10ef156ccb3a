//! End-to-end throughput and latency of the egress gateway on loopback, against a direct
//! connection to the same local server, measured in one run. Run by `bench/egress.sh`
//! (`cargo bench -p airlock-net --bench throughput`); prints a Markdown table.
//!
//! Rounds alternate the routes (direct, plain, tunnel, bare relay, bare relay with CONNECT), so
//! a slow spell of a shared machine does not land on one route only.
//!
//! - throughput: median of 7 100 MB responses (`GET /big`), direct, through the gateway as plain HTTP
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
    /// Through [`start_bare_relay`]: the floor any relay on this host pays.
    Bare,
    /// Through [`start_bare_relay`] with a CONNECT first: the floor of any CONNECT tunnel,
    /// which by the protocol waits for the proxy's `200` before it carries the request.
    BareTunnel,
    Plain,
    Tunnel,
}

struct Setup {
    origin: SocketAddr,
    gateway: SocketAddr,
    bare: SocketAddr,
    bare_tunnel: SocketAddr,
    big: u64,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (big, requests, repeats) = if full {
        (100_000_000u64, 200usize, 7usize)
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
        bare: start_bare_relay(origin, false),
        bare_tunnel: start_bare_relay(origin, true),
        big,
    };

    let mut rows = Vec::new();
    let mb = big as f64 / 1e6;
    // Rounds alternate the routes, so a slow spell of the machine falls on all of them alike.
    let routes = [
        Route::Direct,
        Route::Plain,
        Route::Tunnel,
        Route::Bare,
        Route::BareTunnel,
    ];
    let big_times = interleaved(&setup, &routes, "/big", repeats).await;
    let small_times = interleaved(&setup, &routes, "/small", requests).await;
    let rate = |d: Duration| mb / d.as_secs_f64();
    let micros = |d: Duration| d.as_secs_f64() * 1e6;
    // Each gateway route beside the bare relay of the same kind: plain, or CONNECT first.
    let kinds = [(1, 3, "plain HTTP"), (2, 4, "CONNECT tunnel")];
    for (i, b, name) in kinds {
        rows.push((
            format!("GET {mb:.0} MB, {name} (MB/s)"),
            rate(big_times[0]),
            rate(big_times[i]),
            rate(big_times[b]),
        ));
    }
    for (i, b, name) in kinds {
        rows.push((
            format!("small GET, {name}: median of {requests} (µs)"),
            micros(small_times[0]),
            micros(small_times[i]),
            micros(small_times[b]),
        ));
    }

    println!("egress gateway vs direct, loopback, {} cores", cores());
    println!();
    println!(
        "| measure | direct | gateway | gateway/direct | bare relay | bare relay/direct | gateway/bare relay |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (name, d, g, b) in rows {
        println!(
            "| {name} | {d:.1} | {g:.1} | {:.2} | {b:.1} | {:.2} | {:.2} |",
            g / d,
            b / d,
            g / b
        );
    }
    println!();
    println!(
        "bare relay: accept, connect to the origin, poll(2) and splice(2) on one thread; \
         no parsing, policy or accounting: what a second TCP hop on this host costs by itself; \
         for the CONNECT rows it first reads the CONNECT head and answers 200, the round trip \
         every CONNECT proxy adds"
    );
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

/// Median time of `rounds` fetches of `path` per route, the routes taking turns each round.
async fn interleaved(setup: &Setup, routes: &[Route], path: &str, rounds: usize) -> Vec<Duration> {
    let mut times = vec![Vec::with_capacity(rounds); routes.len()];
    for _ in 0..rounds {
        for (route, times) in routes.iter().zip(&mut times) {
            let started = Instant::now();
            let body = fetch(setup, *route, path).await;
            times.push(started.elapsed());
            let want = if path == "/big" {
                setup.big
            } else {
                SMALL_BODY.len() as u64
            };
            assert_eq!(body, want, "short transfer");
        }
    }
    times.into_iter().map(median).collect()
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
        Route::Direct | Route::Bare => {
            let to = if matches!(route, Route::Bare) {
                setup.bare
            } else {
                origin
            };
            s = TcpStream::connect(to).await.unwrap();
            format!("GET {path} HTTP/1.1\r\nHost: {origin}\r\n\r\n")
        }
        Route::Plain => {
            s = TcpStream::connect(setup.gateway).await.unwrap();
            format!("GET http://{origin}{path} HTTP/1.1\r\nHost: {origin}\r\n\r\n")
        }
        Route::Tunnel | Route::BareTunnel => {
            let to = if matches!(route, Route::Tunnel) {
                setup.gateway
            } else {
                setup.bare_tunnel
            };
            s = TcpStream::connect(to).await.unwrap();
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

/// The anchor for "what does a relay cost at all": a transparent TCP forwarder to `origin`
/// on one thread, serving one connection at a time (the bench is sequential): `poll(2)` on
/// both sockets, and `splice(2)` through a pipe per direction. No parsing, policy, DNS,
/// counting or hand-over between threads, so the gateway's extra cost over it is ours and its
/// cost over a direct connection is the second hop's. With `connect`, each client first sends
/// a CONNECT head, which is read (not parsed: the origin is fixed) and answered `200` after the
/// origin connection is made, as the gateway does.
fn start_bare_relay(origin: SocketAddr, connect: bool) -> SocketAddr {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let mut client = client.unwrap();
            client.set_nodelay(true).unwrap();
            let mut head = Vec::new();
            if connect {
                let mut chunk = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = client.read(&mut chunk).unwrap();
                    assert!(n > 0, "the client left before its CONNECT head ended");
                    head.extend_from_slice(&chunk[..n]);
                }
            }
            let mut upstream = std::net::TcpStream::connect(origin).unwrap();
            upstream.set_nodelay(true).unwrap();
            if connect {
                // Whatever followed the head already belongs to the tunnel.
                let end = head.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
                upstream.write_all(&head[end..]).unwrap();
                client
                    .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    .unwrap();
            }
            relay_one(&client, &upstream);
        }
    });
    addr
}

/// Splices `a` and `b` both ways until both have ended their sending.
fn relay_one(a: &std::net::TcpStream, b: &std::net::TcpStream) {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    use std::os::fd::AsFd;
    let pipes = [pipe(), pipe()];
    let ends = [(a, b), (b, a)];
    let mut open = [true, true];
    while open.iter().any(|o| *o) {
        let live: Vec<usize> = (0..2).filter(|i| open[*i]).collect();
        let mut fds: Vec<PollFd> = live
            .iter()
            .map(|i| PollFd::new(ends[*i].0.as_fd(), PollFlags::POLLIN))
            .collect();
        poll(&mut fds, PollTimeout::NONE).unwrap();
        let ready: Vec<bool> = fds.iter().map(|f| f.any().unwrap_or(false)).collect();
        drop(fds);
        for (i, ready) in live.into_iter().zip(ready) {
            if ready && !splice_once(ends[i].0, &pipes[i], ends[i].1) {
                open[i] = false;
                let _ = ends[i].1.shutdown(std::net::Shutdown::Write);
            }
        }
    }
}

fn pipe() -> (std::os::fd::OwnedFd, std::os::fd::OwnedFd) {
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    use std::os::fd::AsRawFd;
    let (out, inp) = nix::unistd::pipe2(OFlag::O_CLOEXEC).unwrap();
    let _ = fcntl(inp.as_raw_fd(), FcntlArg::F_SETPIPE_SZ(256 * 1024));
    (out, inp)
}

/// Moves what `from` has into the pipe and all of it on to `to`; false at end of stream.
fn splice_once(
    from: &std::net::TcpStream,
    (pipe_out, pipe_in): &(std::os::fd::OwnedFd, std::os::fd::OwnedFd),
    to: &std::net::TcpStream,
) -> bool {
    use nix::fcntl::{SpliceFFlags, splice};
    let flags = SpliceFFlags::SPLICE_F_MOVE;
    let n = match splice(from, None, pipe_in, None, 256 * 1024, flags) {
        Ok(0) | Err(_) => return false,
        Ok(n) => n,
    };
    let mut left = n;
    while left > 0 {
        match splice(pipe_out, None, to, None, left, flags) {
            Ok(0) | Err(_) => return false,
            Ok(m) => left -= m,
        }
    }
    true
}
