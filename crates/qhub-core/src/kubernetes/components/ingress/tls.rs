//! TLS at the ingress, per `certificate.type`:
//!
//! - `lets-encrypt`: Traefik's ACME resolver (TLS-ALPN challenge) with `acme_email` and
//!   `acme_server`; its store lives on a persistent volume so that certificates survive a
//!   restart (QHub lost them on every one, and hit Let's Encrypt's rate limits).
//! - `self-signed`: a certificate for the domain generated once by qhub and kept in a Secret
//!   ([`crate::kubernetes::recipes`]); re-deploys reuse it.
//! - `existing`: the Secret `certificate.secret_name`, which must exist in the namespace: the
//!   apply checks it first and says how to create it.
//! - `disabled`: plain HTTP, no redirect.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimSpec, PersistentVolumeClaimVolumeSource, Secret,
    Volume, VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use serde_json::{Value as Json, json};

use super::super::{Context, KubeError, manifest};
use super::{NAME, WEBSECURE};
use crate::config::Config;
use crate::config::certificate::CertificateKind;
use crate::kubernetes::recipes;

/// Let's Encrypt's production directory (QHub's default `acme_server`).
pub use crate::config::certificate::LETS_ENCRYPT_PRODUCTION as LETS_ENCRYPT;
/// The name of the ACME certificate resolver.
pub const RESOLVER: &str = "letsencrypt";
/// The Secret holding the generated self-signed certificate.
pub const SELF_SIGNED_SECRET: &str = "qhub-self-signed-tls";
/// The PersistentVolumeClaim holding the ACME store.
pub const ACME_CLAIM: &str = "traefik-acme";

/// What TLS adds to Traefik: arguments, objects, volumes.
#[derive(Debug, Default)]
pub struct Setup {
    /// Traefik's static configuration arguments.
    pub args: Vec<String>,
    /// Extra objects (the ACME volume claim, the TLSStore, the self-signed Secret).
    pub objects: Vec<Json>,
    /// Pod volumes.
    pub volumes: Vec<Volume>,
    /// Traefik's mounts.
    pub mounts: Vec<VolumeMount>,
    /// True when Traefik holds a ReadWriteOnce volume (its rollout must be `Recreate`).
    pub persistent: bool,
}

/// Whether the platform serves HTTPS.
pub fn enabled(config: &Config) -> bool {
    config.certificate.kind != CertificateKind::Disabled
}

/// The `tls` section of an IngressRoute.
pub fn route_tls(config: &Config) -> Option<Json> {
    match config.certificate.kind {
        CertificateKind::Disabled => None,
        CertificateKind::LetsEncrypt => Some(json!({
            "certResolver": RESOLVER,
            "domains": [{"main": config.domain}],
        })),
        // The default TLSStore's certificate.
        CertificateKind::SelfSigned | CertificateKind::Existing => Some(json!({})),
    }
}

fn default_store(ctx: &Context<'_>, secret: &str) -> Result<Json, KubeError> {
    Ok(json!({
        "apiVersion": format!("{}/{}", super::crds::GROUP, super::crds::VERSION),
        "kind": "TLSStore",
        // Traefik only reads the store named `default`.
        "metadata": manifest(&ctx.meta(NAME, "default"))?,
        "spec": {"defaultCertificate": {"secretName": secret}},
    }))
}

