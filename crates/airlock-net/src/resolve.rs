//! Host-side name resolution and address classification.
//!
//! Called by `conn.rs` only after the policy allowed the *name* (so a denied name never
//! causes a DNS query). A [`Resolver`] turns a canonical [`Host`] into addresses:
//! [`system_resolver`] asks the host's getaddrinfo (on tokio's blocking pool), and
//! [`dns_resolver`] queries one configured DNS server over UDP with the pure wire code in
//! [`dns`] (tests point it at a local server that counts queries). [`classify`] then asks
//! `Policy::decide_address` about every address, so a name that resolves to a private,
//! loopback or metadata address is refused before anything connects.

pub mod dns;

use std::future::Future;
use std::hash::{BuildHasher, RandomState};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use airlock_policy::{Decision, Host, Policy};
use tokio::net::UdpSocket;
use tokio::time::{Instant, timeout_at};

use dns::{DnsError, QType};

/// Most addresses of one name the gateway considers.
pub const MAX_ADDRESSES: usize = 16;
/// How long [`dns_resolver`] waits for answers before sending the queries again.
pub const DNS_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);
/// How many times [`dns_resolver`] sends its queries.
pub const DNS_ATTEMPTS: usize = 2;

/// Why a lookup failed.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// The name exists in no form the resolver found (NXDOMAIN, or no A/AAAA record).
    #[error("no address found")]
    NotFound,
    /// No answer in time.
    #[error("lookup timed out")]
    Timeout,
    /// The lookup failed locally (socket error, getaddrinfo error).
    #[error("lookup failed")]
    Io(#[source] io::Error),
    /// The DNS server's answer was refused.
    #[error("bad DNS answer")]
    Dns(#[source] DnsError),
}

/// The future a [`Resolver`] returns.
pub type ResolveFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Vec<IpAddr>, ResolveError>> + Send + 'a>>;

/// Resolves names on the host. Implementations return addresses in preference order, without
/// duplicates; the gateway tries the allowed ones in that order.
pub trait Resolver: Send + Sync {
    /// Looks up `host` (a canonical name, never an address literal).
    fn resolve<'a>(&'a self, host: &'a Host) -> ResolveFuture<'a>;

    /// How to build this resolver again in another process (the jailed gateway); `None` for
    /// resolvers that exist only in this one.
    fn spec(&self) -> Option<ResolverSpec> {
        None
    }
}

/// A resolver described by value, so a gateway process can build the same one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResolverSpec {
    /// [`system_resolver`].
    System,
    /// [`dns_resolver`] with this server.
    Dns(SocketAddr),
}

impl ResolverSpec {
    /// The resolver this describes.
    pub fn build(self) -> Arc<dyn Resolver> {
        match self {
            ResolverSpec::System => system_resolver(),
            ResolverSpec::Dns(server) => dns_resolver(server),
        }
    }
}

/// The host's own resolver: getaddrinfo through `tokio::net::lookup_host`, which runs it on
/// tokio's blocking pool. Honours `/etc/hosts` and `/etc/resolv.conf`.
pub fn system_resolver() -> Arc<dyn Resolver> {
    Arc::new(SystemResolver)
}

/// A resolver that sends A and AAAA queries for each name to `server` over UDP (no TCP
/// fallback, no EDNS, no DNSSEC validation), [`DNS_ATTEMPTS`] times at most, waiting
/// [`DNS_ATTEMPT_TIMEOUT`] each time.
pub fn dns_resolver(server: SocketAddr) -> Arc<dyn Resolver> {
    Arc::new(DnsResolver { server })
}

struct SystemResolver;

impl Resolver for SystemResolver {
    fn spec(&self) -> Option<ResolverSpec> {
        Some(ResolverSpec::System)
    }

    fn resolve<'a>(&'a self, host: &'a Host) -> ResolveFuture<'a> {
        Box::pin(async move {
            let found = tokio::net::lookup_host((host.as_str(), 0))
                .await
                .map_err(ResolveError::Io)?;
            let mut addrs = Vec::new();
            for sa in found {
                let ip = sa.ip().to_canonical();
                if !addrs.contains(&ip) && addrs.len() < MAX_ADDRESSES {
                    addrs.push(ip);
                }
            }
            if addrs.is_empty() {
                return Err(ResolveError::NotFound);
            }
            Ok(addrs)
        })
    }
}

struct DnsResolver {
    server: SocketAddr,
}

