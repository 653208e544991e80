//! The emulator's spec check against DigitalOcean's real OpenAPI description.

use qhub_doks_emulator::spec::{Spec, path_from_env};
use serde_json::json;

#[test]
fn the_official_spec_loads_and_judges_cluster_and_pool_bodies() {
    // No skip when the file is absent: `Spec::load` fails and says where it looked.
    let path = path_from_env();
    let t = std::time::Instant::now();
    let spec = Spec::load(&path).unwrap_or_else(|e| panic!("{e}"));
    eprintln!("spec loaded in {:?}", t.elapsed());
    for op in [
        "kubernetes_create_cluster",
        "kubernetes_list_clusters",
        "kubernetes_add_nodePool",
        "kubernetes_update_nodePool",
        "kubernetes_get_kubeconfig",
        "kubernetes_destroy_associatedResourcesDangerous",
    ] {
        assert!(spec.has(op), "{op}");
    }
    let good = json!({"name": "a", "region": "nyc3", "version": "1.33.10-do.1", "tags": ["x:y"],
        "node_pools": [{"name": "p", "size": "s-1vcpu-2gb", "count": 1, "auto_scale": true,
        "min_nodes": 1, "max_nodes": 3, "labels": {"a": "b"},
        "taints": [{"key": "k", "value": "v", "effect": "NoSchedule"}]}]});
    assert_eq!(
        spec.check("kubernetes_create_cluster", &[], Some(&good)),
        Vec::<String>::new()
    );
    // A pool without `count`, an unknown taint effect, a read-only `id`, no region.
    let bad = json!({"name": "a", "version": "1.33.10-do.1", "id": "x",
        "node_pools": [{"name": "p", "size": "s-1vcpu-2gb",
        "taints": [{"key": "k", "effect": "Never"}]}]});
    let problems = spec.check("kubernetes_create_cluster", &[], Some(&bad));
    assert!(problems.len() >= 4, "{problems:#?}");
    // An update needs `name` and `count`; `size` is not in its schema but unknown keys pass.
    let update =
        json!({"name": "p", "count": 2, "auto_scale": true, "min_nodes": 1, "max_nodes": 3});
    assert!(
        spec.check("kubernetes_update_nodePool", &[], Some(&update))
            .is_empty()
    );
    assert!(
        !spec
            .check(
                "kubernetes_update_nodePool",
                &[],
                Some(&json!({"name": "p"}))
            )
            .is_empty()
    );
    let page = |k: &str, v: &str| vec![(k.to_string(), v.to_string())];
    assert!(
        spec.check("kubernetes_list_clusters", &page("per_page", "200"), None)
            .is_empty()
    );
    assert!(
        !spec
            .check("kubernetes_list_clusters", &page("per_page", "500"), None)
            .is_empty()
    );
    assert!(
        !spec
            .check("kubernetes_list_clusters", &page("tag_name", "x"), None)
            .is_empty()
    );
    assert!(
        spec.check(
            "kubernetes_get_kubeconfig",
            &page("expiry_seconds", "3600"),
            None
        )
        .is_empty()
    );
    // Answers are checked too (the emulator's fidelity): a cluster's id is a string.
    let bad_answer = json!({"kubernetes_cluster": {"id": 5, "name": "x"}});
    assert!(
        !spec
            .check_response("kubernetes_get_cluster", 200, &bad_answer)
            .is_empty()
    );
    let answer = json!({"kubernetes_cluster": {"id": "x", "name": "x", "region": "nyc3",
        "version": "1.33.10-do.1", "node_pools": [], "status": {"state": "running"}}});
    assert!(
        spec.check_response("kubernetes_get_cluster", 200, &answer)
            .is_empty()
    );
}
