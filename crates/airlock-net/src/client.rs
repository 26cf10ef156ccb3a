//! The egress gateway as the supervisor sees it: started once the sandbox is bound, with the
//! policy in its spec and the guest's proxy listener as its fd 3.

use crate::process::EgressSpec;
use airlock_jail::gateway::{GatewayError, GatewayProcess};
use std::os::fd::OwnedFd;
use std::path::Path;

/// In the supervisor: starts the egress gateway for `spec`, handing it `listener` (the guest's
/// tunnels arrive there) as fd 3 and `log` as its stderr; each event line goes to `on_line`.
pub fn spawn(
    spec: &EgressSpec,
    listener: OwnedFd,
    log: &Path,
    on_line: impl Fn(&[u8]) + Send + 'static,
) -> Result<GatewayProcess, GatewayError> {
    let spec = serde_json::to_vec(spec).map_err(|e| GatewayError::Io {
        name: "egress",
        source: e.into(),
    })?;
    GatewayProcess::spawn("egress", spec, Some(listener), log, on_line)
}