impl Resolver for DnsResolver {
    fn spec(&self) -> Option<ResolverSpec> {
        Some(ResolverSpec::Dns(self.server))
    }

    fn resolve<'a>(&'a self, host: &'a Host) -> ResolveFuture<'a> {
        Box::pin(self.lookup(host))
    }
}

impl DnsResolver {
    async fn lookup(&self, host: &Host) -> Result<Vec<IpAddr>, ResolveError> {
        let local: SocketAddr = if self.server.is_ipv4() {
            (Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let sock = UdpSocket::bind(local).await.map_err(ResolveError::Io)?;
        // A connected socket drops datagrams from any other source.
        sock.connect(self.server).await.map_err(ResolveError::Io)?;
        let a_id = random_id();
        let mut aaaa_id = random_id();
        while aaaa_id == a_id {
            aaaa_id = random_id();
        }
        let queries = [(a_id, QType::A), (aaaa_id, QType::Aaaa)];
        let mut answers: [Option<Result<Vec<IpAddr>, DnsError>>; 2] = [None, None];
        let mut buf = vec![0u8; dns::MAX_MESSAGE_LEN];
        for _ in 0..DNS_ATTEMPTS {
            for ((id, qtype), answer) in queries.iter().zip(&answers) {
                if answer.is_none() {
                    let query = dns::build_query(*id, host, *qtype);
                    sock.send(&query).await.map_err(ResolveError::Io)?;
                }
            }
            let deadline = Instant::now() + DNS_ATTEMPT_TIMEOUT;
            while answers.iter().any(Option::is_none) {
                let n = match timeout_at(deadline, sock.recv(&mut buf)).await {
                    Err(_) => break,
                    Ok(r) => r.map_err(ResolveError::Io)?,
                };
                let msg = buf.get(..n).unwrap_or_default();
                let Some(id) = dns::message_id(msg) else {
                    continue;
                };
                for ((qid, qtype), answer) in queries.iter().zip(answers.iter_mut()) {
                    if *qid == id && answer.is_none() {
                        *answer = Some(dns::parse_response(msg, id, host, *qtype));
                    }
                }
            }
            if answers.iter().all(Option::is_some) {
                break;
            }
        }
        let mut addrs = Vec::new();
        let mut first_error = None;
        let mut unanswered = false;
        for answer in answers {
            match answer {
                Some(Ok(found)) => addrs.extend(found),
                Some(Err(e)) => {
                    first_error.get_or_insert(e);
                }
                None => unanswered = true,
            }
        }
        addrs.truncate(MAX_ADDRESSES);
        match (addrs.is_empty(), first_error, unanswered) {
            (false, _, _) => Ok(addrs),
            (true, Some(e), _) => Err(ResolveError::Dns(e)),
            (true, None, true) => Err(ResolveError::Timeout),
            (true, None, false) => Err(ResolveError::NotFound),
        }
    }
}

/// An unpredictable query ID: SipHash, keyed from the OS's randomness once per thread by
/// `RandomState`, over a process-wide counter. With the random source port this is what keeps
/// off-path spoofing out; no extra dependency is needed for it.
fn random_id() -> u16 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let [a, b, ..] = RandomState::new().hash_one(n).to_le_bytes();
    u16::from_le_bytes([a, b])
}

/// The policy's verdict on each address of a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressChoice {
    /// Allowed addresses, in the resolver's order.
    pub allowed: Vec<IpAddr>,
    /// Refused addresses with the decision that refused each.
    pub denied: Vec<(IpAddr, Decision)>,
}

