//! Connect's envelope for streaming RPCs: each message is one flag byte, a 4-byte big-endian
//! length, then that many bytes of JSON. Flag bit 0x02 marks the end-of-stream frame (`{}` or
//! `{"error": ...}`); bit 0x01 marks a compressed message, which this server never accepts.
//!
//! The client's bytes are hostile: the decoder checks every length against a limit before it
//! allocates anything, and never panics on any input.

/// Flag of a compressed message (refused: the server advertises no compression).
pub const FLAG_COMPRESSED: u8 = 0x01;
/// Flag of the end-of-stream frame.
pub const FLAG_END_STREAM: u8 = 0x02;
/// Length of the prefix before each message.
pub const PREFIX: usize = 5;

/// Why a frame could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The message is longer than the server accepts.
    #[error("a message of {len} bytes is larger than the limit of {limit} bytes")]
    TooLarge {
        /// Length the prefix claims.
        len: u64,
        /// The limit.
        limit: usize,
    },
    /// The body ended inside a frame.
    #[error("the body ended inside a frame ({have} of {need} bytes)")]
    Truncated {
        /// Bytes present.
        have: usize,
        /// Bytes the frame needs.
        need: usize,
    },
    /// Flag bits this server does not understand, or compression it did not offer.
    #[error("unsupported frame flags {0:#04x} (compression is not supported)")]
    Flags(u8),
    /// Bytes after the request's single message.
    #[error("{0} unexpected bytes after the request message")]
    Trailing(usize),
}

/// One decoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame<'a> {
    /// Its flag byte.
    pub flags: u8,
    /// Its message bytes.
    pub data: &'a [u8],
}

impl Frame<'_> {
    /// Whether this is the end-of-stream frame.
    pub fn is_end(&self) -> bool {
        self.flags & FLAG_END_STREAM != 0
    }
}

/// Encodes one frame. Messages longer than `u32::MAX` cannot be framed and are cut to an empty
/// end-of-stream error by the caller's limits long before this (the server's messages are
/// bounded by its output chunk size).
pub fn encode(flags: u8, data: &[u8]) -> Vec<u8> {
    let len = u32::try_from(data.len()).unwrap_or(u32::MAX);
    let data = data.get(..len as usize).unwrap_or(data);
    let mut out = Vec::with_capacity(PREFIX + data.len());
    out.push(flags);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(data);
    out
}

/// Decodes the frame at the start of `buf`: `Ok(None)` when more bytes are needed, else the
/// frame and how many bytes it used. A length above `limit` is refused before anything is
/// allocated or waited for.
pub fn decode(buf: &[u8], limit: usize) -> Result<Option<(Frame<'_>, usize)>, FrameError> {
    let [flags, a, b, c, d, rest @ ..] = buf else {
        return Ok(None);
    };
    if flags & !(FLAG_COMPRESSED | FLAG_END_STREAM) != 0 || flags & FLAG_COMPRESSED != 0 {
        return Err(FrameError::Flags(*flags));
    }
    let len = u32::from_be_bytes([*a, *b, *c, *d]);
    let len = usize::try_from(len).map_err(|_| FrameError::TooLarge {
        len: u64::from(len),
        limit,
    })?;
    if len > limit {
        return Err(FrameError::TooLarge {
            len: len as u64,
            limit,
        });
    }
    match rest.get(..len) {
        Some(data) => Ok(Some((
            Frame {
                flags: *flags,
                data,
            },
            PREFIX + len,
        ))),
        None => Ok(None),
    }
}

/// Decodes a complete request body holding exactly one message frame (a unary or
/// server-streaming request).
pub fn decode_single(body: &[u8], limit: usize) -> Result<&[u8], FrameError> {
    match decode(body, limit)? {
        None => Err(FrameError::Truncated {
            have: body.len(),
            need: need_of(body),
        }),
        Some((frame, used)) => {
            if frame.is_end() {
                return Err(FrameError::Flags(frame.flags));
            }
            match body.len().saturating_sub(used) {
                0 => Ok(frame.data),
                n => Err(FrameError::Trailing(n)),
            }
        }
    }
}

