//! `qhub` on the `aws` provider against moto (`moto_server`, PyPI `moto[server]`), driving the
//! real binary as a user would: `init`, `validate`, `plan`, `deploy`, `status` and `destroy` of
//! the infrastructure stage, deploys and destroys SIGKILLed at random moments and re-run, and
//! what exists counted straight from moto through the AWS SDK, not through qhub.
//!
//! The moto binary comes from `$QHUB_MOTO_SERVER` or `<workspace>/.venv/bin/moto_server`
//! (`scripts/test` installs it). Without it these tests fail, loudly: they never pass silently.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Instant;

use common::{code, describe, json_stdout, stderr, stdout};
use qhub_core::provider::Ownership;
use qhub_tests::moto::{Census, Moto, census};
use serde_json::Value;

const CONFIG: &str = "qhub-config.yaml";

/// The secret access key every `qhub` run gets: distinctive, so that finding it in any output
/// means it leaked.
const SECRET: &str = "qhubTestSecret/ABCDEF123";
const ACCESS_KEY: &str = "AKIAQHUBTESTKEY00001";

/// The infrastructure resources of the config `qhub init aws` writes, as `qhub plan` names them.
const INFRA: [&str; 15] = [
    "efs/demo-dev-shared",
    "efs_mount_target/demo-dev-shared-0",
    "efs_mount_target/demo-dev-shared-1",
    "eks_cluster/demo-dev",
    "iam_role/demo-dev-cluster",
    "iam_role/demo-dev-node",
    "internet_gateway/demo-dev",
    "node_group/demo-dev-general",
    "node_group/demo-dev-user",
    "node_group/demo-dev-worker",
    "route_table/demo-dev",
    "security_group/demo-dev",
    "subnet/demo-dev-subnet-0",
    "subnet/demo-dev-subnet-1",
    "vpc/demo-dev",
];

/// What a full deploy leaves in moto, counted by kind: exactly one of everything.
fn deployed() -> BTreeMap<&'static str, usize> {
    BTreeMap::from([
        ("efs", 1),
        ("efs_mount_target", 2),
        ("eks_cluster", 1),
        ("iam_role", 2),
        ("internet_gateway", 1),
        ("node_group", 3),
        ("route_table", 1),
        ("security_group", 1),
        ("subnet", 2),
        ("vpc", 1),
    ])
}

/// A deployment directory written by `qhub init aws`, and a moto of its own.
struct Aws {
    moto: Moto,
    dir: tempfile::TempDir,
    /// What moto holds that is not ours, before anything was deployed (its default VPC, …).
    baseline: BTreeMap<&'static str, usize>,
}

impl Aws {
    fn new() -> Self {
        let moto = Moto::start();
        let dir = tempfile::tempdir().expect("tempdir");
        let mut aws = Self {
            moto,
            dir,
            baseline: BTreeMap::new(),
        };
        aws.ok(&[
            "init",
            "aws",
            "--project",
            "demo",
            "--domain",
            "demo.example.com",
            "--ci-provider",
            "none",
            "--disable-prompt",
        ]);
        assert!(aws.path().join(CONFIG).exists(), "init wrote no config");
        let census = aws.census();
        assert!(census.owned.is_empty(), "a fresh moto: {census:?}");
        aws.baseline = census.other;
        aws
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A `qhub` command in the deployment's directory, reaching moto and nothing else: fixed
    /// credentials in the environment, no profile, empty shared config and credentials files, no
    /// instance metadata, and stdin not a terminal.
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_qhub"));
        let empty = self.path().join("empty-aws-file");
        if !empty.exists() {
            std::fs::write(&empty, "").expect("write an empty file");
        }
        cmd.args(args)
            .current_dir(self.path())
            .env("AWS_ENDPOINT_URL", self.moto.endpoint())
            .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET)
            .env("AWS_CONFIG_FILE", &empty)
            .env("AWS_SHARED_CREDENTIALS_FILE", &empty)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_DEFAULT_PROFILE")
            .env_remove("AWS_SESSION_TOKEN")
            .env_remove("AWS_ROLE_ARN")
            .env_remove("AWS_WEB_IDENTITY_TOKEN_FILE")
            .env_remove("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")
            .env_remove("AWS_CONTAINER_CREDENTIALS_FULL_URI")
            .env_remove("AWS_REGION")
            .env_remove("AWS_DEFAULT_REGION")
            .env_remove("QHUB_LOG")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null());
        cmd
    }

    /// Runs to the end; the secret key must appear in neither stdout nor stderr.
    #[track_caller]
    fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = self.command(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().expect("qhub runs");
        assert_no_secret(&out, &args.join(" "));
        // Output to a pipe is plain text: no colour escape sequences.
        assert!(
            !out.stderr.contains(&0x1b) && !out.stdout.contains(&0x1b),
            "qhub {}: ANSI escapes on a pipe: {}",
            args.join(" "),
            describe(&out)
        );
        out
    }

    #[track_caller]
    fn run(&self, args: &[&str]) -> Output {
        self.run_env(args, &[])
    }

    /// Runs and insists on exit 0.
    #[track_caller]
    fn ok(&self, args: &[&str]) -> Output {
        let out = self.run(args);
        assert_eq!(code(&out), 0, "qhub {}: {}", args.join(" "), describe(&out));
        out
    }

    /// `qhub plan --stage infrastructure --output json`.
    #[track_caller]
    fn plan_json(&self) -> Value {
        json_stdout(&self.ok(&["plan", "--stage", "infrastructure", "--output", "json"]))
    }

    #[track_caller]
    fn assert_plan_empty(&self, context: &str) {
        let plan = self.plan_json();
        assert_eq!(
            plan["changes"].as_array().map(Vec::len),
            Some(0),
            "{context}: {plan:#}"
        );
        assert_eq!(
            plan["summary"],
            serde_json::json!({"create": 0, "update": 0, "replace": 0, "delete": 0,
                               "wait": 0, "unchanged": INFRA.len()}),
            "{context}: {plan:#}"
        );
    }

    /// Exactly one of everything, and nothing untagged beside it.
    #[track_caller]
    fn assert_deployed(&self, context: &str) {
        let census = self.census();
        assert_eq!(census.owned, deployed(), "{context}: {census:?}");
        assert_eq!(census.other, self.baseline, "{context}: untagged leftovers");
    }

    /// Nothing of ours left, and nothing untagged beside it.
    #[track_caller]
    fn assert_destroyed(&self, context: &str) {
        let census = self.census();
        assert!(census.owned.is_empty(), "{context}: {census:?}");
        assert_eq!(census.other, self.baseline, "{context}: untagged leftovers");
    }

    fn ownership(&self) -> Ownership {
        let loaded = qhub_core::config::load_file(&self.path().join(CONFIG)).expect("config");
        Ownership::of(&loaded.config)
    }

    /// Runs `f` with an SDK config for moto (the test's own client, not qhub's).
    fn with_sdk<T, F: Future<Output = T>>(&self, f: impl FnOnce(aws_config::SdkConfig) -> F) -> T {
        let endpoint = self.moto.endpoint();
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(async move {
                let sdk = qhub_tests::moto::sdk(&endpoint).await;
                f(sdk).await
            })
    }

    /// Counts what moto holds through the SDK (not through qhub).
    fn census(&self) -> Census {
        let o = self.ownership();
        self.with_sdk(|sdk| async move { census(&sdk, &o).await })
    }
}

