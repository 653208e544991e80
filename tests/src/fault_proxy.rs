//! A loopback HTTP/1.1 proxy that injects API-level faults in front of an emulator (moto).
//!
//! The provider under test points its endpoint at the proxy; the proxy forwards each request to
//! the upstream on loopback, or answers it itself with a fault:
//!
//! - **throttling**, without forwarding: the error the AWS SDK classifies as throttling for the
//!   service's protocol (`RequestLimitExceeded` for EC2, `Throttling` for IAM/STS,
//!   `ThrottlingException` for EKS/EFS);
//! - **5xx**, without forwarding: a 503 with the service's "unavailable" error;
//! - **lost response**, mutating requests only: the request *is* forwarded and carried out, and
//!   the upstream's answer is replaced by a 503. This is what a dropped connection or a load
//!   balancer timeout looks like to a client, and what makes a blind retry of a create without
//!   an idempotency token create a duplicate.
//!
//! Which fault (if any) a request gets is decided by the emulators' shared fault plan
//! ([`qhub_emulator_kit::FaultPlan`], drawn from a generator seeded by [`FaultPlan::seed`], so
//! the sequence of draws is reproducible; which request gets which draw still depends on the
//! order concurrent requests arrive in). The plan can be switched at runtime with
//! [`FaultProxy::set_plan`] (this proxy's shorthand) or [`FaultProxy::set_fault_plan`] (rules
//! by operation name included); [`FaultProxy::counts`] says what was injected.
//!
//! It also makes moto's EKS as unkind as the real one ([`EksLifecycle`]): moto's clusters are
//! ACTIVE the moment they are created, so the proxy can report a new cluster as `CREATING` for a
//! while (refusing to delete it, or to add node groups to it, with `ResourceInUseException`, as
//! EKS does) and can make the next created cluster `FAILED`.
//!
//! And it refuses what real AWS refuses where moto accepts, and answers what real EKS adds to
//! moto's answers ([`crate::aws_rules`]: AMI types by Kubernetes version, node roles with an IAM
//! path, the cluster security group, the upgrade policy, EKS add-ons and Pod Identity). These
//! rules are always on. It serves the EC2 vCPU quotas of Service Quotas, which moto does not
//! know, with values a test chooses ([`crate::service_quotas`], [`FaultProxy::set_quota`]).
//!
//! The proxy listens on `127.0.0.1:0` and refuses a non-loopback upstream: nothing here talks
//! to the network.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, HeaderValue, TRANSFER_ENCODING};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use qhub_emulator_kit::{After, Before, Dropped, Server};
use tokio::net::TcpStream;

use crate::aws_rules::AwsRules;

/// What faults to inject, and how often: this proxy's shorthand of a
/// [`qhub_emulator_kit::FaultPlan`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FaultPlan {
    /// Seed of the generator drawing the faults; the same seed gives the same draws.
    pub seed: u64,
    /// Share of all requests answered with throttling, in `0.0..=1.0`.
    pub throttle: f64,
    /// Share of all requests answered with a 503, in `0.0..=1.0`.
    pub server_error: f64,
    /// Share of the *mutating* requests left after throttling and 5xx whose answer is lost:
    /// forwarded, carried out, and answered with a 503.
    pub lost: f64,
}

impl FaultPlan {
    /// No faults: every request is forwarded and answered truthfully.
    pub fn none() -> Self {
        Self {
            seed: 1,
            throttle: 0.0,
            server_error: 0.0,
            lost: 0.0,
        }
    }
}

impl Default for FaultPlan {
    fn default() -> Self {
        Self::none()
    }
}

impl From<FaultPlan> for qhub_emulator_kit::FaultPlan {
    fn from(p: FaultPlan) -> Self {
        Self {
            seed: p.seed,
            throttle_rate: p.throttle,
            error_rate: p.server_error,
            lost_rate: p.lost,
            ..Self::default()
        }
    }
}

/// The AWS service a request is for, from its SigV4 credential scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Service {
    /// EC2 (`ec2`), the ec2Query protocol.
    Ec2,
    /// IAM (`iam`), the awsQuery protocol.
    Iam,
    /// STS (`sts`), the awsQuery protocol.
    Sts,
    /// EKS (`eks`), the restJson1 protocol.
    Eks,
    /// EFS (`elasticfilesystem`), the restJson1 protocol.
    Efs,
    /// Any other signing name; treated as restJson1.
    Other(String),
}

