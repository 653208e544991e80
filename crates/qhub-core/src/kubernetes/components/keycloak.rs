//! Keycloak, the platform's identity provider, served at `/auth`, and its own Postgres
//! database on a persistent volume (Keycloak's docs recommend a production database, not the
//! embedded dev one).
//!
//! Credentials: the bootstrap admin `root` gets `security.keycloak.initial_root_password`
//! when the config sets it (the Secret is then compared by digest), or a password generated
//! once and kept in the Secret `keycloak-admin`; the database password is generated once.
//! Neither is ever printed or copied into a plan or annotation.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    ContainerPort, EnvVar, EnvVarSource, HTTPGetAction, PodSpec, Probe, Secret, SecretKeySelector,
    Service, ServicePort, ServiceSpec,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::Value as Json;

use super::{Built, Component, Context, KubeError, Route, ingress, manifest, selector};
use crate::kubernetes::pods::{self, Placement};
use crate::kubernetes::recipes::{self, Recipe};
use crate::kubernetes::versions;

/// The Keycloak component (Deployment, Service and route).
pub const NAME: &str = "keycloak";
/// The database component.
pub const DATABASE: &str = "keycloak-postgres";
/// The Secret with the bootstrap admin's `username` and `password`.
pub const ADMIN_SECRET: &str = "keycloak-admin";
/// The bootstrap admin's user name: the one constant, Keycloak's ([`crate::keycloak::ADMIN_USER`]).
pub use crate::keycloak::ADMIN_USER;
/// The path Keycloak is served at.
pub const PATH: &str = "/auth";
/// Keycloak's HTTP port.
pub const HTTP_PORT: i32 = 8080;
/// Keycloak's management port, which serves `health/*` since Keycloak 25 (Keycloak docs,
/// "Tracking instance status with health checks" and "Configuring the management interface").
/// Its relative path follows `KC_HTTP_RELATIVE_PATH` (`http-management-relative-path` defaults
/// to it), so the probes ask for `/auth/health/...`.
const MANAGEMENT_PORT: i32 = 9000;
/// The startup probe's period, in seconds.
pub const STARTUP_PERIOD: i32 = 5;
/// Failed startup probes before kubelet restarts Keycloak: 120 × 5 s = 10 minutes for the
/// first start, which builds the server and runs the database migrations. Killing Keycloak in
/// the middle of its migrations can leave the database inconsistent (keycloak#35261), so the
/// liveness probe, which only runs once the startup probe has passed, has no initial delay to
/// guess instead. Keycloak's own operator gives `health/started` the same ten minutes (period
/// 1 s, 600 failures) and readiness and liveness 10 s × 3 (keycloak/keycloak
/// `operator/src/main/java/org/keycloak/operator/controllers/KeycloakDeploymentDependentResource.java`).
pub const STARTUP_FAILURES: i32 = 120;

/// A probe of Keycloak's `health/{check}` endpoint on the management port.
fn health_probe(check: &str, period: i32, failures: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(format!("{PATH}/health/{check}")),
            port: IntOrString::String("management".into()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        ..Probe::default()
    }
}

fn secret_ref(secret: &str, key: &str) -> Option<EnvVarSource> {
    Some(EnvVarSource {
        secret_key_ref: Some(SecretKeySelector {
            name: secret.into(),
            key: key.into(),
            optional: Some(false),
        }),
        ..EnvVarSource::default()
    })
}

fn env(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        ..EnvVar::default()
    }
}

fn env_secret(name: &str, secret: &str, key: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: secret_ref(secret, key),
        ..EnvVar::default()
    }
}

fn generated_secret(
    ctx: &Context<'_>,
    component: &str,
    name: &str,
    recipe: &Recipe,
) -> Result<Json, KubeError> {
    let mut meta = ctx.meta(component, name);
    meta.annotations = Some(BTreeMap::from([(
        recipes::ANNOTATION.to_string(),
        recipe.to_string(),
    )]));
    manifest(&Secret {
        metadata: meta,
        type_: Some("Opaque".into()),
        ..Secret::default()
    })
}

/// Keycloak's database: a Postgres StatefulSet on a persistent volume.
#[derive(Debug, Clone, Copy)]
pub struct KeycloakDatabase;

