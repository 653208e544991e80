//! Server-side defaults: the fields the API server fills in on every write of the kinds the
//! platform sends, as the defaulting functions of kubernetes/kubernetes do
//! (`pkg/apis/apps/v1/defaults.go`, `pkg/apis/core/v1/defaults.go`, `pkg/apis/batch/v1/
//! defaults.go`). They run after field ownership is recorded, so no field manager owns a
//! defaulted field, as with a real server-side apply (the applied configuration is not
//! defaulted; see "Server-Side Apply", kubernetes.io/docs/reference/using-api/server-side-apply).
//!
//! That is what makes kubernetes/kubernetes#24198 reachable: a Deployment created without a
//! strategy gets `rollingUpdate: {maxSurge: 25%, maxUnavailable: 25%}` that nobody owns, so a
//! later apply of `strategy: {type: Recreate}` leaves it there and validation
//! ([`validate`]) refuses the result.

use serde_json::{Map, Value, json};

use super::store::Key;

fn obj<'a>(v: &'a mut Value, key: &str) -> Option<&'a mut Map<String, Value>> {
    let m = v.as_object_mut()?;
    let slot = m.entry(key.to_string()).or_insert_with(|| json!({}));
    if !slot.is_object() {
        return None;
    }
    slot.as_object_mut()
}

fn default(m: &mut Map<String, Value>, key: &str, value: Value) {
    if m.get(key).is_none_or(Value::is_null) {
        m.insert(key.to_string(), value);
    }
}

/// Fills in the defaults of `new` for its kind.
pub(crate) fn apply(key: &Key, new: &mut Value) {
    match (key.group.as_str(), key.kind.as_str()) {
        ("apps", "Deployment") => deployment(new),
        ("apps", "StatefulSet") => stateful_set(new),
        ("apps", "DaemonSet") => daemon_set(new),
        ("batch", "Job") => {
            if let Some(t) = new.pointer_mut("/spec/template") {
                pod_template(t);
            }
        }
        ("", "Service") => service(new),
        ("", "Pod") => {
            if let Some(spec) = new.get_mut("spec") {
                pod_spec(spec);
            }
        }
        ("", "PersistentVolume") => {
            if let Some(spec) = new.get_mut("spec").and_then(Value::as_object_mut) {
                default(spec, "persistentVolumeReclaimPolicy", json!("Retain"));
                default(spec, "volumeMode", json!("Filesystem"));
            }
        }
        ("", "PersistentVolumeClaim") => {
            if let Some(spec) = new.get_mut("spec").and_then(Value::as_object_mut) {
                default(spec, "volumeMode", json!("Filesystem"));
            }
        }
        _ => {}
    }
}

/// `SetDefaults_Deployment`: replicas 1, strategy RollingUpdate with 25%/25%, 10 old
/// ReplicaSets kept, a 600 s progress deadline.
fn deployment(new: &mut Value) {
    let Some(spec) = obj(new, "spec") else { return };
    default(spec, "replicas", json!(1));
    default(spec, "revisionHistoryLimit", json!(10));
    default(spec, "progressDeadlineSeconds", json!(600));
    if let Some(strategy) = obj_in(spec, "strategy") {
        default(strategy, "type", json!("RollingUpdate"));
        if strategy.get("type").and_then(Value::as_str) == Some("RollingUpdate")
            && let Some(ru) = obj_in(strategy, "rollingUpdate")
        {
            default(ru, "maxUnavailable", json!("25%"));
            default(ru, "maxSurge", json!("25%"));
        }
    }
    if let Some(t) = new.pointer_mut("/spec/template") {
        pod_template(t);
    }
}

/// `SetDefaults_StatefulSet`: ordered pod management, rolling updates from partition 0, PVCs
/// retained, 10 revisions kept.
fn stateful_set(new: &mut Value) {
    let Some(spec) = obj(new, "spec") else { return };
    default(spec, "replicas", json!(1));
    default(spec, "podManagementPolicy", json!("OrderedReady"));
    default(spec, "revisionHistoryLimit", json!(10));
    if let Some(s) = obj_in(spec, "updateStrategy") {
        default(s, "type", json!("RollingUpdate"));
        if s.get("type").and_then(Value::as_str) == Some("RollingUpdate")
            && let Some(ru) = obj_in(s, "rollingUpdate")
        {
            default(ru, "partition", json!(0));
        }
    }
    if let Some(p) = obj_in(spec, "persistentVolumeClaimRetentionPolicy") {
        default(p, "whenDeleted", json!("Retain"));
        default(p, "whenScaled", json!("Retain"));
    }
    if let Some(t) = new.pointer_mut("/spec/template") {
        pod_template(t);
    }
}

/// `SetDefaults_DaemonSet`: rolling updates, one unavailable at a time, no surge.
fn daemon_set(new: &mut Value) {
    let Some(spec) = obj(new, "spec") else { return };
    default(spec, "revisionHistoryLimit", json!(10));
    if let Some(s) = obj_in(spec, "updateStrategy") {
        default(s, "type", json!("RollingUpdate"));
        if s.get("type").and_then(Value::as_str) == Some("RollingUpdate")
            && let Some(ru) = obj_in(s, "rollingUpdate")
        {
            default(ru, "maxUnavailable", json!(1));
            default(ru, "maxSurge", json!(0));
        }
    }
    if let Some(t) = new.pointer_mut("/spec/template") {
        pod_template(t);
    }
}

