//! The RBAC each third-party workload needs, transcribed from what its upstream project
//! publishes for the pinned version (the source is named on each table), and the roles and
//! bindings built from it.
//!
//! A table is the single source: [`objects`] renders it as a ClusterRole (cluster-wide rules)
//! and a namespaced Role (rules that upstream grants in its own namespace, which for us is the
//! platform namespace), each bound to the workload's service account. A test deploys the
//! rendered objects into the in-memory API and checks, through its RBAC evaluator, that every
//! permission of every table is granted where it must be.

use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};
use serde_json::Value as Json;

use super::{Context, KubeError, manifest};

/// Where upstream grants a permission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// Cluster-wide (a ClusterRole bound by a ClusterRoleBinding).
    Cluster,
    /// In the platform namespace only (a Role bound by a RoleBinding there): upstream grants
    /// it in the namespace the workload runs in (`kube-system` in its examples).
    Namespace,
}

/// One upstream rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Permission {
    /// API groups (`""` is the core group).
    pub groups: &'static [&'static str],
    /// Resources, `resource/subresource` for a subresource.
    pub resources: &'static [&'static str],
    /// Verbs.
    pub verbs: &'static [&'static str],
    /// Object names the rule is limited to (empty: every object).
    pub names: &'static [&'static str],
    /// Where it is granted.
    pub reach: Reach,
}

/// One workload's RBAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Table {
    /// The workload's service account, as upstream names it. The component takes its name from
    /// here (`ingress::NAME`), so this module imports no component.
    pub service_account: &'static str,
    /// Where the table is transcribed from (project, file, version).
    pub source: &'static str,
    /// Every rule upstream lists, no more.
    pub permissions: &'static [Permission],
}

const fn cluster(
    groups: &'static [&'static str],
    resources: &'static [&'static str],
    verbs: &'static [&'static str],
) -> Permission {
    Permission {
        groups,
        resources,
        verbs,
        names: &[],
        reach: Reach::Cluster,
    }
}

const READ: &[&str] = &["get", "list", "watch"];

/// Traefik v3.7's Kubernetes CRD provider.
///
/// Source: traefik/traefik v3.7.9,
/// `docs/content/reference/dynamic-configuration/kubernetes-crd-rbac.yml`, which no commit
/// changed from v3.6.0 to v3.7.9 (the newest tag of the copy we could read; the image pinned in
/// `versions.rs` is v3.7.13, a patch release of the same line). Since v3.4
/// Traefik watches ConfigMaps in the namespaces it watches and waits for that watch to sync
/// before it loads any route (traefik/traefik#11739), so without `configmaps` every route is a
/// 404. The `pods` `get` rule upstream marks as needed only for OpenTelemetry attributes (not
/// enabled here) and the `ingresses` rules belong to the `kubernetesingress` provider (not
/// enabled: `--providers.kubernetescrd` only), so neither is granted.
pub const TRAEFIK: Table = Table {
    service_account: "traefik",
    source: "traefik/traefik v3.7.9 docs/content/reference/dynamic-configuration/kubernetes-crd-rbac.yml",
    permissions: &[
        cluster(&[""], &["services", "secrets", "nodes", "configmaps"], READ),
        cluster(
            &["discovery.k8s.io"],
            &["endpointslices"],
            &["list", "watch"],
        ),
        cluster(
            &["traefik.io"],
            &[
                "middlewares",
                "middlewaretcps",
                "ingressroutes",
                "traefikservices",
                "ingressroutetcps",
                "ingressrouteudps",
                "tlsoptions",
                "tlsstores",
                "serverstransports",
                "serverstransporttcps",
            ],
            READ,
        ),
    ],
};

