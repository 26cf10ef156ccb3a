//! Agent kits: one data file per agent in `images/kits/`, embedded at build time. A kit names
//! the package and pinned version an agent CLI is installed from (npm or PyPI), the command it
//! is run by, the policy profile it runs under, the environment variables it reads its key
//! from, what it keeps in the home directory, and how to run it without a terminal.
//!
//! A kit is installed when its image layer is built ([`build`]), never at run time: the layer
//! is a squashfs holding the installed package under `/opt/airlock/kits/<name>` and a wrapper at
//! `/usr/local/bin/<command>`, mounted over the Debian image in the guest. [`store`] keeps the
//! built layers in the cache and checks each against its manifest before it boots;
//! [`registry`] asks npm or PyPI for the latest version.

pub mod build;
pub mod registry;
mod status;
pub mod store;

pub use status::{KitStatus, check_installed};

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// The kit files, as shipped.
const KITS: &[(&str, &str)] = &[
    (
        "claude-code",
        include_str!("../../../images/kits/claude-code.toml"),
    ),
    ("codex", include_str!("../../../images/kits/codex.toml")),
    ("gemini", include_str!("../../../images/kits/gemini.toml")),
    ("aider", include_str!("../../../images/kits/aider.toml")),
];

/// Where a kit's package comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Registry {
    /// The npm registry (`npm install --global --prefix`).
    Npm,
    /// PyPI (`pip install --target`, binary wheels only).
    Pypi,
}

impl fmt::Display for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Registry::Npm => "npm",
            Registry::Pypi => "pypi",
        })
    }
}

/// A package installed beside the kit's own (e.g. a newer Node).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Companion {
    /// Package name.
    pub package: String,
    /// Pinned version.
    pub version: String,
}

/// How a kit is installed.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Install {
    /// The registry.
    pub registry: Registry,
    /// Package name.
    pub package: String,
    /// Pinned version.
    pub version: String,
    /// npm: what the command runs, relative to the kit's directory.
    pub entry: Option<String>,
    /// npm: packages installed beside it.
    #[serde(default)]
    pub with: Vec<Companion>,
    /// Directories put first on the command's `PATH`, relative to the kit's directory.
    #[serde(default)]
    pub path: Vec<String>,
    /// PyPI: the module `python3 -m` runs.
    pub module: Option<String>,
}

/// One agent kit.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Kit {
    /// Kit name; also the image name that boots it (`--image claude-code`).
    pub name: String,
    /// One line for `airlock agent ls`.
    pub description: String,
    /// The command that runs the agent (`claude`); `airlock run -- CMD` picks the kit by it.
    pub command: String,
    /// The shipped policy profile it runs under.
    pub profile: String,
    /// Environment variables it reads its key from.
    pub key_env: Vec<String>,
    /// What it keeps in its home directory (relative paths), kept across runs.
    pub state: Vec<String>,
    /// Arguments that run it without a terminal; `{prompt}` stands for the task.
    pub headless: Vec<String>,
    /// How it is installed.
    pub install: Install,
    /// Environment defaults the wrapper sets when the caller has not.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

/// Why a kit file is unusable (a bug in the shipped data; caught by the tests).
#[derive(Debug, thiserror::Error)]
#[error("images/kits/{file}.toml: {message}")]
pub struct KitError {
    /// The kit file.
    pub file: String,
    /// What is wrong.
    pub message: String,
}

/// Where kits are installed in the guest.
pub const KITS_DIR: &str = "/opt/airlock/kits";

impl Kit {
    /// The command's path in the image.
    pub fn wrapper_path(&self) -> String {
        format!("/usr/local/bin/{}", self.command)
    }

    /// The kit's directory in the image.
    pub fn guest_dir(&self) -> String {
        format!("{KITS_DIR}/{}", self.name)
    }

    /// This kit installing `version` instead of the pinned one.
    pub fn at_version(&self, version: &str) -> Kit {
        let mut kit = self.clone();
        kit.install.version = version.to_string();
        kit
    }

    /// The file it was read from, as shipped.
    pub fn source_text(&self) -> &'static str {
        KITS.iter()
            .find(|(file, _)| *file == self.name)
            .map(|(_, text)| *text)
            .unwrap_or_default()
    }
}

/// Whether `p` is a relative path with no `..`, `.` or empty component.
fn plain_relative(p: &str) -> bool {
    !p.is_empty()
        && !p.starts_with('/')
        && p.split('/').all(|c| !c.is_empty() && c != "." && c != "..")
        && p.bytes()
            .all(|b| b.is_ascii_graphic() && !b"\"'`$\\".contains(&b))
}

