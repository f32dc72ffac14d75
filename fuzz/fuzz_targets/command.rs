//! Fuzz target: the command parser (`bccguard::smtp::command::parse`).
//!
//! The guard re-serialises MAIL/RCPT/EHLO towards its trusted upstream, so
//! beyond "no panic" the parsed values must not carry what could inject a
//! second command or a route upstream: no CR, LF or NUL in any value (a
//! CRLF in an address would be a command injection into the upstream
//! session), and no `%`, `!`, source route or second `@` in an accepted
//! recipient (percent hack / bang path: open relay through the upstream
//! that trusts the guard).
#![no_main]

use bccguard::smtp::command::{Command, parse};
use libfuzzer_sys::fuzz_target;

fn clean(value: &str) -> bool {
    !value.contains(['\r', '\n', '\0'])
}

fuzz_target!(|data: &[u8]| {
    // As the session hands it over: one line ending in LF.
    let mut line = data.to_vec();
    if !line.ends_with(b"\n") {
        line.extend_from_slice(b"\r\n");
    }
    if line[..line.len() - 1].contains(&b'\n') {
        return;
    }
    match parse(&line) {
        Ok(Command::Mail { address, params }) => {
            assert!(clean(&address) && clean(&params), "{address:?} {params:?}");
        }
        Ok(Command::Rcpt { address, params }) => {
            assert!(clean(&address) && clean(&params), "{address:?} {params:?}");
            let routed = address.contains(['%', '!'])
                || address.starts_with('@')
                || address.matches('@').count() > 1;
            assert!(!routed, "routed recipient accepted: {address:?}");
        }
        Ok(Command::Ehlo { host }) | Ok(Command::Helo { host }) => {
            assert!(clean(&host), "{host:?}");
        }
        Ok(Command::Auth { mechanism, initial }) => {
            assert!(clean(&mechanism));
            assert!(initial.as_deref().is_none_or(clean));
        }
        Ok(_) | Err(_) => {}
    }
});
