//! `qhub upgrade`: migrate QHub 0.3.x and early 0.4 configs to one that validates and deploys.
//!
//! The migration works on the YAML tree, so values it does not touch keep their exact text.
//! It does what QHub's own upgrade did (users and groups to a Keycloak import file, removed keys
//! dropped, `access` added to profiles, a backup kept; not QHub's generated root password, which
//! a deploy now keeps in a Secret instead of the file) and
//! adds what QHub's forgot (the `monitoring`, `argo_workflows`, `kbatch` and other sections QHub
//! 0.4 needs), then validates the result before anything is written.

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::{Value as Json, json};

use super::yaml::{self, Node, Value};
use super::{ConfigError, QHUB_VERSION};

/// The users import file written beside the config.
pub const USERS_IMPORT_FILE: &str = "qhub-users-import.json";

/// The result of migrating config text.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Migration {
    /// `qhub_version` before (or `unknown`).
    pub from_version: String,
    /// `qhub_version` after.
    pub to_version: String,
    /// What changed, one sentence each; empty means the config was current.
    pub changes: Vec<String>,
    /// Things the user must do by hand.
    pub notes: Vec<String>,
    /// The migrated config text (`None` when nothing changed).
    #[serde(skip)]
    pub text: Option<String>,
    /// The Keycloak realm import built from 0.3 `security.users`/`groups`.
    #[serde(skip)]
    pub users_import: Option<Json>,
}

fn scalar(node: Option<&Node>) -> Option<String> {
    node.and_then(Node::as_str).map(str::to_string)
}

fn map_entries(node: &Node) -> Vec<(String, Node)> {
    match &node.value {
        Value::Map(entries) => entries
            .iter()
            .map(|(k, v)| (k.name.clone(), v.clone()))
            .collect(),
        _ => Vec::new(),
    }
}

fn seq_strings(node: Option<&Node>) -> Vec<String> {
    match node.map(|n| &n.value) {
        Some(Value::Seq(items)) => items
            .iter()
            .filter_map(|i| i.as_str().map(str::to_string))
            .collect(),
        Some(Value::Scalar(s, _)) if !s.is_empty() => vec![s.clone()],
        _ => Vec::new(),
    }
}

/// Builds a Keycloak partial-import document from QHub 0.3 `security.users` and
/// `security.groups`. Passwords are not carried over: QHub 0.3 stored bcrypt hashes, which
/// Keycloak cannot verify, so imported users must set a new password at first login.
pub fn users_import(users: Option<&Node>, groups: Option<&Node>) -> Json {
    let mut group_names: Vec<String> = groups
        .map(map_entries)
        .unwrap_or_default()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    let mut out_users = Vec::new();
    for (name, spec) in users.map(map_entries).unwrap_or_default() {
        let mut member_of: Vec<String> = Vec::new();
        for g in scalar(spec.get("primary_group"))
            .into_iter()
            .chain(seq_strings(spec.get("secondary_groups")))
        {
            if !member_of.contains(&g) {
                member_of.push(g.clone());
            }
            if !group_names.contains(&g) {
                group_names.push(g);
            }
        }
        let mut user = json!({
            "username": name,
            "enabled": true,
            "groups": member_of.iter().map(|g| format!("/{g}")).collect::<Vec<_>>(),
            "requiredActions": ["UPDATE_PASSWORD"],
        });
        if let Some(uid) = scalar(spec.get("uid")) {
            user["attributes"] = json!({"uid": [uid]});
        }
        if let Some(email) = scalar(spec.get("email")) {
            user["email"] = Json::String(email);
        }
        out_users.push(user);
    }
    let out_groups: Vec<Json> = group_names
        .iter()
        .map(|g| {
            let gid = groups
                .and_then(|gs| gs.get(g))
                .and_then(|spec| scalar(spec.get("gid")));
            match gid {
                Some(gid) => {
                    json!({"name": g, "path": format!("/{g}"), "attributes": {"gid": [gid]}})
                }
                None => json!({"name": g, "path": format!("/{g}")}),
            }
        })
        .collect();
    json!({"realm": "qhub", "users": out_users, "groups": out_groups})
}

