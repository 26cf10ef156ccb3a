//! Building a Debian image: `debootstrap --variant=minbase` bookworm, point apt at bookworm,
//! bookworm-updates and bookworm-security, `dist-upgrade` (so every security fix published so far
//! is in), install the developer packages, add the `agent` user, strip apt's caches, and pack
//! the tree with `mksquashfs -comp zstd`. Called by `airlock image build` and `image update`.
//!
//! Everything happens in `images/<name>/.build/` under the image's build lock; only the finished
//! `rootfs.squashfs`, `manifest.json` and `build.log` are renamed to `images/<name>/<build-id>/`,
//! and then `current` is switched, so a failed or interrupted build leaves no half-made image.
//! The chroot gets a private `/proc` for package scripts; it is unmounted on every path, and no
//! tree is ever deleted while anything is still mounted below it.
//!
//! This file drives the steps in order; the rest lives beside it: host prerequisites in
//! `host.rs`, running and logging one step in `step.rs`, shaping the root tree in `tree.rs`,
//! the package inventory and manifest in `record.rs`, and mount safety in `mounts.rs`.

mod host;
pub(crate) mod mounts;
mod record;
mod step;
mod tree;

pub use host::missing_build_deps;

use host::KEYRING;
use mounts::{ProcMount, mounts_under, remove_tree};

use super::manifest::ImageManifest;
use super::mirror::{Mirrors, SUITE};
use super::store::{IN_USE, ROOTFS, image_dir};
use crate::builds::set_current;
use crate::steps::Steps;
use crate::{Cache, EntryLock, ImageError, io_err, kernel, tool_path};
use indicatif::ProgressBar;
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

/// Packages installed on top of minbase. Each must install and work: the tests run them.
pub const PACKAGES: [&str; 13] = [
    "git",
    "ca-certificates",
    "curl",
    "python3",
    "python3-pip",
    "python3-venv",
    "nodejs",
    "npm",
    "build-essential",
    "ripgrep",
    "jq",
    "less",
    "openssh-client",
];
/// Steps shown as `[n/STEPS]`.
const STEPS: usize = 8;

/// What to build.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// Image name (default `debian`).
    pub name: String,
    /// Archives to install from.
    pub mirrors: Mirrors,
}

/// A finished build.
#[derive(Debug, Clone)]
pub struct Built {
    /// Its directory, `images/<name>/<build-id>`.
    pub dir: PathBuf,
    /// Its manifest.
    pub manifest: ImageManifest,
    /// The build log kept beside it.
    pub log: PathBuf,
}

/// Builds the image and makes it current. Shows the step and the latest output line on `bar`.
pub fn build(cache: &Cache, opts: &BuildOptions, bar: &ProgressBar) -> Result<Built, ImageError> {
    let started = Instant::now();
    let dir = image_dir(cache, &opts.name)?;
    let missing = missing_build_deps();
    if !missing.is_empty() {
        let mut pkgs: Vec<&str> = missing.iter().map(|(_, p)| p.as_str()).collect();
        pkgs.dedup();
        return Err(ImageError::MissingDeps {
            what: "the debian image",
            missing: missing
                .iter()
                .map(|(w, _)| w.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            packages: pkgs.join(" "),
        });
    }
    if !nix::unistd::geteuid().is_root() {
        return Err(ImageError::NotRoot {
            what: "the debian image",
        });
    }

    bar.set_message(format!(
        "[1/{STEPS}] guest kernel (cached after the first build)"
    ));
    let kernel = kernel::ensure(cache, bar)?;

    bar.set_message(format!(
        "waiting for another build of image {} to finish",
        opts.name
    ));
    let _lock = EntryLock::acquire(&dir.join("build.lock"))?;
    let work = dir.join(".build");
    remove_tree(&work)?;
    std::fs::create_dir_all(&work).map_err(io_err(format!("creating {}", work.display())))?;
    // Mount points in /proc/self/mountinfo are canonical paths.
    let work = work
        .canonicalize()
        .map_err(io_err(format!("resolving {}", work.display())))?;
    let log_path = work.join("build.log");
    let mut b = Builder {
        root: work.join("root"),
        out: work.join("out"),
        steps: Steps::create(log_path.clone(), bar, STEPS)?,
        opts,
    };
    let result = b.run(&kernel, started);
    // Whatever happened, the chroot tree goes (it is most of a gigabyte); the log stays in
    // `.build/` after a failure so the error can point at it.
    let cleanup = remove_tree(&b.root);
    let (manifest, out) = match result {
        Ok(r) => r,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&b.out);
            return Err(e);
        }
    };
    cleanup?;

    let final_dir = dir.join(&manifest.build_id);
    std::fs::rename(&log_path, out.join("build.log")).map_err(io_err("keeping the build log"))?;
    std::fs::rename(&out, &final_dir)
        .map_err(io_err(format!("installing {}", final_dir.display())))?;
    set_current(&dir, &manifest.build_id)?;
    let _ = std::fs::remove_dir_all(&work);
    Ok(Built {
        log: final_dir.join("build.log"),
        dir: final_dir,
        manifest,
    })
}

