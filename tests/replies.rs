//! Issue 16, "Every word the guard says is true": the clerk-facing policy
//! replies as a real client prints them (Python's smtplib, over a real
//! socket, the guard in-process with an aiosmtpd upstream), in German,
//! English or both, saying "the DPO has been informed" only when a notice
//! to the DPO is queued, and within RFC 5321's line limits.

mod common;

use bccguard::incident::store::NoticeKind;
use common::*;

/// Sends one mail with `n` external addresses in To through smtplib and
/// returns the DATA reply as smtplib shows it: the code, then the text.
async fn smtplib_reply(guard: &Guard, n: usize) -> (u16, String) {
    let to: Vec<String> = (1..=n).map(|i| format!("p{i}@ext{i}.test")).collect();
    let msg = format!(
        "From: praxis@example.org\r\nTo: {}\r\nSubject: Termin\r\n\r\nhallo\r\n",
        to.join(", ")
    );
    smtplib_send(guard.smtp, "praxis@example.org", &to, &msg).await
}

fn policy(extra: &str) -> String {
    format!("{POLICY}{extra}")
}

/// The guard with `policy` and more `incidents:` keys.
async fn guard_with(up: &Upstream, policy: &str, incidents: &str) -> Guard {
    let text = yaml(Some(up.addr), policy).replacen(
        "incidents:\n",
        &format!("incidents:\n{incidents}"),
        1,
    );
    Guard::start(&text).await
}

/// Every line a reply may have: ASCII, and within 512 octets with its
/// `550-` and CRLF (RFC 5321 4.5.3.1.5).
fn assert_wire_fit(text: &str) {
    for line in text.lines() {
        assert!(line.is_ascii(), "not ASCII: {line:?}");
        assert!(line.len() + 6 <= 512, "too long ({}): {line:?}", line.len());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_languages_german_first_and_no_claim_that_nobody_made_true() {
    let up = Upstream::start().await;
    let guard = Guard::with_upstream(&up, &policy("")).await;
    let (code, text) = smtplib_reply(&guard, 6).await;
    assert_eq!(code, 550, "{text}");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 8, "{text}");
    assert!(lines.iter().all(|l| l.starts_with("5.7.1 ")), "{text}");
    assert_eq!(
        lines[0],
        "5.7.1 Nachricht nicht gesendet: 6 externe Adressen sind fuer jeden Empfaenger sichtbar in To/Cc (Grenze 3)."
    );
    assert_eq!(
        lines[4],
        "5.7.1 Message not sent: 6 external addresses are visible to every recipient in To/Cc (limit 3)."
    );
    let id = incident_id(&text);
    assert_eq!(
        lines[3],
        format!("5.7.1 Vorfall {id}; der Vorgang wurde im Vorfallsregister vermerkt.")
    );
    assert_eq!(
        lines[7],
        format!("5.7.1 Incident {id}; the event has been recorded in the incident register.")
    );
    // incidents.notify is empty: nobody was told, and the reply says so.
    assert!(!text.contains("informed"), "{text}");
    assert!(!text.contains("informiert"), "{text}");
    assert_wire_fit(&text);
    assert_eq!(guard.incidents().len(), 1);
    assert_eq!(up.count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dpo_is_said_to_be_informed_only_when_a_notice_is_queued() {
    let up = Upstream::start().await;
    let guard = guard_with(
        &up,
        &policy("  reply_language: en\n"),
        "  notify: [\"dpo@example.org\"]\n",
    )
    .await;
    let (code, text) = smtplib_reply(&guard, 5).await;
    assert_eq!(code, 550, "{text}");
    assert_eq!(text.lines().count(), 4, "English only: {text}");
    assert!(!text.contains("Nachricht"), "{text}");
    let id = incident_id(&text);
    assert!(
        text.ends_with(&format!(
            "5.7.1 Incident {id}; your data protection officer has been informed."
        )),
        "{text}"
    );
    // The notice the reply speaks of is in the register: still queued, or
    // already sent (a step "notified").
    let store = &guard.shared.store;
    let queued = store
        .due_notices(i64::MAX)
        .expect("outbox")
        .iter()
        .any(|n| n.incident == id && n.kind == NoticeKind::Dpo);
    let notified = store
        .steps(&id)
        .expect("steps")
        .iter()
        .any(|s| s.step == "notified" || s.step == "notice failed");
    assert!(queued || notified, "no DPO notice for {id}");
    assert_wire_fit(&text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hold_in_german_and_an_overridden_reply() {
    let up = Upstream::start().await;
    let guard = Guard::with_upstream(
        &up,
        &policy("  reply_language: de\n").replace("action: reject", "action: hold"),
    )
    .await;
    let (code, text) = smtplib_reply(&guard, 4).await;
    assert_eq!(code, 250, "{text}");
    assert!(
        text.starts_with("2.0.0 Zur Pruefung zurueckgehalten: 4 externe Adressen waren fuer jeden Empfaenger sichtbar in To/Cc."),
        "{text}"
    );
    assert!(!text.contains("Held for review"), "{text}");
    assert_wire_fit(&text);

    // An admin's own wording, with a line far over the limit: wrapped.
    let dir = tempfile::tempdir().expect("tempdir");
    let long = "Bitte Bcc benutzen. ".repeat(40);
    std::fs::write(
        dir.path().join("reply_reject.de.txt"),
        format!("Abgelehnt: {{visible_external}} sichtbar, erlaubt {{threshold}}.\n{long}\nZeichen {{id}}; {{told}}\n"),
    )
    .expect("write template");
    let guard = guard_with(
        &up,
        &policy("  reply_language: de\n"),
        &format!("  templates: {}\n", dir.path().display()),
    )
    .await;
    let (code, text) = smtplib_reply(&guard, 7).await;
    assert_eq!(code, 550, "{text}");
    assert!(
        text.starts_with("5.7.1 Abgelehnt: 7 sichtbar, erlaubt 3."),
        "{text}"
    );
    assert!(
        text.lines().count() >= 4,
        "the long line is wrapped: {text}"
    );
    assert!(text.contains("vermerkt"), "{text}");
    assert_wire_fit(&text);
}
