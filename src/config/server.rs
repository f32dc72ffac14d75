//! The `server:` section: listeners, trusted networks, PROXY protocol,
//! client-side TLS and the session limits, with their defaults.

use super::*;

/// How long a trusted peer has to deliver its whole header, by default
/// (`server.proxy_protocol_timeout`; Postfix's
/// `postscreen_upstream_proxy_timeout` is 5 s too). The PROXY protocol
/// spec, section 2, says "a few seconds (at least 3 seconds to cover a TCP
/// retransmit)"; load balancers send the
/// header with the connection, so a late one is a broken or hostile peer.
pub const DEFAULT_PROXY_PROTOCOL_TIMEOUT: Duration = Duration::from_secs(5);

/// Default listener: loopback, unprivileged submission port.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:2525";

/// Largest message accepted (Postfix's `message_size_limit`).
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 10_240_000;

/// Recipients per transaction (Postfix's `smtpd_recipient_limit`).
pub const DEFAULT_MAX_RECIPIENTS: usize = 1000;

/// Longest message line, CRLF excluded (RFC 5321 4.5.3.1.6).
pub const DEFAULT_MAX_LINE_LENGTH: usize = 998;

/// Longest command line, CRLF included. RFC 5321 4.5.3.1.4 says 512, but
/// ESMTP parameters (RFC 3461 ORCPT, SMTPUTF8 addresses) lengthen it; this is
/// Postfix's `line_length_limit`.
pub const DEFAULT_MAX_COMMAND_LENGTH: usize = 2048;

/// Largest header section read in full. Ten times Postfix's 100 KiB, so a
/// To list of thousands of addresses is counted rather than refused as too
/// large; beyond it the message is refused, never truncated (fail closed).
pub const DEFAULT_MAX_HEADER_SIZE: usize = 1_048_576;

/// Concurrent client sessions.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1000;

/// Concurrent client sessions per client IP (Postfix: 50).
pub const DEFAULT_MAX_CONNECTIONS_PER_IP: usize = 50;

/// Idle time between commands (Postfix's `smtpd_timeout`).
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// Total time allowed for one DATA section, against slow-drip senders.
pub const DEFAULT_DATA_TIMEOUT: Duration = Duration::from_secs(600);

/// Errors before the session is closed (Postfix's `smtpd_hard_error_limit`).
pub const DEFAULT_MAX_ERRORS: usize = 20;

/// How long a shutdown waits for sessions in the middle of a transaction.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Failed AUTH attempts before the session is closed.
pub const DEFAULT_MAX_AUTH_FAILURES: usize = 3;

/// Delay per failed AUTH attempt so far.
pub const DEFAULT_AUTH_FAILURE_DELAY: Duration = Duration::from_secs(1);

/// `server.*`.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// `server.listen`: SMTP listeners.
    pub listen: Vec<SocketAddr>,
    /// `server.hostname`: greeting, Received header, upstream EHLO.
    pub hostname: String,
    /// `server.trusted_networks`: clients allowed to relay without AUTH.
    pub trusted_networks: Vec<IpNet>,
    /// `server.proxy_protocol`: every SMTP connection starts with a PROXY
    /// protocol v1/v2 header naming the real client (behind a TCP load
    /// balancer); one without a valid header is dropped.
    pub proxy_protocol: bool,
    /// `server.proxy_trusted_networks`: the load balancers allowed to send
    /// that header; with `proxy_protocol`, connections from anywhere else
    /// are dropped.
    pub proxy_trusted_networks: Vec<IpNet>,
    /// `server.proxy_protocol_timeout`: how long a load balancer has to
    /// send its whole PROXY header.
    pub proxy_protocol_timeout: Duration,
    /// `server.limits.*`.
    pub limits: Limits,
    /// `server.tls.cert` / `server.tls.key`: enables STARTTLS.
    pub tls: Option<ServerTls>,
    /// `server.tls_listen`: implicit-TLS listeners (RFC 8314, port 465 style).
    pub tls_listen: Vec<SocketAddr>,
    /// `server.require_tls`: no AUTH, no MAIL before TLS (default: on
    /// whenever a certificate is configured).
    pub require_tls: bool,
    /// `server.require_sender_match`: an authenticated user may only use the
    /// sender addresses mapped to it.
    pub require_sender_match: bool,
    /// `server.shutdown_grace`: on SIGTERM, sessions in a transaction may
    /// finish within this; idle ones get `421` at once.
    pub shutdown_grace: Duration,
    /// `server.sender_map`: login -> sender address patterns it may use.
    /// A login without an entry may use only itself as the address.
    pub sender_map: Vec<(String, Vec<Glob>)>,
}

/// `server.tls.*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTls {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

