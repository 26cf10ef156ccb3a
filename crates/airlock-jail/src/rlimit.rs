//! Resource limits of our own processes.

use nix::sys::resource::{Resource, getrlimit, setrlimit};

/// Raises this process's `RLIMIT_NOFILE` as far as it may go and returns the soft limit now in
/// force: up to the kernel's `nr_open` with `CAP_SYS_RESOURCE`, else up to the hard limit.
/// Never lowers it.
pub fn raise_nofile() -> u64 {
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return 0;
    };
    let nr_open = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(hard);
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
    fn never_lowers_the_limit() {
        let (before, _) =
            nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).unwrap();
        assert!(super::raise_nofile() >= before);
    }
}
