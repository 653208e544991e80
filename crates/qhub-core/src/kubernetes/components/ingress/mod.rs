//! The ingress: Traefik (v3) with its CRDs and RBAC, a Deployment on the `general` group, and
//! exactly one `LoadBalancer` Service exposing 80 (redirected to 443), 443, 8022 (ssh), 8023
//! (sftp) and 8786 (Dask scheduler). TLS follows `certificate` ([`tls`]). Other components
//! publish routes through [`http_route`] and [`tcp_route`].

pub mod crds;
pub mod tls;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    ContainerPort, HTTPGetAction, PodSpec, Probe, Service, ServiceAccount, ServicePort, ServiceSpec,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::{Value as Json, json};

use super::{Built, Component, Context, KubeError, Middleware, Route, manifest, selector};
use crate::kubernetes::pods::{self, Placement};
use crate::kubernetes::versions;

/// The component's name (and its Deployment's, Service's and ServiceAccount's).
pub const NAME: &str = super::rbac::TRAEFIK.service_account;

/// An entry point: its name, the Service's port and the container's port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryPoint {
    /// Traefik's name for it.
    pub name: &'static str,
    /// The port the load balancer exposes.
    pub port: i32,
    /// The port Traefik listens on (unprivileged).
    pub container_port: i32,
}

/// HTTP, redirected to HTTPS unless TLS is disabled.
pub const WEB: EntryPoint = EntryPoint {
    name: "web",
    port: 80,
    container_port: 8000,
};
/// HTTPS.
pub const WEBSECURE: EntryPoint = EntryPoint {
    name: "websecure",
    port: 443,
    container_port: 8443,
};
/// SSH into users' servers.
pub const SSH: EntryPoint = EntryPoint {
    name: "ssh",
    port: 8022,
    container_port: 8022,
};
/// SFTP to the shared filesystem.
pub const SFTP: EntryPoint = EntryPoint {
    name: "sftp",
    port: 8023,
    container_port: 8023,
};
/// Dask schedulers (TLS, routed by SNI): the entry point Dask Gateway's controller attaches
/// its per-cluster IngressRouteTCPs to (`KubeController.proxy_tcp_entrypoint`).
pub const DASK: EntryPoint = EntryPoint {
    name: "tcp-8786",
    port: 8786,
    container_port: 8786,
};
/// Every entry point the load balancer exposes.
pub const ENTRY_POINTS: [EntryPoint; 5] = [WEB, WEBSECURE, SSH, SFTP, DASK];
/// Traefik's own port for `/ping` (not exposed).
const PING_PORT: i32 = 9000;

/// The ingress.
#[derive(Debug, Clone, Copy)]
pub struct Ingress;

/// An IngressRoute on the HTTPS entry point (HTTP when TLS is disabled) sending `rule` to
/// `service:port`, named after the service, for `component`.
pub fn http_route(
    ctx: &Context<'_>,
    component: &str,
    rule: &str,
    service: &str,
    port: i32,
    priority: i64,
) -> Result<Json, KubeError> {
    route_object(ctx, component, service, rule, service, port, priority, &[])
}

#[allow(clippy::too_many_arguments)] // each is one field of Traefik's route; a struct would only rename them
fn route_object(
    ctx: &Context<'_>,
    component: &str,
    name: &str,
    rule: &str,
    service: &str,
    port: i32,
    priority: i64,
    middlewares: &[String],
) -> Result<Json, KubeError> {
    let entry = if tls::enabled(ctx.config) {
        WEBSECURE.name
    } else {
        WEB.name
    };
    let host_rule = format!("Host(`{}`) && {rule}", ctx.config.domain);
    let mut route = json!({"match": host_rule, "kind": "Rule", "priority": priority,
        "services": [{"name": service, "port": port}]});
    if !middlewares.is_empty() {
        route["middlewares"] = middlewares.iter().map(|m| json!({"name": m})).collect();
    }
    let mut spec = json!({
        "entryPoints": [entry],
        "routes": [route],
    });
    if let Some(t) = tls::route_tls(ctx.config) {
        spec["tls"] = t;
    }
    Ok(json!({
        "apiVersion": format!("{}/{}", crds::GROUP, crds::VERSION),
        "kind": "IngressRoute",
        "metadata": manifest(&ctx.meta(component, name))?,
        "spec": spec,
    }))
}

