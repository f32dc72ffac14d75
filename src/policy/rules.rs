//! Overrides: `policy.rules`, first match wins. A rule matches on the
//! envelope sender, the header From, or either, with glob patterns (`*` any
//! run, `?` one character, case-insensitive), and on the visible external
//! recipients ([`super::recipients`]): all of its conditions must hold.
//!
//! [`Rules`] keeps the list with the index of its recipient patterns, and
//! finds rules that can never match ([`Rules::shadowed`]).

use std::ops::Deref;

use super::Action;
use super::count::Visible;
use super::recipients::{RecipientConditions, RecipientIndex};

/// A compiled glob pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    pattern: String,
}

impl Glob {
    /// Compiles a pattern (lowercased).
    pub fn new(pattern: &str) -> Self {
        Self {
            pattern: pattern.to_ascii_lowercase(),
        }
    }

    /// Case-insensitive match of the whole text.
    ///
    /// Iterative, remembering only the last `*`: a later star can absorb
    /// anything an earlier one could, so backtracking further is never
    /// needed and `*a*a*a*b` against `aaaa...` stays O(pattern x text)
    /// instead of exponential.
    pub fn matches(&self, text: &str) -> bool {
        let (p, t) = (self.pattern.as_str(), text);
        let (mut pi, mut ti) = (0, 0);
        // (pattern index after the last star, text index it resumes at)
        let mut star: Option<(usize, usize)> = None;
        loop {
            let pc = p[pi..].chars().next();
            let tc = t[ti..].chars().next();
            match (pc, tc) {
                (Some('*'), _) => {
                    pi += 1;
                    star = Some((pi, ti));
                    continue;
                }
                (Some(pc), Some(tc)) if pc == '?' || same_char(pc, tc) => {
                    pi += pc.len_utf8();
                    ti += tc.len_utf8();
                    continue;
                }
                (None, None) => return true,
                _ => {}
            }
            // Mismatch: let the last star swallow one more character.
            match star {
                Some((sp, st)) => match t[st..].chars().next() {
                    Some(c) => {
                        let resume = st + c.len_utf8();
                        star = Some((sp, resume));
                        pi = sp;
                        ti = resume;
                    }
                    None => return false,
                },
                None => return false,
            }
        }
    }

    /// The pattern as written (lowercased).
    pub fn as_str(&self) -> &str {
        &self.pattern
    }
}

/// One rule of `policy.rules`.
#[derive(Debug, Clone)]
pub struct Rule {
    /// `name`, shown in incident records.
    pub name: String,
    /// `sender`: matches MAIL FROM or header From.
    pub sender: Vec<Glob>,
    /// `mail_from`: matches the envelope sender only.
    pub mail_from: Vec<Glob>,
    /// `header_from`: matches the header From only.
    pub header_from: Vec<Glob>,
    /// `recipients` and `any_recipient`.
    pub recipients: RecipientConditions,
    /// Overrides `policy.max_external_recipients`.
    pub max_external_recipients: Option<usize>,
    /// Overrides `policy.max_external_domains`.
    pub max_external_domains: Option<usize>,
    /// Overrides `policy.action`.
    pub action: Option<Action>,
}

impl Rule {
    /// A rule named `name` with no condition and no override (tests and
    /// tools build on it with `..Rule::named("x")`).
    pub fn named(name: &str) -> Rule {
        Rule {
            name: name.to_string(),
            sender: Vec::new(),
            mail_from: Vec::new(),
            header_from: Vec::new(),
            recipients: RecipientConditions::default(),
            max_external_recipients: None,
            max_external_domains: None,
            action: None,
        }
    }

    /// No sender pattern: the rule matches every sender.
    fn any_sender(&self) -> bool {
        self.sender.is_empty() && self.mail_from.is_empty() && self.header_from.is_empty()
    }

    /// Does the rule apply to this sender? A rule with no sender patterns
    /// matches every sender.
    pub fn matches(&self, mail_from: &str, header_from: Option<&str>) -> bool {
        if self.any_sender() {
            return true;
        }
        let header = |g: &Glob| header_from.is_some_and(|h| g.matches(h));
        self.sender
            .iter()
            .any(|g| g.matches(mail_from) || header(g))
            || self.mail_from.iter().any(|g| g.matches(mail_from))
            || self.header_from.iter().any(header)
    }

