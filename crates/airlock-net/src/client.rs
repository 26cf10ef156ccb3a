//! The egress gateway as the supervisor sees it: started once the sandbox is bound, with the
//! policy in its spec and the guest's proxy listener as its fd 3.

use crate::process::EgressSpec;
use airlock_jail::gateway::{GatewayError, GatewayProcess};
use std::os::fd::OwnedFd;
use std::path::Path;

/// In the supervisor: starts the egress gateway for `spec`, handing it `listener` (the guest's
/// tunnels arrive there) as fd 3 and `log` as its stderr; each event line goes to `on_line`.
/// The spec goes as one line and stdin stays open: the gateway asks for fresh credential
/// values on stdout ([`crate::process::RefreshRequest`]) and reads the answers there.
pub async fn spawn(
    spec: &EgressSpec,
    listener: OwnedFd,
    log: &Path,
    on_line: impl Fn(&[u8]) + Send + 'static,
) -> Result<GatewayProcess, GatewayError> {
    GatewayProcess::spawn_kept("egress", spec, Some(listener), log, on_line).await
}
