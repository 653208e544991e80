//! The plan model every provider author uses: typed resource identities, what the config wants
//! ([`Resource`]) against what exists ([`Observed`], with its typed [`ResourceState`]), and the
//! changes between them with a field-level diff.
//!
//! Rules of the diff ([`diff`]):
//! - missing -> [`Action::Create`]; a differing field -> [`Action::Update`], or
//!   [`Action::Replace`] when the field is in [`Resource::replace_fields`];
//! - an observed resource in [`ResourceState::Failed`] is repaired: [`Action::Replace`];
//! - one in [`ResourceState::Pending`] that otherwise matches is waited for: [`Action::Wait`]
//!   (the engine waits by observing; providers never receive a `Wait`);
//! - what exists and is not wanted -> [`Action::Delete`], dependants first;
//! - a replaced infrastructure resource cascades ([`Resource::on_dependency_replaced`]): every
//!   existing resource that depends on it, transitively, is replaced too
//!   ([`OnDependencyReplaced::Replace`], the default), updated after it is re-created
//!   ([`OnDependencyReplaced::Update`]), or the plan is refused naming both
//!   ([`OnDependencyReplaced::Refuse`], see [`Plan::refused`]) unless the caller allowed that
//!   resource's replacement ([`diff_allowing`]). A resource created with its parent
//!   ([`Resource::created_with`]) goes with the parent and is not cascaded. Kubernetes objects
//!   are applied in place (server-side apply), so they neither cascade nor are cascaded.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::Serialize;
use serde_json::Value as Json;

/// The two stages of a deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    /// Cloud resources: network, cluster, node groups, storage.
    Infrastructure,
    /// Kubernetes objects applied through the cluster.
    Kubernetes,
}

impl Stage {
    /// The name used on the command line and in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Infrastructure => "infrastructure",
            Self::Kubernetes => "kubernetes",
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A resource's identity: its kind and its name, unique within a deployment.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResourceId {
    /// Kind, e.g. `network`, `cluster`, `node_group`.
    pub kind: String,
    /// Name, e.g. `demo-dev-user`.
    pub name: String,
}

impl ResourceId {
    /// A new id.
    pub fn new(kind: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            kind: kind.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for ResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.kind, self.name)
    }
}

impl Serialize for ResourceId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A resource the config wants.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Resource {
    /// Identity.
    pub id: ResourceId,
    /// Stage.
    pub stage: Stage,
    /// Desired properties (a JSON object). Only these fields are compared with what is observed.
    pub spec: Json,
    /// Resources that must exist before this one (and be deleted after it).
    pub depends_on: Vec<ResourceId>,
    /// Spec fields whose change cannot be made in place: changing one (or a field under it:
    /// `spec.selector` covers `spec.selector.matchLabels.app`) replaces the resource.
    pub replace_fields: Vec<String>,
    /// What replacing the resource itself destroys (the data on a volume): a plan that
    /// replaces it is refused, naming this, unless the caller allowed its replacement
    /// (`--allow-replace`), as a cascade onto an [`OnDependencyReplaced::Refuse`] resource is.
    #[serde(skip)]
    pub replace_destroys: Option<String>,
    /// The provider's estimate of how long creating it takes (for progress and deadlines).
    pub expected_duration: std::time::Duration,
    /// What to apply, when it differs from `spec` (a Kubernetes manifest whose `spec` is its
    /// digest because it is too large to compare field by field).
    #[serde(skip)]
    pub payload: Option<Json>,
    /// The engine runs at most one mutating change at a time among the resources of one group
    /// (GKE allows one operation per cluster: its node pools name `cluster/<name>`); other
    /// groups stay parallel.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub serial_group: Option<String>,
    /// The parent whose create call creates this resource too (a DOKS cluster's first pool, GKE
    /// pools given with the cluster) and whose delete removes it. The parent's
    /// [`crate::provider::ApplyContext::children`] carries this resource's desired spec.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_with: Option<ResourceId>,
    /// True when the observed spec holds only fields qhub set (a Kubernetes object projected on
    /// what qhub last applied): an observed field the desired spec lacks is then a removal to
    /// plan, not a read-only attribute to ignore.
    #[serde(skip)]
    pub exact: bool,
    /// What happens to this resource when something it depends on is replaced (see the module
    /// documentation).
    #[serde(skip)]
    pub on_dependency_replaced: OnDependencyReplaced,
    /// The Kubernetes stage runs on it (the cluster): replacing it takes every Kubernetes
    /// object with it, so a plan that replaces it creates them all again afterwards.
    #[serde(skip)]
    pub hosts_kubernetes: bool,
    /// The config key each top-level spec field comes from (`availability_zone` ->
    /// `amazon_web_services.availability_zones`), so that a refused plan names what to edit.
    #[serde(skip)]
    pub config_keys: BTreeMap<String, String>,
    /// Spec fields whose in-place change cannot be undone (an EKS cluster's authentication
    /// mode), each with the note an update of it carries in the plan, so it is never made
    /// silently.
    #[serde(skip)]
    pub one_way: BTreeMap<String, String>,
}

/// What a resource needs when something it depends on is replaced (deleted and created again).
/// The provider declares it per kind ([`Resource::on_dependency_replaced`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum OnDependencyReplaced {
    /// It cannot outlive what it depends on: it is deleted before that is deleted and created
    /// after that is created (a node group, a mount target in a subnet). The default, because a
    /// resource left referring to something deleted blocks the delete
    /// (`DependencyViolation`) or is broken.
    #[default]
    Replace,
    /// It survives the replacement and is brought back in line in place once the replacement
    /// exists (a route table re-associated with a re-created subnet): an update ordered after
    /// the create. Only for resources that do not block the delete of what they depend on.
    Update,
    /// Replacing it destroys data or service, so the plan is refused unless the caller allows
    /// it explicitly (an EKS cluster: every workload and volume on it). The text says what a
    /// replacement destroys, for the refusal message.
    Refuse(String),
}

