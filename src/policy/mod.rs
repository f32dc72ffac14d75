//! The decision, and nothing but the decision: message bytes + envelope in,
//! [`Decision`] out. Pure (no I/O, no clock, no globals), so it is tested
//! exhaustively with tables and fuzzed.
//!
//! Steps: scan the header section ([`crate::message::headers`]), find the
//! header sections of attached messages when the mail leaves the
//! organisation ([`crate::message::mime`]), count the distinct external
//! addresses a reader can see in any of them and their registrable domains
//! ([`count`], [`domains`]), find the first rule that matches the sender
//! and the recipients ([`rules`], [`recipients`]), compare with its
//! thresholds (either triggers); over one, a group the DPO approved
//! ([`groups`]) that holds every visible external address lets the mail
//! pass.

pub mod count;
pub mod domains;
pub mod groups;
pub mod recipients;
pub mod rules;

use std::fmt;

pub use count::{How, Seen, Visible, VisibleHeaders};
pub use domains::{BadDomain, DomainSet};
pub use groups::{Approved, Group, Groups};
pub use recipients::{BadPattern, Pattern, RecipientConditions};
pub use rules::{Glob, Rule, Rules, Shadowed};

use crate::message::address::{Element, parse_list};
use crate::message::headers::{FieldKind, HeaderError, Headers, scan};
use crate::message::mime::{self, MimeError};

/// What to do with a message whose visible external recipients exceed the
/// threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Refuse with 550 5.7.1; upstream never gets the final dot.
    Reject,
    /// Move external addresses out of To/Cc; envelope unchanged.
    Bcc,
    /// One upstream copy per envelope recipient.
    Split,
    /// Pass unchanged, record the incident (safe rollout).
    Monitor,
    /// Exempt (for rules). Over the threshold it is still an incident, of
    /// class `disclosed`: the list went out open.
    Allow,
    /// Keep the message in the quarantine for review (250 with the
    /// incident id; nothing relayed until someone releases it).
    Hold,
}

impl Action {
    /// Every action, in the order documented for `policy.action` (`hold`
    /// last: it came last, and error texts listing the others stay as
    /// they were).
    pub const ALL: [Action; 6] = [
        Action::Reject,
        Action::Bcc,
        Action::Split,
        Action::Monitor,
        Action::Allow,
        Action::Hold,
    ];

    /// The name used in policy.yaml, metrics and incident records.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Reject => "reject",
            Action::Bcc => "bcc",
            Action::Split => "split",
            Action::Monitor => "monitor",
            Action::Allow => "allow",
            Action::Hold => "hold",
        }
    }

    /// Parses a policy.yaml name.
    pub fn parse(s: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What fills To when a Bcc rewrite would leave it empty (GMX, WEB.DE and
/// mailing lists refuse mail without a To).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmptyTo {
    /// The sender's own address (header From, else MAIL FROM).
    Sender,
    /// `To: undisclosed-recipients:;`
    Undisclosed,
}

/// The validated policy (built by [`crate::config`]).
#[derive(Debug, Clone)]
pub struct Policy {
    /// Domains whose addresses are internal (exact or `*.` wildcard).
    pub internal_domains: DomainSet,
    /// More visible external addresses than this triggers `action`.
    pub max_external_recipients: usize,
    /// More distinct external registrable domains than this triggers
    /// `action` too (`policy.max_external_domains`); `None`: off.
    pub max_external_domains: Option<usize>,
    /// Default action.
    pub action: Action,
    /// Overrides, first match wins.
    pub rules: Rules,
    /// Keep internal addresses visible when rewriting (default true).
    pub keep_internal_visible: bool,
    /// What replaces an emptied To.
    pub empty_to: EmptyTo,
    /// Largest header section read, bytes (fail closed beyond it).
    pub max_header_size: usize,
    /// The headers whose addresses a reader sees (`policy.visible_headers`).
    pub visible_headers: VisibleHeaders,
    /// Whether attached messages' headers count (`policy.attached_messages`).
    pub attached_messages: AttachedMessages,
    /// Deepest MIME nesting read for attached messages
    /// (`policy.mime_nesting_limit`); deeper mail is refused.
    pub mime_nesting_limit: usize,
}

/// Default of `policy.max_external_recipients`.
pub const DEFAULT_MAX_EXTERNAL_RECIPIENTS: usize = 10;

/// Default of `policy.mime_nesting_limit`: Postfix's `mime_nesting_limit`.
/// Real mail nests a handful of levels (a forward of a forward is four);
/// the walk is linear in the message size at any depth.
pub const DEFAULT_MIME_NESTING_LIMIT: usize = 100;

/// Default of `server.limits.max_header_size` as the policy sees it.
const DEFAULT_POLICY_MAX_HEADER_SIZE: usize = 1 << 20;

impl Default for Policy {
    /// The embedded defaults with no internal domain (tests and tools build
    /// on it with `..Policy::default()`).
    fn default() -> Self {
        Self {
            internal_domains: DomainSet::default(),
            max_external_recipients: DEFAULT_MAX_EXTERNAL_RECIPIENTS,
            max_external_domains: None,
            action: Action::Reject,
            rules: Rules::default(),
            keep_internal_visible: true,
            empty_to: EmptyTo::Sender,
            max_header_size: DEFAULT_POLICY_MAX_HEADER_SIZE,
            visible_headers: VisibleHeaders::default(),
            attached_messages: AttachedMessages::Count,
            mime_nesting_limit: DEFAULT_MIME_NESTING_LIMIT,
        }
    }
}

/// `policy.attached_messages`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachedMessages {
    /// The visible addresses in attached messages' headers count, for a
    /// message with any external envelope recipient (a forwarded list
    /// re-discloses it to a third party).
    Count,
    /// Only the message's own headers count.
    Ignore,
}

