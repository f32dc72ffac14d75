//! The texts of the guard's own mails and of its policy replies, in German
//! and English, and their overrides: a file `<name>.<lang>.txt` in
//! `incidents.templates` (for a mail: first line `Subject: ...`, an empty
//! line, the body; for a reply, `reply_*`: its lines) replaces the built-in
//! text. The built-in texts are files of the same format,
//! `src/templates/<name>.<lang>.txt`, embedded at build time. Placeholders
//! are `{name}`; an unknown one in an override is a configuration error,
//! so a typo is found by `bccguard check`, not by the DPO reading
//! `{sbject}` in an incident mail.
//!
//! A leaf: the configuration validates overrides against it, the notifier
//! renders it, and the Art. 33 report speaks its [`Lang`].
//!
//! No template has a placeholder for recipient addresses: a notice about
//! an open distribution list must not become a second copy of it.

use std::collections::HashMap;
use std::path::Path;

/// A language of the guard's texts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lang {
    /// Deutsch.
    De,
    /// English.
    En,
}

impl Lang {
    /// `de` / `en`.
    pub fn parse(s: &str) -> Option<Lang> {
        match s.trim().to_ascii_lowercase().as_str() {
            "de" => Some(Lang::De),
            "en" => Some(Lang::En),
            _ => None,
        }
    }
}

/// Every template, by name: the mails, then the SMTP replies (`reply_*`).
pub const NAMES: [&str; 17] = [
    "dpo",
    "dpo_digest",
    "sender_hold",
    "sender_bcc",
    "sender_split",
    "sender_released",
    "sender_dropped",
    "sender_expired",
    "reply_reject",
    "reply_reject_domains",
    "reply_hold",
    "reply_signed",
    "reply_unsafe_attached",
    "reply_unsafe_left",
    "reply_informed",
    "reply_recorded",
    "reply_unrecorded",
];

/// The languages of the clerk-facing policy replies
/// (`policy.reply_language`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReplyLanguage {
    /// German only.
    De,
    /// English only.
    En,
    /// German first, then English: the default, for German offices whose
    /// mail also reaches people who read no German.
    #[default]
    Both,
}

impl ReplyLanguage {
    /// The languages, in the order the reply shows them.
    pub fn langs(self) -> &'static [Lang] {
        match self {
            ReplyLanguage::De => &[Lang::De],
            ReplyLanguage::En => &[Lang::En],
            ReplyLanguage::Both => &[Lang::De, Lang::En],
        }
    }
}

/// Every placeholder a template may use.
pub const PLACEHOLDERS: [&str; 28] = [
    "id",
    "time",
    "class",
    "class_text",
    "action",
    "outcome",
    "rule",
    "threshold",
    "trigger",
    "sender",
    "subject",
    "visible_external",
    "external_domains",
    "visible_seen",
    "envelope_recipients",
    "client_ip",
    "auth_user",
    "next_steps",
    "count",
    "list",
    "actor",
    "how",
    "retention",
    "hostname",
    "places",
    "header",
    "told",
    "release_link",
];

/// One template: a subject line and a body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    /// The Subject, with placeholders.
    pub subject: String,
    /// The body, with placeholders.
    pub body: String,
}

/// The overrides in force (built-ins fill the rest).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Templates {
    overrides: HashMap<(String, Lang), Template>,
}

