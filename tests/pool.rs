//! Black-box: upstream sessions kept between client sessions (the pool).
//! A scripted upstream (`FakeSmtp` of tests/common/peers.rs) counts its
//! connections: consecutive clients share one, and an idle one that
//! upstream closed (quietly, or right at the next MAIL) costs the next
//! client nothing but a new connection: it never sees an error for it. The
//! same upstream checks that a client's pipelined RCPTs go upstream as one
//! batch.

mod common;

use std::time::Duration;

use common::clock::HeldClock;
use common::peers::{FakeSmtp, Script};
use common::*;

/// One client session: one message to `rcpt`, QUIT, and the guard's close
/// (so its upstream session is back in the pool before the next client).
async fn one_session(guard: &Guard, rcpt: &str) {
    let mut c = Client::connect(guard.smtp).await;
    let msg = message("alice@example.org", rcpt, None, "Hallo\r\n");
    let r = c.mail("alice@example.org", &[rcpt], &msg).await;
    assert_eq!(r.code, 250, "{}", r.text);
    c.cmd("QUIT", 221).await;
    assert!(c.closed().await);
}

async fn guard_for(up: &FakeSmtp) -> Guard {
    Guard::start(&yaml(Some(up.addr), POLICY)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consecutive_clients_share_one_upstream_session() {
    let up = FakeSmtp::start(Script::Normal).await;
    let guard = guard_for(&up).await;
    for rcpt in ["a@partner.test", "b@partner.test", "c@partner.test"] {
        one_session(&guard, rcpt).await;
    }
    let got = up.delivered();
    assert_eq!(got.len(), 3);
    assert!(got.iter().all(|(conn, _)| *conn == 1), "{got:?}");
    assert_eq!(up.connections(), 1);
}

/// `upstream.pool_size: 0` keeps no idle session: every client gets its own
/// upstream connection. `upstream.pool_idle_time` closes one idle longer
/// than that instead of reusing it. On tokio's paused clock, moved on only
/// between sessions.
#[tokio::test(start_paused = true)]
async fn the_pool_keeps_what_pool_size_and_pool_idle_time_allow() {
    let clock = HeldClock::hold();
    let with = |up: &FakeSmtp, keys: &str| {
        yaml(Some(up.addr), POLICY).replacen("upstream:\n", &format!("upstream:\n{keys}"), 1)
    };
    let up = FakeSmtp::start(Script::Normal).await;
    let guard = Guard::start(&with(&up, "  pool_size: 0\n")).await;
    for rcpt in ["a@partner.test", "b@partner.test", "c@partner.test"] {
        one_session(&guard, rcpt).await;
    }
    assert_eq!(up.connections(), 3, "{:?}", up.delivered());

    let up = FakeSmtp::start(Script::Normal).await;
    // The clock stands still between the two sessions, however slow the
    // machine.
    let guard = Guard::start(&with(&up, "  pool_idle_time: 2s\n")).await;
    one_session(&guard, "a@partner.test").await;
    one_session(&guard, "b@partner.test").await;
    assert_eq!(up.connections(), 1, "reused within pool_idle_time");
    clock.advance(Duration::from_millis(3000)).await;
    one_session(&guard, "c@partner.test").await;
    assert_eq!(up.connections(), 2, "{:?}", up.delivered());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_session_upstream_closed_is_replaced_unseen() {
    let up = FakeSmtp::start(Script::CloseAfterOne).await;
    let guard = guard_for(&up).await;
    one_session(&guard, "a@partner.test").await;
    one_session(&guard, "b@partner.test").await;
    let got = up.delivered();
    assert_eq!(
        got,
        [
            (1, vec!["a@partner.test".to_string()]),
            (2, vec!["b@partner.test".to_string()])
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pooled_session_that_dies_at_mail_is_retried_once_on_a_new_one() {
    let up = FakeSmtp::start(Script::DropSecondMail).await;
    let guard = guard_for(&up).await;
    one_session(&guard, "a@partner.test").await;
    one_session(&guard, "b@partner.test").await;
    let got = up.delivered();
    assert_eq!(
        got,
        [
            (1, vec!["a@partner.test".to_string()]),
            (2, vec!["b@partner.test".to_string()])
        ]
    );
    assert_eq!(
        guard
            .metric("bccguard_upstream_errors_total{kind=\"closed\"}")
            .await,
        0.0,
        "a retried pooled session is not an upstream error"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_data_command_leaves_no_transaction_open_upstream() {
    let up = FakeSmtp::start(Script::RefuseFirstData).await;
    let guard = guard_for(&up).await;
    let mut c = Client::connect(guard.smtp).await;
    let msg = message("alice@example.org", "a@partner.test", None, "Hallo\r\n");
    let r = c.mail("alice@example.org", &["a@partner.test"], &msg).await;
    assert_eq!(
        r.code, 554,
        "upstream's refusal of DATA reaches the client: {}",
        r.text
    );
    // Same client session, same upstream session: MAIL must not be nested.
    let r = c.mail("alice@example.org", &["b@partner.test"], &msg).await;
    assert_eq!(r.code, 250, "{}", r.text);
    c.cmd("QUIT", 221).await;
    assert!(c.closed().await);
    // And the session the pool kept is clean for the next client.
    one_session(&guard, "c@partner.test").await;
    let got = up.delivered();
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(up.connections(), 1);
}

/// RFC 2920: RCPTs a client pipelines go upstream in one write. This
/// upstream answers only once three RCPTs are waiting; forwarded one at a
/// time, the first would wait for its reply until `command_timeout` (2 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipelined_run_of_rcpts_goes_upstream_as_one_batch() {
    let up = FakeSmtp::start(Script::RcptRepliesInThrees).await;
    let yaml = yaml(Some(up.addr), POLICY).replace("command_timeout: 10s", "command_timeout: 2s");
    let guard = Guard::start(&yaml).await;
    let mut c = Client::connect(guard.smtp).await;
    c.ehlo().await;
    let rcpts = ["a@example.org", "b@example.org", "c@example.org"];
    c.send(
        "MAIL FROM:<alice@example.org>\r\nRCPT TO:<a@example.org>\r\n\
         RCPT TO:<b@example.org>\r\nRCPT TO:<c@example.org>\r\nDATA\r\n",
    )
    .await;
    for code in [250, 250, 250, 250, 354] {
        let r = c.reply().await.expect("reply");
        assert_eq!(r.code, code, "{}", r.text);
    }
    c.send_message(&message(
        "alice@example.org",
        "a@example.org",
        None,
        "x\r\n",
    ))
    .await;
    c.expect(250).await;
    assert_eq!(up.delivered(), [(1, rcpts.map(String::from).to_vec())]);
}

/// Upstream drops the connection inside a forwarded batch: the RCPTs it
/// answered keep their 250, the one it did not gets 451 4.4.2, the rest are
/// answered as they would be one by one (no transaction any more), and
/// nothing is delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_lost_inside_a_batch_answers_every_rcpt_in_order() {
    let up = FakeSmtp::start(Script::DropThirdRcpt).await;
    let guard = guard_for(&up).await;
    let mut c = Client::connect(guard.smtp).await;
    c.ehlo().await;
    c.send(
        "MAIL FROM:<alice@example.org>\r\nRCPT TO:<a@example.org>\r\nRCPT TO:<b@example.org>\r\n\
         RCPT TO:<c@example.org>\r\nRCPT TO:<d@example.org>\r\nDATA\r\n",
    )
    .await;
    let mut got = Vec::new();
    for _ in 0..6 {
        got.push(c.reply().await.expect("reply"));
    }
    let codes: Vec<u16> = got.iter().map(|r| r.code).collect();
    assert_eq!(codes, [250, 250, 250, 451, 503, 503], "{got:?}");
    assert!(got[3].text.contains("4.4.2"), "{}", got[3].text);
    assert!(up.delivered().is_empty());
}

/// `upstream.recipients: deferred`: upstream first hears of a transaction
/// at the client's final dot, so that is where a pooled session upstream
/// closed while idle (quietly, or right at the next MAIL) is found dead and
/// replaced; the client never sees it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deferred_a_dead_pooled_session_is_replaced_at_the_dot_unseen() {
    for quirk in [Script::CloseAfterOne, Script::DropSecondMail] {
        let up = FakeSmtp::start(quirk).await;
        let guard = Guard::start(&deferred(&yaml(Some(up.addr), POLICY))).await;
        one_session(&guard, "a@partner.test").await;
        one_session(&guard, "b@partner.test").await;
        assert_eq!(
            up.delivered(),
            [
                (1, vec!["a@partner.test".to_string()]),
                (2, vec!["b@partner.test".to_string()])
            ],
            "{quirk:?}"
        );
        assert_eq!(
            guard
                .metric("bccguard_upstream_errors_total{kind=\"closed\"}")
                .await,
            0.0,
            "{quirk:?}: a replaced pooled session is not an upstream error"
        );
    }
}

/// Deferred: a connection lost in the middle of the envelope (not a pooled
/// one) leaves nothing delivered, so the client hears 4xx and keeps the
/// message; a refused DATA is upstream's answer, and the transaction it
/// left open upstream is reset before the next one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deferred_a_broken_envelope_or_refused_data_is_the_clients_to_keep() {
    let up = FakeSmtp::start(Script::DropThirdRcpt).await;
    let guard = Guard::start(&deferred(&yaml(Some(up.addr), POLICY))).await;
    let mut c = Client::connect(guard.smtp).await;
    let rcpts = ["a@partner.test", "b@partner.test", "c@partner.test"];
    let msg = message("alice@example.org", "a@partner.test", None, "Hallo\r\n");
    let r = c.mail("alice@example.org", &rcpts, &msg).await;
    assert_eq!(r.code / 100, 4, "{}", r.text);
    assert!(up.delivered().is_empty());

    let up = FakeSmtp::start(Script::RefuseFirstData).await;
    let guard = Guard::start(&deferred(&yaml(Some(up.addr), POLICY))).await;
    let mut c = Client::connect(guard.smtp).await;
    let r = c.mail("alice@example.org", &rcpts[..1], &msg).await;
    assert_eq!(r.code, 554, "{}", r.text);
    assert!(r.text.contains("no DATA for you"), "{}", r.text);
    let r = c.mail("alice@example.org", &rcpts[1..], &msg).await;
    assert_eq!(r.code, 250, "{}", r.text);
    assert_eq!(
        up.delivered(),
        [(
            1,
            vec!["b@partner.test".to_string(), "c@partner.test".to_string()]
        )]
    );
}