/// The cluster autoscaler on AWS.
///
/// Source: kubernetes/autoscaler tag cluster-autoscaler-1.33.6,
/// `cluster-autoscaler/cloudprovider/aws/examples/cluster-autoscaler-autodiscover.yaml` (the
/// same rules from 1.33.0 to 1.35.2; earlier minors lack only `volumeattachments`). Upstream's
/// `kube-system` Role (ConfigMaps: create/list/watch; its status and priority-expander
/// ConfigMaps by name) is a Role in the platform namespace, where `--namespace` puts the status
/// ConfigMap; its leases are taken in the platform namespace too
/// (`--leader-elect-resource-namespace`), so the lease rules, cluster-wide upstream, are
/// namespaced here. Nothing may write a ConfigMap elsewhere (`aws-auth`, CoreDNS).
pub const CLUSTER_AUTOSCALER: Table = Table {
    service_account: "cluster-autoscaler",
    source: "kubernetes/autoscaler cluster-autoscaler-1.33.6 cluster-autoscaler/cloudprovider/aws/examples/cluster-autoscaler-autodiscover.yaml",
    permissions: &[
        cluster(&[""], &["events", "endpoints"], &["create", "patch"]),
        cluster(&[""], &["pods/eviction"], &["create"]),
        cluster(&[""], &["pods/status"], &["update"]),
        Permission {
            groups: &[""],
            resources: &["endpoints"],
            verbs: &["get", "update"],
            names: &["cluster-autoscaler"],
            reach: Reach::Cluster,
        },
        cluster(&[""], &["nodes"], &["watch", "list", "get", "update"]),
        cluster(
            &[""],
            &[
                "namespaces",
                "pods",
                "services",
                "replicationcontrollers",
                "persistentvolumeclaims",
                "persistentvolumes",
            ],
            &["watch", "list", "get"],
        ),
        cluster(
            &["extensions"],
            &["replicasets", "daemonsets"],
            &["watch", "list", "get"],
        ),
        cluster(&["policy"], &["poddisruptionbudgets"], &["watch", "list"]),
        cluster(
            &["apps"],
            &["statefulsets", "replicasets", "daemonsets"],
            &["watch", "list", "get"],
        ),
        cluster(
            &["storage.k8s.io"],
            &[
                "storageclasses",
                "csinodes",
                "csidrivers",
                "csistoragecapacities",
                "volumeattachments",
            ],
            &["watch", "list", "get"],
        ),
        cluster(
            &["batch", "extensions"],
            &["jobs"],
            &["get", "list", "watch", "patch"],
        ),
        Permission {
            groups: &["coordination.k8s.io"],
            resources: &["leases"],
            verbs: &["create"],
            names: &[],
            reach: Reach::Namespace,
        },
        Permission {
            groups: &["coordination.k8s.io"],
            resources: &["leases"],
            verbs: &["get", "update"],
            names: &["cluster-autoscaler"],
            reach: Reach::Namespace,
        },
        Permission {
            groups: &[""],
            resources: &["configmaps"],
            verbs: &["create", "list", "watch"],
            names: &[],
            reach: Reach::Namespace,
        },
        Permission {
            groups: &[""],
            resources: &["configmaps"],
            verbs: &["delete", "get", "update", "watch"],
            names: &[STATUS_CONFIGMAP, "cluster-autoscaler-priority-expander"],
            reach: Reach::Namespace,
        },
    ],
};

/// The ConfigMap the cluster autoscaler writes its status to (in `--namespace`).
pub const STATUS_CONFIGMAP: &str = "cluster-autoscaler-status";

/// The NVIDIA device plugin: no RBAC at all.
///
/// Source: NVIDIA/k8s-device-plugin v0.19.3, `deployments/static/nvidia-device-plugin.yml`:
/// a DaemonSet with no service account and no role (the Helm chart's role is for GPU feature
/// discovery and the config manager, neither of which we run); its pods mount no token
/// (`automountServiceAccountToken: false`).
pub const NVIDIA_DEVICE_PLUGIN: Table = Table {
    service_account: "nvidia-device-plugin",
    source: "NVIDIA/k8s-device-plugin v0.19.3 deployments/static/nvidia-device-plugin.yml",
    permissions: &[],
};

