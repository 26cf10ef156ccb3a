//! The live timeline: `GET /api/sandboxes/{id}/stream?after=SEQ&area=..` sends each new record
//! that passes the filters as a server-sent event (`record`), polling the log for growth, and
//! ends with an `end` event once the sandbox has ended and its last record was sent.

use crate::catalog::locked;
use crate::error::UiError;
use crate::rows::{Filters, Shared, blocking, rows};
use axum::extract::{Path, Query as Params, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

/// How often the log is checked for new records.
pub const POLL: Duration = Duration::from_millis(300);
/// Most records sent per poll (the rest follow on the next).
const BATCH: usize = 500;

struct Tail {
    catalog: Shared,
    id: String,
    query: crate::index::Query,
    /// Entries of the index already looked at.
    pos: Option<usize>,
    pending: VecDeque<Event>,
    done: bool,
    first: bool,
}

/// The handler.
pub async fn stream(
    State(c): State<Shared>,
    Path(id): Path<String>,
    Params(f): Params<Filters>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, UiError> {
    let query = f.query()?;
    // Fail now (404, 400) rather than inside the stream.
    {
        let c = c.clone();
        let id = id.clone();
        blocking(move || c.index(&id).map(|_| ())).await?;
    }
    let tail = Tail {
        catalog: c,
        id,
        query,
        pos: None,
        pending: VecDeque::new(),
        done: false,
        first: true,
    };
    let events = futures_util::stream::unfold(tail, |mut t| async move {
        loop {
            if let Some(e) = t.pending.pop_front() {
                return Some((Ok(e), t));
            }
            if t.done {
                return None;
            }
            if !t.first {
                tokio::time::sleep(POLL).await;
            }
            t.first = false;
            let (catalog, id, query, pos) =
                (t.catalog.clone(), t.id.clone(), t.query.clone(), t.pos);
            let polled = blocking(move || poll(&catalog, &id, &query, pos)).await;
            match polled {
                Ok((events, pos, ended)) => {
                    t.pending.extend(events);
                    t.pos = Some(pos);
                    if ended {
                        t.pending
                            .push_back(Event::default().event("end").data("{}"));
                        t.done = true;
                    }
                }
                Err(e) => {
                    let data = serde_json::json!({ "error": e.to_string() }).to_string();
                    t.pending
                        .push_back(Event::default().event("error").data(data));
                    t.done = true;
                }
            }
        }
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}

/// New records after `pos` (or, first, after the query's seq), the new position, and whether
/// the sandbox has ended with everything sent.
fn poll(
    c: &crate::catalog::Catalog,
    id: &str,
    query: &crate::index::Query,
    pos: Option<usize>,
) -> Result<(Vec<Event>, usize, bool), UiError> {
    let index = c.index(id)?;
    let (picked, next, total, ended) = {
        let ix = locked(&index);
        let entries = ix.entries();
        let start = pos.unwrap_or_else(|| {
            entries
                .iter()
                .position(|e| e.seq > query.after)
                .unwrap_or(entries.len())
        });
        let mut picked = Vec::new();
        let mut next = start;
        for e in entries.iter().skip(start) {
            if picked.len() >= BATCH {
                break;
            }
            next += 1;
            if query.keeps(e) {
                picked.push(*e);
            }
        }
        (picked, next, entries.len(), ix.summary().ended.is_some())
    };
    let rows = rows(c, id, &picked)?;
    let events = rows
        .into_iter()
        .filter_map(|r| serde_json::to_string(&r).ok())
        .map(|data| Event::default().event("record").data(data))
        .collect();
    let running = airlock_supervisor::review::is_running(id);
    Ok((events, next, ended && !running && next >= total))
}
