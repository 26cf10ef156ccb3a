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
    ]
}

fn host_cgroups() -> Protection {
    let probe = airlock_jail::cgroup::EngineGroup::create(
        &format!("probe-{}", std::process::id()),
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
