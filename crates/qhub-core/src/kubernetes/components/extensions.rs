//! `tf_extensions`: in-house web apps served at `/<urlslug>` behind the platform's login, as
//! QHub 0.4.5 deployed them (Quansight/qhub
//! `qhub/template/stages/08-qhub-tf-extensions/modules/qhubextension/{main,ingress,locals,keycloak-config}.tf`
//! and `08-qhub-tf-extensions/qhub-config.tf`). Per entry: a Deployment and Service
//! `qhub-ext-<name>` ([`object_name`]) running `image` with `PORT=80` and `envs`, and a route at
//! `/<urlslug>` that cuts the prefix before forwarding. The flags keep QHub's meaning and
//! variable names, so images written for QHub keep working:
//!
//! - `private`: the route requires a login through [`super::forward_auth`].
//! - `oauth2client`: a Keycloak client `qhub-ext-<name>-client` ([`client_id`]) redirecting to
//!   `/<urlslug>/oauth_callback`, and `OAUTH2_AUTHORIZE_URL`, `OAUTH2_ACCESS_TOKEN_URL`,
//!   `OAUTH2_USER_DATA_URL`, `OAUTH2_REDIRECT_BASE`, `COOKIE_OAUTH2STATE_NAME`,
//!   `OAUTH2_CLIENT_ID` and `OAUTH2_CLIENT_SECRET` (from the client's generated Secret).
//! - `keycloakadmin`: `KEYCLOAK_SERVER_URL` (in the cluster), `KEYCLOAK_REALM`,
//!   `KEYCLOAK_ADMIN_USERNAME` and `KEYCLOAK_ADMIN_PASSWORD`, from the Secret of Keycloak's
//!   admin ([`keycloak::ADMIN_SECRET`]; QHub gave its `qhub-bot` user, which we do not make).
//! - `jwt`: `COOKIE_AUTHORIZATION_NAME` (`qhub-ext-<name>-jwt`) and `JWT_SECRET_KEY`, a
//!   generated secret of its own ([`jwt_secret_name`]).
//! - `qhubconfigyaml`: the config at `/etc/qhubyamlsecret/qhub-config.yaml`, as written
//!   (`QHUB_SECRET_` references unexpanded) and with any literal secret redacted
//!   ([`crate::support::redact::config_yaml`]), from a ConfigMap ([`CONFIG_YAML`]): QHub mounted
//!   the whole config, secrets included, from a Secret.

use serde_json::{Value as Json, json};

use super::{
    Built, CLIENT_SECRET_KEY, Component, ConfigFile, Context, KubeError, WebService, built,
    client_secret_name, forward_auth, generated_secret, keycloak,
};
use crate::config::{Config, Extension};
use crate::keycloak::{PlatformClient, REALM};

/// The component's name.
pub const NAME: &str = "extensions";
/// The ConfigMap holding the config for `qhubconfigyaml` (QHub's Secret name).
pub const CONFIG_YAML: &str = "qhub-config-yaml";
/// The file name of the config in [`CONFIG_YAML`].
pub const CONFIG_YAML_FILE: &str = "qhub-config.yaml";
/// Where `qhubconfigyaml` mounts [`CONFIG_YAML`] (QHub's path).
pub const CONFIG_YAML_DIR: &str = "/etc/qhubyamlsecret";
/// The port an extension listens on, given to it as `PORT` (QHub's contract).
pub const PORT: i32 = 80;
/// The user an extension's container runs as (the platform namespace admits only non-root
/// pods).
pub const UID: i64 = 1000;
/// The key of the JWT secret in [`jwt_secret_name`]'s Secret.
pub const JWT_SECRET_KEY: &str = "secret";

/// The name of an extension's Deployment, Service and route: `qhub-ext-<name>`, QHub's prefix,
/// which keeps them apart from the platform's own objects.
pub fn object_name(ext: &Extension) -> String {
    format!("qhub-ext-{}", ext.name)
}

/// The Keycloak client id of an extension with `oauth2client` (QHub's).
pub fn client_id(ext: &Extension) -> String {
    format!("{}-client", object_name(ext))
}

/// The generated Secret holding the JWT secret of an extension with `jwt`.
pub fn jwt_secret_name(ext: &Extension) -> String {
    format!("{}-jwt", object_name(ext))
}

/// The path an extension is served at: `/<urlslug>`, without surrounding slashes.
pub fn path(ext: &Extension) -> String {
    format!("/{}", ext.urlslug.trim_matches('/'))
}

/// The extensions of `config` this component deploys: every `tf_extensions` entry (in the
/// tests, but the one that turns on the example component, which serves it itself).
pub fn deployed(config: &Config) -> impl Iterator<Item = &Extension> {
    config
        .tf_extensions
        .iter()
        .flatten()
        .filter(|e| !served_by_example(e))
}

