//! The docs test: README.md and docs/*.md held against the code, so the
//! documentation cannot drift from what the guard accepts and runs.
//!
//! - Config keys: every key the loader accepts has a row in docs/policy.md,
//!   and every row names a key the loader accepts. The accepted keys are
//!   read from the code itself: the configuration is deserialised with
//!   serde's `deny_unknown_fields`, so loading a section with an unknown key
//!   `__probe__` through [`Config::from_yaml`] fails with "unknown field
//!   `__probe__`, expected one of `a`, `b`, ...". Probing the top level, then
//!   every key found, walks the whole tree.
//! - Commands: every `bccguard ...` command shown (in shell blocks and in
//!   inline code) parses with the real binary; `check` and `explain` run for
//!   real in a temporary directory, and the documented `check` output is
//!   what the binary prints.
//! - Names: every `scripts/...` (and `deploy/check`, `.ci/run`) named is an
//!   executable file, every `cargo` command names an existing bench, test or
//!   example (and a criterion filter names a benchmark group), every
//!   `scripts/loadbench` workload and script flag exists, every fuzz target
//!   named exists, and every repository path in inline code exists.
//! - Links: every relative link in README.md and docs/*.md resolves to a
//!   file, and every anchor to a heading of that file.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use bccguard::config::Config;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const BIN: &str = env!("CARGO_BIN_EXE_bccguard");

