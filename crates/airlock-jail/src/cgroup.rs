//! Host cgroup limits on the engine: memory, CPU and process count, on cgroup v2 or v1.
//!
//! Each sandbox gets a group `airlock-<id>` beside the cgroup airlock itself runs in (per
//! controller on v1). The engine enters it between fork and exec, so everything it starts is
//! counted from its first instruction. A guest that breaks into QEMU still cannot take more host
//! memory, CPU or tasks than its sandbox was given.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Why host cgroup limits cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// The unified hierarchy lacks a controller.
    #[error("cgroup v2 without the {0} controller")]
    MissingV2Controller(&'static str),
    /// A v1 controller is not mounted.
    #[error("cgroup v1 without a mounted {0} controller")]
    MissingV1Controller(&'static str),
    /// A cgroup file could not be read or written.
    #[error("{what} {}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// A setting names a controller without a group (a bug in [`settings`]).
    #[error("no group for controller {0}")]
    NoGroup(&'static str),
    /// A group path holds a NUL byte.
    #[error("{} contains NUL", .0.display())]
    Nul(PathBuf),
}

/// Limits for one engine process tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Memory in bytes (guest RAM plus the engine's own needs).
    pub memory_bytes: u64,
    /// CPU time as a fraction of one CPU, in percent (200 = two CPUs).
    pub cpu_percent: u32,
    /// Most tasks (threads count) at once.
    pub pids: u32,
}

impl Limits {
    /// Limits for an engine with `cpus` vCPUs and `guest_mib` of guest memory: the guest's
    /// memory plus 512 MiB for the engine (TCG's translation cache is the largest part), one CPU
    /// more than the vCPUs for the I/O thread, and 256 tasks.
    pub fn for_engine(cpus: u32, guest_mib: u64) -> Limits {
        Limits {
            memory_bytes: guest_mib.saturating_add(512).saturating_mul(1024 * 1024),
            cpu_percent: cpus.saturating_add(1).saturating_mul(100),
            pids: 256,
        }
    }
}

/// Which cgroup hierarchy the host has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hierarchy {
    /// cgroup v2: one tree at this mount point.
    V2(PathBuf),
    /// cgroup v1: one tree per controller, each at its own mount point.
    V1 {
        /// The memory controller's mount.
        memory: PathBuf,
        /// The cpu controller's mount.
        cpu: PathBuf,
        /// The pids controller's mount.
        pids: PathBuf,
    },
}

/// The files to write for `limits`, relative to the group directory, per hierarchy.
pub fn settings(v2: bool, limits: Limits) -> Vec<(&'static str, &'static str, String)> {
    const PERIOD: u64 = 100_000;
    let quota = u64::from(limits.cpu_percent) * PERIOD / 100;
    if v2 {
        vec![
            ("", "memory.max", limits.memory_bytes.to_string()),
            ("", "memory.swap.max", "0".into()),
            ("", "cpu.max", format!("{quota} {PERIOD}")),
            ("", "pids.max", limits.pids.to_string()),
        ]
    } else {
        vec![
            (
                "memory",
                "memory.limit_in_bytes",
                limits.memory_bytes.to_string(),
            ),
            ("cpu", "cpu.cfs_period_us", PERIOD.to_string()),
            ("cpu", "cpu.cfs_quota_us", quota.to_string()),
            ("pids", "pids.max", limits.pids.to_string()),
        ]
    }
}

/// Parses `/proc/self/cgroup`: the path of this process's group for `controller` (v1), or the
/// unified path (`""`, v2).
pub fn own_group(proc_cgroup: &str, controller: &str) -> Option<String> {
    proc_cgroup.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let hit = if controller.is_empty() {
            controllers.is_empty()
        } else {
            controllers.split(',').any(|c| c == controller)
        };
        hit.then(|| path.to_string())
    })
}

