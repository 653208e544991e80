//! The emulator's store and its operations, one function per admin API route.

mod users;

pub(super) use users::password_hash;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json, json};

/// An error answer: status and Keycloak's JSON body.
#[derive(Debug)]
pub(super) struct Err {
    pub code: u16,
    pub body: Json,
}

impl Err {
    fn message(code: u16, message: impl Into<String>) -> Self {
        Self {
            code,
            body: json!({ "errorMessage": message.into() }),
        }
    }

    pub fn not_found(what: &str) -> Self {
        Self {
            code: 404,
            body: json!({ "error": format!("Could not find {what}") }),
        }
    }

    fn conflict(message: impl Into<String>) -> Self {
        Self::message(409, message)
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::message(400, message)
    }
}

/// An answer: status, body (None for 201/204), Location header.
pub(super) struct Answer {
    pub code: u16,
    pub body: Option<Json>,
    pub location: Option<String>,
}

impl Answer {
    fn json(body: Json) -> Self {
        Self {
            code: 200,
            body: Some(body),
            location: None,
        }
    }

    fn no_content() -> Self {
        Self {
            code: 204,
            body: None,
            location: None,
        }
    }

    fn created(location: String) -> Self {
        Self {
            code: 201,
            body: None,
            location: Some(location),
        }
    }
}

pub(super) type Res = Result<Answer, Err>;

/// A client with its protocol mappers and roles.
#[derive(Serialize, Deserialize)]
pub(super) struct Client {
    /// The representation, without `protocolMappers`.
    pub rep: Json,
    pub mappers: BTreeMap<String, Json>,
    /// Role name -> representation (with its id).
    pub roles: BTreeMap<String, Json>,
}

#[derive(Default, Serialize, Deserialize)]
pub(super) struct Realm {
    pub rep: Json,
    pub groups: BTreeMap<String, Json>,
    pub default_groups: BTreeSet<String>,
    pub clients: BTreeMap<String, Client>,
    pub idps: BTreeMap<String, Json>,
    /// Group id -> client uuid -> role ids.
    pub mappings: BTreeMap<String, BTreeMap<String, BTreeSet<String>>>,
    /// User id -> representation (without credentials).
    #[serde(default)]
    pub users: BTreeMap<String, Json>,
    /// User id -> the ids of the groups it is a member of.
    #[serde(default)]
    pub memberships: BTreeMap<String, BTreeSet<String>>,
    /// User id -> SHA-256 of its password.
    #[serde(default)]
    pub passwords: BTreeMap<String, String>,
}

pub(super) struct State {
    pub realms: BTreeMap<String, Realm>,
    /// Access token -> when it stops being accepted.
    pub tokens: HashMap<String, Instant>,
}

