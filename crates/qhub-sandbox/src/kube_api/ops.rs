//! The verbs: get, list, create, replace, patch (apply, merge, JSON), delete.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;

use serde_json::{Value, json};

use super::api_err::ApiErr;
use super::controllers;
use super::discovery::ResType;
use super::patch;
use super::select::{FieldSelector, LabelSelector};
use super::ssa::{self, Scope};
use super::store::{Key, State, meta_mut, str_at};
use super::{Inner, KubeApi};

/// What a request addresses.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub rt: ResType,
    pub version: String,
    /// The namespace in the path (None for cluster-scoped kinds and all-namespace lists).
    pub namespace: Option<String>,
    pub name: Option<String>,
    /// Whether the path ends in `/status`.
    pub status: bool,
}

impl Target {
    fn api_version(&self) -> String {
        self.rt.api_version(&self.version)
    }

    fn key(&self, name: &str) -> Key {
        Key {
            group: self.rt.group.clone(),
            kind: self.rt.kind.clone(),
            namespace: self.namespace.clone().unwrap_or_default(),
            name: name.to_string(),
        }
    }

    fn scope(&self) -> Scope {
        if self.status {
            Scope::Status
        } else {
            Scope::Main
        }
    }

    /// The object as served at the requested version.
    pub fn serve(&self, mut obj: Value) -> Value {
        if let Some(m) = obj.as_object_mut() {
            m.insert("apiVersion".into(), json!(self.api_version()));
        }
        obj
    }
}

/// The request's parameters besides path and body.
pub(crate) struct Params<'a> {
    pub query: &'a [(String, String)],
    pub content_type: &'a str,
    pub user_agent: &'a str,
}

impl Params<'_> {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn flag(&self, name: &str) -> bool {
        matches!(self.get(name), Some("true" | "1" | ""))
    }

    fn dry_run(&self) -> bool {
        self.get("dryRun").is_some_and(|v| !v.is_empty())
    }

    /// The field manager of an Update: the `fieldManager` parameter, else the client's
    /// user agent up to the first `/`, as the API server derives it.
    fn manager(&self) -> String {
        match self.get("fieldManager") {
            Some(m) if !m.is_empty() => m.to_string(),
            _ => {
                let ua = self.user_agent.split('/').next().unwrap_or_default().trim();
                if ua.is_empty() {
                    "unknown".into()
                } else {
                    ua.to_string()
                }
            }
        }
    }

    pub fn labels(&self) -> Result<LabelSelector, ApiErr> {
        LabelSelector::parse(self.get("labelSelector").unwrap_or_default())
            .map_err(ApiErr::bad_request)
    }

    pub fn fields(&self) -> Result<FieldSelector, ApiErr> {
        FieldSelector::parse(self.get("fieldSelector").unwrap_or_default())
            .map_err(ApiErr::bad_request)
    }
}

/// The current time as Kubernetes writes it (RFC 3339, whole seconds).
pub(crate) fn now() -> String {
    use k8s_openapi::jiff::Timestamp;
    let ts = Timestamp::now();
    Timestamp::from_second(ts.as_second())
        .unwrap_or(ts)
        .to_string()
}

fn new_uid() -> String {
    let r: u128 = rand::random();
    let h = format!("{r:032x}");
    // Version 4, variant 1, as a UUID.
    format!(
        "{}-{}-4{}-a{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

fn parse_body(body: &[u8]) -> Result<Value, ApiErr> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| ApiErr::bad_request(format!("the request body is not valid JSON: {e}")))?;
    if !v.is_object() {
        return Err(ApiErr::bad_request(
            "the request body must be a JSON object",
        ));
    }
    Ok(v)
}

fn valid_name(name: &str, namespace_like: bool) -> bool {
    let ok_chars = if namespace_like {
        name.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && name.len() <= 63
    } else {
        name.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | ':'))
            && name.len() <= 253
    };
    !name.is_empty() && name != "." && name != ".." && ok_chars
}

fn rv_of(obj: &Value) -> Option<&str> {
    str_at(obj, &["metadata", "resourceVersion"]).filter(|s| !s.is_empty())
}

