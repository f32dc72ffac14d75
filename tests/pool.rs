//! Black-box: upstream sessions kept between client sessions (the pool).
//! A scripted upstream counts its connections: consecutive clients share
//! one, and an idle one that upstream closed (quietly, or right at the next
//! MAIL) costs the next client nothing but a new connection: it never sees
//! an error for it. The same upstream checks that a client's pipelined
//! RCPTs go upstream as one batch.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use common::*;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// How the scripted upstream misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Quirk {
    /// A well-behaved server.
    None,
    /// Closes each connection right after its first message's 250.
    CloseAfterMessage,
    /// Drops each connection, without a reply, at its second MAIL.
    DropSecondMail,
    /// Refuses the first DATA command of each connection (554), leaving the
    /// transaction open, as servers do.
    RefuseFirstData,
    /// Answers RCPTs only once three are waiting (or another command
    /// comes): a guard that forwards a pipelined batch one RCPT at a time
    /// waits forever for the first reply.
    RcptRepliesInThrees,
    /// Drops the connection, without a reply, at the third RCPT.
    DropThirdRcpt,
}

/// Delivered messages as (connection number, recipients).
type Log = Arc<Mutex<Vec<(usize, Vec<String>)>>>;

struct Scripted {
    addr: SocketAddr,
    log: Log,
    connections: Arc<Mutex<usize>>,
}

impl Scripted {
    async fn start(quirk: Quirk) -> Scripted {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let log = Log::default();
        let connections = Arc::new(Mutex::new(0));
        let (l, n) = (log.clone(), connections.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let id = {
                    let mut n = n.lock().unwrap();
                    *n += 1;
                    *n
                };
                tokio::spawn(serve(stream, id, quirk, l.clone()));
            }
        });
        Scripted {
            addr,
            log,
            connections,
        }
    }

    fn delivered(&self) -> Vec<(usize, Vec<String>)> {
        self.log.lock().unwrap().clone()
    }

    fn connections(&self) -> usize {
        *self.connections.lock().unwrap()
    }
}

/// Minimal SMTP: enough for the guard's client.
async fn serve(stream: tokio::net::TcpStream, id: usize, quirk: Quirk, log: Log) {
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    let _ = w.write_all(b"220 scripted ESMTP\r\n").await;
    let (mut mails, mut rcpts, mut datas) = (0, Vec::new(), 0);
    // A transaction is open (MAIL accepted, no final dot or RSET since).
    let mut open = false;
    let mut line = String::new();
    // RCPT replies held back (RcptRepliesInThrees).
    let mut held = 0;
    loop {
        line.clear();
        if r.read_line(&mut line).await.unwrap_or(0) == 0 {
            return;
        }
        let verb = line.get(..4).unwrap_or_default().to_ascii_uppercase();
        if quirk == Quirk::RcptRepliesInThrees && verb != "RCPT" {
            for _ in 0..std::mem::take(&mut held) {
                let _ = w.write_all(b"250 2.1.5 ok\r\n").await;
            }
        }
        let reply: &[u8] = match verb.as_str() {
            "EHLO" => b"250-scripted\r\n250 PIPELINING\r\n",
            "MAIL" => {
                mails += 1;
                if quirk == Quirk::DropSecondMail && mails == 2 {
                    return;
                }
                if std::mem::replace(&mut open, true) {
                    b"503 5.5.1 nested MAIL command\r\n"
                } else {
                    rcpts.clear();
                    b"250 2.1.0 ok\r\n"
                }
            }
            "RCPT" => {
                let addr = line.split(['<', '>']).nth(1).unwrap_or_default();
                rcpts.push(addr.to_string());
                if quirk == Quirk::DropThirdRcpt && rcpts.len() == 3 {
                    return;
                }
                if quirk == Quirk::RcptRepliesInThrees {
                    held += 1;
                    if held < 3 {
                        continue;
                    }
                    held = 0;
                    b"250 2.1.5 ok\r\n250 2.1.5 ok\r\n250 2.1.5 ok\r\n"
                } else {
                    b"250 2.1.5 ok\r\n"
                }
            }
            "DATA" if quirk == Quirk::RefuseFirstData && datas == 0 => {
                datas += 1;
                b"554 5.3.0 no DATA for you\r\n"
            }
            "DATA" => {
                datas += 1;
                open = false;
                let _ = w.write_all(b"354 go ahead\r\n").await;
                loop {
                    line.clear();
                    if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    if line == ".\r\n" {
                        break;
                    }
                }
                log.lock().unwrap().push((id, std::mem::take(&mut rcpts)));
                let _ = w.write_all(b"250 2.0.0 queued\r\n").await;
                if quirk == Quirk::CloseAfterMessage {
                    return;
                }
                continue;
            }
            "RSET" => {
                open = false;
                b"250 2.0.0 ok\r\n"
            }
            "QUIT" => {
                let _ = w.write_all(b"221 bye\r\n").await;
                return;
            }
            _ => b"502 5.5.2 what\r\n",
        };
        let _ = w.write_all(reply).await;
    }
}

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

