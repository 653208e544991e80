//! The semantic pass: rules that span keys or need parsing beyond types.
//!
//! Every rule reads the (possibly partial) value the structural pass built, deserializing only
//! the part it needs, so a broken section never hides the findings of another: one run reports
//! everything. Each rule names the key, and says how to fix it where we can.

use std::collections::HashMap;

use serde::de::DeserializeOwned;
use serde_json::Value as Json;

use super::diagnostics::{Diagnostic, KeyPath, Report, Severity};
use super::profiles::{Access, Cpu, DaskWorkerProfile, JupyterLabProfile, Memory};
use super::provider::{NodeGroup, ProviderKind};
use super::{
    Certificate, CertificateKind, CondaEnvironment, ExternalContainerReg, Security, Spans, formats,
};
use super::{Extension, security::AuthenticationKind};
use crate::kubernetes::components::extensions;

/// Longest `project_name` QHub allows (cloud resource name limits).
pub const MAX_PROJECT_NAME: usize = 16;

/// The node groups the platform schedules onto.
pub const PLATFORM_GROUPS: [&str; 3] = ["general", "user", "worker"];

struct Ctx<'a> {
    raw: &'a Json,
    spans: &'a Spans,
    report: &'a mut Report,
}

impl Ctx<'_> {
    fn value(&self, path: &KeyPath) -> Option<&Json> {
        let mut v = self.raw;
        for seg in &path.0 {
            v = match seg {
                super::diagnostics::Segment::Key(k) => v.get(k)?,
                super::diagnostics::Segment::Index(i) => v.get(*i)?,
            };
        }
        Some(v)
    }

    fn typed<T: DeserializeOwned>(&self, path: &KeyPath) -> Option<T> {
        self.value(path).and_then(|v| T::deserialize(v).ok())
    }

    fn str(&self, path: &KeyPath) -> Option<&str> {
        self.value(path).and_then(Json::as_str)
    }

    fn push(&mut self, severity: Severity, path: KeyPath, message: String, hint: Option<String>) {
        let pos = super::position_of(self.spans, &path);
        self.report.diagnostics.push(Diagnostic {
            severity,
            path,
            line: pos.line,
            column: pos.column,
            message,
            hint,
        });
    }

    fn error(&mut self, path: KeyPath, message: impl Into<String>, hint: Option<String>) {
        self.push(Severity::Error, path, message.into(), hint);
    }

    fn warn(&mut self, path: KeyPath, message: impl Into<String>, hint: Option<String>) {
        self.push(Severity::Warning, path, message.into(), hint);
    }

    fn keys(&self, path: &KeyPath) -> Vec<String> {
        self.value(path)
            .and_then(Json::as_object)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    }
}

fn p(text: &str) -> KeyPath {
    KeyPath::parse(text)
}

/// Runs every semantic rule over the structural pass's value.
pub(crate) fn check(raw: &Json, spans: &Spans, report: &mut Report) {
    if !raw.is_object() {
        return;
    }
    let mut cx = Ctx { raw, spans, report };
    let provider: Option<ProviderKind> = cx.typed(&p("provider"));
    check_version(&mut cx);
    check_names(&mut cx, provider);
    if let Some(provider) = provider {
        check_provider(&mut cx, provider);
    }
    check_certificate(&mut cx);
    check_security(&mut cx);
    check_profiles(&mut cx);
    check_environments(&mut cx);
    check_conda_store(&mut cx);
    check_images_and_storage(&mut cx);
    check_extensions(&mut cx);
    check_ignored(&mut cx);
    check_secret_references(&mut cx, raw, &KeyPath::root());
}

/// `qhub_version`: the 0.4.x format is read; older files need `qhub upgrade`.
fn check_version(cx: &mut Ctx<'_>) {
    let upgrade = Some("run `qhub upgrade -c qhub-config.yaml` to migrate it".to_string());
    let Some(version) = cx.str(&p("qhub_version")).map(str::to_string) else {
        if cx.value(&p("qhub_version")).is_none() {
            cx.error(
                p("qhub_version"),
                "`qhub_version` is missing, so the file's format cannot be told (QHub 0.4 configs carry it)",
                upgrade,
            );
        }
        return;
    };
    let mut parts = version
        .trim_start_matches('v')
        .split(|c: char| !c.is_ascii_digit())
        .map(|s| s.parse::<u64>().ok());
    match (parts.next().flatten(), parts.next().flatten()) {
        (Some(0), Some(4)) => {}
        (Some(0), Some(minor)) if minor < 4 => cx.error(
            p("qhub_version"),
            format!("this file was written for QHub {version}; qhub-rs reads the QHub 0.4.x format"),
            upgrade,
        ),
        (Some(_), Some(_)) => cx.error(
            p("qhub_version"),
            format!(
                "this file was written for QHub/Nebari {version}, newer than the 0.4.x format qhub-rs reads"
            ),
            Some("use a QHub 0.4.x config (`qhub init` writes one)".into()),
        ),
        _ => cx.error(
            p("qhub_version"),
            format!("`{version}` is not a version number"),
            Some(format!("write `qhub_version: {}`", super::QHUB_VERSION)),
        ),
    }
}

