//! Test fakes, compiled for this crate's tests and, with the `test-utils` feature, for other
//! crates' tests: a TLS ClientHello builder, a record splitter, a local DNS server that counts
//! queries, and an event sink that keeps what it is given. Loopback only.
#![allow(clippy::cast_possible_truncation, clippy::indexing_slicing)]

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

use crate::events::{NetEvent, NetEvents};
use crate::resolve::dns;

/// A TLS 1.3-style ClientHello in one record, with a `server_name` extension naming
/// `server_name` (none when `None`), and supported_versions, supported_groups,
/// signature_algorithms and an x25519 key share.
pub fn client_hello(server_name: Option<&str>) -> Vec<u8> {
    let mut exts = Vec::new();
    let mut ext = |t: u16, data: &[u8]| {
        exts.extend(t.to_be_bytes());
        exts.extend((data.len() as u16).to_be_bytes());
        exts.extend(data);
    };
    if let Some(name) = server_name {
        let n = name.as_bytes();
        let mut list = vec![0u8];
        list.extend((n.len() as u16).to_be_bytes());
        list.extend(n);
        let mut data = (list.len() as u16).to_be_bytes().to_vec();
        data.extend(list);
        ext(0, &data);
    }
    ext(0x002b, &[2, 3, 4]);
    ext(0x000a, &[0, 2, 0, 0x1d]);
    ext(0x000d, &[0, 4, 4, 3, 8, 4]);
    let mut share = vec![0, 36, 0, 0x1d, 0, 32];
    share.extend([0x42; 32]);
    ext(0x0033, &share);

    let mut body = vec![3, 3];
    body.extend([0x5a; 32]); // random
    body.push(32);
    body.extend([0x11; 32]); // legacy session id
    body.extend([0, 4, 0x13, 0x01, 0x13, 0x02]);
    body.extend([1, 0]);
    body.extend((exts.len() as u16).to_be_bytes());
    body.extend(exts);

    let len = body.len();
    let mut hs = vec![1, (len >> 16) as u8, (len >> 8) as u8, len as u8];
    hs.extend(body);
    let mut rec = vec![22, 3, 1];
    rec.extend((hs.len() as u16).to_be_bytes());
    rec.extend(hs);
    rec
}

/// Re-frames the handshake bytes carried by the records of `hello` into `parts` records of
/// nearly equal size (each at least one byte). Panics on input that is not a sequence of
/// well-formed records.
pub fn split_records(hello: &[u8], parts: usize) -> Vec<u8> {
    let mut handshake = Vec::new();
    let mut pos = 0;
    while pos < hello.len() {
        let len = usize::from(u16::from_be_bytes([hello[pos + 3], hello[pos + 4]]));
        handshake.extend(&hello[pos + 5..pos + 5 + len]);
        pos += 5 + len;
    }
    assert!(parts >= 1 && parts <= handshake.len());
    let mut out = Vec::new();
    let mut start = 0;
    for i in 0..parts {
        let end = handshake.len() * (i + 1) / parts;
        let piece = &handshake[start..end];
        out.extend([22, hello[1], hello[2]]);
        out.extend((piece.len() as u16).to_be_bytes());
        out.extend(piece);
        start = end;
    }
    out
}

/// A DNS server on 127.0.0.1 that answers A and AAAA queries from a fixed table and counts
/// every datagram it receives. Unknown names get NXDOMAIN. Stops when dropped.
#[derive(Debug)]
pub struct DnsServer {
    addr: SocketAddr,
    queries: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl DnsServer {
    /// Starts the server with `records` as (name, address) pairs; names are matched
    /// case-insensitively, without a trailing dot.
    pub async fn start(records: &[(&str, IpAddr)]) -> io::Result<Self> {
        let sock = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = sock.local_addr()?;
        let queries = Arc::new(AtomicUsize::new(0));
        let table: Vec<(String, IpAddr)> = records
            .iter()
            .map(|(n, ip)| (n.trim_end_matches('.').to_ascii_lowercase(), *ip))
            .collect();
        let count = queries.clone();
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 1500];
            loop {
                let Ok((n, peer)) = sock.recv_from(&mut buf).await else {
                    return;
                };
                count.fetch_add(1, Ordering::SeqCst);
                if let Some(reply) = answer(&buf[..n], &table) {
                    let _ = sock.send_to(&reply, peer).await;
                }
            }
        });
        Ok(Self {
            addr,
            queries,
            task,
        })
    }

    /// The server's address, for [`dns_resolver`](crate::dns_resolver).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Datagrams received so far.
    pub fn queries(&self) -> usize {
        self.queries.load(Ordering::SeqCst)
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn answer(msg: &[u8], table: &[(String, IpAddr)]) -> Option<Vec<u8>> {
    let q = dns::parse_query(msg).ok()?;
    let known = table.iter().any(|(n, _)| *n == q.name);
    let matching: Vec<IpAddr> = table
        .iter()
        .filter(|(n, ip)| {
            *n == q.name
                && match ip {
                    IpAddr::V4(_) => q.qtype == 1,
                    IpAddr::V6(_) => q.qtype == 28,
                }
        })
        .map(|(_, ip)| *ip)
        .collect();
    let mut out = msg[..q.question_end].to_vec();
    let flags: u16 = if known { 0x8180 } else { 0x8183 };
    out[2..4].copy_from_slice(&flags.to_be_bytes());
    out[6..8].copy_from_slice(&(matching.len() as u16).to_be_bytes());
    out[8..12].fill(0);
    for ip in matching {
        out.extend([0xc0, 12]);
        out.extend(q.qtype.to_be_bytes());
        out.extend([0, 1, 0, 0, 0, 60]);
        match ip {
            IpAddr::V4(v4) => {
                out.extend([0, 4]);
                out.extend(v4.octets());
            }
            IpAddr::V6(v6) => {
                out.extend([0, 16]);
                out.extend(v6.octets());
            }
        }
    }
    Some(out)
}

/// An event sink that keeps every event.
#[derive(Debug, Default)]
pub struct RecordingEvents {
    events: Mutex<Vec<NetEvent>>,
}

impl RecordingEvents {
    /// An empty sink.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// The events so far.
    pub fn events(&self) -> Vec<NetEvent> {
        self.events.lock().map(|e| e.clone()).unwrap_or_default()
    }

    /// Waits up to 10 s until at least `n` events were recorded, and returns them all.
    pub async fn wait_for(&self, n: usize) -> Vec<NetEvent> {
        for _ in 0..1000 {
            let events = self.events();
            if events.len() >= n {
                return events;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.events()
    }
}

impl NetEvents for RecordingEvents {
    fn record(&self, event: &NetEvent) {
        if let Ok(mut e) = self.events.lock() {
            e.push(event.clone());
        }
    }
}
