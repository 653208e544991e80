//! The emulator's own unkindness, over HTTP.

use std::time::Duration;

use serde_json::{Value as Json, json};

use super::{KeycloakApi, KeycloakApiOptions};

async fn token(http: &reqwest::Client, url: &str, password: &str) -> (u16, Json) {
    let res = http
        .post(format!("{url}/realms/master/protocol/openid-connect/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "grant_type=password&client_id=admin-cli&username=root&password={password}"
        ))
        .send()
        .await
        .unwrap();
    (
        res.status().as_u16(),
        res.json().await.unwrap_or(Json::Null),
    )
}

async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    bearer: Option<&str>,
    body: Option<Json>,
) -> (u16, Option<String>, Json) {
    let mut req = http.request(method, url);
    if let Some(t) = bearer {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let location = res
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    (status, location, res.json().await.unwrap_or(Json::Null))
}

#[tokio::test]
async fn keycloak_emulator_is_as_unkind_as_keycloak() {
    qhub_core::tls::install_crypto_provider();
    let api = KeycloakApi::new(KeycloakApiOptions {
        token_lifetime: Duration::from_millis(300),
        admin_password: "pw".into(),
        ..KeycloakApiOptions::default()
    });
    let server = api.serve().await.unwrap();
    let url = server.url();
    assert!(url.starts_with("http://127.0.0.1:") && url.ends_with("/auth"));
    let http = reqwest::Client::new();
    use reqwest::Method as M;

    // No token, a wrong password, then a good one.
    let realms = format!("{url}/admin/realms");
    assert_eq!(call(&http, M::GET, &realms, None, None).await.0, 401);
    assert_eq!(token(&http, &url, "nope").await.0, 401);
    let (code, t) = token(&http, &url, "pw").await;
    assert_eq!(code, 200);
    let t = t["access_token"].as_str().unwrap().to_string();
    let auth = Some(t.as_str());

    // A realm; a duplicate is a 409; an unknown field is a 400.
    let realm = json!({"realm": "qhub", "enabled": true});
    let (code, loc, _) = call(&http, M::POST, &realms, auth, Some(realm.clone())).await;
    assert_eq!(
        (code, loc.unwrap().ends_with("/admin/realms/qhub")),
        (201, true)
    );
    assert_eq!(
        call(&http, M::POST, &realms, auth, Some(realm)).await.0,
        409
    );
    let (code, _, body) = call(
        &http,
        M::POST,
        &realms,
        auth,
        Some(json!({"realm": "x", "colour": 1})),
    )
    .await;
    assert_eq!(code, 400);
    assert!(
        body["errorMessage"].as_str().unwrap().contains("colour"),
        "{body}"
    );

    // Clients: server-generated UUIDs, 409 on a duplicate clientId, 404 on an unknown id.
    let clients = format!("{url}/admin/realms/qhub/clients");
    let client = json!({"clientId": "jupyterhub", "publicClient": false});
    let (code, loc, _) = call(&http, M::POST, &clients, auth, Some(client.clone())).await;
    assert_eq!(code, 201);
    let id = loc.unwrap().rsplit('/').next().unwrap().to_string();
    assert_eq!(id.len(), 36);
    let (code, _, body) = call(&http, M::POST, &clients, auth, Some(client)).await;
    assert_eq!(code, 409);
    assert_eq!(
        body["errorMessage"],
        json!("Client jupyterhub already exists")
    );
    let (_, _, got) = call(&http, M::GET, &format!("{clients}/{id}"), auth, None).await;
    assert!(
        got["secret"].as_str().is_some_and(|s| !s.is_empty()),
        "a confidential client gets a secret"
    );
    let unknown = format!("{clients}/00000000-0000-4000-a000-000000000000");
    assert_eq!(call(&http, M::GET, &unknown, auth, None).await.0, 404);

    // Groups: brief by default, 409 on a duplicate name.
    let groups = format!("{url}/admin/realms/qhub/groups");
    let group = json!({"name": "admin", "attributes": {"k": ["v"]}});
    assert_eq!(
        call(&http, M::POST, &groups, auth, Some(group.clone()))
            .await
            .0,
        201
    );
    assert_eq!(
        call(&http, M::POST, &groups, auth, Some(group)).await.0,
        409
    );
    let (_, _, brief) = call(&http, M::GET, &groups, auth, None).await;
    assert!(brief[0].get("attributes").is_none());
    let (_, _, full) = call(
        &http,
        M::GET,
        &format!("{groups}?briefRepresentation=false"),
        auth,
        None,
    )
    .await;
    assert_eq!(full[0]["attributes"]["k"], json!(["v"]));

    // Identity providers: the secret is answered masked.
    let idps = format!("{url}/admin/realms/qhub/identity-provider/instances");
    let idp =
        json!({"alias": "github", "providerId": "github", "config": {"clientSecret": "s3cr3t"}});
    assert_eq!(
        call(&http, M::POST, &idps, auth, Some(idp.clone())).await.0,
        201
    );
    assert_eq!(call(&http, M::POST, &idps, auth, Some(idp)).await.0, 409);
    let (_, _, got) = call(&http, M::GET, &format!("{idps}/github"), auth, None).await;
    assert_eq!(got["config"]["clientSecret"], json!("**********"));
    assert_eq!(
        api.identity_provider("qhub", "github").unwrap()["config"]["clientSecret"],
        json!("s3cr3t")
    );

    // Tokens expire.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(call(&http, M::GET, &realms, auth, None).await.0, 401);

    // Injected faults are 503s with a Retry-After.
    let (_, t) = token(&http, &url, "pw").await;
    api.set_fault_rate(1.0);
    let (code, _, _) = call(&http, M::GET, &realms, t["access_token"].as_str(), None).await;
    assert_eq!(code, 503);
    let counts = api.counts();
    assert_eq!((counts.faults, counts.logins), (1, 3));
    assert!(
        counts.unauthorized >= 2 && counts.mutating >= 8,
        "{counts:?}"
    );
}

#[tokio::test]
async fn keycloak_emulator_persists_beside_the_config() {
    qhub_core::tls::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(".qhub-sandbox").join("keycloak.json");
    let options = || KeycloakApiOptions {
        admin_password: "pw".into(),
        ..KeycloakApiOptions::default()
    };
    let http = reqwest::Client::new();
    {
        let api = KeycloakApi::persistent(options(), &path).unwrap();
        let server = api.serve().await.unwrap();
        let url = server.url();
        let (_, t) = token(&http, &url, "pw").await;
        let realms = format!("{url}/admin/realms");
        let (code, _, _) = call(
            &http,
            reqwest::Method::POST,
            &realms,
            t["access_token"].as_str(),
            Some(json!({"realm": "qhub"})),
        )
        .await;
        assert_eq!(code, 201);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "only its owner may read it: {mode:o}");
    }
    // Another process: the realm is there; the old token is not.
    let api = KeycloakApi::persistent(options(), &path).unwrap();
    let server = api.serve().await.unwrap();
    let url = server.url();
    let (_, t) = token(&http, &url, "pw").await;
    let (code, _, realm) = call(
        &http,
        reqwest::Method::GET,
        &format!("{url}/admin/realms/qhub"),
        t["access_token"].as_str(),
        None,
    )
    .await;
    assert_eq!((code, realm["realm"].as_str()), (200, Some("qhub")));
    std::fs::write(&path, b"{not json").unwrap();
    assert!(KeycloakApi::persistent(options(), &path).is_err());
}
