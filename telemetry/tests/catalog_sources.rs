//! Every catalog entry's `source` names code that exists: `"<crate> <path>[, <path>][ / fn]
//! [(note)]"`, each path `module::…::Type::function` resolved against `<crate>/src` (a module is
//! `name.rs` or `name/mod.rs`; the type must be declared in that module's file and the function
//! defined there). A renamed or moved function fails this test until its entry follows it.

use engram_telemetry::catalog::CATALOG;
use std::path::{Path, PathBuf};

/// The module file `segments` lead to from `src`, and the segments left (items in that file).
fn resolve<'a>(src: &Path, segments: &'a [&'a str]) -> (PathBuf, &'a [&'a str]) {
    let mut dir = src.to_path_buf();
    let mut file = src.join("lib.rs");
    for (i, seg) in segments.iter().enumerate() {
        let flat = dir.join(format!("{seg}.rs"));
        let nested = dir.join(seg).join("mod.rs");
        if flat.is_file() {
            file = flat;
        } else if nested.is_file() {
            file = nested;
        } else {
            return (file, &segments[i..]);
        }
        dir = dir.join(seg);
    }
    (file, &[])
}

/// Why `path` (in `krate`) names nothing, or `None` when it resolves.
fn missing(root: &Path, krate: &str, path: &str) -> Option<String> {
    let src = root.join(krate).join("src");
    let segments: Vec<&str> = path.split("::").collect();
    let (file, items) = resolve(&src, &segments);
    let Ok(text) = std::fs::read_to_string(&file) else {
        return Some(format!("{} cannot be read", file.display()));
    };
    let declares = |kw: &str, name: &str| {
        text.lines().any(|l| {
            let mut l = l.trim_start();
            for q in ["pub(crate) ", "pub ", "const ", "async ", "unsafe "] {
                l = l.strip_prefix(q).unwrap_or(l);
            }
            l.strip_prefix(kw)
                .and_then(|r| r.strip_prefix(name))
                .is_some_and(|r| r.starts_with(|c: char| !c.is_alphanumeric() && c != '_'))
        })
    };
    let is_type = |name: &str| name.starts_with(char::is_uppercase);
    match items {
        [] => None,
        [ty] if is_type(ty) => (!["struct ", "enum ", "trait ", "type "].iter().any(|kw| declares(kw, ty)))
            .then(|| format!("{} declares no type {ty}", file.display())),
        [f] => (!declares("fn ", f)).then(|| format!("{} defines no fn {f}", file.display())),
        [ty, f] if is_type(ty) => {
            if !["struct ", "enum ", "trait "].iter().any(|kw| declares(kw, ty)) {
                Some(format!("{} declares no type {ty}", file.display()))
            } else if !declares("fn ", f) {
                Some(format!("{} defines no fn {f} (for {ty})", file.display()))
            } else {
                None
            }
        }
        _ => Some(format!("{path}: {} has no item {}", file.display(), items.join("::"))),
    }
}

#[test]
fn every_source_names_an_item_that_exists() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf();
    let mut errors = Vec::new();
    for m in CATALOG {
        let without_note = m.source.split(" (").next().unwrap();
        let (krate, paths) = without_note.split_once(' ').expect("source starts with its crate");
        assert!(["engine", "server", "telemetry"].contains(&krate), "{}: unknown crate {krate}", m.name);
        for path in paths.split(", ") {
            let mut parts = path.split(" / ");
            let first = parts.next().unwrap().trim();
            if let Some(e) = missing(&root, krate, first) {
                errors.push(format!("{}: {e}", m.name));
            }
            // `Type::a / b`: `b` is another function of the same type.
            let prefix = first.rsplit_once("::").map_or("", |(p, _)| p);
            for alt in parts {
                let alt = format!("{prefix}::{}", alt.trim());
                if let Some(e) = missing(&root, krate, &alt) {
                    errors.push(format!("{}: {e}", m.name));
                }
            }
        }
    }
    assert!(errors.is_empty(), "catalog sources that name nothing:\n{}", errors.join("\n"));
}

#[test]
fn a_stale_source_is_caught() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf();
    assert!(missing(&root, "telemetry", "health::HealthSampler::tick").is_none());
    assert!(missing(&root, "telemetry", "health::HealthSampler::steal").is_some());
    assert!(missing(&root, "server", "health::HealthSampler").is_some());
    assert!(missing(&root, "engine", "pool::WorkerLoop::steal").is_some());
}
