//! Observing what exists in Keycloak, in the shape [`super::desired`] plans, and applying one
//! change of a plan.
//!
//! What is observed: the realm; its top-level groups that carry our mark or have a name we
//! manage ([`GROUPS`]); the identity providers and clients likewise (by mark, or by an alias or
//! clientId the config could want). Anything else in the realm (users' own groups, clients
//! added by hand) is neither shown nor deleted.
//!
//! Every apply is idempotent: a create of something that exists updates it; an update changes
//! only what differs (so it sends no request for parts already right); a delete of something
//! gone is done.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value as Json;

use super::client::{
    AdminClient, ClientRepresentation, GroupRepresentation, IdentityProviderRepresentation,
    ProtocolMapperRepresentation, RealmRepresentation, RoleRepresentation, SecretString,
};
use super::desired::{
    GROUPS, KIND_CLIENT, KIND_GROUP, KIND_IDENTITY_PROVIDER, KIND_REALM, MANAGED_BY,
    MANAGED_BY_KEY, SECRET_HASH_KEY, Secrets, client_base_spec, client_depends_on, client_spec,
    group_spec, identity_provider_spec, mappers_spec, realm_id, realm_spec,
};
use super::error::KeycloakError;
use crate::plan::{Action, Change, Observed, ResourceId, ResourceState, Stage};

/// Identity-provider aliases this module ever plans, so they are observed even without our
/// mark (a realm QHub configured, adopted). Clients are likewise observed by the ids the
/// enabled components declare (the `declared` argument of [`observe`]).
const KNOWN_ALIASES: [&str; 2] = ["github", "auth0"];

fn observed(
    kind: &str,
    name: &str,
    spec: Json,
    deps: Vec<ResourceId>,
    id: Option<String>,
) -> Observed {
    let mut o = Observed::new(
        ResourceId::new(kind, name),
        Stage::Kubernetes,
        spec,
        ResourceState::Ready,
    );
    o.depends_on = deps;
    o.payload = id.as_ref().map(|i| serde_json::json!({ "id": i }));
    o.cloud_id = id;
    o
}

/// Reads what exists in `realm` and belongs to this deployment: what carries our mark, and
/// the clients whose id is among `declared` (the platform's clients, by the components that
/// declare them) even without it, so a realm QHub configured is adopted.
pub async fn observe(
    client: &AdminClient,
    realm: &str,
    declared: &[&str],
) -> Result<Vec<Observed>, KeycloakError> {
    let Some(realm_rep) = client.realm(realm).await? else {
        return Ok(Vec::new());
    };
    let mut out = vec![observed(
        KIND_REALM,
        realm,
        realm_spec(&realm_rep),
        Vec::new(),
        realm_rep.id.clone(),
    )];
    let groups: Vec<GroupRepresentation> = client
        .groups(realm)
        .await?
        .into_iter()
        .filter(|g| GROUPS.contains(&g.name.as_str()) || group_marked(g))
        .collect();
    let defaults: BTreeSet<String> = client
        .default_groups(realm)
        .await?
        .into_iter()
        .filter_map(|g| g.id)
        .collect();
    // Every client-role mapping of each managed group, by clientId.
    let mut mappings_by_group: BTreeMap<String, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    for g in &groups {
        let id = g.id.clone().unwrap_or_default();
        let is_default = defaults.contains(&id);
        out.push(observed(
            KIND_GROUP,
            &g.name,
            group_spec(g, is_default),
            vec![realm_id()],
            Some(id.clone()),
        ));
        let m = client.group_role_mappings(realm, &id, &g.name).await?;
        mappings_by_group.insert(
            g.name.clone(),
            m.client_mappings
                .into_iter()
                .map(|(client_id, cm)| {
                    (client_id, cm.mappings.into_iter().map(|r| r.name).collect())
                })
                .collect(),
        );
    }
    for idp in client.identity_providers(realm).await? {
        let marked = idp.config.get(MANAGED_BY_KEY).map(String::as_str) == Some(MANAGED_BY);
        if marked || KNOWN_ALIASES.contains(&idp.alias.as_str()) {
            out.push(observed(
                KIND_IDENTITY_PROVIDER,
                &idp.alias,
                identity_provider_spec(&idp),
                vec![realm_id()],
                Some(idp.alias.clone()),
            ));
        }
    }
    for c in client.clients(realm).await? {
        let marked = c.attributes.get(MANAGED_BY_KEY).map(String::as_str) == Some(MANAGED_BY);
        if !marked && !declared.contains(&c.client_id.as_str()) {
            continue;
        }
        let uuid = c.id.clone().unwrap_or_default();
        let roles: Vec<String> = client
            .client_roles(realm, &uuid, &c.client_id)
            .await?
            .into_iter()
            .map(|r| r.name)
            .collect();
        let mappings: BTreeMap<String, Vec<String>> = mappings_by_group
            .iter()
            .map(|(g, by_client)| {
                (
                    g.clone(),
                    by_client.get(&c.client_id).cloned().unwrap_or_default(),
                )
            })
            .collect();
        out.push(observed(
            KIND_CLIENT,
            &c.client_id,
            client_spec(&c, &roles, &mappings),
            client_depends_on(&mappings),
            Some(uuid),
        ));
    }
    Ok(out)
}