/// Finds the host's hierarchy from its mounts, if the controllers airlock needs are there.
pub fn detect() -> Result<Hierarchy, CgroupError> {
    let root = Path::new("/sys/fs/cgroup");
    if root.join("cgroup.controllers").exists() {
        let have = std::fs::read_to_string(root.join("cgroup.controllers")).unwrap_or_default();
        for c in ["memory", "cpu", "pids"] {
            if !have.split_whitespace().any(|x| x == c) {
                return Err(CgroupError::MissingV2Controller(c));
            }
        }
        return Ok(Hierarchy::V2(root.to_path_buf()));
    }
    let find = |c: &'static str| {
        [
            c.to_string(),
            format!("{c},cpuacct"),
            format!("cpuacct,{c}"),
        ]
        .into_iter()
        .map(|n| root.join(n))
        .find(|p| p.join("cgroup.procs").exists())
        .ok_or(CgroupError::MissingV1Controller(c))
    };
    Ok(Hierarchy::V1 {
        memory: find("memory")?,
        cpu: find("cpu")?,
        pids: find("pids")?,
    })
}

/// A sandbox's engine group; removed on drop (once the engine has exited).
#[derive(Debug)]
pub struct EngineGroup {
    dirs: Vec<PathBuf>,
    procs: Vec<CString>,
    /// "v1" or "v2", for reports.
    pub version: &'static str,
}

impl EngineGroup {
    /// Creates `airlock-<id>` beside airlock's own group(s) and applies `limits`.
    pub fn create(id: &str, limits: Limits) -> Result<EngineGroup, CgroupError> {
        let hierarchy = detect()?;
        let own =
            std::fs::read_to_string("/proc/self/cgroup").map_err(|source| CgroupError::Io {
                what: "reading",
                path: "/proc/self/cgroup".into(),
                source,
            })?;
        let name = format!("airlock-{id}");
        let (version, dirs): (&'static str, Vec<(&'static str, PathBuf)>) = match &hierarchy {
            Hierarchy::V2(root) => {
                // v2 forbids processes in a group whose children use controllers ("no internal
                // processes"), so engine groups go under a dedicated `airlock` group at the root.
                let base = root.join("airlock");
                create_dir(&base)?;
                enable_controllers(root)?;
                enable_controllers(&base)?;
                ("v2", vec![("", base.join(&name))])
            }
            Hierarchy::V1 { memory, cpu, pids } => {
                let mut dirs = Vec::new();
                for (controller, mount) in [("memory", memory), ("cpu", cpu), ("pids", pids)] {
                    let rel = own_group(&own, controller).unwrap_or_else(|| "/".into());
                    let parent = mount.join(rel.trim_start_matches('/'));
                    dirs.push((controller, parent.join(&name)));
                }
                ("v1", dirs)
            }
        };
        let mut group = EngineGroup {
            dirs: Vec::new(),
            procs: Vec::new(),
            version,
        };
        for (_, dir) in &dirs {
            create_dir(dir)?;
            group.dirs.push(dir.clone());
            let procs = dir.join("cgroup.procs");
            group.procs.push(
                CString::new(procs.as_os_str().as_bytes())
                    .map_err(|_| CgroupError::Nul(procs.clone()))?,
            );
        }
        for (controller, file, value) in settings(version == "v2", limits) {
            let Some(dir) = dirs
                .iter()
                .find(|(c, _)| controller.is_empty() || *c == controller)
                .map(|(_, d)| d)
            else {
                return Err(CgroupError::NoGroup(controller));
            };
            let path = dir.join(file);
            // memory.swap.max is absent without swap accounting; the memory limit still holds.
            if file == "memory.swap.max" && !path.exists() {
                continue;
            }
            std::fs::write(&path, &value).map_err(|source| CgroupError::Io {
                what: "writing the limit to",
                path: path.clone(),
                source,
            })?;
        }
        Ok(group)
    }

    /// The group directories (one on v2, one per controller on v1).
    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    /// Between fork and exec: moves the calling process into the group(s).
    pub fn enter_in_child(&self) -> io::Result<()> {
        for procs in &self.procs {
            // SAFETY: open, write and close are async-signal-safe; `procs` is a NUL-terminated
            // path prepared before fork; writing "0" moves the writer itself.
            // JUSTIFICATION: std's file APIs allocate, which is not allowed between fork and exec.
            unsafe {
                let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                if fd < 0 {
                    return Err(io::Error::last_os_error());
                }
                let n = libc::write(fd, b"0".as_ptr().cast(), 1);
                libc::close(fd);
                if n != 1 {
                    return Err(io::Error::last_os_error());
                }
            }
        }
        Ok(())
    }
}

