//! airlock policy: one TOML file that governs files, network, process and resources of a
//! sandbox. Text flows `load` (TOML with positions, checked against the JSON schema of
//! `schema`) → `validate` (defaults, parsing of sizes, globs and host patterns, cross-checks,
//! every error with file:line:column) → [`Policy`], whose `decide_*` methods answer the
//! gateways' questions purely, with a [`Decision`] naming the rule that decided and a
//! [`reason`] constant. `host` and `path` hold the canonical forms both sides are matched in;
//! `explain` renders decisions for `airlock policy explain`; shipped profiles are embedded
//! from `profiles/*.toml`.

mod address;
mod decide;
mod error;
mod explain;
mod host;
mod load;
mod parse_error;
mod path;
mod path_set;
mod policy;
pub mod reason;
mod reserved;
mod schema;
mod schema_walk;
mod source;
mod validate;
mod validation_error;

pub use address::{AddressClass, METADATA_BLOCKS, MetadataBlock};
pub use decide::{Decision, FsOp, Verdict};
pub use error::{ErrorKind, Location, PolicyError, PolicyErrors};
pub use explain::{Explanation, Query, QueryError, explain, explain_one};
pub use host::{Endpoint, Host, HostError, HostPattern, Specificity, Target, parse_ipv4_legacy};
pub use load::{json_schema, load_file, load_profile, load_str, profile_names, profile_text};
pub use parse_error::ParseError;
pub use path::{BUILTIN_PROTECTED, PathError, ProtectedEntry};
pub use policy::{
    AGENT_HOME, AGENT_HOME_RULE, AuditPolicy, Credential, CredentialSource, LAYERS, MonitorEvent,
    MonitorRule, Mount, MountHost, PROTECTIONS, Policy, PolicySource, ProcessPolicy, SandboxLimits,
};
pub use reserved::{HostFile, Reserved, ReservedAccess};
pub use schema::{EventDecision, MonitorAction, MountMode, SeccompProfile};
pub use validation_error::ValidationError;
