//! Address classes for `decide_address`, and the cloud metadata endpoints.
//!
//! Every address a request reaches (a literal, or what a name resolved to) is classified here.
//! `decide.rs` refuses anything but public addresses unless `allow_private` is set, and a
//! metadata address unless an allow entry names that exact address; `validate/network.rs`
//! refuses allow entries whose block covers a metadata address, so a policy never reads as
//! opening more than it does.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::host::{HostPattern, canonical_ip, cidr_contains, max_prefix};

/// A block of addresses where a cloud serves instance metadata or credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetadataBlock {
    /// The network address.
    pub network: IpAddr,
    /// The prefix length (full length for one address).
    pub prefix: u8,
    /// What serves there.
    pub serves: &'static str,
}

/// The known metadata endpoints. All of IPv4 link-local is in: clouds put more than one
/// service there (169.254.169.254, 169.254.170.2) and nothing a sandbox needs lives there.
pub const METADATA_BLOCKS: &[MetadataBlock] = &[
    MetadataBlock {
        network: IpAddr::V4(Ipv4Addr::new(169, 254, 0, 0)),
        prefix: 16,
        serves: "IPv4 link-local: instance metadata of AWS, GCP, Azure and OCI at \
                 169.254.169.254, ECS task metadata and credentials at 169.254.170.2",
    },
    MetadataBlock {
        network: IpAddr::V4(Ipv4Addr::new(100, 100, 100, 200)),
        prefix: 32,
        serves: "Alibaba Cloud instance metadata",
    },
    MetadataBlock {
        network: IpAddr::V4(Ipv4Addr::new(192, 0, 0, 192)),
        prefix: 32,
        serves: "Oracle Cloud (Classic) instance metadata",
    },
    MetadataBlock {
        network: IpAddr::V6(Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254)),
        prefix: 128,
        serves: "AWS instance metadata over IPv6",
    },
];

/// NAT64 well-known prefix 64:ff9b::/96; the IPv4 address is the last 32 bits.
const NAT64: u128 = 0x0064_ff9b_0000_0000_0000_0000_0000_0000;
/// 6to4 prefix 2002::/16; the IPv4 address is bits 16..48.
const SIX_TO_FOUR: u128 = 0x2002_0000_0000_0000_0000_0000_0000_0000;
const SIX_TO_FOUR_SHIFT: u32 = 80;

/// The class of an address for `decide_address`: anything but [`AddressClass::Public`] is
/// refused after DNS unless the policy allows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressClass {
    /// Globally routable.
    Public,
    /// Cloud metadata ([`METADATA_BLOCKS`]): refused even with `allow_private`; only an allow
    /// entry naming the exact address opens one.
    Metadata,
    /// 127.0.0.0/8, ::1.
    Loopback,
    /// RFC 1918, unique-local fc00::/7, site-local fec0::/10, local-use NAT64.
    Private,
    /// fe80::/10 (IPv4 link-local is [`AddressClass::Metadata`]).
    LinkLocal,
    /// Carrier-grade NAT, 100.64.0.0/10.
    SharedCgnat,
    /// 224.0.0.0/4, ff00::/8.
    Multicast,
    /// 0.0.0.0/8, ::.
    Unspecified,
    /// Documentation, benchmarking, reserved and deprecated ranges, broadcast.
    Reserved,
}

impl AddressClass {
    /// Classifies an address. IPv6 forms that embed an IPv4 address (mapped, NAT64 64:ff9b::/96,
    /// 6to4 2002::/16) are classified by the embedded address.
    pub fn of(ip: IpAddr) -> Self {
        let ip = canonical_ip(ip);
        if METADATA_BLOCKS
            .iter()
            .any(|b| cidr_contains(b.network, b.prefix, ip))
        {
            return Self::Metadata;
        }
        match ip {
            IpAddr::V4(v4) => Self::of_v4(v4),
            IpAddr::V6(v6) => Self::of_v6(v6),
        }
    }

    fn of_v4(ip: Ipv4Addr) -> Self {
        let v = u32::from(ip);
        let in_block = |net: [u8; 4], prefix: u8| {
            cidr_contains(IpAddr::V4(Ipv4Addr::from(net)), prefix, IpAddr::V4(ip))
        };
        if in_block([0, 0, 0, 0], 8) {
            Self::Unspecified
        } else if in_block([127, 0, 0, 0], 8) {
            Self::Loopback
        } else if in_block([10, 0, 0, 0], 8)
            || in_block([172, 16, 0, 0], 12)
            || in_block([192, 168, 0, 0], 16)
        {
            Self::Private
        } else if in_block([100, 64, 0, 0], 10) {
            Self::SharedCgnat
        } else if in_block([224, 0, 0, 0], 4) {
            Self::Multicast
        } else if in_block([240, 0, 0, 0], 4)
            || in_block([192, 0, 0, 0], 24)
            || in_block([192, 0, 2, 0], 24)
            || in_block([192, 88, 99, 0], 24)
            || in_block([198, 18, 0, 0], 15)
            || in_block([198, 51, 100, 0], 24)
            || in_block([203, 0, 113, 0], 24)
            || v == u32::MAX
        {
            Self::Reserved
        } else {
            Self::Public
        }
    }

