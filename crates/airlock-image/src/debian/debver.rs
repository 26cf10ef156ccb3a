//! Debian version ordering (`[epoch:]upstream[-revision]`), as dpkg compares versions. Used by
//! the patch check to decide whether an archive holds a newer version than the image has.
//!
//! Within upstream and revision, runs of non-digits are compared character by character with `~`
//! sorting before everything (even the end of the string), then letters, then other characters;
//! runs of digits are compared as numbers.

use std::cmp::Ordering;

/// Compares two Debian version strings as dpkg does.
///
/// Versions come from Packages indices and the image's manifest; a malformed epoch (not a
/// number) counts as part of the upstream version rather than failing, so a bad entry sorts
/// somewhere instead of aborting a whole check.
pub fn compare(a: &str, b: &str) -> Ordering {
    let (ea, ua, ra) = split(a);
    let (eb, ub, rb) = split(b);
    ea.cmp(&eb)
        .then_with(|| compare_part(ua, ub))
        .then_with(|| compare_part(ra, rb))
}

/// Splits into (epoch, upstream, revision); a missing epoch is 0 and a missing revision empty.
fn split(v: &str) -> (u64, &str, &str) {
    let (epoch, rest) = match v.split_once(':') {
        Some((e, rest)) if !e.is_empty() && e.bytes().all(|c| c.is_ascii_digit()) => {
            (e.parse().unwrap_or(u64::MAX), rest)
        }
        _ => (0, v),
    };
    match rest.rsplit_once('-') {
        Some((upstream, revision)) => (epoch, upstream, revision),
        None => (epoch, rest, ""),
    }
}

/// The weight of a character in a non-digit run; `None` is the end of the run.
fn weight(c: Option<u8>) -> i32 {
    match c {
        None => 0,
        Some(b'~') => -1,
        Some(c) if c.is_ascii_digit() => 0,
        Some(c) if c.is_ascii_alphabetic() => i32::from(c),
        Some(c) => i32::from(c) + 256,
    }
}

/// dpkg's `verrevcmp`: alternate non-digit and digit runs.
fn compare_part(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    while !a.is_empty() || !b.is_empty() {
        // Non-digit run.
        loop {
            let ca = a.first().copied().filter(|c| !c.is_ascii_digit());
            let cb = b.first().copied().filter(|c| !c.is_ascii_digit());
            if ca.is_none() && cb.is_none() {
                break;
            }
            let order = weight(ca).cmp(&weight(cb));
            if order != Ordering::Equal {
                return order;
            }
            a = a.get(1..).unwrap_or_default();
            b = b.get(1..).unwrap_or_default();
        }
        // Digit run, compared as a number of any length.
        let (da, rest_a) = digits(a);
        let (db, rest_b) = digits(b);
        let order = da.len().cmp(&db.len()).then_with(|| da.cmp(db));
        if order != Ordering::Equal {
            return order;
        }
        a = rest_a;
        b = rest_b;
    }
    Ordering::Equal
}

/// The leading digit run without leading zeros, and what follows it.
fn digits(s: &[u8]) -> (&[u8], &[u8]) {
    let end = s
        .iter()
        .position(|c| !c.is_ascii_digit())
        .unwrap_or(s.len());
    let (run, rest) = s.split_at(end);
    let first = run.iter().position(|&c| c != b'0').unwrap_or(run.len());
    (run.get(first..).unwrap_or_default(), rest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use Ordering::{Equal, Greater, Less};

    #[test]
    fn orders_like_dpkg() {
        let cases = [
            ("1.0", "1.0", Equal),
            ("1.0", "1.1", Less),
            ("1.10", "1.9", Greater),
            ("1.0-1", "1.0-2", Less),
            ("1.0-10", "1.0-9", Greater),
            ("1.0", "1.0-0", Equal),
            ("1.0-1", "1.0", Greater),
            ("007", "7", Equal),
            // Epochs win over everything else.
            ("1:1.0", "2.0", Greater),
            ("0:1.0", "1.0", Equal),
            ("2:0.1", "1:9.9", Greater),
            // `~` sorts before the end of the string and before anything else.
            ("1.0~rc1", "1.0", Less),
            ("1.0~rc1", "1.0~rc2", Less),
            ("1.0~~", "1.0~", Less),
            ("1.0~", "1.0", Less),
            ("1.0~rc1-1", "1.0-1", Less),
            // Letters sort before other characters, and the end of a run before letters.
            ("1.0a", "1.0+", Less),
            ("1.0", "1.0a", Less),
            ("1.0+b1", "1.0", Greater),
            // Real bookworm security and point-release versions.
            ("2.36-9+deb12u7", "2.36-9+deb12u10", Less),
            ("3.0.11-1~deb12u2", "3.0.15-1~deb12u1", Less),
            ("1:2.39.2-1.1", "1:2.39.5-0+deb12u2", Less),
            ("6.1.115-1", "6.1.119-1", Less),
            ("18.19.0+dfsg-6~deb12u1", "18.19.0+dfsg-6~deb12u2", Less),
            ("1.2.13.dfsg-1", "1:1.2.13.dfsg-1", Less),
            // Hyphens in upstream: the revision is after the last one.
            ("1.0-beta-1", "1.0-beta-2", Less),
            // Digit runs longer than any integer type.
            (
                "1.123456789012345678901234567890",
                "1.123456789012345678901234567891",
                Less,
            ),
        ];
        for (a, b, want) in cases {
            assert_eq!(compare(a, b), want, "{a} vs {b}");
            assert_eq!(compare(b, a), want.reverse(), "{b} vs {a}");
        }
    }

    #[test]
    fn malformed_epoch_is_part_of_upstream() {
        assert_eq!(split("a:1.0-1"), (0, "a:1.0", "1"));
        assert_eq!(split("1:2:3"), (1, "2:3", ""));
        assert_eq!(compare("", ""), Equal);
        assert_eq!(compare("", "0"), Equal);
        assert_eq!(compare("~", ""), Less);
    }
}
