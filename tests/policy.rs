//! The policy as a client and the upstream server see it: the threshold,
//! every action on the 1,494-address cancellation mail, rules, Bcc removal,
//! signed mail, and how visible addresses are counted (groups, display
//! names, comments, internationalised domains). Real sockets on port 0, a
//! real upstream (aiosmtpd) and, once, a real client library (lettre).

mod common;

use std::collections::HashSet;

use common::*;

/// Envelope and header sender of most test mails (internal).
const FROM: &str = "praxis@example.org";

/// The default test policy (example.org internal, threshold 3) with another
/// action.
fn policy_with(action: &str) -> String {
    assert!(POLICY.contains("action: reject\n"), "POLICY changed shape");
    POLICY.replace("action: reject", &format!("action: {action}"))
}

/// Threshold 0 in monitor mode: every message with one external address
/// becomes an incident that records the exact counts, and is delivered.
const COUNT_EVERYTHING: &str = "policy:\n  internal_domains: [\"example.org\", \"*.example.org\", \"müller.example\", \"xn--bcher-kva.example\"]\n  max_external_recipients: 0\n  action: monitor\n";

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// Does the header section of `data` mention any external test address?
fn head_has_external(data: &[u8]) -> bool {
    let parsed = Parsed::new(data);
    parsed.fields.iter().any(|(_, raw)| {
        String::from_utf8_lossy(raw)
            .to_ascii_lowercase()
            .contains("@ext")
    })
}

/// The elements of an address-list value, trimmed.
fn elements(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(|e| e.trim().to_string())
        .filter(|e| !e.is_empty())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_visible_externals_pass_and_four_are_rejected_with_an_incident() {
    let up = Upstream::start().await;
    let guard = Guard::with_upstream(&up, POLICY).await;

    // Three distinct external addresses: duplicates in other case count
    // once, internal ones (example.org and its subdomains) not at all.
    let to = "Anna <p1@ext1.test>, P1@EXT1.TEST, p2@ext2.test";
    let cc3 = "p3@ext3.test, boss@example.org, team@sub.example.org, P2@Ext2.Test";
    let msg3 = message(FROM, to, Some(cc3), "Three external readers.\r\n");
    let rcpts3 = [
        "p1@ext1.test",
        "p2@ext2.test",
        "p3@ext3.test",
        "boss@example.org",
        "team@sub.example.org",
    ];
    let mut c = Client::connect(guard.smtp).await;
    let r = c.mail(FROM, &rcpts3, &msg3).await;
    assert_eq!(r.code, 250, "3 visible externals must pass: {}", r.text);
    let got = up.messages();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].mail_from, FROM);
    assert_eq!(got[0].rcpt_tos, strs(&rcpts3));
    assert_eq!(
        without_received(&got[0].data),
        msg3.as_bytes(),
        "a passing mail arrives unchanged"
    );
    assert!(guard.incidents().is_empty(), "a pass is no incident");

    // One more external address in Cc: over the threshold.
    let cc4 = format!("{cc3}, p4@ext4.test");
    let msg4 = message(FROM, to, Some(&cc4), "Four external readers.\r\n");
    let mut rcpts4 = rcpts3.to_vec();
    rcpts4.push("p4@ext4.test");
    let r = c.mail(FROM, &rcpts4, &msg4).await;
    assert_eq!(
        r.code, 550,
        "4 visible externals must be refused: {}",
        r.text
    );
    assert!(r.text.contains("5.7.1"), "{}", r.text);
    assert!(r.text.contains("4 external addresses"), "{}", r.text);
    assert!(r.text.contains("(limit 3)"), "{}", r.text);
    let id = incident_id(&r.text);
    assert_eq!(up.count(), 1, "upstream must not store the refused mail");
    let incidents = guard.incidents();
    assert_eq!(incidents.len(), 1, "{incidents:?}");
    assert_eq!(incidents[0]["action"], "reject");
    assert_eq!(incidents[0]["id"], id.as_str());
    assert_eq!(incidents[0]["visible_external"], 4);
    assert_eq!(incidents[0]["visible_internal"], 2);
    assert_eq!(incidents[0]["envelope_recipients"], 6);

    // The session and its upstream transaction survive the refusal: the
    // corrected mail goes out in the same session.
    let r = c.mail(FROM, &rcpts3, &msg3).await;
    assert_eq!(r.code, 250, "{}", r.text);
    let got = up.messages();
    assert_eq!(got.len(), 2);
    assert_eq!(without_received(&got[1].data), msg3.as_bytes());
    c.cmd("QUIT", 221).await;
}

