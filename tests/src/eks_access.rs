//! Who may reach an EKS cluster: the cluster's `accessConfig` and the access-entry API, which
//! moto lacks (it ignores `accessConfig` and answers 404 to access entries), served by the
//! rules layer ([`crate::aws_rules`]) in front of moto, and the token check an EKS API server
//! makes ([`authenticator`], for the in-memory Kubernetes API).
//!
//! Each rule cites its source:
//!
//! - **Authentication modes** (EKS user guide, "Grant IAM users and roles access to Kubernetes
//!   APIs", "Set Cluster Authentication Mode"): `CONFIG_MAP`, `API_AND_CONFIG_MAP`, `API`. A
//!   cluster created without `accessConfig` is `CONFIG_MAP` (EKS API reference,
//!   CreateAccessConfigRequest); `bootstrapClusterCreatorAdminPermissions` defaults to true, and
//!   with CONFIG_MAP it must be true (`InvalidParameterException: bootstrapClusterCreatorAdmin
//!   Permissions must be true if cluster authentication mode is set to CONFIG_MAP`,
//!   terraform-aws-modules/terraform-aws-eks#3206). Only `CONFIG_MAP → API_AND_CONFIG_MAP →
//!   API` moves are allowed ("Once the access entry method is enabled, it cannot be disabled";
//!   `InvalidParameterException: Unsupported authentication mode update from CONFIG_MAP to
//!   API`, pulumi/pulumi-eks#1493; the same words for a move to the mode a cluster already has,
//!   aws/aws-cdk#31032).
//! - **The creator**: with access entries on, EKS makes an admin entry
//!   (`AmazonEKSClusterAdminPolicy`, cluster scope) for the identity that created the cluster;
//!   under `CONFIG_MAP` that identity is admin without any entry (EKS user guide, "Grant IAM
//!   users access to Kubernetes with EKS access entries", prerequisites).
//! - **Node roles**: EKS makes an `EC2_LINUX` entry for a managed node group's role
//!   (aws/containers-roadmap#2425: "EKS will always create an access entry upon creation of a
//!   node group"), and migrates the node groups' `aws-auth` lines to such entries when a cluster
//!   leaves `CONFIG_MAP` (aws/containers-roadmap#185).
//! - **Errors**: access-entry calls on a `CONFIG_MAP` cluster answer 400
//!   `InvalidRequestException: The cluster's authentication mode must be set to one of [API,
//!   API_AND_CONFIG_MAP] to perform this operation.` (aws-ia/terraform-aws-eks-blueprints#1877,
//!   CreateAccessEntry; upbound/configuration-aws-eks#122, DescribeAccessEntry); a second entry
//!   for a principal answers 409 `ResourceInUseException: The specified access entry resource
//!   is already in use on this cluster.` (terraform-aws-modules/terraform-aws-eks#3293); a
//!   missing one 404 `ResourceNotFoundException: The specified principalArn could not be found.
//!   You can view your available access entries with 'list-access-entries'.`
//!   (terraform-aws-modules/terraform-aws-eks#3024); an STS session principal 400
//!   `InvalidParameterException: The specified principalArn is invalid: invalid principal.`
//!   (terraform-aws-modules/terraform-aws-eks#2969; EKS API reference, CreateAccessEntry: "You
//!   can't use the STS session principal type with access entries"); policies only on
//!   `STANDARD` entries (`InvalidParameterException: This operation can only be performed on
//!   Access Entries with a type of "STANDARD".`, aws-controllers-k8s/community#2144).
//! - **Idempotency**: a create repeated with its `clientRequestToken` answers the entry it made
//!   (EKS API reference, CreateAccessEntry `clientRequestToken`).
//! - **Deleting an entry** removes its policy associations (EKS user guide, "Delete access
//!   entries").
//! - **Who the API server lets in** ([`EksAccess::allows`]): the identity of the presigned STS
//!   `GetCallerIdentity` URL in the token (what aws-iam-authenticator asks STS), an assumed
//!   role matched to its role's entry whatever the role's path ("If the ARN of the role that you
//!   specified contained a path, Amazon EKS removes it in the generated username"); anyone else
//!   gets `401 Unauthorized`.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde_json::{Value as Json, json};