/// The wire protocol of a service, which decides how errors are shaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// EC2's query protocol: form-encoded `Action=` bodies, `<Response><Errors>` errors.
    Ec2Query,
    /// The AWS query protocol (IAM, STS): `<ErrorResponse>` errors.
    AwsQuery,
    /// REST with JSON bodies; the error code travels in `x-amzn-ErrorType`.
    RestJson1,
}

impl Service {
    /// The service named by a SigV4 `Authorization` header's credential scope
    /// (`Credential=AKID/DATE/REGION/SERVICE/aws4_request`), or `None` when the header is not
    /// SigV4.
    pub fn from_authorization(header: &str) -> Option<Self> {
        let scope = header.split("Credential=").nth(1)?;
        let scope = scope.split([',', ' ']).next()?;
        let parts: Vec<&str> = scope.split('/').collect();
        // AKID / DATE / REGION / SERVICE / aws4_request
        if parts.len() != 5 || parts[4] != "aws4_request" {
            return None;
        }
        Some(match parts[3] {
            "ec2" => Self::Ec2,
            "iam" => Self::Iam,
            "sts" => Self::Sts,
            "eks" => Self::Eks,
            "elasticfilesystem" => Self::Efs,
            other => Self::Other(other.to_string()),
        })
    }

    /// The service's protocol.
    pub fn protocol(&self) -> Protocol {
        match self {
            Self::Ec2 => Protocol::Ec2Query,
            Self::Iam | Self::Sts => Protocol::AwsQuery,
            Self::Eks | Self::Efs | Self::Other(_) => Protocol::RestJson1,
        }
    }
}

/// The operation a request calls: the `Action=` of a query-protocol body, or for REST
/// services the operation name its method and path map to (`CreateCluster`,
/// `DeleteMountTarget`), falling back to `METHOD /path` with identifiers replaced by `*`.
pub fn operation(service: &Service, method: &Method, path: &str, body: &[u8]) -> String {
    match service.protocol() {
        Protocol::Ec2Query | Protocol::AwsQuery => query_action(body)
            .or_else(|| query_action(path.split_once('?').map_or("", |(_, q)| q).as_bytes()))
            .unwrap_or_else(|| format!("{method} {path}")),
        Protocol::RestJson1 => rest_operation(service, method, path),
    }
}

/// The `Action` parameter of a form-encoded query string or body.
fn query_action(form: &[u8]) -> Option<String> {
    let form = std::str::from_utf8(form).ok()?;
    form.split('&')
        .find_map(|kv| kv.strip_prefix("Action="))
        .map(str::to_string)
}

