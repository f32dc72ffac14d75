//! Per-sender overrides: `policy.rules`, first match wins. A rule matches on
//! the envelope sender, the header From, or either, with glob patterns
//! (`*` any run, `?` one character, case-insensitive).

use super::Action;

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
    /// Overrides `policy.max_external_recipients`.
    pub max_external_recipients: Option<usize>,
    /// Overrides `policy.action`.
    pub action: Option<Action>,
}

impl Rule {
    /// Does the rule apply to this sender? A rule with no patterns at all
    /// matches every message.
    pub fn matches(&self, mail_from: &str, header_from: Option<&str>) -> bool {
        if self.sender.is_empty() && self.mail_from.is_empty() && self.header_from.is_empty() {
            return true;
        }
        let header = |g: &Glob| header_from.is_some_and(|h| g.matches(h));
        self.sender
            .iter()
            .any(|g| g.matches(mail_from) || header(g))
            || self.mail_from.iter().any(|g| g.matches(mail_from))
            || self.header_from.iter().any(header)
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
            name: "r".into(),
            sender: globs(sender),
            mail_from: globs(mail_from),
            header_from: globs(header_from),
            max_external_recipients: None,
            action: None,
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
