//! Black-box: every `server.limits.*` key and the protocol edges of the
//! hardening catalog (shared/research/smtp-pitfalls.md), over real sockets
//! with the real aiosmtpd upstream. Each limit is set small in the test's
//! policy.yaml so it is reached quickly; each refusal is checked by its full
//! reply code (basic and enhanced), by what upstream got (nothing, or the
//! exact message) and, where the guard counts it, by its metric.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use common::*;

async fn guard_with_limits(up: &Upstream, limits: &str) -> Guard {
    Guard::start(&yaml_with_limits(Some(up.addr), POLICY, limits)).await
}

fn simple(to: &str, body: &str) -> String {
    message("alice@example.org", to, None, body)
}

/// Reads one reply and asserts code and enhanced code (RFC 3463).
async fn expect_status(c: &mut Client, code: u16, status: &str) -> String {
    let text = c.expect(code).await;
    assert!(
        text.contains(status),
        "expected {code} {status}, got: {text}"
    );
    text
}

// ---- max_recipients -------------------------------------------------------

/// RFC 5321 4.5.3.1.8: beyond the limit `452 4.5.3`, and the recipients
/// accepted before stay in the transaction and receive the message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recipients_beyond_the_limit_get_452_and_the_earlier_ones_are_delivered() {
    let up = Upstream::start().await;
    let guard = guard_with_limits(&up, "    max_recipients: 3\n").await;
    let mut c = Client::connect(guard.smtp).await;
    c.ehlo().await;
    c.cmd("MAIL FROM:<alice@example.org>", 250).await;
    for i in 1..=3 {
        c.cmd(&format!("RCPT TO:<r{i}@partner.test>"), 250).await;
    }
    for i in 4..=5 {
        c.send(format!("RCPT TO:<r{i}@partner.test>\r\n")).await;
        expect_status(&mut c, 452, "4.5.3").await;
    }
    c.cmd("DATA", 354).await;
    c.send_message(&simple("r1@partner.test", "x\r\n")).await;
    c.expect(250).await;
    let got = up.messages();
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].rcpt_tos,
        ["r1@partner.test", "r2@partner.test", "r3@partner.test"]
    );
    assert_eq!(
        guard
            .metric("bccguard_refused_total{reason=\"too_many_recipients\"}")
            .await,
        2.0
    );
}

/// The default limit (1000) is far above RFC 5321's minimum of 100: a
/// client may give 100 recipients and all of them are kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_hundred_recipients_are_accepted_with_the_default_limit() {
    let up = Upstream::start().await;
    let policy = POLICY.replace(
        "max_external_recipients: 3",
        "max_external_recipients: 1000",
    );
    let guard = Guard::with_upstream(&up, &policy).await;
    let mut c = Client::connect(guard.smtp).await;
    let rcpts: Vec<String> = (1..=100).map(|i| format!("r{i}@partner.test")).collect();
    let r = c
        .mail_within(
            "alice@example.org",
            &rcpts,
            &simple("r1@partner.test", "x\r\n"),
            WAIT,
        )
        .await;
    assert_eq!(r.code, 250, "{}", r.text);
    assert_eq!(up.messages()[0].rcpt_tos, rcpts);
}

/// RFC 2920: a pipelined batch whose middle RCPT is over the limit gets its
/// replies in order; the recipients before it are delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipelined_batch_over_the_recipient_limit_answers_in_order() {
    batch_over_the_limit(Upstream::start().await).await;
}

/// The same through an upstream that offers PIPELINING, where the guard
/// forwards the batch in one write: only as many RCPTs as still fit go in
/// one batch, so the limit is applied exactly as one at a time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarded_batch_over_the_recipient_limit_answers_in_order() {
    batch_over_the_limit(Upstream::start_pipelining().await).await;
}

