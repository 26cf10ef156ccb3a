//! Schema to validated [`Policy`]: merges the `extends` layers, applies defaults, parses every
//! size, duration, path, glob and host pattern, and checks the entries against each other.
//! One module per policy section (`sandbox`, `filesystem`, `network`, `process`), each
//! extending the validator state of `ctx`.
//!
//! Every bad entry is reported, each with the key path it came from; `load.rs` turns key paths
//! into `file:line:column`. The only I/O is checking that shared host directories exist.

mod credentials;
mod ctx;
mod filesystem;
mod network;
mod process;
mod sandbox;
mod values;

use crate::path_set::PathRules;
use crate::policy::Policy;
use crate::source::{Env, Layer, Loc, Source};
use crate::validation_error::ValidationError;
use ctx::Ctx;

/// Merges and validates the layers of one `extends` chain (lowest first).
pub(crate) fn build(
    layers: &[Layer],
    sources: &[Source],
    env: &Env,
) -> Result<Policy, Vec<(Loc, ValidationError)>> {
    let mut cx = Ctx {
        sources,
        top: layers.last().map_or(0, |l| l.src),
        env,
        errors: Vec::new(),
    };
    let sandbox = cx.sandbox(layers);
    let mounts = cx.mounts(layers);
    let (protected, unprotected) = cx.protected(layers);
    let max_open = cx.max_open(layers);
    let quota = cx.quota(layers, sandbox.disk_bytes);
    let deny_write = cx.globs(layers, "filesystem.deny_write", |f| {
        &f.filesystem.deny_write
    });
    let deny_read = cx.globs(layers, "filesystem.deny_read", |f| &f.filesystem.deny_read);
    cx.mount_path_globs(layers, &mounts);
    let network = cx.network(layers);
    let process = cx.process(layers);
    let audit = cx.audit(layers);
    let monitor = cx.monitor(layers);
    if !cx.errors.is_empty() {
        return Err(cx.errors);
    }
    Ok(Policy {
        source: crate::policy::PolicySource::default(),
        sandbox,
        mounts,
        protected: PathRules::new(protected),
        deny_write: PathRules::new(deny_write),
        deny_read: PathRules::new(deny_read),
        network,
        process,
        audit,
        monitor,
        unprotected,
        max_open,
        quota,
        reserved: Vec::new(),
    })
}

#[cfg(test)]
mod tests;
