use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;

use super::*;

fn target(text: &str) -> Result<String, HostError> {
    Target::parse(text).map(|t| t.to_string())
}

#[test]
fn names_are_lowercased_trailing_dot_stripped_and_punycoded() {
    assert_eq!(
        target("API.Anthropic.COM."),
        Ok("api.anthropic.com".to_owned())
    );
    assert_eq!(
        target("bücher.example"),
        Ok("xn--bcher-kva.example".to_owned())
    );
    assert_eq!(target("ＥＸＡＭＰＬＥ．com"), Ok("example.com".to_owned()));
    assert_eq!(
        target("_dmarc.example.com"),
        Ok("_dmarc.example.com".to_owned())
    );
}

#[test]
fn malformed_names_are_refused() {
    assert_eq!(target(""), Err(HostError::Empty));
    assert_eq!(target("."), Err(HostError::Empty));
    assert_eq!(target("a..b"), Err(HostError::EmptyLabel));
    assert_eq!(target(".a"), Err(HostError::EmptyLabel));
    assert_eq!(target("a b.com"), Err(HostError::InvalidChar(' ')));
    assert_eq!(target("a/b.com"), Err(HostError::InvalidChar('/')));
    assert_eq!(target("example.com:443"), Err(HostError::InvalidChar(':')));
    assert_eq!(target(&"a".repeat(64)), Err(HostError::LabelTooLong));
    assert_eq!(target(&["abc"; 70].join(".")), Err(HostError::TooLong));
    assert_eq!(target(&"a".repeat(2000)), Err(HostError::TooLong));
}

#[test]
fn ipv4_in_every_inet_aton_form_is_canonical() {
    for form in [
        "127.0.0.1",
        "2130706433",
        "0x7f000001",
        "0x7f.1",
        "0177.0.0.1",
        "0177.0.0.01",
        "127.1",
        "127.0.1",
        "0x7F.0.0.1",
        "127.0.0.1.",
        "[::ffff:127.0.0.1]",
        "::ffff:7f00:1",
        "１２７.0.0.1",
    ] {
        assert_eq!(target(form), Ok("127.0.0.1".to_owned()), "{form}");
    }
}

#[test]
fn out_of_range_ipv4_is_refused_not_wrapped() {
    for form in [
        "256.0.0.1",
        "4294967296",
        "1.2.3.4.5",
        "1.2.65536",
        "1.16777216",
        "0x",
        "1..2",
        "08.0.0.1",
        "99999999999999999999",
        "example.123",
    ] {
        assert_eq!(target(form), Err(HostError::BadIpv4), "{form}");
    }
}

#[test]
fn legacy_parser_bounds() {
    assert_eq!(
        parse_ipv4_legacy("255.255.255.255"),
        Some(Ipv4Addr::BROADCAST)
    );
    assert_eq!(parse_ipv4_legacy("4294967295"), Some(Ipv4Addr::BROADCAST));
    assert_eq!(parse_ipv4_legacy("0"), Some(Ipv4Addr::UNSPECIFIED));
    assert_eq!(parse_ipv4_legacy("1.2.3.256"), None);
    assert_eq!(parse_ipv4_legacy(""), None);
    assert_eq!(parse_ipv4_legacy("1.2.3.4."), None);
    // Not hexadecimal, so not numeric: an ordinary (odd) host name.
    assert_eq!(target("0x1g"), Ok("0x1g".to_owned()));
}

#[test]
fn ipv6_literals() {
    assert_eq!(target("[2001:DB8::1]"), Ok("2001:db8::1".to_owned()));
    assert_eq!(target("2001:db8::1"), Ok("2001:db8::1".to_owned()));
    assert_eq!(target("[fe80::1%eth0]"), Err(HostError::BadIpv6));
    assert_eq!(target("[::1"), Err(HostError::BadIpv6));
    assert_eq!(Host::parse("10.0.0.1"), Err(HostError::NotAName));
}

#[test]
fn entries_parse_to_canonical_patterns() {
    let cases = [
        ("Example.COM", "example.com"),
        ("example.com:443", "example.com:443"),
        ("*.GitHubUserContent.com:443", "*.githubusercontent.com:443"),
        ("0x7f.1:80", "127.0.0.1:80"),
        ("[::1]:443", "[::1]:443"),
        ("::1", "[::1]"),
        ("2001:db8::1", "[2001:db8::1]"),
        ("10.0.0.0/8", "10.0.0.0/8"),
        ("[fd00::/8]:53", "[fd00::/8]:53"),
        ("fd00::/8", "[fd00::/8]"),
        ("[::ffff:10.0.0.0/104]", "10.0.0.0/8"),
        ("192.0.2.1/32", "192.0.2.1"),
        ("*.example.co.uk", "*.example.co.uk"),
        ("*.github.io", "*.github.io"),
    ];
    for (input, canonical) in cases {
        let e = Endpoint::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
        assert_eq!(e.to_string(), canonical, "{input}");
        assert_eq!(Endpoint::parse(canonical), Ok(e), "{input}");
    }
}

