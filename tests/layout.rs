//! The crate's layers, lowest first: a module may use only modules below
//! it. Read from the source (`crate::name` in code, comments left out), so
//! an import that goes up a layer, or back to a module that uses the
//! importer, fails here before it is merged. See docs/design.md.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

/// Every module of src/, lowest layer first: the FFI boundary; plain data
/// structures and process-wide state; the engine a child's threads share;
/// the connection state machine; the worker and listener loops; the child
/// and parent processes; the entry points httpd calls.
const LAYERS: &[&str] = &[
    "ffi", "config", "head", "timers", "budget", "poller", "queue", "cpu", "suspend", "balance",
    "process", "engine", "connection", "worker", "listener", "child", "parent", "status", "entry",
];

/// The top-level module a source file belongs to: src/x.rs and src/x/*.rs
/// are module x.
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (name != "lib").then(|| name.to_owned())
}

/// The modules a file's code names as `crate::name`.
fn uses(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            let name: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            if !name.is_empty() {
                found.push(name);
            }
        }
        // `use crate::{a, b}`
        if let Some(at) = code.find("crate::{") {
            let inner = &code[at + "crate::{".len()..];
            let inner = inner.split('}').next().unwrap_or("");
            for part in inner.split(',') {
                let name: String = part.trim().chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                if !name.is_empty() {
                    found.push(name);
                }
            }
        }
    }
    found
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in fs::read_dir(dir).expect("read src") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Module -> the modules it uses, and where.
fn graph() -> BTreeMap<String, BTreeMap<String, String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut g: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for file in files {
        let Some(module) = module_of(&src, &file) else { continue };
        let text = fs::read_to_string(&file).expect("read source");
        let entry = g.entry(module.clone()).or_default();
        for used in uses(&text) {
            if used != module {
                entry.entry(used).or_insert_with(|| file.strip_prefix(&src).unwrap().display().to_string());
            }
        }
    }
    g
}

#[test]
fn every_module_has_a_layer() {
    let g = graph();
    let missing: Vec<_> = g.keys().filter(|m| !LAYERS.contains(&m.as_str())).collect();
    assert!(missing.is_empty(), "modules missing from LAYERS in tests/layout.rs: {missing:?}");
    let gone: Vec<_> = LAYERS.iter().filter(|m| !g.contains_key(**m)).collect();
    assert!(gone.is_empty(), "LAYERS names modules that are not in src/: {gone:?}");
}

#[test]
fn no_module_uses_one_above_it() {
    let rank = |m: &str| LAYERS.iter().position(|l| *l == m);
    let mut upward = Vec::new();
    for (module, used) in graph() {
        let Some(mine) = rank(&module) else { continue };
        for (other, file) in used {
            match rank(&other) {
                Some(theirs) if theirs < mine => {}
                _ => upward.push(format!("{file}: {module} uses {other}")),
            }
        }
    }
    assert!(upward.is_empty(), "imports that go up a layer (or to an unknown module):\n{}", upward.join("\n"));
}

#[test]
fn unsafe_only_at_the_boundary() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut found = Vec::new();
    for file in files {
        let rel = file.strip_prefix(&src).unwrap();
        if rel.starts_with("ffi") || rel == Path::new("entry.rs") {
            continue;
        }
        let text = fs::read_to_string(&file).expect("read source");
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            if code.split(|c: char| !c.is_ascii_alphanumeric() && c != '_').any(|w| w == "unsafe") {
                found.push(format!("{}:{}: {}", rel.display(), n + 1, line.trim()));
            }
        }
    }
    assert!(found.is_empty(), "unsafe outside src/ffi/ and src/entry.rs:\n{}", found.join("\n"));
}
