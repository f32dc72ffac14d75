//! Approved open groups (issue 18), black-box: the guard in-process on
//! port 0, a real upstream (aiosmtpd), the `bccguard` binary for the DPO's
//! `group` commands on the same store.
//!
//! - held -> `group approve` -> a subset from the same sender passes
//!   unchanged (class `allowed`, the group named, counted, no DPO notice)
//!   -> a superset is held again -> another sender is held;
//! - `--any-sender`, and `groups.max_age` cutting `--expires`: the group
//!   holds again once it expired;
//! - `explain` names the group that lets a mail pass; `group list`, `show`,
//!   `remove`.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;

/// Threshold 3, `action: hold`, the DPO notified (through the upstream),
/// the store in `dir`, and `groups` keys (indented by two spaces).
fn config(up: &Upstream, dir: &Path, groups: &str) -> String {
    let policy = format!(
        "policy:\n  internal_domains: [\"example.org\"]\n  max_external_recipients: 3\n  action: hold\ngroups:\n{groups}store:\n  path: {}\n",
        dir.join("bccguard.db").display()
    );
    let text = yaml(Some(up.addr), &policy);
    text.replacen(
        "incidents:\n  path: INCIDENTS\n",
        "incidents:\n  path: INCIDENTS\n  notify: [\"dsb@example.org\"]\n  languages: [en]\n",
        1,
    )
}

/// The same file for the CLI, its placeholders filled.
fn cli_config(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("policy.yaml");
    std::fs::write(&path, in_dir(text, &dir.join("cli"))).unwrap();
    path
}

/// Runs the binary, asserting success; stdout.
fn ok(config: &Path, args: &[&str]) -> String {
    let (success, stdout, stderr) = bccguard_as_dpo(config, args);
    assert!(success, "bccguard {args:?}:\n{stdout}\n{stderr}");
    stdout
}

/// A mail from `from` to `to` (all visible), Bob internal in Cc.
async fn send(smtp: std::net::SocketAddr, from: &str, to: &[String]) -> Reply {
    let msg = message(
        from,
        &to.join(", "),
        Some("Bob <bob@example.org>"),
        "Protokoll der Projektsitzung.\r\n",
    );
    let mut rcpts = to.to_vec();
    rcpts.push("bob@example.org".into());
    let mut c = Client::connect(smtp).await;
    c.mail_within(from, &rcpts, &msg, WAIT).await
}

/// The mails upstream got from `from`.
fn from_sender(up: &Upstream, from: &str) -> Vec<Delivered> {
    up.messages()
        .into_iter()
        .filter(|m| m.mail_from == from)
        .collect()
}

/// DPO notices that arrived upstream (to `incidents.notify`).
fn dpo_mails(up: &Upstream) -> Vec<String> {
    up.messages()
        .into_iter()
        .filter(|m| m.rcpt_tos == ["dsb@example.org"])
        .map(|m| m.text())
        .collect()
}

fn series(group: &str) -> String {
    format!("bccguard_group_allowed_total{{group=\"{group}\"}}")
}

/// `group approve --from-incident id --name name` and `more`, as the DPO.
fn approve(cli: &Path, id: &str, name: &str, more: &[&str]) -> (bool, String, String) {
    let mut args = vec!["group", "approve", "--from-incident", id, "--name", name];
    args.extend_from_slice(more);
    bccguard_as_dpo(cli, &args)
}

/// An upstream, the guard with `groups.max_age: max_age`, its store's
/// directory and the CLI's policy file for it.
async fn start(max_age: &str) -> (Upstream, Guard, tempfile::TempDir, PathBuf) {
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let text = config(&up, dir.path(), &format!("  max_age: {max_age}\n"));
    let guard = Guard::start(&text).await;
    let cli = cli_config(dir.path(), &text);
    (up, guard, dir, cli)
}

