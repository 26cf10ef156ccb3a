//! Timestamps of audit records: milliseconds since the Unix epoch, written as RFC 3339 UTC
//! with exactly three fractional digits (`2026-11-27T03:12:45.123Z`). The fixed width makes
//! the text sort like the time and keeps the canonical bytes of a record unambiguous. Used by
//! `event` (the `ts` field), `chain` (stamping) and `show` (`--since`).

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Milliseconds from 1970-01-01T00:00:00Z to 9999-12-31T23:59:59.999Z, the last instant
/// the four-digit year format can show.
const MAX_MILLIS: u64 = 253_402_300_799_999;

/// A UTC instant with millisecond precision, between 1970 and the end of year 9999.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(u64);

/// Why a timestamp did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid timestamp {text:?}: expected RFC 3339 like 2026-11-27T03:12:45.123Z or a date like 2026-11-27"
)]
pub struct TimestampError {
    /// The rejected text.
    pub text: String,
}

impl Timestamp {
    /// The current time (clamped to the representable range).
    pub fn now() -> Self {
        Self::from_system_time(SystemTime::now())
    }

    /// Converts a `SystemTime`, truncating to milliseconds; times before 1970 become the epoch.
    pub fn from_system_time(t: SystemTime) -> Self {
        let ms = t
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        Self(ms.min(MAX_MILLIS))
    }

    /// From milliseconds since the epoch (clamped to the representable range).
    pub fn from_millis(ms: u64) -> Self {
        Self(ms.min(MAX_MILLIS))
    }

    /// Milliseconds since the epoch.
    pub fn as_millis(self) -> u64 {
        self.0
    }

    /// As a `SystemTime`.
    pub fn to_system_time(self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.0)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let days = self.0 / 86_400_000;
        let in_day = self.0 % 86_400_000;
        let (y, m, d) = civil_from_days(days);
        let (hh, rest) = (in_day / 3_600_000, in_day % 3_600_000);
        let (mm, rest) = (rest / 60_000, rest % 60_000);
        let (ss, ms) = (rest / 1000, rest % 1000);
        write!(f, "{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}.{ms:03}Z")
    }
}

impl FromStr for Timestamp {
    type Err = TimestampError;

