//! `bccguard incident report ID`: a draft notification of a personal data
//! breach that answers the usual Art. 33 form of the German supervisory
//! authorities, in German or English, and the built-in directory of those
//! authorities (`incidents.authority`).
//!
//! Pure: an incident, its steps and the configuration in, text out. The
//! draft fills in what the guard knows (what, when, how many, which
//! measure) and marks with `[TODO]` what only people can judge (the
//! context of the mail, the risk, whether to tell the people affected).

use std::fmt::Write as _;

use crate::config::Config;
use crate::notify::{Lang, deadline, rfc3339};
use crate::store::{Class, Incident, Step};

/// A supervisory authority.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Authority {
    /// `incidents.authority` code: the Land's ISO 3166-2:DE suffix, `BUND`
    /// for the federal authority, `BY-PUBLIC` for Bavaria's public bodies.
    pub code: &'static str,
    /// Name.
    pub name: &'static str,
    /// Postal address, lines separated by `\n`.
    pub postal: &'static str,
    /// E-mail address of the general mailbox.
    pub email: &'static str,
    /// Website.
    pub web: &'static str,
}

/// When the directory was compiled: from each authority's published
/// contact page, cross-checked with the open directory of the
/// datenanfragen.de project. Addresses change; verify before sending.
pub const DIRECTORY_DATE: &str = "2026-11-22";

const fn a(
    code: &'static str,
    name: &'static str,
    postal: &'static str,
    email: &'static str,
    web: &'static str,
) -> Authority {
    Authority {
        code,
        name,
        postal,
        email,
        web,
    }
}

/// The 16 Länder authorities, Bavaria's second one for public bodies, and
/// the federal authority.
pub const AUTHORITIES: [Authority; 18] = [
    a(
        "BW",
        "Der Landesbeauftragte für den Datenschutz und die Informationsfreiheit Baden-Württemberg",
        "Postfach 10 29 32\n70025 Stuttgart",
        "poststelle@lfdi.bwl.de",
        "https://www.baden-wuerttemberg.datenschutz.de",
    ),
    a(
        "BY",
        "Bayerisches Landesamt für Datenschutzaufsicht (BayLDA), for non-public bodies",
        "Promenade 18\n91522 Ansbach",
        "poststelle@lda.bayern.de",
        "https://www.lda.bayern.de",
    ),
    a(
        "BY-PUBLIC",
        "Der Bayerische Landesbeauftragte für den Datenschutz (BayLfD), for Bavarian public bodies",
        "Postfach 22 12 19\n80502 München",
        "poststelle@datenschutz-bayern.de",
        "https://www.datenschutz-bayern.de",
    ),
    a(
        "BE",
        "Berliner Beauftragte für Datenschutz und Informationsfreiheit",
        "Alt-Moabit 59-61\n10555 Berlin",
        "mailbox@datenschutz-berlin.de",
        "https://www.datenschutz-berlin.de",
    ),
    a(
        "BB",
        "Die Landesbeauftragte für den Datenschutz und für das Recht auf Akteneinsicht Brandenburg",
        "Stahnsdorfer Damm 77\n14532 Kleinmachnow",
        "poststelle@lda.brandenburg.de",
        "https://www.lda.brandenburg.de",
    ),
    a(
        "HB",
        "Die Landesbeauftragte für Datenschutz und Informationsfreiheit der Freien Hansestadt Bremen",
        "Arndtstraße 1\n27570 Bremerhaven",
        "office@datenschutz.bremen.de",
        "https://www.datenschutz.bremen.de",
    ),
    a(
        "HH",
        "Der Hamburgische Beauftragte für Datenschutz und Informationsfreiheit",
        "Kurt-Schumacher-Allee 4\n20097 Hamburg",
        "mailbox@datenschutz.hamburg.de",
        "https://datenschutz-hamburg.de",
    ),
    a(
        "HE",
        "Der Hessische Beauftragte für Datenschutz und Informationsfreiheit",
        "Postfach 31 63\n65021 Wiesbaden",
        "poststelle@datenschutz.hessen.de",
        "https://datenschutz.hessen.de",
    ),
    a(
        "MV",
        "Der Landesbeauftragte für Datenschutz und Informationsfreiheit Mecklenburg-Vorpommern",
        "Schloss Schwerin\nLennéstraße 1\n19053 Schwerin",
        "info@datenschutz-mv.de",
        "https://www.datenschutz-mv.de",
    ),
    a(
        "NI",
        "Die Landesbeauftragte für den Datenschutz Niedersachsen",
        "Postfach 2 21\n30002 Hannover",
        "poststelle@lfd.niedersachsen.de",
        "https://www.lfd.niedersachsen.de",
    ),
    a(
        "NW",
        "Landesbeauftragte für Datenschutz und Informationsfreiheit Nordrhein-Westfalen (LDI NRW)",
        "Postfach 20 04 44\n40102 Düsseldorf",
        "poststelle@ldi.nrw.de",
        "https://www.ldi.nrw.de",
    ),
    a(
        "RP",
        "Der Landesbeauftragte für den Datenschutz und die Informationsfreiheit Rheinland-Pfalz",
        "Postfach 30 40\n55020 Mainz",
        "poststelle@datenschutz.rlp.de",
        "https://www.datenschutz.rlp.de",
    ),
    a(
        "SL",
        "Unabhängiges Datenschutzzentrum Saarland",
        "Fritz-Dobisch-Straße 12\n66111 Saarbrücken",
        "poststelle@datenschutz.saarland.de",
        "https://www.datenschutz.saarland.de",
    ),
    a(
        "SN",
        "Die Sächsische Datenschutz- und Transparenzbeauftragte",
        "Postfach 12 00 16\n01001 Dresden",
        "saechsdsb@slt.sachsen.de",
        "https://www.datenschutz.sachsen.de",
    ),
    a(
        "ST",
        "Landesbeauftragter für den Datenschutz Sachsen-Anhalt",
        "Postfach 19 47\n39009 Magdeburg",
        "poststelle@lfd.sachsen-anhalt.de",
        "https://datenschutz.sachsen-anhalt.de",
    ),
    a(
        "SH",
        "Unabhängiges Landeszentrum für Datenschutz Schleswig-Holstein (ULD)",
        "Postfach 71 16\n24171 Kiel",
        "mail@datenschutzzentrum.de",
        "https://www.datenschutzzentrum.de",
    ),
    a(
        "TH",
        "Thüringer Landesbeauftragter für den Datenschutz und die Informationsfreiheit",
        "Postfach 90 04 55\n99107 Erfurt",
        "poststelle@datenschutz.thueringen.de",
        "https://www.tlfdi.de",
    ),
    a(
        "BUND",
        "Die Bundesbeauftragte für den Datenschutz und die Informationsfreiheit (BfDI)",
        "Graurheindorfer Straße 153\n53117 Bonn",
        "poststelle@bfdi.bund.de",
        "https://www.bfdi.bund.de",
    ),
];

