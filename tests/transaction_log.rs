//! One structured log line per client transaction (issue 16): whatever
//! became of the message (delivered, rejected by the policy, refused for
//! its size or a bare LF), the guard writes exactly one INFO line
//! `transaction` whose `tx` is also in the client's reply (the incident id
//! for a policy refusal, `(id ...)` on the guard's own refusals) and which
//! names upstream's queue id from upstream's 250 text. The guard runs as
//! its own process with JSON logs, as a log shipper reads it.

mod common;

use std::ffi::OsStr;

use common::*;

/// The JSON `fields` of every `transaction` line logged so far.
fn transactions(guard: &ServedGuard) -> Vec<serde_json::Value> {
    guard
        .log_text()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["fields"]["message"] == "transaction")
        .map(|v| v["fields"].clone())
        .collect()
}

/// Waits (bounded) until `n` transaction lines are there.
async fn logged(guard: &ServedGuard, n: usize) -> Vec<serde_json::Value> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let lines = transactions(guard);
        if lines.len() >= n || tokio::time::Instant::now() > deadline {
            return lines;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_transaction_logs_one_line_that_its_reply_and_upstream_share() {
    let up = Upstream::start().await;
    let policy = "policy:\n  internal_domains: [\"example.org\"]\n  max_external_recipients: 3\n  action: reject\n";
    let text = yaml_with_limits(Some(up.addr), policy, "    max_message_size: 2000\n");
    let guard = ServedGuard::start(&text, &[("BCCGUARD_LOG_FORMAT", OsStr::new("json"))]).await;

    // 1. A mail that passes: delivered, upstream's id from its 250.
    let mut c = Client::connect(guard.smtp).await;
    let one = message("alice@example.org", "p1@ext1.test", None, "Hallo.\r\n");
    let r = c.mail("alice@example.org", &["p1@ext1.test"], &one).await;
    assert_eq!(r.code, 250, "{}", r.text);
    // 2. An open list: rejected, the incident id in the reply is the tx.
    let five = externals(5);
    let open = message("alice@example.org", &five.join(", "), None, "Termine.\r\n");
    let r = c.mail("alice@example.org", &five, &open).await;
    assert_eq!(r.code, 550, "{}", r.text);
    let incident = incident_id(&r.text);
    // 3. Too big for max_message_size: refused with the tx in the reply.
    let body = format!("{}\r\n", "x".repeat(78)).repeat(40);
    let big = message("alice@example.org", "p1@ext1.test", None, &body);
    let r = c.mail("alice@example.org", &["p1@ext1.test"], &big).await;
    assert_eq!(r.code, 552, "{}", r.text);
    let too_big_tx = tx_in(&r.text);
    // 4. A bare LF (RFC 5321 2.3.8; SMTP smuggling): refused likewise.
    c.send("MAIL FROM:<alice@example.org>\r\nRCPT TO:<p1@ext1.test>\r\nDATA\r\n")
        .await;
    c.expect(250).await;
    c.expect(250).await;
    c.expect(354).await;
    c.send("Subject: x\r\n\r\nline one\nline two\r\n.\r\n")
        .await;
    let bare = c.expect(550).await;
    let bare_tx = tx_in(&bare);
    c.cmd("QUIT", 221).await;

    let lines = logged(&guard, 4).await;
    assert_eq!(
        lines.len(),
        4,
        "one line per transaction:\n{}",
        guard.log_text()
    );
    let delivered = &lines[0];
    assert_eq!(delivered["outcome"], "delivered", "{delivered}");
    assert_eq!(delivered["decision"], "pass");
    assert_eq!(delivered["rcpts"], 1);
    assert!(delivered["size"].as_u64().unwrap() > 0);
    assert_eq!(delivered["upstream_queue_id"], "UP000001", "{delivered}");
    assert!(
        delivered["upstream"]
            .as_str()
            .unwrap()
            .starts_with("250 2.0.0 Ok: queued as UP000001"),
        "{delivered}"
    );
    let rejected = &lines[1];
    assert_eq!(
        (
            rejected["outcome"].as_str(),
            rejected["decision"].as_str(),
            rejected["tx"].as_str()
        ),
        (Some("rejected"), Some("reject"), Some(incident.as_str())),
        "{rejected}"
    );
    assert_eq!(rejected["rcpts"], 5);
    assert_eq!(rejected["visible_external"], 5);
    assert_eq!(rejected["upstream_queue_id"], "", "nothing went upstream");
    let too_big = &lines[2];
    assert_eq!(
        (
            too_big["outcome"].as_str(),
            too_big["refused"].as_str(),
            too_big["tx"].as_str()
        ),
        (Some("refused"), Some("too_big"), Some(too_big_tx.as_str())),
        "{too_big}"
    );
    let bare_lf = &lines[3];
    assert_eq!(
        (
            bare_lf["outcome"].as_str(),
            bare_lf["refused"].as_str(),
            bare_lf["tx"].as_str()
        ),
        (
            Some("refused"),
            Some("bare_newline"),
            Some(bare_tx.as_str())
        ),
        "{bare_lf}"
    );
    // Four different transactions, four ids.
    let mut ids: Vec<&str> = lines.iter().map(|l| l["tx"].as_str().unwrap()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 4, "{lines:?}");
    // The incident record carries the same id.
    let record = std::fs::read_to_string(guard.dir.path().join("incidents.jsonl")).unwrap();
    assert!(
        record.contains(&format!("\"id\":\"{incident}\"")),
        "{record}"
    );
}

/// The `(id X)` the guard's own refusals end with.
fn tx_in(reply_text: &str) -> String {
    let at = reply_text
        .rfind("(id ")
        .unwrap_or_else(|| panic!("no transaction id in {reply_text:?}"));
    reply_text[at + 4..]
        .trim()
        .trim_end_matches(')')
        .to_string()
}
