//! The `bccguard` binary as an administrator uses it: `check` a policy,
//! `explain` a message, and `serve` (smoke test: start, deliver one mail
//! into the Maildir, stop on SIGTERM with exit status 0).

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// The binary, with no `BCCGUARD*` variable of the test environment leaking
/// into its configuration.
fn bccguard() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_bccguard"));
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("BCCGUARD") {
            cmd.env_remove(k);
        }
    }
    cmd
}

fn repo_policy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("policy.yaml")
}

fn run(cmd: &mut Command) -> (Output, String, String) {
    let out = cmd.output().expect("run bccguard");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, stdout, stderr)
}

/// `bccguard check --config <file with yaml>`.
fn check(yaml: &str) -> (Output, String, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("policy.yaml");
    std::fs::write(&path, yaml).expect("write config");
    run(bccguard().arg("check").arg("--config").arg(&path))
}

const MINIMAL: &str = "upstream:\n  maildir: ./outbox\n";

#[test]
fn check_accepts_the_shipped_policy() {
    let (out, stdout, stderr) = run(bccguard().arg("check").arg("--config").arg(repo_policy()));
    assert!(out.status.success(), "stdout: {stdout}\nstderr: {stderr}");
    assert!(stdout.contains("OK"), "{stdout}");
    assert!(
        stdout.contains("threshold 10, action reject, 2 rule(s)"),
        "{stdout}"
    );
}

#[test]
fn check_names_an_unknown_action_exactly() {
    let (out, stdout, stderr) = check(&format!("{MINIMAL}policy:\n  action: shred\n"));
    assert!(!out.status.success(), "stdout: {stdout}");
    let expected = "policy.action: unknown action \"shred\", expected one of reject, bcc, split, monitor, allow, hold";
    assert!(
        stderr.lines().any(|l| l.trim() == expected),
        "no line {expected:?} in stderr:\n{stderr}"
    );
}

#[test]
fn check_lists_every_problem_at_once() {
    let yaml = format!(
        "{MINIMAL}policy:\n  action: shred\n  empty_to: nobody\n  max_external_recipients: many\nserver:\n  limits:\n    idle_timeout: soon\n"
    );
    let (out, _, stderr) = check(&yaml);
    assert!(!out.status.success());
    assert!(stderr.contains("4 problem(s)"), "{stderr}");
    for line in [
        "policy.action: unknown action \"shred\"",
        "policy.empty_to: unknown value \"nobody\"",
        "policy.max_external_recipients: \"many\" is not a whole number",
        "server.limits.idle_timeout: \"soon\" is not a duration",
    ] {
        assert!(
            stderr.lines().any(|l| l.trim().starts_with(line)),
            "missing {line:?} in:\n{stderr}"
        );
    }
}

#[test]
fn check_names_an_unknown_key() {
    let (out, _, stderr) = check(&format!("{MINIMAL}policy:\n  actoin: bcc\n"));
    assert!(
        !out.status.success(),
        "a typo must not fall back to a default"
    );
    assert!(stderr.contains("actoin"), "{stderr}");
}

/// Writes the 1,494-address mail as a file on disk (LF line ends).
fn cancellation_file(dir: &Path) -> (PathBuf, Vec<String>) {
    let addrs = externals(1494);
    let path = dir.join("absage.eml");
    std::fs::write(&path, cancellation_mail(&addrs, "\n")).expect("write eml");
    (path, addrs)
}

/// The rewritten header lines (`  | ...`) of an explain report.
fn shown_header(report: &str) -> Vec<&str> {
    report
        .lines()
        .filter_map(|l| l.strip_prefix("  | "))
        .collect()
}

