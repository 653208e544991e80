//! Argo Workflows v4.1.2 (when `argo_workflows.enabled`; opt-in, `config::init::OPT_IN`): the workflow-controller and
//! argo-server at `/argo`, with login through Keycloak, installed in the platform namespace the
//! way upstream's namespace install does it (argoproj/argo-workflows v4.1.2
//! `manifests/namespace-install/`: `../base/workflow-controller`, `../base/argo-server`, both
//! run with `--namespaced`, and the Roles of `workflow-controller-rbac/` and
//! `argo-server-rbac/`, transcribed in [`rbac::ARGO_WORKFLOW_CONTROLLER`] and
//! [`rbac::ARGO_SERVER`]).
//!
//! What it deploys:
//! - the namespaced CRDs, upstream's files of `manifests/base/crds/minimal/` at v4.1.2 kept
//!   unchanged in `crds/` (the minimal ones: the full ones hit kubernetes/kubernetes#82292);
//!   `ClusterWorkflowTemplate` (cluster-scoped) is left out: a namespaced install cannot read
//!   it, and a cluster-wide kind is not one deployment's to bring;
//! - the controller (service account `argo`, as upstream names it), reading the ConfigMap
//!   [`CONTROLLER_CONFIGMAP`]: the `sso` settings argo-server reads (documented in upstream's
//!   `docs/workflow-controller-configmap.yaml`) and `workflowDefaults` running every
//!   workflow's pods as [`WORKFLOW_ACCOUNT`], which holds upstream's recommended executor Role
//!   (`manifests/quick-start/base/executor/emissary/executor-role.yaml`,
//!   [`rbac::ARGO_WORKFLOW`]);
//! - argo-server (`--auth-mode sso`, plain HTTP behind the ingress, `ARGO_BASE_HREF=/argo/` as
//!   upstream's `docs/argo-server.md` asks behind a path prefix), routed at `/argo` with the
//!   prefix cut, and its Keycloak client [`CLIENT_ID`] (redirect `/argo/oauth2/callback`, the
//!   path upstream's server serves), whose id and secret it reads from Secrets.
//!
//! - SSO RBAC, as upstream documents it (v4.1.2 `docs/argo-server-sso.md`, "SSO RBAC"):
//!   `sso.rbac.enabled`, and one service account per access level ([`SSO_ACCOUNTS`]), annotated
//!   with the rule (`workflows.argoproj.io/rbac-rule`) that picks it and its precedence, with a
//!   long-lived token Secret argo-server finds by name (`<account>.service-account-token`,
//!   `docs/service-account-secrets.md`, "Discovery By Name") and a Role of its level
//!   ([`rbac::ARGO_SSO_ADMIN`], [`rbac::ARGO_SSO_EDIT`], [`rbac::ARGO_SSO_VIEW`]). As in QHub
//!   0.4.5 (`services/argo-workflows/main.tf`), the rules read the client roles `argo_admin`,
//!   `argo_developer` and `argo_viewer` from the `roles` claim (`customGroupClaimName`), which
//!   Keycloak maps from the groups admin, developer and analyst; a user with none of them is
//!   refused (upstream: "If no rule matches, we deny the user access");
//! - `argo_workflows.overrides`: the keys of argo-helm's `argo-workflows` chart values that
//!   QHub users wrote ([`HONOURED_OVERRIDES`], [`Overrides`]); any other key is an error naming
//!   it.
//!
//! Not done: upstream's `workflow-controller` PriorityClass (cluster-scoped) is not created.

use std::collections::BTreeMap;

