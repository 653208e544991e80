//! Health through the front door ([`qhub_core::kubernetes::health`]): each listed service's
//! check asked through a loopback stand-in for the load balancer — an HTTPS server with a
//! self-signed certificate that routes by path and answers as each upstream service documents
//! its healthy answer, plus a TCP listener writing an SSH banner. All pass; then each piece is
//! broken in turn (wrong JSON, 503, wrong realm, no banner, no answer at all) and the failure
//! must name the component, the URL, what was expected and what answered.

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use qhub_core::Config;
use qhub_core::config::init::{InitOptions, render};
use qhub_core::config::provider::ProviderKind;
use qhub_core::kubernetes::endpoints::{self, ServiceUrl};
use qhub_core::kubernetes::front_door::{self, Missing};
use qhub_core::kubernetes::health::{self, Check, HealthReport, Outcome, Timing, Via};

const DOMAIN: &str = "demo.example.com";

fn config() -> Config {
    render(&InitOptions::new(
        ProviderKind::Sandbox,
        "demo",
        DOMAIN,
        "not-a-real-password",
    ))
    .unwrap()
}

/// What the stand-in answers on a path.
#[derive(Clone)]
enum Reply {
    /// A status and a JSON (or empty) body.
    Answer(u16, String),
    /// Accepts and never answers.
    Hang,
}

/// What the stand-in's SSH port does.
#[derive(Clone)]
enum Ssh {
    /// Writes these bytes and keeps the connection open.
    Banner(String),
    /// Closes at once.
    Close,
}

/// The loopback front door: an HTTPS port and an SSH port, behaviour editable while it runs.
struct FrontDoor {
    https: u16,
    ssh: u16,
    routes: Arc<Mutex<BTreeMap<String, Reply>>>,
    banner: Arc<Mutex<Ssh>>,
}