use crate::aws_rules::Refusal;

/// `CONFIG_MAP`, the mode of a cluster created without `accessConfig`.
pub const CONFIG_MAP: &str = "CONFIG_MAP";

/// The policy EKS associates with the creator's bootstrap entry.
pub const CLUSTER_ADMIN_POLICY: &str =
    "arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy";

/// One access entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// `STANDARD`, `EC2_LINUX`, …
    pub kind: String,
    /// The Kubernetes user name.
    pub username: String,
    /// Kubernetes groups.
    pub groups: Vec<String>,
    /// Tags given at creation.
    pub tags: BTreeMap<String, String>,
    /// The create's `clientRequestToken`.
    pub token: Option<String>,
    /// Associated policies by ARN, with their access scope.
    pub policies: BTreeMap<String, Json>,
    /// Seconds since the epoch.
    pub created_at: f64,
}

/// What one cluster allows.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ClusterAccess {
    /// `accessConfig.authenticationMode`.
    pub mode: String,
    /// `accessConfig.bootstrapClusterCreatorAdminPermissions`.
    pub bootstrap: bool,
    /// The ARN of the identity that created the cluster, when the proxy could tell.
    pub creator: Option<String>,
    /// Roles of its managed node groups.
    pub node_roles: Vec<String>,
    /// Access entries by principal ARN.
    pub entries: BTreeMap<String, Entry>,
}

/// The access state of the clusters created through the proxy.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EksAccess {
    /// Clusters by name.
    pub clusters: BTreeMap<String, ClusterAccess>,
    /// Creators of clusters being created, by cluster name (noted before CreateCluster is
    /// forwarded).
    creators: BTreeMap<String, String>,
}

fn segments(path: &str) -> Vec<String> {
    path.split('?')
        .next()
        .unwrap_or("")
        .split('/')
        .filter(|s| !s.is_empty())
        .map(percent_decode)
        .collect()
}

/// Decodes `%XX` escapes (the SDK escapes the ARN labels of the paths).
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(hi), Some(lo)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            let v = u8::try_from(hi * 16 + lo).unwrap_or(b'?');
            out.push(v);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The operation name of an access-entry request (`method`, path `segs`), for the proxy's
/// counts and rules.
pub fn operation(method: &str, segs: &[&str]) -> Option<&'static str> {
    Some(match (method, segs) {
        ("POST", ["clusters", _, "access-entries"]) => "CreateAccessEntry",
        ("GET", ["clusters", _, "access-entries"]) => "ListAccessEntries",
        ("GET", ["clusters", _, "access-entries", _]) => "DescribeAccessEntry",
        ("POST", ["clusters", _, "access-entries", _]) => "UpdateAccessEntry",
        ("DELETE", ["clusters", _, "access-entries", _]) => "DeleteAccessEntry",
        ("POST", ["clusters", _, "access-entries", _, "access-policies"]) => {
            "AssociateAccessPolicy"
        }
        ("GET", ["clusters", _, "access-entries", _, "access-policies"]) => {
            "ListAssociatedAccessPolicies"
        }
        ("DELETE", ["clusters", _, "access-entries", _, "access-policies", _]) => {
            "DisassociateAccessPolicy"
        }
        _ => return None,
    })
}

fn refusal(status: u16, code: &'static str, message: impl Into<String>) -> Refusal {
    Refusal {
        status,
        code,
        message: message.into(),
    }
}

