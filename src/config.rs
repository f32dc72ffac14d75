//! `policy.yaml` -> a validated [`Config`].
//!
//! The file is layered with environment overrides in the `config` crate's
//! convention (`BCCGUARD__POLICY__ACTION=monitor` sets `policy.action`), then
//! deserialised into loosely typed `Raw*` structs (unknown keys are errors:
//! a typo must not silently fall back to a default) and validated into the
//! typed [`Config`]. Validation collects every problem, each naming its key
//! path and the bad value, so `bccguard check` can list them all at once.
//!
//! Every limit has a named default here; the README's reference table is
//! written from these constants.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;

use crate::policy::{
    Action, AttachedMessages, DEFAULT_MIME_NESTING_LIMIT, DomainSet, EmptyTo, Glob, Policy, Rule,
    VisibleHeaders,
};

pub mod authorities;
mod url;
mod workflow;

pub use url::Url;

pub use workflow::{
    Controller, DEFAULT_DIGEST_AFTER, DEFAULT_DIGEST_INTERVAL, DEFAULT_NOTICE_MAX_AGE,
    DEFAULT_NOTICE_RETRY_MAX, DEFAULT_NOTICE_RETRY_MIN, DEFAULT_QUARANTINE_RETENTION,
    DEFAULT_STORE_PATH, DEFAULT_WEBHOOK_TIMEOUT, IncidentsConfig, NoticeSmtp, QuarantineConfig,
    StoreConfig,
};

/// The commented default shipped at the repository root and embedded in the
/// binary, so `bccguard serve` works out of the box.
pub const DEFAULT_POLICY_YAML: &str = include_str!("../policy.yaml");

/// How long a trusted peer has to deliver its whole header, by default
/// (`server.proxy_protocol_timeout`; Postfix's
/// `postscreen_upstream_proxy_timeout` is 5 s too). The PROXY protocol
/// spec, section 2, says "a few seconds (at least 3 seconds to cover a TCP
/// retransmit)"; load balancers send the
/// header with the connection, so a late one is a broken or hostile peer.
pub const DEFAULT_PROXY_PROTOCOL_TIMEOUT: Duration = Duration::from_secs(5);
/// Default listener: loopback, unprivileged submission port.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:2525";
/// Default `/metrics` listener: loopback, a port of its own.
pub const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9925";
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
/// Visible external recipients allowed before the action triggers.
pub use crate::policy::DEFAULT_MAX_EXTERNAL_RECIPIENTS;
/// Default incident log.
pub const DEFAULT_INCIDENTS_PATH: &str = "./incidents.jsonl";

/// The whole validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// `server.*`: the client-facing side.
    pub server: ServerConfig,
    /// `upstream.*`: where mail goes.
    pub upstream: UpstreamConfig,
    /// `metrics.*`.
    pub metrics: MetricsConfig,
    /// `incidents.*`.
    pub incidents: IncidentsConfig,
    /// `policy.*`: the decision.
    pub policy: Policy,
    /// `spool.*`: where copies the guard owns wait for retry.
    pub spool: SpoolConfig,
    /// `store.*`: the incident register, quarantine and notice outbox.
    pub store: StoreConfig,
    /// `quarantine.*`: held messages (`action: hold`).
    pub quarantine: QuarantineConfig,
}

/// `spool.*`.
#[derive(Debug, Clone)]
pub struct SpoolConfig {
    /// `path`: the spool directory.
    pub path: PathBuf,
    /// `retry_min`, `retry_max`, `max_age`, `scan_interval`.
    pub retry: RetryPolicy,
}

/// Retry policy (`spool.*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// First retry after this long; doubles per attempt.
    pub retry_min: Duration,
    /// Longest wait between attempts.
    pub retry_max: Duration,
    /// Give up (and notify the sender) after this long.
    pub max_age: Duration,
    /// How often the spool is scanned for due entries.
    pub scan_interval: Duration,
}

impl RetryPolicy {
    /// Delay before attempt `attempts + 1`.
    pub fn backoff(&self, attempts: u32) -> Duration {
        let factor = 1u32
            .checked_shl(attempts.saturating_sub(1).min(20))
            .unwrap_or(u32::MAX);
        self.retry_min.saturating_mul(factor).min(self.retry_max)
    }
}

