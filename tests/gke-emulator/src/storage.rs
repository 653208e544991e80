//! The subset of the Cloud Storage JSON API (`storage/v1`) that qhub-gcp's deploy lock uses,
//! as unkind as GCS:
//!
//! - buckets: `POST /storage/v1/b?project=P` (409 when the name exists, whoever owns it),
//!   `GET`/`DELETE /storage/v1/b/B` (404 when missing; `DELETE` of a bucket that holds an
//!   object is 409);
//! - objects: `POST /upload/storage/v1/b/B/o?uploadType=media&name=N` (a new generation per
//!   write), `GET /storage/v1/b/B/o/N` (metadata; `alt=media`: the body, with the generation
//!   in `x-goog-generation`), `DELETE /storage/v1/b/B/o/N`, `GET /storage/v1/b/B/o` (list);
//! - preconditions `ifGenerationMatch` (`0`: the object must not exist) checked and applied
//!   under one lock, so that of two writers with the same precondition exactly one wins and
//!   the other gets 412 `conditionNotMet`;
//! - errors in GCS's shape: `{"error": {"code", "message", "errors": [{"domain", "reason",
//!   "message"}]}}`.

use std::collections::BTreeMap;

use serde_json::{Value, json};

/// An error answer in the JSON API's shape.
#[derive(Debug, Clone, PartialEq)]
pub struct StorageError {
    /// HTTP status.
    pub code: u16,
    /// GCS's `reason` (`notFound`, `conflict`, `conditionNotMet`, `invalid`…).
    pub reason: &'static str,
    /// Human message.
    pub message: String,
}

impl StorageError {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
        }
    }

    fn no_bucket() -> Self {
        Self::new(404, "notFound", "The specified bucket does not exist.")
    }

    fn condition_not_met() -> Self {
        // GCS's words for a failed `ifGenerationMatch`.
        Self::new(
            412,
            "conditionNotMet",
            "At least one of the pre-conditions you specified did not hold.",
        )
    }

    fn invalid(message: impl Into<String>) -> Self {
        Self::new(400, "invalid", message)
    }

    /// The JSON body.
    pub fn body(&self) -> Value {
        json!({"error": {
            "code": self.code,
            "message": self.message,
            "errors": [{"domain": "global", "reason": self.reason, "message": self.message}],
        }})
    }
}

/// One stored object.
#[derive(Debug, Clone)]
pub struct Object {
    /// Its bytes.
    pub data: Vec<u8>,
    /// Its generation (a new one per write).
    pub generation: i64,
    /// Its content type.
    pub content_type: String,
}

/// One bucket.
#[derive(Debug, Clone)]
pub struct Bucket {
    /// The project it was created in.
    pub project: String,
    /// Its location, upper case as GCS answers it (`US-CENTRAL1`).
    pub location: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// `iamConfiguration` as given at creation.
    pub iam_configuration: Value,
    /// `softDeletePolicy` as given at creation (GCS's default: 7 days).
    pub soft_delete_policy: Value,
    /// Its objects by name.
    pub objects: BTreeMap<String, Object>,
}

/// Every bucket of the emulated world.
#[derive(Debug, Default)]
pub struct Storage {
    /// Buckets by (globally unique) name.
    pub buckets: BTreeMap<String, Bucket>,
    next_generation: i64,
}

/// A successful answer.
#[derive(Debug)]
pub enum Reply {
    /// A JSON document (200).
    Json(Value),
    /// An object's bytes with its generation (`alt=media`).
    Media {
        /// The body.
        data: Vec<u8>,
        /// `x-goog-generation`.
        generation: i64,
        /// `Content-Type`.
        content_type: String,
    },
    /// 204 No Content.
    Empty,
}

/// What a request did: its answer, and whether it changed anything (for lost answers).
#[derive(Debug)]
pub struct Served {
    /// The answer.
    pub reply: Result<Reply, StorageError>,
    /// True when the request wrote something.
    pub wrote: bool,
}

/// True for the paths this module serves.
pub fn is_storage(segments: &[&str]) -> bool {
    matches!(
        segments,
        ["storage", "v1", ..] | ["upload", "storage", "v1", ..]
    )
}

/// The route name for counters (`GET storage/o/*`, `POST upload/o`…).
pub fn route(method: &str, segments: &[&str]) -> String {
    let tail = match segments {
        ["upload", "storage", "v1", "b", _, "o"] => "upload/o",
        ["storage", "v1", "b"] => "storage/b",
        ["storage", "v1", "b", _] => "storage/b/*",
        ["storage", "v1", "b", _, "o"] => "storage/b/*/o",
        ["storage", "v1", "b", _, "o", ..] => "storage/b/*/o/*",
        _ => "storage/?",
    };
    format!("{method} {tail}")
}