/// Migrates config text. No secret is added: a deploy generates Keycloak's admin password into
/// a Secret when the config sets none. The result is validated; an error lists what the user
/// must still fix by hand.
pub fn migrate(text: &str) -> Result<Migration, ConfigError> {
    let mut root = yaml::parse(text).map_err(|e| ConfigError::Invalid {
        file: PathBuf::from(super::DEFAULT_FILE),
        report: super::Report {
            diagnostics: vec![super::Diagnostic {
                severity: super::Severity::Error,
                path: super::KeyPath::root(),
                line: e.pos.line,
                column: e.pos.column,
                message: format!("YAML syntax error: {}", e.message),
                hint: None,
            }],
        },
    })?;
    if !matches!(root.value, Value::Map(_)) {
        return Err(ConfigError::Usage(
            "the config is not a YAML mapping; nothing to upgrade".into(),
        ));
    }
    let from_version = scalar(root.get("qhub_version")).unwrap_or_else(|| "unknown".into());
    let mut changes = Vec::new();
    let mut notes = Vec::new();
    let mut users_import_doc = None;

    // 0.3: users and groups move to Keycloak.
    if let Some(security) = root.get_mut("security") {
        let users = security.remove("users");
        let groups = security.remove("groups");
        if users.is_some() || groups.is_some() {
            let doc = users_import(users.as_ref(), groups.as_ref());
            let n_users = doc["users"].as_array().map_or(0, Vec::len);
            let n_groups = doc["groups"].as_array().map_or(0, Vec::len);
            changes.push(format!(
                "moved security.users ({n_users}) and security.groups ({n_groups}) to {USERS_IMPORT_FILE} (Keycloak realm import)"
            ));
            notes.push(format!(
                "import {USERS_IMPORT_FILE} into the Keycloak realm `qhub` after deploying; passwords are not migrated (QHub 0.3 kept bcrypt hashes), so each user sets a new one at first login"
            ));
            users_import_doc = Some(doc);
        }
        if let Some(auth) = security.get_mut("authentication") {
            if auth.get("type").and_then(Node::as_str) == Some("custom") {
                return Err(ConfigError::Usage(
                    "security.authentication.type `custom` was removed in QHub 0.4 and cannot be migrated; choose password, GitHub or Auth0".into(),
                ));
            }
            if let Some(config) = auth.get_mut("config") {
                for key in ["oauth_callback_url", "scope"] {
                    if config.remove(key).is_some() {
                        changes.push(format!("removed security.authentication.config.{key} (Keycloak handles the callback)"));
                    }
                }
            }
        }
        // No root password is generated into the file any more: the config is kept in version
        // control, and a deploy generates Keycloak's admin password once into the Secret
        // `keycloak-admin` when the config sets none (`qhub secrets show keycloak-admin`).
        let literal_password = security
            .get("keycloak")
            .and_then(|k| k.get("initial_root_password"))
            .and_then(Node::as_str)
            .is_some_and(|p| !p.trim().is_empty() && !p.starts_with("QHUB_SECRET_"));
        if literal_password {
            notes.push(
                "security.keycloak.initial_root_password holds a password in plain text; remove it (deploy keeps the admin password in the Secret `keycloak-admin`) or write QHUB_SECRET_NAME and export NAME".into(),
            );
        }
    }

    if let Some(images) = root.get_mut("default_images") {
        for key in ["conda_store", "dask_gateway"] {
            if images.remove(key).is_some() {
                changes.push(format!(
                    "removed default_images.{key} (no longer configurable)"
                ));
            }
        }
    }

    // Very old configs wrote `ci_cd: github-actions`.
    if let Some(kind) = root.get("ci_cd").and_then(Node::as_str).map(str::to_string)
        && !root.get("ci_cd").is_some_and(Node::is_null)
    {
        root.insert(
            "ci_cd",
            Node::from_json(&json!({"type": kind, "branch": "main"})),
        );
        changes.push(format!("rewrote `ci_cd: {kind}` as a ci_cd section"));
    }

    // 0.3 profiles restricted by `users`/`groups` lists; 0.4 says so with `access`. In a 0.4
    // file a missing `access` already means `all`, so only restricted profiles need it.
    let pre_0_4 = !from_version.trim_start_matches('v').starts_with("0.4");
    if let Some(Value::Seq(profiles)) = root
        .get_mut("profiles")
        .and_then(|p| p.get_mut("jupyterlab"))
        .map(|l| &mut l.value)
    {
        for (i, profile) in profiles.iter_mut().enumerate() {
            if profile.get("access").is_none() && matches!(profile.value, Value::Map(_)) {
                let restricted = profile.get("users").is_some() || profile.get("groups").is_some();
                if !restricted && !pre_0_4 {
                    continue;
                }
                let access = if restricted { "yaml" } else { "all" };
                profile.insert("access", Node::plain(access));
                changes.push(format!("added profiles.jupyterlab[{i}].access: {access}"));
            }
        }
    }

    // Sections QHub 0.4 needs and QHub's own upgrade forgot: as `init` writes them.
    for key in ["monitoring", "argo_workflows", "kbatch"] {
        if root.get(key).is_none() {
            let enabled = super::init::default_on(key);
            root.insert(key, Node::from_json(&json!({ "enabled": enabled })));
            changes.push(if enabled {
                format!("added {key}: {{enabled: true}} (QHub 0.4 default)")
            } else {
                format!("added {key}: {{enabled: false}} (off by default in qhub-rs)")
            });
        }
    }
    if root.get("cdsdashboards").is_none() {
        let defaults = serde_json::to_value(super::CdsDashboards::default()).unwrap_or(Json::Null);
        root.insert("cdsdashboards", Node::from_json(&defaults));
        changes.push("added cdsdashboards (enabled: false: qhub-rs does not deploy it)".into());
    }
    // An enabled integration qhub-rs does not deploy is a validation error; switch it off so the
    // upgraded file deploys, and say why (QHub 0.4.5's own init turned `cdsdashboards` on).
    for n in super::not_built::NOT_BUILT {
        if let Some(enabled) = root.get_mut(n.key).and_then(|s| s.get_mut("enabled"))
            && enabled.to_json() == Json::Bool(true)
        {
            *enabled = Node::plain("false");
            changes.push(format!(
                "switched off {}: set {}.enabled: false",
                n.key, n.key
            ));
            notes.push(format!(
                "{} was enabled, but qhub-rs does not deploy {}: {}; {}",
                n.key, n.what, n.why, n.instead
            ));
        }
    }
    if root.get("certificate").is_none() {
        root.insert(
            "certificate",
            Node::from_json(&json!({"type": "self-signed"})),
        );
        changes.push("added certificate: {type: self-signed}".into());
    }

    if from_version != QHUB_VERSION {
        root.insert("qhub_version", Node::plain(QHUB_VERSION));
        changes.push(format!(
            "set qhub_version: {from_version} -> {QHUB_VERSION}"
        ));
    }

    let new_text = yaml::emit(&root);
    // The result must validate; otherwise nothing is written and the user sees every problem.
    super::load_str(&new_text, Path::new(super::DEFAULT_FILE))?;
    Ok(Migration {
        from_version,
        to_version: QHUB_VERSION.into(),
        text: (!changes.is_empty()).then_some(new_text),
        changes,
        notes,
        users_import: users_import_doc,
    })
}

