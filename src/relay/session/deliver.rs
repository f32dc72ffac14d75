//! The end of DATA: decide on the complete message, act, record.
//!
//! - pass / allow / monitor: relayed as it is (Bcc headers removed); allow
//!   and monitor over the threshold are `disclosed` incidents;
//! - reject: upstream's transaction is aborted with RSET (it never sees a
//!   final dot), the client gets 550 5.7.1 with the incident id;
//! - bcc: external To/Cc addresses are hidden, envelope unchanged;
//! - split: upstream's envelope transaction is aborted and one transaction
//!   per recipient follows, each copy showing only its own address plus the
//!   internal ones (`split.rs`);
//! - hold: upstream's transaction is aborted; the message goes into the
//!   quarantine ([`crate::incident::store`]) and the client hears 250 only
//!   after that commit (451 if it fails: never a 250 for a message nobody
//!   holds).
//!
//! Every incident goes into the JSON-lines log and the register, with the
//! notices it asks for ([`crate::incident::notify`]; `incident.rs`).
//!
//! A whole message goes upstream as the transaction's recipient mode has
//! it: lockstep on the transaction already open there, deferred with its
//! envelope in one exchange.
//!
//! The client hears 250 only after upstream said 250 for every copy, or,
//! when a split fails part-way or upstream refuses some deferred recipients,
//! after the rest are durably in the spool ([`crate::relay::spool`];
//! docs/architecture.md, "Split and partial failure", "Deferred recipients").

use crate::config::Recipients;
use crate::incident::store::Held;
use crate::message::headers::HeaderError;
use crate::policy::{self, Decision, Envelope};
use crate::rewrite::Unsafe;
use crate::rewrite::plan::{self, Refused, Route};
use crate::smtp::refusal::Refusal;
use crate::smtp::reply::{self, Crossed, Reply, StillVisible, Told};
use crate::templates::Lang;
use crate::upstream::UpstreamError;

use super::channel::no_channel;
use super::trace::Ended;
use super::{Session, Transaction};

/// The target of the log lines about a delivered message, those written in
/// `incident` and `split` too: it stays what it was when all of them lived
/// here, since `BCCGUARD_LOG` filters and log shippers select on it.
pub(super) const LOG_TARGET: &str = module_path!();

/// One complete message and what the guard decided on it: what its route,
/// its incident and its log line read.
pub(super) struct Decided<'a> {
    pub(super) tx: &'a Transaction,
    pub(super) msg: &'a [u8],
    pub(super) decision: &'a Decision,
    pub(super) queue_id: &'a str,
    /// The `Received:` header every copy gets.
    pub(super) received: &'a str,
}

