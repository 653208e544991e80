//! The published JSON Schema (`qhub schema`) checked by an independent validator (the
//! `jsonschema` crate): it is a valid draft 2020-12 schema, it accepts every config `qhub init`
//! writes, and it rejects what the loader rejects at the top level. Plus the drift test between
//! the schema and the keywords our structural pass understands.

use std::collections::BTreeSet;
use std::path::Path;

use qhub_core::config::init::{InitOptions, render};
use qhub_core::config::schema::{UNDERSTOOD_KEYWORDS, json_schema, keywords_used};
use qhub_core::config::{AuthenticationKind, CiKind, ProviderKind, load_str, yaml};
use serde_json::{Value as Json, json};

fn validator() -> jsonschema::Validator {
    jsonschema::options()
        .should_validate_formats(true)
        .build(json_schema())
        .unwrap_or_else(|e| panic!("schema does not compile: {e}"))
}

/// The errors `validator` finds in `instance`, as `path: message` lines.
fn errors(validator: &jsonschema::Validator, instance: &Json) -> Vec<String> {
    validator
        .iter_errors(instance)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect()
}

fn options(provider: ProviderKind, auth: AuthenticationKind, ci: CiKind) -> InitOptions {
    InitOptions {
        provider,
        project: "myqhub".into(),
        domain: "qhub.example.com".into(),
        namespace: None,
        auth,
        ci,
        kubernetes_version: None,
        region: None,
        gcp_project: Some("my-gcp-project".into()),
        root_password: Some("Sch3maTestPasswd".into()),
    }
}

/// Every config `qhub init` writes, as (label, YAML text, JSON read back from the YAML).
fn init_configs() -> Vec<(String, String, Json)> {
    let mut out = Vec::new();
    for provider in ProviderKind::ALL {
        for auth in [
            AuthenticationKind::Password,
            AuthenticationKind::GitHub,
            AuthenticationKind::Auth0,
        ] {
            for ci in [CiKind::GithubActions, CiKind::GitlabCi, CiKind::None] {
                let label = format!("{}/{}/{}", provider.as_str(), auth.as_str(), ci.as_str());
                let rendered = render(&options(provider, auth, ci));
                if provider == ProviderKind::Azure {
                    assert!(rendered.is_err(), "{label}: azure is not supported");
                    continue;
                }
                let config = rendered.unwrap_or_else(|e| panic!("{label}: {e}"));
                let text = config.to_yaml();
                let value = yaml::parse(&text)
                    .unwrap_or_else(|e| panic!("{label}: {e}\n{text}"))
                    .to_json();
                out.push((label, text, value));
            }
        }
    }
    out
}

#[test]
fn schema_is_valid_json_schema() {
    let schema = json_schema();
    assert_eq!(
        schema["$schema"],
        json!("https://json-schema.org/draft/2020-12/schema")
    );
    if let Err(e) = jsonschema::meta::validate(schema) {
        panic!(
            "schema violates its meta-schema at {}: {e}",
            e.instance_path()
        );
    }
    assert!(
        schema["properties"]
            .as_object()
            .is_some_and(|p| p.len() > 20),
        "schema has the top-level keys"
    );
    assert_eq!(schema["additionalProperties"], json!(false));
    validator();
}

#[test]
fn schema_accepts_every_init_config() {
    let validator = validator();
    let configs = init_configs();
    // 6 supported providers x 3 authentication types x 3 CI systems.
    assert_eq!(configs.len(), 6 * 3 * 3);
    for (label, text, value) in &configs {
        // The loader accepts it too, so the schema is not accepting something broken.
        load_str(text, Path::new(label)).unwrap_or_else(|e| panic!("{label}: {e}"));
        let errs = errors(&validator, value);
        assert!(
            errs.is_empty(),
            "{label}: schema rejects init's config:\n{errs:#?}\n{text}"
        );
    }
}

#[test]
fn schema_accepts_init_config_with_options() {
    let validator = validator();
    for provider in [ProviderKind::Aws, ProviderKind::Gcp, ProviderKind::Do] {
        let mut opts = options(provider, AuthenticationKind::GitHub, CiKind::GithubActions);
        opts.namespace = Some("prod".into());
        opts.kubernetes_version = Some("1.29".into());
        opts.region = Some("eu-somewhere-1".into());
        let text = render(&opts).expect("render").to_yaml();
        let value = yaml::parse(&text).expect("parse").to_json();
        assert_eq!(value["namespace"], json!("prod"));
        let errs = errors(&validator, &value);
        assert!(errs.is_empty(), "{}: {errs:#?}", provider.as_str());
    }
}

