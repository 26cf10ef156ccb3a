//! `manifest.json` of a built image: what went into it (suite, archives and their snapshot
//! dates, every installed package with the archive that supplied it, the kernel it boots with)
//! and the hash of each artefact. Written by the build, read by `open` (integrity), the patch
//! check and `airlock image ls`.

use crate::{ImageError, io_err};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Format version of `manifest.json`; bump on incompatible changes.
pub const MANIFEST_FORMAT: u32 = 1;

/// The manifest of one image build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageManifest {
    /// [`MANIFEST_FORMAT`] at write time.
    pub format: u32,
    /// Image name (`debian` by default).
    pub name: String,
    /// Recipe kind (`debian`).
    pub kind: String,
    /// Distribution suite, e.g. `bookworm`.
    pub suite: String,
    /// Build id: UTC time and a short hash of the rootfs, e.g. `20261127T051500Z-1a2b3c4d`.
    pub build_id: String,
    /// Build completion time, RFC 3339 UTC.
    pub built_at: String,
    /// Build duration in seconds.
    pub build_secs: u64,
    /// Archives the packages were installed from.
    pub archives: Vec<ArchiveRecord>,
    /// Every installed package, sorted by name.
    pub packages: Vec<PackageRecord>,
    /// The kernel built for booting this image.
    pub kernel: KernelRecord,
    /// Files of the build with their hashes.
    pub artefacts: Vec<Artefact>,
    /// For an imported OCI image (`kind` = `oci`): where it came from and its run config.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oci: Option<OciRecord>,
}

/// Where an imported OCI image came from, and how its commands run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OciRecord {
    /// The path imported.
    pub source: String,
    /// `oci-layout`, `oci-archive` or `docker-archive`.
    pub format: String,
    /// The ref name or repo tag chosen.
    pub reference: Option<String>,
    /// `sha256:...` of the manifest (OCI) or of the config (docker's image id).
    pub digest: String,
    /// The layers applied, bottom first.
    pub layers: Vec<OciLayer>,
    /// The image config's run settings.
    pub config: OciRunConfig,
    /// Device nodes left out (the guest has its own `/dev`).
    #[serde(default)]
    pub devices_skipped: u64,
}

/// One layer of an imported image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OciLayer {
    /// `sha256:...` of the layer file.
    pub digest: String,
    /// Its media type.
    pub media_type: String,
    /// Its size in bytes.
    pub size: u64,
}

/// The run settings of an OCI image config.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OciRunConfig {
    /// `Env`: `KEY=value` entries.
    #[serde(default)]
    pub env: Vec<String>,
    /// `WorkingDir`.
    #[serde(default)]
    pub working_dir: Option<String>,
    /// `User`: `name`, `uid`, `name:group` or `uid:gid`; `None` is root.
    #[serde(default)]
    pub user: Option<String>,
    /// `Entrypoint`.
    #[serde(default)]
    pub entrypoint: Vec<String>,
    /// `Cmd`.
    #[serde(default)]
    pub cmd: Vec<String>,
}

/// An archive (suite of a mirror) at build time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchiveRecord {
    /// Suite, e.g. `bookworm-security`.
    pub suite: String,
    /// Mirror base URL.
    pub url: String,
    /// The `Date:` of the suite's Release file that apt used (the snapshot time).
    pub date: String,
}

/// An installed package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackageRecord {
    /// Binary package name.
    pub name: String,
    /// Installed version.
    pub version: String,
    /// Architecture (`amd64` or `all`).
    pub architecture: String,
    /// Suite whose index offered exactly this version (the base suite first when several
    /// did); `None` when none did.
    pub archive: Option<String>,
}

/// The kernel the image boots with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KernelRecord {
    /// Kernel cache key.
    pub key: String,
    /// Source package and version, e.g. `linux-source-6.1 6.1.158-1`.
    pub source: String,
    /// `make kernelrelease`.
    pub release: String,
    /// SHA-256 of the kernel `.config`.
    pub config_sha256: String,
    /// SHA-256 of `vmlinux`.
    pub vmlinux_sha256: String,
}

impl KernelRecord {
    /// The record of a built kernel, for an image that boots with it.
    pub fn of(kernel: &crate::kernel::Kernel) -> KernelRecord {
        KernelRecord {
            key: kernel.key.clone(),
            source: kernel.manifest.source.clone(),
            release: kernel.manifest.release.clone(),
            config_sha256: kernel.manifest.config_sha256.clone(),
            vmlinux_sha256: kernel.manifest.vmlinux_sha256.clone(),
        }
    }