/// README.md and docs/*.md, as (path relative to the repository, text).
fn doc_files() -> Vec<(String, String)> {
    let root = Path::new(ROOT);
    let mut names = vec!["README.md".to_string()];
    let mut pages: Vec<String> = std::fs::read_dir(root.join("docs"))
        .expect("docs/ exists")
        .map(|e| {
            e.expect("docs/ entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|n| n.ends_with(".md"))
        .map(|n| format!("docs/{n}"))
        .collect();
    pages.sort();
    names.extend(pages);
    names
        .into_iter()
        .map(|n| {
            let text =
                std::fs::read_to_string(root.join(&n)).unwrap_or_else(|e| panic!("{n}: {e}"));
            (n, text)
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Markdown: fences, inline code, headings, links.

/// One fenced code block.
struct Fence {
    file: String,
    /// 1-based line of the opening fence.
    line: usize,
    lang: String,
    body: Vec<String>,
}

/// The fenced blocks of a file, and its text with every fenced line blanked
/// (so prose scans neither see code nor shift line numbers).
fn split_fences(file: &str, text: &str) -> (Vec<Fence>, String) {
    let mut fences = Vec::new();
    let mut prose = String::new();
    let mut open: Option<Fence> = None;
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        if let Some(rest) = trimmed.strip_prefix("```") {
            match open.take() {
                Some(f) => fences.push(f),
                None => {
                    open = Some(Fence {
                        file: file.to_string(),
                        line: i + 1,
                        lang: rest.trim().to_string(),
                        body: Vec::new(),
                    })
                }
            }
            prose.push('\n');
            continue;
        }
        match open.as_mut() {
            Some(f) => {
                f.body.push(line.to_string());
                prose.push('\n');
            }
            None => {
                prose.push_str(line);
                prose.push('\n');
            }
        }
    }
    assert!(open.is_none(), "{file}: a code fence is never closed");
    (fences, prose)
}

/// Inline code spans of prose, with the line each starts on. A span may
/// run over a line break; a blank line ends it.
fn inline_code(prose: &str) -> Vec<(usize, String)> {
    let mut spans = Vec::new();
    let mut line = 1;
    let mut open: Option<(usize, String)> = None;
    let mut prev_newline = false;
    for c in prose.chars() {
        if c == '\n' {
            line += 1;
            if prev_newline {
                open = None;
            }
            prev_newline = true;
            if let Some((_, s)) = open.as_mut() {
                s.push(' ');
            }
            continue;
        }
        prev_newline = false;
        if c == '`' {
            match open.take() {
                Some((l, s)) => spans.push((l, s.trim().to_string())),
                None => open = Some((line, String::new())),
            }
        } else if let Some((_, s)) = open.as_mut() {
            s.push(c);
        }
    }
    spans
}

/// GitHub's anchor for a heading: lowercase, letters, digits, `-` and `_`
/// kept, spaces turned into `-`, everything else dropped.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// The anchors of a file's headings (duplicates numbered as GitHub does).
fn anchors(prose: &str) -> BTreeSet<String> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut out = BTreeSet::new();
    for line in prose.lines() {
        let Some(rest) = line.strip_prefix('#') else {
            continue;
        };
        let text = rest.trim_start_matches('#');
        if !text.starts_with(' ') {
            continue;
        }
        let base = slug(text);
        let n = seen.entry(base.clone()).or_insert(0);
        out.insert(if *n == 0 {
            base.clone()
        } else {
            format!("{base}-{n}")
        });
        *n += 1;
    }
    out
}

/// `[text](target)` links of prose, with their line.
fn links(prose: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (i, line) in prose.lines().enumerate() {
        let mut rest = line;
        while let Some(pos) = rest.find("](") {
            let after = &rest[pos + 2..];
            let Some(end) = after.find(')') else { break };
            out.push((i + 1, after[..end].to_string()));
            rest = &after[end + 1..];
        }
    }
    out
}

#[test]
fn every_relative_link_resolves() {
    let docs = doc_files();
    let mut heading_anchors = BTreeMap::new();
    for (name, text) in &docs {
        let (_, prose) = split_fences(name, text);
        heading_anchors.insert(name.clone(), anchors(&prose));
    }
    let mut bad = Vec::new();
    for (name, text) in &docs {
        let (_, prose) = split_fences(name, text);
        let dir = Path::new(name).parent().unwrap_or(Path::new(""));
        for (line, target) in links(&prose) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let (path, anchor) = match target.split_once('#') {
                Some((p, a)) => (p, Some(a)),
                None => (target.as_str(), None),
            };
            let file = if path.is_empty() {
                name.clone()
            } else {
                normalise(&dir.join(path))
            };
            if !Path::new(ROOT).join(&file).exists() {
                bad.push(format!("{name}:{line}: {target}: no file {file}"));
                continue;
            }
            if let Some(anchor) = anchor {
                match heading_anchors.get(&file) {
                    Some(set) if set.contains(anchor) => {}
                    Some(_) => bad.push(format!("{name}:{line}: {target}: no heading #{anchor} in {file}")),
                    None => bad.push(format!("{name}:{line}: {target}: anchors are only checked in README.md and docs/*.md")),
                }
            }
        }
    }
    assert!(bad.is_empty(), "broken links:\n{}", bad.join("\n"));
}

/// `docs/../policy.yaml` -> `policy.yaml` (no file system access).
fn normalise(p: &Path) -> String {
    let mut parts: Vec<String> = Vec::new();
    for c in p.components() {
        match c {
            std::path::Component::ParentDir => {
                parts.pop();
            }
            std::path::Component::Normal(s) => parts.push(s.to_string_lossy().into_owned()),
            _ => {}
        }
    }
    parts.join("/")
}

#[test]
fn the_readme_is_a_front_door() {
    let readme = std::fs::read_to_string(Path::new(ROOT).join("README.md")).expect("README.md");
    let lines = readme.lines().count();
    assert!(
        lines <= 250,
        "README.md has {lines} lines; the front door keeps to 250, the rest belongs in docs/"
    );
}

// ---------------------------------------------------------------------------
// Config keys.

enum Seg {
    Key(String),
    Elem,
}

/// `server.limits.max_recipients`, `policy.rules[].action`.
fn dotted(path: &[Seg]) -> String {
    let mut s = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(k);
            }
            Seg::Elem => s.push_str("[]"),
        }
    }
    s
}

