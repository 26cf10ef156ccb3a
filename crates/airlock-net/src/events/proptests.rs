//! Fuzzing the two parsers the supervisor runs on every line the egress gateway writes
//! ([`NetLine::parse`], then `RefreshRequest::parse` for what is not an event): the gateway is
//! jailed but serves a hostile guest, so its lines are not trusted. Arbitrary bytes and JSON
//! of the right shape with wrong values never panic; an event line is accepted exactly when its
//! kind, decision, types, field lengths and cuts are in bounds; no line is both an event and a
//! refresh request. Replays `testdata/corpus/net-lines/` on every run (`docs/fuzzing.md`).

// `obj[key] = v` on a JSON object inserts; it does not index out of bounds.
#![allow(clippy::indexing_slicing)]

use super::*;
use crate::process::{RefreshRequest, RefreshWhat};
use proptest::prelude::*;
use serde_json::{Value, json};

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

const KINDS: &[&str] = &[
    kind::NET_CONNECT,
    kind::NET_HTTP,
    kind::CREDENTIAL_INJECT,
    kind::CREDENTIAL_LEAK_ATTEMPT,
];
const DECISIONS: &[&str] = &["allow", "deny", "error"];
const STRINGS: &[&str] = &["kind", "host", "decision", "rule", "reason"];
const OPTIONAL_STRINGS: &[&str] = &["method", "path", "credential"];
const NUMBERS: &[&str] = &["bytes_up", "bytes_down", "duration_ms"];
const FIELDS: &[&str] = &[
    "kind",
    "host",
    "port",
    "ip",
    "method",
    "path",
    "status",
    "decision",
    "rule",
    "reason",
    "bytes_up",
    "bytes_down",
    "duration_ms",
    "credential",
    "cut",
];

/// A `cut` list, right or wrong: entries with a field name, a length and a SHA-256 in hex,
/// too many of them, names and hashes of the wrong length, unknown keys.
fn cut_list() -> impl Strategy<Value = Value> {
    let entry = (
        prop_oneof![Just("net.path".to_owned()), ".{0,40}"],
        prop_oneof![Just(json!(9000)), Just(json!(-1)), Just(json!("1"))],
        prop_oneof![Just("a".repeat(64)), "[0-9a-f]{60,68}"],
        any::<bool>(),
    )
        .prop_map(|(field, len, sha, extra)| {
            let mut c = json!({"field": field, "len": len, "sha256": sha});
            if extra {
                c["extra"] = json!(1);
            }
            c
        });
    proptest::collection::vec(entry, 0..5).prop_map(Value::Array)
}

/// Whether a `cut` value is one `parse` takes: a list of at most three well-formed entries.
fn cut_ok(v: &Value) -> bool {
    let Some(list) = v.as_array() else {
        return false;
    };
    list.len() <= 3
        && list.iter().all(|c| {
            c.as_object().is_some_and(|m| {
                m.keys()
                    .all(|k| ["field", "len", "sha256"].contains(&k.as_str()))
                    && m.get("field")
                        .and_then(Value::as_str)
                        .is_some_and(|f| f.len() <= 32)
                    && m.get("len").and_then(Value::as_u64).is_some()
                    && m.get("sha256")
                        .and_then(Value::as_str)
                        .is_some_and(|h| h.len() == 64)
            })
        })
}

/// An accepted line keeps the promises `parse` makes, is no refresh request, and its audit
/// event says the same.
fn check_accepted(l: &NetLine) -> Result<(), TestCaseError> {
    prop_assert!(KINDS.contains(&l.kind.as_str()));
    prop_assert!(DECISIONS.contains(&l.decision.as_str()));
    for s in [&l.host, &l.rule, &l.reason]
        .into_iter()
        .chain(l.method.as_ref())
        .chain(l.path.as_ref())
        .chain(l.credential.as_ref())
    {
        prop_assert!(s.len() <= MAX_FIELD);
    }
    prop_assert!(l.cut.len() <= 3);
    let e = l.to_event();
    prop_assert_eq!(&e.cut, &l.cut);
    prop_assert_eq!(&e.kind, &l.kind);
    prop_assert_eq!(e.decision.map(|d| d.as_str()), Some(l.decision.as_str()));
    let net = e
        .net
        .as_ref()
        .ok_or_else(|| TestCaseError::fail("no net info"))?;
    prop_assert_eq!(net.host.as_ref(), Some(&l.host));
    prop_assert_eq!(net.port, Some(l.port));
    prop_assert_eq!(net.ip.clone(), l.ip.map(|ip| ip.to_string()));
    prop_assert_eq!(
        (net.bytes_in, net.bytes_out),
        (Some(l.bytes_down), Some(l.bytes_up))
    );
    let again = serde_json::to_vec(l).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(NetLine::parse(&again), Some(l.clone()));
    Ok(())
}

