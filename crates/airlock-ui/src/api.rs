//! The page's routes: the page and its assets, and the JSON the page reads.
//!
//! | route | answers |
//! |---|---|
//! | `GET /` | the page |
//! | `GET /assets/{app.js,app.css}` | its script and style |
//! | `GET /api/sandboxes` | every sandbox with a log, most recent first |
//! | `GET /api/sandboxes/{id}` | one sandbox |
//! | `GET /api/sandboxes/{id}/records` | a page of its timeline, filtered on the server |
//! | `GET /api/sandboxes/{id}/stream` | new records as server-sent events |
//! | `GET /api/sandboxes/{id}/verify` | `audit verify` of its log |
//! | `GET /api/sandboxes/{id}/changes` | its overlay diff and the refused changes |
//! | `GET /api/sandboxes/{id}/charts` | CPU, memory, bytes per host, events per minute |
//! | `POST /api/sandboxes/{id}/apply`, `/discard` | what `airlock apply` / `discard` do |

use crate::auth::{Guard, check};
use crate::error::UiError;
use crate::index::AREAS;
use crate::rows::{Filters, Shared, blocking, rows};
use axum::Json;
use axum::Router;
use axum::extract::{Path, Query as Params, State};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;

/// Most records one page of the timeline returns.
pub const MAX_PAGE: usize = 500;
/// Most points a chart series returns.
pub const MAX_POINTS: usize = 600;

/// The whole app: every route behind [`check`].
pub fn router(catalog: Shared, guard: Arc<Guard>) -> Router {
    Router::new()
        .route("/", get(crate::assets::index))
        .route("/assets/{name}", get(crate::assets::asset))
        .route("/api/sandboxes", get(list))
        .route("/api/sandboxes/{id}", get(one))
        .route("/api/sandboxes/{id}/records", get(records))
        .route("/api/sandboxes/{id}/stream", get(crate::stream::stream))
        .route("/api/sandboxes/{id}/verify", get(verify))
        .route("/api/sandboxes/{id}/changes", get(changes))
        .route("/api/sandboxes/{id}/charts", get(charts))
        .route("/api/sandboxes/{id}/apply", post(apply))
        .route("/api/sandboxes/{id}/discard", post(discard))
        .fallback(not_found)
        .with_state(catalog)
        .layer(axum::middleware::from_fn_with_state(guard, check))
}

async fn not_found() -> UiError {
    UiError::NotFound("no such page".into())
}

async fn list(State(c): State<Shared>) -> Result<Json<Value>, UiError> {
    let all = blocking(move || c.list()).await?;
    Ok(Json(json!({ "sandboxes": all, "areas": AREAS })))
}

async fn one(State(c): State<Shared>, Path(id): Path<String>) -> Result<Json<Value>, UiError> {
    let v = blocking(move || c.sandbox(&id)).await?;
    Ok(Json(json!(v)))
}

async fn records(
    State(c): State<Shared>,
    Path(id): Path<String>,
    Params(f): Params<Filters>,
) -> Result<Json<Value>, UiError> {
    let q = f.query()?;
    let limit = f.limit.unwrap_or(200).clamp(1, MAX_PAGE);
    blocking(move || {
        let index = c.index(&id)?;
        let (total, matched, offset, page) = {
            let ix = crate::catalog::locked(&index);
            let (matched, _) = ix.select(&q, usize::MAX, 0);
            let offset = if f.tail == Some(true) {
                matched.saturating_sub(limit)
            } else {
                f.offset.unwrap_or(0)
            };
            let (_, page) = ix.select(&q, offset, limit);
            (ix.entries().len(), matched, offset, page)
        };
        let rows = rows(&c, &id, &page)?;
        Ok(Json(json!({
            "total": total,
            "matched": matched,
            "offset": offset,
            "limit": limit,
            "records": rows,
        })))
    })
    .await
}

async fn verify(State(c): State<Shared>, Path(id): Path<String>) -> Result<Json<Value>, UiError> {
    let v = blocking(move || c.verify(&id)).await?;
    Ok(Json(json!(v)))
}

async fn changes(State(c): State<Shared>, Path(id): Path<String>) -> Result<Json<Value>, UiError> {
    blocking(move || {
        let view = c.sandbox(&id)?;
        let index = c.index(&id)?;
        let refused = crate::catalog::locked(&index).refused().to_vec();
        let shares = match airlock_supervisor::review::Review::open(&id) {
            Ok(r) => Some(r.changes()?),
            Err(airlock_supervisor::review::ReviewError::NoOverlay { .. }) => None,
            Err(e) => return Err(e.into()),
        };
        Ok(Json(json!({
            "overlay": shares.is_some(),
            "running": view.running,
            "shares": shares.unwrap_or_default(),
            "refused": refused,
        })))
    })
    .await
}

async fn charts(State(c): State<Shared>, Path(id): Path<String>) -> Result<Json<Value>, UiError> {
    blocking(move || {
        let usage = c.usage(&id, MAX_POINTS)?;
        let index = c.index(&id)?;
        let ix = crate::catalog::locked(&index);
        let mut hosts: Vec<_> = ix.hosts().iter().collect();
        hosts.sort_by(|a, b| {
            (b.1.bytes_in + b.1.bytes_out)
                .cmp(&(a.1.bytes_in + a.1.bytes_out))
                .then(b.1.requests.cmp(&a.1.requests))
        });
        hosts.truncate(20);
        let minutes: Vec<_> = ix.minutes().map(|(m, counts)| json!([m * 60_000, counts])).collect();
        let minutes = thin(minutes, MAX_POINTS);
        Ok(Json(json!({
            "usage": usage,
            "hosts": hosts.into_iter().map(|(h, t)| json!({"host": h, "traffic": t})).collect::<Vec<_>>(),
            "areas": AREAS,
            "minutes": minutes,
        })))
    })
    .await
}

fn thin<T>(v: Vec<T>, max: usize) -> Vec<T> {
    if v.len() <= max || max == 0 {
        return v;
    }
    let step = v.len().div_ceil(max);
    v.into_iter().step_by(step).collect()
}

/// The body of apply and discard.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApplyBody {
    /// Overwrite host files changed since the copy was made.
    #[serde(default)]
    pub force: bool,
}

async fn apply(
    State(_): State<Shared>,
    Path(id): Path<String>,
    body: Result<Json<ApplyBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Value>, UiError> {
    let Json(body) = body.map_err(|e| UiError::BadRequest(format!("apply body: {e}")))?;
    let out = blocking(move || {
        Ok(airlock_supervisor::review::Review::open(&id)?.apply(body.force, "airlock ui")?)
    })
    .await?;
    Ok(Json(json!({ "complete": out.complete(), "outcome": out })))
}

async fn discard(
    State(_): State<Shared>,
    Path(id): Path<String>,
    body: Result<Json<HashMap<String, Value>>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Value>, UiError> {
    let Json(body) = body.map_err(|e| UiError::BadRequest(format!("discard body: {e}")))?;
    if let Some(k) = body.keys().next() {
        return Err(UiError::BadRequest(format!(
            "discard body: unknown field {k:?}"
        )));
    }
    blocking(move || Ok(airlock_supervisor::review::Review::open(&id)?.discard("airlock ui")?))
        .await?;
    Ok(Json(json!({ "discarded": true })))
}
