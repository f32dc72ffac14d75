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
