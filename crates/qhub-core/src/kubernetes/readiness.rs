//! Readiness of applied objects, from their live state. Rollouts are judged by
//! `observedGeneration` and replica counts (as `kubectl rollout status` does), not by conditions
//! alone, which lag behind a new generation.

use serde_json::Value as Json;

/// How long each kind usually takes to become ready. The apply's deadline for an object is a
/// multiple of this ([`crate::engine::EngineOptions`]); the plan's expected durations come
/// from here too. A component whose workloads take longer says so itself
/// ([`crate::kubernetes::components::Built::ready_within`]).
pub const EXPECTED: &[(&str, u64)] = &[
    // (kind, seconds)
    ("StatefulSet", 60),
    ("Deployment", 30),
    ("DaemonSet", 30),
    ("Job", 60),
    ("PersistentVolumeClaim", 30),
    ("CustomResourceDefinition", 5),
];

/// The usual time to ready of an object of `kind` (one second for a kind not listed).
pub fn expected(kind: &str) -> std::time::Duration {
    let secs = EXPECTED
        .iter()
        .find(|(k, _)| *k == kind)
        .map_or(1, |(_, s)| *s);
    std::time::Duration::from_secs(secs)
}

/// Whether an object is ready, and if not, why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    /// Ready.
    Ready,
    /// Not yet: the reason, for progress and for the deadline's error.
    Waiting(String),
}

fn int(v: &Json, ptr: &str) -> i64 {
    v.pointer(ptr).and_then(Json::as_i64).unwrap_or(0)
}

fn condition(v: &Json, kind: &str) -> Option<String> {
    v.pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c.get("type").and_then(Json::as_str) == Some(kind))
        .and_then(|c| c.get("status").and_then(Json::as_str).map(str::to_string))
}

/// The readiness of a live object of `kind`.
pub fn check(kind: &str, live: &Json) -> Readiness {
    let generation = int(live, "/metadata/generation");
    let observed = int(live, "/status/observedGeneration");
    let stale = || {
        Readiness::Waiting(format!(
            "controller has seen generation {observed} of {generation}"
        ))
    };
    match kind {
        "CustomResourceDefinition" => match condition(live, "Established").as_deref() {
            Some("True") => Readiness::Ready,
            _ => Readiness::Waiting("not established yet".into()),
        },
        "Namespace" => match live.pointer("/status/phase").and_then(Json::as_str) {
            Some("Active") => Readiness::Ready,
            other => Readiness::Waiting(format!("phase {}", other.unwrap_or("unknown"))),
        },
        "Deployment" => {
            if observed < generation {
                return stale();
            }
            let want = live
                .pointer("/spec/replicas")
                .and_then(Json::as_i64)
                .unwrap_or(1);
            let updated = int(live, "/status/updatedReplicas");
            let ready = int(live, "/status/readyReplicas");
            let available = int(live, "/status/availableReplicas");
            let total = int(live, "/status/replicas");
            if updated < want {
                Readiness::Waiting(format!("{updated} of {want} replicas updated"))
            } else if total > updated {
                Readiness::Waiting(format!(
                    "{} old replicas pending termination",
                    total - updated
                ))
            } else if available < want || ready < want {
                Readiness::Waiting(format!("{available} of {want} replicas available"))
            } else {
                Readiness::Ready
            }
        }
        "StatefulSet" => {
            if observed < generation {
                return stale();
            }
            let want = live
                .pointer("/spec/replicas")
                .and_then(Json::as_i64)
                .unwrap_or(1);
            let ready = int(live, "/status/readyReplicas");
            let updated = int(live, "/status/updatedReplicas");
            let current = live.pointer("/status/currentRevision");
            let update = live.pointer("/status/updateRevision");
            if ready < want {
                Readiness::Waiting(format!("{ready} of {want} replicas ready"))
            } else if updated < want && current != update {
                Readiness::Waiting(format!("{updated} of {want} replicas updated"))
            } else {
                Readiness::Ready
            }
        }
        "DaemonSet" => {
            if observed < generation {
                return stale();
            }
            let desired = int(live, "/status/desiredNumberScheduled");
            let updated = int(live, "/status/updatedNumberScheduled");
            let ready = int(live, "/status/numberReady");
            if updated < desired {
                Readiness::Waiting(format!("{updated} of {desired} pods updated"))
            } else if ready < desired {
                Readiness::Waiting(format!("{ready} of {desired} pods ready"))
            } else {
                Readiness::Ready
            }
        }
        "Job" => {
            if int(live, "/status/succeeded") >= 1 {
                Readiness::Ready
            } else if int(live, "/status/failed") > 0 {
                Readiness::Waiting(format!("{} failed attempt(s)", int(live, "/status/failed")))
            } else {
                Readiness::Waiting("not completed".into())
            }
        }
        _ => Readiness::Ready,
    }
}

