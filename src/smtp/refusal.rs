//! Every refusal by one of the guard's own limits or rules, classified
//! once: a [`Refusal`] names what was refused and carries what its reply
//! needs; [`Refusal::reason`] is its `bccguard_refused_total{reason}` label
//! and [`Refusal::reply`] its answer (the text lives in [`super::reply`]).
//! A call site cannot pair a reply with the wrong label, and a new refusal
//! cannot be counted under a label the metrics did not pre-register.
//!
//! Refusals that come from upstream or from the policy's decision are not
//! here: upstream's replies are relayed as they are, and a policy refusal
//! is an incident with its own metrics.

use super::reply::{self, Reply};

/// The label of a refusal in `bccguard_refused_total{reason}`. The names
/// are a public interface (dashboards and alerts use them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// RCPT/MAIL from a client that may not relay.
    RelayDenied,
    /// MAIL or AUTH before STARTTLS with `server.require_tls`.
    TlsRequired,
    /// A login upstream refused.
    AuthFailed,
    /// `server.limits.max_auth_failures` reached.
    TooManyAuthFailures,
    /// An envelope or header sender the login may not use.
    SenderMismatch,
    /// Over `server.limits.max_message_size` (declared or sent).
    TooBig,
    /// The header section over `server.limits.max_header_size`.
    HeaderTooBig,
    /// An attached message's header section over the same limit.
    AttachedHeaderTooBig,
    /// MIME nesting deeper than `policy.mime_nesting_limit`.
    MimeTooDeep,
    /// A command or message line over its limit.
    LineTooLong,
    /// A bare CR or LF in a message (SMTP smuggling).
    BareNewline,
    /// A NUL byte in a message.
    Nul,
    /// Over `server.limits.max_recipients`.
    TooManyRecipients,
    /// Over `server.limits.max_connections` or `max_connections_per_ip`.
    TooManyConnections,
    /// `server.limits.max_errors` reached.
    TooManyErrors,
    /// A PROXY-protocol peer outside `server.proxy_trusted_networks`.
    ProxyUntrusted,
    /// No valid PROXY header in time.
    ProxyHeader,
}

impl Reason {
    /// Every reason, in the order the metrics list them.
    pub const ALL: [Reason; 17] = [
        Reason::RelayDenied,
        Reason::TlsRequired,
        Reason::AuthFailed,
        Reason::TooManyAuthFailures,
        Reason::SenderMismatch,
        Reason::TooBig,
        Reason::HeaderTooBig,
        Reason::AttachedHeaderTooBig,
        Reason::MimeTooDeep,
        Reason::LineTooLong,
        Reason::BareNewline,
        Reason::Nul,
        Reason::TooManyRecipients,
        Reason::TooManyConnections,
        Reason::TooManyErrors,
        Reason::ProxyUntrusted,
        Reason::ProxyHeader,
    ];

    /// The metric label.
    pub const fn as_str(self) -> &'static str {
        match self {
            Reason::RelayDenied => "relay_denied",
            Reason::TlsRequired => "tls_required",
            Reason::AuthFailed => "auth_failed",
            Reason::TooManyAuthFailures => "too_many_auth_failures",
            Reason::SenderMismatch => "sender_mismatch",
            Reason::TooBig => "too_big",
            Reason::HeaderTooBig => "header_too_big",
            Reason::AttachedHeaderTooBig => "attached_header_too_big",
            Reason::MimeTooDeep => "mime_too_deep",
            Reason::LineTooLong => "line_too_long",
            Reason::BareNewline => "bare_newline",
            Reason::Nul => "nul",
            Reason::TooManyRecipients => "too_many_recipients",
            Reason::TooManyConnections => "too_many_connections",
            Reason::TooManyErrors => "too_many_errors",
            Reason::ProxyUntrusted => "proxy_untrusted",
            Reason::ProxyHeader => "proxy_header",
        }
    }
}

/// One refusal, with what its reply says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal<'a> {
    /// The client may not relay (RFC 5321 3.6.2, 7.1).
    RelayDenied,
    /// MAIL without TLS where TLS is required (`530 5.7.0`).
    TlsRequired,
    /// AUTH without TLS where TLS is required (`538 5.7.11`).
    EncryptionRequired,
    /// `sender` is not one the login may use.
    SenderMismatch {
        /// The address as the client gave it.
        sender: &'a str,
    },
    /// Over the message size limit.
    TooBig {
        /// The limit in bytes.
        limit: usize,
    },
    /// The header section over its limit.
    HeaderTooBig {
        /// The limit in bytes.
        limit: usize,
    },
    /// An attached message's header section over the limit.
    AttachedHeaderTooBig {
        /// The limit in bytes.
        limit: usize,
    },
    /// MIME nesting deeper than the limit.
    MimeTooDeep {
        /// The deepest nesting read.
        limit: usize,
    },
    /// A command line over `server.limits.max_command_length`.
    CommandTooLong {
        /// The limit in bytes.
        limit: usize,
    },
    /// A message line over `server.limits.max_line_length`.
    LineTooLong {
        /// The limit in bytes.
        limit: usize,
    },
    /// A bare CR or LF in the message.
    BareNewline,
    /// A NUL byte in the message.
    Nul,
    /// One recipient more than the limit.
    TooManyRecipients {
        /// The limit.
        limit: usize,
    },
    /// The session made too many errors; the guard closes it.
    TooManyErrors {
        /// The guard's host name, for the `421`.
        hostname: &'a str,
    },
    /// Too many failed logins; the guard closes the session.
    TooManyAuthFailures {
        /// The guard's host name, for the `421`.
        hostname: &'a str,
    },
    /// No connection slot free; the guard closes the connection.
    TooManyConnections {
        /// The guard's host name, for the `421`.
        hostname: &'a str,
    },
}