fn rest_operation(service: &Service, method: &Method, path: &str) -> String {
    let path = path.split('?').next().unwrap_or("");
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let m = method.as_str();
    let named = match (service, m, segs.as_slice()) {
        (Service::Eks, "POST", ["clusters"]) => Some("CreateCluster"),
        (Service::Eks, "GET", ["clusters"]) => Some("ListClusters"),
        (Service::Eks, "GET", ["clusters", _]) => Some("DescribeCluster"),
        (Service::Eks, "DELETE", ["clusters", _]) => Some("DeleteCluster"),
        (Service::Eks, "POST", ["clusters", _, "update-config"]) => Some("UpdateClusterConfig"),
        (Service::Eks, "POST", ["clusters", _, "updates"]) => Some("UpdateClusterVersion"),
        (Service::Eks, "POST", ["clusters", _, "node-groups"]) => Some("CreateNodegroup"),
        (Service::Eks, "GET", ["clusters", _, "node-groups"]) => Some("ListNodegroups"),
        (Service::Eks, "GET", ["clusters", _, "node-groups", _]) => Some("DescribeNodegroup"),
        (Service::Eks, "DELETE", ["clusters", _, "node-groups", _]) => Some("DeleteNodegroup"),
        (Service::Eks, "POST", ["clusters", _, "node-groups", _, "update-config"]) => {
            Some("UpdateNodegroupConfig")
        }
        (Service::Eks, "POST", ["clusters", _, "node-groups", _, "update-version"]) => {
            Some("UpdateNodegroupVersion")
        }
        (Service::Eks, "POST", ["clusters", _, "addons"]) => Some("CreateAddon"),
        (Service::Eks, "GET", ["clusters", _, "addons"]) => Some("ListAddons"),
        (Service::Eks, "GET", ["clusters", _, "addons", _]) => Some("DescribeAddon"),
        (Service::Eks, "DELETE", ["clusters", _, "addons", _]) => Some("DeleteAddon"),
        (Service::Eks, "GET", ["addons", "supported-versions"]) => Some("DescribeAddonVersions"),
        (Service::Eks, "POST", ["clusters", _, "pod-identity-associations"]) => {
            Some("CreatePodIdentityAssociation")
        }
        (Service::Eks, "GET", ["clusters", _, "pod-identity-associations"]) => {
            Some("ListPodIdentityAssociations")
        }
        (Service::Eks, "GET", ["clusters", _, "pod-identity-associations", _]) => {
            Some("DescribePodIdentityAssociation")
        }
        (Service::Eks, "POST", ["clusters", _, "pod-identity-associations", _]) => {
            Some("UpdatePodIdentityAssociation")
        }
        (Service::Eks, "DELETE", ["clusters", _, "pod-identity-associations", _]) => {
            Some("DeletePodIdentityAssociation")
        }
        (Service::Eks, "POST", ["tags", ..]) => Some("TagResource"),
        (Service::Eks, "DELETE", ["tags", ..]) => Some("UntagResource"),
        (Service::Efs, "POST", [_, "file-systems"]) => Some("CreateFileSystem"),
        (Service::Efs, "GET", [_, "file-systems", ..]) => Some("DescribeFileSystems"),
        (Service::Efs, "PUT", [_, "file-systems", _]) => Some("UpdateFileSystem"),
        (Service::Efs, "DELETE", [_, "file-systems", _]) => Some("DeleteFileSystem"),
        (Service::Efs, "POST", [_, "mount-targets"]) => Some("CreateMountTarget"),
        (Service::Efs, "GET", [_, "mount-targets", ..]) => Some("DescribeMountTargets"),
        (Service::Efs, "DELETE", [_, "mount-targets", _]) => Some("DeleteMountTarget"),
        (Service::Efs, "POST", [_, "resource-tags", _]) => Some("TagResource"),
        (Service::Efs, "DELETE", [_, "resource-tags", _]) => Some("UntagResource"),
        (Service::Eks, _, _) => crate::eks_access::operation(m, &segs),
        _ => None,
    };
    match named {
        Some(n) => n.to_string(),
        None => {
            // Keep the literal words of the path, hide the identifiers (names look like
            // words, so only the words of the EKS and EFS APIs are kept).
            const WORDS: &[&str] = &[
                "2015-02-01",
                "access-points",
                "addons",
                "backup-policy",
                "clusters",
                "file-systems",
                "lifecycle-configuration",
                "mount-targets",
                "node-groups",
                "policy",
                "resource-tags",
                "security-groups",
                "tags",
                "update-config",
                "update-version",
                "updates",
            ];
            let shape: Vec<&str> = segs
                .iter()
                .map(|s| if WORDS.contains(s) { *s } else { "*" })
                .collect();
            format!("{m} /{}", shape.join("/"))
        }
    }
}

/// True when the request changes something: for the query protocols an `Action` that is not
/// a `Describe*`, `List*` or `Get*`; for REST services any method but `GET`/`HEAD`.
pub fn is_mutating(service: &Service, method: &Method, operation: &str) -> bool {
    match service.protocol() {
        Protocol::Ec2Query | Protocol::AwsQuery => !["Describe", "List", "Get"]
            .iter()
            .any(|p| operation.starts_with(p)),
        Protocol::RestJson1 => method != Method::GET && method != Method::HEAD,
    }
}

/// How EKS clusters behave behind the proxy, beyond what moto does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EksLifecycle {
    /// A created cluster is `CREATING` this long (DescribeCluster says so; DeleteCluster and
    /// CreateNodegroup get `ResourceInUseException`).
    pub creating_for: std::time::Duration,
    /// The next created cluster is `FAILED` until it is deleted.
    pub fail_next_cluster: bool,
}

/// A cluster created through the proxy.
#[derive(Debug, Clone, Copy)]
struct ClusterLife {
    created: std::time::Instant,
    creating_for: std::time::Duration,
    failed: bool,
}

impl ClusterLife {
    fn status(&self) -> &'static str {
        if self.failed {
            "FAILED"
        } else if self.created.elapsed() < self.creating_for {
            "CREATING"
        } else {
            "ACTIVE"
        }
    }
}

/// What the proxy has seen and done so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FaultCounts {
    /// Requests received.
    pub seen: u64,
    /// Requests forwarded to the upstream (lost responses included).
    pub forwarded: u64,
    /// Requests answered with throttling.
    pub throttled: u64,
    /// Requests answered with a 5xx without forwarding.
    pub server_errors: u64,
    /// Mutating requests forwarded whose answer was replaced by a 503.
    pub lost: u64,
    /// Lost responses by operation (`CreateVpc`, `CreateNodegroup`).
    pub lost_by_operation: BTreeMap<String, u64>,
    /// Requests by operation, faulted or not.
    pub by_operation: BTreeMap<String, u64>,
}

