//! One pass over the visible fields of a header section: each field read
//! as a structure and as text, every address-like token kept with where it
//! was seen, deduplicated once at the end.

use super::addresses::raw_key;
use super::*;

/// Every visible recipient in order, duplicates included, keys still
/// borrowing from the message where they can; deduplicated once at the end,
/// in one pass that also counts the external domains, so each address is
/// hashed once and copied once (into [`Addresses`]).
pub(super) struct Tally<'a, 'p> {
    pub(super) all: Vec<(Cow<'a, str>, Class, Seen)>,
    pub(super) named: usize,
    internal: &'p DomainSet,
    /// The field being read has decoded readings ([`encoded::readings`]).
    words: bool,
    /// Where the next entries are seen.
    pub(super) at: Seen,
}

impl<'a, 'p> Tally<'a, 'p> {
    pub(super) fn new(internal: &'p DomainSet) -> Self {
        Self {
            all: Vec::new(),
            named: 0,
            internal,
            words: false,
            at: Seen {
                header: 0,
                how: How::Address,
                attached: false,
            },
        }
    }

    fn push(&mut self, key: Cow<'a, str>, class: Class, how: How) {
        let seen = Seen { how, ..self.at };
        self.all.push((key, class, seen));
    }

    fn address(&mut self, address: Cow<'a, str>, normal: bool, how: How) {
        let normal = if normal {
            Ok(address)
        } else {
            normalize_cow_address(address)
        };
        match normal {
            Ok(n) => {
                let class = if self.internal.contains_normal(domain_of(&n)) {
                    Class::Internal
                } else {
                    Class::External
                };
                self.push(n, class, how);
            }
            // Parsed but not countable by domain (a domain literal, a name
            // IDNA rejects): external, fail closed.
            Err(addr) => self.unparseable(addr.as_bytes(), how),
        }
    }

    fn unparseable(&mut self, raw: &[u8], how: How) {
        self.push(Cow::Owned(raw_key(raw)), Class::Unparseable, how);
    }

    /// A token found in `text` (borrowed from the message when it can be).
    fn token(&mut self, token: &'a [u8], how: How) {
        let address = match std::str::from_utf8(token) {
            Ok(t) => Cow::Borrowed(t),
            Err(_) => Cow::Owned(String::from_utf8_lossy(token).into_owned()),
        };
        self.address(address, false, how);
    }

    /// Every token in `text`, `phrase` saying how one outside a comment or
    /// angle-addr was written. Returns how many.
    fn tokens(&mut self, text: &'a [u8], phrase: How) -> usize {
        let mut n = 0;
        let words = self.words;
        tokens::for_each(text, |t, place| {
            n += 1;
            // Part of an encoded word in a field that has them: the decoded
            // readings are read for it (with the raw text of a word that
            // does not decode).
            let fragment = memchr::memmem::find(t, b"=?").is_some()
                || memchr::memmem::find(t, b"?=").is_some();
            if words && fragment {
                return;
            }
            let how = match place {
                Place::Angle => How::Address,
                Place::Comment => How::Comment,
                Place::Phrase => phrase,
            };
            self.token(t, how);
        });
        n
    }

    fn mailbox(&mut self, value: &'a [u8], m: MailboxRef<'a>) {
        self.named += usize::from(has_display_name(value, &m));
        // The fast path's addr-spec is the only token in its span (encoded
        // words are read by the field's decoded pass).
        let more = !m.plain;
        let span = m.span.clone();
        self.address(m.address, m.normal, How::Address);
        if more {
            self.tokens(value.get(span).unwrap_or_default(), How::DisplayName);
        }
    }

