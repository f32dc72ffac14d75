//! The incident workflow of issue 7, black-box over real sockets: a real
//! upstream (aiosmtpd), a second real SMTP server for the DPO's mail, the
//! guard in-process, the `bccguard` binary for the DPO's commands, and the
//! webhook receiver of the common test support (`Webhook` in
//! tests/common/peers.rs).
//!
//! - hold -> restart -> `quarantine release --as bcc` arrives upstream with
//!   the recipients hidden, and the register says who released it;
//! - `quarantine drop` tells the sender (null sender, no recipient list);
//! - DPO mails arrive at their own SMTP server and the webhook is posted,
//!   neither with a recipient address;
//! - a webhook POST that fails (HTTP 500, no answer within
//!   `incidents.webhook_timeout`, an untrusted certificate) is retried
//!   after `incidents.notice_retry_min` and given up after
//!   `incidents.notice_max_age`; `https://` trusts the CAs of the guard
//!   process's environment (`SSL_CERT_FILE`);
//! - a monitor-mode incident is `disclosed` and its Art. 33 draft names
//!   the right deadline and authority;
//! - issue 16's metrics: mail held through Python's smtplib and released
//!   by the CLI (another process) shows on the running guard's `/metrics`
//!   (held, oldest, decisions), and a disclosed incident's time left.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bccguard::incident::store::{Class, HoldState, SqliteStore, Store};
use common::peers::{Answer, Webhook};
use common::*;

/// The test policy.yaml: threshold 3, `action` as given, more
/// `incidents.*` keys (indented by two spaces).
fn config(up: &Upstream, action: &str, incidents: &str) -> String {
    let policy = format!(
        "policy:\n  internal_domains: [\"example.org\"]\n  max_external_recipients: 3\n  action: {action}\n"
    );
    let anchor = "incidents:\n  path: INCIDENTS\n";
    let base = yaml(Some(up.addr), &policy);
    assert!(base.contains(anchor), "yaml() changed shape: {base}");
    base.replacen(anchor, &format!("{anchor}{incidents}"), 1)
}

