//! The DPO console in a real browser (issue 17, "Done means"): Debian's
//! headless chromium driven by Python's selenium through chromedriver.
//! This file owns the world around the browser: a guard holding two mails
//! sent by a real SMTP client (Python's smtplib), the aiosmtpd upstream,
//! a dpo and a viewer account. It runs `tests/browser/console.py` (the
//! clicks and what the pages show) and then checks what those clicks
//! changed behind the pages: the released mail at the upstream with no
//! external address visible, the `released` step under the console
//! user's name, the forged POST's incident still held, the login counts.
//! tests/console.rs proves the same flows over raw HTTP; this one proves
//! them with a browser's cookies, forms, escaping and CSP.
//!
//! The screenshots in docs/img come from this run: with
//! `BCCGUARD_SCREENSHOTS=1` the script writes them there, else into a
//! temporary directory (so an ordinary run leaves the tree as it was).
//! Without chromium, chromedriver or selenium the test fails and names
//! `scripts/test`, which installs them (CI always has them).

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;

use bccguard::incident::store::{HoldState, Role};
use common::*;
use tokio::process::Command;

/// Debian's paths, named explicitly: selenium must not look for (and try
/// to download) a browser or a driver of its own.
const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

const PASSWORD: &str = "correct horse battery";

/// How long the whole browser run may take (it needs about 10 s).
const BROWSER_WAIT: std::time::Duration = std::time::Duration::from_secs(120);

/// The checks the script reports, in its order: a check that stopped
/// running fails the test instead of passing unnoticed.
const CHECKS: [&str; 9] = [
    "login",
    "screenshots",
    "release",
    "escaped",
    "csrf",
    "logout",
    "throttled",
    "viewer",
    "sender",
];

