//! The layering of `doc/ARCHITECTURE.md`, enforced: reads every file under `src/` at test time and checks
//! each `crate::<module>` path against [`ALLOWED`], and that the files inside a module do not import each
//! other in a cycle (`super::file`, `crate::<module>::file`; `mod.rs` and test modules excepted).
//! A violation is printed as `file:line: use …` and fails the test.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Which layers each layer may use (itself always allowed). Mirrors the table in `doc/ARCHITECTURE.md`.
const ALLOWED: &[(&str, &[&str])] = &[
    ("util", &[]),
    ("db", &["util"]),
    ("crdt", &["util"]),
    ("net", &["util"]),
    ("layout", &["net", "crdt", "db", "util"]),
    ("table", &["layout", "net", "crdt", "db", "util"]),
    ("block", &["table", "layout", "net", "crdt", "db", "util"]),
    (
        "model",
        &["block", "table", "layout", "net", "crdt", "db", "util"],
    ),
    ("s3", &["model", "util"]),
    ("admin", &["model", "block", "table", "layout", "util"]),
    // `grenier dev` runs a node in-process: it starts a `server::Node`, assigns it a role and creates a key.
    ("cli", &["admin", "server", "layout", "model", "util"]),
    (
        "server",
        &[
            "admin", "s3", "model", "block", "table", "layout", "net", "crdt", "db", "util",
        ],
    ),
    // Other binaries (`src/bin`: the load generator) use the library by its name, as any client.
    ("bin", &["s3", "util"]),
    // The shared unit-test helpers (in-process node, node config, poll-until): like `server`, above all.
    (
        "test_support",
        &[
            "server", "cli", "admin", "s3", "model", "block", "table", "layout", "net", "crdt",
            "db", "util",
        ],
    ),
];

/// Layers every layer may use: they exist only under `#[cfg(test)]`, so they add no edge to the
/// product's dependency graph.
const TEST_ONLY: &[&str] = &["test_support"];

/// Known violations tolerated for now: (file, imported layer, why). Each names the issue that removes it.
/// None today: keep it that way.
const EXCEPTIONS: &[(&str, &str, &str)] = &[];

/// One `crate::<layer>` reference found in a source file.
#[derive(Debug, PartialEq)]
struct Use {
    line: usize,
    target: String,
    text: String,
}

/// The layers named by `crate::` paths in `src`, with their line numbers (comments skipped; grouped
/// `use crate::{a::x, b::y}` forms read up to their closing brace).
fn crate_uses(src: &str) -> Vec<Use> {
    let mut out = Vec::new();
    let lines: Vec<&str> = src.lines().collect();
    for (i, raw) in lines.iter().enumerate() {
        let line = raw.trim_start();
        if line.starts_with("//") {
            continue;
        }
        let mut rest = *raw;
        while let Some(p) = rest.find("crate::") {
            let before = &rest[..p];
            rest = &rest[p + "crate::".len()..];
            // `$crate::` in macros and identifiers ending in "crate" are not paths from the crate root.
            if before.ends_with(|c: char| c == '$' || c == '_' || c.is_alphanumeric()) {
                continue;
            }
            if let Some(inner) = rest.strip_prefix('{') {
                let mut group = String::new();
                let mut j = i;
                let mut text = inner.to_string();
                loop {
                    if let Some(end) = text.find('}') {
                        group.push_str(&text[..end]);
                        break;
                    }
                    group.push_str(&text);
                    j += 1;
                    match lines.get(j) {
                        Some(l) => text = (*l).to_string(),
                        None => break,
                    }
                }
                let mut depth = 0usize;
                let mut item = String::new();
                for c in group.chars().chain(std::iter::once(',')) {
                    match c {
                        '{' => depth += 1,
                        '}' => depth = depth.saturating_sub(1),
                        ',' if depth == 0 => {
                            let name = leading_ident(item.trim());
                            if !name.is_empty() && name != "self" {
                                out.push(Use {
                                    line: i + 1,
                                    target: name.to_string(),
                                    text: raw.trim().to_string(),
                                });
                            }
                            item.clear();
                            continue;
                        }
                        _ => {}
                    }
                    if depth == 0 {
                        item.push(c);
                    }
                }
            } else {
                let name = leading_ident(rest);
                if !name.is_empty() {
                    out.push(Use {
                        line: i + 1,
                        target: name.to_string(),
                        text: raw.trim().to_string(),
                    });
                }
            }
        }
    }
    out
}

