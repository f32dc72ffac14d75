//! The SQLite store: a hold survives reopening, a claim is exclusive, an
//! end of a hold deletes the message and queues its notices atomically.

use super::*;

fn record(id: &str, action: &str) -> Record {
    Record {
        id: id.into(),
        time: "2026-11-22T16:40:12Z".into(),
        action: action.into(),
        class: "prevented".into(),
        rule: "default".into(),
        client_ip: "192.0.2.1".into(),
        auth_user: None,
        mail_from: "termine@example.org".into(),
        header_from: None,
        message_id: None,
        subject: Some("Termin".into()),
        visible_external: 12,
        visible_internal: 0,
        external_domains: 3,
        display_names: 0,
        visible_attached: 0,
        visible_seen: Default::default(),
        envelope_recipients: 12,
        size: 100,
        threshold: 10,
        domain_threshold: None,
        trigger: "addresses".into(),
        group: None,
        reason: "over threshold".into(),
        outcome: "held".into(),
        queue_id: id.into(),
    }
}

fn incident(id: &str, at: i64) -> Incident {
    Incident {
        record: record(id, "hold"),
        class: Class::Prevented,
        disclosed_at: None,
        recorded_at: at,
        hold: Some(HoldState::Held),
    }
}

fn held(id: &str, at: i64) -> Held {
    Held {
        id: id.into(),
        held_at: at,
        mail_from: "termine@example.org".into(),
        mail_params: String::new(),
        rcpts: vec![
            ("p1@ext.test".into(), String::new()),
            ("p2@ext.test".into(), "NOTIFY=NEVER".into()),
        ],
        received: "Received: x\r\n".into(),
        message: b"To: p1@ext.test, p2@ext.test\r\n\r\nHi\r\n".to_vec(),
    }
}

fn notice(kind: NoticeKind, event: &str) -> NewNotice {
    NewNotice {
        kind,
        event: event.into(),
    }
}

#[test]
fn a_held_message_survives_reopening_and_is_claimed_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db/bccguard.db");
    {
        let s = SqliteStore::open(&path).unwrap();
        let step = Step::now("bccguard", "recorded", "hold");
        s.record(
            &incident("A", 100),
            &[step],
            Some(&held("A", 100)),
            &[notice(NoticeKind::Dpo, "incident")],
            None,
        )
        .unwrap();
    }
    let s = SqliteStore::open(&path).unwrap();
    assert_eq!(s.held().unwrap().len(), 1);
    assert_eq!(s.held_message("A").unwrap(), held("A", 100));
    assert_eq!(s.held_before(99).unwrap(), Vec::<String>::new());
    assert_eq!(s.held_before(100).unwrap(), vec!["A".to_string()]);
    let claimed = s.claim("A", 200).unwrap();
    assert_eq!(claimed.rcpts.len(), 2);
    assert!(matches!(
        s.claim("A", 201),
        Err(StoreError::NotHeld {
            state: "releasing",
            ..
        })
    ));
    // A release whose process died: its claim goes stale.
    assert!(s.claim("A", 200 + STALE_CLAIM_SECS + 1).is_ok());
    // A drop needs a held message, not one being released.
    let drop_step = Step::now("dpo", "dropped", "x");
    assert!(
        s.finish("A", HoldState::Dropped, &drop_step, None, &[])
            .is_err()
    );
    s.unclaim("A", &Step::now("dpo", "release failed", "451"))
        .unwrap();
    s.claim("A", 300).unwrap();
    let step = Step::now("dpo", "released", "as original: ok");
    s.finish(
        "A",
        HoldState::Released,
        &step,
        Some(300),
        &[notice(NoticeKind::Sender, "released")],
    )
    .unwrap();
    let i = s.incident("A").unwrap();
    assert_eq!(
        (i.class, i.disclosed_at, i.hold),
        (Class::Disclosed, Some(300), Some(HoldState::Released))
    );
    assert!(matches!(
        s.held_message("A"),
        Err(StoreError::NotHeld {
            state: "released",
            ..
        })
    ));
    let steps: Vec<String> = s.steps("A").unwrap().into_iter().map(|s| s.step).collect();
    assert_eq!(steps, ["recorded", "release failed", "released"]);
    let due = s.due_notices(i64::MAX).unwrap();
    assert_eq!(
        due.iter().map(|n| n.event.as_str()).collect::<Vec<_>>(),
        ["incident", "released"]
    );
    assert!(matches!(s.incident("nope"), Err(StoreError::NotFound(_))));
}