/// The fields of each representation Keycloak's JSON binding knows; any other field is a 400
/// (Keycloak's object mapper fails on unknown properties).
const REALM_FIELDS: &[&str] = &[
    "id",
    "realm",
    "displayName",
    "displayNameHtml",
    "enabled",
    "sslRequired",
    "registrationAllowed",
    "loginWithEmailAllowed",
    "duplicateEmailsAllowed",
    "resetPasswordAllowed",
    "rememberMe",
    "verifyEmail",
    "loginTheme",
    "accountTheme",
    "adminTheme",
    "emailTheme",
    "accessTokenLifespan",
    "ssoSessionIdleTimeout",
    "ssoSessionMaxLifespan",
    "attributes",
    "internationalizationEnabled",
    "defaultLocale",
    "supportedLocales",
    "bruteForceProtected",
    "smtpServer",
    "notBefore",
];
const GROUP_FIELDS: &[&str] = &[
    "id",
    "name",
    "path",
    "parentId",
    "subGroupCount",
    "subGroups",
    "attributes",
    "realmRoles",
    "clientRoles",
    "access",
    "description",
];
const CLIENT_FIELDS: &[&str] = &[
    "id",
    "clientId",
    "name",
    "description",
    "type",
    "rootUrl",
    "adminUrl",
    "baseUrl",
    "surrogateAuthRequired",
    "enabled",
    "alwaysDisplayInConsole",
    "clientAuthenticatorType",
    "secret",
    "registrationAccessToken",
    "redirectUris",
    "webOrigins",
    "notBefore",
    "bearerOnly",
    "consentRequired",
    "standardFlowEnabled",
    "implicitFlowEnabled",
    "directAccessGrantsEnabled",
    "serviceAccountsEnabled",
    "authorizationServicesEnabled",
    "publicClient",
    "frontchannelLogout",
    "protocol",
    "attributes",
    "authenticationFlowBindingOverrides",
    "fullScopeAllowed",
    "nodeReRegistrationTimeout",
    "protocolMappers",
    "defaultClientScopes",
    "optionalClientScopes",
    "access",
    "origin",
    "authorizationSettings",
    "registeredNodes",
    "selectiveConsent",
    "selectiveConsentAttributes",
    "defaultRoles",
];
const ROLE_FIELDS: &[&str] = &[
    "id",
    "name",
    "description",
    "composite",
    "composites",
    "clientRole",
    "containerId",
    "attributes",
];
const MAPPER_FIELDS: &[&str] = &[
    "id",
    "name",
    "protocol",
    "protocolMapper",
    "consentRequired",
    "consentText",
    "config",
];
const IDP_FIELDS: &[&str] = &[
    "alias",
    "displayName",
    "internalId",
    "providerId",
    "enabled",
    "updateProfileFirstLoginMode",
    "trustEmail",
    "storeToken",
    "addReadTokenRoleOnCreate",
    "authenticateByDefault",
    "linkOnly",
    "hideOnLogin",
    "firstBrokerLoginFlowAlias",
    "postBrokerLoginFlowAlias",
    "organizationId",
    "types",
    "config",
];

/// What Keycloak answers in place of a stored secret.
const MASK: &str = "**********";

fn object(body: &[u8], fields: &[&str], class: &str) -> Result<Map<String, Json>, Err> {
    let v: Json = serde_json::from_slice(body)
        .map_err(|e| Err::bad_request(format!("Cannot parse the JSON: {e}")))?;
    let Json::Object(map) = v else {
        return Err(Err::bad_request(format!("expected a {class} object")));
    };
    if let Some(unknown) = map.keys().find(|k| !fields.contains(&k.as_str())) {
        return Err(Err::bad_request(format!(
            "Unrecognized field \"{unknown}\" (class org.keycloak.representations.idm.{class}), not marked as ignorable"
        )));
    }
    Ok(map)
}

fn array(body: &[u8], fields: &[&str], class: &str) -> Result<Vec<Map<String, Json>>, Err> {
    let v: Json = serde_json::from_slice(body)
        .map_err(|e| Err::bad_request(format!("Cannot parse the JSON: {e}")))?;
    let Json::Array(items) = v else {
        return Err(Err::bad_request(format!("expected a list of {class}")));
    };
    items
        .into_iter()
        .map(|i| object(&serde_json::to_vec(&i).unwrap_or_default(), fields, class))
        .collect()
}

pub(super) fn uuid() -> String {
    let r: u128 = rand::random();
    let h = format!("{r:032x}");
    // Version 4, variant 1, as Keycloak's ids.
    format!(
        "{}-{}-4{}-a{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

fn str_field<'a>(m: &'a Map<String, Json>, key: &str) -> Option<&'a str> {
    m.get(key).and_then(Json::as_str).filter(|s| !s.is_empty())
}

/// Copies the given (non-null) fields onto `target`, as Keycloak's updates do.
fn merge(target: &mut Json, from: Map<String, Json>, skip: &[&str]) {
    if !target.is_object() {
        *target = json!({});
    }
    for (k, v) in from {
        if v.is_null() || skip.contains(&k.as_str()) {
            continue;
        }
        target[k.as_str()] = v;
    }
}

impl State {
    pub fn new() -> Self {
        let mut realms = BTreeMap::new();
        realms.insert(
            "master".to_string(),
            Realm {
                rep: json!({"id": "master", "realm": "master", "displayName": "Keycloak", "enabled": true}),
                ..Realm::default()
            },
        );
        Self {
            realms,
            tokens: HashMap::new(),
        }
    }

    /// The realms as saved on disk.
    pub fn to_saved(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(&self.realms).unwrap_or_default()
    }

