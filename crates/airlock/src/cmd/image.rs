//! `airlock image build|ls|check|update`: build the Debian guest image, list what is cached,
//! compare an image with the archives' current packages, and rebuild it with updates.
//!
//! The work is done by `airlock_image::debian`; this module draws progress, renders tables
//! and reports, and maps the check result to an exit code.

use airlock_image::debian::{self, BuildOptions, CheckReport, Mirrors};
use airlock_image::{Cache, kernel, tiny};
use airlock_supervisor::Images;
use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// `image check` exit code when security updates or a newer agent kit are pending.
const SECURITY_PENDING: u8 = 1;
/// `image check` exit code when the check could not be done (no image, mirror unreachable).
const CHECK_FAILED: u8 = 2;

/// Arguments of `airlock image`.
#[derive(Debug, Args)]
pub struct ImageArgs {
    #[command(subcommand)]
    command: ImageCommand,
}

#[derive(Debug, Subcommand)]
enum ImageCommand {
    /// Build an image (needs root; Debian takes several minutes) and make it current.
    Build {
        /// Recipe.
        #[arg(long, value_enum)]
        kind: Kind,
        /// Image name (the cache directory under images/).
        #[arg(long, default_value = debian::DEFAULT_NAME)]
        name: String,
    },
    /// Import an OCI image: an image layout directory, an OCI archive or a `docker save`
    /// archive (needs root: files keep their owners). Run it with `--image oci:NAME`.
    Import {
        /// The layout directory or archive file.
        source: std::path::PathBuf,
        /// Image name to store it under.
        #[arg(long)]
        name: String,
        /// Which image of the source, when it holds several: a ref name (`org.opencontainers.
        /// image.ref.name`) or, for `docker save` archives, a repo tag.
        #[arg(long = "ref", value_name = "REF")]
        reference: Option<String>,
    },
    /// List cached images: build id, age, size, packages (or an OCI image's digest) and the
    /// last check's result.
    Ls,
    /// Compare an image with the archives' current packages, and installed agent kits with
    /// their registries: exit 0 when nothing is pending, 1 when a security update or a newer
    /// agent kit is, 2 when the check could not be done.
    Check {
        /// Image name.
        #[arg(default_value = debian::DEFAULT_NAME)]
        name: String,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Rebuild an image with current packages, make it current, and remove old builds that no
    /// sandbox uses.
    Update {
        /// Image name.
        #[arg(default_value = debian::DEFAULT_NAME)]
        name: String,
    },
}

/// Image recipes.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum Kind {
    /// Debian bookworm with developer tools and every security update applied.
    Debian,
}

/// Runs `airlock image`.
pub fn main(args: ImageArgs) -> anyhow::Result<u8> {
    let cache = Cache::from_env()?;
    match args.command {
        ImageCommand::Build {
            kind: Kind::Debian,
            name,
        } => build(&cache, &name).map(|_| 0),
        ImageCommand::Import {
            source,
            name,
            reference,
        } => import(&cache, source, name, reference).map(|()| 0),
        ImageCommand::Ls => ls(&cache),
        ImageCommand::Check { name, json } => Ok(match check(&cache, &name, json) {
            Ok(code) => code,
            Err(e) => {
                crate::ui::note!("airlock: image check: {e:#}");
                CHECK_FAILED
            }
        }),
        ImageCommand::Update { name } => update(&cache, &name),
    }
}

/// Builds `name` with a spinner naming the step; without a terminal, prints each step instead.
fn build(cache: &Cache, name: &str) -> anyhow::Result<debian::Built> {
    let opts = BuildOptions {
        name: name.to_string(),
        mirrors: Mirrors::from_env(),
    };
    crate::ui::note!(
        "airlock: building image {name} (Debian bookworm; several minutes; cached under {})",
        cache.root().display()
    );
    let started = Instant::now();
    let built = with_progress(&format!("image {name}"), |bar| {
        debian::build(cache, &opts, bar)
    });
    let built = built.with_context(|| format!("building image {name}"))?;
    let m = &built.manifest;
    crate::ui::note!(
        "airlock: built image {name}: build {} in {}, {} packages, rootfs {} ({})",
        m.build_id,
        format_secs(started.elapsed().as_secs()),
        m.packages.len(),
        format_size(m.artefact(debian::store::ROOTFS).map_or(0, |a| a.size)),
        built.dir.join(debian::store::ROOTFS).display()
    );
    Ok(built)
}

