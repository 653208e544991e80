//! What qhub-gcp reads from (and deletes in) Compute Engine, whose API the GKE client library
//! does not cover: the region's zones and quotas (`regions.get`), the project's global quotas
//! (`projects.get`), a machine type's vCPUs (`machineTypes.get`), the zones that offer an
//! accelerator (`acceleratorTypes.aggregatedList`), networks and subnetworks, and the
//! Persistent Disks the cluster's CSI driver made for PersistentVolumeClaims
//! (`disks.aggregatedList`, `disks.delete`).
//!
//! Reached at `https://compute.googleapis.com/compute/v1/projects/P/…` (the Compute Engine
//! API reference), or at [`ENDPOINT_ENV`]; against a loopback GKE endpoint (the emulator,
//! which serves both), at that endpoint.

use std::collections::BTreeMap;

use qhub_core::provider::ProviderError;
use reqwest::Method;
use serde_json::Value;

use crate::rest::{GoogleReply, GoogleRest, Reply, encode};

/// The Compute Engine endpoint override.
pub const ENDPOINT_ENV: &str = "QHUB_COMPUTE_ENDPOINT";

/// Compute Engine's own endpoint.
pub const DEFAULT_ENDPOINT: &str = "https://compute.googleapis.com";

/// The Resource Manager endpoint override (the project's IAM policy, for the node service
/// account check).
pub const RESOURCE_MANAGER_ENDPOINT_ENV: &str = "QHUB_RESOURCE_MANAGER_ENDPOINT";

/// Resource Manager's own endpoint.
pub const RESOURCE_MANAGER_ENDPOINT: &str = "https://cloudresourcemanager.googleapis.com";

/// The label GKE's Persistent Disk CSI driver puts on every disk it makes (seen on GKE PDs;
/// kubecost's GCP docs: "Google generates special labels for GKE resources (e.g.
/// goog-gke-node, goog-gke-volume)").
pub const GKE_VOLUME_LABEL: &str = "goog-gke-volume";
/// The labels GKE adds to the disks of a cluster's claims, naming the cluster and its location.
pub const CLUSTER_NAME_LABEL: &str = "goog-k8s-cluster-name";
/// See [`CLUSTER_NAME_LABEL`].
pub const CLUSTER_LOCATION_LABEL: &str = "goog-k8s-cluster-location";

/// A quota: its limit and what is in use.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quota {
    /// The limit.
    pub limit: f64,
    /// In use now.
    pub usage: f64,
}

/// What `regions.get` says of a region.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Region {
    /// Its zones (names), sorted.
    pub zones: Vec<String>,
    /// Its quotas by metric (`CPUS`, `NVIDIA_T4_GPUS`…).
    pub quotas: BTreeMap<String, Quota>,
}

/// A Persistent Disk a PersistentVolumeClaim left.
#[derive(Debug, Clone, PartialEq)]
pub struct Disk {
    /// Zone.
    pub zone: String,
    /// Disk name (`pvc-<uid>`).
    pub name: String,
    /// Size in GB.
    pub size_gb: u64,
    /// The claim, `namespace/name`, from the CSI driver's description.
    pub claim: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
}

/// The Compute Engine calls of one project.
#[derive(Debug, Clone)]
pub struct ComputeApi {
    rest: GoogleRest,
    project: String,
}

fn quotas(v: &Value) -> BTreeMap<String, Quota> {
    v["quotas"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|q| {
            Some((
                q["metric"].as_str()?.to_string(),
                Quota {
                    limit: q["limit"].as_f64()?,
                    usage: q["usage"].as_f64().unwrap_or(0.0),
                },
            ))
        })
        .collect()
}

/// The last segment of a resource URL (`…/zones/us-central1-a` → `us-central1-a`).
fn last(url: &str) -> &str {
    url.rsplit('/').next().unwrap_or(url)
}

impl ComputeApi {
    pub(crate) fn new(rest: GoogleRest, project: &str) -> Self {
        Self {
            rest,
            project: project.to_string(),
        }
    }

    fn url(&self, path: &str) -> String {
        self.url_in(&self.project, path)
    }

    fn url_in(&self, project: &str, path: &str) -> String {
        format!(
            "{}/compute/v1/projects/{}/{path}",
            self.rest.endpoint(),
            encode(project)
        )
    }

    /// A GET in the config's project; `None` when the resource does not exist (404).
    async fn get(
        &self,
        rpc: &'static str,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<Option<Value>, ProviderError> {
        self.get_in(&self.project, rpc, path, query).await
    }

