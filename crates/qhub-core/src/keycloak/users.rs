//! The people of a deployment: Keycloak users of realm [`REALM`](super::REALM), managed by
//! `qhub users` through the admin API ([`AdminClient`]). Unlike the realm, groups and clients
//! these are not planned from the config (users live in Keycloak, not in the config file);
//! each operation says what it changed ([`Outcome`]).
//!
//! Errors name the user or group and the fix: an unknown group lists the existing ones; adding
//! a user that exists is a no-op when nothing differs, and an error naming what differs
//! otherwise. Passwords travel only in the request that sets them ([`SecretString`]).

use std::collections::BTreeSet;

use serde::Serialize;

use super::client::{CredentialRepresentation, UserRepresentation};
use super::{AdminClient, KeycloakError, SecretString};

/// A user as `qhub users list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserInfo {
    /// User name.
    pub username: String,
    /// E-mail address, if any.
    pub email: Option<String>,
    /// Whether the user can log in.
    pub enabled: bool,
    /// The groups the user is a member of, sorted.
    pub groups: Vec<String>,
}

/// A user to add.
#[derive(Debug, Clone, Default)]
pub struct NewUser {
    /// User name.
    pub username: String,
    /// E-mail address.
    pub email: Option<String>,
    /// Groups to join, besides the realm's default groups (which Keycloak adds on creation).
    pub groups: Vec<String>,
    /// The initial password; none: the user cannot log in with a password until one is set.
    pub password: Option<SecretString>,
}

/// What an operation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The user was created.
    Created,
    /// The user was deleted.
    Removed,
    /// The password was set.
    PasswordSet,
    /// The user joined the group.
    Added,
    /// The user left the group.
    Left,
    /// Nothing needed changing.
    Unchanged,
}

/// Errors of [`Users`]: each names the user or group, and what to do.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    /// The user name cannot be a Keycloak user name.
    #[error("`{username}` is not a valid user name: {why}")]
    InvalidName {
        /// The name given.
        username: String,
        /// Why.
        why: String,
    },
    /// No such user.
    #[error(
        "user `{username}` does not exist in realm {realm}: `qhub users list` shows the users, `qhub users add {username}` creates it"
    )]
    UnknownUser {
        /// The user name.
        username: String,
        /// The realm.
        realm: String,
    },
    /// No such group.
    #[error(
        "group `{group}` does not exist in realm {realm}; the groups are: {}. Groups are created by `qhub deploy` (security.shared_users_group adds `users`)",
        existing.join(", ")
    )]
    UnknownGroup {
        /// The group name.
        group: String,
        /// The realm.
        realm: String,
        /// The groups that exist.
        existing: Vec<String>,
    },
    /// `add` of a user that exists with other settings.
    #[error("user `{username}` already exists with {}; {fix}", differences.join(", "))]
    Differs {
        /// The user name.
        username: String,
        /// What differs, e.g. `email a@b (not c@d)`.
        differences: Vec<String>,
        /// What to do.
        fix: String,
    },
    /// The realm does not exist yet.
    #[error("realm {realm} does not exist yet: `qhub deploy` creates it")]
    NoRealm {
        /// The realm.
        realm: String,
    },
    /// The admin API failed.
    #[error(transparent)]
    Keycloak(#[from] KeycloakError),
}

/// The users of one realm.
#[derive(Debug, Clone, Copy)]
pub struct Users<'a> {
    client: &'a AdminClient,
    realm: &'a str,
}

/// A user name as Keycloak stores it (lower case), or why it cannot be one.
pub fn normalize(username: &str) -> Result<String, UserError> {
    let invalid = |why: &str| UserError::InvalidName {
        username: username.to_string(),
        why: why.to_string(),
    };
    let name = username.trim();
    if name.is_empty() {
        return Err(invalid("it is empty"));
    }
    if name.len() > 255 {
        return Err(invalid("it is longer than 255 characters"));
    }
    if name.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(invalid("it contains a space or a control character"));
    }
    Ok(name.to_lowercase())
}

