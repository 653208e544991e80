//! Applying manifests: server-side apply with field manager `qhub`, readiness waits under
//! deadlines, deletion, and observing ApplySet members.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::discovery::{ApiCapabilities, ApiResource, Scope};
use serde_json::Value as Json;
use tokio::sync::Mutex;

use super::applyset::{self, ApplySet};
use super::readiness::{self, Readiness};
use super::{FIELD_MANAGER, KubeError, LAST_APPLIED, ObjectRef, recipes};
use crate::plan::{Observed, ResourceState, Stage};

/// A block the API server defaults under one strategy type and forbids under another.
#[derive(Debug, Clone, Copy)]
struct Defaulted {
    group: &'static str,
    kind: &'static str,
    /// JSON pointer of the strategy object.
    path: &'static str,
    /// The type under which the block is forbidden.
    forbidding: &'static str,
    /// The defaulted block.
    field: &'static str,
}

impl Defaulted {
    /// The merge patch that switches to `forbidding` and drops the block, when `manifest`
    /// asks for that type without the block.
    fn clearing(&self, manifest: &Json) -> Option<Json> {
        let strategy = manifest.pointer(self.path)?;
        if strategy.get("type").and_then(Json::as_str) != Some(self.forbidding)
            || strategy.get(self.field).is_some_and(|v| !v.is_null())
        {
            return None;
        }
        let mut inner = serde_json::Map::new();
        inner.insert("type".into(), Json::String(self.forbidding.into()));
        inner.insert(self.field.into(), Json::Null);
        let mut patch = Json::Object(inner);
        for key in self.path.rsplit('/').filter(|k| !k.is_empty()) {
            let mut outer = serde_json::Map::new();
            outer.insert(key.into(), patch);
            patch = Json::Object(outer);
        }
        Some(patch)
    }
}

/// Deployments default `strategy.rollingUpdate` (25%/25%) and StatefulSets and DaemonSets
/// `updateStrategy.rollingUpdate`; apps validation refuses the block once the type is
/// `Recreate` (`OnDelete`): `spec.strategy.rollingUpdate: Forbidden: may not be specified when
/// strategy `type` is 'Recreate'` (kubernetes/kubernetes `pkg/apis/apps/validation/
/// validation.go` `ValidateDeploymentStrategy`; the long-standing trap of
/// kubernetes/kubernetes#24198). Kubernetes' own advice is a merge patch that sets the type and
/// removes the block in one request.
const DEFAULTED_UNDER: &[Defaulted] = &[
    Defaulted {
        group: "apps",
        kind: "Deployment",
        path: "/spec/strategy",
        forbidding: "Recreate",
        field: "rollingUpdate",
    },
    Defaulted {
        group: "apps",
        kind: "StatefulSet",
        path: "/spec/updateStrategy",
        forbidding: "OnDelete",
        field: "rollingUpdate",
    },
    Defaulted {
        group: "apps",
        kind: "DaemonSet",
        path: "/spec/updateStrategy",
        forbidding: "OnDelete",
        field: "rollingUpdate",
    },
];

fn is_crd(r: &ObjectRef) -> bool {
    r.group() == "apiextensions.k8s.io" && r.kind == "CustomResourceDefinition"
}

fn member_of(v: &Json) -> Option<&str> {
    v.pointer(&format!(
        "/metadata/labels/{}",
        applyset::PART_OF_LABEL.replace('/', "~1")
    ))
    .and_then(Json::as_str)
}

fn served_versions(crd: &Json) -> Vec<String> {
    crd.pointer("/spec/versions")
        .and_then(Json::as_array)
        .into_iter()
        .flatten()
        .filter(|v| v.get("served").and_then(Json::as_bool) == Some(true))
        .filter_map(|v| v.get("name").and_then(Json::as_str).map(str::to_string))
        .collect()
}

/// A CRD that exists and is not a member of our ApplySet belongs to someone else (another
/// Traefik on an `existing` cluster): force-applying ours would take its fields over and prune
/// every tenant's objects to our schema, and destroy would delete them all (deleting a CRD
/// deletes its objects). So it is used as it is when it serves every version we need (Ok),
/// and otherwise the deploy stops naming its managers and versions (Err). None: ours, or no
/// verdict needed.
fn shared_crd(r: &ObjectRef, manifest: &Json, live: &Json) -> Option<Result<(), KubeError>> {
    if member_of(live).is_some() && member_of(live) == member_of(manifest) {
        return None;
    }
    let have = served_versions(live);
    let need = served_versions(manifest);
    let missing: Vec<&String> = need.iter().filter(|v| !have.contains(v)).collect();
    if missing.is_empty() {
        tracing::info!(crd = %r.name, "using the cluster's own CRD, not ours");
        return Some(Ok(()));
    }
    let mut managers: Vec<String> = live
        .pointer("/metadata/managedFields")
        .and_then(Json::as_array)
        .into_iter()
        .flatten()
        .filter_map(|m| m.get("manager").and_then(Json::as_str).map(str::to_string))
        .collect();
    managers.sort();
    managers.dedup();
    Some(Err(KubeError::Invalid(format!(
        "the cluster already has the CustomResourceDefinition {} (managed by {}), serving \
         versions [{}]; the platform needs [{}] (missing: {}). qhub does not take over another \
         manager's CRD: upgrade the Traefik that installed it so that it serves {}, or deploy \
         to a cluster without it",
        r.name,
        if managers.is_empty() {
            "an unknown manager".to_string()
        } else {
            managers.join(", ")
        },
        have.join(", "),
        need.join(", "),
        missing
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        missing
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(", "),
    ))))
}

