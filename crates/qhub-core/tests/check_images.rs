//! `scripts/check-images` reads the pinned images from `versions.rs`: its offline `--list`
//! mode names exactly the images the platform runs (the registry queries need internet access
//! and never run here). Needs `python3` (the test suite's tools already do); a missing one
//! fails the test, naming it.

use std::path::PathBuf;
use std::process::Command;

use qhub_core::kubernetes::versions;

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
    let listed: Vec<String> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|l| l.split('\t').nth(1).unwrap_or_default().to_string())
        .collect();
    let mut expected: Vec<String> = versions::ALL
        .iter()
        .map(|i| format!("{}:{}", i.repository, i.tag))
        .collect();
    expected.extend(
        versions::CLUSTER_AUTOSCALER_TAGS
            .iter()
            .map(|(_, tag)| format!("{}:{tag}", versions::CLUSTER_AUTOSCALER_REPOSITORY)),
    );
    assert_eq!(listed, expected);
}
