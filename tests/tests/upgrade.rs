//! `qhub upgrade` end to end on realistic QHub 0.3.10 and 0.4.0 configs: the result loads, the
//! users and groups reach the Keycloak import file intact, the original is kept byte for byte,
//! a second run changes nothing, and a config that would still be invalid is left alone.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use qhub_core::config::init::default_on;
use qhub_core::config::not_built::NOT_BUILT;
use qhub_core::config::profiles::Access;
use qhub_core::config::upgrade::{USERS_IMPORT_FILE, migrate, upgrade_file};
use qhub_core::config::yaml::{self, Node, Style, Value};
use qhub_core::config::{ConfigError, QHUB_VERSION, load_file, load_str};
use qhub_tests::fixture;
use serde_json::{Value as Json, json};

const V310: &str = "qhub-0.3.10-do.yaml";
const V040: &str = "qhub-0.4.0-aws.yaml";

/// A temp dir holding `qhub-config.yaml` with `text`.
fn setup(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("qhub-config.yaml");
    std::fs::write(&path, text).expect("write config");
    (dir, path)
}

/// The file names in `dir`, sorted.
fn listing(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn parse_json(text: &str) -> Json {
    yaml::parse(text).expect("YAML parses").to_json()
}

/// Upgrades the 0.3.10 fixture in a fresh dir and returns (dir, config path, upgraded text).
fn upgraded_310() -> (tempfile::TempDir, PathBuf, String) {
    let (dir, path) = setup(&fixture(V310));
    upgrade_file(&path, false).expect("0.3.10 config upgrades");
    let text = std::fs::read_to_string(&path).expect("read upgraded");
    (dir, path, text)
}

#[test]
fn fixture_0310_is_rejected_before_upgrade() {
    // Guards the fixture itself: it must be a genuine 0.3 config that today's loader refuses.
    let err = load_str(&fixture(V310), Path::new(V310)).expect_err("0.3.10 config must not load");
    let ConfigError::Invalid { report, .. } = err else {
        panic!("expected Invalid, got {err}");
    };
    let paths: BTreeSet<String> = report.errors().map(|d| d.path.to_string()).collect();
    for p in [
        "security.users",
        "security.groups",
        "default_images.conda_store",
        "default_images.dask_gateway",
    ] {
        assert!(
            paths.iter().any(|q| q == p),
            "no error at {p}; errors: {paths:?}"
        );
    }
}

#[test]
fn upgrade_0310_loads_with_zero_errors() {
    let (dir, path, text) = upgraded_310();
    let loaded = load_file(&path).unwrap_or_else(|e| panic!("upgraded config must load: {e}"));
    assert_eq!(loaded.report.errors().count(), 0, "{}", loaded.report);
    let config = loaded.config;
    assert_eq!(config.qhub_version.as_deref(), Some(QHUB_VERSION));
    assert_eq!(config.project_name, "do-pytest");
    assert_eq!(config.domain, "do.qhub.dev");
    assert_eq!(
        config
            .security
            .keycloak
            .as_ref()
            .and_then(|k| k.initial_root_password.as_deref()),
        None,
        "upgrade writes no root password into the file: a deploy generates it into a Secret"
    );
    assert_eq!(config.kubernetes_version(), Some("1.21.5-do.0"));
    assert_eq!(
        listing(dir.path()),
        set(&[
            "qhub-config.yaml",
            "qhub-config.yaml.0.3.10.backup",
            USERS_IMPORT_FILE
        ])
    );
    // The text written is the text `migrate` validated.
    let m = migrate(&fixture(V310)).expect("migrate");
    assert_eq!(m.text.as_deref(), Some(text.as_str()));
    assert_eq!(m.from_version, "0.3.10");
    assert_eq!(m.to_version, QHUB_VERSION);
}

#[test]
fn upgrade_0310_writes_users_import_matching_fixture() {
    let (dir, _path, _text) = upgraded_310();
    let import_path = dir.path().join("qhub-users-import.json");
    let body = std::fs::read_to_string(&import_path).expect("users import file written");
    let doc: Json = serde_json::from_str(&body).expect("users import is JSON");
    assert_eq!(doc["realm"], json!("qhub"));

    // What the fixture says, read independently of the upgrade code.
    let original = parse_json(&fixture(V310));
    let users = original["security"]["users"].as_object().expect("users");
    let groups = original["security"]["groups"].as_object().expect("groups");

    let out_users = doc["users"].as_array().expect("users array");
    let names: Vec<&str> = out_users
        .iter()
        .map(|u| u["username"].as_str().expect("username"))
        .collect();
    assert_eq!(names, ["example-user", "costrouc"]);
    assert_eq!(names.len(), users.len());
    for user in out_users {
        let name = user["username"].as_str().unwrap();
        let spec = &users[name];
        let mut expected: Vec<String> =
            vec![format!("/{}", spec["primary_group"].as_str().unwrap())];
        for g in spec["secondary_groups"].as_array().unwrap() {
            expected.push(format!("/{}", g.as_str().unwrap()));
        }
        let got: Vec<String> = user["groups"]
            .as_array()
            .expect("groups array")
            .iter()
            .map(|g| g.as_str().unwrap().to_string())
            .collect();
        assert_eq!(got, expected, "group membership of {name}");
        assert_eq!(user["enabled"], json!(true));
        assert_eq!(
            user["attributes"]["uid"],
            json!([spec["uid"].to_string()]),
            "uid of {name}"
        );
    }
    assert_eq!(out_users[0]["groups"], json!(["/admin", "/users"]));
    assert_eq!(
        out_users[1]["groups"],
        json!(["/users", "/billing", "/admin"])
    );

    let out_groups = doc["groups"].as_array().expect("groups array");
    assert_eq!(
        out_groups,
        &vec![
            json!({"name": "users", "path": "/users", "attributes": {"gid": ["100"]}}),
            json!({"name": "admin", "path": "/admin", "attributes": {"gid": ["101"]}}),
            json!({"name": "billing", "path": "/billing", "attributes": {"gid": ["102"]}}),
        ]
    );
    let out_group_names: BTreeSet<&str> = out_groups
        .iter()
        .map(|g| g["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        out_group_names,
        groups.keys().map(String::as_str).collect::<BTreeSet<_>>()
    );
    // Keycloak cannot verify QHub 0.3's bcrypt hashes: the hash must not be carried over as if
    // it were a password, and the user must set a new one.
    assert!(!body.contains("$2b$12$"), "bcrypt hash leaked: {body}");
    assert_eq!(out_users[0]["requiredActions"], json!(["UPDATE_PASSWORD"]));
}

#[test]
fn upgrade_0310_backup_is_byte_identical() {
    let original = fixture(V310);
    let (dir, path) = setup(&original);
    let outcome = upgrade_file(&path, false).expect("upgrade");
    let backup = dir.path().join("qhub-config.yaml.0.3.10.backup");
    assert_eq!(outcome.backup.as_deref(), Some(backup.as_path()));
    assert_eq!(
        std::fs::read(&backup).expect("backup written"),
        original.as_bytes()
    );
    assert_ne!(std::fs::read_to_string(&path).unwrap(), original);
}

#[test]
fn upgrade_0310_drops_removed_keys() {
    let (_dir, _path, text) = upgraded_310();
    let v = parse_json(&text);
    let security = v["security"].as_object().expect("security");
    assert!(!security.contains_key("users"), "{text}");
    assert!(!security.contains_key("groups"), "{text}");
    let images = v["default_images"].as_object().expect("default_images");
    assert!(!images.contains_key("conda_store"), "{text}");
    assert!(!images.contains_key("dask_gateway"), "{text}");
    assert_eq!(
        images.keys().collect::<Vec<_>>(),
        ["jupyterhub", "jupyterlab", "dask_worker"]
    );
    let auth_config = v["security"]["authentication"]["config"]
        .as_object()
        .expect("auth config");
    assert!(!auth_config.contains_key("oauth_callback_url"), "{text}");
    assert_eq!(v["security"]["authentication"]["type"], json!("GitHub"));
    assert_eq!(auth_config["client_id"], json!("7c3e8b1a9d2f4e6a0b5c"));
    assert_eq!(
        auth_config["client_secret"],
        json!("QHUB_SECRET_GITHUB_CLIENT_SECRET")
    );
    for gone in [
        "oauth_callback_url",
        "dask_gateway",
        "qhub-conda-store",
        "$2b$12$",
    ] {
        assert!(!text.contains(gone), "`{gone}` is still in:\n{text}");
    }
}

#[test]
fn upgrade_0310_adds_access_to_profiles() {
    let (_dir, path, text) = upgraded_310();
    let v = parse_json(&text);
    let profiles = v["profiles"]["jupyterlab"].as_array().expect("profiles");
    assert_eq!(profiles.len(), 3);
    assert_eq!(profiles[0]["access"], json!("all"));
    assert_eq!(profiles[1]["access"], json!("all"));
    assert_eq!(profiles[2]["access"], json!("yaml"));
    assert_eq!(profiles[2]["groups"], json!(["admin"]));
    let config = load_file(&path).expect("loads").config;
    let access: Vec<Access> = config
        .profiles
        .jupyterlab
        .iter()
        .map(|p| p.access)
        .collect();
    assert_eq!(access, [Access::All, Access::All, Access::Yaml]);
}

#[test]
fn upgrade_0310_adds_sections_qhub_forgot() {
    let (_dir, path, text) = upgraded_310();
    let v = parse_json(&text);
    // On as QHub 0.4 had them, unless qhub-rs does not deploy the service.
    for key in ["monitoring", "argo_workflows", "kbatch"] {
        assert_eq!(
            v[key],
            json!({"enabled": default_on(key)}),
            "{key} in:\n{text}"
        );
    }
    assert_eq!(v["qhub_version"], json!(QHUB_VERSION));
    assert_eq!(
        v["security"]["keycloak"]["initial_root_password"],
        Json::Null,
        "no secret is written into the config:\n{text}"
    );
    let config = load_file(&path).expect("loads").config;
    assert!(config.monitoring.as_ref().is_some_and(|t| t.enabled));
    assert_eq!(
        config.argo_workflows.as_ref().map(|t| t.enabled),
        Some(default_on("argo_workflows"))
    );
    assert_eq!(
        config.kbatch.as_ref().map(|t| t.enabled),
        Some(default_on("kbatch"))
    );
}

#[test]
fn upgrade_0310_keeps_untouched_values() {
    let original = parse_json(&fixture(V310));
    let (_dir, _path, text) = upgraded_310();
    let v = parse_json(&text);
    for key in [
        "project_name",
        "provider",
        "domain",
        "namespace",
        "ci_cd",
        "certificate",
        "storage",
        "theme",
        "terraform_state",
        "digital_ocean",
        "environments",
    ] {
        assert_eq!(v[key], original[key], "{key} changed");
    }
    assert_eq!(
        v["profiles"]["dask_worker"],
        original["profiles"]["dask_worker"]
    );
    // The folded `welcome` scalar keeps its folded value.
    assert!(
        v["theme"]["jupyterhub"]["welcome"]
            .as_str()
            .unwrap()
            .starts_with("Welcome to do.qhub.dev. It is maintained by <a href=")
    );
}

#[test]
fn second_run_is_a_no_op() {
    let (dir, path, first) = upgraded_310();
    let before = listing(dir.path());
    let import_before = std::fs::read(dir.path().join(USERS_IMPORT_FILE)).unwrap();
    let outcome = upgrade_file(&path, false).expect("second upgrade succeeds");
    assert!(
        outcome.migration.changes.is_empty(),
        "{:?}",
        outcome.migration.changes
    );
    assert_eq!(outcome.migration.text, None);
    assert_eq!(outcome.backup, None);
    assert_eq!(outcome.users_import_file, None);
    assert_eq!(outcome.migration.from_version, QHUB_VERSION);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), first);
    assert_eq!(listing(dir.path()), before, "no new files");
    assert_eq!(
        std::fs::read(dir.path().join(USERS_IMPORT_FILE)).unwrap(),
        import_before
    );
    assert!(
        !dir.path()
            .join(format!("qhub-config.yaml.{QHUB_VERSION}.backup"))
            .exists()
    );
}