    /// Realms saved by [`Self::to_saved`].
    pub fn from_saved(bytes: &[u8]) -> Result<Self, String> {
        let realms = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        Ok(Self {
            realms,
            tokens: HashMap::new(),
        })
    }

    fn realm(&self, name: &str) -> Result<&Realm, Err> {
        self.realms.get(name).ok_or_else(|| Err::not_found("realm"))
    }

    fn realm_mut(&mut self, name: &str) -> Result<&mut Realm, Err> {
        self.realms
            .get_mut(name)
            .ok_or_else(|| Err::not_found("realm"))
    }

    // ---- realms ----

    pub fn list_realms(&self) -> Res {
        Ok(Answer::json(Json::Array(
            self.realms.values().map(|r| r.rep.clone()).collect(),
        )))
    }

    pub fn create_realm(&mut self, body: &[u8], base: &str) -> Res {
        let m = object(body, REALM_FIELDS, "RealmRepresentation")?;
        let name = str_field(&m, "realm")
            .ok_or_else(|| Err::bad_request("Realm name cannot be empty"))?
            .to_string();
        if self.realms.contains_key(&name) {
            return Err(Err::conflict(format!(
                "Conflict detected. Realm {name} exists"
            )));
        }
        let mut rep = json!({"id": uuid(), "enabled": false, "attributes": {}});
        merge(&mut rep, m, &[]);
        self.realms.insert(
            name.clone(),
            Realm {
                rep,
                ..Realm::default()
            },
        );
        Ok(Answer::created(format!("{base}/admin/realms/{name}")))
    }

    pub fn get_realm(&self, realm: &str) -> Res {
        Ok(Answer::json(self.realm(realm)?.rep.clone()))
    }

    pub fn update_realm(&mut self, realm: &str, body: &[u8]) -> Res {
        let m = object(body, REALM_FIELDS, "RealmRepresentation")?;
        if str_field(&m, "realm").is_some_and(|n| n != realm) {
            return Err(Err::bad_request("renaming a realm is not supported here"));
        }
        let r = self.realm_mut(realm)?;
        merge(&mut r.rep, m, &["id"]);
        Ok(Answer::no_content())
    }

    pub fn delete_realm(&mut self, realm: &str) -> Res {
        if realm == "master" {
            return Err(Err::bad_request("The master realm cannot be deleted"));
        }
        self.realms
            .remove(realm)
            .map(|_| Answer::no_content())
            .ok_or_else(|| Err::not_found("realm"))
    }

    // ---- groups ----

    pub fn list_groups(&self, realm: &str, brief: bool) -> Res {
        let r = self.realm(realm)?;
        let mut groups: Vec<Json> = r
            .groups
            .values()
            .map(|g| {
                let mut g = g.clone();
                if brief && let Some(o) = g.as_object_mut() {
                    o.remove("attributes");
                }
                g
            })
            .collect();
        groups.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
        Ok(Answer::json(Json::Array(groups)))
    }

    pub fn create_group(&mut self, realm: &str, body: &[u8], base: &str) -> Res {
        let m = object(body, GROUP_FIELDS, "GroupRepresentation")?;
        let name = str_field(&m, "name")
            .ok_or_else(|| Err::bad_request("Group name is missing"))?
            .to_string();
        let r = self.realm_mut(realm)?;
        if r.groups.values().any(|g| g["name"] == name.as_str()) {
            return Err(Err::conflict(format!(
                "Top level group named '{name}' already exists."
            )));
        }
        let id = uuid();
        let mut rep =
            json!({"id": id, "path": format!("/{name}"), "subGroupCount": 0, "attributes": {}});
        merge(&mut rep, m, &["id", "path", "subGroups", "subGroupCount"]);
        r.groups.insert(id.clone(), rep);
        Ok(Answer::created(format!(
            "{base}/admin/realms/{realm}/groups/{id}"
        )))
    }

    pub fn get_group(&self, realm: &str, id: &str) -> Res {
        self.realm(realm)?
            .groups
            .get(id)
            .cloned()
            .map(Answer::json)
            .ok_or_else(|| Err::not_found("group"))
    }

