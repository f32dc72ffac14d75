//! Property tests (proptest, run on every `cargo test`) over the pure core,
//! through the public API only, with inputs rougher than the unit tests'
//! generators: raw bytes, and "token soup" header values built from the
//! characters that steer RFC 5322 address parsing (quotes, brackets,
//! commas, colons, semicolons, comments, backslashes, folds, encoded
//! words). The cargo-fuzz targets in `fuzz/` check the same invariants with
//! coverage guidance; these keep them checked in CI.
//!
//! Invariants:
//! - the command parser, the DATA reader, `policy::decide` and
//!   `rewrite::hide` never panic, whatever the bytes;
//! - the counter never sees fewer addresses than mail-parser (an
//!   independent parser, standing in for what a mail client displays);
//! - the counter never sees fewer external addresses than a deliberately
//!   lenient reader: every visible header decoded by mail-parser, unfolded,
//!   and every address-like token in it found by a regular expression
//!   (`lenient_external`), From only when it shows more than one;
//! - after `hide` with keep = internal only, a re-scan of the rewritten
//!   message finds no external address visible outside From.

use bccguard::message::headers::{FieldKind, scan};
use bccguard::policy::count::count;
use bccguard::policy::{Action, DomainSet, EmptyTo, Envelope, Policy, VisibleHeaders, decide};
use bccguard::rewrite::{KeepVisible, hide};
use bccguard::smtp::command;
use bccguard::smtp::data::{DataLimits, DataReader};
use proptest::prelude::*;

mod oracle;
use oracle::{lenient_external, mail_parser_persons};

fn policy() -> Policy {
    Policy {
        internal_domains: DomainSet::new(["example.org", "*.example.org"]).expect("valid"),
        max_external_recipients: 3,
        action: Action::Bcc,
        rules: bccguard::policy::Rules::default(),
        keep_internal_visible: true,
        empty_to: EmptyTo::Undisclosed,
        max_header_size: 1 << 20,
        ..Policy::default()
    }
}

/// Pieces of address-list syntax, valid and broken, and addresses on
/// internal and external domains (also in forms that look internal).
fn token() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "a@example.org",
        "b@sub.example.org",
        "c@ext.test",
        "D@EXT.TEST",
        "e@example.org.evil.test",
        "f@m\u{fc}ller.de",
        "g@[192.0.2.1]",
        "\"quoted, x@evil.test\"",
        "\"",
        "<",
        ">",
        ",",
        ";",
        ":",
        "(",
        ")",
        "\\",
        "@",
        ".",
        " ",
        "\t",
        "\r\n ",
        "Name",
        "Team:",
        "undisclosed-recipients:;",
        "=?utf-8?q?M=C3=BCller?=",
        "=?utf-8?q?h@evil.test?=",
        "<@route.test:",
        "(comment i@evil.test)",
        "=?utf-8?b?ajFAZXZpbC50ZXN0LCBqMkBldmlsLnRlc3Q=?=",
        "=?utf-8?q?k1=40evil.test=2C_k2=40evil.test?=",
        "=?iso-8859-1?q?l=40m=FCller.de?=",
        "\"m1@evil.test m2@evil.test\"",
        " n@x.test o@y.test ",
    ])
}

/// A header value made of tokens (no bare CR or LF: the DATA reader never
/// lets those through to the policy).
fn soup() -> impl Strategy<Value = String> {
    prop::collection::vec(token(), 0..24).prop_map(|t| t.concat())
}

