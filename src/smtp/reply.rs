//! Every SMTP reply the guard composes itself, in one place, so codes and
//! wording can be reviewed together. Replies relayed from upstream are parsed
//! into the same [`Reply`] type and passed on unchanged.
//!
//! The clerk-facing policy replies (refusal, hold) are worded by the
//! `reply_*` templates ([`crate::templates`]) in German, English or both;
//! this module gives them their codes and keeps each line within RFC 5321.
//!
//! Enhanced status codes follow RFC 3463; the choice of code for each case
//! follows RFC 5321 section 4.2 and Postfix's practice.

use crate::templates::{Lang, ReplyLanguage, Templates};

/// One (possibly multi-line) SMTP reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// Three-digit reply code.
    pub code: u16,
    /// Text of each line, without the `250-` / `250 ` prefix and CRLF.
    pub lines: Vec<String>,
}

impl Reply {
    /// A single-line reply.
    pub fn new(code: u16, text: impl Into<String>) -> Self {
        Self {
            code,
            lines: vec![text.into()],
        }
    }

    /// 2xx.
    pub fn is_positive(&self) -> bool {
        (200..300).contains(&self.code)
    }

    /// 3xx (intermediate, e.g. 354).
    pub fn is_intermediate(&self) -> bool {
        (300..400).contains(&self.code)
    }

    /// 4xx: the client keeps the message and retries.
    pub fn is_transient(&self) -> bool {
        (400..500).contains(&self.code)
    }

    /// 5xx.
    pub fn is_permanent(&self) -> bool {
        self.code >= 500
    }

    /// Appends the wire form (`code-text` / `code text` lines, CRLF each).
    pub fn write_to(&self, out: &mut Vec<u8>) {
        // Codes are three digits (RFC 5321 4.2); anything else is a bug in
        // the guard, written as 451 rather than as a broken reply.
        let code = if (200..600).contains(&self.code) {
            self.code
        } else {
            451
        };
        let digits = [
            b'0' + (code / 100) as u8,
            b'0' + (code / 10 % 10) as u8,
            b'0' + (code % 10) as u8,
        ];
        if self.lines.is_empty() {
            out.extend_from_slice(&digits);
            out.extend_from_slice(b"\r\n");
        }
        let last = self.lines.len().saturating_sub(1);
        for (i, line) in self.lines.iter().enumerate() {
            out.extend_from_slice(&digits);
            out.push(if i == last { b' ' } else { b'-' });
            // A CR or LF inside a text would let a peer's reply text forge
            // extra reply lines: never pass them through.
            let start = out.len();
            out.extend_from_slice(line.as_bytes());
            for b in &mut out[start..] {
                if matches!(*b, b'\r' | b'\n') {
                    *b = b' ';
                }
            }
            out.extend_from_slice(b"\r\n");
        }
    }

    /// The reply naming the transaction: ` (id X)` at the end of its last
    /// line, or as a line of its own where the last is too long for it
    /// (RFC 5321 4.5.3.1.5: 512 octets with code and CRLF), so a clerk's
    /// bounce names what the guard's log line names.
    pub fn with_id(mut self, id: &str) -> Reply {
        let tag = format!("(id {id})");
        match self.lines.last_mut() {
            Some(last) if last.contains(id) => {}
            // "550 " before, CRLF after.
            Some(last) if 4 + last.len() + 1 + tag.len() + 2 <= MAX_REPLY_LINE => {
                last.push(' ');
                last.push_str(&tag);
            }
            _ => self.lines.push(tag),
        }
        self
    }

    /// The first line as `code text`, for logs and incident outcomes.
    pub fn summary(&self) -> String {
        format!(
            "{} {}",
            self.code,
            self.lines.first().map(String::as_str).unwrap_or("")
        )
    }
}

/// 220 greeting.
pub fn greeting(hostname: &str) -> Reply {
    Reply::new(220, format!("{hostname} ESMTP bccguard"))
}

/// 221 on QUIT.
pub fn bye(hostname: &str) -> Reply {
    Reply::new(221, format!("2.0.0 {hostname} closing connection"))
}

/// 250 to HELO.
pub fn helo(hostname: &str) -> Reply {
    Reply::new(250, hostname.to_string())
}

