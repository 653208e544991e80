//! Who may deploy: EKS access entries from `amazon_web_services.cluster_admins`, against moto
//! behind the rules layer (which serves `accessConfig` and the access-entry API,
//! `qhub_tests::eks_access`), with the in-memory Kubernetes API standing for the cluster's API
//! server: it takes each EKS token's identity from STS (moto) and lets in only what has an
//! access entry, as EKS's authenticator does. The provider reaches it with real EKS tokens
//! ([`AwsOptions::cluster_endpoint`]), so the identity that deploys is the one the AWS
//! credentials say.
//!
//! Three identities: the creator (moto's default credentials), `ci` (a role, assumed), listed
//! in `cluster_admins`, and `intruder` (an IAM user), never listed.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::{aws_config, engine};
use qhub_aws::{ApiStats, AwsOptions, AwsProvider};
use qhub_core::Config;
use qhub_core::conformance;
use qhub_core::engine::StageFilter;
use qhub_core::events::NoEvents;
use qhub_core::plan::{Action, Stage};
use qhub_core::provider::Provider;
use qhub_sandbox::kube_api::KubeApi;
use qhub_tests::eks_access;
use qhub_tests::fault_proxy::{FaultPlan, FaultProxy};
use qhub_tests::moto::Moto;
use tokio_util::sync::CancellationToken;

const CLUSTER: &str = "access-dev";
const ACCOUNT: &str = "123456789012";

struct Setup {
    moto: Moto,
    proxy: Arc<FaultProxy>,
    api: KubeApi,
    _server: qhub_sandbox::kube_api::Server,
    _keycloak: qhub_sandbox::keycloak_api::KeycloakServer,
    _conda_store: qhub_sandbox::conda_store_api::CondaStoreServer,
    server_url: String,
    creator: (String, String),
    ci: (String, String),
    intruder: (String, String),
}

impl Setup {
    async fn new() -> Self {
        let moto = Moto::start();
        let proxy = Arc::new(
            FaultProxy::in_front_of(&moto, FaultPlan::none())
                .await
                .expect("proxy"),
        );
        let upstream = SocketAddr::from(([127, 0, 0, 1], moto.port()));
        let api = KubeApi::new();
        api.set_authenticator(Some(eks_access::authenticator(
            proxy.clone(),
            upstream,
            CLUSTER,
        )));
        let server = api.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
        // Keycloak "runs" in the cluster: qhub configures it through a port-forward.
        let keycloak = qhub_sandbox::keycloak_api::KeycloakApi::default()
            .run_in_cluster(&api, "dev")
            .await
            .unwrap();
        // So does conda-store: qhub registers the config's environments through a port-forward.
        let (_, conda_store) = qhub_sandbox::conda_store_api::run_in_cluster(&api, "dev")
            .await
            .unwrap();
        let sdk = common::sdk(&moto.endpoint()).await;
        let iam = aws_sdk_iam::Client::new(&sdk);
        let trust = format!(
            r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Principal":{{"AWS":"arn:aws:iam::{ACCOUNT}:root"}},"Action":"sts:AssumeRole"}}]}}"#
        );
        iam.create_role()
            .role_name("ci")
            .assume_role_policy_document(trust)
            .send()
            .await
            .expect("role ci");
        let assumed = aws_sdk_sts::Client::new(&sdk)
            .assume_role()
            .role_arn(format!("arn:aws:iam::{ACCOUNT}:role/ci"))
            .role_session_name("gha-run")
            .send()
            .await
            .expect("assume ci");
        let c = assumed.credentials().expect("credentials");
        let ci = (
            c.access_key_id().to_string(),
            c.secret_access_key().to_string(),
        );
        iam.create_user()
            .user_name("intruder")
            .send()
            .await
            .expect("user");
        let key = iam
            .create_access_key()
            .user_name("intruder")
            .send()
            .await
            .expect("key");
        let k = key.access_key().expect("access key");
        let intruder = (
            k.access_key_id().to_string(),
            k.secret_access_key().to_string(),
        );
        Self {
            server_url: server.url(),
            _server: server,
            _keycloak: keycloak,
            _conda_store: conda_store,
            moto,
            proxy,
            api,
            creator: ("testing".into(), "testing".into()),
            ci,
            intruder,
        }
    }