    pub fn update_group(&mut self, realm: &str, id: &str, body: &[u8]) -> Res {
        let m = object(body, GROUP_FIELDS, "GroupRepresentation")?;
        let r = self.realm_mut(realm)?;
        if let Some(name) = str_field(&m, "name")
            && r.groups
                .iter()
                .any(|(gid, g)| gid != id && g["name"] == name)
        {
            return Err(Err::conflict(format!(
                "Sibling group named '{name}' already exists."
            )));
        }
        let g = r
            .groups
            .get_mut(id)
            .ok_or_else(|| Err::not_found("group"))?;
        merge(g, m, &["id", "path", "subGroups", "subGroupCount"]);
        let name = g["name"].as_str().unwrap_or_default().to_string();
        g["path"] = json!(format!("/{name}"));
        Ok(Answer::no_content())
    }

    pub fn delete_group(&mut self, realm: &str, id: &str) -> Res {
        let r = self.realm_mut(realm)?;
        r.groups.remove(id).ok_or_else(|| Err::not_found("group"))?;
        r.default_groups.remove(id);
        r.mappings.remove(id);
        for groups in r.memberships.values_mut() {
            groups.remove(id);
        }
        Ok(Answer::no_content())
    }

    pub fn list_default_groups(&self, realm: &str) -> Res {
        let r = self.realm(realm)?;
        Ok(Answer::json(Json::Array(
            r.default_groups
                .iter()
                .filter_map(|id| r.groups.get(id))
                .map(|g| json!({"id": g["id"], "name": g["name"], "path": g["path"]}))
                .collect(),
        )))
    }

    pub fn add_default_group(&mut self, realm: &str, id: &str) -> Res {
        let r = self.realm_mut(realm)?;
        if !r.groups.contains_key(id) {
            return Err(Err::not_found("group"));
        }
        r.default_groups.insert(id.to_string());
        Ok(Answer::no_content())
    }

    pub fn remove_default_group(&mut self, realm: &str, id: &str) -> Res {
        let r = self.realm_mut(realm)?;
        if !r.groups.contains_key(id) {
            return Err(Err::not_found("group"));
        }
        r.default_groups.remove(id);
        Ok(Answer::no_content())
    }

    // ---- clients ----

    fn client_json(c: &Client) -> Json {
        let mut rep = c.rep.clone();
        rep["protocolMappers"] = Json::Array(c.mappers.values().cloned().collect());
        rep
    }

    pub fn list_clients(&self, realm: &str, client_id: Option<&str>) -> Res {
        let r = self.realm(realm)?;
        Ok(Answer::json(Json::Array(
            r.clients
                .values()
                .filter(|c| client_id.is_none_or(|id| c.rep["clientId"] == id))
                .map(Self::client_json)
                .collect(),
        )))
    }

    fn new_mapper(m: Map<String, Json>) -> Result<(String, Json), Err> {
        let name = str_field(&m, "name")
            .ok_or_else(|| Err::bad_request("Protocol mapper name is missing"))?;
        if str_field(&m, "protocolMapper").is_none() {
            return Err(Err::bad_request(format!(
                "Protocol mapper {name} has no protocolMapper type"
            )));
        }
        let id = uuid();
        let mut rep = json!({"id": id, "config": {}});
        merge(&mut rep, m, &["id"]);
        Ok((id, rep))
    }

    pub fn create_client(&mut self, realm: &str, body: &[u8], base: &str) -> Res {
        let mut m = object(body, CLIENT_FIELDS, "ClientRepresentation")?;
        let client_id = str_field(&m, "clientId")
            .ok_or_else(|| Err::bad_request("Client id is missing"))?
            .to_string();
        let r = self.realm_mut(realm)?;
        if r.clients
            .values()
            .any(|c| c.rep["clientId"] == client_id.as_str())
        {
            return Err(Err::conflict(format!("Client {client_id} already exists")));
        }
        let mut mappers = BTreeMap::new();
        if let Some(Json::Array(list)) = m.remove("protocolMappers") {
            for item in list {
                let item = object(
                    &serde_json::to_vec(&item).unwrap_or_default(),
                    MAPPER_FIELDS,
                    "ProtocolMapperRepresentation",
                )?;
                let (id, rep) = Self::new_mapper(item)?;
                mappers.insert(id, rep);
            }
        }
        let id = uuid();
        let mut rep = json!({
            "id": id, "enabled": true, "protocol": "openid-connect", "publicClient": true,
            "redirectUris": [], "webOrigins": [], "standardFlowEnabled": true,
            "directAccessGrantsEnabled": false, "fullScopeAllowed": true,
            "attributes": {"backchannel.logout.session.required": "true"},
        });
        merge(&mut rep, m, &["id"]);
        if rep["publicClient"] == false && rep["secret"].as_str().is_none_or(str::is_empty) {
            rep["secret"] = json!(uuid().replace('-', ""));
        }
        r.clients.insert(
            id.clone(),
            Client {
                rep,
                mappers,
                roles: BTreeMap::new(),
            },
        );
        Ok(Answer::created(format!(
            "{base}/admin/realms/{realm}/clients/{id}"
        )))
    }

