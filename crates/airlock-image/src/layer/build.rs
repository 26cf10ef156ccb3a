//! Building a package layer: the Debian image's squashfs mounted read-only under an overlay
//! whose upper directory is empty, `apt-get install` of the layer's packages in a chroot of the
//! overlay (with a private `/proc`, the host's resolver bound read-only on `/etc/resolv.conf`,
//! and a `policy-rc.d` so no package script starts a daemon on the host), then the upper
//! directory, cleaned of apt's lists, caches and logs, packed with `mksquashfs -comp zstd`. The
//! layer therefore holds exactly what the packages added or changed, whiteouts included.
//! [`ensure`] runs it under the entry's lock when the entry is missing.

use super::Layer;
use super::store::{
    LAYER, LayerManifest, LayerPackage, MANIFEST, MANIFEST_FORMAT, OpenedLayer, layer_dir,
    open_entry,
};
use crate::debian::OpenedImage;
use crate::debian::build::mounts::{ProcMount, mounts_under, remove_tree};
use crate::debian::index::parse_status;
use crate::steps::Steps;
use crate::{Cache, EntryLock, ImageError, builds, io_err, tool_path};
use indicatif::ProgressBar;
use nix::mount::{MntFlags, MsFlags};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// Steps shown as `[n/STEPS]`.
const STEPS: usize = 5;
/// What package scripts must not do in the build chroot: start services.
const POLICY_RC_D: &str = "usr/sbin/policy-rc.d";
/// What apt, dpkg and package scripts leave in the upper directory that the layer must not
/// carry (`run` is a tmpfs in the guest anyway).
const SCRATCH: [&str; 6] = [
    "var/lib/apt/lists",
    "var/cache/apt",
    "var/cache/debconf/templates.dat-old",
    "var/log",
    "tmp",
    "run",
];

/// The entry of `layer` over `image`, built first if there is none (with progress on `bar`),
/// then checked like [`super::store::open`]. Building needs root.
pub fn ensure(
    cache: &Cache,
    layer: &Layer,
    image: &OpenedImage,
    bar: &ProgressBar,
) -> Result<OpenedLayer, ImageError> {
    let key = super::store::key(layer, &image.build_id);
    let dir = layer_dir(cache, &layer.name)?;
    if let Some(opened) = open_entry(&dir.join(&key), layer)? {
        return Ok(opened);
    }
    bar.set_message(format!(
        "waiting for another airlock to finish building layer {}",
        layer.name
    ));
    let _lock = EntryLock::acquire(&dir.join(format!("{key}.lock")))?;
    if let Some(opened) = open_entry(&dir.join(&key), layer)? {
        return Ok(opened);
    }
    build(&dir, &key, layer, image, bar)?;
    open_entry(&dir.join(&key), layer)?.ok_or_else(|| ImageError::BadInput {
        path: dir.join(&key),
        message: "the layer build finished without an entry".into(),
    })
}

/// Builds `layer` over `image` into `<dir>/<key>/`.
fn build(
    dir: &Path,
    key: &str,
    layer: &Layer,
    image: &OpenedImage,
    bar: &ProgressBar,
) -> Result<(), ImageError> {
    if !nix::unistd::geteuid().is_root() {
        return Err(ImageError::NotRoot {
            what: "a package layer",
        });
    }
    let started = Instant::now();
    let work = dir.join(format!(".build-{key}"));
    remove_tree(&work)?;
    std::fs::create_dir_all(&work).map_err(io_err(format!("creating {}", work.display())))?;
    // Mount points in /proc/self/mountinfo are canonical paths.
    let work = work
        .canonicalize()
        .map_err(io_err(format!("resolving {}", work.display())))?;
    let log_path = work.join("build.log");
    let mut steps = Steps::create(log_path.clone(), bar, STEPS)?;
    let upper = work.join("upper");
    let packages = {
        let mut mounted = Mounted::default();
        let result = install(&work, layer, image, &mut steps, &mut mounted);
        mounted.unmount()?;
        result?
    };
    clean_upper(&upper)?;

    let left = mounts_under(&work)?;
    if !left.is_empty() {
        return Err(ImageError::BadInput {
            path: work,
            message: format!("still mounted, refusing to pack: {left:?}"),
        });
    }
    let out = work.join("out");
    std::fs::create_dir_all(&out).map_err(io_err("creating the output dir"))?;
    let squashfs = out.join(LAYER);
    let mut cmd = Command::new(tool_path("mksquashfs"));
    cmd.arg(&upper)
        .arg(&squashfs)
        .args(["-comp", "zstd", "-noappend", "-no-progress"]);
    steps.run(4, "mksquashfs -comp zstd", cmd)?;

    steps.set_step(5, "hashing and writing the manifest");
    let manifest = LayerManifest {
        format: MANIFEST_FORMAT,
        layer: layer.name.clone(),
        key: key.to_string(),
        image: image.name.clone(),
        image_build: image.build_id.clone(),
        recipe_sha256: crate::hash_parts(&[layer.source_text().as_bytes()]),
        packages,
        built_at: airlock_audit::Timestamp::now().to_string(),
        build_secs: started.elapsed().as_secs(),
        artefacts: vec![builds::record(&squashfs, LAYER)?],
    };
    crate::write_json(&out.join(MANIFEST), &manifest)?;
    drop(steps);
    std::fs::rename(&log_path, out.join("build.log")).map_err(io_err("keeping the build log"))?;
    let entry = dir.join(key);
    std::fs::rename(&out, &entry).map_err(io_err(format!("installing {}", entry.display())))?;
    remove_tree(&work)
}