    fn provider(
        &self,
        config: &Config,
        who: &(String, String),
        stats: Arc<ApiStats>,
    ) -> Arc<dyn Provider> {
        Arc::new(
            AwsProvider::new(
                config,
                AwsOptions {
                    endpoint: Some(self.proxy.endpoint()),
                    credentials: Some(who.clone()),
                    stats: Some(stats),
                    poll_interval: Some(Duration::from_millis(10)),
                    retry: Some(conformance::test_policy()),
                    cluster_endpoint: Some(self.server_url.clone()),
                    ..AwsOptions::default()
                },
            )
            .expect("provider"),
        )
    }

    /// The principals with an access entry on the cluster, and which carry our tags.
    async fn entries(&self) -> BTreeMap<String, bool> {
        let eks = aws_sdk_eks::Client::new(&common::sdk(&self.proxy.endpoint()).await);
        let listed = eks
            .list_access_entries()
            .cluster_name(CLUSTER)
            .send()
            .await
            .expect("list");
        let mut out = BTreeMap::new();
        for p in listed.access_entries() {
            let d = eks
                .describe_access_entry()
                .cluster_name(CLUSTER)
                .principal_arn(p)
                .send()
                .await
                .expect("describe");
            let tagged = d
                .access_entry()
                .and_then(|e| e.tags())
                .is_some_and(|t| !t.is_empty());
            out.insert(p.clone(), tagged);
        }
        out
    }
}

fn access_calls(stats: &ApiStats) -> BTreeMap<String, u64> {
    stats
        .by_operation()
        .into_iter()
        .filter(|(op, _)| op.contains("AccessEntr") || op.contains("AccessPolic"))
        .collect()
}

fn mutating(calls: &BTreeMap<String, u64>) -> u64 {
    calls
        .iter()
        .filter(|(op, _)| !ApiStats::is_read_only(op))
        .map(|(_, n)| n)
        .sum()
}

async fn deploy(
    p: Arc<dyn Provider>,
    config: &Config,
) -> Result<(qhub_core::plan::Plan, qhub_core::engine::ApplyReport), qhub_core::engine::EngineError>
{
    engine(p)
        .deploy(
            config,
            StageFilter::All,
            Arc::new(NoEvents),
            CancellationToken::new(),
        )
        .await
}

