//! Golden files of `qhub init`: the config written for each provider (and each identity provider
//! for one of them), with no root password (the file goes into version control; a deploy
//! generates the password into a Secret). Each must load with no
//! error, and its text is snapshotted so a change to what `init` writes shows up in review.

use qhub_core::config::init::{self, InitOptions};
use qhub_core::config::{
    AuthenticationKind, CiKind, ConfigError, DEFAULT_FILE, ProviderKind, check_str,
};

fn options(provider: ProviderKind) -> InitOptions {
    InitOptions {
        provider,
        project: "demo".into(),
        domain: "demo.example.com".into(),
        namespace: None,
        auth: AuthenticationKind::Password,
        ci: CiKind::GithubActions,
        kubernetes_version: None,
        region: None,
        gcp_project: (provider == ProviderKind::Gcp).then(|| "my-gcp-project".to_string()),
        root_password: None,
    }
}

/// Renders, checks that the text loads without errors (and, with password login, without
/// warnings) and that it reads back as the same config; returns the text.
#[track_caller]
fn rendered(opts: &InitOptions) -> String {
    let config = init::render(opts).expect("init renders");
    let yaml = config.to_yaml();
    let (loaded, report) = check_str(&yaml);
    assert!(!report.has_errors(), "{report}\nin:\n{yaml}");
    if opts.auth == AuthenticationKind::Password {
        // No warning at all: every service `init` turns on is deployed (the ones qhub-rs does
        // not deploy are written off, since enabling them is an error).
        assert!(report.diagnostics.is_empty(), "{report}\nin:\n{yaml}");
    }
    let loaded = loaded.expect("loads");
    assert_eq!(
        loaded.config, config,
        "the YAML reads back as what was rendered"
    );
    assert_eq!(
        loaded
            .config
            .security
            .keycloak
            .as_ref()
            .and_then(|k| k.initial_root_password.as_deref()),
        None,
        "init writes no secret into the config"
    );
    yaml
}

#[test]
fn init_aws() {
    insta::assert_snapshot!(rendered(&options(ProviderKind::Aws)));
}

#[test]
fn init_gcp() {
    insta::assert_snapshot!(rendered(&options(ProviderKind::Gcp)));
}

#[test]
fn init_do() {
    insta::assert_snapshot!(rendered(&options(ProviderKind::Do)));
}

#[test]
fn init_existing() {
    insta::assert_snapshot!(rendered(&options(ProviderKind::Existing)));
}

#[test]
fn init_local() {
    insta::assert_snapshot!(rendered(&options(ProviderKind::Local)));
}

#[test]
fn init_sandbox() {
    insta::assert_snapshot!(rendered(&options(ProviderKind::Sandbox)));
}

#[test]
fn init_aws_github() {
    let opts = InitOptions {
        auth: AuthenticationKind::GitHub,
        ..options(ProviderKind::Aws)
    };
    insta::assert_snapshot!(rendered(&opts));
}

#[test]
fn init_aws_auth0() {
    let opts = InitOptions {
        auth: AuthenticationKind::Auth0,
        ..options(ProviderKind::Aws)
    };
    insta::assert_snapshot!(rendered(&opts));
}

#[test]
fn init_uses_the_options_given() {
    let opts = InitOptions {
        namespace: Some("staging".into()),
        ci: CiKind::None,
        kubernetes_version: Some("1.33.1-do.0".into()),
        region: Some("ams3".into()),
        ..options(ProviderKind::Do)
    };
    let yaml = rendered(&opts);
    let config = check_str(&yaml).0.expect("loads").config;
    assert_eq!(config.namespace, "staging");
    assert_eq!(config.ci_cd, None);
    assert_eq!(config.kubernetes_version(), Some("1.33.1-do.0"));
    assert_eq!(
        config.digital_ocean.as_ref().map(|d| d.region.as_str()),
        Some("ams3")
    );
}

#[test]
fn init_rejects_azure_and_gcp_without_a_project() {
    assert!(matches!(
        init::render(&options(ProviderKind::Azure)),
        Err(ConfigError::Usage(_))
    ));
    let opts = InitOptions {
        gcp_project: None,
        ..options(ProviderKind::Gcp)
    };
    match init::render(&opts) {
        Err(ConfigError::Usage(message)) => assert!(message.contains("--gcp-project"), "{message}"),
        other => panic!("expected a usage error, got {other:?}"),
    }
}

#[test]
fn write_creates_the_file_it_rendered() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(DEFAULT_FILE);
    let opts = options(ProviderKind::Sandbox);
    let config = init::write(&opts, &path).expect("writes");
    let text = std::fs::read_to_string(&path).expect("reads back");
    assert_eq!(text, config.to_yaml());
    assert_eq!(text, rendered(&opts));
}

#[test]
fn write_refuses_to_overwrite_and_leaves_the_file_unchanged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(DEFAULT_FILE);
    let original = "# my hand-edited config\nproject_name: mine\n";
    std::fs::write(&path, original).expect("writes fixture");
    match init::write(&options(ProviderKind::Aws), &path) {
        Err(ConfigError::AlreadyExists { path: p }) => assert_eq!(p, path),
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    assert_eq!(std::fs::read_to_string(&path).expect("reads"), original);
    let entries = std::fs::read_dir(dir.path()).expect("lists").count();
    assert_eq!(entries, 1, "nothing else was written");
}

#[test]
fn write_rejects_an_invalid_project_name_and_writes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(DEFAULT_FILE);
    let opts = InitOptions {
        project: "1-bad".into(),
        ..options(ProviderKind::Aws)
    };
    match init::write(&opts, &path) {
        Err(ConfigError::Invalid { report, .. }) => assert!(
            report
                .errors()
                .any(|d| d.path.to_string() == "project_name"),
            "{report}"
        ),
        other => panic!("expected Invalid, got {other:?}"),
    }
    assert!(!path.exists());
}
