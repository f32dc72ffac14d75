//! RFC 5322 address lists (section 3.4), as a mail client would display
//! them, with the byte span of every element so the rewriter can keep or drop
//! elements without re-serialising them.
//!
//! Handles groups (`Team: a@x, b@y;`), display names (never addresses, even
//! when they look like one: `"a@x, b@y" <c@z>`), comments, quoted strings,
//! route-addrs (`<@r:a@x>`), empty list elements (`a@x,,b@y`) and folding.
//! Whatever cannot be parsed becomes [`Element::Invalid`]; the counter treats
//! it as one external address (fail closed).

use std::ops::Range;

/// One mailbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mailbox {
    /// The addr-spec with comments and folding removed, as written
    /// (`Local@Domain`); not lowercased.
    pub address: String,
    /// Bytes of the whole mailbox in the parsed value (display name, angle
    /// brackets and trailing comments included), without separators.
    pub span: Range<usize>,
}

/// One element of an address list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Element {
    /// A single mailbox.
    Mailbox(Mailbox),
    /// `display-name: [mailbox-list];`
    Group {
        /// Bytes of the display name and the colon.
        name: Range<usize>,
        /// Member mailboxes (invalid members are in `invalid`).
        members: Vec<Mailbox>,
        /// Spans of members that could not be parsed.
        invalid: Vec<Range<usize>>,
        /// Bytes of the whole group, up to and including `;` if present.
        span: Range<usize>,
    },
    /// Something a client might still display but that is not a valid
    /// mailbox.
    Invalid {
        /// Its bytes.
        span: Range<usize>,
    },
}

/// Parses a header value (bytes after the colon, folding included).
/// Empty elements are skipped. Never panics, whatever the input.
pub fn parse_list(value: &[u8]) -> Vec<Element> {
    let _ = value;
    todo!()
}