use base64::Engine as _;
use k8s_openapi::api::core::v1::{
    ConfigMapKeySelector, ContainerPort, EmptyDirVolumeSource, EnvVar, EnvVarSource, HTTPGetAction,
    ObjectFieldSelector, PodSpec, Probe, ResourceRequirements, Secret, Service, ServiceAccount,
    ServicePort, ServiceSpec, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::Value as Json;

use super::{
    Built, CLIENT_SECRET_KEY, Component, ConfigFile, Context, KubeError, Route, client_secret_name,
    keycloak, manifest, rbac, selector,
};
use crate::config::CertificateKind;
use crate::keycloak::{PlatformClient, REALM};
use crate::kubernetes::pods::{self, Placement};
use crate::kubernetes::versions;

/// The component's name.
pub const NAME: &str = "argo-workflows";
/// The controller's Deployment (its service account is upstream's `argo`).
pub const CONTROLLER: &str = "workflow-controller";
/// argo-server's Deployment, Service and service account.
pub const SERVER: &str = rbac::ARGO_SERVER.service_account;
/// The service account every workflow's pods run as.
pub const WORKFLOW_ACCOUNT: &str = rbac::ARGO_WORKFLOW.service_account;
/// The controller's ConfigMap (upstream's name).
pub const CONTROLLER_CONFIGMAP: &str = "workflow-controller-configmap";
/// argo-server's port (upstream's `2746`).
pub const SERVER_PORT: i32 = 2746;
/// The path argo-server is routed at.
pub const PATH: &str = "/argo";
/// The Keycloak client argo-server logs users in with.
pub const CLIENT_ID: &str = "argo-server-sso";
/// The Secret holding the client id (argo reads both id and secret from Secrets).
pub const CLIENT_ID_SECRET: &str = "argo-server-sso-client-id";
/// Its key.
pub const CLIENT_ID_KEY: &str = "client-id";
/// The user upstream's images run as (`USER 8737` in its Dockerfile at v4.1.2).
const UID: i64 = 8737;
/// The annotation naming the rule that picks a service account for an SSO user (upstream's
/// `common.AnnotationKeyRBACRule`).
pub const RBAC_RULE_ANNOTATION: &str = "workflows.argoproj.io/rbac-rule";
/// The annotation holding the rule's precedence, higher first (upstream's
/// `common.AnnotationKeyRBACRulePrecedence`).
pub const RBAC_PRECEDENCE_ANNOTATION: &str = "workflows.argoproj.io/rbac-rule-precedence";
/// The claim argo-server reads users' groups from (`sso.customGroupClaimName`): the client's
/// roles, as Keycloak's `roles` mapper puts them in the ID token (`crate::keycloak::desired`).
pub const GROUP_CLAIM: &str = "roles";

/// One access level of SSO RBAC: the client role that grants it, the groups Keycloak maps to
/// that role, the precedence of its rule, and its RBAC table (whose service account argo-server
/// acts as).
#[derive(Debug, Clone, Copy)]
pub struct SsoAccount {
    /// The client role (`argo_admin`).
    pub role: &'static str,
    /// The platform groups holding the role.
    pub groups: &'static [&'static str],
    /// The rule's precedence (QHub 0.4.5's: 11, 10, 9).
    pub precedence: u32,
    /// The service account and its Role.
    pub table: &'static rbac::Table,
}

impl SsoAccount {
    /// The rule picking the account: an expression over the user's `groups` (upstream's
    /// expr-lang, `docs/argo-server-sso.md`), which hold the `roles` claim here.
    pub fn rule(&self) -> String {
        format!("'{}' in groups", self.role)
    }

    /// The name of its token Secret, which argo-server finds by name (upstream's
    /// `secrets.TokenNameForServiceAccount`: `<account>.service-account-token`).
    pub fn token_secret(&self) -> String {
        format!("{}.service-account-token", self.table.service_account)
    }
}

/// The access levels, highest precedence first: admin, developer (edit) and viewer, mapped
/// from the groups as QHub 0.4.5 mapped them (`argo-workflow-openid-client` `role_mapping`).
pub const SSO_ACCOUNTS: [SsoAccount; 3] = [
    SsoAccount {
        role: "argo_admin",
        groups: &["admin"],
        precedence: 11,
        table: &rbac::ARGO_SSO_ADMIN,
    },
    SsoAccount {
        role: "argo_developer",
        groups: &["developer"],
        precedence: 10,
        table: &rbac::ARGO_SSO_EDIT,
    },
    SsoAccount {
        role: "argo_viewer",
        groups: &["analyst"],
        precedence: 9,
        table: &rbac::ARGO_SSO_VIEW,
    },
];

