//! Rules that match on recipients: `policy.rules[].recipients` (every
//! visible external address matches) and `policy.rules[].any_recipient`
//! (at least one does), with patterns of three forms:
//!
//! - `anna@partner.example`: that address;
//! - `*@partner.example`: every address at that domain, not its subdomains;
//! - `*.partner.example`: every address at a subdomain of it, not at the
//!   domain itself (as `*.` in `policy.internal_domains`).
//!
//! Patterns are case-insensitive and compared in the counter's normal form
//! (lowercase, IDNA ASCII domain), so `*@BÜCHER.example` and
//! `*@xn--bcher-kva.example` are one pattern.
//!
//! [`RecipientIndex`] holds the patterns of every rule at once, keyed by
//! domain: a decision looks each distinct visible domain up once for all
//! rules, and an address only when its domain has address patterns (a
//! 1,494-address list in 37 domains costs 37 lookups, not 1,494 x rules).

use std::collections::HashMap;
use std::fmt;

use super::count::{NO_DOMAIN, Visible, domain_of, normalize_address};
use super::domains::normalize;

/// One recipient pattern, in normal form.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Pattern {
    /// One address.
    Address(String),
    /// `*@domain`: every address at the domain.
    Domain(String),
    /// `*.domain`: every address at a proper subdomain of it.
    Subdomains(String),
}

/// A recipient pattern that is none of the three forms; holds it as written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an address, *@domain or *.domain")]
pub struct BadPattern(pub String);

impl Pattern {
    /// Parses one pattern as written in policy.yaml.
    pub fn parse(text: &str) -> Result<Pattern, BadPattern> {
        let bad = || BadPattern(text.to_string());
        let t = text.trim();
        if let Some(domain) = t.strip_prefix("*@") {
            return plain_domain(domain).map(Pattern::Domain).ok_or_else(bad);
        }
        if let Some(base) = t.strip_prefix("*.") {
            return plain_domain(base).map(Pattern::Subdomains).ok_or_else(bad);
        }
        // An address: no glob characters (a local part may legally hold
        // `*` or `?`, but here they would only ever be a mistaken glob),
        // nothing a mailbox has around its address.
        let (local, _) = t.rsplit_once('@').ok_or_else(bad)?;
        let forbidden =
            |c: char| c.is_whitespace() || c.is_control() || "*?<>()[],;:\"\\".contains(c);
        if local.is_empty() || local.contains('@') || t.contains(forbidden) {
            return Err(bad());
        }
        normalize_address(t).map(Pattern::Address).ok_or_else(bad)
    }

    /// Does the normalised address `addr` match?
    pub fn matches(&self, addr: &str) -> bool {
        if !addr.contains('@') {
            // An unparseable element matches no pattern (fail closed for
            // `recipients`: the rule does not apply).
            return false;
        }
        let domain = domain_of(addr);
        match self {
            Pattern::Address(a) => a == addr,
            Pattern::Domain(d) => d == domain,
            Pattern::Subdomains(base) => is_proper_subdomain(domain, base),
        }
    }

    /// Does every address this pattern matches also match `self`? Exact
    /// for these three forms (used to find shadowed rules).
    pub fn covers(&self, other: &Pattern) -> bool {
        match (self, other) {
            (Pattern::Address(a), Pattern::Address(b)) => a == b,
            (Pattern::Address(_), _) => false,
            (Pattern::Domain(d), Pattern::Address(b)) => domain_of(b) == d,
            (Pattern::Domain(d), Pattern::Domain(e)) => d == e,
            (Pattern::Domain(_), Pattern::Subdomains(_)) => false,
            (Pattern::Subdomains(base), Pattern::Address(b)) => {
                is_proper_subdomain(domain_of(b), base)
            }
            (Pattern::Subdomains(base), Pattern::Domain(e)) => is_proper_subdomain(e, base),
            (Pattern::Subdomains(base), Pattern::Subdomains(e)) => {
                e == base || is_proper_subdomain(e, base)
            }
        }
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pattern::Address(a) => f.write_str(a),
            Pattern::Domain(d) => write!(f, "*@{d}"),
            Pattern::Subdomains(d) => write!(f, "*.{d}"),
        }
    }
}

