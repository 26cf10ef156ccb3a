//! E2B's control plane: `POST /v2/sandboxes` (create) and `DELETE /sandboxes/{id}` (kill),
//! both behind the `X-API-Key` check, each one call of the daemon's own create and delete.

use crate::error::E2bError;
use crate::state::E2b;
use airlock_api::types::CreateSandboxRequest;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The envd version airlock answers as: the oldest the SDK sends raw (octet-stream) uploads
/// to, and below the versions with file metadata and network-mount watches, which airlock
/// does not implement.
pub const ENVD_VERSION: &str = "0.5.7";
/// E2B's default template; it maps to the policy's image.
pub const DEFAULT_TEMPLATE: &str = "base";
/// Agent kits a template may name (the daemon checks they are installed).
const KITS: [&str; 4] = ["claude-code", "codex", "gemini", "aider"];

/// The part of E2B's `NewSandbox` body airlock reads; other fields are accepted and ignored
/// (listed in docs/e2b.md).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct NewSandbox {
    #[serde(rename = "templateID")]
    template_id: String,
    /// Seconds the sandbox may live.
    #[serde(default)]
    timeout: Option<u64>,
    #[serde(default)]
    env_vars: BTreeMap<String, String>,
    #[serde(default)]
    auto_pause: Option<bool>,
}

/// E2B's `Sandbox` reply.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Created {
    #[serde(rename = "templateID")]
    template_id: String,
    #[serde(rename = "sandboxID")]
    sandbox_id: String,
    #[serde(rename = "clientID")]
    client_id: &'static str,
    envd_version: &'static str,
    envd_access_token: String,
}

/// What a template names: the image (`None`: the policy's) and the agent kit.
pub fn template_target(template: &str) -> Result<(Option<String>, Option<String>), E2bError> {
    if template.is_empty()
        || !template
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(E2bError::bad(
            "templateID",
            format!("{template:?} is not an airlock image or kit name"),
        ));
    }
    Ok(match template {
        DEFAULT_TEMPLATE => (None, None),
        t if KITS.contains(&t) => (None, Some(t.to_string())),
        t => (Some(t.to_string()), None),
    })
}

/// `POST /v2/sandboxes` (and the older `POST /sandboxes`).
pub async fn create(
    State(e2b): State<Arc<E2b>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, E2bError> {
    e2b.check_api_key(&headers)?;
    let req: NewSandbox = serde_json::from_slice(&body)
        .map_err(|e| E2bError::bad("body", format!("invalid JSON request: {e}")))?;
    if req.auto_pause == Some(true) {
        return Err(E2bError::Unsupported("autoPause".into()));
    }
    let (image, agent) = template_target(&req.template_id)?;
    let made = match &e2b.config.workspace {
        Some(_) => None,
        None => Some(
            tempfile::Builder::new()
                .prefix("airlock-e2b-")
                .tempdir()
                .map_err(|e| E2bError::bad("workspace", format!("making a workspace: {e}")))?,
        ),
    };
    let workspace = e2b
        .config
        .workspace
        .clone()
        .or_else(|| made.as_ref().map(|t| t.path().to_path_buf()));
    let (policy, policy_origin, profile) = match &e2b.config.policy {
        Some((text, origin)) => (Some(text.clone()), Some(origin.display().to_string()), None),
        None => (None, None, Some("default".to_string())),
    };
    let mut labels = BTreeMap::new();
    labels.insert("e2b.template".to_string(), req.template_id.clone());
    let info = e2b
        .daemon
        .create(CreateSandboxRequest {
            image,
            policy,
            policy_origin,
            profile,
            agent,
            workspace: workspace.map(|w| w.display().to_string()),
            labels,
            max_lifetime_secs: req.timeout,
            ..CreateSandboxRequest::default()
        })
        .await?;
    let token = e2b.register(&info.id, made, req.env_vars)?;
    let created = Created {
        template_id: req.template_id,
        sandbox_id: info.id,
        client_id: "airlock",
        envd_version: ENVD_VERSION,
        envd_access_token: token,
    };
    Ok((StatusCode::CREATED, axum::Json(created)).into_response())
}

/// `DELETE /sandboxes/{id}`: the daemon's delete (stop, seal the audit log, forget).
pub async fn kill(
    State(e2b): State<Arc<E2b>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<StatusCode, E2bError> {
    e2b.check_api_key(&headers)?;
    if !e2b.knows(&id) {
        return Err(E2bError::UnknownSandbox(format!(
            "sandbox {id:?} not found"
        )));
    }
    let result = e2b.daemon.delete(&id).await;
    match result {
        Ok(()) => {
            e2b.forget(&id);
            Ok(StatusCode::NO_CONTENT)
        }
        Err(airlock_api::daemon::DaemonError::NotFound(m)) => {
            e2b.forget(&id);
            Err(E2bError::UnknownSandbox(m))
        }
        Err(e) => Err(e.into()),
    }
}

/// `GET /health`: envd's health check (no token, as in envd).
pub async fn health() -> StatusCode {
    StatusCode::NO_CONTENT
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_name_images_or_kits() {
        assert_eq!(template_target("base").unwrap(), (None, None));
        assert_eq!(
            template_target("tiny").unwrap(),
            (Some("tiny".into()), None)
        );
        assert_eq!(
            template_target("codex").unwrap(),
            (None, Some("codex".into()))
        );
        assert!(template_target("../etc").is_err());
        assert!(template_target("").is_err());
    }

    #[test]
    fn unknown_create_fields_are_accepted() {
        let r: NewSandbox = serde_json::from_str(
            r#"{"templateID":"base","timeout":300,"metadata":{},"envVars":{"A":"1"},"secure":true}"#,
        )
        .unwrap();
        assert_eq!(r.timeout, Some(300));
        assert_eq!(r.env_vars.get("A").map(String::as_str), Some("1"));
        assert!(serde_json::from_str::<NewSandbox>(r#"{"timeout":3}"#).is_err());
    }
}