/// The keys of `argo_workflows.overrides` that are honoured: values of argo-helm's
/// `argo-workflows` chart (argoproj/argo-helm `charts/argo-workflows/values.yaml`, the chart
/// QHub 0.4.5 installed and documented overrides for, `docs/source/admin_guide/argo-workflows.md`).
pub const HONOURED_OVERRIDES: &[&str] = &[
    "controller.extraEnv",
    "controller.extraArgs",
    "controller.resources",
    "controller.parallelism",
    "controller.workflowDefaults",
    "server.extraEnv",
    "server.extraArgs",
    "server.resources",
];

/// What `argo_workflows.overrides` changes, read by [`overrides`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overrides {
    /// `controller.*`: the controller container's extras.
    pub controller: ContainerOverrides,
    /// `server.*`: argo-server's container's extras.
    pub server: ContainerOverrides,
    /// `controller.parallelism`: how many workflows may run at once (the ConfigMap's
    /// `parallelism`, upstream's `docs/workflow-controller-configmap.yaml`).
    pub parallelism: Option<u64>,
    /// `controller.workflowDefaults`: merged over qhub's (which names the workflows' service
    /// account), key by key.
    pub workflow_defaults: Option<Json>,
}

/// A container's overrides (the chart's `extraEnv`, `extraArgs`, `resources`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContainerOverrides {
    /// Environment variables added after qhub's.
    pub extra_env: Vec<EnvVar>,
    /// Arguments added after qhub's.
    pub extra_args: Vec<String>,
    /// Requests and limits replacing qhub's.
    pub resources: Option<ResourceRequirements>,
}

/// Reads `argo_workflows.overrides`: the keys of [`HONOURED_OVERRIDES`], each checked against
/// its type; any other key is an error naming it and the honoured ones.
pub fn overrides(ctx: &Context<'_>) -> Result<Overrides, KubeError> {
    let mut out = Overrides::default();
    let Some(o) = ctx
        .config
        .argo_workflows
        .as_ref()
        .and_then(|t| t.overrides.as_ref())
    else {
        return Ok(out);
    };
    let unsupported = |key: &str| {
        KubeError::Invalid(format!(
            "argo_workflows.overrides.{key} is not supported (honoured: {})",
            HONOURED_OVERRIDES.join(", ")
        ))
    };
    let invalid = |key: &str, what: &str, e: &dyn std::fmt::Display| {
        KubeError::Invalid(format!(
            "argo_workflows.overrides.{key} must be {what}: {e}"
        ))
    };
    for (part, value) in o {
        let Some(section) = value.as_object() else {
            return Err(unsupported(part));
        };
        for (key, v) in section {
            let path = format!("{part}.{key}");
            let target = match part.as_str() {
                "controller" => &mut out.controller,
                "server" => &mut out.server,
                _ => return Err(unsupported(&path)),
            };
            match (part.as_str(), key.as_str()) {
                (_, "extraEnv") => {
                    target.extra_env = serde_json::from_value(v.clone()).map_err(|e| {
                        invalid(&path, "a list of environment variables ({name, value})", &e)
                    })?;
                }
                (_, "extraArgs") => {
                    target.extra_args = serde_json::from_value(v.clone())
                        .map_err(|e| invalid(&path, "a list of strings", &e))?;
                }
                (_, "resources") => {
                    target.resources = Some(
                        serde_json::from_value(v.clone())
                            .map_err(|e| invalid(&path, "{requests, limits}", &e))?,
                    );
                }
                ("controller", "parallelism") => {
                    out.parallelism =
                        Some(v.as_u64().ok_or_else(|| {
                            invalid(&path, "a whole number", &format!("got {v}"))
                        })?);
                }
                ("controller", "workflowDefaults") => {
                    if !v.is_object() {
                        return Err(invalid(
                            &path,
                            "a Workflow (a mapping)",
                            &format!("got {v}"),
                        ));
                    }
                    out.workflow_defaults = Some(v.clone());
                }
                _ => return Err(unsupported(&path)),
            }
        }
    }
    Ok(out)
}

