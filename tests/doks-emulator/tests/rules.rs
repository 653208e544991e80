//! DOKS's rules as the emulator enforces them, straight on the account model.

use qhub_doks_emulator::state::{Account, Catalog, Phase};
use serde_json::json;

fn account() -> Account {
    Account::new(Catalog::default(), 2, 1)
}

fn cluster(name: &str) -> serde_json::Value {
    json!({"name": name, "region": "nyc3", "version": "1.33.10-do.1", "tags": ["qhub-project:x"],
        "node_pools": [{"name": "a", "size": "s-1vcpu-2gb", "count": 1}]})
}

#[test]
fn names_are_unique_and_stay_taken_while_deleting() {
    let mut a = account();
    let id = a.create_cluster(&cluster("c")).expect("create");
    let e = a.create_cluster(&cluster("c")).expect_err("taken");
    assert_eq!((e.status, e.id), (422, "unprocessable_entity"));
    assert!(e.message.contains("already exists"), "{}", e.message);
    a.delete_cluster(&id, true).expect("delete");
    assert!(matches!(
        a.cluster(&id).expect("still there").phase,
        Phase::Deleting(_)
    ));
    assert!(
        a.create_cluster(&cluster("c")).is_err(),
        "name free while deleting"
    );
    a.tick(&id);
    assert!(a.cluster(&id).is_err(), "gone after its deleting reads");
    a.create_cluster(&cluster("c")).expect("free again");
}

#[test]
fn a_provisioning_cluster_refuses_pool_changes_and_the_last_pool_stays() {
    let mut a = account();
    let id = a.create_cluster(&cluster("c")).expect("create");
    let pool = json!({"name": "b", "size": "s-1vcpu-2gb", "count": 1});
    let e = a.add_pool(&id, &pool).expect_err("busy");
    assert!(e.message.contains("provisioning"), "{}", e.message);
    a.tick(&id);
    a.tick(&id);
    assert_eq!(a.cluster(&id).expect("c").phase, Phase::Running);
    let b = a.add_pool(&id, &pool).expect("add");
    assert!(
        a.add_pool(&id, &pool).is_err(),
        "pool names are unique per cluster"
    );
    let first = a.cluster(&id).expect("c").pools[0].id.clone();
    a.delete_pool(&id, &first).expect("delete one of two");
    let e = a.delete_pool(&id, &b).expect_err("the last pool");
    assert!(
        e.message.contains("at least one node pool"),
        "{}",
        e.message
    );
}

#[test]
fn autoscaled_counts_sizes_regions_versions_and_tags_are_checked() {
    let mut a = account();
    let mut c = cluster("c");
    c["node_pools"][0] = json!({"name": "a", "size": "s-1vcpu-2gb", "count": 5,
        "auto_scale": true, "min_nodes": 1, "max_nodes": 3});
    assert!(
        a.create_cluster(&c)
            .unwrap_err()
            .message
            .contains("between")
    );
    c["node_pools"][0]["count"] = json!(2);
    c["node_pools"][0]["size"] = json!("s-99");
    assert!(a.create_cluster(&c).unwrap_err().message.contains("size"));
    c["node_pools"][0]["size"] = json!("s-1vcpu-2gb");
    c["region"] = json!("mars1");
    assert!(a.create_cluster(&c).unwrap_err().message.contains("region"));
    c["region"] = json!("nyc3");
    c["version"] = json!("1.29");
    assert!(
        a.create_cluster(&c)
            .unwrap_err()
            .message
            .contains("version")
    );
    // A minor version means its newest slug (compared as numbers), as the spec says.
    c["version"] = json!("1.33");
    c["name"] = json!("minor");
    let minor = a.create_cluster(&c).expect("minor version");
    assert_eq!(a.cluster(&minor).expect("c").version, "1.33.10-do.1");
    c["name"] = json!("c");
    c["version"] = json!("latest");
    c["tags"] = json!(["qhub project"]);
    assert!(a.create_cluster(&c).unwrap_err().message.contains("tag"));
    c["tags"] = json!(["qhub-project:x"]);
    let id = a.create_cluster(&c).expect("valid");
    assert_eq!(a.cluster(&id).expect("c").version, "1.34.1-do.0");
    assert_eq!(
        a.census(&["qhub-project:x".to_string()]),
        [("cluster".to_string(), 2), ("node_pool".to_string(), 2)].into()
    );
}
