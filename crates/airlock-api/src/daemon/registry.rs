//! The daemon's on-disk registry: one JSON record per live sandbox in `<state root>/daemon/`,
//! naming its state dir, audit log and host processes, so a daemon started after a crash (or a
//! `kill -9`) can find what the previous one left and reap it.
//!
//! Records are written before a sandbox boots (so a daemon killed mid-boot still leaves a trace)
//! and updated with the process ids once it runs. An exclusive `flock` on `daemon/lock` keeps a
//! second daemon off the same state root.
//!
//! Reaping a record: kill its recorded processes (checked by start time, so a recycled pid is
//! never hit) and any process whose command line names its state dir, detach mounts left under
//! the state dir, remove it, and close its audit log with `sandbox.end` "daemon restarted;
//! reaped" (the chain's own recovery cuts a half-written last line first).

use airlock_audit::{Chain, ChainOptions, Decision, Event, HostKey, Source, kind};
use serde::{Deserialize, Serialize};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The reason recorded in a reaped sandbox's `sandbox.end`.
pub const REAPED: &str = "daemon restarted; reaped";

/// A host process of a sandbox, identified beyond its pid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessRef {
    /// Host pid.
    pub pid: u32,
    /// Start time in clock ticks since boot (`/proc/<pid>/stat` field 22).
    pub start_time: u64,
}

impl ProcessRef {
    /// The process `pid` as it is now, if it exists.
    pub fn of(pid: u32) -> Option<ProcessRef> {
        Some(ProcessRef {
            pid,
            start_time: start_time(pid)?,
        })
    }

    /// Whether this very process (not a later one with the same pid) is still alive.
    pub fn alive(&self) -> bool {
        start_time(self.pid) == Some(self.start_time) && !is_zombie(self.pid)
    }
}

/// One sandbox as the registry knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SandboxRecord {
    /// Sandbox id.
    pub id: String,
    /// The pid of the daemon that started it.
    pub daemon_pid: u32,
    /// Its state dir.
    pub state_dir: PathBuf,
    /// Its audit log, if it records.
    pub audit_log: Option<PathBuf>,
    /// Its host processes (engine, helpers) once booted.
    pub processes: Vec<ProcessRef>,
    /// Creation time (RFC 3339).
    pub created_at: String,
}

/// Why the registry cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// Another daemon holds the lock.
    #[error("another airlock daemon is using {0} (its lock is held)")]
    Locked(PathBuf),
    /// File system trouble.
    #[error("registry {path}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

/// Why a reaped sandbox's end could not be recorded.
#[derive(Debug, thiserror::Error)]
pub enum ReapRecordError {
    /// The log could not be read.
    #[error("reading {}", .0.display())]
    Read(PathBuf, #[source] std::io::Error),
    /// The audit key could not be loaded.
    #[error("audit key {}", .0.display())]
    Key(PathBuf, #[source] airlock_audit::KeyError),
    /// The chain could not be resumed or extended.
    #[error("appending to the log")]
    Chain(#[from] airlock_audit::ChainError),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> RegistryError + '_ {
    move |source| RegistryError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The registry directory, locked by this daemon.
#[derive(Debug)]
pub struct Registry {
    dir: PathBuf,
    /// Held for the daemon's life; the kernel releases it when the process ends.
    _lock: nix::fcntl::Flock<std::fs::File>,
}

/// What reaping one record did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reaped {
    /// Sandbox id.
    pub id: String,
    /// Processes that were still alive and were killed.
    pub killed: Vec<u32>,
    /// Whether `sandbox.end` was recorded (false when the log already had one, or none exists).
    pub recorded: bool,
}

impl Registry {
    /// The registry under `state_root`.
    pub fn dir_in(state_root: &Path) -> PathBuf {
        state_root.join("daemon")
    }

    /// Creates (mode 0700) and locks the registry directory.
    pub fn open(dir: &Path) -> Result<Registry, RegistryError> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io_err(dir))?;
        let lock_path = dir.join("lock");
        let file = std::fs::File::create(&lock_path).map_err(io_err(&lock_path))?;
        let lock = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock)
            .map_err(|_| RegistryError::Locked(dir.to_path_buf()))?;
        Ok(Registry {
            dir: dir.to_path_buf(),
            _lock: lock,
        })
    }

