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

use super::index::{Index, parse_status, release_date};
use super::manifest::{
    ArchiveRecord, Artefact, ImageManifest, KernelRecord, MANIFEST_FORMAT, PackageRecord,
};
use super::mirror::{Archive, Mirrors, SUITE};
use super::store::{IN_USE, MANIFEST, ROOTFS, image_dir, set_current};
use crate::{Cache, EntryLock, ImageError, io_err, kernel, sha256_file};
use indicatif::ProgressBar;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
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
/// The workload's account (policy `process.user = "agent"`).
const AGENT_UID: u32 = 1000;
/// Host tools the build runs, with the Debian package providing each.
const TOOLS: [(&str, &str); 3] = [
    ("debootstrap", "debootstrap"),
    ("mksquashfs", "squashfs-tools"),
    ("chroot", "coreutils"),
];
/// The archive key debootstrap checks the base system with.
const KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";
/// Lines of the log shown when a step fails.
const TAIL_LINES: usize = 25;
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

/// What this host lacks to build a Debian image, as (what, package) pairs.
pub fn missing_build_deps() -> Vec<(String, String)> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut missing: Vec<(String, String)> = TOOLS
        .iter()
        .filter(|(tool, _)| {
            // Root's tools live in sbin, which a user's PATH may lack.
            !std::env::split_paths(&path)
                .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
                .any(|d| d.join(tool).is_file())
        })
        .map(|(t, p)| (t.to_string(), p.to_string()))
        .collect();
    if !Path::new(KEYRING).is_file() {
        missing.push((KEYRING.into(), "debian-archive-keyring".into()));
    }
    missing
}

/// Finds `tool` in PATH or sbin.
fn tool_path(tool: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from(tool))
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
    let log = std::fs::File::create(&log_path)
        .map_err(io_err(format!("creating {}", log_path.display())))?;
    let mut b = Builder {
        root: work.join("root"),
        out: work.join("out"),
        log,
        log_path: log_path.clone(),
        bar,
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
    log: std::fs::File,
    log_path: PathBuf,
    bar: &'a ProgressBar,
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
        let sha256 = sha256_file(&rootfs)?;
        let size = std::fs::metadata(&rootfs)
            .map_err(io_err(format!("reading {}", rootfs.display())))?
            .len();
        let now = airlock_audit::Timestamp::now();
        let manifest = ImageManifest {
            format: MANIFEST_FORMAT,
            name: self.opts.name.clone(),
            kind: "debian".into(),
            suite: SUITE.into(),
            build_id: build_id(&now.to_string(), &sha256),
            built_at: now.to_string(),
            build_secs: started.elapsed().as_secs(),
            archives: archive_records,
            packages,
            kernel: KernelRecord {
                key: kernel.key.clone(),
                source: kernel.manifest.source.clone(),
                release: kernel.manifest.release.clone(),
                config_sha256: kernel.manifest.config_sha256.clone(),
                vmlinux_sha256: kernel.manifest.vmlinux_sha256.clone(),
            },
            artefacts: vec![Artefact {
                path: ROOTFS.into(),
                size,
                sha256,
            }],
        };
        manifest.write(&self.out.join(MANIFEST))?;
        let in_use = self.out.join(IN_USE);
        std::fs::write(&in_use, b"").map_err(io_err(format!("creating {}", in_use.display())))?;
        Ok((manifest, self.out.clone()))
    }

    fn set_step(&self, n: usize, name: &str) {
        self.bar.set_message(format!("[{n}/{STEPS}] {name}"));
        let _ = writeln!(&self.log, "==> {name}");
    }

    /// `chroot <root> ARGV` with a clean environment.
    fn chroot(&self, argv: &[&str]) -> Command {
        let mut cmd = Command::new(tool_path("chroot"));
        cmd.arg(&self.root)
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

    /// Runs one command with stdout and stderr in the log; the latest line goes on the bar.
    fn step(&mut self, n: usize, name: &str, mut cmd: Command) -> Result<(), ImageError> {
        self.set_step(n, name);
        let _ = writeln!(self.log, "$ {cmd:?}");
        let (reader, writer) = pipe()?;
        let writer2 = writer.try_clone().map_err(io_err("duplicating a pipe"))?;
        airlock_jail::child::die_with_parent(&mut cmd);
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::from(writer))
            .stderr(Stdio::from(writer2))
            .spawn()
            .map_err(io_err(format!("starting {name}")))?;
        // The command holds the write ends; drop it so the reader sees EOF when the child ends.
        drop(cmd);
        for line in BufReader::new(std::fs::File::from(reader))
            .split(b'\n')
            .map_while(Result::ok)
        {
            let _ = self.log.write_all(&line);
            let _ = self.log.write_all(b"\n");
            let text = String::from_utf8_lossy(&line);
            // apt redraws progress with carriage returns; show the last segment.
            let text = text.rsplit('\r').next().unwrap_or_default().trim();
            if !text.is_empty() {
                let short: String = text.chars().take(72).collect();
                self.bar
                    .set_message(format!("[{n}/{STEPS}] {name} · {short}"));
            }
        }
        let status = child
            .wait()
            .map_err(io_err(format!("waiting for {name}")))?;
        if status.success() {
            return Ok(());
        }
        let _ = writeln!(self.log, "==> {name} failed: {status}");
        Err(ImageError::BuildFailed {
            step: name.to_string(),
            log: self.log_path.clone(),
            tail: tail(&self.log_path, TAIL_LINES),
        })
    }

    /// sources.list with the three archives; no services started during the build.
    fn configure_apt(&mut self, archives: &[Archive]) -> Result<(), ImageError> {
        let mut sources = String::from("# Written by airlock image build.\n");
        for a in archives {
            sources.push_str(&a.sources_line());
            sources.push('\n');
        }
        self.write_file("etc/apt/sources.list", &sources, 0o644)?;
        // Package scripts must not start daemons inside the build chroot.
        self.write_file("usr/sbin/policy-rc.d", "#!/bin/sh\nexit 101\n", 0o755)?;
        Ok(())
    }

    fn write_file(&self, rel: &str, text: &str, mode: u32) -> Result<(), ImageError> {
        use std::os::unix::fs::PermissionsExt;
        let path = self.root.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(io_err(format!("creating {}", parent.display())))?;
        }
        // Replace rather than write through: a symlink in the tree must not redirect the write.
        let _ = std::fs::remove_file(&path);
        std::fs::write(&path, text).map_err(io_err(format!("writing {}", path.display())))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
            .map_err(io_err(format!("setting the mode of {}", path.display())))
    }

    /// The archives' Release dates and every installed package with the archive that offered
    /// its version, from apt's lists and dpkg's status database in the tree.
    fn inventory(
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

    /// The agent's dirs, host identity files, and removal of caches and build-only files.
    fn finish_tree(&mut self) -> Result<(), ImageError> {
        self.set_step(6, "configuring the tree and removing caches");
        let root = self.root.clone();
        for (dir, owner) in [("workspace", AGENT_UID), ("run/airlock", 0)] {
            let path = root.join(dir);
            std::fs::create_dir_all(&path)
                .map_err(io_err(format!("creating {}", path.display())))?;
            std::os::unix::fs::lchown(&path, Some(owner), Some(owner))
                .map_err(io_err(format!("chown {}", path.display())))?;
        }
        self.write_file("etc/hostname", "airlock\n", 0o644)?;
        self.write_file(
            "etc/hosts",
            "127.0.0.1\tlocalhost\n127.0.1.1\tairlock\n::1\tlocalhost ip6-localhost ip6-loopback\n",
            0o644,
        )?;
        // debootstrap copied the host's resolver config; the guest reaches the network only
        // through airlock's proxy, and the host's resolvers are none of its business.
        self.write_file(
            "etc/resolv.conf",
            "# airlock guests reach the network through the egress proxy only.\n",
            0o644,
        )?;
        let _ = std::fs::remove_file(root.join("usr/sbin/policy-rc.d"));
        for dir in [
            "var/lib/apt/lists",
            "var/cache/apt",
            "var/cache/debconf",
            "var/log",
            "tmp",
            "var/tmp",
            "root/.cache",
        ] {
            clear_files(&root.join(dir), dir == "var/cache/debconf")?;
        }
        Ok(())
    }
}

