//! Black-box: upstream faults and a guard killed mid-message. Never lose,
//! never invent (RFC 5321 6.1): whatever upstream does (refuse its greeting,
//! close at once, stall, drop after the final dot, restart between two
//! transactions), the client gets a 4xx or upstream's own reply, and never
//! a 250 for a message upstream did not take. A guard killed with SIGKILL
//! while a client is in DATA has sent upstream no final dot.
//!
//! Besides the aiosmtpd peer, the tests use the scripted upstream of the
//! common test support (`FakeSmtp` in tests/common/peers.rs): a few lines
//! of SMTP whose misbehaviour is chosen per test and which records every
//! byte it was sent.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::clock::HeldClock;
use common::peers::{FakeSmtp, PAUSE_AT, Script};
use common::*;
use tokio::net::TcpStream;

/// A guard in front of `upstream` whose upstream waits are short.
async fn guard_for(upstream: SocketAddr, timeouts: &str) -> Guard {
    let yaml = yaml(Some(upstream), POLICY).replace(
        "  connect_timeout: 5s\n  command_timeout: 10s\n  data_timeout: 10s\n",
        timeouts,
    );
    assert!(yaml.contains(timeouts), "yaml() changed shape");
    Guard::start(&yaml).await
}

const SHORT: &str = "  connect_timeout: 2s\n  command_timeout: 2s\n  data_timeout: 2s\n";

fn simple(to: &str) -> String {
    message("alice@example.org", to, None, "x\r\n")
}

/// Asserts a transient reply with this enhanced code.
fn assert_transient(r: &Reply, status: &str) {
    assert!(
        (400..500).contains(&r.code) && r.text.contains(status),
        "expected 4xx {status}, got: {}",
        r.text
    );
}

// ---- upstream refuses or vanishes before the transaction -------------------

/// Upstream's `554` greeting (RFC 5321 3.1: "no SMTP service here") is a
/// problem of the path, not of the message: the client must keep the mail,
/// so it hears `451 4.4.1` with upstream's words, never a 5xx.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_refuses_its_greeting_gives_451_with_its_reason() {
    let fake = FakeSmtp::start(Script::Greeting("554 5.3.2 fake.test no service for you")).await;
    let guard = guard_for(fake.addr, SHORT).await;
    let mut c = Client::connect(guard.smtp).await;
    c.ehlo().await;
    c.send("MAIL FROM:<alice@example.org>\r\n").await;
    let r = c.reply().await.expect("reply");
    assert_eq!(r.code, 451, "{}", r.text);
    assert!(
        r.text.contains("4.4.1") && r.text.contains("no service for you"),
        "{}",
        r.text
    );
    c.cmd("RCPT TO:<bob@partner.test>", 503).await;
    assert_eq!(
        guard
            .metric("bccguard_upstream_errors_total{kind=\"refused\"}")
            .await,
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_closes_at_once_gives_4xx() {
    let fake = FakeSmtp::start(Script::CloseAtOnce).await;
    let guard = guard_for(fake.addr, SHORT).await;
    let mut c = Client::connect(guard.smtp).await;
    c.ehlo().await;
    c.send("MAIL FROM:<alice@example.org>\r\n").await;
    let r = c.reply().await.expect("reply");
    assert_transient(&r, "4.4.");
    c.cmd("RCPT TO:<bob@partner.test>", 503).await;
    // The session is not poisoned: the next MAIL tries again (and fails
    // again the same way, as upstream still closes).
    c.send("MAIL FROM:<alice@example.org>\r\n").await;
    assert_transient(&c.reply().await.expect("reply"), "4.4.");
    assert_eq!(fake.seen(|s| s.connections), 2);
}

/// `upstream.connect_timeout`: a listener whose accept queue is full (it
/// never accepts) makes the kernel drop the guard's SYNs, so the TCP
/// handshake never completes. With a long `command_timeout`, only the
/// connect timeout can answer the client within the test's wait.
///
/// Real time (0.5 s), not tokio's paused clock: nothing shows when the
/// guard has begun to connect (the SYNs go nowhere), so a test moving a
/// held clock could move it before that wait starts (tests/common/clock.rs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_never_completes_the_handshake_hits_the_connect_timeout() {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.bind("127.0.0.1:0".parse().unwrap()).expect("bind");
    // Backlog 0: one queued connection fills it; later SYNs are dropped.
    let listener = socket.listen(0).expect("listen");
    let addr = listener.local_addr().expect("addr");
    let _filler = TcpStream::connect(addr).await.expect("first connect");
    let _more: Vec<_> = (0..2)
        .map(|_| tokio::spawn(tokio::time::timeout(WAIT, TcpStream::connect(addr))))
        .collect();
    let guard = guard_for(
        addr,
        "  connect_timeout: 500ms\n  command_timeout: 60s\n  data_timeout: 60s\n",
    )
    .await;
    let mut c = Client::connect(guard.smtp).await;
    c.ehlo().await;
    c.send("MAIL FROM:<alice@example.org>\r\n").await;
    let r = c.reply().await.expect("reply");
    assert_eq!(r.code, 451, "{}", r.text);
    assert!(r.text.contains("4.4.1"), "no answer from host: {}", r.text);
    assert_eq!(
        guard
            .metric("bccguard_upstream_errors_total{kind=\"timeout\"}")
            .await,
        1.0
    );
    drop(listener);
}

