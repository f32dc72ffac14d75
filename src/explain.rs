//! `bccguard explain`: what the guard would do with one message and why,
//! sending nothing. Runs the same pure decision and rewrite as the session.

use std::fmt::Write as _;

use crate::config::Config;
use crate::message::headers::FieldKind;
use crate::policy::{self, Action, Envelope};
use crate::rewrite::{self, KeepVisible};

/// Files on disk often have bare LF line ends; SMTP has CRLF. Bring the
/// message into wire form the way a mail client would before sending it.
pub fn to_crlf(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 32);
    let mut prev = 0u8;
    for &b in raw {
        if b == b'\n' && prev != b'\r' {
            out.push(b'\r');
        }
        if prev == b'\r' && b != b'\n' {
            out.push(b'\n');
        }
        out.push(b);
        prev = b;
    }
    if prev == b'\r' {
        out.push(b'\n');
    }
    out
}

/// The report `bccguard explain` prints.
pub fn explain(
    config: &Config,
    name: &str,
    raw: &[u8],
    rcpts: &[String],
    from: Option<&str>,
) -> String {
    let msg = to_crlf(raw);
    let policy = &config.policy;
    let mut out = String::new();
    // Default envelope: the header From and the visible addresses, as a
    // mail client would build it.
    let probe = policy::decide(
        policy,
        Envelope {
            mail_from: from.unwrap_or(""),
            rcpt_to: &[],
        },
        &msg,
    );
    let probe = match probe {
        Ok(d) => d,
        Err(_) => {
            let _ = writeln!(
                out,
                "{name}: the header section is larger than {} bytes: the guard refuses it (552 5.3.4)",
                policy.max_header_size
            );
            return out;
        }
    };
    let mail_from = from
        .map(str::to_string)
        .or_else(|| probe.header_from.clone())
        .unwrap_or_default();
    let rcpt_to: Vec<String> = if rcpts.is_empty() {
        probe
            .visible
            .external
            .iter()
            .chain(probe.visible.internal.iter())
            .map(str::to_string)
            .collect()
    } else {
        rcpts.to_vec()
    };
    let Ok(d) = policy::decide(
        policy,
        Envelope {
            mail_from: &mail_from,
            rcpt_to: &rcpt_to,
        },
        &msg,
    ) else {
        return out;
    };
    let _ = writeln!(out, "message:   {name} ({} bytes)", msg.len());
    let _ = writeln!(
        out,
        "envelope:  from <{mail_from}>, {} recipient(s){}",
        rcpt_to.len(),
        if rcpts.is_empty() {
            " (taken from the visible addresses)"
        } else {
            ""
        }
    );
    let _ = writeln!(
        out,
        "header from: {}",
        d.header_from.as_deref().unwrap_or("(none)")
    );
    let _ = writeln!(
        out,
        "visible:   {} external address(es) in {} domain(s), {} internal; in {}",
        d.visible.external.len(),
        d.visible.external_domains,
        d.visible.internal.len(),
        d.visible.places(&policy.visible_headers)
    );
    // Every counted address and where it was first seen: the admin's way
    // to see why a mail counts what it counts.
    let width = d
        .visible
        .external
        .iter()
        .map(str::len)
        .max()
        .unwrap_or(0)
        .min(60);
    for (a, seen) in d.visible.external.iter().zip(&d.visible.seen) {
        let _ = writeln!(
            out,
            "  counted  {a:<width$}  {}",
            seen.describe(&policy.visible_headers)
        );
    }
    let _ = writeln!(
        out,
        "rule:      {}",
        d.rule
            .as_deref()
            .unwrap_or("(none matched: default policy)")
    );
    let over = d.visible.external.len() > d.threshold;
    let _ = writeln!(
        out,
        "threshold: {} -> {}",
        d.threshold,
        if over { "exceeded" } else { "not exceeded" }
    );
    let verdict = match d.action {
        None => "pass: relayed unchanged (apart from a Received header; Bcc removed)".to_string(),
        Some(Action::Allow) => "allow: exempt by rule, relayed unchanged, incident recorded (class disclosed)".to_string(),
        Some(Action::Monitor) => "monitor: relayed unchanged, incident recorded".to_string(),
        Some(Action::Hold) => "hold: 250 to the client, kept in the quarantine for review, nothing sent, incident recorded".to_string(),
        Some(Action::Reject) => format!("reject: 550 5.7.1, nothing sent, incident recorded ({} visible, limit {})", d.visible.external.len(), d.threshold),
        Some(Action::Bcc | Action::Split) if d.signed => {
            "reject: signed/encrypted mail cannot be rewritten safely (550 5.7.1), incident recorded".to_string()
        }
        Some(Action::Bcc) => "bcc: external addresses removed from the visible headers, envelope unchanged, incident recorded".to_string(),
        Some(Action::Split) => format!("split: {} separate copies, each showing only its own address, incident recorded", rcpt_to.len()),
    };
    let fallback = d.empty_to_value(policy.empty_to, &mail_from);
    if matches!(d.action, Some(Action::Bcc | Action::Split)) && !d.signed {
        let keep = KeepVisible::new(policy, None);
        let rw = rewrite::hide(&msg, &d.headers, &keep, &fallback);
        if let Err(u) = rewrite::check(policy, &d, &rw, &mail_from, None) {
            let _ = writeln!(
                out,
                "action:    reject: {} (550 5.7.1), incident recorded",
                u.describe()
            );
            return out;
        }
    }
    let _ = writeln!(out, "action:    {verdict}");
    let also = match d.action {
        Some(Action::Split) if !d.signed => rcpt_to
            .first()
            .and_then(|r| policy::count::normalize_address(r)),
        Some(Action::Bcc) if !d.signed => None,
        _ => return out,
    };
    let keep = KeepVisible::new(policy, also);
    let rw = rewrite::hide(&msg, &d.headers, &keep, &fallback);
    let title = if d.action == Some(Action::Split) {
        "header section of the first copy"
    } else {
        "rewritten header section"
    };
    let _ = writeln!(out, "{title}:");
    let head = String::from_utf8_lossy(&rw.head);
    for line in head.lines() {
        let _ = writeln!(out, "  | {line}");
    }
    let changed = d
        .headers
        .fields
        .iter()
        .filter(|f| {
            matches!(f.kind, FieldKind::Bcc | FieldKind::ResentBcc)
                || policy
                    .visible_headers
                    .index(&f.lenient_name(&msg))
                    .is_some_and(|i| !policy.visible_headers.is_originator(i))
        })
        .count();
    let _ = writeln!(
        out,
        "  ({changed} address and Bcc field(s) rewritten; every other header and the body unchanged)"
    );
    out
}

#[cfg(test)]
mod tests {
    use super::to_crlf;

    #[test]
    fn line_ends_become_crlf() {
        assert_eq!(to_crlf(b"a\nb\r\nc\rd"), b"a\r\nb\r\nc\r\nd".to_vec());
        assert_eq!(to_crlf(b"x\r"), b"x\r\n".to_vec());
    }
}
