//! The Keycloak resources against the admin-API emulator, over loopback HTTP (an integration
//! test, as the emulator lives in `qhub-sandbox`, which depends on this crate).

use std::time::Duration;

use serde_json::json;

use qhub_core::Config;
use qhub_core::config::ProviderKind;
use qhub_core::config::init::{InitOptions, render};
use qhub_core::config::security::{AuthenticationKind, OAuthConfig};
use qhub_core::keycloak::*;
use qhub_core::plan::{Action, Plan};
use qhub_core::provider::ProviderError;
use qhub_sandbox::keycloak_api::{KeycloakApi, KeycloakApiOptions, KeycloakServer};

const GITHUB_SECRET: &str = "gh-oauth-secret-0123456789abcdef";
const PASSWORD: &str = "emulator-admin-pw";

/// The config `qhub init aws` writes, logging in through GitHub with the secret substituted.
fn config(auth: AuthenticationKind) -> Config {
    let mut c = render(&InitOptions {
        auth,
        ..InitOptions::new(ProviderKind::Aws, "demo", "demo.example.com", PASSWORD)
    })
    .expect("init config");
    if auth != AuthenticationKind::Password {
        c.security.authentication.config = Some(OAuthConfig {
            client_id: "gh-client-id".into(),
            client_secret: GITHUB_SECRET.into(),
            auth0_subdomain: None,
        });
    }
    c
}

struct Setup {
    api: KeycloakApi,
    _server: KeycloakServer,
    url: String,
}

async fn emulator(token_lifetime: Duration) -> Setup {
    let api = KeycloakApi::new(KeycloakApiOptions {
        token_lifetime,
        admin_username: ADMIN_USER.into(),
        admin_password: PASSWORD.into(),
        ..KeycloakApiOptions::default()
    });
    let server = api.serve().await.expect("serve the emulator");
    let url = server.url();
    Setup {
        api,
        _server: server,
        url,
    }
}

/// One attempt per call: these tests check how each answer is handled and classified (the
/// call-level retries are tested in `keycloak_calls_ride_out_refusals`).
fn single_attempt() -> qhub_core::retry::RetryPolicy {
    qhub_core::retry::RetryPolicy::uniform(qhub_core::retry::Budget::attempts(
        1,
        Duration::from_millis(1),
        Duration::from_millis(1),
    ))
}

fn keycloak(url: &str, config: &Config) -> Keycloak {
    let client = AdminClient::new(url, AdminCredentials::new(ADMIN_USER, PASSWORD))
        .unwrap()
        .with_retry(single_attempt());
    Keycloak::new(client, qhub_core::keycloak::desired::test_secrets(config))
}

#[tokio::test]
async fn keycloak_calls_ride_out_refusals() {
    let s = emulator(Duration::from_secs(60)).await;
    let c = config(AuthenticationKind::GitHub);
    let client = AdminClient::new(&s.url, AdminCredentials::new(ADMIN_USER, PASSWORD))
        .unwrap()
        .with_retry(qhub_core::retry::RetryPolicy::uniform(
            qhub_core::retry::Budget::attempts(
                30,
                Duration::from_millis(1),
                Duration::from_millis(5),
            ),
        ));
    let kc = Keycloak::new(client, qhub_core::keycloak::desired::test_secrets(&c));
    // A third of the calls refused (503): every change completes in one go, creates included.
    s.api.set_fault_rate(0.3);
    let plan = kc.plan(&c).await.unwrap();
    kc.apply_plan(&plan).await.unwrap();
    s.api.set_fault_rate(0.0);
    assert!(kc.plan(&c).await.unwrap().is_empty());
    assert_eq!(s.api.group_names(REALM).len(), 4, "nothing duplicated");
}

fn ids(plan: &Plan) -> Vec<String> {
    plan.changes
        .iter()
        .map(|c| format!("{} {}", c.action.symbol(), c.id))
        .collect()
}

