//! `airlock agent ls|install|homes`: the agent kits (Claude Code, Codex, Gemini CLI, aider),
//! installing one as an image layer, and the persistent homes agents keep per workspace.
//!
//! The kits are data (`images/kits/*.toml`, read by `airlock_image::kit`); installing runs the
//! registry's client on the host with package scripts off and packs a squashfs layer
//! (`airlock_image::kit::build`); homes live in `airlock_supervisor::homes`.

use super::image::{format_secs, format_size, with_progress};
use airlock_image::Cache;
use airlock_image::kit::{self, Kit, registry, store};
use anyhow::Context;
use clap::{Args, Subcommand};
use std::path::PathBuf;
use std::time::Instant;

/// Arguments of `airlock agent`.
#[derive(Debug, Args)]
pub struct AgentArgs {
    #[command(subcommand)]
    command: AgentCommand,
}

#[derive(Debug, Subcommand)]
enum AgentCommand {
    /// List the agent kits: command, pinned and installed version, the latest on the registry.
    Ls {
        /// Do not ask the registries for their latest versions.
        #[arg(long)]
        offline: bool,
    },
    /// Install a kit as an image layer (npm or PyPI, on the host, package scripts off).
    Install {
        /// Kit name (`airlock agent ls`).
        name: String,
        /// Version to install instead of the kit's pinned one (`latest` asks the registry).
        #[arg(long, value_name = "VERSION")]
        at: Option<String>,
    },
    /// List or remove the agents' persistent homes.
    Homes {
        #[command(subcommand)]
        command: Option<HomesCommand>,
    },
}

#[derive(Debug, Subcommand)]
enum HomesCommand {
    /// Remove the home of an agent for a workspace (its login, settings and sessions).
    Rm {
        /// Kit name.
        name: String,
        /// The workspace (default: the current directory).
        #[arg(long, value_name = "DIR")]
        workspace: Option<PathBuf>,
    },
}

/// Runs `airlock agent`.
pub fn main(args: AgentArgs) -> anyhow::Result<u8> {
    let cache = Cache::from_env()?;
    match args.command {
        AgentCommand::Ls { offline } => ls(&cache, offline),
        AgentCommand::Install { name, at } => {
            let kit = named(&name)?;
            let kit = match at.as_deref() {
                None => kit,
                Some("latest") => {
                    let v = registry::latest_version(&kit)?;
                    kit.at_version(&v)
                }
                Some(v) => kit.at_version(v),
            };
            install(&cache, &kit)?;
            Ok(0)
        }
        AgentCommand::Homes { command: None } => homes(),
        AgentCommand::Homes {
            command: Some(HomesCommand::Rm { name, workspace }),
        } => {
            let workspace = match workspace {
                Some(w) => std::path::absolute(&w)
                    .with_context(|| format!("--workspace {}", w.display()))?,
                None => std::env::current_dir().context("reading the current directory")?,
            };
            let workspace = workspace.canonicalize().unwrap_or(workspace);
            named(&name)?;
            let removed = airlock_supervisor::homes::remove(&name, &workspace)?;
            crate::ui::note!("airlock: removed {}", removed.display());
            Ok(0)
        }
    }
}

/// The shipped kit `name`, or an error listing them.
pub(crate) fn named(name: &str) -> anyhow::Result<Kit> {
    kit::get(name).ok_or_else(|| {
        let names: Vec<String> = kit::all().into_iter().map(|k| k.name).collect();
        anyhow::anyhow!("unknown agent kit {name:?}; kits: {}", names.join(", "))
    })
}

/// Installs `kit` with progress, and says where it went.
pub(crate) fn install(cache: &Cache, kit: &Kit) -> anyhow::Result<()> {
    crate::ui::note!(
        "airlock: installing agent kit {} {} ({} from {}; cached under {})",
        kit.name,
        kit.install.version,
        kit.install.package,
        kit.install.registry,
        cache.root().display()
    );
    let started = Instant::now();
    let installed = with_progress(&format!("kit {}", kit.name), |bar| {
        kit::build::install(cache, kit, bar)
    })
    .with_context(|| format!("installing agent kit {}", kit.name))?;
    let m = &installed.manifest;
    crate::ui::note!(
        "airlock: installed agent kit {} {} in {}: {} packages, layer {} (build {})",
        m.kit,
        m.version,
        format_secs(started.elapsed().as_secs()),
        m.packages.len(),
        format_size(m.artefacts.first().map_or(0, |a| a.size)),
        m.build_id
    );
    Ok(())
}

