//! The platform with every optional piece that is built switched on (monitoring, Argo
//! Workflows, kbatch, a private extension with its own login client), deployed on the sandbox
//! with the Keycloak emulator; then each switched off in turn. Switching one off deletes exactly
//! the objects labelled with its components (CRDs are kept, as for every CRD) and exactly its
//! Keycloak clients, and nothing else; the cluster and Keycloak then no longer hold them; a
//! re-deploy is a no-op; switching it on again brings the same objects back (issue #22).
//!
//! The pieces that are not built (`NOT_BUILT`: cdsdashboards, prefect, clearml) stop `validate`
//! and `plan` with their reason instead: `config::not_built`'s tests.

use std::collections::{BTreeMap, BTreeSet};

use qhub_core::Config;
use qhub_core::config::components::Toggle;
use qhub_core::kubernetes::components::{
    COMPONENT_LABEL, argo_workflows, extensions, forward_auth, kbatch, monitoring,
};
use qhub_core::plan::Action;
use qhub_core::provider::Ownership;
use qhub_sandbox::SandboxProvider;
use qhub_sandbox::faults::FaultSpec;
use serde_json::{Value as Json, json};

mod support;
use support::{assert_redeploy_is_a_noop, deploy, engine, ids, sandbox_config};

/// The sandbox's default config with every built optional piece on.
fn everything_on() -> Config {
    let mut config = sandbox_config();
    config.monitoring = Some(Toggle::on());
    config.argo_workflows = Some(Toggle::on());
    config.kbatch = Some(Toggle::on());
    config.tf_extensions = Some(
        serde_json::from_value(json!([
            {"name": "dash", "image": "docker.io/acme/dash:1.2", "urlslug": "dash",
             "private": true, "oauth2client": true, "keycloakadmin": true, "jwt": true,
             "qhubconfigyaml": true},
        ]))
        .unwrap(),
    );
    config
}

/// One optional piece: how to switch it off, the components its objects are labelled with,
/// and its Keycloak clients.
struct Piece {
    name: &'static str,
    off: fn(&mut Config),
    components: &'static [&'static str],
    clients: Vec<String>,
}

fn pieces() -> Vec<Piece> {
    let dash: qhub_core::config::Extension =
        serde_json::from_value(json!({"name": "dash", "image": "x", "urlslug": "dash"})).unwrap();
    vec![
        Piece {
            name: "monitoring",
            off: |c| c.monitoring.as_mut().unwrap().enabled = false,
            components: &[monitoring::NAME],
            clients: vec!["grafana".into()],
        },
        Piece {
            name: "argo_workflows",
            off: |c| c.argo_workflows.as_mut().unwrap().enabled = false,
            components: &[argo_workflows::NAME],
            clients: vec![argo_workflows::CLIENT_ID.into()],
        },
        Piece {
            // A JupyterHub service: no login client of its own.
            name: "kbatch",
            off: |c| c.kbatch.as_mut().unwrap().enabled = false,
            components: &[kbatch::NAME],
            clients: vec![],
        },
        Piece {
            // The only extension, and the only private one: forward-auth goes with it.
            name: "tf_extensions",
            off: |c| c.tf_extensions = None,
            components: &[extensions::NAME, forward_auth::NAME],
            clients: vec![
                extensions::client_id(&dash),
                forward_auth::CLIENT_ID.to_string(),
            ],
        },
    ]
}

