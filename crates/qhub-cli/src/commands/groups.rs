//! What a person reads: changes and resources grouped by stage and component (one line per
//! component with its count and state), the objects themselves only with `-v`.
//!
//! A Kubernetes object's component is its `app.kubernetes.io/component` label (every object
//! qhub renders carries it, `qhub_core::kubernetes::components::COMPONENT_LABEL`); Keycloak's
//! realm, groups, identity provider and clients are the component `keycloak-config`; the
//! domain's record is `dns`; a cloud resource's component is its kind (`node_group`,
//! `cluster`, …).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use qhub_core::plan::{Action, Change, Plan, ResourceId, Stage};
use serde_json::Value as Json;

/// A stage and a component: the unit people read progress and status in.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Group {
    /// The stage.
    pub stage: Stage,
    /// The component's name.
    pub component: String,
}

impl std::fmt::Display for Group {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.stage, self.component)
    }
}

/// The component of a resource, from its id and the manifests it carries.
pub fn component(stage: Stage, id: &ResourceId, manifests: &[Option<&Json>]) -> String {
    if qhub_core::keycloak::KINDS.contains(&id.kind.as_str()) {
        return "keycloak-config".into();
    }
    if stage == Stage::Infrastructure {
        return id.kind.clone();
    }
    let pointer = format!(
        "/metadata/labels/{}",
        qhub_core::kubernetes::components::COMPONENT_LABEL.replace('/', "~1")
    );
    if let Some(label) = manifests
        .iter()
        .flatten()
        .find_map(|m| m.pointer(&pointer).and_then(Json::as_str))
    {
        return label.to_string();
    }
    match id.kind.as_str() {
        "DnsRecord" => "dns".into(),
        k if k.starts_with("CustomResourceDefinition") => "crds".into(),
        k => k.split('.').next().unwrap_or(k).to_ascii_lowercase(),
    }
}

/// The group of a planned change.
pub fn of_change(c: &Change) -> Group {
    let manifests = [
        c.desired.as_ref().and_then(|d| d.payload.as_ref()),
        c.desired.as_ref().map(|d| &d.spec),
        c.observed.as_ref().map(|o| &o.spec),
        c.observed.as_ref().and_then(|o| o.payload.as_ref()),
    ];
    Group {
        stage: c.stage,
        component: component(c.stage, &c.id, &manifests),
    }
}

/// The groups of a plan's changes, in the order they first appear.
pub fn of_plan(plan: &Plan) -> BTreeMap<ResourceId, Group> {
    plan.changes
        .iter()
        .map(|c| (c.id.clone(), of_change(c)))
        .collect()
}

