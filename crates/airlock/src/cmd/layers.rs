//! Package layers before a run: `airlock run` builds the layers its policy names
//! (`sandbox.layers`, e.g. `docker`) on first use with progress, before it boots or hands the run
//! to a daemon, so the launch finds them cached. Called by `cmd/run.rs`.

use super::image::{format_secs, format_size, with_progress};
use airlock_image::Cache;
use airlock_image::layer::{self, store};
use airlock_supervisor::launch::{PolicyChoice, load_policy};
use anyhow::Context;
use std::path::Path;
use std::time::Instant;

/// Builds each layer the policy names that is not cached for the image it boots. A policy that
/// does not load, or names no layer, is left to the launch, which reports it.
pub(crate) async fn prepare_for_run(
    choice: PolicyChoice,
    image: Option<&str>,
    workspace: &Path,
) -> anyhow::Result<()> {
    let Ok(loaded) = load_policy(&choice, Some(workspace)) else {
        return Ok(());
    };
    let limits = loaded.policy.sandbox();
    let image = image.unwrap_or(&limits.image).to_string();
    let wanted: Vec<layer::Layer> = limits.layers.iter().filter_map(|n| layer::get(n)).collect();
    if wanted.is_empty() || image == "tiny" || image.starts_with("oci:") {
        return Ok(());
    }
    tokio::task::spawn_blocking(move || build_missing(&image, &wanted))
        .await
        .context("the layer build task")?
}

fn build_missing(image: &str, wanted: &[layer::Layer]) -> anyhow::Result<()> {
    let cache = Cache::from_env()?;
    // The launch reports an image that is not built.
    let Ok(opened) = airlock_image::debian::open(&cache, image) else {
        return Ok(());
    };
    for l in wanted {
        if store::open(&cache, l, &opened)?.is_some() {
            continue;
        }
        crate::ui::note!(
            "airlock: building layer {} ({}) over image {} (build {}), once; cached under {}",
            l.name,
            l.packages.join(" "),
            opened.name,
            opened.build_id,
            cache.root().join("layers").display()
        );
        let started = Instant::now();
        let built = with_progress(&format!("layer {}", l.name), |bar| {
            layer::build::ensure(&cache, l, &opened, bar)
        })
        .with_context(|| format!("building layer {} over image {}", l.name, opened.name))?;
        let m = &built.manifest;
        crate::ui::note!(
            "airlock: built layer {} in {}: {} packages, {} ({})",
            m.layer,
            format_secs(started.elapsed().as_secs()),
            m.packages.len(),
            format_size(m.artefacts.first().map_or(0, |a| a.size)),
            m.key
        );
    }
    Ok(())
}
