//! The VM engine: choose an accelerator, run the vsock backend, and boot QEMU microvm.
//!
//! Data flow for one sandbox: [`accel::probe`] picks KVM or TCG; [`vsock::VsockBackend`]
//! starts the vhost-user vsock device; [`qemu::QemuEngine`] boots the VM with it and the
//! devices the supervisor names in a [`BootSpec`]. Both processes are jailed through
//! `airlock-jail`; images come from `airlock-image`. The supervisor talks to the guest through
//! [`vsock::VsockBackend::connect`].

pub mod accel;
pub mod engine;
pub mod qemu;
pub mod vsock;

pub use accel::{Accel, AccelChoice};
pub use engine::{BootSpec, Drive, Engine, EngineError, Vm};
