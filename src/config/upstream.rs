//! The `upstream:` section: where mail goes (SMTP host or a local Maildir),
//! the hop's timeouts, pool, TLS and login, with their defaults.

use super::*;

/// Upstream TCP connect (Postfix's `smtp_connect_timeout`).
pub const DEFAULT_UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Upstream reply to one command (Postfix's `smtp_mail_timeout`).
pub const DEFAULT_UPSTREAM_COMMAND_TIMEOUT: Duration = Duration::from_secs(300);

/// Upstream transfer of the message and its final reply (Postfix's
/// `smtp_data_done_timeout`).
pub const DEFAULT_UPSTREAM_DATA_TIMEOUT: Duration = Duration::from_secs(600);

/// `upstream.pool_size`: most idle upstream sessions kept between client
/// sessions. Enough for the clients finishing a message at the same moment,
/// few next to what an upstream serves at once (Postfix runs one smtpd
/// process per connection, `default_process_limit` 100).
pub const DEFAULT_UPSTREAM_POOL_SIZE: usize = 32;

/// `upstream.pool_idle_time`: an idle upstream session older than this is
/// closed instead of reused. Far below the idle timeouts of real servers
/// (Postfix `smtpd_timeout` 300 s; RFC 5321 4.5.3.2.7 says at least 5
/// minutes), so upstream rarely closes one first.
pub const DEFAULT_UPSTREAM_POOL_IDLE_TIME: Duration = Duration::from_secs(10);

/// `upstream.tls`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamTls {
    /// Plain SMTP (trusted networks, or loopback).
    None,
    /// STARTTLS, required: no silent downgrade (RFC 3207).
    StartTls,
    /// TLS from the first byte (RFC 8314).
    Tls,
}

/// A secret that never appears in `Debug` output or logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// `upstream.auth`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamAuth {
    /// The guard does not authenticate upstream (upstream trusts its IP).
    None,
    /// The client's own credentials are forwarded on that client's upstream
    /// session; upstream decides.
    Passthrough,
    /// A service account the guard logs in with.
    Account {
        /// Login name.
        username: String,
        /// Password, read from `password_file`.
        password: Secret,
    },
}

/// Where accepted mail goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamTarget {
    /// `upstream.address`: the real mail server, `host:port`.
    Smtp(String),
    /// `upstream.maildir`: a local Maildir (for trying the guard out).
    Maildir(PathBuf),
}

/// `upstream.*`.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// `address` or `maildir`.
    pub target: UpstreamTarget,
    /// `helo`: name the guard gives in its EHLO (default `server.hostname`).
    pub helo: String,
    /// `connect_timeout`.
    pub connect_timeout: Duration,
    /// `command_timeout`: wait for the reply to one command.
    pub command_timeout: Duration,
    /// `data_timeout`: send the message and wait for the final reply.
    pub data_timeout: Duration,
    /// `pool_size`: idle sessions kept for the next client (0: none).
    pub pool_size: usize,
    /// `pool_idle_time`: how long an idle session is kept.
    pub pool_idle_time: Duration,
    /// `tls`: none, starttls or tls.
    pub tls: UpstreamTls,
    /// `ca`: PEM trust anchors instead of the system store.
    pub ca: Option<PathBuf>,
    /// `tls_verify`: verify upstream's certificate (default true).
    pub tls_verify: bool,
    /// `tls_name`: name to verify (default: the host of `address`).
    pub tls_name: Option<String>,
    /// `auth`.
    pub auth: UpstreamAuth,
    /// `recipients`: when upstream hears the RCPTs.
    pub recipients: Recipients,
}

