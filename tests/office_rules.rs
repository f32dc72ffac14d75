//! The policy keys of issue 18 over real SMTP (the guard in-process on
//! port 0, aiosmtpd upstream), with `bccguard check` and `explain` on the
//! same policy:
//!
//! - `policy.max_external_domains`: registrable domains (subdomains and
//!   public suffixes such as `co.uk` read by the Public Suffix List), either
//!   threshold triggers, the reply and the record say which;
//! - `policy.rules[].max_external_domains`;
//! - `policy.rules[].recipients` (every visible external address matches)
//!   and `policy.rules[].any_recipient` (at least one does);
//! - `check` names a bad pattern by its key and warns of a shadowed rule.

mod common;

use std::path::Path;

use common::*;

const FROM: &str = "praxis@example.org";

/// Threshold 10 addresses and 2 domains, reject; a board rule allowing 5
/// domains; the patients and project rules.
const POLICY: &str = "policy:
  internal_domains: [\"example.org\"]
  max_external_recipients: 10
  max_external_domains: 2
  action: reject
  rules:
    - name: board
      sender: [\"vorstand@example.org\"]
      max_external_domains: 5
    - name: project
      recipients: [\"*@partner.co.uk\", \"*.partner.co.uk\", \"lead@consult.test\"]
      max_external_recipients: 50
      max_external_domains: 3
    - name: patients
      any_recipient: [\"*@patients.example\"]
      max_external_recipients: 0
      action: bcc
";

fn addrs(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

async fn send(guard: &Guard, from: &str, to: &[String]) -> Reply {
    let msg = message(from, &to.join(", "), None, "Hallo.\r\n");
    let mut c = Client::connect(guard.smtp).await;
    c.mail_within(from, to, &msg, WAIT).await
}

/// `explain` of a mail from `from` to `to` on the test policy.
fn explain(dir: &Path, from: &str, to: &[String]) -> String {
    let config = dir.join("policy.yaml");
    std::fs::write(&config, in_dir(&yaml(None, POLICY), dir)).unwrap();
    let eml = dir.join("mail.eml");
    std::fs::write(&eml, message(from, &to.join(", "), None, "Hallo.\r\n")).unwrap();
    let (code, out, err) =
        bccguard_as_dpo_status(&config, &["explain", &eml.display().to_string()]);
    // Any verdict (0, 2-5), never an error.
    assert!(matches!(code, Some(0 | 2..=5)), "{code:?} {err}");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_domain_threshold_counts_counterparties_and_says_so() {
    let up = Upstream::start().await;
    let guard = Guard::with_upstream(&up, POLICY).await;
    let dir = tempfile::tempdir().unwrap();

    // Six colleagues at one partner (subdomains of a co.uk name) and two
    // at a second firm: two counterparties, under both limits.
    let two = addrs(&[
        "a@mail.partner.co.uk",
        "b@partner.co.uk",
        "c@eu.mail.partner.co.uk",
        "d@partner.co.uk",
        "e@partner.co.uk",
        "f@partner.co.uk",
        "g@firma.at",
        "h@web.firma.at",
    ]);
    // Not all at partner.co.uk: the project rule does not apply; no rule.
    let r = send(&guard, FROM, &two).await;
    assert_eq!(r.code, 250, "{}", r.text);
    assert_eq!(up.count(), 1);

    // Three private addresses at three providers: three strangers.
    let three = addrs(&["x@gmx.de", "y@web.de", "z@bmi.gv.at"]);
    let r = send(&guard, FROM, &three).await;
    assert_eq!(r.code, 550, "{}", r.text);
    assert!(
        r.text
            .contains("3 external addresses at 3 different domains")
            && r.text.contains("(limit 2 domains)"),
        "{}",
        r.text
    );
    let record = guard.incidents().pop().unwrap();
    assert_eq!(
        (
            record["trigger"].as_str(),
            record["external_domains"].as_u64(),
            record["domain_threshold"].as_u64(),
            record["threshold"].as_u64(),
        ),
        (Some("domains"), Some(3), Some(2), Some(10)),
        "{record}"
    );
    let out = explain(dir.path(), FROM, &three);
    assert!(
        out.contains("visible:   3 external address(es) in 3 domain(s)")
            && out.contains("domains:   3 registrable domain(s), threshold 2 -> exceeded")
            && out.contains("trigger:   domains")
            && out.contains("(3 domains, limit 2)"),
        "{out}"
    );

    // Both over: eleven addresses in three domains.
    let eleven: Vec<String> = (0..11).map(|i| format!("p{i}@ext{}.test", i % 3)).collect();
    let r = send(&guard, FROM, &eleven).await;
    assert_eq!(r.code, 550, "{}", r.text);
    assert!(r.text.contains("11 external addresses"), "{}", r.text);
    assert_eq!(guard.incidents().pop().unwrap()["trigger"], "both");

    // The board's rule: five domains are its own limit.
    let r = send(&guard, "vorstand@example.org", &three).await;
    assert_eq!(r.code, 250, "{}", r.text);
    let out = explain(dir.path(), "vorstand@example.org", &three);
    assert!(
        out.contains("  [0] board     matched")
            && out.contains("  [1] project   not tried")
            && out.contains("domains:   3 registrable domain(s), threshold 5 -> not exceeded"),
        "{out}"
    );
    assert_eq!(up.count(), 2);
    guard.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_match_on_every_or_any_visible_recipient() {
    let up = Upstream::start().await;
    let guard = Guard::with_upstream(&up, POLICY).await;
    let dir = tempfile::tempdir().unwrap();

    // Twelve at the partner and its subdomains plus the consultant: every
    // one matches `recipients`, so the project's limits (50, 3 domains).
    let mut team: Vec<String> = (0..12)
        .map(|i| format!("m{i}@{}partner.co.uk", ["", "mail.", "eu."][i % 3]))
        .collect();
    team.push("lead@consult.test".into());
    let r = send(&guard, FROM, &team).await;
    assert_eq!(r.code, 250, "{}", r.text);
    let got = up.messages();
    assert_eq!(got.len(), 1);
    assert!(got[0].head().contains("m11@eu.partner.co.uk"), "unchanged");
    let out = explain(dir.path(), FROM, &team);
    assert!(
        out.contains("[0] board     no: sender: neither MAIL FROM <praxis@example.org> nor From praxis@example.org matches vorstand@example.org")
            && out.contains("[1] project   matched")
            && out.contains("rule:      project"),
        "{out}"
    );

    // One more, elsewhere: the project rule no longer applies (14 over the
    // default 10), and explain names the address that broke it.
    let mut more = team.clone();
    more.push("someone@else.test".into());
    let r = send(&guard, FROM, &more).await;
    assert_eq!(r.code, 550, "{}", r.text);
    assert_eq!(guard.incidents().pop().unwrap()["rule"], "default");
    let out = explain(dir.path(), FROM, &more);
    assert!(
        out.contains("[1] project   no: recipients: someone@else.test matches none of *@partner.co.uk, *.partner.co.uk, lead@consult.test")
            && out.contains("[2] patients  no: any_recipient: no visible external address matches *@patients.example")
            && out.contains("rule:      (none matched: default policy)"),
        "{out}"
    );

    // One patient among partners: never open to patients (threshold 0,
    // bcc), whoever else is on it.
    let mixed = addrs(&["anna@patients.example", "m0@partner.co.uk"]);
    let r = send(&guard, FROM, &mixed).await;
    assert_eq!(r.code, 250, "{}", r.text);
    let got = up.messages();
    let head = got.last().unwrap().head();
    assert!(
        !head.contains("anna@patients.example") && !head.contains("m0@partner.co.uk"),
        "hidden:\n{head}"
    );
    assert_eq!(
        got.last().unwrap().rcpt_tos,
        mixed,
        "every recipient still gets it"
    );
    let record = guard.incidents().pop().unwrap();
    assert_eq!(
        (record["rule"].as_str(), record["action"].as_str()),
        (Some("patients"), Some("bcc"))
    );
    let out = explain(dir.path(), FROM, &mixed);
    assert!(
        out.contains("[1] project   no: recipients: anna@patients.example matches none of")
            && out.contains("[2] patients  matched")
            && out.contains("action:    bcc"),
        "{out}"
    );
    guard.stop().await;
}

#[test]
fn check_names_bad_patterns_and_warns_of_shadowed_rules() {
    let dir = tempfile::tempdir().unwrap();
    let write = |text: &str| {
        let path = dir.path().join("policy.yaml");
        std::fs::write(&path, in_dir(&yaml(None, text), dir.path())).unwrap();
        path
    };
    let bad = write(
        "policy:\n  rules:\n    - name: p\n      recipients: [\"*@ok.test\", \"news*@x.test\"]\n      action: allow\n    - name: q\n      any_recipient: [\"*@*.x.test\"]\n      max_external_domains: many\n",
    );
    let (ok, out, err) = bccguard_as_dpo(&bad, &["check"]);
    assert!(!ok, "{out}");
    for want in [
        "policy.rules[0].recipients[1]: \"news*@x.test\" is not an address, *@domain or *.domain",
        "policy.rules[1].any_recipient[0]: \"*@*.x.test\" is not an address, *@domain or *.domain",
        "policy.rules[1].max_external_domains: \"many\" is not a whole number",
    ] {
        assert!(err.contains(want), "missing {want:?} in\n{err}");
    }

    let shadowed = write(
        "policy:\n  rules:\n    - name: partners\n      recipients: [\"*.partner.test\"]\n      action: allow\n    - name: mail-team\n      sender: [\"*@example.org\"]\n      recipients: [\"*@mail.partner.test\"]\n      action: bcc\n    - name: other\n      recipients: [\"*@partner.test\"]\n      action: bcc\n",
    );
    let (ok, out, err) = bccguard_as_dpo(&shadowed, &["check"]);
    assert!(ok, "a shadowed rule is a warning, not an error: {err}");
    assert!(
        out.contains("warning: policy.rules[1]: rule \"mail-team\" can never match: the earlier rule \"partners\" (policy.rules[0]) matches every message it matches"),
        "{out}"
    );
    assert!(
        !out.contains("policy.rules[2]"),
        "`*.` is not the domain itself:\n{out}"
    );
}
