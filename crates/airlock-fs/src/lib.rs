//! airlock filesystem gateway: the host side of a sandbox's shared directories. One
//! [`FsGateway`] per share serves a vhost-user-fs socket that QEMU's `vhost-user-fs-device`
//! connects to. Guest FUSE requests flow virtqueue → `device` (our vhost-user backend) →
//! virtiofsd's `Server` (decoding) → [`GatedFs`] (`backend`: names checked, node ids turned
//! into share-relative paths by `paths`, every content read and state change decided by
//! [`Gate`] through `Policy::decide_fs`) → virtiofsd's `PassthroughFs` over the share
//! directory → reply. Every state change and every denial is reported to [`FsEvents`].
//! For `overlay` mounts, [`Overlay`] makes a private copy of the host directory that the
//! gateway serves instead, and later lists, diffs, applies (re-checked by the policy) or
//! discards the guest's changes.
//!
//! The gateway runs in a jailed process of its own, `airlock __gateway fs` ([`process`]); the
//! supervisor starts and binds it through [`client::FsSlot`], and reads its decisions back as
//! [`FsLine`]s. `docs/filesystem.md` describes the design, modes and threat model.

#![warn(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::indexing_slicing
)]

mod backend;
pub mod client;
mod device;
mod events;
mod filtered_dir;
mod gate;
pub mod overlay;
mod paths;
pub mod process;
pub mod reason;
mod serve;
mod share;
mod sys;

pub use backend::GatedFs;
pub use device::{DeviceError, FsDevice};
pub use events::{FsEvent, FsEvents, FsLine, NoEvents};
pub use filtered_dir::FilteredDir;
pub use gate::{Gate, OpenIntent, Outcome, Request, errno_for};
pub use overlay::{
    ApplyGuard, ApplyReport, Change, ChangeKind, Conflict, ConflictReason, Denied, EntryKind,
    EntryState, Overlay, OverlayError,
};
pub use paths::{
    MAX_ALIASES, MAX_NAME_LEN, MAX_PATH_LEN, NameError, PathError, PathMap, ROOT_INODE,
    validate_name,
};
pub use serve::{
    Binder, DEFAULT_THREADS, FsError, FsGateway, GatewayOptions, OwnerMap, passthrough_config,
};
pub use share::Share;
pub use sys::guest_fd_budget_for;

/// Most inner inodes (each an open descriptor) a share keeps for the nodes the guest knows.
pub const MAX_RESIDENT: usize = backend::DEFAULT_MAX_RESIDENT;
