//! What the extensions component builds from `tf_extensions`: each flag's objects and
//! variables under QHub's names, secrets only by reference, the route's middlewares and
//! priority, the platform's paths an extension may not take, and snapshots.

use serde_json::{Value as Json, json};

use super::*;
use crate::config::ProviderKind;
use crate::kubernetes::components::{assemble, oidc_clients, test_config};
use crate::provider::ClusterFacts;

fn with(exts: Json) -> Config {
    let mut config = test_config(ProviderKind::Aws);
    config.tf_extensions = Some(serde_json::from_value(exts).unwrap());
    config
}

/// The component's objects for `config`.
fn objects(config: &Config) -> Vec<Json> {
    let facts = ClusterFacts::from_config(config);
    assemble(config, &facts)
        .unwrap()
        .into_iter()
        .find(|a| a.name == NAME)
        .expect("extensions are enabled")
        .built
        .manifests
}

fn find<'a>(objects: &'a [Json], kind: &str, name: &str) -> &'a Json {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in {objects:#?}"))
}

fn env_of(deployment: &Json) -> &Vec<Json> {
    deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap()
}

fn value_of<'a>(env: &'a [Json], name: &str) -> &'a Json {
    env.iter()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {env:#?}"))
}

fn everything() -> Config {
    with(json!([
        {"name": "dash", "image": "docker.io/acme/dash:1.2", "urlslug": "dash",
         "private": true, "oauth2client": true, "keycloakadmin": true, "jwt": true,
         "qhubconfigyaml": true, "envs": [{"name": "GREETING", "value": "hi"}]},
        {"name": "docs", "image": "docker.io/acme/docs:3", "urlslug": "/docs/"},
        {"name": "docs-api", "image": "docker.io/acme/api:3", "urlslug": "docs/api",
         "qhubconfigyaml": true},
    ]))
}

#[test]
fn a_private_extension_with_a_client_gets_its_objects_forward_auth_and_its_client_secret() {
    let config = with(json!([{"name": "dash", "image": "docker.io/acme/dash:1.2",
        "urlslug": "dash", "private": true, "oauth2client": true}]));
    let objects = objects(&config);
    let deployment = find(&objects, "Deployment", "qhub-ext-dash");
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["image"], "docker.io/acme/dash:1.2");
    assert_eq!(container["ports"][0]["containerPort"], PORT);
    let service = find(&objects, "Service", "qhub-ext-dash");
    assert_eq!(
        service["spec"]["selector"],
        deployment["spec"]["template"]["metadata"]["labels"]
            .as_object()
            .map(|l| json!({"app.kubernetes.io/name": l["app.kubernetes.io/name"]}))
            .unwrap()
    );
    let route = find(&objects, "IngressRoute", "qhub-ext-dash");
    let rule = &route["spec"]["routes"][0];
    assert!(
        rule["match"]
            .as_str()
            .unwrap()
            .ends_with("PathPrefix(`/dash`)"),
        "{rule}"
    );
    // Forward-auth first (it sees the path the user asked for), then the prefix cut.
    assert_eq!(
        rule["middlewares"],
        json!([{"name": forward_auth::MIDDLEWARE}, {"name": "qhub-ext-dash-strip"}])
    );
    // Its Keycloak client, whose generated secret reaches the container by reference only.
    let clients = oidc_clients(&config).unwrap();
    let client = clients
        .iter()
        .find(|c| c.client_id == "qhub-ext-dash-client")
        .unwrap_or_else(|| panic!("{clients:#?}"));
    assert_eq!(client.callback_path, "/dash/oauth_callback");
    assert!(
        clients
            .iter()
            .any(|c| c.client_id == forward_auth::CLIENT_ID),
        "a private extension brings forward-auth's client"
    );
    let secret = find(&objects, "Secret", "qhub-ext-dash-client-oidc-client");
    assert!(secret.get("data").is_none(), "{secret}");
    let env = env_of(deployment);
    assert_eq!(
        value_of(env, "OAUTH2_CLIENT_SECRET")["valueFrom"]["secretKeyRef"],
        json!({"name": "qhub-ext-dash-client-oidc-client", "key": CLIENT_SECRET_KEY})
    );
    assert_eq!(
        value_of(env, "OAUTH2_CLIENT_ID")["value"],
        "qhub-ext-dash-client"
    );
    // The forward-auth component is deployed and owns the Middleware the route names.
    let facts = ClusterFacts::from_config(&config);
    let all = assemble(&config, &facts).unwrap();
    let fa = all
        .iter()
        .find(|a| a.name == forward_auth::NAME)
        .expect("forward-auth is deployed");
    find(&fa.built.manifests, "Middleware", forward_auth::MIDDLEWARE);
}

