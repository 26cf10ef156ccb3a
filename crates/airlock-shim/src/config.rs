//! The node admin's shim configuration: which policies pods may pick, where audit logs go and
//! how many containers a pod's VM takes. A pod only ever names a profile; it never brings a
//! policy of its own.

use airlock_supervisor::launch::PolicyChoice;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Where the configuration is read from unless `AIRLOCK_SHIM_CONFIG` names another file.
pub const DEFAULT_PATH: &str = "/etc/airlock/containerd-shim.toml";
/// The environment variable naming the configuration file.
pub const ENV: &str = "AIRLOCK_SHIM_CONFIG";

/// Why the configuration or a pod's choice was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file exists but cannot be read.
    #[error("{}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a valid configuration.
    #[error("{}: {message}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message (line, column, key).
        message: String,
    },
    /// A value is out of range or inconsistent.
    #[error("{}: {key}: {why}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
        /// What is wrong.
        why: String,
    },
    /// A pod asked for a profile the admin did not approve.
    #[error(
        "profile {asked:?} (annotation io.airlock.profile) is not approved on this node; approved: {approved}"
    )]
    NotApproved {
        /// What the pod asked for.
        asked: String,
        /// What it may ask for.
        approved: String,
    },
}

/// The shim's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShimConfig {
    /// The profile of pods that name none: a shipped profile or a key of `policies`.
    #[serde(default = "default_profile")]
    pub default_profile: String,
    /// Profiles pods may pick with the `io.airlock.profile` annotation (the default always).
    #[serde(default)]
    pub allowed_profiles: Vec<String>,
    /// Policy files the admin installed, by the name pods pick them with.
    #[serde(default)]
    pub policies: BTreeMap<String, PathBuf>,
    /// Where each pod's audit log is written.
    #[serde(default = "default_audit_dir")]
    pub audit_dir: PathBuf,
    /// Most containers one pod's VM takes, pause container included (one filesystem device
    /// each, made at boot). QEMU's microvm has 8 virtio transports: the vsock device and the
    /// sandbox disk leave 6 with the `tiny` image, one fewer per image or kit layer.
    #[serde(default = "default_max_containers")]
    pub max_containers: usize,
    /// VM memory in MiB when the pod's spec sets no limit (else the profile's).
    #[serde(default)]
    pub memory_mib: Option<u64>,
}

fn default_profile() -> String {
    "container".into()
}

fn default_audit_dir() -> PathBuf {
    PathBuf::from("/var/log/airlock/containerd")
}

fn default_max_containers() -> usize {
    MAX_CONTAINERS
}

/// The most containers a pod can hold (see [`ShimConfig::max_containers`]).
pub const MAX_CONTAINERS: usize = 6;

impl Default for ShimConfig {
    fn default() -> Self {
        ShimConfig {
            default_profile: default_profile(),
            allowed_profiles: Vec::new(),
            policies: BTreeMap::new(),
            audit_dir: default_audit_dir(),
            max_containers: default_max_containers(),
            memory_mib: None,
        }
    }
}

impl ShimConfig {
    /// Reads the file `AIRLOCK_SHIM_CONFIG` names, else [`DEFAULT_PATH`]; a missing default
    /// file means the defaults, a missing named file is an error.
    pub fn load() -> Result<ShimConfig, ConfigError> {
        match std::env::var_os(ENV) {
            Some(p) => ShimConfig::read(Path::new(&p)),
            None if !Path::new(DEFAULT_PATH).exists() => Ok(ShimConfig::default()),
            None => ShimConfig::read(Path::new(DEFAULT_PATH)),
        }
    }

