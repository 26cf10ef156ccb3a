//! `airlock image build|ls|check|update` through the CLI, and `open`'s integrity check.
//!
//! Tests named `debian_*` need the real Debian image: the first one builds it through the CLI
//! into the default cache (`~/.cache/airlock`, shared with every run; building downloads from
//! deb.debian.org and takes several minutes), so skip them with `--skip debian`. They never
//! change the cached build: each works on a private cache holding a copy of its manifest and a
//! symlink to (or a copy of) its rootfs. The other tests use a synthetic image and a local
//! mirror served by the test, and need no network.

use airlock_image::Cache;
use airlock_image::debian::{self, ImageManifest, store};
use airlock_testkit::audit::kind;
use airlock_testkit::upstream::Upstream;
use airlock_testkit::{Airlock, text};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::OnceLock;

/// A local Debian mirror: answers GETs from a fixed map of paths, 404 otherwise.
pub(super) struct Mirror {
    server: Upstream,
}

impl Mirror {
    fn serve(files: HashMap<String, Vec<u8>>) -> Mirror {
        let server = Upstream::start(move |r| match files.get(&r.path) {
            Some(b) => ("200 OK", b.clone()),
            None => ("404 Not Found", b"not found".to_vec()),
        });
        Mirror { server }
    }

    /// Serves the three bookworm archives: `packages[i]` is the Packages text of bookworm,
    /// bookworm-updates and bookworm-security, under `/debian` and `/debian-security`.
    pub(super) fn bookworm(packages: [String; 3]) -> Mirror {
        let mut files = HashMap::new();
        for (suite, base, text) in [
            ("bookworm", "/debian", &packages[0]),
            ("bookworm-updates", "/debian", &packages[1]),
            ("bookworm-security", "/debian-security", &packages[2]),
        ] {
            files.insert(
                format!("{base}/dists/{suite}/Release"),
                format!("Origin: Debian\nCodename: {suite}\nDate: Thu, 26 Nov 2026 08:00:00 UTC\n")
                    .into_bytes(),
            );
            // Only the plain index: the client falls back past the missing .xz and .gz.
            files.insert(
                format!("{base}/dists/{suite}/main/binary-amd64/Packages"),
                text.clone().into_bytes(),
            );
        }
        Mirror::serve(files)
    }

    /// `airlock image ARGS` on `cache` against this mirror.
    pub(super) fn image(&self, cache: &Path, args: &[&str]) -> Output {
        let airlock = Airlock::start();
        let url = self.server.url();
        let mut cmd = airlock.command(std::iter::once("image").chain(args.iter().copied()));
        cmd.env("AIRLOCK_CACHE", cache)
            .env("AIRLOCK_DEBIAN_MIRROR", format!("{url}/debian"))
            .env(
                "AIRLOCK_DEBIAN_SECURITY_MIRROR",
                format!("{url}/debian-security"),
            );
        cmd.output().unwrap()
    }
}

/// Packages texts for the three archives offering exactly what `m` has installed, each
/// package in the suite its record names (the base suite when none), plus the kernel source.
pub(super) fn archives_as_built(m: &ImageManifest) -> [String; 3] {
    let mut out: [String; 3] = Default::default();
    for p in &m.packages {
        let i = match p.archive.as_deref() {
            Some("bookworm-updates") => 1,
            Some("bookworm-security") => 2,
            _ => 0,
        };
        out[i].push_str(&format!(
            "Package: {}\nVersion: {}\nArchitecture: {}\n\n",
            p.name, p.version, p.architecture
        ));
    }
    if let Some(v) = m.kernel.source_version() {
        out[0].push_str(&format!(
            "Package: linux-source-6.1\nVersion: {v}\nArchitecture: all\n\n"
        ));
    }
    out
}

/// Installs `manifest` as the current build of `debian` in the cache at `root`, with `rootfs`
/// linked (not copied) as its root filesystem.
pub(super) fn install(root: &Path, manifest: &ImageManifest, rootfs: &Path) -> PathBuf {
    let dir = root.join("images/debian").join(&manifest.build_id);
    std::fs::create_dir_all(&dir).unwrap();
    manifest.write(&dir.join(store::MANIFEST)).unwrap();
    std::os::unix::fs::symlink(rootfs, dir.join(store::ROOTFS)).unwrap();
    std::fs::write(
        root.join("images/debian/current"),
        format!("{}\n", manifest.build_id),
    )
    .unwrap();
    dir
}

