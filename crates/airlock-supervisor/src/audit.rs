//! The sandbox's audit recorder: one hash-chained log per sandbox (via `airlock-audit`), fed by
//! the supervisor, the gateways and the guest's reports, with the policy's monitor rules applied
//! to every event on its way in.
//!
//! A `kill` rule does not stop anything itself: it records `monitor.kill` and raises a flag the
//! runner selects on, so teardown stays in one place.

use airlock_audit::{AuditSink, AuditWriter, ChainOptions, Decision, Event, HostKey, Source, kind};
use airlock_policy::{EventDecision, MonitorAction, MonitorEvent, MonitorRule};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use tokio::sync::watch;

/// Where lines meant for the user go (a monitor `alert`, overlay copy progress): the CLI
/// prints them on stderr, the daemon on its own.
#[derive(Clone)]
pub struct Notifier(std::sync::Arc<dyn Fn(&str) + Send + Sync>);

impl Notifier {
    /// A notifier calling `f` with each line.
    pub fn new(f: impl Fn(&str) + Send + Sync + 'static) -> Notifier {
        Notifier(std::sync::Arc::new(f))
    }

    /// Prints each line on stderr, never panicking on a closed stderr.
    pub fn stderr() -> Notifier {
        Notifier::new(|line| {
            use std::io::Write as _;
            let _ = writeln!(std::io::stderr(), "{line}");
        })
    }

    /// Tells the user `line`.
    pub fn note(&self, line: &str) {
        (self.0)(line);
    }
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Notifier")
    }
}

/// Where a sandbox's audit goes.
#[derive(Debug, Clone)]
pub struct AuditConfig {
    /// Log file; `None` puts it at `<dir>/<sandbox id>.jsonl`.
    pub path: Option<PathBuf>,
    /// Directory for default-named logs.
    pub dir: PathBuf,
    /// Ed25519 host key (created on first use, mode 0600).
    pub key: PathBuf,
    /// The policy's monitor rules.
    pub monitor: Vec<MonitorRule>,
    /// What is replaced by `[REDACTED]` in every recorded string.
    pub redact: Redactor,
    /// Where monitor alerts are shown.
    pub notify: Notifier,
    /// Guest reports recorded per second (`audit.guest_rate`).
    pub guest_rate: u32,
}

/// Replaces secrets in recorded text: the policy's `audit.redact` regexes and the values of its
/// `audit.redact_env` variables (as the host and the command's `-e` settings define them).
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    patterns: Vec<regex::Regex>,
}

/// The replacement text.
pub const REDACTED: &str = "[REDACTED]";

impl Redactor {
    /// Compiles `regexes` (already validated by the policy) and literal `values`.
    pub fn new(regexes: &[String], values: &[String]) -> Result<Redactor, regex::Error> {
        let mut patterns = regexes
            .iter()
            .map(|r| regex::Regex::new(r))
            .collect::<Result<Vec<_>, _>>()?;
        for v in values.iter().filter(|v| !v.is_empty()) {
            patterns.push(regex::Regex::new(&regex::escape(v))?);
        }
        Ok(Redactor { patterns })
    }

    /// Whether nothing is redacted.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    fn text(&self, s: &mut String) {
        for p in &self.patterns {
            if p.is_match(s) {
                *s = p.replace_all(s, REDACTED).into_owned();
            }
        }
    }

    /// Redacts every free-text field of `e`.
    pub fn event(&self, e: &mut Event) {
        if self.is_empty() {
            return;
        }
        let opt = |o: &mut Option<String>| {
            if let Some(s) = o {
                self.text(s);
            }
        };
        opt(&mut e.detail);
        if let Some(p) = &mut e.proc {
            p.argv.iter_mut().for_each(|a| self.text(a));
            opt(&mut p.cwd);
        }
        if let Some(f) = &mut e.fs {
            self.text(&mut f.path);
            opt(&mut f.to);
        }
        if let Some(n) = &mut e.net {
            opt(&mut n.path);
            opt(&mut n.host);
        }
    }
}