    /// An element that does not parse: its tokens, or when it shows none,
    /// the element itself as one external address; unless it holds an
    /// encoded word and the field's decoded readings show addresses (they
    /// are counted from there).
    ///
    /// An `@` that shows no token (`x@host`, `@@`) still shows something
    /// a lenient client may call an address: the element then counts as
    /// one besides its tokens (fail closed: one too many, never one too
    /// few).
    fn invalid(&mut self, value: &'a [u8], span: Range<usize>, decoded_shows: bool) {
        let text = value.get(span).unwrap_or_default();
        let found = self.tokens(text, How::Unparseable);
        let ats = memchr::memchr_iter(b'@', text).count();
        if found > 0 && found >= ats {
            return;
        }
        if !(found == 0 && decoded_shows && memchr::memmem::find(text, b"=?").is_some()) {
            self.unparseable(text, How::Unparseable);
        }
    }

    /// One field value: its mailboxes, the tokens around them, and the
    /// tokens of its decoded readings ([`encoded::readings`]).
    fn field(&mut self, value: &'a [u8]) {
        // About one element per comma: reserved up front instead of
        // doubling through 1,494 pushes (a SIMD count, cheap next to them).
        self.all
            .reserve(memchr::memchr_iter(b',', value).count() + 1);
        // The decoded readings' tokens, counted after the structure so an
        // address written plainly is first seen as what it is.
        let mut decoded = Vec::new();
        let readings = encoded::readings(value);
        self.words = !readings.is_empty();
        for reading in readings {
            tokens::for_each(reading.as_bytes(), |t, _| {
                decoded.push(String::from_utf8_lossy(t).into_owned());
            });
        }
        let decoded_shows = !decoded.is_empty();
        for_each(value, |element| match element {
            ElementRef::Mailbox(m) => self.mailbox(value, m),
            ElementRef::Group {
                name,
                members,
                invalid,
                ..
            } => {
                self.tokens(value.get(name).unwrap_or_default(), How::DisplayName);
                for m in members {
                    self.mailbox(value, m);
                }
                for span in invalid {
                    self.invalid(value, span, decoded_shows);
                }
            }
            ElementRef::Invalid { span } => self.invalid(value, span, decoded_shows),
        });
        for t in decoded {
            self.address(Cow::Owned(t), false, How::EncodedWord);
        }
    }

    /// A field value, or a nameless line read as more of the field before
    /// it: its tokens, and itself when an `@` in it shows none (a line of
    /// junk without `@` shows no address and counts nothing).
    fn field_or_line(&mut self, value: &'a [u8], line: bool) {
        if !line {
            return self.field(value);
        }
        if memchr::memchr(b'@', value).is_some() {
            self.words = false;
            self.invalid(value, 0..value.len(), false);
        }
    }

    /// Every visible field of one header section. An originator field
    /// (From, Resent-From) counts only when its fields together show more
    /// than one address.
    pub(super) fn section(&mut self, msg: &'a [u8], headers: &Headers, visible: &VisibleHeaders) {
        // One side tally per originator header name.
        let mut originators: Vec<(u8, Tally<'a, 'p>)> = Vec::new();
        // The visible header the last named field was: a line with no field
        // name (no colon) and its folded lines are read as more of it, as a
        // lenient reader unfolds them.
        let mut last: Option<u8> = None;
        for f in &headers.fields {
            let nameless = f.name.is_empty();
            let header = if nameless {
                last
            } else if matches!(f.kind, FieldKind::Bcc | FieldKind::ResentBcc) {
                None
            } else {
                visible.index(&f.lenient_name(msg))
            };
            if !nameless {
                last = header;
            }
            let Some(header) = header else {
                continue;
            };
            let range = if nameless {
                f.span.clone()
            } else {
                f.value.clone()
            };
            let Some(value) = msg.get(range) else {
                continue;
            };
            if visible.is_originator(header) {
                let i = match originators.iter().position(|(h, _)| *h == header) {
                    Some(i) => i,
                    None => {
                        let mut side = Tally::new(self.internal);
                        side.at = Seen { header, ..self.at };
                        originators.push((header, side));
                        originators.len() - 1
                    }
                };
                originators[i].1.field_or_line(value, nameless);
            } else {
                self.at.header = header;
                self.field_or_line(value, nameless);
            }
        }
        for (_, mut side) in originators {
            let distinct: HashSet<&str> = side.all.iter().map(|(k, ..)| k.as_ref()).collect();
            if distinct.len() > 1 {
                self.named += side.named;
                self.all.append(&mut side.all);
            }
        }
    }

