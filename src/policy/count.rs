//! Counting the addresses a reader will see: distinct addresses
//! (case-insensitive) in every header a mail client shows with addresses
//! ([`VisibleHeaders`]: To, Cc, Reply-To, ...; From only when it holds more
//! than one), split into internal and external by domain. Each field is
//! read twice over: the strict parser gives its mailboxes (groups
//! expanded), and every address-like token a reader would recognise counts
//! too ([`crate::message::tokens`]): in display names, in comments, in the
//! RFC 2047-decoded value ([`crate::message::encoded`]), in elements that
//! do not parse. An element with no address in it at all counts as one
//! external address (fail closed). Header sections of attached messages
//! are counted the same way ([`count_with_attached`]).

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::ops::{Index, Range};

use super::DomainSet;
use super::domains::{is_normal_domain, normalize_cow};
use crate::message::address::{ElementRef, MailboxRef, for_each};
use crate::message::encoded;
use crate::message::headers::{FieldKind, Headers, scan};
use crate::message::mime::Attached;
use crate::message::tokens::{self, Place};

/// The hasher of the counter's sets. The keys are addresses a sender chose,
/// so the hash must be keyed (HashDoS: 30,000 colliding addresses in a 1 MB
/// header would make deduplication quadratic); foldhash's `RandomState` is
/// seeded per process and per set, and hashes a short string several times
/// faster than std's SipHash-1-3, which was 15% of a decision in the profile.
type KeyedHasher = foldhash::fast::RandomState;

/// The visible recipients of one message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Visible {
    /// Distinct external addresses, normalised (lowercase, IDNA domain), in
    /// order of first appearance. Unparseable elements appear here as their
    /// raw text, lowercased.
    pub external: Addresses,
    /// Distinct internal addresses, normalised.
    pub internal: Addresses,
    /// Where each external address was first seen, in the order of
    /// `external`.
    pub seen: Vec<Seen>,
    /// Distinct external addresses seen in the header of an attached
    /// message (also when they are visible at the top level too).
    pub attached: usize,
    /// Number of distinct external domains.
    pub external_domains: usize,
    /// Mailboxes shown with a display name (`Name <a@x>`), internal ones and
    /// repeats included: for Art. 33, names were disclosed along with the
    /// addresses. Counted in the same pass (a second parse of the list for
    /// the incident record cost half a decision).
    pub named: usize,
}

impl Visible {
    /// Where the external addresses are visible, for the client's reply and
    /// the notices: `To/Cc` (To and Cc read as one, as before), other
    /// headers by name, `an attached message`: "To/Cc, Reply-To and an
    /// attached message".
    pub fn places(&self, headers: &VisibleHeaders) -> String {
        let mut ids: Vec<u8> = self
            .seen
            .iter()
            .filter(|s| !s.attached)
            .map(|s| s.header)
            .collect();
        ids.sort_unstable();
        ids.dedup();
        let mut names: Vec<String> = Vec::new();
        let to_cc = ids.iter().any(|&i| {
            ["to", "cc"]
                .iter()
                .any(|n| n.eq_ignore_ascii_case(headers.name(i)))
        });
        if to_cc {
            names.push("To/Cc".into());
        }
        for &i in &ids {
            let name = headers.name(i);
            if !["to", "cc"].iter().any(|n| n.eq_ignore_ascii_case(name)) {
                names.push(name.to_string());
            }
        }
        if self.attached > 0 {
            names.push("an attached message".into());
        }
        match names.len() {
            0 => "To/Cc".into(),
            1 => names.remove(0),
            n => {
                let last = names.remove(n - 1);
                format!("{} and {last}", names.join(", "))
            }
        }
    }
}

/// A list of addresses kept in one buffer: 1,494 addresses cost two
/// allocations instead of 1,494 (malloc and free of one String per address
/// were a fifth of a decision in the profile). Indexing and iteration give
/// `&str`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Addresses {
    text: String,
    /// Where each address ends in `text`.
    ends: Vec<usize>,
}

impl Addresses {
    fn with_capacity(addresses: usize, bytes: usize) -> Self {
        Self {
            text: String::with_capacity(bytes),
            ends: Vec::with_capacity(addresses),
        }
    }

    fn push(&mut self, address: &str) {
        self.text.push_str(address);
        self.ends.push(self.text.len());
    }

    /// How many addresses.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// No address at all.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The `i`-th address.
    pub fn get(&self, i: usize) -> Option<&str> {
        let end = *self.ends.get(i)?;
        let start = i.checked_sub(1).map_or(0, |p| self.ends[p]);
        self.text.get(start..end)
    }

    /// The addresses as owned strings.
    pub fn to_vec(&self) -> Vec<String> {
        self.iter().map(str::to_string).collect()
    }

    /// The addresses in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        (0..self.len()).map(|i| self.get(i).unwrap_or_default())
    }
}

impl Index<usize> for Addresses {
    type Output = str;

