//! Pod Security admission, as the API server's built-in `PodSecurity` admission plugin
//! enforces it: a namespace's `pod-security.kubernetes.io/enforce` label (`privileged`,
//! `baseline` or `restricted`; absent means the cluster default, `privileged`) decides which
//! pods may be created in it (Kubernetes docs, "Pod Security Standards" and "Pod Security
//! Admission"; the checks of `k8s.io/pod-security-admission/policy/check_*.go`, whose wording
//! the messages follow).
//!
//! A refused pod is a 403 `Forbidden` (`pods "NAME" is forbidden: violates PodSecurity
//! "restricted:latest": ...`). Workloads are admitted (enforcement applies to pods only), but
//! their controllers cannot create pods: a Deployment gets the `ReplicaFailure` condition
//! (reason `FailedCreate`, the admission message) that the deployment controller copies from
//! its ReplicaSet, and never becomes ready; a StatefulSet or DaemonSet never becomes ready
//! (their controllers only emit `FailedCreate` events, which this server does not keep).
//!
//! Checked: host namespaces, privileged containers, capabilities, hostPath volumes, host
//! ports, seccomp (baseline); volume types, privilege escalation, running as non-root,
//! `runAsUser: 0`, seccomp `RuntimeDefault`/`Localhost`, dropping `ALL` capabilities
//! (restricted). Not checked: AppArmor, SELinux options, `procMount`, sysctls, Windows
//! host processes (nothing we deploy sets them), and the `enforce-version` label (every level
//! is `latest`).

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::store::{Key, State};

/// The namespace label that sets the enforced level.
pub(crate) const ENFORCE_LABEL: &str = "pod-security.kubernetes.io/enforce";

/// Capabilities `baseline` lets a container add (Pod Security Standards, "Capabilities").
const BASELINE_CAPABILITIES: &[&str] = &[
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

/// Volume types `restricted` allows (Pod Security Standards, "Volume Types").
const RESTRICTED_VOLUMES: &[&str] = &[
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
];

/// A Pod Security Standards level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Level {
    Privileged,
    Baseline,
    Restricted,
}

impl Level {
    fn name(self) -> &'static str {
        match self {
            Level::Privileged => "privileged",
            Level::Baseline => "baseline",
            Level::Restricted => "restricted",
        }
    }
}

/// The level enforced in `namespace`: its label, or `privileged` (the default of an API
/// server without an admission configuration). An unknown value counts as `restricted`, as
/// the admission plugin treats an invalid level as the most restrictive.
pub(crate) fn level(st: &State, namespace: &str) -> Level {
    let key = Key {
        group: String::new(),
        kind: "Namespace".into(),
        namespace: String::new(),
        name: namespace.to_string(),
    };
    let label = st
        .objects
        .get(&key)
        .and_then(|ns| ns.pointer("/metadata/labels"))
        .and_then(|labels| labels.get(ENFORCE_LABEL))
        .and_then(Value::as_str);
    match label {
        None | Some("privileged") => Level::Privileged,
        Some("baseline") => Level::Baseline,
        Some(_) => Level::Restricted,
    }
}

fn containers(spec: &Value) -> impl Iterator<Item = &Value> {
    ["initContainers", "containers", "ephemeralContainers"]
        .into_iter()
        .filter_map(|list| spec.get(list).and_then(Value::as_array))
        .flatten()
}

fn name(c: &Value) -> &str {
    c.get("name").and_then(Value::as_str).unwrap_or("")
}

