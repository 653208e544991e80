//! Every container image the platform runs, pinned, in one file. Each component declares the
//! images it runs (`Built::images`); the table of them all is derived from the registry
//! ([`crate::kubernetes::components::tables::pinned_images`]), never listed by hand.
//!
//! Nothing is pulled by a floating tag: an upgrade of a component is a change to this file (and
//! to the snapshots of the rendered manifests), reviewed like any other. Images cannot be pulled
//! on the machine that builds qhub-rs; tags come from the projects' release notes (cited beside
//! each), and a digest only where an upstream source publishes it for that tag (cited too: the
//! `docker-library/repo-info` records of Docker's official images). Where none is published in
//! a source we could read, the image is pinned by tag alone, and the comment says so.
//! `scripts/check-images` (run by a producer or a CI with internet access) lists newer releases
//! of every image here.

/// One pinned image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Image {
    /// The component that runs it.
    pub component: &'static str,
    /// Repository, without tag.
    pub repository: &'static str,
    /// The pinned tag.
    pub tag: &'static str,
    /// The digest of the tag's manifest (index), `sha256:...`, where upstream publishes it:
    /// the reference then names it too, and the runtime pulls exactly that manifest.
    pub digest: Option<&'static str>,
}

impl Image {
    /// `repository:tag`, or `repository:tag@digest` when the digest is known.
    pub fn reference(&self) -> String {
        match self.digest {
            Some(digest) => format!("{}:{}@{digest}", self.repository, self.tag),
            None => format!("{}:{}", self.repository, self.tag),
        }
    }
}

/// The welcome page: NGINX's unprivileged image (listens on 8080, runs as uid 101), its
/// current stable line 1.30 (nginx/docker-nginx-unprivileged `stable/alpine/Dockerfile`,
/// `nginxinc/nginx-unprivileged:1.30.2-alpine-slim` as base). The 1.27 line it replaces is no
/// longer built. No digest: NGINX publishes none in its repository.
pub const WELCOME: Image = Image {
    component: "qhub-welcome",
    repository: "docker.io/nginxinc/nginx-unprivileged",
    tag: "1.30.2-alpine",
    digest: None,
};

/// Traefik, the ingress: the newest patch of v3.7 (whose CRDs and RBAC the ingress component
/// follows), v3.7.13, released 2026-09-04 with five security advisories fixed
/// (github.com/traefik/traefik/releases; docker-library/official-images#22206). Digest of the
/// official image's index for `3.7.13` (the same manifest as `v3.7.13`) from
/// docker-library/repo-info `repos/traefik/remote/3.7.13.md` at commit 1fb527e2b7c8.
pub const TRAEFIK: Image = Image {
    component: "traefik",
    repository: "docker.io/library/traefik",
    tag: "v3.7.13",
    digest: Some("sha256:24841fe2de7304c149343d877d2923b4c8800a38ba015dea9174c23b20e344a0"),
};

/// Keycloak, the identity provider: 26.7.4, the release of the admin client
/// (`@keycloak/keycloak-admin-client` 26.7.4) whose representations the Keycloak emulator
/// follows; a newer minor is an upgrade to test against that client first. No digest: Quay
/// publishes none in a source we could read.
pub const KEYCLOAK: Image = Image {
    component: "keycloak",
    repository: "quay.io/keycloak/keycloak",
    tag: "26.7.4",
    digest: None,
};

/// Keycloak's database: Postgres 17.11, the newest 17.x the official image publishes
/// (docker-library/repo-info lists `17.11-alpine` and nothing later; 17.10 alone fixed 11
/// CVEs, so patch releases matter here). Digest of the official image's index for
/// `17.11-alpine` from docker-library/repo-info `repos/postgres/remote/17.11-alpine.md` at
/// commit 14ad5cc17dd0.
pub const POSTGRES: Image = Image {
    component: "keycloak-postgres",
    repository: "docker.io/library/postgres",
    tag: "17.11-alpine",
    digest: Some("sha256:b0f9560a2de083e2cc7382e75f808c7381a32852a7ec49117deedb300e552b24"),
};

