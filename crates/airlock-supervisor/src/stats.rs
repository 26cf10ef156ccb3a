//! Per-sandbox counters for `airlock stats`: engine CPU and memory from `/proc`, event-derived
//! counts from the audit recorder. A running sandbox publishes them to `stats.json` in its state
//! dir every second; a finished one is summarised from its audit log.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counts the recorder updates as events pass.
#[derive(Debug, Default)]
pub struct EventCounters {
    fs_ops: AtomicU64,
    net_requests: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    processes: AtomicU64,
}

impl EventCounters {
    /// Accounts one event.
    pub fn observe(&self, e: &airlock_audit::Event) {
        let add = |c: &AtomicU64, n: u64| {
            c.fetch_add(n, Ordering::Relaxed);
        };
        if e.kind.starts_with("fs.") {
            add(&self.fs_ops, 1);
        }
        if let Some(n) = &e.net {
            add(&self.net_requests, 1);
            add(&self.bytes_in, n.bytes_in.unwrap_or(0));
            add(&self.bytes_out, n.bytes_out.unwrap_or(0));
        }
        if e.kind == airlock_audit::kind::PROC_EXEC && e.source == airlock_audit::Source::Guest {
            add(&self.processes, 1);
        }
    }
}

/// The counters of one sandbox.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Stats {
    /// Sandbox id.
    pub sandbox: String,
    /// Whether the sandbox was running when these were taken.
    pub running: bool,
    /// CPU seconds used by the VM engine process (user + system); `None` once finished.
    pub cpu_seconds: Option<f64>,
    /// Resident memory of the VM engine process in bytes; `None` once finished.
    pub memory_bytes: Option<u64>,
    /// Filesystem operations recorded by the fs gateway.
    pub fs_ops: u64,
    /// Network requests through the egress gateway.
    pub net_requests: u64,
    /// Bytes from remote hosts into the sandbox.
    pub net_bytes_in: u64,
    /// Bytes from the sandbox to remote hosts.
    pub net_bytes_out: u64,
    /// Processes the guest reported starting.
    pub processes: u64,
    /// Denied operations by area (`fs`, `net`, ...).
    pub denials: BTreeMap<String, u64>,
    /// Audit records written.
    pub events: u64,
    /// Audit events dropped under overload (each drop is also recorded).
    pub events_dropped: u64,
}

impl Stats {
    /// Builds live stats.
    pub fn live(
        id: &str,
        engine_pid: Option<u32>,
        c: &EventCounters,
        sink: &airlock_audit::Counters,
    ) -> Stats {
        let (cpu_seconds, memory_bytes) = engine_pid.map_or((None, None), proc_usage);
        Stats {
            sandbox: id.to_string(),
            running: true,
            cpu_seconds,
            memory_bytes,
            fs_ops: c.fs_ops.load(Ordering::Relaxed),
            net_requests: c.net_requests.load(Ordering::Relaxed),
            net_bytes_in: c.bytes_in.load(Ordering::Relaxed),
            net_bytes_out: c.bytes_out.load(Ordering::Relaxed),
            processes: c.processes.load(Ordering::Relaxed),
            denials: sink.denials.clone(),
            events: sink.written,
            events_dropped: sink.dropped,
        }
    }

    /// Summarises a finished sandbox from its audit records.
    pub fn from_records(id: &str, records: &[airlock_audit::Record]) -> Stats {
        let c = EventCounters::default();
        let mut denials: BTreeMap<String, u64> = BTreeMap::new();
        let mut dropped = 0;
        for r in records {
            c.observe(&r.event);
            if r.event.decision == Some(airlock_audit::Decision::Deny) {
                let area = r.event.kind.split('.').next().unwrap_or("").to_string();
                *denials.entry(area).or_default() += 1;
            }
            if r.event.kind == airlock_audit::kind::AUDIT_DROPPED {
                dropped += r.event.count.unwrap_or(0);
            }
        }
        let mut s = Stats::live(id, None, &c, &airlock_audit::Counters::default());
        s.running = false;
        s.denials = denials;
        s.events = records.len() as u64;
        s.events_dropped = dropped;
        s
    }

