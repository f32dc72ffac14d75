//! `incidents.webhook`: the URL type the key holds, parsed and checked at
//! load time so a typo is a configuration error naming the key.

use std::fmt;

/// A parsed `http://` or `https://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// TLS (https).
    pub tls: bool,
    /// Host name or IP (no brackets).
    pub host: String,
    /// Port (default 80 / 443).
    pub port: u16,
    /// Path and query, starting with `/`.
    pub path: String,
}

impl fmt::Display for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "https" } else { "http" };
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        write!(f, "{scheme}://{host}:{}{}", self.port, self.path)
    }
}

/// Why a string is not a webhook URL (shown after the key and the value).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// Neither `http://` nor `https://`.
    #[error("must start with http:// or https://")]
    Scheme,
    /// `user@`, `#fragment` or white space.
    #[error("no user info, fragment or spaces allowed")]
    Forbidden,
    /// `[` of an IPv6 address without its `]`.
    #[error("unclosed [")]
    Unclosed,
    /// A port that is not a number from 0 to 65535.
    #[error("bad port {0:?}")]
    Port(String),
    /// Nothing between the scheme and the path.
    #[error("no host")]
    NoHost,
}

impl Url {
    /// Parses `http[s]://host[:port][/path]`; no user info, no fragment.
    pub fn parse(s: &str) -> Result<Url, UrlError> {
        let (tls, rest) = if let Some(r) = s.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = s.strip_prefix("http://") {
            (false, r)
        } else {
            return Err(UrlError::Scheme);
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.contains('@') || path.contains('#') || path.contains(char::is_whitespace) {
            return Err(UrlError::Forbidden);
        }
        let default = if tls { 443 } else { 80 };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) = v6.split_once(']').ok_or(UrlError::Unclosed)?;
            let port = match after.strip_prefix(':') {
                Some(p) => p.parse().map_err(|_| UrlError::Port(p.to_string()))?,
                None => default,
            };
            (h.to_string(), port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (
                    h.to_string(),
                    p.parse().map_err(|_| UrlError::Port(p.to_string()))?,
                ),
                None => (authority.to_string(), default),
            }
        };
        if host.is_empty() {
            return Err(UrlError::NoHost);
        }
        Ok(Url {
            tls,
            host,
            port,
            path: path.to_string(),
        })
    }
}