/// JupyterHub's hub, whose KubeSpawner creates users' pods (and their Services and Secrets)
/// and reads their events, in the platform namespace only.
///
/// Source: jupyterhub/zero-to-jupyterhub-k8s 4.4.0, `jupyterhub/templates/hub/rbac.yaml`: a
/// Role (not a ClusterRole) bound to the hub's service account.
pub const JUPYTERHUB: Table = Table {
    service_account: "hub",
    source: "jupyterhub/zero-to-jupyterhub-k8s 4.4.0 jupyterhub/templates/hub/rbac.yaml",
    permissions: &[
        Permission {
            groups: &[""],
            resources: &["pods", "persistentvolumeclaims", "secrets", "services"],
            verbs: &["get", "watch", "list", "create", "delete"],
            names: &[],
            reach: Reach::Namespace,
        },
        Permission {
            groups: &[""],
            resources: &["events"],
            verbs: READ,
            names: &[],
            reach: Reach::Namespace,
        },
    ],
};

/// Dask Gateway's API server: reads the TLS Secrets of clusters and manages `DaskCluster`
/// objects.
///
/// Source: dask/dask-gateway 2026.3.0, `resources/helm/dask-gateway/templates/gateway/rbac.yaml`
/// (a ClusterRole). Cluster-wide as upstream has it: the server's informer lists DaskClusters
/// in every namespace (`backends/kubernetes/backend.py`, `list_cluster_custom_object`), so a
/// namespaced Role would leave its watch forbidden.
pub const DASK_GATEWAY_API: Table = Table {
    service_account: "dask-gateway-api",
    source: "dask/dask-gateway 2026.3.0 resources/helm/dask-gateway/templates/gateway/rbac.yaml",
    permissions: &[
        cluster(&[""], &["secrets"], &["get"]),
        cluster(&["gateway.dask.org"], &["daskclusters"], &["*"]),
    ],
};

/// Dask Gateway's controller: turns `DaskCluster` objects into scheduler and worker pods, their
/// Service and TLS Secret, and the Traefik routes to them.
///
/// Source: dask/dask-gateway 2026.3.0,
/// `resources/helm/dask-gateway/templates/controller/rbac.yaml` (a ClusterRole; its informers
/// list pods, endpoints and DaskClusters in all namespaces, `backends/kubernetes/controller.py`).
/// The Traefik group is `traefik.io`, the group that release writes its routes in and the one
/// our Traefik serves ([`super::ingress::crds::GROUP`]).
pub const DASK_GATEWAY_CONTROLLER: Table = Table {
    service_account: "dask-gateway-controller",
    source: "dask/dask-gateway 2026.3.0 resources/helm/dask-gateway/templates/controller/rbac.yaml",
    permissions: &[
        cluster(
            &["gateway.dask.org"],
            &["daskclusters", "daskclusters/status"],
            &["*"],
        ),
        cluster(
            &["traefik.io"],
            &["ingressroutes", "ingressroutetcps"],
            &["get", "create", "delete"],
        ),
        cluster(
            &[""],
            &["pods"],
            &["get", "list", "watch", "create", "delete"],
        ),
        cluster(&[""], &["endpoints"], READ),
        cluster(&[""], &["secrets", "services"], &["create", "delete"]),
    ],
};

/// The Prometheus server of the monitoring component: discovers its targets through the API
/// and scrapes the kubelets.
///
/// Source: prometheus-community/helm-charts, `charts/prometheus/templates/clusterrole.yaml` (chart
/// 27.x, app v3.4; the same rules in the copy at commit 2269fda6ceaa). Granted: the reads its
/// service discovery needs for the roles our scrape config uses (`node`, `pod`,
/// `endpointslice`: nodes, pods, services, endpointslices) and `nodes/metrics`, which the
/// kubelet checks for `/metrics` and `/metrics/cadvisor` scraped directly on port 10250. Not
/// granted: `nodes/proxy` (the chart scrapes through the API server's node proxy, which is also
/// the kubelet's exec and log API: far more than metrics), `endpoints` (the deprecated core
/// Endpoints; the `endpointslice` role reads EndpointSlices), `ingresses`, `ingresses/status`
/// and `configmaps` (no `ingress` role, no ConfigMap read by Prometheus) and the `/metrics`
/// non-resource URL (the API server is not scraped).
pub const PROMETHEUS: Table = Table {
    service_account: "prometheus",
    source: "prometheus-community/helm-charts charts/prometheus/templates/clusterrole.yaml (chart 27.x)",
    permissions: &[
        cluster(&[""], &["nodes", "services", "pods"], READ),
        cluster(&[""], &["nodes/metrics"], &["get"]),
        cluster(&["discovery.k8s.io"], &["endpointslices"], READ),
    ],
};

