use std::sync::Arc;
use std::time::Duration;

use qhub_core::cloud::stats::ApiStats;
use qhub_core::conda_store::{BuildStatus, CondaStoreClient, token};
use qhub_core::provider::ProviderError;
use qhub_core::retry::RetryPolicy;
use serde_json::json;

use super::*;

fn api(delay_ms: u64) -> CondaStoreApi {
    CondaStoreApi::new(CondaStoreApiOptions {
        token_secret: "s3cret".into(),
        build_delay: Duration::from_millis(delay_ms),
    })
}

fn client(url: &str, secret: &str, namespace: &str) -> CondaStoreClient {
    let token = token::mint(secret, namespace, 4_000_000_000);
    CondaStoreClient::new(
        url,
        &token,
        Arc::new(ApiStats::default()),
        RetryPolicy::default(),
    )
    .unwrap()
}

#[tokio::test]
async fn a_build_completes_after_the_delay_and_becomes_current() {
    let api = api(150);
    let server = api.serve().await.unwrap();
    let c = client(&server.url(), "s3cret", "shared");
    let spec = json!({"name": "dask", "channels": ["conda-forge"], "dependencies": ["python", {"pip": ["rich"]}], "description": "mine"});
    let id = c.register("shared", &spec).await.unwrap();
    assert_eq!(c.build(id).await.unwrap().status, BuildStatus::Building);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let build = c.build(id).await.unwrap();
    assert_eq!(build.status, BuildStatus::Completed);
    assert_eq!(build.specification.unwrap().spec["description"], "mine");
    let envs = c.environments("shared").await.unwrap();
    assert_eq!(envs.len(), 1);
    assert_eq!(envs[0].current_build_id, Some(id));
    assert_eq!(envs[0].description.as_deref(), Some("mine"));
    // A second build becomes current once it completes, not before.
    let second = c.register("shared", &spec).await.unwrap();
    assert_eq!(
        c.environments("shared").await.unwrap()[0].current_build_id,
        Some(id)
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        c.environments("shared").await.unwrap()[0].current_build_id,
        Some(second)
    );
    c.delete_environment("shared", "dask").await.unwrap();
    assert!(c.environments("shared").await.unwrap().is_empty());
    // Deleting what is gone is done (conda-store answers 400 "does not exist").
    c.delete_environment("shared", "dask").await.unwrap();
}

#[tokio::test]
async fn an_unsatisfiable_spec_fails_its_build() {
    let api = api(0);
    let server = api.serve().await.unwrap();
    let c = client(&server.url(), "s3cret", "shared");
    let id = c
        .register(
            "shared",
            &json!({"name": "x", "dependencies": ["unsatisfiable-thing"]}),
        )
        .await
        .unwrap();
    let build = c.build(id).await.unwrap();
    assert_eq!(build.status, BuildStatus::Failed);
    assert!(build.status_info.unwrap().contains("unsatisfiable-thing"));
}

#[tokio::test]
async fn it_refuses_what_conda_store_refuses() {
    let api = api(0);
    let server = api.serve().await.unwrap();
    let c = client(&server.url(), "s3cret", "shared");
    // A name outside ALLOWED_CHARACTERS.
    let bad = c
        .register("shared", &json!({"name": "bad name", "dependencies": []}))
        .await
        .unwrap_err();
    assert!(
        matches!(bad, ProviderError::Fatal(ref m) if m.contains("400")),
        "{bad}"
    );
    // A dependency that is neither a string nor a pip list.
    let bad = c
        .register(
            "shared",
            &json!({"name": "ok", "dependencies": [{"conda": ["x"]}]}),
        )
        .await
        .unwrap_err();
    assert!(matches!(bad, ProviderError::Fatal(_)), "{bad}");
    // Another namespace than the token's.
    let refused = c
        .register("alice", &json!({"name": "ok", "dependencies": []}))
        .await
        .unwrap_err();
    assert!(
        matches!(refused, ProviderError::Unauthorized(_)),
        "{refused}"
    );
    assert!(c.delete_environment("alice", "ok").await.is_err());
    // A token signed with another secret sees nothing and may do nothing.
    let stranger = client(&server.url(), "other", "shared");
    assert!(
        stranger
            .register("shared", &json!({"name": "ok", "dependencies": []}))
            .await
            .is_err()
    );
    api.register_as_user("shared", &json!({"name": "theirs", "dependencies": []}));
    assert!(stranger.environments("shared").await.unwrap().is_empty());
    assert_eq!(c.environments("shared").await.unwrap().len(), 1);
    assert!(api.counts().refused >= 3);
}
