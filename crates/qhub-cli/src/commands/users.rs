//! `qhub users`: the people who log in, as Keycloak users of realm `qhub`
//! ([`qhub_core::keycloak::users`]), reached the way the engine reaches Keycloak
//! ([`qhub_core::engine::Engine::keycloak_admin`]). Passwords come from stdin only (never
//! argv, never a log line); a generated one is printed once.

use std::io::Read as _;

use anyhow::Context as _;
use qhub_core::keycloak::users::{NewUser, Outcome, UserInfo, Users};
use qhub_core::keycloak::{REALM, SecretString};
use qhub_core::provider::ProviderError;
use serde_json::json;

use crate::UsageError;
use crate::cli::{ApplyArgs, TargetArgs, UsersCommand};
use crate::output::OutputFormat;

/// The config file a `qhub users` command names.
fn config_of(cmd: &UsersCommand) -> &std::path::Path {
    match cmd {
        UsersCommand::Add(a) => &a.config,
        UsersCommand::List(a) => &a.config,
        UsersCommand::Remove(a) => &a.config,
        UsersCommand::SetPassword(a) => &a.config,
        UsersCommand::AddToGroup(a) | UsersCommand::RemoveFromGroup(a) => &a.config,
    }
}

/// A password from stdin: everything read, without one trailing newline; blank is an error.
fn password_from_stdin() -> anyhow::Result<SecretString> {
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .context("reading the password from stdin")?;
    let value = text
        .strip_suffix("\r\n")
        .or_else(|| text.strip_suffix('\n'))
        .unwrap_or(&text);
    if value.trim().is_empty() {
        return Err(UsageError {
            message: "--password-stdin read an empty password: pipe it in, e.g. `printf %s \"$PASSWORD\" | qhub users …`".into(),
        }
        .into());
    }
    Ok(SecretString::new(value))
}

/// What one change printed: the document with `--output json`, a line otherwise.
struct Done {
    action: &'static str,
    user: String,
    group: Option<String>,
    outcome: Outcome,
    password: Option<SecretString>,
}

fn outcome_text(done: &Done) -> String {
    let user = &done.user;
    match (done.outcome, &done.group) {
        (Outcome::Created, _) => format!("created user {user}"),
        (Outcome::Removed, _) => format!("deleted user {user}"),
        (Outcome::PasswordSet, _) => format!("set the password of user {user}"),
        (Outcome::Added, Some(g)) => format!("added user {user} to group {g}"),
        (Outcome::Left, Some(g)) => format!("removed user {user} from group {g}"),
        (Outcome::Unchanged, Some(g)) => {
            format!("user {user}: membership of group {g} already as asked, nothing changed")
        }
        _ => format!("user {user} already exists as asked, nothing changed"),
    }
}

