//! Every word the console shows, in German and English, in one place (as
//! src/smtp/reply.rs holds the SMTP replies): a translator finds each
//! sentence here, and a page cannot show a text that has no translation.

use crate::templates::Lang;

/// A text of the console.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum W {
    Title,
    Overview,
    Held,
    Incidents,
    Logout,
    Login,
    User,
    Password,
    LoginFailed,
    LoginThrottled,
    LoggedOut,
    Waiting,
    Oldest,
    RetentionLeft,
    NothingWaiting,
    Disclosed,
    DeadlineLeft,
    Overdue,
    Done,
    NoDisclosed,
    LastWeek,
    Prevented,
    DisclosedClass,
    Allowed,
    Received,
    Sender,
    Subject,
    External,
    Domains,
    Rule,
    TimeLeft,
    Action,
    Class,
    State,
    Deadline,
    Filter,
    From,
    Until,
    Any,
    Export,
    Previous,
    Next,
    PageOf,
    Record,
    Steps,
    Who,
    When,
    What,
    Headers,
    ShowMessage,
    ReleaseBcc,
    ReleaseSplit,
    ReleaseOriginal,
    OriginalReason,
    OriginalConfirm,
    OriginalWarning,
    Drop,
    AddNote,
    Note,
    AuthorityNotified,
    PeopleInformed,
    Date,
    Reference,
    Save,
    Report,
    Print,
    RecipientsCsv,
    ViewerOnly,
    Forbidden,
    NotFound,
    BadRequest,
    Decided,
    Language,
    SenderTitle,
    SenderIntro,
    SenderBcc,
    SenderSplit,
    SenderDiscard,
    SenderDone,
    LinkInvalid,
    LinkExpired,
    NoLongerHeld,
}

/// The text of `w` in `lang`.
pub fn w(lang: Lang, w: W) -> &'static str {
    let (de, en) = match w {
        W::Title => (
            "bccguard: Konsole der/des Datenschutzbeauftragten",
            "bccguard: the DPO console",
        ),
        W::Overview => ("Übersicht", "Overview"),
        W::Held => ("Zurückgehalten", "Held mail"),
        W::Incidents => ("Vorfallsregister", "Incident register"),
        W::Logout => ("Abmelden", "Log out"),
        W::Login => ("Anmelden", "Log in"),
        W::User => ("Benutzer", "User"),
        W::Password => ("Passwort", "Password"),
        W::LoginFailed => ("Benutzer oder Passwort falsch.", "Wrong user or password."),
        W::LoginThrottled => (
            "Zu viele Fehlversuche. Bitte später erneut versuchen.",
            "Too many failed attempts. Please try again later.",
        ),
        W::LoggedOut => ("Abgemeldet.", "Logged out."),
        W::Waiting => ("Warten auf Entscheidung", "Waiting for a decision"),
        W::Oldest => ("älteste seit", "oldest since"),
        W::RetentionLeft => ("gelöscht in", "deleted in"),
        W::NothingWaiting => ("Keine Nachricht wartet.", "No mail is waiting."),
        W::Disclosed => (
            "Offengelegt: Meldefrist Art. 33",
            "Disclosed: Art. 33 deadline",
        ),
        W::DeadlineLeft => ("verbleibend", "left"),
        W::Overdue => ("Frist überschritten", "overdue"),
        W::Done => ("erledigt", "done"),
        W::NoDisclosed => ("Keine offengelegten Vorfälle.", "No disclosed incidents."),
        W::LastWeek => ("Letzte 7 Tage", "Last 7 days"),
        W::Prevented => ("verhindert", "prevented"),
        W::DisclosedClass => ("offengelegt", "disclosed"),
        W::Allowed => ("erlaubt (Gruppe)", "allowed (group)"),
        W::Received => ("Eingang", "Received"),
        W::Sender => ("Absender", "Sender"),
        W::Subject => ("Betreff", "Subject"),
        W::External => ("Extern", "External"),
        W::Domains => ("Domains", "Domains"),
        W::Rule => ("Regel", "Rule"),
        W::TimeLeft => ("verbleibend", "time left"),
        W::Action => ("Maßnahme", "Action"),
        W::Class => ("Einstufung", "Class"),
        W::State => ("Zustand", "State"),
        W::Deadline => ("Frist (Art. 33)", "Deadline (Art. 33)"),
        W::Filter => ("Filtern", "Filter"),
        W::From => ("von", "from"),
        W::Until => ("bis", "until"),
        W::Any => ("alle", "any"),
        W::Export => (
            "Als CSV exportieren (Art. 33 Abs. 5)",
            "Export as CSV (Art. 33(5))",
        ),
        W::Previous => ("Zurück", "Previous"),
        W::Next => ("Weiter", "Next"),
        W::PageOf => ("Seite", "Page"),
        W::Record => ("Vorfall", "Incident"),
        W::Steps => ("Verlauf", "Timeline"),
        W::Who => ("Wer", "Who"),
        W::When => ("Wann", "When"),
        W::What => ("Was", "What"),
        W::Headers => ("Kopfzeilen wie zurückgehalten", "Header section as held"),
        W::ShowMessage => ("Nachricht anzeigen", "Show the message"),
        W::ReleaseBcc => ("Als Bcc senden", "Send as Bcc"),
        W::ReleaseSplit => ("Als Einzelnachrichten senden", "Send as separate copies"),
        W::ReleaseOriginal => (
            "Unverändert senden (offener Verteiler)",
            "Send unchanged (open list)",
        ),
        W::OriginalReason => ("Begründung (Pflicht)", "Reason (required)"),
        W::OriginalConfirm => (
            "Ich bestätige: alle Empfänger dürfen die Adressen aller anderen sehen.",
            "I confirm: every recipient may see every other recipient's address.",
        ),
        W::OriginalWarning => (
            "Unverändert gesendet ist das eine Offenlegung: die 72-Stunden-Frist des Art. 33 beginnt.",
            "Sent unchanged, this is a disclosure: the 72 hours of Art. 33 start.",
        ),
        W::Drop => (
            "Löschen (Absender wird informiert)",
            "Delete (the sender is told)",
        ),
        W::AddNote => ("Notiz hinzufügen", "Add a note"),
        W::Note => ("Notiz", "Note"),
        W::AuthorityNotified => (
            "Aufsichtsbehörde gemeldet (Art. 33)",
            "Authority notified (Art. 33)",
        ),
        W::PeopleInformed => (
            "Betroffene benachrichtigt (Art. 34)",
            "People informed (Art. 34)",
        ),
        W::Date => ("Datum", "Date"),
        W::Reference => ("Aktenzeichen", "Reference"),
        W::Save => ("Speichern", "Save"),
        W::Report => (
            "Entwurf der Meldung (Art. 33)",
            "Draft notification (Art. 33)",
        ),
        W::Print => ("Drucken", "Print"),
        W::RecipientsCsv => ("Betroffene Adressen (CSV)", "Affected addresses (CSV)"),
        W::ViewerOnly => (
            "Nur Lesen: Entscheidungen trifft die Rolle dpo.",
            "Read only: decisions are for the dpo role.",
        ),
        W::Forbidden => ("Nicht erlaubt.", "Not allowed."),
        W::NotFound => ("Nicht gefunden.", "Not found."),
        W::BadRequest => ("Ungültige Anfrage.", "Invalid request."),
        W::Decided => ("Erledigt.", "Done."),
        W::Language => ("English", "Deutsch"),
        W::SenderTitle => ("Ihre zurückgehaltene Nachricht", "Your held message"),
        W::SenderIntro => (
            "Diese Nachricht zeigte jedem Empfänger die Adressen aller anderen und wurde deshalb nicht versendet. Sie können sie so senden, dass niemand die anderen Adressen sieht, oder verwerfen.",
            "This message showed every recipient the addresses of all the others, so it was not sent. You can send it so that nobody sees the other addresses, or discard it.",
        ),
        W::SenderBcc => (
            "Mit verborgenen Empfängern (Bcc) senden",
            "Send with the recipients hidden (Bcc)",
        ),
        W::SenderSplit => ("Als einzelne Kopien senden", "Send as separate copies"),
        W::SenderDiscard => ("Verwerfen", "Discard"),
        W::SenderDone => ("Erledigt. Vielen Dank.", "Done. Thank you."),
        W::LinkInvalid => ("Dieser Link ist nicht gültig.", "This link is not valid."),
        W::LinkExpired => ("Dieser Link ist abgelaufen.", "This link has expired."),
        W::NoLongerHeld => (
            "Über diese Nachricht ist bereits entschieden.",
            "This message has already been decided on.",
        ),
    };
    match lang {
        Lang::De => de,
        Lang::En => en,
    }
}