fn with_admins(admins: &[&str]) -> Config {
    let mut config = aws_config("access");
    config.amazon_web_services.as_mut().unwrap().cluster_admins =
        admins.iter().map(|a| (*a).to_string()).collect();
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_listed_identity_deploys_an_unlisted_one_is_told_and_removal_deletes_only_its_entry() {
    let s = Setup::new().await;
    let ci_role = format!("arn:aws:iam::{ACCOUNT}:role/ci");
    let config = with_admins(&[&ci_role]);

    // The creator's first deploy: both stages, the cluster in API_AND_CONFIG_MAP with the
    // creator's bootstrap entry, and ci's entry (ours, cluster-admin).
    let stats = Arc::new(ApiStats::default());
    let (_, report) = deploy(s.provider(&config, &s.creator, stats.clone()), &config)
        .await
        .expect("plan");
    assert!(report.succeeded(), "first deploy: {report:?}");
    let first = access_calls(&stats);
    eprintln!("access-entry calls, first deploy: {first:?}");
    assert_eq!(first.get("EKS.CreateAccessEntry"), Some(&1), "{first:?}");
    assert_eq!(
        first.get("EKS.AssociateAccessPolicy"),
        Some(&1),
        "{first:?}"
    );
    let rules = s.proxy.rules();
    let cluster = &rules.access.clusters[CLUSTER];
    assert_eq!(cluster.mode, "API_AND_CONFIG_MAP");
    assert!(cluster.bootstrap);
    let creator = format!("arn:aws:sts::{ACCOUNT}:user/moto");
    let node_role = format!("arn:aws:iam::{ACCOUNT}:role/access-dev-node");
    let entries = s.entries().await;
    assert_eq!(
        entries,
        BTreeMap::from([
            (creator.clone(), false),
            (ci_role.clone(), true),
            (node_role.clone(), false),
        ])
    );
    assert_eq!(
        cluster.entries[&ci_role]
            .policies
            .keys()
            .collect::<Vec<_>>(),
        ["arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy"]
    );

    // ci deploys after it: the Kubernetes stage is reached with ci's own EKS tokens, and
    // nothing changes — no access-entry call that mutates.
    let stats = Arc::new(ApiStats::default());
    let writes = s.api.mutations();
    let (plan, report) = deploy(s.provider(&config, &s.ci, stats.clone()), &config)
        .await
        .expect("ci's plan");
    assert!(report.succeeded(), "ci's deploy: {report:?}");
    assert!(plan.changes.is_empty(), "{}", plan.render_text());
    assert!(
        plan.unchanged > 20,
        "the Kubernetes stage was planned: {}",
        plan.render_text()
    );
    let noop = access_calls(&stats);
    eprintln!("access-entry calls, no-op deploy: {noop:?}");
    assert_eq!(mutating(&noop), 0, "{noop:?}");
    assert_eq!(stats.mutating(), 0, "{:?}", stats.by_operation());
    // The deploy lease: taken and released through the API server, as ci.
    assert!(s.api.mutations() - writes <= 2);

    // The intruder is told what to do, before any change.
    let stats = Arc::new(ApiStats::default());
    let writes = s.api.mutations();
    let intruder = s.provider(&config, &s.intruder, stats.clone());
    let err = deploy(intruder.clone(), &config)
        .await
        .expect_err("the intruder has no access");
    let text = format!(
        "{err}: {}",
        std::error::Error::source(&err)
            .map(|e| e.to_string())
            .unwrap_or_default()
    );
    eprintln!("the intruder sees: {text}");
    let expected = qhub_aws::access::no_access_message(
        &format!("arn:aws:iam::{ACCOUNT}:user/intruder"),
        CLUSTER,
    );
    assert!(text.contains(&expected), "{text}");
    assert!(
        text.contains("amazon_web_services.cluster_admins"),
        "{text}"
    );
    assert_eq!(stats.mutating(), 0, "{:?}", stats.by_operation());
    assert_eq!(s.api.mutations(), writes);
    // `qhub kubeconfig` says the same.
    let err = intruder
        .kubeconfig(&qhub_core::provider::Ownership::of(&config))
        .await
        .expect_err("no kubeconfig for the intruder");
    assert!(err.to_string().contains(&expected), "{err}");
    let ok = s
        .provider(&config, &s.ci, Arc::default())
        .kubeconfig(&qhub_core::provider::Ownership::of(&config))
        .await
        .expect("ci's kubeconfig");
    assert!(ok.contains(&s.server_url), "{ok}");

    // ci leaves the list: the creator's deploy deletes its entry and nothing else.
    let without = with_admins(&[]);
    let stats = Arc::new(ApiStats::default());
    let (plan, report) = deploy(s.provider(&without, &s.creator, stats.clone()), &without)
        .await
        .expect("plan");
    assert!(report.succeeded(), "{report:?}");
    let changes: Vec<(Action, String)> = plan
        .changes
        .iter()
        .map(|c| (c.action, c.id.to_string()))
        .collect();
    assert_eq!(
        changes,
        [(Action::Delete, format!("access_entry/{CLUSTER}/{ci_role}"))]
    );
    let removed = access_calls(&stats);
    assert_eq!(mutating(&removed), 1, "{removed:?}");
    assert_eq!(removed.get("EKS.DeleteAccessEntry"), Some(&1));
    assert_eq!(
        s.entries().await,
        BTreeMap::from([(creator, false), (node_role, false)])
    );
    // And ci is now refused, with the fix.
    let err = deploy(s.provider(&without, &s.ci, Arc::default()), &without)
        .await
        .expect_err("ci has no access any more");
    let text = format!(
        "{err}: {}",
        std::error::Error::source(&err)
            .map(|e| e.to_string())
            .unwrap_or_default()
    );
    assert!(
        text.contains(&format!("Add `{ci_role}` (with the role's path")),
        "{text}"
    );
    drop(s.moto);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_config_map_cluster_is_moved_once_with_a_one_way_note() {
    let s = Setup::new().await;
    let ci_role = format!("arn:aws:iam::{ACCOUNT}:role/ci");
    let config = with_admins(&[]);
    let (_, report) = deploy(s.provider(&config, &s.creator, Arc::default()), &config)
        .await
        .expect("plan");
    assert!(report.succeeded(), "{report:?}");
    // As a cluster made by an earlier qhub-rs (no accessConfig): CONFIG_MAP, no entries; the
    // creator still gets in (CONFIG_MAP's implicit admin).
    s.proxy.with_rules(|r| {
        let c = r.access.clusters.get_mut(CLUSTER).unwrap();
        c.mode = "CONFIG_MAP".into();
        c.entries.clear();
    });
    let listed = with_admins(&[&ci_role]);
    let plan = engine(s.provider(&listed, &s.creator, Arc::default()))
        .plan(&listed, StageFilter::All)
        .await
        .expect("plan");
    let text = plan.render_text();
    let update = plan
        .changes
        .iter()
        .find(|c| c.id.to_string() == format!("eks_cluster/{CLUSTER}"))
        .unwrap_or_else(|| panic!("{text}"));
    assert_eq!(update.action, Action::Update, "{text}");
    assert!(
        update.reason.as_deref().is_some_and(
            |r| r.starts_with("one-way:") && r.contains("CONFIG_MAP to API_AND_CONFIG_MAP")
        ),
        "{text}"
    );
    assert!(
        text.contains("(one-way: the cluster's authentication mode moves"),
        "{text}"
    );
    assert!(
        plan.changes
            .iter()
            .any(|c| c.action == Action::Create && c.id.kind == "access_entry"),
        "{text}"
    );
    assert!(
        plan.changes
            .iter()
            .all(|c| c.stage == Stage::Infrastructure),
        "{text}"
    );
    let stats = Arc::new(ApiStats::default());
    let (_, report) = deploy(s.provider(&listed, &s.creator, stats.clone()), &listed)
        .await
        .expect("plan");
    assert!(report.succeeded(), "{report:?}");
    assert_eq!(
        stats.by_operation().get("EKS.UpdateClusterConfig"),
        Some(&1),
        "{:?}",
        stats.by_operation()
    );
    assert_eq!(
        s.proxy.rules().access.clusters[CLUSTER].mode,
        "API_AND_CONFIG_MAP"
    );
    // ci gets in now; the mode is not touched again.
    let stats = Arc::new(ApiStats::default());
    let (plan, report) = deploy(s.provider(&listed, &s.ci, stats.clone()), &listed)
        .await
        .expect("ci's plan");
    assert!(
        report.succeeded() && plan.changes.is_empty(),
        "{}",
        plan.render_text()
    );
    assert_eq!(stats.mutating(), 0);

    // Destroy (as ci): ci's own entry goes with the cluster, not before it (the cluster's
    // LoadBalancer Services are deleted through ci's access); nothing of ours is left.
    let stats = Arc::new(ApiStats::default());
    let (plan, report) = engine(s.provider(&listed, &s.ci, stats.clone()))
        .destroy(
            &listed,
            StageFilter::All,
            Arc::new(NoEvents),
            CancellationToken::new(),
        )
        .await
        .expect("destroy plan");
    assert!(report.succeeded(), "{report:?}");
    assert!(
        plan.changes
            .iter()
            .any(|c| c.action == Action::Delete && c.id.kind == "access_entry"),
        "{}",
        plan.render_text()
    );
    assert_eq!(stats.by_operation().get("EKS.DeleteAccessEntry"), None);
    let o = qhub_core::provider::Ownership::of(&listed);
    assert!(
        common::census(&common::sdk(&s.moto.endpoint()).await, &o)
            .await
            .is_empty()
    );
}
