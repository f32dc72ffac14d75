//! One client command line -> [`Command`]. The grammar is smtp-proto's; this
//! module keeps what the guard needs to relay faithfully (the raw MAIL/RCPT
//! parameter text, forwarded upstream as the client wrote it) and refuses
//! what it must never relay (source routes, percent hacks, bang paths).
//!
//! Choices made on top of smtp-proto (each one tested below):
//! - The line must be UTF-8 (RFC 6531 allows nothing else), without control
//!   characters other than HT, and without a CR anywhere but right before
//!   the final LF: smtp-proto silently skips a CR, so `RS\rET` would read as
//!   `RSET` and `<a\r@b>` as `<a@b>`. A line ending in a bare LF is accepted
//!   (the guard re-serialises every command with CRLF, so it cannot smuggle).
//! - `address` is the text between `<` and `>` as the client wrote it,
//!   quotes and case kept (smtp-proto's value drops quotes, which would turn
//!   `"a b"@x` into a different address upstream).
//! - MAIL: a source route on the reverse-path is dropped (RFC 5321 4.1.1.2 /
//!   appendix C: accept, ignore); `<postmaster>` without a domain is only a
//!   forward-path, so it is a bad sender.
//! - RCPT: `<>` is a bad recipient (forward-paths cannot be null); the
//!   special `<postmaster>` is accepted; any source route, `%`, `!` or a
//!   second `@` (e.g. `"a@b"@x`) is refused as routed, *even inside a quoted
//!   local part*: upstreams unquote before they route (sendmail's percent
//!   hack, UUCP bang paths), and an upstream that trusts the guard's IP would
//!   then relay for anyone. No real mailbox needs these characters.
//! - A domain must be dot-separated labels of letters, digits, `-` (not at a
//!   label's ends) or non-ASCII (U-labels under SMTPUTF8); smtp-proto alone
//!   accepts `a@` and `a@b.`.

use std::borrow::Cow;

use smtp_proto::request::parser::Rfc5321Parser;
use smtp_proto::{Error as ProtoError, MailFrom, RcptTo, Request};

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
    /// `AUTH mechanism [initial-response]` (RFC 4954).
    Auth {
        /// SASL mechanism, uppercased (`PLAIN`, `LOGIN`).
        mechanism: String,
        /// Initial response (RFC 4954 4), still base64; `=` means empty.
        initial: Option<String>,
    },
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

/// What every line must look like before its verb is even read.
const LINE_SYNTAX: &str = "one line of UTF-8 text ending in CRLF";

/// Verbs smtp-proto knows that the guard never serves; their syntax errors
/// are answered as "not implemented" too, so a client does not retry them.
const NOT_IMPLEMENTED: [&[u8]; 4] = [b"ETRN", b"ATRN", b"BURL", b"LHLO"];

/// Parses one command line; `line` ends with `\n` (normally `\r\n`).
pub fn parse(line: &[u8]) -> Result<Command, CommandError> {
    if let Some(command) = plain_envelope(line) {
        return Ok(command);
    }
    full(line)
}

/// The whole grammar (smtp-proto plus the checks above).
fn full(line: &[u8]) -> Result<Command, CommandError> {
    check_line(line)?;
    match Request::parse(&mut line.iter()) {
        Ok(request) => from_request(request, line),
        Err(error) => from_error(error, line),
    }
}

/// `MAIL FROM:<addr>` and `RCPT TO:<addr>` without parameters, where addr
/// is a plain dot-atom `@` a plain domain: what clients send for almost
/// every recipient, read in one pass. Parsing was a sixth of the guard's own
/// instructions per relayed command in the load bench's profile (smtp-proto
/// allocates, and the path is scanned twice). `None` sends the line the full
/// way; the property test `plain_envelopes_parse_as_the_full_grammar_does`
/// checks that both agree wherever this one answers.
fn plain_envelope(line: &[u8]) -> Option<Command> {
    const MAIL: &[u8] = b"MAIL FROM:<";
    const RCPT: &[u8] = b"RCPT TO:<";
    let body = line.strip_suffix(b"\n")?;
    let body = body.strip_suffix(b"\r").unwrap_or(body);
    let starts = |verb: &[u8]| {
        body.get(..verb.len())
            .is_some_and(|v| v.eq_ignore_ascii_case(verb))
    };
    let (mail, rest) = if starts(MAIL) {
        (true, &body[MAIL.len()..])
    } else if starts(RCPT) {
        (false, &body[RCPT.len()..])
    } else {
        return None;
    };
    let path = rest.strip_suffix(b">")?;
    if path.is_empty() {
        // The null reverse-path; a null forward-path is an error, said by
        // the full parser.
        return mail.then(|| Command::Mail {
            address: String::new(),
            params: String::new(),
        });
    }
    // The last `@`: the local part may hold none (atoms below), so a second
    // one (`a@b@x`, a route) is refused there and domain_ok sees this split.
    let (local, domain) = path.split_at(memchr::memrchr(b'@', path)?);
    let atom = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'+');
    let plain_local = local
        .split(|&b| b == b'.')
        .all(|a| !a.is_empty() && a.iter().all(|&b| atom(b)));
    // ASCII only: U-labels (SMTPUTF8) take the full way.
    let text = std::str::from_utf8(path).ok()?;
    if !plain_local || !domain.is_ascii() || !domain_ok(text) {
        return None;
    }
    let address = text.to_string();
    let params = String::new();
    Some(if mail {
        Command::Mail { address, params }
    } else {
        Command::Rcpt { address, params }
    })
}

