//! Dependencies point one way (ARCHITECTURE.md): data, nn and optim below rules; rules below the
//! configuration; that below train; train below protocol and bench; protocol below report; the
//! CLI on top. This test reads every library source file and checks each `crate::MODULE` it
//! names against that order, so an import cycle cannot come back unnoticed.

use std::path::Path;

/// Each top-level module's layer (a module may use modules of lower layers only, and its own).
const LAYERS: &[(&str, u32)] = &[
    ("rng", 0),
    ("hash", 0),
    ("nonfinite", 0),
    ("safetensors", 0),
    ("picture", 0),
    ("limits", 0),
    ("memory", 0),
    ("linalg", 1),
    ("env", 2),
    ("data", 2),
    ("error", 3),
    ("nn", 2),
    ("optim", 2),
    ("rules", 3),
    ("config", 4),
    ("train", 5),
    ("protocol", 6),
    ("bench", 6),
    ("report", 7),
];

fn layer(m: &str) -> u32 {
    LAYERS.iter().find(|(n, _)| *n == m).unwrap_or_else(|| panic!("module '{m}' has no layer in tests/layering.rs")).1
}

fn files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn modules_depend_only_on_lower_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut all = Vec::new();
    files(&src, &mut all);
    let mut bad = Vec::new();
    for f in all {
        let rel = f.strip_prefix(&src).unwrap();
        let top = rel.components().next().unwrap().as_os_str().to_string_lossy().trim_end_matches(".rs").to_string();
        if top == "bin" || top == "lib" {
            continue;
        }
        let me = layer(&top);
        let text = std::fs::read_to_string(&f).unwrap();
        for (i, _) in text.match_indices("crate::") {
            if text[..i].ends_with('$') {
                continue; // `$crate::` in a macro: the user's crate path
            }
            let mut name: String = text[i + 7..].chars().take_while(|c| c.is_ascii_lowercase() || *c == '_').collect();
            if name == "settings" {
                name = "rules".into(); // `crate::settings!`: the macro rules exports
            }
            if name == "wide_fn" {
                name = "linalg".into(); // `crate::wide_fn!`: the macro linalg exports
            }
            if name.is_empty() || name == top {
                continue;
            }
            if layer(&name) > me || (layer(&name) == me && name != top) {
                bad.push(format!("{}: {top} (layer {me}) uses {name} (layer {})", rel.display(), layer(&name)));
            }
        }
    }
    bad.sort();
    bad.dedup();
    assert!(bad.is_empty(), "imports against the layering:\n{}", bad.join("\n"));
}
