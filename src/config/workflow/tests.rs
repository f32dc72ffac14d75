//! Tests of the incident-workflow sections of policy.yaml: what loads and
//! what is refused, with which message.

use crate::config::Config;

const MINIMAL: &str = "upstream:\n  maildir: ./outbox\n";

fn problems(extra: &str) -> Vec<String> {
    match Config::from_yaml(&format!("{MINIMAL}{extra}"), "t") {
        Ok(_) => vec![],
        Err(e) => e.problems.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn defaults_are_the_documented_ones() {
    let c = Config::from_yaml(MINIMAL, "t").unwrap();
    let i = &c.incidents;
    assert!(i.notify.is_empty() && i.webhook.is_none() && i.smtp.is_none());
    assert_eq!(i.digest_after, super::DEFAULT_DIGEST_AFTER);
    assert_eq!(i.sender_notice, [crate::policy::Action::Hold]);
    assert_eq!(
        i.languages,
        [crate::templates::Lang::De, crate::templates::Lang::En]
    );
    assert!(i.from.starts_with("bccguard@"));
    assert_eq!(
        c.store.path,
        std::path::Path::new(super::DEFAULT_STORE_PATH)
    );
    assert_eq!(c.quarantine.retention, super::DEFAULT_QUARANTINE_RETENTION);
    assert_eq!(
        (
            i.notice_retry_min,
            i.notice_retry_max,
            i.notice_max_age,
            i.webhook_timeout
        ),
        (
            super::DEFAULT_NOTICE_RETRY_MIN,
            super::DEFAULT_NOTICE_RETRY_MAX,
            super::DEFAULT_NOTICE_MAX_AGE,
            super::DEFAULT_WEBHOOK_TIMEOUT
        )
    );
}

#[test]
fn the_notice_timings_take_durations() {
    let c = Config::from_yaml(
            &format!(
                "{MINIMAL}incidents:\n  notice_retry_min: 1s\n  notice_retry_max: 1s\n  notice_max_age: 2h\n  webhook_timeout: 500ms\n"
            ),
            "t",
        )
        .unwrap();
    let i = &c.incidents;
    let secs = std::time::Duration::from_secs;
    assert_eq!(
        (i.notice_retry_min, i.notice_retry_max, i.notice_max_age),
        (secs(1), secs(1), secs(7200)),
        "retry_min == retry_max is a fixed interval"
    );
    assert_eq!(i.webhook_timeout, std::time::Duration::from_millis(500));
}

/// A max age below the first retry is allowed (no retries wanted) but
/// `bccguard check` says what it means.
#[test]
fn a_max_age_below_the_first_retry_is_warned_about() {
    let load = |keys: &str| {
        Config::from_yaml(&format!("{MINIMAL}incidents:\n{keys}"), "t")
            .unwrap()
            .warnings()
    };
    let w = load("  notice_retry_min: 1m\n  notice_max_age: 30s\n");
    assert!(
        w.iter()
            .any(|w| w.starts_with("incidents.notice_max_age (30s)")
                && w.contains("given up without a retry")),
        "{w:?}"
    );
    let w = load("  notice_retry_min: 30s\n  notice_max_age: 1m\n");
    assert!(!w.iter().any(|w| w.contains("notice_max_age")), "{w:?}");
}

#[test]
fn errors_name_the_key_and_the_value() {
    let table: &[(&str, &str)] = &[
        (
            "incidents:\n  notify: [\"dpo\"]\n",
            "incidents.notify[0]: \"dpo\" is not an e-mail address",
        ),
        (
            "incidents:\n  from: \"x y\"\n",
            "incidents.from: \"x y\" is not an e-mail address",
        ),
        (
            "incidents:\n  sender_notice: [reject]\n",
            "incidents.sender_notice[0]: \"reject\": senders are told only of hold, bcc or split",
        ),
        (
            "incidents:\n  languages: [fr]\n",
            "incidents.languages[0]: unknown language \"fr\"",
        ),
        (
            "incidents:\n  authority: XY\n",
            "incidents.authority: unknown code \"XY\", expected one of BW, BY",
        ),
        (
            "incidents:\n  webhook: \"ftp://x\"\n",
            "incidents.webhook: \"ftp://x\": must start with http:// or https://",
        ),
        (
            "incidents:\n  smtp:\n    address: \"mail\"\n",
            "incidents.smtp.address: \"mail\" is not host:port",
        ),
        (
            "incidents:\n  smtp:\n    address: \"m:25\"\n    username: u\n",
            "incidents.smtp.password_file: missing",
        ),
        (
            "incidents:\n  templates: /nonexistent-bccguard\n",
            "incidents.templates: /nonexistent-bccguard",
        ),
        (
            "incidents:\n  digest_after: 0\n",
            "incidents.digest_after: 0 is too small",
        ),
        (
            "incidents:\n  notice_retry_min: 0s\n",
            "incidents.notice_retry_min: \"0s\" must be longer than zero",
        ),
        (
            "incidents:\n  notice_retry_max: -1h\n",
            "incidents.notice_retry_max: \"-1h\" is not a duration",
        ),
        (
            "incidents:\n  notice_retry_min: 2h\n",
            "incidents.notice_retry_max: must not be shorter than incidents.notice_retry_min",
        ),
        (
            "incidents:\n  notice_retry_min: 10s\n  notice_retry_max: 5s\n",
            "incidents.notice_retry_max: must not be shorter than incidents.notice_retry_min",
        ),
        (
            "incidents:\n  notice_max_age: 0d\n",
            "incidents.notice_max_age: \"0d\" must be longer than zero",
        ),
        (
            "incidents:\n  webhook_ca: /nonexistent.pem\n",
            "incidents.webhook_ca: /nonexistent.pem",
        ),
        (
            "incidents:\n  webhook_timeout: soon\n",
            "incidents.webhook_timeout: \"soon\" is not a duration",
        ),
        (
            "incidents:\n  webhook_timeout: 0\n",
            "incidents.webhook_timeout: \"0\" must be longer than zero",
        ),
        (
            "quarantine:\n  retention: soon\n",
            "quarantine.retention: \"soon\" is not a duration",
        ),
        ("store:\n  path: \"\"\n", "store.path: must not be empty"),
        ("incidents:\n  notfy: []\n", "notfy"),
    ];
    for (yaml, expected) in table {
        let got = problems(yaml);
        assert!(
            got.iter()
                .any(|p| p.starts_with(expected) || (expected.len() < 8 && p.contains(expected))),
            "for {yaml:?} expected {expected:?}, got {got:?}"
        );
    }
}

#[test]
fn the_authority_code_picks_the_directory_entry() {
    let c = Config::from_yaml(&format!("{MINIMAL}incidents:\n  authority: nw\n"), "t").unwrap();
    assert_eq!(
        c.incidents.authority.map(|a| a.email),
        Some("poststelle@ldi.nrw.de")
    );
}
