//! One test per validation rule of `qhub-config.yaml`: the valid side loads without an error at
//! the key, the invalid side reports the exact key path, `line:column` and message.
//!
//! Each test starts from a small valid config per provider ([`config`]) and edits numbered lines
//! ([`replace_line`]) or appends sections ([`append`]), so every expected position can be read
//! off the text: the AWS base is [`AWS_LINES`] lines long, so appended sections start at line 26.

use proptest::prelude::*;
use qhub_core::config::{Diagnostic, Loaded, Report, check_str};

/// Lines 1-9 of every base config.
fn header(provider: &str) -> String {
    format!(
        "\
project_name: demo
provider: {provider}
domain: demo.example.com
qhub_version: 0.4.5
security:
  authentication:
    type: password
  keycloak:
    realm_display_name: QHub
"
    )
}

/// Lines 10-25 of the AWS base config.
const AWS_SECTION: &str = "\
amazon_web_services:
  region: us-west-2
  kubernetes_version: \"1.29\"
  node_groups:
    general:
      instance: m5.2xlarge
      min_nodes: 1
      max_nodes: 1
    user:
      instance: m5.xlarge
      min_nodes: 0
      max_nodes: 5
    worker:
      instance: m5.xlarge
      min_nodes: 0
      max_nodes: 5
";

/// The length of [`config`]`("aws")`: sections appended to it start at line 26.
const AWS_LINES: usize = 25;

/// A minimal valid config for `provider` (lines 10.. are the provider's section).
fn config(provider: &str) -> String {
    let section = match provider {
        "aws" => AWS_SECTION,
        "gcp" => {
            "\
google_cloud_platform:
  project: my-gcp-project
  region: us-central1
  kubernetes_version: \"1.29\"
  node_groups:
    general: {instance: n1-standard-8, min_nodes: 1, max_nodes: 1}
    user: {instance: n1-standard-4, min_nodes: 0, max_nodes: 5}
    worker: {instance: n1-standard-4, min_nodes: 0, max_nodes: 5}
"
        }
        "do" => {
            "\
digital_ocean:
  region: nyc3
  kubernetes_version: \"1.29\"
  node_groups:
    general: {instance: g-8vcpu-32gb, min_nodes: 1, max_nodes: 1}
    user: {instance: g-4vcpu-16gb, min_nodes: 1, max_nodes: 5}
    worker: {instance: g-4vcpu-16gb, min_nodes: 1, max_nodes: 5}
"
        }
        "existing" | "local" => {
            return format!(
                "{}{provider}:
  node_selectors:
    general: {{key: kubernetes.io/os, value: linux}}
    user: {{key: kubernetes.io/os, value: linux}}
    worker: {{key: kubernetes.io/os, value: linux}}
",
                header(provider)
            );
        }
        "sandbox" => {
            "\
sandbox:
  kubernetes_version: \"1.29\"
  node_groups:
    general: {instance: sandbox-8cpu-32gb, min_nodes: 1, max_nodes: 1}
    user: {instance: sandbox-4cpu-16gb, min_nodes: 0, max_nodes: 5}
    worker: {instance: sandbox-4cpu-16gb, min_nodes: 0, max_nodes: 5}
"
        }
        "azure" => {
            "\
azure:
  region: Central US
"
        }
        other => panic!("no base config for provider {other}"),
    };
    format!("{}{section}", header(provider))
}

fn aws() -> String {
    config("aws")
}

/// Replaces line `n` (1-based), which must read `old`, by `new` (which may span several lines,
/// or be empty to delete the line).
#[track_caller]
fn replace_line(text: &str, n: usize, old: &str, new: &str) -> String {
    let mut lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.get(n - 1).copied(), Some(old), "line {n} of:\n{text}");
    if new.is_empty() {
        lines.remove(n - 1);
    } else {
        lines[n - 1] = new;
    }
    let mut out = lines.join("\n");
    out.push('\n');
    out
}

/// Appends top-level sections at the end.
fn append(text: &str, extra: &str) -> String {
    format!("{text}{extra}")
}

fn dump(report: &Report) -> String {
    report
        .diagnostics
        .iter()
        .map(|d| format!("  {:?} {d}\n", d.severity))
        .collect()
}

fn check(text: &str) -> Report {
    check_str(text).1
}

/// The text loads with no error at all.
#[track_caller]
fn assert_valid(text: &str) -> Loaded {
    let (loaded, report) = check_str(text);
    assert!(
        !report.has_errors(),
        "expected no errors, got:\n{}\nin:\n{text}",
        dump(&report)
    );
    loaded.expect("a config without errors loads")
}

/// No error names `path`.
#[track_caller]
fn assert_no_error_at(report: &Report, path: &str) {
    let found: Vec<&Diagnostic> = report
        .errors()
        .filter(|d| d.path.to_string() == path)
        .collect();
    assert!(
        found.is_empty(),
        "expected no error at `{path}`, got:\n{}",
        dump(report)
    );
}

/// The error at `path` whose message contains `fragment` is at `line:column`.
#[track_caller]
fn assert_error(
    report: &Report,
    path: &str,
    line: usize,
    column: usize,
    fragment: &str,
) -> Diagnostic {
    let d = report
        .errors()
        .find(|d| d.path.to_string() == path && d.message.contains(fragment))
        .unwrap_or_else(|| {
            panic!(
                "no error at `{path}` containing {fragment:?}; report:\n{}",
                dump(report)
            )
        });
    assert_eq!(
        (d.line, d.column),
        (line, column),
        "position of `{path}`: {d}"
    );
    d.clone()
}

#[track_caller]
fn assert_hint(d: &Diagnostic, fragment: &str) {
    let hint = d.hint.as_deref().unwrap_or("");
    assert!(hint.contains(fragment), "hint of {d} lacks {fragment:?}");
}

// ---------------------------------------------------------------------------------------------
// The bases themselves.

#[test]
fn every_base_config_is_valid_without_warnings() {
    for provider in ["aws", "gcp", "do", "existing", "local", "sandbox"] {
        let text = config(provider);
        let (loaded, report) = check_str(&text);
        assert!(
            report.diagnostics.is_empty(),
            "{provider}:\n{}",
            dump(&report)
        );
        let loaded = loaded.expect("loads");
        assert_eq!(loaded.config.provider.as_str(), provider);
    }
    assert_eq!(aws().lines().count(), AWS_LINES);
}

