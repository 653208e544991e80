//! `qhub plan` / `deploy` / `status` / `destroy` end to end on the built-in sandbox provider,
//! driving the real binary as a user would: exit codes, plans (text and JSON), the world the
//! sandbox persists in `.qhub-sandbox/world.json` and the objects of its in-memory Kubernetes API
//! in `.qhub-sandbox/kube-<deployment>.json`, interrupted and killed deploys, injected faults and
//! the deploy lock.

mod common;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{code, describe, json_stdout, stderr, stdout};
use serde_json::{Value, json};

const CONFIG: &str = "qhub-config.yaml";

/// Fast enough for tests: a 10-minute cluster takes 60 ms.
const TIME_SCALE: &str = "0.0001";

/// The infrastructure resources a full deploy of the default sandbox config creates, one cloud
/// mutation each, sorted as `world.json` keys them.
const INFRA: [&str; 6] = [
    "cluster/demo-dev",
    "network/demo-dev",
    "node_group/demo-dev-general",
    "node_group/demo-dev-user",
    "node_group/demo-dev-worker",
    "storage/demo-dev-shared",
];

/// The Kubernetes objects a full deploy creates, as `qhub plan` names them, sorted.
const KUBE: &[&str] = &[
    "ClusterRole.rbac.authorization.k8s.io/dev-alloy",
    "ClusterRole.rbac.authorization.k8s.io/dev-dask-gateway-api",
    "ClusterRole.rbac.authorization.k8s.io/dev-dask-gateway-controller",
    "ClusterRole.rbac.authorization.k8s.io/dev-kbatch",
    "ClusterRole.rbac.authorization.k8s.io/dev-kube-state-metrics",
    "ClusterRole.rbac.authorization.k8s.io/dev-prometheus",
    "ClusterRole.rbac.authorization.k8s.io/dev-traefik",
    "ClusterRoleBinding.rbac.authorization.k8s.io/dev-alloy",
    "ClusterRoleBinding.rbac.authorization.k8s.io/dev-dask-gateway-api",
    "ClusterRoleBinding.rbac.authorization.k8s.io/dev-dask-gateway-controller",
    "ClusterRoleBinding.rbac.authorization.k8s.io/dev-kbatch",
    "ClusterRoleBinding.rbac.authorization.k8s.io/dev-kube-state-metrics",
    "ClusterRoleBinding.rbac.authorization.k8s.io/dev-prometheus",
    "ClusterRoleBinding.rbac.authorization.k8s.io/dev-traefik",
    "ConfigMap/dev-privileged/jupyterhub-sftp-config",
    "ConfigMap/dev/alloy-config",
    "ConfigMap/dev/conda-store-config",
    "ConfigMap/dev/dask-gateway-config",
    "ConfigMap/dev/grafana-config",
    "ConfigMap/dev/grafana-dashboards",
    "ConfigMap/dev/hub-config",
    "ConfigMap/dev/jupyterhub-ssh-config",
    "ConfigMap/dev/jupyterlab-conda",
    "ConfigMap/dev/kbatch-job-template",
    "ConfigMap/dev/loki-config",
    "ConfigMap/dev/prometheus-config",
    "ConfigMap/dev/qhub-welcome",
    "CustomResourceDefinition.apiextensions.k8s.io/daskclusters.gateway.dask.org",
    "CustomResourceDefinition.apiextensions.k8s.io/ingressroutes.traefik.io",
    "CustomResourceDefinition.apiextensions.k8s.io/ingressroutetcps.traefik.io",
    "CustomResourceDefinition.apiextensions.k8s.io/ingressrouteudps.traefik.io",
    "CustomResourceDefinition.apiextensions.k8s.io/middlewares.traefik.io",
    "CustomResourceDefinition.apiextensions.k8s.io/middlewaretcps.traefik.io",
    "CustomResourceDefinition.apiextensions.k8s.io/serverstransports.traefik.io",
    "CustomResourceDefinition.apiextensions.k8s.io/serverstransporttcps.traefik.io",
    "CustomResourceDefinition.apiextensions.k8s.io/tlsoptions.traefik.io",
    "CustomResourceDefinition.apiextensions.k8s.io/tlsstores.traefik.io",
    "CustomResourceDefinition.apiextensions.k8s.io/traefikservices.traefik.io",
    "DaemonSet.apps/dev-privileged/node-exporter",
    "Deployment.apps/dev-privileged/jupyterhub-sftp",
    "Deployment.apps/dev/alloy",
    "Deployment.apps/dev/conda-store-redis",
    "Deployment.apps/dev/conda-store-server",
    "Deployment.apps/dev/conda-store-worker",
    "Deployment.apps/dev/dask-gateway-api",
    "Deployment.apps/dev/dask-gateway-controller",
    "Deployment.apps/dev/grafana",
    "Deployment.apps/dev/hub",
    "Deployment.apps/dev/jupyterhub-ssh",
    "Deployment.apps/dev/kbatch-proxy",
    "Deployment.apps/dev/keycloak",
    "Deployment.apps/dev/kube-state-metrics",
    "Deployment.apps/dev/loki",
    "Deployment.apps/dev/prometheus",
    "Deployment.apps/dev/proxy",
    "Deployment.apps/dev/qhub-welcome",
    "Deployment.apps/dev/traefik",
    "IngressRoute.traefik.io/dev/conda-store-server",
    "IngressRoute.traefik.io/dev/dask-gateway-api",
    "IngressRoute.traefik.io/dev/grafana",
    "IngressRoute.traefik.io/dev/jupyterhub",
    "IngressRoute.traefik.io/dev/keycloak",
    "IngressRoute.traefik.io/dev/qhub-welcome",
    "IngressRouteTCP.traefik.io/dev-privileged/jupyterhub-sftp",
    "IngressRouteTCP.traefik.io/dev/jupyterhub-ssh",
    "Job.batch/dev-privileged/shared-storage-layout",
    "Middleware.traefik.io/dev/dask-gateway-api-strip",
    "Middleware.traefik.io/dev/dask-gateway-clusters-prefix",
    "Middleware.traefik.io/dev/qhub-welcome-strip",
    "Namespace/dev",
    "Namespace/dev-privileged",
    "PersistentVolume/dev-privileged-shared",
    "PersistentVolume/dev-shared",
    "PersistentVolumeClaim/dev-privileged/shared",
    "PersistentVolumeClaim/dev/hub-db",
    "PersistentVolumeClaim/dev/loki-data",
    "PersistentVolumeClaim/dev/prometheus-data",
    "PersistentVolumeClaim/dev/shared",
    "Role.rbac.authorization.k8s.io/dev/jupyterhub",
    "RoleBinding.rbac.authorization.k8s.io/dev/jupyterhub",
    "Secret/dev-privileged/jupyterhub-sftp-host-key",
    "Secret/dev/conda-store",
    "Secret/dev/conda-store-oidc-client",
    "Secret/dev/dask-gateway-hub-token",
    "Secret/dev/grafana-oidc-client",
    "Secret/dev/hub-secrets",
    "Secret/dev/jupyterhub-oidc-client",
    "Secret/dev/jupyterhub-ssh-host-key",
    "Secret/dev/kbatch-hub-token",
    "Secret/dev/keycloak-admin",
    "Secret/dev/keycloak-postgres",
    "Secret/dev/monitoring-hub-token",
    "Secret/dev/qhub-applyset",
    "Secret/dev/qhub-self-signed-tls",
    "Service/dev-privileged/jupyterhub-sftp",
    "Service/dev/conda-store-postgres",
    "Service/dev/conda-store-redis",
    "Service/dev/conda-store-server",
    "Service/dev/dask-gateway-api",
    "Service/dev/grafana",
    "Service/dev/hub",
    "Service/dev/jupyterhub-ssh",
    "Service/dev/kbatch-proxy",
    "Service/dev/keycloak",
    "Service/dev/keycloak-postgres",
    "Service/dev/kube-state-metrics",
    "Service/dev/loki",
    "Service/dev/prometheus",
    "Service/dev/proxy-api",
    "Service/dev/proxy-public",
    "Service/dev/qhub-welcome",
    "Service/dev/traefik",
    "ServiceAccount/dev-privileged/node-exporter",
    "ServiceAccount/dev/alloy",
    "ServiceAccount/dev/dask-gateway-api",
    "ServiceAccount/dev/dask-gateway-controller",
    "ServiceAccount/dev/hub",
    "ServiceAccount/dev/kbatch-proxy",
    "ServiceAccount/dev/kube-state-metrics",
    "ServiceAccount/dev/prometheus",
    "ServiceAccount/dev/traefik",
    "StatefulSet.apps/dev/conda-store-postgres",
    "StatefulSet.apps/dev/keycloak-postgres",
    "TLSStore.traefik.io/dev/default",
];

/// Keycloak's configuration a full deploy creates through the (emulated) admin API, sorted:
/// the login clients of the built components, the groups and the realm.
const IDENTITY: &[&str] = &[
    "keycloak_client/conda_store",
    "keycloak_client/grafana",
    "keycloak_client/jupyterhub",
    "keycloak_group/admin",
    "keycloak_group/analyst",
    "keycloak_group/developer",
    "keycloak_group/users",
    "keycloak_realm/qhub",
];

/// The config's conda environments a full deploy registers and builds in conda-store (the
/// sandbox's emulator), sorted.
const CONDA_ENVIRONMENTS: &[&str] = &[
    "CondaStoreEnvironment/nebari-git/dashboard",
    "CondaStoreEnvironment/nebari-git/dask",
];

