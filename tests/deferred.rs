//! Black-box: `upstream.recipients: deferred` against a real SMTP server
//! (aiosmtpd), with and without PIPELINING. The guard answers each RCPT
//! itself; upstream hears the envelope with the decided message. What the
//! client hears must still be true: 250 only when every recipient has the
//! message or the guard durably holds the rest (retried, or bounced to the
//! sender with a delivery status notification); when nobody took it,
//! upstream's refusal with its class, and nothing sent.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;

fn deferred_yaml(up: &Upstream, spool: &Path) -> String {
    format!(
        "{}spool:\n  path: {}\n  scan_interval: 50ms\n  retry_min: 50ms\n  retry_max: 200ms\n  max_age: 2s\n",
        deferred(&yaml(Some(up.addr), POLICY)),
        spool.display()
    )
}

async fn upstreams() -> [Upstream; 2] {
    [Upstream::start().await, Upstream::start_pipelining().await]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guard_answers_rcpt_and_upstream_gets_the_whole_envelope_with_the_message() {
    for up in upstreams().await {
        let dir = tempfile::tempdir().unwrap();
        let guard = Guard::start(&deferred_yaml(&up, dir.path())).await;
        let mut c = Client::connect(guard.smtp).await;
        c.ehlo().await;
        c.cmd("MAIL FROM:<alice@example.org> BODY=8BITMIME", 250)
            .await;
        // Upstream would refuse this one; the guard has not asked it yet.
        let text = c.cmd("RCPT TO:<reject-me@partner.test>", 250).await;
        assert!(text.contains("2.1.5"), "{text}");
        c.cmd("RSET", 250).await;
        let rcpts = ["bob@partner.test", "carol@other.test", "dave@example.org"];
        let msg = message("alice@example.org", "bob@partner.test", None, "Hallo\r\n");
        let r = c.send_mail("alice@example.org", &rcpts, &msg).await;
        assert_eq!(r.code, 250, "{}", r.text);
        assert!(
            r.text.contains("UP000001"),
            "upstream's own reply: {}",
            r.text
        );
        let got = up.messages();
        assert_eq!(got.len(), 1, "the reset transaction sent nothing");
        assert_eq!(got[0].rcpt_tos, rcpts);
        assert_eq!(without_received(&got[0].data), msg.as_bytes());
        // Pipelined by the client too: the guard's own replies, in order.
        c.send(
            "MAIL FROM:<alice@example.org>\r\nRCPT TO:<bob@partner.test>\r\nRCPT TO:<erin@partner.test>\r\nDATA\r\n",
        )
        .await;
        for code in [250, 250, 250, 354] {
            c.expect(code).await;
        }
        c.send_message(&msg).await;
        c.expect(250).await;
        assert_eq!(
            up.messages()[1].rcpt_tos,
            ["bob@partner.test", "erin@partner.test"]
        );
        assert_eq!(spool_files(dir.path()), 0);
    }
}

/// Some recipients refused, others taken: the others get the message, the
/// client hears 250 saying so, and the refused ones are the guard's. The
/// permanently refused one becomes a notice to the sender at once; the
/// temporarily refused one is retried until `spool.max_age` (2 s here:
/// ages count in whole seconds, so 1 s could expire before a retry),
/// then the sender hears about it too. Real time, not tokio's paused
/// clock: spool ages are counted by the wall clock, which tokio's clock
/// does not move, and upstream is aiosmtpd, a process of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_recipients_next_to_accepted_ones_are_retried_or_bounced_to_the_sender() {
    for up in upstreams().await {
        let dir = tempfile::tempdir().unwrap();
        let guard = Guard::start(&deferred_yaml(&up, dir.path())).await;
        let mut c = Client::connect(guard.smtp).await;
        let rcpts = [
            "bob@partner.test",
            "reject-x@partner.test",
            "tempfail-y@partner.test",
            "carol@other.test",
        ];
        let msg = message(
            "alice@example.org",
            "bob@partner.test, carol@other.test",
            None,
            "Hallo\r\n",
        );
        let r = c.mail("alice@example.org", &rcpts, &msg).await;
        assert_eq!(r.code, 250, "{}", r.text);
        assert!(
            r.text.contains("delivered to 2 recipients, upstream refused 2: 1 queued for retry, 1 refused for good"),
            "{}",
            r.text
        );
        // The permanent refusal's notice comes first (no retry), the
        // temporary one's after it expired.
        let got = wait_for(&up, 3).await;
        assert_eq!(got.len(), 3, "the message and two notices");
        assert_eq!(got[0].rcpt_tos, ["bob@partner.test", "carol@other.test"]);
        assert_eq!(without_received(&got[0].data), msg.as_bytes());
        for (dsn, rcpt) in got[1..]
            .iter()
            .zip(["reject-x@partner.test", "tempfail-y@partner.test"])
        {
            assert_eq!(dsn.mail_from, "<>");
            assert_eq!(dsn.rcpt_tos, ["alice@example.org"]);
            let text = dsn.text();
            assert!(
                text.contains(&format!("Final-Recipient: rfc822; {rcpt}")),
                "{text}"
            );
            assert!(text.contains("Action: failed"), "{text}");
        }
        assert!(got[1].text().contains("5.1.1"), "{}", got[1].text());
        let deadline = tokio::time::Instant::now() + WAIT;
        while spool_files(dir.path()) > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(spool_files(dir.path()), 0);
        assert!(
            guard
                .metric("bccguard_spool_deliveries_total{result=\"retry\"}")
                .await
                >= 1.0,
            "the temporary refusal was retried"
        );
    }
}