/// The in-cluster NFS server for the shared filesystem where the cloud has none.
///
/// Not maintained (a 2016 test image, kernel NFS server, privileged): it runs in the
/// `<namespace>-privileged` namespace. Its replacement is not made yet: the Kubernetes CSI NFS
/// driver (kubernetes-csi/csi-driver-nfs) mounts an NFS server but is none, and the maintained
/// userspace server, NFS-Ganesha as kubernetes-sigs/nfs-ganesha-server-and-external-provisioner
/// ships it (`registry.k8s.io/sig-storage/nfs-provisioner`, promoted at v4.0.8 by
/// kubernetes/k8s.io#4893; capabilities DAC_READ_SEARCH and SYS_RESOURCE instead of
/// `privileged`, per its `deploy/kubernetes/deployment.yaml`), exports only volumes it
/// provisions itself: the `shared` claim would come from its StorageClass, and it needs
/// cluster-wide RBAC to provision (its `deploy/kubernetes/rbac.yaml`). It is barely maintained
/// either: last commit 2024-01-21, image built on Fedora 36 (`deploy/base/Dockerfile`
/// `FEDORA_VERSION=36`, end of life 2023-05). Kubernetes' `e2e-test-images/volume/nfs` is
/// CentOS 7 and "Not for production use!" (kubernetes/kubernetes `test/images/volume/nfs`).
/// A real replacement is an NFS-Ganesha image of our own on a maintained base, or that
/// provisioner with a StorageClass and an RBAC table (docs/platform.md, "Not built yet").
pub const NFS_SERVER: Image = Image {
    component: "nfs-server",
    repository: "registry.k8s.io/volume-nfs",
    tag: "0.8",
    digest: None,
};

/// The NVIDIA device plugin (advertises `nvidia.com/gpu`): v0.19.3, the newest tag of
/// NVIDIA/k8s-device-plugin (2026-06-16; its CHANGELOG.md: Go 1.26.4, golang.org/x/net
/// v0.56.0, distroless base v4.0.8), whose `deployments/static/nvidia-device-plugin.yml` runs
/// this very image with no service account. No digest: nvcr.io publishes none in a source we
/// could read.
pub const NVIDIA_DEVICE_PLUGIN: Image = Image {
    component: "nvidia-device-plugin",
    repository: "nvcr.io/nvidia/k8s-device-plugin",
    tag: "v0.19.3",
    digest: None,
};

/// Dask Gateway's API server and controller (one image, two commands): `2026.3.0`, the release
/// of `dask-gateway-server` on PyPI that the tests load the generated config with. The chart
/// of that tag (dask/dask-gateway `resources/helm/chartpress.yaml`) publishes it as
/// `ghcr.io/dask/dask-gateway-server`, tagged with the release (chartpress tags each image
/// with the git tag), for the gateway and the controller alike. No digest: ghcr.io publishes
/// none in a source we could read.
pub const DASK_GATEWAY_SERVER: Image = Image {
    component: "dask-gateway",
    repository: "ghcr.io/dask/dask-gateway-server",
    tag: "2026.3.0",
    digest: None,
};

/// Argo Workflows v4.1.2 (argoproj/argo-workflows, the newest tag of the copy we could read,
/// whose CRDs and RBAC `components::argo_workflows` follows): upstream publishes its images on
/// quay.io tagged with the release (`manifests/base/*/...-deployment.yaml` name
/// `quay.io/argoproj/workflow-controller` and `quay.io/argoproj/argocli`; the executor is
/// `quay.io/argoproj/argoexec`). No digest: none is published in a source we could read.
pub const ARGO_WORKFLOW_CONTROLLER: Image = Image {
    component: "argo-workflows",
    repository: "quay.io/argoproj/workflow-controller",
    tag: "v4.1.2",
    digest: None,
};

/// argo-server (the `argocli` image, run as `argo server`); see [`ARGO_WORKFLOW_CONTROLLER`].
pub const ARGO_CLI: Image = Image {
    component: "argo-workflows",
    repository: "quay.io/argoproj/argocli",
    tag: "v4.1.2",
    digest: None,
};

/// kbatch-proxy 0.4.2 (kbatch-dev/kbatch, the newest release on PyPI, 2023-09): the image its
/// Helm chart runs (kbatch-dev/helm-chart 0.4.2, `kbatch/values.yaml` `image.repository:
/// ghcr.io/kbatch-dev/kbatch-proxy` with the tag defaulting to `appVersion: "0.4.2"` of
/// `kbatch/Chart.yaml`), built from `kbatch-proxy/docker/production/Dockerfile` and pushed on
/// each release (`.github/workflows/publish-image.yaml`, tagged with the release). It runs
/// gunicorn on `${APP_PORT}` (80 by default) as root; qhub runs it as a non-root user on 8080
/// (`components::kbatch`). No digest: none is published in a source we could read.
pub const KBATCH_PROXY: Image = Image {
    component: "kbatch",
    repository: "ghcr.io/kbatch-dev/kbatch-proxy",
    tag: "0.4.2",
    digest: None,
};

