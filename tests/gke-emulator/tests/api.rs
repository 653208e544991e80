//! The emulator answers the way GKE does (over loopback HTTP, with a plain HTTP client).

use qhub_gke_emulator::{Faults, GkeEmulator, Options};
use serde_json::{Value, json};

const BASE: &str = "/v1/projects/p1/locations/us-central1";

struct Client {
    endpoint: std::net::SocketAddr,
    token: Option<String>,
}

/// One HTTP/1.1 request over a fresh loopback connection; `Err` when the connection closed
/// without an answer.
async fn send(
    addr: std::net::SocketAddr,
    method: &str,
    path_and_query: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> Result<(u16, Value), String> {
    use http_body_util::{BodyExt, Full};
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(path_and_query)
        .header("host", addr.to_string())
        .header("content-type", "application/json");
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let req = req
        .body(Full::new(bytes::Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let res = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = res.status().as_u16();
    let bytes = res
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    ))
}

impl Client {
    fn new(e: &GkeEmulator) -> Self {
        Self {
            endpoint: e.addr(),
            token: None,
        }
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let uri = format!("{path}?%24alt=json%3Benum-encoding%3Dint");
        send(self.endpoint, method, &uri, self.token.as_deref(), body)
            .await
            .expect("answer")
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.call("GET", path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call("POST", path, Some(body)).await
    }

    /// Polls an operation until DONE (status 3 with int enums).
    async fn wait(&self, op: &Value) -> Value {
        let name = op["name"].as_str().expect("operation name").to_string();
        for _ in 0..200 {
            let (code, o) = self.get(&format!("{BASE}/operations/{name}")).await;
            assert_eq!(code, 200, "{o}");
            if o["status"] == 3 {
                return o;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        panic!("operation {name} never finished");
    }
}

fn cluster_body() -> Value {
    json!({"cluster": {
        "name": "demo-dev",
        "initialClusterVersion": "1.33",
        "resourceLabels": {"qhub-project": "demo"},
        "releaseChannel": {"channel": 2},
        "nodePools": [
            {"name": "general", "initialNodeCount": 1,
             "autoscaling": {"enabled": true, "minNodeCount": 1, "maxNodeCount": 1},
             "config": {"machineType": "n1-standard-8", "labels": {"qhub-node-group": "general"}}},
            {"name": "gpu", "initialNodeCount": 0,
             "autoscaling": {"enabled": true, "maxNodeCount": 2},
             "config": {"machineType": "n1-standard-4",
                "taints": [{"key": "nvidia.com/gpu", "value": "present", "effect": 1}],
                "accelerators": [{"acceleratorType": "nvidia-tesla-t4", "acceleratorCount": "1",
                    "gpuDriverInstallationConfig": {"gpuDriverVersion": 2}}]}}
        ]
    }})
}

#[tokio::test]
async fn create_poll_and_read_back_with_gke_encodings() {
    let e = GkeEmulator::start(Options::default()).await.unwrap();
    let c = Client::new(&e);
    let (code, op) = c.post(&format!("{BASE}/clusters"), cluster_body()).await;
    assert_eq!(code, 200, "{op}");
    assert_eq!(op["operationType"], 1, "CREATE_CLUSTER as an integer: {op}");
    assert_eq!(op["status"], 1, "PENDING before any poll: {op}");

    // Unusable while PROVISIONING: no endpoint, and node pool mutations are refused.
    let (_, cl) = c.get(&format!("{BASE}/clusters/demo-dev")).await;
    assert_eq!(cl["status"], 1, "PROVISIONING: {cl}");
    assert!(cl.get("endpoint").is_none());

    let done = c.wait(&op).await;
    assert!(done.get("error").is_none());
    let (_, cl) = c.get(&format!("{BASE}/clusters/demo-dev")).await;
    assert_eq!(cl["status"], 2, "RUNNING: {cl}");
    assert_eq!(cl["currentMasterVersion"], "1.33.5-gke.1201000");
    assert!(cl["endpoint"].is_string());
    assert!(cl["masterAuth"]["clusterCaCertificate"].is_string());
    let gpu = &cl["nodePools"][1];
    assert_eq!(
        gpu["config"]["accelerators"][0]["acceleratorCount"], "1",
        "int64 as a string"
    );
    assert_eq!(gpu["config"]["taints"][0]["effect"], 1);
    assert_eq!(gpu["status"], 2);

    // Without enum-encoding=int, names.
    let (_, r) = send(
        e.addr(),
        "GET",
        &format!("{BASE}/clusters/demo-dev"),
        None,
        None,
    )
    .await
    .unwrap();
    assert_eq!(r["status"], "RUNNING");
    assert_eq!(
        r["nodePools"][1]["config"]["taints"][0]["effect"],
        "NO_SCHEDULE"
    );
}

#[tokio::test]
async fn one_mutating_operation_per_cluster() {
    let e = GkeEmulator::start(Options::default()).await.unwrap();
    let c = Client::new(&e);
    let (_, op) = c.post(&format!("{BASE}/clusters"), cluster_body()).await;
    c.wait(&op).await;
    let (code, op1) = c
        .post(
            &format!("{BASE}/clusters/demo-dev/nodePools/general:setSize"),
            json!({"nodeCount": 1}),
        )
        .await;
    assert_eq!(code, 200, "{op1}");
    let (code, err) = c
        .post(
            &format!("{BASE}/clusters/demo-dev/nodePools/gpu:setAutoscaling"),
            json!({"autoscaling": {"enabled": true, "maxNodeCount": 3}}),
        )
        .await;
    assert_eq!(code, 400, "{err}");
    assert_eq!(err["error"]["status"], "FAILED_PRECONDITION");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Please wait")
    );
    assert_eq!(e.counters().rejected, 1);
    c.wait(&op1).await;
    let (code, _) = c
        .post(
            &format!("{BASE}/clusters/demo-dev/nodePools/gpu:setAutoscaling"),
            json!({"autoscaling": {"enabled": true, "maxNodeCount": 3}}),
        )
        .await;
    assert_eq!(code, 200);
}

#[tokio::test]
async fn errors_are_shaped_like_gke() {
    let e = GkeEmulator::start(Options::default()).await.unwrap();
    let c = Client::new(&e);
    let (code, err) = c.get(&format!("{BASE}/clusters/nope")).await;
    assert_eq!(code, 404);
    assert_eq!(err["error"]["status"], "NOT_FOUND");
    assert_eq!(err["error"]["code"], 404);

    let (_, op) = c.post(&format!("{BASE}/clusters"), cluster_body()).await;
    let (code, err) = c.post(&format!("{BASE}/clusters"), cluster_body()).await;
    assert_eq!(code, 409, "{err}");
    assert_eq!(err["error"]["status"], "ALREADY_EXISTS");
    c.wait(&op).await;

    let mut bad = cluster_body();
    bad["cluster"]["name"] = json!("other");
    bad["cluster"]["nodePools"][1]["config"]["taints"][0]["effect"] = json!("SOMETIMES");
    let (code, err) = c.post(&format!("{BASE}/clusters"), bad).await;
    assert_eq!(code, 400);
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("taints[0].effect"),
        "{err}"
    );

    let mut bad = cluster_body();
    bad["cluster"]["name"] = json!("other");
    bad["cluster"]["initialClusterVersion"] = json!("1.20");
    let (code, err) = c.post(&format!("{BASE}/clusters"), bad).await;
    assert_eq!(code, 400, "{err}");

    let (code, err) = c
        .get("/v1/projects/p1/locations/mars-north1/clusters")
        .await;
    assert_eq!(code, 400, "{err}");
}

#[tokio::test]
async fn bearer_token_is_required_when_configured() {
    let e = GkeEmulator::start(Options {
        token: Some("t0ken".into()),
        ..Options::default()
    })
    .await
    .unwrap();
    let mut c = Client::new(&e);
    let (code, err) = c.get(&format!("{BASE}/clusters")).await;
    assert_eq!(code, 401);
    assert_eq!(err["error"]["status"], "UNAUTHENTICATED");
    c.token = Some("t0ken".into());
    let (code, _) = c.get(&format!("{BASE}/clusters")).await;
    assert_eq!(code, 200);
}

#[tokio::test]
async fn failed_create_leaves_an_error_cluster_and_die_after_drops_the_answer() {
    let e = GkeEmulator::start(Options::default()).await.unwrap();
    let c = Client::new(&e);
    e.fail_next(
        "CREATE_CLUSTER",
        "Insufficient regional quota to satisfy request",
    );
    let (_, op) = c.post(&format!("{BASE}/clusters"), cluster_body()).await;
    let done = c.wait(&op).await;
    assert!(
        done["error"]["message"].as_str().unwrap().contains("quota"),
        "{done}"
    );
    let (_, cl) = c.get(&format!("{BASE}/clusters/demo-dev")).await;
    assert_eq!(cl["status"], 5, "ERROR: {cl}");

    let (_, op) = c
        .call("DELETE", &format!("{BASE}/clusters/demo-dev"), None)
        .await;
    c.wait(&op).await;

    e.set_faults(Faults {
        die_after: Some(0),
        ..Faults::default()
    });
    let r = send(
        e.addr(),
        "POST",
        &format!("{BASE}/clusters"),
        None,
        Some(cluster_body()),
    )
    .await;
    assert!(r.is_err(), "the answer must be dropped: {r:?}");
    assert!(e.killed());
    assert_eq!(e.clusters().len(), 1, "the mutation was carried out");
    e.set_faults(Faults::default());
    let (code, _) = c.get(&format!("{BASE}/clusters/demo-dev")).await;
    assert_eq!(code, 200);
}

#[tokio::test]
async fn throttling_and_unavailable_are_injected() {
    let e = GkeEmulator::start(Options::default()).await.unwrap();
    let c = Client::new(&e);
    e.set_faults(Faults {
        throttle_rate: 0.5,
        error_rate: 0.3,
        seed: 3,
        ..Faults::default()
    });
    let mut codes = std::collections::BTreeMap::new();
    for _ in 0..60 {
        let (code, _) = c.get(&format!("{BASE}/clusters")).await;
        *codes.entry(code).or_insert(0) += 1;
    }
    assert!(codes.get(&429).copied().unwrap_or(0) > 5, "{codes:?}");
    assert!(codes.get(&503).copied().unwrap_or(0) > 5, "{codes:?}");
    assert!(codes.get(&200).copied().unwrap_or(0) > 0, "{codes:?}");
    let n = e.counters();
    assert_eq!(n.throttled + n.server_errors + codes[&200], 60);
}

fn pool(name: &str, machine: &str, initial: i64, locations: &[&str]) -> Value {
    let mut p = json!({"name": name, "initialNodeCount": initial,
        "autoscaling": {"enabled": true, "totalMinNodeCount": initial, "totalMaxNodeCount": 5},
        "config": {"machineType": machine}});
    if !locations.is_empty() {
        p["locations"] = json!(locations);
    }
    p
}

fn cluster_with(pools: Vec<Value>) -> Value {
    json!({"cluster": {"name": "demo-dev", "initialClusterVersion": "1.33", "nodePools": pools}})
}

#[tokio::test]
async fn node_counts_are_per_zone_and_must_fit_the_regional_quota() {
    let e = GkeEmulator::start(Options::default()).await.unwrap();
    let c = Client::new(&e);
    // A free-trial project: 8 vCPUs in the region (amygdala/tensorflow-workshop#13).
    e.set_quota("p1", "us-central1", "CPUS", 8.0);
    // One n1-standard-8 per zone in a regional cluster's three zones: 24 vCPUs.
    let (code, err) = c
        .post(
            &format!("{BASE}/clusters"),
            cluster_with(vec![pool("general", "n1-standard-8", 1, &[])]),
        )
        .await;
    assert_eq!(code, 403, "{err}");
    assert_eq!(err["error"]["status"], "PERMISSION_DENIED");
    let message = err["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("Insufficient regional quota to satisfy request: resource \"CPUS\": request requires '24.0' and is short '16.0'. project has a quota of '8.0' with '8.0' available."),
        "{message}"
    );
    assert!(e.clusters().is_empty(), "nothing was created");

    // Pinned to one zone: one node, 8 vCPUs.
    let (code, op) = c
        .post(
            &format!("{BASE}/clusters"),
            cluster_with(vec![pool(
                "general",
                "n1-standard-8",
                1,
                &["us-central1-a"],
            )]),
        )
        .await;
    assert_eq!(code, 200, "{op}");
    c.wait(&op).await;
    let (_, cl) = c.get(&format!("{BASE}/clusters/demo-dev")).await;
    assert_eq!(cl["currentNodeCount"], 1, "{cl}");
    let (_, region) = c.get("/compute/v1/projects/p1/regions/us-central1").await;
    let cpus = region["quotas"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["metric"] == "CPUS")
        .unwrap();
    assert_eq!(
        (cpus["limit"].as_f64(), cpus["usage"].as_f64()),
        (Some(8.0), Some(8.0))
    );

    // The quota is used up: a second pool's first node is refused.
    let (code, err) = c
        .post(
            &format!("{BASE}/clusters/demo-dev/nodePools"),
            json!({"nodePool": pool("user", "n1-standard-4", 1, &["us-central1-a"])}),
        )
        .await;
    assert_eq!(code, 403, "{err}");

    // Per-zone and total counts together are refused.
    let mut both = pool("user", "n1-standard-4", 0, &[]);
    both["autoscaling"]["maxNodeCount"] = json!(3);
    let (code, err) = c
        .post(
            &format!("{BASE}/clusters/demo-dev/nodePools"),
            json!({"nodePool": both}),
        )
        .await;
    assert_eq!(code, 400, "{err}");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("mutually exclusive")
    );
}

