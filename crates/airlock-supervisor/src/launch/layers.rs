//! The policy's package layers (`sandbox.layers`, e.g. `docker`): each is found for the
//! Debian build the sandbox boots, built on first use when missing (silently here; `airlock
//! run` builds it with progress before it launches), and checked against its manifest.
//! Called by [`super::prepare`] once the image is open.

use super::LaunchError;
use airlock_image::debian::OpenedImage;
use airlock_image::layer::{self, store::OpenedLayer};
use airlock_image::{Cache, ImageError};
use airlock_policy::Policy;

/// Opens every layer the policy names over `image`, which is handed back (it is held in use
/// while the sandbox runs). `field` and `origin` name the policy in errors.
pub(super) async fn open(
    policy: &Policy,
    image: Option<OpenedImage>,
    image_name: &str,
    field: &'static str,
    origin: &str,
) -> Result<(Option<OpenedImage>, Vec<OpenedLayer>), LaunchError> {
    let names = policy.sandbox().layers.clone();
    if names.is_empty() {
        return Ok((image, Vec::new()));
    }
    let Some(image) = image else {
        return Err(LaunchError::invalid(
            field,
            format!(
                "{origin}: sandbox.layers = {names:?} go over a Debian image, not {image_name:?}; \
                 set sandbox.image = \"debian\" (built with `airlock image build --kind debian`)"
            ),
        ));
    };
    if image.manifest.oci.is_some() {
        return Err(LaunchError::invalid(
            field,
            format!(
                "{origin}: sandbox.layers = {names:?} go over airlock's Debian image, not the \
                 imported image {image_name:?}"
            ),
        ));
    }
    let mut wanted = Vec::new();
    for name in &names {
        wanted.push(layer::get(name).ok_or_else(|| {
            LaunchError::invalid(field, format!("{origin}: no shipped layer {name:?}"))
        })?);
    }
    let cache = Cache::from_env().map_err(|source| LaunchError::Image {
        what: "opening the image cache".into(),
        source: Box::new(source),
    })?;
    let (image, opened) = tokio::task::spawn_blocking(move || {
        let bar = indicatif::ProgressBar::hidden();
        let opened: Result<Vec<OpenedLayer>, Box<(String, ImageError)>> = wanted
            .iter()
            .map(|l| {
                layer::build::ensure(&cache, l, &image, &bar).map_err(|e| {
                    Box::new((format!("layer {} over image {}", l.name, image.name), e))
                })
            })
            .collect();
        (image, opened)
    })
    .await
    .map_err(|_| LaunchError::Task("the layer check task failed"))?;
    let opened = opened.map_err(|e| {
        let (what, source) = *e;
        LaunchError::Image {
            what,
            source: Box::new(source),
        }
    })?;
    Ok((Some(image), opened))
}

/// `, layers docker (key …)` for the sandbox's description; empty without layers.
pub(super) fn describe(layers: &[OpenedLayer]) -> String {
    layers
        .iter()
        .map(|l| format!(", layer {} ({})", l.name, l.manifest.key))
        .collect()
}
