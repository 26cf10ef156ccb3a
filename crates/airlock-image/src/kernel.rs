//! The guest kernel: Debian's `linux-source-6.1`, `tinyconfig` plus the project's fragment
//! (`images/kernel/airlock.config`), built once per (source version, fragment) and cached.
//!
//! The uncompressed `vmlinux` is kept: QEMU boots it through its PVH note, which skips the
//! decompressor (about 1 s under TCG).

use super::{Cache, EntryLock, ImageError, hash_parts, io_err, sha256_file};
use indicatif::ProgressBar;
use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The kernel config fragment, applied on top of `tinyconfig`.
pub const FRAGMENT: &str = include_str!("../../../images/kernel/airlock.config");
/// Debian package providing the source tarball.
pub const SOURCE_PACKAGE: &str = "linux-source-6.1";
/// Bump when the build steps change.
const RECIPE: &str = "airlock-kernel-v1";
/// Objects compiled by the last build of this fragment, to scale the progress bar; the bar
/// re-scales itself if a build compiles more.
const EXPECTED_OBJECTS: u64 = 1076;

/// A built kernel in the cache.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct KernelManifest {
    /// Source package and version, e.g. `linux-source-6.1 6.1.192-2`.
    pub source: String,
    /// `make kernelrelease`.
    pub release: String,
    /// SHA-256 of the config fragment.
    pub fragment_sha256: String,
    /// SHA-256 of the final `.config`.
    pub config_sha256: String,
    /// SHA-256 of `vmlinux`.
    pub vmlinux_sha256: String,
    /// Build completion time, seconds since the epoch.
    pub built_at: u64,
    /// Build duration in seconds.
    pub build_secs: u64,
}

/// A resolved kernel.
#[derive(Debug, Clone)]
pub struct Kernel {
    /// Path of the uncompressed kernel.
    pub vmlinux: PathBuf,
    /// Its manifest.
    pub manifest: KernelManifest,
    /// Cache key.
    pub key: String,
}

/// Where the source tarball is installed by the Debian package.
fn source_tarball() -> PathBuf {
    std::env::var_os("AIRLOCK_KERNEL_SOURCE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/src/linux-source-6.1.tar.xz"))
}

/// Version of the installed source package, from dpkg.
fn source_version() -> Result<String, ImageError> {
    let missing = || ImageError::MissingDeps {
        what: "the guest kernel",
        missing: format!("the {SOURCE_PACKAGE} package"),
        packages: SOURCE_PACKAGE.into(),
    };
    // dpkg's answer is kept while its database is unchanged: a run asks twice, a daemon once
    // per sandbox, and each `dpkg-query` costs about 20 ms.
    static ASKED: std::sync::Mutex<Option<(DpkgState, String)>> = std::sync::Mutex::new(None);
    let state = dpkg_state();
    let mut asked = ASKED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let (Some(state), Some((known, v))) = (state, asked.as_ref())
        && state == *known
        && source_tarball().exists()
    {
        return Ok(v.clone());
    }
    let out = Command::new("dpkg-query")
        .args(["-W", "-f=${Version}", SOURCE_PACKAGE])
        .stderr(Stdio::null())
        .output()
        .map_err(|_| missing())?;
    let v = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !out.status.success() || v.is_empty() || !source_tarball().exists() {
        return Err(missing());
    }
    *asked = state.map(|s| (s, v.clone()));
    Ok(v)
}

/// Identity of dpkg's status database: installing or removing a package rewrites it.
type DpkgState = (u64, u64, i64, i64);

fn dpkg_state() -> Option<DpkgState> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata("/var/lib/dpkg/status").ok()?;
    Some((m.ino(), m.len(), m.mtime(), m.mtime_nsec()))
}

/// The cache key for the installed source and this fragment.
pub fn key() -> Result<String, ImageError> {
    let version = source_version()?;
    let full = hash_parts(&[
        RECIPE.as_bytes(),
        SOURCE_PACKAGE.as_bytes(),
        version.as_bytes(),
        FRAGMENT.as_bytes(),
    ]);
    Ok(full.get(..16).unwrap_or(&full).to_string())
}

