//! The tools' implementations: each checks its arguments, then makes the daemon requests that
//! do the work (the sandboxes are the daemon's, audited like any other). A [`Session`]
//! remembers the sandboxes it created and acts on those only: a client cannot reach a sandbox
//! the user started elsewhere under a wider policy.

use crate::allow::{Allowed, Profile};
use crate::args::{
    self, AuditArgs, CreateArgs, Encoding, ExecArgs, IdArgs, ListArgs, NoArgs, ReadArgs, WriteArgs,
};
use crate::audit::{self, AuditFilter};
use crate::error::ToolError;
use crate::{exec, tools};
use airlock_api::client::{Client, ClientError, collect, encode_query};
use airlock_api::types::{
    ChangeList, CreateSandboxRequest, FileList, FileWritten, SandboxInfo, SandboxList,
};
use base64::Engine as _;
use hyper::Method;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

type Args = Option<serde_json::Map<String, Value>>;

/// How many times a refusal's audit record is looked for, 100 ms apart.
const DENIAL_LOOKUPS: usize = 20;
/// How many recent filesystem denials are searched for it.
const DENIAL_WINDOW: usize = 200;
/// Most denials a failed exec reports.
const EXEC_DENIALS: usize = 20;

/// One MCP connection's view of the daemon.
#[derive(Debug)]
pub struct Session {
    client: Client,
    allowed: Allowed,
    sandboxes: Mutex<BTreeSet<String>>,
}

impl Session {
    /// A session talking to the daemon through `client`, under `allowed`.
    pub fn new(client: Client, allowed: Allowed) -> Session {
        Session {
            client,
            allowed,
            sandboxes: Mutex::new(BTreeSet::new()),
        }
    }

    /// The user's allow-list.
    pub fn allowed(&self) -> &Allowed {
        &self.allowed
    }

    /// Runs tool `name`; `None` when there is no such tool.
    pub async fn call(&self, name: &str, args: Args) -> Option<Result<Value, ToolError>> {
        Some(match name {
            tools::CREATE => self.create(args).await,
            tools::EXEC => self.exec(args).await,
            tools::READ => self.read(args).await,
            tools::WRITE => self.write(args).await,
            tools::LIST => self.list(args).await,
            tools::DIFF => self.diff(args).await,
            tools::AUDIT => self.audit(args).await,
            tools::DESTROY => self.destroy(args).await,
            tools::SANDBOXES => self.sandboxes(args).await,
            _ => return None,
        })
    }