    fn client(&self, realm: &str, id: &str) -> Result<&Client, Err> {
        self.realm(realm)?
            .clients
            .get(id)
            .ok_or_else(|| Err::not_found("client"))
    }

    fn client_mut(&mut self, realm: &str, id: &str) -> Result<&mut Client, Err> {
        self.realm_mut(realm)?
            .clients
            .get_mut(id)
            .ok_or_else(|| Err::not_found("client"))
    }

    pub fn get_client(&self, realm: &str, id: &str) -> Res {
        Ok(Answer::json(Self::client_json(self.client(realm, id)?)))
    }

    pub fn client_secret(&self, realm: &str, id: &str) -> Res {
        let c = self.client(realm, id)?;
        Ok(Answer::json(
            json!({"type": "secret", "value": c.rep["secret"]}),
        ))
    }

    pub fn update_client(&mut self, realm: &str, id: &str, body: &[u8]) -> Res {
        let m = object(body, CLIENT_FIELDS, "ClientRepresentation")?;
        let r = self.realm_mut(realm)?;
        if let Some(cid) = str_field(&m, "clientId")
            && r.clients
                .iter()
                .any(|(uuid, c)| uuid != id && c.rep["clientId"] == cid)
        {
            return Err(Err::conflict(format!("Client {cid} already exists")));
        }
        let c = r
            .clients
            .get_mut(id)
            .ok_or_else(|| Err::not_found("client"))?;
        // Keycloak's client update leaves protocol mappers alone: they have their own paths.
        merge(&mut c.rep, m, &["id", "protocolMappers"]);
        Ok(Answer::no_content())
    }

    pub fn delete_client(&mut self, realm: &str, id: &str) -> Res {
        let r = self.realm_mut(realm)?;
        r.clients
            .remove(id)
            .ok_or_else(|| Err::not_found("client"))?;
        for by_client in r.mappings.values_mut() {
            by_client.remove(id);
        }
        Ok(Answer::no_content())
    }

    pub fn list_client_roles(&self, realm: &str, id: &str) -> Res {
        Ok(Answer::json(Json::Array(
            self.client(realm, id)?.roles.values().cloned().collect(),
        )))
    }

    pub fn create_client_role(&mut self, realm: &str, id: &str, body: &[u8], base: &str) -> Res {
        let m = object(body, ROLE_FIELDS, "RoleRepresentation")?;
        let name = str_field(&m, "name")
            .ok_or_else(|| Err::bad_request("Role name is missing"))?
            .to_string();
        let c = self.client_mut(realm, id)?;
        if c.roles.contains_key(&name) {
            return Err(Err::conflict(format!(
                "Role with name {name} already exists"
            )));
        }
        let mut rep =
            json!({"id": uuid(), "composite": false, "clientRole": true, "containerId": id});
        merge(&mut rep, m, &["id", "clientRole", "containerId"]);
        c.roles.insert(name.clone(), rep);
        Ok(Answer::created(format!(
            "{base}/admin/realms/{realm}/clients/{id}/roles/{name}"
        )))
    }

    pub fn get_client_role(&self, realm: &str, id: &str, name: &str) -> Res {
        self.client(realm, id)?
            .roles
            .get(name)
            .cloned()
            .map(Answer::json)
            .ok_or_else(|| Err::not_found("role"))
    }

