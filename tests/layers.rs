//! The structure stays honest: no import cycle between the top-level
//! modules of `src/` (folders and files), nor between the files of one
//! folder. Read from the source text: every `crate::a::b` path (in `use`
//! lines and in code, tests included) is an edge from the file that writes
//! it; in a folder's `mod.rs`, so is a path that starts with a child's name
//! (`use provider::Provider`). `mod x;` declarations are not imports.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

type Graph = BTreeMap<String, BTreeSet<String>>;

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The source without comments (line comments, doc comments, strings are
/// kept: no path we look for is written inside one).
fn code(path: &Path) -> String {
    strip_comments(&fs::read_to_string(path).unwrap())
}

fn strip_comments(text: &str) -> String {
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn ident_at(s: &str) -> String {
    s.chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect()
}

/// Every path written after `prefix` (`crate::`, `super::`), as its
/// segments; a `{...}` group becomes one path per member.
fn paths_after(code: &str, prefix: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find(prefix) {
        let before = rest[..i].chars().last();
        rest = &rest[i + prefix.len()..];
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
            continue;
        }
        out.extend(expand(rest));
    }
    out
}

/// The paths at the start of `s` (`a::b::C`, `a::{b, c::D}`, `{a, b}`).
fn expand(s: &str) -> Vec<Vec<String>> {
    if let Some(inner) = s.strip_prefix('{') {
        let mut depth = 1;
        let mut end = 0;
        for (i, c) in inner.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                _ => {}
            }
            if depth == 0 {
                end = i;
                break;
            }
        }
        let mut out = Vec::new();
        let mut depth = 0;
        let mut start = 0;
        let body = &inner[..end];
        for (i, c) in body.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    out.extend(expand(body[start..i].trim()));
                    start = i + 1;
                }
                _ => {}
            }
        }
        out.extend(expand(body[start..].trim()));
        return out;
    }
    let first = ident_at(s);
    if first.is_empty() {
        return Vec::new();
    }
    let after = &s[first.len()..];
    match after.strip_prefix("::") {
        Some(more) => {
            let tails = expand(more);
            if tails.is_empty() {
                vec![vec![first]]
            } else {
                tails
                    .into_iter()
                    .map(|mut t| {
                        t.insert(0, first.clone());
                        t
                    })
                    .collect()
            }
        }
        None => vec![vec![first]],
    }
}

/// Top-level modules: `x.rs` and `x/` under `src/` (not `lib.rs`).
fn top_modules() -> BTreeMap<String, Vec<PathBuf>> {
    let mut out = BTreeMap::new();
    for entry in fs::read_dir(src()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().to_string();
        if path.is_dir() {
            let mut files: Vec<PathBuf> = fs::read_dir(&path)
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_some_and(|e| e == "rs"))
                .collect();
            files.sort();
            assert!(
                files.iter().all(|f| f.is_file()),
                "{name}/ holds a folder: the check reads one level"
            );
            out.insert(name, files);
        } else if path.extension().is_some_and(|e| e == "rs") && name != "lib" {
            out.insert(name, vec![path]);
        }
    }
    out
}