#[test]
fn enabled_integrations_that_are_not_built_stop_validation_naming_the_key() {
    use qhub_core::config::not_built::NOT_BUILT;
    // Monitoring is built: enabled, it is quiet.
    assert_valid(&append(&aws(), "monitoring:\n  enabled: true\n"));
    for n in NOT_BUILT {
        let text = append(&aws(), &format!("{}:\n  enabled: true\n", n.key));
        let report = check(&text);
        let errors: Vec<&Diagnostic> = report.errors().collect();
        assert_eq!(errors.len(), 1, "{}:\n{}", n.key, dump(&report));
        let d = errors[0];
        assert_eq!(d.path.to_string(), format!("{}.enabled", n.key));
        assert!(
            d.message.starts_with(&format!(
                "`{}` is enabled, but qhub-rs does not deploy",
                n.key
            )),
            "{d}"
        );
        assert!(d.message.contains(n.why), "{d}");
        assert_hint(d, &format!("set `{}.enabled: false`", n.key));
        // Switched off, it is quiet.
        assert_valid(&text.replace("enabled: true", "enabled: false"));
    }
    // All at once: one error each.
    let all: String = NOT_BUILT
        .iter()
        .map(|n| format!("{}:\n  enabled: true\n", n.key))
        .collect();
    assert_eq!(
        check(&append(&aws(), &all)).errors().count(),
        NOT_BUILT.len()
    );
}

// ---------------------------------------------------------------------------------------------
// Structural rules: keys and types.

#[test]
fn unknown_top_level_key_suggests_the_known_one() {
    assert_valid(&append(&aws(), "namespace: dev\n"));
    let report = check(&append(&aws(), "namspace: dev\n"));
    let d = assert_error(
        &report,
        "namspace",
        26,
        1,
        "unknown key `namspace` at the top level",
    );
    assert_hint(&d, "did you mean `namespace`?");
}

#[test]
fn unknown_key_without_a_close_match_lists_the_known_keys() {
    let report = check(&append(&aws(), "zzzzzzzz: 1\n"));
    let d = assert_error(&report, "zzzzzzzz", 26, 1, "known keys: project_name");
    assert!(d.hint.is_none(), "{d}");
}

#[test]
fn unknown_nested_key_suggests_the_known_one() {
    let text = replace_line(&aws(), 11, "  region: us-west-2", "  regoin: us-west-2");
    let report = check(&text);
    let d = assert_error(
        &report,
        "amazon_web_services.regoin",
        11,
        3,
        "unknown key `regoin` in `amazon_web_services`",
    );
    assert_hint(&d, "did you mean `region`?");
    // The misspelt key also leaves `region` missing.
    assert_error(
        &report,
        "amazon_web_services.region",
        11,
        3,
        "missing required key `region`",
    );
    assert_no_error_at(&check(&aws()), "amazon_web_services.regoin");
}

#[test]
fn missing_required_key_is_reported_at_its_mapping() {
    // In a node group: reported where the group's mapping starts.
    let text = replace_line(&aws(), 19, "      instance: m5.xlarge", "");
    let report = check(&text);
    assert_error(
        &report,
        "amazon_web_services.node_groups.user.instance",
        19,
        7,
        "missing required key `instance`",
    );
    assert_no_error_at(&report, "amazon_web_services.node_groups.worker.instance");
    // At the top level: reported at the document start.
    let text = replace_line(&aws(), 3, "domain: demo.example.com", "");
    assert_error(
        &check(&text),
        "domain",
        1,
        1,
        "missing required key `domain`",
    );
}

#[test]
fn quoted_number_is_a_type_error_with_a_hint_to_unquote() {
    assert_valid(&replace_line(
        &aws(),
        21,
        "      max_nodes: 5",
        "      max_nodes: 7",
    ));
    let text = replace_line(&aws(), 21, "      max_nodes: 5", "      max_nodes: \"5\"");
    let report = check(&text);
    let d = assert_error(
        &report,
        "amazon_web_services.node_groups.user.max_nodes",
        21,
        18,
        "expected an integer, found the string \"5\"",
    );
    assert_hint(&d, "remove the quotes");
}

#[test]
fn wrong_type_mapping_for_a_string() {
    let text = replace_line(
        &aws(),
        3,
        "domain: demo.example.com",
        "domain: {host: demo.example.com}",
    );
    assert_error(
        &check(&text),
        "domain",
        3,
        9,
        "expected a string, found a mapping",
    );
}

#[test]
fn enum_values_are_case_sensitive_with_a_suggestion() {
    let github = "    type: GitHub\n    config:\n      client_id: id\n      client_secret: secret";
    assert_valid(&replace_line(&aws(), 7, "    type: password", github));
    let text = replace_line(&aws(), 7, "    type: password", "    type: github");
    let report = check(&text);
    let d = assert_error(
        &report,
        "security.authentication.type",
        7,
        11,
        "`github` is not one of password, GitHub, Auth0",
    );
    assert_hint(&d, "did you mean `GitHub`?");
    // QHub's `custom` authenticator is not supported.
    let text = replace_line(&aws(), 7, "    type: password", "    type: custom");
    assert_error(
        &check(&text),
        "security.authentication.type",
        7,
        11,
        "`custom` is not one of",
    );
}

#[test]
fn aws_support_type_is_standard_or_extended() {
    let with = |value: &str| {
        replace_line(
            &aws(),
            12,
            "  kubernetes_version: \"1.29\"",
            &format!("  kubernetes_version: \"1.29\"\n  support_type: {value}"),
        )
    };
    let loaded = assert_valid(&with("extended"));
    assert_eq!(
        loaded
            .config
            .amazon_web_services
            .as_ref()
            .and_then(|s| s.support_type),
        Some(qhub_core::config::provider::EksSupportType::Extended)
    );
    assert_valid(&with("standard"));
    // Case-sensitive, like the other enum keys; the message lists the two values.
    assert_error(
        &check(&with("premium")),
        "amazon_web_services.support_type",
        13,
        17,
        "`premium` is not one of standard, extended",
    );
}