/// Runs a `qhub users` command.
pub fn run(cmd: &UsersCommand, format: OutputFormat) -> anyhow::Result<u8> {
    let config = config_of(cmd).to_path_buf();
    // Read before anything else: a prompt-less pipe is all there is.
    let password = match cmd {
        UsersCommand::Add(a) if a.password_stdin => Some(password_from_stdin()?),
        UsersCommand::SetPassword(a) if a.password_stdin => Some(password_from_stdin()?),
        UsersCommand::SetPassword(_) => Some(SecretString::new(
            qhub_core::keycloak::users::generate_password(),
        )),
        _ => None,
    };
    let target = TargetArgs {
        config: config.clone(),
        stage: None,
    };
    let s = super::lifecycle::session_with(
        &target,
        &ApplyArgs::default(),
        &[],
        qhub_core::engine::dns::DnsOptions::default(),
    )?;
    let kc = match s.runtime.block_on(s.engine.keycloak_admin(&s.config)) {
        Ok(kc) => kc,
        Err(ProviderError::NoCluster(why)) => anyhow::bail!(
            "the deployment has no Keycloak to manage users in yet ({why}): run `{}` first",
            crate::command_for("deploy", &config)
        ),
        Err(e) => return Err(anyhow::Error::new(e).context("reaching Keycloak's admin API")),
    };
    let users = Users::new(kc.client(), REALM);
    if let UsersCommand::List(_) = cmd {
        let list = s.runtime.block_on(users.list())?;
        print_list(&list, format)?;
        return Ok(0);
    }
    let done = s.runtime.block_on(async {
        anyhow::Ok(match cmd {
            UsersCommand::List(_) => anyhow::bail!("internal: list is answered above"),
            UsersCommand::Add(a) => {
                let new = NewUser {
                    username: a.username.clone(),
                    email: a.email.clone(),
                    groups: a.groups.clone(),
                    password: password.clone(),
                };
                Done {
                    action: "add",
                    user: qhub_core::keycloak::users::normalize(&a.username)?,
                    group: None,
                    outcome: users.add(&new).await?,
                    password: None,
                }
            }
            UsersCommand::Remove(a) => Done {
                action: "remove",
                user: qhub_core::keycloak::users::normalize(&a.username)?,
                group: None,
                outcome: users.remove(&a.username).await?,
                password: None,
            },
            UsersCommand::SetPassword(a) => {
                let value = password.clone().unwrap_or_default();
                Done {
                    action: "set_password",
                    user: qhub_core::keycloak::users::normalize(&a.username)?,
                    group: None,
                    outcome: users.set_password(&a.username, &value, a.temporary).await?,
                    password: a.generate.then_some(value),
                }
            }
            UsersCommand::AddToGroup(a) => Done {
                action: "add_to_group",
                user: qhub_core::keycloak::users::normalize(&a.username)?,
                group: Some(a.group.clone()),
                outcome: users.add_to_group(&a.username, &a.group).await?,
                password: None,
            },
            UsersCommand::RemoveFromGroup(a) => Done {
                action: "remove_from_group",
                user: qhub_core::keycloak::users::normalize(&a.username)?,
                group: Some(a.group.clone()),
                outcome: users.remove_from_group(&a.username, &a.group).await?,
                password: None,
            },
        })
    })?;
    let after = match done.outcome {
        Outcome::Removed => None,
        _ => Some(s.runtime.block_on(users.get(&done.user))?),
    };
    match format {
        OutputFormat::Json => {
            let mut doc = json!({
                "realm": REALM,
                "action": done.action,
                "username": done.user,
                "outcome": done.outcome,
                "changed": done.outcome != Outcome::Unchanged,
                "user": after,
            });
            if let Some(g) = &done.group {
                doc["group"] = g.as_str().into();
            }
            if let Some(p) = &done.password {
                doc["generated_password"] = p.expose().into();
            }
            crate::output::json(&doc)?;
        }
        OutputFormat::Text => {
            let mut line = outcome_text(&done);
            if let Some(u) = &after {
                line.push_str(&format!(" (groups: {})", groups_text(u)));
            }
            match &done.password {
                // The password alone on stdout (for a pipe); the sentence on stderr.
                Some(p) => {
                    eprintln!("{line}; its generated password (shown once):");
                    crate::output::stdout(&format!("{}\n", p.expose()))?;
                }
                None => crate::output::stdout(&format!("{line}\n"))?,
            }
        }
    }
    Ok(0)
}

fn groups_text(u: &UserInfo) -> String {
    if u.groups.is_empty() {
        "none".into()
    } else {
        u.groups.join(", ")
    }
}

fn print_list(list: &[UserInfo], format: OutputFormat) -> anyhow::Result<()> {
    match format {
        OutputFormat::Json => crate::output::json(&json!({ "realm": REALM, "users": list })),
        OutputFormat::Text => {
            if list.is_empty() {
                return crate::output::stdout(&format!(
                    "no users in realm {REALM}: add one with `qhub users add NAME`\n"
                ));
            }
            let width = list
                .iter()
                .map(|u| u.username.len())
                .max()
                .unwrap_or(0)
                .max(8);
            let email_width = list
                .iter()
                .map(|u| u.email.as_deref().unwrap_or("-").len())
                .max()
                .unwrap_or(0)
                .max(5);
            let mut out = format!(
                "{:<width$}  {:<email_width$}  GROUPS\n",
                "USERNAME", "EMAIL"
            );
            for u in list {
                let disabled = if u.enabled { "" } else { "  (disabled)" };
                out.push_str(&format!(
                    "{:<width$}  {:<email_width$}  {}{disabled}\n",
                    u.username,
                    u.email.as_deref().unwrap_or("-"),
                    groups_text(u)
                ));
            }
            crate::output::stdout(&out)
        }
    }
}
