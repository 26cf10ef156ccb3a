//! The description of one shared directory, as the supervisor hands it to
//! [`FsGateway::start`](crate::FsGateway::start).

use std::path::PathBuf;

use airlock_policy::MountMode;

/// One directory shared with the guest through one vhost-user-fs device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Share {
    /// The directory served. Canonicalised at start; the gateway reaches nothing outside it.
    pub host_dir: PathBuf,
    /// Mount point in the guest (`/workspace`); the policy's mount of the same guest path
    /// decides every request (`Policy::decide_fs(guest_path, ..)`).
    pub guest_path: String,
    /// `Ro` refuses every state-changing request at the gateway, whatever the policy's mount
    /// says and however the guest mounts the share. `Rw` serves `host_dir`, which must be the
    /// policy mount's host directory. `Overlay` serves an overlay copy read-write:
    /// `host_dir` must be [`Overlay::upper`](crate::Overlay::upper) of an overlay made from
    /// the policy mount's host directory (the gateway opens the overlay to check); the policy
    /// decides every request as for `Rw`. A policy mount of mode `overlay` requires this mode.
    pub mode: MountMode,
}