/// A cascade the plan refuses: `replaced` is replaced, and `dependant` depends on it but may
/// not be replaced without an explicit allowance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Refusal {
    /// The resource whose replacement started the cascade.
    pub root: ResourceId,
    /// Why the root is replaced: the fields that cannot change in place and the config keys
    /// they come from, or the repair of a failed resource.
    pub root_reason: String,
    /// The replaced resource the dependant depends on (the root, or a resource replaced
    /// because of it).
    pub replaced: ResourceId,
    /// The resource that would have to be replaced too.
    pub dependant: ResourceId,
    /// What replacing the dependant destroys.
    pub destroys: String,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.dependant == self.root {
            return write!(
                f,
                "replacing {root} ({why}) destroys {destroys}. Either undo the change (keep \
                 what exists), or allow it explicitly with `--allow-replace {root}` (plan and \
                 deploy), or `qhub destroy` and deploy again",
                root = self.root,
                why = self.root_reason,
                destroys = self.destroys,
            );
        }
        write!(
            f,
            "replacing {root} ({why}) would force replacing {dependant}, which depends on {via}; \
             replacing {dependant} destroys {destroys}. Either undo the change (keep what exists), \
             or allow it explicitly with `--allow-replace {dependant}` (plan and deploy), or \
             `qhub destroy` and deploy again",
            root = self.root,
            why = self.root_reason,
            dependant = self.dependant,
            via = if self.replaced == self.root {
                "it".to_string()
            } else {
                format!("{} (replaced because of it)", self.replaced)
            },
            destroys = self.destroys,
        )
    }
}

impl Resource {
    /// An infrastructure or Kubernetes resource with no dependencies, replace fields, estimate,
    /// payload, group or parent; the builder methods below add them.
    pub fn new(kind: impl Into<String>, name: impl Into<String>, stage: Stage, spec: Json) -> Self {
        Self {
            id: ResourceId::new(kind, name),
            stage,
            spec,
            depends_on: Vec::new(),
            replace_fields: Vec::new(),
            replace_destroys: None,
            expected_duration: std::time::Duration::ZERO,
            payload: None,
            serial_group: None,
            created_with: None,
            exact: false,
            on_dependency_replaced: OnDependencyReplaced::default(),
            hosts_kubernetes: false,
            config_keys: BTreeMap::new(),
            one_way: BTreeMap::new(),
        }
    }

    /// Marks the top-level spec `field` as one-way ([`Resource::one_way`]): a plan that
    /// updates it says `note`.
    #[must_use]
    pub fn one_way(mut self, field: &str, note: &str) -> Self {
        self.one_way.insert(field.to_string(), note.to_string());
        self
    }

    /// Marks it as the resource the Kubernetes stage runs on ([`Resource::hosts_kubernetes`]).
    #[must_use]
    pub fn hosts_kubernetes(mut self) -> Self {
        self.hosts_kubernetes = true;
        self
    }

    /// Sets what happens to it when something it depends on is replaced.
    #[must_use]
    pub fn on_dependency_replaced(mut self, policy: OnDependencyReplaced) -> Self {
        self.on_dependency_replaced = policy;
        self
    }

    /// Names the config key the top-level spec `field` comes from (see
    /// [`Resource::config_keys`]).
    #[must_use]
    pub fn config_key(mut self, field: &str, key: &str) -> Self {
        self.config_keys.insert(field.to_string(), key.to_string());
        self
    }

    /// Marks the resource [`Resource::exact`]: fields observed but no longer desired are
    /// planned as removals.
    #[must_use]
    pub fn exact(mut self) -> Self {
        self.exact = true;
        self
    }

    /// Adds dependencies.
    #[must_use]
    pub fn depends_on(mut self, ids: impl IntoIterator<Item = ResourceId>) -> Self {
        self.depends_on.extend(ids);
        self
    }

    /// Sets what replacing the resource itself destroys ([`Resource::replace_destroys`]).
    pub fn replace_destroys(mut self, what: impl Into<String>) -> Self {
        self.replace_destroys = Some(what.into());
        self
    }

    /// Sets the top-level fields whose change forces a replacement.
    #[must_use]
    pub fn replace_fields(mut self, fields: &[&str]) -> Self {
        self.replace_fields = fields.iter().map(|f| (*f).to_string()).collect();
        self
    }

    /// Sets the estimate of how long creating it takes.
    #[must_use]
    pub fn expected(mut self, duration: std::time::Duration) -> Self {
        self.expected_duration = duration;
        self
    }

    /// Puts the resource in a serial group (see [`Resource::serial_group`]).
    #[must_use]
    pub fn serial_group(mut self, group: impl Into<String>) -> Self {
        self.serial_group = Some(group.into());
        self
    }

    /// Marks the resource as created with `parent` (see [`Resource::created_with`]); the
    /// parent is also a dependency.
    #[must_use]
    pub fn created_with(mut self, parent: ResourceId) -> Self {
        if !self.depends_on.contains(&parent) {
            self.depends_on.push(parent.clone());
        }
        self.created_with = Some(parent);
        self
    }
}

/// The state a cloud reports for a resource, in three classes the engine acts on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", content = "detail", rename_all = "lowercase")]
pub enum ResourceState {
    /// Usable.
    Ready,
    /// Being created, updated or deleted by the cloud: the text says what it waits for
    /// (`EKS cluster CREATING`).
    Pending(String),
    /// Broken: the text says why (`EKS cluster FAILED: ...`). A plan replaces it.
    Failed(String),
}

impl ResourceState {
    /// One word for tables: `ready`, `pending`, `failed`.
    pub fn word(&self) -> &'static str {
        match self {
            Self::Ready => "ready",
            Self::Pending(_) => "pending",
            Self::Failed(_) => "failed",
        }
    }

    /// True when usable.
    pub fn is_ready(&self) -> bool {
        matches!(self, Self::Ready)
    }
}

impl fmt::Display for ResourceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ready => f.write_str("ready"),
            Self::Pending(what) => write!(f, "pending ({what})"),
            Self::Failed(why) => write!(f, "failed ({why})"),
        }
    }
}

/// A resource that exists and carries this deployment's marks.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Observed {
    /// Identity.
    pub id: ResourceId,
    /// Stage.
    pub stage: Stage,
    /// Observed properties, in the shape of [`Resource::spec`] (may hold more fields).
    pub spec: Json,
    /// What it depends on (so deletes run in reverse order).
    pub depends_on: Vec<ResourceId>,
    /// The cloud's own id for it, when it has one.
    pub cloud_id: Option<String>,
    /// The cloud's state, classified.
    pub state: ResourceState,
    /// Enough of the object to address it (for a Kubernetes object: `apiVersion`, `kind`,
    /// `metadata.name` and `metadata.namespace`).
    #[serde(skip)]
    pub payload: Option<Json>,
    /// As [`Resource::serial_group`], so that deletes honour it too.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub serial_group: Option<String>,
    /// As [`Resource::created_with`], so that deletes honour it too.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_with: Option<ResourceId>,
    /// Made by the cluster's own controllers for its workloads, not by qhub (the EBS volume of
    /// a PersistentVolumeClaim, a network interface a load balancer left): a deploy's plan
    /// leaves it alone, a destroy's deletes it (with the cluster, when `created_with` names it),
    /// and what remains after a destroy lists it.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub made_by_cluster: bool,
}