impl FaultCounts {
    /// Faults injected in all: throttling, 5xx and lost responses.
    pub fn injected(&self) -> u64 {
        self.throttled + self.server_errors + self.lost
    }
}

#[derive(Debug)]
struct State {
    plan: FaultPlan,
    faults: qhub_emulator_kit::Faults,
    counts: FaultCounts,
    eks: EksLifecycle,
    clusters: BTreeMap<String, ClusterLife>,
    rules: AwsRules,
    quotas: crate::service_quotas::ServiceQuotas,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    None,
    Throttle,
    ServerError,
    Status(u16),
    Reset,
    Lost,
}

/// The fault-injecting proxy; it stops accepting connections when dropped.
#[derive(Debug)]
pub struct FaultProxy {
    state: Arc<Mutex<State>>,
    server: Server,
}

impl FaultProxy {
    /// Starts the proxy on `127.0.0.1:0` in front of `upstream`, on the current tokio runtime.
    ///
    /// # Panics
    /// When `upstream` is not a loopback address.
    pub async fn start(upstream: SocketAddr, plan: FaultPlan) -> std::io::Result<Self> {
        assert!(
            upstream.ip().is_loopback(),
            "the fault proxy only forwards to loopback, not {upstream}"
        );
        let state = Arc::new(Mutex::new(State {
            plan,
            faults: qhub_emulator_kit::Faults::new(plan.into()),
            counts: FaultCounts::default(),
            eks: EksLifecycle::default(),
            clusters: BTreeMap::new(),
            rules: AwsRules::default(),
            quotas: crate::service_quotas::ServiceQuotas::default(),
        }));
        let shared = state.clone();
        let server = Server::start("fault proxy", 0, move |req| {
            let state = shared.clone();
            async move { handle(req, upstream, &state).await }
        })
        .await?;
        Ok(Self { state, server })
    }

    /// Starts the proxy in front of a [`Moto`](crate::moto::Moto).
    pub async fn in_front_of(moto: &crate::moto::Moto, plan: FaultPlan) -> std::io::Result<Self> {
        Self::start(SocketAddr::from(([127, 0, 0, 1], moto.port())), plan).await
    }

    /// The address the proxy listens on.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// `http://127.0.0.1:PORT`, the endpoint to give the client under test.
    pub fn endpoint(&self) -> String {
        self.server.url()
    }

    /// Switches to another plan (and reseeds the generator from its seed); counts are kept.
    pub fn set_plan(&self, plan: FaultPlan) {
        let mut s = self.state.lock().unwrap();
        s.plan = plan;
        s.faults.set(plan.into());
    }

    /// Puts the shared `plan` in force (rules name operations as [`FaultCounts::by_operation`]
    /// does: `CreateVpc`, `DescribeCluster`); [`Self::plan`] then still shows the last
    /// shorthand set. A ruled 429 is the protocol's throttling, another status its error with
    /// that status; a mutation's lost or "died" answer is a 503 after it was carried out.
    pub fn set_fault_plan(&self, plan: qhub_emulator_kit::FaultPlan) {
        self.state.lock().unwrap().faults.set(plan);
    }

    /// The plan in force.
    pub fn plan(&self) -> FaultPlan {
        self.state.lock().unwrap().plan
    }

    /// What the proxy has seen and injected so far.
    pub fn counts(&self) -> FaultCounts {
        self.state.lock().unwrap().counts.clone()
    }

    /// Forgets the counts.
    pub fn reset_counts(&self) {
        self.state.lock().unwrap().counts = FaultCounts::default();
    }

    /// Sets how EKS clusters created from now on behave ([`EksLifecycle`]); clusters already
    /// tracked keep theirs.
    pub fn set_eks(&self, eks: EksLifecycle) {
        self.state.lock().unwrap().eks = eks;
    }

    /// The EKS clusters created through the proxy (once the upstream has carried the create
    /// out) and not deleted since.
    pub fn clusters(&self) -> Vec<String> {
        self.state
            .lock()
            .unwrap()
            .clusters
            .keys()
            .cloned()
            .collect()
    }

    /// Forgets the clusters it tracks, and what its rules remember (after the upstream was
    /// reset).
    pub fn forget_clusters(&self) {
        let mut s = self.state.lock().unwrap();
        s.clusters.clear();
        s.rules.clear();
    }

    /// What the rules layer remembers of the clusters and node groups created through it.
    pub fn rules(&self) -> AwsRules {
        self.state.lock().unwrap().rules.clone()
    }

