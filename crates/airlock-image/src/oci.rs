//! `airlock image import`: an OCI image (layout directory, OCI archive or `docker save`
//! archive) becomes an airlock image. Its layers are applied in order with whiteouts
//! ([`unpack`]) into a tree that is packed as a squashfs, stored and checked like a built Debian
//! image (`images/<name>/<build-id>/`, `current`, manifest with the artefact's hash), so
//! `airlock run --image oci:NAME` boots it with airlock's own kernel and guest agent. airlock
//! adds nothing to the image's files: the agent comes from the initramfs and the workspace and
//! other mount points are made on the writable layer at boot.
//!
//! The image's config (`Env`, `WorkingDir`, `User`, `Entrypoint` + `Cmd`) is kept in the
//! manifest ([`OciRecord`]) and applied to each command by the supervisor.

mod compression;
mod error;
pub mod source;
pub mod unpack;

pub use compression::is_compressed;
use compression::layer_reader;
pub use error::OciError;

use crate::debian::manifest::{
    Artefact, ImageManifest, KernelRecord, MANIFEST_FORMAT, OciLayer, OciRecord, OciRunConfig,
};
use crate::debian::store::{IN_USE, ROOTFS, image_dir, validate_name};
use crate::{Cache, EntryLock, ImageError, io_err, kernel, tool_path};
use source::Plan;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;
use unpack::{Tree, UnpackStats};

/// What to import.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// An OCI layout directory, an OCI archive or a `docker save` archive.
    pub source: PathBuf,
    /// The airlock image name to store it under.
    pub name: String,
    /// Which image of the source (a ref name or repo tag) when it holds several.
    pub reference: Option<String>,
}

/// An imported image.
#[derive(Debug, Clone)]
pub struct Imported {
    /// Its build directory.
    pub dir: PathBuf,
    /// Its manifest.
    pub manifest: ImageManifest,
    /// What unpacking kept and left out.
    pub stats: UnpackStats,
}

/// Reads the source into a [`Plan`]; an archive is first unpacked into `scratch`.
fn plan(opts: &ImportOptions, scratch: &Path) -> Result<Plan, OciError> {
    let src = &opts.source;
    let meta = std::fs::metadata(src).map_err(|e| OciError::io("reading", src, e))?;
    let (dir, archive) = if meta.is_dir() {
        (src.clone(), false)
    } else {
        std::fs::create_dir_all(scratch).map_err(|e| OciError::io("creating", scratch, e))?;
        let tree = Tree::open(scratch).map_err(|e| OciError::io("opening", scratch, e))?;
        let mut stats = UnpackStats::default();
        tree.apply(1, layer_reader(src)?, &mut stats)
            .map_err(|e| OciError::bad(src, format!("not a readable tar archive: {e}")))?;
        (scratch.to_owned(), true)
    };
    let reference = opts.reference.as_deref();
    let mut plan = if dir.join("index.json").is_file() {
        source::oci_layout(&dir, reference)?
    } else if dir.join("manifest.json").is_file() {
        source::docker(&dir, reference)?
    } else {
        return Err(OciError::bad(
            src,
            "neither an OCI image layout (index.json) nor a `docker save` archive (manifest.json)",
        ));
    };
    if archive && plan.format == "oci-layout" {
        plan.format = "oci-archive";
    }
    Ok(plan)
}

fn run_config(plan: &Plan) -> OciRunConfig {
    let c = plan.config.config().clone().unwrap_or_default();
    OciRunConfig {
        env: c.env().clone().unwrap_or_default(),
        working_dir: c.working_dir().clone().filter(|w| !w.is_empty()),
        user: c.user().clone().filter(|u| !u.is_empty()),
        entrypoint: c.entrypoint().clone().unwrap_or_default(),
        cmd: c.cmd().clone().unwrap_or_default(),
    }
}