fn check_names(cx: &mut Ctx<'_>, provider: Option<ProviderKind>) {
    if let Some(name) = cx.str(&p("project_name")).map(str::to_string) {
        if let Err(e) = formats::qhub_name(&name) {
            cx.error(p("project_name"), format!("project_name {e}"), None);
        }
        if name.chars().count() > MAX_PROJECT_NAME {
            cx.error(
                p("project_name"),
                format!(
                    "project_name `{name}` has {} characters; at most {MAX_PROJECT_NAME} are allowed (cloud resource names derive from it)",
                    name.chars().count()
                ),
                None,
            );
        }
        if provider == Some(ProviderKind::Aws) && name.to_ascii_lowercase().starts_with("aws") {
            cx.error(
                p("project_name"),
                format!("project_name `{name}` starts with `aws`, which AWS reserves for its own resource names"),
                Some("choose a name that does not start with `aws`".into()),
            );
        }
    }
    if let Some(ns) = cx.str(&p("namespace")).map(str::to_string) {
        // QHub's rule first (what QHub 0.4.5 rejected, we reject), then what the API server
        // and a shared cluster need.
        if let Err(e) = formats::qhub_name(&ns) {
            cx.error(p("namespace"), format!("namespace {e}"), None);
        } else if let Err(e) = formats::namespace_name(&ns) {
            let suggestion = formats::suggest_namespace(&ns);
            let hint = if suggestion != ns && formats::namespace_name(&suggestion).is_ok() {
                format!("write `namespace: {suggestion}`")
            } else {
                "choose a namespace of the platform's own, such as `namespace: dev`".to_string()
            };
            cx.error(p("namespace"), format!("namespace {e}"), Some(hint));
        }
    }
    if let Some(domain) = cx.str(&p("domain")).map(str::to_string)
        && let Err(e) = formats::dns_name(&domain)
    {
        cx.error(p("domain"), format!("domain is not a DNS name: {e}"), None);
    }
}

fn check_provider(cx: &mut Ctx<'_>, provider: ProviderKind) {
    if provider == ProviderKind::Azure {
        cx.error(
            p("provider"),
            "provider `azure` is not supported by qhub-rs",
            Some("use `aws`, `gcp`, `do`, or `existing` with a kubeconfig context for an AKS cluster you created".into()),
        );
        return;
    }
    let section = p(provider.section());
    if cx.value(&section).is_none() {
        cx.error(
            p("provider"),
            format!(
                "provider is `{provider}` but the config has no `{}` section",
                provider.section()
            ),
            Some(format!(
                "add a `{}` section (`qhub init {provider}` writes a complete one)",
                provider.section()
            )),
        );
    }
    for other in ProviderKind::ALL {
        let other_section = other.section();
        if other != provider
            && other_section != provider.section()
            && cx.value(&p(other_section)).is_some()
        {
            cx.warn(
                p(other_section),
                format!("`{other_section}` is ignored because provider is `{provider}`"),
                None,
            );
        }
    }
    if !provider.has_node_groups() {
        let selectors = section.key("node_selectors");
        if cx.value(&selectors).is_some() {
            for group in PLATFORM_GROUPS {
                if cx.value(&selectors.key(group)).is_none() {
                    cx.error(
                        selectors.key(group),
                        format!("node selector `{group}` is missing; the platform places its `{group}` workloads with it"),
                        Some("e.g. `{key: kubernetes.io/os, value: linux}` to use any node".into()),
                    );
                }
            }
        }
        return;
    }
    check_kubernetes_version(cx, provider, &section.key("kubernetes_version"));
    if provider == ProviderKind::Aws {
        check_cluster_admins(cx, &section);
    }
    if provider == ProviderKind::Gcp {
        check_gcp_network(cx, &section);
    }
    let groups_path = section.key("node_groups");
    if cx.value(&groups_path).is_none() {
        return;
    }
    let names = cx.keys(&groups_path);
    if !names.iter().any(|n| n == "general") {
        cx.error(
            groups_path.clone(),
            "there is no `general` node group; the platform's core services (hub, Keycloak, ingress) run on it",
            Some("add `general: {instance: ..., min_nodes: 1, max_nodes: 1}`".into()),
        );
    }
    for group in ["user", "worker"] {
        if !names.iter().any(|n| n == group) {
            cx.warn(
                groups_path.clone(),
                format!("there is no `{group}` node group; its workloads will run on `general`"),
                None,
            );
        }
    }
    for name in names {
        let path = groups_path.key(&name);
        if name.trim().is_empty() {
            cx.error(path.clone(), "a node group name is empty", None);
        } else if name.len() > 63
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            cx.error(
                path.clone(),
                format!("node group name `{name}` must be at most 63 letters, digits, `-`, `_` or `.` (it becomes a label value)"),
                None,
            );
        }
        let Some(group) = cx.typed::<NodeGroup>(&path) else {
            continue;
        };
        if group.instance.trim().is_empty() {
            cx.error(
                path.key("instance"),
                "instance is empty",
                Some(format!(
                    "name the {} instance type",
                    provider.display_name()
                )),
            );
        }
        if group.min_nodes > group.max_nodes {
            cx.error(
                path.key("min_nodes"),
                format!(
                    "min_nodes ({}) is greater than max_nodes ({})",
                    group.min_nodes, group.max_nodes
                ),
                Some("raise max_nodes or lower min_nodes".into()),
            );
        }
        if group.max_nodes == 0 {
            cx.warn(
                path.key("max_nodes"),
                "max_nodes is 0: this group can never run a node",
                None,
            );
        }
        if name == "general" && group.min_nodes == 0 {
            cx.warn(
                path.key("min_nodes"),
                "the general group may scale to zero, but the platform's core services always need a node there",
                Some("use min_nodes: 1".into()),
            );
        }
        if group.gpu && provider != ProviderKind::Aws && provider != ProviderKind::Sandbox {
            cx.warn(
                path.key("gpu"),
                format!(
                    "`gpu` is only used on AWS; on {} it is ignored",
                    provider.display_name()
                ),
                Some("on GCP use `guest_accelerators`".into()),
            );
        }
        if !group.guest_accelerators.is_empty() && provider != ProviderKind::Gcp {
            cx.warn(
                path.key("guest_accelerators"),
                "`guest_accelerators` is only used on GCP",
                None,
            );
        }
        for (i, acc) in group.guest_accelerators.iter().enumerate() {
            if acc.name.trim().is_empty() {
                cx.error(
                    path.key("guest_accelerators").index(i).key("name"),
                    "accelerator name is empty",
                    None,
                );
            }
        }
    }
}