    /// Why the rule does not apply to this message (`explain`); `None`: it
    /// does. The direct reading of every condition, which the decision's
    /// index must agree with.
    pub fn why_not(
        &self,
        mail_from: &str,
        header_from: Option<&str>,
        visible: &Visible,
    ) -> Option<String> {
        let mut why = Vec::new();
        if !self.matches(mail_from, header_from) {
            let globs = |l: &[Glob]| l.iter().map(Glob::as_str).collect::<Vec<_>>().join(", ");
            let mut tried = Vec::new();
            let header = header_from.unwrap_or("(none)");
            if !self.sender.is_empty() {
                tried.push(format!(
                    "sender: neither MAIL FROM <{mail_from}> nor From {header} matches {}",
                    globs(&self.sender)
                ));
            }
            if !self.mail_from.is_empty() {
                tried.push(format!(
                    "mail_from: <{mail_from}> matches none of {}",
                    globs(&self.mail_from)
                ));
            }
            if !self.header_from.is_empty() {
                tried.push(format!(
                    "header_from: {header} matches none of {}",
                    globs(&self.header_from)
                ));
            }
            why.push(tried.join(", "));
        }
        why.extend(self.recipients.why_not(visible));
        (!why.is_empty()).then(|| why.join("; "))
    }

    /// Does every message `later` matches also match `self`? Sound, not
    /// complete: `true` only when it is certain from the patterns as
    /// written (identical globs, `*`, or recipient patterns that contain
    /// the other's; thresholds and actions play no part in matching).
    pub fn covers(&self, later: &Rule) -> bool {
        self.covers_senders(later) && self.covers_recipients(later)
    }

    fn covers_senders(&self, b: &Rule) -> bool {
        let star = |l: &[Glob]| l.iter().any(|g| g.as_str() == "*");
        if self.any_sender() || star(&self.sender) || star(&self.mail_from) {
            return true;
        }
        if b.any_sender() {
            return false;
        }
        let has = |l: &[Glob], g: &Glob| star(l) || l.contains(g);
        b.sender
            .iter()
            .all(|g| has(&self.sender, g) || (has(&self.mail_from, g) && has(&self.header_from, g)))
            && b.mail_from
                .iter()
                .all(|g| has(&self.sender, g) || has(&self.mail_from, g))
            && b.header_from
                .iter()
                .all(|g| has(&self.sender, g) || has(&self.header_from, g))
    }

    fn covers_recipients(&self, b: &Rule) -> bool {
        let within = |mine: &[super::recipients::Pattern],
                      theirs: &[super::recipients::Pattern]| {
            mine.is_empty()
                || (!theirs.is_empty() && theirs.iter().all(|q| mine.iter().any(|p| p.covers(q))))
        };
        within(&self.recipients.every, &b.recipients.every)
            && within(&self.recipients.any, &b.recipients.any)
    }
}

/// `policy.rules`: the list, first match wins, and the index of its
/// recipient patterns.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    list: Vec<Rule>,
    index: RecipientIndex,
}

/// A rule that can never match: an earlier one matches every message it
/// matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shadowed {
    /// Its place in `policy.rules`.
    pub rule: usize,
    /// The place of the earlier rule that takes its messages.
    pub by: usize,
}

impl Rules {
    /// The rules in order, indexed.
    pub fn new(list: Vec<Rule>) -> Rules {
        let index = RecipientIndex::new(list.iter().map(|r| &r.recipients));
        Rules { list, index }
    }

    /// The first rule that applies to this message, and its place.
    pub fn first_match(
        &self,
        mail_from: &str,
        header_from: Option<&str>,
        visible: &Visible,
    ) -> Option<(usize, &Rule)> {
        // The recipient conditions of every rule at once, only when some
        // rule has one and some sender matched (most rules name senders).
        let mut held = None;
        self.list.iter().enumerate().find(|(i, r)| {
            if !r.matches(mail_from, header_from) {
                return false;
            }
            if r.recipients.is_empty() {
                return true;
            }
            held.get_or_insert_with(|| self.index.evaluate(visible))
                .rule(&self.index, *i)
        })
    }

