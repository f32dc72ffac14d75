//! `bccguard explain`: what the guard would do with one message and why,
//! sending nothing. Runs the same pure decision and rewrite as the session:
//! what was counted and where, which rule matched and why each earlier one
//! did not, both thresholds, and the approved group that would let it pass.
//!
//! Its [`Verdict`] is the command's exit status, so a script (a pre-send
//! check, a CI job over sample mails) can branch on it without parsing
//! the text: 0 pass, 2 reject, 3 hold, 4 rewritten, 5 relayed and
//! recorded; 1 is left for errors (no such file, a bad policy).

use std::fmt::Write as _;

use crate::config::Config;
use crate::message::headers::{FieldKind, HeaderError};
use crate::policy::{self, Action, Approved, Decision, Envelope, Groups};
use crate::rewrite::plan::{self, Body, Refused, Route, Splitter};

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

/// What the guard would do with the message, as the exit status of
/// `bccguard explain` (documented in its `--help`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Relayed unchanged, nothing recorded: exit 0.
    Pass,
    /// Refused (550/552), nothing sent: exit 2.
    Reject,
    /// Kept in the quarantine for a decision: exit 3.
    Hold,
    /// Sent with the recipients hidden (bcc) or as copies (split): exit 4.
    Rewritten,
    /// Relayed unchanged with an incident recorded (monitor, an allow rule
    /// over the threshold): exit 5.
    Recorded,
}

impl Verdict {
    /// The exit status (1 is the command's error status).
    pub fn exit_code(self) -> u8 {
        match self {
            Verdict::Pass => 0,
            Verdict::Reject => 2,
            Verdict::Hold => 3,
            Verdict::Rewritten => 4,
            Verdict::Recorded => 5,
        }
    }
}

/// The report `bccguard explain` prints, and its verdict.
#[derive(Debug, Clone)]
pub struct Explanation {
    /// The text, one item per line.
    pub text: String,
    /// What would happen.
    pub verdict: Verdict,
}

/// Explains what the guard would do with `raw` under `config`, with no
/// approved group.
pub fn explain(
    config: &Config,
    name: &str,
    raw: &[u8],
    rcpts: &[String],
    from: Option<&str>,
) -> Explanation {
    explain_with(config, None, name, raw, rcpts, from)
}

/// [`explain`] with the approved groups of the guard's store (`None`: no
/// store to read them from).
pub fn explain_with(
    config: &Config,
    groups: Option<&Groups>,
    name: &str,
    raw: &[u8],
    rcpts: &[String],
    from: Option<&str>,
) -> Explanation {
    let mut out = String::new();
    let verdict = write_explanation(&mut out, config, groups, name, raw, rcpts, from);
    Explanation { text: out, verdict }
}