/// What an EHLO reply advertises beyond the fixed extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offers {
    /// SIZE (RFC 1870).
    pub max_size: usize,
    /// STARTTLS (RFC 3207): a certificate is configured and TLS not active.
    pub starttls: bool,
    /// AUTH PLAIN LOGIN (RFC 4954): passthrough, and TLS active or not
    /// required.
    pub auth: bool,
}

/// 250 to EHLO with the extensions the guard offers (RFC 5321 4.1.1.1).
pub fn ehlo(hostname: &str, client: &str, offers: Offers) -> Reply {
    let mut lines = vec![
        format!("{hostname} greets {client}"),
        "PIPELINING".into(),
        format!("SIZE {}", offers.max_size),
        "8BITMIME".into(),
        "SMTPUTF8".into(),
        "ENHANCEDSTATUSCODES".into(),
    ];
    if offers.starttls {
        lines.push("STARTTLS".into());
    }
    if offers.auth {
        lines.push("AUTH PLAIN LOGIN".into());
    }
    Reply { code: 250, lines }
}

/// 220 to STARTTLS.
pub fn ready_to_start_tls() -> Reply {
    Reply::new(220, "2.0.0 Ready to start TLS")
}

/// 530 5.7.0: MAIL before STARTTLS where TLS is required (RFC 3207 4).
pub fn tls_required() -> Reply {
    Reply::new(530, "5.7.0 Must issue a STARTTLS command first")
}

/// 538 5.7.11: AUTH before TLS where TLS is required (RFC 4954 6).
pub fn encryption_required() -> Reply {
    Reply::new(
        538,
        "5.7.11 Encryption required for requested authentication mechanism",
    )
}

/// 504 5.5.4: unknown SASL mechanism.
pub fn auth_mechanism_unsupported() -> Reply {
    Reply::new(
        504,
        "5.5.4 Unrecognized authentication type; use PLAIN or LOGIN",
    )
}

/// 334 challenge (base64 text; empty for PLAIN without initial response).
pub fn auth_challenge(text: &str) -> Reply {
    Reply::new(334, text.to_string())
}

/// 501 5.0.0: the client cancelled the exchange with `*`.
pub fn auth_cancelled() -> Reply {
    Reply::new(501, "5.0.0 Authentication cancelled")
}

/// 501 5.5.2: the response could not be decoded.
pub fn auth_malformed() -> Reply {
    Reply::new(501, "5.5.2 Cannot decode the authentication response")
}

/// 421 4.7.0: too many failed logins.
pub fn too_many_auth_failures(hostname: &str) -> Reply {
    Reply::new(
        421,
        format!("4.7.0 {hostname} Error: too many failed authentication attempts"),
    )
}

/// 553 5.7.1: the authenticated user may not use this sender address.
pub fn sender_not_owned(address: &str) -> Reply {
    Reply::new(
        553,
        format!("5.7.1 <{address}>: Sender address not owned by the logged-in user"),
    )
}

/// Plain 250 OK (RSET, NOOP).
pub fn ok() -> Reply {
    Reply::new(250, "2.0.0 OK")
}

/// 250 to MAIL: the sender is taken (upstream's verdict comes with the
/// first RCPT, [`crate::upstream::smtp`]).
pub fn sender_ok() -> Reply {
    Reply::new(250, "2.1.0 Ok")
}

/// 250 to RCPT from the local Maildir, which takes every recipient, and
/// from the guard itself when upstream hears RCPTs later
/// (`upstream.recipients: deferred`).
pub fn recipient_ok() -> Reply {
    Reply::new(250, "2.1.5 Ok")
}

/// 250 after the final dot from the local Maildir.
pub fn stored_in_maildir(file: &str) -> Reply {
    Reply::new(250, format!("2.0.0 Ok: stored as new/{file}"))
}

/// 354 after DATA.
pub fn start_data() -> Reply {
    Reply::new(354, "End data with <CR><LF>.<CR><LF>")
}

/// 250 after the final dot when upstream accepted every copy.
pub fn accepted(copies: usize, queue_id: &str) -> Reply {
    if copies == 1 {
        Reply::new(250, format!("2.0.0 Ok: queued as {queue_id}"))
    } else {
        Reply::new(
            250,
            format!("2.0.0 Ok: delivered as {copies} separate copies, id {queue_id}"),
        )
    }
}

