//! The airlock host runtime as a library: the per-sandbox supervisor that the CLI (and later the
//! daemon) drives.
//!
//! [`supervisor::Sandbox::start`] resolves images, starts the vsock backend and the VM engine, and
//! waits for the guest agent; [`supervisor::Sandbox::exec`] runs one command and bridges its
//! stdio; [`supervisor::Sandbox::shutdown`] tears everything down. The binary in `main.rs` adds
//! argument parsing, signals and terminal handling.

pub mod api;
pub mod daemon;
pub mod exit;
pub mod gateway;
pub mod launch;
pub mod protections;
pub mod supervisor;

/// Prints a line on stderr for the user. Unlike `eprintln!` it never panics: a closed stderr
/// (the reader went away) must not turn into a crash in the middle of teardown.
#[macro_export]
macro_rules! note {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}