fn init_value() -> Json {
    let text = render(&options(
        ProviderKind::Do,
        AuthenticationKind::Password,
        CiKind::GithubActions,
    ))
    .expect("render")
    .to_yaml();
    yaml::parse(&text).expect("parse").to_json()
}

#[test]
fn schema_rejects_unknown_top_level_key() {
    let validator = validator();
    let mut value = init_value();
    assert!(validator.is_valid(&value), "baseline must be valid");
    value["not_a_qhub_key"] = json!(true);
    let errs = errors(&validator, &value);
    assert!(!errs.is_empty(), "unknown top-level key accepted");
    assert!(
        errs.iter().any(|e| e.contains("not_a_qhub_key")),
        "the error names the key: {errs:#?}"
    );
}

/// A change to a valid config.
type Edit = Box<dyn Fn(&mut Json)>;

#[test]
fn schema_rejects_removed_and_misspelt_keys() {
    let validator = validator();
    let cases: Vec<(&str, Edit)> = vec![
        (
            "0.3 security.users",
            Box::new(|v| v["security"]["users"] = json!({"alice": {"uid": 1000}})),
        ),
        (
            "default_images.dask_gateway",
            Box::new(|v| v["default_images"]["dask_gateway"] = json!("img:tag")),
        ),
        (
            "misspelt provider section",
            Box::new(|v| v["digital_oceans"] = v["digital_ocean"].clone()),
        ),
        (
            "unknown provider",
            Box::new(|v| v["provider"] = json!("linode")),
        ),
        (
            "custom authentication",
            Box::new(|v| v["security"]["authentication"]["type"] = json!("custom")),
        ),
        (
            "node group without instance",
            Box::new(|v| {
                v["digital_ocean"]["node_groups"]["general"]
                    .as_object_mut()
                    .unwrap()
                    .remove("instance");
            }),
        ),
        (
            "missing project_name",
            Box::new(|v| {
                v.as_object_mut().unwrap().remove("project_name");
            }),
        ),
    ];
    for (label, edit) in cases {
        let mut value = init_value();
        edit(&mut value);
        assert!(!validator.is_valid(&value), "{label} accepted");
    }
}

/// The keywords of `schema` that the structural pass does not understand and that are not
/// property or definition names.
fn not_understood(schema: &Json) -> BTreeSet<String> {
    fn names(v: &Json, out: &mut BTreeSet<String>) {
        match v {
            Json::Object(obj) => {
                for (k, child) in obj {
                    if let ("properties" | "$defs", Json::Object(m)) = (k.as_str(), child) {
                        out.extend(m.keys().cloned());
                    }
                    names(child, out);
                }
            }
            Json::Array(items) => items.iter().for_each(|i| names(i, out)),
            _ => {}
        }
    }
    let mut allowed: BTreeSet<String> = UNDERSTOOD_KEYWORDS.iter().map(|k| k.to_string()).collect();
    names(schema, &mut allowed);
    keywords_used(schema)
        .into_iter()
        .filter(|k| !allowed.contains(k))
        .collect()
}

#[test]
fn schema_uses_only_understood_keywords() {
    let unknown = not_understood(json_schema());
    assert!(
        unknown.is_empty(),
        "the schema uses keywords the structural pass ignores, so they would not be enforced: \
         {unknown:?}; teach schema::Walker about them and add them to UNDERSTOOD_KEYWORDS"
    );
    let used = keywords_used(json_schema());
    for core in [
        "properties",
        "additionalProperties",
        "required",
        "type",
        "$ref",
    ] {
        assert!(
            used.contains(core),
            "keywords_used misses `{core}`: {used:?}"
        );
    }
}

#[test]
fn drift_check_catches_a_new_keyword() {
    // The check above must be able to fail: a keyword the walker ignores is reported, while a
    // property that merely has a keyword's name is not.
    let schema = json!({
        "type": "object",
        "properties": {
            "pattern": {"type": "string", "minLength": 1},
            "items": {"type": "array", "uniqueItems": true},
        },
        "$defs": {"minimum": {"type": "integer"}},
    });
    assert_eq!(
        not_understood(&schema),
        ["minLength", "uniqueItems"]
            .into_iter()
            .map(String::from)
            .collect::<BTreeSet<_>>()
    );
}