impl Observed {
    /// An observed resource shaped like `desired` (its id, stage, dependencies, group and
    /// parent), with the observed `spec`, cloud id and state.
    pub fn like(
        desired: &Resource,
        spec: Json,
        cloud_id: Option<String>,
        state: ResourceState,
    ) -> Self {
        Self {
            id: desired.id.clone(),
            stage: desired.stage,
            spec,
            depends_on: desired.depends_on.clone(),
            cloud_id,
            state,
            payload: None,
            serial_group: desired.serial_group.clone(),
            created_with: desired.created_with.clone(),
            made_by_cluster: false,
        }
    }

    /// An observed resource with no dependencies, group or parent.
    pub fn new(id: ResourceId, stage: Stage, spec: Json, state: ResourceState) -> Self {
        Self {
            id,
            stage,
            spec,
            depends_on: Vec::new(),
            cloud_id: None,
            state,
            payload: None,
            serial_group: None,
            created_with: None,
            made_by_cluster: false,
        }
    }
}

/// What a change does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Create a missing resource.
    Create,
    /// Change a resource in place.
    Update,
    /// Delete and re-create a resource (a field that cannot change in place changed).
    Replace,
    /// Delete a resource the config no longer wants.
    Delete,
    /// The resource exists and matches but the cloud is still working on it: wait until it is
    /// ready (the engine does this itself by observing).
    Wait,
}

impl Action {
    /// The symbol used in the human plan.
    pub fn symbol(self) -> &'static str {
        match self {
            Self::Create => "+",
            Self::Update => "~",
            Self::Replace => "-/+",
            Self::Delete => "-",
            Self::Wait => "...",
        }
    }
}

/// One field that differs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldDiff {
    /// Dotted path inside the spec.
    pub field: String,
    /// The observed value (`None` when absent).
    pub from: Option<Json>,
    /// The desired value (`None` when it goes away).
    pub to: Option<Json>,
    /// True when this field forces a replacement.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub forces_replacement: bool,
}

/// One change of a plan.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    /// Stage.
    pub stage: Stage,
    /// Identity.
    #[serde(rename = "resource")]
    pub id: ResourceId,
    /// What happens.
    pub action: Action,
    /// Field-level differences (every desired field for a create; empty for a delete).
    pub diff: Vec<FieldDiff>,
    /// The desired resource (create, update, replace).
    #[serde(skip)]
    pub desired: Option<Resource>,
    /// The observed resource (update, replace, delete, wait).
    #[serde(skip)]
    pub observed: Option<Observed>,
    /// Why the change is planned when the diff alone does not say: a repair of a failed
    /// resource, a wait on a pending one, a child created with its parent, a cascade.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The replaced resource this change cascades from (it depends on it): replaced or updated
    /// because that one is replaced.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub because: Option<ResourceId>,
}

impl Change {
    /// The resources this change must wait for, as ids.
    pub fn depends_on(&self) -> &[ResourceId] {
        match (&self.desired, &self.observed) {
            (Some(d), _) => &d.depends_on,
            (None, Some(o)) => &o.depends_on,
            (None, None) => &[],
        }
    }

    /// The serial group of the resource, if any.
    pub fn serial_group(&self) -> Option<&str> {
        match (&self.desired, &self.observed) {
            (Some(d), _) => d.serial_group.as_deref(),
            (None, Some(o)) => o.serial_group.as_deref(),
            (None, None) => None,
        }
    }

    /// The parent the resource is created and deleted with, if any.
    pub fn created_with(&self) -> Option<&ResourceId> {
        match (&self.desired, &self.observed) {
            (Some(d), _) => d.created_with.as_ref(),
            (None, Some(o)) => o.created_with.as_ref(),
            (None, None) => None,
        }
    }
}

/// A plan: the changes that take what exists to what the config wants.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Plan {
    /// Changes in a valid order (creates in dependency order, deletes in reverse).
    pub changes: Vec<Change>,
    /// How many resources already match.
    pub unchanged: usize,
    /// Values the Kubernetes stage needs that exist only once the infrastructure does (a new
    /// cluster's shared filesystem id): its objects were planned with placeholders and are
    /// built again from the real values when the apply reaches them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub known_after_apply: Vec<String>,
    /// What the plan leaves out and why (e.g. Keycloak's configuration when its admin API
    /// cannot be reached from here), with what to do about it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// Every desired resource, changed or not (a parent's create is given its children).
    #[serde(skip)]
    pub resources: Vec<Resource>,
    /// Cascades refused: a plan with any must not be applied ([`Plan::refusal`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub refused: Vec<Refusal>,
    /// What exists, is ours, and the plan deliberately leaves in place, with why (CRDs others
    /// may use: [`crate::kubernetes::crd_policy`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub kept: Vec<Kept>,
    /// How the plan moves what the deployment costs, when it changes something priced (node
    /// groups, the cluster, the shared filesystem, the load balancer); see
    /// [`crate::cost::CostChange`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost: Option<crate::cost::CostChange>,
}

/// A resource a plan leaves in place on purpose.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Kept {
    /// The resource.
    pub id: ResourceId,
    /// Why it stays.
    pub why: String,
}

/// Counts of a plan's changes by action.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Creates.
    pub create: usize,
    /// In-place updates.
    pub update: usize,
    /// Replacements.
    pub replace: usize,
    /// Deletes.
    pub delete: usize,
    /// Resources the cloud is still working on, to be waited for.
    pub wait: usize,
    /// Resources already as wanted.
    pub unchanged: usize,
}

impl Plan {
    /// True when nothing would change.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// The refused cascades as one message (one line each), or `None` when there are none.
    pub fn refusal(&self) -> Option<String> {
        if self.refused.is_empty() {
            return None;
        }
        let lines: Vec<String> = self.refused.iter().map(ToString::to_string).collect();
        Some(lines.join("\n"))
    }

    /// Counts by action.
    pub fn summary(&self) -> Summary {
        let mut s = Summary {
            unchanged: self.unchanged,
            ..Summary::default()
        };
        for c in &self.changes {
            match c.action {
                Action::Create => s.create += 1,
                Action::Update => s.update += 1,
                Action::Replace => s.replace += 1,
                Action::Delete => s.delete += 1,
                Action::Wait => s.wait += 1,
            }
        }
        s
    }