/// `google_cloud_platform.network`/`subnetwork`: a Compute Engine resource name (RFC 1035: 1–63
/// lowercase letters, digits and `-`, starting with a letter, not ending with `-`; Compute
/// Engine "Naming resources"), or the resource path of a Shared VPC host project's network or
/// subnetwork.
fn check_gcp_network(cx: &mut Ctx<'_>, section: &KeyPath) {
    let name_ok = |n: &str| {
        let b = n.as_bytes();
        !b.is_empty()
            && b.len() <= 63
            && b[0].is_ascii_lowercase()
            && b.iter()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
            && !n.ends_with('-')
    };
    for (key, kind, path_form) in [
        ("network", "networks", "projects/HOST/global/networks/NAME"),
        (
            "subnetwork",
            "subnetworks",
            "projects/HOST/regions/REGION/subnetworks/NAME",
        ),
    ] {
        let path = section.key(key);
        let Some(value) = cx.str(&path).map(str::to_string) else {
            continue;
        };
        let parts: Vec<&str> = value.split('/').collect();
        let ok = match parts.as_slice() {
            [name] => name_ok(name),
            ["projects", project, "global", "networks", name] if kind == "networks" => {
                !project.is_empty() && name_ok(name)
            }
            ["projects", project, "regions", region, "subnetworks", name]
                if kind == "subnetworks" =>
            {
                !project.is_empty() && !region.is_empty() && name_ok(name)
            }
            _ => false,
        };
        if !ok {
            cx.error(
                path,
                format!("`{value}` is not a {key} name"),
                Some(format!(
                    "1-63 lowercase letters, digits and `-`, starting with a letter (e.g. `default`), or `{path_form}` for a Shared VPC"
                )),
            );
        }
    }
}

