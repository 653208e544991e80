//! The command line, as clap derive structs; their doc comments are the help text.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

// Defined beside the printing it selects, so that output.rs needs nothing from here.
pub use crate::output::OutputFormat;

/// qhub: a complete data-science platform (JupyterHub, Dask Gateway, conda-store, Keycloak, …)
/// on Kubernetes, from one qhub-config.yaml.
#[derive(Debug, Parser)]
#[command(name = "qhub", version, long_version = crate::build_info::LONG, propagate_version = true)]
pub struct Cli {
    /// Output format: human-readable text, or one JSON document on stdout for machines.
    #[arg(long, short = 'o', global = true, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
    /// More logging on stderr (-v info, -vv debug, -vvv trace); QHUB_LOG overrides.
    #[arg(long, short = 'v', global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a new qhub-config.yaml with QHub's defaults for a provider.
    Init(InitArgs),
    /// Check a config and report every problem at once, with key path and line:column.
    Validate(ConfigArg),
    /// Migrate a QHub 0.3.x / early 0.4 config to the current format (keeps a backup).
    Upgrade(UpgradeArgs),
    /// Show what deploy would change, in the cloud and in Kubernetes, from live state.
    Plan(PlanArgs),
    /// Converge the deployment to the config; safe to re-run and to interrupt.
    Deploy(DeployArgs),
    /// List what exists for this deployment, and whether it matches the config.
    Status(StatusArgs),
    /// Remove everything this deployment owns, even after a partial deploy.
    Destroy(DestroyArgs),
    /// Print a kubeconfig for your own kubectl on the deployment's cluster (no stored secret:
    /// it runs `aws eks get-token` when used), or write it with --write.
    Kubeconfig(KubeconfigArgs),
    /// Write the CI/CD pipeline of `ci_cd.type` (GitHub Actions workflows, `.gitlab-ci.yml`),
    /// and with --manifests every Kubernetes object the platform would apply as YAML files
    /// (offline, for review and GitOps; values only a deploy knows are placeholders).
    Render(RenderArgs),
    /// Print qhub's version, the commit and date it was built from, and the QHub config
    /// version it reads and writes.
    Version,
    /// Print a secret the deployment generated and keeps in the cluster (never in the config
    /// file), e.g. `qhub secrets show keycloak-admin`.
    #[command(subcommand)]
    Secrets(SecretsCommand),
    /// Manage the people who log in: Keycloak users of realm `qhub`, through its admin API
    /// (as the engine reaches it, TLS verified) with the admin credentials the deployment keeps.
    #[command(subcommand)]
    Users(UsersCommand),
    /// The hourly and monthly cost of the config's node groups (at their minimum and maximum
    /// size), control plane, storage and load balancer, from the dated price table qhub ships.
    Cost(ConfigArg),
    /// Write a zip for a support request: the redacted config, the deployment's status, its
    /// namespace's pod logs and events, qhub's version (never a Secret's data).
    Support(SupportArgs),
    /// Print a shell completion script: `qhub completions bash > ~/.local/share/bash-completion/completions/qhub`.
    Completions(CompletionsArgs),
    /// Print the JSON Schema of qhub-config.yaml (for editors and CI checks) or of what
    /// `--output json` prints, or the configuration reference generated from the first.
    Schema(SchemaArgs),
}

/// `qhub secrets`.
#[derive(Debug, Subcommand)]
pub enum SecretsCommand {
    /// Print one secret's value on stdout (its user name, where it has one, on stderr).
    Show(SecretsShowArgs),
}

/// `qhub support`.
#[derive(Debug, Args)]
pub struct SupportArgs {
    /// The config file.
    #[arg(long, short = 'c', default_value = "qhub-config.yaml")]
    pub config: PathBuf,
    /// The zip to write (replaced atomically; default `qhub-support-PROJECT-NAMESPACE.zip`).
    #[arg(long, value_name = "FILE.zip")]
    pub out: Option<PathBuf>,
    /// The last lines of each container's log to keep (each log is also cut to its last MiB).
    #[arg(long, value_name = "N", default_value_t = 500, value_parser = clap::value_parser!(i64).range(1..=100_000))]
    pub tail: i64,
}