async fn batch_over_the_limit(up: Upstream) {
    let guard = guard_with_limits(&up, "    max_recipients: 2\n").await;
    let mut c = Client::connect(guard.smtp).await;
    c.ehlo().await;
    c.send(
        "MAIL FROM:<alice@example.org>\r\nRCPT TO:<a@partner.test>\r\nRCPT TO:<reject-b@partner.test>\r\n\
         RCPT TO:<c@partner.test>\r\nRCPT TO:<d@partner.test>\r\nDATA\r\n",
    )
    .await;
    c.expect(250).await;
    c.expect(250).await;
    // Upstream refuses b (its own 550 5.1.1), so c still fits the limit.
    expect_status(&mut c, 550, "5.1.1").await;
    c.expect(250).await;
    expect_status(&mut c, 452, "4.5.3").await;
    c.expect(354).await;
    c.send_message(&simple("a@partner.test", "x\r\n")).await;
    c.expect(250).await;
    assert_eq!(
        up.messages()[0].rcpt_tos,
        ["a@partner.test", "c@partner.test"]
    );
}

// ---- max_connections, max_connections_per_ip -------------------------------

/// Connects until the guard has `n` sessions greeted; returns them.
async fn hold(addr: std::net::SocketAddr, from: IpAddr, n: usize) -> Vec<Client> {
    let mut held = Vec::new();
    for _ in 0..n {
        let mut c = Client::connect_raw_from(from, addr).await;
        c.expect(220).await;
        held.push(c);
    }
    held
}

/// Connects once more and expects the `421 4.7.0` refusal and a close.
async fn expect_refused(addr: std::net::SocketAddr, from: IpAddr) {
    let mut c = Client::connect_raw_from(from, addr).await;
    expect_status(&mut c, 421, "4.7.0").await;
    assert!(c.closed().await, "a refused connection must be closed");
}

/// A slot is free again once a session has ended: poll (bounded) until a
/// new connection is greeted with 220.
async fn eventually_admitted(addr: std::net::SocketAddr, from: IpAddr) -> Client {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let mut c = Client::connect_raw_from(from, addr).await;
        match c.reply().await {
            Some(r) if r.code == 220 => return c,
            other => assert!(
                tokio::time::Instant::now() < deadline,
                "slot never freed: {other:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_after_max_connections_gets_421_and_a_freed_slot_is_reused() {
    let up = Upstream::start().await;
    let guard = guard_with_limits(
        &up,
        "    max_connections: 3\n    max_connections_per_ip: 10\n",
    )
    .await;
    let one = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
    let two = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
    let mut held = hold(guard.smtp, one, 2).await;
    held.extend(hold(guard.smtp, two, 1).await);
    // The global limit counts every address.
    expect_refused(guard.smtp, one).await;
    expect_refused(guard.smtp, two).await;
    assert_eq!(
        guard
            .metric("bccguard_refused_total{reason=\"too_many_connections\"}")
            .await,
        2.0
    );
    // A held session still works while others are refused.
    held[0].cmd("NOOP", 250).await;
    let mut first = held.remove(0);
    first.cmd("QUIT", 221).await;
    let mut again = eventually_admitted(guard.smtp, two).await;
    again.ehlo().await;
}

/// The catalog's "51st connection from one IP": the per-IP limit refuses
/// one address while another loopback address is still admitted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_after_max_connections_per_ip_gets_421_other_addresses_still_connect() {
    let up = Upstream::start().await;
    let guard = guard_with_limits(
        &up,
        "    max_connections: 100\n    max_connections_per_ip: 2\n",
    )
    .await;
    let one = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
    let two = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
    let mut held = hold(guard.smtp, one, 2).await;
    expect_refused(guard.smtp, one).await;
    let mut other = hold(guard.smtp, two, 2).await;
    expect_refused(guard.smtp, two).await;
    other[0].cmd("NOOP", 250).await;
    drop(held.pop());
    let mut again = eventually_admitted(guard.smtp, one).await;
    again.ehlo().await;
    held[0].cmd("NOOP", 250).await;
}

/// The default per-IP limit is 50 (Postfix's smtpd_client_connection_count_limit).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fifty_first_connection_from_one_address_is_refused_by_default() {
    let up = Upstream::start().await;
    let guard = Guard::with_upstream(&up, POLICY).await;
    let one = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
    let _held = hold(guard.smtp, one, 50).await;
    expect_refused(guard.smtp, one).await;
}