/// `amazon_web_services.cluster_admins[]`: each an IAM role or user ARN in the region's
/// partition, listed once. What EKS refuses in CreateAccessEntry is caught here, with the fix:
/// an STS session ARN ("You can't use the STS session principal type with access entries",
/// EKS API reference, CreateAccessEntry `principalArn`), a service-linked role (EKS user
/// guide, "Create access entries": access entries do not support them), and a principal in
/// two entries ("An IAM principal can't be included in more than one access entry").
fn check_cluster_admins(cx: &mut Ctx<'_>, section: &KeyPath) {
    let path = section.key("cluster_admins");
    let Some(list) = cx.value(&path).and_then(Json::as_array).cloned() else {
        return;
    };
    let region_partition = cx
        .str(&section.key("region"))
        .map(|r| crate::cloud::aws_partition::Partition::of(r).id);
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (i, value) in list.iter().enumerate() {
        let at = path.index(i);
        let Some(arn) = value.as_str() else {
            continue;
        };
        match formats::iam_principal_arn(arn) {
            Err(e) => {
                cx.error(at, e.message, e.hint);
                continue;
            }
            Ok(partition) => {
                if let Some(want) = region_partition.filter(|w| *w != partition) {
                    cx.error(
                        at,
                        format!(
                            "`{arn}` is in the AWS partition `{partition}`, but the cluster's region is in `{want}`"
                        ),
                        Some(format!("write the ARN as `arn:{want}:iam::…`")),
                    );
                    continue;
                }
            }
        }
        if let Some(first) = seen.insert(arn.to_string(), i) {
            cx.error(
                at,
                format!("`{arn}` is listed twice (also at index {first}); EKS gives a principal one access entry"),
                Some("remove one of them".into()),
            );
        }
    }
}

fn check_kubernetes_version(cx: &mut Ctx<'_>, provider: ProviderKind, path: &KeyPath) {
    let Some(version) = cx.str(path).map(str::to_string) else {
        return;
    };
    let family = match provider {
        ProviderKind::Do => Some("do"),
        ProviderKind::Gcp => Some("gke"),
        _ => None,
    };
    match formats::kubernetes_version(&version, family) {
        Err(e) => {
            let hint = (version == "PLACEHOLDER").then(|| {
                "run `qhub init` with `--kubernetes-version`, or write the version, e.g. `1.29`"
                    .to_string()
            });
            cx.error(path.clone(), e, hint);
        }
        Ok(v) if provider == ProviderKind::Aws && v.patch.is_some() => cx.error(
            path.clone(),
            format!("EKS takes a `MAJOR.MINOR` version, not `{version}`"),
            Some(format!("write `{}.{}`", v.major, v.minor)),
        ),
        Ok(_) => {}
    }
}

fn check_certificate(cx: &mut Ctx<'_>) {
    let path = p("certificate");
    let Some(cert) = cx.typed::<Certificate>(&path) else {
        return;
    };
    match cert.kind {
        CertificateKind::LetsEncrypt => match cert.acme_email.as_deref() {
            None | Some("") => cx.error(
                path.key("acme_email"),
                "certificate type `lets-encrypt` needs `acme_email` (Let's Encrypt requires a contact address)",
                Some("add `acme_email: you@example.com`".into()),
            ),
            Some(email) => {
                if let Err(e) = formats::email(email) {
                    cx.error(path.key("acme_email"), e, None);
                }
            }
        },
        CertificateKind::Existing => {
            if cert.secret_name.as_deref().is_none_or(|s| s.trim().is_empty()) {
                cx.error(
                    path.key("secret_name"),
                    "certificate type `existing` needs `secret_name`, the TLS secret in the platform's namespace",
                    None,
                );
            }
        }
        CertificateKind::SelfSigned | CertificateKind::Disabled => {}
    }
    if let Some(server) = &cert.acme_server
        && !server.starts_with("https://")
    {
        cx.error(
            path.key("acme_server"),
            format!("acme_server `{server}` must be an https:// URL"),
            None,
        );
    }
    let ignored = [
        (
            "acme_email",
            cert.acme_email.is_some() && cert.kind != CertificateKind::LetsEncrypt,
        ),
        (
            "acme_server",
            cert.acme_server.is_some() && cert.kind != CertificateKind::LetsEncrypt,
        ),
        (
            "secret_name",
            cert.secret_name.is_some() && cert.kind != CertificateKind::Existing,
        ),
    ];
    for (key, is_ignored) in ignored {
        if is_ignored {
            cx.warn(
                path.key(key),
                format!(
                    "`{key}` is ignored with certificate type `{}`",
                    serde_json::to_value(cert.kind)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default()
                ),
                None,
            );
        }
    }
}

