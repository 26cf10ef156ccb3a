//! Built kit layers in the cache, laid out like images (see [`crate::builds`]):
//!
//! ```text
//! <cache>/kits/<name>/
//!   current              the current build id
//!   build.lock           held while installing or collecting garbage
//!   .build/              work dir of a running (or the last failed) install
//!   <build-id>/          layer.squashfs, manifest.json, build.log, in-use.lock
//! ```
//!
//! [`open`] checks the layer against its manifest (size and SHA-256) before a sandbox attaches
//! it, and holds the build in use until the sandbox ends.

use super::{Kit, Registry};
use crate::builds::{self, GcReport, lock_in_use};
use crate::debian::manifest::Artefact;
use crate::{Cache, ImageError, Tampered, io_err};
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::path::{Path, PathBuf};

/// The layer artefact.
pub const LAYER: &str = "layer.squashfs";
/// The manifest file.
pub const MANIFEST: &str = "manifest.json";
/// Format version of a kit's `manifest.json`.
pub const MANIFEST_FORMAT: u32 = 1;

/// What a kit build installed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KitManifest {
    /// [`MANIFEST_FORMAT`] at write time.
    pub format: u32,
    /// Kit name.
    pub kit: String,
    /// The command it provides.
    pub command: String,
    /// Where the package came from.
    pub registry: Registry,
    /// The package.
    pub package: String,
    /// Its installed version.
    pub version: String,
    /// The registry's integrity hash of the package: npm's `dist.integrity` (`sha512-…`) or
    /// PyPI's SHA-256 of the wheel (`sha256-…`, hex).
    pub integrity: String,
    /// Every package installed, with its registry integrity hash.
    pub packages: Vec<KitPackage>,
    /// SHA-256 of the kit file the layer was built from.
    pub recipe_sha256: String,
    /// Build id: UTC time and a short hash of the layer.
    pub build_id: String,
    /// Build completion time, RFC 3339 UTC.
    pub built_at: String,
    /// Build duration in seconds.
    pub build_secs: u64,
    /// The layer, with its hash.
    pub artefacts: Vec<Artefact>,
}

/// One installed package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KitPackage {
    /// Package name.
    pub name: String,
    /// Version.
    pub version: String,
    /// The registry's integrity hash.
    pub integrity: String,
}

impl KitManifest {
    /// Reads and parses `path`.
    pub fn read(path: &Path) -> Result<KitManifest, ImageError> {
        let bad = |message: String| ImageError::BadInput {
            path: path.to_path_buf(),
            message,
        };
        let text =
            std::fs::read_to_string(path).map_err(io_err(format!("reading {}", path.display())))?;
        let m: KitManifest = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        if m.format != MANIFEST_FORMAT {
            return Err(bad(format!(
                "manifest format {} is not {MANIFEST_FORMAT}; install the kit again",
                m.format
            )));
        }
        Ok(m)
    }

    /// Writes to `path` atomically, pretty-printed.
    pub fn write(&self, path: &Path) -> Result<(), ImageError> {
        crate::write_json(path, self)
    }
}

/// `<cache>/kits/<name>`, created if missing.
pub fn kit_dir(cache: &Cache, name: &str) -> Result<PathBuf, ImageError> {
    let dir = cache.dir("kits")?.join(name);
    std::fs::create_dir_all(&dir).map_err(io_err(format!("creating {}", dir.display())))?;
    Ok(dir)
}

