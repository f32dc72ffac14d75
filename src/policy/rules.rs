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
    pub fn matches(&self, text: &str) -> bool {
        let _ = (text, &self.pattern);
        todo!()
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
        let _ = (mail_from, header_from);
        todo!()
    }
}
