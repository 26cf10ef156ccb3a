//! What the loader works on: the texts of an `extends` chain with the positions of their keys,
//! where an error points, and the process environment the loader depends on.

use std::collections::HashMap;
use std::ops::Range;
use std::path::PathBuf;

use crate::error::ErrorKind;
use crate::schema::PolicyFile;

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
    pub(crate) fn line_col(&self, offset: usize) -> (usize, usize) {
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
    pub(crate) fn from_process() -> Self {
        Self {
            home: std::env::var_os("HOME").map(PathBuf::from),
            trusted_hosts: false,
        }
    }
}

/// An error not yet turned into a [`PolicyError`](crate::PolicyError): its offset is resolved to line:column last.
pub(crate) struct Pending {
    pub(crate) src: usize,
    pub(crate) offset: Option<usize>,
    pub(crate) key: String,
    pub(crate) kind: ErrorKind,
}