/// kube-state-metrics: lists and watches the objects it reports on.
///
/// Source: kubernetes/kube-state-metrics v2.20.0, `examples/standard/cluster-role.yaml`.
/// kube-state-metrics watches only the resources of its `--resources` flag
/// ([`KUBE_STATE_METRICS_RESOURCES`]), so only those are granted: not `secrets` or
/// `configmaps` (listing Secrets cluster-wide reads every secret's data), service accounts,
/// certificate signing requests, webhooks and admission policies, RBAC objects, network
/// policies, ingresses or leases, which no dashboard shows; nor `tokenreviews` and
/// `subjectaccessreviews` (`create`), which serve only its optional kube-rbac-proxy
/// authentication of scrapes, not enabled here.
pub const KUBE_STATE_METRICS: Table = Table {
    service_account: "kube-state-metrics",
    source: "kubernetes/kube-state-metrics v2.20.0 examples/standard/cluster-role.yaml",
    permissions: &[
        cluster(
            &[""],
            &[
                "nodes",
                "pods",
                "services",
                "namespaces",
                "persistentvolumeclaims",
                "persistentvolumes",
                "resourcequotas",
            ],
            &["list", "watch"],
        ),
        cluster(
            &["apps"],
            &["statefulsets", "daemonsets", "deployments", "replicasets"],
            &["list", "watch"],
        ),
        cluster(&["batch"], &["cronjobs", "jobs"], &["list", "watch"]),
        cluster(
            &["autoscaling"],
            &["horizontalpodautoscalers"],
            &["list", "watch"],
        ),
        cluster(&["policy"], &["poddisruptionbudgets"], &["list", "watch"]),
        cluster(&["storage.k8s.io"], &["storageclasses"], &["list", "watch"]),
    ],
};

/// The resources kube-state-metrics reports on (its `--resources` flag): exactly those
/// [`KUBE_STATE_METRICS`] grants.
pub const KUBE_STATE_METRICS_RESOURCES: &str = "cronjobs,daemonsets,deployments,horizontalpodautoscalers,jobs,namespaces,nodes,persistentvolumeclaims,persistentvolumes,poddisruptionbudgets,pods,replicasets,resourcequotas,services,statefulsets,storageclasses";

/// The Prometheus node exporter: no RBAC (it reads the node's `/proc` and `/sys`, never the
/// API).
///
/// Source: prometheus-community/helm-charts `charts/prometheus-node-exporter/templates/`
/// (a service account and, only for its optional kube-rbac-proxy, a role: not enabled here).
pub const NODE_EXPORTER: Table = Table {
    service_account: "node-exporter",
    source: "prometheus-community/helm-charts charts/prometheus-node-exporter/templates/",
    permissions: &[],
};

/// Grafana: no RBAC (its data sources and dashboards are provisioned from files, not read
/// from the API by a sidecar as the grafana/helm-charts chart's `sidecar` option does).
pub const GRAFANA: Table = Table {
    service_account: "grafana",
    source: "grafana/helm-charts charts/grafana/templates/ (sidecar disabled: no role)",
    permissions: &[],
};