    /// The JSON document `plan --output json` prints.
    pub fn to_json(&self) -> Json {
        let mut doc = serde_json::json!({"changes": self.changes, "summary": self.summary()});
        if !self.kept.is_empty() {
            doc["kept"] = serde_json::json!(self.kept);
        }
        if let Some(cost) = &self.cost {
            doc["cost"] = serde_json::json!(cost);
        }
        doc
    }

    /// Human rendering, grouped by stage, counts at the end.
    pub fn render_text(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        if self.changes.is_empty() {
            let _ = writeln!(
                out,
                "No changes: {} resource(s) already match the config.",
                self.unchanged
            );
            for k in &self.kept {
                let _ = writeln!(out, "Kept: {} ({})", k.id, k.why);
            }
            for note in &self.notes {
                let _ = writeln!(out, "Note: {note}");
            }
            return out;
        }
        // Stages in the order their changes run (a destroy starts with Kubernetes).
        let mut stages: Vec<Stage> = Vec::new();
        for c in &self.changes {
            if !stages.contains(&c.stage) {
                stages.push(c.stage);
            }
        }
        for stage in stages {
            let changes: Vec<&Change> = self.changes.iter().filter(|c| c.stage == stage).collect();
            if changes.is_empty() {
                continue;
            }
            let _ = writeln!(out, "{stage}:");
            for c in changes {
                let note = match c.action {
                    Action::Replace => {
                        let fields: Vec<&str> = c
                            .diff
                            .iter()
                            .filter(|d| d.forces_replacement)
                            .map(|d| d.field.as_str())
                            .collect();
                        if fields.is_empty() {
                            String::new()
                        } else {
                            format!("  (replace: {} cannot change in place)", fields.join(", "))
                        }
                    }
                    _ => String::new(),
                };
                let note = match &c.reason {
                    Some(r) if note.is_empty() => format!("  ({r})"),
                    Some(r) => format!("{note} ({r})"),
                    None => note,
                };
                let _ = writeln!(out, "  {:>3} {}{note}", c.action.symbol(), c.id);
                // A new Kubernetes object's diff is its whole manifest: the name says enough.
                let creates_object = c.stage == Stage::Kubernetes && c.action == Action::Create;
                if !matches!(c.action, Action::Delete | Action::Wait) && !creates_object {
                    for d in &c.diff {
                        let show = |v: &Option<Json>| match v {
                            None => "(none)".to_string(),
                            Some(v) => v.to_string(),
                        };
                        match c.action {
                            Action::Create => {
                                let _ = writeln!(out, "        {}: {}", d.field, show(&d.to));
                            }
                            _ => {
                                let _ = writeln!(
                                    out,
                                    "        {}: {} -> {}",
                                    d.field,
                                    show(&d.from),
                                    show(&d.to)
                                );
                            }
                        }
                    }
                }
            }
        }
        if !self.known_after_apply.is_empty() {
            let _ = writeln!(
                out,
                "Known after apply (the Kubernetes objects above are built again with them): {}",
                self.known_after_apply.join(", ")
            );
        }
        for k in &self.kept {
            let _ = writeln!(out, "Kept: {} ({})", k.id, k.why);
        }
        for note in &self.notes {
            let _ = writeln!(out, "Note: {note}");
        }
        for refusal in &self.refused {
            let _ = writeln!(out, "Refused: {refusal}");
        }
        if let Some(cost) = &self.cost {
            out.push_str(&cost.text());
        }
        let s = self.summary();
        let wait = if s.wait > 0 {
            format!(", {} to wait for", s.wait)
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "Plan: {} to create, {} to update, {} to replace, {} to delete{wait} ({} unchanged).",
            s.create, s.update, s.replace, s.delete, s.unchanged
        );
        out
    }
}

fn leaves(prefix: &str, v: &Json, out: &mut BTreeMap<String, Json>) {
    match v {
        Json::Object(map) if !map.is_empty() => {
            for (k, child) in map {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                leaves(&p, child, out);
            }
        }
        other => {
            out.insert(prefix.to_string(), other.clone());
        }
    }
}

/// The replace field of `desired` that the dotted field path `k` is (or lies under).
fn replace_field<'a>(desired: &'a Resource, k: &str) -> Option<&'a str> {
    desired
        .replace_fields
        .iter()
        .map(String::as_str)
        .find(|f| k == *f || k.strip_prefix(f).is_some_and(|rest| rest.starts_with('.')))
}

/// The fields of `desired` that differ in `observed` (fields only observed are ignored: they
/// are read-only attributes such as endpoints).
pub fn field_diff(desired: &Resource, observed: &Json) -> Vec<FieldDiff> {
    let mut want = BTreeMap::new();
    leaves("", &desired.spec, &mut want);
    let mut have = BTreeMap::new();
    leaves("", observed, &mut have);
    let forces = |k: &str| replace_field(desired, k).is_some();
    let mut out: Vec<FieldDiff> = want
        .iter()
        .filter(|(k, v)| have.get(*k) != Some(*v))
        .map(|(k, v)| FieldDiff {
            forces_replacement: forces(k),
            from: have.get(k).cloned(),
            field: k.clone(),
            to: Some(v.clone()),
        })
        .collect();
    if desired.exact && !observed.is_null() {
        // A field qhub set before and no longer wants (a label, a ConfigMap key): a removal.
        // A field that became an object (or stopped being one) is already a change above.
        out.extend(
            have.iter()
                .filter(|(k, _)| {
                    !want.contains_key(*k)
                        && !want.keys().any(|w| w.starts_with(&format!("{k}.")))
                        && !want.keys().any(|w| k.starts_with(&format!("{w}.")))
                })
                .map(|(k, v)| FieldDiff {
                    forces_replacement: forces(k),
                    from: Some(v.clone()),
                    field: k.clone(),
                    to: None,
                }),
        );
        out.sort_by(|a, b| a.field.cmp(&b.field));
    }
    out
}

/// Orders ids so that each comes after its dependencies (ties by id, so the order is
/// deterministic). Dependencies outside the set are ignored; cycles are broken by id order.
pub fn topological<'a>(
    items: impl IntoIterator<Item = (&'a ResourceId, &'a [ResourceId])>,
) -> Vec<ResourceId> {
    let items: BTreeMap<&ResourceId, BTreeSet<&ResourceId>> = items
        .into_iter()
        .map(|(id, deps)| (id, deps.iter().collect()))
        .collect();
    let mut done: BTreeSet<&ResourceId> = BTreeSet::new();
    let mut out = Vec::with_capacity(items.len());
    while out.len() < items.len() {
        let next = items
            .iter()
            .find(|(id, deps)| {
                !done.contains(*id)
                    && deps
                        .iter()
                        .all(|d| done.contains(d) || !items.contains_key(d))
            })
            .or_else(|| items.iter().find(|(id, _)| !done.contains(*id)))
            .map(|(id, _)| *id);
        let Some(id) = next else { break };
        done.insert(id);
        out.push(id.clone());
    }
    out
}

