//! Fuzzes the DNS response and query parsers. The expected ID is the input's own, so the
//! parser gets past the ID check and into the question and answer sections.
#![no_main]

use airlock_net::resolve::dns::{self, QType};
use airlock_policy::Host;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(name) = Host::parse("a.example") else {
        return;
    };
    let id = dns::message_id(data).unwrap_or(0);
    let _ = dns::parse_response(data, id, &name, QType::A);
    let _ = dns::parse_response(data, id, &name, QType::Aaaa);
    let _ = dns::parse_query(data);
});
