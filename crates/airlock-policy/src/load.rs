//! Text to schema: parses TOML keeping every key's and value's position, checks the document
//! against the JSON schema of `schema.rs` (so every unknown key and wrong type is reported, not
//! only the first), follows `extends` to the shipped profiles, and hands the layers to
//! `validate.rs`. Also the public entry points `load_file`, `load_str` and `load_profile`.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde::Deserialize as _;
use serde_json::Value;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::error::{ErrorKind, Location, PolicyError, PolicyErrors};
use crate::policy::Policy;
use crate::schema::PolicyFile;
use crate::validate::{self, ValidationError};

/// Shipped profiles, embedded at build time: (name, file text).
const PROFILES: &[(&str, &str)] = &[
    ("default", include_str!("../profiles/default.toml")),
    ("offline", include_str!("../profiles/offline.toml")),
    ("claude-code", include_str!("../profiles/claude-code.toml")),
    ("codex", include_str!("../profiles/codex.toml")),
];

/// Names of [`PROFILES`], in the same order.
const PROFILE_NAMES: &[&str] = &["default", "offline", "claude-code", "codex"];

/// How many `extends` links a chain may have (profiles may build on each other).
const MAX_EXTENDS_DEPTH: usize = 8;

/// A document that is not a well-formed policy: TOML syntax, unknown keys, wrong types.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// TOML syntax error, as described by the TOML parser.
    #[error("TOML syntax error: {message}")]
    Syntax {
        /// The parser's description.
        message: String,
    },
    /// A key the schema does not define.
    #[error("unknown key `{key}`, expected one of: {expected}")]
    UnknownKey {
        /// The key as written.
        key: String,
        /// The keys allowed in this table, comma-separated.
        expected: String,
    },
    /// A required key is absent.
    #[error("missing key `{key}`")]
    MissingKey {
        /// The missing key.
        key: String,
    },
    /// A value of the wrong TOML type.
    #[error("wrong type: found {found}, expected {expected}")]
    WrongType {
        /// The value's type and, for scalars, the value.
        found: String,
        /// The expected type.
        expected: String,
    },
    /// A string outside a fixed set of keywords.
    #[error("invalid value: found {found}, expected one of {expected}")]
    NotOneOf {
        /// The value as written.
        found: String,
        /// The allowed keywords.
        expected: String,
    },
    /// An integer outside the range of its field.
    #[error("out of range: found {found}, expected an integer from {min} to {max}")]
    OutOfRange {
        /// The integer as written.
        found: String,
        /// Smallest allowed value.
        min: i128,
        /// Largest allowed value.
        max: i128,
    },
    /// Any other deserialisation failure (should not happen once the schema walk passed).
    #[error("{message}")]
    Other {
        /// The deserialiser's description.
        message: String,
    },
}

/// The byte range of a key and of its value in one source file.
#[derive(Debug, Clone)]
pub(crate) struct Span {
    pub key: Option<Range<usize>>,
    pub value: Range<usize>,
}

/// One policy text: the caller's file or a shipped profile.
#[derive(Debug)]
pub(crate) struct Source {
    /// Shown as the file in error locations.
    pub name: String,
    pub text: String,
    /// Directory for relative paths; `None` for profiles.
    pub dir: Option<PathBuf>,
    /// Set when this source is a shipped profile.
    pub profile: Option<&'static str>,
    /// Spans by dotted key path (`network.allow[2]`, `filesystem.mounts[0].guest`).
    pub spans: HashMap<String, Span>,
}

impl Source {
    /// 1-based line and column (in characters) of a byte offset.
    fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = self.text.get(..offset).unwrap_or_default();
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before.get(line_start..).unwrap_or_default().chars().count() + 1;
        (line, column)
    }
}

/// Where a validation error points: the value at a key path in one source.
#[derive(Debug, Clone)]
pub(crate) struct Loc {
    pub src: usize,
    pub key: String,
}