/// 250 after a deferred transaction in which upstream refused some
/// recipients and took the others: the refused ones are in the spool.
pub fn accepted_refused(delivered: usize, retried: usize, bounced: usize, queue_id: &str) -> Reply {
    let mut what = Vec::new();
    if retried > 0 {
        what.push(format!("{retried} queued for retry"));
    }
    if bounced > 0 {
        what.push(format!(
            "{bounced} refused for good (the sender gets a delivery status notification)"
        ));
    }
    Reply::new(
        250,
        format!(
            "2.0.0 Ok: delivered to {delivered} recipients, upstream refused {}: {}, id {queue_id}",
            retried + bounced,
            what.join(", ")
        ),
    )
}

/// 451/554 after a deferred transaction in which upstream took some
/// recipients and refused others that the spool could not take.
pub fn recipients_partial(delivered: usize, total: usize, upstream: &Reply) -> Reply {
    partial(delivered, total, "recipients took the message", upstream)
}

/// 250 after a split whose remaining copies the guard has spooled.
pub fn accepted_spooled(delivered: usize, spooled: usize, queue_id: &str) -> Reply {
    Reply::new(
        250,
        format!(
            "2.0.0 Ok: {delivered} separate copies delivered, {spooled} queued for retry, id {queue_id}"
        ),
    )
}

/// The longest reply line, CRLF included (RFC 5321 4.5.3.1.5).
pub const MAX_REPLY_LINE: usize = 512;

/// How the clerk-facing policy replies are worded: the reply templates in
/// force (built-in or overridden in `incidents.templates`) and
/// `policy.reply_language`.
#[derive(Debug, Clone, Copy)]
pub struct Words<'a> {
    /// The templates (`reply_*`).
    pub templates: &'a Templates,
    /// German, English or both (German first).
    pub language: ReplyLanguage,
}

/// What the reply may say about who knows of the incident. Only what is
/// true: a notice to the DPO queued in the same commit as the incident,
/// or the incident recorded without one, or not even that.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Told {
    /// The register has the incident and a notice to the DPO is queued.
    Dpo,
    /// The register has the incident; no notice (`incidents.notify: []`).
    Recorded,
    /// The register could not take it: the clerk is asked to tell the DPO.
    Nobody,
}

impl Told {
    fn template(self) -> &'static str {
        match self {
            Told::Dpo => "reply_informed",
            Told::Recorded => "reply_recorded",
            Told::Nobody => "reply_unrecorded",
        }
    }
}

/// What a policy reply reports, per language (the template's values
/// besides `id` and `told`).
type Values<'v> = &'v dyn Fn(Lang) -> Vec<(&'static str, String)>;

/// A policy reply from its template: each line prefixed with `status`,
/// and wrapped at word boundaries where a filled line would be longer than
/// [`MAX_REPLY_LINE`].
fn worded(
    code: u16,
    status: &str,
    words: Words<'_>,
    name: &str,
    incident_id: &str,
    told: Told,
    values: Values<'_>,
) -> Reply {
    let texts = words.templates.reply_lines(name, words.language, |lang| {
        let mut v = values(lang);
        v.push(("id", incident_id.to_string()));
        v.push((
            "told",
            words.templates.reply_sentence(told.template(), lang),
        ));
        v
    });
    // "550-" before, CRLF after, "5.7.1 " at the start of every line.
    let width = MAX_REPLY_LINE - 6 - status.len() - 1;
    let mut lines = Vec::new();
    for text in texts {
        for part in wrap(&text, width) {
            lines.push(format!("{status} {part}"));
        }
    }
    if lines.is_empty() {
        // An override that fills to nothing still gets a reply line.
        lines.push(format!("{status} Incident {incident_id}"));
    }
    Reply { code, lines }
}

/// Splits `text` (ASCII) into pieces of at most `width` bytes, at spaces
/// where there are any.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text.trim();
    while rest.len() > width {
        let cut = rest[..=width]
            .rfind(' ')
            .filter(|&i| i > 0)
            .unwrap_or(width);
        out.push(rest[..cut].trim_end().to_string());
        rest = rest[cut..].trim_start();
    }
    if !rest.is_empty() {
        out.push(rest.to_string());
    }
    out
}