/// `upstream.command_timeout`: an upstream that accepts TCP and never
/// speaks costs the client one timeout, answered `451 4.4.2`.
///
/// Real time (2 s), not tokio's paused clock: the silent upstream cannot
/// show when the guard has connected and begun to wait for its greeting,
/// so a test moving a held clock could move it before that wait begins
/// (tests/common/clock.rs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_upstream_times_out_with_451() {
    let fake = FakeSmtp::start(Script::Silent).await;
    let guard = guard_for(fake.addr, SHORT).await;
    let mut c = Client::connect(guard.smtp).await;
    c.ehlo().await;
    c.send("MAIL FROM:<alice@example.org>\r\n").await;
    let r = c.reply().await.expect("reply");
    assert_eq!(r.code, 451, "{}", r.text);
    assert!(r.text.contains("4.4.2"), "{}", r.text);
    assert_eq!(
        guard
            .metric("bccguard_upstream_errors_total{kind=\"timeout\"}")
            .await,
        1.0
    );
    // The guard gave up on that connection: upstream sees it close.
    eventually(
        "the guard to close the stalled upstream connection",
        || async { fake.seen(|s| s.closed) == 1 },
    )
    .await;
}

// ---- upstream fails after the client's final dot ----------------------------

/// `upstream.data_timeout`: upstream took the message but never answered
/// the final dot. Its fate is unknown, so the client hears `451 4.4.2` and
/// keeps it (RFC 5321 4.5.4.1 / RFC 1047: a duplicate is better than a loss).
/// On tokio's paused clock: the 2 s pass at once, when upstream has the dot.
#[tokio::test(start_paused = true)]
async fn an_upstream_that_stalls_after_the_final_dot_gives_451_never_250() {
    let clock = HeldClock::hold();
    let fake = FakeSmtp::start(Script::StallAfterDot).await;
    let guard = guard_for(fake.addr, SHORT).await;
    let mut c = Client::connect(guard.smtp).await;
    c.ehlo().await;
    c.begin_data("alice@example.org", &["bob@partner.test"])
        .await;
    c.send_message(&simple("bob@partner.test")).await;
    // Upstream has the final dot only once the guard waits for its reply
    // (one thread: the guard ran up to that wait before upstream could
    // read), so moving the clock by data_timeout ends that wait.
    clock
        .until("upstream to have the final dot", || {
            fake.seen(|s| has_final_dot(&s.bytes[0]))
        })
        .await;
    clock.advance(Duration::from_secs(2)).await;
    let r = c.reply().await.expect("final reply");
    assert_eq!(r.code, 451, "{}", r.text);
    assert!(r.text.contains("4.4.2"), "{}", r.text);
    assert_eq!(fake.count(), 0);
    // The session goes on, on a fresh upstream connection.
    c.send("MAIL FROM:<alice@example.org>\r\n").await;
    c.expect(250).await;
    assert_eq!(fake.seen(|s| s.connections), 2);
}