/// Grafana Alloy, the log shipper: discovers pods and tails their logs through the API
/// (`discovery.kubernetes` with role `pod`, `loki.source.kubernetes`).
///
/// Source: grafana/alloy `operations/helm/charts/alloy/templates/rbac.yaml` (a ClusterRole of
/// the chart's `rbac.rules` plus `/metrics`). Granted only what those two components read:
/// pods (list, watch) and their logs (`pods/log`, get), cluster-wide as upstream grants them
/// (the platform's pods live in two namespaces, and kube-system's logs matter too). Not
/// granted: the chart's reads of nodes, services, endpoints, ingresses, events, ConfigMaps,
/// Secrets and the Prometheus operator's objects, which serve components not configured here.
pub const ALLOY: Table = Table {
    service_account: "alloy",
    source: "grafana/alloy operations/helm/charts/alloy/templates/rbac.yaml",
    permissions: &[
        cluster(&[""], &["pods"], &["list", "watch"]),
        cluster(&[""], &["pods/log"], &["get"]),
    ],
};

const fn namespaced(
    groups: &'static [&'static str],
    resources: &'static [&'static str],
    verbs: &'static [&'static str],
) -> Permission {
    Permission {
        groups,
        resources,
        verbs,
        names: &[],
        reach: Reach::Namespace,
    }
}

/// Argo Workflows' controller, namespace install.
///
/// Source: argoproj/argo-workflows v4.1.2,
/// `manifests/namespace-install/workflow-controller-rbac/workflow-controller-role.yaml` (the
/// Role `argo-role`, bound to the service account `argo` in the install's namespace), every
/// rule as written.
pub const ARGO_WORKFLOW_CONTROLLER: Table = Table {
    service_account: "argo",
    source: "argoproj/argo-workflows v4.1.2 manifests/namespace-install/workflow-controller-rbac/workflow-controller-role.yaml",
    permissions: &[
        namespaced(
            &["coordination.k8s.io"],
            &["leases"],
            &["create", "get", "update"],
        ),
        namespaced(
            &[""],
            &["pods", "pods/exec"],
            &[
                "create", "get", "list", "watch", "update", "patch", "delete",
            ],
        ),
        namespaced(&[""], &["configmaps"], &["get", "watch", "list"]),
        namespaced(
            &[""],
            &[
                "persistentvolumeclaims",
                "persistentvolumeclaims/finalizers",
            ],
            &["create", "update", "delete", "get"],
        ),
        namespaced(
            &["argoproj.io"],
            &[
                "workflows",
                "workflows/finalizers",
                "workflowtasksets",
                "workflowtasksets/finalizers",
                "workflowartifactgctasks",
            ],
            &[
                "get", "list", "watch", "update", "patch", "delete", "create",
            ],
        ),
        namespaced(
            &["argoproj.io"],
            &["workflowtemplates", "workflowtemplates/finalizers"],
            READ,
        ),
        namespaced(
            &["argoproj.io"],
            &["workflowtaskresults"],
            &["list", "watch", "deletecollection"],
        ),
        namespaced(&[""], &["serviceaccounts"], &["get", "list"]),
        namespaced(&[""], &["secrets"], &["get"]),
        namespaced(
            &["argoproj.io"],
            &["cronworkflows", "cronworkflows/finalizers"],
            &["get", "list", "watch", "update", "patch", "delete"],
        ),
        namespaced(&[""], &["events"], &["create", "patch"]),
        namespaced(
            &["policy"],
            &["poddisruptionbudgets"],
            &["create", "get", "delete"],
        ),
    ],
};

