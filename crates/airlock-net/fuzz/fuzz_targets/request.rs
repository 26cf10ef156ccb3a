//! Fuzzes the request-head parser and the chunked-body tracker with the same bytes.
#![no_main]

use airlock_net::request::{self, ChunkedBody, MAX_HEAD_LEN, Parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Parse::Complete { consumed, .. } = request::parse(data) {
        assert!(consumed <= data.len() && consumed <= MAX_HEAD_LEN);
    }
    let mut body = ChunkedBody::new();
    if let Ok(n) = body.feed(data) {
        assert!(n == data.len() || body.is_done());
    }
    let _ = request::scan_status(data);
});
