//! Fuzzing the policy loader (TOML text → [`Policy`] or [`PolicyErrors`]) on arbitrary text,
//! on TOML documents of the policy's shape with wrong keys, types and values, and on mutated
//! shipped profiles: it never panics, and a refusal lists at least one error, each naming its
//! file, a position inside that file's text (or at least a key), on one line, sorted by
//! position. Replays `testdata/corpus/policy/` on every run (`docs/fuzzing.md`).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use proptest::prelude::*;

use super::*;

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

const ORIGIN: &str = "policy.toml";

/// The environment of a jailed gateway (host paths taken as written, no filesystem access) or
/// of the supervisor (host paths checked; the fuzzed ones rarely exist).
fn env(trusted: bool) -> Env {
    Env {
        home: Some(PathBuf::from("/home/fuzz")),
        trusted_hosts: trusted,
    }
}

/// The text an error's file name refers to.
fn text_of<'a>(file: &str, text: &'a str) -> Option<&'a str> {
    if file == ORIGIN {
        return Some(text);
    }
    let name = file.strip_prefix("profiles/")?.strip_suffix(".toml")?;
    profile_text(name)
}

/// Loads `text` and checks what the loader promises about its answer.
fn check_load(text: &str, trusted: bool) -> Result<(), TestCaseError> {
    let errors = match load_with(text, Path::new(ORIGIN), &env(trusted)) {
        Ok(policy) => {
            prop_assert_eq!(&policy.source().text, text);
            return Ok(());
        }
        Err(e) => e,
    };
    prop_assert!(!errors.errors().is_empty(), "a refusal without an error");
    let mut last: Option<(String, (usize, usize))> = None;
    for e in errors.errors() {
        let shown = e.to_string();
        prop_assert!(!shown.contains('\n'), "error on several lines: {:?}", shown);
        let file = &e.location.file;
        let source = text_of(file, text);
        prop_assert!(source.is_some(), "error in unknown file {:?}", file);
        let Some((line, column)) = e.location.position else {
            prop_assert!(
                file != ORIGIN || !e.location.key.is_empty(),
                "no position and no key: {}",
                shown
            );
            continue;
        };
        prop_assert!(
            shown.starts_with(&format!("{file}:{line}:{column}: ")),
            "{:?}",
            shown
        );
        let lines: Vec<&str> = source.unwrap_or_default().split('\n').collect();
        prop_assert!(
            line >= 1 && line <= lines.len(),
            "line {} of {}: {}",
            line,
            lines.len(),
            shown
        );
        let width = lines.get(line - 1).map_or(0, |l| l.chars().count());
        prop_assert!(
            column >= 1 && column <= width + 1,
            "column {} of {}: {}",
            column,
            width,
            shown
        );
        if let Some((f, p)) = &last
            && f == file
        {
            prop_assert!(*p <= (line, column), "errors out of order: {}", errors);
        }
        last = Some((file.clone(), (line, column)));
    }
    Ok(())
}

/// A TOML value: scalars of every type, arrays and inline tables.
#[derive(Debug, Clone)]
enum Toml {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Date,
    Array(Vec<Toml>),
    Table(Vec<(String, Toml)>),
}

fn quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c < ' ' || c == '\u{7f}' => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn key(k: &str) -> String {
    if !k.is_empty()
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        k.to_owned()
    } else {
        quote(k)
    }
}

impl Toml {
    fn render(&self, out: &mut String) {
        match self {
            Toml::Str(s) => out.push_str(&quote(s)),
            Toml::Int(i) => {
                let _ = write!(out, "{i}");
            }
            Toml::Float(f) if f.is_nan() => out.push_str("nan"),
            Toml::Float(f) if f.is_infinite() => {
                out.push_str(if *f > 0.0 { "inf" } else { "-inf" })
            }
            Toml::Float(f) => {
                let _ = write!(out, "{f:?}");
            }
            Toml::Bool(b) => {
                let _ = write!(out, "{b}");
            }
            Toml::Date => out.push_str("1979-05-27T07:32:00Z"),
            Toml::Array(items) => {
                out.push('[');
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    v.render(out);
                }
                out.push(']');
            }
            Toml::Table(kv) => {
                out.push('{');
                for (i, (k, v)) in kv.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    out.push_str(&key(k));
                    out.push_str(" = ");
                    v.render(out);
                }
                out.push('}');
            }
        }
    }
}

