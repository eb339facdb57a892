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
