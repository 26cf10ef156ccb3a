//! Sizes (`512M`, `2GiB`) and durations (`90s`, `1h30m`) as policies write them.

use std::time::Duration;

/// Parses `512M`, `2GiB`, `500MB`, `1024`: a whole number and an optional unit, case-insensitive.
/// K, M, G, T and KiB, MiB, GiB, TiB are binary; KB, MB, GB, TB decimal; B or none is bytes.
pub(crate) fn parse_size(text: &str) -> Option<u64> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    if number.is_empty() || number.len() > 20 {
        return None;
    }
    let n: u64 = number.parse().ok()?;
    let multiplier: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        _ => return None,
    };
    n.checked_mul(multiplier).filter(|v| *v > 0)
}

/// Parses `90s`, `30m`, `2h`, `1h30m`, `500ms`, `1d`: number-unit pairs, summed; at least one
/// pair, total greater than zero.
pub(crate) fn parse_duration(text: &str) -> Option<Duration> {
    if text.is_empty() {
        return None;
    }
    let mut rest = text;
    let mut total_ms: u64 = 0;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 || digits > 15 {
            return None;
        }
        let (number, tail) = rest.split_at(digits);
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let ms: u64 = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return None,
        };
        let n: u64 = number.parse().ok()?;
        total_ms = total_ms.checked_add(n.checked_mul(ms)?)?;
        rest = tail;
    }
    (total_ms > 0).then(|| Duration::from_millis(total_ms))
}
