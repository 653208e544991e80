//! The test suite gives the same answer on every machine and every run: moto is one pinned
//! version, property tests are seeded and keep their failures, and no test kills or interrupts
//! a process on a timer (it waits for an event the process reports instead).

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every `.rs` file under `dir`, recursively.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n != "target") {
                rust_files(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn workspace_sources() -> Vec<PathBuf> {
    let mut files = Vec::new();
    rust_files(&root().join("crates"), &mut files);
    rust_files(&root().join("tests"), &mut files);
    files
}

#[test]
fn moto_is_pinned_to_one_version() {
    let script = read(&root().join("scripts/test"));
    let version = script
        .lines()
        .find_map(|l| l.trim().strip_prefix("MOTO_VERSION="))
        .expect("scripts/test sets MOTO_VERSION");
    let parts: Vec<&str> = version.split('.').collect();
    assert!(
        parts.len() == 3
            && parts
                .iter()
                .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())),
        "MOTO_VERSION={version} is not one exact X.Y.Z release"
    );
    assert!(
        script.contains("pip install -q \"moto[server]==$MOTO_VERSION\""),
        "scripts/test installs moto[server]==$MOTO_VERSION"
    );
    assert!(
        !script.contains("'moto[server]'"),
        "scripts/test still installs an unpinned moto"
    );
    // The install runs when the installed version differs, not only when moto is missing.
    assert!(
        script.contains("!= \"$MOTO_VERSION\""),
        "scripts/test reinstalls moto when another version is installed"
    );
    // The moto these tests run, when scripts/test (or the developer) named one, is that version.
    if let Ok(server) = std::env::var("QHUB_MOTO_SERVER") {
        let python = Path::new(&server).with_file_name("python");
        if python.exists() {
            let out = std::process::Command::new(&python)
                .args([
                    "-c",
                    "import importlib.metadata as m; print(m.version('moto'))",
                ])
                .output()
                .expect("the moto virtualenv's python runs");
            let installed = String::from_utf8_lossy(&out.stdout).trim().to_string();
            assert_eq!(
                installed, version,
                "QHUB_MOTO_SERVER={server} is moto {installed}; scripts/test pins {version}"
            );
        }
    }
}

#[test]
fn property_tests_are_seeded_and_keep_their_failures() {
    use proptest::test_runner::RngSeed;
    let config = qhub_tests::proptest_config(16);
    if std::env::var_os("PROPTEST_RNG_SEED").is_none() {
        assert_eq!(config.rng_seed, RngSeed::Fixed(qhub_tests::PROPTEST_SEED));
    }
    assert!(
        config.failure_persistence.is_some(),
        "failing cases are written to proptest-regressions/"
    );
    // Every property test of the workspace takes that configuration.
    for file in workspace_sources() {
        let text = read(&file);
        if text.contains("proptest! {") {
            assert!(
                text.contains("qhub_tests::proptest_config("),
                "{}: its property tests must use qhub_tests::proptest_config",
                file.display()
            );
        }
    }
}

#[test]
fn no_test_kills_or_interrupts_on_a_timer() {
    // A kill or signal whose moment is set by a sleep lands at a different point of the run
    // on a loaded machine: wait for an event the process reports instead.
    const WINDOW: usize = 12;
    let mut offenders = Vec::new();
    for file in workspace_sources() {
        let path = file.to_string_lossy();
        if !(path.contains("/tests/") || path.contains("/benches/"))
            || path.ends_with("reproducible.rs")
        {
            continue;
        }
        let text = read(&file);
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let kills = line.contains(".kill()")
                || line.contains("Command::new(\"kill\")")
                || line.contains("SIGINT")
                || line.contains("SIGTERM");
            if !kills || line.trim_start().starts_with("//") {
                continue;
            }
            let start = i.saturating_sub(WINDOW);
            if lines[start..i].iter().any(|l| {
                !l.trim_start().starts_with("//")
                    && (l.contains("thread::sleep(") || l.contains("time::sleep("))
            }) {
                offenders.push(format!("{}:{}", file.display(), i + 1));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "kills or signals timed by a sleep: {offenders:?}"
    );
}
