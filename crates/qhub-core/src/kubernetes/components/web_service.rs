//! The common shape of a platform service, built once: a Deployment running one container
//! behind a Service, a route through the ingress, and optionally a login client, a config file
//! and the shared volume. A component of this shape is a short file saying only what is
//! particular to it (docs/writing-a-component.md).

use k8s_openapi::api::core::v1::{
    ConfigMapVolumeSource, ContainerPort, EnvVar, EnvVarSource, HTTPGetAction,
    PersistentVolumeClaimVolumeSource, PodSpec, Probe, SecretKeySelector, Service, ServicePort,
    ServiceSpec, Sysctl, TCPSocketAction, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{Built, ConfigFile, Context, KubeError, Route, manifest, selector, storage};
use crate::keycloak::PlatformClient;
use crate::kubernetes::pods::{self, Placement};
use crate::kubernetes::versions::Image;

/// The port the Service exposes (the route's target).
pub const SERVICE_PORT: i32 = 80;

/// A web service: start with [`WebService::new`], add what it needs, then [`WebService::build`].
#[derive(Debug, Clone)]
pub struct WebService {
    name: String,
    image: ImageSource,
    container_port: i32,
    uid: i64,
    args: Vec<String>,
    env: Vec<(String, String)>,
    secret_env: Vec<(String, String, String)>,
    route: Option<Route>,
    client: Option<PlatformClient>,
    config: Option<(ConfigFile, String)>,
    shared_volume: Option<String>,
    writable_root: bool,
    low_ports: bool,
    service_account: Option<String>,
    probe_path: Option<String>,
    resources: (&'static str, &'static str, &'static str),
}

/// Where a web service's image comes from.
#[derive(Debug, Clone)]
enum ImageSource {
    /// One qhub pins ([`crate::kubernetes::versions`]).
    Pinned(Image),
    /// One the config names ([`Built::config_images`]).
    Config(String),
}

impl WebService {
    /// A Deployment and Service named `name` running `image`, listening on `container_port`
    /// as user `uid` (non-root, restricted security context).
    pub fn new(name: impl Into<String>, image: Image, container_port: i32, uid: i64) -> Self {
        Self::with_image(name.into(), ImageSource::Pinned(image), container_port, uid)
    }

    /// [`WebService::new`] with an image the config names (an extension's), declared as such
    /// ([`Built::config_images`]) rather than pinned.
    pub fn with_config_image(
        name: impl Into<String>,
        image: impl Into<String>,
        container_port: i32,
        uid: i64,
    ) -> Self {
        Self::with_image(
            name.into(),
            ImageSource::Config(image.into()),
            container_port,
            uid,
        )
    }

    fn with_image(name: String, image: ImageSource, container_port: i32, uid: i64) -> Self {
        Self {
            name,
            image,
            container_port,
            uid,
            args: Vec::new(),
            env: Vec::new(),
            secret_env: Vec::new(),
            route: None,
            client: None,
            config: None,
            shared_volume: None,
            writable_root: false,
            low_ports: false,
            service_account: None,
            probe_path: None,
            resources: ("50m", "64Mi", "256Mi"),
        }
    }

    /// Its CPU request and memory request and limit ([`pods::resources`]); 50m, 64Mi and
    /// 256Mi otherwise.
    #[must_use]
    pub fn resources(
        mut self,
        cpu: &'static str,
        memory: &'static str,
        memory_limit: &'static str,
    ) -> Self {
        self.resources = (cpu, memory, memory_limit);
        self
    }

    /// Runs the pod as the service account `name` (one the component declares, with its RBAC
    /// table), its token mounted: a service that talks to the Kubernetes API. Without it the
    /// pod mounts no token.
    #[must_use]
    pub fn service_account(mut self, name: impl Into<String>) -> Self {
        self.service_account = Some(name.into());
        self
    }

    /// Probes readiness and liveness with `GET path` on the container's port (answering 2xx or
    /// 3xx), as the service's upstream chart does; a TCP connect otherwise.
    #[must_use]
    pub fn http_probe(mut self, path: impl Into<String>) -> Self {
        self.probe_path = Some(path.into());
        self
    }

    /// Lets the container write to its root filesystem (an image qhub does not know, which may
    /// write where it likes); read-only otherwise.
    #[must_use]
    pub fn writable_root(mut self) -> Self {
        self.writable_root = true;
        self
    }

    /// Lets the non-root container listen on a port below 1024 (an extension's 80, QHub's
    /// contract): the pod's `net.ipv4.ip_unprivileged_port_start` is 0. A namespaced sysctl
    /// the Pod Security Standards allow from `baseline` up (Kubernetes docs, "Pod Security
    /// Standards", Sysctls: the safe set includes `net.ipv4.ip_unprivileged_port_start`).
    #[must_use]
    pub fn low_ports(mut self) -> Self {
        self.low_ports = true;
        self
    }

    /// The container's arguments.
    #[must_use]
    pub fn args(mut self, args: impl IntoIterator<Item = String>) -> Self {
        self.args.extend(args);
        self
    }

    /// An environment variable.
    #[must_use]
    pub fn env(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((name.into(), value.into()));
        self
    }

    /// An environment variable holding the value of `key` in the Secret `secret` (a login
    /// client's secret: [`super::client_secret_name`], [`super::CLIENT_SECRET_KEY`]).
    #[must_use]
    pub fn secret_env(
        mut self,
        name: impl Into<String>,
        secret: impl Into<String>,
        key: impl Into<String>,
    ) -> Self {
        self.secret_env
            .push((name.into(), secret.into(), key.into()));
        self
    }

    /// Routes `path` to it; `f` adds what is particular (middlewares, strip-prefix, listing).
    #[must_use]
    pub fn route(mut self, path: &str, f: impl FnOnce(Route) -> Route) -> Self {
        self.route = Some(f(Route::new(path, self.name.clone(), SERVICE_PORT)));
        self
    }

    /// Its login client in Keycloak.
    #[must_use]
    pub fn login(mut self, client: PlatformClient) -> Self {
        self.client = Some(client);
        self
    }

    /// A config file mounted read-only at `mount_path` (the directory); an edit rolls the pod.
    #[must_use]
    pub fn config_file(mut self, file: ConfigFile, mount_path: impl Into<String>) -> Self {
        self.config = Some((file, mount_path.into()));
        self
    }

    /// The platform's shared volume ([`storage::CLAIM`]) mounted at `mount_path`.
    #[must_use]
    pub fn shared_volume(mut self, mount_path: impl Into<String>) -> Self {
        self.shared_volume = Some(mount_path.into());
        self
    }

    /// Its objects and declarations, for component `component`.
    pub fn build(self, ctx: &Context<'_>, component: &str) -> Result<Built, KubeError> {
        let reference = match &self.image {
            ImageSource::Pinned(image) => image.reference(),
            ImageSource::Config(image) => image.clone(),
        };
        let mut container = pods::container(
            &self.name,
            reference,
            pods::resources(self.resources.0, self.resources.1, self.resources.2),
        );
        container.args = (!self.args.is_empty()).then_some(self.args);
        if self.writable_root {
            container.security_context = Some(pods::restricted(false));
        }
        let env: Vec<EnvVar> = self
            .env
            .iter()
            .map(|(name, value)| EnvVar {
                name: name.clone(),
                value: Some(value.clone()),
                ..EnvVar::default()
            })
            .chain(self.secret_env.iter().map(|(name, secret, key)| EnvVar {
                name: name.clone(),
                value_from: Some(EnvVarSource {
                    secret_key_ref: Some(SecretKeySelector {
                        name: secret.clone(),
                        key: key.clone(),
                        ..SecretKeySelector::default()
                    }),
                    ..EnvVarSource::default()
                }),
                ..EnvVar::default()
            }))
            .collect();
        container.env = (!env.is_empty()).then_some(env);
        container.ports = Some(vec![ContainerPort {
            container_port: self.container_port,
            name: Some("http".into()),
            ..ContainerPort::default()
        }]);
        if let Some(path) = &self.probe_path {
            let probe = Probe {
                http_get: Some(HTTPGetAction {
                    path: Some(path.clone()),
                    port: IntOrString::String("http".into()),
                    ..HTTPGetAction::default()
                }),
                ..Probe::default()
            };
            container.liveness_probe = Some(probe.clone());
            container.readiness_probe = Some(probe);
        } else {
            container.readiness_probe = Some(Probe {
                tcp_socket: Some(TCPSocketAction {
                    port: IntOrString::String("http".into()),
                    ..TCPSocketAction::default()
                }),
                ..Probe::default()
            });
        }
        let mut mounts = Vec::new();
        let mut volumes = Vec::new();
        if let Some((file, path)) = &self.config {
            mounts.push(VolumeMount {
                name: "config".into(),
                mount_path: path.clone(),
                read_only: Some(true),
                ..VolumeMount::default()
            });
            volumes.push(Volume {
                name: "config".into(),
                config_map: Some(ConfigMapVolumeSource {
                    name: file.name.clone(),
                    ..ConfigMapVolumeSource::default()
                }),
                ..Volume::default()
            });
        }
        if let Some(path) = &self.shared_volume {
            mounts.push(VolumeMount {
                name: "shared".into(),
                mount_path: path.clone(),
                ..VolumeMount::default()
            });
            volumes.push(Volume {
                name: "shared".into(),
                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                    claim_name: storage::CLAIM.into(),
                    ..PersistentVolumeClaimVolumeSource::default()
                }),
                ..Volume::default()
            });
        }
        container.volume_mounts = (!mounts.is_empty()).then_some(mounts);
        let mut security = pods::non_root_pod(self.uid);
        if self.low_ports {
            security.sysctls = Some(vec![Sysctl {
                name: "net.ipv4.ip_unprivileged_port_start".into(),
                value: "0".into(),
            }]);
        }
        let mut pod = PodSpec {
            containers: vec![container],
            security_context: Some(security),
            automount_service_account_token: Some(self.service_account.is_some()),
            service_account_name: self.service_account.clone(),
            volumes: (!volumes.is_empty()).then_some(volumes),
            ..PodSpec::default()
        };
        Placement::on_group(ctx.facts, "general").place(&mut pod);
        let mut deployment = super::deployment(ctx, component, pod, false);
        deployment.metadata = ctx.meta(component, &self.name);
        let service = Service {
            metadata: ctx.meta(component, &self.name),
            spec: Some(ServiceSpec {
                selector: Some(selector(component)),
                ports: Some(vec![ServicePort {
                    name: Some("http".into()),
                    port: SERVICE_PORT,
                    target_port: Some(IntOrString::String("http".into())),
                    ..ServicePort::default()
                }]),
                ..ServiceSpec::default()
            }),
            ..Service::default()
        };
        let mut built = Built::new(vec![manifest(&deployment)?, manifest(&service)?]);
        built = match self.image {
            ImageSource::Pinned(image) => built.image(image),
            ImageSource::Config(image) => built.config_image(image),
        };
        if let Some(route) = self.route {
            built = built.route(route);
        }
        if let Some(client) = self.client {
            built = built.client(client);
        }
        if let Some((file, _)) = self.config {
            built = built.config_file(file);
        }
        Ok(built)
    }
}
