//! "Deploy succeeded" means the front door can answer.
//!
//! After the Kubernetes stage applies, every URL the platform lists ([`endpoints::urls`]) must
//! have, in the cluster:
//! - a **route**: an IngressRoute whose rule matches the URL's host and path;
//! - a **Service** for each backend the route names;
//! - **endpoints**: a ready address in the Service's EndpointSlices (what Traefik sends
//!   requests to; none, and Traefik answers 503);
//!
//! and the ingress controller's service account must be allowed everything its providers
//! watch (**RBAC**, [`rbac::TRAEFIK`], asked through `SubjectAccessReview`s: Traefik waits for
//! every watch to sync before it loads any route, so one missing permission is a 404 for
//! every URL, traefik/traefik#11739).
//!
//! Then, on a cluster whose load balancer can be reached, each listed service's health check
//! runs through the load balancer under a deadline ([`crate::kubernetes::health::run`]); an
//! unhealthy one is [`Missing::Unhealthy`]. The sandbox's load balancer is simulated: the
//! checks are skipped there, and the check says so.
//!
//! A TCP listing (jupyterhub-ssh's banner) goes through an `IngressRouteTCP`, not an
//! IngressRoute: only its health check looks at it.

use kube::api::{Api, DynamicObject, ListParams, PostParams};
use kube::core::GroupVersionKind;
use kube::discovery::ApiResource;
use serde_json::Value as Json;

use super::KubeError;
use super::apply::read;
use super::components::ingress;
use super::components::rbac::{self, Reach};
use super::endpoints::{self, ServiceUrl};
use crate::config::Config;

/// The annotation by which the in-memory API's simulated service controller marks a
/// LoadBalancer Service whose address nothing listens at (the sandbox, and tests over
/// loopback): the network probe is skipped for it, saying so.
pub const SIMULATED_LOAD_BALANCER: &str = "sandbox.qhub.dev/simulated-load-balancer";

/// What is missing in front of a URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Missing {
    /// No IngressRoute matches the URL.
    Route {
        /// The URL.
        url: String,
    },
    /// A route's backend Service does not exist.
    Service {
        /// The URL.
        url: String,
        /// The route.
        route: String,
        /// `namespace/name` of the Service.
        service: String,
    },
    /// A route's backend Service has no ready endpoint.
    Endpoints {
        /// The URL.
        url: String,
        /// `namespace/name` of the Service.
        service: String,
    },
    /// The ingress controller's service account lacks a permission its providers need.
    Rbac {
        /// The service account, `namespace/name`.
        account: String,
        /// `verb group/resource` (and where), each denied.
        denied: Vec<String>,
    },
    /// A listed service did not answer as a healthy one does through the load balancer by
    /// the deadline ([`crate::kubernetes::health`]).
    Unhealthy {
        /// The component that declared the check.
        component: String,
        /// The URL.
        url: String,
        /// What a healthy answer is.
        expected: String,
        /// The last answer or error.
        answered: String,
    },
}

impl std::fmt::Display for Missing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Route { url } => write!(
                f,
                "route: no IngressRoute matches {url} (its host and path); nothing would answer it"
            ),
            Self::Service {
                url,
                route,
                service,
            } => write!(
                f,
                "Service: the route {route} for {url} sends to Service {service}, which does not exist"
            ),
            Self::Endpoints { url, service } => write!(
                f,
                "endpoints: Service {service} behind {url} has no ready endpoints (no ready pod \
                 matches its selector): the ingress would answer 503"
            ),
            Self::Rbac { account, denied } => write!(
                f,
                "RBAC: the ingress controller's service account {account} may not {}: Traefik \
                 waits for all its watches before it loads any route, so every URL would answer \
                 404",
                denied.join(", ")
            ),
            Self::Unhealthy {
                component,
                url,
                expected,
                answered,
            } => write!(
                f,
                "health: {component} at {url} is not healthy through the load balancer: \
                 expected {expected}; got {answered}"
            ),
        }
    }
}