impl Loc {
    pub fn value(src: usize, key: impl Into<String>) -> Self {
        Self {
            src,
            key: key.into(),
        }
    }
}

/// One parsed file in an `extends` chain.
#[derive(Debug)]
pub(crate) struct Layer {
    pub src: usize,
    pub file: PolicyFile,
}

/// Process environment the loader depends on, injected so tests can fix it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Env {
    pub home: Option<PathBuf>,
    /// Host directories were checked by whoever sent this policy, and may not be visible here
    /// (a jailed gateway): take them as written, and do not touch the filesystem.
    pub trusted_hosts: bool,
}

impl Env {
    fn from_process() -> Self {
        Self {
            home: std::env::var_os("HOME").map(PathBuf::from),
            trusted_hosts: false,
        }
    }
}

/// An error not yet turned into a [`PolicyError`]: its offset is resolved to line:column last.
struct Pending {
    src: usize,
    offset: Option<usize>,
    key: String,
    kind: ErrorKind,
}

/// Loads, checks and validates a policy file; the workspace mount, if any, stays unbound
/// until [`Policy::with_workspace`].
pub fn load_file(path: &Path) -> Result<Policy, PolicyErrors> {
    match std::fs::read_to_string(path) {
        Ok(text) => load_str(&text, path),
        Err(e) => Err(PolicyErrors::new(vec![PolicyError {
            location: Location {
                file: path.display().to_string(),
                position: None,
                key: String::new(),
            },
            kind: ErrorKind::Read(e),
        }])),
    }
}

/// Loads policy text. `origin` names the text in error messages, and relative host paths are
/// resolved against its parent directory.
pub fn load_str(text: &str, origin: &Path) -> Result<Policy, PolicyErrors> {
    load_with(text, origin, &Env::from_process())
}

/// Loads a shipped profile by name.
pub fn load_profile(name: &str) -> Result<Policy, PolicyErrors> {
    let Some(&(name, text)) = PROFILES.iter().find(|(n, _)| *n == name) else {
        return Err(PolicyErrors::new(vec![PolicyError {
            location: Location {
                file: format!("profile {name:?}"),
                position: None,
                key: String::new(),
            },
            kind: ValidationError::UnknownProfile {
                found: name.to_owned(),
                expected: profile_list(),
            }
            .into(),
        }]));
    };
    let mut loader = Loader::default();
    let layers = loader.parse_chain(
        text.to_owned(),
        profile_source_name(name),
        None,
        Some(name),
        &mut Vec::new(),
    );
    loader.finish(layers, &Env::from_process())
}

/// Names of the shipped profiles.
pub fn profile_names() -> &'static [&'static str] {
    PROFILE_NAMES
}

/// The text of a shipped profile, for `airlock policy show` or as a starting point.
pub fn profile_text(name: &str) -> Option<&'static str> {
    PROFILES.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
}

/// The JSON schema (draft 2020-12) of the policy file.
pub fn json_schema() -> Value {
    let schema = schemars::generate::SchemaSettings::draft2020_12()
        .into_generator()
        .into_root_schema_for::<PolicyFile>();
    schema.to_value()
}

pub(crate) fn load_with(text: &str, origin: &Path, env: &Env) -> Result<Policy, PolicyErrors> {
    let mut loader = Loader::default();
    let dir = origin.parent().map(Path::to_path_buf);
    let layers = loader.parse_chain(
        text.to_owned(),
        origin.display().to_string(),
        dir,
        None,
        &mut Vec::new(),
    );
    let mut policy = loader.finish(layers, env)?;
    policy.source = crate::policy::PolicySource {
        text: text.to_owned(),
        origin: origin.to_path_buf(),
        workspace: None,
    };
    Ok(policy)
}

fn profile_source_name(name: &str) -> String {
    format!("profiles/{name}.toml")
}

fn profile_list() -> String {
    PROFILE_NAMES.join(", ")
}

#[derive(Default)]
struct Loader {
    sources: Vec<Source>,
    pending: Vec<Pending>,
}