/// `qhub users`.
#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Add a user (a no-op when it exists with the same e-mail and groups).
    Add(UsersAddArgs),
    /// List the users with their e-mail and groups.
    List(ConfigArg),
    /// Delete a user.
    Remove(UserArgs),
    /// Set a user's password, read from stdin or generated (and then printed once).
    SetPassword(SetPasswordArgs),
    /// Make a user a member of a group.
    AddToGroup(MembershipArgs),
    /// Take a user out of a group.
    RemoveFromGroup(MembershipArgs),
}

/// `qhub users add`.
#[derive(Debug, Args)]
pub struct UsersAddArgs {
    /// The user name (Keycloak keeps it in lower case).
    pub username: String,
    /// The user's e-mail address.
    #[arg(long)]
    pub email: Option<String>,
    /// A group to join besides the default ones (repeat for several).
    #[arg(long = "group", value_name = "GROUP")]
    pub groups: Vec<String>,
    /// Read the initial password from stdin (never from the command line).
    #[arg(long)]
    pub password_stdin: bool,
    /// The config file.
    #[arg(long, short = 'c', default_value = "qhub-config.yaml")]
    pub config: PathBuf,
}

/// A user.
#[derive(Debug, Args)]
pub struct UserArgs {
    /// The user name.
    pub username: String,
    /// The config file.
    #[arg(long, short = 'c', default_value = "qhub-config.yaml")]
    pub config: PathBuf,
}

/// `qhub users set-password`.
#[derive(Debug, Args)]
pub struct SetPasswordArgs {
    /// The user name.
    pub username: String,
    /// Read the password from stdin (never from the command line).
    #[arg(
        long,
        required_unless_present = "generate",
        conflicts_with = "generate"
    )]
    pub password_stdin: bool,
    /// Generate a password and print it once on stdout.
    #[arg(long)]
    pub generate: bool,
    /// The user must change it at the next login.
    #[arg(long)]
    pub temporary: bool,
    /// The config file.
    #[arg(long, short = 'c', default_value = "qhub-config.yaml")]
    pub config: PathBuf,
}

/// A user and a group.
#[derive(Debug, Args)]
pub struct MembershipArgs {
    /// The user name.
    pub username: String,
    /// The group.
    pub group: String,
    /// The config file.
    #[arg(long, short = 'c', default_value = "qhub-config.yaml")]
    pub config: PathBuf,
}

/// The secrets `qhub secrets show` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SecretName {
    /// The password of Keycloak's bootstrap admin `root` (Secret `keycloak-admin` in the
    /// deployment's namespace; the config's `security.keycloak.initial_root_password` when it
    /// sets one).
    KeycloakAdmin,
}

/// `qhub secrets show`.
#[derive(Debug, Args)]
pub struct SecretsShowArgs {
    /// Which secret.
    #[arg(value_enum)]
    pub name: SecretName,
    /// The config file.
    #[arg(long, short = 'c', default_value = "qhub-config.yaml")]
    pub config: PathBuf,
}

/// Shells `qhub completions` writes a script for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Shell {
    /// Bash.
    Bash,
    /// Zsh.
    Zsh,
    /// Fish.
    Fish,
}

/// `qhub completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    pub shell: Shell,
}

/// The schemas `qhub schema` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SchemaKind {
    /// qhub-config.yaml.
    Config,
    /// Every document `--output json` prints on stdout and every event line on stderr
    /// (`$defs` named after the command; docs/output.md).
    Output,
}

/// Formats `schema` can print.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SchemaFormat {
    /// The JSON Schema (draft 2020-12), for editors and CI checks.
    Json,
    /// The configuration reference as Markdown (docs/configuration.md).
    Markdown,
}

/// `qhub schema`.
#[derive(Debug, Args)]
pub struct SchemaArgs {
    /// Which schema.
    #[arg(value_enum, default_value_t = SchemaKind::Config)]
    pub what: SchemaKind,
    /// What to print (`markdown`: the configuration reference; not with `--output json`).
    #[arg(long, value_enum, default_value_t = SchemaFormat::Json)]
    pub format: SchemaFormat,
}

/// `-c FILE`.
#[derive(Debug, Args)]
pub struct ConfigArg {
    /// The config file.
    #[arg(long, short = 'c', default_value = "qhub-config.yaml")]
    pub config: PathBuf,
}