impl Templates {
    /// Reads every `<name>.<lang>.txt` in `dir`; errors name the file.
    pub fn load(dir: &Path) -> Result<Templates, Vec<(String, String)>> {
        let mut problems = Vec::new();
        let mut overrides = HashMap::new();
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) => return Err(vec![(dir.display().to_string(), e.to_string())]),
        };
        for entry in entries.flatten() {
            let file = entry.file_name().to_string_lossy().into_owned();
            let Some(stem) = file.strip_suffix(".txt") else {
                continue;
            };
            let Some((name, lang)) = stem.rsplit_once('.') else {
                problems.push((file, "expected <name>.<lang>.txt, e.g. dpo.en.txt".into()));
                continue;
            };
            let (Some(lang), true) = (Lang::parse(lang), NAMES.contains(&name)) else {
                problems.push((
                    file,
                    format!(
                        "unknown template or language; names: {}; languages: de, en",
                        NAMES.join(", ")
                    ),
                ));
                continue;
            };
            match std::fs::read_to_string(entry.path())
                .map_err(TemplateError::from)
                .and_then(|text| parse(name, &text))
            {
                Ok(t) => {
                    overrides.insert((name.to_string(), lang), t);
                }
                Err(e) => problems.push((file, e.to_string())),
            }
        }
        if problems.is_empty() {
            Ok(Templates { overrides })
        } else {
            Err(problems)
        }
    }

    /// The template `name` in `lang`: the override, else the built-in.
    pub fn get(&self, name: &str, lang: Lang) -> Template {
        self.overrides
            .get(&(name.to_string(), lang))
            .cloned()
            .unwrap_or_else(|| builtin(name, lang))
    }
}

/// Why an override file is not a template (shown after its file name by
/// `bccguard check`).
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// The file could not be read.
    #[error(transparent)]
    Read(#[from] std::io::Error),
    /// The first line is not the subject.
    #[error("the first line must be \"Subject: ...\"")]
    NoSubject,
    /// A reply template with a subject: a reply has none.
    #[error("a reply template has no \"Subject:\" line, only the reply's lines")]
    SubjectInReply,
    /// A `{name}` no notice fills (a typo, most likely).
    #[error("unknown placeholder {{{0}}}; known: {known}", known = PLACEHOLDERS.join(", "))]
    UnknownPlaceholder(String),
}

/// `Subject: ...`, an empty line, the body (a reply template: its lines,
/// no subject); only known placeholders.
fn parse(name: &str, text: &str) -> Result<Template, TemplateError> {
    let text = text.replace("\r\n", "\n");
    let (subject, body) = if is_reply(name) {
        if text.starts_with("Subject:") {
            return Err(TemplateError::SubjectInReply);
        }
        (String::new(), text)
    } else {
        let (first, body) = text.split_once('\n').unwrap_or((&text, ""));
        let subject = first
            .strip_prefix("Subject:")
            .ok_or(TemplateError::NoSubject)?
            .trim()
            .to_string();
        (subject, body.strip_prefix('\n').unwrap_or(body).to_string())
    };
    for part in [&subject, &body] {
        if let Some(name) = placeholders(part)
            .into_iter()
            .find(|name| !PLACEHOLDERS.contains(name))
        {
            return Err(TemplateError::UnknownPlaceholder(name.to_string()));
        }
    }
    Ok(Template { subject, body })
}

/// The SMTP reply templates are named `reply_*`.
fn is_reply(name: &str) -> bool {
    name.starts_with("reply_")
}

impl Templates {
    /// The lines of the reply template `name` in each of `language`'s
    /// languages, filled (`vars` gives each language's values) and made
    /// fit for an SMTP reply: US-ASCII (RFC 5321 4.2: reply text is
    /// printable ASCII; German letters become ae, oe, ue, ss), one line per
    /// template line, empty lines dropped.
    pub fn reply_lines<'v>(
        &self,
        name: &str,
        language: ReplyLanguage,
        vars: impl Fn(Lang) -> Vec<(&'v str, String)>,
    ) -> Vec<String> {
        let mut out = Vec::new();
        for &lang in language.langs() {
            let values = vars(lang);
            let value = |k: &str| {
                values
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.as_str())
            };
            let text = fill(&self.get(name, lang).body, value, true);
            out.extend(
                text.lines()
                    .map(|l| ascii(l.trim()))
                    .filter(|l| !l.is_empty()),
            );
        }
        out
    }

    /// A one-sentence reply template (`reply_informed`, ...) in `lang`,
    /// filled, as one line (for the `{told}` of another).
    pub fn reply_sentence(&self, name: &str, lang: Lang) -> String {
        let body = self.get(name, lang).body;
        body.split_whitespace().collect::<Vec<_>>().join(" ")
    }
}