/// YAML (flow style) that puts `inner` at `path`.
fn yaml_at(path: &[Seg], inner: &str) -> String {
    path.iter()
        .rev()
        .fold(inner.to_string(), |acc, seg| match seg {
            Seg::Key(k) => format!("{{{k}: {acc}}}"),
            Seg::Elem => format!("[{acc}]"),
        })
}

/// The keys the map at `path` accepts, if it is a map that refuses unknown
/// keys: read from the loader's "unknown field `__probe__`, expected one of
/// `a`, `b`" (or "expected `a` or `b`", or "expected `a`").
fn fields_at(path: &[Seg]) -> Option<Vec<String>> {
    let yaml = yaml_at(path, "{__probe__: 1}");
    let err = Config::from_yaml(&yaml, "probe").err()?.to_string();
    let marker = "unknown field `__probe__`";
    let after = &err[err.find(marker)? + marker.len()..];
    let after = after.lines().next().unwrap_or_default();
    let fields: Vec<String> = after
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect();
    Some(fields)
}

#[derive(Default)]
struct Keys {
    /// Keys holding a value (scalar, list of scalars, free-form map).
    leaves: BTreeSet<String>,
    /// Keys holding a section (or a list of sections).
    sections: BTreeSet<String>,
}

fn discover(path: &mut Vec<Seg>, keys: &mut Keys) {
    if let Some(fields) = fields_at(path) {
        if !path.is_empty() {
            keys.sections.insert(dotted(path));
        }
        for f in fields {
            path.push(Seg::Key(f));
            discover(path, keys);
            path.pop();
        }
        return;
    }
    if matches!(path.last(), Some(Seg::Key(_))) {
        path.push(Seg::Elem);
        let list_of_sections = fields_at(path).is_some();
        if list_of_sections {
            keys.sections.insert(dotted(&path[..path.len() - 1]));
            discover(path, keys);
        }
        path.pop();
        if list_of_sections {
            return;
        }
    }
    keys.leaves.insert(dotted(path));
}

/// Every key the loader accepts, found by probing.
fn accepted_keys() -> Keys {
    let mut keys = Keys::default();
    discover(&mut Vec::new(), &mut keys);
    assert!(
        keys.leaves.len() > 50 && keys.leaves.contains("policy.action"),
        "probing found too few keys ({:?}): has the loader's unknown-key message changed?",
        keys.leaves
    );
    // `upstream.auth` is either a word (`passthrough`) or a map
    // `{username, password_file}`: an untagged serde enum, whose map form
    // ignores unknown keys instead of naming the known ones, so probing
    // cannot see its two keys. They are listed here, and loading them is
    // checked in `the_service_account_keys_are_accepted`.
    for k in ["upstream.auth.username", "upstream.auth.password_file"] {
        keys.leaves.insert(k.to_string());
    }
    keys
}

#[test]
fn the_service_account_keys_are_accepted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pw = dir.path().join("scanner.pw");
    std::fs::write(&pw, "secret\n").expect("password file");
    let yaml = format!(
        "upstream: {{address: \"127.0.0.1:25\", auth: {{username: scanner, password_file: {:?}}}}}",
        pw.display().to_string()
    );
    if let Err(e) = Config::from_yaml(&yaml, "probe") {
        panic!("a service account as docs/policy.md describes it does not load: {e}");
    }
}

/// A key path in a table cell: `server.limits.max_recipients`,
/// `policy.rules[]`, `policy.rules[].action`.
fn looks_like_key(s: &str) -> bool {
    s.contains('.')
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_.[]".contains(c))
        && !s.starts_with('.')
}

/// The keys docs/policy.md documents: backticked key paths in the first
/// cell of its table rows.
fn documented_keys() -> BTreeSet<String> {
    let text =
        std::fs::read_to_string(Path::new(ROOT).join("docs/policy.md")).expect("docs/policy.md");
    let (_, prose) = split_fences("docs/policy.md", &text);
    let mut keys = BTreeSet::new();
    for line in prose.lines() {
        let Some(row) = line.trim().strip_prefix('|') else {
            continue;
        };
        let first = row.split('|').next().unwrap_or_default();
        for (i, part) in first.split('`').enumerate() {
            if i % 2 == 1 && looks_like_key(part) {
                keys.insert(part.to_string());
            }
        }
    }
    keys
}