impl Kernel {
    /// Checks the vmlinux against the sha256 recorded when it was built (hashed in full unless
    /// it provably has not changed since its last full check: see `checked.rs`).
    pub fn verify(&self) -> Result<(), ImageError> {
        let actual = super::checked::sha256(&self.vmlinux, &self.manifest.vmlinux_sha256)?;
        if actual == self.manifest.vmlinux_sha256 {
            return Ok(());
        }
        Err(ImageError::Tampered(Box::new(super::Tampered {
            what: format!("kernel {}", self.key),
            path: self.vmlinux.clone(),
            expected: self.manifest.vmlinux_sha256.clone(),
            actual,
            remove: self
                .vmlinux
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_else(|| self.vmlinux.clone()),
        })))
    }
}

/// The cached kernel for the current inputs, if built.
pub fn cached(cache: &Cache) -> Result<Option<Kernel>, ImageError> {
    if let Some(k) = from_env()? {
        return Ok(Some(k));
    }
    let key = key()?;
    let dir = cache.root().join("kernel").join(&key);
    read_entry(&dir, key)
}

fn read_entry(dir: &Path, key: String) -> Result<Option<Kernel>, ImageError> {
    let vmlinux = dir.join("vmlinux");
    let Ok(text) = std::fs::read_to_string(dir.join("manifest.json")) else {
        return Ok(None);
    };
    if !vmlinux.exists() {
        return Ok(None);
    }
    let manifest = serde_json::from_str(&text).map_err(|e| ImageError::BadInput {
        path: dir.join("manifest.json"),
        message: e.to_string(),
    })?;
    Ok(Some(Kernel {
        vmlinux,
        manifest,
        key,
    }))
}

/// Host tools the build needs, with the Debian package that provides each.
const BUILD_TOOLS: [(&str, &str); 8] = [
    ("make", "make"),
    ("gcc", "gcc"),
    ("ld", "binutils"),
    ("flex", "flex"),
    ("bison", "bison"),
    ("bc", "bc"),
    ("xz", "xz-utils"),
    ("perl", "perl"),
];
/// Headers the build needs.
const BUILD_HEADERS: [(&str, &str); 2] = [
    ("/usr/include/libelf.h", "libelf-dev"),
    ("/usr/include/openssl/opensslv.h", "libssl-dev"),
];

/// Lists what the kernel build lacks on this host, as (what, package) pairs.
pub fn missing_build_deps() -> Vec<(String, String)> {
    let mut missing = Vec::new();
    let path = std::env::var_os("PATH").unwrap_or_default();
    for (tool, pkg) in BUILD_TOOLS {
        if !std::env::split_paths(&path).any(|d| d.join(tool).is_file()) {
            missing.push((tool.to_string(), pkg.to_string()));
        }
    }
    for (header, pkg) in BUILD_HEADERS {
        if !Path::new(header).exists() {
            missing.push((header.to_string(), pkg.to_string()));
        }
    }
    if !source_tarball().exists() {
        missing.push((
            source_tarball().display().to_string(),
            SOURCE_PACKAGE.to_string(),
        ));
    }
    missing
}

/// A kernel named by `$AIRLOCK_KERNEL` (an uncompressed, PVH-bootable vmlinux), bypassing the
/// build and the cache.
pub fn from_env() -> Result<Option<Kernel>, ImageError> {
    let Some(path) = std::env::var_os("AIRLOCK_KERNEL").map(PathBuf::from) else {
        return Ok(None);
    };
    if !path.is_file() {
        return Err(ImageError::BadInput {
            path,
            message: "AIRLOCK_KERNEL does not name a file".into(),
        });
    }
    let sha = sha256_file(&path)?;
    let manifest = KernelManifest {
        source: "AIRLOCK_KERNEL".into(),
        release: "unknown".into(),
        fragment_sha256: String::new(),
        config_sha256: String::new(),
        vmlinux_sha256: sha.clone(),
        built_at: 0,
        build_secs: 0,
    };
    Ok(Some(Kernel {
        vmlinux: path,
        manifest,
        key: sha.get(..16).unwrap_or(&sha).to_string(),
    }))
}

/// Returns the kernel, building it on first use with progress on `bar`.
pub fn ensure(cache: &Cache, bar: &ProgressBar) -> Result<Kernel, ImageError> {
    if let Some(k) = from_env()? {
        return Ok(k);
    }
    let missing = missing_build_deps();
    let key = match key() {
        Ok(k) => k,
        Err(e) if missing.is_empty() => return Err(e),
        Err(_) => return Err(missing_error(&missing)),
    };
    let root = cache.dir("kernel")?;
    let dir = root.join(&key);
    if let Some(k) = read_entry(&dir, key.clone())? {
        return Ok(k);
    }
    if !missing.is_empty() {
        return Err(missing_error(&missing));
    }
    bar.set_message("waiting for another airlock to finish building the kernel");
    let _lock = EntryLock::acquire(&root.join(format!("{key}.lock")))?;
    if let Some(k) = read_entry(&dir, key.clone())? {
        return Ok(k);
    }
    build(&root, &key, bar)
}

