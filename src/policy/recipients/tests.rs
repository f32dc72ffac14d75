//! Recipient patterns as tables, and the index against the direct reading
//! on generated rules and lists.

use proptest::prelude::*;

use super::*;
use crate::message::headers::scan;
use crate::policy::count::count;
use crate::policy::{DomainSet, Policy};

fn p(s: &str) -> Pattern {
    Pattern::parse(s).unwrap_or_else(|e| panic!("{e}"))
}

fn visible(to: &str) -> Visible {
    let head = format!("To: {to}\r\n\r\n");
    let policy = Policy {
        internal_domains: DomainSet::new(["example.org"]).expect("valid"),
        ..Policy::default()
    };
    let h = scan(head.as_bytes(), 1 << 20).expect("fits");
    count(head.as_bytes(), &h, &policy)
}

#[test]
fn parse_table() {
    let good: &[(&str, Pattern)] = &[
        (
            "anna@partner.example",
            Pattern::Address("anna@partner.example".into()),
        ),
        (
            " Anna@Partner.EXAMPLE ",
            Pattern::Address("anna@partner.example".into()),
        ),
        (
            "*@partner.example",
            Pattern::Domain("partner.example".into()),
        ),
        (
            "*@BÜCHER.example",
            Pattern::Domain("xn--bcher-kva.example".into()),
        ),
        (
            "*@xn--bcher-kva.example",
            Pattern::Domain("xn--bcher-kva.example".into()),
        ),
        (
            "*.partner.example",
            Pattern::Subdomains("partner.example".into()),
        ),
        (
            "*.Bücher.example.",
            Pattern::Subdomains("xn--bcher-kva.example".into()),
        ),
        (
            "müller@bücher.example",
            Pattern::Address("müller@xn--bcher-kva.example".into()),
        ),
    ];
    for (text, want) in good {
        assert_eq!(Pattern::parse(text).as_ref(), Ok(want), "{text:?}");
    }
    for bad in [
        "",
        "*",
        "*@",
        "*.",
        "@x.test",
        "anna",
        "news*@x.test",
        "*@*.x.test",
        "a?b@x.test",
        "Anna <a@x.test>",
        "a b@x.test",
        "a@b@x.test",
        "*@x..test",
        "*@x test",
        "a@",
        "**@x.test",
        "*.*.x.test",
    ] {
        assert_eq!(Pattern::parse(bad), Err(BadPattern(bad.into())), "{bad:?}");
    }
}

#[test]
fn matches_table() {
    let cases: &[(&str, &str, bool)] = &[
        ("anna@partner.example", "anna@partner.example", true),
        ("anna@partner.example", "bob@partner.example", false),
        ("*@partner.example", "bob@partner.example", true),
        ("*@partner.example", "bob@mail.partner.example", false),
        ("*@partner.example", "bob@xpartner.example", false),
        ("*.partner.example", "bob@mail.partner.example", true),
        ("*.partner.example", "bob@a.b.partner.example", true),
        ("*.partner.example", "bob@partner.example", false),
        ("*.partner.example", "bob@mailpartner.example", false),
        ("*@bücher.example", "kunde@xn--bcher-kva.example", true),
        ("*@partner.example", "garbage", false),
    ];
    for (pattern, addr, want) in cases {
        assert_eq!(p(pattern).matches(addr), *want, "{pattern} vs {addr}");
    }
}

#[test]
fn covers_table() {
    let cases: &[(&str, &str, bool)] = &[
        ("a@x.test", "a@x.test", true),
        ("a@x.test", "b@x.test", false),
        ("a@x.test", "*@x.test", false),
        ("*@x.test", "a@x.test", true),
        ("*@x.test", "*@x.test", true),
        ("*@x.test", "a@sub.x.test", false),
        ("*@x.test", "*.x.test", false),
        ("*.x.test", "a@sub.x.test", true),
        ("*.x.test", "a@x.test", false),
        ("*.x.test", "*@sub.x.test", true),
        ("*.x.test", "*@x.test", false),
        ("*.x.test", "*.x.test", true),
        ("*.x.test", "*.sub.x.test", true),
        ("*.sub.x.test", "*.x.test", false),
    ];
    for (a, b, want) in cases {
        assert_eq!(p(a).covers(&p(b)), *want, "{a} covers {b}");
    }
}

#[test]
fn why_not_names_the_first_address_that_does_not_match() {
    let v = visible("a@team.test, b@team.test, c@elsewhere.test");
    let c = RecipientConditions {
        every: vec![p("*@team.test")],
        any: vec![],
    };
    assert_eq!(
        c.why_not(&v).as_deref(),
        Some("recipients: c@elsewhere.test matches none of *@team.test")
    );
    let c = RecipientConditions {
        every: vec![],
        any: vec![p("*@patients.example"), p("x@y.test")],
    };
    assert_eq!(
        c.why_not(&v).as_deref(),
        Some("any_recipient: no visible external address matches *@patients.example, x@y.test")
    );
    let c = RecipientConditions {
        every: vec![p("*@team.test"), p("*@elsewhere.test")],
        any: vec![p("c@elsewhere.test")],
    };
    assert_eq!(c.why_not(&v), None);
}

/// A small universe of addresses and patterns, so generated ones collide.
fn address() -> impl Strategy<Value = String> {
    (
        0..4u8,
        prop::sample::select(vec!["x.test", "a.x.test", "b.a.x.test", "y.test"]),
    )
        .prop_map(|(u, d)| format!("u{u}@{d}"))
}

fn pattern() -> impl Strategy<Value = Pattern> {
    let domain = prop::sample::select(vec!["x.test", "a.x.test", "y.test", "z.test"]);
    prop_oneof![
        address().prop_map(Pattern::Address),
        domain.clone().prop_map(|d| Pattern::Domain(d.to_string())),
        domain.prop_map(|d| Pattern::Subdomains(d.to_string())),
    ]
}

fn conditions() -> impl Strategy<Value = RecipientConditions> {
    (
        prop::collection::vec(pattern(), 0..3),
        prop::collection::vec(pattern(), 0..3),
    )
        .prop_map(|(every, any)| RecipientConditions { every, any })
}

proptest! {
    /// The index and the direct reading agree on every rule, unparseable
    /// elements and empty lists included.
    #[test]
    fn index_agrees_with_the_direct_reading(
        rules in prop::collection::vec(conditions(), 1..70),
        to in prop::collection::vec(address(), 0..8),
        junk in any::<bool>(),
    ) {
        let mut list = to.join(", ");
        if junk {
            list.push_str(", team");
        }
        let v = visible(&list);
        let index = RecipientIndex::new(rules.iter());
        let held = index.evaluate(&v);
        for (r, c) in rules.iter().enumerate() {
            prop_assert_eq!(held.rule(&index, r), c.why_not(&v).is_none(), "rule {} {:?} on {}", r, c, list);
        }
    }

    /// `covers` is sound: whatever the covered pattern matches, the
    /// covering one matches.
    #[test]
    fn covers_is_sound(a in pattern(), b in pattern(), addr in address()) {
        if a.covers(&b) && b.matches(&addr) {
            prop_assert!(a.matches(&addr), "{} covers {} but not {}", a, b, addr);
        }
    }
}