// ---- command length ----------------------------------------------------------

/// RFC 5321 4.5.3.1.4 (and 4.2.4 for the reply): a 17,000-byte command
/// arriving in 1,000-byte pieces gets exactly one `500 5.5.2`, and is never
/// truncated and run: the MAIL it starts with does not open a transaction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_17000_byte_command_is_refused_once_and_never_executed() {
    let up = Upstream::start().await;
    let guard = Guard::with_upstream(&up, POLICY).await;
    let mut c = Client::connect(guard.smtp).await;
    c.ehlo().await;
    let mut line = format!("MAIL FROM:<alice@example.org> X-PAD={}", "A".repeat(17_000));
    line.push_str("\r\n");
    assert!(line.len() > 17_000);
    for piece in line.as_bytes().chunks(1000) {
        c.send(piece).await;
    }
    expect_status(&mut c, 500, "5.5.2").await;
    // The next reply belongs to the next command: no second 500 for the tail.
    c.cmd("RCPT TO:<bob@partner.test>", 503).await;
    c.cmd("NOOP", 250).await;
    assert_eq!(
        guard
            .metric("bccguard_refused_total{reason=\"line_too_long\"}")
            .await,
        1.0
    );
}

/// The command-length boundary counts the CRLF: 2048 octets pass, 2049 do
/// not (`server.limits.max_command_length`, default 2048).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_length_limit_is_exact() {
    let up = Upstream::start().await;
    let guard = guard_with_limits(&up, "    max_command_length: 600\n").await;
    let mut c = Client::connect(guard.smtp).await;
    let at = |n: usize| format!("NOOP {}", "x".repeat(n - "NOOP \r\n".len()));
    c.cmd(&at(600), 250).await;
    let refused = c.cmd(&at(601), 500).await;
    assert!(refused.contains("5.5.2"), "{refused}");
    // Pipelined: a long line between two good ones is answered in place.
    c.send(format!("NOOP\r\n{}\r\nNOOP\r\n", at(5000))).await;
    c.expect(250).await;
    c.expect(500).await;
    c.expect(250).await;
}

// ---- max_message_size ------------------------------------------------------

/// Upstream's own SIZE limit (RFC 1870) is lower than the guard's: a SIZE=
/// over it is refused at MAIL by the guard, although MAIL only goes
/// upstream with the first RCPT; below it, the message goes through. A
/// message over upstream's limit without SIZE= gets upstream's own refusal
/// after the final dot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_size_over_upstreams_limit_is_refused_at_mail() {
    for up in [
        Upstream::start_with(&["--size", "100000"]).await,
        Upstream::start_with(&["--size", "100000", "--pipelining"]).await,
    ] {
        let guard = guard_with_limits(&up, "    max_message_size: 10M\n").await;
        let mut c = Client::connect(guard.smtp).await;
        c.ehlo().await;
        c.send("MAIL FROM:<alice@example.org> SIZE=100001\r\n")
            .await;
        let text = expect_status(&mut c, 552, "5.3.4").await;
        assert!(text.contains("100000"), "{text}");
        // The session goes on: nothing of that MAIL is left open.
        c.cmd("MAIL FROM:<alice@example.org> SIZE=2000", 250).await;
        c.cmd("RCPT TO:<bob@partner.test>", 250).await;
        c.cmd("DATA", 354).await;
        c.send_message(&simple("bob@partner.test", "small\r\n"))
            .await;
        expect_status(&mut c, 250, "").await;
        let line = format!("{}\r\n", "z".repeat(78));
        let big = simple("bob@partner.test", &line.repeat(1500));
        let r = c
            .send_mail("alice@example.org", &["bob@partner.test"], &big)
            .await;
        assert_eq!(r.code / 100, 5, "upstream's refusal: {}", r.text);
        assert_eq!(up.count(), 1);
        assert_eq!(
            guard
                .metric("bccguard_refused_total{reason=\"too_big\"}")
                .await,
            1.0
        );
    }
}

