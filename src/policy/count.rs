//! Counting the recipients a reader will see: distinct addresses
//! (case-insensitive) in every To and Cc field, groups expanded, display
//! names never counted, split into internal and external by domain. An
//! element that cannot be parsed counts as one external address.

use std::borrow::Cow;
use std::collections::HashSet;

use super::DomainSet;
use super::domains::normalize_cow;
use crate::message::address::{Element, for_each};
use crate::message::headers::{FieldKind, Headers};

/// The visible recipients of one message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Visible {
    /// Distinct external addresses, normalised (lowercase, IDNA domain), in
    /// order of first appearance. Unparseable elements appear here as their
    /// raw text, lowercased.
    pub external: Vec<String>,
    /// Distinct internal addresses, normalised.
    pub internal: Vec<String>,
    /// Number of distinct external domains.
    pub external_domains: usize,
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

/// The key of an element that is not an address: its text, trimmed,
/// lowercased, folding removed, so the same garbage twice counts once.
fn raw_key(value: &[u8]) -> String {
    let text = String::from_utf8_lossy(value);
    let unfolded: String = text.chars().filter(|&c| c != '\r' && c != '\n').collect();
    unfolded.trim().to_lowercase()
}

/// How one distinct visible recipient counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Internal,
    External,
    /// External, and its own domain: nothing reliable can be said about it.
    Unparseable,
}

/// Every visible recipient in order, duplicates included; deduplicated
/// once at the end over borrowed keys, so each address is hashed once and
/// owned once (the parser's String, lowercased in place).
#[derive(Default)]
struct Tally {
    all: Vec<(String, Class)>,
}

impl Tally {
    fn address(&mut self, addr: String, internal: &DomainSet) {
        match normalize_owned(addr) {
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
        self.all.push((raw_key(raw), Class::Unparseable));
    }

    fn finish(self) -> Visible {
        let mut seen = HashSet::with_capacity(self.all.len());
        let first: Vec<bool> = self
            .all
            .iter()
            .map(|(k, _)| seen.insert(k.as_str()))
            .collect();
        drop(seen);
        let mut v = Visible {
            external: Vec::with_capacity(self.all.len()),
            internal: Vec::new(),
            external_domains: 0,
        };
        let mut parsed = Vec::with_capacity(self.all.len());
        for ((key, class), first) in self.all.into_iter().zip(first) {
            match (first, class) {
                (false, _) => {}
                (true, Class::Internal) => v.internal.push(key),
                (true, class) => {
                    v.external.push(key);
                    parsed.push(class == Class::External);
                }
            }
        }
        // An unparseable key is its own domain.
        let mut domains = HashSet::with_capacity(v.external.len());
        let mut unparseable = 0;
        for (key, &parsed) in v.external.iter().zip(&parsed) {
            if parsed {
                domains.insert(domain_of(key));
            } else {
                unparseable += 1;
            }
        }
        v.external_domains = domains.len() + unparseable;
        v
    }
}

/// The domain of a normalised address.
fn domain_of(addr: &str) -> &str {
    last_at(addr).map_or(addr, |at| &addr[at + 1..])
}

/// Offset of the last `@`; a plain loop, as addresses are too short for a
/// SIMD search to pay for its set-up.
fn last_at(addr: &str) -> Option<usize> {
    addr.bytes().rposition(|b| b == b'@')
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
        for_each(value, |element| match element {
            Element::Mailbox(m) => tally.address(m.address, internal),
            Element::Group {
                members, invalid, ..
            } => {
                for m in members {
                    tally.address(m.address, internal);
                }
                for span in invalid {
                    tally.unparseable(value.get(span).unwrap_or_default());
                }
            }
            Element::Invalid { span } => {
                tally.unparseable(value.get(span).unwrap_or_default());
            }
        });
    }
    tally.finish()
}

#[cfg(test)]
mod tests;
