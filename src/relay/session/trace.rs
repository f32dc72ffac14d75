//! The one INFO line every client transaction ends with, whatever became of
//! it: delivered, held, rejected by the policy, refused by a limit (size,
//! line length, bare LF, an unreadable header section) or deferred. Its
//! `tx` is the id the guard gives the transaction at MAIL: the incident and
//! the held message carry it, the guard's own replies name it, and
//! `upstream_queue_id` is the real mail server's id for the same message
//! (read from its 250), so an admin follows one mail from the client's
//! bounce through this log into upstream's log with two greps, as Postfix
//! admins do with a queue id.

use crate::policy::Decision;
use crate::smtp::reply::Reply;
use crate::upstream::queue_id::queue_id;

use super::Session;
use super::deliver::LOG_TARGET;

/// How a transaction ended, for its line.
pub(super) struct Ended<'a> {
    /// The guard's id of the transaction.
    pub(super) tx: &'a str,
    /// Envelope sender and recipient count.
    pub(super) mail_from: &'a str,
    pub(super) rcpts: usize,
    /// Message bytes read (as far as the guard read them).
    pub(super) size: usize,
    /// The policy's decision, when the message got that far.
    pub(super) decision: Option<&'a Decision>,
    /// Why the guard refused it itself (the metric's `reason` label), or
    /// `None` when the policy or upstream had the last word.
    pub(super) refused: Option<&'static str>,
    /// The message is in the quarantine.
    pub(super) held: bool,
    /// What the client heard.
    pub(super) reply: &'a Reply,
    /// Upstream's final reply, when the client's came from it.
    pub(super) upstream: Option<&'a Reply>,
}

impl<'a> Ended<'a> {
    /// A transaction that ended with `reply` after `size` bytes; the rest
    /// is filled in by the caller.
    pub(super) fn new(tx: &'a super::Transaction, size: usize, reply: &'a Reply) -> Self {
        Ended {
            tx: &tx.id,
            mail_from: &tx.mail_from,
            rcpts: tx.rcpts.len(),
            size,
            decision: None,
            refused: None,
            held: false,
            reply,
            upstream: None,
        }
    }
}

/// The line's `outcome`: what the client may rely on.
fn outcome(e: &Ended<'_>) -> &'static str {
    match e.reply.code {
        _ if e.held => "held",
        200..=299 => "delivered",
        400..=499 => "deferred",
        _ if e.refused.is_some() => "refused",
        _ => "rejected",
    }
}

impl Session {
    /// Writes the transaction's line.
    pub(super) fn log_transaction(&self, e: &Ended<'_>) {
        let d = e.decision;
        let upstream = e.upstream.map(Reply::summary).unwrap_or_default();
        let upstream_queue_id = e
            .upstream
            .filter(|r| r.is_positive())
            .and_then(|r| r.lines.last())
            .and_then(|l| queue_id(l))
            .unwrap_or("");
        tracing::info!(
            target: LOG_TARGET,
            tx = %e.tx,
            client = %self.peer,
            user = self.auth_user.as_deref().unwrap_or("-"),
            mail_from = %e.mail_from,
            outcome = outcome(e),
            decision = d.map_or("-", Decision::label),
            rule = d.and_then(|d| d.rule.as_deref()).unwrap_or("default"),
            refused = e.refused.unwrap_or("-"),
            rcpts = e.rcpts,
            size = e.size,
            visible_external = d.map_or(0, |d| d.visible.external.len()),
            reply = %e.reply.summary(),
            upstream = %upstream,
            upstream_queue_id,
            "transaction"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ended<'a>(reply: &'a Reply, held: bool, refused: Option<&'static str>) -> Ended<'a> {
        Ended {
            tx: "01ABC",
            mail_from: "a@example.org",
            rcpts: 1,
            size: 10,
            decision: None,
            refused,
            held,
            reply,
            upstream: None,
        }
    }

    #[test]
    fn the_outcome_is_what_the_client_may_rely_on() {
        let ok = Reply::new(250, "2.0.0 Ok");
        let later = Reply::new(451, "4.3.0 later");
        let no = Reply::new(550, "5.7.1 no");
        let big = Reply::new(552, "5.3.4 too big");
        assert_eq!(outcome(&ended(&ok, false, None)), "delivered");
        assert_eq!(outcome(&ended(&ok, true, None)), "held");
        assert_eq!(outcome(&ended(&later, false, None)), "deferred");
        assert_eq!(outcome(&ended(&no, false, None)), "rejected");
        assert_eq!(outcome(&ended(&big, false, Some("too_big"))), "refused");
    }
}