/// Looks an authority up by code (case-insensitive; `NRW` for `NW`).
pub fn authority(code: &str) -> Option<&'static Authority> {
    let code = code.trim().to_ascii_uppercase();
    let code = if code == "NRW" {
        "NW".to_string()
    } else {
        code
    };
    AUTHORITIES.iter().find(|a| a.code == code)
}

/// Where the BfDI is competent instead of the Land's authority.
fn bfdi_note(lang: Lang) -> &'static str {
    match lang {
        Lang::De => {
            "Hinweis: Zuständig ist statt der Landesbehörde die BfDI (incidents.authority: BUND) für öffentliche Stellen des Bundes (§ 9 BDSG) und für Unternehmen, soweit sie Telekommunikationsdienste (§ 29 TDDDG) oder Postdienste (PostG) erbringen. Bayerische öffentliche Stellen melden dem BayLfD (BY-PUBLIC), nicht dem BayLDA."
        }
        Lang::En => {
            "Note: the federal authority (BfDI, incidents.authority: BUND) is competent instead of the Land's authority for federal public bodies (§ 9 BDSG) and for companies as far as they provide telecommunications services (§ 29 TDDDG) or postal services (PostG). Bavarian public bodies report to the BayLfD (BY-PUBLIC), not the BayLDA."
        }
    }
}