#[test]
fn each_flag_sets_qhubs_variables_and_nothing_secret_is_literal() {
    let objects = objects(&everything());
    let env = env_of(find(&objects, "Deployment", "qhub-ext-dash"));
    let oidc = "https://demo.example.com/auth/realms/qhub/protocol/openid-connect";
    for (name, value) in [
        ("PORT", "80".to_string()),
        ("OAUTH2_AUTHORIZE_URL", format!("{oidc}/auth")),
        ("OAUTH2_ACCESS_TOKEN_URL", format!("{oidc}/token")),
        ("OAUTH2_USER_DATA_URL", format!("{oidc}/userinfo")),
        (
            "OAUTH2_REDIRECT_BASE",
            "https://demo.example.com/dash/".into(),
        ),
        ("COOKIE_OAUTH2STATE_NAME", "qhub-ext-dash-o2state".into()),
        (
            "KEYCLOAK_SERVER_URL",
            "http://keycloak.dev.svc:8080/auth/".into(),
        ),
        ("KEYCLOAK_REALM", "qhub".into()),
        ("COOKIE_AUTHORIZATION_NAME", "qhub-ext-dash-jwt".into()),
        ("GREETING", "hi".into()),
    ] {
        assert_eq!(value_of(env, name)["value"], value, "{name}");
    }
    for (name, secret, key) in [
        (
            "KEYCLOAK_ADMIN_USERNAME",
            keycloak::ADMIN_SECRET,
            "username",
        ),
        (
            "KEYCLOAK_ADMIN_PASSWORD",
            keycloak::ADMIN_SECRET,
            "password",
        ),
        ("JWT_SECRET_KEY", "qhub-ext-dash-jwt", JWT_SECRET_KEY),
    ] {
        let e = value_of(env, name);
        assert!(e.get("value").is_none(), "{e}");
        assert_eq!(
            e["valueFrom"]["secretKeyRef"],
            json!({"name": secret, "key": key})
        );
    }
    let jwt = find(&objects, "Secret", "qhub-ext-dash-jwt");
    assert!(jwt.get("data").is_none(), "{jwt}");
    // No flag, no variable: the public extension gets only its port.
    let docs = env_of(find(&objects, "Deployment", "qhub-ext-docs"));
    assert_eq!(docs, &vec![json!({"name": "PORT", "value": "80"})]);
    // One ConfigMap for the config, mounted where QHub mounted it, in both that ask for it.
    let maps: Vec<&Json> = objects
        .iter()
        .filter(|o| o["kind"] == "ConfigMap")
        .collect();
    assert_eq!(maps.len(), 1, "{maps:#?}");
    for name in ["qhub-ext-dash", "qhub-ext-docs-api"] {
        let pod = &find(&objects, "Deployment", name)["spec"]["template"]["spec"];
        assert_eq!(
            pod["volumes"][0]["configMap"]["name"], CONFIG_YAML,
            "{name}"
        );
        assert_eq!(
            pod["containers"][0]["volumeMounts"][0]["mountPath"],
            CONFIG_YAML_DIR
        );
    }
}

