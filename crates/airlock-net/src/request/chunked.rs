//! Pure tracker of `Transfer-Encoding: chunked` request-body framing: where the body ends.
//!
//! Called by the plain-HTTP splice (`conn/splice.rs`) with each piece of the body the guest
//! sends, after [`parse`](super::parse) announced [`BodyFraming::Chunked`](super::BodyFraming).
//! The gateway forwards exactly the bytes that belong to the body, so a request pipelined
//! behind it never reaches the upstream unchecked. Nothing here does I/O; it is
//! property-tested on arbitrary bytes and on every way of splitting a valid body.

use super::MAX_HEAD_LEN;

/// Longest chunk-size line (size, extensions), CRLF excluded.
pub const MAX_CHUNK_LINE_LEN: usize = 1024;
/// Most hex digits in a chunk size (leading zeros included).
pub const MAX_CHUNK_SIZE_DIGITS: usize = 16;
/// Most bytes of trailer fields after the last chunk.
pub const MAX_TRAILER_LEN: usize = MAX_HEAD_LEN;

/// Why chunked framing was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ChunkedError {
    /// The chunk size is empty, not hex, or too long.
    #[error("invalid chunk size")]
    Size,
    /// A chunk-size line is longer than [`MAX_CHUNK_LINE_LEN`].
    #[error("chunk-size line too long")]
    LineTooLong,
    /// A control character in a chunk extension.
    #[error("invalid chunk extension")]
    Extension,
    /// A line not ended by CRLF, or chunk data not followed by CRLF.
    #[error("missing CRLF in chunked body")]
    Crlf,
    /// Trailer fields longer than [`MAX_TRAILER_LEN`].
    #[error("trailer too long")]
    TrailerTooLong,
    /// A control character in a trailer line.
    #[error("invalid trailer field")]
    Trailer,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    /// Reading the hex size; `digits` so far.
    Size { size: u64, digits: usize },
    /// In extensions after `;`.
    Extension { size: u64 },
    /// Saw CR after the size line; expecting LF.
    SizeLf { size: u64 },
    /// Inside chunk data.
    Data { left: u64 },
    /// After chunk data; expecting CR.
    DataCr,
    /// After chunk data and CR; expecting LF.
    DataLf,
    /// At the start of a trailer line (or the final empty line).
    TrailerStart,
    /// Inside a trailer line.
    TrailerLine,
    /// Saw CR in the trailer section; expecting LF. `last` is true on the final empty line.
    TrailerLf { last: bool },
    /// The body is over.
    Done,
}

/// Tracks where a `Transfer-Encoding: chunked` body ends, so the gateway forwards exactly the
/// body and nothing after it (a pipelined request is never forwarded unchecked). The bytes are
/// passed through unchanged; only their framing is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkedBody {
    state: ChunkState,
    line_len: usize,
    trailer_len: usize,
}

impl Default for ChunkedBody {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkedBody {
    /// At the start of a body.
    pub fn new() -> Self {
        Self {
            state: ChunkState::Size { size: 0, digits: 0 },
            line_len: 0,
            trailer_len: 0,
        }
    }

    /// True once the last chunk and the trailer section have been seen.
    pub fn is_done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// Feeds the next bytes of the body; returns how many of them belong to the body (all of
    /// them unless the body ends inside `data`).
    pub fn feed(&mut self, data: &[u8]) -> Result<usize, ChunkedError> {
        let mut i = 0;
        while i < data.len() && !self.is_done() {
            if let ChunkState::Data { left } = self.state {
                let avail = data.len() - i;
                let take = usize::try_from(left).map_or(avail, |l| l.min(avail));
                i += take;
                let left = left - take as u64;
                self.state = if left == 0 {
                    ChunkState::DataCr
                } else {
                    ChunkState::Data { left }
                };
                continue;
            }
            let Some(&b) = data.get(i) else { break };
            self.step(b)?;
            i += 1;
        }
        Ok(i)
    }

    fn step(&mut self, b: u8) -> Result<(), ChunkedError> {
        use ChunkState as S;
        self.state = match self.state {
            S::Size { size, digits } => {
                self.count_line()?;
                match b {
                    b'\r' if digits > 0 => S::SizeLf { size },
                    b';' if digits > 0 => S::Extension { size },
                    _ => {
                        let d = hex_value(b).ok_or(ChunkedError::Size)?;
                        if digits == MAX_CHUNK_SIZE_DIGITS {
                            return Err(ChunkedError::Size);
                        }
                        let size = size
                            .checked_mul(16)
                            .and_then(|s| s.checked_add(u64::from(d)))
                            .ok_or(ChunkedError::Size)?;
                        S::Size {
                            size,
                            digits: digits + 1,
                        }
                    }
                }
            }
            S::Extension { size } => {
                self.count_line()?;
                match b {
                    b'\r' => S::SizeLf { size },
                    b'\t' => S::Extension { size },
                    0..0x20 | 0x7f => return Err(ChunkedError::Extension),
                    _ => S::Extension { size },
                }
            }
            S::SizeLf { size } => {
                if b != b'\n' {
                    return Err(ChunkedError::Crlf);
                }
                self.line_len = 0;
                if size == 0 {
                    S::TrailerStart
                } else {
                    S::Data { left: size }
                }
            }
            S::Data { .. } => return Err(ChunkedError::Crlf),
            S::DataCr => {
                if b != b'\r' {
                    return Err(ChunkedError::Crlf);
                }
                S::DataLf
            }
            S::DataLf => {
                if b != b'\n' {
                    return Err(ChunkedError::Crlf);
                }
                S::Size { size: 0, digits: 0 }
            }
            S::TrailerStart | S::TrailerLine => {
                self.trailer_len += 1;
                if self.trailer_len > MAX_TRAILER_LEN {
                    return Err(ChunkedError::TrailerTooLong);
                }
                let last = self.state == S::TrailerStart;
                match b {
                    b'\r' => S::TrailerLf { last },
                    b'\t' => S::TrailerLine,
                    0..0x20 | 0x7f => return Err(ChunkedError::Trailer),
                    _ => S::TrailerLine,
                }
            }
            S::TrailerLf { last } => {
                if b != b'\n' {
                    return Err(ChunkedError::Crlf);
                }
                if last { S::Done } else { S::TrailerStart }
            }
            S::Done => S::Done,
        };
        Ok(())
    }