fn write_explanation(
    out: &mut String,
    config: &Config,
    groups: Option<&Groups>,
    name: &str,
    raw: &[u8],
    rcpts: &[String],
    from: Option<&str>,
) -> Verdict {
    let msg = to_crlf(raw);
    let policy = &config.policy;
    // What the guard cannot read in full it refuses (fail closed), with
    // the session's own refusal.
    let refused = |out: &mut String, e| {
        let reply = plan::unreadable(policy, e).reply();
        let _ = writeln!(
            out,
            "{name}: the guard cannot read it in full and refuses it: {}",
            reply.summary()
        );
        Verdict::Reject
    };
    let (mail_from, rcpt_to) = match envelope(policy, &msg, rcpts, from) {
        Ok(envelope) => envelope,
        Err(e) => return refused(out, e),
    };
    let approved = groups.map(|groups| Approved {
        groups,
        now: crate::clock::now() as i64,
    });
    let d = match policy::decide_with(
        policy,
        Envelope {
            mail_from: &mail_from,
            rcpt_to: &rcpt_to,
        },
        &msg,
        approved,
    ) {
        Ok(d) => d,
        Err(e) => return refused(out, e),
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
    write_decision(out, policy, &d, &mail_from);
    write_group(out, groups, &d);
    // The same plan the session follows at the end of DATA.
    let plan = plan::plan(policy, &d, &msg, &mail_from, d.action);
    if let Route::Refuse(Refused::Unsafe(why)) = &plan.route {
        let _ = writeln!(
            out,
            "action:    reject: {} (550 5.7.1), incident recorded",
            why.describe()
        );
        return Verdict::Reject;
    }
    let _ = writeln!(out, "action:    {}", verdict(&d, rcpt_to.len()));
    let outcome = match &plan.route {
        Route::Refuse(_) => Verdict::Reject,
        Route::Hold => Verdict::Hold,
        Route::Split | Route::Whole(Body::Rewritten(_)) => Verdict::Rewritten,
        Route::Whole(_) if plan.incident.is_some() => Verdict::Recorded,
        Route::Whole(_) => Verdict::Pass,
    };
    let (title, head) = match (&d.action, &plan.route) {
        (Some(Action::Bcc), Route::Whole(Body::Rewritten(rw))) => {
            ("rewritten header section", rw.head.clone())
        }
        (Some(Action::Split), Route::Split) => (
            "header section of the first copy",
            Splitter::new(policy, &d, &msg, &mail_from).head(rcpt_to.first().map(String::as_str)),
        ),
        _ => return outcome,
    };
    let _ = writeln!(out, "{title}:");
    for line in String::from_utf8_lossy(&head).lines() {
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
    outcome
}

/// The envelope to decide on: the one given, or what a mail client would
/// build (the header From, every visible address). An error when the
/// header section cannot be read in full.
fn envelope(
    policy: &policy::Policy,
    msg: &[u8],
    rcpts: &[String],
    from: Option<&str>,
) -> Result<(String, Vec<String>), HeaderError> {
    let probe = policy::decide(
        policy,
        Envelope {
            mail_from: from.unwrap_or(""),
            rcpt_to: &[],
        },
        msg,
    )?;
    let mail_from = from
        .map(str::to_string)
        .or_else(|| probe.header_from.clone())
        .unwrap_or_default();
    let rcpt_to = if rcpts.is_empty() {
        let visible = &probe.visible;
        visible
            .external
            .iter()
            .chain(visible.internal.iter())
            .map(str::to_string)
            .collect()
    } else {
        rcpts.to_vec()
    };
    Ok((mail_from, rcpt_to))
}

/// What was counted, where each address was seen, the rule and the
/// threshold: the admin's way to see why a mail counts what it counts.
fn write_decision(out: &mut String, policy: &policy::Policy, d: &Decision, mail_from: &str) {
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
    write_rules(out, policy, d, mail_from);
    let _ = writeln!(
        out,
        "rule:      {}",
        d.rule
            .as_deref()
            .unwrap_or("(none matched: default policy)")
    );
    let exceeded = |over: bool| if over { "exceeded" } else { "not exceeded" };
    let over = d.visible.external.len() > d.threshold;
    let _ = writeln!(out, "threshold: {} -> {}", d.threshold, exceeded(over));
    let domains = d.visible.external_domains;
    let _ = match d.domain_threshold {
        Some(t) => writeln!(
            out,
            "domains:   {domains} registrable domain(s), threshold {t} -> {}",
            exceeded(domains > t)
        ),
        None => writeln!(
            out,
            "domains:   {domains} registrable domain(s), no domain threshold (max_external_domains unset)"
        ),
    };
    if let Some(t) = d.trigger {
        let _ = writeln!(out, "trigger:   {}", t.as_str());
    }
}

/// Every rule in order: the one that matched, why each earlier one did
/// not, and that the later ones were not tried (first match wins).
fn write_rules(out: &mut String, policy: &policy::Policy, d: &Decision, mail_from: &str) {
    if policy.rules.is_empty() {
        return;
    }
    let _ = writeln!(out, "rules:     first match wins");
    let width = policy.rules.iter().map(|r| r.name.len()).max().unwrap_or(0);
    let mut matched = false;
    for (i, r) in policy.rules.iter().enumerate() {
        let verdict = if matched {
            "not tried".to_string()
        } else {
            match r.why_not(mail_from, d.header_from.as_deref(), &d.visible) {
                None => {
                    matched = true;
                    "matched".to_string()
                }
                Some(why) => format!("no: {why}"),
            }
        };
        let name = &r.name;
        let _ = writeln!(out, "  [{i}] {name:<width$}  {verdict}");
    }
}

/// The approved group that lets the mail pass, or why none does.
fn write_group(out: &mut String, groups: Option<&Groups>, d: &Decision) {
    let line = match (groups, &d.group) {
        (_, Some(g)) => format!(
            "{g:?} holds every visible external address for this sender: sent unchanged, recorded as class allowed, nobody notified"
        ),
        _ if d.trigger.is_none() => return,
        (None, _) => "not looked at (no store at store.path to read them from)".to_string(),
        (Some(g), None) => format!(
            "none of {} approved group(s) in force holds every visible external address for this sender",
            g.len()
        ),
    };
    let _ = writeln!(out, "group:     {line}");
}

/// The action line for a plan that is not refused as unsafe.
fn verdict(d: &Decision, copies: usize) -> String {
    match d.action {
        None => "pass: relayed unchanged (apart from a Received header; Bcc removed)".to_string(),
        Some(Action::Allow) if d.group.is_some() => "allow: an approved open group, relayed unchanged, incident recorded (class allowed)".to_string(),
        Some(Action::Allow) => "allow: exempt by rule, relayed unchanged, incident recorded (class disclosed)".to_string(),
        Some(Action::Monitor) => "monitor: relayed unchanged, incident recorded".to_string(),
        Some(Action::Hold) => "hold: 250 to the client, kept in the quarantine for review, nothing sent, incident recorded".to_string(),
        Some(Action::Reject) => match (d.trigger, d.domain_threshold) {
            (Some(policy::Trigger::Domains), Some(t)) => format!("reject: 550 5.7.1, nothing sent, incident recorded ({} domains, limit {t})", d.visible.external_domains),
            _ => format!("reject: 550 5.7.1, nothing sent, incident recorded ({} visible, limit {})", d.visible.external.len(), d.threshold),
        },
        Some(Action::Bcc | Action::Split) if d.signed => {
            "reject: signed/encrypted mail cannot be rewritten safely (550 5.7.1), incident recorded".to_string()
        }
        Some(Action::Bcc) => "bcc: external addresses removed from the visible headers, envelope unchanged, incident recorded".to_string(),
        Some(Action::Split) => format!("split: {copies} separate copies, each showing only its own address, incident recorded"),
    }
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