#[test]
fn the_mounted_config_keeps_secret_references_unexpanded_and_literal_secrets_out() {
    let text = "\
project_name: demo
provider: aws
domain: demo.example.com
qhub_version: 0.4.5
security:
  authentication:
    type: GitHub
    config:
      client_id: QHUB_SECRET_GH_ID
      client_secret: QHUB_SECRET_GH_SECRET
  keycloak:
    initial_root_password: LiteralRootPassword1
amazon_web_services:
  region: us-west-2
  kubernetes_version: '1.33'
  node_groups:
    general: {instance: m5.2xlarge, min_nodes: 1, max_nodes: 1}
    user: {instance: m5.xlarge, min_nodes: 0, max_nodes: 5}
    worker: {instance: m5.xlarge, min_nodes: 0, max_nodes: 5}
tf_extensions:
  - name: dash
    image: docker.io/acme/dash:1.2
    urlslug: dash
    qhubconfigyaml: true
";
    let loaded = crate::config::load_str(text, std::path::Path::new("qhub-config.yaml"))
        .unwrap_or_else(|e| panic!("{e}"));
    let config = loaded
        .resolve_secrets(|var| Some(format!("resolved-value-of-{var}")))
        .unwrap();
    assert!(
        serde_json::to_string(&config)
            .unwrap()
            .contains("resolved-value-of-GH_SECRET"),
        "the deploy's config holds the resolved secret"
    );
    let objects = objects(&config);
    let yaml = find(&objects, "ConfigMap", CONFIG_YAML)["data"][CONFIG_YAML_FILE]
        .as_str()
        .unwrap();
    // Spelt so that tests/tests/docs.rs does not take them for variables qhub reads.
    let reference = concat!("QHUB", "_SECRET_GH_");
    assert!(yaml.contains(&format!("{reference}SECRET")), "{yaml}");
    assert!(yaml.contains(&format!("{reference}ID")), "{yaml}");
    assert!(!yaml.contains("resolved-value-of"), "{yaml}");
    assert!(!yaml.contains("LiteralRootPassword1"), "{yaml}");
    assert!(yaml.contains("urlslug: dash"), "{yaml}");
}

#[test]
fn a_nested_slug_outranks_its_parent_and_no_two_routes_collide() {
    let config = everything();
    let facts = ClusterFacts::from_config(&config);
    let ext = assemble(&config, &facts)
        .unwrap()
        .into_iter()
        .find(|a| a.name == NAME)
        .unwrap();
    let priority = |path: &str| {
        ext.built
            .routes
            .iter()
            .find(|r| r.path == path)
            .unwrap_or_else(|| panic!("no route {path}"))
            .priority
    };
    assert_eq!(priority("/docs"), built::DEFAULT_PRIORITY);
    assert!(priority("/docs/api") > priority("/docs"));
    assert_eq!(ext.built.config_images.len(), 3);
    assert!(
        ext.built.images.is_empty(),
        "an extension's image is not ours to pin"
    );
}

#[test]
fn the_platform_paths_come_from_the_components_routes() {
    let mut config = test_config(ProviderKind::Aws);
    config.monitoring = Some(crate::config::components::Toggle {
        enabled: false,
        overrides: None,
    });
    let paths = platform_paths(&config);
    let has = |p: &str| paths.iter().any(|(_, q)| q == p);
    for p in [
        "/auth",
        "/conda-store",
        "/gateway",
        "/welcome",
        "/hub",
        "/user",
        "/services",
        "/oauth2",
        // Off in this config, but a later `enabled: true` would need it.
        "/monitoring",
    ] {
        assert!(has(p), "{p} missing from {paths:?}");
    }
    // JupyterHub's catch-all `/` is not a prefix every slug clashes with.
    assert!(!has("/") && !has(""), "{paths:?}");
    assert_eq!(
        clash("/auth/x", &paths).map(|(c, p)| (c.as_str(), p.as_str())),
        Some(("keycloak", "/auth"))
    );
    assert_eq!(clash("/authors", &paths), None);
    // An extension's own path is not the platform's.
    let config = everything();
    let paths = platform_paths(&config);
    assert!(!paths.iter().any(|(_, p)| p == "/dash"), "{paths:?}");
}

#[test]
fn manifests() {
    insta::assert_json_snapshot!("extensions_manifests", objects(&everything()));
}