#[tokio::test]
async fn an_accelerator_must_exist_in_every_zone_of_its_pool() {
    let e = GkeEmulator::start(Options::default()).await.unwrap();
    let c = Client::new(&e);
    let mut gpu = pool("gpu", "n1-standard-4", 0, &[]);
    gpu["config"]["accelerators"] =
        json!([{"acceleratorType": "nvidia-tesla-p4", "acceleratorCount": "1"}]);
    let (code, err) = c
        .post(&format!("{BASE}/clusters"), cluster_with(vec![gpu.clone()]))
        .await;
    assert_eq!(code, 400, "{err}");
    assert_eq!(
        err["error"]["message"],
        "Accelerator type \"nvidia-tesla-p4\" does not exist in zone us-central1-b."
    );
    // The zones that have it, from Compute's aggregated accelerator list.
    let (_, list) = c
        .get("/compute/v1/projects/p1/aggregated/acceleratorTypes")
        .await;
    let zones: Vec<&str> = list["items"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, v)| {
            v["acceleratorTypes"]
                .as_array()
                .is_some_and(|a| a.iter().any(|t| t["name"] == "nvidia-tesla-p4"))
        })
        .map(|(k, _)| k.trim_start_matches("zones/"))
        .collect();
    assert_eq!(zones, ["us-central1-a", "us-central1-c"]);
    gpu["locations"] = json!(zones);
    let (code, op) = c
        .post(&format!("{BASE}/clusters"), cluster_with(vec![gpu]))
        .await;
    assert_eq!(code, 200, "{op}");
}