fn group_marked(g: &GroupRepresentation) -> bool {
    g.attributes
        .get(MANAGED_BY_KEY)
        .is_some_and(|v| v.iter().any(|m| m == MANAGED_BY))
}

fn representation<T: serde::de::DeserializeOwned>(change: &Change) -> Result<T, KeycloakError> {
    let what = change.id.to_string();
    let payload = change
        .desired
        .as_ref()
        .and_then(|d| d.payload.as_ref())
        .and_then(|p| p.get("representation"))
        .ok_or_else(|| KeycloakError::Decode {
            what: what.clone(),
            message: "the planned change carries no representation".into(),
        })?;
    serde_json::from_value(payload.clone()).map_err(|e| KeycloakError::Decode {
        what,
        message: e.to_string(),
    })
}

fn desired_spec(change: &Change) -> Json {
    change
        .desired
        .as_ref()
        .map(|d| d.spec.clone())
        .unwrap_or(Json::Null)
}

fn string_list(v: &Json) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Ignores a 404 (the object is gone: the delete is done).
fn gone_ok(r: Result<(), KeycloakError>) -> Result<(), KeycloakError> {
    match r {
        Err(e) if e.is_not_found() => Ok(()),
        other => other,
    }
}

/// Applies one change to `realm`, putting secrets back from `secrets`.
pub async fn apply(
    client: &AdminClient,
    realm: &str,
    secrets: &Secrets,
    change: &Change,
) -> Result<(), KeycloakError> {
    if change.action == Action::Wait {
        return Ok(());
    }
    tracing::info!(resource = %change.id, action = ?change.action, "applying a Keycloak change");
    match change.id.kind.as_str() {
        KIND_REALM => apply_realm(client, change).await,
        KIND_GROUP => apply_group(client, realm, change).await,
        KIND_IDENTITY_PROVIDER => apply_identity_provider(client, realm, secrets, change).await,
        KIND_CLIENT => apply_client(client, realm, secrets, change).await,
        other => Err(KeycloakError::NotSupported(format!(
            "resources of kind {other} are not Keycloak's"
        ))),
    }
}

async fn apply_realm(client: &AdminClient, change: &Change) -> Result<(), KeycloakError> {
    let name = change.id.name.as_str();
    if change.action == Action::Delete {
        return gone_ok(client.delete_realm(name).await);
    }
    let rep: RealmRepresentation = representation(change)?;
    if change.action == Action::Create {
        match client.create_realm(&rep).await {
            Err(e) if e.is_conflict() => {}
            other => return other,
        }
    }
    client.update_realm(name, &rep).await
}

