//! Black-box: operations under change. policy.yaml reloads in place
//! (file change and SIGHUP) without dropping a session, an invalid file
//! keeps the running policy and is counted, and SIGTERM drains: idle
//! sessions get 421, a message in flight is finished, the grace period
//! bounds the wait.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::*;

fn policy(threshold: usize) -> String {
    format!(
        "policy:\n  internal_domains: [\"example.org\"]\n  max_external_recipients: {threshold}\n  action: reject\n"
    )
}

/// Sends a mail with `n` external To addresses on an open session.
async fn send(c: &mut Client, n: usize) -> Reply {
    let rcpts = externals(n);
    let to = rcpts.join(", ");
    c.send_mail(
        "alice@example.org",
        &rcpts[..1],
        &message("alice@example.org", &to, None, "x\r\n"),
    )
    .await
}

async fn until(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_policy_applies_in_place_and_a_broken_one_keeps_the_old() {
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.yaml");
    let base = yaml(Some(up.addr), "");
    let write = |p: &Path, text: &str| std::fs::write(p, text).unwrap();
    let guard = Guard::start(&format!("{base}{}", policy(3))).await;
    // The file the watcher reads: the guard's own config with the same
    // spool/incident paths (it was started from this text).
    let running = format!("{base}{}", policy(3)).replace(
        "INCIDENTS",
        &guard
            .dir
            .path()
            .join("incidents.jsonl")
            .display()
            .to_string(),
    );
    write(&path, &running);
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tokio::spawn(bccguard::relay::reload::watch(
        guard.shared.clone(),
        path.clone(),
        rx,
        Duration::from_millis(50),
    ));

    let mut c = Client::connect(guard.smtp).await;
    c.ehlo().await;
    assert_eq!(send(&mut c, 4).await.code, 550, "threshold 3 rejects 4");

    // The admin raises the threshold; the open session keeps going.
    write(
        &path,
        &running.replace("max_external_recipients: 3", "max_external_recipients: 10"),
    );
    until("the reload", async || {
        guard.metric("bccguard_config_reloads_total").await >= 1.0
    })
    .await;
    assert_eq!(
        send(&mut c, 4).await.code,
        250,
        "the same session sees the new threshold"
    );

    // A broken file: refused, counted, the running policy stays.
    write(&path, &running.replace("action: reject", "action: shred"));
    until("the failed reload", async || {
        guard.metric("bccguard_config_reload_failures_total").await >= 1.0
    })
    .await;
    assert_eq!(send(&mut c, 4).await.code, 250);
    assert_eq!(
        send(&mut c, 11).await.code,
        550,
        "threshold 10 still in force"
    );

    // An explicit trigger (what SIGHUP sends) reloads a fixed file.
    write(
        &path,
        &running.replace("max_external_recipients: 3", "max_external_recipients: 20"),
    );
    tx.send(()).await.unwrap();
    until("the second reload", async || {
        guard.metric("bccguard_config_reloads_total").await >= 2.0
    })
    .await;
    assert_eq!(send(&mut c, 11).await.code, 250);
    c.cmd("QUIT", 221).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_tells_idle_sessions_421_and_finishes_a_message_in_flight() {
    let up = Upstream::start().await;
    let mut guard = Guard::with_upstream(&up, &policy(3)).await;
    let mut idle = Client::connect(guard.smtp).await;
    idle.cmd("EHLO idle.test", 250).await;
    let mut busy = Client::connect(guard.smtp).await;
    busy.cmd("EHLO busy.test", 250).await;
    busy.begin_data("alice@example.org", &["bob@partner.test"])
        .await;
    busy.send("From: alice@example.org\r\nTo: bob@partner.test\r\n\r\nfirst half\r\n")
        .await;

    guard.begin_shutdown();
    assert!(idle.expect(421).await.contains("4.3.2"));
    assert!(idle.closed().await);
    // The message in flight is finished and delivered, then the session ends.
    busy.send("second half\r\n.\r\n").await;
    busy.expect(250).await;
    busy.expect(421).await;
    guard.stop().await;
    assert_eq!(up.count(), 1);
}

/// Real time (0.3 s), not tokio's paused clock: the stuck transaction is
/// open at upstream, aiosmtpd, a process of its own that answers in real
/// time (tests/common/clock.rs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grace_period_bounds_a_stuck_transaction() {
    let up = Upstream::start().await;
    let yaml = yaml(Some(up.addr), &policy(3)).replace(
        "  hostname: guard.test\n",
        "  hostname: guard.test\n  shutdown_grace: 300ms\n",
    );
    let mut guard = Guard::start(&yaml).await;
    let mut stuck = Client::connect(guard.smtp).await;
    stuck.cmd("EHLO slow.test", 250).await;
    stuck
        .begin_data("alice@example.org", &["bob@partner.test"])
        .await;
    stuck.send("Subject: never finished\r\n").await;
    guard.begin_shutdown();
    tokio::time::timeout(Duration::from_secs(10), guard.stop())
        .await
        .expect("stopped within the grace period");
    assert!(stuck.closed().await);
    assert_eq!(up.count(), 0, "no final dot ever reached upstream");
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_reloads_on_sighup_and_survives_it() {
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (smtp, metrics) = (free_port(), free_port());
    let text = yaml(Some(up.addr), &policy(3))
        .replace("127.0.0.1:0\"]", &format!("127.0.0.1:{smtp}\"]"))
        .replace(
            "listen: \"127.0.0.1:0\"",
            &format!("listen: \"127.0.0.1:{metrics}\""),
        )
        .replace(
            "INCIDENTS",
            &dir.path().join("incidents.jsonl").display().to_string(),
        )
        + &format!(
            "spool:\n  path: {}\nstore:\n  path: {}\n",
            dir.path().join("spool").display(),
            dir.path().join("bccguard.db").display()
        );
    let path = dir.path().join("policy.yaml");
    std::fs::write(&path, &text).unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_bccguard"))
        .args(["serve", "--config"])
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let metrics_addr = format!("127.0.0.1:{metrics}").parse().unwrap();
    let reloads = async || {
        let (code, body) = http_get(metrics_addr, "/metrics").await;
        assert_eq!(code, 200);
        body.lines()
            .find_map(|l| l.strip_prefix("bccguard_config_reloads_total "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    until("the guard to listen", async || {
        tokio::net::TcpStream::connect(metrics_addr).await.is_ok()
    })
    .await;
    let pid = child.id().unwrap().to_string();
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap();
    assert!(hup.success());
    until("the SIGHUP reload", async || reloads().await >= 1.0).await;
    assert!(
        child.try_wait().unwrap().is_none(),
        "SIGHUP ended the guard"
    );
    let term = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(term.success());
    let status = tokio::time::timeout(WAIT, child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status:?}");
}
