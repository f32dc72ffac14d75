//! Counting the recipients a reader will see: distinct addresses
//! (case-insensitive) in every To and Cc field, groups expanded, display
//! names never counted, split into internal and external by domain. An
//! element that cannot be parsed counts as one external address.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use super::DomainSet;
use super::domains::normalize_cow;
use crate::message::address::{Element, parse_list};
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
    let at = addr.rfind('@')?;
    let (local, domain) = (&addr[..at], &addr[at + 1..]);
    if local.is_empty() {
        return None;
    }
    let domain = normalize_cow(domain)?;
    let mut out = String::with_capacity(addr.len());
    if local.is_ascii() {
        out.extend(local.bytes().map(|b| char::from(b.to_ascii_lowercase())));
    } else {
        out.push_str(&local.to_lowercase());
    }
    out.push('@');
    out.push_str(&domain);
    Some(out)
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

/// Distinct recipients in order of first appearance. One map entry per
/// address, keyed by the normalised String itself (no second copy).
#[derive(Default)]
struct Tally {
    /// Key -> (order of first appearance, class).
    seen: HashMap<String, (usize, Class)>,
}

impl Tally {
    fn address(&mut self, addr: &str, internal: &DomainSet) {
        let Some(n) = normalize_address(addr) else {
            // Parsed but not countable by domain (a domain literal, a name
            // IDNA rejects): external, fail closed.
            return self.unparseable(addr.as_bytes());
        };
        let order = self.seen.len();
        if let Entry::Vacant(slot) = self.seen.entry(n) {
            let class = if internal.contains(domain_of(slot.key())) {
                Class::Internal
            } else {
                Class::External
            };
            slot.insert((order, class));
        }
    }

    fn unparseable(&mut self, raw: &[u8]) {
        let order = self.seen.len();
        self.seen
            .entry(raw_key(raw))
            .or_insert((order, Class::Unparseable));
    }

    fn finish(self) -> Visible {
        let mut slots: Vec<Option<(String, Class)>> = vec![None; self.seen.len()];
        for (key, (order, class)) in self.seen {
            if let Some(slot) = slots.get_mut(order) {
                *slot = Some((key, class));
            }
        }
        let mut v = Visible::default();
        let mut classes = Vec::new();
        for (key, class) in slots.into_iter().flatten() {
            if class == Class::Internal {
                v.internal.push(key);
            } else {
                v.external.push(key);
                classes.push(class);
            }
        }
        let mut domains: Vec<&str> = v
            .external
            .iter()
            .zip(&classes)
            .map(|(key, &class)| match class {
                Class::Unparseable => key.as_str(),
                _ => domain_of(key),
            })
            .collect();
        domains.sort_unstable();
        domains.dedup();
        v.external_domains = domains.len();
        v
    }
}

/// The domain of a normalised address.
fn domain_of(addr: &str) -> &str {
    addr.rfind('@').map_or(addr, |at| &addr[at + 1..])
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
        for element in parse_list(value) {
            match element {
                Element::Mailbox(m) => tally.address(&m.address, internal),
                Element::Group {
                    members, invalid, ..
                } => {
                    for m in members {
                        tally.address(&m.address, internal);
                    }
                    for span in invalid {
                        tally.unparseable(value.get(span).unwrap_or_default());
                    }
                }
                Element::Invalid { span } => {
                    tally.unparseable(value.get(span).unwrap_or_default());
                }
            }
        }
    }
    tally.finish()
}

#[cfg(test)]
mod tests;
