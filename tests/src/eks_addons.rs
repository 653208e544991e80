//! EKS add-ons and EKS Pod Identity associations, which moto does not implement (moto 5.2.5's
//! `eks/urls.py` routes neither; an add-on call gets an HTML 404), served by the rules layer
//! ([`crate::aws_rules::AwsRules::serve_eks`]) as EKS answers them.
//!
//! What is served, per the EKS API reference:
//!
//! - **Add-ons**: CreateAddon (`CREATING`, then `ACTIVE` from the second DescribeAddon on, so a
//!   client must wait), DescribeAddon, ListAddons, DeleteAddon (`DELETING`, then gone), and
//!   DescribeAddonVersions for the add-ons EKS offers that qhub uses. A second CreateAddon of
//!   the same name is `ResourceInUseException` (409); an add-on or cluster that does not exist
//!   is `ResourceNotFoundException` (404). Add-ons go with their cluster.
//! - **Pod Identity associations**: CreatePodIdentityAssociation, Describe…, List… (filtered
//!   by `namespace` and `serviceAccount`), Update… (a new role) and Delete…. EKS allows one
//!   association per service account and cluster (EKS user guide, "EKS Pod Identity
//!   considerations": "You can associate one IAM role to each Kubernetes service account in
//!   each cluster"); a second one is `ResourceInUseException: Association already exists:
//!   <id>` (409, as eksctl-io/eksctl#7753 shows it). A role whose trust policy does not let
//!   `pods.eks.amazonaws.com` call `sts:AssumeRole` and `sts:TagSession` is refused with
//!   `InvalidParameterException: Trust policy of the role provided is invalid. Follow the
//!   official documentation to resolve the issue.` (hashicorp/terraform-provider-aws#41483,
//!   aws/aws-cdk#31522; the trust policy the EKS user guide requires, "Create IAM role with
//!   trust policy required by EKS Pod Identity"). The layer learns trust policies from the IAM
//!   requests that pass through the proxy ([`EksAddons::after_iam`]); a role it has not seen
//!   created is taken as it comes (it cannot tell). A repeated create with the same
//!   `clientRequestToken` answers the association made by the first (EKS's idempotency token).
//!   Associations go with their cluster.
//!
//! And what a pod gets from all this ([`pod_credentials`]): on an Amazon Linux 2023 node the
//! IMDSv2 hop limit is 1, "containers won't have access to the node's credentials using
//! IMDS" (EKS user guide, `nodes/al2023.adoc`), so a pod's only AWS credentials are those of
//! its service account's Pod Identity association, served by the `eks-pod-identity-agent`
//! add-on; on Amazon Linux 2 nodes (hop limit 2) it falls back to the node role.

use std::collections::BTreeMap;

use serde_json::{Value as Json, json};

use crate::aws_rules::{ClusterRecord, NodegroupRecord, Refusal};

/// The principal a Pod Identity role must trust.
pub const PODS_PRINCIPAL: &str = "pods.eks.amazonaws.com";
/// The add-on that hands pods their association's credentials.
pub const POD_IDENTITY_AGENT: &str = "eks-pod-identity-agent";
/// The message EKS refuses a role with that Pod Identity cannot assume (see the module docs).
pub const INVALID_TRUST: &str = "Trust policy of the role provided is invalid. Follow the official documentation to resolve the issue.";

/// The add-ons the layer offers, with the version it reports (EKS publishes many more).
pub const OFFERED: &[(&str, &str, &str)] = &[
    ("aws-ebs-csi-driver", "v1.53.0-eksbuild.1", "storage"),
    ("aws-efs-csi-driver", "v2.1.15-eksbuild.1", "storage"),
    ("eks-pod-identity-agent", "v1.3.10-eksbuild.1", "security"),
    ("vpc-cni", "v1.20.4-eksbuild.1", "networking"),
    ("coredns", "v1.12.4-eksbuild.1", "networking"),
    ("kube-proxy", "v1.35.0-eksbuild.2", "networking"),
];

/// An add-on of a cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct Addon {
    /// `CREATING` until its first DescribeAddon, then `ACTIVE`.
    pub status: String,
    /// Its version.
    pub version: String,
    /// Its tags.
    pub tags: Json,
    /// When it was made (seconds since the epoch).
    pub created_at: f64,
}