#[tokio::test]
async fn keycloak_first_apply_creates_everything_and_a_redeploy_is_a_noop() {
    let s = emulator(Duration::from_secs(60)).await;
    let c = config(AuthenticationKind::GitHub);
    let kc = keycloak(&s.url, &c);

    let plan = kc.plan(&c).await.unwrap();
    assert_eq!(plan.changes.len(), 10, "{}", plan.render_text());
    assert!(plan.changes.iter().all(|c| c.action == Action::Create));
    let before = s.api.counts();
    kc.apply_plan(&plan).await.unwrap();
    let first = s.api.counts();
    println!(
        "first apply: {} admin calls ({} mutating, {} reads), {} login(s); plan before it: {} reads",
        (first.reads + first.mutating) - (before.reads + before.mutating),
        first.mutating - before.mutating,
        first.reads - before.reads,
        first.logins,
        before.reads
    );

    // What Keycloak now holds.
    let hub = s
        .api
        .client(REALM, "jupyterhub")
        .expect("jupyterhub client");
    assert_eq!(
        hub["redirectUris"],
        json!(["https://demo.example.com/hub/oauth_callback"])
    );
    assert_eq!(
        hub["secret"].as_str(),
        Some(kc.secrets().client_secret("jupyterhub").unwrap().expose()),
        "the real secret reached Keycloak"
    );
    let idp = s.api.identity_provider(REALM, "github").unwrap();
    assert_eq!(idp["config"]["clientSecret"], json!(GITHUB_SECRET));
    let mut groups = s.api.group_names(REALM);
    groups.sort();
    assert_eq!(groups, ["admin", "analyst", "developer", "users"]);

    // Re-deploy: an empty plan, and applying it sends nothing that changes anything.
    let reads_before = s.api.counts().reads;
    let again = kc.plan(&c).await.unwrap();
    assert!(again.is_empty(), "{}", again.render_text());
    assert_eq!(again.unchanged, 10);
    let noop = s.api.counts();
    kc.apply_plan(&again).await.unwrap();
    assert_eq!(s.api.counts().mutating, noop.mutating);
    assert_eq!(
        noop.mutating, first.mutating,
        "observing made no mutating call"
    );
    println!(
        "no-op deploy: {} admin calls, all reads, 0 mutating",
        noop.reads - reads_before
    );
    // The client's own counters agree with the emulator's.
    assert_eq!(kc.client().stats().mutating(), first.mutating);
}

#[tokio::test]
async fn keycloak_out_of_band_redirect_uri_edit_is_planned_and_taken_back() {
    let s = emulator(Duration::from_secs(60)).await;
    let c = config(AuthenticationKind::GitHub);
    let kc = keycloak(&s.url, &c);
    kc.apply_plan(&kc.plan(&c).await.unwrap()).await.unwrap();

    // Someone adds a redirect URI in the admin console.
    assert!(s.api.edit_client(REALM, "jupyterhub", |rep| {
        rep["redirectUris"] = json!([
            "https://demo.example.com/hub/oauth_callback",
            "https://evil.example.net/*"
        ]);
    }));
    let plan = kc.plan(&c).await.unwrap();
    assert_eq!(ids(&plan), ["~ keycloak_client/jupyterhub"]);
    let change = &plan.changes[0];
    assert_eq!(change.action, Action::Update);
    assert_eq!(change.diff.len(), 1, "{:?}", change.diff);
    assert_eq!(change.diff[0].field, "redirectUris");
    assert_eq!(
        change.diff[0].to,
        Some(json!(["https://demo.example.com/hub/oauth_callback"]))
    );
    let text = plan.render_text();
    println!("{text}");
    assert!(
        text.contains("keycloak_client/jupyterhub") && text.contains("evil.example.net"),
        "{text}"
    );

    let before = s.api.counts().mutating;
    kc.apply(change).await.unwrap();
    assert_eq!(
        s.api.counts().mutating - before,
        1,
        "one PUT of the client, nothing else"
    );
    assert_eq!(
        s.api.client(REALM, "jupyterhub").unwrap()["redirectUris"],
        json!(["https://demo.example.com/hub/oauth_callback"])
    );
    assert!(kc.plan(&c).await.unwrap().is_empty());

    // A role mapping added out of band and a deleted mapper are taken back too.
    s.api.edit_client(REALM, "grafana", |rep| {
        rep["webOrigins"] = json!(["*"]);
    });
    let plan = kc.plan(&c).await.unwrap();
    assert_eq!(plan.changes[0].diff[0].field, "webOrigins");
    kc.apply_plan(&plan).await.unwrap();
    assert!(kc.plan(&c).await.unwrap().is_empty());
}