impl Session {
    /// Decides on and delivers one complete message; queues the final reply.
    pub(super) async fn deliver(&mut self, msg: Vec<u8>) {
        let Some(tx) = self.tx.take() else { return };
        let queue_id = tx.id.clone();
        let cfg = self.cfg.clone();
        let policy = &cfg.policy;
        let rcpts: Vec<String> = tx.rcpts.iter().map(|(a, _)| a.clone()).collect();
        let envelope = Envelope {
            mail_from: &tx.mail_from,
            rcpt_to: &rcpts,
        };
        let groups = self.shared.groups();
        let approved = policy::Approved {
            groups: &groups,
            now: crate::clock::now() as i64,
        };
        let decision = match policy::decide_with(policy, envelope, &msg, Some(approved)) {
            Ok(d) => d,
            Err(e) => return self.refuse_unreadable(e, &tx, msg.len()).await,
        };
        self.shared
            .metrics
            .message(decision.label(), decision.visible.external.len());
        if let Some(from) = decision.header_from.as_deref()
            && !self.sender_allowed(from)
        {
            let refusal = Refusal::SenderMismatch { sender: from };
            let r = self.refusal(refusal).with_id(&tx.id);
            self.abort_upstream().await;
            self.log_transaction(&Ended {
                decision: Some(&decision),
                refused: Some(refusal.reason().as_str()),
                ..Ended::new(&tx, msg.len(), &r)
            });
            self.queue(r);
            return;
        }
        let received = self.received_header(&tx, &queue_id);
        let m = Decided {
            tx: &tx,
            msg: &msg,
            decision: &decision,
            queue_id: &queue_id,
            received: &received,
        };
        let places = decision.visible.places(&policy.visible_headers);
        let plan = plan::plan(policy, &decision, &msg, &tx.mail_from, decision.action);
        let (mut reply, held) = self.route(&m, &plan.route).await;
        let is_held = held.is_some();
        if let Some(incident) = &plan.incident {
            let stored = self.record_incident(&m, incident, &reply, held).await;
            // The reply said what the commit would make true; without the
            // commit it may not stand.
            match &plan.route {
                Route::Hold if !stored => reply = reply::hold_failed(),
                Route::Refuse(why) if !stored => reply = self.refused(&m, why, Told::Nobody),
                _ => {}
            }
        }
        tracing::debug!(target: LOG_TARGET, tx = %queue_id, visible_in = %places, "where the addresses were visible");
        // The client's reply is upstream's when the whole message went to
        // it (and it did not fail on the way).
        let from_upstream = matches!(plan.route, Route::Whole(_)) && self.upstream.is_some();
        self.log_transaction(&Ended {
            decision: Some(&decision),
            held: is_held && reply.is_positive(),
            upstream: from_upstream.then_some(&reply),
            ..Ended::new(&tx, msg.len(), &reply)
        });
        self.queue(reply);
    }

    /// A message whose header section cannot be read in full is refused:
    /// what the guard cannot count it does not let through.
    async fn refuse_unreadable(&mut self, e: HeaderError, tx: &Transaction, size: usize) {
        let refusal = plan::unreadable(&self.cfg.policy, e);
        let r = self.refusal(refusal).with_id(&tx.id);
        self.abort_upstream().await;
        self.log_transaction(&Ended {
            refused: Some(refusal.reason().as_str()),
            ..Ended::new(tx, size, &r)
        });
        self.queue(r);
    }

    /// Takes the plan's route; returns the client's reply and, for a hold,
    /// the message for the quarantine (stored with the incident).
    async fn route(&mut self, m: &Decided<'_>, route: &Route) -> (Reply, Option<Held>) {
        match route {
            Route::Whole(body) => {
                let parts = body.parts(m.received.as_bytes(), m.msg);
                (self.relay_parts(m.tx, &parts, m.queue_id).await, None)
            }
            Route::Split => (self.split(m).await, None),
            Route::Hold => {
                self.abort_upstream().await;
                let held = Held {
                    id: m.queue_id.to_string(),
                    held_at: crate::clock::now() as i64,
                    mail_from: m.tx.mail_from.clone(),
                    mail_params: m.tx.mail_params.clone(),
                    rcpts: m.tx.rcpts.clone(),
                    received: m.received.to_string(),
                    message: m.msg.to_vec(),
                };
                let visible = m.decision.visible.external.len();
                let places = self.places(m);
                let reply =
                    reply::held(self.cfg.words(), visible, &places, m.queue_id, self.told());
                (reply, Some(held))
            }
            Route::Refuse(why) => {
                self.abort_upstream().await;
                (self.refused(m, why, self.told()), None)
            }
        }
    }