/// A message with a few visible and Bcc fields of token soup.
fn soup_message() -> impl Strategy<Value = String> {
    prop::collection::vec((0..9u8, soup()), 1..5).prop_map(|fields| {
        let mut msg = String::from("From: s@example.org\r\n");
        for (kind, value) in fields {
            let name = [
                "To",
                "Cc",
                "cc ",
                "Bcc",
                "Reply-To",
                "From",
                "Mail-Followup-To",
                "Resent-Cc",
                "Resent-From",
            ][usize::from(kind)];
            msg.push_str(&format!("{name}: {value}\r\n"));
        }
        msg.push_str("Subject: t\r\n\r\nbody\r\n");
        msg
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// RFC 5321 command lines from a hostile client: any bytes, with or
    /// without a line end.
    #[test]
    fn command_parser_never_panics(line in prop::collection::vec(any::<u8>(), 0..600), crlf in any::<bool>()) {
        let mut line = line;
        if crlf {
            line.extend_from_slice(b"\r\n");
        }
        let _ = command::parse(&line);
    }

    /// The command parser on near-valid commands (verbs, paths, parameters).
    #[test]
    fn command_parser_never_panics_on_near_valid_commands(
        verb in prop::sample::select(vec!["MAIL FROM:", "RCPT TO:", "EHLO ", "AUTH ", "BDAT ", "DATA", "RSET", "mail from:"]),
        rest in prop::collection::vec(prop::sample::select(vec![
            "<", ">", "@", "a", "\"", "\\", " ", "=", "SIZE=", "BODY=8BITMIME", "%", "!", ":",
            ",", "\u{e9}", "\t", "\r", "\0", "x.test", "[127.0.0.1]", "PLAIN", "=",
        ]), 0..20),
    ) {
        let line = format!("{verb}{}\r\n", rest.concat());
        let _ = command::parse(line.as_bytes());
    }

    /// The DATA reader never panics and never takes more than it was given,
    /// fed in arbitrary pieces.
    #[test]
    fn data_reader_never_panics(
        input in prop::collection::vec(any::<u8>(), 0..2000),
        cut in any::<prop::sample::Index>(),
        max_line_length in 0usize..1200,
    ) {
        let mut reader = DataReader::new(DataLimits { max_message_size: 1500, max_line_length });
        let mut out = Vec::new();
        let at = cut.index(input.len() + 1);
        let first = reader.feed(&input[..at], &mut out);
        prop_assert!(first.consumed <= at);
        if !first.done {
            let second = reader.feed(&input[at..], &mut out);
            prop_assert!(second.consumed <= input.len() - at);
        }
        prop_assert!(out.len() <= 1500 + 2);
        let _ = reader.error();
    }

    /// decide and hide on arbitrary bytes: no panic, spans in bounds.
    #[test]
    fn decide_and_hide_never_panic_on_bytes(msg in prop::collection::vec(any::<u8>(), 0..1500)) {
        let p = policy();
        let rcpts = ["x@ext.test".to_string()];
        let env = Envelope { mail_from: "s@example.org", rcpt_to: &rcpts };
        if let Ok(d) = decide(&p, env, &msg) {
            prop_assert!(d.headers.end <= msg.len());
            let keep = KeepVisible::new(&p, None);
            let r = hide(&msg, &d.headers, &keep, "undisclosed-recipients:;");
            prop_assert!(r.rest <= msg.len());
        }
    }

    /// The counter sees at least every address mail-parser sees (mail-parser
    /// standing in for what a mail client displays), on token soup.
    #[test]
    fn counter_never_sees_fewer_addresses_than_mail_parser(msg in soup_message()) {
        let p = policy();
        let headers = scan(msg.as_bytes(), 1 << 20).expect("fits");
        let v = count(msg.as_bytes(), &headers, &p);
        let ours = v.external.len() + v.internal.len();
        let theirs = mail_parser_persons(&msg);
        prop_assert!(
            ours >= theirs.len(),
            "ours {:?} + {:?} < theirs {:?} for\n{}", v.external, v.internal, theirs, msg
        );
    }

    /// The counter sees at least the external addresses the lenient reader
    /// finds: every address a reader can see counts.
    #[test]
    fn counter_never_sees_fewer_external_addresses_than_a_lenient_reader(msg in soup_message()) {
        let p = policy();
        let headers = scan(msg.as_bytes(), 1 << 20).expect("fits");
        let v = count(msg.as_bytes(), &headers, &p);
        let theirs = lenient_external(&msg, &p.internal_domains, true);
        prop_assert!(
            v.external.len() >= theirs.len(),
            "ours {:?} < lenient {:?} for\n{}", v.external, theirs, msg
        );
    }

    /// After hide with keep = internal only, nothing external is visible to
    /// the guard's counter (outside From, which is never rewritten) or to
    /// mail-parser, no Bcc is left, and To exists.
    #[test]
    fn hide_leaves_no_external_address_visible(msg in soup_message()) {
        let p = policy();
        let headers = scan(msg.as_bytes(), 1 << 20).expect("fits");
        let keep = KeepVisible::new(&p, None);
        let r = hide(msg.as_bytes(), &headers, &keep, "undisclosed-recipients:;");
        let mut out = r.head.clone();
        out.extend_from_slice(&msg.as_bytes()[r.rest..]);
        let again = scan(&out, 1 << 20).expect("fits");
        let no_from = Policy {
            visible_headers: VisibleHeaders::new(
                VisibleHeaders::DEFAULT.into_iter().filter(|h| !h.ends_with("From")),
            )
            .expect("valid"),
            ..policy()
        };
        let v = count(&out, &again, &no_from);
        let lenient = lenient_external(&String::from_utf8_lossy(&out), &p.internal_domains, false);
        let lenient: Vec<&String> = lenient.iter().filter(|a| *a != "s@example.org").collect();
        prop_assert!(v.external.is_empty(), "left visible {:?} in\n{}", v.external, String::from_utf8_lossy(&out));
        prop_assert!(lenient.is_empty(), "the lenient reader still sees {:?} in\n{}", lenient, String::from_utf8_lossy(&out));
        let text = String::from_utf8_lossy(&out).into_owned();
        for a in mail_parser_persons(&text) {
            let domain = a.rsplit_once('@').map_or("", |(_, d)| d);
            prop_assert!(
                p.internal_domains.contains(domain),
                "mail-parser still sees {} in\n{}", a, text
            );
        }
        prop_assert_eq!(again.of_kind(FieldKind::Bcc).count(), 0);
        prop_assert!(again.of_kind(FieldKind::To).count() >= 1);
    }
}
