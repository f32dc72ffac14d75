//! The workload shared by the criterion benches (benches/core.rs) and the
//! profiler driver (examples/hotpath.rs): the guard's policy for the
//! cancellation mail, and that mail with `n` addresses, so both measure
//! exactly the same thing.

use bccguard::policy::{Action, DomainSet, EmptyTo, Policy};

/// `example.org` internal, threshold 10, action bcc.
pub fn policy() -> Policy {
    Policy {
        internal_domains: DomainSet::new(["example.org", "*.example.org"]).expect("domains"),
        max_external_recipients: 10,
        action: Action::Bcc,
        rules: bccguard::policy::Rules::default(),
        keep_internal_visible: true,
        empty_to: EmptyTo::Sender,
        max_header_size: 16 << 20,
        ..Policy::default()
    }
}

/// A message with `n` external addresses in one folded To header and a body
/// of `body` bytes.
pub fn mail(n: usize, body: usize) -> Vec<u8> {
    let mut m = String::from("From: Impfzentrum <termine@example.org>\r\nTo: ");
    for i in 0..n {
        if i > 0 {
            m.push_str(",\r\n ");
        }
        m.push_str(&format!("\"Patient {i}\" <patient{i}@mail{}.test>", i % 37));
    }
    m.push_str("\r\nSubject: Terminabsage\r\nMessage-ID: <absage@example.org>\r\n\r\n");
    let line = "Ihr Termin im Impfzentrum muss leider abgesagt werden. Bitte buchen Sie neu.\r\n";
    while m.len() < body {
        m.push_str(line);
    }
    m.into_bytes()
}

/// The office workload of issue 18: [`policy`] with a domain threshold and
/// 100 rules, none of which lets the cancellation mail off: 60 for other
/// senders, 20 `recipients` rules (fail at the first address), 19
/// `any_recipient` rules for any sender with domain, subdomain and address
/// patterns, ten of them addresses at the mail's own domains (so the
/// per-address look is taken), and the last one for the sender itself.
pub fn office_policy() -> Policy {
    use bccguard::policy::{Glob, Pattern, RecipientConditions, Rule, Rules};
    let patterns = |list: Vec<String>| -> Vec<Pattern> {
        list.iter()
            .map(|p| Pattern::parse(p).expect("pattern"))
            .collect()
    };
    let mut rules = Vec::new();
    for i in 0..60 {
        rules.push(Rule {
            sender: vec![Glob::new(&format!("dept{i}-*@example.org"))],
            action: Some(Action::Allow),
            ..Rule::named(&format!("dept{i}"))
        });
    }
    for i in 0..20 {
        rules.push(Rule {
            recipients: RecipientConditions {
                every: patterns(vec![
                    format!("*@partner{i}.test"),
                    format!("*.partner{i}.test"),
                ]),
                any: vec![],
            },
            max_external_recipients: Some(100),
            ..Rule::named(&format!("project{i}"))
        });
    }
    for i in 0..19 {
        rules.push(Rule {
            recipients: RecipientConditions {
                every: vec![],
                any: patterns(vec![
                    format!("*@clinic{i}.test"),
                    format!("*.patients{i}.test"),
                    format!("nobody{i}@mail{}.test", i % 37),
                ]),
            },
            max_external_recipients: Some(0),
            action: Some(Action::Hold),
            ..Rule::named(&format!("patients{i}"))
        });
    }
    rules.push(Rule {
        sender: vec![Glob::new("termine@example.org")],
        max_external_domains: Some(50),
        ..Rule::named("appointments")
    });
    Policy {
        max_external_domains: Some(5),
        rules: Rules::new(rules),
        ..policy()
    }
}

/// 1,000 approved groups of 25 addresses each, every one a slice of the
/// cancellation mail's own list (so the first address has candidates and
/// the subset test narrows them), half for its sender, half for any; with
/// `covering`, one more that holds all `n` addresses (the mail passes).
pub fn office_groups(n: usize, covering: bool) -> bccguard::policy::Groups {
    use bccguard::policy::{Group, Groups};
    let address = |k: usize| format!("patient{k}@mail{}.test", k % 37);
    let mut groups: Vec<Group> = (0..1000)
        .map(|i| Group {
            name: format!("group{i:04}"),
            sender: (i % 2 == 0).then(|| "termine@example.org".to_string()),
            addresses: (0..25).map(|j| address((i * 3 + j) % n)).collect(),
            expires_at: i64::MAX,
        })
        .collect();
    if covering {
        groups.push(Group {
            name: "everyone".into(),
            sender: None,
            addresses: (0..n).map(address).collect(),
            expires_at: i64::MAX,
        });
    }
    Groups::new(groups)
}