fn bucket_doc(name: &str, b: &Bucket) -> Value {
    json!({
        "kind": "storage#bucket",
        "id": name,
        "name": name,
        "location": b.location,
        "locationType": "region",
        "storageClass": "STANDARD",
        "labels": b.labels,
        "iamConfiguration": b.iam_configuration,
        "softDeletePolicy": b.soft_delete_policy,
        "metageneration": "1",
    })
}

fn object_doc(bucket: &str, name: &str, o: &Object) -> Value {
    json!({
        "kind": "storage#object",
        "id": format!("{bucket}/{name}/{}", o.generation),
        "name": name,
        "bucket": bucket,
        "generation": o.generation.to_string(),
        "metageneration": "1",
        "contentType": o.content_type,
        "size": o.data.len().to_string(),
    })
}

/// GCS's label rules: keys 1–63 characters starting with a lowercase letter, values up to
/// 63; lowercase letters, digits, `-` and `_` only.
fn valid_labels(labels: &BTreeMap<String, String>) -> bool {
    let ok = |s: &str| {
        s.len() <= 63
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
    };
    labels
        .iter()
        .all(|(k, v)| k.chars().next().is_some_and(|c| c.is_ascii_lowercase()) && ok(k) && ok(v))
}

/// GCS's bucket name rules (the subset without dots): 3–63 lowercase letters, digits, `-`
/// and `_`, starting and ending with a letter or digit, no `goog` prefix.
fn valid_bucket_name(name: &str) -> bool {
    let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    (3..=63).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        && edge(name.chars().next())
        && edge(name.chars().last())
        && !name.starts_with("goog")
        && !name.contains("google")
}

/// `ifGenerationMatch`, if given.
fn precondition(query: &BTreeMap<String, String>) -> Result<Option<i64>, StorageError> {
    match query.get("ifGenerationMatch") {
        None => Ok(None),
        Some(v) => v.parse().map(Some).map_err(|_| {
            StorageError::invalid(format!("Invalid argument for ifGenerationMatch: {v}"))
        }),
    }
}

impl Storage {
    fn generation(&mut self) -> i64 {
        // GCS generations are microsecond timestamps: large, increasing, never reused.
        if self.next_generation == 0 {
            self.next_generation = 1_764_460_800_000_000;
        }
        self.next_generation += 1;
        self.next_generation
    }

    /// Serves one request. `segments` are the path's, percent-decoded; `projects` the
    /// projects that exist (`None`: all).
    pub fn serve(
        &mut self,
        method: &str,
        segments: &[&str],
        query: &BTreeMap<String, String>,
        body: &[u8],
        content_type: Option<&str>,
        projects: Option<&[String]>,
    ) -> Served {
        let read = |reply| Served {
            reply,
            wrote: false,
        };
        match (method, segments) {
            ("POST", ["storage", "v1", "b"]) => {
                let reply = self.create_bucket(query, body, projects);
                let wrote = reply.is_ok();
                Served { reply, wrote }
            }
            ("GET", ["storage", "v1", "b", b]) => read(
                self.buckets
                    .get(*b)
                    .map(|x| Reply::Json(bucket_doc(b, x)))
                    .ok_or_else(StorageError::no_bucket),
            ),
            ("DELETE", ["storage", "v1", "b", b]) => {
                let reply = match self.buckets.get(*b) {
                    None => Err(StorageError::no_bucket()),
                    Some(x) if !x.objects.is_empty() => Err(StorageError::new(
                        409,
                        "conflict",
                        "The bucket you tried to delete is not empty.",
                    )),
                    Some(_) => {
                        self.buckets.remove(*b);
                        Ok(Reply::Empty)
                    }
                };
                let wrote = reply.is_ok();
                Served { reply, wrote }
            }
            ("GET", ["storage", "v1", "b", b, "o"]) => read(
                self.buckets
                    .get(*b)
                    .map(|x| {
                        let items: Vec<Value> =
                            x.objects.iter().map(|(n, o)| object_doc(b, n, o)).collect();
                        Reply::Json(json!({"kind": "storage#objects", "items": items}))
                    })
                    .ok_or_else(StorageError::no_bucket),
            ),
            ("GET", ["storage", "v1", "b", b, "o", name]) => {
                let media = query.get("alt").map(String::as_str) == Some("media");
                read(self.get_object(b, name, media, query.get("generation")))
            }
            ("DELETE", ["storage", "v1", "b", b, "o", name]) => {
                let reply = self.delete_object(b, name, query);
                let wrote = reply.is_ok();
                Served { reply, wrote }
            }
            ("POST", ["upload", "storage", "v1", "b", b, "o"]) => {
                let reply = self.upload(b, query, body, content_type);
                let wrote = reply.is_ok();
                Served { reply, wrote }
            }
            _ => read(Err(StorageError::new(
                404,
                "notFound",
                format!("Not Found: {method} /{}", segments.join("/")),
            ))),
        }
    }