/// `base` with `over` merged in: mappings key by key, anything else replaced.
fn merged(base: &Json, over: &Json) -> Json {
    match (base, over) {
        (Json::Object(b), Json::Object(o)) => {
            let mut out = b.clone();
            for (k, v) in o {
                let next = out.get(k).map_or_else(|| v.clone(), |old| merged(old, v));
                out.insert(k.clone(), next);
            }
            Json::Object(out)
        }
        _ => over.clone(),
    }
}

/// The API group of Argo's kinds.
pub const GROUP: &str = "argoproj.io";
/// The apiVersion of Argo's objects.
pub const API_VERSION: &str = "argoproj.io/v1alpha1";

/// Upstream's minimal CRDs at v4.1.2, unchanged.
const CRDS: [(&str, &str); 7] = [
    ("cronworkflows", include_str!("crds/cronworkflows.yaml")),
    (
        "workflowartifactgctasks",
        include_str!("crds/workflowartifactgctasks.yaml"),
    ),
    (
        "workfloweventbindings",
        include_str!("crds/workfloweventbindings.yaml"),
    ),
    ("workflows", include_str!("crds/workflows.yaml")),
    (
        "workflowtaskresults",
        include_str!("crds/workflowtaskresults.yaml"),
    ),
    (
        "workflowtasksets",
        include_str!("crds/workflowtasksets.yaml"),
    ),
    (
        "workflowtemplates",
        include_str!("crds/workflowtemplates.yaml"),
    ),
];

/// Argo Workflows.
#[derive(Debug, Clone, Copy)]
pub struct ArgoWorkflows;

impl Component for ArgoWorkflows {
    fn name(&self) -> &'static str {
        NAME
    }

    fn enabled(&self, ctx: &Context<'_>) -> bool {
        ctx.config
            .argo_workflows
            .as_ref()
            .is_some_and(|t| t.enabled)
    }

    fn depends_on(&self) -> &'static [&'static str] {
        &["ingress", "keycloak"]
    }

    /// What users create and the controller turns into pods: without the controller nothing
    /// would stop them, so disabling Argo deletes them (the CRDs stay).
    fn creates_at_run_time(&self) -> &'static [(&'static str, &'static str)] {
        &[
            (API_VERSION, "Workflow"),
            (API_VERSION, "CronWorkflow"),
            (API_VERSION, "WorkflowTemplate"),
            (API_VERSION, "WorkflowEventBinding"),
            (API_VERSION, "WorkflowTaskSet"),
            (API_VERSION, "WorkflowTaskResult"),
            (API_VERSION, "WorkflowArtifactGCTask"),
        ]
    }

    fn build(&self, ctx: &Context<'_>) -> Result<Built, KubeError> {
        let o = overrides(ctx)?;
        let mut out = crds()?;
        for table in [
            &rbac::ARGO_WORKFLOW_CONTROLLER,
            &rbac::ARGO_SERVER,
            &rbac::ARGO_WORKFLOW,
        ] {
            out.push(manifest(&ServiceAccount {
                metadata: ctx.meta(NAME, table.service_account),
                ..ServiceAccount::default()
            })?);
            out.extend(rbac::objects(ctx, table.service_account, table)?);
        }
        for account in &SSO_ACCOUNTS {
            out.extend(sso_account(ctx, account)?);
        }
        out.push(client_id_secret(ctx)?);
        out.push(manifest(&controller(ctx, &o.controller))?);
        out.push(manifest(&server(ctx, &o.server))?);
        out.push(manifest(&Service {
            metadata: ctx.meta(NAME, SERVER),
            spec: Some(ServiceSpec {
                selector: Some(selector(SERVER)),
                ports: Some(vec![ServicePort {
                    name: Some("web".into()),
                    port: SERVER_PORT,
                    target_port: Some(IntOrString::String("web".into())),
                    protocol: Some("TCP".into()),
                    ..ServicePort::default()
                }]),
                ..ServiceSpec::default()
            }),
            ..Service::default()
        })?);
        Ok(Built::new(out)
            .images([
                versions::ARGO_WORKFLOW_CONTROLLER,
                versions::ARGO_CLI,
                versions::ARGO_EXEC,
            ])
            .config_file(controller_config(ctx, &o)?)
            .client(client())
            .route(
                Route::new(PATH, SERVER, SERVER_PORT)
                    .strip_prefix()
                    .listed(format!("{PATH}/"), format!("{PATH}/api/v1/version")),
            ))
    }
}

