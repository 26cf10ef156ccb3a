//! The tools' arguments: one struct per tool, whose doc comments become the JSON schema a
//! model reads, and [`parse`], which turns a call's arguments into one or a
//! [`ToolError`] naming the field. Unknown fields are refused, so a misspelt argument is an
//! error rather than a silent default.

use crate::error::ToolError;
use schemars::JsonSchema;
use serde::Deserialize;
use serde::de::DeserializeOwned;

/// Longest `sandbox_exec` timeout, in seconds.
pub const MAX_TIMEOUT_SECS: u64 = 3600;
/// Default `sandbox_exec` timeout, in seconds.
pub const DEFAULT_TIMEOUT_SECS: u64 = 120;
/// Default cap on each output stream and on file reads, in bytes.
pub const DEFAULT_MAX_BYTES: usize = 64 * 1024;
/// Largest cap a client may ask for, in bytes.
pub const MAX_MAX_BYTES: usize = 4 * 1024 * 1024;
/// Most audit records `audit_tail` returns.
pub const MAX_AUDIT_LIMIT: usize = 1000;

/// Arguments of `sandbox_create`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateArgs {
    /// Policy profile to run under, by name. Only the profiles the user allowed when starting
    /// this server are accepted (see the tool description); omit to get the first of them.
    pub profile: Option<String>,
    /// Guest image name, e.g. `tiny` (busybox) or `debian` if the user built it; omit for the
    /// profile's image.
    pub image: Option<String>,
    /// Host directory to share with the sandbox as its workspace (mounted at `/workspace` by
    /// the shipped profiles): absolute, or relative to the first allowed directory. It must be
    /// inside a directory the user allowed; omit for that first allowed directory.
    pub workspace: Option<String>,
}

/// Arguments of `sandbox_exec`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecArgs {
    /// Sandbox id, as returned by `sandbox_create`.
    pub id: String,
    /// Shell command line, run with `/bin/sh -c` inside the sandbox as the workload user.
    pub command: String,
    /// Absolute working directory inside the sandbox; default: the workspace mount.
    pub cwd: Option<String>,
    /// Seconds to wait before the command is killed (1..=3600, default 120). A command that
    /// times out returns what it printed so far with `timed_out: true`.
    pub timeout_secs: Option<u64>,
    /// Text given to the command on standard input (then end-of-input); default: none.
    pub stdin: Option<String>,
    /// Keep at most this many bytes of each of stdout and stderr (default 65536, at most
    /// 4194304); the rest is counted and dropped, and `stdout_truncated`/`stderr_truncated`
    /// say so.
    pub max_output_bytes: Option<usize>,
}

/// Arguments of `file_read`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadArgs {
    /// Sandbox id.
    pub id: String,
    /// Absolute path inside the sandbox, e.g. `/workspace/README.md`.
    pub path: String,
    /// Return at most this many bytes (default 65536, at most 4194304); `truncated` says
    /// whether the file was longer.
    pub max_bytes: Option<usize>,
}

/// How `file_write` content is encoded.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// The content is the text to write (UTF-8).
    #[default]
    Utf8,
    /// The content is base64 of the bytes to write.
    Base64,
}

/// Arguments of `file_write`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WriteArgs {
    /// Sandbox id.
    pub id: String,
    /// Absolute path inside the sandbox; the parent directory must exist. The file is created
    /// or replaced.
    pub path: String,
    /// The new content.
    pub content: String,
    /// `utf8` (default): `content` is text. `base64`: `content` is base64 of the bytes.
    #[serde(default)]
    pub encoding: Encoding,
    /// Permission bits as octal text, e.g. `755`; default: new files get the usual `644`-ish
    /// umask result, existing files keep theirs.
    pub mode: Option<String>,
}

/// Arguments of `file_list`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListArgs {
    /// Sandbox id.
    pub id: String,
    /// Absolute path of a directory inside the sandbox; default `/workspace`.
    pub path: Option<String>,
}

/// Arguments of the tools that take only a sandbox id (`sandbox_diff`, `sandbox_destroy`).
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IdArgs {
    /// Sandbox id.
    pub id: String,
}

/// Arguments of `sandbox_list`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NoArgs {}

/// A decision recorded in the audit log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DecisionArg {
    /// Allowed by the policy.
    Allow,
    /// Refused by the policy.
    Deny,
    /// Failed for another reason.
    Error,
}

/// Arguments of `audit_tail`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuditArgs {
    /// Sandbox id.
    pub id: String,
    /// Return the last this many matching records (default 20, at most 1000).
    pub limit: Option<usize>,
    /// Only records whose kind matches this glob, `*` matching across dots: `fs.*`, `net.*`,
    /// `proc.exec`, `sandbox.*`, `*.deny`.
    pub kind: Option<String>,
    /// Only records with this decision: `deny` shows what the policy refused and which rule
    /// refused it.
    pub decision: Option<DecisionArg>,
}

