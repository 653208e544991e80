//! RBAC authorization as the API server's RBAC authorizer decides it, over the stored Roles,
//! ClusterRoles, RoleBindings and ClusterRoleBindings: what a `SubjectAccessReview` for a
//! service account answers.
//!
//! The rules follow the Kubernetes documentation ("Using RBAC Authorization",
//! <https://kubernetes.io/docs/reference/access-authn-authz/rbac/>) and the authorizer
//! (kubernetes/kubernetes `plugin/pkg/auth/authorizer/rbac/rbac.go` and
//! `pkg/apis/rbac/v1/evaluation_helpers.go`):
//! - permissions are purely additive: a request is allowed when any rule of any role bound to
//!   the subject matches it;
//! - a ClusterRoleBinding grants its ClusterRole's rules in every namespace and on
//!   cluster-scoped resources; a RoleBinding grants the rules of its Role or ClusterRole only in
//!   the binding's namespace;
//! - a rule matches when its `verbs`, `apiGroups` and `resources` contain the request's (or
//!   `*`), a subresource is written `resource/subresource` (`*/scale` matches every `scale`),
//!   and `resourceNames`, when present, contains the object's name (so a list or create, which
//!   has no name, is not granted by a rule with `resourceNames`);
//! - a service account `sa` in `ns` is the subject `ServiceAccount ns/sa`, the user
//!   `system:serviceaccount:ns:sa` and a member of the groups `system:serviceaccounts` and
//!   `system:serviceaccounts:ns`.
//!
//! Not modelled: aggregated ClusterRoles (`aggregationRule`), non-resource URLs, and the
//! authorizers that run before RBAC (Node, webhooks): the platform needs none of them.

use serde_json::Value;

/// One request to authorize: a service account asks for `verb` on `group`/`resource` (with
/// an optional `/subresource`), in `namespace` (None: cluster-scoped, or all namespaces),
/// naming `name` (None for list, watch and create).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessRequest {
    /// The service account's namespace.
    pub sa_namespace: String,
    /// The service account's name.
    pub sa_name: String,
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, ...
    pub verb: String,
    /// The API group (`""` for the core group).
    pub group: String,
    /// The resource (plural), with `/subresource` when it addresses one (`pods/eviction`).
    pub resource: String,
    /// The namespace of the request; None for cluster-scoped resources or every namespace.
    pub namespace: Option<String>,
    /// The object's name, when the request names one.
    pub name: Option<String>,
}

fn strings(v: Option<&Value>) -> Vec<&str> {
    v.and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

fn contains(list: &[&str], want: &str) -> bool {
    list.iter().any(|s| *s == "*" || *s == want)
}

/// `evaluation_helpers.go` `ResourceMatches`: `*`, the exact resource, or `*/sub` for a
/// subresource.
fn resource_matches(list: &[&str], want: &str) -> bool {
    list.iter().any(|r| {
        *r == "*"
            || *r == want
            || r.strip_prefix("*/")
                .is_some_and(|sub| want.split_once('/').is_some_and(|(_, s)| s == sub))
    })
}

fn rule_allows(rule: &Value, req: &AccessRequest) -> bool {
    let names = strings(rule.get("resourceNames"));
    contains(&strings(rule.get("verbs")), &req.verb)
        && contains(&strings(rule.get("apiGroups")), &req.group)
        && resource_matches(&strings(rule.get("resources")), &req.resource)
        && (names.is_empty() || req.name.as_deref().is_some_and(|n| names.contains(&n)))
}

fn binds(binding: &Value, req: &AccessRequest) -> bool {
    let user = format!("system:serviceaccount:{}:{}", req.sa_namespace, req.sa_name);
    let ns_group = format!("system:serviceaccounts:{}", req.sa_namespace);
    binding
        .get("subjects")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|s| {
            let field = |k: &str| s.get(k).and_then(Value::as_str).unwrap_or_default();
            match field("kind") {
                "ServiceAccount" => {
                    field("name") == req.sa_name && field("namespace") == req.sa_namespace
                }
                "User" => field("name") == user,
                "Group" => {
                    let g = field("name");
                    g == "system:serviceaccounts" || g == ns_group || g == "system:authenticated"
                }
                _ => false,
            }
        })
}

fn find<'a>(
    objects: &[&'a Value],
    kind: &str,
    namespace: Option<&str>,
    name: &str,
) -> Option<&'a Value> {
    objects.iter().copied().find(|o| {
        o.get("kind").and_then(Value::as_str) == Some(kind)
            && o.pointer("/metadata/name").and_then(Value::as_str) == Some(name)
            && o.pointer("/metadata/namespace").and_then(Value::as_str) == namespace
    })
}