    pub(super) fn finish(self) -> Visible {
        let n = self.all.len();
        let mut first: HashMap<&str, usize, KeyedHasher> =
            HashMap::with_capacity_and_hasher(n, KeyedHasher::default());
        // Each distinct external domain with its index in order of first
        // appearance: the rules' recipient patterns and the registrable
        // count then look at each domain once, not at each address.
        let mut domains: HashMap<&str, u32, KeyedHasher> =
            HashMap::with_capacity_and_hasher(64, KeyedHasher::default());
        let mut domain_index = vec![NO_DOMAIN; n];
        // Per entry: is it the first of its key; was its key ever seen in
        // an attached message.
        let mut is_first = vec![false; n];
        let mut attached = vec![false; n];
        // An unparseable key is its own domain.
        let (mut unparseable, mut internal) = (0, 0);
        for (i, (key, class, seen)) in self.all.iter().enumerate() {
            match first.entry(key.as_ref()) {
                std::collections::hash_map::Entry::Occupied(e) => {
                    attached[*e.get()] |= seen.attached;
                }
                std::collections::hash_map::Entry::Vacant(e) => {
                    e.insert(i);
                    is_first[i] = true;
                    attached[i] = seen.attached;
                    match class {
                        Class::External => {
                            let next = domains.len() as u32;
                            domain_index[i] = *domains.entry(domain_of(key)).or_insert(next);
                        }
                        Class::Unparseable => unparseable += 1,
                        Class::Internal => internal += 1,
                    }
                }
            }
        }
        let external = first.len() - internal;
        let bytes = first.keys().map(|k| k.len()).sum();
        let mut names: Vec<(&str, u32)> = domains.into_iter().collect();
        names.sort_unstable_by_key(|&(_, i)| i);
        let mut distinct = Addresses::with_capacity(names.len(), 0);
        for (d, _) in &names {
            distinct.push(d);
        }
        drop(first);
        let mut v = Visible {
            external: Addresses::with_capacity(external, bytes),
            internal: Addresses::default(),
            seen: Vec::with_capacity(external),
            attached: 0,
            external_domains: registrable_count(distinct.iter()) + unparseable,
            domains: distinct,
            domain_index: Vec::with_capacity(external),
            named: self.named,
        };
        for (i, (key, class, seen)) in self.all.iter().enumerate() {
            match (is_first[i], class) {
                (false, _) => {}
                (true, Class::Internal) => v.internal.push(key),
                (true, _) => {
                    v.external.push(key);
                    v.seen.push(*seen);
                    v.domain_index.push(domain_index[i]);
                    v.attached += usize::from(attached[i]);
                }
            }
        }
        v
    }
}

/// `Name <a@x>` rather than `a@x` or `<a@x>`: something other than
/// whitespace before the `<` of the mailbox.
fn has_display_name(value: &[u8], m: &MailboxRef<'_>) -> bool {
    let text = value.get(m.span.clone()).unwrap_or_default().trim_ascii();
    match (text.first(), text.last()) {
        (Some(b'<'), _) | (None, _) => false,
        // An angle-addr closes the mailbox and something precedes it: the
        // common case, decided without a scan (this runs for each of the
        // 1,494 addresses inside the decision).
        (_, Some(b'>')) => true,
        // A trailing comment, or no angle-addr at all.
        _ => text
            .iter()
            .position(|&b| b == b'<')
            .is_some_and(|lt| text[..lt].iter().any(|b| !b.is_ascii_whitespace())),
    }
}