/// The plan from desired and observed resources. A cascade onto a resource that refuses it
/// ([`OnDependencyReplaced::Refuse`]) is recorded in [`Plan::refused`].
pub fn diff(desired: &[Resource], observed: &[Observed]) -> Plan {
    diff_allowing(desired, observed, &[])
}

/// As [`diff`], with the replacement of the resources in `allow_replace` allowed when a
/// cascade reaches them although they refuse it (the user's explicit `--allow-replace`).
pub fn diff_allowing(
    desired: &[Resource],
    observed: &[Observed],
    allow_replace: &[ResourceId],
) -> Plan {
    plan(desired, observed, allow_replace, false)
}

/// The plan; `destroying`: what the cluster made ([`Observed::made_by_cluster`]) is deleted
/// too.
fn plan(
    desired: &[Resource],
    observed: &[Observed],
    allow_replace: &[ResourceId],
    destroying: bool,
) -> Plan {
    let observed_by_id: BTreeMap<&ResourceId, &Observed> =
        observed.iter().map(|o| (&o.id, o)).collect();
    let desired_ids: BTreeSet<&ResourceId> = desired.iter().map(|d| &d.id).collect();
    let mut plan = Plan {
        resources: desired.to_vec(),
        ..Plan::default()
    };
    let order = topological(desired.iter().map(|d| (&d.id, d.depends_on.as_slice())));
    let by_id: BTreeMap<&ResourceId, &Resource> = desired.iter().map(|d| (&d.id, d)).collect();
    // The change each desired resource needs on its own; absent when it already matches.
    let mut planned: BTreeMap<ResourceId, Change> = BTreeMap::new();
    for id in &order {
        let d = by_id[id];
        let change = |action, diff, observed: Option<&Observed>, reason| Change {
            stage: d.stage,
            id: d.id.clone(),
            action,
            diff,
            desired: Some(d.clone()),
            observed: observed.cloned(),
            reason,
            because: None,
        };
        let c = match observed_by_id.get(id) {
            None => {
                let reason = d.created_with.as_ref().map(|p| format!("created with {p}"));
                change(Action::Create, field_diff(d, &Json::Null), None, reason)
            }
            Some(o) => {
                let diff = field_diff(d, &o.spec);
                match &o.state {
                    ResourceState::Failed(why) => change(
                        Action::Replace,
                        diff,
                        Some(o),
                        Some(format!("repair: {why}")),
                    ),
                    // A Kubernetes object rolling out is the apply's own readiness wait, not a
                    // change to plan.
                    ResourceState::Pending(what)
                        if diff.is_empty() && d.stage == Stage::Infrastructure =>
                    {
                        change(Action::Wait, diff, Some(o), Some(format!("wait: {what}")))
                    }
                    _ if diff.is_empty() => continue,
                    _ => {
                        let action = if diff.iter().any(|f| f.forces_replacement) {
                            Action::Replace
                        } else {
                            Action::Update
                        };
                        let one_way: Vec<&str> = diff
                            .iter()
                            .filter_map(|f| {
                                let top = f.field.split('.').next().unwrap_or_default();
                                d.one_way.get(top).map(String::as_str)
                            })
                            .collect();
                        let reason = (action == Action::Update && !one_way.is_empty())
                            .then(|| format!("one-way: {}", one_way.join("; ")));
                        change(action, diff, Some(o), reason)
                    }
                }
            }
        };
        planned.insert(id.clone(), c);
    }
    plan.refused = cascade(&mut planned, &by_id, &observed_by_id, allow_replace);
    recreate_kubernetes(&mut planned, desired);
    for id in &order {
        match planned.remove(id) {
            Some(c) => plan.changes.push(c),
            None => plan.unchanged += 1,
        }
    }
    // The infrastructure comes first: Kubernetes objects need the cluster.
    plan.changes.sort_by_key(|c| c.stage);
    let extra: Vec<&Observed> = observed
        .iter()
        .filter(|o| !desired_ids.contains(&o.id) && (destroying || !o.made_by_cluster))
        .collect();
    let mut delete_order = topological(extra.iter().map(|o| (&o.id, o.depends_on.as_slice())));
    delete_order.reverse();
    for id in delete_order {
        let o = observed_by_id[&id];
        plan.changes.push(Change {
            stage: o.stage,
            id: o.id.clone(),
            action: Action::Delete,
            diff: Vec::new(),
            desired: None,
            observed: Some(o.clone()),
            because: None,
            reason: o
                .created_with
                .as_ref()
                .filter(|p| extra.iter().any(|e| &e.id == *p))
                .map(|p| format!("deleted with {p}"))
                .or_else(|| o.made_by_cluster.then(|| "left by the cluster".to_string())),
        });
    }
    // Deletes: Kubernetes objects first (their load balancers block the network), then the
    // infrastructure; stable, so dependants still come before what they depend on.
    let first_delete = plan
        .changes
        .iter()
        .position(|c| c.action == Action::Delete)
        .unwrap_or(plan.changes.len());
    plan.changes[first_delete..].sort_by_key(|c| std::cmp::Reverse(c.stage));
    plan
}

/// Why `root` is replaced, for a refusal: the fields that cannot change in place with the
/// config keys they come from, or the repair.
fn root_reason(root: &Change) -> String {
    let desired = root.desired.as_ref();
    let fields: Vec<String> = root
        .diff
        .iter()
        .filter(|d| d.forces_replacement)
        .map(|d| {
            let top = desired
                .and_then(|r| replace_field(r, &d.field))
                .unwrap_or_else(|| d.field.split('.').next().unwrap_or(&d.field));
            let show = |v: &Option<Json>| v.as_ref().map_or("(none)".to_string(), Json::to_string);
            let key = desired
                .and_then(|r| r.config_keys.get(top))
                .map(|k| format!(", set by `{k}`"))
                .unwrap_or_default();
            format!("{} {} -> {}{key}", d.field, show(&d.from), show(&d.to))
        })
        .collect();
    match (&root.reason, fields.is_empty()) {
        (_, false) => format!("{} cannot change in place", fields.join("; ")),
        (Some(r), true) => r.clone(),
        (None, true) => "it must be re-created".to_string(),
    }
}