impl<'a> Users<'a> {
    /// The users of `realm` through `client`.
    pub fn new(client: &'a AdminClient, realm: &'a str) -> Self {
        Self { client, realm }
    }

    async fn check_realm(&self) -> Result<(), UserError> {
        match self.client.realm(self.realm).await? {
            Some(_) => Ok(()),
            None => Err(UserError::NoRealm {
                realm: self.realm.to_string(),
            }),
        }
    }

    async fn find(&self, username: &str) -> Result<(String, UserRepresentation), UserError> {
        let name = normalize(username)?;
        self.check_realm().await?;
        let user = self
            .client
            .user_by_username(self.realm, &name)
            .await?
            .ok_or_else(|| UserError::UnknownUser {
                username: name.clone(),
                realm: self.realm.to_string(),
            })?;
        let id = user.id.clone().ok_or_else(|| KeycloakError::Decode {
            what: format!("find user {name}"),
            message: "the user has no id".into(),
        })?;
        Ok((id, user))
    }

    /// The ids of `names` among the realm's groups; an unknown one is an error listing them.
    async fn group_ids(&self, names: &[String]) -> Result<Vec<(String, String)>, UserError> {
        let groups = self.client.groups(self.realm).await?;
        names
            .iter()
            .map(|name| {
                groups
                    .iter()
                    .find(|g| g.name == *name)
                    .and_then(|g| g.id.clone().map(|id| (id, name.clone())))
                    .ok_or_else(|| UserError::UnknownGroup {
                        group: name.clone(),
                        realm: self.realm.to_string(),
                        existing: groups.iter().map(|g| g.name.clone()).collect(),
                    })
            })
            .collect()
    }

    async fn groups_of(&self, id: &str, username: &str) -> Result<BTreeSet<String>, UserError> {
        Ok(self
            .client
            .user_groups(self.realm, id, username)
            .await?
            .into_iter()
            .map(|g| g.name)
            .collect())
    }

    /// Every user with its groups, sorted by name.
    pub async fn list(&self) -> Result<Vec<UserInfo>, UserError> {
        self.check_realm().await?;
        let mut out = Vec::new();
        for u in self.client.users(self.realm).await? {
            let groups = match &u.id {
                Some(id) => self.groups_of(id, &u.username).await?,
                None => BTreeSet::new(),
            };
            out.push(UserInfo {
                username: u.username,
                email: u.email,
                enabled: u.enabled.unwrap_or(true),
                groups: groups.into_iter().collect(),
            });
        }
        out.sort_by(|a, b| a.username.cmp(&b.username));
        Ok(out)
    }

    /// The user `username`.
    pub async fn get(&self, username: &str) -> Result<UserInfo, UserError> {
        let (id, u) = self.find(username).await?;
        Ok(UserInfo {
            groups: self
                .groups_of(&id, &u.username)
                .await?
                .into_iter()
                .collect(),
            username: u.username,
            email: u.email,
            enabled: u.enabled.unwrap_or(true),
        })
    }

