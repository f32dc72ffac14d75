//! The Prometheus registry: every counter, gauge and histogram the guard
//! keeps. A leaf every layer may count into; the relay serves it over HTTP
//! ([`crate::relay::http`]).
//!
//! Metric names and labels are a public interface (dashboards and alerts
//! depend on them): `bccguard_messages_total{action}`,
//! `bccguard_incidents_total{action}`, `bccguard_visible_external_recipients`,
//! `bccguard_sessions_active`, `bccguard_upstream_errors_total{kind}`,
//! `bccguard_relay_duration_seconds`, `bccguard_group_allowed_total{group}`,
//! `bccguard_quarantine_held`, `bccguard_quarantine_oldest_seconds`,
//! `bccguard_quarantine_decisions_total{how,by}`,
//! `bccguard_incident_deadline_seconds`, `bccguard_console_logins_total{result}`.
//! Every label value is pre-registered so
//! series exist at 0 before the first event (alerts on `increase()` work).
//!
//! The quarantine and deadline metrics describe the store, not this
//! process: releases and drops happen in the CLI, another process. They
//! are set from the register at each scrape ([`crate::incident::tally`]);
//! this module only holds the values.

use std::sync::{Arc, Mutex};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::TypedMetric;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::smtp::refusal::Reason;

/// `action` label values of `bccguard_messages_total`.
pub const MESSAGE_ACTIONS: [&str; 7] =
    ["pass", "reject", "bcc", "split", "monitor", "allow", "hold"];
/// `action` label values of `bccguard_incidents_total` (`allow`: an allow
/// rule over the threshold, a disclosed incident).
pub const INCIDENT_ACTIONS: [&str; 6] = ["reject", "bcc", "split", "monitor", "allow", "hold"];
/// `kind` label values of `bccguard_notices_total`.
pub const NOTICE_KINDS: [&str; 3] = ["dpo", "sender", "webhook"];
/// `result` label values of `bccguard_notices_total`.
pub const NOTICE_RESULTS: [&str; 3] = ["sent", "retry", "failed"];
/// `kind` label values of `bccguard_upstream_errors_total`.
pub const UPSTREAM_ERROR_KINDS: [&str; 8] = [
    "connect", "timeout", "closed", "protocol", "refused", "tls", "tempfail", "maildir",
];
/// `reason` label values of `bccguard_refused_total` (input the guard refused).
pub const REFUSAL_REASONS: [&str; 17] = {
    let mut out = [""; Reason::ALL.len()];
    let mut i = 0;
    while i < out.len() {
        out[i] = Reason::ALL[i].as_str();
        i += 1;
    }
    out
};

