//! One sandbox from boot to teardown.
//!
//! [`launch::prepare`] turns a request (policy file, text or profile; workspace; image;
//! overrides) into a [`SandboxConfig`] and [`Images`], refusing what the host cannot enforce.
//! [`Sandbox::start`] then boots it in two steps, the same two a warm-pool claim takes apart
//! ([`Sandbox::boot_unbound`], [`Sandbox::claim`]): boot (state dir, disk, vsock backend,
//! unbound filesystem gateways, the engine, the guest agent's `ready`) and bind (egress
//! gateway with the policy, each share bound and mounted, `sandbox.bind` recorded, stats).
//! [`Sandbox::exec`] runs one command and bridges its stdio; [`Sandbox::shutdown`] tears
//! everything down and seals the audit log.
//!
//! Everything a sandbox starts is tied to its [`Sandbox`] value: helper processes die with
//! airlock and are killed on drop, and the state dir is removed on shutdown unless `keep` was
//! asked for. This crate depends downward only: engine (`airlock-vm`), images
//! (`airlock-image`), gateways (`airlock-fs`, `airlock-net`), jails (`airlock-jail`), audit,
//! policy and protocol.

mod audit;
mod bind;
mod config;
mod control;
pub mod credentials;
mod disk;
mod error;
mod exec;
pub mod homes;
pub mod launch;
pub mod protections;
pub mod review;
mod sandbox;
mod state;
mod stats;

pub use audit::{
    AuditConfig, Notifier, REDACTED, Recorder, RecorderError, Redactor, default_audit_dir,
};
pub use config::{Images, Machine, RecorderSlot, SandboxConfig, StartTimings};
pub use control::{Control, Ready};
pub use error::SandboxError;
pub use exec::{ExecIo, ExecOutcome, ExecTimings, Executor};
pub use sandbox::Sandbox;
pub use state::{StateDir, new_sandbox_id, state_root};
pub use stats::{MAX_USAGE_SAMPLES, Stats, UsageLog, UsageSample, usage_path};
