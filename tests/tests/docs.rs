//! The configuration reference in `docs/` is generated from the config model; these tests keep
//! the committed file equal to what the model renders.

use std::path::PathBuf;

use qhub_core::config::{reference, schema};

fn docs_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("docs")
}

fn committed() -> String {
    let path = docs_dir().join("configuration.md");
    std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read {}: {e}; run scripts/gen-docs to generate it",
            path.display()
        )
    })
}

#[test]
fn configuration_md_is_generated_from_the_model() {
    let expected = reference::markdown();
    let actual = committed();
    if actual != expected {
        let first_difference = actual
            .lines()
            .zip(expected.lines())
            .position(|(a, e)| a != e)
            .map_or_else(
                || {
                    format!(
                        "lengths differ ({} vs {} lines)",
                        actual.lines().count(),
                        expected.lines().count()
                    )
                },
                |i| format!("first difference at line {}", i + 1),
            );
        panic!(
            "docs/configuration.md is out of date with the config model ({first_difference}); \
             run scripts/gen-docs and commit the result"
        );
    }
}

#[test]
fn every_top_level_key_has_a_heading() {
    let text = reference::markdown();
    let headings: Vec<&str> = text.lines().filter(|l| l.starts_with('#')).collect();
    let properties = schema::json_schema()["properties"]
        .as_object()
        .expect("the schema has top-level properties");
    assert!(!properties.is_empty());
    for key in properties.keys() {
        let heading = format!("## `{key}`");
        assert!(
            headings.contains(&heading.as_str()),
            "top-level key `{key}` has no `{heading}` heading in the reference"
        );
    }
}

/// Every `"QHUB_…"` string literal in the crates' sources: the variables qhub reads (build-time
/// names set by build.rs for the compiler, and examples in tests, left out).
fn qhub_variables_in_code() -> std::collections::BTreeSet<String> {
    fn walk(dir: &std::path::Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let crates = docs_dir().join("..").join("crates");
    let mut files = Vec::new();
    for krate in std::fs::read_dir(&crates).expect("crates/").flatten() {
        walk(&krate.path().join("src"), &mut files);
    }
    let mut found = std::collections::BTreeSet::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("read");
        // Unit tests at the end of a file name example secrets (`QHUB_SECRET_X`).
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        for (i, _) in code.match_indices("\"QHUB_") {
            let name: String = code[i + 1..]
                .chars()
                .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            if name.starts_with("QHUB_BUILD_") {
                continue;
            }
            found.insert(name);
        }
    }
    found
}

#[test]
fn every_qhub_variable_the_code_reads_is_documented() {
    let page = std::fs::read_to_string(docs_dir().join("environment.md")).expect("environment.md");
    let found = qhub_variables_in_code();
    assert!(found.contains("QHUB_DEPLOY_LOCK"), "{found:?}");
    let missing: Vec<&String> = found
        .iter()
        .filter(|v| {
            // `QHUB_SECRET_` is the prefix of `QHUB_SECRET_<NAME>`.
            let documented = if v.as_str() == "QHUB_SECRET_" {
                "`QHUB_SECRET_<NAME>`".to_string()
            } else {
                format!("`{v}`")
            };
            !page.contains(&documented)
        })
        .collect();
    assert!(
        missing.is_empty(),
        "docs/environment.md does not list {missing:?}"
    );
}
