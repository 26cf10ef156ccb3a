//! Chooses the accelerator by probing the host, never by guessing.
//!
//! KVM is used only when `/dev/kvm` is backed by hardware virtualization. A software PVM module
//! (`/sys/module/kvm_pvm`) also provides `/dev/kvm`, but a stock guest kernel crawls under it, so
//! such hosts get TCG like hosts without `/dev/kvm`.

use std::fmt;
use std::path::Path;

/// The accelerator QEMU runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    /// Hardware virtualization through `/dev/kvm`.
    Kvm,
    /// QEMU's multi-threaded software emulation.
    Tcg,
}

impl fmt::Display for Accel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        })
    }
}

/// The probe's answer and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccelChoice {
    /// What to use.
    pub accel: Accel,
    /// One sentence saying why.
    pub reason: String,
}

/// What the probe looks at; split out so the decision is testable without a host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostFacts {
    /// `/dev/kvm` exists.
    pub dev_kvm: bool,
    /// `/dev/kvm` can be opened read-write by us.
    pub dev_kvm_usable: bool,
    /// `/sys/module/kvm_pvm` exists.
    pub kvm_pvm: bool,
    /// `kvm_intel` or `kvm_amd` is loaded.
    pub kvm_hw_module: Option<String>,
    /// The CPU advertises vmx or svm.
    pub cpu_virt_flag: bool,
}

impl HostFacts {
    /// Reads the facts from this host.
    pub fn read() -> HostFacts {
        let dev_kvm = Path::new("/dev/kvm").exists();
        let dev_kvm_usable = dev_kvm
            && std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/kvm")
                .is_ok();
        let kvm_hw_module = ["kvm_intel", "kvm_amd"]
            .into_iter()
            .find(|m| Path::new("/sys/module").join(m).exists())
            .map(str::to_string);
        let cpu_virt_flag = std::fs::read_to_string("/proc/cpuinfo")
            .map(|s| {
                s.lines()
                    .filter(|l| l.starts_with("flags"))
                    .any(|l| l.split_whitespace().any(|f| f == "vmx" || f == "svm"))
            })
            .unwrap_or(false);
        HostFacts {
            dev_kvm,
            dev_kvm_usable,
            kvm_pvm: Path::new("/sys/module/kvm_pvm").exists(),
            kvm_hw_module,
            cpu_virt_flag,
        }
    }
}

/// Decides from `facts`.
pub fn decide(facts: &HostFacts) -> AccelChoice {
    let tcg = |reason: &str| AccelChoice {
        accel: Accel::Tcg,
        reason: reason.to_string(),
    };
    if !facts.dev_kvm {
        return tcg("/dev/kvm does not exist (no hardware virtualization exposed to this host)");
    }
    if facts.kvm_pvm {
        return tcg(
            "/dev/kvm is provided by the software PVM module (/sys/module/kvm_pvm), under which a \
             stock guest kernel is too slow",
        );
    }
    if !facts.dev_kvm_usable {
        return tcg("/dev/kvm exists but cannot be opened read-write by this user");
    }
    match &facts.kvm_hw_module {
        Some(module) => AccelChoice {
            accel: Accel::Kvm,
            reason: format!("/dev/kvm is backed by hardware virtualization ({module})"),
        },
        None if facts.cpu_virt_flag => AccelChoice {
            accel: Accel::Kvm,
            reason: "/dev/kvm is usable and the CPU has vmx/svm".to_string(),
        },
        None => {
            tcg("/dev/kvm exists but neither kvm_intel/kvm_amd nor a vmx/svm CPU flag is present")
        }
    }
}

/// Probes this host; `AIRLOCK_ACCEL=kvm|tcg` overrides (recorded in the reason).
pub fn probe() -> AccelChoice {
    match std::env::var("AIRLOCK_ACCEL").as_deref() {
        Ok("tcg") => AccelChoice {
            accel: Accel::Tcg,
            reason: "forced by AIRLOCK_ACCEL=tcg".into(),
        },
        Ok("kvm") => AccelChoice {
            accel: Accel::Kvm,
            reason: "forced by AIRLOCK_ACCEL=kvm".into(),
        },
        _ => decide(&HostFacts::read()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions() {
        let none = HostFacts::default();
        assert_eq!(decide(&none).accel, Accel::Tcg);
        let pvm = HostFacts {
            dev_kvm: true,
            dev_kvm_usable: true,
            kvm_pvm: true,
            ..none.clone()
        };
        let c = decide(&pvm);
        assert_eq!(c.accel, Accel::Tcg);
        assert!(c.reason.contains("kvm_pvm"), "{}", c.reason);
        let hw = HostFacts {
            dev_kvm: true,
            dev_kvm_usable: true,
            kvm_hw_module: Some("kvm_intel".into()),
            ..none.clone()
        };
        assert_eq!(
            decide(&hw),
            AccelChoice {
                accel: Accel::Kvm,
                reason: "/dev/kvm is backed by hardware virtualization (kvm_intel)".into()
            }
        );
        let locked = HostFacts {
            dev_kvm_usable: false,
            ..hw.clone()
        };
        assert_eq!(decide(&locked).accel, Accel::Tcg);
        let flag_only = HostFacts {
            dev_kvm: true,
            dev_kvm_usable: true,
            cpu_virt_flag: true,
            ..none
        };
        assert_eq!(decide(&flag_only).accel, Accel::Kvm);
    }
}
