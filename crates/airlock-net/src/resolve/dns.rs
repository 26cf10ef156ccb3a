//! Pure DNS wire format for the gateway's own UDP resolver: an A/AAAA query builder and a
//! response parser (RFC 1035 §4), bounds-checked everywhere.
//!
//! Called by the resolver of [`dns_resolver`](super::dns_resolver) and by the test DNS server
//! in `testutil`. The response comes from whatever answers on the configured server's address,
//! so it is parsed as hostile: the ID, the QR bit and the question must match the query;
//! compression pointers must point backwards and are followed at most [`MAX_POINTER_HOPS`]
//! times; names are at most 255 bytes; only A/AAAA records owned by the queried name, or by a
//! CNAME target reached from it within the same answer section, are taken.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use airlock_policy::Host;

/// Largest response read (a plain UDP answer is at most 512 bytes; EDNS is not requested, so
/// this only leaves slack for servers that send more anyway).
pub const MAX_MESSAGE_LEN: usize = 4096;
/// Most compression pointers followed while reading one name.
pub const MAX_POINTER_HOPS: usize = 16;
/// Longest name on the wire, in presentation form without the final dot (RFC 1035 §2.3.4).
pub const MAX_NAME_LEN: usize = 255;
/// Most CNAME hops followed within one answer section.
pub const MAX_CNAME_CHAIN: usize = 8;
/// Most addresses taken from one answer.
pub const MAX_ADDRESSES: usize = 32;

const HEADER_LEN: usize = 12;
const CLASS_IN: u16 = 1;
const TYPE_CNAME: u16 = 5;
const FLAG_QR: u16 = 0x8000;
const FLAG_TC: u16 = 0x0200;
const FLAG_RD: u16 = 0x0100;
const RCODE_NXDOMAIN: u8 = 3;

/// The record type asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QType {
    /// IPv4 address.
    A,
    /// IPv6 address.
    Aaaa,
}

impl QType {
    /// The wire code (1 or 28).
    pub fn code(self) -> u16 {
        match self {
            Self::A => 1,
            Self::Aaaa => 28,
        }
    }
}

/// Why a DNS message was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    /// Shorter than a length field says, or than a header.
    #[error("truncated DNS message")]
    Short,
    /// The ID differs from the query's.
    #[error("DNS response ID does not match the query")]
    IdMismatch,
    /// QR is not set, or the opcode is not a standard query.
    #[error("not a DNS response to a standard query")]
    NotResponse,
    /// TC is set; this resolver does not retry over TCP.
    #[error("DNS response truncated (TC set)")]
    Truncated,
    /// The server answered with an error code other than NXDOMAIN.
    #[error("DNS server returned rcode {0}")]
    Rcode(u8),
    /// The question section does not repeat the query's.
    #[error("DNS response question does not match the query")]
    QuestionMismatch,
    /// A name with a bad label type, a forward or looping pointer, or longer than 255 bytes.
    #[error("malformed name in DNS message")]
    BadName,
    /// An A or AAAA record with the wrong data length.
    #[error("malformed address record in DNS response")]
    BadRecord,
}

/// Builds a recursive query for `name`.
pub fn build_query(id: u16, name: &Host, qtype: QType) -> Vec<u8> {
    let mut msg = Vec::with_capacity(HEADER_LEN + name.as_str().len() + 6);
    msg.extend(id.to_be_bytes());
    msg.extend(FLAG_RD.to_be_bytes());
    msg.extend([0, 1, 0, 0, 0, 0, 0, 0]); // one question, no other records
    encode_name(name.as_str(), &mut msg);
    msg.extend(qtype.code().to_be_bytes());
    msg.extend(CLASS_IN.to_be_bytes());
    msg
}

/// Appends `name` in wire form. A canonical [`Host`] has labels of 1..=63 bytes, so the
/// length always fits; longer labels are cut, never wrapped.
fn encode_name(name: &str, out: &mut Vec<u8>) {
    for label in name.split('.').filter(|l| !l.is_empty()) {
        let bytes = label.as_bytes();
        let bytes = bytes.get(..63).unwrap_or(bytes);
        out.push(u8::try_from(bytes.len()).unwrap_or(63));
        out.extend(bytes);
    }
    out.push(0);
}