#[test]
fn migrate_is_idempotent_on_its_own_output() {
    for name in [V310, V040] {
        let m = migrate(&fixture(name)).expect("migrate");
        let text = m.text.expect("changes");
        let again = migrate(&text).expect("migrate again");
        assert!(again.changes.is_empty(), "{name}: {:?}", again.changes);
        assert_eq!(again.text, None, "{name}");
        assert_eq!(again.users_import, None, "{name}");
    }
}

#[test]
fn dry_run_writes_nothing() {
    let original = fixture(V310);
    let (dir, path) = setup(&original);
    let outcome = upgrade_file(&path, true).expect("dry run");
    assert!(!outcome.migration.changes.is_empty());
    assert!(outcome.migration.text.is_some());
    assert!(outcome.migration.users_import.is_some());
    assert_eq!(std::fs::read_to_string(&path).unwrap(), original);
    assert_eq!(listing(dir.path()), set(&["qhub-config.yaml"]));
    // A real run afterwards still does the whole upgrade.
    upgrade_file(&path, false).expect("real run");
    assert_eq!(listing(dir.path()).len(), 3);
}

#[test]
fn upgrade_040_adds_missing_sections_and_password() {
    let original = fixture(V040);
    let (dir, path) = setup(&original);
    let outcome = upgrade_file(&path, false).expect("0.4.0 config upgrades");
    assert_eq!(outcome.migration.from_version, "0.4.0");
    assert_eq!(outcome.users_import_file, None);
    assert_eq!(outcome.migration.users_import, None);
    assert_eq!(
        listing(dir.path()),
        set(&["qhub-config.yaml", "qhub-config.yaml.0.4.0.backup"])
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("qhub-config.yaml.0.4.0.backup")).unwrap(),
        original
    );
    let loaded = load_file(&path).unwrap_or_else(|e| panic!("upgraded 0.4.0 must load: {e}"));
    let config = loaded.config;
    assert!(config.monitoring.as_ref().is_some_and(|t| t.enabled));
    assert_eq!(
        config.argo_workflows.as_ref().map(|t| t.enabled),
        Some(default_on("argo_workflows"))
    );
    assert_eq!(
        config.kbatch.as_ref().map(|t| t.enabled),
        Some(default_on("kbatch"))
    );
    assert_eq!(
        config
            .security
            .keycloak
            .as_ref()
            .and_then(|k| k.initial_root_password.as_deref()),
        None
    );
    assert_eq!(config.kubernetes_version(), Some("1.21"));
    let v = parse_json(&std::fs::read_to_string(&path).unwrap());
    assert_eq!(v["profiles"]["jupyterlab"][0]["access"], json!("all"));
    // In a 0.4 file a missing `access` already means `all`: upgrade leaves it out.
    assert_eq!(v["profiles"]["jupyterlab"][1].get("access"), None);
    assert_eq!(
        config.profiles.jupyterlab[1].access,
        qhub_core::config::profiles::Access::All
    );
    assert_eq!(v["security"]["shared_users_group"], json!(true));
    assert_eq!(
        v["environments"],
        parse_json(&original)["environments"],
        "environments changed"
    );
}

