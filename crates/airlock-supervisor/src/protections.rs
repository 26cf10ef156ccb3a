//! Host protections airlock can give a sandbox, probed on this host: what `airlock doctor` lists
//! and what a policy's `sandbox.require` is checked against before anything boots.

use airlock_vm::Accel;

/// One protection and whether this host gives it.
#[derive(Debug, Clone)]
pub struct Protection {
    /// Name as used in `sandbox.require`.
    pub name: &'static str,
    /// Whether a sandbox started now gets it.
    pub available: bool,
    /// What it is here, or why it is missing.
    pub detail: String,
}

/// Probes every protection in [`airlock_policy::PROTECTIONS`].
pub fn probe() -> Vec<Protection> {
    let accel = airlock_vm::accel::probe();
    let root = nix::unistd::geteuid().is_root();
    vec![
        Protection {
            name: "kvm",
            available: accel.accel == Accel::Kvm,
            detail: format!("{} ({})", accel.accel, accel.reason),
        },
        Protection {
            name: "engine-namespaces",
            available: root,
            detail: if root {
                "QEMU in its own mount, pid, network, IPC and UTS namespaces, pivoted into a \
                 per-sandbox root, under its own uid"
                    .into()
            } else {
                "needs root (airlock runs as an ordinary user); QEMU still gets no capabilities, \
                 no_new_privs and both seccomp filters"
                    .into()
            },
        },
        host_cgroups(),
        match airlock_jail::landlock::abi_version() {
            Some(abi) => Protection {
                name: "landlock",
                available: true,
                detail: format!(
                    "Landlock ABI {abi}: the gateways and helpers write only where they serve"
                ),
            },
            None => Protection {
                name: "landlock",
                available: false,
                detail: "the kernel has no Landlock (or it is not in the `lsm=` list); the \
                         gateways keep their mount jails, seccomp filters and uid"
                    .into(),
            },
        },
        Protection {
            name: "seccomp",
            available: airlock_jail::seccomp::available(),
            detail: if airlock_jail::seccomp::available() {
                "seccomp filters on the engine, the gateways and the vsock backend".into()
            } else {
                "the kernel was built without seccomp".into()
            },
        },
    ]
}

/// The records that follow `sandbox.start`: one per layer, in force or not.
pub(crate) fn layer_events(layers: &[Protection]) -> Vec<airlock_audit::Event> {
    use airlock_audit::{Decision, Event, Source, kind};
    layers
        .iter()
        .map(|p| {
            Event::new(Source::Host, kind::SANDBOX_LAYER)
                .with_decision(if p.available {
                    Decision::Allow
                } else {
                    Decision::Deny
                })
                .with_rule(p.name)
                .with_detail(p.detail.clone())
        })
        .collect()
}

/// One line naming each layer in force and each missing one, for the first record of a run.
pub fn summary(layers: &[Protection]) -> String {
    layers
        .iter()
        .map(|p| {
            format!(
                "{} {} ({})",
                p.name,
                if p.available { "on" } else { "OFF" },
                p.detail
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn host_cgroups() -> Protection {
    // Sandboxes starting together in one daemon each probe a group of their own.
    static PROBES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = PROBES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let probe = airlock_jail::cgroup::EngineGroup::create(
        &format!("probe-{}-{n}", std::process::id()),
        airlock_jail::cgroup::Limits::for_engine(1, 64),
    );
    let (available, detail) = match probe {
        Ok(g) => (
            true,
            format!(
                "memory, cpu and pids limits on the engine (cgroup {})",
                g.version
            ),
        ),
        Err(why) => (false, airlock_jail::error_chain(&why)),
    };
    Protection {
        name: "host-cgroups",
        available,
        detail,
    }
}

/// A protection a policy requires that this host cannot give.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtectionError {
    /// Known, but missing here.
    #[error("this host cannot give the required protection {name:?}: {detail}")]
    Missing {
        /// The protection.
        name: String,
        /// Why it is missing.
        detail: String,
    },
    /// Not a protection airlock knows.
    #[error("unknown protection {0:?}")]
    Unknown(String),
}

/// Fails, naming the first protection in `required` this host cannot give and why.
pub fn check_required(required: &[String]) -> Result<(), ProtectionError> {
    if required.is_empty() {
        return Ok(());
    }
    let have = probe();
    for name in required {
        match have.iter().find(|p| p.name == name) {
            Some(p) if p.available => {}
            Some(p) => {
                return Err(ProtectionError::Missing {
                    name: name.clone(),
                    detail: p.detail.clone(),
                });
            }
            None => return Err(ProtectionError::Unknown(name.clone())),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_policy_protection_is_probed() {
        let names: Vec<&str> = probe().iter().map(|p| p.name).collect();
        assert_eq!(names, airlock_policy::PROTECTIONS);
    }

    #[test]
    fn nothing_required_always_passes() {
        assert!(check_required(&[]).is_ok());
        assert!(check_required(&["nope".into()]).is_err());
    }
}