/// `airlock image import`.
fn import(
    cache: &Cache,
    source: std::path::PathBuf,
    name: String,
    reference: Option<String>,
) -> anyhow::Result<()> {
    let opts = airlock_image::oci::ImportOptions {
        source,
        name: name.clone(),
        reference,
    };
    let started = Instant::now();
    let imported = with_progress(&format!("image {name}"), |bar| {
        airlock_image::oci::import(cache, &opts, bar)
    })
    .with_context(|| format!("importing {} as image {name}", opts.source.display()))?;
    let m = &imported.manifest;
    let Some(oci) = &m.oci else {
        anyhow::bail!("image {name}: the import wrote no OCI record");
    };
    crate::ui::note!(
        "airlock: imported {} ({}{}) as image {name}: build {} in {}, {} layer(s), {} entries, rootfs {}{}",
        opts.source.display(),
        oci.format,
        oci.reference
            .as_deref()
            .map(|r| format!(" {r}"))
            .unwrap_or_default(),
        m.build_id,
        format_secs(started.elapsed().as_secs()),
        oci.layers.len(),
        imported.stats.entries,
        format_size(m.artefact(debian::store::ROOTFS).map_or(0, |a| a.size)),
        if imported.stats.devices_skipped > 0 {
            format!(
                "; {} device node(s) left out",
                imported.stats.devices_skipped
            )
        } else {
            String::new()
        }
    );
    println!("{}", oci.digest);
    // Earlier imports under this name go, unless a sandbox still runs one.
    let gc = debian::gc(cache, &name).with_context(|| format!("removing old builds of {name}"))?;
    if !gc.removed.is_empty() {
        crate::ui::note!(
            "airlock: removed earlier imports: {}",
            gc.removed.join(", ")
        );
    }
    crate::ui::note!("airlock: run it with `airlock run --image oci:{name} -- CMD`");
    Ok(())
}

/// The image `name`, built now if it never was (the first `airlock run` of an agent).
pub(crate) fn ensure_built(cache: &Cache, name: &str) -> anyhow::Result<()> {
    if debian::current_build(cache, name)?.is_none() {
        build(cache, name)?;
    }
    Ok(())
}

