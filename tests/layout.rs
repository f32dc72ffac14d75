//! The module layout keeps its layers: no import circle between the
//! top-level modules of `src/`, and none inside the `relay/` and
//! `incident/` folders between their modules; the incident workflow never
//! imports the relay; the leaves and the configuration import nothing
//! above them.
//!
//! The graph is read from the sources (`crate::x` paths outside comments
//! and test modules), so it needs no tool beyond this test. Print it with
//! `cargo test --test layout -- --nocapture`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Modules that import nothing of the crate but other leaves.
const LEAVES: [&str; 7] = [
    "clock",
    "id",
    "smtp",
    "message",
    "metrics",
    "net",
    "templates",
];

/// What each module below the relay may import, besides the leaves. The
/// console stands beside the relay: it works the incident workflow and
/// never reaches into the relay (which starts it).
const ALLOWED: [(&str, &[&str]); 6] = [
    ("policy", &[]),
    ("rewrite", &["policy"]),
    ("config", &["policy"]),
    ("upstream", &["config"]),
    (
        "incident",
        &["policy", "rewrite", "config", "upstream", "message"],
    ),
    (
        "console",
        &[
            "policy", "rewrite", "config", "upstream", "message", "incident",
        ],
    ),
];

/// `from -> to -> files that make the edge`.
type Graph = BTreeMap<String, BTreeMap<String, BTreeSet<String>>>;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of a file without comments and without its test module.
fn code(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests {") {
        Some(i) => &text[..i],
        None => text,
    };
    text.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every module name a `crate::` path in `code` names at `depth` (0: the
/// top level, 1: inside `parent`).
fn targets(code: &str, parent: Option<&str>) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let prefix = match parent {
        None => "crate::".to_string(),
        Some(p) => format!("crate::{p}::"),
    };
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut rest = code;
    while let Some(i) = rest.find(&prefix) {
        let after = &rest[i + prefix.len()..];
        if let Some(group) = after.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let name = ident(item.trim());
                if !name.is_empty() && name != "self" {
                    found.insert(name);
                }
            }
        } else {
            let name = ident(after);
            if !name.is_empty() {
                found.insert(name);
            }
        }
        rest = after;
    }
    // `super::x` inside a folder names a sibling.
    if parent.is_some() {
        let mut rest = code;
        while let Some(i) = rest.find("super::") {
            let after = &rest[i + "super::".len()..];
            let name = ident(after);
            if !name.is_empty() {
                found.insert(name);
            }
            rest = after;
        }
    }
    found
}

/// The import graph between the modules directly under `dir` (`src` for
/// the top level, `src/relay` for the relay's modules).
fn graph(dir: &Path, parent: Option<&str>) -> Graph {
    let mut files = Vec::new();
    rust_files(dir, &mut files);
    let module = |path: &Path| -> Option<String> {
        let rel = path.strip_prefix(dir).ok()?;
        let first = rel.components().next()?.as_os_str().to_str()?;
        let name = first.trim_end_matches(".rs").to_string();
        let skip = ["lib", "main", "mod", "tests"];
        (!skip.contains(&name.as_str())).then_some(name)
    };
    let names: BTreeSet<String> = files.iter().filter_map(|p| module(p)).collect();
    let mut g = Graph::new();
    for name in &names {
        g.entry(name.clone()).or_default();
    }
    for path in &files {
        if path.file_name().is_some_and(|n| n == "tests.rs") {
            continue;
        }
        let Some(from) = module(path) else { continue };
        let mut text = std::fs::read_to_string(path).unwrap();
        if parent.is_none() && from == "cli" {
            // The binary's subcommands (src/cli/, under main.rs) name the
            // library as `bccguard::`: they sit on top of everything.
            text = text.replace("bccguard::", "crate::");
        }
        for to in targets(&code(&text), parent) {
            if to != from && names.contains(&to) {
                let shown = path
                    .strip_prefix("src")
                    .unwrap_or(path)
                    .display()
                    .to_string();
                g.get_mut(&from)
                    .unwrap()
                    .entry(to)
                    .or_default()
                    .insert(shown);
            }
        }
    }
    g
}

