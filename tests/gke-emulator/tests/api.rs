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
