//! How gcrun writes times for people and APIs: RFC 3339 in UTC, with
//! milliseconds when there are any. Formatting only; nothing here reads a
//! clock.

/// Unix milliseconds as RFC 3339 (UTC), e.g. `2026-12-01T08:07:43.120Z`.
pub fn rfc3339_ms(ms: u64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default()
}

/// Reads an RFC 3339 time (`2026-12-01T08:00:00Z`) as Unix milliseconds.
pub fn parse_rfc3339_ms(s: &str) -> Option<u64> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?;
    u64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}

/// Reads a moment as operators write it: RFC 3339, or a span back from
/// `now_ms` (`90s`, `15m`, `2h`, `7d`).
pub fn parse_moment(s: &str, now_ms: u64) -> Result<u64, String> {
    if let Some(ms) = parse_rfc3339_ms(s) {
        return Ok(ms);
    }
    let s = s.trim();
    let (digits, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = digits.parse().map_err(|_| format!("`{s}` is neither RFC 3339 nor a span like 15m"))?;
    let unit_ms = match unit {
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(format!("`{s}`: a span ends in s, m, h or d")),
    };
    Ok(now_ms.saturating_sub(n.saturating_mul(unit_ms)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moments_read_both_ways() {
        assert_eq!(parse_moment("2026-12-01T00:00:00Z", 0), Ok(1_796_083_200_000));
        assert_eq!(parse_moment("15m", 1_000_000), Ok(100_000));
        assert_eq!(parse_moment("2d", 1), Ok(0));
        assert!(parse_moment("15 minutes", 0).is_err());
        assert!(parse_moment("m", 0).is_err());
        assert_eq!(
            parse_rfc3339_ms("2026-12-01T08:07:43.120Z").map(rfc3339_ms).as_deref(),
            Some("2026-12-01T08:07:43.12Z")
        );
    }
}
