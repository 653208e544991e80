//! A component compiled only into the tests, exercising every part of [`Built`]: a route with
//! a forward-auth middleware and a stripped prefix, listed among the URLs; a login client whose
//! id comes from the config, its secret in the Secret the framework generates for it, which
//! its pod reads; a config file whose edit rolls the pod; a pinned image; a CRD.
//! It is the worked example of docs/writing-a-component.md, and adding it touched two files:
//! this one and the registry line in `mod.rs`.
//!
//! The config turns it on with a `tf_extensions` entry whose `urlslug` is [`SLUG`]; the entry's
//! `name` is its login client's id and its Deployment's name.

use serde_json::json;

use super::{
    Built, CLIENT_SECRET_KEY, Component, ConfigFile, Context, Crd, KubeError, Middleware,
    WebService, client_secret_name, keycloak,
};
use crate::config::Extension;
use crate::keycloak::PlatformClient;
use crate::kubernetes::versions::Image;

/// The component's name.
pub const NAME: &str = "example";
/// The `urlslug` of the `tf_extensions` entry that enables it.
pub const SLUG: &str = "example";
/// Its image, pinned by tag (the welcome page's image, so nothing new is pulled).
pub const IMAGE: Image = Image {
    component: NAME,
    repository: "docker.io/nginxinc/nginx-unprivileged",
    tag: "1.30.2-alpine",
    digest: None,
};

/// The example component.
#[derive(Debug, Clone, Copy)]
pub struct Example;

fn extension<'a>(ctx: &Context<'a>) -> Option<&'a Extension> {
    ctx.config
        .tf_extensions
        .iter()
        .flatten()
        .find(|e| e.urlslug == SLUG)
}

impl Component for Example {
    fn name(&self) -> &'static str {
        NAME
    }

    fn enabled(&self, ctx: &Context<'_>) -> bool {
        extension(ctx).is_some()
    }

    fn depends_on(&self) -> &'static [&'static str] {
        &["ingress", "keycloak"]
    }

    fn build(&self, ctx: &Context<'_>) -> Result<Built, KubeError> {
        let Some(ext) = extension(ctx) else {
            return Ok(Built::default());
        };
        let path = format!("/{SLUG}");
        let greeting = ext
            .envs
            .iter()
            .flatten()
            .find(|e| e.name == "GREETING")
            .map_or("hello", |e| e.value.as_str());
        let auth = format!(
            "http://{}.{}.svc:{}{}/realms/qhub/protocol/openid-connect/userinfo",
            keycloak::NAME,
            ctx.namespace(),
            keycloak::HTTP_PORT,
            keycloak::PATH
        );
        let built = WebService::new(&ext.name, IMAGE, 8080, 101)
            .route(&path, |r| {
                r.strip_prefix()
                    .middleware(Middleware::ForwardAuth {
                        address: auth,
                        response_headers: vec!["X-Forwarded-User".into()],
                    })
                    .listed(format!("{path}/"), format!("{path}/index.html"))
            })
            .login(
                PlatformClient::new(
                    &ext.name,
                    "Example",
                    &path,
                    format!("{path}/oauth_callback"),
                )
                .role("example_admin", &["admin"]),
            )
            .config_file(
                ConfigFile::new(
                    format!("{}-config", ext.name),
                    "index.html",
                    format!("<p>{greeting}</p>\n"),
                ),
                "/usr/share/nginx/html",
            )
            // Its pod reads its login client's secret from the Secret the framework
            // generates for the client, the value Keycloak's reconciler sets on the client.
            .secret_env(
                "OAUTH_CLIENT_SECRET",
                client_secret_name(&ext.name),
                CLIENT_SECRET_KEY,
            )
            .shared_volume("/shared")
            .build(ctx, NAME)?;
        Ok(built.crd(Crd {
            app: NAME.into(),
            group: "example.qhub.dev".into(),
            version: "v1".into(),
            kind: "Widget".into(),
            plural: "widgets".into(),
            schema: json!({"type": "object", "properties": {
                "spec": {"type": "object", "properties": {"size": {"type": "integer"}}}}}),
            status_subresource: false,
        }))
    }
}

