//! Table tests for the address-list parser: every obsolete form of RFC 5322
//! 4.4 that real mail carries, and byte soup that must never panic.

use super::*;
use proptest::prelude::*;

/// Elements in a compact form: `a@x`, `!raw` (invalid), `Name:[m1 m2 !bad]`.
fn show(value: &str) -> Vec<String> {
    let v = value.as_bytes();
    let text = |r: &Range<usize>| String::from_utf8_lossy(&v[r.clone()]).into_owned();
    parse_list(v)
        .iter()
        .map(|e| match e {
            Element::Mailbox(m) => m.address.clone(),
            Element::Invalid { span } => format!("!{}", text(span)),
            Element::Group {
                name,
                members,
                invalid,
                ..
            } => {
                let mut parts: Vec<String> = members.iter().map(|m| m.address.clone()).collect();
                parts.extend(invalid.iter().map(|r| format!("!{}", text(r))));
                format!("{}[{}]", text(name), parts.join(" "))
            }
        })
        .collect()
}

#[test]
fn table() {
    let cases: &[(&str, &[&str])] = &[
        ("", &[]),
        ("   ", &[]),
        ("a@x", &["a@x"]),
        (" a@x , b@y ", &["a@x", "b@y"]),
        ("A.B@Example.ORG", &["A.B@Example.ORG"]),
        // Display names never count, whatever they look like.
        ("\"a@x, b@y\" <c@z>", &["c@z"]),
        ("Doe, John <j@x>", &["!Doe", "j@x"]),
        ("\"Doe, John\" <j@x>, b@y", &["j@x", "b@y"]),
        // A quote inside <...> must not run past a `>`: a mail client ends
        // the angle-addr there and shows what follows (found by fuzzing).
        (
            "<\"x>, a@e, b@e, <\"@y.test>",
            &["!<\"x>", "a@e", "b@e", "!<\"@y.test>"],
        ),
        ("<\"a,b\"@x>", &["\"a,b\"@x"]),
        ("\"a>b\" <c@x>", &["c@x"]),
        ("John Q. Public <jqp@x>", &["jqp@x"]),
        ("=?utf-8?q?M=C3=BCller?= <m@x>", &["m@x"]),
        (
            "=?utf-8?b?w7w=?= <m@x>, =?utf-8?q?a_b?= <n@y>",
            &["m@x", "n@y"],
        ),
        ("<a@x>", &["a@x"]),
        ("a@x <c@z>", &["!a@x <c@z>"]),
        // Groups (RFC 5322 3.4).
        ("Team: a@x, b@y;", &["Team:[a@x b@y]"]),
        ("undisclosed-recipients:;", &["undisclosed-recipients:[]"]),
        ("Team: a@x, foo;, c@z", &["Team:[a@x !foo]", "c@z"]),
        (
            "\"The Team\" (x): <a@x>, B <b@y> ; c@z",
            &["\"The Team\" (x):[a@x b@y]", "c@z"],
        ),
        ("Team: a@x, b@y", &["Team:[a@x b@y]"]),
        ("Team:;,Other: a@x;", &["Team:[]", "Other:[a@x]"]),
        ("A: B: c@x;;", &["A:[!B: c@x]"]),
        (": a@x, b@y;", &["a@x", "b@y"]),
        ("a@x: b@y;", &["!a@x", "b@y"]),
        // Obsolete syntax (RFC 5322 4.4).
        ("a@x,,b@y", &["a@x", "b@y"]),
        (",a@x,", &["a@x"]),
        (", ,(only a comment), ,", &[]),
        ("<@r1,@r2:a@x>", &["a@x"]),
        ("Name <@r1, ,@r2 : a@x>", &["a@x"]),
        ("c@z (d@w)", &["c@z"]),
        ("(d@w) c@z", &["c@z"]),
        ("c(nested (d@w) \\) x)@z", &["c@z"]),
        ("john . doe @ example . org", &["john.doe@example.org"]),
        ("\"john doe\"@x", &["\"john doe\"@x"]),
        ("\"a@b\"@x", &["\"a@b\"@x"]),
        ("a@x\r\n , b@y", &["a@x", "b@y"]),
        ("\"fold\r\n ed\" <a@x>", &["a@x"]),
        ("a@[192.0.2.1]", &["a@[192.0.2.1]"]),
        ("a@x.", &["a@x."]),
        ("m\u{fc}ller@b\u{fc}ro.de", &["m\u{fc}ller@b\u{fc}ro.de"]),
        // Outlook separates with ';'.
        ("a@x; b@y", &["a@x", "b@y"]),
        // Not mailboxes.
        ("foo", &["!foo"]),
        ("a@", &["!a@"]),
        ("@b", &["!@b"]),
        ("<a@x", &["!<a@x"]),
        ("<a@x, b@y", &["!<a@x", "b@y"]),
        ("<>", &["!<>"]),
        ("a@x b@y", &["!a@x b@y"]),
        ("a..b@x", &["!a..b@x"]),
        (".a@x", &["!.a@x"]),
        ("a@x..y", &["!a@x..y"]),
        ("a@@x", &["!a@@x"]),
        ("<a@x> junk", &["!<a@x> junk"]),
        ("<a@x> <b@y>", &["!<a@x> <b@y>"]),
        ("<<a@x>>", &["!<<a@x>>"]),
        ("a@x>", &["!a@x>"]),
        ("<a:b@x>", &["!<a:b@x>"]),
        ("=?utf-8?q?a?=@x", &["!=?utf-8?q?a?=@x"]),
        ("a@=?utf-8?q?x?=", &["!a@=?utf-8?q?x?="]),
        ("\"=?utf-8?q?a?=\"@x", &["!\"=?utf-8?q?a?=\"@x"]),
        ("a\\b@x", &["!a\\b@x"]),
        ("a@x\u{1}", &["!a@x\u{1}"]),
        // Unterminated openers do not hide what follows.
        ("\"a@x, b@y", &["!\"a@x", "b@y"]),
        ("(a@x, b@y", &["!(a@x", "b@y"]),
        ("((a) b@y, c@z", &["!((a) b@y", "c@z"]),
        ("a@[1.2, b@y", &["!a@[1.2", "b@y"]),
        // A `[` that is no domain literal does not swallow the list.
        ("x [, b@y, c@z ]", &["!x [", "b@y", "!c@z ]"]),
        ("a[, b@y, ]@x", &["!a[", "b@y", "!]@x"]),
    ];
    let failures: Vec<String> = cases
        .iter()
        .filter(|(input, want)| show(input) != *want)
        .map(|(input, want)| format!("{input:?}: got {:?}, want {want:?}", show(input)))
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn spans_cover_the_element_without_separators() {
    let v = b" (c) A <a@x> (t) ,\r\n b@y ;G: c@z ;";
    let got = parse_list(v);
    let texts: Vec<&[u8]> = got
        .iter()
        .map(|e| match e {
            Element::Mailbox(m) => &v[m.span.clone()],
            Element::Group { span, .. } | Element::Invalid { span } => &v[span.clone()],
        })
        .collect();
    assert_eq!(texts, [&b"(c) A <a@x> (t)"[..], b"b@y", b"G: c@z ;"]);
    let Element::Group { name, members, .. } = &got[2] else {
        panic!("not a group: {got:?}");
    };
    assert_eq!(&v[name.clone()], b"G:");
    assert_eq!(&v[members[0].span.clone()], b"c@z");
}

#[test]
fn invalid_utf8_is_invalid() {
    assert!(matches!(
        parse_list(b"a\xff@x")[..],
        [Element::Invalid { .. }]
    ));
}

#[test]
fn hostile_nesting_is_linear() {
    // Quadratic rescanning would take seconds here, not milliseconds.
    for unit in ["(", "\"\\", "[\\", "<@,", "a:", ":", "<"] {
        let v = unit.repeat(200_000);
        let _ = parse_list(v.as_bytes());
    }
}

proptest! {
    #[test]
    fn never_panics_and_spans_are_in_bounds(v in proptest::collection::vec(any::<u8>(), 0..300)) {
        for e in parse_list(&v) {
            let spans: Vec<Range<usize>> = match e {
                Element::Mailbox(m) => vec![m.span],
                Element::Invalid { span } => vec![span],
                Element::Group { name, members, invalid, span } => {
                    let mut s = vec![name, span];
                    s.extend(members.into_iter().map(|m| m.span));
                    s.extend(invalid);
                    s
                }
            };
            for s in spans {
                prop_assert!(s.start <= s.end && s.end <= v.len());
            }
        }
    }

    #[test]
    fn special_soup_never_panics(v in "[a@<>,;:()\"\\[\\]\\\\. \r\n=?x]{0,200}") {
        let _ = parse_list(v.as_bytes());
    }

    /// The fast path for plain elements answers exactly as the general
    /// parser does, on soup and on lists that look real.
    #[test]
    fn fast_path_agrees_on_soup(v in "[a@<>,;:()\"\\\\. \r\n=?xü]{0,80}") {
        prop_assert_eq!(parse(v.as_bytes(), true), parse(v.as_bytes(), false));
    }

    #[test]
    fn fast_path_agrees_on_lists(items in proptest::collection::vec(
        ("[a-c.]{0,3}", "[a-c.=?]{0,3}", 0..6u8), 0..8)
    ) {
        let list: Vec<String> = items
            .iter()
            .map(|(l, d, form)| match form {
                0 => format!("{l}@{d}"),
                1 => format!("N {l} <{l}@{d}>"),
                2 => format!("\"{d}, {l}\" <{l}@{d}>"),
                3 => format!("{l}@{d} (c)"),
                4 => format!("<{l}@{d}> {l}"),
                _ => format!("{l}{d}"),
            })
            .collect();
        let v = list.join(", ");
        prop_assert_eq!(parse(v.as_bytes(), true), parse(v.as_bytes(), false));
    }
}