/// A Pod Identity association.
#[derive(Debug, Clone, PartialEq)]
pub struct Association {
    /// Its id (`a-` and 17 characters).
    pub id: String,
    /// The cluster.
    pub cluster: String,
    /// The service account's namespace.
    pub namespace: String,
    /// The service account.
    pub service_account: String,
    /// The role it hands out.
    pub role_arn: String,
    /// Its tags.
    pub tags: Json,
    /// The create's `clientRequestToken`.
    pub token: Option<String>,
    /// When it was made (seconds since the epoch).
    pub created_at: f64,
}

/// The add-ons, associations and role trust policies the layer holds.
#[derive(Debug, Clone, Default)]
pub struct EksAddons {
    /// Add-ons by (cluster, name).
    pub addons: BTreeMap<(String, String), Addon>,
    /// Associations by id.
    pub associations: BTreeMap<String, Association>,
    /// Trust policies (JSON text) of the roles created through the proxy, by role name.
    pub trust: BTreeMap<String, String>,
    next: u64,
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn not_found(message: String) -> Refusal {
    Refusal {
        status: 404,
        code: "ResourceNotFoundException",
        message,
    }
}

fn invalid(message: String) -> Refusal {
    Refusal {
        status: 400,
        code: "InvalidParameterException",
        message,
    }
}

fn in_use(message: String) -> Refusal {
    Refusal {
        status: 409,
        code: "ResourceInUseException",
        message,
    }
}

/// `%XX` and `+` decoding of one form or query value.
pub fn form_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len()
                && b[i + 1].is_ascii_hexdigit()
                && b[i + 2].is_ascii_hexdigit() =>
            {
                let hex = |c: u8| {
                    char::from(c)
                        .to_digit(16)
                        .and_then(|d| u8::try_from(d).ok())
                };
                out.push(hex(b[i + 1]).unwrap_or(0) << 4 | hex(b[i + 2]).unwrap_or(0));
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The decoded `key=value` pairs of a form body or query string.
pub fn form(s: &str) -> BTreeMap<String, String> {
    s.split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (form_decode(k), form_decode(v)))
        .collect()
}

fn as_list(v: &Json) -> Vec<&str> {
    match v {
        Json::String(s) => vec![s.as_str()],
        Json::Array(a) => a.iter().filter_map(Json::as_str).collect(),
        _ => Vec::new(),
    }
}

/// True when trust policy `document` lets EKS Pod Identity assume the role: an `Allow` for
/// the [`PODS_PRINCIPAL`] service of both `sts:AssumeRole` and `sts:TagSession` (or a
/// wildcard covering them).
pub fn trusts_pods(document: &str) -> bool {
    let Ok(doc) = serde_json::from_str::<Json>(document) else {
        return false;
    };
    let statements: Vec<&Json> = match &doc["Statement"] {
        Json::Array(a) => a.iter().collect(),
        s @ Json::Object(_) => vec![s],
        _ => Vec::new(),
    };
    let mut actions: Vec<&str> = Vec::new();
    for s in statements {
        if s["Effect"] != "Allow" || !as_list(&s["Principal"]["Service"]).contains(&PODS_PRINCIPAL)
        {
            continue;
        }
        actions.extend(as_list(&s["Action"]));
    }
    let allows = |action: &str| {
        actions
            .iter()
            .any(|a| *a == action || *a == "sts:*" || *a == "*")
    };
    allows("sts:AssumeRole") && allows("sts:TagSession")
}

fn role_name(arn: &str) -> &str {
    arn.rsplit('/').next().unwrap_or(arn)
}

impl EksAddons {
    fn next_id(&mut self) -> String {
        self.next += 1;
        format!("a-{:017}", self.next)
    }

    /// Forgets what belonged to cluster `name` (deleted: its add-ons and associations go
    /// with it).
    pub fn forget_cluster(&mut self, name: &str) {
        self.addons.retain(|(c, _), _| c != name);
        self.associations.retain(|_, a| a.cluster != name);
    }

    /// Learns the trust policies of roles from a successful IAM request (form-encoded):
    /// CreateRole, UpdateAssumeRolePolicy, DeleteRole.
    pub fn after_iam(&mut self, op: &str, body: &[u8]) {
        let f = form(&String::from_utf8_lossy(body));
        let Some(name) = f.get("RoleName").cloned() else {
            return;
        };
        match op {
            "CreateRole" => {
                if let Some(doc) = f.get("AssumeRolePolicyDocument") {
                    self.trust.insert(name, doc.clone());
                }
            }
            "UpdateAssumeRolePolicy" => {
                if let Some(doc) = f.get("PolicyDocument") {
                    self.trust.insert(name, doc.clone());
                }
            }
            "DeleteRole" => {
                self.trust.remove(&name);
            }
            _ => {}
        }
    }

