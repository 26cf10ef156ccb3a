//! Fuzzing the HTTP path normalisation behind `decide_http` (`normalize_http_path`): the
//! gateway forwards the path as the guest sent it, so whatever the upstream takes it to mean
//! must be allowed whenever the path is. Upstreams resolve paths differently, so the property
//! is checked against several readings ([`readings`]): RFC 3986 after one percent-decoding,
//! the same with `//` merged (nginx), each segment decoded on its own (no `%2f` splitting),
//! and servlet containers (`;parameters` dropped per segment before decoding). Double
//! percent-decoding upstreams are out of scope (they are broken for every proxy). Replays
//! `testdata/corpus/http-paths/` on every run (`docs/fuzzing.md`).

use std::path::Path;

use proptest::prelude::*;

use super::*;
use crate::load::load_with;
use crate::source::Env;

/// `default` cases per run unless `PROPTEST_CASES` says otherwise.
fn cases(default: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

const HOST: &str = "api.example.com";

/// `/public/**` open, `/public/admin/**` and `/public/*/secret` closed again, the rest denied.
fn policy() -> &'static Policy {
    static POLICY: std::sync::OnceLock<Policy> = std::sync::OnceLock::new();
    POLICY.get_or_init(load_policy)
}

fn load_policy() -> Policy {
    let text = r#"
[network]
default = "deny"
[[network.http]]
host = "api.example.com"
path = "/public/**"
action = "allow"
[[network.http]]
host = "api.example.com"
path = "/public/admin/**"
action = "deny"
[[network.http]]
host = "api.example.com"
path = "/public/*/secret"
action = "deny"
"#;
    load_with(text, Path::new("t.toml"), &Env::default()).unwrap_or_else(|e| panic!("{e}"))
}

/// Percent-decodes `s`; `None` for a bad escape (the upstream would refuse the request).
fn pct_decode(s: &str) -> Option<String> {
    let mut out = Vec::new();
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        if b != b'%' {
            out.push(b);
            continue;
        }
        let hi = char::from(bytes.next()?).to_digit(16)?;
        let lo = char::from(bytes.next()?).to_digit(16)?;
        out.push(u8::try_from(hi * 16 + lo).ok()?);
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}

/// Resolves dot segments (RFC 3986 §5.2.4) over `segments`: `(segments, trailing slash)`.
/// With `merge`, empty segments are dropped (`//` read as `/`).
fn resolve<'a>(segments: impl Iterator<Item = &'a str>, merge: bool) -> (Vec<String>, bool) {
    let mut out: Vec<String> = Vec::new();
    let mut trailing = false;
    for s in segments {
        trailing = false;
        match s {
            "." => trailing = true,
            ".." => {
                out.pop();
                trailing = true;
            }
            "" if merge => trailing = true,
            s => out.push(s.to_owned()),
        }
    }
    if out.last().is_some_and(String::is_empty) {
        out.pop();
        trailing = true;
    }
    (out, trailing)
}

/// The ways an upstream may read `raw` (request target path, maybe with a query): each as
/// segments and a trailing slash. A reading the upstream would refuse is left out.
fn readings(raw: &str) -> Vec<(Vec<String>, bool)> {
    let path = raw.split(['?', '#']).next().unwrap_or_default();
    let Some(rest) = path.strip_prefix('/') else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if let Some(decoded) = pct_decode(rest) {
        out.push(resolve(decoded.split('/'), false));
        out.push(resolve(decoded.split('/'), true));
    }
    let each: Option<Vec<String>> = rest.split('/').map(pct_decode).collect();
    if let Some(each) = each {
        out.push(resolve(each.iter().map(String::as_str), true));
    }
    let servlet: Option<Vec<String>> = rest
        .split('/')
        .map(|s| pct_decode(s.split(';').next().unwrap_or_default()))
        .collect();
    if let Some(servlet) = servlet {
        out.push(resolve(servlet.iter().map(String::as_str), true));
    }
    out
}

/// A reading as a path the gateway takes literally: every character that could be read as
/// structure (`%`, `/` inside a segment, `;`, `?`, `#`, `\`) escaped.
fn render((segments, trailing): &(Vec<String>, bool)) -> String {
    let mut out = String::new();
    for s in segments {
        out.push('/');
        for c in s.chars() {
            match c {
                '%' | '/' | ';' | '?' | '#' | '\\' | '\0' => {
                    out.push_str(&format!("%{:02x}", u32::from(c)));
                }
                c => out.push(c),
            }
        }
    }
    if out.is_empty() || *trailing {
        out.push('/');
    }
    out
}

/// A normalised path is canonical: absolute, no empty, `.` or `..` segment, no NUL or `\`,
/// and normalising it again (escaped so it reads the same) changes nothing.
fn check_canonical(raw: &str) -> Result<(), TestCaseError> {
    let Some(out) = normalize_http_path(raw) else {
        return Ok(());
    };
    prop_assert!(out.starts_with('/'), "{:?} -> {:?}", raw, out);
    let inner = out.strip_prefix('/').unwrap_or_default();
    let inner = inner.strip_suffix('/').unwrap_or(inner);
    if !inner.is_empty() {
        for s in inner.split('/') {
            prop_assert!(!matches!(s, "" | "." | ".."), "{:?} -> {:?}", raw, out);
        }
    }
    prop_assert!(!out.contains(['\0', '\\']), "{:?} -> {:?}", raw, out);
    let escaped: String = out
        .chars()
        .map(|c| match c {
            '%' | '?' | '#' => format!("%{:02x}", u32::from(c)),
            c => c.to_string(),
        })
        .collect();
    prop_assert_eq!(
        normalize_http_path(&escaped),
        Some(out.clone()),
        "{:?}",
        raw
    );
    Ok(())
}