/// Until the guard has loaded the group (its series appears at 0).
async fn loaded(guard: &Guard, group: &str) {
    let s = series(group);
    eventually(&format!("the guard to load group {group}"), || async {
        guard.metrics_text().await.contains(&s)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_approved_subset_passes_superset_and_other_sender_are_held() {
    let (up, guard, dir, cli) = start("365d").await;
    let team = externals(5);

    // 1. Held.
    let r = send(guard.smtp, "alice@example.org", &team).await;
    assert_eq!(r.code, 250, "{}", r.text);
    assert!(r.text.contains("Held for review"), "{}", r.text);
    let held = incident_id(&r.text);

    // 2. The DPO approves the group of that incident.
    let (done, out, err) = approve(&cli, &held, "Projekt Rheinbrücke", &["--expires", "180d"]);
    assert!(done, "{err}");
    assert!(
        out.contains("group \"Projekt Rheinbrücke\" approved by dpo-anna")
            && out.contains("5 external address(es), sender <alice@example.org>"),
        "{out}"
    );
    let list = ok(&cli, &["group", "list"]);
    assert!(list.starts_with("1 group(s)"), "{list}");
    assert!(
        list.contains("expires ") && list.contains("(in force)"),
        "{list}"
    );
    let show = ok(&cli, &["group", "show", "Projekt Rheinbrücke"]);
    for a in &team {
        assert!(show.contains(a.as_str()), "{a} not shown:\n{show}");
    }
    let steps = ok(&cli, &["incident", "show", &held]);
    assert!(
        steps.contains("group approved") && steps.contains("dpo-anna"),
        "the approval is a step on the incident:\n{steps}"
    );
    // A name in use is refused.
    let (again, _, err) = approve(&cli, &held, "Projekt Rheinbrücke", &[]);
    assert!(!again && err.contains("exists already"), "{err}");
    loaded(&guard, "Projekt Rheinbrücke").await;

    // 3. Four of the five, same sender: passes unchanged, recorded as
    // allowed, counted, nobody notified.
    let subset = team[..4].to_vec();
    let r = send(guard.smtp, "alice@example.org", &subset).await;
    assert_eq!(r.code, 250, "{}", r.text);
    assert!(!r.text.contains("Held"), "{}", r.text);
    let sent = from_sender(&up, "alice@example.org");
    assert_eq!(sent.len(), 1, "the subset went out");
    let mut want = subset.clone();
    want.push("bob@example.org".into());
    assert_eq!(sent[0].rcpt_tos, want);
    assert!(
        sent[0]
            .head()
            .contains(&format!("To: {}", subset.join(", "))),
        "unchanged:\n{}",
        sent[0].head()
    );
    let records = guard.incidents();
    let allowed = records.last().unwrap();
    assert_eq!(
        (
            allowed["class"].as_str(),
            allowed["action"].as_str(),
            allowed["group"].as_str(),
            allowed["trigger"].as_str(),
            allowed["outcome"].as_str(),
        ),
        (
            Some("allowed"),
            Some("allow"),
            Some("Projekt Rheinbrücke"),
            Some("addresses"),
            Some("delivered")
        ),
        "{allowed}"
    );
    let allowed_id = allowed["id"].as_str().unwrap().to_string();
    assert_eq!(guard.metric(&series("Projekt Rheinbrücke")).await, 1.0);
    assert_eq!(
        guard
            .metric("bccguard_incidents_total{action=\"allow\"}")
            .await,
        0.0,
        "an approved group is no disclosure"
    );

    // 4. A superset (one address the group does not hold): held again.
    let mut superset = team.clone();
    superset.push("neu@other.test".into());
    let r = send(guard.smtp, "alice@example.org", &superset).await;
    assert!(r.text.contains("Held for review"), "{}", r.text);
    let superset_id = incident_id(&r.text);

    // 5. The same four from another sender: held.
    let r = send(guard.smtp, "carol@example.org", &subset).await;
    assert!(r.text.contains("Held for review"), "{}", r.text);
    let other_id = incident_id(&r.text);
    assert!(from_sender(&up, "carol@example.org").is_empty());
    assert_eq!(guard.metric(&series("Projekt Rheinbrücke")).await, 1.0);

    // The DPO heard of every held one, never of the allowed one (notices
    // go out in the order they were queued).
    eventually("the DPO notice of the last hold", || async {
        dpo_mails(&up).iter().any(|m| m.contains(&other_id))
    })
    .await;
    let mails = dpo_mails(&up);
    for id in [&held, &superset_id] {
        assert!(
            mails.iter().any(|m| m.contains(id.as_str())),
            "no notice of {id}"
        );
    }
    assert!(
        !mails.iter().any(|m| m.contains(&allowed_id)),
        "a DPO notice about the allowed mail"
    );

    // explain, on the guard's store: the group that lets the subset pass.
    let eml = dir.path().join("subset.eml");
    let msg = message(
        "alice@example.org",
        &subset.join(", "),
        None,
        "Protokoll.\r\n",
    );
    std::fs::write(&eml, msg).unwrap();
    let eml = eml.display().to_string();
    let (code, out, _) =
        bccguard_as_dpo_status(&cli, &["explain", &eml, "--from", "alice@example.org"]);
    assert_eq!(code, Some(5), "passes, recorded as allowed: {out}");
    assert!(
        out.contains("group:     \"Projekt Rheinbrücke\" holds every visible external address"),
        "{out}"
    );
    assert!(
        out.contains("action:    allow: an approved open group"),
        "{out}"
    );
    let (code, out, _) =
        bccguard_as_dpo_status(&cli, &["explain", &eml, "--from", "carol@example.org"]);
    assert_eq!(code, Some(3), "held: {out}");
    assert!(
        out.contains("group:     none of 1 approved group(s) in force"),
        "{out}"
    );
    assert!(out.contains("action:    hold"), "{out}");

    // 6. Removed: the subset is held again.
    let out = ok(&cli, &["group", "remove", "Projekt Rheinbrücke"]);
    assert!(out.contains("removed by dpo-anna"), "{out}");
    assert!(ok(&cli, &["group", "list"]).starts_with("0 group(s)"));
    let steps = ok(&cli, &["incident", "show", &held]);
    assert!(steps.contains("group removed"), "{steps}");
    eventually("the guard to drop the group", || async {
        guard.shared.groups().is_empty()
    })
    .await;
    let r = send(guard.smtp, "alice@example.org", &subset).await;
    assert!(r.text.contains("Held for review"), "{}", r.text);
    guard.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_any_sender_group_holds_again_once_it_expired() {
    let (up, guard, _dir, cli) = start("4s").await;
    let board = externals(4);

    let r = send(guard.smtp, "alice@example.org", &board).await;
    let held = incident_id(&r.text);
    let approved = Instant::now();
    let (done, out, err) = approve(
        &cli,
        &held,
        "Vorstand",
        &["--expires", "30d", "--any-sender"],
    );
    assert!(done, "{err}");
    assert!(out.contains("any sender"), "{out}");
    assert!(
        out.contains("longer than groups.max_age (4s): cut to it"),
        "{out}"
    );
    loaded(&guard, "Vorstand").await;

    // Another sender, the whole group: passes while it lasts.
    let r = send(guard.smtp, "carol@example.org", &board).await;
    assert_eq!(r.code, 250, "{}", r.text);
    assert!(
        !r.text.contains("Held"),
        "within max_age ({:?} after the approval): {}",
        approved.elapsed(),
        r.text
    );
    assert_eq!(from_sender(&up, "carol@example.org").len(), 1);

    // Past max_age (and the second it is counted in): held again.
    let until = approved + Duration::from_secs(6);
    tokio::time::sleep(until.saturating_duration_since(Instant::now())).await;
    let list = ok(&cli, &["group", "list"]);
    assert!(list.contains("(EXPIRED)"), "{list}");
    let r = send(guard.smtp, "carol@example.org", &board).await;
    assert!(r.text.contains("Held for review"), "{}", r.text);
    assert_eq!(from_sender(&up, "carol@example.org").len(), 1);
    assert_eq!(guard.metric(&series("Vorstand")).await, 1.0);

    // A group is made of a held message only: the released or unknown one
    // has no addresses left to approve.
    let (done, _, err) = approve(&cli, "nope", "X", &[]);
    assert!(!done && err.contains("incident nope: not found"), "{err}");
    ok(&cli, &["quarantine", "release", &held, "--as", "bcc"]);
    let (done, _, err) = approve(&cli, &held, "Y", &[]);
    assert!(!done && err.contains("its message is released"), "{err}");
    guard.stop().await;
}
