//! `policy.yaml` -> a validated [`Config`].
//!
//! The file is layered with environment overrides in the `config` crate's
//! convention (`BCCGUARD__POLICY__ACTION=monitor` sets `policy.action`), then
//! deserialised into loosely typed `Raw*` structs (unknown keys are errors:
//! a typo must not silently fall back to a default) and validated into the
//! typed [`Config`]. Validation collects every problem, each naming its key
//! path and the bad value, so `bccguard check` can list them all at once.
//!
//! Every limit has a named default; the policy reference
//! (`docs/policy.md`) is checked against the keys these files accept. One
//! file per section: `server.rs`, `upstream.rs`, `spool.rs`, `policy.rs`
//! and `workflow.rs` (`incidents`, `store`, `quarantine`); this file holds
//! what they share: the loader, the validator's helpers and the error
//! types.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;

use crate::templates::ReplyLanguage;
use serde::Deserialize;

use crate::policy::{
    Action, AttachedMessages, DEFAULT_MIME_NESTING_LIMIT, DomainSet, EmptyTo, Glob, Pattern,
    Policy, RecipientConditions, Rule, Rules, VisibleHeaders,
};

pub mod authorities;
mod console;
mod groups;
mod policy;
mod server;
mod spool;
mod upstream;
mod url;
mod workflow;

use self::policy::RawPolicy;
pub use console::{ConsoleAuth, ConsoleConfig, DEFAULT_HEADER_NAME, DEFAULT_SESSION_TTL};
pub use groups::{DEFAULT_GROUP_MAX_AGE, GroupsConfig};
pub use server::*;
pub use spool::*;
pub use upstream::*;
pub use url::{Url, UrlError};

pub use workflow::{
    Controller, DEFAULT_DIGEST_AFTER, DEFAULT_DIGEST_INTERVAL, DEFAULT_NOTICE_MAX_AGE,
    DEFAULT_NOTICE_RETRY_MAX, DEFAULT_NOTICE_RETRY_MIN, DEFAULT_QUARANTINE_RETENTION,
    DEFAULT_STORE_PATH, DEFAULT_WEBHOOK_TIMEOUT, IncidentsConfig, NoticeSmtp, QuarantineConfig,
    StoreConfig,
};

/// The commented default shipped at the repository root and embedded in the
/// binary, so `bccguard serve` works out of the box.
pub const DEFAULT_POLICY_YAML: &str = include_str!("../policy.yaml");

/// Default `/metrics` listener: loopback, a port of its own.
pub const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9925";
/// Visible external recipients allowed before the action triggers.
pub use crate::policy::DEFAULT_MAX_EXTERNAL_RECIPIENTS;
/// Default incident log.
pub const DEFAULT_INCIDENTS_PATH: &str = "./incidents.jsonl";
/// `check` warns of an IPv4 trusted network wider than this prefix (a /16
/// is 65,536 hosts, more than an office has).
pub const WIDE_IPV4_PREFIX: u8 = 16;
/// The same for IPv6: a /48 is a whole site's allocation (RFC 6177).
pub const WIDE_IPV6_PREFIX: u8 = 48;

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
    /// `policy.reply_language`: the languages of the clerk-facing policy
    /// replies. Beside the policy, not in it: it words a decision, it does
    /// not take part in one.
    pub reply_language: ReplyLanguage,
    /// `groups.*`: approved open groups.
    pub groups: GroupsConfig,
    /// `console.*`: the DPO console.
    pub console: ConsoleConfig,
}

impl Config {
    /// How the policy replies are worded (templates and languages).
    pub fn words(&self) -> crate::smtp::reply::Words<'_> {
        crate::smtp::reply::Words {
            templates: &self.incidents.templates,
            language: self.reply_language,
        }
    }
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
    groups: groups::RawGroups,
    console: console::RawConsole,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawMetrics {
    listen: Option<String>,
}

impl Config {
    /// Loads the configuration from YAML text plus `BCCGUARD__*` environment
    /// overrides. `source_name` names the origin in error messages.
    pub fn load(yaml: &str, source_name: &str) -> Result<Config, ConfigError> {
        Self::load_with_env(yaml, source_name, None)
    }

