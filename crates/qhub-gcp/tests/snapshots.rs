//! The desired infrastructure of `qhub init gcp`'s config, and of a GPU variant, as the plan
//! would create it (snapshots: a change to what we ask GKE for shows in review).

mod common;

use std::collections::BTreeMap;

use qhub_gcp::desired::{ServerFacts, desired};
use serde_json::{Value, json};

/// What the emulator's (and, in shape, GKE's) `getServerConfig` offers.
fn facts() -> ServerFacts {
    ServerFacts {
        default_version: "1.33.5-gke.1201000".into(),
        master_versions: vec![
            "1.34.1-gke.1431000".into(),
            "1.33.5-gke.1201000".into(),
            "1.33.4-gke.1350000".into(),
            "1.32.9-gke.1108000".into(),
        ],
        channels: BTreeMap::from([(
            "REGULAR".to_string(),
            vec![
                "1.33.5-gke.1201000".into(),
                "1.33.4-gke.1350000".into(),
                "1.32.9-gke.1108000".into(),
            ],
        )]),
        cluster_version: None,
        zones: vec![
            "us-central1-a".into(),
            "us-central1-b".into(),
            "us-central1-c".into(),
            "us-central1-f".into(),
        ],
        accelerator_zones: Some(BTreeMap::from([(
            "nvidia-tesla-t4".to_string(),
            vec![
                "us-central1-a".into(),
                "us-central1-b".into(),
                "us-central1-c".into(),
                "us-central1-f".into(),
            ],
        )])),
    }
}

fn view(config: &qhub_core::Config) -> Value {
    let resources = desired(config, Some(&facts())).expect("desired");
    Value::Array(
        resources
            .iter()
            .map(|r| {
                json!({
                    "id": r.id.to_string(),
                    "depends_on": r.depends_on.iter().map(ToString::to_string).collect::<Vec<_>>(),
                    "replace_fields": r.replace_fields,
                    "expected_seconds": r.expected_duration.as_secs(),
                    "serial_group": r.serial_group,
                    "created_with": r.created_with.as_ref().map(ToString::to_string),
                    "spec": r.spec,
                    "payload": r.payload,
                })
            })
            .collect(),
    )
}

#[test]
fn default_gcp_config() {
    insta::assert_json_snapshot!(view(&common::gcp_config("demo")));
}

#[test]
fn gpu_variant() {
    insta::assert_json_snapshot!(view(&common::gpu_config("demo")));
}

#[test]
fn desired_is_deterministic_and_names_a_missing_version() {
    let c = common::gpu_config("demo");
    assert_eq!(view(&c), view(&c));
    let mut c = common::gcp_config("demo");
    c.google_cloud_platform.as_mut().unwrap().kubernetes_version = "1.34".into();
    let e = desired(&c, Some(&facts())).unwrap_err().to_string();
    assert!(
        e.starts_with("google_cloud_platform.kubernetes_version:"),
        "{e}"
    );
    assert!(e.contains("REGULAR"), "{e}");
}
