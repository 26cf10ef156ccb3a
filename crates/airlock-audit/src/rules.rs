//! Monitor rules: pure matching of an [`Event`] against a list of [`MonitorRule`]s, for the
//! supervisor's live reaction (alert, pause, kill). The policy crate parses the `[monitor]`
//! section; the CLI converts its entries into these plain structs and compiles them once with
//! [`Monitor::new`].
//!
//! A rule matches when every field it sets matches:
//! - `kind`: glob on the dotted kind; `*` matches any run of characters including dots
//!   (`net.*`, `*.deny`, `*`), `?` one character, `[...]` a class;
//! - `decision`: equal to the event's decision (events without one never match);
//! - `path`: glob on `fs.path` or `fs.to`, with `*` within one path segment and `**` across
//!   segments (`**/.env`, `/workspace/.git/**`);
//! - `host`: `name`, `*.suffix` (strict subdomains only) or an address literal, optionally
//!   with `:port` (`[v6]:port` for IPv6), compared with `net.host` or `net.ip`,
//!   case-insensitively and ignoring a trailing dot.
//!
//! When several rules match, the most severe action wins (`kill` > `pause` > `alert`), and
//! among equals the first rule: a later `kill` is never masked by an earlier `alert`.

use globset::{GlobBuilder, GlobMatcher};
use serde::{Deserialize, Serialize};

use crate::event::{Decision, Event};

/// What the supervisor does when a rule matches, least severe first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Record a `monitor.alert` event and show it live.
    Alert,
    /// Pause the sandbox until an operator resumes or kills it.
    Pause,
    /// Stop the sandbox.
    Kill,
}

/// One monitor rule, uncompiled. Fields left `None` match anything.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MonitorRule {
    /// Glob on the dotted event kind.
    #[serde(default)]
    pub kind: Option<String>,
    /// Decision to match.
    #[serde(default)]
    pub decision: Option<Decision>,
    /// Glob on the event's filesystem path(s).
    #[serde(default)]
    pub path: Option<String>,
    /// Host pattern, optionally with a port.
    #[serde(default)]
    pub host: Option<String>,
    /// What to do on a match.
    pub action: Action,
}

/// A rule that did not compile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("monitor rule {index}: {problem}")]
pub struct RuleError {
    /// 0-based index of the rule.
    pub index: usize,
    /// What is wrong.
    pub problem: RuleProblem,
}

/// What is wrong with a rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleProblem {
    /// The rule sets no match field, so it would match every event.
    #[error("no match field (kind, decision, path or host) is set")]
    Empty,
    /// A glob does not compile.
    #[error("invalid {field} glob {glob:?}: {reason}")]
    BadGlob {
        /// `kind` or `path`.
        field: &'static str,
        /// The glob.
        glob: String,
        /// Why.
        reason: String,
    },
    /// The host pattern is malformed.
    #[error(
        "invalid host pattern {0:?}: expected name, *.suffix or address, optionally with :port"
    )]
    BadHost(String),
}

/// A matched rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Match {
    /// 0-based index of the rule in the list given to [`Monitor::new`].
    pub index: usize,
    /// Its action.
    pub action: Action,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostName {
    Exact(String),
    /// Stored with its leading dot, e.g. `.example.com`.
    Suffix(String),
}

#[derive(Debug, Clone)]
struct HostPattern {
    name: HostName,
    port: Option<u16>,
}

#[derive(Debug, Clone)]
struct Compiled {
    kind: Option<GlobMatcher>,
    decision: Option<Decision>,
    path: Option<GlobMatcher>,
    host: Option<HostPattern>,
    action: Action,
}

/// Compiled monitor rules.
#[derive(Debug, Clone, Default)]
pub struct Monitor {
    rules: Vec<Compiled>,
}

fn normalise_host(h: &str) -> String {
    h.strip_suffix('.').unwrap_or(h).to_ascii_lowercase()
}

fn parse_host(text: &str) -> Option<HostPattern> {
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (addr, after) = rest.split_once(']')?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':')?),
        };
        (addr, port)
    } else if text.matches(':').count() == 1 {
        let (h, p) = text.split_once(':')?;
        (h, Some(p))
    } else {
        (text, None)
    };
    let port = match port {
        None => None,
        Some(p) => Some(p.parse::<u16>().ok().filter(|&p| p != 0)?),
    };
    let host = normalise_host(host);
    let name = match host.strip_prefix('*') {
        Some(suffix) => {
            // `*.b` needs at least one label after the dot, and no other wildcard.
            let rest = suffix.strip_prefix('.')?;
            if rest.is_empty() || rest.contains('*') {
                return None;
            }
            HostName::Suffix(suffix.to_owned())
        }
        None if !host.is_empty() && !host.contains(['*', '/', ' ']) => HostName::Exact(host),
        None => return None,
    };
    Some(HostPattern { name, port })
}

