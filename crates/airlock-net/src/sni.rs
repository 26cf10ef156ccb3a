//! Pure parser of a TLS ClientHello, for its server name (SNI).
//!
//! Called by `conn/tunnel.rs` on the first bytes the guest sends into a CONNECT tunnel to a
//! TLS port, after the gateway answered `200`: the name must match the CONNECT host, or the
//! tunnel is closed (domain fronting: an allowed name in CONNECT, another site behind the same
//! front in the TLS handshake). [`parse`] returns [`Sni::Complete`] with the name, [`Sni::Incomplete`]
//! while the hello is still arriving (every truncated input), or [`Sni::Rejected`].
//!
//! A ClientHello may be split across several TLS records (RFC 8446 §5.1); up to
//! [`MAX_RECORDS`] records are reassembled, and the hello may be at most [`MAX_HELLO_LEN`]
//! bytes. Anything that is not a handshake record carrying a ClientHello is rejected as soon as
//! its first bytes show it, so plain text sent to port 443 fails fast. The parser checks the
//! structure of the whole hello (lengths of every vector, no trailing bytes, no repeated
//! extension), not its cryptographic content.

use std::fmt;

/// Most TLS records a ClientHello may be spread over.
pub const MAX_RECORDS: usize = 4;
/// Longest ClientHello message accepted (its body, without the 4-byte handshake header).
/// Post-quantum key shares make hellos of about 2 KiB; this leaves room for large extension
/// sets.
pub const MAX_HELLO_LEN: usize = 16 * 1024;
/// Longest plaintext TLS record (RFC 8446 §5.1).
pub const MAX_RECORD_LEN: usize = 1 << 14;
/// Most input [`parse`] ever needs: a caller that has buffered this much always gets
/// `Complete` or `Rejected`.
pub const MAX_INPUT_LEN: usize = MAX_RECORDS * (5 + MAX_RECORD_LEN);

const CONTENT_HANDSHAKE: u8 = 22;
const HANDSHAKE_CLIENT_HELLO: u8 = 1;
const EXT_SERVER_NAME: u16 = 0;
const NAME_TYPE_HOST: u8 = 0;

/// The outcome of [`parse`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sni {
    /// A whole, well-formed ClientHello with this server name (as sent: not canonicalised).
    Complete(String),
    /// Valid so far; more bytes are needed.
    Incomplete,
    /// Not a well-formed ClientHello, or one without a server name.
    Rejected(SniError),
}

/// Why a ClientHello was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SniError {
    /// The first record is not a TLS handshake record.
    #[error("not a TLS handshake record")]
    NotHandshake,
    /// The record version is not 3.x.
    #[error("unsupported TLS record version")]
    RecordVersion,
    /// A record is empty or longer than [`MAX_RECORD_LEN`].
    #[error("invalid TLS record length")]
    RecordLength,
    /// The handshake message is not a ClientHello.
    #[error("handshake message is not a ClientHello")]
    NotClientHello,
    /// The ClientHello is longer than [`MAX_HELLO_LEN`].
    #[error("ClientHello longer than {MAX_HELLO_LEN} bytes")]
    TooLarge,
    /// The ClientHello spans more than [`MAX_RECORDS`] records.
    #[error("ClientHello spread over more than {MAX_RECORDS} records")]
    TooManyRecords,
    /// A length field disagrees with the data, or bytes follow the ClientHello.
    #[error("malformed ClientHello")]
    Malformed,
    /// An extension appears twice.
    #[error("duplicate extension in ClientHello")]
    DuplicateExtension,
    /// The server name is empty, too long or not printable ASCII, or two host names are given.
    #[error("invalid server name")]
    BadServerName,
    /// The ClientHello carries no host name.
    #[error("no server name in ClientHello")]
    NoServerName,
}

/// Parses the ClientHello at the start of `buf`.
pub fn parse(buf: &[u8]) -> Sni {
    match parse_inner(buf) {
        Ok(Some(name)) => Sni::Complete(name),
        Ok(None) => Sni::Incomplete,
        Err(e) => Sni::Rejected(e),
    }
}

