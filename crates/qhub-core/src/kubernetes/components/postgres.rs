//! The single-replica PostgreSQL StatefulSet the platform's databases share (Keycloak's,
//! conda-store's): the official alpine image run as its `postgres` user (uid 70), credentials
//! from a generated Secret, data on a ReadWriteOnce claim, ready when `pg_isready` answers.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec};
use k8s_openapi::api::core::v1::{
    ContainerPort, EmptyDirVolumeSource, EnvVar, EnvVarSource, ExecAction, PersistentVolumeClaim,
    PersistentVolumeClaimSpec, PodSpec, Probe, SecretKeySelector, Volume, VolumeMount,
    VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::Context;
use crate::kubernetes::pods::{self, Placement};
use crate::kubernetes::versions::Image;

/// The official Postgres alpine image's `postgres` user.
pub const UID: i64 = 70;

/// A database: its StatefulSet is named (and labelled as component) `name`.
#[derive(Debug, Clone, Copy)]
pub struct Postgres<'a> {
    /// The StatefulSet's name, its Service's, and its component label.
    pub name: &'a str,
    /// The pinned Postgres image.
    pub image: &'a Image,
    /// The Secret holding the credentials.
    pub secret: &'a str,
    /// The Secret's keys of the user name, the password and the database name.
    pub keys: [&'a str; 3],
    /// The user and the database `pg_isready` checks.
    pub user: &'a str,
    /// The database name.
    pub database: &'a str,
    /// The data claim's size (`10Gi`).
    pub size: &'a str,
    /// The name of the container's port 5432.
    pub port_name: &'a str,
}

fn from_secret(name: &str, secret: &str, key: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.into(),
                key: key.into(),
                optional: Some(false),
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

impl Postgres<'_> {
    /// Its StatefulSet, on the `general` group.
    pub fn stateful_set(&self, ctx: &Context<'_>) -> StatefulSet {
        let mut container = pods::container(
            "postgres",
            self.image.reference(),
            pods::resources("100m", "256Mi", "1Gi"),
        );
        container.security_context = Some(pods::restricted(false));
        let [user, password, database] = self.keys;
        container.env = Some(vec![
            from_secret("POSTGRES_USER", self.secret, user),
            from_secret("POSTGRES_PASSWORD", self.secret, password),
            from_secret("POSTGRES_DB", self.secret, database),
            EnvVar {
                name: "PGDATA".into(),
                value: Some("/var/lib/postgresql/data/pgdata".into()),
                ..EnvVar::default()
            },
        ]);
        container.ports = Some(vec![ContainerPort {
            name: Some(self.port_name.into()),
            container_port: 5432,
            ..ContainerPort::default()
        }]);
        container.readiness_probe = Some(Probe {
            exec: Some(ExecAction {
                command: Some(vec![
                    "pg_isready".into(),
                    "-U".into(),
                    self.user.into(),
                    "-d".into(),
                    self.database.into(),
                ]),
            }),
            period_seconds: Some(5),
            ..Probe::default()
        });
        container.volume_mounts = Some(vec![
            VolumeMount {
                name: "data".into(),
                mount_path: "/var/lib/postgresql/data".into(),
                ..VolumeMount::default()
            },
            VolumeMount {
                name: "run".into(),
                mount_path: "/var/run/postgresql".into(),
                ..VolumeMount::default()
            },
        ]);
        let mut pod = PodSpec {
            containers: vec![container],
            security_context: Some(pods::non_root_pod(UID)),
            automount_service_account_token: Some(false),
            volumes: Some(vec![Volume {
                name: "run".into(),
                empty_dir: Some(EmptyDirVolumeSource::default()),
                ..Volume::default()
            }]),
            ..PodSpec::default()
        };
        Placement::on_group(ctx.facts, "general").place(&mut pod);
        let claim = PersistentVolumeClaim {
            metadata: ObjectMeta {
                name: Some("data".into()),
                ..ObjectMeta::default()
            },
            spec: Some(PersistentVolumeClaimSpec {
                access_modes: Some(vec!["ReadWriteOnce".into()]),
                storage_class_name: ctx.facts.storage_class.clone(),
                resources: Some(VolumeResourceRequirements {
                    requests: Some(BTreeMap::from([(
                        "storage".to_string(),
                        Quantity(self.size.into()),
                    )])),
                    ..VolumeResourceRequirements::default()
                }),
                ..PersistentVolumeClaimSpec::default()
            }),
            ..PersistentVolumeClaim::default()
        };
        StatefulSet {
            metadata: ctx.meta(self.name, self.name),
            spec: Some(StatefulSetSpec {
                replicas: Some(1),
                service_name: Some(self.name.into()),
                selector: super::pod_selector(self.name),
                template: super::pod_template(self.name, pod),
                volume_claim_templates: Some(vec![claim]),
                ..StatefulSetSpec::default()
            }),
            ..StatefulSet::default()
        }
    }
}