#[test]
fn notices_are_sent_retried_and_counted_per_mail() {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(&dir.path().join("b.db")).unwrap();
    for id in ["A", "B", "C"] {
        s.record(
            &incident(id, 1),
            &[],
            None,
            &[notice(NoticeKind::Dpo, "incident")],
            None,
        )
        .unwrap();
    }
    let due = s.due_notices(i64::MAX).unwrap();
    assert_eq!(due.len(), 3);
    s.notices_sent(&[due[0].id], "m1", 1000).unwrap();
    s.notices_sent(&[due[1].id], "m2", 1010).unwrap();
    s.notice_retry(due[2].id, 5000, "451 later").unwrap();
    assert!(s.due_notices(4999).unwrap().is_empty());
    assert_eq!(s.due_notices(5000).unwrap()[0].attempts, 1);
    assert_eq!(
        s.mails_sent_since(NoticeKind::Dpo, 0).unwrap(),
        (2, Some(1010))
    );
    assert_eq!(
        s.mails_sent_since(NoticeKind::Dpo, 1005).unwrap(),
        (1, Some(1010))
    );
    assert_eq!(s.incidents(0, Some(Class::Disclosed)).unwrap().len(), 0);
    assert_eq!(s.incidents(0, Some(Class::Prevented)).unwrap().len(), 3);
    assert_eq!(s.incidents(2, None).unwrap().len(), 0);
}

#[test]
fn the_cli_never_creates_an_empty_register_and_a_new_file_is_private() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bccguard.db");
    assert!(SqliteStore::open_existing(&path).is_err());
    assert!(!path.exists(), "nothing created");
    SqliteStore::open(&path).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "held messages are in it");
    }
    let s = SqliteStore::open_existing(&path).unwrap();
    assert!(s.held().unwrap().is_empty());
}

fn approved(name: &str, incident: &str) -> ApprovedGroup {
    ApprovedGroup {
        name: name.into(),
        incident: incident.into(),
        sender: Some("termine@example.org".into()),
        addresses: vec!["p1@ext.test".into(), "p2@ext.test".into()],
        approved_at: 100,
        expires_at: 200,
        approved_by: "dpo-anna".into(),
    }
}

#[test]
fn groups_are_approved_once_listed_removed_and_versioned() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g.db");
    let s = SqliteStore::open(&path).unwrap();
    s.record(&incident("A", 1), &[], Some(&held("A", 1)), &[], None)
        .unwrap();
    assert_eq!(s.groups_version().unwrap(), 0);
    let step = Step::now("dpo-anna", "group approved", "Projekt");
    s.approve_group(&approved("Projekt", "A"), &step).unwrap();
    let v1 = s.groups_version().unwrap();
    assert!(v1 > 0);
    assert!(matches!(
        s.approve_group(&approved("Projekt", "A"), &step),
        Err(StoreError::GroupExists(n)) if n == "Projekt"
    ));
    assert_eq!(
        s.groups_version().unwrap(),
        v1,
        "a refused approval changes nothing"
    );
    // The group belongs to an incident that exists.
    assert!(s.approve_group(&approved("Other", "nope"), &step).is_err());
    drop(s);
    let s = SqliteStore::open_existing(&path).unwrap();
    assert_eq!(s.groups().unwrap(), vec![approved("Projekt", "A")]);
    let removed = s
        .remove_group(
            "Projekt",
            &Step::now("dpo-bert", "group removed", "Projekt"),
        )
        .unwrap();
    assert_eq!(removed, approved("Projekt", "A"));
    assert!(s.groups_version().unwrap() > v1);
    assert!(s.groups().unwrap().is_empty());
    assert!(matches!(
        s.remove_group("Projekt", &step),
        Err(StoreError::NoGroup(_))
    ));
    let steps: Vec<(String, String)> = s
        .steps("A")
        .unwrap()
        .into_iter()
        .map(|s| (s.actor, s.step))
        .collect();
    assert_eq!(
        steps,
        [
            ("dpo-anna".to_string(), "group approved".to_string()),
            ("dpo-bert".to_string(), "group removed".to_string())
        ]
    );
}