impl Loader {
    /// Parses one text and, through `extends`, the profiles under it. Returns the layers,
    /// lowest first, or `None` when this text could not be parsed.
    fn parse_chain(
        &mut self,
        text: String,
        name: String,
        dir: Option<PathBuf>,
        profile: Option<&'static str>,
        chain: &mut Vec<&'static str>,
    ) -> Option<Vec<Layer>> {
        let src = self.sources.len();
        self.sources.push(Source {
            name,
            text,
            dir,
            profile,
            spans: HashMap::new(),
        });
        let file = self.parse_source(src)?;
        chain.extend(profile);
        let mut layers = Vec::new();
        if let Some(base) = &file.extends {
            match PROFILES.iter().find(|(n, _)| n == base) {
                None => self.invalid(
                    Loc::value(src, "extends"),
                    ValidationError::UnknownProfile {
                        found: base.clone(),
                        expected: profile_list(),
                    },
                ),
                Some(&(base, _)) if chain.contains(&base) => self.invalid(
                    Loc::value(src, "extends"),
                    ValidationError::ExtendsCycle {
                        found: base.to_owned(),
                    },
                ),
                Some(_) if chain.len() >= MAX_EXTENDS_DEPTH => self.invalid(
                    Loc::value(src, "extends"),
                    ValidationError::ExtendsTooDeep {
                        max: MAX_EXTENDS_DEPTH,
                    },
                ),
                Some(&(base, base_text)) => {
                    layers = self.parse_chain(
                        base_text.to_owned(),
                        profile_source_name(base),
                        None,
                        Some(base),
                        chain,
                    )?;
                }
            }
        }
        layers.push(Layer { src, file });
        Some(layers)
    }

    /// TOML syntax, then the schema walk, then serde. Each stage reports all its errors.
    fn parse_source(&mut self, src: usize) -> Option<PolicyFile> {
        let text = self.sources.get(src)?.text.clone();
        let (doc, syntax) = DeTable::parse_recoverable(&text);
        if !syntax.is_empty() {
            for e in syntax {
                self.pending.push(Pending {
                    src,
                    offset: e.span().map(|s| s.start),
                    key: String::new(),
                    kind: ParseError::Syntax {
                        message: one_line(e.message()),
                    }
                    .into(),
                });
            }
            return None;
        }
        let root = json_schema_inline();
        let mut walker = Walker {
            src,
            out: Vec::new(),
        };
        walker.table(doc.get_ref(), doc.span(), root, "");
        if !walker.out.is_empty() {
            self.pending.append(&mut walker.out);
            return None;
        }
        let mut spans = HashMap::new();
        index_table(doc.get_ref(), "", &mut spans);
        if let Some(source) = self.sources.get_mut(src) {
            source.spans = spans;
        }
        match PolicyFile::deserialize(toml::de::Deserializer::from(doc)) {
            Ok(file) => Some(file),
            Err(e) => {
                self.pending.push(Pending {
                    src,
                    offset: e.span().map(|s| s.start),
                    key: String::new(),
                    kind: ParseError::Other {
                        message: one_line(e.message()),
                    }
                    .into(),
                });
                None
            }
        }
    }

    fn invalid(&mut self, loc: Loc, error: ValidationError) {
        let offset = self.offset_of(&loc);
        self.pending.push(Pending {
            src: loc.src,
            offset,
            key: loc.key,
            kind: error.into(),
        });
    }

    fn offset_of(&self, loc: &Loc) -> Option<usize> {
        let span = self.sources.get(loc.src)?.spans.get(&loc.key)?;
        Some(span.value.start)
    }

