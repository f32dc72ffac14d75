//! Which domains are internal. Entries are exact names (`example.org`) or
//! wildcards for every subdomain (`*.example.org`, which does not match
//! `example.org` itself). Internationalised names are compared in one normal
//! form: IDNA (UTS #46) ASCII, lowercase, no trailing dot, so `müller.de` and
//! `xn--mller-kva.de` are the same domain.
//!
//! [`registrable`] names the counterparty a domain belongs to, by the
//! Public Suffix List (the `psl` crate, compiled in): `mail.partner.co.uk`
//! and `partner.co.uk` are one, `a.gv.at` and `b.gv.at` are two.

use std::borrow::Cow;
use std::collections::HashSet;

/// A set of internal domains.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DomainSet {
    /// Normalised names, sorted and deduplicated (binary search).
    exact: Vec<String>,
    /// Normalised wildcard bases with their leading dot (`.example.org`).
    suffixes: Vec<String>,
}

/// Brings a domain into the normal form; `None` if it is not a valid name.
pub fn normalize(domain: &str) -> Option<String> {
    normalize_cow(domain).map(Cow::into_owned)
}

/// [`normalize`] without allocating when the name is already normal, which
/// is the common case on the hot path (the counter normalises every address
/// first, so [`DomainSet::contains`] mostly sees normal names).
pub(crate) fn normalize_cow(domain: &str) -> Option<Cow<'_, str>> {
    // An absolute name (`example.org.`) is the same domain.
    let d = domain.strip_suffix('.').unwrap_or(domain);
    match plain(d.as_bytes()) {
        Plain::Normal => Some(Cow::Borrowed(d)),
        Plain::Upper => Some(Cow::Owned(d.to_ascii_lowercase())),
        Plain::Invalid => None,
        Plain::No => {
            // UTS #46 maps case, width and compatibility forms and turns
            // U-labels into punycode, so `MÜLLER.de` == `xn--mller-kva.de`.
            let ascii = idna::domain_to_ascii(d).ok()?;
            is_hostname(&ascii).then_some(Cow::Owned(ascii))
        }
    }
}

/// Is `domain` already in normal form ([`normalize`] would return it
/// unchanged)? The counter's check before it borrows an address as it is.
pub(crate) fn is_normal_domain(domain: &str) -> bool {
    plain(domain.as_bytes()) == Plain::Normal
}

/// What a single pass over an ASCII name found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plain {
    /// Already in normal form.
    Normal,
    /// Normal form up to ASCII case.
    Upper,
    /// Letters, digits, `-`, `_` only, but an empty label: no host name.
    Invalid,
    /// Something idna must look at (non-ASCII, other bytes, `xn--`).
    No,
}

/// Byte classes of [`plain`], one table lookup per byte (the check runs
/// for every address of a 1,494-address list).
const LOWER: u8 = 1;
const UPPER: u8 = 2;
const DOT: u8 = 3;
const OTHER: u8 = 0;

static CLASS: [u8; 256] = {
    let mut t = [OTHER; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = match c {
            b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' => LOWER,
            b'A'..=b'Z' => UPPER,
            b'.' => DOT,
            _ => OTHER,
        };
        b += 1;
    }
    t
};

/// Letters, digits, `-`, `_`, `.` and no punycode label: UTS #46 would
/// return such a name unchanged up to ASCII case, so idna is skipped (a
/// proptest checks the two agree).
fn plain(b: &[u8]) -> Plain {
    let (mut upper, mut empty) = (false, b.is_empty());
    // At the start of a label (the name's start, or after a dot).
    let mut label_start = true;
    for (i, &c) in b.iter().enumerate() {
        match CLASS[usize::from(c)] {
            DOT => {
                empty |= label_start;
                label_start = true;
                continue;
            }
            LOWER => {}
            UPPER => upper = true,
            _ => return Plain::No,
        }
        // A punycode label must be decoded and checked by idna.
        if label_start
            && b.get(i..i + 4)
                .is_some_and(|l| l.eq_ignore_ascii_case(b"xn--"))
        {
            return Plain::No;
        }
        label_start = false;
    }
    match (empty || label_start, upper) {
        (true, _) => Plain::Invalid,
        (false, true) => Plain::Upper,
        (false, false) => Plain::Normal,
    }
}