#[test]
fn a_version_one_file_gains_the_group_affected_and_account_tables() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v1.db");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE incidents (id TEXT PRIMARY KEY, time TEXT NOT NULL, recorded_at INTEGER NOT NULL,
               class TEXT NOT NULL, disclosed_at INTEGER, action TEXT NOT NULL, rule TEXT NOT NULL,
               mail_from TEXT NOT NULL, subject TEXT, visible_external INTEGER NOT NULL,
               envelope_recipients INTEGER NOT NULL, outcome TEXT NOT NULL, record TEXT NOT NULL);
             PRAGMA user_version = 1;",
        )
        .unwrap();
    }
    let s = SqliteStore::open_existing(&path).unwrap();
    assert!(s.groups().unwrap().is_empty());
    assert_eq!(s.affected("old").unwrap(), Kept::default());
    assert!(s.users().unwrap().is_empty());
    assert_eq!(s.session("k", 0).unwrap(), None);
    drop(s);
    let conn = rusqlite::Connection::open(&path).unwrap();
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, 5);
}

#[test]
fn affected_addresses_are_kept_for_a_disclosure_and_deleted_with_a_prevented_hold() {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(&dir.path().join("b.db")).unwrap();
    let people = |n: usize| Affected {
        addresses: (1..=n).map(|i| format!("p{i}@ext.test")).collect(),
        keep_secs: 1000,
    };
    // Disclosed at once (monitor): kept from the decision on.
    let mut monitor = incident("M", 10);
    monitor.class = Class::Disclosed;
    monitor.disclosed_at = Some(10);
    s.record(&monitor, &[], None, &[], Some(&people(3)))
        .unwrap();
    // Two holds: one released as the original, one dropped.
    for id in ["H", "D"] {
        s.record(
            &incident(id, 20),
            &[],
            Some(&held(id, 20)),
            &[],
            Some(&people(2)),
        )
        .unwrap();
        assert_eq!(s.affected(id).unwrap().until, None, "kept while held");
    }
    s.claim("H", 30).unwrap();
    let released = Step::now("dpo", "released", "as original: ok");
    s.finish("H", HoldState::Released, &released, Some(30), &[])
        .unwrap();
    let dropped = Step::now("dpo", "dropped", "x");
    s.finish("D", HoldState::Dropped, &dropped, None, &[])
        .unwrap();

    let m = s.affected("M").unwrap();
    assert_eq!(
        m.addresses,
        ["p1@ext.test", "p2@ext.test", "p3@ext.test"],
        "in order"
    );
    assert_eq!(m.until, Some(1010));
    assert_eq!(s.affected("H").unwrap().until, Some(1030));
    assert_eq!(
        s.affected("D").unwrap(),
        Kept::default(),
        "nobody's address left"
    );

    assert_eq!(s.forget_affected(1009).unwrap(), 0);
    assert_eq!(s.forget_affected(1010).unwrap(), 1);
    assert!(s.affected("M").unwrap().addresses.is_empty());
    assert_eq!(s.affected("H").unwrap().addresses.len(), 2);
    assert_eq!(s.forget_affected(i64::MAX).unwrap(), 1);
    // The register keeps the counts.
    assert_eq!(
        s.incident("M").unwrap().record.visible_external,
        monitor.record.visible_external
    );
}