    /// Validates the layers (if all parsed) and turns every pending error into a
    /// [`PolicyError`], sorted by source and position.
    fn finish(mut self, layers: Option<Vec<Layer>>, env: &Env) -> Result<Policy, PolicyErrors> {
        let mut policy = None;
        // `layers` is `None` when a text failed to parse; extends errors still let the
        // caller's own file be validated, so that every error is reported at once.
        if let Some(layers) = layers {
            match validate::build(&layers, &self.sources, env) {
                Ok(p) => policy = Some(p),
                Err(errors) => {
                    for (loc, e) in errors {
                        self.invalid(loc, e);
                    }
                }
            }
        }
        if self.pending.is_empty()
            && let Some(policy) = policy
        {
            return Ok(policy);
        }
        self.pending.sort_by_key(|p| (p.src, p.offset));
        let errors = self
            .pending
            .into_iter()
            .map(|p| {
                let source = self.sources.get(p.src);
                PolicyError {
                    location: Location {
                        file: source.map(|s| s.name.clone()).unwrap_or_default(),
                        position: p.offset.and_then(|o| source.map(|s| s.line_col(o))),
                        key: p.key,
                    },
                    kind: p.kind,
                }
            })
            .collect();
        Err(PolicyErrors::new(errors))
    }
}

fn one_line(message: &str) -> String {
    message
        .trim()
        .lines()
        .map(str::trim)
        .collect::<Vec<_>>()
        .join("; ")
}

/// The schema with every `$ref` inlined, for the walker; generated once.
fn json_schema_inline() -> &'static Value {
    static SCHEMA: OnceLock<Value> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        schemars::generate::SchemaSettings::draft2020_12()
            .with(|s| s.inline_subschemas = true)
            .into_generator()
            .into_root_schema_for::<PolicyFile>()
            .to_value()
    })
}