/// Every resource a full deploy creates (both stages), sorted.
fn expected() -> Vec<&'static str> {
    let mut all: Vec<&str> = INFRA
        .iter()
        .chain(KUBE.iter())
        .chain(IDENTITY.iter())
        .chain(CONDA_ENVIRONMENTS.iter())
        .copied()
        .collect();
    all.sort_unstable();
    all
}

/// The deploy Lease the engine holds around Kubernetes changes (not one of the deployment's
/// resources; it stays in the API after its release).
const LEASE: &str = "Lease.coordination.k8s.io/kube-system/qhub-deploy-demo-dev";

/// The label every object qhub manages carries.
const MANAGED_BY: &str = "app.kubernetes.io/managed-by";

/// Cloud mutations a full deploy makes (and a full destroy): one per infrastructure resource.
const FULL_DEPLOY_CLOUD_MUTATIONS: u64 = INFRA.len() as u64;

/// Kubernetes writes a full deploy makes: one per object, plus taking and releasing the lease.
const FULL_DEPLOY_KUBE_WRITES: u64 = KUBE.len() as u64 + 2;

/// Mutating calls (cloud and Kubernetes) a full deploy makes; `die_after` counts them all.
const FULL_DEPLOY_MUTATIONS: u64 = FULL_DEPLOY_CLOUD_MUTATIONS + FULL_DEPLOY_KUBE_WRITES;

/// The engine's default concurrency: when the sandbox "dies", up to this many requests may have
/// been in flight, and those already past the sandbox's checks are still carried out.
const CONCURRENCY: u64 = 8;

/// Bounds on the interruption points (die_after = 0, 1, …) a command has before one runs through.
const MIN_POINTS: u64 = 11;
// A full deploy makes about 125 writes with the part-2 platform (JupyterHub, Dask Gateway,
// conda-store) and monitoring; the bound leaves room without letting a runaway loop go on.
const MAX_POINTS: u64 = 160;

/// The `user` node group as `qhub init sandbox` writes it.
const USER_GROUP: &str =
    "    user:\n      instance: sandbox-4cpu-16gb\n      min_nodes: 0\n      max_nodes: 5\n";
/// The `worker` node group as `qhub init sandbox` writes it.
const WORKER_GROUP: &str =
    "    worker:\n      instance: sandbox-4cpu-16gb\n      min_nodes: 0\n      max_nodes: 5\n";

/// What `status` lists and `destroy` deletes: the infrastructure and the Kubernetes objects
/// (Keycloak's configuration lives in Keycloak's database and goes with it), sorted.
fn owned() -> Vec<&'static str> {
    let mut all: Vec<&str> = INFRA.iter().chain(KUBE.iter()).copied().collect();
    all.sort_unstable();
    all
}

/// Everything the Kubernetes stage plans on a fresh cluster: objects, Keycloak's configuration
/// and conda-store's environments, sorted.
fn kube_stage() -> Vec<&'static str> {
    let mut all: Vec<&str> = KUBE
        .iter()
        .chain(IDENTITY.iter())
        .chain(CONDA_ENVIRONMENTS.iter())
        .copied()
        .collect();
    all.sort_unstable();
    all
}

/// The stage a resource id belongs to.
fn stage_of(id: &str) -> &'static str {
    if INFRA.contains(&id) {
        "infrastructure"
    } else if KUBE.contains(&id)
        || IDENTITY.contains(&id)
        || CONDA_ENVIRONMENTS.contains(&id)
        || id.starts_with("FrontDoor/")
    {
        // The front-door check after the Kubernetes stage reports progress as a resource.
        "kubernetes"
    } else {
        panic!("{id} is not an expected resource")
    }
}

/// The files the sandbox persists, byte for byte (`None` when absent).
#[derive(Debug, PartialEq, Eq)]
struct Snapshot {
    world: Option<Vec<u8>>,
    kube: Option<Vec<u8>>,
}

/// The writes the sandbox has counted: cloud mutations, and the Kubernetes API's
/// resourceVersion counter (`None` while there is no kube file).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Writes {
    cloud: u64,
    kube: Option<u64>,
}

impl Writes {
    /// Kubernetes writes since `before`; the kube file must not have gone away in between.
    #[track_caller]
    fn kube_since(&self, before: &Writes) -> u64 {
        match (before.kube, self.kube) {
            (None, None) => 0,
            (None, Some(after)) => after,
            (Some(b), Some(a)) => {
                assert!(
                    a >= b,
                    "the resourceVersion went back: {before:?} -> {self:?}"
                );
                a - b
            }
            (Some(_), None) => panic!("the kube file disappeared: {before:?} -> {self:?}"),
        }
    }
}

