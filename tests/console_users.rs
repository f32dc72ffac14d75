//! `bccguard user` as an admin uses it, through the real binary: accounts
//! with roles on a fresh install (no database yet), a list without hashes,
//! duplicates and short passwords refused with exit status 1, a new
//! password ending the account's console sessions (seen through the
//! library's store), removal; and the commands other than `add` refusing a
//! missing database like the DPO's do.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use bccguard::incident::store::{ConsoleSession, SqliteStore, Store};

/// A policy in `dir` whose store is `state/bccguard.db` (relative, so it
/// resolves against the policy's directory, as on a real install).
fn policy(dir: &Path) -> PathBuf {
    let path = dir.join("policy.yaml");
    std::fs::write(
        &path,
        "upstream:\n  maildir: ./outbox\nstore:\n  path: state/bccguard.db\n",
    )
    .expect("write policy");
    path
}

/// A fresh install: a temporary directory, its policy, and where the
/// database will be (not there yet).
fn install() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = policy(dir.path());
    let db = dir.path().join("state/bccguard.db");
    (dir, config, db)
}

/// `bccguard user ARGS --config POLICY` as dpo-anna behind sudo, with
/// `stdin` on standard input: (exit status, stdout, stderr).
fn user(config: &Path, args: &[&str], stdin: &str) -> (Option<i32>, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_bccguard"));
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("BCCGUARD") {
            cmd.env_remove(k);
        }
    }
    let mut child = cmd
        .arg("user")
        .args(args)
        .arg("--config")
        .arg(config)
        .env("SUDO_USER", "dpo-anna")
        .env("BCCGUARD_LOG", "info")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run bccguard");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    let out = child.wait_with_output().expect("wait for bccguard");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `user` that must succeed; its stdout and stderr.
fn ok(config: &Path, args: &[&str], stdin: &str) -> (String, String) {
    let (code, stdout, stderr) = user(config, args, stdin);
    assert_eq!(code, Some(0), "{args:?}: {stdout}{stderr}");
    (stdout, stderr)
}

/// `user` that must fail with exit status 1; its stderr.
fn refused(config: &Path, args: &[&str], stdin: &str) -> String {
    let (code, stdout, stderr) = user(config, args, stdin);
    assert_eq!(code, Some(1), "{args:?}: {stdout}{stderr}");
    stderr
}

const ANNA_PW: &str = "Kaffee und Kuchen 7\n";
const BERT_PW: &str = "correct horse battery\n";

#[test]
fn accounts_are_added_with_roles_listed_without_hashes_and_removed() {
    let (_dir, config, db) = install();
    assert!(!db.exists());

    // A fresh install: the first add creates the database, private.
    let (stdout, stderr) = ok(
        &config,
        &["add", "Anna", "--role", "dpo", "--password-stdin"],
        ANNA_PW,
    );
    assert_eq!(stdout, "user anna added as dpo by dpo-anna\n");
    assert!(
        stderr.contains("console account added user=anna role=dpo by=dpo-anna"),
        "{stderr}"
    );
    assert!(stderr.contains("created the guard's database"), "{stderr}");
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&db).expect("db").permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    ok(
        &config,
        &["add", "bert", "--role", "viewer", "--password-stdin"],
        BERT_PW,
    );

    let (list, _) = ok(&config, &["list"], "");
    let lines: Vec<&str> = list.lines().collect();
    assert_eq!(lines.len(), 3, "{list}");
    assert_eq!(lines[0], "2 user(s)");
    for (line, name, role) in [(lines[1], "anna", "dpo"), (lines[2], "bert", "viewer")] {
        let words: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(words[..3], [name, role, "created"], "{line}");
        assert_eq!(words[4..], ["by", "dpo-anna"], "{line}");
    }
    assert!(!list.contains("argon2") && !list.contains('$'), "{list}");

    // The hashes are Argon2id, of the passwords given.
    let store = SqliteStore::open_existing(&db).expect("open");
    let anna = store.user("anna").expect("read").expect("anna");
    assert!(anna.password_hash.starts_with("$argon2id$"));
    assert!(bccguard::console::auth::verify_password(
        ANNA_PW.trim_end(),
        &anna.password_hash
    ));

    let (stdout, stderr) = ok(&config, &["remove", "bert"], "");
    assert_eq!(
        stdout,
        "user bert removed by dpo-anna; 0 console session(s) ended\n"
    );
    assert!(
        stderr.contains("console account removed user=bert by=dpo-anna"),
        "{stderr}"
    );
    assert_eq!(store.user("bert").expect("read"), None);
    let stderr = refused(&config, &["remove", "bert"], "");
    assert_eq!(
        stderr.trim_end(),
        "bccguard: user \"bert\": not found (bccguard user list)"
    );
}