#[test]
fn the_tally_counts_what_waits_what_ended_and_the_first_disclosure() {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(&dir.path().join("t.db")).unwrap();
    assert_eq!(s.tally(0).unwrap(), Tally::default());
    for (id, at) in [("A", 100), ("B", 50), ("C", 70), ("D", 80)] {
        s.record(&incident(id, at), &[], Some(&held(id, at)), &[], None)
            .unwrap();
    }
    // A release in progress still waits.
    s.claim("A", 200).unwrap();
    let t = s.tally(0).unwrap();
    assert_eq!((t.waiting, t.oldest_held_at), (4, Some(50)));
    assert!(t.ended.is_empty());

    let step = |name: &str, detail: &str| Step::now("dpo", name, detail);
    let released = step("released", "as bcc: 2 of 2 recipients accepted");
    s.finish("A", HoldState::Released, &released, None, &[])
        .unwrap();
    s.claim("B", 200).unwrap();
    let original = step("released", "as original: 2 of 2 recipients accepted");
    s.finish("B", HoldState::Released, &original, Some(300), &[])
        .unwrap();
    s.finish("C", HoldState::Dropped, &step("dropped", "x"), None, &[])
        .unwrap();
    s.finish("D", HoldState::Expired, &step("expired", "x"), None, &[])
        .unwrap();
    let mut monitor = incident("E", 400);
    monitor.class = Class::Disclosed;
    monitor.disclosed_at = Some(400);
    monitor.hold = None;
    s.record(&monitor, &[], None, &[], None).unwrap();

    let t = s.tally(0).unwrap();
    assert_eq!((t.waiting, t.oldest_held_at), (0, None));
    assert_eq!(
        t.ended,
        vec![
            (HoldState::Dropped, None, 1),
            (HoldState::Expired, None, 1),
            (HoldState::Released, Some("as bcc".to_string()), 1),
            (HoldState::Released, Some("as original".to_string()), 1),
        ]
    );
    // B, held at 50, was disclosed by its release at 300.
    assert_eq!(t.first_disclosed, Some(300));
    assert_eq!(s.tally(301).unwrap().first_disclosed, Some(400));
    assert_eq!(s.tally(401).unwrap().first_disclosed, None);
    // Reported to the authority: its clock stops.
    s.add_step("B", &step("authority notified", "on 2026-12-08"))
        .unwrap();
    assert_eq!(s.tally(0).unwrap().first_disclosed, Some(400));
    // A drop in the console says so before its colon.
    s.record(&incident("F", 500), &[], Some(&held("F", 500)), &[], None)
        .unwrap();
    let console = step(
        "dropped",
        "via console: deleted after review; the sender is told",
    );
    s.finish("F", HoldState::Dropped, &console, None, &[])
        .unwrap();
    assert!(s.tally(0).unwrap().ended.contains(&(
        HoldState::Dropped,
        Some("via console".into()),
        1
    )));
}