impl Drop for EngineGroup {
    fn drop(&mut self) {
        for dir in &self.dirs {
            // Fails while the engine still runs; the next sandbox's sweep removes it then.
            let _ = std::fs::remove_dir(dir);
        }
    }
}

fn create_dir(dir: &Path) -> Result<(), CgroupError> {
    match std::fs::create_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(source) => Err(CgroupError::Io {
            what: "creating",
            path: dir.to_path_buf(),
            source,
        }),
    }
}

fn enable_controllers(dir: &Path) -> Result<(), CgroupError> {
    let path = dir.join("cgroup.subtree_control");
    std::fs::write(&path, "+memory +cpu +pids").map_err(|source| CgroupError::Io {
        what: "enabling controllers in",
        path,
        source,
    })
}

/// Groups younger than this are never swept: their engine may be about to enter.
const SWEEP_MIN_AGE: std::time::Duration = std::time::Duration::from_secs(60);

/// Removes empty `airlock-*` groups that earlier sandboxes left (a killed airlock cannot clean
/// up); groups with live processes refuse removal and stay, and groups made in the last minute
/// are left alone (another sandbox may just be starting its engine).
pub fn sweep() {
    let Ok(hierarchy) = detect() else { return };
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let parents: Vec<PathBuf> = match hierarchy {
        Hierarchy::V2(root) => vec![root.join("airlock")],
        Hierarchy::V1 { memory, cpu, pids } => [("memory", memory), ("cpu", cpu), ("pids", pids)]
            .into_iter()
            .map(|(c, m)| {
                let rel = own_group(&own, c).unwrap_or_else(|| "/".into());
                m.join(rel.trim_start_matches('/'))
            })
            .collect(),
    };
    for parent in parents {
        let Ok(entries) = std::fs::read_dir(&parent) else {
            continue;
        };
        for e in entries.flatten() {
            let old_enough = e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age >= SWEEP_MIN_AGE);
            if old_enough && e.file_name().to_string_lossy().starts_with("airlock-") {
                let _ = std::fs::remove_dir(e.path());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_for_an_engine() {
        let l = Limits::for_engine(2, 512);
        assert_eq!(l.memory_bytes, 1024 * 1024 * 1024);
        assert_eq!(l.cpu_percent, 300);
    }

    #[test]
    fn v2_and_v1_settings() {
        let l = Limits {
            memory_bytes: 1 << 30,
            cpu_percent: 150,
            pids: 64,
        };
        let v2 = settings(true, l);
        assert!(v2.contains(&("", "memory.max", "1073741824".into())));
        assert!(v2.contains(&("", "cpu.max", "150000 100000".into())));
        assert!(v2.contains(&("", "pids.max", "64".into())));
        let v1 = settings(false, l);
        assert!(v1.contains(&("memory", "memory.limit_in_bytes", "1073741824".into())));
        assert!(v1.contains(&("cpu", "cpu.cfs_quota_us", "150000".into())));
        assert!(v1.contains(&("pids", "pids.max", "64".into())));
    }

    #[test]
    fn own_group_on_both_hierarchies() {
        let v1 = "9:name=systemd:/\n4:memory:/svc/abc\n2:cpu,cpuacct:/x\n1:pids:/\n0::/\n";
        assert_eq!(own_group(v1, "memory").as_deref(), Some("/svc/abc"));
        assert_eq!(own_group(v1, "cpu").as_deref(), Some("/x"));
        assert_eq!(own_group(v1, "pids").as_deref(), Some("/"));
        assert_eq!(own_group(v1, "").as_deref(), Some("/"));
        let v2 = "0::/user.slice/session-1.scope\n";
        assert_eq!(
            own_group(v2, "").as_deref(),
            Some("/user.slice/session-1.scope")
        );
        assert_eq!(own_group(v2, "memory"), None);
    }
}