async fn find_group(
    client: &AdminClient,
    realm: &str,
    name: &str,
) -> Result<Option<GroupRepresentation>, KeycloakError> {
    Ok(client
        .groups(realm)
        .await?
        .into_iter()
        .find(|g| g.name == name))
}

async fn apply_group(
    client: &AdminClient,
    realm: &str,
    change: &Change,
) -> Result<(), KeycloakError> {
    let name = change.id.name.as_str();
    if change.action == Action::Delete {
        let id = match change.observed.as_ref().and_then(|o| o.cloud_id.clone()) {
            Some(id) => id,
            None => match find_group(client, realm, name).await?.and_then(|g| g.id) {
                Some(id) => id,
                None => return Ok(()),
            },
        };
        return gone_ok(client.delete_group(realm, &id, name).await);
    }
    let rep: GroupRepresentation = representation(change)?;
    let want = desired_spec(change);
    let want_default = want["default"].as_bool().unwrap_or(false);
    let (id, have) = match change.action {
        Action::Create => match client.create_group(realm, &rep).await {
            Ok(id) => (id, None),
            Err(e) if e.is_conflict() => {
                let g = find_group(client, realm, name).await?.ok_or(e)?;
                let defaults = client.default_groups(realm).await?;
                let id = g.id.clone().unwrap_or_default();
                let is_default = defaults.iter().any(|d| d.id.as_deref() == Some(&id));
                (id, Some(group_spec(&g, is_default)))
            }
            Err(e) => return Err(e),
        },
        _ => {
            let o = change.observed.as_ref();
            let id = o.and_then(|o| o.cloud_id.clone()).unwrap_or_default();
            (id, o.map(|o| o.spec.clone()))
        }
    };
    let have_default = have
        .as_ref()
        .and_then(|h| h["default"].as_bool())
        .unwrap_or(false);
    if let Some(h) = &have
        && (h["name"] != want["name"] || h["attributes"] != want["attributes"])
    {
        client.update_group(realm, &id, &rep).await?;
    }
    match (want_default, have_default) {
        (true, false) => client.add_default_group(realm, &id, name).await,
        (false, true) => gone_ok(client.remove_default_group(realm, &id, name).await),
        _ => Ok(()),
    }
}

async fn apply_identity_provider(
    client: &AdminClient,
    realm: &str,
    secrets: &Secrets,
    change: &Change,
) -> Result<(), KeycloakError> {
    let alias = change.id.name.as_str();
    if change.action == Action::Delete {
        return gone_ok(client.delete_identity_provider(realm, alias).await);
    }
    let mut rep: IdentityProviderRepresentation = representation(change)?;
    let hash = rep.config.get(SECRET_HASH_KEY).cloned().unwrap_or_default();
    let secret = secrets
        .by_hash(&hash)
        .ok_or_else(|| KeycloakError::MissingSecret(format!("identity provider {alias}")))?;
    rep.config
        .insert("clientSecret".into(), secret.expose().to_string());
    if change.action == Action::Create {
        match client.create_identity_provider(realm, &rep).await {
            Err(e) if e.is_conflict() => {}
            other => return other,
        }
    }
    client.update_identity_provider(realm, &rep).await
}

/// A client as it is now: its representation, roles, and each managed group's mappings.
struct ClientNow {
    rep: ClientRepresentation,
    roles: Vec<RoleRepresentation>,
    /// Group name -> (group id, roles of this client mapped to it).
    groups: BTreeMap<String, (String, Vec<String>)>,
}