impl FrontDoor {
    /// Healthy answers, as each upstream documents them (sources in each component's
    /// declaration).
    fn healthy() -> BTreeMap<String, Reply> {
        let ok = |body: &str| Reply::Answer(200, body.to_string());
        BTreeMap::from([
            ("/welcome/".into(), ok("<html>welcome</html>")),
            ("/hub/health".into(), ok("")),
            (
                "/gateway/api/version".into(),
                ok(r#"{"version": "2026.3.0"}"#),
            ),
            (
                "/conda-store/api/v1/".into(),
                ok(r#"{"status": "ok", "data": {"version": "2025.2.2"}}"#),
            ),
            (
                "/auth/realms/qhub".into(),
                ok(
                    r#"{"realm": "qhub", "public_key": "MIIB", "token-service": "https://demo.example.com/auth/realms/qhub/protocol/openid-connect", "tokens-not-before": 0}"#,
                ),
            ),
            (
                "/monitoring/api/health".into(),
                ok(r#"{"commit": "abc", "database": "ok", "version": "12.0.0"}"#),
            ),
            // kbatch-proxy 0.4.2 `get_root` under its prefix, behind the hub's proxy.
            ("/services/kbatch/".into(), ok(r#"{"message": "kbatch"}"#)),
        ])
    }

    fn start() -> Self {
        qhub_core::tls::install_crypto_provider();
        let cert = rcgen::generate_simple_self_signed(vec![DOMAIN.to_string()]).unwrap();
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(
            rustls::pki_types::PrivatePkcs8KeyDer::from(cert.signing_key.serialize_der()),
        );
        let tls = Arc::new(
            rustls::ServerConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.cert.der().clone()], key)
            .unwrap(),
        );
        let routes = Arc::new(Mutex::new(Self::healthy()));
        let banner = Arc::new(Mutex::new(Ssh::Banner(
            "SSH-2.0-jupyterhub-ssh\r\n".to_string(),
        )));
        let https = TcpListener::bind("127.0.0.1:0").unwrap();
        let ssh = TcpListener::bind("127.0.0.1:0").unwrap();
        let door = Self {
            https: https.local_addr().unwrap().port(),
            ssh: ssh.local_addr().unwrap().port(),
            routes: routes.clone(),
            banner: banner.clone(),
        };
        std::thread::spawn(move || {
            for sock in https.incoming().flatten() {
                let (tls, routes) = (tls.clone(), routes.clone());
                std::thread::spawn(move || serve_https(sock, &tls, &routes));
            }
        });
        std::thread::spawn(move || {
            for mut sock in ssh.incoming().flatten() {
                let what = banner.lock().unwrap().clone();
                std::thread::spawn(move || match what {
                    Ssh::Banner(text) => {
                        let _ = sock.write_all(text.as_bytes());
                        std::thread::sleep(Duration::from_secs(30));
                    }
                    Ssh::Close => drop(sock),
                });
            }
        });
        door
    }

    fn via(&self) -> Via {
        Via::new("127.0.0.1")
            .port(443, self.https)
            .port(health::SSH_PORT, self.ssh)
    }

    fn set(&self, path: &str, reply: Reply) {
        self.routes.lock().unwrap().insert(path.to_string(), reply);
    }
}

/// One HTTPS connection: the TLS server name and the Host header must be the domain (as
/// through the real load balancer), then the path picks the answer; anything else is 404.
fn serve_https(
    sock: TcpStream,
    tls: &Arc<rustls::ServerConfig>,
    routes: &Mutex<BTreeMap<String, Reply>>,
) {
    let Ok(conn) = rustls::ServerConnection::new(tls.clone()) else {
        return;
    };
    let mut stream = rustls::StreamOwned::new(conn, sock);
    let mut request = Vec::new();
    let mut buf = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&buf[..n]),
        }
    }
    let request = String::from_utf8_lossy(&request).to_string();
    let path = request.split(' ').nth(1).unwrap_or_default().to_string();
    let sni_ok = stream.conn.server_name() == Some(DOMAIN);
    let host_ok = request
        .to_ascii_lowercase()
        .lines()
        .any(|l| l.starts_with("host: demo.example.com"));
    let reply = if sni_ok && host_ok {
        routes.lock().unwrap().get(&path).cloned()
    } else {
        None
    }
    .unwrap_or(Reply::Answer(404, "404 page not found".into()));
    match reply {
        Reply::Hang => std::thread::sleep(Duration::from_secs(30)),
        Reply::Answer(code, body) => {
            let _ = write!(
                stream,
                "HTTP/1.1 {code} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.flush();
            stream.conn.send_close_notify();
            let _ = stream.flush();
        }
    }
}

/// Every listed URL of the default config, and jupyterhub-ssh's banner (its component is wired
/// by its own branch; the check is declared here as it will be).
/// What deploy and status check: every listed service, jupyterhub-ssh's banner included.
fn targets(config: &Config) -> Vec<ServiceUrl> {
    endpoints::urls(config)
}

/// Short: every break must fail within it (no assertion on time itself).
fn timing() -> Timing {
    Timing {
        deadline: Duration::from_millis(1500),
        poll: Duration::from_millis(100),
        attempt: Duration::from_millis(700),
    }
}

async fn run(door: &FrontDoor, urls: &[ServiceUrl], heard: &Mutex<Vec<String>>) -> HealthReport {
    let progress = |d: &str| heard.lock().unwrap().push(d.to_string());
    health::run(urls, &door.via(), timing(), &progress).await
}

fn url_of<'a>(urls: &'a [ServiceUrl], component: &str) -> &'a ServiceUrl {
    urls.iter()
        .find(|u| u.component == component)
        .unwrap_or_else(|| panic!("no URL of {component}: {urls:?}"))
}

/// The one failure of a report, as the deploy prints it; every other check healthy.
#[track_caller]
fn only_failure(report: &HealthReport, component: &str) -> String {
    let missing = front_door::unhealthy(report);
    assert_eq!(missing.len(), 1, "{report:#?}");
    let Missing::Unhealthy { component: c, .. } = &missing[0] else {
        panic!("{missing:?}");
    };
    assert_eq!(c, component);
    assert!(
        report
            .checks
            .iter()
            .filter(|r| r.component != component)
            .all(|r| r.result == Outcome::Healthy),
        "{report:#?}"
    );
    missing[0].to_string()
}

