//! Rewrites that hide recipients, by header byte offsets: the fields that
//! change (To, Cc, Bcc, Resent-Bcc) are cut out and, where something remains
//! visible, re-emitted from the original bytes of the kept address-list
//! elements; every other header and the body stay byte-identical.

use std::borrow::Cow;
use std::ops::Range;

use crate::message::address::{ElementRef, MailboxRef, for_each};
use crate::message::headers::{Field, FieldKind, Headers};
use crate::policy::count::{domain_of, normalize_cow_address};
use crate::policy::{DomainSet, Policy};

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

/// What stays visible in To/Cc.
pub trait Keep {
    /// Keep this normalised address visible?
    fn keep(&self, normalized: &str) -> bool;
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
}

impl<'a> KeepVisible<'a> {
    /// What a Bcc rewrite (`also` = None) or a split copy for `also` keeps.
    pub fn new(policy: &'a Policy, also: Option<String>) -> Self {
        let internal = policy
            .keep_internal_visible
            .then_some(&policy.internal_domains);
        Self { internal, also }
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

/// Removes Bcc/Resent-Bcc and every To/Cc element that `keep` rejects
/// (unparseable elements are always removed). If no To address is left, a
/// `To: {fallback}` field is added where the first To was (or at the end of
/// the header section). `fallback` is a complete field value such as
/// `alice@example.org` or `undisclosed-recipients:;`.
pub fn hide(msg: &[u8], headers: &Headers, keep: &dyn Keep, fallback: &str) -> Rewritten {
    Prepared::new(msg, headers, keep).hide(None, fallback)
}

/// The fields a rewrite changes (To, Cc, Bcc, Resent-Bcc), parsed once,
/// every address normalised and asked once whether it stays, for rewriting
/// the same message many times: a split sends one copy per recipient, and
/// parsing a 1,494-address list for each copy would cost as much as deciding
/// on the message 1,494 times. [`Prepared::hide`] then only walks the
/// prepared elements, adding at most one more address to keep.
#[derive(Debug, Clone)]
pub struct Prepared<'m> {
    msg: &'m [u8],
    /// End of the header section.
    end: usize,
    fields: Vec<PreparedField<'m>>,
}

/// One To/Cc/Bcc/Resent-Bcc field.
#[derive(Debug, Clone)]
struct PreparedField<'m> {
    kind: FieldKind,
    /// The whole field in the message.
    span: Range<usize>,
    /// Where the value starts (the name as written runs up to it).
    value_start: usize,
    /// The value (element spans are relative to it).
    value: &'m [u8],
    /// Valid elements in order; invalid ones are always dropped.
    elements: Vec<Item<'m>>,
}

/// One mailbox of a prepared field.
#[derive(Debug, Clone)]
struct Entry<'m> {
    /// The normalised address (`None`: cannot be normalised, never kept).
    key: Option<Cow<'m, str>>,
    /// Kept by the rule the message was prepared with.
    kept: bool,
    /// Its bytes in the field value.
    span: Range<usize>,
}

impl Entry<'_> {
    /// Stays visible: kept by the prepared rule, or the one extra address.
    fn stays(&self, also: Option<&str>) -> bool {
        self.kept || also.is_some_and(|a| self.key.as_deref() == Some(a))
    }
}

/// One valid element of a To/Cc field.
#[derive(Debug, Clone)]
enum Item<'m> {
    Mailbox(Entry<'m>),
    Group {
        /// The display name and its colon.
        name: Range<usize>,
        members: Vec<Entry<'m>>,
    },
}