impl Refusal<'_> {
    /// The metric label.
    pub const fn reason(&self) -> Reason {
        match self {
            Refusal::RelayDenied => Reason::RelayDenied,
            Refusal::TlsRequired | Refusal::EncryptionRequired => Reason::TlsRequired,
            Refusal::SenderMismatch { .. } => Reason::SenderMismatch,
            Refusal::TooBig { .. } => Reason::TooBig,
            Refusal::HeaderTooBig { .. } => Reason::HeaderTooBig,
            Refusal::AttachedHeaderTooBig { .. } => Reason::AttachedHeaderTooBig,
            Refusal::MimeTooDeep { .. } => Reason::MimeTooDeep,
            Refusal::CommandTooLong { .. } | Refusal::LineTooLong { .. } => Reason::LineTooLong,
            Refusal::BareNewline => Reason::BareNewline,
            Refusal::Nul => Reason::Nul,
            Refusal::TooManyRecipients { .. } => Reason::TooManyRecipients,
            Refusal::TooManyErrors { .. } => Reason::TooManyErrors,
            Refusal::TooManyAuthFailures { .. } => Reason::TooManyAuthFailures,
            Refusal::TooManyConnections { .. } => Reason::TooManyConnections,
        }
    }

    /// The reply the client hears.
    pub fn reply(&self) -> Reply {
        match *self {
            Refusal::RelayDenied => reply::relay_denied(),
            Refusal::TlsRequired => reply::tls_required(),
            Refusal::EncryptionRequired => reply::encryption_required(),
            Refusal::SenderMismatch { sender } => reply::sender_not_owned(sender),
            Refusal::TooBig { limit } => reply::too_big(limit),
            Refusal::HeaderTooBig { limit } => reply::header_too_big(limit),
            Refusal::AttachedHeaderTooBig { limit } => reply::attached_header_too_big(limit),
            Refusal::MimeTooDeep { limit } => reply::mime_too_deep(limit),
            Refusal::CommandTooLong { limit } => reply::line_too_long_command(limit),
            Refusal::LineTooLong { limit } => reply::line_too_long(limit),
            Refusal::BareNewline => reply::bare_newline(),
            Refusal::Nul => reply::nul_in_message(),
            Refusal::TooManyRecipients { limit } => reply::too_many_recipients(limit),
            Refusal::TooManyErrors { hostname } => reply::too_many_errors(hostname),
            Refusal::TooManyAuthFailures { hostname } => reply::too_many_auth_failures(hostname),
            Refusal::TooManyConnections { hostname } => reply::too_many_connections(hostname),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_refusal_has_its_code_and_a_registered_reason() {
        let table: [(Refusal, u16, &str); 16] = [
            (Refusal::RelayDenied, 530, "relay_denied"),
            (Refusal::TlsRequired, 530, "tls_required"),
            (Refusal::EncryptionRequired, 538, "tls_required"),
            (
                Refusal::SenderMismatch { sender: "a@b.c" },
                553,
                "sender_mismatch",
            ),
            (Refusal::TooBig { limit: 10 }, 552, "too_big"),
            (Refusal::HeaderTooBig { limit: 10 }, 552, "header_too_big"),
            (
                Refusal::AttachedHeaderTooBig { limit: 10 },
                552,
                "attached_header_too_big",
            ),
            (Refusal::MimeTooDeep { limit: 10 }, 554, "mime_too_deep"),
            (Refusal::CommandTooLong { limit: 10 }, 500, "line_too_long"),
            (Refusal::LineTooLong { limit: 10 }, 550, "line_too_long"),
            (Refusal::BareNewline, 550, "bare_newline"),
            (Refusal::Nul, 550, "nul"),
            (
                Refusal::TooManyRecipients { limit: 10 },
                452,
                "too_many_recipients",
            ),
            (
                Refusal::TooManyErrors { hostname: "h" },
                421,
                "too_many_errors",
            ),
            (
                Refusal::TooManyAuthFailures { hostname: "h" },
                421,
                "too_many_auth_failures",
            ),
            (
                Refusal::TooManyConnections { hostname: "h" },
                421,
                "too_many_connections",
            ),
        ];
        let wrong: Vec<String> = table
            .iter()
            .filter(|(r, code, label)| {
                r.reply().code != *code
                    || r.reason().as_str() != *label
                    || !Reason::ALL.contains(&r.reason())
            })
            .map(|(r, code, label)| {
                format!(
                    "{r:?}: {} {} (want {code} {label})",
                    r.reply().code,
                    r.reason().as_str()
                )
            })
            .collect();
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
        let mut labels: Vec<&str> = Reason::ALL.iter().map(|r| r.as_str()).collect();
        labels.sort();
        labels.dedup();
        assert_eq!(labels.len(), Reason::ALL.len(), "a label twice");
    }
}