#[test]
fn aws_cluster_admins_are_iam_role_or_user_arns_of_the_regions_partition() {
    let with = |items: &[&str]| {
        let list: String = items.iter().map(|i| format!("\n    - {i}")).collect();
        replace_line(
            &aws(),
            12,
            "  kubernetes_version: \"1.29\"",
            &format!("  kubernetes_version: \"1.29\"\n  cluster_admins:{list}"),
        )
    };
    let loaded = assert_valid(&with(&[
        "arn:aws:iam::111122223333:role/ci-deploy",
        "arn:aws:iam::111122223333:role/teams/data/deployer",
        "arn:aws:iam::111122223333:user/alice",
    ]));
    assert_eq!(
        loaded
            .config
            .amazon_web_services
            .unwrap()
            .cluster_admins
            .len(),
        3
    );
    let report = check(&with(&[
        "arn:aws:sts::111122223333:assumed-role/ci-deploy/gha-42",
        "arn:aws-cn:iam::111122223333:role/ci",
        "not-an-arn",
        "arn:aws:iam::111122223333:user/alice",
        "arn:aws:iam::111122223333:user/alice",
    ]));
    // Lines 14.. hold the items; the value starts after `    - ` (column 7).
    let d = assert_error(
        &report,
        "amazon_web_services.cluster_admins[0]",
        14,
        7,
        "STS session",
    );
    assert_hint(&d, "`arn:aws:iam::111122223333:role/ci-deploy`");
    let d = assert_error(
        &report,
        "amazon_web_services.cluster_admins[1]",
        15,
        7,
        "partition `aws-cn`, but the cluster's region is in `aws`",
    );
    assert_hint(&d, "arn:aws:iam::");
    assert_error(
        &report,
        "amazon_web_services.cluster_admins[2]",
        16,
        7,
        "is not an IAM ARN",
    );
    assert_error(
        &report,
        "amazon_web_services.cluster_admins[4]",
        18,
        7,
        "listed twice",
    );
    assert_eq!(report.errors().count(), 4, "{}", dump(&report));
}

#[test]
fn kubernetes_version_unquoted_reads_as_the_string_written() {
    let text = replace_line(
        &aws(),
        12,
        "  kubernetes_version: \"1.29\"",
        "  kubernetes_version: 1.20",
    );
    let loaded = assert_valid(&text);
    assert_eq!(loaded.config.kubernetes_version(), Some("1.20"));
}

// ---------------------------------------------------------------------------------------------
// Node groups.

#[test]
fn min_nodes_greater_than_max_nodes() {
    assert_valid(&replace_line(
        &aws(),
        20,
        "      min_nodes: 0",
        "      min_nodes: 5",
    ));
    let text = replace_line(&aws(), 20, "      min_nodes: 0", "      min_nodes: 6");
    let report = check(&text);
    let d = assert_error(
        &report,
        "amazon_web_services.node_groups.user.min_nodes",
        20,
        18,
        "min_nodes (6) is greater than max_nodes (5)",
    );
    assert_hint(&d, "raise max_nodes");
}

#[test]
fn min_nodes_negative() {
    let text = replace_line(&aws(), 20, "      min_nodes: 0", "      min_nodes: -1");
    assert_error(
        &check(&text),
        "amazon_web_services.node_groups.user.min_nodes",
        20,
        18,
        "min_nodes must be at least 0, found -1",
    );
}

#[test]
fn empty_instance() {
    let text = replace_line(
        &aws(),
        19,
        "      instance: m5.xlarge",
        "      instance: \"\"",
    );
    assert_error(
        &check(&text),
        "amazon_web_services.node_groups.user.instance",
        19,
        17,
        "instance is empty",
    );
}

#[test]
fn empty_node_group_name() {
    // Still inside `node_groups` (indented), after `worker`.
    let group = "    \"\":\n      instance: m5.xlarge\n      min_nodes: 0\n      max_nodes: 1\n";
    let valid = group.replace("\"\"", "gpu-large");
    assert_valid(&append(&aws(), &valid));
    let report = check(&append(&aws(), group));
    assert_error(
        &report,
        "amazon_web_services.node_groups[\"\"]",
        27,
        7,
        "a node group name is empty",
    );
}

#[test]
fn missing_general_group() {
    let text = replace_line(&aws(), 14, "    general:", "    main:");
    let d = assert_error(
        &check(&text),
        "amazon_web_services.node_groups",
        14,
        5,
        "there is no `general` node group",
    );
    assert_hint(&d, "general:");
}

#[test]
fn extra_keys_pass_through_in_node_groups_profiles_and_dask_workers() {
    let group = replace_line(
        &aws(),
        17,
        "      max_nodes: 1",
        "      max_nodes: 1\n      labels: {team: data}\n      spot: true",
    );
    let loaded = assert_valid(&group);
    let general = &loaded.config.node_groups().expect("aws groups")["general"];
    assert_eq!(general.extra["spot"], serde_json::json!(true));
    let profiles = append(
        &aws(),
        "\
profiles:
  jupyterlab:
    - display_name: GPU
      kubespawner_override:
        cpu_limit: 4
        cpu_guarantee: 2
        mem_limit: 16G
        mem_guarantee: 8G
        node_selector: {cloud.google.com/gke-nodepool: gpu}
        extra_resource_limits: {nvidia.com/gpu: 1}
  dask_worker:
    gpu:
      worker_cores_limit: 4
      worker_cores: 2
      worker_memory_limit: 16G
      worker_memory: 8G
      worker_extra_pod_config: {tolerations: []}
",
    );
    assert_valid(&profiles);
    // The profile entry itself is closed: a misspelt key there is an error.
    let text = replace_line(
        &profiles,
        28,
        "    - display_name: GPU",
        "    - display_nam: GPU",
    );
    let d = assert_error(
        &check(&text),
        "profiles.jupyterlab[0].display_nam",
        28,
        7,
        "unknown key `display_nam` in `profiles.jupyterlab[0]`",
    );
    assert_hint(&d, "did you mean `display_name`?");
}

// ---------------------------------------------------------------------------------------------
// Providers.

