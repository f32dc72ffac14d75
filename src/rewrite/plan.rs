//! The delivery plan: a decision and its message in, what goes out out.
//! Pure, and the one pipeline both the session (at the end of DATA) and
//! the quarantine's release use, so a released message is rewritten and
//! checked exactly as one the session sends.
//!
//! [`plan`] picks, for the measure to take:
//! - the copies to send: the whole message with Bcc removed
//!   ([`Route::Whole`]), the message with external recipients hidden
//!   ([`Route::Whole`] of a [`rewrite::hide`]), or one copy per recipient
//!   ([`Route::Split`], each head built by a [`Splitter`]);
//! - or that nothing goes upstream: held ([`Route::Hold`]) or refused
//!   ([`Route::Refuse`]: over the threshold, signed mail that cannot be
//!   rewritten, a rewrite that cannot hide every address);
//! - and the incident it is, typed on the measure ([`Incident`]).
//!
//! bcc and split go out only when [`rewrite::check`] reads the rewritten
//! mail as the counter reads any mail and finds no address left over.

use crate::message::headers::HeaderError;
use crate::policy::{self, Action, Decision, Policy};
use crate::rewrite::{self, KeepVisible, Prepared, Rewritten};
use crate::smtp::refusal::Refusal;

/// The message as one transaction carries it.
#[derive(Debug, Clone)]
pub enum Body {
    /// The message unchanged (it had no Bcc header).
    Unchanged,
    /// A new header section in front of the rest of the message.
    Rewritten(Rewritten),
}

impl Body {
    /// The bytes to send: the `Received:` header, then the message.
    pub fn parts<'a>(&'a self, received: &'a [u8], msg: &'a [u8]) -> Vec<&'a [u8]> {
        match self {
            Body::Unchanged => vec![received, msg],
            Body::Rewritten(rw) => vec![received, &rw.head, &msg[rw.rest.min(msg.len())..]],
        }
    }
}

/// Why nothing goes upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// Over the threshold with `action: reject`.
    OpenList,
    /// bcc/split of signed or encrypted mail: a rewrite would break it,
    /// and the list may sit inside the protected part.
    Signed,
    /// bcc/split that would leave addresses visible.
    Unsafe(rewrite::Unsafe),
}

/// What goes upstream.
#[derive(Debug, Clone)]
pub enum Route {
    /// One transaction to every envelope recipient.
    Whole(Body),
    /// One transaction per envelope recipient, each copy showing only its
    /// own address (plus the internal ones).
    Split,
    /// Nothing: the message goes into the quarantine.
    Hold,
    /// Nothing: the client hears why.
    Refuse(Refused),
}

/// The incident a plan is, if it is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incident {
    /// The measure taken (`reject` also for a bcc/split that could not be
    /// done safely).
    pub action: Action,
    /// For the record: why.
    pub reason: String,
}

/// What to do with one message.
#[derive(Debug, Clone)]
pub struct Plan {
    /// What goes upstream.
    pub route: Route,
    /// The incident, for a decision over the threshold.
    pub incident: Option<Incident>,
}

/// The refusal of a message whose header section cannot be read in full
/// (fail closed: what the guard cannot count it does not pass), with the
/// limit it hit.
pub fn unreadable(policy: &Policy, e: HeaderError) -> Refusal<'static> {
    match e {
        HeaderError::TooBig => Refusal::HeaderTooBig {
            limit: policy.max_header_size,
        },
        HeaderError::AttachedTooBig => Refusal::AttachedHeaderTooBig {
            limit: policy.max_header_size,
        },
        HeaderError::TooDeep => Refusal::MimeTooDeep {
            limit: policy.mime_nesting_limit,
        },
    }
}