#[test]
fn every_config_key_is_documented_and_every_documented_key_exists() {
    let code = accepted_keys();
    let docs = documented_keys();
    let undocumented: Vec<_> = code.leaves.iter().filter(|k| !docs.contains(*k)).collect();
    let unknown: Vec<_> = docs
        .iter()
        .filter(|k| !code.leaves.contains(*k) && !code.sections.contains(*k))
        .collect();
    assert!(
        undocumented.is_empty() && unknown.is_empty(),
        "docs/policy.md and the loader disagree.\naccepted but not documented: {undocumented:?}\ndocumented but not accepted: {unknown:?}"
    );
}

#[test]
fn the_shipped_policy_loads() {
    if let Err(e) = Config::from_yaml(bccguard::config::DEFAULT_POLICY_YAML, "policy.yaml") {
        panic!("{e}");
    }
}

// ---------------------------------------------------------------------------
// Commands.

/// Splits a shell line into words: quotes kept together (and removed),
/// `#` at the start of a word ends the line.
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    for c in line.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => cur.push(c),
            None if c == '\'' || c == '"' => {
                quote = Some(c);
                in_word = true;
            }
            None if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            None if c == '#' && !in_word => break,
            None => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    words
}

/// The simple commands of a shell line (split at `&&`, `||`, `|`, `;`),
/// with `sudo`, `env` and `VAR=value` prefixes and redirections
/// (`> file`, `2>/dev/null`) removed.
fn simple_commands(words: &[String]) -> Vec<Vec<String>> {
    fn redirect(w: &str) -> &str {
        w.trim_start_matches(|c: char| c.is_ascii_digit() || c == '&')
    }
    words
        .split(|w| ["&&", "||", "|", ";"].contains(&w.as_str()))
        .map(|cmd| {
            let mut out = Vec::new();
            let mut words = cmd.iter().skip_while(|w| {
                *w == "sudo"
                    || *w == "env"
                    || (w.contains('=') && !w.starts_with('-') && !w.contains('/'))
            });
            while let Some(w) = words.next() {
                let r = redirect(w);
                if r.starts_with('>') || r.starts_with('<') {
                    // `>` alone takes the next word as its file.
                    if r.trim_start_matches(['>', '<', '&']).is_empty() {
                        words.next();
                    }
                    continue;
                }
                out.push(w.clone());
            }
            out
        })
        .filter(|c| !c.is_empty())
        .collect()
}

/// A command the docs show, where it is shown.
struct Shown {
    at: String,
    words: Vec<String>,
    /// From a shell block (a complete command) rather than inline prose
    /// (which may use `[optional]` and `PLACEHOLDER` notation).
    block: bool,
}

fn shown_commands() -> Vec<Shown> {
    let mut out = Vec::new();
    for (name, text) in doc_files() {
        let (fences, prose) = split_fences(&name, &text);
        for f in fences
            .iter()
            .filter(|f| ["sh", "bash", "shell", "console"].contains(&f.lang.as_str()))
        {
            let mut joined = String::new();
            let mut start = 0;
            for (i, line) in f.body.iter().enumerate() {
                if joined.is_empty() {
                    start = i;
                }
                let line = line.trim_start().trim_start_matches("$ ");
                if let Some(cont) = line.strip_suffix('\\') {
                    joined.push_str(cont);
                    joined.push(' ');
                    continue;
                }
                joined.push_str(line);
                for words in simple_commands(&shell_words(&joined)) {
                    out.push(Shown {
                        at: format!("{}:{}", f.file, f.line + 1 + start),
                        words,
                        block: true,
                    });
                }
                joined.clear();
            }
        }
        for (line, span) in inline_code(&prose) {
            let words: Vec<String> = shell_words(&span)
                .into_iter()
                .map(|w| w.trim_matches(|c| c == '[' || c == ']').to_string())
                .filter(|w| !w.is_empty() && !w.ends_with("..."))
                .collect();
            for words in simple_commands(&words) {
                out.push(Shown {
                    at: format!("{name}:{line}"),
                    words,
                    block: false,
                });
            }
        }
    }
    out
}