#[test]
fn a_root_password_in_plain_text_is_kept_with_a_note_and_a_secret_reference_without() {
    // QHub 0.4's own upgrade generated one into the file; ours leaves the file free of secrets
    // but keeps what the user wrote (Keycloak was started with it).
    let original = fixture(V040).replace(
        "security:\n",
        "security:\n  keycloak:\n    initial_root_password: '0000000000001234'\n",
    );
    assert_ne!(
        original,
        fixture(V040),
        "the fixture has a `security:` line"
    );
    let m = migrate(&original).expect("migrate");
    let text = m.text.expect("changes");
    let v = parse_json(&text);
    assert_eq!(
        v["security"]["keycloak"]["initial_root_password"],
        json!("0000000000001234"),
        "{text}"
    );
    assert!(
        m.notes.iter().any(|n| n.contains("plain text")),
        "{:?}",
        m.notes
    );
    let referenced = fixture(V040).replace(
        "security:\n",
        "security:\n  keycloak:\n    initial_root_password: QHUB_SECRET_ROOT\n",
    );
    let m = migrate(&referenced).expect("migrate");
    assert!(
        !m.notes.iter().any(|n| n.contains("plain text")),
        "{:?}",
        m.notes
    );
}

/// The node at the map-key `path` in `text`.
fn node_at(text: &str, path: &[&str]) -> Node {
    let mut node = yaml::parse(text).expect("parses");
    for key in path {
        node = node
            .get(key)
            .unwrap_or_else(|| panic!("no {key} in {path:?}"))
            .clone();
    }
    node
}