impl HostPattern {
    fn matches(&self, net: &crate::event::NetInfo) -> bool {
        if self.port.is_some() && self.port != net.port {
            return false;
        }
        let name_matches = |h: &str| {
            let h = normalise_host(h.trim_start_matches('[').trim_end_matches(']'));
            match &self.name {
                HostName::Exact(e) => h == *e,
                HostName::Suffix(s) => h.len() > s.len() && h.ends_with(s.as_str()),
            }
        };
        net.host.as_deref().is_some_and(name_matches) || net.ip.as_deref().is_some_and(name_matches)
    }
}

fn glob(
    field: &'static str,
    text: &Option<String>,
    literal_separator: bool,
) -> Result<Option<GlobMatcher>, RuleProblem> {
    let Some(text) = text else {
        return Ok(None);
    };
    GlobBuilder::new(text)
        .literal_separator(literal_separator)
        .build()
        .map(|g| Some(g.compile_matcher()))
        .map_err(|e| RuleProblem::BadGlob {
            field,
            glob: text.clone(),
            reason: e.kind().to_string(),
        })
}

impl Monitor {
    /// Compiles rules, reporting the first bad one.
    pub fn new(rules: &[MonitorRule]) -> Result<Self, RuleError> {
        let compiled = rules
            .iter()
            .enumerate()
            .map(|(index, r)| {
                let err = |problem| RuleError { index, problem };
                if r.kind.is_none() && r.decision.is_none() && r.path.is_none() && r.host.is_none()
                {
                    return Err(err(RuleProblem::Empty));
                }
                let host = match &r.host {
                    None => None,
                    Some(h) => {
                        Some(parse_host(h).ok_or_else(|| err(RuleProblem::BadHost(h.clone())))?)
                    }
                };
                Ok(Compiled {
                    kind: glob("kind", &r.kind, false).map_err(err)?,
                    decision: r.decision,
                    path: glob("path", &r.path, true).map_err(err)?,
                    host,
                    action: r.action,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { rules: compiled })
    }

    /// The most severe matching rule (first among equals), if any.
    pub fn evaluate(&self, event: &Event) -> Option<Match> {
        let mut best: Option<Match> = None;
        for (index, rule) in self.rules.iter().enumerate() {
            if best.is_some_and(|b| b.action >= rule.action) || !rule.matches(event) {
                continue;
            }
            best = Some(Match {
                index,
                action: rule.action,
            });
        }
        best
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// True when there are no rules.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

impl Compiled {
    fn matches(&self, event: &Event) -> bool {
        if self.kind.as_ref().is_some_and(|k| !k.is_match(&event.kind)) {
            return false;
        }
        if self.decision.is_some() && self.decision != event.decision {
            return false;
        }
        if let Some(glob) = &self.path {
            let fs = event.fs.as_ref();
            let hit = fs.is_some_and(|fs| {
                glob.is_match(&fs.path) || fs.to.as_deref().is_some_and(|t| glob.is_match(t))
            });
            if !hit {
                return false;
            }
        }
        if let Some(host) = &self.host
            && !event.net.as_ref().is_some_and(|n| host.matches(n))
        {
            return false;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{FsInfo, NetInfo, Source};

    fn rule(kind: Option<&str>, decision: Option<Decision>, action: Action) -> MonitorRule {
        MonitorRule {
            kind: kind.map(Into::into),
            decision,
            path: None,
            host: None,
            action,
        }
    }

    fn fs(kind: &str, d: Decision, path: &str, to: Option<&str>) -> Event {
        Event::new(Source::Host, kind)
            .with_decision(d)
            .with_fs(FsInfo {
                op: "x".into(),
                path: path.into(),
                to: to.map(Into::into),
                mount: None,
            })
    }

    fn net(host: &str, port: u16, ip: Option<&str>) -> Event {
        Event::new(Source::Host, "net.connect")
            .with_decision(Decision::Allow)
            .with_net(NetInfo {
                host: Some(host.into()),
                port: Some(port),
                ip: ip.map(Into::into),
                ..NetInfo::default()
            })
    }

    #[test]
    fn table() {
        let rules = [
            /* 0 */ rule(Some("net.*"), Some(Decision::Deny), Action::Alert),
            /* 1 */
            MonitorRule {
                path: Some("**/.env".into()),
                ..rule(Some("fs.*"), None, Action::Alert)
            },
            /* 2 */
            MonitorRule {
                path: Some("/workspace/.git/hooks/*".into()),
                ..rule(None, None, Action::Kill)
            },
            /* 3 */
            MonitorRule {
                host: Some("*.evil.example:443".into()),
                ..rule(None, None, Action::Pause)
            },
            /* 4 */
            MonitorRule {
                host: Some("[2001:db8::1]".into()),
                ..rule(None, None, Action::Alert)
            },
            /* 5 */ rule(Some("proc.exec"), None, Action::Alert),
            /* 6 */ rule(Some("proc.ex?c"), None, Action::Kill),
            /* 7 */ rule(None, Some(Decision::Error), Action::Alert),
        ];
        let monitor = Monitor::new(&rules).unwrap();
        let m = |index, action| Some(Match { index, action });
        let cases: Vec<(Event, Option<Match>)> = vec![
            (
                Event::new(Source::Host, "net.connect").with_decision(Decision::Deny),
                m(0, Action::Alert),
            ),
            (
                Event::new(Source::Host, "net.http.request").with_decision(Decision::Deny),
                m(0, Action::Alert),
            ),
            (
                Event::new(Source::Host, "net.connect").with_decision(Decision::Allow),
                None,
            ),
            (Event::new(Source::Host, "net.connect"), None),
            (
                fs("fs.open", Decision::Allow, "/workspace/app/.env", None),
                m(1, Action::Alert),
            ),
            (
                fs("fs.open", Decision::Allow, "/workspace/.envrc", None),
                None,
            ),
            (
                fs(
                    "fs.rename",
                    Decision::Allow,
                    "/tmp/x",
                    Some("/workspace/.env"),
                ),
                m(1, Action::Alert),
            ),
            (
                fs(
                    "fs.create",
                    Decision::Deny,
                    "/workspace/.git/hooks/pre-commit",
                    None,
                ),
                m(2, Action::Kill),
            ),
            // `*` stays within one segment for paths.
            (
                fs(
                    "fs.create",
                    Decision::Deny,
                    "/workspace/.git/hooks/a/b",
                    None,
                ),
                None,
            ),
            (net("a.evil.example", 443, None), m(3, Action::Pause)),
            (net("A.B.Evil.Example.", 443, None), m(3, Action::Pause)),
            (net("evil.example", 443, None), None),
            (net("a.evil.example", 80, None), None),
            (
                net("x.example", 80, Some("2001:db8::1")),
                m(4, Action::Alert),
            ),
            (
                Event::new(Source::Guest, "proc.exec"),
                // Both 5 and 6 match; kill beats alert though it comes later.
                m(6, Action::Kill),
            ),
            (
                Event::new(Source::Host, "sandbox.end").with_decision(Decision::Error),
                m(7, Action::Alert),
            ),
            (Event::new(Source::Host, "sandbox.start"), None),
        ];
        for (event, want) in cases {
            assert_eq!(monitor.evaluate(&event), want, "{event:?}");
        }
    }

    #[test]
    fn first_rule_wins_among_equal_actions() {
        let monitor = Monitor::new(&[
            rule(Some("*"), None, Action::Alert),
            rule(Some("fs.*"), None, Action::Alert),
        ])
        .unwrap();
        assert_eq!(
            monitor.evaluate(&Event::new(Source::Host, "fs.write")),
            Some(Match {
                index: 0,
                action: Action::Alert
            })
        );
    }

    #[test]
    fn bad_rules_are_rejected_with_their_index() {
        let bad = |r: MonitorRule| Monitor::new(&[rule(Some("x.y"), None, Action::Alert), r]);
        assert_eq!(
            bad(rule(None, None, Action::Kill)).unwrap_err(),
            RuleError {
                index: 1,
                problem: RuleProblem::Empty
            }
        );
        assert!(matches!(
            bad(rule(Some("net.[a"), None, Action::Kill)).unwrap_err(),
            RuleError {
                index: 1,
                problem: RuleProblem::BadGlob { field: "kind", .. }
            }
        ));
        for h in [
            "",
            "*",
            "*.",
            "a.*.b",
            "**.x",
            "host:0",
            "host:99999",
            "[::1",
            "a b",
        ] {
            let r = MonitorRule {
                host: Some(h.into()),
                ..rule(None, None, Action::Kill)
            };
            assert_eq!(
                bad(r).unwrap_err(),
                RuleError {
                    index: 1,
                    problem: RuleProblem::BadHost(h.into())
                },
                "{h:?}"
            );
        }
    }
}