#[test]
fn bad_entries_are_refused() {
    let cases = [
        ("", HostError::Empty),
        ("*", HostError::MatchesEverything),
        ("*:443", HostError::MatchesEverything),
        ("*.com", HostError::OverBroad("com".to_owned())),
        ("*.COM.", HostError::OverBroad("com".to_owned())),
        ("*.co.uk", HostError::OverBroad("co.uk".to_owned())),
        ("*.localhost", HostError::OverBroad("localhost".to_owned())),
        ("a.*.com", HostError::WildcardPosition),
        ("*example.com", HostError::WildcardPosition),
        ("*.*.example.com", HostError::WildcardPosition),
        ("*.10.0.0.1", HostError::WildcardIp),
        ("::1:443", HostError::AmbiguousIpv6),
        ("2001:db8::1:8080", HostError::AmbiguousIpv6),
        ("example.com:0", HostError::BadPort),
        ("example.com:65536", HostError::BadPort),
        ("example.com:+1", HostError::BadPort),
        ("example.com:", HostError::BadPort),
        ("example.com:https", HostError::BadPort),
        ("[::1]443", HostError::BadIpv6),
        ("[::1]:0", HostError::BadPort),
        ("10.0.0.1/8", HostError::HostBitsSet),
        ("10.0.0.0/33", HostError::BadCidr),
        ("10.0.0.0/", HostError::BadCidr),
        ("0.0.0.0/0", HostError::MatchesEverything),
        ("[::/0]", HostError::MatchesEverything),
        ("[::ffff:0.0.0.0/96]", HostError::MatchesEverything),
        ("example.com/8", HostError::BadCidr),
    ];
    for (input, error) in cases {
        assert_eq!(Endpoint::parse(input), Err(error), "{input:?}");
    }
}

#[test]
fn wildcard_matches_subdomains_never_the_apex() {
    let w = Endpoint::parse("*.example.com").unwrap();
    let name = |n: &str| Target::parse(n).unwrap();
    assert!(w.matches(&name("a.example.com"), 1));
    assert!(w.matches(&name("a.b.example.com"), 1));
    assert!(!w.matches(&name("example.com"), 1));
    assert!(!w.matches(&name("badexample.com"), 1));
    assert!(!w.matches(&name("example.com.evil"), 1));
}

#[test]
fn specificity_order() {
    let s = |e: &str| Endpoint::parse(e).unwrap().specificity();
    let ordered = [
        "*.com.example",
        "*.com.example:443",
        "*.a.com.example",
        "api.example.com",
        "api.example.com:443",
    ];
    for pair in ordered.windows(2) {
        assert!(s(pair[0]) < s(pair[1]), "{} < {}", pair[0], pair[1]);
    }
    assert!(s("10.0.0.0/8") < s("10.1.0.0/16"));
    assert!(s("10.1.0.0/16") < s("10.1.0.0/16:22"));
    assert!(s("10.1.0.0/16:22") < s("10.1.2.3"));
}

/// Host-like strings: names, numbers, mixed case, dots, a few Unicode letters.
fn host_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9_-]{1,10}(\\.[a-zA-Z0-9_-]{1,10}){0,3}\\.?",
        "(0x[0-9a-f]{1,8}|0[0-7]{1,11}|[0-9]{1,10})(\\.(0x[0-9a-f]{1,4}|[0-9]{1,3})){0,3}",
        "[a-zäöüßé]{1,8}\\.[a-z]{2,5}",
        any::<Ipv6Addr>().prop_map(|a| format!("[{a}]")),
    ]
}

proptest! {
    #[test]
    fn canonicalisation_is_idempotent(text in host_text()) {
        if let Ok(t) = Target::parse(&text) {
            prop_assert_eq!(Target::parse(&t.to_string()), Ok(t));
        }
    }

    #[test]
    fn entry_canonicalisation_is_idempotent(text in host_text(), port in proptest::option::of(1u16..)) {
        let entry = match port { Some(p) if text.starts_with('[') => format!("{text}:{p}"), Some(p) if !text.contains(':') => format!("{text}:{p}"), _ => text };
        if let Ok(e) = Endpoint::parse(&entry) {
            prop_assert_eq!(Endpoint::parse(&e.to_string()), Ok(e));
        }
    }

    #[test]
    fn every_ipv4_form_parses_to_the_same_address(v in any::<u32>()) {
        let a = Ipv4Addr::from(v);
        let [b0, b1, b2, b3] = a.octets();
        let forms = [
            a.to_string(),
            v.to_string(),
            format!("{v:#x}"),
            format!("0{v:o}"),
            format!("{b0}.{}", v & 0x00ff_ffff),
            format!("{b0:#x}.{b1}.{}", v & 0xffff),
            format!("0{b0:o}.0{b1:o}.0{b2:o}.0{b3:o}"),
            format!("[::ffff:{a}]"),
            format!("{a}."),
        ];
        for f in forms {
            prop_assert_eq!(Target::parse(&f), Ok(Target::Ip(IpAddr::V4(a))), "{}", f);
        }
    }

    #[test]
    fn wildcard_never_matches_its_apex(name in "[a-z0-9]{1,8}\\.[a-z0-9]{1,8}\\.[a-z]{2,6}", sub in "[a-z0-9]{1,8}") {
        if let (Ok(pattern), Ok(apex), Ok(child)) = (
            Endpoint::parse(&format!("*.{name}")),
            Target::parse(&name),
            Target::parse(&format!("{sub}.{name}")),
        ) {
            prop_assert!(!pattern.matches(&apex, 443));
            prop_assert!(pattern.matches(&child, 443));
        }
    }
}