/// A domain name of a pattern: normal form, no wildcard left in it.
fn plain_domain(d: &str) -> Option<String> {
    if d.contains(['*', '?', '@']) {
        return None;
    }
    normalize(d)
}

/// `a.b.example` under `example` or `b.example`; not `example` itself, not
/// `xexample`.
fn is_proper_subdomain(domain: &str, base: &str) -> bool {
    domain.len() > base.len()
        && domain.ends_with(base)
        && domain.as_bytes()[domain.len() - base.len() - 1] == b'.'
}

/// The recipient conditions of one rule, each a list of patterns; an empty
/// list is no condition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecipientConditions {
    /// `recipients`: every visible external address matches one.
    pub every: Vec<Pattern>,
    /// `any_recipient`: at least one visible external address matches one.
    pub any: Vec<Pattern>,
}

impl RecipientConditions {
    /// No recipient condition at all.
    pub fn is_empty(&self) -> bool {
        self.every.is_empty() && self.any.is_empty()
    }

    /// Why these conditions do not hold for `visible`, pattern by pattern
    /// (the slow, direct reading `explain` prints; [`RecipientIndex`] must
    /// agree with it). `None`: they hold.
    pub fn why_not(&self, visible: &Visible) -> Option<String> {
        // An unparseable element has no domain and matches no pattern.
        let addresses = || {
            visible.external.iter().enumerate().map(|(i, a)| {
                let readable = visible.domain_index.get(i).is_some_and(|&d| d != NO_DOMAIN);
                (a, readable)
            })
        };
        let matches = |list: &[Pattern], (a, readable): (&str, bool)| {
            readable && list.iter().any(|p| p.matches(a))
        };
        let mut why = Vec::new();
        if !self.every.is_empty()
            && let Some((a, _)) = addresses().find(|&x| !matches(&self.every, x))
        {
            why.push(format!(
                "recipients: {a} matches none of {}",
                list(&self.every)
            ));
        }
        if !self.any.is_empty() && !addresses().any(|x| matches(&self.any, x)) {
            why.push(format!(
                "any_recipient: no visible external address matches {}",
                list(&self.any)
            ));
        }
        (!why.is_empty()).then(|| why.join("; "))
    }
}