#[test]
fn kubernetes_version_keeps_its_text() {
    let (_dir, _path, text) = upgraded_310();
    assert!(
        text.contains("  kubernetes_version: 1.21.5-do.0\n"),
        "{text}"
    );
    let node = node_at(&text, &["digital_ocean", "kubernetes_version"]);
    assert_eq!(node.as_str(), Some("1.21.5-do.0"));
}

#[test]
fn plain_number_like_version_keeps_its_text() {
    // `1.20` read as a float would become `1.2`.
    let text = fixture(V310).replace(
        "kubernetes_version: 1.21.5-do.0",
        "kubernetes_version: 1.20",
    );
    let m = migrate(&text).expect("migrate");
    let out = m.text.expect("changes");
    assert!(out.contains("  kubernetes_version: 1.20\n"), "{out}");
    let loaded = load_str(&out, Path::new("x")).expect("loads");
    assert_eq!(loaded.config.kubernetes_version(), Some("1.20"));
}

#[test]
fn quoted_values_stay_strings() {
    let text = fixture(V310)
        .replace(
            "kubernetes_version: 1.21.5-do.0",
            "kubernetes_version: '1.20'",
        )
        .replace("hub_title: QHub - do-pytest", "hub_title: 'true'");
    let m = migrate(&text).expect("migrate");
    let out = m.text.expect("changes");
    let version = node_at(&out, &["digital_ocean", "kubernetes_version"]);
    assert_eq!(version.as_str(), Some("1.20"));
    assert!(
        matches!(version.value, Value::Scalar(_, Style::Quoted)),
        "{out}"
    );
    let v = parse_json(&out);
    assert_eq!(v["digital_ocean"]["kubernetes_version"], json!("1.20"));
    assert_eq!(v["theme"]["jupyterhub"]["hub_title"], json!("true"));
    assert_eq!(v["theme"]["jupyterhub"]["primary_color"], json!("#4f4173"));
    assert_eq!(
        v["default_images"]["jupyterlab"],
        json!("quansight/qhub-jupyterlab:v0.3.10")
    );
    let loaded = load_str(&out, Path::new("x")).expect("loads");
    assert_eq!(loaded.config.kubernetes_version(), Some("1.20"));
}

