//! The DPO console's figures (issue 17: "10,000 incidents must page
//! instantly", goal under 50 ms a page on this machine): a register of
//! 10,000 incidents (every tenth disclosed, 200 still held) in a real
//! SQLite store, the console on a loopback socket, a logged-in session,
//! and each page fetched over HTTP/1.1 repeatedly; the median and the
//! 95th percentile per page, and the process's resident memory before the
//! console and after the run. `cargo bench --bench console`.
//!
//! Run by `cargo test --all-targets` (without `--bench`), it is a quick
//! smoke test instead: 500 incidents, 3 requests a page, every page 200.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bccguard::config::Config;
use bccguard::console::auth;
use bccguard::incident::Workflow;
use bccguard::incident::record::Record;
use bccguard::incident::store::{Class, Held, HoldState, Incident, Role, SqliteStore, Store, User};
use bccguard::metrics::Metrics;

/// Incidents in the register.
const INCIDENTS: usize = 10_000;
/// Requests per page measured (after a warm-up of a few).
const ROUNDS: usize = 200;
/// The same, as `cargo test` runs it (a smoke test, not a measurement).
const SMOKE: (usize, usize) = (500, 3);

fn record(n: usize) -> Record {
    let v = serde_json::json!({
        "id": format!("06H{n:013}"),
        "time": "2026-12-01T10:00:00Z",
        "action": if n.is_multiple_of(10) { "monitor" } else if n % 50 == 1 { "hold" } else { "reject" },
        "class": if n.is_multiple_of(10) { "disclosed" } else { "prevented" },
        "rule": "default",
        "client_ip": "192.0.2.10",
        "mail_from": format!("sender{}@example.org", n % 40),
        "subject": format!("Terminabsage Nr. {n} <b>wichtig</b>"),
        "visible_external": 12 + n % 30,
        "visible_internal": 1,
        "external_domains": 3,
        "display_names": 2,
        "envelope_recipients": 13 + n % 30,
        "size": 4000,
        "threshold": 10,
        "trigger": "addresses",
        "reason": "over threshold",
        "outcome": "rejected",
        "queue_id": format!("06H{n:013}"),
    });
    serde_json::from_value(v).expect("a record")
}

fn fill(store: &SqliteStore, now: i64, incidents: usize) {
    for n in 0..incidents {
        let r = record(n);
        let at = now - (incidents - n) as i64 * 60;
        let held = (r.action == "hold").then(|| Held {
            id: r.id.clone(),
            held_at: at,
            mail_from: r.mail_from.clone(),
            mail_params: String::new(),
            rcpts: vec![("p1@ext.test".into(), String::new())],
            received: String::new(),
            message: b"Subject: x\r\n\r\nbody\r\n".to_vec(),
        });
        let class = if r.class == "disclosed" {
            Class::Disclosed
        } else {
            Class::Prevented
        };
        let i = Incident {
            class,
            disclosed_at: (class == Class::Disclosed).then_some(at),
            recorded_at: at,
            hold: held.as_ref().map(|_| HoldState::Held),
            record: r,
        };
        store
            .record(&i, &[], held.as_ref(), &[], None)
            .expect("record");
    }
}