fn missing_error(missing: &[(String, String)]) -> ImageError {
    let mut pkgs: Vec<&str> = missing.iter().map(|(_, p)| p.as_str()).collect();
    pkgs.dedup();
    ImageError::MissingDeps {
        what: "the guest kernel",
        missing: missing
            .iter()
            .map(|(w, _)| w.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        packages: pkgs.join(" "),
    }
}

fn build(root: &Path, key: &str, bar: &ProgressBar) -> Result<Kernel, ImageError> {
    let started = SystemTime::now();
    let work = root.join(format!("build-{key}"));
    if work.exists() {
        std::fs::remove_dir_all(&work).map_err(io_err(format!("clearing {}", work.display())))?;
    }
    std::fs::create_dir_all(&work).map_err(io_err(format!("creating {}", work.display())))?;
    let log_path = work.join("build.log");
    let mut log = std::fs::File::create(&log_path).map_err(io_err("creating build log"))?;

    bar.set_message(format!("unpacking {}", source_tarball().display()));
    run_step(
        Command::new("tar")
            .arg("-xf")
            .arg(source_tarball())
            .arg("-C")
            .arg(&work),
        "unpack",
        &log_path,
        &mut log,
        bar,
        None,
    )?;
    let src = work.join("linux-source-6.1");
    let fragment_path = work.join("airlock.config");
    std::fs::write(&fragment_path, FRAGMENT).map_err(io_err("writing fragment"))?;

    let make = |args: &[&str]| {
        let mut c = Command::new("make");
        c.current_dir(&src).arg("ARCH=x86_64").args(args);
        // Reproducible identity strings in the image.
        c.env("KBUILD_BUILD_USER", "airlock")
            .env("KBUILD_BUILD_HOST", "airlock");
        c.env("KBUILD_BUILD_TIMESTAMP", "1970-01-01");
        c
    };
    bar.set_message("configuring (tinyconfig + images/kernel/airlock.config)");
    run_step(
        &mut make(&["tinyconfig"]),
        "make tinyconfig",
        &log_path,
        &mut log,
        bar,
        None,
    )?;
    run_step(
        Command::new("scripts/kconfig/merge_config.sh")
            .current_dir(&src)
            .args(["-m", "-O", ".", ".config"])
            .arg(&fragment_path)
            .env("ARCH", "x86_64"),
        "merge config fragment",
        &log_path,
        &mut log,
        bar,
        None,
    )?;
    run_step(
        &mut make(&["olddefconfig"]),
        "make olddefconfig",
        &log_path,
        &mut log,
        bar,
        None,
    )?;
    let config = std::fs::read_to_string(src.join(".config")).map_err(io_err("reading .config"))?;
    let dropped = dropped_options(FRAGMENT, &config);
    if !dropped.is_empty() {
        return Err(ImageError::ConfigDropped(dropped.join(", ")));
    }

    let jobs = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .to_string();
    bar.set_length(EXPECTED_OBJECTS);
    bar.set_position(0);
    bar.set_message("compiling");
    run_step(
        &mut make(&["-j", &jobs, "vmlinux"]),
        "make vmlinux",
        &log_path,
        &mut log,
        bar,
        Some(()),
    )?;
    let release_out = make(&["-s", "kernelrelease"])
        .output()
        .map_err(io_err("make kernelrelease"))?;
    let release = String::from_utf8_lossy(&release_out.stdout)
        .trim()
        .to_string();

    let staging = root.join(format!("{key}.staging"));
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(io_err("clearing staging"))?;
    }
    std::fs::create_dir_all(&staging).map_err(io_err("creating staging"))?;
    std::fs::copy(src.join("vmlinux"), staging.join("vmlinux"))
        .map_err(io_err("copying vmlinux"))?;
    std::fs::write(staging.join("config"), &config).map_err(io_err("writing config"))?;
    let manifest = KernelManifest {
        source: format!("{SOURCE_PACKAGE} {}", source_version()?),
        release,
        fragment_sha256: hash_hex(FRAGMENT.as_bytes()),
        config_sha256: hash_hex(config.as_bytes()),
        vmlinux_sha256: sha256_file(&staging.join("vmlinux"))?,
        built_at: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_secs(),
        build_secs: started.elapsed().unwrap_or(Duration::ZERO).as_secs(),
    };
    let json = serde_json::to_string_pretty(&manifest).map_err(|e| ImageError::BadInput {
        path: staging.join("manifest.json"),
        message: e.to_string(),
    })?;
    std::fs::write(staging.join("manifest.json"), json).map_err(io_err("writing manifest"))?;
    let dir = root.join(key);
    std::fs::rename(&staging, &dir).map_err(io_err(format!("installing {}", dir.display())))?;
    // The build tree is over a gigabyte; only the kernel, config and manifest are kept.
    let _ = std::fs::remove_dir_all(&work);
    Ok(Kernel {
        vmlinux: dir.join("vmlinux"),
        manifest,
        key: key.to_string(),
    })
}