/// Strings the policy's values take, right and wrong.
const STRINGS: &[&str] = &[
    "deny",
    "allow",
    "rw",
    "ro",
    "overlay",
    "default",
    "strict",
    "unconfined",
    "alert",
    "pause",
    "kill",
    "error",
    "/workspace",
    "/",
    "/proc",
    "/dev/x",
    "relative",
    "~",
    "~root",
    "~/x",
    ".",
    "..",
    "/a/../b",
    "**",
    "secrets/**",
    "a/",
    "[",
    "{a,b",
    "\\",
    "api.example.com",
    "*.example.com",
    "*",
    "*.com",
    "example.com:99999",
    "example.com:0",
    "1.2.3.4/33",
    "10.0.0.0/8:443",
    "[::1]:80",
    "169.254.169.254",
    "0x7f.1",
    "xn--",
    "1G",
    "20GiB",
    "0B",
    "512M",
    "0",
    "-1",
    "1.5G",
    "10s",
    "1h",
    "99999999999999999999d",
    "env:KEY",
    "env:",
    "file:/nonexistent",
    "command:",
    "command:echo hi",
    "Authorization",
    "Bearer {}",
    "{}{}",
    "x\0y",
    "é",
    "",
    "GET",
    "g et",
    "kvm",
    "landlock",
    "seccomp",
    "host-cgroups",
    "nope",
    "net.*",
    "fs.write",
    "claude-code",
    "offline",
];

fn value() -> impl Strategy<Value = Toml> {
    let leaf = prop_oneof![
        6 => proptest::sample::select(STRINGS).prop_map(|s| Toml::Str(s.to_owned())),
        1 => any::<String>().prop_map(Toml::Str),
        1 => prop_oneof![any::<i64>(), -2i64..70000].prop_map(Toml::Int),
        1 => any::<f64>().prop_map(Toml::Float),
        1 => any::<bool>().prop_map(Toml::Bool),
        1 => Just(Toml::Date),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            3 => proptest::collection::vec(inner.clone(), 0..4).prop_map(Toml::Array),
            1 => proptest::collection::vec((proptest::sample::select(KEYS).prop_map(str::to_owned), inner), 0..3)
                .prop_map(Toml::Table),
        ]
    })
}

/// Every key of the policy file, and some that are not.
const KEYS: &[&str] = &[
    "extends",
    "image",
    "cpus",
    "memory",
    "disk",
    "pids",
    "timeout",
    "require",
    "mounts",
    "deny_read",
    "deny_write",
    "protect",
    "unprotect",
    "max_open",
    "quota",
    "host",
    "workspace",
    "guest",
    "mode",
    "protected",
    "default",
    "allow",
    "deny",
    "allow_private",
    "http",
    "credentials",
    "trust_host_ca",
    "extra_ca",
    "passthrough",
    "name",
    "header",
    "format",
    "source",
    "guest_env",
    "ttl",
    "methods",
    "path",
    "action",
    "user",
    "seccomp",
    "no_new_privs",
    "redact",
    "redact_env",
    "rules",
    "kind",
    "decision",
    "bogus",
    "Network",
];

/// What a key holds.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Str,
    Int,
    Bool,
    Strs,
    /// One of these words.
    Enum(&'static [&'static str]),
    /// A string the table cannot do without.
    Required,
}

use Kind::{Bool, Enum, Int, Required, Str, Strs};

const MODES: Kind = Enum(&["rw", "ro", "overlay"]);
const ACTIONS: Kind = Enum(&["allow", "deny"]);