#[tokio::test]
async fn the_cluster_needs_its_network() {
    let e = GkeEmulator::start(Options::default()).await.unwrap();
    let c = Client::new(&e);
    e.set_networks(
        "p1",
        vec![qhub_gke_emulator::compute::Network {
            name: "corp".into(),
            auto_subnetworks: false,
            subnetworks: vec![("us-central1".into(), "corp-us".into())],
        }],
    );
    let body = cluster_with(vec![pool(
        "general",
        "n1-standard-4",
        1,
        &["us-central1-a"],
    )]);
    let (code, err) = c.post(&format!("{BASE}/clusters"), body.clone()).await;
    assert_eq!(code, 400, "{err}");
    assert_eq!(
        err["error"]["message"],
        "Project \"p1\" has no network named \"default\"."
    );
    let (code, _) = c
        .get("/compute/v1/projects/p1/global/networks/default")
        .await;
    assert_eq!(code, 404);
    let (code, _) = c
        .get("/compute/v1/projects/p1/regions/us-central1/subnetworks/corp-us")
        .await;
    assert_eq!(code, 200);
    let mut body = body;
    body["cluster"]["network"] = json!("corp");
    body["cluster"]["subnetwork"] = json!("corp-us");
    let (code, op) = c.post(&format!("{BASE}/clusters"), body).await;
    assert_eq!(code, 200, "{op}");
    c.wait(&op).await;
    let (_, cl) = c.get(&format!("{BASE}/clusters/demo-dev")).await;
    assert_eq!(
        (cl["network"].as_str(), cl["subnetwork"].as_str()),
        (Some("corp"), Some("corp-us"))
    );
}

