//! envd's `/files`: `GET` reads a file's bytes, `POST` writes files from a multipart body (parts
//! named `file`) or a raw `application/octet-stream` body. Each file goes through the daemon's
//! own `files::read` / `files::write`, so the policy and the audit log see them as they see
//! `GET`/`PUT /v1/sandboxes/{id}/files`.

use crate::error::E2bError;
use crate::multipart;
use crate::state::E2b;
use airlock_api::daemon::files;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Query of `/files`.
#[derive(Debug, Deserialize)]
pub struct FilesQuery {
    /// The guest path (absolute).
    #[serde(default)]
    path: Option<String>,
    /// The user to act as; airlock always acts as the policy's workload user (docs/e2b.md).
    #[serde(default)]
    #[allow(dead_code)]
    username: Option<String>,
}

/// envd's `EntryInfo` for a written file.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Written {
    name: String,
    #[serde(rename = "type")]
    kind: &'static str,
    path: String,
}

fn written(path: &str) -> Written {
    Written {
        name: path.rsplit('/').next().unwrap_or(path).to_string(),
        kind: "file",
        path: path.to_string(),
    }
}

fn query(
    q: Result<Query<FilesQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<FilesQuery, E2bError> {
    q.map(|Query(q)| q)
        .map_err(|e| E2bError::bad("query", e.body_text()))
}

/// `GET /files?path=`.
pub async fn read(
    State(e2b): State<Arc<E2b>>,
    headers: HeaderMap,
    q: Result<Query<FilesQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, E2bError> {
    let (entry, _) = e2b.sandbox_of(&headers)?;
    let q = query(q)?;
    let path = q
        .path
        .ok_or_else(|| E2bError::bad("path", "give the file's path"))?;
    let data = files::read(&entry, &path).await?;
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], data).into_response())
}

/// `POST /files?path=`.
pub async fn write(
    State(e2b): State<Arc<E2b>>,
    headers: HeaderMap,
    q: Result<Query<FilesQuery>, axum::extract::rejection::QueryRejection>,
    body: Bytes,
) -> Result<axum::Json<Vec<Written>>, E2bError> {
    let (entry, _) = e2b.sandbox_of(&headers)?;
    let q = query(q)?;
    if headers.contains_key(header::CONTENT_ENCODING) {
        return Err(E2bError::Unsupported(
            "Content-Encoding on uploads (gzip)".into(),
        ));
    }
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let uploads = uploads(ct, q.path.as_deref(), &body)?;
    let mut out = Vec::with_capacity(uploads.len());
    for (path, data) in uploads {
        files::write(&entry, &path, data.to_vec(), None).await?;
        out.push(written(&path));
    }
    Ok(axum::Json(out))
}

/// The files a `POST /files` body carries: `(guest path, content)`.
pub fn uploads<'a>(
    content_type: &str,
    path: Option<&str>,
    body: &'a [u8],
) -> Result<Vec<(String, &'a [u8])>, E2bError> {
    let kind = content_type.split(';').next().unwrap_or("").trim();
    if kind.eq_ignore_ascii_case("application/octet-stream") {
        let path = path.ok_or_else(|| E2bError::bad("path", "a raw upload needs ?path="))?;
        return Ok(vec![(path.to_string(), body)]);
    }
    if !kind.eq_ignore_ascii_case("multipart/form-data") {
        return Err(E2bError::bad(
            "Content-Type",
            format!("{content_type:?}: upload multipart/form-data or application/octet-stream"),
        ));
    }
    let b = multipart::boundary(content_type)
        .map_err(|e| E2bError::bad("Content-Type", e.to_string()))?;
    let parts = multipart::parse(body, &b).map_err(|e| E2bError::bad("body", e.to_string()))?;
    let files: Vec<_> = parts.into_iter().filter(|p| p.name == "file").collect();
    if files.is_empty() {
        return Err(E2bError::bad("body", "no multipart part named \"file\""));
    }
    if path.is_some() && files.len() > 1 {
        return Err(E2bError::bad(
            "path",
            "?path= names one file; several parts name theirs in their filenames",
        ));
    }
    files
        .into_iter()
        .map(|p| {
            let target = path.map(str::to_string).or(p.filename).ok_or_else(|| {
                E2bError::bad("body", "a part has no filename and the URL no ?path=")
            })?;
            Ok((target, p.data))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uploads_are_raw_or_multipart() {
        let raw = uploads("application/octet-stream", Some("/w/a"), b"x").unwrap();
        assert_eq!(raw, [("/w/a".to_string(), &b"x"[..])]);
        assert!(uploads("application/octet-stream", None, b"x").is_err());
        assert!(uploads("text/plain", Some("/a"), b"x").is_err());
        let body = b"--q\r\nContent-Disposition: form-data; name=\"file\"; filename=\"/w/b\"\r\n\r\nhi\r\n--q--\r\n";
        let m = uploads("multipart/form-data; boundary=q", None, body).unwrap();
        assert_eq!(m, [("/w/b".to_string(), &b"hi"[..])]);
        let m = uploads("multipart/form-data; boundary=q", Some("/w/c"), body).unwrap();
        assert_eq!(m, [("/w/c".to_string(), &b"hi"[..])]);
        assert!(uploads("multipart/form-data; boundary=q", None, b"--q--").is_err());
        assert_eq!(
            serde_json::to_value(written("/w/b")).unwrap(),
            serde_json::json!({"name": "b", "type": "file", "path": "/w/b"})
        );
    }
}