/// US-ASCII for a reply line: German letters transliterated the way
/// German readers expect when umlauts are not available (DIN 5007-2),
/// typographic quotes and dashes as their ASCII forms, control characters
/// as spaces, anything else as `?`.
pub fn ascii(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            ' '..='~' => out.push(c),
            'ä' => out.push_str("ae"),
            'ö' => out.push_str("oe"),
            'ü' => out.push_str("ue"),
            'Ä' => out.push_str("Ae"),
            'Ö' => out.push_str("Oe"),
            'Ü' => out.push_str("Ue"),
            'ß' => out.push_str("ss"),
            '„' | '“' | '”' | '«' | '»' => out.push('"'),
            '‚' | '‘' | '’' => out.push('\''),
            '–' | '—' => out.push('-'),
            '…' => out.push_str("..."),
            c if c.is_control() || c.is_whitespace() => out.push(' '),
            _ => out.push('?'),
        }
    }
    out
}

/// The `{name}` tokens in a text.
fn placeholders(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        rest = &rest[open + 1..];
        if let Some(close) = rest.find('}') {
            let name = &rest[..close];
            if !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                out.push(name);
            }
        }
    }
    out
}

/// Fills the placeholders; values lose control characters so a Subject
/// cannot grow header lines.
pub fn render(text: &str, vars: &HashMap<&str, String>, one_line: bool) -> String {
    fill(text, |name| vars.get(name).map(String::as_str), one_line)
}

