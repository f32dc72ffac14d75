//! The counter's address list and the normal form in which addresses are
//! compared: one buffer for all of a message's addresses, lowercase, the
//! domain in IDNA ASCII form.

use super::*;

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
    pub(super) fn with_capacity(addresses: usize, bytes: usize) -> Self {
        Self {
            text: String::with_capacity(bytes),
            ends: Vec::with_capacity(addresses),
        }
    }

    pub(super) fn push(&mut self, address: &str) {
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

impl<'a> FromIterator<&'a str> for Addresses {
    fn from_iter<I: IntoIterator<Item = &'a str>>(iter: I) -> Self {
        let mut out = Addresses::default();
        for a in iter {
            out.push(a);
        }
        out
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
pub(super) fn raw_key(value: &[u8]) -> String {
    let text = String::from_utf8_lossy(value);
    let unfolded: String = text.chars().filter(|&c| c != '\r' && c != '\n').collect();
    // Only folding white space is trimmed: `str::trim` also strips vertical
    // tab and form feed, which made `\x0b@` and `\x0b\x0b@` one key, so
    // two different elements counted once (found by fuzzing).
    unfolded.trim_matches([' ', '\t']).to_lowercase()
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
