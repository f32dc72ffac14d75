//! The header section of a message as a list of fields with byte offsets
//! (RFC 5322 2.2). Names compare case-insensitively and may be followed by
//! whitespace before the colon (`Cc :`, obsolete syntax RFC 5322 4.5).
//! Folded lines belong to their field. A line in the header section that is
//! not a field and not a continuation is kept as [`FieldKind::Malformed`] and
//! scanning goes on, so a To/Cc hidden after it is still seen (fail closed).

use std::ops::Range;

/// Which fields the guard cares about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    /// `To`.
    To,
    /// `Cc`.
    Cc,
    /// `Bcc` (always removed before relaying).
    Bcc,
    /// `Resent-Bcc` (always removed before relaying).
    ResentBcc,
    /// `From`.
    From,
    /// `Subject`.
    Subject,
    /// `Message-ID`.
    MessageId,
    /// `Content-Type` (to notice signed/encrypted mail).
    ContentType,
    /// Any other well-formed field.
    Other,
    /// A line that is neither a field nor a continuation.
    Malformed,
}

/// One header field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    /// What the name says.
    pub kind: FieldKind,
    /// The whole field: name, colon, value, folded lines, final CRLF.
    pub span: Range<usize>,
    /// The value: after the colon up to (not including) the final CRLF;
    /// folding CRLFs inside are kept.
    pub value: Range<usize>,
}

/// Why the header section cannot be read in full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderError {
    /// No end of the header section within the limit.
    TooBig,
}

/// The scanned header section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Headers {
    /// Fields in order of appearance.
    pub fields: Vec<Field>,
    /// Offset of the first byte after the header section: the empty line
    /// separating it from the body (or the end of the message if none).
    pub end: usize,
}

impl Headers {
    /// Fields of one kind, in order.
    pub fn of_kind(&self, kind: FieldKind) -> impl Iterator<Item = &Field> + '_ {
        self.fields.iter().filter(move |f| f.kind == kind)
    }
}

/// Scans the header section of `msg` (lines end in CRLF: the DATA reader
/// guarantees it). A header section longer than `max_header_size` bytes is
/// an error, never truncated.
pub fn scan(msg: &[u8], max_header_size: usize) -> Result<Headers, HeaderError> {
    let _ = (msg, max_header_size);
    todo!()
}