    pub fn delete_client_role(&mut self, realm: &str, id: &str, name: &str) -> Res {
        let r = self.realm_mut(realm)?;
        let c = r
            .clients
            .get_mut(id)
            .ok_or_else(|| Err::not_found("client"))?;
        let role = c.roles.remove(name).ok_or_else(|| Err::not_found("role"))?;
        let role_id = role["id"].as_str().unwrap_or_default().to_string();
        for set in r.mappings.values_mut().flat_map(|m| m.values_mut()) {
            set.remove(&role_id);
        }
        Ok(Answer::no_content())
    }

    pub fn list_mappers(&self, realm: &str, id: &str) -> Res {
        Ok(Answer::json(Json::Array(
            self.client(realm, id)?.mappers.values().cloned().collect(),
        )))
    }

    pub fn create_mapper(&mut self, realm: &str, id: &str, body: &[u8], base: &str) -> Res {
        let m = object(body, MAPPER_FIELDS, "ProtocolMapperRepresentation")?;
        let c = self.client_mut(realm, id)?;
        let name = str_field(&m, "name").unwrap_or_default().to_string();
        if c.mappers.values().any(|x| x["name"] == name.as_str()) {
            return Err(Err::conflict("Protocol mapper exists with same name"));
        }
        let (mid, rep) = Self::new_mapper(m)?;
        c.mappers.insert(mid.clone(), rep);
        Ok(Answer::created(format!(
            "{base}/admin/realms/{realm}/clients/{id}/protocol-mappers/models/{mid}"
        )))
    }

    pub fn update_mapper(&mut self, realm: &str, id: &str, mid: &str, body: &[u8]) -> Res {
        let m = object(body, MAPPER_FIELDS, "ProtocolMapperRepresentation")?;
        let c = self.client_mut(realm, id)?;
        let mapper = c
            .mappers
            .get_mut(mid)
            .ok_or_else(|| Err::not_found("ProtocolMapper"))?;
        merge(mapper, m, &["id"]);
        Ok(Answer::no_content())
    }

    pub fn delete_mapper(&mut self, realm: &str, id: &str, mid: &str) -> Res {
        self.client_mut(realm, id)?
            .mappers
            .remove(mid)
            .map(|_| Answer::no_content())
            .ok_or_else(|| Err::not_found("ProtocolMapper"))
    }

    // ---- role mappings ----

    pub fn group_mappings(&self, realm: &str, gid: &str) -> Res {
        let r = self.realm(realm)?;
        if !r.groups.contains_key(gid) {
            return Err(Err::not_found("group"));
        }
        let mut client_mappings = Map::new();
        for (cid, roles) in r.mappings.get(gid).into_iter().flatten() {
            if roles.is_empty() {
                continue;
            }
            let Some(c) = r.clients.get(cid) else {
                continue;
            };
            let mappings: Vec<Json> = c
                .roles
                .values()
                .filter(|role| role["id"].as_str().is_some_and(|i| roles.contains(i)))
                .cloned()
                .collect();
            let client_id = c.rep["clientId"].as_str().unwrap_or_default().to_string();
            client_mappings.insert(
                client_id.clone(),
                json!({"id": cid, "client": client_id, "mappings": mappings}),
            );
        }
        let mut out = Map::new();
        if !client_mappings.is_empty() {
            out.insert("clientMappings".into(), Json::Object(client_mappings));
        }
        Ok(Answer::json(Json::Object(out)))
    }

    pub fn group_client_mappings(&self, realm: &str, gid: &str, cid: &str) -> Res {
        let r = self.realm(realm)?;
        if !r.groups.contains_key(gid) {
            return Err(Err::not_found("group"));
        }
        let c = r.clients.get(cid).ok_or_else(|| Err::not_found("client"))?;
        let ids = r
            .mappings
            .get(gid)
            .and_then(|m| m.get(cid))
            .cloned()
            .unwrap_or_default();
        Ok(Answer::json(Json::Array(
            c.roles
                .values()
                .filter(|role| role["id"].as_str().is_some_and(|i| ids.contains(i)))
                .cloned()
                .collect(),
        )))
    }