#[tokio::test]
async fn keycloak_drift_in_roles_mappings_and_mappers_is_corrected() {
    let s = emulator(Duration::from_secs(60)).await;
    let c = config(AuthenticationKind::Password);
    let kc = keycloak(&s.url, &c);
    kc.apply_plan(&kc.plan(&c).await.unwrap()).await.unwrap();
    let admin = kc.client();
    let hub = admin
        .client_by_client_id(REALM, "jupyterhub")
        .await
        .unwrap()
        .unwrap();
    let uuid = hub.id.clone().unwrap();
    // Out of band: a role deleted, a mapper removed, an analyst given the admin role.
    admin
        .delete_client_role(REALM, &uuid, "jupyterhub", "jupyterhub_developer")
        .await
        .unwrap();
    let groups_mapper = hub
        .protocol_mappers
        .iter()
        .find(|m| m.name == "groups")
        .unwrap();
    admin
        .delete_protocol_mapper(REALM, &uuid, "jupyterhub", groups_mapper)
        .await
        .unwrap();
    let roles = admin
        .client_roles(REALM, &uuid, "jupyterhub")
        .await
        .unwrap();
    let analyst = admin
        .groups(REALM)
        .await
        .unwrap()
        .into_iter()
        .find(|g| g.name == "analyst")
        .unwrap();
    admin
        .add_group_client_roles(REALM, analyst.id.as_deref().unwrap(), &uuid, "test", &roles)
        .await
        .unwrap();

    let plan = kc.plan(&c).await.unwrap();
    assert_eq!(ids(&plan), ["~ keycloak_client/jupyterhub"]);
    let fields: Vec<&str> = plan.changes[0]
        .diff
        .iter()
        .map(|d| d.field.as_str())
        .collect();
    assert_eq!(
        fields,
        [
            "protocolMappers",
            "roleMappings.analyst",
            "roleMappings.developer",
            "roles"
        ]
    );
    kc.apply_plan(&plan).await.unwrap();
    let after = kc.plan(&c).await.unwrap();
    assert!(after.is_empty(), "{}", after.render_text());
}

#[tokio::test]
async fn keycloak_switching_to_password_deletes_the_identity_provider() {
    let s = emulator(Duration::from_secs(60)).await;
    let github = config(AuthenticationKind::GitHub);
    let kc = keycloak(&s.url, &github);
    kc.apply_plan(&kc.plan(&github).await.unwrap())
        .await
        .unwrap();

    let mut password = github.clone();
    password.security.authentication.kind = AuthenticationKind::Password;
    password.security.authentication.config = None;
    password.security.shared_users_group = Some(false);
    let kc = keycloak(&s.url, &password);
    let plan = kc.plan(&password).await.unwrap();
    assert_eq!(
        ids(&plan),
        [
            "- keycloak_identity_provider/github",
            "- keycloak_group/users"
        ],
        "{}",
        plan.render_text()
    );
    kc.apply_plan(&plan).await.unwrap();
    assert!(s.api.identity_provider(REALM, "github").is_none());
    assert!(kc.plan(&password).await.unwrap().is_empty());
}

#[tokio::test]
async fn keycloak_token_expiry_mid_run_is_survived() {
    let s = emulator(Duration::from_secs(1)).await;
    let c = config(AuthenticationKind::GitHub);
    let kc = keycloak(&s.url, &c);
    let plan = kc.plan(&c).await.unwrap();
    let (first, rest) = plan.changes.split_at(4);
    for change in first {
        kc.apply(change).await.unwrap();
    }
    // The token outlives its lifetime between two changes...
    tokio::time::sleep(Duration::from_millis(1100)).await;
    kc.apply(&rest[0]).await.unwrap();
    // ...or is revoked behind the client's back: a 401, a new login, the call again.
    s.api.expire_tokens();
    let before = s.api.counts();
    for change in &rest[1..] {
        kc.apply(change).await.unwrap();
    }
    let after = s.api.counts();
    assert!(
        after.unauthorized > before.unauthorized,
        "a 401 was seen: {after:?}"
    );
    assert!(after.logins >= 3, "logged in again: {after:?}");
    assert!(kc.plan(&c).await.unwrap().is_empty());
}

