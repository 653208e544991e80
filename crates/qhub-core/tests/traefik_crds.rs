//! Our Traefik CRDs never prune a field Traefik accepts (issue 20, "CRDs we share"): on a
//! shared cluster another tenant's Middleware (basicAuth, ipAllowList, rateLimit, forwardAuth…)
//! must survive a write through our CRDs unchanged.

use std::time::Duration;

use qhub_core::kubernetes::apply::Applier;
use qhub_core::kubernetes::components::ingress::crds;
use qhub_sandbox::kube_api::KubeApi;
use serde_json::{Value, json};

/// The top-level `spec` fields of each Traefik CRD, with their schema types, as Traefik v3.7.9
/// declares them: traefik/traefik at tag v3.7.9,
/// `docs/content/reference/dynamic-configuration/kubernetes-crd-definition-v1.yml` (the
/// release whose CRDs and RBAC the ingress component follows). Read from that file's
/// `spec.versions[v1alpha1].schema.openAPIV3Schema.properties.spec.properties`.
const UPSTREAM_SPEC_FIELDS: &[(&str, &[(&str, &str)])] = &[
    (
        "IngressRoute",
        &[
            ("entryPoints", "array"),
            ("ingressClassName", "string"),
            ("parentRefs", "array"),
            ("routes", "array"),
            ("tls", "object"),
        ],
    ),
    (
        "IngressRouteTCP",
        &[
            ("entryPoints", "array"),
            ("ingressClassName", "string"),
            ("routes", "array"),
            ("tls", "object"),
        ],
    ),
    (
        "IngressRouteUDP",
        &[
            ("entryPoints", "array"),
            ("ingressClassName", "string"),
            ("routes", "array"),
        ],
    ),
    (
        "Middleware",
        &[
            ("addPrefix", "object"),
            ("basicAuth", "object"),
            ("buffering", "object"),
            ("chain", "object"),
            ("circuitBreaker", "object"),
            ("compress", "object"),
            ("contentType", "object"),
            ("digestAuth", "object"),
            ("encodedCharacters", "object"),
            ("errors", "object"),
            ("forwardAuth", "object"),
            ("grpcWeb", "object"),
            ("headers", "object"),
            ("inFlightReq", "object"),
            ("ipAllowList", "object"),
            ("ipWhiteList", "object"),
            ("passTLSClientCert", "object"),
            ("plugin", "object"),
            ("rateLimit", "object"),
            ("redirectRegex", "object"),
            ("redirectScheme", "object"),
            ("replacePath", "object"),
            ("replacePathRegex", "object"),
            ("retry", "object"),
            ("stripPrefix", "object"),
            ("stripPrefixRegex", "object"),
        ],
    ),
    (
        "MiddlewareTCP",
        &[
            ("inFlightConn", "object"),
            ("ipAllowList", "object"),
            ("ipWhiteList", "object"),
        ],
    ),
    (
        "ServersTransport",
        &[
            ("certificatesSecrets", "array"),
            ("cipherSuites", "array"),
            ("disableHTTP2", "boolean"),
            ("forwardingTimeouts", "object"),
            ("insecureSkipVerify", "boolean"),
            ("maxIdleConnsPerHost", "integer"),
            ("maxVersion", "string"),
            ("minVersion", "string"),
            ("peerCertURI", "string"),
            ("rootCAs", "array"),
            ("rootCAsSecrets", "array"),
            ("serverName", "string"),
            ("spiffe", "object"),
        ],
    ),
    (
        "ServersTransportTCP",
        &[
            ("dialKeepAlive", "int-or-string"),
            ("dialTimeout", "int-or-string"),
            ("proxyProtocol", "object"),
            ("terminationDelay", "int-or-string"),
            ("tls", "object"),
        ],
    ),
    (
        "TLSOption",
        &[
            ("alpnProtocols", "array"),
            ("cipherSuites", "array"),
            ("clientAuth", "object"),
            ("curvePreferences", "array"),
            ("disableSessionTickets", "boolean"),
            ("maxVersion", "string"),
            ("minVersion", "string"),
            ("preferServerCipherSuites", "boolean"),
            ("sniStrict", "boolean"),
        ],
    ),
    (
        "TLSStore",
        &[
            ("certificates", "array"),
            ("defaultCertificate", "object"),
            ("defaultGeneratedCert", "object"),
        ],
    ),
    (
        "TraefikService",
        &[
            ("failover", "object"),
            ("highestRandomWeight", "object"),
            ("mirroring", "object"),
            ("weighted", "object"),
        ],
    ),
];

/// A value for a field our schema models: every declared property filled, plus a field no
/// schema of ours declares in every object (which must survive too).
fn sample(schema: &Value) -> Value {
    if schema.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true)) {
        return json!(80);
    }
    match schema.get("type").and_then(Value::as_str) {
        Some("object") => {
            let mut out = serde_json::Map::new();
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                for (k, s) in props {
                    out.insert(k.clone(), sample(s));
                }
            }
            out.insert("qhubProbe".into(), json!({"deep": ["kept"]}));
            Value::Object(out)
        }
        Some("array") => json!([sample(&schema["items"])]),
        Some("integer") => json!(1),
        Some("boolean") => json!(true),
        _ => schema
            .get("enum")
            .and_then(|e| e.get(0))
            .cloned()
            .unwrap_or(json!("probe")),
    }
}