fn leading_ident(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c == '_' || c.is_ascii_alphanumeric()))
        .unwrap_or(s.len());
    &s[..end]
}

/// Every `.rs` file under `dir`, sorted.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// The layer a file belongs to: its first directory under `src/`, or its stem for `src/*.rs`.
fn layer_of(rel: &str) -> &str {
    match rel.split_once('/') {
        Some((dir, _)) => dir,
        None => rel.trim_end_matches(".rs"),
    }
}

/// The cross-layer violations of `src` (a file at `rel` under `src/`), as `file:line: use …` lines.
fn violations(rel: &str, src: &str) -> Vec<String> {
    // Other binaries reach the library through `grenier::` paths: read them as `crate::` ones.
    let as_crate;
    let src = if rel.starts_with("bin/") {
        as_crate = src.replace("grenier::", "crate::");
        &as_crate
    } else {
        src
    };
    let layer = layer_of(rel);
    let Some((_, allowed)) = ALLOWED.iter().find(|(l, _)| *l == layer) else {
        return vec![format!(
            "{rel}:1: layer `{layer}` is missing from the allowed graph"
        )];
    };
    let layers: BTreeSet<&str> = ALLOWED.iter().map(|(l, _)| *l).collect();
    crate_uses(src)
        .into_iter()
        .filter(|u| u.target != layer && layers.contains(u.target.as_str()))
        .filter(|u| !allowed.contains(&u.target.as_str()))
        .filter(|u| !TEST_ONLY.contains(&u.target.as_str()))
        .filter(|u| {
            !EXCEPTIONS
                .iter()
                .any(|(f, t, _)| *f == rel && *t == u.target)
        })
        .map(|u| {
            format!(
                "{rel}:{}: {} (`{layer}` may not use `{}`)",
                u.line, u.text, u.target
            )
        })
        .collect()
}

/// The sibling files that a non-`mod.rs` file of `module` uses outside its test module.
fn sibling_uses(module: &str, src: &str, siblings: &BTreeSet<String>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let prefix = format!("crate::{module}::");
    for raw in src.lines() {
        let line = raw.trim_start();
        if line.starts_with("mod tests") || line.starts_with("pub(crate) mod tests") {
            break;
        }
        if line.starts_with("//") {
            continue;
        }
        for pat in ["super::", prefix.as_str()] {
            let mut rest = raw;
            while let Some(p) = rest.find(pat) {
                rest = &rest[p + pat.len()..];
                let mut names = vec![leading_ident(rest).to_string()];
                if let Some(group) = rest.strip_prefix('{') {
                    let group = group.split('}').next().unwrap_or("");
                    names = group
                        .split(',')
                        .map(|s| leading_ident(s.trim()).to_string())
                        .collect();
                }
                out.extend(names.into_iter().filter(|n| siblings.contains(n)));
            }
        }
    }
    out
}