/// Container states that mean a pod will not start without a change: fail at once.
const FATAL_WAITING: &[&str] = &[
    "ImagePullBackOff",
    "ErrImagePull",
    "InvalidImageName",
    "ErrImageNeverPull",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
];

/// Restarts after which a crash loop is a failure rather than a slow start (a service waiting
/// for its database restarts once or twice).
pub const CRASH_LOOP_RESTARTS: i64 = 3;

/// Why a pod cannot start, from its container statuses, in the pod's own words.
pub fn pod_failure(pod: &Json) -> Option<String> {
    let name = pod
        .pointer("/metadata/name")
        .and_then(Json::as_str)
        .unwrap_or("?");
    for list in ["/status/initContainerStatuses", "/status/containerStatuses"] {
        for c in pod
            .pointer(list)
            .and_then(Json::as_array)
            .into_iter()
            .flatten()
        {
            let container = c.get("name").and_then(Json::as_str).unwrap_or("?");
            let Some(waiting) = c.pointer("/state/waiting") else {
                continue;
            };
            let reason = waiting.get("reason").and_then(Json::as_str).unwrap_or("");
            let message = waiting
                .get("message")
                .and_then(Json::as_str)
                .unwrap_or("no message");
            let restarts = c.get("restartCount").and_then(Json::as_i64).unwrap_or(0);
            if FATAL_WAITING.contains(&reason)
                || reason == "CrashLoopBackOff" && restarts >= CRASH_LOOP_RESTARTS
            {
                let last = c
                    .pointer("/lastState/terminated")
                    .map(|t| {
                        format!(
                            " (last exit {}: {})",
                            t.get("exitCode").and_then(Json::as_i64).unwrap_or(-1),
                            t.get("reason").and_then(Json::as_str).unwrap_or("?")
                        )
                    })
                    .unwrap_or_default();
                return Some(format!(
                    "pod {name}: container {container}: {reason}: {message}{last}"
                ));
            }
        }
    }
    None
}

/// Restarts a pod's containers went through while it is not ready yet, in the pod's own words
/// (`pod NAME: container C restarted N time(s), last exit CODE (REASON)`): a slow first start
/// that kubelet killed (a probe's budget too short, or memory) is said while the deploy
/// waits, not only once it shows as `CrashLoopBackOff`.
pub fn pod_restarts(pod: &Json) -> Option<String> {
    let name = pod
        .pointer("/metadata/name")
        .and_then(Json::as_str)
        .unwrap_or("?");
    let mut notes = Vec::new();
    for list in ["/status/initContainerStatuses", "/status/containerStatuses"] {
        for c in pod
            .pointer(list)
            .and_then(Json::as_array)
            .into_iter()
            .flatten()
        {
            let restarts = c.get("restartCount").and_then(Json::as_i64).unwrap_or(0);
            if restarts == 0 {
                continue;
            }
            let container = c.get("name").and_then(Json::as_str).unwrap_or("?");
            let last = c
                .pointer("/lastState/terminated")
                .map(|t| {
                    format!(
                        ", last exit {} ({})",
                        t.get("exitCode").and_then(Json::as_i64).unwrap_or(-1),
                        t.get("reason").and_then(Json::as_str).unwrap_or("?")
                    )
                })
                .unwrap_or_default();
            notes.push(format!(
                "pod {name}: container {container} restarted {restarts} time(s){last}"
            ));
        }
    }
    (!notes.is_empty()).then(|| notes.join("; "))
}

