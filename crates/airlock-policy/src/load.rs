//! Text to schema: parses TOML keeping every key's and value's position, checks the document
//! against the JSON schema of `schema.rs` (so every unknown key and wrong type is reported, not
//! only the first), follows `extends` to the shipped profiles, and hands the layers to
//! `validate.rs`. Also the public entry points `load_file`, `load_str` and `load_profile`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Deserialize as _;
use serde_json::Value;
use toml::de::DeTable;

use crate::error::{ErrorKind, Location, PolicyError, PolicyErrors};
use crate::parse_error::ParseError;
use crate::policy::{MountHost, Policy, PolicySource, unprotected_overlaps};
use crate::schema::PolicyFile;
use crate::schema_walk::{Walker, index_table, json_schema_inline};
use crate::source::{Env, Layer, Loc, Pending, Source};
use crate::validate;
use crate::validation_error::ValidationError;

/// Shipped profiles, embedded at build time: (name, file text).
const PROFILES: &[(&str, &str)] = &[
    ("default", include_str!("../profiles/default.toml")),
    ("offline", include_str!("../profiles/offline.toml")),
    ("claude-code", include_str!("../profiles/claude-code.toml")),
    ("codex", include_str!("../profiles/codex.toml")),
    ("gemini", include_str!("../profiles/gemini.toml")),
    ("aider", include_str!("../profiles/aider.toml")),
    ("container", include_str!("../profiles/container.toml")),
    ("docker", include_str!("../profiles/docker.toml")),
];

/// Names of [`PROFILES`], in the same order.
const PROFILE_NAMES: &[&str] = &[
    "default",
    "offline",
    "claude-code",
    "codex",
    "gemini",
    "aider",
    "container",
    "docker",
];

/// How many `extends` links a chain may have (profiles may build on each other).
const MAX_EXTENDS_DEPTH: usize = 8;

/// Loads, checks and validates a policy file; the workspace mount, if any, stays unbound
/// until [`Policy::with_workspace`].
pub fn load_file(path: &Path) -> Result<Policy, PolicyErrors> {
    match std::fs::read_to_string(path) {
        Ok(text) => load_str(&text, path),
        Err(e) => Err(PolicyErrors::new(vec![PolicyError {
            location: Location {
                file: path.display().to_string(),
                position: None,
                key: String::new(),
            },
            kind: ErrorKind::Read(e),
        }])),
    }
}

/// Loads policy text. `origin` names the text in error messages, and relative host paths are
/// resolved against its parent directory.
pub fn load_str(text: &str, origin: &Path) -> Result<Policy, PolicyErrors> {
    load_with(text, origin, &Env::from_process())
}

/// Loads a shipped profile by name.
pub fn load_profile(name: &str) -> Result<Policy, PolicyErrors> {
    let Some(&(name, text)) = PROFILES.iter().find(|(n, _)| *n == name) else {
        return Err(PolicyErrors::new(vec![PolicyError {
            location: Location {
                file: format!("profile {name:?}"),
                position: None,
                key: String::new(),
            },
            kind: ValidationError::UnknownProfile {
                found: name.to_owned(),
                expected: profile_list(),
            }
            .into(),
        }]));
    };
    let mut loader = Loader::default();
    let layers = loader.parse_chain(
        text.to_owned(),
        profile_source_name(name),
        None,
        Some(name),
        &mut Vec::new(),
    );
    loader.finish(layers, &Env::from_process())
}

/// Names of the shipped profiles.
pub fn profile_names() -> &'static [&'static str] {
    PROFILE_NAMES
}

/// The text of a shipped profile, for `airlock policy show` or as a starting point.
pub fn profile_text(name: &str) -> Option<&'static str> {
    PROFILES.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
}

/// The JSON schema (draft 2020-12) of the policy file.
pub fn json_schema() -> Value {
    let schema = schemars::generate::SchemaSettings::draft2020_12()
        .into_generator()
        .into_root_schema_for::<PolicyFile>();
    schema.to_value()
}