fn entry_missing() -> Refusal {
    refusal(
        404,
        "ResourceNotFoundException",
        "The specified principalArn could not be found. You can view your available access entries with 'list-access-entries'.",
    )
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn has_api(mode: &str) -> bool {
    mode != CONFIG_MAP
}

/// The role name of an assumed-role session ARN
/// (`arn:aws:sts::1:assumed-role/NAME/SESSION` → `(partition, account, NAME)`).
fn assumed_role(arn: &str) -> Option<(&str, &str, &str)> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let [_, partition, "sts", _, account, resource] = parts.as_slice() else {
        return None;
    };
    let role = resource.strip_prefix("assumed-role/")?.split('/').next()?;
    Some((partition, account, role))
}

impl ClusterAccess {
    fn entry_json(&self, cluster: &str, principal: &str, e: &Entry) -> Json {
        json!({
            "clusterName": cluster,
            "principalArn": principal,
            "kubernetesGroups": e.groups,
            "accessEntryArn": format!("arn:aws:eks:us-west-2:123456789012:access-entry/{cluster}/{}", principal.rsplit(':').next().unwrap_or_default()),
            "createdAt": e.created_at,
            "modifiedAt": e.created_at,
            "tags": e.tags,
            "username": e.username,
            "type": e.kind,
        })
    }

    fn add(&mut self, principal: &str, kind: &str, tags: BTreeMap<String, String>) -> &mut Entry {
        let username = match kind {
            "STANDARD" => match assumed_role(principal) {
                Some(_) => principal.to_string(),
                None if principal.contains(":role/") => {
                    // EKS's generated name for a role drops its path.
                    let (head, name) = principal.rsplit_once('/').unwrap_or(("", principal));
                    let account = head.split(':').nth(4).unwrap_or_default();
                    format!("arn:aws:sts::{account}:assumed-role/{name}/{{{{SessionName}}}}")
                }
                None => principal.to_string(),
            },
            _ => "system:node:{{EC2PrivateDNSName}}".to_string(),
        };
        let groups = if kind == "STANDARD" {
            Vec::new()
        } else {
            vec!["system:nodes".to_string()]
        };
        self.entries.entry(principal.to_string()).or_insert(Entry {
            kind: kind.to_string(),
            username,
            groups,
            tags,
            token: None,
            policies: BTreeMap::new(),
            created_at: now(),
        })
    }

    /// The entries EKS makes itself once access entries are on: the creator's admin entry
    /// (when bootstrapped) and the node roles' entries.
    fn make_own_entries(&mut self) {
        if self.bootstrap
            && let Some(creator) = self.creator.clone()
        {
            self.add(&creator, "STANDARD", BTreeMap::new())
                .policies
                .entry(CLUSTER_ADMIN_POLICY.to_string())
                .or_insert(json!({"type": "cluster", "namespaces": []}));
        }
        for role in self.node_roles.clone() {
            self.add(&role, "EC2_LINUX", BTreeMap::new());
        }
    }

    /// The entry that lets identity `caller` (an STS caller ARN) in, if any.
    fn entry_of(&self, caller: &str) -> Option<&String> {
        if let Some(e) = self.entries.get_key_value(caller) {
            return Some(e.0);
        }
        let (partition, account, role) = assumed_role(caller)?;
        let prefix = format!("arn:{partition}:iam::{account}:role/");
        self.entries.keys().find(|p| {
            p.strip_prefix(&prefix)
                .is_some_and(|path| path.rsplit('/').next() == Some(role))
        })
    }
}

impl EksAccess {
    /// Notes that `caller` is creating cluster `name` (before the create is forwarded).
    pub fn creating(&mut self, name: &str, caller: &str) {
        self.creators.insert(name.to_string(), caller.to_string());
    }

    /// Whether the API server of cluster `cluster` lets identity `caller` (the ARN STS gives
    /// for its token) in: an access entry (when the mode has them), or the creator under
    /// `CONFIG_MAP`. A cluster not created through the proxy lets nobody in.
    pub fn allows(&self, cluster: &str, caller: &str) -> bool {
        let Some(c) = self.clusters.get(cluster) else {
            return false;
        };
        if c.mode == CONFIG_MAP {
            return c.creator.as_deref() == Some(caller);
        }
        c.entry_of(caller).is_some()
    }