fn check_security(cx: &mut Ctx<'_>) {
    let path = p("security");
    let Some(security) = cx.typed::<Security>(&path) else {
        return;
    };
    let auth = path.key("authentication");
    let kind = security.authentication.kind;
    match (&security.authentication.config, kind) {
        (Some(_), AuthenticationKind::Password) => cx.error(
            auth.key("config"),
            "password authentication takes no `config`",
            Some("remove `config`, or set `type: GitHub` or `type: Auth0`".into()),
        ),
        (None, AuthenticationKind::GitHub | AuthenticationKind::Auth0) => cx.error(
            auth.key("config"),
            format!("`{}` authentication needs `config` with `client_id` and `client_secret`", kind.as_str()),
            Some("create an OAuth app and add its credentials (use `QHUB_SECRET_NAME` to read the secret from the environment)".into()),
        ),
        (Some(config), _) => {
            for (key, value) in [("client_id", &config.client_id), ("client_secret", &config.client_secret)] {
                if value.trim().is_empty() {
                    cx.error(auth.key("config").key(key), format!("`{key}` is empty"), None);
                }
            }
            match (kind, config.auth0_subdomain.as_deref()) {
                (AuthenticationKind::Auth0, None | Some("")) => cx.error(
                    auth.key("config").key("auth0_subdomain"),
                    "Auth0 authentication needs `auth0_subdomain` (your tenant, e.g. `myorg.auth0.com`)",
                    None,
                ),
                (AuthenticationKind::GitHub, Some(_)) => cx.error(
                    auth.key("config").key("auth0_subdomain"),
                    "`auth0_subdomain` belongs to Auth0 authentication, not GitHub",
                    None,
                ),
                _ => {}
            }
        }
        (None, AuthenticationKind::Password) => {}
    }
    // Unset is the recommended way: a deploy generates the admin password once into the
    // Secret `keycloak-admin`. A password written into the config itself still works (QHub
    // 0.4's `qhub init` wrote one), but the config is kept in version control; a
    // `QHUB_SECRET_` reference keeps the value out of the file.
    if security
        .keycloak
        .as_ref()
        .and_then(|k| k.initial_root_password.as_deref())
        .is_some_and(|p| !p.trim().is_empty() && !p.contains(super::secrets::PREFIX))
    {
        cx.warn(
            path.key("keycloak").key("initial_root_password"),
            "Keycloak's root password is written in plain text in the config, which is kept in version control",
            Some(
                "remove the key (a deploy then generates the password into the Secret `keycloak-admin`; `qhub secrets show keycloak-admin` prints it), or write `QHUB_SECRET_NAME` and export NAME".into(),
            ),
        );
    }
}

fn check_cpu_pair(cx: &mut Ctx<'_>, path: &KeyPath, request: (&str, &Cpu), limit: (&str, &Cpu)) {
    let parse = |cx: &mut Ctx<'_>, key: &str, cpu: &Cpu| -> Option<f64> {
        let result = match cpu {
            Cpu::Cores(c) if *c < 0.0 => Err(format!("{c} is negative")),
            Cpu::Cores(c) => Ok(*c),
            Cpu::Quantity(q) => formats::quantity(q),
        };
        result
            .map_err(|e| {
                cx.error(
                    path.key(key),
                    format!("{key}: {e}"),
                    Some("give cores as a number (`1.5`) or millicores (`1500m`)".into()),
                )
            })
            .ok()
    };
    let r = parse(cx, request.0, request.1);
    let l = parse(cx, limit.0, limit.1);
    if let (Some(r), Some(l)) = (r, l)
        && r > l
    {
        cx.error(
            path.key(request.0),
            format!(
                "{} ({r}) is greater than {} ({l}); Kubernetes rejects a request above its limit",
                request.0, limit.0
            ),
            None,
        );
    }
}

fn show_memory(m: &Memory) -> String {
    match m {
        Memory::Bytes(b) => b.to_string(),
        Memory::Quantity(q) => q.clone(),
    }
}

fn check_memory_pair(
    cx: &mut Ctx<'_>,
    path: &KeyPath,
    request: (&str, &Memory),
    limit: (&str, &Memory),
) {
    let parse = |cx: &mut Ctx<'_>, key: &str, mem: &Memory| -> Option<f64> {
        let result = match mem {
            Memory::Bytes(b) => Ok(*b as f64),
            Memory::Quantity(q) => formats::quantity(q),
        };
        result
            .map_err(|e| {
                cx.error(
                    path.key(key),
                    format!("{key}: {e}"),
                    Some("write a size such as `8G` or `512Mi`".into()),
                )
            })
            .ok()
    };
    let r = parse(cx, request.0, request.1);
    let l = parse(cx, limit.0, limit.1);
    if let (Some(r), Some(l)) = (r, l)
        && r > l
    {
        cx.error(
            path.key(request.0),
            format!(
                "{} ({}) is greater than {} ({}); Kubernetes rejects a request above its limit",
                request.0,
                show_memory(request.1),
                limit.0,
                show_memory(limit.1)
            ),
            None,
        );
    }
}

fn check_image(cx: &mut Ctx<'_>, path: KeyPath, image: &str) {
    if let Err(e) = formats::image_reference(image) {
        cx.error(path, format!("not an image reference: {e}"), Some("write `[registry[:port]/]repository[:tag][@digest]`, e.g. `quansight/qhub-jupyterlab:v0.4.5`".into()));
    }
}

