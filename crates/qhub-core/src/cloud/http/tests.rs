//! The REST toolkit against raw HTTP answers from a loopback socket.

use super::*;
use crate::provider::ProviderError;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A loopback server answering each connection with the next of `answers` (raw HTTP),
/// recording each request's head.
async fn serve(answers: Vec<String>) -> (String, Arc<std::sync::Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        for answer in answers {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let mut buf = vec![0u8; 8192];
            let n = socket.read(&mut buf).await.unwrap_or(0);
            log.lock()
                .unwrap()
                .push(String::from_utf8_lossy(&buf[..n]).into_owned());
            let _ = socket.write_all(answer.as_bytes()).await;
            let _ = socket.shutdown().await;
        }
    });
    (format!("http://{addr}"), seen)
}

fn answer(status: &str, headers: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n{headers}\r\n{body}",
        body.len()
    )
}

fn quick() -> RetryPolicy {
    RetryPolicy::uniform(crate::retry::Budget {
        max_attempts: 5,
        max_elapsed: Duration::from_secs(5),
        base: Duration::from_millis(1),
        cap: Duration::from_millis(5),
    })
}

#[test]
fn anonymous_and_plain_http_credentials_are_for_loopback_only() {
    let token = || Auth::Bearer(Arc::new(BearerToken::new("very-secret")));
    let build = |endpoint: &str, auth: Auth| {
        RestClient::new(
            RestOptions::new("Test", endpoint, auth),
            Arc::default(),
            RetryPolicy::default(),
        )
    };
    assert!(matches!(
        build("https://api.example.com", Auth::Anonymous),
        Err(SetupError::Anonymous { .. })
    ));
    assert!(matches!(
        build("http://api.example.com", token()),
        Err(SetupError::PlainHttp { .. })
    ));
    assert!(matches!(
        build("ftp://127.0.0.1", Auth::Anonymous),
        Err(SetupError::Scheme { .. })
    ));
    assert!(matches!(
        build("not a url", token()),
        Err(SetupError::NotAUrl { .. })
    ));
    let local = build("http://127.0.0.1:9/", Auth::Anonymous).unwrap();
    assert_eq!(local.url("/v1/x"), "http://127.0.0.1:9/v1/x");
    assert!(local.is_local());
    let remote = build("https://api.example.com", token()).unwrap();
    let shown = format!("{remote:?}");
    assert!(
        !shown.contains("very-secret") && shown.contains("Bearer(<redacted>)"),
        "{shown}"
    );
    assert!(!format!("{:?}", BearerToken::new("very-secret")).contains("very-secret"));
}

#[test]
fn error_envelopes_are_read() {
    let google =
        br#"{"error":{"code":404,"message":"No such object","errors":[{"reason":"notFound"}]}}"#;
    assert_eq!(
        ErrorEnvelope::google_json(google),
        ErrorEnvelope {
            code: Some("notFound".into()),
            message: Some("No such object".into())
        }
    );
    let s3 = b"<?xml version=\"1.0\"?><Error><Code>NoSuchBucket</Code><Message>m</Message></Error>";
    assert_eq!(
        ErrorEnvelope::s3_xml(s3),
        ErrorEnvelope {
            code: Some("NoSuchBucket".into()),
            message: Some("m".into())
        }
    );
    assert_eq!(ErrorEnvelope::s3_xml(b"oops"), ErrorEnvelope::default());
    assert_eq!(
        ErrorEnvelope::google_json(b"oops"),
        ErrorEnvelope::default()
    );
}

/// Judges a reply the way the clients do: success passes, 429 is throttling with its
/// `Retry-After`, 5xx is retryable, anything else fatal.
fn judge(outcome: Result<Reply, HttpError>) -> Result<Reply, ProviderError> {
    let reply = outcome.map_err(|e| ProviderError::retryable(e.to_string()))?;
    match reply.status.as_u16() {
        200..=299 => Ok(reply),
        429 => Err(ProviderError::Throttled {
            message: "429".into(),
            retry_after: reply.retry_after(),
        }),
        500.. => Err(ProviderError::retryable(format!("{}", reply.status))),
        _ => Err(ProviderError::Fatal(reply.body_start())),
    }
}