    /// The refusal of a role Pod Identity could not assume, if it is one the layer knows.
    fn check_role(&self, role_arn: &str) -> Result<(), Refusal> {
        match self.trust.get(role_name(role_arn)) {
            Some(doc) if !trusts_pods(doc) => Err(invalid(INVALID_TRUST.to_string())),
            _ => Ok(()),
        }
    }

    /// Serves an add-on or Pod Identity request (`op` as the proxy names it, `path` with its
    /// query), or `None` when it is neither.
    pub fn serve(
        &mut self,
        clusters: &BTreeMap<String, ClusterRecord>,
        op: &str,
        path: &str,
        body: &[u8],
    ) -> Option<Result<Json, Refusal>> {
        let (path, query) = path.split_once('?').unwrap_or((path, ""));
        let query = form(query);
        let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let body: Json = serde_json::from_slice(body).unwrap_or(Json::Null);
        let no_cluster = |name: &str| not_found(format!("No cluster found for name: {name}."));
        let known = |name: &str| clusters.contains_key(name);
        Some(match (op, segs.as_slice()) {
            ("DescribeAddonVersions", ["addons", "supported-versions"]) => {
                let wanted = query.get("addonName");
                let addons: Vec<Json> = OFFERED
                    .iter()
                    .filter(|(n, _, _)| wanted.is_none_or(|w| w == n))
                    .map(|(n, v, t)| {
                        json!({"addonName": n, "type": t, "addonVersions": [{
                            "addonVersion": v,
                            "architecture": ["amd64", "arm64"],
                            "requiresIamPermissions": *n != POD_IDENTITY_AGENT,
                        }]})
                    })
                    .collect();
                Ok(json!({"addons": addons}))
            }
            ("CreateAddon", ["clusters", c, "addons"]) => {
                if !known(c) {
                    return Some(Err(no_cluster(c)));
                }
                let name = body["addonName"].as_str().unwrap_or_default().to_string();
                let Some((_, version, _)) = OFFERED.iter().find(|(n, _, _)| *n == name) else {
                    return Some(Err(invalid(format!(
                        "Addon {name} specified is not supported in {c} cluster version"
                    ))));
                };
                let key = (c.to_string(), name.clone());
                if self.addons.contains_key(&key) {
                    return Some(Err(in_use("Addon already exists.".into())));
                }
                let addon = Addon {
                    status: "CREATING".into(),
                    version: body["addonVersion"].as_str().unwrap_or(version).to_string(),
                    tags: body.get("tags").cloned().unwrap_or_else(|| json!({})),
                    created_at: now(),
                };
                let answer = addon_json(c, &name, &addon);
                self.addons.insert(key, addon);
                Ok(json!({"addon": answer}))
            }
            ("ListAddons", ["clusters", c, "addons"]) => {
                if !known(c) {
                    return Some(Err(no_cluster(c)));
                }
                let names: Vec<&str> = self
                    .addons
                    .keys()
                    .filter(|(cl, _)| cl == c)
                    .map(|(_, n)| n.as_str())
                    .collect();
                Ok(json!({"addons": names}))
            }
            ("DescribeAddon", ["clusters", c, "addons", name]) => {
                if !known(c) {
                    return Some(Err(no_cluster(c)));
                }
                match self.addons.get_mut(&(c.to_string(), name.to_string())) {
                    None => Err(not_found(format!("No addon: {name} found in cluster: {c}"))),
                    Some(a) => {
                        let answer = addon_json(c, name, a);
                        // Installed by the next look.
                        if a.status == "CREATING" {
                            a.status = "ACTIVE".into();
                        }
                        Ok(json!({"addon": answer}))
                    }
                }
            }
            ("DeleteAddon", ["clusters", c, "addons", name]) => {
                if !known(c) {
                    return Some(Err(no_cluster(c)));
                }
                match self.addons.remove(&(c.to_string(), name.to_string())) {
                    None => Err(not_found(format!("No addon: {name} found in cluster: {c}"))),
                    Some(mut a) => {
                        a.status = "DELETING".into();
                        Ok(json!({"addon": addon_json(c, name, &a)}))
                    }
                }
            }
            ("CreatePodIdentityAssociation", ["clusters", c, "pod-identity-associations"]) => {
                if !known(c) {
                    return Some(Err(no_cluster(c)));
                }
                let namespace = body["namespace"].as_str().unwrap_or_default().to_string();
                let service_account = body["serviceAccount"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                let role_arn = body["roleArn"].as_str().unwrap_or_default().to_string();
                let token = body["clientRequestToken"].as_str().map(str::to_string);
                if namespace.is_empty() || service_account.is_empty() || role_arn.is_empty() {
                    return Some(Err(invalid(
                        "namespace, serviceAccount and roleArn are required".into(),
                    )));
                }
                if let Some(a) = self.associations.values().find(|a| {
                    a.cluster == *c
                        && a.namespace == namespace
                        && a.service_account == service_account
                }) {
                    if token.is_some() && a.token == token && a.role_arn == role_arn {
                        return Some(Ok(json!({"association": association_json(a)})));
                    }
                    return Some(Err(in_use(format!("Association already exists: {}", a.id))));
                }
                if let Err(r) = self.check_role(&role_arn) {
                    return Some(Err(r));
                }
                let a = Association {
                    id: self.next_id(),
                    cluster: c.to_string(),
                    namespace,
                    service_account,
                    role_arn,
                    tags: body.get("tags").cloned().unwrap_or_else(|| json!({})),
                    token,
                    created_at: now(),
                };
                let answer = association_json(&a);
                self.associations.insert(a.id.clone(), a);
                Ok(json!({"association": answer}))
            }
            ("ListPodIdentityAssociations", ["clusters", c, "pod-identity-associations"]) => {
                if !known(c) {
                    return Some(Err(no_cluster(c)));
                }
                let summaries: Vec<Json> = self
                    .associations
                    .values()
                    .filter(|a| a.cluster == *c)
                    .filter(|a| query.get("namespace").is_none_or(|n| *n == a.namespace))
                    .filter(|a| {
                        query
                            .get("serviceAccount")
                            .is_none_or(|s| *s == a.service_account)
                    })
                    .map(|a| {
                        json!({
                            "clusterName": a.cluster,
                            "namespace": a.namespace,
                            "serviceAccount": a.service_account,
                            "associationArn": association_arn(a),
                            "associationId": a.id,
                        })
                    })
                    .collect();
                Ok(json!({"associations": summaries}))
            }
            (
                "DescribePodIdentityAssociation"
                | "UpdatePodIdentityAssociation"
                | "DeletePodIdentityAssociation",
                ["clusters", c, "pod-identity-associations", id],
            ) => {
                if !known(c) {
                    return Some(Err(no_cluster(c)));
                }
                if self.associations.get(*id).is_none_or(|a| a.cluster != *c) {
                    return Some(Err(not_found(format!(
                        "No Pod Identity Association found for id: {id} in cluster: {c}"
                    ))));
                }
                match op {
                    "DeletePodIdentityAssociation" => self
                        .associations
                        .remove(*id)
                        .map(|a| json!({"association": association_json(&a)}))
                        .ok_or_else(|| not_found(format!("No association {id}"))),
                    "UpdatePodIdentityAssociation" => {
                        let role = body["roleArn"].as_str().map(str::to_string);
                        if let Some(role) = &role
                            && let Err(r) = self.check_role(role)
                        {
                            return Some(Err(r));
                        }
                        let Some(a) = self.associations.get_mut(*id) else {
                            return Some(Err(not_found(format!("No association {id}"))));
                        };
                        if let Some(role) = role {
                            a.role_arn = role;
                        }
                        Ok(json!({"association": association_json(a)}))
                    }
                    _ => self
                        .associations
                        .get(*id)
                        .map(|a| json!({"association": association_json(a)}))
                        .ok_or_else(|| not_found(format!("No association {id}"))),
                }
            }
            _ => return None,
        })
    }
}

fn addon_json(cluster: &str, name: &str, a: &Addon) -> Json {
    json!({
        "addonName": name,
        "clusterName": cluster,
        "status": a.status,
        "addonVersion": a.version,
        "health": {"issues": []},
        "addonArn": format!("arn:aws:eks:us-west-2:123456789012:addon/{cluster}/{name}/00000000"),
        "createdAt": a.created_at,
        "modifiedAt": a.created_at,
        "tags": a.tags,
    })
}

fn association_arn(a: &Association) -> String {
    format!(
        "arn:aws:eks:us-west-2:123456789012:podidentityassociation/{}/{}",
        a.cluster, a.id
    )
}

fn association_json(a: &Association) -> Json {
    json!({
        "clusterName": a.cluster,
        "namespace": a.namespace,
        "serviceAccount": a.service_account,
        "roleArn": a.role_arn,
        "associationArn": association_arn(a),
        "associationId": a.id,
        "tags": a.tags,
        "createdAt": a.created_at,
        "modifiedAt": a.created_at,
    })
}

/// The AWS credentials a pod running as `namespace/service_account` on cluster `cluster`
/// gets, as a role ARN (`Ok`), or why it gets none (`Err`). See the module docs: on an AL2023
/// node (every node group of the cluster has an `AL2023_*` AMI type) only a Pod Identity
/// association served by an active [`POD_IDENTITY_AGENT`] add-on gives credentials; on AL2
/// nodes a pod without one falls back to the node role (`node_role` of the groups).
pub fn pod_credentials(
    addons: &EksAddons,
    nodegroups: &BTreeMap<(String, String), NodegroupRecord>,
    cluster: &str,
    namespace: &str,
    service_account: &str,
) -> Result<String, String> {
    let agent = addons
        .addons
        .contains_key(&(cluster.to_string(), POD_IDENTITY_AGENT.to_string()));
    let association = addons.associations.values().find(|a| {
        a.cluster == cluster && a.namespace == namespace && a.service_account == service_account
    });
    match (agent, association) {
        (true, Some(a)) => return Ok(a.role_arn.clone()),
        (false, Some(_)) => {
            return Err(format!(
                "{namespace}/{service_account} has a Pod Identity association on {cluster}, but the cluster has no {POD_IDENTITY_AGENT} add-on to serve it"
            ));
        }
        _ => {}
    }
    let groups: Vec<&NodegroupRecord> = nodegroups
        .iter()
        .filter(|((c, _), _)| c == cluster)
        .map(|(_, g)| g)
        .collect();
    match groups
        .iter()
        .find(|g| !g.ami_type.as_deref().unwrap_or("").starts_with("AL2023_"))
    {
        Some(g) => Ok(g.node_role.clone()),
        None => Err(format!(
            "{namespace}/{service_account} on {cluster}: the nodes run Amazon Linux 2023, whose IMDSv2 hop limit of 1 keeps the node role from pods, and no Pod Identity association names this service account"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clusters() -> BTreeMap<String, ClusterRecord> {
        BTreeMap::from([(
            "x-dev".to_string(),
            ClusterRecord {
                version: "1.35".into(),
                support_type: "STANDARD".into(),
            },
        )])
    }

    const POD_TRUST: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"pods.eks.amazonaws.com"},"Action":["sts:AssumeRole","sts:TagSession"]}]}"#;
    const EC2_TRUST: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;

