//! Credentials and TLS for one sandbox, prepared on the host before boot: the install's
//! certificate authority (made once, key 0600), the roots upstream certificates are verified
//! against, the CA bundle the guest trusts, each credential's placeholder and first value, and
//! how to read a value again when the gateway asks (`command:` sources are run again here, on
//! the host, never in the guest).
//!
//! Values stay in this process and the egress gateway's; they never reach a log line, an error
//! message or the guest.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use airlock_net::secrets::SecretSpec;
use airlock_net::tls::{Authority, AuthorityPem};
use airlock_policy::{CredentialSource, Policy};

/// The system trust bundle on Debian and derivatives.
pub const SYSTEM_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";
/// Where `update-ca-certificates` takes the certificates a host adds to the system set.
pub const LOCAL_CA_DIR: &str = "/usr/local/share/ca-certificates";
/// How long a `command:` source may run.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// Most bytes read from a source.
const MAX_VALUE: usize = 64 * 1024;

/// Why a sandbox's credentials or certificates could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// No directory for the certificate authority.
    #[error("no directory for airlock's certificate authority: set XDG_DATA_HOME or HOME")]
    NoDir,
    /// Reading or writing the authority failed.
    #[error("{context}")]
    Io {
        /// What was being done.
        context: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// Making or loading the authority failed.
    #[error("the certificate authority in {path}")]
    Authority {
        /// Its file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: airlock_net::tls::TlsError,
    },
    /// A `network.extra_ca` file holds no usable certificate.
    #[error("{path} (network.extra_ca) holds no PEM certificate")]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// A credential's value could not be read.
    #[error("credential {name:?} ({source_text}): {why}")]
    Unavailable {
        /// The credential.
        name: String,
        /// Its source, as in the policy.
        source_text: String,
        /// Why (never the value).
        why: String,
    },
    /// No randomness for a placeholder.
    #[error("no randomness for a credential placeholder")]
    Random,
}

/// What the egress gateway and the guest get for TLS and credentials.
#[derive(Clone)]
pub struct EgressTls {
    /// The install's authority, when the policy names hosts to terminate.
    pub authority: Option<AuthorityPem>,
    /// Roots (PEM) for upstream verification: the system set and the policy's extra ones.
    pub roots: Vec<String>,
    /// PEM the guest adds to its trust stores (empty: nothing).
    pub guest_ca: String,
    /// Each available credential's placeholder and first value.
    pub secrets: Vec<SecretSpec>,
    /// Guest environment: each credential's `guest_env` set to its placeholder.
    pub guest_env: Vec<(String, String)>,
    /// Where each credential's value comes from, by name.
    pub sources: Arc<Vec<(String, CredentialSource)>>,
    /// The unset host variables of credentials left out (`env:` sources).
    pub skipped: Vec<String>,
}

impl std::fmt::Debug for EgressTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EgressTls")
            .field("authority", &self.authority.is_some())
            .field("roots", &self.roots.len())
            .field("secrets", &self.secrets)
            .field("skipped", &self.skipped)
            .finish_non_exhaustive()
    }
}

/// Prepares TLS and credentials for `policy`; `None` when it asks for neither.
pub async fn prepare(policy: &Policy) -> Result<Option<EgressTls>, CredentialError> {
    let terminates = !policy.credentials().is_empty() || policy.has_http_rules();
    let mut extra = Vec::new();
    for path in policy.extra_ca() {
        let text = std::fs::read_to_string(path).map_err(|source| CredentialError::Io {
            context: format!("reading {} (network.extra_ca)", path.display()),
            source,
        })?;
        if !text.contains("-----BEGIN CERTIFICATE-----") {
            return Err(CredentialError::NoCertificate { path: path.clone() });
        }
        extra.push(text);
    }
    if policy.trust_host_ca() {
        extra.extend(host_extra_roots());
    }
    if !terminates && extra.is_empty() {
        return Ok(None);
    }
    let authority = if terminates {
        Some(load_or_create_authority()?)
    } else {
        None
    };
    let mut roots = Vec::new();
    match std::fs::read_to_string(SYSTEM_BUNDLE) {
        Ok(text) => roots.push(text),
        Err(e) => tracing::warn!(bundle = SYSTEM_BUNDLE, error = %e, "no system trust bundle"),
    }
    roots.extend(extra.iter().cloned());
    let mut guest_ca = String::new();
    if let Some(a) = &authority {
        guest_ca.push_str(a.cert.trim_end());
        guest_ca.push('\n');
    }
    for pem in &extra {
        guest_ca.push_str(pem.trim_end());
        guest_ca.push('\n');
    }

    let mut secrets = Vec::new();
    let mut guest_env = Vec::new();
    let mut sources = Vec::new();
    let mut skipped = Vec::new();
    for c in policy.credentials() {
        let value = match &c.source {
            CredentialSource::Env(var) => match std::env::var(var) {
                Ok(v) if !v.is_empty() => Some(v),
                _ => {
                    skipped.push(var.clone());
                    continue;
                }
            },
            // Read now, so a broken source stops the run before boot.
            source => Some(read(&c.name, source).await?),
        };
        let placeholder =
            airlock_net::secrets::placeholder(&c.name).map_err(|_| CredentialError::Random)?;
        if let Some(env) = &c.guest_env {
            guest_env.push((env.clone(), placeholder.clone()));
        }
        secrets.push(SecretSpec {
            name: c.name.clone(),
            placeholder,
            value,
        });
        sources.push((c.name.clone(), c.source.clone()));
    }
    Ok(Some(EgressTls {
        authority,
        roots,
        guest_ca,
        secrets,
        guest_env,
        sources: Arc::new(sources),
        skipped,
    }))
}