/// What is missing of the browser peers, for the failure message.
fn missing_peers() -> Vec<&'static str> {
    let mut missing = Vec::new();
    if !Path::new(CHROMIUM).is_file() {
        missing.push("chromium (apt)");
    }
    if !Path::new(CHROMEDRIVER).is_file() {
        missing.push("chromium-driver (apt)");
    }
    let selenium = std::process::Command::new("python3")
        .args(["-c", "import selenium"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !selenium {
        missing.push("selenium (pip)");
    }
    missing
}

/// Twelve people who booked a vaccination, at made-up providers (the
/// screenshots show them; no real person's address).
fn patients() -> Vec<String> {
    [
        "lena.hoffmann@mailbox.example",
        "k.weber@mailbox.example",
        "juergen.schulz@post.example",
        "familie.becker@post.example",
        "m.yilmaz@webmail.example",
        "sabine.koch@webmail.example",
        "t.richter@mailbox.example",
        "ana.petrovic@post.example",
        "h.wagner@webmail.example",
        "claudia.neumann@mailbox.example",
        "p.schwarz@post.example",
        "j.zimmermann@webmail.example",
    ]
    .map(String::from)
    .to_vec()
}

/// The mistake the guard exists for: a cancellation to every patient of
/// the day, all of them in To.
fn cancellation(to: &[String]) -> String {
    format!(
        "From: Impfzentrum Musterstadt <impfzentrum@example.org>\r\n\
         To: {}\r\n\
         Subject: =?utf-8?q?Absage_Ihres_Impftermins_am_14=2E_M=C3=A4rz?=\r\n\
         Message-ID: <absage-0314@example.org>\r\n\
         Date: Thu, 13 Mar 2025 16:40:00 +0100\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         \r\n\
         Sehr geehrte Damen und Herren,\r\n\
         \r\n\
         wegen eines Lieferausfalls muessen wir Ihren Termin am 14. Maerz absagen.\r\n\
         Bitte buchen Sie online einen neuen Termin.\r\n\
         \r\n\
         Ihr Impfzentrum Musterstadt\r\n",
        to.join(",\r\n ")
    )
}

/// A subject that would run as script if a page forgot to escape it.
fn hostile(to: &[String]) -> String {
    format!(
        "From: Bernd Beispiel <bernd@example.org>\r\nTo: {}\r\nSubject: <script>alert(1)</script>\r\nMessage-ID: <hostile-1@example.org>\r\n\r\nTermine.\r\n",
        to.join(", ")
    )
}

/// Holds one mail through smtplib; returns its incident id.
async fn hold(guard: &Guard, from: &str, to: &[String], msg: &str) -> String {
    let (code, text) = smtplib_send(guard.smtp, from, to, msg).await;
    assert_eq!(code, 250, "held: {text}");
    incident_id(&text)
}

/// Width and height from a PNG's IHDR chunk.
fn png_size(path: &Path) -> (u32, u32) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        bytes.len() > 24 && bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
        "{} is not a PNG",
        path.display()
    );
    let be = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
    (be(16), be(20))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_logs_in_releases_as_bcc_and_is_refused_what_it_may_not() {
    let missing = missing_peers();
    assert!(
        missing.is_empty(),
        "the browser tests need {}: run scripts/test, which installs them \
         (apt-get install chromium chromium-driver; pip install selenium)",
        missing.join(", ")
    );

    let up = Upstream::start().await;
    let policy = "policy:\n  internal_domains: [\"example.org\"]\n  max_external_recipients: 3\n  action: hold\nconsole:\n  listen: \"127.0.0.1:0\"\n  public_url: \"http://console.test\"\nquarantine:\n  sender_release: [bcc]\n";
    let guard = Guard::start(&yaml(Some(up.addr), policy)).await;
    let store = guard.shared.store.as_ref();
    add_console_user(store, "anna", Role::Dpo, PASSWORD);
    add_console_user(store, "viktor", Role::Viewer, PASSWORD);
    let to = patients();
    let release = hold(&guard, "impfzentrum@example.org", &to, &cancellation(&to)).await;
    let others = externals(5);
    let forged = hold(&guard, "bernd@example.org", &others, &hostile(&others)).await;
    // A third held mail, decided by its sender from the link in the hold
    // notice that reached the upstream.
    let carla_to = externals(4);
    let own = hold(&guard, "carla@example.org", &carla_to, &hostile(&carla_to)).await;
    let sender_link = sender_link(&up, "carla@example.org").await;
    assert!(
        sender_link.starts_with(&format!("/release/{own}/")),
        "{sender_link}"
    );
    let console = guard.console.expect("console on");

    let shots: PathBuf;
    let _tmp;
    if std::env::var("BCCGUARD_SCREENSHOTS").as_deref() == Ok("1") {
        shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/img");
        _tmp = None;
    } else {
        let t = tempfile::tempdir().unwrap();
        shots = t.path().to_path_buf();
        _tmp = Some(t);
    }
    let debug = tempfile::Builder::new()
        .prefix("bccguard-browser-")
        .tempdir()
        .unwrap()
        .keep();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/console.py");
    let run = Command::new("python3")
        .arg(&script)
        .args(["--url", &format!("http://{console}")])
        .args([
            "--password",
            PASSWORD,
            "--dpo",
            "anna",
            "--viewer",
            "viktor",
        ])
        .args(["--release", &release, "--hostile", &forged])
        .args(["--sender-link", &sender_link])
        .arg("--screenshots")
        .arg(&shots)
        .arg("--debug")
        .arg(&debug)
        .args(["--chromium", CHROMIUM, "--chromedriver", CHROMEDRIVER])
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(BROWSER_WAIT, run)
        .await
        .expect("the browser run timed out")
        .expect("run python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "tests/browser/console.py failed ({}); the pages it saw are in {}\n{stdout}{stderr}",
        out.status,
        debug.display()
    );
    let done: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("ok "))
        .collect();
    assert_eq!(done, CHECKS, "{stdout}{stderr}");
    let _ = std::fs::remove_dir_all(&debug);

    // The bcc release reached the upstream once, to every patient, with
    // no address but the sender's visible.
    let sent: Vec<Delivered> = up
        .messages()
        .into_iter()
        .filter(|m| !(m.mail_from.is_empty() || m.mail_from == "<>"))
        .filter(|m| m.mail_from != "carla@example.org")
        .collect();
    assert_eq!(sent.len(), 1, "{sent:?}");
    let mut rcpts = sent[0].rcpt_tos.clone();
    rcpts.sort();
    let mut want = to.clone();
    want.sort();
    assert_eq!(rcpts, want);
    let head = sent[0].head();
    for a in to.iter().chain(&others) {
        assert!(!head.contains(a.as_str()), "{a} visible:\n{head}");
    }
    assert!(head.contains("Impfzentrum Musterstadt"), "{head}");

    // The decision is a step under the console user's name.
    assert_released(store, &release, "anna", "as bcc via console:");
    // The sender's, under the sender's address.
    assert_released(store, &own, "carla@example.org", "as bcc via sender link:");
    // The forged POST changed nothing.
    assert_eq!(store.incident(&forged).unwrap().hold, Some(HoldState::Held));
    assert!(
        store
            .steps(&forged)
            .unwrap()
            .iter()
            .all(|s| s.step != "released")
    );

    // Two logins (anna, viktor), five failures, one throttled.
    let text = guard.metrics_text().await;
    for (result, n) in [("ok", 2.0), ("failed", 5.0), ("throttled", 1.0)] {
        let series = format!("bccguard_console_logins_total{{result=\"{result}\"}}");
        assert_eq!(sample(&text, &series), n, "{series}");
    }
    assert_eq!(
        sample(
            &text,
            "bccguard_quarantine_decisions_total{how=\"bcc\",by=\"console\"}"
        ),
        1.0
    );

    // The screenshots, at the size the docs show.
    for name in [
        "console-overview.png",
        "console-held.png",
        "console-incident.png",
    ] {
        assert_eq!(png_size(&shots.join(name)), (1280, 900), "{name}");
    }
    guard.stop().await;
}

/// The path of the link in the hold notice the upstream got for `sender`.
async fn sender_link(up: &Upstream, sender: &str) -> String {
    eventually("the sender's hold notice", || async {
        up.messages().iter().any(|m| m.rcpt_tos == [sender])
    })
    .await;
    let notice = up
        .messages()
        .into_iter()
        .find(|m| m.rcpt_tos == [sender])
        .unwrap();
    let body = mail_parser::MessageParser::default()
        .parse(&notice.data)
        .and_then(|m| m.body_text(0).map(|b| b.into_owned()))
        .unwrap_or_default();
    let base = "http://console.test";
    let at = body
        .find(&format!("{base}/release/"))
        .unwrap_or_else(|| panic!("no link in the notice:\n{body}"));
    body[at + base.len()..]
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}
