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
pub mod webhook;

use std::collections::HashMap;
use std::time::Duration;

use tokio::sync::watch;

pub use crate::templates::{self, Lang, Templates};

use crate::config::Config;
use crate::incident::Workflow;
use crate::incident::store::{self, Class, HoldState, Incident, Notice, NoticeKind, Step};

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
    result: Result<String, String>,
) -> Result<(), store::StoreError> {
    let now = crate::clock::now() as i64;
    let cfg = wf.config();
    let kind = notices.first().map_or(NoticeKind::Dpo, |n| n.kind);
    match result {
        Ok(detail) => {
            let ids: Vec<i64> = notices.iter().map(|n| n.id).collect();
            let batch = crate::id::new_id();
            let steps: Vec<(String, Step)> = notices
                .iter()
                .map(|n| {
                    (
                        n.incident.clone(),
                        Step::now("bccguard", "notified", detail.clone()),
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
        Err(error) => {
            for n in notices.iter().cloned() {
                let give_up = now - n.created >= cfg.incidents.notice_max_age.as_secs() as i64;
                let error = error.clone();
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
                        let what =
                            format!("{} notice ({}) given up: {error}", n.kind.as_str(), n.event);
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
    }
}

/// Seconds before the next attempt at a notice tried `attempts` times:
/// `min` doubling per attempt, at most `max`. Rounded up to whole seconds,
/// the outbox's clock, so a sub-second `min` still waits.
fn retry_wait(attempts: u32, min: Duration, max: Duration) -> i64 {
    let wait = min.saturating_mul(1 << attempts.min(16)).min(max);
    wait.as_secs() as i64 + i64::from(wait.subsec_nanos() > 0)
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
    v.insert("next_steps", next_steps(cfg, i, lang));
    v
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

async fn incident(wf: &Workflow, id: &str) -> Result<Incident, String> {
    let id = id.to_string();
    store::call(&wf.store, move |s| s.incident(&id))
        .await
        .map_err(|e| e.to_string())
}

async fn send_to_dpo(wf: &Workflow, cfg: &Config, notices: &[Notice]) -> Result<String, String> {
    let to: Vec<lettre::Address> = cfg
        .incidents
        .notify
        .iter()
        .filter_map(|a| a.parse().ok())
        .collect();
    if to.is_empty() {
        return Err("incidents.notify is empty".into());
    }
    let mut incidents = Vec::new();
    for n in notices {
        incidents.push(incident(wf, &n.incident).await?);
    }
    let (subject, body) = match incidents.as_slice() {
        [one] => compose(cfg, "dpo", |lang| vars(cfg, one, lang)),
        many => compose(cfg, "dpo_digest", |lang| {
            let list: Vec<String> = many
                .iter()
                .map(|i| {
                    let v = vars(cfg, i, lang);
                    format!(
                        "{}  {}  {:<7} {:<9} {:>5} ext.  {}  \"{}\"",
                        v["id"],
                        v["time"],
                        v["action"],
                        v["class"],
                        v["visible_external"],
                        v["sender"],
                        v["subject"]
                    )
                })
                .collect();
            let mut v = HashMap::from([
                ("count", many.len().to_string()),
                ("list", list.join("\n")),
                ("hostname", cfg.server.hostname.clone()),
            ]);
            v.extend(
                many.first()
                    .map(|i| vars(cfg, i, lang))
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|(k, _)| !matches!(*k, "count" | "list")),
            );
            v
        }),
    };
    let out = mail::Outgoing {
        envelope_from: cfg.incidents.from.parse().ok(),
        to,
        subject,
        body,
    };
    mail::send(cfg, &out).await?;
    Ok(match incidents.len() {
        1 => format!("DPO mail to {}", cfg.incidents.notify.join(", ")),
        n => format!(
            "DPO digest of {n} incidents to {}",
            cfg.incidents.notify.join(", ")
        ),
    })
}

async fn send_to_sender(wf: &Workflow, cfg: &Config, n: &Notice) -> Result<String, String> {
    let i = incident(wf, &n.incident).await?;
    let Ok(to) = i.record.mail_from.parse::<lettre::Address>() else {
        // The null sender (or an address lettre cannot use): nobody to tell.
        return Ok(format!(
            "no sender notice ({}): no usable envelope sender",
            n.event
        ));
    };
    let (actor, how) = if n.event == "released" {
        let id = n.incident.clone();
        let steps = store::call(&wf.store, move |s| s.steps(&id))
            .await
            .unwrap_or_default();
        steps
            .into_iter()
            .rev()
            .find(|s| s.step == "released")
            .map(|s| (s.actor, s.detail))
            .unwrap_or_default()
    } else {
        Default::default()
    };
    let template = format!("sender_{}", n.event);
    let (subject, body) = compose(cfg, &template, |lang| {
        let mut v = vars(cfg, &i, lang);
        v.insert("actor", actor.clone());
        v.insert("how", how_text(&how, lang));
        v
    });
    let out = mail::Outgoing {
        envelope_from: None,
        to: vec![to],
        subject,
        body,
    };
    mail::send(cfg, &out).await?;
    Ok(format!("sender told ({}): {}", n.event, i.record.mail_from))
}

/// "as bcc: ..." in the sender's language.
fn how_text(detail: &str, lang: Lang) -> String {
    let how = detail.split(':').next().unwrap_or_default();
    match (lang, how) {
        (Lang::De, "as bcc") => "mit verborgenen Empfängern (Bcc)".into(),
        (Lang::De, "as split") => "als einzelne Kopien, eine je Empfänger".into(),
        (Lang::De, "as original") => "unverändert".into(),
        (Lang::En, "as bcc") => "with the recipients hidden (Bcc)".into(),
        (Lang::En, "as split") => "as separate copies, one per recipient".into(),
        (Lang::En, "as original") => "unchanged".into(),
        _ => String::new(),
    }
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

async fn send_webhook(wf: &Workflow, cfg: &Config, n: &Notice) -> Result<String, String> {
    let Some(url) = &cfg.incidents.webhook else {
        return Err("incidents.webhook is not set".into());
    };
    let i = incident(wf, &n.incident).await?;
    let body = serde_json::to_vec(&webhook_body(&i, &n.event)).map_err(|e| e.to_string())?;
    let ca = cfg.incidents.webhook_ca.as_deref();
    match webhook::post(url, &body, cfg.incidents.webhook_timeout, ca).await? {
        code @ 200..=299 => Ok(format!("webhook {url}: HTTP {code} ({})", n.event)),
        code => Err(format!("webhook {url}: HTTP {code}")),
    }
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
    fn retries_double_from_the_minimum_up_to_the_maximum_in_whole_seconds() {
        let (min, max) = (Duration::from_secs(30), Duration::from_secs(3600));
        let waits: Vec<i64> = (0..9).map(|a| retry_wait(a, min, max)).collect();
        assert_eq!(waits, [30, 60, 120, 240, 480, 960, 1920, 3600, 3600]);
        assert_eq!(retry_wait(u32::MAX, min, max), 3600, "no overflow");
        let sub = Duration::from_millis(300);
        assert_eq!(retry_wait(0, sub, max), 1, "rounded up, never 0");
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
}