fn assert_untouched(dir: &Path, path: &Path, original: &str) {
    assert_eq!(std::fs::read_to_string(path).unwrap(), original);
    assert_eq!(listing(dir), set(&["qhub-config.yaml"]), "nothing written");
}

#[test]
fn invalid_result_writes_nothing() {
    let original = fixture(V310).replace("domain: do.qhub.dev", "domain: not a domain!");
    let (dir, path) = setup(&original);
    let err = upgrade_file(&path, false).expect_err("bad domain must fail");
    let ConfigError::Invalid { file, report } = &err else {
        panic!("expected Invalid, got {err}");
    };
    assert_eq!(file, &path);
    assert!(
        report.errors().any(|d| d.path.to_string() == "domain"),
        "{report}"
    );
    assert_untouched(dir.path(), &path, &original);
    assert!(migrate(&original).is_err());
}

#[test]
fn min_above_max_writes_nothing() {
    let original = fixture(V310).replacen(
        "min_nodes: 1\n      max_nodes: 5",
        "min_nodes: 7\n      max_nodes: 5",
        1,
    );
    assert_ne!(original, fixture(V310));
    let (dir, path) = setup(&original);
    let err = upgrade_file(&path, false).expect_err("min > max must fail");
    assert!(matches!(err, ConfigError::Invalid { .. }), "{err}");
    assert_untouched(dir.path(), &path, &original);
}

#[test]
fn custom_authentication_is_refused_and_nothing_written() {
    let original = fixture(V310).replace("type: GitHub", "type: custom");
    let (dir, path) = setup(&original);
    let err = upgrade_file(&path, false).expect_err("custom auth must fail");
    assert!(matches!(err, ConfigError::Usage(_)), "{err}");
    assert_untouched(dir.path(), &path, &original);
}

#[test]
fn yaml_syntax_error_writes_nothing() {
    let original = format!("{}\n  bad: [unclosed\n", fixture(V310));
    let (dir, path) = setup(&original);
    let err = upgrade_file(&path, false).expect_err("syntax error must fail");
    assert!(matches!(err, ConfigError::Invalid { .. }), "{err}");
    assert_untouched(dir.path(), &path, &original);
}

