//! The airlock host runtime as a library: the per-sandbox supervisor that the CLI (and later the
//! daemon) drives.
//!
//! [`supervisor::Sandbox::start`] resolves images, starts the vsock backend and the VM engine, and
//! waits for the guest agent; [`supervisor::Sandbox::exec`] runs one command and bridges its
//! stdio; [`supervisor::Sandbox::shutdown`] tears everything down. The binary in `main.rs` adds
//! argument parsing, signals and terminal handling.

pub mod exit;
pub mod supervisor;