#[test]
fn the_register_pages_newest_first_with_filters_and_a_total() {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(&dir.path().join("b.db")).unwrap();
    for n in 0..30i64 {
        let mut i = incident(&format!("I{n:02}"), 1000 + n);
        if n % 3 == 0 {
            i.class = Class::Disclosed;
            i.record.action = "monitor".into();
            i.record.mail_from = "news_100%@example.org".into();
        }
        s.record(&i, &[], None, &[], None).unwrap();
    }
    let all = RegisterFilter::default();
    let (page, total) = s.register(&all, 0, 10).unwrap();
    assert_eq!(total, 30);
    let ids: Vec<&str> = page.iter().map(|i| i.record.id.as_str()).collect();
    assert_eq!(ids[..3], ["I29", "I28", "I27"], "newest first");
    let (last, _) = s.register(&all, 25, 10).unwrap();
    assert_eq!(last.len(), 5);
    let disclosed = RegisterFilter {
        class: Some(Class::Disclosed),
        ..Default::default()
    };
    assert_eq!(s.register(&disclosed, 0, 100).unwrap().1, 10);
    let by_action = RegisterFilter {
        action: Some("monitor".into()),
        since: Some(1015),
        until: Some(1025),
        ..Default::default()
    };
    let (page, total) = s.register(&by_action, 0, 100).unwrap();
    assert_eq!(total, 4, "1015, 1018, 1021, 1024: {page:?}");
    // The sender filter is text, not a LIKE pattern: % and _ are literal.
    let sender = |text: &str| RegisterFilter {
        sender: Some(text.into()),
        ..Default::default()
    };
    assert_eq!(s.register(&sender("100%@"), 0, 100).unwrap().1, 10);
    assert_eq!(s.register(&sender("news_"), 0, 100).unwrap().1, 10);
    assert_eq!(s.register(&sender("%"), 0, 100).unwrap().1, 10);
    assert_eq!(s.register(&sender("termine@"), 0, 100).unwrap().1, 20);
}

fn user(name: &str, role: Role) -> User {
    User {
        name: name.into(),
        role,
        password_hash: format!("$argon2id$v=19$m=19456,t=2,p=1$salt$hash-of-{name}"),
        created_at: 1_700_000_000,
        created_by: "dpo-anna".into(),
    }
}

fn console_session(key: &str, user: &str, expires_at: i64) -> ConsoleSession {
    ConsoleSession {
        key: key.into(),
        user: user.into(),
        csrf: None,
        created_at: 1_700_000_000,
        expires_at,
        client: Some("192.0.2.9".into()),
    }
}

/// A new store with the accounts anna (dpo) and bert (viewer).
fn with_anna_and_bert() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(&dir.path().join("s.db")).unwrap();
    s.add_user(&user("anna", Role::Dpo)).unwrap();
    s.add_user(&user("bert", Role::Viewer)).unwrap();
    (dir, s)
}

#[test]
fn users_are_added_once_listed_by_name_and_removed() {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(&dir.path().join("s.db")).unwrap();
    s.add_user(&user("bert", Role::Viewer)).unwrap();
    s.add_user(&user("anna", Role::Dpo)).unwrap();
    let taken = s.add_user(&user("anna", Role::Viewer)).unwrap_err();
    assert!(
        matches!(&taken, StoreError::UserExists(n) if n == "anna"),
        "{taken}"
    );
    assert!(taken.to_string().contains("exists already"), "{taken}");
    assert_eq!(s.user("anna").unwrap(), Some(user("anna", Role::Dpo)));
    assert_eq!(s.user("nobody").unwrap(), None);
    assert_eq!(
        s.users().unwrap(),
        vec![user("anna", Role::Dpo), user("bert", Role::Viewer)]
    );
    assert_eq!(s.remove_user("bert").unwrap(), 0);
    assert!(matches!(
        s.remove_user("bert"),
        Err(StoreError::NoUser(n)) if n == "bert"
    ));
    assert_eq!(s.users().unwrap(), vec![user("anna", Role::Dpo)]);
}

#[test]
fn a_session_lives_until_it_expires_and_only_while_its_user_does() {
    let (_dir, s) = with_anna_and_bert();
    // No session for an account that does not exist.
    assert!(
        s.create_session(&console_session("x", "nobody", 200))
            .is_err()
    );
    s.create_session(&console_session("k1", "anna", 200))
        .unwrap();
    s.create_session(&console_session("k2", "anna", 300))
        .unwrap();
    s.create_session(&console_session("k3", "bert", 300))
        .unwrap();
    let (session, u) = s.session("k1", 199).unwrap().unwrap();
    assert_eq!(session, console_session("k1", "anna", 200));
    assert_eq!(u, user("anna", Role::Dpo));
    // At its expiry it is gone, and deleted (not only hidden).
    assert_eq!(s.session("k1", 200).unwrap(), None);
    assert_eq!(s.session("k1", 0).unwrap(), None);
    assert_eq!(s.session("unknown", 0).unwrap(), None);
    // Logout.
    s.delete_session("k2").unwrap();
    s.delete_session("k2").unwrap();
    assert_eq!(s.session("k2", 0).unwrap(), None);
    // Removing an account ends its sessions.
    assert_eq!(s.remove_user("bert").unwrap(), 1);
    assert_eq!(s.session("k3", 0).unwrap(), None);
}

