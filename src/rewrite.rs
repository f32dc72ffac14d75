//! Rewrites that hide recipients, by header byte offsets: the fields that
//! change (every visible address header but the originators, see
//! [`VisibleHeaders`], plus Bcc and Resent-Bcc) are cut out and, where
//! something remains visible, re-emitted from the original bytes of the kept
//! address-list elements; every other header and the body stay
//! byte-identical. A kept mailbox whose display name or comment shows other
//! addresses is re-emitted as its bare `<address>`. [`check`] then reads
//! the result the way the counter reads any mail, so what the rewrite could
//! not hide (a From with several addresses, an attached list) is refused,
//! never sent half-clean.
//!
//! `prepare`: the changing fields parsed once. `emit`: kept elements written
//! back and folded. `check`: the result read again. [`plan`]: what a
//! decision and an action make of a message, for the session and for a
//! quarantine release alike.

use std::borrow::Cow;
use std::ops::Range;

use crate::message::address::{ElementRef, MailboxRef, for_each};
use crate::message::headers::{Field, FieldKind, Headers, scan};
use crate::message::{encoded, tokens};
use crate::policy::count::{domain_of, normalize_address, normalize_cow_address};
use crate::policy::{Decision, DomainSet, Policy, VisibleHeaders};

mod check;
mod emit;
pub mod plan;
mod prepare;

pub use check::{Unsafe, check};
use emit::rebuild;
pub use prepare::Prepared;
use prepare::{Item, PreparedField, is_bcc};

/// Lines are folded before they pass this (RFC 5322 2.1.1 SHOULD); the hard
/// limit of 998 is then never reached by what the rewriter adds.
const FOLD_AT: usize = 78;

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

/// What stays visible in the rewritten headers.
pub trait Keep {
    /// Keep this normalised address visible?
    fn keep(&self, normalized: &str) -> bool;

    /// The headers that are rewritten (the visible ones); the default set
    /// unless the policy names others.
    fn visible_headers(&self) -> &VisibleHeaders {
        VisibleHeaders::standard()
    }
}

/// The visibility rule of a policy rewrite: internal addresses stay when
/// the policy keeps them (`keep_internal_visible`), plus at most one named
/// address (a split copy's own recipient).
#[derive(Debug, Clone)]
pub struct KeepVisible<'a> {
    /// Internal domains to keep visible, if the policy keeps them.
    pub internal: Option<&'a DomainSet>,
    /// One more normalised address to keep.
    pub also: Option<String>,
    /// The policy's visible headers.
    pub headers: &'a VisibleHeaders,
}

impl<'a> KeepVisible<'a> {
    /// What a Bcc rewrite (`also` = None) or a split copy for `also` keeps.
    pub fn new(policy: &'a Policy, also: Option<String>) -> Self {
        let internal = policy
            .keep_internal_visible
            .then_some(&policy.internal_domains);
        Self {
            internal,
            also,
            headers: &policy.visible_headers,
        }
    }
}

impl Keep for KeepVisible<'_> {
    fn keep(&self, normalized: &str) -> bool {
        if self.also.as_deref() == Some(normalized) {
            return true;
        }
        // Normalised already: no second IDNA pass for the domain.
        self.internal
            .is_some_and(|set| set.contains_normal(domain_of(normalized)))
    }

    fn visible_headers(&self) -> &VisibleHeaders {
        self.headers
    }
}

/// Removes Bcc and Resent-Bcc only (the pass path). `None` when there is
/// nothing to remove, so the message can be sent as it is.
pub fn strip_bcc(msg: &[u8], headers: &Headers) -> Option<Rewritten> {
    let mut bcc = headers.fields.iter().filter(|f| is_bcc(f)).peekable();
    bcc.peek()?;
    let mut head = Vec::with_capacity(headers.end);
    let mut cursor = 0;
    for f in bcc {
        head.extend_from_slice(bytes(msg, cursor..f.span.start));
        cursor = f.span.end;
    }
    head.extend_from_slice(bytes(msg, cursor..headers.end));
    Some(Rewritten {
        head,
        rest: headers.end,
    })
}

/// Removes Bcc/Resent-Bcc and every element of a rewritten visible header
/// that `keep` rejects (unparseable elements are always removed); a field
/// left empty goes. If no To address is left, a `To: {fallback}` field is
/// added where the first To was (or at the end of the header section).
/// `fallback` is a complete field value such as `alice@example.org` or
/// `undisclosed-recipients:;`. A Reply-To left empty becomes the sender's
/// (header From) address, so replies still reach the sender.
pub fn hide(msg: &[u8], headers: &Headers, keep: &dyn Keep, fallback: &str) -> Rewritten {
    Prepared::new(msg, headers, keep).hide(None, fallback)
}

/// `msg[range]`, or nothing if `headers` do not belong to `msg`.
fn bytes(msg: &[u8], range: Range<usize>) -> &[u8] {
    msg.get(range).unwrap_or_default()
}

#[cfg(test)]
mod tests;
