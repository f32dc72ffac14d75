//! Black-box: `split` over a real SMTP server (aiosmtpd), with and without
//! PIPELINING upstream. One copy per recipient, each showing only its own
//! address plus the internal ones; a copy refused part-way stops the split
//! with a reply that says how many went out, never a 250, and the client's
//! session goes on (with a fresh upstream session where the guard had to
//! abandon one in the middle of a DATA section).

mod common;

use common::*;

/// Threshold 3, action split.
const SPLIT: &str = "policy:\n  internal_domains: [\"example.org\"]\n  max_external_recipients: 3\n  action: split\n";

async fn upstream(pipelining: bool) -> Upstream {
    if pipelining {
        Upstream::start_pipelining().await
    } else {
        Upstream::start().await
    }
}

/// Sends one message to `rcpts` (also its To, plus an internal colleague
/// in Cc) and returns the final reply.
async fn send(c: &mut Client, rcpts: &[&str]) -> Reply {
    let msg = message(
        "Alice <alice@example.org>",
        &rcpts.join(", "),
        Some("colleague@example.org"),
        "Ihr Termin entf\u{e4}llt.\r\n",
    );
    c.mail("alice@example.org", rcpts, &msg).await
}

async fn one_copy_per_recipient(pipelining: bool) {
    let up = upstream(pipelining).await;
    let guard = Guard::with_upstream(&up, SPLIT).await;
    let mut c = Client::connect(guard.smtp).await;
    let rcpts = [
        "p1@ext1.test",
        "p2@ext2.test",
        "P3@Ext3.test",
        "p4@ext4.test",
    ];
    let r = send(&mut c, &rcpts).await;
    assert_eq!(r.code, 250, "{}", r.text);
    assert!(r.text.contains("4 separate copies"), "{}", r.text);
    let got = up.messages();
    assert_eq!(got.len(), 4);
    for (copy, rcpt) in got.iter().zip(rcpts) {
        assert_eq!(copy.rcpt_tos, [rcpt]);
        let head = copy.head();
        assert!(head.contains(&format!("\r\nTo: {rcpt}\r\n")), "{head}");
        assert!(head.contains("\r\nCc: colleague@example.org\r\n"), "{head}");
        for other in rcpts.iter().filter(|o| **o != rcpt) {
            assert!(
                !head.contains(other),
                "{other} visible in the copy for {rcpt}"
            );
        }
        assert!(copy.text().ends_with("Ihr Termin entf\u{e4}llt.\r\n"));
    }
    // The session goes on over the same upstream session.
    let r = send(&mut c, &["bob@partner.test"]).await;
    assert_eq!(r.code, 250, "{}", r.text);
    assert_eq!(up.count(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_copy_per_recipient_with_pipelining() {
    one_copy_per_recipient(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_copy_per_recipient_without_pipelining() {
    one_copy_per_recipient(false).await;
}

/// Copy 3 of 5 is refused after its dot. With PIPELINING the guard has
/// already sent copy 4's MAIL/RCPT/DATA; upstream said 354 to it, so the
/// guard must leave without a dot (copy 4 must not arrive, not even empty).
/// Copies 3 to 5 go to the spool (tests/spool.rs follows them from there);
/// its first scan comes long after this test's checks.
async fn refused_after_the_dot(pipelining: bool) {
    let up = upstream(pipelining).await;
    let guard = Guard::with_upstream(&up, SPLIT).await;
    let mut c = Client::connect(guard.smtp).await;
    let rcpts = [
        "p1@ext1.test",
        "p2@ext2.test",
        "data-reject@ext3.test",
        "p4@ext4.test",
        "p5@ext5.test",
    ];
    let r = send(&mut c, &rcpts).await;
    assert_eq!(r.code, 250, "{}", r.text);
    assert!(
        r.text
            .contains("2 separate copies delivered, 3 queued for retry"),
        "{}",
        r.text
    );
    let got = up.messages();
    let delivered: Vec<&str> = got.iter().map(|m| m.rcpt_tos[0].as_str()).collect();
    assert_eq!(delivered, ["p1@ext1.test", "p2@ext2.test"]);
    // The client's session is fine and the next message is delivered.
    let r = send(&mut c, &["bob@partner.test"]).await;
    assert_eq!(r.code, 250, "{}", r.text);
    let got = up.messages();
    assert_eq!(got.len(), 3);
    assert_eq!(got[2].rcpt_tos, ["bob@partner.test"]);
    let incident = &guard.incidents()[0];
    assert_eq!(incident["subject"], "Termin abgesagt");
    assert_eq!(
        incident["outcome"], "delivered",
        "the guard owns the spooled rest"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_after_the_dot_with_pipelining() {
    refused_after_the_dot(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_after_the_dot_without_pipelining() {
    refused_after_the_dot(false).await;
}

/// Recipients upstream refused at the client's own RCPT (450, 550) are not
/// part of the transaction, so they never become copies.
async fn refused_at_rcpt(pipelining: bool) {
    let up = upstream(pipelining).await;
    let guard = Guard::with_upstream(&up, SPLIT).await;
    let mut c = Client::connect(guard.smtp).await;
    c.ehlo().await;
    c.cmd("MAIL FROM:<alice@example.org>", 250).await;
    let rcpts = [
        "p1@ext1.test",
        "tempfail-later@ext2.test",
        "p3@ext3.test",
        "p4@ext4.test",
    ];
    for r in rcpts {
        let code = if r.starts_with("tempfail") { 450 } else { 250 };
        c.cmd(&format!("RCPT TO:<{r}>"), code).await;
    }
    c.cmd("RCPT TO:<reject-copy@ext5.test>", 550).await;
    c.cmd("DATA", 354).await;
    let msg = message("alice@example.org", &rcpts.join(", "), None, "Hallo\r\n");
    let r = c.finish(&msg).await;
    assert_eq!(r.code, 250, "{}", r.text);
    assert!(r.text.contains("3 separate copies"), "{}", r.text);
    assert_eq!(up.count(), 3);
    let r = send(&mut c, &["bob@partner.test"]).await;
    assert_eq!(r.code, 250, "{}", r.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_recipients_never_become_copies_with_pipelining() {
    refused_at_rcpt(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_recipients_never_become_copies_without_pipelining() {
    refused_at_rcpt(false).await;
}

/// A copy whose final reply is a 4xx after others were delivered: the
/// client gets 250 once the rest is spooled (it must not resend the copies
/// already delivered).
async fn tempfail_after_the_dot(pipelining: bool) {
    let up = upstream(pipelining).await;
    let guard = Guard::with_upstream(&up, SPLIT).await;
    let mut c = Client::connect(guard.smtp).await;
    let rcpts = [
        "p1@ext1.test",
        "p2@ext2.test",
        "p3@ext3.test",
        "data-tempfail@ext4.test",
    ];
    let r = send(&mut c, &rcpts).await;
    assert_eq!(r.code, 250, "{}", r.text);
    assert!(
        r.text
            .contains("3 separate copies delivered, 1 queued for retry"),
        "{}",
        r.text
    );
    assert_eq!(up.count(), 3);
    let r = send(&mut c, &["bob@partner.test"]).await;
    assert_eq!(r.code, 250, "{}", r.text);
    assert_eq!(up.count(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tempfail_after_the_dot_with_pipelining() {
    tempfail_after_the_dot(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tempfail_after_the_dot_without_pipelining() {
    tempfail_after_the_dot(false).await;
}