#[tokio::test]
async fn disks_of_claims_outlive_the_cluster() {
    let e = GkeEmulator::start(Options::default()).await.unwrap();
    let c = Client::new(&e);
    let (_, op) = c.post(&format!("{BASE}/clusters"), cluster_body()).await;
    c.wait(&op).await;
    assert!(e.add_pvc_disk(
        ("p1", "us-central1", "demo-dev"),
        "us-central1-a",
        ("dev", "keycloak-db"),
        10
    ));
    let (_, list) = c
        .get("/compute/v1/projects/p1/aggregated/disks?filter=labels.goog-gke-volume%3A%2A")
        .await;
    let disk = list["items"]["zones/us-central1-a"]["disks"][0].clone();
    assert_eq!(disk["labels"]["goog-k8s-cluster-name"], "demo-dev");
    assert_eq!(
        disk["labels"]["qhub-project"], "demo",
        "the cluster's labels propagate"
    );
    let name = disk["name"].as_str().unwrap().to_string();
    let path = format!("/compute/v1/projects/p1/zones/us-central1-a/disks/{name}");
    let (code, err) = c.call("DELETE", &path, None).await;
    assert_eq!(code, 400, "attached while the cluster runs: {err}");
    let (_, op) = c
        .call("DELETE", &format!("{BASE}/clusters/demo-dev"), None)
        .await;
    c.wait(&op).await;
    assert_eq!(e.disks().len(), 1, "GKE does not delete the claims' disks");
    let (code, op) = c.call("DELETE", &path, None).await;
    assert_eq!((code, op["status"].as_str()), (200, Some("DONE")));
    assert!(e.disks().is_empty());
    let (code, _) = c.call("DELETE", &path, None).await;
    assert_eq!(code, 404);
}
