//! Counting the recipients a reader will see: distinct addresses
//! (case-insensitive) in every To and Cc field, groups expanded, display
//! names never counted, split into internal and external by domain. An
//! element that cannot be parsed counts as one external address.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;
use std::ops::Index;

use super::DomainSet;
use super::domains::{is_normal_domain, normalize_cow};
use crate::message::address::{ElementRef, MailboxRef, for_each};
use crate::message::headers::{FieldKind, Headers};

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
    /// Number of distinct external domains.
    pub external_domains: usize,
    /// Mailboxes shown with a display name (`Name <a@x>`), internal ones and
    /// repeats included: for Art. 33, names were disclosed along with the
    /// addresses. Counted in the same pass (a second parse of the list for
    /// the incident record cost half a decision).
    pub named: usize,
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
#[derive(Default)]
struct Tally<'a> {
    all: Vec<(Cow<'a, str>, Class)>,
    named: usize,
}

impl<'a> Tally<'a> {
    fn address(&mut self, m: MailboxRef<'a>, internal: &DomainSet) {
        let normal = if m.normal {
            Ok(m.address)
        } else {
            normalize_cow_address(m.address)
        };
        match normal {
            Ok(n) => {
                let class = if internal.contains_normal(domain_of(&n)) {
                    Class::Internal
                } else {
                    Class::External
                };
                self.all.push((n, class));
            }
            // Parsed but not countable by domain (a domain literal, a name
            // IDNA rejects): external, fail closed.
            Err(addr) => self.unparseable(addr.as_bytes()),
        }
    }

    fn unparseable(&mut self, raw: &[u8]) {
        self.all
            .push((Cow::Owned(raw_key(raw)), Class::Unparseable));
    }

    fn finish(self) -> Visible {
        let n = self.all.len();
        let mut seen = HashSet::with_capacity_and_hasher(n, KeyedHasher::default());
        let mut domains = HashSet::with_capacity_and_hasher(n, KeyedHasher::default());
        // An unparseable key is its own domain.
        let (mut unparseable, mut internal) = (0, 0);
        let first: Vec<bool> = self
            .all
            .iter()
            .map(|(key, class)| {
                let first = seen.insert(key.as_ref());
                match class {
                    _ if !first => {}
                    Class::External => {
                        domains.insert(domain_of(key));
                    }
                    Class::Unparseable => unparseable += 1,
                    Class::Internal => internal += 1,
                }
                first
            })
            .collect();
        let external_domains = domains.len() + unparseable;
        let external = seen.len() - internal;
        let bytes = seen.iter().map(|k| k.len()).sum();
        drop((seen, domains));
        let mut v = Visible {
            external: Addresses::with_capacity(external, bytes),
            internal: Addresses::default(),
            external_domains,
            named: self.named,
        };
        for ((key, class), first) in self.all.iter().zip(first) {
            match (first, class) {
                (false, _) => {}
                (true, Class::Internal) => v.internal.push(key),
                (true, _) => v.external.push(key),
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

/// Counts the visible recipients in `headers` of `msg`.
pub fn count(msg: &[u8], headers: &Headers, internal: &DomainSet) -> Visible {
    let mut tally = Tally::default();
    let fields = headers
        .fields
        .iter()
        .filter(|f| matches!(f.kind, FieldKind::To | FieldKind::Cc));
    for field in fields {
        let Some(value) = msg.get(field.value.clone()) else {
            continue;
        };
        // About one element per comma: reserved up front instead of
        // doubling through 1,494 pushes (a SIMD count, cheap next to them).
        tally
            .all
            .reserve(memchr::memchr_iter(b',', value).count() + 1);
        for_each(value, |element| match element {
            ElementRef::Mailbox(m) => {
                tally.named += usize::from(has_display_name(value, &m));
                tally.address(m, internal);
            }
            ElementRef::Group {
                members, invalid, ..
            } => {
                for m in members {
                    tally.named += usize::from(has_display_name(value, &m));
                    tally.address(m, internal);
                }
                for span in invalid {
                    tally.unparseable(value.get(span).unwrap_or_default());
                }
            }
            ElementRef::Invalid { span } => {
                tally.unparseable(value.get(span).unwrap_or_default());
            }
        });
    }
    tally.finish()
}

#[cfg(test)]
mod tests;
