//! Black-box: a fleet of two guards behind a TCP load balancer that speaks
//! the PROXY protocol, the way HAProxy, nginx `stream` or a cloud load
//! balancer fronts them. The balancer is written here, independently of the
//! guard's parser: it round-robins connections and prepends a v1 or v2
//! header claiming the client is 203.0.113.7 (TEST-NET-3), which is the
//! only network the guards trust for relaying; loopback, where the
//! balancer really connects from, is trusted only to send the header.
//!
//! So a relayed message proves that trust, the `Received` header, the
//! decision's log and the incident record all use the address from the
//! header; connections without a valid header, or from a peer that is not a
//! trusted proxy, never get a greeting.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::peers::{FakeSmtp, Script};
use common::*;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

/// The client address the balancer claims.
const CLIENT: &str = "203.0.113.7";

/// What the balancer sends before relaying.
#[derive(Clone, Copy, Debug)]
enum Preamble {
    V1,
    /// v2 PROXY over TCP4, with two TLVs the guard must skip.
    V2,
    /// v2 LOCAL: the balancer's own connection (a health check).
    V2Local,
    /// Something that is not a PROXY header.
    Garbage,
}

/// The header bytes, built from the specification (HAProxy's
/// doc/proxy-protocol.txt 2.1 and 2.2), not from the guard's code.
fn preamble(kind: Preamble, src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let (IpAddr::V4(s), IpAddr::V4(d)) = (src.ip(), dst.ip()) else {
        panic!("IPv4 only in this balancer");
    };
    let signature = b"\x0D\x0A\x0D\x0A\x00\x0D\x0A\x51\x55\x49\x54\x0A";
    match kind {
        Preamble::V1 => {
            format!("PROXY TCP4 {s} {d} {} {}\r\n", src.port(), dst.port()).into_bytes()
        }
        Preamble::V2 => {
            let mut block = Vec::new();
            block.extend_from_slice(&s.octets());
            block.extend_from_slice(&d.octets());
            block.extend_from_slice(&src.port().to_be_bytes());
            block.extend_from_slice(&dst.port().to_be_bytes());
            block.extend_from_slice(b"\x01\x00\x04smtp"); // PP2_TYPE_ALPN
            block.extend_from_slice(b"\x04\x00\x02\x00\x00"); // PP2_TYPE_NOOP
            let mut h = signature.to_vec();
            h.extend_from_slice(&[0x21, 0x11]);
            h.extend_from_slice(&(block.len() as u16).to_be_bytes());
            h.extend_from_slice(&block);
            h
        }
        Preamble::V2Local => {
            let mut h = signature.to_vec();
            h.extend_from_slice(&[0x20, 0x00, 0x00, 0x00]);
            h
        }
        Preamble::Garbage => b"HELLO I AM YOUR PROXY\r\n".to_vec(),
    }
}

/// A round-robin TCP balancer on 127.0.0.1, port 0.
struct Balancer {
    addr: SocketAddr,
    /// Connections relayed so far.
    relayed: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Balancer {
    async fn start(backends: Vec<SocketAddr>, kind: Preamble) -> Balancer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let relayed = Arc::new(AtomicUsize::new(0));
        let count = relayed.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut down, peer)) = listener.accept().await {
                let n = count.fetch_add(1, Ordering::SeqCst);
                let backend = backends[n % backends.len()];
                let claimed = SocketAddr::new(CLIENT.parse().unwrap(), peer.port());
                tokio::spawn(async move {
                    let mut up = TcpStream::connect(backend).await.expect("backend");
                    // Sent at once with the connection, as 2 asks.
                    up.write_all(&preamble(kind, claimed, addr))
                        .await
                        .expect("preamble");
                    let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
                });
            }
        });
        Balancer {
            addr,
            relayed,
            task,
        }
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A guard that expects PROXY headers from `proxies` and lets only the
/// claimed client network relay.
async fn guard(up: &Upstream, name: &str, proxies: &str) -> Guard {
    guard_with(up, name, proxies, "").await
}

