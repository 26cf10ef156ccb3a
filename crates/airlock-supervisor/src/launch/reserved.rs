//! airlock's own files on this host, so that a share holding one exposes it read-only or not at
//! all (`airlock_policy::Policy::with_reserved`), decided here before boot whatever the policy
//! says.

use airlock_policy::{CredentialSource, HostFile, Policy, ReservedAccess};
use std::path::{Path, PathBuf};

/// Each of airlock's files and directories, canonical, with what a share may do with it.
/// `policy_file` is the file the policy was read from (none for a profile or API text).
pub fn airlock_files(
    policy_file: Option<&Path>,
    policy: &Policy,
) -> Vec<(PathBuf, ReservedAccess, &'static str)> {
    use ReservedAccess::{Hidden, ReadOnly};
    let mut out: Vec<(Option<PathBuf>, ReservedAccess, &'static str)> = vec![
        (policy_file.map(Path::to_path_buf), ReadOnly, "policy file"),
        (crate::default_audit_dir(), Hidden, "audit directory"),
        (airlock_audit::default_key_path(), Hidden, "audit key"),
        (crate::homes::data_dir(), Hidden, "data directory"),
        (crate::credentials::authority_dir().ok(), Hidden, "CA"),
        (Some(crate::state::state_root()), Hidden, "state directory"),
        (super::overlays_dir().ok(), Hidden, "overlays"),
        (
            airlock_image::Cache::from_env()
                .ok()
                .map(|c| c.root().to_path_buf()),
            ReadOnly,
            "image cache",
        ),
    ];
    if let Some(log) = &policy.audit().path {
        out.push((Some(log.clone()), Hidden, "audit log"));
        out.push((
            Some(airlock_audit::checkpoints_path(log)),
            Hidden,
            "audit checkpoints",
        ));
    }
    for c in policy.credentials() {
        if let CredentialSource::File(f) = &c.source {
            out.push((Some(f.clone()), Hidden, "credential file"));
        }
    }
    for ca in policy.extra_ca() {
        out.push((Some(ca.clone()), ReadOnly, "extra CA"));
    }
    out.into_iter()
        .filter_map(|(p, access, what)| Some((canonical(&p?), access, what)))
        .collect()
}

/// Adds the reserved entries of `files` to `policy`.
pub fn reserve(
    policy: Policy,
    files: &[(PathBuf, ReservedAccess, &'static str)],
) -> Result<Policy, airlock_policy::PolicyErrors> {
    let host_files: Vec<HostFile<'_>> = files
        .iter()
        .map(|(path, access, what)| HostFile {
            path,
            access: *access,
            what,
        })
        .collect();
    let reserved = policy.reserve(&host_files);
    policy.with_reserved(reserved)
}

/// `path` with its longest existing ancestor canonicalised (it may not exist yet: a log before
/// its first run), so it compares with the canonical share directories.
fn canonical(path: &Path) -> PathBuf {
    let mut rest = Vec::new();
    let mut at = path;
    loop {
        if let Ok(c) = std::fs::canonicalize(at) {
            return rest.iter().rev().fold(c, |p, name| p.join(name));
        }
        match (at.parent(), at.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_owned());
                at = parent;
            }
            _ => return path.to_path_buf(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_resolves_the_existing_part_only() {
        let dir = tempfile::tempdir().unwrap();
        let real = std::fs::canonicalize(dir.path()).unwrap();
        std::fs::create_dir(real.join("a")).unwrap();
        std::os::unix::fs::symlink(real.join("a"), real.join("link")).unwrap();
        assert_eq!(
            canonical(&real.join("link/new/log.jsonl")),
            real.join("a/new/log.jsonl")
        );
        assert_eq!(canonical(&real.join("a")), real.join("a"));
    }
}