    fn count_line(&mut self) -> Result<(), ChunkedError> {
        self.line_len += 1;
        if self.line_len > MAX_CHUNK_LINE_LEN {
            return Err(ChunkedError::LineTooLong);
        }
        Ok(())
    }
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::indexing_slicing)]

    use super::*;
    use proptest::prelude::*;

    #[test]
    fn chunked_body_ends_where_the_framing_says() {
        let body = b"4;ext=1\r\nWiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nX-Trailer: t\r\n\r\nGET http://next/";
        let end = body.len() - b"GET http://next/".len();
        let mut c = ChunkedBody::new();
        assert_eq!(c.feed(body), Ok(end));
        assert!(c.is_done());
        // Byte by byte gives the same answer.
        let mut c = ChunkedBody::new();
        let mut used = 0;
        for b in body.iter() {
            used += c.feed(std::slice::from_ref(b)).unwrap();
            if c.is_done() {
                break;
            }
        }
        assert_eq!(used, end);
        assert!(c.is_done());
    }

    #[test]
    fn chunked_rejections() {
        let cases: &[(&[u8], ChunkedError)] = &[
            (b"\r\n", ChunkedError::Size),
            (b"g\r\n", ChunkedError::Size),
            (b" 1\r\n", ChunkedError::Size),
            (b"11111111111111111\r\n", ChunkedError::Size),
            (b"1\n", ChunkedError::Size),
            (b"1\rx", ChunkedError::Crlf),
            (b"1\r\nab", ChunkedError::Crlf),
            (b"1\r\na\r\r", ChunkedError::Crlf),
            (b"1;a\0\r\n", ChunkedError::Extension),
            (b"0\r\nX: \x01\r\n", ChunkedError::Trailer),
            (b"0\r\n\n", ChunkedError::Trailer),
        ];
        for (buf, want) in cases {
            assert_eq!(
                ChunkedBody::new().feed(buf),
                Err(*want),
                "{:?}",
                String::from_utf8_lossy(buf)
            );
        }
        let mut ext = b"1;".to_vec();
        ext.extend(std::iter::repeat_n(b'e', MAX_CHUNK_LINE_LEN));
        assert_eq!(
            ChunkedBody::new().feed(&ext),
            Err(ChunkedError::LineTooLong)
        );
        let mut trailer = b"0\r\nX: ".to_vec();
        trailer.extend(std::iter::repeat_n(b't', MAX_TRAILER_LEN));
        assert_eq!(
            ChunkedBody::new().feed(&trailer),
            Err(ChunkedError::TrailerTooLong)
        );
        // Sizes up to 16 hex digits are accepted, however large.
        let mut c = ChunkedBody::new();
        assert_eq!(c.feed(b"ffffffffffffffff\r\nabc"), Ok(21));
        assert!(!c.is_done());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn chunked_arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let mut c = ChunkedBody::new();
            if let Ok(n) = c.feed(&bytes) {
                prop_assert!(n <= bytes.len());
                prop_assert!(n == bytes.len() || c.is_done());
            }
        }

        #[test]
        fn chunked_split_feeding_agrees(
            chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..50), 0..6),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..6),
        ) {
            let mut body = Vec::new();
            for c in &chunks {
                body.extend(format!("{:x}\r\n", c.len()).as_bytes());
                body.extend(c);
                body.extend(b"\r\n");
            }
            body.extend(b"0\r\n\r\n");
            let total = body.len();
            body.extend(b"trailing");
            let mut points: Vec<usize> = cuts.iter().map(|i| i.index(body.len())).collect();
            points.sort_unstable();
            let mut c = ChunkedBody::new();
            let mut used = 0;
            let mut at = 0;
            for p in points.into_iter().chain([body.len()]) {
                if p < at || c.is_done() { continue; }
                used += c.feed(&body[at..p]).unwrap();
                at = p;
            }
            prop_assert!(c.is_done());
            prop_assert_eq!(used, total);
        }
    }
}