    fn create_bucket(
        &mut self,
        query: &BTreeMap<String, String>,
        body: &[u8],
        projects: Option<&[String]>,
    ) -> Result<Reply, StorageError> {
        let Some(project) = query.get("project") else {
            return Err(StorageError::new(
                400,
                "required",
                "Required parameter: project",
            ));
        };
        if projects.is_some_and(|ps| !ps.contains(project)) {
            return Err(StorageError::new(
                403,
                "forbidden",
                format!(
                    "The project {project} does not exist or you lack storage.buckets.create on it."
                ),
            ));
        }
        let doc: Value = serde_json::from_slice(body)
            .map_err(|e| StorageError::invalid(format!("Invalid JSON payload received. {e}")))?;
        let name = doc["name"].as_str().unwrap_or_default().to_string();
        if !valid_bucket_name(&name) {
            return Err(StorageError::invalid(format!(
                "Invalid bucket name: '{name}'"
            )));
        }
        let labels: BTreeMap<String, String> = match doc.get("labels") {
            None | Some(Value::Null) => BTreeMap::new(),
            Some(v) => serde_json::from_value(v.clone())
                .map_err(|_| StorageError::invalid("labels must map strings to strings"))?,
        };
        if !valid_labels(&labels) {
            return Err(StorageError::invalid(format!("Invalid labels: {labels:?}")));
        }
        if let Some(b) = self.buckets.get(&name) {
            // GCS's message depends on who owns the name.
            let message = if b.project == *project {
                "Your previous request to create the named bucket succeeded and you already own it."
            } else {
                "The requested bucket name is not available. The bucket namespace is shared by all users of the system. Please select a different name and try again."
            };
            return Err(StorageError::new(409, "conflict", message));
        }
        let bucket = Bucket {
            project: project.clone(),
            location: doc["location"]
                .as_str()
                .unwrap_or("US")
                .to_ascii_uppercase(),
            labels,
            iam_configuration: doc.get("iamConfiguration").cloned().unwrap_or(json!({})),
            soft_delete_policy: doc
                .get("softDeletePolicy")
                .cloned()
                .unwrap_or(json!({"retentionDurationSeconds": "604800"})),
            objects: BTreeMap::new(),
        };
        let out = bucket_doc(&name, &bucket);
        self.buckets.insert(name, bucket);
        Ok(Reply::Json(out))
    }

    fn get_object(
        &self,
        bucket: &str,
        name: &str,
        media: bool,
        generation: Option<&String>,
    ) -> Result<Reply, StorageError> {
        let b = self
            .buckets
            .get(bucket)
            .ok_or_else(StorageError::no_bucket)?;
        // Without versioning only the live generation exists: another one is not found.
        let o = b
            .objects
            .get(name)
            .filter(|o| generation.is_none_or(|g| *g == o.generation.to_string()))
            .ok_or_else(|| {
                StorageError::new(404, "notFound", format!("No such object: {bucket}/{name}"))
            })?;
        Ok(if media {
            Reply::Media {
                data: o.data.clone(),
                generation: o.generation,
                content_type: o.content_type.clone(),
            }
        } else {
            Reply::Json(object_doc(bucket, name, o))
        })
    }

    fn upload(
        &mut self,
        bucket: &str,
        query: &BTreeMap<String, String>,
        body: &[u8],
        content_type: Option<&str>,
    ) -> Result<Reply, StorageError> {
        if query.get("uploadType").map(String::as_str) != Some("media") {
            return Err(StorageError::invalid(
                "Only uploadType=media is served by this emulator.",
            ));
        }
        let Some(name) = query.get("name").filter(|n| !n.is_empty()) else {
            return Err(StorageError::new(
                400,
                "required",
                "Required parameter: name",
            ));
        };
        let wanted = precondition(query)?;
        let generation = self.generation();
        let b = self
            .buckets
            .get_mut(bucket)
            .ok_or_else(StorageError::no_bucket)?;
        let current = b.objects.get(name).map(|o| o.generation);
        // `0` means "must not exist"; any other value must be the live generation.
        let holds = match wanted {
            None => true,
            Some(0) => current.is_none(),
            Some(g) => current == Some(g),
        };
        if !holds {
            return Err(StorageError::condition_not_met());
        }
        let o = Object {
            data: body.to_vec(),
            generation,
            content_type: content_type
                .unwrap_or("application/octet-stream")
                .to_string(),
        };
        let doc = object_doc(bucket, name, &o);
        b.objects.insert(name.clone(), o);
        Ok(Reply::Json(doc))
    }