/// The request body's apiVersion and kind must be the ones of the path when present.
fn check_type(t: &Target, body: &Value) -> Result<(), ApiErr> {
    if let Some(kind) = str_at(body, &["kind"])
        && kind != t.rt.kind
    {
        return Err(ApiErr::bad_request(format!(
            "the body's kind {kind} does not match the path's kind {}",
            t.rt.kind
        )));
    }
    if let Some(av) = str_at(body, &["apiVersion"])
        && super::store::group_of(av) != t.rt.group
    {
        return Err(ApiErr::bad_request(format!(
            "the body's apiVersion {av} does not match the path's group {:?}",
            t.rt.group
        )));
    }
    if let (Some(ns), Some(path_ns)) = (str_at(body, &["metadata", "namespace"]), &t.namespace)
        && !ns.is_empty()
        && ns != path_ns
    {
        return Err(ApiErr::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        ));
    }
    Ok(())
}

/// Sets what the server owns: type, identity, uid, timestamps, generation. managedFields are
/// the callers' (apply and update tracking rewrite them).
fn fix_identity(t: &Target, name: &str, live: Option<&Value>, new: &mut Value) {
    if let Some(m) = new.as_object_mut() {
        m.insert("apiVersion".into(), json!(t.api_version()));
        m.insert("kind".into(), json!(t.rt.kind));
    }
    let spec_changed = live.is_some_and(|l| l.get("spec") != new.get("spec"));
    let meta = meta_mut(new);
    meta.insert("name".into(), json!(name));
    match &t.namespace {
        Some(ns) if t.rt.namespaced => {
            meta.insert("namespace".into(), json!(ns));
        }
        _ => {
            meta.remove("namespace");
        }
    }
    meta.remove("generateName");
    match live {
        Some(live) => {
            for k in ["uid", "creationTimestamp", "resourceVersion", "generation"] {
                match live.pointer(&format!("/metadata/{k}")) {
                    Some(v) => meta.insert(k.into(), v.clone()),
                    None => meta.remove(k),
                };
            }
            if spec_changed {
                let g = meta.get("generation").and_then(Value::as_i64).unwrap_or(0);
                meta.insert("generation".into(), json!(g + 1));
            }
        }
        None => {
            meta.insert("uid".into(), json!(new_uid()));
            meta.insert("creationTimestamp".into(), json!(now()));
            meta.insert("generation".into(), json!(1));
            meta.remove("resourceVersion");
        }
    }
}

/// Keeps the status of the live object (writes to the main resource of a kind with a status
/// subresource ignore status), and keeps server-allocated Service addresses.
fn keep_server_fields(t: &Target, live: Option<&Value>, new: &mut Value) {
    let Some(m) = new.as_object_mut() else { return };
    if t.rt.status {
        match live.and_then(|l| l.get("status")) {
            Some(s) => m.insert("status".into(), s.clone()),
            None => m.remove("status"),
        };
    }
    if t.rt.group.is_empty() && t.rt.kind == "Service" {
        for k in ["clusterIP", "clusterIPs"] {
            let old = live.and_then(|l| l.pointer(&format!("/spec/{k}")).cloned());
            if let (Some(old), Some(spec)) = (old, m.get_mut("spec").and_then(Value::as_object_mut))
                && !spec.contains_key(k)
            {
                spec.insert(k.into(), old);
            }
        }
    }
}

fn validate_crd(obj: &Value, name: &str) -> Result<(), ApiErr> {
    let Some(t) = super::discovery::from_crd(obj) else {
        return Err(ApiErr::invalid(format!(
            "CustomResourceDefinition.apiextensions.k8s.io \"{name}\" is invalid: spec.group, \
             spec.names.kind, spec.names.plural and at least one served spec.versions entry are required"
        )));
    };
    let storage = obj
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .map(|vs| {
            vs.iter()
                .filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
                .count()
        })
        .unwrap_or(0);
    if storage != 1 {
        return Err(ApiErr::invalid(format!(
            "CustomResourceDefinition.apiextensions.k8s.io \"{name}\" is invalid: \
             spec.versions: must have exactly one version marked as storage version"
        )));
    }
    if name != format!("{}.{}", t.plural, t.group) {
        return Err(ApiErr::invalid(format!(
            "CustomResourceDefinition.apiextensions.k8s.io \"{name}\" is invalid: \
             metadata.name: must be spec.names.plural+\".\"+spec.group"
        )));
    }
    Ok(())
}