/// How often readiness is polled.
const POLL: Duration = Duration::from_millis(250);

/// The pause before the next look at something waited for since `start`: short at first (a
/// CRD is established, a finalizer released, within moments), [`POLL`] after the first second.
fn poll_after(start: Instant) -> Duration {
    if start.elapsed() < Duration::from_secs(1) {
        POLL / 5
    } else {
        POLL
    }
}

/// Discovered kinds by (group, version, kind).
type KindCache = HashMap<(String, String, String), (ApiResource, ApiCapabilities)>;

/// Where an applier reports what a long wait is waiting for (the object, the detail).
pub type Progress = std::sync::Arc<dyn Fn(&crate::plan::ResourceId, &str) + Send + Sync>;

/// Applies manifests through one client.
#[derive(Clone)]
pub struct Applier {
    client: kube::Client,
    kinds: std::sync::Arc<Mutex<KindCache>>,
    progress: Option<Progress>,
}

/// Whether a group can only come from a CustomResourceDefinition: CRD groups must contain a
/// dot, and `*.k8s.io` and `*.kubernetes.io` are reserved for Kubernetes' own APIs (Kubernetes
/// API conventions; `ValidateCustomResourceDefinitionSpec`).
fn custom_group(group: &str) -> bool {
    group.contains('.') && !group.ends_with(".k8s.io") && !group.ends_with(".kubernetes.io")
}

/// Why the CRD of `group`/`kind` does not serve it yet, from the stored CRDs (None: it does).
fn crd_waiting(crds: &[Json], group: &str, kind: &str) -> Result<Option<String>, String> {
    let Some(crd) = crds.iter().find(|c| {
        c.pointer("/spec/group").and_then(Json::as_str) == Some(group)
            && c.pointer("/spec/names/kind").and_then(Json::as_str) == Some(kind)
    }) else {
        return Err(format!(
            "no CustomResourceDefinition defines {kind}.{group}"
        ));
    };
    let name = crd
        .pointer("/metadata/name")
        .and_then(Json::as_str)
        .unwrap_or_default();
    match readiness::check("CustomResourceDefinition", crd) {
        Readiness::Ready => Ok(None),
        Readiness::Waiting(_) => {
            let conditions: Vec<String> = crd
                .pointer("/status/conditions")
                .and_then(Json::as_array)
                .into_iter()
                .flatten()
                .map(|c| {
                    let s = |k: &str| c.get(k).and_then(Json::as_str).unwrap_or_default();
                    let reason = s("reason");
                    if reason.is_empty() {
                        format!("{} {}", s("type"), s("status"))
                    } else {
                        format!("{} {} ({reason})", s("type"), s("status"))
                    }
                })
                .collect();
            Ok(Some(format!(
                "its CustomResourceDefinition {name} is not Established yet{}",
                if conditions.is_empty() {
                    String::new()
                } else {
                    format!(": {}", conditions.join(", "))
                }
            )))
        }
    }
}

impl std::fmt::Debug for Applier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Applier").finish_non_exhaustive()
    }
}

fn api_err(what: impl Into<String>) -> impl FnOnce(kube::Error) -> KubeError {
    let what = what.into();
    move |source| KubeError::Api { what, source }
}

/// What a workload's pods say while it is not ready.
#[derive(Debug, Default)]
struct PodsSeen {
    /// Why a pod cannot start ([`readiness::pod_failure`]).
    failure: Option<String>,
    /// Restarts a pod went through ([`readiness::pod_restarts`]).
    restarts: Option<String>,
}

/// Runs an idempotent read, retrying retryable errors (throttling, 5xx, transport) a few times
/// with jittered backoff: a plan should not fail on one dropped request.
pub(crate) async fn read<T, F, Fut>(what: &str, mut f: F) -> Result<T, KubeError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, kube::Error>>,
{
    let policy = super::READ_RETRY;
    let mut attempt = 1;
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(source) => {
                let e = KubeError::Api {
                    what: what.to_string(),
                    source,
                };
                if !e.is_retryable()
                    || attempt >= policy.max_attempts
                    || crate::provider::find_killed(&e).is_some()
                {
                    return Err(e);
                }
                let delay = policy.backoff(attempt);
                tracing::debug!(attempt, ?delay, error = %e, "retrying a read");
                tokio::time::sleep(delay).await;
                attempt += 1;
            }
        }
    }
}

impl Applier {
    /// An applier over `client`.
    pub fn new(client: kube::Client) -> Self {
        Self {
            client,
            kinds: Default::default(),
            progress: None,
        }
    }

    /// The same applier, reporting what its long waits wait for to `progress`.
    #[must_use]
    pub fn with_progress(mut self, progress: Progress) -> Self {
        self.progress = Some(progress);
        self
    }

    fn report(&self, r: &ObjectRef, detail: &str) {
        tracing::info!(object = %r.id(), %detail, "waiting");
        if let Some(p) = &self.progress {
            p(&r.id(), detail);
        }
    }