/// Mounts the image and the overlay, installs the packages, and reads what they added.
fn install(
    work: &Path,
    layer: &Layer,
    image: &OpenedImage,
    steps: &mut Steps<'_>,
    mounted: &mut Mounted,
) -> Result<Vec<LayerPackage>, ImageError> {
    let (lower, upper, ovl_work, root) = (
        work.join("lower"),
        work.join("upper"),
        work.join("work"),
        work.join("root"),
    );
    for d in [&lower, &upper, &ovl_work, &root] {
        std::fs::create_dir_all(d).map_err(io_err(format!("creating {}", d.display())))?;
    }
    let mut cmd = Command::new(tool_path("mount"));
    cmd.args(["-t", "squashfs", "-o", "ro,loop"])
        .arg(&image.rootfs)
        .arg(&lower);
    steps.run(1, &format!("mounting image {}", image.name), cmd)?;
    mounted.0.push(lower.clone());
    let options = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.display(),
        upper.display(),
        ovl_work.display()
    );
    mount(
        Some("overlay"),
        &root,
        Some("overlay"),
        MsFlags::empty(),
        &options,
    )?;
    mounted.0.push(root.clone());
    // apt resolves the mirror with the host's resolver; the image names none.
    let resolv = root.join("etc/resolv.conf");
    mount(
        Some("/etc/resolv.conf"),
        &resolv,
        None,
        MsFlags::MS_BIND,
        "",
    )?;
    mounted.0.push(resolv.clone());
    mount(
        None,
        &resolv,
        None,
        MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
        "",
    )?;
    write_policy_rc_d(&root)?;
    let proc_mount = ProcMount::mount(&root.join("proc"))?;

    steps.run(
        2,
        "apt-get update",
        chroot(&root, &["apt-get", "-o", "Acquire::Retries=3", "update"]),
    )?;
    let mut argv = vec![
        "apt-get",
        "-y",
        "-o",
        "Acquire::Retries=3",
        "--no-install-recommends",
        "install",
    ];
    argv.extend(layer.packages.iter().map(String::as_str));
    steps.run(
        3,
        &format!("apt-get install {}", layer.packages.join(" ")),
        chroot(&root, &argv),
    )?;
    proc_mount.unmount()?;
    if let Some(p) = layer.provides.iter().find(|p| !root.join(p).exists()) {
        return Err(ImageError::BadInput {
            path: root.join(p),
            message: format!("layer {} installed without /{p}", layer.name),
        });
    }
    let status_path = root.join("var/lib/dpkg/status");
    let status = std::fs::read_to_string(&status_path)
        .map_err(io_err(format!("reading {}", status_path.display())))?;
    let installed = parse_status(&status).map_err(|e| ImageError::BadInput {
        path: status_path.clone(),
        message: e.to_string(),
    })?;
    Ok(added(installed, image))
}

/// Packages installed now that the image does not have at the same version.
fn added(
    installed: Vec<crate::debian::index::PackageEntry>,
    image: &OpenedImage,
) -> Vec<LayerPackage> {
    installed
        .into_iter()
        .filter(|p| {
            !image
                .manifest
                .packages
                .iter()
                .any(|q| q.name == p.name && q.version == p.version)
        })
        .map(|p| LayerPackage {
            name: p.name,
            version: p.version,
            architecture: p.architecture,
        })
        .collect()
}

/// Removes what only the build needed from the upper directory. Each of these was created
/// there by the build, so removing it reveals the image's own version (or nothing).
fn clean_upper(upper: &Path) -> Result<(), ImageError> {
    for rel in SCRATCH.iter().chain(std::iter::once(&POLICY_RC_D)) {
        let path = upper.join(rel);
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_err(format!("reading {}", path.display()))(e)),
        };
        if meta.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        }
        .map_err(io_err(format!("removing {}", path.display())))?;
    }
    Ok(())
}

fn write_policy_rc_d(root: &Path) -> Result<(), ImageError> {
    use std::os::unix::fs::PermissionsExt;
    let path = root.join(POLICY_RC_D);
    std::fs::write(&path, "#!/bin/sh\nexit 101\n")
        .map_err(io_err(format!("writing {}", path.display())))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
        .map_err(io_err(format!("setting the mode of {}", path.display())))
}

/// `chroot <root> ARGV` with a clean environment.
fn chroot(root: &Path, argv: &[&str]) -> Command {
    let mut cmd = Command::new(tool_path("chroot"));
    cmd.arg(root)
        .args(argv)
        .env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .env("HOME", "/root")
        .env("LC_ALL", "C.UTF-8")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .env("DEBCONF_NONINTERACTIVE_SEEN", "true");
    cmd
}

fn mount(
    source: Option<&str>,
    target: &Path,
    fstype: Option<&str>,
    flags: MsFlags,
    data: &str,
) -> Result<(), ImageError> {
    let source = source.map(PathBuf::from);
    nix::mount::mount(source.as_deref(), target, fstype, flags, Some(data)).map_err(|e| {
        ImageError::Io {
            context: format!("mounting {} ({data})", target.display()),
            source: e.into(),
        }
    })
}

/// The build's mounts, innermost last; detached on drop if not unmounted in order.
#[derive(Default)]
struct Mounted(Vec<PathBuf>);

impl Mounted {
    fn unmount(&mut self) -> Result<(), ImageError> {
        while let Some(m) = self.0.pop() {
            nix::mount::umount2(&m, MntFlags::empty()).map_err(|e| ImageError::Io {
                context: format!("unmounting {}", m.display()),
                source: e.into(),
            })?;
        }
        Ok(())
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        while let Some(m) = self.0.pop() {
            let _ = nix::mount::umount2(&m, MntFlags::MNT_DETACH);
        }
    }
}
