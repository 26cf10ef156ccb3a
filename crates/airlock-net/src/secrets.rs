//! Credentials as the gateway holds them: each `[[network.credentials]]` entry with the
//! placeholder the guest was given and the value (asked of the supervisor again once its `ttl`
//! is over). The value is written only into the entry's header of requests to its host; a
//! placeholder anywhere else is a leak attempt.
//!
//! Values live in this process's memory only: never in an event, a log line or an error.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use airlock_policy::{Credential, Policy, Target};
use base64::Engine;
use tokio::sync::Mutex;
use tokio::time::Instant;

/// What the supervisor tells the gateway about one credential.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretSpec {
    /// The credential's name in the policy.
    pub name: String,
    /// What the guest holds instead of the value.
    pub placeholder: String,
    /// The value, when the supervisor read it at start.
    pub value: Option<String>,
}

impl std::fmt::Debug for SecretSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretSpec")
            .field("name", &self.name)
            .field("placeholder", &self.placeholder)
            .finish_non_exhaustive()
    }
}

/// Makes a placeholder for credential `name`: its name and 128 random bits, so it is unique
/// per sandbox and cannot be guessed from inside another.
pub fn placeholder(name: &str) -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes)?;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!("airlock-{name}-{hex}"))
}

/// Asks the supervisor for a fresh value of a credential (its source run again on the host).
pub trait Refresh: Send + Sync {
    /// The current value of credential `name`, or why there is none (never containing it).
    fn refresh<'a>(
        &'a self,
        name: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<String, String>> + Send + 'a>>;
}

/// One credential in the gateway.
pub struct Secret {
    /// The policy entry.
    pub credential: Credential,
    /// What the guest holds instead of the value.
    pub placeholder: String,
    value: Mutex<Cached>,
}

struct Cached {
    value: Option<String>,
    /// When the value must be asked for again (none: never).
    expires: Option<Instant>,
}

impl Secret {
    /// Whether this secret may be written into header `name` of a request to `host:port`.
    pub fn goes_to(&self, host: &Target, port: u16, header: &str) -> bool {
        &self.credential.host == host
            && self.credential.port == port
            && self.credential.header == header
    }

    /// The header value for `value`, per the entry's format.
    pub fn header_value(&self, value: &str) -> String {
        let b64 = base64::engine::general_purpose::STANDARD.encode(value.as_bytes());
        self.credential
            .format
            .replacen("{base64}", &b64, 1)
            .replacen("{}", value, 1)
    }
}