fn parse(file: &str, text: &str) -> Result<Kit, KitError> {
    let err = |message: String| KitError {
        file: file.to_string(),
        message,
    };
    let kit: Kit = toml::from_str(text).map_err(|e| err(e.to_string()))?;
    if kit.name != file {
        return Err(err(format!("name {:?} is not the file's name", kit.name)));
    }
    let simple = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.@/".contains(&b))
    };
    if !simple(&kit.command) || kit.command.contains('/') {
        return Err(err(format!(
            "command {:?} is not a plain name",
            kit.command
        )));
    }
    for p in std::iter::once(&kit.install.package)
        .chain(kit.install.with.iter().map(|c| &c.package))
        .chain(std::iter::once(&kit.install.version))
        .chain(kit.install.with.iter().map(|c| &c.version))
    {
        if !simple(p) {
            return Err(err(format!("{p:?} is not a package name or version")));
        }
    }
    match kit.install.registry {
        Registry::Pypi if kit.install.module.as_deref().is_none_or(|m| !simple(m)) => {
            return Err(err("a PyPI kit names the module `python3 -m` runs".into()));
        }
        Registry::Npm
            if kit
                .install
                .entry
                .as_deref()
                .is_none_or(|e| !plain_relative(e)) =>
        {
            return Err(err(
                "an npm kit names its entry, a path relative to the kit's directory".into(),
            ));
        }
        _ => {}
    }
    if let Some(p) = kit.install.path.iter().find(|p| !plain_relative(p)) {
        return Err(err(format!(
            "path entry {p:?} is not relative to the kit's directory"
        )));
    }
    for (name, value) in &kit.env {
        let name_ok = name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_uppercase() || b == b'_')
            && name
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
        let value_ok = value
            .bytes()
            .all(|b| (b.is_ascii_graphic() || b == b' ') && !b"\"'`$\\".contains(&b));
        if !name_ok || !value_ok {
            return Err(err(format!(
                "env {name:?} = {value:?} is not a plain variable and value"
            )));
        }
    }
    if kit
        .state
        .iter()
        .any(|s| s.is_empty() || s.starts_with('/') || s.split('/').any(|c| c == ".."))
    {
        return Err(err("state paths are relative to the home directory".into()));
    }
    Ok(kit)
}

/// Every shipped kit.
pub fn all() -> Vec<Kit> {
    KITS.iter()
        .filter_map(|(file, text)| parse(file, text).ok())
        .collect()
}

/// The shipped kit named `name`.
pub fn get(name: &str) -> Option<Kit> {
    all().into_iter().find(|k| k.name == name)
}

/// The kit whose command is `command` (the last path component of it).
pub fn for_command(command: &str) -> Option<Kit> {
    let base = command.rsplit('/').next().unwrap_or(command);
    all().into_iter().find(|k| k.command == base)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shipped_kit_parses_and_names_what_it_needs() {
        for (file, text) in KITS {
            let kit = parse(file, text).unwrap_or_else(|e| panic!("{e}"));
            assert!(!kit.key_env.is_empty(), "{file}");
            assert!(!kit.state.is_empty(), "{file}");
            assert!(
                kit.headless.iter().any(|a| a.contains("{prompt}")),
                "{file}"
            );
        }
        assert_eq!(all().len(), KITS.len());
        assert_eq!(for_command("claude").unwrap().name, "claude-code");
        assert_eq!(for_command("/usr/local/bin/codex").unwrap().name, "codex");
        assert!(for_command("ls").is_none());
    }

    #[test]
    fn bad_kit_files_are_refused_with_the_reason() {
        let ok = KITS[0].1;
        let e = parse("other", ok).unwrap_err();
        assert!(e.message.contains("is not the file's name"), "{e}");
        let bad = ok.replace("command = \"claude\"", "command = \"../claude\"");
        assert!(parse("claude-code", &bad).is_err());
        let bad = ok.replace("version = \"", "version = \"1; rm -rf /\"\n#");
        assert!(parse("claude-code", &bad).is_err());
        let bad = format!("{ok}\nunknown = 1\n");
        assert!(parse("claude-code", &bad).is_err());
        let bad = ok.replace("entry = \"", "entry = \"../");
        let e = parse("claude-code", &bad).unwrap_err();
        assert!(e.message.contains("names its entry"), "{e}");
        let bad = ok.replace(
            "DISABLE_AUTOUPDATER = \"1\"",
            "DISABLE_AUTOUPDATER = \"$(id)\"",
        );
        let e = parse("claude-code", &bad).unwrap_err();
        assert!(e.message.contains("not a plain variable"), "{e}");
    }
}
