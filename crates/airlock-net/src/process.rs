//! The egress gateway process: `airlock __gateway egress`.
//!
//! Reads an [`EgressSpec`] (one JSON line) from stdin, takes the listener on fd 3, jails itself
//! ([`jail`]: its own uid, no capabilities, Landlock with no writable path, the
//! [`airlock_jail::syscalls::EGRESS_GATEWAY`] allow-list), then serves guest tunnels with
//! [`crate::Gateway`] until SIGTERM, writing one [`NetLine`](crate::NetLine) per decision to
//! stdout. The supervisor starts it with [`crate::client::spawn`].
//!
//! Credentials: the spec carries each one's placeholder and first value; when a value's `ttl`
//! is over, the gateway writes a [`RefreshRequest`] line on stdout and the supervisor answers
//! with a [`RefreshAnswer`] line on stdin (its source run again on the host).

use airlock_jail::{Identity, SelfJail};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::FromRawFd;
use std::sync::Arc;

/// What the supervisor tells the egress gateway.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EgressSpec {
    /// The policy to load.
    pub policy: airlock_policy::PolicySource,
    /// A DNS server to ask instead of the host's resolver.
    pub dns: Option<SocketAddr>,
    /// Ports on which a CONNECT must carry a matching TLS ClientHello.
    pub tls_ports: Vec<u16>,
    /// The sandbox's certificate authority, when the policy names hosts to terminate.
    #[serde(default)]
    pub authority: Option<crate::tls::AuthorityPem>,
    /// Roots (PEM texts) upstream certificates are verified against.
    #[serde(default)]
    pub roots: Vec<String>,
    /// The credentials the supervisor could read, with their placeholders.
    #[serde(default)]
    pub secrets: Vec<crate::secrets::SecretSpec>,
}

/// A gateway's request for a fresh credential value (a stdout line).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    /// `refresh`.
    pub refresh: RefreshWhat,
}

/// Which credential, and the request's id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefreshWhat {
    /// Echoed in the answer.
    pub id: u64,
    /// The credential's name.
    pub name: String,
}

impl RefreshRequest {
    /// Parses a stdout line that is a refresh request.
    pub fn parse(line: &[u8]) -> Option<RefreshRequest> {
        let r: RefreshRequest = serde_json::from_slice(line).ok()?;
        (r.refresh.name.len() <= 64).then_some(r)
    }
}

/// The supervisor's answer (a stdin line).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefreshAnswer {
    /// The request's id.
    pub id: u64,
    /// The value, or why there is none.
    pub value: Result<String, String>,
}

impl std::fmt::Debug for RefreshAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RefreshAnswer")
            .field("id", &self.id)
            .field("ok", &self.value.is_ok())
            .finish()
    }
}

