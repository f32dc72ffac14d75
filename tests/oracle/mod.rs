//! The oracles the counter is compared with, one copy each, shared by the
//! property tests (tests/properties.rs) and the cargo-fuzz target
//! (fuzz/fuzz_targets/decide_hide.rs):
//! - the deliberately lenient reader ([`lenient_external`]), written apart
//!   from src/message/tokens.rs on purpose: a regular expression over what
//!   mail-parser decodes, so a bug in the guard's reader is not repeated
//!   here;
//! - mail-parser's own reading of To and Cc ([`mail_parser_to_cc`], in
//!   displayed.rs, which the counter's unit tests include as well), as the
//!   persons a reader sees ([`mail_parser_persons`]) or as the addresses
//!   it shows ([`mail_parser_addresses`]).

// Shared by the property tests and the fuzz target; each uses a part.
#![allow(dead_code)]

mod displayed;

use bccguard::policy::count::normalize_address;
use bccguard::policy::{DomainSet, VisibleHeaders};
pub use displayed::{Read, mail_parser_to_cc};

/// Distinct addresses mail-parser finds in To and Cc of the whole message,
/// in the guard's normal form for the comparison: the person a reader
/// takes each for ([`person`]: lowercase, and without the root dot of a
/// fully qualified domain, as `a@example.org.` is the mailbox
/// `a@example.org`; a reader sees one person twice, not two people).
pub fn mail_parser_persons(msg: &str) -> Vec<String> {
    mail_parser_to_cc(msg.as_bytes(), Read::Message, |a| {
        a.contains('@').then(|| person(a))
    })
    .unwrap_or_default()
}

/// Distinct addresses mail-parser finds in To and Cc of a header section,
/// each as the address it shows ([`address_shaped`]): `\x07x@y` and `x@y`
/// are one person to a reader; `t_@____` and `$@.example` are no address at
/// all (the guard's tokens have a dotted domain: docs/policy.md, "How it decides").
pub fn mail_parser_addresses(head: &[u8]) -> Vec<String> {
    mail_parser_to_cc(head, Read::Headers, |a| {
        a.contains('@').then(|| address_shaped(a)).flatten()
    })
    .unwrap_or_default()
}

/// The lenient reader: for every visible header, the value as mail-parser
/// decodes an unstructured field (RFC 2047 words, folding), then every
/// address-like token a regular expression finds: a run of atext, dots and
/// non-ASCII before an `@` (leading dots and apostrophes dropped), a
/// domain literal or a run of letters, digits,
/// `-`, `_`, dots and non-ASCII after it with a dot inside. A raw token
/// holding encoded-word syntax (`=?`, `?=`) is read decoded instead. From
/// and Resent-From each count only when they show more than one address
/// (`originators: false` leaves them out).
/// Returns the distinct external addresses, normalised as the guard does.
pub fn lenient_external(msg: &str, internal: &DomainSet, originators: bool) -> Vec<String> {
    use std::collections::BTreeSet;
    let token = token_regex();
    let visible = VisibleHeaders::default();
    let head = msg.split("\r\n\r\n").next().unwrap_or_default();
    // Unfold into (name, value) fields.
    let mut fields: Vec<(String, String)> = Vec::new();
    for line in head.split("\r\n") {
        if line.starts_with([' ', '\t']) {
            if let Some(last) = fields.last_mut() {
                last.1.push_str(line);
            }
        } else if let Some((n, v)) = line.split_once(':') {
            fields.push((n.trim().to_string(), v.to_string()));
        }
    }
    let mut seen = BTreeSet::new();
    let mut from: std::collections::BTreeMap<String, BTreeSet<String>> = Default::default();
    for (name, value) in fields {
        if !visible
            .names()
            .iter()
            .any(|n| n.eq_ignore_ascii_case(&name))
        {
            continue;
        }
        let raw = format!("Subject:{value}\r\n\r\n");
        let decoded = mail_parser::MessageParser::default()
            .parse_headers(raw.as_bytes())
            .and_then(|m| m.subject().map(str::to_string))
            .unwrap_or_default();
        let originator = ["from", "resent-from"]
            .iter()
            .any(|o| o.eq_ignore_ascii_case(&name));
        if originator && !originators {
            continue;
        }
        for text in [value.as_str(), decoded.as_str()] {
            for (local, domain) in tokens(token, text) {
                let local = local.trim_start_matches(['.', '\'']);
                let domain = domain.trim_end_matches(['.', '-']);
                let ok = !local.is_empty()
                    && (domain.starts_with('[')
                        || (domain.contains('.') && !domain.starts_with('.')));
                let whole = format!("{local}@{domain}");
                let encoded = whole.contains("=?") || whole.contains("?=");
                if !ok || encoded {
                    continue;
                }
                let addr = format!("{local}@{domain}");
                let key = normalize_address(&addr).unwrap_or_else(|| addr.to_lowercase());
                if originator {
                    from.entry(name.to_ascii_lowercase())
                        .or_default()
                        .insert(key);
                } else {
                    seen.insert(key);
                }
            }
        }
    }
    for (_, addresses) in from {
        if addresses.len() > 1 {
            seen.extend(addresses);
        }
    }
    seen.into_iter()
        .filter(|a| {
            let domain = a.rsplit_once('@').map_or("", |(_, d)| d);
            !(normalize_address(a).is_some() && internal.contains(domain))
        })
        .collect()
}