    /// Like a slice: panics when `i` is out of range.
    fn index(&self, i: usize) -> &str {
        match self.get(i) {
            Some(a) => a,
            None => panic!("address {i} of {}", self.len()),
        }
    }
}

impl fmt::Debug for Addresses {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<const N: usize> PartialEq<[&str; N]> for Addresses {
    fn eq(&self, other: &[&str; N]) -> bool {
        self.iter().eq(other.iter().copied())
    }
}

/// Normalises an addr-spec for comparison: lowercase, domain in IDNA ASCII
/// form. Returns `None` when there is no `@` or the domain is invalid.
///
/// The whole address is lowercased, local part included: RFC 5321 2.4 lets
/// the receiving host treat the local part case-sensitively, but a reader
/// sees `Anna@x` and `anna@x` as one person, and counting them as one keeps
/// the count honest. The split is at the last `@` (a quoted local part may
/// hold one).
pub fn normalize_address(addr: &str) -> Option<String> {
    normalize_owned(addr.to_owned()).ok()
}

/// [`normalize_address`] reusing the parser's String: lowercasing an ASCII
/// local part happens in place, so an address costs one allocation, not
/// two. Gives the address back unchanged when it cannot be normalised.
pub(crate) fn normalize_owned(mut addr: String) -> Result<String, String> {
    let Some(at) = last_at(&addr) else {
        return Err(addr);
    };
    let (local, domain) = (&addr[..at], &addr[at + 1..]);
    if local.is_empty() {
        return Err(addr);
    }
    let Some(normal) = normalize_cow(domain) else {
        return Err(addr);
    };
    if matches!(&normal, Cow::Borrowed(d) if d.len() == domain.len()) && local.is_ascii() {
        addr[..at].make_ascii_lowercase();
        return Ok(addr);
    }
    let mut out = String::with_capacity(addr.len() + 8);
    if local.is_ascii() {
        out.push_str(local);
        out.make_ascii_lowercase();
    } else {
        out.push_str(&local.to_lowercase());
    }
    out.push('@');
    out.push_str(&normal);
    Ok(out)
}

/// [`normalize_owned`] for a parser address that may still borrow from the
/// message: an address already in normal form (lowercase ASCII local part,
/// plain lowercase domain), which is nearly every address of a real list,
/// is returned as it is, without allocating. Gives the address back
/// unchanged when it cannot be normalised.
pub(crate) fn normalize_cow_address(addr: Cow<'_, str>) -> Result<Cow<'_, str>, Cow<'_, str>> {
    if is_normal(&addr) {
        return Ok(addr);
    }
    match addr {
        Cow::Borrowed(b) => normalize_owned(b.to_owned())
            .map(Cow::Owned)
            .map_err(|_| Cow::Borrowed(b)),
        Cow::Owned(o) => normalize_owned(o).map(Cow::Owned).map_err(Cow::Owned),
    }
}

/// Is `addr` what [`normalize_owned`] would return for it? One pass over
/// the bytes; `false` sends the address the slow, exact way.
fn is_normal(addr: &str) -> bool {
    let Some(at) = last_at(addr) else {
        return false;
    };
    let (local, domain) = (&addr.as_bytes()[..at], &addr[at + 1..]);
    !local.is_empty()
        && local
            .iter()
            .all(|&b| b.is_ascii() && !b.is_ascii_uppercase())
        && is_normal_domain(domain)
}

/// The key of an element that is not an address: its text, trimmed,
/// lowercased, folding removed, so the same garbage twice counts once.
fn raw_key(value: &[u8]) -> String {
    let text = String::from_utf8_lossy(value);
    let unfolded: String = text.chars().filter(|&c| c != '\r' && c != '\n').collect();
    // Only folding white space is trimmed: `str::trim` also strips vertical
    // tab and form feed, which made `\x0b@` and `\x0b\x0b@` one key, so
    // two different elements counted once (found by fuzzing).
    unfolded.trim_matches([' ', '\t']).to_lowercase()
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
    pub fn new<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<Self, String> {
        let mut out: Vec<String> = Vec::new();
        for name in names {
            let name = name.trim();
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic() && b != b':') {
                return Err(format!("{name:?} is not a header field name"));
            }
            if Self::REMOVED.iter().any(|r| r.eq_ignore_ascii_case(name)) {
                return Err(format!(
                    "{name} is always removed before relaying, never visible"
                ));
            }
            if !out.iter().any(|n| n.eq_ignore_ascii_case(name)) {
                out.push(name.to_string());
            }
        }
        for must in ["To", "Cc"] {
            if !out.iter().any(|n| n.eq_ignore_ascii_case(must)) {
                return Err(format!("must include {must}"));
            }
        }
        if out.len() > usize::from(u8::MAX) {
            return Err("more than 255 names".into());
        }
        Ok(Self { names: out })
    }