    /// The API of `r`'s kind, once the API server serves it. A kind a CRD defines is served
    /// only once the CRD is Established (NamesAccepted); a create before that answers 404
    /// (apiextensions-apiserver `customresource_handler.go`). So an object of a kind not served
    /// yet waits, reporting progress, until its CRD is Established or `deadline` passes, and
    /// then fails naming the CRD and its conditions.
    async fn served_api(
        &self,
        r: &ObjectRef,
        deadline: Duration,
    ) -> Result<Api<DynamicObject>, KubeError> {
        if !custom_group(r.group()) {
            return self.api(r).await;
        }
        let start = Instant::now();
        let mut last = String::new();
        loop {
            let gvk = GroupVersionKind::gvk(r.group(), r.version(), &r.kind);
            let detail = match kube::discovery::pinned_kind(&self.client, &gvk).await {
                Ok(found) => {
                    let key = (
                        r.group().to_string(),
                        r.version().to_string(),
                        r.kind.clone(),
                    );
                    self.kinds.lock().await.insert(key, found);
                    return self.api(r).await;
                }
                Err(source) => {
                    let e = KubeError::Api {
                        what: format!("discovering {}", r.group_kind()),
                        source,
                    };
                    if !e.is_not_served() {
                        return Err(e);
                    }
                    let crds: Api<DynamicObject> = Api::all_with(
                        self.client.clone(),
                        &ApiResource::from_gvk_with_plural(
                            &GroupVersionKind::gvk(
                                "apiextensions.k8s.io",
                                "v1",
                                "CustomResourceDefinition",
                            ),
                            "customresourcedefinitions",
                        ),
                    );
                    let params = ListParams::default();
                    let list = read("listing the CustomResourceDefinitions", || {
                        crds.list(&params)
                    })
                    .await?;
                    let list: Vec<Json> = list
                        .items
                        .iter()
                        .filter_map(|c| serde_json::to_value(c).ok())
                        .collect();
                    match crd_waiting(&list, r.group(), &r.kind) {
                        Ok(Some(why)) => why,
                        // Established between the two reads: discover again.
                        Ok(None) => "its CustomResourceDefinition was just established".into(),
                        Err(why) => why,
                    }
                }
            };
            if start.elapsed() + POLL > deadline {
                return Err(KubeError::NotReady {
                    id: r.id(),
                    seconds: start.elapsed().as_secs_f64(),
                    detail: format!(
                        "the API server does not serve {} yet: {detail}",
                        r.group_kind()
                    ),
                });
            }
            if detail != last {
                self.report(r, &detail);
                last = detail;
            }
            tokio::time::sleep(poll_after(start)).await;
        }
    }

    /// Waits until an object that is being deleted (a `deletionTimestamp`, finalizers still
    /// to run) is gone, so that what replaces it is created rather than written into an object
    /// about to vanish. A namespace being deleted refuses new content with 403 until its
    /// contents are gone (the `NamespaceLifecycle` admission plugin): a deploy right after a
    /// destroy waits here for it, saying so.
    async fn wait_deleted(
        &self,
        r: &ObjectRef,
        api: &Api<DynamicObject>,
        deadline: Duration,
    ) -> Result<(), KubeError> {
        let start = Instant::now();
        let mut reported = false;
        loop {
            let Some(live) = read(&format!("reading {}", r.id()), || api.get_opt(&r.name)).await?
            else {
                return Ok(());
            };
            if live.metadata.deletion_timestamp.is_none() {
                return Ok(());
            }
            let finalizers = live.metadata.finalizers.clone().unwrap_or_default();
            let phase = serde_json::to_value(&live).ok().and_then(|v| {
                v.pointer("/status/phase")
                    .and_then(Json::as_str)
                    .map(str::to_string)
            });
            let detail = format!(
                "still being deleted (by an earlier destroy or replace){}{}: waiting until it is \
                 gone before creating it again",
                phase.map(|p| format!(", phase {p}")).unwrap_or_default(),
                if finalizers.is_empty() {
                    String::new()
                } else {
                    format!(", finalizers {}", finalizers.join(", "))
                }
            );
            if start.elapsed() + POLL > deadline {
                return Err(KubeError::NotReady {
                    id: r.id(),
                    seconds: start.elapsed().as_secs_f64(),
                    detail,
                });
            }
            if !reported {
                self.report(r, &detail);
                reported = true;
            }
            tokio::time::sleep(poll_after(start)).await;
        }
    }

    /// The client.
    pub fn client(&self) -> kube::Client {
        self.client.clone()
    }

    /// The API resource of a group/version/kind, from discovery (cached per applier).
    pub async fn resolve(
        &self,
        group: &str,
        version: &str,
        kind: &str,
    ) -> Result<(ApiResource, ApiCapabilities), KubeError> {
        let key = (group.to_string(), version.to_string(), kind.to_string());
        if let Some(found) = self.kinds.lock().await.get(&key) {
            return Ok(found.clone());
        }
        let gvk = GroupVersionKind::gvk(group, version, kind);
        let found = read(&format!("discovering {kind}.{group}/{version}"), || {
            kube::discovery::pinned_kind(&self.client, &gvk)
        })
        .await?;
        self.kinds.lock().await.insert(key, found.clone());
        Ok(found)
    }