/// What `upgrade_file` did.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// The migration.
    #[serde(flatten)]
    pub migration: Migration,
    /// The backup of the original, when the file was changed.
    pub backup: Option<PathBuf>,
    /// The users import file, when one was written.
    pub users_import_file: Option<PathBuf>,
}

fn write_err(e: crate::fs::WriteError) -> ConfigError {
    match e {
        crate::fs::WriteError::Exists(path) => ConfigError::AlreadyExists { path },
        crate::fs::WriteError::Io { path, source } => ConfigError::Write { path, source },
    }
}

/// Upgrades a config file in place: writes the backup (`<file>.<old-version>.backup`) and the
/// users import first, then replaces the config atomically. With `dry_run`, writes nothing.
pub fn upgrade_file(path: &Path, dry_run: bool) -> Result<Outcome, ConfigError> {
    let original = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let migration = migrate(&original).map_err(|e| match e {
        ConfigError::Invalid { report, .. } => ConfigError::Invalid {
            file: path.to_path_buf(),
            report,
        },
        other => other,
    })?;
    let Some(text) = migration.text.clone() else {
        return Ok(Outcome {
            migration,
            backup: None,
            users_import_file: None,
        });
    };
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // `qhub_version` is free text: keep only file-name-safe characters so that a `/` in it
    // cannot send the backup into another directory (or make it unwritable).
    let version: String = migration
        .from_version
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let backup = dir.join(format!("{file_name}.{version}.backup"));
    let users_file = migration
        .users_import
        .as_ref()
        .map(|_| dir.join(USERS_IMPORT_FILE));
    if !dry_run {
        if backup.exists() {
            // An earlier interrupted run left it: keep it only if it is this same original.
            let existing =
                std::fs::read_to_string(&backup).map_err(|source| ConfigError::Read {
                    path: backup.clone(),
                    source,
                })?;
            if existing != original {
                return Err(ConfigError::AlreadyExists { path: backup });
            }
        } else {
            crate::fs::write_new(&backup, original.as_bytes()).map_err(write_err)?;
        }
        if let (Some(file), Some(doc)) = (&users_file, &migration.users_import) {
            let body = serde_json::to_string_pretty(doc)
                .map_err(|e| ConfigError::Internal(e.to_string()))?
                + "\n";
            crate::fs::replace(file, body.as_bytes()).map_err(write_err)?;
        }
        crate::fs::replace(path, text.as_bytes()).map_err(write_err)?;
    }
    Ok(Outcome {
        migration,
        backup: Some(backup),
        users_import_file: users_file,
    })
}