/// Providers `init` can write a config for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum InitProvider {
    /// Amazon Web Services (EKS).
    Aws,
    /// Google Cloud Platform (GKE).
    Gcp,
    /// DigitalOcean (DOKS).
    Do,
    /// A Kubernetes cluster you already have.
    Existing,
    /// A local Kubernetes cluster (kind, minikube).
    Local,
    /// The built-in simulated cloud (no credentials needed).
    Sandbox,
}

/// Identity providers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AuthProvider {
    /// Users and passwords in Keycloak.
    Password,
    /// GitHub OAuth.
    Github,
    /// Auth0 OAuth.
    Auth0,
}

/// CI systems.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CiProvider {
    /// GitHub Actions.
    GithubActions,
    /// GitLab CI.
    GitlabCi,
    /// No pipeline.
    None,
}

/// `qhub init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// Where to deploy.
    #[arg(value_enum)]
    pub provider: InitProvider,
    /// Project name: at most 16 letters, `-` or `_`, starting and ending with a letter.
    #[arg(long, short = 'p')]
    pub project: Option<String>,
    /// The DNS name the platform will be served at.
    #[arg(long, short = 'd')]
    pub domain: Option<String>,
    /// Kubernetes namespace (default `dev`).
    #[arg(long)]
    pub namespace: Option<String>,
    /// How users log in.
    #[arg(long, value_enum, default_value_t = AuthProvider::Password)]
    pub auth_provider: AuthProvider,
    /// The CI/CD system `qhub render` will write a pipeline for.
    #[arg(long, value_enum, default_value_t = CiProvider::GithubActions)]
    pub ci_provider: CiProvider,
    /// Kubernetes version (default: a current one; DigitalOcean resolves MAJOR.MINOR to a slug).
    #[arg(long)]
    pub kubernetes_version: Option<String>,
    /// Cloud region (default: QHub's per provider).
    #[arg(long)]
    pub region: Option<String>,
    /// GCP project id (gcp only; default: $PROJECT_ID).
    #[arg(long, env = "PROJECT_ID")]
    pub gcp_project: Option<String>,
    /// The file to write.
    #[arg(long, short = 'c', default_value = "qhub-config.yaml")]
    pub config: PathBuf,
    /// Never ask questions; fail instead when something is missing.
    #[arg(long)]
    pub disable_prompt: bool,
}

/// `qhub upgrade`.
#[derive(Debug, Args)]
pub struct UpgradeArgs {
    /// The config file.
    #[arg(long, short = 'c', default_value = "qhub-config.yaml")]
    pub config: PathBuf,
    /// Show what would change without writing anything.
    #[arg(long)]
    pub dry_run: bool,
    /// Accepted for symmetry with the other commands: upgrade never prompts.
    #[arg(long)]
    pub disable_prompt: bool,
}

/// Stages of a deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StageArg {
    /// Cloud resources: network, cluster, node groups, storage.
    Infrastructure,
    /// Kubernetes objects (the platform components).
    Kubernetes,
}

/// `qhub render`.
#[derive(Debug, Args)]
pub struct RenderArgs {
    /// The config file. Repeat it to render several deployments (staging, production) into
    /// one repository: one deploy workflow each, one validation workflow for all.
    #[arg(long, short = 'c', default_value = "qhub-config.yaml")]
    pub config: Vec<PathBuf>,
    /// The repository directory to write the CI/CD pipeline of `ci_cd.type` into
    /// (`.github/workflows/` or `.gitlab-ci.yml`). Default: the git repository holding the
    /// config, else the config's directory. QHub's `-o DIR` (`-o` is the output format here).
    /// Without --dir, --manifests alone writes only the manifests.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// The directory to write the Kubernetes manifests to (created if missing; files an
    /// earlier render wrote and that are no longer wanted are removed). One config only.
    #[arg(long, value_name = "DIR")]
    pub manifests: Option<PathBuf>,
}

/// `qhub kubeconfig`.
#[derive(Debug, Args)]
pub struct KubeconfigArgs {
    /// The config file.
    #[arg(long, short = 'c', default_value = "qhub-config.yaml")]
    pub config: PathBuf,
    /// Write the kubeconfig to this file (atomically, replacing it) instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub write: Option<PathBuf>,
}

