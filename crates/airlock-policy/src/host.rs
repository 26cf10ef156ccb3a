//! Host names, IP literals and `host[:port]` patterns, in canonical form.
//!
//! Policy entries and requests go through the same parsers, so a rule and a request that name
//! the same endpoint compare equal whatever spelling either used:
//! - names are mapped through IDNA (UTS #46) to lower-case punycode, and one trailing dot is
//!   dropped;
//! - a name whose last label is numeric must be an IPv4 address and is read the way
//!   `inet_aton` reads it (`2130706433`, `0x7f.1`, `0177.0.0.1`, `127.1` are all 127.0.0.1);
//! - IPv4-mapped IPv6 addresses (`::ffff:127.0.0.1`) are matched as IPv4.
//!
//! Called by `validate.rs` for `network.*` entries and by `decide.rs` for every request.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Longest host text accepted before any parsing (guest input is bounded early).
const MAX_INPUT_LEN: usize = 1024;
/// Longest DNS name, without the trailing dot (RFC 1035).
const MAX_NAME_LEN: usize = 253;
/// Longest DNS label (RFC 1035).
const MAX_LABEL_LEN: usize = 63;

/// Two-label public suffixes under which a `*.` wildcard is over-broad. Every single-label
/// suffix (`*.com`, `*.io`, `*.uk`, ...) is over-broad too, without needing a list. This is a
/// short list of the commonest registry-operated second-level domains, not the full Public
/// Suffix List; privately operated suffixes such as `github.io` are deliberately absent.
const PUBLIC_SUFFIXES: &[&str] = &[
    "ac.jp", "ac.uk", "co.id", "co.il", "co.in", "co.jp", "co.kr", "co.nz", "co.th", "co.uk",
    "co.za", "com.ar", "com.au", "com.br", "com.cn", "com.hk", "com.mx", "com.my", "com.sg",
    "com.tr", "com.tw", "com.ua", "edu.au", "go.jp", "gov.au", "gov.cn", "gov.uk", "ltd.uk",
    "me.uk", "ne.jp", "net.au", "net.br", "net.cn", "net.in", "net.nz", "or.jp", "or.kr", "org.au",
    "org.br", "org.cn", "org.in", "org.mx", "org.nz", "org.tw", "org.uk", "org.za", "plc.uk",
];

/// Why a host, address or `host[:port]` text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    /// Nothing to parse.
    #[error("empty host")]
    Empty,
    /// Longer than a DNS name can be.
    #[error("host is too long")]
    TooLong,
    /// A character that cannot appear in a host name.
    #[error("invalid character {0:?} in host")]
    InvalidChar(char),
    /// Two dots in a row, or a leading dot.
    #[error("empty label in host name")]
    EmptyLabel,
    /// A label longer than 63 bytes.
    #[error("label longer than 63 bytes in host name")]
    LabelTooLong,
    /// The IDNA mapping refused the name.
    #[error("not a valid internationalised domain name")]
    Idna,
    /// The last label is numeric but the whole is not an IPv4 address.
    #[error("numeric host is not a valid IPv4 address")]
    BadIpv4,
    /// Bracketed text that is not an IPv6 address.
    #[error("not a valid IPv6 address")]
    BadIpv6,
    /// An unbracketed IPv6 address whose last group could be read as a port.
    #[error("ambiguous IPv6 address: the last group could be a port; write [addr] or [addr]:port")]
    AmbiguousIpv6,
    /// The port is not a number from 1 to 65535.
    #[error("port must be a number from 1 to 65535")]
    BadPort,
    /// A CIDR block that does not parse.
    #[error("not a valid CIDR block")]
    BadCidr,
    /// A CIDR block with bits set after the prefix.
    #[error("CIDR block has host bits set after the prefix")]
    HostBitsSet,
    /// `*` anywhere but as the whole first label.
    #[error("`*` is only allowed as the whole first label, as in *.example.com")]
    WildcardPosition,
    /// A wildcard or CIDR that covers a whole public suffix or every address.
    #[error("over-broad pattern: covers every host under the public suffix {0:?}")]
    OverBroad(String),
    /// `*` alone, or a `/0` block.
    #[error("over-broad pattern: matches every host; use network.default = \"allow\" instead")]
    MatchesEverything,
    /// An address where only a name is accepted.
    #[error("expected a host name, found an IP address")]
    NotAName,
    /// A wildcard over an IP address.
    #[error("a `*.` wildcard needs a domain name after it, not an address")]
    WildcardIp,
}