/// Counts per action, as the plan's summary words them: `3 to create, 1 to update`.
fn counts(changes: &[&Change]) -> String {
    let mut by: BTreeMap<u8, (usize, &str)> = BTreeMap::new();
    for c in changes {
        let (order, word) = match c.action {
            Action::Create => (0, "to create"),
            Action::Update => (1, "to update"),
            Action::Replace => (2, "to replace"),
            Action::Delete => (3, "to delete"),
            Action::Wait => (4, "to wait for"),
        };
        by.entry(order).or_insert((0, word)).0 += 1;
    }
    by.values()
        .map(|(n, word)| format!("{n} {word}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The plan as text: with `verbose`, every object and field (the engine's rendering); else one
/// line per stage and component with its counts, the replacements by name (they may destroy
/// data), then the plan's notes and summary.
pub fn plan_text(plan: &Plan, verbose: bool) -> String {
    let full = plan.render_text();
    if verbose || plan.changes.is_empty() {
        return full;
    }
    let mut out = String::new();
    let mut stages: Vec<Stage> = Vec::new();
    for c in &plan.changes {
        if !stages.contains(&c.stage) {
            stages.push(c.stage);
        }
    }
    for stage in stages {
        let _ = writeln!(out, "{stage}:");
        let mut groups: Vec<(String, Vec<&Change>)> = Vec::new();
        for c in plan.changes.iter().filter(|c| c.stage == stage) {
            let g = of_change(c).component;
            match groups.iter_mut().find(|(name, _)| *name == g) {
                Some((_, list)) => list.push(c),
                None => groups.push((g, vec![c])),
            }
        }
        let width = groups.iter().map(|(g, _)| g.len()).max().unwrap_or(0);
        for (group, changes) in &groups {
            let _ = writeln!(out, "  {group:<width$}  {}", counts(changes));
            for c in changes.iter().filter(|c| c.action == Action::Replace) {
                // As the engine words it (`-v`), so a reader finds the same line in both.
                let why = c
                    .reason
                    .as_deref()
                    .map(|r| format!("  ({r})"))
                    .unwrap_or_default();
                let _ = writeln!(out, "    -/+ {}{why}", c.id);
            }
        }
    }
    // The engine's text after the objects: known-after-apply, kept, notes, refusals, summary.
    let tail: Vec<&str> = full
        .lines()
        .skip_while(|l| l.starts_with(' ') || stages_header(l))
        .collect();
    for line in tail {
        let _ = writeln!(out, "{line}");
    }
    let _ = writeln!(out, "(`-v` lists every object and field)");
    out
}

fn stages_header(line: &str) -> bool {
    [Stage::Infrastructure, Stage::Kubernetes]
        .iter()
        .any(|s| line == format!("{s}:"))
}

/// The fields of a node group's observed spec worth a line, as the providers name them.
const NODE_GROUP_FIELDS: &[&str] = &[
    "instance",
    "min_nodes",
    "max_nodes",
    "desired_nodes",
    "kubernetes_version",
    "version",
];

/// `status` as text without `-v`: per stage, one line per component with how many of its
/// resources are ready, pending or failed (the first one not ready named, with why); a line
/// per node group with its size and version; Keycloak's configuration counted from the plan
/// (it lives in Keycloak, not in the cloud or the cluster).
pub fn status_text(observed: &[qhub_core::plan::Observed], plan: &Plan) -> String {
    use qhub_core::plan::ResourceState;
    let mut out = String::new();
    let mut by: BTreeMap<Group, Vec<&qhub_core::plan::Observed>> = BTreeMap::new();
    for o in observed {
        let group = Group {
            stage: o.stage,
            component: component(o.stage, &o.id, &[Some(&o.spec), o.payload.as_ref()]),
        };
        by.entry(group).or_default().push(o);
    }
    let identity: Vec<&qhub_core::plan::Resource> = plan
        .resources
        .iter()
        .filter(|r| qhub_core::keycloak::KINDS.contains(&r.id.kind.as_str()))
        .collect();
    let width = by
        .keys()
        .map(|g| g.component.len())
        .chain([if identity.is_empty() {
            0
        } else {
            "keycloak-config".len()
        }])
        .max()
        .unwrap_or(0);
    let mut stage = None;
    for (group, items) in &by {
        if stage != Some(group.stage) {
            stage = Some(group.stage);
            let _ = writeln!(out, "  {}:", group.stage);
        }
        let ready = items
            .iter()
            .filter(|o| o.state == ResourceState::Ready)
            .count();
        let mut words = vec![format!("{ready} ready")];
        let not_ready: Vec<_> = items
            .iter()
            .filter(|o| o.state != ResourceState::Ready)
            .collect();
        for word in ["pending", "failed"] {
            let n = not_ready.iter().filter(|o| o.state.word() == word).count();
            if n > 0 {
                words.push(format!("{n} {word}"));
            }
        }
        let first = not_ready
            .first()
            .map(|o| match &o.state {
                ResourceState::Pending(d) | ResourceState::Failed(d) => {
                    format!(" ({}: {d})", o.id)
                }
                ResourceState::Ready => String::new(),
            })
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "    {:<width$}  {}{first}",
            group.component,
            words.join(", ")
        );
        if group.stage == Stage::Infrastructure && group.component.contains("node") {
            for o in items {
                let facts: Vec<String> = NODE_GROUP_FIELDS
                    .iter()
                    .filter_map(|f| {
                        o.spec.get(f).filter(|v| !v.is_null()).map(|v| {
                            format!("{f} {}", v.as_str().map_or(v.to_string(), str::to_string))
                        })
                    })
                    .collect();
                let _ = writeln!(out, "      {}  {}", o.id.name, facts.join(", "));
            }
        }
    }
    if !identity.is_empty() {
        if stage != Some(Stage::Kubernetes) {
            let _ = writeln!(out, "  {}:", Stage::Kubernetes);
        }
        let changing: Vec<&Change> = plan
            .changes
            .iter()
            .filter(|c| qhub_core::keycloak::KINDS.contains(&c.id.kind.as_str()))
            .collect();
        let in_sync = identity.len().saturating_sub(changing.len());
        let rest = if changing.is_empty() {
            String::new()
        } else {
            format!(", {}", counts(&changing))
        };
        let _ = writeln!(
            out,
            "    {:<width$}  {in_sync} of {} in sync{rest}",
            "keycloak-config",
            identity.len()
        );
    }
    out
}
