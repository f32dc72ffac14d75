//! The `console:` section: the DPO console, a web page for held mail and
//! the incident register (docs/console.md). Off unless `listen` is set; the
//! embedded default turns it on at loopback only.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;

use super::Validator;

/// A console session lasts a working day at most, then the DPO logs in
/// again (a forgotten browser on a shared office PC does not stay open).
pub const DEFAULT_SESSION_TTL: Duration = Duration::from_secs(8 * 3600);
/// The header oauth2-proxy and most SSO proxies set to the logged-in user.
pub const DEFAULT_HEADER_NAME: &str = "X-Forwarded-User";

/// `console.auth`: who may log in, and how the console learns it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsoleAuth {
    /// The console's own login form against `bccguard user` accounts.
    Local,
    /// A reverse proxy authenticated the user and names it in
    /// `header_name`; only requests from `trusted_proxies` are believed,
    /// and only names in the user table are let in.
    Header,
}

/// `console.*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleConfig {
    /// `listen`: the console's address; `None` (absent or empty): off.
    pub listen: Option<SocketAddr>,
    /// `public_url`: how people reach it (links in notices), e.g.
    /// `https://bccguard.example.org`; without a trailing slash.
    pub public_url: Option<String>,
    /// `tls_cert` / `tls_key`: HTTPS on `listen` (else run it behind a TLS
    /// proxy, or on loopback).
    pub tls: Option<(PathBuf, PathBuf)>,
    /// `session_ttl`: a login lasts this long.
    pub session_ttl: Duration,
    /// `auth`: `local` or `header`.
    pub auth: ConsoleAuth,
    /// `header_name`: the user header of `auth: header`.
    pub header_name: String,
    /// `trusted_proxies`: the proxies whose `header_name` is believed.
    pub trusted_proxies: Vec<IpNet>,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        ConsoleConfig {
            listen: None,
            public_url: None,
            tls: None,
            session_ttl: DEFAULT_SESSION_TTL,
            auth: ConsoleAuth::Local,
            header_name: DEFAULT_HEADER_NAME.into(),
            trusted_proxies: Vec::new(),
        }
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawConsole {
    listen: Option<String>,
    public_url: Option<String>,
    tls_cert: Option<String>,
    tls_key: Option<String>,
    session_ttl: Option<String>,
    auth: Option<String>,
    header_name: Option<String>,
    trusted_proxies: Option<Vec<String>>,
}

impl Validator {
    pub(super) fn console(&mut self, raw: RawConsole) -> ConsoleConfig {
        let listen = raw
            .listen
            .filter(|l| !l.is_empty())
            .and_then(|l| self.socket_addr("console.listen", &l));
        let public_url =
            raw.public_url
                .filter(|u| !u.is_empty())
                .and_then(|u| match super::Url::parse(&u) {
                    Ok(_) => Some(u.trim_end_matches('/').to_string()),
                    Err(e) => {
                        self.bad("console.public_url", format!("{u:?}: {e}"));
                        None
                    }
                });
        let tls = match (
            raw.tls_cert.filter(|c| !c.is_empty()),
            raw.tls_key.filter(|k| !k.is_empty()),
        ) {
            (None, None) => None,
            (Some(cert), Some(key)) => {
                let (cert, key) = (self.path(cert), self.path(key));
                if let Err(e) = crate::net::tls::load_certified_key(&cert, &key) {
                    self.bad("console.tls_cert", e.to_string());
                }
                Some((cert, key))
            }
            _ => {
                self.bad(
                    "console.tls_cert",
                    "needs console.tls_key too (both or neither)",
                );
                None
            }
        };
        let session_ttl =
            self.duration("console.session_ttl", raw.session_ttl, DEFAULT_SESSION_TTL);
        let auth = self.one_of(
            "console.auth",
            raw.auth.as_deref(),
            &[
                ("local", ConsoleAuth::Local),
                ("header", ConsoleAuth::Header),
            ],
            ConsoleAuth::Local,
        );
        let header_name = raw
            .header_name
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| DEFAULT_HEADER_NAME.into());
        if axum::http::HeaderName::from_bytes(header_name.as_bytes()).is_err() {
            self.bad(
                "console.header_name",
                format!("{header_name:?} is not a header name"),
            );
        }
        let trusted_proxies: Vec<IpNet> = raw
            .trusted_proxies
            .unwrap_or_default()
            .iter()
            .enumerate()
            .filter_map(|(i, s)| self.network(&format!("console.trusted_proxies[{i}]"), s))
            .collect();
        if auth == ConsoleAuth::Header && trusted_proxies.is_empty() {
            self.bad(
                "console.trusted_proxies",
                "auth: header needs the proxies whose header is believed (else anyone could name any user)",
            );
        }
        ConsoleConfig {
            listen,
            public_url,
            tls,
            session_ttl,
            auth,
            header_name,
            trusted_proxies,
        }
    }
}