/// The ID of a message, if it has one.
pub fn message_id(msg: &[u8]) -> Option<u16> {
    match msg {
        [hi, lo, ..] => Some(u16::from_be_bytes([*hi, *lo])),
        _ => None,
    }
}

/// Parses a response to the query `(id, name, qtype)`. NXDOMAIN and an empty answer are both
/// `Ok` with no address.
pub fn parse_response(
    msg: &[u8],
    id: u16,
    name: &Host,
    qtype: QType,
) -> Result<Vec<IpAddr>, DnsError> {
    let header = Header::read(msg)?;
    if header.id != id {
        return Err(DnsError::IdMismatch);
    }
    if header.flags & FLAG_QR == 0 || (header.flags >> 11) & 0xf != 0 {
        return Err(DnsError::NotResponse);
    }
    if header.flags & FLAG_TC != 0 {
        return Err(DnsError::Truncated);
    }
    if header.qdcount != 1 {
        return Err(DnsError::QuestionMismatch);
    }
    let (qname, pos) = read_name(msg, HEADER_LEN)?;
    let (qt, qclass) = (read_u16(msg, pos)?, read_u16(msg, pos + 2)?);
    if qname != name.as_str().as_bytes() || qt != qtype.code() || qclass != CLASS_IN {
        return Err(DnsError::QuestionMismatch);
    }
    let rcode = u8::try_from(header.flags & 0xf).unwrap_or(u8::MAX);
    match rcode {
        0 => {}
        RCODE_NXDOMAIN => return Ok(Vec::new()),
        other => return Err(DnsError::Rcode(other)),
    }
    let mut owners = vec![qname];
    let mut addrs = Vec::new();
    let mut pos = pos + 4;
    for _ in 0..header.ancount {
        let (owner, p) = read_name(msg, pos)?;
        let rtype = read_u16(msg, p)?;
        let class = read_u16(msg, p + 2)?;
        let rdlen = usize::from(read_u16(msg, p + 8)?);
        let start = p + 10;
        let rdata = msg.get(start..start + rdlen).ok_or(DnsError::Short)?;
        pos = start + rdlen;
        if class != CLASS_IN || !owners.contains(&owner) {
            continue;
        }
        if rtype == qtype.code() {
            let ip = match (qtype, rdata) {
                (QType::A, &[a, b, c, d]) => IpAddr::V4(Ipv4Addr::new(a, b, c, d)),
                (QType::Aaaa, bytes) => {
                    let octets: [u8; 16] = bytes.try_into().map_err(|_| DnsError::BadRecord)?;
                    IpAddr::V6(Ipv6Addr::from(octets))
                }
                _ => return Err(DnsError::BadRecord),
            };
            if addrs.len() < MAX_ADDRESSES && !addrs.contains(&ip) {
                addrs.push(ip);
            }
        } else if rtype == TYPE_CNAME {
            let (target, end) = read_name(msg, start)?;
            if end > pos {
                return Err(DnsError::BadName);
            }
            if owners.len() <= MAX_CNAME_CHAIN && !owners.contains(&target) {
                owners.push(target);
            }
        }
    }
    Ok(addrs)
}

/// A query as the test DNS server sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// Message ID.
    pub id: u16,
    /// Lower-case name, labels joined by `.`.
    pub name: String,
    /// Record type code.
    pub qtype: u16,
    /// Bytes of the message up to the end of the question (to echo in a response).
    pub question_end: usize,
}

/// Parses a query with one question (for test servers).
pub fn parse_query(msg: &[u8]) -> Result<Query, DnsError> {
    let header = Header::read(msg)?;
    if header.flags & FLAG_QR != 0 || header.qdcount != 1 {
        return Err(DnsError::NotResponse);
    }
    let (name, pos) = read_name(msg, HEADER_LEN)?;
    let qtype = read_u16(msg, pos)?;
    read_u16(msg, pos + 2)?;
    Ok(Query {
        id: header.id,
        name: String::from_utf8_lossy(&name).into_owned(),
        qtype,
        question_end: pos + 4,
    })
}

struct Header {
    id: u16,
    flags: u16,
    qdcount: u16,
    ancount: u16,
}

