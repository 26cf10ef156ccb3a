//! The tool catalogue: each tool's name, its description for a model, and the JSON schema of
//! its arguments (derived from the structs in `args.rs`). `tools/list` returns exactly this.

use crate::allow::Allowed;
use crate::args::{AuditArgs, CreateArgs, ExecArgs, IdArgs, ListArgs, NoArgs, ReadArgs, WriteArgs};
use rmcp::handler::server::common::schema_for_type;
use rmcp::model::{Tool, ToolAnnotations};

/// `sandbox_create`.
pub const CREATE: &str = "sandbox_create";
/// `sandbox_exec`.
pub const EXEC: &str = "sandbox_exec";
/// `file_read`.
pub const READ: &str = "file_read";
/// `file_write`.
pub const WRITE: &str = "file_write";
/// `file_list`.
pub const LIST: &str = "file_list";
/// `sandbox_diff`.
pub const DIFF: &str = "sandbox_diff";
/// `audit_tail`.
pub const AUDIT: &str = "audit_tail";
/// `sandbox_destroy`.
pub const DESTROY: &str = "sandbox_destroy";
/// `sandbox_list`.
pub const SANDBOXES: &str = "sandbox_list";

/// Every tool name, in catalogue order.
pub const NAMES: [&str; 9] = [
    CREATE, EXEC, READ, WRITE, LIST, DIFF, AUDIT, DESTROY, SANDBOXES,
];

/// What the server tells a model about itself when it connects.
pub const INSTRUCTIONS: &str = "airlock runs commands in isolated microVM sandboxes. Create a \
sandbox with sandbox_create, run shell commands with sandbox_exec, read and write files with \
file_read/file_write/file_list, see what changed in the workspace with sandbox_diff, and \
destroy it with sandbox_destroy when done. The sandbox's policy (which files it may write, \
which hosts it may reach) is fixed by the user and enforced outside the VM: a refusal comes \
back as an error result naming the rule, and audit_tail shows every decision.";

fn tool(
    name: &'static str,
    description: String,
    schema: std::sync::Arc<rmcp::model::JsonObject>,
    read_only: bool,
    destructive: bool,
) -> Tool {
    let mut annotations = ToolAnnotations::new();
    annotations.read_only_hint = Some(read_only);
    annotations.destructive_hint = Some(destructive);
    annotations.open_world_hint = Some(false);
    Tool::new(name, description, schema).with_annotations(annotations)
}

/// The catalogue, with the user's allowed profiles and directories written into
/// `sandbox_create`'s description so a model knows its choices.
pub fn catalogue(allowed: &Allowed) -> Vec<Tool> {
    let roots: Vec<String> = allowed
        .roots()
        .iter()
        .map(|r| r.display().to_string())
        .collect();
    vec![
        tool(
            CREATE,
            format!(
                "Create a sandbox: a fresh microVM with its own Linux kernel, sharing a host \
                 directory as its workspace (at /workspace). Takes a few seconds; returns its \
                 `id`, needed by every other tool. The policy is chosen by name among the \
                 profiles the user allowed: {profiles} (default {default}); a client cannot \
                 supply its own policy. The workspace must be inside: {roots}. Destroy the \
                 sandbox with sandbox_destroy when finished.",
                profiles = allowed.profiles().join(", "),
                default = allowed.profiles().first().cloned().unwrap_or_default(),
                roots = roots.join(", "),
            ),
            schema_for_type::<CreateArgs>(),
            false,
            false,
        ),
        tool(
            EXEC,
            "Run a shell command (`/bin/sh -c`) in a sandbox and wait for it. Returns \
             exit_code, stdout, stderr, and stdout_truncated/stderr_truncated when output \
             exceeded max_output_bytes, or timed_out when it ran past timeout_secs. Starts in \
             the workspace (/workspace). The network and files are limited by the sandbox's \
             policy: when a command fails, `policy_denials` lists what the policy refused \
             while it ran and by which rule; audit_tail with decision \"deny\" shows more."
                .into(),
            schema_for_type::<ExecArgs>(),
            false,
            true,
        ),
        tool(
            READ,
            "Read a file inside a sandbox by absolute path. Returns its content as text \
             (encoding \"utf8\") or, for binary files, base64 (encoding \"base64\"), cut to \
             max_bytes with `truncated` set. A path the policy does not let the sandbox read is \
             an error naming the rule."
                .into(),
            schema_for_type::<ReadArgs>(),
            true,
            false,
        ),
        tool(
            WRITE,
            "Create or replace a file inside a sandbox (absolute path; the parent directory \
             must exist). Writes go through the same policy as the sandbox's own writes: \
             protected paths such as .git/hooks, .git/config, .mcp.json, .claude/ and shell rc \
             files, and read-only mounts, are refused with an error naming the rule."
                .into(),
            schema_for_type::<WriteArgs>(),
            false,
            true,
        ),
        tool(
            LIST,
            "List a directory inside a sandbox: each entry's name, type (file, directory, \
             symlink, ...), size, permission bits and modification time."
                .into(),
            schema_for_type::<ListArgs>(),
            true,
            false,
        ),
        tool(
            DIFF,
            "Show what the sandbox changed in its writable shares, per mount. For an overlay \
             mount (changes kept in a private copy until the user applies them): added, \
             modified and deleted paths with unified diffs of text files. For a read-write \
             mount (changes land on the host at once): the paths the sandbox modified, from \
             the audit log."
                .into(),
            schema_for_type::<IdArgs>(),
            true,
            false,
        ),
        tool(
            AUDIT,
            "The most recent records of a sandbox's tamper-evident audit log: file operations \
             (fs.*), network connections (net.*), processes (proc.*), lifecycle (sandbox.*) \
             and every policy decision with the rule that made it. Filter by kind glob and \
             decision; decision \"deny\" answers 'why was this refused?'."
                .into(),
            schema_for_type::<AuditArgs>(),
            true,
            false,
        ),
        tool(
            DESTROY,
            "Destroy a sandbox: stop its VM and every process in it. Its audit log stays on \
             the host (the result names it); files written to a read-write workspace stay too."
                .into(),
            schema_for_type::<IdArgs>(),
            false,
            true,
        ),
        tool(
            SANDBOXES,
            "List the sandboxes this MCP session created and has not destroyed, with their \
             status, image, policy and workspace."
                .into(),
            schema_for_type::<NoArgs>(),
            true,
            false,
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_tool_has_an_object_schema_and_a_description() {
        let dir = tempfile::tempdir().unwrap();
        let allowed = Allowed::new(&["offline".into()], &[], dir.path()).unwrap();
        let tools = catalogue(&allowed);
        let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
        assert_eq!(names, NAMES);
        for t in &tools {
            assert_eq!(
                t.input_schema.get("type").and_then(|v| v.as_str()),
                Some("object"),
                "{}",
                t.name
            );
            assert!(
                t.description.as_ref().is_some_and(|d| d.len() > 80),
                "{}",
                t.name
            );
        }
        let create = tools.first().unwrap();
        let description = create.description.as_deref().unwrap_or_default();
        assert!(
            description.contains("allowed: offline (default offline)"),
            "{description}"
        );
        let props = create
            .input_schema
            .get("properties")
            .and_then(|p| p.as_object())
            .unwrap();
        let keys: Vec<&str> = props.keys().map(String::as_str).collect();
        assert_eq!(keys, ["image", "profile", "workspace"]);
    }
}
