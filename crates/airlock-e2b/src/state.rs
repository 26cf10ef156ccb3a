//! What the E2B API keeps beside the daemon: its configuration, the API key's digest, and per
//! sandbox created through it the access token's digest and the workspace it made.

use crate::error::E2bError;
use airlock_api::daemon::{Daemon, Entry};
use axum::http::HeaderMap;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

/// How E2B sandboxes are made.
#[derive(Debug, Clone, Default)]
pub struct E2bConfig {
    /// Policy text for every E2B sandbox, and the file it came from; `None`: profile `default`.
    pub policy: Option<(String, PathBuf)>,
    /// Host directory shared as the workspace of every E2B sandbox; `None`: a fresh empty
    /// directory per sandbox, removed when the sandbox is killed through this API.
    pub workspace: Option<PathBuf>,
}

/// One sandbox created through the E2B API.
pub struct E2bSandbox {
    /// SHA-256 of its envd access token.
    token: [u8; 32],
    /// Environment variables given at creation, for every command.
    envs: BTreeMap<String, String>,
    /// The workspace made for it (removed with it).
    _workspace: Option<tempfile::TempDir>,
}

/// The E2B API's state.
pub struct E2b {
    /// The daemon whose sandboxes these are.
    pub daemon: Arc<Daemon>,
    /// How sandboxes are made.
    pub config: E2bConfig,
    api_key: [u8; 32],
    sandboxes: Mutex<HashMap<String, E2bSandbox>>,
}

/// SHA-256 of `bytes`.
pub fn digest(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).into()
}

/// Compares `given` with a digest in constant time (hashing first hides the length too).
pub fn matches(expected: &[u8; 32], given: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    expected.ct_eq(&digest(given)).into()
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

impl E2b {
    /// The E2B API over `daemon`; `api_key` is the daemon's token.
    pub fn new(daemon: Arc<Daemon>, api_key: &str, config: E2bConfig) -> Arc<E2b> {
        Arc::new(E2b {
            daemon,
            config,
            api_key: digest(api_key.as_bytes()),
            sandboxes: Mutex::new(HashMap::new()),
        })
    }

    fn table(&self) -> MutexGuard<'_, HashMap<String, E2bSandbox>> {
        self.sandboxes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Checks the `X-API-Key` header against the daemon's token.
    pub fn check_api_key(&self, headers: &HeaderMap) -> Result<(), E2bError> {
        match header(headers, "x-api-key") {
            None => Err(E2bError::BadApiKey(
                "missing X-API-Key header: set E2B_API_KEY to the daemon's token",
            )),
            Some(k) if matches(&self.api_key, k.as_bytes()) => Ok(()),
            Some(_) => Err(E2bError::BadApiKey(
                "invalid API key: E2B_API_KEY must be the daemon's --token-file token",
            )),
        }
    }

    /// Records a new sandbox; returns its access token.
    pub fn register(
        &self,
        id: &str,
        workspace: Option<tempfile::TempDir>,
        envs: BTreeMap<String, String>,
    ) -> Result<String, E2bError> {
        let mut raw = [0u8; 24];
        getrandom::fill(&mut raw)
            .map_err(|e| E2bError::bad("access token", format!("no randomness: {e}")))?;
        let token = hex::encode(raw);
        self.table().insert(
            id.to_string(),
            E2bSandbox {
                token: digest(token.as_bytes()),
                envs,
                _workspace: workspace,
            },
        );
        Ok(token)
    }

    /// Forgets a sandbox (removing the workspace made for it).
    pub fn forget(&self, id: &str) -> bool {
        self.table().remove(id).is_some()
    }

    /// Whether `id` was created through this API.
    pub fn knows(&self, id: &str) -> bool {
        self.table().contains_key(id)
    }

    /// The sandbox an envd request is for: named by `E2b-Sandbox-Id`, created through this
    /// API, with its `X-Access-Token`; with the environment given at its creation.
    pub fn sandbox_of(
        &self,
        headers: &HeaderMap,
    ) -> Result<(Arc<Entry>, BTreeMap<String, String>), E2bError> {
        let id = header(headers, "e2b-sandbox-id").ok_or_else(|| {
            E2bError::UnknownSandbox(
                "missing E2b-Sandbox-Id header: envd requests name their sandbox".into(),
            )
        })?;
        let given = header(headers, "x-access-token");
        let envs = {
            let table = self.table();
            let sb = table.get(id).ok_or_else(|| {
                E2bError::UnknownSandbox(format!(
                    "sandbox {id:?} not found (it was not created through this E2B API, or was \
                     killed)"
                ))
            })?;
            match given {
                None => {
                    return Err(E2bError::BadAccessToken(format!(
                        "missing X-Access-Token header for sandbox {id}"
                    )));
                }
                Some(t) if !matches(&sb.token, t.as_bytes()) => {
                    return Err(E2bError::BadAccessToken(format!(
                        "invalid X-Access-Token for sandbox {id}"
                    )));
                }
                Some(_) => {}
            }
            sb.envs.clone()
        };
        let entry = self.daemon.get(id).map_err(|_| {
            E2bError::UnknownSandbox(format!("sandbox {id:?} not found (it was stopped)"))
        })?;
        entry.touch();
        Ok((entry, envs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_compare_by_digest() {
        let d = digest(b"the-token-0123456789");
        assert!(matches(&d, b"the-token-0123456789"));
        assert!(!matches(&d, b"the-token-012345678"));
        assert!(!matches(&d, b""));
    }
}
