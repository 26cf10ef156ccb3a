//! Compiles the lists in `syscalls.rs` into BPF programs and installs them.
//!
//! Two kinds of filter: the engine's deny-list (everything else allowed, QEMU's own `-sandbox`
//! filter comes on top) and the gateways' allow-lists (everything else EPERM). Both refuse
//! `clone` with namespace flags and answer `clone3` with ENOSYS, whose flags live in memory a
//! filter cannot read, so libc falls back to `clone`.

use crate::JailError;
use crate::syscalls::{ENGINE_DENY, GATEWAY_BASE, Syscall};
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};
use std::collections::BTreeMap;

/// Whether this kernel can filter system calls with seccomp.
pub fn available() -> bool {
    // SAFETY: PR_GET_SECCOMP takes no pointer arguments and only reports this thread's mode;
    // EINVAL means the kernel was built without seccomp.
    unsafe { libc::prctl(libc::PR_GET_SECCOMP, 0, 0, 0, 0) >= 0 }
}

/// Every `CLONE_NEW*` flag: `clone` with any of them makes namespaces (as `unshare` does).
pub const CLONE_NS_FLAGS: u64 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWCGROUP) as u64;

fn filter_err(e: seccompiler::Error) -> JailError {
    JailError::Seccomp(e)
}

fn compile(
    rules: BTreeMap<i64, Vec<SeccompRule>>,
    mismatch: SeccompAction,
    matched: SeccompAction,
) -> Result<BpfProgram, JailError> {
    SeccompFilter::new(rules, mismatch, matched, TargetArch::x86_64)
        .map_err(|e| filter_err(e.into()))?
        .try_into()
        .map_err(|e: seccompiler::BackendError| filter_err(e.into()))
}

fn arg0(op: SeccompCmpOp, value: u64) -> Result<SeccompRule, JailError> {
    let c = SeccompCondition::new(0, SeccompCmpArgLen::Qword, op, value)
        .map_err(|e| filter_err(e.into()))?;
    SeccompRule::new(vec![c]).map_err(|e| filter_err(e.into()))
}

/// `clone3` answers ENOSYS, everything else passes to the next filter.
pub fn clone3_enosys() -> Result<BpfProgram, JailError> {
    let rules: BTreeMap<i64, Vec<SeccompRule>> = [(libc::SYS_clone3, Vec::new())].into();
    compile(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
    )
}

/// The engine's deny-list filter: [`ENGINE_DENY`] and `clone` with any namespace flag refused
/// with EPERM.
pub fn engine_filter() -> Result<BpfProgram, JailError> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> =
        ENGINE_DENY.iter().map(|s| (s.nr, Vec::new())).collect();
    // Matches (and is refused) unless every namespace bit is clear: "any bit set", one rule per
    // flag.
    let per_flag = (0..64)
        .map(|bit| 1u64 << bit)
        .filter(|f| CLONE_NS_FLAGS & f != 0)
        .map(|f| arg0(SeccompCmpOp::MaskedEq(f), f))
        .collect::<Result<Vec<_>, _>>()?;
    rules.insert(libc::SYS_clone, per_flag);
    compile(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
    )
}

/// The engine's filters, in the order they are installed: the deny-list, then `clone3`.
pub fn engine_filters() -> Result<Vec<BpfProgram>, JailError> {
    Ok(vec![engine_filter()?, clone3_enosys()?])
}

/// A gateway's filter: exactly [`GATEWAY_BASE`] and `extra` allowed, everything else EPERM.
/// `clone` is allowed only without namespace flags, `unshare` only for `CLONE_FS`.
pub fn allow_list(extra: &[Syscall]) -> Result<BpfProgram, JailError> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for s in GATEWAY_BASE.iter().chain(extra) {
        let conditions = match s.nr {
            libc::SYS_clone => vec![arg0(SeccompCmpOp::MaskedEq(CLONE_NS_FLAGS), 0)?],
            libc::SYS_unshare => vec![arg0(SeccompCmpOp::Eq, libc::CLONE_FS as u64)?],
            _ => Vec::new(),
        };
        rules.insert(s.nr, conditions);
    }
    compile(
        rules,
        SeccompAction::Errno(libc::EPERM as u32),
        SeccompAction::Allow,
    )
}

/// Installs `filter` on the calling thread (and the threads it starts later), then the
/// `clone3` filter, installed last so its errno wins.
pub fn install_with_clone3(filter: &BpfProgram) -> Result<(), JailError> {
    let clone3 = clone3_enosys()?;
    for f in [filter, &clone3] {
        seccompiler::apply_filter(f).map_err(filter_err)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syscalls::{EGRESS_GATEWAY, FS_GATEWAY};

    #[test]
    fn every_filter_compiles() {
        assert!(!engine_filter().unwrap().is_empty());
        assert_eq!(engine_filters().unwrap().len(), 2);
        assert!(!allow_list(FS_GATEWAY).unwrap().is_empty());
        assert!(!allow_list(EGRESS_GATEWAY).unwrap().is_empty());
    }
}