    /// Reads and checks one file.
    pub fn read(path: &Path) -> Result<ShimConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        ShimConfig::parse(&text, path)
    }

    /// Parses and checks `text` (named `path` in errors).
    pub fn parse(text: &str, path: &Path) -> Result<ShimConfig, ConfigError> {
        let config: ShimConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string().trim().replace('\n', " "),
        })?;
        let invalid = |key: &str, why: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            key: key.to_string(),
            why,
        };
        if !(1..=MAX_CONTAINERS).contains(&config.max_containers) {
            return Err(invalid(
                "max_containers",
                format!(
                    "{} is out of range 1..={MAX_CONTAINERS} (virtio transports of the VM)",
                    config.max_containers
                ),
            ));
        }
        if let Some(m) = config.memory_mib
            && !(64..=65536).contains(&m)
        {
            return Err(invalid(
                "memory_mib",
                format!("{m} is out of range 64..=65536"),
            ));
        }
        for (name, file) in &config.policies {
            if !file.is_absolute() {
                return Err(invalid(
                    &format!("policies.{name}"),
                    format!("{} is not an absolute path", file.display()),
                ));
            }
        }
        let known = |name: &str| {
            config.policies.contains_key(name) || airlock_policy::profile_text(name).is_some()
        };
        for name in std::iter::once(&config.default_profile).chain(&config.allowed_profiles) {
            if !known(name) {
                return Err(invalid(
                    "allowed_profiles",
                    format!("{name:?} is neither a shipped profile nor a key of [policies]"),
                ));
            }
        }
        if !config.audit_dir.is_absolute() {
            return Err(invalid(
                "audit_dir",
                format!("{} is not an absolute path", config.audit_dir.display()),
            ));
        }
        Ok(config)
    }

    /// The policy for a pod that asked for `asked` (its `io.airlock.profile`), if approved.
    pub fn policy_for(&self, asked: Option<&str>) -> Result<(String, PolicyChoice), ConfigError> {
        let name = asked.unwrap_or(&self.default_profile);
        if name != self.default_profile && !self.allowed_profiles.iter().any(|a| a == name) {
            let mut approved = vec![self.default_profile.clone()];
            approved.extend(self.allowed_profiles.iter().cloned());
            return Err(ConfigError::NotApproved {
                asked: name.to_string(),
                approved: approved.join(", "),
            });
        }
        let choice = match self.policies.get(name) {
            Some(file) => PolicyChoice::File(file.clone()),
            None => PolicyChoice::Profile(name.to_string()),
        };
        Ok((name.to_string(), choice))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ShimConfig, ConfigError> {
        ShimConfig::parse(text, Path::new("/etc/airlock/containerd-shim.toml"))
    }

    #[test]
    fn the_shipped_example_parses() {
        let text = include_str!("../../../deploy/kubernetes/containerd-shim.toml");
        let c = parse(text).unwrap();
        assert_eq!(c.allowed_profiles, ["egress-registry"]);
    }

    #[test]
    fn an_empty_file_gives_the_defaults() {
        assert_eq!(parse("").unwrap(), ShimConfig::default());
    }

    #[test]
    fn pods_pick_only_approved_profiles() {
        let c = parse(
            "allowed_profiles = [\"offline\", \"strict\"]\n[policies]\nstrict = \"/etc/airlock/strict.toml\"\n",
        )
        .unwrap();
        let (name, choice) = c.policy_for(None).unwrap();
        assert_eq!(name, "container");
        assert!(matches!(choice, PolicyChoice::Profile(p) if p == "container"));
        assert!(matches!(c.policy_for(Some("strict")).unwrap().1,
            PolicyChoice::File(f) if f == Path::new("/etc/airlock/strict.toml")));
        assert!(matches!(
            c.policy_for(Some("offline")).unwrap().1,
            PolicyChoice::Profile(_)
        ));
        let e = c.policy_for(Some("default")).unwrap_err().to_string();
        assert_eq!(
            e,
            "profile \"default\" (annotation io.airlock.profile) is not approved on this node; approved: container, offline, strict"
        );
    }

    #[test]
    fn bad_files_are_refused_naming_file_and_key() {
        for (text, want) in [
            (
                "max_containers = 0",
                "max_containers: 0 is out of range 1..=6",
            ),
            ("memory_mib = 10", "memory_mib: 10 is out of range"),
            (
                "allowed_profiles = [\"nope\"]",
                "\"nope\" is neither a shipped profile",
            ),
            (
                "[policies]\nx = \"rel.toml\"",
                "policies.x: rel.toml is not an absolute path",
            ),
            (
                "audit_dir = \"logs\"",
                "audit_dir: logs is not an absolute path",
            ),
            ("colour = 1", "unknown field `colour`"),
        ] {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.starts_with("/etc/airlock/containerd-shim.toml: "), "{e}");
            assert!(e.contains(want), "{text}: {e}");
        }
        let e = ShimConfig::read(Path::new("/nonexistent/shim.toml")).unwrap_err();
        assert!(e.to_string().starts_with("/nonexistent/shim.toml: "), "{e}");
    }
}
