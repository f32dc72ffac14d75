//! `bccguard incident report ID`: a draft notification of a personal data
//! breach that answers the usual Art. 33 form of the German supervisory
//! authorities, in German or English, and the built-in directory of those
//! authorities (`incidents.authority`).
//!
//! Pure: an incident, its steps and the configuration in, text out. The
//! draft fills in what the guard knows (what, when, how many, which
//! measure) and marks with `[TODO]` what only people can judge (the
//! context of the mail, the risk, whether to tell the people affected).
//!
//! The text is the embedded `report/de.txt` and `report/en.txt`, with
//! `{placeholders}` like the notices' templates ([`crate::templates`]);
//! this module computes the values. Built in only: an override would need
//! a format of its own (the parts, no subject) and a set of placeholders
//! that `bccguard check` could validate, for a draft people edit anyway.

use crate::config::Config;
use crate::incident::notify::{ART33_DEADLINE, Lang, deadline, rfc3339};
use crate::incident::store::{Class, Incident, Step};

pub use crate::config::authorities::{AUTHORITIES, Authority, DIRECTORY_DATE, authority};

/// The draft's text in `lang`. The file is the draft itself up to its
/// first `%% name` line, then the parts only some incidents show, each
/// from its `%% name` line to the next: one file per language, so a
/// translator sees every sentence of the draft in one place.
fn text(lang: Lang) -> &'static str {
    match lang {
        Lang::De => include_str!("report/de.txt"),
        Lang::En => include_str!("report/en.txt"),
    }
}

/// The draft's frame: everything before the first part.
fn frame(lang: Lang) -> &'static str {
    let t = text(lang);
    t.find("\n%% ").map_or(t, |end| &t[..=end])
}

/// The part `name`: its lines, without the newline after the last (the
/// frame's placeholder line brings its own).
fn part(lang: Lang, name: &str) -> &'static str {
    let t = text(lang);
    let marker = format!("\n%% {name}\n");
    // The parts are the embedded files' own, tested for both languages.
    let start = t.find(&marker).map_or(t.len(), |i| i + marker.len());
    let rest = &t[start..];
    let end = rest
        .find("\n%% ")
        .unwrap_or(rest.trim_end_matches('\n').len());
    &rest[..end]
}

/// Fills `{name}` with its value in one pass ([`crate::templates::fill`]):
/// a subject reading "{id}" stays as it is; unknown names are left as
/// written.
fn fill(text: &str, vars: &[(&str, String)]) -> String {
    crate::templates::fill(
        text,
        |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.as_str())
        },
        false,
    )
}

/// Section 0: the class, and for a disclosure the Art. 33 deadline and
/// how it stands at `now`.
fn class_section(i: &Incident, now: i64, lang: Lang) -> String {
    let Some(d) = deadline(i) else {
        return part(lang, "prevented").to_string();
    };
    let head = fill(
        part(lang, "disclosed"),
        &[
            ("aware", rfc3339(d - ART33_DEADLINE)),
            ("deadline", rfc3339(d)),
        ],
    );
    let left = if now > d {
        part(lang, "overdue").to_string()
    } else {
        fill(
            part(lang, "time_left"),
            &[("hours", ((d - now) / 3600).to_string())],
        )
    };
    format!("{head}\n{left}")
}

/// Section 1: the authority from bccguard's directory, or what to set.
fn authority_section(cfg: &Config, lang: Lang) -> String {
    match cfg.incidents.authority {
        Some(a) => fill(
            part(lang, "authority"),
            &[
                ("name", a.name.to_string()),
                ("postal", a.postal.to_string()),
                ("email", a.email.to_string()),
                ("web", a.web.to_string()),
                ("date", DIRECTORY_DATE.to_string()),
            ],
        ),
        None => part(lang, "no_authority").to_string(),
    }
}

/// Section 8's measures taken: the steps in the register.
fn taken(steps: &[Step], lang: Lang) -> String {
    let mut out = part(lang, "taken").to_string();
    for s in steps {
        out.push_str(&format!(
            "\n- {} {} ({}): {}",
            s.time, s.step, s.actor, s.detail
        ));
    }
    out
}