/// Refuses what smtp-proto would silently repair (see the module doc).
fn check_line(line: &[u8]) -> Result<(), CommandError> {
    let body = line
        .strip_suffix(b"\n")
        .ok_or(CommandError::Syntax(LINE_SYNTAX))?;
    let body = body.strip_suffix(b"\r").unwrap_or(body);
    let clean = body.iter().all(|&b| b == b'\t' || !b.is_ascii_control());
    if !clean || std::str::from_utf8(body).is_err() {
        return Err(CommandError::Syntax(LINE_SYNTAX));
    }
    Ok(())
}

/// `AUTH mechanism [initial-response]` from the raw line: the mechanism
/// name is kept even when smtp-proto does not know it, so the session can
/// answer 504 for it (RFC 4954 4).
fn auth(line: &[u8]) -> Command {
    let text = String::from_utf8_lossy(line);
    let mut words = text.split_ascii_whitespace().skip(1);
    let mechanism = words.next().unwrap_or_default().to_ascii_uppercase();
    let initial = words.next().map(str::to_string);
    Command::Auth { mechanism, initial }
}

fn from_request(request: Request<Cow<'_, str>>, line: &[u8]) -> Result<Command, CommandError> {
    Ok(match request {
        Request::Ehlo { host } => Command::Ehlo {
            host: host.into_owned(),
        },
        Request::Helo { host } => Command::Helo {
            host: host.into_owned(),
        },
        Request::Mail { from } => mail(&from, line)?,
        Request::Rcpt { to } => rcpt(&to, line)?,
        Request::Data => Command::Data,
        Request::Bdat { .. } => Command::Bdat,
        Request::Rset => Command::Rset,
        Request::Noop { .. } => Command::Noop,
        Request::Quit => Command::Quit,
        Request::Help { .. } => Command::Help,
        Request::Vrfy { .. } | Request::Expn { .. } => Command::Vrfy,
        Request::StartTls => Command::StartTls,
        Request::Auth { .. } => auth(line),
        Request::Lhlo { .. }
        | Request::Etrn { .. }
        | Request::Atrn { .. }
        | Request::Burl { .. } => Command::NotImplemented,
    })
}

fn from_error(error: ProtoError, line: &[u8]) -> Result<Command, CommandError> {
    let verb = verb(line);
    if NOT_IMPLEMENTED.iter().any(|v| v.eq_ignore_ascii_case(verb)) {
        return Ok(Command::NotImplemented);
    }
    Err(match error {
        ProtoError::UnknownCommand => CommandError::Unknown,
        ProtoError::InvalidSenderAddress => CommandError::BadSender,
        ProtoError::InvalidRecipientAddress => CommandError::BadRecipient,
        ProtoError::SyntaxError { syntax } => CommandError::Syntax(syntax),
        ProtoError::InvalidParameter { param } => CommandError::Parameter(param.to_string()),
        // smtp-proto reports `NAME=VALUE` (upper-cased); the name is enough
        // for the reply and keeps client data out of logs.
        ProtoError::UnsupportedParameter { param } => {
            let name = param.split('=').next().unwrap_or_default();
            CommandError::Parameter(name.to_string())
        }
        ProtoError::NeedsMoreData { .. }
        | ProtoError::ResponseTooLong
        | ProtoError::InvalidResponse { .. } => CommandError::Syntax(LINE_SYNTAX),
    })
}