fn quoted(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("{n:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn containers_phrase(names: &[String]) -> String {
    if names.len() == 1 {
        format!("container {}", quoted(names))
    } else {
        format!("containers {}", quoted(names))
    }
}

/// What a pod spec breaks at `level`, one entry per check, in the admission plugin's words.
pub(crate) fn violations(level: Level, spec: &Value) -> Vec<String> {
    let mut out = Vec::new();
    if level == Level::Privileged {
        return out;
    }
    let flag = |v: &Value, ptr: &str| v.pointer(ptr).and_then(Value::as_bool);
    // Baseline.
    let hosts: Vec<String> = ["hostNetwork", "hostPID", "hostIPC"]
        .into_iter()
        .filter(|k| spec.get(*k).and_then(Value::as_bool) == Some(true))
        .map(|k| format!("{k}=true"))
        .collect();
    if !hosts.is_empty() {
        out.push(format!("host namespaces ({})", hosts.join(", ")));
    }
    let privileged: Vec<String> = containers(spec)
        .filter(|c| flag(c, "/securityContext/privileged") == Some(true))
        .map(|c| name(c).to_string())
        .collect();
    if !privileged.is_empty() {
        out.push(format!(
            "privileged ({} must not set securityContext.privileged=true)",
            containers_phrase(&privileged)
        ));
    }
    let mut added_beyond_baseline = Vec::new();
    for c in containers(spec) {
        for cap in c
            .pointer("/securityContext/capabilities/add")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            if !BASELINE_CAPABILITIES.contains(&cap) {
                added_beyond_baseline.push((name(c).to_string(), cap.to_string()));
            }
        }
    }
    if !added_beyond_baseline.is_empty() {
        let names: Vec<String> = added_beyond_baseline
            .iter()
            .map(|(n, _)| n.clone())
            .collect();
        let caps: Vec<String> = added_beyond_baseline
            .iter()
            .map(|(_, c)| c.clone())
            .collect();
        out.push(format!(
            "non-default capabilities ({} must not include {} in securityContext.capabilities.add)",
            containers_phrase(&names),
            quoted(&caps)
        ));
    }
    let volumes: Vec<&Value> = spec
        .get("volumes")
        .and_then(Value::as_array)
        .map(|v| v.iter().collect())
        .unwrap_or_default();
    let host_paths: Vec<String> = volumes
        .iter()
        .filter(|v| v.get("hostPath").is_some())
        .map(|v| name(v).to_string())
        .collect();
    if !host_paths.is_empty() {
        out.push(format!(
            "hostPath volumes (volume{} {})",
            if host_paths.len() == 1 { "" } else { "s" },
            quoted(&host_paths)
        ));
    }
    let mut host_ports = Vec::new();
    for c in containers(spec) {
        for port in c
            .get("ports")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(p) = port
                .get("hostPort")
                .and_then(Value::as_i64)
                .filter(|p| *p != 0)
            {
                host_ports.push((name(c).to_string(), p));
            }
        }
    }
    if !host_ports.is_empty() {
        let names: Vec<String> = host_ports.iter().map(|(n, _)| n.clone()).collect();
        let ports: Vec<String> = host_ports.iter().map(|(_, p)| p.to_string()).collect();
        out.push(format!(
            "hostPort ({} uses hostPort {})",
            containers_phrase(&names),
            ports.join(", ")
        ));
    }
    let seccomp = |v: &Value| {
        v.pointer("/securityContext/seccompProfile/type")
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let pod_seccomp = spec
        .pointer("/securityContext/seccompProfile/type")
        .and_then(Value::as_str);
    let unconfined: Vec<String> = containers(spec)
        .filter(|c| seccomp(c).as_deref() == Some("Unconfined"))
        .map(|c| name(c).to_string())
        .collect();
    if pod_seccomp == Some("Unconfined") || !unconfined.is_empty() {
        out.push("seccompProfile (seccompProfile.type \"Unconfined\" is forbidden)".into());
    }
    if level == Level::Baseline {
        return out;
    }
    // Restricted.
    let restricted_volumes: Vec<String> = volumes
        .iter()
        .filter_map(|v| {
            let typ = v
                .as_object()?
                .keys()
                .find(|k| k.as_str() != "name")?
                .clone();
            (!RESTRICTED_VOLUMES.contains(&typ.as_str()))
                .then(|| format!("volume {:?} uses restricted volume type {typ:?}", name(v)))
        })
        .collect();
    if !restricted_volumes.is_empty() {
        out.push(format!(
            "restricted volume types ({})",
            restricted_volumes.join(", ")
        ));
    }
    let escalating: Vec<String> = containers(spec)
        .filter(|c| flag(c, "/securityContext/allowPrivilegeEscalation") != Some(false))
        .map(|c| name(c).to_string())
        .collect();
    if !escalating.is_empty() {
        out.push(format!(
            "allowPrivilegeEscalation != false ({} must set securityContext.allowPrivilegeEscalation=false)",
            containers_phrase(&escalating)
        ));
    }
    // runAsNonRoot: the pod's, unless a container sets its own.
    let pod_non_root = flag(spec, "/securityContext/runAsNonRoot");
    let root_allowed: Vec<String> = containers(spec)
        .filter(|c| {
            let own = flag(c, "/securityContext/runAsNonRoot");
            own == Some(false) || own.is_none() && pod_non_root != Some(true)
        })
        .map(|c| name(c).to_string())
        .collect();
    if !root_allowed.is_empty() {
        out.push(format!(
            "runAsNonRoot != true (pod or {} must set securityContext.runAsNonRoot=true)",
            containers_phrase(&root_allowed)
        ));
    }
    let uid = |v: &Value| {
        v.pointer("/securityContext/runAsUser")
            .and_then(Value::as_i64)
    };
    let root_users: Vec<String> = containers(spec)
        .filter(|c| uid(c) == Some(0))
        .map(|c| name(c).to_string())
        .collect();
    if uid(spec) == Some(0) || !root_users.is_empty() {
        out.push("runAsUser=0 (pod and containers must not set runAsUser=0)".into());
    }
    let confined = |t: Option<&str>| matches!(t, Some("RuntimeDefault" | "Localhost"));
    let unconfined: Vec<String> = containers(spec)
        .filter(|c| {
            let own = seccomp(c);
            match own.as_deref() {
                Some(t) => !confined(Some(t)),
                None => !confined(pod_seccomp),
            }
        })
        .map(|c| name(c).to_string())
        .collect();
    if !unconfined.is_empty() {
        out.push(format!(
            "seccompProfile (pod or {} must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\")",
            containers_phrase(&unconfined)
        ));
    }
    let not_dropping: Vec<String> = containers(spec)
        .filter(|c| {
            !c.pointer("/securityContext/capabilities/drop")
                .and_then(Value::as_array)
                .is_some_and(|d| d.iter().any(|x| x.as_str() == Some("ALL")))
        })
        .map(|c| name(c).to_string())
        .collect();
    if !not_dropping.is_empty() {
        out.push(format!(
            "unrestricted capabilities ({} must set securityContext.capabilities.drop=[\"ALL\"])",
            containers_phrase(&not_dropping)
        ));
    }
    let added: Vec<String> = containers(spec)
        .filter(|c| {
            c.pointer("/securityContext/capabilities/add")
                .and_then(Value::as_array)
                .is_some_and(|a| a.iter().any(|x| x.as_str() != Some("NET_BIND_SERVICE")))
        })
        .map(|c| name(c).to_string())
        .collect();
    if !added.is_empty() {
        out.push(format!(
            "unrestricted capabilities ({} must not add capabilities other than \"NET_BIND_SERVICE\")",
            containers_phrase(&added)
        ));
    }
    out
}

