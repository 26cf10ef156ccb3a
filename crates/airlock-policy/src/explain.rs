//! `airlock policy explain`: runs a list of queries against a policy and renders one line per
//! query with the verdict, the deciding rule and the reason. Pure; the CLI parses flags into
//! [`Query`] values (with [`Query::parse_connect`] for `--connect HOST:PORT`) and prints the
//! lines.

use std::fmt;

use crate::decide::{Decision, FsOp, Verdict};
use crate::policy::Policy;
use crate::reason;

/// One question to ask a policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Query {
    /// Read a path: absolute in the guest (`/workspace/src/main.rs`), or relative to the
    /// workspace mount (the first mount when there is no workspace mount).
    Read(String),
    /// Write a path, same path rules as [`Query::Read`].
    Write(String),
    /// Connect to a host and port.
    Connect(String, u16),
}

/// A `--connect` argument that is not `HOST:PORT`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// No `:PORT` suffix.
    #[error("{0:?} has no port, expected HOST:PORT or [IPV6]:PORT")]
    MissingPort(String),
    /// The port is not 1..=65535.
    #[error("{0:?} has an invalid port, expected a number from 1 to 65535")]
    BadPort(String),
}

impl Query {
    /// Parses `host:port` or `[ipv6]:port`.
    pub fn parse_connect(text: &str) -> Result<Self, QueryError> {
        let (host, port) = text
            .rsplit_once(':')
            .filter(|(h, _)| !h.is_empty())
            .ok_or_else(|| QueryError::MissingPort(text.to_owned()))?;
        if host.contains(':') && !(host.starts_with('[') && host.ends_with(']')) {
            return Err(QueryError::MissingPort(text.to_owned()));
        }
        match port.parse::<u16>() {
            Ok(p) if p != 0 && port.bytes().all(|b| b.is_ascii_digit()) => {
                Ok(Self::Connect(host.to_owned(), p))
            }
            _ => Err(QueryError::BadPort(text.to_owned())),
        }
    }
}

impl fmt::Display for Query {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Read(p) => write!(f, "read {p}"),
            Self::Write(p) => write!(f, "write {p}"),
            Self::Connect(h, port) => write!(f, "connect {h}:{port}"),
        }
    }
}

/// A query with its decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    /// The question.
    pub query: Query,
    /// The answer.
    pub decision: Decision,
}

impl fmt::Display for Explanation {
    /// `connect api.anthropic.com:443 -> allow (rule: network.allow[0] "api.anthropic.com:443", reason: allowed)`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} -> {} (rule: {}, reason: {})",
            self.query, self.decision.verdict, self.decision.rule, self.decision.reason
        )
    }
}

/// Decides one query.
pub fn explain_one(policy: &Policy, query: &Query) -> Explanation {
    let decision = match query {
        Query::Read(p) => decide_path(policy, FsOp::Read, p),
        Query::Write(p) => decide_path(policy, FsOp::Write, p),
        Query::Connect(host, port) => policy.decide_connect(host, *port),
    };
    Explanation {
        query: query.clone(),
        decision,
    }
}

/// Decides every query and renders one line each, in order.
pub fn explain(policy: &Policy, queries: &[Query]) -> Vec<String> {
    queries
        .iter()
        .map(|q| {
            let mut line = explain_one(policy, q).to_string();
            if let Query::Connect(host, port) = q
                && let Ok(target) = crate::Target::parse(host)
                && policy.terminates(&target, *port)
            {
                line.push_str("; TLS terminated by the gateway (HTTP rules apply)");
                let creds: Vec<String> = policy
                    .credentials()
                    .iter()
                    .filter(|c| c.host == target && c.port == *port)
                    .map(|c| format!("{} into {} from {}", c.name, c.header, c.source))
                    .collect();
                if !creds.is_empty() {
                    line.push_str(&format!("; credentials: {}", creds.join(", ")));
                }
            }
            line
        })
        .collect()
}

