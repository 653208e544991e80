//! Duplicates: two resources of one kind carrying our marks and one name (a hand-made copy, a
//! create whose answer was lost by an older tool). Observe keeps one under the real name and
//! reports every other copy as an *extra*, `{name}~{cloud_id}`: no desired resource has such
//! a name, so the plan deletes it, and the delete step finds it by that name.

use std::collections::BTreeMap;

use crate::plan::ResourceId;

/// Separates the name from the cloud id in an extra copy's name (see [`extra_name`]).
pub const EXTRA_SEPARATOR: char = '~';

/// The name under which an extra copy of resource `name` (cloud id `cloud_id`) is reported.
pub fn extra_name(name: &str, cloud_id: &str) -> String {
    format!("{name}{EXTRA_SEPARATOR}{cloud_id}")
}

/// True when `name` is an extra copy's name ([`extra_name`]).
pub fn is_extra(name: &str) -> bool {
    name.contains(EXTRA_SEPARATOR)
}

/// A resource found in the cloud: its identity (renamed when it is an extra) and cloud id.
pub trait Identified {
    /// Kind and name.
    fn id(&self) -> &ResourceId;
    /// Kind and name, to rename an extra.
    fn id_mut(&mut self) -> &mut ResourceId;
    /// The cloud's own id.
    fn cloud_id(&self) -> &str;
}

/// True when two of `found` share kind and name.
pub fn has_duplicates<T: Identified>(found: &[T]) -> bool {
    let mut seen = std::collections::BTreeSet::new();
    found.iter().any(|f| !seen.insert(f.id().clone()))
}

/// Keeps one resource per kind and name and renames every other copy with [`extra_name`].
///
/// The one kept ranks highest by `in_use` (how much the deployment uses it), then has the
/// lowest cloud id, so every observer picks the same one. The order of `found` is kept.
pub fn dedupe<T: Identified, R: Ord>(mut found: Vec<T>, in_use: impl Fn(&T) -> R) -> Vec<T> {
    let mut groups: BTreeMap<ResourceId, Vec<usize>> = BTreeMap::new();
    for (i, f) in found.iter().enumerate() {
        groups.entry(f.id().clone()).or_default().push(i);
    }
    for members in groups.values().filter(|m| m.len() > 1) {
        let keep = members.iter().copied().max_by(|&a, &b| {
            let (a, b) = (&found[a], &found[b]);
            in_use(a)
                .cmp(&in_use(b))
                .then_with(|| b.cloud_id().cmp(a.cloud_id()))
        });
        for &i in members.iter().filter(|&&i| Some(i) != keep) {
            let f = &mut found[i];
            let cloud_id = f.cloud_id().to_string();
            tracing::warn!(
                resource = %f.id(),
                cloud_id = %cloud_id,
                "an extra copy of a resource carries our marks and name; it will be deleted"
            );
            let name = extra_name(&f.id().name, &cloud_id);
            f.id_mut().name = name;
        }
    }
    found
}