/// The kit installed now, installing the pinned version first if none is.
pub(crate) fn ensure_installed(cache: &Cache, kit: &Kit) -> anyhow::Result<()> {
    if store::current(cache, &kit.name)?.is_none() {
        install(cache, kit)?;
    }
    Ok(())
}

fn ls(cache: &Cache, offline: bool) -> anyhow::Result<u8> {
    let kits = kit::all();
    let latest = if offline {
        kits.iter().map(|_| Ok("-".to_string())).collect()
    } else {
        registry::latest_versions(&kits)
    };
    let mut rows = vec![[
        "NAME".to_string(),
        "COMMAND".into(),
        "PINNED".into(),
        "INSTALLED".into(),
        "LATEST".into(),
        "IMAGE".into(),
        "PROFILE".into(),
    ]];
    for (k, latest) in kits.iter().zip(latest) {
        let installed = match store::current(cache, &k.name) {
            Ok(Some((_, m))) => m.version,
            Ok(None) => "-".into(),
            Err(e) => format!("unreadable: {e}"),
        };
        let latest = match latest {
            Ok(v) if installed != "-" && registry::is_newer(&v, &installed) => {
                format!("{v} (update: airlock image update)")
            }
            Ok(v) => v,
            Err(_) => "? (registry unreachable)".into(),
        };
        rows.push([
            k.name.clone(),
            k.command.clone(),
            k.install.version.clone(),
            installed,
            latest,
            "debian + kit layer".into(),
            k.profile.clone(),
        ]);
    }
    crate::ui::print_table(&rows);
    Ok(0)
}

fn homes() -> anyhow::Result<u8> {
    let homes = airlock_supervisor::homes::list()?;
    if homes.is_empty() {
        println!(
            "no agent homes yet under {}",
            airlock_supervisor::homes::homes_dir()?.display()
        );
        return Ok(0);
    }
    let mut rows = vec![[
        "AGENT".to_string(),
        "WORKSPACE".into(),
        "SIZE".into(),
        "HOME".into(),
    ]];
    for h in homes {
        rows.push([
            h.record.kit.clone(),
            h.record.workspace.display().to_string(),
            format_size(h.bytes),
            h.path.display().to_string(),
        ]);
    }
    crate::ui::print_table(&rows);
    println!("remove one with `airlock agent homes rm AGENT --workspace DIR`");
    Ok(0)
}

/// Builds the Debian image and installs the kit if they never were (minutes, once), then says
/// in one line what the run uses (`image`: the run's `--image`; `chosen`: its policy or profile).
pub(super) async fn prepare_for_run(
    kit: Kit,
    image: Option<String>,
    chosen: String,
    workspace: &std::path::Path,
) -> anyhow::Result<()> {
    use airlock_image::debian;
    let cache = Cache::from_env()?;
    let k = kit.clone();
    let wanted = image.clone();
    let installed = tokio::task::spawn_blocking(move || {
        // Only the default image is built implicitly; another name is the user's to build.
        if wanted.as_deref().is_none_or(|i| i == debian::DEFAULT_NAME) {
            super::image::ensure_built(&cache, debian::DEFAULT_NAME)?;
        }
        ensure_installed(&cache, &k)?;
        Ok::<_, anyhow::Error>(kit::store::current(&cache, &k.name)?.map(|(_, m)| m.version))
    })
    .await
    .context("the kit install task")??;
    let home = airlock_supervisor::homes::homes_dir()
        .map(|d| d.join(&kit.name).display().to_string())
        .unwrap_or_default();
    crate::ui::note!(
        "airlock: agent kit {} {} ({}), image {}, {chosen}, home in {home} for {}",
        kit.name,
        installed.as_deref().unwrap_or("?"),
        kit.install.package,
        image.as_deref().unwrap_or(debian::DEFAULT_NAME),
        workspace.display()
    );
    Ok(())
}
