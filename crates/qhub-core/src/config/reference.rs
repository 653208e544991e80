//! The configuration reference (`docs/configuration.md`), rendered from the JSON Schema so that
//! it cannot drift from the model.
//!
//! Every key comes from [`schema::json_schema`]: its path, type, whether it is required, its
//! default, its allowed values and its description (the rustdoc of the field, which schemars puts
//! in `description`). The rules of [`validate`](super::validate) and the differences from QHub
//! 0.4.5 are written by hand below; the example is what `qhub init aws` writes.
//! `qhub schema --format markdown` prints [`markdown`], and a test keeps the committed file equal
//! to it.

use std::fmt::Write as _;

use serde_json::{Map, Value as Json};

use super::init::{self, InitOptions};
use super::provider::ProviderKind;
use super::schema;

/// The Keycloak root password written into the example: a placeholder, so the page is the same on
/// every run (`qhub init` generates a random one).
pub const EXAMPLE_PASSWORD: &str = "CHANGE-ME-0123456";

/// The project name of the example.
const EXAMPLE_PROJECT: &str = "myproject";

/// The domain of the example.
const EXAMPLE_DOMAIN: &str = "qhub.example.com";

const INTRO: &str = "\
<!-- Generated from the config model by `qhub schema --format markdown`; do not edit by hand.
     After changing the model, run scripts/gen-docs. -->

# qhub-config.yaml reference