/// The draft, as plain text (Markdown-friendly).
pub fn draft(cfg: &Config, i: &Incident, steps: &[Step], now: i64, lang: Lang) -> String {
    let de = lang == Lang::De;
    let tr = |d: &'static str, e: &'static str| if de { d } else { e };
    let r = &i.record;
    let todo = "[TODO]";
    let or_todo = |s: &str| {
        if s.is_empty() {
            todo.to_string()
        } else {
            s.to_string()
        }
    };
    let mut o = String::new();
    let _ = writeln!(
        o,
        "{}",
        tr(
            "# ENTWURF: Meldung einer Verletzung des Schutzes personenbezogener Daten (Art. 33 DSGVO)",
            "# DRAFT: notification of a personal data breach (GDPR Art. 33)",
        )
    );
    let _ = writeln!(
        o,
        "{} {} ({}: {}). {}\n",
        tr("Erstellt von bccguard am", "Generated by bccguard on"),
        rfc3339(now),
        tr("Vorfall", "incident"),
        r.id,
        tr(
            "Alle mit [TODO] markierten Punkte prüfen und ergänzen, bevor die Meldung abgeht; die meisten Behörden bieten dafür ein Online-Formular an, dessen Fragen dieser Entwurf beantwortet.",
            "Check and complete every item marked [TODO] before sending; most authorities offer an online form whose questions this draft answers.",
        )
    );

    let _ = writeln!(
        o,
        "## 0. {}",
        tr("Einstufung und Frist", "Class and deadline")
    );
    match deadline(i) {
        Some(d) => {
            let aware = d - crate::notify::ART33_DEADLINE;
            let _ = writeln!(
                o,
                "- {}: disclosed ({})",
                tr("Einstufung", "Class"),
                tr(
                    "personenbezogene Daten wurden offengelegt",
                    "personal data was disclosed"
                )
            );
            let _ = writeln!(
                o,
                "- {}: {}",
                tr("Kenntnis des Verantwortlichen", "Controller aware since"),
                rfc3339(aware)
            );
            let _ = writeln!(
                o,
                "- {}: **{}** ({})",
                tr("Frist", "Deadline"),
                rfc3339(d),
                tr(
                    "Kenntnis + 72 Stunden, Art. 33 Abs. 1",
                    "awareness + 72 hours, Art. 33(1)"
                )
            );
            if now > d {
                let _ = writeln!(
                    o,
                    "- {} {}",
                    tr(
                        "Frist überschritten: die Meldung muss die Gründe für die Verzögerung nennen (Art. 33 Abs. 1 Satz 2).",
                        "Deadline passed: the notification must give the reasons for the delay (Art. 33(1), second sentence)."
                    ),
                    todo
                );
            } else {
                let _ = writeln!(
                    o,
                    "- {}: {} h",
                    tr("Verbleibend", "Time left"),
                    (d - now) / 3600
                );
            }
        }
        None => {
            let _ = writeln!(
                o,
                "- {}: prevented. {}",
                tr("Einstufung", "Class"),
                tr(
                    "Der Guard hat die Offenlegung verhindert; voraussichtlich kein Risiko für die Betroffenen, daher keine Meldepflicht (Art. 33 Abs. 1). Der Vorfall ist dennoch zu dokumentieren (Art. 33 Abs. 5): dieser Entwurf kann dafür dienen.",
                    "The guard prevented the disclosure; unlikely to result in a risk to the people concerned, so no notification is due (Art. 33(1)). It must still be documented (Art. 33(5)): this draft can serve for that.",
                )
            );
        }
    }

    let _ = writeln!(
        o,
        "\n## 1. {}",
        tr(
            "Zuständige Aufsichtsbehörde",
            "Competent supervisory authority"
        )
    );
    match cfg.incidents.authority {
        Some(a) => {
            let _ = writeln!(
                o,
                "{}\n{}\n{}: {}\n{}",
                a.name,
                a.postal,
                tr("E-Mail", "E-mail"),
                a.email,
                a.web
            );
            let _ = writeln!(
                o,
                "({} {DIRECTORY_DATE}; {})",
                tr(
                    "Verzeichnis von bccguard, Stand",
                    "bccguard's directory as of"
                ),
                tr("vor dem Versand prüfen", "verify before sending")
            );
        }
        None => {
            let _ = writeln!(
                o,
                "{todo} {}",
                tr(
                    "incidents.authority in policy.yaml setzen (z. B. NW).",
                    "set incidents.authority in policy.yaml (e.g. NW)."
                )
            );
        }
    }
    let _ = writeln!(o, "{}", bfdi_note(lang));

    let c = &cfg.incidents.controller;
    let _ = writeln!(
        o,
        "\n## 2. {}",
        tr(
            "Verantwortlicher und meldende Person (Art. 33 Abs. 3 lit. b)",
            "Controller and reporting person (Art. 33(3)(b))"
        )
    );
    let _ = writeln!(
        o,
        "- {}: {}",
        tr("Verantwortlicher", "Controller"),
        or_todo(&c.name)
    );
    let _ = writeln!(
        o,
        "- {}: {}",
        tr("Anschrift", "Address"),
        or_todo(&c.address)
    );
    let _ = writeln!(
        o,
        "- {}: {}",
        tr("Datenschutzbeauftragte(r)", "Data protection officer"),
        or_todo(&c.dpo)
    );
    let _ = writeln!(
        o,
        "- {}: {}",
        tr("Meldende Person", "Reporting person"),
        or_todo(&c.reporting_person)
    );
    let _ = writeln!(
        o,
        "- {}: {} {todo}",
        tr("Art der Meldung", "Type of report"),
        tr(
            "Erstmeldung (Nachmeldung möglich, Art. 33 Abs. 4)",
            "initial report (further information may follow, Art. 33(4))"
        )
    );

    let sender = r.header_from.clone().unwrap_or_else(|| r.mail_from.clone());
    let subject = r.subject.clone().unwrap_or_default();
    let _ = writeln!(
        o,
        "\n## 3. {}",
        tr(
            "Was ist geschehen (Art. 33 Abs. 3 lit. a)",
            "What happened (Art. 33(3)(a))"
        )
    );
    let _ = writeln!(
        o,
        "{}",
        if de {
            format!(
                "Eine E-Mail mit {} externen Empfängeradressen (aus {} Domains) für jeden Empfänger sichtbar in den Adresszeilen (\"offener Verteiler\"): jeder Empfänger kann die Adressen aller anderen sehen. Art: Verletzung der Vertraulichkeit (unbefugte Offenlegung), Fehlversand durch eine Person, kein Angriff.",
                r.visible_external, r.external_domains
            )
        } else {
            format!(
                "An e-mail with {} external recipient addresses (in {} domains) visible to every recipient in its address headers (an \"open distribution list\"): every recipient can see the addresses of all the others. Type: breach of confidentiality (unauthorised disclosure), a human error in sending, not an attack.",
                r.visible_external, r.external_domains
            )
        }
    );
    let _ = writeln!(o, "- {}: {sender}", tr("Absender", "Sender"));
    let _ = writeln!(o, "- {}: \"{subject}\"", tr("Betreff", "Subject"));
    let _ = writeln!(
        o,
        "- {}: {} ({}: {}, {} {})",
        tr("Maßnahme des Guards", "The guard's action"),
        r.action,
        tr("Ergebnis", "outcome"),
        r.outcome,
        tr("Regel", "rule"),
        r.rule
    );
    let _ = writeln!(o, "- {}: {}", tr("Schwelle", "Threshold"), r.threshold);

    let _ = writeln!(o, "\n## 4. {}", tr("Zeitpunkte", "Times"));
    let _ = writeln!(
        o,
        "- {}: {}",
        tr("Vorfall (Versand)", "Incident (sending)"),
        i.disclosed_at.map_or(r.time.clone(), rfc3339)
    );
    let _ = writeln!(
        o,
        "- {}: {} ({})",
        tr("Kenntnis", "Awareness"),
        rfc3339(i.disclosed_at.unwrap_or(i.recorded_at).max(i.recorded_at)),
        tr(
            "automatisch erkannt durch den Ausgangs-Mail-Guard",
            "detected automatically by the outbound-mail guard"
        )
    );

    let _ = writeln!(
        o,
        "\n## 5. {}",
        tr(
            "Kategorien personenbezogener Daten",
            "Categories of personal data"
        )
    );
    let _ = writeln!(
        o,
        "- {}: {} {}, {} {}",
        tr("E-Mail-Adressen", "E-mail addresses"),
        r.visible_external,
        tr("extern", "external"),
        r.visible_internal,
        tr("intern", "internal")
    );
    let _ = writeln!(
        o,
        "- {}: {}",
        tr(
            "Namen (Anzeigenamen sichtbar bei)",
            "Names (display names visible for)"
        ),
        r.display_names
    );
    let _ = writeln!(
        o,
        "- {todo} {}",
        tr(
            "Lässt der Zusammenhang (Betreff, Absender, Inhalt) mehr erkennen, z. B. dass alle Empfänger Patienten, Mandanten, Bewerber sind? Dann ggf. besondere Kategorien (Art. 9).",
            "Does the context (subject, sender, content) reveal more, e.g. that all recipients are patients, clients, applicants? Then possibly special categories (Art. 9)."
        )
    );

    let _ = writeln!(
        o,
        "\n## 6. {}",
        tr(
            "Betroffene Personen: Kategorien und ungefähre Zahl",
            "People concerned: categories and approximate number"
        )
    );
    let _ = writeln!(
        o,
        "- {}: {} {todo}",
        tr("Zahl", "Number"),
        if de {
            format!(
                "ca. {} (die externen Empfänger, deren Adressen sichtbar waren)",
                r.visible_external
            )
        } else {
            format!(
                "about {} (the external recipients whose addresses were visible)",
                r.visible_external
            )
        }
    );
    let _ = writeln!(
        o,
        "- {}: {} {}",
        tr("Datensätze", "Records"),
        r.visible_external,
        if de {
            format!(
                "Adressen, jede offengelegt gegenüber bis zu {} weiteren Empfängern",
                r.envelope_recipients.saturating_sub(1)
            )
        } else {
            format!(
                "addresses, each disclosed to up to {} other recipients",
                r.envelope_recipients.saturating_sub(1)
            )
        }
    );
    let _ = writeln!(
        o,
        "- {}: {todo}",
        tr(
            "Kategorie (Kunden, Patienten, Mitglieder, Beschäftigte ...)",
            "Category (customers, patients, members, employees ...)"
        )
    );

    let _ = writeln!(
        o,
        "\n## 7. {}",
        tr(
            "Wahrscheinliche Folgen (Art. 33 Abs. 3 lit. c)",
            "Likely consequences (Art. 33(3)(c))"
        )
    );
    let _ = writeln!(
        o,
        "{}",
        tr(
            "- Die Empfänger erfahren, wer noch zum Kreis gehört (z. B. wer Patient oder Kunde ist).\n- Die Adressen können für Spam, Phishing und Social Engineering genutzt werden.\n- Je nach Zusammenhang: Bloßstellung, Diskriminierung, Rufschaden.\n- [TODO] Risikobewertung: gering / Risiko / hohes Risiko.",
            "- The recipients learn who else belongs to the group (e.g. who is a patient or customer).\n- The addresses can be used for spam, phishing and social engineering.\n- Depending on the context: exposure, discrimination, damage to reputation.\n- [TODO] Risk assessment: low / risk / high risk.",
        )
    );

    let _ = writeln!(
        o,
        "\n## 8. {}",
        tr(
            "Ergriffene und geplante Maßnahmen (Art. 33 Abs. 3 lit. d)",
            "Measures taken and proposed (Art. 33(3)(d))"
        )
    );
    let _ = writeln!(
        o,
        "{}",
        tr(
            "Ergriffen (aus dem Vorfallverzeichnis des Guards):",
            "Taken (from the guard's incident register):"
        )
    );
    for s in steps {
        let _ = writeln!(o, "- {} {} ({}): {}", s.time, s.step, s.actor, s.detail);
    }
    let _ = writeln!(
        o,
        "{}",
        tr(
            "Geplant [TODO]:\n- Empfänger bitten, die Nachricht zu löschen und die Adressen nicht zu verwenden.\n- Für diesen Absender policy.action bcc, split oder hold setzen (Regel in policy.yaml).\n- Die Beschäftigten erneut unterweisen.",
            "Proposed [TODO]:\n- Ask the recipients to delete the message and not to use the addresses.\n- Set policy.action to bcc, split or hold for this sender (a rule in policy.yaml).\n- Instruct the staff again.",
        )
    );

    let _ = writeln!(
        o,
        "\n## 9. {}",
        tr(
            "Benachrichtigung der Betroffenen (Art. 34)",
            "Communication to the people concerned (Art. 34)"
        )
    );
    let _ = writeln!(
        o,
        "{}",
        tr(
            "Erforderlich bei voraussichtlich hohem Risiko (Art. 34 Abs. 1), nicht wenn Art. 34 Abs. 3 greift. Wenn ja: jede Person einzeln benachrichtigen, nie wieder mit offenem Verteiler (über den Guard mit action: split), mit Art der Verletzung, Kontakt der/des DSB, wahrscheinlichen Folgen und Maßnahmen (Art. 34 Abs. 2). Entscheidung: [TODO]",
            "Required when the risk is likely to be high (Art. 34(1)), not when Art. 34(3) applies. If so: tell each person individually, never again in an open list (send it through the guard with action: split), with the nature of the breach, the DPO's contact, the likely consequences and the measures (Art. 34(2)). Decision: [TODO]",
        )
    );
    let _ = writeln!(
        o,
        "\n{}",
        tr(
            "Die Empfängeradressen stehen bewusst nicht in diesem Entwurf; der Verantwortliche kann sie der Behörde auf Anfrage nennen.",
            "The recipient addresses are deliberately not in this draft; the controller can give them to the authority on request.",
        )
    );
    o
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