/// RFC 1870: a SIZE= over the limit is refused at MAIL (`552 5.3.4`); a
/// message that grows past it without SIZE= is read to its end without
/// being kept (drained), refused with `552 5.3.4`, and the session goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_message_is_drained_and_refused_with_552() {
    let up = Upstream::start().await;
    let guard = guard_with_limits(&up, "    max_message_size: 100000\n").await;
    let mut c = Client::connect(guard.smtp).await;
    let ehlo = c.ehlo().await;
    assert!(ehlo.contains("SIZE 100000"), "{ehlo}");
    c.send("MAIL FROM:<alice@example.org> SIZE=100001\r\n")
        .await;
    expect_status(&mut c, 552, "5.3.4").await;
    c.begin_data("alice@example.org", &["bob@partner.test"])
        .await;
    // 8 MB, 80 times the limit, in 64 KB writes.
    c.send("From: alice@example.org\r\nTo: bob@partner.test\r\n\r\n")
        .await;
    let line = format!("{}\r\n", "z".repeat(78));
    let chunk = line.repeat(64 * 1024 / line.len());
    for _ in 0..128 {
        c.send(&chunk).await;
    }
    c.send(".\r\n").await;
    expect_status(&mut c, 552, "5.3.4").await;
    let r = c
        .mail(
            "alice@example.org",
            &["bob@partner.test"],
            &simple("bob@partner.test", "small\r\n"),
        )
        .await;
    assert_eq!(r.code, 250, "{}", r.text);
    assert_eq!(up.count(), 1);
    assert_eq!(
        guard
            .metric("bccguard_refused_total{reason=\"too_big\"}")
            .await,
        2.0
    );
}

// ---- max_header_size ----------------------------------------------------------

/// Fail closed: a header section the guard cannot read in full is refused
/// with `552 5.3.4`, never truncated and passed, and nothing goes upstream.
/// The limit is exact: a header section of exactly the limit passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_section_over_max_header_size_is_refused_and_nothing_goes_upstream() {
    let up = Upstream::start().await;
    let guard = guard_with_limits(&up, "    max_header_size: 1024\n").await;
    // The header section is everything before the empty line.
    let head_of = |size: usize| {
        let base = "From: alice@example.org\r\nTo: bob@partner.test\r\nX-Pad: \r\n";
        let mut pad = String::new();
        // Folded 70-octet continuation lines, then an exact remainder.
        while base.len() + pad.len() + 72 < size {
            pad.push_str(&"p".repeat(70));
            pad.push_str("\r\n ");
        }
        pad.push_str(&"q".repeat(size - base.len() - pad.len()));
        let head = base.replace("X-Pad: ", &format!("X-Pad: {pad}"));
        assert_eq!(head.len(), size);
        head
    };
    let mut c = Client::connect(guard.smtp).await;
    let r = c
        .mail(
            "alice@example.org",
            &["bob@partner.test"],
            &format!("{}\r\nbody\r\n", head_of(1024)),
        )
        .await;
    assert_eq!(r.code, 250, "exactly the limit passes: {}", r.text);
    assert_eq!(up.count(), 1);

    // One octet over, with externals hidden past the limit (in reject mode
    // they would be refused; truncating would let them pass).
    let cc: Vec<String> = externals(10);
    let over = format!("{}Cc: {}\r\n\r\nbody\r\n", head_of(1025), cc.join(",\r\n "));
    c.begin_data("alice@example.org", &["bob@partner.test"])
        .await;
    c.send_message(&over).await;
    expect_status(&mut c, 552, "5.3.4").await;

    // A message that is all header (no empty line) and over the limit.
    c.begin_data("alice@example.org", &["bob@partner.test"])
        .await;
    c.send_message(&head_of(1500)).await;
    expect_status(&mut c, 552, "5.3.4").await;

    c.cmd("QUIT", 221).await;
    assert_eq!(up.count(), 1, "a refused header section reached upstream");
    assert_eq!(
        guard
            .metric("bccguard_refused_total{reason=\"header_too_big\"}")
            .await,
        2.0
    );
}

