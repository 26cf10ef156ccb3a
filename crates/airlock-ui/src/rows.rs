//! What the timeline endpoints share: the query parameters of a filter, the row a record
//! becomes, and running file work off the async runtime.

use crate::catalog::Catalog;
use crate::error::UiError;
use crate::index::{AREAS, DECISIONS, Entry, Query};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::Arc;

/// Shared by the handlers.
pub type Shared = Arc<Catalog>;

/// Runs `f` on the blocking pool.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, UiError> + Send + 'static,
) -> Result<T, UiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| UiError::Internal(format!("worker failed: {e}")))?
}

/// The timeline's filters, as query parameters: comma-separated lists.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filters {
    /// Areas (`fs,net,...`).
    pub area: Option<String>,
    /// Decisions (`allow,deny,error,none`).
    pub decision: Option<String>,
    /// `host` or `guest`.
    pub source: Option<String>,
    /// Only records after this seq.
    pub after: Option<u64>,
    /// First matching record to return.
    pub offset: Option<usize>,
    /// How many (at most [`MAX_PAGE`]).
    pub limit: Option<usize>,
    /// `true`: the last page (ignores `offset`).
    pub tail: Option<bool>,
    /// The page's token (checked by the guard; allowed here so the URL may carry it).
    pub token: Option<String>,
}

impl Filters {
    /// The filter these parameters describe; unknown names are errors that name them.
    pub fn query(&self) -> Result<Query, UiError> {
        let names = |list: &Option<String>, known: &[&str], what: &str| {
            let mut out = Vec::new();
            for name in list
                .iter()
                .flat_map(|l| l.split(','))
                .filter(|n| !n.is_empty())
            {
                let i = known.iter().position(|k| *k == name).ok_or_else(|| {
                    UiError::BadRequest(format!(
                        "{what}: unknown value {name:?} (known: {})",
                        known.join(", ")
                    ))
                })?;
                out.push(u8::try_from(i).unwrap_or(u8::MAX));
            }
            Ok::<_, UiError>(out)
        };
        let source = match self.source.as_deref() {
            None | Some("") => None,
            Some("host") => Some(0),
            Some("guest") => Some(1),
            Some(other) => {
                return Err(UiError::BadRequest(format!(
                    "source: unknown value {other:?} (known: host, guest)"
                )));
            }
        };
        Ok(Query {
            areas: names(&self.area, &AREAS, "area")?,
            decisions: names(&self.decision, &DECISIONS, "decision")?,
            source,
            after: self.after.unwrap_or(0),
        })
    }
}

/// One record as the page gets it.
#[derive(Debug, Serialize)]
pub struct Row {
    /// 1-based line in the log.
    pub line: u32,
    /// Its area.
    pub area: &'static str,
    /// The record as written; `null` when the line is not one.
    pub record: Value,
    /// The line's text when it is not a record (cut at 4 KiB).
    pub unreadable: Option<String>,
}

/// Turns indexed entries into rows by reading their lines.
pub fn rows(c: &Catalog, id: &str, entries: &[Entry]) -> Result<Vec<Row>, UiError> {
    let index = c.index(id)?;
    let lines = crate::catalog::read_lines(&index, entries)?;
    Ok(entries
        .iter()
        .zip(lines)
        .map(|(e, line)| {
            let area = AREAS.get(usize::from(e.area)).copied().unwrap_or("other");
            match serde_json::from_slice::<Value>(&line) {
                Ok(record) if e.seq > 0 => Row {
                    line: e.line,
                    area,
                    record,
                    unreadable: None,
                },
                _ => Row {
                    line: e.line,
                    area,
                    record: Value::Null,
                    unreadable: Some(
                        String::from_utf8_lossy(line.get(..4096).unwrap_or(&line)).into_owned(),
                    ),
                },
            }
        })
        .collect())
}
