//! Helpers shared by the moto test files: the config, the SDK pointed at moto, the census of
//! tagged resources taken straight from moto, and the engine settings.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use qhub_core::Config;
use qhub_core::config::CiKind;
use qhub_core::config::init::{InitOptions, render};
use qhub_core::config::provider::ProviderKind;
use qhub_core::engine::{Engine, EngineOptions};
use qhub_core::provider::{Ownership, Provider};
use qhub_tests::moto::REGION;

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
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(REGION))
        .endpoint_url(endpoint)
        .credentials_provider(aws_credential_types::Credentials::new(
            "testing", "testing", None, None, "qhub",
        ))
        .load()
        .await
}

/// The census after deploying the default config: one of everything.
pub fn one_of_everything() -> BTreeMap<String, usize> {
    BTreeMap::from([
        ("efs".to_string(), 1),
        ("efs_mount_target".to_string(), 2),
        ("eks_cluster".to_string(), 1),
        ("iam_role".to_string(), 2),
        ("internet_gateway".to_string(), 1),
        ("node_group".to_string(), 3),
        ("route_table".to_string(), 1),
        ("security_group".to_string(), 1),
        ("subnet".to_string(), 2),
        ("vpc".to_string(), 1),
    ])
}

/// Counts tagged resources straight from moto through the SDK, not through the provider.
pub async fn census(sdk: &aws_config::SdkConfig, o: &Ownership) -> BTreeMap<String, usize> {
    use aws_sdk_ec2::types::Filter;
    let ec2 = aws_sdk_ec2::Client::new(sdk);
    let eks = aws_sdk_eks::Client::new(sdk);
    let iam = aws_sdk_iam::Client::new(sdk);
    let efs = aws_sdk_efs::Client::new(sdk);
    let filters: Vec<Filter> = o
        .tags()
        .into_iter()
        .map(|(k, v)| Filter::builder().name(format!("tag:{k}")).values(v).build())
        .collect();
    let mut out = BTreeMap::new();
    let mut add = |k: &str, n: usize| {
        if n > 0 {
            *out.entry(k.to_string()).or_insert(0) += n;
        }
    };
    let f = Some(filters);
    add(
        "vpc",
        ec2.describe_vpcs()
            .set_filters(f.clone())
            .send()
            .await
            .unwrap()
            .vpcs()
            .len(),
    );
    add(
        "subnet",
        ec2.describe_subnets()
            .set_filters(f.clone())
            .send()
            .await
            .unwrap()
            .subnets()
            .len(),
    );
    add(
        "internet_gateway",
        ec2.describe_internet_gateways()
            .set_filters(f.clone())
            .send()
            .await
            .unwrap()
            .internet_gateways()
            .len(),
    );
    add(
        "route_table",
        ec2.describe_route_tables()
            .set_filters(f.clone())
            .send()
            .await
            .unwrap()
            .route_tables()
            .len(),
    );
    add(
        "security_group",
        ec2.describe_security_groups()
            .set_filters(f)
            .send()
            .await
            .unwrap()
            .security_groups()
            .len(),
    );
    // Every role of the account, whatever its path: a role outside ours must count too.
    for role in iam.list_roles().send().await.unwrap().roles() {
        let tags = iam
            .list_role_tags()
            .role_name(role.role_name())
            .send()
            .await
            .unwrap();
        let tags: BTreeMap<String, String> = tags
            .tags()
            .iter()
            .map(|t| (t.key().to_string(), t.value().to_string()))
            .collect();
        if o.owns(&tags) {
            add("iam_role", 1);
        }
    }
    for name in eks.list_clusters().send().await.unwrap().clusters() {
        let c = eks.describe_cluster().name(name).send().await.unwrap();
        let tags: BTreeMap<String, String> = c
            .cluster()
            .and_then(|c| c.tags())
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .collect();
        if o.owns(&tags) {
            add("eks_cluster", 1);
        }
        for g in eks
            .list_nodegroups()
            .cluster_name(name)
            .send()
            .await
            .unwrap()
            .nodegroups()
        {
            let d = eks
                .describe_nodegroup()
                .cluster_name(name)
                .nodegroup_name(g)
                .send()
                .await
                .unwrap();
            let tags: BTreeMap<String, String> = d
                .nodegroup()
                .and_then(|g| g.tags())
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .collect();
            if o.owns(&tags) {
                add("node_group", 1);
            }
        }
    }
    for fs in efs
        .describe_file_systems()
        .send()
        .await
        .unwrap()
        .file_systems()
    {
        let tags: BTreeMap<String, String> = fs
            .tags()
            .iter()
            .map(|t| (t.key().to_string(), t.value().to_string()))
            .collect();
        if o.owns(&tags) {
            add("efs", 1);
            let mts = efs
                .describe_mount_targets()
                .file_system_id(fs.file_system_id())
                .send()
                .await
                .unwrap();
            add("efs_mount_target", mts.mount_targets().len());
        }
    }
    out
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
