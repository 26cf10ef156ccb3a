//! Fuzzing [`FsLine::parse`], which the supervisor runs on every line a filesystem gateway
//! writes (the gateway is jailed, but it serves a hostile guest, so its lines are not
//! trusted): arbitrary bytes and JSON of the right shape with wrong values never panic, and
//! a line is accepted exactly when its kind, decision, field lengths and cuts are in bounds;
//! every event a gateway writes arrives, a path too long for a line cut with its length.
//! Replays `testdata/corpus/fs-lines/` on every run (`docs/fuzzing.md`).

// `obj[key] = v` on a JSON object inserts; it does not index out of bounds.
#![allow(clippy::indexing_slicing)]

use super::*;
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

/// An accepted line keeps the promises `parse` makes, and its audit event says the same.
fn check_accepted(l: &FsLine) -> Result<(), TestCaseError> {
    prop_assert!(KINDS.contains(&l.op.as_str()), "kind {:?}", l.op);
    prop_assert!(l.decision == "allow" || l.decision == "deny");
    for s in [&l.mount, &l.path, &l.rule, &l.reason]
        .into_iter()
        .chain(l.path2.as_ref())
    {
        prop_assert!(s.len() <= MAX_FIELD);
    }
    prop_assert!(l.cut.len() <= 2);
    let e = l.to_event();
    prop_assert_eq!(&e.cut, &l.cut);
    prop_assert_eq!(&e.kind, &l.op);
    let want = if l.decision == "allow" {
        Decision::Allow
    } else {
        Decision::Deny
    };
    prop_assert_eq!(e.decision, Some(want));
    prop_assert_eq!(e.count, l.count);
    let fs =
        e.fs.as_ref()
            .ok_or_else(|| TestCaseError::fail("no fs info"))?;
    prop_assert_eq!(&fs.path, &l.path);
    prop_assert_eq!(&fs.to, &l.path2);
    prop_assert_eq!(fs.mount.as_ref(), Some(&l.mount));
    prop_assert_eq!(format!("fs.{}", fs.op), l.op.clone());
    let again = serde_json::to_vec(l).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(FsLine::parse(&again), Some(l.clone()));
    Ok(())
}

fn check_line(bytes: &[u8]) -> Result<(), TestCaseError> {
    if let Some(l) = FsLine::parse(bytes) {
        check_accepted(&l)?;
    }
    Ok(())
}

/// Text of a byte length just under, at or over the limit, or short; multi-byte characters
/// so that bytes, not characters, are what is counted.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => any::<String>(),
        1 => (MAX_FIELD - 2..MAX_FIELD + 3, prop_oneof![Just('a'), Just('é'), Just('\u{1F600}')])
            .prop_map(|(n, c)| {
                let mut s = c.to_string().repeat(n / c.len_utf8());
                while s.len() < n {
                    s.push('x');
                }
                s
            }),
    ]
}

/// A field value of the wrong type, to put where a string or number belongs.
fn wrong_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        Just(json!([])),
        Just(json!({"a": 1})),
        Just(json!(-1)),
        Just(json!(u64::MAX)),
        Just(json!("text")),
    ]
}

/// Whether a line holding `obj` must be accepted, from the rules `parse` documents: known
/// fields only, each of its type, `op` an `fs.*` kind, `decision` `allow` or `deny`, strings
/// at most `MAX_FIELD` bytes, at most two well-formed cuts.
fn expected(obj: &Value) -> bool {
    let Some(map) = obj.as_object() else {
        return false;
    };
    let short = |v: Option<&Value>| {
        v.and_then(Value::as_str)
            .is_some_and(|s| s.len() <= MAX_FIELD)
    };
    map.keys().all(|k| FIELDS.contains(&k.as_str()))
        && map
            .get("op")
            .and_then(Value::as_str)
            .is_some_and(|op| KINDS.contains(&op))
        && map
            .get("decision")
            .and_then(Value::as_str)
            .is_some_and(|d| d == "allow" || d == "deny")
        && ["mount", "path", "rule", "reason"]
            .iter()
            .all(|k| short(map.get(*k)))
        && map
            .get("path2")
            .is_none_or(|v| v.is_null() || short(Some(v)))
        && map
            .get("count")
            .is_none_or(|v| v.is_null() || v.as_u64().is_some())
        && map.get("cut").is_none_or(cut_ok)
}

const FIELDS: &[&str] = &[
    "op", "mount", "path", "path2", "decision", "rule", "reason", "count", "cut",
];