/// Default spool directory.
pub const DEFAULT_SPOOL_PATH: &str = "./spool";
/// First retry of a spooled copy.
pub const DEFAULT_SPOOL_RETRY_MIN: Duration = Duration::from_secs(60);
/// Longest wait between retries.
pub const DEFAULT_SPOOL_RETRY_MAX: Duration = Duration::from_secs(3600);
/// Give up after this long (Postfix's `maximal_queue_lifetime`).
pub const DEFAULT_SPOOL_MAX_AGE: Duration = Duration::from_secs(5 * 86400);
/// How often the spool is scanned.
pub const DEFAULT_SPOOL_SCAN_INTERVAL: Duration = Duration::from_secs(10);

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

/// `metrics.*`.
#[derive(Debug, Clone)]
pub struct MetricsConfig {
    /// `listen`; `None` when set to the empty string (disabled).
    pub listen: Option<SocketAddr>,
}

/// One problem found while loading, naming the key it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Key path such as `policy.action` or `policy.rules[2].sender[0]`.
    pub key: String,
    /// What is wrong, with the bad value.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.key, self.message)
        }
    }
}

/// Everything wrong with a configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// Where the configuration came from (file name or "embedded default").
    pub source_name: String,
    /// The problems, at least one.
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} problem(s)",
            self.source_name,
            self.problems.len()
        )?;
        for p in &self.problems {
            write!(f, "\n  {p}")?;
        }
        Ok(())
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawConfig {
    spool: RawSpool,
    server: RawServer,
    upstream: RawUpstream,
    metrics: RawMetrics,
    incidents: workflow::RawIncidents,
    policy: RawPolicy,
    store: workflow::RawStore,
    quarantine: workflow::RawQuarantine,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawSpool {
    path: Option<String>,
    retry_min: Option<String>,
    retry_max: Option<String>,
    max_age: Option<String>,
    scan_interval: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawServer {
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
struct RawServerTls {
    cert: Option<String>,
    key: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawAuth {
    Mode(String),
    Account {
        username: Option<String>,
        password_file: Option<String>,
    },
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawLimits {
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

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawUpstream {
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

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawMetrics {
    listen: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawPolicy {
    internal_domains: Option<Vec<String>>,
    max_external_recipients: Option<String>,
    action: Option<String>,
    keep_internal_visible: Option<String>,
    empty_to: Option<String>,
    rules: Option<Vec<RawRule>>,
    visible_headers: Option<Vec<String>>,
    attached_messages: Option<String>,
    mime_nesting_limit: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawRule {
    name: Option<String>,
    sender: Option<Vec<String>>,
    mail_from: Option<Vec<String>>,
    header_from: Option<Vec<String>>,
    max_external_recipients: Option<String>,
    action: Option<String>,
}

impl Config {
    /// Loads the configuration from YAML text plus `BCCGUARD__*` environment
    /// overrides. `source_name` names the origin in error messages.
    pub fn load(yaml: &str, source_name: &str) -> Result<Config, ConfigError> {
        let env = ::config::Environment::with_prefix("BCCGUARD")
            .prefix_separator("__")
            .separator("__")
            .list_separator(",")
            .with_list_parse_key("server.listen")
            .with_list_parse_key("server.trusted_networks")
            .with_list_parse_key("server.proxy_trusted_networks")
            .with_list_parse_key("policy.internal_domains")
            .with_list_parse_key("policy.visible_headers")
            // The `config` crate splits lists only when it also parses
            // values; numbers and booleans come back as their text, since
            // every raw field is a string or a list of strings.
            .try_parsing(true);
        Self::load_layered(yaml, source_name, Some(env))
    }

    /// Like [`Config::load`] without environment overrides (tests, explain).
    pub fn from_yaml(yaml: &str, source_name: &str) -> Result<Config, ConfigError> {
        Self::load_layered(yaml, source_name, None)
    }

    /// Settings that are valid but risky, for `check` and the start-up log.
    pub fn warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        let up = &self.upstream;
        let loopback_upstream = match &up.target {
            UpstreamTarget::Smtp(addr) => {
                let host = addr.rsplit_once(':').map_or(addr.as_str(), |(h, _)| h);
                let host = host.trim_start_matches('[').trim_end_matches(']');
                host == "localhost"
                    || host
                        .parse::<std::net::IpAddr>()
                        .is_ok_and(|ip| ip.is_loopback())
            }
            UpstreamTarget::Maildir(_) => true,
        };
        if up.auth != UpstreamAuth::None && up.tls == UpstreamTls::None && !loopback_upstream {
            w.push(
                "upstream.auth: credentials go to upstream without TLS; set upstream.tls".into(),
            );
        }
        if up.tls != UpstreamTls::None && !up.tls_verify {
            w.push(
                "upstream.tls_verify: false: upstream's certificate is not checked (labs only)"
                    .into(),
            );
        }
        if up.auth == UpstreamAuth::Passthrough && self.server.tls.is_none() {
            w.push("upstream.auth: passthrough without server.tls: clients would send passwords in plaintext".into());
        }
        if up.auth == UpstreamAuth::Passthrough && self.incidents.smtp.is_none() {
            w.push("incidents.smtp: unset while upstream.auth is passthrough: notices and quarantine releases go upstream without a login of their own; set incidents.smtp (or let upstream accept the guard's address)".into());
        }
        let i = &self.incidents;
        if i.notice_max_age < i.notice_retry_min {
            w.push(format!(
                "incidents.notice_max_age ({}) is shorter than incidents.notice_retry_min ({}): a notice that fails once is given up without a retry",
                humantime::format_duration(i.notice_max_age),
                humantime::format_duration(i.notice_retry_min)
            ));
        }
        w
    }

    /// The embedded default policy.
    pub fn embedded_default() -> Result<Config, ConfigError> {
        Self::load(DEFAULT_POLICY_YAML, "embedded default policy.yaml")
    }

    fn load_layered(
        yaml: &str,
        source_name: &str,
        env: Option<::config::Environment>,
    ) -> Result<Config, ConfigError> {
        let fail = |key: String, message: String| ConfigError {
            source_name: source_name.to_string(),
            problems: vec![Problem { key, message }],
        };
        let mut builder = ::config::Config::builder()
            .add_source(::config::File::from_str(yaml, ::config::FileFormat::Yaml));
        if let Some(env) = env {
            builder = builder.add_source(env);
        }
        let layered = builder
            .build()
            .map_err(|e| fail(String::new(), e.to_string()))?;
        let raw: RawConfig = layered.try_deserialize().map_err(|e| {
            let (key, message) = split_config_error(&e);
            fail(key, message)
        })?;
        let mut v = Validator::default();
        let config = v.config(raw);
        match config {
            Some(c) if v.problems.is_empty() => Ok(c),
            _ => Err(ConfigError {
                source_name: source_name.to_string(),
                problems: v.problems,
            }),
        }
    }
}

/// The `config` crate reports "message for key `a.b`"; turn it into our
/// `key: message` form.
fn split_config_error(e: &::config::ConfigError) -> (String, String) {
    let text = e.to_string();
    if let Some(pos) = text.rfind(" for key `") {
        let key = text[pos + 10..].trim_end_matches('`').to_string();
        let key = key.split('`').next().unwrap_or_default().to_string();
        return (key, text[..pos].to_string());
    }
    (String::new(), text)
}

#[derive(Default)]
struct Validator {
    problems: Vec<Problem>,
}

impl Validator {
    fn bad(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem {
            key: key.into(),
            message: message.into(),
        });
    }

    fn config(&mut self, raw: RawConfig) -> Option<Config> {
        let server = self.server(raw.server);
        let upstream = self.upstream(raw.upstream, &server.hostname);
        let metrics = self.metrics(raw.metrics);
        let incidents = self.incidents(raw.incidents, &server.hostname);
        let store = self.store(raw.store);
        let quarantine = self.quarantine(raw.quarantine);
        let policy = self.policy(raw.policy, server.limits.max_header_size);
        let spool = self.spool(raw.spool);
        Some(Config {
            server,
            upstream: upstream?,
            metrics,
            incidents,
            policy: policy?,
            spool,
            store,
            quarantine,
        })
    }

    fn spool(&mut self, raw: RawSpool) -> SpoolConfig {
        let path = PathBuf::from(raw.path.unwrap_or_else(|| DEFAULT_SPOOL_PATH.into()));
        if path.as_os_str().is_empty() {
            self.bad("spool.path", "must not be empty");
        }
        let retry = RetryPolicy {
            retry_min: self.duration("spool.retry_min", raw.retry_min, DEFAULT_SPOOL_RETRY_MIN),
            retry_max: self.duration("spool.retry_max", raw.retry_max, DEFAULT_SPOOL_RETRY_MAX),
            max_age: self.duration("spool.max_age", raw.max_age, DEFAULT_SPOOL_MAX_AGE),
            scan_interval: self.duration(
                "spool.scan_interval",
                raw.scan_interval,
                DEFAULT_SPOOL_SCAN_INTERVAL,
            ),
        };
        if retry.retry_max < retry.retry_min {
            self.bad(
                "spool.retry_max",
                "must not be shorter than spool.retry_min",
            );
        }
        SpoolConfig { path, retry }
    }

    fn server(&mut self, raw: RawServer) -> ServerConfig {
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

    fn server_tls(&mut self, raw: Option<RawServerTls>) -> Option<ServerTls> {
        let raw = raw?;
        match (
            raw.cert.filter(|c| !c.is_empty()),
            raw.key.filter(|k| !k.is_empty()),
        ) {
            (None, None) => None,
            (Some(cert), Some(key)) => {
                let tls = ServerTls {
                    cert: cert.into(),
                    key: key.into(),
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

    fn flag(&mut self, key: &str, v: Option<String>, default: bool) -> bool {
        match v.as_deref().map(str::trim) {
            None => default,
            Some("true") => true,
            Some("false") => false,
            Some(other) => {
                self.bad(key, format!("{other:?} is not true or false"));
                default
            }
        }
    }

    /// `server.proxy_protocol` and `server.proxy_trusted_networks`. Turning
    /// the protocol on without naming the proxies is an error rather than
    /// "trust everyone": anyone who may send the header can claim any
    /// address, including one inside `trusted_networks` (spec section 5).
    fn proxy(&mut self, on: Option<String>, nets: Option<Vec<String>>) -> (bool, Vec<IpNet>) {
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

    fn limits(&mut self, raw: RawLimits) -> Limits {
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

    fn upstream(&mut self, raw: RawUpstream, hostname: &str) -> Option<UpstreamConfig> {
        let target = match (
            raw.address.filter(|s| !s.is_empty()),
            raw.maildir.filter(|s| !s.is_empty()),
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
            (None, Some(dir)) => Some(UpstreamTarget::Maildir(PathBuf::from(dir))),
            (None, None) => {
                self.bad(
                    "upstream",
                    "no destination: set upstream.address (host:port of the real mail server) or upstream.maildir (a local directory)",
                );
                None
            }
        };
        let tls = match raw.tls.as_deref().unwrap_or("none") {
            "none" => UpstreamTls::None,
            "starttls" => UpstreamTls::StartTls,
            "tls" => UpstreamTls::Tls,
            other => {
                self.bad(
                    "upstream.tls",
                    format!("unknown value {other:?}, expected one of none, starttls, tls"),
                );
                UpstreamTls::None
            }
        };
        let tls_verify = self.flag("upstream.tls_verify", raw.tls_verify, true);
        let ca = raw.ca.filter(|c| !c.is_empty()).map(PathBuf::from);
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

    fn upstream_auth(
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
                match std::fs::read_to_string(&file) {
                    Ok(p) => UpstreamAuth::Account {
                        username,
                        password: Secret(p.trim_end_matches(['\r', '\n']).to_string()),
                    },
                    Err(e) => {
                        self.bad(
                            "upstream.auth.password_file",
                            format!("cannot read {file:?}: {e}"),
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

    fn metrics(&mut self, raw: RawMetrics) -> MetricsConfig {
        let listen = raw.listen.unwrap_or_else(|| DEFAULT_METRICS_LISTEN.into());
        if listen.is_empty() {
            return MetricsConfig { listen: None };
        }
        MetricsConfig {
            listen: self.socket_addr("metrics.listen", &listen),
        }
    }

    fn policy(&mut self, raw: RawPolicy, max_header_size: usize) -> Option<Policy> {
        let domains = raw.internal_domains.unwrap_or_default();
        let internal_domains = match DomainSet::new(domains.iter().map(String::as_str)) {
            Ok(set) => set,
            Err(bad) => {
                let i = domains.iter().position(|d| *d == bad).unwrap_or(0);
                self.bad(
                    format!("policy.internal_domains[{i}]"),
                    format!("{bad:?} is not a domain name or *.domain wildcard"),
                );
                DomainSet::default()
            }
        };
        let max_external_recipients = self.count(
            "policy.max_external_recipients",
            raw.max_external_recipients,
            DEFAULT_MAX_EXTERNAL_RECIPIENTS,
            0,
        );
        let action = match raw.action.as_deref() {
            None => Action::Reject,
            Some(s) => self.action("policy.action", s).unwrap_or(Action::Reject),
        };
        let keep_internal_visible = match raw.keep_internal_visible.as_deref() {
            None | Some("true") => true,
            Some("false") => false,
            Some(other) => {
                self.bad(
                    "policy.keep_internal_visible",
                    format!("{other:?} is not true or false"),
                );
                true
            }
        };
        let empty_to = match raw.empty_to.as_deref() {
            None | Some("sender") => EmptyTo::Sender,
            Some("undisclosed") => EmptyTo::Undisclosed,
            Some(other) => {
                self.bad(
                    "policy.empty_to",
                    format!("unknown value {other:?}, expected one of sender, undisclosed"),
                );
                EmptyTo::Sender
            }
        };
        let rules = raw
            .rules
            .unwrap_or_default()
            .into_iter()
            .enumerate()
            .map(|(i, r)| self.rule(i, r))
            .collect();
        let visible_headers = match raw.visible_headers {
            None => VisibleHeaders::default(),
            Some(names) => {
                VisibleHeaders::new(names.iter().map(String::as_str)).unwrap_or_else(|e| {
                    self.bad("policy.visible_headers", e);
                    VisibleHeaders::default()
                })
            }
        };
        let attached_messages = match raw.attached_messages.as_deref() {
            None | Some("count") => AttachedMessages::Count,
            Some("ignore") => AttachedMessages::Ignore,
            Some(other) => {
                self.bad(
                    "policy.attached_messages",
                    format!("unknown value {other:?}, expected one of count, ignore"),
                );
                AttachedMessages::Count
            }
        };
        let mime_nesting_limit = self.count(
            "policy.mime_nesting_limit",
            raw.mime_nesting_limit,
            DEFAULT_MIME_NESTING_LIMIT,
            1,
        );
        Some(Policy {
            internal_domains,
            max_external_recipients,
            action,
            rules,
            keep_internal_visible,
            empty_to,
            max_header_size,
            visible_headers,
            attached_messages,
            mime_nesting_limit,
        })
    }

    fn rule(&mut self, i: usize, raw: RawRule) -> Rule {
        let key = format!("policy.rules[{i}]");
        let name = raw.name.unwrap_or_else(|| format!("rule-{}", i + 1));
        let mut globs = |field: &str, list: Option<Vec<String>>| -> Vec<Glob> {
            let list = list.unwrap_or_default();
            for (j, p) in list.iter().enumerate() {
                if p.is_empty() {
                    self.bad(format!("{key}.{field}[{j}]"), "empty pattern");
                }
            }
            list.iter().map(|p| Glob::new(p)).collect()
        };
        let sender = globs("sender", raw.sender);
        let mail_from = globs("mail_from", raw.mail_from);
        let header_from = globs("header_from", raw.header_from);
        let max_external_recipients = raw
            .max_external_recipients
            .map(|v| self.count(&format!("{key}.max_external_recipients"), Some(v), 0, 0));
        let action = raw
            .action
            .and_then(|a| self.action(&format!("{key}.action"), &a));
        if max_external_recipients.is_none() && action.is_none() {
            self.bad(
                &key,
                format!("rule {name:?} changes nothing: set action and/or max_external_recipients"),
            );
        }
        Rule {
            name,
            sender,
            mail_from,
            header_from,
            max_external_recipients,
            action,
        }
    }

    fn action(&mut self, key: &str, s: &str) -> Option<Action> {
        let action = Action::parse(s);
        if action.is_none() {
            let names: Vec<_> = Action::ALL.iter().map(|a| a.as_str()).collect();
            self.bad(
                key,
                format!("unknown action {s:?}, expected one of {}", names.join(", ")),
            );
        }
        action
    }

    fn socket_addr(&mut self, key: &str, s: &str) -> Option<SocketAddr> {
        match s.parse() {
            Ok(a) => Some(a),
            Err(_) => {
                self.bad(key, format!("{s:?} is not an IP address with port (e.g. \"127.0.0.1:2525\" or \"[::1]:2525\")"));
                None
            }
        }
    }

    fn network(&mut self, key: &str, s: &str) -> Option<IpNet> {
        let parsed = s
            .parse::<IpNet>()
            .or_else(|_| s.parse::<std::net::IpAddr>().map(IpNet::from));
        match parsed {
            Ok(n) => Some(n),
            Err(_) => {
                self.bad(
                    key,
                    format!("{s:?} is not a network in CIDR form (e.g. \"10.0.0.0/8\")"),
                );
                None
            }
        }
    }

    fn count(&mut self, key: &str, v: Option<String>, default: usize, min: usize) -> usize {
        let Some(s) = v else { return default };
        match s.trim().replace('_', "").parse::<usize>() {
            Ok(n) if n >= min => n,
            Ok(n) => {
                self.bad(key, format!("{n} is too small (minimum {min})"));
                default
            }
            Err(_) => {
                self.bad(key, format!("{s:?} is not a whole number"));
                default
            }
        }
    }

    fn size(&mut self, key: &str, v: Option<String>, default: usize) -> usize {
        let Some(s) = v else { return default };
        match parse_size(&s) {
            Some(n) if n > 0 => n,
            _ => {
                self.bad(
                    key,
                    format!("{s:?} is not a size (bytes, or with a unit: 512k, 10M, 1G)"),
                );
                default
            }
        }
    }

    fn duration(&mut self, key: &str, v: Option<String>, default: Duration) -> Duration {
        let Some(s) = v else { return default };
        match humantime::parse_duration(s.trim()) {
            Ok(d) if !d.is_zero() => d,
            // Every duration is a timeout, an interval or a lifetime: zero
            // would spin or give up at once, never what was meant.
            Ok(_) => {
                self.bad(key, format!("{s:?} must be longer than zero"));
                default
            }
            Err(_) => {
                self.bad(
                    key,
                    format!("{s:?} is not a duration (e.g. \"300s\", \"5m\", \"1h\")"),
                );
                default
            }
        }
    }
}

/// `10240000`, `512k`, `10M`, `1G` (binary multiples, as Postfix admins
/// expect from `K`/`M`), `10MiB`/`10MB` accepted as the same.
pub fn parse_size(s: &str) -> Option<usize> {
    let s = s.trim().replace('_', "");
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: usize = digits.parse().ok()?;
    let mult: usize = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(mult)
}

fn valid_host_port(s: &str) -> bool {
    if s.parse::<SocketAddr>().is_ok() {
        return true;
    }
    match s.rsplit_once(':') {
        Some((host, port)) => {
            !host.is_empty()
                && !host.contains(|c: char| c.is_whitespace() || c == '/')
                && port.parse::<u16>().is_ok_and(|p| p != 0)
        }
        None => false,
    }
}

fn default_hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(yaml: &str) -> Vec<String> {
        match Config::from_yaml(yaml, "test") {
            Ok(_) => vec![],
            Err(e) => e.problems.iter().map(ToString::to_string).collect(),
        }
    }

    const MINIMAL: &str = "upstream:\n  maildir: ./outbox\n";

    #[test]
    fn minimal_config_gets_the_documented_defaults() {
        let c = Config::from_yaml(MINIMAL, "test").expect("valid");
        assert_eq!(c.server.listen, vec![DEFAULT_LISTEN.parse().unwrap()]);
        assert_eq!(c.server.limits, Limits::default());
        assert_eq!(
            c.policy.max_external_recipients,
            DEFAULT_MAX_EXTERNAL_RECIPIENTS
        );
        assert_eq!(c.policy.action, Action::Reject);
        assert_eq!(c.policy.visible_headers, VisibleHeaders::default());
        assert_eq!(c.policy.attached_messages, AttachedMessages::Count);
        assert_eq!(c.policy.mime_nesting_limit, DEFAULT_MIME_NESTING_LIMIT);
        // The embedded policy.yaml spells the defaults out.
        let embedded = Config::embedded_default().expect("valid");
        assert_eq!(embedded.policy.visible_headers, VisibleHeaders::default());
        assert_eq!(
            embedded.policy.mime_nesting_limit,
            DEFAULT_MIME_NESTING_LIMIT
        );
        assert_eq!(
            c.metrics.listen,
            Some(DEFAULT_METRICS_LISTEN.parse().unwrap())
        );
    }

    #[test]
    fn errors_name_the_key_and_the_value() {
        let table: &[(&str, &str)] = &[
            (
                "policy:\n  action: shred\n",
                "policy.action: unknown action \"shred\", expected one of reject, bcc, split, monitor, allow",
            ),
            (
                "server:\n  listen: [\"nowhere\"]\n",
                "server.listen[0]: \"nowhere\" is not an IP address",
            ),
            (
                "server:\n  limits:\n    idle_timeout: soon\n",
                "server.limits.idle_timeout: \"soon\" is not a duration",
            ),
            (
                "server:\n  limits:\n    max_message_size: 10Q\n",
                "server.limits.max_message_size: \"10Q\" is not a size",
            ),
            (
                "server:\n  trusted_networks: [\"10.0.0.0/33\"]\n",
                "server.trusted_networks[0]: \"10.0.0.0/33\"",
            ),
            (
                "policy:\n  rules:\n    - name: x\n      action: nuke\n",
                "policy.rules[0].action: unknown action \"nuke\"",
            ),
            (
                "policy:\n  max_external_recipients: many\n",
                "policy.max_external_recipients: \"many\" is not a whole number",
            ),
            (
                "policy:\n  visible_headers: [To, Reply-To]\n",
                "policy.visible_headers: must include Cc",
            ),
            (
                "policy:\n  visible_headers: [To, Cc, Resent-Bcc]\n",
                "policy.visible_headers: Resent-Bcc is always removed before relaying",
            ),
            (
                "policy:\n  attached_messages: sometimes\n",
                "policy.attached_messages: unknown value \"sometimes\", expected one of count, ignore",
            ),
            (
                "policy:\n  mime_nesting_limit: 0\n",
                "policy.mime_nesting_limit: 0 is too small (minimum 1)",
            ),
            (
                "policy:\n  internal_domains: [\"exa mple.org\"]\n",
                "policy.internal_domains[0]",
            ),
            (
                "upstream:\n  address: \"mail.example.org\"\n",
                "upstream.address: \"mail.example.org\" is not host:port",
            ),
            (
                "upstream:\n  maildir: ./o\n  tls: ssl\n",
                "upstream.tls: unknown value \"ssl\", expected one of none, starttls, tls",
            ),
            (
                "server:\n  require_tls: true\n",
                "server.require_tls: true needs server.tls.cert and server.tls.key",
            ),
            (
                "server:\n  tls:\n    cert: /nonexistent.pem\n    key: /nonexistent.key\n",
                "server.tls: /nonexistent.pem",
            ),
            (
                "upstream:\n  maildir: ./o\n  auth: passthrough\n",
                "upstream.auth: needs upstream.address",
            ),
            (
                "upstream:\n  address: \"a:25\"\n  pool_size: some\n",
                "upstream.pool_size: \"some\" is not a whole number",
            ),
            (
                "upstream:\n  address: \"a:25\"\n  pool_idle_time: 0s\n",
                "upstream.pool_idle_time: \"0s\"",
            ),
            (
                "upstream:\n  address: \"a:25\"\n  auth: {username: svc}\n",
                "upstream.auth.password_file: missing",
            ),
            (
                "upstream:\n  address: \"a:25\"\n  recipients: later\n",
                "upstream.recipients: unknown value \"later\", expected lockstep or deferred",
            ),
            (
                "upstream:\n  address: \"a:25\"\n  auth: passthrough\n  recipients: deferred\n",
                "upstream.recipients: deferred needs the guard to deliver on its own later",
            ),
            (
                "server:\n  proxy_protocol: yes\n  proxy_trusted_networks: [\"10.0.0.0/8\"]\n",
                "server.proxy_protocol: \"yes\" is not true or false",
            ),
            (
                "server:\n  proxy_protocol: true\n",
                "server.proxy_trusted_networks: must list the load balancers' networks",
            ),
            (
                "server:\n  proxy_trusted_networks: [\"lb.internal\"]\n",
                "server.proxy_trusted_networks[0]: \"lb.internal\" is not a network",
            ),
        ];
        for (body, expected) in table {
            let yaml = if body.starts_with("upstream:") {
                body.to_string()
            } else {
                format!("{MINIMAL}{body}")
            };
            let got = problems(&yaml);
            assert!(
                got.iter().any(|p| p.starts_with(expected)),
                "for {body:?} expected a problem starting {expected:?}, got {got:?}"
            );
        }
    }

    #[test]
    fn unknown_keys_are_refused_not_ignored() {
        let got = problems(&format!("{MINIMAL}policy:\n  actoin: bcc\n"));
        assert!(got.iter().any(|p| p.contains("actoin")), "{got:?}");
    }

    #[test]
    fn all_problems_are_reported_at_once() {
        let got = problems(&format!(
            "{MINIMAL}policy:\n  action: shred\n  empty_to: nobody\nserver:\n  hostname: \"a b\"\n"
        ));
        assert_eq!(got.len(), 3, "{got:?}");
    }

    #[test]
    fn sizes_and_durations_take_units() {
        assert_eq!(parse_size("10M"), Some(10 << 20));
        assert_eq!(parse_size("512k"), Some(512 << 10));
        assert_eq!(parse_size("10240000"), Some(10_240_000));
        assert_eq!(parse_size("1_000"), Some(1000));
        assert_eq!(parse_size("x"), None);
        let c = Config::from_yaml(
            &format!("{MINIMAL}server:\n  limits:\n    idle_timeout: 5m\n"),
            "t",
        )
        .unwrap();
        assert_eq!(c.server.limits.idle_timeout, Duration::from_secs(300));
    }

    #[test]
    fn upstream_needs_exactly_one_destination() {
        assert!(
            problems("server:\n  hostname: x\n")
                .iter()
                .any(|p| p.starts_with("upstream: no destination"))
        );
        let both = problems("upstream:\n  address: \"a:25\"\n  maildir: ./o\n");
        assert!(both.iter().any(|p| p.contains("not both")), "{both:?}");
    }

    #[test]
    fn proxy_protocol_is_off_by_default_and_names_its_proxies_when_on() {
        let c = Config::from_yaml(MINIMAL, "t").unwrap();
        assert!(!c.server.proxy_protocol);
        assert!(c.server.proxy_trusted_networks.is_empty());
        let c = Config::from_yaml(
            &format!(
                "{MINIMAL}server:\n  proxy_protocol: true\n  proxy_trusted_networks: [\"10.0.0.0/8\", \"fd00::1\"]\n"
            ),
            "t",
        )
        .unwrap();
        assert!(c.server.proxy_protocol);
        assert_eq!(
            c.server.proxy_trusted_networks,
            vec![
                "10.0.0.0/8".parse::<IpNet>().unwrap(),
                "fd00::1/128".parse::<IpNet>().unwrap()
            ]
        );
    }
}