/// `server.limits.*`: every limit the session enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// `max_message_size` (bytes; SIZE is advertised with it).
    pub max_message_size: usize,
    /// `max_recipients` per transaction.
    pub max_recipients: usize,
    /// `max_line_length` of a message line, CRLF excluded.
    pub max_line_length: usize,
    /// `max_command_length`, CRLF included.
    pub max_command_length: usize,
    /// `max_header_size` read in full.
    pub max_header_size: usize,
    /// `max_connections` in total.
    pub max_connections: usize,
    /// `max_connections_per_ip`.
    pub max_connections_per_ip: usize,
    /// `idle_timeout` between commands.
    pub idle_timeout: Duration,
    /// `data_timeout`: total for one DATA section.
    pub data_timeout: Duration,
    /// `max_errors` before disconnect.
    pub max_errors: usize,
    /// `max_auth_failures` before the session is closed.
    pub max_auth_failures: usize,
    /// `auth_failure_delay`: each failed AUTH waits this long times the
    /// number of failures so far before answering (slows guessing).
    pub auth_failure_delay: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            max_recipients: DEFAULT_MAX_RECIPIENTS,
            max_line_length: DEFAULT_MAX_LINE_LENGTH,
            max_command_length: DEFAULT_MAX_COMMAND_LENGTH,
            max_header_size: DEFAULT_MAX_HEADER_SIZE,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_ip: DEFAULT_MAX_CONNECTIONS_PER_IP,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            data_timeout: DEFAULT_DATA_TIMEOUT,
            max_errors: DEFAULT_MAX_ERRORS,
            max_auth_failures: DEFAULT_MAX_AUTH_FAILURES,
            auth_failure_delay: DEFAULT_AUTH_FAILURE_DELAY,
        }
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawServer {
    listen: Option<Vec<String>>,
    hostname: Option<String>,
    trusted_networks: Option<Vec<String>>,
    proxy_protocol: Option<String>,
    proxy_trusted_networks: Option<Vec<String>>,
    proxy_protocol_timeout: Option<String>,
    limits: RawLimits,
    tls: Option<RawServerTls>,
    tls_listen: Option<Vec<String>>,
    require_tls: Option<String>,
    require_sender_match: Option<String>,
    shutdown_grace: Option<String>,
    sender_map: Option<std::collections::BTreeMap<String, Vec<String>>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawServerTls {
    cert: Option<String>,
    key: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawLimits {
    max_message_size: Option<String>,
    max_recipients: Option<String>,
    max_line_length: Option<String>,
    max_command_length: Option<String>,
    max_header_size: Option<String>,
    max_connections: Option<String>,
    max_connections_per_ip: Option<String>,
    idle_timeout: Option<String>,
    data_timeout: Option<String>,
    max_errors: Option<String>,
    max_auth_failures: Option<String>,
    auth_failure_delay: Option<String>,
}

pub(super) fn default_hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

impl Validator {
    pub(super) fn server(&mut self, raw: RawServer) -> ServerConfig {
        let listen_raw = raw.listen.unwrap_or_else(|| vec![DEFAULT_LISTEN.into()]);
        if listen_raw.is_empty() {
            self.bad(
                "server.listen",
                "needs at least one address such as \"127.0.0.1:2525\"",
            );
        }
        let listen = listen_raw
            .iter()
            .enumerate()
            .filter_map(|(i, s)| self.socket_addr(&format!("server.listen[{i}]"), s))
            .collect();
        let hostname = raw.hostname.unwrap_or_else(default_hostname);
        if hostname.is_empty()
            || hostname
                .chars()
                .any(|c| c.is_whitespace() || c.is_control())
        {
            self.bad(
                "server.hostname",
                format!("{hostname:?} is not a host name"),
            );
        }
        let trusted_networks = raw
            .trusted_networks
            .unwrap_or_else(|| vec!["127.0.0.0/8".into(), "::1/128".into()])
            .iter()
            .enumerate()
            .filter_map(|(i, s)| self.network(&format!("server.trusted_networks[{i}]"), s))
            .collect();
        let (proxy_protocol, proxy_trusted_networks) =
            self.proxy(raw.proxy_protocol, raw.proxy_trusted_networks);
        let proxy_protocol_timeout = self.duration(
            "server.proxy_protocol_timeout",
            raw.proxy_protocol_timeout,
            DEFAULT_PROXY_PROTOCOL_TIMEOUT,
        );
        let limits = self.limits(raw.limits);
        let tls = self.server_tls(raw.tls);
        let tls_listen: Vec<SocketAddr> = raw
            .tls_listen
            .unwrap_or_default()
            .iter()
            .enumerate()
            .filter_map(|(i, s)| self.socket_addr(&format!("server.tls_listen[{i}]"), s))
            .collect();
        if !tls_listen.is_empty() && tls.is_none() {
            self.bad(
                "server.tls_listen",
                "needs server.tls.cert and server.tls.key",
            );
        }
        let require_tls = self.flag("server.require_tls", raw.require_tls, tls.is_some());
        if require_tls && tls.is_none() {
            self.bad(
                "server.require_tls",
                "true needs server.tls.cert and server.tls.key",
            );
        }
        let shutdown_grace = self.duration(
            "server.shutdown_grace",
            raw.shutdown_grace,
            DEFAULT_SHUTDOWN_GRACE,
        );
        let require_sender_match = self.flag(
            "server.require_sender_match",
            raw.require_sender_match,
            false,
        );
        let sender_map = raw
            .sender_map
            .unwrap_or_default()
            .into_iter()
            .map(|(login, patterns)| {
                let globs = patterns.iter().map(|p| Glob::new(p)).collect();
                (login.to_lowercase(), globs)
            })
            .collect();
        ServerConfig {
            listen,
            hostname,
            trusted_networks,
            proxy_protocol,
            proxy_trusted_networks,
            proxy_protocol_timeout,
            limits,
            tls,
            tls_listen,
            require_tls,
            require_sender_match,
            shutdown_grace,
            sender_map,
        }
    }

    pub(super) fn server_tls(&mut self, raw: Option<RawServerTls>) -> Option<ServerTls> {
        let raw = raw?;
        match (
            raw.cert.filter(|c| !c.is_empty()),
            raw.key.filter(|k| !k.is_empty()),
        ) {
            (None, None) => None,
            (Some(cert), Some(key)) => {
                let tls = ServerTls {
                    cert: self.path(cert),
                    key: self.path(key),
                };
                if let Err(e) = crate::net::tls::load_certified_key(&tls.cert, &tls.key) {
                    self.bad("server.tls", e.to_string());
                }
                Some(tls)
            }
            (Some(_), None) => {
                self.bad("server.tls.key", "missing (server.tls.cert is set)");
                None
            }
            (None, Some(_)) => {
                self.bad("server.tls.cert", "missing (server.tls.key is set)");
                None
            }
        }
    }

    /// `server.proxy_protocol` and `server.proxy_trusted_networks`. Turning
    /// the protocol on without naming the proxies is an error rather than
    /// "trust everyone": anyone who may send the header can claim any
    /// address, including one inside `trusted_networks` (spec section 5).
    pub(super) fn proxy(
        &mut self,
        on: Option<String>,
        nets: Option<Vec<String>>,
    ) -> (bool, Vec<IpNet>) {
        let on = self.flag("server.proxy_protocol", on, false);
        let nets: Vec<IpNet> = nets
            .unwrap_or_default()
            .iter()
            .enumerate()
            .filter_map(|(i, s)| self.network(&format!("server.proxy_trusted_networks[{i}]"), s))
            .collect();
        if on && nets.is_empty() {
            self.bad(
                "server.proxy_trusted_networks",
                "must list the load balancers' networks when server.proxy_protocol is true (e.g. [\"10.0.0.0/8\"])",
            );
        }
        (on, nets)
    }

    pub(super) fn limits(&mut self, raw: RawLimits) -> Limits {
        let d = Limits::default();
        let k = |name: &str| format!("server.limits.{name}");
        Limits {
            max_message_size: self.size(
                &k("max_message_size"),
                raw.max_message_size,
                d.max_message_size,
            ),
            max_recipients: self.count(
                &k("max_recipients"),
                raw.max_recipients,
                d.max_recipients,
                1,
            ),
            max_line_length: self.count(
                &k("max_line_length"),
                raw.max_line_length,
                d.max_line_length,
                78,
            ),
            max_command_length: self.count(
                &k("max_command_length"),
                raw.max_command_length,
                d.max_command_length,
                512,
            ),
            max_header_size: self.size(
                &k("max_header_size"),
                raw.max_header_size,
                d.max_header_size,
            ),
            max_connections: self.count(
                &k("max_connections"),
                raw.max_connections,
                d.max_connections,
                1,
            ),
            max_connections_per_ip: self.count(
                &k("max_connections_per_ip"),
                raw.max_connections_per_ip,
                d.max_connections_per_ip,
                1,
            ),
            idle_timeout: self.duration(&k("idle_timeout"), raw.idle_timeout, d.idle_timeout),
            data_timeout: self.duration(&k("data_timeout"), raw.data_timeout, d.data_timeout),
            max_errors: self.count(&k("max_errors"), raw.max_errors, d.max_errors, 1),
            max_auth_failures: self.count(
                &k("max_auth_failures"),
                raw.max_auth_failures,
                d.max_auth_failures,
                1,
            ),
            auth_failure_delay: self.duration(
                &k("auth_failure_delay"),
                raw.auth_failure_delay,
                d.auth_failure_delay,
            ),
        }
    }
}