/// Parses `args` (absent means `{}`) as the arguments of `tool`.
pub fn parse<T: DeserializeOwned>(
    tool: &'static str,
    args: Option<serde_json::Map<String, serde_json::Value>>,
) -> Result<T, ToolError> {
    let value = serde_json::Value::Object(args.unwrap_or_default());
    serde_json::from_value(value).map_err(|source| ToolError::Arguments { tool, source })
}

/// A non-empty sandbox id.
pub fn id(tool: &'static str, id: &str) -> Result<(), ToolError> {
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return Err(ToolError::Invalid {
            tool,
            field: "id",
            reason: format!("{id:?} is not a sandbox id (the `id` that sandbox_create returned)"),
        });
    }
    Ok(())
}

/// An absolute guest path.
pub fn guest_path(tool: &'static str, field: &'static str, path: &str) -> Result<(), ToolError> {
    if !path.starts_with('/') || path.contains('\0') {
        return Err(ToolError::Invalid {
            tool,
            field,
            reason: format!(
                "{path:?} is not an absolute path inside the sandbox (e.g. /workspace/file.txt)"
            ),
        });
    }
    Ok(())
}

/// A value in `1..=max`, or `default` when absent.
pub fn bounded<N: Copy + PartialOrd + From<u8> + std::fmt::Display>(
    tool: &'static str,
    field: &'static str,
    value: Option<N>,
    default: N,
    max: N,
) -> Result<N, ToolError> {
    match value {
        None => Ok(default),
        Some(v) if v >= N::from(1) && v <= max => Ok(v),
        Some(v) => Err(ToolError::Invalid {
            tool,
            field,
            reason: format!("{v} is out of range; expected 1..={max}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: serde_json::Value) -> Option<serde_json::Map<String, serde_json::Value>> {
        match v {
            serde_json::Value::Object(m) => Some(m),
            _ => None,
        }
    }

    #[test]
    fn bad_arguments_name_the_field() {
        let e =
            parse::<ExecArgs>("sandbox_exec", obj(json!({"id": "a", "comand": "ls"}))).unwrap_err();
        assert_eq!(e.code(), "bad_arguments");
        assert!(e.chain().starts_with("bad arguments for sandbox_exec: unknown field `comand`, expected one of `id`, `command`"), "{}", e.chain());
        let e = parse::<ExecArgs>("sandbox_exec", obj(json!({"id": "a"}))).unwrap_err();
        assert_eq!(
            e.chain(),
            "bad arguments for sandbox_exec: missing field `command`"
        );
        let e = parse::<ExecArgs>(
            "sandbox_exec",
            obj(json!({"id": "a", "command": "ls", "timeout_secs": "ten"})),
        )
        .unwrap_err();
        assert!(
            e.chain()
                .contains("invalid type: string \"ten\", expected u64"),
            "{}",
            e.chain()
        );
        let e = parse::<WriteArgs>(
            "file_write",
            obj(json!({"id": "a", "path": "/x", "content": "", "encoding": "hex"})),
        )
        .unwrap_err();
        assert!(
            e.chain()
                .contains("unknown variant `hex`, expected `utf8` or `base64`"),
            "{}",
            e.chain()
        );
        let e = parse::<AuditArgs>("audit_tail", None).unwrap_err();
        assert_eq!(
            e.chain(),
            "bad arguments for audit_tail: missing field `id`"
        );
        parse::<NoArgs>("sandbox_list", None).unwrap();
        let ok: ExecArgs = parse("sandbox_exec", obj(json!({"id": "a", "command": "ls"}))).unwrap();
        assert_eq!(
            (ok.id.as_str(), ok.command.as_str(), ok.timeout_secs),
            ("a", "ls", None)
        );
    }

    #[test]
    fn values_are_checked_with_what_is_expected() {
        assert_eq!(bounded("t", "timeout_secs", None, 120, 3600).unwrap(), 120);
        assert_eq!(
            bounded("t", "timeout_secs", Some(3600u64), 120, 3600).unwrap(),
            3600
        );
        for bad in [0u64, 3601] {
            let e = bounded("sandbox_exec", "timeout_secs", Some(bad), 120, 3600).unwrap_err();
            assert_eq!(
                e.to_string(),
                format!(
                    "sandbox_exec: argument `timeout_secs`: {bad} is out of range; expected 1..=3600"
                )
            );
        }
        assert_eq!(
            guest_path("file_read", "path", "etc/passwd")
                .unwrap_err()
                .to_string(),
            "file_read: argument `path`: \"etc/passwd\" is not an absolute path inside the sandbox (e.g. /workspace/file.txt)"
        );
        guest_path("file_read", "path", "/etc/passwd").unwrap();
        assert_eq!(
            id("file_read", "../x").unwrap_err().to_string(),
            "file_read: argument `id`: \"../x\" is not a sandbox id (the `id` that sandbox_create returned)"
        );
        id("file_read", "3f9c0a1b2c4d").unwrap();
    }
}