    fn ids(&self) -> std::sync::MutexGuard<'_, BTreeSet<String>> {
        self.sandboxes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Checks that `id` is a sandbox of this session.
    pub fn known(&self, tool: &'static str, id: &str) -> Result<(), ToolError> {
        args::id(tool, id)?;
        let ids = self.ids();
        if ids.contains(id) {
            return Ok(());
        }
        Err(ToolError::UnknownSandbox {
            id: id.to_string(),
            known: ids.iter().cloned().collect(),
        })
    }

    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        tool: &'static str,
        path: &str,
    ) -> Result<T, ToolError> {
        self.client
            .json(Method::GET, path, None::<&()>)
            .await
            .map_err(ToolError::daemon(tool))
    }

    async fn create(&self, args: Args) -> Result<Value, ToolError> {
        let a: CreateArgs = args::parse(tools::CREATE, args)?;
        let profile = self.allowed.profile(a.profile.as_deref())?;
        let workspace = self.allowed.workspace(a.workspace.as_deref())?;
        let mut request = CreateSandboxRequest {
            image: a.image,
            workspace: Some(workspace.display().to_string()),
            labels: BTreeMap::from([
                ("created-by".to_string(), "airlock-mcp".to_string()),
                ("profile".to_string(), profile.name().to_string()),
            ]),
            ..CreateSandboxRequest::default()
        };
        match profile {
            Profile::Shipped(name) => request.profile = Some(name.clone()),
            Profile::File { path, text, .. } => {
                request.policy = Some(text.clone());
                request.policy_origin = Some(path.display().to_string());
            }
        }
        let info: SandboxInfo = self
            .client
            .json(Method::POST, "/v1/sandboxes", Some(&request))
            .await
            .map_err(ToolError::daemon(tools::CREATE))?;
        self.ids().insert(info.id.clone());
        Ok(sandbox_json(&info))
    }

    async fn exec(&self, args: Args) -> Result<Value, ToolError> {
        let a: ExecArgs = args::parse(tools::EXEC, args)?;
        self.known(tools::EXEC, &a.id)?;
        if let Some(cwd) = &a.cwd {
            args::guest_path(tools::EXEC, "cwd", cwd)?;
        }
        let timeout = args::bounded(
            tools::EXEC,
            "timeout_secs",
            a.timeout_secs,
            args::DEFAULT_TIMEOUT_SECS,
            args::MAX_TIMEOUT_SECS,
        )?;
        let max = args::bounded(
            tools::EXEC,
            "max_output_bytes",
            a.max_output_bytes,
            args::DEFAULT_MAX_BYTES,
            args::MAX_MAX_BYTES,
        )?;
        let started = airlock_audit::Timestamp::now();
        let mut outcome = exec::run(&self.client, &a, Duration::from_secs(timeout), max).await?;
        if outcome.exit_code != Some(0) {
            outcome.policy_denials = self.denials_since(&a.id, started).await;
        }
        to_value(tools::EXEC, &outcome)
    }

    async fn read(&self, args: Args) -> Result<Value, ToolError> {
        let a: ReadArgs = args::parse(tools::READ, args)?;
        self.known(tools::READ, &a.id)?;
        args::guest_path(tools::READ, "path", &a.path)?;
        let max = args::bounded(
            tools::READ,
            "max_bytes",
            a.max_bytes,
            args::DEFAULT_MAX_BYTES,
            args::MAX_MAX_BYTES,
        )?;
        let path = format!(
            "/v1/sandboxes/{}/files?path={}",
            a.id,
            encode_query(&a.path)
        );
        let resp = match self.client.call(Method::GET, &path, None).await {
            Ok(resp) => resp,
            Err(e) => return Err(self.explain(tools::READ, &a.id, &a.path, e).await),
        };
        let bytes = collect(resp)
            .await
            .map_err(ToolError::daemon(tools::READ))?;
        let kept = bytes.get(..max.min(bytes.len())).unwrap_or_default();
        // A cut may split a UTF-8 sequence: text is judged on whole characters before it.
        let (encoding, content) = match std::str::from_utf8(kept) {
            Ok(text) => ("utf8", text.to_string()),
            Err(e) if kept.len() < bytes.len() && e.error_len().is_none() => (
                "utf8",
                String::from_utf8_lossy(kept.get(..e.valid_up_to()).unwrap_or_default())
                    .into_owned(),
            ),
            Err(_) => (
                "base64",
                base64::engine::general_purpose::STANDARD.encode(kept),
            ),
        };
        Ok(json!({
            "path": a.path,
            "size": bytes.len(),
            "encoding": encoding,
            "content": content,
            "truncated": kept.len() < bytes.len(),
        }))
    }

    async fn write(&self, args: Args) -> Result<Value, ToolError> {
        let a: WriteArgs = args::parse(tools::WRITE, args)?;
        self.known(tools::WRITE, &a.id)?;
        args::guest_path(tools::WRITE, "path", &a.path)?;
        let bytes = match a.encoding {
            Encoding::Utf8 => a.content.into_bytes(),
            Encoding::Base64 => base64::engine::general_purpose::STANDARD
                .decode(&a.content)
                .map_err(|e| ToolError::Invalid {
                    tool: tools::WRITE,
                    field: "content",
                    reason: format!("not valid base64 (encoding is \"base64\"): {e}"),
                })?,
        };
        let mut path = format!(
            "/v1/sandboxes/{}/files?path={}",
            a.id,
            encode_query(&a.path)
        );
        if let Some(mode) = &a.mode {
            path.push_str(&format!("&mode={}", encode_query(mode)));
        }
        let body = Some(("application/octet-stream", bytes));
        let resp = match self.client.call(Method::PUT, &path, body).await {
            Ok(resp) => resp,
            Err(e) => return Err(self.explain(tools::WRITE, &a.id, &a.path, e).await),
        };
        let body = collect(resp)
            .await
            .map_err(ToolError::daemon(tools::WRITE))?;
        let written: FileWritten = serde_json::from_slice(&body).map_err(|e| ToolError::Reply {
            tool: tools::WRITE,
            reason: e.to_string(),
        })?;
        to_value(tools::WRITE, &written)
    }

    /// Turns a refusal of `path` into [`ToolError::Denied`] naming the policy rule, found in
    /// the sandbox's audit log; other errors stay as they are.
    async fn explain(
        &self,
        tool: &'static str,
        id: &str,
        path: &str,
        source: ClientError,
    ) -> ToolError {
        let e = ToolError::daemon(tool)(source);
        if e.code() != "denied" {
            return e;
        }
        // The gateway's record reaches the log moments after the guest saw the refusal.
        for _ in 0..DENIAL_LOOKUPS {
            if let Some((rule, reason)) = self.denial_of(id, path).await {
                let ToolError::Daemon { source, .. } = e else {
                    return e;
                };
                return ToolError::Denied {
                    tool,
                    path: path.to_string(),
                    rule,
                    reason,
                    source,
                };
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        e
    }

    /// The denials recorded since `ts`, without the chain fields (best effort: none if the log
    /// cannot be read).
    async fn denials_since(&self, id: &str, ts: airlock_audit::Timestamp) -> Vec<Value> {
        let args = AuditArgs {
            id: id.to_string(),
            decision: Some(args::DecisionArg::Deny),
            ..AuditArgs::default()
        };
        let Ok(filter) = AuditFilter::new(&args, EXEC_DENIALS) else {
            return Vec::new();
        };
        let records = audit::tail(&self.client, id, &filter.since(ts)).await;
        let mut records = records.unwrap_or_default();
        for r in &mut records {
            if let Some(o) = r.as_object_mut() {
                for chain_field in ["prev", "hash", "sandbox"] {
                    o.remove(chain_field);
                }
            }
        }
        records
    }

    /// The rule and reason of the last filesystem denial of guest path `path`.
    async fn denial_of(&self, id: &str, path: &str) -> Option<(String, String)> {
        let args = AuditArgs {
            id: id.to_string(),
            kind: Some("fs.*".into()),
            decision: Some(args::DecisionArg::Deny),
            limit: None,
        };
        let filter = AuditFilter::new(&args, DENIAL_WINDOW).ok()?;
        let records = audit::tail(&self.client, id, &filter).await.ok()?;
        records.iter().rev().find_map(|r| denial_in(r, path))
    }

    async fn list(&self, args: Args) -> Result<Value, ToolError> {
        let a: ListArgs = args::parse(tools::LIST, args)?;
        self.known(tools::LIST, &a.id)?;
        let dir = a.path.unwrap_or_else(|| "/workspace".into());
        args::guest_path(tools::LIST, "path", &dir)?;
        let path = format!(
            "/v1/sandboxes/{}/files/list?path={}",
            a.id,
            encode_query(&dir)
        );
        let list: FileList = self.get_json(tools::LIST, &path).await?;
        to_value(tools::LIST, &list)
    }

    async fn diff(&self, args: Args) -> Result<Value, ToolError> {
        let a: IdArgs = args::parse(tools::DIFF, args)?;
        self.known(tools::DIFF, &a.id)?;
        let changes: ChangeList = self
            .get_json(tools::DIFF, &format!("/v1/sandboxes/{}/changes", a.id))
            .await?;
        to_value(tools::DIFF, &changes)
    }

    async fn audit(&self, args: Args) -> Result<Value, ToolError> {
        let a: AuditArgs = args::parse(tools::AUDIT, args)?;
        self.known(tools::AUDIT, &a.id)?;
        let limit = args::bounded(tools::AUDIT, "limit", a.limit, 20, args::MAX_AUDIT_LIMIT)?;
        let filter = AuditFilter::new(&a, limit)?;
        let records = audit::tail(&self.client, &a.id, &filter).await?;
        Ok(json!({ "id": a.id, "records": records }))
    }

    async fn destroy(&self, args: Args) -> Result<Value, ToolError> {
        let a: IdArgs = args::parse(tools::DESTROY, args)?;
        self.known(tools::DESTROY, &a.id)?;
        let path = format!("/v1/sandboxes/{}", a.id);
        let info: SandboxInfo = self.get_json(tools::DESTROY, &path).await?;
        self.client
            .call(Method::DELETE, &path, None)
            .await
            .map_err(ToolError::daemon(tools::DESTROY))?;
        self.ids().remove(&a.id);
        Ok(json!({ "id": a.id, "destroyed": true, "audit_log": info.audit_log }))
    }

    /// Deletes every sandbox this session created and has not destroyed (when the client
    /// goes away), all at once; returns the ids it could not delete, with why. The daemon
    /// finishes a delete it received even if this process is killed meanwhile.
    pub async fn destroy_all(&self) -> Vec<(String, ToolError)> {
        let ids: Vec<String> = std::mem::take(&mut *self.ids()).into_iter().collect();
        let mut deletes = tokio::task::JoinSet::new();
        for id in ids {
            let client = self.client.clone();
            deletes.spawn(async move {
                let path = format!("/v1/sandboxes/{id}");
                let done = client.call(Method::DELETE, &path, None).await;
                (id, done.err().map(ToolError::daemon(tools::DESTROY)))
            });
        }
        let mut failed = Vec::new();
        while let Some(joined) = deletes.join_next().await {
            if let Ok((id, Some(e))) = joined {
                failed.push((id, e));
            }
        }
        failed
    }

    async fn sandboxes(&self, args: Args) -> Result<Value, ToolError> {
        let _: NoArgs = args::parse(tools::SANDBOXES, args)?;
        let list: SandboxList = self.get_json(tools::SANDBOXES, "/v1/sandboxes").await?;
        let ids = self.ids().clone();
        let mine: Vec<Value> = list
            .sandboxes
            .iter()
            .filter(|s| ids.contains(&s.id))
            .map(sandbox_json)
            .collect();
        Ok(json!({ "sandboxes": mine }))
    }
}

/// The (rule, reason) of audit record `r` if it refused guest path `path`.
fn denial_in(r: &Value, path: &str) -> Option<(String, String)> {
    let fs = r.get("fs")?;
    let mount = fs.get("mount")?.as_str()?;
    let rel = fs.get("path")?.as_str()?;
    let full = if rel.is_empty() {
        mount.to_string()
    } else {
        format!("{}/{rel}", mount.trim_end_matches('/'))
    };
    (full == path).then(|| {
        let field = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or("-").to_string();
        (field("rule"), field("reason"))
    })
}

/// What a model needs of a sandbox's description.
fn sandbox_json(info: &SandboxInfo) -> Value {
    json!({
        "id": info.id,
        "status": info.status.as_str(),
        "image": info.image,
        "policy": info.policy,
        "workspace": info.workspace,
        "workspace_mount": "/workspace",
        "audit_log": info.audit_log,
        "end_reason": info.end_reason,
    })
}

fn to_value(tool: &'static str, v: &impl serde::Serialize) -> Result<Value, ToolError> {
    serde_json::to_value(v).map_err(|e| ToolError::Reply {
        tool,
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> (tempfile::TempDir, Session) {
        let dir = tempfile::tempdir().unwrap();
        let allowed = Allowed::new(&["offline".into()], &[], dir.path()).unwrap();
        // Nothing listens on this socket: calls that pass the checks fail with no_daemon.
        let client = Client::new(dir.path().join("no-daemon.sock"));
        (dir, Session::new(client, allowed))
    }

    fn obj(v: Value) -> Args {
        match v {
            Value::Object(m) => Some(m),
            _ => None,
        }
    }

    async fn err(s: &Session, tool: &str, v: Value) -> ToolError {
        match s.call(tool, obj(v)).await {
            Some(Err(e)) => e,
            other => panic!("{tool}: expected an error, got {other:?}"),
        }
    }

    #[test]
    fn a_denial_record_is_matched_by_its_full_guest_path() {
        let r = json!({"kind": "fs.create", "decision": "deny", "rule": "filesystem.protected \".git/hooks/**\"",
            "reason": "protected_path", "fs": {"op": "create", "path": ".git/hooks/pre-commit", "mount": "/workspace"}});
        assert_eq!(
            denial_in(&r, "/workspace/.git/hooks/pre-commit"),
            Some((
                "filesystem.protected \".git/hooks/**\"".into(),
                "protected_path".into()
            ))
        );
        assert_eq!(denial_in(&r, "/workspace/.git/hooks"), None);
        assert_eq!(denial_in(&r, "/other/.git/hooks/pre-commit"), None);
        let root = json!({"rule": "r", "fs": {"path": "", "mount": "/data"}});
        assert_eq!(denial_in(&root, "/data"), Some(("r".into(), "-".into())));
    }

    #[tokio::test]
    async fn checks_run_before_the_daemon_is_asked() {
        let (_dir, s) = session();
        let e = err(&s, tools::CREATE, json!({"profile": "claude-code"})).await;
        assert_eq!(e.code(), "profile_not_allowed");
        let e = err(&s, tools::CREATE, json!({"workspace": "/"})).await;
        assert_eq!(e.code(), "workspace_not_allowed");
        let e = err(
            &s,
            tools::EXEC,
            json!({"id": "0123456789ab", "command": "id"}),
        )
        .await;
        assert_eq!(e.code(), "unknown_sandbox");
        assert_eq!(
            e.to_string(),
            "unknown sandbox id \"0123456789ab\"; sandboxes of this session: none. Only \
             sandboxes created by this MCP server (sandbox_create) are reachable; see sandbox_list"
        );
        let e = err(
            &s,
            tools::READ,
            json!({"id": "x", "path": "/a", "extra": 1}),
        )
        .await;
        assert_eq!(e.code(), "bad_arguments");
        assert!(s.call("rm_rf", None).await.is_none());
    }

    #[tokio::test]
    async fn with_no_daemon_the_error_says_how_to_start_one() {
        let (dir, s) = session();
        let e = err(&s, tools::CREATE, json!({})).await;
        assert_eq!(e.code(), "no_daemon");
        let text = e.chain();
        assert!(
            text.starts_with("sandbox_create: no airlock daemon is listening on "),
            "{text}"
        );
        assert!(text.contains(&dir.path().join("no-daemon.sock").display().to_string()));
        assert!(
            text.ends_with("start one with `airlock daemon &`"),
            "{text}"
        );
        let e = err(&s, tools::SANDBOXES, json!({})).await;
        assert_eq!(e.code(), "no_daemon");
    }

    #[tokio::test]
    async fn ids_of_this_session_pass_and_others_do_not() {
        let (_dir, s) = session();
        s.ids().insert("0123456789ab".into());
        s.known(tools::EXEC, "0123456789ab").unwrap();
        let e = s.known(tools::EXEC, "ba9876543210").unwrap_err();
        assert!(
            e.to_string()
                .contains("sandboxes of this session: 0123456789ab."),
            "{e}"
        );
        let e = err(
            &s,
            tools::EXEC,
            json!({"id": "0123456789ab", "command": "true", "timeout_secs": 0}),
        )
        .await;
        assert_eq!(
            e.to_string(),
            "sandbox_exec: argument `timeout_secs`: 0 is out of range; expected 1..=3600"
        );
        let e = err(
            &s,
            tools::READ,
            json!({"id": "0123456789ab", "path": "relative"}),
        )
        .await;
        assert_eq!(e.code(), "bad_arguments");
        let e = err(
            &s,
            tools::WRITE,
            json!({"id": "0123456789ab", "path": "/w/x", "content": "%%", "encoding": "base64"}),
        )
        .await;
        assert!(
            e.to_string()
                .starts_with("file_write: argument `content`: not valid base64"),
            "{e}"
        );
        let e = err(
            &s,
            tools::AUDIT,
            json!({"id": "0123456789ab", "limit": 5000}),
        )
        .await;
        assert_eq!(
            e.to_string(),
            "audit_tail: argument `limit`: 5000 is out of range; expected 1..=1000"
        );
    }
}