/// Sends the 1,494-address cancellation mail (To: all of them, envelope:
/// all of them) through a guard with `action`.
async fn cancellation(action: &str) -> (Upstream, Guard, Vec<String>, String, Reply) {
    let up = Upstream::start().await;
    let yaml = yaml_with_limits(
        Some(up.addr),
        &policy_with(action),
        "    max_recipients: 2000\n",
    );
    let guard = Guard::start(&yaml).await;
    let addrs = externals(1494);
    let msg = cancellation_mail(&addrs, "\r\n");
    let mut c = Client::connect(guard.smtp).await;
    let r = c.mail_within(FROM, &addrs, &msg, LONG_WAIT).await;
    c.cmd("QUIT", 221).await;
    (up, guard, addrs, msg, r)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancellation_mail_is_refused_in_reject_mode() {
    let (up, guard, _addrs, msg, r) = cancellation("reject").await;
    assert_eq!(r.code, 550, "{}", r.text);
    assert!(r.text.contains("5.7.1"), "{}", r.text);
    assert!(r.text.contains("1494 external addresses"), "{}", r.text);
    let id = incident_id(&r.text);
    assert_eq!(up.count(), 0, "nothing may reach upstream");
    let incidents = guard.incidents();
    assert_eq!(incidents.len(), 1);
    let i = &incidents[0];
    assert_eq!(i["id"], id.as_str());
    assert_eq!(i["action"], "reject");
    assert_eq!(i["visible_external"], 1494);
    assert_eq!(i["external_domains"], 7);
    assert_eq!(i["envelope_recipients"], 1494);
    assert_eq!(i["size"], msg.len());
    assert_eq!(i["outcome"], "refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancellation_mail_is_hidden_in_bcc_mode() {
    let (up, guard, addrs, msg, r) = cancellation("bcc").await;
    assert_eq!(r.code, 250, "{}", r.text);
    let got = up.messages();
    assert_eq!(got.len(), 1, "bcc sends exactly one message");
    assert_eq!(got[0].mail_from, FROM);
    assert_eq!(got[0].rcpt_tos, addrs, "the envelope is unchanged");

    let data = without_received(&got[0].data);
    let out = Parsed::new(data);
    let orig = Parsed::new(msg.as_bytes());
    assert_eq!(
        out.values("to"),
        vec![FROM.to_string()],
        "To shows the sender"
    );
    assert!(out.values("cc").is_empty());
    let head = String::from_utf8_lossy(&data[..data.len() - out.body.len()]).to_ascii_lowercase();
    for a in &addrs {
        assert!(
            !head.contains(a.as_str()),
            "{a} still visible in the header section"
        );
    }
    assert!(
        !head.contains("@ext"),
        "an external address is still visible"
    );
    assert_eq!(
        out.fields_except(&["to"]),
        orig.fields_except(&["to"]),
        "every other header field byte-identical and in order"
    );
    assert_eq!(out.body, orig.body, "the body is byte-identical");

    let incidents = guard.incidents();
    assert_eq!(incidents.len(), 1);
    assert_eq!(incidents[0]["action"], "bcc");
    assert_eq!(incidents[0]["visible_external"], 1494);
    assert_eq!(incidents[0]["outcome"], "delivered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancellation_mail_is_split_into_one_copy_per_recipient() {
    let (up, guard, addrs, msg, r) = cancellation("split").await;
    assert_eq!(r.code, 250, "{}", r.text);
    assert!(r.text.contains("1494 separate copies"), "{}", r.text);
    let got = up.messages();
    assert_eq!(got.len(), 1494, "one upstream message per recipient");

    let orig = Parsed::new(msg.as_bytes());
    let mut seen = HashSet::new();
    for (n, d) in got.iter().enumerate() {
        assert_eq!(d.mail_from, FROM);
        assert_eq!(d.rcpt_tos.len(), 1, "copy {n}: {:?}", d.rcpt_tos);
        let rcpt = d.rcpt_tos[0].clone();
        let data = without_received(&d.data);
        let out = Parsed::new(data);
        let to = out.values("to");
        assert_eq!(to.len(), 1, "copy {n} for {rcpt}: To fields {to:?}");
        assert_eq!(
            elements(&to[0]),
            vec![rcpt.clone()],
            "copy {n}: To shows only its own address"
        );
        assert!(out.values("cc").is_empty());
        let head =
            String::from_utf8_lossy(&data[..data.len() - out.body.len()]).to_ascii_lowercase();
        assert_eq!(
            head.matches("@ext").count(),
            1,
            "copy {n} for {rcpt} shows another external address"
        );
        assert!(seen.insert(rcpt), "copy {n}: recipient got two copies");
        // A sample is compared in full against the original.
        if n == 0 || n == got.len() - 1 || n % 97 == 0 {
            assert_eq!(
                out.fields_except(&["to"]),
                orig.fields_except(&["to"]),
                "copy {n}"
            );
            assert_eq!(out.body, orig.body, "copy {n}: body byte-identical");
        }
    }
    let expected: HashSet<String> = addrs.into_iter().collect();
    assert_eq!(seen, expected, "every recipient got exactly one copy");
    let incidents = guard.incidents();
    assert_eq!(incidents.len(), 1);
    assert_eq!(incidents[0]["action"], "split");
    assert_eq!(incidents[0]["envelope_recipients"], 1494);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancellation_mail_passes_unchanged_in_monitor_mode() {
    let (up, guard, addrs, msg, r) = cancellation("monitor").await;
    assert_eq!(r.code, 250, "{}", r.text);
    let got = up.messages();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].rcpt_tos, addrs);
    assert_eq!(
        without_received(&got[0].data),
        msg.as_bytes(),
        "monitor must not change a byte"
    );
    let incidents = guard.incidents();
    assert_eq!(incidents.len(), 1);
    assert_eq!(incidents[0]["action"], "monitor");
    assert_eq!(incidents[0]["visible_external"], 1494);
    assert_eq!(incidents[0]["outcome"], "delivered");
    assert_eq!(
        guard
            .metric("bccguard_messages_total{action=\"monitor\"}")
            .await,
        1.0
    );
    assert_eq!(
        guard
            .metric("bccguard_incidents_total{action=\"monitor\"}")
            .await,
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_copies_keep_internal_addresses_and_hide_bcc_recipients() {
    let up = Upstream::start().await;
    let guard = Guard::with_upstream(&up, &policy_with("split")).await;
    let msg = "From: praxis@example.org\r\n\
               To: boss@example.org, p1@ext1.test, p2@ext2.test\r\n\
               Cc: p3@ext3.test, p4@ext4.test\r\n\
               Bcc: hidden@ext5.test\r\n\
               Subject: Split\r\n\
               \r\n\
               Body.\r\n";
    let rcpts = [
        "boss@example.org",
        "p1@ext1.test",
        "p2@ext2.test",
        "p3@ext3.test",
        "p4@ext4.test",
        "hidden@ext5.test",
    ];
    let mut c = Client::connect(guard.smtp).await;
    let r = c.mail(FROM, &rcpts, msg).await;
    assert_eq!(r.code, 250, "{}", r.text);
    assert!(r.text.contains("6 separate copies"), "{}", r.text);
    let got = up.messages();
    assert_eq!(got.len(), 6);
    // (recipient, expected To elements, expected Cc elements)
    let expected: [(&str, &[&str], &[&str]); 6] = [
        ("boss@example.org", &["boss@example.org"], &[]),
        ("p1@ext1.test", &["boss@example.org", "p1@ext1.test"], &[]),
        ("p2@ext2.test", &["boss@example.org", "p2@ext2.test"], &[]),
        ("p3@ext3.test", &["boss@example.org"], &["p3@ext3.test"]),
        ("p4@ext4.test", &["boss@example.org"], &["p4@ext4.test"]),
        ("hidden@ext5.test", &["boss@example.org"], &[]),
    ];
    let orig = Parsed::new(msg.as_bytes());
    for (rcpt, to, cc) in expected {
        let d = got
            .iter()
            .find(|d| d.rcpt_tos == [rcpt])
            .unwrap_or_else(|| panic!("no copy for {rcpt}"));
        let data = without_received(&d.data);
        let out = Parsed::new(data);
        let to_values = out.values("to");
        assert_eq!(to_values.len(), 1, "{rcpt}: {to_values:?}");
        assert_eq!(
            elements(&to_values[0]),
            strs(to),
            "To of the copy for {rcpt}"
        );
        let cc_values: Vec<String> = out.values("cc").iter().flat_map(|v| elements(v)).collect();
        assert_eq!(cc_values, strs(cc), "Cc of the copy for {rcpt}");
        assert!(out.values("bcc").is_empty(), "{rcpt}: Bcc left in");
        assert!(!String::from_utf8_lossy(data).contains("hidden@"), "{rcpt}");
        assert_eq!(
            out.fields_except(&["to", "cc"]),
            orig.fields_except(&["to", "cc", "bcc"])
        );
        assert_eq!(out.body, orig.body);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bcc_rewrite_keeps_internal_addresses_and_every_other_byte() {
    let up = Upstream::start().await;
    let guard = Guard::with_upstream(&up, &policy_with("bcc")).await;
    let mut c = Client::connect(guard.smtp).await;

    // Internal addresses stay visible, with their display names.
    let to = "boss@example.org, p1@ext1.test, Team Lead <lead@sub.example.org>,\r\n p2@ext2.test";
    let cc = "p3@ext3.test, \"Kasse\" <kasse@example.org>, p4@ext4.test";
    let msg = message(FROM, to, Some(cc), "Bitte nicht weiterleiten.\r\n");
    let rcpts = [
        "boss@example.org",
        "p1@ext1.test",
        "lead@sub.example.org",
        "p2@ext2.test",
        "p3@ext3.test",
        "kasse@example.org",
        "p4@ext4.test",
    ];
    let r = c.mail(FROM, &rcpts, &msg).await;
    assert_eq!(r.code, 250, "{}", r.text);
    let got = up.messages();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].rcpt_tos, strs(&rcpts), "envelope unchanged");
    let data = without_received(&got[0].data);
    let out = Parsed::new(data);
    let orig = Parsed::new(msg.as_bytes());
    let to_values = out.values("to");
    assert_eq!(to_values.len(), 1, "{to_values:?}");
    assert_eq!(
        elements(&to_values[0]),
        strs(&["boss@example.org", "Team Lead <lead@sub.example.org>"])
    );
    let cc_values = out.values("cc");
    assert_eq!(cc_values.len(), 1, "{cc_values:?}");
    assert_eq!(
        elements(&cc_values[0]),
        strs(&["\"Kasse\" <kasse@example.org>"])
    );
    assert!(
        !head_has_external(data),
        "{}",
        String::from_utf8_lossy(data)
    );
    assert_eq!(
        out.fields_except(&["to", "cc"]),
        orig.fields_except(&["to", "cc"])
    );
    assert_eq!(out.body, orig.body);

    // Externals only in Cc: To is left as it was, Cc disappears.
    let cc_only = "p1@ext1.test, p2@ext2.test, p3@ext3.test, p4@ext4.test";
    let msg = message(FROM, "boss@example.org", Some(cc_only), "Cc only.\r\n");
    let rcpts = [
        "boss@example.org",
        "p1@ext1.test",
        "p2@ext2.test",
        "p3@ext3.test",
        "p4@ext4.test",
    ];
    let r = c.mail(FROM, &rcpts, &msg).await;
    assert_eq!(r.code, 250, "{}", r.text);
    let got = up.messages();
    assert_eq!(got.len(), 2);
    assert_eq!(got[1].rcpt_tos, strs(&rcpts));
    let data = without_received(&got[1].data);
    let out = Parsed::new(data);
    let orig = Parsed::new(msg.as_bytes());
    assert_eq!(out.values("to"), strs(&["boss@example.org"]));
    assert!(
        out.values("cc").is_empty(),
        "an emptied Cc is removed: {:?}",
        out.values("cc")
    );
    assert!(!head_has_external(data));
    assert_eq!(
        out.fields_except(&["to", "cc"]),
        orig.fields_except(&["to", "cc"])
    );
    assert_eq!(out.body, orig.body);
    assert_eq!(guard.incidents().len(), 2);

    // No header From: the emptied To shows the envelope sender.
    let msg = format!(
        "To: {cc_only}\r\nSubject: Ohne Absender\r\nMessage-ID: <nofrom@example.org>\r\n\r\nBody.\r\n"
    );
    let r = c.mail("termine@example.org", &rcpts, &msg).await;
    assert_eq!(r.code, 250, "{}", r.text);
    let got = up.messages();
    assert_eq!(got.len(), 3);
    let data = without_received(&got[2].data);
    let out = Parsed::new(data);
    let orig = Parsed::new(msg.as_bytes());
    assert_eq!(out.values("to"), strs(&["termine@example.org"]));
    assert!(!head_has_external(data));
    assert_eq!(out.fields_except(&["to"]), orig.fields_except(&["to"]));
    assert_eq!(out.body, orig.body);
    c.cmd("QUIT", 221).await;

    // empty_to: undisclosed.
    let policy = format!("{}  empty_to: undisclosed\n", policy_with("bcc"));
    let guard = Guard::with_upstream(&up, &policy).await;
    let mut c = Client::connect(guard.smtp).await;
    let msg = message(FROM, cc_only, Some("boss@example.org"), "Undisclosed.\r\n");
    let r = c.mail(FROM, &rcpts, &msg).await;
    assert_eq!(r.code, 250, "{}", r.text);
    let got = up.messages();
    assert_eq!(got.len(), 4);
    let data = without_received(&got[3].data);
    let out = Parsed::new(data);
    let orig = Parsed::new(msg.as_bytes());
    assert_eq!(out.values("to"), strs(&["undisclosed-recipients:;"]));
    assert_eq!(out.values("cc"), strs(&["boss@example.org"]));
    assert!(!head_has_external(data));
    assert_eq!(
        out.fields_except(&["to", "cc"]),
        orig.fields_except(&["to", "cc"])
    );
    assert_eq!(out.body, orig.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_override_the_default_and_the_first_match_wins() {
    let policy = "policy:
  internal_domains: [\"example.org\", \"*.example.org\"]
  max_external_recipients: 3
  action: reject
  rules:
    - name: newsletter
      sender: [\"newsletter@example.org\"]
      action: allow
    - name: gesundheit-strict
      header_from: [\"*@gesundheit.example.org\"]
      max_external_recipients: 0
      action: reject
    - name: gesundheit-lenient
      sender: [\"*@gesundheit.example.org\"]
      action: allow
";
    let up = Upstream::start().await;
    let guard = Guard::with_upstream(&up, policy).await;
    let mut c = Client::connect(guard.smtp).await;

    // The allow rule exempts a 50-address newsletter.
    let fifty = externals(50);
    let msg = message(
        "newsletter@example.org",
        &fifty.join(", "),
        None,
        "News.\r\n",
    );
    let r = c
        .mail_within("newsletter@example.org", &fifty, &msg, WAIT)
        .await;
    assert_eq!(r.code, 250, "{}", r.text);
    assert_eq!(up.count(), 1);
    assert_eq!(
        guard
            .metric("bccguard_messages_total{action=\"allow\"}")
            .await,
        1.0
    );
    // Exempt, but the list went out open: a disclosed incident (issue 7).
    let incidents = guard.incidents();
    assert_eq!(
        incidents.len(),
        1,
        "an allow rule over the threshold is an incident"
    );
    assert_eq!(incidents[0]["action"], "allow");
    assert_eq!(incidents[0]["class"], "disclosed");
    assert_eq!(incidents[0]["outcome"], "delivered");

    // The strict rule (header From, case-insensitive glob) refuses one.
    let msg = message(
        "Dr. Arzt <ARZT@Gesundheit.Example.ORG>",
        "p1@ext1.test",
        None,
        "Befund.\r\n",
    );
    let r = c
        .mail("arzt@gesundheit.example.org", &["p1@ext1.test"], &msg)
        .await;
    assert_eq!(r.code, 550, "{}", r.text);
    assert!(
        r.text.contains("5.7.1") && r.text.contains("(limit 0)"),
        "{}",
        r.text
    );
    let id = incident_id(&r.text);
    assert_eq!(up.count(), 1);
    let incidents = guard.incidents();
    assert_eq!(incidents.len(), 2);
    assert_eq!(incidents[1]["id"], id.as_str());
    assert_eq!(incidents[1]["rule"], "gesundheit-strict");
    assert_eq!(incidents[1]["threshold"], 0);
    assert_eq!(incidents[1]["class"], "prevented");

    // First match wins: the envelope sender matches "newsletter" before the
    // header From matches "gesundheit-strict". Four externals: over the
    // default threshold, so only an allow rule lets it through.
    let four = externals(4);
    let msg = message(
        "arzt@gesundheit.example.org",
        &four.join(", "),
        None,
        "Via newsletter.\r\n",
    );
    let r = c
        .mail_within("newsletter@example.org", &four, &msg, WAIT)
        .await;
    assert_eq!(r.code, 250, "{}", r.text);
    assert_eq!(up.count(), 2);

    // header_from matches the header only: this envelope sender falls
    // through to the lenient rule, which allows.
    let msg = message(
        "info@example.org",
        &four.join(", "),
        None,
        "Envelope only.\r\n",
    );
    let r = c
        .mail_within("arzt@gesundheit.example.org", &four, &msg, WAIT)
        .await;
    assert_eq!(r.code, 250, "{}", r.text);
    assert_eq!(up.count(), 3);
    assert_eq!(
        guard
            .metric("bccguard_messages_total{action=\"allow\"}")
            .await,
        3.0
    );
    assert_eq!(
        guard.incidents().len(),
        4,
        "each allow over the threshold is a disclosed incident"
    );

    // Under the threshold an allow rule changes nothing: a plain pass.
    let msg = message(
        "newsletter@example.org",
        "p1@ext1.test",
        None,
        "One reader.\r\n",
    );
    let r = c
        .mail("newsletter@example.org", &["p1@ext1.test"], &msg)
        .await;
    assert_eq!(r.code, 250, "{}", r.text);
    assert_eq!(up.count(), 4);
    assert_eq!(
        guard
            .metric("bccguard_messages_total{action=\"pass\"}")
            .await,
        1.0
    );

    // No rule: the default policy, and the record says so.
    let msg = message(
        "someone@example.org",
        &four.join(", "),
        None,
        "Default.\r\n",
    );
    let r = c
        .mail_within("someone@example.org", &four, &msg, WAIT)
        .await;
    assert_eq!(r.code, 550, "{}", r.text);
    let incidents = guard.incidents();
    assert_eq!(incidents.len(), 5);
    assert_eq!(incidents[4]["rule"], "default");
    assert_eq!(incidents[4]["threshold"], 3);
    assert_eq!(up.count(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bcc_and_resent_bcc_headers_are_removed_from_a_passing_mail() {
    let up = Upstream::start().await;
    let guard = Guard::with_upstream(&up, POLICY).await;
    // Five external Bcc addresses do not count: they are not visible.
    let msg = "From: praxis@example.org\r\n\
               To: p1@ext1.test, p2@ext2.test\r\n\
               Bcc: s1@ext4.test, s2@ext5.test,\r\n s3@ext6.test\r\n\
               Subject: Termin\r\n\
               Resent-Bcc: s4@ext0.test\r\n\
               Message-ID: <bcc-1@example.org>\r\n\
               bcc: s5@ext1.test\r\n\
               Date: Mon, 1 Mar 2021 10:00:00 +0100\r\n\
               \r\n\
               Bcc: this body line is not a header.\r\n";
    let rcpts = [
        "p1@ext1.test",
        "p2@ext2.test",
        "s1@ext4.test",
        "s2@ext5.test",
        "s3@ext6.test",
        "s4@ext0.test",
        "s5@ext1.test",
    ];
    let mut c = Client::connect(guard.smtp).await;
    let r = c.mail(FROM, &rcpts, msg).await;
    assert_eq!(r.code, 250, "{}", r.text);
    let got = up.messages();
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].rcpt_tos,
        strs(&rcpts),
        "Bcc recipients still receive it"
    );
    let data = without_received(&got[0].data);
    let out = Parsed::new(data);
    let orig = Parsed::new(msg.as_bytes());
    let names: Vec<&str> = out.fields.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["from", "to", "subject", "message-id", "date"],
        "{names:?}"
    );
    let head = String::from_utf8_lossy(&data[..data.len() - out.body.len()]).to_string();
    for s in ["s1@", "s2@", "s3@", "s4@", "s5@"] {
        assert!(!head.contains(s), "{s} leaked: {head}");
    }
    assert_eq!(
        out.fields_except(&[]),
        orig.fields_except(&["bcc", "resent-bcc"]),
        "the other fields are byte-identical"
    );
    assert_eq!(
        out.body, orig.body,
        "the body (with its 'Bcc:' line) is untouched"
    );
    assert!(guard.incidents().is_empty());
    assert_eq!(
        guard
            .metric("bccguard_messages_total{action=\"pass\"}")
            .await,
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_mail_over_the_threshold_is_rejected_not_rewritten() {
    let up = Upstream::start().await;
    let guard = Guard::with_upstream(&up, &policy_with("bcc")).await;
    let four = externals(4);
    let msg = format!(
        "From: praxis@example.org\r\n\
         To: {}\r\n\
         Subject: Signiert\r\n\
         Message-ID: <signed-1@example.org>\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/signed; protocol=\"application/pkcs7-signature\";\r\n\
         \tmicalg=sha-256; boundary=\"sig-boundary\"\r\n\
         \r\n\
         --sig-boundary\r\n\
         Content-Type: text/plain\r\n\
         \r\n\
         Signed text.\r\n\
         --sig-boundary\r\n\
         Content-Type: application/pkcs7-signature; name=smime.p7s\r\n\
         Content-Transfer-Encoding: base64\r\n\
         \r\n\
         MIAGCSqGSIb3DQEHAqCAMIACAQExDzANBglghkgBZQMEAgEFADCABgkqhkiG9w0BBwEAAA==\r\n\
         --sig-boundary--\r\n",
        four.join(", ")
    );
    let mut c = Client::connect(guard.smtp).await;
    let r = c.mail_within(FROM, &four, &msg, WAIT).await;
    assert_eq!(
        r.code, 550,
        "signed mail must be refused, not rewritten: {}",
        r.text
    );
    assert!(r.text.contains("5.7.1"), "{}", r.text);
    let id = incident_id(&r.text);
    assert_eq!(up.count(), 0, "nothing may reach upstream");
    let incidents = guard.incidents();
    assert_eq!(incidents.len(), 1);
    assert_eq!(incidents[0]["id"], id.as_str());
    assert_eq!(incidents[0]["action"], "reject");
    assert_eq!(incidents[0]["visible_external"], 4);

    // The same mail unsigned is rewritten (so the refusal above is about
    // the signature, not the mode).
    let plain = msg.replace(
        "multipart/signed; protocol=\"application/pkcs7-signature\";\r\n\tmicalg=sha-256;",
        "multipart/mixed;",
    );
    assert_ne!(plain, msg);
    let r = c.mail_within(FROM, &four, &plain, WAIT).await;
    assert_eq!(r.code, 250, "{}", r.text);
    assert_eq!(up.count(), 1);
}

/// Sends one message to a [`COUNT_EVERYTHING`] guard; returns the new
/// incident (None if the message passed without one).
async fn count_of(
    guard: &Guard,
    up: &Upstream,
    to: &str,
    cc: Option<&str>,
) -> Option<serde_json::Value> {
    let before_inc = guard.incidents().len();
    let before_up = up.count();
    let msg = message(FROM, to, cc, "Counting.\r\n");
    let mut c = Client::connect(guard.smtp).await;
    let r = c.mail(FROM, &["boss@example.org"], &msg).await;
    assert_eq!(r.code, 250, "monitor mode delivers: {}", r.text);
    c.cmd("QUIT", 221).await;
    let got = up.messages();
    assert_eq!(got.len(), before_up + 1);
    assert_eq!(without_received(&got[before_up].data), msg.as_bytes());
    let incidents = guard.incidents();
    assert!(incidents.len() <= before_inc + 1);
    incidents.get(before_inc).cloned()
}

fn counts(incident: Option<serde_json::Value>) -> (u64, u64) {
    let i = incident.expect("an incident with the counts");
    (
        i["visible_external"].as_u64().expect("visible_external"),
        i["visible_internal"].as_u64().expect("visible_internal"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_display_names_and_comments_are_counted_as_a_reader_sees_them() {
    let up = Upstream::start().await;
    let guard = Guard::with_upstream(&up, COUNT_EVERYTHING).await;

    // A group's members are visible.
    let i = count_of(&guard, &up, "Team: p1@ext1.test, p2@ext2.test;", None).await;
    assert_eq!(counts(i), (2, 0), "group members");

    // An empty group shows nobody.
    let i = count_of(
        &guard,
        &up,
        "undisclosed-recipients:;",
        Some("boss@example.org"),
    )
    .await;
    assert!(i.is_none(), "undisclosed-recipients:; counts 0: {i:?}");
    assert_eq!(
        guard
            .metric("bccguard_messages_total{action=\"pass\"}")
            .await,
        1.0
    );

    // Addresses in display names and comments are shown to every reader,
    // so they count like the mailboxes' own: p1, p2, p3 and p7, p8, h, p9.
    let to = "\"p7@ext7.test, p8@ext8.test\" <p1@ext1.test>, \"Mueller, Hans (h@ext3.test)\" <p2@ext2.test>, p3@ext3.test (p9@ext9.test)";
    let i = count_of(&guard, &up, to, None).await;
    assert_eq!(counts(i), (7, 0), "addresses in display names and comments");

    // Groups mixed with plain addresses, in To and Cc, duplicates once.
    let i = count_of(
        &guard,
        &up,
        "Team: p1@ext1.test, p2@ext2.test;, p3@ext3.test, Empty:;",
        Some("Other: P1@EXT1.TEST, boss@example.org;"),
    )
    .await;
    assert_eq!(counts(i), (3, 1), "mixed groups");

    // Every To and Cc field counts, not only the first.
    let i = count_of(
        &guard,
        &up,
        "p1@ext1.test\r\nTo: p2@ext2.test\r\nCc: p3@ext3.test",
        Some("p4@ext4.test"),
    )
    .await;
    assert_eq!(counts(i), (4, 0), "repeated To/Cc fields");

    // Field names in any case, and whitespace before the colon (RFC 5322
    // 4.5 obsolete syntax) still name To and Cc.
    let i = count_of(
        &guard,
        &up,
        "p1@ext1.test\r\nCC : p2@ext2.test\r\nto: p3@ext3.test",
        None,
    )
    .await;
    assert_eq!(counts(i), (3, 0), "case and obsolete whitespace in names");

    // Obsolete list syntax: empty elements and a route-addr.
    let i = count_of(
        &guard,
        &up,
        "p1@ext1.test,, <@relay.test:p2@ext2.test>,",
        None,
    )
    .await;
    assert_eq!(counts(i), (2, 0), "empty elements, route-addr");

    // What cannot be parsed counts as one external address (fail closed).
    let i = count_of(&guard, &up, "Jemand <kaputt>, p1@ext1.test", None).await;
    assert_eq!(counts(i), (2, 0), "unparseable element");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internationalised_internal_domain_matches_its_punycode_form_over_smtputf8() {
    let up = Upstream::start().await;
    let guard = Guard::with_upstream(&up, COUNT_EVERYTHING).await;
    // Internal: müller.example (configured in Unicode, written here in
    // punycode and in Unicode) and bücher.example (configured in punycode).
    let msg = "From: Praxis <praxis@müller.example>\r\n\
               To: Anna <anna@xn--mller-kva.example>, Bernd@Müller.example, anna@müller.example\r\n\
               Cc: carla@bücher.example, p1@ext1.test, P1@EXT1.test\r\n\
               Subject: Grüße aus der Praxis\r\n\
               Message-ID: <idn-1@müller.example>\r\n\
               \r\n\
               Schöne Grüße.\r\n";
    let mut c = Client::connect(guard.smtp).await;
    c.ehlo().await;
    c.cmd("MAIL FROM:<praxis@müller.example> SMTPUTF8", 250)
        .await;
    for r in [
        "anna@müller.example",
        "bernd@müller.example",
        "carla@bücher.example",
        "p1@ext1.test",
    ] {
        c.cmd(&format!("RCPT TO:<{r}>"), 250).await;
    }
    c.cmd("DATA", 354).await;
    let r = c.finish(msg).await;
    assert_eq!(r.code, 250, "{}", r.text);
    let got = up.messages();
    assert_eq!(got.len(), 1);
    assert!(
        got[0]
            .mail_options
            .iter()
            .any(|o| o.eq_ignore_ascii_case("SMTPUTF8")),
        "SMTPUTF8 passed on: {:?}",
        got[0].mail_options
    );
    assert_eq!(got[0].rcpt_tos[0], "anna@müller.example");
    assert_eq!(without_received(&got[0].data), msg.as_bytes());
    let incidents = guard.incidents();
    assert_eq!(incidents.len(), 1);
    assert_eq!(incidents[0]["visible_external"], 1, "{}", incidents[0]);
    assert_eq!(incidents[0]["visible_internal"], 3, "{}", incidents[0]);
    assert_eq!(incidents[0]["external_domains"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lettre_sees_the_refusal_as_a_permanent_550_with_its_text() {
    use lettre::address::Envelope;
    use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

    let up = Upstream::start().await;
    let guard = Guard::with_upstream(&up, POLICY).await;
    let mailer = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
        .port(guard.smtp.port())
        .build();

    let four = externals(4);
    let raw = message(FROM, &four.join(", "), None, "An alle.\r\n");
    let envelope = Envelope::new(
        Some(FROM.parse().expect("from")),
        four.iter().map(|a| a.parse().expect("rcpt")).collect(),
    )
    .expect("envelope");
    let err = mailer
        .send_raw(&envelope, raw.as_bytes())
        .await
        .expect_err("the open list must be refused");
    assert!(err.is_permanent(), "{err}");
    assert_eq!(
        err.status().map(|c| c.to_string()).as_deref(),
        Some("550"),
        "{err}"
    );
    let text = err.to_string();
    assert!(text.contains("5.7.1"), "{text}");
    assert!(text.contains("4 external addresses"), "{text}");
    assert_eq!(up.count(), 0);
    assert_eq!(guard.incidents().len(), 1);

    // And an ordinary mail built by lettre goes through.
    let m = Message::builder()
        .from(FROM.parse().expect("from"))
        .to("p1@ext1.test".parse().expect("to"))
        .subject("Kurze Frage")
        .body(String::from("Hallo!\r\n"))
        .expect("message");
    let ok = mailer.send(m).await.expect("a one-recipient mail passes");
    assert!(ok.is_positive(), "{ok:?}");
    let got = up.messages();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].rcpt_tos, strs(&["p1@ext1.test"]));
    assert!(got[0].text().contains("Subject: Kurze Frage"));
}

/// Found by fuzzing (fuzz/decide_hide): a `[` that starts no domain literal
/// used to swallow the list up to the next `]`, so `x [, a, b, c, d ]`
/// counted as one unparseable element where a mail client shows four
/// addresses; with a threshold of 3 it passed. Now only the bracketed
/// ends are unparseable (each counts, fail closed) and the addresses
/// between them count one by one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stray_bracket_does_not_hide_the_addresses_after_it() {
    let up = Upstream::start().await;
    let guard = Guard::with_upstream(&up, COUNT_EVERYTHING).await;
    let i = count_of(
        &guard,
        &up,
        "x [, p1@ext1.test, p2@ext2.test, p3@ext3.test, p4@ext4.test, ]",
        None,
    )
    .await;
    assert_eq!(counts(i), (6, 0), "four addresses and two broken ends");
    // A real domain literal is still one address.
    let i = count_of(&guard, &up, "p1@[192.0.2.1], p2@[IPv6:2001:db8::1]", None).await;
    assert_eq!(counts(i), (2, 0), "domain literals");
}

/// Found by fuzzing, not fixed (docs/hardening.md, "What fuzzing found"): RFC 5322 lets a
/// quoted local part hold `>` and `,`, so the guard reads this To as one
/// address, while mail-parser (and a client that reads the same way) ends
/// the angle-addr at the first `>` and shows the four addresses after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quote_inside_an_angle_addr_does_not_hide_the_list() {
    let up = Upstream::start().await;
    let guard = Guard::with_upstream(&up, COUNT_EVERYTHING).await;
    let i = count_of(
        &guard,
        &up,
        "<\"x>, p1@ext1.test, p2@ext2.test, p3@ext3.test, p4@ext4.test, <\"@y.test>",
        None,
    )
    .await;
    assert!(counts(i).0 >= 4, "the four addresses a reader sees");
}

/// Found by fuzzing, not fixed (docs/hardening.md, "What fuzzing found"): a header name with a
/// control character before the colon is no RFC 5322 field name, so the
/// guard ignores the line; mail-parser strips the control character and
/// shows a Cc with four addresses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_control_character_in_a_header_name_does_not_hide_the_field() {
    let up = Upstream::start().await;
    let guard = Guard::with_upstream(&up, COUNT_EVERYTHING).await;
    let i = count_of(
        &guard,
        &up,
        "boss@example.org\r\nCc\u{c}: p1@ext1.test, p2@ext2.test, p3@ext3.test, p4@ext4.test",
        None,
    )
    .await;
    assert!(counts(i).0 >= 4, "the four addresses a reader sees");
}
