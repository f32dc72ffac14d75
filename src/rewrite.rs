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

use std::borrow::Cow;
use std::ops::Range;

use crate::message::address::{ElementRef, MailboxRef, for_each};
use crate::message::headers::{Field, FieldKind, Headers, scan};
use crate::message::{encoded, tokens};
use crate::policy::count::{domain_of, normalize_address, normalize_cow_address};
use crate::policy::{Decision, DomainSet, Policy, VisibleHeaders};

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
    /// The header From address: what an emptied Reply-To becomes.
    sender: Option<String>,
}

/// What a rewritten field is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// Bcc, Resent-Bcc: always removed.
    Bcc,
    /// To: never left empty (the fallback).
    To,
    /// Reply-To: the sender when left empty.
    ReplyTo,
    /// Any other visible, non-originator header: dropped when empty.
    Other,
}

/// One field the rewrite changes.
#[derive(Debug, Clone)]
struct PreparedField<'m> {
    role: Role,
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
    /// `<address>`, written instead of the span when the display name or a
    /// comment shows another address (`"p1@x, p2@y" <amt@example.org>`).
    bare: Option<String>,
}

impl Entry<'_> {
    /// Stays visible: kept by the prepared rule, or the one extra address.
    fn stays(&self, also: Option<&str>) -> bool {
        self.kept || also.is_some_and(|a| self.key.as_deref() == Some(a))
    }

    /// What the rewrite writes for it.
    fn text<'v>(&'v self, value: &'v [u8]) -> &'v [u8] {
        match &self.bare {
            Some(b) => b.as_bytes(),
            None => bytes(value, self.span.clone()),
        }
    }
}

/// One valid element of a To/Cc field.
#[derive(Debug, Clone)]
enum Item<'m> {
    Mailbox(Entry<'m>),
    Group {
        /// The display name and its colon; `None` when the name shows an
        /// address (the members are then written as a plain list).
        name: Option<Range<usize>>,
        members: Vec<Entry<'m>>,
    },
}

impl<'m> Prepared<'m> {
    /// Parses the changing fields of `msg` (scanned as `headers`) and asks
    /// `keep` about every address once.
    pub fn new(msg: &'m [u8], headers: &Headers, keep: &dyn Keep) -> Self {
        let visible = keep.visible_headers();
        // The role of the last named field: a nameless line after a
        // rewritten one is read as more of it (the counter does), so one
        // that shows an address goes with it.
        let mut last = None;
        let fields = headers
            .fields
            .iter()
            .filter_map(|f| {
                let role = if f.name.is_empty() {
                    let rewritten = matches!(last, Some(Role::To | Role::ReplyTo | Role::Other));
                    let shows = memchr::memchr(b'@', bytes(msg, f.span.clone())).is_some();
                    (rewritten && shows).then_some(Role::Bcc)
                } else {
                    last = role(msg, f, visible);
                    last
                };
                let role = role?;
                let value = bytes(msg, f.value.clone());
                let mut elements = Vec::new();
                if role != Role::Bcc {
                    let encoded = memchr::memmem::find(value, b"=?").is_some();
                    let entry = |m: MailboxRef<'m>| entry(value, m, keep, encoded);
                    for_each(value, |element| match element {
                        ElementRef::Mailbox(m) => elements.push(Item::Mailbox(entry(m))),
                        ElementRef::Group { name, members, .. } => {
                            let shows = !shows_nothing(bytes(value, name.clone()), None);
                            elements.push(Item::Group {
                                name: (!shows).then_some(name),
                                members: members.into_iter().map(entry).collect(),
                            });
                        }
                        ElementRef::Invalid { .. } => {}
                    });
                }
                Some(PreparedField {
                    role,
                    span: f.span.clone(),
                    value_start: f.value.start,
                    value,
                    elements,
                })
            })
            .collect();
        Self {
            msg,
            end: headers.end,
            fields,
            sender: crate::policy::header_from(msg, headers),
        }
    }

