//! Telling people: the DPO (`incidents.notify`, one mail per incident, or
//! a digest once a burst exceeds `incidents.digest_after` mails an hour),
//! the sender (`incidents.sender_notice`: held, sent with recipients
//! hidden, released, dropped, expired) and ticketing systems
//! (`incidents.webhook`).
//!
//! Every notice is queued in the store's outbox in the same transaction as
//! the event it reports ([`crate::incident::store`]); [`run`] sends what is due,
//! woken at once by a new incident and otherwise every [`NOTIFY_POLL`]
//! (which also picks up what the CLI queued: a drop, a release), so the
//! DPO hears of an incident within seconds, in a burst within
//! `incidents.digest_interval` (a minute).
//! Failures are retried with backoff (`incidents.notice_retry_min` doubling
//! to `incidents.notice_retry_max`) for `incidents.notice_max_age`; each
//! sent or failed notice is a step on its incident. No notice ever lists the
//! recipient addresses.

pub mod mail;
mod outbox;
mod send;
pub mod webhook;

use std::collections::HashMap;
use std::time::Duration;

pub use crate::templates::{self, Lang, Templates};

use crate::config::{Config, Url};
use crate::incident::store::{Class, HoldState, Incident, StoreError};

pub use outbox::run;

/// How often the outbox is looked at without a wake-up (the CLI cannot
/// wake the guard).
pub const NOTIFY_POLL: Duration = Duration::from_secs(5);
/// The window `incidents.digest_after` counts in.
pub const DIGEST_WINDOW: Duration = Duration::from_secs(3600);
/// Art. 33(1): "not later than 72 hours after having become aware of it".
pub const ART33_DEADLINE: i64 = 72 * 3600;

/// The Art. 33 deadline of a disclosed incident (Unix seconds).
pub fn deadline(i: &Incident) -> Option<i64> {
    (i.class == Class::Disclosed).then(|| i.disclosed_at.unwrap_or(i.recorded_at) + ART33_DEADLINE)
}

pub use crate::clock::rfc3339;

