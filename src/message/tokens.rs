//! Address-like tokens in free text: what a reader recognises as an e-mail
//! address wherever it is written, in a display name, a comment, a decoded
//! encoded word or a list that does not parse. The strict parser
//! ([`super::address`]) says what a field *is*; this says what it *shows*.
//!
//! A token is `local@domain` around every `@`:
//! - `local`: the longest run of atext, dots and non-ASCII bytes (RFC 5322
//!   3.2.3, RFC 6532) before the `@`, leading dots and apostrophes dropped;
//! - `domain`: a domain literal `[...]`, or the longest run of letters,
//!   digits, `-`, `_`, dots and non-ASCII bytes after it, trailing dots and
//!   hyphens dropped, holding at least one dot (`Meeting@5pm` and `Team@Work`
//!   in a name are not addresses; every address the guard must find has a
//!   dot in its domain).
//!
//! Tokens of neighbouring `@`s may overlap (`a@b.c@d.e` gives `a@b.c` and
//! `b.c@d.e`): one address too many is counted rather than one too few.

use std::ops::Range;

/// Where in a list element a token stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// Between `<` and `>`: the mailbox's own address.
    Angle,
    /// Inside `(...)`.
    Comment,
    /// Anywhere else: display name words, quoted strings, stray text.
    Phrase,
}

/// Byte may be part of a local part: atext (RFC 5322 3.2.3), `.`, UTF-8.
const fn is_local(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b >= 0x80 || memchr_in(b, b"!#$%&'*+-/=?^_`{|}~.")
}

/// Byte may be part of a domain name as a reader takes it.
const fn is_domain(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b >= 0x80 || b == b'-' || b == b'_' || b == b'.'
}

const fn memchr_in(b: u8, set: &[u8]) -> bool {
    let mut i = 0;
    while i < set.len() {
        if set[i] == b {
            return true;
        }
        i += 1;
    }
    false
}

/// The token around the `@` at `at`, if there is one.
pub fn token_at(text: &[u8], at: usize) -> Option<Range<usize>> {
    let mut start = at;
    while start > 0 && is_local(text[start - 1]) {
        start -= 1;
    }
    // Leading dots, and the apostrophe Outlook quotes a display name with
    // (`'jane@x.test' <jane@x.test>` shows jane@x.test, not 'jane@...).
    while start < at && matches!(text[start], b'.' | b'\'') {
        start += 1;
    }
    if start == at {
        return None;
    }
    let rest = text.get(at + 1..)?;
    if rest.first() == Some(&b'[') {
        let close = rest[1..]
            .iter()
            .position(|&b| {
                matches!(
                    b,
                    b']' | b'[' | b'\\' | b',' | b';' | b'<' | b'>' | b'@' | b'"'
                )
            })
            .filter(|&n| n > 0 && rest[1 + n] == b']')?;
        return Some(start..at + 3 + close);
    }
    let mut end = rest
        .iter()
        .position(|&b| !is_domain(b))
        .unwrap_or(rest.len());
    while end > 0 && matches!(rest[end - 1], b'.' | b'-') {
        end -= 1;
    }
    let domain = &rest[..end];
    (!domain.is_empty() && domain.contains(&b'.') && domain[0] != b'.')
        .then_some(start..at + 1 + end)
}

/// Calls `f` with every token in `text` and where it stands. Linear: one
/// pass for the quote, comment and angle state, and each token's runs.
pub fn for_each<'t>(text: &'t [u8], mut f: impl FnMut(&'t [u8], Place)) {
    let (mut quoted, mut depth, mut angle) = (false, 0usize, false);
    let mut i = 0;
    while i < text.len() {
        match text[i] {
            b'\\' if quoted || depth > 0 => i += 1,
            b'"' if depth == 0 => quoted = !quoted,
            b'(' if !quoted => depth += 1,
            b')' if !quoted => depth = depth.saturating_sub(1),
            b'<' if !quoted && depth == 0 => angle = true,
            b'>' if !quoted && depth == 0 => angle = false,
            b'@' => {
                if let Some(r) = token_at(text, i) {
                    let place = match (depth > 0, angle) {
                        (true, _) => Place::Comment,
                        (false, true) => Place::Angle,
                        (false, false) => Place::Phrase,
                    };
                    f(&text[r], place);
                }
            }
            _ => {}
        }
        i += 1;
    }
}

