//! The [`Gateway`]: accept loops on a unix listener (the hybrid-vsock socket the guest's
//! proxy port is tunnelled to) or a TCP listener (tests, benches), a limit on concurrent
//! connections, counters, and graceful shutdown through a `tokio::sync::watch` channel.
//!
//! Called by the supervisor, which builds one gateway per sandbox and runs `serve_unix` on a
//! task until teardown. Each accepted stream is served by `conn.rs` on its own task in a
//! `conn{peer, host}` span; the accept loop runs in a `listener{addr}` span.

use std::io;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use airlock_policy::Policy;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::config::{Counters, GatewayConfig, Shared, Stats};
use crate::conn::{self, GuestStream};
use crate::events::NetEvents;
use crate::resolve::Resolver;

/// The egress gateway of one sandbox. Cheap to clone: clones share the policy, counters and
/// connection limit.
#[derive(Clone)]
pub struct Gateway {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("config", &self.shared.config)
            .field("counters", &self.counters())
            .finish_non_exhaustive()
    }
}

impl Gateway {
    /// A gateway enforcing `policy`, resolving with `resolver`, reporting to `events`, with
    /// the default [`GatewayConfig`].
    pub fn new(
        policy: Arc<Policy>,
        resolver: Arc<dyn Resolver>,
        events: Arc<dyn NetEvents>,
    ) -> Self {
        Self::with_config(policy, resolver, events, GatewayConfig::default())
    }

    /// A gateway with explicit limits and timeouts.
    pub fn with_config(
        policy: Arc<Policy>,
        resolver: Arc<dyn Resolver>,
        events: Arc<dyn NetEvents>,
        config: GatewayConfig,
    ) -> Self {
        let limit = Arc::new(Semaphore::new(config.max_connections));
        Self {
            shared: Arc::new(Shared {
                policy: RwLock::new(policy),
                resolver,
                events,
                config,
                stats: Stats::default(),
                limit,
                termination: std::sync::OnceLock::new(),
            }),
        }
    }

    /// Lets the gateway terminate TLS for the hosts the policy names (credentials, HTTP rules);
    /// without this such CONNECTs fail (`no_authority`). Set once; later calls are ignored.
    pub fn set_termination(&self, termination: crate::config::Termination) {
        let _ = self.shared.termination.set(Arc::new(termination));
    }

    /// Replaces the policy (late binding: a pooled guest is bound to its policy when a job
    /// claims it). Connections already open keep the policy they started with.
    pub fn set_policy(&self, policy: Arc<Policy>) {
        match self.shared.policy.write() {
            Ok(mut p) => *p = policy,
            Err(poisoned) => *poisoned.into_inner() = policy,
        }
    }

    /// The counters so far.
    pub fn counters(&self) -> Counters {
        self.shared.stats.snapshot()
    }

    /// Serves guest connections arriving on `listener` (the hybrid-vsock `<uds>_3128`
    /// socket) until `shutdown` turns true or its sender is dropped; then stops accepting,
    /// closes the open connections (recording their events) and returns once all are done.
    pub async fn serve_unix(&self, listener: UnixListener, shutdown: watch::Receiver<bool>) {
        let addr = listener
            .local_addr()
            .ok()
            .and_then(|a| a.as_pathname().map(|p| p.display().to_string()))
            .unwrap_or_else(|| "unix".to_owned());
        let span = tracing::info_span!("listener", addr = %addr);
        let accept = UnixAccept { listener, next: 0 };
        self.serve(accept, shutdown).instrument(span).await;
    }

    /// Serves connections on a TCP listener, as [`serve_unix`](Self::serve_unix) does (for
    /// tests and benches; the guest reaches the gateway through the unix socket).
    pub async fn serve_tcp(&self, listener: TcpListener, shutdown: watch::Receiver<bool>) {
        let addr = listener
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_else(|_| "tcp".to_owned());
        let span = tracing::info_span!("listener", addr = %addr);
        self.serve(listener, shutdown).instrument(span).await;
    }