    fn create_role(layer: &mut EksAddons, name: &str, trust: &str) {
        let body = format!(
            "Action=CreateRole&RoleName={name}&AssumeRolePolicyDocument={}",
            trust
                .bytes()
                .map(|b| format!("%{b:02X}"))
                .collect::<String>()
        );
        layer.after_iam("CreateRole", body.as_bytes());
    }

    #[test]
    fn associations_refuse_duplicates_untrusting_roles_and_unknown_ids() {
        let mut layer = EksAddons::default();
        let cl = clusters();
        create_role(&mut layer, "pods", POD_TRUST);
        create_role(&mut layer, "nodes", EC2_TRUST);
        let create = |layer: &mut EksAddons, sa: &str, role: &str, token: &str| {
            layer
                .serve(
                    &cl,
                    "CreatePodIdentityAssociation",
                    "/clusters/x-dev/pod-identity-associations",
                    json!({"namespace": "kube-system", "serviceAccount": sa,
                           "roleArn": format!("arn:aws:iam::1:role/{role}"),
                           "clientRequestToken": token})
                    .to_string()
                    .as_bytes(),
                )
                .unwrap()
        };
        let refused = create(&mut layer, "a", "nodes", "t0").unwrap_err();
        assert_eq!(refused.code, "InvalidParameterException");
        assert_eq!(refused.message, INVALID_TRUST);
        let made = create(&mut layer, "a", "pods", "t1").unwrap();
        let id = made["association"]["associationId"]
            .as_str()
            .unwrap()
            .to_string();
        // The same token again: the same association (idempotency), another: in use.
        let again = create(&mut layer, "a", "pods", "t1").unwrap();
        assert_eq!(again["association"]["associationId"], id.as_str());
        let dup = create(&mut layer, "a", "pods", "t2").unwrap_err();
        assert_eq!((dup.status, dup.code), (409, "ResourceInUseException"));
        assert_eq!(dup.message, format!("Association already exists: {id}"));
        let listed = layer
            .serve(
                &cl,
                "ListPodIdentityAssociations",
                "/clusters/x-dev/pod-identity-associations?namespace=kube-system&serviceAccount=a",
                b"",
            )
            .unwrap()
            .unwrap();
        assert_eq!(listed["associations"].as_array().unwrap().len(), 1);
        let path = format!("/clusters/x-dev/pod-identity-associations/{id}");
        assert!(
            layer
                .serve(&cl, "DeletePodIdentityAssociation", &path, b"")
                .unwrap()
                .is_ok()
        );
        let gone = layer
            .serve(&cl, "DescribePodIdentityAssociation", &path, b"")
            .unwrap()
            .unwrap_err();
        assert_eq!(gone.code, "ResourceNotFoundException");
        let no_cluster = layer
            .serve(
                &cl,
                "ListPodIdentityAssociations",
                "/clusters/other/pod-identity-associations",
                b"",
            )
            .unwrap()
            .unwrap_err();
        assert_eq!(no_cluster.code, "ResourceNotFoundException");
    }

