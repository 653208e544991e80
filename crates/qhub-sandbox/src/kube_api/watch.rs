//! `?watch=true`: newline-delimited watch events, streamed as the store changes.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;

use super::KubeApi;
use super::api_err::ApiErr;
use super::http::{ResBody, json_response_with};
use super::ops::{Params, Target};
use super::select::{FieldSelector, LabelSelector};
use super::store::{Event, EventType};

struct Filter {
    target: Target,
    labels: LabelSelector,
    fields: FieldSelector,
}

impl Filter {
    fn wants(&self, v: &Value) -> bool {
        self.labels.matches(v) && self.fields.matches(v)
    }

    /// The event as this watcher sees it: objects entering or leaving the selection are
    /// ADDED or DELETED, as a real API server reports them.
    fn line(&self, ev: &Event) -> Option<Value> {
        let t = &self.target;
        if ev.key.group != t.rt.group || ev.key.kind != t.rt.kind {
            return None;
        }
        if t.namespace
            .as_ref()
            .is_some_and(|ns| *ns != ev.key.namespace)
        {
            return None;
        }
        let now = self.wants(&ev.obj);
        let typ = match ev.typ {
            EventType::Added | EventType::Deleted if now => ev.typ.as_str(),
            EventType::Modified => match (ev.old.as_ref().is_some_and(|o| self.wants(o)), now) {
                (true, true) => "MODIFIED",
                (false, true) => "ADDED",
                (true, false) => "DELETED",
                (false, false) => return None,
            },
            _ => return None,
        };
        Some(json!({"type": typ, "object": t.serve(ev.obj.clone())}))
    }
}

fn expired(rv: u64) -> Value {
    let err = ApiErr::new(
        410,
        "Expired",
        format!(
            "too old resource version: {rv}; list again and watch from the list's resourceVersion"
        ),
    );
    json!({"type": "ERROR", "object": err.to_status()})
}

fn encode(v: &Value) -> Bytes {
    let mut line = serde_json::to_vec(v).unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

impl KubeApi {
    /// Starts a watch; the response streams until `timeoutSeconds`, the client hangs up, or
    /// the watcher falls too far behind (then it gets a 410 ERROR event and re-lists).
    pub(crate) fn watch(
        &self,
        target: Target,
        p: &Params,
    ) -> Result<hyper::Response<ResBody>, ApiErr> {
        let filter = Filter {
            labels: p.labels()?,
            fields: p.fields()?,
            target,
        };
        let since = match p.get("resourceVersion") {
            None | Some("" | "0") => None,
            Some(s) => Some(s.parse::<u64>().map_err(|_| {
                ApiErr::bad_request(format!("resourceVersion {s:?} is not a resource version"))
            })?),
        };
        let timeout = match p.get("timeoutSeconds") {
            None | Some("") => None,
            Some(s) => Some(Duration::from_secs(s.parse::<u64>().map_err(|_| {
                ApiErr::bad_request(format!("timeoutSeconds {s:?} is not a number"))
            })?)),
        };
        let bookmarks = matches!(p.get("allowWatchBookmarks"), Some("true" | "1"));

        // Subscribe and read the starting point under one lock, so that no event is lost or
        // sent twice between them.
        let (initial, mut events, rv) = {
            let st = self.inner.lock();
            let events = self.inner.events.subscribe();
            let initial: Vec<Value> = match since {
                None => Self::matching(&st, &filter.target, &filter.labels, &filter.fields)
                    .into_iter()
                    .map(|(_, obj)| json!({"type": "ADDED", "object": obj}))
                    .collect(),
                Some(rv) => {
                    let covered = st.history.front().is_some_and(|e| e.rv <= rv + 1);
                    if rv < st.rv && !covered {
                        vec![expired(rv)]
                    } else {
                        st.history
                            .iter()
                            .filter(|e| e.rv > rv)
                            .filter_map(|e| filter.line(e))
                            .collect()
                    }
                }
            };
            (initial, events, st.rv)
        };
        let bookmark = bookmarks.then(|| {
            let mut meta = json!({"resourceVersion": rv.to_string()});
            if since.is_none() {
                meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
            }
            json!({"type": "BOOKMARK", "object": {
                "kind": filter.target.rt.kind,
                "apiVersion": filter.target.rt.api_version(&filter.target.version),
                "metadata": meta,
            }})
        });

        let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(64);
        tokio::spawn(async move {
            for v in initial.iter().chain(bookmark.iter()) {
                if tx.send(encode(v)).await.is_err() {
                    return;
                }
            }
            let deadline = async {
                match timeout {
                    Some(d) => tokio::time::sleep(d).await,
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::pin!(deadline);
            loop {
                tokio::select! {
                    () = &mut deadline => break,
                    () = tx.closed() => break,
                    ev = events.recv() => match ev {
                        Ok(ev) => {
                            if let Some(line) = filter.line(&ev)
                                && tx.send(encode(&line)).await.is_err()
                            {
                                break;
                            }
                        }
                        Err(RecvError::Lagged(_)) => {
                            let _ = tx.send(encode(&expired(rv))).await;
                            break;
                        }
                        Err(RecvError::Closed) => break,
                    },
                }
            }
        });
        let stream = futures::stream::unfold(rx, |mut rx| async move {
            rx.recv()
                .await
                .map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx))
        });
        Ok(json_response_with(
            200,
            StreamBody::new(stream).boxed_unsync(),
        ))
    }
}
