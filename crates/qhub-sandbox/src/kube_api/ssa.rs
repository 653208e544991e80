//! Field ownership (`metadata.managedFields`) and server-side apply.
//!
//! A simplified structured-merge-diff: maps are granular (each key is a field, down to the
//! leaves), lists and scalars are atomic leaves. Real Kubernetes merges associative lists
//! (containers by name, ports by port) element-wise; here two managers applying the same list
//! conflict, and one manager's list replaces the whole list.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

/// A path of map keys from the object root to an owned field.
pub(crate) type Path = Vec<String>;

/// A set of owned leaf paths.
pub(crate) type FieldSet = BTreeSet<Path>;

/// Metadata the server owns; no manager owns these.
const SYSTEM_META: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
];

/// Which part of an object a write addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Scope {
    /// The main resource: everything but status when the kind has a status subresource.
    Main,
    /// The `/status` subresource.
    Status,
}

impl Scope {
    /// The `subresource` of a managedFields entry.
    fn subresource(self) -> Option<&'static str> {
        match self {
            Scope::Main => None,
            Scope::Status => Some("status"),
        }
    }
}

fn collect(v: &Value, prefix: &mut Path, out: &mut FieldSet) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, c) in m {
                prefix.push(k.clone());
                collect(c, prefix, out);
                prefix.pop();
            }
        }
        _ => {
            out.insert(prefix.clone());
        }
    }
}

/// The leaf fields of `obj` a manager can own in `scope`.
pub(crate) fn leaves(obj: &Value, scope: Scope, has_status: bool) -> FieldSet {
    let mut out = FieldSet::new();
    let Some(top) = obj.as_object() else {
        return out;
    };
    for (k, v) in top {
        match k.as_str() {
            "apiVersion" | "kind" => {}
            "metadata" if scope == Scope::Main => {
                if let Some(meta) = v.as_object() {
                    for (mk, mv) in meta {
                        if !SYSTEM_META.contains(&mk.as_str()) {
                            collect(mv, &mut vec![k.clone(), mk.clone()], &mut out);
                        }
                    }
                }
            }
            "metadata" => {}
            "status" if has_status && scope == Scope::Status => {
                collect(v, &mut vec![k.clone()], &mut out);
            }
            "status" if has_status => {}
            _ if scope == Scope::Main => collect(v, &mut vec![k.clone()], &mut out),
            _ => {}
        }
    }
    out
}

/// The value at a path.
pub(crate) fn get_path<'a>(v: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut cur = v;
    for p in path {
        cur = cur.as_object()?.get(p)?;
    }
    Some(cur)
}

/// Sets the value at a path, creating maps on the way. An empty map only makes sure a map is
/// there: applying `labels: {}` must not wipe labels other managers own.
fn set_path(v: &mut Value, path: &[String], value: &Value) {
    let Some((last, init)) = path.split_last() else {
        return;
    };
    let mut cur = v;
    for p in init {
        if !cur.is_object() {
            *cur = json!({});
        }
        let Value::Object(m) = cur else { return };
        cur = m.entry(p.clone()).or_insert_with(|| json!({}));
    }
    if !cur.is_object() {
        *cur = json!({});
    }
    let Value::Object(m) = cur else { return };
    match value {
        Value::Object(o) if o.is_empty() => {
            let slot = m.entry(last.clone()).or_insert_with(|| json!({}));
            if !slot.is_object() {
                *slot = json!({});
            }
        }
        _ => {
            m.insert(last.clone(), value.clone());
        }
    }
}

fn remove_path(v: &mut Value, path: &[String]) {
    let Some((last, init)) = path.split_last() else {
        return;
    };
    let mut cur = v;
    for p in init {
        match cur.as_object_mut().and_then(|m| m.get_mut(p)) {
            Some(next) => cur = next,
            None => return,
        }
    }
    if let Some(m) = cur.as_object_mut() {
        m.remove(last);
    }
}

fn overlaps(a: &[String], b: &[String]) -> bool {
    a.iter().zip(b).all(|(x, y)| x == y)
}

/// One `metadata.managedFields` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    pub manager: String,
    pub operation: String,
    pub api_version: String,
    pub time: String,
    pub subresource: Option<String>,
    pub set: FieldSet,
}

fn to_fields_v1(set: &FieldSet) -> Value {
    let mut root = Map::new();
    for path in set {
        let mut cur = &mut root;
        for p in path {
            let next = cur
                .entry(format!("f:{p}"))
                .or_insert_with(|| Value::Object(Map::new()));
            let Value::Object(m) = next else { break };
            cur = m;
        }
    }
    Value::Object(root)
}

fn from_fields_v1(v: &Value, prefix: &mut Path, out: &mut FieldSet) {
    let children: Vec<(&String, &Value)> = v
        .as_object()
        .map(|m| m.iter().filter(|(k, _)| k.starts_with("f:")).collect())
        .unwrap_or_default();
    if children.is_empty() {
        if !prefix.is_empty() {
            out.insert(prefix.clone());
        }
        return;
    }
    for (k, c) in children {
        prefix.push(k[2..].to_string());
        from_fields_v1(c, prefix, out);
        prefix.pop();
    }
}