fn hash_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Fragment lines (`CONFIG_X=v`) that are not in the final config.
pub fn dropped_options(fragment: &str, config: &str) -> Vec<String> {
    let have: std::collections::HashSet<&str> = config.lines().map(str::trim).collect();
    fragment
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("CONFIG_"))
        .filter(|l| !have.contains(l))
        .map(str::to_string)
        .collect()
}

/// Runs one step with output appended to the log; with `count`, each compiled object advances
/// the bar.
fn run_step(
    cmd: &mut Command,
    step: &str,
    log_path: &Path,
    log: &mut std::fs::File,
    bar: &ProgressBar,
    count: Option<()>,
) -> Result<(), ImageError> {
    let _ = writeln!(log, "==> {step}");
    airlock_jail::child::die_with_parent(cmd);
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(log.try_clone().map_err(io_err("dup log"))?)
        .spawn()
        .map_err(io_err(format!("starting {step}")))?;
    if let Some(out) = child.stdout.take() {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = writeln!(log, "{line}");
            if count.is_some() && line.starts_with("  CC ") {
                bar.inc(1);
                if bar.position() >= bar.length().unwrap_or(0) {
                    bar.set_length(bar.position() + 50);
                }
                if let Some(obj) = line.split_whitespace().nth(1) {
                    bar.set_message(obj.to_string());
                }
            }
        }
    }
    let status = child
        .wait()
        .map_err(io_err(format!("waiting for {step}")))?;
    if status.success() {
        return Ok(());
    }
    let text = std::fs::read_to_string(log_path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(20)..].join("\n");
    Err(ImageError::BuildFailed {
        step: step.to_string(),
        log: log_path.to_path_buf(),
        tail,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropped_options_are_reported() {
        let fragment = "# comment\nCONFIG_A=y\nCONFIG_B=y\nCONFIG_LSM=\"landlock\"\n";
        let config = "CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_LSM=\"landlock\"\n";
        assert_eq!(
            dropped_options(fragment, config),
            vec!["CONFIG_B=y".to_string()]
        );
    }

    #[test]
    fn fragment_has_what_later_work_needs() {
        for opt in [
            "CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES=y",
            "CONFIG_VIRTIO_VSOCKETS=y",
            "CONFIG_VIRTIO_BLK=y",
            "CONFIG_VIRTIO_FS=y",
            "CONFIG_EXT4_FS=y",
            "CONFIG_OVERLAY_FS=y",
            "CONFIG_EROFS_FS=y",
            "CONFIG_SECCOMP_FILTER=y",
            "CONFIG_SECURITY_LANDLOCK=y",
            "CONFIG_CGROUP_PIDS=y",
            "CONFIG_MEMCG=y",
            "CONFIG_PROC_EVENTS=y",
            "CONFIG_UNIX98_PTYS=y",
            "CONFIG_HIGH_RES_TIMERS=y",
            "CONFIG_X86_MPPARSE=y",
            "CONFIG_PVH=y",
        ] {
            assert!(
                FRAGMENT.lines().any(|l| l == opt),
                "{opt} missing from the fragment"
            );
        }
        assert!(
            !FRAGMENT.contains("CONFIG_MODULES=y"),
            "the guest kernel has no modules"
        );
        assert!(!FRAGMENT.contains("CONFIG_PCI=y") && !FRAGMENT.contains("CONFIG_ACPI=y"));
    }
}