/// The ASCII result is a host name: non-empty labels of lowercase letters,
/// digits, `-` and `_`. idna with an empty deny list lets `!`, `*`, `%` and
/// friends through; no mail domain has them.
fn is_hostname(d: &str) -> bool {
    plain(d.as_bytes()) == Plain::Normal || (d.contains("xn--") && punycode_hostname(d))
}

/// [`is_hostname`] for a name with punycode labels (already checked by
/// idna, so only the character set and empty labels remain).
fn punycode_hostname(d: &str) -> bool {
    d.split('.').all(|l| {
        !l.is_empty()
            && l.bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'-' | b'_'))
    })
}

/// The registrable domain of a normalised name: the public suffix plus one
/// label (`mail.partner.co.uk` -> `partner.co.uk`). A name that is itself a
/// public suffix (`co.uk`, a single label) stands for itself. A TLD the
/// list does not know is a suffix of one label (the list's default rule
/// `*`), so `x.mail5.test` -> `mail5.test`. Names in the list's private
/// section count as suffixes too: `a.github.io` and `b.github.io` are
/// different people.
pub fn registrable(domain: &str) -> &str {
    psl::domain_str(domain).unwrap_or(domain)
}

/// How many registrable domains the distinct normalised `domains` span.
pub fn registrable_count<'a>(domains: impl IntoIterator<Item = &'a str>) -> usize {
    // Keyed hasher: the names are the sender's choice (see count.rs).
    let mut seen: HashSet<&str, foldhash::fast::RandomState> = HashSet::default();
    for d in domains {
        seen.insert(registrable(d));
    }
    seen.len()
}

/// An entry of `policy.internal_domains` that is neither a domain name nor
/// a `*.domain` wildcard; it holds the entry as written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a domain name or *.domain wildcard")]
pub struct BadDomain(pub String);

