//! The user routes, as keycloak/keycloak 26.x answers them
//! (`services/src/main/java/org/keycloak/services/resources/admin/UsersResource.java`,
//! `UserResource.java`; <https://www.keycloak.org/docs-api/26.0.0/rest-api/index.html#_users>):
//! user names are kept in lower case; a duplicate user name or e-mail is 409 ("User exists
//! with same username" / "... email"); a new user joins the realm's default groups; an unknown
//! user or group is 404; a blank password is 400; passwords are kept only as SHA-256 hashes
//! and never answered.

use std::collections::BTreeSet;

use serde_json::{Value as Json, json};
use sha2::Digest as _;

use super::{Answer, Err, Res, State, object, str_field, uuid};

/// The fields of `UserRepresentation` (Keycloak 26.x).
const USER_FIELDS: &[&str] = &[
    "id",
    "username",
    "firstName",
    "lastName",
    "email",
    "emailVerified",
    "enabled",
    "createdTimestamp",
    "attributes",
    "credentials",
    "requiredActions",
    "groups",
    "federatedIdentities",
    "realmRoles",
    "clientRoles",
    "access",
    "notBefore",
    "totp",
    "self",
    "origin",
    "serviceAccountClientId",
    "disableableCredentialTypes",
    "federationLink",
    "userProfileMetadata",
];

/// The fields of `CredentialRepresentation` (Keycloak 26.x).
const CREDENTIAL_FIELDS: &[&str] = &[
    "id",
    "type",
    "userLabel",
    "createdDate",
    "secretData",
    "credentialData",
    "priority",
    "value",
    "temporary",
    "federationLink",
];

/// What the emulator keeps of a password.
pub(in crate::keycloak_api) fn password_hash(password: &str) -> String {
    format!("{:x}", sha2::Sha256::digest(password.as_bytes()))
}

/// The password of a credential, or the 400 Keycloak answers.
fn password_of(m: &serde_json::Map<String, Json>) -> Result<(String, bool), Err> {
    if m.get("type").and_then(Json::as_str).unwrap_or("password") != "password" {
        return Err(Err::bad_request("only password credentials are supported"));
    }
    let value = m
        .get("value")
        .and_then(Json::as_str)
        .ok_or_else(|| Err::bad_request("No password provided"))?;
    if value.trim().is_empty() {
        return Err(Err::bad_request("Empty password"));
    }
    let temporary = m.get("temporary").and_then(Json::as_bool).unwrap_or(false);
    Ok((password_hash(value), temporary))
}

impl State {
    fn user_exists(&self, realm: &str, id: &str) -> Result<(), Err> {
        if self.realm(realm)?.users.contains_key(id) {
            Ok(())
        } else {
            Err(Err::not_found("user"))
        }
    }

    pub fn list_users(
        &self,
        realm: &str,
        username: Option<&str>,
        exact: bool,
        first: usize,
        max: usize,
    ) -> Res {
        let r = self.realm(realm)?;
        let mut users: Vec<Json> = r
            .users
            .values()
            .filter(|u| {
                let name = u["username"].as_str().unwrap_or_default();
                match username.map(str::to_lowercase) {
                    None => true,
                    Some(want) if exact => name == want,
                    Some(want) => name.contains(&want),
                }
            })
            .cloned()
            .collect();
        users.sort_by(|a, b| a["username"].as_str().cmp(&b["username"].as_str()));
        Ok(Answer::json(Json::Array(
            users.into_iter().skip(first).take(max).collect(),
        )))
    }

