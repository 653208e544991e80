//! CustomResourceDefinitions we share with a cluster: what a destroy and a deploy's prune do
//! with them.
//!
//! Deleting a CRD deletes every object of its kinds in every namespace (Kubernetes docs,
//! "Extend the Kubernetes API with CustomResourceDefinitions", "Delete a
//! CustomResourceDefinition"), so on a cluster others use too (`existing`, `local`, a second
//! deployment in another namespace) a CRD is not one deployment's to delete. The rules:
//! - a CRD another manager installed is never ours: [`super::apply::Applier::apply`] uses it as
//!   it is, and a destroy never observes it (only ApplySet members are observed);
//! - a deploy never prunes a CRD, even one qhub created and the config no longer needs;
//! - a destroy keeps every CRD unless the user asks for their deletion
//!   (`qhub destroy --delete-crds`, [`crate::engine::EngineOptions::delete_crds`]), and even
//!   then keeps one that qhub did not create (it does not carry our ApplySet's label) or that
//!   still has objects outside our ApplySet (another tenant's IngressRoute);
//! - when the destroy deletes the cluster itself, its CRDs go with it and nothing is reviewed.
//!
//! The plan names each CRD it keeps and why ([`crate::plan::Plan::kept`]).

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, ListParams};
use kube::core::{ApiResource, GroupVersionKind};

use super::KubeError;
use super::apply::Applier;
use super::applyset::{self, ApplySet};
use crate::plan::{Kept, Observed, ResourceId};

/// The plan kind of a CRD.
pub const CRD_KIND: &str = "CustomResourceDefinition.apiextensions.k8s.io";

/// How many of the other owners' objects a verdict names.
const NAMED: usize = 5;

/// Whether an observed resource is a CRD.
pub fn is_crd(id: &ResourceId) -> bool {
    id.kind == CRD_KIND
}

/// What a destroy does with one CRD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Deleted (with what remains of its objects: ours).
    Delete,
    /// Kept, for this reason.
    Keep(String),
}

/// The verdict on a CRD: `created_by_us` when it carries our ApplySet's label; `others`: its
/// objects outside our ApplySet (`namespace/name`), at most five of them named, with
/// `others_total` counting all; `delete_crds`: the user's `--delete-crds`.
pub fn verdict(
    created_by_us: bool,
    others: &[String],
    others_total: usize,
    delete_crds: bool,
) -> Verdict {
    if !created_by_us {
        return Verdict::Keep(
            "installed by another manager, not by this deployment: used, never deleted".into(),
        );
    }
    if others_total > 0 {
        let more = others_total.saturating_sub(others.len());
        let more = if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        };
        return Verdict::Keep(format!(
            "{others_total} of its objects belong to others ({}{more}); deleting it would \
             delete them",
            others.join(", ")
        ));
    }
    if !delete_crds {
        return Verdict::Keep(
            "created by this deployment; CRDs outlive a destroy unless asked: re-run with \
             --delete-crds to delete it (only when no other object of its kinds remains)"
                .into(),
        );
    }
    Verdict::Delete
}

/// The reason a deploy keeps a CRD the config no longer wants.
pub fn never_pruned() -> String {
    "no longer wanted by the config, but a deploy never deletes a CRD (its objects, anyone's, \
     would go with it); `qhub destroy --delete-crds` deletes it"
        .into()
}

/// The objects of `crd`'s kind outside `set`, as `namespace/name`: the first five of them and
/// their total; `None` when these credentials may not list them in every namespace.
async fn others(
    applier: &Applier,
    set: &ApplySet,
    crd: &CustomResourceDefinition,
) -> Result<Option<(Vec<String>, usize)>, KubeError> {
    let spec = &crd.spec;
    // Any served version lists every object of the kind.
    let Some(version) = spec
        .versions
        .iter()
        .find(|v| v.storage && v.served)
        .or_else(|| spec.versions.iter().find(|v| v.served))
    else {
        return Ok(Some((Vec::new(), 0)));
    };
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(&spec.group, &version.name, &spec.names.kind),
        &spec.names.plural,
    );
    let api: Api<DynamicObject> = Api::all_with(applier.client(), &ar);
    let list = match api.list(&ListParams::default()).await {
        Ok(list) => list,
        // Not served (yet, or any more): no object of it exists.
        Err(kube::Error::Api(s)) if s.code == 404 => return Ok(Some((Vec::new(), 0))),
        // Credentials that may not list every namespace cannot tell whose objects remain.
        Err(kube::Error::Api(s)) if s.code == 403 => return Ok(None),
        Err(source) => {
            return Err(KubeError::Api {
                what: format!("listing the objects of {}", crd_name(crd)),
                source,
            });
        }
    };
    let mut named = Vec::new();
    let mut total = 0;
    for item in list.items {
        let ours = item
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(applyset::PART_OF_LABEL))
            .is_some_and(|id| *id == set.id);
        if ours {
            continue;
        }
        total += 1;
        if named.len() < NAMED {
            named.push(match &item.metadata.namespace {
                Some(ns) => format!("{ns}/{}", item.metadata.name.as_deref().unwrap_or("?")),
                None => item.metadata.name.clone().unwrap_or_default(),
            });
        }
    }
    Ok(Some((named, total)))
}

fn crd_name(crd: &CustomResourceDefinition) -> String {
    crd.metadata.name.clone().unwrap_or_default()
}

/// Reviews the CRDs among `observed` (members of `set`, found by a destroy's observe): the
/// ones to keep, with why. The caller leaves those out of the destroy plan.
pub async fn review(
    applier: &Applier,
    set: &ApplySet,
    observed: &[Observed],
    delete_crds: bool,
) -> Result<Vec<Kept>, KubeError> {
    let api: Api<CustomResourceDefinition> = Api::all(applier.client());
    let mut kept = Vec::new();
    for o in observed.iter().filter(|o| is_crd(&o.id)) {
        let crd = api
            .get_opt(&o.id.name)
            .await
            .map_err(|source| KubeError::Api {
                what: format!("reading {}", o.id),
                source,
            })?;
        let Some(crd) = crd else { continue };
        let created_by_us = crd
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(applyset::PART_OF_LABEL))
            .is_some_and(|id| *id == set.id);
        let verdict = match others(applier, set, &crd).await? {
            Some((named, total)) => verdict(created_by_us, &named, total, delete_crds),
            None => Verdict::Keep(
                "its objects cannot be listed in every namespace with these credentials (403 \
                 Forbidden), so whether others use it is unknown"
                    .into(),
            ),
        };
        if let Verdict::Keep(why) = verdict {
            kept.push(Kept {
                id: o.id.clone(),
                why,
            });
        }
    }
    Ok(kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_crd_is_deleted_only_when_ours_unused_by_others_and_asked() {
        assert_eq!(verdict(true, &[], 0, true), Verdict::Delete);
        let Verdict::Keep(why) = verdict(true, &[], 0, false) else {
            panic!("deleted without --delete-crds")
        };
        assert!(why.contains("--delete-crds"), "{why}");
        let Verdict::Keep(why) = verdict(true, &["team-b/api".into()], 7, true) else {
            panic!("deleted with another tenant's objects")
        };
        assert!(
            why.contains("7 of its objects") && why.contains("team-b/api and 6 more"),
            "{why}"
        );
        let Verdict::Keep(why) = verdict(false, &[], 0, true) else {
            panic!("deleted another manager's CRD")
        };
        assert!(why.contains("another manager"), "{why}");
    }
}