    async fn api(&self, r: &ObjectRef) -> Result<Api<DynamicObject>, KubeError> {
        let (ar, caps) = self.resolve(r.group(), r.version(), &r.kind).await?;
        Ok(match (caps.scope, &r.namespace) {
            (Scope::Namespaced, Some(ns)) => Api::namespaced_with(self.client.clone(), ns, &ar),
            (Scope::Namespaced, None) => Api::default_namespaced_with(self.client.clone(), &ar),
            (Scope::Cluster, _) => Api::all_with(self.client.clone(), &ar),
        })
    }

    /// Server-side applies `manifest`, recording `comparable` in the [`LAST_APPLIED`]
    /// annotation, then waits until it is ready or `deadline` passes.
    pub async fn apply(
        &self,
        manifest: &Json,
        comparable: &Json,
        deadline: Duration,
    ) -> Result<(), KubeError> {
        let r = ObjectRef::of(manifest)?;
        let mut body = manifest.clone();
        if let Some(meta) = body.get_mut("metadata").and_then(Json::as_object_mut) {
            let annotations = meta
                .entry("annotations")
                .or_insert_with(|| serde_json::json!({}));
            if let Some(a) = annotations.as_object_mut() {
                a.insert(LAST_APPLIED.into(), Json::String(comparable.to_string()));
            }
        }
        let api = self.served_api(&r, deadline).await?;
        if recipes::use_existing(manifest) {
            let live = read(&format!("reading {}", r.id()), || api.get_opt(&r.name)).await?;
            if let Some(live) = live
                && !is_member(&live, manifest)
            {
                // Someone else's: used as it is, never taken over.
                tracing::info!(object = %r.id(), "exists and was not created by qhub: used as it is");
                return self.wait_ready(&r, &api, deadline).await;
            }
        }
        if let Some(required) = recipes::requirement(manifest)? {
            self.check_requirement(&r, &required).await?;
        }
        if let Some(recipe) = recipes::recipe(manifest)? {
            // Keep what the live Secret holds; generate only what it lacks.
            let live = read(&format!("reading {}", r.id()), || api.get_opt(&r.name)).await?;
            let live = live
                .map(|l| serde_json::to_value(&l))
                .transpose()
                .map_err(|e| KubeError::Invalid(e.to_string()))?;
            body = recipes::fill(&body, &recipe, live.as_ref())?;
        }
        if let Some(derived) = recipes::derived(manifest)? {
            let value = self.derive(&derived).await?;
            if let Some(slot) = body.pointer_mut(&derived.path) {
                *slot = value;
            }
        }
        if is_crd(&r) {
            let live = read(&format!("reading {}", r.id()), || api.get_opt(&r.name)).await?;
            if let Some(live) = live {
                let live =
                    serde_json::to_value(&live).map_err(|e| KubeError::Invalid(e.to_string()))?;
                if let Some(verdict) = shared_crd(&r, manifest, &live) {
                    // Another manager's CRD: used as it is, never taken over.
                    return verdict;
                }
            }
        }
        self.clear_defaulted(&r, &api, manifest).await?;
        let params = PatchParams::apply(FIELD_MANAGER).force();
        let applied = api
            .patch(&r.name, &params, &Patch::Apply(&body))
            .await
            .map_err(api_err(format!("applying {}", r.id())))?;
        if applied.metadata.deletion_timestamp.is_some() {
            // Applied to an object on its way out (a namespace a destroy just deleted): it
            // will vanish, taking what we applied with it. Wait until it is gone, then create
            // it anew.
            self.wait_deleted(&r, &api, deadline).await?;
            api.patch(&r.name, &params, &Patch::Apply(&body))
                .await
                .map_err(api_err(format!("applying {}", r.id())))?;
        }
        self.wait_ready(&r, &api, deadline).await
    }