    /// Serves the access-entry API and the access part of UpdateClusterConfig; refuses a
    /// CreateCluster EKS would refuse. `None`: forward the request.
    pub fn serve(&mut self, op: &str, path: &str, body: &[u8]) -> Option<Result<Json, Refusal>> {
        let segs = segments(path);
        let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
        let body: Json = serde_json::from_slice(body).unwrap_or(Json::Null);
        match (op, segs.as_slice()) {
            ("CreateCluster", _) => {
                let access = &body["accessConfig"];
                let mode = access["authenticationMode"].as_str().unwrap_or(CONFIG_MAP);
                let bootstrap = access["bootstrapClusterCreatorAdminPermissions"]
                    .as_bool()
                    .unwrap_or(true);
                (mode == CONFIG_MAP && !bootstrap).then(|| {
                    Err(refusal(
                        400,
                        "InvalidParameterException",
                        "bootstrapClusterCreatorAdminPermissions must be true if cluster authentication mode is set to CONFIG_MAP",
                    ))
                })
            }
            ("UpdateClusterConfig", ["clusters", name, "update-config"]) => {
                let to = body["accessConfig"]["authenticationMode"].as_str()?;
                Some(self.update_mode(name, to))
            }
            (op, ["clusters", cluster, "access-entries", rest @ ..]) if operation_is_ours(op) => {
                Some(self.entry_call(op, cluster, rest, &body))
            }
            _ => None,
        }
    }

    fn update_mode(&mut self, name: &str, to: &str) -> Result<Json, Refusal> {
        let Some(c) = self.clusters.get_mut(name) else {
            return Err(refusal(
                404,
                "ResourceNotFoundException",
                format!("No cluster found for name: {name}."),
            ));
        };
        let allowed = matches!(
            (c.mode.as_str(), to),
            ("CONFIG_MAP", "API_AND_CONFIG_MAP") | ("API_AND_CONFIG_MAP", "API")
        );
        if !allowed {
            return Err(refusal(
                400,
                "InvalidParameterException",
                format!(
                    "Unsupported authentication mode update from {} to {to}",
                    c.mode
                ),
            ));
        }
        let was_config_map = c.mode == CONFIG_MAP;
        c.mode = to.to_string();
        if was_config_map {
            c.make_own_entries();
        }
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(json!({"update": {
            "id": format!("00000000-0000-4000-9000-{n:012}"),
            "status": "Successful",
            "type": "AccessConfigUpdate",
            "params": [{"type": "AuthenticationMode", "value": to}],
            "errors": [],
        }}))
    }