/// Nobody took it: the client hears upstream's refusal at the final dot,
/// with its class (a temporary one first, so the client keeps the mail), and
/// nothing is sent or spooled. Upstream's refusal of the sender is heard
/// the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_upstream_takes_no_recipient_the_client_hears_why_at_the_dot() {
    for up in upstreams().await {
        let dir = tempfile::tempdir().unwrap();
        let guard = Guard::start(&deferred_yaml(&up, dir.path())).await;
        let mut c = Client::connect(guard.smtp).await;
        let cases: [(&str, &[&str], u16, &str); 5] = [
            (
                "alice@example.org",
                &["reject-a@partner.test"],
                550,
                "5.1.1",
            ),
            (
                "alice@example.org",
                &["reject-a@partner.test", "tempfail-b@partner.test"],
                450,
                "4.2.1",
            ),
            (
                "reject-mail@example.org",
                &["bob@partner.test"],
                553,
                "5.7.1",
            ),
            (
                "tempfail-mail@example.org",
                &["bob@partner.test"],
                451,
                "4.3.0",
            ),
            (
                "alice@example.org",
                &["data-reject@partner.test"],
                554,
                "5.6.0",
            ),
        ];
        for (from, rcpts, code, status) in cases {
            let msg = message(from, rcpts[0], None, "Hallo\r\n");
            let r = c.mail(from, rcpts, &msg).await;
            assert_eq!(r.code, code, "{from} {rcpts:?}: {}", r.text);
            assert!(r.text.contains(status), "{}", r.text);
        }
        // The session and its upstream channel still work.
        let msg = message("alice@example.org", "bob@partner.test", None, "x\r\n");
        let r = c
            .mail("alice@example.org", &["bob@partner.test"], &msg)
            .await;
        assert_eq!(r.code, 250, "{}", r.text);
        assert_eq!(up.count(), 1);
        assert_eq!(spool_files(dir.path()), 0);
        let tempfail = "bccguard_upstream_errors_total{kind=\"tempfail\"}";
        assert_eq!(guard.metric(tempfail).await, 2.0, "once per transaction");
    }
}

/// Over the recipient limit the guard still answers 452 4.5.3 itself and
/// keeps the earlier recipients; a rejected mail never reaches upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_and_policy_refusals_are_the_guards_own_and_upstream_sees_nothing() {
    let up = Upstream::start_pipelining().await;
    let dir = tempfile::tempdir().unwrap();
    let text = deferred_yaml(&up, dir.path()).replacen(
        "server:\n",
        "server:\n  limits:\n    max_recipients: 2\n",
        1,
    );
    let guard = Guard::start(&text).await;
    let mut c = Client::connect(guard.smtp).await;
    c.ehlo().await;
    c.cmd("MAIL FROM:<alice@example.org>", 250).await;
    c.cmd("RCPT TO:<a@partner.test>", 250).await;
    c.cmd("RCPT TO:<b@partner.test>", 250).await;
    let over = c.cmd("RCPT TO:<c@partner.test>", 452).await;
    assert!(over.contains("4.5.3"), "{over}");
    // Four external addresses visible, threshold 3, action reject.
    let msg = message(
        "alice@example.org",
        "a@partner.test, b@partner.test, c@partner.test, d@partner.test",
        None,
        "x\r\n",
    );
    c.cmd("DATA", 354).await;
    c.send_message(&msg).await;
    let refused = c.expect(550).await;
    assert!(refused.contains("5.7.1"), "{refused}");
    assert_eq!(up.count(), 0);
    let msg = message("alice@example.org", "a@partner.test", None, "x\r\n");
    let r = c
        .send_mail(
            "alice@example.org",
            &["a@partner.test", "b@partner.test"],
            &msg,
        )
        .await;
    assert_eq!(r.code, 250, "{}", r.text);
    assert_eq!(
        up.messages()[0].rcpt_tos,
        ["a@partner.test", "b@partner.test"]
    );
}