#[test]
fn missing_provider_section() {
    let text = replace_line(&aws(), 2, "provider: aws", "provider: gcp");
    let report = check(&text);
    let d = assert_error(
        &report,
        "provider",
        2,
        11,
        "provider is `gcp` but the config has no `google_cloud_platform` section",
    );
    assert_hint(&d, "qhub init gcp");
    // The AWS section is then ignored, which is only a warning.
    assert_no_error_at(&report, "amazon_web_services");
    // The same for existing/local, whose sections have no node groups.
    let text = header("existing");
    assert_error(&check(&text), "provider", 2, 11, "no `existing` section");
}

#[test]
fn azure_is_rejected_as_not_supported() {
    let report = check(&config("azure"));
    let d = assert_error(
        &report,
        "provider",
        2,
        11,
        "provider `azure` is not supported",
    );
    assert_hint(&d, "existing");
    assert_no_error_at(&check(&aws()), "provider");
}

#[test]
fn kubernetes_version_malformed() {
    let report = check(&replace_line(
        &aws(),
        12,
        "  kubernetes_version: \"1.29\"",
        "  kubernetes_version: one.two",
    ));
    assert_error(
        &report,
        "amazon_web_services.kubernetes_version",
        12,
        23,
        "`one.two` is not a Kubernetes version",
    );
    let report = check(&replace_line(
        &aws(),
        12,
        "  kubernetes_version: \"1.29\"",
        "  kubernetes_version: PLACEHOLDER",
    ));
    let d = assert_error(
        &report,
        "amazon_web_services.kubernetes_version",
        12,
        23,
        "is not a Kubernetes version",
    );
    assert_hint(&d, "--kubernetes-version");
}

#[test]
fn kubernetes_version_do_slug_is_accepted_on_digitalocean_only() {
    let line = "  kubernetes_version: \"1.29\"";
    let slug = "  kubernetes_version: 1.33.1-do.0";
    let loaded = assert_valid(&replace_line(&config("do"), 12, line, slug));
    assert_eq!(loaded.config.kubernetes_version(), Some("1.33.1-do.0"));
    assert_error(
        &check(&replace_line(&aws(), 12, line, slug)),
        "amazon_web_services.kubernetes_version",
        12,
        23,
        "`1.33.1-do.0` is not a Kubernetes version",
    );
    assert_error(
        &check(&replace_line(&config("gcp"), 13, line, slug)),
        "google_cloud_platform.kubernetes_version",
        13,
        23,
        "`1.33.1-do.0` is not a Kubernetes version",
    );
}

#[test]
fn kubernetes_version_gke_suffix_on_gcp() {
    let line = "  kubernetes_version: \"1.29\"";
    let gke = "  kubernetes_version: 1.29.1-gke.1589018";
    assert_valid(&replace_line(&config("gcp"), 13, line, gke));
    assert_error(
        &check(&replace_line(&config("do"), 12, line, gke)),
        "digital_ocean.kubernetes_version",
        12,
        23,
        "is not a Kubernetes version",
    );
    // A suffix needs a patch version.
    assert_error(
        &check(&replace_line(
            &config("gcp"),
            13,
            line,
            "  kubernetes_version: 1.29-gke.1",
        )),
        "google_cloud_platform.kubernetes_version",
        13,
        23,
        "is not a Kubernetes version",
    );
}

#[test]
fn kubernetes_version_eks_rejects_a_patch_version() {
    let line = "  kubernetes_version: \"1.29\"";
    // GKE and DOKS take a patch version; EKS does not.
    assert_valid(&replace_line(
        &config("gcp"),
        13,
        line,
        "  kubernetes_version: 1.29.3",
    ));
    let report = check(&replace_line(
        &aws(),
        12,
        line,
        "  kubernetes_version: 1.29.3",
    ));
    let d = assert_error(
        &report,
        "amazon_web_services.kubernetes_version",
        12,
        23,
        "EKS takes a `MAJOR.MINOR` version, not `1.29.3`",
    );
    assert_hint(&d, "write `1.29`");
}

#[test]
fn existing_and_local_node_selectors_need_every_group() {
    for (provider, path) in [
        ("existing", "existing.node_selectors.worker"),
        ("local", "local.node_selectors.worker"),
    ] {
        let text = replace_line(
            &config(provider),
            14,
            "    worker: {key: kubernetes.io/os, value: linux}",
            "",
        );
        assert_error(
            &check(&text),
            path,
            12,
            5,
            "node selector `worker` is missing",
        );
        assert_no_error_at(&check(&config(provider)), path);
    }
}

// ---------------------------------------------------------------------------------------------
// Names and versions.

#[test]
fn domain_must_be_a_dns_name() {
    let line = "domain: demo.example.com";
    assert_valid(&replace_line(&aws(), 3, line, "domain: qhub.example.com."));
    let report = check(&replace_line(&aws(), 3, line, "domain: demo_example.com"));
    assert_error(&report, "domain", 3, 9, "domain is not a DNS name");
    assert_error(&report, "domain", 3, 9, "contains `_`");
    let report = check(&replace_line(
        &aws(),
        3,
        line,
        "domain: https://demo.example.com",
    ));
    assert_error(
        &report,
        "domain",
        3,
        9,
        "includes a URL scheme (`https://`)",
    );
}

#[test]
fn project_name_rules() {
    let line = "project_name: demo";
    let with = |name: &str| check(&replace_line(&aws(), 1, line, &format!("{line}{name}")));
    // 16 characters is the most allowed.
    assert_valid(&replace_line(
        &aws(),
        1,
        line,
        "project_name: my-project_abcde",
    ));
    assert_error(
        &with("-project_abcd"),
        "project_name",
        1,
        15,
        "has 17 characters; at most 16",
    );
    assert_error(&with("1"), "project_name", 1, 15, "contains `1`");
    let leading = check(&replace_line(&aws(), 1, line, "project_name: -demo"));
    assert_error(
        &leading,
        "project_name",
        1,
        15,
        "must start and end with a letter",
    );
    assert_error(
        &with("-"),
        "project_name",
        1,
        15,
        "must start and end with a letter",
    );
}

#[test]
fn project_name_must_not_start_with_aws_on_aws() {
    let line = "project_name: demo";
    let aws_named = |base: &str| replace_line(base, 1, line, "project_name: awsdemo");
    let d = assert_error(
        &check(&aws_named(&aws())),
        "project_name",
        1,
        15,
        "starts with `aws`",
    );
    assert_hint(&d, "does not start with `aws`");
    // Only AWS reserves the prefix.
    assert_valid(&aws_named(&config("gcp")));
}

