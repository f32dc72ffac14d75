//! The outbox loop: which queued notices are due (the DPO first, one
//! mail each up to `incidents.digest_after` an hour, then digests), and
//! what becomes of each attempt: a step on the incident when sent, a
//! retry with backoff, or "notice failed" after `incidents.notice_max_age`.

use std::time::Duration;

use tokio::sync::watch;

use super::send::{send_to_dpo, send_to_sender, send_webhook};
use super::{DIGEST_WINDOW, NOTIFY_POLL, NoticeError};
use crate::config::Config;
use crate::incident::Workflow;
use crate::incident::store::{self, Notice, NoticeKind, Step};

/// Sends due notices until shutdown.
pub async fn run(wf: Workflow, mut stop: watch::Receiver<bool>) {
    loop {
        if let Err(e) = pass(&wf).await {
            tracing::error!("notices: {e}");
        }
        // A digest waiting for its interval, or a retry waiting for its
        // first backoff, is due before the next poll.
        let cfg = wf.config();
        let poll = NOTIFY_POLL
            .min(cfg.incidents.digest_interval)
            .min(cfg.incidents.notice_retry_min);
        tokio::select! {
            _ = tokio::time::sleep(poll) => {}
            _ = wf.wake.notified() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

async fn pass(wf: &Workflow) -> Result<(), store::StoreError> {
    let now = crate::clock::now() as i64;
    let due = store::call(&wf.store, move |s| s.due_notices(now)).await?;
    if due.is_empty() {
        return Ok(());
    }
    let cfg = wf.config();
    let (dpo, other): (Vec<Notice>, Vec<Notice>) =
        due.into_iter().partition(|n| n.kind == NoticeKind::Dpo);
    // The DPO first: the Art. 33 clock runs from their knowing, and a hung
    // ticketing system (up to `incidents.webhook_timeout` per POST) or a
    // slow sender notice must not hold their mail up.
    if !dpo.is_empty() {
        mail_dpo(wf, &cfg, now, &dpo).await?;
    }
    for n in other {
        let result = match n.kind {
            NoticeKind::Webhook => send_webhook(wf, &cfg, &n).await,
            _ => send_to_sender(wf, &cfg, &n).await,
        };
        settle(wf, &[n], result).await?;
    }
    Ok(())
}

/// The due DPO notices: one mail each while fewer than
/// `incidents.digest_after` went out in the last hour, the rest as one
/// digest at most every `incidents.digest_interval`.
async fn mail_dpo(
    wf: &Workflow,
    cfg: &Config,
    now: i64,
    dpo: &[Notice],
) -> Result<(), store::StoreError> {
    let since = now - DIGEST_WINDOW.as_secs() as i64;
    let (sent, last) = store::call(&wf.store, move |s| {
        s.mails_sent_since(NoticeKind::Dpo, since)
    })
    .await?;
    let room = cfg.incidents.digest_after.saturating_sub(sent);
    let (single, rest) = dpo.split_at(room.min(dpo.len()));
    for n in single {
        let result = send_to_dpo(wf, cfg, std::slice::from_ref(n)).await;
        settle(wf, std::slice::from_ref(n), result).await?;
    }
    // A digest waits for `digest_interval` after the last mail: one digest
    // a minute at most, so a burst of hundreds is a handful of mails.
    let interval = cfg.incidents.digest_interval.as_secs() as i64;
    let quiet = single.is_empty() && last.is_none_or(|l| now - l >= interval);
    if !rest.is_empty() && quiet {
        let result = send_to_dpo(wf, cfg, rest).await;
        settle(wf, rest, result).await?;
    }
    Ok(())
}

/// Records the outcome of sending `notices` (one mail or POST).
async fn settle(
    wf: &Workflow,
    notices: &[Notice],
    result: Result<String, NoticeError>,
) -> Result<(), store::StoreError> {
    let now = crate::clock::now() as i64;
    match result {
        Ok(detail) => sent(wf, notices, &detail, now).await,
        // The text is what the outbox and the step keep.
        Err(error) => not_sent(wf, notices, &error.to_string(), now).await,
    }
}

/// Marks `notices` sent, with a step "notified" on each incident.
async fn sent(
    wf: &Workflow,
    notices: &[Notice],
    detail: &str,
    now: i64,
) -> Result<(), store::StoreError> {
    let kind = notices.first().map_or(NoticeKind::Dpo, |n| n.kind);
    let ids: Vec<i64> = notices.iter().map(|n| n.id).collect();
    let batch = crate::id::new_id();
    let steps: Vec<(String, Step)> = notices
        .iter()
        .map(|n| {
            (
                n.incident.clone(),
                Step::now("bccguard", "notified", detail),
            )
        })
        .collect();
    store::call(&wf.store, move |s| {
        s.notices_sent(&ids, &batch, now)?;
        for (id, step) in &steps {
            s.add_step(id, step)?;
        }
        Ok(())
    })
    .await?;
    // Counted once recorded: whoever sees the metric move finds the
    // step on the incident.
    wf.metrics.notice(kind.as_str(), "sent");
    Ok(())
}

/// Schedules a retry of each of `notices`, or gives it up (a step
/// "notice failed") once older than `incidents.notice_max_age`.
async fn not_sent(
    wf: &Workflow,
    notices: &[Notice],
    error: &str,
    now: i64,
) -> Result<(), store::StoreError> {
    let cfg = wf.config();
    for n in notices.iter().cloned() {
        let give_up = now - n.created >= cfg.incidents.notice_max_age.as_secs() as i64;
        let error = error.to_string();
        tracing::warn!(incident = %n.incident, kind = n.kind.as_str(), event = %n.event, %error, "notice not sent");
        let kind = n.kind;
        let wait = retry_wait(
            n.attempts,
            cfg.incidents.notice_retry_min,
            cfg.incidents.notice_retry_max,
        );
        store::call(&wf.store, move |s| {
            if give_up {
                s.notice_failed(n.id, &error)?;
                let what = format!("{} notice ({}) given up: {error}", n.kind.as_str(), n.event);
                s.add_step(&n.incident, &Step::now("bccguard", "notice failed", what))
            } else {
                s.notice_retry(n.id, now + wait, &error)
            }
        })
        .await?;
        wf.metrics
            .notice(kind.as_str(), if give_up { "failed" } else { "retry" });
    }
    Ok(())
}

/// Seconds before the next attempt at a notice tried `attempts` times:
/// `min` doubling per attempt, at most `max`. Rounded up to whole seconds,
/// the outbox's clock, so a sub-second `min` still waits.
fn retry_wait(attempts: u32, min: Duration, max: Duration) -> i64 {
    let wait = min.saturating_mul(1 << attempts.min(16)).min(max);
    wait.as_secs() as i64 + i64::from(wait.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_double_from_the_minimum_up_to_the_maximum_in_whole_seconds() {
        let (min, max) = (Duration::from_secs(30), Duration::from_secs(3600));
        let waits: Vec<i64> = (0..9).map(|a| retry_wait(a, min, max)).collect();
        assert_eq!(waits, [30, 60, 120, 240, 480, 960, 1920, 3600, 3600]);
        assert_eq!(retry_wait(u32::MAX, min, max), 3600, "no overflow");
        let sub = Duration::from_millis(300);
        assert_eq!(retry_wait(0, sub, max), 1, "rounded up, never 0");
    }
}
