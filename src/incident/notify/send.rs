//! Sending one notice: the DPO's mail (or digest), the sender's mail and
//! the webhook POST, each rendered from the templates in every configured
//! language. The outbox ([`super::outbox`]) records what came of it.

use std::collections::HashMap;

use super::{Lang, NoticeError, compose, mail, vars, webhook, webhook_body};
use crate::config::Config;
use crate::incident::Workflow;
use crate::incident::store::{self, HoldState, Incident, Notice};

async fn incident(wf: &Workflow, id: &str) -> Result<Incident, NoticeError> {
    let id = id.to_string();
    Ok(store::call(&wf.store, move |s| s.incident(&id)).await?)
}

/// One DPO mail about `notices` (a digest when more than one).
pub(super) async fn send_to_dpo(
    wf: &Workflow,
    cfg: &Config,
    notices: &[Notice],
) -> Result<String, NoticeError> {
    let to: Vec<lettre::Address> = cfg
        .incidents
        .notify
        .iter()
        .filter_map(|a| a.parse().ok())
        .collect();
    if to.is_empty() {
        return Err(NoticeError::NoDpo);
    }
    let mut incidents = Vec::new();
    for n in notices {
        incidents.push(incident(wf, &n.incident).await?);
    }
    let (subject, body) = match incidents.as_slice() {
        [one] => compose(cfg, "dpo", |lang| vars(cfg, one, lang)),
        many => compose(cfg, "dpo_digest", |lang| digest_vars(cfg, many, lang)),
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

/// The digest's placeholders: the count, one line per incident, and the
/// first incident's own (a template may use them).
fn digest_vars(cfg: &Config, many: &[Incident], lang: Lang) -> HashMap<&'static str, String> {
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
}

/// The sender's mail about `n` (held, sent hidden or split, released,
/// dropped, expired).
pub(super) async fn send_to_sender(
    wf: &Workflow,
    cfg: &Config,
    n: &Notice,
) -> Result<String, NoticeError> {
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
    let link = if n.event == "hold" {
        sender_link(wf, cfg, &i).await?
    } else {
        None
    };
    let template = format!("sender_{}", n.event);
    let (subject, body) = compose(cfg, &template, |lang| {
        let mut v = vars(cfg, &i, lang);
        v.insert("actor", actor.clone());
        v.insert("how", how_text(&how, lang));
        if let Some((url, until)) = &link {
            v.insert("release_link", release_text(cfg, url, *until, lang));
        }
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

/// "as bcc: ..." (from the CLI, the console or the sender's link) in the
/// sender's language.
fn how_text(detail: &str, lang: Lang) -> String {
    use crate::incident::quarantine::ReleaseAs;
    match (lang, ReleaseAs::of_detail(detail)) {
        (Lang::De, Some(ReleaseAs::Bcc)) => "mit verborgenen Empfängern (Bcc)".into(),
        (Lang::De, Some(ReleaseAs::Split)) => "als einzelne Kopien, eine je Empfänger".into(),
        (Lang::De, Some(ReleaseAs::Original)) => "unverändert".into(),
        (Lang::En, Some(ReleaseAs::Bcc)) => "with the recipients hidden (Bcc)".into(),
        (Lang::En, Some(ReleaseAs::Split)) => "as separate copies, one per recipient".into(),
        (Lang::En, Some(ReleaseAs::Original)) => "unchanged".into(),
        (_, None) => String::new(),
    }
}

/// The sender's own link to its held mail and until when it works, when
/// `quarantine.sender_release` offers one and the console has a public
/// URL; the key comes from the store, so the console can check it.
async fn sender_link(
    wf: &Workflow,
    cfg: &Config,
    i: &Incident,
) -> Result<Option<(String, i64)>, NoticeError> {
    use crate::incident::sender_link;
    let Some(base) = &cfg.console.public_url else {
        return Ok(None);
    };
    if cfg.quarantine.sender_release.is_empty() || i.hold != Some(HoldState::Held) {
        return Ok(None);
    }
    let key = store::call(&wf.store, |s| s.key(sender_link::KEY_NAME)).await?;
    let until = i.recorded_at + cfg.quarantine.retention.as_secs() as i64;
    let token = sender_link::token(&key, &i.record.id, &i.record.mail_from, until);
    Ok(Some((
        format!("{base}{}", sender_link::path(&i.record.id, &token)),
        until,
    )))
}

/// The paragraph with the sender's link, naming what it offers.
fn release_text(cfg: &Config, url: &str, until: i64, lang: Lang) -> String {
    use crate::policy::Action;
    let offers: Vec<&str> = cfg
        .quarantine
        .sender_release
        .iter()
        .map(|a| match (lang, a) {
            (Lang::De, Action::Bcc) => "mit verborgenen Empfängern (Bcc) senden",
            (Lang::De, _) => "als einzelne Kopien senden",
            (Lang::En, Action::Bcc) => "send it with the recipients hidden (Bcc)",
            (Lang::En, _) => "send it as separate copies",
        })
        .collect();
    let until = crate::clock::local(&cfg.incidents.timezone, until);
    match lang {
        Lang::De => format!(
            "Sie können auch selbst entscheiden ({} oder verwerfen), bis {until}:\n{url}",
            offers.join(", ")
        ),
        Lang::En => format!(
            "You may also decide yourself ({}, or discard it), until {until}:\n{url}",
            offers.join(", ")
        ),
    }
}

/// One POST to `incidents.webhook` about `n`.
pub(super) async fn send_webhook(
    wf: &Workflow,
    cfg: &Config,
    n: &Notice,
) -> Result<String, NoticeError> {
    let Some(url) = &cfg.incidents.webhook else {
        return Err(NoticeError::NoWebhook);
    };
    let i = incident(wf, &n.incident).await?;
    let body = serde_json::to_vec(&webhook_body(&i, &n.event))?;
    let ca = cfg.incidents.webhook_ca.as_deref();
    match webhook::post(url, &body, cfg.incidents.webhook_timeout, ca).await? {
        code @ 200..=299 => Ok(format!("webhook {url}: HTTP {code} ({})", n.event)),
        code => Err(NoticeError::Status {
            url: url.clone(),
            code,
        }),
    }
}