/// A value of an upstream type for a field our schema does not model.
fn unmodelled(ty: &str) -> Value {
    match ty {
        "object" => json!({"qhubProbe": {"deep": [1, "two"]}, "enabled": true}),
        "array" => json!(["probe"]),
        "boolean" => json!(true),
        "integer" => json!(7),
        "int-or-string" => json!("30s"),
        _ => json!("probe"),
    }
}

async fn with_our_crds() -> (KubeApi, Applier) {
    let config = qhub_core::config::init::render(&qhub_core::config::init::InitOptions::new(
        qhub_core::config::provider::ProviderKind::Aws,
        "demo",
        "demo.example.com",
        "not-a-real-password",
    ))
    .unwrap();
    let facts = qhub_core::provider::ClusterFacts::from_config(&config);
    let server = KubeApi::new();
    let applier = Applier::new(server.client());
    for m in qhub_core::kubernetes::components::manifests(&config, &facts)
        .unwrap()
        .iter()
        .filter(|m| m["kind"] == "CustomResourceDefinition" && m["spec"]["group"] == "traefik.io")
    {
        applier.apply(m, m, Duration::from_secs(5)).await.unwrap();
    }
    (server, applier)
}

async fn round_trip(server: &KubeApi, applier: &Applier, kind: &str, spec: Value) -> Value {
    let name = format!("tenant-{}", kind.to_lowercase());
    let m = json!({"apiVersion": "traefik.io/v1alpha1", "kind": kind,
        "metadata": {"name": name, "namespace": "team-b"}, "spec": spec});
    applier.apply(&m, &m, Duration::from_secs(5)).await.unwrap();
    server
        .objects()
        .into_iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name.as_str())
        .unwrap()["spec"]
        .clone()
}

#[tokio::test]
async fn our_crds_match_the_pinned_release_and_prune_no_field_traefik_accepts() {
    let (server, applier) = with_our_crds().await;
    let ours: Vec<Value> = server
        .objects()
        .into_iter()
        .filter(|o| o["kind"] == "CustomResourceDefinition")
        .collect();
    assert_eq!(ours.len(), UPSTREAM_SPEC_FIELDS.len());
    let mut fields = 0;
    for (kind, upstream) in UPSTREAM_SPEC_FIELDS {
        // Names, scope and versions as v3.7.9 declares them.
        let crd = ours
            .iter()
            .find(|c| c["spec"]["names"]["kind"] == *kind)
            .unwrap_or_else(|| panic!("no CRD for {kind}"));
        let plural = format!("{}s", kind.to_lowercase());
        assert_eq!(crd["metadata"]["name"], format!("{plural}.traefik.io"));
        assert_eq!(
            crd["spec"]["names"],
            json!({"kind": kind, "listKind": format!("{kind}List"), "plural": plural,
                   "singular": kind.to_lowercase()})
        );
        assert_eq!(crd["spec"]["scope"], "Namespaced");
        let versions = crd["spec"]["versions"].as_array().unwrap();
        assert_eq!(versions.len(), 1);
        assert_eq!(
            (
                &versions[0]["name"],
                &versions[0]["served"],
                &versions[0]["storage"]
            ),
            (&json!("v1alpha1"), &json!(true), &json!(true))
        );
        // Every top-level field upstream declares, set at once, comes back as written.
        let modelled = crds::spec_schema(kind);
        let mut spec = serde_json::Map::new();
        for (field, ty) in *upstream {
            let value = match modelled.pointer(&format!("/properties/{field}")) {
                Some(s) => sample(s),
                None => unmodelled(ty),
            };
            spec.insert((*field).into(), value);
            fields += 1;
        }
        let spec = Value::Object(spec);
        let stored = round_trip(&server, &applier, kind, spec.clone()).await;
        assert_eq!(stored, spec, "{kind}: a field Traefik accepts was pruned");
    }
    assert_eq!(fields, 75);
}

/// Another tenant's Middleware, as a Traefik user writes it (Traefik's middleware reference
/// documents each option), survives a write through our Middleware CRD unchanged.
#[tokio::test]
async fn another_tenants_middleware_keeps_every_option() {
    let (server, applier) = with_our_crds().await;
    let spec = json!({
        "basicAuth": {"secret": "team-b-users", "removeHeader": true, "realm": "team-b"},
        "ipAllowList": {"sourceRange": ["10.0.0.0/8", "192.168.1.7"], "ipStrategy": {"depth": 2}},
        "rateLimit": {"average": 100, "burst": 50, "period": "1m",
                      "sourceCriterion": {"requestHeaderName": "X-Team"}},
        "forwardAuth": {"address": "https://auth.team-b.example.com/verify",
                        "trustForwardHeader": true, "authResponseHeaders": ["X-User"],
                        "tls": {"caSecret": "team-b-ca", "insecureSkipVerify": false}},
        "headers": {"customRequestHeaders": {"X-Team": "b"}, "stsSeconds": 31536000,
                    "frameDeny": true},
        "stripPrefix": {"prefixes": ["/b"], "forceSlash": false},
        "redirectScheme": {"scheme": "https", "permanent": true, "port": "443"},
        "retry": {"attempts": 4, "initialInterval": "100ms"},
        "compress": {"excludedContentTypes": ["text/event-stream"]},
        "circuitBreaker": {"expression": "NetworkErrorRatio() > 0.30"}
    });
    let stored = round_trip(&server, &applier, "Middleware", spec.clone()).await;
    assert_eq!(stored, spec);
}