/// Argo Workflows' server, namespace install.
///
/// Source: argoproj/argo-workflows v4.1.2,
/// `manifests/namespace-install/argo-server-rbac/argo-server-role.yaml` (the Role
/// `argo-server-role`, bound to the service account `argo-server`), every rule as written.
pub const ARGO_SERVER: Table = Table {
    service_account: "argo-server",
    source: "argoproj/argo-workflows v4.1.2 manifests/namespace-install/argo-server-rbac/argo-server-role.yaml",
    permissions: &[
        namespaced(
            &[""],
            &["configmaps"],
            &["get", "watch", "list", "create", "update"],
        ),
        namespaced(&[""], &["secrets"], &["get", "create"]),
        namespaced(
            &[""],
            &["pods", "pods/exec", "pods/log"],
            &["get", "list", "watch", "delete"],
        ),
        namespaced(&[""], &["events"], &["watch", "create", "patch"]),
        namespaced(&[""], &["serviceaccounts"], &["get", "list", "watch"]),
        namespaced(
            &["argoproj.io"],
            &[
                "eventsources",
                "sensors",
                "workflows",
                "workfloweventbindings",
                "workflowtemplates",
                "cronworkflows",
                "cronworkflows/finalizers",
            ],
            &[
                "create", "get", "list", "watch", "update", "patch", "delete",
            ],
        ),
    ],
};

/// The pods of Argo workflows (the service account the controller's `workflowDefaults` gives
/// every workflow).
///
/// Source: argoproj/argo-workflows v4.1.2,
/// `manifests/quick-start/base/executor/emissary/executor-role.yaml` ("Recommended minimum
/// permissions for the `emissary` executor").
pub const ARGO_WORKFLOW: Table = Table {
    service_account: "argo-workflow",
    source: "argoproj/argo-workflows v4.1.2 manifests/quick-start/base/executor/emissary/executor-role.yaml",
    permissions: &[namespaced(
        &["argoproj.io"],
        &["workflowtaskresults"],
        &["create", "patch"],
    )],
};

/// The Argo kinds a user acts on through argo-server, namespaced: upstream's aggregate roles
/// list them (argoproj/argo-workflows v4.1.2,
/// `manifests/cluster-install-no-crds/workflow-controller-rbac/workflow-aggregate-roles.yaml`),
/// without `clusterworkflowtemplates`, which is cluster-scoped and not installed by a namespace
/// install (a Role cannot grant it).
const ARGO_USER_KINDS: &[&str] = &[
    "workflows",
    "workflows/finalizers",
    "workfloweventbindings",
    "workfloweventbindings/finalizers",
    "workflowtemplates",
    "workflowtemplates/finalizers",
    "cronworkflows",
    "cronworkflows/finalizers",
    "workflowtaskresults",
    "workflowtaskresults/finalizers",
];
/// `ARGO_USER_KINDS` and the task sets, which only `argo-aggregate-to-admin` lists.
const ARGO_ADMIN_KINDS: &[&str] = &[
    "workflows",
    "workflows/finalizers",
    "workfloweventbindings",
    "workfloweventbindings/finalizers",
    "workflowtemplates",
    "workflowtemplates/finalizers",
    "cronworkflows",
    "cronworkflows/finalizers",
    "workflowtasksets",
    "workflowtasksets/finalizers",
    "workflowtaskresults",
    "workflowtaskresults/finalizers",
];
/// The verbs of `argo-aggregate-to-edit` and `-admin`.
const ARGO_WRITE: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];
/// What argo-server reads with the SSO user's service account beside Argo's kinds: a
/// workflow's pods and their logs (`util/logs/workflow-logger.go`, `Pods(..).Watch` and
/// `GetLogs`) and events (`server/workflow/workflow_server.go` `WatchEvents`), all through
/// `auth.GetKubeClient(ctx)`, the selected account's client. Upstream's aggregate roles join
/// Kubernetes' `view`/`edit`/`admin`, which grant these; here they are granted alone.
const ARGO_USER_READS: Permission = namespaced(&[""], &["pods", "pods/log", "events"], READ);