/// The DNS flags of plan, deploy, status and destroy (QHub's names and meaning).
#[derive(Debug, Args)]
pub struct DnsArgs {
    /// The DNS provider that holds the domain's record (QHub's flag); `cloudflare` is the one
    /// supported. Only with --dns-auto-provision does qhub write (and on destroy delete) the
    /// record.
    #[arg(long, value_name = "PROVIDER")]
    pub dns_provider: Option<String>,
    /// Manage the domain's A/CNAME record at the --dns-provider: deploy creates or updates it
    /// once the load balancer has its address, plan and status show it, destroy deletes it if
    /// qhub wrote it (Cloudflare: needs CLOUDFLARE_TOKEN with Zone:DNS:Edit).
    #[arg(long)]
    pub dns_auto_provision: bool,
}

/// `qhub plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// The config and the stage.
    #[command(flatten)]
    pub target: TargetArgs,
    /// The DNS flags.
    #[command(flatten)]
    pub dns: DnsArgs,
    /// Replacements the plan may contain.
    #[command(flatten)]
    pub replace: ReplaceArgs,
    /// Exit 0 when nothing would change, 3 when changes are pending, 1 on error (as
    /// Terraform's `-detailed-exitcode`, but 3: 2 is the usage error).
    #[arg(long)]
    pub detailed_exitcode: bool,
}

/// `qhub status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The config and the stage.
    #[command(flatten)]
    pub target: TargetArgs,
    /// The DNS flags.
    #[command(flatten)]
    pub dns: DnsArgs,
    /// Exit 0 when the deployment is in sync with the config, 3 when it is not (changes
    /// pending, a refused plan, a deploy running), 1 on error.
    #[arg(long)]
    pub detailed_exitcode: bool,
}

/// `qhub destroy`.
#[derive(Debug, Args)]
pub struct DestroyArgs {
    /// The config and the stage.
    #[command(flatten)]
    pub target: TargetArgs,
    /// The DNS flags.
    #[command(flatten)]
    pub dns: DnsArgs,
    /// How the changes are applied.
    #[command(flatten)]
    pub apply: ApplyArgs,
    /// Also delete the CustomResourceDefinitions this deployment created (Traefik's), when no
    /// object of theirs outside this deployment remains. Without it they are kept: deleting a
    /// CRD deletes every object of its kinds in every namespace. A CRD another tool installed
    /// is never deleted. The plan lists each CRD it keeps and why.
    #[arg(long)]
    pub delete_crds: bool,
}

/// Arguments of deploy.
#[derive(Debug, Args)]
pub struct DeployArgs {
    /// The config and the stage.
    #[command(flatten)]
    pub target: TargetArgs,
    /// The DNS flags.
    #[command(flatten)]
    pub dns: DnsArgs,
    /// How the changes are applied.
    #[command(flatten)]
    pub apply: ApplyArgs,
    /// Replacements the plan may contain.
    #[command(flatten)]
    pub replace: ReplaceArgs,
    /// How long the deploy waits for the ingress load balancer's address and then, with
    /// Let's Encrypt, for the domain to resolve to it before a certificate is asked for:
    /// `90s`, `10m`, `1h` (`0`: look once).
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = parse_duration)]
    pub dns_wait: std::time::Duration,
}

/// The config file and the stage: what plan, deploy, status and destroy act on.
#[derive(Debug, Clone, Args)]
pub struct TargetArgs {
    /// The config file.
    #[arg(long, short = 'c', default_value = "qhub-config.yaml")]
    pub config: PathBuf,
    /// Limit the command to one stage.
    #[arg(long, value_enum)]
    pub stage: Option<StageArg>,
}

/// How deploy and destroy apply their changes.
#[derive(Debug, Clone, Args)]
pub struct ApplyArgs {
    /// Do not ask for confirmation (for CI).
    #[arg(long)]
    pub disable_prompt: bool,
    /// Changes applied at once.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub concurrency: u16,
    /// How long to wait while another run (another CI job, another terminal) holds the
    /// deployment's lock: `90s`, `20m`, `1h`, or `0` to fail at once.
    #[arg(long, value_name = "DURATION", default_value = "20m", value_parser = parse_duration)]
    pub lock_timeout: std::time::Duration,
}