// ---- idle_timeout, data_timeout -----------------------------------------------

/// `idle_timeout` between commands: `421 4.4.2`, then the connection
/// closes (RFC 5321 4.5.3.2.7 lets a server close an idle session).
///
/// Real time (3 x 1 s), not tokio's paused clock: with a transaction open
/// the guard first resets it at upstream, aiosmtpd, a process of its own
/// that answers in real time (tests/common/clock.rs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_client_gets_421_and_is_disconnected() {
    let up = Upstream::start().await;
    let guard = guard_with_limits(&up, "    idle_timeout: 1s\n").await;
    let mut c = Client::connect(guard.smtp).await;
    expect_status(&mut c, 421, "4.4.2").await;
    assert!(c.closed().await);

    // Idle with an open transaction: nothing reaches upstream.
    let mut c = Client::connect(guard.smtp).await;
    c.ehlo().await;
    c.cmd("MAIL FROM:<alice@example.org>", 250).await;
    c.cmd("RCPT TO:<bob@partner.test>", 250).await;
    expect_status(&mut c, 421, "4.4.2").await;
    assert!(c.closed().await);

    // Idle in the middle of DATA: the partial message is dropped.
    let mut c = Client::connect(guard.smtp).await;
    c.ehlo().await;
    c.begin_data("alice@example.org", &["bob@partner.test"])
        .await;
    c.send("From: alice@example.org\r\nTo: bob@partner.test\r\n\r\nhalf a mess")
        .await;
    expect_status(&mut c, 421, "4.4.2").await;
    assert!(c.closed().await);
    assert_eq!(up.count(), 0);
}

/// A slow-drip sender (1 byte per interval, always inside the idle
/// timeout) is cut off by the total DATA deadline (`data_timeout`), not
/// kept open forever; nothing reaches upstream.
///
/// Real time (1 s), not tokio's paused clock: the guard resets the
/// transaction at upstream, aiosmtpd, a process of its own that answers in
/// real time, before it answers the client (tests/common/clock.rs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_byte_per_interval_sender_is_cut_off_by_the_total_data_deadline() {
    let up = Upstream::start().await;
    // Each byte arrives well inside idle_timeout; only the total deadline
    // can stop the drip. (Client::drip panics if no reply comes in WAIT.)
    let guard = guard_with_limits(&up, "    idle_timeout: 60s\n    data_timeout: 1s\n").await;
    let mut c = Client::connect(guard.smtp).await;
    c.ehlo().await;
    c.begin_data("alice@example.org", &["bob@partner.test"])
        .await;
    let endless = "From: alice@example.org\r\n\r\n".to_string() + &"slow ".repeat(10_000);
    let r = c
        .drip(endless.as_bytes(), Duration::from_millis(50))
        .await
        .expect("a reply before the close");
    assert_eq!(r.code, 421, "{}", r.text);
    assert!(r.text.contains("4.4.2"), "{}", r.text);
    assert!(c.closed().await);
    assert_eq!(up.count(), 0);
}

// ---- max_errors -------------------------------------------------------------