/// Both parsers on one line: no panic, in bounds, never both.
fn check_line(bytes: &[u8]) -> Result<(), TestCaseError> {
    let event = NetLine::parse(bytes);
    let refresh = RefreshRequest::parse(bytes);
    prop_assert!(
        event.is_none() || refresh.is_none(),
        "both an event and a refresh"
    );
    if let Some(l) = &event {
        check_accepted(l)?;
    }
    if let Some(r) = refresh {
        prop_assert!(r.refresh.name.len() <= 64);
        let again = serde_json::to_vec(&r).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(RefreshRequest::parse(&again), Some(r));
    }
    Ok(())
}

/// Whether an event line holding `obj` must be accepted, from the rules `parse` documents:
/// known fields only, each of its type (a port and status fit `u16`, an address parses), the
/// kind one of the gateway's, decision `allow`, `deny` or `error`, strings at most
/// `MAX_FIELD` bytes, at most three well-formed cuts.
fn expected(obj: &Value) -> bool {
    let Some(map) = obj.as_object() else {
        return false;
    };
    let short = |v: &Value| v.as_str().is_some_and(|s| s.len() <= MAX_FIELD);
    let optional =
        |k: &str, ok: &dyn Fn(&Value) -> bool| map.get(k).is_none_or(|v| v.is_null() || ok(v));
    let u16_ok = |v: &Value| v.as_u64().is_some_and(|n| n <= u64::from(u16::MAX));
    map.keys().all(|k| FIELDS.contains(&k.as_str()))
        && STRINGS.iter().all(|k| map.get(*k).is_some_and(short))
        && map
            .get("kind")
            .and_then(Value::as_str)
            .is_some_and(|k| KINDS.contains(&k))
        && map
            .get("decision")
            .and_then(Value::as_str)
            .is_some_and(|d| DECISIONS.contains(&d))
        && map.get("port").is_some_and(u16_ok)
        && NUMBERS
            .iter()
            .all(|k| map.get(*k).and_then(Value::as_u64).is_some())
        && optional("status", &u16_ok)
        && optional("ip", &|v| {
            v.as_str().is_some_and(|s| s.parse::<IpAddr>().is_ok())
        })
        && OPTIONAL_STRINGS.iter().all(|k| optional(k, &short))
        && map.get("cut").is_none_or(cut_ok)
}

/// Text of a byte length just under, at or over the limit, or short.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => any::<String>(),
        1 => (MAX_FIELD - 2..MAX_FIELD + 3, prop_oneof![Just('a'), Just('ß'), Just('\u{1F600}')])
            .prop_map(|(n, c)| {
                let mut s = c.to_string().repeat(n / c.len_utf8());
                while s.len() < n {
                    s.push('x');
                }
                s
            }),
    ]
}

/// Values for any field, of every JSON type and at the edges of the numeric ones.
fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        prop_oneof![Just(65535u64), Just(65536), Just(u64::MAX)].prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        text().prop_map(Value::from),
        prop_oneof![
            Just("::1"),
            Just("10.0.0.1"),
            Just("1.2.3"),
            Just("[::1]"),
            Just("fe80::1%eth0"),
            Just("0x7f.1")
        ]
        .prop_map(Value::from),
        Just(json!([])),
        cut_list(),
        Just(json!({"refresh": {"id": 1, "name": "k"}})),
    ]
}

/// A valid event line, with some of its fields replaced by arbitrary values or removed, and
/// maybe an unknown field.
fn event_object() -> impl Strategy<Value = Value> {
    (
        proptest::sample::select(KINDS),
        proptest::sample::select(DECISIONS),
        (text(), text(), text()),
        (
            any::<u16>(),
            proptest::option::of(any::<u16>()),
            any::<u64>(),
        ),
        proptest::collection::vec((proptest::sample::select(FIELDS), value()), 0..3),
        proptest::option::of(proptest::sample::select(FIELDS)),
        proptest::option::of(prop_oneof![Just("refresh"), Just("extra"), Just("Kind")]),
    )
        .prop_map(
            |(k, d, (host, rule, reason), (port, status, n), edits, gone, extra)| {
                let mut obj = json!({
                    "kind": k, "host": host, "port": port, "ip": null, "method": "GET",
                    "path": "/", "status": status, "decision": d, "rule": rule, "reason": reason,
                    "bytes_up": n, "bytes_down": n, "duration_ms": 1,
                });
                for (field, v) in edits {
                    obj[field] = v;
                }
                if let (Some(field), Some(map)) = (gone, obj.as_object_mut()) {
                    map.remove(field);
                }
                if let Some(key) = extra {
                    obj[key] = json!(1);
                }
                obj
            },
        )
}