#[test]
fn namespace_rules() {
    let line = "qhub_version: 0.4.5";
    let with = |ns: &str| replace_line(&aws(), 4, line, &format!("namespace: {ns}\n{line}"));
    assert_valid(&with("staging-env"));
    // QHub accepted these; the API server refuses a Namespace named so (not an RFC 1123 label).
    let d = assert_error(
        &check(&with("Data_Sci")),
        "namespace",
        4,
        12,
        "`Data_Sci` contains `D`",
    );
    assert_hint(&d, "write `namespace: data-sci`");
    let d = assert_error(
        &check(&with("staging_env")),
        "namespace",
        4,
        12,
        "contains `_`",
    );
    assert_hint(&d, "write `namespace: staging-env`");
    // The cluster's own namespaces are not the platform's.
    for reserved in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        let d = assert_error(
            &check(&with(reserved)),
            "namespace",
            4,
            12,
            "the cluster keeps for itself",
        );
        assert_hint(&d, "such as `namespace: dev`");
    }
    assert_error(
        &check(&with("dev1")),
        "namespace",
        4,
        12,
        "namespace `dev1` contains `1`",
    );
    assert_error(
        &check(&with("dev-")),
        "namespace",
        4,
        12,
        "must start and end with a letter",
    );
}

#[test]
fn qhub_version_rules() {
    let line = "qhub_version: 0.4.5";
    assert_valid(&replace_line(&aws(), 4, line, "qhub_version: 0.4.0"));
    assert_valid(&replace_line(&aws(), 4, line, "qhub_version: 0.4"));
    // Missing: reported at the document start, with the upgrade hint.
    let d = assert_error(
        &check(&replace_line(&aws(), 4, line, "")),
        "qhub_version",
        1,
        1,
        "`qhub_version` is missing",
    );
    assert_hint(&d, "qhub upgrade");
    let d = assert_error(
        &check(&replace_line(&aws(), 4, line, "qhub_version: 0.3.14")),
        "qhub_version",
        4,
        15,
        "written for QHub 0.3.14",
    );
    assert_hint(&d, "qhub upgrade");
    for newer in ["0.5.0", "2022.10.1"] {
        let report = check(&replace_line(
            &aws(),
            4,
            line,
            &format!("qhub_version: {newer}"),
        ));
        assert_error(
            &report,
            "qhub_version",
            4,
            15,
            "newer than the 0.4.x format",
        );
    }
    assert_error(
        &check(&replace_line(&aws(), 4, line, "qhub_version: latest")),
        "qhub_version",
        4,
        15,
        "`latest` is not a version number",
    );
}

// ---------------------------------------------------------------------------------------------
// Certificate.

#[test]
fn lets_encrypt_needs_acme_email() {
    let cert = "certificate:\n  type: lets-encrypt\n";
    assert_valid(&append(
        &aws(),
        &format!("{cert}  acme_email: ops@example.com\n"),
    ));
    let d = assert_error(
        &check(&append(&aws(), cert)),
        "certificate.acme_email",
        27,
        3,
        "certificate type `lets-encrypt` needs `acme_email`",
    );
    assert_hint(&d, "acme_email:");
}

#[test]
fn lets_encrypt_acme_email_must_be_an_address() {
    let cert = "certificate:\n  type: lets-encrypt\n  acme_email: nobody\n";
    assert_error(
        &check(&append(&aws(), cert)),
        "certificate.acme_email",
        28,
        15,
        "`nobody` is not an e-mail address",
    );
    let cert = "certificate:\n  type: lets-encrypt\n  acme_email: ops@localhost\n";
    assert_error(
        &check(&append(&aws(), cert)),
        "certificate.acme_email",
        28,
        15,
        "has no dot",
    );
}

#[test]
fn existing_certificate_needs_secret_name() {
    let cert = "certificate:\n  type: existing\n";
    assert_valid(&append(&aws(), &format!("{cert}  secret_name: qhub-tls\n")));
    assert_error(
        &check(&append(&aws(), cert)),
        "certificate.secret_name",
        27,
        3,
        "certificate type `existing` needs `secret_name`",
    );
}

// ---------------------------------------------------------------------------------------------
// Security.

const OAUTH: &str = "    config:\n      client_id: id\n      client_secret: secret";

#[test]
fn github_auth_needs_config() {
    let line = "    type: password";
    assert_valid(&replace_line(
        &aws(),
        7,
        line,
        &format!("    type: GitHub\n{OAUTH}"),
    ));
    let d = assert_error(
        &check(&replace_line(&aws(), 7, line, "    type: GitHub")),
        "security.authentication.config",
        7,
        5,
        "`GitHub` authentication needs `config` with `client_id` and `client_secret`",
    );
    assert_hint(&d, "QHUB_SECRET_");
}

#[test]
fn auth0_needs_auth0_subdomain() {
    let line = "    type: password";
    assert_valid(&replace_line(
        &aws(),
        7,
        line,
        &format!("    type: Auth0\n{OAUTH}\n      auth0_subdomain: myorg.auth0.com"),
    ));
    assert_error(
        &check(&replace_line(
            &aws(),
            7,
            line,
            &format!("    type: Auth0\n{OAUTH}"),
        )),
        "security.authentication.config.auth0_subdomain",
        9,
        7,
        "Auth0 authentication needs `auth0_subdomain`",
    );
}

#[test]
fn password_auth_takes_no_config() {
    let line = "    type: password";
    let report = check(&replace_line(&aws(), 7, line, &format!("{line}\n{OAUTH}")));
    let d = assert_error(
        &report,
        "security.authentication.config",
        9,
        7,
        "password authentication takes no `config`",
    );
    assert_hint(&d, "remove `config`");
}

#[test]
fn security_users_and_groups_of_qhub_0_3_are_rejected_with_an_upgrade_hint() {
    let line = "    realm_display_name: QHub";
    let text = replace_line(
        &aws(),
        9,
        line,
        &format!(
            "{line}\n  users:\n    alice:\n      uid: 1000\n  groups:\n    admin:\n      gid: 100"
        ),
    );
    let report = check(&text);
    let d = assert_error(
        &report,
        "security.users",
        10,
        3,
        "unknown key `users` in `security`",
    );
    assert_hint(&d, "qhub upgrade");
    let d = assert_error(
        &report,
        "security.groups",
        13,
        3,
        "unknown key `groups` in `security`",
    );
    assert_hint(&d, "qhub-users-import.json");
}