impl<'m> Prepared<'m> {
    /// Parses the changing fields of `msg` (scanned as `headers`) and asks
    /// `keep` about every address once.
    pub fn new(msg: &'m [u8], headers: &Headers, keep: &dyn Keep) -> Self {
        let entry = |m: MailboxRef<'m>| {
            let key = if m.normal {
                Some(m.address)
            } else {
                normalize_cow_address(m.address).ok()
            };
            let kept = key.as_deref().is_some_and(|k| keep.keep(k));
            Entry {
                key,
                kept,
                span: m.span,
            }
        };
        let fields = headers
            .fields
            .iter()
            .filter(|f| is_bcc(f) || matches!(f.kind, FieldKind::To | FieldKind::Cc))
            .map(|f| {
                let value = bytes(msg, f.value.clone());
                let mut elements = Vec::new();
                if !is_bcc(f) {
                    for_each(value, |element| match element {
                        ElementRef::Mailbox(m) => elements.push(Item::Mailbox(entry(m))),
                        ElementRef::Group { name, members, .. } => elements.push(Item::Group {
                            name,
                            members: members.into_iter().map(entry).collect(),
                        }),
                        ElementRef::Invalid { .. } => {}
                    });
                }
                PreparedField {
                    kind: f.kind,
                    span: f.span.clone(),
                    value_start: f.value.start,
                    value,
                    elements,
                }
            })
            .collect();
        Self {
            msg,
            end: headers.end,
            fields,
        }
    }

    /// [`hide`] of the prepared message, keeping what the prepared rule
    /// keeps plus every element whose normalised address is `also` (a split
    /// copy's own recipient).
    pub fn hide(&self, also: Option<&str>, fallback: &str) -> Rewritten {
        let (msg, end) = (self.msg, self.end);
        let mut head = Vec::with_capacity(self.kept_size_hint() + fallback.len() + 8);
        let mut cursor = 0;
        let mut first_to = None;
        let mut to_kept = false;
        for f in &self.fields {
            head.extend_from_slice(bytes(msg, cursor..f.span.start));
            cursor = f.span.end;
            match f.kind {
                FieldKind::To => {
                    first_to.get_or_insert(head.len());
                    to_kept |= rebuild(msg, f, also, &mut head);
                }
                FieldKind::Cc => {
                    rebuild(msg, f, also, &mut head);
                }
                _ => {}
            }
        }
        head.extend_from_slice(bytes(msg, cursor..end));
        // Some providers (GMX, WEB.DE) and list servers refuse mail without To
        // (RFC 5322 3.6.3 allows it, they do not).
        if !to_kept {
            let at = first_to.unwrap_or_else(|| {
                if !head.is_empty() && !head.ends_with(b"\r\n") {
                    head.extend_from_slice(b"\r\n");
                }
                head.len()
            });
            // The fallback comes from the sender's own addresses; a CR or LF in
            // it would start a header of the sender's choosing, so none passes.
            let value = fallback.bytes().filter(|&b| b != b'\r' && b != b'\n');
            let field: Vec<u8> = b"To: "
                .iter()
                .copied()
                .chain(value)
                .chain(*b"\r\n")
                .collect();
            head.splice(at..at, field);
        }
        Rewritten { head, rest: end }
    }

    /// The header section without the changing fields: a first guess at the
    /// size of a rewritten one, so a split copy's head is allocated once.
    fn kept_size_hint(&self) -> usize {
        let changing: usize = self.fields.iter().map(|f| f.span.len()).sum();
        self.end.saturating_sub(changing) + 256
    }
}

fn is_bcc(f: &Field) -> bool {
    matches!(f.kind, FieldKind::Bcc | FieldKind::ResentBcc)
}

/// `msg[range]`, or nothing if `headers` do not belong to `msg`.
fn bytes(msg: &[u8], range: Range<usize>) -> &[u8] {
    msg.get(range).unwrap_or_default()
}

/// Appends the To/Cc field `f` with only the kept elements, each from its
/// original bytes; appends nothing when nothing is kept. Returns whether an
/// address was kept.
fn rebuild(msg: &[u8], f: &PreparedField<'_>, also: Option<&str>, head: &mut Vec<u8>) -> bool {
    let start = head.len();
    // The name as written (`CC:`, `Cc :`): only the list changes.
    let name = bytes(msg, f.span.start..f.value_start);
    let value = f.value;
    head.extend_from_slice(name);
    let mut w = Folder {
        out: head,
        line: name.len(),
    };
    let mut kept = false;
    for element in &f.elements {
        match element {
            Item::Mailbox(m) => {
                if m.stays(also) {
                    w.item(
                        bytes(value, m.span.clone()),
                        if kept { b", " } else { b" " },
                    );
                    kept = true;
                }
            }
            Item::Group { name, members } => {
                let mut kept_spans = members
                    .iter()
                    .filter(|m| m.stays(also))
                    .map(|m| m.span.clone());
                // No member left: the group, name included, goes.
                if let Some(span) = kept_spans.next() {
                    w.item(bytes(value, name.clone()), if kept { b", " } else { b" " });
                    w.item(bytes(value, span), b" ");
                    for span in kept_spans {
                        w.item(bytes(value, span), b", ");
                    }
                    w.out.push(b';');
                    w.line += 1;
                    kept = true;
                }
            }
        }
    }
    if kept {
        w.out.extend_from_slice(b"\r\n");
    } else {
        w.out.truncate(start);
    }
    kept
}

/// Writes list items, folding before one that would push the line past
/// [`FOLD_AT`] (the separator's space becomes CRLF SP, RFC 5322 2.2.3).
struct Folder<'a> {
    out: &'a mut Vec<u8>,
    /// Length of the current (last) line so far.
    line: usize,
}

impl Folder<'_> {
    fn item(&mut self, text: &[u8], sep: &[u8]) {
        let first_line = memchr::memchr(b'\r', text).unwrap_or(text.len());
        // +1: room for the `,` or `;` that may follow.
        let fold = self.line > 1 && self.line + sep.len() + first_line + 1 > FOLD_AT;
        if fold {
            self.out
                .extend_from_slice(sep.strip_suffix(b" ").unwrap_or(sep));
            self.out.extend_from_slice(b"\r\n ");
            self.line = 1;
        } else {
            self.out.extend_from_slice(sep);
            self.line += sep.len();
        }
        self.out.extend_from_slice(text);
        // An element folded in the original keeps its folding.
        self.line = match memchr::memrchr(b'\n', text) {
            Some(lf) => text.len() - lf - 1,
            None => self.line + text.len(),
        };
    }
}

#[cfg(test)]
mod tests;