/// The objects of a declared [`Route`] of `component`: a Middleware per middleware it declares
/// (and one cutting the prefix when it strips it), then its IngressRoute.
pub fn route_objects(
    ctx: &Context<'_>,
    component: &str,
    route: &Route,
) -> Result<Vec<Json>, KubeError> {
    let middleware = |name: &str, spec: Json| -> Result<Json, KubeError> {
        Ok(json!({
            "apiVersion": format!("{}/{}", crds::GROUP, crds::VERSION),
            "kind": "Middleware",
            "metadata": manifest(&ctx.meta(component, name))?,
            "spec": spec,
        }))
    };
    let mut out = Vec::new();
    let mut names = Vec::new();
    for (i, m) in route.middlewares.iter().enumerate() {
        match m {
            Middleware::Named(name) => names.push(name.clone()),
            Middleware::ForwardAuth {
                address,
                response_headers,
            } => {
                let name = route.middleware_name(&format!("auth-{i}"));
                let mut spec = json!({"forwardAuth": {"address": address}});
                if !response_headers.is_empty() {
                    spec["forwardAuth"]["authResponseHeaders"] = json!(response_headers);
                }
                out.push(middleware(&name, spec)?);
                names.push(name);
            }
        }
    }
    // Cut last: the middlewares before it (authentication) see the path the user asked for.
    if route.strip_prefix && route.path != "/" {
        let name = route.middleware_name("strip");
        out.push(middleware(
            &name,
            json!({"stripPrefix": {"prefixes": [route.path]}}),
        )?);
        names.push(name);
    }
    out.push(route_object(
        ctx,
        component,
        &route.name,
        &format!("PathPrefix(`{}`)", route.path),
        &route.service,
        route.port,
        route.priority,
        &names,
    )?);
    Ok(out)
}

/// An IngressRouteTCP on `entry` sending every connection to `service:port`.
pub fn tcp_route(
    ctx: &Context<'_>,
    component: &str,
    entry: EntryPoint,
    service: &str,
    port: i32,
) -> Result<Json, KubeError> {
    Ok(json!({
        "apiVersion": format!("{}/{}", crds::GROUP, crds::VERSION),
        "kind": "IngressRouteTCP",
        "metadata": manifest(&ctx.meta(component, service))?,
        "spec": {"entryPoints": [entry.name], "routes": [{"match": "HostSNI(`*`)",
            "services": [{"name": service, "port": port}]}]},
    }))
}

/// QHub's `ingress.terraform_overrides` keys we honour: `load-balancer-annotations` (merged
/// over the cloud's) and `load-balancer-ip`.
fn overrides(ctx: &Context<'_>) -> (BTreeMap<String, String>, Option<String>) {
    let mut annotations = ctx.facts.load_balancer_annotations.clone();
    let mut ip = None;
    if let Some(o) = ctx
        .config
        .ingress
        .as_ref()
        .and_then(|i| i.terraform_overrides.as_ref())
    {
        if let Some(extra) = o.get("load-balancer-annotations").and_then(Json::as_object) {
            for (k, v) in extra {
                let v = v.as_str().map_or_else(|| v.to_string(), str::to_string);
                annotations.insert(k.clone(), v);
            }
        }
        ip = o
            .get("load-balancer-ip")
            .and_then(Json::as_str)
            .map(str::to_string);
    }
    (annotations, ip)
}