/// The draft, as plain text (Markdown-friendly).
pub fn draft(cfg: &Config, i: &Incident, steps: &[Step], now: i64, lang: Lang) -> String {
    let r = &i.record;
    let c = &cfg.incidents.controller;
    let or_todo = |s: &str| if s.is_empty() { "[TODO]" } else { s }.to_string();
    let aware = i.disclosed_at.unwrap_or(i.recorded_at).max(i.recorded_at);
    let vars = [
        ("now", rfc3339(now)),
        ("id", r.id.clone()),
        ("class", class_section(i, now, lang)),
        ("authority", authority_section(cfg, lang)),
        ("controller", or_todo(&c.name)),
        ("address", or_todo(&c.address)),
        ("dpo", or_todo(&c.dpo)),
        ("reporting_person", or_todo(&c.reporting_person)),
        ("visible_external", r.visible_external.to_string()),
        ("external_domains", r.external_domains.to_string()),
        (
            "sender",
            r.header_from.clone().unwrap_or_else(|| r.mail_from.clone()),
        ),
        ("subject", r.subject.clone().unwrap_or_default()),
        ("action", r.action.clone()),
        ("outcome", r.outcome.clone()),
        ("rule", r.rule.clone()),
        ("threshold", r.threshold.to_string()),
        ("sent", i.disclosed_at.map_or(r.time.clone(), rfc3339)),
        ("aware", rfc3339(aware)),
        ("visible_internal", r.visible_internal.to_string()),
        ("display_names", r.display_names.to_string()),
        (
            "others",
            r.envelope_recipients.saturating_sub(1).to_string(),
        ),
        ("taken", taken(steps, lang)),
    ];
    fill(frame(lang), &vars)
}

/// One line per incident for `bccguard incident list`.
pub fn list_line(i: &Incident) -> String {
    let r = &i.record;
    let deadline = match deadline(i) {
        Some(d) => rfc3339(d),
        None => "-".into(),
    };
    let hold = i.hold.map_or("-", |h| h.as_str());
    format!(
        "{:<16}  {:<20}  {:<9}  {:<7}  {:<9}  {:>5}  {:<20}  {}  \"{}\"",
        r.id,
        r.time,
        i.class.as_str(),
        r.action,
        hold,
        r.visible_external,
        deadline,
        r.header_from.as_deref().unwrap_or(&r.mail_from),
        r.subject.as_deref().unwrap_or_default()
    )
}

/// The header of [`list_line`]'s table.
pub const LIST_HEADER: &str = "ID                TIME                  CLASS      ACTION   HOLD       EXT.  DEADLINE (ART. 33)    SENDER  SUBJECT";

/// Whether `class` matches (for `--class`).
pub fn class_matches(i: &Incident, class: Option<Class>) -> bool {
    class.is_none_or(|c| i.class == c)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PARTS: [&str; 7] = [
        "disclosed",
        "overdue",
        "time_left",
        "prevented",
        "authority",
        "no_authority",
        "taken",
    ];

    fn incident(class: Class, subject: &str) -> Incident {
        let mut i = crate::incident::store::sample(class, None);
        i.record.subject = Some(subject.into());
        i
    }

    #[test]
    fn every_part_is_in_both_languages_and_every_placeholder_is_filled() {
        let cfg = Config::from_yaml(
            "upstream:\n  maildir: ./o\nincidents:\n  authority: NW\n",
            "t",
        )
        .unwrap();
        let step = Step {
            time: "2021-03-01T10:00:00Z".into(),
            actor: "bccguard".into(),
            step: "recorded".into(),
            detail: "monitor".into(),
        };
        for lang in [Lang::De, Lang::En] {
            for name in PARTS {
                let p = part(lang, name);
                assert!(!p.is_empty() && !p.contains("%%"), "{lang:?} {name}: {p:?}");
            }
            for (class, now) in [(Class::Disclosed, 0), (Class::Disclosed, i64::MAX)] {
                let text = draft(
                    &cfg,
                    &incident(class, "Termine"),
                    std::slice::from_ref(&step),
                    now,
                    lang,
                );
                assert!(!text.contains(['{', '}', '%']), "{lang:?}:\n{text}");
                assert!(text.ends_with("request.\n") || text.ends_with("nennen.\n"));
            }
            let text = draft(&cfg, &incident(Class::Prevented, "Termine"), &[], 0, lang);
            assert!(!text.contains(['{', '}', '%']), "{lang:?}:\n{text}");
        }
    }

    #[test]
    fn values_are_not_searched_for_placeholders() {
        let cfg = Config::from_yaml("upstream:\n  maildir: ./o\n", "t").unwrap();
        let i = incident(Class::Prevented, "Termine {id} {sender}");
        let text = draft(&cfg, &i, &[], 0, Lang::En);
        assert!(
            text.contains("- Subject: \"Termine {id} {sender}\"\n"),
            "{text}"
        );
        assert_eq!(fill("{a}{b}{", &[("a", "{b}".into())]), "{b}{b}{");
    }

    #[test]
    fn the_directory_has_every_land_once_and_the_bfdi() {
        let lands = [
            "BW", "BY", "BE", "BB", "HB", "HH", "HE", "MV", "NI", "NW", "RP", "SL", "SN", "ST",
            "SH", "TH",
        ];
        for code in lands.into_iter().chain(["BUND", "BY-PUBLIC"]) {
            let a = authority(code).unwrap_or_else(|| panic!("{code} missing"));
            assert!(a.email.contains('@') && !a.postal.is_empty(), "{code}");
            assert_eq!(
                AUTHORITIES.iter().filter(|x| x.code == code).count(),
                1,
                "{code}"
            );
        }
        assert_eq!(authority("nrw").map(|a| a.code), Some("NW"));
        assert!(authority("XX").is_none());
    }
}
