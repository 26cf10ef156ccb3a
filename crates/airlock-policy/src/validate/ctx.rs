//! The validator's state: the sources of the `extends` chain, the errors found so far, and how
//! to read a value or a list through the layers.

use crate::schema::PolicyFile;
use crate::source::{Env, Layer, Loc, Source};
use crate::validation_error::ValidationError;

/// A value and the key it came from.
pub(super) struct Item<'a, T> {
    pub(super) value: &'a T,
    pub(super) src: usize,
    pub(super) key: String,
}

pub(super) struct Ctx<'a> {
    pub(super) sources: &'a [Source],
    /// The caller's own file (the last layer).
    pub(super) top: usize,
    pub(super) env: &'a Env,
    pub(super) errors: Vec<(Loc, ValidationError)>,
}

/// The value of a scalar from the highest layer that sets it.
pub(super) fn last<'a, T>(
    layers: &'a [Layer],
    key: &str,
    get: impl Fn(&'a PolicyFile) -> &'a Option<T>,
) -> Option<Item<'a, T>> {
    layers.iter().rev().find_map(|l| {
        get(&l.file).as_ref().map(|value| Item {
            value,
            src: l.src,
            key: key.to_owned(),
        })
    })
}

/// Every entry of a list, lowest layer first.
pub(super) fn all<'a, T>(
    layers: &'a [Layer],
    key: &str,
    get: impl Fn(&'a PolicyFile) -> &'a Vec<T>,
) -> Vec<Item<'a, T>> {
    layers
        .iter()
        .flat_map(|l| {
            get(&l.file).iter().enumerate().map(move |(i, value)| Item {
                value,
                src: l.src,
                key: format!("{key}[{i}]"),
            })
        })
        .collect()
}

impl Ctx<'_> {
    pub(super) fn error(&mut self, src: usize, key: &str, error: ValidationError) {
        self.errors.push((Loc::value(src, key), error));
    }

    /// `key "text"`, plus the profile name when the entry comes from a profile under the
    /// caller's file, so that audit records name the entry unambiguously.
    pub(super) fn rule_name(&self, src: usize, key: &str, text: &str) -> String {
        let mut name = format!("{key} {text:?}");
        if src != self.top
            && let Some(profile) = self.sources.get(src).and_then(|s| s.profile)
        {
            name.push_str(&format!(" (profile {profile})"));
        }
        name
    }
}