/// A table header, whether it is an array of tables, and its keys.
type Table = (&'static str, bool, &'static [(&'static str, Kind)]);

/// The tables of the policy file with their keys, and a wrong one.
const TABLES: &[Table] = &[
    (
        "sandbox",
        false,
        &[
            ("image", Str),
            ("cpus", Int),
            ("memory", Str),
            ("disk", Str),
            ("pids", Int),
            ("timeout", Str),
            ("require", Strs),
        ],
    ),
    (
        "filesystem",
        false,
        &[
            ("deny_read", Strs),
            ("deny_write", Strs),
            ("protect", Strs),
            ("unprotect", Strs),
            ("max_open", Int),
            ("quota", Str),
        ],
    ),
    (
        "filesystem.mounts",
        true,
        &[
            ("host", Str),
            ("workspace", Bool),
            ("guest", Required),
            ("mode", MODES),
            ("protected", Bool),
        ],
    ),
    (
        "network",
        false,
        &[
            ("default", ACTIONS),
            ("allow", Strs),
            ("deny", Strs),
            ("allow_private", Bool),
            ("trust_host_ca", Bool),
            ("extra_ca", Strs),
            ("passthrough", Strs),
        ],
    ),
    (
        "network.http",
        true,
        &[
            ("host", Required),
            ("methods", Strs),
            ("path", Str),
            ("action", ACTIONS),
        ],
    ),
    (
        "network.credentials",
        true,
        &[
            ("name", Required),
            ("host", Required),
            ("header", Required),
            ("format", Str),
            ("source", Required),
            ("guest_env", Str),
            ("ttl", Str),
        ],
    ),
    (
        "process",
        false,
        &[
            ("user", Str),
            ("seccomp", Enum(&["default", "strict", "unconfined"])),
            ("no_new_privs", Bool),
        ],
    ),
    (
        "audit",
        false,
        &[("path", Str), ("redact", Strs), ("redact_env", Strs)],
    ),
    (
        "monitor.rules",
        true,
        &[
            ("kind", Str),
            ("decision", Enum(&["allow", "deny", "error"])),
            ("path", Str),
            ("host", Str),
            ("action", Enum(&["alert", "pause", "kill"])),
        ],
    ),
    ("network.dns", false, &[("server", Str)]),
];

fn string() -> impl Strategy<Value = String> {
    prop_oneof![
        9 => proptest::sample::select(STRINGS).prop_map(str::to_owned),
        1 => any::<String>(),
    ]
}

/// A value of the kind a key holds.
fn value_of(kind: Kind) -> BoxedStrategy<Toml> {
    match kind {
        Str | Required => string().prop_map(Toml::Str).boxed(),
        Enum(words) => prop_oneof![
            9 => proptest::sample::select(words).prop_map(str::to_owned),
            1 => string(),
        ]
        .prop_map(Toml::Str)
        .boxed(),
        Int => prop_oneof![9 => -2i64..70000, 1 => any::<i64>()]
            .prop_map(Toml::Int)
            .boxed(),
        Bool => any::<bool>().prop_map(Toml::Bool).boxed(),
        Strs => proptest::collection::vec(string().prop_map(Toml::Str), 0..4)
            .prop_map(Toml::Array)
            .boxed(),
    }
}

/// A table: its required keys (and `action`) nearly always and each other key half the time, of the right
/// kind but one time in twenty; sometimes a key from anywhere with any value.
fn table() -> impl Strategy<Value = (&'static str, bool, String)> {
    proptest::sample::select(TABLES).prop_flat_map(|(name, array, keys)| {
        let entries: Vec<_> = keys
            .iter()
            .map(|&(k, kind)| {
                let p = if matches!(kind, Required) || k == "action" {
                    0.95
                } else {
                    0.5
                };
                proptest::option::weighted(
                    p,
                    prop_oneof![19 => value_of(kind), 1 => value()].prop_map(move |v| (k, v)),
                )
            })
            .collect();
        let stray = proptest::option::weighted(0.05, (proptest::sample::select(KEYS), value()));
        (entries, stray).prop_map(move |(entries, stray)| {
            let (open, close) = if array { ("[[", "]]") } else { ("[", "]") };
            let mut out = format!("{open}{name}{close}\n");
            for (k, v) in entries.into_iter().flatten().chain(stray) {
                out.push_str(&key(k));
                out.push_str(" = ");
                v.render(&mut out);
                out.push('\n');
            }
            (name, array, out)
        })
    })
}

/// A document of the policy's shape: maybe `extends`, then tables.
fn document() -> impl Strategy<Value = String> {
    (
        proptest::option::weighted(
            0.3,
            prop_oneof![
                4 => proptest::sample::select(PROFILE_NAMES).prop_map(|s| Toml::Str(s.to_owned())),
                1 => value(),
            ],
        ),
        proptest::collection::vec(table(), 0..6),
    )
        .prop_map(|(extends, tables)| {
            let mut out = String::new();
            if let Some(v) = extends {
                out.push_str("extends = ");
                v.render(&mut out);
                out.push('\n');
            }
            // A table named twice is a syntax error: keep one in ten of those.
            let mut seen = Vec::new();
            for (i, (name, array, text)) in tables.into_iter().enumerate() {
                if !array && seen.contains(&name) && i % 10 != 0 {
                    continue;
                }
                seen.push(name);
                out.push_str(&text);
            }
            out
        })
}

/// A shipped profile with lines dropped, repeated or cut, and bytes replaced.
fn mutated_profile() -> impl Strategy<Value = String> {
    (
        proptest::sample::select(PROFILES),
        proptest::collection::vec((any::<prop::sample::Index>(), 0u8..4, any::<char>()), 1..5),
    )
        .prop_map(|((_, text), edits)| {
            let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
            for (at, how, c) in edits {
                if lines.is_empty() {
                    break;
                }
                let i = at.index(lines.len());
                match how {
                    0 => {
                        lines.remove(i);
                    }
                    1 => {
                        let l = lines[i].clone();
                        lines.insert(i, l);
                    }
                    2 => {
                        let l = &mut lines[i];
                        let cut = l
                            .char_indices()
                            .nth(l.chars().count() / 2)
                            .map_or(0, |(b, _)| b);
                        l.truncate(cut);
                    }
                    _ => {
                        let l = &mut lines[i];
                        let at = l
                            .char_indices()
                            .nth(at.index(l.chars().count() + 1))
                            .map_or(l.len(), |(b, _)| b);
                        l.insert(at, c);
                    }
                }
            }
            lines.join("\n")
        })
}

proptest! {
    #![proptest_config(cases(1000))]

    /// Arbitrary text.
    #[test]
    fn arbitrary_text(text in prop_oneof![any::<String>(), "[\\[\\]a-z=\"'.{}, \n#0-9]{0,80}"], trusted in any::<bool>()) {
        check_load(&text, trusted)?;
    }

    /// Documents of the policy's shape with wrong keys, types and values.
    #[test]
    fn structured_wrong_documents(text in document(), trusted in any::<bool>()) {
        check_load(&text, trusted)?;
    }

    /// The shipped profiles, damaged.
    #[test]
    fn mutated_profiles(text in mutated_profile()) {
        check_load(&text, true)?;
    }
}

/// Replays `testdata/corpus/policy/*.toml` (as the jailed gateway loads them, and as the
/// supervisor does): each goes through the checks above, and must load, or fail with a
/// message containing the text after `# expect error:` on its first line, when it has one.
#[test]
fn corpus_replays() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/corpus/policy");
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{dir}: {e}")) {
        let path = entry.unwrap_or_else(|e| panic!("{e}")).path();
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{e}"));
        let name = path.display();
        for trusted in [true, false] {
            check_load(&text, trusted).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        let first = text.lines().next().unwrap_or_default();
        let got = load_with(&text, Path::new(ORIGIN), &env(true));
        match (first.strip_prefix("# expect error: "), got) {
            (None, Ok(_)) => {}
            (Some(want), Err(e)) => {
                assert!(e.to_string().contains(want), "{name}: {e}");
            }
            (None, Err(e)) => panic!("{name}: {e}"),
            (Some(want), Ok(_)) => panic!("{name}: loaded; expected {want:?}"),
        }
        seen += 1;
    }
    assert!(seen >= 10, "only {seen} corpus files");
}
