//! Every container image the platform runs, pinned, in one table.
//!
//! Nothing is pulled by a floating tag: an upgrade of a component is a change to this file (and
//! to the snapshots of the rendered manifests), reviewed like any other. Images cannot be pulled
//! on the machine that builds qhub-rs; tags come from the projects' release notes.

/// One pinned image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Image {
    /// The component that runs it.
    pub component: &'static str,
    /// Repository, without tag.
    pub repository: &'static str,
    /// The pinned tag.
    pub tag: &'static str,
}

impl Image {
    /// `repository:tag`.
    pub fn reference(&self) -> String {
        format!("{}:{}", self.repository, self.tag)
    }
}

/// The welcome page (unprivileged nginx, listens on 8080).
pub const WELCOME: Image = Image {
    component: "qhub-welcome",
    repository: "docker.io/nginxinc/nginx-unprivileged",
    tag: "1.27-alpine",
};

/// Traefik, the ingress (current stable major, v3).
pub const TRAEFIK: Image = Image {
    component: "traefik",
    repository: "docker.io/library/traefik",
    tag: "v3.7.0",
};

/// Keycloak, the identity provider.
pub const KEYCLOAK: Image = Image {
    component: "keycloak",
    repository: "quay.io/keycloak/keycloak",
    tag: "26.7.4",
};

/// Keycloak's database.
pub const POSTGRES: Image = Image {
    component: "keycloak-postgres",
    repository: "docker.io/library/postgres",
    tag: "17.6-alpine",
};

/// The in-cluster NFS server for the shared filesystem where the cloud has none.
pub const NFS_SERVER: Image = Image {
    component: "nfs-server",
    repository: "registry.k8s.io/volume-nfs",
    tag: "0.8",
};

/// The NVIDIA device plugin (advertises `nvidia.com/gpu`).
pub const NVIDIA_DEVICE_PLUGIN: Image = Image {
    component: "nvidia-device-plugin",
    repository: "nvcr.io/nvidia/k8s-device-plugin",
    tag: "v0.17.2",
};

/// The cluster autoscaler's repository; its tag follows the cluster's minor version
/// ([`cluster_autoscaler`]).
pub const CLUSTER_AUTOSCALER_REPOSITORY: &str = "registry.k8s.io/autoscaling/cluster-autoscaler";

/// Cluster-autoscaler releases by Kubernetes minor version (the autoscaler supports the minor
/// it was released for).
pub const CLUSTER_AUTOSCALER_TAGS: &[(&str, &str)] = &[
    ("1.29", "v1.29.5"),
    ("1.30", "v1.30.4"),
    ("1.31", "v1.31.2"),
    ("1.32", "v1.32.1"),
    ("1.33", "v1.33.0"),
    ("1.34", "v1.34.1"),
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
        .map_or("v1.34.1", |(_, t)| t);
    Image {
        component: "cluster-autoscaler",
        repository: CLUSTER_AUTOSCALER_REPOSITORY,
        tag,
    }
}

/// Every fixed image (the autoscaler's varies with the cluster version).
pub const ALL: &[Image] = &[
    WELCOME,
    TRAEFIK,
    KEYCLOAK,
    POSTGRES,
    NFS_SERVER,
    NVIDIA_DEVICE_PLUGIN,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_image_is_pinned_to_a_tag_that_is_not_latest() {
        for image in ALL {
            assert!(!image.tag.is_empty() && image.tag != "latest", "{image:?}");
            assert!(!image.repository.contains(':'), "{image:?}");
        }
    }

    #[test]
    fn the_autoscaler_follows_the_cluster_minor() {
        assert_eq!(cluster_autoscaler("1.31").tag, "v1.31.2");
        assert_eq!(cluster_autoscaler("1.31.7").tag, "v1.31.2");
        assert_eq!(cluster_autoscaler("1.99").tag, "v1.34.1");
    }
}
