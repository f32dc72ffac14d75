//! Counting table (the cases of the research note "Counting the recipients
//! a reader will see") and mail-parser as an independent oracle.

use super::*;
use crate::message::headers::scan;
use proptest::prelude::*;

/// mail-parser's reading of To and Cc: the one copy the property tests and
/// the fuzz target compare with too (tests/oracle/displayed.rs); this test
/// reads whole messages only.
#[allow(dead_code)]
mod displayed {
    include!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/oracle/displayed.rs"
    ));
}

fn visible(head: &str, internal: &[&str]) -> Visible {
    let msg = format!("{head}\r\nbody\r\n");
    let headers = scan(msg.as_bytes(), 1 << 20).expect("fits");
    let policy = crate::policy::Policy {
        internal_domains: DomainSet::new(internal.iter().copied()).expect("valid"),
        ..crate::policy::Policy::default()
    };
    count(msg.as_bytes(), &headers, &policy)
}

#[test]
fn unparseable_elements_differing_in_control_characters_count_apart() {
    // Found by fuzzing (decide_hide): `str::trim` removed the vertical tabs,
    // so both became "@" and counted once.
    let v = visible("To: \x0b\x0b@, \x0b\x0b\x0b@,\t\x0c@ ,  @\r\n", &[]);
    assert_eq!(v.external.len(), 4, "{:?}", v.external);
}

#[test]
fn display_names_are_counted_per_mailbox_shown() {
    let cases: &[(&str, usize)] = &[
        ("To: a@x.test,\r\n b@y.test\r\n", 0),
        ("To: <a@x.test>,  <b@y.test>\r\n", 0),
        (
            "To: \"Dr. A\" <a@x.test>, b@y.test, Team: Bea <b@z.test>;\r\nCc: <c@x.test>\r\n",
            2,
        ),
        // Internal ones and repeats count: the name was shown each time.
        ("To: Me <me@example.org>, Me <me@example.org>\r\n", 2),
        (
            "To: A <a@x.test>\r\nCc: B <b@y.test>\r\nBcc: C <c@z.test>\r\n",
            2,
        ),
        // A trailing comment is not a name; a leading one is shown like one.
        (
            "To: <a@x.test> (Anna), (Bob) <b@y.test>, c@z.test (Carl)\r\n",
            1,
        ),
        ("To: \"x>\" <a@x.test>, y@z.test\r\n", 1),
    ];
    for (head, names) in cases {
        assert_eq!(visible(head, &["example.org"]).named, *names, "{head:?}");
    }
}

#[test]
fn normalize_address_table() {
    let cases: &[(&str, Option<&str>)] = &[
        ("A.B@Example.ORG", Some("a.b@example.org")),
        ("a@müller.de", Some("a@xn--mller-kva.de")),
        ("Ärger@MÜLLER.de.", Some("ärger@xn--mller-kva.de")),
        ("\"a@b\"@x.org", Some("\"a@b\"@x.org")),
        ("no-at", None),
        ("@x.org", None),
        ("a@", None),
        ("a@[192.0.2.1]", None),
        ("a@bad domain", None),
    ];
    for (input, want) in cases {
        assert_eq!(
            normalize_address(input).as_deref(),
            *want,
            "input {input:?}"
        );
    }
}