/// A canonical DNS host name (never an IP literal): lower-case ASCII (punycode), no trailing dot,
/// labels of 1..=63 bytes of `[a-z0-9_-]`, at most 253 bytes. Built only by [`Host::parse`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Host(String);

impl Host {
    /// Parses and canonicalises a DNS name. IP literals are refused: use [`Target::parse`].
    pub fn parse(input: &str) -> Result<Self, HostError> {
        match Target::parse(input)? {
            Target::Name(host) => Ok(host),
            Target::Ip(_) => Err(HostError::NotAName),
        }
    }

    /// The canonical text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn label_count(&self) -> usize {
        self.0.split('.').count()
    }

    /// True when `self` is a strict subdomain of `suffix` (never `suffix` itself).
    fn is_strict_subdomain_of(&self, suffix: &Host) -> bool {
        self.0.len() > suffix.0.len()
            && self.0.ends_with(suffix.0.as_str())
            && self.0.as_bytes().get(self.0.len() - suffix.0.len() - 1) == Some(&b'.')
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a request connects to, canonicalised: a DNS name or an address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// A DNS name, to be resolved on the host.
    Name(Host),
    /// An address; IPv4-mapped IPv6 addresses are stored as IPv4.
    Ip(IpAddr),
}

impl Target {
    /// Parses a host as found in a request or a policy entry (without port): a name, an IPv4
    /// address in any `inet_aton` form, or an IPv6 address with or without brackets.
    pub fn parse(input: &str) -> Result<Self, HostError> {
        if input.is_empty() {
            return Err(HostError::Empty);
        }
        if input.len() > MAX_INPUT_LEN {
            return Err(HostError::TooLong);
        }
        if let Some(inner) = input.strip_prefix('[') {
            let inner = inner.strip_suffix(']').ok_or(HostError::BadIpv6)?;
            let ip: Ipv6Addr = inner.parse().map_err(|_| HostError::BadIpv6)?;
            return Ok(Self::Ip(canonical_ip(IpAddr::V6(ip))));
        }
        if input.contains(':') {
            let ip: Ipv6Addr = input.parse().map_err(|_| HostError::InvalidChar(':'))?;
            return Ok(Self::Ip(canonical_ip(IpAddr::V6(ip))));
        }
        // IDNA maps full-width digits and dots too, so the numeric check comes after it.
        let mapped = idna::uts46::Uts46::new()
            .to_ascii(
                input.as_bytes(),
                idna::uts46::AsciiDenyList::EMPTY,
                idna::uts46::Hyphens::Allow,
                idna::uts46::DnsLength::Ignore,
            )
            .map_err(|_| HostError::Idna)?;
        let name = mapped.strip_suffix('.').unwrap_or(&mapped);
        if name.is_empty() {
            return Err(HostError::Empty);
        }
        if ends_in_number(name) {
            return parse_ipv4_legacy(name)
                .map(|ip| Self::Ip(IpAddr::V4(ip)))
                .ok_or(HostError::BadIpv4);
        }
        check_name(name)?;
        Ok(Self::Name(Host(name.to_owned())))
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Name(h) => h.fmt(f),
            Self::Ip(ip) => ip.fmt(f),
        }
    }
}

/// Maps IPv4-mapped IPv6 addresses to IPv4; every other address is returned unchanged.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