    /// Changes what the rules layer remembers, as something outside qhub would change the
    /// cloud (a cluster made by an older tool, an entry another team added).
    pub fn with_rules<T>(&self, f: impl FnOnce(&mut AwsRules) -> T) -> T {
        f(&mut self.state.lock().unwrap().rules)
    }

    /// Makes Service Quotas answer `value` for EC2 quota `code` (`L-DB2E81BA`: G and VT
    /// vCPUs) from now on.
    pub fn set_quota(&self, code: &str, value: f64) {
        self.state.lock().unwrap().quotas.set(code, value);
    }
}

async fn handle(
    req: Request<Incoming>,
    upstream: SocketAddr,
    state: &Mutex<State>,
) -> Result<Response<Full<Bytes>>, Dropped> {
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return Ok(plain(
                StatusCode::BAD_REQUEST,
                format!("reading the request: {e}"),
            ));
        }
    };
    let service = parts
        .headers
        .get(hyper::header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(Service::from_authorization)
        .unwrap_or_else(|| Service::Other(String::new()));
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    // Service Quotas speaks awsJson1.1: the operation is in `X-Amz-Target`.
    let target = (service == Service::Other("servicequotas".into()))
        .then(|| parts.headers.get("x-amz-target"))
        .flatten()
        .and_then(|h| h.to_str().ok())
        .map(str::to_string);
    let op = match &target {
        Some(t) => t
            .strip_prefix(crate::service_quotas::TARGET_PREFIX)
            .unwrap_or(t)
            .to_string(),
        None => operation(&service, &parts.method, &path, &body),
    };
    let mutating = is_mutating(&service, &parts.method, &op);

    let (fault, delay) = {
        let mut s = state.lock().unwrap();
        s.counts.seen += 1;
        *s.counts.by_operation.entry(op.clone()).or_insert(0) += 1;
        let (before, delay) = s.faults.before(&op);
        let fault = match before {
            Before::Throttle | Before::Status(429) => Fault::Throttle,
            Before::ServerError | Before::Status(503) => Fault::ServerError,
            Before::Status(code) => Fault::Status(code),
            Before::Reset => Fault::Reset,
            Before::Serve if mutating && s.faults.after_mutation() != After::Deliver => Fault::Lost,
            Before::Serve => Fault::None,
        };
        match fault {
            Fault::Throttle => s.counts.throttled += 1,
            Fault::ServerError | Fault::Status(_) => s.counts.server_errors += 1,
            Fault::Lost | Fault::None => s.counts.forwarded += 1,
            Fault::Reset => {}
        }
        (fault, delay)
    };
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }

    match fault {
        Fault::Throttle => return Ok(throttling(service.protocol())),
        Fault::ServerError => return Ok(unavailable(service.protocol())),
        Fault::Status(code) => {
            return Ok(error(
                service.protocol(),
                StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                "InternalFailure",
                "InternalError",
                "Injected by qhub fault proxy",
            ));
        }
        Fault::Reset => return Err(Dropped),
        Fault::Lost | Fault::None => {}
    }
    // EKS refuses to delete a cluster that is still being created, or to add node groups to it.
    let cluster = eks_cluster_name(&service, &path);
    if matches!(op.as_str(), "DeleteCluster" | "CreateNodegroup")
        && let Some(name) = &cluster
    {
        let status = state
            .lock()
            .unwrap()
            .clusters
            .get(name)
            .map(ClusterLife::status);
        if status == Some("CREATING") {
            return Ok(error(
                Protocol::RestJson1,
                StatusCode::CONFLICT,
                "ResourceInUseException",
                "",
                &format!("Cluster {name} is currently being created"),
            ));
        }
    }
    // Who creates a cluster: EKS gives them its bootstrap access entry.
    if service == Service::Eks
        && op == "CreateCluster"
        && let Some((name, caller)) = crate::eks_access::creator(
            upstream,
            parts
                .headers
                .get(hyper::header::AUTHORIZATION)
                .and_then(|h| h.to_str().ok()),
            &body,
        )
        .await
    {
        state.lock().unwrap().rules.access.creating(&name, &caller);
    }
    if let Some(target) = &target {
        let served = state.lock().unwrap().quotas.serve(target, &body);
        match served {
            Some(Ok(doc)) => {
                let mut r = plain(StatusCode::OK, doc.to_string());
                r.headers_mut().insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static("application/x-amz-json-1.1"),
                );
                return Ok(r);
            }
            Some(Err(r)) => {
                return Ok(error(
                    Protocol::RestJson1,
                    StatusCode::from_u16(r.status).unwrap_or(StatusCode::BAD_REQUEST),
                    r.code,
                    "",
                    &r.message,
                ));
            }
            None => {}
        }
    }
    // What real AWS refuses and moto would carry out, and what moto does not implement.
    if service == Service::Eks {
        let ruled = {
            let mut s = state.lock().unwrap();
            match s.rules.refuse_eks(&op, &path, &body) {
                Some(r) => Some(Err(r)),
                None => s.rules.serve_eks(&op, &path, &body),
            }
        };
        match ruled {
            Some(Err(r)) => {
                return Ok(error(
                    Protocol::RestJson1,
                    StatusCode::from_u16(r.status).unwrap_or(StatusCode::BAD_REQUEST),
                    r.code,
                    "",
                    &r.message,
                ));
            }
            Some(Ok(_)) if fault == Fault::Lost => {
                // Carried out, the answer lost.
                let mut s = state.lock().unwrap();
                s.counts.lost += 1;
                *s.counts.lost_by_operation.entry(op).or_insert(0) += 1;
                return Ok(unavailable(service.protocol()));
            }
            Some(Ok(doc)) => {
                let mut r = plain(StatusCode::OK, doc.to_string());
                r.headers_mut()
                    .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                return Ok(r);
            }
            None => {}
        }
    }
    let request_body = body.clone();
    let answer = forward(upstream, Request::from_parts(parts, Full::new(body))).await;
    let answer = match answer {
        // The roles' trust policies, for Pod Identity's check.
        Ok(a) if a.status().is_success() && service == Service::Iam => {
            state
                .lock()
                .unwrap()
                .rules
                .addons
                .after_iam(&op, &request_body);
            Ok(a)
        }
        Ok(a) if a.status().is_success() && service == Service::Eks => {
            match eks_rules(state, &op, &path, &request_body, a).await {
                Ok(a) => eks_lifecycle(state, &op, cluster.as_deref(), &request_body, a).await,
                Err(e) => Err(e),
            }
        }
        other => other,
    };
    if fault == Fault::Lost {
        // Only count it as lost once the upstream has carried the request out: that is the
        // point of this fault.
        let mut s = state.lock().unwrap();
        s.counts.lost += 1;
        *s.counts.lost_by_operation.entry(op).or_insert(0) += 1;
        drop(s);
        return Ok(unavailable(service.protocol()));
    }
    Ok(answer.unwrap_or_else(|e| plain(StatusCode::BAD_GATEWAY, format!("upstream: {e}"))))
}