/// The check's outcome: what was checked, and notes for the user (what was skipped, and why).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Checked {
    /// URLs whose route, Service and endpoints were found.
    pub urls: usize,
    /// Permissions of the ingress controller checked.
    pub permissions: usize,
    /// Notes (a probe skipped, and why).
    pub notes: Vec<String>,
}

/// The error of a failed check: every missing piece, and what was checked.
#[derive(Debug)]
pub enum FrontDoorError {
    /// Pieces are missing.
    Missing(Vec<Missing>),
    /// The cluster could not be read.
    Kube(KubeError),
}

impl std::fmt::Display for FrontDoorError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Missing(m) => {
                let lines: Vec<String> = m.iter().map(ToString::to_string).collect();
                write!(
                    f,
                    "the platform was applied but its front door cannot answer: {}",
                    lines.join("; ")
                )
            }
            Self::Kube(e) => write!(f, "checking the front door: {e}"),
        }
    }
}

impl std::error::Error for FrontDoorError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Kube(e) => Some(e),
            Self::Missing(_) => None,
        }
    }
}

impl From<KubeError> for FrontDoorError {
    fn from(e: KubeError) -> Self {
        Self::Kube(e)
    }
}

/// The host and path of a URL (`https://a.example.com/auth/` → (`a.example.com`, `/auth/`)).
fn host_path(url: &str) -> (String, String) {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    match rest.find('/') {
        Some(i) => (rest[..i].to_string(), rest[i..].to_string()),
        None => (rest.to_string(), "/".to_string()),
    }
}

/// The arguments of every `Name(`...`)` matcher in a Traefik rule.
fn matcher_args(rule: &str, name: &str) -> Vec<String> {
    let mut out = Vec::new();
    let needle = format!("{name}(");
    let mut rest = rule;
    while let Some(i) = rest.find(&needle) {
        // `PathPrefix(` also contains `Path(`'s tail only when preceded by a letter.
        let before = rest[..i].chars().last();
        let after = &rest[i + needle.len()..];
        let Some(end) = after.find(')') else { break };
        if !before.is_some_and(char::is_alphanumeric) {
            out.extend(
                after[..end]
                    .split(',')
                    .map(|a| a.trim().trim_matches('`').trim_matches('"').to_string()),
            );
        }
        rest = &after[end..];
    }
    out
}

/// How well a Traefik rule matches `host` and `path` (None: it does not; longer: more
/// specific). Understands `Host`, `PathPrefix` and `Path` joined by `&&`, as our routes are.
fn rule_matches(rule: &str, host: &str, path: &str) -> Option<usize> {
    let hosts = matcher_args(rule, "Host");
    if !hosts.is_empty() && !hosts.iter().any(|h| h.eq_ignore_ascii_case(host)) {
        return None;
    }
    let prefixes = matcher_args(rule, "PathPrefix");
    let exact = matcher_args(rule, "Path");
    if let Some(p) = exact.iter().find(|p| *p == path) {
        return Some(p.len() + 1);
    }
    if !exact.is_empty() && prefixes.is_empty() {
        return None;
    }
    if prefixes.is_empty() {
        return Some(0);
    }
    prefixes
        .iter()
        .filter(|p| path.starts_with(p.as_str()))
        .map(String::len)
        .max()
}

fn dynamic(group: &str, version: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
}

/// A route's `namespace/name` and its backend Services as (namespace, name).
type Route = (String, Vec<(String, String)>);