/// WHATWG URL's "ends in a number": the last label is all decimal digits or `0x` + hex digits.
fn ends_in_number(name: &str) -> bool {
    let last = name.rsplit('.').next().unwrap_or(name);
    if !last.is_empty() && last.bytes().all(|b| b.is_ascii_digit()) {
        return true;
    }
    match last.strip_prefix("0x").or_else(|| last.strip_prefix("0X")) {
        Some(hex) => hex.bytes().all(|b| b.is_ascii_hexdigit()),
        None => false,
    }
}

fn check_name(name: &str) -> Result<(), HostError> {
    if name.len() > MAX_NAME_LEN {
        return Err(HostError::TooLong);
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err(HostError::EmptyLabel);
        }
        if label.len() > MAX_LABEL_LEN {
            return Err(HostError::LabelTooLong);
        }
        if let Some(c) = label
            .chars()
            .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-' || *c == '_'))
        {
            return Err(HostError::InvalidChar(c));
        }
    }
    Ok(())
}

/// Parses an IPv4 address the way `inet_aton(3)` does: one to four parts separated by dots,
/// each decimal, octal (leading `0`) or hexadecimal (leading `0x`); the last part fills the
/// remaining bytes. Returns `None` for anything else, including values out of range, empty
/// parts and a bare `0x`.
pub fn parse_ipv4_legacy(text: &str) -> Option<Ipv4Addr> {
    let mut parts = [0u32; 4];
    let mut count = 0usize;
    for part in text.split('.') {
        let slot = parts.get_mut(count)?;
        *slot = parse_ipv4_part(part)?;
        count += 1;
    }
    // The first `count - 1` parts are one byte each; the last fills the remaining bytes.
    let (leading, last) = parts.get(..count)?.split_at(count.checked_sub(1)?);
    let last = *last.first()?;
    let mut value: u32 = 0;
    for &byte in leading {
        if byte > 0xff {
            return None;
        }
        value = (value << 8) | byte;
    }
    let last_bits = 32 - 8 * u32::try_from(leading.len()).ok()?;
    if last_bits < 32 && last >= (1u32 << last_bits) {
        return None;
    }
    let value = if last_bits == 32 {
        last
    } else {
        (value << last_bits) | last
    };
    Some(Ipv4Addr::from(value))
}

/// One `inet_aton` part as a `u32`; `None` when empty, malformed or above `u32::MAX`.
fn parse_ipv4_part(part: &str) -> Option<u32> {
    let (digits, radix) =
        if let Some(hex) = part.strip_prefix("0x").or_else(|| part.strip_prefix("0X")) {
            (hex, 16)
        } else if let Some(octal) = part.strip_prefix('0').filter(|rest| !rest.is_empty()) {
            (octal, 8)
        } else {
            (part, 10)
        };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let mut value: u32 = 0;
    for c in digits.chars() {
        let d = c.to_digit(radix)?;
        value = value.checked_mul(radix)?.checked_add(d)?;
    }
    Some(value)
}

/// The host side of a pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    /// Exactly this name.
    Exact(Host),
    /// Any strict subdomain of this suffix (`*.example.com` matches `a.example.com` and
    /// `a.b.example.com`, never `example.com`).
    Wildcard(Host),
    /// Addresses in this block; an exact address has the full prefix length.
    Cidr {
        /// The network address (host bits zero).
        network: IpAddr,
        /// Prefix length: 0..=32 for IPv4, 0..=128 for IPv6.
        prefix: u8,
    },
}

/// How specific a matching pattern is; a larger value is more specific.
///
/// Ordered field by field: an exact host or address beats any wildcard or block; among
/// wildcards the longer suffix (more labels) wins, among blocks the longer prefix; then a
/// pattern with a port beats one without.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Specificity {
    /// Exact name or exact address (a full-length prefix).
    pub exact: bool,
    /// Wildcard suffix labels, or prefix length for addresses (full length when exact);
    /// 0 for exact names. Names and addresses never compete: a request is one or the other.
    pub length: u8,
    /// The pattern names a port.
    pub port: bool,
}

/// A `host[:port]` pattern from `network.allow`, `network.deny` or `[[network.http]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    host: HostPattern,
    port: Option<u16>,
}

