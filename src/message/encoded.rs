//! RFC 2047 encoded words in header values, decoded the way a mail client
//! shows them, so that an address hidden in `=?utf-8?q?p1=40example.net?=`
//! is seen. The decoding of each word (B and Q, every charset mail-parser
//! knows) is mail-parser's; what this module owns is where words are looked
//! for and how they are joined.
//!
//! Deliberately more lenient than RFC 2047 5: a word is decoded wherever it
//! appears (inside quoted strings, mid-word, in an addr-spec), because that
//! is what Outlook and Thunderbird do, and a reader sees the decoded text.
//! Whitespace between two adjacent encoded words is dropped (RFC 2047 6.2),
//! so a list split over several words reads as one text.

use mail_parser::parsers::MessageStream;

/// The value unfolded (CR and LF removed) with every encoded word decoded;
/// `None` when the value holds no `=?` at all (nothing to decode: callers
/// skip the second look, which is every field of nearly every message).
pub fn decode(value: &[u8]) -> Option<String> {
    decode_with(value, false, false).map(|r| r.text)
}

/// [`decode`] with each decoded word set apart by spaces from text that
/// touches it: how a reader that takes `=?...?=c@x.test` as a word followed
/// by more text sees it (mail-parser does).
pub fn decode_spaced(value: &[u8]) -> Option<String> {
    decode_with(value, true, false).map(|r| r.text)
}

/// Every reading of the value a reader may see: none without an encoded
/// word; the decoded text; the spaced one too, only when a word touches
/// other text ([`decode_spaced`]); and one that decodes only words with a
/// proper charset token (RFC 2047 2), only when some word's charset is not
/// one (mail-parser decodes `=?a@x.test?q?m?=`, swallowing the address a
/// stricter reader shows). The counter reads them all, so no reading hides
/// an address, and the common case decodes once.
pub fn readings(value: &[u8]) -> Vec<String> {
    let Some(lenient) = decode_with(value, false, false) else {
        return Vec::new();
    };
    let spaced = lenient
        .touches
        .then(|| decode_with(value, true, false))
        .flatten();
    let strict = lenient
        .odd_charset
        .then(|| decode_with(value, false, true))
        .flatten();
    std::iter::once(lenient)
        .chain(spaced)
        .chain(strict)
        .map(|r| r.text)
        .collect()
}

/// One decoded reading.
struct Reading {
    text: String,
    /// A decoded word touched other text.
    touches: bool,
    /// A decoded word's charset was not a token.
    odd_charset: bool,
}

/// Decodes `value`; `spaced` sets words apart, `strict` decodes only words
/// whose charset is a token.
fn decode_with(value: &[u8], spaced: bool, strict: bool) -> Option<Reading> {
    memchr::memmem::find(value, b"=?")?;
    let mut out = String::with_capacity(value.len());
    let (mut touches, mut odd_charset) = (false, false);
    // Bytes since the last decoded word that are not yet in `out`.
    let mut plain_from = 0;
    // `out` ends with a decoded word, and everything after it is whitespace.
    let mut after_word = false;
    let mut i = 0;
    while let Some(n) = memchr::memmem::find(&value[i..], b"=?") {
        let at = i + n;
        // A charset is a token (RFC 2047 2: no specials, no space); one that
        // is not would let a "word" swallow the addresses up to some later
        // `?q?`.
        let charset_ok = value[at + 2..]
            .iter()
            .position(|&b| b == b'?')
            .is_some_and(|len| {
                len > 0
                    && value[at + 2..at + 2 + len]
                        .iter()
                        .all(|&b| b.is_ascii_alphanumeric() || b"-_.:*".contains(&b))
            });
        if strict && !charset_ok {
            i = at + 1;
            continue;
        }
        let mut stream = MessageStream::new(&value[at + 1..]);
        let Some(text) = stream.decode_rfc2047() else {
            i = at + 1;
            continue;
        };
        odd_charset |= !charset_ok;
        let gap = &value[plain_from..at];
        if !(after_word && gap.iter().all(u8::is_ascii_whitespace)) {
            push_unfolded(&mut out, gap);
        }
        let end = at + 1 + stream.offset();
        touches |= at > 0 && !value[at - 1].is_ascii_whitespace()
            || value.get(end).is_some_and(|b| !b.is_ascii_whitespace());
        if spaced && !out.is_empty() && !out.ends_with(' ') {
            out.push(' ');
        }
        out.push_str(&text);
        if spaced {
            out.push(' ');
        }
        after_word = true;
        i = end;
        plain_from = i;
    }
    push_unfolded(&mut out, &value[plain_from..]);
    Some(Reading {
        text: out,
        touches,
        odd_charset,
    })
}