    fn path_of(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    /// Writes (atomically replaces) a record.
    pub fn write(&self, record: &SandboxRecord) -> Result<(), RegistryError> {
        let path = self.path_of(&record.id);
        let tmp = self.dir.join(format!(".{}.json.tmp", record.id));
        let bytes = serde_json::to_vec_pretty(record)
            .map_err(|e| io_err(&path)(std::io::Error::other(e)))?;
        std::fs::write(&tmp, bytes).map_err(io_err(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io_err(&path))
    }

    /// Removes a record (absent is fine).
    pub fn remove(&self, id: &str) -> Result<(), RegistryError> {
        let path = self.path_of(id);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    /// Records left in the directory (by a previous daemon); unreadable ones are reported and
    /// removed.
    pub fn leftovers(&self) -> Vec<SandboxRecord> {
        let mut out = Vec::new();
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return out;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') && name.ends_with(".tmp") {
                let _ = std::fs::remove_file(&path);
                continue;
            }
            if !name.ends_with(".json") {
                continue;
            }
            match std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
            {
                Ok(record) => out.push(record),
                Err(why) => {
                    tracing::warn!(path = %path.display(), %why, "unreadable registry record; removing it");
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        out.sort_by(|a: &SandboxRecord, b| a.created_at.cmp(&b.created_at));
        out
    }

    /// Reaps what `record` left: processes, mounts, state dir; records the end in its audit log
    /// (signed with the key at `audit_key`); removes the record.
    pub fn reap(&self, record: &SandboxRecord, audit_key: Option<&Path>) -> Reaped {
        let mut reaped = Reaped {
            id: record.id.clone(),
            ..Reaped::default()
        };
        for p in &record.processes {
            if p.alive() {
                kill(p.pid);
                reaped.killed.push(p.pid);
            }
        }
        // Helpers started after the record was last written still name the state dir.
        for pid in processes_mentioning(&record.state_dir) {
            kill(pid);
            reaped.killed.push(pid);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline
            && record
                .processes
                .iter()
                .any(|p| reaped.killed.contains(&p.pid) && p.alive())
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        detach_mounts_under(&record.state_dir);
        // A claimed warm guest's dir is also reachable by the sandbox id, through a symlink.
        if let Some(alias) = record.state_dir.parent().map(|p| p.join(&record.id))
            && alias.is_symlink()
        {
            let _ = std::fs::remove_file(alias);
        }
        if let Err(e) = std::fs::remove_dir_all(&record.state_dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(dir = %record.state_dir.display(), error = %e, "could not remove a reaped sandbox's state dir");
        }
        if let Some(log) = &record.audit_log {
            match record_end(log, &record.id, audit_key) {
                Ok(recorded) => reaped.recorded = recorded,
                Err(e) => {
                    tracing::warn!(log = %log.display(), error = %airlock_jail::error_chain(&e), "could not record the reap")
                }
            }
        }
        airlock_jail::cgroup::sweep();
        if let Err(e) = self.remove(&record.id) {
            tracing::warn!(error = %e, "removing a reaped record");
        }
        reaped
    }

    /// Releases the lock and removes the directory if nothing else is in it.
    pub fn close(&self) {
        let _ = std::fs::remove_file(self.dir.join("lock"));
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// Appends `sandbox.end` with [`REAPED`] unless the log already ends the sandbox.
fn record_end(log: &Path, id: &str, key: Option<&Path>) -> Result<bool, ReapRecordError> {
    if !log.exists() {
        return Ok(false);
    }
    let text = std::fs::read(log).map_err(|e| ReapRecordError::Read(log.to_path_buf(), e))?;
    let ended = text.split(|b| *b == b'\n').any(|line| {
        airlock_audit::Record::parse(line).is_ok_and(|r| r.event.kind == kind::SANDBOX_END)
    });
    if ended {
        return Ok(false);
    }
    let options = match key {
        Some(k) => ChainOptions::new(
            id,
            HostKey::load_or_create(k).map_err(|e| ReapRecordError::Key(k.to_path_buf(), e))?,
        ),
        None => ChainOptions {
            sandbox: id.to_string(),
            key: None,
            checkpoints: Default::default(),
            fsync: Default::default(),
        },
    };
    // Opening resumes after the last complete record and records any cut-off tail.
    let (mut chain, _) = Chain::open(log, options)?;
    chain.append(
        &Event::new(Source::Host, kind::SANDBOX_END)
            .with_decision(Decision::Error)
            .with_detail(REAPED),
    )?;
    chain.finish()?;
    Ok(true)
}

/// `/proc/<pid>/stat` field 22, the start time.
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    rest.split_whitespace().nth(19)?.parse().ok()
}

fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let rest = s.get(s.rfind(')')? + 1..)?.to_string();
            rest.split_whitespace().next().map(|st| st == "Z")
        })
        .unwrap_or(false)
}

fn kill(pid: u32) {
    if let Ok(pid) = i32::try_from(pid) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

/// Pids of live processes whose command line contains `dir`.
pub fn processes_mentioning(dir: &Path) -> Vec<u32> {
    let needle = dir.as_os_str().as_encoded_bytes();
    let me = std::process::id();
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        if !needle.is_empty() && cmdline.windows(needle.len()).any(|w| w == needle) {
            found.push(pid);
        }
    }
    found
}

/// Detaches every mount of this mount namespace at or under `dir`, deepest first.
fn detach_mounts_under(dir: &Path) {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let mut points: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape_mount_path)
        .filter(|p| p.starts_with(dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for p in points {
        if let Err(e) = nix::mount::umount2(&p, nix::mount::MntFlags::MNT_DETACH) {
            tracing::warn!(mount = %p.display(), error = %e, "could not detach a leftover mount");
        }
    }
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_mount_path(s: &str) -> PathBuf {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'\\'
            && let Some(oct) = bytes.get(i + 1..i + 4)
            && let Ok(v) = u8::from_str_radix(std::str::from_utf8(oct).unwrap_or("x"), 8)
        {
            out.push(v);
            i += 4;
            continue;
        }
        out.push(b);
        i += 1;
    }
    PathBuf::from(std::ffi::OsString::from(
        String::from_utf8_lossy(&out).into_owned(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_has_a_start_time() {
        let me = ProcessRef::of(std::process::id()).unwrap();
        assert!(me.alive());
        let stale = ProcessRef {
            start_time: me.start_time + 1,
            ..me
        };
        assert!(
            !stale.alive(),
            "a recycled pid must not count as the same process"
        );
    }

    #[test]
    fn mount_paths_unescape() {
        assert_eq!(
            unescape_mount_path("/a\\040b\\134c"),
            PathBuf::from("/a b\\c")
        );
    }

    #[test]
    fn records_round_trip_and_lock_excludes() {
        let root = tempfile::tempdir().unwrap();
        let dir = Registry::dir_in(root.path());
        let reg = Registry::open(&dir).unwrap();
        assert!(matches!(
            Registry::open(&dir),
            Err(RegistryError::Locked(_))
        ));
        let rec = SandboxRecord {
            id: "0123456789ab".into(),
            daemon_pid: 1,
            state_dir: root.path().join("0123456789ab"),
            audit_log: None,
            processes: vec![],
            created_at: "2026-01-01T00:00:00Z".into(),
        };
        reg.write(&rec).unwrap();
        assert_eq!(reg.leftovers(), vec![rec.clone()]);
        std::fs::create_dir(&rec.state_dir).unwrap();
        let reaped = reg.reap(&rec, None);
        assert_eq!(reaped.id, rec.id);
        assert!(!rec.state_dir.exists());
        assert!(reg.leftovers().is_empty());
        reg.close();
        assert!(!dir.exists());
    }

    #[test]
    fn reaping_records_the_end_once() {
        let root = tempfile::tempdir().unwrap();
        let log = root.path().join("abc.jsonl");
        {
            let (mut chain, _) = Chain::open(
                &log,
                ChainOptions {
                    sandbox: "abc".into(),
                    key: None,
                    checkpoints: Default::default(),
                    fsync: Default::default(),
                },
            )
            .unwrap();
            chain
                .append(&Event::new(Source::Host, kind::SANDBOX_START))
                .unwrap();
            // Dropped without finishing, as a killed daemon leaves it.
        }
        assert!(record_end(&log, "abc", None).unwrap());
        assert!(!record_end(&log, "abc", None).unwrap());
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(text.contains(REAPED), "{text}");
    }
}
