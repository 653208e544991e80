//! `qhub init`.

use std::io::{BufRead, IsTerminal, Write};

use qhub_core::config::CiKind;
use qhub_core::config::init::{self, InitOptions};
use qhub_core::config::provider::ProviderKind;
use qhub_core::config::security::AuthenticationKind;

use crate::UsageError;
use crate::cli::{AuthProvider, CiProvider, InitArgs, InitProvider, OutputFormat};

fn ask(
    question: &str,
    given: &Option<String>,
    flag: &str,
    disable_prompt: bool,
) -> anyhow::Result<String> {
    if let Some(v) = given {
        return Ok(v.clone());
    }
    if disable_prompt || !std::io::stdin().is_terminal() {
        return Err(UsageError {
            message: format!(
                "{flag} is required (prompts are disabled or stdin is not a terminal)"
            ),
        }
        .into());
    }
    eprint!("{question}: ");
    std::io::stderr().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    let line = line.trim().to_string();
    if line.is_empty() {
        return Err(UsageError {
            message: format!("{flag} is required"),
        }
        .into());
    }
    Ok(line)
}

/// Writes a new config; refuses to overwrite.
pub fn run(args: &InitArgs, format: OutputFormat) -> anyhow::Result<u8> {
    let provider = match args.provider {
        InitProvider::Aws => ProviderKind::Aws,
        InitProvider::Gcp => ProviderKind::Gcp,
        InitProvider::Do => ProviderKind::Do,
        InitProvider::Existing => ProviderKind::Existing,
        InitProvider::Local => ProviderKind::Local,
        InitProvider::Sandbox => ProviderKind::Sandbox,
    };
    let project = ask(
        "Project name",
        &args.project,
        "--project",
        args.disable_prompt,
    )?;
    let domain = ask("Domain", &args.domain, "--domain", args.disable_prompt)?;
    let gcp_project = match provider {
        ProviderKind::Gcp => Some(ask(
            "GCP project id",
            &args.gcp_project,
            "--gcp-project",
            args.disable_prompt,
        )?),
        _ => None,
    };
    let opts = InitOptions {
        provider,
        project,
        domain,
        namespace: args.namespace.clone(),
        auth: match args.auth_provider {
            AuthProvider::Password => AuthenticationKind::Password,
            AuthProvider::Github => AuthenticationKind::GitHub,
            AuthProvider::Auth0 => AuthenticationKind::Auth0,
        },
        ci: match args.ci_provider {
            CiProvider::GithubActions => CiKind::GithubActions,
            CiProvider::GitlabCi => CiKind::GitlabCi,
            CiProvider::None => CiKind::None,
        },
        kubernetes_version: args.kubernetes_version.clone(),
        region: args.region.clone(),
        gcp_project,
        // Nothing secret goes into the file: it is meant for version control.
        root_password: None,
    };
    let config = init::write(&opts, &args.config)?;
    match format {
        OutputFormat::Json => crate::output::json(&serde_json::json!({
            "file": args.config,
            "provider": config.provider,
            "project_name": config.project_name,
            "domain": config.domain,
            "namespace": config.namespace,
        }))?,
        OutputFormat::Text => {
            println!(
                "wrote {} (provider {}, project {}, domain {})",
                args.config.display(),
                config.provider,
                config.project_name,
                config.domain
            );
            println!(
                "{} holds no secret and can go into version control: the first deploy generates Keycloak's admin (`root`) password into the Secret `keycloak-admin` in namespace `{}` (print it with `{}`); other secrets come from the environment (a value `QHUB_SECRET_NAME` in the config reads $NAME)",
                args.config.display(),
                config.namespace,
                crate::command_for("secrets show keycloak-admin", &args.config),
            );
            match opts.auth {
                AuthenticationKind::GitHub => println!(
                    "create a GitHub OAuth app with callback https://{}/auth/realms/qhub/broker/github/endpoint and export GITHUB_CLIENT_ID and GITHUB_CLIENT_SECRET",
                    config.domain
                ),
                AuthenticationKind::Auth0 => println!(
                    "export AUTH0_CLIENT_ID, AUTH0_CLIENT_SECRET and AUTH0_SUBDOMAIN for your Auth0 application"
                ),
                AuthenticationKind::Password => {}
            }
            println!("next: qhub validate -c {}", args.config.display());
        }
    }
    Ok(0)
}