/// Reads credential `name`'s value from `source` (again).
pub async fn read(name: &str, source: &CredentialSource) -> Result<String, CredentialError> {
    let fail = |why: String| CredentialError::Unavailable {
        name: name.to_owned(),
        source_text: source.to_string(),
        why,
    };
    let raw = match source {
        CredentialSource::Env(var) => std::env::var(var)
            .map_err(|_| fail("the variable is not set on the host".into()))?
            .into_bytes(),
        CredentialSource::File(path) => {
            let meta = std::fs::metadata(path).map_err(|e| fail(e.to_string()))?;
            if meta.len() > MAX_VALUE as u64 {
                return Err(fail(format!("larger than {MAX_VALUE} bytes")));
            }
            std::fs::read(path).map_err(|e| fail(e.to_string()))?
        }
        CredentialSource::Command(argv) => {
            let (program, args) = argv
                .split_first()
                .ok_or_else(|| fail("no command".into()))?;
            let child = tokio::process::Command::new(program)
                .args(args)
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .map_err(|e| fail(format!("cannot run {program:?}: {e}")))?;
            let out = tokio::time::timeout(COMMAND_TIMEOUT, child.wait_with_output())
                .await
                .map_err(|_| fail(format!("did not finish in {}s", COMMAND_TIMEOUT.as_secs())))?
                .map_err(|e| fail(e.to_string()))?;
            if !out.status.success() {
                return Err(fail(format!("the command failed ({})", out.status)));
            }
            if out.stdout.len() > MAX_VALUE {
                return Err(fail(format!("printed more than {MAX_VALUE} bytes")));
            }
            out.stdout
        }
    };
    let text = String::from_utf8(raw).map_err(|_| fail("not UTF-8".into()))?;
    let value = text.trim_end_matches(['\n', '\r']);
    if value.is_empty() {
        return Err(fail("empty".into()));
    }
    if value.contains(['\n', '\r', '\0']) {
        return Err(fail("more than one line".into()));
    }
    Ok(value.to_owned())
}

/// The directory of the install's authority: `$AIRLOCK_CA_DIR`, else
/// `$XDG_DATA_HOME/airlock/ca`, else `~/.local/share/airlock/ca`.
pub fn authority_dir() -> Result<PathBuf, CredentialError> {
    if let Some(d) = std::env::var_os("AIRLOCK_CA_DIR") {
        return Ok(PathBuf::from(d));
    }
    crate::homes::data_dir()
        .map(|d| d.join("ca"))
        .ok_or(CredentialError::NoDir)
}

/// The install's authority, made on first use: `ca-key.pem` (key and certificate, 0600) and
/// `ca.pem` (the certificate alone, to import elsewhere) in [`authority_dir`].
pub fn load_or_create_authority() -> Result<AuthorityPem, CredentialError> {
    authority_in(&authority_dir()?)
}

