//! Forward-auth: a login through Keycloak in front of any route, as a Traefik `forwardAuth`
//! Middleware ([`MIDDLEWARE`]) another component puts on its route with [`middleware`].
//!
//! QHub 0.4.5 ran thomseddon/traefik-forward-auth for this (Quansight/qhub
//! `qhub/template/stages/07-kubernetes-services/modules/kubernetes/forwardauth/main.tf`:
//! client `forwardauth`, a Middleware `traefik-forward-auth` copying `X-Forwarded-User`, its
//! own route for the OAuth callback). That project's last release is 2.2.0 (2020), so we run
//! OAuth2 Proxy instead ([`versions::OAUTH2_PROXY`]), in the mode its docs describe for
//! Traefik (oauth2-proxy docs 7.14.x, "Integrations → Traefik", "ForwardAuth with static
//! upstream configuration"): `--reverse-proxy` and `--upstream=static://202`, the Middleware's
//! address its root, so an authenticated request gets 202 and a new visitor a redirect to the
//! login (`--skip-provider-button`), which goes through its route [`PATH`] to Keycloak and back
//! to `/oauth2/callback`. `--set-xauthrequest` puts the user in the answer's
//! `X-Auth-Request-*` headers, which the Middleware copies to the forwarded request
//! ([`RESPONSE_HEADERS`]).
//!
//! The browser goes to Keycloak's public address; the code is exchanged and the signing keys
//! read in the cluster (`--skip-oidc-discovery` with `--redeem-url` and `--oidc-jwks-url`), as
//! Grafana and conda-store do, so no pod needs to reach the load balancer. Keycloak users need
//! not have a verified e-mail (`--insecure-oidc-allow-unverified-email`): the realm does not ask
//! for one. The cookie secret is a generated Secret ([`COOKIE_SECRET`]: 32 characters, a
//! length OAuth2 Proxy accepts), the client secret the one the framework generates for the
//! client ([`CLIENT_ID`]); neither is in a manifest.
//!
//! Deployed only when something needs it ([`needed`]): today an extension with
//! `private: true`.

use serde_json::{Value as Json, json};

use super::{
    Built, CLIENT_SECRET_KEY, Component, Context, KubeError, Middleware, WebService,
    client_secret_name, generated_secret, ingress, keycloak, manifest, web_service,
};
use crate::config::Config;
use crate::keycloak::{PlatformClient, REALM};
use crate::kubernetes::versions;

/// The component's name (and its Deployment's and Service's).
pub const NAME: &str = "forward-auth";
/// The Keycloak client id (QHub's).
pub const CLIENT_ID: &str = "forwardauth";
/// The Middleware a route names to require a login ([`middleware`]).
pub const MIDDLEWARE: &str = "forward-auth";
/// OAuth2 Proxy's own paths (sign-in, start, callback), routed to it.
pub const PATH: &str = "/oauth2";
/// The OAuth callback.
pub const CALLBACK_PATH: &str = "/oauth2/callback";
/// The generated Secret holding the cookie secret, under [`COOKIE_SECRET_KEY`].
pub const COOKIE_SECRET: &str = "forward-auth-cookie";
/// The key of the cookie secret in [`COOKIE_SECRET`].
pub const COOKIE_SECRET_KEY: &str = "cookie-secret";
/// OAuth2 Proxy's port (its default, `--http-address`).
pub const PORT: i32 = 4180;
/// The headers of its answer Traefik copies to the forwarded request: who logged in.
pub const RESPONSE_HEADERS: [&str; 4] = [
    "X-Auth-Request-User",
    "X-Auth-Request-Email",
    "X-Auth-Request-Preferred-Username",
    "X-Auth-Request-Groups",
];

/// Whether `config` has anything behind forward-auth: an extension with `private: true`.
pub fn needed(config: &Config) -> bool {
    config.tf_extensions.iter().flatten().any(|e| e.private)
}

/// The middleware a route adds to require a login through forward-auth.
pub fn middleware() -> Middleware {
    Middleware::Named(MIDDLEWARE.into())
}

/// The forward-auth component.
#[derive(Debug, Clone, Copy)]
pub struct ForwardAuth;