impl Endpoint {
    /// Parses a policy entry: `example.com`, `example.com:443`, `*.example.com`, `192.0.2.1:80`,
    /// `[2001:db8::1]:443`, `2001:db8::1`, `10.0.0.0/8`, `[fd00::/8]:53`.
    ///
    /// Over-broad patterns are refused: `*`, `*.<single label>`, `*.<public suffix>`, `/0`.
    pub fn parse(text: &str) -> Result<Self, HostError> {
        let (host, port) = split_host_port(text)?;
        let port = match port {
            None => None,
            Some(p) => Some(parse_port(p)?),
        };
        let host = parse_host_pattern(host)?;
        Ok(Self { host, port })
    }

    /// The host side.
    pub fn host(&self) -> &HostPattern {
        &self.host
    }

    /// The port; `None` matches every port.
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// Does this pattern cover `target` on `port`?
    pub fn matches(&self, target: &Target, port: u16) -> bool {
        self.port.is_none_or(|p| p == port) && self.host.matches(target)
    }

    /// How specific this pattern is, for precedence.
    pub fn specificity(&self) -> Specificity {
        let port = self.port.is_some();
        match &self.host {
            HostPattern::Exact(_) => Specificity {
                exact: true,
                length: 0,
                port,
            },
            HostPattern::Wildcard(suffix) => Specificity {
                exact: false,
                length: u8::try_from(suffix.label_count()).unwrap_or(u8::MAX),
                port,
            },
            HostPattern::Cidr { network, prefix } => Specificity {
                exact: *prefix == max_prefix(network),
                length: *prefix,
                port,
            },
        }
    }
}

impl HostPattern {
    /// Does this host pattern cover `target`?
    pub fn matches(&self, target: &Target) -> bool {
        match (self, target) {
            (Self::Exact(h), Target::Name(n)) => h == n,
            (Self::Wildcard(suffix), Target::Name(n)) => n.is_strict_subdomain_of(suffix),
            (Self::Cidr { network, prefix }, Target::Ip(ip)) => {
                cidr_contains(*network, *prefix, *ip)
            }
            _ => false,
        }
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exact(h) => h.fmt(f),
            Self::Wildcard(s) => write!(f, "*.{s}"),
            Self::Cidr { network, prefix } if *prefix == max_prefix(network) => match network {
                IpAddr::V4(ip) => ip.fmt(f),
                IpAddr::V6(ip) => write!(f, "[{ip}]"),
            },
            Self::Cidr { network, prefix } => match network {
                IpAddr::V4(ip) => write!(f, "{ip}/{prefix}"),
                IpAddr::V6(ip) => write!(f, "[{ip}/{prefix}]"),
            },
        }
    }
}

impl fmt::Display for Endpoint {
    /// The canonical spelling; parsing it again gives the same pattern.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.host.fmt(f)?;
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        Ok(())
    }
}

