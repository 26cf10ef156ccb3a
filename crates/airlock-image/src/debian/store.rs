//! The on-disk layout of built images, and everything that reads it: `open` (with the in-use
//! lock and the integrity check), listing, garbage collection, the last check report and the
//! doctor's findings.
//!
//! ```text
//! <cache>/images/<name>/
//!   current              the current build id (replaced atomically)
//!   build.lock           held exclusively while building or collecting garbage
//!   check.json           the last `airlock image check` report
//!   .build/              work dir of a running (or the last failed) build
//!   <build-id>/          one finished build, never changed after it is renamed into place
//!     rootfs.squashfs
//!     manifest.json
//!     build.log
//!     in-use.lock        shared flock held by every sandbox using this build
//! ```
//!
//! A sandbox holds a shared lock on its build's `in-use.lock` for as long as it runs; garbage
//! collection removes a non-current build only when it can take that lock exclusively without
//! waiting, and renames the dir away while holding it, so `open` (which re-checks the dir after
//! locking) never returns a build that is being deleted.

use super::manifest::ImageManifest;
use super::patch::CheckReport;
pub use crate::builds::GcReport;
use crate::builds::{self, is_build_id, lock_in_use, sorted_dirs};
use crate::{Cache, ImageError, io_err, write_atomic};
use nix::fcntl::{Flock, FlockArg};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// The default image name and recipe kind.
pub const DEFAULT_NAME: &str = "debian";
/// The root filesystem artefact.
pub const ROOTFS: &str = "rootfs.squashfs";
/// The manifest file.
pub const MANIFEST: &str = "manifest.json";
pub use crate::builds::IN_USE;
/// Age after which doctor suggests an update.
pub const STALE_AFTER: Duration = Duration::from_secs(14 * 24 * 3600);
/// Longest accepted image name.
const MAX_NAME: usize = 64;

/// Checks an image name: lowercase letters, digits, `-`, `_`, `.`, starting with a letter or
/// digit; `tiny` is the built-in initramfs.
pub fn validate_name(name: &str) -> Result<(), ImageError> {
    let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c);
    let first_ok = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if name.len() > MAX_NAME || !first_ok || !name.chars().all(ok_char) || name == "tiny" {
        return Err(ImageError::BadName {
            name: name.to_string(),
        });
    }
    Ok(())
}

/// `<cache>/images/<name>`, created if missing.
pub fn image_dir(cache: &Cache, name: &str) -> Result<PathBuf, ImageError> {
    validate_name(name)?;
    let dir = cache.dir("images")?.join(name);
    std::fs::create_dir_all(&dir).map_err(io_err(format!("creating {}", dir.display())))?;
    Ok(dir)
}

/// `<cache>/images/<name>` without creating anything.
fn image_path(cache: &Cache, name: &str) -> Result<PathBuf, ImageError> {
    validate_name(name)?;
    Ok(cache.root().join("images").join(name))
}

/// The current build id of `name`, if one is built.
pub fn current_build(cache: &Cache, name: &str) -> Result<Option<String>, ImageError> {
    builds::read_current(&image_path(cache, name)?)
}

/// An image opened for a sandbox: verified against its manifest and held in use (garbage
/// collection leaves it alone) until dropped.
#[derive(Debug)]
pub struct OpenedImage {
    /// Image name.
    pub name: String,
    /// Build id.
    pub build_id: String,
    /// The squashfs root filesystem, to attach read-only.
    pub rootfs: PathBuf,
    /// The build's manifest.
    pub manifest: ImageManifest,
    _in_use: Flock<File>,
}

