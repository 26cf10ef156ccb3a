//! The logs of the audit dir (`<id>.jsonl`), an index of each kept up to date on demand, and
//! the last verification of each, redone only when the log or its checkpoints changed.
//! Everything here reads files: call it off the async runtime.

use crate::error::UiError;
use crate::index::{AREAS, LogIndex, Summary};
use airlock_audit::{PublicKey, checkpoints_path};
use airlock_supervisor::review::{is_running, valid_id};
use serde::Serialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

/// One sandbox as the list shows it.
#[derive(Debug, Clone, Serialize)]
pub struct SandboxView {
    /// Sandbox id.
    pub id: String,
    /// Whether it is running now.
    pub running: bool,
    /// Whether it has an overlay copy waiting for review.
    pub overlay: bool,
    /// Sums from its log.
    #[serde(flatten)]
    pub summary: Summary,
    /// The log is large and still being indexed in the background: the sums cover only its
    /// first and last records until then.
    pub indexing: bool,
}

/// The result of verifying a log, for the integrity badge.
#[derive(Debug, Clone, Serialize)]
pub struct Integrity {
    /// `verified` (intact and sealed), `unsealed` (intact, the end not yet signed: running, or
    /// cut after a checkpoint) or `broken`.
    pub state: &'static str,
    /// What the verifier said, in its words.
    pub message: String,
    /// Records verified.
    pub records: u64,
    /// Last seq verified.
    pub last_seq: u64,
    /// Checkpoints verified.
    pub checkpoints: usize,
    /// Seq of the last signed checkpoint.
    pub signed_to: Option<u64>,
    /// The signing key (hex).
    pub signer: Option<String>,
    /// Whether the signer is this host's audit key.
    pub trusted: bool,
    /// `broken`: the file, line and seq of the first problem.
    pub file: Option<String>,
    /// `broken`: 1-based line.
    pub line: Option<usize>,
    /// `broken`: the seq concerned.
    pub seq: Option<u64>,
}

type Stamp = (u64, Option<SystemTime>, u64, Option<SystemTime>);

/// Logs larger than this are not indexed while the list waits: the list shows a glance at
/// their ends and a background thread indexes them.
pub const LIST_INDEX_LIMIT: u64 = 8 << 20;
/// How much of each end of a large log the glance reads.
const GLANCE: u64 = 256 << 10;

/// A log for the background indexer: its id and index.
type Queued = (String, Arc<Mutex<LogIndex>>);

/// The audit dir and what is known of its logs.
#[derive(Debug)]
pub struct Catalog {
    dir: PathBuf,
    trusted: Option<PublicKey>,
    indexes: Mutex<HashMap<String, Arc<Mutex<LogIndex>>>>,
    verified: Mutex<HashMap<String, (Stamp, Integrity)>>,
    /// Large logs queued for the background indexer, by id.
    queued: Arc<Mutex<std::collections::HashSet<String>>>,
    indexer: Mutex<Option<std::sync::mpsc::Sender<Queued>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Catalog {
    /// The logs of `dir`, verified against `trusted`.
    pub fn new(dir: PathBuf, trusted: Option<PublicKey>) -> Catalog {
        Catalog {
            dir,
            trusted,
            indexes: Mutex::new(HashMap::new()),
            verified: Mutex::new(HashMap::new()),
            queued: Arc::default(),
            indexer: Mutex::new(None),
        }
    }

    /// Queues a large log for the background indexer (started on first use, one log at a
    /// time, so the list never waits for it).
    fn queue(&self, id: &str, index: Arc<Mutex<LogIndex>>) {
        if !lock(&self.queued).insert(id.to_string()) {
            return;
        }
        let mut indexer = lock(&self.indexer);
        let tx = indexer.get_or_insert_with(|| {
            let (tx, rx) = std::sync::mpsc::channel::<Queued>();
            let queued = self.queued.clone();
            std::thread::spawn(move || {
                for (id, index) in rx {
                    if let Err(e) = lock(&index).refresh() {
                        tracing::warn!("indexing the log of {id}: {e}");
                    }
                    lock(&queued).remove(&id);
                }
            });
            tx
        });
        let _ = tx.send((id.to_string(), index));
    }

    /// The list's view of `id`: from its index when that is done, or cheap to bring up to
    /// date; else a glance at its ends while the background indexer reads it.
    fn list_view(&self, id: &str) -> Result<SandboxView, UiError> {
        let path = self.log_path(id)?;
        let index = lock(&self.indexes)
            .entry(id.to_string())
            .or_insert_with(|| Arc::new(Mutex::new(LogIndex::new(&path))))
            .clone();
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        if let Ok(mut ix) = index.try_lock()
            && size.saturating_sub(ix.indexed_bytes()) <= LIST_INDEX_LIMIT
        {
            ix.refresh()
                .map_err(|e| UiError::Internal(format!("reading {}: {e}", path.display())))?;
            return Ok(view(id, ix.summary().clone(), false));
        }
        self.queue(id, index);
        let summary = LogIndex::glance(&path, GLANCE)
            .map_err(|e| UiError::Internal(format!("reading {}: {e}", path.display())))?;
        Ok(view(id, summary, true))
    }

    /// The audit dir.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn log_path(&self, id: &str) -> Result<PathBuf, UiError> {
        if !valid_id(id) {
            return Err(UiError::BadRequest(format!("{id:?} is not a sandbox id")));
        }
        let path = self.dir.join(format!("{id}.jsonl"));
        if !path.is_file() {
            return Err(UiError::NotFound(format!(
                "no audit log for sandbox {id} in {}",
                self.dir.display()
            )));
        }
        Ok(path)
    }