/// Removes the regular files under `dir` (recursively), keeping the directories apt and dpkg
/// expect to exist. With `only_old`, only `*-old` backups are removed.
fn clear_files(dir: &Path, only_old: bool) -> Result<(), ImageError> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for e in entries.flatten() {
        let path = e.path();
        let Ok(ft) = e.file_type() else { continue };
        if ft.is_dir() {
            clear_files(&path, only_old)?;
        } else if !only_old || path.to_string_lossy().ends_with("-old") {
            // apt's lock files are recreated on demand.
            std::fs::remove_file(&path).map_err(io_err(format!("removing {}", path.display())))?;
        }
    }
    Ok(())
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

/// `20261127T051500Z-1a2b3c4d` from an RFC 3339 time and the rootfs hash.
fn build_id(rfc3339: &str, sha256: &str) -> String {
    let compact: String = rfc3339
        .chars()
        .take(19)
        .filter(|c| c.is_ascii_alphanumeric())
        .collect();
    format!("{compact}Z-{}", sha256.get(..8).unwrap_or(sha256))
}

fn pipe() -> Result<(OwnedFd, OwnedFd), ImageError> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| ImageError::Io {
        context: "creating a pipe".into(),
        source: e.into(),
    })
}

/// The last `n` lines of a file.
fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read(path).unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let lines: Vec<&str> = text.lines().collect();
    lines
        .get(lines.len().saturating_sub(n)..)
        .unwrap_or_default()
        .join("\n")
}

/// A private `/proc` inside the build chroot, unmounted when dropped.
struct ProcMount {
    target: PathBuf,
    mounted: bool,
}