/// Writes a policy.yaml for the CLI (the harness's placeholders filled).
/// Paths inside `dir` are written relative (`bccguard.db`): the commands
/// run from the crate's directory, so each one also shows that a relative
/// path means the policy file's directory, not the current one.
fn config_file(dir: &Path, text: &str, store: &Path) -> std::path::PathBuf {
    assert_ne!(std::env::current_dir().unwrap(), dir);
    let store = store.strip_prefix(dir).unwrap_or(store);
    let text = text.replace("INCIDENTS", "cli-incidents.jsonl")
        + &format!(
            "store:\n  path: {}\nspool:\n  path: spool\n",
            store.display()
        );
    let path = dir.join("policy.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs the binary; returns stdout (asserting success).
fn bccguard(config: &Path, args: &[&str]) -> String {
    let (ok, stdout, stderr) = bccguard_as_dpo(config, args);
    assert!(
        ok,
        "bccguard {args:?} failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    stdout
}

fn five() -> Vec<String> {
    externals(5)
}

/// Sends the open list of five externals from alice to the guard at
/// `smtp`; returns the reply.
async fn send_open_list(smtp: SocketAddr) -> Reply {
    let rcpts = five();
    let msg = message(
        "Alice <alice@example.org>",
        &rcpts.join(", "),
        Some("Bob <bob@example.org>"),
        "Der Termin am Montag entfällt.\r\n",
    );
    let mut c = Client::connect(smtp).await;
    let mut all = rcpts.clone();
    all.push("bob@example.org".into());
    c.mail_within("alice@example.org", &all, &msg, WAIT).await
}

/// [`send_open_list`] through Python's smtplib (no Cc); returns the DATA
/// reply's code and text.
async fn smtplib_open_list(smtp: SocketAddr) -> (u16, String) {
    let rcpts = five();
    let msg = message(
        "Alice <alice@example.org>",
        &rcpts.join(", "),
        None,
        "Hallo\r\n",
    );
    smtplib_send(smtp, "alice@example.org", &rcpts, &msg).await
}

/// True if the exposition has a sample of `series` (not only its HELP).
fn has_sample(exposition: &str, series: &str) -> bool {
    exposition.lines().any(|l| {
        l.strip_prefix(series)
            .is_some_and(|r| r.starts_with([' ', '{']))
    })
}

/// aiosmtpd records the null sender as `<>`.
fn null_sender(m: &Delivered) -> bool {
    m.mail_from.is_empty() || m.mail_from == "<>"
}

/// Upstream messages from the null sender (the guard's notices to senders).
fn notices(up: &Upstream) -> Vec<Delivered> {
    up.messages().into_iter().filter(null_sender).collect()
}

/// The header section as sent plus the decoded text body (lettre picks a
/// transfer encoding for non-ASCII text).
fn readable(m: &Delivered) -> String {
    let parsed = mail_parser::MessageParser::default()
        .parse(&m.data)
        .expect("a message");
    format!(
        "{}\n\n{}",
        m.head(),
        parsed.body_text(0).unwrap_or_default()
    )
}

fn no_recipient_address(text: &str) {
    for a in five() {
        assert!(
            !text.contains(&a),
            "a recipient address {a} leaked into:\n{text}"
        );
    }
}

/// `bccguard_notices_total` of the webhook with this `result`.
fn webhook_series(result: &str) -> String {
    format!("bccguard_notices_total{{kind=\"webhook\",result=\"{result}\"}}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_mail_survives_a_restart_and_is_released_as_bcc() {
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("bccguard.db");
    let text = config(&up, "hold", "") + &format!("store:\n  path: {}\n", store.display());
    let guard = Guard::start(&text).await;

    let r = send_open_list(guard.smtp).await;
    assert_eq!(r.code, 250, "{}", r.text);
    assert!(r.text.contains("Held for review"), "{}", r.text);
    let id = incident_id(&r.text);
    assert_eq!(
        guard
            .metric("bccguard_incidents_total{action=\"hold\"}")
            .await,
        1.0
    );
    let record = &guard.incidents()[0];
    assert_eq!(
        (
            record["action"].as_str(),
            record["class"].as_str(),
            record["outcome"].as_str()
        ),
        (Some("hold"), Some("prevented"), Some("held"))
    );
    assert_eq!(
        record["display_names"], 1,
        "Bob's name in Cc; Alice's in From is not a recipient"
    );
    guard.stop().await;

    // A new guard on the same store: the message is still there; the
    // sender hears that it is held (from whichever guard got to it).
    let guard = Guard::start(&text).await;
    eventually("the hold notice to the sender", || async {
        !notices(&up).is_empty()
    })
    .await;
    let notice = &notices(&up)[0];
    assert_eq!(notice.rcpt_tos, ["alice@example.org"]);
    let body = readable(notice);
    assert!(
        body.contains(&id) && body.contains("Auto-Submitted: auto-replied"),
        "{body}"
    );
    assert!(
        body.contains("zur\nPrüfung") || body.contains("Prüfung"),
        "German first:\n{body}"
    );
    assert!(
        body.contains("It has NOT been sent"),
        "then English:\n{body}"
    );
    no_recipient_address(&body);
    no_recipient_address(&notice.text());
    assert!(
        up.messages().iter().all(null_sender),
        "nothing relayed before the release"
    );

    let config = config_file(dir.path(), &config(&up, "hold", ""), &store);
    let list = bccguard(&config, &["quarantine", "list"]);
    assert!(
        list.starts_with("1 held message(s)") && list.contains(&id),
        "{list}"
    );
    let shown = bccguard(&config, &["quarantine", "show", &id]);
    assert!(
        shown.contains("p1@ext1.test"),
        "the DPO sees whom it was for:\n{shown}"
    );

    let out = bccguard(&config, &["quarantine", "release", &id, "--as", "bcc"]);
    assert!(out.contains("released as bcc by dpo-anna"), "{out}");
    let released: Vec<Delivered> = up
        .messages()
        .into_iter()
        .filter(|m| m.mail_from == "alice@example.org")
        .collect();
    assert_eq!(released.len(), 1, "one transaction");
    let m = &released[0];
    let mut want = five();
    want.push("bob@example.org".into());
    assert_eq!(m.rcpt_tos, want, "every recipient still gets it");
    let head = m.head();
    no_recipient_address(&head);
    assert!(
        head.contains("Cc: Bob <bob@example.org>"),
        "internal stays visible:\n{head}"
    );
    assert!(
        head.contains(&format!(" id {id};")),
        "the Received header of the hold:\n{head}"
    );

    // The register: who, when, how; the message itself is gone.
    let s = SqliteStore::open(&store).unwrap();
    let i = s.incident(&id).unwrap();
    assert_eq!(
        (i.class, i.hold),
        (Class::Prevented, Some(HoldState::Released))
    );
    let steps = s.steps(&id).unwrap();
    let step = steps
        .iter()
        .find(|s| s.step == "released")
        .expect("released step");
    assert_eq!(step.actor, "dpo-anna");
    assert!(
        step.detail
            .starts_with("as bcc: 6 of 6 recipients accepted"),
        "{}",
        step.detail
    );
    assert!(
        s.held_message(&id).is_err(),
        "the held bytes are deleted after release"
    );
    assert!(bccguard(&config, &["quarantine", "list"]).starts_with("0 held message(s)"));
    // A second release finds nothing to release.
    let again = Command::new(env!("CARGO_BIN_EXE_bccguard"))
        .args(["quarantine", "release", &id, "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr)
            .contains(&format!("incident {id}: the message is released, not held"))
    );
    guard.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_held_mail_tells_the_sender() {
    let up = Upstream::start().await;
    let guard = Guard::start(&config(&up, "hold", "  languages: [en]\n")).await;
    let r = send_open_list(guard.smtp).await;
    assert_eq!(r.code, 250, "{}", r.text);
    let id = incident_id(&r.text);
    let cfg = guard.shared.config();
    bccguard::incident::quarantine::drop_held(&guard.shared.store, &cfg, &id, "dpo-ben")
        .await
        .unwrap();
    let dropped = "bccguard_quarantine_decisions_total{how=\"dropped\",by=\"cli\"}";
    assert_eq!(guard.metric(dropped).await, 1.0);
    let is_drop = |n: &Delivered| readable(n).contains("was NOT sent");
    eventually("the drop notice", || async {
        notices(&up).iter().any(is_drop)
    })
    .await;
    let all = notices(&up);
    let dropped = all.iter().find(|n| is_drop(n)).unwrap();
    assert_eq!(dropped.rcpt_tos, ["alice@example.org"]);
    let text = readable(dropped);
    assert!(text.contains(&id) && text.contains("deleted"), "{text}");
    assert!(
        text.contains("Subject: Not sent: Termin abgesagt"),
        "{text}"
    );
    no_recipient_address(&text);
    assert!(
        up.messages().iter().all(null_sender),
        "the held mail never went out"
    );
    let steps = guard.shared.store.steps(&id).unwrap();
    assert!(
        steps
            .iter()
            .any(|s| s.step == "dropped" && s.actor == "dpo-ben"),
        "{steps:?}"
    );
    // The step lands once the mail was accepted (just after it arrived).
    eventually("the notice recorded as a step", || async {
        guard
            .shared
            .store
            .steps(&id)
            .unwrap()
            .iter()
            .any(|s| s.step == "notified" && s.detail.starts_with("sender told (dropped)"))
    })
    .await;
    guard.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dpo_is_mailed_through_its_own_smtp_server_and_the_webhook_is_posted() {
    let up = Upstream::start().await;
    let dpo_server = Upstream::start().await;
    let hook = Webhook::start(&[Answer::Status(204)], None).await;
    let incidents = format!(
        "  notify: [\"dsb@example.org\"]\n  smtp:\n    address: \"{}\"\n  webhook: \"{}\"\n",
        dpo_server.addr,
        hook.url("http")
    );
    let guard = Guard::start(&config(&up, "reject", &incidents)).await;
    let r = send_open_list(guard.smtp).await;
    assert_eq!(r.code, 550, "{}", r.text);
    let id = incident_id(&r.text);

    eventually("the DPO mail", || async { dpo_server.count() == 1 }).await;
    let m = &dpo_server.messages()[0];
    assert_eq!(m.rcpt_tos, ["dsb@example.org"]);
    assert_eq!(m.mail_from, "bccguard@guard.test");
    let text = readable(m);
    no_recipient_address(&m.text());
    for needle in [
        id.as_str(),
        "alice@example.org",
        "Termin abgesagt",
        "5 addresses in",
        "Vorfall:",
        "Auto-Submitted: auto-generated",
        "prevented",
    ] {
        assert!(
            text.contains(needle),
            "missing {needle:?} in the DPO mail:\n{text}"
        );
    }
    no_recipient_address(&text);
    assert!(
        !text.contains("bob@example.org"),
        "not even the internal recipient:\n{text}"
    );
    assert_eq!(
        up.count(),
        0,
        "the DPO mail went to its own server, not upstream"
    );

    eventually("the webhook posted", || async {
        !hook.requests().is_empty()
    })
    .await;
    let request = hook.requests().remove(0);
    assert!(
        request.starts_with("POST /tickets HTTP/1.1\r\n"),
        "{request}"
    );
    let body: serde_json::Value =
        serde_json::from_str(request.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(body["event"], "incident");
    assert_eq!(body["incident"]["id"], id.as_str());
    assert_eq!(body["class"], "prevented");
    no_recipient_address(&body.to_string());
    // The counters move only once the steps are stored: waiting on them,
    // the steps are there too.
    eventually("both notices counted sent", || async {
        guard
            .metric("bccguard_notices_total{kind=\"dpo\",result=\"sent\"}")
            .await
            == 1.0
            && guard
                .metric("bccguard_notices_total{kind=\"webhook\",result=\"sent\"}")
                .await
                == 1.0
    })
    .await;
    let steps = guard.shared.store.steps(&id).unwrap();
    let notified = steps.iter().filter(|s| s.step == "notified").count();
    assert_eq!(notified, 2, "{steps:?}");
    guard.stop().await;
}

/// The guard in-process, relaying to `up`, posting to `hook` over http,
/// with more `incidents.*` keys; one open list sent (and refused). Returns
/// the guard and the incident id.
async fn http_webhook_guard(up: &Upstream, hook: &Webhook, keys: &str) -> (Guard, String) {
    webhook_guard(up, hook, "http", keys).await
}

/// [`http_webhook_guard`] with the URL scheme given (`http`, `https`).
async fn webhook_guard(up: &Upstream, hook: &Webhook, scheme: &str, keys: &str) -> (Guard, String) {
    let incidents = format!("  webhook: \"{}\"\n{keys}", hook.url(scheme));
    let guard = Guard::start(&config(up, "reject", &incidents)).await;
    let r = send_open_list(guard.smtp).await;
    assert_eq!(r.code, 550, "{}", r.text);
    let id = incident_id(&r.text);
    (guard, id)
}

// The webhook retries are timed in real time, not on tokio's paused clock:
// a notice's next attempt is due by the wall clock (a time stored with it
// in the store, so it survives a restart), which tokio's clock does not
// move; and the open list goes to aiosmtpd, a process of its own
// (tests/common/clock.rs).

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_answered_500_is_posted_again_after_notice_retry_min() {
    let up = Upstream::start().await;
    let hook = Webhook::start(&[Answer::Status(500), Answer::Status(200)], None).await;
    let (guard, id) = http_webhook_guard(&up, &hook, "  notice_retry_min: 1s\n").await;
    eventually("the retried POST counted sent", || async {
        guard.metric(&webhook_series("sent")).await == 1.0
    })
    .await;
    assert_eq!(guard.metric(&webhook_series("retry")).await, 1.0);
    assert_eq!(guard.metric(&webhook_series("failed")).await, 0.0);
    let bodies = hook.bodies();
    assert_eq!(bodies.len(), 2, "{:?}", hook.requests());
    assert_eq!(bodies[0], bodies[1], "the same event both times");
    assert_eq!(bodies[0]["event"], "incident");
    assert_eq!(bodies[0]["incident"]["id"], id.as_str());
    let steps = guard.shared.store.steps(&id).unwrap();
    assert!(
        steps
            .iter()
            .any(|s| s.step == "notified" && s.detail.contains("HTTP 200")),
        "{steps:?}"
    );
    guard.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_that_never_answers_is_retried_after_webhook_timeout() {
    let up = Upstream::start().await;
    let hook = Webhook::start(&[Answer::Silent], None).await;
    let keys = "  webhook_timeout: 1s\n  notice_retry_min: 1s\n";
    let (guard, _) = http_webhook_guard(&up, &hook, keys).await;
    let start = Instant::now();
    eventually("the unanswered POST counted retry", || async {
        guard.metric(&webhook_series("retry")).await >= 1.0
    })
    .await;
    // The default 15 s would still be waiting; 1 s and a poll are not.
    let took = start.elapsed();
    assert!(took < Duration::from_secs(10), "counted after {took:?}");
    assert!(!hook.requests().is_empty(), "the POST arrived");
    assert_eq!(guard.metric(&webhook_series("sent")).await, 0.0);
    guard.stop().await;
}

/// A ticketing system that accepts the connection and never answers must
/// not hold up the DPO's mail (the Art. 33 clock runs from their knowing):
/// the DPO is mailed first, long before the POST gives up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_webhook_does_not_delay_the_dpo_mail() {
    let up = Upstream::start().await;
    let hook = Webhook::start(&[Answer::Silent], None).await;
    let keys = "  notify: [\"dsb@example.org\"]\n  webhook_timeout: 60s\n";
    let (guard, id) = http_webhook_guard(&up, &hook, keys).await;
    eventually("the DPO mail", || async {
        up.messages()
            .iter()
            .any(|m| m.rcpt_tos == ["dsb@example.org"] && m.text().contains(&id))
    })
    .await;
    eventually("the POST on its way", || async {
        !hook.requests().is_empty()
    })
    .await;
    assert_eq!(guard.metric(&webhook_series("sent")).await, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_failing_for_notice_max_age_is_given_up_as_a_step() {
    let up = Upstream::start().await;
    let hook = Webhook::start(&[Answer::Status(503)], None).await;
    let keys = "  notice_retry_min: 1s\n  notice_max_age: 2s\n";
    let (guard, id) = http_webhook_guard(&up, &hook, keys).await;
    eventually("the POST given up", || async {
        guard.metric(&webhook_series("failed")).await == 1.0
    })
    .await;
    assert!(guard.metric(&webhook_series("retry")).await >= 1.0);
    let steps = guard.shared.store.steps(&id).unwrap();
    assert!(
        steps.iter().any(|s| s.step == "notice failed"
            && s.detail.starts_with("webhook notice (incident) given up")
            && s.detail.contains("HTTP 503")),
        "{steps:?}"
    );
    let tried = hook.requests().len();
    // Two polls (retry_min 1s) later, still nothing new.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(hook.requests().len(), tried, "no POST after giving up");
    guard.stop().await;
}

/// The guard process, relaying to `up`, posting to `hook` over https and
/// trusting only `trusted` (its `SSL_CERT_FILE`); one open list sent.
async fn https_webhook_guard(up: &Upstream, hook: &Webhook, trusted: &Pki) -> ServedGuard {
    let incidents = format!(
        "  webhook: \"{}\"\n  notice_retry_min: 1s\n",
        hook.url("https")
    );
    let ca = trusted.ca();
    let guard = ServedGuard::start(
        &config(up, "reject", &incidents),
        &[("SSL_CERT_FILE", ca.as_os_str())],
    )
    .await;
    let r = send_open_list(guard.smtp).await;
    assert_eq!(r.code, 550, "{}", r.text);
    guard
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_webhook_is_posted_over_tls_to_a_trusted_certificate() {
    let up = Upstream::start().await;
    let pki = Pki::new("test CA");
    let hook = Webhook::start(&[Answer::Status(200)], Some(pki.acceptor("hook"))).await;
    let guard = https_webhook_guard(&up, &hook, &pki).await;
    eventually("the https POST counted sent", || async {
        guard.metric(&webhook_series("sent")).await == 1.0
    })
    .await;
    // The receiver reads only what came through its TLS acceptor.
    let requests = hook.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert!(
        requests[0].starts_with("POST /tickets HTTP/1.1\r\nHost: localhost\r\n"),
        "{}",
        requests[0]
    );
    assert_eq!(hook.bodies()[0]["event"], "incident");
    assert_eq!(guard.metric(&webhook_series("retry")).await, 0.0);
}

/// `incidents.webhook_ca`: an in-house ticketing system with its own CA is
/// trusted through the key alone (no system store, no environment), and a
/// certificate from another CA is still refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_webhook_trusts_the_ca_in_webhook_ca() {
    let up = Upstream::start().await;
    let pki = Pki::new("in-house CA");
    let other = Pki::new("someone else's CA");
    for (served_by, sent) in [(&pki, 1.0), (&other, 0.0)] {
        let hook = Webhook::start(&[Answer::Status(200)], Some(served_by.acceptor("hook"))).await;
        let keys = format!(
            "  webhook_ca: \"{}\"\n  notice_retry_min: 1s\n",
            pki.ca().display()
        );
        let (guard, _) = webhook_guard(&up, &hook, "https", &keys).await;
        eventually("the POST settled", || async {
            guard.metric(&webhook_series("sent")).await
                + guard.metric(&webhook_series("retry")).await
                >= 1.0
        })
        .await;
        assert_eq!(guard.metric(&webhook_series("sent")).await, sent);
        assert_eq!(hook.requests().len(), sent as usize);
        guard.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_webhook_with_an_untrusted_certificate_is_never_sent() {
    let up = Upstream::start().await;
    let trusted = Pki::new("test CA");
    let other = Pki::new("someone else's CA");
    let hook = Webhook::start(&[Answer::Status(200)], Some(other.acceptor("hook"))).await;
    let guard = https_webhook_guard(&up, &hook, &trusted).await;
    eventually("the refused handshake counted retry", || async {
        guard.metric(&webhook_series("retry")).await >= 1.0
    })
    .await;
    assert!(hook.connections.load(Ordering::SeqCst) >= 1, "it was tried");
    assert!(hook.requests().is_empty(), "a POST went through");
    assert_eq!(guard.metric(&webhook_series("sent")).await, 0.0);
    let log = guard.log_text();
    assert!(
        log.contains("notice not sent") && log.contains("invalid peer certificate"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_monitor_incident_is_disclosed_and_drafted_for_the_right_authority() {
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("bccguard.db");
    let incidents = "  authority: NW\n  controller:\n    name: \"Impfzentrum Ennepe-Ruhr\"\n    dpo: \"Erika Muster, dsb@example.org\"\n";
    let text =
        config(&up, "monitor", incidents) + &format!("store:\n  path: {}\n", store.display());
    let guard = Guard::start(&text).await;
    let r = send_open_list(guard.smtp).await;
    assert_eq!(r.code, 250, "monitor sends it: {}", r.text);
    assert_eq!(up.count(), 1);
    let record = &guard.incidents()[0];
    assert_eq!(record["class"], "disclosed");
    let id = record["id"].as_str().unwrap().to_string();
    let i = guard.shared.store.incident(&id).unwrap();
    assert_eq!(i.class, Class::Disclosed);
    let deadline = bccguard::incident::notify::rfc3339(i.recorded_at + 72 * 3600);
    // The draft is in the reader's zone (incidents.timezone, by default
    // Europe/Berlin) with the offset; the list stays in UTC like the log.
    let local_deadline = jiff::Timestamp::from_second(i.recorded_at + 72 * 3600)
        .unwrap()
        .to_zoned(jiff::tz::TimeZone::get("Europe/Berlin").unwrap())
        .strftime("%Y-%m-%d %H:%M:%S %Z (UTC%:z)")
        .to_string();

    let config = config_file(dir.path(), &config(&up, "monitor", incidents), &store);
    let en = bccguard(&config, &["incident", "report", &id, "--lang", "en"]);
    for needle in [
        "# DRAFT: notification of a personal data breach (GDPR Art. 33)",
        &format!("Deadline: **{local_deadline}**"),
        "Landesbeauftragte für Datenschutz und Informationsfreiheit Nordrhein-Westfalen",
        "Postfach 20 04 44\n40102 Düsseldorf",
        "poststelle@ldi.nrw.de",
        "BfDI",
        "Impfzentrum Ennepe-Ruhr",
        "Erika Muster, dsb@example.org",
        "Reporting person: [TODO]",
        "5 external recipient addresses (in 5 domains)",
        "about 5",
        "Art. 34",
        "The guard's action: monitor (outcome: ",
        "The 5 affected addresses are kept in the guard's register until ",
        &format!("bccguard incident recipients {id}"),
    ] {
        assert!(
            en.contains(needle),
            "missing {needle:?} in the draft:\n{en}"
        );
    }
    no_recipient_address(&en);
    let de = bccguard(&config, &["incident", "report", &id, "--lang", "de"]);
    assert!(
        de.contains("# ENTWURF") && de.contains(&format!("Frist: **{local_deadline}**")),
        "{de}"
    );
    // The people concerned, for the DPO to inform each (Art. 34): exactly
    // the external addresses the readers saw, and the look is recorded.
    let people = bccguard(&config, &["incident", "recipients", &id]);
    let mut shown: Vec<&str> = people.lines().collect();
    shown.sort_unstable();
    let mut expected = five();
    expected.sort();
    assert_eq!(shown, expected, "{people}");

    let disclosed = bccguard(
        &config,
        &["incident", "list", "--since", "1h", "--class", "disclosed"],
    );
    assert!(
        disclosed.contains(&id) && disclosed.contains(&deadline),
        "{disclosed}"
    );
    let prevented = bccguard(&config, &["incident", "list", "--class", "prevented"]);
    assert!(!prevented.contains(&id), "{prevented}");
    let steps = guard.shared.store.steps(&id).unwrap();
    assert!(
        steps
            .iter()
            .any(|s| s.step == "report drafted" && s.actor == "dpo-anna"),
        "{steps:?}"
    );
    assert!(
        steps
            .iter()
            .any(|s| s.step == "recipients viewed" && s.actor == "dpo-anna"),
        "{steps:?}"
    );
    guard.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_reaches_the_dpo_as_a_digest() {
    let up = Upstream::start().await;
    let dpo_server = Upstream::start().await;
    let incidents = format!(
        "  notify: [\"dsb@example.org\"]\n  digest_after: 1\n  digest_interval: 3s\n  languages: [en]\n  smtp:\n    address: \"{}\"\n",
        dpo_server.addr
    );
    let guard = Guard::start(&config(&up, "reject", &incidents)).await;
    let mut ids = Vec::new();
    for _ in 0..4 {
        let r = send_open_list(guard.smtp).await;
        assert_eq!(r.code, 550, "{}", r.text);
        ids.push(incident_id(&r.text));
    }
    let covered = |mails: &[Delivered]| {
        ids.iter()
            .all(|id| mails.iter().any(|m| readable(m).contains(id.as_str())))
    };
    eventually("every incident mailed", || async {
        covered(&dpo_server.messages())
    })
    .await;
    let mails = dpo_server.messages();
    assert!(mails.len() < 4, "{} mails for 4 incidents", mails.len());
    let subjects: Vec<String> = mails
        .iter()
        .map(|m| {
            mail_parser::MessageParser::default()
                .parse(&m.data)
                .and_then(|p| p.subject().map(String::from))
                .unwrap_or_default()
        })
        .collect();
    assert!(
        subjects[0].starts_with(&format!("[bccguard] Incident {}", ids[0])),
        "{subjects:?}"
    );
    assert!(
        subjects.iter().any(|s| s.ends_with("incidents (digest)")),
        "{subjects:?}"
    );
    for m in &mails {
        no_recipient_address(&readable(m));
    }
    guard.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecided_held_mail_expires_and_the_sender_is_told() {
    let up = Upstream::start().await;
    let text = config(&up, "hold", "  languages: [en]\n") + "quarantine:\n  retention: 1s\n";
    let guard = Guard::start(&text).await;
    let r = send_open_list(guard.smtp).await;
    assert_eq!(r.code, 250, "{}", r.text);
    let id = incident_id(&r.text);
    let expired = |n: &Delivered| readable(n).contains("nobody released");
    eventually("the expiry notice", || async {
        notices(&up).iter().any(expired)
    })
    .await;
    let all = notices(&up);
    let text = readable(all.iter().find(|n| expired(n)).unwrap());
    assert!(text.contains(&id) && text.contains("within 1s"), "{text}");
    no_recipient_address(&text);
    assert!(up.messages().iter().all(null_sender), "never relayed");
    let i = guard.shared.store.incident(&id).unwrap();
    assert_eq!(i.hold, Some(HoldState::Expired));
    let steps = guard.shared.store.steps(&id).unwrap();
    assert!(
        steps
            .iter()
            .any(|s| s.step == "expired" && s.actor == "bccguard"),
        "{steps:?}"
    );
    let series = "bccguard_quarantine_decisions_total{how=\"expired\",by=\"expiry\"}";
    assert_eq!(guard.metric(series).await, 1.0);
    guard.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_as_split_sends_one_copy_each_and_as_original_discloses() {
    let up = Upstream::start().await;
    let guard = Guard::start(&config(&up, "hold", "  sender_notice: []\n")).await;
    let first = incident_id(&send_open_list(guard.smtp).await.text);
    let second = incident_id(&send_open_list(guard.smtp).await.text);
    let cfg = guard.shared.config();
    let store = &guard.shared.store;
    use bccguard::incident::quarantine::{ReleaseAs, release};

    let done = release(store, &cfg, &first, ReleaseAs::Split, "dpo-carl")
        .await
        .unwrap();
    assert_eq!(done.summary, "6 of 6 separate copies accepted");
    let copies = up.messages();
    assert_eq!(copies.len(), 6);
    for (m, rcpt) in copies.iter().zip(five()) {
        assert_eq!(m.rcpt_tos, std::slice::from_ref(&rcpt));
        let head = m.head();
        assert!(head.contains(&format!("To: {rcpt}")), "{head}");
        let others = five().into_iter().filter(|a| *a != rcpt);
        for other in others {
            assert!(
                !head.contains(&other),
                "{other} visible in the copy for {rcpt}"
            );
        }
    }
    let i = store.incident(&first).unwrap();
    assert_eq!(
        (i.class, i.hold),
        (Class::Prevented, Some(HoldState::Released))
    );

    release(store, &cfg, &second, ReleaseAs::Original, "dpo-carl")
        .await
        .unwrap();
    let original = up.messages().pop().unwrap();
    for a in five() {
        assert!(original.head().contains(&a), "the original shows {a}");
    }
    let i = store.incident(&second).unwrap();
    assert_eq!(
        i.class,
        Class::Disclosed,
        "a released original is a disclosure"
    );
    assert!(i.disclosed_at.is_some_and(|t| t >= i.recorded_at));
    assert!(bccguard::incident::notify::deadline(&i).is_some());
    // The original's readers are the people concerned: kept for
    // incidents.keep_recipients (30 days) from the release; the split's
    // are gone with its copy.
    let kept = store.affected(&second).unwrap();
    assert_eq!(kept.addresses.len(), 5, "{kept:?}");
    let disclosed_at = i.disclosed_at.unwrap();
    assert_eq!(kept.until, Some(disclosed_at + 30 * 86400));
    assert!(store.affected(&first).unwrap().addresses.is_empty());
    // The draft tells the end of the hold, not the hold.
    let steps = store.steps(&second).unwrap();
    let de = bccguard::incident::report::draft(
        &cfg,
        &i,
        &steps,
        &kept,
        disclosed_at,
        bccguard::incident::notify::Lang::De,
    );
    assert!(
        de.contains("- Maßnahme des Guards: hold (Regel default), dann freigegeben als original durch dpo-carl am "),
        "{de}"
    );
    assert!(!de.contains("Ergebnis: held"), "{de}");
    // Both releases counted by how; the disclosure's clock runs from the
    // release.
    let text = guard.metrics_text().await;
    for how in ["split", "original"] {
        let series = format!("bccguard_quarantine_decisions_total{{how=\"{how}\",by=\"cli\"}}");
        assert_eq!(sample(&text, &series), 1.0, "{series}");
    }
    let left = sample(&text, "bccguard_incident_deadline_seconds");
    assert!(left > 71.0 * 3600.0 && left <= 72.0 * 3600.0, "{left}");
    guard.stop().await;
}

/// Issue 16: the CLI that releases is not the process Prometheus scrapes;
/// the running guard's `/metrics` shows the release all the same, read
/// from the store they share.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_by_the_cli_shows_on_the_running_guards_metrics() {
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("bccguard.db");
    let guard = Guard::start(&text_with_store(&up, &store)).await;
    let held = "bccguard_quarantine_held";
    let oldest = "bccguard_quarantine_oldest_seconds";
    let bcc = "bccguard_quarantine_decisions_total{how=\"bcc\",by=\"cli\"}";
    let deadline = "bccguard_incident_deadline_seconds";
    let before = guard.metrics_text().await;
    assert_eq!((sample(&before, held), sample(&before, bcc)), (0.0, 0.0));

    let (code, reply) = smtplib_open_list(guard.smtp).await;
    assert_eq!(code, 250, "{reply}");
    let id = incident_id(&reply);
    assert_eq!(guard.metric(held).await, 1.0);
    eventually("the held mail's age on /metrics", || async {
        guard.metric(oldest).await >= 1.0
    })
    .await;
    let text = guard.metrics_text().await;
    assert!(
        !has_sample(&text, deadline),
        "a held mail is prevented, no deadline runs:\n{text}"
    );

    let config = config_file(dir.path(), &config(&up, "hold", ""), &store);
    let out = bccguard(&config, &["quarantine", "release", &id, "--as", "bcc"]);
    assert!(out.contains("released as bcc by dpo-anna"), "{out}");
    eventually("the release on the guard's /metrics", || async {
        let text = guard.metrics_text().await;
        sample(&text, held) == 0.0 && sample(&text, bcc) == 1.0
    })
    .await;
    let text = guard.metrics_text().await;
    assert_eq!(sample(&text, oldest), 0.0, "nothing waits");
    for other in [
        "{how=\"split\",by=\"cli\"}",
        "{how=\"original\",by=\"cli\"}",
        "{how=\"dropped\",by=\"cli\"}",
        "{how=\"expired\",by=\"expiry\"}",
    ] {
        let series = format!("bccguard_quarantine_decisions_total{other}");
        assert_eq!(sample(&text, &series), 0.0, "{series}");
    }
    guard.stop().await;

    // A new guard on the same store: the counter is the register's, not
    // the process's, so a restart does not reset it.
    let guard = Guard::start(&text_with_store(&up, &store)).await;
    assert_eq!(guard.metric(bcc).await, 1.0);
    guard.stop().await;
}

/// The hold policy on the store at `store`.
fn text_with_store(up: &Upstream, store: &Path) -> String {
    config(up, "hold", "") + &format!("store:\n  path: {}\n", store.display())
}

/// Issue 16: a monitor-mode incident is disclosed, and its Art. 33 clock
/// shows on `/metrics` as the time left, just under 72 hours.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disclosed_incident_shows_the_time_left_of_its_72_hours() {
    let up = Upstream::start().await;
    let guard = Guard::start(&config(&up, "monitor", "")).await;
    let deadline = "bccguard_incident_deadline_seconds";
    let text = guard.metrics_text().await;
    assert!(
        text.contains(&format!("# TYPE {deadline} gauge")) && !has_sample(&text, deadline),
        "no disclosed incident, no sample:\n{text}"
    );
    let (code, reply) = smtplib_open_list(guard.smtp).await;
    assert_eq!(code, 250, "monitor sends it: {reply}");
    assert_eq!(guard.incidents()[0]["class"], "disclosed");
    let left = guard.metric(deadline).await;
    assert!(
        (71.0 * 3600.0..=72.0 * 3600.0).contains(&left),
        "{left} s left"
    );
    guard.stop().await;
}