impl Component for KeycloakDatabase {
    fn name(&self) -> &'static str {
        DATABASE
    }

    fn depends_on(&self) -> &'static [&'static str] {
        &["namespace"]
    }

    fn build(&self, ctx: &Context<'_>) -> Result<Built, KubeError> {
        let secret = generated_secret(
            ctx,
            DATABASE,
            DATABASE,
            &Recipe::Passwords {
                keys: vec!["password".into()],
                fixed: BTreeMap::from([
                    ("username".into(), "keycloak".into()),
                    ("database".into(), "keycloak".into()),
                ]),
            },
        )?;
        let set = super::postgres::Postgres {
            name: DATABASE,
            image: &versions::POSTGRES,
            secret: DATABASE,
            keys: ["username", "password", "database"],
            user: "keycloak",
            database: "keycloak",
            size: "10Gi",
            port_name: "postgres",
        }
        .stateful_set(ctx);
        let service = Service {
            metadata: ctx.meta(DATABASE, DATABASE),
            spec: Some(ServiceSpec {
                selector: Some(selector(DATABASE)),
                ports: Some(vec![ServicePort {
                    name: Some("postgres".into()),
                    port: 5432,
                    target_port: Some(IntOrString::String("postgres".into())),
                    ..ServicePort::default()
                }]),
                ..ServiceSpec::default()
            }),
            ..Service::default()
        };
        Ok(
            Built::new(vec![secret, manifest(&set)?, manifest(&service)?])
                .image(versions::POSTGRES),
        )
    }
}

/// Keycloak itself.
#[derive(Debug, Clone, Copy)]
pub struct Keycloak;

impl Component for Keycloak {
    fn name(&self) -> &'static str {
        NAME
    }

    fn depends_on(&self) -> &'static [&'static str] {
        &["ingress", DATABASE]
    }

    fn build(&self, ctx: &Context<'_>) -> Result<Built, KubeError> {
        let config = ctx.config;
        let root_password = config
            .security
            .keycloak
            .as_ref()
            .and_then(|k| k.initial_root_password.clone());
        let admin = match root_password {
            // From the config: the plan compares it by digest.
            Some(password) => manifest(&Secret {
                metadata: ctx.meta(NAME, ADMIN_SECRET),
                type_: Some("Opaque".into()),
                // `data`, not `stringData`: the API server keeps only `data`, and the plan
                // compares the live values (by digest).
                data: Some(BTreeMap::from([
                    (
                        "username".to_string(),
                        k8s_openapi::ByteString(ADMIN_USER.as_bytes().to_vec()),
                    ),
                    (
                        "password".to_string(),
                        k8s_openapi::ByteString(password.into_bytes()),
                    ),
                ])),
                ..Secret::default()
            })?,
            None => generated_secret(
                ctx,
                NAME,
                ADMIN_SECRET,
                &Recipe::Passwords {
                    keys: vec!["password".into()],
                    fixed: BTreeMap::from([("username".into(), ADMIN_USER.into())]),
                },
            )?,
        };
        let scheme = if ingress::tls::enabled(config) {
            "https"
        } else {
            "http"
        };
        let mut container = pods::container(
            NAME,
            versions::KEYCLOAK.reference(),
            pods::resources("500m", "1Gi", "2Gi"),
        );
        container.security_context = Some(pods::restricted(false));
        // Plain `start`, which re-runs the build step on every start, rather than
        // `start --optimized`: an optimized start needs an image on which `kc.sh build` already
        // ran with our build options (database vendor, health), i.e. an image of our own, which
        // we do not publish; the build adds seconds to a start and the startup probe's budget
        // covers it (Keycloak docs, "Configuring Keycloak for production", optimized startup).
        container.args = Some(vec!["start".into()]);
        container.env = Some(vec![
            env("KC_DB", "postgres"),
            env(
                "KC_DB_URL",
                &format!("jdbc:postgresql://{DATABASE}:5432/keycloak"),
            ),
            env_secret("KC_DB_USERNAME", DATABASE, "username"),
            env_secret("KC_DB_PASSWORD", DATABASE, "password"),
            env("KC_HTTP_ENABLED", "true"),
            env("KC_HTTP_RELATIVE_PATH", PATH),
            env("KC_PROXY_HEADERS", "xforwarded"),
            env(
                "KC_HOSTNAME",
                &format!("{scheme}://{}{PATH}", config.domain),
            ),
            // A build-time option, applied by `start`'s build step; without it the health
            // endpoints (and so every probe) answer 404.
            env("KC_HEALTH_ENABLED", "true"),
            env_secret("KC_BOOTSTRAP_ADMIN_USERNAME", ADMIN_SECRET, "username"),
            env_secret("KC_BOOTSTRAP_ADMIN_PASSWORD", ADMIN_SECRET, "password"),
        ]);
        container.ports = Some(vec![
            ContainerPort {
                name: Some("http".into()),
                container_port: HTTP_PORT,
                ..ContainerPort::default()
            },
            ContainerPort {
                name: Some("management".into()),
                container_port: MANAGEMENT_PORT,
                ..ContainerPort::default()
            },
        ]);
        container.startup_probe = Some(health_probe("started", STARTUP_PERIOD, STARTUP_FAILURES));
        container.readiness_probe = Some(health_probe("ready", 10, 3));
        container.liveness_probe = Some(health_probe("live", 10, 3));
        let mut pod = PodSpec {
            containers: vec![container],
            security_context: Some(pods::non_root_pod(1000)),
            automount_service_account_token: Some(false),
            ..PodSpec::default()
        };
        Placement::on_group(ctx.facts, "general").place(&mut pod);
        let deployment = super::deployment(ctx, NAME, pod, false);
        let service = Service {
            metadata: ctx.meta(NAME, NAME),
            spec: Some(ServiceSpec {
                selector: Some(selector(NAME)),
                ports: Some(vec![ServicePort {
                    name: Some("http".into()),
                    port: HTTP_PORT,
                    target_port: Some(IntOrString::String("http".into())),
                    ..ServicePort::default()
                }]),
                ..ServiceSpec::default()
            }),
            ..Service::default()
        };
        Ok(
            Built::new(vec![admin, manifest(&deployment)?, manifest(&service)?])
                .image(versions::KEYCLOAK)
                // Its first start builds its optimized server and the realm database: about a
                // minute on a small node, more under load (the startup probe allows five).
                .ready_within(Duration::from_secs(120))
                .route(Route::new(PATH, NAME, HTTP_PORT).listed(format!("{PATH}/"), health())),
        )
    }
}

