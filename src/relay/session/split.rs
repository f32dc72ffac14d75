//! Split: one upstream transaction per envelope recipient, each copy showing
//! only its own address (plus the internal ones). When a copy fails after
//! others went out, the rest become the guard's, durably in the spool
//! before the client hears 250 ([`crate::relay::spool`];
//! docs/architecture.md, "Split and partial failure").

use std::sync::Arc;

use crate::policy;
use crate::rewrite::plan::Splitter;
use crate::rewrite::{self, KeepVisible};
use crate::smtp::reply::{self, Reply};
use crate::upstream::Copies;

use super::channel::no_channel;
use super::deliver::{Decided, LOG_TARGET, blocking};
use super::{Session, Transaction};

/// The copies of a split from `from` on, to be written to the spool.
struct SpoolJob {
    spool: Arc<crate::relay::spool::Spool>,
    policy: policy::Policy,
    headers: crate::message::headers::Headers,
    msg: Vec<u8>,
    received: String,
    fallback: String,
    tx: Transaction,
    queue_id: String,
    from: usize,
    failure: Reply,
}

impl SpoolJob {
    /// Writes each remaining copy (built one at a time: memory stays at one
    /// copy); returns how many. Blocking.
    fn store(self) -> std::io::Result<usize> {
        let now = crate::clock::now();
        let mut stored = 0;
        let sender = (&self.tx.mail_from[..], &self.tx.mail_params[..]);
        for (j, rcpt) in self.tx.rcpts.iter().enumerate().skip(self.from) {
            let keep = KeepVisible::new(&self.policy, policy::count::normalize_address(&rcpt.0));
            let rw = rewrite::hide(&self.msg, &self.headers, &keep, &self.fallback);
            // The first of them is the copy upstream refused.
            let refusal = (j == self.from).then_some(&self.failure);
            let entry = crate::relay::spool::Entry::new(&self.queue_id, sender, rcpt, now, refusal);
            self.spool.store(
                &entry,
                &[self.received.as_bytes(), &rw.head, &self.msg[rw.rest..]],
            )?;
            stored += 1;
        }
        Ok(stored)
    }
}

impl Session {
    /// One upstream transaction per envelope recipient.
    pub(super) async fn split(&mut self, m: &Decided<'_>) -> Reply {
        let total = m.tx.rcpts.len();
        if let Some(up) = self.upstream.as_mut()
            && let Err(e) = up.rset().await
        {
            return self.upstream_result(Err(e));
        }
        let copies = self.send_copies(m).await;
        if self.upstream.as_ref().is_some_and(|up| !up.is_open()) {
            // Left in a DATA section without a dot: the next transaction
            // gets a fresh upstream session.
            self.upstream = None;
        }
        let Some(failure) = copies.failure else {
            return reply::accepted(total, m.queue_id);
        };
        let reply = self.upstream_result(failure);
        let sent = copies.delivered;
        if sent == 0 {
            // Nothing went out: the client keeps the whole message.
            return reply;
        }
        // Copies went out and one did not: take responsibility for the rest
        // (durably, before answering 250) rather than make the client send
        // every copy again. With AUTH passthrough the guard could not log in
        // for the user later, so it does not.
        if self.cfg.upstream.auth == crate::config::UpstreamAuth::Passthrough {
            return reply::split_partial(sent, total, &reply);
        }
        self.spool_rest(m, sent, reply).await
    }

    /// The copies upstream, each built when it is sent.
    async fn send_copies(&mut self, m: &Decided<'_>) -> Copies {
        let (tx, decision) = (m.tx, m.decision);
        let cfg = Arc::clone(&self.cfg);
        let splitter = Splitter::new(&cfg.policy, decision, m.msg, &tx.mail_from);
        let tail = m.msg.get(decision.headers.end..).unwrap_or_default();
        let head_of = |i: usize| splitter.head(tx.rcpts.get(i).map(|(rcpt, _)| rcpt.as_str()));
        match self.upstream.as_mut() {
            Some(up) => {
                let (from, params) = (&tx.mail_from, &tx.mail_params);
                up.send_copies(
                    from,
                    params,
                    &tx.rcpts,
                    m.received.as_bytes(),
                    tail,
                    head_of,
                )
                .await
            }
            None => Copies {
                delivered: 0,
                failure: Some(Err(no_channel())),
            },
        }
    }

    /// The copies after the `sent` ones, upstream having refused the first
    /// of them with `reply`, into the spool; the client hears 250 only once
    /// they are stored.
    async fn spool_rest(&self, m: &Decided<'_>, sent: usize, reply: Reply) -> Reply {
        let (tx, decision, queue_id) = (m.tx, m.decision, m.queue_id);
        let policy = self.cfg.policy.clone();
        let fallback = decision.empty_to_value(policy.empty_to, &tx.mail_from);
        let total = tx.rcpts.len();
        let job = SpoolJob {
            spool: self.shared.spool.clone(),
            policy,
            headers: decision.headers.clone(),
            msg: m.msg.to_vec(),
            received: m.received.to_string(),
            fallback,
            tx: tx.clone(),
            queue_id: queue_id.to_string(),
            from: sent,
            failure: reply.clone(),
        };
        match blocking(move || job.store()).await {
            Ok(spooled) => {
                tracing::warn!(target: LOG_TARGET, queue_id, delivered = sent, spooled, upstream = %reply.summary(), "split partly delivered; rest spooled");
                reply::accepted_spooled(sent, spooled, queue_id)
            }
            Err(e) => {
                tracing::error!(target: LOG_TARGET, queue_id, "cannot spool the remaining copies: {e}");
                reply::split_partial(sent, total, &reply)
            }
        }
    }
}