impl Header {
    fn read(msg: &[u8]) -> Result<Self, DnsError> {
        Ok(Self {
            id: read_u16(msg, 0)?,
            flags: read_u16(msg, 2)?,
            qdcount: read_u16(msg, 4)?,
            ancount: read_u16(msg, 6)?,
        })
    }
}

fn read_u16(msg: &[u8], pos: usize) -> Result<u16, DnsError> {
    match msg.get(pos..pos + 2) {
        Some(&[hi, lo]) => Ok(u16::from_be_bytes([hi, lo])),
        _ => Err(DnsError::Short),
    }
}

/// Reads a possibly compressed name at `start`; returns it lower-cased in presentation form
/// (labels joined by `.`, no final dot) and the position just after it in the message.
fn read_name(msg: &[u8], start: usize) -> Result<(Vec<u8>, usize), DnsError> {
    let mut out = Vec::new();
    let mut pos = start;
    let mut after = None;
    let mut hops = 0;
    loop {
        let len = *msg.get(pos).ok_or(DnsError::Short)?;
        match len & 0xc0 {
            0x00 if len == 0 => {
                let end = after.unwrap_or(pos + 1);
                return Ok((out, end));
            }
            0x00 => {
                let label = msg
                    .get(pos + 1..pos + 1 + usize::from(len))
                    .ok_or(DnsError::Short)?;
                if !out.is_empty() {
                    out.push(b'.');
                }
                out.extend(label.iter().map(u8::to_ascii_lowercase));
                if out.len() > MAX_NAME_LEN {
                    return Err(DnsError::BadName);
                }
                pos += 1 + usize::from(len);
            }
            0xc0 => {
                let lo = *msg.get(pos + 1).ok_or(DnsError::Short)?;
                let target = usize::from(u16::from_be_bytes([len & 0x3f, lo]));
                // Only backwards: every hop strictly decreases `pos`, so this ends.
                if target >= pos || hops == MAX_POINTER_HOPS {
                    return Err(DnsError::BadName);
                }
                hops += 1;
                after.get_or_insert(pos + 2);
                pos = target;
            }
            _ => return Err(DnsError::BadName),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::indexing_slicing, clippy::cast_possible_truncation)]

    use super::*;
    use proptest::prelude::*;

    fn host(s: &str) -> Host {
        Host::parse(s).unwrap()
    }

    /// A response to `query` with the given raw answer records appended.
    fn response(query: &[u8], flags: u16, answers: &[Vec<u8>]) -> Vec<u8> {
        let mut msg = query.to_vec();
        msg[2..4].copy_from_slice(&flags.to_be_bytes());
        msg[6..8].copy_from_slice(&(answers.len() as u16).to_be_bytes());
        for a in answers {
            msg.extend(a);
        }
        msg
    }

    /// A record owned by `owner` (raw wire name bytes).
    fn rr(owner: &[u8], rtype: u16, rdata: &[u8]) -> Vec<u8> {
        let mut r = owner.to_vec();
        r.extend(rtype.to_be_bytes());
        r.extend(CLASS_IN.to_be_bytes());
        r.extend(300u32.to_be_bytes());
        r.extend((rdata.len() as u16).to_be_bytes());
        r.extend(rdata);
        r
    }

    const PTR_QNAME: [u8; 2] = [0xc0, 12];

    #[test]
    fn query_wire_form() {
        let q = build_query(0x1234, &host("Api.Example.com"), QType::Aaaa);
        assert_eq!(
            q,
            [
                &[0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0][..],
                b"\x03api\x07example\x03com\x00",
                &[0, 28, 0, 1],
            ]
            .concat()
        );
        assert_eq!(
            parse_query(&q),
            Ok(Query {
                id: 0x1234,
                name: "api.example.com".into(),
                qtype: 28,
                question_end: q.len()
            })
        );
    }

    #[test]
    fn answers_with_cname_chain() {
        let name = host("www.example.com");
        let q = build_query(7, &name, QType::A);
        let cname_target = b"\x03cdn\x07example\x03net\x00";
        let first = rr(&PTR_QNAME, TYPE_CNAME, cname_target);
        // The CNAME target starts at: header + question + the first record's fixed part.
        let target_at = (q.len() + 2 + 10) as u8;
        let msg = response(
            &q,
            0x8180,
            &[
                first,
                rr(&[0xc0, target_at], 1, &[192, 0, 2, 1]),
                rr(&PTR_QNAME, 1, &[192, 0, 2, 2]),
                // Not in the chain: ignored.
                rr(b"\x05other\x00", 1, &[10, 0, 0, 1]),
                // Another type: ignored.
                rr(&PTR_QNAME, 16, b"\x02hi"),
            ],
        );
        assert_eq!(
            parse_response(&msg, 7, &name, QType::A),
            Ok(vec![
                IpAddr::from([192, 0, 2, 1]),
                IpAddr::from([192, 0, 2, 2])
            ])
        );
    }

    #[test]
    fn aaaa_answers() {
        let name = host("v6.example");
        let q = build_query(9, &name, QType::Aaaa);
        let ip: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let msg = response(&q, 0x8180, &[rr(&PTR_QNAME, 28, &ip.octets())]);
        assert_eq!(
            parse_response(&msg, 9, &name, QType::Aaaa),
            Ok(vec![IpAddr::V6(ip)])
        );
        let bad = response(&q, 0x8180, &[rr(&PTR_QNAME, 28, &[1, 2, 3, 4])]);
        assert_eq!(
            parse_response(&bad, 9, &name, QType::Aaaa),
            Err(DnsError::BadRecord)
        );
    }

    #[test]
    fn refusals() {
        let name = host("a.example");
        let q = build_query(1, &name, QType::A);
        let a = rr(&PTR_QNAME, 1, &[192, 0, 2, 1]);
        let check = |msg: &[u8]| parse_response(msg, 1, &name, QType::A);
        assert_eq!(check(&response(&q, 0x8183, &[])), Ok(vec![]));
        assert_eq!(check(&response(&q, 0x8182, &[])), Err(DnsError::Rcode(2)));
        assert_eq!(check(&response(&q, 0x8380, &[])), Err(DnsError::Truncated));
        assert_eq!(check(&q), Err(DnsError::NotResponse));
        assert_eq!(
            parse_response(&response(&q, 0x8180, &[]), 2, &name, QType::A),
            Err(DnsError::IdMismatch)
        );
        assert_eq!(
            parse_response(&response(&q, 0x8180, &[]), 1, &host("b.example"), QType::A),
            Err(DnsError::QuestionMismatch)
        );
        assert_eq!(
            parse_response(&response(&q, 0x8180, &[]), 1, &name, QType::Aaaa),
            Err(DnsError::QuestionMismatch)
        );
        assert_eq!(check(&q[..5]), Err(DnsError::Short));
        let full = response(&q, 0x8180, std::slice::from_ref(&a));
        for n in 0..full.len() {
            assert!(check(&full[..n]).is_err(), "prefix {n}");
        }
        // A pointer to itself, and a forward pointer.
        let mut looping = response(&q, 0x8180, &[]);
        looping[6..8].copy_from_slice(&1u16.to_be_bytes());
        let at = looping.len() as u8;
        looping.extend([0xc0, at]);
        assert_eq!(check(&looping), Err(DnsError::BadName));
        let mut forward = response(&q, 0x8180, &[]);
        forward[6..8].copy_from_slice(&1u16.to_be_bytes());
        forward.extend([0xc0, 0xff]);
        assert_eq!(check(&forward), Err(DnsError::BadName));
        // Reserved label type.
        let mut reserved = response(&q, 0x8180, &[]);
        reserved[6..8].copy_from_slice(&1u16.to_be_bytes());
        reserved.extend([0x40, 0]);
        assert_eq!(check(&reserved), Err(DnsError::BadName));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn arbitrary_responses_never_panic(
            mut bytes in proptest::collection::vec(any::<u8>(), 0..1024),
            keep_header in any::<bool>(),
        ) {
            let name = host("a.example");
            if keep_header {
                let q = build_query(1, &name, QType::A);
                let n = q.len().min(bytes.len());
                bytes[..n].copy_from_slice(&q[..n]);
                if bytes.len() > 3 { bytes[2] |= 0x80; }
            }
            let _ = parse_response(&bytes, 1, &name, QType::A);
            let _ = parse_query(&bytes);
        }
    }
}