    #[test]
    fn addons_are_created_then_active_and_unique() {
        let mut layer = EksAddons::default();
        let cl = clusters();
        let create = |layer: &mut EksAddons| {
            layer
                .serve(
                    &cl,
                    "CreateAddon",
                    "/clusters/x-dev/addons",
                    br#"{"addonName":"eks-pod-identity-agent"}"#,
                )
                .unwrap()
        };
        assert_eq!(create(&mut layer).unwrap()["addon"]["status"], "CREATING");
        assert_eq!(
            create(&mut layer).unwrap_err().code,
            "ResourceInUseException"
        );
        let describe = |layer: &mut EksAddons| {
            layer
                .serve(
                    &cl,
                    "DescribeAddon",
                    "/clusters/x-dev/addons/eks-pod-identity-agent",
                    b"",
                )
                .unwrap()
        };
        assert_eq!(describe(&mut layer).unwrap()["addon"]["status"], "CREATING");
        assert_eq!(describe(&mut layer).unwrap()["addon"]["status"], "ACTIVE");
        assert!(
            layer
                .serve(
                    &cl,
                    "DeleteAddon",
                    "/clusters/x-dev/addons/eks-pod-identity-agent",
                    b""
                )
                .unwrap()
                .is_ok()
        );
        assert_eq!(
            describe(&mut layer).unwrap_err().code,
            "ResourceNotFoundException"
        );
        assert!(
            layer
                .serve(&cl, "DescribeCluster", "/clusters/x-dev", b"")
                .is_none()
        );
    }

