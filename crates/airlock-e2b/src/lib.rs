//! An E2B-compatible API over the airlock daemon, so the official `e2b` SDK drives airlock
//! sandboxes (`airlock daemon --e2b ADDR --token-file FILE`; see docs/e2b.md).
//!
//! [`router::router`] serves E2B's control plane ([`api`]: create, kill) and the parts of envd
//! the SDK's commands and files use ([`process`]: the Connect `Start` stream, framed by
//! [`frame`]; [`signal`]: `SendSignal`, for killing a command; [`files`]: `/files`, with
//! [`multipart`] uploads). Every operation is one call of
//! the daemon's own create, exec, file and delete code, so the policy and the audit log treat
//! E2B requests exactly as REST ones. [`state`] holds the API key's digest and each sandbox's
//! access token; [`error`] renders failures in E2B's shape.
#![warn(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::indexing_slicing
)]

pub mod api;
pub mod error;
pub mod files;
pub mod frame;
pub mod multipart;
pub mod process;
pub mod router;
pub mod signal;
pub mod state;

pub use router::{router, serve};
pub use state::{E2b, E2bConfig};
