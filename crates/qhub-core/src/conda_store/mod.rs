//! A small typed client of conda-store's REST API (conda-store-server 2025.2.2,
//! `conda_store_server/_internal/server/views/api.py`), for the environments a deployment's
//! config builds: list a namespace's environments, read a build, register a specification,
//! delete an environment.
//!
//! - **Endpoint**: conda-store's base URL, with its prefix (`…/conda-store`); the API is under
//!   `/api/v1`. `QHUB_CONDA_STORE_URL` overrides it (an emulator, or a port-forward made by hand).
//! - **Auth**: a bearer token minted from the server's own signing secret ([`token`]).
//! - **Calls**: `GET /api/v1/environment/?namespace=` (paginated: `page`, `size`; the answer's
//!   `count` is the total), `GET /api/v1/build/{id}/`, `POST /api/v1/specification/`
//!   (`{namespace, specification}`: the specification is YAML, and JSON is YAML; answers
//!   `data.build_id`), `DELETE /api/v1/environment/{namespace}/{name}/`. Errors are
//!   FastAPI's `{"detail": …}` (or conda-store's `{"status": "error", "message": …}`).
//! - **Retries** through the REST toolkit ([`crate::cloud::http`]): reads after any retryable
//!   failure; a registration (which queues a build) only when throttled.

pub mod token;

use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use serde::Deserialize;
use serde_json::{Value as Json, json};

use crate::cloud::http::{
    Auth, BearerToken, Body, HttpError, Reply, Request, RestClient, RestOptions,
};
use crate::cloud::stats::ApiStats;
use crate::provider::ProviderError;
use crate::retry::{CallKind, RetryPolicy};

/// The variable overriding where conda-store answers (its base URL, `…/conda-store`).
pub const URL_ENV: &str = "QHUB_CONDA_STORE_URL";

/// The base URL from [`URL_ENV`], when set.
pub fn url_from_env() -> Option<String> {
    std::env::var(URL_ENV)
        .ok()
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// A build's status (`schema.BuildStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum BuildStatus {
    /// Waiting for a worker.
    Queued,
    /// Being built.
    Building,
    /// Built.
    Completed,
    /// The build failed (its log says why).
    Failed,
    /// Cancelled.
    Canceled,
}

impl BuildStatus {
    /// True when the build will not change any more.
    pub fn is_final(self) -> bool {
        !matches!(self, Self::Queued | Self::Building)
    }
}

/// An environment as listed (`schema.Environment`, the fields qhub reads).
#[derive(Debug, Clone, Deserialize)]
pub struct Environment {
    /// conda-store's id.
    pub id: u64,
    /// Its name.
    pub name: String,
    /// Its namespace.
    pub namespace: Namespace,
    /// The build the environment points at (the first one, then the last that completed).
    pub current_build_id: Option<u64>,
    /// Its description (qhub's mark, [`crate::engine`]'s conda-store reconciler).
    #[serde(default)]
    pub description: Option<String>,
}

/// A namespace (`schema.Namespace`).
#[derive(Debug, Clone, Deserialize)]
pub struct Namespace {
    /// Its name.
    pub name: String,
}

/// A build (`schema.Build`, the fields qhub reads).
#[derive(Debug, Clone, Deserialize)]
pub struct Build {
    /// conda-store's id.
    pub id: u64,
    /// Its status.
    pub status: BuildStatus,
    /// What conda-store says about it (why it failed).
    #[serde(default)]
    pub status_info: Option<String>,
    /// The specification it built.
    #[serde(default)]
    pub specification: Option<Specification>,
}

/// A registered specification (`schema.Specification`).
#[derive(Debug, Clone, Deserialize)]
pub struct Specification {
    /// The specification as conda-store keeps it (after its own additions).
    pub spec: Json,
}

/// The client. Cheap to clone.
#[derive(Clone, Debug)]
pub struct CondaStoreClient {
    rest: RestClient,
}

/// The message of an error answer: FastAPI's `detail`, or conda-store's `message`.
fn message(reply: &Reply) -> String {
    let body = reply.json();
    match (&body["detail"], &body["message"]) {
        (Json::String(s), _) | (_, Json::String(s)) => s.clone(),
        (Json::Null, _) => reply.body_start(),
        (other, _) => other.to_string(),
    }
}

/// One attempt's outcome: the JSON of a success, a typed error otherwise.
fn judge(outcome: Result<Reply, HttpError>, what: &str) -> Result<Json, ProviderError> {
    let reply = outcome.map_err(|e| ProviderError::retryable(format!("{what}: {e}")))?;
    let status = reply.status.as_u16();
    if reply.status.is_success() {
        return Ok(reply.json());
    }
    let text = format!("{what}: conda-store answered {status}: {}", message(&reply));
    Err(match status {
        // 401 without a token; 403 "request not authorized" for a token without the role
        // (`server/auth.py`, `authorize_request`).
        401 | 403 => ProviderError::Unauthorized(text),
        404 => ProviderError::NotFound(text),
        429 => ProviderError::throttled(text, reply.retry_after()),
        s if s >= 500 => ProviderError::Retryable {
            message: text,
            retry_after: reply.retry_after(),
        },
        _ => ProviderError::Fatal(text),
    })
}

