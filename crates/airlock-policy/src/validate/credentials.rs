//! `[[network.credentials]]`: secrets the egress gateway writes into requests. Only where the
//! secret comes from is validated here; nothing reads it.

use std::time::Duration;

use crate::host::{Endpoint, HostPattern, Target};
use crate::policy::{Credential, CredentialSource};
use crate::source::Layer;
use crate::validation_error::ValidationError;

use super::ctx::{Ctx, all};
use super::process::valid_env_name;
use super::values::parse_duration;

/// `ttl` of a `command:` source when the entry gives none.
const COMMAND_TTL: Duration = Duration::from_secs(300);
/// `ttl` of a `file:` source when the entry gives none.
const FILE_TTL: Duration = Duration::from_secs(60);

/// Headers a credential may never be written into: they frame or route the request.
const FORBIDDEN_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "upgrade",
    "te",
    "trailer",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
];

impl Ctx<'_> {
    pub(super) fn credentials(
        &mut self,
        layers: &[Layer],
        passthrough: &[Endpoint],
        passthrough_rules: &[String],
    ) -> Vec<Credential> {
        let mut out: Vec<Credential> = Vec::new();
        // Names seen, with the layer that set them: a higher layer's entry replaces a lower
        // one's (a policy extending a kit's profile points its credential elsewhere).
        let mut names: Vec<(&str, usize)> = Vec::new();
        for it in all(layers, "network.credentials", |f| &f.network.credentials) {
            let e = it.value;
            let key = |field: &str| format!("{}.{field}", it.key);
            let mut ok = true;
            if !valid_name(&e.name) {
                self.error(
                    it.src,
                    &key("name"),
                    ValidationError::BadCredentialName {
                        found: e.name.clone(),
                    },
                );
                ok = false;
            } else if names
                .iter()
                .any(|(n, src)| *n == e.name.as_str() && *src == it.src)
            {
                self.error(
                    it.src,
                    &key("name"),
                    ValidationError::DuplicateCredential {
                        name: e.name.clone(),
                    },
                );
                ok = false;
            }
            if names
                .iter()
                .any(|(n, src)| *n == e.name.as_str() && *src != it.src)
            {
                out.retain(|c| c.name != e.name);
            }
            names.push((&e.name, it.src));
            let host = match exact_host(&e.host) {
                Ok(h) => Some(h),
                Err(problem) => {
                    self.error(
                        it.src,
                        &key("host"),
                        ValidationError::BadCredentialHost {
                            found: e.host.clone(),
                            problem,
                        },
                    );
                    None
                }
            };
            let header = match header_name(&e.header) {
                Ok(h) => Some(h),
                Err(problem) => {
                    self.error(
                        it.src,
                        &key("header"),
                        ValidationError::BadCredentialHeader {
                            found: e.header.clone(),
                            problem,
                        },
                    );
                    None
                }
            };
            let format = e.format.clone().unwrap_or_else(|| "{}".to_owned());
            if !valid_format(&format) {
                self.error(
                    it.src,
                    &key("format"),
                    ValidationError::BadCredentialFormat {
                        found: format.clone(),
                    },
                );
                ok = false;
            }
            let source = match parse_source(&e.source) {
                Ok(CredentialSource::File(raw)) => {
                    let raw = raw.to_string_lossy().into_owned();
                    self.host_path(it.src, &key("source"), &raw)
                        .map(CredentialSource::File)
                }
                Ok(s) => Some(s),
                Err(problem) => {
                    self.error(
                        it.src,
                        &key("source"),
                        ValidationError::BadCredentialSource {
                            found: e.source.clone(),
                            problem,
                        },
                    );
                    None
                }
            };
            if let Some(env) = &e.guest_env {
                if !valid_env_name(env) {
                    self.error(
                        it.src,
                        &key("guest_env"),
                        ValidationError::BadEnvName { found: env.clone() },
                    );
                    ok = false;
                } else if let Some(other) = out.iter().find(|c| c.guest_env.as_deref() == Some(env))
                {
                    self.error(
                        it.src,
                        &key("guest_env"),
                        ValidationError::DuplicateGuestEnv {
                            env: env.clone(),
                            first: other.name.clone(),
                            second: e.name.clone(),
                        },
                    );
                    ok = false;
                }
            }
            let ttl = match (&e.ttl, &source) {
                (Some(text), _) => match parse_duration(text) {
                    Some(d) if !d.is_zero() => Some(d),
                    _ => {
                        self.error(
                            it.src,
                            &key("ttl"),
                            ValidationError::BadDuration {
                                found: text.clone(),
                            },
                        );
                        ok = false;
                        None
                    }
                },
                (None, Some(CredentialSource::Command(_))) => Some(COMMAND_TTL),
                (None, Some(CredentialSource::File(_))) => Some(FILE_TTL),
                (None, _) => None,
            };
            let (Some((target, port)), Some(header), Some(source), true) =
                (host, header, source, ok)
            else {
                continue;
            };
            if let Some(i) = passthrough.iter().position(|p| p.matches(&target, port)) {
                self.error(
                    it.src,
                    &key("host"),
                    ValidationError::CredentialPassthrough {
                        name: e.name.clone(),
                        host: e.host.clone(),
                        rule: passthrough_rules.get(i).cloned().unwrap_or_default(),
                    },
                );
                continue;
            }
            out.push(Credential {
                rule: self.rule_name(it.src, &it.key, &e.name),
                name: e.name.clone(),
                host: target,
                port,
                header,
                format,
                source,
                guest_env: e.guest_env.clone(),
                ttl,
            });
        }
        out
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// One exact host (name or address) and its port, 443 by default.
fn exact_host(text: &str) -> Result<(Target, u16), String> {
    let endpoint = Endpoint::parse(text).map_err(|e| e.to_string())?;
    let target = match endpoint.host() {
        HostPattern::Exact(h) => Target::Name(h.clone()),
        HostPattern::Cidr { network, prefix } if *prefix == full_prefix(network) => {
            Target::Ip(*network)
        }
        HostPattern::Cidr { .. } => return Err("an address block is not one host".to_owned()),
        HostPattern::Wildcard(_) => return Err("wildcards are not allowed".to_owned()),
    };
    Ok((target, endpoint.port().unwrap_or(443)))
}

fn full_prefix(ip: &std::net::IpAddr) -> u8 {
    if ip.is_ipv4() { 32 } else { 128 }
}

/// A header name (RFC 9110 token), lower-cased.
fn header_name(text: &str) -> Result<String, &'static str> {
    const TCHAR: &[u8] = b"!#$%&'*+-.^_`|~";
    if text.is_empty() || text.len() > 64 {
        return Err("expected 1 to 64 characters");
    }
    if !text
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || TCHAR.contains(&b))
    {
        return Err("not an HTTP header name");
    }
    let lower = text.to_ascii_lowercase();
    if FORBIDDEN_HEADERS.contains(&lower.as_str()) || lower.starts_with(':') {
        return Err("this header frames or routes the request");
    }
    Ok(lower)
}

