//! The layer order of `docs/architecture.md`, checked: a module of `src/` may
//! use only modules of a lower layer. Data flows one way (sources → log →
//! materializer → lake), and the simulator shares nothing with the client it
//! tests.

use std::collections::BTreeSet;
use std::path::Path;

/// Top-level modules by layer, lowest first. Same-layer modules must not use
/// each other.
const LAYERS: &[&[&str]] = &[
    &["time", "data_dir", "progress"],
    &["binance", "schema"],
    &["event"],
    &["eventlog"],
    &["ledger", "lake"],
    &["sources", "sim"],
    &["materialize"],
    &["audit", "orchestrate"],
    &["cli"],
];

fn layer(module: &str) -> usize {
    LAYERS
        .iter()
        .position(|l| l.contains(&module))
        .unwrap_or_else(|| panic!("module `{module}` is in no layer of LAYERS (tests/layers.rs)"))
}

/// The top-level modules a source file names through `crate::`, including
/// grouped imports (`use crate::{a::X, b::Y}`).
fn used_modules(text: &str) -> BTreeSet<String> {
    let mut used = BTreeSet::new();
    for (i, _) in text.match_indices("crate::") {
        let rest = &text[i + "crate::".len()..];
        let names: Vec<&str> = match rest.strip_prefix('{') {
            Some(group) => group[..group.find('}').unwrap_or(group.len())]
                .split(',')
                .collect(),
            None => vec![rest],
        };
        for name in names {
            let module: String = name
                .trim_start()
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !module.is_empty() {
                used.insert(module);
            }
        }
    }
    used
}

fn files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn no_module_uses_one_of_its_own_layer_or_above() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut all = Vec::new();
    files(&src, &mut all);
    let mut wrong = Vec::new();
    for path in all {
        let relative = path.strip_prefix(&src).unwrap();
        let top = relative.components().next().unwrap().as_os_str();
        let module = top.to_string_lossy().trim_end_matches(".rs").to_string();
        if module == "lib" || module == "main" {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for used in used_modules(&text) {
            if used != module && layer(&used) >= layer(&module) {
                wrong.push(format!("{} uses crate::{used}", relative.display()));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports against the layer order:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_reader_of_imports_sees_grouped_ones() {
    let used =
        used_modules("use crate::{event::Record, ledger::Ledger};\nuse crate::time::HOUR_MS;");
    assert_eq!(
        used.into_iter().collect::<Vec<_>>(),
        ["event", "ledger", "time"]
    );
}