/// A synthetic manifest with a few packages, for tests that need no real image.
pub(super) fn synthetic_manifest() -> ImageManifest {
    let json = serde_json::json!({
        "format": 1,
        "name": "debian",
        "kind": "debian",
        "suite": "bookworm",
        "build_id": "20261127T000000Z-00000000",
        "built_at": "2026-11-27T00:00:00.000Z",
        "build_secs": 1,
        "archives": [],
        "packages": [
            {"name": "git", "version": "1:2.39.5-0+deb12u2", "architecture": "amd64", "archive": "bookworm"},
            {"name": "libssl3", "version": "3.0.17-1~deb12u2", "architecture": "amd64", "archive": "bookworm-security"},
            {"name": "tzdata", "version": "2025b-0+deb12u1", "architecture": "all", "archive": "bookworm-updates"}
        ],
        "kernel": {
            "key": "k", "source": "linux-source-6.1 6.1.158-1", "release": "6.1.158",
            "config_sha256": "c", "vmlinux_sha256": "v"
        },
        "artefacts": [{"path": "rootfs.squashfs", "size": 0, "sha256": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"}]
    });
    serde_json::from_value(json).unwrap()
}

#[test]
fn image_check_exit_codes_follow_security_updates() {
    let cache = tempfile::tempdir().unwrap();
    let rootfs = cache.path().join("empty.squashfs");
    std::fs::write(&rootfs, b"").unwrap();
    let m = synthetic_manifest();
    install(cache.path(), &m, &rootfs);

    // Everything current.
    let mirror = Mirror::bookworm(archives_as_built(&m));
    let out = mirror.image(cache.path(), &["check"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("current: no updates"), "{stdout}");
    assert!(
        stdout.contains("bookworm-security of Thu, 26 Nov 2026 08:00:00 UTC"),
        "{stdout}"
    );

    // A point release of git: listed, but not a security update.
    let mut archives = archives_as_built(&m);
    archives[0].push_str("Package: git\nVersion: 1:2.39.5-0+deb12u3\nArchitecture: amd64\n\n");
    let out = Mirror::bookworm(archives).image(cache.path(), &["check"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("git  1:2.39.5-0+deb12u2 -> 1:2.39.5-0+deb12u3  (bookworm)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("1 update; run `airlock image update debian`"),
        "{stdout}"
    );

    // A security fix for libssl3 and the kernel source: exit 1, marked, and in the JSON.
    let mut archives = archives_as_built(&m);
    archives[2].push_str(
        "Package: libssl3\nVersion: 3.0.17-1~deb12u3\nArchitecture: amd64\n\n\
         Package: linux-source-6.1\nVersion: 6.1.159-1\nArchitecture: all\n\n",
    );
    let mirror = Mirror::bookworm(archives);
    let out = mirror.image(cache.path(), &["check"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("libssl3  3.0.17-1~deb12u2 -> 3.0.17-1~deb12u3  [security]"),
        "{stdout}"
    );
    assert!(
        stdout.contains("kernel linux-source-6.1 6.1.158-1 -> 6.1.159-1  [security]"),
        "{stdout}"
    );
    let out = mirror.image(cache.path(), &["check", "debian", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let report: debian::CheckReport = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report.updates.len(), 1);
    assert!(report.updates[0].security && report.kernel.security);
    assert_eq!(report.security_count(), 2);

    // The last check shows in `image ls`.
    let out = mirror.image(cache.path(), &["ls"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let row = stdout
        .lines()
        .find(|l| l.starts_with("debian *"))
        .unwrap_or_else(|| panic!("no current debian row in\n{stdout}"));
    assert!(row.contains("20261127T000000Z-00000000"), "{row}");
    assert!(row.contains("2 updates (2 security)"), "{row}");
    assert!(stdout.lines().any(|l| l.starts_with("tiny")), "{stdout}");
}

#[test]
fn image_check_failures_exit_2_with_the_reason() {
    let cache = tempfile::tempdir().unwrap();
    // No image.
    let mirror = Mirror::bookworm(Default::default());
    let out = mirror.image(cache.path(), &["check"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("image debian is not built; build it with `airlock image build --kind debian --name debian`"),
        "{}",
        text(&out.stderr)
    );

    // A mirror that refuses connections.
    let rootfs = cache.path().join("empty.squashfs");
    std::fs::write(&rootfs, b"").unwrap();
    install(cache.path(), &synthetic_manifest(), &rootfs);
    let out = Airlock::start()
        .command(["image", "check"])
        .env("AIRLOCK_CACHE", cache.path())
        .env("AIRLOCK_DEBIAN_MIRROR", "http://127.0.0.1:9/debian")
        .env(
            "AIRLOCK_DEBIAN_SECURITY_MIRROR",
            "http://127.0.0.1:9/debian-security",
        )
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("fetching http://127.0.0.1:9/debian") && err.contains("/Release"),
        "{err}"
    );
}

#[test]
fn image_names_are_validated() {
    let cache = tempfile::tempdir().unwrap();
    let out = Airlock::start()
        .command(["image", "check", "../etc"])
        .env("AIRLOCK_CACHE", cache.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("invalid image name \"../etc\""),
        "{}",
        text(&out.stderr)
    );
}

/// The real debian image in the default cache: (cache root, build id, whether this test
/// process built it). Built once per test binary through the CLI.
pub(super) fn debian_image() -> &'static (PathBuf, String, bool) {
    static IMAGE: OnceLock<(PathBuf, String, bool)> = OnceLock::new();
    IMAGE.get_or_init(|| {
        let cache = Cache::from_env().unwrap();
        let mut built = false;
        if debian::current_build(&cache, "debian").unwrap().is_none() {
            eprintln!(
                "building the debian image in {} (several minutes)",
                cache.root().display()
            );
            let status = Airlock::start()
                .command(["image", "build", "--kind", "debian"])
                .stdout(std::process::Stdio::inherit())
                .stderr(std::process::Stdio::inherit())
                .status()
                .unwrap();
            assert!(status.success(), "airlock image build failed: {status}");
            built = true;
        }
        let id = debian::current_build(&cache, "debian").unwrap().unwrap();
        (cache.root().to_path_buf(), id, built)
    })
}

fn real_build() -> (PathBuf, ImageManifest, bool) {
    let (root, id, built) = debian_image();
    let dir = root.join("images/debian").join(id);
    let m = ImageManifest::read(&dir.join(store::MANIFEST)).unwrap();
    (dir, m, *built)
}

#[test]
fn debian_image_manifest_lists_the_toolset() {
    let (dir, m, _) = real_build();
    assert_eq!(
        (m.name.as_str(), m.kind.as_str(), m.suite.as_str()),
        ("debian", "debian", "bookworm")
    );
    let suites: Vec<&str> = m.archives.iter().map(|a| a.suite.as_str()).collect();
    assert_eq!(
        suites,
        ["bookworm", "bookworm-updates", "bookworm-security"]
    );
    assert!(
        m.archives.iter().all(|a| a.date.ends_with("UTC")),
        "{:?}",
        m.archives
    );
    for p in debian::PACKAGES {
        assert!(
            m.packages.iter().any(|r| r.name == p),
            "{p} is not installed"
        );
    }
    assert!(
        m.packages.iter().all(|p| p.archive.is_some()),
        "packages from no archive: {:?}",
        m.packages
            .iter()
            .filter(|p| p.archive.is_none())
            .collect::<Vec<_>>()
    );
    assert!(
        m.kernel.source.starts_with("linux-source-6.1 "),
        "{:?}",
        m.kernel
    );
    let rootfs = m.artefact(store::ROOTFS).unwrap();
    assert_eq!(
        std::fs::metadata(dir.join(store::ROOTFS)).unwrap().len(),
        rootfs.size
    );
}

#[test]
fn debian_image_tree_has_agent_workspace_and_tools() {
    let (dir, _, _) = real_build();
    // Numeric owners of every entry, without unpacking.
    let out = std::process::Command::new("unsquashfs")
        .args(["-lln", "-d", ""])
        .arg(dir.join(store::ROOTFS))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let listing = text(&out.stdout);
    let entry = |path: &str| {
        listing
            .lines()
            .find(|l| {
                // `mode owner size date time path` or `... path -> target` for a symlink.
                let l = l.split(" -> ").next().unwrap_or_default();
                l.split_whitespace().last() == Some(path)
            })
            .unwrap_or_else(|| panic!("{path} not in the image"))
            .to_string()
    };
    assert!(
        entry("/workspace").starts_with("drwx"),
        "{}",
        entry("/workspace")
    );
    assert!(
        entry("/workspace").contains(" 1000/1000 "),
        "{}",
        entry("/workspace")
    );
    assert!(
        entry("/home/agent").contains(" 1000/1000 "),
        "{}",
        entry("/home/agent")
    );
    assert!(
        entry("/run/airlock").contains(" 0/0 "),
        "{}",
        entry("/run/airlock")
    );
    for tool in [
        "/usr/bin/git",
        "/usr/bin/curl",
        "/usr/bin/python3",
        "/usr/bin/pip3",
        "/usr/bin/node",
        "/usr/bin/npm",
        "/usr/bin/gcc",
        "/usr/bin/make",
        "/usr/bin/rg",
        "/usr/bin/jq",
        "/usr/bin/less",
        "/usr/bin/ssh",
        "/usr/bin/bash",
    ] {
        let _ = entry(tool);
    }
    // No apt lists or package cache left behind.
    assert!(
        !listing
            .lines()
            .any(|l| l.contains("/var/lib/apt/lists/deb.debian.org") || l.ends_with(".deb")),
        "apt caches left in the image"
    );
    let files = |path: &str| {
        let out = std::process::Command::new("unsquashfs")
            .args(["-cat"])
            .arg(dir.join(store::ROOTFS))
            .arg(path)
            .output()
            .unwrap();
        text(&out.stdout)
    };
    assert_eq!(files("/etc/hostname"), "airlock\n");
    assert!(files("/etc/hosts").contains("127.0.0.1\tlocalhost"));
    assert!(
        files("/etc/passwd").contains("agent:x:1000:1000::/home/agent:/bin/bash"),
        "{}",
        files("/etc/passwd")
    );
    let sources = files("/etc/apt/sources.list");
    for suite in [
        "bookworm main",
        "bookworm-updates main",
        "bookworm-security main",
    ] {
        assert!(sources.contains(suite), "{sources}");
    }
}

#[test]
fn debian_image_tools_run_in_a_chroot() {
    // Mounting the squashfs needs root and a loop device.
    if !airlock_testkit::require_root("mounting the image's squashfs") {
        return;
    }
    let (dir, _, _) = real_build();
    let mnt = tempfile::tempdir().unwrap();
    let mount = std::process::Command::new("mount")
        .args(["-t", "squashfs", "-o", "loop,ro"])
        .arg(dir.join(store::ROOTFS))
        .arg(mnt.path())
        .output()
        .unwrap();
    assert!(
        mount.status.success(),
        "cannot mount the squashfs (root without a loop device?): {}",
        text(&mount.stderr)
    );
    struct Unmount<'a>(&'a Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(self.0).status();
        }
    }
    let _guard = Unmount(mnt.path());
    for argv in [
        &["git", "--version"][..],
        &["curl", "--version"],
        &["python3", "-c", "import ssl, venv, ensurepip; print('ok')"],
        &["pip3", "--version"],
        &["node", "-e", "console.log(1 + 1)"],
        &["npm", "--version"],
        &["gcc", "--version"],
        &["make", "--version"],
        &["rg", "--version"],
        &["jq", "--version"],
        &["less", "--version"],
        &["ssh", "-V"],
        &["bash", "-c", "id agent"],
    ] {
        let out = std::process::Command::new("/usr/sbin/chroot")
            .arg(mnt.path())
            .args(argv)
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("HOME", "/root")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{argv:?} failed in the image: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
    }
}

#[test]
fn debian_image_check_against_the_archives() {
    let (dir, m, built_now) = real_build();
    let cache = tempfile::tempdir().unwrap();
    install(cache.path(), &m, &dir.join(store::ROOTFS));

    // Against a mirror holding exactly what was installed: current.
    let mirror = Mirror::bookworm(archives_as_built(&m));
    let out = mirror.image(cache.path(), &["check"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );

    // Against deb.debian.org: a fresh image is current; an older one may have updates.
    let out = Airlock::start()
        .command(["image", "check", "--json"])
        .env("AIRLOCK_CACHE", cache.path())
        .output()
        .unwrap();
    let code = out.status.code();
    assert!(matches!(code, Some(0 | 1)), "{}", text(&out.stderr));
    let report: debian::CheckReport = serde_json::from_slice(&out.stdout).unwrap();
    if built_now {
        // The kernel follows the host's linux-source package, which may lag the archive.
        assert_eq!(report.updates, vec![], "a fresh image has updates");
        if !report.kernel.security {
            assert_eq!(code, Some(0));
        }
    }

    // Record an older version of a package the security archive supplied (or of any package
    // when it supplied none) in a copy of the manifest: listed, and exit 1 when it is a
    // security update.
    let mut old = m.clone();
    let i = old
        .packages
        .iter()
        .position(|p| p.archive.as_deref() == Some("bookworm-security"))
        .unwrap_or(0);
    let from_security = old.packages[i].archive.as_deref() == Some("bookworm-security");
    let real_version = old.packages[i].version.clone();
    old.packages[i].version = "0~airlock.test".into();
    let cache2 = tempfile::tempdir().unwrap();
    install(cache2.path(), &old, &dir.join(store::ROOTFS));
    let out = Airlock::start()
        .command(["image", "check"])
        .env("AIRLOCK_CACHE", cache2.path())
        .output()
        .unwrap();
    let stdout = text(&out.stdout);
    let line = format!("{}  0~airlock.test -> ", old.packages[i].name);
    assert!(stdout.contains(&line), "{line} not in\n{stdout}");
    if from_security {
        assert_eq!(out.status.code(), Some(1), "{stdout}");
        assert!(
            stdout.contains(&format!("-> {real_version}  [security]")) || !built_now,
            "{stdout}"
        );
    }

    // Deterministically, against the local mirror.
    let out = mirror.image(cache2.path(), &["check"]);
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(&format!("0~airlock.test -> {real_version}")),
        "{stdout}"
    );
    assert_eq!(
        out.status.code(),
        Some(if from_security { 1 } else { 0 }),
        "{stdout}"
    );
}

#[test]
fn debian_image_open_refuses_a_corrupt_copy() {
    let (dir, m, _) = real_build();
    let cache = tempfile::tempdir().unwrap();
    let copy = cache.path().join("rootfs-copy.squashfs");
    std::fs::copy(dir.join(store::ROOTFS), &copy).unwrap();
    install(cache.path(), &m, &copy);

    let img = debian::open(&Cache::at(cache.path()), "debian").unwrap();
    assert_eq!(img.build_id, m.build_id);
    assert_eq!(img.manifest, m);
    drop(img);

    // Flip one byte in the middle.
    let mut bytes = std::fs::read(&copy).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&copy, bytes).unwrap();
    let err = debian::open(&Cache::at(cache.path()), "debian")
        .unwrap_err()
        .to_string();
    assert!(err.contains("image debian"), "{err}");
    assert!(err.contains(&m.build_id), "{err}");
    assert!(
        err.contains(&m.artefact(store::ROOTFS).unwrap().sha256),
        "{err}"
    );
    assert!(err.contains("airlock image build --kind debian"), "{err}");
}

#[test]
fn image_build_failure_names_the_step_and_keeps_only_the_log() {
    if !airlock_testkit::require_root("debootstrap runs as root") {
        return;
    }
    assert!(
        Path::new("/usr/sbin/debootstrap").exists(),
        "/usr/sbin/debootstrap is missing; scripts/setup installs it"
    );
    let cache = tempfile::tempdir().unwrap();
    // Any file will do as the kernel: the build fails before it is used.
    let kernel = cache.path().join("vmlinux");
    std::fs::write(&kernel, b"not a kernel").unwrap();
    let out = Airlock::start()
        .command(["image", "build", "--kind", "debian", "--name", "broken"])
        .env("AIRLOCK_CACHE", cache.path())
        .env("AIRLOCK_KERNEL", &kernel)
        .env("AIRLOCK_DEBIAN_MIRROR", "http://127.0.0.1:9/debian")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125));
    let err = text(&out.stderr);
    let log = cache.path().join("images/broken/.build/build.log");
    assert!(
        err.contains(&format!(
            "debootstrap: downloading and unpacking the base system failed (log: {})",
            log.display()
        )),
        "{err}"
    );
    assert!(
        err.contains("Failed getting release file http://127.0.0.1:9/debian"),
        "{err}"
    );
    // Nothing half-made: no chroot tree, no build, no `current`; the log stays.
    let left: Vec<String> = walk(&cache.path().join("images/broken"));
    assert_eq!(left, [".build", ".build/build.log", "build.lock"]);
}

/// Paths below `dir`, relative and sorted.
fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            out.push(p.strip_prefix(dir).unwrap().display().to_string());
            if e.file_type().unwrap().is_dir() {
                stack.push(p);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn debian_run_has_git_python_and_node() {
    debian_image();
    let a = Airlock::start();
    let out = a.run([
        "run",
        "--image",
        "debian",
        "--",
        "sh",
        "-c",
        "git --version && python3 --version && node --version && id -u",
    ]);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].starts_with("git version "), "{stdout}");
    assert!(lines[1].starts_with("Python 3."), "{stdout}");
    assert!(lines[2].starts_with('v'), "{stdout}");
    assert_eq!(lines[3], "1000", "{stdout}");
    let log = a.audit();
    let start = log.first(kind::SANDBOX_START);
    assert!(
        start
            .detail
            .as_deref()
            .is_some_and(|d| d.contains("image debian (build ")),
        "{log}"
    );
    a.assert_clean();
}

#[test]
fn debian_run_refuses_a_tampered_image_naming_it() {
    let (dir, m, _) = real_build();
    let cache = tempfile::tempdir().unwrap();
    let copy = cache.path().join("rootfs-copy.squashfs");
    std::fs::copy(dir.join(store::ROOTFS), &copy).unwrap();
    install(cache.path(), &m, &copy);
    let mut f = std::fs::OpenOptions::new().write(true).open(&copy).unwrap();
    use std::io::{Seek, SeekFrom};
    f.seek(SeekFrom::Start(4096)).unwrap();
    f.write_all(&[0x5a]).unwrap();
    drop(f);
    // The kernel comes from the real cache, so the private cache builds nothing slow.
    let kernel = airlock_image::kernel::cached(&Cache::from_env().unwrap())
        .unwrap()
        .expect("the kernel is cached once the debian image is built");
    let a = Airlock::start();
    let out = a
        .command(["run", "--image", "debian", "--", "true"])
        .env("AIRLOCK_CACHE", cache.path())
        .env("AIRLOCK_KERNEL", &kernel.vmlinux)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("image debian (build ") && err.contains("is corrupt"),
        "{err}"
    );
    a.assert_clean();
}

/// A private cache holding a copy of the real cached kernel (so nothing slow is built).
fn cache_with_kernel_copy() -> (tempfile::TempDir, PathBuf) {
    let real = airlock_image::kernel::cached(&Cache::from_env().unwrap())
        .unwrap()
        .expect("the kernel is built (any run builds it)");
    let cache = tempfile::tempdir().unwrap();
    let dir = cache.path().join("kernel").join(&real.key);
    std::fs::create_dir_all(&dir).unwrap();
    let src = real.vmlinux.parent().unwrap();
    for f in ["vmlinux", "manifest.json"] {
        std::fs::copy(src.join(f), dir.join(f)).unwrap();
    }
    (cache, dir.join("vmlinux"))
}

fn flip_byte(path: &Path, at: u64) {
    use std::io::{Seek, SeekFrom};
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut b = [0u8; 1];
    f.seek(SeekFrom::Start(at)).unwrap();
    std::io::Read::read_exact(&mut f, &mut b).unwrap();
    f.seek(SeekFrom::Start(at)).unwrap();
    f.write_all(&[b[0] ^ 0xff]).unwrap();
}

#[test]
fn a_tampered_kernel_or_tiny_image_refuses_to_boot() {
    let (cache, vmlinux) = cache_with_kernel_copy();
    let a = Airlock::start();
    let run = || {
        a.command(["run", "--", "true"])
            .env("AIRLOCK_CACHE", cache.path())
            .output()
            .unwrap()
    };
    // Untouched copies boot.
    let ok = run();
    assert!(ok.status.success(), "{}", text(&ok.stderr));
    // The tiny image, now built in the private cache, has one byte changed.
    let cpio = std::fs::read_dir(cache.path().join("images"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "cpio"))
        .unwrap();
    flip_byte(&cpio, 1000);
    let out = run();
    assert_eq!(out.status.code(), Some(125));
    let err = text(&out.stderr);
    assert!(err.contains("image tiny is corrupt"), "{err}");
    assert!(err.contains(&cpio.display().to_string()), "{err}");
    // Removing it, as the message says, builds it again.
    std::fs::remove_file(&cpio).unwrap();
    assert!(run().status.success());
    flip_byte(&vmlinux, 4096);
    let out = run();
    assert_eq!(out.status.code(), Some(125));
    let err = text(&out.stderr);
    assert!(
        err.contains("kernel ") && err.contains("is corrupt"),
        "{err}"
    );
    a.assert_clean();
}
