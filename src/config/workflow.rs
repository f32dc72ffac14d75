//! The incident-workflow keys of `policy.yaml`: `incidents.*` (the log, who
//! is notified and how, the controller and the competent authority for the
//! Art. 33 draft), `store.*` (the register and quarantine database) and
//! `quarantine.*`. Validated like the rest of the file: every problem names
//! its key path and value.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::authorities::{self, Authority};
use super::url::Url;
use super::{DEFAULT_INCIDENTS_PATH, UpstreamTls, Validator};
use crate::policy::Action;
use crate::templates::{Lang, Templates};

/// Default database of the incident register, the quarantine and the
/// outbox of notices.
pub const DEFAULT_STORE_PATH: &str = "./bccguard.db";
/// How long a held message waits for a decision before it is dropped and
/// the sender told.
pub const DEFAULT_QUARANTINE_RETENTION: Duration = Duration::from_secs(7 * 86400);
/// Incident mails to the DPO per hour before the rest of that hour goes
/// out as one digest a minute (a burst must not bury the DPO's inbox).
pub const DEFAULT_DIGEST_AFTER: usize = 10;
/// In a burst, at most one digest per this interval: the DPO still hears
/// of every incident within a minute.
pub const DEFAULT_DIGEST_INTERVAL: Duration = Duration::from_secs(60);
/// First retry of a notice that could not be sent (a mail server or a
/// ticketing system briefly down); doubles per attempt.
pub const DEFAULT_NOTICE_RETRY_MIN: Duration = Duration::from_secs(30);
/// Longest wait between two attempts at a notice, so a long outage is
/// still retried every hour.
pub const DEFAULT_NOTICE_RETRY_MAX: Duration = Duration::from_secs(3600);
/// Then a notice is given up (and that is a step on its incident): a day
/// of retries spans any ordinary outage and still leaves the DPO most of
/// the 72 hours of Art. 33 once the failure is noticed.
pub const DEFAULT_NOTICE_MAX_AGE: Duration = Duration::from_secs(86400);
/// How long the affected addresses of a disclosed incident are kept for
/// the DPO: long enough to decide on and send an Art. 34 notification to
/// each person (after the 72 h of Art. 33), short enough that the register
/// does not become a second copy of the list (Art. 5(1)(e)).
pub const DEFAULT_KEEP_RECIPIENTS: Duration = Duration::from_secs(30 * 86400);
/// The zone of the incident report's times: the guard is built for German
/// offices and authorities, who read local time.
pub const DEFAULT_TIMEZONE: &str = "Europe/Berlin";
/// A webhook POST may take this long in all (connect, TLS, request and
/// status line): a hung ticketing system must not stall the outbox.
pub const DEFAULT_WEBHOOK_TIMEOUT: Duration = Duration::from_secs(15);

/// `incidents.*`.
#[derive(Debug, Clone)]
pub struct IncidentsConfig {
    /// `path` of the JSON-lines incident log (for log shippers).
    pub path: PathBuf,
    /// `notify`: addresses of the DPO / admins; one mail per incident.
    pub notify: Vec<String>,
    /// `from`: sender of the guard's own mails (default
    /// `bccguard@<server.hostname>`); notices to senders use the null
    /// sender on the envelope.
    pub from: String,
    /// `digest_after`: incident mails per hour before digests.
    pub digest_after: usize,
    /// `digest_interval`: at most one digest per this interval.
    pub digest_interval: Duration,
    /// `notice_retry_min`: first retry of a failed notice; doubles per
    /// attempt.
    pub notice_retry_min: Duration,
    /// `notice_retry_max`: longest wait between retries.
    pub notice_retry_max: Duration,
    /// `notice_max_age`: then a notice is given up.
    pub notice_max_age: Duration,
    /// `webhook_timeout`: one webhook POST may take this long in all.
    pub webhook_timeout: Duration,
    /// `sender_notice`: actions whose sender is told (`hold`, `bcc`,
    /// `split`).
    pub sender_notice: Vec<Action>,
    /// `languages`: the notices' languages, in order.
    pub languages: Vec<Lang>,
    /// `templates`: a directory of overriding templates, loaded.
    pub templates: Templates,
    /// `webhook`: JSON POST target for ticketing systems.
    pub webhook: Option<Url>,
    /// `webhook_ca`: PEM trust anchors for an https webhook instead of the
    /// system store (an in-house ticketing system with its own CA).
    pub webhook_ca: Option<PathBuf>,
    /// `smtp`: own SMTP settings for notices (default: the upstream).
    pub smtp: Option<NoticeSmtp>,
    /// `controller`: who is responsible, for the Art. 33 draft.
    pub controller: Controller,
    /// `authority`: the competent supervisory authority (Länder code).
    pub authority: Option<&'static Authority>,
    /// `keep_recipients`: how long a disclosed incident's affected
    /// addresses stay in the register (`bccguard incident recipients`).
    pub keep_recipients: Duration,
    /// `timezone`: the IANA zone of the report's times.
    pub timezone: jiff::tz::TimeZone,
}

