//! Resource limits of our own processes.

use nix::sys::resource::{Resource, getrlimit, setrlimit};

/// Highest `RLIMIT_NOFILE` we hand a gateway: beyond this a gateway has no use for more.
pub const NOFILE_CAP: u64 = 1 << 20;

/// `CAP_SYS_RESOURCE`: raising a hard limit.
const CAP_SYS_RESOURCE: u32 = 24;

/// Whether this process has `cap` in its effective set (`/proc/self/status`).
fn has_effective_cap(cap: u32) -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        })
        .is_some_and(|eff| eff & (1u64 << cap) != 0)
}

/// The kernel's `fs.nr_open` (the most any process may have), or `fallback` when unreadable.
fn nr_open(fallback: u64) -> u64 {
    std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(fallback)
}

/// The `RLIMIT_NOFILE` a process started now can be given: the kernel's `nr_open` when we may
/// raise the hard limit (`CAP_SYS_RESOURCE`; root in a container may lack it), else our own
/// hard limit; at most [`NOFILE_CAP`], never below our soft limit.
pub fn nofile_ceiling() -> u64 {
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return 0;
    };
    let nr_open = nr_open(hard);
    let can_raise = has_effective_cap(CAP_SYS_RESOURCE);
    let ceiling = if can_raise { nr_open.max(hard) } else { hard };
    ceiling.min(NOFILE_CAP).max(soft)
}

/// Raises this process's `RLIMIT_NOFILE` as far as it may go and returns the soft limit now in
/// force: up to the kernel's `nr_open` with `CAP_SYS_RESOURCE`, else up to the hard limit.
/// Never lowers it.
pub fn raise_nofile() -> u64 {
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return 0;
    };
    let nr_open = nr_open(hard);
    if nr_open > hard && setrlimit(Resource::RLIMIT_NOFILE, nr_open, nr_open).is_ok() {
        nr_open
    } else if hard > soft && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        hard
    } else {
        soft
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_ceiling_is_bounded_and_never_below_the_soft_limit() {
        let (soft, _) =
            nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).unwrap();
        let c = super::nofile_ceiling();
        assert!(c >= soft.min(super::NOFILE_CAP));
        assert!(c <= super::NOFILE_CAP.max(soft));
    }

    #[test]
    fn never_lowers_the_limit() {
        let (before, _) =
            nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).unwrap();
        assert!(super::raise_nofile() >= before);
    }
}