/// The route that answers `url` among `routes`.
fn route_for(routes: &[Json], url: &ServiceUrl) -> Option<Route> {
    let (host, path) = host_path(&url.url);
    let mut best: Option<(usize, Route)> = None;
    for r in routes {
        let name = r
            .pointer("/metadata/name")
            .and_then(Json::as_str)
            .unwrap_or_default();
        let namespace = r
            .pointer("/metadata/namespace")
            .and_then(Json::as_str)
            .unwrap_or_default();
        for route in r
            .pointer("/spec/routes")
            .and_then(Json::as_array)
            .into_iter()
            .flatten()
        {
            let rule = route
                .get("match")
                .and_then(Json::as_str)
                .unwrap_or_default();
            let Some(score) = rule_matches(rule, &host, &path) else {
                continue;
            };
            if best.as_ref().is_some_and(|(s, _)| *s >= score) {
                continue;
            }
            let services = route
                .get("services")
                .and_then(Json::as_array)
                .into_iter()
                .flatten()
                .filter(|s| {
                    s.get("kind")
                        .and_then(Json::as_str)
                        .is_none_or(|k| k == "Service")
                })
                .filter_map(|s| {
                    let n = s.get("name").and_then(Json::as_str)?;
                    let ns = s
                        .get("namespace")
                        .and_then(Json::as_str)
                        .unwrap_or(namespace);
                    Some((ns.to_string(), n.to_string()))
                })
                .collect();
            best = Some((score, (format!("{namespace}/{name}"), services)));
        }
    }
    best.map(|(_, r)| r)
}

/// Whether an EndpointSlice lists a ready endpoint (an unset `ready` counts as ready, as the
/// API documents).
fn slice_ready(slice: &Json) -> bool {
    slice
        .get("endpoints")
        .and_then(Json::as_array)
        .is_some_and(|eps| {
            eps.iter().any(|e| {
                e.pointer("/conditions/ready")
                    .and_then(Json::as_bool)
                    .unwrap_or(true)
            })
        })
}

/// The permissions of [`rbac::TRAEFIK`] its service account lacks, asked one by one with a
/// `SubjectAccessReview` (what `kubectl auth can-i --as` does). Returns (checked, denied).
pub async fn ingress_rbac(
    client: &kube::Client,
    namespace: &str,
) -> Result<(usize, Vec<String>), KubeError> {
    use k8s_openapi::api::authorization::v1::{
        ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
    };
    let table = &rbac::TRAEFIK;
    let user = format!(
        "system:serviceaccount:{namespace}:{}",
        table.service_account
    );
    let reviews: Api<SubjectAccessReview> = Api::all(client.clone());
    let mut checked = 0;
    let mut denied = Vec::new();
    for p in table.permissions {
        for group in p.groups {
            for resource in p.resources {
                for verb in p.verbs {
                    let ns = match p.reach {
                        Reach::Cluster => None,
                        Reach::Namespace => Some(namespace.to_string()),
                    };
                    let (resource, subresource) = match resource.split_once('/') {
                        Some((r, s)) => (r.to_string(), Some(s.to_string())),
                        None => ((*resource).to_string(), None),
                    };
                    let review = SubjectAccessReview {
                        spec: SubjectAccessReviewSpec {
                            user: Some(user.clone()),
                            groups: Some(vec![
                                "system:serviceaccounts".into(),
                                format!("system:serviceaccounts:{namespace}"),
                                "system:authenticated".into(),
                            ]),
                            resource_attributes: Some(ResourceAttributes {
                                verb: Some((*verb).to_string()),
                                group: Some((*group).to_string()),
                                resource: Some(resource.clone()),
                                subresource,
                                namespace: ns.clone(),
                                ..ResourceAttributes::default()
                            }),
                            ..SubjectAccessReviewSpec::default()
                        },
                        ..SubjectAccessReview::default()
                    };
                    let post = PostParams::default();
                    // Idempotent (it stores nothing): retried like a read.
                    let answer = read("asking a SubjectAccessReview", || {
                        reviews.create(&post, &review)
                    })
                    .await?;
                    checked += 1;
                    if !answer.status.is_some_and(|s| s.allowed) {
                        let group = if group.is_empty() { "core" } else { group };
                        denied.push(format!(
                            "{verb} {group}/{resource}{}",
                            ns.map(|n| format!(" in {n}")).unwrap_or_default()
                        ));
                    }
                }
            }
        }
    }
    Ok((checked, denied))
}