#[tokio::test]
async fn keycloak_plans_never_show_a_secret() {
    let s = emulator(Duration::from_secs(60)).await;
    let c = config(AuthenticationKind::GitHub);
    let kc = keycloak(&s.url, &c);
    let hub_secret = kc
        .secrets()
        .client_secret("jupyterhub")
        .unwrap()
        .expose()
        .to_string();
    let check = |plan: &Plan| {
        let shown = [
            serde_json::to_string(plan).unwrap(),
            plan.to_json().to_string(),
            plan.render_text(),
            format!("{plan:?}"),
        ];
        for text in &shown {
            assert!(!text.contains(GITHUB_SECRET), "GitHub secret in {text}");
            assert!(!text.contains(&hub_secret), "client secret in {text}");
        }
    };
    let plan = kc.plan(&c).await.unwrap();
    check(&plan);
    assert!(
        serde_json::to_string(&plan)
            .unwrap()
            .contains(&secret_hash(GITHUB_SECRET)),
        "compared by hash"
    );
    kc.apply_plan(&plan).await.unwrap();

    // A new GitHub secret: an update whose diff shows hashes only.
    let mut rotated = c.clone();
    rotated
        .security
        .authentication
        .config
        .as_mut()
        .unwrap()
        .client_secret = "gh-rotated-secret-value".into();
    let kc2 = keycloak(&s.url, &rotated);
    let plan = kc2.plan(&rotated).await.unwrap();
    println!("{}", plan.render_text());
    assert_eq!(ids(&plan), ["~ keycloak_identity_provider/github"]);
    assert_eq!(plan.changes[0].diff[0].field, "clientSecretHash");
    check(&plan);
    assert!(!serde_json::to_string(&plan).unwrap().contains("gh-rotated"));
    kc2.apply_plan(&plan).await.unwrap();
    assert_eq!(
        s.api.identity_provider(REALM, "github").unwrap()["config"]["clientSecret"],
        json!("gh-rotated-secret-value")
    );
    assert!(kc2.plan(&rotated).await.unwrap().is_empty());

    // A client secret changed out of band is seen (by hash) and set back.
    s.api.edit_client(REALM, "conda_store", |rep| {
        rep["secret"] = json!("guessable")
    });
    let plan = kc2.plan(&rotated).await.unwrap();
    assert_eq!(ids(&plan), ["~ keycloak_client/conda_store"]);
    assert_eq!(plan.changes[0].diff[0].field, "secretHash");
    assert!(!serde_json::to_string(&plan).unwrap().contains("guessable"));
    kc2.apply_plan(&plan).await.unwrap();
    assert!(kc2.plan(&rotated).await.unwrap().is_empty());
}

#[tokio::test]
async fn keycloak_a_deploy_cut_off_midway_converges_on_the_next_run() {
    let s = emulator(Duration::from_secs(60)).await;
    let c = config(AuthenticationKind::GitHub);
    let kc = keycloak(&s.url, &c);
    let plan = kc.plan(&c).await.unwrap();
    // Keycloak dies 20 calls into the apply (inside the clients' creates).
    s.api.set_fail_after(Some(20));
    let e = kc.apply_plan(&plan).await.unwrap_err();
    assert!(e.is_retryable(), "{e}");
    s.api.set_fail_after(None);
    // The next run plans only what is missing or half-made, and completes it.
    let rerun = kc.plan(&c).await.unwrap();
    assert!(!rerun.is_empty() && rerun.changes.len() < plan.changes.len());
    assert!(
        rerun
            .changes
            .iter()
            .all(|ch| matches!(ch.action, Action::Create | Action::Update)),
        "{}",
        rerun.render_text()
    );
    kc.apply_plan(&rerun).await.unwrap();
    assert!(kc.plan(&c).await.unwrap().is_empty());
    assert_eq!(s.api.group_names(REALM).len(), 4, "nothing duplicated");
}