/// The envelope of one transaction, as the policy sees it.
#[derive(Debug, Clone, Copy)]
pub struct Envelope<'a> {
    /// MAIL FROM address (empty for the null sender).
    pub mail_from: &'a str,
    /// Accepted RCPT TO addresses.
    pub rcpt_to: &'a [String],
}

/// Which threshold a message exceeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// More external addresses than `max_external_recipients`.
    Addresses,
    /// More external domains than `max_external_domains`.
    Domains,
    /// Both.
    Both,
}

impl Trigger {
    /// `addresses`, `domains` or `both`: the incident record's `trigger`.
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Addresses => "addresses",
            Trigger::Domains => "domains",
            Trigger::Both => "both",
        }
    }
}

/// The outcome for one message.
#[derive(Debug, Clone)]
pub struct Decision {
    /// The action taken; `None` when no threshold was exceeded (pass).
    /// `Allow` when an approved group holds every visible external address
    /// (`group`).
    pub action: Option<Action>,
    /// Name of the matching rule, `None` for the default policy.
    pub rule: Option<String>,
    /// The address threshold that applied.
    pub threshold: usize,
    /// The domain threshold that applied; `None`: off.
    pub domain_threshold: Option<usize>,
    /// The threshold(s) exceeded; `None`: neither.
    pub trigger: Option<Trigger>,
    /// Over a threshold, the approved group that holds every visible
    /// external address: the mail passes unchanged.
    pub group: Option<String>,
    /// What the reader would have seen.
    pub visible: Visible,
    /// Header From addr-spec, if one could be parsed.
    pub header_from: Option<String>,
    /// The header section, scanned once and reused by the rewriter.
    pub headers: Headers,
    /// The message is signed or encrypted (multipart/signed,
    /// multipart/encrypted, application/pkcs7-mime): its headers cannot be
    /// rewritten without breaking it.
    pub signed: bool,
}

impl Decision {
    /// The label for `bccguard_messages_total{action}`.
    pub fn label(&self) -> &'static str {
        self.action.map(Action::as_str).unwrap_or("pass")
    }

    /// What a rewrite puts in To when it would otherwise be empty: the
    /// sender's own address (header From, else MAIL FROM) or
    /// `undisclosed-recipients:;` (also when there is no sender at all).
    pub fn empty_to_value(&self, empty_to: EmptyTo, mail_from: &str) -> String {
        let sender = self
            .header_from
            .clone()
            .or_else(|| (!mail_from.is_empty()).then(|| mail_from.to_string()));
        match (empty_to, sender) {
            (EmptyTo::Sender, Some(sender)) => sender,
            _ => "undisclosed-recipients:;".into(),
        }
    }
}

/// Decides on one message with no approved group. Errors only when the
/// headers, the message's own or an attached message's, cannot be read in
/// full (the session refuses such mail: what the guard cannot read, it
/// does not pass).
pub fn decide(
    policy: &Policy,
    envelope: Envelope<'_>,
    msg: &[u8],
) -> Result<Decision, HeaderError> {
    decide_with(policy, envelope, msg, None)
}

