//! A test that can skip itself will, on the one machine where it matters. Every way a test of
//! this workspace can end without checking (an `#[ignore]`, an early `return` after a
//! "not found"/"skipped" message) must be named in `tests/skip-allowlist.txt` with its reason;
//! anything else fails here, so CI cannot go green on checks that did not run.

use std::path::{Path, PathBuf};

/// Lines that mark a test (or a check inside one) as not run.
const MARKERS: [&str; 2] = ["#[ignore", "NOTICE:"];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Rust files under `dir`, skipping build output and tool directories.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if path.is_dir() {
            if !matches!(name.as_ref(), "target" | ".git" | ".venv" | "node_modules") {
                rust_files(&path, out);
            }
        } else if name.ends_with(".rs") {
            out.push(path);
        }
    }
}

/// `path:marker` entries of the allow-list (a `#` starts a comment; every entry needs a reason
/// after ` -- `).
fn allowlist() -> Vec<(String, String)> {
    let path = workspace().join("tests/skip-allowlist.txt");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (entry, reason) = l
                .split_once(" -- ")
                .unwrap_or_else(|| panic!("allow-list entry without ` -- reason`: {l}"));
            assert!(
                !reason.trim().is_empty(),
                "allow-list entry without a reason: {l}"
            );
            let (file, marker) = entry
                .split_once(':')
                .unwrap_or_else(|| panic!("allow-list entry is not `path:marker`: {l}"));
            (file.trim().to_string(), marker.trim().to_string())
        })
        .collect()
}

#[test]
fn no_test_skips_itself_outside_the_allowlist() {
    let root = workspace();
    let mut files = Vec::new();
    for dir in ["crates", "tests", "examples"] {
        rust_files(&root.join(dir), &mut files);
    }
    assert!(files.len() > 50, "found only {} Rust files", files.len());
    let allowed = allowlist();
    let this_file = Path::new(file!()).file_name().expect("file name");
    let mut unlisted = Vec::new();
    let mut used = vec![false; allowed.len()];
    for file in &files {
        if file.file_name() == Some(this_file) {
            continue;
        }
        let rel = file
            .strip_prefix(&root)
            .unwrap_or(file)
            .to_string_lossy()
            .replace('\\', "/");
        let text = std::fs::read_to_string(file).expect("read");
        for (n, line) in text.lines().enumerate() {
            for marker in MARKERS {
                if !line.contains(marker) {
                    continue;
                }
                match allowed.iter().position(|(f, m)| *f == rel && m == marker) {
                    Some(i) => used[i] = true,
                    None => unlisted.push(format!("{rel}:{}: {}", n + 1, line.trim())),
                }
            }
        }
    }
    assert!(
        unlisted.is_empty(),
        "tests that can skip themselves, not in tests/skip-allowlist.txt (make them fail \
         loudly instead, or list them with the reason):\n{}",
        unlisted.join("\n")
    );
    let stale: Vec<_> = allowed
        .iter()
        .zip(&used)
        .filter(|(_, used)| !**used)
        .map(|((f, m), _)| format!("{f}:{m}"))
        .collect();
    assert!(
        stale.is_empty(),
        "allow-list entries that match nothing: {stale:?}"
    );
}