/// A cycle in the file graph, if any, as `a → b → a`.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<String> {
    fn visit(
        n: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<String> {
        if let Some(i) = stack.iter().position(|s| s == n) {
            let mut c = stack[i..].to_vec();
            c.push(n.to_string());
            return Some(c.join(" → "));
        }
        if done.contains(n) {
            return None;
        }
        stack.push(n.to_string());
        for m in graph.get(n).into_iter().flatten() {
            if let Some(c) = visit(m, graph, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        done.insert(n.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for n in graph.keys() {
        if let Some(c) = visit(n, graph, &mut Vec::new(), &mut done) {
            return Some(c);
        }
    }
    None
}

#[test]
fn layers_only_use_the_layers_below_them() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut bad = Vec::new();
    let mut modules: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for f in &files {
        let rel = f
            .strip_prefix(&src)
            .expect("under src")
            .to_string_lossy()
            .replace('\\', "/");
        // `lib.rs` declares the modules, `main.rs` uses the library by name, this file holds test strings.
        if ["lib.rs", "main.rs", "layering.rs"].contains(&rel.as_str()) {
            continue;
        }
        let text = std::fs::read_to_string(f).expect("readable source");
        bad.extend(violations(&rel, &text));
        if let Some((module, file)) = rel.split_once('/')
            && file != "mod.rs"
            && !file.contains('/')
        {
            let stem = file.trim_end_matches(".rs").to_string();
            modules
                .entry(module.to_string())
                .or_default()
                .push((stem, text));
        }
    }
    for (module, files) in &modules {
        let siblings: BTreeSet<String> = files.iter().map(|(s, _)| s.clone()).collect();
        let graph: BTreeMap<String, BTreeSet<String>> = files
            .iter()
            .map(|(stem, text)| {
                let mut uses = sibling_uses(module, text, &siblings);
                uses.remove(stem);
                (stem.clone(), uses)
            })
            .collect();
        if let Some(cycle) = find_cycle(&graph) {
            bad.push(format!(
                "src/{module}: files import each other in a cycle: {cycle}"
            ));
        }
    }
    for b in &bad {
        println!("{b}");
    }
    assert!(
        bad.is_empty(),
        "{} layering violation(s), see doc/ARCHITECTURE.md:\n{}",
        bad.len(),
        bad.join("\n")
    );
}

#[test]
fn a_fake_violation_is_detected() {
    let src = "//! Uses [`crate::s3`] in a comment only.\nuse crate::util::fs;\nuse crate::{db::Db,\n    s3::router};\nfn f() { crate::block::manager::x(); $crate::s3::y(); }\n";
    let v = violations("table/fake.rs", src);
    assert_eq!(
        v,
        vec![
            "table/fake.rs:3: use crate::{db::Db, (`table` may not use `s3`)".to_string(),
            "table/fake.rs:5: fn f() { crate::block::manager::x(); $crate::s3::y(); } (`table` may not use `block`)"
                .to_string(),
        ]
    );
    assert_eq!(
        violations(
            "admin/keys.rs",
            "let q = crate::s3::router::parse_query(\"\");"
        )
        .len(),
        1
    );
    assert_eq!(
        violations("admin/cluster.rs", "use crate::s3::router;").len(),
        1
    );
    assert_eq!(
        violations("admin/cluster.rs", "use crate::net::NodeId;").len(),
        1
    );
}

#[test]
fn a_fake_file_cycle_is_detected() {
    let siblings: BTreeSet<String> = ["manager", "resync", "rc"].map(String::from).into();
    let manager = "use super::resync::Queue;\nuse super::{rc::Rc, BlockError};\n#[cfg(test)]\nmod tests {\n    use super::*;\n}\n";
    let resync = "use crate::block::manager::BlockManager;\n";
    let mut graph = BTreeMap::new();
    graph.insert("manager".into(), sibling_uses("block", manager, &siblings));
    graph.insert("resync".into(), sibling_uses("block", resync, &siblings));
    graph.insert("rc".into(), BTreeSet::new());
    assert_eq!(graph["manager"], ["rc", "resync"].map(String::from).into());
    assert_eq!(
        find_cycle(&graph).as_deref(),
        Some("manager → resync → manager")
    );
    graph.insert("resync".into(), BTreeSet::new());
    assert_eq!(find_cycle(&graph), None);
}

#[test]
fn every_layer_may_use_the_test_support_and_it_may_use_every_layer() {
    assert!(violations("util/fs.rs", "use crate::test_support::wait_until;").is_empty());
    assert!(violations("test_support.rs", "use crate::server::Node;").is_empty());
    // The exemption is for the test-only module, not for what it uses.
    assert_eq!(
        violations("util/fs.rs", "use crate::server::Node;").len(),
        1
    );
}