/// Why the pod `pod_name` with `spec` may not be created in `namespace`, as the API server
/// says it (`pods "NAME" is forbidden: violates PodSecurity "LEVEL:latest": ...`).
pub(crate) fn refusal(st: &State, namespace: &str, pod_name: &str, spec: &Value) -> Option<String> {
    let level = level(st, namespace);
    let found = violations(level, spec);
    (!found.is_empty()).then(|| {
        format!(
            "pods {pod_name:?} is forbidden: violates PodSecurity \"{}:latest\": {}",
            level.name(),
            found.join(", ")
        )
    })
}

/// Why the pods of the workload `obj` (stored under `key`) cannot be created, if they cannot.
pub(crate) fn workload_refusal(st: &State, key: &Key, obj: &Value) -> Option<String> {
    if key.group != "apps"
        || !matches!(
            key.kind.as_str(),
            "Deployment" | "StatefulSet" | "DaemonSet"
        )
    {
        return None;
    }
    let spec = obj.pointer("/spec/template/spec")?;
    // The controllers create pods under a generated name; the API server's message carries
    // the prefix (a Deployment's pods are its ReplicaSet's, named after the template's hash).
    let prefix = match key.kind.as_str() {
        "Deployment" => {
            let template = obj
                .pointer("/spec/template")
                .cloned()
                .unwrap_or(Value::Null);
            let digest = Sha256::digest(template.to_string().as_bytes());
            let hash: String = digest.iter().take(5).map(|b| format!("{b:02x}")).collect();
            format!("{}-{hash}-", key.name)
        }
        _ => format!("{}-", key.name),
    };
    refusal(st, &key.namespace, &prefix, spec)
}

