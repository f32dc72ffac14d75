//! Fuzz target: the recipient counter and decision (`bccguard::policy::decide`)
//! and the Bcc rewrite (`bccguard::rewrite::hide`) on arbitrary messages.
//!
//! Invariants:
//! - no panic, whatever the bytes; header spans stay inside the message;
//! - on a message the DATA reader would pass (no bare CR/LF, no NUL):
//!   - the counter never sees fewer distinct To/Cc addresses than
//!     mail-parser (an independent parser, standing in for what a mail
//!     client displays): an address a reader sees but the guard does not
//!     count is an open distribution list slipping through (checked on
//!     header sections whose lines are RFC 5322-shaped: see
//!     `well_formed_head`);
//!   - the counter never sees fewer external addresses than the lenient
//!     reader of tests/oracle (mail-parser's decoding, a regular expression
//!     for every address-like token in every visible header), on any head;
//!   - after `hide` with keep = internal only, a re-scan of the rewritten
//!     message counts 0 external addresses outside From (never rewritten),
//!     for the guard and for the lenient reader, and To is still present.
#![no_main]

use bccguard::message::headers::{FieldKind, scan};
use bccguard::policy::count::count;
use bccguard::policy::{Action, DomainSet, EmptyTo, Envelope, Policy, VisibleHeaders, decide};
use bccguard::rewrite::{KeepVisible, hide};
use libfuzzer_sys::fuzz_target;

#[path = "../../tests/oracle/mod.rs"]
mod oracle;

fn policy() -> Policy {
    Policy {
        internal_domains: DomainSet::new(["example.org", "*.example.org"]).expect("valid"),
        max_external_recipients: 3,
        action: Action::Bcc,
        rules: Vec::new(),
        keep_internal_visible: true,
        empty_to: EmptyTo::Undisclosed,
        max_header_size: 64 * 1024,
        ..Policy::default()
    }
}

/// What the strict DATA reader lets through: CR only before LF, LF only
/// after CR, no NUL.
fn reader_would_pass(msg: &[u8]) -> bool {
    msg.iter().enumerate().all(|(i, &b)| match b {
        b'\r' => msg.get(i + 1) == Some(&b'\n'),
        b'\n' => i > 0 && msg[i - 1] == b'\r',
        0 => false,
        _ => true,
    })
}

/// Every header line is RFC 5322-shaped: a field name of printable ASCII
/// (obs-syntax whitespace before the colon allowed), or a continuation
/// line after a field. mail-parser reads more than that (it strips leading
/// whitespace and control characters from a name, so `\t\x0ccc: a@x` is a
/// Cc to it); the guard ignores such lines for counting. That divergence is
/// reported in docs/hardening.md ("What fuzzing found"); the comparison runs on the rest.
fn well_formed_head(head: &[u8]) -> bool {
    let mut seen_field = false;
    for line in head.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        if matches!(line[0], b' ' | b'\t') {
            if !seen_field {
                return false;
            }
            continue;
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            return false;
        };
        let mut name = &line[..colon];
        while let [rest @ .., b' ' | b'\t'] = name {
            name = rest;
        }
        if name.is_empty() || !name.iter().all(|&b| (33..=126).contains(&b)) {
            return false;
        }
        seen_field = true;
    }
    true
}

fuzz_target!(|msg: &[u8]| {
    let p = policy();
    let rcpts = ["x@ext.test".to_string()];
    let env = Envelope {
        mail_from: "s@example.org",
        rcpt_to: &rcpts,
    };
    let Ok(d) = decide(&p, env, msg) else { return };
    assert!(d.headers.end <= msg.len());
    for f in &d.headers.fields {
        assert!(f.span.end <= msg.len() && f.value.end <= msg.len());
    }
    let keep = KeepVisible::new(&p, None);
    let r = hide(msg, &d.headers, &keep, "undisclosed-recipients:;");
    assert!(r.rest <= msg.len());
    if !reader_would_pass(msg) {
        return;
    }
    let head = &msg[..d.headers.end];
    if well_formed_head(head) {
        let seen = d.visible.external.len() + d.visible.internal.len();
        let theirs = oracle::mail_parser_addresses(head);
        assert!(
            seen >= theirs.len(),
            "guard counts {:?} + {:?}, mail-parser sees {theirs:?} in {:?}",
            d.visible.external,
            d.visible.internal,
            String::from_utf8_lossy(head)
        );
    }

    let text = String::from_utf8_lossy(head);
    let lenient = oracle::lenient_external(&text, &p.internal_domains, true);
    assert!(
        d.visible.external.len() >= lenient.len(),
        "guard counts {:?}, the lenient reader sees {lenient:?} in {text:?}",
        d.visible.external
    );

    let mut out = r.head.clone();
    out.extend_from_slice(&msg[r.rest..]);
    let again = scan(&out, usize::MAX).expect("no limit");
    let no_from = Policy {
        visible_headers: VisibleHeaders::new(
            VisibleHeaders::DEFAULT.into_iter().filter(|h| !h.ends_with("From")),
        )
        .expect("valid"),
        ..policy()
    };
    // An emptied Reply-To names the sender (header From), which may be
    // external here: the one address the rewrite may leave.
    let sender = d.header_from.as_deref();
    let v = count(&out, &again, &no_from);
    let left: Vec<&str> = v.external.iter().filter(|a| Some(*a) != sender).collect();
    assert!(
        left.is_empty(),
        "left visible {left:?} in {:?}",
        String::from_utf8_lossy(&out)
    );
    let mut lenient = oracle::lenient_external(&String::from_utf8_lossy(&out[..r.head.len()]), &p.internal_domains, false);
    lenient.retain(|a| Some(a.as_str()) != sender);
    assert!(
        lenient.is_empty(),
        "the lenient reader still sees {lenient:?} in {:?}",
        String::from_utf8_lossy(&out)
    );
    assert!(again.of_kind(FieldKind::To).count() >= 1);
});