    /// The index of sandbox `id`'s log, brought up to date.
    pub fn index(&self, id: &str) -> Result<Arc<Mutex<LogIndex>>, UiError> {
        let path = self.log_path(id)?;
        let index = lock(&self.indexes)
            .entry(id.to_string())
            .or_insert_with(|| Arc::new(Mutex::new(LogIndex::new(&path))))
            .clone();
        lock(&index)
            .refresh()
            .map_err(|e| UiError::Internal(format!("reading {}: {e}", path.display())))?;
        Ok(index)
    }

    /// One sandbox.
    pub fn sandbox(&self, id: &str) -> Result<SandboxView, UiError> {
        let index = self.index(id)?;
        let summary = lock(&index).summary().clone();
        Ok(view(id, summary, false))
    }

    /// Every sandbox with a log in the audit dir, the most recent first.
    pub fn list(&self) -> Result<Vec<SandboxView>, UiError> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(UiError::Internal(format!(
                    "reading {}: {e}",
                    self.dir.display()
                )));
            }
        };
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(id) = name.to_str().and_then(|n| n.strip_suffix(".jsonl")) else {
                continue;
            };
            if !valid_id(id) {
                continue;
            }
            match self.list_view(id) {
                Ok(v) => out.push(v),
                Err(e) => tracing::warn!("skipping the log of {id}: {e}"),
            }
        }
        out.sort_by(|a, b| {
            b.summary
                .started
                .cmp(&a.summary.started)
                .then(a.id.cmp(&b.id))
        });
        Ok(out)
    }

    /// Verifies sandbox `id`'s log against this host's audit key (cached until a file changes).
    pub fn verify(&self, id: &str) -> Result<Integrity, UiError> {
        let log = self.log_path(id)?;
        let cps = checkpoints_path(&log);
        let stamp = stamp(&log, &cps);
        if let Some((s, v)) = lock(&self.verified).get(id)
            && *s == stamp
        {
            return Ok(v.clone());
        }
        let result = airlock_audit::verify(&log, Some(&cps), self.trusted.as_ref());
        let v = match result {
            Ok(r) => Integrity {
                state: if r.sealed { "verified" } else { "unsealed" },
                message: r.to_string(),
                records: r.records,
                last_seq: r.last_seq,
                checkpoints: r.checkpoints_verified,
                signed_to: r.last_checkpoint_seq,
                signer: r.signer.map(|k| k.to_string()),
                trusted: r.signer_trusted,
                file: None,
                line: None,
                seq: None,
            },
            Err(e) => Integrity {
                state: "broken",
                message: crate::error::error_chain(&e),
                records: 0,
                last_seq: 0,
                checkpoints: 0,
                signed_to: None,
                signer: None,
                trusted: false,
                file: Some(e.file.to_string()),
                line: Some(e.line),
                seq: e.seq,
            },
        };
        lock(&self.verified).insert(id.to_string(), (stamp, v.clone()));
        Ok(v)
    }

    /// CPU and memory samples of sandbox `id` from `<log>.usage`: `(unix ms, CPU % of one core
    /// since the previous sample, memory MiB)`, at most `max` points (evenly thinned).
    pub fn usage(&self, id: &str, max: usize) -> Result<Vec<(u64, f64, f64)>, UiError> {
        let log = self.log_path(id)?;
        let text = match std::fs::read(airlock_supervisor::usage_path(&log)) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(UiError::Internal(format!("reading usage: {e}"))),
        };
        let mut points = Vec::new();
        let mut prev: Option<(u64, f64)> = None;
        for line in text.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let Ok(s) = serde_json::from_slice::<airlock_supervisor::UsageSample>(line) else {
                continue;
            };
            if s.sandbox != id {
                continue;
            }
            let t = s.ts.as_millis();
            let cpu = s.cpu_seconds.unwrap_or(0.0);
            let pct = match prev {
                Some((pt, pc)) if t > pt => {
                    ((cpu - pc) / ((t - pt) as f64 / 1000.0) * 100.0).max(0.0)
                }
                _ => 0.0,
            };
            prev = Some((t, cpu));
            let mib = s.memory_bytes.unwrap_or(0) as f64 / (1024.0 * 1024.0);
            points.push((t, pct, mib));
        }
        if points.len() > max && max > 0 {
            let step = points.len().div_ceil(max);
            points = points.into_iter().step_by(step).collect();
        }
        Ok(points)
    }
}

fn view(id: &str, summary: Summary, indexing: bool) -> SandboxView {
    let overlay = airlock_supervisor::launch::overlays_dir()
        .map(|d| d.join(id).join("meta.json").is_file())
        .unwrap_or(false);
    SandboxView {
        id: id.to_string(),
        running: is_running(id),
        overlay,
        summary,
        indexing,
    }
}

fn stamp(log: &Path, cps: &Path) -> Stamp {
    let m = |p: &Path| {
        std::fs::metadata(p)
            .map(|m| (m.len(), m.modified().ok()))
            .unwrap_or((0, None))
    };
    let (a, b) = m(log);
    let (c, d) = m(cps);
    (a, b, c, d)
}

/// The area names, for the page's filters.
pub fn areas() -> &'static [&'static str] {
    &AREAS
}

/// Locks an index.
pub fn locked(index: &Mutex<LogIndex>) -> MutexGuard<'_, LogIndex> {
    lock(index)
}

/// Reads the lines of `entries` from the index's log.
pub fn read_lines(
    index: &Mutex<LogIndex>,
    entries: &[crate::index::Entry],
) -> Result<Vec<Vec<u8>>, UiError> {
    let ix = lock(index);
    ix.read(entries)
        .map_err(|e| UiError::Internal(format!("reading {}: {e}", ix.path().display())))
}