/// argo-server's login client: its roles mapped from the platform groups ([`SSO_ACCOUNTS`]).
pub fn client() -> PlatformClient {
    SSO_ACCOUNTS.iter().fold(
        PlatformClient::new(
            CLIENT_ID,
            "Argo Workflows",
            PATH,
            format!("{PATH}/oauth2/callback"),
        ),
        |client, a| client.role(a.role, a.groups),
    )
}

/// An SSO RBAC account: the service account with its rule, its token Secret, its Role.
fn sso_account(ctx: &Context<'_>, account: &SsoAccount) -> Result<Vec<Json>, KubeError> {
    let name = account.table.service_account;
    let mut meta = ctx.meta(NAME, name);
    meta.annotations = Some(BTreeMap::from([
        (RBAC_RULE_ANNOTATION.to_string(), account.rule()),
        (
            RBAC_PRECEDENCE_ANNOTATION.to_string(),
            account.precedence.to_string(),
        ),
    ]));
    let mut out = vec![manifest(&ServiceAccount {
        metadata: meta,
        ..ServiceAccount::default()
    })?];
    // A long-lived token the API server's token controller fills (Kubernetes docs, "Manually
    // create a long-lived API token for a ServiceAccount"): no data in the manifest.
    let mut token = ctx.meta(NAME, &account.token_secret());
    token.annotations = Some(BTreeMap::from([(
        "kubernetes.io/service-account.name".to_string(),
        name.to_string(),
    )]));
    out.push(manifest(&Secret {
        metadata: token,
        type_: Some("kubernetes.io/service-account-token".into()),
        ..Secret::default()
    })?);
    out.extend(rbac::objects(ctx, name, account.table)?);
    Ok(out)
}

/// Upstream's CRDs, with our labels added (nothing else changed).
fn crds() -> Result<Vec<Json>, KubeError> {
    let labels = super::labels(NAME);
    CRDS.iter()
        .map(|(plural, text)| {
            let mut crd = crate::config::yaml::parse(text)
                .map_err(|e| KubeError::Invalid(format!("Argo's CRD {plural}: {e}")))?
                .to_json();
            let meta = crd
                .get_mut("metadata")
                .and_then(Json::as_object_mut)
                .ok_or_else(|| {
                    KubeError::Invalid(format!("Argo's CRD {plural} has no metadata"))
                })?;
            meta.insert(
                "labels".into(),
                serde_json::to_value(&labels).unwrap_or_default(),
            );
            Ok(crd)
        })
        .collect()
}

/// The public URL of the platform.
fn public_url(ctx: &Context<'_>) -> String {
    let scheme = if super::ingress::tls::enabled(ctx.config) {
        "https"
    } else {
        "http"
    };
    format!("{scheme}://{}", ctx.config.domain)
}

