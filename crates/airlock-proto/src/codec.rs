//! Framing: turns messages and stream data into bytes and back, without I/O.
//!
//! A frame is `len: u32 (big endian) | tag: u8 | payload: len-1 bytes`. Tag 0 carries one JSON
//! message; tags 1–3 carry stdin/stdout/stderr bytes; tags 0x81–0x83 mark the end of that stream
//! (empty payload). [`decode`] is a pure function over a byte slice so it can be fuzzed; [`Decoder`]
//! only buffers for callers that read from a socket.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Largest accepted frame (tag plus payload). Larger length prefixes are rejected before any
/// allocation, so a hostile peer cannot make us reserve memory it never sends.
pub const MAX_FRAME_LEN: usize = 1 << 20;
/// Size senders should use for stream data chunks; keeps latency low and frames small.
pub const DATA_CHUNK: usize = 64 * 1024;
/// Bytes before the payload: the length prefix and the tag.
pub const HEADER_LEN: usize = 5;

const TAG_MESSAGE: u8 = 0x00;
const TAG_EOF: u8 = 0x80;

/// One of the command's standard streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream {
    /// Standard input (host → guest).
    Stdin,
    /// Standard output (guest → host); in PTY mode, all terminal output.
    Stdout,
    /// Standard error (guest → host).
    Stderr,
}

impl Stream {
    fn tag(self) -> u8 {
        match self {
            Stream::Stdin => 1,
            Stream::Stdout => 2,
            Stream::Stderr => 3,
        }
    }

    fn from_tag(tag: u8) -> Option<Stream> {
        match tag {
            1 => Some(Stream::Stdin),
            2 => Some(Stream::Stdout),
            3 => Some(Stream::Stderr),
            _ => None,
        }
    }
}

/// A decoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame<M> {
    /// A protocol message.
    Message(M),
    /// Bytes of a stream; never empty.
    Data(Stream, Vec<u8>),
    /// The stream ended.
    Eof(Stream),
}

/// Why bytes could not be framed or unframed.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The length prefix is zero or above [`MAX_FRAME_LEN`].
    #[error("frame length {len} outside 1..={max}", max = MAX_FRAME_LEN)]
    BadLength {
        /// The length the peer announced.
        len: usize,
    },
    /// The tag byte is not one this protocol defines.
    #[error("unknown frame tag {tag:#04x}")]
    UnknownTag {
        /// The tag.
        tag: u8,
    },
    /// An end-of-stream frame carried payload bytes.
    #[error("end-of-stream frame with {len} payload bytes")]
    EofWithPayload {
        /// Payload length.
        len: usize,
    },
    /// A data frame with no bytes (end of stream has its own tag).
    #[error("empty data frame")]
    EmptyData,
    /// The message payload is not valid JSON for the expected type.
    #[error("malformed message")]
    Json(#[source] serde_json::Error),
    /// The peer closed the connection in the middle of a frame.
    #[error("connection closed inside a frame ({buffered} bytes buffered)")]
    Truncated {
        /// Bytes left over.
        buffered: usize,
    },
}

/// Appends the encoding of `frame` to `out`.
pub fn encode<M: Serialize>(frame: &Frame<M>, out: &mut Vec<u8>) -> Result<(), CodecError> {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    match frame {
        Frame::Message(m) => {
            out.push(TAG_MESSAGE);
            serde_json::to_writer(&mut *out, m).map_err(CodecError::Json)?;
        }
        Frame::Data(stream, bytes) => {
            if bytes.is_empty() {
                out.truncate(start);
                return Err(CodecError::EmptyData);
            }
            out.push(stream.tag());
            out.extend_from_slice(bytes);
        }
        Frame::Eof(stream) => out.push(TAG_EOF | stream.tag()),
    }
    let len = out.len() - start - 4;
    let prefix = match u32::try_from(len) {
        Ok(l) if len <= MAX_FRAME_LEN => l,
        _ => {
            out.truncate(start);
            return Err(CodecError::BadLength { len });
        }
    };
    out.splice(start..start + 4, prefix.to_be_bytes());
    Ok(())
}

/// Decodes the first frame in `buf`.
///
/// Returns `Ok(None)` when `buf` holds only part of a frame, or `Ok(Some((frame, used)))` where
/// `used` is the number of bytes the frame took.
pub fn decode<M: DeserializeOwned>(buf: &[u8]) -> Result<Option<(Frame<M>, usize)>, CodecError> {
    let Some(prefix) = buf.get(..4) else {
        return Ok(None);
    };
    let mut len_bytes = [0u8; 4];
    len_bytes.copy_from_slice(prefix);
    let len = usize::try_from(u32::from_be_bytes(len_bytes)).unwrap_or(usize::MAX);
    if len == 0 || len > MAX_FRAME_LEN {
        return Err(CodecError::BadLength { len });
    }
    let Some(body) = buf.get(4..4 + len) else {
        return Ok(None);
    };
    let Some((&tag, payload)) = body.split_first() else {
        return Err(CodecError::BadLength { len });
    };
    let frame = if tag == TAG_MESSAGE {
        Frame::Message(serde_json::from_slice(payload).map_err(CodecError::Json)?)
    } else if let Some(stream) = Stream::from_tag(tag) {
        if payload.is_empty() {
            return Err(CodecError::EmptyData);
        }
        Frame::Data(stream, payload.to_vec())
    } else if let Some(stream) = Stream::from_tag(tag & !TAG_EOF).filter(|_| tag & TAG_EOF != 0) {
        if !payload.is_empty() {
            return Err(CodecError::EofWithPayload { len: payload.len() });
        }
        Frame::Eof(stream)
    } else {
        return Err(CodecError::UnknownTag { tag });
    };
    Ok(Some((frame, 4 + len)))
}