    pub fn create_user(&mut self, realm: &str, body: &[u8], base: &str) -> Res {
        let mut m = object(body, USER_FIELDS, "UserRepresentation")?;
        let username = str_field(&m, "username")
            .ok_or_else(|| Err::bad_request("User name is missing"))?
            .to_lowercase();
        let credentials: Vec<(String, bool)> = match m.remove("credentials") {
            Some(Json::Array(items)) => items
                .into_iter()
                .map(|c| {
                    let bytes = serde_json::to_vec(&c).unwrap_or_default();
                    password_of(&object(
                        &bytes,
                        CREDENTIAL_FIELDS,
                        "CredentialRepresentation",
                    )?)
                })
                .collect::<Result<_, _>>()?,
            _ => Vec::new(),
        };
        let group_paths: Vec<String> = match m.remove("groups") {
            Some(Json::Array(items)) => items
                .iter()
                .filter_map(|g| g.as_str().map(str::to_string))
                .collect(),
            _ => Vec::new(),
        };
        let r = self.realm_mut(realm)?;
        if r.users.values().any(|u| u["username"] == username.as_str()) {
            return Err(Err::conflict("User exists with same username"));
        }
        if let Some(email) = str_field(&m, "email")
            && r.users.values().any(|u| u["email"] == email)
        {
            return Err(Err::conflict("User exists with same email"));
        }
        let mut groups: BTreeSet<String> = r.default_groups.clone();
        for path in &group_paths {
            let id = r
                .groups
                .iter()
                .find(|(_, g)| g["path"] == path.as_str())
                .map(|(id, _)| id.clone())
                .ok_or_else(|| Err::bad_request(format!("Group {path} not found")))?;
            groups.insert(id);
        }
        let id = uuid();
        let mut rep = json!({"id": id, "enabled": false, "emailVerified": false});
        for (k, v) in m {
            if !v.is_null() && k != "id" {
                rep[k.as_str()] = v;
            }
        }
        rep["username"] = json!(username);
        r.users.insert(id.clone(), rep);
        r.memberships.insert(id.clone(), groups);
        if let Some((hash, _)) = credentials.last() {
            r.passwords.insert(id.clone(), hash.clone());
        }
        Ok(Answer::created(format!(
            "{base}/admin/realms/{realm}/users/{id}"
        )))
    }

    pub fn get_user(&self, realm: &str, id: &str) -> Res {
        self.realm(realm)?
            .users
            .get(id)
            .cloned()
            .map(Answer::json)
            .ok_or_else(|| Err::not_found("user"))
    }

    pub fn delete_user(&mut self, realm: &str, id: &str) -> Res {
        let r = self.realm_mut(realm)?;
        r.users.remove(id).ok_or_else(|| Err::not_found("user"))?;
        r.memberships.remove(id);
        r.passwords.remove(id);
        Ok(Answer::no_content())
    }

    pub fn reset_password(&mut self, realm: &str, id: &str, body: &[u8]) -> Res {
        let m = object(body, CREDENTIAL_FIELDS, "CredentialRepresentation")?;
        self.user_exists(realm, id)?;
        let (hash, _temporary) = password_of(&m)?;
        self.realm_mut(realm)?
            .passwords
            .insert(id.to_string(), hash);
        Ok(Answer::no_content())
    }

    pub fn user_groups(&self, realm: &str, id: &str) -> Res {
        self.user_exists(realm, id)?;
        let r = self.realm(realm)?;
        let mut groups: Vec<Json> = r
            .memberships
            .get(id)
            .into_iter()
            .flatten()
            .filter_map(|gid| r.groups.get(gid))
            .map(|g| json!({"id": g["id"], "name": g["name"], "path": g["path"]}))
            .collect();
        groups.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
        Ok(Answer::json(Json::Array(groups)))
    }

    pub fn change_user_group(&mut self, realm: &str, id: &str, gid: &str, join: bool) -> Res {
        self.user_exists(realm, id)?;
        let r = self.realm_mut(realm)?;
        if !r.groups.contains_key(gid) {
            return Err(Err::not_found("group"));
        }
        let member = r.memberships.entry(id.to_string()).or_default();
        if join {
            member.insert(gid.to_string());
        } else {
            member.remove(gid);
        }
        Ok(Answer::no_content())
    }
}
