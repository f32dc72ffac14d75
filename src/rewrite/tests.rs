//! Rewrite table and properties: externals gone, internals kept, the rest
//! of the message byte-identical.

use super::*;
use crate::message::headers::scan;
use crate::policy::DomainSet;
use crate::policy::count::count;
use proptest::prelude::*;

/// Keeps addresses whose domain is internal (what `keep_internal_visible`
/// asks for).
struct Internal(DomainSet);

impl Keep for Internal {
    fn keep(&self, normalized: &str) -> bool {
        normalized
            .rsplit_once('@')
            .is_some_and(|(_, d)| self.0.contains(d))
    }
}

fn internal_policy() -> crate::policy::Policy {
    crate::policy::Policy {
        internal_domains: internal().0,
        ..crate::policy::Policy::default()
    }
}

fn internal() -> Internal {
    Internal(DomainSet::new(["example.org", "*.example.org"]).expect("valid"))
}

fn hidden(msg: &str, fallback: &str) -> String {
    let headers = scan(msg.as_bytes(), 1 << 20).expect("fits");
    let r = hide(msg.as_bytes(), &headers, &internal(), fallback);
    assert_eq!(r.rest, headers.end);
    let mut out = r.head;
    out.extend_from_slice(&msg.as_bytes()[r.rest..]);
    String::from_utf8(out).expect("utf-8 in, utf-8 out")
}