/// Fills every `{name}` that `value` knows, in one pass: a value is never
/// read for placeholders itself, so a subject written `{id}` stays as the
/// sender wrote it (filling one name after the other made that depend on
/// the order of a map, which is random). An unknown `{name}` stays too.
/// With `one_line`, control characters in values become spaces.
pub fn fill<'v>(text: &str, value: impl Fn(&str) -> Option<&'v str>, one_line: bool) -> String {
    let mut out = String::with_capacity(text.len() + 256);
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let found = after
            .find('}')
            .and_then(|close| Some((close, value(&after[..close])?)));
        match found {
            Some((close, v)) => {
                if one_line {
                    out.extend(v.chars().map(|c| if c.is_control() { ' ' } else { c }));
                } else {
                    out.push_str(v);
                }
                rest = &after[close + 1..];
            }
            None => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The built-in texts: `src/templates/<name>.<lang>.txt`, in the format
/// of an override, so an admin can start one from a copy.
fn builtin(name: &str, lang: Lang) -> Template {
    let text = match (name, lang) {
        ("dpo", Lang::En) => include_str!("templates/dpo.en.txt"),
        ("dpo", Lang::De) => include_str!("templates/dpo.de.txt"),
        ("dpo_digest", Lang::En) => include_str!("templates/dpo_digest.en.txt"),
        ("dpo_digest", Lang::De) => include_str!("templates/dpo_digest.de.txt"),
        ("sender_hold", Lang::En) => include_str!("templates/sender_hold.en.txt"),
        ("sender_hold", Lang::De) => include_str!("templates/sender_hold.de.txt"),
        ("sender_bcc", Lang::En) => include_str!("templates/sender_bcc.en.txt"),
        ("sender_bcc", Lang::De) => include_str!("templates/sender_bcc.de.txt"),
        ("sender_split", Lang::En) => include_str!("templates/sender_split.en.txt"),
        ("sender_split", Lang::De) => include_str!("templates/sender_split.de.txt"),
        ("sender_released", Lang::En) => include_str!("templates/sender_released.en.txt"),
        ("sender_released", Lang::De) => include_str!("templates/sender_released.de.txt"),
        ("sender_dropped", Lang::En) => include_str!("templates/sender_dropped.en.txt"),
        ("sender_dropped", Lang::De) => include_str!("templates/sender_dropped.de.txt"),
        ("reply_reject", Lang::En) => include_str!("templates/reply_reject.en.txt"),
        ("reply_reject", Lang::De) => include_str!("templates/reply_reject.de.txt"),
        ("reply_reject_domains", Lang::En) => include_str!("templates/reply_reject_domains.en.txt"),
        ("reply_reject_domains", Lang::De) => include_str!("templates/reply_reject_domains.de.txt"),
        ("reply_hold", Lang::En) => include_str!("templates/reply_hold.en.txt"),
        ("reply_hold", Lang::De) => include_str!("templates/reply_hold.de.txt"),
        ("reply_signed", Lang::En) => include_str!("templates/reply_signed.en.txt"),
        ("reply_signed", Lang::De) => include_str!("templates/reply_signed.de.txt"),
        ("reply_unsafe_attached", Lang::En) => {
            include_str!("templates/reply_unsafe_attached.en.txt")
        }
        ("reply_unsafe_attached", Lang::De) => {
            include_str!("templates/reply_unsafe_attached.de.txt")
        }
        ("reply_unsafe_left", Lang::En) => include_str!("templates/reply_unsafe_left.en.txt"),
        ("reply_unsafe_left", Lang::De) => include_str!("templates/reply_unsafe_left.de.txt"),
        ("reply_informed", Lang::En) => include_str!("templates/reply_informed.en.txt"),
        ("reply_informed", Lang::De) => include_str!("templates/reply_informed.de.txt"),
        ("reply_recorded", Lang::En) => include_str!("templates/reply_recorded.en.txt"),
        ("reply_recorded", Lang::De) => include_str!("templates/reply_recorded.de.txt"),
        ("reply_unrecorded", Lang::En) => include_str!("templates/reply_unrecorded.en.txt"),
        ("reply_unrecorded", Lang::De) => include_str!("templates/reply_unrecorded.de.txt"),
        // sender_expired, and the fallback for a name not in NAMES.
        (_, Lang::En) => include_str!("templates/sender_expired.en.txt"),
        (_, Lang::De) => include_str!("templates/sender_expired.de.txt"),
    };
    // Every built-in is parsed by the tests below, so this cannot fail.
    parse(name, text).expect("a built-in template is well-formed")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_uses_known_placeholders_only() {
        for name in NAMES {
            for lang in [Lang::De, Lang::En] {
                let t = builtin(name, lang);
                for p in placeholders(&t.subject)
                    .into_iter()
                    .chain(placeholders(&t.body))
                {
                    assert!(PLACEHOLDERS.contains(&p), "{name}.{lang:?}: {{{p}}}");
                }
            }
        }
    }

    #[test]
    fn overrides_are_checked_and_used() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("dpo.en.txt"),
            "Subject: Breach {id}\n\nSee {id}.\n",
        )
        .unwrap();
        let t = Templates::load(dir.path()).unwrap();
        assert_eq!(t.get("dpo", Lang::En).subject, "Breach {id}");
        assert_eq!(t.get("dpo", Lang::En).body, "See {id}.\n");
        assert_ne!(t.get("dpo", Lang::De).subject, "Breach {id}");
        std::fs::write(
            dir.path().join("sender_hold.de.txt"),
            "Subject: {sbject}\n\nx\n",
        )
        .unwrap();
        let problems = Templates::load(dir.path()).unwrap_err();
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].0, "sender_hold.de.txt");
        assert!(problems[0].1.contains("{sbject}"), "{problems:?}");
        assert_eq!(
            problems[0].1,
            format!(
                "unknown placeholder {{sbject}}; known: {}",
                PLACEHOLDERS.join(", ")
            )
        );
        assert_eq!(
            parse("dpo", "Betreff: x\n\ny\n").unwrap_err().to_string(),
            "the first line must be \"Subject: ...\""
        );
    }

    #[test]
    fn values_cannot_add_header_lines() {
        let vars = HashMap::from([("subject", "a\r\nBcc: x@y".to_string())]);
        assert_eq!(render("S: {subject}", &vars, true), "S: a  Bcc: x@y");
    }

    #[test]
    fn values_are_not_read_for_placeholders() {
        // Filled one name after the other, `{id}` in the subject was
        // replaced or not depending on the map's random order.
        // Each map has its own random order: the old fill got this right
        // only when it happened to fill the subject last (1 in 3).
        for _ in 0..32 {
            let vars = HashMap::from([
                ("subject", "{id} and {count}".to_string()),
                ("id", "01ABC".to_string()),
                ("count", "12".to_string()),
            ]);
            assert_eq!(
                render("{id}: {subject} ({count}, {unknown}, {", &vars, true),
                "01ABC: {id} and {count} (12, {unknown}, {"
            );
        }
    }
}
