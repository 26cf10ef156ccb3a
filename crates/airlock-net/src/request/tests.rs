#![allow(clippy::indexing_slicing, clippy::cast_possible_truncation)]

use super::*;
use proptest::prelude::*;

fn testdata(name: &str) -> Vec<u8> {
    let path = format!("{}/testdata/request/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

const CAPTURED: &[&str] = &[
    "curl-connect.http",
    "curl-get-absolute.http",
    "curl-post-json.http",
];

fn h(name: &str, value: &str) -> Header {
    Header {
        name: name.into(),
        value: value.into(),
    }
}

fn complete(buf: &[u8]) -> (RequestHead, usize) {
    match parse(buf) {
        Parse::Complete { head, consumed } => (head, consumed),
        other => panic!("{:?}: {other:?}", String::from_utf8_lossy(buf)),
    }
}

fn rejected(buf: &[u8]) -> RequestError {
    match parse(buf) {
        Parse::Rejected(e) => e,
        other => panic!("{:?}: {other:?}", String::from_utf8_lossy(buf)),
    }
}

#[test]
fn curl_connect() {
    let buf = testdata("curl-connect.http");
    assert_eq!(
        complete(&buf),
        (
            RequestHead {
                method: "CONNECT".into(),
                target: RequestTarget::Connect {
                    host: "example.com".into(),
                    port: 443
                },
                version: Version::Http11,
                headers: vec![
                    h("Host", "example.com:443"),
                    h("User-Agent", "curl/7.88.1"),
                    h("Proxy-Connection", "Keep-Alive"),
                ],
                host_header: Some(Authority {
                    host: "example.com".into(),
                    port: Some(443)
                }),
                body: BodyFraming::None,
            },
            buf.len()
        )
    );
}

#[test]
fn curl_get_absolute() {
    let buf = testdata("curl-get-absolute.http");
    assert_eq!(
        complete(&buf),
        (
            RequestHead {
                method: "GET".into(),
                target: RequestTarget::Absolute {
                    host: "example.com".into(),
                    port: 80,
                    path: "/index.html?q=1".into()
                },
                version: Version::Http11,
                headers: vec![
                    h("Host", "example.com"),
                    h("User-Agent", "curl/7.88.1"),
                    h("Accept", "*/*"),
                    h("Proxy-Connection", "Keep-Alive"),
                ],
                host_header: Some(Authority {
                    host: "example.com".into(),
                    port: None
                }),
                body: BodyFraming::None,
            },
            buf.len()
        )
    );
}

#[test]
fn curl_post_leaves_the_body() {
    let buf = testdata("curl-post-json.http");
    let (head, consumed) = complete(&buf);
    assert_eq!(&buf[consumed..], b"{\"a\":1}");
    assert_eq!(head.body, BodyFraming::Length(7));
    assert_eq!(
        head.target,
        RequestTarget::Absolute {
            host: "api.example.com".into(),
            port: 8080,
            path: "/v1/items".into()
        }
    );
}

#[test]
fn every_prefix_of_captured_heads_is_incomplete() {
    for name in CAPTURED {
        let buf = testdata(name);
        let (_, consumed) = complete(&buf);
        for n in 0..consumed {
            assert_eq!(parse(&buf[..n]), Parse::Incomplete, "{name} prefix {n}");
        }
    }
}

#[test]
fn targets() {
    let get = |target: &str| {
        let req = format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n");
        parse(req.as_bytes())
    };
    let abs = |host: &str, port, path: &str| RequestTarget::Absolute {
        host: host.into(),
        port,
        path: path.into(),
    };
    for (target, want) in [
        ("http://a.example", abs("a.example", 80, "/")),
        ("HTTP://a.example:8080?x=1", abs("a.example", 8080, "/?x=1")),
        ("http://[::1]:81/p/q", abs("[::1]", 81, "/p/q")),
        ("http://[2001:db8::1]/", abs("[2001:db8::1]", 80, "/")),
        ("http://127.0.0.1:9/a%20b", abs("127.0.0.1", 9, "/a%20b")),
    ] {
        match get(target) {
            Parse::Complete { head, .. } => assert_eq!(head.target, want, "{target}"),
            other => panic!("{target}: {other:?}"),
        }
    }
    for (target, want) in [
        ("/index.html", RequestError::NotAbsolute),
        ("*", RequestError::NotAbsolute),
        ("https://a.example/", RequestError::Scheme),
        ("ftp://a.example/", RequestError::Scheme),
        ("http://user:pw@a.example/", RequestError::UserInfo),
        ("http://a.example/#frag", RequestError::Fragment),
        ("http://a.example:0/", RequestError::Port),
        ("http://a.example:65536/", RequestError::Port),
        ("http://a.example:/", RequestError::Port),
        ("http://a.example:+80/", RequestError::Port),
        ("http:///path", RequestError::Target),
        ("http://a%2eexample/", RequestError::Target),
        ("http://[::1%25eth0]/", RequestError::Target),
        ("http://[::1/", RequestError::Target),
        ("http://[::1]x/", RequestError::Target),
        ("a.example:80", RequestError::Target),
    ] {
        assert_eq!(get(target), Parse::Rejected(want), "{target}");
    }
}

#[test]
fn connect_targets() {
    let connect = |target: &str| {
        let req = format!("CONNECT {target} HTTP/1.1\r\n\r\n");
        parse(req.as_bytes())
    };
    match connect("[2001:db8::1]:443") {
        Parse::Complete { head, .. } => assert_eq!(
            head.target,
            RequestTarget::Connect {
                host: "[2001:db8::1]".into(),
                port: 443
            }
        ),
        other => panic!("{other:?}"),
    }
    for (target, want) in [
        ("a.example", RequestError::Port),
        ("a.example:", RequestError::Port),
        ("a.example:99999", RequestError::Port),
        ("a.example:443:1", RequestError::Port),
        ("http://a.example:443", RequestError::Port),
        ("a.example:443/", RequestError::Port),
        ("user@a.example:443", RequestError::Target),
        (":443", RequestError::Target),
    ] {
        assert_eq!(connect(target), Parse::Rejected(want), "{target}");
    }
}

#[test]
fn rejections() {
    let cases: &[(&[u8], RequestError)] = &[
        (b"GET http://a/ HTTP/1.1\nHost: a\r\n\r\n", RequestError::BareLf),
        (b"GET http://a/ HTTP/1.1\r\nHost: a\n\r\n", RequestError::BareLf),
        (b"GET http://a/ HTTP/1.1\r\nHost: a\r\n\n", RequestError::BareLf),
        (b"GET http://a/ HTTP/1.1\r\nHost: a\rb\r\n\r\n", RequestError::BareCr),
        (b"GET http://a/ HTTP/1.1\r\nHost: a\rb", RequestError::BareCr),
        (b"\r\nGET http://a/ HTTP/1.1\r\n", RequestError::LeadingEmptyLine),
        (b"GET  http://a/ HTTP/1.1\r\n", RequestError::RequestLine),
        (b"GET http://a/ HTTP/1.1 \r\n", RequestError::RequestLine),
        (b"GET http://a/\r\n", RequestError::RequestLine),
        (b"GET\thttp://a/ HTTP/1.1\r\n", RequestError::RequestLine),
        (b"G\tT http://a/ HTTP/1.1\r\n", RequestError::Method),
        (b"G(T http://a/ HTTP/1.1\r\n", RequestError::Method),
        (b"GET http://a/ HTTP/2.0\r\n", RequestError::Version),
        (b"GET http://a/ http/1.1\r\n", RequestError::Version),
        (b"GET http://a/\xff HTTP/1.1\r\n", RequestError::Target),
        (b"GET http://a/ HTTP/1.1\r\n folded\r\n", RequestError::ObsFold),
        (b"GET http://a/ HTTP/1.1\r\n\tfolded\r\n", RequestError::ObsFold),
        (b"GET http://a/ HTTP/1.1\r\nHost : a\r\n", RequestError::HeaderSyntax),
        (b"GET http://a/ HTTP/1.1\r\nno colon\r\n", RequestError::HeaderSyntax),
        (b"GET http://a/ HTTP/1.1\r\n: empty\r\n", RequestError::HeaderSyntax),
        (b"GET http://a/ HTTP/1.1\r\nX: a\0b\r\n", RequestError::HeaderValue),
        (b"GET http://a/ HTTP/1.1\r\nX: a\x7fb\r\n", RequestError::HeaderValue),
        (b"GET http://a/ HTTP/1.1\r\n\r\n", RequestError::MissingHost),
        (b"GET http://a/ HTTP/1.0\r\nX: y\r\n\r\n", RequestError::MissingHost),
        (
            b"GET http://a/ HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n",
            RequestError::DuplicateHost,
        ),
        (
            b"CONNECT a:443 HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n",
            RequestError::DuplicateHost,
        ),
        (b"GET http://a/ HTTP/1.1\r\nHost: a b\r\n\r\n", RequestError::BadHost),
        (b"GET http://a/ HTTP/1.1\r\nHost: a:x\r\n\r\n", RequestError::BadHost),
        (b"GET http://a/ HTTP/1.1\r\nHost: \r\n\r\n", RequestError::BadHost),
        (
            b"POST http://a/ HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
            RequestError::ContentLength,
        ),
        (
            b"POST http://a/ HTTP/1.1\r\nHost: a\r\nContent-Length: 1, 1\r\n\r\n",
            RequestError::ContentLength,
        ),
        (
            b"POST http://a/ HTTP/1.1\r\nHost: a\r\nContent-Length: +1\r\n\r\n",
            RequestError::ContentLength,
        ),
        (
            b"POST http://a/ HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n",
            RequestError::ContentLength,
        ),
        (
            b"POST http://a/ HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            RequestError::LengthAndEncoding,
        ),
        (
            b"POST http://a/ HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
            RequestError::LengthAndEncoding,
        ),
        (
            b"POST http://a/ HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            RequestError::TransferEncoding,
        ),
        (
            b"POST http://a/ HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            RequestError::TransferEncoding,
        ),
        (
            b"POST http://a/ HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
            RequestError::TransferEncoding,
        ),
        (
            b"CONNECT a:443 HTTP/1.1\r\nContent-Length: 5\r\n\r\n",
            RequestError::ConnectBody,
        ),
        (
            b"CONNECT a:443 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            RequestError::ConnectBody,
        ),
    ];
    for (buf, want) in cases {
        assert_eq!(rejected(buf), *want, "{:?}", String::from_utf8_lossy(buf));
    }
}

#[test]
fn accepted_variants() {
    let (head, _) = complete(
        b"PATCH http://a.example/x HTTP/1.0\r\nhOsT:a.example:80 \r\nX-Empty:\r\nX-Obs: caf\xc3\xa9\t\r\nContent-Length: 0\r\n\r\n",
    );
    assert_eq!(head.method, "PATCH");
    assert_eq!(head.version, Version::Http10);
    assert_eq!(
        head.host_header,
        Some(Authority {
            host: "a.example".into(),
            port: Some(80)
        })
    );
    assert_eq!(head.headers[1], h("X-Empty", ""));
    assert_eq!(head.headers[2].value, b"caf\xc3\xa9".to_vec());
    assert_eq!(head.body, BodyFraming::None);
    let (head, _) =
        complete(b"POST http://a/ HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n");
    assert_eq!(head.body, BodyFraming::Chunked);
    let (head, _) = complete(b"CONNECT [::1]:8443 HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(head.host_header, None);
}

#[test]
fn limits() {
    let mut long_line = b"GET http://a/".to_vec();
    long_line.extend(std::iter::repeat_n(b'a', MAX_LINE_LEN));
    assert_eq!(rejected(&long_line), RequestError::LineTooLong);
    long_line.extend(b" HTTP/1.1\r\n");
    assert_eq!(rejected(&long_line), RequestError::LineTooLong);

    let mut many = b"GET http://a/ HTTP/1.1\r\nHost: a\r\n".to_vec();
    for i in 0..MAX_HEADERS {
        many.extend(format!("X-{i}: v\r\n").as_bytes());
    }
    assert_eq!(rejected(&many), RequestError::TooManyHeaders);

    // Exactly MAX_HEADERS fields, Host included, is fine.
    let mut ok = b"GET http://a/ HTTP/1.1\r\nHost: a\r\n".to_vec();
    for i in 1..MAX_HEADERS {
        ok.extend(format!("X-{i}: v\r\n").as_bytes());
    }
    ok.extend(b"\r\n");
    assert_eq!(complete(&ok).0.headers.len(), MAX_HEADERS);

    // A head of exactly MAX_HEAD_LEN bytes is accepted, one byte more is not.
    let head_of = |len: usize| {
        let mut buf = b"GET http://a/ HTTP/1.1\r\nHost: a\r\n".to_vec();
        loop {
            // Room left for header lines, keeping two bytes for the final CRLF; a line
            // `X:` + k bytes + CRLF is k + 4 long.
            let room = len - buf.len() - 2;
            let k = room.min(4004) - 4;
            buf.extend(b"X:");
            buf.extend(std::iter::repeat_n(b'v', k));
            buf.extend(b"\r\n");
            if room <= 4004 {
                break;
            }
        }
        buf.extend(b"\r\n");
        buf
    };
    let exact = head_of(MAX_HEAD_LEN);
    assert_eq!(exact.len(), MAX_HEAD_LEN);
    assert_eq!(complete(&exact).1, MAX_HEAD_LEN);
    let over = head_of(MAX_HEAD_LEN + 1);
    assert_eq!(over.len(), MAX_HEAD_LEN + 1);
    assert_eq!(rejected(&over), RequestError::HeadTooLarge);
    assert_eq!(parse(&over[..MAX_HEAD_LEN - 1]), Parse::Incomplete);
    assert_eq!(rejected(&over[..MAX_HEAD_LEN]), RequestError::HeadTooLarge);

    // A megabyte of one header line is rejected on its first MAX_LINE_LEN bytes.
    let mut huge = b"GET http://a/ HTTP/1.1\r\nX: ".to_vec();
    huge.extend(std::iter::repeat_n(b'v', 1 << 20));
    assert_eq!(rejected(&huge), RequestError::LineTooLong);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        if let Parse::Complete { consumed, .. } = parse(&bytes) {
            prop_assert!(consumed <= bytes.len() && consumed <= MAX_HEAD_LEN);
        }
    }

    #[test]
    fn mutated_captures_never_panic(
        which in 0..CAPTURED.len(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
    ) {
        let mut buf = testdata(CAPTURED[which]);
        for (i, b) in edits {
            let i = i.index(buf.len());
            buf[i] = b;
        }
        let _ = parse(&buf);
    }

    #[test]
    fn generated_requests_roundtrip(
        host in "[a-z][a-z0-9-]{0,20}(\\.[a-z0-9]{1,10}){0,3}",
        port in 1u16..,
        path in "(/[A-Za-z0-9._~%!$&'()*+,;=:@-]{0,12}){0,4}(\\?[A-Za-z0-9=&]{0,10})?",
        method in "[A-Z]{1,10}",
        headers in proptest::collection::vec(("[A-Za-z][A-Za-z0-9-]{0,15}", "[ -~]{0,40}"), 0..10),
        split in any::<prop::sample::Index>(),
    ) {
        prop_assume!(method != "CONNECT");
        let headers: Vec<(String, String)> = headers
            .into_iter()
            .filter(|(n, _)| {
                !["host", "content-length", "transfer-encoding"].contains(&n.to_ascii_lowercase().as_str())
            })
            .map(|(n, v)| (n, v.trim_matches([' ', '\t']).to_owned()))
            .collect();
        let mut req = format!("{method} http://{host}:{port}{path} HTTP/1.1\r\nHost: {host}\r\n");
        for (n, v) in &headers {
            req.push_str(&format!("{n}: {v}\r\n"));
        }
        req.push_str("\r\nbody");
        let bytes = req.as_bytes();
        let (head, consumed) = match parse(bytes) {
            Parse::Complete { head, consumed } => (head, consumed),
            other => return Err(TestCaseError::fail(format!("{other:?}"))),
        };
        prop_assert_eq!(&bytes[consumed..], b"body");
        let want_path = if path.is_empty() { "/".to_owned() } else if path.starts_with('?') { format!("/{path}") } else { path.clone() };
        prop_assert_eq!(head.target, RequestTarget::Absolute { host: host.clone(), port, path: want_path });
        prop_assert_eq!(head.headers.len(), headers.len() + 1);
        for (got, (n, v)) in head.headers[1..].iter().zip(&headers) {
            prop_assert_eq!(&got.name, n);
            prop_assert_eq!(&got.value, v.as_bytes());
        }
        // Every split point of a valid head is Incomplete before the end.
        let cut = split.index(consumed);
        prop_assert_eq!(parse(&bytes[..cut]), Parse::Incomplete);
    }

}