pub(crate) fn load_with(text: &str, origin: &Path, env: &Env) -> Result<Policy, PolicyErrors> {
    let mut loader = Loader::default();
    let dir = origin.parent().map(Path::to_path_buf);
    let layers = loader.parse_chain(
        text.to_owned(),
        origin.display().to_string(),
        dir,
        None,
        &mut Vec::new(),
    );
    let mut policy = loader.finish(layers, env)?;
    policy.source = crate::policy::PolicySource {
        text: text.to_owned(),
        origin: origin.to_path_buf(),
        workspace: None,
        home: None,
        reserved: Vec::new(),
    };
    Ok(policy)
}

fn profile_source_name(name: &str) -> String {
    format!("profiles/{name}.toml")
}

fn profile_list() -> String {
    PROFILE_NAMES.join(", ")
}

#[derive(Default)]
struct Loader {
    sources: Vec<Source>,
    pending: Vec<Pending>,
}

impl Loader {
    /// Parses one text and, through `extends`, the profiles under it. Returns the layers,
    /// lowest first, or `None` when this text could not be parsed.
    fn parse_chain(
        &mut self,
        text: String,
        name: String,
        dir: Option<PathBuf>,
        profile: Option<&'static str>,
        chain: &mut Vec<&'static str>,
    ) -> Option<Vec<Layer>> {
        let src = self.sources.len();
        self.sources.push(Source {
            name,
            text,
            dir,
            profile,
            spans: HashMap::new(),
        });
        let file = self.parse_source(src)?;
        chain.extend(profile);
        let mut layers = Vec::new();
        if let Some(base) = &file.extends {
            match PROFILES.iter().find(|(n, _)| n == base) {
                None => self.invalid(
                    Loc::value(src, "extends"),
                    ValidationError::UnknownProfile {
                        found: base.clone(),
                        expected: profile_list(),
                    },
                ),
                Some(&(base, _)) if chain.contains(&base) => self.invalid(
                    Loc::value(src, "extends"),
                    ValidationError::ExtendsCycle {
                        found: base.to_owned(),
                    },
                ),
                Some(_) if chain.len() >= MAX_EXTENDS_DEPTH => self.invalid(
                    Loc::value(src, "extends"),
                    ValidationError::ExtendsTooDeep {
                        max: MAX_EXTENDS_DEPTH,
                    },
                ),
                Some(&(base, base_text)) => {
                    layers = self.parse_chain(
                        base_text.to_owned(),
                        profile_source_name(base),
                        None,
                        Some(base),
                        chain,
                    )?;
                }
            }
        }
        layers.push(Layer { src, file });
        Some(layers)
    }

    /// TOML syntax, then the schema walk, then serde. Each stage reports all its errors.
    fn parse_source(&mut self, src: usize) -> Option<PolicyFile> {
        let text = self.sources.get(src)?.text.clone();
        let (doc, syntax) = DeTable::parse_recoverable(&text);
        if !syntax.is_empty() {
            for e in syntax {
                self.pending.push(Pending {
                    src,
                    offset: e.span().map(|s| s.start),
                    key: String::new(),
                    kind: ParseError::Syntax {
                        message: one_line(e.message()),
                    }
                    .into(),
                });
            }
            return None;
        }
        let root = json_schema_inline();
        let mut walker = Walker {
            src,
            out: Vec::new(),
        };
        walker.table(doc.get_ref(), doc.span(), root, "");
        if !walker.out.is_empty() {
            self.pending.append(&mut walker.out);
            return None;
        }
        let mut spans = HashMap::new();
        index_table(doc.get_ref(), "", &mut spans);
        if let Some(source) = self.sources.get_mut(src) {
            source.spans = spans;
        }
        match PolicyFile::deserialize(toml::de::Deserializer::from(doc)) {
            Ok(file) => Some(file),
            Err(e) => {
                self.pending.push(Pending {
                    src,
                    offset: e.span().map(|s| s.start),
                    key: String::new(),
                    kind: ParseError::Other {
                        message: one_line(e.message()),
                    }
                    .into(),
                });
                None
            }
        }
    }

