//! Why a tool call failed. Every failure reaches the model as a tool result marked `isError`
//! whose text is the whole error chain, and whose structured content carries a stable code
//! ([`ToolError::code`]); none is a protocol error, so the model can read it and correct
//! itself.

use airlock_api::client::ClientError;
use hyper::StatusCode;
use std::path::PathBuf;

/// A tool call that did not do its job.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// The arguments do not match the tool's input schema.
    #[error("bad arguments for {tool}")]
    Arguments {
        /// The tool.
        tool: &'static str,
        /// What serde found wrong (names the field, and the line and column).
        #[source]
        source: serde_json::Error,
    },
    /// An argument has the right type but a value the tool does not accept.
    #[error("{tool}: argument `{field}`: {reason}")]
    Invalid {
        /// The tool.
        tool: &'static str,
        /// The argument.
        field: &'static str,
        /// What is wrong and what is expected.
        reason: String,
    },
    /// The profile is not one the user allowed this server to use.
    #[error(
        "profile {profile:?} is not allowed here; the user allowed: {}. A client cannot choose \
         another policy: ask the user to start `airlock mcp` with `--allow-profile {profile}`",
        allowed.join(", ")
    )]
    ProfileNotAllowed {
        /// The profile asked for.
        profile: String,
        /// The profiles allowed (`--allow-profile`).
        allowed: Vec<String>,
    },
    /// The workspace is outside every directory the user allowed.
    #[error(
        "workspace {} is not inside a directory the user allowed ({}); ask the user to start \
         `airlock mcp` with `--allow-workspace DIR`",
        path.display(),
        roots.iter().map(|r| r.display().to_string()).collect::<Vec<_>>().join(", ")
    )]
    WorkspaceNotAllowed {
        /// The workspace, resolved.
        path: PathBuf,
        /// The allowed roots (`--allow-workspace`).
        roots: Vec<PathBuf>,
    },
    /// The workspace cannot be resolved (missing, not a directory).
    #[error("workspace {}: not an existing host directory", path.display())]
    Workspace {
        /// The workspace as given.
        path: PathBuf,
        /// Why it could not be resolved.
        #[source]
        source: std::io::Error,
    },
    /// The id names no sandbox this server created.
    #[error(
        "unknown sandbox id {id:?}; sandboxes of this session: {}. Only sandboxes created by \
         this MCP server (sandbox_create) are reachable; see sandbox_list",
        if known.is_empty() { "none".to_string() } else { known.join(", ") }
    )]
    UnknownSandbox {
        /// The id given.
        id: String,
        /// Ids this server created and has not destroyed.
        known: Vec<String>,
    },
    /// The daemon refused or failed the request (a policy denial is a 403 here).
    #[error("{tool}")]
    Daemon {
        /// The tool.
        tool: &'static str,
        /// The daemon's answer, or why it could not be reached.
        #[source]
        source: Box<ClientError>,
    },
    /// The sandbox's policy refused the operation, and the audit log names the rule.
    #[error("{tool}: the sandbox's policy refused {path}: rule {rule} ({reason})")]
    Denied {
        /// The tool.
        tool: &'static str,
        /// The guest path refused.
        path: String,
        /// The policy rule that decided, as the audit record names it.
        rule: String,
        /// The deny reason (`protected_path`, `read_only`, ...).
        reason: String,
        /// The daemon's refusal.
        #[source]
        source: Box<ClientError>,
    },
    /// The daemon's reply could not be understood.
    #[error("{tool}: unexpected reply from the daemon: {reason}")]
    Reply {
        /// The tool.
        tool: &'static str,
        /// What was wrong with it.
        reason: String,
    },
}

impl ToolError {
    /// A stable snake_case code for the failure, for programs reading the structured result:
    /// `bad_arguments`, `profile_not_allowed`, `workspace_not_allowed`, `unknown_sandbox`,
    /// `no_daemon`, `denied` (the policy or the guest refused), `not_found`, `bad_request`,
    /// `conflict`, `daemon_error`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Arguments { .. } | Self::Invalid { .. } => "bad_arguments",
            Self::ProfileNotAllowed { .. } => "profile_not_allowed",
            Self::WorkspaceNotAllowed { .. } | Self::Workspace { .. } => "workspace_not_allowed",
            Self::UnknownSandbox { .. } => "unknown_sandbox",
            Self::Daemon { source, .. } => match source.as_ref() {
                ClientError::NoDaemon { .. } | ClientError::UnsafeSocketDir { .. } => "no_daemon",
                ClientError::Api { status, .. } => match *status {
                    StatusCode::FORBIDDEN => "denied",
                    StatusCode::NOT_FOUND => "not_found",
                    StatusCode::BAD_REQUEST | StatusCode::PAYLOAD_TOO_LARGE => "bad_request",
                    StatusCode::CONFLICT => "conflict",
                    _ => "daemon_error",
                },
                ClientError::Transport(_) => "daemon_error",
            },
            Self::Denied { .. } => "denied",
            Self::Reply { .. } => "daemon_error",
        }
    }

    /// The message and each of its sources, joined by `: ` (what the model reads). A source
    /// whose text an outer message already quotes is left out.
    pub fn chain(&self) -> String {
        let mut text = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(e) = source {
            let part = e.to_string();
            if !text.contains(&part) {
                text.push_str(": ");
                text.push_str(&part);
            }
            source = e.source();
        }
        text
    }

    /// A daemon error for `tool`.
    pub fn daemon(tool: &'static str) -> impl FnOnce(ClientError) -> ToolError {
        move |source| ToolError::Daemon {
            tool,
            source: Box::new(source),
        }
    }
}

/// Why the server could not start with the options it was given (a CLI error, not a tool
/// result).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// `--allow-profile` names no shipped profile.
    #[error("--allow-profile {name:?}: no such profile; shipped profiles: {}", known.join(", "))]
    UnknownProfile {
        /// The name given.
        name: String,
        /// The shipped profiles.
        known: Vec<&'static str>,
    },
    /// A `NAME=FILE` profile name is not `[A-Za-z0-9._-]{1,63}`, or names two profiles.
    #[error(
        "--allow-profile {0:?}: a profile name is 1 to 63 characters of [A-Za-z0-9._-], each naming one profile"
    )]
    ProfileName(String),
    /// A `NAME=FILE` policy cannot be read or is not a valid policy.
    #[error("--allow-profile {name}={}: not a usable policy", path.display())]
    PolicyFile {
        /// The name given.
        name: String,
        /// The file.
        path: PathBuf,
        /// Why: reading it, or every error in it.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// `--allow-workspace` is not an existing directory.
    #[error("--allow-workspace {}: not an existing directory", path.display())]
    Workspace {
        /// The path given.
        path: PathBuf,
        /// Why it could not be resolved.
        #[source]
        source: std::io::Error,
    },
    /// `--http` names an address other hosts could reach.
    #[error(
        "--http {0}: only a loopback address (127.0.0.1, [::1]) is served; a token on the network is not enough protection for creating sandboxes"
    )]
    NotLoopback(std::net::SocketAddr),
    /// `--http` could not be bound.
    #[error("--http {addr}: binding")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The `--token-file` is unusable.
    #[error("reading the token")]
    Token(#[source] airlock_api::listen::ListenError),
    /// Serving failed.
    #[error("serving MCP")]
    Serve(#[source] std::io::Error),
}