/// Opens the current build of `name`: takes the shared in-use lock, then checks the rootfs
/// against the manifest's size and SHA-256 (streamed; about a second per few hundred MB).
pub fn open(cache: &Cache, name: &str) -> Result<OpenedImage, ImageError> {
    // A build can be collected between reading `current` and locking it only if another build
    // became current meanwhile; then reading `current` again finds that one.
    for _ in 0..3 {
        let Some(build_id) = current_build(cache, name)? else {
            return Err(ImageError::NotBuilt {
                name: name.to_string(),
            });
        };
        let dir = image_path(cache, name)?.join(&build_id);
        let Some(lock) = lock_in_use(&dir, FlockArg::LockShared)? else {
            continue;
        };
        // Garbage collection renames a build away before deleting it; a build still under its
        // own name after we hold the shared lock stays until we drop it.
        if !dir.join(MANIFEST).exists() {
            continue;
        }
        let manifest = ImageManifest::read(&dir.join(MANIFEST))?;
        let rootfs = dir.join(ROOTFS);
        verify(name, &build_id, &rootfs, &manifest)?;
        return Ok(OpenedImage {
            name: name.to_string(),
            build_id,
            rootfs,
            manifest,
            _in_use: lock,
        });
    }
    Err(ImageError::BadInput {
        path: image_path(cache, name)?,
        message: "the current build kept changing while opening it; try again".into(),
    })
}

/// Checks `rootfs` against the manifest's record of it.
fn verify(
    name: &str,
    build_id: &str,
    rootfs: &Path,
    manifest: &ImageManifest,
) -> Result<(), ImageError> {
    let integrity = |expected: &str, actual: String| ImageError::Integrity {
        name: name.to_string(),
        build_id: build_id.to_string(),
        path: rootfs.to_path_buf(),
        expected: expected.to_string(),
        actual,
    };
    let Some(record) = manifest.artefact(ROOTFS) else {
        return Err(integrity("(no entry in manifest.json)", "-".into()));
    };
    builds::verify(rootfs, record)?.map_err(|(expected, actual)| integrity(&expected, actual))
}

/// One build found in the cache.
#[derive(Debug, Clone)]
pub struct BuildInfo {
    /// Image name.
    pub name: String,
    /// Build id.
    pub build_id: String,
    /// Whether it is the current build.
    pub current: bool,
    /// Its manifest, or why it could not be read (shared: the info is cloned for reports).
    pub manifest: Result<ImageManifest, std::sync::Arc<ImageError>>,
    /// Size of the rootfs in bytes.
    pub size: u64,
    /// Time since it was built.
    pub age: Option<Duration>,
    /// The last check of this build, if any.
    pub check: Option<CheckReport>,
}

/// Every build of every image in the cache, by name then build id.
pub fn list(cache: &Cache) -> Result<Vec<BuildInfo>, ImageError> {
    let images = cache.root().join("images");
    let mut out = Vec::new();
    for name in sorted_dirs(&images)? {
        if validate_name(&name).is_err() {
            continue;
        }
        let dir = images.join(&name);
        let current = current_build(cache, &name).ok().flatten();
        let check = last_report(cache, &name);
        for build_id in sorted_dirs(&dir)? {
            if !is_build_id(&build_id) {
                continue;
            }
            let bdir = dir.join(&build_id);
            let manifest = ImageManifest::read(&bdir.join(MANIFEST)).map_err(std::sync::Arc::new);
            let age = manifest.as_ref().ok().and_then(|m| age_of(&m.built_at));
            out.push(BuildInfo {
                current: current.as_deref() == Some(build_id.as_str()),
                size: std::fs::metadata(bdir.join(ROOTFS)).map_or(0, |m| m.len()),
                check: check.clone().filter(|c| c.build_id == build_id),
                name: name.clone(),
                build_id,
                manifest,
                age,
            });
        }
    }
    Ok(out)
}

/// Names of the subdirectories of `dir` (none if it does not exist), hidden ones skipped.
/// Time elapsed since an RFC 3339 timestamp.
pub fn age_of(rfc3339: &str) -> Option<Duration> {
    let t: airlock_audit::Timestamp = rfc3339.parse().ok()?;
    SystemTime::now()
        .duration_since(t.to_system_time())
        .ok()
        .or(Some(Duration::ZERO))
}

/// Removes every build of `name` except the current one and those a sandbox holds open.
pub fn gc(cache: &Cache, name: &str) -> Result<GcReport, ImageError> {
    builds::gc(&image_dir(cache, name)?)
}