fn is_crd(rt: &ResType) -> bool {
    rt.group == "apiextensions.k8s.io" && rt.kind == "CustomResourceDefinition"
}

impl KubeApi {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.lock()
    }

    /// Broadcasts the request's events and saves the store if anything changed.
    fn finish(&self, st: &mut State) -> Result<(), ApiErr> {
        self.settle(st);
        let pending = std::mem::take(&mut st.pending);
        if pending.is_empty() {
            return Ok(());
        }
        for ev in pending {
            // No receivers is fine: nobody is watching.
            let _ = self.inner.events.send(ev);
        }
        self.inner.save(st).map_err(|e| {
            tracing::error!(error = %e, "could not save the Kubernetes object store");
            ApiErr::new(
                500,
                "InternalError",
                format!("saving the object store: {e}"),
            )
        })
    }

    /// Runs the simulated controller and stores the object unless nothing changed. Returns
    /// whether it changed and the object as stored.
    fn commit(
        &self,
        st: &mut State,
        key: &Key,
        live: Option<&Value>,
        mut new: Value,
        dry_run: bool,
    ) -> (bool, Value) {
        let generation = |v: &Value| v.pointer("/metadata/generation").and_then(Value::as_i64);
        let spec_moved = live.is_none_or(|l| generation(l) != generation(&new));
        let delayed = controllers::delayed(key, &new);
        // Pods the namespace's Pod Security level refuses are never created: never ready.
        let refused = super::pod_security::workload_refusal(st, key, &new);
        // An established CRD stays established when it changes.
        let established =
            live.is_some_and(|l| super::is_crd_key(key) && super::discovery::established(l));
        let ready_now = refused.is_none()
            && (!delayed
                || established
                || (self.inner.runs(key) && self.inner.delay_for(key).is_zero()));
        if spec_moved {
            controllers::reconcile(key, &mut new, ready_now, &now());
            if let Some(message) = &refused {
                super::pod_security::record(key, &mut new, message, &now());
            }
        }
        if live == Some(&new) {
            return (false, new);
        }
        if dry_run {
            return (true, new);
        }
        let stored = st.put(key.clone(), new);
        super::pods::sync(st, key, &stored, &now());
        if spec_moved && delayed && !ready_now && refused.is_none() && self.inner.runs(key) {
            Inner::schedule_ready(&self.inner, key.clone(), &stored);
        }
        (true, stored)
    }

    fn counted(&self, changed: bool, dry_run: bool) {
        if changed && !dry_run {
            self.inner.mutations.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// GET of one object.
    pub(crate) fn get(&self, t: &Target, name: &str) -> Result<(u16, Value), ApiErr> {
        let st = self.lock();
        let obj = st
            .objects
            .get(&t.key(name))
            .ok_or_else(|| ApiErr::object_not_found(&t.rt, name))?;
        Ok((200, t.serve(obj.clone())))
    }

    /// Objects of the target's kind (and namespace) that match the selectors.
    pub(crate) fn matching(
        st: &State,
        t: &Target,
        labels: &LabelSelector,
        fields: &FieldSelector,
    ) -> Vec<(Key, Value)> {
        st.objects
            .iter()
            .filter(|(k, v)| {
                k.group == t.rt.group
                    && k.kind == t.rt.kind
                    && t.namespace.as_ref().is_none_or(|ns| *ns == k.namespace)
                    && labels.matches(v)
                    && fields.matches(v)
            })
            .map(|(k, v)| (k.clone(), t.serve(v.clone())))
            .collect()
    }

    fn list_doc(t: &Target, rv: u64, items: Vec<Value>) -> Value {
        json!({
            "kind": format!("{}List", t.rt.kind),
            "apiVersion": t.api_version(),
            "metadata": {"resourceVersion": rv.to_string()},
            "items": items,
        })
    }

    /// GET of a collection.
    pub(crate) fn list(&self, t: &Target, p: &Params) -> Result<(u16, Value), ApiErr> {
        let labels = p.labels()?;
        let fields = p.fields()?;
        let st = self.lock();
        let items = Self::matching(&st, t, &labels, &fields)
            .into_iter()
            .map(|(_, v)| v)
            .collect();
        Ok((200, Self::list_doc(t, st.rv, items)))
    }

    /// POST: create.
    pub(crate) fn create(
        &self,
        t: &Target,
        p: &Params,
        body: &[u8],
    ) -> Result<(u16, Value), ApiErr> {
        if t.status {
            return Err(ApiErr::new(
                405,
                "MethodNotAllowed",
                "POST is not allowed on /status",
            ));
        }
        let mut obj = parse_body(body)?;
        check_type(t, &obj)?;
        if t.rt.namespaced && t.namespace.is_none() {
            return Err(ApiErr::not_found(format!(
                "{} are namespaced: create them under /namespaces/{{namespace}}/{}",
                t.rt.plural, t.rt.plural
            )));
        }
        let name = match (
            str_at(&obj, &["metadata", "name"]).filter(|n| !n.is_empty()),
            str_at(&obj, &["metadata", "generateName"]),
        ) {
            (Some(n), _) => n.to_string(),
            (None, Some(prefix)) => {
                const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
                let suffix: String = (0..5)
                    .map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char)
                    .collect();
                format!("{prefix}{suffix}")
            }
            (None, None) => {
                return Err(ApiErr::invalid(format!(
                    "{} is invalid: metadata.name: Required value: name or generateName is required",
                    t.rt.kind
                )));
            }
        };
        self.create_named(t, p, &name, &mut obj, Scope::Main, None)
    }

    /// Creates `obj` as `name` (from POST, or from an apply of something missing).
    fn create_named(
        &self,
        t: &Target,
        p: &Params,
        name: &str,
        obj: &mut Value,
        scope: Scope,
        apply_manager: Option<&str>,
    ) -> Result<(u16, Value), ApiErr> {
        let namespace_like = t.rt.group.is_empty() && t.rt.kind == "Namespace";
        if !valid_name(name, namespace_like) {
            return Err(ApiErr::invalid(format!(
                "{} \"{name}\" is invalid: metadata.name: Invalid value: {name:?}: must consist of \
                 alphanumeric characters, '-' or '.'",
                t.rt.kind
            )));
        }
        if is_crd(&t.rt) {
            validate_crd(obj, name)?;
        }
        let dry_run = p.dry_run();
        let mut st = self.lock();
        let key = t.key(name);
        if super::pod_security::is_pod(&key)
            && let Some(message) = super::pod_security::refusal(
                &st,
                &key.namespace,
                name,
                obj.get("spec").unwrap_or(&Value::Null),
            )
        {
            return Err(ApiErr::new(403, "Forbidden", message));
        }
        if let Some(message) = super::finalizers::refuse_create(&st, &key, &t.rt.qualified()) {
            return Err(ApiErr {
                details: Some(
                    json!({"name": name, "group": t.rt.group, "kind": t.rt.plural,
                    "causes": [{"reason": "NamespaceTerminating",
                                "message": format!("namespace {} is being terminated", key.namespace),
                                "field": "metadata.namespace"}]}),
                ),
                ..ApiErr::new(403, "Forbidden", message)
            });
        }
        if st.objects.contains_key(&key) {
            return Err(ApiErr {
                details: Some(json!({"name": name, "group": t.rt.group, "kind": t.rt.plural})),
                ..ApiErr::new(
                    409,
                    "AlreadyExists",
                    format!("{} \"{name}\" already exists", t.rt.qualified()),
                )
            });
        }
        fix_identity(t, name, None, obj);
        super::finalizers::on_create(&key, obj);
        if t.rt.status
            && apply_manager.is_none()
            && let Some(m) = obj.as_object_mut()
        {
            m.remove("status");
        }
        if t.rt.group.is_empty() && t.rt.kind == "Service" {
            controllers::allocate_cluster_ip(obj, st.rv + 1);
        }
        if apply_manager.is_none() {
            ssa::track_update(
                None,
                obj,
                &p.manager(),
                scope,
                t.rt.status,
                &t.api_version(),
                &now(),
            );
        }
        if scope == Scope::Main {
            super::admission::admit(&st, &t.rt, &key, None, obj)?;
        }
        let (changed, stored) = self.commit(&mut st, &key, None, obj.clone(), dry_run);
        self.counted(changed, dry_run);
        self.finish(&mut st)?;
        Ok((201, t.serve(stored)))
    }

    /// PUT: replace (the main resource or its status).
    pub(crate) fn replace(
        &self,
        t: &Target,
        p: &Params,
        name: &str,
        body: &[u8],
    ) -> Result<(u16, Value), ApiErr> {
        let body = parse_body(body)?;
        check_type(t, &body)?;
        if let Some(n) = str_at(&body, &["metadata", "name"])
            && n != name
        {
            return Err(ApiErr::bad_request(format!(
                "the name of the object ({n}) does not match the name on the URL ({name})"
            )));
        }
        self.update_with(t, p, name, |_| Ok(body.clone()))
    }

    /// Shared by PUT and the non-apply PATCHes: `derive` turns the live object into the
    /// requested one.
    fn update_with(
        &self,
        t: &Target,
        p: &Params,
        name: &str,
        derive: impl FnOnce(&Value) -> Result<Value, ApiErr>,
    ) -> Result<(u16, Value), ApiErr> {
        let dry_run = p.dry_run();
        let mut st = self.lock();
        let key = t.key(name);
        let live = st
            .objects
            .get(&key)
            .cloned()
            .ok_or_else(|| ApiErr::object_not_found(&t.rt, name))?;
        let requested = derive(&live)?;
        if !requested.is_object() {
            return Err(ApiErr::bad_request("the result must be a JSON object"));
        }
        if let Some(rv) = rv_of(&requested)
            && Some(rv) != rv_of(&live)
        {
            return Err(ApiErr::modified(&t.rt, name));
        }
        let mut new = if t.status {
            // A status write changes only status.
            let mut new = live.clone();
            if let Some(m) = new.as_object_mut() {
                match requested.get("status") {
                    Some(s) => m.insert("status".into(), s.clone()),
                    None => m.remove("status"),
                };
            }
            new
        } else {
            let mut new = requested;
            keep_server_fields(t, Some(&live), &mut new);
            new
        };
        fix_identity(t, name, Some(&live), &mut new);
        if is_crd(&t.rt) {
            validate_crd(&new, name)?;
        }
        ssa::track_update(
            Some(&live),
            &mut new,
            &p.manager(),
            t.scope(),
            t.rt.status,
            &t.api_version(),
            &now(),
        );
        if !t.status {
            super::admission::admit(&st, &t.rt, &key, Some(&live), &mut new)?;
        }
        let (changed, stored) = self.commit(&mut st, &key, Some(&live), new, dry_run);
        self.counted(changed, dry_run);
        if changed && !dry_run && is_crd(&t.rt) {
            Self::drop_orphaned_crs(&mut st, &live, &stored);
        }
        self.finish(&mut st)?;
        Ok((200, t.serve(stored)))
    }

    /// PATCH in any of the four content types.
    pub(crate) fn patch(
        &self,
        t: &Target,
        p: &Params,
        name: &str,
        body: &[u8],
    ) -> Result<(u16, Value), ApiErr> {
        match p.content_type {
            "application/apply-patch+yaml" | "application/apply-patch+json" => {
                self.apply(t, p, name, body)
            }
            "application/merge-patch+json" | "application/strategic-merge-patch+json" => {
                let patch_doc: Value = serde_json::from_slice(body).map_err(|e| {
                    ApiErr::bad_request(format!("the patch is not valid JSON: {e}"))
                })?;
                if !patch_doc.is_object() {
                    return Err(ApiErr::bad_request("a merge patch must be a JSON object"));
                }
                self.update_with(t, p, name, |live| {
                    let mut doc = live.clone();
                    // The patch's resourceVersion, if any, is a precondition: start without
                    // the live one so that only the patch's shows.
                    meta_mut(&mut doc).remove("resourceVersion");
                    patch::merge(&mut doc, &patch_doc);
                    Ok(doc)
                })
            }
            "application/json-patch+json" => {
                let ops: Value = serde_json::from_slice(body).map_err(|e| {
                    ApiErr::bad_request(format!("the patch is not valid JSON: {e}"))
                })?;
                self.update_with(t, p, name, |live| {
                    let mut doc = live.clone();
                    patch::json_patch(&mut doc, &ops).map_err(|e| {
                        ApiErr::new(422, "Invalid", format!("the JSON patch failed: {e}"))
                    })?;
                    // A JSON patch cannot be a resourceVersion precondition unless it sets it.
                    if rv_of(&doc) == rv_of(live) {
                        meta_mut(&mut doc).remove("resourceVersion");
                    }
                    Ok(doc)
                })
            }
            other => Err(ApiErr::new(
                415,
                "UnsupportedMediaType",
                format!(
                    "the body of the request was in an unknown format ({other:?}); accepted: \
                     application/json-patch+json, application/merge-patch+json, \
                     application/strategic-merge-patch+json, application/apply-patch+yaml"
                ),
            )),
        }
    }

    /// PATCH with `application/apply-patch+yaml`: server-side apply.
    fn apply(
        &self,
        t: &Target,
        p: &Params,
        name: &str,
        body: &[u8],
    ) -> Result<(u16, Value), ApiErr> {
        let manager = match p.get("fieldManager") {
            Some(m) if !m.is_empty() => m.to_string(),
            _ => {
                return Err(ApiErr::bad_request(
                    "PATCH with application/apply-patch+yaml requires the fieldManager parameter",
                ));
            }
        };
        // JSON is YAML; this server reads only that subset (kube-rs and kubectl send JSON).
        let applied: Value = serde_json::from_slice(body).map_err(|e| {
            ApiErr::new(
                415,
                "UnsupportedMediaType",
                format!(
                    "this in-memory API server accepts apply patches written as JSON (which is \
                     valid YAML) only, and this body is not JSON ({e}); send the applied \
                     configuration as JSON"
                ),
            )
        })?;
        if !applied.is_object() {
            return Err(ApiErr::bad_request(
                "an applied configuration must be an object",
            ));
        }
        check_type(t, &applied)?;
        if str_at(&applied, &["kind"]).is_none() || str_at(&applied, &["apiVersion"]).is_none() {
            return Err(ApiErr::bad_request(
                "an applied configuration must set apiVersion and kind",
            ));
        }
        if let Some(n) = str_at(&applied, &["metadata", "name"])
            && n != name
        {
            return Err(ApiErr::bad_request(format!(
                "the name of the object ({n}) does not match the name on the URL ({name})"
            )));
        }
        let force = p.flag("force");
        let dry_run = p.dry_run();
        let scope = t.scope();
        let stamp = now();
        let api_version = t.api_version();
        let args = ssa::Apply {
            manager: &manager,
            force,
            scope,
            has_status: t.rt.status,
            api_version: &api_version,
            now: &stamp,
        };
        let live = self.lock().objects.get(&t.key(name)).cloned();
        let Some(live) = live else {
            if t.status {
                return Err(ApiErr::object_not_found(&t.rt, name));
            }
            let skeleton = json!({"metadata": {"name": name}});
            let mut obj = ssa::apply(&skeleton, &applied, &args)
                .map_err(|_| ApiErr::new(500, "InternalError", "a conflict on an empty object"))?;
            return self.create_named(t, p, name, &mut obj, scope, Some(&manager));
        };
        if let Some(rv) = rv_of(&applied)
            && Some(rv) != rv_of(&live)
        {
            return Err(ApiErr::modified(&t.rt, name));
        }
        let mut st = self.lock();
        // The object may have changed between the two locks; apply against what is there now.
        let key = t.key(name);
        let Some(live) = st.objects.get(&key).cloned() else {
            return Err(ApiErr::object_not_found(&t.rt, name));
        };
        let mut new = match ssa::apply(&live, &applied, &args) {
            Ok(v) => v,
            Err(conflicts) => {
                let causes: Vec<Value> = conflicts
                    .iter()
                    .map(|c| {
                        json!({"type": "FieldManagerConflict",
                               "message": format!("conflict with \"{}\"", c.manager),
                               "field": c.field})
                    })
                    .collect();
                let listed: Vec<String> = conflicts
                    .iter()
                    .map(|c| format!("conflict with \"{}\": {}", c.manager, c.field))
                    .collect();
                return Err(ApiErr {
                    details: Some(json!({"name": name, "group": t.rt.group,
                                         "kind": t.rt.plural, "causes": causes})),
                    ..ApiErr::new(
                        409,
                        "Conflict",
                        format!(
                            "Apply failed with {} conflict{}: {}",
                            conflicts.len(),
                            if conflicts.len() == 1 { "" } else { "s" },
                            listed.join(", ")
                        ),
                    )
                });
            }
        };
        fix_identity(t, name, Some(&live), &mut new);
        if is_crd(&t.rt) {
            validate_crd(&new, name)?;
        }
        if !t.status {
            super::admission::admit(&st, &t.rt, &key, Some(&live), &mut new)?;
        }
        let (changed, stored) = self.commit(&mut st, &key, Some(&live), new, dry_run);
        self.counted(changed, dry_run);
        if changed && !dry_run && is_crd(&t.rt) {
            Self::drop_orphaned_crs(&mut st, &live, &stored);
        }
        self.finish(&mut st)?;
        Ok((200, t.serve(stored)))
    }

    /// When a CRD changes its group or kind, the objects of the old kind go with it.
    fn drop_orphaned_crs(st: &mut State, old: &Value, new: &Value) {
        let old_t = super::discovery::from_crd(old);
        let new_t = super::discovery::from_crd(new);
        if let Some(o) = old_t
            && new_t.is_none_or(|n| n.group != o.group || n.kind != o.kind)
        {
            let mut deleted = BTreeSet::new();
            Self::remove_kind(st, &o.group, &o.kind, &mut deleted);
            Self::collect_garbage(st, deleted);
        }
    }

    fn remove_kind(st: &mut State, group: &str, kind: &str, deleted: &mut BTreeSet<String>) {
        let keys: Vec<Key> = st
            .objects
            .keys()
            .filter(|k| k.group == group && k.kind == kind)
            .cloned()
            .collect();
        for k in keys {
            Self::remove_one(st, &k, deleted);
        }
    }

    /// Deletes one object as a DELETE does: an object a finalizer holds is only marked
    /// (`deletionTimestamp`; a Namespace goes `Terminating` and its contents are deleted), the
    /// rest is removed at once ([`super::finalizers`]).
    pub(crate) fn remove_one(
        st: &mut State,
        key: &Key,
        deleted: &mut BTreeSet<String>,
    ) -> Option<Value> {
        let live = st.objects.get(key)?;
        if super::finalizers::held(key, live) {
            if super::finalizers::deleting(live) {
                return Some(live.clone());
            }
            let mut obj = live.clone();
            super::finalizers::mark(key, &mut obj, &now());
            let stored = st.put(key.clone(), obj);
            let delay = st.finalize_after();
            st.due
                .insert(key.clone(), std::time::Instant::now() + delay);
            // The namespace controller deletes what is in a namespace being deleted.
            if super::finalizers::is_namespace(key) {
                let inside: Vec<Key> = st
                    .objects
                    .keys()
                    .filter(|k| k.namespace == key.name)
                    .cloned()
                    .collect();
                for k in inside {
                    Self::remove_one(st, &k, deleted);
                }
            }
            return Some(stored);
        }
        Self::remove_now(st, key, deleted)
    }

    /// Removes one object for good (its finalizers, if any, are done).
    pub(crate) fn remove_now(
        st: &mut State,
        key: &Key,
        deleted: &mut BTreeSet<String>,
    ) -> Option<Value> {
        st.due.remove(key);
        let obj = st.remove(key)?;
        if let Some(uid) = str_at(&obj, &["metadata", "uid"]) {
            deleted.insert(uid.to_string());
        }
        // Deleting a CRD deletes its objects.
        if key.group == "apiextensions.k8s.io"
            && key.kind == "CustomResourceDefinition"
            && let Some(t) = super::discovery::from_crd(&obj)
        {
            Self::remove_kind(st, &t.group, &t.kind, deleted);
        }
        Some(obj)
    }

    /// The garbage collector: objects all of whose owners are gone follow them.
    pub(crate) fn collect_garbage(st: &mut State, mut deleted: BTreeSet<String>) {
        while !deleted.is_empty() {
            let live_uids: BTreeSet<String> = st
                .objects
                .values()
                .filter_map(|o| str_at(o, &["metadata", "uid"]).map(str::to_string))
                .collect();
            let orphans: Vec<Key> = st
                .objects
                .iter()
                .filter(|(_, o)| {
                    let owners: Vec<&str> = o
                        .pointer("/metadata/ownerReferences")
                        .and_then(Value::as_array)
                        .map(|refs| {
                            refs.iter()
                                .filter_map(|r| r.get("uid").and_then(Value::as_str))
                                .collect()
                        })
                        .unwrap_or_default();
                    owners.iter().any(|u| deleted.contains(*u))
                        && !owners.iter().any(|u| live_uids.contains(*u))
                })
                .map(|(k, _)| k.clone())
                .collect();
            let mut next = BTreeSet::new();
            for k in orphans {
                Self::remove_one(st, &k, &mut next);
            }
            deleted = next;
        }
    }

    fn orphan(p: &Params, body: &[u8]) -> bool {
        let from_body = serde_json::from_slice::<Value>(body).ok().and_then(|b| {
            b.get("propagationPolicy")
                .and_then(Value::as_str)
                .map(str::to_string)
                .or_else(|| {
                    b.get("orphanDependents")
                        .and_then(Value::as_bool)
                        .filter(|o| *o)
                        .map(|_| "Orphan".to_string())
                })
        });
        let policy = p.get("propagationPolicy").map(str::to_string).or(from_body);
        policy.as_deref() == Some("Orphan")
    }

    /// DELETE of one object (and, as the cluster would, what it contains or owns).
    pub(crate) fn delete(
        &self,
        t: &Target,
        p: &Params,
        name: &str,
        body: &[u8],
    ) -> Result<(u16, Value), ApiErr> {
        if t.status {
            return Err(ApiErr::new(
                405,
                "MethodNotAllowed",
                "DELETE is not allowed on /status",
            ));
        }
        let mut st = self.lock();
        let key = t.key(name);
        let Some(live) = st.objects.get(&key).cloned() else {
            return Err(ApiErr::object_not_found(&t.rt, name));
        };
        if p.dry_run() {
            return Ok((200, t.serve(live)));
        }
        let mut deleted = BTreeSet::new();
        let obj = Self::remove_one(&mut st, &key, &mut deleted).unwrap_or(live);
        if !Self::orphan(p, body) {
            Self::collect_garbage(&mut st, deleted);
        }
        self.counted(true, false);
        self.finish(&mut st)?;
        Ok((200, t.serve(obj)))
    }

    /// DELETE of a collection (with selectors).
    pub(crate) fn delete_collection(
        &self,
        t: &Target,
        p: &Params,
        body: &[u8],
    ) -> Result<(u16, Value), ApiErr> {
        let labels = p.labels()?;
        let fields = p.fields()?;
        let mut st = self.lock();
        let matched = Self::matching(&st, t, &labels, &fields);
        if p.dry_run() {
            let rv = st.rv;
            return Ok((
                200,
                Self::list_doc(t, rv, matched.into_iter().map(|(_, v)| v).collect()),
            ));
        }
        let mut deleted = BTreeSet::new();
        let mut items = Vec::new();
        for (k, _) in &matched {
            if let Some(obj) = Self::remove_one(&mut st, k, &mut deleted) {
                items.push(t.serve(obj));
            }
        }
        if !Self::orphan(p, body) {
            Self::collect_garbage(&mut st, deleted);
        }
        self.counted(!items.is_empty(), false);
        self.finish(&mut st)?;
        let rv = st.rv;
        Ok((200, Self::list_doc(t, rv, items)))
    }
}