#[test]
fn a_taken_name_and_a_short_or_empty_password_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = policy(dir.path());
    ok(
        &config,
        &["add", "anna", "--role", "dpo", "--password-stdin"],
        ANNA_PW,
    );
    // Taken, whatever the case of its letters.
    let (code, stdout, stderr) = user(
        &config,
        &["add", "ANNA", "--role", "viewer", "--password-stdin"],
        BERT_PW,
    );
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert_eq!(
        stderr.trim_end(),
        "bccguard: user \"anna\" exists already (bccguard user passwd changes its password)"
    );
    for (pw, why) in [
        (
            "elevenchars\n",
            "the password is too short: 11 character(s), at least 12 needed",
        ),
        ("\n", "the password is empty"),
        ("", "the password is empty"),
    ] {
        let (code, stdout, stderr) = user(
            &config,
            &["add", "bert", "--role", "viewer", "--password-stdin"],
            pw,
        );
        assert_eq!(code, Some(1), "{pw:?}: {stdout}{stderr}");
        assert_eq!(stderr.trim_end(), format!("bccguard: {why}"), "{pw:?}");
    }
    // Refused on a fresh install: no empty database is left behind.
    let fresh = tempfile::tempdir().expect("tempdir");
    refused(
        &policy(fresh.path()),
        &["add", "anna", "--role", "dpo", "--password-stdin"],
        "short\n",
    );
    assert!(!fresh.path().join("state").exists());
    refused(&config, &["passwd", "anna", "--password-stdin"], "short\n");
    // Without a terminal and without --password-stdin: told what to do.
    let stderr = refused(&config, &["add", "bert", "--role", "viewer"], "");
    assert!(stderr.contains("--password-stdin"), "{stderr}");
    let (list, _) = ok(&config, &["list"], "");
    assert_eq!(list.lines().next(), Some("1 user(s)"), "{list}");
    // A name that is no name.
    let stderr = refused(
        &config,
        &["add", "anna schmidt", "--role", "dpo", "--password-stdin"],
        ANNA_PW,
    );
    assert!(stderr.contains("is not allowed"), "{stderr}");
}

#[test]
fn a_new_password_replaces_the_hash_and_ends_that_accounts_sessions() {
    let (_dir, config, db) = install();
    for (name, role, pw) in [("anna", "dpo", ANNA_PW), ("bert", "viewer", BERT_PW)] {
        ok(
            &config,
            &["add", name, "--role", role, "--password-stdin"],
            pw,
        );
    }
    let store = SqliteStore::open_existing(&db).expect("open");
    let before = store.user("anna").expect("read").expect("anna");
    let now = bccguard::clock::now() as i64;
    for (key, name) in [("a1", "anna"), ("a2", "anna"), ("b1", "bert")] {
        store
            .create_session(&ConsoleSession {
                key: key.into(),
                user: name.into(),
                csrf: None,
                created_at: now,
                expires_at: now + 3600,
                client: None,
            })
            .expect("session");
    }

    let (stdout, stderr) = ok(
        &config,
        &["passwd", "anna", "--password-stdin"],
        "ein ganz neues Passwort\r\n",
    );
    assert_eq!(
        stdout,
        "user anna: password changed by dpo-anna; 2 console session(s) ended\n"
    );
    assert!(
        stderr.contains("console password changed user=anna by=dpo-anna sessions_ended=2"),
        "{stderr}"
    );
    let after = store.user("anna").expect("read").expect("anna");
    assert_ne!(after.password_hash, before.password_hash);
    assert!(bccguard::console::auth::verify_password(
        "ein ganz neues Passwort",
        &after.password_hash
    ));
    assert!(!bccguard::console::auth::verify_password(
        ANNA_PW.trim_end(),
        &after.password_hash
    ));
    assert_eq!(store.session("a1", now).expect("read"), None);
    assert_eq!(store.session("a2", now).expect("read"), None);
    assert!(store.session("b1", now).expect("read").is_some(), "bert's");

    let stderr = refused(&config, &["passwd", "carla", "--password-stdin"], BERT_PW);
    assert!(stderr.contains("user \"carla\": not found"), "{stderr}");
}

#[test]
fn list_remove_and_passwd_refuse_a_missing_database_and_create_none() {
    let (_dir, config, db) = install();
    for args in [
        &["list"][..],
        &["remove", "anna"],
        &["passwd", "anna", "--password-stdin"],
    ] {
        let (code, stdout, stderr) = user(&config, args, BERT_PW);
        assert_eq!(code, Some(1), "{args:?}: {stdout}{stderr}");
        assert!(
            stderr.starts_with(&format!("bccguard: no database at {}", db.display())),
            "{args:?}: {stderr}"
        );
        assert!(!db.exists(), "{args:?} created an empty register");
    }
}