    /// [`hide`] of the prepared message, keeping what the prepared rule
    /// keeps plus every element whose normalised address is `also` (a split
    /// copy's own recipient).
    pub fn hide(&self, also: Option<&str>, fallback: &str) -> Rewritten {
        let (msg, end) = (self.msg, self.end);
        let mut head = Vec::with_capacity(self.kept_size_hint() + fallback.len() + 8);
        let mut cursor = 0;
        let (mut first_to, mut first_reply_to) = (None, None);
        let (mut to_kept, mut reply_to_kept) = (false, false);
        for f in &self.fields {
            head.extend_from_slice(bytes(msg, cursor..f.span.start));
            cursor = f.span.end;
            match f.role {
                Role::To => {
                    first_to.get_or_insert(head.len());
                    to_kept |= rebuild(msg, f, also, &mut head);
                }
                Role::ReplyTo => {
                    first_reply_to.get_or_insert(head.len());
                    reply_to_kept |= rebuild(msg, f, also, &mut head);
                }
                Role::Other => {
                    rebuild(msg, f, also, &mut head);
                }
                Role::Bcc => {}
            }
        }
        head.extend_from_slice(bytes(msg, cursor..end));
        let mut inserts: Vec<(Option<usize>, &[u8], &str)> = Vec::new();
        // Some providers (GMX, WEB.DE) and list servers refuse mail without To
        // (RFC 5322 3.6.3 allows it, they do not).
        if !to_kept {
            inserts.push((first_to, b"To: ", fallback));
        }
        // An emptied Reply-To would send replies to From anyway; naming the
        // sender keeps that explicit for clients that prefer Reply-To.
        if let (Some(at), false, Some(sender)) = (first_reply_to, reply_to_kept, &self.sender) {
            inserts.push((Some(at), b"Reply-To: ", sender));
        }
        // From the back; at one offset the later field first, so the order
        // of the original fields is kept.
        let mut inserts: Vec<_> = inserts.into_iter().enumerate().collect();
        inserts.sort_by_key(|(i, (at, ..))| std::cmp::Reverse((at.unwrap_or(usize::MAX), *i)));
        for (_, (at, name, value)) in inserts {
            let at = at.unwrap_or_else(|| {
                if !head.is_empty() && !head.ends_with(b"\r\n") {
                    head.extend_from_slice(b"\r\n");
                }
                head.len()
            });
            // The value comes from the sender's own addresses; a CR or LF in
            // it would start a header of the sender's choosing, so none passes.
            let value = value.bytes().filter(|&b| b != b'\r' && b != b'\n');
            let field: Vec<u8> = name.iter().copied().chain(value).chain(*b"\r\n").collect();
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

/// How the rewrite treats field `f`; `None`: left as it is (not visible, or
/// an originator field: From is the author and is never rewritten).
fn role(msg: &[u8], f: &Field, visible: &VisibleHeaders) -> Option<Role> {
    if is_bcc(f) {
        return Some(Role::Bcc);
    }
    let name = f.lenient_name(msg);
    let i = visible.index(&name)?;
    if visible.is_originator(i) {
        return None;
    }
    Some(if name.eq_ignore_ascii_case(b"to") {
        Role::To
    } else if name.eq_ignore_ascii_case(b"reply-to") {
        Role::ReplyTo
    } else {
        Role::Other
    })
}

/// One mailbox of a rewritten field, asked once whether it stays.
/// `encoded`: the field holds an encoded word somewhere.
fn entry<'m>(value: &'m [u8], m: MailboxRef<'m>, keep: &dyn Keep, encoded: bool) -> Entry<'m> {
    let span = bytes(value, m.span.clone());
    // A plain mailbox shows only its own address unless an encoded word in
    // it hides another ([`MailboxRef::plain`]): the common case costs
    // nothing.
    let suspect = !m.plain || (encoded && memchr::memmem::find(span, b"=?").is_some());
    let bare = suspect.then(|| format!("<{}>", m.address));
    let key = if m.normal {
        Some(m.address)
    } else {
        normalize_cow_address(m.address).ok()
    };
    let bare = bare.filter(|_| !shows_nothing(span, key.as_deref()));
    // An address whose own text shows others (`<"p1@x p2@y".a@example.org>`)
    // cannot be kept in any form: it is dropped, even from its own copy.
    let key = match &bare {
        Some(b) if !shows_nothing(b.as_bytes(), key.as_deref()) => None,
        _ => key,
    };
    let kept = key.as_deref().is_some_and(|k| keep.keep(k));
    Entry {
        key,
        kept,
        span: m.span,
        bare,
    }
}

/// Shows `text`, as written and decoded, no address but `own`?
fn shows_nothing(text: &[u8], own: Option<&str>) -> bool {
    let own = own.unwrap_or("");
    let other = |t: &[u8]| {
        let mut found = false;
        tokens::for_each(t, |tok, _| {
            found |= normalize_address(&String::from_utf8_lossy(tok)).as_deref() != Some(own);
        });
        found
    };
    !other(text) && !encoded::readings(text).iter().any(|d| other(d.as_bytes()))
}

/// Why a rewritten message would still show external addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unsafe {
    /// Attached messages show more external addresses than the threshold;
    /// the rewrite does not touch attachments.
    Attached {
        /// Distinct external addresses visible in attached messages.
        visible: usize,
    },
    /// A header the rewrite leaves as it is (From with several addresses,
    /// typically) still shows external addresses.
    Left {
        /// The header's name.
        header: String,
        /// How many external addresses stay visible.
        visible: usize,
    },
}

impl Unsafe {
    /// The reason, for the client's reply and the incident record.
    pub fn describe(&self) -> String {
        match self {
            Unsafe::Attached { visible } => format!(
                "an attached message shows {visible} external addresses, which moving recipients to Bcc cannot hide"
            ),
            Unsafe::Left { header, visible } => format!(
                "{header} shows {visible} external addresses, which moving recipients to Bcc cannot hide"
            ),
        }
    }
}

/// Reads a rewritten header section as the counter reads any mail and says
/// whether it is safe to send in place of `decision`'s message: no external
/// address visible but the sender's own (header From, MAIL FROM) and
/// `also` (a split copy's own recipient), and attached messages within the
/// threshold.
pub fn check(
    policy: &Policy,
    decision: &Decision,
    rewritten: &Rewritten,
    mail_from: &str,
    also: Option<&str>,
) -> Result<(), Unsafe> {
    if decision.visible.attached > decision.threshold {
        return Err(Unsafe::Attached {
            visible: decision.visible.attached,
        });
    }
    let head = &rewritten.head;
    let Ok(headers) = scan(head, head.len()) else {
        return Ok(());
    };
    let left = crate::policy::count::count(head, &headers, policy);
    let sender = normalize_address(mail_from);
    let allowed = |a: &str| {
        Some(a) == decision.header_from.as_deref()
            || Some(a) == sender.as_deref()
            || Some(a) == also
    };
    let mut visible = 0;
    let mut header = None;
    for (a, seen) in left.external.iter().zip(&left.seen) {
        if !allowed(a) {
            visible += 1;
            header.get_or_insert(seen.header);
        }
    }
    match header {
        None => Ok(()),
        Some(h) => Err(Unsafe::Left {
            header: policy.visible_headers.name(h).to_string(),
            visible,
        }),
    }
}

/// `msg[range]`, or nothing if `headers` do not belong to `msg`.
fn bytes(msg: &[u8], range: Range<usize>) -> &[u8] {
    msg.get(range).unwrap_or_default()
}

/// Appends the field `f` with only the kept elements, each from its
/// original bytes (or bare, [`Entry::bare`]); appends nothing when nothing
/// is kept. Returns whether an address was kept.
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
                    w.item(m.text(value), if kept { b", " } else { b" " });
                    kept = true;
                }
            }
            Item::Group {
                name: Some(name),
                members,
            } => {
                let mut kept_members = members.iter().filter(|m| m.stays(also));
                // No member left: the group, name included, goes.
                if let Some(m) = kept_members.next() {
                    w.item(bytes(value, name.clone()), if kept { b", " } else { b" " });
                    w.item(m.text(value), b" ");
                    for m in kept_members {
                        w.item(m.text(value), b", ");
                    }
                    w.out.push(b';');
                    w.line += 1;
                    kept = true;
                }
            }
            Item::Group {
                name: None,
                members,
            } => {
                for m in members.iter().filter(|m| m.stays(also)) {
                    w.item(m.text(value), if kept { b", " } else { b" " });
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

pub mod plan;

#[cfg(test)]
mod tests;