/// Appends raw header bytes without their folding CR/LF; bytes that are not
/// UTF-8 become U+FFFD (they separate tokens, as they would on screen).
fn push_unfolded(out: &mut String, bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    out.extend(text.chars().filter(|&c| c != '\r' && c != '\n'));
}

#[cfg(test)]
mod tests {
    use super::{decode, decode_spaced};

    #[test]
    fn table() {
        let cases: &[(&str, Option<&str>)] = &[
            ("a@x.test, b@y.test", None),
            ("=?utf-8?q?p1=40example.net?=", Some("p1@example.net")),
            (
                "=?UTF-8?B?cDFAZXhhbXBsZS5uZXQsIHAyQGV4YW1wbGUubmV0?=",
                Some("p1@example.net, p2@example.net"),
            ),
            // Adjacent words join across whitespace and folding.
            (
                "=?utf-8?q?p1?=\r\n =?utf-8?q?=40x.test?=",
                Some("p1@x.test"),
            ),
            // Plain text between words stays.
            ("=?utf-8?q?a?= and =?utf-8?q?b?=", Some("a and b")),
            // Inside a quoted string and mid-word, as clients decode.
            (
                "\"=?iso-8859-1?q?M=FCller?=\" <m@x.test>",
                Some("\"M\u{fc}ller\" <m@x.test>"),
            ),
            ("x=?utf-8?q?y?=z", Some("xyz")),
            // Not a word: left as it is.
            ("=?broken <a@x.test>", Some("=?broken <a@x.test>")),
            ("=?utf-8?x?abc?=", Some("=?utf-8?x?abc?=")),
            // A "charset" holding an address: decoded here; the strict
            // reading of `readings` keeps it.
            ("=?a@x.test?q?m?=", Some("m")),
        ];
        for &(input, want) in cases {
            assert_eq!(decode(input.as_bytes()).as_deref(), want, "{input:?}");
        }
    }

    #[test]
    fn spaced_sets_words_apart() {
        assert_eq!(
            decode_spaced(b"=?utf-8?q?h=40e.test?=c@x.test").as_deref(),
            Some("h@e.test c@x.test")
        );
        assert_eq!(decode_spaced(b"a@x.test").as_deref(), None);
    }

    #[test]
    fn readings_add_the_spaced_one_only_when_a_word_touches_text() {
        assert!(super::readings(b"a@x.test").is_empty());
        assert_eq!(
            super::readings(b"=?utf-8?q?p1=40x.test?= <a@x.test>").len(),
            1
        );
        assert_eq!(
            super::readings(b"=?utf-8?q?h=40e.test?=c@x.test"),
            ["h@e.testc@x.test", "h@e.test c@x.test"]
        );
    }

    #[test]
    fn a_charset_that_is_no_token_adds_the_strict_reading() {
        assert_eq!(
            super::readings(b"=?a@x.test?q?m?="),
            ["m", "=?a@x.test?q?m?="]
        );
    }

    #[test]
    fn never_panics_on_fragments() {
        for s in [
            "=?",
            "=?=",
            "=?u?q?",
            "=?u?b?=?=",
            "=?utf-8?q?=",
            "a=?\u{e9}?q?x?=",
        ] {
            let _ = decode(s.as_bytes());
        }
    }
}