/// Which limit an open list crossed, for [`rejected_open_list`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Crossed {
    /// More visible external addresses than this (`reply_reject`).
    Addresses(usize),
    /// Only the distinct external domains are over their limit
    /// (`reply_reject_domains`): the reply names that limit, not one the
    /// addresses kept.
    Domains {
        /// `max_external_domains`.
        limit: usize,
        /// Distinct external domains visible.
        domains: usize,
    },
}

/// 550 5.7.1: the open-distribution-list refusal, worded for a clerk.
///
/// `places` gives, per language, where the addresses are visible (`To/Cc`,
/// `To/Cc, Reply-To and an attached message`;
/// [`crate::policy::Visible::places_in`]).
pub fn rejected_open_list(
    words: Words<'_>,
    visible_external: usize,
    crossed: Crossed,
    places: &dyn Fn(Lang) -> String,
    incident_id: &str,
    told: Told,
) -> Reply {
    let (name, limit, domains) = match crossed {
        Crossed::Addresses(limit) => ("reply_reject", limit, None),
        Crossed::Domains { limit, domains } => ("reply_reject_domains", limit, Some(domains)),
    };
    let values = |lang| {
        let mut v = vec![
            ("visible_external", visible_external.to_string()),
            ("threshold", limit.to_string()),
            ("places", places(lang)),
        ];
        v.extend(domains.map(|d| ("external_domains", d.to_string())));
        v
    };
    worded(550, "5.7.1", words, name, incident_id, told, &values)
}

/// 250 2.0.0 for `action: hold` (`reply_hold`): the message is durably in
/// the quarantine (the guard owns it now), not sent until someone releases
/// it.
pub fn held(
    words: Words<'_>,
    visible_external: usize,
    places: &dyn Fn(Lang) -> String,
    incident_id: &str,
    told: Told,
) -> Reply {
    let values = |lang| {
        vec![
            ("visible_external", visible_external.to_string()),
            ("places", places(lang)),
        ]
    };
    worded(
        250,
        "2.0.0",
        words,
        "reply_hold",
        incident_id,
        told,
        &values,
    )
}

/// Why a bcc/split rewrite would still show addresses, for
/// [`cannot_rewrite_safely`].
#[derive(Debug, Clone, Copy)]
pub enum StillVisible<'a> {
    /// Attached messages show this many external addresses.
    Attached(usize),
    /// A header the rewrite leaves alone (From with several addresses).
    Left {
        /// Its name.
        header: &'a str,
        /// External addresses it shows.
        visible: usize,
    },
}

/// 550 5.7.1: over the threshold in bcc/split mode, but a rewrite of the
/// headers would still leave addresses visible (an attached open list, a
/// From with several addresses): refused rather than sent half-clean
/// (`reply_unsafe_attached`, `reply_unsafe_left`).
pub fn cannot_rewrite_safely(
    words: Words<'_>,
    why: StillVisible<'_>,
    incident_id: &str,
    told: Told,
) -> Reply {
    let (name, header, visible) = match why {
        StillVisible::Attached(visible) => ("reply_unsafe_attached", "", visible),
        StillVisible::Left { header, visible } => ("reply_unsafe_left", header, visible),
    };
    let values = |_| {
        vec![
            ("visible_external", visible.to_string()),
            ("header", header.to_string()),
        ]
    };
    worded(550, "5.7.1", words, name, incident_id, told, &values)
}

/// 550 5.7.1: signed/encrypted mail whose visible recipients cannot be
/// rewritten without breaking the signature (`reply_signed`).
pub fn cannot_rewrite_signed(
    words: Words<'_>,
    visible_external: usize,
    incident_id: &str,
    told: Told,
) -> Reply {
    let values = |_| vec![("visible_external", visible_external.to_string())];
    worded(
        550,
        "5.7.1",
        words,
        "reply_signed",
        incident_id,
        told,
        &values,
    )
}

/// 451 4.3.0: the quarantine could not store the message; the client
/// keeps it and retries (never a 250 for a message the guard does not hold).
pub fn hold_failed() -> Reply {
    Reply::new(
        451,
        "4.3.0 Cannot hold the message for review now (local storage error), try again later",
    )
}