    fn invalid(&mut self, loc: Loc, error: ValidationError) {
        let offset = self.offset_of(&loc);
        self.pending.push(Pending {
            src: loc.src,
            offset,
            key: loc.key,
            kind: error.into(),
        });
    }

    fn offset_of(&self, loc: &Loc) -> Option<usize> {
        let span = self.sources.get(loc.src)?.spans.get(&loc.key)?;
        Some(span.value.start)
    }

    /// Validates the layers (if all parsed) and turns every pending error into a
    /// [`PolicyError`], sorted by source and position.
    fn finish(mut self, layers: Option<Vec<Layer>>, env: &Env) -> Result<Policy, PolicyErrors> {
        let mut policy = None;
        // `layers` is `None` when a text failed to parse; extends errors still let the
        // caller's own file be validated, so that every error is reported at once.
        if let Some(layers) = layers {
            match validate::build(&layers, &self.sources, env) {
                Ok(p) => policy = Some(p),
                Err(errors) => {
                    for (loc, e) in errors {
                        self.invalid(loc, e);
                    }
                }
            }
        }
        if self.pending.is_empty()
            && let Some(policy) = policy
        {
            return Ok(policy);
        }
        self.pending.sort_by_key(|p| (p.src, p.offset));
        let errors = self
            .pending
            .into_iter()
            .map(|p| {
                let source = self.sources.get(p.src);
                PolicyError {
                    location: Location {
                        file: source.map(|s| s.name.clone()).unwrap_or_default(),
                        position: p.offset.and_then(|o| source.map(|s| s.line_col(o))),
                        key: p.key,
                    },
                    kind: p.kind,
                }
            })
            .collect();
        Err(PolicyErrors::new(errors))
    }
}

fn one_line(message: &str) -> String {
    message
        .trim()
        .lines()
        .map(str::trim)
        .collect::<Vec<_>>()
        .join("; ")
}

impl PolicySource {
    /// Loads the policy again, with this process's environment, and binds the workspace.
    pub fn load(&self) -> Result<Policy, PolicyErrors> {
        let policy = load_str(&self.text, &self.origin)?;
        let policy = match &self.workspace {
            Some(dir) => policy.with_workspace(dir)?,
            None => policy,
        };
        let policy = match &self.home {
            Some(dir) => policy.with_home(dir)?,
            None => policy,
        };
        policy.with_reserved(self.reserved.clone())
    }

    /// Loads the policy in a process that cannot see the host directories it shares (a
    /// jailed gateway): they were checked by the sender, which passes every mount's canonical
    /// host directory in `hosts`, in the order of [`Policy::mounts`] (`None` for a workspace
    /// mount with no workspace bound).
    pub fn load_checked_elsewhere(
        &self,
        hosts: &[Option<PathBuf>],
    ) -> Result<Policy, PolicyErrors> {
        let env = Env {
            home: std::env::var_os("HOME").map(PathBuf::from),
            trusted_hosts: true,
        };
        let mut policy = load_with(&self.text, &self.origin, &env)?;
        let invalid = |error: ValidationError| {
            PolicyErrors::new(vec![PolicyError {
                location: Location {
                    file: self.origin.display().to_string(),
                    position: None,
                    key: "filesystem.mounts".to_owned(),
                },
                kind: ErrorKind::Invalid(error),
            }])
        };
        // Its host directory comes with the others, last.
        if let Some(home) = &self.home {
            policy.push_home(home.clone()).map_err(invalid)?;
            policy.source.home = Some(home.clone());
        }
        let mismatch = |why: String| {
            PolicyErrors::new(vec![PolicyError {
                location: Location {
                    file: self.origin.display().to_string(),
                    position: None,
                    key: "filesystem.mounts".to_owned(),
                },
                kind: ErrorKind::Invalid(ValidationError::MountHostsMismatch { why }),
            }])
        };
        if hosts.len() != policy.mounts.len() {
            return Err(mismatch(format!(
                "{} mounts, {} host directories given",
                policy.mounts.len(),
                hosts.len()
            )));
        }
        if let Some(dir) = &self.workspace {
            policy.source.workspace = Some(dir.clone());
        }
        for (m, host) in policy.mounts.iter_mut().zip(hosts) {
            let Some(host) = host else { continue };
            if !host.is_absolute() {
                return Err(mismatch(format!("{} is not absolute", host.display())));
            }
            m.host = MountHost::Path(host.clone());
        }
        // The sender checked this too; checked again on the directories actually used.
        if let Some((_, error)) = unprotected_overlaps(&policy.mounts).into_iter().next() {
            return Err(invalid(error));
        }
        policy.source.text.clone_from(&self.text);
        policy.source.origin.clone_from(&self.origin);
        policy.with_reserved(self.reserved.clone())
    }
}

