//! The end of DATA: decide on the complete message, act, record.
//!
//! - pass / allow / monitor: relayed as it is (Bcc headers removed); allow
//!   and monitor over the threshold are `disclosed` incidents;
//! - reject: upstream's transaction is aborted with RSET (it never sees a
//!   final dot), the client gets 550 5.7.1 with the incident id;
//! - bcc: external To/Cc addresses are hidden, envelope unchanged;
//! - split: upstream's envelope transaction is aborted and one transaction
//!   per recipient follows, each copy showing only its own address plus the
//!   internal ones;
//! - hold: upstream's transaction is aborted; the message goes into the
//!   quarantine ([`crate::incident::store`]) and the client hears 250 only after that
//!   commit (451 if it fails: never a 250 for a message nobody holds).
//!
//! Every incident goes into the JSON-lines log and the register, with the
//! notices it asks for ([`crate::incident::notify`]).
//!
//! The client hears 250 only after upstream said 250 for every copy, or,
//! when a split fails part-way or upstream refuses some deferred recipients,
//! after the rest are durably in the spool ([`crate::relay::spool`]; README,
//! "Split and partial failure", "Deferred recipients").

use std::sync::Arc;

use crate::clock::now_rfc3339;
use crate::config::Recipients;
use crate::id::new_id;
use crate::incident::record::Record;
use crate::message::headers::{FieldKind, HeaderError, Headers};
use crate::policy::{self, Action, Decision, Envelope};
use crate::rewrite::plan::{self, Refused, Route, Splitter};
use crate::rewrite::{self, KeepVisible};
use crate::smtp::refusal::Refusal;
use crate::smtp::reply::{self, Reply};
use crate::upstream::{Copies, UpstreamError};

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
    /// Decides on and delivers one complete message; queues the final reply.
    pub(super) async fn deliver(&mut self, msg: Vec<u8>) {
        let Some(tx) = self.tx.take() else { return };
        let queue_id = new_id();
        let cfg = self.cfg.clone();
        let policy = &cfg.policy;
        let rcpts: Vec<String> = tx.rcpts.iter().map(|(a, _)| a.clone()).collect();
        let envelope = Envelope {
            mail_from: &tx.mail_from,
            rcpt_to: &rcpts,
        };
        let decision = match policy::decide(policy, envelope, &msg) {
            Ok(d) => d,
            Err(e) => {
                let refusal = match e {
                    HeaderError::TooBig => Refusal::HeaderTooBig {
                        limit: policy.max_header_size,
                    },
                    HeaderError::AttachedTooBig => Refusal::AttachedHeaderTooBig {
                        limit: policy.max_header_size,
                    },
                    HeaderError::TooDeep => Refusal::MimeTooDeep {
                        limit: policy.mime_nesting_limit,
                    },
                };
                let r = self.refusal(refusal);
                let label = refusal.reason().as_str();
                tracing::info!(client = %self.peer, queue_id = %queue_id, reason = label, reply = %r.summary(), "message refused: cannot be read in full");
                self.abort_upstream().await;
                self.queue(r);
                return;
            }
        };
        self.shared
            .metrics
            .message(decision.label(), decision.visible.external.len());
        if let Some(from) = decision.header_from.as_deref()
            && !self.sender_allowed(from)
        {
            let r = self.refusal(Refusal::SenderMismatch { sender: from });
            self.abort_upstream().await;
            self.queue(r);
            return;
        }
        let received = self.received_header(&tx, &queue_id);
        let visible = decision.visible.external.len();
        let places = decision.visible.places(&policy.visible_headers);
        let plan = plan::plan(policy, &decision, &msg, &tx.mail_from, decision.action);
        let mut held = None;
        let mut reply = match &plan.route {
            Route::Whole(body) => {
                let parts = body.parts(received.as_bytes(), &msg);
                self.relay_parts(&tx, &parts, &queue_id).await
            }
            Route::Split => self.split(&tx, &msg, &decision, &received, &queue_id).await,
            Route::Hold => {
                self.abort_upstream().await;
                held = Some(crate::incident::store::Held {
                    id: queue_id.clone(),
                    held_at: crate::clock::now() as i64,
                    mail_from: tx.mail_from.clone(),
                    mail_params: tx.mail_params.clone(),
                    rcpts: tx.rcpts.clone(),
                    received: received.clone(),
                    message: msg.clone(),
                });
                reply::held(visible, &places, &queue_id)
            }
            Route::Refuse(why) => {
                self.abort_upstream().await;
                match why {
                    Refused::OpenList => {
                        reply::rejected_open_list(visible, decision.threshold, &places, &queue_id)
                    }
                    Refused::Signed => reply::cannot_rewrite_signed(&queue_id),
                    Refused::Unsafe(why) => reply::cannot_rewrite_safely(why, &queue_id),
                }
            }
        };
        if let Some(incident) = &plan.incident {
            let stored = self
                .record_incident(&tx, &msg, &decision, &queue_id, incident, &reply, held)
                .await;
            if incident.action == Action::Hold && !stored {
                reply = reply::hold_failed();
            }
        }
        tracing::info!(
            client = %self.peer,
            user = self.auth_user.as_deref().unwrap_or("-"),
            queue_id = %queue_id,
            action = decision.label(),
            rule = decision.rule.as_deref().unwrap_or("default"),
            visible_external = visible,
            visible_internal = decision.visible.internal.len(),
            visible_in = %places,
            envelope_recipients = rcpts.len(),
            size = msg.len(),
            reply = %reply.summary(),
            "message decided"
        );
        self.queue(reply);
    }

    /// Sends the message upstream; upstream's final reply is the client's.
    /// In lockstep the transaction is open upstream already; deferred, its
    /// envelope goes with it ([`Session::relay_deferred`]).
    async fn relay_parts(&mut self, tx: &Transaction, parts: &[&[u8]], queue_id: &str) -> Reply {
        if self.cfg.upstream.recipients == Recipients::Deferred {
            return self.relay_deferred(tx, parts, queue_id).await;
        }
        let result = match self.upstream.as_mut() {
            Some(up) => up.data(parts).await,
            None => Err(UpstreamError::Closed(
                std::io::ErrorKind::NotConnected.into(),
            )),
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
        let (mut replies, mut end) = match self.upstream.as_mut() {
            Some(up) => up.transaction(&tx.rcpts, parts).await,
            None => (
                Vec::new(),
                Err(UpstreamError::Closed(
                    std::io::ErrorKind::NotConnected.into(),
                )),
            ),
        };
        if tx.pooled && replies.is_empty() && end.is_err() {
            (replies, end) = match self
                .reopen_upstream_for(&tx.mail_from, &tx.mail_params)
                .await
            {
                Ok(up) => up.transaction(&tx.rcpts, parts).await,
                Err(e) => (Vec::new(), Err(e)),
            };
        }
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

    /// One upstream transaction per envelope recipient.
    async fn split(
        &mut self,
        tx: &Transaction,
        msg: &[u8],
        decision: &Decision,
        received: &str,
        queue_id: &str,
    ) -> Reply {
        let policy = self.cfg.policy.clone();
        let fallback = decision.empty_to_value(policy.empty_to, &tx.mail_from);
        let total = tx.rcpts.len();
        if let Some(up) = self.upstream.as_mut()
            && let Err(e) = up.rset().await
        {
            return self.upstream_result(Err(e));
        }
        let splitter = Splitter::new(&policy, decision, msg, &tx.mail_from);
        let tail = msg.get(decision.headers.end..).unwrap_or_default();
        let head_of = |i: usize| splitter.head(tx.rcpts.get(i).map(|(rcpt, _)| rcpt.as_str()));
        let copies = match self.upstream.as_mut() {
            Some(up) => {
                let (from, params) = (&tx.mail_from, &tx.mail_params);
                up.send_copies(from, params, &tx.rcpts, received.as_bytes(), tail, head_of)
                    .await
            }
            None => Copies {
                delivered: 0,
                failure: Some(Err(UpstreamError::Closed(
                    std::io::ErrorKind::NotConnected.into(),
                ))),
            },
        };
        if self.upstream.as_ref().is_some_and(|up| !up.is_open()) {
            // Left in a DATA section without a dot: the next transaction
            // gets a fresh upstream session.
            self.upstream = None;
        }
        let Some(failure) = copies.failure else {
            return reply::accepted(total, queue_id);
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
        let job = SpoolJob {
            spool: self.shared.spool.clone(),
            policy: policy.clone(),
            headers: decision.headers.clone(),
            msg: msg.to_vec(),
            received: received.to_string(),
            fallback: fallback.clone(),
            tx: tx.clone(),
            queue_id: queue_id.to_string(),
            from: sent,
            failure: reply.clone(),
        };
        match blocking(move || job.store()).await {
            Ok(spooled) => {
                tracing::warn!(queue_id, delivered = sent, spooled, upstream = %reply.summary(), "split partly delivered; rest spooled");
                reply::accepted_spooled(sent, spooled, queue_id)
            }
            Err(e) => {
                tracing::error!(queue_id, "cannot spool the remaining copies: {e}");
                reply::split_partial(sent, total, &reply)
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

    /// Writes the incident to the register (with the held message and the
    /// notices it asks for, one commit) and to the JSON-lines log. Returns
    /// whether the register has it: a hold that is not stored must not be
    /// answered with 250.
    #[allow(clippy::too_many_arguments)]
    async fn record_incident(
        &mut self,
        tx: &Transaction,
        msg: &[u8],
        decision: &Decision,
        queue_id: &str,
        incident: &plan::Incident,
        reply: &Reply,
        held: Option<crate::incident::store::Held>,
    ) -> bool {
        let (measure, reason) = (incident.action, incident.reason.as_str());
        let action = measure.as_str();
        use crate::incident::store::{Class, HoldState, Incident, NewNotice, NoticeKind, Step};
        let (message_id, subject) = describe(msg, &decision.headers);
        let display_names = decision.visible.named;
        let outcome = match measure {
            Action::Reject => "refused".to_string(),
            Action::Hold => "held".to_string(),
            _ if reply.is_positive() => "delivered".to_string(),
            _ => format!("not delivered: {}", reply.summary()),
        };
        // Only a list that went out starts the 72-hour clock (Art. 33(1));
        // a monitored mail upstream refused disclosed nothing.
        let class = match measure {
            Action::Monitor | Action::Allow if reply.is_positive() => Class::Disclosed,
            _ => Class::Prevented,
        };
        let mut record = Record {
            id: queue_id.to_string(),
            time: now_rfc3339(),
            action: action.to_string(),
            class: class.as_str().to_string(),
            rule: decision.rule.clone().unwrap_or_else(|| "default".into()),
            client_ip: self.peer.ip().to_string(),
            auth_user: self.auth_user.clone(),
            mail_from: tx.mail_from.clone(),
            header_from: decision.header_from.clone(),
            message_id,
            subject,
            visible_external: decision.visible.external.len(),
            visible_internal: decision.visible.internal.len(),
            external_domains: decision.visible.external_domains,
            display_names,
            visible_attached: decision.visible.attached,
            visible_seen: seen_counts(&decision.visible, &self.cfg.policy.visible_headers),
            envelope_recipients: tx.rcpts.len(),
            size: msg.len(),
            threshold: decision.threshold,
            reason: reason.to_string(),
            outcome,
            queue_id: queue_id.to_string(),
        };
        self.shared.metrics.incident(action);
        tracing::warn!(
            incident = %record.id,
            action,
            class = class.as_str(),
            rule = %record.rule,
            client = %record.client_ip,
            mail_from = %record.mail_from,
            visible_external = record.visible_external,
            external_domains = record.external_domains,
            outcome = %record.outcome,
            "incident: open distribution list"
        );
        let cfg = &self.cfg.incidents;
        let mut notices = Vec::new();
        if !cfg.notify.is_empty() {
            notices.push(NewNotice {
                kind: NoticeKind::Dpo,
                event: "incident".into(),
            });
        }
        let told = cfg.sender_notice.contains(&measure);
        if told && (measure == Action::Hold || reply.is_positive()) {
            notices.push(NewNotice {
                kind: NoticeKind::Sender,
                event: action.into(),
            });
        }
        if cfg.webhook.is_some() {
            notices.push(NewNotice {
                kind: NoticeKind::Webhook,
                event: "incident".into(),
            });
        }
        let now = crate::clock::now() as i64;
        let hold = held.is_some();
        let steps = vec![Step::now(
            "bccguard",
            "recorded",
            format!("{action}: {reason}; {}", record.outcome),
        )];
        let incident = Incident {
            record: record.clone(),
            class,
            disclosed_at: (class == Class::Disclosed).then_some(now),
            recorded_at: now,
            hold: hold.then_some(HoldState::Held),
        };
        let wake = !notices.is_empty();
        let (store, log) = (
            self.shared.store.clone(),
            Arc::clone(&self.shared.incidents),
        );
        let written = tokio::task::spawn_blocking(move || {
            let stored = store.record(&incident, &steps, held.as_ref(), &notices);
            if let Err(e) = &stored
                && hold
            {
                record.outcome = format!("not held: {e}; the client was told 451");
            }
            (stored, log.append(&record))
        })
        .await;
        let (stored, logged) = match written {
            Ok((s, l)) => (s.map_err(|e| e.to_string()), l.map_err(|e| e.to_string())),
            Err(e) => (Err(e.to_string()), Err(e.to_string())),
        };
        if let Err(e) = &stored {
            self.shared.metrics.incident_write_error();
            tracing::error!(incident = %queue_id, "incident could not be written to the register {}: {e}", self.cfg.store.path.display());
        } else if wake {
            self.shared.workflow.notify_one();
        }
        if let Err(e) = logged {
            self.shared.metrics.incident_write_error();
            tracing::error!(incident = %queue_id, "incident record could not be written to {}: {e}", self.shared.incidents.path().display());
        }
        stored.is_ok()
    }
}

/// How many external addresses were first seen where (header and how),
/// for the record: `{"To address": 1490, "Reply-To display name": 4}`.
fn seen_counts(
    visible: &policy::Visible,
    headers: &policy::VisibleHeaders,
) -> std::collections::BTreeMap<String, usize> {
    let mut out = std::collections::BTreeMap::new();
    for s in &visible.seen {
        let mut key = format!("{} {}", headers.name(s.header), s.how.as_str());
        if s.attached {
            key.push_str(" (attached message)");
        }
        *out.entry(key).or_insert(0) += 1;
    }
    out
}

/// Runs blocking spool I/O off the runtime; a task that panicked is an I/O
/// failure like any other (the client must not hear 250).
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(std::io::Error::other)?
}

/// Message-ID as written and Subject decoded (RFC 2047), for the record.
fn describe(msg: &[u8], headers: &Headers) -> (Option<String>, Option<String>) {
    let message_id = headers.of_kind(FieldKind::MessageId).next().map(|f| {
        String::from_utf8_lossy(&msg[f.value.clone()])
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    });
    // Only the Subject fields go to mail-parser: given the whole header
    // section it parses every field, a 1,494-address To included, which cost
    // five times the decision itself in the profile of a bcc run.
    let subjects: Vec<u8> = headers
        .of_kind(FieldKind::Subject)
        .flat_map(|f| msg.get(f.span.clone()).unwrap_or_default())
        .copied()
        .collect();
    let subject = mail_parser::MessageParser::new()
        .parse_headers(&subjects[..])
        .and_then(|m| m.subject().map(str::to_string));
    (message_id, subject)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::headers::scan;

    #[test]
    fn describe_reads_message_id_and_decodes_only_the_subject() {
        let msg = b"To: a@x.test,\r\n b@y.test\r\nSubject: =?utf-8?q?Termin_f=C3=A4llt_aus?=\r\nMessage-ID:\r\n <m@example.org>\r\n\r\nbody\r\n";
        let headers = scan(msg, 1 << 20).expect("fits");
        let (id, subject) = describe(msg, &headers);
        assert_eq!(id.as_deref(), Some("<m@example.org>"));
        assert_eq!(subject.as_deref(), Some("Termin f\u{e4}llt aus"));
        let none = scan(b"To: a@x.test\r\n\r\n", 100).expect("fits");
        assert_eq!(describe(b"To: a@x.test\r\n\r\n", &none), (None, None));
    }
}