/// 530 5.7.0: relaying requires authentication or a trusted network.
pub fn relay_denied() -> Reply {
    Reply::new(
        530,
        "5.7.0 Authentication required: this client may not relay through the guard",
    )
}

/// 503 5.5.1: command out of sequence.
pub fn bad_sequence(what: &str) -> Reply {
    Reply::new(503, format!("5.5.1 Bad sequence of commands: {what}"))
}

/// 500 5.5.2: command not recognised.
pub fn unknown_command() -> Reply {
    Reply::new(500, "5.5.2 Command not recognized")
}

/// 501 5.5.4: syntax error in parameters.
pub fn syntax(expected: &str) -> Reply {
    Reply::new(501, format!("5.5.4 Syntax error, expected: {expected}"))
}

/// 501 5.1.7: malformed sender.
pub fn bad_sender() -> Reply {
    Reply::new(501, "5.1.7 Bad sender address syntax")
}

/// 501 5.1.3: malformed recipient.
pub fn bad_recipient() -> Reply {
    Reply::new(501, "5.1.3 Bad recipient address syntax")
}

/// 550 5.7.1: routed recipient (percent hack, source route, bang path).
pub fn routed_recipient() -> Reply {
    Reply::new(
        550,
        "5.7.1 Source routes, %-hacks and !-paths are not relayed",
    )
}

/// 555 5.5.4: MAIL/RCPT parameter not supported.
pub fn bad_parameter(param: &str) -> Reply {
    Reply::new(
        555,
        format!("5.5.4 Unsupported or invalid parameter {param}"),
    )
}

/// 502 5.5.1: recognised but not implemented.
pub fn not_implemented() -> Reply {
    Reply::new(502, "5.5.1 Command not implemented")
}

/// 252 2.1.5 for VRFY: the guard never confirms addresses.
pub fn cannot_verify() -> Reply {
    Reply::new(
        252,
        "2.1.5 Cannot VRFY user, but will accept message and attempt delivery",
    )
}

/// 214 help.
pub fn help() -> Reply {
    Reply::new(
        214,
        "2.0.0 See RFC 5321; this is bccguard, an SMTP submission guard",
    )
}

/// 554 5.5.1: DATA without valid recipients.
pub fn no_valid_recipients() -> Reply {
    Reply::new(554, "5.5.1 No valid recipients")
}

/// 552 5.3.4: message larger than the limit.
pub fn too_big(max: usize) -> Reply {
    Reply::new(
        552,
        format!("5.3.4 Message size exceeds fixed limit of {max} bytes"),
    )
}

/// 552 5.3.4: the header section could not be read in full (fail closed).
pub fn header_too_big(max: usize) -> Reply {
    Reply::new(
        552,
        format!("5.3.4 Header section exceeds the limit of {max} bytes; message not sent"),
    )
}

/// 552 5.3.4: an attached message's header section (or a MIME part's)
/// could not be read in full, so its addresses could not be counted.
pub fn attached_header_too_big(max: usize) -> Reply {
    Reply::new(
        552,
        format!(
            "5.3.4 An attached message has a header section over the limit of {max} bytes; message not sent"
        ),
    )
}

/// 554 5.6.0: MIME parts nest deeper than the guard reads, so attached
/// messages in them could not be counted (fail closed).
pub fn mime_too_deep(max: usize) -> Reply {
    Reply::new(
        554,
        format!(
            "5.6.0 Message structure is nested deeper than {max} MIME levels and cannot be checked; message not sent"
        ),
    )
}

/// 550 5.6.0: a message line longer than the limit.
pub fn line_too_long(max: usize) -> Reply {
    Reply::new(
        550,
        format!("5.6.0 Message has a line longer than {max} octets; message not sent"),
    )
}

/// 550 5.6.0: bare CR or LF in the message (SMTP smuggling defence).
pub fn bare_newline() -> Reply {
    Reply::new(
        550,
        "5.6.0 Message contains a bare <CR> or <LF>; lines must end in <CR><LF> (RFC 5321 2.3.8)",
    )
}

/// 550 5.6.0: NUL byte in the message (not allowed without BINARYMIME).
pub fn nul_in_message() -> Reply {
    Reply::new(
        550,
        "5.6.0 Message contains a NUL byte, which SMTP text may not carry (RFC 5321 4.5.2)",
    )
}

