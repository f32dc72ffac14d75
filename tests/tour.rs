//! README's "A short tour (with swaks)", run as a new user runs it: the
//! guard started on its embedded default (`serve` without `--config`) in
//! an empty directory, then every command of the tour's shell block in
//! that directory with the real swaks and curl, and each output line the
//! tour shows (`#    <-  250 ...`, `#    To: ...`) found in what that
//! command printed. A tour whose replies changed fails here, not on a new
//! user's screen.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const BIN: &str = env!("CARGO_BIN_EXE_bccguard");

/// One command of the tour with the output lines shown under it.
#[derive(Debug)]
struct Step {
    command: String,
    expected: Vec<String>,
}

/// The shell block after the tour's heading, as steps. A comment indented
/// by four spaces (`#    <-  250 ...`) is output the command above shows;
/// other comments (`# 1. ...`) are prose.
fn tour() -> Vec<Step> {
    let readme = std::fs::read_to_string(format!("{ROOT}/README.md")).expect("README.md");
    let at = readme
        .find("## A short tour (with swaks)")
        .expect("the tour's heading");
    let block = &readme[at..];
    let start = block.find("```sh\n").expect("the tour's shell block") + 6;
    let end = start + block[start..].find("```").expect("the block's end");
    let mut steps: Vec<Step> = Vec::new();
    let mut lines = block[start..end].lines();
    while let Some(line) = lines.next() {
        if let Some(shown) = line.strip_prefix("#    ") {
            let step = steps.last_mut().expect("output under a command");
            step.expected.push(shown.to_string());
        } else if line.starts_with('#') || line.trim().is_empty() {
            continue;
        } else {
            let mut command = line.to_string();
            while command.ends_with('\\') {
                command.pop();
                command.push_str(lines.next().expect("a continued line").trim_start());
            }
            steps.push(Step {
                command,
                expected: Vec::new(),
            });
        }
    }
    steps
}

/// The pieces of a shown line that must appear, in order: the text
/// between `...` (elided: ids, file names), without the reader's notes in
/// parentheses (after two spaces, or right after an elision).
fn pieces(shown: &str) -> Vec<String> {
    let shown = shown.split("  (").next().unwrap_or(shown);
    shown
        .split("...")
        .map(str::trim)
        .filter(|p| !p.is_empty() && !p.starts_with('('))
        .map(String::from)
        .collect()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

#[test]
fn the_readme_tour_runs_as_shown() {
    let steps = tour();
    assert!(
        steps
            .iter()
            .filter(|s| s.command.starts_with("swaks "))
            .count()
            >= 3
            && steps.iter().any(|s| !s.expected.is_empty()),
        "the tour is not what this test reads: {steps:?}"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let (smtp, metrics, console) = (free_port(), free_port(), free_port());
    // The embedded default, on free ports instead of 2525/9925/9926 (which a
    // guard of the developer's own may hold).
    let mut guard = Command::new(BIN)
        .arg("serve")
        .current_dir(dir.path())
        .env_remove("BCCGUARD_CONFIG")
        .env("BCCGUARD__SERVER__LISTEN", format!("127.0.0.1:{smtp}"))
        .env("BCCGUARD__METRICS__LISTEN", format!("127.0.0.1:{metrics}"))
        .env("BCCGUARD__CONSOLE__LISTEN", format!("127.0.0.1:{console}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("bccguard serve");
    let mut log = BufReader::new(guard.stderr.take().expect("stderr"));
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut line = String::new();
    while !line.contains("metrics on http://") {
        assert!(Instant::now() < deadline, "the guard did not start");
        line.clear();
        if log.read_line(&mut line).expect("the guard's log") == 0 {
            panic!("the guard exited at start");
        }
    }
    // Drain the rest so the guard never blocks on a full pipe.
    std::thread::spawn(move || std::io::copy(&mut log, &mut std::io::sink()));

    let mut failures = Vec::new();
    let mut env: Vec<(String, String)> = Vec::new();
    for step in &steps {
        let command = step
            .command
            .replace("127.0.0.1:2525", &format!("127.0.0.1:{smtp}"))
            .replace("127.0.0.1:9925", &format!("127.0.0.1:{metrics}"));
        // `to=$(...)` sets a variable for the later commands, as in the
        // user's shell.
        let script: String = env
            .iter()
            .map(|(k, v)| format!("{k}='{v}'\n"))
            .chain(std::iter::once(format!("{command}\n")))
            .collect();
        if let Some((name, _)) = command.split_once('=')
            && !name.contains(' ')
        {
            let value = Command::new("bash")
                .args(["-c", &format!("{script}printf %s \"${name}\"")])
                .current_dir(dir.path())
                .output()
                .expect("bash");
            env.push((name.into(), String::from_utf8_lossy(&value.stdout).into()));
            continue;
        }
        let out = Command::new("bash")
            .args(["-c", &script])
            .current_dir(dir.path())
            .output()
            .expect("bash");
        let printed = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        if !out.status.success() && !command.starts_with("swaks ") {
            failures.push(format!("`{command}` failed:\n{printed}"));
            continue;
        }
        for shown in &step.expected {
            let mut rest = printed.as_str();
            for piece in pieces(shown) {
                match rest.find(&piece) {
                    Some(at) => rest = &rest[at + piece.len()..],
                    None => {
                        failures.push(format!(
                            "`{command}`: the README shows {shown:?}, but {piece:?} is not in its output:\n{printed}"
                        ));
                        break;
                    }
                }
            }
        }
        if command.starts_with("curl ") && !printed.contains("bccguard_messages_total{") {
            failures.push(format!("`{command}` printed no series:\n{printed}"));
        }
    }
    let _ = guard.kill();
    let _ = guard.wait();
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn shown_lines_become_the_pieces_that_must_appear() {
    assert_eq!(
        pieces("<** 550 5.7.1 Incident ...; the event has been recorded."),
        ["<** 550 5.7.1 Incident", "; the event has been recorded."]
    );
    assert_eq!(
        pieces("To: termine@example.org         (all 12 still receive it)"),
        ["To: termine@example.org"]
    );
    assert_eq!(
        pieces("<** 550-5.7.1 ... (German first, then English)"),
        ["<** 550-5.7.1"]
    );
    assert_eq!(
        pieces("<-  250 2.0.0 Ok: stored as new/..."),
        ["<-  250 2.0.0 Ok: stored as new/"]
    );
}