/// Every credential of the sandbox.
#[derive(Default)]
pub struct Secrets {
    entries: Vec<Secret>,
    refresh: Option<Arc<dyn Refresh>>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secrets")
            .field(
                "names",
                &self
                    .entries
                    .iter()
                    .map(|e| &e.credential.name)
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl Secrets {
    /// The credentials of `policy` that the supervisor gave a placeholder in `specs` (the
    /// others were not available on the host and are not sent anywhere).
    pub fn new(
        policy: &Policy,
        specs: Vec<SecretSpec>,
        refresh: Option<Arc<dyn Refresh>>,
    ) -> Secrets {
        let mut entries = Vec::new();
        for spec in specs {
            let Some(credential) = policy.credentials().iter().find(|c| c.name == spec.name) else {
                continue;
            };
            let expires = match (&spec.value, credential.ttl) {
                (Some(_), Some(ttl)) => Some(Instant::now() + ttl),
                _ => None,
            };
            entries.push(Secret {
                credential: credential.clone(),
                placeholder: spec.placeholder,
                value: Mutex::new(Cached {
                    value: spec.value,
                    expires,
                }),
            });
        }
        Secrets { entries, refresh }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The longest placeholder, in bytes (what a streaming scan holds back).
    pub fn longest(&self) -> usize {
        self.entries
            .iter()
            .map(|e| e.placeholder.len())
            .max()
            .unwrap_or(0)
    }

    /// The secret whose placeholder occurs in `bytes`, if any.
    pub fn find(&self, bytes: &[u8]) -> Option<&Secret> {
        self.entries
            .iter()
            .find(|e| contains(bytes, e.placeholder.as_bytes()))
    }

    /// The secret whose placeholder occurs in header value `value`: as is, or inside the
    /// base64 of a `Basic` credential (how git and curl send a user and password).
    pub fn find_in_header(&self, value: &[u8]) -> Option<&Secret> {
        if let Some(s) = self.find(value) {
            return Some(s);
        }
        let text = std::str::from_utf8(value).ok()?.trim();
        let (scheme, rest) = text.split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("basic") {
            return None;
        }
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest.trim())
            .ok()?;
        self.find(&decoded)
    }

    /// The value of `secret`, asking the supervisor again once its `ttl` is over.
    pub async fn value(&self, secret: &Secret) -> Result<String, String> {
        let mut cached = secret.value.lock().await;
        let fresh = cached.expires.is_none_or(|t| Instant::now() < t);
        if let (Some(v), true) = (&cached.value, fresh) {
            return Ok(v.clone());
        }
        let refresh = self
            .refresh
            .as_ref()
            .ok_or_else(|| "no way to read the credential again".to_owned())?;
        let value = refresh.refresh(&secret.credential.name).await?;
        cached.expires = secret.credential.ttl.map(|t| Instant::now() + t);
        cached.value = Some(value.clone());
        Ok(value)
    }

    /// Sets how long values stay fresh from now (tests).
    #[doc(hidden)]
    pub async fn expire_all(&self) {
        for e in &self.entries {
            e.value.lock().await.expires = Some(Instant::now() - Duration::from_millis(1));
        }
    }
}

/// Whether `needle` occurs in `hay`.
pub(crate) fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        airlock_policy::load_str(
            r#"
[[network.credentials]]
name = "a"
host = "api.example.com"
header = "authorization"
format = "Bearer {}"
source = "env:A"
[[network.credentials]]
name = "gh"
host = "github.com"
header = "authorization"
format = "Basic {base64}"
source = "command:gh auth token"
ttl = "1s"
"#,
            std::path::Path::new("p.toml"),
        )
        .unwrap()
    }

    struct Counter(std::sync::atomic::AtomicU32);

    impl Refresh for Counter {
        fn refresh<'a>(
            &'a self,
            _name: &'a str,
        ) -> Pin<Box<dyn Future<Output = Result<String, String>> + Send + 'a>> {
            let n = self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Box::pin(async move { Ok(format!("value-{n}")) })
        }
    }

    #[tokio::test]
    async fn placeholders_are_found_and_values_refreshed_after_their_ttl() {
        let pa = placeholder("a").unwrap();
        let pg = placeholder("gh").unwrap();
        assert_ne!(pa, placeholder("a").unwrap());
        let counter = Arc::new(Counter(std::sync::atomic::AtomicU32::new(0)));
        let s = Secrets::new(
            &policy(),
            vec![
                SecretSpec {
                    name: "a".into(),
                    placeholder: pa.clone(),
                    value: Some("sk-1".into()),
                },
                SecretSpec {
                    name: "gh".into(),
                    placeholder: pg.clone(),
                    value: Some("x-access-token:t0".into()),
                },
            ],
            Some(counter.clone()),
        );
        let a = s.find(format!("Bearer {pa}").as_bytes()).unwrap();
        assert_eq!(a.credential.name, "a");
        assert_eq!(a.header_value("sk-1"), "Bearer sk-1");
        assert!(s.find(b"nothing here").is_none());
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("x:{pg}"));
        let g = s
            .find_in_header(format!("Basic {basic}").as_bytes())
            .unwrap();
        assert_eq!(g.credential.name, "gh");
        assert_eq!(
            g.header_value("x-access-token:t"),
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode("x-access-token:t")
            )
        );
        let host = Target::parse("api.example.com").unwrap();
        assert!(a.goes_to(&host, 443, "authorization"));
        assert!(!a.goes_to(&host, 443, "x-api-key"));
        assert!(!a.goes_to(&host, 8443, "authorization"));

        // env: never expires; the command one does after its ttl.
        assert_eq!(s.value(a).await.unwrap(), "sk-1");
        assert_eq!(s.value(g).await.unwrap(), "x-access-token:t0");
        s.expire_all().await;
        assert_eq!(s.value(g).await.unwrap(), "value-0");
        assert_eq!(s.value(g).await.unwrap(), "value-0");
        assert_eq!(s.value(a).await.unwrap(), "value-1");
        assert!(!format!("{s:?}").contains("sk-1"));
    }
}
