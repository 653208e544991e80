//! Both stages on AWS in emulator mode: moto for the cloud, the in-memory Kubernetes API
//! (served on loopback HTTP) as the cluster, reached through the kubeconfig override — never
//! through the endpoint moto makes up for the cluster. And destroy's sweep of what Kubernetes
//! made in the cloud for a LoadBalancer Service.

mod common;

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_ec2::types::{Filter, ResourceType, Tag, TagSpecification};
use common::{aws_config, census, engine, one_of_everything, sdk};
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, PostParams};
use qhub_aws::{ApiStats, AwsOptions, AwsProvider};
use qhub_core::engine::StageFilter;
use qhub_core::events::NoEvents;
use qhub_core::provider::{Ownership, Provider};
use qhub_sandbox::kube_api::KubeApi;
use qhub_tests::fault_proxy::{FaultPlan, FaultProxy};
use qhub_tests::moto::Moto;
use tokio_util::sync::CancellationToken;

const CLUSTER_TAG: &str = "kubernetes.io/cluster/lb-dev";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn both_stages_through_a_kubeconfig_override_and_destroy_sweeps_load_balancers() {
    let moto = Moto::start();
    // Through the rules layer, which serves EKS add-ons and Pod Identity as EKS does.
    let proxy = FaultProxy::in_front_of(&moto, FaultPlan::none())
        .await
        .expect("proxy");
    let api = KubeApi::new();
    let server = api.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
    // Keycloak "runs" in the cluster: qhub configures it through a port-forward.
    let keycloak = qhub_sandbox::keycloak_api::KeycloakApi::default();
    let _keycloak_server = keycloak.run_in_cluster(&api, "dev").await.unwrap();
    // So does conda-store: qhub registers the config's environments through a port-forward.
    let _conda_store = qhub_sandbox::conda_store_api::run_in_cluster(&api, "dev")
        .await
        .expect("conda-store emulator");
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, server.kubeconfig()).unwrap();
    let config = aws_config("lb");
    let o = Ownership::of(&config);
    let provider = |stats: Arc<ApiStats>| -> Arc<dyn Provider> {
        Arc::new(
            AwsProvider::new(
                &config,
                AwsOptions {
                    endpoint: Some(proxy.endpoint()),
                    credentials: Some(("testing".into(), "testing".into())),
                    stats: Some(stats),
                    poll_interval: Some(Duration::from_millis(10)),
                    kubeconfig: Some(kubeconfig.clone()),
                    ..AwsOptions::default()
                },
            )
            .unwrap(),
        )
    };
    let run = |p: Arc<dyn Provider>, destroy: bool| {
        let config = config.clone();
        let o = o.clone();
        async move {
            let e = engine(p);
            let sink = Arc::new(NoEvents);
            let cancel = CancellationToken::new();
            let _ = &o;
            if destroy {
                e.destroy(&config, StageFilter::All, sink, cancel).await
            } else {
                e.deploy(&config, StageFilter::All, sink, cancel).await
            }
            .expect("plan")
        }
    };

    // Deploy: both stages, the Kubernetes one through the override.
    let p = provider(Arc::default());
    assert!(p.capabilities().cluster_access);
    let (plan, report) = run(p, false).await;
    assert!(report.succeeded(), "deploy: {report:?}");
    assert!(
        plan.changes
            .iter()
            .any(|c| c.stage == qhub_core::plan::Stage::Kubernetes),
        "the plan has a Kubernetes stage"
    );
    let sdk = sdk(&moto.endpoint()).await;
    assert_eq!(census(&sdk, &o).await, one_of_everything());
    let objects = api.objects();
    let has = |kind: &str, name: &str| {
        objects
            .iter()
            .any(|v| v["kind"] == kind && v["metadata"]["name"] == name)
    };
    assert!(has("Namespace", "dev"), "namespace dev in {objects:#?}");
    // Every Pod Identity association names a service account that exists: the autoscaler's
    // is the one the Kubernetes stage rendered (the EBS CSI add-on makes its own in
    // kube-system, outside this API).
    let rules = proxy.rules();
    let associations: Vec<(String, String)> = rules
        .addons
        .associations
        .values()
        .map(|a| (a.namespace.clone(), a.service_account.clone()))
        .collect();
    assert_eq!(associations.len(), 2, "{associations:?}");
    for (ns, sa) in associations.iter().filter(|(ns, _)| ns != "kube-system") {
        assert!(
            objects.iter().any(|v| v["kind"] == "ServiceAccount"
                && v["metadata"]["name"] == sa.as_str()
                && v["metadata"]["namespace"] == ns.as_str()),
            "no ServiceAccount {ns}/{sa} rendered for its Pod Identity association"
        );
        let deployment = objects
            .iter()
            .find(|v| {
                v["kind"] == "Deployment"
                    && v["spec"]["template"]["spec"]["serviceAccountName"] == sa.as_str()
            })
            .unwrap_or_else(|| panic!("no Deployment runs as {ns}/{sa}"));
        assert_eq!(deployment["metadata"]["namespace"], ns.as_str());
    }
    assert!(
        associations.contains(&(
            "kube-system".to_string(),
            "ebs-csi-controller-sa".to_string()
        )),
        "{associations:?}"
    );
    assert!(has("Deployment", "qhub-welcome"));
    // Keycloak was configured through a port-forward (no QHUB_KEYCLOAK_URL, no DNS).
    assert!(keycloak.group_names("qhub").contains(&"admin".to_string()));
    let keycloak_writes = keycloak.counts().mutating;

    // A second deploy changes nothing, in the cloud or in the cluster.
    let stats = Arc::new(ApiStats::default());
    let writes = api.mutations();
    let (plan, report) = run(provider(stats.clone()), false).await;
    assert!(report.succeeded(), "no-op deploy: {report:?}");
    assert!(plan.changes.is_empty(), "{plan:?}");
    assert!(plan.unchanged > 15, "{plan:?}");
    assert_eq!(stats.mutating(), 0, "{:?}", stats.by_operation());
    assert_eq!(keycloak.counts().mutating, keycloak_writes);
    // The deploy lease is taken and released: two writes, nothing else.
    assert!(
        api.mutations() - writes <= 2,
        "{} writes",
        api.mutations() - writes
    );

    // What a LoadBalancer Service leaves: the Service in the cluster, and what the cloud
    // controller made for it in our VPC, tagged with the cluster's tag (not ours).
    let client = api.client();
    let svc: Service = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "ingress", "namespace": "dev"},
        "spec": {"type": "LoadBalancer", "ports": [{"port": 443}], "selector": {"app": "x"}},
    }))
    .unwrap();
    Api::<Service>::namespaced(client.clone(), "dev")
        .create(&PostParams::default(), &svc)
        .await
        .unwrap();
    let ec2 = aws_sdk_ec2::Client::new(&sdk);
    let by_tag = |k: &str, v: &str| Filter::builder().name(format!("tag:{k}")).values(v).build();
    let vpc = ec2
        .describe_vpcs()
        .filters(by_tag("Name", "lb-dev"))
        .send()
        .await
        .unwrap()
        .vpcs()[0]
        .vpc_id()
        .unwrap()
        .to_string();
    let subnets: Vec<String> = ec2
        .describe_subnets()
        .filters(Filter::builder().name("vpc-id").values(&vpc).build())
        .send()
        .await
        .unwrap()
        .subnets()
        .iter()
        .filter_map(|s| s.subnet_id().map(str::to_string))
        .collect();
    let cluster_tag = Tag::builder().key(CLUSTER_TAG).value("owned").build();
    let sg = ec2
        .create_security_group()
        .group_name("k8s-elb-a1b2c3")
        .description("Security group for Kubernetes ELB")
        .vpc_id(&vpc)
        .tag_specifications(
            TagSpecification::builder()
                .resource_type(ResourceType::SecurityGroup)
                .tags(cluster_tag.clone())
                .build(),
        )
        .send()
        .await
        .unwrap()
        .group_id()
        .unwrap()
        .to_string();
    let elb = aws_sdk_elasticloadbalancing::Client::new(&sdk);
    elb.create_load_balancer()
        .load_balancer_name("a1b2c3")
        .set_subnets(Some(subnets.clone()))
        .security_groups(&sg)
        .listeners(
            aws_sdk_elasticloadbalancing::types::Listener::builder()
                .protocol("TCP")
                .load_balancer_port(443)
                .instance_port(30443)
                .build()
                .unwrap(),
        )
        .tags(
            aws_sdk_elasticloadbalancing::types::Tag::builder()
                .key(CLUSTER_TAG)
                .value("owned")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    // Someone else's load balancer in another VPC is left alone.
    let elbv2 = aws_sdk_elasticloadbalancingv2::Client::new(&sdk);
    let v2_tag = aws_sdk_elasticloadbalancingv2::types::Tag::builder()
        .key(CLUSTER_TAG)
        .value("owned")
        .build();
    let nlb = elbv2
        .create_load_balancer()
        .name("k8s-dev-ingress")
        .r#type(aws_sdk_elasticloadbalancingv2::types::LoadBalancerTypeEnum::Network)
        .set_subnets(Some(subnets))
        .tags(v2_tag.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(nlb.load_balancers().len(), 1);
    elbv2
        .create_target_group()
        .name("k8s-dev-ingress-tg")
        .protocol(aws_sdk_elasticloadbalancingv2::types::ProtocolEnum::Tcp)
        .port(30443)
        .vpc_id(&vpc)
        .tags(v2_tag)
        .send()
        .await
        .unwrap();

    // Destroy: the Service goes through the cluster, then the sweep, then the network.
    let (_, report) = run(provider(Arc::default()), true).await;
    assert!(report.succeeded(), "destroy: {report:?}");
    let services = Api::<Service>::all(api.client())
        .list(&Default::default())
        .await
        .unwrap();
    assert!(
        services
            .items
            .iter()
            .all(|s| s.metadata.name.as_deref() != Some("ingress")),
        "the LoadBalancer Service was deleted"
    );
    let classic = elb.describe_load_balancers().send().await.unwrap();
    assert!(
        classic.load_balancer_descriptions().is_empty(),
        "{classic:?}"
    );
    let v2 = elbv2.describe_load_balancers().send().await.unwrap();
    assert!(v2.load_balancers().is_empty(), "{v2:?}");
    let groups = elbv2.describe_target_groups().send().await.unwrap();
    assert!(groups.target_groups().is_empty(), "{groups:?}");
    let left = ec2
        .describe_security_groups()
        .filters(Filter::builder().name("group-id").values(&sg).build())
        .send()
        .await
        .map(|r| r.security_groups().len())
        .unwrap_or(0);
    assert_eq!(left, 0, "the k8s-elb security group was swept");
    assert!(
        census(&sdk, &o).await.is_empty(),
        "{:?}",
        census(&sdk, &o).await
    );
}