struct Builder<'a> {
    root: PathBuf,
    out: PathBuf,
    steps: Steps<'a>,
    opts: &'a BuildOptions,
}

impl Builder<'_> {
    fn run(
        &mut self,
        kernel: &kernel::Kernel,
        started: Instant,
    ) -> Result<(ImageManifest, PathBuf), ImageError> {
        let archives = self.opts.mirrors.archives();
        let root = self.root.clone();

        let mut cmd = Command::new(tool_path("debootstrap"));
        cmd.arg("--variant=minbase")
            .arg("--arch=amd64")
            .arg("--components=main")
            .arg(format!("--keyring={KEYRING}"))
            .arg(SUITE)
            .arg(&root)
            .arg(&self.opts.mirrors.main);
        self.step(
            2,
            "debootstrap: downloading and unpacking the base system",
            cmd,
        )?;

        self.configure_apt(&archives)?;
        let proc_mount = ProcMount::mount(&root.join("proc"))?;
        self.step(
            3,
            "apt-get update",
            self.chroot(&["apt-get", "-o", "Acquire::Retries=3", "update"]),
        )?;
        self.step(
            4,
            "apt-get dist-upgrade: applying updates and security fixes",
            self.chroot(&[
                "apt-get",
                "-y",
                "-o",
                "Acquire::Retries=3",
                "-o",
                "Dpkg::Options::=--force-confold",
                "dist-upgrade",
            ]),
        )?;
        let mut install = vec![
            "apt-get",
            "-y",
            "-o",
            "Acquire::Retries=3",
            "--no-install-recommends",
            "install",
        ];
        install.extend(PACKAGES);
        self.step(
            5,
            &format!("apt-get install: {} packages", PACKAGES.len()),
            self.chroot(&install),
        )?;
        self.step(
            6,
            "adding the agent user",
            self.chroot(&["groupadd", "--gid", "1000", "agent"]),
        )?;
        self.step(
            6,
            "adding the agent user",
            self.chroot(&[
                "useradd",
                "--uid",
                "1000",
                "--gid",
                "1000",
                "--create-home",
                "--home-dir",
                "/home/agent",
                "--shell",
                "/bin/bash",
                "agent",
            ]),
        )?;
        // Record what apt installed and from where before the lists are deleted.
        let (archive_records, packages) = self.inventory(&archives)?;
        self.step(6, "apt-get clean", self.chroot(&["apt-get", "clean"]))?;
        proc_mount.unmount()?;
        self.finish_tree()?;

        self.set_step(7, "mksquashfs -comp zstd");
        let mounted = mounts_under(&self.root)?;
        if !mounted.is_empty() {
            return Err(ImageError::BadInput {
                path: self.root.clone(),
                message: format!("still mounted, refusing to pack: {mounted:?}"),
            });
        }
        std::fs::create_dir_all(&self.out).map_err(io_err("creating the output dir"))?;
        let rootfs = self.out.join(ROOTFS);
        let mut cmd = Command::new(tool_path("mksquashfs"));
        cmd.arg(&root)
            .arg(&rootfs)
            .args(["-comp", "zstd", "-noappend", "-no-progress"]);
        self.step(7, "mksquashfs -comp zstd", cmd)?;

        self.set_step(8, "hashing and writing the manifest");
        let manifest = self.write_manifest(kernel, started, archive_records, packages, &rootfs)?;
        let in_use = self.out.join(IN_USE);
        std::fs::write(&in_use, b"").map_err(io_err(format!("creating {}", in_use.display())))?;
        Ok((manifest, self.out.clone()))
    }
}
