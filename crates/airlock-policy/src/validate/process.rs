//! `[process]`, `[audit]` and `[monitor]`: user, seccomp profile and `no_new_privs`; log path
//! and redactions; monitor rules.

use globset::GlobBuilder;

use crate::path::PathError;
use crate::policy::{AuditPolicy, MonitorRule, ProcessPolicy};
use crate::schema::SeccompProfile;
use crate::source::Layer;
use crate::validation_error::ValidationError;

use super::ctx::{Ctx, all, last};

/// Default `process.user`.
const DEFAULT_USER: &str = "agent";
/// Longest user name accepted by common `useradd` implementations.
const MAX_USER_LEN: usize = 32;

/// Default `audit.guest_rate`: far above what a real workload reports, low enough that a
/// flood cannot keep the writer busy.
const DEFAULT_GUEST_RATE: u32 = 2000;

impl Ctx<'_> {
    pub(super) fn process(&mut self, layers: &[Layer]) -> ProcessPolicy {
        let mut process = ProcessPolicy {
            user: DEFAULT_USER.to_owned(),
            seccomp: SeccompProfile::Default,
            no_new_privs: true,
        };
        if let Some(it) = last(layers, "process.user", |f| &f.process.user) {
            if valid_user(it.value) {
                process.user.clone_from(it.value);
            } else {
                self.error(
                    it.src,
                    &it.key,
                    ValidationError::BadUser {
                        found: it.value.clone(),
                    },
                );
            }
        }
        if let Some(it) = last(layers, "process.seccomp", |f| &f.process.seccomp) {
            process.seccomp = *it.value;
        }
        if let Some(it) = last(layers, "process.no_new_privs", |f| &f.process.no_new_privs) {
            process.no_new_privs = *it.value;
            if !*it.value && process.seccomp != SeccompProfile::Unconfined {
                self.error(
                    it.src,
                    &it.key,
                    ValidationError::NoNewPrivsNeedsUnconfined {
                        seccomp: process.seccomp.as_str().to_owned(),
                    },
                );
            }
        }
        process
    }

    pub(super) fn audit(&mut self, layers: &[Layer]) -> AuditPolicy {
        let path = last(layers, "audit.path", |f| &f.audit.path)
            .and_then(|it| self.host_path(it.src, &it.key, it.value));
        let mut redact = Vec::new();
        for it in all(layers, "audit.redact", |f| &f.audit.redact) {
            match regex::Regex::new(it.value) {
                Ok(_) => redact.push(it.value.clone()),
                Err(e) => self.error(
                    it.src,
                    &it.key,
                    ValidationError::BadRegex {
                        found: it.value.clone(),
                        problem: regex_problem(&e),
                    },
                ),
            }
        }
        let mut redact_env = Vec::new();
        for it in all(layers, "audit.redact_env", |f| &f.audit.redact_env) {
            if valid_env_name(it.value) {
                redact_env.push(it.value.clone());
            } else {
                self.error(
                    it.src,
                    &it.key,
                    ValidationError::BadEnvName {
                        found: it.value.clone(),
                    },
                );
            }
        }
        AuditPolicy {
            path,
            redact,
            redact_env,
            // Its range is checked against the schema at load.
            guest_rate: last(layers, "audit.guest_rate", |f| &f.audit.guest_rate)
                .map_or(DEFAULT_GUEST_RATE, |it| *it.value),
        }
    }

    pub(super) fn monitor(&mut self, layers: &[Layer]) -> Vec<MonitorRule> {
        let mut rules = Vec::new();
        for it in all(layers, "monitor.rules", |f| &f.monitor.rules) {
            let r = it.value;
            if r.kind.is_none() && r.decision.is_none() && r.path.is_none() && r.host.is_none() {
                self.error(it.src, &it.key, ValidationError::EmptyMonitorRule);
                continue;
            }
            let mut ok = true;
            let mut compile =
                |cx: &mut Self, field: &str, glob: &Option<String>, literal_separator: bool| {
                    let glob = glob.as_ref()?;
                    match GlobBuilder::new(glob)
                        .literal_separator(literal_separator)
                        .build()
                    {
                        Ok(g) => Some(g.compile_matcher()),
                        Err(e) => {
                            cx.error(
                                it.src,
                                &format!("{}.{field}", it.key),
                                ValidationError::BadGlob {
                                    found: glob.clone(),
                                    problem: PathError::BadGlob(e.kind().to_string()),
                                },
                            );
                            ok = false;
                            None
                        }
                    }
                };
            let kind = compile(self, "kind", &r.kind, false);
            let path = compile(self, "path", &r.path, true);
            let host = match &r.host {
                None => None,
                Some(h) => {
                    let e = self.endpoint(it.src, &format!("{}.host", it.key), h);
                    ok &= e.is_some();
                    e
                }
            };
            if ok {
                rules.push(MonitorRule {
                    action: r.action,
                    rule: self.rule_name(it.src, &it.key, &describe_monitor(r)),
                    kind,
                    decision: r.decision,
                    path,
                    host,
                });
            }
        }
        rules
    }
}

fn describe_monitor(r: &crate::schema::MonitorRuleEntry) -> String {
    let mut parts = Vec::new();
    if let Some(k) = &r.kind {
        parts.push(format!("kind={k}"));
    }
    if let Some(d) = r.decision {
        parts.push(format!("decision={}", d.as_str()));
    }
    if let Some(p) = &r.path {
        parts.push(format!("path={p}"));
    }
    if let Some(h) = &r.host {
        parts.push(format!("host={h}"));
    }
    parts.join(" ")
}

fn valid_user(name: &str) -> bool {
    name.len() <= MAX_USER_LEN
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-'))
}

pub(super) fn valid_env_name(name: &str) -> bool {
    name.bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn regex_problem(e: &regex::Error) -> String {
    let text = e.to_string();
    text.lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("error: "))
        .map_or_else(
            || text.lines().last().unwrap_or_default().trim().to_owned(),
            str::to_owned,
        )
}
