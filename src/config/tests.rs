//! The configuration's tables: every key, its default and its errors.

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

fn warnings(yaml: &str) -> Vec<String> {
    Config::from_yaml(yaml, "test").expect("valid").warnings()
}

/// Each warning starts with its expected beginning, in order.
fn assert_begin(warnings: &[String], begins: &[&str]) {
    assert_eq!(warnings.len(), begins.len(), "{warnings:#?}");
    for (w, b) in warnings.iter().zip(begins) {
        assert!(w.starts_with(b), "{w:?} does not start with {b:?}");
    }
}

#[test]
fn wide_trusted_networks_are_warned_of() {
    let nets = |list: &str| {
        warnings(&format!(
            "{MINIMAL}server:\n  trusted_networks: {list}\n  proxy_trusted_networks: [\"10.1.2.0/24\"]\n"
        ))
    };
    // An office's own networks and loopback: nothing to say.
    assert_eq!(
        nets(r#"["127.0.0.0/8", "::1", "10.1.0.0/16", "192.168.1.0/24", "2001:db8:1::/48"]"#),
        Vec::<String>::new()
    );
    let w = nets(r#"["0.0.0.0/0", "10.1.0.0/16", "10.0.0.0/15", "::/0", "2001:db8::/47"]"#);
    assert_begin(
        &w,
        &[
            "server.trusted_networks[0]: 0.0.0.0/0 is wider than a /16 (IPv4) (the whole internet: an open relay)",
            "server.trusted_networks[2]: 10.0.0.0/15 is wider than a /16",
            "server.trusted_networks[3]: ::/0 is wider than a /48 (IPv6) (the whole internet",
            "server.trusted_networks[4]: 2001:db8::/47 is wider than a /48",
        ],
    );
    let w = warnings(&format!(
        "{MINIMAL}server:\n  proxy_protocol: true\n  proxy_trusted_networks: [\"0.0.0.0/0\"]\n"
    ));
    assert!(
        w.iter()
            .any(|w| w.starts_with("server.proxy_trusted_networks[0]: 0.0.0.0/0")),
        "{w:#?}"
    );
}

#[test]
fn hold_or_monitor_without_anyone_to_tell_is_warned_of() {
    let policy = |notify: &str, action: &str| {
        warnings(&format!(
            "{MINIMAL}incidents:\n  notify: {notify}\npolicy:\n  action: {action}\n  rules:\n    - name: board\n      sender: [\"vorstand@example.org\"]\n      action: monitor\n    - name: team\n      sender: [\"team@example.org\"]\n      action: bcc\n"
        ))
        .into_iter()
        .filter(|w| w.starts_with("incidents.notify"))
        .collect::<Vec<_>>()
    };
    let w = policy("[]", "hold");
    assert_begin(
        &w,
        &[
            "incidents.notify is empty while policy.action is hold: held mail waits",
            "incidents.notify is empty while policy.rules[0].action (board) is monitor",
        ],
    );
    assert_eq!(
        policy("[]", "reject").len(),
        1,
        "the monitor rule still warns"
    );
    assert!(policy("[\"dpo@example.org\"]", "hold").is_empty());
}

#[test]
fn a_yaml_syntax_error_names_its_line_and_column() {
    let yaml = "upstream:\n  maildir: ./outbox\npolicy:\n  action: [reject\n  max_external_recipients: 3\n";
    let p = problems(yaml);
    assert_eq!(p.len(), 1, "{p:#?}");
    assert_eq!(
        p[0],
        "line 5, column 26: illegal placement of ':' indicator\n    5 |   max_external_recipients: 3\n      |                          ^"
    );
}

#[test]
fn relative_paths_resolve_against_the_policy_files_directory() {
    let yaml = "upstream:\n  maildir: ./outbox\nstore:\n  path: state/bccguard.db\nincidents:\n  path: /var/log/bccguard/incidents.jsonl\n";
    let c = Config::load_file_text(yaml, Path::new("/etc/bccguard/policy.yaml")).expect("valid");
    assert_eq!(
        c.upstream.target,
        UpstreamTarget::Maildir("/etc/bccguard/outbox".into())
    );
    assert_eq!(c.store.path, Path::new("/etc/bccguard/state/bccguard.db"));
    // Absolute paths stay; defaults are relative paths too.
    assert_eq!(
        c.incidents.path,
        Path::new("/var/log/bccguard/incidents.jsonl")
    );
    assert_eq!(c.spool.path, Path::new("/etc/bccguard/spool"));
    // A file named without a directory: the current one, made absolute.
    let here = std::env::current_dir().unwrap();
    let c = Config::load_file_text(yaml, Path::new("policy.yaml")).expect("valid");
    assert_eq!(c.store.path, here.join("state/bccguard.db"));
    // Text without a file (the embedded default): as written.
    let c = Config::from_yaml(yaml, "test").expect("valid");
    assert_eq!(c.store.path, Path::new("state/bccguard.db"));
}

#[test]
fn a_password_file_is_read_next_to_the_policy_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("upstream.pw"), "s3cret\n").unwrap();
    let yaml = "upstream:\n  address: \"mail.example.org:587\"\n  tls: starttls\n  auth:\n    username: guard\n    password_file: upstream.pw\n";
    let c = Config::load_file_text(yaml, &dir.path().join("policy.yaml")).expect("valid");
    assert!(
        matches!(c.upstream.auth, UpstreamAuth::Account { ref username, .. } if username == "guard")
    );
    let err = Config::load_file_text(yaml, Path::new("/nonexistent/policy.yaml")).unwrap_err();
    assert!(
        err.to_string().contains("/nonexistent/upstream.pw"),
        "{err}"
    );
}