/// The plan for `decision` (made by [`policy::decide`] on `msg`), taking
/// the measure `action` (the decision's own, or the one a release asks
/// for; `None` sends the message as it is, Bcc removed).
pub fn plan(
    policy: &Policy,
    decision: &Decision,
    msg: &[u8],
    mail_from: &str,
    action: Option<Action>,
) -> Plan {
    let incident = |action: Action, reason: &str| {
        Some(Incident {
            action,
            reason: reason.to_string(),
        })
    };
    let whole = || Route::Whole(unchanged(msg, decision));
    match action {
        None => Plan {
            route: whole(),
            incident: None,
        },
        Some(Action::Allow) => Plan {
            route: whole(),
            incident: incident(
                Action::Allow,
                &match &decision.group {
                    Some(g) => format!(
                        "over threshold, every visible external address is in the approved group {g:?}: sent unchanged"
                    ),
                    None => "over threshold, exempted by an allow rule: sent unchanged".into(),
                },
            ),
        },
        Some(Action::Monitor) => Plan {
            route: whole(),
            incident: incident(
                Action::Monitor,
                "over threshold, monitor mode: sent unchanged",
            ),
        },
        Some(Action::Hold) => Plan {
            route: Route::Hold,
            incident: incident(Action::Hold, "over threshold: held for review"),
        },
        Some(Action::Reject) => Plan {
            route: Route::Refuse(Refused::OpenList),
            incident: incident(Action::Reject, "over threshold"),
        },
        Some(Action::Bcc | Action::Split) if decision.signed => Plan {
            route: Route::Refuse(Refused::Signed),
            incident: incident(
                Action::Reject,
                "over threshold in signed/encrypted mail that cannot be rewritten",
            ),
        },
        Some(measure @ (Action::Bcc | Action::Split)) => {
            let fallback = decision.empty_to_value(policy.empty_to, mail_from);
            let keep = KeepVisible::new(policy, None);
            let rw = rewrite::hide(msg, &decision.headers, &keep, &fallback);
            if let Err(u) = rewrite::check(policy, decision, &rw, mail_from, None) {
                let reason = format!(
                    "over threshold, and a rewrite cannot hide every address: {}",
                    u.describe()
                );
                return Plan {
                    route: Route::Refuse(Refused::Unsafe(u)),
                    incident: incident(Action::Reject, &reason),
                };
            }
            match measure {
                Action::Bcc => Plan {
                    route: Route::Whole(Body::Rewritten(rw)),
                    incident: incident(
                        Action::Bcc,
                        "over threshold: external recipients moved to Bcc",
                    ),
                },
                _ => Plan {
                    route: Route::Split,
                    incident: incident(Action::Split, "over threshold: one copy per recipient"),
                },
            }
        }
    }
}

/// The message with only Bcc/Resent-Bcc removed.
fn unchanged(msg: &[u8], decision: &Decision) -> Body {
    match rewrite::strip_bcc(msg, &decision.headers) {
        Some(rw) => Body::Rewritten(rw),
        None => Body::Unchanged,
    }
}

/// The header sections of a split's copies: the list is parsed once, and
/// each copy only walks it.
pub struct Splitter<'m> {
    prepared: Prepared<'m>,
    fallback: String,
}

impl<'m> Splitter<'m> {
    /// Prepares the copies of `msg` for the recipients of `mail_from`'s
    /// transaction.
    pub fn new(policy: &Policy, decision: &Decision, msg: &'m [u8], mail_from: &str) -> Self {
        Splitter {
            prepared: Prepared::new(msg, &decision.headers, &KeepVisible::new(policy, None)),
            fallback: decision.empty_to_value(policy.empty_to, mail_from),
        }
    }

    /// The header section of the copy for `rcpt`: its own address stays
    /// visible, every other external one is hidden.
    pub fn head(&self, rcpt: Option<&str>) -> Vec<u8> {
        self.copy(rcpt).head
    }