/// One GET (or POST with a form) over a fresh connection: (status, body
/// bytes, Set-Cookie).
fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    cookie: &str,
    form: &str,
) -> (u16, usize, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    let mut req =
        format!("{method} {path} HTTP/1.1\r\nHost: b\r\nConnection: close\r\nCookie: {cookie}\r\n");
    if !form.is_empty() {
        req.push_str(&format!(
            "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
            form.len()
        ));
    }
    req.push_str("\r\n");
    req.push_str(form);
    s.write_all(req.as_bytes()).expect("send");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read");
    let text = String::from_utf8_lossy(&raw);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let set_cookie = text
        .lines()
        .find_map(|l| {
            l.strip_prefix("set-cookie: ")
                .or_else(|| l.strip_prefix("Set-Cookie: "))
        })
        .and_then(|c| c.split(';').next())
        .unwrap_or("")
        .to_string();
    (status, raw.len(), set_cookie)
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --all-targets` does not.
    let measure = std::env::args().any(|a| a == "--bench");
    let (incidents, rounds_n) = if measure { (INCIDENTS, ROUNDS) } else { SMOKE };
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("bench.db");
    let yaml = format!(
        "upstream:\n  maildir: {}\nstore:\n  path: {}\nconsole:\n  listen: \"127.0.0.1:0\"\nincidents:\n  timezone: Europe/Berlin\n",
        dir.path().join("outbox").display(),
        db.display()
    );
    let config = Config::from_yaml(&yaml, "bench").expect("config");
    let store = SqliteStore::open(&db).expect("store");
    let now = bccguard::clock::now() as i64;
    let t = Instant::now();
    fill(&store, now, incidents);
    eprintln!("filled {incidents} incidents in {:.1?}", t.elapsed());
    store
        .add_user(&User {
            name: "anna".into(),
            role: Role::Dpo,
            password_hash: auth::hash_password("correct horse battery").unwrap(),
            created_at: now,
            created_by: "bench".into(),
        })
        .expect("user");
    let store: Arc<dyn Store> = Arc::new(store);
    let rss_before = rss_kib();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let wf = Workflow {
        config: Arc::new(ArcSwap::from_pointee(config)),
        store,
        metrics: Arc::new(Metrics::new()),
        wake: Arc::new(tokio::sync::Notify::new()),
    };
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    rt.spawn(bccguard::console::serve(
        listener,
        wf,
        std::future::pending(),
    ));
    std::thread::sleep(Duration::from_millis(100));

    let (status, _, cookie) = http(
        addr,
        "POST",
        "/login",
        "",
        "user=anna&password=correct+horse+battery",
    );
    assert_eq!(status, 303, "login");
    let detail = format!("/incidents/06H{:013}", incidents / 2);
    let pages = [
        ("/ (overview)", "/"),
        ("/held (page 1)", "/held"),
        ("/incidents (page 1)", "/incidents"),
        ("/incidents?page=200 (the last)", "/incidents?page=200"),
        (
            "/incidents filtered (disclosed, one sender)",
            "/incidents?class=disclosed&sender=sender10%40",
        ),
        ("/incidents/{id}", &detail),
        ("/incidents.csv (all of them)", "/incidents.csv"),
    ];
    println!(
        "console with {incidents} incidents, {rounds_n} requests per page, one connection each:"
    );
    println!(
        "{:<46} {:>9} {:>9} {:>10}",
        "page", "median", "p95", "bytes"
    );
    for (name, path) in pages {
        let rounds = if path.ends_with(".csv") {
            (rounds_n / 10).max(1)
        } else {
            rounds_n
        };
        for _ in 0..3 {
            http(addr, "GET", path, &cookie, "");
        }
        let mut times = Vec::with_capacity(rounds);
        let mut bytes = 0;
        for _ in 0..rounds {
            let t = Instant::now();
            let (status, n, _) = http(addr, "GET", path, &cookie, "");
            times.push(t.elapsed());
            assert_eq!(status, 200, "{path}");
            bytes = n;
        }
        times.sort();
        let q = |p: f64| times[((times.len() as f64 * p) as usize).min(times.len() - 1)];
        println!(
            "{name:<46} {:>7.2}ms {:>7.2}ms {bytes:>10}",
            q(0.5).as_secs_f64() * 1e3,
            q(0.95).as_secs_f64() * 1e3
        );
    }
    let rss_after = rss_kib();
    println!(
        "resident memory: {:.1} MiB with the store open, {:.1} MiB after the console's run (+{:.1} MiB)",
        rss_before as f64 / 1024.0,
        rss_after as f64 / 1024.0,
        rss_after.saturating_sub(rss_before) as f64 / 1024.0
    );
}