    /// Removes, in one merge patch that also sets the new type, a block the API server
    /// defaulted under a strategy type the manifest now leaves ([`DEFAULTED_UNDER`]): no field
    /// manager owns it, so server-side apply would keep it and validation refuse the result.
    async fn clear_defaulted(
        &self,
        r: &ObjectRef,
        api: &Api<DynamicObject>,
        manifest: &Json,
    ) -> Result<(), KubeError> {
        let Some((d, patch)) = DEFAULTED_UNDER
            .iter()
            .filter(|d| d.group == r.group() && d.kind == r.kind)
            .find_map(|d| d.clearing(manifest).map(|p| (d, p)))
        else {
            return Ok(());
        };
        let live = read(&format!("reading {}", r.id()), || api.get_opt(&r.name)).await?;
        let Some(live) = live else { return Ok(()) };
        let live = serde_json::to_value(&live).map_err(|e| KubeError::Invalid(e.to_string()))?;
        if live
            .pointer(&format!("{}/{}", d.path, d.field))
            .is_none_or(Json::is_null)
        {
            return Ok(());
        }
        tracing::debug!(object = %r.id(), "clearing a server-defaulted {}", d.field);
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..PatchParams::default()
        };
        api.patch(&r.name, &params, &Patch::Merge(&patch))
            .await
            .map_err(api_err(format!(
                "clearing {}.{} of {}",
                d.path,
                d.field,
                r.id()
            )))?;
        Ok(())
    }

    /// Fails unless the object a manifest requires exists, naming the config key and the fix.
    async fn check_requirement(
        &self,
        r: &ObjectRef,
        required: &recipes::Requirement,
    ) -> Result<(), KubeError> {
        let target = ObjectRef {
            api_version: "v1".into(),
            kind: required.kind.clone(),
            namespace: r.namespace.clone(),
            name: required.name.clone(),
        };
        let api = self.api(&target).await?;
        let found = read(&format!("reading {}", target.id()), || {
            api.get_opt(&required.name)
        })
        .await?;
        if found.is_none() {
            return Err(KubeError::Invalid(format!(
                "{}: the {} `{}` does not exist in namespace `{}`; {}",
                required.config_key,
                required.kind,
                required.name,
                r.namespace.as_deref().unwrap_or_default(),
                required.hint
            )));
        }
        Ok(())
    }

    /// The value of a derived field, read from its source object's live state.
    async fn derive(&self, derived: &recipes::Derived) -> Result<Json, KubeError> {
        let source = ObjectRef {
            api_version: "v1".into(),
            kind: derived.kind.clone(),
            namespace: Some(derived.namespace.clone()),
            name: derived.name.clone(),
        };
        let api = self.api(&source).await?;
        let live = read(&format!("reading {}", source.id()), || {
            api.get(&derived.name)
        })
        .await?;
        let live = serde_json::to_value(&live).map_err(|e| KubeError::Invalid(e.to_string()))?;
        match live.pointer(&derived.field) {
            Some(Json::String(v)) if !v.is_empty() && v != "None" => Ok(Json::String(v.clone())),
            other => Err(KubeError::Invalid(format!(
                "{} has no usable {} yet ({other:?})",
                source.id(),
                derived.field
            ))),
        }
    }

    async fn wait_ready(
        &self,
        r: &ObjectRef,
        api: &Api<DynamicObject>,
        deadline: Duration,
    ) -> Result<(), KubeError> {
        let start = Instant::now();
        let mut last_restarts = String::new();
        loop {
            let live = read(&format!("reading {}", r.id()), || api.get(&r.name)).await?;
            let live =
                serde_json::to_value(&live).map_err(|e| KubeError::Invalid(e.to_string()))?;
            match readiness::check(&r.kind, &live) {
                Readiness::Ready => return Ok(()),
                Readiness::Waiting(mut detail) => {
                    // A rollout that cannot succeed fails now, with the pod's own words,
                    // instead of at the deadline.
                    let pods = self.pod_failure(r, &live).await?;
                    if let Some(broken) = readiness::rollout_failure(&live).or(pods.failure) {
                        return Err(KubeError::Broken {
                            id: r.id(),
                            seconds: start.elapsed().as_secs_f64(),
                            detail: broken,
                        });
                    }
                    if let Some(restarts) = pods.restarts {
                        if restarts != last_restarts {
                            tracing::warn!(object = %r.id(), %restarts, "a container restarted while starting");
                            last_restarts.clone_from(&restarts);
                        }
                        detail = format!("{detail}; {restarts}");
                    }
                    if start.elapsed() + POLL > deadline {
                        return Err(KubeError::NotReady {
                            id: r.id(),
                            seconds: start.elapsed().as_secs_f64(),
                            detail,
                        });
                    }
                    tracing::debug!(object = %r.id(), %detail, "waiting for readiness");
                    tokio::time::sleep(poll_after(start)).await;
                }
            }
        }
    }

    /// The first pod of a workload that cannot start (bad image, crash loop, broken config),
    /// as `pod NAME: container C: REASON: message`, and the restarts its pods went through.
    async fn pod_failure(&self, r: &ObjectRef, live: &Json) -> Result<PodsSeen, KubeError> {
        let mut seen = PodsSeen::default();
        if !matches!(r.kind.as_str(), "Deployment" | "StatefulSet" | "DaemonSet") {
            return Ok(seen);
        }
        let Some(labels) = live
            .pointer("/spec/selector/matchLabels")
            .and_then(Json::as_object)
        else {
            return Ok(seen);
        };
        let selector: Vec<String> = labels
            .iter()
            .filter_map(|(k, v)| v.as_str().map(|v| format!("{k}={v}")))
            .collect();
        let pods: Api<k8s_openapi::api::core::v1::Pod> = match &r.namespace {
            Some(ns) => Api::namespaced(self.client.clone(), ns),
            None => return Ok(seen),
        };
        let params = ListParams::default().labels(&selector.join(","));
        let list = read(&format!("listing the pods of {}", r.id()), || {
            pods.list(&params)
        })
        .await?;
        for pod in list.items {
            let value =
                serde_json::to_value(&pod).map_err(|e| KubeError::Invalid(e.to_string()))?;
            if let Some(why) = readiness::pod_failure(&value) {
                seen.failure = Some(why);
                return Ok(seen);
            }
            if seen.restarts.is_none() {
                seen.restarts = readiness::pod_restarts(&value);
            }
        }
        Ok(seen)
    }

    /// Deletes an object and waits until it is gone; an object already gone is fine.
    pub async fn delete(&self, manifest: &Json, deadline: Duration) -> Result<(), KubeError> {
        let r = ObjectRef::of(manifest)?;
        let api = match self.api(&r).await {
            Ok(api) => api,
            // The kind is no longer served (its CRD is gone): so are its objects.
            Err(e) if e.is_not_served() => return Ok(()),
            Err(e) => return Err(e),
        };
        match api.delete(&r.name, &DeleteParams::foreground()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => return Ok(()),
            Err(e) => return Err(api_err(format!("deleting {}", r.id()))(e)),
        }
        let start = Instant::now();
        let mut last = String::new();
        loop {
            match read(&format!("reading {}", r.id()), || api.get_opt(&r.name)).await? {
                None => return Ok(()),
                Some(live) => {
                    // Finalizers hold it until their controllers are done: a namespace until
                    // its contents are gone, a claim until no pod uses it, a LoadBalancer
                    // Service until the cloud's load balancer is released.
                    let finalizers = live.metadata.finalizers.clone().unwrap_or_default();
                    let phase = live
                        .data
                        .pointer("/status/phase")
                        .and_then(Json::as_str)
                        .map(|p| format!(" ({p}: its contents are being deleted)"))
                        .unwrap_or_default();
                    let detail = if finalizers.is_empty() {
                        format!("still being deleted{phase}")
                    } else {
                        format!(
                            "still being deleted: waiting for finalizers {}",
                            finalizers.join(", ")
                        )
                    };
                    if start.elapsed() + POLL > deadline {
                        return Err(KubeError::NotReady {
                            id: r.id(),
                            seconds: start.elapsed().as_secs_f64(),
                            detail,
                        });
                    }
                    if detail != last {
                        self.report(&r, &detail);
                        last = detail;
                    }
                    tokio::time::sleep(poll_after(start)).await;
                }
            }
        }
    }

    /// Everything that belongs to `set`: the parent and every member of the group-kinds it
    /// lists (plus `extra_group_kinds`), as observed resources whose spec is what we last applied.
    pub async fn observe(
        &self,
        set: &ApplySet,
        known: &[(String, String)],
    ) -> Result<Vec<Observed>, KubeError> {
        // `known`: (apiVersion, kind) pairs whose version we know (the config's kinds); kinds
        // only the parent lists (left from an older config) are looked up by discovery.
        let versions: std::collections::BTreeMap<String, String> = known
            .iter()
            .map(|(api_version, kind)| {
                let r = ObjectRef {
                    api_version: api_version.clone(),
                    kind: kind.clone(),
                    namespace: None,
                    name: String::new(),
                };
                (r.group_kind(), api_version.clone())
            })
            .collect();
        let mut out = Vec::new();
        let parent_ref = ObjectRef {
            api_version: "v1".into(),
            kind: "Secret".into(),
            namespace: Some(set.namespace.clone()),
            name: applyset::PARENT_NAME.into(),
        };
        let mut group_kinds: Vec<String> = versions.keys().cloned().collect();
        let parents = self.api(&parent_ref).await?;
        if let Some(parent) = read("reading the ApplySet parent", || {
            parents.get_opt(applyset::PARENT_NAME)
        })
        .await?
        {
            let parent =
                serde_json::to_value(&parent).map_err(|e| KubeError::Invalid(e.to_string()))?;
            if let Some(listed) = parent
                .pointer(&format!(
                    "/metadata/annotations/{}",
                    applyset::GROUP_KINDS_ANNOTATION.replace('/', "~1")
                ))
                .and_then(Json::as_str)
            {
                group_kinds.extend(
                    listed
                        .split(',')
                        .filter(|s| !s.is_empty())
                        .map(str::to_string),
                );
            }
            out.push(observed(&parent_ref, &parent, &set.namespace));
        }
        group_kinds.sort();
        group_kinds.dedup();
        let selector = ListParams::default().labels(&set.member_selector());
        for gk in group_kinds {
            let (group, kind) = applyset::split_group_kind(&gk);
            let resolved = match versions.get(&gk) {
                Some(api_version) => {
                    let version = api_version
                        .rsplit_once('/')
                        .map_or(api_version.as_str(), |(_, v)| v);
                    match self.resolve(group, version, kind).await {
                        Ok(found) => Some(found),
                        // Not served (yet, or any more): nothing of this kind exists.
                        Err(e) if e.is_not_served() => None,
                        Err(e) => return Err(e),
                    }
                }
                None => self.resolve_any_version(group, kind).await?,
            };
            let Some((ar, _caps)) = resolved else {
                continue;
            };
            let api: Api<DynamicObject> = Api::all_with(self.client.clone(), &ar);
            let list = read(&format!("listing {gk}"), || api.list(&selector)).await?;
            for item in list.items {
                let value =
                    serde_json::to_value(&item).map_err(|e| KubeError::Invalid(e.to_string()))?;
                let mut value = value;
                // List items may omit apiVersion/kind.
                value["apiVersion"] = Json::String(ar.api_version.clone());
                value["kind"] = Json::String(ar.kind.clone());
                let r = ObjectRef::of(&value)?;
                out.push(observed(&r, &value, &set.namespace));
            }
        }
        // What our workloads wrote in our namespace: deleted by a destroy, left alone by a
        // deploy.
        for (api_version, kind, name) in super::components::left_behind() {
            let r = ObjectRef {
                api_version: api_version.into(),
                kind: kind.into(),
                namespace: Some(set.namespace.clone()),
                name: name.into(),
            };
            let api = self.api(&r).await?;
            if let Some(live) = read(&format!("reading {}", r.id()), || api.get_opt(name)).await? {
                let live =
                    serde_json::to_value(&live).map_err(|e| KubeError::Invalid(e.to_string()))?;
                let mut o = observed(&r, &live, &set.namespace);
                o.made_by_cluster = true;
                out.push(o);
            }
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out.dedup_by(|a, b| a.id == b.id);
        Ok(out)
    }

    /// Every object of `kinds` ((apiVersion, kind)) in `namespace`, label or not: what a
    /// component's controllers made there at run time
    /// ([`super::components::Component::creates_at_run_time`]). A kind not served (its CRD
    /// gone or never installed) has no objects. `made_by_cluster`: whether a deploy leaves
    /// them alone (only a destroy deletes them).
    pub async fn observe_run_time(
        &self,
        namespace: &str,
        kinds: &[(&str, &str)],
        made_by_cluster: bool,
    ) -> Result<Vec<Observed>, KubeError> {
        let mut out = Vec::new();
        for (api_version, kind) in kinds {
            let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
            let ar = match self.resolve(group, version, kind).await {
                Ok((ar, _caps)) => ar,
                Err(e) if e.is_not_served() => continue,
                Err(e) => return Err(e),
            };
            let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), namespace, &ar);
            let all = ListParams::default();
            let list = read(&format!("listing {kind} in {namespace}"), || api.list(&all)).await?;
            for item in list.items {
                let mut value =
                    serde_json::to_value(&item).map_err(|e| KubeError::Invalid(e.to_string()))?;
                value["apiVersion"] = Json::String(ar.api_version.clone());
                value["kind"] = Json::String(ar.kind.clone());
                let r = ObjectRef::of(&value)?;
                let mut o = observed(&r, &value, namespace);
                o.made_by_cluster = made_by_cluster;
                out.push(o);
            }
        }
        Ok(out)
    }

    /// The objects of `desired` that may be someone else's
    /// ([`recipes::USE_EXISTING_ANNOTATION`]) and exist without `set`'s label: observed as
    /// they are wanted (qhub leaves them as they are, so there is nothing to change), and
    /// never found by [`Applier::observe`], so no destroy or prune deletes them.
    pub async fn observe_unowned(
        &self,
        set: &ApplySet,
        desired: &[crate::plan::Resource],
    ) -> Result<Vec<Observed>, KubeError> {
        let mut out = Vec::new();
        for resource in desired {
            let manifest = resource.payload.as_ref().unwrap_or(&resource.spec);
            if !recipes::use_existing(manifest) {
                continue;
            }
            let r = ObjectRef::of(manifest)?;
            let api = self.api(&r).await?;
            let Some(live) = read(&format!("reading {}", r.id()), || api.get_opt(&r.name)).await?
            else {
                continue;
            };
            let live =
                serde_json::to_value(&live).map_err(|e| KubeError::Invalid(e.to_string()))?;
            let part_of = live
                .pointer(&format!(
                    "/metadata/labels/{}",
                    applyset::PART_OF_LABEL.replace('/', "~1")
                ))
                .and_then(Json::as_str);
            if part_of == Some(set.id.as_str()) {
                continue;
            }
            let state = match readiness::check(&r.kind, &live) {
                Readiness::Ready => ResourceState::Ready,
                Readiness::Waiting(why) => ResourceState::Pending(why),
            };
            let mut observed =
                Observed::new(r.id(), Stage::Kubernetes, resource.spec.clone(), state);
            observed.cloud_id = live
                .pointer("/metadata/uid")
                .and_then(Json::as_str)
                .map(str::to_string);
            out.push(observed);
        }
        Ok(out)
    }

    /// The desired CRDs that exist on the cluster as another manager's and fit
    /// ([`Applier::apply`] uses them as they are): observed as what we want, so a plan does not
    /// create them again. Only for plans that apply: a destroy must not see them, as they are
    /// not ours to delete.
    pub async fn shared_crds(
        &self,
        desired: &[crate::plan::Resource],
    ) -> Result<Vec<Observed>, KubeError> {
        let mut out = Vec::new();
        for d in desired {
            let Some(manifest) = d.payload.as_ref() else {
                continue;
            };
            let Ok(r) = ObjectRef::of(manifest) else {
                continue;
            };
            if !is_crd(&r) {
                continue;
            }
            let api = self.api(&r).await?;
            let Some(live) = read(&format!("reading {}", r.id()), || api.get_opt(&r.name)).await?
            else {
                continue;
            };
            let live =
                serde_json::to_value(&live).map_err(|e| KubeError::Invalid(e.to_string()))?;
            if let Some(Ok(())) = shared_crd(&r, manifest, &live) {
                out.push(Observed::new(
                    d.id.clone(),
                    Stage::Kubernetes,
                    d.spec.clone(),
                    ResourceState::Ready,
                ));
            }
        }
        Ok(out)
    }

    async fn resolve_any_version(
        &self,
        group: &str,
        kind: &str,
    ) -> Result<Option<(ApiResource, ApiCapabilities)>, KubeError> {
        // The preferred version of the group serves the kind; discovery says which it is.
        let discovery = read(&format!("discovering group `{group}`"), || {
            kube::discovery::Discovery::new(self.client.clone())
                .filter(&[group])
                .run()
        })
        .await?;
        for g in discovery.groups() {
            for (ar, caps) in g.recommended_resources() {
                if ar.kind == kind {
                    return Ok(Some((ar, caps)));
                }
            }
        }
        Ok(None)
    }
}

