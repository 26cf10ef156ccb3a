//! What can be wrong with a policy document before it is validated: TOML syntax, unknown keys,
//! wrong types, values outside their set or range.

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