#[cfg(test)]
mod proptests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shipped_profile_passes_check() {
        assert_eq!(PROFILES.len(), PROFILE_NAMES.len());
        for (&(name, _), &listed) in PROFILES.iter().zip(PROFILE_NAMES) {
            assert_eq!(name, listed);
            let p = load_profile(name).unwrap_or_else(|e| panic!("{name}: {e}"));
            if name == "container" {
                // The shim shares each container's root itself; the profile shares nothing.
                assert!(p.mounts().is_empty() && !p.needs_workspace());
                continue;
            }
            assert!(p.needs_workspace(), "{name}");
            assert_eq!(p.mounts()[0].guest, "/workspace", "{name}");
            assert!(
                p.decide_fs("/workspace", crate::FsOp::Write, "src/lib.rs")
                    .is_allowed()
            );
            assert!(
                !p.decide_connect("evil.example", 443).is_allowed(),
                "{name}"
            );
            assert_eq!(
                profile_text(name),
                Some(PROFILES.iter().find(|p| p.0 == name).unwrap().1)
            );
        }
        assert_eq!(
            load_profile("offline").unwrap().process().seccomp,
            crate::SeccompProfile::Strict
        );
    }

    #[test]
    fn unknown_profile() {
        assert_eq!(
            load_profile("nope").unwrap_err().to_string(),
            "profile \"nope\": unknown profile \"nope\", expected one of: default, offline, claude-code, codex, gemini, aider, container, docker"
        );
    }

    #[test]
    fn check_fails_on_unknown_key_with_line_and_column() {
        let e = load_str(
            "[network]\ndefault = \"deny\"\nalow = [\"a.example\"]\n",
            Path::new("p.toml"),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "p.toml:3:1: network: unknown key `alow`, expected one of: allow, allow_private, credentials, default, deny, extra_ca, http, passthrough, trust_host_ca"
        );
    }

    #[test]
    fn check_fails_on_star_wildcard_with_line_and_column() {
        let e = load_str(
            "extends = \"default\"\n[network]\nallow = [\"pypi.org:443\", \"*\"]\n",
            Path::new("p.toml"),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "p.toml:3:26: network.allow[1]: invalid host pattern \"*\": over-broad pattern: matches every host; use network.default = \"allow\" instead"
        );
    }

    #[test]
    fn unreadable_file() {
        let e = load_file(Path::new("/nonexistent/policy.toml")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "/nonexistent/policy.toml: cannot read policy file: No such file or directory (os error 2)"
        );
    }

    #[test]
    fn positions_count_characters_not_bytes() {
        let e = load_str("# é\n[sandbox] # ü\nimage = \"É\"\n", Path::new("p.toml")).unwrap_err();
        assert_eq!(
            e.errors()[0].location,
            Location {
                file: "p.toml".to_owned(),
                position: Some((3, 9)),
                key: "sandbox.image".to_owned(),
            }
        );
    }

    #[test]
    fn json_schema_describes_every_section() {
        let schema = json_schema();
        assert_eq!(schema["title"], "airlock policy");
        assert_eq!(schema["additionalProperties"], false);
        let props = schema["properties"].as_object().unwrap();
        let keys: Vec<&str> = props.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "audit",
                "extends",
                "filesystem",
                "monitor",
                "network",
                "process",
                "sandbox"
            ]
        );
        let text = schema.to_string();
        assert!(text.contains("Absolute mount point inside the guest"));
    }
}
