//! The proxy's module graph stays as crates/proxy/README.md draws it: each top-level module
//! imports only the layers below it, and no two source files import each other, directly or
//! around a loop. Reads the `crate::` and `super::` paths of `src/` (test modules excluded).

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// What each top-level module may import besides itself (README.md, "Module layers").
const ALLOWED: &[(&str, &[&str])] = &[
    ("server", &["front", "health", "guard", "telemetry", "sessions", "upstream", "client", "answer", "status"]),
    ("front", &["guard", "telemetry", "sessions", "upstream", "client", "answer", "status"]),
    ("health", &["answer", "status"]),
    ("guard", &["telemetry", "answer"]),
    ("telemetry", &["status"]),
    ("sessions", &["upstream", "client"]),
    ("upstream", &[]),
    ("client", &[]),
    ("answer", &[]),
    ("status", &[]),
];

/// A source file's module path: `src/upstream/stdio/conn.rs` is `upstream::stdio::conn`,
/// `src/upstream/stdio/mod.rs` is `upstream::stdio`.
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut segs: Vec<String> = rel.iter().map(|s| s.to_string_lossy().into_owned()).collect();
    if segs.last().is_some_and(|s| s == "mod") {
        segs.pop();
    }
    segs
}

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

/// The paths after each `crate::` or `super::` (a `{a, b::c}` group gives one per member),
/// made absolute. Code after `#[cfg(test)]` is left out: tests are not part of the layers.
fn references(text: &str, module: &[String]) -> Vec<Vec<String>> {
    let code = text.split("#[cfg(test)]").next().unwrap_or("");
    let mut out = Vec::new();
    for (prefix, base) in [("crate::", Vec::new()), ("super::", parent(module))] {
        let mut rest = code;
        while let Some(at) = rest.find(prefix) {
            let boundary = rest[..at].chars().last().is_none_or(|c| !(c.is_alphanumeric() || c == '_' || c == ':'));
            rest = &rest[at + prefix.len()..];
            if !boundary {
                continue;
            }
            let path: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':').collect();
            let head: Vec<String> = path.split("::").filter(|s| !s.is_empty()).map(str::to_owned).collect();
            let after = &rest[path.len()..];
            if after.starts_with('{') {
                let group = &after[1..after.find('}').unwrap_or(after.len())];
                for member in group.split(',') {
                    let member: Vec<String> =
                        member.trim().split("::").filter(|s| !s.is_empty()).map(str::to_owned).collect();
                    out.push([base.clone(), head.clone(), member].concat());
                }
            } else {
                out.push([base.clone(), head].concat());
            }
        }
    }
    out
}

/// `super` of `a::b` (file `a/b.rs` or `a/b/mod.rs`) is `a`.
fn parent(module: &[String]) -> Vec<String> {
    module[..module.len().saturating_sub(1)].to_vec()
}

#[test]
fn modules_import_only_the_layers_below_them_and_never_in_a_loop() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let modules: BTreeSet<Vec<String>> = files.iter().map(|f| module_of(&src, f)).collect();
    let dir_modules: BTreeSet<Vec<String>> =
        files.iter().filter(|f| f.ends_with("mod.rs")).map(|f| module_of(&src, f)).collect();
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();

    let mut edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    let mut wrong_layer = Vec::new();
    for file in &files {
        let from = module_of(&src, file);
        if from.is_empty() || from == ["lib"] {
            continue; // the crate root declares every module
        }
        let layer = from[0].as_str();
        let Some(may) = allowed.get(layer) else {
            panic!("{} is in no layer: add `{layer}` to ALLOWED and to README.md", file.display());
        };
        let text = std::fs::read_to_string(file).unwrap();
        for path in references(&text, &from) {
            // The longest prefix that is a module of this crate is what is imported.
            let Some(to) = (1..=path.len()).rev().map(|n| path[..n].to_vec()).find(|p| modules.contains(p)) else {
                continue;
            };
            if to[0] != layer && !may.contains(&to[0].as_str()) {
                wrong_layer.push(format!("{} imports {}", from.join("::"), to.join("::")));
            }
            // A file may use what its own directory module defines (`super::Guard`): that
            // module and its files are one unit. Any other edge counts.
            if !from.starts_with(&to) {
                edges.entry(from.clone()).or_default().insert(to);
            }
        }
    }
    // A directory module stands for its files (it re-exports them).
    for dir in &dir_modules {
        for m in &modules {
            if m.len() == dir.len() + 1 && m.starts_with(dir) {
                edges.entry(dir.clone()).or_default().insert(m.clone());
            }
        }
    }
    assert!(wrong_layer.is_empty(), "imports against the layers of README.md:\n{}", wrong_layer.join("\n"));
    if let Some(cycle) = find_cycle(&edges) {
        let names: Vec<String> = cycle.iter().map(|m| m.join("::")).collect();
        panic!("modules import each other: {}", names.join(" -> "));
    }
    // The check reads what it should: the layers it knows are all there.
    assert!(edges.contains_key(&vec!["front".to_owned(), "dispatch".to_owned()]));
    assert!(edges.values().flatten().any(|m| m == &["upstream", "stdio", "conn"]));
}

/// A loop in the graph, as the path that closes it.
fn find_cycle(edges: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>) -> Option<Vec<Vec<String>>> {
    fn visit(
        node: &Vec<String>,
        edges: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        done: &mut BTreeSet<Vec<String>>,
        path: &mut Vec<Vec<String>>,
    ) -> Option<Vec<Vec<String>>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.clone());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.clone());
        for next in edges.get(node).into_iter().flatten() {
            if let Some(c) = visit(next, edges, done, path) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(node.clone());
        None
    }
    let mut done = BTreeSet::new();
    edges.keys().find_map(|n| visit(n, edges, &mut done, &mut Vec::new()))
}

#[test]
fn a_loop_is_found() {
    let m = |s: &str| s.split("::").map(str::to_owned).collect::<Vec<_>>();
    let mut edges = BTreeMap::new();
    edges.insert(m("a::x"), BTreeSet::from([m("b")]));
    edges.insert(m("b"), BTreeSet::from([m("c::y")]));
    assert_eq!(find_cycle(&edges), None);
    edges.insert(m("c::y"), BTreeSet::from([m("a::x")]));
    assert_eq!(find_cycle(&edges), Some(vec![m("a::x"), m("b"), m("c::y"), m("a::x")]));
    let refs = references("use crate::front::{edge, call::Call};\nuse super::conn::X;", &m("upstream::stdio::slot"));
    assert_eq!(refs, vec![m("front::edge"), m("front::call::Call"), m("upstream::stdio::conn::X")]);
}
