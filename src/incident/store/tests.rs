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