/// Records a workload's refused pods in its status: a Deployment's `ReplicaFailure` condition
/// (what the deployment controller copies from its ReplicaSet, reason `FailedCreate`).
pub(crate) fn record(key: &Key, obj: &mut Value, message: &str, now: &str) {
    if key.kind != "Deployment" {
        return;
    }
    let Some(status) = obj.get_mut("status").and_then(Value::as_object_mut) else {
        return;
    };
    let conditions = status.entry("conditions").or_insert_with(|| json!([]));
    if let Some(list) = conditions.as_array_mut() {
        list.retain(|c| c.get("type").and_then(Value::as_str) != Some("ReplicaFailure"));
        list.push(json!({
            "type": "ReplicaFailure",
            "status": "True",
            "reason": "FailedCreate",
            "message": message,
            "lastUpdateTime": now,
            "lastTransitionTime": now,
        }));
    }
}

/// Whether `key` names a Pod (direct creates are admitted here).
pub(crate) fn is_pod(key: &Key) -> bool {
    key.group.is_empty() && key.kind == "Pod"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn restricted_pod() -> Value {
        json!({
            "securityContext": {"runAsNonRoot": true, "runAsUser": 1000,
                "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{"name": "app", "securityContext": {
                "allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "d"}}],
        })
    }

    #[test]
    fn a_compliant_pod_passes_every_level() {
        for level in [Level::Privileged, Level::Baseline, Level::Restricted] {
            assert!(violations(level, &restricted_pod()).is_empty(), "{level:?}");
        }
    }

    #[test]
    fn privileged_containers_and_host_paths_break_baseline() {
        let pod = json!({
            "containers": [{"name": "nfs", "securityContext": {"privileged": true}}],
            "volumes": [{"name": "plugins", "hostPath": {"path": "/var/lib/kubelet"}}],
        });
        let found = violations(Level::Baseline, &pod);
        assert_eq!(
            found,
            vec![
                "privileged (container \"nfs\" must not set securityContext.privileged=true)",
                "hostPath volumes (volume \"plugins\")",
            ]
        );
        assert!(violations(Level::Privileged, &pod).is_empty());
    }

    #[test]
    fn restricted_wants_non_root_no_escalation_seccomp_and_no_capabilities() {
        let pod = json!({"containers": [{"name": "app"}]});
        let found = violations(Level::Restricted, &pod).join("; ");
        for check in [
            "allowPrivilegeEscalation != false (container \"app\"",
            "runAsNonRoot != true (pod or container \"app\"",
            "seccompProfile (pod or container \"app\"",
            "unrestricted capabilities (container \"app\" must set securityContext.capabilities.drop=[\"ALL\"])",
        ] {
            assert!(found.contains(check), "{check} not in {found}");
        }
        let mut root = restricted_pod();
        root["securityContext"]["runAsUser"] = json!(0);
        assert!(violations(Level::Restricted, &root)[0].starts_with("runAsUser=0"));
    }
}

/// The platform's own workloads against these rules: every pod qhub-core renders meets the level
/// its namespace enforces. Moved here from `qhub-core`'s `kubernetes/components/namespace.rs`
/// (there it would link two copies of qhub-core, this crate depending on it).
#[cfg(test)]
mod platform {
    use qhub_core::config::ProviderKind;
    use qhub_core::kubernetes::components::namespace::ENFORCE_LABEL;
    use qhub_core::provider::ClusterFacts;
    use serde_json::Value as Json;

    use super::{Level, violations};

    /// The default config `qhub init` writes for `provider`.
    fn test_config(provider: ProviderKind) -> qhub_core::Config {
        let mut opts = qhub_core::config::init::InitOptions::new(
            provider,
            "demo",
            "demo.example.com",
            "not-a-real-password",
        );
        if provider == ProviderKind::Gcp {
            opts.gcp_project = Some("demo-project".into());
        }
        qhub_core::config::init::render(&opts).expect("the default config renders")
    }
    /// Every workload's pods, with the level the namespace they land in enforces.
    fn pods_and_levels(config: &qhub_core::Config) -> Vec<(String, Level, Json)> {
        let facts = ClusterFacts::from_config(config);
        let manifests = qhub_core::kubernetes::components::manifests(config, &facts).unwrap();
        let level_of = |ns: &str| {
            let found = manifests
                .iter()
                .find(|m| m["kind"] == "Namespace" && m["metadata"]["name"] == ns)
                .unwrap_or_else(|| panic!("no Namespace {ns} is deployed"));
            match found["metadata"]["labels"][ENFORCE_LABEL].as_str() {
                Some("restricted") => Level::Restricted,
                Some("baseline") => Level::Baseline,
                // No label: the cluster's default, which a hardened cluster sets to restricted.
                Some("privileged") => Level::Privileged,
                _ => Level::Restricted,
            }
        };
        manifests
            .iter()
            .filter(|m| m["spec"]["template"]["spec"].is_object())
            .map(|m| {
                let ns = m["metadata"]["namespace"].as_str().unwrap();
                (
                    format!(
                        "{}/{ns}/{}",
                        m["kind"].as_str().unwrap(),
                        m["metadata"]["name"].as_str().unwrap()
                    ),
                    level_of(ns),
                    m["spec"]["template"]["spec"].clone(),
                )
            })
            .collect()
    }

    #[test]
    fn every_pod_meets_the_pod_security_level_of_its_namespace() {
        let mut checked = Vec::new();
        for provider in [ProviderKind::Aws, ProviderKind::Gcp, ProviderKind::Do] {
            let mut config = test_config(provider);
            // A GPU group, so that the device plugin is deployed where the cloud lacks one.
            if let Some(aws) = config.amazon_web_services.as_mut() {
                let mut gpu = aws.node_groups["user"].clone();
                gpu.gpu = true;
                aws.node_groups.insert("gpu".into(), gpu);
            }
            for (workload, level, pod) in pods_and_levels(&config) {
                // jupyterhub-ssh's sftp server needs more than `baseline`: `SYS_ADMIN` for its
                // bind mounts (and an unconfined AppArmor profile, which this check does not
                // see), hence the privileged namespace, but it is not a privileged container.
                if workload.ends_with("/jupyterhub-sftp") {
                    let baseline = violations(Level::Baseline, &pod);
                    assert!(
                        baseline.iter().any(|v| v.contains("SYS_ADMIN"))
                            && !baseline.iter().any(|v| v.contains("privileged=true")),
                        "{baseline:?}"
                    );
                }
                let found = violations(level, &pod);
                assert!(
                    found.is_empty(),
                    "{provider:?} {workload} ({level:?}): {found:?}"
                );
                checked.push((workload, level));
            }
        }
        // The restricted ones are the platform's own; only the NFS server, the device plugin,
        // the node exporter (the host's /proc, /sys and root file system, its network and PID
        // namespaces: what it measures), the sftp server (chroot and bind mounts as root) and
        // the shared filesystem's layout Job (root, to own the directories) need the
        // privileged namespace.
        for (workload, level) in &checked {
            let privileged = workload.contains("nfs-server")
                || workload.contains("shared-storage-layout")
                || workload.contains("nvidia-device-plugin")
                || workload.contains("node-exporter")
                || workload.contains("jupyterhub-sftp");
            assert_eq!(
                *level == Level::Privileged,
                privileged,
                "{workload} runs at {level:?}"
            );
        }
        for name in [
            "traefik",
            "keycloak",
            "keycloak-postgres",
            "qhub-welcome",
            "cluster-autoscaler",
            "nfs-server",
            "nvidia-device-plugin",
            "shared-storage-layout",
            "jupyterhub-ssh",
            "jupyterhub-sftp",
        ] {
            assert!(
                checked
                    .iter()
                    .any(|(w, _)| w.ends_with(&format!("/{name}"))),
                "{name} not checked: {checked:?}"
            );
        }
    }
}