/// The catalog's "21 bad commands -> disconnect" with the default
/// `max_errors` (20): the 20th error is answered and followed by `421 4.7.0`;
/// the 21st is never read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_errors_end_the_session_with_421() {
    let up = Upstream::start().await;
    let guard = Guard::with_upstream(&up, POLICY).await;
    let mut c = Client::connect(guard.smtp).await;
    c.send("FOO\r\n".repeat(21)).await;
    let codes = codes_until_closed(&mut c).await;
    let mut want = vec![500; 20];
    want.push(421);
    assert_eq!(codes, want);
    assert_eq!(
        guard
            .metric("bccguard_refused_total{reason=\"too_many_errors\"}")
            .await,
        1.0
    );
}

/// Every kind of client error counts: unknown verbs, bad sequence, bad
/// syntax, refused recipients. The reply that reaches the limit is still
/// sent, then `421 4.7.0`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_errors_reach_max_errors() {
    let up = Upstream::start().await;
    let guard = guard_with_limits(&up, "    max_errors: 4\n").await;
    let mut c = Client::connect(guard.smtp).await;
    c.cmd("MAIL FROM:<alice@example.org>", 503).await;
    c.ehlo().await;
    c.cmd("XYZZY", 500).await;
    c.cmd("MAIL FROM:<alice@example.org>", 250).await;
    c.cmd("RCPT TO:<bob%partner.test@example.org>", 550).await;
    c.send("RCPT TO:<not an address>\r\n").await;
    c.expect(501).await;
    let last = c.reply().await.expect("421 before the close");
    assert_eq!(last.code, 421, "{}", last.text);
    assert!(last.text.contains("4.7.0"), "{}", last.text);
    assert!(c.closed().await);
}

// ---- protocol edges -----------------------------------------------------------

/// RFC 3030: BDAT is refused (`502 5.5.1`) while CHUNKING is not advertised;
/// the chunk that follows is read as command lines (as any server without
/// CHUNKING must), so it can neither deliver nor end the transaction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bdat_without_chunking_is_refused_and_delivers_nothing() {
    let up = Upstream::start().await;
    let guard = Guard::with_upstream(&up, POLICY).await;
    let mut c = Client::connect(guard.smtp).await;
    let ehlo = c.ehlo().await;
    assert!(!ehlo.contains("CHUNKING"), "{ehlo}");
    c.cmd("MAIL FROM:<alice@example.org>", 250).await;
    c.cmd("RCPT TO:<bob@partner.test>", 250).await;
    let chunk = "To: bob@partner.test\r\n\r\nhi\r\n";
    c.send(format!("BDAT {} LAST\r\n{chunk}", chunk.len()))
        .await;
    expect_status(&mut c, 502, "5.5.1").await;
    // "To: ..." is no command; the empty line and "hi" neither.
    c.expect(500).await;
    c.expect(500).await;
    c.expect(500).await;
    c.cmd("NOOP", 250).await;
    assert_eq!(up.count(), 0);
    // The transaction is still the client's to finish with DATA.
    c.cmd("DATA", 354).await;
    c.send_message(&simple("bob@partner.test", "x\r\n")).await;
    c.expect(250).await;
    assert_eq!(up.count(), 1);
}

/// RSET forgets the recipients (RFC 5321 4.1.1.5), also inside a pipelined
/// batch: DATA right after it is out of sequence, a new MAIL without RCPT
/// has no valid recipient, and the old recipient never gets the message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rset_in_a_pipelined_batch_forgets_the_recipients() {
    let up = Upstream::start().await;
    let guard = Guard::with_upstream(&up, POLICY).await;
    let mut c = Client::connect(guard.smtp).await;
    c.ehlo().await;
    c.send(
        "MAIL FROM:<alice@example.org>\r\nRCPT TO:<old@partner.test>\r\nRSET\r\nDATA\r\n\
         MAIL FROM:<alice@example.org>\r\nDATA\r\n",
    )
    .await;
    c.expect(250).await;
    c.expect(250).await;
    c.expect(250).await;
    expect_status(&mut c, 503, "5.5.1").await;
    c.expect(250).await;
    expect_status(&mut c, 554, "5.5.1").await;
    c.cmd("RCPT TO:<new@partner.test>", 250).await;
    c.cmd("DATA", 354).await;
    c.send_message(&simple("new@partner.test", "x\r\n")).await;
    c.expect(250).await;
    let got = up.messages();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].rcpt_tos, ["new@partner.test"]);
}