// ---------------------------------------------------------------------------------------------
// Profiles.

/// Lines 26-39 when appended to the AWS base.
const PROFILES: &str = "\
profiles:
  jupyterlab:
    - display_name: Small
      kubespawner_override:
        cpu_limit: 2
        cpu_guarantee: 1
        mem_limit: 8G
        mem_guarantee: 4G
  dask_worker:
    Small Worker:
      worker_cores_limit: 2
      worker_cores: 1
      worker_memory_limit: 8G
      worker_memory: 4G
";

fn with_profiles() -> String {
    append(&aws(), PROFILES)
}

#[test]
fn profiles_base_is_valid() {
    let loaded = assert_valid(&with_profiles());
    assert_eq!(loaded.config.profiles.jupyterlab.len(), 1);
    assert_eq!(with_profiles().lines().count(), AWS_LINES + 14);
}

#[test]
fn two_default_profiles() {
    let second = concat!(
        "    - display_name: Large\n",
        "      default: true\n",
        "      kubespawner_override: {cpu_limit: 4, cpu_guarantee: 2, mem_limit: 16G, mem_guarantee: 8G}",
    );
    let one_default = replace_line(
        &with_profiles(),
        28,
        "    - display_name: Small",
        "    - display_name: Small\n      default: false",
    );
    let one_default = replace_line(
        &one_default,
        34,
        "        mem_guarantee: 4G",
        &format!("        mem_guarantee: 4G\n{second}"),
    );
    assert_valid(&one_default);
    let two = replace_line(
        &one_default,
        29,
        "      default: false",
        "      default: true",
    );
    let d = assert_error(
        &check(&two),
        "profiles.jupyterlab[1].default",
        36,
        16,
        "a second default profile (profiles.jupyterlab[0] is already the default)",
    );
    assert_hint(&d, "one profile only");
}

#[test]
fn users_and_groups_need_access_yaml() {
    let line = "    - display_name: Small";
    let with = |extra: &str| replace_line(&with_profiles(), 28, line, &format!("{line}\n{extra}"));
    assert_valid(&with(
        "      access: yaml\n      users: [alice]\n      groups: [admin]",
    ));
    let report = check(&with("      users: [alice]\n      groups: [admin]"));
    let d = assert_error(
        &report,
        "profiles.jupyterlab[0].users",
        29,
        14,
        "`users` is only used with `access: yaml`",
    );
    assert_hint(&d, "access: yaml");
    assert_error(
        &report,
        "profiles.jupyterlab[0].groups",
        30,
        15,
        "`groups` is only used with `access: yaml`",
    );
    let report = check(&with("      access: keycloak\n      users: [alice]"));
    assert_error(
        &report,
        "profiles.jupyterlab[0].users",
        30,
        14,
        "only used with `access: yaml`",
    );
}

#[test]
fn kubespawner_cpu_quantities() {
    let line = "        cpu_limit: 2";
    let millicores = replace_line(
        &with_profiles(),
        31,
        "        cpu_guarantee: 1",
        "        cpu_guarantee: 500m",
    );
    assert_valid(&millicores);
    let report = check(&replace_line(
        &with_profiles(),
        30,
        line,
        "        cpu_limit: lots",
    ));
    let d = assert_error(
        &report,
        "profiles.jupyterlab[0].kubespawner_override.cpu_limit",
        30,
        20,
        "cpu_limit: `lots` is not a quantity",
    );
    assert_hint(&d, "millicores");
    let report = check(&replace_line(
        &with_profiles(),
        31,
        "        cpu_guarantee: 1",
        "        cpu_guarantee: 3",
    ));
    assert_error(
        &report,
        "profiles.jupyterlab[0].kubespawner_override.cpu_guarantee",
        31,
        24,
        "cpu_guarantee (3) is greater than cpu_limit (2)",
    );
}

#[test]
fn kubespawner_memory_quantities() {
    let report = check(&replace_line(
        &with_profiles(),
        32,
        "        mem_limit: 8G",
        "        mem_limit: 8 GB",
    ));
    let d = assert_error(
        &report,
        "profiles.jupyterlab[0].kubespawner_override.mem_limit",
        32,
        20,
        "mem_limit: `8 GB` is not a quantity",
    );
    assert_hint(&d, "512Mi");
    let report = check(&replace_line(
        &with_profiles(),
        33,
        "        mem_guarantee: 4G",
        "        mem_guarantee: 16G",
    ));
    assert_error(
        &report,
        "profiles.jupyterlab[0].kubespawner_override.mem_guarantee",
        33,
        24,
        "mem_guarantee (16G) is greater than mem_limit (8G)",
    );
    // Units are compared, not text: 7.5Gi (8.05e9 bytes) is above 8G (8e9 bytes).
    let report = check(&replace_line(
        &with_profiles(),
        33,
        "        mem_guarantee: 4G",
        "        mem_guarantee: 7.5Gi",
    ));
    assert_error(
        &report,
        "profiles.jupyterlab[0].kubespawner_override.mem_guarantee",
        33,
        24,
        "greater than mem_limit",
    );
    assert_valid(&replace_line(
        &with_profiles(),
        33,
        "        mem_guarantee: 4G",
        "        mem_guarantee: 7Gi",
    ));
}

#[test]
fn dask_worker_quantities() {
    let path = "profiles.dask_worker[\"Small Worker\"]";
    let report = check(&replace_line(
        &with_profiles(),
        37,
        "      worker_cores: 1",
        "      worker_cores: 3",
    ));
    assert_error(
        &report,
        &format!("{path}.worker_cores"),
        37,
        21,
        "worker_cores (3) is greater than worker_cores_limit (2)",
    );
    let report = check(&replace_line(
        &with_profiles(),
        38,
        "      worker_memory_limit: 8G",
        "      worker_memory_limit: lots",
    ));
    assert_error(
        &report,
        &format!("{path}.worker_memory_limit"),
        38,
        28,
        "worker_memory_limit: `lots` is not a quantity",
    );
    let report = check(&replace_line(
        &with_profiles(),
        39,
        "      worker_memory: 4G",
        "      worker_memory: 16G",
    ));
    assert_error(
        &report,
        &format!("{path}.worker_memory"),
        39,
        22,
        "worker_memory (16G) is greater than worker_memory_limit (8G)",
    );
}

