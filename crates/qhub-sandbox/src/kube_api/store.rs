//! The object store: every object keyed by group, kind, namespace and name, one global
//! resourceVersion counter, and the recent event history that watches replay from.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use serde_json::{Value, json};

/// How many events a watch can resume across; older resourceVersions get 410 Gone, as a real
/// API server answers once etcd has compacted them.
const HISTORY: usize = 4096;

/// Where an object lives. The version is not part of the key: one stored object is served at
/// every version of its kind (we do no conversion, like a CRD with `conversion: None`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Key {
    pub group: String,
    pub kind: String,
    /// Empty for cluster-scoped objects.
    pub namespace: String,
    pub name: String,
}

/// The kind of a watch event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change to the store.
#[derive(Debug)]
pub(crate) struct Event {
    pub rv: u64,
    pub typ: EventType,
    pub key: Key,
    /// The object before a modification (to turn selector transitions into ADDED/DELETED).
    pub old: Option<Value>,
    pub obj: Value,
}

/// The whole state behind the lock.
#[derive(Debug, Default)]
pub(crate) struct State {
    pub objects: BTreeMap<Key, Value>,
    pub rv: u64,
    pub history: VecDeque<Arc<Event>>,
    /// Events of the current request, broadcast (and persisted) when it finishes.
    pub pending: Vec<Arc<Event>>,
    /// When the controller holding each deleting object's finalizer is done (a namespace
    /// controller's pass, a cloud load balancer's release). Not persisted: a store loaded later
    /// finds them done.
    pub due: BTreeMap<Key, std::time::Instant>,
    /// How long those controllers take (None: [`super::FINALIZE_AFTER`]).
    pub finalize_after: Option<std::time::Duration>,
}

/// The group of an `apiVersion` (`apps/v1` → `apps`, `v1` → ``).
pub(crate) fn group_of(api_version: &str) -> &str {
    api_version
        .rsplit_once('/')
        .map(|(g, _)| g)
        .unwrap_or_default()
}

/// A string at a path in a JSON value.
pub(crate) fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut cur = v;
    for p in path {
        cur = cur.get(p)?;
    }
    cur.as_str()
}

/// The key of a stored object, if it has the fields that make one.
pub(crate) fn key_of(obj: &Value) -> Option<Key> {
    Some(Key {
        group: group_of(str_at(obj, &["apiVersion"])?).to_string(),
        kind: str_at(obj, &["kind"])?.to_string(),
        namespace: str_at(obj, &["metadata", "namespace"])
            .unwrap_or_default()
            .to_string(),
        name: str_at(obj, &["metadata", "name"])?.to_string(),
    })
}

/// The mutable `metadata` map of an object, created if missing.
pub(crate) fn meta_mut(obj: &mut Value) -> &mut serde_json::Map<String, Value> {
    if !obj.is_object() {
        *obj = json!({});
    }
    let map = obj.as_object_mut().expect("made an object above");
    let meta = map.entry("metadata").or_insert_with(|| json!({}));
    if !meta.is_object() {
        *meta = json!({});
    }
    meta.as_object_mut().expect("made an object above")
}

impl State {
    /// How long a finalizer's controller takes.
    pub fn finalize_after(&self) -> std::time::Duration {
        self.finalize_after.unwrap_or(super::FINALIZE_AFTER)
    }

    /// A state loaded from a saved snapshot.
    pub fn from_saved(saved: &Value) -> Result<Self, String> {
        let rv = saved
            .get("resourceVersion")
            .and_then(Value::as_u64)
            .ok_or("missing resourceVersion")?;
        let items = saved
            .get("objects")
            .and_then(Value::as_array)
            .ok_or("missing objects")?;
        let mut objects = BTreeMap::new();
        for obj in items {
            let key = key_of(obj).ok_or("an object without apiVersion, kind or name")?;
            objects.insert(key, obj.clone());
        }
        Ok(Self {
            objects,
            rv,
            ..Self::default()
        })
    }

    fn record(&mut self, typ: EventType, key: Key, old: Option<Value>, obj: Value) {
        let ev = Arc::new(Event {
            rv: self.rv,
            typ,
            key,
            old,
            obj,
        });
        if self.history.len() == HISTORY {
            self.history.pop_front();
        }
        self.history.push_back(ev.clone());
        self.pending.push(ev);
    }

    /// Stores an object under a new resourceVersion and returns it as stored.
    pub fn put(&mut self, key: Key, mut obj: Value) -> Value {
        self.rv += 1;
        meta_mut(&mut obj).insert("resourceVersion".into(), json!(self.rv.to_string()));
        let old = self.objects.insert(key.clone(), obj.clone());
        let typ = if old.is_some() {
            EventType::Modified
        } else {
            EventType::Added
        };
        self.record(typ, key, old, obj.clone());
        obj
    }

    /// Removes an object; it is returned with the resourceVersion of its deletion.
    pub fn remove(&mut self, key: &Key) -> Option<Value> {
        let mut obj = self.objects.remove(key)?;
        self.rv += 1;
        meta_mut(&mut obj).insert("resourceVersion".into(), json!(self.rv.to_string()));
        self.record(EventType::Deleted, key.clone(), None, obj.clone());
        Some(obj)
    }
}