fn decide_path(policy: &Policy, op: FsOp, path: &str) -> Decision {
    let mounts = policy.mounts();
    let found = if path.starts_with('/') {
        // The mount with the longest guest path that contains `path`.
        mounts
            .iter()
            .filter_map(|m| {
                let rest = if m.guest == "/" {
                    Some(path)
                } else {
                    path.strip_prefix(m.guest.as_str())
                        .filter(|r| r.is_empty() || r.starts_with('/'))
                };
                rest.map(|r| (m, r))
            })
            .max_by_key(|(m, _)| m.guest.len())
    } else {
        mounts
            .iter()
            .find(|m| m.workspace)
            .or_else(|| mounts.first())
            .map(|m| (m, path))
    };
    match found {
        Some((m, rel)) => policy.decide_fs(&m.guest, op, rel),
        None => Decision {
            verdict: Verdict::Deny,
            rule: "filesystem.mounts".to_owned(),
            reason: reason::UNKNOWN_MOUNT,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::load_profile;

    #[test]
    fn claude_code_acceptance() {
        let p = load_profile("claude-code").unwrap();
        let lines = explain(
            &p,
            &[
                Query::Connect("api.anthropic.com".to_owned(), 443),
                Query::Connect("evil.example".to_owned(), 443),
                Query::Write(".git/hooks/pre-commit".to_owned()),
                Query::Write("/workspace/.git/hooks/pre-commit".to_owned()),
                Query::Read("src/main.rs".to_owned()),
                Query::Write("/etc/passwd".to_owned()),
            ],
        );
        assert_eq!(
            lines,
            [
                "connect api.anthropic.com:443 -> allow (rule: network.allow[0] \"api.anthropic.com:443\", reason: allowed); TLS terminated by the gateway (HTTP rules apply); credentials: anthropic into x-api-key from env:ANTHROPIC_API_KEY, claude-oauth into authorization from env:CLAUDE_CODE_OAUTH_TOKEN",
                "connect evil.example:443 -> deny (rule: network.default, reason: not_allowed)",
                "write .git/hooks/pre-commit -> deny (rule: filesystem.protected \".git/hooks/**\", reason: protected_path)",
                "write /workspace/.git/hooks/pre-commit -> deny (rule: filesystem.protected \".git/hooks/**\", reason: protected_path)",
                "read src/main.rs -> allow (rule: filesystem.mounts[0] \"/workspace\", reason: allowed)",
                "write /etc/passwd -> deny (rule: filesystem.mounts, reason: unknown_mount)",
            ]
        );
    }

    #[test]
    fn codex_protects_its_config() {
        let p = load_profile("codex").unwrap();
        let e = explain_one(&p, &Query::Write(".codex/config.toml".to_owned()));
        assert_eq!(
            e.to_string(),
            "write .codex/config.toml -> deny (rule: filesystem.protected \".codex/**\", reason: protected_path)"
        );
        assert!(p.decide_connect("api.openai.com", 443).is_allowed());
        assert!(!p.decide_connect("api.anthropic.com", 443).is_allowed());
    }

    #[test]
    fn parse_connect() {
        assert_eq!(
            Query::parse_connect("api.anthropic.com:443"),
            Ok(Query::Connect("api.anthropic.com".to_owned(), 443))
        );
        assert_eq!(
            Query::parse_connect("[::1]:8080"),
            Ok(Query::Connect("[::1]".to_owned(), 8080))
        );
        assert_eq!(
            Query::parse_connect("example.com"),
            Err(QueryError::MissingPort("example.com".to_owned()))
        );
        assert_eq!(
            Query::parse_connect("::1:443"),
            Err(QueryError::MissingPort("::1:443".to_owned()))
        );
        assert_eq!(
            Query::parse_connect("example.com:0"),
            Err(QueryError::BadPort("example.com:0".to_owned()))
        );
        assert_eq!(
            Query::parse_connect("example.com:+80")
                .unwrap_err()
                .to_string(),
            "\"example.com:+80\" has an invalid port, expected a number from 1 to 65535"
        );
    }
}