/// Turns the example on in `config`: a `tf_extensions` entry named `name` (its client id) whose
/// page says `greeting`.
pub fn enable(config: &mut crate::Config, name: &str, greeting: &str) -> Result<(), KubeError> {
    let ext: Extension = serde_json::from_value(json!({
        "name": name,
        "image": IMAGE.reference(),
        "urlslug": SLUG,
        "envs": [{"name": "GREETING", "value": greeting}],
    }))
    .map_err(|e| KubeError::Invalid(format!("the example's extension entry: {e}")))?;
    let list = config.tf_extensions.get_or_insert_with(Vec::new);
    list.retain(|e| e.urlslug != SLUG);
    list.push(ext);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ProviderKind;
    use crate::kubernetes::components::{
        CONFIG_HASH_ANNOTATION, assemble, build, oidc_clients, test_config,
    };
    use crate::provider::ClusterFacts;
    use serde_json::Value as Json;

    fn objects(greeting: &str) -> Vec<(&'static str, Vec<Json>)> {
        let mut config = test_config(ProviderKind::Aws);
        enable(&mut config, "hello", greeting).unwrap();
        let facts = ClusterFacts::from_config(&config);
        build(&config, &facts).unwrap()
    }

    fn find<'a>(objects: &'a [Json], kind: &str, name: &str) -> &'a Json {
        objects
            .iter()
            .find(|m| m["kind"] == kind && m["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no {kind} {name} in {objects:#?}"))
    }

    #[test]
    fn the_example_declares_every_part_and_the_framework_builds_it() {
        let all = objects("hi");
        let (_, ex) = all.iter().find(|(n, _)| *n == NAME).expect("enabled");
        // CRDs first, then the config file, then its own objects, then the route's.
        assert_eq!(ex[0]["kind"], "CustomResourceDefinition");
        assert_eq!(ex[0]["metadata"]["name"], "widgets.example.qhub.dev");
        assert_eq!(ex[1]["kind"], "ConfigMap");
        assert_eq!(ex[1]["data"]["index.html"], "<p>hi</p>\n");
        let deployment = find(ex, "Deployment", "hello");
        assert!(
            deployment
                .pointer("/spec/template/metadata/annotations")
                .and_then(|a| a.get(CONFIG_HASH_ANNOTATION))
                .is_some(),
            "{deployment}"
        );
        // Its login client's secret: a generated Secret it owns, which its pod reads.
        let secret = find(ex, "Secret", "hello-oidc-client");
        assert!(
            secret.get("data").is_none(),
            "no value in a manifest: {secret}"
        );
        assert_eq!(
            crate::kubernetes::recipes::recipe(secret).unwrap(),
            Some(crate::kubernetes::recipes::Recipe::Passwords {
                keys: vec![CLIENT_SECRET_KEY.into()],
                fixed: Default::default(),
            })
        );
        let env = &deployment["spec"]["template"]["spec"]["containers"][0]["env"];
        assert!(
            env.as_array()
                .unwrap()
                .iter()
                .any(|e| e["name"] == "OAUTH_CLIENT_SECRET"
                    && e["valueFrom"]["secretKeyRef"]
                        == json!({"name": "hello-oidc-client", "key": CLIENT_SECRET_KEY})),
            "{env}"
        );
        let auth = find(ex, "Middleware", "hello-auth-0");
        assert!(
            auth["spec"]["forwardAuth"]["address"]
                .as_str()
                .unwrap()
                .contains("/auth/realms/qhub/"),
            "{auth}"
        );
        let strip = find(ex, "Middleware", "hello-strip");
        assert_eq!(
            strip["spec"]["stripPrefix"]["prefixes"],
            json!(["/example"])
        );
        let route = find(ex, "IngressRoute", "hello");
        assert_eq!(
            route["spec"]["routes"][0]["middlewares"],
            json!([{"name": "hello-auth-0"}, {"name": "hello-strip"}])
        );
        assert!(
            route["spec"]["routes"][0]["match"]
                .as_str()
                .unwrap()
                .ends_with("PathPrefix(`/example`)")
        );
        for m in ex {
            assert_eq!(
                m.pointer("/metadata/labels/app.kubernetes.io~1component"),
                Some(&json!(NAME)),
                "{m}"
            );
        }
    }

    #[test]
    fn the_login_client_takes_its_id_from_the_config_and_exists_only_when_enabled() {
        let mut config = test_config(ProviderKind::Aws);
        let ids = |config: &crate::Config| -> Vec<String> {
            oidc_clients(config)
                .unwrap()
                .into_iter()
                .map(|c| c.client_id)
                .collect()
        };
        // JupyterHub's and conda-store's are always there; Grafana's with monitoring (on in
        // `qhub init`'s config).
        assert_eq!(ids(&config), ["jupyterhub", "conda_store", "grafana"]);
        enable(&mut config, "team-portal", "hi").unwrap();
        assert_eq!(
            ids(&config),
            ["jupyterhub", "conda_store", "grafana", "team-portal"]
        );
        let clients = oidc_clients(&config).unwrap();
        let client = clients
            .iter()
            .find(|c| c.client_id == "team-portal")
            .unwrap();
        assert_eq!(client.callback_path, "/example/oauth_callback");
        let urls = crate::kubernetes::endpoints::urls(&config);
        assert!(
            urls.iter()
                .any(|u| u.component == NAME && u.url == "https://demo.example.com/example/"),
            "{urls:?}"
        );
    }

    #[test]
    fn editing_the_config_file_rolls_exactly_the_pods_that_read_it() {
        let before = objects("hi");
        let after = objects("hello again");
        let templates = |all: &[(&'static str, Vec<Json>)]| -> Vec<(String, Json)> {
            all.iter()
                .flat_map(|(_, ms)| ms.iter())
                .filter(|m| m.pointer("/spec/template").is_some())
                .map(|m| {
                    (
                        m["metadata"]["name"].as_str().unwrap().to_string(),
                        m["spec"]["template"].clone(),
                    )
                })
                .collect()
        };
        let (b, a) = (templates(&before), templates(&after));
        assert_eq!(b.len(), a.len());
        let changed: Vec<&str> = b
            .iter()
            .zip(&a)
            .filter(|(x, y)| x != y)
            .map(|(x, _)| x.0.as_str())
            .collect();
        assert_eq!(changed, ["hello"], "only the example's pods roll");
    }

    #[test]
    fn the_example_is_assembled_with_its_pinned_image() {
        let mut config = test_config(ProviderKind::Aws);
        enable(&mut config, "hello", "hi").unwrap();
        let facts = ClusterFacts::from_config(&config);
        let ex = assemble(&config, &facts)
            .unwrap()
            .into_iter()
            .find(|a| a.name == NAME)
            .unwrap();
        assert_eq!(ex.built.images, [IMAGE]);
    }
}