/// The account argo-server acts as for a user holding `argo_admin` (SSO RBAC,
/// [`super::argo_workflows`]): upstream's `argo-aggregate-to-admin` in the platform namespace,
/// the pod reads of `ARGO_USER_READS`, and deleting pods (a retry deletes the failed
/// steps' pods with the user's client, `workflow_server.go` `RetryWorkflow`).
///
/// Source: argoproj/argo-workflows v4.1.2,
/// `manifests/cluster-install-no-crds/workflow-controller-rbac/workflow-aggregate-roles.yaml`
/// (`argo-aggregate-to-admin`); the account and its rule as QHub 0.4.5 made them
/// (`services/argo-workflows/main.tf`, `argo-admin`, bound to the chart's admin role).
pub const ARGO_SSO_ADMIN: Table = Table {
    service_account: "argo-admin",
    source: "argoproj/argo-workflows v4.1.2 manifests/cluster-install-no-crds/workflow-controller-rbac/workflow-aggregate-roles.yaml (argo-aggregate-to-admin)",
    permissions: &[
        namespaced(&["argoproj.io"], ARGO_ADMIN_KINDS, ARGO_WRITE),
        ARGO_USER_READS,
        namespaced(&[""], &["pods"], &["delete"]),
    ],
};

/// The account argo-server acts as for a user holding `argo_developer`: upstream's
/// `argo-aggregate-to-edit`, as [`ARGO_SSO_ADMIN`] otherwise.
///
/// Source: argoproj/argo-workflows v4.1.2,
/// `manifests/cluster-install-no-crds/workflow-controller-rbac/workflow-aggregate-roles.yaml`
/// (`argo-aggregate-to-edit`); QHub 0.4.5's `argo-edit`.
pub const ARGO_SSO_EDIT: Table = Table {
    service_account: "argo-edit",
    source: "argoproj/argo-workflows v4.1.2 manifests/cluster-install-no-crds/workflow-controller-rbac/workflow-aggregate-roles.yaml (argo-aggregate-to-edit)",
    permissions: &[
        namespaced(&["argoproj.io"], ARGO_USER_KINDS, ARGO_WRITE),
        ARGO_USER_READS,
        namespaced(&[""], &["pods"], &["delete"]),
    ],
};

/// The account argo-server acts as for a user holding `argo_viewer`: upstream's
/// `argo-aggregate-to-view` and the reads of `ARGO_USER_READS`.
///
/// Source: argoproj/argo-workflows v4.1.2,
/// `manifests/cluster-install-no-crds/workflow-controller-rbac/workflow-aggregate-roles.yaml`
/// (`argo-aggregate-to-view`); QHub 0.4.5's `argo-view`.
pub const ARGO_SSO_VIEW: Table = Table {
    service_account: "argo-view",
    source: "argoproj/argo-workflows v4.1.2 manifests/cluster-install-no-crds/workflow-controller-rbac/workflow-aggregate-roles.yaml (argo-aggregate-to-view)",
    permissions: &[
        namespaced(&["argoproj.io"], ARGO_USER_KINDS, READ),
        ARGO_USER_READS,
    ],
};

/// kbatch-proxy, which runs users' batch Jobs and CronJobs in a namespace of their own.
///
/// Upstream's chart grants nothing (kbatch-dev/helm-chart 0.4.2, `kbatch/templates/`: a
/// ServiceAccount, no role); QHub 0.4.5 bound the account to a ClusterRole granting every verb
/// but `update` on every resource of the core and `batch` groups
/// (`qhub/template/stages/07-kubernetes-services/modules/kubernetes/services/kbatch/main.tf`,
/// `kubernetes_cluster_role.kbatch`), Secrets included. Granted here: exactly the calls
/// kbatch-proxy 0.4.2 makes (kbatch-dev/kbatch 0.4.2 `kbatch-proxy/kbatch_proxy/main.py`),
/// cluster-wide as QHub granted them, since each user's namespace is named after the user
/// (`patch.namespace_for_username`) and made on their first job: `create_namespace`;
/// `create_namespaced_config_map` and `patch_namespaced_config_map` (a job's code);
/// `create`/`read`/`list`/`delete` of `namespaced_job` and `namespaced_cron_job`;
/// `read_namespaced_pod`, `list_namespaced_pod` and `read_namespaced_pod_log` (streamed with a
/// watch, still a `get` of `pods/log`).
pub const KBATCH_PROXY: Table = Table {
    service_account: "kbatch-proxy",
    source: "kbatch-dev/kbatch 0.4.2 kbatch-proxy/kbatch_proxy/main.py (the calls it makes; kbatch-dev/helm-chart 0.4.2 grants no role, QHub 0.4.5 services/kbatch/main.tf a wider ClusterRole)",
    permissions: &[
        cluster(&[""], &["namespaces"], &["create"]),
        cluster(&[""], &["configmaps"], &["create", "patch"]),
        cluster(
            &["batch"],
            &["jobs", "cronjobs"],
            &["create", "get", "list", "delete"],
        ),
        cluster(&[""], &["pods"], &["get", "list"]),
        cluster(&[""], &["pods/log"], &["get"]),
    ],
};