/// The cluster name of an EKS request path (`/clusters/NAME/...`).
fn eks_cluster_name(service: &Service, path: &str) -> Option<String> {
    if *service != Service::Eks {
        return None;
    }
    let path = path.split('?').next().unwrap_or("");
    let mut segs = path.split('/').filter(|s| !s.is_empty());
    (segs.next() == Some("clusters"))
        .then(|| segs.next().map(str::to_string))
        .flatten()
}

/// Lets the rules layer record a successful EKS answer and add what real EKS answers.
async fn eks_rules(
    state: &Mutex<State>,
    op: &str,
    path: &str,
    request_body: &[u8],
    answer: Response<Full<Bytes>>,
) -> Result<Response<Full<Bytes>>, Box<dyn std::error::Error + Send + Sync>> {
    let (parts, body) = answer.into_parts();
    let body = body.collect().await?.to_bytes();
    let Ok(mut doc) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return Ok(Response::from_parts(parts, Full::new(body)));
    };
    state
        .lock()
        .unwrap()
        .rules
        .after_eks(op, path, request_body, &mut doc);
    Ok(Response::from_parts(
        parts,
        Full::new(Bytes::from(serde_json::to_vec(&doc)?)),
    ))
}

/// Tracks clusters created through the proxy and rewrites DescribeCluster answers to their
/// [`EksLifecycle`] status.
async fn eks_lifecycle(
    state: &Mutex<State>,
    op: &str,
    cluster: Option<&str>,
    request_body: &[u8],
    answer: Response<Full<Bytes>>,
) -> Result<Response<Full<Bytes>>, Box<dyn std::error::Error + Send + Sync>> {
    match op {
        "CreateCluster" => {
            let name = serde_json::from_slice::<serde_json::Value>(request_body)
                .ok()
                .and_then(|b| b.get("name").and_then(|n| n.as_str()).map(str::to_string));
            if let Some(name) = name {
                let mut s = state.lock().unwrap();
                let failed = std::mem::take(&mut s.eks.fail_next_cluster);
                let life = ClusterLife {
                    created: std::time::Instant::now(),
                    creating_for: s.eks.creating_for,
                    failed,
                };
                s.clusters.insert(name, life);
            }
            Ok(answer)
        }
        "DeleteCluster" => {
            if let Some(name) = cluster {
                state.lock().unwrap().clusters.remove(name);
            }
            Ok(answer)
        }
        "DescribeCluster" => {
            let status = cluster.and_then(|name| {
                state
                    .lock()
                    .unwrap()
                    .clusters
                    .get(name)
                    .map(ClusterLife::status)
            });
            let Some(status) = status.filter(|s| *s != "ACTIVE") else {
                return Ok(answer);
            };
            let (parts, body) = answer.into_parts();
            let body = body.collect().await?.to_bytes();
            let mut doc: serde_json::Value = serde_json::from_slice(&body)?;
            doc["cluster"]["status"] = status.into();
            Ok(Response::from_parts(
                parts,
                Full::new(Bytes::from(serde_json::to_vec(&doc)?)),
            ))
        }
        _ => Ok(answer),
    }
}