impl Component for Ingress {
    fn name(&self) -> &'static str {
        "ingress"
    }

    fn depends_on(&self) -> &'static [&'static str] {
        &["namespace"]
    }

    fn build(&self, ctx: &Context<'_>) -> Result<Built, KubeError> {
        let ns = ctx.namespace().to_string();
        // The namespaces whose routes Traefik reads: the platform's, and the privileged one
        // when a piece there is routed (jupyterhub-ssh's sftp server and its IngressRouteTCP).
        let mut watched = vec![ns.clone()];
        if super::jupyterhub_ssh::JupyterHubSsh.enabled(ctx) {
            watched.push(ctx.privileged_namespace());
        }
        let mut out = Vec::new();
        let account = ServiceAccount {
            metadata: ctx.meta(NAME, NAME),
            ..ServiceAccount::default()
        };
        let rbac = super::rbac::objects(ctx, NAME, &super::rbac::TRAEFIK)?;
        let mut args = vec![
            format!("--entrypoints.traefik.address=:{PING_PORT}"),
            "--ping=true".to_string(),
            // Prometheus metrics on the `traefik` entry point beside the ping (Traefik's
            // default for `metrics.prometheus.entryPoint`), scraped by monitoring.
            "--metrics.prometheus=true".to_string(),
            "--api.dashboard=false".to_string(),
            "--log.level=INFO".to_string(),
            "--accesslog=true".to_string(),
            "--providers.kubernetescrd=true".to_string(),
            format!("--providers.kubernetescrd.namespaces={}", watched.join(",")),
            "--providers.kubernetescrd.allowemptyservices=true".to_string(),
        ];
        for e in ENTRY_POINTS {
            args.push(format!(
                "--entrypoints.{}.address=:{}",
                e.name, e.container_port
            ));
        }
        let tls = tls::setup(ctx)?;
        args.extend(tls.args);
        let mut container = pods::container(
            NAME,
            versions::TRAEFIK.reference(),
            pods::resources("100m", "128Mi", "512Mi"),
        );
        container.args = Some(args);
        let mut ports: Vec<ContainerPort> = ENTRY_POINTS
            .iter()
            .map(|e| ContainerPort {
                name: Some(e.name.into()),
                container_port: e.container_port,
                protocol: Some("TCP".into()),
                ..ContainerPort::default()
            })
            .collect();
        ports.push(ContainerPort {
            name: Some("ping".into()),
            container_port: PING_PORT,
            ..ContainerPort::default()
        });
        container.ports = Some(ports);
        let ping = Probe {
            http_get: Some(HTTPGetAction {
                path: Some("/ping".into()),
                port: IntOrString::String("ping".into()),
                ..HTTPGetAction::default()
            }),
            period_seconds: Some(10),
            ..Probe::default()
        };
        container.readiness_probe = Some(ping.clone());
        container.liveness_probe = Some(ping);
        container.volume_mounts = (!tls.mounts.is_empty()).then(|| tls.mounts.clone());
        let mut pod = PodSpec {
            service_account_name: Some(NAME.into()),
            containers: vec![container],
            security_context: Some(pods::non_root_pod(65532)),
            volumes: (!tls.volumes.is_empty()).then(|| tls.volumes.clone()),
            termination_grace_period_seconds: Some(60),
            ..PodSpec::default()
        };
        Placement::on_group(ctx.facts, "general").place(&mut pod);
        let deployment = super::deployment(ctx, NAME, pod, tls.persistent);
        let (annotations, ip) = overrides(ctx);
        let mut meta = ctx.meta(NAME, NAME);
        if !annotations.is_empty() {
            meta.annotations = Some(annotations);
        }
        let service = Service {
            metadata: meta,
            spec: Some(ServiceSpec {
                type_: Some("LoadBalancer".into()),
                load_balancer_ip: ip,
                external_traffic_policy: Some("Cluster".into()),
                selector: Some(selector(NAME)),
                ports: Some(
                    ENTRY_POINTS
                        .iter()
                        .map(|e| ServicePort {
                            name: Some(e.name.into()),
                            port: e.port,
                            target_port: Some(IntOrString::String(e.name.into())),
                            protocol: Some("TCP".into()),
                            ..ServicePort::default()
                        })
                        .collect(),
                ),
                ..ServiceSpec::default()
            }),
            ..Service::default()
        };
        out.push(manifest(&account)?);
        out.extend(rbac);
        out.extend(tls.objects);
        out.push(manifest(&deployment)?);
        out.push(manifest(&service)?);
        let mut built = Built::new(out).image(versions::TRAEFIK);
        for crd in crds::crds() {
            built = built.crd(crd);
        }
        Ok(built)
    }
}