fn parse_inner(buf: &[u8]) -> Result<Option<String>, SniError> {
    let mut handshake = Vec::new();
    let mut pos = 0;
    let mut records = 0;
    loop {
        if let Some(&[msg_type, a, b, c]) = handshake.get(..4) {
            if msg_type != HANDSHAKE_CLIENT_HELLO {
                return Err(SniError::NotClientHello);
            }
            let len = usize::from(a) << 16 | usize::from(b) << 8 | usize::from(c);
            if len > MAX_HELLO_LEN {
                return Err(SniError::TooLarge);
            }
            if let Some(body) = handshake.get(4..4 + len) {
                if handshake.len() > 4 + len {
                    return Err(SniError::Malformed);
                }
                return parse_hello(body).map(Some);
            }
        } else if let Some(&msg_type) = handshake.first()
            && msg_type != HANDSHAKE_CLIENT_HELLO
        {
            return Err(SniError::NotClientHello);
        }
        if records == MAX_RECORDS {
            return Err(SniError::TooManyRecords);
        }
        let rest = buf.get(pos..).unwrap_or_default();
        // Reject as early as the bytes allow.
        match rest {
            [] => return Ok(None),
            [t, ..] if *t != CONTENT_HANDSHAKE => return Err(SniError::NotHandshake),
            [_, major, ..] if *major != 3 => return Err(SniError::RecordVersion),
            _ => {}
        }
        let Some(&[_, _, _, hi, lo]) = rest.get(..5) else {
            return Ok(None);
        };
        let len = usize::from(u16::from_be_bytes([hi, lo]));
        if len == 0 || len > MAX_RECORD_LEN {
            return Err(SniError::RecordLength);
        }
        let Some(fragment) = rest.get(5..5 + len) else {
            return Ok(None);
        };
        handshake.extend_from_slice(fragment);
        pos += 5 + len;
        records += 1;
    }
}

/// A bounds-checked cursor over a byte slice; every shortfall is [`SniError::Malformed`],
/// because it only reads a message already known to be complete.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], SniError> {
        if n > self.0.len() {
            return Err(SniError::Malformed);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, SniError> {
        self.take(1)?.first().copied().ok_or(SniError::Malformed)
    }

    fn u16(&mut self) -> Result<u16, SniError> {
        let b = self.take(2)?;
        match b {
            [hi, lo] => Ok(u16::from_be_bytes([*hi, *lo])),
            _ => Err(SniError::Malformed),
        }
    }

    fn vec8(&mut self) -> Result<&'a [u8], SniError> {
        let n = self.u8()?;
        self.take(usize::from(n))
    }

    fn vec16(&mut self) -> Result<&'a [u8], SniError> {
        let n = self.u16()?;
        self.take(usize::from(n))
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Reader<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Reader({} bytes left)", self.0.len())
    }
}

/// Parses a ClientHello body (RFC 8446 §4.1.2; TLS 1.0–1.2 hellos have the same layout).
fn parse_hello(body: &[u8]) -> Result<String, SniError> {
    let mut r = Reader(body);
    let [major, _] = r.u16()?.to_be_bytes();
    if major != 3 {
        return Err(SniError::Malformed);
    }
    r.take(32)?; // random
    let session_id = r.vec8()?;
    if session_id.len() > 32 {
        return Err(SniError::Malformed);
    }
    let suites = r.vec16()?;
    if suites.is_empty() || suites.len() % 2 != 0 {
        return Err(SniError::Malformed);
    }
    if r.vec8()?.is_empty() {
        return Err(SniError::Malformed); // compression methods
    }
    if r.is_empty() {
        return Err(SniError::NoServerName); // a TLS 1.2 hello may have no extensions at all
    }
    let mut exts = Reader(r.vec16()?);
    if !r.is_empty() {
        return Err(SniError::Malformed);
    }
    let mut seen = vec![0u64; 1024]; // one bit per extension type
    let mut name = None;
    while !exts.is_empty() {
        let ext_type = exts.u16()?;
        let data = exts.vec16()?;
        let (word, bit) = (usize::from(ext_type / 64), ext_type % 64);
        let slot = seen.get_mut(word).ok_or(SniError::Malformed)?;
        if *slot & (1 << bit) != 0 {
            return Err(SniError::DuplicateExtension);
        }
        *slot |= 1 << bit;
        if ext_type == EXT_SERVER_NAME {
            name = Some(parse_server_name(data)?);
        }
    }
    name.ok_or(SniError::NoServerName)
}