/// A `cut` list, right or wrong: entries with a field name, a length and a SHA-256 in hex,
/// too many of them, names and hashes of the wrong length, unknown keys.
fn cut_list() -> impl Strategy<Value = Value> {
    let entry = (
        prop_oneof![Just("fs.path".to_owned()), ".{0,40}"],
        prop_oneof![Just(json!(40_000)), Just(json!(-1)), Just(json!("1"))],
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
    prop_oneof![
        proptest::collection::vec(entry, 0..4).prop_map(Value::Array),
        Just(Value::Null),
        Just(json!({})),
    ]
}

/// Whether a `cut` value is one `parse` takes: a list of at most two well-formed entries.
fn cut_ok(v: &Value) -> bool {
    let Some(list) = v.as_array() else {
        return false;
    };
    list.len() <= 2
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

proptest! {
    #![proptest_config(cases(2000))]

    /// Whatever the bytes, `parse` does not panic and what it accepts is in bounds.
    #[test]
    fn arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        check_line(&bytes)?;
    }

    /// Lines of the right shape: accepted exactly when [`expected`] says so.
    #[test]
    fn accepted_exactly_when_in_bounds(
        op in prop_oneof![
            proptest::sample::select(KINDS).prop_map(str::to_owned),
            any::<String>(),
            Just("net.connect".to_owned()),
            Just("FS.WRITE".to_owned()),
        ],
        decision in prop_oneof![Just("allow"), Just("deny"), Just("error"), Just("Allow"), Just("")],
        (mount, path, rule, reason) in (text(), text(), text(), text()),
        path2 in proptest::option::of(text()),
        count in proptest::option::of(any::<u64>()),
        cut in proptest::option::of(cut_list()),
        wrong in proptest::option::of((proptest::sample::select(FIELDS), wrong_value())),
        extra in proptest::option::of(any::<String>()),
    ) {
        let mut obj = json!({
            "op": op, "mount": mount, "path": path, "path2": path2,
            "decision": decision, "rule": rule, "reason": reason,
        });
        if let Some(n) = count {
            obj["count"] = json!(n);
        }
        if let Some(c) = cut {
            obj["cut"] = c;
        }
        if let Some((field, value)) = wrong {
            obj[field] = value;
        }
        if let Some(key) = extra {
            obj[key.as_str()] = json!(1);
        }
        let bytes = serde_json::to_vec(&obj).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let got = FsLine::parse(&bytes);
        prop_assert_eq!(got.is_some(), expected(&obj), "{}", String::from_utf8_lossy(&bytes));
        if let Some(l) = got {
            check_accepted(&l)?;
        }
    }

    /// Every event a gateway records reaches the supervisor: the line it writes parses back
    /// to the same fields.
    #[test]
    fn every_gateway_event_parses_back(
        op in proptest::sample::select(KINDS),
        deny in any::<bool>(),
        mount in "/[a-z]{1,12}",
        path in prop_oneof![
            4 => proptest::collection::vec("[^/\0]{1,40}", 0..8).prop_map(|c| c.join("/")),
            1 => (MAX_FIELD - 2..MAX_FIELD * 3).prop_map(|n| "é/".repeat(n / 3)),
        ],
        path2 in proptest::option::of(prop_oneof![
            4 => "[^\0]{0,200}".boxed(),
            1 => (MAX_FIELD..MAX_FIELD * 2).prop_map(|n| "x".repeat(n)).boxed(),
        ]),
        rule in "[ -~]{0,80}",
        reason in proptest::sample::select(&["allowed", "protected_path", "read_denied", "write_denied"][..]),
        count in proptest::option::of(any::<u64>()),
    ) {
        let e = FsEvent {
            op,
            mount,
            path,
            path2,
            decision: if deny { Verdict::Deny } else { Verdict::Allow },
            rule,
            reason,
            count,
        };
        let line = FsLine::from(&e);
        let bytes = serde_json::to_vec(&line).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(bytes.len() < airlock_jail::gateway::MAX_EVENT_LINE);
        prop_assert_eq!(FsLine::parse(&bytes), Some(line.clone()));
        // A path over the limit arrives cut: its first bytes, its length and hash.
        let pairs = [
            (Some(&e.path), Some(&line.path), "fs.path"),
            (e.path2.as_ref(), line.path2.as_ref(), "fs.to"),
        ];
        for (full, sent, name) in pairs {
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
    }
}

/// Replays `testdata/corpus/fs-lines/*.lines`: each line is `+ ` (must be accepted) or `- `
/// (must be refused) followed by the bytes the gateway would have written; `#` lines are
/// comments.
#[test]
fn corpus_replays() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/corpus/fs-lines");
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{dir}: {e}")) {
        let path = entry.unwrap_or_else(|e| panic!("{e}")).path();
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        for (n, line) in bytes.split(|&b| b == b'\n').enumerate() {
            let at = format!("{}:{}", path.display(), n + 1);
            let (want, rest) = match line.split_first() {
                None | Some((b'#', _)) => continue,
                Some((b'+', rest)) => (true, rest),
                Some((b'-', rest)) => (false, rest),
                Some(_) => panic!("{at}: a line starts with +, - or #"),
            };
            let input = rest.strip_prefix(b" ").unwrap_or(rest);
            check_line(input).unwrap_or_else(|e| panic!("{at}: {e}"));
            assert_eq!(FsLine::parse(input).is_some(), want, "{at}");
            seen += 1;
        }
    }
    assert!(seen >= 20, "only {seen} corpus lines");
}