/// The executor Argo runs beside each workflow step (`--executor-image`); see
/// [`ARGO_WORKFLOW_CONTROLLER`].
pub const ARGO_EXEC: Image = Image {
    component: "argo-workflows",
    repository: "quay.io/argoproj/argoexec",
    tag: "v4.1.2",
    digest: None,
};

/// The cluster autoscaler's repository; its tag follows the cluster's minor version
/// ([`cluster_autoscaler`]).
pub const CLUSTER_AUTOSCALER_REPOSITORY: &str = "registry.k8s.io/autoscaling/cluster-autoscaler";

/// Cluster-autoscaler releases by Kubernetes minor version (the autoscaler supports the minor
/// it was released for): the newest `cluster-autoscaler-1.x.y` tag per minor in
/// kubernetes/autoscaler (read 2026-12: 1.30.7 of 2025-10-29, 1.31.5 of 2025-10-08, 1.32.7 of
/// 2026-02-13, and 1.33.6, 1.34.5, 1.35.2 of 2026-07-22; 1.33.6 is also
/// kubernetes/autoscaler#10030). 1.29 stays at its last release, 1.29.5. 1.36.1 is not listed:
/// its AWS example adds reads of `resource.k8s.io` (DRA) that the RBAC table
/// (`components::rbac::CLUSTER_AUTOSCALER`, the rules of 1.33.0–1.35.2) does not grant, and no
/// provider we deploy offers 1.36 yet. No digests: the image promotion
/// manifest (kubernetes/k8s.io `registry.k8s.io/images/k8s-staging-autoscaling/images.yaml`)
/// holds them, but the copy we could read ends at v1.28.
pub const CLUSTER_AUTOSCALER_TAGS: &[(&str, &str)] = &[
    ("1.29", "v1.29.5"),
    ("1.30", "v1.30.7"),
    ("1.31", "v1.31.5"),
    ("1.32", "v1.32.7"),
    ("1.33", "v1.33.6"),
    ("1.34", "v1.34.5"),
    ("1.35", "v1.35.2"),
];

/// The cluster autoscaler's image for a cluster at `kubernetes_version` (`1.33`, `1.33.2`):
/// the release for its minor, or the newest listed one for a minor not in the table.
pub fn cluster_autoscaler(kubernetes_version: &str) -> Image {
    let minor: String = kubernetes_version
        .split('.')
        .take(2)
        .collect::<Vec<_>>()
        .join(".");
    let tag = CLUSTER_AUTOSCALER_TAGS
        .iter()
        .find(|(m, _)| *m == minor)
        .or_else(|| CLUSTER_AUTOSCALER_TAGS.last())
        .map_or("v1.35.2", |(_, t)| t);
    Image {
        component: "cluster-autoscaler",
        repository: CLUSTER_AUTOSCALER_REPOSITORY,
        tag,
        digest: None,
    }
}

/// JupyterHub's hub: z2jh's hub image of chart 4.4.0 (jupyterhub/zero-to-jupyterhub-k8s tag
/// 4.4.0, 2026-06-10, the newest chart release), whose `images/hub/requirements.txt` pins
/// jupyterhub 5.5.0, jupyterhub-kubespawner 7.0.0, oauthenticator 17.4.0 and
/// jupyterhub-idle-culler 1.4.0: the versions the hub's configuration is tested against
/// (`.venv-jupyterhub`). PyPI has JupyterHub 6.1.1, but no z2jh image ships it yet. Runs as
/// uid 1000 in `/srv/jupyterhub` (its `images/hub/Dockerfile`). No digest: Quay publishes none
/// in a source we could read.
pub const JUPYTERHUB_HUB: Image = Image {
    component: "jupyterhub",
    repository: "quay.io/jupyterhub/k8s-hub",
    tag: "4.4.0",
    digest: None,
};

/// JupyterHub's proxy: configurable-http-proxy 5.2.0, the tag z2jh 4.4.0's
/// `jupyterhub/values.yaml` (`proxy.chp.image`) runs. No digest (as for the hub).
pub const JUPYTERHUB_PROXY: Image = Image {
    component: "jupyterhub",
    repository: "quay.io/jupyterhub/configurable-http-proxy",
    tag: "5.2.0",
    digest: None,
};