/// `incidents.smtp.*`: where the guard sends its own mails when not
/// through the upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoticeSmtp {
    /// `address`: `host:port`.
    pub address: String,
    /// `tls`: none, starttls, tls.
    pub tls: UpstreamTls,
    /// `username` and the password from `password_file`.
    pub login: Option<(String, super::Secret)>,
}

/// `incidents.controller.*` (Art. 33(3)(b): name and contact details).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Controller {
    /// `name` of the organisation.
    pub name: String,
    /// `address`: postal address.
    pub address: String,
    /// `dpo`: the data protection officer's name and contact details.
    pub dpo: String,
    /// `reporting_person`: who files the notification.
    pub reporting_person: String,
}

/// `store.*`.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// `path`: the SQLite database file.
    pub path: PathBuf,
}

/// `quarantine.*`.
#[derive(Debug, Clone)]
pub struct QuarantineConfig {
    /// `retention`: then a held message is dropped and the sender told.
    pub retention: Duration,
    /// `sender_release`: how the sender may send its own held mail on
    /// from the link in its hold notice (`bcc`, `split`; never the
    /// original, which would be a disclosure nobody reviewed); empty: no
    /// link. Needs `console.public_url` and the console.
    pub sender_release: Vec<Action>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawIncidents {
    path: Option<String>,
    keep_recipients: Option<String>,
    timezone: Option<String>,
    notify: Option<Vec<String>>,
    from: Option<String>,
    digest_after: Option<String>,
    digest_interval: Option<String>,
    notice_retry_min: Option<String>,
    notice_retry_max: Option<String>,
    notice_max_age: Option<String>,
    webhook_timeout: Option<String>,
    sender_notice: Option<Vec<String>>,
    languages: Option<Vec<String>>,
    templates: Option<String>,
    webhook: Option<String>,
    webhook_ca: Option<String>,
    smtp: Option<RawNoticeSmtp>,
    controller: Option<RawController>,
    authority: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawNoticeSmtp {
    address: Option<String>,
    tls: Option<String>,
    username: Option<String>,
    password_file: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawController {
    name: Option<String>,
    address: Option<String>,
    dpo: Option<String>,
    reporting_person: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawStore {
    path: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawQuarantine {
    retention: Option<String>,
    sender_release: Option<Vec<String>>,
}

impl Validator {
    pub(super) fn store(&mut self, raw: RawStore) -> StoreConfig {
        let path = self.path(raw.path.unwrap_or_else(|| DEFAULT_STORE_PATH.into()));
        if path.as_os_str().is_empty() {
            self.bad("store.path", "must not be empty");
        }
        StoreConfig { path }
    }

    pub(super) fn quarantine(&mut self, raw: RawQuarantine) -> QuarantineConfig {
        let mut sender_release = Vec::new();
        for (i, name) in raw.sender_release.unwrap_or_default().iter().enumerate() {
            match Action::parse(name) {
                Some(a @ (Action::Bcc | Action::Split)) => sender_release.push(a),
                _ => self.bad(
                    format!("quarantine.sender_release[{i}]"),
                    format!("{name:?}: a sender may release only as bcc or split (an original needs the DPO)"),
                ),
            }
        }
        QuarantineConfig {
            retention: self.duration(
                "quarantine.retention",
                raw.retention,
                DEFAULT_QUARANTINE_RETENTION,
            ),
            sender_release,
        }
    }

    pub(super) fn incidents(&mut self, raw: RawIncidents, hostname: &str) -> IncidentsConfig {
        let path = self.path(raw.path.unwrap_or_else(|| DEFAULT_INCIDENTS_PATH.into()));
        if path.as_os_str().is_empty() {
            self.bad("incidents.path", "must not be empty");
        }
        let notify = raw.notify.unwrap_or_default();
        for (i, a) in notify.iter().enumerate() {
            self.mailbox(&format!("incidents.notify[{i}]"), a);
        }
        // The derived default is not checked: a bad server.hostname is
        // already reported under its own key.
        let from = match raw.from.filter(|f| !f.is_empty()) {
            Some(f) => {
                self.mailbox("incidents.from", &f);
                f
            }
            None => format!("bccguard@{hostname}"),
        };
        let digest_after = self.count(
            "incidents.digest_after",
            raw.digest_after,
            DEFAULT_DIGEST_AFTER,
            1,
        );
        let digest_interval = self.duration(
            "incidents.digest_interval",
            raw.digest_interval,
            DEFAULT_DIGEST_INTERVAL,
        );
        let notice_retry_min = self.duration(
            "incidents.notice_retry_min",
            raw.notice_retry_min,
            DEFAULT_NOTICE_RETRY_MIN,
        );
        let notice_retry_max = self.duration(
            "incidents.notice_retry_max",
            raw.notice_retry_max,
            DEFAULT_NOTICE_RETRY_MAX,
        );
        if notice_retry_max < notice_retry_min {
            self.bad(
                "incidents.notice_retry_max",
                "must not be shorter than incidents.notice_retry_min",
            );
        }
        let notice_max_age = self.duration(
            "incidents.notice_max_age",
            raw.notice_max_age,
            DEFAULT_NOTICE_MAX_AGE,
        );
        let webhook_timeout = self.duration(
            "incidents.webhook_timeout",
            raw.webhook_timeout,
            DEFAULT_WEBHOOK_TIMEOUT,
        );
        let sender_notice = self.sender_notice(raw.sender_notice);
        let languages = self.languages(raw.languages);
        let templates = match raw.templates.filter(|t| !t.is_empty()) {
            None => Templates::default(),
            Some(dir) => Templates::load(&self.path(dir)).unwrap_or_else(|problems| {
                for (file, message) in problems {
                    self.bad("incidents.templates", format!("{file}: {message}"));
                }
                Templates::default()
            }),
        };
        let webhook = raw.webhook.filter(|w| !w.is_empty()).and_then(|w| {
            Url::parse(&w)
                .map_err(|e| self.bad("incidents.webhook", format!("{w:?}: {e}")))
                .ok()
        });
        let webhook_ca = raw
            .webhook_ca
            .filter(|c| !c.is_empty())
            .map(|c| self.path(c));
        if let Some(ca) = &webhook_ca
            && let Err(e) = crate::net::tls::connector(Some(ca), true)
        {
            self.bad("incidents.webhook_ca", e.to_string());
        }
        let smtp = raw.smtp.and_then(|s| self.notice_smtp(s));
        let c = raw.controller.unwrap_or_default();
        let controller = Controller {
            name: c.name.unwrap_or_default(),
            address: c.address.unwrap_or_default(),
            dpo: c.dpo.unwrap_or_default(),
            reporting_person: c.reporting_person.unwrap_or_default(),
        };
        let authority = raw.authority.filter(|a| !a.is_empty()).and_then(|code| {
            let found = authorities::authority(&code);
            if found.is_none() {
                let codes: Vec<_> = authorities::AUTHORITIES.iter().map(|a| a.code).collect();
                self.bad(
                    "incidents.authority",
                    format!(
                        "unknown code {code:?}, expected one of {}",
                        codes.join(", ")
                    ),
                );
            }
            found
        });
        let keep_recipients = self.duration(
            "incidents.keep_recipients",
            raw.keep_recipients,
            DEFAULT_KEEP_RECIPIENTS,
        );
        let zone = raw.timezone.filter(|z| !z.is_empty());
        let zone = zone.as_deref().unwrap_or(DEFAULT_TIMEZONE);
        let timezone = jiff::tz::TimeZone::get(zone).unwrap_or_else(|e| {
            self.bad(
                "incidents.timezone",
                format!("{zone:?} is not an IANA time zone (e.g. Europe/Berlin, UTC): {e}"),
            );
            jiff::tz::TimeZone::UTC
        });
        IncidentsConfig {
            path,
            keep_recipients,
            timezone,
            notify,
            from,
            digest_after,
            digest_interval,
            notice_retry_min,
            notice_retry_max,
            notice_max_age,
            webhook_timeout,
            webhook_ca,
            sender_notice,
            languages,
            templates,
            webhook,
            smtp,
            controller,
            authority,
        }
    }

    fn mailbox(&mut self, key: &str, address: &str) {
        if address.parse::<lettre::Address>().is_err() {
            self.bad(key, format!("{address:?} is not an e-mail address"));
        }
    }

    fn sender_notice(&mut self, raw: Option<Vec<String>>) -> Vec<Action> {
        let raw = raw.unwrap_or_else(|| vec!["hold".into()]);
        let mut out = Vec::new();
        for (i, name) in raw.iter().enumerate() {
            match Action::parse(name) {
                Some(a @ (Action::Hold | Action::Bcc | Action::Split)) => out.push(a),
                _ => self.bad(
                    format!("incidents.sender_notice[{i}]"),
                    format!("{name:?}: senders are told only of hold, bcc or split"),
                ),
            }
        }
        out
    }

    fn languages(&mut self, raw: Option<Vec<String>>) -> Vec<Lang> {
        let raw = raw.unwrap_or_else(|| vec!["de".into(), "en".into()]);
        if raw.is_empty() {
            self.bad("incidents.languages", "needs at least one of de, en");
        }
        raw.iter()
            .enumerate()
            .filter_map(|(i, l)| {
                let lang = Lang::parse(l);
                if lang.is_none() {
                    self.bad(
                        format!("incidents.languages[{i}]"),
                        format!("unknown language {l:?}, expected de or en"),
                    );
                }
                lang
            })
            .collect()
    }

    fn notice_smtp(&mut self, raw: RawNoticeSmtp) -> Option<NoticeSmtp> {
        let address = raw.address.filter(|a| !a.is_empty())?;
        if !super::valid_host_port(&address) {
            self.bad(
                "incidents.smtp.address",
                format!("{address:?} is not host:port"),
            );
        }
        let tls = self.tls_mode("incidents.smtp.tls", raw.tls.as_deref());
        let login = match (raw.username, raw.password_file) {
            (None, None) => None,
            (Some(user), Some(file)) => match std::fs::read_to_string(self.path(&file)) {
                Ok(pw) => Some((user, super::Secret(pw.trim_end().to_string()))),
                Err(e) => {
                    let file = self.path(file);
                    self.bad(
                        "incidents.smtp.password_file",
                        format!("{}: {e}", file.display()),
                    );
                    None
                }
            },
            (Some(_), None) => {
                self.bad("incidents.smtp.password_file", "missing (username is set)");
                None
            }
            (None, Some(_)) => {
                self.bad("incidents.smtp.username", "missing (password_file is set)");
                None
            }
        };
        Some(NoticeSmtp {
            address,
            tls,
            login,
        })
    }
}

#[cfg(test)]
mod tests;
