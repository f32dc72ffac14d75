//! Which domains are internal. Entries are exact names (`example.org`) or
//! wildcards for every subdomain (`*.example.org`, which does not match
//! `example.org` itself). Internationalised names are compared in one normal
//! form: IDNA (UTS #46) ASCII, lowercase, no trailing dot, so `müller.de` and
//! `xn--mller-kva.de` are the same domain.

/// A set of internal domains.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DomainSet {
    exact: Vec<String>,
    suffixes: Vec<String>,
}

/// Brings a domain into the normal form; `None` if it is not a valid name.
pub fn normalize(domain: &str) -> Option<String> {
    let _ = domain;
    todo!()
}

impl DomainSet {
    /// Builds the set; an entry that is not a valid domain is returned as
    /// the error (the config names its key).
    pub fn new<'a>(entries: impl IntoIterator<Item = &'a str>) -> Result<Self, String> {
        let _ = entries;
        todo!()
    }

    /// Is `domain` (any form) internal?
    pub fn contains(&self, domain: &str) -> bool {
        let _ = (domain, &self.exact, &self.suffixes);
        todo!()
    }
}
