//! The process's one wall clock: every timestamp the guard writes (incident
//! records, the register, notices, the spool, `Received:` and DSN dates)
//! comes from here, so a test or a future simulated clock has one place to
//! change. Timeouts are not wall-clock reads: they use tokio's monotonic
//! [`tokio::time::Instant`] (see [`crate::net::timer`]).

use std::time::{SystemTime, UNIX_EPOCH};

/// Unix seconds now.
pub fn now() -> u64 {
    since_epoch().as_secs()
}

/// The time since the Unix epoch (zero if the system clock is before it).
pub fn since_epoch() -> std::time::Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// The current wall-clock time as a [`SystemTime`].
pub fn system_now() -> SystemTime {
    SystemTime::now()
}

/// Current time in RFC 3339, UTC, second precision.
pub fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc();
    let now = now.replace_nanosecond(0).unwrap_or(now);
    now.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Current time in RFC 5322 form (`Received:` headers).
pub fn now_rfc2822() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc2822)
        .unwrap_or_default()
}

/// Unix seconds as RFC 3339 UTC.
pub fn rfc3339(t: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|d| {
            d.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// Unix seconds as the reader's wall clock: `2021-03-01 11:00:00 CET
/// (UTC+01:00)` in `zone` (`incidents.timezone`). The offset is spelled
/// out, since the authority's form and the register's RFC 3339 UTC must
/// agree.
pub fn local(zone: &jiff::tz::TimeZone, t: i64) -> String {
    match jiff::Timestamp::from_second(t) {
        Ok(ts) => ts
            .to_zoned(zone.clone())
            .strftime("%Y-%m-%d %H:%M:%S %Z (UTC%:z)")
            .to_string(),
        Err(_) => t.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_agree_with_the_unix_clock() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        let before = now();
        let text = now_rfc3339();
        assert!(text.ends_with('Z') && !text.contains('.'), "{text}");
        assert!(now() >= before);
    }
}