    /// Every rule an earlier one shadows (see [`Rule::covers`]), with the
    /// first such earlier rule.
    pub fn shadowed(&self) -> Vec<Shadowed> {
        let mut out = Vec::new();
        for (j, later) in self.list.iter().enumerate() {
            if let Some(by) = self.list[..j].iter().position(|r| r.covers(later)) {
                out.push(Shadowed { rule: j, by });
            }
        }
        out
    }
}

impl Deref for Rules {
    type Target = [Rule];

    fn deref(&self) -> &[Rule] {
        &self.list
    }
}

/// Case-insensitive equality of one character; the pattern is already
/// ASCII-lowercased, the text is not lowercased at all.
fn same_char(p: char, t: char) -> bool {
    p == t
        || p == t.to_ascii_lowercase()
        || (!t.is_ascii() && t.to_lowercase().eq(p.to_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_table() {
        let cases: &[(&str, &str, bool)] = &[
            ("*", "", true),
            ("*", "anything@at.all", true),
            ("", "", true),
            ("", "a", false),
            ("a", "A", true),
            ("*@example.org", "Alice@Example.ORG", true),
            ("*@example.org", "alice@example.org.evil", false),
            ("*@*.example.org", "a@mail.example.org", true),
            ("*@*.example.org", "a@example.org", false),
            ("news*", "newsletter@x", true),
            ("*news", "newsletter@x", false),
            ("a*b*c", "aXbYc", true),
            ("a*b*c", "aXbYcZ", false),
            ("a**c", "ac", true),
            ("?", "", false),
            ("?", "ü", true),
            ("??", "ü", false),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            ("ÜBER@x", "über@x", true),
            ("über@x", "ÜBER@X", true),
            ("*x*", "aaaaxbbbb", true),
            ("*@*", "no-at-sign", false),
        ];
        for &(pattern, text, want) in cases {
            assert_eq!(
                Glob::new(pattern).matches(text),
                want,
                "{pattern:?} vs {text:?}"
            );
        }
    }

    #[test]
    fn glob_no_blowup() {
        let text = "a".repeat(5_000);
        let pattern = format!("{}b", "*a".repeat(50));
        assert!(!Glob::new(&pattern).matches(&text));
    }

    fn rule(sender: &[&str], mail_from: &[&str], header_from: &[&str]) -> Rule {
        let globs = |v: &[&str]| v.iter().map(|p| Glob::new(p)).collect();
        Rule {
            sender: globs(sender),
            mail_from: globs(mail_from),
            header_from: globs(header_from),
            ..Rule::named("r")
        }
    }

    #[test]
    fn rule_table() {
        let cases: &[(Rule, &str, Option<&str>, bool)] = &[
            (rule(&[], &[], &[]), "x@y", None, true),
            (rule(&["*@news.org"], &[], &[]), "a@news.org", None, true),
            (
                rule(&["*@news.org"], &[], &[]),
                "a@other.org",
                Some("b@news.org"),
                true,
            ),
            (rule(&["*@news.org"], &[], &[]), "a@other.org", None, false),
            (rule(&[], &["*@news.org"], &[]), "a@news.org", None, true),
            (
                rule(&[], &["*@news.org"], &[]),
                "a@other.org",
                Some("a@news.org"),
                false,
            ),
            (rule(&[], &[], &["*@news.org"]), "a@news.org", None, false),
            (
                rule(&[], &[], &["*@news.org"]),
                "",
                Some("a@news.org"),
                true,
            ),
            (
                rule(&[], &["bounce@*"], &["*@news.org"]),
                "bounce@x",
                Some("a@y"),
                true,
            ),
            (rule(&["", "x@y"], &[], &[]), "", None, true),
        ];
        for (i, (r, mail_from, header_from, want)) in cases.iter().enumerate() {
            assert_eq!(r.matches(mail_from, *header_from), *want, "case {i}");
        }
    }
}
