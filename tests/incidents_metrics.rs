//! What the data-protection officer and the operator see: the incident
//! record (every field, and never a recipient address), the Prometheus
//! counters, and the Maildir the default configuration delivers into.

mod common;

use common::*;

/// A policy with a bcc rule next to the reject default, so one guard can
/// produce a pass, a reject and a bcc.
const POLICY_WITH_BCC_RULE: &str = "policy:
  internal_domains: [\"example.org\", \"*.example.org\"]
  max_external_recipients: 3
  action: reject
  rules:
    - name: termine
      sender: [\"termine@example.org\"]
      action: bcc
";

/// Parses an RFC 3339 date-time (`2024-03-04T08:00:00Z`, optional
/// fraction, `Z` or `+hh:mm`); `None` if it is not one.
fn rfc3339(s: &str) -> Option<time::OffsetDateTime> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        let t = s.get(r)?;
        t.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| t.parse().ok())?
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let month = time::Month::try_from(u8::try_from(num(5..7)?).ok()?).ok()?;
    let date =
        time::Date::from_calendar_date(i32::try_from(num(0..4)?).ok()?, month, num(8..10)? as u8)
            .ok()?;
    let t =
        time::Time::from_hms(num(11..13)? as u8, num(14..16)? as u8, num(17..19)? as u8).ok()?;
    let mut rest = &s[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        rest = &frac[digits..];
    }
    let offset = match rest {
        "Z" | "z" => time::UtcOffset::UTC,
        _ => {
            let sign = match rest.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            if rest.len() != 6 || rest.as_bytes()[3] != b':' {
                return None;
            }
            let h: i8 = rest[1..3].parse().ok()?;
            let m: i8 = rest[4..6].parse().ok()?;
            time::UtcOffset::from_hms(sign * h, sign * m, 0).ok()?
        }
    };
    Some(time::PrimitiveDateTime::new(date, t).assume_offset(offset))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incident_record_has_every_field_and_no_recipient_address() {
    let up = Upstream::start().await;
    let guard = Guard::with_upstream(&up, POLICY_WITH_BCC_RULE).await;
    let started = time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap();

    // Six distinct externals in three domains, one internal, one external
    // only in the envelope (a Bcc recipient).
    let to = "Anna Alt <anna.alt@web.test>, bert.bauer@web.test, \"Cleo C.\" <cleo@mail.test>";
    let cc = "dora@mail.test, emil@post.test, fritz@post.test, kollegin@example.org";
    let msg = format!(
        "From: \"Praxis Dr. Muster\" <praxis@example.org>\r\n\
         To: {to}\r\n\
         Cc: {cc}\r\n\
         Subject: =?UTF-8?Q?Termin_abgesagt_f=C3=BCr_M=C3=A4rz?=\r\n\
         Message-ID: <cancel-2024@example.org>\r\n\
         Date: Mon, 4 Mar 2024 09:00:00 +0100\r\n\
         \r\n\
         Ihr Termin entfaellt.\r\n"
    );
    let rcpts = [
        "anna.alt@web.test",
        "bert.bauer@web.test",
        "cleo@mail.test",
        "dora@mail.test",
        "emil@post.test",
        "fritz@post.test",
        "kollegin@example.org",
        "hidden.bcc@secret.test",
    ];
    let mut c = Client::connect(guard.smtp).await;
    let r = c.mail("bounce@example.org", &rcpts, &msg).await;
    assert_eq!(r.code, 550, "{}", r.text);
    let id = incident_id(&r.text);

    let incidents = guard.incidents();
    assert_eq!(incidents.len(), 1);
    let i = &incidents[0];
    let expect_str = |field: &str, value: &str| {
        assert_eq!(i[field].as_str(), Some(value), "field {field} in {i}");
    };
    expect_str("id", &id);
    expect_str("action", "reject");
    expect_str("rule", "default");
    expect_str("client_ip", "127.0.0.1");
    assert!(
        i["auth_user"].is_null(),
        "auth_user on a trusted network: {i}"
    );
    expect_str("mail_from", "bounce@example.org");
    expect_str("header_from", "praxis@example.org");
    expect_str("message_id", "<cancel-2024@example.org>");
    expect_str("subject", "Termin abgesagt für März");
    assert_eq!(i["visible_external"], 6, "{i}");
    assert_eq!(i["visible_internal"], 1, "{i}");
    assert_eq!(i["external_domains"], 3, "{i}");
    assert_eq!(i["envelope_recipients"], 8, "{i}");
    assert_eq!(i["size"], msg.len(), "{i}");
    assert_eq!(i["threshold"], 3, "{i}");
    expect_str("outcome", "refused");
    assert!(i["reason"].as_str().is_some_and(|r| !r.is_empty()), "{i}");
    assert!(i["queue_id"].as_str().is_some_and(|q| !q.is_empty()), "{i}");
    let time = i["time"].as_str().expect("time");
    let t = rfc3339(time).unwrap_or_else(|| panic!("time {time:?} is not RFC 3339"));
    assert!(
        t >= started && t <= time::OffsetDateTime::now_utc(),
        "time {time} is not the time of the decision"
    );
    for field in [
        "id",
        "time",
        "action",
        "rule",
        "client_ip",
        "auth_user",
        "mail_from",
        "header_from",
        "message_id",
        "subject",
        "visible_external",
        "visible_internal",
        "external_domains",
        "envelope_recipients",
        "size",
        "threshold",
        "reason",
        "outcome",
        "queue_id",
    ] {
        assert!(i.get(field).is_some(), "field {field} missing in {i}");
    }

    // A bcc incident too, then: no recipient address anywhere in the file.
    let msg = message(
        "termine@example.org",
        &rcpts[..6].join(", "),
        None,
        "Bcc.\r\n",
    );
    let r = c.mail("termine@example.org", &rcpts, &msg).await;
    assert_eq!(r.code, 250, "{}", r.text);
    let incidents = guard.incidents();
    assert_eq!(incidents.len(), 2);
    assert_eq!(incidents[1]["action"], "bcc");
    assert_eq!(incidents[1]["rule"], "termine");
    assert_eq!(incidents[1]["outcome"], "delivered");
    let raw = guard.incidents_raw().to_ascii_lowercase();
    assert_eq!(raw.lines().count(), 2);
    for a in rcpts {
        assert!(
            !raw.contains(a),
            "incident log contains recipient {a}:\n{raw}"
        );
        let local = a.split('@').next().unwrap_or_default();
        assert!(
            !raw.contains(local),
            "incident log contains {local:?}:\n{raw}"
        );
    }
    assert!(
        !raw.contains("anna alt") && !raw.contains("cleo c."),
        "display names leaked"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_move_by_exactly_the_messages_sent() {
    let up = Upstream::start().await;
    let guard = Guard::with_upstream(&up, POLICY_WITH_BCC_RULE).await;
    let names = [
        "bccguard_messages_total{action=\"pass\"}",
        "bccguard_messages_total{action=\"reject\"}",
        "bccguard_messages_total{action=\"bcc\"}",
        "bccguard_messages_total{action=\"split\"}",
        "bccguard_messages_total{action=\"monitor\"}",
        "bccguard_messages_total{action=\"allow\"}",
        "bccguard_incidents_total{action=\"reject\"}",
        "bccguard_incidents_total{action=\"bcc\"}",
        "bccguard_incidents_total{action=\"split\"}",
        "bccguard_incidents_total{action=\"monitor\"}",
        "bccguard_visible_external_recipients_count",
        "bccguard_visible_external_recipients_sum",
        "bccguard_relay_duration_seconds_count",
    ];
    let mut before = Vec::new();
    for n in names {
        before.push(guard.metric(n).await);
    }

    let mut c = Client::connect(guard.smtp).await;
    let one = message("a@example.org", "p1@ext1.test", None, "Pass.\r\n");
    assert_eq!(
        c.mail("a@example.org", &["p1@ext1.test"], &one).await.code,
        250
    );
    let four = externals(4);
    let four_refs: Vec<&str> = four.iter().map(String::as_str).collect();
    let open = message("a@example.org", &four.join(", "), None, "Reject.\r\n");
    assert_eq!(c.mail("a@example.org", &four_refs, &open).await.code, 550);
    let hide = message("termine@example.org", &four.join(", "), None, "Bcc.\r\n");
    assert_eq!(
        c.mail("termine@example.org", &four_refs, &hide).await.code,
        250
    );
    c.cmd("QUIT", 221).await;

    let expected_delta = [
        1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 3.0, 9.0, 3.0,
    ];
    for ((n, b), d) in names.iter().zip(&before).zip(expected_delta) {
        let now = guard.metric(n).await;
        assert_eq!(now - b, d, "{n}: was {b}, now {now}");
    }
    assert_eq!(up.count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_active_returns_to_zero_after_clients_quit() {
    let up = Upstream::start().await;
    let guard = Guard::with_upstream(&up, POLICY).await;
    assert_eq!(guard.metric("bccguard_sessions_active").await, 0.0);
    let mut a = Client::connect(guard.smtp).await;
    let mut b = Client::connect(guard.smtp).await;
    // Both greeted: both sessions are running.
    assert_eq!(guard.metric("bccguard_sessions_active").await, 2.0);
    // One in a transaction (with an upstream connection), one idle.
    a.ehlo().await;
    a.cmd("MAIL FROM:<a@example.org>", 250).await;
    a.cmd("QUIT", 221).await;
    b.cmd("QUIT", 221).await;
    assert!(a.closed().await && b.closed().await);
    eventually("bccguard_sessions_active to return to 0", || async {
        guard.metric("bccguard_sessions_active").await == 0.0
    })
    .await;
    // A client that just disconnects, without QUIT, is counted down too.
    let c = Client::connect(guard.smtp).await;
    drop(c);
    eventually(
        "bccguard_sessions_active after a dropped client",
        || async { guard.metric("bccguard_sessions_active").await == 0.0 },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_upstream_is_a_transient_error_counted_as_connect() {
    // A port nobody listens on: bound, noted, released.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let dead = listener.local_addr().expect("addr");
    drop(listener);
    let guard = Guard::start(&yaml(Some(dead), POLICY)).await;
    let series = "bccguard_upstream_errors_total{kind=\"connect\"}";
    assert_eq!(guard.metric(series).await, 0.0);
    let mut c = Client::connect(guard.smtp).await;
    c.ehlo().await;
    let text = c.cmd("MAIL FROM:<a@example.org>", 451).await;
    assert!(text.contains("4.4.1"), "{text}");
    assert_eq!(guard.metric(series).await, 1.0);
    // The client may try again; still transient, counted again.
    c.cmd("MAIL FROM:<a@example.org>", 451).await;
    assert_eq!(guard.metric(series).await, 2.0);
    c.cmd("QUIT", 221).await;
    assert!(guard.incidents().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maildir_target_stores_one_file_with_the_envelope() {
    let guard = Guard::start(&yaml(None, POLICY)).await;
    let msg = message(
        "a@example.org",
        "p1@ext1.test",
        Some("boss@example.org"),
        "Maildir.\r\n",
    );
    let mut c = Client::connect(guard.smtp).await;
    let r = c
        .mail("a@example.org", &["p1@ext1.test", "boss@example.org"], &msg)
        .await;
    assert_eq!(r.code, 250, "{}", r.text);
    c.cmd("QUIT", 221).await;

    let new = guard.outbox().join("new");
    let files: Vec<_> = std::fs::read_dir(&new)
        .expect("outbox/new exists")
        .map(|e| e.expect("entry").path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let tmp: Vec<_> = std::fs::read_dir(guard.outbox().join("tmp"))
        .expect("outbox/tmp exists")
        .collect();
    assert!(tmp.is_empty(), "tmp/ must be empty after delivery: {tmp:?}");
    let name = files[0].file_name().unwrap().to_string_lossy().to_string();
    assert!(r.text.contains(&name), "reply names the file: {}", r.text);

    let data = std::fs::read(&files[0]).expect("read");
    let envelope = "Return-Path: <a@example.org>\r\nDelivered-To: p1@ext1.test\r\nDelivered-To: boss@example.org\r\n";
    assert!(
        data.starts_with(envelope.as_bytes()),
        "{}",
        String::from_utf8_lossy(&data)
    );
    assert_eq!(without_received(&data[envelope.len()..]), msg.as_bytes());

    // A rejected mail leaves no file.
    let four = externals(4);
    let four_refs: Vec<&str> = four.iter().map(String::as_str).collect();
    let open = message("a@example.org", &four.join(", "), None, "Reject.\r\n");
    let mut c = Client::connect(guard.smtp).await;
    assert_eq!(c.mail("a@example.org", &four_refs, &open).await.code, 550);
    assert_eq!(std::fs::read_dir(&new).unwrap().count(), 1);
    assert_eq!(
        std::fs::read_dir(guard.outbox().join("tmp"))
            .unwrap()
            .count(),
        0
    );
}