pub(crate) fn max_prefix(ip: &IpAddr) -> u8 {
    match ip {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

pub(crate) fn cidr_contains(network: IpAddr, prefix: u8, ip: IpAddr) -> bool {
    match (network, ip) {
        (IpAddr::V4(n), IpAddr::V4(a)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            u32::from(n) & mask == u32::from(a) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(a)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            u128::from(n) & mask == u128::from(a) & mask
        }
        _ => false,
    }
}

/// Splits `host[:port]`, handling brackets and refusing ambiguous IPv6.
fn split_host_port(text: &str) -> Result<(&str, Option<&str>), HostError> {
    if text.is_empty() {
        return Err(HostError::Empty);
    }
    if text.len() > MAX_INPUT_LEN {
        return Err(HostError::TooLong);
    }
    if text.starts_with('[') {
        let close = text.find(']').ok_or(HostError::BadIpv6)?;
        let (host, rest) = text.split_at(close + 1);
        return match rest {
            "" => Ok((host, None)),
            _ => match rest.strip_prefix(':') {
                Some(port) => Ok((host, Some(port))),
                None => Err(HostError::BadIpv6),
            },
        };
    }
    match text.matches(':').count() {
        0 => Ok((text, None)),
        1 => Ok(text
            .split_once(':')
            .map_or((text, None), |(host, port)| (host, Some(port)))),
        _ => {
            // An unbracketed IPv6 address is accepted only when it has a single reading.
            let addr = text.split('/').next().unwrap_or(text);
            if let Some((head, last)) = addr.rsplit_once(':')
                && parse_port(last).is_ok()
                && head.parse::<Ipv6Addr>().is_ok()
            {
                return Err(HostError::AmbiguousIpv6);
            }
            Ok((text, None))
        }
    }
}

fn parse_port(text: &str) -> Result<u16, HostError> {
    if text.is_empty() || text.len() > 5 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(HostError::BadPort);
    }
    match text.parse::<u16>() {
        Ok(0) | Err(_) => Err(HostError::BadPort),
        Ok(p) => Ok(p),
    }
}

fn parse_host_pattern(text: &str) -> Result<HostPattern, HostError> {
    if text == "*" {
        return Err(HostError::MatchesEverything);
    }
    if let Some(suffix) = text.strip_prefix("*.") {
        if suffix.contains('*') {
            return Err(HostError::WildcardPosition);
        }
        let suffix = match Target::parse(suffix)? {
            Target::Name(h) => h,
            Target::Ip(_) => return Err(HostError::WildcardIp),
        };
        if suffix.label_count() == 1 || PUBLIC_SUFFIXES.contains(&suffix.as_str()) {
            return Err(HostError::OverBroad(suffix.0));
        }
        return Ok(HostPattern::Wildcard(suffix));
    }
    if text.contains('*') {
        return Err(HostError::WildcardPosition);
    }
    if let Some((addr, prefix)) = text
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or(text)
        .split_once('/')
    {
        return parse_cidr(addr, prefix);
    }
    match Target::parse(text)? {
        Target::Name(h) => Ok(HostPattern::Exact(h)),
        Target::Ip(ip) => Ok(HostPattern::Cidr {
            prefix: max_prefix(&ip),
            network: ip,
        }),
    }
}

fn parse_cidr(addr: &str, prefix: &str) -> Result<HostPattern, HostError> {
    let ip = if addr.contains(':') {
        IpAddr::V6(addr.parse().map_err(|_| HostError::BadCidr)?)
    } else {
        IpAddr::V4(parse_ipv4_legacy(addr).ok_or(HostError::BadCidr)?)
    };
    if prefix.is_empty() || prefix.len() > 3 || !prefix.bytes().all(|b| b.is_ascii_digit()) {
        return Err(HostError::BadCidr);
    }
    let mut prefix: u8 = prefix.parse().map_err(|_| HostError::BadCidr)?;
    if prefix > max_prefix(&ip) {
        return Err(HostError::BadCidr);
    }
    if prefix == 0 {
        return Err(HostError::MatchesEverything);
    }
    let mut network = ip;
    // An IPv4-mapped block is stored as the IPv4 block it covers, like mapped addresses.
    if let IpAddr::V6(v6) = ip
        && let Some(v4) = v6.to_ipv4_mapped()
        && prefix >= 96
    {
        network = IpAddr::V4(v4);
        prefix -= 96;
        if prefix == 0 {
            return Err(HostError::MatchesEverything);
        }
    }
    if !is_network_address(network, prefix) {
        return Err(HostError::HostBitsSet);
    }
    Ok(HostPattern::Cidr { network, prefix })
}

fn is_network_address(ip: IpAddr, prefix: u8) -> bool {
    match ip {
        IpAddr::V4(a) => {
            let host_mask = u32::MAX.checked_shr(u32::from(prefix)).unwrap_or(0);
            u32::from(a) & host_mask == 0
        }
        IpAddr::V6(a) => {
            let host_mask = u128::MAX.checked_shr(u32::from(prefix)).unwrap_or(0);
            u128::from(a) & host_mask == 0
        }
    }
}

#[cfg(test)]
mod tests;
