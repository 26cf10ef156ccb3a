//! Reasons for refusals that the gateway makes on its own, before or beside the policy: short
//! snake_case constants, recorded in [`FsEvent::reason`](crate::FsEvent::reason) next to the
//! policy's own constants (`airlock_policy::reason`). Their text is a stable interface; add new
//! ones rather than renaming.

/// A name in a request is not one path component the policy can match: empty, `.`, `..`,
/// containing `/` or NUL, longer than 255 bytes, or not UTF-8.
pub const INVALID_NAME: &str = "invalid_name";
/// A node's path could not be worked out (more aliases than tracked, too long, or cut off from
/// the share root by a hostile sequence of forgets), so no decision can be made.
pub const UNKNOWN_PATH: &str = "unknown_path";
/// `mknod` of a character or block device.
pub const DEVICE_NODE: &str = "device_node";
/// A set-user-ID bit, or a set-group-ID bit on anything but a directory.
pub const SETID_BITS: &str = "setid_bits";
/// Rename flags other than `RENAME_NOREPLACE` and `RENAME_EXCHANGE`.
pub const UNSUPPORTED_FLAGS: &str = "unsupported_flags";
/// A node the guest holds no longer sits at its name in the share (moved out, or the name now
/// names something else, a symlink included); reopening it was refused.
pub const REPLACED_ON_HOST: &str = "replaced_on_host";
/// The file is another name (a hard link) of a file the policy refuses to read; the
/// recorded rule is the one that refuses that name.
pub const LINKED_TO_DENIED: &str = "linked_to_denied";
/// The share's limit of files open at once was reached.
pub const MAX_OPEN: &str = "max_open";
/// A write would grow the host filesystem by more than the share's quota.
pub const QUOTA: &str = "quota";

/// Rule names reported with the reasons above (the policy names its own rules).
pub mod rule {
    /// Name validation.
    pub const NAME: &str = "gateway.name";
    /// Path tracking.
    pub const PATH: &str = "gateway.path";
    /// Device nodes.
    pub const MKNOD: &str = "gateway.mknod";
    /// File modes.
    pub const MODE: &str = "gateway.mode";
    /// Rename flags.
    pub const RENAME: &str = "gateway.rename";
    /// Identity of a reopened node.
    pub const IDENTITY: &str = "gateway.identity";
    /// The policy's open-file limit.
    pub const MAX_OPEN: &str = "filesystem.max_open";
    /// The rule that reports [`super::QUOTA`].
    pub const QUOTA: &str = "filesystem.quota";
}