/// `upstream.recipients`: when upstream is asked about each recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recipients {
    /// Each RCPT is forwarded as the client sends it and answered with
    /// upstream's own reply; the guard owns no message (but split leftovers).
    Lockstep,
    /// The guard answers RCPT after its own checks; the envelope goes
    /// upstream in one pipelined batch with the decided message. A recipient
    /// upstream then refuses while it accepts others is the guard's to
    /// retry or bounce (the spool), like any MSA's queue.
    Deferred,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum RawAuth {
    Mode(String),
    Account {
        username: Option<String>,
        password_file: Option<String>,
    },
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawUpstream {
    address: Option<String>,
    maildir: Option<String>,
    tls: Option<String>,
    ca: Option<String>,
    tls_verify: Option<String>,
    tls_name: Option<String>,
    auth: Option<RawAuth>,
    helo: Option<String>,
    connect_timeout: Option<String>,
    command_timeout: Option<String>,
    data_timeout: Option<String>,
    pool_size: Option<String>,
    pool_idle_time: Option<String>,
    recipients: Option<String>,
}

impl Validator {
    pub(super) fn upstream(&mut self, raw: RawUpstream, hostname: &str) -> Option<UpstreamConfig> {
        let target = self.upstream_target(raw.address, raw.maildir);
        let tls = self.tls_mode("upstream.tls", raw.tls.as_deref());
        let tls_verify = self.flag("upstream.tls_verify", raw.tls_verify, true);
        let ca = raw.ca.filter(|c| !c.is_empty()).map(|c| self.path(c));
        if tls != UpstreamTls::None
            && let Err(e) = crate::net::tls::connector(ca.as_deref(), tls_verify)
        {
            self.bad("upstream.ca", e.to_string());
        }
        let auth = self.upstream_auth(raw.auth, &target);
        let recipients = match raw.recipients.as_deref().unwrap_or("lockstep") {
            "lockstep" => Recipients::Lockstep,
            "deferred" => Recipients::Deferred,
            other => {
                self.bad(
                    "upstream.recipients",
                    format!("unknown value {other:?}, expected lockstep or deferred"),
                );
                Recipients::Lockstep
            }
        };
        if recipients == Recipients::Deferred && auth == UpstreamAuth::Passthrough {
            // A recipient refused after others were accepted is retried or
            // bounced later by the spool, which has no client login to use.
            self.bad(
                "upstream.recipients",
                "deferred needs the guard to deliver on its own later; with upstream.auth: passthrough use lockstep",
            );
        }
        let helo = raw.helo.unwrap_or_else(|| hostname.to_string());
        let d = |s: &mut Self, name: &str, v: Option<String>, def| {
            s.duration(&format!("upstream.{name}"), v, def)
        };
        let connect_timeout = d(
            self,
            "connect_timeout",
            raw.connect_timeout,
            DEFAULT_UPSTREAM_CONNECT_TIMEOUT,
        );
        let command_timeout = d(
            self,
            "command_timeout",
            raw.command_timeout,
            DEFAULT_UPSTREAM_COMMAND_TIMEOUT,
        );
        let data_timeout = d(
            self,
            "data_timeout",
            raw.data_timeout,
            DEFAULT_UPSTREAM_DATA_TIMEOUT,
        );
        let pool_size = self.count(
            "upstream.pool_size",
            raw.pool_size,
            DEFAULT_UPSTREAM_POOL_SIZE,
            0,
        );
        let pool_idle_time = d(
            self,
            "pool_idle_time",
            raw.pool_idle_time,
            DEFAULT_UPSTREAM_POOL_IDLE_TIME,
        );
        Some(UpstreamConfig {
            target: target?,
            helo,
            connect_timeout,
            command_timeout,
            data_timeout,
            pool_size,
            pool_idle_time,
            tls,
            ca,
            tls_verify,
            tls_name: raw.tls_name.filter(|n| !n.is_empty()),
            auth,
            recipients,
        })
    }

    /// `upstream.address` or `upstream.maildir`: exactly one of them.
    fn upstream_target(
        &mut self,
        address: Option<String>,
        maildir: Option<String>,
    ) -> Option<UpstreamTarget> {
        match (
            address.filter(|s| !s.is_empty()),
            maildir.filter(|s| !s.is_empty()),
        ) {
            (Some(_), Some(_)) => {
                self.bad(
                    "upstream",
                    "set either upstream.address or upstream.maildir, not both",
                );
                None
            }
            (Some(addr), None) => {
                if valid_host_port(&addr) {
                    Some(UpstreamTarget::Smtp(addr))
                } else {
                    self.bad(
                        "upstream.address",
                        format!("{addr:?} is not host:port (e.g. \"mail.example.org:25\")"),
                    );
                    None
                }
            }
            (None, Some(dir)) => Some(UpstreamTarget::Maildir(self.path(dir))),
            (None, None) => {
                self.bad(
                    "upstream",
                    "no destination: set upstream.address (host:port of the real mail server) or upstream.maildir (a local directory)",
                );
                None
            }
        }
    }

    /// `upstream.tls` and `incidents.smtp.tls`: none, starttls or tls.
    pub(super) fn tls_mode(&mut self, key: &str, tls: Option<&str>) -> UpstreamTls {
        self.one_of(
            key,
            tls,
            &[
                ("none", UpstreamTls::None),
                ("starttls", UpstreamTls::StartTls),
                ("tls", UpstreamTls::Tls),
            ],
            UpstreamTls::None,
        )
    }

    pub(super) fn upstream_auth(
        &mut self,
        raw: Option<RawAuth>,
        target: &Option<UpstreamTarget>,
    ) -> UpstreamAuth {
        let auth = match raw {
            None => UpstreamAuth::None,
            Some(RawAuth::Mode(m)) => match m.as_str() {
                "none" | "" => UpstreamAuth::None,
                "passthrough" => UpstreamAuth::Passthrough,
                other => {
                    self.bad(
                        "upstream.auth",
                        format!("unknown value {other:?}, expected none, passthrough, or {{username, password_file}}"),
                    );
                    UpstreamAuth::None
                }
            },
            Some(RawAuth::Account {
                username,
                password_file,
            }) => {
                let Some(username) = username.filter(|u| !u.is_empty()) else {
                    self.bad("upstream.auth.username", "missing");
                    return UpstreamAuth::None;
                };
                let Some(file) = password_file.filter(|f| !f.is_empty()) else {
                    self.bad("upstream.auth.password_file", "missing");
                    return UpstreamAuth::None;
                };
                let file = self.path(file);
                match std::fs::read_to_string(&file) {
                    Ok(p) => UpstreamAuth::Account {
                        username,
                        password: Secret(p.trim_end_matches(['\r', '\n']).to_string()),
                    },
                    Err(e) => {
                        self.bad(
                            "upstream.auth.password_file",
                            format!("cannot read {}: {e}", file.display()),
                        );
                        UpstreamAuth::None
                    }
                }
            }
        };
        if auth != UpstreamAuth::None && matches!(target, Some(UpstreamTarget::Maildir(_))) {
            self.bad(
                "upstream.auth",
                "needs upstream.address: a Maildir cannot check credentials",
            );
        }
        auth
    }
}