async fn client_now(
    client: &AdminClient,
    realm: &str,
    client_id: &str,
    wanted_groups: &[String],
) -> Result<Option<ClientNow>, KeycloakError> {
    let Some(rep) = client.client_by_client_id(realm, client_id).await? else {
        return Ok(None);
    };
    let uuid = rep.id.clone().unwrap_or_default();
    let roles = client.client_roles(realm, &uuid, client_id).await?;
    let mut groups = BTreeMap::new();
    for g in client.groups(realm).await? {
        if !wanted_groups.contains(&g.name) {
            continue;
        }
        let gid = g.id.clone().unwrap_or_default();
        let m = client.group_role_mappings(realm, &gid, &g.name).await?;
        let mapped = m
            .client_mappings
            .get(client_id)
            .map(|cm| cm.mappings.iter().map(|r| r.name.clone()).collect())
            .unwrap_or_default();
        groups.insert(g.name.clone(), (gid, mapped));
    }
    Ok(Some(ClientNow { rep, roles, groups }))
}

async fn apply_client(
    client: &AdminClient,
    realm: &str,
    secrets: &Secrets,
    change: &Change,
) -> Result<(), KeycloakError> {
    let client_id = change.id.name.as_str();
    if change.action == Action::Delete {
        let uuid = match change.observed.as_ref().and_then(|o| o.cloud_id.clone()) {
            Some(id) => id,
            None => match client
                .client_by_client_id(realm, client_id)
                .await?
                .and_then(|c| c.id)
            {
                Some(id) => id,
                None => return Ok(()),
            },
        };
        return gone_ok(client.delete_client(realm, &uuid, client_id).await);
    }
    let mut rep: ClientRepresentation = representation(change)?;
    let hash = rep
        .secret
        .as_ref()
        .map(|s| s.expose().to_string())
        .unwrap_or_default();
    let secret = secrets
        .by_hash(&hash)
        .ok_or_else(|| KeycloakError::MissingSecret(format!("client {client_id}")))?;
    rep.secret = Some(SecretString::new(secret.expose()));
    let want = desired_spec(change);
    let want_roles = string_list(&want["roles"]);
    let want_mappings: BTreeMap<String, Vec<String>> = want["roleMappings"]
        .as_object()
        .map(|m| m.iter().map(|(g, r)| (g.clone(), string_list(r))).collect())
        .unwrap_or_default();
    let wanted_groups: Vec<String> = want_mappings.keys().cloned().collect();

    if change.action == Action::Create {
        match client.create_client(realm, &rep).await {
            Ok(uuid) => {
                // A new client: its mappers came with it; add roles, then map them.
                for r in &want_roles {
                    let role = RoleRepresentation {
                        name: r.clone(),
                        ..Default::default()
                    };
                    client
                        .create_client_role(realm, &uuid, client_id, &role)
                        .await?;
                }
                let now = ClientNow {
                    roles: client.client_roles(realm, &uuid, client_id).await?,
                    rep: ClientRepresentation {
                        id: Some(uuid),
                        ..rep.clone()
                    },
                    groups: BTreeMap::new(),
                };
                let group_ids: BTreeMap<String, String> = client
                    .groups(realm)
                    .await?
                    .into_iter()
                    .filter_map(|g| g.id.map(|id| (g.name, id)))
                    .collect();
                return sync_mappings(client, realm, client_id, &now, &want_mappings, &group_ids)
                    .await;
            }
            Err(e) if e.is_conflict() => {
                tracing::info!(client = client_id, "client exists already; updating it");
            }
            Err(e) => return Err(e),
        }
    }
    let now = client_now(client, realm, client_id, &wanted_groups)
        .await?
        .ok_or_else(|| KeycloakError::Api {
            status: 404,
            what: format!("update client {client_id}"),
            message: "the client disappeared".into(),
            retry_after: None,
        })?;
    let uuid = now.rep.id.clone().unwrap_or_default();
    // The client's own fields.
    if client_base_spec(&now.rep) != client_base_spec(&rep) {
        client
            .update_client(
                realm,
                &uuid,
                &ClientRepresentation {
                    id: Some(uuid.clone()),
                    protocol_mappers: Vec::new(),
                    ..rep.clone()
                },
            )
            .await?;
    }
    // Protocol mappers, by name.
    if mappers_spec(&now.rep.protocol_mappers) != mappers_spec(&rep.protocol_mappers) {
        let have: BTreeMap<&str, &ProtocolMapperRepresentation> = now
            .rep
            .protocol_mappers
            .iter()
            .map(|m| (m.name.as_str(), m))
            .collect();
        for m in &rep.protocol_mappers {
            match have.get(m.name.as_str()) {
                None => {
                    client
                        .create_protocol_mapper(realm, &uuid, client_id, m)
                        .await?
                }
                Some(h)
                    if h.protocol_mapper != m.protocol_mapper
                        || h.config != m.config
                        || h.protocol != m.protocol =>
                {
                    let updated = ProtocolMapperRepresentation {
                        id: h.id.clone(),
                        ..m.clone()
                    };
                    client
                        .update_protocol_mapper(realm, &uuid, client_id, &updated)
                        .await?;
                }
                Some(_) => {}
            }
        }
        for h in &now.rep.protocol_mappers {
            if !rep.protocol_mappers.iter().any(|m| m.name == h.name) {
                gone_ok(
                    client
                        .delete_protocol_mapper(realm, &uuid, client_id, h)
                        .await,
                )?;
            }
        }
    }
    // Roles.
    let have_roles: BTreeSet<&str> = now.roles.iter().map(|r| r.name.as_str()).collect();
    let mut roles_changed = false;
    for r in &want_roles {
        if !have_roles.contains(r.as_str()) {
            let role = RoleRepresentation {
                name: r.clone(),
                ..Default::default()
            };
            client
                .create_client_role(realm, &uuid, client_id, &role)
                .await?;
            roles_changed = true;
        }
    }
    for r in &now.roles {
        if !want_roles.contains(&r.name) {
            gone_ok(
                client
                    .delete_client_role(realm, &uuid, client_id, &r.name)
                    .await,
            )?;
            roles_changed = true;
        }
    }
    let now = if roles_changed {
        ClientNow {
            roles: client.client_roles(realm, &uuid, client_id).await?,
            ..now
        }
    } else {
        now
    };
    let group_ids: BTreeMap<String, String> = now
        .groups
        .iter()
        .map(|(g, (id, _))| (g.clone(), id.clone()))
        .collect();
    sync_mappings(client, realm, client_id, &now, &want_mappings, &group_ids).await
}