#[test]
fn a_new_password_ends_the_users_sessions_only() {
    let (_dir, s) = with_anna_and_bert();
    s.create_session(&console_session("a1", "anna", 300))
        .unwrap();
    s.create_session(&console_session("a2", "anna", 300))
        .unwrap();
    s.create_session(&console_session("b1", "bert", 300))
        .unwrap();
    assert_eq!(s.set_password("anna", "$argon2id$new").unwrap(), 2);
    assert_eq!(
        s.user("anna").unwrap().unwrap().password_hash,
        "$argon2id$new"
    );
    assert_eq!(s.session("a1", 0).unwrap(), None);
    assert_eq!(s.session("a2", 0).unwrap(), None);
    assert!(s.session("b1", 0).unwrap().is_some());
    assert!(matches!(
        s.set_password("nobody", "x"),
        Err(StoreError::NoUser(_))
    ));
}

#[test]
fn expired_sessions_are_forgotten_and_live_ones_kept() {
    let (_dir, s) = with_anna_and_bert();
    for (key, expires) in [("a", 100), ("b", 150), ("c", 151)] {
        s.create_session(&console_session(key, "anna", expires))
            .unwrap();
    }
    assert_eq!(s.forget_sessions(150).unwrap(), 2);
    assert_eq!(s.forget_sessions(150).unwrap(), 0);
    assert!(s.session("c", 150).unwrap().is_some());
}

#[test]
fn an_unknown_stored_role_is_corrupt_not_a_viewer() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let s = SqliteStore::open(&path).unwrap();
    s.add_user(&user("anna", Role::Dpo)).unwrap();
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute("UPDATE users SET role = 'admin'", [])
        .unwrap();
    assert!(matches!(s.user("anna"), Err(StoreError::Corrupt(..))));
}

#[test]
fn a_key_is_made_once_and_read_back_by_every_opener() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k.db");
    let a = SqliteStore::open(&path).unwrap();
    let key = a.key("sender-link").unwrap();
    assert_eq!(key.len(), 32);
    assert_eq!(a.key("sender-link").unwrap(), key);
    let b = SqliteStore::open(&path).unwrap();
    assert_eq!(
        b.key("sender-link").unwrap(),
        key,
        "another process, the same key"
    );
    assert_ne!(b.key("other").unwrap(), key);
}

#[test]
fn the_overview_counts_by_class_and_finds_incidents_by_step() {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(&dir.path().join("o.db")).unwrap();
    for (id, at, class) in [
        ("A", 10, Class::Prevented),
        ("B", 20, Class::Disclosed),
        ("C", 30, Class::Disclosed),
    ] {
        let mut i = incident(id, at);
        i.class = class;
        s.record(&i, &[], None, &[], None).unwrap();
    }
    let mut counts = s.count_by_class(15).unwrap();
    counts.sort_by_key(|(c, _)| c.as_str());
    assert_eq!(counts, [(Class::Disclosed, 2)]);
    assert_eq!(s.count_by_class(0).unwrap().len(), 2);
    s.add_step(
        "C",
        &Step::now("anna", "authority notified", "on 2026-12-08"),
    )
    .unwrap();
    assert_eq!(
        s.incidents_with_step("authority notified").unwrap(),
        ["C".to_string()].into_iter().collect()
    );
}