/// conda-store's server and worker (one image, two commands): `conda-store-server` 2025.2.2,
/// the release REFERENCE.md §6 names and the one nebari-dev/nebari pins
/// (`src/_nebari/constants.py`, `DEFAULT_CONDA_STORE_IMAGE_TAG = "2025.2.2"`). Its release
/// workflow publishes the `prod` target, which pip-installs exactly that release, as
/// `quansight/conda-store-server` and `quay.io/quansight/conda-store-server`, tagged with the git
/// tag (conda-incubator/conda-store `.github/workflows/release.yaml` at 2025.2.2); Quay is taken
/// to stay clear of Docker Hub's anonymous pull limit. Runs as uid/gid 1000
/// (`conda-store-server/Dockerfile`, `user_no=1000`). `conda_store.image_tag` replaces the tag.
/// No digest: Quay publishes none in a source we could read.
pub const CONDA_STORE: Image = Image {
    component: "conda-store",
    repository: "quay.io/quansight/conda-store-server",
    tag: "2025.2.2",
    digest: None,
};

/// conda-store's Celery broker and lock store: Redis 8.10.2, the newest release the official
/// image publishes, as upstream's Kubernetes example deploys one (conda-incubator/conda-store
/// `examples/kubernetes/redis.yaml` at 2025.2.2, there `bitnami/redis:6.0.16`). Digest of the
/// official image's index for `8.10.2-alpine` from docker-library/repo-info
/// `repos/redis/remote/8.10.2-alpine.md` at commit 0bdd94409df0; the image's `redis` user is
/// uid 999.
pub const CONDA_STORE_REDIS: Image = Image {
    component: "conda-store",
    repository: "docker.io/library/redis",
    tag: "8.10.2-alpine",
    digest: Some("sha256:72cedd9603038893af961e90ac5e1a1a0d8377d5e338dbdad8fe284ea25de18f"),
};

/// Prometheus, the monitoring component's metrics store: v3.13.4, the `VERSION` file of
/// prometheus/prometheus at commit 007a9e9ba628 (the newest copy we could read), published by
/// upstream's release workflow as `quay.io/prometheus/prometheus` (its `Makefile.common`
/// `DOCKER_REPO`); Quay is taken to stay clear of Docker Hub's anonymous pull limit. Runs as
/// `nobody` (uid 65534, upstream's `Dockerfile` `USER nobody`). No digest: Quay publishes none
/// in a source we could read.
pub const PROMETHEUS: Image = Image {
    component: "monitoring",
    repository: "quay.io/prometheus/prometheus",
    tag: "v3.13.4",
    digest: None,
};

/// kube-state-metrics (object metrics for the cluster dashboard): v2.20.0 of 2026-08-16, the
/// newest tag of kubernetes/kube-state-metrics (its `CHANGELOG.md`), built against client-go
/// v1.36; `examples/standard/deployment.yaml` at that tag runs exactly this image as uid 65534.
/// No digest: the promotion manifest is not in a source we could read.
pub const KUBE_STATE_METRICS: Image = Image {
    component: "monitoring",
    repository: "registry.k8s.io/kube-state-metrics/kube-state-metrics",
    tag: "v2.20.0",
    digest: None,
};

/// The Prometheus node exporter (node metrics, one pod per node): v1.12.1, the newest release
/// tag we found pinned in public manifests (prometheus/node_exporter's own `VERSION` copy we
/// could read is an old one); published as `quay.io/prometheus/node-exporter`. Runs as
/// `nobody`. No digest: none in a source we could read.
pub const NODE_EXPORTER: Image = Image {
    component: "monitoring",
    repository: "quay.io/prometheus/node-exporter",
    tag: "v1.12.1",
    digest: None,
};

/// Grafana (dashboards at `/monitoring`): 13.0.6, the newest release we found pinned in public
/// manifests; `docker.io/grafana/grafana` is the image upstream publishes (grafana/grafana
/// `Dockerfile`, user `grafana`, uid 472). The settings used (`[server] serve_from_sub_path`,
/// `[auth.generic_oauth]` with `role_attribute_path`, file provisioning of data sources and
/// dashboards) are documented unchanged since Grafana 9. `scripts/check-images` lists newer
/// releases. No digest: none in a source we could read.
pub const GRAFANA: Image = Image {
    component: "monitoring",
    repository: "docker.io/grafana/grafana",
    tag: "13.0.6",
    digest: None,
};