    #[test]
    fn trust_policies_and_pod_credentials() {
        assert!(trusts_pods(POD_TRUST));
        assert!(!trusts_pods(EC2_TRUST));
        // AssumeRole alone is not enough: Pod Identity tags its sessions.
        assert!(!trusts_pods(
            r#"{"Statement":{"Effect":"Allow","Principal":{"Service":"pods.eks.amazonaws.com"},"Action":"sts:AssumeRole"}}"#
        ));
        assert_eq!(form_decode("a%2Fb+c%"), "a/b c%");
        let groups = BTreeMap::from([(
            ("x-dev".to_string(), "g".to_string()),
            NodegroupRecord {
                version: "1.35".into(),
                node_role: "arn:aws:iam::1:role/x-dev-node".into(),
                ami_type: Some("AL2023_x86_64_STANDARD".into()),
            },
        )]);
        let layer = EksAddons::default();
        assert!(pod_credentials(&layer, &groups, "x-dev", "kube-system", "sa").is_err());
        let mut al2 = groups.clone();
        for g in al2.values_mut() {
            g.ami_type = Some("AL2_x86_64".into());
        }
        assert_eq!(
            pod_credentials(&layer, &al2, "x-dev", "kube-system", "sa").as_deref(),
            Ok("arn:aws:iam::1:role/x-dev-node")
        );
    }
}