#[tokio::test]
async fn a_read_is_retried_after_throttling_and_5xx_and_every_attempt_is_counted() {
    let (endpoint, seen) = serve(vec![
        answer("429 Too Many Requests", "retry-after: 0\r\n", ""),
        answer("503 Service Unavailable", "", ""),
        answer("200 OK", "x-goog-generation: 7\r\n", "{\"ok\":true}"),
    ])
    .await;
    let stats = Arc::new(ApiStats::default());
    let client = RestClient::new(
        RestOptions::new(
            "Test",
            endpoint.as_str(),
            Auth::Bearer(Arc::new(BearerToken::new("t0k"))),
        ),
        stats.clone(),
        quick(),
    )
    .unwrap();
    let url = client.url("/v1/things");
    let query = [("alt", "json".to_string())];
    let mut request = Request::new("things.get", Method::GET, &url);
    request.query = &query;
    let reply = client.send("things.get", &request, judge).await.unwrap();
    assert_eq!(reply.header("x-goog-generation"), Some("7"));
    assert_eq!(reply.json()["ok"], true);
    assert_eq!(
        (stats.calls(), stats.mutating(), stats.retries()),
        (3, 0, 2)
    );
    let heads = seen.lock().unwrap().clone();
    assert!(
        heads[0].starts_with("GET /v1/things?alt=json "),
        "{}",
        heads[0]
    );
    assert!(
        heads[0]
            .to_ascii_lowercase()
            .contains("authorization: bearer t0k"),
        "{}",
        heads[0]
    );
}

#[tokio::test]
async fn a_mutation_is_sent_again_only_when_throttled() {
    let (endpoint, _) = serve(vec![
        answer("429 Too Many Requests", "", ""),
        answer("500 Internal Server Error", "", ""),
        answer("200 OK", "", ""),
    ])
    .await;
    let stats = Arc::new(ApiStats::default());
    let client = RestClient::new(
        RestOptions::new("Test", endpoint.as_str(), Auth::Anonymous),
        stats.clone(),
        quick(),
    )
    .unwrap();
    let url = client.url("/v1/things");
    let body = serde_json::json!({"name": "x"});
    let mut request = Request::new("things.insert", Method::POST, &url);
    request.body = Body::Json(&body);
    let err = client.send("insert", &request, judge).await.unwrap_err();
    // Throttled once (sent again), then a 500: the mutation may have been carried out,
    // so it goes back to the caller.
    assert!(matches!(err, ProviderError::Retryable { .. }), "{err:?}");
    assert_eq!((stats.calls(), stats.mutating()), (2, 2));
}

#[tokio::test]
async fn a_signer_signs_what_is_sent() {
    struct Echo;
    impl Signer for Echo {
        fn sign(
            &self,
            method: &str,
            url: &str,
            headers: &[(&str, &str)],
            body: &[u8],
        ) -> Result<Vec<(String, String)>, String> {
            Ok(vec![(
                "x-signed".into(),
                format!("{method} {url} {} {}", headers.len(), body.len()),
            )])
        }
    }
    let (endpoint, seen) = serve(vec![answer("412 Precondition Failed", "", "")]).await;
    let client = RestClient::new(
        RestOptions::new("Test", endpoint.as_str(), Auth::Signed(Arc::new(Echo))),
        Arc::default(),
        quick(),
    )
    .unwrap();
    let url = client.url("/bucket/key");
    let headers = [("if-none-match", "*".to_string())];
    let mut request = Request::new("PutObject", Method::PUT, &url);
    request.headers = &headers;
    request.body = Body::Bytes(b"hello");
    let reply = client.send_once(&request).await.unwrap();
    assert_eq!(reply.status, StatusCode::PRECONDITION_FAILED);
    let head = seen.lock().unwrap()[0].to_ascii_lowercase();
    assert!(
        head.contains(&format!("x-signed: put {endpoint}/bucket/key 1 5")),
        "{head}"
    );
    assert!(head.contains("if-none-match: *"), "{head}");
}

/// A source handing out `t1`, `t2`, … (a new one per fetch), that refreshes on a 401
/// unless `broken`.
#[derive(Default)]
struct Rotating {
    fetched: std::sync::atomic::AtomicU32,
    broken: bool,
}

#[async_trait::async_trait]
impl TokenSource for Rotating {
    async fn token(&self) -> Result<BearerToken, TokenError> {
        let n = self
            .fetched
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(BearerToken::new(format!("t{}", n + 1)))
    }

    fn refreshes(&self) -> bool {
        true
    }

    async fn refresh(&self, rejected: &BearerToken) -> Result<BearerToken, TokenError> {
        assert_eq!(rejected.expose(), "t1", "the refused token is named");
        if self.broken {
            return Err(TokenError {
                message: "login refused".into(),
                transient: false,
            });
        }
        self.token().await
    }
}