    /// The source package's version (after the package name in `source`).
    pub fn source_version(&self) -> Option<&str> {
        self.source
            .split_once(' ')
            .map(|(_, v)| v.trim())
            .filter(|v| !v.is_empty())
    }
}

/// One file of a build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Artefact {
    /// File name inside the build dir.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// Hex SHA-256.
    pub sha256: String,
}

impl ImageManifest {
    /// The artefact named `path`.
    pub fn artefact(&self, path: &str) -> Option<&Artefact> {
        self.artefacts.iter().find(|a| a.path == path)
    }

    /// Reads and parses `path`.
    pub fn read(path: &Path) -> Result<ImageManifest, ImageError> {
        let text =
            std::fs::read_to_string(path).map_err(io_err(format!("reading {}", path.display())))?;
        let m: ImageManifest = serde_json::from_str(&text).map_err(|e| ImageError::BadInput {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        if m.format != MANIFEST_FORMAT {
            return Err(ImageError::BadInput {
                path: path.to_path_buf(),
                message: format!(
                    "manifest format {} is not {MANIFEST_FORMAT}; rebuild the image",
                    m.format
                ),
            });
        }
        Ok(m)
    }

    /// Writes to `path` atomically, pretty-printed.
    pub fn write(&self, path: &Path) -> Result<(), ImageError> {
        crate::write_json(path, self)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A small manifest for tests elsewhere in this module tree.
    pub(crate) fn sample() -> ImageManifest {
        ImageManifest {
            format: MANIFEST_FORMAT,
            name: "debian".into(),
            kind: "debian".into(),
            suite: "bookworm".into(),
            build_id: "20261127T051500Z-1a2b3c4d".into(),
            built_at: "2026-11-27T05:15:00.000Z".into(),
            build_secs: 600,
            archives: vec![ArchiveRecord {
                suite: "bookworm".into(),
                url: "http://deb.debian.org/debian".into(),
                date: "Sat, 08 Nov 2026 09:00:00 UTC".into(),
            }],
            packages: vec![
                PackageRecord {
                    name: "git".into(),
                    version: "1:2.39.5-0+deb12u2".into(),
                    architecture: "amd64".into(),
                    archive: Some("bookworm".into()),
                },
                PackageRecord {
                    name: "tzdata".into(),
                    version: "2025b-0+deb12u1".into(),
                    architecture: "all".into(),
                    archive: Some("bookworm-updates".into()),
                },
                PackageRecord {
                    name: "libssl3".into(),
                    version: "3.0.17-1~deb12u2".into(),
                    architecture: "amd64".into(),
                    archive: Some("bookworm-security".into()),
                },
            ],
            kernel: KernelRecord {
                key: "77b55eb3b49cdac1".into(),
                source: "linux-source-6.1 6.1.158-1".into(),
                release: "6.1.158".into(),
                config_sha256: "c".repeat(64),
                vmlinux_sha256: "v".repeat(64),
            },
            artefacts: vec![Artefact {
                path: "rootfs.squashfs".into(),
                size: 4096,
                sha256: "a".repeat(64),
            }],
            oci: None,
        }
    }

    #[test]
    fn round_trips_through_json() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("manifest.json");
        let m = sample();
        m.write(&path).unwrap();
        assert_eq!(ImageManifest::read(&path).unwrap(), m);
        assert_eq!(m.kernel.source_version(), Some("6.1.158-1"));
        assert_eq!(m.artefact("rootfs.squashfs").map(|a| a.size), Some(4096));
    }

    #[test]
    fn rejects_unknown_fields_and_formats() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("manifest.json");
        let mut v = serde_json::to_value(sample()).unwrap();
        v["surprise"] = serde_json::json!(1);
        std::fs::write(&path, v.to_string()).unwrap();
        let err = ImageManifest::read(&path).unwrap_err().to_string();
        assert!(err.contains("unknown field `surprise`"), "{err}");

        let mut m = sample();
        m.format = 99;
        std::fs::write(&path, serde_json::to_string(&m).unwrap()).unwrap();
        let err = ImageManifest::read(&path).unwrap_err().to_string();
        assert!(err.contains("manifest format 99"), "{err}");
    }
}