// ---------------------------------------------------------------------------------------------
// Images, storage and the external registry.

#[test]
fn image_references() {
    // A registry with a port (QHub 0.4.5 crashed on it).
    let loaded = assert_valid(&append(
        &aws(),
        "default_images:\n  jupyterlab: host:5000/img:tag\n",
    ));
    assert_eq!(loaded.config.default_images.jupyterlab, "host:5000/img:tag");
    let report = check(&append(
        &aws(),
        "default_images:\n  jupyterlab: quansight/JupyterLab:v1\n",
    ));
    let d = assert_error(
        &report,
        "default_images.jupyterlab",
        27,
        15,
        "not an image reference",
    );
    assert_hint(&d, "registry[:port]");
    let report = check(&append(
        &aws(),
        "default_images:\n  dask_worker: host:99999/img:tag\n",
    ));
    assert_error(
        &report,
        "default_images.dask_worker",
        27,
        16,
        "registry port `99999` is not a port number",
    );
    // In a profile.
    let line = "        mem_guarantee: 4G";
    assert_valid(&replace_line(
        &with_profiles(),
        33,
        line,
        &format!("{line}\n        image: registry.example.com:5000/team/lab:2024.1"),
    ));
    assert_error(
        &check(&replace_line(
            &with_profiles(),
            33,
            line,
            &format!("{line}\n        image: \"lab:-bad\""),
        )),
        "profiles.jupyterlab[0].kubespawner_override.image",
        34,
        16,
        "tag `-bad`",
    );
}