fn client_with(endpoint: &str, tokens: Arc<dyn TokenSource>) -> RestClient {
    RestClient::new(
        RestOptions::new("Test", endpoint, Auth::Bearer(tokens)),
        Arc::default(),
        quick(),
    )
    .unwrap()
}

#[tokio::test]
async fn a_refused_token_is_refreshed_once_per_request() {
    // 401, then the fresh token is taken: one refresh, two sends, both counted.
    let (endpoint, seen) = serve(vec![
        answer("401 Unauthorized", "", ""),
        answer("200 OK", "", "{}"),
    ])
    .await;
    let tokens = Arc::new(Rotating::default());
    let client = client_with(&endpoint, tokens.clone());
    let url = client.url("/x");
    let reply = client
        .send_once(&Request::new("getX", Method::GET, &url))
        .await
        .unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(client.stats().calls(), 2);
    let heads = seen.lock().unwrap().clone();
    assert!(heads[0].to_ascii_lowercase().contains("bearer t1"));
    assert!(heads[1].to_ascii_lowercase().contains("bearer t2"));

    // Refused again with the fresh token: the 401 goes back, no third send.
    let (endpoint, seen) = serve(vec![
        answer("401 Unauthorized", "", ""),
        answer("401 Unauthorized", "", ""),
        answer("200 OK", "", ""),
    ])
    .await;
    let client = client_with(&endpoint, Arc::new(Rotating::default()));
    let url = client.url("/x");
    let reply = client
        .send_once(&Request::new("getX", Method::GET, &url))
        .await
        .unwrap();
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(seen.lock().unwrap().len(), 2);

    // A fixed token is not refreshed: one send.
    let (endpoint, seen) = serve(vec![
        answer("401 Unauthorized", "", ""),
        answer("200 OK", "", ""),
    ])
    .await;
    let client = client_with(&endpoint, Arc::new(BearerToken::new("fixed")));
    let url = client.url("/x");
    let reply = client
        .send_once(&Request::new("getX", Method::GET, &url))
        .await
        .unwrap();
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(seen.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_failed_refresh_is_its_own_error() {
    let (endpoint, seen) = serve(vec![
        answer("401 Unauthorized", "", ""),
        answer("200 OK", "", ""),
    ])
    .await;
    let client = client_with(
        &endpoint,
        Arc::new(Rotating {
            broken: true,
            ..Rotating::default()
        }),
    );
    let url = client.url("/x");
    let err = client
        .send_once(&Request::new("getX", Method::GET, &url))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, HttpError::TokenRefresh(e) if !e.transient),
        "{err:?}"
    );
    assert!(err.to_string().contains("login refused"), "{err}");
    assert_eq!(seen.lock().unwrap().len(), 1);
}

#[test]
fn in_body_credentials_may_reach_a_remote_https_host_only() {
    let build = |endpoint: &str| {
        RestClient::new(
            RestOptions::new("Test", endpoint, Auth::InBody),
            Arc::default(),
            RetryPolicy::default(),
        )
    };
    assert!(build("https://sso.example.com/auth").is_ok());
    assert!(matches!(
        build("http://sso.example.com/auth"),
        Err(SetupError::PlainHttp { .. })
    ));
    assert!(build("http://127.0.0.1:8080/auth").is_ok());
}

#[test]
fn keycloak_error_envelopes_are_read() {
    assert_eq!(
        ErrorEnvelope::keycloak_json(br#"{"errorMessage":"Client x already exists"}"#),
        ErrorEnvelope {
            code: None,
            message: Some("Client x already exists".into())
        }
    );
    assert_eq!(
        ErrorEnvelope::keycloak_json(
            br#"{"error":"invalid_grant","error_description":"Invalid user credentials"}"#
        ),
        ErrorEnvelope {
            code: Some("invalid_grant".into()),
            message: Some("Invalid user credentials".into())
        }
    );
}

#[tokio::test]
async fn a_refused_connection_is_a_transport_error_that_was_not_sent() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let client = RestClient::new(
        RestOptions::new("Test", endpoint.as_str(), Auth::Anonymous),
        Arc::default(),
        quick(),
    )
    .unwrap();
    let url = client.url("/x");
    let err = client
        .send_once(&Request::new("getX", Method::GET, &url))
        .await
        .unwrap_err();
    assert!(
        matches!(err, HttpError::Transport { not_sent: true, .. }),
        "{err:?}"
    );
    assert!(err.to_string().starts_with("no answer from Test"), "{err}");
}