/// `(how, by)` label values of `bccguard_quarantine_decisions_total`:
/// released as bcc, split or original, or dropped, by someone with the
/// CLI or in the console, or by the sender from its link (never as the
/// original); or expired after `quarantine.retention`, by the
/// guard's expiry.
pub const QUARANTINE_DECISIONS: [(&str, &str); 12] = [
    ("bcc", "cli"),
    ("split", "cli"),
    ("original", "cli"),
    ("dropped", "cli"),
    ("bcc", "console"),
    ("split", "console"),
    ("original", "console"),
    ("dropped", "console"),
    ("bcc", "sender"),
    ("split", "sender"),
    ("dropped", "sender"),
    ("expired", "expiry"),
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabel {
    how: &'static str,
    by: &'static str,
}

/// `bccguard_incident_deadline_seconds`: a gauge with a sample only while
/// a disclosed incident is open, so that "no deadline" is no number an
/// alert on `< 24h` (or a dashboard's minimum) could mistake for one.
#[derive(Debug, Default)]
struct Deadline(Mutex<Option<i64>>);

impl Deadline {
    const NAME: &'static str = "bccguard_incident_deadline_seconds";
    const HELP: &'static str = "Seconds left until the GDPR Art. 33 deadline (72 hours) of the earliest open disclosed incident, negative when overdue; no sample while none is open.";
}

impl Collector for Deadline {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let left = *self.0.lock().unwrap_or_else(|p| p.into_inner());
        // The HELP and TYPE lines always: the name is known even without a value.
        let metric =
            encoder.encode_descriptor(Self::NAME, Self::HELP, None, ConstGauge::<i64>::TYPE)?;
        match left {
            Some(left) => ConstGauge::new(left).encode(metric),
            None => Ok(()),
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionLabel {
    action: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

/// All metrics of one guard process.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    messages: Family<ActionLabel, Counter>,
    incidents: Family<ActionLabel, Counter>,
    visible_external: Histogram,
    sessions_active: Gauge,
    sessions: Counter,
    upstream_errors: Family<KindLabel, Counter>,
    refused: Family<ReasonLabel, Counter>,
    relay_duration: Histogram,
    incident_write_errors: Counter,
    spool_messages: Gauge,
    config_reloads: Counter,
    config_reload_failures: Counter,
    spool_deliveries: Family<ResultLabel, Counter>,
    notices: Family<NoticeLabel, Counter>,
    group_allowed: Family<GroupLabel, Counter>,
    quarantine_held: Gauge,
    quarantine_oldest: Gauge,
    decisions: Family<DecisionLabel, Counter>,
    /// Serialises [`Metrics::decisions_seen`]: two scrapes at once must
    /// not both add the same difference.
    decisions_sync: Mutex<()>,
    deadline: Arc<Deadline>,
    console_logins: Family<ResultLabel, Counter>,
}

/// `result` label values of `bccguard_console_logins_total`: `ok`,
/// `failed` (wrong user or password) and `throttled` (refused before the
/// password was checked).
pub const CONSOLE_LOGIN_RESULTS: [&str; 3] = ["ok", "failed", "throttled"];

/// `group`: a name the DPO chose; one series per approved group, so the
/// label's values are as many as the groups (bounded by the register).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GroupLabel {
    group: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NoticeLabel {
    kind: &'static str,
    result: &'static str,
}

/// `result` label values of `bccguard_spool_deliveries_total`.
pub const SPOOL_RESULTS: [&str; 3] = ["delivered", "retry", "bounced"];

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with every metric registered and every label at zero.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let messages = Family::<ActionLabel, Counter>::default();
        let incidents = Family::<ActionLabel, Counter>::default();
        // Buckets around typical thresholds (5..25) and the mass-mail tail.
        let visible_external = Histogram::new([
            0.0, 1.0, 2.0, 5.0, 10.0, 15.0, 25.0, 50.0, 100.0, 500.0, 1000.0, 5000.0,
        ]);
        let sessions_active = Gauge::default();
        let sessions = Counter::default();
        let upstream_errors = Family::<KindLabel, Counter>::default();
        let refused = Family::<ReasonLabel, Counter>::default();
        let relay_duration = Histogram::new([
            0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            60.0,
        ]);
        let incident_write_errors = Counter::default();
        let spool_messages = Gauge::default();
        let config_reloads = Counter::default();
        let config_reload_failures = Counter::default();
        registry.register(
            "bccguard_config_reloads",
            "policy.yaml reloads put in force",
            config_reloads.clone(),
        );
        registry.register(
            "bccguard_config_reload_failures",
            "policy.yaml reloads refused (the running policy stayed in force)",
            config_reload_failures.clone(),
        );
        let spool_deliveries = Family::<ResultLabel, Counter>::default();
        for result in SPOOL_RESULTS {
            let _ = spool_deliveries.get_or_create(&ResultLabel { result });
        }
        let notices = Family::<NoticeLabel, Counter>::default();
        for kind in NOTICE_KINDS {
            for result in NOTICE_RESULTS {
                let _ = notices.get_or_create(&NoticeLabel { kind, result });
            }
        }
        registry.register(
            "bccguard_notices",
            "Notices about incidents (mails to the DPO and senders, webhook posts), by kind and result",
            notices.clone(),
        );
        for action in MESSAGE_ACTIONS {
            let _ = messages.get_or_create(&ActionLabel { action });
        }
        for action in INCIDENT_ACTIONS {
            let _ = incidents.get_or_create(&ActionLabel { action });
        }
        for kind in UPSTREAM_ERROR_KINDS {
            let _ = upstream_errors.get_or_create(&KindLabel { kind });
        }
        for reason in REFUSAL_REASONS {
            let _ = refused.get_or_create(&ReasonLabel { reason });
        }
        registry.register(
            "bccguard_messages",
            "Messages decided, by action (pass = below the threshold)",
            messages.clone(),
        );
        registry.register(
            "bccguard_incidents",
            "Incidents recorded, by action",
            incidents.clone(),
        );
        registry.register(
            "bccguard_visible_external_recipients",
            "Distinct external addresses visible to the recipients per message",
            visible_external.clone(),
        );
        registry.register(
            "bccguard_sessions_active",
            "Client sessions open now",
            sessions_active.clone(),
        );
        registry.register(
            "bccguard_sessions",
            "Client sessions accepted",
            sessions.clone(),
        );
        registry.register(
            "bccguard_upstream_errors",
            "Failures talking to the upstream server, by kind",
            upstream_errors.clone(),
        );
        registry.register(
            "bccguard_refused",
            "Client input refused by the guard's own limits, by reason",
            refused.clone(),
        );
        registry.register(
            "bccguard_relay_duration_seconds",
            "From the client's final dot to the guard's final reply (decision plus upstream delivery)",
            relay_duration.clone(),
        );
        registry.register(
            "bccguard_incident_write_errors",
            "Incident records that could not be written",
            incident_write_errors.clone(),
        );
        registry.register(
            "bccguard_spool_messages",
            "Split copies the guard holds for retry (accepted with 250, not yet delivered)",
            spool_messages.clone(),
        );
        let group_allowed = Family::<GroupLabel, Counter>::default();
        registry.register(
            "bccguard_group_allowed",
            "Mails over a threshold sent unchanged because an approved open group holds every visible external address, by group",
            group_allowed.clone(),
        );
        registry.register(
            "bccguard_spool_deliveries",
            "Delivery attempts of spooled copies, by result",
            spool_deliveries.clone(),
        );
        let quarantine_held = Gauge::default();
        registry.register(
            "bccguard_quarantine_held",
            "Held messages waiting for a decision (held, or being released) in the store",
            quarantine_held.clone(),
        );
        let quarantine_oldest = Gauge::default();
        registry.register(
            "bccguard_quarantine_oldest_seconds",
            "Age of the held message waiting longest (0 when none waits)",
            quarantine_oldest.clone(),
        );
        let decisions = Family::<DecisionLabel, Counter>::default();
        for (how, by) in QUARANTINE_DECISIONS {
            let _ = decisions.get_or_create(&DecisionLabel { how, by });
        }
        registry.register(
            "bccguard_quarantine_decisions",
            "Holds ended, as the store records them (from any process): released (how: bcc, split, original), dropped or expired",
            decisions.clone(),
        );
        let deadline = Arc::new(Deadline::default());
        registry.register_collector(Box::new(deadline.clone()));
        let console_logins = Family::<ResultLabel, Counter>::default();
        for result in CONSOLE_LOGIN_RESULTS {
            let _ = console_logins.get_or_create(&ResultLabel { result });
        }
        registry.register(
            "bccguard_console_logins",
            "Login attempts at the DPO console, by result (ok, failed, throttled)",
            console_logins.clone(),
        );
        Self {
            registry,
            messages,
            incidents,
            visible_external,
            sessions_active,
            sessions,
            upstream_errors,
            refused,
            relay_duration,
            incident_write_errors,
            spool_messages,
            spool_deliveries,
            config_reloads,
            config_reload_failures,
            notices,
            group_allowed,
            quarantine_held,
            quarantine_oldest,
            decisions,
            decisions_sync: Mutex::new(()),
            deadline,
            console_logins,
        }
    }

    /// What waits in the quarantine: how many, and the longest wait.
    pub fn quarantine_waiting(&self, held: u64, oldest_seconds: i64) {
        self.quarantine_held
            .set(i64::try_from(held).unwrap_or(i64::MAX));
        self.quarantine_oldest.set(oldest_seconds.max(0));
    }

    /// The store's count of one kind of decision (`how`, `by` from
    /// [`QUARANTINE_DECISIONS`]): the counter rises to it and never falls,
    /// even if the count does (another database file put in place).
    pub fn decisions_seen(&self, how: &'static str, by: &'static str, total: u64) {
        let _one_at_a_time = self
            .decisions_sync
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let counter = self.decisions.get_or_create(&DecisionLabel { how, by });
        let seen = counter.get();
        if total > seen {
            counter.inc_by(total - seen);
        }
    }

    /// Seconds left of the earliest open disclosed incident's Art. 33
    /// deadline; `None`: none is open (the gauge has no sample).
    pub fn incident_deadline(&self, left: Option<i64>) {
        *self.deadline.0.lock().unwrap_or_else(|p| p.into_inner()) = left;
    }

    /// The approved groups now in force: each one's series exists (at 0
    /// until its first mail).
    pub fn groups_known<'a>(&self, names: impl IntoIterator<Item = &'a str>) {
        for name in names {
            let _ = self.group_allowed.get_or_create(&GroupLabel {
                group: name.to_string(),
            });
        }
    }

    /// One mail an approved group let pass.
    pub fn group_allowed(&self, group: &str) {
        self.group_allowed
            .get_or_create(&GroupLabel {
                group: group.to_string(),
            })
            .inc();
    }

    /// One notice attempt (`kind` from [`NOTICE_KINDS`], `result` from
    /// [`NOTICE_RESULTS`]).
    pub fn notice(&self, kind: &'static str, result: &'static str) {
        self.notices
            .get_or_create(&NoticeLabel { kind, result })
            .inc();
    }

    /// One login attempt at the console (`result` from
    /// [`CONSOLE_LOGIN_RESULTS`]).
    pub fn console_login(&self, result: &'static str) {
        self.console_logins
            .get_or_create(&ResultLabel { result })
            .inc();
    }

    /// One reload attempt of policy.yaml.
    pub fn config_reloaded(&self, ok: bool) {
        if ok {
            self.config_reloads.inc();
        } else {
            self.config_reload_failures.inc();
        }
    }

    /// Entries in the spool after a scan.
    pub fn spool_size(&self, n: usize) {
        self.spool_messages.set(n as i64);
    }

    /// One spool delivery attempt (`result` from [`SPOOL_RESULTS`]).
    pub fn spool_delivery(&self, result: &'static str) {
        self.spool_deliveries
            .get_or_create(&ResultLabel { result })
            .inc();
    }

    /// One decided message (`action` from [`MESSAGE_ACTIONS`]).
    pub fn message(&self, action: &'static str, visible_external: usize) {
        self.messages.get_or_create(&ActionLabel { action }).inc();
        self.visible_external.observe(visible_external as f64);
    }

    /// One incident recorded.
    pub fn incident(&self, action: &'static str) {
        self.incidents.get_or_create(&ActionLabel { action }).inc();
    }

    /// One upstream failure (`kind` from [`UPSTREAM_ERROR_KINDS`]).
    pub fn upstream_error(&self, kind: &'static str) {
        self.upstream_errors
            .get_or_create(&KindLabel { kind })
            .inc();
    }

    /// One refusal by a guard limit.
    pub fn refused(&self, reason: Reason) {
        let reason = reason.as_str();
        self.refused.get_or_create(&ReasonLabel { reason }).inc();
    }

    /// Relay duration of one message.
    pub fn relay_duration(&self, seconds: f64) {
        self.relay_duration.observe(seconds);
    }

    /// An incident record that could not be written.
    pub fn incident_write_error(&self) {
        self.incident_write_errors.inc();
    }

    /// A session started; the returned guard ends it when dropped.
    pub fn session_started(self: &Arc<Self>) -> SessionGauge {
        self.sessions.inc();
        self.sessions_active.inc();
        SessionGauge(self.clone())
    }

    /// Panics unless the exposition has each of `lines` as a whole line.
    #[cfg(test)]
    pub(crate) fn assert_lines(&self, lines: &[&str]) {
        let text = self.render();
        for line in lines {
            assert!(
                text.lines().any(|l| l == *line),
                "missing {line:?} in\n{text}"
            );
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Keeps `bccguard_sessions_active` right however a session ends.
#[derive(Debug)]
pub struct SessionGauge(Arc<Metrics>);

impl Drop for SessionGauge {
    fn drop(&mut self) {
        self.0.sessions_active.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposes_the_documented_names_with_zeroed_labels() {
        let m = Arc::new(Metrics::new());
        m.message("pass", 3);
        let _g = m.session_started();
        let text = m.render();
        for needle in [
            "bccguard_messages_total{action=\"pass\"} 1",
            "bccguard_messages_total{action=\"split\"} 0",
            "bccguard_incidents_total{action=\"monitor\"} 0",
            "bccguard_visible_external_recipients_bucket",
            "bccguard_sessions_active 1",
            "bccguard_upstream_errors_total{kind=\"connect\"} 0",
            "bccguard_relay_duration_seconds_bucket",
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
        drop(_g);
        assert!(m.render().contains("bccguard_sessions_active 0"));
    }

    #[test]
    fn the_quarantine_metrics_follow_the_store_and_decisions_never_fall() {
        let m = Metrics::new();
        let bcc = "bccguard_quarantine_decisions_total{how=\"bcc\",by=\"cli\"}";
        m.assert_lines(&[
            "bccguard_quarantine_held 0",
            "bccguard_quarantine_oldest_seconds 0",
            &format!("{bcc} 0"),
            "bccguard_quarantine_decisions_total{how=\"expired\",by=\"expiry\"} 0",
        ]);
        m.quarantine_waiting(2, 90);
        m.decisions_seen("bcc", "cli", 3);
        m.decisions_seen("bcc", "cli", 2);
        m.decisions_seen("dropped", "cli", 1);
        m.assert_lines(&[
            "bccguard_quarantine_held 2",
            "bccguard_quarantine_oldest_seconds 90",
            &format!("{bcc} 3"),
            "bccguard_quarantine_decisions_total{how=\"dropped\",by=\"cli\"} 1",
        ]);
        m.decisions_seen("bcc", "cli", 5);
        // A clock running behind the held time: no negative age.
        m.quarantine_waiting(1, -3);
        m.assert_lines(&[&format!("{bcc} 5"), "bccguard_quarantine_oldest_seconds 0"]);
    }

    #[test]
    fn the_deadline_has_a_sample_only_while_an_incident_is_open() {
        let m = Metrics::new();
        let declared = "# TYPE bccguard_incident_deadline_seconds gauge\n";
        let sample = |text: &str| {
            text.lines()
                .find(|l| l.starts_with("bccguard_incident_deadline_seconds"))
                .map(str::to_string)
        };
        let text = m.render();
        assert!(text.contains(declared), "{text}");
        assert_eq!(sample(&text), None);
        m.incident_deadline(Some(-5));
        assert_eq!(
            sample(&m.render()).as_deref(),
            Some("bccguard_incident_deadline_seconds -5")
        );
        m.incident_deadline(None);
        let text = m.render();
        assert!(text.contains(declared) && sample(&text).is_none(), "{text}");
    }
}
