//! `qhub-aws` against moto (`moto_server`, PyPI `moto[server]`), over loopback only.
//!
//! The moto binary comes from `$QHUB_MOTO_SERVER` or `<workspace>/.venv/bin/moto_server`
//! (`scripts/test` installs it). Without it these tests fail, loudly: they never pass silently.
//!
//! Fault injection here wraps the provider ([`Faulty`]): the process "dying" right after the
//! Nth successful `apply`, and, without a proxy, retryable errors before `observe` and `apply`.
//! The conformance harness reaches moto through the loopback fault proxy, which injects its
//! throttling, 5xx and lost answers on every API call, and gives it its EKS lifecycle: clusters
//! that stay `CREATING` for a while (a "death" during a cluster create then strikes while the
//! provider waits for it, leaving a pending cluster) and a cluster that ends `FAILED`. More
//! API-level fault runs are in `faults.rs`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod common;

use async_trait::async_trait;
use qhub_aws::desired::EKS_CLUSTER;
use qhub_aws::{ApiStats, AwsOptions, AwsProvider};
use qhub_core::Config;
use qhub_core::conformance::{self, Faults, Harness, Knobs};
use qhub_core::engine::ApplyReport;
use qhub_core::plan::{Change, Observed, Resource};
use qhub_core::provider::{
    ApplyContext, Capabilities, ClusterAccess, ClusterFacts, Facts, Ownership, Preflight,
    ProcessKilled, Provider, ProviderError,
};
use qhub_tests::fault_proxy::{EksLifecycle, FaultPlan, FaultProxy};
use qhub_tests::moto::Moto;

use common::{aws_config, census, engine, one_of_everything};

/// The provider with faults injected around it (see the module docs).
#[derive(Debug)]
struct Faulty {
    inner: AwsProvider,
    /// The proxy in front of moto, when the provider goes through one: it tells when a
    /// CreateCluster went through.
    proxy: Option<Arc<FaultProxy>>,
    faults: Faults,
    rng: Mutex<u64>,
    applied: AtomicU64,
    dead: AtomicBool,
}

impl Faulty {
    fn roll(&self) -> f64 {
        // xorshift64: reproducible from the seed, no dependency.
        let mut s = self.rng.lock().unwrap();
        *s ^= *s << 13;
        *s ^= *s >> 7;
        *s ^= *s << 17;
        (*s >> 11) as f64 / (1u64 << 53) as f64
    }

    fn before(&self, what: &str) -> Result<(), ProviderError> {
        if self.dead.load(Ordering::SeqCst) {
            return Err(ProviderError::other(ProcessKilled(format!(
                "{what}: the process is dead"
            ))));
        }
        if self.proxy.is_some() {
            // The proxy injects the rates, on every API call.
            return Ok(());
        }
        let r = self.roll();
        if r < self.faults.error_rate {
            return Err(ProviderError::Retryable {
                message: format!("{what}: injected 503"),
                retry_after: None,
            });
        }
        if r < self.faults.error_rate + self.faults.throttle_rate {
            return Err(ProviderError::throttled(
                format!("{what}: injected throttling"),
                Some(Duration::from_millis(2)),
            ));
        }
        Ok(())
    }
}

#[async_trait]
impl Provider for Faulty {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    async fn preflight(&self, config: &Config) -> Result<Preflight, ProviderError> {
        self.inner.preflight(config).await
    }
    async fn discover(&self, config: &Config) -> Result<Facts, ProviderError> {
        self.before("discover")?;
        self.inner.discover(config).await
    }
    fn desired(&self, config: &Config, facts: &Facts) -> Result<Vec<Resource>, ProviderError> {
        self.inner.desired(config, facts)
    }
    fn cluster_facts(&self, config: &Config, infra: &[Observed]) -> ClusterFacts {
        self.inner.cluster_facts(config, infra)
    }
    fn node_group_keys(&self) -> &'static [&'static str] {
        self.inner.node_group_keys()
    }
    async fn cluster_access(&self, ownership: &Ownership) -> Result<ClusterAccess, ProviderError> {
        self.inner.cluster_access(ownership).await
    }
    async fn observe(&self, ownership: &Ownership) -> Result<Vec<Observed>, ProviderError> {
        self.before("observe")?;
        self.inner.observe(ownership).await
    }
    async fn apply(&self, change: &Change, ctx: &ApplyContext) -> Result<(), ProviderError> {
        let what = format!("{} {}", change.action.symbol(), change.id);
        self.before(&what)?;
        let dies_now = self
            .faults
            .die_after
            .is_some_and(|limit| self.applied.load(Ordering::SeqCst) + 1 > limit);
        match (&self.proxy, change.id.kind.as_str()) {
            // The process dies while the provider waits for the cluster it just asked for:
            // the cluster is left CREATING.
            (Some(proxy), EKS_CLUSTER) if dies_now && self.faults.pending => {
                // Once the upstream has carried the create out, the process "dies".
                let created = || proxy.clusters().contains(&change.id.name);
                tokio::select! {
                    r = self.inner.apply(change, ctx) => r?,
                    () = async {
                        while !created() {
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                    } => {}
                }
            }
            _ => self.inner.apply(change, ctx).await?,
        }
        let n = self.applied.fetch_add(1, Ordering::SeqCst) + 1;
        if let Some(limit) = self.faults.die_after
            && n > limit
        {
            self.dead.store(true, Ordering::SeqCst);
            return Err(ProviderError::other(ProcessKilled(format!(
                "{what}: killed after it was done"
            ))));
        }
        Ok(())
    }
}

