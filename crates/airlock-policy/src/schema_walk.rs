//! The policy text checked against the JSON schema of `schema.rs`, key by key, with every
//! key's and value's position kept: each unknown key, wrong type, bad keyword and out-of-range
//! integer is reported, not only the first.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::ops::Range;
use std::sync::OnceLock;

use serde_json::Value;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::parse_error::ParseError;
use crate::schema::PolicyFile;
use crate::source::{Pending, Span};

/// The schema with every `$ref` inlined, for the walker; generated once.
pub(crate) fn json_schema_inline() -> &'static Value {
    static SCHEMA: OnceLock<Value> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        schemars::generate::SchemaSettings::draft2020_12()
            .with(|s| s.inline_subschemas = true)
            .into_generator()
            .into_root_schema_for::<PolicyFile>()
            .to_value()
    })
}

pub(crate) fn join_key(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

pub(crate) fn index_table(table: &DeTable<'_>, path: &str, out: &mut HashMap<String, Span>) {
    for (k, v) in table.iter() {
        let key = join_key(path, k.get_ref());
        index_value(v, &key, out);
        if let Some(span) = out.get_mut(&key) {
            span.key = Some(k.span());
        }
    }
}

pub(crate) fn index_value(
    value: &Spanned<DeValue<'_>>,
    path: &str,
    out: &mut HashMap<String, Span>,
) {
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
pub(crate) struct Walker {
    pub(crate) src: usize,
    pub(crate) out: Vec<Pending>,
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

    pub(crate) fn table(
        &mut self,
        table: &DeTable<'_>,
        span: Range<usize>,
        schema: &Value,
        path: &str,
    ) {
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

pub(crate) fn is_null_schema(schema: &Value) -> bool {
    schema.get("type").and_then(Value::as_str) == Some("null")
}

pub(crate) fn integer_range(schema: &Value) -> (i128, i128) {
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

pub(crate) fn type_name(json_type: &str) -> &str {
    match json_type {
        "object" => "table",
        "number" => "float",
        other => other,
    }
}

/// A short description of a TOML value for error messages: its type and, for scalars, its text.
pub(crate) fn describe(value: &DeValue<'_>) -> String {
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