/// Asks `Policy::decide_address` about every address (IPv4-mapped IPv6 addresses are
/// classified as IPv4 by the policy).
pub fn classify(policy: &Policy, addrs: &[IpAddr], port: u16) -> AddressChoice {
    let mut choice = AddressChoice {
        allowed: Vec::new(),
        denied: Vec::new(),
    };
    for &ip in addrs {
        let d = policy.decide_address(ip, port);
        if d.is_allowed() {
            choice.allowed.push(ip);
        } else {
            choice.denied.push((ip, d));
        }
    }
    choice
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::DnsServer;
    use std::path::Path;

    fn policy(text: &str) -> Policy {
        airlock_policy::load_str(text, Path::new("test.toml")).unwrap()
    }

    #[test]
    fn classify_splits_by_address_class() {
        let p = policy("[network]\nallow = [\"a.example\"]\n");
        let addrs: Vec<IpAddr> = [
            "127.0.0.1",
            "10.0.0.1",
            "192.0.2.1",
            "8.8.8.8",
            "169.254.169.254",
        ]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
        let c = classify(&p, &addrs, 443);
        assert_eq!(c.allowed, vec!["8.8.8.8".parse::<IpAddr>().unwrap()]);
        let reasons: Vec<&str> = c.denied.iter().map(|(_, d)| d.reason).collect();
        assert_eq!(
            reasons,
            [
                "private_address",
                "private_address",
                "private_address",
                "metadata_address"
            ]
        );
    }

    /// The known metadata endpoints, and one more address of IPv4 link-local.
    const METADATA: [&str; 6] = [
        "169.254.169.254",
        "169.254.170.2",
        "100.100.100.200",
        "192.0.0.192",
        "fd00:ec2::254",
        "169.254.1.1",
    ];

    fn ips(text: &[&str]) -> Vec<IpAddr> {
        text.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn metadata_addresses_are_refused_with_and_without_allow_private() {
        let public = "8.8.8.8";
        let mut addrs = METADATA.to_vec();
        addrs.push(public);
        for text in [
            "[network]\nallow = [\"a.example\"]\n",
            "[network]\nallow = [\"a.example\"]\nallow_private = true\n",
            "[network]\ndefault = \"allow\"\nallow_private = true\n",
        ] {
            let c = classify(&policy(text), &ips(&addrs), 80);
            assert_eq!(c.allowed, ips(&[public]), "{text}");
            let denied: Vec<(IpAddr, &str, &str)> = c
                .denied
                .iter()
                .map(|(ip, d)| (*ip, d.rule.as_str(), d.reason))
                .collect();
            let want: Vec<(IpAddr, &str, &str)> = ips(&METADATA)
                .into_iter()
                .map(|ip| (ip, "network.metadata", "metadata_address"))
                .collect();
            assert_eq!(denied, want, "{text}");
        }
        // allow_private still opens the private neighbours of the metadata addresses.
        let open = policy("[network]\nallow_private = true\n");
        let near = ips(&[
            "100.100.100.201",
            "192.0.0.191",
            "fd00:ec2::253",
            "10.0.0.1",
        ]);
        assert_eq!(classify(&open, &near, 80).allowed, near);
    }

    #[test]
    fn an_allow_naming_the_exact_metadata_address_opens_only_that_one() {
        for addr in METADATA {
            let ip: IpAddr = addr.parse().unwrap();
            let entry = if ip.is_ipv6() {
                format!("[{addr}]:80")
            } else {
                format!("{addr}:80")
            };
            let p = policy(&format!(
                "[network]\nallow_private = true\nallow = [{entry:?}]\n"
            ));
            let c = classify(&p, &ips(&METADATA), 80);
            assert_eq!(c.allowed, vec![ip], "{entry}");
            assert_eq!(
                c.denied.iter().map(|(ip, _)| *ip).collect::<Vec<_>>(),
                ips(&METADATA)
                    .into_iter()
                    .filter(|m| *m != ip)
                    .collect::<Vec<_>>(),
                "{entry}"
            );
            assert_eq!(classify(&p, &[ip], 81).allowed, Vec::<IpAddr>::new());
        }
    }

    #[tokio::test]
    async fn dns_resolver_asks_the_configured_server() {
        let server = DnsServer::start(&[
            ("a.example", "192.0.2.1".parse().unwrap()),
            ("a.example", "2001:db8::1".parse().unwrap()),
        ])
        .await
        .unwrap();
        let r = dns_resolver(server.addr());
        let got = r
            .resolve(&Host::parse("A.Example.").unwrap())
            .await
            .unwrap();
        assert_eq!(
            got,
            vec![
                "192.0.2.1".parse::<IpAddr>().unwrap(),
                "2001:db8::1".parse().unwrap()
            ]
        );
        assert_eq!(server.queries(), 2);
        let missing = r.resolve(&Host::parse("b.example").unwrap()).await;
        assert!(
            matches!(missing, Err(ResolveError::NotFound)),
            "{missing:?}"
        );
        assert_eq!(server.queries(), 4);
    }

    #[tokio::test]
    async fn system_resolver_finds_localhost() {
        let got = system_resolver()
            .resolve(&Host::parse("localhost").unwrap())
            .await
            .unwrap();
        assert!(got.iter().all(IpAddr::is_loopback), "{got:?}");
    }
}