/// A cycle in `g`, if any, as the nodes along it.
fn find_cycle(g: &Graph) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        g: &Graph,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(n.to_string(), 1);
        stack.push(n.to_string());
        for m in g.get(n).into_iter().flatten() {
            match state.get(m.as_str()).copied().unwrap_or(0) {
                1 => {
                    let at = stack.iter().position(|x| x == m).unwrap();
                    let mut cycle = stack[at..].to_vec();
                    cycle.push(m.clone());
                    return Some(cycle);
                }
                0 => {
                    if let Some(c) = visit(m, g, state, stack) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(n.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for n in g.keys() {
        if state.get(n.as_str()).copied().unwrap_or(0) == 0 {
            let mut stack = Vec::new();
            if let Some(c) = visit(n, g, &mut state, &mut stack) {
                return Some(c);
            }
        }
    }
    None
}

fn top_level_graph() -> Graph {
    let modules = top_modules();
    let mut g = Graph::new();
    for (name, files) in &modules {
        let edges = g.entry(name.clone()).or_default();
        for f in files {
            for p in paths_after(&code(f), "crate::") {
                let to = &p[0];
                assert!(
                    modules.contains_key(to),
                    "{}: crate::{to} is not a top-level module",
                    f.display()
                );
                if to != name {
                    edges.insert(to.clone());
                }
            }
        }
    }
    g
}

/// File edges inside one folder: `crate::<folder>::<file>` and
/// `super::<file>` name a sibling; `crate::<folder>::<Item>` and
/// `super::<Item>` name `mod.rs`; in `mod.rs`, a path starting with a
/// child's name names that child.
fn folder_graph(folder: &str, files: &[PathBuf]) -> Graph {
    let stem = |p: &Path| p.file_stem().unwrap().to_string_lossy().to_string();
    let children: BTreeSet<String> = files.iter().map(|f| stem(f)).collect();
    let mut g = Graph::new();
    for f in files {
        let me = stem(f);
        let text = code(f);
        let mut targets = Vec::new();
        for p in paths_after(&text, "crate::") {
            if p[0] == folder {
                targets.push(p.get(1).cloned().unwrap_or_default());
            }
        }
        if me != "mod" {
            for p in paths_after(&text, "super::") {
                targets.push(p[0].clone());
            }
        } else {
            for line in text.lines() {
                let l = line.trim_start();
                let l = l.strip_prefix("pub ").unwrap_or(l);
                if let Some(rest) = l.strip_prefix("use ") {
                    for p in expand(rest.trim_start_matches("self::")) {
                        targets.push(p[0].clone());
                    }
                }
            }
            for c in &children {
                if text.contains(&format!(" {c}::")) || text.contains(&format!("({c}::")) {
                    targets.push(c.clone());
                }
            }
        }
        let edges = g.entry(me.clone()).or_default();
        for t in targets {
            let to = if children.contains(&t) {
                t
            } else {
                "mod".to_string()
            };
            if to != me && children.contains(&to) {
                edges.insert(to);
            }
        }
    }
    g
}

#[test]
fn no_cycle_between_top_level_modules() {
    let g = top_level_graph();
    assert!(g.len() >= 8, "expected the folders of src/, found {g:?}");
    if let Some(c) = find_cycle(&g) {
        panic!("import cycle between top-level modules: {}", c.join(" -> "));
    }
}

#[test]
fn no_cycle_between_the_files_of_a_folder() {
    for (folder, files) in top_modules() {
        if files.len() < 2 {
            continue;
        }
        let g = folder_graph(&folder, &files);
        if let Some(c) = find_cycle(&g) {
            panic!("import cycle in src/{folder}/: {}", c.join(" -> "));
        }
    }
}

#[test]
fn the_reader_sees_groups_and_the_check_sees_cycles() {
    let p = paths_after(
        "use crate::{a::{B, c::D}, e};\nx = crate::f::g(1);",
        "crate::",
    );
    let firsts: Vec<&str> = p.iter().map(|v| v[0].as_str()).collect();
    assert_eq!(firsts, ["a", "a", "e", "f"]);
    assert_eq!(p[1], ["a", "c", "D"]);
    assert!(
        paths_after(
            &strip_comments("//! see crate::x\nuse crate::y;"),
            "crate::"
        ) == [["y"]]
    );
    assert!(paths_after("use a_crate::x;", "crate::").is_empty());

    let mut g = Graph::new();
    g.entry("a".into()).or_default().insert("b".into());
    g.entry("b".into()).or_default().insert("c".into());
    assert_eq!(find_cycle(&g), None);
    g.entry("c".into()).or_default().insert("a".into());
    assert_eq!(
        find_cycle(&g).unwrap(),
        ["a", "b", "c", "a"].map(String::from)
    );
}

#[test]
fn the_layers_read_from_the_tree() {
    // The order lib.rs documents, bottom first: each module may use only
    // modules earlier in the list.
    let order = [
        "crypto",
        "config",
        "token",
        "authz",
        "store",
        "keys",
        "revoke",
        "introspect",
        "metrics",
        "response",
        "admin",
        "engine",
        "host",
    ];
    let g = top_level_graph();
    let known: BTreeSet<&str> = g.keys().map(String::as_str).collect();
    assert_eq!(
        known,
        order.iter().copied().collect(),
        "lib.rs and this list must name every top-level module"
    );
    for (i, m) in order.iter().enumerate() {
        for to in &g[*m] {
            let j = order.iter().position(|x| x == to).unwrap();
            assert!(j < i, "{m} uses {to}, which sits above it");
        }
    }
}