struct MotoHarness {
    moto: Moto,
    /// The proxy in front of moto (its rules, and the EKS lifecycle knobs of the conformance
    /// suite).
    proxy: Option<Arc<FaultProxy>>,
    config: Config,
    stats: Arc<ApiStats>,
}

impl MotoHarness {
    /// A harness whose providers reach moto through the loopback proxy: its AWS rules always
    /// (what real AWS refuses and moto accepts), and for the conformance suite its EKS
    /// lifecycle (clusters left CREATING or made FAILED).
    async fn new(config: Config) -> Self {
        let moto = Moto::start();
        let proxy = FaultProxy::in_front_of(&moto, FaultPlan::none())
            .await
            .expect("proxy");
        Self {
            moto,
            proxy: Some(Arc::new(proxy)),
            config,
            stats: Arc::new(ApiStats::default()),
        }
    }

    fn endpoint(&self) -> String {
        match &self.proxy {
            Some(p) => p.endpoint(),
            None => self.moto.endpoint(),
        }
    }

    fn aws(&self, stats: Arc<ApiStats>) -> AwsProvider {
        AwsProvider::new(
            &self.config,
            AwsOptions {
                endpoint: Some(self.endpoint()),
                credentials: Some(("testing".into(), "testing".into())),
                stats: Some(stats),
                poll_interval: Some(Duration::from_millis(10)),
                retry: Some(conformance::test_policy()),
                ..AwsOptions::default()
            },
        )
        .expect("provider")
    }

    async fn sdk(&self) -> aws_config::SdkConfig {
        common::sdk(&self.moto.endpoint()).await
    }
}

#[async_trait]
impl Harness for MotoHarness {
    fn config(&self) -> Config {
        self.config.clone()
    }

    fn provider(&self, faults: Faults) -> Arc<dyn Provider> {
        if let Some(proxy) = &self.proxy {
            proxy.set_plan(FaultPlan {
                seed: faults.seed,
                throttle: faults.throttle_rate,
                server_error: faults.error_rate,
                lost: faults.lost_rate,
            });
            proxy.set_eks(EksLifecycle {
                // Long enough that a "death" lands while the cluster is CREATING, short enough
                // that a deploy waiting for it is quick.
                creating_for: if faults.pending {
                    Duration::from_millis(1500)
                } else {
                    Duration::ZERO
                },
                fail_next_cluster: faults.fail_once.as_deref() == Some(EKS_CLUSTER),
            });
        }
        Arc::new(Faulty {
            inner: self.aws(self.stats.clone()),
            proxy: self.proxy.clone(),
            rng: Mutex::new(faults.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1),
            faults,
            applied: AtomicU64::new(0),
            dead: AtomicBool::new(false),
        })
    }

    async fn reset(&self) {
        self.moto.reset().expect("moto reset");
        if let Some(proxy) = &self.proxy {
            proxy.forget_clusters();
        }
    }

    fn knobs(&self) -> Knobs {
        Knobs {
            pending: self.proxy.is_some(),
            fail_once: self.proxy.is_some(),
            lost_answers: self.proxy.is_some(),
        }
    }

    fn cluster_kind(&self) -> &'static str {
        EKS_CLUSTER
    }

    async fn mutations(&self) -> u64 {
        // Mutating API calls sent by every provider this harness made (an SDK interceptor
        // counts each attempt as it is transmitted).
        self.stats.mutating()
    }

    async fn census(&self, ownership: &Ownership) -> BTreeMap<String, usize> {
        census(&self.sdk().await, ownership).await
    }
}

async fn deploy(p: Arc<dyn Provider>, config: &Config) -> ApplyReport {
    conformance::deploy_once(&engine(p), config)
        .await
        .expect("plan")
}