    /// Prometheus text exposition format.
    pub fn prometheus(&self) -> String {
        let mut out = String::new();
        let label = format!("sandbox=\"{}\"", self.sandbox.escape_default());
        let mut metric = |name: &str, kind: &str, help: &str, value: String| {
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name}{{{label}}} {value}\n"
            ));
        };
        metric(
            "airlock_running",
            "gauge",
            "1 while the sandbox runs.",
            u8::from(self.running).to_string(),
        );
        if let Some(cpu) = self.cpu_seconds {
            metric(
                "airlock_cpu_seconds_total",
                "counter",
                "CPU time of the VM engine.",
                format!("{cpu:.3}"),
            );
        }
        if let Some(mem) = self.memory_bytes {
            metric(
                "airlock_memory_bytes",
                "gauge",
                "Resident memory of the VM engine.",
                mem.to_string(),
            );
        }
        metric(
            "airlock_fs_ops_total",
            "counter",
            "Filesystem operations at the fs gateway.",
            self.fs_ops.to_string(),
        );
        metric(
            "airlock_net_requests_total",
            "counter",
            "Requests through the egress gateway.",
            self.net_requests.to_string(),
        );
        metric(
            "airlock_net_bytes_in_total",
            "counter",
            "Bytes from remote hosts.",
            self.net_bytes_in.to_string(),
        );
        metric(
            "airlock_net_bytes_out_total",
            "counter",
            "Bytes to remote hosts.",
            self.net_bytes_out.to_string(),
        );
        metric(
            "airlock_processes_total",
            "counter",
            "Processes started in the guest.",
            self.processes.to_string(),
        );
        metric(
            "airlock_audit_events_total",
            "counter",
            "Audit records written.",
            self.events.to_string(),
        );
        metric(
            "airlock_audit_dropped_total",
            "counter",
            "Audit events dropped under overload.",
            self.events_dropped.to_string(),
        );
        out.push_str("# HELP airlock_denials_total Denied operations by area.\n# TYPE airlock_denials_total counter\n");
        for (area, n) in &self.denials {
            out.push_str(&format!(
                "airlock_denials_total{{{label},area=\"{}\"}} {n}\n",
                area.escape_default()
            ));
        }
        out
    }
}

/// (CPU seconds, RSS bytes) of a host process.
fn proc_usage(pid: u32) -> (Option<f64>, Option<u64>) {
    let tick = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as f64;
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .unwrap_or(4096) as u64;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok();
    // Fields after the parenthesised command name: utime and stime are the 12th and 13th.
    let cpu = stat.as_deref().and_then(|s| {
        let rest = s.rsplit_once(')')?.1;
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ut: f64 = f.get(11)?.parse().ok()?;
        let st: f64 = f.get(12)?.parse().ok()?;
        Some((ut + st) / tick)
    });
    let rss = std::fs::read_to_string(format!("/proc/{pid}/statm"))
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map(|pages| pages * page);
    (cpu, rss)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_format() {
        let mut s = Stats {
            sandbox: "abc".into(),
            running: true,
            cpu_seconds: Some(1.5),
            fs_ops: 3,
            ..Stats::default()
        };
        s.denials.insert("net".into(), 2);
        let text = s.prometheus();
        assert!(
            text.contains("airlock_cpu_seconds_total{sandbox=\"abc\"} 1.500\n"),
            "{text}"
        );
        assert!(text.contains("airlock_fs_ops_total{sandbox=\"abc\"} 3\n"));
        assert!(text.contains("airlock_denials_total{sandbox=\"abc\",area=\"net\"} 2\n"));
        assert!(
            !text.contains("airlock_memory_bytes"),
            "absent values are not invented"
        );
    }

    #[test]
    fn own_process_usage_is_readable() {
        let (cpu, rss) = proc_usage(std::process::id());
        assert!(cpu.is_some());
        assert!(rss.unwrap() > 0);
    }
}

/// One sample of a running sandbox's resource use, appended each second to `<log>.usage`
/// beside its audit log, so the review page can chart CPU and memory over the whole run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsageSample {
    /// Sandbox id (a fixed `audit.path` may serve several runs).
    pub sandbox: String,
    /// When it was taken.
    pub ts: airlock_audit::Timestamp,
    /// CPU seconds of the VM engine so far.
    pub cpu_seconds: Option<f64>,
    /// Resident memory of the VM engine in bytes.
    pub memory_bytes: Option<u64>,
}

/// Most samples one log's sidecar takes (a day at one a second); later ones are skipped.
pub const MAX_USAGE_SAMPLES: u64 = 86_400;

/// The `<log>.usage` sidecar of one run. Informational: unlike the audit log it is neither
/// chained nor signed, and failing to write it never affects the sandbox.
#[derive(Debug)]
pub struct UsageLog {
    path: std::path::PathBuf,
    written: u64,
}

/// The usage sidecar of the audit log at `log`.
pub fn usage_path(log: &std::path::Path) -> std::path::PathBuf {
    let mut name = log.as_os_str().to_owned();
    name.push(".usage");
    std::path::PathBuf::from(name)
}

impl UsageLog {
    /// The sidecar of the audit log at `log`.
    pub fn new(log: &std::path::Path) -> UsageLog {
        UsageLog {
            path: usage_path(log),
            written: 0,
        }
    }

    /// Appends one sample taken from `stats` (nothing once finished or full).
    pub fn append(&mut self, stats: &Stats) {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        if !stats.running || self.written >= MAX_USAGE_SAMPLES {
            return;
        }
        let sample = UsageSample {
            sandbox: stats.sandbox.clone(),
            ts: airlock_audit::Timestamp::now(),
            cpu_seconds: stats.cpu_seconds,
            memory_bytes: stats.memory_bytes,
        };
        let Ok(mut line) = serde_json::to_vec(&sample) else {
            return;
        };
        line.push(b'\n');
        let file = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&self.path);
        if let Ok(mut f) = file
            && f.write_all(&line).is_ok()
        {
            self.written += 1;
        }
    }
}