    /// A GET in `project` (a Shared VPC's host project); `None` on 404.
    async fn get_in(
        &self,
        project: &str,
        rpc: &'static str,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<Option<Value>, ProviderError> {
        let reply = self
            .rest
            .send(
                rpc,
                &format!("projects/{project}/{path}"),
                Method::GET,
                &self.url_in(project, path),
                query,
                None,
                &[404],
            )
            .await?;
        Ok((reply.status.as_u16() != 404).then(|| reply.json()))
    }

    /// Every page of an aggregated list, by scope (`zones/Z`) then item.
    async fn aggregated(
        &self,
        rpc: &'static str,
        path: &str,
        field: &str,
        filter: Option<&str>,
    ) -> Result<Vec<(String, Value)>, ProviderError> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut query: Vec<(&str, String)> = Vec::new();
            if let Some(f) = filter {
                query.push(("filter", f.to_string()));
            }
            if let Some(t) = &token {
                query.push(("pageToken", t.clone()));
            }
            let Some(page) = self.get(rpc, path, &query).await? else {
                return Ok(out);
            };
            for (scope, entry) in page["items"].as_object().into_iter().flatten() {
                for item in entry[field].as_array().into_iter().flatten() {
                    out.push((last(scope).to_string(), item.clone()));
                }
            }
            token = page["nextPageToken"]
                .as_str()
                .filter(|t| !t.is_empty())
                .map(str::to_string);
            if token.is_none() {
                return Ok(out);
            }
        }
    }

    /// `regions.get`: zones and quotas; `None` when Compute does not know the region.
    pub async fn region(&self, region: &str) -> Result<Option<Region>, ProviderError> {
        let Some(v) = self
            .get(
                "compute.regions.get",
                &format!("regions/{}", encode(region)),
                &[],
            )
            .await?
        else {
            return Ok(None);
        };
        let mut zones: Vec<String> = v["zones"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(|z| last(z).to_string())
            .collect();
        zones.sort();
        Ok(Some(Region {
            zones,
            quotas: quotas(&v),
        }))
    }

    /// `projects.get`: the project's global quotas (`GPUS_ALL_REGIONS`, `CPUS_ALL_REGIONS`)
    /// and its Compute Engine default service account (the nodes' identity).
    pub async fn project(
        &self,
    ) -> Result<(BTreeMap<String, Quota>, Option<String>), ProviderError> {
        Ok(self
            .get("compute.projects.get", "", &[])
            .await?
            .map(|v| {
                (
                    quotas(&v),
                    v["defaultServiceAccount"].as_str().map(str::to_string),
                )
            })
            .unwrap_or_default())
    }

    /// `machineTypes.get`: the vCPUs (`guestCpus`) of `machine` in `zone`; `None` when the zone
    /// does not offer it.
    pub async fn guest_cpus(
        &self,
        zone: &str,
        machine: &str,
    ) -> Result<Option<u32>, ProviderError> {
        let path = format!("zones/{}/machineTypes/{}", encode(zone), encode(machine));
        Ok(self
            .get("compute.machineTypes.get", &path, &[])
            .await?
            .and_then(|v| v["guestCpus"].as_u64())
            .and_then(|n| u32::try_from(n).ok()))
    }

    /// `acceleratorTypes.aggregatedList` (every page): accelerator type → the zones offering it,
    /// among `zones`.
    pub async fn accelerator_zones(
        &self,
        zones: &[String],
    ) -> Result<BTreeMap<String, Vec<String>>, ProviderError> {
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        // Counted as a read: an aggregated list is a list.
        for (zone, t) in self
            .aggregated(
                "compute.acceleratorTypes.list",
                "aggregated/acceleratorTypes",
                "acceleratorTypes",
                None,
            )
            .await?
        {
            if let Some(name) = t["name"].as_str()
                && zones.contains(&zone)
            {
                out.entry(name.to_string()).or_default().push(zone);
            }
        }
        for z in out.values_mut() {
            z.sort();
            z.dedup();
        }
        Ok(out)
    }

    /// `networks.get`: whether network `name` exists in `project`.
    pub async fn network_exists(&self, project: &str, name: &str) -> Result<bool, ProviderError> {
        let path = format!("global/networks/{}", encode(name));
        Ok(self
            .get_in(project, "compute.networks.get", &path, &[])
            .await?
            .is_some())
    }

    /// `subnetworks.get`: the network (name) that subnetwork `name` of `region` in `project`
    /// belongs to, if it exists.
    pub async fn subnetwork_network(
        &self,
        project: &str,
        region: &str,
        name: &str,
    ) -> Result<Option<String>, ProviderError> {
        let path = format!("regions/{}/subnetworks/{}", encode(region), encode(name));
        Ok(self
            .get_in(project, "compute.subnetworks.get", &path, &[])
            .await?
            .map(|v| last(v["network"].as_str().unwrap_or_default()).to_string()))
    }

    /// The disks GKE's CSI driver made for claims (`disks.aggregatedList` filtered to the
    /// [`GKE_VOLUME_LABEL`], every page) that `belongs` accepts by their labels.
    pub async fn claim_disks(
        &self,
        belongs: impl Fn(&BTreeMap<String, String>) -> bool,
    ) -> Result<Vec<Disk>, ProviderError> {
        let filter = format!("labels.{GKE_VOLUME_LABEL}:*");
        let mut out = Vec::new();
        for (zone, d) in self
            .aggregated(
                "compute.disks.list",
                "aggregated/disks",
                "disks",
                Some(&filter),
            )
            .await?
        {
            let labels: BTreeMap<String, String> = d["labels"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect();
            if !labels.contains_key(GKE_VOLUME_LABEL) || !belongs(&labels) {
                continue;
            }
            // The CSI driver writes the claim into the description as JSON
            // (gcp-compute-persistent-disk-csi-driver, pkg/parameters/constants.go).
            let description: Value =
                serde_json::from_str(d["description"].as_str().unwrap_or("{}")).unwrap_or_default();
            let claim = format!(
                "{}/{}",
                description["kubernetes.io/created-for/pvc/namespace"]
                    .as_str()
                    .unwrap_or("?"),
                description["kubernetes.io/created-for/pvc/name"]
                    .as_str()
                    .unwrap_or("?")
            );
            out.push(Disk {
                zone,
                name: d["name"].as_str().unwrap_or_default().to_string(),
                size_gb: d["sizeGb"]
                    .as_str()
                    .and_then(|s| s.parse().ok())
                    .or_else(|| d["sizeGb"].as_u64())
                    .unwrap_or(0),
                claim,
                labels,
            });
        }
        Ok(out)
    }

    /// `disks.delete`, waiting for its zonal operation; a disk gone already is done. A disk
    /// still attached (its node is going away with the cluster) is busy: retried.
    pub async fn delete_disk(&self, zone: &str, name: &str) -> Result<(), ProviderError> {
        let path = format!("zones/{}/disks/{}", encode(zone), encode(name));
        let what = format!("projects/{}/{path}", self.project);
        let reply: Reply = self
            .rest
            .send(
                "compute.disks.delete",
                &what,
                Method::DELETE,
                &self.url(&path),
                &[],
                None,
                &[400, 404],
            )
            .await?;
        match reply.status.as_u16() {
            404 => return Ok(()),
            400 if reply.reason() == "resourceInUseByAnotherResource" => {
                return Err(ProviderError::conflict(format!(
                    "compute.disks.delete {what}: {}",
                    reply.message()
                )));
            }
            400 => {
                return Err(ProviderError::Fatal(format!(
                    "compute.disks.delete {what}: {}",
                    reply.message()
                )));
            }
            _ => {}
        }
        let op = reply.json();
        if op["status"].as_str() == Some("DONE") {
            return op_error(&op, &what);
        }
        let id = op["name"].as_str().unwrap_or_default().to_string();
        let op_path = format!("zones/{}/operations/{}", encode(zone), encode(&id));
        qhub_core::cloud::poll::poll_until(
            &format!("deleting disk {name}"),
            std::time::Duration::from_secs(600),
            std::time::Duration::from_secs(2),
            || async {
                let op = self
                    .get("compute.zoneOperations.get", &op_path, &[])
                    .await?
                    .unwrap_or_default();
                Ok(if op["status"].as_str() == Some("DONE") {
                    qhub_core::cloud::poll::Poll::Ready(op)
                } else {
                    qhub_core::cloud::poll::Poll::Pending(
                        op["status"].as_str().unwrap_or("?").to_string(),
                    )
                })
            },
        )
        .await
        .and_then(|op| op_error(&op, &what))
    }
}

/// A finished Compute operation's `error`, if any.
fn op_error(op: &Value, what: &str) -> Result<(), ProviderError> {
    match op["error"]["errors"][0]["message"].as_str() {
        Some(m) => Err(ProviderError::Fatal(format!("{what}: {m}"))),
        None => Ok(()),
    }
}