#[cfg(any(test, feature = "example-component"))]
fn served_by_example(ext: &Extension) -> bool {
    ext.urlslug.trim_matches('/') == super::example::SLUG
}

#[cfg(not(any(test, feature = "example-component")))]
fn served_by_example(_: &Extension) -> bool {
    false
}

/// Whether component `name` serves config entries of `tf_extensions` (this one, and in the
/// tests the example): its routes are the extensions', not the platform's.
fn serves_extensions(name: &str) -> bool {
    #[cfg(any(test, feature = "example-component"))]
    if name == super::example::NAME {
        return true;
    }
    name == NAME
}

/// Paths JupyterHub serves under its catch-all route `/` (JupyterHub docs, "The JupyterHub
/// URL scheme": `/hub/`, `/user/<name>/`, `/user-redirect/`, `/services/<name>/`).
const CATCH_ALL_PATHS: [&str; 4] = ["/hub", "/user", "/user-redirect", "/services"];

/// The path prefixes the platform itself serves for `config`, as (component, path): the routes
/// the components declare, for the config, for the config with every optional service switched
/// on and for the default platform (so an extension cannot take a path a later `enabled: true`
/// needs), the paths
/// JupyterHub serves under its catch-all, and forward-auth's. An extension's path may be
/// neither one of them nor under one, nor above one.
pub fn platform_paths(config: &Config) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut add = |component: &str, path: &str| {
        let path = path.trim_end_matches('/');
        if !path.is_empty() && !out.iter().any(|(_, p)| p == path) {
            out.push((component.to_string(), path.to_string()));
        }
    };
    // The default platform too (`qhub init`'s config with every component on): a service
    // this config leaves off (Dask Gateway without worker profiles) keeps its path.
    let default = super::tables::everything_enabled().into_iter().next();
    for (config, facts) in [Some(config.clone()), everything_on(config)]
        .into_iter()
        .flatten()
        .map(|c| {
            let facts = crate::provider::ClusterFacts::from_config(&c);
            (c, facts)
        })
        .chain(default)
    {
        let Ok(assembled) = super::assemble(&config, &facts) else {
            continue;
        };
        for a in assembled.iter().filter(|a| !serves_extensions(a.name)) {
            for r in &a.built.routes {
                add(a.name, &r.path);
            }
        }
    }
    for p in CATCH_ALL_PATHS {
        add(super::jupyterhub::NAME, p);
    }
    add(forward_auth::NAME, forward_auth::PATH);
    out
}

/// `config` with every optional service section (`monitoring`, `argo_workflows`, `kbatch`,
/// `cdsdashboards`, `prefect`, `clearml`) switched on that still reads as a config so.
fn everything_on(config: &Config) -> Option<Config> {
    let mut json = serde_json::to_value(config).ok()?;
    for key in ["monitoring", "argo_workflows"]
        .into_iter()
        .chain(crate::config::not_built::NOT_BUILT.iter().map(|n| n.key))
    {
        let mut candidate = json.clone();
        let Some(map) = candidate.as_object_mut() else {
            continue;
        };
        let section = map.entry(key).or_insert_with(|| json!({}));
        if section.is_null() {
            *section = json!({});
        }
        if let Some(s) = section.as_object_mut() {
            s.insert("enabled".into(), Json::Bool(true));
        }
        if serde_json::from_value::<Config>(candidate.clone()).is_ok() {
            json = candidate;
        }
    }
    serde_json::from_value(json).ok()
}

/// The platform path an extension at `path` clashes with: the same prefix, or one under the
/// other.
pub fn clash<'a>(path: &str, platform: &'a [(String, String)]) -> Option<&'a (String, String)> {
    let under = |long: &str, short: &str| {
        long == short
            || long
                .strip_prefix(short)
                .is_some_and(|rest| rest.starts_with('/'))
    };
    platform
        .iter()
        .find(|(_, p)| under(path, p) || under(p, path))
}

/// The config an extension with `qhubconfigyaml` reads: as written, secrets left out.
fn config_yaml(config: &Config) -> String {
    let written = config
        .as_written
        .as_deref()
        .and_then(|raw| serde_json::from_value::<Config>(raw.clone()).ok());
    crate::support::redact::config_yaml(written.as_ref().unwrap_or(config))
}

/// The `tf_extensions` component.
#[derive(Debug, Clone, Copy)]
pub struct Extensions;

