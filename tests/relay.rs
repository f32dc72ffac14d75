//! Black-box: relaying through the guard to a real SMTP server (aiosmtpd).
//! Never lose, never invent: upstream's replies reach the client, failures
//! keep their class, 250 only after upstream took the message.

mod common;

use common::*;

const T: &str = "multi_thread";

fn pass_message() -> String {
    message(
        "Alice <alice@example.org>",
        "bob@partner.test, \"Carol, Dr.\" <carol@other.test>",
        Some("team@example.org"),
        ".\r\n..\r\n.x leading dot\r\nGr\u{fc}\u{df}e aus K\u{f6}ln\r\n\r\n-- \r\nAlice\r\n",
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passing_message_arrives_byte_identical_apart_from_one_received_header() {
    let _ = T;
    let up = Upstream::start().await;
    let guard = Guard::with_upstream(&up, POLICY).await;
    let mut c = Client::connect(guard.smtp).await;
    let msg = pass_message();
    let r = c
        .mail(
            "alice@example.org",
            &["bob@partner.test", "carol@other.test"],
            &msg,
        )
        .await;
    assert_eq!(r.code, 250, "{}", r.text);
    assert!(
        r.text.contains("UP000001"),
        "upstream's own reply text reaches the client: {}",
        r.text
    );
    c.cmd("QUIT", 221).await;
    let got = up.messages();
    assert_eq!(got.len(), 1);
    assert_eq!(without_received(&got[0].data), msg.as_bytes());
    assert_eq!(got[0].mail_from, "alice@example.org");
    assert_eq!(got[0].rcpt_tos, ["bob@partner.test", "carol@other.test"]);
    let head = got[0].text();
    assert!(
        head.starts_with(
            "Received: from client.test ([127.0.0.1])\r\n\tby guard.test (bccguard) with ESMTP id "
        ),
        "{head}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_client_library_sends_through_the_guard() {
    use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
    let up = Upstream::start().await;
    let guard = Guard::with_upstream(&up, POLICY).await;
    let transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
        .port(guard.smtp.port())
        .build();
    let email = Message::builder()
        .from("Alice <alice@example.org>".parse().unwrap())
        .to("bob@partner.test".parse().unwrap())
        .cc("carol@example.org".parse().unwrap())
        .subject("Hallo")
        .body(String::from("Hallo Bob\r\n"))
        .unwrap();
    let resp = transport.send(email).await.expect("lettre send");
    assert_eq!(resp.code().to_string(), "250");
    let got = up.messages();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].rcpt_tos, ["bob@partner.test", "carol@example.org"]);
    assert!(got[0].text().contains("Subject: Hallo\r\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envelope_parameters_reach_upstream() {
    let up = Upstream::start().await;
    let guard = Guard::with_upstream(&up, POLICY).await;
    let mut c = Client::connect(guard.smtp).await;
    c.ehlo().await;
    c.cmd(
        "MAIL FROM:<j\u{f6}rg@example.org> SIZE=300 BODY=8BITMIME SMTPUTF8",
        250,
    )
    .await;
    c.cmd("RCPT TO:<bob@partner.test>", 250).await;
    c.cmd("DATA", 354).await;
    c.send("From: j\u{f6}rg@example.org\r\nTo: bob@partner.test\r\n\r\nHi\r\n.\r\n")
        .await;
    c.expect(250).await;
    let got = up.messages();
    assert_eq!(got[0].mail_from, "j\u{f6}rg@example.org");
    for p in ["SIZE=300", "BODY=8BITMIME", "SMTPUTF8"] {
        assert!(
            got[0].mail_options.iter().any(|o| o == p),
            "{p} missing in {:?}",
            got[0].mail_options
        );
    }
    assert!(got[0].text().contains("with UTF8SMTP id"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipelined_batch_with_one_refused_recipient_delivers_to_the_others() {
    refused_recipient_in_a_batch(Upstream::start().await).await;
}

/// The same with an upstream that offers PIPELINING: the batch goes upstream
/// in one write and the replies come back in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipelined_batch_forwarded_as_a_batch_keeps_each_reply() {
    refused_recipient_in_a_batch(Upstream::start_pipelining().await).await;
}

async fn refused_recipient_in_a_batch(up: Upstream) {
    let guard = Guard::with_upstream(&up, POLICY).await;
    let mut c = Client::connect(guard.smtp).await;
    c.ehlo().await;
    c.send("MAIL FROM:<alice@example.org>\r\nRCPT TO:<bob@partner.test>\r\nRCPT TO:<reject-me@partner.test>\r\nRCPT TO:<carol@other.test>\r\nDATA\r\n").await;
    c.expect(250).await;
    c.expect(250).await;
    let refused = c.expect(550).await;
    assert!(
        refused.contains("5.1.1") && refused.contains("User unknown"),
        "upstream's text reaches the client: {refused}"
    );
    c.expect(250).await;
    c.expect(354).await;
    c.send_message(&message(
        "alice@example.org",
        "bob@partner.test",
        None,
        "x\r\n",
    ))
    .await;
    c.expect(250).await;
    assert_eq!(
        up.messages()[0].rcpt_tos,
        ["bob@partner.test", "carol@other.test"]
    );
}

/// MAIL goes upstream with the first RCPT (one round trip less per
/// message). Upstream's refusal of the sender reaches the client with
/// upstream's own code and text as the answer to that RCPT and to every
/// later one, and nothing is delivered; the session then goes on. Both with
/// an upstream that pipelines (MAIL and RCPT in one write) and with one that
/// does not (one after the other).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstreams_refusal_of_the_sender_comes_with_the_first_rcpt() {
    for up in [Upstream::start().await, Upstream::start_pipelining().await] {
        let guard = Guard::with_upstream(&up, POLICY).await;
        let mut c = Client::connect(guard.smtp).await;
        c.ehlo().await;
        for (sender, code, status) in [
            ("tempfail-mail@example.org", 451, "4.3.0"),
            ("reject-mail@example.org", 553, "5.7.1"),
        ] {
            c.cmd(&format!("MAIL FROM:<{sender}>"), 250).await;
            for rcpt in ["bob@partner.test", "carol@partner.test"] {
                let text = c.cmd(&format!("RCPT TO:<{rcpt}>"), code).await;
                assert!(text.contains(status), "{text}");
            }
            c.cmd("DATA", 554).await;
            c.cmd("RSET", 250).await;
        }
        // A pipelined run after a refused MAIL: each RCPT gets the refusal.
        for (sender, code) in [("reject-mail", 553), ("tempfail-mail", 451)] {
            c.send(&format!(
                "MAIL FROM:<{sender}@example.org>\r\nRCPT TO:<a@partner.test>\r\n\
                 RCPT TO:<b@partner.test>\r\nRCPT TO:<c@partner.test>\r\nRSET\r\n"
            ))
            .await;
            for code in [250, code, code, code, 250] {
                c.expect(code).await;
            }
        }
        let r = c
            .mail(
                "alice@example.org",
                &["bob@partner.test"],
                &message("alice@example.org", "bob@partner.test", None, "x\r\n"),
            )
            .await;
        assert_eq!(r.code, 250, "{}", r.text);
        assert_eq!(up.count(), 1, "only the accepted sender's message");
        // Upstream said 451 twice, to each tempfail-mail MAIL; the guard
        // repeated it to every RCPT. Ops count upstream's answers, not the
        // repeats.
        let tempfail = "bccguard_upstream_errors_total{kind=\"tempfail\"}";
        assert_eq!(guard.metric(tempfail).await, 2.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_failures_keep_their_class() {
    let up = Upstream::start().await;
    let guard = Guard::with_upstream(&up, POLICY).await;
    let mut c = Client::connect(guard.smtp).await;
    c.ehlo().await;
    // 4xx and 5xx to MAIL: tested on their own below.
    // 4xx at RCPT.
    c.cmd("MAIL FROM:<alice@example.org>", 250).await;
    assert!(
        c.cmd("RCPT TO:<tempfail-x@partner.test>", 450)
            .await
            .contains("4.2.1")
    );
    c.cmd("RSET", 250).await;
    // 5xx and 4xx after the final dot.
    for (rcpt, code) in [
        ("data-reject@partner.test", 554),
        ("data-tempfail@partner.test", 452),
    ] {
        let r = c
            .send_mail(
                "alice@example.org",
                &[rcpt],
                &message("alice@example.org", rcpt, None, "x\r\n"),
            )
            .await;
        assert_eq!(r.code, code, "{}", r.text);
    }
    // Upstream drops the connection after the final dot: 4xx, never 250.
    let r = c
        .send_mail(
            "alice@example.org",
            &["data-drop@partner.test"],
            &message("alice@example.org", "data-drop@partner.test", None, "x\r\n"),
        )
        .await;
    assert_eq!(r.code, 451, "{}", r.text);
    assert!(r.text.contains("4.4.2"));
    // The session goes on with a fresh upstream connection.
    let r = c
        .mail(
            "alice@example.org",
            &["bob@partner.test"],
            &message("alice@example.org", "bob@partner.test", None, "again\r\n"),
        )
        .await;
    assert_eq!(r.code, 250, "{}", r.text);
    assert_eq!(up.count(), 1, "only the last message was delivered");
    assert_eq!(
        guard
            .metric("bccguard_upstream_errors_total{kind=\"closed\"}")
            .await,
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_upstream_gives_451_at_mail() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let guard = Guard::start(&yaml(Some(addr), POLICY)).await;
    let mut c = Client::connect(guard.smtp).await;
    c.ehlo().await;
    assert!(
        c.cmd("MAIL FROM:<alice@example.org>", 451)
            .await
            .contains("4.4.1")
    );
    c.cmd("RCPT TO:<bob@partner.test>", 503).await;
    assert_eq!(
        guard
            .metric("bccguard_upstream_errors_total{kind=\"connect\"}")
            .await,
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_client_relays_nothing_and_opens_no_upstream_connection() {
    let watch = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let yaml = yaml(Some(watch.local_addr().unwrap()), POLICY).replace(
        "trusted_networks: [\"127.0.0.0/8\"]",
        "trusted_networks: [\"10.0.0.0/8\"]",
    );
    let guard = Guard::start(&yaml).await;
    let mut c = Client::connect(guard.smtp).await;
    c.ehlo().await;
    assert!(
        c.cmd("MAIL FROM:<alice@example.org>", 530)
            .await
            .contains("5.7.0")
    );
    c.cmd("RCPT TO:<bob@partner.test>", 503).await;
    c.cmd("DATA", 503).await;
    c.cmd("QUIT", 221).await;
    let accepted =
        tokio::time::timeout(std::time::Duration::from_millis(300), watch.accept()).await;
    assert!(
        accepted.is_err(),
        "the guard connected upstream for an untrusted client"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rset_forgets_the_transaction() {
    let up = Upstream::start().await;
    let guard = Guard::with_upstream(&up, POLICY).await;
    let mut c = Client::connect(guard.smtp).await;
    c.ehlo().await;
    c.cmd("MAIL FROM:<alice@example.org>", 250).await;
    c.cmd("RCPT TO:<first@partner.test>", 250).await;
    c.cmd("RSET", 250).await;
    c.cmd("DATA", 503).await;
    let r = c
        .mail(
            "alice@example.org",
            &["second@partner.test"],
            &message("alice@example.org", "second@partner.test", None, "x\r\n"),
        )
        .await;
    assert_eq!(r.code, 250);
    let got = up.messages();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].rcpt_tos, ["second@partner.test"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_sequence_and_syntax_errors_are_answered() {
    let up = Upstream::start().await;
    let guard = Guard::with_upstream(&up, POLICY).await;
    let mut c = Client::connect(guard.smtp).await;
    c.cmd("MAIL FROM:<alice@example.org>", 503).await;
    let ehlo = c.ehlo().await;
    for ext in [
        "PIPELINING",
        "SIZE 10240000",
        "8BITMIME",
        "SMTPUTF8",
        "ENHANCEDSTATUSCODES",
    ] {
        assert!(ehlo.contains(ext), "{ext} not advertised: {ehlo}");
    }
    assert!(!ehlo.contains("CHUNKING"));
    c.cmd("RCPT TO:<bob@partner.test>", 503).await;
    c.cmd("FOO bar", 500).await;
    c.cmd("MAIL FROM:<alice@example.org> SIZE=99999999999", 552)
        .await;
    c.cmd("MAIL FROM:<alice@example.org>", 250).await;
    c.cmd("MAIL FROM:<alice@example.org>", 503).await;
    c.cmd("RCPT TO:<@relay.test:bob@partner.test>", 550).await;
    c.cmd("RCPT TO:<bob%partner.test@example.org>", 550).await;
    c.cmd("BDAT 10 LAST", 502).await;
    c.cmd("NOOP", 250).await;
    c.cmd("VRFY bob", 252).await;
    c.cmd("QUIT", 221).await;
    assert!(c.closed().await);
    assert_eq!(up.count(), 0);
}

/// SMTP smuggling (CVE-2023-51764/5/6): each sequence that some server
/// might read as end-of-data is followed by a second, smuggled transaction.
/// The guard must never let upstream see two messages, and must refuse the
/// message with the bare line end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smuggling_sequences_never_produce_a_second_message() {
    let up = Upstream::start().await;
    let guard = Guard::with_upstream(&up, POLICY).await;
    let sequences: &[&[u8]] = &[
        b"\n.\n",
        b"\r.\r",
        b"\r.\n",
        b"\n.\r",
        b"\n.\r\n",
        b"\r.\r\n",
        b"\r\n.\n",
        b"\r\n.\r",
        b"\r\n\x00.\r\n",
        b"\r\n.\x00\r\n",
        b"\r\n.\r\r\n",
        b"\r\r\n.\r\r\n",
        b"\n\n.\r\n",
    ];
    for seq in sequences {
        let mut c = Client::connect(guard.smtp).await;
        c.ehlo().await;
        c.begin_data("alice@example.org", &["bob@partner.test"])
            .await;
        // Raw bytes: the sequence under test must reach the guard as is.
        let mut data = b"From: alice@example.org\r\nTo: bob@partner.test\r\n\r\nfirst".to_vec();
        data.extend_from_slice(seq);
        data.extend_from_slice(
            b"MAIL FROM:<alice@example.org>\r\nRCPT TO:<victim@partner.test>\r\nDATA\r\nTo: victim@partner.test\r\n\r\nsmuggled\r\n.\r\n",
        );
        c.send(&data).await;
        let r = c.reply().await.expect("a reply to the data");
        let why = if seq.contains(&0) { "NUL" } else { "bare" };
        assert_eq!(r.code, 550, "sequence {seq:?}: {}", r.text);
        assert!(
            r.text.contains("5.6.0") && r.text.contains(why),
            "{seq:?}: {}",
            r.text
        );
        c.cmd("QUIT", 221).await;
    }
    assert_eq!(up.count(), 0, "upstream received a message");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forty_clients_twenty_messages_each_every_message_arrives_exactly_once() {
    let up = Upstream::start().await;
    let guard = Guard::with_upstream(&up, POLICY).await;
    let smtp = guard.smtp;
    let mut tasks = tokio::task::JoinSet::new();
    for client in 0..40 {
        tasks.spawn(async move {
            let mut c = Client::connect(smtp).await;
            c.ehlo().await;
            for n in 0..20 {
                let id = format!("<c{client}-m{n}@example.org>");
                let msg = format!("From: alice@example.org\r\nTo: bob@partner.test\r\nMessage-ID: {id}\r\n\r\nmessage {n}\r\n");
                let r = c
                    .send_mail("alice@example.org", &["bob@partner.test"], &msg)
                    .await;
                assert_eq!(r.code, 250, "{}", r.text);
            }
            c.cmd("QUIT", 221).await;
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.expect("client task");
    }
    let got = up.messages();
    let mut ids: Vec<String> = got
        .iter()
        .map(|m| {
            m.text()
                .lines()
                .find(|l| l.starts_with("Message-ID:"))
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(ids.len(), 800);
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 800, "a message arrived twice");
    assert_eq!(
        guard
            .metric("bccguard_messages_total{action=\"pass\"}")
            .await,
        800.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_and_overlong_input_is_refused_and_the_session_survives() {
    let up = Upstream::start().await;
    let yaml = yaml(Some(up.addr), POLICY).replace(
        "trusted_networks: [\"127.0.0.0/8\"]\n",
        "trusted_networks: [\"127.0.0.0/8\"]\n  limits:\n    max_message_size: 2000\n",
    );
    let guard = Guard::start(&yaml).await;
    let mut c = Client::connect(guard.smtp).await;
    let r = c
        .mail(
            "alice@example.org",
            &["bob@partner.test"],
            &message(
                "alice@example.org",
                "bob@partner.test",
                None,
                &"0123456789\r\n".repeat(1000),
            ),
        )
        .await;
    assert_eq!(r.code, 552, "{}", r.text);
    assert!(r.text.contains("5.3.4"));
    // A 999-octet line, one over the RFC limit.
    let r = c
        .send_mail(
            "alice@example.org",
            &["bob@partner.test"],
            &format!("To: bob@partner.test\r\n\r\n{}\r\n", "x".repeat(999)),
        )
        .await;
    assert_eq!(r.code, 550, "{}", r.text);
    // A 17,000-byte command line.
    c.cmd(&format!("NOOP {}", "y".repeat(17_000)), 500).await;
    // Still usable: a 998-octet line passes.
    let r = c
        .mail(
            "alice@example.org",
            &["bob@partner.test"],
            &format!("To: bob@partner.test\r\n\r\n{}\r\n", "z".repeat(998)),
        )
        .await;
    assert_eq!(r.code, 250, "{}", r.text);
    assert_eq!(up.count(), 1);
}
