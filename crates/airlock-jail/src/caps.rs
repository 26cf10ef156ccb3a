//! Capability sets: the bounding set, the ambient set and the process's own sets.
//!
//! Every function here makes raw system calls only on integers and locals, so the engine's
//! jail can call them between fork and exec.

use std::io;

/// `_LINUX_CAPABILITY_VERSION_3`: 64-bit capability sets in two [`CapData`] words.
const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// `struct __user_cap_header_struct`.
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

/// `struct __user_cap_data_struct`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// The bit of capability number `cap` in a 64-bit mask.
pub fn mask(caps: &[u32]) -> u64 {
    caps.iter()
        .filter(|&&c| c < 64)
        .fold(0, |m, c| m | (1u64 << c))
}

/// Drops every capability not in `keep` from the bounding set (needs `CAP_SETPCAP`, so call it
/// before a uid switch) and clears the ambient set. Async-signal-safe.
pub fn drop_bounding(keep: u64) {
    for cap in 0..64u32 {
        if keep & (1u64 << cap) == 0 {
            // SAFETY: prctl with integer arguments; an unknown capability number only fails.
            unsafe { libc::prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(cap), 0, 0, 0) };
        }
    }
    // SAFETY: prctl with integer arguments.
    unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        )
    };
}

/// Sets the effective and permitted sets to exactly `keep` and the inheritable set to none.
/// Async-signal-safe.
pub fn set_own(keep: u64) -> io::Result<()> {
    let mut header = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let low = (keep & 0xffff_ffff) as u32;
    let high = (keep >> 32) as u32;
    let data = [
        CapData {
            effective: low,
            permitted: low,
            inheritable: 0,
        },
        CapData {
            effective: high,
            permitted: high,
            inheritable: 0,
        },
    ];
    // SAFETY: capset reads a header and two data words from live locals of the layout the
    // kernel expects for version 3.
    // JUSTIFICATION: neither nix nor std wraps capset.
    if unsafe { libc::syscall(libc::SYS_capset, &raw mut header, data.as_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Keeps only `keep` in every set (bounding, ambient, effective, permitted, inheritable).
pub fn keep_only(keep: &[u32]) -> io::Result<()> {
    let m = mask(keep);
    drop_bounding(m);
    set_own(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks() {
        assert_eq!(mask(&[]), 0);
        assert_eq!(mask(&[0, 1, 40]), 0b11 | (1 << 40));
        assert_eq!(mask(&[64, 200]), 0);
    }
}