/// Parses the `server_name` extension (RFC 6066 §3): a list of (type, name); exactly one
/// `host_name` is expected, other name types are skipped.
fn parse_server_name(data: &[u8]) -> Result<String, SniError> {
    let mut outer = Reader(data);
    let mut list = Reader(outer.vec16()?);
    if !outer.is_empty() {
        return Err(SniError::Malformed);
    }
    let mut host = None;
    while !list.is_empty() {
        let name_type = list.u8()?;
        let name = list.vec16()?;
        if name_type != NAME_TYPE_HOST {
            continue;
        }
        if host.is_some()
            || name.is_empty()
            || name.len() > 255
            || !name.iter().all(|&b| (0x21..=0x7e).contains(&b))
        {
            return Err(SniError::BadServerName);
        }
        host = Some(String::from_utf8_lossy(name).into_owned());
    }
    host.ok_or(SniError::NoServerName)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::indexing_slicing, clippy::cast_possible_truncation)]

    use super::*;
    use crate::testutil::{client_hello, split_records};
    use proptest::prelude::*;

    fn testdata(name: &str) -> Vec<u8> {
        let path = format!("{}/testdata/sni/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    /// Captured hellos and the name each carries.
    const CAPTURED: &[(&str, &str)] = &[
        ("openssl-tls13.bin", "example.com"),
        ("openssl-tls12.bin", "pypi.org"),
        ("curl-tls.bin", "registry.npmjs.org"),
    ];

    #[test]
    fn captured_hellos() {
        for (file, name) in CAPTURED {
            assert_eq!(
                parse(&testdata(file)),
                Sni::Complete((*name).into()),
                "{file}"
            );
        }
    }

    #[test]
    fn every_prefix_is_incomplete() {
        let mut inputs: Vec<Vec<u8>> = CAPTURED.iter().map(|(f, _)| testdata(f)).collect();
        inputs.push(client_hello(Some("a.example")));
        inputs.push(split_records(&testdata("curl-tls.bin"), MAX_RECORDS));
        for input in inputs {
            assert!(matches!(parse(&input), Sni::Complete(_)));
            for n in 0..input.len() {
                assert_eq!(parse(&input[..n]), Sni::Incomplete, "prefix {n}");
            }
        }
    }

    #[test]
    fn fragmented_hellos() {
        let hello = testdata("curl-tls.bin");
        for parts in 1..=MAX_RECORDS {
            assert_eq!(
                parse(&split_records(&hello, parts)),
                Sni::Complete("registry.npmjs.org".into()),
                "{parts} records"
            );
        }
        assert_eq!(
            parse(&split_records(&hello, MAX_RECORDS + 1)),
            Sni::Rejected(SniError::TooManyRecords)
        );
    }

    #[test]
    fn built_hellos() {
        assert_eq!(
            parse(&client_hello(Some("api.anthropic.com"))),
            Sni::Complete("api.anthropic.com".into())
        );
        assert_eq!(
            parse(&client_hello(None)),
            Sni::Rejected(SniError::NoServerName)
        );
    }

    /// Rebuilds a one-record hello from a handshake body, fixing every outer length.
    fn wrap(body: &[u8]) -> Vec<u8> {
        let len = body.len();
        let mut hs = vec![
            HANDSHAKE_CLIENT_HELLO,
            (len >> 16) as u8,
            (len >> 8) as u8,
            len as u8,
        ];
        hs.extend(body);
        let mut rec = vec![
            CONTENT_HANDSHAKE,
            3,
            1,
            (hs.len() >> 8) as u8,
            hs.len() as u8,
        ];
        rec.extend(hs);
        rec
    }

    /// A hello body with the given extensions block (type, data) pairs.
    fn body_with(exts: &[(u16, Vec<u8>)]) -> Vec<u8> {
        let mut b = vec![3, 3];
        b.extend([7u8; 32]);
        b.push(0);
        b.extend([0, 2, 0x13, 0x01, 1, 0]);
        let mut e = Vec::new();
        for (t, d) in exts {
            e.extend(t.to_be_bytes());
            e.extend((d.len() as u16).to_be_bytes());
            e.extend(d);
        }
        b.extend((e.len() as u16).to_be_bytes());
        b.extend(e);
        b
    }

    fn sni_ext(names: &[(u8, &[u8])]) -> Vec<u8> {
        let mut list = Vec::new();
        for (t, n) in names {
            list.push(*t);
            list.extend((n.len() as u16).to_be_bytes());
            list.extend(*n);
        }
        let mut d = (list.len() as u16).to_be_bytes().to_vec();
        d.extend(list);
        d
    }

    #[test]
    fn rejections() {
        let ok = wrap(&body_with(&[(0, sni_ext(&[(0, b"a.example")]))]));
        assert_eq!(parse(&ok), Sni::Complete("a.example".into()));
        let cases: Vec<(Vec<u8>, SniError)> = vec![
            (b"GET / HTTP/1.1\r\n".to_vec(), SniError::NotHandshake),
            (vec![0x17, 3, 3, 0, 1, 0], SniError::NotHandshake),
            (vec![22, 2, 0], SniError::RecordVersion),
            (vec![22, 3, 1, 0, 0], SniError::RecordLength),
            (vec![22, 3, 1, 0x40, 0x01], SniError::RecordLength),
            (vec![22, 3, 1, 0, 1, 2], SniError::NotClientHello),
            (vec![22, 3, 1, 0, 4, 1, 0x01, 0, 0], SniError::TooLarge),
            // SSLv2-compatible hello.
            (vec![0x80, 0x2e, 1, 3, 1], SniError::NotHandshake),
            (wrap(&body_with(&[])), SniError::NoServerName),
            (
                wrap(&body_with(&[(0x10, vec![0, 0])])),
                SniError::NoServerName,
            ),
            (
                wrap(&body_with(&[(0, sni_ext(&[(1, b"other")]))])),
                SniError::NoServerName,
            ),
            (
                wrap(&body_with(&[(
                    0,
                    sni_ext(&[(0, b"a.example"), (0, b"b.example")]),
                )])),
                SniError::BadServerName,
            ),
            (
                wrap(&body_with(&[(0, sni_ext(&[(0, b"")]))])),
                SniError::BadServerName,
            ),
            (
                wrap(&body_with(&[(0, sni_ext(&[(0, b"a\0.example")]))])),
                SniError::BadServerName,
            ),
            (
                wrap(&body_with(&[
                    (0, sni_ext(&[(0, b"a.example")])),
                    (0, sni_ext(&[(0, b"b.example")])),
                ])),
                SniError::DuplicateExtension,
            ),
            (
                wrap(&body_with(&[(0x2b, vec![]), (0x2b, vec![])])),
                SniError::DuplicateExtension,
            ),
            (
                wrap(&body_with(&[(0, vec![0, 20, 0, 0, 1, b'a'])])),
                SniError::Malformed,
            ),
        ];
        for (input, want) in cases {
            assert_eq!(parse(&input), Sni::Rejected(want), "{input:?}");
        }
        // Trailing bytes after the extensions, and a hello followed by more handshake data.
        let mut body = body_with(&[(0, sni_ext(&[(0, b"a.example")]))]);
        body.push(0);
        assert_eq!(parse(&wrap(&body)), Sni::Rejected(SniError::Malformed));
        let mut rec = ok.clone();
        rec[4] += 1;
        rec.push(0);
        assert_eq!(parse(&rec), Sni::Rejected(SniError::Malformed));
        // A body shorter than its fixed fields.
        assert_eq!(parse(&wrap(&[3, 3, 1])), Sni::Rejected(SniError::Malformed));
    }

    #[test]
    fn truncated_bodies_with_fixed_up_lengths_are_rejected() {
        // Cutting the record (not the bytes) short: lengths fixed up to a shorter record are
        // Malformed, never a panic.
        let hello = testdata("openssl-tls13.bin");
        let body = &hello[9..];
        for n in 0..body.len() {
            let got = parse(&wrap(&body[..n]));
            assert!(matches!(got, Sni::Rejected(_)), "cut {n}: {got:?}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
            let _ = parse(&bytes);
        }

        #[test]
        fn arbitrary_records_never_panic(
            records in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..600), 1..5),
        ) {
            let mut input = Vec::new();
            for r in &records {
                input.extend([CONTENT_HANDSHAKE, 3, 1]);
                input.extend((r.len() as u16).to_be_bytes());
                input.extend(r);
            }
            let _ = parse(&input);
        }

        #[test]
        fn mutated_captures_never_panic(
            which in 0..CAPTURED.len(),
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        ) {
            let mut buf = testdata(CAPTURED[which].0);
            for (i, b) in edits {
                let i = i.index(buf.len());
                buf[i] = b;
            }
            let _ = parse(&buf);
        }

        #[test]
        fn built_hellos_roundtrip(name in "[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?(\\.[a-z0-9]{1,12}){0,4}") {
            prop_assert_eq!(parse(&client_hello(Some(&name))), Sni::Complete(name));
        }
    }
}
