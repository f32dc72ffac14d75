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
use crate::incident::quarantine::ReleaseAs;
use crate::incident::store::{Class, HoldState, Incident, Kept, Step};

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

pub use crate::clock::local;

/// A step's RFC 3339 time as Unix seconds (`None`: unreadable, kept as
/// written).
fn step_time(s: &Step) -> Option<i64> {
    s.time
        .parse::<jiff::Timestamp>()
        .ok()
        .map(|t| t.as_second())
}

/// A step's time in the reader's zone.
pub fn step_local(zone: &jiff::tz::TimeZone, s: &Step) -> String {
    step_time(s).map_or_else(|| s.time.clone(), |t| local(zone, t))
}

/// `n` with its noun in the right number: the part `name` is
/// `singular|plural`, each with `{n}` (German and English both say "1
/// Domain", "2 Domains"; the part keeps room for a language that does not).
fn counted(lang: Lang, name: &str, n: usize) -> String {
    let (one, many) = part(lang, name)
        .split_once('|')
        .unwrap_or((part(lang, name), part(lang, name)));
    fill(if n == 1 { one } else { many }, &[("n", n.to_string())])
}

/// The guard's measure as it ended: a hold says what became of it (who
/// released it how, or that it was deleted), from the last step that
/// ended it.
fn measure(i: &Incident, steps: &[Step], zone: &jiff::tz::TimeZone, lang: Lang) -> String {
    let r = &i.record;
    let ended = |name: &str| steps.iter().rev().find(|s| s.step == name);
    let end = |part_name: &str, s: Option<&Step>, how: &str| {
        fill(
            part(lang, part_name),
            &[
                ("rule", r.rule.clone()),
                ("how", how.to_string()),
                ("actor", s.map_or_else(String::new, |s| s.actor.clone())),
                ("time", s.map_or_else(String::new, |s| step_local(zone, s))),
            ],
        )
    };
    match i.hold {
        None => fill(
            part(lang, "measure"),
            &[
                ("action", r.action.clone()),
                ("outcome", r.outcome.clone()),
                ("rule", r.rule.clone()),
            ],
        ),
        Some(HoldState::Held) => end("measure_held", None, ""),
        Some(HoldState::Releasing) => end("measure_releasing", None, ""),
        Some(HoldState::Released) => {
            let s = ended("released");
            let how = s
                .and_then(|s| ReleaseAs::of_detail(&s.detail))
                .map_or("?", ReleaseAs::as_str);
            end("measure_released", s, how)
        }
        Some(HoldState::Dropped) => end("measure_dropped", ended("dropped"), ""),
        Some(HoldState::Expired) => end("measure_expired", ended("expired"), ""),
    }
}

/// Where the affected addresses are, if anywhere (section 9).
fn recipients(i: &Incident, kept: &Kept, zone: &jiff::tz::TimeZone, lang: Lang) -> String {
    let name = match (kept.addresses.is_empty(), kept.until, i.class) {
        (false, Some(_), _) => "recipients_kept",
        (false, None, _) => "recipients_held",
        (true, _, Class::Disclosed) => "recipients_gone",
        (true, _, _) => "recipients_none",
    };
    fill(
        part(lang, name),
        &[
            ("n", kept.addresses.len().to_string()),
            (
                "until",
                kept.until.map_or_else(String::new, |t| local(zone, t)),
            ),
            ("id", i.record.id.clone()),
        ],
    )
}

