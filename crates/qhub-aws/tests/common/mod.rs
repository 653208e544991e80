//! Helpers shared by the moto test files: the config, the SDK pointed at moto, the census of
//! tagged resources taken straight from moto, and the engine settings.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use qhub_core::Config;
use qhub_core::config::CiKind;
use qhub_core::config::init::{InitOptions, render};
use qhub_core::config::provider::ProviderKind;
use qhub_core::engine::{Engine, EngineOptions};
use qhub_core::provider::{Ownership, Provider};

/// The default AWS config `qhub init` writes for `project`.
pub fn aws_config(project: &str) -> Config {
    render(&InitOptions {
        ci: CiKind::None,
        ..InitOptions::new(
            ProviderKind::Aws,
            project,
            "conform.example.com",
            "0123456789abcdef",
        )
    })
    .expect("render")
}

/// An SDK config for `endpoint` (moto itself, never the fault proxy, for a census).
pub async fn sdk(endpoint: &str) -> aws_config::SdkConfig {
    qhub_tests::moto::sdk(endpoint).await
}

/// The census after deploying the default config: one of everything.
pub fn one_of_everything() -> BTreeMap<String, usize> {
    BTreeMap::from([
        ("efs".to_string(), 1),
        ("efs_mount_target".to_string(), 2),
        ("eks_cluster".to_string(), 1),
        ("iam_role".to_string(), 4),
        ("internet_gateway".to_string(), 1),
        ("node_group".to_string(), 3),
        ("route_table".to_string(), 1),
        ("security_group".to_string(), 1),
        ("subnet".to_string(), 2),
        ("vpc".to_string(), 1),
    ])
}

/// The census on bare moto, which has no EKS add-ons (and so no Pod Identity): the provider
/// leaves out the add-ons and the two Pod Identity roles. Only tests that reach moto without
/// the rules layer (which serves add-ons) see this.
pub fn one_of_everything_on_bare_moto() -> BTreeMap<String, usize> {
    let mut m = one_of_everything();
    m.insert("iam_role".to_string(), 2);
    m
}

/// Counts our tagged resources straight from moto through the SDK, not through the provider.
pub async fn census(sdk: &aws_config::SdkConfig, o: &Ownership) -> BTreeMap<String, usize> {
    qhub_tests::moto::census(sdk, o).await.owned_by_kind()
}

/// An engine with deadlines generous enough for moto on a busy machine.
pub fn engine(p: Arc<dyn Provider>) -> Engine {
    Engine::new(
        p,
        EngineOptions {
            min_deadline: Duration::from_secs(120),
            observe_deadline: Duration::from_secs(60),
            ..EngineOptions::default()
        },
    )
}