fn join_key(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

fn index_table(table: &DeTable<'_>, path: &str, out: &mut HashMap<String, Span>) {
    for (k, v) in table.iter() {
        let key = join_key(path, k.get_ref());
        index_value(v, &key, out);
        if let Some(span) = out.get_mut(&key) {
            span.key = Some(k.span());
        }
    }
}

fn index_value(value: &Spanned<DeValue<'_>>, path: &str, out: &mut HashMap<String, Span>) {
    out.insert(
        path.to_owned(),
        Span {
            key: None,
            value: value.span(),
        },
    );
    match value.get_ref() {
        DeValue::Table(t) => index_table(t, path, out),
        DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                index_value(item, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// Walks a TOML tree against the JSON schema, collecting every structural error.
struct Walker {
    src: usize,
    out: Vec<Pending>,
}

impl Walker {
    fn push(&mut self, offset: usize, key: &str, error: ParseError) {
        self.out.push(Pending {
            src: self.src,
            offset: Some(offset),
            key: key.to_owned(),
            kind: error.into(),
        });
    }

    fn table(&mut self, table: &DeTable<'_>, span: Range<usize>, schema: &Value, path: &str) {
        let props = schema.get("properties").and_then(Value::as_object);
        let closed = schema.get("additionalProperties") == Some(&Value::Bool(false));
        for (k, v) in table.iter() {
            let name: &str = k.get_ref();
            match props.and_then(|p| p.get(name)) {
                Some(sub) => self.value(v, sub, &join_key(path, name)),
                None if closed => {
                    let mut expected: Vec<&str> = props
                        .map(|p| p.keys().map(String::as_str).collect())
                        .unwrap_or_default();
                    expected.sort_unstable();
                    self.push(
                        k.span().start,
                        path,
                        ParseError::UnknownKey {
                            key: name.to_owned(),
                            expected: expected.join(", "),
                        },
                    );
                }
                None => {}
            }
        }
        let required = schema.get("required").and_then(Value::as_array);
        for key in required.into_iter().flatten().filter_map(Value::as_str) {
            if table.get(key).is_none() {
                self.push(
                    span.start,
                    path,
                    ParseError::MissingKey {
                        key: key.to_owned(),
                    },
                );
            }
        }
    }

    fn value(&mut self, value: &Spanned<DeValue<'_>>, schema: &Value, path: &str) {
        let offset = value.span().start;
        // `anyOf`/`oneOf`: drop the `null` branch of an Option; a set of `const` branches is
        // a keyword enum; a single remaining branch is walked as the schema itself.
        if let Some(branches) = schema
            .get("anyOf")
            .or_else(|| schema.get("oneOf"))
            .and_then(Value::as_array)
        {
            let branches: Vec<&Value> = branches.iter().filter(|b| !is_null_schema(b)).collect();
            let consts: Option<Vec<&str>> = branches
                .iter()
                .map(|b| b.get("const").and_then(Value::as_str))
                .collect();
            match (branches.as_slice(), consts) {
                ([single], _) => self.value(value, single, path),
                (_, Some(consts)) => self.keyword(value, &consts, path),
                // A union this walker does not model; serde checks it.
                _ => {}
            }
            return;
        }
        if let Some(consts) = schema.get("enum").and_then(Value::as_array) {
            let consts: Vec<&str> = consts.iter().filter_map(Value::as_str).collect();
            self.keyword(value, &consts, path);
            return;
        }
        let types: Vec<&str> = match schema.get("type") {
            Some(Value::String(t)) => vec![t.as_str()],
            Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
            _ => return,
        };
        match value.get_ref() {
            DeValue::Table(t) if types.contains(&"object") => {
                self.table(t, value.span(), schema, path)
            }
            DeValue::Array(items) if types.contains(&"array") => {
                if let Some(item_schema) = schema.get("items") {
                    for (i, item) in items.iter().enumerate() {
                        self.value(item, item_schema, &format!("{path}[{i}]"));
                    }
                }
            }
            DeValue::String(_) if types.contains(&"string") => {}
            DeValue::Boolean(_) if types.contains(&"boolean") => {}
            DeValue::Float(_) if types.contains(&"number") => {}
            DeValue::Integer(i) if types.contains(&"integer") || types.contains(&"number") => {
                let (min, max) = integer_range(schema);
                let parsed = i128::from_str_radix(i.as_str(), i.radix()).ok();
                if !parsed.is_some_and(|n| (min..=max).contains(&n)) {
                    self.push(
                        offset,
                        path,
                        ParseError::OutOfRange {
                            found: i.to_string(),
                            min,
                            max,
                        },
                    );
                }
            }
            other => {
                let expected = types
                    .iter()
                    .filter(|t| **t != "null")
                    .map(|t| type_name(t))
                    .collect::<Vec<_>>()
                    .join(" or ");
                self.push(
                    offset,
                    path,
                    ParseError::WrongType {
                        found: describe(other),
                        expected,
                    },
                );
            }
        }
    }

    fn keyword(&mut self, value: &Spanned<DeValue<'_>>, consts: &[&str], path: &str) {
        let ok = value
            .get_ref()
            .as_str()
            .is_some_and(|s| consts.contains(&s));
        if !ok {
            let expected = consts
                .iter()
                .map(|c| format!("{c:?}"))
                .collect::<Vec<_>>()
                .join(", ");
            let found = match value.get_ref() {
                DeValue::String(s) => format!("{s:?}"),
                other => describe(other),
            };
            self.push(
                value.span().start,
                path,
                ParseError::NotOneOf { found, expected },
            );
        }
    }
}

fn is_null_schema(schema: &Value) -> bool {
    schema.get("type").and_then(Value::as_str) == Some("null")
}

fn integer_range(schema: &Value) -> (i128, i128) {
    let (fmt_min, fmt_max) = match schema.get("format").and_then(Value::as_str) {
        Some("uint8") => (0, i128::from(u8::MAX)),
        Some("uint16") => (0, i128::from(u16::MAX)),
        Some("uint32") => (0, i128::from(u32::MAX)),
        Some("uint64") => (0, i128::from(u64::MAX)),
        _ => (i128::from(i64::MIN), i128::from(i64::MAX)),
    };
    let bound = |key: &str| schema.get(key).and_then(Value::as_i64).map(i128::from);
    (
        bound("minimum").map_or(fmt_min, |m| m.max(fmt_min)),
        bound("maximum").map_or(fmt_max, |m| m.min(fmt_max)),
    )
}

fn type_name(json_type: &str) -> &str {
    match json_type {
        "object" => "table",
        "number" => "float",
        other => other,
    }
}

/// A short description of a TOML value for error messages: its type and, for scalars, its text.
fn describe(value: &DeValue<'_>) -> String {
    let mut out = String::from(value.type_str());
    match value {
        DeValue::String(s) => {
            let _ = write!(out, " {s:?}");
        }
        DeValue::Integer(i) => {
            let _ = write!(out, " {i}");
        }
        DeValue::Float(f) => {
            let _ = write!(out, " {f}");
        }
        DeValue::Boolean(b) => {
            let _ = write!(out, " {b}");
        }
        DeValue::Datetime(d) => {
            let _ = write!(out, " {d}");
        }
        DeValue::Array(_) | DeValue::Table(_) => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shipped_profile_passes_check() {
        assert_eq!(PROFILES.len(), PROFILE_NAMES.len());
        for (&(name, _), &listed) in PROFILES.iter().zip(PROFILE_NAMES) {
            assert_eq!(name, listed);
            let p = load_profile(name).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(p.needs_workspace(), "{name}");
            assert_eq!(p.mounts()[0].guest, "/workspace", "{name}");
            assert!(
                p.decide_fs("/workspace", crate::FsOp::Write, "src/lib.rs")
                    .is_allowed()
            );
            assert!(
                !p.decide_connect("evil.example", 443).is_allowed(),
                "{name}"
            );
            assert_eq!(
                profile_text(name),
                Some(PROFILES.iter().find(|p| p.0 == name).unwrap().1)
            );
        }
        assert_eq!(
            load_profile("offline").unwrap().process().seccomp,
            crate::SeccompProfile::Strict
        );
    }

    #[test]
    fn unknown_profile() {
        assert_eq!(
            load_profile("nope").unwrap_err().to_string(),
            "profile \"nope\": unknown profile \"nope\", expected one of: default, offline, claude-code, codex"
        );
    }

    #[test]
    fn check_fails_on_unknown_key_with_line_and_column() {
        let e = load_str(
            "[network]\ndefault = \"deny\"\nalow = [\"a.example\"]\n",
            Path::new("p.toml"),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "p.toml:3:1: network: unknown key `alow`, expected one of: allow, allow_private, default, deny, http"
        );
    }

    #[test]
    fn check_fails_on_star_wildcard_with_line_and_column() {
        let e = load_str(
            "extends = \"default\"\n[network]\nallow = [\"pypi.org:443\", \"*\"]\n",
            Path::new("p.toml"),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "p.toml:3:26: network.allow[1]: invalid host pattern \"*\": over-broad pattern: matches every host; use network.default = \"allow\" instead"
        );
    }

    #[test]
    fn unreadable_file() {
        let e = load_file(Path::new("/nonexistent/policy.toml")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "/nonexistent/policy.toml: cannot read policy file: No such file or directory (os error 2)"
        );
    }

    #[test]
    fn positions_count_characters_not_bytes() {
        let e = load_str("# é\n[sandbox] # ü\nimage = \"É\"\n", Path::new("p.toml")).unwrap_err();
        assert_eq!(
            e.errors()[0].location,
            Location {
                file: "p.toml".to_owned(),
                position: Some((3, 9)),
                key: "sandbox.image".to_owned(),
            }
        );
    }

    #[test]
    fn json_schema_describes_every_section() {
        let schema = json_schema();
        assert_eq!(schema["title"], "airlock policy");
        assert_eq!(schema["additionalProperties"], false);
        let props = schema["properties"].as_object().unwrap();
        let keys: Vec<&str> = props.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "audit",
                "extends",
                "filesystem",
                "monitor",
                "network",
                "process",
                "sandbox"
            ]
        );
        let text = schema.to_string();
        assert!(text.contains("Absolute mount point inside the guest"));
    }
}