/// Whether `live` carries the ApplySet label `manifest` (a labelled member) carries.
fn is_member(live: &DynamicObject, manifest: &Json) -> bool {
    let want = manifest
        .pointer(&format!(
            "/metadata/labels/{}",
            applyset::PART_OF_LABEL.replace('/', "~1")
        ))
        .and_then(Json::as_str);
    let have = live
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(applyset::PART_OF_LABEL))
        .map(String::as_str);
    want.is_some() && want == have
}

fn observed(r: &ObjectRef, live: &Json, parent_namespace: &str) -> Observed {
    let applied: Json = live
        .pointer(&format!(
            "/metadata/annotations/{}",
            LAST_APPLIED.replace('/', "~1")
        ))
        .and_then(Json::as_str)
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or(Json::Null);
    let spec = live_spec(r, live, applied);
    let state = match readiness::check(&r.kind, live) {
        // On its way out (a namespace Terminating after a delete by hand or an interrupted
        // destroy): a deploy plans it as a repair, which waits until it is gone and creates
        // it again; a destroy deletes it, waiting for its finalizers.
        _ if live
            .pointer("/metadata/deletionTimestamp")
            .is_some_and(|t| !t.is_null()) =>
        {
            let finalizers: Vec<&str> = live
                .pointer("/metadata/finalizers")
                .and_then(Json::as_array)
                .into_iter()
                .flatten()
                .filter_map(Json::as_str)
                .collect();
            ResourceState::Failed(format!(
                "being deleted{}{}",
                live.pointer("/status/phase")
                    .and_then(Json::as_str)
                    .map(|p| format!(" ({p})"))
                    .unwrap_or_default(),
                if finalizers.is_empty() {
                    String::new()
                } else {
                    format!(", finalizers {}", finalizers.join(", "))
                }
            ))
        }
        Readiness::Ready => ResourceState::Ready,
        Readiness::Waiting(why) => ResourceState::Pending(why),
    };
    // Deletes run dependants first: members, then the ApplySet parent (which lists the members'
    // kinds, so it must outlive them), then the namespace.
    let is_parent = r.kind == "Secret" && r.name == applyset::PARENT_NAME;
    let mut depends_on = Vec::new();
    if let Some(ns) = &r.namespace {
        depends_on.push(crate::plan::ResourceId::new("Namespace", ns));
    }
    if !is_parent && r.kind != "Namespace" {
        depends_on.push(crate::plan::ResourceId::new(
            "Secret",
            format!("{parent_namespace}/{}", applyset::PARENT_NAME),
        ));
    }
    let mut payload = serde_json::json!({"apiVersion": r.api_version, "kind": r.kind, "metadata": {"name": r.name}});
    if let Some(ns) = &r.namespace {
        payload["metadata"]["namespace"] = Json::String(ns.clone());
    }
    let mut observed = Observed::new(r.id(), Stage::Kubernetes, spec, state);
    observed.depends_on = depends_on;
    observed.cloud_id = live
        .pointer("/metadata/uid")
        .and_then(Json::as_str)
        .map(str::to_string);
    observed.payload = Some(payload);
    observed
}