qhub-rs reads the QHub 0.4.x `qhub-config.yaml` format, so a QHub 0.4.5 config loads unchanged
(see [Differences from QHub 0.4.5](#differences-from-qhub-045)). This page is generated from the
config model — the same JSON Schema that `qhub schema` prints — so it lists exactly the keys
`qhub validate` accepts.

How to read the tables:

- **Key** is the key's path. `a.b` is key `b` inside `a`; `a[]` is an item of the list `a`;
  `a.<name>` is an entry of a map whose keys you choose (`<file>` for environment files);
  `a.*` stands for any other key, which is accepted and passed on as written.
- **Required**: `yes` means the key must be written whenever its parent is; `—` marks list
  items and map entries.
- **Default** is the value used when the key is left out; `—` means there is none (the setting
  is then unset, or off for a switch).
- **Allowed values** lists the values of a key that takes a closed set (case-sensitive).
- Any string value may contain `QHUB_SECRET_X`: it is replaced by the value of environment
  variable `X` at deploy time, in memory only (the file never holds the secret).
- Unknown keys are errors (with a \"did you mean\"), except where a table shows `*`.
";

const RULES: &str = "\
## Rules

Beyond the keys and types above, `qhub validate` checks these rules. Each finding names the key
and its `line:column`; errors make the config invalid, warnings do not. Every rule runs on every
validation, so one run reports every problem.

Errors:

- `qhub_version`: must be written, and be a 0.4.x version; an older one asks for `qhub upgrade`,
  a newer one (such as Nebari's) is refused.
- `project_name`: letters, `-` and `_`, starting and ending with a letter; at most 16 characters;
  with `provider: aws` it must not start with `aws`.
- `namespace`: letters, `-` and `_`, starting and ending with a letter (QHub's rule), and a
  Kubernetes namespace name: lowercase, no `_`, at most 52 characters (qhub also makes
  `<namespace>-privileged`); not `default`, `kube-system`, `kube-public`, `kube-node-lease` or
  any other `kube-` name.
- `domain`: must be a DNS name (RFC 1123 labels, at most 253 characters).
- `provider`: `azure` is not supported; the section of the chosen provider
  (`amazon_web_services`, `google_cloud_platform`, `digital_ocean`, `existing`, `local`,
  `sandbox`) must be present.
- `existing.node_selectors` / `local.node_selectors` (of the chosen provider): must have
  `general`, `user` and `worker`.
- `<provider>.kubernetes_version`: `MAJOR.MINOR[.PATCH]` (an optional leading `v`) with major
  version 1; DigitalOcean also takes slugs such as `1.33.1-do.0` and GCP `1.33.1-gke.N`; AWS
  takes only `MAJOR.MINOR`.
- `amazon_web_services.support_type`: `standard` (the default) or `extended`, the EKS
  cluster's upgrade policy at the end of standard support.
- `amazon_web_services.cluster_admins[]`: each an IAM role or user ARN
  (`arn:aws:iam::ACCOUNT:role/[PATH/]NAME`, `…:user/NAME`) in the region's partition, listed
  once; an STS session ARN (`…:sts::…:assumed-role/…`) is refused with the role ARN to write,
  and so is a service-linked role.
- `<provider>.node_groups`: must have a `general` group.
- `<provider>.node_groups.<name>`: the name is at most 63 letters, digits, `-`, `_` or `.`.
- `<provider>.node_groups.<name>.instance`: must not be empty.
- `<provider>.node_groups.<name>.min_nodes`: must not be greater than `max_nodes`.
- `<provider>.node_groups.<name>.guest_accelerators[].name`: must not be empty.
- `certificate.acme_email`: required with `type: lets-encrypt`, and must be an e-mail address.
- `certificate.secret_name`: required with `type: existing`.
- `certificate.acme_server`: must be an `https://` URL.
- `security.authentication.config`: not allowed with `type: password`; required with `GitHub`
  and `Auth0`, with non-empty `client_id` and `client_secret`.
- `security.authentication.config.auth0_subdomain`: required with `Auth0`, not allowed with
  `GitHub`.
- `profiles.jupyterlab[].display_name`: must not be empty, and must be unique.
- `profiles.jupyterlab[].default`: at most one profile may be the default.
- `profiles.jupyterlab[].users` / `.groups`: only with `access: yaml`.
- `profiles.jupyterlab[].kubespawner_override`: `cpu_limit`/`cpu_guarantee` are cores (not
  negative) or quantities such as `1500m`, `mem_limit`/`mem_guarantee` sizes such as `8G`; a
  guarantee must not exceed its limit; `image` must be an image reference.
- `profiles.dask_worker.<name>`: the name must not be empty; `worker_cores` must not exceed
  `worker_cores_limit`, nor `worker_memory` exceed `worker_memory_limit` (same formats as
  above); `worker_threads` is at least 1; `image` must be an image reference.
- `environments.<file>`: the key is a file name ending in `.yaml` or `.yml` (no `/`).
- `environments.<file>.name`: must not be empty, and must be unique across environments.
- `environments.<file>.dependencies`: at least one; no empty package spec.
- `default_images.jupyterhub` / `.jupyterlab` / `.dask_worker`: must be image references
  (`[registry[:port]/]repository[:tag][@digest]`).
- `storage.conda_store` / `.shared_filesystem`: must be sizes such as `200Gi`, at least 1 byte.
- `external_container_reg`: with `enabled: true`, `access_key_id`, `secret_access_key`,
  `extcr_account` and `extcr_region` are required and not blank.
- `tf_extensions[].image`: must be an image reference.
- `tf_extensions[].name`: a DNS label (lowercase letters, digits and `-`, starting with a
  letter: it names a Kubernetes Service), unique among the extensions, at most 54 characters
  (its objects are `qhub-ext-<name>`).
- `tf_extensions[].urlslug`: must not be empty (or only `/`), unique among the extensions, and
  neither a path the platform serves, nor under or above one (`/auth`, `/hub`, `/user`,
  `/services`, `/gateway`, `/conda-store`, `/monitoring`, `/welcome`, `/oauth2`, …: the routes
  the components declare); the error names the extension and the platform's route.
- `ci_cd.branch`: must not be empty.
- `cdsdashboards`, `prefect`, `clearml` `.enabled: true`: an
  integration qhub-rs does not deploy (see [Not deployed](#not-deployed)).

Warnings:

- A provider section other than the chosen provider's is ignored.
- `<provider>.node_groups`: no `user` or `worker` group (their workloads run on `general`).
- `<provider>.node_groups.<name>.max_nodes`: `0` means the group never runs a node.
- `<provider>.node_groups.general.min_nodes`: `0` lets the group that runs the core services
  scale to zero.
- `<provider>.node_groups.<name>.gpu`: only used on AWS (and the sandbox).
- `<provider>.node_groups.<name>.guest_accelerators`: only used on GCP.
- `certificate.acme_email` / `.acme_server` without `type: lets-encrypt`, and
  `certificate.secret_name` without `type: existing`, are ignored.
- `security.keycloak.initial_root_password`: a password in plain text (not a `QHUB_SECRET_X`
  reference); leave it out and a deploy generates one into the Secret `keycloak-admin`.
- `environments.<file>.dependencies[]`: an installer list other than `pip:`.
- `helm_extensions` (non-empty): not supported yet.
- `terraform_state` and `terraform_overrides`: ignored.
- `prevent_deploy: true`: `qhub deploy` will refuse to run.
- Any value with `QHUB_SECRET_X` where environment variable `X` is not set where
  `qhub validate` runs.
";

const DIFFERENCES_REJECTED: &str = "\
## Differences from QHub 0.4.5

### Rejected here, accepted by QHub 0.4.5

QHub 0.4.5 accepted these and then failed or misbehaved during deploy; `qhub validate` reports
them up front (see [Rules](#rules)):

- a node group with `min_nodes` greater than `max_nodes`;
- a `provider` without its section (e.g. `provider: aws` and no `amazon_web_services`);
- node groups without a `general` group;
- `certificate.type: lets-encrypt` without `certificate.acme_email`;
- more than one `profiles.jupyterlab[]` with `default: true`;
- a malformed `kubernetes_version`;
- a `domain` that is not a DNS name;
- a `project_name` that breaks its character rules.

`provider: azure` is refused too: QHub deployed to AKS, qhub-rs does not support Azure (use
`provider: existing` with an AKS cluster you created).

### Accepted here, rejected by QHub 0.4.5

- Image references with a registry port, such as `registry.example.com:5000/team/image:tag`
  (QHub crashed on them).
";

const DIFFERENCES_IGNORED: &str = "\
### Accepted but ignored

These keys load, so QHub configs stay valid, but qhub-rs does not act on them. `qhub validate`
warns about each when it is set (`helm_extensions` when not empty), except
`google_cloud_platform.zone`:

- `terraform_state`: qhub-rs keeps no Terraform state; it finds what it owns by ownership tags.
- `terraform_overrides` in `amazon_web_services`, `google_cloud_platform`, `digital_ocean` and
  `ingress`: qhub-rs does not use Terraform.
- `helm_extensions`: not supported yet (qhub-rs deploys without Helm).
- `google_cloud_platform.zone`: deprecated in QHub 0.4 (zones come from `availability_zones`).
- The section of a provider other than the chosen one.
";

/// Placeholders for the keys of maps whose keys the user chooses (default `<name>`).
const MAP_PLACEHOLDERS: &[(&str, &str)] = &[("environments", "<file>")];

/// The whole configuration reference as Markdown: the page `docs/configuration.md` holds.
/// Deterministic: the same model always gives the same text.
pub fn markdown() -> String {
    let root = schema::json_schema();
    let empty = Map::new();
    let props = root
        .get("properties")
        .and_then(Json::as_object)
        .unwrap_or(&empty);
    let required = required_keys(root);
    let mut out = String::from(INTRO);

    out.push_str("\n## Contents\n\n");
    for key in props.keys() {
        let _ = writeln!(out, "- [`{key}`](#{})", anchor(key));
    }
    out.push_str("- [Rules](#rules)\n");
    out.push_str("- [Differences from QHub 0.4.5](#differences-from-qhub-045)\n");
    out.push_str("- [Example](#example)\n");

    for (key, prop) in props {
        let mut section = Section::new(root);
        section.walk(prop, key.clone(), Some(required.contains(&key.as_str())));
        out.push('\n');
        let _ = writeln!(out, "## `{key}`\n");
        let target = section.target(prop);
        let prop_doc = one_line(description(prop));
        let def_doc = one_line(description(target));
        if !prop_doc.is_empty() {
            let _ = writeln!(out, "{prop_doc}\n");
        }
        // A type's own description adds to the field's, unless it only names the section.
        let trivial = [format!("`{key}`."), format!("The `{key}` section.")];
        if !def_doc.is_empty() && def_doc != prop_doc && !trivial.contains(&def_doc) {
            let _ = writeln!(out, "{def_doc}\n");
        }
        section.render(&mut out);
    }

    out.push('\n');
    out.push_str(RULES);
    out.push('\n');
    out.push_str(DIFFERENCES_REJECTED);
    // The sections that may now be left out are the top-level sections with a default.
    let defaulted: Vec<String> = props
        .iter()
        .filter(|(_, p)| p.get("default").is_some())
        .filter(|(_, p)| {
            let t = Section::new(root).target(p);
            type_list(t).contains(&"object") || t.get("properties").is_some()
        })
        .map(|(k, _)| format!("`{k}`"))
        .collect();
    if !defaulted.is_empty() {
        let _ = writeln!(
            out,
            "- Sections left out get their defaults (shown above): {}. QHub required each of them.",
            defaulted.join(", ")
        );
    }
    out.push('\n');
    out.push_str(DIFFERENCES_IGNORED);
    out.push('\n');
    out.push_str(&not_deployed());
    out.push('\n');
    out.push_str(&example());
    out
}

/// The `### Not deployed` section, from `super::not_built::NOT_BUILT`.
fn not_deployed() -> String {
    let mut out = String::from(
        "### Not deployed\n\n\
         QHub 0.4.5 deployed these integrations; qhub-rs does not. Enabling one is an error, so \
         `qhub validate`, `plan` and `deploy` stop and name the key rather than deploy without \
         it. `qhub init` writes them off and `qhub upgrade` switches them off, with a note.\n\n",
    );
    for n in super::not_built::NOT_BUILT {
        let _ = writeln!(
            out,
            "- `{}` ({}): {}. Instead: {}.",
            n.key, n.what, n.why, n.instead
        );
    }
    out
}

/// The `## Example` section: `qhub init aws` with fixed arguments and password.
fn example() -> String {
    let opts = InitOptions::new(
        ProviderKind::Aws,
        EXAMPLE_PROJECT,
        EXAMPLE_DOMAIN,
        EXAMPLE_PASSWORD,
    );
    let yaml = match init::render(&opts) {
        Ok(config) => config.to_yaml(),
        Err(e) => format!("# qhub init failed: {e}\n"),
    };
    let mut out = String::from("## Example\n\n");
    let _ = writeln!(
        out,
        "A complete config, as `qhub init aws --project {EXAMPLE_PROJECT} --domain {EXAMPLE_DOMAIN}` \
         writes it (with `{EXAMPLE_PASSWORD}` in place of the random Keycloak root password it \
         generates):\n"
    );
    out.push_str("```yaml\n");
    out.push_str(&yaml);
    if !yaml.ends_with('\n') {
        out.push('\n');
    }
    out.push_str("```\n");
    out
}

/// One row of a section's table.
struct Row {
    path: String,
    ty: String,
    /// `None` for list items, map entries and `*`.
    required: Option<bool>,
    default: Option<String>,
    allowed: Vec<String>,
    description: String,
}

/// The documented values of a key that takes a closed set.
struct ValueDocs {
    path: String,
    values: Vec<(String, String)>,
}

/// The rows of one top-level section, collected by walking the schema.
struct Section<'a> {
    root: &'a Json,
    rows: Vec<Row>,
    value_docs: Vec<ValueDocs>,
}

impl<'a> Section<'a> {
    fn new(root: &'a Json) -> Self {
        Self {
            root,
            rows: Vec::new(),
            value_docs: Vec::new(),
        }
    }

    /// Follows local `$ref`s (schemars only emits `#/$defs/Name`).
    fn resolve(&self, schema: &'a Json) -> &'a Json {
        let mut schema = schema;
        for _ in 0..32 {
            match schema.get("$ref").and_then(Json::as_str) {
                Some(r) => match r.strip_prefix('#').and_then(|p| self.root.pointer(p)) {
                    Some(target) => schema = target,
                    None => return schema,
                },
                None => return schema,
            }
        }
        schema
    }

    /// The schema of the value once references are followed and an `anyOf: [X, null]` wrapper
    /// (how schemars writes `Option<X>`) is removed.
    fn target(&self, schema: &'a Json) -> &'a Json {
        let mut schema = self.resolve(schema);
        for _ in 0..32 {
            let alternatives = alternatives(schema);
            let non_null: Vec<&Json> = alternatives
                .iter()
                .copied()
                .filter(|a| !is_null(a))
                .collect();
            if !alternatives.is_empty() && non_null.len() == 1 {
                schema = self.resolve(non_null[0]);
            } else {
                return schema;
            }
        }
        schema
    }

    /// The closed set of values `schema` allows, with each value's description.
    fn allowed(&self, schema: &'a Json) -> Vec<(Json, String)> {
        let s = self.target(schema);
        let doc = one_line(description(s));
        if let Some(c) = s.get("const") {
            return vec![(c.clone(), doc)];
        }
        if let Some(values) = s.get("enum").and_then(Json::as_array) {
            return values
                .iter()
                .filter(|v| !v.is_null())
                .map(|v| (v.clone(), String::new()))
                .collect();
        }
        let alts: Vec<&Json> = alternatives(s)
            .into_iter()
            .filter(|a| !is_null(a))
            .collect();
        if alts.is_empty() {
            return Vec::new();
        }
        let mut out = Vec::new();
        for alt in alts {
            let values = self.allowed(alt);
            if values.is_empty() {
                return Vec::new();
            }
            out.extend(values);
        }
        out
    }

    /// A short, human name of the type of `schema`.
    fn type_name(&self, schema: &'a Json, depth: usize) -> String {
        if depth > 8 {
            return "any".into();
        }
        let s = self.target(schema);
        let allowed = self.allowed(s);
        if !allowed.is_empty() {
            let mut names: Vec<&str> = Vec::new();
            for (v, _) in &allowed {
                let n = json_type_name(v);
                if !names.contains(&n) {
                    names.push(n);
                }
            }
            return names.join(" or ");
        }
        let alts: Vec<&Json> = alternatives(s)
            .into_iter()
            .filter(|a| !is_null(a))
            .collect();
        if !alts.is_empty() {
            return alts
                .iter()
                .map(|a| self.type_name(a, depth + 1))
                .collect::<Vec<_>>()
                .join(" or ");
        }
        let mut types = type_list(s);
        if types.is_empty() {
            if s.get("properties").is_some() || s.get("additionalProperties").is_some() {
                types.push("object");
            } else if s.get("items").is_some() {
                types.push("array");
            } else {
                return "any".into();
            }
        }
        types
            .iter()
            .map(|t| match *t {
                "object" => self.object_name(s, depth),
                "array" => match s.get("items") {
                    None | Some(Json::Bool(true)) => "list".into(),
                    Some(items) => {
                        let item = self.type_name(items, depth + 1);
                        if item.contains(" or ") {
                            format!("list of ({item})")
                        } else {
                            format!("list of {item}")
                        }
                    }
                },
                "integer" => {
                    let (min, max) = (s.get("minimum"), s.get("maximum"));
                    match (min, max) {
                        (Some(lo), Some(hi)) => format!("integer {lo}–{hi}"),
                        (Some(lo), None) => format!("integer ≥ {lo}"),
                        (None, Some(hi)) => format!("integer ≤ {hi}"),
                        (None, None) => "integer".into(),
                    }
                }
                other => other.to_string(),
            })
            .collect::<Vec<_>>()
            .join(" or ")
    }

    fn object_name(&self, s: &'a Json, depth: usize) -> String {
        if s.get("properties").is_some() {
            return "mapping".into();
        }
        match s.get("additionalProperties") {
            Some(Json::Object(_)) => {
                let entry = s.get("additionalProperties").unwrap_or(&Json::Null);
                format!("map of name → {}", self.type_name(entry, depth + 1))
            }
            Some(Json::Bool(false)) => "mapping (empty)".into(),
            _ => "mapping (any keys)".into(),
        }
    }

    /// Adds the row of `prop` at `path`, then the rows of what it contains.
    fn walk(&mut self, prop: &'a Json, path: String, required: Option<bool>) {
        if path.len() > 400 {
            return;
        }
        let target = self.target(prop);
        let mut doc = one_line(description(prop));
        if doc.is_empty() {
            doc = one_line(description(target));
        }
        let allowed = self.allowed(prop);
        if allowed.iter().any(|(_, d)| !d.is_empty()) {
            self.value_docs.push(ValueDocs {
                path: path.clone(),
                values: allowed.iter().map(|(v, d)| (flow(v), d.clone())).collect(),
            });
        }
        self.rows.push(Row {
            path: path.clone(),
            ty: self.type_name(prop, 0),
            required,
            default: prop.get("default").or(target.get("default")).map(flow),
            allowed: allowed.iter().map(|(v, _)| flow(v)).collect(),
            description: doc,
        });
        self.children(target, &path);
    }

    fn children(&mut self, target: &'a Json, path: &str) {
        if let Some(props) = target.get("properties").and_then(Json::as_object) {
            let required = required_keys(target);
            for (key, prop) in props {
                self.walk(
                    prop,
                    format!("{path}.{key}"),
                    Some(required.contains(&key.as_str())),
                );
            }
            if target.get("additionalProperties") == Some(&Json::Bool(true)) {
                self.rows.push(Row {
                    path: format!("{path}.*"),
                    ty: "any".into(),
                    required: None,
                    default: None,
                    allowed: Vec::new(),
                    description: "Any other key is accepted and passed on as written.".into(),
                });
            }
        } else if let Some(entry @ Json::Object(_)) = target.get("additionalProperties")
            && self.target(entry).get("properties").is_some()
        {
            let last = path.rsplit('.').next().unwrap_or(path);
            let placeholder = MAP_PLACEHOLDERS
                .iter()
                .find(|(k, _)| *k == last)
                .map_or("<name>", |(_, p)| p);
            self.walk(entry, format!("{path}.{placeholder}"), None);
        }
        if let Some(items @ Json::Object(_)) = target.get("items")
            && self.target(items).get("properties").is_some()
        {
            self.walk(items, format!("{path}[]"), None);
        }
    }

    fn render(&self, out: &mut String) {
        out.push_str("| Key | Type | Required | Default | Allowed values | Description |\n");
        out.push_str("| --- | --- | --- | --- | --- | --- |\n");
        for row in &self.rows {
            let required = match row.required {
                Some(true) => "yes",
                Some(false) => "no",
                None => "—",
            };
            let default = row
                .default
                .as_ref()
                .map_or_else(|| "—".to_string(), |d| format!("`{d}`"));
            let allowed = if row.allowed.is_empty() {
                "—".to_string()
            } else {
                row.allowed
                    .iter()
                    .map(|v| format!("`{v}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let _ = writeln!(
                out,
                "| `{}` | {} | {required} | {} | {} | {} |",
                row.path,
                cell(&row.ty),
                cell(&default),
                cell(&allowed),
                cell(&row.description),
            );
        }
        for docs in &self.value_docs {
            let _ = writeln!(out, "\nValues of `{}`:\n", docs.path);
            for (value, doc) in &docs.values {
                if doc.is_empty() {
                    let _ = writeln!(out, "- `{value}`");
                } else {
                    let _ = writeln!(out, "- `{value}`: {doc}");
                }
            }
        }
    }
}

/// The `anyOf`/`oneOf` alternatives of a schema (empty when it has none).
fn alternatives(schema: &Json) -> Vec<&Json> {
    schema
        .get("anyOf")
        .or_else(|| schema.get("oneOf"))
        .and_then(Json::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default()
}

fn is_null(schema: &Json) -> bool {
    schema.get("type").and_then(Json::as_str) == Some("null")
}

/// The `type` keyword as a list, without `null` (optional values are shown by "Required").
fn type_list(schema: &Json) -> Vec<&str> {
    match schema.get("type") {
        Some(Json::String(s)) if s != "null" => vec![s.as_str()],
        Some(Json::Array(a)) => a
            .iter()
            .filter_map(Json::as_str)
            .filter(|t| *t != "null")
            .collect(),
        _ => Vec::new(),
    }
}

fn json_type_name(v: &Json) -> &'static str {
    match v {
        Json::String(_) => "string",
        Json::Bool(_) => "boolean",
        Json::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Json::Number(_) => "number",
        Json::Null => "null",
        Json::Array(_) => "list",
        Json::Object(_) => "mapping",
    }
}

fn required_keys(schema: &Json) -> Vec<&str> {
    schema
        .get("required")
        .and_then(Json::as_array)
        .map(|a| a.iter().filter_map(Json::as_str).collect())
        .unwrap_or_default()
}

fn description(schema: &Json) -> &str {
    schema
        .get("description")
        .and_then(Json::as_str)
        .unwrap_or("")
}

/// Joins rustdoc's wrapped lines into one.
fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Text safe inside a Markdown table cell.
fn cell(text: &str) -> String {
    text.replace('|', "\\|")
}

/// A value in YAML flow style, as it would be written in the config.
fn flow(v: &Json) -> String {
    match v {
        Json::String(s) => {
            let plain = s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
                && !s.ends_with(':')
                && s.parse::<f64>().is_err()
                && !matches!(
                    s.to_ascii_lowercase().as_str(),
                    "true" | "false" | "null" | "yes" | "no" | "on" | "off"
                )
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/' | ':'));
            if plain {
                s.clone()
            } else {
                Json::String(s.clone()).to_string()
            }
        }
        Json::Array(items) => format!(
            "[{}]",
            items.iter().map(flow).collect::<Vec<_>>().join(", ")
        ),
        Json::Object(map) => format!(
            "{{{}}}",
            map.iter()
                .map(|(k, v)| format!("{}: {}", flow(&Json::String(k.clone())), flow(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        other => other.to_string(),
    }
}

/// GitHub's heading anchor for a heading that is just `` `key` ``.
fn anchor(key: &str) -> String {
    key.chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_deterministic() {
        assert_eq!(markdown(), markdown());
    }

    #[test]
    fn every_top_level_key_has_a_section() {
        let text = markdown();
        let props = schema::json_schema()["properties"].as_object().unwrap();
        for key in props.keys() {
            assert!(text.contains(&format!("\n## `{key}`\n")), "{key}");
        }
    }

    #[test]
    fn every_defined_property_is_documented() {
        let text = markdown();
        let defs = schema::json_schema()["$defs"].as_object().unwrap();
        for (name, def) in defs {
            for key in def
                .get("properties")
                .and_then(Json::as_object)
                .into_iter()
                .flat_map(|p| p.keys())
            {
                assert!(text.contains(&format!(".{key}` |")), "{name}.{key}");
            }
        }
    }

    #[test]
    fn nested_paths_follow_refs_maps_and_lists() {
        let text = markdown();
        for path in [
            "amazon_web_services.node_groups.<name>.min_nodes",
            "amazon_web_services.node_groups.<name>.*",
            "environments.<file>.dependencies",
            "profiles.jupyterlab[].kubespawner_override.cpu_limit",
            "profiles.dask_worker.<name>.worker_threads",
            "security.authentication.config.client_secret",
            "tf_extensions[].envs[].value",
        ] {
            assert!(text.contains(&format!("| `{path}` |")), "{path}");
        }
    }

    #[test]
    fn example_is_a_valid_config() {
        let text = example();
        let yaml = text
            .split("```yaml\n")
            .nth(1)
            .and_then(|rest| rest.split("```").next())
            .unwrap();
        let loaded = super::super::load_str(yaml, std::path::Path::new("example.yaml"));
        assert!(loaded.is_ok(), "{loaded:?}");
    }

    #[test]
    fn flow_quotes_what_yaml_would_misread() {
        assert_eq!(flow(&Json::String("dev".into())), "dev");
        assert_eq!(flow(&Json::String(String::new())), "\"\"");
        assert_eq!(flow(&Json::String("1.20".into())), "\"1.20\"");
        assert_eq!(flow(&Json::String("true".into())), "\"true\"");
        assert_eq!(
            flow(&serde_json::json!({"type": "self-signed"})),
            "{type: self-signed}"
        );
    }
}
