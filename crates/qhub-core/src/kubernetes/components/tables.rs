//! The tables derived from the registry rather than listed by hand: every image the platform
//! may run ([`pinned_images`]), from the components' own declarations ([`Built::images`])
//! for configs that turn every component on ([`everything_enabled`]). A component added to
//! [`REGISTRY`](super::REGISTRY) with its image declared is in the table; nothing else is
//! edited. (The URL list, the login clients and the ready times are derived per config:
//! [`super::listed_routes`], [`super::oidc_clients`], [`super::ready_times`].)

use super::{Built, KubeError, assemble};
use crate::config::{Config, ProviderKind, components::Toggle, init};
use crate::kubernetes::versions::{self, Image};
use crate::provider::ClusterFacts;

/// Configs that between them turn every registered component on: the config `qhub init` writes
/// for each provider, with its first node group given a GPU (the device plugin), monitoring on,
/// an extension with every flag (extensions, forward-auth), and the example component where it
/// is compiled in (its image is the welcome page's). The
/// facts are the config's own ([`ClusterFacts::from_config`]): the clouds without a shared
/// filesystem of their own get the in-cluster NFS server.
pub fn everything_enabled() -> Vec<(Config, ClusterFacts)> {
    ProviderKind::ALL
        .into_iter()
        .filter_map(|p| {
            let mut opts =
                init::InitOptions::new(p, "demo", "demo.example.com", "not-a-real-password");
            opts.gcp_project = Some("demo-project".into());
            let mut config = init::render(&opts).ok()?;
            let groups = match p {
                ProviderKind::Aws => config
                    .amazon_web_services
                    .as_mut()
                    .map(|s| &mut s.node_groups),
                ProviderKind::Gcp => config
                    .google_cloud_platform
                    .as_mut()
                    .map(|s| &mut s.node_groups),
                ProviderKind::Do => config.digital_ocean.as_mut().map(|s| &mut s.node_groups),
                ProviderKind::Sandbox => config.sandbox.as_mut().map(|s| &mut s.node_groups),
                _ => None,
            };
            if let Some(group) = groups.and_then(|g| g.values_mut().next()) {
                group.gpu = true;
            }
            config.monitoring = Some(Toggle::on());
            // An extension with every flag: the extensions component and forward-auth.
            config.tf_extensions = Some(vec![
                serde_json::from_value(serde_json::json!({
                    "name": "tools", "image": "docker.io/library/nginx:1.29.3",
                    "urlslug": "tools", "private": true, "oauth2client": true,
                    "keycloakadmin": true, "jwt": true, "qhubconfigyaml": true,
                }))
                .ok()?,
            ]);
            config.argo_workflows = Some(Toggle::on());
            config.kbatch = Some(Toggle::on());
            #[cfg(any(test, feature = "example-component"))]
            super::example::enable(&mut config, "hello", "hi").ok()?;
            let facts = ClusterFacts::from_config(&config);
            Some((config, facts))
        })
        .collect()
}

/// Every image the platform may run, pinned: the images every registered component declares
/// ([`Built::images`]) when [`everything_enabled`] turns it on, in registry order, and the
/// cluster autoscaler's image for each Kubernetes minor it is pinned for
/// ([`versions::CLUSTER_AUTOSCALER_TAGS`]: its tag follows the cluster's version). Each
/// reference once. `scripts/check-images` lists the same images, read from `versions.rs`.
pub fn pinned_images() -> Result<Vec<Image>, KubeError> {
    let mut out: Vec<Image> = Vec::new();
    let add = |image: Image, out: &mut Vec<Image>| {
        if !out.iter().any(|i| i.reference() == image.reference()) {
            out.push(image);
        }
    };
    for (config, facts) in everything_enabled() {
        for assembled in assemble(&config, &facts)? {
            let Built { images, .. } = assembled.built;
            for image in images {
                add(image, &mut out);
            }
        }
    }
    for (minor, _) in versions::CLUSTER_AUTOSCALER_TAGS {
        add(versions::cluster_autoscaler(minor), &mut out);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_image_table_reaches_the_optional_components_and_every_autoscaler_release() {
        // `tests/check_images.rs` holds it against every image `versions.rs` pins.
        let table = pinned_images().unwrap();
        let declared: Vec<&str> = table.iter().map(|i| i.component).collect();
        for name in [
            "traefik",
            "keycloak",
            "keycloak-postgres",
            "nfs-server",
            "nvidia-device-plugin",
        ] {
            assert!(declared.contains(&name), "{name} missing from {table:#?}");
        }
        for (minor, tag) in versions::CLUSTER_AUTOSCALER_TAGS {
            assert!(
                table
                    .iter()
                    .any(|i| i.repository == versions::CLUSTER_AUTOSCALER_REPOSITORY
                        && i.tag == *tag),
                "the autoscaler for {minor}"
            );
        }
        let mut refs: Vec<String> = table.iter().map(Image::reference).collect();
        refs.sort();
        refs.dedup();
        assert_eq!(refs.len(), table.len(), "each reference once");
    }
}