async fn guard_for(up: &Scripted) -> Guard {
    Guard::start(&yaml(Some(up.addr), POLICY)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consecutive_clients_share_one_upstream_session() {
    let up = Scripted::start(Quirk::None).await;
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
/// than that instead of reusing it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pool_keeps_what_pool_size_and_pool_idle_time_allow() {
    let with = |up: &Scripted, keys: &str| {
        yaml(Some(up.addr), POLICY).replacen("upstream:\n", &format!("upstream:\n{keys}"), 1)
    };
    let up = Scripted::start(Quirk::None).await;
    let guard = Guard::start(&with(&up, "  pool_size: 0\n")).await;
    for rcpt in ["a@partner.test", "b@partner.test", "c@partner.test"] {
        one_session(&guard, rcpt).await;
    }
    assert_eq!(up.connections(), 3, "{:?}", up.delivered());

    let up = Scripted::start(Quirk::None).await;
    // 2 s leaves a slow CI machine room between two sessions.
    let guard = Guard::start(&with(&up, "  pool_idle_time: 2s\n")).await;
    one_session(&guard, "a@partner.test").await;
    one_session(&guard, "b@partner.test").await;
    assert_eq!(up.connections(), 1, "reused within pool_idle_time");
    tokio::time::sleep(std::time::Duration::from_millis(3000)).await;
    one_session(&guard, "c@partner.test").await;
    assert_eq!(up.connections(), 2, "{:?}", up.delivered());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_session_upstream_closed_is_replaced_unseen() {
    let up = Scripted::start(Quirk::CloseAfterMessage).await;
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
    let up = Scripted::start(Quirk::DropSecondMail).await;
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
    let up = Scripted::start(Quirk::RefuseFirstData).await;
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
    let up = Scripted::start(Quirk::RcptRepliesInThrees).await;
    let yaml = yaml(Some(up.addr), POLICY).replace("command_timeout: 10s", "command_timeout: 2s");
    let guard = Guard::start(&yaml).await;
    let mut c = Client::connect(guard.smtp).await;
    c.cmd("EHLO client.test", 250).await;
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
    c.send(
        stuff(&message(
            "alice@example.org",
            "a@example.org",
            None,
            "x\r\n",
        )) + ".\r\n",
    )
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
    let up = Scripted::start(Quirk::DropThirdRcpt).await;
    let guard = guard_for(&up).await;
    let mut c = Client::connect(guard.smtp).await;
    c.cmd("EHLO client.test", 250).await;
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
    for quirk in [Quirk::CloseAfterMessage, Quirk::DropSecondMail] {
        let up = Scripted::start(quirk).await;
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
    let up = Scripted::start(Quirk::DropThirdRcpt).await;
    let guard = Guard::start(&deferred(&yaml(Some(up.addr), POLICY))).await;
    let mut c = Client::connect(guard.smtp).await;
    let rcpts = ["a@partner.test", "b@partner.test", "c@partner.test"];
    let msg = message("alice@example.org", "a@partner.test", None, "Hallo\r\n");
    let r = c.mail("alice@example.org", &rcpts, &msg).await;
    assert_eq!(r.code / 100, 4, "{}", r.text);
    assert!(up.delivered().is_empty());

    let up = Scripted::start(Quirk::RefuseFirstData).await;
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