/// Exactly one `{}` or `{base64}`, and no other brace.
fn valid_format(format: &str) -> bool {
    let holes = format.matches("{}").count() + format.matches("{base64}").count();
    let braces = format.matches(['{', '}']).count();
    holes == 1 && braces == 2 && !format.contains(['\r', '\n', '\0'])
}

fn parse_source(text: &str) -> Result<CredentialSource, String> {
    let (kind, rest) = text
        .split_once(':')
        .ok_or_else(|| "no `env:`, `file:` or `command:` prefix".to_owned())?;
    match kind {
        "env" if valid_env_name(rest) => Ok(CredentialSource::Env(rest.to_owned())),
        "env" => Err(format!("{rest:?} is not an environment variable name")),
        "file" if !rest.is_empty() => Ok(CredentialSource::File(rest.into())),
        "file" => Err("no path".to_owned()),
        "command" => {
            let argv = split_words(rest)?;
            if argv.is_empty() {
                return Err("no command".to_owned());
            }
            Ok(CredentialSource::Command(argv))
        }
        other => Err(format!("unknown kind {other:?}")),
    }
}

/// Splits a command line into words: whitespace separates, single quotes keep text as is,
/// double quotes keep text with `\\` escapes. No variables, globs or other shell features: the
/// command is run without a shell.
pub(crate) fn split_words(text: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err("unclosed `'`".to_owned()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c) => word.push(c),
                            None => return Err("`\\` at the end".to_owned()),
                        },
                        Some(c) => word.push(c),
                        None => return Err("unclosed `\"`".to_owned()),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some(c) => word.push(c),
                    None => return Err("`\\` at the end".to_owned()),
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_split_like_a_simple_shell() {
        assert_eq!(
            split_words(r#"sh -c 'printf x-access-token:%s "$(gh auth token)"'"#).unwrap(),
            vec!["sh", "-c", r#"printf x-access-token:%s "$(gh auth token)""#]
        );
        assert_eq!(
            split_words(r#"a "b \" c" d\ e"#).unwrap(),
            vec!["a", "b \" c", "d e"]
        );
        assert_eq!(split_words("  ").unwrap(), Vec::<String>::new());
        assert!(split_words("a 'b").is_err());
        assert!(split_words("a \"b").is_err());
    }

    #[test]
    fn hosts_are_exact() {
        let (t, p) = exact_host("API.Anthropic.com").unwrap();
        assert_eq!((t.to_string().as_str(), p), ("api.anthropic.com", 443));
        let (t, p) = exact_host("127.0.0.1:8443").unwrap();
        assert_eq!((t.to_string().as_str(), p), ("127.0.0.1", 8443));
        assert!(exact_host("*.anthropic.com").is_err());
        assert!(exact_host("10.0.0.0/8").is_err());
    }

    #[test]
    fn formats_and_headers() {
        assert!(valid_format("{}"));
        assert!(valid_format("Bearer {}"));
        assert!(valid_format("Basic {base64}"));
        assert!(!valid_format("{} {}"));
        assert!(!valid_format("Bearer"));
        assert!(!valid_format("{x}"));
        assert_eq!(header_name("X-Api-Key").unwrap(), "x-api-key");
        assert!(header_name("Host").is_err());
        assert!(header_name("bad header").is_err());
    }
}