/// [`decide`], with the approved groups in force (the session's snapshot
/// and the time): over a threshold, a group that holds every visible
/// external address, for this sender, turns the action into `allow`.
pub fn decide_with(
    policy: &Policy,
    envelope: Envelope<'_>,
    msg: &[u8],
    approved: Option<Approved<'_>>,
) -> Result<Decision, HeaderError> {
    let headers = scan(msg, policy.max_header_size)?;
    let header_from = header_from(msg, &headers);
    // Forwarding a list inside the organisation discloses nothing new; to
    // anyone outside it does.
    let leaves = envelope.rcpt_to.iter().any(|r| {
        count::normalize_address(r).is_none_or(|n| {
            !policy
                .internal_domains
                .contains_normal(count::domain_of(&n))
        })
    });
    let attached = if leaves && policy.attached_messages == AttachedMessages::Count {
        let limits = mime::Limits {
            max_depth: policy.mime_nesting_limit,
            max_header_size: policy.max_header_size,
        };
        mime::attached(msg, &headers, limits).map_err(|e| match e {
            MimeError::TooDeep => HeaderError::TooDeep,
            MimeError::HeaderTooBig => HeaderError::AttachedTooBig,
        })?
    } else {
        Vec::new()
    };
    let visible = count::count_with_attached(msg, &headers, policy, &attached);
    let rule = policy
        .rules
        .first_match(envelope.mail_from, header_from.as_deref(), &visible)
        .map(|(_, r)| r);
    let threshold = rule
        .and_then(|r| r.max_external_recipients)
        .unwrap_or(policy.max_external_recipients);
    let domain_threshold = rule
        .and_then(|r| r.max_external_domains)
        .or(policy.max_external_domains);
    // Exactly `threshold` external addresses (domains) pass; one more
    // triggers.
    let over_addresses = visible.external.len() > threshold;
    let over_domains = domain_threshold.is_some_and(|t| visible.external_domains > t);
    let trigger = match (over_addresses, over_domains) {
        (true, true) => Some(Trigger::Both),
        (true, false) => Some(Trigger::Addresses),
        (false, true) => Some(Trigger::Domains),
        (false, false) => None,
    };
    let group = match (trigger, approved) {
        (Some(_), Some(a)) => a
            .groups
            .covering(&visible.external, envelope.mail_from, a.now)
            .map(|g| g.name.clone()),
        _ => None,
    };
    let action = match &group {
        Some(_) => Action::Allow,
        None => rule.and_then(|r| r.action).unwrap_or(policy.action),
    };
    Ok(Decision {
        action: trigger.map(|_| action),
        rule: rule.map(|r| r.name.clone()),
        threshold,
        domain_threshold,
        trigger,
        group,
        visible,
        header_from,
        signed: is_signed(msg, &headers),
        headers,
    })
}

/// The first mailbox of the first From field, normalised.
pub(crate) fn header_from(msg: &[u8], headers: &Headers) -> Option<String> {
    let field = headers.of_kind(FieldKind::From).next()?;
    let first = parse_list(msg.get(field.value.clone())?)
        .into_iter()
        .find_map(|e| match e {
            Element::Mailbox(m) => Some(m),
            Element::Group { members, .. } => members.into_iter().next(),
            Element::Invalid { .. } => None,
        })?;
    count::normalize_owned(first.address).ok()
}

/// Signed or encrypted at the top level (RFC 1847 multipart/signed and
/// multipart/encrypted, RFC 8551 application/pkcs7-mime): rewriting its
/// headers could break the signature or the protected headers inside.
/// Any Content-Type field counts, so a second one cannot hide the first.
fn is_signed(msg: &[u8], headers: &Headers) -> bool {
    const SIGNED: [&[u8]; 4] = [
        b"multipart/signed",
        b"multipart/encrypted",
        b"application/pkcs7-mime",
        b"application/x-pkcs7-mime",
    ];
    headers.of_kind(FieldKind::ContentType).any(|f| {
        let value = msg.get(f.value.clone()).unwrap_or_default();
        let media = value.split(|&b| b == b';').next().unwrap_or_default();
        let media = media.trim_ascii();
        SIGNED.iter().any(|s| s.eq_ignore_ascii_case(media))
    })
}

#[cfg(test)]
mod tests;