impl Component for Extensions {
    fn name(&self) -> &'static str {
        NAME
    }

    fn enabled(&self, ctx: &Context<'_>) -> bool {
        deployed(ctx.config).next().is_some()
    }

    fn depends_on(&self) -> &'static [&'static str] {
        &["ingress", "keycloak"]
    }

    fn build(&self, ctx: &Context<'_>) -> Result<Built, KubeError> {
        let mut out = Built::default();
        for ext in deployed(ctx.config) {
            merge(&mut out, extension(ctx, ext)?);
        }
        Ok(out)
    }
}

/// Adds `b` to `into`, each config file once.
fn merge(into: &mut Built, b: Built) {
    into.manifests.extend(b.manifests);
    into.routes.extend(b.routes);
    into.clients.extend(b.clients);
    into.images.extend(b.images);
    into.config_images.extend(b.config_images);
    for f in b.config_files {
        if !into.config_files.iter().any(|g| g.name == f.name) {
            into.config_files.push(f);
        }
    }
    into.crds.extend(b.crds);
}

/// One extension's objects and declarations.
fn extension(ctx: &Context<'_>, ext: &Extension) -> Result<Built, KubeError> {
    let name = object_name(ext);
    let path = path(ext);
    let scheme = if super::ingress::tls::enabled(ctx.config) {
        "https"
    } else {
        "http"
    };
    let public = format!("{scheme}://{}", ctx.config.domain);
    let oidc = format!(
        "{public}{}/realms/{REALM}/protocol/openid-connect",
        keycloak::PATH
    );
    // A nested slug outranks the extensions at its parents (the registry's prefix rule).
    let depth = i64::try_from(path.matches('/').count()).unwrap_or(1);
    let private = ext.private;
    // QHub's images listen on $PORT, 80, and may write where they like: the pod lets a
    // non-root process bind 80 and keeps the root filesystem writable.
    let mut service = WebService::with_config_image(&name, &ext.image, PORT, UID)
        .low_ports()
        .writable_root()
        .env("PORT", PORT.to_string())
        .route(&path, |r| {
            let r = r
                .priority(built::DEFAULT_PRIORITY + depth - 1)
                .strip_prefix();
            if private {
                r.middleware(forward_auth::middleware())
            } else {
                r
            }
        });
    let mut secrets = Vec::new();
    if ext.oauth2client {
        let id = client_id(ext);
        service = service
            .env("OAUTH2_AUTHORIZE_URL", format!("{oidc}/auth"))
            .env("OAUTH2_ACCESS_TOKEN_URL", format!("{oidc}/token"))
            .env("OAUTH2_USER_DATA_URL", format!("{oidc}/userinfo"))
            .env("OAUTH2_REDIRECT_BASE", format!("{public}{path}/"))
            .env("COOKIE_OAUTH2STATE_NAME", format!("{name}-o2state"))
            .env("OAUTH2_CLIENT_ID", &id)
            .secret_env(
                "OAUTH2_CLIENT_SECRET",
                client_secret_name(&id),
                CLIENT_SECRET_KEY,
            )
            .login(PlatformClient::new(
                &id,
                format!("{name} Client"),
                &path,
                format!("{path}/oauth_callback"),
            ));
    }
    if ext.keycloakadmin {
        service = service
            .env(
                "KEYCLOAK_SERVER_URL",
                format!(
                    "http://{}.{}.svc:{}{}/",
                    keycloak::NAME,
                    ctx.namespace(),
                    keycloak::HTTP_PORT,
                    keycloak::PATH
                ),
            )
            .env("KEYCLOAK_REALM", REALM)
            .secret_env(
                "KEYCLOAK_ADMIN_USERNAME",
                keycloak::ADMIN_SECRET,
                "username",
            )
            .secret_env(
                "KEYCLOAK_ADMIN_PASSWORD",
                keycloak::ADMIN_SECRET,
                "password",
            );
    }
    if ext.jwt {
        let secret = jwt_secret_name(ext);
        service = service
            .env("COOKIE_AUTHORIZATION_NAME", format!("{name}-jwt"))
            .secret_env("JWT_SECRET_KEY", &secret, JWT_SECRET_KEY);
        secrets.push(generated_secret(ctx, NAME, &secret, &[JWT_SECRET_KEY])?);
    }
    for env in ext.envs.iter().flatten() {
        service = service.env(&env.name, &env.value);
    }
    if ext.qhubconfigyaml {
        service = service.config_file(
            ConfigFile::new(CONFIG_YAML, CONFIG_YAML_FILE, config_yaml(ctx.config)),
            CONFIG_YAML_DIR,
        );
    }
    let mut built = service.build(ctx, &name)?;
    secrets.append(&mut built.manifests);
    built.manifests = secrets;
    Ok(built)
}

#[cfg(test)]
#[path = "extensions_tests.rs"]
mod tests;