fn role_allows(role: Option<&Value>, req: &AccessRequest) -> bool {
    role.and_then(|r| r.get("rules"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|rule| rule_allows(rule, req))
}

/// Whether the RBAC objects among `objects` allow `req`.
pub fn allows(objects: &[Value], req: &AccessRequest) -> bool {
    let rbac: Vec<&Value> = objects
        .iter()
        .filter(|o| {
            o.get("apiVersion")
                .and_then(Value::as_str)
                .is_some_and(|v| v.starts_with("rbac.authorization.k8s.io/"))
        })
        .collect();
    let of_kind = |kind: &'static str| {
        rbac.iter()
            .copied()
            .filter(move |o| o.get("kind").and_then(Value::as_str) == Some(kind))
    };
    let role_ref = |b: &Value| {
        (
            b.pointer("/roleRef/kind")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            b.pointer("/roleRef/name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
        )
    };
    // Cluster-wide grants.
    let cluster = of_kind("ClusterRoleBinding")
        .filter(|b| binds(b, req))
        .any(|b| {
            let (kind, name) = role_ref(b);
            kind == "ClusterRole" && role_allows(find(&rbac, "ClusterRole", None, &name), req)
        });
    if cluster {
        return true;
    }
    // Namespaced grants apply only to requests in the binding's namespace.
    let Some(ns) = req.namespace.as_deref() else {
        return false;
    };
    of_kind("RoleBinding")
        .filter(|b| b.pointer("/metadata/namespace").and_then(Value::as_str) == Some(ns))
        .filter(|b| binds(b, req))
        .any(|b| {
            let (kind, name) = role_ref(b);
            let role = match kind.as_str() {
                "Role" => find(&rbac, "Role", Some(ns), &name),
                "ClusterRole" => find(&rbac, "ClusterRole", None, &name),
                _ => None,
            };
            role_allows(role, req)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn req(
        verb: &str,
        resource: &str,
        namespace: Option<&str>,
        name: Option<&str>,
    ) -> AccessRequest {
        AccessRequest {
            sa_namespace: "dev".into(),
            sa_name: "app".into(),
            verb: verb.into(),
            group: String::new(),
            resource: resource.into(),
            namespace: namespace.map(str::to_string),
            name: name.map(str::to_string),
        }
    }

    fn objects() -> Vec<Value> {
        vec![
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                   "metadata": {"name": "read"},
                   "rules": [{"apiGroups": [""], "resources": ["services"], "verbs": ["get", "list"]}]}),
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                   "metadata": {"name": "read"},
                   "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "read"},
                   "subjects": [{"kind": "ServiceAccount", "name": "app", "namespace": "dev"}]}),
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                   "metadata": {"name": "cm", "namespace": "dev"},
                   "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create"]},
                             {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "update"],
                              "resourceNames": ["status"]}]}),
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                   "metadata": {"name": "cm", "namespace": "dev"},
                   "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "cm"},
                   "subjects": [{"kind": "ServiceAccount", "name": "app", "namespace": "dev"}]}),
        ]
    }

    #[test]
    fn cluster_role_bindings_grant_everywhere_role_bindings_only_in_their_namespace() {
        let o = objects();
        assert!(allows(&o, &req("list", "services", None, None)));
        assert!(allows(
            &o,
            &req("get", "services", Some("other"), Some("x"))
        ));
        assert!(!allows(&o, &req("watch", "services", None, None)));
        assert!(allows(&o, &req("create", "configmaps", Some("dev"), None)));
        assert!(!allows(
            &o,
            &req("create", "configmaps", Some("kube-system"), None)
        ));
        assert!(!allows(&o, &req("create", "configmaps", None, None)));
    }

    #[test]
    fn resource_names_restrict_to_named_requests() {
        let o = objects();
        assert!(allows(
            &o,
            &req("get", "configmaps", Some("dev"), Some("status"))
        ));
        assert!(!allows(
            &o,
            &req("get", "configmaps", Some("dev"), Some("aws-auth"))
        ));
        // A list names nothing, so a rule with resourceNames cannot grant it.
        assert!(!allows(&o, &req("update", "configmaps", Some("dev"), None)));
    }

    #[test]
    fn another_service_account_gets_nothing() {
        let mut r = req("list", "services", None, None);
        r.sa_name = "intruder".into();
        assert!(!allows(&objects(), &r));
    }
}