/// Loki (log store, single binary): 3.7.7, the newest 3.x release we found pinned in public
/// manifests; `docker.io/grafana/loki` is the image upstream publishes (grafana/loki
/// `cmd/loki/Dockerfile`, user `loki`, uid 10001). Its configuration follows the single-binary
/// filesystem example of that line (`cmd/loki/loki-local-config.yaml`: TSDB index, schema v13).
/// No digest: none in a source we could read.
pub const LOKI: Image = Image {
    component: "monitoring",
    repository: "docker.io/grafana/loki",
    tag: "3.7.7",
    digest: None,
};

/// Grafana Alloy, the log shipper: v1.19.2, the newest release we found pinned in public
/// manifests. Alloy replaces Promtail, which Grafana deprecated at Loki 3.4 (February 2025)
/// and ended support for on 2026-03-02 (Loki docs, "Promtail agent"): at the pinned date only
/// Alloy is supported. No digest: none in a source we could read.
pub const ALLOY: Image = Image {
    component: "monitoring",
    repository: "docker.io/grafana/alloy",
    tag: "v1.19.2",
    digest: None,
};

/// OAuth2 Proxy, the forward-auth service in front of private extensions: v7.15.3, the stable
/// release at the pinned date (June 2026; v7.15.2 was a security-audit release fixing
/// authentication bypasses through forged `X-Forwarded-Uri`). QHub 0.4.5 ran
/// thomseddon/traefik-forward-auth (a fork's build of it, `maxisme/traefik-forward-auth`), whose
/// last release, 2.2.0, dates from 2020: unmaintained, so we run the maintained project the
/// Traefik docs and oauth2-proxy's own "Traefik" integration page pair with the `forwardAuth`
/// middleware. `quay.io/oauth2-proxy/oauth2-proxy` is the image upstream publishes
/// (distroless, user `nonroot`, uid 65532). No digest: none in a source we could read.
pub const OAUTH2_PROXY: Image = Image {
    component: "forward-auth",
    repository: "quay.io/oauth2-proxy/oauth2-proxy",
    tag: "v7.15.3",
    digest: None,
};

/// jupyterhub-ssh's ssh server (yuvipanda/jupyterhub-ssh, `helm-chart/images/jupyterhub-ssh/`):
/// the tag the chart's latest published release sets, `0.0.1-0.dev.git.149.he5107a4`
/// (gh-pages `index.yaml`, created 2023-09-19; its `values.yaml` `ssh.image.tag`). The project
/// publishes no numbered releases and no digests; QHub 0.4.5 ran an older build,
/// `yuvipanda/jupyterhub-ssh-ssh:0.0.1-n026.hf136ec7`
/// (`qhub/template/stages/07-kubernetes-services/modules/kubernetes/services/jupyterhub-ssh/variables.tf`).
pub const JUPYTERHUB_SSH: Image = Image {
    component: "jupyterhub-ssh",
    repository: "quay.io/jupyterhub-ssh/ssh",
    tag: "0.0.1-0.dev.git.149.he5107a4",
    digest: None,
};

/// jupyterhub-ssh's sftp server (OpenSSH's sshd, `jupyterhub-sftp/` of the same repository):
/// the tag the same chart release sets, `0.0.1-0.dev.git.142.h402a3d6` (its `values.yaml`
/// `sftp.image.tag`; the sftp image was last rebuilt at that commit). No digest published.
pub const JUPYTERHUB_SFTP: Image = Image {
    component: "jupyterhub-ssh",
    repository: "quay.io/jupyterhub-ssh/sftp",
    tag: "0.0.1-0.dev.git.142.h402a3d6",
    digest: None,
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_image_is_pinned_to_a_tag_that_is_not_latest() {
        // The table is derived from the components' declarations, not listed here.
        let all = crate::kubernetes::components::tables::pinned_images().unwrap();
        assert!(!all.is_empty());
        for image in &all {
            assert!(!image.tag.is_empty() && image.tag != "latest", "{image:?}");
            assert!(!image.repository.contains(':'), "{image:?}");
            if let Some(digest) = image.digest {
                let hex = digest.strip_prefix("sha256:").unwrap_or_default();
                assert!(
                    hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit()),
                    "{image:?}"
                );
                assert!(
                    image
                        .reference()
                        .ends_with(&format!(":{}@{digest}", image.tag))
                );
            }
        }
    }

    #[test]
    fn the_autoscaler_follows_the_cluster_minor() {
        assert_eq!(cluster_autoscaler("1.31").tag, "v1.31.5");
        assert_eq!(cluster_autoscaler("1.31.7").tag, "v1.31.5");
        assert_eq!(cluster_autoscaler("1.33").tag, "v1.33.6");
        assert_eq!(cluster_autoscaler("1.99").tag, "v1.35.2");
    }
}