/// The authority kept in `dir`, made there on first use.
pub fn authority_in(dir: &Path) -> Result<AuthorityPem, CredentialError> {
    let key_path = dir.join("ca-key.pem");
    let io = |context: String| move |source| CredentialError::Io { context, source };
    if !key_path.exists() {
        std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
        let pem = Authority::generate().map_err(|source| CredentialError::Authority {
            path: key_path.clone(),
            source,
        })?;
        // Written aside, then linked into place: a concurrent first run keeps the one that
        // landed first.
        let tmp = dir.join(format!(".ca-key.{}.tmp", std::process::id()));
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io(format!("creating {}", tmp.display())))?;
        f.write_all(format!("{}{}", pem.key, pem.cert).as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(io(format!("writing {}", tmp.display())))?;
        let linked = std::fs::hard_link(&tmp, &key_path);
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => {
                let cert_path = dir.join("ca.pem");
                std::fs::write(&cert_path, &pem.cert)
                    .map_err(io(format!("writing {}", cert_path.display())))?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io(format!("creating {}", key_path.display()))(e)),
        }
    }
    read_authority(&key_path)
}

fn read_authority(path: &Path) -> Result<AuthorityPem, CredentialError> {
    let text = std::fs::read_to_string(path).map_err(|source| CredentialError::Io {
        context: format!("reading {}", path.display()),
        source,
    })?;
    let block = |label: &str| -> Option<String> {
        let begin = format!("-----BEGIN {label}-----");
        let end = format!("-----END {label}-----");
        let start = text.find(&begin)?;
        let stop = text[start..].find(&end)? + start + end.len();
        Some(format!("{}\n", &text[start..stop]))
    };
    let bad = |why: &str| CredentialError::Authority {
        path: path.to_path_buf(),
        source: airlock_net::tls::TlsError::Pem(why.to_owned()),
    };
    let pem = AuthorityPem {
        key: block("PRIVATE KEY").ok_or_else(|| bad("no private key"))?,
        cert: block("CERTIFICATE").ok_or_else(|| bad("no certificate"))?,
    };
    Authority::from_pem(&pem).map_err(|source| CredentialError::Authority {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(pem)
}

/// The CA certificates this host trusts beyond the system set: those `update-ca-certificates`
/// installs from [`LOCAL_CA_DIR`], and `SSL_CERT_FILE` when it names another file than the
/// system bundle.
pub fn host_extra_roots() -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::from(LOCAL_CA_DIR)];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        paths.sort();
        for p in paths {
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == "crt")
                && let Ok(text) = std::fs::read_to_string(&p)
                && text.contains("-----BEGIN CERTIFICATE-----")
            {
                out.push(text);
            }
        }
    }
    if let Some(file) = std::env::var_os("SSL_CERT_FILE").map(PathBuf::from)
        && file != Path::new(SYSTEM_BUNDLE)
        && let Ok(text) = std::fs::read_to_string(&file)
        && text.contains("-----BEGIN CERTIFICATE-----")
    {
        out.push(text);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sources_are_read_trimmed_and_their_failures_never_show_the_value() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "s3cret-file\n").unwrap();
        assert_eq!(
            read("f", &CredentialSource::File(file.clone()))
                .await
                .unwrap(),
            "s3cret-file"
        );
        let cmd = CredentialSource::Command(vec!["printf".into(), "s3cret-cmd\\n".into()]);
        assert_eq!(read("c", &cmd).await.unwrap(), "s3cret-cmd");
        let two_lines = CredentialSource::Command(vec!["printf".into(), "a\\nb".into()]);
        let e = read("c", &two_lines).await.unwrap_err().to_string();
        assert_eq!(
            e,
            "credential \"c\" (command:printf a\\nb): more than one line"
        );
        let failing =
            CredentialSource::Command(vec!["sh".into(), "-c".into(), "echo s3cret; exit 3".into()]);
        let e = read("c", &failing).await.unwrap_err().to_string();
        assert!(
            e.contains("the command failed") && !e.contains("s3cret\n"),
            "{e}"
        );
        let missing = CredentialSource::Env("AIRLOCK_TEST_SURELY_UNSET".into());
        assert!(read("e", &missing).await.is_err());
    }

    #[test]
    fn the_authority_is_made_once_and_its_key_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("airlock/ca");
        let a = authority_in(&ca).unwrap();
        let b = authority_in(&ca).unwrap();
        assert_eq!(a, b);
        let key = ca.join("ca-key.pem");
        let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let cert = std::fs::read_to_string(ca.join("ca.pem")).unwrap();
        assert_eq!(cert, a.cert);
        assert!(!cert.contains("PRIVATE KEY"));
    }
}
