//! The incident a decided message is: one record, built from the measure
//! taken (the plan's [`Action`]) and the reply the client got, written to
//! the register (with the held message and the notices it asks for) and to
//! the JSON-lines log.

use std::sync::Arc;

use crate::clock::now_rfc3339;
use crate::incident::record::Record;
use crate::incident::store::{
    Affected, Class, Held, HoldState, Incident, NewNotice, NoticeKind, Step,
};
use crate::message::headers::{FieldKind, Headers};
use crate::policy::{self, Action};
use crate::rewrite::plan;
use crate::smtp::reply::{Reply, Told};

use super::Session;
use super::deliver::{Decided, LOG_TARGET};

impl Session {
    /// Writes the incident to the register (with the held message and the
    /// notices it asks for, one commit) and to the JSON-lines log. Returns
    /// whether the register has it: a hold that is not stored must not be
    /// answered with 250.
    pub(super) async fn record_incident(
        &mut self,
        m: &Decided<'_>,
        incident: &plan::Incident,
        reply: &Reply,
        held: Option<Held>,
    ) -> bool {
        let (measure, reason) = (incident.action, incident.reason.as_str());
        let action = measure.as_str();
        let group = m.decision.group.as_deref();
        let class = match group {
            // Approved beforehand: no breach, nobody to tell.
            Some(_) => Class::Allowed,
            None => class(measure, reply),
        };
        let record = self.incident_record(m, incident, class, reply);
        match group {
            Some(g) => self.shared.metrics.group_allowed(g),
            None => self.shared.metrics.incident(action),
        }
        tracing::warn!(
            target: LOG_TARGET,
            incident = %record.id,
            action,
            class = class.as_str(),
            rule = %record.rule,
            client = %record.client_ip,
            mail_from = %record.mail_from,
            visible_external = record.visible_external,
            external_domains = record.external_domains,
            trigger = %record.trigger,
            group = record.group.as_deref().unwrap_or(""),
            outcome = %record.outcome,
            "incident: open distribution list"
        );
        let notices = match group {
            Some(_) => Vec::new(),
            None => self.notices(measure, reply),
        };
        let now = crate::clock::now() as i64;
        let steps = vec![Step::now(
            "bccguard",
            "recorded",
            format!("{action}: {reason}; {}", record.outcome),
        )];
        // The people concerned, for an Art. 34 notification: of a
        // disclosure, and of a hold (a release as the original discloses).
        let affected = (class == Class::Disclosed || held.is_some()).then(|| Affected {
            addresses: m.decision.visible.external.to_vec(),
            keep_secs: self.cfg.incidents.keep_recipients.as_secs() as i64,
        });
        let incident = Incident {
            record,
            class,
            disclosed_at: (class == Class::Disclosed).then_some(now),
            recorded_at: now,
            hold: held.is_some().then_some(HoldState::Held),
        };
        self.write_incident(incident, steps, held, notices, affected)
            .await
    }

    /// The record of the incident, as the register and the log keep it.
    fn incident_record(
        &self,
        m: &Decided<'_>,
        incident: &plan::Incident,
        class: Class,
        reply: &Reply,
    ) -> Record {
        let (decision, queue_id) = (m.decision, m.queue_id);
        let (message_id, subject) = describe(m.msg, &decision.headers);
        Record {
            id: queue_id.to_string(),
            time: now_rfc3339(),
            action: incident.action.as_str().to_string(),
            class: class.as_str().to_string(),
            rule: decision.rule.clone().unwrap_or_else(|| "default".into()),
            client_ip: self.peer.ip().to_string(),
            auth_user: self.auth_user.clone(),
            mail_from: m.tx.mail_from.clone(),
            header_from: decision.header_from.clone(),
            message_id,
            subject,
            visible_external: decision.visible.external.len(),
            visible_internal: decision.visible.internal.len(),
            external_domains: decision.visible.external_domains,
            display_names: decision.visible.named,
            visible_attached: decision.visible.attached,
            visible_seen: seen_counts(&decision.visible, &self.cfg.policy.visible_headers),
            envelope_recipients: m.tx.rcpts.len(),
            size: m.msg.len(),
            threshold: decision.threshold,
            domain_threshold: decision.domain_threshold,
            trigger: decision
                .trigger
                .map_or("addresses", policy::Trigger::as_str)
                .to_string(),
            group: decision.group.clone(),
            reason: incident.reason.clone(),
            outcome: outcome(incident.action, reply),
            queue_id: queue_id.to_string(),
        }
    }

    /// What the reply may say of the incident once the register has it:
    /// the DPO is told exactly when a DPO notice goes into the same commit
    /// ([`Session::notices`]).
    pub(super) fn told(&self) -> Told {
        if self.cfg.incidents.notify.is_empty() {
            Told::Recorded
        } else {
            Told::Dpo
        }
    }

    /// The notices the incident asks for: the DPO's, the sender's (for a
    /// measure `incidents.sender_notice` names, once the mail is held or
    /// went out) and the webhook's.
    fn notices(&self, measure: Action, reply: &Reply) -> Vec<NewNotice> {
        let cfg = &self.cfg.incidents;
        let mut notices = Vec::new();
        if self.told() == Told::Dpo {
            notices.push(NewNotice {
                kind: NoticeKind::Dpo,
                event: "incident".into(),
            });
        }
        let told = cfg.sender_notice.contains(&measure);
        if told && (measure == Action::Hold || reply.is_positive()) {
            notices.push(NewNotice {
                kind: NoticeKind::Sender,
                event: measure.as_str().into(),
            });
        }
        if cfg.webhook.is_some() {
            notices.push(NewNotice {
                kind: NoticeKind::Webhook,
                event: "incident".into(),
            });
        }
        notices
    }

    /// The register's commit and the log's line, off the runtime; a failure
    /// of either is counted and logged. Wakes the workflow for the notices
    /// once the register has them.
    async fn write_incident(
        &self,
        incident: Incident,
        steps: Vec<Step>,
        held: Option<Held>,
        notices: Vec<NewNotice>,
        affected: Option<Affected>,
    ) -> bool {
        let queue_id = incident.record.id.clone();
        let mut record = incident.record.clone();
        let hold = held.is_some();
        let wake = !notices.is_empty();
        let (store, log) = (
            self.shared.store.clone(),
            Arc::clone(&self.shared.incidents),
        );
        let written = tokio::task::spawn_blocking(move || {
            let stored = store.record(
                &incident,
                &steps,
                held.as_ref(),
                &notices,
                affected.as_ref(),
            );
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
            tracing::error!(target: LOG_TARGET, incident = %queue_id, "incident could not be written to the register {}: {e}", self.cfg.store.path.display());
        } else if wake {
            self.shared.workflow.notify_one();
        }
        if let Err(e) = logged {
            self.shared.metrics.incident_write_error();
            tracing::error!(target: LOG_TARGET, incident = %queue_id, "incident record could not be written to {}: {e}", self.shared.incidents.path().display());
        }
        stored.is_ok()
    }
}

/// What became of the mail, for the record.
fn outcome(measure: Action, reply: &Reply) -> String {
    match measure {
        Action::Reject => "refused".to_string(),
        Action::Hold => "held".to_string(),
        _ if reply.is_positive() => "delivered".to_string(),
        _ => format!("not delivered: {}", reply.summary()),
    }
}

/// Only a list that went out starts the 72-hour clock (Art. 33(1)); a
/// monitored mail upstream refused disclosed nothing.
fn class(measure: Action, reply: &Reply) -> Class {
    match measure {
        Action::Monitor | Action::Allow if reply.is_positive() => Class::Disclosed,
        _ => Class::Prevented,
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
