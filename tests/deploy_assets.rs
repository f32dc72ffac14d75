//! The operations assets under deploy/ against the code they describe:
//! every metric the Grafana dashboard and the alert rules query is one the
//! guard exports (a renamed metric must not silently blank a panel or
//! mute an alert), and the policies shipped for the container image and
//! Kubernetes are valid. The tools' own checks (promtool, hadolint,
//! systemd-analyze, schema validation) run in deploy/check.

use std::collections::BTreeSet;
use std::path::Path;

use bccguard::config::{Config, UpstreamTarget};
use bccguard::metrics::Metrics;

/// Metrics the alert rules may name before the guard exports them (none:
/// every name must be real).
const NOT_YET_EXPORTED: &[&str] = &[];

fn read(rel: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every `bccguard_...` series name in `text`.
fn series_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("bccguard_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.insert(tail[..end].to_string());
        rest = &tail[end..];
    }
    names
}

/// True if the exposition has a sample line for `series` (plain, labelled,
/// or a histogram's `_bucket`/`_sum`/`_count`), or declares it as a gauge
/// that has no sample now (`bccguard_incident_deadline_seconds` while no
/// disclosed incident is open, which a fresh registry never has).
fn exported(exposition: &str, series: &str) -> bool {
    let declared = format!("# TYPE {series} gauge");
    exposition.lines().any(|l| l == declared)
        || exposition.lines().filter(|l| !l.starts_with('#')).any(|l| {
            l.strip_prefix(series)
                .is_some_and(|r| r.starts_with([' ', '{']))
        })
}

#[test]
fn the_dashboard_is_json_and_queries_only_exported_metrics() {
    let text = read("deploy/grafana/bccguard.json");
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("dashboard JSON");
    assert_eq!(dashboard["uid"], "bccguard");
    let exposition = Metrics::new().render();
    let names = series_names(&text);
    for required in [
        "bccguard_messages_total",
        "bccguard_incidents_total",
        "bccguard_visible_external_recipients_bucket",
        "bccguard_relay_duration_seconds_bucket",
        "bccguard_upstream_errors_total",
        "bccguard_sessions_active",
        "bccguard_quarantine_held",
        "bccguard_quarantine_oldest_seconds",
        "bccguard_quarantine_decisions_total",
        "bccguard_incident_deadline_seconds",
    ] {
        assert!(names.contains(required), "the dashboard shows {required}");
    }
    for name in &names {
        assert!(
            exported(&exposition, name),
            "{name} is not exported:\n{exposition}"
        );
    }
}

#[test]
fn the_alert_rules_query_only_exported_metrics() {
    let text = read("deploy/prometheus/alerts.yml");
    let exposition = Metrics::new().render();
    for name in series_names(&text) {
        assert!(
            exported(&exposition, &name) || NOT_YET_EXPORTED.contains(&name.as_str()),
            "{name} is not exported:\n{exposition}"
        );
    }
}

#[test]
fn the_shipped_deployment_policies_are_valid() {
    for rel in [
        "deploy/container/policy.yaml",
        "deploy/kubernetes/policy.yaml",
    ] {
        let c = Config::from_yaml(&read(rel), rel).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            c.metrics.listen.is_some_and(|a| a.ip().is_unspecified()),
            "{rel}: probes and Prometheus reach metrics.listen from outside"
        );
    }
    // Installed as /etc/bccguard/policy.yaml, read-only for the service:
    // every state path must land in /var/lib/bccguard, and a relative one
    // would resolve next to the file. (Kubernetes sets store and spool per
    // pod in the environment.)
    for rel in ["deploy/container/policy.yaml", "deploy/systemd/policy.yaml"] {
        let c = Config::load_file_text(&read(rel), Path::new("/etc/bccguard/policy.yaml"))
            .unwrap_or_else(|e| panic!("{e}"));
        let mut state = vec![
            ("store.path", c.store.path.clone()),
            ("spool.path", c.spool.path.clone()),
            ("incidents.path", c.incidents.path.clone()),
        ];
        if let UpstreamTarget::Maildir(dir) = &c.upstream.target {
            state.push(("upstream.maildir", dir.clone()));
        }
        for (key, path) in state {
            assert!(
                path.starts_with("/var/lib/bccguard/"),
                "{rel}: {key} is {}",
                path.display()
            );
        }
    }
    let k8s = Config::from_yaml(&read("deploy/kubernetes/policy.yaml"), "k8s").unwrap();
    assert!(
        k8s.server.proxy_protocol,
        "behind the Service's load balancer"
    );
}
