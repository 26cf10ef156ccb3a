//! What a build records about itself: every installed package with the archive that offered
//! its version and each archive's Release date (read from apt's lists and dpkg's status
//! database before the lists are deleted), and the manifest that names the build
//! (`<time>Z-<hash>`), its kernel and the rootfs hash. Called by [`Builder::run`]; the
//! manifest is what `image open` verifies and `image check` compares with the archives.

use std::path::{Path, PathBuf};
use std::time::Instant;

use super::Builder;
use crate::debian::index::{Index, parse_status, release_date};
use crate::debian::manifest::{
    ArchiveRecord, Artefact, ImageManifest, KernelRecord, MANIFEST_FORMAT, PackageRecord,
};
use crate::debian::mirror::{Archive, SUITE};
use crate::debian::store::{MANIFEST, ROOTFS};
use crate::{ImageError, io_err, kernel, sha256_file};

impl Builder<'_> {
    /// The archives' Release dates and every installed package with the archive that offered
    /// its version, from apt's lists and dpkg's status database in the tree.
    pub(super) fn inventory(
        &self,
        archives: &[Archive],
    ) -> Result<(Vec<ArchiveRecord>, Vec<PackageRecord>), ImageError> {
        let lists = self.root.join("var/lib/apt/lists");
        let mut records = Vec::new();
        let mut indices: Vec<(String, Index)> = Vec::new();
        for a in archives {
            let release = find_list(&lists, &format!("_dists_{}_InRelease", a.suite))
                .or_else(|| find_list(&lists, &format!("_dists_{}_Release", a.suite)));
            let date = release
                .and_then(|p| std::fs::read_to_string(p).ok())
                .and_then(|t| release_date(&t))
                .unwrap_or_else(|| "unknown".into());
            records.push(ArchiveRecord {
                suite: a.suite.clone(),
                url: a.url.clone(),
                date,
            });
            let suffix = format!("_dists_{}_main_binary-amd64_Packages", a.suite);
            let path = find_list(&lists, &suffix).ok_or_else(|| ImageError::BadInput {
                path: lists.clone(),
                message: format!("apt fetched no index ending in {suffix}"),
            })?;
            let text = std::fs::read_to_string(&path)
                .map_err(io_err(format!("reading {}", path.display())))?;
            let index = Index::parse(&text).map_err(|e| ImageError::BadInput {
                path: path.clone(),
                message: e.to_string(),
            })?;
            indices.push((a.suite.clone(), index));
        }
        let status_path = self.root.join("var/lib/dpkg/status");
        let status = std::fs::read_to_string(&status_path)
            .map_err(io_err(format!("reading {}", status_path.display())))?;
        let installed = parse_status(&status).map_err(|e| ImageError::BadInput {
            path: status_path.clone(),
            message: e.to_string(),
        })?;
        let packages = installed
            .into_iter()
            .map(|p| PackageRecord {
                archive: indices
                    .iter()
                    .find(|(_, idx)| idx.has(&p.name, &p.version, &p.architecture))
                    .map(|(suite, _)| suite.clone()),
                name: p.name,
                version: p.version,
                architecture: p.architecture,
            })
            .collect();
        Ok((records, packages))
    }

    /// Hashes the packed rootfs and writes the manifest into the output dir.
    pub(super) fn write_manifest(
        &self,
        kernel: &kernel::Kernel,
        started: Instant,
        archive_records: Vec<ArchiveRecord>,
        packages: Vec<PackageRecord>,
        rootfs: &Path,
    ) -> Result<ImageManifest, ImageError> {
        let sha256 = sha256_file(rootfs)?;
        let size = std::fs::metadata(rootfs)
            .map_err(io_err(format!("reading {}", rootfs.display())))?
            .len();
        let now = airlock_audit::Timestamp::now();
        let manifest = ImageManifest {
            format: MANIFEST_FORMAT,
            name: self.opts.name.clone(),
            kind: "debian".into(),
            suite: SUITE.into(),
            build_id: crate::builds::build_id(&now.to_string(), &sha256),
            built_at: now.to_string(),
            build_secs: started.elapsed().as_secs(),
            archives: archive_records,
            packages,
            kernel: KernelRecord::of(kernel),
            artefacts: vec![Artefact {
                path: ROOTFS.into(),
                size,
                sha256,
            }],
            oci: None,
        };
        manifest.write(&self.out.join(MANIFEST))?;
        Ok(manifest)
    }
}

/// The file in apt's lists dir whose name ends with `suffix`.
fn find_list(lists: &Path, suffix: &str) -> Option<PathBuf> {
    std::fs::read_dir(lists)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().ends_with(suffix))
        })
}