/// RFC 5321 4.5.2: the very start of the data is a line start. `..x` as the
/// first line arrives as `.x` (smtp-proto's receiver gets this wrong), and
/// the guard re-stuffs it on the way out; a body whose first line starts
/// with a dot arrives byte-identical.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_line_starting_with_a_dot_is_unstuffed_and_restuffed() {
    let up = Upstream::start().await;
    let guard = Guard::with_upstream(&up, POLICY).await;
    let mut c = Client::connect(guard.smtp).await;
    c.ehlo().await;
    c.begin_data("alice@example.org", &["bob@partner.test"])
        .await;
    // Stuffed by hand: the message's first line is ".X-Dot: 1".
    c.send("..X-Dot: 1\r\nFrom: alice@example.org\r\nTo: bob@partner.test\r\n\r\n..first body line\r\n..\r\n.\r\n")
        .await;
    c.expect(250).await;
    let msg = simple("bob@partner.test", ".first body line\r\n.\r\n");
    let r = c
        .mail("alice@example.org", &["bob@partner.test"], &msg)
        .await;
    assert_eq!(r.code, 250, "{}", r.text);
    let got = up.messages();
    assert_eq!(
        without_received(&got[0].data),
        b".X-Dot: 1\r\nFrom: alice@example.org\r\nTo: bob@partner.test\r\n\r\n.first body line\r\n.\r\n"
    );
    assert_eq!(without_received(&got[1].data), msg.as_bytes());
}

/// `.` alone right after DATA ends an empty message (it is not a line of
/// text); the guard does not wait for more and the session goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dot_right_after_data_ends_an_empty_message() {
    let up = Upstream::start().await;
    let guard = Guard::with_upstream(&up, POLICY).await;
    let mut c = Client::connect(guard.smtp).await;
    c.ehlo().await;
    c.begin_data("alice@example.org", &["bob@partner.test"])
        .await;
    c.send(".\r\nNOOP\r\n").await;
    // An empty message is a valid one (RFC 5321 4.1.1.4 puts no lower
    // bound on it); upstream gets just the guard's Received header.
    c.expect(250).await;
    c.expect(250).await;
    let got = up.messages();
    assert_eq!(got.len(), 1);
    assert_eq!(without_received(&got[0].data), b"");
}

/// RFC 5321 4.5.3.1.6: 998 octets of text per line pass (also when the
/// line starts with a dot and is 999 on the wire); 999 are refused with
/// `550 5.6.0`, in the body and in the header section alike (never split
/// into a new header line), and nothing goes upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lines_of_998_octets_pass_and_999_are_refused() {
    let up = Upstream::start().await;
    let guard = Guard::with_upstream(&up, POLICY).await;
    let mut c = Client::connect(guard.smtp).await;
    let long998 = format!("X-Long: {}", "h".repeat(998 - 8));
    let msg = format!(
        "From: alice@example.org\r\nTo: bob@partner.test\r\n{long998}\r\n\r\n.{}\r\n{}\r\n",
        "d".repeat(997),
        "b".repeat(998)
    );
    let r = c
        .mail("alice@example.org", &["bob@partner.test"], &msg)
        .await;
    assert_eq!(r.code, 250, "{}", r.text);
    assert_eq!(without_received(&up.messages()[0].data), msg.as_bytes());

    for over in [
        format!(
            "To: bob@partner.test\r\nX-Long: {}\r\n\r\nx\r\n",
            "h".repeat(999 - 8)
        ),
        format!("To: bob@partner.test\r\n\r\n{}\r\n", "b".repeat(999)),
        format!("To: bob@partner.test\r\n\r\n.{}\r\n", "d".repeat(998)),
    ] {
        c.begin_data("alice@example.org", &["bob@partner.test"])
            .await;
        c.send_message(&over).await;
        expect_status(&mut c, 550, "5.6.0").await;
    }
    assert_eq!(up.count(), 1);
}

