//! The patch check: compare an image's manifest with the archives' current `Packages` indices
//! and list what is outdated, marking updates that come from the security archive. A pure
//! function over already-fetched indices (`mirror.rs` fetches them), so it is tested on fixture
//! data; `airlock image check` prints the report and `doctor` reads the last one saved.

use super::debver;
use super::index::Index;
use super::manifest::{ArchiveRecord, ImageManifest};
use crate::kernel::SOURCE_PACKAGE;
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;

/// One archive's index as fetched for a check.
#[derive(Debug, Clone)]
pub struct ArchiveIndex {
    /// Suite, e.g. `bookworm-security`.
    pub suite: String,
    /// Mirror base URL.
    pub url: String,
    /// `Date:` of the suite's Release file, if it could be read.
    pub date: Option<String>,
    /// Whether this is the security archive.
    pub security: bool,
    /// The packages it offers.
    pub index: Index,
}

/// The result of a check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckReport {
    /// Image name.
    pub image: String,
    /// Build checked.
    pub build_id: String,
    /// When the check ran, RFC 3339 UTC.
    pub checked_at: String,
    /// Archives compared against, with their snapshot dates.
    pub archives: Vec<ArchiveRecord>,
    /// Outdated packages, sorted by name.
    pub updates: Vec<Update>,
    /// The guest kernel's source package.
    pub kernel: KernelStatus,
    /// Installed agent kits against their registries' latest versions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kits: Vec<crate::kit::KitStatus>,
}

/// A package with a newer version available.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Update {
    /// Package name.
    pub package: String,
    /// Architecture.
    pub architecture: String,
    /// Version in the image.
    pub installed: String,
    /// Newest version offered.
    pub available: String,
    /// Suite offering `available`.
    pub archive: String,
    /// Whether the security archive offers a newer version than the installed one.
    pub security: bool,
}

/// The kernel source package, installed (the version the image's kernel was built from) versus
/// available.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KernelStatus {
    /// Source package name (`linux-source-6.1`).
    pub package: String,
    /// Version the kernel was built from, if known.
    pub installed: Option<String>,
    /// Newer version offered, if any.
    pub available: Option<String>,
    /// Suite offering `available`.
    pub archive: Option<String>,
    /// Whether the newer version comes from the security archive.
    pub security: bool,
}

impl CheckReport {
    /// Updates from the security archive (kernel included).
    pub fn security_count(&self) -> usize {
        self.updates.iter().filter(|u| u.security).count() + usize::from(self.kernel.security)
    }

    /// All pending updates (kernel included).
    pub fn update_count(&self) -> usize {
        self.updates.len() + usize::from(self.kernel.available.is_some())
    }

    /// Whether security updates are pending.
    pub fn security_pending(&self) -> bool {
        self.security_count() > 0
    }

    /// Installed agent kits with a newer version on their registry.
    pub fn outdated_kits(&self) -> impl Iterator<Item = &crate::kit::KitStatus> {
        self.kits.iter().filter(|k| k.outdated())
    }

    /// A short status for tables: `current`, `3 updates`, `3 updates (1 security)`.
    pub fn summary(&self) -> String {
        match (self.update_count(), self.security_count()) {
            (0, _) => "current".into(),
            (1, 0) => "1 update".into(),
            (n, 0) => format!("{n} updates"),
            (1, _) => "1 update (security)".into(),
            (n, s) => format!("{n} updates ({s} security)"),
        }
    }
}

/// The newest version of `name` newer than `installed` across `archives`: (version, suite,
/// whether any security archive offers something newer than `installed`).
fn newest(
    archives: &[ArchiveIndex],
    name: &str,
    arch: &str,
    installed: &str,
) -> Option<(String, String, bool)> {
    let mut best: Option<(&str, &str)> = None;
    let mut security = false;
    for a in archives {
        for v in a.index.versions(name, arch) {
            if debver::compare(v, installed) != Ordering::Greater {
                continue;
            }
            security |= a.security;
            if best.is_none_or(|(b, _)| debver::compare(v, b) == Ordering::Greater) {
                best = Some((v, &a.suite));
            }
        }
    }
    best.map(|(v, s)| (v.to_string(), s.to_string(), security))
}

