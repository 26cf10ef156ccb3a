//! Installed kits against their registries' latest versions, for `airlock image check`.

use super::{Kit, registry, store};
use serde::{Deserialize, Serialize};

/// An installed kit against its registry, for `airlock image check`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KitStatus {
    /// Kit name.
    pub kit: String,
    /// Package.
    pub package: String,
    /// Installed version.
    pub installed: String,
    /// The registry's latest version, when it answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest: Option<String>,
    /// Why the registry could not be asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl KitStatus {
    /// Whether the registry has a newer version than the one installed.
    pub fn outdated(&self) -> bool {
        self.latest
            .as_deref()
            .is_some_and(|l| registry::is_newer(l, &self.installed))
    }
}

/// Every installed kit against its registry's latest version (asked in parallel).
pub fn check_installed(cache: &crate::Cache) -> Vec<KitStatus> {
    let installed: Vec<(Kit, String)> = super::all()
        .into_iter()
        .filter_map(|k| {
            let (_, m) = store::current(cache, &k.name).ok().flatten()?;
            Some((k, m.version))
        })
        .collect();
    let kits: Vec<Kit> = installed.iter().map(|(k, _)| k.clone()).collect();
    installed
        .iter()
        .zip(registry::latest_versions(&kits))
        .map(|((k, version), answer)| {
            let (latest, error) = match answer {
                Ok(v) => (Some(v), None),
                Err(e) => (None, Some(e.to_string())),
            };
            KitStatus {
                kit: k.name.clone(),
                package: k.install.package.clone(),
                installed: version.clone(),
                latest,
                error,
            }
        })
        .collect()
}
