//! Applying one change: create, update, replace or delete one resource.
//!
//! One file per family of resources: `network` (VPC, subnets, internet gateway, route table,
//! security group), `iam` (roles), `eks` (cluster, node groups, add-ons, Pod Identity
//! associations), `access_entries` (who may reach the cluster), `efs` (file system, mount
//! targets), and [`sweep`] (what Kubernetes left in the cloud, removed with the cluster). Each kind has an `ensure` and a `delete` step, and they share the helpers
//! here.
//!
//! Every `ensure` first looks for the resource by its tags and adopts what it finds (a lost
//! response or an interrupted run may have created it), then converges it: each step checks
//! before it changes, so an update or a re-run after an interruption half-way through a create
//! (VPC made, DNS attributes not yet set) finishes the job without repeating what is done. Every
//! resource is tagged in its create call (TagSpecifications / tags parameters), never after.
//! Every `delete` re-reads the resource by its tags and treats "not found" as done.

mod access_entries;
mod efs;
mod eks;
mod iam;
mod network;
pub mod sweep;
pub mod token;

use std::collections::BTreeMap;
use std::future::Future;

use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use qhub_core::cloud::poll::{Poll, poll_until};
use qhub_core::plan::{Action, Change, Resource};
use qhub_core::provider::{ApplyContext, Ownership, ProviderError, spec};

use crate::AwsProvider;
use crate::desired::{
    ACCESS_ENTRY, EBS_VOLUME, EFS, EFS_MOUNT_TARGET, EKS_ADDON, EKS_CLUSTER, IAM_ROLE,
    INTERNET_GATEWAY, NAME_TAG, NETWORK_INTERFACE, NODE_GROUP, POD_IDENTITY, ROUTE_TABLE,
    SECURITY_GROUP, SUBNET, VPC,
};
use crate::observe::Found;
use crate::sent::Sent;

pub use network::availability_zones;

/// Performs `change`.
pub async fn apply(
    p: &AwsProvider,
    change: &Change,
    ctx: &ApplyContext,
) -> Result<(), ProviderError> {
    let what = format!("{} {}", change.action.symbol(), change.id);
    tracing::info!(change = %what, attempt = ctx.attempt, "applying");
    match change.action {
        Action::Delete => delete(p, change, ctx).await,
        Action::Replace => {
            delete(p, change, ctx).await?;
            ensure(p, change, ctx).await
        }
        Action::Create | Action::Update => ensure(p, change, ctx).await,
        Action::Wait => Err(ProviderError::NotSupported(format!(
            "{what}: the engine waits for resources itself"
        ))),
    }
}

async fn ensure(p: &AwsProvider, change: &Change, ctx: &ApplyContext) -> Result<(), ProviderError> {
    let r = change
        .desired
        .as_ref()
        .ok_or_else(|| failed(format!("{}: the change has no desired resource", change.id)))?;
    let o = &ctx.ownership;
    match r.id.kind.as_str() {
        VPC => network::ensure_vpc(p, o, r).await,
        SUBNET => network::ensure_subnet(p, o, r).await,
        INTERNET_GATEWAY => network::ensure_internet_gateway(p, o, r).await,
        ROUTE_TABLE => network::ensure_route_table(p, o, r).await,
        SECURITY_GROUP => network::ensure_security_group(p, o, r).await,
        IAM_ROLE => iam::ensure_role(p, o, r).await,
        EKS_CLUSTER => eks::ensure_cluster(p, o, r).await,
        NODE_GROUP => eks::ensure_node_group(p, o, r).await,
        EKS_ADDON => eks::ensure_addon(p, o, r).await,
        ACCESS_ENTRY => access_entries::ensure_access_entry(p, o, r).await,
        POD_IDENTITY => eks::ensure_pod_identity(p, o, r).await,
        EFS => efs::ensure_file_system(p, o, r).await,
        EFS_MOUNT_TARGET => efs::ensure_mount_target(p, o, r).await,
        EBS_VOLUME | NETWORK_INTERFACE => Err(ProviderError::NotSupported(format!(
            "{}: the cluster makes resources of this kind, qhub only deletes them",
            r.id
        ))),
        other => Err(unknown_kind(other)),
    }
}