/// Adds and removes group→client-role mappings until each group has exactly the wanted roles.
async fn sync_mappings(
    client: &AdminClient,
    realm: &str,
    client_id: &str,
    now: &ClientNow,
    want: &BTreeMap<String, Vec<String>>,
    group_ids: &BTreeMap<String, String>,
) -> Result<(), KeycloakError> {
    let uuid = now.rep.id.clone().unwrap_or_default();
    let role = |name: &str| now.roles.iter().find(|r| r.name == name).cloned();
    for (group, roles) in want {
        let Some(gid) = group_ids.get(group) else {
            if roles.is_empty() {
                continue;
            }
            return Err(KeycloakError::Api {
                status: 404,
                what: format!("map roles of client {client_id} to group {group}"),
                message: format!("group {group} does not exist"),
                retry_after: None,
            });
        };
        let have: Vec<String> = now
            .groups
            .get(group)
            .map(|(_, r)| r.clone())
            .unwrap_or_default();
        let add: Vec<RoleRepresentation> = roles
            .iter()
            .filter(|r| !have.contains(r))
            .filter_map(|r| role(r))
            .collect();
        let remove: Vec<RoleRepresentation> = have
            .iter()
            .filter(|r| !roles.contains(r))
            .filter_map(|r| role(r))
            .collect();
        if !add.is_empty() {
            let what = format!("map roles of client {client_id} to group {group}");
            client
                .add_group_client_roles(realm, gid, &uuid, &what, &add)
                .await?;
        }
        if !remove.is_empty() {
            let what = format!("unmap roles of client {client_id} from group {group}");
            gone_ok(
                client
                    .remove_group_client_roles(realm, gid, &uuid, &what, &remove)
                    .await,
            )?;
        }
    }
    Ok(())
}