/// Section 0: the class, and for a disclosure the Art. 33 deadline and
/// how it stands at `now`.
fn class_section(i: &Incident, now: i64, zone: &jiff::tz::TimeZone, lang: Lang) -> String {
    let Some(d) = deadline(i) else {
        return part(lang, "prevented").to_string();
    };
    let head = fill(
        part(lang, "disclosed"),
        &[
            ("aware", local(zone, d - ART33_DEADLINE)),
            ("deadline", local(zone, d)),
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

/// Section 8's measures taken: the steps in the register, in time order
/// (the register lists them as written; a notice sent late is written
/// after a release that came first).
fn taken(steps: &[Step], zone: &jiff::tz::TimeZone, lang: Lang) -> String {
    let mut out = part(lang, "taken").to_string();
    for s in steps {
        out.push_str(&format!(
            "\n- {} {} ({}): {}",
            step_local(zone, s),
            s.step,
            s.actor,
            s.detail
        ));
    }
    out
}

/// The draft, as plain text (Markdown-friendly). `kept`: the affected
/// addresses the register keeps (the draft says where they are, never
/// which they are).
pub fn draft(
    cfg: &Config,
    i: &Incident,
    steps: &[Step],
    kept: &Kept,
    now: i64,
    lang: Lang,
) -> String {
    let r = &i.record;
    let c = &cfg.incidents.controller;
    let zone = &cfg.incidents.timezone;
    let mut steps = steps.to_vec();
    // Stable: steps of the same second stay in the order written.
    steps.sort_by_key(|s| step_time(s).unwrap_or(i64::MAX));
    let or_todo = |s: &str| if s.is_empty() { "[TODO]" } else { s }.to_string();
    let aware = i.disclosed_at.unwrap_or(i.recorded_at).max(i.recorded_at);
    let vars = [
        ("now", local(zone, now)),
        ("id", r.id.clone()),
        ("class", class_section(i, now, zone, lang)),
        ("authority", authority_section(cfg, lang)),
        ("controller", or_todo(&c.name)),
        ("address", or_todo(&c.address)),
        ("dpo", or_todo(&c.dpo)),
        ("reporting_person", or_todo(&c.reporting_person)),
        ("visible_external", r.visible_external.to_string()),
        (
            "n_external",
            counted(lang, "n_external", r.visible_external),
        ),
        ("n_domains", counted(lang, "n_domains", r.external_domains)),
        ("n_records", counted(lang, "n_records", r.visible_external)),
        (
            "n_others",
            counted(lang, "n_others", r.envelope_recipients.saturating_sub(1)),
        ),
        ("measure", measure(i, &steps, zone, lang)),
        ("recipients", recipients(i, kept, zone, lang)),
        (
            "sender",
            r.header_from.clone().unwrap_or_else(|| r.mail_from.clone()),
        ),
        ("subject", r.subject.clone().unwrap_or_default()),
        ("threshold", r.threshold.to_string()),
        ("sent", local(zone, i.disclosed_at.unwrap_or(i.recorded_at))),
        ("aware", local(zone, aware)),
        ("visible_internal", r.visible_internal.to_string()),
        ("display_names", r.display_names.to_string()),
        ("taken", taken(&steps, zone, lang)),
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

    const PARTS: [&str; 22] = [
        "disclosed",
        "overdue",
        "time_left",
        "prevented",
        "authority",
        "no_authority",
        "taken",
        "measure",
        "measure_held",
        "measure_releasing",
        "measure_released",
        "measure_dropped",
        "measure_expired",
        "recipients_kept",
        "recipients_held",
        "recipients_gone",
        "recipients_none",
        "n_external",
        "n_domains",
        "n_records",
        "n_others",
        "time_left",
    ];

    fn step(time: &str, actor: &str, name: &str, detail: &str) -> Step {
        Step {
            time: time.into(),
            actor: actor.into(),
            step: name.into(),
            detail: detail.into(),
        }
    }

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
                    &Kept::default(),
                    now,
                    lang,
                );
                assert!(!text.contains(['{', '}', '%', '|']), "{lang:?}:\n{text}");
            }
            let text = draft(
                &cfg,
                &incident(Class::Prevented, "Termine"),
                &[],
                &Kept::default(),
                0,
                lang,
            );
            assert!(!text.contains(['{', '}', '%', '|']), "{lang:?}:\n{text}");
        }
    }

    #[test]
    fn values_are_not_searched_for_placeholders() {
        let cfg = Config::from_yaml("upstream:\n  maildir: ./o\n", "t").unwrap();
        let i = incident(Class::Prevented, "Termine {id} {sender}");
        let text = draft(&cfg, &i, &[], &Kept::default(), 0, Lang::En);
        assert!(
            text.contains("- Subject: \"Termine {id} {sender}\"\n"),
            "{text}"
        );
        assert_eq!(fill("{a}{b}{", &[("a", "{b}".into())]), "{b}{b}{");
    }

    /// A hold released as the original: the draft says what finally
    /// happened, the steps in time order, in Berlin time with its offset,
    /// and where the affected addresses are.
    #[test]
    fn a_released_original_is_reported_as_it_ended_in_local_time() {
        let cfg = Config::from_yaml("upstream:\n  maildir: ./o\n", "t").unwrap();
        let mut i = incident(Class::Disclosed, "Absage");
        i.hold = Some(HoldState::Released);
        i.record.action = "hold".into();
        i.record.outcome = "held".into();
        i.record.external_domains = 1;
        // 2021-03-01T10:00:00Z: winter, CET.
        i.recorded_at = 1_614_592_800;
        i.disclosed_at = Some(1_614_592_800 + 7200);
        // Written in this order: the DPO's notice of the hold went out
        // late, after the release.
        let steps = [
            step(
                "2021-03-01T10:00:00Z",
                "bccguard",
                "recorded",
                "hold: over 10",
            ),
            step(
                "2021-03-01T12:00:00Z",
                "dpo-anna",
                "released",
                "as original: 250 ok",
            ),
            step(
                "2021-03-01T10:05:00Z",
                "bccguard",
                "notified",
                "to dpo@example.org",
            ),
        ];
        let kept = Kept {
            addresses: vec!["a@x.test".into(), "b@x.test".into()],
            until: Some(1_614_592_800 + 7200 + 30 * 86400),
        };
        let de = draft(&cfg, &i, &steps, &kept, 1_614_600_000, Lang::De);
        assert!(
            de.contains(
                "- Maßnahme des Guards: hold (Regel default), dann freigegeben als original durch dpo-anna am 2021-03-01 13:00:00 CET (UTC+01:00)\n"
            ),
            "{de}"
        );
        assert!(!de.contains("Ergebnis: held"), "{de}");
        assert!(de.contains("(aus 1 Domain)"), "{de}");
        // Released in the console: the same words (the step says where).
        let mut console = steps.clone();
        console[1].detail = "as original via console: 250 ok".into();
        let from_console = draft(&cfg, &i, &console, &kept, 1_614_600_000, Lang::De);
        assert!(
            from_console.contains("dann freigegeben als original durch dpo-anna am"),
            "{from_console}"
        );
        let (recorded, notified, released) = (
            de.find("11:00:00 CET (UTC+01:00) recorded").unwrap(),
            de.find("11:05:00 CET (UTC+01:00) notified").unwrap(),
            de.find("13:00:00 CET (UTC+01:00) released").unwrap(),
        );
        assert!(recorded < notified && notified < released, "{de}");
        assert!(
            de.contains("Die 2 betroffenen Adressen sind bis 2021-03-31 14:00:00 CEST (UTC+02:00) im Register")
                && de.contains("bccguard incident recipients "),
            "summer time by then:\n{de}"
        );
        assert!(!de.contains("a@x.test"), "never the addresses themselves");
        let en = draft(&cfg, &i, &steps, &kept, 1_614_600_000, Lang::En);
        assert!(
            en.contains(
                "then released as original by dpo-anna on 2021-03-01 13:00:00 CET (UTC+01:00)"
            ),
            "{en}"
        );
        assert!(en.contains("(in 1 domain)"), "{en}");
        // The zone is the admin's.
        let utc = Config::from_yaml(
            "upstream:\n  maildir: ./o\nincidents:\n  timezone: UTC\n",
            "t",
        )
        .unwrap();
        let en = draft(&utc, &i, &steps, &kept, 1_614_600_000, Lang::En);
        assert!(
            en.contains("on 2021-03-01 12:00:00 UTC (UTC+00:00)"),
            "{en}"
        );
    }

    #[test]
    fn the_draft_says_where_the_addresses_are_for_every_case() {
        let cfg = Config::from_yaml("upstream:\n  maildir: ./o\n", "t").unwrap();
        let held = Kept {
            addresses: vec!["a@x.test".into()],
            until: None,
        };
        let mut i = incident(Class::Prevented, "x");
        i.hold = Some(HoldState::Held);
        let de = draft(&cfg, &i, &[], &held, 0, Lang::De);
        assert!(
            de.contains("Solange die Nachricht zurückgehalten wird, stehen die 1 betroffenen"),
            "{de}"
        );
        assert!(
            de.contains("- Maßnahme des Guards: hold (Regel default): zurückgehalten"),
            "{de}"
        );
        i.hold = Some(HoldState::Dropped);
        let de = draft(
            &cfg,
            &i,
            &[step("2021-03-01T10:00:00Z", "dpo-anna", "dropped", "x")],
            &Kept::default(),
            0,
            Lang::De,
        );
        assert!(de.contains("Es wurde keine Adresse offengelegt"), "{de}");
        assert!(
            de.contains("dann gelöscht durch dpo-anna am 2021-03-01 11:00:00 CET"),
            "{de}"
        );
        let gone = draft(
            &cfg,
            &incident(Class::Disclosed, "x"),
            &[],
            &Kept::default(),
            0,
            Lang::En,
        );
        assert!(gone.contains("no longer kept"), "{gone}");
    }

    #[test]
    fn counts_take_the_right_number_in_both_languages() {
        assert_eq!(counted(Lang::De, "n_domains", 1), "1 Domain");
        assert_eq!(counted(Lang::De, "n_domains", 3), "3 Domains");
        assert_eq!(
            counted(Lang::De, "n_external", 1),
            "1 externen Empfängeradresse"
        );
        assert_eq!(counted(Lang::De, "n_others", 1), "1 weiteren Empfänger");
        assert_eq!(
            counted(Lang::De, "n_others", 1493),
            "1493 weiteren Empfängern"
        );
        assert_eq!(counted(Lang::En, "n_records", 1), "1 address");
        assert_eq!(counted(Lang::En, "n_records", 0), "0 addresses");
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