fn check_profiles(cx: &mut Ctx<'_>) {
    let lab = p("profiles.jupyterlab");
    let count = cx.value(&lab).and_then(Json::as_array).map_or(0, Vec::len);
    let mut first_default: Option<usize> = None;
    let mut names: HashMap<String, usize> = HashMap::new();
    for i in 0..count {
        let path = lab.index(i);
        let Some(profile) = cx.typed::<JupyterLabProfile>(&path) else {
            continue;
        };
        if profile.display_name.trim().is_empty() {
            cx.error(path.key("display_name"), "display_name is empty", None);
        } else if let Some(prev) = names.insert(profile.display_name.clone(), i) {
            cx.error(
                path.key("display_name"),
                format!("display_name `{}` is also used by profiles.jupyterlab[{prev}]; users could not tell them apart", profile.display_name),
                None,
            );
        }
        if profile.default {
            match first_default {
                Some(prev) => cx.error(
                    path.key("default"),
                    format!("a second default profile (profiles.jupyterlab[{prev}] is already the default)"),
                    Some("keep `default: true` on one profile only".into()),
                ),
                None => first_default = Some(i),
            }
        }
        if profile.access != Access::Yaml {
            for key in ["users", "groups"] {
                let present = if key == "users" {
                    profile.users.is_some()
                } else {
                    profile.groups.is_some()
                };
                if present {
                    cx.error(
                        path.key(key),
                        format!("`{key}` is only used with `access: yaml`"),
                        Some("set `access: yaml`, or remove the list".into()),
                    );
                }
            }
        }
        if let Some(o) = &profile.kubespawner_override {
            let kp = path.key("kubespawner_override");
            check_cpu_pair(
                cx,
                &kp,
                ("cpu_guarantee", &o.cpu_guarantee),
                ("cpu_limit", &o.cpu_limit),
            );
            check_memory_pair(
                cx,
                &kp,
                ("mem_guarantee", &o.mem_guarantee),
                ("mem_limit", &o.mem_limit),
            );
            if let Some(image) = &o.image {
                check_image(cx, kp.key("image"), image);
            }
        }
    }
    let dask = p("profiles.dask_worker");
    for name in cx.keys(&dask) {
        let path = dask.key(&name);
        if name.trim().is_empty() {
            cx.error(path.clone(), "a Dask worker profile name is empty", None);
        }
        let Some(w) = cx.typed::<DaskWorkerProfile>(&path) else {
            continue;
        };
        check_cpu_pair(
            cx,
            &path,
            ("worker_cores", &w.worker_cores),
            ("worker_cores_limit", &w.worker_cores_limit),
        );
        check_memory_pair(
            cx,
            &path,
            ("worker_memory", &w.worker_memory),
            ("worker_memory_limit", &w.worker_memory_limit),
        );
        if w.worker_threads == Some(0) {
            cx.error(
                path.key("worker_threads"),
                "worker_threads must be at least 1",
                None,
            );
        }
        if let Some(image) = &w.image {
            check_image(cx, path.key("image"), image);
        }
    }
}

fn check_environments(cx: &mut Ctx<'_>) {
    let envs = p("environments");
    let mut names: HashMap<String, String> = HashMap::new();
    for file in cx.keys(&envs) {
        let path = envs.key(&file);
        if !(file.ends_with(".yaml") || file.ends_with(".yml")) || file.contains('/') {
            cx.error(
                path.clone(),
                format!("environment key `{file}` must be a file name ending in `.yaml` or `.yml`"),
                Some(format!(
                    "e.g. `environment-{}.yaml`",
                    file.trim_end_matches(".yml")
                )),
            );
        }
        let Some(env) = cx.typed::<CondaEnvironment>(&path) else {
            continue;
        };
        if env.name.trim().is_empty() {
            cx.error(path.key("name"), "environment name is empty", None);
        } else if let Some(prev) = names.insert(env.name.clone(), file.clone()) {
            cx.error(path.key("name"), format!("environment name `{}` is also used by `{prev}`; conda-store would build one over the other", env.name), None);
        }
        if !env.name.trim().is_empty() && !conda_store_name_ok(&env.name) {
            cx.error(
                path.key("name"),
                format!("conda-store refuses the environment name `{}`", env.name),
                Some(format!(
                    "use only letters, digits and {CONDA_STORE_NAME_PUNCTUATION}"
                )),
            );
        }
        if env.dependencies.is_empty() {
            cx.error(
                path.key("dependencies"),
                "an environment needs at least one dependency",
                None,
            );
        }
        for (i, dep) in env.dependencies.iter().enumerate() {
            match dep {
                super::Dependency::Package(spec) if spec.trim().is_empty() => {
                    cx.error(
                        path.key("dependencies").index(i),
                        "empty package spec",
                        None,
                    );
                }
                super::Dependency::Installer(map) => {
                    for key in map.keys().filter(|k| k.as_str() != "pip") {
                        cx.warn(
                            path.key("dependencies").index(i).key(key),
                            format!("`{key}:` is not an installer conda knows (only `pip:` is)"),
                            None,
                        );
                    }
                }
                _ => {}
            }
        }
    }
}