    fn entry_call(
        &mut self,
        op: &str,
        cluster: &str,
        rest: &[&str],
        body: &Json,
    ) -> Result<Json, Refusal> {
        let Some(c) = self.clusters.get_mut(cluster) else {
            return Err(refusal(
                404,
                "ResourceNotFoundException",
                format!("No cluster found for name: {cluster}."),
            ));
        };
        if !has_api(&c.mode) {
            return Err(refusal(
                400,
                "InvalidRequestException",
                "The cluster's authentication mode must be set to one of [API, API_AND_CONFIG_MAP] to perform this operation.",
            ));
        }
        match (op, rest) {
            ("CreateAccessEntry", []) => {
                let Some(principal) = body["principalArn"].as_str() else {
                    return Err(refusal(
                        400,
                        "InvalidParameterException",
                        "principalArn is required",
                    ));
                };
                let token = body["clientRequestToken"].as_str().map(str::to_string);
                if let Some(e) = c.entries.get(principal) {
                    if token.is_some() && e.token == token {
                        return Ok(json!({"accessEntry": c.entry_json(cluster, principal, e)}));
                    }
                    return Err(refusal(
                        409,
                        "ResourceInUseException",
                        "The specified access entry resource is already in use on this cluster.",
                    ));
                }
                let iam = principal.split(':').nth(2) == Some("iam")
                    && (principal.contains(":role/") || principal.contains(":user/"));
                if !iam {
                    return Err(refusal(
                        400,
                        "InvalidParameterException",
                        "The specified principalArn is invalid: invalid principal.",
                    ));
                }
                let kind = body["type"].as_str().unwrap_or("STANDARD").to_string();
                let tags: BTreeMap<String, String> =
                    serde_json::from_value(body["tags"].clone()).unwrap_or_default();
                let e = c.add(principal, &kind, tags);
                e.token = token;
                if let Some(g) = body["kubernetesGroups"].as_array() {
                    e.groups = g
                        .iter()
                        .filter_map(Json::as_str)
                        .map(str::to_string)
                        .collect();
                }
                let e = e.clone();
                Ok(json!({"accessEntry": c.entry_json(cluster, principal, &e)}))
            }
            ("ListAccessEntries", []) => Ok(
                json!({"accessEntries": c.entries.keys().collect::<Vec<_>>(), "nextToken": null}),
            ),
            ("DescribeAccessEntry", [principal]) => {
                let e = c.entries.get(*principal).ok_or_else(entry_missing)?;
                Ok(json!({"accessEntry": c.entry_json(cluster, principal, e)}))
            }
            ("DeleteAccessEntry", [principal]) => {
                c.entries.remove(*principal).ok_or_else(entry_missing)?;
                Ok(json!({}))
            }
            ("AssociateAccessPolicy", [principal, "access-policies"]) => {
                let e = c.entries.get_mut(*principal).ok_or_else(entry_missing)?;
                if e.kind != "STANDARD" {
                    return Err(refusal(
                        400,
                        "InvalidParameterException",
                        "This operation can only be performed on Access Entries with a type of \"STANDARD\".",
                    ));
                }
                let (Some(policy), Some(scope)) =
                    (body["policyArn"].as_str(), body.get("accessScope"))
                else {
                    return Err(refusal(
                        400,
                        "InvalidParameterException",
                        "policyArn and accessScope are required",
                    ));
                };
                let mut scope = scope.clone();
                if scope.get("namespaces").is_none() {
                    scope["namespaces"] = json!([]);
                }
                e.policies.insert(policy.to_string(), scope.clone());
                Ok(json!({
                    "clusterName": cluster,
                    "principalArn": principal,
                    "associatedAccessPolicy": {
                        "policyArn": policy,
                        "accessScope": scope,
                        "associatedAt": now(),
                        "modifiedAt": now(),
                    },
                }))
            }
            ("ListAssociatedAccessPolicies", [principal, "access-policies"]) => {
                let e = c.entries.get(*principal).ok_or_else(entry_missing)?;
                let policies: Vec<Json> = e
                    .policies
                    .iter()
                    .map(|(arn, scope)| {
                        json!({"policyArn": arn, "accessScope": scope, "associatedAt": e.created_at, "modifiedAt": e.created_at})
                    })
                    .collect();
                Ok(json!({
                    "clusterName": cluster,
                    "principalArn": principal,
                    "associatedAccessPolicies": policies,
                    "nextToken": null,
                }))
            }
            ("DisassociateAccessPolicy", [principal, "access-policies", policy]) => {
                let e = c.entries.get_mut(*principal).ok_or_else(entry_missing)?;
                e.policies.remove(*policy);
                Ok(json!({}))
            }
            _ => Err(refusal(
                400,
                "InvalidRequestException",
                format!("{op} is not served by the qhub emulator"),
            )),
        }
    }