impl Entry {
    fn to_json(&self) -> Value {
        let mut v = json!({
            "manager": self.manager,
            "operation": self.operation,
            "apiVersion": self.api_version,
            "time": self.time,
            "fieldsType": "FieldsV1",
            "fieldsV1": to_fields_v1(&self.set),
        });
        if let (Some(sub), Some(m)) = (&self.subresource, v.as_object_mut()) {
            m.insert("subresource".into(), json!(sub));
        }
        v
    }

    fn from_json(v: &Value) -> Option<Self> {
        let mut set = FieldSet::new();
        from_fields_v1(v.get("fieldsV1")?, &mut Vec::new(), &mut set);
        let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        Some(Self {
            manager: s("manager").unwrap_or_default(),
            operation: s("operation").unwrap_or_else(|| "Update".into()),
            api_version: s("apiVersion").unwrap_or_default(),
            time: s("time").unwrap_or_default(),
            subresource: s("subresource"),
            set,
        })
    }

    fn same_slot(&self, manager: &str, operation: &str, scope: Scope) -> bool {
        self.manager == manager
            && self.operation == operation
            && self.subresource.as_deref() == scope.subresource()
    }
}

/// The managedFields entries of a stored object.
pub(crate) fn entries(obj: &Value) -> Vec<Entry> {
    obj.pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Entry::from_json).collect())
        .unwrap_or_default()
}

/// Writes entries into an object's metadata (dropping those that own nothing).
pub(crate) fn set_entries(obj: &mut Value, entries: &[Entry]) {
    let list: Vec<Value> = entries
        .iter()
        .filter(|e| !e.set.is_empty())
        .map(Entry::to_json)
        .collect();
    let meta = super::store::meta_mut(obj);
    if list.is_empty() {
        meta.remove("managedFields");
    } else {
        meta.insert("managedFields".into(), Value::Array(list));
    }
}

/// Puts `set` into the manager's entry for (operation, scope), keeping the entry's time when
/// its set is unchanged so that a no-op write stays a no-op.
fn upsert(
    entries: &mut Vec<Entry>,
    manager: &str,
    operation: &str,
    scope: Scope,
    api_version: &str,
    now: &str,
    set: FieldSet,
) {
    match entries
        .iter_mut()
        .find(|e| e.same_slot(manager, operation, scope))
    {
        Some(e) => {
            if e.set != set || e.api_version != api_version {
                e.set = set;
                e.api_version = api_version.to_string();
                e.time = now.to_string();
            }
        }
        None => entries.push(Entry {
            manager: manager.to_string(),
            operation: operation.to_string(),
            api_version: api_version.to_string(),
            time: now.to_string(),
            subresource: scope.subresource().map(str::to_string),
            set,
        }),
    }
}

/// A field another manager owns with a different value.
#[derive(Debug, Clone)]
pub(crate) struct Conflict {
    pub manager: String,
    pub field: String,
}

/// Renders a path as Kubernetes does in conflict messages (`.spec.replicas`).
pub(crate) fn render(path: &[String]) -> String {
    path.iter().map(|p| format!(".{p}")).collect()
}

/// The input of a server-side apply.
pub(crate) struct Apply<'a> {
    pub manager: &'a str,
    pub force: bool,
    pub scope: Scope,
    pub has_status: bool,
    pub api_version: &'a str,
    pub now: &'a str,
}

/// Merges an applied configuration into the live object (`{}`-like skeleton when creating)
/// and returns the new object with its managedFields, or the conflicts.
pub(crate) fn apply(live: &Value, applied: &Value, a: &Apply) -> Result<Value, Vec<Conflict>> {
    let new_set = leaves(applied, a.scope, a.has_status);
    let mut managers = entries(live);
    let sub = a.scope.subresource();

    let mut conflicts = Vec::new();
    let mut to_drop: Vec<(usize, Path)> = Vec::new();
    for (i, e) in managers.iter().enumerate() {
        if e.manager == a.manager || e.subresource.as_deref() != sub {
            continue;
        }
        for q in &e.set {
            for p in new_set.iter().filter(|p| overlaps(p, q)) {
                // Applying an empty map above someone else's field only asks for the map.
                let empty_map = get_path(applied, p)
                    .and_then(Value::as_object)
                    .is_some_and(Map::is_empty);
                if empty_map && p.len() < q.len() {
                    continue;
                }
                let deeper = if p.len() >= q.len() { p } else { q };
                if get_path(applied, deeper) != get_path(live, deeper) {
                    conflicts.push(Conflict {
                        manager: e.manager.clone(),
                        field: render(q),
                    });
                    to_drop.push((i, q.clone()));
                    break;
                }
            }
        }
    }
    if !conflicts.is_empty() && !a.force {
        return Err(conflicts);
    }
    // Forcing takes the conflicting fields away from their owners.
    for (i, q) in to_drop {
        managers[i].set.remove(&q);
    }

    let mut out = live.clone();
    let old_set = managers
        .iter()
        .find(|e| e.same_slot(a.manager, "Apply", a.scope))
        .map(|e| e.set.clone())
        .unwrap_or_default();
    for o in old_set.iter().filter(|o| !new_set.contains(*o)) {
        // Wanted when the new config still sets it or something below it; an ancestor that
        // is now an empty map does not keep it.
        let still_wanted = new_set.iter().any(|p| overlaps(p, o) && p.len() >= o.len());
        let owned_elsewhere = managers.iter().any(|e| {
            !e.same_slot(a.manager, "Apply", a.scope) && e.set.iter().any(|q| overlaps(q, o))
        });
        if !still_wanted && !owned_elsewhere {
            remove_path(&mut out, o);
        }
    }
    for p in &new_set {
        if let Some(v) = get_path(applied, p) {
            set_path(&mut out, p, v);
        }
    }
    upsert(
        &mut managers,
        a.manager,
        "Apply",
        a.scope,
        a.api_version,
        a.now,
        new_set,
    );
    set_entries(&mut out, &managers);
    Ok(out)
}