/// A deployment in a fresh directory, created with `qhub init sandbox`.
struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let sb = Self { dir };
        let out = sb.run(&[
            "init",
            "sandbox",
            "--project",
            "demo",
            "--domain",
            "demo.example.com",
            "--disable-prompt",
        ]);
        assert_eq!(code(&out), 0, "init: {}", describe(&out));
        assert!(sb.config_path().exists(), "init wrote no config");
        sb
    }

    /// A sandbox that has been deployed once.
    fn deployed() -> Self {
        let sb = Self::new();
        sb.ok(&["deploy", "--disable-prompt"]);
        sb
    }

    /// A fresh sandbox holding a copy of this one: the sandbox's cloud, cluster, Keycloak and
    /// conda-store live in files in its directory that name no path, so the copy is the same
    /// deployment in another place. The tests that interrupt a destroy at every point start each
    /// point from a copy of one deployed sandbox instead of deploying again.
    fn copy(&self) -> Self {
        fn copy_dir(from: &Path, to: &Path) {
            std::fs::create_dir_all(to).expect("mkdir");
            for entry in std::fs::read_dir(from).expect("read_dir") {
                let entry = entry.expect("entry");
                let target = to.join(entry.file_name());
                if entry.file_type().expect("file type").is_dir() {
                    copy_dir(&entry.path(), &target);
                } else {
                    std::fs::copy(entry.path(), &target).expect("copy");
                }
            }
        }
        let dir = tempfile::tempdir().expect("tempdir");
        copy_dir(self.path(), dir.path());
        Self { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn config_path(&self) -> PathBuf {
        self.path().join(CONFIG)
    }

    /// A `qhub` command in the sandbox's directory, with a clean environment for the variables it
    /// reads and stdin not a terminal.
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_qhub"));
        cmd.args(args)
            .current_dir(self.path())
            .env("QHUB_SANDBOX_TIME_SCALE", TIME_SCALE)
            .env_remove("QHUB_SANDBOX_FAULTS")
            .env_remove("QHUB_LOG")
            .env_remove("RUST_LOG")
            .env_remove("PROJECT_ID")
            .stdin(Stdio::null());
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("qhub runs")
    }

    fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = self.command(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().expect("qhub runs")
    }

    /// Runs with `QHUB_SANDBOX_FAULTS` set.
    fn run_faults(&self, args: &[&str], faults: &str) -> Output {
        self.run_env(args, &[("QHUB_SANDBOX_FAULTS", faults)])
    }

    /// Runs and insists on exit 0.
    #[track_caller]
    fn ok(&self, args: &[&str]) -> Output {
        let out = self.run(args);
        assert_eq!(code(&out), 0, "qhub {}: {}", args.join(" "), describe(&out));
        out
    }

    /// `qhub --output json plan [extra…]`, parsed.
    #[track_caller]
    fn plan_json_with(&self, extra: &[&str]) -> Value {
        let mut args = vec!["--output", "json", "plan"];
        args.extend_from_slice(extra);
        let out = self.ok(&args);
        assert_json_stderr(&out, "plan");
        let doc = json_stdout(&out);
        assert!(doc["changes"].is_array(), "plan JSON has no changes: {doc}");
        assert!(
            doc["summary"].is_object(),
            "plan JSON has no summary: {doc}"
        );
        doc
    }

    /// `qhub --output json plan`, parsed.
    #[track_caller]
    fn plan_json(&self) -> Value {
        self.plan_json_with(&[])
    }

    #[track_caller]
    fn assert_plan_empty(&self, context: &str) {
        let doc = self.plan_json();
        assert_eq!(
            doc["changes"],
            json!([]),
            "{context}: the plan is not empty:\n{doc:#}\nworld:\n{:#}\nkube:\n{:#}",
            self.world(),
            self.kube()
        );
    }

    fn edit_config(&self, from: &str, to: &str) {
        let text = std::fs::read_to_string(self.config_path()).expect("config");
        assert!(
            text.contains(from),
            "the config no longer holds {from:?}; update the test:\n{text}"
        );
        std::fs::write(self.config_path(), text.replacen(from, to, 1)).expect("write config");
    }

    fn world_path(&self) -> PathBuf {
        self.path().join(".qhub-sandbox").join("world.json")
    }

    fn kube_path(&self) -> PathBuf {
        self.path().join(".qhub-sandbox").join("kube-demo-dev.json")
    }

    /// Both persisted files, byte for byte.
    fn snapshot(&self) -> Snapshot {
        let read = |p: PathBuf| match std::fs::read(&p) {
            Ok(bytes) => Some(bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => panic!("reading {}: {e}", p.display()),
        };
        Snapshot {
            world: read(self.world_path()),
            kube: read(self.kube_path()),
        }
    }

    /// The sandbox's world; `null` when nothing was ever written.
    #[track_caller]
    fn world(&self) -> Value {
        read_json(&self.world_path())
    }

    /// The saved Kubernetes API (`{"resourceVersion": N, "objects": [...]}`); `null` when there
    /// is no kube file (no cluster, or never written).
    #[track_caller]
    fn kube(&self) -> Value {
        let kube = read_json(&self.kube_path());
        if !kube.is_null() {
            assert!(
                kube["resourceVersion"].is_u64() && kube["objects"].is_array(),
                "the kube file is not {{resourceVersion, objects}}:\n{kube:#}"
            );
        }
        kube
    }

    /// Cloud mutations the sandbox has seen (0 before the first).
    #[track_caller]
    fn mutations(&self) -> u64 {
        let world = self.world();
        if world.is_null() {
            return 0;
        }
        world["stats"]["mutations"]
            .as_u64()
            .unwrap_or_else(|| panic!("world.json has no stats.mutations:\n{world:#}"))
    }

    /// Cloud mutations and the Kubernetes resourceVersion counter.
    #[track_caller]
    fn writes(&self) -> Writes {
        Writes {
            cloud: self.mutations(),
            // What clients wrote over the store's life (the simulated controllers' writes,
            // such as the pods they start, are not counted).
            kube: self.kube()["writes"].as_u64(),
        }
    }

    /// The `kind/name` keys of the resources in the world.
    #[track_caller]
    fn resources(&self) -> Vec<String> {
        let world = self.world();
        if world.is_null() {
            return Vec::new();
        }
        let map = world["resources"]
            .as_object()
            .unwrap_or_else(|| panic!("world.json has no resources map:\n{world:#}"));
        map.keys().cloned().collect()
    }

    /// The objects in the Kubernetes API, as `(resource id, object)`, sorted by id, duplicates
    /// kept.
    #[track_caller]
    fn kube_objects(&self) -> Vec<(String, Value)> {
        let kube = self.kube();
        if kube.is_null() {
            return Vec::new();
        }
        let mut objects: Vec<(String, Value)> = kube["objects"]
            .as_array()
            .expect("checked in kube()")
            .iter()
            // Not the pods the cluster's controllers run for our workloads (they carry an
            // owner reference): they are the cluster's, not ours.
            .filter(|o| o["metadata"]["ownerReferences"].is_null())
            .map(|o| (kube_id(o), o.clone()))
            .collect();
        objects.sort_by(|a, b| a.0.cmp(&b.0));
        objects
    }

    /// The ids of the objects labelled `app.kubernetes.io/managed-by: qhub`, sorted, duplicates
    /// kept.
    #[track_caller]
    fn managed_kube_ids(&self) -> Vec<String> {
        self.kube_objects()
            .into_iter()
            .filter(|(_, o)| o["metadata"]["labels"][MANAGED_BY] == "qhub")
            .map(|(id, _)| id)
            .collect()
    }

    /// The infrastructure is fully deployed: the world holds exactly one resource per expected
    /// id, each once, each with its own cloud id, each named after its key.
    #[track_caller]
    fn assert_infra_deployed(&self, context: &str) {
        let world = self.world();
        let map = world["resources"]
            .as_object()
            .unwrap_or_else(|| panic!("{context}: world.json has no resources:\n{world:#}"));
        let keys: Vec<&str> = map.keys().map(String::as_str).collect();
        assert_eq!(keys, INFRA, "{context}: resources:\n{world:#}");
        let mut cloud_ids = BTreeSet::new();
        for (key, r) in map {
            assert_eq!(
                format!("{}/{}", as_str(&r["kind"]), as_str(&r["name"])),
                *key,
                "{context}: resource stored under the wrong key:\n{world:#}"
            );
            assert_eq!(r["state"], "active", "{context}: {key}:\n{world:#}");
            assert!(
                cloud_ids.insert(as_str(&r["cloud_id"]).to_string()),
                "{context}: duplicate cloud id in:\n{world:#}"
            );
        }
    }

    /// The Kubernetes API holds exactly one object per expected id (no duplicates), each
    /// managed by qhub with its own uid; besides them, at most the deploy lease.
    #[track_caller]
    fn assert_kube_deployed(&self, context: &str) {
        let objects = self.kube_objects();
        let kube = self.kube();
        let ids: Vec<&str> = objects
            .iter()
            .map(|(id, _)| id.as_str())
            .filter(|id| *id != LEASE)
            .collect();
        assert_eq!(ids, KUBE, "{context}: Kubernetes objects:\n{kube:#}");
        assert!(
            objects.iter().filter(|(id, _)| id == LEASE).count() <= 1,
            "{context}: more than one lease:\n{kube:#}"
        );
        let mut uids = BTreeSet::new();
        for (id, o) in objects.iter().filter(|(id, _)| id != LEASE) {
            assert_eq!(
                o["metadata"]["labels"][MANAGED_BY], "qhub",
                "{context}: {id} is not labelled {MANAGED_BY}: qhub:\n{kube:#}"
            );
            assert!(
                uids.insert(as_str(&o["metadata"]["uid"]).to_string()),
                "{context}: duplicate uid in:\n{kube:#}"
            );
        }
    }

    /// Both stages fully deployed.
    #[track_caller]
    fn assert_fully_deployed(&self, context: &str) {
        self.assert_infra_deployed(context);
        self.assert_kube_deployed(context);
    }

    /// No Kubernetes object qhub manages is left (no kube file, or none labelled so).
    #[track_caller]
    fn assert_no_kube_objects(&self, context: &str) {
        let managed = self.managed_kube_ids();
        assert!(
            managed.is_empty(),
            "{context}: the Kubernetes API still holds {managed:?}:\n{:#}",
            self.kube()
        );
    }

    /// Nothing left: an empty world and no managed Kubernetes object.
    #[track_caller]
    fn assert_empty_world(&self, context: &str) {
        let resources = self.resources();
        assert!(
            resources.is_empty(),
            "{context}: world.json still holds {resources:?}:\n{:#}",
            self.world()
        );
        self.assert_no_kube_objects(context);
    }
}

/// A JSON file, parsed; `null` when it does not exist.
#[track_caller]
fn read_json(path: &Path) -> Value {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            panic!(
                "{} does not parse ({e}):\n{}",
                path.display(),
                String::from_utf8_lossy(&bytes)
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Value::Null,
        Err(e) => panic!("reading {}: {e}", path.display()),
    }
}

/// The resource id `qhub plan` gives a Kubernetes object: `Kind[.group]/[namespace/]name`.
#[track_caller]
fn kube_id(obj: &Value) -> String {
    let api_version = as_str(&obj["apiVersion"]);
    let kind = as_str(&obj["kind"]);
    let kind = match api_version.rsplit_once('/') {
        Some((group, _)) => format!("{kind}.{group}"),
        None => kind.to_string(),
    };
    let name = as_str(&obj["metadata"]["name"]);
    match obj["metadata"]["namespace"].as_str() {
        Some(ns) if !ns.is_empty() => format!("{kind}/{ns}/{name}"),
        _ => format!("{kind}/{name}"),
    }
}

fn as_str(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v}"))
}

/// With `--output json`, every stderr line (events and logs alike) is a JSON document; returns
/// them.
#[track_caller]
fn assert_json_stderr(out: &Output, context: &str) -> Vec<Value> {
    let err = stderr(out);
    err.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|e| {
                panic!(
                    "{context} --output json: every stderr line must be JSON, but this one is \
                     not ({e}); a log line written in text?\n{line:?}\nstderr:\n{err}"
                )
            })
        })
        .collect()
}

fn changes(plan: &Value) -> &Vec<Value> {
    plan["changes"].as_array().expect("changes is an array")
}

fn resources_of(plan: &Value) -> Vec<&str> {
    let mut v: Vec<&str> = changes(plan)
        .iter()
        .map(|c| as_str(&c["resource"]))
        .collect();
    v.sort_unstable();
    v
}

/// The changes of a plan in one stage.
fn changes_in<'a>(plan: &'a Value, stage: &str) -> Vec<&'a Value> {
    changes(plan)
        .iter()
        .filter(|c| c["stage"] == stage)
        .collect()
}

/// A plan that creates exactly `ids` (sorted), each in its stage, and does nothing else.
#[track_caller]
fn assert_creates(plan: &Value, ids: &[&str], context: &str) {
    for c in changes(plan) {
        assert_eq!(c["action"], "create", "{context}: not a create: {c}");
        assert_eq!(
            c["stage"],
            stage_of(as_str(&c["resource"])),
            "{context}: {c}"
        );
        assert!(
            c["diff"].as_array().is_some_and(|d| !d.is_empty()),
            "{context}: a create without a diff: {c}"
        );
    }
    assert_eq!(resources_of(plan), ids, "{context}: {plan:#}");
    assert_eq!(plan["summary"]["create"], ids.len(), "{context}: {plan:#}");
    for other in ["update", "replace", "delete"] {
        assert_eq!(plan["summary"][other], 0, "{context}: {plan:#}");
    }
}

/// A plan that creates every expected resource of both stages and does nothing else.
#[track_caller]
fn assert_all_creates(plan: &Value, context: &str) {
    assert_creates(plan, &expected(), context);
}

/// A small, seedable generator (xorshift64*), so the kill test needs no extra crate.
struct Rng(u64);