    /// Where the addresses were visible, in the reply's languages.
    fn places<'s>(&'s self, m: &'s Decided<'_>) -> impl Fn(Lang) -> String + 's {
        let headers = &self.cfg.policy.visible_headers;
        move |lang| m.decision.visible.places_in(headers, lang)
    }

    /// The refusal's reply, saying what `told` makes true.
    fn refused(&self, m: &Decided<'_>, why: &Refused, told: Told) -> Reply {
        let words = self.cfg.words();
        let visible = m.decision.visible.external.len();
        match why {
            Refused::OpenList => {
                let places = self.places(m);
                let crossed = match (m.decision.trigger, m.decision.domain_threshold) {
                    (Some(policy::Trigger::Domains), Some(limit)) => Crossed::Domains {
                        limit,
                        domains: m.decision.visible.external_domains,
                    },
                    _ => Crossed::Addresses(m.decision.threshold),
                };
                reply::rejected_open_list(words, visible, crossed, &places, m.queue_id, told)
            }
            Refused::Signed => reply::cannot_rewrite_signed(words, visible, m.queue_id, told),
            Refused::Unsafe(u) => {
                let still = match u {
                    Unsafe::Attached { visible } => StillVisible::Attached(*visible),
                    Unsafe::Left { header, visible } => StillVisible::Left {
                        header,
                        visible: *visible,
                    },
                };
                reply::cannot_rewrite_safely(words, still, m.queue_id, told)
            }
        }
    }

    /// Sends the message upstream; upstream's final reply is the client's.
    /// How depends on the transaction's recipient mode.
    async fn relay_parts(&mut self, tx: &Transaction, parts: &[&[u8]], queue_id: &str) -> Reply {
        match tx.recipients {
            Recipients::Lockstep => self.relay_lockstep(parts).await,
            Recipients::Deferred => self.relay_deferred(tx, parts, queue_id).await,
        }
    }

    /// Lockstep: the transaction is open upstream already, its recipients
    /// answered; the message goes on it.
    async fn relay_lockstep(&mut self, parts: &[&[u8]]) -> Reply {
        let result = match self.upstream.as_mut() {
            Some(up) => up.data(parts).await,
            None => Err(no_channel()),
        };
        self.upstream_result(result)
    }

    /// `upstream.recipients: deferred`: MAIL, every RCPT and DATA go
    /// upstream now, then the message to the recipients upstream took.
    ///
    /// - Upstream took none: the client hears upstream's refusal (a
    ///   transient one first, so the client keeps the message) and nothing
    ///   was sent.
    /// - It took some and said 250 after the dot: the refused ones are the
    ///   guard's, durably in the spool before the client hears 250, where
    ///   a transient refusal is retried and a permanent one becomes a
    ///   delivery status notification to the sender, as any MSA's queue
    ///   does. If the spool cannot take them the client hears what split's
    ///   partial failure says.
    /// - A channel from the pool that fails before answering anything was
    ///   closed by upstream while idle: the transaction is replayed once on
    ///   a new connection (no byte of it was accepted).
    async fn relay_deferred(&mut self, tx: &Transaction, parts: &[&[u8]], queue_id: &str) -> Reply {
        let (replies, end) = self.deferred_transaction(tx, parts).await;
        let refused: Vec<usize> = (0..replies.len())
            .filter(|&i| !replies[i].is_positive())
            .collect();
        let end = match end {
            Ok(end) => end,
            Err(e) => return self.upstream_result(Err(e)),
        };
        let transient = refused.iter().any(|&i| replies[i].is_transient());
        if transient || end.is_transient() {
            // Once per transaction, as in lockstep: a refused MAIL is heard
            // again by every RCPT but upstream said it once.
            self.shared.metrics.upstream_error("tempfail");
        }
        if refused.len() == tx.rcpts.len() {
            // Nobody took it and no message was sent: the client hears the
            // recipients' refusal (not DATA's "no valid recipients"), a
            // transient one if there is one, so the client keeps the mail.
            let first = refused
                .iter()
                .find(|&&i| !transient || replies[i].is_transient())
                .map_or(end, |&i| replies[i].clone());
            return first;
        }
        if !end.is_positive() || refused.is_empty() {
            return end;
        }
        self.spool_refused(tx, parts, queue_id, &replies, &refused)
            .await
    }

    /// Deferred: the envelope and the message upstream in one exchange
    /// ([`crate::upstream::Upstream::transaction`]), replayed once on a new
    /// connection when a channel from the pool fails before answering
    /// anything.
    async fn deferred_transaction(
        &mut self,
        tx: &Transaction,
        parts: &[&[u8]],
    ) -> (Vec<Reply>, Result<Reply, UpstreamError>) {
        let (replies, end) = match self.upstream.as_mut() {
            Some(up) => up.transaction(&tx.rcpts, parts).await,
            None => (Vec::new(), Err(no_channel())),
        };
        if !(tx.pooled && replies.is_empty() && end.is_err()) {
            return (replies, end);
        }
        match self
            .reopen_upstream_for(&tx.mail_from, &tx.mail_params)
            .await
        {
            Ok(up) => up.transaction(&tx.rcpts, parts).await,
            Err(e) => (Vec::new(), Err(e)),
        }
    }

    /// Deferred, upstream took the message for some recipients and said
    /// 250: the `refused` ones (indexes into `replies`) go into the spool,
    /// to be retried or bounced, before the client hears 250.
    async fn spool_refused(
        &self,
        tx: &Transaction,
        parts: &[&[u8]],
        queue_id: &str,
        replies: &[Reply],
        refused: &[usize],
    ) -> Reply {
        let total = tx.rcpts.len();
        let delivered = total - refused.len();
        let now = crate::clock::now();
        let sender = (&tx.mail_from[..], &tx.mail_params[..]);
        let entries: Vec<crate::relay::spool::Entry> = refused
            .iter()
            .map(|&i| {
                crate::relay::spool::Entry::new(
                    queue_id,
                    sender,
                    &tx.rcpts[i],
                    now,
                    Some(&replies[i]),
                )
            })
            .collect();
        let bounced = entries.iter().filter(|e| e.failed).count();
        let first_refusal = replies[refused[0]].clone();
        let message = parts.concat();
        let spool = self.shared.spool.clone();
        let stored = blocking(move || {
            entries
                .iter()
                .try_for_each(|e| spool.store(e, &[&message[..]]).map(drop))
        })
        .await;
        match stored {
            Ok(()) => {
                tracing::warn!(queue_id, delivered, bounced, retried = refused.len() - bounced, upstream = %first_refusal.summary(), "recipients refused after others were accepted; spooled");
                reply::accepted_refused(delivered, refused.len() - bounced, bounced, queue_id)
            }
            Err(e) => {
                tracing::error!(queue_id, "cannot spool the refused recipients: {e}");
                reply::recipients_partial(delivered, total, &first_refusal)
            }
        }
    }

    /// `Received:` trace header (RFC 5321 4.4), prepended to every copy.
    fn received_header(&self, tx: &Transaction, queue_id: &str) -> String {
        let (helo, esmtp) = self
            .greeting
            .as_ref()
            .map_or(("unknown", false), |g| (g.name.as_str(), g.esmtp));
        let ip = match self.peer.ip() {
            std::net::IpAddr::V4(v4) => format!("[{v4}]"),
            std::net::IpAddr::V6(v6) => format!("[IPv6:{v6}]"),
        };
        // RFC 6531 3.7.3: UTF8SMTP when the transaction used SMTPUTF8;
        // RFC 3848: S for TLS, A for an authenticated client.
        let base = match (esmtp, tx.smtputf8) {
            (_, true) => "UTF8SMTP",
            (true, false) => "ESMTP",
            (false, false) => "SMTP",
        };
        let suffix = match (
            esmtp && self.stream.is_tls(),
            esmtp && self.auth_user.is_some(),
        ) {
            (true, true) => "SA",
            (true, false) => "S",
            (false, true) => "A",
            (false, false) => "",
        };
        let with = format!("{base}{suffix}");
        let tls = self
            .stream
            .tls_description()
            .map(|t| format!("\r\n\t(using {t})"))
            .unwrap_or_default();
        let date = crate::clock::now_rfc2822();
        let helo: String = helo.chars().filter(|c| !c.is_control()).take(255).collect();
        format!(
            "Received: from {helo} ({ip})\r\n\tby {} (bccguard) with {with} id {queue_id}{tls};\r\n\t{date}\r\n",
            self.cfg.server.hostname
        )
    }
}

/// Runs blocking spool I/O off the runtime; a task that panicked is an I/O
/// failure like any other (the client must not hear 250).
pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(std::io::Error::other)?
}