/// How many bytes the frame at the start of `buf` needs in all (the prefix when it is short).
fn need_of(buf: &[u8]) -> usize {
    match buf {
        [_, a, b, c, d, ..] => PREFIX.saturating_add(u32::from_be_bytes([*a, *b, *c, *d]) as usize),
        _ => PREFIX,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trip() {
        let f = encode(0, b"{\"a\":1}");
        assert_eq!(f.get(..PREFIX), Some(&[0u8, 0, 0, 0, 7][..]));
        let (frame, used) = decode(&f, 1024).unwrap().unwrap();
        assert_eq!(used, f.len());
        assert_eq!(frame.data, b"{\"a\":1}");
        assert!(!frame.is_end());
        let end = encode(FLAG_END_STREAM, b"{}");
        let (frame, _) = decode(&end, 1024).unwrap().unwrap();
        assert!(frame.is_end());
        assert_eq!(decode_single(&f, 1024).unwrap(), b"{\"a\":1}");
    }

    #[test]
    fn partial_frames_wait_for_more() {
        let f = encode(0, b"hello");
        for cut in 0..f.len() {
            assert_eq!(decode(f.get(..cut).unwrap(), 1024).unwrap(), None, "{cut}");
        }
        assert_eq!(
            decode_single(f.get(..7).unwrap(), 1024),
            Err(FrameError::Truncated { have: 7, need: 10 })
        );
        assert_eq!(
            decode_single(&[], 1024),
            Err(FrameError::Truncated { have: 0, need: 5 })
        );
    }

    #[test]
    fn oversized_lengths_are_refused_from_the_prefix_alone() {
        // Only the prefix is present: the claim of 4 GiB is refused, nothing is awaited.
        let prefix = [0u8, 0xff, 0xff, 0xff, 0xff];
        assert_eq!(
            decode(&prefix, 1 << 20),
            Err(FrameError::TooLarge {
                len: u64::from(u32::MAX),
                limit: 1 << 20
            })
        );
    }

    #[test]
    fn garbage_is_refused() {
        assert_eq!(
            decode(&[0x80, 0, 0, 0, 0], 10),
            Err(FrameError::Flags(0x80))
        );
        assert_eq!(
            decode(&[FLAG_COMPRESSED, 0, 0, 0, 0], 10),
            Err(FrameError::Flags(1))
        );
        let mut two = encode(0, b"{}");
        two.extend(encode(0, b"{}"));
        assert_eq!(decode_single(&two, 10), Err(FrameError::Trailing(7)));
        assert_eq!(
            decode_single(&encode(FLAG_END_STREAM, b"{}"), 10),
            Err(FrameError::Flags(FLAG_END_STREAM))
        );
    }

    proptest! {
        #[test]
        fn decoder_never_panics_and_stays_in_bounds(buf in proptest::collection::vec(any::<u8>(), 0..64), limit in 0usize..40) {
            match decode(&buf, limit) {
                Ok(Some((frame, used))) => {
                    prop_assert!(used <= buf.len());
                    prop_assert!(frame.data.len() <= limit);
                    prop_assert_eq!(used, PREFIX + frame.data.len());
                }
                Ok(None) => prop_assert!(buf.len() < PREFIX || buf.len() < need_of(&buf)),
                Err(_) => {}
            }
            let _ = decode_single(&buf, limit);
        }

        #[test]
        fn encoded_frames_decode_back(data in proptest::collection::vec(any::<u8>(), 0..300), end in any::<bool>()) {
            let flags = if end { FLAG_END_STREAM } else { 0 };
            let f = encode(flags, &data);
            let (frame, used) = decode(&f, 300).unwrap().unwrap();
            prop_assert_eq!(used, f.len());
            prop_assert_eq!(frame.data, &data[..]);
            prop_assert_eq!(frame.flags, flags);
        }
    }
}