impl ProcMount {
    fn mount(target: &Path) -> Result<ProcMount, ImageError> {
        use nix::mount::MsFlags;
        std::fs::create_dir_all(target)
            .map_err(io_err(format!("creating {}", target.display())))?;
        nix::mount::mount(
            Some("proc"),
            target,
            Some("proc"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            None::<&str>,
        )
        .map_err(|e| ImageError::Io {
            context: format!("mounting proc on {}", target.display()),
            source: e.into(),
        })?;
        Ok(ProcMount {
            target: target.to_path_buf(),
            mounted: true,
        })
    }

    fn unmount(mut self) -> Result<(), ImageError> {
        self.mounted = false;
        nix::mount::umount2(&self.target, nix::mount::MntFlags::empty()).map_err(|e| {
            ImageError::Io {
                context: format!("unmounting {}", self.target.display()),
                source: e.into(),
            }
        })
    }
}

impl Drop for ProcMount {
    fn drop(&mut self) {
        if self.mounted {
            // A package script may still hold it open; detach so the tree can be cleaned.
            let _ = nix::mount::umount2(&self.target, nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

/// Mount points at or below `dir`, deepest first, from `/proc/self/mountinfo`.
fn mounts_under(dir: &Path) -> Result<Vec<PathBuf>, ImageError> {
    let text = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(io_err("reading /proc/self/mountinfo"))?;
    let mut found: Vec<PathBuf> = mount_points(&text)
        .into_iter()
        .filter(|p| p.starts_with(dir))
        .collect();
    found.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    Ok(found)
}

/// Mount points listed in mountinfo text (field 5, octal escapes decoded).
fn mount_points(mountinfo: &str) -> Vec<PathBuf> {
    mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape_octal(p)))
        .collect()
}

/// Decodes the `\040`-style escapes the kernel uses for space, tab, newline and backslash.
fn unescape_octal(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let code = bytes
            .get(i + 1..i + 4)
            .filter(|d| b == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)))
            .and_then(|d| u8::from_str_radix(std::str::from_utf8(d).ok()?, 8).ok());
        if let Some(c) = code {
            out.push(c);
            i += 4;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Deletes `dir` after unmounting anything below it; refuses if something stays mounted, so a
/// leftover bind or proc mount can never make the deletion reach outside the tree.
fn remove_tree(dir: &Path) -> Result<(), ImageError> {
    if !dir.exists() {
        return Ok(());
    }
    let dir = dir
        .canonicalize()
        .map_err(io_err(format!("resolving {}", dir.display())))?;
    for m in mounts_under(&dir)? {
        let _ = nix::mount::umount2(&m, nix::mount::MntFlags::MNT_DETACH);
    }
    let left = mounts_under(&dir)?;
    if !left.is_empty() {
        return Err(ImageError::BadInput {
            path: dir,
            message: format!("cannot remove: still mounted below it: {left:?}"),
        });
    }
    std::fs::remove_dir_all(&dir).map_err(io_err(format!("removing {}", dir.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_ids_are_time_then_hash() {
        assert_eq!(
            build_id("2026-11-27T05:15:00.123Z", "1a2b3c4d5e6f"),
            "20261127T051500Z-1a2b3c4d"
        );
    }

    #[test]
    fn mountinfo_points_are_decoded() {
        let info = "\
22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
98 22 0:5 / /root/.cache/airlock/images/debian/.build/root/proc rw - proc proc rw
99 22 0:6 / /tmp/with\\040space rw - tmpfs tmpfs rw
";
        assert_eq!(
            mount_points(info),
            vec![
                PathBuf::from("/"),
                PathBuf::from("/root/.cache/airlock/images/debian/.build/root/proc"),
                PathBuf::from("/tmp/with space"),
            ]
        );
        assert_eq!(unescape_octal("a\\134b\\0"), "a\\b\\0");
    }

    #[test]
    fn tail_takes_the_last_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("log");
        std::fs::write(&p, "1\n2\n3\n").unwrap();
        assert_eq!(tail(&p, 2), "2\n3");
        assert_eq!(tail(&p, 10), "1\n2\n3");
        assert_eq!(tail(&dir.path().join("none"), 2), "");
    }

    #[test]
    fn remove_tree_removes_unmounted_trees() {
        let dir = tempfile::tempdir().unwrap();
        let t = dir.path().join("t");
        std::fs::create_dir_all(t.join("a/b")).unwrap();
        std::fs::write(t.join("a/b/f"), "x").unwrap();
        remove_tree(&t).unwrap();
        assert!(!t.exists());
        remove_tree(&t).unwrap();
    }

    #[test]
    fn clear_files_keeps_dirs() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("partial")).unwrap();
        std::fs::write(dir.path().join("partial/x"), "x").unwrap();
        std::fs::write(dir.path().join("lock"), "").unwrap();
        std::fs::write(dir.path().join("config.dat-old"), "").unwrap();
        std::fs::write(dir.path().join("config.dat"), "").unwrap();
        clear_files(dir.path(), true).unwrap();
        assert!(dir.path().join("config.dat").exists());
        assert!(!dir.path().join("config.dat-old").exists());
        clear_files(dir.path(), false).unwrap();
        assert!(dir.path().join("partial").is_dir());
        assert!(!dir.path().join("partial/x").exists());
        assert!(!dir.path().join("lock").exists());
    }
}