/// When the resource the Kubernetes stage runs on is replaced, every Kubernetes object goes
/// with it: each desired one is created again after it (server-side apply into the new
/// cluster), whatever the old cluster held.
fn recreate_kubernetes(planned: &mut BTreeMap<ResourceId, Change>, desired: &[Resource]) {
    let Some(host) = planned
        .values()
        .find(|c| {
            c.action == Action::Replace && c.desired.as_ref().is_some_and(|d| d.hosts_kubernetes)
        })
        .map(|c| c.id.clone())
    else {
        return;
    };
    for d in desired.iter().filter(|d| d.stage == Stage::Kubernetes) {
        if planned
            .get(&d.id)
            .is_some_and(|c| c.action == Action::Create)
        {
            continue;
        }
        planned.insert(
            d.id.clone(),
            Change {
                stage: d.stage,
                id: d.id.clone(),
                action: Action::Create,
                diff: field_diff(d, &Json::Null),
                desired: Some(d.clone()),
                observed: None,
                reason: Some(format!(
                    "created again: {host} is replaced, and its objects with it"
                )),
                because: Some(host.clone()),
            },
        );
    }
}

/// Propagates replacements to the existing infrastructure resources that depend on a replaced
/// one, by their [`Resource::on_dependency_replaced`]; returns the refused cascades.
fn cascade(
    planned: &mut BTreeMap<ResourceId, Change>,
    desired: &BTreeMap<&ResourceId, &Resource>,
    observed: &BTreeMap<&ResourceId, &Observed>,
    allow_replace: &[ResourceId],
) -> Vec<Refusal> {
    let mut dependants: BTreeMap<&ResourceId, Vec<&Resource>> = BTreeMap::new();
    for d in desired.values() {
        if d.stage != Stage::Infrastructure {
            continue;
        }
        for dep in &d.depends_on {
            dependants.entry(dep).or_default().push(d);
        }
    }
    // (replaced, the root replacement it comes from)
    let mut queue: std::collections::VecDeque<(ResourceId, ResourceId)> = planned
        .values()
        .filter(|c| c.action == Action::Replace && c.stage == Stage::Infrastructure)
        .map(|c| (c.id.clone(), c.id.clone()))
        .collect();
    let mut refused: Vec<Refusal> = Vec::new();
    // A replacement that destroys what the resource holds needs the user's word, whatever
    // started it.
    for c in planned.values() {
        let Some(destroys) = c.desired.as_ref().and_then(|d| d.replace_destroys.as_ref()) else {
            continue;
        };
        if c.action == Action::Replace && c.observed.is_some() && !allow_replace.contains(&c.id) {
            refused.push(Refusal {
                root: c.id.clone(),
                root_reason: root_reason(c),
                replaced: c.id.clone(),
                dependant: c.id.clone(),
                destroys: destroys.clone(),
            });
        }
    }
    while let Some((replaced, root)) = queue.pop_front() {
        for d in dependants.get(&replaced).into_iter().flatten() {
            // Goes with its parent: deleted by the parent's delete, created by its create.
            if d.created_with.as_ref() == Some(&replaced) {
                continue;
            }
            // Not there yet: its create comes after the replacement's anyway.
            let Some(o) = observed.get(&d.id) else {
                continue;
            };
            let current = planned.get(&d.id);
            if current.is_some_and(|c| c.action == Action::Replace) {
                continue;
            }
            let replace_it = |reason: String| Change {
                stage: d.stage,
                id: d.id.clone(),
                action: Action::Replace,
                diff: current.map(|c| c.diff.clone()).unwrap_or_default(),
                desired: Some((*d).clone()),
                observed: Some((*o).clone()),
                reason: Some(reason),
                because: Some(replaced.clone()),
            };
            match &d.on_dependency_replaced {
                OnDependencyReplaced::Replace => {
                    let c = replace_it(format!("replaced because {replaced} is replaced"));
                    planned.insert(d.id.clone(), c);
                    queue.push_back((d.id.clone(), root.clone()));
                }
                OnDependencyReplaced::Refuse(_) if allow_replace.contains(&d.id) => {
                    let c = replace_it(format!(
                        "replaced because {replaced} is replaced; allowed by --allow-replace"
                    ));
                    planned.insert(d.id.clone(), c);
                    queue.push_back((d.id.clone(), root.clone()));
                }
                OnDependencyReplaced::Refuse(destroys) => {
                    if !refused.iter().any(|r| r.dependant == d.id) {
                        let root_change = &planned[&root];
                        refused.push(Refusal {
                            root: root.clone(),
                            root_reason: root_reason(root_change),
                            replaced: replaced.clone(),
                            dependant: d.id.clone(),
                            destroys: destroys.clone(),
                        });
                    }
                }
                OnDependencyReplaced::Update => {
                    let reason = format!("updated after {replaced} is replaced");
                    match planned.get_mut(&d.id) {
                        Some(c) if c.action == Action::Update => {
                            c.because.get_or_insert_with(|| replaced.clone());
                            c.reason.get_or_insert(reason);
                        }
                        _ => {
                            planned.insert(
                                d.id.clone(),
                                Change {
                                    stage: d.stage,
                                    id: d.id.clone(),
                                    action: Action::Update,
                                    diff: field_diff(d, &o.spec),
                                    desired: Some((*d).clone()),
                                    observed: Some((*o).clone()),
                                    reason: Some(reason),
                                    because: Some(replaced.clone()),
                                },
                            );
                        }
                    }
                }
            }
        }
    }
    refused
}