#[test]
fn stale_backup_of_another_original_is_not_overwritten() {
    let original = fixture(V310);
    let (dir, path) = setup(&original);
    let backup = dir.path().join("qhub-config.yaml.0.3.10.backup");
    std::fs::write(&backup, "something else\n").unwrap();
    let err = upgrade_file(&path, false).expect_err("must refuse");
    assert!(matches!(err, ConfigError::AlreadyExists { .. }), "{err}");
    assert_eq!(
        std::fs::read_to_string(&backup).unwrap(),
        "something else\n"
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), original);
}

#[test]
fn old_scalar_ci_cd_becomes_a_section() {
    let text = fixture(V310).replace(
        "ci_cd:\n  type: github-actions\n  branch: main\n",
        "ci_cd: github-actions\n",
    );
    let m = migrate(&text).expect("migrate");
    let v = parse_json(&m.text.expect("changes"));
    assert_eq!(
        v["ci_cd"],
        json!({"type": "github-actions", "branch": "main"})
    );
}

#[test]
fn backup_stays_beside_the_config_whatever_the_old_version_says() {
    // `qhub_version` is free text in old configs; it names the backup, so it must not be able
    // to point the backup elsewhere or make it unwritable.
    let original = fixture(V310).replace("qhub_version: 0.3.10", "qhub_version: 0.3.10/../../rc1");
    let (dir, path) = setup(&original);
    let outcome = upgrade_file(&path, false).expect("upgrade");
    let backup = outcome.backup.expect("backup");
    assert_eq!(backup.parent(), Some(dir.path()), "{}", backup.display());
    assert_eq!(std::fs::read_to_string(&backup).unwrap(), original);
    assert_eq!(listing(dir.path()).len(), 3, "{:?}", listing(dir.path()));
}

/// QHub 0.4's `init` turned `cdsdashboards` on, so both fixtures have it on; qhub-rs does not
/// deploy it (an error in `validate`), so the upgrade switches it off, keeps its other keys, and
/// says why in a note citing upstream. Any other integration qhub-rs does not deploy is
/// switched off the same way.
#[test]
fn upgrade_switches_off_integrations_qhub_rs_does_not_deploy_with_a_note() {
    for name in [V310, V040] {
        let original = fixture(name);
        assert_eq!(
            parse_json(&original)["cdsdashboards"]["enabled"],
            json!(true)
        );
        let m = migrate(&original).expect("migrates");
        let text = m.text.expect("changed");
        let v = parse_json(&text);
        assert_eq!(
            v["cdsdashboards"],
            json!({"enabled": false, "cds_hide_user_named_servers": true, "cds_hide_user_dashboard_servers": false}),
            "{name}:\n{text}"
        );
        assert!(
            m.changes
                .iter()
                .any(|c| c == "switched off cdsdashboards: set cdsdashboards.enabled: false"),
            "{name}: {:?}",
            m.changes
        );
        let note = m
            .notes
            .iter()
            .find(|n| n.starts_with("cdsdashboards was enabled"))
            .unwrap_or_else(|| panic!("{name}: no note in {:?}", m.notes));
        assert!(note.contains("JupyterHub 1.x only"), "{note}");
        assert!(note.contains("nebari-dev/nebari#1854"), "{note}");
    }
    // Every other one too, and the result loads with no error.
    let mut text = fixture(V040);
    for n in NOT_BUILT {
        if n.key != "cdsdashboards" {
            text.push_str(&format!("{}:\n  enabled: true\n", n.key));
        }
    }
    let m = migrate(&text).expect("migrates");
    let upgraded = m.text.expect("changed");
    let v = parse_json(&upgraded);
    for n in NOT_BUILT {
        assert_eq!(v[n.key]["enabled"], json!(false), "{}:\n{upgraded}", n.key);
        assert!(
            m.notes
                .iter()
                .any(|note| note.starts_with(&format!("{} was enabled", n.key))),
            "{}: {:?}",
            n.key,
            m.notes
        );
    }
    let loaded = load_str(&upgraded, Path::new("qhub-config.yaml")).expect("loads");
    assert_eq!(loaded.report.errors().count(), 0, "{}", loaded.report);
}