    /// [`Config::load`] for the text of the policy file at `file`: relative
    /// paths in it resolve against the file's directory (as Prometheus and
    /// nginx do), so every command that names the same file works on the
    /// same database, spool and log wherever it is started.
    pub fn load_file_text(yaml: &str, file: &Path) -> Result<Config, ConfigError> {
        let dir = file.parent().unwrap_or(Path::new(""));
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        // Absolute, so a later chdir (none today) or a log line cannot be
        // misread; lexical, so a symlinked /etc/bccguard stays as named.
        let base = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
        Self::load_with_env(yaml, &file.display().to_string(), Some(base))
    }

    fn load_with_env(
        yaml: &str,
        source_name: &str,
        base: Option<PathBuf>,
    ) -> Result<Config, ConfigError> {
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
        Self::load_layered(yaml, source_name, Some(env), base)
    }

    /// Like [`Config::load`] without environment overrides (tests, explain).
    pub fn from_yaml(yaml: &str, source_name: &str) -> Result<Config, ConfigError> {
        Self::load_layered(yaml, source_name, None, None)
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
        w.extend(self.wide_networks());
        w.extend(self.untold_measures());
        for s in self.policy.rules.shadowed() {
            let name = |i: usize| &self.policy.rules[i].name;
            w.push(format!(
                "policy.rules[{}]: rule {:?} can never match: the earlier rule {:?} (policy.rules[{}]) matches every message it matches (first match wins)",
                s.rule,
                name(s.rule),
                name(s.by),
                s.by
            ));
        }
        if !self.quarantine.sender_release.is_empty()
            && (self.console.public_url.is_none() || self.console.listen.is_none())
        {
            w.push("quarantine.sender_release is set, but the console has no public_url (or no listen): the hold notices carry no link".into());
        }
        if self.console.listen.is_some_and(|a| !a.ip().is_loopback()) && self.console.tls.is_none()
        {
            w.push("console.listen is not loopback and console.tls_cert is unset: passwords and held mail cross the network in plaintext unless a TLS proxy is in front".into());
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

    /// Trusted networks wider than [`WIDE_IPV4_PREFIX`] / [`WIDE_IPV6_PREFIX`]
    /// (loopback aside): an office is rarely bigger, and `0.0.0.0/0` makes the guard an open
    /// relay (RFC 5321 7.1: relaying for anyone is how spam gets sent in
    /// the organisation's name).
    fn wide_networks(&self) -> Vec<String> {
        let lists = [
            (
                "server.trusted_networks",
                &self.server.trusted_networks,
                "every client in it may relay without a login",
            ),
            (
                "server.proxy_trusted_networks",
                &self.server.proxy_trusted_networks,
                "every host in it may claim any client address with a PROXY header",
            ),
        ];
        let mut w = Vec::new();
        for (key, nets, what) in lists {
            for (i, net) in nets.iter().enumerate() {
                let (limit, family) = match net {
                    IpNet::V4(_) => (WIDE_IPV4_PREFIX, "IPv4"),
                    IpNet::V6(_) => (WIDE_IPV6_PREFIX, "IPv6"),
                };
                // Loopback cannot be reached from another host.
                let loopback = net.network().is_loopback() && net.broadcast().is_loopback();
                if net.prefix_len() < limit && !loopback {
                    let open = if net.prefix_len() == 0 {
                        " (the whole internet: an open relay)"
                    } else {
                        ""
                    };
                    w.push(format!(
                        "{key}[{i}]: {net} is wider than a /{limit} ({family}){open}: {what}; name the office's own networks"
                    ));
                }
            }
        }
        w
    }

    /// A hold or a monitor with nobody to tell: held mail waits for a
    /// decision nobody hears of, and a disclosure's 72 hours (GDPR Art. 33)
    /// run out in the register unseen.
    fn untold_measures(&self) -> Vec<String> {
        if !self.incidents.notify.is_empty() {
            return Vec::new();
        }
        let p = &self.policy;
        let mut w = Vec::new();
        let measures = std::iter::once(("policy.action".to_string(), p.action)).chain(
            p.rules.iter().enumerate().filter_map(|(i, r)| {
                r.action
                    .map(|a| (format!("policy.rules[{i}].action ({})", r.name), a))
            }),
        );
        for (key, action) in measures {
            let why = match action {
                Action::Hold => "held mail waits for a decision and nobody is told of it",
                Action::Monitor => {
                    "open lists go out and nobody is told, while the 72 hours of GDPR Art. 33 run"
                }
                _ => continue,
            };
            w.push(format!(
                "incidents.notify is empty while {key} is {action}: {why}; name the DPO's address in incidents.notify"
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
        base: Option<PathBuf>,
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
            .map_err(|e| fail(String::new(), syntax_error(yaml, &e.to_string())))?;
        let raw: RawConfig = layered.try_deserialize().map_err(|e| {
            let (key, message) = split_config_error(&e);
            fail(key, message)
        })?;
        let mut v = Validator {
            base,
            ..Validator::default()
        };
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

/// A YAML syntax error as an editor wants it: "line L, column C: what",
/// then the line itself with a caret under the column. The YAML parser
/// says "what at byte B line L column C"; anything else stays as it is.
fn syntax_error(yaml: &str, text: &str) -> String {
    let located = text.rsplit_once(" at byte ").and_then(|(what, at)| {
        let mut words = at.split_whitespace();
        let (_, l, line, c, col) = (
            words.next()?,
            words.next()?,
            words.next()?.parse::<usize>().ok()?,
            words.next()?,
            words.next()?.parse::<usize>().ok()?,
        );
        (l == "line" && c == "column").then_some((what, line, col))
    });
    let Some((what, line, col)) = located else {
        return text.to_string();
    };
    let mut out = format!("line {line}, column {col}: {what}");
    if let Some(shown) = yaml.lines().nth(line.saturating_sub(1)) {
        let width = line.to_string().len();
        let pad: String = shown
            .chars()
            .take(col.saturating_sub(1))
            .map(|c| if c == '\t' { '\t' } else { ' ' })
            .collect();
        out.push_str(&format!(
            "\n    {line} | {shown}\n    {:width$} | {pad}^",
            ""
        ));
    }
    out
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
    /// The directory of the policy file: relative paths in it (and the
    /// relative defaults, `./bccguard.db` and friends) mean a place next to
    /// the file, not wherever the command happens to be run from, so the
    /// server and a DPO's `bccguard quarantine list` from their home
    /// directory open the same database. `None` (the embedded default, a
    /// test's text): the current directory.
    base: Option<PathBuf>,
}

impl Validator {
    /// A path from policy.yaml, resolved against the policy file's
    /// directory when it is relative.
    fn path(&self, raw: impl Into<PathBuf>) -> PathBuf {
        let raw = raw.into();
        match &self.base {
            // `./bccguard.db` next to /etc/bccguard/policy.yaml is
            // /etc/bccguard/bccguard.db, not /etc/bccguard/./bccguard.db.
            Some(base) if raw.is_relative() && !raw.as_os_str().is_empty() => raw
                .components()
                .filter(|c| *c != std::path::Component::CurDir)
                .fold(base.clone(), |p, c| p.join(c)),
            _ => raw,
        }
    }

    fn bad(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem {
            key: key.into(),
            message: message.into(),
        });
    }

    /// One of a fixed set of words (`choices`, in the order the error lists
    /// them); absent: `default`. Anything else is a problem naming the key
    /// and every choice, and `default` stands in.
    fn one_of<T: Copy>(
        &mut self,
        key: &str,
        value: Option<&str>,
        choices: &[(&str, T)],
        default: T,
    ) -> T {
        let Some(value) = value else { return default };
        if let Some((_, v)) = choices.iter().find(|(name, _)| *name == value) {
            return *v;
        }
        let names: Vec<&str> = choices.iter().map(|(name, _)| *name).collect();
        self.bad(
            key,
            format!(
                "unknown value {value:?}, expected one of {}",
                names.join(", ")
            ),
        );
        default
    }

    fn config(&mut self, raw: RawConfig) -> Option<Config> {
        let server = self.server(raw.server);
        let upstream = self.upstream(raw.upstream, &server.hostname);
        let metrics = self.metrics(raw.metrics);
        let incidents = self.incidents(raw.incidents, &server.hostname);
        let store = self.store(raw.store);
        let quarantine = self.quarantine(raw.quarantine);
        let reply_language = self.reply_language(&raw.policy);
        let groups = self.groups(raw.groups);
        let console = self.console(raw.console);
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
            reply_language,
            groups,
            console,
        })
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

    fn metrics(&mut self, raw: RawMetrics) -> MetricsConfig {
        let listen = raw.listen.unwrap_or_else(|| DEFAULT_METRICS_LISTEN.into());
        if listen.is_empty() {
            return MetricsConfig { listen: None };
        }
        MetricsConfig {
            listen: self.socket_addr("metrics.listen", &listen),
        }
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

#[cfg(test)]
mod tests;