/// What the plan compares for a live object: its values at the paths qhub last applied
/// ([`project`]), with a Secret's values as digests and derived fields (filled at apply time)
/// as their placeholders. An object too large to keep verbatim (a big CRD) is compared by the
/// digest of what was applied.
fn live_spec(r: &ObjectRef, live: &Json, applied: Json) -> Json {
    if !applied.is_object() || applied.get("manifest_sha256").is_some() {
        return applied;
    }
    let mut spec = project(live, &applied);
    if r.kind == "Secret" && r.group().is_empty() {
        spec = recipes::comparable_secret(&spec);
    }
    if let Ok(Some(derived)) = recipes::derived(&applied)
        && let (Some(slot), Some(placeholder)) = (
            spec.pointer_mut(&derived.path),
            applied.pointer(&derived.path),
        )
    {
        *slot = placeholder.clone();
    }
    spec
}

/// The live object as the plan compares it: its values at exactly the paths of what qhub last
/// applied (`applied`), whichever field manager wrote them last, so that a hand edit of a field
/// qhub manages shows up as a change (and a key qhub set that someone removed shows as missing).
/// Fields others added, and defaults the API server filled in, are left out.
pub fn project(live: &Json, applied: &Json) -> Json {
    match (applied, live) {
        (Json::Object(want), Json::Object(have)) => {
            let mut out = serde_json::Map::new();
            for (key, a) in want {
                if let Some(l) = have.get(key) {
                    out.insert(key.clone(), project(l, a));
                }
            }
            Json::Object(out)
        }
        (Json::Array(want), Json::Array(have)) => Json::Array(
            have.iter()
                .enumerate()
                .map(|(i, l)| match want.get(i) {
                    Some(a) => project(l, a),
                    None => l.clone(),
                })
                .collect(),
        ),
        _ => live.clone(),
    }
}