/// Records an Update (create, replace, non-apply patch) by `manager`: it takes ownership of
/// the fields it changed; removed fields leave every owner.
pub(crate) fn track_update(
    live: Option<&Value>,
    new: &mut Value,
    manager: &str,
    scope: Scope,
    has_status: bool,
    api_version: &str,
    now: &str,
) {
    let empty = json!({});
    let before = live.unwrap_or(&empty);
    let old_leaves = leaves(before, scope, has_status);
    let new_leaves = leaves(new, scope, has_status);
    let changed: Vec<&Path> = new_leaves
        .iter()
        .filter(|p| get_path(before, p) != get_path(new, p))
        .collect();
    let removed: Vec<&Path> = old_leaves
        .iter()
        .filter(|p| get_path(new, p).is_none())
        .collect();
    let mut managers = entries(before);
    if changed.is_empty() && removed.is_empty() {
        set_entries(new, &managers);
        return;
    }
    let sub = scope.subresource();
    for e in managers.iter_mut() {
        if e.subresource.as_deref() != sub {
            continue;
        }
        let mine = e.same_slot(manager, "Update", scope);
        e.set.retain(|q| {
            let gone = get_path(new, q).is_none();
            let taken = !mine && changed.iter().any(|c| overlaps(c, q));
            !gone && !taken
        });
    }
    let mut mine = managers
        .iter()
        .find(|e| e.same_slot(manager, "Update", scope))
        .map(|e| e.set.clone())
        .unwrap_or_default();
    mine.retain(|q| get_path(new, q).is_some());
    mine.extend(changed.into_iter().cloned());
    upsert(
        &mut managers,
        manager,
        "Update",
        scope,
        api_version,
        now,
        mine,
    );
    set_entries(new, &managers);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a<'x>(manager: &'x str, force: bool) -> Apply<'x> {
        Apply {
            manager,
            force,
            scope: Scope::Main,
            has_status: false,
            api_version: "v1",
            now: "2025-01-01T00:00:00Z",
        }
    }

    #[test]
    fn fields_v1_round_trips() {
        let obj = json!({"metadata": {"name": "x", "labels": {"a": "1"}}, "data": {"k": "v"}});
        let set = leaves(&obj, Scope::Main, false);
        let fv = to_fields_v1(&set);
        assert_eq!(
            fv,
            json!({"f:data": {"f:k": {}}, "f:metadata": {"f:labels": {"f:a": {}}}})
        );
        let mut back = FieldSet::new();
        from_fields_v1(&fv, &mut Vec::new(), &mut back);
        assert_eq!(back, set);
    }

    #[test]
    fn apply_conflicts_merges_and_prunes() {
        let live = json!({"metadata": {"name": "x"}});
        let one = apply(
            &live,
            &json!({"data": {"a": "1", "b": "2"}}),
            &a("one", false),
        )
        .unwrap();
        let two = apply(&one, &json!({"data": {"c": "3"}}), &a("two", false)).unwrap();
        assert_eq!(two["data"], json!({"a": "1", "b": "2", "c": "3"}));
        let err = apply(&two, &json!({"data": {"a": "9"}}), &a("two", false)).unwrap_err();
        assert_eq!(err[0].field, ".data.a");
        // Same value: shared ownership, no conflict.
        let shared = apply(
            &two,
            &json!({"data": {"a": "1", "c": "3"}}),
            &a("two", false),
        )
        .unwrap();
        // `one` drops a (still owned by two) and b (solely its own).
        let pruned = apply(&shared, &json!({"data": {}}), &a("one", false)).unwrap();
        assert_eq!(pruned["data"], json!({"a": "1", "c": "3"}));
    }
}