#[test]
fn hide_table() {
    const U: &str = "undisclosed-recipients:;";
    // (message, fallback, expected message)
    let cases: &[(&str, &str, &str)] = &[
        (
            "From: a@example.org\r\nTo: x@ext.de, b@example.org\r\nSubject: s\r\n\r\nbody\r\n",
            U,
            "From: a@example.org\r\nTo: b@example.org\r\nSubject: s\r\n\r\nbody\r\n",
        ),
        (
            "From: a@example.org\r\nTo: x@ext.de, y@ext.de\r\nSubject: s\r\n\r\nbody\r\n",
            U,
            "From: a@example.org\r\nTo: undisclosed-recipients:;\r\nSubject: s\r\n\r\nbody\r\n",
        ),
        (
            "To: x@ext.de\r\nCC: Bob <b@Example.ORG> (boss), x@ext.de\r\nBcc: c@example.org\r\n\r\nb",
            "a@example.org",
            "To: a@example.org\r\nCC: Bob <b@Example.ORG> (boss)\r\n\r\nb",
        ),
        (
            "Subject: s\r\nCc : x@ext.de\r\nResent-Bcc: r@ext.de\r\n\r\nb",
            U,
            "Subject: s\r\nTo: undisclosed-recipients:;\r\n\r\nb",
        ),
        (
            "To: Team: x@ext.de, a@example.org, junk;, Other: y@ext.de;, z@ext.de\r\n\r\n",
            U,
            "To: Team: a@example.org;\r\n\r\n",
        ),
        (
            "To: undisclosed-recipients:;\r\nCc: a@example.org\r\n\r\n",
            U,
            "To: undisclosed-recipients:;\r\nCc: a@example.org\r\n\r\n",
        ),
        (
            "To: x@ext.de\r\nTo: a@example.org\r\n\r\n",
            U,
            "To: a@example.org\r\n\r\n",
        ),
        (
            "To: a@example.org,\r\n \"Doe,\r\n Jane\" <j@sub.example.org>,\r\n x@ext.de\r\n\r\n",
            U,
            "To: a@example.org, \"Doe,\r\n Jane\" <j@sub.example.org>\r\n\r\n",
        ),
        ("\r\nbody", U, "To: undisclosed-recipients:;\r\n\r\nbody"),
        (
            "X: 1\r\nCc: x@ext.de",
            U,
            "X: 1\r\nTo: undisclosed-recipients:;\r\n",
        ),
        ("X: 1", U, "X: 1\r\nTo: undisclosed-recipients:;\r\n"),
        // A fallback cannot smuggle in a header of its own.
        (
            "To: x@ext.de\r\n\r\n",
            "a@b\r\nBcc: c@d",
            "To: a@bBcc: c@d\r\n\r\n",
        ),
    ];
    let failures: Vec<String> = cases
        .iter()
        .filter(|(msg, fallback, want)| hidden(msg, fallback) != *want)
        .map(|(msg, fallback, want)| {
            format!(
                "{msg:?}:\n  got  {:?}\n  want {want:?}",
                hidden(msg, fallback)
            )
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Issue 14: every visible header is rewritten, not only To/Cc; what a
/// kept mailbox's name or comment shows goes; From is never touched.
#[test]
fn hide_rewrites_every_visible_header() {
    const U: &str = "undisclosed-recipients:;";
    let cases: &[(&str, &str)] = &[
        // Reply-To emptied: the sender (header From).
        (
            "From: Amt <amt@example.org>\r\nTo: x@ext.de\r\nReply-To: p1@ext.de, p2@ext.de\r\n\r\nb",
            "From: Amt <amt@example.org>\r\nTo: undisclosed-recipients:;\r\nReply-To: amt@example.org\r\n\r\nb",
        ),
        // Reply-To with an internal address keeps it.
        (
            "From: amt@example.org\r\nReply-To: p1@ext.de, team@example.org\r\nTo: a@example.org\r\n\r\nb",
            "From: amt@example.org\r\nReply-To: team@example.org\r\nTo: a@example.org\r\n\r\nb",
        ),
        // Other visible headers: emptied fields go.
        (
            "To: a@example.org\r\nMail-Followup-To: p1@ext.de\r\nResent-Cc: p2@ext.de, r@example.org\r\nX: 1\r\n\r\nb",
            "To: a@example.org\r\nResent-Cc: r@example.org\r\nX: 1\r\n\r\nb",
        ),
        // A kept mailbox showing other addresses is written bare.
        (
            "To: \"p1@ext.de, p2@ext.de\" <amt@example.org>, Bob <b@example.org>\r\n\r\nb",
            "To: <amt@example.org>, Bob <b@example.org>\r\n\r\nb",
        ),
        (
            "To: amt@example.org (p1@ext.de)\r\n\r\nb",
            "To: <amt@example.org>\r\n\r\nb",
        ),
        (
            "To: =?utf-8?q?p1=40ext.de?= <amt@example.org>\r\n\r\nb",
            "To: <amt@example.org>\r\n\r\nb",
        ),
        // A name equal to its own address, or free of addresses, stays.
        (
            "To: \"amt@example.org\" <amt@example.org>, =?utf-8?q?M=C3=BCller?= <m@example.org>\r\n\r\nb",
            "To: \"amt@example.org\" <amt@example.org>,\r\n =?utf-8?q?M=C3=BCller?= <m@example.org>\r\n\r\nb",
        ),
        // A group name showing an address: its members stay, the name goes.
        (
            "To: \"p1@ext.de\": a@example.org, x@ext.de;\r\n\r\nb",
            "To: a@example.org\r\n\r\nb",
        ),
        // A comment-only element showing addresses goes.
        (
            "To: (p1@ext.de), a@example.org\r\n\r\nb",
            "To: a@example.org\r\n\r\nb",
        ),
        // A nameless line after a rewritten field goes with it when it
        // shows an address; junk without one stays.
        (
            "To: x@ext.de\r\njunk p1@ext.de\r\n\tp2@ext.de\r\nX: 1\r\nplain junk\r\n\r\nb",
            "To: undisclosed-recipients:;\r\nX: 1\r\nplain junk\r\n\r\nb",
        ),
        // From is the author: never rewritten (check refuses instead).
        (
            "From: a@example.org, p1@ext.de\r\nTo: x@ext.de\r\n\r\nb",
            "From: a@example.org, p1@ext.de\r\nTo: undisclosed-recipients:;\r\n\r\nb",
        ),
    ];
    let failures: Vec<String> = cases
        .iter()
        .filter(|(msg, want)| hidden(msg, U) != *want)
        .map(|(msg, want)| format!("{msg:?}:\n  got  {:?}\n  want {want:?}", hidden(msg, U)))
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// `check` refuses what a rewrite cannot hide, and passes what it did.
#[test]
fn check_refuses_what_the_rewrite_cannot_hide() {
    use crate::policy::{Action, Envelope, decide};
    let policy = crate::policy::Policy {
        max_external_recipients: 2,
        action: Action::Bcc,
        ..internal_policy()
    };
    let rcpts = ["x@ext.de".to_string()];
    let env = Envelope {
        mail_from: "a@example.org",
        rcpt_to: &rcpts,
    };
    let outcome = |msg: &str| {
        let d = decide(&policy, env, msg.as_bytes()).expect("fits");
        assert_eq!(d.action, Some(Action::Bcc), "{msg:?}");
        let keep = KeepVisible::new(&policy, None);
        let rw = hide(
            msg.as_bytes(),
            &d.headers,
            &keep,
            "undisclosed-recipients:;",
        );
        check(&policy, &d, &rw, "a@example.org", None)
    };
    assert_eq!(
        outcome(
            "From: a@example.org\r\nTo: p1@e.de, p2@e.de, p3@e.de\r\nReply-To: p4@e.de\r\n\r\nb"
        ),
        Ok(())
    );
    assert_eq!(
        outcome("From: a@example.org, p1@e.de, p2@e.de\r\nTo: p3@e.de\r\n\r\nb"),
        Err(Unsafe::Left {
            header: "From".into(),
            visible: 2
        })
    );
    let attached = "From: a@example.org\r\nTo: x@ext.de\r\nContent-Type: message/rfc822\r\n\r\n\
                    To: p1@e.de, p2@e.de, p3@e.de\r\n\r\nold\r\n";
    assert_eq!(outcome(attached), Err(Unsafe::Attached { visible: 3 }));
}

#[test]
fn strip_bcc_table() {
    let cases: &[(&str, Option<&str>)] = &[
        ("To: a@x\r\n\r\nb", None),
        (
            "To: a@x\r\nBCC: b@y,\r\n c@z\r\nX: 1\r\n\r\nb",
            Some("To: a@x\r\nX: 1\r\n"),
        ),
        ("Resent-Bcc:\r\nBcc: b\r\n\r\n", Some("")),
    ];
    for (msg, want) in cases {
        let headers = scan(msg.as_bytes(), 1000).expect("fits");
        let got = strip_bcc(msg.as_bytes(), &headers);
        assert_eq!(
            got.as_ref().map(|r| r.rest),
            want.map(|_| headers.end),
            "{msg:?}"
        );
        let head = got.map(|r| String::from_utf8_lossy(&r.head).into_owned());
        assert_eq!(head.as_deref(), *want, "{msg:?}");
    }
}

#[test]
fn long_lists_are_folded() {
    let to: Vec<String> = (0..300)
        .map(|i| format!("\"Colleague Number {i}\" <c{i}@example.org>"))
        .chain((0..300).map(|i| format!("e{i}@ext.de")))
        .collect();
    let msg = format!("To: {}\r\n\r\nbody", to.join(", "));
    let out = hidden(&msg, "x");
    for line in out.split("\r\n") {
        assert!(line.len() <= 78, "{} bytes: {line:?}", line.len());
    }
    let headers = scan(out.as_bytes(), 1 << 20).expect("fits");
    let v = count(out.as_bytes(), &headers, &internal_policy());
    assert_eq!((v.internal.len(), v.external.len()), (300, 0));
}

/// Fields other than To/Cc/Bcc/Resent-Bcc, as bytes, in order.
fn others(msg: &[u8]) -> Vec<Vec<u8>> {
    let headers = scan(msg, 1 << 20).expect("fits");
    headers
        .fields
        .iter()
        .filter(|f| {
            !matches!(
                f.kind,
                FieldKind::To | FieldKind::Cc | FieldKind::Bcc | FieldKind::ResentBcc
            )
        })
        .map(|f| msg[f.span.clone()].to_vec())
        .collect()
}

fn address() -> impl Strategy<Value = (String, bool)> {
    (0..20u8, 0..6u8, 0..5u8).prop_map(|(u, d, form)| {
        let (domain, internal) = match d {
            0 => ("example.org", true),
            1 => ("Sub.Example.org", true),
            2 => ("müller.de", false),
            3 => ("ext.de", false),
            _ => ("ext.example.org.evil", false),
        };
        let a = format!("u{u}@{domain}");
        let text = match form {
            0 => a,
            1 => format!("Name {u} <{a}>"),
            2 => format!("\"Last, First {u}\" <{a}>"),
            3 => format!("{a} (comment)"),
            _ => format!("Team{u}: {a};"),
        };
        (text, internal)
    })
}

proptest! {
    /// With keep = internal only, nothing external stays visible, no
    /// internal address is lost, and every other byte stays as it was.
    #[test]
    fn hide_leaves_no_external_and_keeps_every_internal(
        fields in proptest::collection::vec(
            (0..3u8, proptest::collection::vec(address(), 0..8), any::<bool>()),
            0..5,
        )
    ) {
        let mut msg = String::from("From: s@example.org\r\n");
        for (i, (kind, list, fold)) in fields.iter().enumerate() {
            let name = ["To", "cc", "Bcc"][usize::from(*kind)];
            let items: Vec<&str> = list.iter().map(|(t, _)| t.as_str()).collect();
            msg += &format!("{name}: {}\r\nX-{i}: keep me\r\n", items.join(if *fold { ",\r\n\t" } else { ", " }));
        }
        msg += "\r\n.body with To: x@ext.de\r\n";
        let headers = scan(msg.as_bytes(), 1 << 20).expect("fits");
        let before = count(msg.as_bytes(), &headers, &internal_policy());
        let r = hide(msg.as_bytes(), &headers, &internal(), "undisclosed-recipients:;");
        prop_assert_eq!(&msg.as_bytes()[r.rest..], &msg.as_bytes()[headers.end..]);
        let mut out = r.head.clone();
        out.extend_from_slice(&msg.as_bytes()[r.rest..]);
        let after_headers = scan(&out, 1 << 20).expect("fits");
        prop_assert_eq!(after_headers.end, r.head.len());
        let after = count(&out, &after_headers, &internal_policy());
        prop_assert!(after.external.is_empty(), "left visible: {:?}", after.external);
        let mut want = before.internal.to_vec();
        let mut got = after.internal.to_vec();
        want.sort();
        got.sort();
        prop_assert_eq!(got, want);
        prop_assert_eq!(others(&out), others(msg.as_bytes()));
        prop_assert_eq!(after_headers.of_kind(FieldKind::Bcc).count(), 0);
        prop_assert!(after_headers.of_kind(FieldKind::To).count() >= 1);
        prop_assert!(out.split(|&b| b == b'\n').all(|l| l.len() <= 998));
    }
}
