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
