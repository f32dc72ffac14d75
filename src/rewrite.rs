//! Rewrites that hide recipients, by header byte offsets: the fields that
//! change (To, Cc, Bcc, Resent-Bcc) are cut out and, where something remains
//! visible, re-emitted from the original bytes of the kept address-list
//! elements; every other header and the body stay byte-identical.

use crate::message::headers::Headers;

/// A message ready to send: a new header section followed by the untouched
/// remainder of the original (from the end of its header section).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewritten {
    /// The new header section (ends in CRLF, or empty when the original had
    /// no header fields).
    pub head: Vec<u8>,
    /// Offset in the original where the untouched remainder begins (the
    /// empty line before the body, or the end of the message).
    pub rest: usize,
}

/// What stays visible in To/Cc.
pub trait Keep {
    /// Keep this normalised address visible?
    fn keep(&self, normalized: &str) -> bool;
}

/// Removes Bcc and Resent-Bcc only (the pass path). `None` when there is
/// nothing to remove, so the message can be sent as it is.
pub fn strip_bcc(msg: &[u8], headers: &Headers) -> Option<Rewritten> {
    let _ = (msg, headers);
    todo!()
}

/// Removes Bcc/Resent-Bcc and every To/Cc element that `keep` rejects
/// (unparseable elements are always removed). If no To address is left, a
/// `To: {fallback}` field is added where the first To was (or at the end of
/// the header section). `fallback` is a complete field value such as
/// `alice@example.org` or `undisclosed-recipients:;`.
pub fn hide(msg: &[u8], headers: &Headers, keep: &dyn Keep, fallback: &str) -> Rewritten {
    let _ = (msg, headers, keep, fallback);
    todo!()
}
