//! Package layers: Debian packages installed over the Debian image into a read-only squashfs
//! layer, mounted over the image in the guest when a policy names it in `sandbox.layers`.
//! One data file per layer in `images/layers/` (embedded at build time) lists the packages and
//! the files they must provide; `docker` is the one shipped.
//!
//! Data flow: the launch calls [`build::ensure`] for each layer the policy names. It opens the
//! current Debian build (verified), and looks the layer up by its key, the hash of the recipe
//! and that build id; a missing entry is built by [`build`] (apt in a chroot of an overlay
//! over the image, then `mksquashfs` of the overlay's upper directory, so the layer holds
//! exactly what the packages changed). The entry is then checked against its manifest before
//! the sandbox attaches it. A new Debian build gives new keys: layers follow the image.

pub mod build;
pub mod store;

use serde::Deserialize;

/// The layer files, as shipped.
const LAYERS: &[(&str, &str)] = &[("docker", include_str!("../../../images/layers/docker.toml"))];

/// Longest list of packages a layer installs.
const MAX_PACKAGES: usize = 64;

/// One package layer, as written in `images/layers/<name>.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Layer {
    /// Layer name, as `sandbox.layers` names it; also the file's name.
    pub name: String,
    /// One line for listings.
    pub description: String,
    /// Debian packages installed (with `--no-install-recommends`).
    pub packages: Vec<String>,
    /// Paths (relative to `/`) the installed layer must contain; checked after the install.
    pub provides: Vec<String>,
}

/// Why a layer file is unusable (a bug in the shipped data; caught by the tests).
#[derive(Debug, thiserror::Error)]
#[error("images/layers/{file}.toml: {message}")]
pub struct LayerError {
    /// The layer file.
    pub file: String,
    /// What is wrong.
    pub message: String,
}

impl Layer {
    /// The file it was read from, as shipped (part of the cache key).
    pub fn source_text(&self) -> &'static str {
        LAYERS
            .iter()
            .find(|(file, _)| *file == self.name)
            .map(|(_, text)| *text)
            .unwrap_or_default()
    }
}

/// Whether `name` is a Debian package name (policy manual 5.6.1).
fn package_name(name: &str) -> bool {
    name.len() >= 2
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+-.".contains(&b))
}

/// Whether `p` is a relative path with no `..`, `.` or empty component.
fn plain_relative(p: &str) -> bool {
    !p.is_empty()
        && !p.starts_with('/')
        && p.split('/').all(|c| !c.is_empty() && c != "." && c != "..")
        && p.bytes().all(|b| b.is_ascii_graphic())
}

fn parse(file: &str, text: &str) -> Result<Layer, LayerError> {
    let err = |message: String| LayerError {
        file: file.to_string(),
        message,
    };
    let layer: Layer = toml::from_str(text).map_err(|e| err(e.to_string()))?;
    if layer.name != file {
        return Err(err(format!("name {:?} is not the file's name", layer.name)));
    }
    if layer.packages.is_empty() || layer.packages.len() > MAX_PACKAGES {
        return Err(err(format!(
            "packages lists 1 to {MAX_PACKAGES} packages, found {}",
            layer.packages.len()
        )));
    }
    if let Some(p) = layer.packages.iter().find(|p| !package_name(p)) {
        return Err(err(format!("{p:?} is not a Debian package name")));
    }
    if layer.provides.is_empty() {
        return Err(err("provides names at least one path".into()));
    }
    if let Some(p) = layer.provides.iter().find(|p| !plain_relative(p)) {
        return Err(err(format!(
            "provides entry {p:?} is not a path relative to /"
        )));
    }
    Ok(layer)
}

/// Every shipped layer.
pub fn all() -> Vec<Layer> {
    LAYERS
        .iter()
        .filter_map(|(file, text)| parse(file, text).ok())
        .collect()
}

/// The shipped layer named `name`.
pub fn get(name: &str) -> Option<Layer> {
    all().into_iter().find(|l| l.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_layers_parse_and_are_the_ones_policies_may_name() {
        for (file, text) in LAYERS {
            parse(file, text).unwrap_or_else(|e| panic!("{e}"));
        }
        let names: Vec<String> = all().into_iter().map(|l| l.name).collect();
        assert_eq!(names, airlock_policy::LAYERS);
        let docker = get("docker").unwrap();
        assert_eq!(docker.packages, ["docker.io"]);
        assert!(docker.provides.contains(&"usr/sbin/dockerd".to_string()));
        assert!(get("podman").is_none());
    }

    #[test]
    fn bad_layer_files_are_refused_with_the_reason() {
        let ok = LAYERS[0].1;
        let cases = [
            ("other", ok.to_string(), "is not the file's name"),
            (
                "docker",
                ok.replace("[\"docker.io\"]", "[\"docker.io; rm -rf /\"]"),
                "\"docker.io; rm -rf /\" is not a Debian package name",
            ),
            (
                "docker",
                ok.replace("[\"docker.io\"]", "[]"),
                "packages lists 1 to 64 packages, found 0",
            ),
            (
                "docker",
                ok.replace("\"usr/bin/docker\"", "\"../usr/bin/docker\""),
                "provides entry \"../usr/bin/docker\" is not a path relative to /",
            ),
            (
                "docker",
                ok.replace("\"usr/bin/docker\"", "\"/usr/bin/docker\""),
                "provides entry \"/usr/bin/docker\" is not a path relative to /",
            ),
            (
                "docker",
                format!("{ok}\nextra = 1\n"),
                "unknown field `extra`",
            ),
        ];
        for (file, text, want) in cases {
            let e = parse(file, &text).unwrap_err();
            assert!(e.to_string().contains(want), "{e} lacks {want}");
        }
    }
}