/// A plan that deletes everything observed, dependants first.
pub fn destroy(observed: &[Observed]) -> Plan {
    plan(&[], observed, &[], true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::time::Duration;

    fn res(kind: &str, name: &str, spec: Json, deps: &[(&str, &str)]) -> Resource {
        Resource::new(kind, name, Stage::Infrastructure, spec)
            .depends_on(deps.iter().map(|(k, n)| ResourceId::new(*k, *n)))
            .replace_fields(&["instance"])
            .expected(Duration::ZERO)
    }

    fn obs(r: &Resource, spec: Json) -> Observed {
        Observed::like(r, spec, None, ResourceState::Ready)
    }

    #[test]
    fn a_failed_resource_is_repaired_and_a_pending_one_waited_for() {
        let cluster = res("cluster", "c", json!({"v": "1.33"}), &[]);
        let failed = Observed::like(
            &cluster,
            cluster.spec.clone(),
            None,
            ResourceState::Failed("FAILED: subnet has no free addresses".into()),
        );
        let plan = diff(std::slice::from_ref(&cluster), &[failed]);
        assert_eq!(plan.changes[0].action, Action::Replace);
        assert!(
            plan.render_text()
                .contains("repair: FAILED: subnet has no free addresses"),
            "{}",
            plan.render_text()
        );
        let pending = Observed::like(
            &cluster,
            cluster.spec.clone(),
            None,
            ResourceState::Pending("CREATING".into()),
        );
        let plan = diff(
            std::slice::from_ref(&cluster),
            std::slice::from_ref(&pending),
        );
        assert_eq!(plan.changes[0].action, Action::Wait);
        assert_eq!(plan.summary().wait, 1);
        // A pending resource whose spec also differs is updated (the provider waits first).
        let mut pending = pending;
        pending.spec = json!({"v": "1.32"});
        let plan = diff(std::slice::from_ref(&cluster), &[pending]);
        assert_eq!(plan.changes[0].action, Action::Update);
    }

    #[test]
    fn an_update_of_a_one_way_field_says_so() {
        let cluster = res("cluster", "c", json!({"v": "1.33", "api": true}), &[])
            .one_way("api", "access entries cannot be turned off again");
        let plan = diff(
            std::slice::from_ref(&cluster),
            &[obs(&cluster, json!({"v": "1.33", "api": false}))],
        );
        assert_eq!(plan.changes[0].action, Action::Update);
        assert_eq!(
            plan.changes[0].reason.as_deref(),
            Some("one-way: access entries cannot be turned off again")
        );
        assert!(plan.render_text().contains("(one-way: access entries"));
        // Another field's update says nothing of it.
        let plan = diff(
            std::slice::from_ref(&cluster),
            &[obs(&cluster, json!({"v": "1.32", "api": true}))],
        );
        assert_eq!(plan.changes[0].reason, None);
    }

    #[test]
    fn a_child_created_with_its_parent_is_planned_once() {
        let cluster = res("cluster", "c", json!({"v": "1.33"}), &[]);
        let pool =
            res("node_pool", "p", json!({"size": "s"}), &[]).created_with(cluster.id.clone());
        assert_eq!(pool.depends_on, vec![cluster.id.clone()]);
        let plan = diff(&[pool.clone(), cluster.clone()], &[]);
        let ids: Vec<String> = plan.changes.iter().map(|c| c.id.to_string()).collect();
        assert_eq!(ids, ["cluster/c", "node_pool/p"]);
        assert_eq!(
            plan.changes[1].reason.as_deref(),
            Some("created with cluster/c")
        );
        assert_eq!(plan.resources.len(), 2);
        let text = plan.render_text();
        assert_eq!(text.matches("node_pool/p").count(), 1, "{text}");
    }

    #[test]
    fn creates_in_dependency_order_and_deletes_in_reverse() {
        let net = res("network", "n", json!({"cidr": "10.0.0.0/16"}), &[]);
        let cluster = res("cluster", "c", json!({"v": "1.33"}), &[("network", "n")]);
        let group = res(
            "node_group",
            "g",
            json!({"instance": "a", "max": 1}),
            &[("cluster", "c")],
        );
        let plan = diff(&[group.clone(), cluster.clone(), net.clone()], &[]);
        let ids: Vec<String> = plan.changes.iter().map(|c| c.id.to_string()).collect();
        assert_eq!(ids, ["network/n", "cluster/c", "node_group/g"]);
        assert!(plan.changes.iter().all(|c| c.action == Action::Create));

        let observed = vec![
            obs(&net, net.spec.clone()),
            obs(&cluster, cluster.spec.clone()),
            obs(&group, group.spec.clone()),
        ];
        let plan = destroy(&observed);
        let ids: Vec<String> = plan.changes.iter().map(|c| c.id.to_string()).collect();
        assert_eq!(ids, ["node_group/g", "cluster/c", "network/n"]);
    }

    #[test]
    fn update_vs_replace_and_read_only_fields_ignored() {
        let group = res("node_group", "g", json!({"instance": "a", "max": 2}), &[]);
        let observed = obs(&group, json!({"instance": "a", "max": 1, "endpoint": "x"}));
        let plan = diff(
            std::slice::from_ref(&group),
            std::slice::from_ref(&observed),
        );
        assert_eq!(plan.changes.len(), 1);
        assert_eq!(plan.changes[0].action, Action::Update);
        assert_eq!(plan.changes[0].diff[0].field, "max");
        assert_eq!(plan.changes[0].diff[0].from, Some(json!(1)));

        let observed = obs(&group, json!({"instance": "b", "max": 2}));
        let plan = diff(std::slice::from_ref(&group), &[observed]);
        assert_eq!(plan.changes[0].action, Action::Replace);
        assert!(
            plan.render_text()
                .contains("replace: instance cannot change in place")
        );

        let plan = diff(
            std::slice::from_ref(&group),
            &[obs(&group, group.spec.clone())],
        );
        assert!(plan.is_empty());
        assert_eq!(plan.unchanged, 1);
    }

    /// A VPC-like network: a subnet (its zone cannot change in place), what lives in it or
    /// refers to it, and a node group on the cluster.
    fn network(cluster: OnDependencyReplaced) -> Vec<Resource> {
        vec![
            res("subnet", "s", json!({"zone": "a"}), &[])
                .replace_fields(&["zone"])
                .config_key("zone", "amazon_web_services.availability_zones"),
            res(
                "route_table",
                "r",
                json!({"subnets": ["s"]}),
                &[("subnet", "s")],
            )
            .on_dependency_replaced(OnDependencyReplaced::Update),
            res(
                "mount_target",
                "m",
                json!({"subnet": "s"}),
                &[("subnet", "s")],
            ),
            res(
                "cluster",
                "c",
                json!({"subnets": ["s"]}),
                &[("subnet", "s")],
            )
            .on_dependency_replaced(cluster),
            res(
                "node_group",
                "g",
                json!({"instance": "a"}),
                &[("cluster", "c")],
            ),
        ]
    }

    fn moved(desired: &[Resource]) -> Vec<Observed> {
        desired
            .iter()
            .map(|r| {
                let mut spec = r.spec.clone();
                if r.id.kind == "subnet" {
                    spec["zone"] = json!("b");
                }
                obs(r, spec)
            })
            .collect()
    }

    fn action_of(plan: &Plan, kind: &str) -> Option<(Action, Option<String>)> {
        plan.changes
            .iter()
            .find(|c| c.id.kind == kind)
            .map(|c| (c.action, c.because.as_ref().map(ToString::to_string)))
    }

    #[test]
    fn replacing_a_subnet_replaces_what_depends_on_it_or_refuses_naming_both() {
        let desired = network(OnDependencyReplaced::Refuse(
            "every workload and volume on it".into(),
        ));
        let observed = moved(&desired);
        let plan = diff(&desired, &observed);
        assert_eq!(plan.refused.len(), 1, "{:?}", plan.refused);
        let refusal = plan.refusal().expect("refused");
        for needle in [
            "subnet/s",
            "cluster/c",
            "zone \"b\" -> \"a\"",
            "`amazon_web_services.availability_zones`",
            "--allow-replace cluster/c",
            "every workload and volume on it",
        ] {
            assert!(refusal.contains(needle), "{needle} missing from: {refusal}");
        }
        assert!(plan.render_text().contains("Refused: replacing subnet/s"));
        // What may follow the subnet does: the mount target is replaced, the route table
        // updated after the subnet is back.
        assert_eq!(
            action_of(&plan, "mount_target"),
            Some((Action::Replace, Some("subnet/s".into())))
        );
        assert_eq!(
            action_of(&plan, "route_table"),
            Some((Action::Update, Some("subnet/s".into())))
        );

        // Allowed explicitly: the cluster is replaced, and the node group on it too.
        let plan = diff_allowing(&desired, &observed, &[ResourceId::new("cluster", "c")]);
        assert!(plan.refused.is_empty(), "{:?}", plan.refused);
        assert_eq!(
            action_of(&plan, "cluster"),
            Some((Action::Replace, Some("subnet/s".into())))
        );
        assert_eq!(
            action_of(&plan, "node_group"),
            Some((Action::Replace, Some("cluster/c".into())))
        );
        assert_eq!(plan.summary().replace, 4);
        assert_eq!(plan.summary().update, 1);
        assert_eq!(plan.unchanged, 0);
        let text = plan.render_text();
        assert!(
            text.contains("-/+ node_group/g  (replaced because cluster/c is replaced"),
            "{text}"
        );
        assert!(
            text.contains("~ route_table/r  (updated after subnet/s is replaced)"),
            "{text}"
        );
        let json = plan.to_json();
        let group = json["changes"]
            .as_array()
            .and_then(|a| a.iter().find(|c| c["resource"] == "node_group/g"))
            .expect("node group in the JSON plan");
        assert_eq!(group["action"], "replace");
        assert_eq!(group["because"], "cluster/c");
    }

    #[test]
    fn a_cascade_is_transitive_and_leaves_children_and_missing_dependants_alone() {
        let desired = network(OnDependencyReplaced::Replace);
        let mut observed = moved(&desired);
        // The node group does not exist yet: it is a create, after the cluster's.
        observed.retain(|o| o.id.kind != "node_group");
        let plan = diff(&desired, &observed);
        assert!(plan.refused.is_empty());
        assert_eq!(
            action_of(&plan, "cluster"),
            Some((Action::Replace, Some("subnet/s".into())))
        );
        assert_eq!(action_of(&plan, "node_group"), Some((Action::Create, None)));

        // A pool created with its cluster goes with it: not cascaded.
        let cluster = res("cluster", "c", json!({"region": "a"}), &[]).replace_fields(&["region"]);
        let pool = res("node_pool", "p", json!({"size": 1}), &[]).created_with(cluster.id.clone());
        let observed = vec![
            obs(&cluster, json!({"region": "b"})),
            obs(&pool, pool.spec.clone()),
        ];
        let plan = diff(&[cluster, pool], &observed);
        assert_eq!(plan.changes.len(), 1, "{}", plan.render_text());
        assert_eq!(plan.unchanged, 1);

        // Without a replacement nothing cascades.
        let desired = network(OnDependencyReplaced::Replace);
        let observed: Vec<Observed> = desired.iter().map(|r| obs(r, r.spec.clone())).collect();
        assert!(diff(&desired, &observed).is_empty());
    }

    #[test]
    fn a_kubernetes_object_neither_cascades_nor_is_cascaded() {
        let object = Resource::new("ConfigMap", "a", Stage::Kubernetes, json!({"v": 1}))
            .replace_fields(&["v"]);
        let user = Resource::new("Deployment", "b", Stage::Kubernetes, json!({"v": 1}))
            .depends_on([object.id.clone()]);
        let observed = vec![obs(&object, json!({"v": 2})), obs(&user, json!({"v": 1}))];
        let plan = diff(&[object, user], &observed);
        assert_eq!(plan.changes.len(), 1);
        assert!(plan.refused.is_empty());
    }

    #[test]
    fn replacing_the_cluster_creates_every_kubernetes_object_again() {
        let cluster = res("cluster", "c", json!({"region": "a"}), &[])
            .replace_fields(&["region"])
            .hosts_kubernetes();
        let object = Resource::new("ConfigMap", "a", Stage::Kubernetes, json!({"v": 1}));
        let desired = vec![cluster.clone(), object.clone()];
        let same = vec![
            obs(&cluster, cluster.spec.clone()),
            obs(&object, object.spec.clone()),
        ];
        assert!(diff(&desired, &same).is_empty());
        let moved = vec![
            obs(&cluster, json!({"region": "b"})),
            obs(&object, json!({"v": 1})),
        ];
        let plan = diff(&desired, &moved);
        assert_eq!(
            action_of(&plan, "ConfigMap"),
            Some((Action::Create, Some("cluster/c".into())))
        );
        assert_eq!(
            plan.changes.last().map(|c| c.stage),
            Some(Stage::Kubernetes)
        );
    }

    #[test]
    fn what_the_cluster_made_is_left_alone_by_a_deploy_and_deleted_by_a_destroy() {
        let cluster = res("cluster", "c", json!({}), &[]);
        let mut volume = Observed::new(
            ResourceId::new("ebs_volume", "vol-1"),
            Stage::Infrastructure,
            json!({"claim": "claim-alice"}),
            ResourceState::Ready,
        );
        volume.made_by_cluster = true;
        volume.created_with = Some(cluster.id.clone());
        let observed = vec![obs(&cluster, cluster.spec.clone()), volume];
        assert!(diff(std::slice::from_ref(&cluster), &observed).is_empty());
        let plan = destroy(&observed);
        let ids: Vec<String> = plan.changes.iter().map(|c| c.id.to_string()).collect();
        assert_eq!(ids, ["ebs_volume/vol-1", "cluster/c"]);
        assert_eq!(
            plan.changes[0].reason.as_deref(),
            Some("deleted with cluster/c")
        );
        // The cluster already gone: deleted on its own.
        let plan = destroy(&observed[1..]);
        assert_eq!(
            plan.changes[0].reason.as_deref(),
            Some("left by the cluster")
        );
    }
}