/// Upstream closes when it gets DATA (after MAIL and RCPT were accepted):
/// the client, which already heard 354 from the guard, gets `451 4.4.2`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_closes_at_data_gives_451_never_250() {
    let fake = FakeSmtp::start(Script::CloseAtData).await;
    let guard = guard_for(fake.addr, SHORT).await;
    let mut c = Client::connect(guard.smtp).await;
    let r = c
        .mail(
            "alice@example.org",
            &["bob@partner.test"],
            &simple("bob@partner.test"),
        )
        .await;
    assert_eq!(r.code, 451, "{}", r.text);
    assert!(r.text.contains("4.4.2"), "{}", r.text);
    assert_eq!(fake.count(), 0);
}

/// The aiosmtpd peer aborts the connection after the final dot, before
/// storing (`data-drop`): in bcc mode too (a rewritten message is no less
/// the client's), the client gets `451 4.4.2`, never 250.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drop_after_the_final_dot_of_a_rewritten_message_gives_451() {
    let up = Upstream::start().await;
    let policy = POLICY.replace("action: reject", "action: bcc");
    let guard = Guard::with_upstream(&up, &policy).await;
    let mut c = Client::connect(guard.smtp).await;
    let mut rcpts = externals(5);
    rcpts.push("data-drop@partner.test".into());
    let to = rcpts.join(", ");
    let refs: Vec<&str> = rcpts.iter().map(String::as_str).collect();
    let r = c.mail("alice@example.org", &refs, &simple(&to)).await;
    assert_eq!(r.code, 451, "{}", r.text);
    assert!(r.text.contains("4.4.2"), "{}", r.text);
    assert_eq!(up.count(), 0);
    let incident = guard
        .incidents()
        .pop()
        .expect("an incident for the bcc rewrite");
    assert!(
        incident["outcome"]
            .as_str()
            .unwrap_or_default()
            .starts_with("not delivered"),
        "{incident}"
    );
}

// ---- upstream restarts between two transactions -----------------------------

/// The organisation's server restarts while a client session is idle
/// between two messages (the guard's upstream connection is then dead).
/// The next MAIL either opens a fresh connection (250) or is answered 4xx;
/// a retry then succeeds, and every 250 stands for a stored message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_restarted_between_two_transactions_loses_nothing() {
    let mut up = Upstream::start().await;
    let guard = Guard::with_upstream(&up, POLICY).await;
    let mut c = Client::connect(guard.smtp).await;
    let r = c
        .mail(
            "alice@example.org",
            &["bob@partner.test"],
            &simple("bob@partner.test"),
        )
        .await;
    assert_eq!(r.code, 250, "{}", r.text);
    up.restart().await;
    let mut answered_250 = 1;
    for attempt in 0..2 {
        c.send("MAIL FROM:<alice@example.org>\r\n").await;
        let r = c.reply().await.expect("reply to MAIL");
        if r.code == 250 {
            c.cmd("RCPT TO:<carol@partner.test>", 250).await;
            c.cmd("DATA", 354).await;
            let fin = c.finish(&simple("carol@partner.test")).await;
            assert_eq!(fin.code, 250, "{}", fin.text);
            answered_250 += 1;
            break;
        }
        assert_transient(&r, "4.4.");
        assert_eq!(attempt, 0, "a retried MAIL must get a fresh connection");
    }
    assert_eq!(answered_250, 2);
    let got = up.messages();
    assert_eq!(got.len(), 2);
    assert_eq!(got[1].rcpt_tos, ["carol@partner.test"]);
}