/// Buffers bytes read from a connection and yields whole frames.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
    start: usize,
}

impl Decoder {
    /// An empty decoder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds bytes read from the peer.
    pub fn extend(&mut self, bytes: &[u8]) {
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete frame, if one is buffered.
    pub fn next_frame<M: DeserializeOwned>(&mut self) -> Result<Option<Frame<M>>, CodecError> {
        let rest = self.buf.get(self.start..).unwrap_or_default();
        match decode(rest)? {
            Some((frame, used)) => {
                self.start += used;
                if self.start > DATA_CHUNK && self.start * 2 > self.buf.len() {
                    self.buf.drain(..self.start);
                    self.start = 0;
                }
                Ok(Some(frame))
            }
            None => Ok(None),
        }
    }

    /// Call when the peer closed the connection: an error if a partial frame is left.
    pub fn finish(&self) -> Result<(), CodecError> {
        match self.buf.len() - self.start {
            0 => Ok(()),
            buffered => Err(CodecError::Truncated { buffered }),
        }
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::cast_possible_truncation)]
mod tests {
    use super::*;
    use crate::msg::{ExecControl, ExecRequest, WindowSize};
    use proptest::prelude::*;

    fn roundtrip(frame: Frame<ExecControl>) {
        let mut out = Vec::new();
        encode(&frame, &mut out).unwrap();
        let (back, used) = decode::<ExecControl>(&out).unwrap().unwrap();
        assert_eq!(back, frame);
        assert_eq!(used, out.len());
    }

    #[test]
    fn roundtrips() {
        roundtrip(Frame::Message(ExecControl::Signal { signal: 15 }));
        roundtrip(Frame::Data(Stream::Stdin, b"hello".to_vec()));
        roundtrip(Frame::Eof(Stream::Stderr));
    }

    #[test]
    fn every_prefix_is_incomplete() {
        let mut out = Vec::new();
        let req = ExecRequest {
            argv: vec!["sh".into()],
            env: vec![],
            cwd: None,
            tty: Some(WindowSize { rows: 24, cols: 80 }),
            user: Some("agent".into()),
            no_new_privs: true,
            seccomp: crate::msg::SeccompProfile::Default,
            pids_max: Some(1024),
            landlock_write: None,
            root: None,
        };
        encode(&Frame::Message(req), &mut out).unwrap();
        for n in 0..out.len() {
            assert!(
                decode::<ExecRequest>(&out[..n]).unwrap().is_none(),
                "prefix {n}"
            );
        }
    }

    #[test]
    fn rejects_bad_frames() {
        let huge = (MAX_FRAME_LEN as u32 + 1).to_be_bytes();
        assert!(matches!(
            decode::<ExecControl>(&huge),
            Err(CodecError::BadLength { len }) if len == MAX_FRAME_LEN + 1
        ));
        assert!(matches!(
            decode::<ExecControl>(&[0, 0, 0, 0]),
            Err(CodecError::BadLength { len: 0 })
        ));
        assert!(matches!(
            decode::<ExecControl>(&[0, 0, 0, 1, 0x42]),
            Err(CodecError::UnknownTag { tag: 0x42 })
        ));
        assert!(matches!(
            decode::<ExecControl>(&[0, 0, 0, 1, 0x80]),
            Err(CodecError::UnknownTag { tag: 0x80 })
        ));
        assert!(matches!(
            decode::<ExecControl>(&[0, 0, 0, 2, 0x81, 1]),
            Err(CodecError::EofWithPayload { len: 1 })
        ));
        assert!(matches!(
            decode::<ExecControl>(&[0, 0, 0, 1, 2]),
            Err(CodecError::EmptyData)
        ));
        assert!(matches!(
            decode::<ExecControl>(&[0, 0, 0, 3, 0, b'{', b'}']),
            Err(CodecError::Json(_))
        ));
        let mut out = Vec::new();
        assert!(matches!(
            encode::<ExecControl>(&Frame::Data(Stream::Stdout, vec![]), &mut out),
            Err(CodecError::EmptyData)
        ));
        assert!(out.is_empty());
    }

    #[test]
    fn decoder_reassembles_split_input_and_reports_truncation() {
        let mut bytes = Vec::new();
        for i in 0..100u8 {
            encode::<ExecControl>(&Frame::Data(Stream::Stdout, vec![i; 1000]), &mut bytes).unwrap();
        }
        let mut dec = Decoder::new();
        let mut got = Vec::new();
        for chunk in bytes.chunks(777) {
            dec.extend(chunk);
            while let Some(f) = dec.next_frame::<ExecControl>().unwrap() {
                got.push(f);
            }
        }
        dec.finish().unwrap();
        assert_eq!(got.len(), 100);
        assert_eq!(got[99], Frame::Data(Stream::Stdout, vec![99; 1000]));
        dec.extend(&[0, 0]);
        assert!(matches!(
            dec.finish(),
            Err(CodecError::Truncated { buffered: 2 })
        ));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let mut dec = Decoder::new();
            dec.extend(&bytes);
            while let Ok(Some(_)) = dec.next_frame::<ExecControl>() {}
        }

        #[test]
        fn data_roundtrips(data in proptest::collection::vec(any::<u8>(), 1..4096)) {
            let mut out = Vec::new();
            encode::<ExecControl>(&Frame::Data(Stream::Stdin, data.clone()), &mut out).unwrap();
            let (f, _) = decode::<ExecControl>(&out).unwrap().unwrap();
            prop_assert_eq!(f, Frame::Data(Stream::Stdin, data));
        }
    }
}