impl Rng {
    /// From `QHUB_TEST_SEED`, or a fixed seed: every run kills at the same moments.
    fn seeded() -> (Self, u64) {
        let seed = std::env::var("QHUB_TEST_SEED")
            .map(|s| s.parse().expect("QHUB_TEST_SEED is a number"))
            .unwrap_or(0x5eed_11fe);
        (Self(seed | 1), seed)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

/// Checks an interrupted command's exit and what it left: it died right after mutating call
/// `n + 1` (cloud or Kubernetes), so between `n + 1` and `n + CONCURRENCY` calls were carried out
/// (those in flight complete), and cloud calls are stopped at once.
#[track_caller]
fn assert_interrupted(sb: &Sandbox, out: &Output, before: &Writes, n: u64, context: &str) {
    assert_eq!(code(out), 1, "{context}: {}", describe(out));
    assert!(
        stderr(out).contains("killed"),
        "{context}: the death should be reported: {}",
        describe(out)
    );
    let after = sb.writes();
    let cloud = after.cloud - before.cloud;
    if after.kube.is_some() || before.kube.is_none() {
        let total = cloud + after.kube_since(before);
        assert!(
            (n + 1..=n + CONCURRENCY).contains(&total),
            "{context}: it dies right after mutation {}, yet {total} were made ({before:?} -> \
             {after:?}): {}",
            n + 1,
            describe(out)
        );
    }
    assert!(
        cloud <= n + 1,
        "{context}: {cloud} cloud mutations, more than {}",
        n + 1
    );
}

#[test]
fn plan_on_a_fresh_config_shows_only_creates() {
    let sb = Sandbox::new();

    // By stage and component: no object is named, every component is counted.
    let grouped = stdout(&sb.ok(&["plan"]));
    for id in expected() {
        assert!(
            !grouped.contains(&format!("+ {id}\n")),
            "the default plan names `{id}`:\n{grouped}"
        );
    }
    for line in ["  keycloak ", "  keycloak-config ", "  node_group "] {
        assert!(grouped.contains(line), "no `{line}` line:\n{grouped}");
    }
    assert!(
        grouped.contains("(`-v` lists every object and field)"),
        "{grouped}"
    );
    assert!(
        grouped.lines().count() * 2 < expected().len(),
        "{} lines for {} changes:\n{grouped}",
        grouped.lines().count(),
        expected().len()
    );

    let out = sb.ok(&["plan", "-v"]);
    let text = stdout(&out);
    for id in expected() {
        assert!(
            text.contains(&format!("+ {id}\n")),
            "text plan lacks `+ {id}`:\n{text}"
        );
    }
    assert!(
        text.contains("infrastructure:\n") && text.contains("kubernetes:\n"),
        "text plan lacks a stage heading:\n{text}"
    );
    assert!(
        !text.contains("~ ") && !text.contains("-/+ ") && !text.contains("\n    - "),
        "text plan holds something other than creates:\n{text}"
    );
    assert!(
        text.contains(&format!(
            "{} to create, 0 to update, 0 to replace, 0 to delete",
            expected().len()
        )),
        "text plan summary:\n{text}"
    );

    let plan = sb.plan_json();
    assert_all_creates(&plan, "fresh plan");
    for c in changes(&plan) {
        for d in c["diff"].as_array().expect("diff") {
            assert!(d.get("field").is_some_and(Value::is_string), "{d}");
            assert_eq!(d["from"], Value::Null, "a create diffs from nothing: {d}");
            assert!(d.get("to").is_some(), "{d}");
        }
    }
    assert!(sb.world().is_null() || sb.resources().is_empty());
    assert_eq!(sb.mutations(), 0, "plan must not mutate");
    assert!(
        sb.kube().is_null(),
        "plan must not write Kubernetes objects"
    );
}

#[test]
fn deploy_then_plan_is_empty_and_redeploy_makes_no_mutating_call() {
    let sb = Sandbox::new();
    let out = sb.ok(&["deploy", "--disable-prompt"]);
    assert!(
        stdout(&out).contains(&format!("{} done, 0 failed", expected().len())),
        "deploy summary: {}",
        describe(&out)
    );
    sb.assert_fully_deployed("after deploy");
    assert_eq!(
        sb.writes(),
        Writes {
            cloud: FULL_DEPLOY_CLOUD_MUTATIONS,
            kube: Some(FULL_DEPLOY_KUBE_WRITES),
        },
        "the full deploy makes one cloud mutation per infrastructure resource, one Kubernetes \
         write per object, and takes and releases the lease: {}",
        describe(&out)
    );

    sb.assert_plan_empty("after deploy");
    let out = sb.ok(&["plan"]);
    assert!(
        stdout(&out).contains("No changes"),
        "text plan after deploy: {}",
        describe(&out)
    );

    let before = sb.writes();
    let snapshot = sb.snapshot();
    let out = sb.ok(&["deploy", "--disable-prompt"]);
    assert_eq!(
        sb.writes(),
        before,
        "a no-op deploy made mutating calls (cloud or Kubernetes): {}",
        describe(&out)
    );
    assert!(
        sb.snapshot() == snapshot,
        "a no-op deploy changed world.json or the kube file"
    );
    sb.assert_plan_empty("after the second deploy");
}

#[test]
fn raising_max_nodes_plans_one_update_and_changing_instance_a_replace() {
    let sb = Sandbox::deployed();

    sb.edit_config(
        USER_GROUP,
        &USER_GROUP.replace("max_nodes: 5", "max_nodes: 7"),
    );
    let plan = sb.plan_json();
    assert_eq!(changes(&plan).len(), 1, "one change expected:\n{plan:#}");
    let c = &changes(&plan)[0];
    assert_eq!(c["action"], "update", "{plan:#}");
    assert_eq!(c["resource"], "node_group/demo-dev-user", "{plan:#}");
    let diff = c["diff"].as_array().expect("diff");
    assert_eq!(diff.len(), 1, "only max_nodes changed:\n{plan:#}");
    assert_eq!(diff[0]["field"], "max_nodes", "{plan:#}");
    assert_eq!(diff[0]["from"], 5, "{plan:#}");
    assert_eq!(diff[0]["to"], 7, "{plan:#}");
    assert_eq!(plan["summary"]["update"], 1, "{plan:#}");
    assert_eq!(
        plan["summary"]["unchanged"],
        expected().len() - 1,
        "{plan:#}"
    );
    let text = stdout(&sb.ok(&["plan", "-v"]));
    assert!(
        text.contains("~ node_group/demo-dev-user") && text.contains("max_nodes"),
        "text plan of the update:\n{text}"
    );

    let cloud_id = sb.world()["resources"]["node_group/demo-dev-user"]["cloud_id"].clone();
    let before = sb.writes();
    let kube_before = sb.snapshot().kube;
    sb.ok(&["deploy", "--disable-prompt"]);
    sb.assert_plan_empty("after the update");
    assert_eq!(
        sb.writes(),
        Writes {
            cloud: before.cloud + 1,
            ..before
        },
        "an update is one mutating call, and no Kubernetes write"
    );
    assert!(
        sb.snapshot().kube == kube_before,
        "an infrastructure update changed the kube file"
    );
    let world = sb.world();
    let user = &world["resources"]["node_group/demo-dev-user"];
    assert_eq!(user["spec"]["max_nodes"], 7, "{world:#}");
    assert_eq!(
        user["cloud_id"], cloud_id,
        "an in-place update keeps the cloud id"
    );

    sb.edit_config(
        WORKER_GROUP,
        &WORKER_GROUP.replace("sandbox-4cpu-16gb", "sandbox-8cpu-32gb"),
    );
    let plan = sb.plan_json();
    assert_eq!(changes(&plan).len(), 1, "one change expected:\n{plan:#}");
    let c = &changes(&plan)[0];
    assert_eq!(c["action"], "replace", "{plan:#}");
    assert_eq!(c["resource"], "node_group/demo-dev-worker", "{plan:#}");
    let diff = c["diff"].as_array().expect("diff");
    assert!(
        diff.iter().any(|d| d["field"] == "instance"
            && d["from"] == "sandbox-4cpu-16gb"
            && d["to"] == "sandbox-8cpu-32gb"),
        "{plan:#}"
    );
    assert_eq!(plan["summary"]["replace"], 1, "{plan:#}");
    let text = stdout(&sb.ok(&["plan"]));
    assert!(
        text.contains("-/+ node_group/demo-dev-worker"),
        "text plan of the replace:\n{text}"
    );

    let cloud_id = sb.world()["resources"]["node_group/demo-dev-worker"]["cloud_id"].clone();
    sb.ok(&["deploy", "--disable-prompt"]);
    sb.assert_plan_empty("after the replace");
    sb.assert_fully_deployed("after the replace");
    let world = sb.world();
    let worker = &world["resources"]["node_group/demo-dev-worker"];
    assert_eq!(worker["spec"]["instance"], "sandbox-8cpu-32gb", "{world:#}");
    assert_ne!(
        worker["cloud_id"], cloud_id,
        "a replace makes a new resource"
    );
}

#[test]
fn destroy_removes_everything_and_plan_creates_it_again() {
    let sb = Sandbox::deployed();
    let out = sb.ok(&["destroy", "--disable-prompt"]);
    assert!(
        stdout(&out).contains(&format!("{} done, 0 failed", owned().len())),
        "destroy summary: {}",
        describe(&out)
    );
    sb.assert_empty_world("after destroy");
    assert_eq!(
        sb.mutations(),
        2 * FULL_DEPLOY_CLOUD_MUTATIONS,
        "one create and one delete per infrastructure resource"
    );
    assert_all_creates(&sb.plan_json(), "plan after destroy");

    // Destroying nothing changes nothing.
    let snapshot = sb.snapshot();
    let out = sb.ok(&["destroy", "--disable-prompt"]);
    assert_eq!(
        sb.mutations(),
        2 * FULL_DEPLOY_CLOUD_MUTATIONS,
        "destroy of nothing: {}",
        describe(&out)
    );
    assert!(
        sb.snapshot().kube == snapshot.kube,
        "destroy of nothing wrote to Kubernetes: {}",
        describe(&out)
    );

    // And it can be deployed again.
    sb.ok(&["deploy", "--disable-prompt"]);
    sb.assert_fully_deployed("re-deploy after destroy");
    sb.assert_plan_empty("re-deploy after destroy");
}

#[test]
fn status_json_lists_resources_of_both_stages_and_in_sync() {
    let sb = Sandbox::new();
    let doc = json_stdout(&sb.ok(&["--output", "json", "status"]));
    assert_eq!(doc["resources"], json!([]), "{doc:#}");
    assert_eq!(doc["in_sync"], false, "nothing deployed yet: {doc:#}");

    sb.ok(&["deploy", "--disable-prompt"]);
    let out = sb.ok(&["--output", "json", "status"]);
    assert_json_stderr(&out, "status");
    let doc = json_stdout(&out);
    assert_eq!(doc["in_sync"], true, "{doc:#}");
    let mut listed: Vec<&str> = doc["resources"]
        .as_array()
        .unwrap_or_else(|| panic!("resources is not a list: {doc:#}"))
        .iter()
        .map(|r| {
            let id = as_str(&r["resource"]);
            let stage = stage_of(id);
            assert_eq!(r["stage"], stage, "{r}");
            // Cloud resources and Kubernetes objects are `ready` once usable (a cloud that is
            // still working on one says `pending`, with a detail).
            assert_eq!(r["state"], "ready", "{r}");
            assert!(r.get("detail").is_none(), "{r}");
            assert!(r["cloud_id"].is_string(), "{r}");
            id
        })
        .collect();
    listed.sort_unstable();
    assert_eq!(listed, owned(), "{doc:#}");

    let text = stdout(&sb.ok(&["status"]));
    assert!(text.contains("in sync"), "text status:\n{text}");
    // By component: a line each, no object named, Keycloak's configuration included.
    assert!(
        text.lines().count() < owned().len(),
        "{} lines for {} resources:\n{text}",
        text.lines().count(),
        owned().len()
    );
    assert!(
        text.contains("keycloak-config") && text.contains(" ready"),
        "text status:\n{text}"
    );
    let text = stdout(&sb.ok(&["status", "-v"]));
    assert!(text.contains("in sync"), "text status:\n{text}");
    for id in owned() {
        assert!(text.contains(id), "text status -v lacks {id}:\n{text}");
    }

    sb.edit_config(
        USER_GROUP,
        &USER_GROUP.replace("max_nodes: 5", "max_nodes: 6"),
    );
    let doc = json_stdout(&sb.ok(&["--output", "json", "status"]));
    assert_eq!(doc["in_sync"], false, "after an edit: {doc:#}");
    assert_eq!(doc["pending"]["update"], 1, "{doc:#}");
}

#[test]
fn deploy_and_destroy_without_prompt_on_a_non_terminal_are_usage_errors() {
    let sb = Sandbox::new();
    // Even an answer on the (non-terminal) stdin is not a confirmation.
    let mut child = sb
        .command(&["deploy"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn qhub");
    let _ = child.stdin.take().expect("stdin").write_all(b"y\n");
    let out = child.wait_with_output().expect("qhub runs");
    assert_eq!(
        code(&out),
        2,
        "deploy without --disable-prompt: {}",
        describe(&out)
    );
    assert!(
        stderr(&out).contains("--disable-prompt"),
        "the error should say how to proceed: {}",
        describe(&out)
    );
    assert_eq!(sb.mutations(), 0, "a refused deploy changed something");
    sb.assert_empty_world("after a refused deploy");
    assert!(sb.kube().is_null(), "a refused deploy wrote to Kubernetes");

    sb.ok(&["deploy", "--disable-prompt"]);
    let before = sb.snapshot();
    let out = sb.run(&["destroy"]);
    assert_eq!(
        code(&out),
        2,
        "destroy without --disable-prompt: {}",
        describe(&out)
    );
    assert!(
        sb.snapshot() == before,
        "a refused destroy changed world.json or the kube file"
    );
}

#[test]
fn kubernetes_stage_plan_on_a_fresh_config_shows_only_the_kubernetes_creates() {
    let sb = Sandbox::new();
    let out = sb.ok(&["plan", "--stage", "kubernetes", "-v"]);
    let text = stdout(&out);
    for id in kube_stage() {
        assert!(
            text.contains(&format!("+ {id}\n")),
            "text plan --stage kubernetes lacks `+ {id}`:\n{text}"
        );
    }
    for id in INFRA {
        assert!(
            !text.contains(id),
            "plan --stage kubernetes shows {id}:\n{text}"
        );
    }
    assert!(
        text.contains(&format!(
            "{} to create, 0 to update, 0 to replace, 0 to delete",
            kube_stage().len()
        )),
        "text plan summary:\n{text}"
    );

    let plan = sb.plan_json_with(&["--stage", "kubernetes"]);
    assert_creates(
        &plan,
        &kube_stage(),
        "plan --stage kubernetes (no cluster yet)",
    );
    assert_eq!(sb.mutations(), 0, "plan must not mutate");
    assert!(
        sb.kube().is_null(),
        "plan must not write Kubernetes objects"
    );

    let plan = sb.plan_json_with(&["--stage", "infrastructure"]);
    assert_creates(&plan, &INFRA, "plan --stage infrastructure");
}

#[test]
fn kubernetes_stage_deploy_before_the_cluster_exists_fails_then_works_after_infrastructure() {
    let sb = Sandbox::new();
    let out = sb.run(&["deploy", "--stage", "kubernetes", "--disable-prompt"]);
    assert_eq!(
        code(&out),
        1,
        "deploy --stage kubernetes without a cluster: {}",
        describe(&out)
    );
    let err = stderr(&out);
    assert!(
        err.contains("cluster does not exist") || err.contains("before the cluster exists"),
        "the error should say the cluster does not exist: {}",
        describe(&out)
    );
    assert_eq!(sb.mutations(), 0);
    sb.assert_empty_world("after deploy --stage kubernetes without a cluster");
    assert!(sb.kube().is_null(), "{:#}", sb.kube());

    // In JSON: still one document, saying it failed, and JSON lines only on stderr.
    let out = sb.run(&[
        "--output",
        "json",
        "deploy",
        "--stage",
        "kubernetes",
        "--disable-prompt",
    ]);
    assert_eq!(code(&out), 1, "{}", describe(&out));
    assert_json_stderr(&out, "deploy --stage kubernetes");
    // The error document: the stage was refused before anything was planned or applied.
    let doc = json_stdout(&out);
    assert!(
        doc["error"]
            .as_str()
            .is_some_and(|e| e.contains("cluster does not exist")),
        "the JSON result should say the cluster does not exist: {doc:#}"
    );

    // Stage by stage: infrastructure, then Kubernetes.
    let out = sb.ok(&["deploy", "--stage", "infrastructure", "--disable-prompt"]);
    sb.assert_infra_deployed("deploy --stage infrastructure");
    sb.assert_no_kube_objects("deploy --stage infrastructure");
    assert_eq!(
        sb.mutations(),
        FULL_DEPLOY_CLOUD_MUTATIONS,
        "{}",
        describe(&out)
    );
    let plan = sb.plan_json();
    assert_creates(
        &plan,
        &kube_stage(),
        "plan after deploy --stage infrastructure",
    );

    sb.ok(&["deploy", "--stage", "kubernetes", "--disable-prompt"]);
    sb.assert_fully_deployed("deploy --stage kubernetes after the infrastructure");
    assert_eq!(sb.mutations(), FULL_DEPLOY_CLOUD_MUTATIONS);
    sb.assert_plan_empty("after both stages");
}

#[test]
fn kubernetes_stage_destroy_removes_only_the_kubernetes_objects() {
    let sb = Sandbox::deployed();
    let world_before = sb.world();
    // The cluster stays, so its CRDs are kept unless asked (another tenant's objects would go
    // with them), each named in the plan with why.
    let crds: Vec<&str> = KUBE
        .iter()
        .copied()
        .filter(|id| id.starts_with("CustomResourceDefinition."))
        .collect();
    let out = sb.ok(&["destroy", "--stage", "kubernetes", "--disable-prompt"]);
    assert!(
        stdout(&out).contains(&format!("{} done, 0 failed", KUBE.len() - crds.len()))
            && stdout(&out).contains(
                "Kept: CustomResourceDefinition.apiextensions.k8s.io/ingressroutes.traefik.io \
                 (created by this deployment; CRDs outlive a destroy unless asked: re-run with \
                 --delete-crds"
            ),
        "destroy --stage kubernetes: {}",
        describe(&out)
    );
    let mut left = sb.managed_kube_ids();
    left.sort();
    assert_eq!(left, crds, "after destroy --stage kubernetes");
    let out = sb.ok(&[
        "destroy",
        "--stage",
        "kubernetes",
        "--delete-crds",
        "--disable-prompt",
    ]);
    assert!(
        stdout(&out).contains(&format!("{} done, 0 failed", crds.len())),
        "destroy --stage kubernetes --delete-crds: {}",
        describe(&out)
    );
    sb.assert_no_kube_objects("after destroy --stage kubernetes --delete-crds");
    sb.assert_infra_deployed("after destroy --stage kubernetes");
    assert_eq!(
        sb.world(),
        world_before,
        "destroy --stage kubernetes changed the infrastructure"
    );

    let plan = sb.plan_json();
    assert_creates(
        &plan,
        &kube_stage(),
        "plan after destroy --stage kubernetes",
    );
    assert!(
        changes_in(&plan, "infrastructure").is_empty(),
        "no infrastructure change: {plan:#}"
    );
    assert_eq!(plan["summary"]["unchanged"], INFRA.len(), "{plan:#}");

    let status = json_stdout(&sb.ok(&["--output", "json", "status"]));
    assert_eq!(status["in_sync"], false, "{status:#}");
    assert_eq!(
        status["pending"]["create"],
        kube_stage().len(),
        "{status:#}"
    );

    // Destroying the stage again changes nothing; deploying brings the objects back.
    let before = sb.snapshot();
    sb.ok(&["destroy", "--stage", "kubernetes", "--disable-prompt"]);
    assert!(
        sb.snapshot() == before,
        "destroying an empty Kubernetes stage changed something"
    );
    sb.ok(&["deploy", "--disable-prompt"]);
    sb.assert_fully_deployed("deploy after destroy --stage kubernetes");
    assert_eq!(sb.mutations(), FULL_DEPLOY_CLOUD_MUTATIONS);
    sb.assert_plan_empty("deploy after destroy --stage kubernetes");
}

#[test]
fn json_deploy_prints_one_document_and_json_lines_of_events() {
    let sb = Sandbox::new();
    for verb in ["deploy", "destroy"] {
        let out = sb.run(&["--output", "json", verb, "--disable-prompt"]);
        assert_eq!(code(&out), 0, "{verb}: {}", describe(&out));
        let doc = json_stdout(&out);
        assert_eq!(doc["succeeded"], true, "{verb}: {doc:#}");
        let planned = if verb == "deploy" {
            expected().len()
        } else {
            owned().len()
        };
        assert_eq!(changes(&doc["plan"]).len(), planned, "{verb}: {doc:#}");
        assert_eq!(
            doc["applied"]["done"].as_array().map(Vec::len),
            Some(planned),
            "{verb}: {doc:#}"
        );

        let err = stderr(&out);
        let mut events = Vec::new();
        let mut front_door = Vec::new();
        for ev in assert_json_stderr(&out, verb) {
            // Logs are tracing's JSON lines (docs/output.md): the config's warnings about
            // services it enables that are not built yet.
            if ev["event"].is_null() && ev["level"].is_string() {
                continue;
            }
            let name = ev["event"]
                .as_str()
                .unwrap_or_else(|| panic!("{verb}: a stderr line has no `event`: {ev}"));
            if name == "started" {
                let id = as_str(&ev["resource"]);
                assert_eq!(ev["stage"], stage_of(id), "{verb}: {ev}");
            }
            // The front-door check after a deploy reports its progress as a resource of its
            // own, outside the plan: counted apart.
            if ev["resource"]
                .as_str()
                .is_some_and(|r| r.starts_with("FrontDoor/"))
            {
                front_door.push(name.to_string());
                continue;
            }
            events.push(name.to_string());
        }
        let checks = front_door.iter().filter(|e| *e == "started").count();
        assert_eq!(
            checks,
            usize::from(verb == "deploy"),
            "{verb}: one front-door check after a deploy, none after a destroy: {err}"
        );
        assert_eq!(
            events.first().map(String::as_str),
            Some("apply_started"),
            "{verb}: {err}"
        );
        assert_eq!(
            events.iter().filter(|e| *e == "started").count(),
            planned,
            "{verb}: {err}"
        );
        assert_eq!(
            events.iter().filter(|e| *e == "done").count(),
            planned,
            "{verb}: {err}"
        );
    }
    sb.assert_empty_world("after JSON deploy and destroy");

    // A no-op deploy in JSON still prints one document.
    sb.ok(&["deploy", "--disable-prompt"]);
    let out = sb.ok(&["--output", "json", "deploy", "--disable-prompt"]);
    assert_json_stderr(&out, "no-op deploy");
    let doc = json_stdout(&out);
    assert_eq!(doc["succeeded"], true, "{doc:#}");
    assert_eq!(doc["plan"]["changes"], json!([]), "{doc:#}");

    // A failed (interrupted) deploy in JSON: exit 1, still one document, saying so.
    sb.ok(&["destroy", "--disable-prompt"]);
    let out = sb.run_faults(
        &["--output", "json", "deploy", "--disable-prompt"],
        "die_after=0",
    );
    assert_eq!(code(&out), 1, "{}", describe(&out));
    assert_json_stderr(&out, "interrupted deploy");
    let doc = json_stdout(&out);
    assert_eq!(doc["succeeded"], false, "{doc:#}");
    assert_eq!(doc["applied"]["killed"], true, "{doc:#}");

    // Interrupted in the Kubernetes stage, and right after its last call (the lease release,
    // which the engine logs rather than fails on): logs on stderr are JSON too.
    for n in [FULL_DEPLOY_CLOUD_MUTATIONS + 1, FULL_DEPLOY_MUTATIONS - 1] {
        let sb = Sandbox::new();
        let faults = format!("die_after={n}");
        let out = sb.run_faults(&["--output", "json", "deploy", "--disable-prompt"], &faults);
        assert!(matches!(code(&out), 0 | 1), "{faults}: {}", describe(&out));
        assert_json_stderr(&out, &format!("deploy with {faults}"));
        let doc = json_stdout(&out);
        assert_eq!(doc["succeeded"], code(&out) == 0, "{faults}: {doc:#}");
    }
}

/// Runs `deploy` with `die_after = 0, 1, 2, …` in fresh sandboxes until one exits 0, checking
/// each interrupted one with `check`; returns the number of interruption points.
fn for_each_interrupted_deploy(mut check: impl FnMut(&Sandbox, u64, &str)) -> u64 {
    let mut n = 0;
    loop {
        assert!(
            n < MAX_POINTS,
            "deploy was still interrupted with die_after={n}: more interruption points than \
             {MAX_POINTS}"
        );
        let sb = Sandbox::new();
        let faults = format!("die_after={n}");
        let context = format!("deploy with {faults}");
        let before = sb.writes();
        let out = sb.run_faults(&["deploy", "--disable-prompt"], &faults);
        if code(&out) == 0 {
            // die_after reached past the last mutating call that matters: a complete deploy.
            sb.assert_fully_deployed(&context);
            sb.assert_plan_empty(&context);
            break;
        }
        assert_interrupted(&sb, &out, &before, n, &context);
        check(&sb, n, &context);
        n += 1;
    }
    assert!(
        (MIN_POINTS..=MAX_POINTS).contains(&n),
        "a full deploy has {n} interruption points; expected {MIN_POINTS}..={MAX_POINTS}"
    );
    n
}

#[test]
fn interrupted_deploy_at_every_mutation_converges_on_rerun() {
    for_each_interrupted_deploy(|sb, n, context| {
        let after = sb.writes();
        if after.kube.is_none() {
            // Still in the infrastructure stage: each cloud mutation made one resource.
            assert_eq!(
                after.cloud,
                n + 1,
                "{context}: it dies right after mutation {}",
                n + 1
            );
        }
        assert_eq!(
            sb.resources().len() as u64,
            after.cloud,
            "{context}: {:#}",
            sb.world()
        );
        let managed = sb.managed_kube_ids();
        let unique: BTreeSet<&String> = managed.iter().collect();
        assert_eq!(
            unique.len(),
            managed.len(),
            "{context}: duplicates: {managed:?}"
        );
        assert!(
            managed.iter().all(|id| KUBE.contains(&id.as_str())),
            "{context}: unexpected objects: {managed:?}"
        );

        // The re-run does only what is missing: creates the rest, nothing twice.
        let before = sb.writes();
        let out = sb.run(&["--output", "json", "deploy", "--disable-prompt"]);
        let rerun = format!("re-run after {context}");
        assert_eq!(code(&out), 0, "{rerun}: {}", describe(&out));
        assert_json_stderr(&out, &rerun);
        let doc = json_stdout(&out);
        assert_eq!(doc["succeeded"], true, "{rerun}: {doc:#}");
        let plan = &doc["plan"];
        assert!(
            changes(plan).iter().all(|c| c["action"] == "create"),
            "{rerun}: only creates: {plan:#}"
        );
        let infra_creates = changes_in(plan, "infrastructure").len() as u64;
        let kube_creates = changes_in(plan, "kubernetes")
            .iter()
            .filter(|c| {
                let r = as_str(&c["resource"]);
                !r.starts_with("keycloak_") && !r.starts_with("CondaStoreEnvironment/")
            })
            .count() as u64;
        // Keycloak's configuration and conda-store's environments go through their APIs, not
        // Kubernetes writes; a run that has any of them to do still connects to the cluster
        // (and takes the lease).
        let identity_creates = changes_in(plan, "kubernetes").len() as u64 - kube_creates;
        assert_eq!(
            infra_creates,
            FULL_DEPLOY_CLOUD_MUTATIONS - before.cloud,
            "{rerun}: it creates exactly the missing infrastructure: {plan:#}"
        );
        assert_eq!(
            kube_creates as usize,
            KUBE.len() - managed.len(),
            "{rerun}: it creates exactly the missing objects: {plan:#}"
        );
        sb.assert_plan_empty(&format!("after {context} and a re-run"));
        sb.assert_fully_deployed(&format!("after {context} and a re-run"));
        let after = sb.writes();
        assert_eq!(
            after.cloud, FULL_DEPLOY_CLOUD_MUTATIONS,
            "{rerun}: nothing created twice in the cloud"
        );
        let lease = if kube_creates + identity_creates > 0 {
            2
        } else {
            0
        };
        assert_eq!(
            after.kube_since(&before),
            kube_creates + lease,
            "{rerun}: one Kubernetes write per missing object (plus the lease), nothing twice \
             ({before:?} -> {after:?})"
        );
    });

    // die_after=N never triggers on an N-mutation deploy.
    let sb = Sandbox::new();
    let faults = format!("die_after={FULL_DEPLOY_MUTATIONS}");
    let out = sb.run_faults(&["deploy", "--disable-prompt"], &faults);
    assert_eq!(code(&out), 0, "{faults}: {}", describe(&out));
    assert!(
        !stderr(&out).contains("killed"),
        "{faults} must not trigger on a {FULL_DEPLOY_MUTATIONS}-mutation deploy: {}",
        describe(&out)
    );
    sb.assert_fully_deployed(&faults);
}

#[test]
fn interrupted_deploy_then_destroy_leaves_nothing() {
    for_each_interrupted_deploy(|sb, _, context| {
        assert!(!sb.resources().is_empty(), "{context}: nothing was created");

        let out = sb.run(&["destroy", "--disable-prompt"]);
        assert_eq!(code(&out), 0, "destroy after {context}: {}", describe(&out));
        sb.assert_empty_world(&format!("destroy after {context}"));
        assert_all_creates(
            &sb.plan_json(),
            &format!("plan after {context} and destroy"),
        );
    });
}

#[test]
fn interrupted_destroy_converges_on_rerun() {
    let deployed = Sandbox::deployed();
    let mut n = 0;
    loop {
        assert!(
            n < MAX_POINTS,
            "destroy was still interrupted with die_after={n}: more interruption points than \
             {MAX_POINTS}"
        );
        let sb = deployed.copy();
        let faults = format!("die_after={n}");
        let context = format!("destroy with {faults}");
        let before = sb.writes();
        let out = sb.run_faults(&["destroy", "--disable-prompt"], &faults);
        if code(&out) == 0 {
            sb.assert_empty_world(&context);
            break;
        }
        assert_interrupted(&sb, &out, &before, n, &context);
        let deleted = sb.mutations() - before.cloud;
        assert_eq!(
            sb.resources().len() as u64,
            FULL_DEPLOY_CLOUD_MUTATIONS - deleted,
            "{context}: each cloud mutation deleted one resource: {:#}",
            sb.world()
        );
        let out = sb.run(&["destroy", "--disable-prompt"]);
        assert_eq!(code(&out), 0, "re-run after {context}: {}", describe(&out));
        sb.assert_empty_world(&format!("destroy re-run after {context}"));
        assert_eq!(
            sb.mutations(),
            2 * FULL_DEPLOY_CLOUD_MUTATIONS,
            "re-run after {context}: nothing deleted twice"
        );
        n += 1;
    }
    assert!(
        (MIN_POINTS..=MAX_POINTS).contains(&n),
        "a full destroy has {n} interruption points; expected {MIN_POINTS}..={MAX_POINTS}"
    );
}

#[test]
fn interrupted_kubernetes_destroy_converges_on_rerun() {
    let deployed = Sandbox::deployed();
    let mut n = 0;
    loop {
        assert!(n < MAX_POINTS, "destroy --stage kubernetes: die_after={n}");
        let sb = deployed.copy();
        let world = sb.world();
        let faults = format!("die_after={n}");
        let context = format!("destroy --stage kubernetes with {faults}");
        let before = sb.writes();
        // With --delete-crds: an interrupted destroy that deletes the CRDs too converges.
        let args = [
            "destroy",
            "--stage",
            "kubernetes",
            "--delete-crds",
            "--disable-prompt",
        ];
        let out = sb.run_faults(&args, &faults);
        if code(&out) == 0 {
            sb.assert_no_kube_objects(&context);
            break;
        }
        assert_interrupted(&sb, &out, &before, n, &context);
        let left = sb.managed_kube_ids();

        let out = sb.run(&args);
        let rerun = format!("re-run after {context}");
        assert_eq!(code(&out), 0, "{rerun}: {}", describe(&out));
        sb.assert_no_kube_objects(&format!(
            "{rerun} ({left:?} were left by the interrupted destroy)"
        ));
        assert_eq!(sb.world(), world, "{rerun}: the infrastructure changed");
        let plan = sb.plan_json();
        assert_creates(&plan, &kube_stage(), &format!("plan after {rerun}"));
        n += 1;
    }
    assert!(
        n > KUBE.len() as u64,
        "destroy --stage kubernetes has only {n} interruption points"
    );
}

#[test]
fn retryable_faults_do_not_stop_deploy_or_destroy() {
    // Backoff makes each seed take seconds: run them side by side.
    std::thread::scope(|scope| {
        for seed in [1u64, 7, 42] {
            scope.spawn(move || deploy_and_destroy_with_retryable_faults(seed));
        }
    });
}

fn deploy_and_destroy_with_retryable_faults(seed: u64) {
    let sb = Sandbox::new();
    let faults = format!("error_rate=0.3,throttle_rate=0.2,seed={seed}");
    let out = sb.run_faults(&["deploy", "--disable-prompt"], &faults);
    assert_eq!(code(&out), 0, "deploy with {faults}: {}", describe(&out));
    assert!(
        stderr(&out).contains("retrying"),
        "{faults}: no retry happened; is fault injection on? {}",
        describe(&out)
    );
    sb.assert_plan_empty(&format!("after deploy with {faults}"));
    sb.assert_fully_deployed(&format!("after deploy with {faults}"));
    assert_eq!(
        sb.mutations(),
        FULL_DEPLOY_CLOUD_MUTATIONS,
        "{faults}: failed calls are not mutations"
    );

    let out = sb.run_faults(&["destroy", "--disable-prompt"], &faults);
    assert_eq!(code(&out), 0, "destroy with {faults}: {}", describe(&out));
    sb.assert_empty_world(&format!("after destroy with {faults}"));
}

#[test]
fn deploy_while_another_holds_the_lock_fails_and_changes_nothing() {
    let sb = Sandbox::new();
    let lock_dir = sb.path().join(".qhub-sandbox");
    std::fs::create_dir_all(&lock_dir).expect("mkdir");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(lock_dir.join("demo-dev.lock"))
        .expect("open lock file");
    lock.try_lock().expect("the test takes the lock");

    // `status` says a deploy is running.
    let out = sb.ok(&["status"]);
    assert!(
        stdout(&out).contains("a deploy or destroy is running"),
        "{}",
        describe(&out)
    );
    let out = sb.run(&["-o", "json", "status", "--detailed-exitcode"]);
    assert_eq!(code(&out), 3, "{}", describe(&out));
    assert!(
        json_stdout(&out)["deploy_running"].is_string(),
        "{}",
        describe(&out)
    );

    let out = sb.run(&["deploy", "--disable-prompt", "--lock-timeout", "0"]);
    assert_eq!(code(&out), 1, "deploy while locked: {}", describe(&out));
    assert!(
        stderr(&out).contains("lock"),
        "the error should mention the lock: {}",
        describe(&out)
    );
    assert_eq!(sb.mutations(), 0, "a locked-out deploy changed something");
    sb.assert_empty_world("after a locked-out deploy");
    assert!(
        sb.kube().is_null(),
        "a locked-out deploy wrote to Kubernetes"
    );

    lock.unlock().expect("unlock");
    sb.ok(&["deploy", "--disable-prompt"]);
    sb.assert_fully_deployed("deploy after the lock was released");

    lock.try_lock().expect("the test takes the lock again");
    let before = sb.snapshot();
    for args in [
        &["destroy", "--disable-prompt", "--lock-timeout", "0"][..],
        &[
            "destroy",
            "--stage",
            "kubernetes",
            "--disable-prompt",
            "--lock-timeout",
            "0",
        ][..],
    ] {
        let out = sb.run(args);
        let cmd = args.join(" ");
        assert_eq!(code(&out), 1, "{cmd} while locked: {}", describe(&out));
        assert!(stderr(&out).contains("lock"), "{}", describe(&out));
        assert!(
            sb.snapshot() == before,
            "a locked-out `{cmd}` changed world.json or the kube file"
        );
    }
}

#[test]
fn a_second_deploy_waits_for_the_local_lock_up_to_lock_timeout() {
    let sb = Sandbox::new();
    let lock_dir = sb.path().join(".qhub-sandbox");
    std::fs::create_dir_all(&lock_dir).expect("mkdir");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(lock_dir.join("demo-dev.lock"))
        .expect("open lock file");
    lock.try_lock().expect("the test takes the lock");
    let mut child = sb
        .command(&["deploy", "--disable-prompt", "--lock-timeout", "60s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("qhub runs");
    // Released once the deploy reports that it waits, naming the holder.
    let mut err = std::io::BufReader::new(child.stderr.take().expect("stderr"));
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        let n = std::io::BufRead::read_line(&mut err, &mut line).expect("read stderr");
        assert!(n > 0, "qhub ended without waiting for the lock: {seen}");
        seen.push_str(&line);
        if line.contains("waiting (held by") {
            break;
        }
    }
    lock.unlock().expect("unlock");
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut err, &mut rest).expect("read stderr");
    let out = child.wait_with_output().expect("qhub ends");
    assert_eq!(code(&out), 0, "{seen}{rest}");
    sb.assert_fully_deployed("after waiting for the lock");
    // The lock file now names the last holder (free again: status says nothing runs).
    let record = std::fs::read_to_string(lock_dir.join("demo-dev.lock")).unwrap();
    assert!(record.contains("\"command\":\"deploy\""), "{record}");
    let out = sb.ok(&["status"]);
    assert!(!stdout(&out).contains("is running"), "{}", describe(&out));
}

#[test]
fn prevent_deploy_refuses_to_deploy() {
    let sb = Sandbox::new();
    let mut text = std::fs::read_to_string(sb.config_path()).expect("config");
    assert!(!text.contains("prevent_deploy"), "{text}");
    text.push_str("prevent_deploy: true\n");
    std::fs::write(sb.config_path(), text).expect("write config");

    let out = sb.run(&["deploy", "--disable-prompt"]);
    assert_eq!(
        code(&out),
        1,
        "deploy with prevent_deploy: {}",
        describe(&out)
    );
    assert!(
        stderr(&out).contains("prevent_deploy"),
        "the error should name prevent_deploy: {}",
        describe(&out)
    );
    assert_eq!(sb.mutations(), 0);
    sb.assert_empty_world("after a prevented deploy");
    assert!(
        sb.kube().is_null(),
        "a prevented deploy wrote to Kubernetes"
    );
}

#[test]
fn an_unset_secret_fails_plan_naming_the_variable() {
    const VAR: &str = "QHUB_LIFECYCLE_TEST_UNSET_SECRET";
    let sb = Sandbox::new();
    sb.edit_config(
        "  shared_users_group: true\n",
        &format!(
            "  shared_users_group: true\n  keycloak:\n    initial_root_password: QHUB_SECRET_{VAR}\n"
        ),
    );

    let mut cmd = sb.command(&["plan"]);
    cmd.env_remove(VAR);
    let out = cmd.output().expect("qhub runs");
    assert_eq!(code(&out), 1, "plan with {VAR} unset: {}", describe(&out));
    assert!(
        stderr(&out).contains(VAR),
        "the error should name {VAR}: {}",
        describe(&out)
    );

    let out = sb.run_env(&["deploy", "--disable-prompt"], &[]);
    assert_eq!(code(&out), 1, "deploy with {VAR} unset: {}", describe(&out));
    assert_eq!(sb.mutations(), 0);
    assert!(sb.kube().is_null(), "{:#}", sb.kube());

    // With the variable set, the same config plans.
    let out = sb.run_env(&["plan"], &[(VAR, "s3cret-value")]);
    assert_eq!(code(&out), 0, "plan with {VAR} set: {}", describe(&out));
    assert!(!stdout(&out).contains("s3cret-value"), "{}", describe(&out));
}

#[test]
fn sigkilled_deploys_converge_on_rerun() {
    let (mut rng, seed) = Rng::seeded();
    let started = Instant::now();
    let mut killed_mid_deploy = 0;
    // Each change reports two progress lines (started, done).
    let events = 2 * (INFRA.len() + KUBE.len()) as u64;
    for round in 0..5 {
        let sb = Sandbox::new();
        // Kill on the moment qhub reports its `after`-th progress event (an event, not a timer,
        // so the kill lands mid-deploy however loaded the machine is).
        let after = 1 + rng.below(events);
        let context =
            format!("round {round}: SIGKILL at progress event {after} (QHUB_TEST_SEED={seed})");
        let mut child = sb
            // `-v`: a progress line per object, not only per component.
            .command(&["deploy", "--disable-prompt", "-v"])
            // Progress lines, not info logs: they would only slow the test down.
            .env("QHUB_LOG", "warn")
            .env("QHUB_SANDBOX_TIME_SCALE", "0.002")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn qhub deploy");
        let progress = std::io::BufReader::new(child.stderr.take().expect("piped stderr"));
        let mut seen = 0;
        for line in std::io::BufRead::lines(progress).map_while(Result::ok) {
            let object_done = [
                ": Create done",
                ": Update done",
                ": Replace done",
                ": Delete done",
            ]
            .iter()
            .any(|p| line.contains(p));
            if object_done || line.contains(": started ") {
                seen += 1;
                if seen == after {
                    // Child::kill is SIGKILL on unix.
                    let _ = child.kill();
                    break;
                }
            }
        }
        let status = child.wait().expect("wait");
        if status.code().is_none() {
            killed_mid_deploy += 1;
        }
        // Whatever the moment, world.json and the kube file are whole (written atomically) or
        // absent.
        let world = sb.world();
        let leftover = sb.resources().len();
        assert!(leftover <= INFRA.len(), "{context}: {world:#}");
        let managed = sb.managed_kube_ids();
        assert!(managed.len() <= KUBE.len(), "{context}: {managed:?}");

        let out = sb.run(&["deploy", "--disable-prompt"]);
        assert_eq!(code(&out), 0, "{context}: re-run: {}", describe(&out));
        sb.assert_plan_empty(&context);
        sb.assert_fully_deployed(&context);
        assert_eq!(
            sb.mutations(),
            FULL_DEPLOY_CLOUD_MUTATIONS,
            "{context}: each resource is created once ({leftover} before the kill): {:#}",
            sb.world()
        );
    }
    assert!(
        killed_mid_deploy > 0,
        "no deploy was still running when killed (seed {seed}); the test proved nothing"
    );
    // A guard against a runaway loop, not a speed target: the full deploy has grown (SSH/SFTP,
    // the layout Job) and took 49 s with four lifecycle tests sharing two cores.
    assert!(
        started.elapsed() < Duration::from_secs(180),
        "the kill test took {:?}",
        started.elapsed()
    );
}

/// `QHUB_LOG=trace` prints every library's most detailed logs; none of them may carry a
/// credential: the config's Keycloak root password, nor the cloud credentials and bearer tokens
/// the process finds in its environment.
#[test]
fn trace_logs_never_print_a_credential() {
    let sb = Sandbox::new();
    let secrets = [
        ("AWS_SECRET_ACCESS_KEY", "qhubTraceSecret/0123456789"),
        ("AWS_SESSION_TOKEN", "qhubTraceSessionToken0123456789"),
        ("DIGITALOCEAN_TOKEN", "dop_v1_qhubtrace0123456789"),
        (
            "GOOGLE_OAUTH_ACCESS_TOKEN",
            "ya29.qhubTraceBearer0123456789",
        ),
    ];
    let env: Vec<(&str, &str)> = secrets
        .iter()
        .copied()
        .chain([
            ("QHUB_LOG", "trace"),
            ("AWS_ACCESS_KEY_ID", "AKIAQHUBTRACE0000001"),
        ])
        .collect();
    let mut printed = Vec::new();
    let mut run = |args: &[&str]| {
        let out = sb.run_env(args, &env);
        assert_eq!(code(&out), 0, "qhub {}: {}", args.join(" "), describe(&out));
        let all = format!("{}{}", stdout(&out), stderr(&out));
        assert!(
            all.contains("TRACE") || all.contains("trace"),
            "qhub {}: QHUB_LOG=trace printed no trace lines",
            args.join(" ")
        );
        printed.push((args.join(" "), all));
    };
    for args in [
        &["deploy", "--disable-prompt"][..],
        &["plan"],
        &["--output", "json", "plan"],
        &["status"],
    ] {
        run(args);
    }
    // The config holds no password: the deploy generated it into the Secret.
    let shown = sb
        .command(&["secrets", "show", "keycloak-admin"])
        .output()
        .expect("qhub runs");
    assert_eq!(code(&shown), 0, "{}", describe(&shown));
    let password = stdout(&shown).trim().to_string();
    assert!(password.len() >= 8, "{}", describe(&shown));
    run(&["destroy", "--disable-prompt"]);
    for (args, all) in &printed {
        for (name, value) in secrets
            .iter()
            .copied()
            .chain([("the Keycloak root password", password.as_str())])
        {
            assert!(
                !all.contains(value),
                "qhub {args}: {name} appears in the trace output"
            );
        }
    }
}

#[test]
fn a_cascaded_replace_is_shown_as_a_replace_with_its_reason() {
    let sb = Sandbox::deployed();
    // The network and the cluster cannot move region in place: the storage on the network and
    // the node groups on the cluster are replaced with them, and the plan says why.
    sb.edit_config("region: local-1", "region: local-2");
    let plan = sb.plan_json();
    let change = |id: &str| {
        changes(&plan)
            .iter()
            .find(|c| c["resource"] == id)
            .unwrap_or_else(|| panic!("{id} not planned:\n{plan:#}"))
            .clone()
    };
    let group = change("node_group/demo-dev-user");
    assert_eq!(group["action"], "replace", "{plan:#}");
    assert_eq!(group["because"], "cluster/demo-dev", "{plan:#}");
    assert_eq!(
        group["reason"], "replaced because cluster/demo-dev is replaced",
        "{plan:#}"
    );
    let storage = change("storage/demo-dev-shared");
    assert_eq!(storage["action"], "replace", "{plan:#}");
    assert_eq!(storage["because"], "network/demo-dev", "{plan:#}");
    assert!(
        change("network/demo-dev").get("because").is_none(),
        "{plan:#}"
    );
    let text = stdout(&sb.ok(&["plan"]));
    assert!(
        text.contains(
            "-/+ node_group/demo-dev-user  (replaced because cluster/demo-dev is replaced)"
        ),
        "{text}"
    );

    // --allow-replace takes KIND/NAME.
    let out = sb.run(&["plan", "--allow-replace", "cluster"]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("KIND/NAME"), "{}", stderr(&out));
    sb.ok(&["plan", "--allow-replace", "cluster/demo-dev"]);

    // Applied: the dependants go first and come back after, the Kubernetes objects are
    // created again in the new cluster; one of everything remains.
    let old_group = sb.world()["resources"]["node_group/demo-dev-user"]["cloud_id"].clone();
    sb.ok(&["deploy", "--disable-prompt"]);
    sb.assert_plan_empty("after the cascaded replace");
    sb.assert_fully_deployed("after the cascaded replace");
    let world = sb.world();
    assert_eq!(
        world["resources"]["cluster/demo-dev"]["spec"]["region"], "local-2",
        "{world:#}"
    );
    assert_ne!(
        world["resources"]["node_group/demo-dev-user"]["cloud_id"], old_group,
        "the node group was replaced"
    );
}