#[test]
fn explain_reports_the_cancellation_mail_and_sends_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (eml, _) = cancellation_file(dir.path());
    let (out, stdout, stderr) = run(bccguard()
        .current_dir(dir.path())
        .arg("explain")
        .arg("--config")
        .arg(repo_policy())
        .arg(&eml));
    assert_eq!(out.status.code(), Some(2), "reject is exit 2: {stderr}");
    assert!(
        stdout.contains("1494 external address(es) in 7 domain(s), 0 internal"),
        "{stdout}"
    );
    assert!(
        stdout.contains("1494 recipient(s) (taken from the visible addresses)"),
        "{stdout}"
    );
    assert!(stdout.contains("threshold: 10 -> exceeded"), "{stdout}");
    assert!(stdout.contains("action:    reject"), "{stdout}");
    assert!(stdout.contains("1494 visible, limit 10"), "{stdout}");
    // Nothing delivered, nothing recorded (the repo policy names ./outbox
    // and ./incidents.jsonl relative to the working directory).
    assert!(
        !dir.path().join("outbox").exists(),
        "explain delivered something"
    );
    assert!(
        !dir.path().join("incidents.jsonl").exists(),
        "explain recorded something"
    );

    // An explicit envelope.
    let (out, stdout, _) = run(bccguard()
        .arg("explain")
        .arg("--config")
        .arg(repo_policy())
        .arg(&eml)
        .args([
            "--rcpt",
            "p1@ext1.test",
            "--rcpt",
            "p2@ext2.test",
            "--rcpt",
            "boss@example.org",
        ])
        .args(["--from", "praxis@example.org"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stdout.contains("from <praxis@example.org>, 3 recipient(s)"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("taken from the visible addresses"),
        "{stdout}"
    );
    assert!(stdout.contains("1494 external"), "{stdout}");
}

#[test]
fn explain_shows_the_rewritten_to_for_bcc() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (eml, addrs) = cancellation_file(dir.path());

    // The shipped "appointments" rule (sender termine@example.org) hides.
    let (out, stdout, stderr) = run(bccguard()
        .arg("explain")
        .arg("--config")
        .arg(repo_policy())
        .arg(&eml)
        .args(["--from", "termine@example.org"]));
    assert_eq!(out.status.code(), Some(4), "bcc is exit 4: {stderr}");
    assert!(stdout.contains("rule:      appointments"), "{stdout}");
    assert!(stdout.contains("action:    bcc"), "{stdout}");
    let head = shown_header(&stdout);
    let to: Vec<&&str> = head.iter().filter(|l| l.starts_with("To:")).collect();
    assert_eq!(to, [&"To: praxis@example.org"], "{stdout}");
    let shown = head.join("\n");
    assert!(shown.contains("Subject: Absage aller Termine"), "{stdout}");
    for a in &addrs {
        assert!(!shown.contains(a.as_str()), "{a} still shown:\n{stdout}");
    }

    // A bcc policy of its own, with empty_to: undisclosed.
    let config = dir.path().join("bcc.yaml");
    std::fs::write(
        &config,
        format!(
            "{MINIMAL}policy:\n  internal_domains: [\"example.org\"]\n  max_external_recipients: 3\n  action: bcc\n  empty_to: undisclosed\n"
        ),
    )
    .expect("write config");
    let (out, stdout, stderr) = run(bccguard()
        .arg("explain")
        .arg("--config")
        .arg(&config)
        .arg(&eml));
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(stdout.contains("action:    bcc"), "{stdout}");
    let head = shown_header(&stdout);
    assert!(head.contains(&"To: undisclosed-recipients:;"), "{stdout}");
    assert!(!head.join("\n").contains("@ext"), "{stdout}");
}

/// The `serve` child, killed if the test fails before it stops it.
struct Served {
    child: Child,
    log: PathBuf,
}

impl Served {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits (bounded) until the process has exited.
    fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "bccguard did not exit; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Polls (bounded) until the SMTP port answers with a 220 greeting.
fn wait_for_greeting(served: &mut Served, port: u16) {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(status) = served.child.try_wait().expect("try_wait") {
            panic!(
                "bccguard exited early with {status}; log:\n{}",
                served.log()
            );
        }
        if let Ok(s) = TcpStream::connect(("127.0.0.1", port)) {
            s.set_read_timeout(Some(WAIT)).expect("timeout");
            let mut line = String::new();
            BufReader::new(&s).read_line(&mut line).expect("greeting");
            assert!(line.starts_with("220 "), "greeting: {line:?}");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "SMTP port {port} never answered; log:\n{}",
            served.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn http_get_metrics(port: u16) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("metrics connect");
    s.set_read_timeout(Some(WAIT)).expect("timeout");
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .expect("write");
    let mut body = String::new();
    s.read_to_string(&mut body).expect("read metrics");
    body
}

fn have_swaks() -> bool {
    Command::new("swaks")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_delivers_into_the_maildir_and_exits_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let smtp_port = free_port();
    let mut metrics_port = free_port();
    while metrics_port == smtp_port {
        metrics_port = free_port();
    }
    let outbox = dir.path().join("outbox");
    let config = dir.path().join("policy.yaml");
    std::fs::write(
        &config,
        format!(
            "server:\n  listen: [\"127.0.0.1:{smtp_port}\"]\n  hostname: guard.test\n  trusted_networks: [\"127.0.0.0/8\"]\n\
             upstream:\n  maildir: \"{}\"\n\
             metrics:\n  listen: \"127.0.0.1:{metrics_port}\"\n\
             incidents:\n  path: \"{}\"\n\
             policy:\n  internal_domains: [\"example.org\"]\n  max_external_recipients: 3\n  action: reject\n",
            outbox.display(),
            dir.path().join("incidents.jsonl").display()
        ),
    )
    .expect("write config");
    let log = dir.path().join("guard.log");
    let child = bccguard()
        .current_dir(dir.path())
        .arg("serve")
        .arg("--config")
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("spawn bccguard serve");
    let mut served = Served { child, log };
    wait_for_greeting(&mut served, smtp_port);

    if have_swaks() {
        let out = Command::new("swaks")
            .args(["--server", "127.0.0.1", "--port", &smtp_port.to_string()])
            .args(["--helo", "client.test", "--from", "a@example.org"])
            .args(["--to", "p1@ext1.test,boss@example.org"])
            .args(["--header", "Subject: smoke test"])
            .args(["--body", "Hallo from swaks"])
            .output()
            .expect("run swaks");
        assert!(
            out.status.success(),
            "swaks failed:\n{}\nguard log:\n{}",
            String::from_utf8_lossy(&out.stdout),
            served.log()
        );
    } else {
        let msg = message(
            "a@example.org",
            "p1@ext1.test",
            Some("boss@example.org"),
            "Hallo\r\n",
        )
        .replace("Subject: Termin abgesagt", "Subject: smoke test");
        let mut c = Client::connect(([127, 0, 0, 1], smtp_port).into()).await;
        let r = c
            .mail("a@example.org", &["p1@ext1.test", "boss@example.org"], &msg)
            .await;
        assert_eq!(r.code, 250, "{}", r.text);
        c.cmd("QUIT", 221).await;
    }

    let files: Vec<PathBuf> = std::fs::read_dir(outbox.join("new"))
        .expect("outbox/new")
        .map(|e| e.expect("entry").path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}\nlog:\n{}", served.log());
    let stored = std::fs::read_to_string(&files[0]).expect("read stored mail");
    assert!(
        stored.starts_with("Return-Path: <a@example.org>\r\n"),
        "{stored}"
    );
    assert!(
        stored.contains("Delivered-To: p1@ext1.test\r\n"),
        "{stored}"
    );
    assert!(
        stored.contains("Delivered-To: boss@example.org\r\n"),
        "{stored}"
    );
    assert!(stored.contains("\r\nSubject: smoke test\r\n"), "{stored}");
    assert_eq!(
        std::fs::read_dir(outbox.join("tmp")).expect("tmp").count(),
        0
    );
    let metrics = http_get_metrics(metrics_port);
    assert!(
        metrics.contains("bccguard_messages_total{action=\"pass\"} 1"),
        "{metrics}"
    );

    let pid = served.child.id().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    let status = served.wait_exit();
    assert!(
        status.success(),
        "exit status {status} after SIGTERM; log:\n{}",
        served.log()
    );
}

/// `explain` lists every counted address and where it was seen: a display
/// name, an encoded word, an unparseable Reply-To, an attached message; and
/// says why a bcc rewrite would be refused.
#[test]
fn explain_lists_every_counted_address_and_where_it_was_seen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let eml = dir.path().join("fwd.eml");
    // Cc is "p3@ext3.test, p4@ext4.test" as one base64 word.
    std::fs::write(
        &eml,
        "From: Amt <amt@example.org>\n\
         To: \"p1@ext1.test, p2@ext2.test\" <team@example.org>\n\
         Cc: =?utf-8?b?cDNAZXh0My50ZXN0LCBwNEBleHQ0LnRlc3Q=?=\n\
         Reply-To: p5@ext5.test p6@ext6.test\n\
         Subject: fwd\n\
         Content-Type: multipart/mixed; boundary=b\n\n\
         --b\nContent-Type: message/rfc822\n\n\
         To: p7@ext7.test, p8@ext8.test, p9@ext9.test\n\nold\n--b--\n",
    )
    .expect("write eml");
    let explain = |config: &str, rcpt: &str| {
        let policy = dir.path().join("policy.yaml");
        std::fs::write(&policy, config).expect("write policy");
        let (out, stdout, stderr) = run(bccguard()
            .current_dir(dir.path())
            .arg("explain")
            .arg("--config")
            .arg(&policy)
            .args(["--rcpt", rcpt])
            .arg(&eml));
        assert_eq!(
            out.status.code(),
            Some(2),
            "every case here is a reject: {stderr}"
        );
        stdout
    };
    let base = "upstream:\n  maildir: ./outbox\npolicy:\n  internal_domains: [example.org]\n  max_external_recipients: 2\n";
    let out = explain(&format!("{base}  action: reject\n"), "partner@ext0.test");
    for line in [
        "9 external address(es) in 9 domain(s), 1 internal; in To/Cc, Reply-To and an attached message",
        "counted  p1@ext1.test  To, display name",
        "counted  p3@ext3.test  Cc, encoded word",
        "counted  p5@ext5.test  Reply-To, unparseable token",
        "counted  p9@ext9.test  To, address, attached message",
        "threshold: 2 -> exceeded",
    ] {
        assert!(out.contains(line), "{line:?} missing in\n{out}");
    }
    // Sent inside the organisation, the attachment does not count.
    let out = explain(&format!("{base}  action: reject\n"), "boss@example.org");
    assert!(out.contains("6 external address(es)"), "{out}");
    assert!(!out.contains("attached message"), "{out}");
    // In bcc mode the attached list (3 > 2) cannot be hidden.
    let out = explain(&format!("{base}  action: bcc\n"), "partner@ext0.test");
    assert!(
        out.contains("action:    reject: an attached message shows 3 external addresses"),
        "{out}"
    );
}

/// `explain`'s exit status is its verdict, one per action, so a script
/// can branch on it: the shipped 1,494-address example under each action,
/// a small mail that passes, a missing file, and a header section the
/// guard cannot read in full.
#[test]
fn explain_exit_status_is_the_verdict() {
    let dir = tempfile::tempdir().expect("tempdir");
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/cancellation.eml");
    let small = dir.path().join("small.eml");
    std::fs::write(
        &small,
        "From: alice@example.org\nTo: bob@partner.test, carol@other.test\nSubject: hi\n\nhello\n",
    )
    .expect("write eml");
    let deep = dir.path().join("deep.eml");
    // Four attached messages, one inside the other, under a limit of 2.
    let mut nested = String::new();
    for _ in 0..4 {
        nested.push_str(
            "From: alice@example.org\nTo: bob@partner.test\nContent-Type: message/rfc822\n\n",
        );
    }
    nested.push_str("From: alice@example.org\n\nx\n");
    std::fs::write(&deep, nested).expect("write eml");
    let status = |action: &str, eml: &Path| {
        let policy = dir.path().join(format!("{action}.yaml"));
        std::fs::write(
            &policy,
            format!("{MINIMAL}policy:\n  internal_domains: [example.org]\n  max_external_recipients: 10\n  mime_nesting_limit: 2\n  action: {action}\n"),
        )
        .expect("write policy");
        let (out, stdout, stderr) = run(bccguard()
            .arg("explain")
            .arg("--config")
            .arg(&policy)
            .arg(eml));
        (out.status.code(), stdout, stderr)
    };
    for (action, code) in [
        ("reject", 2),
        ("hold", 3),
        ("bcc", 4),
        ("split", 4),
        ("monitor", 5),
    ] {
        let (got, stdout, stderr) = status(action, &example);
        assert_eq!(got, Some(code), "{action}: {stdout}{stderr}");
        assert!(stdout.contains(&format!("action:    {action}")), "{stdout}");
    }
    let (got, stdout, _) = status("reject", &small);
    assert_eq!(got, Some(0), "{stdout}");
    assert!(stdout.contains("action:    pass"), "{stdout}");
    let (got, _, stderr) = status("reject", &dir.path().join("missing.eml"));
    assert_eq!(got, Some(1));
    assert!(stderr.contains("cannot read"), "{stderr}");
    let (got, stdout, _) = status("monitor", &deep);
    assert_eq!(got, Some(2), "unreadable fails closed: {stdout}");
    assert!(stdout.contains("554 5.6.0"), "{stdout}");

    let help = run(bccguard().args(["explain", "--help"])).1;
    for line in [
        "0  pass",
        "1  error",
        "2  reject",
        "3  hold",
        "4  rewritten",
        "5  recorded",
    ] {
        assert!(help.contains(line), "{line:?} not in --help:\n{help}");
    }
}

/// An open relay and a hold nobody hears of pass `check` (they are valid)
/// but not silently; a YAML slip is named by line and column.
#[test]
fn check_warns_of_an_open_relay_and_names_yaml_positions() {
    let (out, stdout, stderr) = check(&format!(
        "{MINIMAL}server:\n  trusted_networks: [\"0.0.0.0/0\"]\npolicy:\n  action: hold\n"
    ));
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("OK ("), "{stdout}");
    assert!(
        stdout.contains("warning: server.trusted_networks[0]: 0.0.0.0/0 is wider than a /16 (IPv4) (the whole internet: an open relay)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("warning: incidents.notify is empty while policy.action is hold"),
        "{stdout}"
    );
    let (out, _, stderr) = check("upstream:\n  maildir: ./outbox\npolicy:\n\taction: hold\n");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("line 4, column 2: tabs disallowed"),
        "{stderr}"
    );
    assert!(stderr.contains("    4 | \taction: hold"), "{stderr}");
}

#[test]
fn the_dpo_commands_name_a_missing_database_in_one_line_and_create_none() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("policy.yaml");
    std::fs::write(&path, MINIMAL).expect("write config");
    for args in [
        &["quarantine", "list"][..],
        &["incident", "list"],
        &["group", "list"],
    ] {
        let (out, stdout, stderr) = run(bccguard().args(args).arg("--config").arg(&path));
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stdout}{stderr}");
        let db = dir.path().join("bccguard.db");
        assert_eq!(
            stderr.trim_end(),
            format!(
                "bccguard: no database at {} (store.path): is --config the guard's policy file? The guard creates the database when it starts",
                db.display()
            ),
            "{args:?}"
        );
        assert!(!db.exists(), "{args:?} created an empty register");
    }
}