    /// Adds a user, joined to its groups. A user that exists already is [`Outcome::Unchanged`]
    /// when its e-mail and groups (those asked for and the realm's default groups) are the ones
    /// asked for and no password is given; otherwise [`UserError::Differs`].
    pub async fn add(&self, new: &NewUser) -> Result<Outcome, UserError> {
        let name = normalize(&new.username)?;
        self.check_realm().await?;
        let wanted = self.group_ids(&new.groups).await?;
        if let Some(existing) = self.client.user_by_username(self.realm, &name).await? {
            let id = existing.id.clone().unwrap_or_default();
            let mut differences = Vec::new();
            if new.email.is_some() && existing.email != new.email {
                differences.push(format!(
                    "e-mail {} (not {})",
                    existing.email.as_deref().unwrap_or("none"),
                    new.email.as_deref().unwrap_or("none")
                ));
            }
            let has = self.groups_of(&id, &name).await?;
            let defaults: BTreeSet<String> = self
                .client
                .default_groups(self.realm)
                .await?
                .into_iter()
                .map(|g| g.name)
                .collect();
            let mut expected: BTreeSet<String> = new.groups.iter().cloned().collect();
            expected.extend(defaults);
            if has != expected {
                differences.push(format!("groups {} (not {})", join(&has), join(&expected)));
            }
            if new.password.is_some() {
                differences.push("a password that cannot be compared".into());
            }
            if differences.is_empty() {
                return Ok(Outcome::Unchanged);
            }
            return Err(UserError::Differs {
                username: name.clone(),
                differences,
                fix: format!(
                    "change it with `qhub users add-to-group`/`remove-from-group`/`set-password {name} --password-stdin`, or `qhub users remove {name}` and add it again"
                ),
            });
        }
        let rep = UserRepresentation {
            id: None,
            username: name.clone(),
            email: new.email.clone(),
            enabled: Some(true),
            credentials: new
                .password
                .iter()
                .map(|p| CredentialRepresentation::password(p.clone(), false))
                .collect(),
        };
        let id = self.client.create_user(self.realm, &rep).await?;
        for (group_id, group) in &wanted {
            self.client
                .add_user_to_group(self.realm, &id, &name, group_id, group)
                .await?;
        }
        tracing::info!(user = %name, "created user");
        Ok(Outcome::Created)
    }

    /// Deletes the user.
    pub async fn remove(&self, username: &str) -> Result<Outcome, UserError> {
        let (id, u) = self.find(username).await?;
        self.client
            .delete_user(self.realm, &id, &u.username)
            .await?;
        tracing::info!(user = %u.username, "deleted user");
        Ok(Outcome::Removed)
    }

    /// Sets the user's password (`temporary`: to be changed at the next login).
    pub async fn set_password(
        &self,
        username: &str,
        password: &SecretString,
        temporary: bool,
    ) -> Result<Outcome, UserError> {
        let (id, u) = self.find(username).await?;
        let credential = CredentialRepresentation::password(password.clone(), temporary);
        self.client
            .reset_password(self.realm, &id, &u.username, &credential)
            .await?;
        tracing::info!(user = %u.username, "set the password");
        Ok(Outcome::PasswordSet)
    }

    /// Makes the user a member of `group` ([`Outcome::Unchanged`] when it is one).
    pub async fn add_to_group(&self, username: &str, group: &str) -> Result<Outcome, UserError> {
        let (id, u) = self.find(username).await?;
        let (group_id, group) = self.group_ids(&[group.to_string()]).await?.remove(0);
        if self.groups_of(&id, &u.username).await?.contains(&group) {
            return Ok(Outcome::Unchanged);
        }
        self.client
            .add_user_to_group(self.realm, &id, &u.username, &group_id, &group)
            .await?;
        Ok(Outcome::Added)
    }

    /// Takes the user out of `group` ([`Outcome::Unchanged`] when it is no member).
    pub async fn remove_from_group(
        &self,
        username: &str,
        group: &str,
    ) -> Result<Outcome, UserError> {
        let (id, u) = self.find(username).await?;
        let (group_id, group) = self.group_ids(&[group.to_string()]).await?.remove(0);
        if !self.groups_of(&id, &u.username).await?.contains(&group) {
            return Ok(Outcome::Unchanged);
        }
        self.client
            .remove_user_from_group(self.realm, &id, &u.username, &group_id, &group)
            .await?;
        Ok(Outcome::Left)
    }
}

fn join(set: &BTreeSet<String>) -> String {
    if set.is_empty() {
        "none".into()
    } else {
        set.iter().cloned().collect::<Vec<_>>().join(", ")
    }
}

/// A random 20-character password of letters and digits (for `set-password --generate`).
pub fn generate_password() -> String {
    use rand::Rng as _;
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..20)
        .map(|_| CHARS[rng.random_range(0..CHARS.len())] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_names_are_lower_case_and_without_spaces() {
        assert_eq!(normalize(" Alice ").unwrap(), "alice");
        assert!(normalize("").is_err());
        assert!(normalize("a b").is_err());
        let p = generate_password();
        assert_eq!(p.len(), 20);
        assert!(p.chars().all(|c| c.is_ascii_alphanumeric()));
    }
}