fn decode<T: serde::de::DeserializeOwned>(value: Json, what: &str) -> Result<T, ProviderError> {
    serde_json::from_value(value).map_err(|e| {
        ProviderError::Fatal(format!("{what}: unexpected answer from conda-store: {e}"))
    })
}

impl CondaStoreClient {
    /// A client of conda-store at `base_url` (`…/conda-store`) sending `token`, counting its
    /// calls into `stats`.
    pub fn new(
        base_url: &str,
        token: &str,
        stats: Arc<ApiStats>,
        retry: RetryPolicy,
    ) -> Result<Self, ProviderError> {
        let mut options = RestOptions::new(
            "conda-store",
            base_url,
            Auth::Bearer(Arc::new(BearerToken::new(token))),
        );
        options.timeout = Duration::from_secs(60);
        let rest = RestClient::new(options, stats, retry).map_err(|e| {
            ProviderError::Fatal(format!("conda-store at {base_url}: {e} (set {URL_ENV})"))
        })?;
        Ok(Self { rest })
    }

    /// The calls made so far.
    pub fn stats(&self) -> &Arc<ApiStats> {
        self.rest.stats()
    }

    /// The base URL.
    pub fn endpoint(&self) -> &str {
        self.rest.endpoint()
    }

    async fn call(
        &self,
        method: Method,
        operation: &str,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Json>,
        what: &str,
    ) -> Result<Json, ProviderError> {
        let url = self.rest.url(path);
        let mut request = Request::new(operation, method.clone(), &url);
        request.mutating = method != Method::GET;
        request.retry = if request.mutating {
            CallKind::Mutation
        } else {
            CallKind::Read
        };
        request.query = query;
        if let Some(body) = body {
            request.body = Body::Json(body);
        }
        self.rest
            .send(what, &request, |outcome| judge(outcome, what))
            .await
    }

    /// The environments of `namespace` (every page).
    pub async fn environments(&self, namespace: &str) -> Result<Vec<Environment>, ProviderError> {
        let what = format!("listing conda-store's environments of namespace {namespace}");
        let mut out: Vec<Environment> = Vec::new();
        for page in 1u32.. {
            let query = [
                ("namespace", namespace.to_string()),
                ("page", page.to_string()),
                ("size", "100".to_string()),
            ];
            let answer = self
                .call(
                    Method::GET,
                    "GET /environment/",
                    "/api/v1/environment/",
                    &query,
                    None,
                    &what,
                )
                .await?;
            let items: Vec<Environment> = decode(answer["data"].clone(), &what)?;
            let count = answer["count"].as_u64().unwrap_or(0);
            let empty = items.is_empty();
            // conda-store's `namespace` filter matches exactly; kept strict here anyway.
            out.extend(items.into_iter().filter(|e| e.namespace.name == namespace));
            if empty || u64::from(page) * 100 >= count {
                break;
            }
        }
        Ok(out)
    }

    /// Build `id`.
    pub async fn build(&self, id: u64) -> Result<Build, ProviderError> {
        let what = format!("reading conda-store build {id}");
        let answer = self
            .call(
                Method::GET,
                "GET /build/{id}/",
                &format!("/api/v1/build/{id}/"),
                &[],
                None,
                &what,
            )
            .await?;
        decode(answer["data"].clone(), &what)
    }

    /// Registers `specification` (an `environment.yaml` document as JSON) in `namespace`: a
    /// new environment, or a new build of an existing one. Returns the build's id.
    pub async fn register(
        &self,
        namespace: &str,
        specification: &Json,
    ) -> Result<u64, ProviderError> {
        let name = specification["name"].as_str().unwrap_or_default();
        let what = format!("registering conda-store environment {namespace}/{name}");
        let body = json!({
            "namespace": namespace,
            "specification": specification.to_string(),
        });
        let answer = self
            .call(
                Method::POST,
                "POST /specification/",
                "/api/v1/specification/",
                &[],
                Some(&body),
                &what,
            )
            .await?;
        answer["data"]["build_id"].as_u64().ok_or_else(|| {
            ProviderError::Fatal(format!(
                "{what}: conda-store answered no build id: {answer}"
            ))
        })
    }

    /// Deletes environment `namespace/name` (its builds go with it); one already gone is done.
    pub async fn delete_environment(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<(), ProviderError> {
        let what = format!("deleting conda-store environment {namespace}/{name}");
        match self
            .call(
                Method::DELETE,
                "DELETE /environment/{namespace}/{name}/",
                &format!("/api/v1/environment/{namespace}/{name}/"),
                &[],
                None,
                &what,
            )
            .await
        {
            Ok(_) | Err(ProviderError::NotFound(_)) => Ok(()),
            // conda-store answers 400 "environment namespace=… name=… does not exist"
            // (`conda_store.py`, `delete_environment`).
            Err(ProviderError::Fatal(m)) if m.ends_with("does not exist") => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Where build `id`'s log is served (`GET /api/v1/build/{id}/logs/`, a redirect to the
    /// artifact), under `public_base` (the deployment's `https://domain/conda-store`).
    pub fn log_url(public_base: &str, id: u64) -> String {
        format!(
            "{}/api/v1/build/{id}/logs/",
            public_base.trim_end_matches('/')
        )
    }
}
