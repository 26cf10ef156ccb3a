//! Settings airlock reads from its environment for every launch: the boot timeout, the DNS
//! resolver of the egress gateway, the ports whose CONNECTs must carry TLS.

use super::error::LaunchError;
use std::sync::Arc;
use std::time::Duration;

/// Default time allowed for the guest to boot (TCG on a loaded 2-core host needs headroom).
pub const DEFAULT_BOOT_TIMEOUT_SECS: u64 = 60;

/// `AIRLOCK_BOOT_TIMEOUT` (seconds), else [`DEFAULT_BOOT_TIMEOUT_SECS`].
pub fn boot_timeout() -> Result<Duration, LaunchError> {
    let secs = std::env::var("AIRLOCK_BOOT_TIMEOUT")
        .ok()
        .map(|s| {
            s.parse::<u64>().map_err(|_| LaunchError::Env {
                var: "AIRLOCK_BOOT_TIMEOUT",
                value: s.clone(),
                expected: "expected a number of seconds",
            })
        })
        .transpose()?
        .unwrap_or(DEFAULT_BOOT_TIMEOUT_SECS);
    Ok(Duration::from_secs(secs))
}

/// The egress gateway's resolver: the host's, or the DNS server named by `AIRLOCK_DNS`
/// (`IP:PORT`), e.g. a resolver dedicated to sandboxes.
pub fn resolver() -> Result<Arc<dyn airlock_net::Resolver>, LaunchError> {
    match std::env::var("AIRLOCK_DNS") {
        Ok(addr) => {
            let addr = addr.parse().map_err(|_| LaunchError::Env {
                var: "AIRLOCK_DNS",
                value: addr.clone(),
                expected: "expected IP:PORT of a DNS server",
            })?;
            Ok(airlock_net::dns_resolver(addr))
        }
        Err(_) => Ok(airlock_net::system_resolver()),
    }
}

/// Ports on which a CONNECT must carry a TLS ClientHello naming the CONNECT host
/// (`AIRLOCK_TLS_PORTS=443,8443`; default 443).
pub fn tls_ports() -> Result<Vec<u16>, LaunchError> {
    match std::env::var("AIRLOCK_TLS_PORTS") {
        Ok(list) => list
            .split(',')
            .map(|p| {
                p.trim().parse::<u16>().map_err(|_| LaunchError::Env {
                    var: "AIRLOCK_TLS_PORTS",
                    value: list.clone(),
                    expected: "expected comma-separated port numbers",
                })
            })
            .collect(),
        Err(_) => Ok(vec![443]),
    }
}