/// Why the egress gateway process stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum EgressProcessError {
    /// Its spec could not be read.
    #[error(transparent)]
    Spec(#[from] airlock_jail::gateway::SpecError),
    /// The policy did not load.
    #[error("loading the policy")]
    Policy(#[source] airlock_policy::PolicyErrors),
    /// The listener or the runtime could not be set up.
    #[error("{what}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The jail could not be entered.
    #[error("jailing the egress gateway")]
    Jail(#[from] airlock_jail::JailError),
}

/// The egress gateway's jail: its own uid and no capabilities (as root), no writable path,
/// the egress allow-list.
pub fn jail() -> SelfJail {
    SelfJail {
        mount_jail: None,
        identity: Identity::OwnUid,
        dumpable: true,
        writable: Some(Vec::new()),
        readable: None,
        landlock_required_as_root: false,
        syscalls: airlock_jail::syscalls::EGRESS_GATEWAY,
    }
}

/// `airlock __gateway egress`: returns the process exit code.
pub fn child_main() -> u8 {
    airlock_jail::gateway::child_main("egress", run)
}

fn run() -> Result<(), EgressProcessError> {
    let io = |what| move |source| EgressProcessError::Io { what, source };
    let mut input = std::io::BufReader::new(std::io::stdin());
    let spec: EgressSpec = read_line(&mut input)
        .map_err(airlock_jail::gateway::SpecError::Read)
        .and_then(|line| {
            serde_json::from_slice(&line).map_err(airlock_jail::gateway::SpecError::Parse)
        })?;
    let policy = spec.policy.load().map_err(EgressProcessError::Policy)?;
    let termination = match &spec.authority {
        Some(pem) => {
            Some(
                crate::tls::Authority::from_pem(pem).map_err(|e| EgressProcessError::Io {
                    what: "loading the certificate authority",
                    source: std::io::Error::other(e),
                })?,
            )
        }
        None => None,
    };
    // SAFETY: the supervisor placed the listening unix socket at fd 3 for us (see `client::spawn`), and
    // nothing else in this process owns fd 3.
    let listener = unsafe { std::os::unix::net::UnixListener::from_raw_fd(3) };
    listener
        .set_nonblocking(true)
        .map_err(io("taking the listener"))?;
    let jailed = jail().enter()?;
    eprintln!(
        "airlock egress gateway: uid {}, Landlock {}, seccomp allow-list of {} syscalls",
        jailed.uid,
        jailed
            .landlock
            .map_or_else(|| "off".to_string(), |l| l.to_string()),
        jailed.allowed
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(io("starting the runtime"))?;
    runtime.block_on(async move {
        let listener =
            tokio::net::UnixListener::from_std(listener).map_err(io("taking the listener"))?;
        let resolver = match spec.dns {
            Some(server) => crate::dns_resolver(server),
            None => crate::system_resolver(),
        };
        let out = Arc::new(airlock_jail::gateway::JsonLines::default());
        let policy = Arc::new(policy);
        let gateway = crate::Gateway::with_config(
            policy.clone(),
            resolver,
            out.clone(),
            crate::GatewayConfig {
                tls_ports: spec.tls_ports,
                ..crate::GatewayConfig::default()
            },
        );
        if let Some(authority) = termination {
            let refresh = Arc::new(StdinRefresh {
                out,
                pending: std::sync::Mutex::new(HashMap::new()),
                next: std::sync::atomic::AtomicU64::new(1),
            });
            let answers = refresh.clone();
            std::thread::Builder::new()
                .name("refresh".into())
                .spawn(move || answers.read_answers(input))
                .map_err(io("starting the credential reader"))?;
            let (roots, bad) = crate::tls::roots(&spec.roots);
            if bad > 0 {
                eprintln!("airlock egress gateway: {bad} root certificates could not be used");
            }
            gateway.set_termination(crate::Termination::new(
                authority,
                Arc::new(roots),
                Arc::new(crate::secrets::Secrets::new(
                    &policy,
                    spec.secrets,
                    Some(refresh),
                )),
            ));
        }
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(io("watching for SIGTERM"))?;
        tokio::spawn(async move {
            term.recv().await;
            let _ = stop_tx.send(true);
        });
        gateway.serve_unix(listener, stop_rx).await;
        Ok(())
    })
}

/// One line of at most [`airlock_jail::gateway::MAX_SPEC`] bytes, without its newline.
fn read_line(input: &mut impl std::io::BufRead) -> std::io::Result<Vec<u8>> {
    use std::io::{BufRead, Read};
    let mut line = Vec::new();
    input
        .take(airlock_jail::gateway::MAX_SPEC as u64)
        .read_until(b'\n', &mut line)?;
    if line.last() == Some(&b'\n') {
        line.pop();
    }
    Ok(line)
}

/// Asks the supervisor for credential values over stdout, reads its answers on stdin.
struct StdinRefresh {
    out: Arc<airlock_jail::gateway::JsonLines>,
    pending: std::sync::Mutex<HashMap<u64, tokio::sync::oneshot::Sender<Result<String, String>>>>,
    next: std::sync::atomic::AtomicU64,
}

/// How long the supervisor has to answer.
const REFRESH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

impl StdinRefresh {
    fn read_answers(&self, mut input: impl std::io::BufRead) {
        loop {
            match read_line(&mut input) {
                Ok(line) if line.is_empty() => return,
                Ok(line) => match serde_json::from_slice::<RefreshAnswer>(&line) {
                    Ok(answer) => {
                        let waiting = self
                            .pending
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .remove(&answer.id);
                        if let Some(tx) = waiting {
                            let _ = tx.send(answer.value);
                        }
                    }
                    Err(_) => eprintln!("airlock egress gateway: malformed input line ignored"),
                },
                Err(_) => return,
            }
        }
    }
}

impl crate::secrets::Refresh for StdinRefresh {
    fn refresh<'a>(
        &'a self,
        name: &'a str,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<String, String>> + Send + 'a>>
    {
        Box::pin(async move {
            let id = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let (tx, rx) = tokio::sync::oneshot::channel();
            self.pending
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(id, tx);
            self.out.send(&RefreshRequest {
                refresh: RefreshWhat {
                    id,
                    name: name.to_owned(),
                },
            });
            let answer = tokio::time::timeout(REFRESH_TIMEOUT, rx).await;
            self.pending
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .remove(&id);
            match answer {
                Ok(Ok(value)) => value,
                Ok(Err(_)) => Err("the supervisor is gone".to_owned()),
                Err(_) => Err("the supervisor did not answer in time".to_owned()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_jail_writes_nowhere_and_its_allow_list_compiles() {
        let j = super::jail();
        assert_eq!(j.writable, Some(Vec::new()));
        assert!(airlock_jail::seccomp::allow_list(j.syscalls).is_ok());
    }
}
