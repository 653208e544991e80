//! The infrastructure lifecycle every cloud's CLI test runs against its emulator.

use std::process::Output;

use serde_json::Value;

use crate::common::json_stdout;

/// `qhub plan` (a cluster and its pools, the pools created with the cluster), `deploy`, a no-op
/// plan, `status` (in sync, everything ready), `destroy`, `status` (nothing left), all with
/// `--stage infrastructure`. `ok` runs `qhub` with the cloud's environment and insists on exit
/// 0. Returns how many resources the first plan created.
pub fn lifecycle(ok: &dyn Fn(&[&str]) -> Output) -> u64 {
    let plan = || -> Value {
        json_stdout(&ok(&[
            "plan",
            "--stage",
            "infrastructure",
            "--output",
            "json",
        ]))
    };
    let status = || -> Value {
        json_stdout(&ok(&[
            "--output",
            "json",
            "status",
            "--stage",
            "infrastructure",
        ]))
    };
    let first = plan();
    let creates = first["summary"]["create"].as_u64().unwrap_or(0);
    assert!(creates >= 2, "a cluster and its pools: {first:#}");
    let changes = first["changes"].as_array().expect("changes");
    assert!(
        changes.iter().skip(1).all(|c| c["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("created with"))),
        "the pools are created with the cluster, each planned once after it: {first:#}"
    );
    ok(&["deploy", "--stage", "infrastructure", "--disable-prompt"]);
    let after = plan();
    assert_eq!(after["changes"], serde_json::json!([]), "{after:#}");
    let deployed = status();
    assert_eq!(deployed["in_sync"], true, "{deployed:#}");
    let resources = deployed["resources"].as_array().expect("resources");
    assert_eq!(resources.len() as u64, creates, "{deployed:#}");
    assert!(
        resources.iter().all(|r| r["state"] == "ready"),
        "{deployed:#}"
    );
    ok(&["destroy", "--stage", "infrastructure", "--disable-prompt"]);
    let gone = status();
    assert_eq!(gone["resources"], serde_json::json!([]), "{gone:#}");
    creates
}