/// The current build of kit `name` and its manifest, if one is installed.
pub fn current(cache: &Cache, name: &str) -> Result<Option<(PathBuf, KitManifest)>, ImageError> {
    let dir = cache.root().join("kits").join(name);
    let Some(id) = builds::read_current(&dir)? else {
        return Ok(None);
    };
    let build = dir.join(id);
    match KitManifest::read(&build.join(MANIFEST)) {
        Ok(m) => Ok(Some((build, m))),
        // Removed by hand (as a corrupt layer's error suggests): install again.
        Err(ImageError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// A kit layer opened for a sandbox: verified and held in use until dropped.
#[derive(Debug)]
pub struct OpenedKit {
    /// Kit name.
    pub name: String,
    /// Build id.
    pub build_id: String,
    /// The squashfs layer, to attach read-only.
    pub layer: PathBuf,
    /// Its manifest.
    pub manifest: KitManifest,
    _in_use: Flock<File>,
}

/// Opens the current build of `kit`: takes the shared in-use lock, then checks the layer
/// against the manifest. [`ImageError::KitNotInstalled`] when there is none.
pub fn open(cache: &Cache, kit: &Kit) -> Result<OpenedKit, ImageError> {
    for _ in 0..3 {
        let Some((dir, manifest)) = current(cache, &kit.name)? else {
            return Err(ImageError::KitNotInstalled {
                name: kit.name.clone(),
            });
        };
        let Some(lock) = lock_in_use(&dir, FlockArg::LockShared)? else {
            continue;
        };
        if !dir.join(MANIFEST).exists() {
            continue;
        }
        let layer = dir.join(LAYER);
        let tampered = |expected: String, actual: String| {
            ImageError::Tampered(Box::new(Tampered {
                what: format!("agent kit {} (build {})", kit.name, manifest.build_id),
                path: layer.clone(),
                expected,
                actual,
                remove: dir.clone(),
            }))
        };
        let Some(record) = manifest.artefacts.iter().find(|a| a.path == LAYER) else {
            return Err(tampered("(no entry in manifest.json)".into(), "-".into()));
        };
        builds::verify(&layer, record)?.map_err(|(e, a)| tampered(e, a))?;
        return Ok(OpenedKit {
            name: kit.name.clone(),
            build_id: manifest.build_id.clone(),
            layer,
            manifest,
            _in_use: lock,
        });
    }
    Err(ImageError::BadInput {
        path: cache.root().join("kits").join(&kit.name),
        message: "the current build kept changing while opening it; try again".into(),
    })
}

/// Removes every build of kit `name` except the current one and those in use.
pub fn gc(cache: &Cache, name: &str) -> Result<GcReport, ImageError> {
    builds::gc(&kit_dir(cache, name)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(layer: &Path, id: &str) -> KitManifest {
        KitManifest {
            format: MANIFEST_FORMAT,
            kit: "codex".into(),
            command: "codex".into(),
            registry: Registry::Npm,
            package: "@openai/codex".into(),
            version: "1.0.0".into(),
            integrity: "sha512-x".into(),
            packages: vec![],
            recipe_sha256: "r".into(),
            build_id: id.into(),
            built_at: "2026-12-06T00:00:00Z".into(),
            build_secs: 1,
            artefacts: vec![builds::record(layer, LAYER).unwrap()],
        }
    }

    #[test]
    fn open_checks_the_layer_and_gc_keeps_what_is_in_use() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = Cache::at(tmp.path());
        let kit = super::super::get("codex").unwrap();
        let e = open(&cache, &kit).unwrap_err();
        assert!(matches!(e, ImageError::KitNotInstalled { .. }), "{e}");

        let dir = kit_dir(&cache, "codex").unwrap();
        for id in ["b1", "b2"] {
            let b = dir.join(id);
            std::fs::create_dir_all(&b).unwrap();
            std::fs::write(b.join(LAYER), format!("layer {id}")).unwrap();
            manifest(&b.join(LAYER), id)
                .write(&b.join(MANIFEST))
                .unwrap();
        }
        builds::set_current(&dir, "b1").unwrap();
        let opened = open(&cache, &kit).unwrap();
        assert_eq!(opened.build_id, "b1");
        builds::set_current(&dir, "b2").unwrap();
        // b1 is held by `opened`, so it stays.
        let report = gc(&cache, "codex").unwrap();
        assert_eq!(report.in_use, vec!["b1".to_string()]);
        drop(opened);
        assert_eq!(gc(&cache, "codex").unwrap().removed, vec!["b1".to_string()]);

        std::fs::write(dir.join("b2").join(LAYER), "layer b3").unwrap();
        let e = open(&cache, &kit).unwrap_err();
        assert!(
            e.to_string()
                .contains("agent kit codex (build b2) is corrupt"),
            "{e}"
        );
        std::fs::remove_dir_all(dir.join("b2")).unwrap();
        assert!(matches!(
            open(&cache, &kit).unwrap_err(),
            ImageError::KitNotInstalled { .. }
        ));
    }
}