/// Compares `manifest` with `archives`. `kernel_source` is the installed version of the kernel
/// source package to compare (the image's kernel record when `None`).
pub fn check(
    manifest: &ImageManifest,
    kernel_source: Option<&str>,
    archives: &[ArchiveIndex],
    checked_at: String,
) -> CheckReport {
    let mut updates: Vec<Update> = manifest
        .packages
        .iter()
        .filter_map(|p| {
            let (available, archive, security) =
                newest(archives, &p.name, &p.architecture, &p.version)?;
            Some(Update {
                package: p.name.clone(),
                architecture: p.architecture.clone(),
                installed: p.version.clone(),
                available,
                archive,
                security,
            })
        })
        .collect();
    updates.sort_by(|a, b| a.package.cmp(&b.package));

    let installed = kernel_source
        .map(str::to_string)
        .or_else(|| manifest.kernel.source_version().map(str::to_string));
    let newer = installed
        .as_deref()
        .and_then(|v| newest(archives, SOURCE_PACKAGE, "all", v));
    let kernel = KernelStatus {
        package: SOURCE_PACKAGE.to_string(),
        installed,
        security: newer.as_ref().is_some_and(|(_, _, s)| *s),
        archive: newer.as_ref().map(|(_, a, _)| a.clone()),
        available: newer.map(|(v, _, _)| v),
    };
    CheckReport {
        image: manifest.name.clone(),
        build_id: manifest.build_id.clone(),
        checked_at,
        archives: archives
            .iter()
            .map(|a| ArchiveRecord {
                suite: a.suite.clone(),
                url: a.url.clone(),
                date: a.date.clone().unwrap_or_else(|| "unknown".into()),
            })
            .collect(),
        updates,
        kernel,
        kits: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::debian::manifest::tests::sample;

    fn archive(suite: &str, security: bool, packages: &str) -> ArchiveIndex {
        ArchiveIndex {
            suite: suite.into(),
            url: "http://mirror.test/debian".into(),
            date: Some("Thu, 26 Nov 2026 08:00:00 UTC".into()),
            security,
            index: Index::parse(packages).unwrap(),
        }
    }

    /// The archives as they were when `sample()` was built.
    fn as_built() -> Vec<ArchiveIndex> {
        vec![
            archive(
                "bookworm",
                false,
                "Package: git\nVersion: 1:2.39.5-0+deb12u2\nArchitecture: amd64\n\n\
                 Package: tzdata\nVersion: 2025a-0+deb12u1\nArchitecture: all\n\n\
                 Package: libssl3\nVersion: 3.0.16-1~deb12u1\nArchitecture: amd64\n\n\
                 Package: linux-source-6.1\nVersion: 6.1.158-1\nArchitecture: all\n",
            ),
            archive(
                "bookworm-updates",
                false,
                "Package: tzdata\nVersion: 2025b-0+deb12u1\nArchitecture: all\n",
            ),
            archive(
                "bookworm-security",
                true,
                "Package: libssl3\nVersion: 3.0.17-1~deb12u2\nArchitecture: amd64\n",
            ),
        ]
    }

    #[test]
    fn fresh_image_is_current() {
        let report = check(&sample(), None, &as_built(), "now".into());
        assert_eq!(report.updates, vec![]);
        assert_eq!(
            report.kernel,
            KernelStatus {
                package: "linux-source-6.1".into(),
                installed: Some("6.1.158-1".into()),
                available: None,
                archive: None,
                security: false,
            }
        );
        assert!(!report.security_pending());
        assert_eq!(report.summary(), "current");
        assert_eq!(report.archives.len(), 3);
        assert_eq!(report.build_id, "20261127T051500Z-1a2b3c4d");
    }

    #[test]
    fn lists_security_and_other_updates() {
        let mut archives = as_built();
        // A security fix for git and the kernel source, a point release of tzdata, and a
        // libssl3 version in the main suite that is older than what is installed.
        archives[2] = archive(
            "bookworm-security",
            true,
            "Package: libssl3\nVersion: 3.0.17-1~deb12u2\nArchitecture: amd64\n\n\
             Package: git\nVersion: 1:2.39.5-0+deb12u3\nArchitecture: amd64\n\n\
             Package: linux-source-6.1\nVersion: 6.1.159-1\nArchitecture: all\n",
        );
        archives[1] = archive(
            "bookworm-updates",
            false,
            "Package: tzdata\nVersion: 2025b-0+deb12u2\nArchitecture: all\n\n\
             Package: tzdata\nVersion: 2025b-0+deb12u1\nArchitecture: all\n",
        );
        let report = check(&sample(), None, &archives, "now".into());
        assert_eq!(
            report.updates,
            vec![
                Update {
                    package: "git".into(),
                    architecture: "amd64".into(),
                    installed: "1:2.39.5-0+deb12u2".into(),
                    available: "1:2.39.5-0+deb12u3".into(),
                    archive: "bookworm-security".into(),
                    security: true,
                },
                Update {
                    package: "tzdata".into(),
                    architecture: "all".into(),
                    installed: "2025b-0+deb12u1".into(),
                    available: "2025b-0+deb12u2".into(),
                    archive: "bookworm-updates".into(),
                    security: false,
                },
            ]
        );
        assert_eq!(report.kernel.available.as_deref(), Some("6.1.159-1"));
        assert!(report.kernel.security);
        assert_eq!(report.security_count(), 2);
        assert_eq!(report.summary(), "3 updates (2 security)");
    }

    #[test]
    fn non_security_updates_are_not_security_pending() {
        let mut archives = as_built();
        archives[0] = archive(
            "bookworm",
            false,
            "Package: git\nVersion: 1:2.39.6-0+deb12u1\nArchitecture: amd64\n",
        );
        let report = check(&sample(), Some("6.1.158-1"), &archives, "now".into());
        assert_eq!(report.updates.len(), 1);
        assert_eq!(report.updates[0].archive, "bookworm");
        assert!(!report.security_pending());
        assert_eq!(report.summary(), "1 update");
    }

    #[test]
    fn other_architectures_and_epochs_are_respected() {
        let mut archives = as_built();
        archives[0] = archive(
            "bookworm",
            false,
            // Same upstream without the epoch is older; i386 builds do not apply.
            "Package: git\nVersion: 2.50.0-1\nArchitecture: amd64\n\n\
             Package: libssl3\nVersion: 9.9.9-1\nArchitecture: i386\n",
        );
        let report = check(&sample(), None, &archives, "now".into());
        assert_eq!(report.updates, vec![]);
    }

    #[test]
    fn kernel_override_is_compared() {
        let report = check(&sample(), Some("6.1.150-1"), &as_built(), "now".into());
        assert_eq!(report.kernel.installed.as_deref(), Some("6.1.150-1"));
        assert_eq!(report.kernel.available.as_deref(), Some("6.1.158-1"));
        assert_eq!(report.kernel.archive.as_deref(), Some("bookworm"));
        assert!(!report.kernel.security);
        assert_eq!(report.summary(), "1 update");
    }
}
