//! Whether a cluster holds the objects a render of the config describes: the check that what
//! `qhub render` writes offline (from [`crate::provider::registry::ProviderRegistry::offline_facts`])
//! is what a deploy applied.
//!
//! The comparison is the plan's own: the rendered objects are diffed ([`crate::plan::diff`])
//! against the deployment's live objects as the plan observes them (each projected on the
//! fields qhub applied, so server defaults and other managers' fields are left out). An object
//! that differs only where the render holds a placeholder
//! ([`crate::provider::facts::AFTER_APPLY`]) is counted apart: that fact is one only the cloud
//! makes.

use std::collections::BTreeMap;

use super::KubeError;
use super::apply::Applier;
use super::applyset::ApplySet;
use crate::config::Config;
use crate::plan::{self, Action, Resource, Stage};
use crate::provider::facts::AFTER_APPLY;
use crate::provider::{ClusterFacts, Ownership, Provider, ProviderError};

/// How a cluster's objects compare with a render.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Comparison {
    /// Objects the cluster holds exactly as rendered.
    pub same: usize,
    /// Objects that differ only at fields where the render holds a placeholder: object id to
    /// those fields.
    pub placeholders: BTreeMap<String, Vec<String>>,
    /// Objects that differ elsewhere, are missing, or exist without being rendered: object id
    /// to what differs.
    pub differ: BTreeMap<String, Vec<String>>,
}

impl Comparison {
    /// The rendered objects and the placeholder fields, in one line (for reports).
    pub fn summary(&self) -> String {
        let fields: Vec<String> = self
            .placeholders
            .iter()
            .flat_map(|(id, f)| f.iter().map(move |f| format!("{id} {f}")))
            .collect();
        format!(
            "{} objects: {} same, {} differ only in placeholders ({}), {} differ otherwise",
            self.same + self.placeholders.len() + self.differ.len(),
            self.same,
            self.placeholders.len(),
            fields.join(", "),
            self.differ.len()
        )
    }
}

/// Compares the objects `rendered` (the Kubernetes stage of `config`, as
/// [`super::desired`] builds them) with the deployment's objects in the cluster `client` reaches.
pub async fn compare(
    client: kube::Client,
    config: &Config,
    rendered: &[Resource],
) -> Result<Comparison, KubeError> {
    let mut kinds: Vec<(String, String)> = Vec::new();
    for r in rendered {
        let manifest = r.payload.as_ref().unwrap_or(&r.spec);
        if let Ok(o) = super::ObjectRef::of(manifest) {
            let pair = (o.api_version, o.kind);
            if !kinds.contains(&pair) {
                kinds.push(pair);
            }
        }
    }
    let applier = Applier::new(client);
    let observed = applier
        .observe(&ApplySet::for_config(config), &kinds)
        .await?;
    Ok(classify(&plan::diff(rendered, &observed)))
}

/// A deployed cluster against its offline render, and against the generic cluster facts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RenderCheck {
    /// The cluster against the objects rendered offline.
    pub rendered: Comparison,
    /// The cluster against the objects the generic facts ([`ClusterFacts::from_config`]) give:
    /// where a provider's facts matter, this differs, which shows the comparison can fail.
    pub generic: Comparison,
}

/// Compares the cluster of `provider`'s deployment of `config` with `rendered` (what `qhub
/// render` writes offline) and with the objects of the generic cluster facts, through the
/// cluster access the provider hands out.
pub async fn check_render(
    provider: &dyn Provider,
    config: &Config,
    rendered: &[Resource],
) -> Result<RenderCheck, ProviderError> {
    let client = provider
        .cluster_access(&Ownership::of(config))
        .await?
        .client()
        .await?;
    let generic = super::desired(config, &ClusterFacts::from_config(config))?;
    Ok(RenderCheck {
        rendered: compare(client.clone(), config, rendered).await?,
        generic: compare(client, config, &generic).await?,
    })
}

/// Sorts a plan of the rendered objects against the live ones into [`Comparison`].
fn classify(plan: &plan::Plan) -> Comparison {
    let mut out = Comparison {
        same: plan.unchanged,
        ..Comparison::default()
    };
    for c in plan.changes.iter().filter(|c| c.stage == Stage::Kubernetes) {
        let id = c.id.to_string();
        let at_placeholder = |d: &plan::FieldDiff| {
            d.to.as_ref()
                .is_some_and(|v| v.to_string().contains(AFTER_APPLY))
        };
        match c.action {
            Action::Update | Action::Replace
                if !c.diff.is_empty() && c.diff.iter().all(at_placeholder) =>
            {
                out.placeholders
                    .insert(id, c.diff.iter().map(|d| d.field.clone()).collect());
            }
            Action::Create => {
                out.differ.insert(id, vec!["not in the cluster".into()]);
            }
            Action::Delete => {
                out.differ
                    .insert(id, vec!["in the cluster, not rendered".into()]);
            }
            _ => {
                out.differ.insert(
                    id,
                    c.diff
                        .iter()
                        .map(|d| {
                            let show = |v: &Option<serde_json::Value>| {
                                v.as_ref().map_or("(none)".to_string(), |v| v.to_string())
                            };
                            format!("{}: {} -> {}", d.field, show(&d.from), show(&d.to))
                        })
                        .collect(),
                );
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Observed, ResourceState};
    use serde_json::json;

    fn object(name: &str, data: serde_json::Value) -> Resource {
        Resource::new(
            "ConfigMap",
            format!("dev/{name}"),
            Stage::Kubernetes,
            json!({"data": data}),
        )
    }

    fn live(r: &Resource, data: serde_json::Value) -> Observed {
        Observed::new(
            r.id.clone(),
            Stage::Kubernetes,
            json!({"data": data}),
            ResourceState::Ready,
        )
    }

    #[test]
    fn placeholders_are_counted_apart_from_real_differences() {
        let same = object("same", json!({"a": "1"}));
        let held = object("held", json!({"server": AFTER_APPLY}));
        let other = object("other", json!({"a": "1"}));
        let missing = object("missing", json!({}));
        let observed = [
            live(&same, json!({"a": "1"})),
            live(&held, json!({"server": "fs-1.efs"})),
            live(&other, json!({"a": "2"})),
        ];
        let c = classify(&plan::diff(&[same, held, other, missing], &observed));
        assert_eq!(c.same, 1);
        assert_eq!(
            c.placeholders.keys().collect::<Vec<_>>(),
            ["ConfigMap/dev/held"]
        );
        assert_eq!(
            c.differ.keys().collect::<Vec<_>>(),
            ["ConfigMap/dev/missing", "ConfigMap/dev/other"]
        );
        assert!(
            c.summary().starts_with("4 objects: 1 same, 1 differ only"),
            "{}",
            c.summary()
        );
    }
}