/// A Deployment whose controller gave up (`Progressing` false with `ProgressDeadlineExceeded`),
/// or whose pods cannot be created (`ReplicaFailure` true, which the deployment controller
/// copies from its ReplicaSet: a Pod Security admission refusal, an exceeded quota), in the
/// controller's words.
pub fn rollout_failure(live: &Json) -> Option<String> {
    let conditions = live.pointer("/status/conditions")?.as_array()?;
    if let Some(c) = conditions.iter().find(|c| {
        c.get("type").and_then(Json::as_str) == Some("ReplicaFailure")
            && c.get("status").and_then(Json::as_str) == Some("True")
    }) {
        return Some(format!(
            "ReplicaFailure: {}: {}",
            c.get("reason").and_then(Json::as_str).unwrap_or("?"),
            c.get("message")
                .and_then(Json::as_str)
                .unwrap_or("no message")
        ));
    }
    conditions
        .iter()
        .find(|c| {
            c.get("type").and_then(Json::as_str) == Some("Progressing")
                && c.get("status").and_then(Json::as_str) == Some("False")
                && c.get("reason").and_then(Json::as_str) == Some("ProgressDeadlineExceeded")
        })
        .map(|c| {
            format!(
                "ProgressDeadlineExceeded: {}",
                c.get("message")
                    .and_then(Json::as_str)
                    .unwrap_or("no message")
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn deployments_need_the_new_generation_observed() {
        let d = json!({"metadata": {"generation": 2}, "spec": {"replicas": 2},
            "status": {"observedGeneration": 1, "replicas": 2, "updatedReplicas": 2, "readyReplicas": 2, "availableReplicas": 2}});
        assert!(
            matches!(check("Deployment", &d), Readiness::Waiting(r) if r.contains("generation"))
        );
        let d = json!({"metadata": {"generation": 2}, "spec": {"replicas": 2},
            "status": {"observedGeneration": 2, "replicas": 3, "updatedReplicas": 2, "readyReplicas": 2, "availableReplicas": 2}});
        assert!(
            matches!(check("Deployment", &d), Readiness::Waiting(r) if r.contains("old replicas"))
        );
        let d = json!({"metadata": {"generation": 2}, "spec": {"replicas": 2},
            "status": {"observedGeneration": 2, "replicas": 2, "updatedReplicas": 2, "readyReplicas": 2, "availableReplicas": 2}});
        assert_eq!(check("Deployment", &d), Readiness::Ready);
    }

    #[test]
    fn pods_that_cannot_start_are_named_with_their_own_message() {
        let pod = |reason: &str, restarts: i64| {
            json!({"metadata": {"name": "traefik-1"}, "status": {"containerStatuses": [
                {"name": "traefik", "restartCount": restarts,
                 "state": {"waiting": {"reason": reason, "message": "Back-off pulling image \"traefik:v9\""}}}]}})
        };
        let why = pod_failure(&pod("ImagePullBackOff", 0)).unwrap();
        assert!(
            why.contains(
                "pod traefik-1: container traefik: ImagePullBackOff: Back-off pulling image"
            ),
            "{why}"
        );
        assert!(
            pod_failure(&pod("CrashLoopBackOff", 1)).is_none(),
            "a slow start is not a failure"
        );
        assert!(pod_failure(&pod("CrashLoopBackOff", 3)).is_some());
        assert!(pod_failure(&pod("ContainerCreating", 0)).is_none());
        let d = json!({"status": {"conditions": [{"type": "Progressing", "status": "False",
            "reason": "ProgressDeadlineExceeded", "message": "ReplicaSet \"x\" has timed out progressing."}]}});
        assert!(
            rollout_failure(&d)
                .unwrap()
                .contains("timed out progressing")
        );
        let refused = json!({"status": {"conditions": [{"type": "ReplicaFailure", "status": "True",
            "reason": "FailedCreate", "message": "pods \"x-\" is forbidden: violates PodSecurity \"restricted:latest\""}]}});
        assert_eq!(
            rollout_failure(&refused).unwrap(),
            "ReplicaFailure: FailedCreate: pods \"x-\" is forbidden: violates PodSecurity \"restricted:latest\""
        );
    }

    #[test]
    fn restarts_during_a_start_are_said_with_the_last_exit() {
        let pod = json!({"metadata": {"name": "keycloak-1"}, "status": {"containerStatuses": [
            {"name": "keycloak", "restartCount": 1, "ready": false,
             "state": {"running": {}},
             "lastState": {"terminated": {"exitCode": 137, "reason": "Error"}}}]}});
        assert_eq!(
            pod_restarts(&pod).as_deref(),
            Some("pod keycloak-1: container keycloak restarted 1 time(s), last exit 137 (Error)")
        );
        // Not a failure yet: the deploy goes on waiting, saying so.
        assert!(pod_failure(&pod).is_none());
        let calm = json!({"metadata": {"name": "k"}, "status": {"containerStatuses": [
            {"name": "keycloak", "restartCount": 0, "state": {"running": {}}}]}});
        assert!(pod_restarts(&calm).is_none());
    }

    #[test]
    fn other_kinds() {
        assert_eq!(
            check("Namespace", &json!({"status": {"phase": "Active"}})),
            Readiness::Ready
        );
        assert!(matches!(
            check("Namespace", &json!({})),
            Readiness::Waiting(_)
        ));
        let crd = json!({"status": {"conditions": [{"type": "Established", "status": "True"}]}});
        assert_eq!(check("CustomResourceDefinition", &crd), Readiness::Ready);
        let ds = json!({"metadata": {"generation": 1}, "status": {"observedGeneration": 1, "desiredNumberScheduled": 3, "updatedNumberScheduled": 3, "numberReady": 2}});
        assert!(matches!(check("DaemonSet", &ds), Readiness::Waiting(r) if r.contains("2 of 3")));
        let sts = json!({"metadata": {"generation": 1}, "spec": {"replicas": 1}, "status": {"observedGeneration": 1, "readyReplicas": 1, "updatedReplicas": 1}});
        assert_eq!(check("StatefulSet", &sts), Readiness::Ready);
        assert_eq!(check("ConfigMap", &json!({})), Readiness::Ready);
    }
}