#[tokio::test]
async fn keycloak_creates_are_idempotent() {
    let s = emulator(Duration::from_secs(60)).await;
    let c = config(AuthenticationKind::GitHub);
    let kc = keycloak(&s.url, &c);
    let plan = kc.plan(&c).await.unwrap();
    kc.apply_plan(&plan).await.unwrap();
    // The same creates again (a re-run after a lost answer): every one finds its object.
    kc.apply_plan(&plan).await.unwrap();
    assert_eq!(s.api.group_names(REALM).len(), 4);
    assert!(kc.plan(&c).await.unwrap().is_empty());
    // Deletes of what is gone are done.
    let destroy = qhub_core::plan::destroy(&kc.observe().await.unwrap());
    assert_eq!(destroy.changes.last().unwrap().id.kind, "keycloak_realm");
    kc.apply_plan(&destroy).await.unwrap();
    kc.apply_plan(&destroy).await.unwrap();
    assert!(kc.observe().await.unwrap().is_empty());
}

#[tokio::test]
async fn keycloak_faults_and_refusals_are_classified() {
    let s = emulator(Duration::from_secs(60)).await;
    let c = config(AuthenticationKind::Password);
    s.api.set_fault_rate(1.0);
    let kc = keycloak(&s.url, &c);
    let e = kc.observe().await.unwrap_err();
    assert_eq!(e.status(), Some(503), "{e}");
    let pe = ProviderError::from(e);
    assert!(pe.is_retryable(), "{pe}");
    assert_eq!(pe.retry_after(), Some(Duration::from_secs(1)));

    // With faults on a tenth of the calls, retrying each change converges (a retried create
    // finds what its failed attempt made and completes it).
    s.api.set_fault_rate(0.1);
    let mut attempts = 0;
    let plan = loop {
        attempts += 1;
        match kc.plan(&c).await {
            Ok(p) => break p,
            Err(e) if e.is_retryable() && attempts < 50 => continue,
            Err(e) => panic!("{e}"),
        }
    };
    for change in &plan.changes {
        let mut tries = 0;
        loop {
            tries += 1;
            match kc.apply(change).await {
                Ok(()) => break,
                Err(e) if e.is_retryable() && tries < 200 => continue,
                Err(e) => panic!("{}: {e}", change.id),
            }
        }
    }
    s.api.set_fault_rate(0.0);
    assert!(s.api.counts().faults > 0);
    assert!(kc.plan(&c).await.unwrap().is_empty());

    // A wrong admin password: unauthorized, not retried.
    let bad = AdminClient::new(&s.url, AdminCredentials::new(ADMIN_USER, "wrong")).unwrap();
    let e = reconcile::observe(&bad, REALM, &[]).await.unwrap_err();
    assert!(matches!(
        ProviderError::from(e),
        ProviderError::Unauthorized(m) if m.contains("Invalid user credentials")
    ));
}

#[tokio::test]
async fn keycloak_realm_waits_for_what_it_is_told_to() {
    let s = emulator(Duration::from_secs(60)).await;
    let c = config(AuthenticationKind::Password);
    let deployment =
        qhub_core::plan::ResourceId::new("kubernetes_object", "Deployment/dev/keycloak");
    let kc = keycloak(&s.url, &c).realm_depends_on([deployment.clone()]);
    let desired = kc.desired(&c).unwrap();
    assert_eq!(desired[0].depends_on, std::slice::from_ref(&deployment));
    kc.apply_plan(&kc.plan(&c).await.unwrap()).await.unwrap();
    let observed = kc.observe().await.unwrap();
    assert_eq!(observed[0].id.kind, "keycloak_realm");
    assert_eq!(observed[0].depends_on, [deployment]);
    assert_eq!(
        admin_credentials(&c).map(|a| a.username),
        Some(ADMIN_USER.to_string())
    );
    assert_eq!(
        admin_credentials(&c).unwrap().password.expose(),
        PASSWORD,
        "from security.keycloak.initial_root_password"
    );
}

#[tokio::test]
async fn keycloak_refused_after_a_fresh_token_is_unauthorized() {
    // Tokens that are dead on arrival: the call is refused, a new token is fetched once, the
    // call is refused again -> Unauthorized, without looping.
    let s = emulator(Duration::ZERO).await;
    let c = config(AuthenticationKind::Password);
    let kc = keycloak(&s.url, &c);
    let e = kc.observe().await.unwrap_err();
    assert!(matches!(e, KeycloakError::Unauthorized { .. }), "{e}");
    assert!(matches!(
        ProviderError::from(e),
        ProviderError::Unauthorized(_)
    ));
    let counts = s.api.counts();
    assert_eq!((counts.logins, counts.unauthorized), (2, 2), "{counts:?}");
}