    /// The rewritten copy for `rcpt`.
    pub fn copy(&self, rcpt: Option<&str>) -> Rewritten {
        let own = rcpt.and_then(policy::count::normalize_address);
        self.prepared.hide(own.as_deref(), &self.fallback)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{DomainSet, Envelope, decide};

    fn policy(action: Action) -> Policy {
        Policy {
            internal_domains: DomainSet::new(["example.org"]).unwrap(),
            max_external_recipients: 2,
            action,
            ..Policy::default()
        }
    }

    fn run(action: Action, msg: &str) -> (Plan, Vec<u8>) {
        let p = policy(action);
        let rcpts: Vec<String> = ["a@e1.test", "b@e2.test", "c@e3.test"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let env = Envelope {
            mail_from: "amt@example.org",
            rcpt_to: &rcpts,
        };
        let d = decide(&p, env, msg.as_bytes()).unwrap();
        let plan = plan(&p, &d, msg.as_bytes(), "amt@example.org", d.action);
        let sent = match &plan.route {
            Route::Whole(body) => body.parts(b"", msg.as_bytes()).concat(),
            _ => Vec::new(),
        };
        (plan, sent)
    }

    const OPEN: &str = "From: amt@example.org\r\nTo: a@e1.test, b@e2.test, c@e3.test\r\nBcc: x@e4.test\r\nSubject: s\r\n\r\nbody\r\n";

    #[test]
    fn each_measure_has_its_copies_and_its_incident() {
        let table = [
            (Action::Reject, "refuse", Some(Action::Reject)),
            (Action::Hold, "hold", Some(Action::Hold)),
            (Action::Monitor, "whole", Some(Action::Monitor)),
            (Action::Bcc, "whole", Some(Action::Bcc)),
            (Action::Split, "split", Some(Action::Split)),
        ];
        for (action, send, incident) in table {
            let (plan, sent) = run(action, OPEN);
            let got = match plan.route {
                Route::Whole(_) => "whole",
                Route::Split => "split",
                Route::Hold => "hold",
                Route::Refuse(_) => "refuse",
            };
            assert_eq!(got, send, "{action:?}");
            assert_eq!(plan.incident.map(|i| i.action), incident, "{action:?}");
            let text = String::from_utf8_lossy(&sent);
            assert!(
                !text.contains("x@e4.test"),
                "{action:?}: Bcc went out: {text}"
            );
            if action == Action::Bcc {
                assert!(!text.contains("a@e1.test"), "bcc kept the list: {text}");
            }
            if action == Action::Monitor {
                assert!(
                    text.contains("c@e3.test"),
                    "monitor changed the mail: {text}"
                );
            }
        }
    }

    #[test]
    fn below_the_threshold_only_bcc_is_removed_and_no_incident() {
        let msg = "From: amt@example.org\r\nTo: a@e1.test\r\nBcc: x@e4.test\r\n\r\nbody\r\n";
        let (plan, sent) = run(Action::Reject, msg);
        assert!(plan.incident.is_none());
        assert_eq!(
            String::from_utf8_lossy(&sent),
            "From: amt@example.org\r\nTo: a@e1.test\r\n\r\nbody\r\n"
        );
    }

    #[test]
    fn signed_or_unsafe_rewrites_are_refused_as_rejects() {
        let signed = "From: amt@example.org\r\nTo: a@e1.test, b@e2.test, c@e3.test\r\nContent-Type: multipart/signed; boundary=b\r\n\r\n--b\r\n\r\nx\r\n--b--\r\n";
        let (plan, _) = run(Action::Bcc, signed);
        assert!(matches!(plan.route, Route::Refuse(Refused::Signed)));
        assert_eq!(plan.incident.unwrap().action, Action::Reject);
        let from_list = "From: a@e1.test, b@e2.test, c@e3.test\r\nTo: a@e1.test\r\n\r\nbody\r\n";
        let (plan, _) = run(Action::Split, from_list);
        assert!(
            matches!(plan.route, Route::Refuse(Refused::Unsafe(_))),
            "{:?}",
            plan.route
        );
        assert_eq!(plan.incident.unwrap().action, Action::Reject);
    }

    #[test]
    fn a_split_copy_shows_its_own_address_only() {
        let p = policy(Action::Split);
        let rcpts = vec!["a@e1.test".to_string(), "b@e2.test".to_string()];
        let env = Envelope {
            mail_from: "amt@example.org",
            rcpt_to: &rcpts,
        };
        let d = decide(&p, env, OPEN.as_bytes()).unwrap();
        let s = Splitter::new(&p, &d, OPEN.as_bytes(), "amt@example.org");
        let head = String::from_utf8(s.head(Some("b@e2.test"))).unwrap();
        assert!(head.contains("b@e2.test"), "{head}");
        assert!(
            !head.contains("a@e1.test") && !head.contains("c@e3.test"),
            "{head}"
        );
        assert_eq!(s.copy(Some("b@e2.test")).head, s.head(Some("b@e2.test")));
    }
}