impl Default for ApplyArgs {
    fn default() -> Self {
        Self {
            disable_prompt: true,
            concurrency: 8,
            lock_timeout: std::time::Duration::ZERO,
        }
    }
}

/// `--allow-replace`, on plan and deploy.
#[derive(Debug, Clone, Default, Args)]
pub struct ReplaceArgs {
    /// Allow replacing this resource (KIND/NAME, as the plan names it) when a change to what
    /// it depends on forces it, although replacing it destroys data (an EKS cluster when a
    /// subnet moves zone). Without it such a plan is refused. Repeat for several.
    #[arg(long = "allow-replace", value_name = "KIND/NAME", value_parser = parse_resource_id)]
    pub allow_replace: Vec<qhub_core::plan::ResourceId>,
}

/// Parses `KIND/NAME` (the name may contain `/`, e.g. a Kubernetes object's namespace).
fn parse_resource_id(s: &str) -> Result<qhub_core::plan::ResourceId, String> {
    match s.split_once('/') {
        Some((kind, name)) if !kind.is_empty() && !name.is_empty() => {
            Ok(qhub_core::plan::ResourceId::new(kind, name))
        }
        _ => Err(format!(
            "`{s}` is not KIND/NAME (e.g. eks_cluster/demo-dev, as `qhub plan` names it)"
        )),
    }
}

/// A duration: a whole number with an optional unit `s`, `m` or `h` (seconds without one).
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let n: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration like 90s, 20m or 1h"))?;
    let secs = match unit {
        "s" => Some(n),
        "m" => n.checked_mul(60),
        "h" => n.checked_mul(3600),
        _ => None,
    }
    .ok_or_else(|| format!("`{text}` is not a duration like 90s, 20m or 1h"))?;
    Ok(std::time::Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn the_dns_flags_parse_on_plan_deploy_and_destroy_and_dns_wait_defaults_to_ten_minutes() {
        use super::{Cli, Command};
        use clap::Parser as _;
        let parse = |args: &[&str]| Cli::try_parse_from(args.iter().copied());
        for command in ["plan", "destroy", "deploy"] {
            let cli = parse(&[
                "qhub",
                command,
                "--dns-provider",
                "cloudflare",
                "--dns-auto-provision",
            ])
            .unwrap();
            let dns = match &cli.command {
                Command::Plan(a) => &a.dns,
                Command::Destroy(a) => &a.dns,
                Command::Deploy(a) => &a.dns,
                other => panic!("{other:?}"),
            };
            assert_eq!(dns.dns_provider.as_deref(), Some("cloudflare"));
            assert!(dns.dns_auto_provision);
        }
        let delete_crds = |args: &[&str]| match parse(args).map(|c| c.command) {
            Ok(Command::Destroy(a)) => a.delete_crds,
            other => panic!("{other:?}"),
        };
        assert!(!delete_crds(&["qhub", "destroy"]));
        assert!(delete_crds(&["qhub", "destroy", "--delete-crds"]));
        assert!(parse(&["qhub", "plan", "--delete-crds"]).is_err());
        let wait = |args: &[&str]| match parse(args).map(|c| c.command) {
            Ok(Command::Deploy(a)) => Ok(a.dns_wait),
            Ok(other) => panic!("{other:?}"),
            Err(e) => Err(e.kind()),
        };
        assert_eq!(wait(&["qhub", "deploy"]), Ok(Duration::from_secs(600)));
        assert_eq!(
            wait(&["qhub", "deploy", "--dns-wait", "90s"]),
            Ok(Duration::from_secs(90))
        );
        assert_eq!(
            wait(&["qhub", "deploy", "--dns-wait", "1.5h"]),
            Err(clap::error::ErrorKind::ValueValidation)
        );
        // Only a deploy waits.
        assert!(parse(&["qhub", "plan", "--dns-wait", "90s"]).is_err());
    }

    #[test]
    fn lock_timeouts_read_seconds_minutes_and_hours() {
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("20m"), Ok(Duration::from_secs(1200)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        for bad in ["", "m", "-5s", "5d", "1.5h", "20 m"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