/// The classes of issue 14, each with its near misses.
#[test]
fn every_address_a_reader_sees_counts() {
    const INT: &[&str] = &["example.org"];
    // "p1@e.net, p2@e.net, p3@e.net" in base64.
    let b64 = "=?utf-8?b?cDFAZS5uZXQsIHAyQGUubmV0LCBwM0BlLm5ldA==?=";
    let list_b = format!("To: {b64}\r\n");
    let cases: Vec<(&str, usize, usize)> = vec![
        // Other address headers.
        ("Reply-To: a@x.com, b@y.com\r\n", 2, 0),
        ("Mail-Followup-To: a@x.com, b@y.com\r\n", 2, 0),
        (
            "Mail-Reply-To: a@x.com\r\nResent-To: b@y.com\r\nResent-Cc: c@z.com\r\n",
            3,
            0,
        ),
        ("Reply-To\x0c: a@x.com, b@y.com\r\n", 2, 0),
        ("Sender: a@x.com, b@y.com\r\n", 0, 0),
        // From and Resent-From: the sender alone is not a list.
        ("From: a@x.com\r\n", 0, 0),
        ("From: \"a@x.com\" <a@x.com>\r\n", 0, 0),
        ("From: a@x.com, b@y.com\r\n", 2, 0),
        ("From: \"p1@e.net\" <amt@example.org>\r\n", 1, 1),
        ("From: a@x.com\r\nFrom: b@y.com\r\n", 2, 0),
        ("Resent-From: a@x.com, b@y.com\r\n", 2, 0),
        // Display names and comments.
        ("To: \"a@x.com\" <a@x.com>\r\n", 1, 0),
        ("To: 'a@x.com' <a@x.com>, 'B@Y.com' <b@y.com>\r\n", 2, 0),
        ("To: \"Boss boss@example.org\" <c@z.com>\r\n", 1, 1),
        (
            "To: \"p1@e.net, p2@e.net, p3@e.net\" <amt@example.org>\r\n",
            3,
            1,
        ),
        ("To: amt@example.org (p1@e.net) (p2@f.net)\r\n", 2, 1),
        ("To: \"p1@e.net\": a@example.org;\r\n", 1, 1),
        ("To: Team: \"p1@e.net\" <a@example.org>;\r\n", 1, 1),
        ("To: undisclosed-recipients:;\r\n", 0, 0),
        // RFC 2047 encoded words.
        (&list_b, 3, 0),
        ("To: =?utf-8?q?p1=40e.net=2C_p2=40e.net?=\r\n", 2, 0),
        ("To: =?utf-8?q?p1=40e.net?= <amt@example.org>\r\n", 1, 1),
        ("To: =?iso-8859-1?q?M=FCller?= <m@x.com>\r\n", 1, 0),
        ("Cc: =?utf-8?q?p1?=\r\n =?utf-8?q?=40e.net?=\r\n", 1, 0),
        // Unparseable lists: every address-like token.
        ("To: a@x.com b@y.com c@z.com d@w.com\r\n", 4, 0),
        ("To: a@x.com; b@y.com: c@z.com\r\n", 3, 0),
        ("To: <a@x.com b@y.com>\r\n", 2, 0),
        ("To: Meeting @ 5pm\r\n", 1, 0),
        // A line with no name is read as more of the field above (fuzz).
        (
            "To: a@example.org\r\njunk p1@e.net\r\n\t p2@f.net\r\n",
            2,
            1,
        ),
        ("Subject: s\r\njunk p1@e.net\r\n", 0, 0),
        ("To: a@example.org\r\njunk line\r\n", 0, 1),
        // `?=` in a field without encoded words is just text (fuzz finding).
        ("To: o:t-Cc?=@e.net, x@f.net\r\n", 2, 0),
    ];
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|&(head, ext, inn)| {
            let v = visible(head, INT);
            (v.external.len() != ext || v.internal.len() != inn)
                .then(|| format!("{head:?}: got {v:?}, want {ext} external, {inn} internal"))
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn where_each_address_was_seen() {
    let v = visible(
        "To: \"p1@e.net\" <a@x.com> (p2@e.net)\r\nReply-To: =?utf-8?q?p3=40e.net?=\r\nCc: junk p4@e.net\r\n",
        &[],
    );
    let h = VisibleHeaders::default();
    let got: Vec<String> = v
        .external
        .iter()
        .zip(&v.seen)
        .map(|(a, s)| format!("{a}: {}", s.describe(&h)))
        .collect();
    assert_eq!(
        got,
        [
            "a@x.com: To, address",
            "p1@e.net: To, display name",
            "p2@e.net: To, comment",
            "p3@e.net: Reply-To, encoded word",
            "p4@e.net: Cc, unparseable token",
        ]
    );
    assert_eq!(v.places(&h), "To/Cc and Reply-To");
}

#[test]
fn visible_headers_are_checked() {
    assert!(VisibleHeaders::new(["To", "Cc", "X-Recipients"]).is_ok());
    assert_eq!(
        VisibleHeaders::new(["To"]).map_err(|e| e.to_string()),
        Err("must include Cc".into())
    );
    assert!(VisibleHeaders::new(["To", "Cc", "Bcc"]).is_err());
    assert!(VisibleHeaders::new(["To", "Cc", "Bad Name"]).is_err());
    let msg = b"To: a@x.com\r\nX-Recipients: b@y.com, c@z.com\r\n\r\n";
    let headers = scan(msg, 1000).expect("fits");
    let policy = crate::policy::Policy {
        visible_headers: VisibleHeaders::new(["To", "Cc", "X-Recipients"]).expect("valid"),
        ..crate::policy::Policy::default()
    };
    assert_eq!(count(msg, &headers, &policy).external.len(), 3);
    let default = crate::policy::Policy::default();
    assert_eq!(count(msg, &headers, &default).external.len(), 1);
}

#[test]
fn counting_table() {
    const INT: &[&str] = &["example.org", "*.corp.example"];
    // (header section, internal domains, external count, internal count)
    let cases: &[(&str, &[&str], usize, usize)] = &[
        ("To: a@x.com\r\n", INT, 1, 0),
        ("Subject: no recipients\r\n", INT, 0, 0),
        ("To: Team: a@x.com, b@y.com;\r\n", INT, 2, 0),
        ("To: undisclosed-recipients:;\r\n", INT, 0, 0),
        ("To: a@x.com\r\nTo: b@y.com\r\nCc: c@z.com\r\n", INT, 3, 0),
        ("Cc : a@x.com\r\nCC\t: b@y.com\r\n", INT, 2, 0),
        (
            "Bcc: a@x.com\r\nResent-Bcc: b@y.com\r\nReply-To: c@z.com\r\n",
            INT,
            1,
            0,
        ),
        ("To: a@x.com,,b@y.com, ,\r\n", INT, 2, 0),
        ("To: <@r1.net,@r2.net:a@x.com>\r\n", INT, 1, 0),
        // What a reader sees counts: comments, display names, decoded words.
        ("To: c@z.com (d@w.com)\r\n", INT, 2, 0),
        ("To: =?utf-8?q?a@x.com?= <c@z.com>\r\n", INT, 2, 0),
        ("To: =?utf-8?q?a?=@example.org\r\n", INT, 0, 1),
        ("To: \"a@x.com, b@y.com\" <c@z.com>\r\n", INT, 3, 0),
        (
            "To: A@X.com, a@x.COM, <a@x.com>\r\nCc: \"A\" <A@x.com>\r\n",
            INT,
            1,
            0,
        ),
        ("To: a@example.org, b@EXAMPLE.ORG, c@x.com\r\n", INT, 1, 2),
        (
            "To: a@corp.example, b@eu.corp.example, c@a.b.corp.example\r\n",
            INT,
            1,
            2,
        ),
        ("To: a@müller.de\r\n", &["xn--mller-kva.de"], 0, 1),
        ("To: a@xn--mller-kva.de\r\n", &["müller.de"], 0, 1),
        (
            "To: a@müller.de, a@XN--MLLER-KVA.de\r\n",
            &["müller.de"],
            0,
            1,
        ),
        ("To: foo, foo , FOO, bar\r\n", INT, 2, 0),
        ("To: a@example.org, <broken@example.org\r\n", INT, 0, 2),
        ("To: a@example.org, <broken@x.com\r\n", INT, 1, 1),
        ("To: Team: a@example.org, junk;\r\n", INT, 1, 1),
        ("To: a@[192.0.2.1]\r\n", INT, 1, 0),
        ("junk\r\nTo: a@x.com\r\n", INT, 1, 0),
    ];
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|&(head, int, ext, inn)| {
            let v = visible(head, int);
            (v.external.len() != ext || v.internal.len() != inn)
                .then(|| format!("{head:?}: got {v:?}, want {ext} external, {inn} internal"))
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn folded_over_twenty_lines() {
    let lines: Vec<String> = (0..20).map(|i| format!("user{i}@x{i}.com")).collect();
    let head = format!("To: {}\r\n", lines.join(",\r\n "));
    let v = visible(&head, &[]);
    assert_eq!(v.external.len(), 20);
    assert_eq!(v.external_domains, 20);
    assert_eq!(&v.external[0], "user0@x0.com");
    assert_eq!(&v.external[19], "user19@x19.com");
}

#[test]
fn order_and_domains() {
    let v = visible(
        "To: B@y.com, a@x.com, c@y.com, b@y.com, garbage, a@example.org\r\n",
        &["example.org"],
    );
    assert_eq!(v.external, ["b@y.com", "a@x.com", "c@y.com", "garbage"]);
    assert_eq!(v.internal, ["a@example.org"]);
    assert_eq!(v.external_domains, 3);
}

/// One To/Cc element as a mail client might write it.
fn element() -> impl Strategy<Value = String> {
    let addr = (0..12u8, 0..4u8, any::<bool>()).prop_map(|(u, d, upper)| {
        let a = format!("user{u}@dom{d}.example");
        if upper { a.to_uppercase() } else { a }
    });
    let mailbox = (addr, 0..10u8).prop_map(|(a, form)| match form {
        0 => a,
        1 => format!("Some Name <{a}>"),
        2 => format!("\"Last, First\" <{a}>"),
        3 => format!("\"x@evil.example, y@evil.example\" <{a}>"),
        4 => format!("{a} (comment)"),
        5 => format!("=?utf-8?q?M=C3=BCller?= <{a}>"),
        // Malformed, as broken clients write them.
        // (No unterminated `<` either: mail-parser then returns variants
        // like `a@x;` for one mailbox; the table tests cover that form.)
        6 => format!("Name <{a}> (c), {a}"),
        // (No unterminated quote here: two of them in one field pair up
        // into one valid quoted string, which hides what it encloses.)
        7 => format!("Name <{a}> trailing, \"{a}\""),
        8 => format!("{a}; {a}"),
        _ => format!("<@route.example:{a}>"),
    });
    prop_oneof![
        4 => mailbox.clone(),
        1 => proptest::collection::vec(mailbox, 0..4)
            .prop_map(|m| format!("Team: {};", m.join(", "))),
    ]
}

proptest! {
    /// mail-parser reads the same headers independently: we never see fewer
    /// distinct addresses than it does.
    #[test]
    fn at_least_as_many_as_mail_parser(
        fields in proptest::collection::vec(
            (any::<bool>(), proptest::collection::vec(element(), 1..6), any::<bool>()),
            1..4,
        )
    ) {
        let mut head = String::from("From: s@example.org\r\n");
        for (is_to, elements, fold) in &fields {
            let sep = if *fold { ",\r\n " } else { ", " };
            head += &format!("{}: {}\r\n", if *is_to { "To" } else { "Cc" }, elements.join(sep));
        }
        let msg = format!("{head}Subject: t\r\n\r\nbody\r\n");
        let theirs = displayed::mail_parser_to_cc(msg.as_bytes(), displayed::Read::Message, |a| {
            // mail-parser keeps an obs-route in the address
            // (`@r.example:a@x`); RFC 5322 4.4 says to ignore it.
            Some(match a.strip_prefix('@').and_then(|r| r.rsplit_once(':')) {
                Some((_, addr)) => addr.to_lowercase(),
                None => a.to_lowercase(),
            })
        })
        .expect("mail-parser reads it");
        let v = visible(&head, &[]);
        prop_assert!(
            v.external.len() >= theirs.len(),
            "ours {:?} < theirs {:?} for {}", v.external, theirs, head
        );
    }
}

proptest! {
    /// The parser's "already normal" mark, which lets the counter skip
    /// normalising, is only ever set on addresses the normaliser returns
    /// unchanged: uppercase, non-ASCII, punycode (`xn--`), odd dots and
    /// trailing dots all go the exact way.
    #[test]
    fn normal_mark_is_sound(
        items in proptest::collection::vec(
            ("[a-zA-Zü0-9._+=?-]{1,8}", "(xn--|XN--)?[a-zA-Zü0-9_.-]{1,10}\\.?", any::<bool>()),
            1..8,
        )
    ) {
        let list: Vec<String> = items
            .iter()
            .map(|(l, d, angle)| if *angle { format!("N <{l}@{d}>") } else { format!("{l}@{d}") })
            .collect();
        let value = list.join(", ");
        let mut marked = Vec::new();
        crate::message::address::for_each(value.as_bytes(), |e| {
            if let ElementRef::Mailbox(m) = e
                && m.normal
            {
                marked.push(m.address.into_owned());
            }
        });
        for addr in marked {
            prop_assert_eq!(normalize_address(&addr), Some(addr.clone()), "marked normal: {}", addr);
        }
    }
}
