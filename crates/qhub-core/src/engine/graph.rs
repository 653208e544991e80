//! The order of an apply: the steps a plan's changes become, what each waits for, which serial
//! group it occupies, and who uses what a step deletes.

use std::collections::{BTreeMap, BTreeSet};

use crate::plan::{self, Action, Change, ResourceId, Stage};

/// The serial group a change occupies while it runs. A wait counts too: the resource it waits
/// for is the cloud's operation in progress (GKE refuses a second operation on a cluster while
/// a pool operation left by an interrupted run still runs).
pub(super) fn mutating_group(change: &Change) -> Option<&str> {
    change.serial_group()
}

/// The steps an apply runs: the plan's changes, with every infrastructure replacement that is
/// part of a cascade (it is replaced because of another one, or another change is planned
/// because of it) split in a delete and a create. Its dependants' deletes then run before its
/// delete and their creates after its create ([`wait_sets`]); a replacement on its own stays
/// one change, which the provider carries out as it sees fit.
pub(super) fn steps(changes: &[Change]) -> Vec<Change> {
    let cascaded: BTreeSet<&ResourceId> = changes
        .iter()
        .filter_map(|c| c.because.as_ref())
        .chain(
            changes
                .iter()
                .filter(|c| c.because.is_some())
                .map(|c| &c.id),
        )
        .collect();
    let mut out = Vec::with_capacity(changes.len());
    for c in changes {
        let split = c.action == Action::Replace
            && c.stage == Stage::Infrastructure
            && c.desired.is_some()
            && c.observed.is_some()
            && cascaded.contains(&c.id);
        if split {
            let mut delete = c.clone();
            delete.action = Action::Delete;
            delete.desired = None;
            delete.diff = Vec::new();
            let mut create = c.clone();
            create.action = Action::Create;
            create.observed = None;
            out.push(delete);
            out.push(create);
        } else {
            out.push(c.clone());
        }
    }
    out
}

/// What the engine knows about who uses the resource a step deletes, to judge a delete the
/// cloud refuses as in use ([`ProviderError::InUse`]).
#[derive(Debug, Clone, Default)]
pub(super) struct Users {
    /// Desired resources that depend on it and stay in the cloud after the apply (not deleted
    /// or replaced by it): while one stays, no wait frees it.
    pub(super) staying: Vec<ResourceId>,
    /// Those of them that declared they survive its replacement
    /// ([`plan::OnDependencyReplaced::Update`]): when nothing deleted by this apply explains a
    /// refusal, one of them is what the cloud sees using it, and it stays until its update,
    /// which comes after the create.
    pub(super) tolerant: Vec<ResourceId>,
    /// A resource that depends on it (transitively) is deleted by this apply: what that one
    /// left (network interfaces of a cluster's load balancers) may still be draining, so the
    /// refusal is waited out on the busy budget.
    pub(super) released: bool,
}

/// [`Users`] for each step (empty for a step that deletes nothing).
pub(super) fn users(steps: &[Change], desired: &[plan::Resource]) -> Vec<Users> {
    let touched: BTreeSet<&ResourceId> = steps
        .iter()
        .filter(|c| matches!(c.action, Action::Delete | Action::Replace | Action::Create))
        .map(|c| &c.id)
        .collect();
    let deleted: BTreeSet<&ResourceId> = steps
        .iter()
        .filter(|c| matches!(c.action, Action::Delete | Action::Replace))
        .map(|c| &c.id)
        .collect();
    let mut dependants: BTreeMap<&ResourceId, BTreeSet<&ResourceId>> = BTreeMap::new();
    for c in steps {
        for dep in c.depends_on() {
            dependants.entry(dep).or_default().insert(&c.id);
        }
    }
    steps
        .iter()
        .map(|c| {
            if !matches!(c.action, Action::Delete | Action::Replace) {
                return Users::default();
            }
            let (tolerant, staying): (Vec<&plan::Resource>, Vec<&plan::Resource>) = desired
                .iter()
                .filter(|r| {
                    r.stage == Stage::Infrastructure
                        && r.depends_on.contains(&c.id)
                        && r.created_with.as_ref() != Some(&c.id)
                        && !touched.contains(&r.id)
                })
                .partition(|r| r.on_dependency_replaced == plan::OnDependencyReplaced::Update);
            let ids = |v: Vec<&plan::Resource>| v.into_iter().map(|r| r.id.clone()).collect();
            let mut seen: BTreeSet<&ResourceId> = BTreeSet::new();
            let mut next: Vec<&ResourceId> = vec![&c.id];
            while let Some(id) = next.pop() {
                for d in dependants.get(id).into_iter().flatten() {
                    if *d != &c.id && seen.insert(d) {
                        next.push(d);
                    }
                }
            }
            Users {
                staying: ids(staying),
                tolerant: ids(tolerant),
                released: seen.iter().any(|d| deleted.contains(d)),
            }
        })
        .collect()
}