/// Around every `@` of `text` on its own (tokens of neighbouring `@`s may
/// share bytes, as a reader's eye does): the longest local part the
/// expression allows before it and the domain after it.
fn tokens<'t>(token: &regex::Regex, text: &'t str) -> Vec<(&'t str, &'t str)> {
    static LOCAL_END: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    static DOMAIN_START: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    // The two halves of `token_regex`, anchored at the `@`.
    let pattern = token.as_str();
    let (local, domain) = pattern.split_once(")@(").expect("local)@(domain");
    let local_end =
        LOCAL_END.get_or_init(|| regex::Regex::new(&format!("{local})$")).expect("regex"));
    let domain_start =
        DOMAIN_START.get_or_init(|| regex::Regex::new(&format!("^({domain}")).expect("regex"));
    text.match_indices('@')
        .filter_map(|(at, _)| {
            let l = local_end.find(&text[..at])?;
            let d = domain_start.find(&text[at + 1..])?;
            Some((l.as_str(), d.as_str()))
        })
        .collect()
}

/// The address-like token: local part, `@`, domain (both captured).
fn token_regex() -> &'static regex::Regex {
    static TOKEN: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    TOKEN.get_or_init(|| {
        regex::Regex::new(
            r#"([A-Za-z0-9!#$%&'*+/=?^_`{|}~.\-[^\x00-\x7F]]+)@(\[[^\[\]\\,;<>@"]+\]|[A-Za-z0-9\-_.[^\x00-\x7F]]+)"#,
        )
        .expect("regex")
    })
}

/// The person an address string names, as a reader takes it: the last
/// address-like token in it (`)Name)a@x.test ` is a@x.test), lowercased;
/// the string itself when it holds none.
pub fn person(address: &str) -> String {
    let last = token_regex().captures_iter(address).last().map(|c| {
        let local = c[1].trim_start_matches(['.', '\'']);
        let domain = c[2].trim_end_matches(['.', '-']);
        format!("{local}@{domain}")
    });
    last.unwrap_or_else(|| address.trim().to_string())
        .to_lowercase()
}

/// [`person`], only when the string holds an address-like token with a
/// dotted domain or a closed domain literal (what the guard's tokens are):
/// `t_@____` and `x@[=?` are no address at all.
pub fn address_shaped(address: &str) -> Option<String> {
    let c = token_regex().captures_iter(address).last()?;
    let local = c[1].trim_start_matches(['.', '\'']);
    let domain = c[2].trim_end_matches(['.', '-']);
    let ok = !local.is_empty()
        && (domain.starts_with('[') || (domain.contains('.') && !domain.starts_with('.')));
    ok.then(|| format!("{local}@{domain}").to_lowercase())
}