/// The TLS set-up for the config.
pub fn setup(ctx: &Context<'_>) -> Result<Setup, KubeError> {
    let config = ctx.config;
    let mut s = Setup::default();
    if !enabled(config) {
        return Ok(s);
    }
    s.args.extend([
        "--entrypoints.web.http.redirections.entrypoint.to=:443".to_string(),
        "--entrypoints.web.http.redirections.entrypoint.scheme=https".to_string(),
        "--entrypoints.web.http.redirections.entrypoint.permanent=true".to_string(),
        format!("--entrypoints.{}.http.tls=true", WEBSECURE.name),
    ]);
    match config.certificate.kind {
        CertificateKind::LetsEncrypt => {
            let email = config.certificate.acme_email.clone().ok_or_else(|| {
                KubeError::Invalid(
                    "certificate.acme_email: lets-encrypt needs an email address for the ACME account".into(),
                )
            })?;
            let server = config
                .certificate
                .acme_server
                .clone()
                .unwrap_or_else(|| LETS_ENCRYPT.to_string());
            s.args.extend([
                format!("--certificatesresolvers.{RESOLVER}.acme.tlschallenge=true"),
                format!("--certificatesresolvers.{RESOLVER}.acme.email={email}"),
                format!("--certificatesresolvers.{RESOLVER}.acme.caserver={server}"),
                format!("--certificatesresolvers.{RESOLVER}.acme.storage=/data/acme.json"),
            ]);
            let claim = PersistentVolumeClaim {
                metadata: ctx.meta(NAME, ACME_CLAIM),
                spec: Some(PersistentVolumeClaimSpec {
                    access_modes: Some(vec!["ReadWriteOnce".into()]),
                    storage_class_name: ctx.facts.storage_class.clone(),
                    resources: Some(VolumeResourceRequirements {
                        requests: Some(BTreeMap::from([(
                            "storage".to_string(),
                            Quantity("1Gi".into()),
                        )])),
                        ..VolumeResourceRequirements::default()
                    }),
                    ..PersistentVolumeClaimSpec::default()
                }),
                ..PersistentVolumeClaim::default()
            };
            s.objects.push(manifest(&claim)?);
            s.volumes.push(Volume {
                name: "acme".into(),
                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                    claim_name: ACME_CLAIM.into(),
                    ..PersistentVolumeClaimVolumeSource::default()
                }),
                ..Volume::default()
            });
            s.mounts.push(VolumeMount {
                name: "acme".into(),
                mount_path: "/data".into(),
                ..VolumeMount::default()
            });
            s.persistent = true;
        }
        CertificateKind::SelfSigned => {
            let mut meta = ctx.meta(NAME, SELF_SIGNED_SECRET);
            meta.annotations = Some(BTreeMap::from([(
                recipes::ANNOTATION.to_string(),
                recipes::Recipe::SelfSignedTls {
                    hosts: vec![config.domain.clone()],
                }
                .to_string(),
            )]));
            let secret = Secret {
                metadata: meta,
                type_: Some("kubernetes.io/tls".into()),
                ..Secret::default()
            };
            s.objects.push(manifest(&secret)?);
            s.objects.push(default_store(ctx, SELF_SIGNED_SECRET)?);
        }
        CertificateKind::Existing => {
            let name = config.certificate.secret_name.clone().ok_or_else(|| {
                KubeError::Invalid(
                    "certificate.secret_name: an `existing` certificate names the TLS Secret to serve".into(),
                )
            })?;
            let mut store = default_store(ctx, &name)?;
            store["metadata"]["annotations"] = json!({
                recipes::REQUIRES_ANNOTATION: recipes::Requirement {
                    kind: "Secret".into(),
                    name: name.clone(),
                    config_key: "certificate.secret_name".into(),
                    hint: format!(
                        "create it with `kubectl -n {} create secret tls {name} --cert=FULLCHAIN.pem --key=KEY.pem`",
                        ctx.namespace()
                    ),
                }
                .to_string(),
            });
            s.objects.push(store);
        }
        CertificateKind::Disabled => {}
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ProviderKind;
    use crate::provider::ClusterFacts;

    #[test]
    fn the_acme_store_keeps_mode_0600_across_restarts() {
        let mut config = crate::kubernetes::components::test_config(ProviderKind::Aws);
        config.certificate.kind = CertificateKind::LetsEncrypt;
        config.certificate.acme_email = Some("admin@example.com".into());
        let facts = ClusterFacts::from_config(&config);
        let manifests = crate::kubernetes::components::manifests(&config, &facts).unwrap();
        let traefik = manifests
            .iter()
            .find(|m| m["kind"] == "Deployment" && m["metadata"]["name"] == NAME)
            .expect("the Traefik Deployment");
        let pod = &traefik["spec"]["template"]["spec"];
        assert!(
            pod["volumes"]
                .as_array()
                .unwrap()
                .iter()
                .any(|v| v["persistentVolumeClaim"]["claimName"] == ACME_CLAIM),
            "{pod}"
        );
        // The volume is made writable for Traefik's group on its first mount only: kubelet
        // does not add group bits to acme.json again on a restart.
        let security = &pod["securityContext"];
        assert_eq!(security["fsGroup"], 65532, "{security}");
        assert_eq!(
            security["fsGroupChangePolicy"], "OnRootMismatch",
            "{security}"
        );
        // No root init container to chmod the store.
        assert!(pod.get("initContainers").is_none(), "{pod}");
    }
}
