//! Built package layers in the cache, one entry per key (recipe and Debian build):
//!
//! ```text
//! <cache>/layers/<name>/
//!   <key>.lock           held while building that entry
//!   .build-<key>/        work dir of a running (or the last failed) build
//!   <key>/               layer.squashfs, manifest.json, build.log; never modified once renamed
//! ```
//!
//! [`super::build::ensure`] builds an entry on first use and [`open`] checks its layer against
//! the manifest (size and SHA-256) before a sandbox attaches it, like images and kits.

use super::Layer;
use crate::builds;
use crate::debian::OpenedImage;
use crate::debian::manifest::Artefact;
use crate::{Cache, ImageError, Tampered, hash_parts, io_err};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The layer artefact.
pub const LAYER: &str = "layer.squashfs";
/// The manifest file.
pub const MANIFEST: &str = "manifest.json";
/// Format version of a layer's `manifest.json`.
pub const MANIFEST_FORMAT: u32 = 1;
/// Bump when the build steps change: every layer is then built again.
const RECIPE: &str = "airlock-layer-v2";

/// What a layer build installed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LayerManifest {
    /// [`MANIFEST_FORMAT`] at write time.
    pub format: u32,
    /// Layer name.
    pub layer: String,
    /// Cache key: recipe, layer file and Debian build.
    pub key: String,
    /// The Debian image it was built over, and its build id.
    pub image: String,
    /// Build id of that image.
    pub image_build: String,
    /// SHA-256 of the layer file it was built from.
    pub recipe_sha256: String,
    /// Packages the layer installs or upgrades over the image, sorted by name.
    pub packages: Vec<LayerPackage>,
    /// Build completion time, RFC 3339 UTC.
    pub built_at: String,
    /// Build duration in seconds.
    pub build_secs: u64,
    /// The layer, with its hash.
    pub artefacts: Vec<Artefact>,
}

/// One package the layer adds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LayerPackage {
    /// Package name.
    pub name: String,
    /// Installed version.
    pub version: String,
    /// Architecture.
    pub architecture: String,
}

impl LayerManifest {
    /// Reads and parses `path`.
    pub fn read(path: &Path) -> Result<LayerManifest, ImageError> {
        let bad = |message: String| ImageError::BadInput {
            path: path.to_path_buf(),
            message,
        };
        let text =
            std::fs::read_to_string(path).map_err(io_err(format!("reading {}", path.display())))?;
        let m: LayerManifest = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        if m.format != MANIFEST_FORMAT {
            return Err(bad(format!(
                "manifest format {} is not {MANIFEST_FORMAT}; remove {} and airlock builds it again",
                m.format,
                path.parent().unwrap_or(path).display()
            )));
        }
        Ok(m)
    }
}

/// The cache key of `layer` over Debian build `image_build`.
pub fn key(layer: &Layer, image_build: &str) -> String {
    let full = hash_parts(&[
        RECIPE.as_bytes(),
        layer.source_text().as_bytes(),
        image_build.as_bytes(),
    ]);
    full.get(..16).unwrap_or(&full).to_string()
}

/// A layer checked against its manifest, ready to attach.
#[derive(Debug, Clone)]
pub struct OpenedLayer {
    /// Layer name.
    pub name: String,
    /// The squashfs, to attach read-only.
    pub layer: PathBuf,
    /// Its manifest.
    pub manifest: LayerManifest,
}

/// `<cache>/layers/<name>`, created if missing.
pub(super) fn layer_dir(cache: &Cache, name: &str) -> Result<PathBuf, ImageError> {
    let dir = cache.dir("layers")?.join(name);
    std::fs::create_dir_all(&dir).map_err(io_err(format!("creating {}", dir.display())))?;
    Ok(dir)
}

/// The checked entry of `layer` over `image`, or `None` when it is not built.
pub fn open(
    cache: &Cache,
    layer: &Layer,
    image: &OpenedImage,
) -> Result<Option<OpenedLayer>, ImageError> {
    let dir = cache.root().join("layers").join(&layer.name);
    open_entry(&dir.join(key(layer, &image.build_id)), layer)
}

/// The entry at `entry`, checked; `None` when it has no manifest.
pub(super) fn open_entry(entry: &Path, layer: &Layer) -> Result<Option<OpenedLayer>, ImageError> {
    let manifest = match LayerManifest::read(&entry.join(MANIFEST)) {
        Ok(m) => m,
        Err(ImageError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    let path = entry.join(LAYER);
    let tampered = |expected: String, actual: String| {
        ImageError::Tampered(Box::new(Tampered {
            what: format!("layer {} ({})", layer.name, manifest.key),
            path: path.clone(),
            expected,
            actual,
            remove: entry.to_path_buf(),
        }))
    };
    let Some(record) = manifest.artefacts.iter().find(|a| a.path == LAYER) else {
        return Err(tampered("(no entry in manifest.json)".into(), "-".into()));
    };
    builds::verify(&path, record)?.map_err(|(e, a)| tampered(e, a))?;
    Ok(Some(OpenedLayer {
        name: layer.name.clone(),
        layer: path,
        manifest,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(dir: &Path, key: &str) -> LayerManifest {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join(LAYER), b"squashfs bytes").unwrap();
        let m = LayerManifest {
            format: MANIFEST_FORMAT,
            layer: "docker".into(),
            key: key.into(),
            image: "debian".into(),
            image_build: "20261206T151122Z-1459e25e".into(),
            recipe_sha256: "r".into(),
            packages: vec![],
            built_at: "2026-12-07T00:00:00Z".into(),
            build_secs: 1,
            artefacts: vec![builds::record(&dir.join(LAYER), LAYER).unwrap()],
        };
        crate::write_json(&dir.join(MANIFEST), &m).unwrap();
        m
    }

    #[test]
    fn keys_follow_the_image_build() {
        let docker = super::super::get("docker").unwrap();
        let a = key(&docker, "20261206T151122Z-1459e25e");
        assert_eq!(a.len(), 16);
        assert_eq!(a, key(&docker, "20261206T151122Z-1459e25e"));
        assert_ne!(a, key(&docker, "20261207T000000Z-00000000"));
    }

    #[test]
    fn an_entry_is_checked_before_use() {
        let tmp = tempfile::tempdir().unwrap();
        let docker = super::super::get("docker").unwrap();
        let dir = tmp.path().join("k1");
        assert!(open_entry(&dir, &docker).unwrap().is_none());
        let m = entry(&dir, "k1");
        let opened = open_entry(&dir, &docker).unwrap().unwrap();
        assert_eq!(opened.manifest, m);
        assert_eq!(opened.layer, dir.join(LAYER));

        std::fs::write(dir.join(LAYER), b"squashfs bytez").unwrap();
        let e = open_entry(&dir, &docker).unwrap_err().to_string();
        assert!(e.starts_with("layer docker (k1) is corrupt: "), "{e}");
        assert!(e.contains(&m.artefacts[0].sha256), "{e}");

        let mut old = m.clone();
        old.format = 0;
        crate::write_json(&dir.join(MANIFEST), &old).unwrap();
        let e = open_entry(&dir, &docker).unwrap_err().to_string();
        assert!(e.contains("manifest format 0 is not 1"), "{e}");
    }
}
