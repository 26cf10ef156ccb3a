//! Pure reader of the status code at the start of the upstream's HTTP/1.x response.
//!
//! Called by the plain-HTTP splice (`conn/splice.rs`) on the first bytes that come back, only
//! to put the status in the audit record: the response itself is forwarded unchanged, so a
//! response this does not understand is still relayed, just recorded without a status.

/// Reads the status code from the first bytes of an HTTP/1.x response (`HTTP/1.1 200 ...`),
/// for the audit record; `None` when the bytes do not start that way.
pub fn response_status(first: &[u8]) -> Option<u16> {
    let rest = first.strip_prefix(b"HTTP/1.")?;
    let (&minor, rest) = rest.split_first()?;
    if !minor.is_ascii_digit() {
        return None;
    }
    let rest = rest.strip_prefix(b" ")?;
    let digits = rest.get(..3)?;
    if !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    digits
        .iter()
        .try_fold(0u16, |n, &d| Some(n * 10 + u16::from(d - b'0')))
}

/// Reads the status of the response starting `data`, skipping whole interim (1xx) responses
/// in it (`100 Continue` before the real answer). Returns the last status seen and whether the
/// chunk ended right after an interim response, so the next chunk may carry the final one.
pub fn scan_status(mut data: &[u8]) -> (Option<u16>, bool) {
    let mut last = None;
    loop {
        let Some(status) = response_status(data) else {
            return (last, false);
        };
        last = Some(status);
        if !(100..200).contains(&status) {
            return (last, false);
        }
        let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") else {
            return (last, false);
        };
        data = data.get(end + 4..).unwrap_or_default();
        if data.is_empty() {
            return (last, true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        assert_eq!(response_status(b"HTTP/1.1 200 OK\r\n"), Some(200));
        assert_eq!(response_status(b"HTTP/1.0 404"), Some(404));
        assert_eq!(response_status(b"HTTP/1.1 20"), None);
        assert_eq!(response_status(b"HTTP/2 200"), None);
        assert_eq!(response_status(b"SSH-2.0"), None);
        assert_eq!(
            scan_status(b"HTTP/1.1 204 No Content\r\n\r\n"),
            (Some(204), false)
        );
        assert_eq!(
            scan_status(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\n"),
            (Some(201), false)
        );
        assert_eq!(
            scan_status(b"HTTP/1.1 100 Continue\r\n\r\n"),
            (Some(100), true)
        );
        assert_eq!(
            scan_status(b"HTTP/1.1 103 Early\r\nLink: x"),
            (Some(103), false)
        );
        assert_eq!(scan_status(b"garbage"), (None, false));
    }
}