/// Sends one request over a fresh loopback connection and reads the whole answer.
async fn forward(
    upstream: SocketAddr,
    req: Request<Full<Bytes>>,
) -> Result<Response<Full<Bytes>>, Box<dyn std::error::Error + Send + Sync>> {
    let stream = TcpStream::connect(upstream).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    let driver = tokio::spawn(conn);
    let res = sender.send_request(req).await?;
    let (mut parts, body) = res.into_parts();
    let body = body.collect().await?.to_bytes();
    drop(sender);
    let _ = driver.await;
    // The body is sent whole, with its own length.
    for h in [TRANSFER_ENCODING, CONNECTION, CONTENT_LENGTH] {
        parts.headers.remove(h);
    }
    Ok(Response::from_parts(parts, Full::new(body)))
}

fn plain(status: StatusCode, text: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(text)));
    *r.status_mut() = status;
    r
}

fn error(
    protocol: Protocol,
    status: StatusCode,
    code: &str,
    ec2_code: &str,
    message: &str,
) -> Response<Full<Bytes>> {
    let (body, content_type) = match protocol {
        Protocol::Ec2Query => (
            format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{ec2_code}</Code><Message>{message}</Message></Error></Errors><RequestID>qhub-fault-proxy</RequestID></Response>"
            ),
            "text/xml",
        ),
        Protocol::AwsQuery => (
            format!(
                "<ErrorResponse><Error><Type>{}</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>qhub-fault-proxy</RequestId></ErrorResponse>",
                if status.is_server_error() {
                    "Receiver"
                } else {
                    "Sender"
                }
            ),
            "text/xml",
        ),
        Protocol::RestJson1 => (format!("{{\"message\":\"{message}\"}}"), "application/json"),
    };
    let mut r = plain(status, body);
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    if protocol == Protocol::RestJson1
        && let Ok(v) = HeaderValue::from_str(code)
    {
        r.headers_mut().insert("x-amzn-ErrorType", v);
    }
    r
}

/// The throttling error of each protocol, as AWS sends it.
fn throttling(protocol: Protocol) -> Response<Full<Bytes>> {
    match protocol {
        Protocol::RestJson1 => error(
            protocol,
            StatusCode::TOO_MANY_REQUESTS,
            "ThrottlingException",
            "",
            "Rate exceeded (injected by qhub fault proxy)",
        ),
        _ => error(
            protocol,
            StatusCode::BAD_REQUEST,
            "Throttling",
            "RequestLimitExceeded",
            "Rate exceeded (injected by qhub fault proxy)",
        ),
    }
}

