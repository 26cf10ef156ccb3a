//! What can be wrong with a well-formed policy: one variant per kind of bad entry, each
//! naming what was found and what was expected. `validate.rs` produces them; `error.rs` wraps
//! each with the file, line and key it came from.

use crate::host::HostError;
use crate::path::PathError;

/// A value that is well formed TOML but not a valid policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    /// `extends` names no shipped profile.
    #[error("unknown profile {found:?}, expected one of: {expected}")]
    UnknownProfile {
        /// The name as written.
        found: String,
        /// The shipped profiles.
        expected: String,
    },
    /// A profile that (indirectly) extends itself.
    #[error("profile {found:?} is already in this `extends` chain; expected no cycle")]
    ExtendsCycle {
        /// The repeated profile.
        found: String,
    },
    /// Too many nested `extends`.
    #[error("more than {max} nested `extends`")]
    ExtendsTooDeep {
        /// The limit.
        max: usize,
    },
    /// `sandbox.require` names no known protection.
    #[error("unknown protection {found:?}, expected one of: {expected}")]
    UnknownProtection {
        /// The name as written.
        found: String,
        /// The known protections.
        expected: String,
    },
    /// `sandbox.layers` names no shipped layer.
    #[error("unknown layer {found:?}, expected one of: {expected}")]
    UnknownLayer {
        /// The name as written.
        found: String,
        /// The shipped layers.
        expected: String,
    },
    /// `sandbox.image` is not a plain name.
    #[error(
        "invalid image name {found:?}, expected 1 to 64 lower-case letters, digits, `.`, `_` or \
         `-`, starting with a letter or digit"
    )]
    BadImage {
        /// The name as written.
        found: String,
    },
    /// A count below its minimum.
    #[error("found {found}, expected at least {min}")]
    TooSmall {
        /// The value.
        found: u64,
        /// The minimum.
        min: u64,
    },
    /// A size string that does not parse.
    #[error(
        "invalid size {found:?}, expected a whole number greater than 0 with an optional unit: \
         K, M, G, T or KiB, MiB, GiB, TiB (binary), KB, MB, GB, TB (decimal), B; e.g. \"512MiB\""
    )]
    BadSize {
        /// The text as written.
        found: String,
    },
    /// A duration string that does not parse.
    #[error(
        "invalid duration {found:?}, expected numbers with units ms, s, m, h or d, greater than 0; \
         e.g. \"90s\", \"30m\" or \"1h30m\""
    )]
    BadDuration {
        /// The text as written.
        found: String,
    },
    /// A guest path that is not absolute or contains `..`.
    #[error(
        "invalid guest path {found:?}: {problem}; expected an absolute path like \"/workspace\""
    )]
    BadGuestPath {
        /// The path as written.
        found: String,
        /// What is wrong.
        problem: PathError,
    },
    /// A guest path over the guest's own system directories.
    #[error(
        "guest path {found:?} would hide a guest system directory; expected a path outside /, /proc, /sys and /dev"
    )]
    ReservedGuestPath {
        /// The normalised path.
        found: String,
    },
    /// Two mounts at the same guest path in one file.
    #[error("guest path {found:?} is already mounted by {first}; expected each guest path once")]
    DuplicateMount {
        /// The normalised path.
        found: String,
        /// The key of the first mount.
        first: String,
    },
    /// Both `host` and `workspace = true`.
    #[error("both `host` and `workspace = true` are set; expected exactly one")]
    MountSourceConflict,
    /// `protected = false` on the workspace mount.
    #[error(
        "`protected = false` is not allowed with `workspace = true`: tools on the host run and \
         read the workspace's git hooks, git config and agent settings; expected `protected = \
         true` (the default) on the workspace mount"
    )]
    UnprotectedWorkspace,
    /// `protected = false` on a host directory that is or holds another share's host directory.
    #[error(
        "`protected = false` on host directory {found:?}, which is or holds host directory \
         {other_host:?} of {other}; expected `protected = false` only on a directory that holds \
         no share keeping its protected paths"
    )]
    UnprotectedMountHoldsShare {
        /// The unprotected mount's host directory.
        found: String,
        /// The rule name of the mount inside it, e.g. `filesystem.mounts[0] "/workspace"`.
        other: String,
        /// That mount's host directory.
        other_host: String,
    },
    /// Neither `host` nor `workspace = true`.
    #[error("neither `host` nor `workspace = true` is set; expected exactly one")]
    MountSourceMissing,
    /// A host path that is malformed.
    #[error("invalid host path {found:?}: {problem}")]
    BadHostPath {
        /// The path as written.
        found: String,
        /// What is wrong.
        problem: PathError,
    },
    /// `~` used while `HOME` is unset.
    #[error("cannot expand `~` in {found:?}: HOME is not set")]
    HomeUnset {
        /// The path as written.
        found: String,
    },
    /// The host directories passed with a policy checked elsewhere do not fit its mounts.
    #[error("host directories do not match the mounts: {why}")]
    MountHostsMismatch {
        /// What differs.
        why: String,
    },
    /// An agent home cannot be mounted because a share is at, above or below its guest path.
    #[error(
        "the agent home goes at /home/agent, but {other} mounts {found:?} there; expected no \
         share at, above or below /home/agent when an agent kit runs"
    )]
    HomeMountConflict {
        /// The conflicting guest path.
        found: String,
        /// Its rule name.
        other: String,
    },
    /// A shared host directory that does not exist.
    #[error(
        "host path {found:?} (resolved to {resolved:?}) does not exist; expected an existing directory"
    )]
    HostPathMissing {
        /// The path as written.
        found: String,
        /// The path after `~` expansion and joining to the policy file's directory.
        resolved: String,
    },
    /// A shared host path that is not a directory.
    #[error(
        "host path {found:?} (resolved to {resolved:?}) is not a directory; expected a directory"
    )]
    NotADirectory {
        /// The path as written.
        found: String,
        /// The resolved path.
        resolved: String,
    },
    /// A shared host path that exists but cannot be examined.
    #[error(
        "host path {found:?} (resolved to {resolved:?}) cannot be accessed ({reason}); expected a \
         readable directory"
    )]
    HostPathInaccessible {
        /// The path as written.
        found: String,
        /// The resolved path.
        resolved: String,
        /// The I/O error kind.
        reason: String,
    },
    /// A malformed path glob.
    #[error("invalid glob {found:?}: {problem}")]
    BadGlob {
        /// The glob as written.
        found: String,
        /// What is wrong.
        problem: PathError,
    },
    /// A glob written as a guest or host path of a share, which never matches what it names.
    #[error(
        "{found:?} starts with {what}, but globs are relative to each share's root, so it \
         matches {relative:?} inside a share, never the path it names; write {instead:?} (or \
         {relative:?} for a directory of that name inside the share)"
    )]
    GlobNamesMountPath {
        /// The glob as written.
        found: String,
        /// The path it starts with, e.g. `the guest mount point of filesystem.mounts[0]
        /// "/workspace"`.
        what: String,
        /// The glob as it is matched.
        relative: String,
        /// The glob relative to that share.
        instead: String,
    },
    /// `unprotect` names no built-in entry.
    #[error("{found:?} is not a built-in protected entry, expected one of: {expected}")]
    UnknownUnprotect {
        /// The entry as written.
        found: String,
        /// The built-in entries.
        expected: String,
    },
    /// The same entry in `protect` and `unprotect`.
    #[error("{found:?} is also in `filesystem.protect`; expected it in only one of the two lists")]
    ProtectAndUnprotect {
        /// The entry.
        found: String,
    },
    /// A malformed `host[:port]` pattern.
    #[error("invalid host pattern {found:?}: {problem}")]
    BadHostPattern {
        /// The pattern as written.
        found: String,
        /// What is wrong.
        problem: HostError,
    },
    /// An allow entry whose address block covers a cloud metadata address.
    #[error(
        "{found:?} covers the cloud metadata block {block} ({serves}); no block opens a \
         metadata address, only an entry naming the exact address, like \"169.254.169.254:80\": \
         narrow the block to leave it out, and list each metadata address the sandbox needs"
    )]
    CoversMetadata {
        /// The entry as written.
        found: String,
        /// The metadata block it covers, in the entry's address family.
        block: String,
        /// What serves there.
        serves: &'static str,
    },
    /// A malformed HTTP method.
    #[error("invalid HTTP method {found:?}, expected letters and `-` only, like \"GET\"")]
    BadMethod {
        /// The method as written.
        found: String,
    },
    /// A malformed HTTP path glob.
    #[error(
        "invalid HTTP path {found:?}: {problem}; expected a glob starting with `/`, like \"/v1/**\""
    )]
    BadHttpPath {
        /// The glob as written.
        found: String,
        /// What is wrong.
        problem: String,
    },
    /// A user name the guest cannot create.
    #[error(
        "invalid user name {found:?}, expected up to 32 lower-case letters, digits, `_` or `-`, \
         starting with a letter or `_`"
    )]
    BadUser {
        /// The name as written.
        found: String,
    },
    /// `no_new_privs = false` with a seccomp filter.
    #[error(
        "`no_new_privs = false` requires `seccomp = \"unconfined\"` (the unprivileged workload \
         cannot install a seccomp filter without no_new_privs); found seccomp = {seccomp:?}"
    )]
    NoNewPrivsNeedsUnconfined {
        /// The seccomp profile in force.
        seccomp: String,
    },
    /// A malformed redaction regex.
    #[error("invalid regular expression {found:?}: {problem}")]
    BadRegex {
        /// The regex as written.
        found: String,
        /// The regex parser's description.
        problem: String,
    },
    /// A malformed environment variable name.
    #[error(
        "invalid environment variable name {found:?}, expected letters, digits and `_`, not \
         starting with a digit"
    )]
    BadEnvName {
        /// The name as written.
        found: String,
    },
    /// A credential name with characters outside letters, digits, `-` and `_`.
    #[error("invalid credential name {found:?}, expected letters, digits, `-` and `_` (1 to 64)")]
    BadCredentialName {
        /// The name as written.
        found: String,
    },
    /// Two credentials with one name.
    #[error("credential {name:?} is defined twice; names must be unique")]
    DuplicateCredential {
        /// The name.
        name: String,
    },
    /// A credential host that is not one exact host.
    #[error(
        "credential host {found:?} must name one exact host and optional port, like \
         \"api.anthropic.com\" or \"127.0.0.1:8443\": {problem}"
    )]
    BadCredentialHost {
        /// The host as written.
        found: String,
        /// What is wrong.
        problem: String,
    },
    /// A header a credential may not be written into.
    #[error("invalid credential header {found:?}: {problem}")]
    BadCredentialHeader {
        /// The header as written.
        found: String,
        /// What is wrong.
        problem: &'static str,
    },
    /// A credential format without exactly one place for the secret.
    #[error(
        "invalid credential format {found:?}: expected exactly one `{{}}` or `{{base64}}`, like \
         \"Bearer {{}}\""
    )]
    BadCredentialFormat {
        /// The format as written.
        found: String,
    },
    /// A credential source that does not parse.
    #[error(
        "invalid credential source {found:?}: {problem}; expected \"env:NAME\", \"file:PATH\" or \
         \"command:PROGRAM ARGS...\""
    )]
    BadCredentialSource {
        /// The source as written.
        found: String,
        /// What is wrong.
        problem: String,
    },
    /// A credential host also listed in `network.passthrough`.
    #[error(
        "credential {name:?} is sent to {host}, which {rule} lists as passthrough: the gateway \
         must terminate TLS to inject it; remove one of them"
    )]
    CredentialPassthrough {
        /// The credential.
        name: String,
        /// Its host.
        host: String,
        /// The passthrough entry.
        rule: String,
    },
    /// Two credentials write the same guest variable.
    #[error("credentials {first:?} and {second:?} both set guest_env {env:?}")]
    DuplicateGuestEnv {
        /// The variable.
        env: String,
        /// The first credential.
        first: String,
        /// The second credential.
        second: String,
    },
    /// A monitor rule without any match field.
    #[error("rule has no match field; expected at least one of kind, decision, path, host")]
    EmptyMonitorRule,
}