    /// Records what a successful EKS request did to access (a cluster created or deleted, a
    /// node group's role) and answers the cluster's `accessConfig` in DescribeCluster.
    pub fn after(&mut self, op: &str, path: &str, request: &[u8], doc: &mut Json) {
        let segs = segments(path);
        let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
        let body: Json = serde_json::from_slice(request).unwrap_or(Json::Null);
        match (op, segs.as_slice()) {
            ("CreateCluster", _) => {
                let Some(name) = body["name"].as_str() else {
                    return;
                };
                let access = &body["accessConfig"];
                let mut c = ClusterAccess {
                    mode: access["authenticationMode"]
                        .as_str()
                        .unwrap_or(CONFIG_MAP)
                        .to_string(),
                    bootstrap: access["bootstrapClusterCreatorAdminPermissions"]
                        .as_bool()
                        .unwrap_or(true),
                    creator: self.creators.remove(name),
                    ..ClusterAccess::default()
                };
                if has_api(&c.mode) {
                    c.make_own_entries();
                }
                if doc["cluster"].is_object() {
                    doc["cluster"]["accessConfig"] = json!({
                        "authenticationMode": c.mode,
                        "bootstrapClusterCreatorAdminPermissions": c.bootstrap,
                    });
                }
                self.clusters.insert(name.to_string(), c);
            }
            ("DescribeCluster", ["clusters", name]) => {
                if let Some(c) = self.clusters.get(*name)
                    && doc["cluster"].is_object()
                {
                    doc["cluster"]["accessConfig"] = json!({
                        "authenticationMode": c.mode,
                        "bootstrapClusterCreatorAdminPermissions": c.bootstrap,
                    });
                }
            }
            ("DeleteCluster", ["clusters", name]) => {
                self.clusters.remove(*name);
            }
            ("CreateNodegroup", ["clusters", cluster, ..]) => {
                let (Some(c), Some(role)) =
                    (self.clusters.get_mut(*cluster), body["nodeRole"].as_str())
                else {
                    return;
                };
                if !c.node_roles.iter().any(|r| r == role) {
                    c.node_roles.push(role.to_string());
                }
                if has_api(&c.mode) {
                    c.add(role, "EC2_LINUX", BTreeMap::new());
                }
            }
            _ => {}
        }
    }
}

fn operation_is_ours(op: &str) -> bool {
    matches!(
        op,
        "CreateAccessEntry"
            | "ListAccessEntries"
            | "DescribeAccessEntry"
            | "UpdateAccessEntry"
            | "DeleteAccessEntry"
            | "AssociateAccessPolicy"
            | "ListAssociatedAccessPolicies"
            | "DisassociateAccessPolicy"
    )
}

/// The access key id of a SigV4 `Authorization` header (`Credential=AKID/…`).
pub fn access_key_of_header(authorization: &str) -> Option<String> {
    let scope = authorization.split("Credential=").nth(1)?;
    scope.split('/').next().map(str::to_string)
}

/// The access key id and the cluster an EKS token (`k8s-aws-v1.` + base64url of a presigned
/// STS URL) was signed with, from the URL's `X-Amz-Credential`.
pub fn access_key_of_token(token: &str) -> Option<String> {
    use base64::Engine as _;
    let b64 = token.strip_prefix("k8s-aws-v1.")?;
    let url = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(b64)
        .ok()?;
    let url = String::from_utf8(url).ok()?;
    let query = url.split_once('?')?.1;
    let credential = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("X-Amz-Credential="))?;
    percent_decode(credential)
        .split('/')
        .next()
        .map(str::to_string)
}

/// Asks moto at `upstream` who access key `access_key` is (STS GetCallerIdentity, as EKS's
/// authenticator asks STS for a token's identity): the caller's ARN.
pub async fn caller_arn(upstream: SocketAddr, access_key: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let body = "Action=GetCallerIdentity&Version=2011-06-15";
    let request = format!(
        "POST / HTTP/1.1\r\nHost: {upstream}\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Authorization: AWS4-HMAC-SHA256 Credential={access_key}/20260101/us-west-2/sts/aws4_request, SignedHeaders=host, Signature=0\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut s = tokio::net::TcpStream::connect(upstream).await.ok()?;
    s.write_all(request.as_bytes()).await.ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).await.ok()?;
    let start = out.find("<Arn>")? + "<Arn>".len();
    let end = out[start..].find("</Arn>")? + start;
    Some(out[start..end].to_string())
}

