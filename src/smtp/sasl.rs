//! SASL PLAIN (RFC 4616) and LOGIN (draft-murchison-sasl-login) as used by
//! SMTP AUTH (RFC 4954): decoding what the client sends, encoding what the
//! guard sends upstream. I/O-free; the session drives the exchange.
//!
//! Passwords live in [`Credentials`] only for the length of one exchange
//! and are never formatted by `Debug`.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// Longest base64 line accepted in an exchange (RFC 4954 4: 12,288 octets).
pub const MAX_SASL_LINE: usize = 12_288;

/// `334` challenge for the LOGIN user name ("Username:").
pub const LOGIN_USER_CHALLENGE: &str = "VXNlcm5hbWU6";
/// `334` challenge for the LOGIN password ("Password:").
pub const LOGIN_PASS_CHALLENGE: &str = "UGFzc3dvcmQ6";

/// A login and its password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// Authentication identity (the login name).
    pub username: String,
    /// Its password.
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Credentials {{ username: {:?}, password: *** }}",
            self.username
        )
    }
}

/// Why an exchange failed on the client's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaslError {
    /// The client sent `*` (RFC 4954 4).
    Cancelled,
    /// Not base64, not UTF-8, or not the mechanism's format.
    Malformed,
}

/// Decodes one client line of an exchange (`=` is the empty response).
pub fn decode_line(line: &str) -> Result<Vec<u8>, SaslError> {
    let line = line.trim_end_matches(['\r', '\n']).trim();
    if line == "*" {
        return Err(SaslError::Cancelled);
    }
    if line == "=" {
        return Ok(Vec::new());
    }
    STANDARD.decode(line).map_err(|_| SaslError::Malformed)
}

/// RFC 4616: `[authzid] NUL authcid NUL passwd`. An authzid other than
/// empty or the authcid itself is refused: the guard does not let one user
/// act as another.
pub fn parse_plain(decoded: &[u8]) -> Result<Credentials, SaslError> {
    let mut parts = decoded.split(|&b| b == 0);
    let (Some(authz), Some(user), Some(pass), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(SaslError::Malformed);
    };
    let text = |b: &[u8]| String::from_utf8(b.to_vec()).map_err(|_| SaslError::Malformed);
    let (authz, username, password) = (text(authz)?, text(user)?, text(pass)?);
    if username.is_empty() || (!authz.is_empty() && authz != username) {
        return Err(SaslError::Malformed);
    }
    Ok(Credentials { username, password })
}

/// A LOGIN user name or password line, decoded.
pub fn parse_login_part(decoded: Vec<u8>) -> Result<String, SaslError> {
    String::from_utf8(decoded).map_err(|_| SaslError::Malformed)
}

/// The PLAIN initial response the guard sends upstream.
pub fn encode_plain(c: &Credentials) -> String {
    let mut raw = Vec::with_capacity(c.username.len() + c.password.len() + 2);
    raw.push(0);
    raw.extend_from_slice(c.username.as_bytes());
    raw.push(0);
    raw.extend_from_slice(c.password.as_bytes());
    STANDARD.encode(raw)
}

/// base64 of one LOGIN part.
pub fn encode(text: &str) -> String {
    STANDARD.encode(text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_responses() {
        type Row<'a> = (&'a [u8], Option<(&'a str, &'a str)>);
        let table: &[Row] = &[
            (b"\0alice\0secret", Some(("alice", "secret"))),
            (b"alice\0alice\0secret", Some(("alice", "secret"))),
            (b"bob\0alice\0secret", None),
            (b"\0\0secret", None),
            (b"alice\0secret", None),
            (b"\0alice\0se\0cret", None),
            (b"\0al\xffice\0secret", None),
            (b"\0alice\0", Some(("alice", ""))),
        ];
        for (raw, expected) in table {
            let got = parse_plain(raw).ok().map(|c| (c.username, c.password));
            let expected = expected.map(|(u, p)| (u.to_string(), p.to_string()));
            assert_eq!(got, expected, "{raw:?}");
        }
    }

    #[test]
    fn lines_decode() {
        assert_eq!(
            decode_line("AGFsaWNlAHNlY3JldA==\r\n"),
            Ok(b"\0alice\0secret".to_vec())
        );
        assert_eq!(decode_line("=\r\n"), Ok(Vec::new()));
        assert_eq!(decode_line("*\r\n"), Err(SaslError::Cancelled));
        assert_eq!(decode_line("not base64!\r\n"), Err(SaslError::Malformed));
    }

    #[test]
    fn round_trip_and_no_password_in_debug() {
        let c = Credentials {
            username: "alice".into(),
            password: "s3cr3t".into(),
        };
        let plain = encode_plain(&c);
        assert_eq!(parse_plain(&decode_line(&plain).unwrap()).unwrap(), c);
        assert!(!format!("{c:?}").contains("s3cr3t"));
        assert_eq!(LOGIN_USER_CHALLENGE, encode("Username:"));
        assert_eq!(LOGIN_PASS_CHALLENGE, encode("Password:"));
    }
}
