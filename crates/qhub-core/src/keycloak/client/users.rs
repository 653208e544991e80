//! The user endpoints of the admin API that `qhub users` needs: keycloak/keycloak 26.x
//! `services/src/main/java/org/keycloak/services/resources/admin/UsersResource.java` (list,
//! create: 409 "User exists with same username") and `UserResource.java` (delete,
//! `reset-password`, `groups`, `groups/{groupId}`); documented in the Admin REST API reference,
//! <https://www.keycloak.org/docs-api/26.0.0/rest-api/index.html#_users>.

use reqwest::Method;

use super::{
    AdminClient, CredentialRepresentation, GroupRepresentation, UserRepresentation, encode,
};
use crate::keycloak::KeycloakError;

/// Users asked for per page of `GET /users`.
const PAGE: usize = 100;

impl AdminClient {
    fn users_path(realm: &str) -> String {
        format!("{}/users", Self::realm_path(realm))
    }

    fn user_path(realm: &str, id: &str) -> String {
        format!("{}/{}", Self::users_path(realm), encode(id))
    }

    /// `GET /admin/realms/{realm}/users`, every page: all users of the realm.
    pub async fn users(&self, realm: &str) -> Result<Vec<UserRepresentation>, KeycloakError> {
        let mut out: Vec<UserRepresentation> = Vec::new();
        loop {
            let path = format!(
                "{}?briefRepresentation=false&first={}&max={PAGE}",
                Self::users_path(realm),
                out.len()
            );
            let page: Vec<UserRepresentation> = self
                .get(&path, &format!("list users of realm {realm}"))
                .await?;
            let n = page.len();
            out.extend(page);
            if n < PAGE {
                return Ok(out);
            }
        }
    }

    /// `GET /admin/realms/{realm}/users?username=…&exact=true`: the user named `username`
    /// (Keycloak compares user names in lower case), if any.
    pub async fn user_by_username(
        &self,
        realm: &str,
        username: &str,
    ) -> Result<Option<UserRepresentation>, KeycloakError> {
        let path = format!(
            "{}?username={}&exact=true&briefRepresentation=false",
            Self::users_path(realm),
            encode(username)
        );
        let found: Vec<UserRepresentation> =
            self.get(&path, &format!("find user {username}")).await?;
        Ok(found
            .into_iter()
            .find(|u| u.username.eq_ignore_ascii_case(username)))
    }

    /// `POST /admin/realms/{realm}/users`; returns the new user's id.
    pub async fn create_user(
        &self,
        realm: &str,
        rep: &UserRepresentation,
    ) -> Result<String, KeycloakError> {
        let what = format!("create user {}", rep.username);
        let reply = self
            .write(Method::POST, &Self::users_path(realm), Some(rep), &what)
            .await?;
        Self::created_id(&reply, &what)
    }

    /// `DELETE /admin/realms/{realm}/users/{id}`.
    pub async fn delete_user(
        &self,
        realm: &str,
        id: &str,
        username: &str,
    ) -> Result<(), KeycloakError> {
        let what = format!("delete user {username}");
        self.write::<()>(Method::DELETE, &Self::user_path(realm, id), None, &what)
            .await
            .map(drop)
    }

    /// `PUT /admin/realms/{realm}/users/{id}/reset-password`.
    pub async fn reset_password(
        &self,
        realm: &str,
        id: &str,
        username: &str,
        credential: &CredentialRepresentation,
    ) -> Result<(), KeycloakError> {
        let what = format!("set the password of user {username}");
        let path = format!("{}/reset-password", Self::user_path(realm, id));
        self.write(Method::PUT, &path, Some(credential), &what)
            .await
            .map(drop)
    }

    /// `GET /admin/realms/{realm}/users/{id}/groups`: the groups the user is a member of.
    pub async fn user_groups(
        &self,
        realm: &str,
        id: &str,
        username: &str,
    ) -> Result<Vec<GroupRepresentation>, KeycloakError> {
        let path = format!("{}/groups?max=1000", Self::user_path(realm, id));
        self.get(&path, &format!("list the groups of user {username}"))
            .await
    }

    /// `PUT /admin/realms/{realm}/users/{id}/groups/{groupId}`: joins the group (a no-op when
    /// already a member).
    pub async fn add_user_to_group(
        &self,
        realm: &str,
        id: &str,
        username: &str,
        group_id: &str,
        group: &str,
    ) -> Result<(), KeycloakError> {
        let what = format!("add user {username} to group {group}");
        let path = format!("{}/groups/{}", Self::user_path(realm, id), encode(group_id));
        self.write::<()>(Method::PUT, &path, None, &what)
            .await
            .map(drop)
    }

    /// `DELETE /admin/realms/{realm}/users/{id}/groups/{groupId}`: leaves the group.
    pub async fn remove_user_from_group(
        &self,
        realm: &str,
        id: &str,
        username: &str,
        group_id: &str,
        group: &str,
    ) -> Result<(), KeycloakError> {
        let what = format!("remove user {username} from group {group}");
        let path = format!("{}/groups/{}", Self::user_path(realm, id), encode(group_id));
        self.write::<()>(Method::DELETE, &path, None, &what)
            .await
            .map(drop)
    }
}