#[test]
fn each_component_declares_its_upstream_healthy_answer() {
    let config = config();
    let urls = targets(&config);
    let check = |c: &str| url_of(&urls, c).check.clone();
    assert_eq!(check("jupyterhub"), Check::http("/hub/health"));
    assert_eq!(
        check("dask-gateway"),
        Check::http("/gateway/api/version").json_has("version")
    );
    assert_eq!(
        check("conda-store"),
        Check::http("/conda-store/api/v1/").json_equals("status", "ok")
    );
    assert_eq!(
        check("keycloak"),
        Check::http("/auth/realms/qhub").json_equals("realm", "qhub")
    );
    assert_eq!(
        check("monitoring"),
        Check::http("/monitoring/api/health").json_equals("database", "ok")
    );
    assert_eq!(check("qhub-welcome"), Check::http("/welcome/"));
    assert_eq!(
        check("kbatch"),
        Check::http("/services/kbatch/").json_equals("message", "kbatch")
    );
    assert_eq!(
        url_of(&urls, "kbatch").url,
        "https://demo.example.com/services/kbatch/"
    );
    assert_eq!(check("jupyterhub-ssh"), health::ssh_banner());
    assert_eq!(
        url_of(&urls, "jupyterhub-ssh").url,
        "ssh://demo.example.com:8022"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_check_passes_through_a_healthy_front_door() {
    let door = FrontDoor::start();
    let urls = targets(&config());
    let heard = Mutex::new(Vec::new());
    let report = run(&door, &urls, &heard).await;
    assert!(report.ran && report.skipped.is_none());
    assert_eq!(report.checks.len(), 8, "{report:#?}");
    for row in &report.checks {
        assert_eq!(row.result, Outcome::Healthy, "{row:#?}");
        assert!(row.answered.is_none() && row.latency_secs.is_some());
    }
    assert!(front_door::unhealthy(&report).is_empty());
    // Its JSON, as `qhub status --output json` prints it.
    let doc = serde_json::to_value(&report).unwrap();
    let row = doc["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["component"] == "keycloak")
        .unwrap();
    assert_eq!(row["url"], "https://demo.example.com/auth/");
    assert_eq!(
        row["check"],
        "GET /auth/realms/qhub answers 200 with JSON `realm: qhub`"
    );
    assert_eq!(row["result"], "healthy");
    assert!(row["answered"].is_null() && row["latency_secs"].is_number());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_json_answer_names_conda_store_and_what_it_said() {
    let door = FrontDoor::start();
    door.set(
        "/conda-store/api/v1/",
        Reply::Answer(200, r#"{"status": "error", "message": "db down"}"#.into()),
    );
    let urls = targets(&config());
    let heard = Mutex::new(Vec::new());
    let message = only_failure(&run(&door, &urls, &heard).await, "conda-store");
    assert!(
        message.contains("conda-store at https://demo.example.com/conda-store/")
            && message
                .contains("expected GET /conda-store/api/v1/ answers 200 with JSON `status: ok`")
            && message.contains(r#"got 200 OK with JSON with `status: "error"`"#),
        "{message}"
    );
    // Progress while it waited, naming the URL.
    assert!(
        heard
            .lock()
            .unwrap()
            .iter()
            .any(|d| d.contains("conda-store/") && d.contains("trying again")),
        "{heard:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_503_names_jupyterhub() {
    let door = FrontDoor::start();
    door.set(
        "/hub/health",
        Reply::Answer(503, "no available server".into()),
    );
    let urls = targets(&config());
    let heard = Mutex::new(Vec::new());
    let message = only_failure(&run(&door, &urls, &heard).await, "jupyterhub");
    assert!(
        message.contains("jupyterhub at https://demo.example.com/ ")
            && message.contains("expected GET /hub/health answers 200")
            && message.contains("got 503 Service Unavailable: no available server"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wrong_realm_names_keycloak() {
    let door = FrontDoor::start();
    door.set(
        "/auth/realms/qhub",
        Reply::Answer(200, r#"{"realm": "master", "public_key": "MIIB"}"#.into()),
    );
    let urls = targets(&config());
    let heard = Mutex::new(Vec::new());
    let message = only_failure(&run(&door, &urls, &heard).await, "keycloak");
    assert!(
        message.contains("keycloak at https://demo.example.com/auth/")
            && message.contains("`realm: qhub`")
            && message.contains(r#"`realm: "master"`"#),
        "{message}"
    );
    // A missing realm is Keycloak's 404.
    door.set(
        "/auth/realms/qhub",
        Reply::Answer(404, r#"{"error": "Realm does not exist"}"#.into()),
    );
    let message = only_failure(&run(&door, &urls, &heard).await, "keycloak");
    assert!(message.contains("got 404 Not Found"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_banner_names_the_ssh_server() {
    let door = FrontDoor::start();
    *door.banner.lock().unwrap() = Ssh::Close;
    let urls = targets(&config());
    let heard = Mutex::new(Vec::new());
    let message = only_failure(&run(&door, &urls, &heard).await, "jupyterhub-ssh");
    assert!(
        message.contains("jupyterhub-ssh at ssh://demo.example.com:8022")
            && message.contains("expected TCP 8022 sends a banner starting `SSH-2.0-`")
            && message.contains("got the connection closed without a banner"),
        "{message}"
    );
    // An old protocol's banner is named too.
    *door.banner.lock().unwrap() = Ssh::Banner("SSH-1.5-old\r\n".into());
    let message = only_failure(&run(&door, &urls, &heard).await, "jupyterhub-ssh");
    assert!(
        message.contains("got the banner `SSH-1.5-old`"),
        "{message}"
    );
    // Lines before the identification string are allowed (RFC 4253 §4.2).
    *door.banner.lock().unwrap() = Ssh::Banner("hello\r\nSSH-2.0-x\r\n".into());
    let report = run(&door, &urls, &heard).await;
    assert!(front_door::unhealthy(&report).is_empty(), "{report:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_that_never_answers_is_named_when_its_deadline_passes() {
    let door = FrontDoor::start();
    door.set("/gateway/api/version", Reply::Hang);
    let urls = targets(&config());
    let heard = Mutex::new(Vec::new());
    let message = only_failure(&run(&door, &urls, &heard).await, "dask-gateway");
    assert!(
        message.contains("dask-gateway at https://demo.example.com/gateway/")
            && message.contains("JSON `version`")
            && message.contains("got no answer within"),
        "{message}"
    );
    // And a body without the field.
    door.set("/gateway/api/version", Reply::Answer(200, "{}".into()));
    let message = only_failure(&run(&door, &urls, &heard).await, "dask-gateway");
    assert!(message.contains("JSON without `version`"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grafana_with_a_failing_database_is_named() {
    let door = FrontDoor::start();
    door.set(
        "/monitoring/api/health",
        Reply::Answer(
            200,
            r#"{"database": "failing", "version": "12.0.0"}"#.into(),
        ),
    );
    let urls = targets(&config());
    let heard = Mutex::new(Vec::new());
    let message = only_failure(&run(&door, &urls, &heard).await, "monitoring");
    assert!(
        message.contains("monitoring at https://demo.example.com/monitoring/")
            && message.contains(r#"`database: "failing"`"#),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_host_and_server_name_are_the_domain() {
    // The stand-in answers 404 to any other Host or SNI: a check through the address alone
    // would fail every URL. Here the URL's own host differs from the domain it routes.
    let door = FrontDoor::start();
    let urls = vec![ServiceUrl {
        component: "jupyterhub".into(),
        url: "https://other.example.com/hub/".into(),
        check: Check::http("/hub/health"),
    }];
    let heard = Mutex::new(Vec::new());
    let report = run(&door, &urls, &heard).await;
    let message = only_failure(&report, "jupyterhub");
    assert!(message.contains("got 404 Not Found"), "{message}");
}
