//! The machine side of airlock: choose an accelerator, build and cache the guest kernel and
//! images, run the vsock backend, and boot QEMU microvm.
//!
//! Data flow for one sandbox: [`accel::probe`] picks KVM or TCG; [`image`] resolves (building on
//! first use) the kernel and the `tiny` initramfs under the cache dir; [`vsock::VsockBackend`]
//! starts the vhost-user vsock device; [`qemu::QemuEngine`] boots the VM with both. The supervisor
//! in the `airlock` crate drives these steps and talks to the guest through [`vsock::connect`].

pub mod accel;
pub mod cgroup;
pub mod child;
pub mod engine;
pub mod image;
pub mod jail;
pub mod qemu;
pub mod vsock;

pub use accel::{Accel, AccelChoice};
pub use engine::{BootSpec, Drive, Engine, EngineError, Vm};