    /// The configured names.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The name of header `i` (as in [`Seen::header`]).
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

/// How an address was seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum How {
    /// A mailbox's own address (addr-spec).
    Address,
    /// In a display name (or a group name).
    DisplayName,
    /// In a comment.
    Comment,
    /// In the RFC 2047-decoded value.
    EncodedWord,
    /// A token of an element that does not parse, or the element itself
    /// when it holds none.
    Unparseable,
}

impl How {
    /// The words used in `explain` and incident records.
    pub fn as_str(self) -> &'static str {
        match self {
            How::Address => "address",
            How::DisplayName => "display name",
            How::Comment => "comment",
            How::EncodedWord => "encoded word",
            How::Unparseable => "unparseable token",
        }
    }
}

/// Where one address was seen first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    /// Index into [`VisibleHeaders::names`].
    pub header: u8,
    /// How it was written there.
    pub how: How,
    /// In the header of an attached message, not the message's own.
    pub attached: bool,
}

impl Seen {
    /// `Reply-To, display name` / `To, address, attached message`.
    pub fn describe(&self, headers: &VisibleHeaders) -> String {
        let mut s = format!("{}, {}", headers.name(self.header), self.how.as_str());
        if self.attached {
            s.push_str(", attached message");
        }
        s
    }
}

/// How one distinct visible recipient counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Internal,
    External,
    /// External, and its own domain: nothing reliable can be said about it.
    Unparseable,
}

/// Every visible recipient in order, duplicates included, keys still
/// borrowing from the message where they can; deduplicated once at the end,
/// in one pass that also counts the external domains, so each address is
/// hashed once and copied once (into [`Addresses`]).
struct Tally<'a, 'p> {
    all: Vec<(Cow<'a, str>, Class, Seen)>,
    named: usize,
    internal: &'p DomainSet,
    /// The field being read has decoded readings ([`encoded::readings`]).
    words: bool,
    /// Where the next entries are seen.
    at: Seen,
}

impl<'a, 'p> Tally<'a, 'p> {
    fn new(internal: &'p DomainSet) -> Self {
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
    fn section(&mut self, msg: &'a [u8], headers: &Headers, visible: &VisibleHeaders) {
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

    fn finish(self) -> Visible {
        let n = self.all.len();
        let mut first: HashMap<&str, usize, KeyedHasher> =
            HashMap::with_capacity_and_hasher(n, KeyedHasher::default());
        let mut domains = HashSet::with_capacity_and_hasher(n, KeyedHasher::default());
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
                            domains.insert(domain_of(key));
                        }
                        Class::Unparseable => unparseable += 1,
                        Class::Internal => internal += 1,
                    }
                }
            }
        }
        let external_domains = domains.len() + unparseable;
        let external = first.len() - internal;
        let bytes = first.keys().map(|k| k.len()).sum();
        drop((first, domains));
        let mut v = Visible {
            external: Addresses::with_capacity(external, bytes),
            internal: Addresses::default(),
            seen: Vec::with_capacity(external),
            attached: 0,
            external_domains,
            named: self.named,
        };
        for (i, (key, class, seen)) in self.all.iter().enumerate() {
            match (is_first[i], class) {
                (false, _) => {}
                (true, Class::Internal) => v.internal.push(key),
                (true, _) => {
                    v.external.push(key);
                    v.seen.push(*seen);
                    v.attached += usize::from(attached[i]);
                }
            }
        }
        v
    }
}

/// The domain of a normalised address.
pub(crate) fn domain_of(addr: &str) -> &str {
    last_at(addr).map_or(addr, |at| &addr[at + 1..])
}

/// Offset of the last `@`; a plain loop, as addresses are too short for a
/// SIMD search to pay for its set-up.
fn last_at(addr: &str) -> Option<usize> {
    addr.bytes().rposition(|b| b == b'@')
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

/// Counts the visible addresses in the header section `headers` of `msg`.
pub fn count(msg: &[u8], headers: &Headers, policy: &super::Policy) -> Visible {
    count_with_attached(msg, headers, policy, &[])
}

/// [`count`], plus the header sections of attached messages (each with
/// its own originator rule).
pub fn count_with_attached(
    msg: &[u8],
    headers: &Headers,
    policy: &super::Policy,
    attached: &[Attached],
) -> Visible {
    let mut tally = Tally::new(&policy.internal_domains);
    tally.section(msg, headers, &policy.visible_headers);
    for a in attached {
        // Scanned before (the walk checked the size), so this cannot fail.
        let Ok(h) = scan(&a.header, a.header.len()) else {
            continue;
        };
        let mut inner = Tally::new(&policy.internal_domains);
        inner.at.attached = true;
        inner.section(&a.header, &h, &policy.visible_headers);
        tally.named += inner.named;
        tally.all.extend(
            inner
                .all
                .into_iter()
                .map(|(k, c, s)| (Cow::Owned(k.into_owned()), c, s)),
        );
    }
    tally.finish()
}

#[cfg(test)]
mod tests;