fn obj_in<'a>(m: &'a mut Map<String, Value>, key: &str) -> Option<&'a mut Map<String, Value>> {
    let slot = m.entry(key.to_string()).or_insert_with(|| json!({}));
    if slot.is_null() {
        *slot = json!({});
    }
    slot.as_object_mut()
}

fn pod_template(t: &mut Value) {
    if let Some(spec) = t.get_mut("spec") {
        pod_spec(spec);
    }
}

/// `SetDefaults_PodSpec` and the container defaults: restart Always, DNS ClusterFirst, the
/// default scheduler, a 30 s grace period, an empty pod security context; per container the
/// termination message path and policy, the pull policy (Always for `:latest` or no tag,
/// else IfNotPresent), port protocol TCP, and the probe timings (1 s timeout, every 10 s,
/// 1 success, 3 failures, HTTP scheme).
fn pod_spec(spec: &mut Value) {
    let Some(spec) = spec.as_object_mut() else {
        return;
    };
    default(spec, "restartPolicy", json!("Always"));
    default(spec, "terminationGracePeriodSeconds", json!(30));
    default(spec, "dnsPolicy", json!("ClusterFirst"));
    default(spec, "securityContext", json!({}));
    default(spec, "schedulerName", json!("default-scheduler"));
    for list in ["initContainers", "containers"] {
        let Some(cs) = spec.get_mut(list).and_then(Value::as_array_mut) else {
            continue;
        };
        for c in cs.iter_mut().filter_map(Value::as_object_mut) {
            container(c);
        }
    }
}

fn container(c: &mut Map<String, Value>) {
    default(c, "terminationMessagePath", json!("/dev/termination-log"));
    default(c, "terminationMessagePolicy", json!("File"));
    let image = c.get("image").and_then(Value::as_str).unwrap_or_default();
    let last = image.rsplit('/').next().unwrap_or(image);
    let tag = last
        .split_once('@')
        .map_or(last, |(n, _)| n)
        .split_once(':');
    let pull = match tag {
        _ if last.contains('@') => "IfNotPresent",
        Some((_, "latest")) | None => "Always",
        Some(_) => "IfNotPresent",
    };
    default(c, "imagePullPolicy", json!(pull));
    if let Some(ports) = c.get_mut("ports").and_then(Value::as_array_mut) {
        for p in ports.iter_mut().filter_map(Value::as_object_mut) {
            default(p, "protocol", json!("TCP"));
        }
    }
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(p) = c.get_mut(probe).and_then(Value::as_object_mut) {
            default(p, "timeoutSeconds", json!(1));
            default(p, "periodSeconds", json!(10));
            default(p, "successThreshold", json!(1));
            default(p, "failureThreshold", json!(3));
            if let Some(h) = p.get_mut("httpGet").and_then(Value::as_object_mut) {
                default(h, "scheme", json!("HTTP"));
            }
        }
    }
}

/// `SetDefaults_Service` and `SetDefaults_ServicePort`: type ClusterIP, session affinity None,
/// each port's protocol TCP and its targetPort the port itself; a LoadBalancer or NodePort
/// Service routes external traffic by `Cluster`.
fn service(new: &mut Value) {
    let Some(spec) = new.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    default(spec, "type", json!("ClusterIP"));
    default(spec, "sessionAffinity", json!("None"));
    let external = matches!(
        spec.get("type").and_then(Value::as_str),
        Some("LoadBalancer" | "NodePort")
    );
    if external {
        default(spec, "externalTrafficPolicy", json!("Cluster"));
    }
    if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
        for p in ports.iter_mut().filter_map(Value::as_object_mut) {
            default(p, "protocol", json!("TCP"));
            if let Some(port) = p.get("port").cloned() {
                default(p, "targetPort", port);
            }
        }
    }
}

/// Validation of what defaulting can make invalid: a strategy of type `Recreate` (or
/// `OnDelete`) with a `rollingUpdate` block left from the default. The message is the one of
/// kubernetes/kubernetes `pkg/apis/apps/validation/validation.go` (`ValidateDeploymentStrategy`,
/// `ValidateStatefulSetUpdateStrategy`, `ValidateDaemonSetUpdateStrategy`).
pub(crate) fn validate(key: &Key, new: &Value) -> Result<(), String> {
    let (path, other) = match (key.group.as_str(), key.kind.as_str()) {
        ("apps", "Deployment") => ("strategy", "Recreate"),
        ("apps", "StatefulSet") => ("updateStrategy", "OnDelete"),
        ("apps", "DaemonSet") => ("updateStrategy", "OnDelete"),
        _ => return Ok(()),
    };
    let Some(s) = new.pointer(&format!("/spec/{path}")) else {
        return Ok(());
    };
    let typ = s.get("type").and_then(Value::as_str).unwrap_or_default();
    if typ == other && s.get("rollingUpdate").is_some_and(|r| !r.is_null()) {
        return Err(if key.kind == "Deployment" {
            format!(
                "spec.{path}.rollingUpdate: Forbidden: may not be specified when strategy \
                 `type` is '{other}'"
            )
        } else {
            format!(
                "spec.{path}.rollingUpdate: Invalid value: \"null\": only allowed for \
                 updateStrategy 'RollingUpdate'"
            )
        });
    }
    Ok(())
}