#[track_caller]
fn assert_no_secret(out: &Output, context: &str) {
    for (name, text) in [("stdout", stdout(out)), ("stderr", stderr(out))] {
        assert!(
            !text.contains(SECRET),
            "qhub {context}: the secret access key leaked on {name}:\n{}",
            describe(out)
        );
    }
}

/// The resource ids of a JSON plan, sorted.
fn resources_of(plan: &Value) -> Vec<String> {
    let mut v: Vec<String> = plan["changes"]
        .as_array()
        .expect("changes is an array")
        .iter()
        .map(|c| c["resource"].as_str().expect("resource").to_string())
        .collect();
    v.sort_unstable();
    v
}

/// Replaces what differs between runs (the temp dir, moto's port) with placeholders.
fn redact(aws: &Aws, text: &str) -> String {
    text.replace(&aws.path().display().to_string(), "[DIR]")
        .replace(&aws.moto.port().to_string(), "[PORT]")
}

/// A small, seedable generator (xorshift64*), as in lifecycle.rs.
struct Rng(u64);

impl Rng {
    /// From `QHUB_TEST_SEED`, or a fixed seed: the kill moments are reproducible.
    fn seeded() -> (Self, u64) {
        let seed = std::env::var("QHUB_TEST_SEED")
            .map(|s| s.parse().expect("QHUB_TEST_SEED is a number"))
            .unwrap_or(0x5eed_a405);
        (Self(seed | 1), seed)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

/// Spawns `qhub args` and SIGKILLs it the moment it reports its `after`-th finished change on
/// stderr (with `-v`, a progress line per object: `[  1.2s] ✓ …`), so the kill lands mid-run
/// whatever the machine's load. Says whether it was killed (false: it ended before reaching
/// that point).
fn kill_after_changes(aws: &Aws, args: &[&str], after: u64) -> bool {
    use std::io::BufRead;
    let mut child = aws
        .command(&[args, &["-v"]].concat())
        // Progress lines, not info logs.
        .env("QHUB_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn qhub");
    let stderr = child.stderr.take().expect("piped stderr");
    let mut done = 0;
    for line in std::io::BufReader::new(stderr).lines() {
        let Ok(line) = line else { break };
        // One object's change done (not a component's summary line).
        let object_done = [
            ": Create done",
            ": Update done",
            ": Replace done",
            ": Delete done",
        ]
        .iter()
        .any(|p| line.contains(p));
        if object_done {
            done += 1;
            if done == after {
                // Child::kill is SIGKILL on unix.
                let _ = child.kill();
                break;
            }
        }
    }
    let status = child.wait().expect("wait");
    status.code().is_none()
}

#[test]
fn validate_and_plan_the_default_aws_config() {
    let aws = Aws::new();
    aws.ok(&["validate"]);

    let out = aws.ok(&["plan", "--stage", "infrastructure", "-v"]);
    let text = redact(&aws, &stdout(&out));
    for id in INFRA {
        assert!(text.contains(id), "{id} missing from the plan:\n{text}");
    }
    insta::assert_snapshot!("plan_text", text);

    let plan = aws.plan_json();
    assert_eq!(resources_of(&plan), INFRA, "{plan:#}");
    for c in plan["changes"].as_array().unwrap() {
        assert_eq!(c["action"], "create", "{c}");
        assert_eq!(c["stage"], "infrastructure", "{c}");
    }
    assert_eq!(plan["summary"]["create"], INFRA.len(), "{plan:#}");
    let mut plan: Value =
        serde_json::from_str(&redact(&aws, &plan.to_string())).expect("redacted JSON");
    // The document's RFC 3339 time (docs/output.md) is the one field that changes per run.
    let time = plan["time"].take();
    assert!(
        time.as_str()
            .is_some_and(|t| t.ends_with('Z') && t.contains('T')),
        "{time}"
    );
    plan["time"] = Value::String("[time]".into());
    insta::assert_json_snapshot!("plan_json", plan);

    // Planning changes nothing.
    aws.assert_destroyed("after plan");
}

/// `qhub plan` on an empty account (moto, where qhub reaches no cluster) plans both stages: the
/// 15 cloud creates, then every Kubernetes object `qhub render` writes and Keycloak's
/// configuration as creates, in text and JSON, with one line saying why (the cluster does not
/// exist yet), and it changes nothing.
#[test]
fn plan_before_the_cluster_exists_lists_the_kubernetes_creates() {
    let aws = Aws::new();
    let out = aws.ok(&["plan"]);
    let err = stderr(&out);
    assert!(
        err.contains(
            "the cluster does not exist yet: the Kubernetes stage is planned from the config"
        ),
        "{err}"
    );
    assert!(!err.contains("infrastructure stage only"), "{err}");
    let text = stdout(&out);
    assert!(text.contains("kubernetes:"), "{text}");
    // The default text groups by component; `-v` lists every object.
    let text = stdout(&aws.ok(&["plan", "-v"]));

    let plan = json_stdout(&aws.ok(&["plan", "--output", "json"]));
    let changes = plan["changes"].as_array().unwrap();
    let of_stage = |stage: &str| -> Vec<String> {
        changes
            .iter()
            .filter(|c| c["stage"] == stage)
            .map(|c| c["resource"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(of_stage("infrastructure").len(), INFRA.len(), "{plan:#}");
    for c in changes {
        assert_eq!(c["action"], "create", "{c}");
    }
    let kubernetes = of_stage("kubernetes");
    for id in &kubernetes {
        assert!(
            text.contains(id.as_str()),
            "{id} missing from the text plan:\n{text}"
        );
    }
    // Keycloak's realm and groups are planned too (an identity provider only when the config
    // names one; a client only for a built component that logs in through Keycloak).
    use qhub_core::keycloak::desired::{KIND_GROUP, KIND_REALM};
    for kind in [KIND_REALM, KIND_GROUP] {
        assert!(
            kubernetes
                .iter()
                .any(|id| id.starts_with(&format!("{kind}/"))),
            "no {kind} in {kubernetes:#?}"
        );
    }
    // Every object `qhub render` writes is a create, and nothing else is a Kubernetes object.
    let manifests = aws.path().join("manifests");
    let rendered = json_stdout(&aws.ok(&[
        "render",
        "--output",
        "json",
        "--manifests",
        manifests.to_str().unwrap(),
    ]));
    // The ApplySet parent is qhub's bookkeeping, not a platform object: not rendered.
    let parent = format!(
        "Secret/dev/{}",
        qhub_core::kubernetes::applyset::PARENT_NAME
    );
    let objects = kubernetes
        .iter()
        .filter(|id| **id != parent)
        .filter(|id| {
            !qhub_core::keycloak::KINDS
                .iter()
                .chain([&qhub_core::engine::conda_store::KIND])
                .any(|k| id.starts_with(&format!("{k}/")))
        })
        .count();
    assert_eq!(rendered["objects"], objects, "{kubernetes:#?}");
    assert_eq!(
        plan["summary"]["create"],
        INFRA.len() + kubernetes.len(),
        "{plan:#}"
    );
    insta::assert_snapshot!("plan_before_the_cluster", kubernetes.join("\n"));
    aws.assert_destroyed("after plan");
}

#[test]
fn deploy_status_and_destroy_the_infrastructure_from_the_cli() {
    let aws = Aws::new();
    let out = aws.run(&["kubeconfig"]);
    assert_eq!(code(&out), 1, "{}", describe(&out));
    assert!(stderr(&out).contains("deploy first"), "{}", describe(&out));
    let t = Instant::now();
    let out = aws.run_env(
        &[
            "deploy",
            "--stage",
            "infrastructure",
            "--disable-prompt",
            "-vv",
        ],
        &[],
    );
    assert_eq!(code(&out), 0, "deploy: {}", describe(&out));
    let deploy_time = t.elapsed();
    assert!(
        stdout(&out).contains(&format!("{} done, 0 failed, 0 not started", INFRA.len())),
        "{}",
        describe(&out)
    );
    aws.assert_deployed("after deploy");
    aws.assert_plan_empty("after deploy");

    // A kubeconfig for users: moto's cluster endpoint is not real, so emulator mode refuses
    // without an override, and hands out the override when there is one.
    let out = aws.run(&["kubeconfig"]);
    assert_eq!(code(&out), 1, "{}", describe(&out));
    assert!(
        stderr(&out).contains("emulator mode") && stderr(&out).contains("QHUB_KUBECONFIG"),
        "{}",
        describe(&out)
    );
    let kubeconfig = "apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\nusers: []\n";
    std::fs::write(aws.path().join("override.yaml"), kubeconfig).unwrap();
    let out = aws.run_env(&["kubeconfig"], &[("QHUB_KUBECONFIG", "override.yaml")]);
    assert_eq!(code(&out), 0, "{}", describe(&out));
    assert_eq!(stdout(&out), kubeconfig);
    let written = aws.path().join("kube").join("config");
    std::fs::create_dir_all(written.parent().unwrap()).unwrap();
    let target = written.to_str().unwrap();
    let out = aws.run_env(
        &["kubeconfig", "--write", target],
        &[("QHUB_KUBECONFIG", "override.yaml")],
    );
    assert_eq!(code(&out), 0, "{}", describe(&out));
    assert_eq!(std::fs::read_to_string(&written).unwrap(), kubeconfig);

    // Again: nothing to do, and nothing done, also as JSON and with debug logs.
    let out = aws.run_env(
        &[
            "deploy",
            "--stage",
            "infrastructure",
            "--disable-prompt",
            "--output",
            "json",
        ],
        &[("QHUB_LOG", "debug")],
    );
    assert_eq!(code(&out), 0, "no-op deploy: {}", describe(&out));
    let doc = json_stdout(&out);
    assert_eq!(doc["succeeded"], true, "{doc:#}");
    assert_eq!(
        doc["applied"],
        Value::Null,
        "a no-op applies nothing: {doc:#}"
    );
    assert_eq!(doc["plan"]["changes"], serde_json::json!([]), "{doc:#}");
    let out = aws.ok(&["deploy", "--stage", "infrastructure", "--disable-prompt"]);
    assert!(stdout(&out).starts_with("No changes"), "{}", describe(&out));
    aws.assert_deployed("after the no-op deploys");

    // Status lists every resource, in sync.
    let out = aws.ok(&["status", "--stage", "infrastructure", "--output", "json"]);
    let status = json_stdout(&out);
    assert_eq!(status["in_sync"], true, "{status:#}");
    assert_eq!(status["provider"], "aws", "{status:#}");
    let mut listed: Vec<String> = status["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .map(|r| r["resource"].as_str().expect("resource").to_string())
        .collect();
    listed.sort_unstable();
    assert_eq!(listed, INFRA, "{status:#}");
    let out = aws.ok(&["status", "--stage", "infrastructure"]);
    assert!(stdout(&out).contains("in sync"), "{}", describe(&out));

    // Debug logs of a plan leak no secret either (run_env checks every run).
    aws.run_env(
        &["plan", "--stage", "infrastructure"],
        &[("QHUB_LOG", "trace")],
    );

    let t = Instant::now();
    let out = aws.run_env(
        &[
            "destroy",
            "--stage",
            "infrastructure",
            "--disable-prompt",
            "--output",
            "json",
        ],
        &[("QHUB_LOG", "debug")],
    );
    assert_eq!(code(&out), 0, "destroy: {}", describe(&out));
    let doc = json_stdout(&out);
    assert_eq!(doc["succeeded"], true, "{doc:#}");
    // Destroy looked again and found nothing of ours.
    assert_eq!(doc["remaining"], serde_json::json!([]), "{doc:#}");
    assert_eq!(doc["plan"]["summary"]["delete"], INFRA.len(), "{doc:#}");
    let destroy_time = t.elapsed();
    aws.assert_destroyed("after destroy");

    // Destroying nothing is fine too.
    let out = aws.ok(&["destroy", "--stage", "infrastructure", "--disable-prompt"]);
    assert!(stdout(&out).starts_with("No changes"), "{}", describe(&out));
    eprintln!("deploy took {deploy_time:?}, destroy {destroy_time:?}");
}

#[test]
fn sigkilled_deploys_and_destroys_converge_on_rerun() {
    let aws = Aws::new();
    let (mut rng, seed) = Rng::seeded();
    let started = Instant::now();
    let deploy = ["deploy", "--stage", "infrastructure", "--disable-prompt"];
    let destroy = ["destroy", "--stage", "infrastructure", "--disable-prompt"];

    // Each round from an empty account: a deploy killed at a random moment, its re-run killed
    // too, then a run to the end.
    const ROUNDS: usize = 4;
    let mut killed = 0;
    for round in 0..ROUNDS {
        aws.moto.reset().expect("moto reset");
        aws.assert_destroyed(&format!("round {round}: after the reset"));
        // A deploy of the default config makes INFRA.len() changes: the first kill comes after
        // 1 to len-3 of them are done; the re-run has fewer left, so its kill may come late.
        let changes = INFRA.len() as u64;
        let first = 1 + rng.below(changes - 3);
        let second = 1 + rng.below(changes / 2);
        let context = format!(
            "round {round}: SIGKILL after {first} finished changes, then after {second} \
             (QHUB_TEST_SEED={seed})"
        );
        for after in [first, second] {
            if kill_after_changes(&aws, &deploy, after) {
                killed += 1;
            }
            let census = aws.census();
            for (kind, n) in &census.owned {
                assert!(
                    *n <= deployed()[kind],
                    "{context}: more than one {kind}: {census:?}"
                );
            }
        }
        let out = aws.run(&deploy);
        assert_eq!(code(&out), 0, "{context}: re-run: {}", describe(&out));
        aws.assert_deployed(&context);
        aws.assert_plan_empty(&context);
    }
    assert!(
        killed >= ROUNDS,
        "only {killed} of {} deploys were still running when killed (QHUB_TEST_SEED={seed}); \
         the test proves too little",
        2 * ROUNDS
    );

    // A destroy killed midway, then re-run.
    let after = 1 + rng.below(INFRA.len() as u64 - 3);
    let was_running = kill_after_changes(&aws, &destroy, after);
    assert!(
        was_running,
        "the destroy ended before {after} changes were done"
    );
    let context =
        format!("destroy SIGKILLed after {after} finished changes (QHUB_TEST_SEED={seed})");
    let out = aws.run(&destroy);
    assert_eq!(code(&out), 0, "{context}: re-run: {}", describe(&out));
    aws.assert_destroyed(&context);
    eprintln!(
        "{killed}/{} deploys and {} destroy killed mid-run; {:?} in all",
        2 * ROUNDS,
        u8::from(was_running),
        started.elapsed()
    );
}

/// Ownership tags plus `Name`, as EC2 tag specifications of `kind`.
fn tagged(
    o: &Ownership,
    kind: aws_sdk_ec2::types::ResourceType,
    name: &str,
) -> aws_sdk_ec2::types::TagSpecification {
    use aws_sdk_ec2::types::{Tag, TagSpecification};
    let mut tags = o.tags();
    tags.insert("Name".into(), name.into());
    TagSpecification::builder()
        .resource_type(kind)
        .set_tags(Some(
            tags.into_iter()
                .map(|(k, v)| Tag::builder().key(k).value(v).build())
                .collect(),
        ))
        .build()
}

/// The plan's changes as `(action, resource)`, sorted.
fn actions_of(plan: &Value) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = plan["changes"]
        .as_array()
        .expect("changes is an array")
        .iter()
        .map(|c| {
            (
                c["action"].as_str().expect("action").to_string(),
                c["resource"].as_str().expect("resource").to_string(),
            )
        })
        .collect();
    v.sort_unstable();
    v
}

/// A second copy of one of our resources (what a lost response, or two deploys at once, can
/// leave) is not "in sync": `status` says so, `plan` removes it, and a deploy converges to
/// exactly one of everything again.
#[test]
fn a_duplicate_resource_is_seen_and_removed() {
    let aws = Aws::new();
    aws.ok(&["deploy", "--stage", "infrastructure", "--disable-prompt"]);
    aws.assert_deployed("after deploy");
    let o = aws.ownership();
    let (igw, sg) = aws.with_sdk(|sdk| async move {
        use aws_sdk_ec2::types::{Filter, ResourceType};
        let ec2 = aws_sdk_ec2::Client::new(&sdk);
        let igw = ec2
            .create_internet_gateway()
            .tag_specifications(tagged(&o, ResourceType::InternetGateway, &o.prefix()))
            .send()
            .await
            .expect("create a second internet gateway");
        let vpc = ec2
            .describe_vpcs()
            .filters(
                Filter::builder()
                    .name("tag:Name")
                    .values(o.prefix())
                    .build(),
            )
            .send()
            .await
            .expect("describe the VPC");
        let vpc = vpc.vpcs()[0].vpc_id().expect("vpc id").to_string();
        // Group names are unique in a VPC; the `Name` tag is what we name resources by.
        let sg = ec2
            .create_security_group()
            .group_name(format!("{}-copy", o.prefix()))
            .description("a hand-made copy")
            .vpc_id(vpc)
            .tag_specifications(tagged(&o, ResourceType::SecurityGroup, &o.prefix()))
            .send()
            .await
            .expect("create a second security group");
        (
            igw.internet_gateway()
                .and_then(|g| g.internet_gateway_id())
                .expect("igw id")
                .to_string(),
            sg.group_id().expect("sg id").to_string(),
        )
    });
    let census = aws.census();
    assert_eq!(census.owned["internet_gateway"], 2);
    assert_eq!(census.owned["security_group"], 2);

    let status = json_stdout(&aws.ok(&["status", "--stage", "infrastructure", "--output", "json"]));
    assert_eq!(
        status["in_sync"], false,
        "two internet gateways: {status:#}"
    );
    // The copies that are not in use go; what is in use stays.
    let plan = aws.plan_json();
    assert_eq!(
        actions_of(&plan),
        [
            (
                "delete".to_string(),
                format!("internet_gateway/demo-dev~{igw}")
            ),
            (
                "delete".to_string(),
                format!("security_group/demo-dev~{sg}")
            ),
        ],
        "the extra copies must go: {plan:#}"
    );
    let text = stdout(&aws.ok(&["plan", "--stage", "infrastructure", "-v"]));
    assert!(
        text.contains(&format!("- internet_gateway/demo-dev~{igw}")),
        "{text}"
    );
    aws.ok(&["deploy", "--stage", "infrastructure", "--disable-prompt"]);
    aws.assert_deployed("after the re-deploy");
    aws.assert_plan_empty("after the re-deploy");
}

/// A second VPC carrying our tags and name, with a subnet of one of our subnets' names in it:
/// the VPC with our subnets is kept, the copy and what is in it are deleted (contents first),
/// and nothing in the kept VPC is touched.
#[test]
fn a_duplicate_vpc_and_its_contents_are_removed() {
    let aws = Aws::new();
    aws.ok(&["deploy", "--stage", "infrastructure", "--disable-prompt"]);
    aws.assert_deployed("after deploy");
    let o = aws.ownership();
    let (vpc, subnet) = aws.with_sdk(|sdk| async move {
        use aws_sdk_ec2::types::ResourceType;
        let ec2 = aws_sdk_ec2::Client::new(&sdk);
        let vpc = ec2
            .create_vpc()
            .cidr_block("10.10.0.0/16")
            .tag_specifications(tagged(&o, ResourceType::Vpc, &o.prefix()))
            .send()
            .await
            .expect("create a second VPC");
        let vpc = vpc
            .vpc()
            .and_then(|v| v.vpc_id())
            .expect("vpc id")
            .to_string();
        let subnet = ec2
            .create_subnet()
            .vpc_id(&vpc)
            .cidr_block("10.10.0.0/18")
            .tag_specifications(tagged(
                &o,
                ResourceType::Subnet,
                &format!("{}-subnet-0", o.prefix()),
            ))
            .send()
            .await
            .expect("create a subnet in it");
        let subnet = subnet
            .subnet()
            .and_then(|s| s.subnet_id())
            .expect("subnet id")
            .to_string();
        (vpc, subnet)
    });
    let census = aws.census();
    assert_eq!(census.owned["vpc"], 2);
    assert_eq!(census.owned["subnet"], 3);

    let status = json_stdout(&aws.ok(&["status", "--stage", "infrastructure", "--output", "json"]));
    assert_eq!(status["in_sync"], false, "two VPCs: {status:#}");
    let plan = aws.plan_json();
    assert_eq!(
        actions_of(&plan),
        [
            (
                "delete".to_string(),
                format!("subnet/demo-dev-subnet-0~{subnet}")
            ),
            ("delete".to_string(), format!("vpc/demo-dev~{vpc}")),
        ],
        "the extra VPC and its subnet must go: {plan:#}"
    );
    // The subnet is deleted before its VPC.
    assert_eq!(
        plan["changes"][0]["resource"],
        format!("subnet/demo-dev-subnet-0~{subnet}"),
        "{plan:#}"
    );
    aws.ok(&["deploy", "--stage", "infrastructure", "--disable-prompt"]);
    aws.assert_deployed("after the re-deploy");
    aws.assert_plan_empty("after the re-deploy");
}

/// Two deploys of one deployment at once (two CI runners): the second waits for the first's S3
/// deploy lock, saying so, then finds nothing to do; both succeed with exactly one of
/// everything.
#[test]
fn concurrent_deploys_leave_one_of_everything() {
    let aws = Aws::new();
    let deploy = ["deploy", "--stage", "infrastructure", "--disable-prompt"];
    let spawn = || {
        aws.command(&deploy)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn qhub deploy")
    };
    let (a, b) = (spawn(), spawn());
    let a = a.wait_with_output().expect("wait");
    let b = b.wait_with_output().expect("wait");
    assert_no_secret(&a, "deploy (first)");
    assert_no_secret(&b, "deploy (second)");
    assert!(
        code(&a) == 0 && code(&b) == 0,
        "both succeed, one after the other:\n{}\n{}",
        describe(&a),
        describe(&b)
    );
    let waited = |o: &std::process::Output| {
        String::from_utf8_lossy(&o.stderr).contains("DeployLock/s3://qhub-locks-")
            && String::from_utf8_lossy(&o.stderr).contains("waiting (held by qhub@")
    };
    assert!(
        waited(&a) || waited(&b),
        "one waited for the other's lock, saying so:\n{}\n{}",
        describe(&a),
        describe(&b)
    );
    let census = aws.census();
    assert_eq!(
        census.owned,
        deployed(),
        "two deploys at once:\n{}\n{}",
        describe(&a),
        describe(&b)
    );
    aws.ok(&deploy);
    aws.assert_deployed("after a third deploy");
    aws.assert_plan_empty("after a third deploy");
}

/// Destroy removes what Kubernetes left in the cloud for the cluster, which carries the
/// cluster's tags rather than ours: the EBS volume a PersistentVolumeClaim made, and a network
/// interface a load balancer left in our VPC. Both are made here out of band, as the EBS CSI
/// driver and a load balancer would, and "nothing left" counts them.
#[test]
fn destroy_removes_the_volumes_and_network_interfaces_kubernetes_left() {
    let aws = Aws::new();
    aws.ok(&["deploy", "--stage", "infrastructure", "--disable-prompt"]);
    aws.assert_deployed("after deploy");
    let o = aws.ownership();
    let cluster = o.prefix();
    aws.with_sdk(|sdk| async move {
        let ec2 = aws_sdk_ec2::Client::new(&sdk);
        let tag = |k: &str, v: &str| aws_sdk_ec2::types::Tag::builder().key(k).value(v).build();
        let subnets = ec2
            .describe_subnets()
            .filters(
                aws_sdk_ec2::types::Filter::builder()
                    .name(format!("tag:{}", Ownership::PROJECT_KEY))
                    .values(&o.project)
                    .build(),
            )
            .send()
            .await
            .expect("DescribeSubnets");
        let subnet = subnets.subnets().first().expect("a subnet of ours");
        ec2.create_volume()
            .availability_zone(subnet.availability_zone().expect("its zone"))
            .size(1)
            .tag_specifications(
                aws_sdk_ec2::types::TagSpecification::builder()
                    .resource_type(aws_sdk_ec2::types::ResourceType::Volume)
                    .tags(tag(&format!("kubernetes.io/cluster/{cluster}"), "owned"))
                    .tags(tag("kubernetes.io/created-for/pvc/name", "claim-alice"))
                    .tags(tag("kubernetes.io/created-for/pvc/namespace", "dev"))
                    .build(),
            )
            .send()
            .await
            .expect("CreateVolume");
        ec2.create_network_interface()
            .subnet_id(subnet.subnet_id().expect("its id"))
            .description("ELB net/k8s-dev-ingress/0123456789abcdef")
            .send()
            .await
            .expect("CreateNetworkInterface");
    });
    let census = aws.census();
    assert_eq!(census.owned.get("ebs_volume"), Some(&1), "{census:?}");
    assert_eq!(
        census.owned.get("network_interface"),
        Some(&1),
        "{census:?}"
    );

    // A deploy leaves what the cluster made alone; status lists it.
    aws.assert_plan_empty("with what Kubernetes made");
    let status = json_stdout(&aws.ok(&["status", "--stage", "infrastructure", "--output", "json"]));
    let listed = |kind: &str| {
        status["resources"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| {
                r["resource"]
                    .as_str()
                    .is_some_and(|id| id.starts_with(kind))
            })
            .count()
    };
    assert_eq!(listed("ebs_volume/"), 1, "{status:#}");
    assert_eq!(listed("network_interface/"), 1, "{status:#}");

    let out = aws.run(&[
        "destroy",
        "--stage",
        "infrastructure",
        "--disable-prompt",
        "--output",
        "json",
    ]);
    assert_eq!(code(&out), 0, "destroy: {}", describe(&out));
    let doc = json_stdout(&out);
    // The destroy plan names them, deleted with the cluster (whose delete sweeps them).
    let planned: Vec<&serde_json::Value> = doc["plan"]["changes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| {
            c["resource"].as_str().is_some_and(|id| {
                id.starts_with("ebs_volume/") || id.starts_with("network_interface/")
            })
        })
        .collect();
    assert_eq!(planned.len(), 2, "{doc:#}");
    for c in planned {
        assert_eq!(c["action"], "delete", "{doc:#}");
        assert_eq!(
            c["reason"],
            format!("deleted with eks_cluster/{}", aws.ownership().prefix()),
            "{doc:#}"
        );
    }
    assert_eq!(doc["remaining"], serde_json::json!([]), "{doc:#}");
    aws.assert_destroyed("after destroy");
}

/// `QHUB_LOG=trace` (every library's wire-level logs) never prints the AWS secret key, the
/// session token, or an EKS bearer token, through a deploy, a plan and a destroy on moto.
#[test]
fn trace_logs_never_print_aws_credentials() {
    const SESSION_TOKEN: &str = "qhubTestSessionToken/0123456789+ABCDEF";
    let aws = Aws::new();
    let env = [
        ("QHUB_LOG", "trace"),
        ("LOG_SENSITIVE_BODIES", "true"),
        ("AWS_SESSION_TOKEN", SESSION_TOKEN),
    ];
    for args in [
        &["deploy", "--stage", "infrastructure", "--disable-prompt"][..],
        &["plan", "--stage", "infrastructure"],
        &["destroy", "--stage", "infrastructure", "--disable-prompt"],
    ] {
        // run_env checks the secret access key.
        let out = aws.run_env(args, &env);
        assert_eq!(code(&out), 0, "qhub {}: {}", args.join(" "), describe(&out));
        let all = format!("{}{}", stdout(&out), stderr(&out));
        assert!(
            all.contains("TRACE"),
            "qhub {}: QHUB_LOG=trace printed no trace lines",
            args.join(" ")
        );
        // The token in any of the forms it travels in (as is, URL-encoded).
        for form in [SESSION_TOKEN, "qhubTestSessionToken%2F0123456789"] {
            assert!(
                !all.contains(form),
                "qhub {}: the session token appears in the trace output",
                args.join(" ")
            );
        }
        assert!(
            !all.contains("k8s-aws-v1."),
            "qhub {}: an EKS bearer token appears in the trace output",
            args.join(" ")
        );
    }
    aws.assert_destroyed("after destroy");

    // Credentials from a profile that assumes a role: the SDK asks STS (moto) for them, and
    // STS's answer holds a secret key and a session token that no log may print.
    let endpoint = aws.moto.endpoint();
    let config = aws.path().join("aws-config-assume-role");
    std::fs::write(
        &config,
        format!(
            "[profile qhub]\nrole_arn = arn:aws:iam::123456789012:role/qhub-trace\n\
             source_profile = base\nregion = us-east-1\nendpoint_url = {endpoint}\n\
             [profile base]\nregion = us-east-1\nendpoint_url = {endpoint}\n"
        ),
    )
    .expect("write the profile");
    let credentials = aws.path().join("aws-credentials-assume-role");
    std::fs::write(
        &credentials,
        format!("[base]\naws_access_key_id = {ACCESS_KEY}\naws_secret_access_key = {SECRET}\n"),
    )
    .expect("write the credentials");
    let out = aws
        .command(&["plan", "--stage", "infrastructure"])
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env("AWS_PROFILE", "qhub")
        .env("AWS_CONFIG_FILE", &config)
        .env("AWS_SHARED_CREDENTIALS_FILE", &credentials)
        .env("AWS_ENDPOINT_URL_STS", &endpoint)
        .env("QHUB_LOG", "trace")
        // The SDK's own switch to print the bodies it marks sensitive in its trace events: a
        // user debugging may well set it, and qhub's logs must stay clean even then.
        .env("LOG_SENSITIVE_BODIES", "true")
        .output()
        .expect("qhub runs");
    assert_no_secret(&out, "plan with an assumed role");
    assert_eq!(
        code(&out),
        0,
        "plan with an assumed role: {}",
        describe(&out)
    );
    let all = format!("{}{}", stdout(&out), stderr(&out));
    assert!(
        all.contains("AssumeRole"),
        "the credentials came from STS AssumeRole: {}",
        describe(&out)
    );
    for element in ["<SecretAccessKey>", "<SessionToken>"] {
        assert!(
            !all.contains(element),
            "STS's answer ({element}) appears in the trace output"
        );
    }
}

/// A re-deploy after a destroy makes new resources: it is not answered with the old ones (an
/// idempotency token of the first deploy's requests replayed), and it converges like the first.
#[test]
fn a_redeploy_after_destroy_is_not_answered_with_the_old_resources() {
    let aws = Aws::new();
    let first = aws.with_sdk(|sdk| async move { incarnation(&sdk).await });
    assert_eq!(first, (Vec::new(), None), "a fresh moto");
    aws.ok(&["deploy", "--stage", "infrastructure", "--disable-prompt"]);
    let deployed = aws.with_sdk(|sdk| async move { incarnation(&sdk).await });
    assert_eq!(deployed.0.len(), 1, "{deployed:?}");
    assert!(deployed.1.is_some(), "{deployed:?}");
    aws.ok(&["destroy", "--stage", "infrastructure", "--disable-prompt"]);
    aws.assert_destroyed("after destroy");
    aws.ok(&["deploy", "--stage", "infrastructure", "--disable-prompt"]);
    aws.assert_deployed("after the re-deploy");
    aws.assert_plan_empty("after the re-deploy");
    let again = aws.with_sdk(|sdk| async move { incarnation(&sdk).await });
    assert_eq!(again.0.len(), 1, "{again:?}");
    assert_ne!(again.0, deployed.0, "the old file system came back");
    assert!(again.1.is_some(), "{again:?}");
}

/// The file systems (id, creation token) and the cluster's creation time in moto.
async fn incarnation(sdk: &aws_config::SdkConfig) -> (Vec<(String, String)>, Option<String>) {
    let efs = aws_sdk_efs::Client::new(sdk);
    let eks = aws_sdk_eks::Client::new(sdk);
    let file_systems = efs
        .describe_file_systems()
        .send()
        .await
        .expect("DescribeFileSystems")
        .file_systems()
        .iter()
        .map(|f| {
            (
                f.file_system_id().to_string(),
                f.creation_token().to_string(),
            )
        })
        .collect();
    let cluster = match eks.describe_cluster().name("demo-dev").send().await {
        Ok(c) => c
            .cluster()
            .and_then(|c| c.created_at())
            .map(|t| format!("{}.{:09}", t.secs(), t.subsec_nanos())),
        Err(_) => None,
    };
    (file_systems, cluster)
}

/// Moving a subnet to another zone would replace the EKS cluster in it: `plan` and `deploy`
/// refuse, naming both, the key and the flag, and change nothing; `status` says so; the flag
/// allows it.
#[test]
fn replacing_a_subnet_under_the_cluster_is_refused_until_allowed() {
    let aws = Aws::new();
    aws.ok(&["deploy", "--stage", "infrastructure", "--disable-prompt"]);
    let path = aws.path().join(CONFIG);
    let text = std::fs::read_to_string(&path).unwrap();
    let edited = text.replacen(
        "  region: us-west-2\n",
        "  region: us-west-2\n  availability_zones: [us-west-2a, us-west-2c]\n",
        1,
    );
    assert_ne!(edited, text, "no AWS region line in:\n{text}");
    std::fs::write(&path, edited).unwrap();

    let before = aws.census();
    let out = aws.run(&["plan", "--stage", "infrastructure"]);
    assert_eq!(code(&out), 1, "{}", describe(&out));
    for needle in [
        "subnet/demo-dev-subnet-1",
        "eks_cluster/demo-dev",
        "amazon_web_services.availability_zones",
        "--allow-replace eks_cluster/demo-dev",
    ] {
        assert!(
            stderr(&out).contains(needle),
            "{needle}: {}",
            describe(&out)
        );
    }
    let out = aws.run(&["deploy", "--stage", "infrastructure", "--disable-prompt"]);
    assert_eq!(code(&out), 1, "{}", describe(&out));
    assert_eq!(
        aws.census().owned,
        before.owned,
        "a refused deploy changed something"
    );
    let status = json_stdout(&aws.ok(&["status", "--stage", "infrastructure", "--output", "json"]));
    assert_eq!(status["in_sync"], false, "{status:#}");
    assert!(
        status["refused"]
            .as_str()
            .is_some_and(|r| r.contains("eks_cluster/demo-dev")),
        "{status:#}"
    );

    let plan = json_stdout(&aws.ok(&[
        "plan",
        "--stage",
        "infrastructure",
        "--allow-replace",
        "eks_cluster/demo-dev",
        "--output",
        "json",
    ]));
    let cluster = plan["changes"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["resource"] == "eks_cluster/demo-dev"))
        .unwrap_or_else(|| panic!("{plan:#}"));
    assert_eq!(cluster["action"], "replace", "{plan:#}");
    assert_eq!(cluster["because"], "subnet/demo-dev-subnet-1", "{plan:#}");
}