async fn delete(p: &AwsProvider, change: &Change, ctx: &ApplyContext) -> Result<(), ProviderError> {
    let o = &ctx.ownership;
    // Re-read the resource by tags: the observed cloud id may be stale, and what is gone is done.
    let name = change.id.name.as_str();
    match change.id.kind.as_str() {
        VPC => network::delete_vpc(p, o, name).await,
        SUBNET => network::delete_subnet(p, o, name).await,
        INTERNET_GATEWAY => network::delete_internet_gateway(p, o, name).await,
        ROUTE_TABLE => network::delete_route_table(p, o, name).await,
        SECURITY_GROUP => network::delete_security_group(p, o, name).await,
        IAM_ROLE => iam::delete_role(p, o, name).await,
        EKS_CLUSTER => eks::delete_cluster(p, o, name).await,
        NODE_GROUP => eks::delete_node_group(p, o, name).await,
        EKS_ADDON => eks::delete_addon(p, o, name).await,
        ACCESS_ENTRY => access_entries::delete_access_entry(p, o, name).await,
        POD_IDENTITY => eks::delete_pod_identity(p, o, name).await,
        EFS => efs::delete_file_system(p, o, name).await,
        EFS_MOUNT_TARGET => {
            // The observed cloud id is also accepted: a mount target in a subnet that is no
            // longer ours is named by its id.
            let observed_id = change.observed.as_ref().and_then(|x| x.cloud_id.as_deref());
            efs::delete_mount_target(p, o, name, observed_id).await
        }
        // Named by their cloud ids.
        EBS_VOLUME => sweep::delete_volume(p, name).await,
        NETWORK_INTERFACE => sweep::delete_network_interface(p, name).await,
        other => Err(unknown_kind(other)),
    }
}

// ---- shared helpers ----

fn unknown_kind(kind: &str) -> ProviderError {
    ProviderError::NotSupported(format!("unknown AWS resource kind `{kind}`"))
}

fn failed(msg: impl Into<String>) -> ProviderError {
    ProviderError::Fatal(msg.into())
}

/// Ownership tags plus `Name`.
fn tags_with_name(o: &Ownership, name: &str) -> BTreeMap<String, String> {
    let mut t = o.tags();
    t.insert(NAME_TAG.into(), name.into());
    t
}

/// The one found resource named `name`. Observe names one copy of a kind and name by the
/// name and every extra copy `{name}~{cloud_id}` ([`crate::observe::dedupe`]), so this finds
/// the kept copy by its name and an extra by its own.
fn by_name(found: Vec<Found>, name: &str) -> Option<Found> {
    found.into_iter().find(|f| f.id.name == name)
}

/// The `cloud id -> name` map of found resources (what observe needs to name references).
fn names_by_id(found: &[Found]) -> BTreeMap<String, String> {
    found
        .iter()
        .map(|f| (f.cloud_id.clone(), f.id.name.clone()))
        .collect()
}

/// The desired spec of `r`, read back as its type ([`crate::spec`]); a spec that does not read
/// (a plan made by another version) is an error naming the resource and the field.
fn spec_of<S: serde::de::DeserializeOwned>(r: &Resource) -> Result<S, ProviderError> {
    spec::read(&r.id, "spec", &r.spec)
}

/// A dependency that is missing now may be there in a moment (EC2 describe calls are
/// eventually consistent after a create), so this is retryable.
fn need<T>(what: &str, v: Option<T>) -> Result<T, ProviderError> {
    v.ok_or_else(|| ProviderError::Retryable {
        message: format!("{what} does not exist (yet)"),
        retry_after: None,
    })
}

/// Waits until `check` says the operation is done (`Some`), polling at the provider's interval
/// ([`qhub_core::cloud::poll`]). The engine bounds the whole change with its own deadline; this
/// one only ends a wait that outlives any AWS operation (an EKS cluster takes up to 15 minutes
/// to create, REFERENCE.md §4).
async fn wait_for<F, Fut>(p: &AwsProvider, what: &str, mut check: F) -> Result<(), ProviderError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<()>, ProviderError>>,
{
    const LONGEST_WAIT: std::time::Duration = std::time::Duration::from_secs(45 * 60);
    poll_until(what, LONGEST_WAIT, p.poll(), || {
        let done = check();
        async move {
            Ok(match done.await? {
                Some(()) => Poll::Ready(()),
                None => Poll::Pending("not yet".into()),
            })
        }
    })
    .await
}

/// Waits until `describe` answers "not found".
async fn wait_gone<T, E, F, Fut>(
    p: &AwsProvider,
    what: &str,
    operation: &'static str,
    mut describe: F,
) -> Result<(), ProviderError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, SdkError<E, HttpResponse>>>,
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    wait_for(p, what, move || {
        let call = describe();
        async move {
            let found = call.await.unless_gone(p, operation)?;
            Ok(found.is_none().then_some(()))
        }
    })
    .await
}