#[tokio::test]
async fn keycloak_changes_applied_in_parallel_converge() {
    // The engine applies independent changes concurrently: groups together, then clients
    // together, sharing one client (one token, refreshed under a lock).
    let s = emulator(Duration::from_secs(60)).await;
    let c = config(AuthenticationKind::GitHub);
    let kc = keycloak(&s.url, &c);
    let plan = kc.plan(&c).await.unwrap();
    let mut waves: Vec<Vec<&qhub_core::plan::Change>> = Vec::new();
    let mut done: Vec<&qhub_core::plan::ResourceId> = Vec::new();
    let mut left: Vec<&qhub_core::plan::Change> = plan.changes.iter().collect();
    while !left.is_empty() {
        let (ready, rest): (Vec<_>, Vec<_>) = left
            .into_iter()
            .partition(|ch| ch.depends_on().iter().all(|d| done.contains(&d)));
        assert!(!ready.is_empty(), "a dependency cycle");
        done.extend(ready.iter().map(|ch| &ch.id));
        waves.push(ready);
        left = rest;
    }
    assert_eq!(
        waves.len(),
        3,
        "realm; groups and identity provider; clients"
    );
    for wave in &waves {
        let results = futures::future::join_all(wave.iter().map(|ch| kc.apply(ch))).await;
        for r in results {
            r.unwrap();
        }
    }
    assert_eq!(s.api.counts().logins, 1, "one token shared by all");
    assert!(kc.plan(&c).await.unwrap().is_empty());
}

#[tokio::test]
async fn keycloak_token_expired_mid_run_is_refreshed_once_for_all_calls_in_flight() {
    let s = emulator(Duration::from_secs(60)).await;
    let c = config(AuthenticationKind::GitHub);
    let kc = keycloak(&s.url, &c);
    kc.apply_plan(&kc.plan(&c).await.unwrap()).await.unwrap();
    let before = s.api.counts();
    assert_eq!(before.logins, 1);
    // Keycloak forgets the token (a restart, a revocation) while the client still holds it:
    // eight reads in flight together each meet a 401, and one new token serves them all.
    s.api.expire_tokens();
    let reads = (0..8).map(|_| kc.observe());
    for observed in futures::future::join_all(reads).await {
        assert_eq!(observed.unwrap().len(), 10);
    }
    let after = s.api.counts();
    assert_eq!(after.logins - before.logins, 1, "one refresh: {after:?}");
    assert!(after.unauthorized > before.unauthorized, "{after:?}");
    assert_eq!(kc.client().logins(), 2);
    assert!(kc.plan(&c).await.unwrap().is_empty());
}

#[tokio::test]
async fn keycloak_refresh_refused_names_keycloak_and_the_realm() {
    let s = emulator(Duration::from_secs(60)).await;
    let c = config(AuthenticationKind::Password);
    let kc = keycloak(&s.url, &c);
    kc.apply_plan(&kc.plan(&c).await.unwrap()).await.unwrap();
    // The admin password is rotated behind qhub's back, and the token it holds dies: the
    // refresh after the 401 is refused, once, and the call fails without looping.
    s.api.set_admin(ADMIN_USER, "rotated-elsewhere");
    s.api.expire_tokens();
    let before = s.api.counts();
    let e = kc.observe().await.unwrap_err();
    let message = e.to_string();
    assert!(matches!(e, KeycloakError::Unauthorized { .. }), "{e}");
    for part in [
        "Keycloak",
        "realm qhub",
        "realm master",
        "Invalid user credentials",
    ] {
        assert!(message.contains(part), "{part:?} missing from: {message}");
    }
    assert!(!message.contains("rotated-elsewhere") && !message.contains(PASSWORD));
    let after = s.api.counts();
    assert_eq!(
        (
            after.logins - before.logins,
            after.unauthorized - before.unauthorized
        ),
        (1, 1),
        "{after:?}"
    );
    assert!(matches!(
        ProviderError::from(e),
        ProviderError::Unauthorized(m) if m.contains("realm qhub")
    ));
}