/// Does `text` show an address other than `own` (normalised, compared
/// case-insensitively)? For the rewriter: a kept mailbox whose display name
/// or comment carries other addresses loses them.
pub fn shows_other_than(text: &[u8], own: &str) -> bool {
    let mut other = false;
    for_each(text, |t, _| {
        other |= !t.eq_ignore_ascii_case(own.as_bytes());
    });
    other
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(s: &str) -> Vec<(String, Place)> {
        let mut out = Vec::new();
        for_each(s.as_bytes(), |t, p| {
            out.push((String::from_utf8_lossy(t).into_owned(), p))
        });
        out
    }

    #[test]
    fn table() {
        use Place::*;
        let cases: &[(&str, &[(&str, Place)])] = &[
            ("a@x.test", &[("a@x.test", Phrase)]),
            ("Name <a@x.test>", &[("a@x.test", Angle)]),
            (
                "\"p1@e.net, p2@e.net\" <amt@example.org>",
                &[
                    ("p1@e.net", Phrase),
                    ("p2@e.net", Phrase),
                    ("amt@example.org", Angle),
                ],
            ),
            (
                "amt@example.org (p1@e.net)",
                &[("amt@example.org", Phrase), ("p1@e.net", Comment)],
            ),
            (
                "a@x.test b@y.test c@z.test",
                &[
                    ("a@x.test", Phrase),
                    ("b@y.test", Phrase),
                    ("c@z.test", Phrase),
                ],
            ),
            ("Meeting @ 5pm, Team@Work", &[]),
            ("..a.b@x.test.", &[("a.b@x.test", Phrase)]),
            (
                "'jane@x.test' <jane@x.test>",
                &[("jane@x.test", Phrase), ("jane@x.test", Angle)],
            ),
            ("o'brien@x.test", &[("o'brien@x.test", Phrase)]),
            ("a@[192.0.2.1]", &[("a@[192.0.2.1]", Phrase)]),
            ("a@[x, b@y.test]", &[("b@y.test", Phrase)]),
            ("a@b.c@d.e", &[("a@b.c", Phrase), ("b.c@d.e", Phrase)]),
            (
                "M\u{fc}ller@m\u{fc}ller.de",
                &[("M\u{fc}ller@m\u{fc}ller.de", Phrase)],
            ),
            ("\"a\\\"@x.test\"", &[]),
            ("@x.test, a@, @", &[]),
        ];
        for &(input, want) in cases {
            let want: Vec<(String, Place)> =
                want.iter().map(|&(t, p)| (t.to_string(), p)).collect();
            assert_eq!(tokens(input), want, "{input:?}");
        }
    }

    #[test]
    fn bracket_without_close_still_shows_the_next_address() {
        assert_eq!(
            tokens("a@[x, b@y.test"),
            vec![("b@y.test".to_string(), Place::Phrase)]
        );
    }

    #[test]
    fn shows_other() {
        assert!(!shows_other_than(b"\"A@x.test\" <a@x.test>", "a@x.test"));
        assert!(shows_other_than(b"\"p1@e.net\" <a@x.test>", "a@x.test"));
        assert!(!shows_other_than(b"Anna <a@x.test>", "a@x.test"));
    }

    proptest::proptest! {
        #[test]
        fn never_panics(v in proptest::collection::vec(proptest::sample::select(b"a.@[]\"\\()<> ,x\xc3".to_vec()), 0..80)) {
            for_each(&v, |t, _| assert!(t.contains(&b'@')));
        }
    }
}
