//! The description of one shared directory, as the supervisor hands it to
//! [`FsGateway::start`](crate::FsGateway::start).

use std::path::PathBuf;

use airlock_policy::MountMode;

/// One directory shared with the guest through one vhost-user-fs device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Share {
    /// The host directory. Canonicalised at start; the gateway reaches nothing outside it.
    pub host_dir: PathBuf,
    /// Mount point in the guest (`/workspace`); the policy's mount of the same guest path
    /// decides every request (`Policy::decide_fs(guest_path, ..)`).
    pub guest_path: String,
    /// `Ro` or `Rw`. `Ro` refuses every state-changing request at the gateway, whatever the
    /// policy's mount says and however the guest mounts the share. `Overlay` is not
    /// implemented: starting a gateway with it fails.
    pub mode: MountMode,
}
