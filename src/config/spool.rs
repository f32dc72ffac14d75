//! The `spool:` section: where owned copies wait and how they are retried.

use super::*;

/// `spool.*`.
#[derive(Debug, Clone)]
pub struct SpoolConfig {
    /// `path`: the spool directory.
    pub path: PathBuf,
    /// `retry_min`, `retry_max`, `max_age`, `scan_interval`.
    pub retry: RetryPolicy,
}

/// Retry policy (`spool.*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// First retry after this long; doubles per attempt.
    pub retry_min: Duration,
    /// Longest wait between attempts.
    pub retry_max: Duration,
    /// Give up (and notify the sender) after this long.
    pub max_age: Duration,
    /// How often the spool is scanned for due entries.
    pub scan_interval: Duration,
}

impl RetryPolicy {
    /// Delay before attempt `attempts + 1`.
    pub fn backoff(&self, attempts: u32) -> Duration {
        let factor = 1u32
            .checked_shl(attempts.saturating_sub(1).min(20))
            .unwrap_or(u32::MAX);
        self.retry_min.saturating_mul(factor).min(self.retry_max)
    }
}

/// Default spool directory.
pub const DEFAULT_SPOOL_PATH: &str = "./spool";

/// First retry of a spooled copy.
pub const DEFAULT_SPOOL_RETRY_MIN: Duration = Duration::from_secs(60);

/// Longest wait between retries.
pub const DEFAULT_SPOOL_RETRY_MAX: Duration = Duration::from_secs(3600);

/// Give up after this long (Postfix's `maximal_queue_lifetime`).
pub const DEFAULT_SPOOL_MAX_AGE: Duration = Duration::from_secs(5 * 86400);

/// How often the spool is scanned.
pub const DEFAULT_SPOOL_SCAN_INTERVAL: Duration = Duration::from_secs(10);

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawSpool {
    path: Option<String>,
    retry_min: Option<String>,
    retry_max: Option<String>,
    max_age: Option<String>,
    scan_interval: Option<String>,
}

impl Validator {
    pub(super) fn spool(&mut self, raw: RawSpool) -> SpoolConfig {
        let path = self.path(raw.path.unwrap_or_else(|| DEFAULT_SPOOL_PATH.into()));
        if path.as_os_str().is_empty() {
            self.bad("spool.path", "must not be empty");
        }
        let retry = RetryPolicy {
            retry_min: self.duration("spool.retry_min", raw.retry_min, DEFAULT_SPOOL_RETRY_MIN),
            retry_max: self.duration("spool.retry_max", raw.retry_max, DEFAULT_SPOOL_RETRY_MAX),
            max_age: self.duration("spool.max_age", raw.max_age, DEFAULT_SPOOL_MAX_AGE),
            scan_interval: self.duration(
                "spool.scan_interval",
                raw.scan_interval,
                DEFAULT_SPOOL_SCAN_INTERVAL,
            ),
        };
        if retry.retry_max < retry.retry_min {
            self.bad(
                "spool.retry_max",
                "must not be shorter than spool.retry_min",
            );
        }
        SpoolConfig { path, retry }
    }
}