/// Runs `work` with a spinner labelled `label` showing the step `work` sets on the bar; without
/// a terminal, prints each step as a line instead.
pub(crate) fn with_progress<T: Send>(
    label: &str,
    work: impl FnOnce(&ProgressBar) -> T + Send,
) -> T {
    let tty = std::io::stderr().is_terminal();
    let bar = if tty {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{spinner} {prefix} [{elapsed_precise}] {wide_msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.set_prefix(label.to_string());
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    } else {
        ProgressBar::hidden()
    };
    let done = std::sync::atomic::AtomicBool::new(false);
    let out = std::thread::scope(|s| {
        if !tty {
            s.spawn(|| report_steps(&bar, &done));
        }
        let r = work(&bar);
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        r
    });
    bar.finish_and_clear();
    out
}

/// Prints the build step when it changes, and the latest output line every minute, for logs.
fn report_steps(bar: &ProgressBar, done: &std::sync::atomic::AtomicBool) {
    let mut last_step = String::new();
    let mut last_note = Instant::now();
    while !done.load(std::sync::atomic::Ordering::Relaxed) {
        let msg = bar.message();
        let step = msg.split(" · ").next().unwrap_or_default().to_string();
        if !step.is_empty() && step != last_step {
            crate::ui::note!("airlock: {step}");
            last_step = step;
            last_note = Instant::now();
        } else if last_note.elapsed() >= Duration::from_secs(60) {
            crate::ui::note!("airlock: {msg} ({} s)", bar.elapsed().as_secs());
            last_note = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn ls(cache: &Cache) -> anyhow::Result<u8> {
    let mut rows = vec![[
        "NAME".to_string(),
        "BUILD".into(),
        "AGE".into(),
        "SIZE".into(),
        "PACKAGES".into(),
        "PATCHES".into(),
    ]];
    let tiny_row = match tiny::cached(cache) {
        Ok(Some(p)) => [
            "tiny".to_string(),
            "(built in)".into(),
            "-".into(),
            std::fs::metadata(&p).map_or("-".into(), |m| format_size(m.len())),
            "busybox".into(),
            "-".into(),
        ],
        Ok(None) => [
            "tiny".to_string(),
            "(built in)".into(),
            "-".into(),
            "-".into(),
            "busybox".into(),
            "built on first use".into(),
        ],
        Err(e) => [
            "tiny".to_string(),
            "(built in)".into(),
            "-".into(),
            "-".into(),
            "busybox".into(),
            e.to_string(),
        ],
    };
    rows.push(tiny_row);
    for b in debian::list(cache)? {
        let (packages, status) = match &b.manifest {
            Ok(m) if m.oci.is_some() => (
                "oci".to_string(),
                m.oci.as_ref().map_or(String::new(), |o| o.digest.clone()),
            ),
            Ok(m) => (
                m.packages.len().to_string(),
                b.check
                    .as_ref()
                    .map_or("unchecked".into(), CheckReport::summary),
            ),
            Err(e) => ("-".into(), format!("unreadable manifest: {e}")),
        };
        rows.push([
            format!("{}{}", b.name, if b.current { " *" } else { "" }),
            b.build_id,
            b.age.map_or("-".into(), format_age),
            format_size(b.size),
            packages,
            status,
        ]);
    }
    crate::ui::print_table(&rows);
    println!("(* = current build)");
    Ok(0)
}

fn check(cache: &Cache, name: &str, json: bool) -> anyhow::Result<u8> {
    let Some(build_id) = debian::current_build(cache, name)? else {
        return Err(airlock_image::ImageError::NotBuilt {
            name: name.to_string(),
        }
        .into());
    };
    let manifest_path = cache
        .root()
        .join("images")
        .join(name)
        .join(&build_id)
        .join(debian::store::MANIFEST);
    let manifest = debian::ImageManifest::read(&manifest_path)?;
    if let Some(oci) = &manifest.oci {
        anyhow::bail!(
            "image {name} was imported from {} ({}), not built from Debian's archives: import a \
             newer image to update it",
            oci.source,
            oci.digest
        );
    }
    let mirrors = Mirrors::from_env();
    let archives = debian::mirror::fetch_all(&mirrors).context("fetching the archives' indices")?;
    // The kernel that runs now, if it is built; else the one recorded with the image.
    let running_kernel = kernel::cached(cache).ok().flatten();
    let kernel_source = running_kernel.as_ref().and_then(|k| {
        k.manifest
            .source
            .split_once(' ')
            .map(|(_, v)| v.to_string())
    });
    let mut report = debian::check(
        &manifest,
        kernel_source.as_deref(),
        &archives,
        airlock_audit::Timestamp::now().to_string(),
    );
    // Kits layer over the image: an outdated agent is reported like a pending security fix.
    report.kits = airlock_image::kit::check_installed(cache);
    if let Err(e) = debian::save_report(cache, &report) {
        crate::ui::note!("airlock: could not save the check result: {e}");
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).context("encoding the report")?
        );
    } else {
        print_report(&report, &manifest);
    }
    Ok(
        if report.security_pending() || report.outdated_kits().next().is_some() {
            SECURITY_PENDING
        } else {
            0
        },
    )
}

fn print_report(report: &CheckReport, manifest: &debian::ImageManifest) {
    let age = debian::store::age_of(&manifest.built_at)
        .map_or(String::new(), |a| format!(", {} ago", format_age(a)));
    println!(
        "image {}: build {} (built {}{age}), {} packages",
        report.image,
        report.build_id,
        manifest.built_at,
        manifest.packages.len()
    );
    for a in &report.archives {
        println!("  archive {} {} of {}", a.url, a.suite, a.date);
    }
    let width = report
        .updates
        .iter()
        .map(|u| u.package.len())
        .max()
        .unwrap_or(0);
    for u in &report.updates {
        let mark = if u.security {
            "[security]".to_string()
        } else {
            format!("({})", u.archive)
        };
        println!(
            "  {:<width$}  {} -> {}  {mark}",
            u.package, u.installed, u.available
        );
    }
    let k = &report.kernel;
    match (&k.installed, &k.available) {
        (Some(i), Some(a)) => println!(
            "  kernel {} {i} -> {a}  {}; `apt-get install {}` on the host, then the next \
             `airlock run` rebuilds the kernel",
            k.package,
            if k.security {
                "[security]".to_string()
            } else {
                format!("({})", k.archive.as_deref().unwrap_or("?"))
            },
            k.package
        ),
        (Some(i), None) => println!("  kernel {} {i} is current", k.package),
        (None, _) => println!("  kernel {}: version unknown", k.package),
    }
    for k in &report.kits {
        match (&k.latest, &k.error) {
            (Some(latest), _) if k.outdated() => {
                println!("  agent kit {} {} -> {latest}  [agent]", k.kit, k.installed)
            }
            (Some(_), _) => println!("  agent kit {} {} is current", k.kit, k.installed),
            (None, Some(e)) => println!("  agent kit {} {}: not checked: {e}", k.kit, k.installed),
            (None, None) => {}
        }
    }
    let kits = report.outdated_kits().count();
    if kits > 0 {
        println!(
            "{kits} agent kit{} out of date; run `airlock image update {}`",
            if kits == 1 { "" } else { "s" },
            report.image
        );
    }
    if report.update_count() == 0 {
        println!("current: no updates");
    } else {
        println!(
            "{}; run `airlock image update {}`",
            report.summary(),
            report.image
        );
    }
}

fn update(cache: &Cache, name: &str) -> anyhow::Result<u8> {
    if let Some(build_id) = debian::current_build(cache, name)? {
        let path = debian::store::image_dir(cache, name)?
            .join(build_id)
            .join(debian::store::MANIFEST);
        if let Some(oci) = debian::ImageManifest::read(&path)?.oci {
            anyhow::bail!(
                "image {name} was imported from {} ({}): import a newer image to update it",
                oci.source,
                oci.digest
            );
        }
    }
    let kernel_hint = debian::last_report(cache, name).and_then(|r| r.kernel.available);
    build(cache, name)?;
    update_kits(cache)?;
    let gc = debian::gc(cache, name).with_context(|| format!("removing old builds of {name}"))?;
    if !gc.removed.is_empty() {
        crate::ui::note!("airlock: removed old builds: {}", gc.removed.join(", "));
    }
    if !gc.in_use.is_empty() {
        crate::ui::note!(
            "airlock: kept old builds still used by a sandbox: {} (removed by a later update)",
            gc.in_use.join(", ")
        );
    }
    if let Some(v) = kernel_hint {
        if nix::unistd::geteuid().is_root() {
            crate::ui::note!(
                "airlock: the last check found {} {v}; upgrading it with apt-get",
                kernel::SOURCE_PACKAGE
            );
            upgrade_kernel_source()?;
        } else {
            crate::ui::note!(
                "airlock: the last check found {} {v}: run `apt-get install {}` as root, then \
                 `airlock image update {name}` again",
                kernel::SOURCE_PACKAGE,
                kernel::SOURCE_PACKAGE
            );
        }
    }
    // The kernel for the host's linux-source, built now (cached by version: running sandboxes
    // keep the kernel they booted).
    let bar = indicatif::ProgressBar::new_spinner();
    bar.enable_steady_tick(Duration::from_millis(200));
    bar.set_message(format!(
        "guest kernel from the installed {}",
        kernel::SOURCE_PACKAGE
    ));
    let built = kernel::ensure(cache, &bar);
    bar.finish_and_clear();
    let k = built.context("building the guest kernel")?;
    crate::ui::note!(
        "airlock: guest kernel {} ({}) is current for new sandboxes",
        k.manifest.release,
        k.manifest.source
    );
    Ok(0)
}

/// Installs the registry's latest version of every installed kit that is behind, then removes
/// old builds no sandbox uses.
fn update_kits(cache: &Cache) -> anyhow::Result<()> {
    for status in airlock_image::kit::check_installed(cache) {
        let Some(kit) = airlock_image::kit::get(&status.kit) else {
            continue;
        };
        match (&status.latest, &status.error) {
            (Some(latest), _) if status.outdated() => {
                super::agent::install(cache, &kit.at_version(latest))?;
                let gc = airlock_image::kit::store::gc(cache, &kit.name)?;
                if !gc.removed.is_empty() {
                    crate::ui::note!(
                        "airlock: removed old builds of kit {}: {}",
                        kit.name,
                        gc.removed.join(", ")
                    );
                }
            }
            (Some(_), _) => crate::ui::note!(
                "airlock: agent kit {} {} is current",
                status.kit,
                status.installed
            ),
            (None, Some(e)) => crate::ui::note!(
                "airlock: agent kit {}: could not ask its registry ({e}); kept {}",
                status.kit,
                status.installed
            ),
            (None, None) => {}
        }
    }
    Ok(())
}

/// `apt-get update` and an upgrade of the kernel source package only.
fn upgrade_kernel_source() -> anyhow::Result<()> {
    for args in [
        vec!["update", "-q"],
        vec![
            "install",
            "-y",
            "-q",
            "--only-upgrade",
            kernel::SOURCE_PACKAGE,
        ],
    ] {
        let status = std::process::Command::new("apt-get")
            .args(&args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(std::process::Stdio::null())
            .status()
            .context("running apt-get")?;
        anyhow::ensure!(
            status.success(),
            "apt-get {} exited with {status}",
            args.join(" ")
        );
    }
    Ok(())
}

/// `3d`, `5h`, `12m`.
fn format_age(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..3600 => format!("{}m", s / 60),
        3600..86_400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

/// `312.4 MiB`.
pub(crate) fn format_size(bytes: u64) -> String {
    const MIB: u64 = 1024 * 1024;
    if bytes >= MIB {
        format!("{}.{} MiB", bytes / MIB, (bytes % MIB) * 10 / MIB)
    } else {
        format!("{} KiB", bytes.div_ceil(1024))
    }
}

/// `7m 12s`.
pub(crate) fn format_secs(s: u64) -> String {
    if s >= 60 {
        format!("{}m {}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

/// The kernel and the tiny initramfs, built on first use with a progress bar on a terminal
/// (and a line every 30 s otherwise).
pub(crate) async fn resolve_images(cache: Cache) -> anyhow::Result<Images> {
    let building = matches!(kernel::cached(&cache), Ok(None));
    let bar = if building {
        let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{spinner} building guest kernel [{elapsed_precise}] {bar:30} {pos}/~{len} {wide_msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.enable_steady_tick(Duration::from_millis(200));
        if !std::io::stderr().is_terminal() {
            crate::ui::note!(
                "airlock: building the guest kernel on first use (several minutes; cached under {})",
                cache.root().display()
            );
        }
        bar
    } else {
        ProgressBar::hidden()
    };
    let task_bar = bar.clone();
    // Without a terminal (CI logs) the bar is hidden: report progress as a line now and then.
    let reporter = (building && !std::io::stderr().is_terminal()).then(|| {
        let bar = bar.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(30));
            tick.tick().await;
            loop {
                tick.tick().await;
                crate::ui::note!(
                    "airlock: kernel build: {} of ~{} objects, {} s",
                    bar.position(),
                    bar.length().unwrap_or(0),
                    bar.elapsed().as_secs()
                );
            }
        })
    });
    let images = tokio::task::spawn_blocking(move || Images::resolve(&cache, &task_bar))
        .await
        .context("image build task")?;
    if let Some(r) = reporter {
        r.abort();
    }
    bar.finish_and_clear();
    if building && images.is_ok() && !std::io::stderr().is_terminal() {
        crate::ui::note!("airlock: guest kernel built");
    }
    Ok(images?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(format_age(Duration::from_secs(59)), "0m");
        assert_eq!(format_age(Duration::from_secs(7200)), "2h");
        assert_eq!(format_age(Duration::from_secs(3 * 86_400 + 5)), "3d");
        assert_eq!(format_size(300 * 1024 * 1024 + 512 * 1024), "300.5 MiB");
        assert_eq!(format_size(1500), "2 KiB");
        assert_eq!(format_secs(432), "7m 12s");
    }
}