/// The language a browser asks for (`Accept-Language`, RFC 9110 12.5.4):
/// the first of de/en by quality; German when it names neither, since the
/// guard is made for German offices.
pub fn negotiate(accept_language: Option<&str>) -> Lang {
    let Some(header) = accept_language else {
        return Lang::De;
    };
    let mut best: Option<(f32, Lang)> = None;
    for item in header.split(',') {
        let mut parts = item.split(';');
        let tag = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let q = parts
            .find_map(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .and_then(|q| q.parse::<f32>().ok())
            })
            .unwrap_or(1.0);
        let lang = match tag.split('-').next() {
            Some("de") => Lang::De,
            Some("en") => Lang::En,
            _ => continue,
        };
        if q > 0.0 && best.is_none_or(|(b, _)| q > b) {
            best = Some((q, lang));
        }
    }
    best.map_or(Lang::De, |(_, l)| l)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_browsers_language_is_chosen_by_quality() {
        assert_eq!(negotiate(None), Lang::De);
        assert_eq!(negotiate(Some("en-US,en;q=0.9")), Lang::En);
        assert_eq!(negotiate(Some("fr-FR,en;q=0.5,de;q=0.8")), Lang::De);
        assert_eq!(negotiate(Some("de-DE;q=0, en;q=0.1")), Lang::En);
        assert_eq!(negotiate(Some("fr")), Lang::De);
    }

    #[test]
    fn every_text_differs_by_language_or_is_a_name() {
        // A word the same in both is fine ("Domains"); an empty one is not.
        for w in [W::Title, W::OriginalWarning, W::Language] {
            assert!(
                !super::w(Lang::De, w).is_empty() && super::w(Lang::De, w) != super::w(Lang::En, w)
            );
        }
    }
}