/// The controller's ConfigMap: `sso` (read by argo-server), `workflowDefaults`, and
/// `parallelism` when an override sets it.
pub fn controller_config(ctx: &Context<'_>, o: &Overrides) -> Result<ConfigFile, KubeError> {
    let public = public_url(ctx);
    // argo-server fetches the issuer's discovery document through the platform's own domain;
    // a self-signed certificate cannot be verified there.
    let insecure = ctx.config.certificate.kind == CertificateKind::SelfSigned;
    let sso = format!(
        "issuer: {public}{kc}/realms/{REALM}\n\
         clientId:\n  name: {CLIENT_ID_SECRET}\n  key: {CLIENT_ID_KEY}\n\
         clientSecret:\n  name: {secret}\n  key: {CLIENT_SECRET_KEY}\n\
         redirectUrl: {public}{PATH}/oauth2/callback\n\
         scopes:\n  - email\n  - profile\n\
         customGroupClaimName: {GROUP_CLAIM}\n\
         rbac:\n  enabled: true\n\
         insecureSkipVerify: {insecure}\n",
        kc = keycloak::PATH,
        secret = client_secret_name(CLIENT_ID),
    );
    let ours = serde_json::json!({"spec": {"serviceAccountName": WORKFLOW_ACCOUNT}});
    let defaults = match &o.workflow_defaults {
        Some(over) => merged(&ours, over),
        None => ours,
    };
    // JSON is YAML: the controller reads the value with sigs.k8s.io/yaml.
    let defaults = serde_json::to_string_pretty(&defaults)
        .map_err(|e| KubeError::Invalid(format!("Argo's workflowDefaults: {e}")))?;
    let mut files = BTreeMap::from([
        ("sso".to_string(), sso),
        ("workflowDefaults".to_string(), format!("{defaults}\n")),
    ]);
    if let Some(n) = o.parallelism {
        files.insert("parallelism".to_string(), n.to_string());
    }
    Ok(ConfigFile {
        name: CONTROLLER_CONFIGMAP.into(),
        files,
    })
}

/// `c` with a container's overrides: variables and arguments after qhub's, resources instead.
fn apply(c: &mut k8s_openapi::api::core::v1::Container, o: &ContainerOverrides) {
    if !o.extra_env.is_empty() {
        c.env
            .get_or_insert_with(Vec::new)
            .extend(o.extra_env.iter().cloned());
    }
    if !o.extra_args.is_empty() {
        c.args
            .get_or_insert_with(Vec::new)
            .extend(o.extra_args.iter().cloned());
    }
    if let Some(r) = &o.resources {
        c.resources = Some(r.clone());
    }
}

/// The Secret holding the client id: not a secret, but argo reads it only from a Secret.
fn client_id_secret(ctx: &Context<'_>) -> Result<Json, KubeError> {
    let encoded = base64::engine::general_purpose::STANDARD.encode(CLIENT_ID);
    let mut secret = manifest(&Secret {
        metadata: ctx.meta(NAME, CLIENT_ID_SECRET),
        type_: Some("Opaque".into()),
        ..Secret::default()
    })?;
    secret["data"] = serde_json::json!({ CLIENT_ID_KEY: encoded });
    Ok(secret)
}

fn tmp_volume() -> (Volume, VolumeMount) {
    (
        Volume {
            name: "tmp".into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Volume::default()
        },
        VolumeMount {
            name: "tmp".into(),
            mount_path: "/tmp".into(),
            ..VolumeMount::default()
        },
    )
}

fn pod(
    ctx: &Context<'_>,
    account: &str,
    container: k8s_openapi::api::core::v1::Container,
) -> PodSpec {
    let (volume, _) = tmp_volume();
    let mut pod = PodSpec {
        service_account_name: Some(account.into()),
        containers: vec![container],
        security_context: Some(pods::non_root_pod(UID)),
        volumes: Some(vec![volume]),
        ..PodSpec::default()
    };
    Placement::on_group(ctx.facts, "general").place(&mut pod);
    pod
}