/// A 503 with each protocol's "unavailable" error; EC2 calls it `Unavailable` (EC2 API
/// reference, "Error codes": server errors).
fn unavailable(protocol: Protocol) -> Response<Full<Bytes>> {
    error(
        protocol,
        StatusCode::SERVICE_UNAVAILABLE,
        if protocol == Protocol::RestJson1 {
            "ServiceUnavailableException"
        } else {
            "ServiceUnavailable"
        },
        "Unavailable",
        "Service unavailable (injected by qhub fault proxy)",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const AUTH: &str = "AWS4-HMAC-SHA256 Credential=testing/20240101/us-west-2/SERVICE/aws4_request, SignedHeaders=host;x-amz-date, Signature=abc";

    fn svc(name: &str) -> Option<Service> {
        Service::from_authorization(&AUTH.replace("SERVICE", name))
    }

    #[test]
    fn service_comes_from_the_credential_scope() {
        assert_eq!(svc("ec2"), Some(Service::Ec2));
        assert_eq!(svc("iam"), Some(Service::Iam));
        assert_eq!(svc("sts"), Some(Service::Sts));
        assert_eq!(svc("eks"), Some(Service::Eks));
        assert_eq!(svc("elasticfilesystem"), Some(Service::Efs));
        assert_eq!(svc("s3"), Some(Service::Other("s3".into())));
        assert_eq!(Service::from_authorization("Bearer x"), None);
        assert_eq!(
            Service::from_authorization("AWS4-HMAC-SHA256 Credential=a/b/c, Signature=x"),
            None
        );
        assert_eq!(Service::Ec2.protocol(), Protocol::Ec2Query);
        assert_eq!(Service::Sts.protocol(), Protocol::AwsQuery);
        assert_eq!(Service::Efs.protocol(), Protocol::RestJson1);
    }

    #[test]
    fn query_actions_and_what_mutates() {
        let post = Method::POST;
        let op = |s: &Service, body: &str| operation(s, &post, "/", body.as_bytes());
        let create = op(
            &Service::Ec2,
            "Action=CreateVpc&Version=2016-11-15&CidrBlock=10.10.0.0%2F16",
        );
        assert_eq!(create, "CreateVpc");
        assert!(is_mutating(&Service::Ec2, &post, &create));
        let describe = op(&Service::Ec2, "Version=2016-11-15&Action=DescribeVpcs");
        assert_eq!(describe, "DescribeVpcs");
        assert!(!is_mutating(&Service::Ec2, &post, &describe));
        for read in ["ListRoles", "GetRole", "GetCallerIdentity"] {
            assert!(!is_mutating(&Service::Iam, &post, read), "{read}");
        }
        for write in ["CreateRole", "AttachRolePolicy", "TagRole", "DeleteRole"] {
            assert!(is_mutating(&Service::Iam, &post, write), "{write}");
        }
        // Action in the query string (a GET query request).
        assert_eq!(
            operation(
                &Service::Sts,
                &Method::GET,
                "/?Action=GetCallerIdentity",
                b""
            ),
            "GetCallerIdentity"
        );
    }

    #[test]
    fn rest_operations_and_what_mutates() {
        let op = |s: &Service, m: Method, p: &str| operation(s, &m, p, b"{}");
        assert_eq!(
            op(&Service::Eks, Method::POST, "/clusters"),
            "CreateCluster"
        );
        assert_eq!(
            op(&Service::Eks, Method::POST, "/clusters/x-dev/node-groups"),
            "CreateNodegroup"
        );
        assert_eq!(
            op(
                &Service::Eks,
                Method::DELETE,
                "/clusters/x-dev/node-groups/x-dev-user"
            ),
            "DeleteNodegroup"
        );
        assert_eq!(
            op(&Service::Eks, Method::GET, "/clusters?maxResults=10"),
            "ListClusters"
        );
        assert_eq!(
            op(&Service::Efs, Method::POST, "/2015-02-01/mount-targets"),
            "CreateMountTarget"
        );
        assert_eq!(
            op(
                &Service::Efs,
                Method::DELETE,
                "/2015-02-01/file-systems/fs-123"
            ),
            "DeleteFileSystem"
        );
        assert_eq!(
            op(&Service::Eks, Method::PUT, "/clusters/x-dev/odd/thing"),
            "PUT /clusters/*/*/*"
        );
        assert!(is_mutating(&Service::Eks, &Method::POST, "CreateCluster"));
        assert!(is_mutating(
            &Service::Efs,
            &Method::DELETE,
            "DeleteFileSystem"
        ));
        assert!(is_mutating(&Service::Efs, &Method::PUT, "UpdateFileSystem"));
        assert!(!is_mutating(&Service::Eks, &Method::GET, "DescribeCluster"));
    }

    #[test]
    fn error_shapes_carry_the_codes_the_sdk_classifies() {
        let body = |r: Response<Full<Bytes>>| {
            let status = r.status().as_u16();
            let kind = r
                .headers()
                .get("x-amzn-ErrorType")
                .map(|v| v.to_str().unwrap().to_string());
            (status, kind)
        };
        assert_eq!(body(throttling(Protocol::Ec2Query)), (400, None));
        assert_eq!(
            body(throttling(Protocol::RestJson1)),
            (429, Some("ThrottlingException".into()))
        );
        assert_eq!(
            body(unavailable(Protocol::RestJson1)),
            (503, Some("ServiceUnavailableException".into()))
        );
    }
}