/// The strongly connected components with more than one module (Tarjan).
fn circles(g: &Graph) -> Vec<Vec<String>> {
    struct State<'a> {
        g: &'a Graph,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a str) {
        let n = s.index.len();
        s.index.insert(v, n);
        s.low.insert(v, n);
        s.stack.push(v);
        for w in s.g[v].keys() {
            let w = w.as_str();
            if !s.index.contains_key(w) {
                visit(s, w);
                let lw = s.low[w];
                let lv = s.low.get_mut(v).unwrap();
                *lv = (*lv).min(lw);
            } else if s.stack.contains(&w) {
                let iw = s.index[w];
                let lv = s.low.get_mut(v).unwrap();
                *lv = (*lv).min(iw);
            }
        }
        if s.low[v] == s.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = s.stack.pop() {
                comp.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                s.out.push(comp);
            }
        }
    }
    let mut s = State {
        g,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        out: Vec::new(),
    };
    for v in g.keys() {
        if !s.index.contains_key(v.as_str()) {
            visit(&mut s, v);
        }
    }
    s.out
}

fn show(g: &Graph) -> String {
    g.iter()
        .map(|(from, to)| {
            let to: Vec<&str> = to.keys().map(String::as_str).collect();
            format!("{from} -> {}", to.join(" "))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn explain(g: &Graph, circle: &[String]) -> String {
    let mut lines = Vec::new();
    for from in circle {
        for (to, files) in &g[from] {
            if circle.contains(to) {
                let files: Vec<&str> = files.iter().map(String::as_str).collect();
                lines.push(format!("  {from} -> {to}: {}", files.join(", ")));
            }
        }
    }
    lines.join("\n")
}

#[test]
fn no_import_circle_between_top_level_modules() {
    let g = graph(Path::new("src"), None);
    println!("top-level imports:\n{}\n", show(&g));
    let found = circles(&g);
    let why: Vec<String> = found.iter().map(|c| explain(&g, c)).collect();
    assert!(
        found.is_empty(),
        "import circles: {found:?}\n{}",
        why.join("\n")
    );
}

#[test]
fn no_import_circle_inside_the_relay_and_the_incident_workflow() {
    for folder in ["relay", "incident"] {
        let g = graph(&Path::new("src").join(folder), Some(folder));
        println!("{folder}/ imports:\n{}\n", show(&g));
        let found = circles(&g);
        let why: Vec<String> = found.iter().map(|c| explain(&g, c)).collect();
        assert!(
            found.is_empty(),
            "import circles in {folder}/: {found:?}\n{}",
            why.join("\n")
        );
    }
}

#[test]
fn each_layer_imports_only_from_below() {
    let g = graph(Path::new("src"), None);
    let mut wrong = Vec::new();
    for (from, to) in &g {
        let allowed: Vec<&str> = if LEAVES.contains(&from.as_str()) {
            LEAVES.to_vec()
        } else if let Some((_, extra)) = ALLOWED.iter().find(|(m, _)| m == from) {
            LEAVES.iter().chain(extra.iter()).copied().collect()
        } else {
            continue; // the relay and the tools on top may import any layer
        };
        for (target, files) in to {
            if !allowed.contains(&target.as_str()) {
                wrong.push(format!("{from} -> {target} ({files:?})"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports against the layers:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_checker_finds_a_circle_and_the_imports_in_groups() {
    // The checker itself: a planted circle is found, and grouped and
    // nested `use` paths count as imports while comments do not.
    let mut g = Graph::new();
    for (a, b) in [("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")] {
        g.entry(a.into()).or_default().entry(b.into()).or_default();
        g.entry(b.into()).or_default();
    }
    assert_eq!(circles(&g), vec![vec!["a", "b", "c"]]);
    let text = "// crate::relay is named in a comment\nuse crate::{config::Config, policy};\nfn f() { crate::clock::now(); }\n#[cfg(test)]\nmod tests {\n use crate::relay;\n}\n";
    let names: Vec<String> = targets(&code(text), None).into_iter().collect();
    assert_eq!(names, ["clock", "config", "policy"]);
}