/// Punctuation conda-store allows in environment and namespace names, beside ASCII letters and
/// digits (conda_store_server 2025.2.2 `_internal/schema.py`, `ALLOWED_CHARACTERS`).
const CONDA_STORE_NAME_PUNCTUATION: &str = "-+_@$&?^~.=";

fn conda_store_name_ok(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || CONDA_STORE_NAME_PUNCTUATION.contains(c))
}

/// The default `storage.conda_store` (QHub's): a config that carries it unchanged is not told
/// it has no effect.
const DEFAULT_CONDA_STORE_SIZE: &str = "200Gi";

fn check_conda_store(cx: &mut Ctx<'_>) {
    let path = p("conda_store").key("default_namespace");
    if let Some(ns) = cx.str(&path).map(str::to_string)
        && !conda_store_name_ok(&ns)
    {
        cx.error(
            path,
            format!("conda-store refuses the namespace name `{ns}`"),
            Some(format!(
                "use only letters, digits and {CONDA_STORE_NAME_PUNCTUATION}"
            )),
        );
    }
    let path = p("conda_store").key("image_tag");
    if let Some(tag) = cx.str(&path).map(str::to_string) {
        // The grammar of a tag (distribution/reference `reference.go`, `tag`).
        let valid = !tag.is_empty()
            && tag.len() <= 128
            && !tag.starts_with(['.', '-'])
            && tag
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if !valid {
            cx.error(
                path,
                format!("`{tag}` is not an image tag"),
                Some("e.g. `2025.2.2`".into()),
            );
        } else if tag == "latest" {
            cx.warn(
                path,
                "`latest` is not pinned: each node may run another conda-store release",
                Some("name a release, e.g. `2025.2.2`".into()),
            );
        }
    }
    let path = p("storage").key("conda_store");
    if let Some(size) = cx.str(&path).map(str::to_string)
        && size != DEFAULT_CONDA_STORE_SIZE
    {
        cx.warn(
            path,
            format!(
                "`{size}` has no effect: conda-store keeps its environments on the shared filesystem (directory `conda-store`), sized by `storage.shared_filesystem`"
            ),
            Some("size `storage.shared_filesystem` for the environments too, and delete this key".into()),
        );
    }
}

fn check_images_and_storage(cx: &mut Ctx<'_>) {
    for key in ["jupyterhub", "jupyterlab", "dask_worker"] {
        let path = p("default_images").key(key);
        if let Some(image) = cx.str(&path).map(str::to_string) {
            check_image(cx, path, &image);
        }
    }
    for key in ["conda_store", "shared_filesystem"] {
        let path = p("storage").key(key);
        if let Some(size) = cx.str(&path).map(str::to_string) {
            match formats::quantity(&size) {
                Err(e) => cx.error(path, e, Some("write a size such as `200Gi`".into())),
                Ok(v) if v < 1.0 => {
                    cx.error(path, format!("`{size}` is too small for a volume"), None)
                }
                Ok(_) => {}
            }
        }
    }
    let path = p("external_container_reg");
    if let Some(reg) = cx.typed::<ExternalContainerReg>(&path)
        && reg.enabled
    {
        let fields = [
            ("access_key_id", &reg.access_key_id),
            ("secret_access_key", &reg.secret_access_key),
            ("extcr_account", &reg.extcr_account),
            ("extcr_region", &reg.extcr_region),
        ];
        for (key, value) in fields {
            if value.as_deref().is_none_or(|v| v.trim().is_empty()) {
                cx.error(
                    path.key(key),
                    format!("`{key}` is required when external_container_reg is enabled"),
                    None,
                );
            }
        }
    }
}