/// Every table.
pub const TABLES: &[&Table] = &[
    &TRAEFIK,
    &CLUSTER_AUTOSCALER,
    &NVIDIA_DEVICE_PLUGIN,
    &JUPYTERHUB,
    &DASK_GATEWAY_API,
    &DASK_GATEWAY_CONTROLLER,
    &PROMETHEUS,
    &KUBE_STATE_METRICS,
    &NODE_EXPORTER,
    &GRAFANA,
    &ALLOY,
    &ARGO_WORKFLOW_CONTROLLER,
    &ARGO_SERVER,
    &ARGO_WORKFLOW,
    &ARGO_SSO_ADMIN,
    &ARGO_SSO_EDIT,
    &ARGO_SSO_VIEW,
    &KBATCH_PROXY,
];

fn policy(p: &Permission) -> PolicyRule {
    let list = |s: &[&str]| s.iter().map(|s| (*s).to_string()).collect::<Vec<_>>();
    PolicyRule {
        api_groups: Some(list(p.groups)),
        resources: Some(list(p.resources)),
        verbs: list(p.verbs),
        resource_names: (!p.names.is_empty()).then(|| list(p.names)),
        ..PolicyRule::default()
    }
}

/// The roles and bindings that grant `table` to its service account (named after
/// `component`'s workload): a ClusterRole `<namespace>-<component>` for the cluster-wide rules
/// (cluster-wide names carry the namespace: two deployments may share a cluster) and a Role
/// `<component>` in the platform namespace for the namespaced ones, each only when it has rules.
pub fn objects(ctx: &Context<'_>, component: &str, table: &Table) -> Result<Vec<Json>, KubeError> {
    let subject = Subject {
        kind: "ServiceAccount".into(),
        name: table.service_account.into(),
        namespace: Some(ctx.namespace().to_string()),
        ..Subject::default()
    };
    let rules = |reach: Reach| -> Vec<PolicyRule> {
        table
            .permissions
            .iter()
            .filter(|p| p.reach == reach)
            .map(policy)
            .collect()
    };
    let mut out = Vec::new();
    let cluster_rules = rules(Reach::Cluster);
    if !cluster_rules.is_empty() {
        let name = format!("{}-{component}", ctx.namespace());
        out.push(manifest(&ClusterRole {
            metadata: ctx.cluster_meta(component, &name),
            rules: Some(cluster_rules),
            ..ClusterRole::default()
        })?);
        out.push(manifest(&ClusterRoleBinding {
            metadata: ctx.cluster_meta(component, &name),
            role_ref: RoleRef {
                api_group: "rbac.authorization.k8s.io".into(),
                kind: "ClusterRole".into(),
                name,
            },
            subjects: Some(vec![subject.clone()]),
        })?);
    }
    let namespaced = rules(Reach::Namespace);
    if !namespaced.is_empty() {
        out.push(manifest(&Role {
            metadata: ctx.meta(component, component),
            rules: Some(namespaced),
        })?);
        out.push(manifest(&RoleBinding {
            metadata: ctx.meta(component, component),
            role_ref: RoleRef {
                api_group: "rbac.authorization.k8s.io".into(),
                kind: "Role".into(),
                name: component.into(),
            },
            subjects: Some(vec![subject]),
        })?);
    }
    Ok(out)
}