/// The in-cluster half of the check: routes, Services, endpoints, RBAC. Every missing piece
/// is reported, not only the first.
pub async fn check_cluster(
    client: &kube::Client,
    config: &Config,
) -> Result<Checked, FrontDoorError> {
    let ns = &config.namespace;
    let routes: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        ns,
        &dynamic(
            ingress::crds::GROUP,
            ingress::crds::VERSION,
            "IngressRoute",
            "ingressroutes",
        ),
    );
    let all = ListParams::default();
    let routes: Vec<Json> = read("listing the IngressRoutes", || routes.list(&all))
        .await?
        .items
        .iter()
        .filter_map(|r| serde_json::to_value(r).ok())
        .collect();
    let slices_api = |ns: &str| -> Api<DynamicObject> {
        Api::namespaced_with(
            client.clone(),
            ns,
            &dynamic("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices"),
        )
    };
    let mut missing = Vec::new();
    let mut found = 0;
    for url in endpoints::urls(config)
        .into_iter()
        .filter(|u| u.check.is_http())
    {
        let Some((route, services)) = route_for(&routes, &url) else {
            missing.push(Missing::Route { url: url.url });
            continue;
        };
        let mut ok = true;
        for (svc_ns, svc) in services {
            let api: Api<k8s_openapi::api::core::v1::Service> =
                Api::namespaced(client.clone(), &svc_ns);
            let what = format!("reading Service {svc_ns}/{svc}");
            if read(&what, || api.get_opt(&svc)).await?.is_none() {
                missing.push(Missing::Service {
                    url: url.url.clone(),
                    route: route.clone(),
                    service: format!("{svc_ns}/{svc}"),
                });
                ok = false;
                continue;
            }
            let params = ListParams::default().labels(&format!("kubernetes.io/service-name={svc}"));
            let slices_of = slices_api(&svc_ns);
            let slices = read("listing EndpointSlices", || slices_of.list(&params)).await?;
            let ready = slices
                .items
                .iter()
                .filter_map(|s| serde_json::to_value(s).ok())
                .any(|s| slice_ready(&s));
            if !ready {
                missing.push(Missing::Endpoints {
                    url: url.url.clone(),
                    service: format!("{svc_ns}/{svc}"),
                });
                ok = false;
            }
        }
        if ok {
            found += 1;
        }
    }
    let (permissions, denied) = ingress_rbac(client, ns).await?;
    if !denied.is_empty() {
        missing.push(Missing::Rbac {
            account: format!("{ns}/{}", rbac::TRAEFIK.service_account),
            denied,
        });
    }
    if missing.is_empty() {
        Ok(Checked {
            urls: found,
            permissions,
            notes: Vec::new(),
        })
    } else {
        Err(FrontDoorError::Missing(missing))
    }
}

/// The unhealthy rows of a health report, as missing pieces.
pub fn unhealthy(report: &crate::kubernetes::health::HealthReport) -> Vec<Missing> {
    use crate::kubernetes::health::Outcome;
    report
        .checks
        .iter()
        .filter(|r| r.result == Outcome::Unhealthy)
        .map(|r| Missing::Unhealthy {
            component: r.component.clone(),
            url: r.url.clone(),
            expected: r.check.clone(),
            answered: r.answered.clone().unwrap_or_default(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_match_by_host_and_the_longest_prefix() {
        let rule = "Host(`demo.example.com`) && PathPrefix(`/auth`)";
        assert_eq!(rule_matches(rule, "demo.example.com", "/auth/"), Some(5));
        assert_eq!(rule_matches(rule, "other.example.com", "/auth/"), None);
        assert_eq!(rule_matches(rule, "demo.example.com", "/"), None);
        let root = "Host(`demo.example.com`) && PathPrefix(`/`)";
        assert_eq!(rule_matches(root, "demo.example.com", "/auth/"), Some(1));
        assert_eq!(rule_matches("Path(`/x`)", "h", "/x"), Some(3));
        assert_eq!(rule_matches("Path(`/x`)", "h", "/y"), None);
        assert_eq!(
            host_path("https://demo.example.com/auth/"),
            ("demo.example.com".into(), "/auth/".into())
        );
    }
}