/// The controller: upstream's `workflow-controller-deployment.yaml` with the namespace
/// install's `--namespaced`, our ConfigMap and the pinned executor image.
fn controller(ctx: &Context<'_>, o: &ContainerOverrides) -> k8s_openapi::api::apps::v1::Deployment {
    let mut c = pods::container(
        CONTROLLER,
        versions::ARGO_WORKFLOW_CONTROLLER.reference(),
        pods::resources("50m", "128Mi", "512Mi"),
    );
    c.command = Some(vec!["workflow-controller".into()]);
    c.args = Some(vec![
        "--namespaced".into(),
        "--configmap".into(),
        CONTROLLER_CONFIGMAP.into(),
        "--executor-image".into(),
        versions::ARGO_EXEC.reference(),
    ]);
    c.env = Some(vec![EnvVar {
        name: "LEADER_ELECTION_IDENTITY".into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: "metadata.name".into(),
                ..ObjectFieldSelector::default()
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }]);
    c.ports = Some(vec![
        ContainerPort {
            name: Some("metrics".into()),
            container_port: 9090,
            ..ContainerPort::default()
        },
        ContainerPort {
            name: Some("health".into()),
            container_port: 6060,
            ..ContainerPort::default()
        },
    ]);
    // Upstream's probe: three failures of `/healthz` on 6060, a minute apart.
    c.liveness_probe = Some(Probe {
        http_get: Some(HTTPGetAction {
            path: Some("/healthz".into()),
            port: IntOrString::Int(6060),
            ..HTTPGetAction::default()
        }),
        failure_threshold: Some(3),
        initial_delay_seconds: Some(90),
        period_seconds: Some(60),
        timeout_seconds: Some(30),
        ..Probe::default()
    });
    // It reads its ConfigMap through the API and reloads it on change: no roll needed.
    c.volume_mounts = Some(vec![tmp_volume().1]);
    apply(&mut c, o);
    let mut d = super::deployment(
        ctx,
        CONTROLLER,
        pod(ctx, rbac::ARGO_WORKFLOW_CONTROLLER.service_account, c),
        true,
    );
    d.metadata = ctx.meta(NAME, CONTROLLER);
    d
}

/// argo-server: upstream's `argo-server-deployment.yaml` with the namespace install's
/// `--namespaced`, SSO, plain HTTP (the ingress terminates TLS) and the base href.
fn server(ctx: &Context<'_>, o: &ContainerOverrides) -> k8s_openapi::api::apps::v1::Deployment {
    let mut c = pods::container(
        SERVER,
        versions::ARGO_CLI.reference(),
        pods::resources("50m", "128Mi", "512Mi"),
    );
    c.args = Some(vec![
        "server".into(),
        "--namespaced".into(),
        "--auth-mode".into(),
        "sso".into(),
        "--secure=false".into(),
        "--configmap".into(),
        CONTROLLER_CONFIGMAP.into(),
    ]);
    c.env = Some(vec![
        EnvVar {
            name: "ARGO_BASE_HREF".into(),
            value: Some(format!("{PATH}/")),
            ..EnvVar::default()
        },
        // It reads `sso` at start only: referencing it stamps the ConfigMap's digest on the
        // pod template, so an edit rolls it (`built::stamp_config_hashes`).
        EnvVar {
            name: "SSO_SETTINGS_FROM_CONFIGMAP".into(),
            value_from: Some(EnvVarSource {
                config_map_key_ref: Some(ConfigMapKeySelector {
                    name: CONTROLLER_CONFIGMAP.into(),
                    key: "sso".into(),
                    optional: Some(true),
                }),
                ..EnvVarSource::default()
            }),
            ..EnvVar::default()
        },
    ]);
    c.ports = Some(vec![ContainerPort {
        name: Some("web".into()),
        container_port: SERVER_PORT,
        ..ContainerPort::default()
    }]);
    c.readiness_probe = Some(Probe {
        http_get: Some(HTTPGetAction {
            path: Some("/".into()),
            port: IntOrString::Int(SERVER_PORT),
            scheme: Some("HTTP".into()),
            ..HTTPGetAction::default()
        }),
        initial_delay_seconds: Some(10),
        period_seconds: Some(20),
        ..Probe::default()
    });
    c.volume_mounts = Some(vec![tmp_volume().1]);
    apply(&mut c, o);
    let mut d = super::deployment(ctx, SERVER, pod(ctx, SERVER, c), false);
    d.metadata = ctx.meta(NAME, SERVER);
    d
}

#[cfg(test)]
mod tests;
