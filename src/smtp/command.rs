//! One client command line -> [`Command`]. The grammar is smtp-proto's; this
//! module keeps what the guard needs to relay faithfully (the raw MAIL/RCPT
//! parameter text, forwarded upstream as the client wrote it) and refuses
//! what it must never relay (source routes, percent hacks, bang paths).

/// A parsed client command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `EHLO domain`.
    Ehlo { host: String },
    /// `HELO domain`.
    Helo { host: String },
    /// `MAIL FROM:<addr> params`; `params` is the raw text after `>`, trimmed.
    Mail { address: String, params: String },
    /// `RCPT TO:<addr> params`; `params` is the raw text after `>`, trimmed.
    Rcpt { address: String, params: String },
    /// `DATA`.
    Data,
    /// `BDAT n [LAST]` (not advertised: refused by the session).
    Bdat,
    /// `RSET`.
    Rset,
    /// `NOOP`.
    Noop,
    /// `QUIT`.
    Quit,
    /// `HELP`.
    Help,
    /// `VRFY` / `EXPN` (answered 252 / 502, never relayed).
    Vrfy,
    /// `STARTTLS` (not offered yet).
    StartTls,
    /// `AUTH ...` (not offered yet).
    Auth,
    /// A verb the guard does not implement (ETRN, ATRN, BURL, LHLO ...).
    NotImplemented,
}

/// Why a command line was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandError {
    /// Unrecognised verb.
    Unknown,
    /// Recognised verb, bad syntax; the text says which syntax was expected.
    Syntax(&'static str),
    /// Malformed sender address.
    BadSender,
    /// Malformed recipient address.
    BadRecipient,
    /// Source route, percent hack or bang path in a recipient.
    RoutedRecipient,
    /// A MAIL/RCPT parameter the guard does not support or cannot parse.
    Parameter(String),
}

/// Parses one command line; `line` ends with `\n` (normally `\r\n`).
pub fn parse(line: &[u8]) -> Result<Command, CommandError> {
    let _ = line;
    todo!()
}