/// For a CreateCluster request: the cluster's name and who creates it (asked of moto at
/// `upstream` by the request's access key), so that its bootstrap entry names them.
pub async fn creator(
    upstream: SocketAddr,
    authorization: Option<&str>,
    body: &[u8],
) -> Option<(String, String)> {
    let name = serde_json::from_slice::<Json>(body).ok()?["name"]
        .as_str()?
        .to_string();
    let key = access_key_of_header(authorization?)?;
    Some((name, caller_arn(upstream, &key).await?))
}

/// An authenticator for the in-memory Kubernetes API standing for EKS cluster `cluster`'s
/// API server: it takes the identity of each EKS token from STS (moto at `upstream`) and lets
/// in what the proxy's access state allows ([`EksAccess::allows`]).
pub fn authenticator(
    proxy: std::sync::Arc<crate::fault_proxy::FaultProxy>,
    upstream: SocketAddr,
    cluster: &str,
) -> qhub_sandbox::kube_api::Authenticator {
    let cluster = cluster.to_string();
    std::sync::Arc::new(move |token: Option<String>| {
        let proxy = proxy.clone();
        let cluster = cluster.clone();
        Box::pin(async move {
            let token = token.ok_or("no bearer token")?;
            let key = access_key_of_token(&token).ok_or("not an EKS token")?;
            let caller = caller_arn(upstream, &key)
                .await
                .ok_or("STS did not answer for the token")?;
            if proxy.rules().access.allows(&cluster, &caller) {
                Ok(())
            } else {
                Err(format!("{caller} has no access entry on {cluster}"))
            }
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn created(mode: Option<&str>) -> EksAccess {
        let mut a = EksAccess::default();
        a.creating("x-dev", "arn:aws:iam::123456789012:user/creator");
        let body = match mode {
            Some(m) => format!(
                r#"{{"name":"x-dev","accessConfig":{{"authenticationMode":"{m}","bootstrapClusterCreatorAdminPermissions":true}}}}"#
            ),
            None => r#"{"name":"x-dev"}"#.to_string(),
        };
        a.after(
            "CreateCluster",
            "/clusters",
            body.as_bytes(),
            &mut Json::Null,
        );
        a.after(
            "CreateNodegroup",
            "/clusters/x-dev/node-groups",
            br#"{"nodegroupName":"g","nodeRole":"arn:aws:iam::123456789012:role/x-dev-node"}"#,
            &mut Json::Null,
        );
        a
    }

    const ENTRIES: &str = "/clusters/x-dev/access-entries";

    #[test]
    fn a_config_map_cluster_refuses_access_entries_until_it_moves() {
        let mut a = created(None);
        let r = a
            .serve("ListAccessEntries", ENTRIES, b"")
            .unwrap()
            .unwrap_err();
        assert_eq!(r.code, "InvalidRequestException");
        assert!(a.allows("x-dev", "arn:aws:iam::123456789012:user/creator"));
        // Straight to API is refused; to API_AND_CONFIG_MAP it goes, one way.
        let to = |m: &str| format!(r#"{{"accessConfig":{{"authenticationMode":"{m}"}}}}"#);
        let update = "/clusters/x-dev/update-config";
        let r = a.serve("UpdateClusterConfig", update, to("API").as_bytes());
        assert_eq!(
            r.unwrap().unwrap_err().message,
            "Unsupported authentication mode update from CONFIG_MAP to API"
        );
        assert!(
            a.serve(
                "UpdateClusterConfig",
                update,
                to("API_AND_CONFIG_MAP").as_bytes()
            )
            .unwrap()
            .is_ok()
        );
        assert!(
            a.serve("UpdateClusterConfig", update, to("CONFIG_MAP").as_bytes())
                .unwrap()
                .is_err()
        );
        // The creator and the node role got their entries.
        let listed = a.serve("ListAccessEntries", ENTRIES, b"").unwrap().unwrap();
        assert_eq!(listed["accessEntries"].as_array().unwrap().len(), 2);
        assert!(a.allows("x-dev", "arn:aws:iam::123456789012:user/creator"));
    }

    #[test]
    fn entries_are_created_once_associated_and_let_their_principal_in() {
        let mut a = created(Some("API_AND_CONFIG_MAP"));
        let role = "arn:aws:iam::123456789012:role/teams/ci";
        let session = "arn:aws:sts::123456789012:assumed-role/ci/gha";
        assert!(!a.allows("x-dev", session));
        let create = format!(r#"{{"principalArn":"{role}","clientRequestToken":"t1"}}"#);
        assert!(
            a.serve("CreateAccessEntry", ENTRIES, create.as_bytes())
                .unwrap()
                .is_ok()
        );
        // The same token again is the same create; another is a duplicate.
        assert!(
            a.serve("CreateAccessEntry", ENTRIES, create.as_bytes())
                .unwrap()
                .is_ok()
        );
        let dup = a
            .serve(
                "CreateAccessEntry",
                ENTRIES,
                format!(r#"{{"principalArn":"{role}"}}"#).as_bytes(),
            )
            .unwrap()
            .unwrap_err();
        assert_eq!((dup.status, dup.code), (409, "ResourceInUseException"));
        // A session is no principal.
        let bad = a
            .serve(
                "CreateAccessEntry",
                ENTRIES,
                format!(r#"{{"principalArn":"{session}"}}"#).as_bytes(),
            )
            .unwrap()
            .unwrap_err();
        assert_eq!(bad.code, "InvalidParameterException");
        // The assumed role gets in through its role's entry, path or not.
        assert!(a.allows("x-dev", session));
        let escaped = "arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Fteams%2Fci";
        let policies = format!("{ENTRIES}/{escaped}/access-policies");
        let assoc = format!(
            r#"{{"policyArn":"{CLUSTER_ADMIN_POLICY}","accessScope":{{"type":"cluster"}}}}"#
        );
        assert!(
            a.serve("AssociateAccessPolicy", &policies, assoc.as_bytes())
                .unwrap()
                .is_ok()
        );
        let listed = a
            .serve("ListAssociatedAccessPolicies", &policies, b"")
            .unwrap()
            .unwrap();
        assert_eq!(
            listed["associatedAccessPolicies"][0]["policyArn"],
            CLUSTER_ADMIN_POLICY
        );
        // A node role's entry takes no policy.
        let node = "arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Fx-dev-node";
        let r = a
            .serve(
                "AssociateAccessPolicy",
                &format!("{ENTRIES}/{node}/access-policies"),
                assoc.as_bytes(),
            )
            .unwrap()
            .unwrap_err();
        assert!(r.message.contains("STANDARD"), "{r:?}");
        assert!(
            a.serve("DeleteAccessEntry", &format!("{ENTRIES}/{escaped}"), b"")
                .unwrap()
                .is_ok()
        );
        assert!(!a.allows("x-dev", session));
        let gone = a
            .serve("DescribeAccessEntry", &format!("{ENTRIES}/{escaped}"), b"")
            .unwrap()
            .unwrap_err();
        assert_eq!((gone.status, gone.code), (404, "ResourceNotFoundException"));
    }

    #[test]
    fn tokens_name_their_access_key() {
        use base64::Engine as _;
        let url = "https://sts.us-west-2.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIDCI%2F20231114%2Fus-west-2%2Fsts%2Faws4_request&X-Amz-Date=20231114T221320Z";
        let token = format!(
            "k8s-aws-v1.{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(url)
        );
        assert_eq!(access_key_of_token(&token).as_deref(), Some("AKIDCI"));
        assert_eq!(access_key_of_token("Bearer x"), None);
        assert_eq!(
            access_key_of_header(
                "AWS4-HMAC-SHA256 Credential=AKID1/20240101/us-west-2/eks/aws4_request, Signature=x"
            )
            .as_deref(),
            Some("AKID1")
        );
        assert_eq!(
            operation("GET", &["clusters", "x", "access-entries"]),
            Some("ListAccessEntries")
        );
    }
}
