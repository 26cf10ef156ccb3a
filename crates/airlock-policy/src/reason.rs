//! Reasons attached to every [`Decision`](crate::Decision): short snake_case constants shared by
//! audit records, proxy error replies and `airlock policy explain`. Their text is a stable
//! interface; add new ones rather than renaming.

/// An allow entry, or the share's mount mode, allowed the request.
pub const ALLOWED: &str = "allowed";
/// No entry matched and `network.default = "allow"`.
pub const DEFAULT_ALLOW: &str = "default_allow";
/// No entry matched and `network.default = "deny"`.
pub const NOT_ALLOWED: &str = "not_allowed";
/// A `network.deny` or `[[network.http]]` deny rule matched.
pub const DENIED: &str = "denied";
/// The host is not a valid name or address.
pub const INVALID_HOST: &str = "invalid_host";
/// The port is 0.
pub const INVALID_PORT: &str = "invalid_port";
/// The address (after DNS) is public.
pub const PUBLIC_ADDRESS: &str = "public_address";
/// The address (after DNS) is private, loopback, link-local, CGNAT, multicast or reserved,
/// and `network.allow_private` is false.
pub const PRIVATE_ADDRESS: &str = "private_address";
/// The address is a cloud metadata endpoint.
pub const METADATA_ADDRESS: &str = "metadata_address";
/// The HTTP method or path is malformed (bad escape, `..` segment).
pub const INVALID_REQUEST: &str = "invalid_request";
/// The path is, or leads to, a protected path.
pub const PROTECTED_PATH: &str = "protected_path";
/// One of airlock's own files (policy, audit log or key, CA, data, state or cache directory)
/// inside a share: read-only or hidden whatever the policy says.
pub const AIRLOCK_FILE: &str = "airlock_file";
/// The path matches `filesystem.deny_write`.
pub const WRITE_DENIED: &str = "write_denied";
/// The path matches `filesystem.deny_read`.
pub const READ_DENIED: &str = "read_denied";
/// The share is mounted `ro`.
pub const READ_ONLY_MOUNT: &str = "read_only_mount";
/// The path is malformed (`..`, NUL, too long).
pub const INVALID_PATH: &str = "invalid_path";
/// No share is mounted at that guest path.
pub const UNKNOWN_MOUNT: &str = "unknown_mount";