#[test]
fn external_container_reg_enabled_needs_every_field() {
    let full = "\
external_container_reg:
  enabled: true
  access_key_id: AKIAEXAMPLE
  secret_access_key: example-secret
  extcr_account: \"123456789012\"
  extcr_region: us-west-2
";
    assert_valid(&append(&aws(), full));
    assert_valid(&append(
        &aws(),
        "external_container_reg:\n  enabled: false\n",
    ));
    let blank = replace_line(
        &append(&aws(), full),
        29,
        "  secret_access_key: example-secret",
        "  secret_access_key: \"  \"",
    );
    let report = check(&blank);
    assert_error(
        &report,
        "external_container_reg.secret_access_key",
        29,
        22,
        "`secret_access_key` is required when external_container_reg is enabled",
    );
    assert_no_error_at(&report, "external_container_reg.access_key_id");
    let report = check(&append(
        &aws(),
        "external_container_reg:\n  enabled: true\n",
    ));
    for key in [
        "access_key_id",
        "secret_access_key",
        "extcr_account",
        "extcr_region",
    ] {
        assert_error(
            &report,
            &format!("external_container_reg.{key}"),
            27,
            3,
            "is required when external_container_reg is enabled",
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Environments and extensions.

#[test]
fn environment_keys_are_yaml_file_names() {
    let env = "environments:\n  environment-web.yaml:\n    name: web\n    dependencies: [python]\n";
    assert_valid(&append(&aws(), env));
    let report = check(&append(
        &aws(),
        &env.replace("environment-web.yaml", "environment-web"),
    ));
    let d = assert_error(
        &report,
        "environments.environment-web",
        28,
        5,
        "environment key `environment-web` must be a file name ending in `.yaml`",
    );
    assert_hint(&d, "environment-web.yaml");
}

#[test]
fn environment_names_are_unique() {
    let envs = "\
environments:
  environment-a.yaml:
    name: analysis
    dependencies: [python]
  environment-b.yaml:
    name: analysis
    dependencies: [python, {pip: [requests]}]
";
    let report = check(&append(&aws(), envs));
    assert_error(
        &report,
        "environments[\"environment-b.yaml\"].name",
        31,
        11,
        "environment name `analysis` is also used by `environment-a.yaml`",
    );
    assert_no_error_at(&report, "environments[\"environment-a.yaml\"].name");
    assert_valid(&append(
        &aws(),
        &envs.replacen("name: analysis", "name: other", 1),
    ));
}

#[test]
fn environment_dependencies_must_not_be_empty() {
    let env = "environments:\n  environment-web.yaml:\n    name: web\n    dependencies: []\n";
    assert_error(
        &check(&append(&aws(), env)),
        "environments[\"environment-web.yaml\"].dependencies",
        29,
        19,
        "an environment needs at least one dependency",
    );
}

#[test]
fn tf_extensions_urlslugs_are_unique() {
    let exts = "\
tf_extensions:
  - name: one
    image: nginx:1.25
    urlslug: tools
  - name: two
    image: nginx:1.25
    urlslug: /tools/
";
    let report = check(&append(&aws(), exts));
    assert_error(
        &report,
        "tf_extensions[1].urlslug",
        32,
        14,
        "urlslug `tools` is also used by tf_extensions[0]",
    );
    assert_valid(&append(&aws(), &exts.replace("/tools/", "other")));
}

#[test]
fn tf_extension_names_are_dns_labels() {
    // The name becomes a Kubernetes Service name: an RFC 1035 label (lowercase, no dots).
    let ext = |name: &str| {
        append(
            &aws(),
            &format!(
                "tf_extensions:\n  - name: {name}\n    image: nginx:1.25\n    urlslug: tools\n"
            ),
        )
    };
    assert_valid(&ext("my-tool2"));
    for bad in ["my.tool", "MyTool", "2tool", "my_tool"] {
        assert_error(
            &check(&ext(bad)),
            "tf_extensions[0].name",
            27,
            11,
            "extension name must be a DNS label",
        );
    }
}

#[test]
fn a_tf_extension_urlslug_that_clashes_with_a_platform_route_names_both() {
    // The platform's paths come from the components' declared routes (Keycloak's `/auth`,
    // Grafana's `/monitoring` even while monitoring is off, JupyterHub's `/hub` under its
    // catch-all): the same prefix, one under it, or one above it is refused.
    let ext = |slug: &str| {
        append(
            &aws(),
            &format!(
                "tf_extensions:\n  - name: my-tool\n    image: nginx:1.25\n    urlslug: {slug}\n"
            ),
        )
    };
    for (slug, taken) in [
        ("auth", "`/auth` (keycloak)"),
        ("/hub/", "`/hub` (jupyterhub)"),
        ("user", "`/user` (jupyterhub)"),
        ("services/kbatch", "`/services` (jupyterhub)"),
        ("monitoring", "`/monitoring` (monitoring)"),
        ("conda-store/x", "`/conda-store` (conda-store)"),
        ("gateway", "`/gateway` (dask-gateway)"),
        ("oauth2", "`/oauth2` (forward-auth)"),
    ] {
        let slash = slug.trim_matches('/');
        assert_error(
            &check(&ext(slug)),
            "tf_extensions[0].urlslug",
            29,
            14,
            &format!("extension `my-tool` at `/{slash}` clashes with the platform route {taken}"),
        );
    }
    // A prefix that only shares letters is not a clash.
    assert_valid(&ext("authors"));
    assert_valid(&ext("tools/hub"));
}

// ---------------------------------------------------------------------------------------------
// YAML syntax.

#[test]
fn duplicate_yaml_keys_are_rejected() {
    let line = "  region: us-west-2";
    let text = replace_line(&aws(), 11, line, &format!("{line}\n  region: us-east-1"));
    let report = check(&text);
    assert_error(
        &report,
        "",
        12,
        3,
        "duplicate key `region` (first defined at 11:3)",
    );
    let report = check(&append(&aws(), "domain: other.example.com\n"));
    assert_error(
        &report,
        "",
        26,
        1,
        "duplicate key `domain` (first defined at 3:1)",
    );
}

#[test]
fn yaml_syntax_error_has_a_position() {
    let text = replace_line(
        &aws(),
        3,
        "domain: demo.example.com",
        "domain: [demo.example.com",
    );
    let (loaded, report) = check_str(&text);
    assert!(loaded.is_none());
    assert_eq!(report.errors().count(), 1, "{}", dump(&report));
    let d = report.errors().next().expect("one error");
    assert!(d.message.starts_with("YAML syntax error"), "{d}");
    assert_eq!(d.path.to_string(), "");
    assert_eq!((d.line, d.column), (4, 13), "{d}");
}

// ---------------------------------------------------------------------------------------------
// One run reports everything.

#[test]
fn every_error_is_reported_in_one_run() {
    let text = replace_line(
        &with_profiles(),
        1,
        "project_name: demo",
        "project_name: demo1",
    );
    let text = replace_line(&text, 7, "    type: password", "    type: github");
    let text = replace_line(&text, 20, "      min_nodes: 0", "      min_nodes: 6");
    let text = replace_line(
        &text,
        31,
        "        cpu_guarantee: 1",
        "        cpu_guarantee: 3",
    );
    let text = append(
        &text,
        "environments:\n  environment-web.yaml:\n    name: web\n    dependencies: []\n",
    );
    let (loaded, report) = check_str(&text);
    assert!(loaded.is_none());
    assert_error(&report, "project_name", 1, 15, "contains `1`");
    assert_error(&report, "security.authentication.type", 7, 11, "`github`");
    assert_error(
        &report,
        "amazon_web_services.node_groups.user.min_nodes",
        20,
        18,
        "greater than max_nodes",
    );
    assert_error(
        &report,
        "profiles.jupyterlab[0].kubespawner_override.cpu_guarantee",
        31,
        24,
        "greater than cpu_limit",
    );
    assert_error(
        &report,
        "environments[\"environment-web.yaml\"].dependencies",
        43,
        19,
        "at least one dependency",
    );
    assert_eq!(report.errors().count(), 5, "{}", dump(&report));
    // In document order.
    let positions: Vec<(usize, usize)> = report.errors().map(|d| (d.line, d.column)).collect();
    let mut sorted = positions.clone();
    sorted.sort();
    assert_eq!(positions, sorted);
}

proptest! {
    #![proptest_config(qhub_tests::proptest_config(256))]

    /// `min_nodes <= max_nodes` is exactly the rule, for any counts.
    #[test]
    fn node_count_rule_holds_for_any_counts(min in 0u32..1000, max in 1u32..1000) {
        let text = replace_line(&aws(), 20, "      min_nodes: 0", &format!("      min_nodes: {min}"));
        let text = replace_line(&text, 21, "      max_nodes: 5", &format!("      max_nodes: {max}"));
        let report = check(&text);
        let flagged = report
            .errors()
            .any(|d| d.path.to_string() == "amazon_web_services.node_groups.user.min_nodes");
        prop_assert_eq!(flagged, min > max, "{}", dump(&report));
        prop_assert_eq!(report.has_errors(), min > max);
    }
}

#[test]
fn a_root_password_in_plain_text_is_a_warning_and_a_secret_reference_or_none_is_not() {
    let line = "    realm_display_name: QHub";
    let warnings = |text: &str| -> Vec<String> {
        let report = check(text);
        assert!(!report.has_errors(), "{}", dump(&report));
        report
            .warnings()
            .map(|d| {
                format!(
                    "{} {} {}",
                    d.path,
                    d.message,
                    d.hint.as_deref().unwrap_or("")
                )
            })
            .collect()
    };
    let plain = replace_line(&aws(), 9, line, "    initial_root_password: fixed-password");
    let found = warnings(&plain);
    assert!(
        found.iter().any(
            |w| w.starts_with("security.keycloak.initial_root_password ")
                && w.contains("plain text")
                && w.contains("qhub secrets show keycloak-admin")
        ),
        "{found:#?}"
    );
    // QHub compatibility: the config still loads and keeps the password.
    let loaded = assert_valid(&plain);
    assert_eq!(
        loaded
            .config
            .security
            .keycloak
            .as_ref()
            .and_then(|k| k.initial_root_password.as_deref()),
        Some("fixed-password")
    );
    let referenced = replace_line(
        &aws(),
        9,
        line,
        "    initial_root_password: QHUB_SECRET_ROOT_PASSWORD",
    );
    assert!(
        !warnings(&referenced)
            .iter()
            .any(|w| w.contains("plain text")),
        "{:#?}",
        warnings(&referenced)
    );
    assert!(warnings(&aws()).is_empty(), "{:#?}", warnings(&aws()));
}