/// Default directory for audit logs: `$XDG_STATE_HOME/airlock/audit`, else
/// `~/.local/state/airlock/audit`.
pub fn default_audit_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("AIRLOCK_AUDIT_DIR") {
        return Some(PathBuf::from(d));
    }
    if let Some(d) = std::env::var_os("XDG_STATE_HOME") {
        return Some(PathBuf::from(d).join("airlock/audit"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state/airlock/audit"))
}

/// Why the recorder could not start.
#[derive(Debug, thiserror::Error)]
pub enum RecorderError {
    /// The host key.
    #[error("audit host key {0}")]
    Key(PathBuf, #[source] airlock_audit::KeyError),
    /// The log.
    #[error("audit log {0}")]
    Chain(PathBuf, #[source] airlock_audit::ChainError),
    /// The writer thread.
    #[error("audit writer")]
    Sink(#[source] airlock_audit::SinkError),
    /// The directory.
    #[error("audit dir {0}")]
    Dir(PathBuf, #[source] std::io::Error),
}

/// The recorder of one sandbox.
pub struct Recorder {
    sink: AuditSink,
    writer: Mutex<Option<AuditWriter>>,
    monitor: Vec<MonitorRule>,
    kill: watch::Sender<Option<String>>,
    path: PathBuf,
    counters: crate::stats::EventCounters,
    redact: Redactor,
    notify: Notifier,
}

impl Recorder {
    /// Opens (or resumes) the log for sandbox `id`.
    pub fn open(config: &AuditConfig, id: &str) -> Result<Recorder, RecorderError> {
        let path = config
            .path
            .clone()
            .unwrap_or_else(|| config.dir.join(format!("{id}.jsonl")));
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| RecorderError::Dir(parent.to_path_buf(), e))?;
        }
        let key = HostKey::load_or_create(&config.key)
            .map_err(|e| RecorderError::Key(config.key.clone(), e))?;
        let (chain, _opened) = airlock_audit::Chain::open(&path, ChainOptions::new(id, key))
            .map_err(|e| RecorderError::Chain(path.clone(), e))?;
        let defaults = airlock_audit::SinkOptions::default();
        let options = airlock_audit::SinkOptions {
            guest: airlock_audit::GuestBudget {
                per_second: config.guest_rate,
                burst: config.guest_rate.saturating_mul(5),
                ..defaults.guest
            },
            ..defaults
        };
        let (sink, writer) = airlock_audit::spawn(chain, options).map_err(RecorderError::Sink)?;
        let (kill, _) = watch::channel(None);
        Ok(Recorder {
            sink,
            writer: Mutex::new(Some(writer)),
            monitor: config.monitor.clone(),
            kill,
            path,
            counters: crate::stats::EventCounters::default(),
            redact: config.redact.clone(),
            notify: config.notify.clone(),
        })
    }

    /// The log file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Fires with the reason when a `kill` monitor rule matched.
    pub fn kill_requested(&self) -> watch::Receiver<Option<String>> {
        self.kill.subscribe()
    }

    /// Records `event` (never blocks: overload is counted by the sink and recorded as
    /// `audit.dropped`), then applies the monitor rules to it.
    pub fn record(&self, mut event: Event) {
        self.redact.event(&mut event);
        self.counters.observe(&event);
        let matched = if event.kind.starts_with("monitor.") {
            None
        } else {
            self.evaluate(&event)
        };
        let _ = self.sink.try_emit(event.clone());
        let Some(rule) = matched else { return };
        let what = describe(&event);
        match rule.action {
            // `pause` needs engine pause/resume, which is not built; `airlock run` refuses such
            // policies, and should one get here it is treated as the stricter `kill`.
            MonitorAction::Kill | MonitorAction::Pause => {
                let reason = format!("monitor rule {} matched {what}", rule.rule);
                let _ = self.sink.try_emit(
                    Event::new(Source::Host, kind::MONITOR_KILL)
                        .with_rule(rule.rule.clone())
                        .with_detail(reason.clone()),
                );
                self.kill.send_replace(Some(reason));
            }
            MonitorAction::Alert => {
                self.notify.note(&format!(
                    "airlock: alert: monitor rule {} matched {what}",
                    rule.rule
                ));
                let _ = self.sink.try_emit(
                    Event::new(Source::Host, kind::MONITOR_ALERT)
                        .with_rule(rule.rule.clone())
                        .with_detail(what),
                );
            }
        }
    }

    fn evaluate(&self, event: &Event) -> Option<&MonitorRule> {
        let decision = match event.decision {
            Some(Decision::Allow) | None => EventDecision::Allow,
            Some(Decision::Deny) => EventDecision::Deny,
            Some(Decision::Error) => EventDecision::Error,
        };
        let probe = MonitorEvent {
            kind: &event.kind,
            decision,
            path: event.fs.as_ref().map(|f| f.path.as_str()),
            host: event.net.as_ref().and_then(|n| n.host.as_deref()),
            port: event.net.as_ref().and_then(|n| n.port),
        };
        // Most severe action wins, so an earlier alert rule cannot hide a later kill.
        self.monitor
            .iter()
            .filter(|r| r.matches(&probe))
            .max_by_key(|r| match r.action {
                MonitorAction::Kill => 2,
                MonitorAction::Pause => 1,
                MonitorAction::Alert => 0,
            })
    }

    /// Live counters of this sandbox.
    pub fn stats(&self, id: &str, engine_pid: Option<u32>) -> crate::stats::Stats {
        crate::stats::Stats::live(id, engine_pid, &self.counters, &self.sink.counters())
    }

    /// Closes the log with a final signed checkpoint.
    pub fn finish(&self) -> Result<(), RecorderError> {
        let writer = self
            .writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        match writer {
            Some(w) => w.finish().map(drop).map_err(RecorderError::Sink),
            None => Ok(()),
        }
    }
}

/// The record of a gateway event line that could not be read (too long or not an event): an
/// event the gateway saw is lost, and the log says so.
pub(crate) fn malformed_line(gateway: &str) -> Event {
    Event::new(Source::Host, kind::AUDIT_DROPPED)
        .with_count(1)
        .with_reason("malformed_event_line")
        .with_detail(format!(
            "the {gateway} gateway sent an event line that is too long or not an event"
        ))
}

/// A one-line, terminal-safe description of an event for alerts.
fn describe(e: &Event) -> String {
    let mut s = format!("{} {}", e.kind, e.decision.map_or("-", Decision::as_str));
    if let Some(n) = &e.net {
        if let Some(h) = &n.host {
            s.push_str(&format!(" {h}"));
        }
        if let Some(p) = n.port {
            s.push_str(&format!(":{p}"));
        }
    }
    if let Some(f) = &e.fs {
        s.push_str(&format!(" {}", f.path));
    }
    airlock_audit::display_safe(&s)
}

impl airlock_fs::FsEvents for Recorder {
    fn record(&self, e: &airlock_fs::FsEvent) {
        // The same conversion as for events from the gateway processes.
        Recorder::record(self, airlock_fs::FsLine::from(e).to_event());
    }
}

impl airlock_net::NetEvents for Recorder {
    fn record(&self, e: &airlock_net::NetEvent) {
        // The same conversion as for events from the gateway process.
        Recorder::record(self, airlock_net::NetLine::from(e).to_event());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_covers_every_free_text_field() {
        let r = Redactor::new(
            &["sk-ant-[a-z0-9]+".to_string()],
            &["hunter2".to_string(), String::new()],
        )
        .unwrap();
        let mut e = Event::new(Source::Host, kind::PROC_EXEC)
            .with_proc(airlock_audit::ProcInfo {
                argv: vec![
                    "curl".into(),
                    "-H".into(),
                    "x-api-key: sk-ant-abc123".into(),
                ],
                cwd: Some("/tmp/hunter2".into()),
                ..Default::default()
            })
            .with_detail("token hunter2 here");
        r.event(&mut e);
        let p = e.proc.unwrap();
        assert_eq!(p.argv[2], "x-api-key: [REDACTED]");
        assert_eq!(p.cwd.as_deref(), Some("/tmp/[REDACTED]"));
        assert_eq!(e.detail.as_deref(), Some("token [REDACTED] here"));
    }
}
