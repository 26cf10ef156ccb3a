//! The policy's mounts as gateway shares; `overlay` mounts get a private copy first, with the
//! policy kept beside it so `airlock apply` decides the same way later.

use super::error::LaunchError;
use crate::Notifier;
use airlock_fs::{Overlay, Share};
use airlock_policy::{MountHost, MountMode, Policy};
use serde::{Deserialize, Serialize};
use std::os::unix::fs::DirBuilderExt;
use std::path::PathBuf;
use std::time::Duration;

/// How the policy of a sandbox was given, kept so `apply` can decide with it later.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PolicySource {
    /// Policy text as loaded.
    pub text: String,
    /// The file it came from (relative host paths resolve against its directory).
    pub origin_path: PathBuf,
    /// The workspace bound to the policy's workspace mount.
    pub workspace: Option<PathBuf>,
}

/// `meta.json` beside a sandbox's overlay copies.
#[derive(Debug, Serialize, Deserialize)]
pub struct OverlayMeta {
    /// The policy the sandbox ran with.
    pub policy: PolicySource,
    /// (mount index, guest path) of each overlay mount.
    pub mounts: Vec<(usize, String)>,
}

/// Where overlays are kept: `$AIRLOCK_OVERLAY_DIR`, else `~/.local/state/airlock/overlays`.
pub fn overlays_dir() -> Result<PathBuf, LaunchError> {
    if let Some(d) = std::env::var_os("AIRLOCK_OVERLAY_DIR") {
        return Ok(PathBuf::from(d));
    }
    if let Some(d) = std::env::var_os("XDG_STATE_HOME") {
        return Ok(PathBuf::from(d).join("airlock/overlays"));
    }
    let home = std::env::var_os("HOME").ok_or(LaunchError::NoDir {
        what: "overlays",
        vars: "AIRLOCK_OVERLAY_DIR or HOME",
    })?;
    Ok(PathBuf::from(home).join(".local/state/airlock/overlays"))
}

/// The policy's mounts as gateway shares; `overlay` mounts get a fresh copy first.
pub fn prepare_shares(
    id: &str,
    policy: &Policy,
    source: &PolicySource,
    notify: &Notifier,
) -> Result<Vec<Share>, LaunchError> {
    let mut shares = Vec::new();
    let mut overlays = Vec::new();
    for (i, m) in policy.mounts().iter().enumerate() {
        let host_dir = match &m.host {
            MountHost::Path(p) => p.clone(),
            MountHost::Workspace => return Err(LaunchError::NoWorkspace(m.guest.clone())),
        };
        if m.mode != MountMode::Overlay {
            shares.push(Share {
                host_dir,
                guest_path: m.guest.clone(),
                mode: m.mode,
            });
            continue;
        }
        let root = overlays_dir()?;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(root.join(id))
            .map_err(|source| LaunchError::Io {
                what: "creating",
                path: root.join(id),
                source,
            })?;
        let dir = root.join(id).join(i.to_string());
        let mut last_report = std::time::Instant::now();
        let mut progress = |files: u64, bytes: u64| {
            if last_report.elapsed() > Duration::from_secs(2) {
                notify.note(&format!(
                    "airlock: copying {} for the overlay: {files} files, {} MiB",
                    host_dir.display(),
                    bytes >> 20
                ));
                last_report = std::time::Instant::now();
            }
        };
        let ov = Overlay::create(&host_dir, &dir, Some(&mut progress)).map_err(|source| {
            LaunchError::Overlay {
                host: host_dir.clone(),
                copy: dir.clone(),
                source,
            }
        })?;
        for s in ov.skipped() {
            notify.note(&format!(
                "airlock: overlay: skipped {} ({:?})",
                s.path.escape_debug(),
                s.reason
            ));
        }
        shares.push(Share {
            host_dir: ov.upper().to_owned(),
            guest_path: m.guest.clone(),
            mode: MountMode::Overlay,
        });
        overlays.push((i, m.guest.clone()));
    }
    if !overlays.is_empty() {
        let meta = OverlayMeta {
            policy: source.clone(),
            mounts: overlays,
        };
        let path = overlays_dir()?.join(id).join("meta.json");
        let json = serde_json::to_vec_pretty(&meta).map_err(|e| LaunchError::Io {
            what: "encoding",
            path: path.clone(),
            source: e.into(),
        })?;
        std::fs::write(&path, json).map_err(|source| LaunchError::Io {
            what: "writing",
            path,
            source,
        })?;
    }
    Ok(shares)
}
