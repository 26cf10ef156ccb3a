//! The error returned by every loader: a list of [`PolicyError`]s, each a `{ location, kind }`
//! pair naming the file, line, column and key, and saying what was found and what was expected.
//!
//! Parse errors (TOML syntax, unknown keys, wrong types) and validation errors (bad globs, hosts,
//! sizes, contradictions) are kept apart in [`ErrorKind`]; the loaders report every error of the
//! stage that failed, sorted by position.

use std::fmt;

use crate::parse_error::ParseError;
use crate::validation_error::ValidationError;

/// Where an error was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The policy file as given by the caller, or `profiles/<name>.toml` for a shipped profile.
    pub file: String,
    /// 1-based line and column (in characters), or `None` when the error concerns the whole file.
    pub position: Option<(usize, usize)>,
    /// The dotted key path, e.g. `network.allow[2]`; empty when there is none (syntax errors).
    pub key: String,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        if let Some((line, column)) = self.position {
            write!(f, ":{line}:{column}")?;
        }
        Ok(())
    }
}

/// What went wrong.
#[derive(Debug, thiserror::Error)]
pub enum ErrorKind {
    /// The policy file could not be read.
    #[error("cannot read policy file")]
    Read(#[source] std::io::Error),
    /// The text is not a well-formed policy document (syntax, unknown key, wrong type).
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// The document is well formed but a value is invalid or contradicts another.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
}

/// One error: where, and what.
#[derive(Debug, thiserror::Error)]
#[error("{}", DisplayError(self))]
pub struct PolicyError {
    /// File, line, column and key.
    pub location: Location,
    /// The failure. Not a `#[source]`: the message already includes it, on one line.
    pub kind: ErrorKind,
}

/// Formats `file:line:col: key: message`, appending the source chain (I/O errors) on the same line.
struct DisplayError<'a>(&'a PolicyError);

impl fmt::Display for DisplayError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = self.0;
        write!(f, "{}: ", e.location)?;
        if !e.location.key.is_empty() {
            write!(f, "{}: ", e.location.key)?;
        }
        write!(f, "{}", e.kind)?;
        let mut source = std::error::Error::source(&e.kind);
        while let Some(s) = source {
            write!(f, ": {s}")?;
            source = s.source();
        }
        Ok(())
    }
}

/// Every error found while loading a policy; displays one error per line.
#[derive(Debug)]
pub struct PolicyErrors {
    errors: Vec<PolicyError>,
}

impl PolicyErrors {
    pub(crate) fn new(errors: Vec<PolicyError>) -> Self {
        Self { errors }
    }

    /// The errors, sorted by file and position.
    pub fn errors(&self) -> &[PolicyError] {
        &self.errors
    }

    /// Consumes the list.
    pub fn into_errors(self) -> Vec<PolicyError> {
        self.errors
    }
}

impl fmt::Display for PolicyErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for PolicyErrors {}
