//! What `/metrics` shows of the register and the quarantine:
//! `bccguard_quarantine_held`, `bccguard_quarantine_oldest_seconds`,
//! `bccguard_quarantine_decisions_total{how,by}` and
//! `bccguard_incident_deadline_seconds`.
//!
//! They are read from the store at every scrape ([`refresh`]), not counted
//! where the events happen: a release or a drop is `bccguard quarantine
//! ...`, another process on the same database, whose counters would never
//! reach the running guard's `/metrics`. The decisions are the holds that
//! ended (their quarantine rows stay when the message is deleted), so the
//! counter survives restarts and counts what any process decided.
//!
//! "Open" disclosed incident: there is no step yet saying the authority
//! was notified (or that the DPO decided not to), so every disclosed
//! incident counts until its deadline has passed by
//! [`DEADLINE_OVERDUE_WINDOW`]; after that it no longer shows, so one old
//! incident does not hold the gauge (and its alert) negative for ever.

use std::sync::Arc;
use std::time::Duration;

use crate::incident::notify::ART33_DEADLINE;
use crate::incident::quarantine::{By, ReleaseAs};
use crate::incident::store::{self, HoldState, Store, Tally};
use crate::metrics::Metrics;

/// How long a disclosed incident still shows after its Art. 33 deadline
/// (as a negative number of seconds): a day of "overdue" for the DPO to
/// see, then it leaves the gauge.
pub const DEADLINE_OVERDUE_WINDOW: i64 = 24 * 3600;

/// How long a scrape waits for the store: past this it serves the values
/// of the last read (a writer holding the database must not make
/// Prometheus time out).
pub const REFRESH_TIMEOUT: Duration = Duration::from_secs(2);

/// Reads the store and sets the metrics; on failure the last values stay
/// (and the failure is logged).
pub async fn refresh(store: &Arc<dyn Store>, metrics: &Metrics) {
    let now = crate::clock::now() as i64;
    let since = disclosed_since(now);
    let read = store::call(store, move |s| s.tally(since));
    match tokio::time::timeout(REFRESH_TIMEOUT, read).await {
        Ok(Ok(tally)) => apply(&tally, now, metrics),
        Ok(Err(e)) => {
            tracing::warn!("metrics: cannot read the store, serving the last values: {e}")
        }
        Err(_) => tracing::warn!(
            timeout = ?REFRESH_TIMEOUT,
            "metrics: the store did not answer in time, serving the last values"
        ),
    }
}

/// The earliest moment of disclosure whose incident is still open at `now`.
fn disclosed_since(now: i64) -> i64 {
    now - ART33_DEADLINE - DEADLINE_OVERDUE_WINDOW
}

/// Sets the metrics from one read of the store taken at `now`.
fn apply(t: &Tally, now: i64, metrics: &Metrics) {
    let oldest = t.oldest_held_at.map_or(0, |at| now - at);
    metrics.quarantine_waiting(t.waiting, oldest);
    for (how, by, total) in decisions(t) {
        metrics.decisions_seen(how, by, total);
    }
    metrics.incident_deadline(t.first_disclosed.map(|at| at + ART33_DEADLINE - now));
}

/// The ended holds as `(how, by, total)` label values of
/// [`crate::metrics::QUARANTINE_DECISIONS`]. A release whose step does not
/// say how (never written so) is not counted.
fn decisions(t: &Tally) -> Vec<(&'static str, &'static str, u64)> {
    let mut out: Vec<(&'static str, &'static str, u64)> = Vec::new();
    for (state, detail, n) in &t.ended {
        let label = match state {
            HoldState::Released => detail.as_deref().and_then(|d| {
                ReleaseAs::of_detail(d).map(|how| (how.as_str(), By::of_detail(d).as_str()))
            }),
            HoldState::Dropped => Some((
                "dropped",
                By::of_detail(detail.as_deref().unwrap_or("")).as_str(),
            )),
            HoldState::Expired => Some(("expired", "expiry")),
            HoldState::Held | HoldState::Releasing => None,
        };
        let Some((how, by)) = label else { continue };
        match out.iter_mut().find(|(h, b, _)| (*h, *b) == (how, by)) {
            Some(seen) => seen.2 += n,
            None => out.push((how, by, *n)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ended(v: &[(HoldState, Option<&str>, u64)]) -> Tally {
        Tally {
            ended: v
                .iter()
                .map(|(s, d, n)| (*s, d.map(str::to_string), *n))
                .collect(),
            ..Tally::default()
        }
    }

    #[test]
    fn ended_holds_become_decisions_by_how_and_by_whom() {
        let t = ended(&[
            (HoldState::Dropped, None, 2),
            (HoldState::Expired, None, 1),
            (HoldState::Released, Some("as bcc"), 4),
            (HoldState::Released, Some("as original"), 1),
            (HoldState::Released, Some("garbled"), 7),
            (HoldState::Released, None, 7),
        ]);
        assert_eq!(
            decisions(&t),
            [
                ("dropped", "cli", 2),
                ("expired", "expiry", 1),
                ("bcc", "cli", 4),
                ("original", "cli", 1),
            ]
        );
        // Every label pair is one the metrics pre-register.
        for (how, by, _) in decisions(&t) {
            assert!(crate::metrics::QUARANTINE_DECISIONS.contains(&(how, by)));
        }
    }

    #[test]
    fn the_gauges_are_the_wait_and_the_time_left() {
        let m = Metrics::new();
        let now = 1_000_000;
        let t = Tally {
            waiting: 2,
            oldest_held_at: Some(now - 90),
            ended: vec![(HoldState::Released, Some("as split".into()), 1)],
            first_disclosed: Some(now - 3600),
        };
        apply(&t, now, &m);
        let split = "bccguard_quarantine_decisions_total{how=\"split\",by=\"cli\"} 1";
        m.assert_lines(&[
            "bccguard_quarantine_held 2",
            "bccguard_quarantine_oldest_seconds 90",
            split,
            "bccguard_incident_deadline_seconds 255600",
        ]);
        // Nothing waits, nothing open: 0 and no deadline sample; the
        // decision counter keeps its value.
        apply(&Tally::default(), now, &m);
        m.assert_lines(&[
            "bccguard_quarantine_held 0",
            "bccguard_quarantine_oldest_seconds 0",
            split,
        ]);
        let text = m.render();
        assert!(
            !text.contains("\nbccguard_incident_deadline_seconds "),
            "{text}"
        );
    }

    #[test]
    fn a_disclosure_is_open_until_a_day_past_its_deadline() {
        let now = 10_000_000;
        let since = disclosed_since(now);
        // Disclosed exactly 96 h ago: deadline a day ago, still shown.
        assert_eq!(since, now - 96 * 3600);
        let m = Metrics::new();
        let t = Tally {
            first_disclosed: Some(since),
            ..Tally::default()
        };
        apply(&t, now, &m);
        m.assert_lines(&["bccguard_incident_deadline_seconds -86400"]);
    }
}