    async fn serve<L: Accept>(&self, mut listener: L, shutdown: watch::Receiver<bool>) {
        let mut tasks = JoinSet::new();
        let mut stop_rx = shutdown.clone();
        let stop = conn::shutdown_signal(&mut stop_rx);
        tokio::pin!(stop);
        tracing::debug!("accepting");
        loop {
            tokio::select! {
                () = &mut stop => break,
                Some(joined) = tasks.join_next(), if !tasks.is_empty() => log_join(joined),
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => self.spawn(&mut tasks, stream, peer, shutdown.clone()),
                    Err(e) => {
                        // Out of descriptors or similar: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
            }
        }
        drop(listener);
        tracing::debug!(open = tasks.len(), "shutting down");
        while let Some(joined) = tasks.join_next().await {
            log_join(joined);
        }
    }

    fn spawn<S>(
        &self,
        tasks: &mut JoinSet<()>,
        stream: S,
        peer: String,
        shutdown: watch::Receiver<bool>,
    ) where
        S: GuestStream,
    {
        let stats = &self.shared.stats;
        stats.connections.fetch_add(1, Ordering::Relaxed);
        let span = tracing::info_span!("conn", peer = %peer, host = tracing::field::Empty);
        let Ok(permit) = self.shared.limit.clone().try_acquire_owned() else {
            stats.over_limit.fetch_add(1, Ordering::Relaxed);
            let max = self.shared.config.max_connections;
            tracing::warn!(parent: &span, max, "connection limit reached");
            tasks.spawn(refuse_over_limit(stream).instrument(span));
            return;
        };
        let shared = self.shared.clone();
        tasks.spawn(
            async move {
                shared.stats.active.fetch_add(1, Ordering::Relaxed);
                conn::serve(shared.clone(), stream, shutdown).await;
                shared.stats.active.fetch_sub(1, Ordering::Relaxed);
                drop(permit);
            }
            .instrument(span),
        );
    }
}

/// Reply to a connection over the limit.
const OVER_LIMIT_REPLY: &[u8] = concat!(
    "HTTP/1.1 503 Service Unavailable\r\n",
    "X-Airlock-Decision: error; reason=",
    "connection_limit",
    "\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
)
.as_bytes();

/// Answers `503` (best effort, for at most a second) and closes.
async fn refuse_over_limit<S: AsyncWrite + Unpin>(mut stream: S) {
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        stream.write_all(OVER_LIMIT_REPLY).await?;
        stream.shutdown().await
    })
    .await;
}

fn log_join(joined: Result<(), tokio::task::JoinError>) {
    if let Err(e) = joined
        && e.is_panic()
    {
        tracing::error!(error = %e, "connection task panicked");
    }
}

/// A listener the accept loop can take streams from.
trait Accept: Send {
    type Stream: GuestStream;
    /// The next stream and a name for its peer (for the `conn` span).
    fn accept(&mut self) -> impl Future<Output = io::Result<(Self::Stream, String)>> + Send;
}

impl Accept for TcpListener {
    type Stream = TcpStream;

    async fn accept(&mut self) -> io::Result<(TcpStream, String)> {
        let (stream, peer) = TcpListener::accept(self).await?;
        let _ = stream.set_nodelay(true);
        Ok((stream, peer.to_string()))
    }
}

/// Unix peers have no useful address (the vsock backend is the only client): number them.
struct UnixAccept {
    listener: UnixListener,
    next: u64,
}

impl Accept for UnixAccept {
    type Stream = UnixStream;

    async fn accept(&mut self) -> io::Result<(UnixStream, String)> {
        let (stream, _) = self.listener.accept().await?;
        self.next += 1;
        Ok((stream, format!("uds#{}", self.next)))
    }
}

#[cfg(test)]
mod tests;