/// Saves a check report as the image's last check.
pub fn save_report(cache: &Cache, report: &CheckReport) -> Result<(), ImageError> {
    let path = image_dir(cache, &report.image)?.join("check.json");
    let json = serde_json::to_string_pretty(report).map_err(|e| ImageError::BadInput {
        path: path.clone(),
        message: e.to_string(),
    })?;
    write_atomic(&path, json.as_bytes())
}

/// The image's last saved check report, if any (unreadable reports count as none).
pub fn last_report(cache: &Cache, name: &str) -> Option<CheckReport> {
    let path = image_path(cache, name).ok()?.join("check.json");
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

/// Warnings for `airlock doctor` about the default image: older than [`STALE_AFTER`], or the
/// last check of the current build found security updates. Empty when fine or not built.
pub fn doctor_findings(cache: &Cache) -> Vec<String> {
    findings(cache, DEFAULT_NAME)
}

fn findings(cache: &Cache, name: &str) -> Vec<String> {
    let build_id = match current_build(cache, name) {
        Ok(Some(id)) => id,
        Ok(None) => return Vec::new(),
        Err(e) => return vec![format!("image {name}: {e}")],
    };
    let Ok(dir) = image_path(cache, name) else {
        return Vec::new();
    };
    let manifest = match ImageManifest::read(&dir.join(&build_id).join(MANIFEST)) {
        Ok(m) => m,
        Err(e) => {
            return vec![format!(
                "image {name} (build {build_id}): {e}; rebuild it with `airlock image build \
                 --kind debian --name {name}`"
            )];
        }
    };
    let mut out = Vec::new();
    if let Some(age) = age_of(&manifest.built_at).filter(|a| *a > STALE_AFTER) {
        out.push(format!(
            "image {name} was built {} days ago (build {build_id}); run `airlock image update {name}` \
             for current security updates",
            age.as_secs() / 86_400
        ));
    }
    if let Some(report) =
        last_report(cache, name).filter(|r| r.build_id == build_id && r.security_pending())
    {
        out.push(format!(
            "image {name}: {} security update(s) pending (checked {}); run `airlock image update \
             {name}`",
            report.security_count(),
            report.checked_at
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builds::set_current;
    use crate::debian::manifest::tests::sample;
    use crate::debian::manifest::{Artefact, MANIFEST_FORMAT};
    use crate::debian::patch::{KernelStatus, Update};
    use crate::sha256_file;

    /// Installs a fake build with a rootfs of `content` and returns its dir.
    fn fake_build(cache: &Cache, name: &str, build_id: &str, content: &[u8]) -> PathBuf {
        let dir = image_dir(cache, name).unwrap().join(build_id);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(ROOTFS), content).unwrap();
        let mut m = sample();
        m.format = MANIFEST_FORMAT;
        m.name = name.into();
        m.build_id = build_id.into();
        m.built_at = airlock_audit::Timestamp::now().to_string();
        m.artefacts = vec![Artefact {
            path: ROOTFS.into(),
            size: content.len() as u64,
            sha256: sha256_file(&dir.join(ROOTFS)).unwrap(),
        }];
        m.write(&dir.join(MANIFEST)).unwrap();
        dir
    }

    #[test]
    fn names_are_checked() {
        for ok in ["debian", "dev-2", "a.b_c"] {
            validate_name(ok).unwrap();
        }
        for bad in [
            "",
            "Debian",
            "../x",
            "a/b",
            "-x",
            ".hidden",
            "tiny",
            &"x".repeat(65),
        ] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn open_verifies_and_reports_tampering() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = Cache::at(tmp.path());
        assert!(matches!(
            open(&cache, "debian"),
            Err(ImageError::NotBuilt { .. })
        ));
        let dir = fake_build(&cache, "debian", "b1", b"squashfs bytes");
        set_current(&image_dir(&cache, "debian").unwrap(), "b1").unwrap();
        let img = open(&cache, "debian").unwrap();
        assert_eq!((img.name.as_str(), img.build_id.as_str()), ("debian", "b1"));
        assert_eq!(img.rootfs, dir.join(ROOTFS));
        assert_eq!(img.manifest.build_id, "b1");
        drop(img);

        // Same size, one byte flipped.
        std::fs::write(dir.join(ROOTFS), b"squashfs bytez").unwrap();
        let err = open(&cache, "debian").unwrap_err().to_string();
        assert!(err.contains("image debian"), "{err}");
        assert!(err.contains("build b1"), "{err}");
        assert!(
            err.contains(&dir.join(ROOTFS).display().to_string()),
            "{err}"
        );
        assert!(err.contains("airlock image build --kind debian"), "{err}");

        // Different size.
        std::fs::write(dir.join(ROOTFS), b"short").unwrap();
        let err = open(&cache, "debian").unwrap_err().to_string();
        assert!(err.contains("a file of 5 bytes"), "{err}");
    }

    #[test]
    fn current_must_name_a_build_id() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = Cache::at(tmp.path());
        let dir = image_dir(&cache, "debian").unwrap();
        std::fs::write(dir.join("current"), "../../etc\n").unwrap();
        assert!(current_build(&cache, "debian").is_err());
    }

    #[test]
    fn gc_keeps_current_and_builds_in_use() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = Cache::at(tmp.path());
        let idir = image_dir(&cache, "debian").unwrap();
        fake_build(&cache, "debian", "old1", b"one");
        fake_build(&cache, "debian", "old2", b"two");
        fake_build(&cache, "debian", "new", b"three");

        // A sandbox opened old2 while it was current.
        set_current(&idir, "old2").unwrap();
        let in_use = open(&cache, "debian").unwrap();
        set_current(&idir, "new").unwrap();

        let report = gc(&cache, "debian").unwrap();
        assert_eq!(
            report,
            GcReport {
                removed: vec!["old1".into()],
                in_use: vec!["old2".into()],
            }
        );
        assert!(!idir.join("old1").exists());
        assert!(idir.join("old2").join(ROOTFS).exists());
        assert!(idir.join("new").join(ROOTFS).exists());

        // Once the sandbox is gone, the next collection removes it.
        drop(in_use);
        let report = gc(&cache, "debian").unwrap();
        assert_eq!(report.removed, vec!["old2".to_string()]);
        assert_eq!(
            sorted_dirs(&idir).unwrap(),
            vec!["new".to_string()],
            "only the current build is left"
        );
        assert_eq!(open(&cache, "debian").unwrap().build_id, "new");
    }

    #[test]
    fn list_and_doctor_findings() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = Cache::at(tmp.path());
        assert_eq!(doctor_findings(&cache), Vec::<String>::new());
        let idir = image_dir(&cache, "debian").unwrap();
        fake_build(&cache, "debian", "b1", b"one");
        set_current(&idir, "b1").unwrap();
        assert_eq!(doctor_findings(&cache), Vec::<String>::new());

        let builds = list(&cache).unwrap();
        assert_eq!(builds.len(), 1);
        assert!(builds[0].current && builds[0].check.is_none() && builds[0].size == 3);

        let report = CheckReport {
            image: "debian".into(),
            build_id: "b1".into(),
            checked_at: "2026-11-27T06:00:00.000Z".into(),
            archives: vec![],
            updates: vec![Update {
                package: "libssl3".into(),
                architecture: "amd64".into(),
                installed: "1".into(),
                available: "2".into(),
                archive: "bookworm-security".into(),
                security: true,
            }],
            kernel: KernelStatus {
                package: "linux-source-6.1".into(),
                installed: None,
                available: None,
                archive: None,
                security: false,
            },
            kits: vec![],
        };
        save_report(&cache, &report).unwrap();
        assert_eq!(last_report(&cache, "debian"), Some(report));
        let found = doctor_findings(&cache);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].contains("1 security update(s) pending"),
            "{found:?}"
        );
        assert_eq!(
            list(&cache).unwrap()[0]
                .check
                .as_ref()
                .map(CheckReport::summary),
            Some("1 update (security)".into())
        );

        // An old build.
        let mut m = ImageManifest::read(&idir.join("b1").join(MANIFEST)).unwrap();
        m.built_at = "2020-01-01T00:00:00.000Z".into();
        m.write(&idir.join("b1").join(MANIFEST)).unwrap();
        let found = doctor_findings(&cache);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].contains("days ago"), "{found:?}");
    }
}