/// The component label of the object a change creates or deletes.
fn component(change: &qhub_core::plan::Change) -> Option<String> {
    let object = change
        .desired
        .as_ref()
        .map(|r| &r.spec)
        .or(change.observed.as_ref().map(|o| &o.spec))?;
    object
        .pointer(&format!(
            "/metadata/labels/{}",
            COMPONENT_LABEL.replace('/', "~1")
        ))
        .and_then(Json::as_str)
        .map(str::to_string)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_optional_piece_deploys_and_switching_each_off_prunes_exactly_its_objects_and_clients()
 {
    let dir = tempfile::tempdir().unwrap();
    let provider = SandboxProvider::new(dir.path(), 0.0, FaultSpec::default());
    let engine = engine(&provider);
    let full = everything_on();
    let first = deploy(&engine, &full).await;
    let kube = provider.kube_api(&Ownership::of(&full)).unwrap();
    let keycloak = provider.keycloak().await.expect("Keycloak runs");

    // What each component created, from the first plan.
    let mut by_component: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for c in first.changes.iter().filter(|c| c.action == Action::Create) {
        if let Some(name) = component(c) {
            by_component
                .entry(name)
                .or_default()
                .insert(c.id.to_string());
        }
    }
    let created = ids(&first, Action::Create);
    eprintln!(
        "everything on: {} changes, {} objects labelled with a component, {} Keycloak clients",
        first.changes.len(),
        by_component.values().map(BTreeSet::len).sum::<usize>(),
        created
            .iter()
            .filter(|id| id.starts_with("keycloak_client/"))
            .count()
    );
    assert_redeploy_is_a_noop(&engine, &full, &kube, &keycloak).await;

    for piece in pieces() {
        let mut expected = BTreeSet::new();
        for name in piece.components {
            let objects = by_component
                .get(*name)
                .unwrap_or_else(|| panic!("{}: nothing labelled {name} was deployed", piece.name));
            expected.extend(
                objects
                    .iter()
                    .filter(|id| !id.starts_with("CustomResourceDefinition."))
                    .cloned(),
            );
        }
        for client in &piece.clients {
            let id = format!("keycloak_client/{client}");
            assert!(created.contains(&id), "{}: {id} never created", piece.name);
            expected.insert(id);
        }

        let mut off = full.clone();
        (piece.off)(&mut off);
        let plan = deploy(&engine, &off).await;
        assert_eq!(
            ids(&plan, Action::Delete),
            expected,
            "{}: switching it off deletes exactly its objects and clients",
            piece.name
        );
        for action in [Action::Create, Action::Replace] {
            assert!(
                ids(&plan, action).is_empty(),
                "{}: switching it off {action:?}s {:?}",
                piece.name,
                ids(&plan, action)
            );
        }
        // What may change elsewhere, and why: the extension mounts the config (which changed)
        // and rolls with it; the hub registers Grafana's hub service; the applyset's record
        // lists the kinds it holds.
        let may_update: BTreeSet<String> = [
            "ConfigMap/dev/qhub-config-yaml",
            "Deployment.apps/dev/qhub-ext-dash",
            "ConfigMap/dev/hub-config",
            "Deployment.apps/dev/hub",
            "Secret/dev/qhub-applyset",
        ]
        .into_iter()
        .map(str::to_string)
        .collect();
        let updated = ids(&plan, Action::Update);
        assert!(
            updated.is_subset(&may_update),
            "{}: switching it off updates {:?}",
            piece.name,
            updated.difference(&may_update).collect::<Vec<_>>()
        );
        eprintln!(
            "{} off: {} deleted, updated {updated:?}",
            piece.name,
            expected.len(),
        );
        for client in &piece.clients {
            assert!(
                keycloak.client("qhub", client).is_none(),
                "{}: client {client} left in Keycloak",
                piece.name
            );
        }
        let left: Vec<String> = kube
            .objects()
            .iter()
            .filter(|o| {
                o.pointer(&format!("/metadata/labels/{}", COMPONENT_LABEL.replace('/', "~1")))
                    .and_then(Json::as_str)
                    .is_some_and(|c| piece.components.contains(&c))
                    && o["kind"] != "CustomResourceDefinition"
                    // Pods and ReplicaSets of a deleted Deployment go by garbage collection.
                    && o.pointer("/metadata/ownerReferences").is_none()
            })
            .map(|o| format!("{} {}", o["kind"], o["metadata"]["name"]))
            .collect();
        assert!(
            left.is_empty(),
            "{}: left in the cluster: {left:?}",
            piece.name
        );
        assert_redeploy_is_a_noop(&engine, &off, &kube, &keycloak).await;

        // On again: the same objects and clients come back, and nothing else changes.
        let again = deploy(&engine, &full).await;
        assert_eq!(
            ids(&again, Action::Create),
            expected,
            "{}: switching it on again creates what went",
            piece.name
        );
        assert_redeploy_is_a_noop(&engine, &full, &kube, &keycloak).await;
    }
}
