//! What a [`Gateway`](crate::Gateway) is configured with and what its accept loops and
//! connections share: the policy in force, the resolver, the event sink, the limits, and the
//! live counters.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use airlock_policy::Policy;
use tokio::sync::Semaphore;

use crate::events::{NetDecision, NetEvent, NetEvents};
use crate::resolve::Resolver;

/// Limits and timeouts of a [`Gateway`](crate::Gateway). [`Default`] gives the documented values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayConfig {
    /// Most connections served at once; further ones get `503` and are closed. Default 256.
    pub max_connections: usize,
    /// Time from accept until the whole request head has arrived. Default 10 s.
    pub head_timeout: Duration,
    /// Time from `200 Connection established` until the ClientHello has arrived, on TLS
    /// ports. Default 10 s.
    pub hello_timeout: Duration,
    /// Time for one name lookup. Default 5 s.
    pub resolve_timeout: Duration,
    /// Time for each connect attempt. Default 10 s.
    pub connect_timeout: Duration,
    /// A splice with no byte moving either way for this long is closed. Default 10 min.
    pub idle_timeout: Duration,
    /// CONNECT ports whose first bytes must be a TLS ClientHello naming the CONNECT host.
    /// Default `[443]`.
    pub tls_ports: Vec<u16>,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            max_connections: 256,
            head_timeout: Duration::from_secs(10),
            hello_timeout: Duration::from_secs(10),
            resolve_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(600),
            tls_ports: vec![443],
        }
    }
}

/// A snapshot of a gateway's counters since it was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Connections accepted (over-limit ones included).
    pub connections: u64,
    /// Connections being served now.
    pub active: u64,
    /// Connections refused because `max_connections` were being served.
    pub over_limit: u64,
    /// Requests that produced an event (allowed, denied or failed).
    pub requests: u64,
    /// Requests allowed.
    pub allowed: u64,
    /// Requests denied.
    pub denied: u64,
    /// Requests that failed (DNS, connect, timeouts).
    pub errors: u64,
    /// Bytes forwarded from the guest upstream (updated as they move).
    pub bytes_up: u64,
    /// Bytes forwarded from upstream to the guest (updated as they move).
    pub bytes_down: u64,
}

/// The live counters behind [`Counters`].
#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub(crate) connections: AtomicU64,
    pub(crate) active: AtomicU64,
    pub(crate) over_limit: AtomicU64,
    pub(crate) requests: AtomicU64,
    pub(crate) allowed: AtomicU64,
    pub(crate) denied: AtomicU64,
    pub(crate) errors: AtomicU64,
    pub(crate) bytes_up: AtomicU64,
    pub(crate) bytes_down: AtomicU64,
}

impl Stats {
    pub(crate) fn add_up(&self, n: usize) {
        self.bytes_up
            .fetch_add(u64::try_from(n).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    pub(crate) fn add_down(&self, n: usize) {
        self.bytes_down
            .fetch_add(u64::try_from(n).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    pub(crate) fn count(&self, ev: &NetEvent) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let counter = match ev.decision {
            NetDecision::Allow => &self.allowed,
            NetDecision::Deny => &self.denied,
            NetDecision::Error => &self.errors,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> Counters {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Counters {
            connections: get(&self.connections),
            active: get(&self.active),
            over_limit: get(&self.over_limit),
            requests: get(&self.requests),
            allowed: get(&self.allowed),
            denied: get(&self.denied),
            errors: get(&self.errors),
            bytes_up: get(&self.bytes_up),
            bytes_down: get(&self.bytes_down),
        }
    }
}

/// ALPN protocol ids, in offer order.
type Protocols = Vec<Vec<u8>>;

/// What the gateway needs to terminate TLS: the sandbox's certificate authority, the roots
/// upstream certificates are verified against, and the credentials.
pub struct Termination {
    /// Signs the leaf certificates.
    pub authority: crate::tls::Authority,
    /// Trusted roots for upstream TLS.
    pub roots: Arc<rustls::RootCertStore>,
    /// The sandbox's credentials.
    pub secrets: Arc<crate::secrets::Secrets>,
    /// Upstream configurations by offered protocols, kept so sessions resume.
    clients: std::sync::Mutex<Vec<(Protocols, Arc<rustls::ClientConfig>)>>,
}

impl Termination {
    /// Termination with `authority`, verifying upstreams against `roots`, injecting `secrets`.
    pub fn new(
        authority: crate::tls::Authority,
        roots: Arc<rustls::RootCertStore>,
        secrets: Arc<crate::secrets::Secrets>,
    ) -> Termination {
        Termination {
            authority,
            roots,
            secrets,
            clients: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// The upstream configuration offering `alpn` (made once per protocol list).
    pub(crate) fn client_config(
        &self,
        alpn: &[&[u8]],
    ) -> Result<Arc<rustls::ClientConfig>, crate::tls::TlsError> {
        let key: Vec<Vec<u8>> = alpn.iter().map(|p| p.to_vec()).collect();
        let mut clients = self
            .clients
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((_, c)) = clients.iter().find(|(k, _)| *k == key) {
            return Ok(c.clone());
        }
        let config = crate::tls::client_config(self.roots.clone(), alpn)?;
        clients.push((key, config.clone()));
        Ok(config)
    }
}

impl std::fmt::Debug for Termination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Termination")
            .field("roots", &self.roots.len())
            .field("secrets", &self.secrets)
            .finish_non_exhaustive()
    }
}

/// State shared by the accept loops and every connection.
pub(crate) struct Shared {
    pub(crate) policy: RwLock<Arc<Policy>>,
    pub(crate) resolver: Arc<dyn Resolver>,
    pub(crate) events: Arc<dyn NetEvents>,
    pub(crate) config: GatewayConfig,
    pub(crate) stats: Stats,
    pub(crate) limit: Arc<Semaphore>,
    pub(crate) termination: std::sync::OnceLock<Arc<Termination>>,
}

impl Shared {
    /// TLS termination, when the gateway was given what it needs.
    pub(crate) fn termination(&self) -> Option<Arc<Termination>> {
        self.termination.get().cloned()
    }

    /// The sandbox's credentials (none without termination).
    pub(crate) fn secrets(&self) -> Option<Arc<crate::secrets::Secrets>> {
        self.termination.get().map(|t| t.secrets.clone())
    }

    /// The policy in force now; a connection keeps the one it started with.
    pub(crate) fn policy(&self) -> Arc<Policy> {
        match self.policy.read() {
            Ok(p) => p.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}