async fn destroy(p: Arc<dyn Provider>, config: &Config) -> ApplyReport {
    conformance::destroy_once(&engine(p), config)
        .await
        .expect("destroy plan")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn aws_passes_the_conformance_suite_against_moto() {
    let h = MotoHarness::new(aws_config("conform")).await;
    let start = Instant::now();
    let report = conformance::run_all(&h)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    for (check, detail) in &report.checks {
        eprintln!("{check}: {detail}");
    }
    // moto has no cluster API server here, so the facts check cannot reach a cluster.
    report.assert_skipped(&["cluster facts"]);
    eprintln!(
        "suite: {:?}, {} API calls ({} mutating)",
        start.elapsed(),
        h.stats.calls(),
        h.stats.mutating()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deploy_noop_deploy_and_destroy_against_moto() {
    let h = MotoHarness::new(aws_config("numbers")).await;
    let config = h.config();
    let o = Ownership::of(&config);

    let stats = Arc::new(ApiStats::default());
    let t = Instant::now();
    let r = deploy(Arc::new(h.aws(stats.clone())), &config).await;
    assert!(r.succeeded(), "deploy: {r:?}");
    let (deploy_calls, deploy_mut, deploy_time) = (stats.calls(), stats.mutating(), t.elapsed());
    let census = h.census(&o).await;
    let expected = one_of_everything();
    assert_eq!(census, expected);
    // Nodes sit in the cluster security group EKS makes, not in ours: NFS to the EFS mount
    // targets must still get through (the rules layer models which group the nodes are in).
    let blocked = qhub_tests::aws_rules::nfs_blocked(&h.sdk().await, "numbers-dev").await;
    assert_eq!(blocked, None, "pods could not mount the shared filesystem");
    // `general` (single_subnet, as `qhub init` writes it) keeps its zonal volumes' node in one
    // zone; the others span both.
    let eks = aws_sdk_eks::Client::new(&h.sdk().await);
    for (group, subnets) in [("general", 1), ("user", 2), ("worker", 2)] {
        let g = eks
            .describe_nodegroup()
            .cluster_name("numbers-dev")
            .nodegroup_name(format!("numbers-dev-{group}"))
            .send()
            .await
            .expect("node group");
        assert_eq!(
            g.nodegroup().map(|g| g.subnets().len()),
            Some(subnets),
            "{group}"
        );
    }
    let iam = aws_sdk_iam::Client::new(&h.sdk().await);
    // At `/`: aws-auth cannot match a node role with a path (the rules layer fails the node
    // groups of one, as their nodes never join).
    for role in ["numbers-dev-node", "numbers-dev-cluster"] {
        let r = iam.get_role().role_name(role).send().await.expect("role");
        assert_eq!(r.role().map(|r| r.path()), Some("/"), "{role}");
    }
    // On AL2023 nodes (IMDSv2 hop limit 1) pods get no credentials from the node role: the
    // EBS CSI controller and the cluster autoscaler get theirs through Pod Identity, each
    // from its own role, which carries what the node role no longer does.
    let rules = h.proxy.as_ref().expect("proxy").rules();
    let credentials = |ns: &str, sa: &str| {
        qhub_tests::eks_addons::pod_credentials(
            &rules.addons,
            &rules.nodegroups,
            "numbers-dev",
            ns,
            sa,
        )
    };
    let ebs = credentials("kube-system", "ebs-csi-controller-sa").expect("EBS CSI credentials");
    let autoscaler = credentials("dev", "cluster-autoscaler").expect("autoscaler credentials");
    assert!(ebs.ends_with(":role/numbers-dev-ebs-csi"), "{ebs}");
    assert!(
        autoscaler.ends_with(":role/numbers-dev-autoscaler"),
        "{autoscaler}"
    );
    let attached = |role: &'static str| {
        let iam = iam.clone();
        async move {
            let mut names: Vec<String> = iam
                .list_attached_role_policies()
                .role_name(role)
                .send()
                .await
                .expect("attached")
                .attached_policies()
                .iter()
                .filter_map(|p| p.policy_name().map(str::to_string))
                .collect();
            names.sort();
            let inline = iam
                .list_role_policies()
                .role_name(role)
                .send()
                .await
                .expect("inline")
                .policy_names()
                .to_vec();
            (names, inline)
        }
    };
    assert_eq!(
        attached("numbers-dev-ebs-csi").await,
        (vec!["AmazonEBSCSIDriverPolicy".to_string()], vec![])
    );
    assert_eq!(
        attached("numbers-dev-autoscaler").await,
        (
            vec![],
            vec![qhub_aws::desired::AUTOSCALER_POLICY.to_string()]
        )
    );
    let (node_policies, node_inline) = attached("numbers-dev-node").await;
    assert!(
        !node_policies
            .iter()
            .any(|p| p == "AmazonEBSCSIDriverPolicy")
            && node_inline.is_empty(),
        "the node role still carries the workloads' permissions: {node_policies:?} {node_inline:?}"
    );
    let document = iam
        .get_role_policy()
        .role_name("numbers-dev-autoscaler")
        .policy_name(qhub_aws::desired::AUTOSCALER_POLICY)
        .send()
        .await
        .expect("the policy document");
    let document = qhub_tests::eks_addons::form_decode(document.policy_document());
    assert!(
        document.contains("autoscaling:SetDesiredCapacity")
            && document.contains("aws:ResourceTag/k8s.io/cluster-autoscaler/numbers-dev"),
        "{document}"
    );
    for role in ["numbers-dev-ebs-csi", "numbers-dev-autoscaler"] {
        let r = iam.get_role().role_name(role).send().await.expect("role");
        let trust = qhub_tests::eks_addons::form_decode(
            r.role()
                .and_then(|r| r.assume_role_policy_document())
                .unwrap_or_default(),
        );
        assert!(
            qhub_tests::eks_addons::trusts_pods(&trust),
            "{role}: {trust}"
        );
    }
    // Both add-ons, the agent included, were created (not skipped as on a bare emulator).
    let addons: Vec<&str> = rules
        .addons
        .addons
        .keys()
        .map(|(_, n)| n.as_str())
        .collect();
    assert_eq!(addons, ["aws-ebs-csi-driver", "eks-pod-identity-agent"]);

    let stats2 = Arc::new(ApiStats::default());
    let t = Instant::now();
    let r = deploy(Arc::new(h.aws(stats2.clone())), &config).await;
    assert!(r.succeeded() && r.done.is_empty(), "no-op deploy: {r:?}");
    assert_eq!(stats2.mutating(), 0, "{:?}", stats2.by_operation());
    let (noop_calls, noop_time) = (stats2.calls(), t.elapsed());

    // The cluster's upgrade policy, as EKS answers it (the rules layer: EXTENDED unless
    // CreateCluster said otherwise): STANDARD by default, EXTENDED when the config asks.
    let eks = aws_sdk_eks::Client::new(&common::sdk(&h.endpoint()).await);
    let support = || async {
        eks.describe_cluster()
            .name("numbers-dev")
            .send()
            .await
            .expect("cluster")
            .cluster()
            .and_then(|c| c.upgrade_policy())
            .and_then(|u| u.support_type())
            .map(|s| s.as_str().to_string())
    };
    assert_eq!(support().await.as_deref(), Some("STANDARD"));
    let mut extended = config.clone();
    extended.amazon_web_services.as_mut().unwrap().support_type =
        Some(qhub_core::config::provider::EksSupportType::Extended);
    let p = AwsProvider::new(
        &extended,
        AwsOptions {
            endpoint: Some(h.endpoint()),
            credentials: Some(("testing".into(), "testing".into())),
            poll_interval: Some(Duration::from_millis(10)),
            retry: Some(conformance::test_policy()),
            ..AwsOptions::default()
        },
    )
    .unwrap();
    let r = deploy(Arc::new(p), &extended).await;
    assert!(
        r.succeeded() && r.done.len() == 1,
        "one cluster update: {r:?}"
    );
    assert_eq!(support().await.as_deref(), Some("EXTENDED"));

    let stats3 = Arc::new(ApiStats::default());
    let t = Instant::now();
    let r = destroy(Arc::new(h.aws(stats3.clone())), &config).await;
    assert!(r.succeeded(), "destroy: {r:?}");
    assert!(
        h.census(&o).await.is_empty(),
        "destroy left {:?}",
        h.census(&o).await
    );
    let rules = h.proxy.as_ref().expect("proxy").rules();
    assert!(
        rules.addons.addons.is_empty() && rules.addons.associations.is_empty(),
        "destroy left add-ons or associations: {:?}",
        rules.addons
    );
    eprintln!(
        "deploy: {deploy_calls} calls ({deploy_mut} mutating) in {deploy_time:?}; \
         no-op deploy: {noop_calls} calls (0 mutating) in {noop_time:?}; \
         destroy: {} calls ({} mutating) in {:?}",
        stats3.calls(),
        stats3.mutating(),
        t.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gpu_group_gets_the_gpu_ami_and_taint() {
    // Through the rules layer, which refuses AL2 AMI types from Kubernetes 1.33 as EKS does:
    // with AL2_x86_64_GPU / AL2_x86_64 this deploy failed.
    let mut config = aws_config("gpu");
    let section = config.amazon_web_services.as_mut().unwrap();
    let mut gpu = section.node_groups["worker"].clone();
    gpu.instance = "g4dn.xlarge".into();
    gpu.min_nodes = 0;
    gpu.gpu = true;
    section.node_groups.insert("gpu".into(), gpu);
    let h = MotoHarness::new(config.clone()).await;
    let r = deploy(Arc::new(h.aws(Arc::new(ApiStats::default()))), &config).await;
    assert!(r.succeeded(), "deploy: {r:?}");

    let eks = aws_sdk_eks::Client::new(&h.sdk().await);
    let describe = |name: &'static str| {
        let eks = eks.clone();
        async move {
            eks.describe_nodegroup()
                .cluster_name("gpu-dev")
                .nodegroup_name(name)
                .send()
                .await
                .unwrap()
                .nodegroup
                .unwrap()
        }
    };
    let g = describe("gpu-dev-gpu").await;
    assert_eq!(
        g.ami_type().map(|a| a.as_str()),
        Some("AL2023_x86_64_NVIDIA")
    );
    let taints: Vec<(String, String, String)> = g
        .taints()
        .iter()
        .map(|t| {
            (
                t.key().unwrap_or_default().to_string(),
                t.value().unwrap_or_default().to_string(),
                t.effect()
                    .map(|e| e.as_str().to_string())
                    .unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        taints,
        vec![(
            "nvidia.com/gpu".into(),
            "present".into(),
            "NO_SCHEDULE".into()
        )]
    );
    assert_eq!(
        g.labels()
            .and_then(|l| l.get("qhub.dev/node-group"))
            .map(String::as_str),
        Some("gpu")
    );
    // The label the cluster autoscaler reads as "a GPU node" (it reads the group's labels
    // through eks:DescribeNodegroup when the group is at zero).
    assert_eq!(
        g.labels()
            .and_then(|l| l.get("k8s.amazonaws.com/accelerator"))
            .map(String::as_str),
        Some("nvidia-tesla-t4")
    );
    assert_eq!(g.scaling_config().and_then(|s| s.min_size()), Some(0));
    let tags = g.tags().unwrap();
    assert_eq!(
        tags.get("k8s.io/cluster-autoscaler/node-template/taint/nvidia.com/gpu")
            .map(String::as_str),
        Some("present:NoSchedule")
    );
    assert_eq!(
        tags.get("k8s.io/cluster-autoscaler/node-template/label/qhub.dev/node-group")
            .map(String::as_str),
        Some("gpu")
    );

    // A CPU group gets neither.
    let cpu = describe("gpu-dev-user").await;
    assert_eq!(
        cpu.ami_type().map(|a| a.as_str()),
        Some("AL2023_x86_64_STANDARD")
    );
    assert!(cpu.taints().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn preflight_names_every_bad_key_and_passes_a_good_config() {
    let good = aws_config("pre");
    let h = MotoHarness::new(good.clone()).await;
    let stats = Arc::new(ApiStats::default());
    let report = h
        .aws(stats.clone())
        .preflight(&good)
        .await
        .expect("preflight");
    assert_eq!(stats.mutating(), 0, "preflight changes nothing");
    // GetCallerIdentity, DescribeRegions, DescribeAvailabilityZones, DescribeClusterVersions,
    // DescribeInstanceTypeOfferings, DescribeInstanceTypes: one each, whatever the groups; and
    // one GetServiceQuota per vCPU quota the groups' types fall under (Standard only here).
    assert_eq!(stats.calls(), 7, "{:?}", stats.by_operation());
    // moto cannot list EKS versions: that check is a warning, never a silent pass.
    for w in &report.warnings {
        assert!(w.contains("not checked"), "{w}");
    }

    let mut bad = good.clone();
    let section = bad.amazon_web_services.as_mut().unwrap();
    section.node_groups.get_mut("worker").unwrap().instance = "x9.nonexistent".into();
    section.node_groups.get_mut("user").unwrap().instance = "y7.imaginary".into();
    section.availability_zones = Some(vec!["us-west-2a".into(), "us-west-2z".into()]);
    // A GPU group on a type without a GPU, and a Graviton type: its ARM AMI type is checked
    // against the type's architecture (it matches, so only the GPU group is named).
    let mut gpu = section.node_groups["worker"].clone();
    gpu.instance = "m5.large".into();
    gpu.gpu = true;
    section.node_groups.insert("nogpu".into(), gpu);
    let mut arm = section.node_groups["worker"].clone();
    arm.instance = "m6g.large".into();
    section.node_groups.insert("arm".into(), arm);
    let err = h
        .aws(stats.clone())
        .preflight(&bad)
        .await
        .unwrap_err()
        .to_string();
    for key in [
        "amazon_web_services.node_groups.worker.instance",
        "amazon_web_services.node_groups.user.instance",
        "amazon_web_services.availability_zones: us-west-2z",
        "amazon_web_services.node_groups.nogpu.gpu: `m5.large` has no GPU",
    ] {
        assert!(err.contains(key), "{key} missing from: {err}");
    }
    assert!(!err.contains("node_groups.general"), "{err}");
    assert!(!err.contains("node_groups.arm"), "{err}");

    let mut elsewhere = good.clone();
    elsewhere.amazon_web_services.as_mut().unwrap().region = "xx-nowhere-1".into();
    let err = AwsProvider::new(
        &elsewhere,
        AwsOptions {
            endpoint: Some(h.moto.endpoint()),
            credentials: Some(("testing".into(), "testing".into())),
            ..AwsOptions::default()
        },
    )
    .unwrap()
    .preflight(&elsewhere)
    .await
    .unwrap_err()
    .to_string();
    // moto answers a region it does not know with a 500; AWS does not resolve its host.
    assert!(
        err.contains("amazon_web_services.region: EC2 in `xx-nowhere-1` did not answer"),
        "{err}"
    );
    assert!(
        !err.contains("<html") && !err.contains("headers"),
        "no raw response: {err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pod_identity_never_touches_associations_it_did_not_create() {
    use aws_smithy_types::error::metadata::ProvideErrorMetadata;
    let config = aws_config("podid");
    let h = MotoHarness::new(config.clone()).await;
    let proxy = h.proxy.clone().expect("proxy");
    let r = deploy(Arc::new(h.aws(Arc::new(ApiStats::default()))), &config).await;
    assert!(r.succeeded(), "deploy: {r:?}");
    // Through the proxy: EKS's API as the rules layer serves it.
    let sdk = common::sdk(&h.endpoint()).await;
    let (eks, iam) = (
        aws_sdk_eks::Client::new(&sdk),
        aws_sdk_iam::Client::new(&sdk),
    );
    let role = |name: &'static str, service: &'static str| {
        let iam = iam.clone();
        async move {
            let trust = if service == "pods.eks.amazonaws.com" {
                r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"pods.eks.amazonaws.com"},"Action":["sts:AssumeRole","sts:TagSession"]}]}"#
            } else {
                r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#
            };
            iam.create_role()
                .role_name(name)
                .assume_role_policy_document(trust)
                .send()
                .await
                .expect("role")
                .role()
                .map(|r| r.arn().to_string())
                .unwrap_or_default()
        }
    };
    let theirs = role("someone-pods", "pods.eks.amazonaws.com").await;
    let create = |ns: &'static str, sa: &'static str, arn: String| {
        eks.create_pod_identity_association()
            .cluster_name("podid-dev")
            .namespace(ns)
            .service_account(sa)
            .role_arn(arn)
            .send()
    };
    let foreign = create("team", "app", theirs.clone())
        .await
        .expect("their association");
    let foreign_id = foreign
        .association()
        .and_then(|a| a.association_id())
        .unwrap_or_default()
        .to_string();
    // EKS refuses a role Pod Identity cannot assume, and a second association of one service
    // account, as the rules layer shows.
    let ec2 = role("someone-ec2", "ec2.amazonaws.com").await;
    let refused = create("team", "other", ec2).await.unwrap_err();
    assert_eq!(refused.code(), Some("InvalidParameterException"));
    let refused = create("dev", "cluster-autoscaler", theirs.clone())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Some("ResourceInUseException"));

    // Not ours: the plan does not see it, so a deploy changes nothing.
    let stats = Arc::new(ApiStats::default());
    let r = deploy(Arc::new(h.aws(stats.clone())), &config).await;
    assert!(r.succeeded() && r.done.is_empty(), "no-op deploy: {r:?}");
    assert_eq!(stats.mutating(), 0, "{:?}", stats.by_operation());

    // Somebody took over the autoscaler's service account: refused, never adopted.
    let ours = proxy
        .rules()
        .addons
        .associations
        .values()
        .find(|a| a.service_account == "cluster-autoscaler")
        .map(|a| a.id.clone())
        .expect("our association");
    eks.delete_pod_identity_association()
        .cluster_name("podid-dev")
        .association_id(ours)
        .send()
        .await
        .expect("delete");
    create("dev", "cluster-autoscaler", theirs)
        .await
        .expect("theirs");
    let r = deploy(Arc::new(h.aws(Arc::new(ApiStats::default()))), &config).await;
    assert!(!r.succeeded(), "{r:?}");
    assert!(
        format!("{r:?}").contains("is not owned by this deployment"),
        "{r:?}"
    );

    // Destroy deletes our one remaining association, not theirs, before the cluster.
    proxy.reset_counts();
    let r = destroy(Arc::new(h.aws(Arc::new(ApiStats::default()))), &config).await;
    assert!(r.succeeded(), "destroy: {r:?}");
    assert_eq!(
        proxy
            .counts()
            .by_operation
            .get("DeletePodIdentityAssociation"),
        Some(&1),
        "{:?}",
        proxy.counts().by_operation
    );
    assert!(!foreign_id.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn preflight_refuses_a_gpu_group_beyond_the_vcpu_quota_before_any_create() {
    // A new account: 0 vCPUs of G and VT instances (quota L-DB2E81BA). Without the check the
    // GPU group fails after minutes with VcpuLimitExceeded; preflight refuses it first.
    let mut config = aws_config("quota");
    let section = config.amazon_web_services.as_mut().unwrap();
    let mut gpu = section.node_groups["worker"].clone();
    gpu.instance = "g4dn.xlarge".into();
    gpu.gpu = true;
    gpu.min_nodes = 0;
    gpu.max_nodes = 2;
    section.node_groups.insert("gpu".into(), gpu);
    let h = MotoHarness::new(config.clone()).await;
    let proxy = h.proxy.clone().expect("proxy");
    proxy.set_quota("L-DB2E81BA", 0.0);
    let stats = Arc::new(ApiStats::default());
    let err = h
        .aws(stats.clone())
        .preflight(&config)
        .await
        .unwrap_err()
        .to_string();
    for part in [
        "amazon_web_services.node_groups.gpu.instance",
        "L-DB2E81BA (Running On-Demand G and VT instances) in us-west-2 is 0 vCPUs",
        "one g4dn.xlarge node (4 vCPUs)",
        "aws service-quotas request-service-quota-increase --service-code ec2 --quota-code L-DB2E81BA --desired-value 8 --region us-west-2",
        "servicequotas/home/services/ec2/quotas/L-DB2E81BA",
    ] {
        assert!(err.contains(part), "{part} missing from: {err}");
    }
    // The CPU groups fit the Standard quota: not named.
    assert!(!err.contains("L-1216C47A"), "{err}");
    assert_eq!(stats.mutating(), 0, "refused before any create");
    assert_eq!(
        stats.by_operation().get("Service Quotas.GetServiceQuota"),
        Some(&2),
        "one read per quota in use: {:?}",
        stats.by_operation()
    );
    assert!(h.census(&Ownership::of(&config)).await.is_empty());

    // The default groups' minimum (8 + 4 + 4 vCPUs) does not fit a 5-vCPU Standard quota: an
    // error naming the minimum; a quota between the minimum and the maximum only warns.
    proxy.set_quota("L-DB2E81BA", 64.0);
    proxy.set_quota("L-1216C47A", 5.0);
    let err = h
        .aws(stats.clone())
        .preflight(&config)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("amazon_web_services.node_groups.general.min_nodes")
            && err.contains("needs 16")
            && err.contains("--quota-code L-1216C47A --desired-value 48"),
        "{err}"
    );
    proxy.set_quota("L-1216C47A", 32.0);
    let report = h.aws(stats).preflight(&config).await.expect("preflight");
    assert!(
        report.warnings.iter().any(|w| w.contains("L-1216C47A")
            && w.contains("may grow to 48")
            && w.contains("amazon_web_services.node_groups.user.max_nodes")),
        "{:?}",
        report.warnings
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn upgrades_step_one_minor_at_a_time_and_downgrades_are_refused() {
    // The rules layer serves UpdateClusterVersion/UpdateNodegroupVersion with EKS's skew rules
    // (moto has neither): one UpdateClusterVersion straight to 1.35 was refused.
    let mut config = aws_config("upgrade");
    config
        .amazon_web_services
        .as_mut()
        .unwrap()
        .kubernetes_version = "1.33".into();
    let h = MotoHarness::new(config.clone()).await;
    let r = deploy(Arc::new(h.aws(Arc::new(ApiStats::default()))), &config).await;
    assert!(r.succeeded(), "deploy at 1.33: {r:?}");

    let at = |v: &str| {
        let mut c = config.clone();
        c.amazon_web_services.as_mut().unwrap().kubernetes_version = v.into();
        c
    };
    let provider = |c: &Config| {
        Arc::new(
            AwsProvider::new(
                c,
                AwsOptions {
                    endpoint: Some(h.endpoint()),
                    credentials: Some(("testing".into(), "testing".into())),
                    poll_interval: Some(Duration::from_millis(10)),
                    retry: Some(conformance::test_policy()),
                    ..AwsOptions::default()
                },
            )
            .unwrap(),
        )
    };
    let stats = Arc::new(ApiStats::default());
    let up = at("1.35");
    let p = AwsProvider::new(
        &up,
        AwsOptions {
            endpoint: Some(h.endpoint()),
            credentials: Some(("testing".into(), "testing".into())),
            stats: Some(stats.clone()),
            poll_interval: Some(Duration::from_millis(10)),
            retry: Some(conformance::test_policy()),
            ..AwsOptions::default()
        },
    )
    .unwrap();
    let r = deploy(Arc::new(p), &up).await;
    assert!(r.succeeded(), "upgrade to 1.35: {r:?}");
    let ops = stats.by_operation();
    assert_eq!(ops.get("EKS.UpdateClusterVersion"), Some(&2), "{ops:?}");
    // Three groups, brought to 1.34 before the second step and to 1.35 after it.
    assert_eq!(ops.get("EKS.UpdateNodegroupVersion"), Some(&6), "{ops:?}");

    let eks = aws_sdk_eks::Client::new(&common::sdk(&h.endpoint()).await);
    let c = eks
        .describe_cluster()
        .name("upgrade-dev")
        .send()
        .await
        .unwrap();
    assert_eq!(c.cluster().and_then(|c| c.version()), Some("1.35"));
    for group in ["general", "user", "worker"] {
        let g = eks
            .describe_nodegroup()
            .cluster_name("upgrade-dev")
            .nodegroup_name(format!("upgrade-dev-{group}"))
            .send()
            .await
            .unwrap();
        assert_eq!(
            g.nodegroup().and_then(|g| g.version()),
            Some("1.35"),
            "{group}"
        );
    }
    // A no-op afterwards.
    let r = deploy(provider(&up), &up).await;
    assert!(
        r.succeeded() && r.done.is_empty(),
        "no-op after the upgrade: {r:?}"
    );

    // Down is refused, naming the key and the way back.
    let down = at("1.34");
    let r = deploy(provider(&down), &down).await;
    assert!(!r.succeeded(), "a downgrade must fail: {r:?}");
    let text = format!("{r:?}");
    assert!(
        text.contains("EKS cannot downgrade cluster upgrade-dev from 1.35 to 1.34"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn roles_made_under_the_old_path_are_observed_and_destroyed() {
    let config = aws_config("legacy");
    let h = MotoHarness::new(config.clone()).await;
    let o = Ownership::of(&config);
    let iam = aws_sdk_iam::Client::new(&h.sdk().await);
    let tags: Vec<aws_sdk_iam::types::Tag> = o
        .tags()
        .into_iter()
        .map(|(k, v)| {
            aws_sdk_iam::types::Tag::builder()
                .key(k)
                .value(v)
                .build()
                .unwrap()
        })
        .collect();
    let trust = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;
    // What an earlier version left: its node role under /qhub-rs/ (found by name), and a role
    // of a name qhub no longer gives (found by listing the old path).
    for name in ["legacy-dev-node", "legacy-dev-other"] {
        iam.create_role()
            .role_name(name)
            .path(qhub_aws::desired::LEGACY_IAM_PATH)
            .assume_role_policy_document(trust)
            .set_tags(Some(tags.clone()))
            .send()
            .await
            .expect("create role");
    }
    iam.put_role_policy()
        .role_name("legacy-dev-node")
        .policy_name(qhub_aws::desired::AUTOSCALER_POLICY)
        .policy_document(
            qhub_aws::desired::inline_policy_document(
                qhub_aws::desired::AUTOSCALER_POLICY,
                "legacy-dev",
            )
            .unwrap(),
        )
        .send()
        .await
        .expect("inline policy");
    // Someone else's role under the old path is not ours.
    iam.create_role()
        .role_name("someone-else")
        .path(qhub_aws::desired::LEGACY_IAM_PATH)
        .assume_role_policy_document(trust)
        .send()
        .await
        .expect("create role");

    let seen = h
        .aws(Arc::new(ApiStats::default()))
        .observe(&o)
        .await
        .expect("observe");
    let roles: Vec<&str> = seen
        .iter()
        .filter(|f| f.id.kind == qhub_aws::desired::IAM_ROLE)
        .map(|f| f.id.name.as_str())
        .collect();
    assert_eq!(roles, ["legacy-dev-node", "legacy-dev-other"]);
    let node = seen
        .iter()
        .find(|f| f.id.name == "legacy-dev-node")
        .unwrap();
    assert_eq!(
        node.spec["inline_policies"],
        serde_json::json!([qhub_aws::desired::AUTOSCALER_POLICY])
    );

    let r = destroy(Arc::new(h.aws(Arc::new(ApiStats::default()))), &config).await;
    assert!(r.succeeded(), "destroy: {r:?}");
    assert!(h.census(&o).await.is_empty(), "{:?}", h.census(&o).await);
    let left: Vec<String> = iam
        .list_roles()
        .send()
        .await
        .unwrap()
        .roles()
        .iter()
        .map(|r| r.role_name().to_string())
        .filter(|n| n.starts_with("legacy") || n == "someone-else")
        .collect();
    assert_eq!(left, ["someone-else"]);
}

/// An engine like [`common::engine`] that may replace `allow`.
fn engine_allowing(p: Arc<dyn Provider>, allow: &[&str]) -> qhub_core::engine::Engine {
    qhub_core::engine::Engine::new(
        p,
        qhub_core::engine::EngineOptions {
            min_deadline: Duration::from_secs(120),
            observe_deadline: Duration::from_secs(60),
            allow_replace: allow
                .iter()
                .map(|id| {
                    let (kind, name) = id.split_once('/').expect("KIND/NAME");
                    qhub_core::plan::ResourceId::new(kind, name)
                })
                .collect(),
            ..qhub_core::engine::EngineOptions::default()
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replacing_a_subnet_replaces_what_depends_on_it_or_refuses_naming_both() {
    use qhub_core::engine::{EngineError, StageFilter};
    use qhub_core::plan::Action;
    let mut config = aws_config("moved");
    let h = MotoHarness::new(config.clone()).await;
    let o = Ownership::of(&config);
    let aws = || Arc::new(h.aws(Arc::new(ApiStats::default()))) as Arc<dyn Provider>;
    assert!(deploy(aws(), &config).await.succeeded());

    // Move the second subnet to a zone it is not in: the first two zones were chosen.
    let zones = qhub_aws::apply::availability_zones(&h.aws(Arc::new(ApiStats::default())))
        .await
        .expect("zones");
    assert!(zones.len() >= 3, "{zones:?}");
    config
        .amazon_web_services
        .as_mut()
        .unwrap()
        .availability_zones = Some(vec![zones[0].clone(), zones[2].clone()]);

    // Refused by default, before any change, naming both, the key and what to do.
    let before = h.census(&o).await;
    let refused = engine_allowing(aws(), &[])
        .plan(&config, StageFilter::All)
        .await
        .expect_err("the cluster's replacement is refused");
    assert!(matches!(refused, EngineError::Refused(_)), "{refused}");
    let text = refused.to_string();
    for needle in [
        "subnet/moved-dev-subnet-1",
        "eks_cluster/moved-dev",
        "`amazon_web_services.availability_zones`",
        "--allow-replace eks_cluster/moved-dev",
        "EBS volumes of PersistentVolumeClaims",
    ] {
        assert!(text.contains(needle), "{needle} missing from: {text}");
    }
    let report = conformance::deploy_once(&engine_allowing(aws(), &[]), &config).await;
    assert!(matches!(report, Err(EngineError::Refused(_))), "{report:?}");
    assert_eq!(
        h.census(&o).await,
        before,
        "a refused deploy changed something"
    );

    // Allowed: the cascade is planned with its reasons, and the deploy converges to one of
    // everything with the subnet in its new zone.
    let engine = engine_allowing(aws(), &["eks_cluster/moved-dev"]);
    let plan = engine.plan(&config, StageFilter::All).await.expect("plan");
    let text = plan.render_text();
    let because = |id: &str| {
        plan.changes
            .iter()
            .find(|c| c.id.to_string() == id)
            .map(|c| (c.action, c.because.as_ref().map(ToString::to_string)))
    };
    assert_eq!(
        because("subnet/moved-dev-subnet-1"),
        Some((Action::Replace, None))
    );
    assert_eq!(
        because("eks_cluster/moved-dev"),
        Some((Action::Replace, Some("subnet/moved-dev-subnet-1".into()))),
        "{text}"
    );
    assert_eq!(
        because("node_group/moved-dev-user"),
        Some((Action::Replace, Some("eks_cluster/moved-dev".into()))),
        "{text}"
    );
    assert_eq!(
        because("efs_mount_target/moved-dev-shared-1"),
        Some((Action::Replace, Some("subnet/moved-dev-subnet-1".into()))),
        "{text}"
    );
    assert_eq!(
        because("route_table/moved-dev"),
        Some((Action::Update, Some("subnet/moved-dev-subnet-1".into()))),
        "{text}"
    );
    // Untouched: the other subnet and its mount target, the VPC, the roles, EFS itself.
    // subnet, mount target, cluster, three node groups, and what lives in the cluster: the two
    // add-ons and the two Pod Identity associations (their roles stay).
    assert_eq!(plan.summary().replace, 10, "{text}");
    assert!(
        text.contains("replaced because subnet/moved-dev-subnet-1 is replaced"),
        "{text}"
    );
    let started = Instant::now();
    let report = conformance::deploy_once(&engine, &config)
        .await
        .expect("plan");
    assert!(report.succeeded(), "{report:?}");
    eprintln!("cascaded replacement applied in {:?}", started.elapsed());
    assert_eq!(h.census(&o).await, one_of_everything());
    let ec2 = aws_sdk_ec2::Client::new(&h.sdk().await);
    let subnets = ec2
        .describe_subnets()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("tag:Name")
                .values("moved-dev-subnet-1")
                .build(),
        )
        .send()
        .await
        .expect("subnets");
    let moved: Vec<&str> = subnets
        .subnets()
        .iter()
        .filter_map(|s| s.availability_zone())
        .collect();
    assert_eq!(moved, [zones[2].as_str()]);
    let after = engine_allowing(aws(), &[])
        .plan(&config, StageFilter::All)
        .await
        .expect("plan after");
    assert!(after.is_empty(), "{}", after.render_text());
}