    fn of_v6(ip: Ipv6Addr) -> Self {
        let v = u128::from(ip);
        let in_block = |net: u128, prefix: u8| {
            cidr_contains(IpAddr::V6(Ipv6Addr::from(net)), prefix, IpAddr::V6(ip))
        };
        let embedded_v4 = |shift: u32| Self::of(IpAddr::V4(embedded(v, shift)));
        if ip.is_unspecified() {
            Self::Unspecified
        } else if ip.is_loopback() {
            Self::Loopback
        } else if in_block(NAT64, 96) {
            embedded_v4(0)
        } else if in_block(SIX_TO_FOUR, 16) {
            embedded_v4(SIX_TO_FOUR_SHIFT)
        } else if in_block(0, 96) {
            // IPv4-compatible addresses are deprecated; nothing legitimate uses them.
            Self::Reserved
        } else if in_block(0x0064_ff9b_0001_0000_0000_0000_0000_0000, 48)
            || in_block(0xfc00_0000_0000_0000_0000_0000_0000_0000, 7)
            || in_block(0xfec0_0000_0000_0000_0000_0000_0000_0000, 10)
        {
            Self::Private
        } else if in_block(0xfe80_0000_0000_0000_0000_0000_0000_0000, 10) {
            Self::LinkLocal
        } else if in_block(0xff00_0000_0000_0000_0000_0000_0000_0000, 8) {
            Self::Multicast
        } else if in_block(0x0100_0000_0000_0000_0000_0000_0000_0000, 64)
            || in_block(0x2001_0000_0000_0000_0000_0000_0000_0000, 32)
            || in_block(0x2001_0db8_0000_0000_0000_0000_0000_0000, 32)
            || in_block(0x3fff_0000_0000_0000_0000_0000_0000_0000, 20)
        {
            Self::Reserved
        } else {
            Self::Public
        }
    }
}

/// The IPv4 address stored at bit `shift` of an IPv6 address.
fn embedded(v: u128, shift: u32) -> Ipv4Addr {
    let bits = (v >> shift) & u128::from(u32::MAX);
    Ipv4Addr::from(u32::try_from(bits).unwrap_or(0))
}

/// A metadata block that an address pattern covers, in the pattern's own address family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MetadataOverlap {
    /// The covered block, e.g. `169.254.0.0/16` or its 6to4 form `2002:a9fe::/32`.
    pub block: String,
    /// What serves there.
    pub serves: &'static str,
}

impl fmt::Display for MetadataOverlap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.block, self.serves)
    }
}

/// The first metadata block that `pattern` covers (wholly or in part) without naming one
/// address exactly; `None` for names, exact addresses and blocks clear of every metadata
/// address. Counts the NAT64 and 6to4 forms of IPv4 blocks, which [`AddressClass::of`]
/// classifies by the embedded address.
pub(crate) fn covered_metadata(pattern: &HostPattern) -> Option<MetadataOverlap> {
    let HostPattern::Cidr { network, prefix } = pattern else {
        return None;
    };
    if *prefix == max_prefix(network) {
        return None;
    }
    METADATA_BLOCKS.iter().find_map(|b| {
        forms(b)
            .into_iter()
            .flatten()
            .find(|(net, len)| overlaps(*network, *prefix, *net, *len))
            .map(|(net, len)| MetadataOverlap {
                block: format!("{net}/{len}"),
                serves: b.serves,
            })
    })
}

/// A block as itself and, for IPv4, as its NAT64 and 6to4 forms.
fn forms(b: &MetadataBlock) -> [Option<(IpAddr, u8)>; 3] {
    match b.network {
        IpAddr::V6(_) => [Some((b.network, b.prefix)), None, None],
        IpAddr::V4(v4) => {
            let v = u128::from(u32::from(v4));
            [
                Some((b.network, b.prefix)),
                Some((IpAddr::V6(Ipv6Addr::from(NAT64 | v)), 96 + b.prefix)),
                Some((
                    IpAddr::V6(Ipv6Addr::from(SIX_TO_FOUR | (v << SIX_TO_FOUR_SHIFT))),
                    16 + b.prefix,
                )),
            ]
        }
    }
}

/// Two prefix blocks overlap exactly when the shorter one contains the other's network.
fn overlaps(a: IpAddr, a_len: u8, b: IpAddr, b_len: u8) -> bool {
    a.is_ipv4() == b.is_ipv4() && cidr_contains(a, a_len.min(b_len), b)
}

#[cfg(test)]
mod tests;
