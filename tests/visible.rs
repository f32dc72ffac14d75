//! Issue 14, "Count every address a reader can see", black-box over real
//! sockets: the guard in-process on port 0, a real upstream (aiosmtpd) and
//! the raw SMTP client of the harness. Addresses count wherever a mail
//! client shows them: Reply-To and Mail-Followup-To, display names,
//! comments, RFC 2047 encoded words, the tokens of an unparseable value,
//! and the headers of attached messages; bcc and split hide them in every
//! visible header or refuse what they cannot hide.

mod common;

use std::collections::BTreeMap;

use base64::Engine as _;
use common::*;

/// Envelope sender of every test mail (internal).
const FROM: &str = "praxis@example.org";

/// The header From of most test mails: one internal address.
const HEADER_FROM: &str = "Praxis <praxis@example.org>";

/// The default test policy (example.org internal, threshold 3) with another
/// action.
fn policy_with(action: &str) -> String {
    assert!(POLICY.contains("action: reject\n"), "POLICY changed shape");
    POLICY.replace("action: reject", &format!("action: {action}"))
}

/// `visible_seen` of an incident record as a map.
fn seen(incident: &serde_json::Value) -> BTreeMap<String, u64> {
    incident["visible_seen"]
        .as_object()
        .unwrap_or_else(|| panic!("no visible_seen map in {incident}"))
        .iter()
        .map(|(k, v)| {
            let n = v
                .as_u64()
                .unwrap_or_else(|| panic!("visible_seen[{k}] is not a count: {v}"));
            (k.clone(), n)
        })
        .collect()
}

/// The expected `visible_seen` map.
fn seen_map(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    pairs.iter().map(|(k, n)| (k.to_string(), *n)).collect()
}

/// The header section of a delivered message (its Received header cut
/// off), lowercased.
fn visible_head(data: &[u8]) -> String {
    let data = without_received(data);
    let body = Parsed::new(data).body.len();
    String::from_utf8_lossy(&data[..data.len() - body]).to_ascii_lowercase()
}

/// The addresses a real mail reader (mail-parser) finds in one header.
fn read_addresses(a: Option<&mail_parser::Address<'_>>) -> Vec<String> {
    a.map(|a| {
        a.iter()
            .map(|m| m.address().unwrap_or("<none>").to_ascii_lowercase())
            .collect()
    })
    .unwrap_or_default()
}

/// aiosmtpd records the null sender as `<>`.
fn null_sender(m: &Delivered) -> bool {
    m.mail_from.is_empty() || m.mail_from == "<>"
}

/// `n` external addresses with another local part than [`externals`]
/// (`{prefix}1@ext1.test`, ...), so two lists never share an address.
fn others(prefix: &str, n: usize) -> Vec<String> {
    (1..=n)
        .map(|i| format!("{prefix}{i}@ext{}.test", i % 7))
        .collect()
}

fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// Asserts a 550 5.7.1 open-list refusal and returns its incident id.
fn assert_refused(r: &Reply, phrase: &str) -> String {
    assert_eq!(r.code, 550, "{}", r.text);
    assert!(
        r.text.starts_with("550-5.7.1 ") || r.text.starts_with("550 5.7.1 "),
        "{}",
        r.text
    );
    assert!(
        r.text.contains(phrase),
        "missing {phrase:?} in:\n{}",
        r.text
    );
    incident_id(&r.text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reply_to_and_mail_followup_to_count_and_are_named_in_the_refusal() {
    let up = Upstream::start().await;
    let guard = Guard::with_upstream(&up, POLICY).await;
    let mut c = Client::connect(guard.smtp).await;

    // Near miss: one external in To, two in Reply-To, and a From with a
    // single external address (the author, shown on every mail): three.
    let msg = "From: Terminservice <service@partner.test>\r\n\
               To: p1@ext1.test\r\n\
               Reply-To: r1@ext1.test, r2@ext2.test\r\n\
               Subject: Termin\r\n\
               Message-ID: <visible-near@example.org>\r\n\
               \r\n\
               Three readers.\r\n";
    let r = c.mail(FROM, &["p1@ext1.test"], msg).await;
    assert_eq!(
        r.code, 250,
        "a single From address is not counted: {}",
        r.text
    );
    assert_eq!(up.count(), 1);
    assert_eq!(without_received(&up.messages()[0].data), msg.as_bytes());
    assert!(guard.incidents().is_empty(), "{:?}", guard.incidents());

    // Five external addresses in Reply-To, one in To: six.
    let reply_to = others("r", 5);
    let msg = format!(
        "From: {HEADER_FROM}\r\n\
         To: p1@ext1.test\r\n\
         Reply-To: {}\r\n\
         Subject: Termin\r\n\
         Message-ID: <visible-reply-to@example.org>\r\n\
         \r\n\
         Antworten gehen an alle.\r\n",
        reply_to.join(", ")
    );
    let r = c.mail(FROM, &["p1@ext1.test"], &msg).await;
    let id = assert_refused(
        &r,
        "Message not sent: 6 external addresses are visible to every recipient in To/Cc and Reply-To (limit 3).",
    );
    assert_eq!(up.count(), 1, "nothing more reached upstream");
    let incidents = guard.incidents();
    assert_eq!(incidents.len(), 1, "{incidents:?}");
    let i = &incidents[0];
    assert_eq!(i["id"], id.as_str());
    assert_eq!(i["action"], "reject");
    assert_eq!(i["class"], "prevented");
    assert_eq!(i["outcome"], "refused");
    assert_eq!(i["visible_external"], 6, "{i}");
    assert_eq!(i["visible_internal"], 0, "{i}");
    assert_eq!(i["visible_attached"], 0, "{i}");
    assert_eq!(i["envelope_recipients"], 1, "{i}");
    assert_eq!(
        seen(i),
        seen_map(&[("To address", 1), ("Reply-To address", 5)])
    );

    // Mail-Followup-To likewise; an address already in To counts once.
    let msg = format!(
        "From: {HEADER_FROM}\r\n\
         To: p1@ext1.test\r\n\
         Mail-Followup-To: P1@EXT1.TEST, {}\r\n\
         Subject: Liste\r\n\
         Message-ID: <visible-followup@example.org>\r\n\
         \r\n\
         Antworten gehen an die Liste.\r\n",
        others("m", 4).join(", ")
    );
    let r = c.mail(FROM, &["p1@ext1.test"], &msg).await;
    let id = assert_refused(
        &r,
        "5 external addresses are visible to every recipient in To/Cc and Mail-Followup-To (limit 3).",
    );
    assert_eq!(up.count(), 1);
    let incidents = guard.incidents();
    assert_eq!(incidents.len(), 2, "{incidents:?}");
    let i = &incidents[1];
    assert_eq!(i["id"], id.as_str());
    assert_eq!(i["visible_external"], 5, "{i}");
    assert_eq!(
        seen(i),
        seen_map(&[("To address", 1), ("Mail-Followup-To address", 4)])
    );

    // A From with several addresses is a list too: two in From, two in To.
    let msg = "From: a1@ext1.test, a2@ext2.test\r\n\
               Sender: praxis@example.org\r\n\
               To: p1@ext1.test, p2@ext2.test\r\n\
               Subject: Gemeinsam\r\n\
               \r\n\
               Two authors.\r\n";
    let r = c.mail(FROM, &["p1@ext1.test", "p2@ext2.test"], msg).await;
    assert_refused(
        &r,
        "4 external addresses are visible to every recipient in To/Cc and From (limit 3).",
    );
    assert_eq!(up.count(), 1);
    let i = &guard.incidents()[2];
    assert_eq!(i["visible_external"], 4, "{i}");
    assert_eq!(seen(i), seen_map(&[("From address", 2), ("To address", 2)]));
    c.cmd("QUIT", 221).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn visible_headers_replaces_the_default_set() {
    let up = Upstream::start().await;
    let policy = format!("{POLICY}  visible_headers: [To, Cc]\n");
    let guard = Guard::with_upstream(&up, &policy).await;
    let msg = format!(
        "From: {HEADER_FROM}\r\nTo: p1@ext1.test\r\nReply-To: {}\r\nSubject: Nur To und Cc\r\n\r\nBody.\r\n",
        others("r", 5).join(", ")
    );
    let mut c = Client::connect(guard.smtp).await;
    let r = c.mail(FROM, &["p1@ext1.test"], &msg).await;
    assert_eq!(
        r.code, 250,
        "Reply-To is not configured as visible: {}",
        r.text
    );
    assert_eq!(up.count(), 1);
    assert!(guard.incidents().is_empty());

    // Cc still counts.
    let msg = format!(
        "From: {HEADER_FROM}\r\nTo: p1@ext1.test\r\nCc: {}\r\nSubject: Cc\r\n\r\nBody.\r\n",
        others("c", 3).join(", ")
    );
    let r = c.mail(FROM, &["p1@ext1.test"], &msg).await;
    assert_refused(
        &r,
        "4 external addresses are visible to every recipient in To/Cc (limit 3).",
    );
    assert_eq!(up.count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitor_sends_names_and_comments_that_show_addresses_unchanged_as_a_disclosure() {
    let up = Upstream::start().await;
    let guard = Guard::with_upstream(&up, &policy_with("monitor")).await;
    // One mailbox each, both internal; what a reader sees are the five
    // addresses in the display name and the two in the comment.
    let to = "\"p1@ext1.test, p2@ext2.test, p3@ext3.test, p4@ext4.test, p5@ext5.test\" <amt@example.org>";
    let cc = "boss@example.org (p6@ext6.test, p7@ext0.test)";
    let msg = message(HEADER_FROM, to, Some(cc), "Zur Kenntnis.\r\n");
    let rcpts = ["amt@example.org", "boss@example.org", "p1@ext1.test"];
    let mut c = Client::connect(guard.smtp).await;
    let r = c.mail(FROM, &rcpts, &msg).await;
    assert_eq!(r.code, 250, "monitor sends it: {}", r.text);
    let got = up.messages();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].rcpt_tos, rcpts);
    assert_eq!(
        without_received(&got[0].data),
        msg.as_bytes(),
        "monitor must not change a byte"
    );
    let incidents = guard.incidents();
    assert_eq!(incidents.len(), 1, "{incidents:?}");
    let i = &incidents[0];
    assert_eq!(i["action"], "monitor");
    assert_eq!(i["class"], "disclosed");
    assert_eq!(i["outcome"], "delivered");
    assert_eq!(i["visible_external"], 7, "{i}");
    assert_eq!(i["visible_internal"], 2, "{i}");
    assert_eq!(i["external_domains"], 7, "{i}");
    assert_eq!(i["visible_attached"], 0, "{i}");
    assert_eq!(i["display_names"], 1, "{i}");
    assert_eq!(
        seen(i),
        seen_map(&[("To display name", 5), ("Cc comment", 2)])
    );
    c.cmd("QUIT", 221).await;
}

/// An open list in To, in Reply-To, in Mail-Followup-To, and behind the
/// display name of an internal mailbox in Cc; an external address in the
/// body (never a header, never touched).
fn open_everywhere() -> String {
    [
        format!("From: {HEADER_FROM}"),
        "To: p1@ext1.test, p2@ext2.test, p3@ext3.test, p4@ext4.test,\r\n p5@ext5.test".into(),
        "Cc: \"p9@ext9.test\" <boss@example.org>".into(),
        "Reply-To: r1@ext1.test, r2@ext2.test, r3@ext3.test, r4@ext4.test".into(),
        "Subject: Terminverschiebung".into(),
        "Mail-Followup-To: r1@ext1.test, boss@example.org".into(),
        "Message-ID: <visible-rewrite@example.org>".into(),
        "Date: Mon, 1 Mar 2021 10:00:00 +0100".into(),
        "MIME-Version: 1.0".into(),
        "Content-Type: text/plain; charset=utf-8".into(),
        String::new(),
        "Ihr Termin wird verschoben.".into(),
        ".Diese Zeile beginnt mit einem Punkt.".into(),
        "Reply-To: r1@ext1.test (a body line, not a header)".into(),
        String::new(),
    ]
    .join("\r\n")
}

/// Envelope recipients of [`open_everywhere`].
const OPEN_RCPTS: [&str; 6] = [
    "p1@ext1.test",
    "p2@ext2.test",
    "p3@ext3.test",
    "p4@ext4.test",
    "p5@ext5.test",
    "boss@example.org",
];

/// The fields a rewrite of [`open_everywhere`] changes.
const REWRITTEN: [&str; 4] = ["to", "cc", "reply-to", "mail-followup-to"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bcc_hides_external_addresses_in_every_visible_header() {
    let up = Upstream::start().await;
    let guard = Guard::with_upstream(&up, &policy_with("bcc")).await;
    let msg = open_everywhere();
    let mut c = Client::connect(guard.smtp).await;
    let r = c.mail(FROM, &OPEN_RCPTS, &msg).await;
    assert_eq!(r.code, 250, "{}", r.text);
    let got = up.messages();
    assert_eq!(got.len(), 1, "bcc sends one message");
    assert_eq!(got[0].mail_from, FROM);
    assert_eq!(got[0].rcpt_tos, OPEN_RCPTS, "every recipient still gets it");

    let data = without_received(&got[0].data);
    let out = Parsed::new(data);
    let orig = Parsed::new(msg.as_bytes());
    let head = visible_head(&got[0].data);
    assert!(
        !head.contains("@ext"),
        "an external address is visible:\n{head}"
    );
    assert_eq!(
        out.values("to"),
        ["praxis@example.org"],
        "To shows the sender"
    );
    assert_eq!(
        out.values("cc"),
        ["<boss@example.org>"],
        "the internal mailbox stays, without the name that showed p9"
    );
    assert_eq!(
        out.values("reply-to"),
        ["praxis@example.org"],
        "an emptied Reply-To names the sender"
    );
    assert_eq!(out.values("mail-followup-to"), ["boss@example.org"]);
    let names: Vec<&str> = out.fields.iter().map(|(n, _)| n.as_str()).collect();
    let orig_names: Vec<&str> = orig.fields.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, orig_names, "the fields stay where they were");
    assert_eq!(
        out.fields_except(&REWRITTEN),
        orig.fields_except(&REWRITTEN),
        "every other field byte-identical"
    );
    assert_eq!(out.body, orig.body, "the body is byte-identical");

    // The same message as a mail reader takes it.
    let read = mail_parser::MessageParser::default()
        .parse(&got[0].data)
        .expect("a message");
    assert_eq!(read_addresses(read.to()), ["praxis@example.org"]);
    assert_eq!(read_addresses(read.cc()), ["boss@example.org"]);
    assert_eq!(
        read.cc().and_then(|a| a.first()).and_then(|m| m.name()),
        None
    );
    assert_eq!(read_addresses(read.reply_to()), ["praxis@example.org"]);
    assert_eq!(read_addresses(read.from()), ["praxis@example.org"]);

    let incidents = guard.incidents();
    assert_eq!(incidents.len(), 1, "{incidents:?}");
    let i = &incidents[0];
    assert_eq!(i["action"], "bcc");
    assert_eq!(i["outcome"], "delivered");
    assert_eq!(i["visible_external"], 10, "{i}");
    assert_eq!(i["visible_internal"], 1, "{i}");
    assert_eq!(
        seen(i),
        seen_map(&[
            ("To address", 5),
            ("Cc display name", 1),
            ("Reply-To address", 4)
        ])
    );
    c.cmd("QUIT", 221).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_copies_show_only_their_own_address_in_every_visible_header() {
    let up = Upstream::start().await;
    let guard = Guard::with_upstream(&up, &policy_with("split")).await;
    let msg = open_everywhere();
    let mut c = Client::connect(guard.smtp).await;
    let r = c.mail(FROM, &OPEN_RCPTS, &msg).await;
    assert_eq!(r.code, 250, "{}", r.text);
    assert!(r.text.contains("6 separate copies"), "{}", r.text);
    let got = up.messages();
    assert_eq!(got.len(), 6, "one copy per envelope recipient");
    let orig = Parsed::new(msg.as_bytes());
    for rcpt in OPEN_RCPTS {
        let copy = got
            .iter()
            .find(|d| d.rcpt_tos == [rcpt])
            .unwrap_or_else(|| panic!("no copy for {rcpt}"));
        assert_eq!(copy.mail_from, FROM);
        let data = without_received(&copy.data);
        let out = Parsed::new(data);
        let head = visible_head(&copy.data);
        let internal = rcpt.ends_with("@example.org");
        let own_to = if internal { "praxis@example.org" } else { rcpt };
        assert_eq!(out.values("to"), [own_to], "To of the copy for {rcpt}");
        assert_eq!(
            head.matches("@ext").count(),
            usize::from(!internal),
            "the copy for {rcpt} shows another external address:\n{head}"
        );
        assert_eq!(out.values("cc"), ["<boss@example.org>"], "{rcpt}");
        assert_eq!(
            out.values("reply-to"),
            ["praxis@example.org"],
            "the Reply-To list is gone from the copy for {rcpt}"
        );
        assert_eq!(
            out.values("mail-followup-to"),
            ["boss@example.org"],
            "{rcpt}"
        );
        assert_eq!(
            out.fields_except(&REWRITTEN),
            orig.fields_except(&REWRITTEN),
            "{rcpt}"
        );
        assert_eq!(out.body, orig.body, "{rcpt}: body byte-identical");
    }
    let incidents = guard.incidents();
    assert_eq!(incidents.len(), 1, "{incidents:?}");
    assert_eq!(incidents[0]["action"], "split");
    assert_eq!(incidents[0]["visible_external"], 10);
    assert_eq!(incidents[0]["envelope_recipients"], 6);
    c.cmd("QUIT", 221).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_encoded_word_holding_a_list_is_held_for_review() {
    let up = Upstream::start().await;
    let guard = Guard::with_upstream(&up, &policy_with("hold")).await;
    let five = externals(5);
    // What Python's email.header.Header(list, "utf-8") writes for a short
    // value: one base64 word; nothing before decoding looks like an address.
    let word = format!(
        "=?utf-8?b?{}?=",
        base64::engine::general_purpose::STANDARD.encode(five.join(", "))
    );
    assert!(!word.contains('@'));
    let msg = message(HEADER_FROM, &word, None, "Verschl\u{fc}sselt?\r\n");
    let mut c = Client::connect(guard.smtp).await;
    let r = c.mail(FROM, &refs(&five), &msg).await;
    assert_eq!(r.code, 250, "{}", r.text);
    assert!(
        r.text.contains(
            "Held for review: 5 external addresses were visible to every recipient in To/Cc."
        ),
        "{}",
        r.text
    );
    let id = incident_id(&r.text);
    assert!(
        up.messages()
            .iter()
            .all(|m| null_sender(m) && m.rcpt_tos.iter().all(|r| !r.contains("@ext"))),
        "the held mail reached upstream: {:?}",
        up.messages()
    );
    let incidents = guard.incidents();
    assert_eq!(incidents.len(), 1, "{incidents:?}");
    let i = &incidents[0];
    assert_eq!(i["id"], id.as_str());
    assert_eq!(i["action"], "hold");
    assert_eq!(i["class"], "prevented");
    assert_eq!(i["outcome"], "held");
    assert_eq!(i["visible_external"], 5, "{i}");
    assert_eq!(seen(i), seen_map(&[("To encoded word", 5)]));
    let held = guard.shared.store.held_message(&id).expect("held");
    assert_eq!(held.message, msg.as_bytes(), "held as sent");

    // What Python's Header(list, "utf-8", header_name="To").encode() writes
    // for it in full: two words over a fold, split inside p4's address. A
    // reader joins adjacent words (RFC 2047 6.2): the same five addresses.
    let python = "=?utf-8?b?cDFAZXh0MS50ZXN0LCBwMkBleHQyLnRlc3QsIHAzQGV4dDMudGVzdCwgcDRA?=\r\n =?utf-8?b?ZXh0NC50ZXN0LCBwNUBleHQ1LnRlc3Q=?=";
    let msg = message(HEADER_FROM, python, None, "Zwei W\u{f6}rter.\r\n");
    let r = c.mail(FROM, &refs(&five), &msg).await;
    assert_eq!(r.code, 250, "{}", r.text);
    assert!(
        r.text.contains(
            "Held for review: 5 external addresses were visible to every recipient in To/Cc."
        ),
        "{}",
        r.text
    );
    let id = incident_id(&r.text);
    let incidents = guard.incidents();
    assert_eq!(incidents.len(), 2, "{incidents:?}");
    let i = &incidents[1];
    assert_eq!(i["id"], id.as_str());
    assert_eq!(i["visible_external"], 5, "{i}");
    assert_eq!(seen(i), seen_map(&[("To encoded word", 5)]));
    assert!(
        up.messages().iter().all(null_sender),
        "only notices to the sender reached upstream: {:?}",
        up.messages()
    );
    c.cmd("QUIT", 221).await;
}

/// A forward: one external address (p1) in To, and an attached
/// message/rfc822 whose To holds `attached` (its From is one external
/// address, which is never counted).
fn forward(attached: &[String]) -> String {
    format!(
        "From: {HEADER_FROM}\r\n\
         To: p1@ext1.test\r\n\
         Subject: Fwd: Einladung zum Sommerfest\r\n\
         Message-ID: <visible-fwd@example.org>\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"fwd-boundary\"\r\n\
         \r\n\
         --fwd-boundary\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         \r\n\
         Siehe unten.\r\n\
         --fwd-boundary\r\n\
         Content-Type: message/rfc822\r\n\
         Content-Disposition: attachment\r\n\
         \r\n\
         From: Verein <info@verein.test>\r\n\
         To: {}\r\n\
         Subject: Einladung zum Sommerfest\r\n\
         \r\n\
         Liebe Mitglieder.\r\n\
         --fwd-boundary--\r\n",
        attached.join(", ")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attached_open_list_counts_for_mail_that_leaves() {
    let up = Upstream::start().await;
    let guard = Guard::with_upstream(&up, POLICY).await;
    let msg = forward(&others("m", 10));
    let mut c = Client::connect(guard.smtp).await;

    let r = c.mail(FROM, &["p1@ext1.test"], &msg).await;
    let id = assert_refused(
        &r,
        "11 external addresses are visible to every recipient in To/Cc and an attached message (limit 3).",
    );
    assert_eq!(up.count(), 0, "nothing reached upstream");
    let incidents = guard.incidents();
    assert_eq!(incidents.len(), 1, "{incidents:?}");
    let i = &incidents[0];
    assert_eq!(i["id"], id.as_str());
    assert_eq!(i["action"], "reject");
    assert_eq!(i["visible_external"], 11, "{i}");
    assert_eq!(i["visible_attached"], 10, "{i}");
    assert_eq!(
        seen(i),
        seen_map(&[("To address", 1), ("To address (attached message)", 10)])
    );

    // Forwarded inside the organisation only: nothing new is disclosed.
    let r = c.mail(FROM, &["boss@example.org"], &msg).await;
    assert_eq!(r.code, 250, "internal forward: {}", r.text);
    let got = up.messages();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].rcpt_tos, ["boss@example.org"]);
    assert_eq!(without_received(&got[0].data), msg.as_bytes());
    assert_eq!(guard.incidents().len(), 1, "no incident for it");
    c.cmd("QUIT", 221).await;

    // policy.attached_messages: ignore counts the message's own headers only.
    let policy = format!("{POLICY}  attached_messages: ignore\n");
    let guard = Guard::with_upstream(&up, &policy).await;
    let mut c = Client::connect(guard.smtp).await;
    let r = c.mail(FROM, &["p1@ext1.test"], &msg).await;
    assert_eq!(r.code, 250, "attached messages ignored: {}", r.text);
    let got = up.messages();
    assert_eq!(got.len(), 2);
    assert_eq!(got[1].rcpt_tos, ["p1@ext1.test"]);
    assert_eq!(without_received(&got[1].data), msg.as_bytes());
    assert!(guard.incidents().is_empty(), "{:?}", guard.incidents());
    c.cmd("QUIT", 221).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bcc_refuses_an_attached_open_list_it_cannot_hide() {
    let up = Upstream::start().await;
    let guard = Guard::with_upstream(&up, &policy_with("bcc")).await;
    let msg = forward(&others("m", 10));
    let mut c = Client::connect(guard.smtp).await;
    let r = c.mail(FROM, &["p1@ext1.test"], &msg).await;
    let id = assert_refused(
        &r,
        "Message not sent: an attached message shows 10 external addresses, which moving recipients to Bcc cannot hide.",
    );
    assert_eq!(up.count(), 0, "nothing half-clean reached upstream");
    let incidents = guard.incidents();
    assert_eq!(incidents.len(), 1, "{incidents:?}");
    let i = &incidents[0];
    assert_eq!(i["id"], id.as_str());
    assert_eq!(i["action"], "reject");
    assert_eq!(i["class"], "prevented");
    assert_eq!(i["outcome"], "refused");
    assert_eq!(i["visible_attached"], 10, "{i}");
    assert_eq!(i["visible_external"], 11, "{i}");
    assert!(
        i["reason"]
            .as_str()
            .is_some_and(|r| r.contains("attached message")),
        "{i}"
    );

    // Within the threshold the attachment is no reason to refuse: the
    // message's own list is moved to Bcc as usual.
    let msg = forward(&others("m", 2)).replace(
        "To: p1@ext1.test\r\n",
        "To: p1@ext1.test, p2@ext2.test, p3@ext3.test\r\n",
    );
    let rcpts = ["p1@ext1.test", "p2@ext2.test", "p3@ext3.test"];
    let r = c.mail(FROM, &rcpts, &msg).await;
    assert_eq!(r.code, 250, "{}", r.text);
    let got = up.messages();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].rcpt_tos, rcpts);
    let out = Parsed::new(without_received(&got[0].data));
    assert_eq!(out.values("to"), ["praxis@example.org"]);
    assert_eq!(
        out.body,
        Parsed::new(msg.as_bytes()).body,
        "attachment untouched"
    );
    c.cmd("QUIT", 221).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_eml_attachment_and_a_bounce_s_headers_count_like_a_forwarded_message() {
    let up = Upstream::start().await;
    let guard = Guard::with_upstream(&up, POLICY).await;
    let inner =
        "From: info@verein.test\r\nTo: e1@ext1.test, e2@ext2.test\r\nSubject: x\r\n\r\nBody.\r\n";
    let b64 = base64::engine::general_purpose::STANDARD.encode(inner);
    let msg = format!(
        "From: {HEADER_FROM}\r\n\
         To: p1@ext1.test\r\n\
         Subject: Zwei Anh\u{e4}nge\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=b1\r\n\
         \r\n\
         --b1\r\n\
         Content-Type: application/octet-stream; name=\"Einladung.eml\"\r\n\
         Content-Transfer-Encoding: base64\r\n\
         \r\n\
         {b64}\r\n\
         --b1\r\n\
         Content-Type: text/rfc822-headers\r\n\
         \r\n\
         From: postmaster@partner.test\r\n\
         Cc: h1@ext3.test, h2@ext4.test\r\n\
         \r\n\
         --b1--\r\n"
    );
    let mut c = Client::connect(guard.smtp).await;
    let r = c.mail(FROM, &["p1@ext1.test"], &msg).await;
    assert_refused(
        &r,
        "5 external addresses are visible to every recipient in To/Cc and an attached message (limit 3).",
    );
    assert_eq!(up.count(), 0);
    let i = &guard.incidents()[0];
    assert_eq!(i["visible_attached"], 4, "{i}");
    assert_eq!(
        seen(i),
        seen_map(&[
            ("To address", 1),
            ("To address (attached message)", 2),
            ("Cc address (attached message)", 2)
        ])
    );
    c.cmd("QUIT", 221).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_address_of_an_unparseable_value_counts() {
    let up = Upstream::start().await;
    let guard = Guard::with_upstream(&up, POLICY).await;
    let mut c = Client::connect(guard.smtp).await;

    // Near miss: three space-separated addresses are three, not four.
    let three = externals(3);
    let msg = message(HEADER_FROM, &three.join(" "), None, "Drei.\r\n");
    let r = c.mail(FROM, &refs(&three), &msg).await;
    assert_eq!(r.code, 250, "three tokens are three: {}", r.text);
    assert_eq!(up.count(), 1);
    assert!(guard.incidents().is_empty(), "{:?}", guard.incidents());

    // Six, without commas: one element a strict parser cannot read, six
    // addresses a reader sees.
    let six = externals(6);
    let msg = message(HEADER_FROM, &six.join(" "), None, "Sechs.\r\n");
    let r = c.mail(FROM, &refs(&six), &msg).await;
    assert_refused(
        &r,
        "6 external addresses are visible to every recipient in To/Cc (limit 3).",
    );
    assert_eq!(up.count(), 1);
    let incidents = guard.incidents();
    assert_eq!(incidents.len(), 1, "{incidents:?}");
    assert_eq!(incidents[0]["visible_external"], 6, "{}", incidents[0]);
    assert_eq!(
        seen(&incidents[0]),
        seen_map(&[("To unparseable token", 6)])
    );
    c.cmd("QUIT", 221).await;
}

/// A message whose body is a message/rfc822 entity `levels` deep (each
/// level an attached message), sent to one external recipient.
fn nested(levels: usize) -> String {
    let mut msg = String::from(
        "From: boss@example.org\r\nTo: team@example.org\r\nSubject: innen\r\n\r\nInnen.\r\n",
    );
    for k in (0..levels).rev() {
        let head = if k == 0 {
            format!("From: {HEADER_FROM}\r\nTo: p1@ext1.test\r\nSubject: Fwd\r\n")
        } else {
            format!("From: boss@example.org\r\nTo: team@example.org\r\nSubject: Fwd {k}\r\n")
        };
        msg = format!("{head}MIME-Version: 1.0\r\nContent-Type: message/rfc822\r\n\r\n{msg}");
    }
    msg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_nested_deeper_than_mime_nesting_limit_is_refused() {
    let up = Upstream::start().await;
    let policy = format!("{POLICY}  mime_nesting_limit: 3\n");
    let guard = Guard::with_upstream(&up, &policy).await;
    let mut c = Client::connect(guard.smtp).await;

    // At the limit: read in full, and it passes.
    let msg = nested(3);
    assert_eq!(msg.matches("message/rfc822").count(), 3);
    let r = c.mail(FROM, &["p1@ext1.test"], &msg).await;
    assert_eq!(r.code, 250, "3 levels are within the limit: {}", r.text);
    assert_eq!(up.count(), 1);

    let msg = nested(5);
    assert_eq!(msg.matches("message/rfc822").count(), 5);
    let r = c.mail(FROM, &["p1@ext1.test"], &msg).await;
    assert_eq!(r.code, 554, "{}", r.text);
    assert!(r.text.starts_with("554 5.6.0 "), "{}", r.text);
    assert!(
        r.text.contains("nested deeper than 3 MIME levels"),
        "{}",
        r.text
    );
    assert_eq!(up.count(), 1, "the deep message did not reach upstream");
    assert_eq!(
        guard
            .metric("bccguard_refused_total{reason=\"mime_too_deep\"}")
            .await,
        1.0
    );
    // The session goes on.
    let r = c.mail(FROM, &["p1@ext1.test"], &nested(1)).await;
    assert_eq!(r.code, 250, "{}", r.text);
    assert_eq!(up.count(), 2);
    c.cmd("QUIT", 221).await;
}