proptest! {
    #![proptest_config(cases(2000))]

    /// Whatever the bytes, neither parser panics, and what they accept is in bounds.
    #[test]
    fn arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        check_line(&bytes)?;
    }

    /// Event lines of the right shape: accepted exactly when [`expected`] says so.
    #[test]
    fn events_accepted_exactly_when_in_bounds(obj in event_object()) {
        let bytes = serde_json::to_vec(&obj).map_err(|e| TestCaseError::fail(e.to_string()))?;
        check_line(&bytes)?;
        prop_assert_eq!(NetLine::parse(&bytes).is_some(), expected(&obj), "{}", String::from_utf8_lossy(&bytes));
    }

    /// Refresh requests: accepted exactly with one `refresh` object of a `u64` id and a name
    /// of at most 64 bytes, and nothing else.
    #[test]
    fn refresh_requests(
        id in prop_oneof![any::<u64>().prop_map(Value::from), value()],
        name in prop_oneof![".{0,70}".prop_map(Value::from), value()],
        extra in proptest::option::of((prop_oneof![Just("id"), Just("x"), Just("kind")], value())),
        outer_extra in any::<bool>(),
    ) {
        let mut inner = json!({"id": id, "name": name});
        if let Some((k, v)) = &extra {
            inner[*k] = v.clone();
        }
        let mut obj = json!({"refresh": inner});
        if outer_extra {
            obj["kind"] = json!("net.connect");
        }
        let bytes = serde_json::to_vec(&obj).map_err(|e| TestCaseError::fail(e.to_string()))?;
        check_line(&bytes)?;
        let inner = &obj["refresh"];
        let want = !outer_extra
            && inner.as_object().is_some_and(|m| m.len() == 2)
            && inner["id"].as_u64().is_some()
            && inner["name"].as_str().is_some_and(|n| n.len() <= 64);
        prop_assert_eq!(RefreshRequest::parse(&bytes).is_some(), want, "{}", String::from_utf8_lossy(&bytes));
    }

    /// Every event a gateway records reaches the supervisor: the line it writes parses back
    /// to the same fields (for fields within the gateway's own limits).
    #[test]
    fn every_gateway_event_parses_back(
        k in proptest::sample::select(KINDS),
        decision in prop_oneof![Just(NetDecision::Allow), Just(NetDecision::Deny), Just(NetDecision::Error)],
        host in prop_oneof![4 => ".{0,255}".boxed(), 1 => (MAX_FIELD - 2..MAX_FIELD * 2).prop_map(|n| "h".repeat(n)).boxed()],
        port in any::<u16>(),
        ip in proptest::option::of(any::<IpAddr>()),
        method in proptest::option::of("[A-Z]{1,32}"),
        path in proptest::option::of(prop_oneof![4 => ".{0,1000}".boxed(), 1 => (MAX_FIELD - 2..MAX_FIELD * 3).prop_map(|n| "/é".repeat(n / 3)).boxed()]),
        status in proptest::option::of(any::<u16>()),
        (bytes_up, bytes_down, duration_ms) in (any::<u64>(), any::<u64>(), any::<u64>()),
        credential in proptest::option::of("[A-Za-z0-9_]{1,64}"),
    ) {
        let e = NetEvent {
            kind: k, host, port, ip, method, path, status, decision,
            rule: "network.default".into(), reason: "not_allowed",
            bytes_up, bytes_down, duration_ms, credential,
        };
        let line = NetLine::from(&e);
        let bytes = serde_json::to_vec(&line).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(NetLine::parse(&bytes), Some(line.clone()));
        prop_assert_eq!(RefreshRequest::parse(&bytes), None);
        // A field over the limit arrives cut: its first bytes, its length and hash.
        for (full, sent, name) in [
            (Some(&e.host), Some(&line.host), "net.host"),
            (e.path.as_ref(), line.path.as_ref(), "net.path"),
        ] {
            let (Some(full), Some(sent)) = (full, sent) else {
                continue;
            };
            let cut = line.cut.iter().find(|c| c.field == name);
            prop_assert_eq!(cut.is_some(), full.len() > MAX_FIELD);
            prop_assert!(full.starts_with(sent.as_str()) && sent.len() <= MAX_FIELD);
            if let Some(c) = cut {
                prop_assert_eq!(c.len, full.len() as u64);
            }
        }
        let r = RefreshRequest { refresh: RefreshWhat { id: bytes_up, name: "KEY".into() } };
        let bytes = serde_json::to_vec(&r).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(RefreshRequest::parse(&bytes), Some(r));
        prop_assert_eq!(NetLine::parse(&bytes), None);
    }
}

/// Replays `testdata/corpus/net-lines/*.lines`: each line is `E ` (an event), `R ` (a refresh
/// request) or `- ` (neither) followed by the bytes the gateway would have written; `#` lines
/// are comments.
#[test]
fn corpus_replays() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/corpus/net-lines");
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{dir}: {e}")) {
        let path = entry.unwrap_or_else(|e| panic!("{e}")).path();
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        for (n, line) in bytes.split(|&b| b == b'\n').enumerate() {
            let at = format!("{}:{}", path.display(), n + 1);
            let (want, rest) = match line.split_first() {
                None | Some((b'#', _)) => continue,
                Some((b'E', rest)) => ((true, false), rest),
                Some((b'R', rest)) => ((false, true), rest),
                Some((b'-', rest)) => ((false, false), rest),
                Some(_) => panic!("{at}: a line starts with E, R, - or #"),
            };
            let input = rest.strip_prefix(b" ").unwrap_or(rest);
            check_line(input).unwrap_or_else(|e| panic!("{at}: {e}"));
            let got = (
                NetLine::parse(input).is_some(),
                RefreshRequest::parse(input).is_some(),
            );
            assert_eq!(got, want, "{at}");
            seen += 1;
        }
    }
    assert!(seen >= 20, "only {seen} corpus lines");
}
