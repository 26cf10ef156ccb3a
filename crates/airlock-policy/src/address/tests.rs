use std::net::IpAddr;

use super::*;
use crate::host::Endpoint;

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

#[test]
fn address_classes() {
    let cases = [
        ("8.8.8.8", AddressClass::Public),
        ("169.254.169.254", AddressClass::Metadata),
        ("fd00:ec2::254", AddressClass::Metadata),
        ("::ffff:169.254.169.254", AddressClass::Metadata),
        ("127.0.0.1", AddressClass::Loopback),
        ("::1", AddressClass::Loopback),
        ("10.1.2.3", AddressClass::Private),
        ("172.31.255.255", AddressClass::Private),
        ("172.32.0.1", AddressClass::Public),
        ("192.168.1.1", AddressClass::Private),
        ("fd12::1", AddressClass::Private),
        ("fe80::1", AddressClass::LinkLocal),
        ("100.64.0.1", AddressClass::SharedCgnat),
        ("224.0.0.1", AddressClass::Multicast),
        ("ff02::1", AddressClass::Multicast),
        ("0.0.0.0", AddressClass::Unspecified),
        ("::", AddressClass::Unspecified),
        ("255.255.255.255", AddressClass::Reserved),
        ("192.0.2.1", AddressClass::Reserved),
        ("2001:db8::1", AddressClass::Reserved),
        ("::7f00:1", AddressClass::Reserved),
        ("64:ff9b::7f00:1", AddressClass::Loopback),
        ("64:ff9b::808:808", AddressClass::Public),
        ("2002:a00:1::", AddressClass::Private),
        ("2606:4700::1111", AddressClass::Public),
    ];
    for (addr, class) in cases {
        assert_eq!(AddressClass::of(ip(addr)), class, "{addr}");
    }
}

#[test]
fn every_known_metadata_endpoint_in_every_spelling_is_metadata() {
    let cases = [
        "169.254.169.254",
        "169.254.170.2",
        "169.254.0.0",
        "169.254.255.255",
        "100.100.100.200",
        "192.0.0.192",
        "fd00:ec2::254",
        "::ffff:169.254.170.2",
        "::ffff:100.100.100.200",
        "64:ff9b::a9fe:aa02",
        "64:ff9b::6464:64c8",
        "64:ff9b::c000:c0",
        "2002:a9fe:a9fe::",
        "2002:6464:64c8::1",
    ];
    for addr in cases {
        assert_eq!(AddressClass::of(ip(addr)), AddressClass::Metadata, "{addr}");
    }
    // Neighbours keep their class.
    let neighbours = [
        ("169.253.255.255", AddressClass::Public),
        ("169.255.0.0", AddressClass::Public),
        ("100.100.100.199", AddressClass::SharedCgnat),
        ("100.100.100.201", AddressClass::SharedCgnat),
        ("192.0.0.191", AddressClass::Reserved),
        ("192.0.0.193", AddressClass::Reserved),
        ("fd00:ec2::253", AddressClass::Private),
        ("fd00:ec2::255", AddressClass::Private),
    ];
    for (addr, class) in neighbours {
        assert_eq!(AddressClass::of(ip(addr)), class, "{addr}");
    }
}

fn covered(entry: &str) -> Option<String> {
    covered_metadata(Endpoint::parse(entry).unwrap().host()).map(|o| o.block)
}

#[test]
fn blocks_covering_a_metadata_address_are_found_in_their_own_family() {
    let cases = [
        ("169.254.0.0/16", Some("169.254.0.0/16")),
        ("169.254.170.0/24:80", Some("169.254.0.0/16")),
        ("169.0.0.0/8", Some("169.254.0.0/16")),
        ("100.64.0.0/10", Some("100.100.100.200/32")),
        ("100.100.100.200/31", Some("100.100.100.200/32")),
        ("192.0.0.0/24", Some("192.0.0.192/32")),
        ("192.0.0.0/16", Some("192.0.0.192/32")),
        ("128.0.0.0/1", Some("169.254.0.0/16")),
        ("fd00::/8", Some("fd00:ec2::254/128")),
        ("[fc00::/7]:443", Some("fd00:ec2::254/128")),
        ("64:ff9b::/96", Some("64:ff9b::a9fe:0/112")),
        ("2002::/16", Some("2002:a9fe::/32")),
        ("2000::/3", Some("2002:a9fe::/32")),
        ("[::ffff:169.254.0.0/112]", Some("169.254.0.0/16")),
        // Exact addresses, names and blocks clear of metadata.
        ("169.254.170.2", None),
        ("169.254.169.254:80", None),
        ("100.100.100.200", None),
        ("[fd00:ec2::254]", None),
        ("10.0.0.0/8", None),
        ("100.64.0.0/11", None),
        ("192.0.0.0/25", None),
        ("fd01::/16", None),
        ("metadata.example", None),
        ("*.example.com", None),
    ];
    for (entry, want) in cases {
        assert_eq!(covered(entry).as_deref(), want, "{entry}");
    }
}

#[test]
fn an_overlap_names_the_block_and_what_serves_there() {
    let o = covered_metadata(Endpoint::parse("100.100.0.0/16").unwrap().host()).unwrap();
    assert_eq!(
        o.to_string(),
        "100.100.100.200/32 (Alibaba Cloud instance metadata)"
    );
}