/// Why a notice was not sent; its text is what the outbox and the step
/// "notice failed" keep, and the notice is retried.
#[derive(Debug, thiserror::Error)]
pub enum NoticeError {
    /// The register could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A DPO notice, but `incidents.notify` names nobody.
    #[error("incidents.notify is empty")]
    NoDpo,
    /// A webhook notice, but `incidents.webhook` is gone.
    #[error("incidents.webhook is not set")]
    NoWebhook,
    /// The mail did not go out.
    #[error(transparent)]
    Mail(#[from] mail::MailError),
    /// The POST got no status line.
    #[error(transparent)]
    Webhook(#[from] webhook::WebhookError),
    /// The incident did not serialise (never seen; serde's word for it).
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// The ticketing system answered, but not with 2xx.
    #[error("webhook {url}: HTTP {code}")]
    Status {
        /// `incidents.webhook`.
        url: Url,
        /// Its status code.
        code: u16,
    },
}

/// The placeholders of an incident in one language.
pub fn vars(cfg: &Config, i: &Incident, lang: Lang) -> HashMap<&'static str, String> {
    let r = &i.record;
    let de = lang == Lang::De;
    let class_text = match (i.class, de) {
        (Class::Prevented, false) => "prevented (no disclosure; documented, Art. 33(5))",
        (Class::Prevented, true) => "verhindert (keine Offenlegung; dokumentiert, Art. 33 Abs. 5)",
        (Class::Disclosed, false) => "disclosed (the 72-hour clock of Art. 33 runs)",
        (Class::Disclosed, true) => "offengelegt (die 72-Stunden-Frist nach Art. 33 läuft)",
        (Class::Allowed, false) => "allowed (an approved open group; no breach)",
        (Class::Allowed, true) => "erlaubt (eine freigegebene offene Gruppe; keine Verletzung)",
    };
    let retention = humantime::format_duration(cfg.quarantine.retention).to_string();
    let mut v = HashMap::from([
        ("id", r.id.clone()),
        ("time", r.time.clone()),
        ("class", i.class.as_str().to_string()),
        ("class_text", class_text.to_string()),
        ("action", r.action.clone()),
        ("outcome", r.outcome.clone()),
        ("rule", r.rule.clone()),
        ("threshold", r.threshold.to_string()),
        ("trigger", trigger_text(r, lang)),
        (
            "sender",
            r.header_from.clone().unwrap_or_else(|| r.mail_from.clone()),
        ),
        (
            "subject",
            r.subject
                .clone()
                .unwrap_or_else(|| if de { "(ohne Betreff)" } else { "(no subject)" }.into()),
        ),
        ("visible_external", r.visible_external.to_string()),
        ("external_domains", r.external_domains.to_string()),
        ("visible_seen", seen_text(r)),
        ("envelope_recipients", r.envelope_recipients.to_string()),
        ("client_ip", r.client_ip.clone()),
        (
            "auth_user",
            r.auth_user
                .as_ref()
                .map(|u| format!("({u})"))
                .unwrap_or_default(),
        ),
        ("retention", retention),
        ("hostname", cfg.server.hostname.clone()),
    ]);
    let mut steps = next_steps(cfg, i, lang);
    // One click from the mail to the incident in the console.
    if let Some(url) = &cfg.console.public_url {
        let label = if de {
            "In der Konsole"
        } else {
            "In the console"
        };
        steps.push_str(&format!("\n\n{label}: {url}/incidents/{}", r.id));
    }
    v.insert("next_steps", steps);
    v.insert("release_link", String::new());
    v
}

/// Which threshold the mail exceeded, in words: "12 external addresses,
/// more than 10 and 4 external domains, more than 3".
fn trigger_text(r: &crate::incident::record::Record, lang: Lang) -> String {
    let de = lang == Lang::De;
    let addresses = if de {
        format!(
            "{} externe Adressen, mehr als {}",
            r.visible_external, r.threshold
        )
    } else {
        format!(
            "{} external addresses, more than {}",
            r.visible_external, r.threshold
        )
    };
    let domains = |t: usize| {
        if de {
            format!("{} externe Domains, mehr als {t}", r.external_domains)
        } else {
            format!("{} external domains, more than {t}", r.external_domains)
        }
    };
    match (r.trigger.as_str(), r.domain_threshold) {
        ("domains", Some(t)) => domains(t),
        ("both", Some(t)) => format!(
            "{addresses} {} {}",
            if de { "und" } else { "and" },
            domains(t)
        ),
        _ => addresses,
    }
}

/// `To address 12, Reply-To display name 3` from the record's counts (an
/// older record without them: "-").
fn seen_text(r: &crate::incident::record::Record) -> String {
    if r.visible_seen.is_empty() {
        return "-".into();
    }
    r.visible_seen
        .iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn next_steps(cfg: &Config, i: &Incident, lang: Lang) -> String {
    let id = &i.record.id;
    let de = lang == Lang::De;
    if matches!(i.hold, Some(HoldState::Held | HoldState::Releasing)) {
        let until = rfc3339(i.recorded_at + cfg.quarantine.retention.as_secs() as i64);
        let head = if de {
            format!(
                "Die Nachricht ist zurückgehalten (nicht versendet) bis {until}; danach wird sie\ngelöscht und der Absender benachrichtigt. Entscheiden Sie:"
            )
        } else {
            format!(
                "The message is held (not sent) until {until}; then it is deleted and\nthe sender told. Decide:"
            )
        };
        return format!(
            "{head}\n  bccguard quarantine show {id}\n  bccguard quarantine release {id} --as bcc    (--as split, --as original)\n  bccguard quarantine drop {id}"
        );
    }
    if i.class == Class::Allowed {
        let group = i.record.group.as_deref().unwrap_or_default();
        return if de {
            format!(
                "Alle sichtbaren externen Adressen gehören zur freigegebenen Gruppe \"{group}\"\n(bccguard group show \"{group}\"). Nichts zu tun."
            )
        } else {
            format!(
                "Every visible external address is in the approved group \"{group}\"\n(bccguard group show \"{group}\"). Nothing to do."
            )
        };
    }
    match (deadline(i), de) {
        (Some(d), false) => format!(
            "Personal data was disclosed. If the breach must be notified, the\nsupervisory authority must have it by {} (GDPR Art. 33(1): 72 hours\nafter awareness). Draft: bccguard incident report {id} --lang en",
            rfc3339(d)
        ),
        (Some(d), true) => format!(
            "Personenbezogene Daten wurden offengelegt. Ist die Verletzung meldepflichtig,\nmuss die Meldung bis {} bei der Aufsichtsbehörde sein (Art. 33 Abs. 1\nDSGVO: 72 Stunden nach Bekanntwerden). Entwurf: bccguard incident report {id} --lang de",
            rfc3339(d)
        ),
        (None, false) => "No personal data was disclosed: the guard's action prevented it. The\nincident is documented in the register (GDPR Art. 33(5)).".into(),
        (None, true) => "Es wurden keine personenbezogenen Daten offengelegt: die Maßnahme des Guards\nhat es verhindert. Der Vorfall ist im Verzeichnis dokumentiert (Art. 33 Abs. 5 DSGVO).".into(),
    }
}

/// Subject and body in every configured language.
fn compose(
    cfg: &Config,
    template: &str,
    each: impl Fn(Lang) -> HashMap<&'static str, String>,
) -> (String, String) {
    let mut subjects = Vec::new();
    let mut bodies = Vec::new();
    for &lang in &cfg.incidents.languages {
        let t = cfg.incidents.templates.get(template, lang);
        let v = each(lang);
        subjects.push(templates::render(&t.subject, &v, true));
        bodies.push(templates::render(&t.body, &v, false));
    }
    (subjects.join(" / "), bodies.join("\n-----\n\n"))
}

/// The webhook body: the event and the incident record (which holds no
/// recipient address), its class, deadline and how to act on it.
pub fn webhook_body(i: &Incident, event: &str) -> serde_json::Value {
    let id = &i.record.id;
    serde_json::json!({
        "event": event,
        "incident": i.record,
        "class": i.class.as_str(),
        "hold": i.hold.map(HoldState::as_str),
        "deadline": deadline(i).map(rfc3339),
        "commands": {
            "report": format!("bccguard incident report {id}"),
            "release": matches!(i.hold, Some(HoldState::Held)).then(|| format!("bccguard quarantine release {id} --as bcc")),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::incident::store::sample as incident;

    fn config() -> Config {
        Config::from_yaml(
            "upstream:\n  maildir: ./o\nserver:\n  hostname: guard.test\n",
            "t",
        )
        .unwrap()
    }

    #[test]
    fn the_next_steps_fit_the_incident() {
        let cfg = config();
        let held = vars(
            &cfg,
            &incident(Class::Prevented, Some(HoldState::Held)),
            Lang::En,
        );
        assert!(
            held["next_steps"].contains("bccguard quarantine release 01ABC --as bcc"),
            "{}",
            held["next_steps"]
        );
        assert!(
            held["next_steps"].contains("until 2021-03-08T10:00:00Z"),
            "retention 7d: {}",
            held["next_steps"]
        );
        let open = vars(&cfg, &incident(Class::Disclosed, None), Lang::De);
        assert!(
            open["next_steps"].contains("bis 2021-03-04T10:00:00Z"),
            "72 h: {}",
            open["next_steps"]
        );
        assert_eq!(open["subject"], "(ohne Betreff)");
        assert_eq!(open["auth_user"], "(alice)");
        let done = vars(&cfg, &incident(Class::Prevented, None), Lang::En);
        assert!(done["next_steps"].starts_with("No personal data was disclosed"));
    }

    #[test]
    fn the_dpo_mail_says_which_threshold_was_exceeded() {
        let cfg = config();
        let mut i = incident(Class::Prevented, None);
        let trigger = |i: &Incident, lang| vars(&cfg, i, lang)["trigger"].clone();
        assert_eq!(
            trigger(&i, Lang::En),
            "1494 external addresses, more than 10"
        );
        i.record.trigger = "domains".into();
        i.record.domain_threshold = Some(5);
        assert_eq!(trigger(&i, Lang::De), "37 externe Domains, mehr als 5");
        i.record.trigger = "both".into();
        assert_eq!(
            trigger(&i, Lang::En),
            "1494 external addresses, more than 10 and 37 external domains, more than 5"
        );
        let (_, body) = compose(&cfg, "dpo", |lang| vars(&cfg, &i, lang));
        assert!(
            body.contains("Ausgelöst durch:      1494 externe Adressen, mehr als 10 und 37")
                && body.contains("Triggered by:         1494 external addresses"),
            "{body}"
        );
    }

    #[test]
    fn notices_come_in_every_configured_language_in_order() {
        let cfg = config();
        let i = incident(Class::Disclosed, None);
        let (subject, body) = compose(&cfg, "dpo", |lang| vars(&cfg, &i, lang));
        assert!(
            subject.starts_with("[bccguard] Vorfall 01ABC: monitor, 1494 externe")
                && subject.contains(" / [bccguard] Incident 01ABC"),
            "{subject}"
        );
        let (de, en) = body.split_once("\n-----\n\n").expect("two languages");
        assert!(
            de.contains("Empfängeradressen werden hier bewusst nicht")
                && en.contains("deliberately not listed")
        );
        let webhook = webhook_body(&i, "incident");
        assert_eq!(webhook["deadline"], "2021-03-04T10:00:00Z");
        assert_eq!(webhook["commands"]["release"], serde_json::Value::Null);
    }

    #[test]
    fn failures_read_as_the_steps_and_the_log_have_always_shown_them() {
        let url = Url::parse("http://tickets.test/hook").unwrap();
        let status = NoticeError::Status { url, code: 500 };
        assert_eq!(
            status.to_string(),
            "webhook http://tickets.test:80/hook: HTTP 500"
        );
        let odd = webhook::WebhookError::NotHttp("SSH-2.0".into());
        assert_eq!(
            NoticeError::from(odd).to_string(),
            "not an HTTP status line: \"SSH-2.0\""
        );
        let address = mail::MailError::Address("smtp.test".into());
        assert_eq!(
            NoticeError::from(address).to_string(),
            "\"smtp.test\" is not host:port"
        );
        assert_eq!(NoticeError::NoDpo.to_string(), "incidents.notify is empty");
    }
}