/// `server.limits.max_line_length` is configurable and exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_line_length_limit_is_exact() {
    let up = Upstream::start().await;
    let guard = guard_with_limits(&up, "    max_line_length: 100\n").await;
    let mut c = Client::connect(guard.smtp).await;
    let ok = simple("bob@partner.test", &format!("{}\r\n", "a".repeat(100)));
    let r = c
        .mail("alice@example.org", &["bob@partner.test"], &ok)
        .await;
    assert_eq!(r.code, 250, "{}", r.text);
    c.begin_data("alice@example.org", &["bob@partner.test"])
        .await;
    c.send_message(&simple(
        "bob@partner.test",
        &format!("{}\r\n", "a".repeat(101)),
    ))
    .await;
    expect_status(&mut c, 550, "5.6.0").await;
    assert_eq!(up.count(), 1);
}

/// RFC 5321 2.3.8: only CRLF ends a line. A bare LF or bare CR anywhere
/// (an LF-only Unix client, a bare CR in a header, a bare LF right at the
/// start) is refused with `550 5.6.0` after the message's real end; the
/// rest of the data is never read as commands and the session goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bare_cr_and_lf_are_refused_and_the_session_goes_on() {
    let up = Upstream::start().await;
    let guard = Guard::with_upstream(&up, POLICY).await;
    let mut c = Client::connect(guard.smtp).await;
    c.ehlo().await;
    let cases: [&[u8]; 5] = [
        b"From: alice@example.org\nTo: bob@partner.test\n\nunix\n.\n\r\n.\r\n",
        b"From: alice@example.org\r\nTo: bob@partner.test\rBcc: x@evil.test\r\n\r\nbody\r\n.\r\n",
        b"\n.\r\nFrom: alice@example.org\r\n\r\nbody\r\n.\r\n",
        b"From: alice@example.org\r\n\r\nbody\rRSET\r\n.\r\n",
        b"From: alice@example.org\r\n\r\nbody\r\n\n.\r\nRSET\r\n.\r\n",
    ];
    for data in cases {
        c.begin_data("alice@example.org", &["bob@partner.test"])
            .await;
        // Raw bytes: the bare line ends must reach the guard as they are.
        c.send(data).await;
        let text = expect_status(&mut c, 550, "5.6.0").await;
        assert!(
            text.contains("bare"),
            "{:?}: {text}",
            String::from_utf8_lossy(data)
        );
    }
    // Exactly one reply per message: the next command is answered next.
    c.cmd("NOOP", 250).await;
    let r = c
        .mail(
            "alice@example.org",
            &["bob@partner.test"],
            &simple("bob@partner.test", "ok\r\n"),
        )
        .await;
    assert_eq!(r.code, 250, "{}", r.text);
    assert_eq!(up.count(), 1);
    assert_eq!(
        guard
            .metric("bccguard_refused_total{reason=\"bare_newline\"}")
            .await,
        5.0
    );
}

/// A CR inside a command line is not silently dropped (smtp-proto would
/// read `MAIL FROM:<a@x>\rRCPT ...` as one command and skip the CR).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bare_cr_inside_a_command_line_is_a_syntax_error() {
    let up = Upstream::start().await;
    let guard = Guard::with_upstream(&up, POLICY).await;
    let mut c = Client::connect(guard.smtp).await;
    c.ehlo().await;
    c.send("MAIL FROM:<alice@example.org>\rRCPT TO:<bob@partner.test>\r\n")
        .await;
    expect_status(&mut c, 501, "5.5.4").await;
    c.cmd("RCPT TO:<bob@partner.test>", 503).await;
}
