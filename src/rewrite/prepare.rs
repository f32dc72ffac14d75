//! The fields a rewrite changes, parsed once per message: each element with
//! its normalised address and whether it stays, so the copies of a split
//! cost a walk over prepared elements, not a parse each.

use super::*;

/// The fields a rewrite changes (To, Cc, Bcc, Resent-Bcc), parsed once,
/// every address normalised and asked once whether it stays, for rewriting
/// the same message many times: a split sends one copy per recipient, and
/// parsing a 1,494-address list for each copy would cost as much as deciding
/// on the message 1,494 times. [`Prepared::hide`] then only walks the
/// prepared elements, adding at most one more address to keep.
#[derive(Debug, Clone)]
pub struct Prepared<'m> {
    pub(super) msg: &'m [u8],
    /// End of the header section.
    pub(super) end: usize,
    pub(super) fields: Vec<PreparedField<'m>>,
    /// The header From address: what an emptied Reply-To becomes.
    pub(super) sender: Option<String>,
}

/// What a rewritten field is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Role {
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
pub(super) struct PreparedField<'m> {
    pub(super) role: Role,
    /// The whole field in the message.
    pub(super) span: Range<usize>,
    /// Where the value starts (the name as written runs up to it).
    pub(super) value_start: usize,
    /// The value (element spans are relative to it).
    pub(super) value: &'m [u8],
    /// Valid elements in order; invalid ones are always dropped.
    pub(super) elements: Vec<Item<'m>>,
}

/// One mailbox of a prepared field.
#[derive(Debug, Clone)]
pub(super) struct Entry<'m> {
    /// The normalised address (`None`: cannot be normalised, never kept).
    pub(super) key: Option<Cow<'m, str>>,
    /// Kept by the rule the message was prepared with.
    pub(super) kept: bool,
    /// Its bytes in the field value.
    pub(super) span: Range<usize>,
    /// `<address>`, written instead of the span when the display name or a
    /// comment shows another address (`"p1@x, p2@y" <amt@example.org>`).
    pub(super) bare: Option<String>,
}

impl Entry<'_> {
    /// Stays visible: kept by the prepared rule, or the one extra address.
    pub(super) fn stays(&self, also: Option<&str>) -> bool {
        self.kept || also.is_some_and(|a| self.key.as_deref() == Some(a))
    }

    /// What the rewrite writes for it.
    pub(super) fn text<'v>(&'v self, value: &'v [u8]) -> &'v [u8] {
        match &self.bare {
            Some(b) => b.as_bytes(),
            None => bytes(value, self.span.clone()),
        }
    }
}

/// One valid element of a To/Cc field.
#[derive(Debug, Clone)]
pub(super) enum Item<'m> {
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
    pub(super) fn kept_size_hint(&self) -> usize {
        let changing: usize = self.fields.iter().map(|f| f.span.len()).sum();
        self.end.saturating_sub(changing) + 256
    }
}

pub(super) fn is_bcc(f: &Field) -> bool {
    matches!(f.kind, FieldKind::Bcc | FieldKind::ResentBcc)
}

/// How the rewrite treats field `f`; `None`: left as it is (not visible, or
/// an originator field: From is the author and is never rewritten).
pub(super) fn role(msg: &[u8], f: &Field, visible: &VisibleHeaders) -> Option<Role> {
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
pub(super) fn entry<'m>(
    value: &'m [u8],
    m: MailboxRef<'m>,
    keep: &dyn Keep,
    encoded: bool,
) -> Entry<'m> {
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
pub(super) fn shows_nothing(text: &[u8], own: Option<&str>) -> bool {
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