/// `a, *@b, *.c`.
pub(crate) fn list(patterns: &[Pattern]) -> String {
    patterns
        .iter()
        .map(Pattern::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// A set of condition slots, one bit each: slot `2 r` is rule `r`'s
/// `recipients`, slot `2 r + 1` its `any_recipient`.
type Bits = Vec<u64>;

fn set(bits: &mut Bits, slot: usize) {
    bits[slot / 64] |= 1 << (slot % 64);
}

fn get(bits: &[u64], slot: usize) -> bool {
    bits[slot / 64] & (1 << (slot % 64)) != 0
}

fn or_into(into: &mut [u64], from: &[u64]) {
    for (a, b) in into.iter_mut().zip(from) {
        *a |= b;
    }
}

/// Keyed hasher: the looked-up names are the sender's choice.
type Hasher = foldhash::fast::RandomState;

/// The recipient patterns of every rule, by domain.
#[derive(Debug, Clone, Default)]
pub struct RecipientIndex {
    /// Words per bit set.
    words: usize,
    /// Slots in use: a rule's `recipients` or `any_recipient` list.
    used: Bits,
    /// `*@domain` patterns.
    domains: HashMap<String, Bits, Hasher>,
    /// `*.base` patterns, by base.
    subdomains: HashMap<String, Bits, Hasher>,
    /// Address patterns, by their domain, then by address.
    addresses: HashMap<String, HashMap<String, Bits, Hasher>, Hasher>,
}

/// Which rules' recipient conditions hold for one message.
#[derive(Debug, Clone)]
pub struct Held {
    every: Bits,
    any: Bits,
}

impl RecipientIndex {
    /// The index of the rules' conditions, rule `r` at `conditions[r]`.
    pub fn new<'a>(conditions: impl ExactSizeIterator<Item = &'a RecipientConditions>) -> Self {
        let words = (conditions.len() * 2).div_ceil(64).max(1);
        let mut index = RecipientIndex {
            words,
            used: vec![0; words],
            ..RecipientIndex::default()
        };
        for (r, c) in conditions.enumerate() {
            for (slot, list) in [(2 * r, &c.every), (2 * r + 1, &c.any)] {
                if list.is_empty() {
                    continue;
                }
                set(&mut index.used, slot);
                for p in list {
                    let bits = match p {
                        Pattern::Domain(d) => index.domains.entry(d.clone()),
                        Pattern::Subdomains(d) => index.subdomains.entry(d.clone()),
                        Pattern::Address(a) => index
                            .addresses
                            .entry(domain_of(a).to_string())
                            .or_default()
                            .entry(a.clone()),
                    }
                    .or_insert_with(|| vec![0; words]);
                    set(bits, slot);
                }
            }
        }
        index
    }

    /// No rule has a recipient condition (the decision skips the index).
    pub fn is_empty(&self) -> bool {
        self.used.iter().all(|&w| w == 0)
    }

    /// Evaluates every rule's recipient conditions on one message.
    pub fn evaluate(&self, visible: &Visible) -> Held {
        let w = self.words;
        // Per distinct domain: the slots its `*@` and `*.` patterns fill,
        // and whether addresses there need a look of their own.
        let mut per_domain: Vec<u64> = vec![0; visible.domains.len() * w];
        let mut exact: Vec<Option<&HashMap<String, Bits, Hasher>>> =
            Vec::with_capacity(visible.domains.len());
        for (i, d) in visible.domains.iter().enumerate() {
            let bits = &mut per_domain[i * w..(i + 1) * w];
            if let Some(b) = self.domains.get(d) {
                or_into(bits, b);
            }
            if !self.subdomains.is_empty() {
                // Every proper parent: `a.b.example` -> `b.example`, `example`.
                let mut rest = d;
                while let Some((_, parent)) = rest.split_once('.') {
                    if let Some(b) = self.subdomains.get(parent) {
                        or_into(bits, b);
                    }
                    rest = parent;
                }
            }
            exact.push(self.addresses.get(d));
        }
        let mut every = self.used.clone();
        let mut any = vec![0; w];
        // Addresses of one domain without address patterns all hold the
        // domain's slots: the domain is looked at once.
        let mut seen_domain = vec![false; visible.domains.len()];
        let mut scratch = vec![0; w];
        for (i, addr) in visible.external.iter().enumerate() {
            let di = visible.domain_index.get(i).copied().unwrap_or(NO_DOMAIN);
            if di == NO_DOMAIN {
                // Matches nothing: no `recipients` condition holds.
                every.iter_mut().for_each(|x| *x = 0);
                continue;
            }
            let di = di as usize;
            let domain_bits = &per_domain[di * w..(di + 1) * w];
            let bits: &[u64] = match exact[di].and_then(|m| m.get(addr)) {
                Some(own) => {
                    scratch.copy_from_slice(domain_bits);
                    or_into(&mut scratch, own);
                    &scratch
                }
                None if exact[di].is_none() && seen_domain[di] => continue,
                None => domain_bits,
            };
            seen_domain[di] = true;
            for k in 0..w {
                every[k] &= bits[k];
                any[k] |= bits[k];
            }
        }
        Held { every, any }
    }
}

impl Held {
    /// Do rule `r`'s recipient conditions hold (true for a rule that has
    /// none)? `index` is the one that made this.
    pub fn rule(&self, index: &RecipientIndex, r: usize) -> bool {
        let (e, a) = (2 * r, 2 * r + 1);
        (!get(&index.used, e) || get(&self.every, e)) && (!get(&index.used, a) || get(&self.any, a))
    }
}

#[cfg(test)]
mod tests;
