//! airlock egress gateway: the host side of the guest's proxy port. The guest has no network
//! interface; its forwarder on 127.0.0.1:3128 tunnels every TCP connection over vsock, and each
//! one arrives here as a stream on a unix listener. [`Gateway`] serves those streams as an HTTP
//! proxy (CONNECT tunnels and absolute-form plain HTTP), one request per connection:
//! `request` parses the head → the policy decides on the name (before any DNS lookup) →
//! `resolve` looks the name up on the host and `decide_address` classifies every address →
//! `conn` connects to exactly the chosen address, checks the TLS SNI of CONNECT tunnels to
//! port 443 (`sni`), forwards and counts bytes → one [`NetEvent`] per request goes to the
//! [`NetEvents`] sink. Every byte from the guest is hostile: the parsers are pure functions over
//! slices, with limits as named constants, and never panic.
//!
//! The gateway runs in a jailed process of its own, `airlock __gateway egress` ([`process`]);
//! the supervisor starts it with [`client::spawn`] and reads its decisions back as
//! [`NetLine`]s.
#![warn(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::indexing_slicing
)]

pub mod client;
mod config;
mod conn;
mod events;
pub mod process;
pub mod reason;
pub mod request;
pub mod resolve;
pub mod secrets;
mod serve;
pub mod sni;
#[cfg(any(test, feature = "test-utils"))]
pub mod testutil;
pub mod tls;

pub use config::{Counters, GatewayConfig, Termination};
pub use events::{NetDecision, NetEvent, NetEvents, NetLine, NoEvents};
pub use resolve::{
    ResolveError, ResolveFuture, Resolver, ResolverSpec, dns_resolver, system_resolver,
};
pub use serve::Gateway;