/// An allowed path stays allowed whichever way the upstream reads it.
fn check_readings(p: &Policy, raw: &str) -> Result<(), TestCaseError> {
    if !p.decide_http(HOST, 443, "GET", raw).is_allowed() {
        return Ok(());
    }
    for r in readings(raw) {
        let served = render(&r);
        let d = p.decide_http(HOST, 443, "GET", &served);
        prop_assert!(
            d.is_allowed(),
            "{:?} is allowed, but an upstream may serve {:?}: {:?}",
            raw,
            served,
            d
        );
    }
    Ok(())
}

/// Segments mixing names the rules mention with every spelling of `.`, `..`, `/`, `\`,
/// path parameters and bad escapes.
fn segment() -> impl Strategy<Value = String> {
    let pieces = prop_oneof![
        Just("public"),
        Just("admin"),
        Just("secret"),
        Just("x"),
        Just(""),
        Just("."),
        Just(".."),
        Just("%2e"),
        Just("%2E"),
        Just(".%2e"),
        Just("%2e."),
        Just("%2e%2e"),
        Just("%252e"),
        Just("%2f"),
        Just("%2F"),
        Just("%5c"),
        Just("\\"),
        Just(";"),
        Just(";x=1"),
        Just("%3b"),
        Just("%00"),
        Just("%"),
        Just("%g1"),
        Just("%c3%a9"),
        Just("%ff"),
        Just("é"),
        Just("?q=/../"),
        Just("#f"),
    ];
    proptest::collection::vec(pieces, 1..3).prop_map(|v| v.concat())
}

fn raw_path() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => proptest::collection::vec(segment(), 0..6).prop_map(|s| format!("/{}", s.join("/"))),
        2 => proptest::collection::vec(segment(), 0..5)
            .prop_map(|s| format!("/public/{}", s.join("/"))),
        1 => any::<String>(),
        1 => "[/.%2eEfF;a-c]{0,24}",
    ]
}

proptest! {
    #![proptest_config(cases(2000))]

    /// Whatever the text, normalisation does not panic and its result is canonical.
    #[test]
    fn normalised_paths_are_canonical(raw in raw_path()) {
        check_canonical(&raw)?;
    }

    /// An allowed request is allowed under every upstream reading of its path: no spelling
    /// of a dot segment, slash or parameter gets a request out of `/public/` or into
    /// `/public/admin/`.
    #[test]
    fn no_upstream_reading_escapes_a_rule(raw in raw_path()) {
        check_readings(policy(), &raw)?;
    }
}

/// Replays `testdata/corpus/http-paths/*.paths`: each line is `allow`, `deny` or `invalid`,
/// one space, then the raw path; `#` lines are comments. Each path also goes through the
/// property checks.
#[test]
fn corpus_replays() {
    let p = policy();
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/corpus/http-paths");
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{dir}: {e}")) {
        let path = entry.unwrap_or_else(|e| panic!("{e}")).path();
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{e}"));
        for (n, line) in text.lines().enumerate() {
            let at = format!("{}:{}", path.display(), n + 1);
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (want, raw) = line.split_once(' ').unwrap_or((line, ""));
            check_canonical(raw).unwrap_or_else(|e| panic!("{at}: {e}"));
            check_readings(p, raw).unwrap_or_else(|e| panic!("{at}: {e}"));
            let d = p.decide_http(HOST, 443, "GET", raw);
            let got = match (d.is_allowed(), d.reason) {
                (true, _) => "allow",
                (false, reason::INVALID_REQUEST) => "invalid",
                (false, _) => "deny",
            };
            assert_eq!(got, want, "{at}: {raw:?}: {d:?}");
            seen += 1;
        }
    }
    assert!(seen >= 20, "only {seen} corpus paths");
}

#[test]
fn the_readings_are_what_upstreams_do() {
    let r = |raw: &str| readings(raw).iter().map(render).collect::<Vec<_>>();
    // RFC 3986, merged, per segment, servlet.
    assert_eq!(r("/a/b/."), ["/a/b/", "/a/b/", "/a/b/", "/a/b/"]);
    assert_eq!(r("/a//../b"), ["/a/b", "/b", "/b", "/b"]);
    assert_eq!(r("/a/%2e%2e/b"), ["/b", "/b", "/b", "/b"]);
    assert_eq!(r("/a/..%2fb"), ["/b", "/b", "/a/..%2fb", "/a/..%2fb"]);
    assert_eq!(
        r("/a/..;x/b"),
        ["/a/..%3bx/b", "/a/..%3bx/b", "/a/..%3bx/b", "/b"]
    );
    assert!(r("/a%zz").is_empty());
    assert_eq!(render(&(Vec::new(), false)), "/");
}