/// 500 5.5.2: command line too long.
pub fn line_too_long_command(max: usize) -> Reply {
    Reply::new(
        500,
        format!("5.5.2 Command line too long (limit {max} octets)"),
    )
}

/// 452 4.5.3: too many recipients (the earlier ones stay accepted).
pub fn too_many_recipients(max: usize) -> Reply {
    Reply::new(
        452,
        format!("4.5.3 Too many recipients (limit {max} per message)"),
    )
}

/// 451 4.4.1: upstream could not be reached.
pub fn upstream_unavailable() -> Reply {
    Reply::new(
        451,
        "4.4.1 Upstream mail server unavailable, try again later",
    )
}

/// 451 4.4.2: upstream connection broke or timed out mid-transaction.
pub fn upstream_lost() -> Reply {
    Reply::new(
        451,
        "4.4.2 Connection to upstream mail server lost, try again later",
    )
}

/// 451 4.7.0: TLS towards upstream failed or was not offered (no
/// silent downgrade to plaintext).
pub fn upstream_tls_failed() -> Reply {
    Reply::new(
        451,
        "4.7.0 Secure connection to the upstream mail server failed, try again later",
    )
}

/// 454 4.7.0: authentication cannot be checked right now.
pub fn auth_unavailable() -> Reply {
    Reply::new(
        454,
        "4.7.0 Temporary authentication failure, try again later",
    )
}

/// 451 4.3.0: a local problem (e.g. a Maildir write failed).
pub fn local_error() -> Reply {
    Reply::new(451, "4.3.0 Local error in processing, try again later")
}

/// 421 4.4.2: idle too long.
pub fn idle_timeout(hostname: &str) -> Reply {
    Reply::new(421, format!("4.4.2 {hostname} Error: timeout exceeded"))
}

/// 421 4.3.2: shutting down.
pub fn shutting_down(hostname: &str) -> Reply {
    Reply::new(
        421,
        format!("4.3.2 {hostname} Service shutting down, closing connection"),
    )
}

/// 421 4.7.0: too many errors / connections.
pub fn too_many_errors(hostname: &str) -> Reply {
    Reply::new(421, format!("4.7.0 {hostname} Error: too many errors"))
}

/// 421 4.7.0: connection limit reached.
pub fn too_many_connections(hostname: &str) -> Reply {
    Reply::new(421, format!("4.7.0 {hostname} Error: too many connections"))
}

/// Partial split failure: some copies delivered, one refused.
pub fn split_partial(delivered: usize, total: usize, upstream: &Reply) -> Reply {
    partial(delivered, total, "separate copies were delivered", upstream)
}

/// Part of a message went out and the rest could not be kept: the class
/// follows upstream's refusal, the text says how much went out.
fn partial(delivered: usize, total: usize, what: &str, upstream: &Reply) -> Reply {
    let (code, class) = if upstream.is_permanent() {
        (554, "5.0.0")
    } else {
        (451, "4.0.0")
    };
    Reply::new(
        code,
        format!(
            "{class} Only {delivered} of {total} {what}; upstream said: {}",
            upstream.summary()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_form() {
        let table: &[(Reply, &[u8])] = &[
            (Reply::new(250, "2.1.5 Ok"), b"250 2.1.5 Ok\r\n"),
            (
                Reply {
                    code: 250,
                    lines: vec!["mx".into(), "PIPELINING".into(), "SIZE 10".into()],
                },
                b"250-mx\r\n250-PIPELINING\r\n250 SIZE 10\r\n",
            ),
            (
                Reply {
                    code: 354,
                    lines: vec![],
                },
                b"354\r\n",
            ),
            // A relayed text cannot forge a second reply line.
            (
                Reply::new(550, "5.1.1 no\r\n250 2.0.0 Ok"),
                b"550 5.1.1 no  250 2.0.0 Ok\r\n",
            ),
            (Reply::new(451, "a\nb\rc"), b"451 a b c\r\n"),
        ];
        for (reply, wire) in table {
            let mut out = b"before".to_vec();
            reply.write_to(&mut out);
            assert_eq!(
                &out[6..],
                *wire,
                "{reply:?} gave {:?}",
                String::from_utf8_lossy(&out)
            );
        }
    }
}