/// Its health through the front door: the platform realm's public page answers 200 with JSON
/// whose `realm` is the realm's name (Keycloak's `PublicRealmResource` serves a
/// `PublishedRealmRepresentation`: `realm`, `public_key`, `token-service`, `account-service`,
/// `tokens-not-before`; keycloak/keycloak `services/src/main/java/org/keycloak/services/
/// resources/PublicRealmResource.java` and `core/src/main/java/org/keycloak/representations/
/// idm/PublishedRealmRepresentation.java`, 26.x). The realm, not `master`: it exists only once
/// the platform's realm was reconciled.
pub fn health() -> crate::kubernetes::health::Check {
    use crate::keycloak::desired::REALM;
    crate::kubernetes::health::Check::http(format!("{PATH}/realms/{REALM}"))
        .json_equals("realm", REALM)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ProviderKind;
    use crate::provider::ClusterFacts;

    #[test]
    fn keycloak_first_start_has_minutes_before_kubelet_may_kill_it() {
        let config = crate::kubernetes::components::test_config(ProviderKind::Aws);
        let facts = ClusterFacts::from_config(&config);
        let manifests = crate::kubernetes::components::manifests(&config, &facts).unwrap();
        let keycloak = manifests
            .iter()
            .find(|m| m["kind"] == "Deployment" && m["metadata"]["name"] == NAME)
            .expect("the Keycloak Deployment");
        let container = &keycloak["spec"]["template"]["spec"]["containers"][0];
        let startup = &container["startupProbe"];
        assert_eq!(
            startup["httpGet"]["path"], "/auth/health/started",
            "{container}"
        );
        assert_eq!(startup["httpGet"]["port"], "management", "{container}");
        let budget = startup["periodSeconds"].as_i64().unwrap()
            * startup["failureThreshold"].as_i64().unwrap();
        assert!(budget >= 300, "a startup budget of {budget}s");
        for probe in ["livenessProbe", "readinessProbe"] {
            assert!(
                container[probe].get("initialDelaySeconds").is_none(),
                "{probe} guesses a delay: {container}"
            );
        }
        assert!(
            container["env"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["name"] == "KC_HEALTH_ENABLED" && e["value"] == "true")
        );
    }
}