impl Component for ForwardAuth {
    fn name(&self) -> &'static str {
        NAME
    }

    fn enabled(&self, ctx: &Context<'_>) -> bool {
        needed(ctx.config)
    }

    fn depends_on(&self) -> &'static [&'static str] {
        &["ingress", "keycloak"]
    }

    fn build(&self, ctx: &Context<'_>) -> Result<Built, KubeError> {
        let scheme = if ingress::tls::enabled(ctx.config) {
            "https"
        } else {
            "http"
        };
        let public = format!("{scheme}://{}", ctx.config.domain);
        let issuer = format!("{public}{}/realms/{REALM}", keycloak::PATH);
        let internal = format!(
            "http://{}.{}.svc:{}{}/realms/{REALM}/protocol/openid-connect",
            keycloak::NAME,
            ctx.namespace(),
            keycloak::HTTP_PORT,
            keycloak::PATH
        );
        let args = [
            "--provider=oidc".to_string(),
            format!("--client-id={CLIENT_ID}"),
            format!("--oidc-issuer-url={issuer}"),
            "--skip-oidc-discovery=true".into(),
            format!("--login-url={issuer}/protocol/openid-connect/auth"),
            format!("--redeem-url={internal}/token"),
            format!("--oidc-jwks-url={internal}/certs"),
            format!("--redirect-url={public}{CALLBACK_PATH}"),
            format!("--http-address=0.0.0.0:{PORT}"),
            "--reverse-proxy=true".into(),
            "--upstream=static://202".into(),
            "--email-domain=*".into(),
            "--insecure-oidc-allow-unverified-email=true".into(),
            "--set-xauthrequest=true".into(),
            "--skip-provider-button=true".into(),
            format!("--whitelist-domain={}", ctx.config.domain),
            format!("--cookie-secure={}", scheme == "https"),
        ];
        let mut built = WebService::new(NAME, versions::OAUTH2_PROXY, PORT, 65532)
            .args(args)
            .secret_env(
                "OAUTH2_PROXY_CLIENT_SECRET",
                client_secret_name(CLIENT_ID),
                CLIENT_SECRET_KEY,
            )
            .secret_env(
                "OAUTH2_PROXY_COOKIE_SECRET",
                COOKIE_SECRET,
                COOKIE_SECRET_KEY,
            )
            .route(PATH, |r| r)
            .login(PlatformClient::new(
                CLIENT_ID,
                "Forward auth",
                "/",
                CALLBACK_PATH,
            ))
            .build(ctx, NAME)?;
        let cookie = generated_secret(ctx, NAME, COOKIE_SECRET, &[COOKIE_SECRET_KEY])?;
        let middleware = json!({
            "apiVersion": format!("{}/{}", ingress::crds::GROUP, ingress::crds::VERSION),
            "kind": "Middleware",
            "metadata": manifest(&ctx.meta(NAME, MIDDLEWARE))?,
            "spec": {"forwardAuth": {
                "address": format!(
                    "http://{NAME}.{}.svc:{}/",
                    ctx.namespace(),
                    web_service::SERVICE_PORT
                ),
                "authResponseHeaders": RESPONSE_HEADERS,
            }},
        });
        let mut manifests: Vec<Json> = vec![cookie];
        manifests.append(&mut built.manifests);
        manifests.push(middleware);
        built.manifests = manifests;
        Ok(built)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ProviderKind;
    use crate::kubernetes::components::{build, oidc_clients, test_config};
    use crate::provider::ClusterFacts;

    fn with_private(private: bool) -> Config {
        let mut config = test_config(ProviderKind::Aws);
        config.tf_extensions = Some(vec![
            serde_json::from_value(
                json!({"name": "tools", "image": "docker.io/library/nginx:1.29",
                "urlslug": "tools", "private": private}),
            )
            .unwrap(),
        ]);
        config
    }

    #[test]
    fn forward_auth_is_deployed_only_when_a_route_needs_it() {
        for private in [false, true] {
            let config = with_private(private);
            let facts = ClusterFacts::from_config(&config);
            let names: Vec<&str> = build(&config, &facts)
                .unwrap()
                .into_iter()
                .map(|(n, _)| n)
                .collect();
            assert_eq!(names.contains(&NAME), private, "{names:?}");
            let clients: Vec<String> = oidc_clients(&config)
                .unwrap()
                .into_iter()
                .map(|c| c.client_id)
                .collect();
            assert_eq!(
                clients.iter().any(|c| c == CLIENT_ID),
                private,
                "{clients:?}"
            );
        }
    }

    #[test]
    fn the_middleware_asks_oauth2_proxy_and_its_secrets_come_from_secrets() {
        let config = with_private(true);
        let facts = ClusterFacts::from_config(&config);
        let all = build(&config, &facts).unwrap();
        let (_, objects) = all.iter().find(|(n, _)| *n == NAME).unwrap();
        let mw = objects
            .iter()
            .find(|o| o["kind"] == "Middleware" && o["metadata"]["name"] == MIDDLEWARE)
            .unwrap();
        assert_eq!(
            mw["spec"]["forwardAuth"]["address"],
            "http://forward-auth.dev.svc:80/"
        );
        let deployment = objects.iter().find(|o| o["kind"] == "Deployment").unwrap();
        let container = &deployment["spec"]["template"]["spec"]["containers"][0];
        let env = container["env"].as_array().unwrap();
        for (var, secret, key) in [
            (
                "OAUTH2_PROXY_CLIENT_SECRET",
                "forwardauth-oidc-client",
                CLIENT_SECRET_KEY,
            ),
            (
                "OAUTH2_PROXY_COOKIE_SECRET",
                COOKIE_SECRET,
                COOKIE_SECRET_KEY,
            ),
        ] {
            assert!(
                env.iter().any(|e| e["name"] == var
                    && e["valueFrom"]["secretKeyRef"] == json!({"name": secret, "key": key})),
                "{var}: {env:?}"
            );
        }
        let args: Vec<&str> = container["args"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Json::as_str)
            .collect();
        assert!(args.contains(&"--upstream=static://202"), "{args:?}");
        assert!(
            args.contains(&"--redirect-url=https://demo.example.com/oauth2/callback"),
            "{args:?}"
        );
        let route = objects
            .iter()
            .find(|o| o["kind"] == "IngressRoute")
            .unwrap();
        assert!(
            route["spec"]["routes"][0]["match"]
                .as_str()
                .unwrap()
                .ends_with("PathPrefix(`/oauth2`)")
        );
    }
}