/// The same with the restart while the client is in DATA: the guard's
/// upstream connection dies between the client's RCPT and its final dot.
/// The message was never sent, so the client must not hear 250.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_restarted_during_data_gives_4xx_never_250() {
    let mut up = Upstream::start().await;
    let guard = Guard::with_upstream(&up, POLICY).await;
    let mut c = Client::connect(guard.smtp).await;
    c.ehlo().await;
    c.begin_data("alice@example.org", &["bob@partner.test"])
        .await;
    c.send("From: alice@example.org\r\nTo: bob@partner.test\r\n\r\nfirst half\r\n")
        .await;
    up.restart().await;
    c.send("second half\r\n.\r\n").await;
    let r = c.reply().await.expect("final reply");
    assert_transient(&r, "4.4.2");
    assert_eq!(up.count(), 0);
    // The client's retry goes through the restarted server.
    let r = c
        .mail(
            "alice@example.org",
            &["bob@partner.test"],
            &simple("bob@partner.test"),
        )
        .await;
    assert_eq!(r.code, 250, "{}", r.text);
    assert_eq!(up.count(), 1);
}

/// A scripted upstream that closes each connection after one transaction:
/// the second message of the session is never answered 250 unless it was
/// delivered, and the client's retry succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_closes_after_each_transaction_never_gets_a_false_250() {
    let fake = FakeSmtp::start(Script::CloseAfterOne).await;
    let guard = guard_for(fake.addr, SHORT).await;
    let mut c = Client::connect(guard.smtp).await;
    c.ehlo().await;
    let mut finals = Vec::new();
    for n in 0..3 {
        // A client that retries a MAIL refused with 4xx, at most twice.
        let mut opened = false;
        for _ in 0..2 {
            c.send("MAIL FROM:<alice@example.org>\r\n").await;
            let r = c.reply().await.expect("reply to MAIL");
            if r.code == 250 {
                opened = true;
                break;
            }
            assert_transient(&r, "4.4.");
        }
        assert!(opened, "message {n}: MAIL never succeeded");
        c.cmd("RCPT TO:<bob@partner.test>", 250).await;
        c.cmd("DATA", 354).await;
        finals.push(c.finish(&simple("bob@partner.test")).await.code);
    }
    let answered = finals.iter().filter(|&&code| code == 250).count();
    assert_eq!(answered, fake.count(), "replies {finals:?}");
    assert_eq!(answered, 3, "replies {finals:?}");
}

/// Upstream said `421` and closed while the client session was idle
/// between two messages. A `421` means "closing the channel" (RFC 5321
/// 3.8): the guard may not pass it on and then keep the client's session
/// open as if nothing happened (it did, before this test). The client gets
/// `451 4.4.1` with upstream's words, and its retry is delivered over a
/// fresh upstream connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_421_on_an_idle_connection_is_not_relayed_as_a_live_421() {
    let fake = FakeSmtp::start(Script::Close421AfterOne).await;
    let guard = guard_for(fake.addr, SHORT).await;
    let mut c = Client::connect(guard.smtp).await;
    let r = c
        .mail(
            "alice@example.org",
            &["bob@partner.test"],
            &simple("bob@partner.test"),
        )
        .await;
    assert_eq!(r.code, 250, "{}", r.text);
    // Upstream wrote its 421 together with its 250 and reads nothing more
    // on that connection. The guard sees the 421 waiting when the session
    // falls idle, so it does not keep that connection: the next MAIL goes
    // out on a fresh one, and the client never sees upstream's 421.
    let r = c
        .send_mail(
            "alice@example.org",
            &["bob@partner.test"],
            &simple("bob@partner.test"),
        )
        .await;
    assert_eq!(r.code, 250, "{}", r.text);
    assert_eq!(fake.count(), 2);
}

// ---- the guard killed mid-message --------------------------------------------