/// Imports an image; `note` gets a line per step.
pub fn import(
    cache: &Cache,
    opts: &ImportOptions,
    bar: &indicatif::ProgressBar,
) -> Result<Imported, ImageError> {
    validate_name(&opts.name)?;
    if !nix::unistd::geteuid().is_root() {
        return Err(ImageError::NotRoot {
            what: "an imported image (its files keep their owners)",
        });
    }
    let started = Instant::now();
    let kernel = kernel::ensure(cache, bar)?;
    let dir = image_dir(cache, &opts.name)?;
    std::fs::create_dir_all(&dir).map_err(io_err(format!("creating {}", dir.display())))?;
    let _lock = EntryLock::acquire(&dir.join("build.lock"))?;
    let work = dir.join(".import");
    if work.exists() {
        std::fs::remove_dir_all(&work).map_err(io_err(format!("removing {}", work.display())))?;
    }
    std::fs::create_dir_all(&work).map_err(io_err(format!("creating {}", work.display())))?;
    let result = import_in(&work, opts, &kernel, started, bar);
    let outcome = match result {
        Ok(r) => r,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&work);
            return Err(e);
        }
    };
    let (manifest, out, stats) = outcome;
    let final_dir = dir.join(&manifest.build_id);
    std::fs::rename(&out, &final_dir)
        .map_err(io_err(format!("installing {}", final_dir.display())))?;
    crate::builds::set_current(&dir, &manifest.build_id)?;
    let _ = std::fs::remove_dir_all(&work);
    Ok(Imported {
        dir: final_dir,
        manifest,
        stats,
    })
}

fn import_in(
    work: &Path,
    opts: &ImportOptions,
    kernel: &kernel::Kernel,
    started: Instant,
    bar: &indicatif::ProgressBar,
) -> Result<(ImageManifest, PathBuf, UnpackStats), ImageError> {
    bar.set_message(format!("reading {}", opts.source.display()));
    let plan = plan(opts, &work.join("source"))?;
    let root = work.join("root");
    std::fs::create_dir_all(&root).map_err(io_err(format!("creating {}", root.display())))?;
    std::fs::set_permissions(&root, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .map_err(io_err("setting the root's mode"))?;
    let tree = Tree::open(&root).map_err(io_err(format!("opening {}", root.display())))?;
    let mut stats = UnpackStats::default();
    for (i, layer) in plan.layers.iter().enumerate() {
        bar.set_message(format!(
            "applying layer {}/{} ({}, {} MiB)",
            i + 1,
            plan.layers.len(),
            layer.digest.get(..19).unwrap_or(&layer.digest),
            layer.size >> 20
        ));
        tree.apply(i + 1, layer_reader(&layer.path)?, &mut stats)
            .map_err(|e| ImageError::BadInput {
                path: layer.path.clone(),
                message: e.to_string(),
            })?;
    }
    let _ = std::fs::remove_dir_all(work.join("source"));

    bar.set_message("mksquashfs -comp zstd");
    let out = work.join("out");
    std::fs::create_dir_all(&out).map_err(io_err(format!("creating {}", out.display())))?;
    let rootfs = out.join(ROOTFS);
    let output = Command::new(tool_path("mksquashfs"))
        .arg(&root)
        .arg(&rootfs)
        .args(["-comp", "zstd", "-noappend", "-no-progress", "-quiet"])
        .output()
        .map_err(|e| ImageError::MissingDeps {
            what: "an imported image",
            missing: format!("mksquashfs ({e})"),
            packages: "squashfs-tools".into(),
        })?;
    if !output.status.success() {
        return Err(ImageError::BadInput {
            path: rootfs,
            message: format!(
                "mksquashfs failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            ),
        });
    }
    let _ = std::fs::remove_dir_all(&root);
    let sha256 = crate::sha256_file(&rootfs)?;
    let size = std::fs::metadata(&rootfs)
        .map_err(io_err(format!("reading {}", rootfs.display())))?
        .len();
    let now = airlock_audit::Timestamp::now();
    let manifest = ImageManifest {
        format: MANIFEST_FORMAT,
        name: opts.name.clone(),
        kind: "oci".into(),
        suite: "oci".into(),
        build_id: crate::builds::build_id(&now.to_string(), &sha256),
        built_at: now.to_string(),
        build_secs: started.elapsed().as_secs(),
        archives: Vec::new(),
        packages: Vec::new(),
        kernel: KernelRecord::of(kernel),
        artefacts: vec![Artefact {
            path: ROOTFS.into(),
            size,
            sha256,
        }],
        oci: Some(OciRecord {
            source: opts.source.display().to_string(),
            format: plan.format.into(),
            reference: plan.reference.clone(),
            digest: plan.digest.clone(),
            layers: plan
                .layers
                .iter()
                .map(|l| OciLayer {
                    digest: l.digest.clone(),
                    media_type: l.media_type.clone(),
                    size: l.size,
                })
                .collect(),
            config: run_config(&plan),
            devices_skipped: stats.devices_skipped,
        }),
    };
    manifest.write(&out.join(crate::debian::store::MANIFEST))?;
    std::fs::write(out.join(IN_USE), b"").map_err(io_err("creating the in-use lock"))?;
    Ok((manifest, out, stats))
}

#[cfg(test)]
mod tests;
