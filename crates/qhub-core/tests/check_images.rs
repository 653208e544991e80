//! `scripts/check-images` reads the pinned images from `versions.rs`: its offline `--list`
//! mode names exactly the images the platform runs (the table derived from the components'
//! declarations) (the registry queries need internet access
//! and never run here). Needs `python3` (the test suite's tools already do); a missing one
//! fails the test, naming it.

use std::path::PathBuf;
use std::process::Command;

use qhub_core::kubernetes::components;

#[test]
fn check_images_lists_every_pinned_image() {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/check-images");
    let output = Command::new("python3")
        .arg(&script)
        .arg("--list")
        .output()
        .unwrap_or_else(|e| panic!("python3 is needed to run {}: {e}", script.display()));
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut listed: Vec<String> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|l| l.split('\t').nth(1).unwrap_or_default().to_string())
        .collect();
    // The table the components declare (derived from the registry), the autoscaler's
    // releases included; each pinned image in `versions.rs` is in it and nothing else.
    let mut expected: Vec<String> = components::tables::pinned_images()
        .unwrap()
        .iter()
        .map(|i| format!("{}:{}", i.repository, i.tag))
        .collect();
    listed.sort();
    expected.sort();
    assert_eq!(listed, expected);
}