fn check_extensions(cx: &mut Ctx<'_>) {
    let list = p("tf_extensions");
    let count = cx.value(&list).and_then(Json::as_array).map_or(0, Vec::len);
    let mut names: HashMap<String, usize> = HashMap::new();
    let mut slugs: HashMap<String, usize> = HashMap::new();
    // The platform's own paths, computed from the components' routes once, when needed.
    let mut platform: Option<Vec<(String, String)>> = None;
    for i in 0..count {
        let path = list.index(i);
        let Some(ext) = cx.typed::<Extension>(&path) else {
            continue;
        };
        check_image(cx, path.key("image"), &ext.image);
        // A Service name is an RFC 1035 label: no dots, lowercase, starting with a letter
        // (https://kubernetes.io/docs/concepts/overview/working-with-objects/names/#rfc-1035-label-names).
        let label = formats::dns_name(&ext.name).and_then(|()| {
            let ok = ext.name.starts_with(|c: char| c.is_ascii_lowercase())
                && ext
                    .name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
            if ok {
                Ok(())
            } else {
                Err(format!(
                    "`{}` must be lowercase letters, digits and `-`, starting with a letter",
                    ext.name
                ))
            }
        });
        if let Err(e) = label {
            cx.error(
                path.key("name"),
                format!("extension name must be a DNS label (it names a Kubernetes Service): {e}"),
                None,
            );
        } else if let Some(prev) = names.insert(ext.name.clone(), i) {
            cx.error(
                path.key("name"),
                format!("name `{}` is also used by tf_extensions[{prev}]", ext.name),
                None,
            );
        } else if ext.name.len() > MAX_EXTENSION_NAME {
            cx.error(
                path.key("name"),
                format!(
                    "extension name `{}` is longer than {MAX_EXTENSION_NAME} characters: its objects are named `qhub-ext-<name>`, at most 63",
                    ext.name
                ),
                None,
            );
        }
        let slug = ext.urlslug.trim_matches('/');
        if slug.is_empty() {
            cx.error(
                path.key("urlslug"),
                "urlslug is empty; the extension would take over the whole site",
                None,
            );
        } else if let Some(prev) = slugs.insert(slug.to_string(), i) {
            cx.error(
                path.key("urlslug"),
                format!("urlslug `{slug}` is also used by tf_extensions[{prev}]"),
                None,
            );
        } else {
            let platform = platform.get_or_insert_with(|| {
                cx.typed::<super::Config>(&KeyPath::root())
                    .map(|c| extensions::platform_paths(&c))
                    .unwrap_or_default()
            });
            if let Some((component, taken)) = extensions::clash(&format!("/{slug}"), platform) {
                cx.error(
                    path.key("urlslug"),
                    format!(
                        "extension `{}` at `/{slug}` clashes with the platform route `{taken}` ({component})",
                        ext.name
                    ),
                    Some("choose another urlslug".into()),
                );
            }
        }
    }
}

/// Longest extension `name`: its objects are `qhub-ext-<name>`, a label of at most 63
/// characters.
pub const MAX_EXTENSION_NAME: usize = 63 - "qhub-ext-".len();

/// Keys QHub had that qhub-rs accepts but does not act on: say so rather than ignore silently.
fn check_ignored(cx: &mut Ctx<'_>) {
    if cx
        .value(&p("helm_extensions"))
        .and_then(Json::as_array)
        .is_some_and(|a| !a.is_empty())
    {
        cx.warn(p("helm_extensions"), "helm_extensions are not supported yet (qhub-rs deploys without Helm); they will not be installed", None);
    }
    // An integration qhub-rs does not deploy stops validate, plan and deploy: it must never
    // pass silently (issue 22).
    for n in super::not_built::NOT_BUILT {
        if cx.value(&p(n.key).key("enabled")) == Some(&Json::Bool(true)) {
            cx.error(
                p(n.key).key("enabled"),
                format!(
                    "`{}` is enabled, but qhub-rs does not deploy {}: {}",
                    n.key, n.what, n.why
                ),
                Some(n.fix()),
            );
        }
    }
    if cx.value(&p("terraform_state")).is_some() {
        cx.warn(
            p("terraform_state"),
            "ignored: qhub-rs keeps no Terraform state (it observes what exists by ownership tags)",
            Some("you may delete this section".into()),
        );
    }
    for section in [
        "amazon_web_services",
        "google_cloud_platform",
        "digital_ocean",
        "ingress",
    ] {
        let path = p(section).key("terraform_overrides");
        if cx.value(&path).is_some() {
            cx.warn(path, "ignored: qhub-rs does not use Terraform", None);
        }
    }
    if cx.value(&p("prevent_deploy")) == Some(&Json::Bool(true)) {
        cx.warn(
            p("prevent_deploy"),
            "prevent_deploy is set: `qhub deploy` will refuse to run",
            None,
        );
    }
    if let Some(ci) = cx.str(&p("ci_cd.branch")).map(str::to_string)
        && ci.trim().is_empty()
    {
        cx.error(
            p("ci_cd.branch"),
            "branch is empty",
            Some("e.g. `main`".into()),
        );
    }
}

/// `QHUB_SECRET_X` values whose variable is not set now: deploys would fail, so say it early.
fn check_secret_references(cx: &mut Ctx<'_>, value: &Json, path: &KeyPath) {
    match value {
        Json::String(s) => {
            for var in super::secrets::references(s) {
                if std::env::var_os(var).is_none() {
                    cx.warn(
                        path.clone(),
                        format!("environment variable `{var}` (named by `QHUB_SECRET_{var}`) is not set here; deploy and plan need it"),
                        None,
                    );
                }
            }
        }
        Json::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                check_secret_references(cx, item, &path.index(i));
            }
        }
        Json::Object(map) => {
            for (k, v) in map {
                check_secret_references(cx, v, &path.key(k));
            }
        }
        _ => {}
    }
}
