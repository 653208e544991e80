//! The ApplySet parent names every namespace other than its own that holds members
//! (`applyset.kubernetes.io/additional-namespaces`, KEP-3659; kubectl's
//! `ApplySetAdditionalNamespacesAnnotation` and `AllPrunableNamespaces` in kubernetes/kubernetes
//! `staging/src/k8s.io/kubectl/pkg/cmd/apply/applyset.go`): an ApplySet-aware tool lists
//! namespaced members only in the parent's namespace and those, so the in-cluster NFS server
//! in `<namespace>-privileged` must be listed there to be found, pruned and destroyed.

use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::discovery::Scope;
use qhub_core::config::init::{InitOptions, render};
use qhub_core::config::provider::ProviderKind;
use qhub_core::kubernetes::apply::Applier;
use qhub_core::kubernetes::applyset::{self, ApplySet};
use qhub_core::plan::{self, Action};
use qhub_sandbox::kube_api::KubeApi;
use serde_json::Value;

fn desired(provider: ProviderKind) -> Vec<Value> {
    let config = render(&InitOptions::new(
        provider,
        "demo",
        "demo.example.com",
        "not-a-real-password",
    ))
    .unwrap();
    let facts = qhub_core::provider::ClusterFacts::from_config(&config);
    qhub_core::kubernetes::desired(&config, &facts)
        .unwrap()
        .into_iter()
        .map(|r| r.payload.unwrap())
        .collect()
}

fn parent(manifests: &[Value]) -> &Value {
    manifests
        .iter()
        .find(|m| m["metadata"]["name"] == applyset::PARENT_NAME)
        .unwrap()
}

fn annotation<'a>(parent: &'a Value, key: &str) -> &'a str {
    parent["metadata"]["annotations"][key].as_str().unwrap()
}

/// How an ApplySet-aware tool (kubectl) finds members: the parent's group-kinds, namespaced
/// ones listed in the parent's namespace and its additional namespaces only.
async fn members_as_kubectl_finds_them(client: &kube::Client, set: &ApplySet) -> Vec<String> {
    let parents: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        &set.namespace,
        &kube::core::ApiResource::from_gvk(&GroupVersionKind::gvk("", "v1", "Secret")),
    );
    let parent = serde_json::to_value(parents.get(applyset::PARENT_NAME).await.unwrap()).unwrap();
    let mut namespaces = vec![set.namespace.clone()];
    namespaces.extend(
        annotation(&parent, applyset::ADDITIONAL_NAMESPACES_ANNOTATION)
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_string),
    );
    let selector = ListParams::default().labels(&set.member_selector());
    let mut found = Vec::new();
    for gk in annotation(&parent, applyset::GROUP_KINDS_ANNOTATION).split(',') {
        let (group, kind) = applyset::split_group_kind(gk);
        let discovery = kube::discovery::Discovery::new(client.clone())
            .filter(&[group])
            .run()
            .await
            .unwrap();
        let Some((ar, caps)) = discovery
            .groups()
            .flat_map(|g| g.recommended_resources())
            .find(|(ar, _)| ar.kind == kind)
        else {
            continue;
        };
        let apis: Vec<Api<DynamicObject>> = match caps.scope {
            Scope::Cluster => vec![Api::all_with(client.clone(), &ar)],
            Scope::Namespaced => namespaces
                .iter()
                .map(|ns| Api::namespaced_with(client.clone(), ns, &ar))
                .collect(),
        };
        for api in apis {
            for o in api.list(&selector).await.unwrap().items {
                found.push(format!(
                    "{gk}/{}/{}",
                    o.metadata.namespace.unwrap_or_default(),
                    o.metadata.name.unwrap_or_default()
                ));
            }
        }
    }
    found
}

#[tokio::test]
async fn the_parent_lists_the_privileged_namespace_and_its_members_are_found_and_destroyed() {
    // DigitalOcean runs the NFS server in-cluster, in dev-privileged.
    let manifests = desired(ProviderKind::Do);
    assert_eq!(
        annotation(
            parent(&manifests),
            applyset::ADDITIONAL_NAMESPACES_ANNOTATION
        ),
        "dev-privileged"
    );

    // Write every object in dev-privileged, with the namespaces and the parent (no readiness
    // waits: what matters is where they are found).
    let server = KubeApi::new();
    let client = server.client();
    let set = ApplySet::new("dev");
    let applier = Applier::new(client.clone());
    let privileged: Vec<&Value> = manifests
        .iter()
        .filter(|m| {
            m["kind"] == "Namespace"
                || m["metadata"]["name"] == applyset::PARENT_NAME
                || m["metadata"]["namespace"] == "dev-privileged"
        })
        // Built-in kinds only: this API has no CRDs installed, so the sftp server's
        // IngressRouteTCP (traefik.io) cannot be written here; the full-platform deploy
        // applies it there.
        .filter(|m| {
            !m["apiVersion"]
                .as_str()
                .is_some_and(|v| v.starts_with("traefik.io/"))
        })
        .collect();
    let mut expected = Vec::new();
    for m in &privileged {
        let gvk = GroupVersionKind::try_from(
            &serde_json::from_value::<kube::core::TypeMeta>(
                serde_json::json!({"apiVersion": m["apiVersion"], "kind": m["kind"]}),
            )
            .unwrap(),
        )
        .unwrap();
        let (ar, _) = applier
            .resolve(&gvk.group, &gvk.version, &gvk.kind)
            .await
            .unwrap();
        let api: Api<DynamicObject> = match m["metadata"]["namespace"].as_str() {
            Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
            None => Api::all_with(client.clone(), &ar),
        };
        let obj: DynamicObject = serde_json::from_value((*m).clone()).unwrap();
        api.patch(
            m["metadata"]["name"].as_str().unwrap(),
            &PatchParams::apply("qhub").force(),
            &Patch::Apply(&obj),
        )
        .await
        .unwrap();
        if m["metadata"]["namespace"] == "dev-privileged" {
            let r = qhub_core::kubernetes::ObjectRef::of(m).unwrap();
            expected.push(format!("{}/dev-privileged/{}", r.group_kind(), r.name));
        }
    }
    assert!(
        expected.iter().any(|e| e.starts_with("Deployment.apps/")),
        "{expected:?}"
    );

    // kubectl finds each of them through the parent.
    let found = members_as_kubectl_finds_them(&client, &set).await;
    for e in &expected {
        assert!(found.contains(e), "{e} not found; found {found:?}");
    }

    // And a destroy (whatever the config now wants) deletes them.
    let observed = applier.observe(&set, &[]).await.unwrap();
    let destroy = plan::destroy(&observed);
    for e in &expected {
        let (gk, rest) = e.split_once('/').unwrap();
        assert!(
            destroy
                .changes
                .iter()
                .any(|c| c.action == Action::Delete && c.id.kind == gk && c.id.name == rest),
            "{e} is not deleted:\n{}",
            destroy.render_text()
        );
    }
}
