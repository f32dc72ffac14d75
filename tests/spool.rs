//! Black-box: a split that fails part-way. The guard answers 250 only once
//! the copies not yet delivered are durably spooled; it then delivers them
//! with retries, across a restart, and tells the sender (RFC 3464) about
//! the ones that finally fail. Nothing is lost and nothing is sent twice.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;

const SPLIT: &str = "policy:\n  internal_domains: [\"example.org\"]\n  max_external_recipients: 1\n  action: split\n";

fn spool_yaml(up: &Upstream, spool: &Path, scan: &str, max_age: &str) -> String {
    format!(
        "{}spool:\n  path: {}\n  scan_interval: {scan}\n  retry_min: 50ms\n  retry_max: 200ms\n  max_age: {max_age}\n",
        yaml(Some(up.addr), SPLIT),
        spool.display()
    )
}

async fn send_split(guard: &Guard, rcpts: &[&str]) -> Reply {
    let mut c = Client::connect(guard.smtp).await;
    let to = rcpts.join(", ");
    c.mail(
        "termine@example.org",
        rcpts,
        &message(
            "termine@example.org",
            &to,
            None,
            "Ihr Termin entf\u{e4}llt.\r\n",
        ),
    )
    .await
}

/// Real time (`spool.max_age` 1 s), not tokio's paused clock: spool ages
/// are counted by the wall clock (they survive a restart), which tokio's
/// clock does not move, and upstream is aiosmtpd, a process of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_after_a_temporary_failure_are_spooled_retried_and_finally_bounced() {
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let guard = Guard::start(&spool_yaml(&up, dir.path(), "50ms", "1s")).await;
    let rcpts = [
        "a@one.test",
        "b@two.test",
        "data-tempfail@three.test",
        "d@four.test",
    ];
    let r = send_split(&guard, &rcpts).await;
    assert_eq!(r.code, 250, "{}", r.text);
    assert!(
        r.text
            .contains("2 separate copies delivered, 2 queued for retry"),
        "{}",
        r.text
    );
    // Copy 4 goes out from the spool; copy 3 keeps failing, expires after
    // 1 s and the sender gets a notice.
    let got = wait_for(&up, 4).await;
    let rcpts_seen: Vec<&str> = got.iter().map(|m| m.rcpt_tos[0].as_str()).collect();
    assert_eq!(
        rcpts_seen,
        [
            "a@one.test",
            "b@two.test",
            "d@four.test",
            "termine@example.org"
        ]
    );
    let dsn = &got[3];
    assert_eq!(
        dsn.mail_from, "<>",
        "a notice comes from the null sender (as aiosmtpd records it)"
    );
    let text = dsn.text();
    assert!(
        text.contains("Final-Recipient: rfc822; data-tempfail@three.test"),
        "{text}"
    );
    assert!(text.contains("Action: failed"), "{text}");
    for other in ["a@one.test", "b@two.test", "d@four.test"] {
        assert!(
            !text.contains(other),
            "the notice repeats another recipient {other}:\n{text}"
        );
    }
    // Every copy was delivered once; the spool is empty again.
    let deadline = tokio::time::Instant::now() + WAIT;
    while spool_files(dir.path()) > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(spool_files(dir.path()), 0);
    assert_eq!(up.count(), 4);
    assert!(
        guard
            .metric("bccguard_spool_deliveries_total{result=\"bounced\"}")
            .await
            >= 1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanently_refused_copy_is_bounced_without_retrying() {
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let guard = Guard::start(&spool_yaml(&up, dir.path(), "50ms", "1h")).await;
    let r = send_split(
        &guard,
        &["a@one.test", "data-reject@two.test", "c@three.test"],
    )
    .await;
    assert_eq!(r.code, 250, "{}", r.text);
    let got = wait_for(&up, 3).await;
    let rcpts_seen: Vec<&str> = got.iter().map(|m| m.rcpt_tos[0].as_str()).collect();
    assert_eq!(
        rcpts_seen,
        ["a@one.test", "c@three.test", "termine@example.org"]
    );
    assert!(got[2].text().contains("Status: 5.6.0"), "{}", got[2].text());
    assert_eq!(
        guard
            .metric("bccguard_spool_deliveries_total{result=\"retry\"}")
            .await,
        0.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spooled_copies_survive_a_restart() {
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    // First guard: spools, but never scans within the test.
    let first = Guard::start(&spool_yaml(&up, dir.path(), "1h", "1h")).await;
    let r = send_split(
        &first,
        &["a@one.test", "data-drop@two.test", "c@three.test"],
    )
    .await;
    assert_eq!(r.code, 250, "{}", r.text);
    first.stop().await;
    assert_eq!(up.count(), 1);
    assert_eq!(spool_files(dir.path()), 4, "two copies, each .eml + .json");
    // Second guard on the same spool delivers what the first one owned.
    let _second = Guard::start(&spool_yaml(&up, dir.path(), "50ms", "1h")).await;
    let got = wait_for(&up, 2).await;
    let rcpts_seen: Vec<&str> = got.iter().map(|m| m.rcpt_tos[0].as_str()).collect();
    assert!(rcpts_seen.contains(&"c@three.test"), "{rcpts_seen:?}");
    assert_eq!(
        rcpts_seen.iter().filter(|r| **r == "c@three.test").count(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_of_the_first_copy_is_the_clients_to_keep() {
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let guard = Guard::start(&spool_yaml(&up, dir.path(), "50ms", "1h")).await;
    let r = send_split(&guard, &["data-tempfail@one.test", "b@two.test"]).await;
    assert_eq!(
        r.code, 452,
        "nothing went out, so the client keeps the message: {}",
        r.text
    );
    assert_eq!(spool_files(dir.path()), 0);
    assert_eq!(up.count(), 0);
}
