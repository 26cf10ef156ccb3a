//! The protocol between the airlock host and `airlock-guest`, the agent inside each microVM.
//!
//! Everything here is pure: message types ([`msg`]) and a length-prefixed framing ([`codec`]) that
//! turns bytes into frames without doing I/O. The host side treats every decoded byte as hostile
//! (DESIGN.md §1): decoding is bounds-checked, frames are capped at [`codec::MAX_FRAME_LEN`], and a
//! malformed frame is an error, never a panic. Transport (vsock streams) lives with the callers.
#![warn(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::indexing_slicing
)]

pub mod codec;
pub mod msg;

pub use codec::{CodecError, Decoder, Frame, Stream, encode};
pub use msg::*;