    /// Accepts `YYYY-MM-DD` (midnight UTC) and RFC 3339 date-times with `T` or a space,
    /// optional fraction (truncated to milliseconds) and `Z` or a `±HH:MM` offset.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse(s.as_bytes()).ok_or_else(|| TimestampError { text: s.to_owned() })
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

/// (year ≥ 1970, month, day) → days since 1970-01-01; the inverse of [`civil_from_days`].
fn days_from_civil(y: u64, m: u64, d: u64) -> u64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y / 400;
    let yoe = y % 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn days_in_month(y: u64, m: u64) -> u64 {
    match m {
        4 | 6 | 9 | 11 => 30,
        2 if (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400) => 29,
        2 => 28,
        _ => 31,
    }
}

/// Reads exactly `n` ASCII digits at `*at`.
fn digits(b: &[u8], at: &mut usize, n: usize) -> Option<u64> {
    let s = b.get(*at..at.checked_add(n)?)?;
    let mut v = 0u64;
    for c in s {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + u64::from(c - b'0');
    }
    *at += n;
    Some(v)
}

fn expect(b: &[u8], at: &mut usize, c: u8) -> Option<()> {
    (b.get(*at) == Some(&c)).then(|| *at += 1)
}

fn parse(b: &[u8]) -> Option<Timestamp> {
    let mut at = 0;
    let y = digits(b, &mut at, 4)?;
    expect(b, &mut at, b'-')?;
    let mo = digits(b, &mut at, 2)?;
    expect(b, &mut at, b'-')?;
    let d = digits(b, &mut at, 2)?;
    if y < 1970 || !(1..=12).contains(&mo) || d == 0 || d > days_in_month(y, mo) {
        return None;
    }
    let day_ms = days_from_civil(y, mo, d) * 86_400_000;
    if at == b.len() {
        return Some(Timestamp(day_ms));
    }
    match b.get(at) {
        Some(b'T' | b't' | b' ') => at += 1,
        _ => return None,
    }
    let hh = digits(b, &mut at, 2)?;
    expect(b, &mut at, b':')?;
    let mm = digits(b, &mut at, 2)?;
    expect(b, &mut at, b':')?;
    let ss = digits(b, &mut at, 2)?;
    if hh > 23 || mm > 59 || ss > 59 {
        return None;
    }
    let mut ms = 0;
    if b.get(at) == Some(&b'.') {
        at += 1;
        let start = at;
        while b.get(at).is_some_and(u8::is_ascii_digit) {
            if at - start < 3 {
                ms = ms * 10 + u64::from(b[at] - b'0');
            }
            at += 1;
        }
        match at - start {
            0 => return None,
            1 => ms *= 100,
            2 => ms *= 10,
            _ => {}
        }
    }
    let local = day_ms + ((hh * 60 + mm) * 60 + ss) * 1000 + ms;
    let utc = match b.get(at) {
        Some(b'Z' | b'z') if at + 1 == b.len() => local,
        Some(sign @ (b'+' | b'-')) => {
            let sign = *sign;
            at += 1;
            let oh = digits(b, &mut at, 2)?;
            expect(b, &mut at, b':')?;
            let om = digits(b, &mut at, 2)?;
            if oh > 23 || om > 59 || at != b.len() {
                return None;
            }
            let off = (oh * 60 + om) * 60_000;
            if sign == b'+' {
                local.checked_sub(off)?
            } else {
                local + off
            }
        }
        _ => return None,
    };
    (utc <= MAX_MILLIS).then_some(Timestamp(utc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(Timestamp(0).to_string(), "1970-01-01T00:00:00.000Z");
        // 2026-11-27T03:12:45.123Z, computed independently with `date -u -d ... +%s`.
        assert_eq!(
            Timestamp(1_795_749_165_123).to_string(),
            "2026-11-27T03:12:45.123Z"
        );
        assert_eq!(
            Timestamp(951_782_400_000).to_string(),
            "2000-02-29T00:00:00.000Z"
        );
        assert_eq!(
            Timestamp(MAX_MILLIS).to_string(),
            "9999-12-31T23:59:59.999Z"
        );
    }

    #[test]
    fn parses_what_it_formats_for_every_day_of_a_leap_cycle() {
        let mut ms = 0;
        // Step a bit over a day so the time of day moves too; covers 1970..2101.
        while ms < 4_102_444_800_000 {
            let t = Timestamp(ms);
            assert_eq!(t.to_string().parse::<Timestamp>(), Ok(t), "{t}");
            ms += 86_400_000 + 3_601_001;
        }
    }

    #[test]
    fn parses_dates_offsets_and_fractions() {
        let t = |s: &str| s.parse::<Timestamp>().map(|t| t.to_string());
        assert_eq!(t("2026-11-27"), Ok("2026-11-27T00:00:00.000Z".into()));
        assert_eq!(
            t("2026-11-27T04:12:45+01:00"),
            Ok("2026-11-27T03:12:45.000Z".into())
        );
        assert_eq!(
            t("2026-11-27 03:12:45.1z"),
            Ok("2026-11-27T03:12:45.100Z".into())
        );
        assert_eq!(
            t("2026-11-27T03:12:45.123456789Z"),
            Ok("2026-11-27T03:12:45.123Z".into())
        );
        for bad in [
            "",
            "2026-13-01",
            "2026-02-29",
            "1969-12-31",
            "2026-11-27T24:00:00Z",
            "2026-11-27T03:12:45",
            "2026-11-27T03:12:45.Z",
            "2026-11-27T03:12:45Zx",
            "2026-11-27T03:12:45+0100",
            "２026-11-27",
        ] {
            assert!(bad.parse::<Timestamp>().is_err(), "{bad:?}");
        }
    }
}