/// The first word of the line (smtp-proto skips leading spaces too).
fn verb(line: &[u8]) -> &[u8] {
    let line = line.trim_ascii_start();
    let end = line
        .iter()
        .position(u8::is_ascii_whitespace)
        .unwrap_or(line.len());
    line.get(..end).unwrap_or_default()
}

fn mail(from: &MailFrom<Cow<'_, str>>, line: &[u8]) -> Result<Command, CommandError> {
    let (raw, params) = path_and_params(line, "MAIL FROM:<reverse-path> [parameters]")?;
    let address = match raw.strip_prefix('@') {
        // `<@a,@b:user@x>`: the route ends at the first colon (a route has
        // no quotes); smtp-proto dropped it the same way. A route to the
        // null sender (`<@a:>`) is nonsense: refused below.
        Some(routed) => match routed.split_once(':') {
            Some((_, mailbox)) if !mailbox.is_empty() => mailbox,
            _ => return Err(CommandError::BadSender),
        },
        None => raw,
    };
    let valid = address.is_empty() || domain_ok(address);
    if !valid || from.address.is_empty() != address.is_empty() {
        return Err(CommandError::BadSender);
    }
    Ok(Command::Mail {
        address: address.to_string(),
        params,
    })
}

fn rcpt(to: &RcptTo<Cow<'_, str>>, line: &[u8]) -> Result<Command, CommandError> {
    let (raw, params) = path_and_params(line, "RCPT TO:<forward-path> [parameters]")?;
    // RFC 5321 4.1.1.3: `<Postmaster>` without a domain must be accepted.
    let postmaster = raw.eq_ignore_ascii_case("postmaster") && to.address.is_empty();
    if !postmaster {
        if raw.is_empty() || to.address.is_empty() {
            return Err(CommandError::BadRecipient);
        }
        // Source route, percent hack, bang path, `user@relay@x`: all ask the
        // upstream to relay onwards (RFC 5321 3.6.1 lets it refuse).
        let routed = raw.starts_with('@')
            || raw.contains(['%', '!'])
            || raw.bytes().filter(|&b| b == b'@').count() > 1;
        if routed {
            return Err(CommandError::RoutedRecipient);
        }
        if !domain_ok(raw) {
            return Err(CommandError::BadRecipient);
        }
    }
    Ok(Command::Rcpt {
        address: raw.to_string(),
        params,
    })
}

/// The raw path between `<` and `>` (trimmed) and the raw parameters after
/// `>` (trimmed, CRLF removed), located by replaying smtp-proto's own scan so
/// both agree on where the address ends (quotes may hide a `>`).
fn path_and_params<'l>(
    line: &'l [u8],
    syntax: &'static str,
) -> Result<(&'l str, String), CommandError> {
    let err = CommandError::Syntax(syntax);
    let mut rest = line.iter();
    let mut parser = Rfc5321Parser::new(&mut rest);
    parser.hashed_value().map_err(|_| err.clone())?; // MAIL / RCPT
    parser.hashed_value().map_err(|_| err.clone())?; // FROM / TO
    if parser.stop_char != b':' {
        parser.next_char().map_err(|_| err.clone())?;
    }
    if parser.next_char().map_err(|_| err.clone())? != b'<' {
        return Err(err);
    }
    let open = line.len() - rest.as_slice().len();
    let mut parser = Rfc5321Parser::new(&mut rest);
    let parsed = parser.address().map_err(|_| err.clone())?;
    if parsed.is_none() || parser.stop_char != b'>' {
        return Err(err);
    }
    let close = line.len() - rest.as_slice().len();
    let path = line.get(open..close.saturating_sub(1)).ok_or(err.clone())?;
    let params = line.get(close..).ok_or(err.clone())?;
    let path = std::str::from_utf8(path.trim_ascii()).map_err(|_| err.clone())?;
    let params = std::str::from_utf8(params.trim_ascii()).map_err(|_| err)?;
    Ok((path, params.to_string()))
}

/// RFC 5321 4.1.2 `Domain` (letters, digits, inner hyphens, dots), widened
/// to non-ASCII U-labels for SMTPUTF8 (RFC 6531 3.3). Address literals never
/// get here: smtp-proto refuses `[`.
fn domain_ok(address: &str) -> bool {
    let Some((_, domain)) = address.rsplit_once('@') else {
        return false;
    };
    !domain.is_empty()
        && domain.split('.').all(|label| {
            !label.is_empty()
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || !c.is_ascii())
        })
}

#[cfg(test)]
mod tests;
