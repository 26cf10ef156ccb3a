//! The in-guest end of the egress path: a TCP listener on 127.0.0.1:3128 whose every connection
//! is tunnelled, unparsed, over vsock to the host's egress gateway.
//!
//! The guest has no NIC, so this is the only way out; all decisions happen on the host. A
//! connection is refused here only when the host has no gateway bound (vsock connect fails) or
//! too many tunnels are open.

use airlock_proto::PROXY_PORT;
use std::io;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use vsock::VsockStream;

/// Where the workload's proxy variables point.
pub const LISTEN: &str = "127.0.0.1:3128";
/// Tunnels open at once; beyond this new connections are closed (each costs two threads).
const MAX_TUNNELS: usize = 256;
/// vsock CID of the host.
const HOST_CID: u32 = 2;

/// Proxy settings every workload process gets, for curl, pip, npm, git and friends.
pub const PROXY_ENV: [(&str, &str); 10] = [
    ("HTTP_PROXY", "http://127.0.0.1:3128"),
    ("HTTPS_PROXY", "http://127.0.0.1:3128"),
    ("ALL_PROXY", "http://127.0.0.1:3128"),
    ("http_proxy", "http://127.0.0.1:3128"),
    ("https_proxy", "http://127.0.0.1:3128"),
    ("all_proxy", "http://127.0.0.1:3128"),
    ("NO_PROXY", "localhost,127.0.0.1"),
    ("no_proxy", "localhost,127.0.0.1"),
    ("npm_config_proxy", "http://127.0.0.1:3128"),
    ("npm_config_https_proxy", "http://127.0.0.1:3128"),
];
/// pip reads its own variable.
pub const PIP_PROXY: (&str, &str) = ("PIP_PROXY", "http://127.0.0.1:3128");

/// Starts the forwarder on its own thread.
pub fn start() -> io::Result<()> {
    let listener = TcpListener::bind(LISTEN)?;
    let open = Arc::new(AtomicUsize::new(0));
    thread::Builder::new()
        .name("proxy-accept".into())
        .spawn(move || {
            for conn in listener.incoming() {
                let Ok(tcp) = conn else { continue };
                if open.fetch_add(1, Ordering::SeqCst) >= MAX_TUNNELS {
                    open.fetch_sub(1, Ordering::SeqCst);
                    continue; // dropping closes it
                }
                let open = open.clone();
                let spawned = crate::pool::spawn("proxy", move || {
                    if let Err(e) = tunnel(tcp) {
                        eprintln!("airlock-guest: proxy tunnel: {e}");
                    }
                    open.fetch_sub(1, Ordering::SeqCst);
                });
                if spawned.is_err() {
                    eprintln!("airlock-guest: proxy: cannot start a tunnel thread");
                }
            }
        })?;
    Ok(())
}

fn tunnel(tcp: TcpStream) -> io::Result<()> {
    let vs = VsockStream::connect_with_cid_port(HOST_CID, PROXY_PORT)?;
    let (mut tcp_r, mut vs_w) = (tcp.try_clone()?, vs.try_clone()?);
    let up = crate::pool::spawn("proxy-up", move || {
        let _ = io::copy(&mut tcp_r, &mut vs_w);
        let _ = vs_w.shutdown(Shutdown::Write);
    })?;
    let (mut vs_r, mut tcp_w) = (vs, tcp);
    let _ = io::copy(&mut vs_r, &mut tcp_w);
    let _ = tcp_w.shutdown(Shutdown::Write);
    up.join();
    Ok(())
}