/// Starts `serve` relaying to `upstream`, listening on port 0; returns
/// it with its SMTP address.
async fn serve(upstream: SocketAddr, limits: &str) -> (ServedGuard, SocketAddr) {
    let served = ServedGuard::start(&yaml_with_limits(Some(upstream), POLICY, limits), &[]).await;
    let smtp = served.smtp;
    (served, smtp)
}

/// True if the bytes an upstream connection got contain a DATA command
/// followed by an end-of-data, i.e. a message upstream would deliver.
fn has_final_dot(bytes: &[u8]) -> bool {
    let text = String::from_utf8_lossy(bytes);
    text.find("DATA\r\n")
        .is_some_and(|at| text[at..].contains("\r\n.\r\n"))
}

/// SIGKILL while the client is in the middle of DATA: upstream got MAIL
/// and RCPT but never a DATA command, let alone a final dot, so it cannot
/// deliver a truncated message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guard_killed_mid_data_never_gives_upstream_a_final_dot() {
    let fake = FakeSmtp::start(Script::StallAfterDot).await;
    let (mut served, smtp) = serve(fake.addr, "    idle_timeout: 60s\n").await;
    let mut c = Client::connect(smtp).await;
    c.ehlo().await;
    c.begin_data("alice@example.org", &["bob@partner.test"])
        .await;
    // Half a message, ending in what would be a line start.
    c.send("From: alice@example.org\r\nTo: bob@partner.test\r\n\r\nline 1\r\n")
        .await;
    kill_mid_message(&mut served, &mut c).await;
    // The kernel closed the guard's upstream socket: upstream sees EOF.
    eventually("upstream to see the guard's connection close", || async {
        fake.seen(|s| s.closed) == 1
    })
    .await;
    let bytes = fake.seen(|s| s.bytes[0].clone());
    let text = String::from_utf8_lossy(&bytes);
    assert!(text.contains("RCPT TO:<bob@partner.test>"), "{text}");
    assert!(!text.contains("DATA"), "upstream saw DATA: {text}");
    assert_eq!(fake.count(), 0);
}

/// SIGKILL while the guard is streaming the message upstream (upstream has
/// the DATA command and a megabyte of message, then stops reading, so the
/// guard blocks): what upstream got ends without `<CR><LF>.<CR><LF>`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guard_killed_while_relaying_never_gives_upstream_a_final_dot() {
    let fake = FakeSmtp::start(Script::PauseInData).await;
    let (mut served, smtp) = serve(
        fake.addr,
        "    idle_timeout: 60s\n    max_message_size: 40M\n",
    )
    .await;
    let mut c = Client::connect(smtp).await;
    // 24 MB: far more than loopback socket buffers hold, so the guard
    // cannot have written the final dot when upstream pauses.
    let body = format!("{}\r\n", "0123456789abcdef".repeat(60)).repeat(24 * 1024);
    let msg = simple("bob@partner.test").replace("x\r\n", &body);
    c.ehlo().await;
    c.begin_data("alice@example.org", &["bob@partner.test"])
        .await;
    c.send_message(&msg).await;
    tokio::time::timeout(WAIT, fake.until_paused())
        .await
        .expect("upstream never got a megabyte of the message");
    served.kill9();
    fake.resume();
    eventually("upstream to see the guard's connection close", || async {
        fake.seen(|s| s.closed) == 1
    })
    .await;
    let bytes = fake.seen(|s| s.bytes[0].clone());
    assert!(
        bytes.len() >= PAUSE_AT,
        "upstream got {} bytes",
        bytes.len()
    );
    assert!(!has_final_dot(&bytes), "upstream got a complete message");
    assert_eq!(fake.count(), 0);
    assert!(
        c.closed().await,
        "the client's connection died with the guard"
    );
}

/// Kills the guard (SIGKILL) and checks the client's connection died with
/// it, without any reply to the unfinished message.
async fn kill_mid_message(served: &mut ServedGuard, c: &mut Client) {
    served.kill9();
    assert!(c.reply().await.is_none(), "a reply from a dead guard");
}