    fn delete_object(
        &mut self,
        bucket: &str,
        name: &str,
        query: &BTreeMap<String, String>,
    ) -> Result<Reply, StorageError> {
        let wanted = precondition(query)?;
        let b = self
            .buckets
            .get_mut(bucket)
            .ok_or_else(StorageError::no_bucket)?;
        let Some(current) = b.objects.get(name).map(|o| o.generation) else {
            return Err(StorageError::new(
                404,
                "notFound",
                format!("No such object: {bucket}/{name}"),
            ));
        };
        if wanted.is_some_and(|g| g != current) {
            return Err(StorageError::condition_not_met());
        }
        b.objects.remove(name);
        Ok(Reply::Empty)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn generation(s: &Served) -> i64 {
        match &s.reply {
            Ok(Reply::Json(v)) => v["generation"].as_str().unwrap().parse().unwrap(),
            other => panic!("{other:?}"),
        }
    }

    fn code(s: &Served) -> u16 {
        s.reply.as_ref().err().map_or(200, |e| e.code)
    }

    #[test]
    fn generation_preconditions_let_exactly_one_writer_win() {
        let mut s = Storage::default();
        let upload = ["upload", "storage", "v1", "b", "bkt", "o"];
        let obj = ["storage", "v1", "b", "bkt", "o", "qhub/x.lock"];
        let create = q(&[
            ("uploadType", "media"),
            ("name", "qhub/x.lock"),
            ("ifGenerationMatch", "0"),
        ]);
        assert_eq!(
            code(&s.serve("POST", &upload, &create, b"a", None, None)),
            404
        );
        let made = s.serve(
            "POST",
            &["storage", "v1", "b"],
            &q(&[("project", "p")]),
            br#"{"name": "bkt", "location": "us-central1", "labels": {"qhub-purpose": "deploy-locks"}}"#,
            None,
            None,
        );
        assert_eq!(code(&made), 200);
        let again = s.serve(
            "POST",
            &["storage", "v1", "b"],
            &q(&[("project", "other")]),
            br#"{"name": "bkt"}"#,
            None,
            None,
        );
        assert_eq!(code(&again), 409);
        let first = s.serve("POST", &upload, &create, b"a", None, None);
        let g1 = generation(&first);
        assert_eq!(
            code(&s.serve("POST", &upload, &create, b"b", None, None)),
            412
        );
        let replace = |g: i64| {
            q(&[
                ("uploadType", "media"),
                ("name", "qhub/x.lock"),
                ("ifGenerationMatch", &g.to_string()),
            ])
        };
        let second = s.serve("POST", &upload, &replace(g1), b"c", None, None);
        let g2 = generation(&second);
        assert!(g2 > g1);
        assert_eq!(
            code(&s.serve("POST", &upload, &replace(g1), b"d", None, None)),
            412
        );
        match s
            .serve("GET", &obj, &q(&[("alt", "media")]), b"", None, None)
            .reply
        {
            Ok(Reply::Media {
                data, generation, ..
            }) => {
                assert_eq!(data, b"c");
                assert_eq!(generation, g2);
            }
            other => panic!("{other:?}"),
        }
        let stale = q(&[("ifGenerationMatch", &g1.to_string())]);
        assert_eq!(code(&s.serve("DELETE", &obj, &stale, b"", None, None)), 412);
        assert_eq!(
            code(&s.serve(
                "DELETE",
                &["storage", "v1", "b", "bkt"],
                &q(&[]),
                b"",
                None,
                None
            )),
            409
        );
        let current = q(&[("ifGenerationMatch", &g2.to_string())]);
        assert_eq!(
            code(&s.serve("DELETE", &obj, &current, b"", None, None)),
            200
        );
        assert_eq!(code(&s.serve("GET", &obj, &q(&[]), b"", None, None)), 404);
        assert_eq!(
            code(&s.serve("DELETE", &obj, &current, b"", None, None)),
            404
        );
        assert_eq!(
            code(&s.serve(
                "DELETE",
                &["storage", "v1", "b", "bkt"],
                &q(&[]),
                b"",
                None,
                None
            )),
            200
        );
        assert_eq!(
            code(&s.serve(
                "GET",
                &["storage", "v1", "b", "bkt"],
                &q(&[]),
                b"",
                None,
                None
            )),
            404
        );
    }

    #[test]
    fn bad_names_and_labels_are_refused() {
        let mut s = Storage::default();
        for body in [
            r#"{"name": "Upper"}"#,
            r#"{"name": "goog-locks"}"#,
            r#"{"name": "ok-name", "labels": {"Qhub": "x"}}"#,
            r#"{"name": "ok-name", "labels": {"k": "UPPER"}}"#,
        ] {
            let r = s.serve(
                "POST",
                &["storage", "v1", "b"],
                &q(&[("project", "p")]),
                body.as_bytes(),
                None,
                None,
            );
            assert_eq!(code(&r), 400, "{body}");
        }
    }
}