/// The bccguard arguments of a shown command: `bccguard ARGS` or
/// `cargo run [--release] -- ARGS`.
fn bccguard_args(words: &[String]) -> Option<Vec<String>> {
    match words.first()?.as_str() {
        "bccguard" => Some(words[1..].to_vec()),
        "cargo" if words.get(1).map(String::as_str) == Some("run") => {
            let dash = words.iter().position(|w| w == "--")?;
            if words[..dash]
                .iter()
                .any(|w| w == "--example" || w == "--bin")
            {
                return None;
            }
            Some(words[dash + 1..].to_vec())
        }
        _ => None,
    }
}

fn run(args: &[String], dir: &Path, env: &[(String, String)]) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env_clear()
        .envs(env.iter().cloned())
        .output()
        .expect("run bccguard")
}

/// The subcommand words (up to two) before the first flag or argument.
fn subcommand_words(args: &[String]) -> Vec<String> {
    let mut words = Vec::new();
    for a in args {
        if a.starts_with('-') || words.len() == 2 {
            break;
        }
        words.push(a.clone());
        // The commands whose subcommands are probed on their own.
        if words.len() == 1 && !["quarantine", "incident", "user"].contains(&a.as_str()) {
            break;
        }
    }
    words
}

#[test]
fn every_bccguard_command_shown_parses() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut bad = Vec::new();
    let mut checked = BTreeSet::new();
    for shown in shown_commands() {
        let Some(args) = bccguard_args(&shown.words) else {
            continue;
        };
        if args.is_empty() && !shown.block {
            // Prose naming the program, not a command.
            continue;
        }
        let sub = subcommand_words(&args);
        if sub.is_empty() {
            bad.push(format!("{}: `bccguard` without a subcommand", shown.at));
            continue;
        }
        let mut probes = vec![sub.clone()];
        if shown.block {
            // The whole line with --help: clap checks every flag and value
            // given before it, then prints help instead of running.
            probes.push(args.clone());
        }
        for mut probe in probes {
            if !checked.insert(probe.clone()) {
                continue;
            }
            probe.push("--help".into());
            let out = run(&probe, tmp.path(), &[]);
            if !out.status.success() {
                bad.push(format!(
                    "{}: `bccguard {}` fails: {}",
                    shown.at,
                    probe.join(" "),
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
        }
    }
    assert!(
        checked.len() >= 10,
        "only {} bccguard commands found in the docs: is the extraction broken?",
        checked.len()
    );
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn check_and_explain_run_as_shown() {
    let root = Path::new(ROOT);
    let mut ran = BTreeSet::new();
    let mut bad = Vec::new();
    for shown in shown_commands() {
        let Some(args) = bccguard_args(&shown.words) else {
            continue;
        };
        let Some(sub) = args.first().map(String::as_str) else {
            continue;
        };
        if sub != "check" && sub != "explain" {
            continue;
        }
        // Runnable: every file named is one the repository ships (run from
        // its root, as a reader of the README would); absolute paths
        // belong to someone's server.
        let files: Vec<&String> = args[1..].iter().filter(|a| !a.starts_with('-')).collect();
        if files.iter().any(|f| f.starts_with('/')) {
            continue;
        }
        for f in &files {
            if !root.join(f).is_file() {
                bad.push(format!(
                    "{}: `bccguard {}` names {f}, which is not shipped",
                    shown.at,
                    args.join(" ")
                ));
            }
        }
        if sub == "explain" && !files.iter().any(|f| f.ends_with(".eml")) {
            continue;
        }
        if !ran.insert(args.clone()) {
            continue;
        }
        let out = run(&args, root, &[]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let ok = match sub {
            "check" => out.status.success() && stdout.contains(": OK ("),
            // The shipped example is the 1,494-address cancellation: a
            // reject, exit status 2.
            _ => {
                out.status.code() == Some(2)
                    && stdout.contains("1494 external address(es)")
                    && stdout.contains("action:    reject")
            }
        };
        if !ok {
            bad.push(format!(
                "{}: `bccguard {}` exit {:?}\n{stdout}{}",
                shown.at,
                args.join(" "),
                out.status.code(),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    assert!(
        ran.iter().any(|a| a[0] == "check") && ran.iter().any(|a| a[0] == "explain"),
        "no runnable check and explain commands found in the docs: {ran:?}"
    );
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

/// docs/policy.md shows what `bccguard check` prints for a file with two
/// mistakes. The mistakes are read from that output (`key: ... "value"`),
/// put into the shipped policy through the documented environment
/// overrides, and the real output must be the documented one.
#[test]
fn the_documented_check_output_is_what_check_prints() {
    let text =
        std::fs::read_to_string(Path::new(ROOT).join("docs/policy.md")).expect("docs/policy.md");
    let (fences, _) = split_fences("docs/policy.md", &text);
    let shown = fences
        .iter()
        .find(|f| {
            f.lang.is_empty()
                && f.body
                    .first()
                    .is_some_and(|l| l.starts_with("bccguard: policy.yaml:"))
        })
        .expect("docs/policy.md shows the output of a failing `bccguard check`");
    let mut env = Vec::new();
    for line in &shown.body[1..] {
        let (key, message) = line.trim().split_once(": ").expect("`key: message`");
        let value = message.split('"').nth(1).expect("the bad value in quotes");
        env.push((
            format!("BCCGUARD__{}", key.replace('.', "__").to_uppercase()),
            value.to_string(),
        ));
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    std::fs::copy(
        Path::new(ROOT).join("policy.yaml"),
        tmp.path().join("policy.yaml"),
    )
    .expect("copy policy.yaml");
    let out = run(
        &["check".into(), "--config".into(), "policy.yaml".into()],
        tmp.path(),
        &env,
    );
    assert!(
        !out.status.success(),
        "check accepted the broken settings {env:?}"
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim_end(),
        shown.body.join("\n"),
        "with {env:?}"
    );
}

/// Whether `p` is an executable file.
fn executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Checks one shown `scripts/...` command: the script, its flags, and the
/// positional arguments the scripts define (loadbench workloads, fuzz
/// targets).
fn check_script(shown: &Shown, bad: &mut Vec<String>) {
    let root = Path::new(ROOT);
    let script = &shown.words[0];
    let path = root.join(script);
    if !executable(&path) {
        bad.push(format!("{}: {script} is not an executable file", shown.at));
        return;
    }
    let source = std::fs::read_to_string(&path).unwrap_or_default();
    let mut positional = Vec::new();
    let mut args = shown.words[1..].iter();
    while let Some(a) = args.next() {
        if a.starts_with("--") {
            let flag = a.split('=').next().unwrap_or(a);
            let quoted = format!("\"{flag}\"");
            match source.lines().find(|l| l.contains(&quoted)) {
                None => bad.push(format!("{}: {script} has no flag {flag}", shown.at)),
                Some(def) if !def.contains("store_true") && !a.contains('=') => {
                    args.next();
                }
                Some(_) => {}
            }
        } else if !a.chars().all(|c| c.is_ascii_uppercase() || c == '_') {
            positional.push(a.clone());
        }
    }
    match script.as_str() {
        "scripts/loadbench" => {
            for w in positional {
                if w != "all" && !source.contains(&format!("\"{w}\": w_")) {
                    bad.push(format!(
                        "{}: scripts/loadbench has no workload {w}",
                        shown.at
                    ));
                }
            }
        }
        "scripts/fuzz" => {
            for (i, t) in positional.iter().enumerate() {
                if i == 0 && t.parse::<u64>().is_ok() {
                    continue;
                }
                if !root
                    .join("fuzz/fuzz_targets")
                    .join(format!("{t}.rs"))
                    .is_file()
                {
                    bad.push(format!("{}: no fuzz target {t}", shown.at));
                }
            }
        }
        _ => {}
    }
}

/// Checks one shown `cargo ...` command: the targets it names.
fn check_cargo(shown: &Shown, bad: &mut Vec<String>) {
    let root = Path::new(ROOT);
    let w = &shown.words;
    let dash = w.iter().position(|a| a == "--").unwrap_or(w.len());
    let mut bench = None;
    for (i, a) in w[..dash].iter().enumerate() {
        let dir = match a.as_str() {
            "--bench" => "benches",
            "--test" => "tests",
            "--example" => "examples",
            _ => continue,
        };
        let Some(name) = w.get(i + 1) else {
            bad.push(format!("{}: {a} without a name", shown.at));
            continue;
        };
        let file = root.join(dir).join(format!("{name}.rs"));
        let folder = root.join(dir).join(name).join("main.rs");
        if !file.is_file() && !folder.is_file() {
            bad.push(format!(
                "{}: `cargo {a} {name}`: no {dir}/{name}.rs",
                shown.at
            ));
        }
        if a == "--bench" {
            bench = Some(file);
        }
    }
    // `cargo bench --bench core -- decide_visible`: the filter names a
    // benchmark group.
    if let Some(bench) = bench {
        let source = std::fs::read_to_string(bench).unwrap_or_default();
        for filter in w.get(dash + 1..).unwrap_or_default() {
            if !filter.starts_with('-') && !source.contains(&format!("benchmark_group(\"{filter}"))
            {
                bad.push(format!("{}: no benchmark group {filter}", shown.at));
            }
        }
    }
}

#[test]
fn every_script_and_cargo_target_shown_exists() {
    let mut bad = Vec::new();
    let (mut scripts, mut cargos) = (0, 0);
    for shown in shown_commands() {
        let first = shown.words[0].as_str();
        if first.starts_with("scripts/") || first == "deploy/check" || first == ".ci/run" {
            scripts += 1;
            check_script(&shown, &mut bad);
        } else if first == "cargo" {
            cargos += 1;
            check_cargo(&shown, &mut bad);
        }
    }
    assert!(
        scripts >= 5 && cargos >= 5,
        "found only {scripts} script and {cargos} cargo commands in the docs"
    );
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn every_repository_path_shown_exists() {
    let prefixes = [
        "src/",
        "tests/",
        "benches/",
        "examples/",
        "deploy/",
        "fuzz/",
        "scripts/",
        "docs/",
        ".ci/",
    ];
    let mut bad = Vec::new();
    for (name, text) in doc_files() {
        let (_, prose) = split_fences(&name, &text);
        for (line, span) in inline_code(&prose) {
            let Some(first) = span.split_whitespace().next() else {
                continue;
            };
            let path = first.trim_end_matches([',', ':']);
            if !prefixes.iter().any(|p| path.starts_with(p)) || path.contains(['<', '*', '$', '['])
            {
                continue;
            }
            // `examples/hotpath` is the example built from examples/hotpath.rs.
            let root = Path::new(ROOT);
            if !root.join(path).exists() && !root.join(format!("{path}.rs")).is_file() {
                bad.push(format!("{name}:{line}: `{span}`: no {path}"));
            }
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn the_docs_map_in_the_readme_names_every_page() {
    let readme = std::fs::read_to_string(Path::new(ROOT).join("README.md")).expect("README.md");
    let pages: Vec<PathBuf> = doc_files()
        .into_iter()
        .map(|(n, _)| PathBuf::from(n))
        .filter(|p| p.starts_with("docs"))
        .collect();
    for page in pages {
        let link = format!("]({})", page.display());
        assert!(
            readme.contains(&link),
            "README.md does not link {}",
            page.display()
        );
    }
}