/// For each change, the indices of the changes it must wait for.
pub(super) fn wait_sets(changes: &[Change]) -> Vec<BTreeSet<usize>> {
    let index: BTreeMap<(&ResourceId, bool), usize> = changes
        .iter()
        .enumerate()
        .map(|(i, c)| ((&c.id, c.action == Action::Delete), i))
        .collect();
    changes
        .iter()
        .map(|c| {
            let mut waits = BTreeSet::new();
            if c.action == Action::Delete {
                // A delete waits for the deletes of everything that depends on it, and the
                // infrastructure waits for the Kubernetes objects (their load balancers and
                // volumes would otherwise block the network's deletion). A resource deleted
                // with its parent is the exception: the parent goes first (a DOKS cluster
                // cannot lose its last pool) and takes it along.
                let parent_deleted = c
                    .created_with()
                    .and_then(|p| index.get(&(p, true)))
                    .copied();
                if let Some(j) = parent_deleted {
                    waits.insert(j);
                }
                for (j, other) in changes.iter().enumerate() {
                    let child_of_c = other.created_with() == Some(&c.id);
                    if other.action == Action::Delete
                        && !child_of_c
                        && Some(j) != parent_deleted
                        && (other.depends_on().contains(&c.id)
                            || c.stage == Stage::Infrastructure && other.stage == Stage::Kubernetes)
                    {
                        waits.insert(j);
                    }
                }
            } else {
                // The create half of a split replacement comes after its delete half.
                if let Some(j) = index.get(&(&c.id, true)) {
                    waits.insert(*j);
                }
                for dep in c.depends_on() {
                    if let Some(j) = index.get(&(dep, false)) {
                        waits.insert(*j);
                    }
                }
                // Kubernetes objects wait for the infrastructure.
                if c.stage == Stage::Kubernetes {
                    for (j, other) in changes.iter().enumerate() {
                        if other.stage == Stage::Infrastructure && other.action != Action::Delete {
                            waits.insert(j);
                        }
                    }
                }
            }
            waits
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Observed, OnDependencyReplaced, Plan, Resource, ResourceState};
    use serde_json::json;

    fn res(kind: &str, spec: serde_json::Value, deps: &[&str]) -> Resource {
        Resource::new(kind, "x", Stage::Infrastructure, spec)
            .depends_on(deps.iter().map(|k| ResourceId::new(*k, "x")))
    }

    /// Subnet (replaced: its zone moved), a route table re-associated after it, a mount target
    /// in it, a cluster on it (replacement allowed), a node group on the cluster, and an
    /// unrelated role.
    fn cascade_plan() -> Plan {
        let desired = vec![
            res("subnet", json!({"zone": "a"}), &[]).replace_fields(&["zone"]),
            res("route_table", json!({}), &["subnet"])
                .on_dependency_replaced(OnDependencyReplaced::Update),
            res("mount_target", json!({}), &["subnet"]),
            res("cluster", json!({}), &["subnet", "route_table", "role"])
                .on_dependency_replaced(OnDependencyReplaced::Refuse("everything".into())),
            res("node_group", json!({}), &["cluster"]),
            res("role", json!({}), &[]),
        ];
        let observed: Vec<Observed> = desired
            .iter()
            .map(|r| {
                let spec = if r.id.kind == "subnet" {
                    json!({"zone": "b"})
                } else {
                    r.spec.clone()
                };
                Observed::like(r, spec, None, ResourceState::Ready)
            })
            .collect();
        plan::diff_allowing(&desired, &observed, &[ResourceId::new("cluster", "x")])
    }

    /// The order steps run in one at a time, always the first whose waits are done.
    fn run_order(steps: &[Change]) -> Vec<String> {
        let waits = wait_sets(steps);
        let mut done: BTreeSet<usize> = BTreeSet::new();
        let mut out = Vec::new();
        while done.len() < steps.len() {
            let Some(i) =
                (0..steps.len()).find(|i| !done.contains(i) && waits[*i].is_subset(&done))
            else {
                panic!("a cycle among {out:?}");
            };
            done.insert(i);
            out.push(format!("{} {}", steps[i].action.symbol(), steps[i].id.kind));
        }
        out
    }

    #[test]
    fn a_cascade_deletes_dependants_before_and_creates_them_after_what_they_depend_on() {
        let plan = cascade_plan();
        assert!(plan.refused.is_empty(), "{:?}", plan.refused);
        let steps = steps(&plan.changes);
        let order = run_order(&steps);
        let at = |step: &str| {
            order
                .iter()
                .position(|s| s == step)
                .unwrap_or_else(|| panic!("{step} not in {order:?}"))
        };
        assert!(at("- node_group") < at("- cluster"), "{order:?}");
        assert!(at("- cluster") < at("- subnet"), "{order:?}");
        assert!(at("- mount_target") < at("- subnet"), "{order:?}");
        assert!(at("- subnet") < at("+ subnet"), "{order:?}");
        assert!(at("+ subnet") < at("+ mount_target"), "{order:?}");
        assert!(at("+ subnet") < at("~ route_table"), "{order:?}");
        assert!(at("~ route_table") < at("+ cluster"), "{order:?}");
        assert!(at("+ cluster") < at("+ node_group"), "{order:?}");
        // Split into a delete and a create each: subnet, mount target, cluster, node group.
        assert_eq!(steps.len(), 9, "{order:?}");
        assert!(!order.iter().any(|s| s.contains("role")), "{order:?}");
    }

    #[test]
    fn a_replacement_on_its_own_stays_one_change() {
        let desired = vec![
            res("subnet", json!({"zone": "a"}), &[]).replace_fields(&["zone"]),
            res("role", json!({}), &[]),
        ];
        let observed = vec![Observed::like(
            &desired[0],
            json!({"zone": "b"}),
            None,
            ResourceState::Ready,
        )];
        let plan = plan::diff(&desired, &observed);
        let steps = steps(&plan.changes);
        assert_eq!(run_order(&steps), ["+ role", "-/+ subnet"]);
    }

    #[test]
    fn who_uses_a_deleted_resource_is_known_to_judge_an_in_use_refusal() {
        let plan = cascade_plan();
        let steps = steps(&plan.changes);
        let users = users(&steps, &plan.resources);
        let of = |action: Action, kind: &str| {
            let i = steps
                .iter()
                .position(|c| c.action == action && c.id.kind == kind)
                .unwrap_or_else(|| panic!("{kind}"));
            users[i].clone()
        };
        // The subnet's delete comes after the cluster's: what the cluster left may drain.
        let subnet = of(Action::Delete, "subnet");
        assert!(subnet.released, "{subnet:?}");
        assert!(subnet.staying.is_empty(), "{subnet:?}");
        assert_eq!(subnet.tolerant, [ResourceId::new("route_table", "x")]);
        // Nothing depends on the node group.
        let group = of(Action::Delete, "node_group");
        assert!(!group.released && group.staying.is_empty());
        // A create deletes nothing.
        assert!(of(Action::Create, "subnet").staying.is_empty());
    }
}
