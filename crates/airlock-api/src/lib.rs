//! The airlock daemon: sandboxes that outlive one command, served over a JSON API.
//!
//! [`daemon::Daemon`] owns every sandbox it started and the warm pool ([`daemon::pool`]); it
//! creates sandboxes through `airlock-supervisor`'s launch and lifecycle, the same path
//! `airlock run` takes, so both refuse and record the same things. [`router::router`] maps
//! HTTP/1.1 routes to it ([`server`] holds the handlers); every error is a JSON
//! [`types::ErrorBody`] with the status that fits. [`openapi`] derives the OpenAPI 3.1 document
//! from the handlers' annotations and the wire types ([`types`]); `docs/api/openapi.json` is a
//! copy a test keeps equal. [`client`] is what the CLI speaks to a daemon with, over its unix
//! socket ([`socket::default_socket`]) or TCP with a bearer token.

pub mod client;
pub mod daemon;
pub mod error;
pub mod listen;
pub mod openapi;
pub mod router;
pub mod server;
pub mod socket;
pub mod types;
