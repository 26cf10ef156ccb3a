//! airlock's exit codes.
//!
//! `airlock run` passes the command's status through unchanged (128+N for a signal). Codes that
//! airlock itself produces follow the shell and container-runtime conventions so scripts can tell
//! them apart from the command's own.

/// The policy's `sandbox.timeout` ended the sandbox (as timeout(1) reports it).
pub const TIMED_OUT: u8 = 124;
/// A `kill` monitor rule stopped the sandbox (128 + SIGKILL, as a shell reports a killed job).
pub const KILLED: u8 = 137;
/// airlock itself failed (bad arguments, boot failure, missing dependency).
pub const AIRLOCK_ERROR: u8 = 125;
// 126 (cannot execute) and 127 (not found) come from the guest's spawn failure, see
// `airlock_proto::SpawnFailure::exit_code`.

/// Converts a shell-style status (0..=255, or 128+N) to a process exit code.
pub fn clamp(status: i32) -> u8 {
    u8::try_from(status.clamp(0, 255)).unwrap_or(AIRLOCK_ERROR)
}
