//! The `multipart/form-data` bodies the E2B SDK uploads files with: parts named `file`, each
//! with a `filename` (the guest path when the URL names none). A small parser over a body
//! already bounded in size; malformed input is an error, never a panic.

/// One uploaded part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part<'a> {
    /// The form field name.
    pub name: String,
    /// The `filename` parameter, if any.
    pub filename: Option<String>,
    /// The content.
    pub data: &'a [u8],
}

/// Why a multipart body could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MultipartError {
    /// The Content-Type has no usable boundary.
    #[error("the Content-Type names no multipart boundary")]
    NoBoundary,
    /// The body does not follow the multipart grammar.
    #[error("malformed multipart body: {0}")]
    Malformed(&'static str),
}

/// The boundary of a `multipart/form-data; boundary=...` content type.
pub fn boundary(content_type: &str) -> Result<String, MultipartError> {
    let (kind, params) = content_type
        .split_once(';')
        .ok_or(MultipartError::NoBoundary)?;
    if !kind.trim().eq_ignore_ascii_case("multipart/form-data") {
        return Err(MultipartError::NoBoundary);
    }
    params
        .split(';')
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("boundary"))
        .map(|(_, v)| v.trim().trim_matches('"').to_string())
        .filter(|b| !b.is_empty() && b.len() <= 200)
        .ok_or(MultipartError::NoBoundary)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return None;
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A parameter (`name="..."`) of a Content-Disposition value.
fn param(disposition: &str, key: &str) -> Option<String> {
    disposition.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case(key)
            .then(|| v.trim().trim_matches('"').to_string())
    })
}

/// The parts of `body`.
pub fn parse<'a>(body: &'a [u8], boundary: &str) -> Result<Vec<Part<'a>>, MultipartError> {
    let delim = format!("--{boundary}");
    let start = find(body, delim.as_bytes()).ok_or(MultipartError::Malformed("no boundary"))?;
    let mut rest = body
        .get(start + delim.len()..)
        .ok_or(MultipartError::Malformed("no boundary"))?;
    let next = format!("\r\n--{boundary}");
    let mut parts = Vec::new();
    loop {
        if rest.starts_with(b"--") {
            return Ok(parts);
        }
        rest = rest
            .strip_prefix(b"\r\n")
            .ok_or(MultipartError::Malformed("no line break after a boundary"))?;
        let head_end =
            find(rest, b"\r\n\r\n").ok_or(MultipartError::Malformed("part headers do not end"))?;
        let head = std::str::from_utf8(rest.get(..head_end).unwrap_or_default())
            .map_err(|_| MultipartError::Malformed("part headers are not UTF-8"))?;
        let content = rest.get(head_end + 4..).unwrap_or_default();
        let end = find(content, next.as_bytes()).ok_or(MultipartError::Malformed(
            "a part does not end with a boundary",
        ))?;
        let disposition = head
            .split("\r\n")
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-disposition"))
            .map(|(_, v)| v.trim().to_string())
            .ok_or(MultipartError::Malformed(
                "a part has no Content-Disposition",
            ))?;
        parts.push(Part {
            name: param(&disposition, "name").unwrap_or_default(),
            filename: param(&disposition, "filename"),
            data: content.get(..end).unwrap_or_default(),
        });
        rest = content.get(end + next.len()..).unwrap_or_default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_what_httpx_sends() {
        let ct = "multipart/form-data; boundary=abc123";
        let b = boundary(ct).unwrap();
        let body = b"--abc123\r\nContent-Disposition: form-data; name=\"file\"; filename=\"/w/a.txt\"\r\nContent-Type: application/octet-stream\r\n\r\nhello\r\nworld\r\n--abc123\r\nContent-Disposition: form-data; name=\"file\"; filename=\"b\"\r\n\r\n\r\n--abc123--\r\n";
        let parts = parse(body, &b).unwrap();
        assert_eq!(
            parts,
            [
                Part {
                    name: "file".into(),
                    filename: Some("/w/a.txt".into()),
                    data: b"hello\r\nworld"
                },
                Part {
                    name: "file".into(),
                    filename: Some("b".into()),
                    data: b""
                }
            ]
        );
    }

    #[test]
    fn malformed_bodies_are_errors() {
        assert_eq!(
            boundary("application/json"),
            Err(MultipartError::NoBoundary)
        );
        assert_eq!(
            boundary("multipart/form-data; charset=x"),
            Err(MultipartError::NoBoundary)
        );
        assert!(parse(b"", "x").is_err());
        assert!(
            parse(
                b"--x\r\nContent-Disposition: form-data\r\n\r\nunterminated",
                "x"
            )
            .is_err()
        );
        assert!(parse(b"--x\r\nNo-Disposition: a\r\n\r\nd\r\n--x--", "x").is_err());
    }

    proptest! {
        #[test]
        fn parser_never_panics(body in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse(&body, "b");
            let mut framed = b"--b\r\n".to_vec();
            framed.extend(&body);
            let _ = parse(&framed, "b");
        }
    }
}
