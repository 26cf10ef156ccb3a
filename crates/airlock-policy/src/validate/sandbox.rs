//! `[sandbox]`: image, layers, CPUs, memory, disk, pids, timeout and required protections.

use crate::policy::SandboxLimits;
use crate::source::Layer;
use crate::validation_error::ValidationError;

use super::ctx::{Ctx, Item, last};
use super::values::{parse_duration, parse_size};

/// Default `sandbox.image`.
const DEFAULT_IMAGE: &str = "tiny";
/// Default `sandbox.cpus`.
const DEFAULT_CPUS: u32 = 1;
/// Default `sandbox.memory` (512 MiB).
const DEFAULT_MEMORY: u64 = 512 << 20;
/// Default `sandbox.disk` (2 GiB).
const DEFAULT_DISK: u64 = 2 << 30;
/// Default `sandbox.pids`.
const DEFAULT_PIDS: u32 = 1024;
/// Longest image name.
const MAX_IMAGE_LEN: usize = 64;

impl Ctx<'_> {
    pub(super) fn sandbox(&mut self, layers: &[Layer]) -> SandboxLimits {
        let mut limits = SandboxLimits {
            image: DEFAULT_IMAGE.to_owned(),
            layers: Vec::new(),
            cpus: DEFAULT_CPUS,
            memory_bytes: DEFAULT_MEMORY,
            disk_bytes: DEFAULT_DISK,
            pids: DEFAULT_PIDS,
            timeout: None,
            require: Vec::new(),
        };
        if let Some(it) = last(layers, "sandbox.image", |f| &f.sandbox.image) {
            if valid_image(it.value) {
                limits.image.clone_from(it.value);
            } else {
                self.error(
                    it.src,
                    &it.key,
                    ValidationError::BadImage {
                        found: it.value.clone(),
                    },
                );
            }
        }
        if let Some(it) = last(layers, "sandbox.layers", |f| &f.sandbox.layers) {
            for (i, name) in it.value.iter().enumerate() {
                if !crate::policy::LAYERS.contains(&name.as_str()) {
                    self.error(
                        it.src,
                        &format!("{}[{i}]", it.key),
                        ValidationError::UnknownLayer {
                            found: name.clone(),
                            expected: crate::policy::LAYERS.join(", "),
                        },
                    );
                } else if !limits.layers.contains(name) {
                    limits.layers.push(name.clone());
                }
            }
        }
        if let Some(it) = last(layers, "sandbox.cpus", |f| &f.sandbox.cpus) {
            limits.cpus = self.at_least_one(&it);
        }
        if let Some(it) = last(layers, "sandbox.pids", |f| &f.sandbox.pids) {
            limits.pids = self.at_least_one(&it);
        }
        if let Some(it) = last(layers, "sandbox.memory", |f| &f.sandbox.memory) {
            limits.memory_bytes = self.size(&it).unwrap_or(DEFAULT_MEMORY);
        }
        if let Some(it) = last(layers, "sandbox.disk", |f| &f.sandbox.disk) {
            limits.disk_bytes = self.size(&it).unwrap_or(DEFAULT_DISK);
        }
        if let Some(it) = last(layers, "sandbox.require", |f| &f.sandbox.require) {
            for (i, name) in it.value.iter().enumerate() {
                if crate::policy::PROTECTIONS.contains(&name.as_str()) {
                    if !limits.require.contains(name) {
                        limits.require.push(name.clone());
                    }
                } else {
                    self.error(
                        it.src,
                        &format!("{}[{i}]", it.key),
                        ValidationError::UnknownProtection {
                            found: name.clone(),
                            expected: crate::policy::PROTECTIONS.join(", "),
                        },
                    );
                }
            }
        }
        if let Some(it) = last(layers, "sandbox.timeout", |f| &f.sandbox.timeout) {
            match parse_duration(it.value) {
                Some(d) => limits.timeout = Some(d),
                None => self.error(
                    it.src,
                    &it.key,
                    ValidationError::BadDuration {
                        found: it.value.clone(),
                    },
                ),
            }
        }
        limits
    }

    pub(super) fn at_least_one(&mut self, it: &Item<'_, u32>) -> u32 {
        if *it.value == 0 {
            self.error(
                it.src,
                &it.key,
                ValidationError::TooSmall { found: 0, min: 1 },
            );
            1
        } else {
            *it.value
        }
    }

    pub(super) fn size(&mut self, it: &Item<'_, String>) -> Option<u64> {
        let size = parse_size(it.value);
        if size.is_none() {
            self.error(
                it.src,
                &it.key,
                ValidationError::BadSize {
                    found: it.value.clone(),
                },
            );
        }
        size
    }
}

fn valid_image(name: &str) -> bool {
    name.len() <= MAX_IMAGE_LEN
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
        })
}
