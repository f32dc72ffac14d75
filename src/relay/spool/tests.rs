//! Tests of the spool: what survives a reopening, unfinished writes cleaned
//! away, and the retry backoff.

use super::*;

fn entry() -> Entry {
    Entry {
        queue_id: "Q".into(),
        mail_from: "a@example.org".into(),
        mail_params: String::new(),
        rcpt: "b@partner.test".into(),
        rcpt_params: String::new(),
        created: 1,
        attempts: 0,
        next_attempt: 0,
        last_error: None,
        failed: false,
        dsn: false,
    }
}

#[test]
fn stored_entries_survive_reopening_and_unfinished_writes_are_cleaned() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path()).unwrap();
    let name = spool
        .store(&entry(), &[b"To: b@partner.test\r\n", b"\r\nbody\r\n"])
        .unwrap();
    std::fs::write(dir.path().join("orphan.eml"), b"x").unwrap();
    std::fs::write(dir.path().join("half.json.tmp"), b"x").unwrap();
    let spool = Spool::open(dir.path()).unwrap();
    let entries = spool.entries().unwrap();
    assert_eq!(entries, vec![(name.clone(), entry())]);
    assert_eq!(
        spool.message(&name).unwrap(),
        b"To: b@partner.test\r\n\r\nbody\r\n"
    );
    assert!(!dir.path().join("orphan.eml").exists());
    assert!(!dir.path().join("half.json.tmp").exists());
    spool.remove(&name).unwrap();
    assert!(spool.entries().unwrap().is_empty());
}

#[test]
fn backoff_doubles_up_to_the_maximum() {
    let p = RetryPolicy {
        retry_min: Duration::from_secs(60),
        retry_max: Duration::from_secs(3600),
        max_age: Duration::from_secs(5 * 86400),
        scan_interval: Duration::from_secs(10),
    };
    let waits: Vec<u64> = (1..=8).map(|a| p.backoff(a).as_secs()).collect();
    assert_eq!(waits, [60, 120, 240, 480, 960, 1920, 3600, 3600]);
    assert_eq!(p.backoff(u32::MAX).as_secs(), 3600);
}