impl DomainSet {
    /// Builds the set; the error holds the entry that is not a valid domain
    /// (the config names its key).
    pub fn new<'a>(entries: impl IntoIterator<Item = &'a str>) -> Result<Self, BadDomain> {
        let mut set = DomainSet::default();
        for entry in entries {
            let e = entry.trim();
            let (list, name, prefix) = match e.strip_prefix("*.") {
                Some(base) => (&mut set.suffixes, base, "."),
                None => (&mut set.exact, e, ""),
            };
            let n = normalize_cow(name).ok_or_else(|| BadDomain(entry.to_string()))?;
            list.push(format!("{prefix}{n}"));
        }
        for list in [&mut set.exact, &mut set.suffixes] {
            list.sort_unstable();
            list.dedup();
        }
        Ok(set)
    }

    /// Is `domain` (any form) internal?
    pub fn contains(&self, domain: &str) -> bool {
        normalize_cow(domain).is_some_and(|d| self.contains_normal(&d))
    }

    /// [`DomainSet::contains`] for a name already in normal form.
    pub(crate) fn contains_normal(&self, d: &str) -> bool {
        self.exact.binary_search_by(|e| e.as_str().cmp(d)).is_ok()
            || self.suffixes.iter().any(|s| d.ends_with(s.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn normalize_table() {
        let cases: &[(&str, Option<&str>)] = &[
            ("example.org", Some("example.org")),
            ("Example.ORG", Some("example.org")),
            ("example.org.", Some("example.org")),
            ("example.org..", None),
            ("müller.de", Some("xn--mller-kva.de")),
            ("MÜLLER.de", Some("xn--mller-kva.de")),
            ("xn--mller-kva.de", Some("xn--mller-kva.de")),
            ("XN--MLLER-KVA.DE", Some("xn--mller-kva.de")),
            ("ｅｘａｍｐｌｅ.org", Some("example.org")),
            ("xn--zz-.de", None),
            ("", None),
            (".", None),
            (".a", None),
            ("a..b", None),
            ("a b.de", None),
            ("a!b.de", None),
            ("[192.0.2.1]", None),
            ("mail_host.example", Some("mail_host.example")),
        ];
        for (input, want) in cases {
            assert_eq!(normalize(input).as_deref(), *want, "input {input:?}");
        }
    }

    #[test]
    fn set_table() {
        let set = DomainSet::new([
            "example.org",
            "*.corp.example",
            "xn--mller-kva.de",
            "*.BÜRO.de",
        ])
        .expect("valid");
        let cases: &[(&str, bool)] = &[
            ("example.org", true),
            ("EXAMPLE.org.", true),
            ("sub.example.org", false),
            ("corp.example", false),
            ("a.corp.example", true),
            ("a.b.c.corp.example", true),
            ("acorp.example", false),
            ("müller.de", true),
            ("xn--mller-kva.de", true),
            ("x.büro.de", true),
            ("x.xn--bro-hoa.de", true),
            ("büro.de", false),
            ("evil.org", false),
            ("", false),
        ];
        for (d, want) in cases {
            assert_eq!(set.contains(d), *want, "domain {d:?}");
        }
        let reverse = DomainSet::new(["müller.de"]).expect("valid");
        assert!(reverse.contains("xn--mller-kva.de"));
    }

    #[test]
    fn registrable_table() {
        let cases: &[(&str, &str)] = &[
            ("example.org", "example.org"),
            ("mail.example.org", "example.org"),
            ("a.b.c.example.org", "example.org"),
            ("partner.co.uk", "partner.co.uk"),
            ("mail.partner.co.uk", "partner.co.uk"),
            ("co.uk", "co.uk"),
            ("uk", "uk"),
            ("bmi.gv.at", "bmi.gv.at"),
            ("mail.bmi.gv.at", "bmi.gv.at"),
            ("gv.at", "gv.at"),
            ("firma.at", "firma.at"),
            ("xn--bcher-kva.example", "xn--bcher-kva.example"),
            ("shop.xn--bcher-kva.example", "xn--bcher-kva.example"),
            ("xn--mller-kva.de", "xn--mller-kva.de"),
            ("post.xn--mller-kva.de", "xn--mller-kva.de"),
            // пример.рф: an IDN TLD, in its ASCII form.
            ("mail.xn--e1afmkfd.xn--p1ai", "xn--e1afmkfd.xn--p1ai"),
            ("mail5.test", "mail5.test"),
            ("x.mail5.test", "mail5.test"),
            ("alice.github.io", "alice.github.io"),
            ("localhost", "localhost"),
        ];
        for (d, want) in cases {
            assert_eq!(registrable(d), *want, "domain {d:?}");
        }
    }

    #[test]
    fn registrable_count_table() {
        let n = |ds: &[&str]| {
            let normal: Vec<String> = ds.iter().map(|d| normalize(d).expect(d)).collect();
            registrable_count(normal.iter().map(String::as_str))
        };
        let cases: &[(&[&str], usize)] = &[
            (&[], 0),
            (&["a.example.org", "b.example.org", "example.org"], 1),
            (&["partner.co.uk", "mail.partner.co.uk", "other.co.uk"], 2),
            (&["bmi.gv.at", "bmf.gv.at", "mail.bmi.gv.at"], 2),
            (
                &[
                    "bücher.example",
                    "xn--bcher-kva.example",
                    "shop.BÜCHER.example",
                ],
                1,
            ),
            (&["gmx.de", "web.de", "t-online.de", "gmail.com"], 4),
            (&["co.uk", "x.co.uk"], 2),
        ];
        for (ds, want) in cases {
            assert_eq!(n(ds), *want, "domains {ds:?}");
        }
    }

    #[test]
    fn bad_entries_are_named() {
        assert_eq!(
            DomainSet::new(["ok.org", "bad domain"]),
            Err(BadDomain("bad domain".into()))
        );
        assert_eq!(DomainSet::new(["*."]), Err(BadDomain("*.".into())));
        assert_eq!(DomainSet::new([""]), Err(BadDomain("".into())));
    }

    proptest! {
        /// The fast path agrees with idna wherever it is taken.
        #[test]
        fn fast_path_matches_idna(d in "[a-zA-Z0-9._-]{0,20}") {
            let slow = idna::domain_to_ascii(d.strip_suffix('.').unwrap_or(&d))
                .ok()
                .filter(|s| is_hostname(s));
            prop_assert_eq!(normalize(&d), slow);
        }
    }
}
