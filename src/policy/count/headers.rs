//! Which headers show addresses to a reader: the default list and
//! `policy.visible_headers`, validated.

/// Why a list of header names cannot be `policy.visible_headers`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeadersError {
    /// Empty, or holding a space, a colon or a control byte.
    #[error("{0:?} is not a header field name")]
    NotAName(String),
    /// Bcc and Resent-Bcc never reach a reader.
    #[error("{0} is always removed before relaying, never visible")]
    Removed(String),
    /// To and Cc always count.
    #[error("must include {0}")]
    Missing(&'static str),
    /// An index of a name must fit in a byte ([`super::Seen::header`]).
    #[error("more than 255 names")]
    TooMany,
}

/// The headers that show addresses to a reader, by name. The default is
/// [`VisibleHeaders::DEFAULT`]; `policy.visible_headers` replaces it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VisibleHeaders {
    /// Names as configured (for explain and records), at most 255.
    names: Vec<String>,
}

impl VisibleHeaders {
    /// Every header a recipient's client can show with addresses: the
    /// originator and destination fields of RFC 5322 3.6.2/3.6.3, their
    /// Resent- forms (3.6.6), and the list-reply fields clients honour
    /// (Mail-Followup-To, Mail-Reply-To: Mutt, Thunderbird, Gnus).
    pub const DEFAULT: [&'static str; 9] = [
        "From",
        "To",
        "Cc",
        "Reply-To",
        "Mail-Followup-To",
        "Mail-Reply-To",
        "Resent-From",
        "Resent-To",
        "Resent-Cc",
    ];

    /// Originator fields: one address there is the sender, shown on every
    /// mail; only a field holding several addresses discloses a list.
    const ORIGINATORS: [&'static str; 2] = ["from", "resent-from"];

    /// Fields that can never be visible: removed before relaying.
    pub const REMOVED: [&'static str; 2] = ["bcc", "resent-bcc"];

    /// A set of header names; errors name the problem (the config layer
    /// adds the key).
    pub fn new<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<Self, HeadersError> {
        let mut out: Vec<String> = Vec::new();
        for name in names {
            let name = name.trim();
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic() && b != b':') {
                return Err(HeadersError::NotAName(name.to_string()));
            }
            if Self::REMOVED.iter().any(|r| r.eq_ignore_ascii_case(name)) {
                return Err(HeadersError::Removed(name.to_string()));
            }
            if !out.iter().any(|n| n.eq_ignore_ascii_case(name)) {
                out.push(name.to_string());
            }
        }
        for must in ["To", "Cc"] {
            if !out.iter().any(|n| n.eq_ignore_ascii_case(must)) {
                return Err(HeadersError::Missing(must));
            }
        }
        if out.len() > usize::from(u8::MAX) {
            return Err(HeadersError::TooMany);
        }
        Ok(Self { names: out })
    }

    /// The configured names.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The name of header `i` (as in [`super::Seen::header`]).
    pub fn name(&self, i: u8) -> &str {
        self.names.get(usize::from(i)).map_or("?", String::as_str)
    }

    /// Which visible header a field name (as a lenient reader takes it) is.
    pub fn index(&self, name: &[u8]) -> Option<u8> {
        let i = self
            .names
            .iter()
            .position(|n| n.as_bytes().eq_ignore_ascii_case(name))?;
        u8::try_from(i).ok()
    }

    /// The default set, shared (for callers without a policy).
    pub fn standard() -> &'static VisibleHeaders {
        static STANDARD: std::sync::OnceLock<VisibleHeaders> = std::sync::OnceLock::new();
        STANDARD.get_or_init(VisibleHeaders::default)
    }

    /// Is header `i` an originator field (From, Resent-From)?
    pub fn is_originator(&self, i: u8) -> bool {
        let name = self.name(i);
        Self::ORIGINATORS
            .iter()
            .any(|o| o.eq_ignore_ascii_case(name))
    }
}

impl Default for VisibleHeaders {
    fn default() -> Self {
        Self {
            names: Self::DEFAULT.iter().map(|s| s.to_string()).collect(),
        }
    }
}
