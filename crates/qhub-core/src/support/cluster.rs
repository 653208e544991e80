//! What a support bundle takes from the cluster, in the deployment's namespace: each pod's
//! containers' last log lines (`GET …/pods/{name}/log?container=…&tailLines=N`), the events
//! (`GET …/events`), and the values of its Secrets — only to scrub them from the bundle, never
//! to put them in.

use k8s_openapi::api::core::v1::{Event, Pod, Secret};
use kube::api::{ListParams, LogParams};

use super::{Bundle, MAX_LOG_BYTES, tail_bytes};

/// What went wrong reading one part (the bundle keeps going, and says so in `errors.txt`).
fn note(errors: &mut Vec<String>, what: String, e: &kube::Error) {
    tracing::warn!("{what}: {e}");
    errors.push(format!("{what}: {e}"));
}

/// The values of the namespace's Secrets (to scrub); an unreadable list is an error note.
pub async fn secret_values(
    client: &kube::Client,
    namespace: &str,
    errors: &mut Vec<String>,
) -> Vec<String> {
    let api: kube::Api<Secret> = kube::Api::namespaced(client.clone(), namespace);
    match api.list(&ListParams::default()).await {
        Ok(list) => list
            .items
            .into_iter()
            .flat_map(|s| {
                let data = s.data.unwrap_or_default().into_values();
                let strings = s.string_data.unwrap_or_default().into_values();
                data.map(|b| String::from_utf8_lossy(&b.0).into_owned())
                    .chain(strings)
                    .collect::<Vec<_>>()
            })
            .collect(),
        Err(e) => {
            note(
                errors,
                format!("listing the Secrets of {namespace} to scrub their values"),
                &e,
            );
            Vec::new()
        }
    }
}

/// Adds `logs/{pod}/{container}.log` (the last `tail_lines` lines, at most
/// [`MAX_LOG_BYTES`]) for every container of every pod in `namespace`, and `events.json`.
pub async fn collect(
    client: &kube::Client,
    namespace: &str,
    tail_lines: i64,
    bundle: &mut Bundle,
    errors: &mut Vec<String>,
) {
    let pods: kube::Api<Pod> = kube::Api::namespaced(client.clone(), namespace);
    match pods.list(&ListParams::default()).await {
        Ok(list) => {
            let mut summary = Vec::new();
            for pod in list.items {
                let name = pod.metadata.name.clone().unwrap_or_default();
                let containers: Vec<String> = pod
                    .spec
                    .iter()
                    .flat_map(|s| s.init_containers.iter().flatten().chain(&s.containers))
                    .map(|c| c.name.clone())
                    .collect();
                summary.push(serde_json::json!({
                    "pod": name,
                    "phase": pod.status.as_ref().and_then(|s| s.phase.clone()),
                    "containers": pod.status.as_ref().and_then(|s| s.container_statuses.as_ref()).map(|cs| cs.iter().map(|c| serde_json::json!({
                        "name": c.name, "ready": c.ready, "restarts": c.restart_count,
                    })).collect::<Vec<_>>()),
                }));
                for container in containers {
                    let params = LogParams {
                        container: Some(container.clone()),
                        tail_lines: Some(tail_lines),
                        limit_bytes: i64::try_from(MAX_LOG_BYTES).ok(),
                        ..LogParams::default()
                    };
                    match pods.logs(&name, &params).await {
                        Ok(text) => bundle.add_text(
                            &format!("logs/{name}/{container}.log"),
                            &tail_bytes(&text, MAX_LOG_BYTES),
                        ),
                        Err(e) => note(
                            errors,
                            format!("reading the log of {namespace}/{name} container {container}"),
                            &e,
                        ),
                    }
                }
            }
            bundle.add_json("pods.json", &serde_json::Value::Array(summary));
        }
        Err(e) => note(errors, format!("listing the pods of {namespace}"), &e),
    }
    let events: kube::Api<Event> = kube::Api::namespaced(client.clone(), namespace);
    match events.list(&ListParams::default()).await {
        Ok(list) => {
            let items: Vec<serde_json::Value> = list
                .items
                .iter()
                .map(|e| {
                    serde_json::json!({
                        "time": e.last_timestamp.as_ref().map(|t| t.0.to_string())
                            .or_else(|| e.event_time.as_ref().map(|t| t.0.to_string())),
                        "type": e.type_,
                        "reason": e.reason,
                        "object": format!(
                            "{}/{}",
                            e.involved_object.kind.as_deref().unwrap_or(""),
                            e.involved_object.name.as_deref().unwrap_or("")
                        ),
                        "message": e.message,
                        "count": e.count,
                    })
                })
                .collect();
            bundle.add_json("events.json", &serde_json::Value::Array(items));
        }
        Err(e) => note(errors, format!("listing the events of {namespace}"), &e),
    }
}