/// [`guard`] with more `server:` keys (indented by two spaces).
async fn guard_with(up: &Upstream, name: &str, proxies: &str, server: &str) -> Guard {
    Guard::start(&format!(
        "server:
  listen: [\"127.0.0.1:0\"]
  hostname: {name}
  trusted_networks: [\"203.0.113.0/24\"]
  proxy_protocol: true
  proxy_trusted_networks: [{proxies}]
{server}upstream:
  address: \"{}\"
  connect_timeout: 5s
  command_timeout: 10s
  data_timeout: 10s
metrics:
  listen: \"127.0.0.1:0\"
incidents:
  path: INCIDENTS
{POLICY}",
        up.addr
    ))
    .await
}

fn passing() -> (Vec<&'static str>, String) {
    let rcpts = vec!["bob@partner.test", "carol@other.test"];
    let msg = message(
        "alice@example.org",
        "bob@partner.test, carol@other.test",
        None,
        "Hallo\r\n",
    );
    (rcpts, msg)
}

/// Five external addresses in To: over the test threshold of 3.
fn open_list() -> (Vec<String>, String) {
    let rcpts = externals(5);
    let msg = message("alice@example.org", &rcpts.join(", "), None, "Termin\r\n");
    (rcpts, msg)
}

async fn send(lb: SocketAddr, rcpts: &[&str], msg: &str) -> u16 {
    let mut c = Client::connect(lb).await;
    let r = c.mail("alice@example.org", rcpts, msg).await;
    c.cmd("QUIT", 221).await;
    r.code
}

/// Two messages per guard through the balancer: each guard sees one that
/// passes and one open list, and records the header's client everywhere.
async fn two_guards_behind(kind: Preamble) {
    let up = Upstream::start().await;
    let a = guard(&up, "guard-a.test", "\"127.0.0.0/8\"").await;
    let b = guard(&up, "guard-b.test", "\"127.0.0.0/8\"").await;
    let lb = Balancer::start(vec![a.smtp, b.smtp], kind).await;
    let (ok_rcpts, ok_msg) = passing();
    let (bad, bad_msg) = open_list();
    let bad_rcpts: Vec<&str> = bad.iter().map(String::as_str).collect();
    // Round robin: a, b, a, b.
    assert_eq!(send(lb.addr, &ok_rcpts, &ok_msg).await, 250, "{kind:?} a");
    assert_eq!(send(lb.addr, &ok_rcpts, &ok_msg).await, 250, "{kind:?} b");
    assert_eq!(send(lb.addr, &bad_rcpts, &bad_msg).await, 550, "{kind:?} a");
    assert_eq!(send(lb.addr, &bad_rcpts, &bad_msg).await, 550, "{kind:?} b");
    assert_eq!(lb.relayed.load(Ordering::SeqCst), 4);

    let delivered = up.messages();
    assert_eq!(
        delivered.len(),
        2,
        "only the passing messages reach upstream"
    );
    let mut by = Vec::new();
    for d in &delivered {
        let head = d.head();
        assert!(
            head.starts_with(&format!("Received: from client.test ([{CLIENT}])")),
            "{head}"
        );
        by.push(if head.contains("by guard-a.test") {
            "a"
        } else {
            "b"
        });
    }
    by.sort();
    assert_eq!(by, ["a", "b"], "one passing message through each guard");

    for (name, g) in [("a", &a), ("b", &b)] {
        let incidents = g.incidents();
        assert_eq!(incidents.len(), 1, "guard {name}: {incidents:?}");
        assert_eq!(incidents[0]["client_ip"], CLIENT, "guard {name}");
        assert_eq!(incidents[0]["action"], "reject", "guard {name}");
        assert_eq!(incidents[0]["visible_external"], 5, "guard {name}");
        assert_eq!(
            g.metric("bccguard_messages_total{action=\"pass\"}").await,
            1.0
        );
        assert_eq!(
            g.metric("bccguard_messages_total{action=\"reject\"}").await,
            1.0
        );
        assert_eq!(
            g.metric("bccguard_incidents_total{action=\"reject\"}")
                .await,
            1.0
        );
        assert_eq!(
            g.metric("bccguard_refused_total{reason=\"proxy_header\"}")
                .await,
            0.0
        );
        let (code, body) = http_get(g.metrics, "/readyz").await;
        assert_eq!(code, 200, "guard {name}: {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_guards_behind_a_proxy_v2_balancer_decide_and_record_the_real_client() {
    two_guards_behind(Preamble::V2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_guards_behind_a_proxy_v1_balancer_decide_and_record_the_real_client() {
    two_guards_behind(Preamble::V1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_without_a_valid_header_get_no_greeting() {
    let up = Upstream::start().await;
    let g = guard(&up, "guard.test", "\"127.0.0.0/8\"").await;

    // A mail client straight to the guard: it speaks SMTP, not PROXY.
    let mut direct = Client::connect_raw(g.smtp).await;
    direct.send("EHLO client.test\r\n").await;
    assert!(direct.closed().await, "no greeting without a header");

    // A balancer that sends garbage instead of a header.
    let lb = Balancer::start(vec![g.smtp], Preamble::Garbage).await;
    let mut c = Client::connect_raw(lb.addr).await;
    assert!(c.closed().await, "no greeting after a garbage header");

    // A peer that connects and closes (a TCP port probe) is not counted.
    drop(TcpStream::connect(g.smtp).await.expect("probe"));

    assert_eq!(
        g.metric("bccguard_refused_total{reason=\"proxy_header\"}")
            .await,
        2.0
    );
    assert_eq!(g.metric("bccguard_sessions_total").await, 0.0);
    assert_eq!(up.count(), 0);
}

/// `server.proxy_protocol_timeout`: a trusted balancer that connects and
/// says nothing is closed once the timeout passes, without a greeting, and
/// counted; not before.
///
/// Real time (0.7 s), not tokio's paused clock: nothing shows when the
/// guard has accepted the connection and begun to wait for the header, so
/// a test moving a held clock could move it before that wait begins
/// (tests/common/clock.rs); and the upstream is aiosmtpd, a process of its
/// own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_balancer_is_closed_after_proxy_protocol_timeout() {
    let up = Upstream::start().await;
    let g = guard_with(
        &up,
        "guard.test",
        "\"127.0.0.0/8\"",
        "  proxy_protocol_timeout: 700ms\n",
    )
    .await;
    let started = std::time::Instant::now();
    let mut c = Client::connect_raw(g.smtp).await;
    assert!(c.closed().await, "no greeting without a header");
    let waited = started.elapsed();
    assert!(
        waited >= std::time::Duration::from_millis(650)
            && waited < std::time::Duration::from_secs(4),
        "closed after {waited:?}"
    );
    assert_eq!(
        g.metric("bccguard_refused_total{reason=\"proxy_header\"}")
            .await,
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_is_not_a_trusted_proxy_is_dropped_even_with_a_valid_header() {
    let up = Upstream::start().await;
    // Only 192.0.2.0/24 may send headers; the balancer is on loopback.
    let g = guard(&up, "guard.test", "\"192.0.2.0/24\"").await;
    let lb = Balancer::start(vec![g.smtp], Preamble::V2).await;
    let mut c = Client::connect_raw(lb.addr).await;
    assert!(c.closed().await, "no greeting for an untrusted proxy");
    assert_eq!(
        g.metric("bccguard_refused_total{reason=\"proxy_untrusted\"}")
            .await,
        1.0
    );
    assert_eq!(g.metric("bccguard_sessions_total").await, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_health_check_is_served_as_the_balancer_itself_which_may_not_relay() {
    let up = Upstream::start().await;
    let g = guard(&up, "guard.test", "\"127.0.0.0/8\"").await;
    let lb = Balancer::start(vec![g.smtp], Preamble::V2Local).await;
    let mut c = Client::connect(lb.addr).await;
    c.cmd("EHLO lb.test", 250).await;
    // 2.2: LOCAL means "use the real connection endpoints": loopback, which
    // is not in trusted_networks here.
    c.cmd("MAIL FROM:<alice@example.org>", 530).await;
    c.cmd("QUIT", 221).await;
    assert_eq!(
        g.metric("bccguard_refused_total{reason=\"relay_denied\"}")
            .await,
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_draining_readyz_says_503_healthz_200_and_the_message_in_delivery_completes() {
    // A scripted upstream that holds its reply to the final dot until told.
    let up = FakeSmtp::start(Script::HoldFirstDot).await;
    let mut g = Guard::start(&format!(
        "server:
  listen: [\"127.0.0.1:0\"]
  hostname: guard.test
  trusted_networks: [\"203.0.113.0/24\"]
  proxy_protocol: true
  proxy_trusted_networks: [\"127.0.0.1\"]
upstream:
  address: \"{}\"
metrics:
  listen: \"127.0.0.1:0\"
incidents:
  path: INCIDENTS
{POLICY}",
        up.addr
    ))
    .await;
    let lb = Balancer::start(vec![g.smtp], Preamble::V2).await;
    let (rcpts, msg) = passing();
    let mut c = Client::connect(lb.addr).await;
    c.ehlo().await;
    c.begin_data("alice@example.org", &rcpts).await;
    c.send_message(&msg).await;
    tokio::time::timeout(WAIT, up.until_paused())
        .await
        .expect("upstream has the message");

    // The guard now waits for upstream's reply: shut it down meanwhile.
    g.begin_shutdown();
    let shared = g.shared.clone();
    tokio::time::timeout(WAIT, async {
        while !shared.is_draining() {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("drain begins");
    let (code, body) = http_get(g.metrics, "/readyz").await;
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("draining"), "{body}");
    assert_eq!(http_get(g.metrics, "/healthz").await.0, 200);
    let (code, _) = http_get(g.metrics, "/metrics").await;
    assert_eq!(code, 200, "metrics are still served during the drain");

    up.resume();
    let r = c.reply().await.expect("final reply");
    assert_eq!(r.code, 250, "the message in delivery completes: {}", r.text);
    assert!(r.text.contains("STALL1"), "{}", r.text);
    g.stop().await;
}