    pub fn change_group_client_mappings(
        &mut self,
        realm: &str,
        gid: &str,
        cid: &str,
        body: &[u8],
        add: bool,
    ) -> Res {
        let roles = array(body, ROLE_FIELDS, "RoleRepresentation")?;
        let r = self.realm_mut(realm)?;
        if !r.groups.contains_key(gid) {
            return Err(Err::not_found("group"));
        }
        let c = r.clients.get(cid).ok_or_else(|| Err::not_found("client"))?;
        let mut ids = Vec::new();
        for role in &roles {
            // Keycloak looks roles up by id.
            let id = str_field(role, "id").ok_or_else(|| Err::not_found("role"))?;
            if !c.roles.values().any(|x| x["id"] == id) {
                return Err(Err::not_found("role"));
            }
            ids.push(id.to_string());
        }
        let set = r
            .mappings
            .entry(gid.to_string())
            .or_default()
            .entry(cid.to_string())
            .or_default();
        for id in ids {
            if add {
                set.insert(id);
            } else {
                set.remove(&id);
            }
        }
        Ok(Answer::no_content())
    }

    // ---- identity providers ----

    fn masked(idp: &Json) -> Json {
        let mut idp = idp.clone();
        if idp["config"]["clientSecret"].is_string() {
            idp["config"]["clientSecret"] = json!(MASK);
        }
        idp
    }

    pub fn list_idps(&self, realm: &str) -> Res {
        Ok(Answer::json(Json::Array(
            self.realm(realm)?.idps.values().map(Self::masked).collect(),
        )))
    }

    pub fn get_idp(&self, realm: &str, alias: &str) -> Res {
        self.realm(realm)?
            .idps
            .get(alias)
            .map(|i| Answer::json(Self::masked(i)))
            .ok_or_else(|| Err::not_found("identity provider"))
    }

    fn check_config(m: &Map<String, Json>) -> Result<(), Err> {
        match m.get("config") {
            None | Some(Json::Null) => Ok(()),
            Some(Json::Object(c)) if c.values().all(Json::is_string) => Ok(()),
            Some(_) => Err(Err::bad_request("config values must be strings")),
        }
    }

    pub fn create_idp(&mut self, realm: &str, body: &[u8], base: &str) -> Res {
        let m = object(body, IDP_FIELDS, "IdentityProviderRepresentation")?;
        Self::check_config(&m)?;
        let alias = str_field(&m, "alias")
            .ok_or_else(|| Err::bad_request("Identity provider alias is missing"))?
            .to_string();
        if str_field(&m, "providerId").is_none() {
            return Err(Err::bad_request("Identity provider providerId is missing"));
        }
        let r = self.realm_mut(realm)?;
        if r.idps.contains_key(&alias) {
            return Err(Err::conflict(format!(
                "Identity Provider {alias} already exists"
            )));
        }
        let mut rep = json!({"internalId": uuid(), "enabled": true, "config": {}});
        merge(&mut rep, m, &["internalId"]);
        r.idps.insert(alias.clone(), rep);
        Ok(Answer::created(format!(
            "{base}/admin/realms/{realm}/identity-provider/instances/{alias}"
        )))
    }

    pub fn update_idp(&mut self, realm: &str, alias: &str, body: &[u8]) -> Res {
        let mut m = object(body, IDP_FIELDS, "IdentityProviderRepresentation")?;
        Self::check_config(&m)?;
        let r = self.realm_mut(realm)?;
        let idp = r
            .idps
            .get_mut(alias)
            .ok_or_else(|| Err::not_found("identity provider"))?;
        // A masked secret sent back means "keep the stored one".
        if let Some(Json::Object(cfg)) = m.get_mut("config")
            && cfg.get("clientSecret").and_then(Json::as_str) == Some(MASK)
        {
            let stored = idp["config"]["clientSecret"].clone();
            cfg.insert("clientSecret".into(), stored);
        }
        merge(idp, m, &["internalId", "alias"]);
        Ok(Answer::no_content())
    }

    pub fn delete_idp(&mut self, realm: &str, alias: &str) -> Res {
        self.realm_mut(realm)?
            .idps
            .remove(alias)
            .map(|_| Answer::no_content())
            .ok_or_else(|| Err::not_found("identity provider"))
    }
}
