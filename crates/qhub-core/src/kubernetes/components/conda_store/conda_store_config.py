# conda-store's configuration, written by qhub-rs: loaded as it is by `conda-store-server --config`
# and `conda-store-worker --config` (conda-store-server 2025.2.2). Its values come from
# `qhub.json` beside it (rendered from qhub-config.yaml) and its secrets from environment
# variables the pods read from Kubernetes Secrets; nothing here varies between deployments.
# Trait names: conda_store_server/conda_store_config.py (CondaStore),
# _internal/server/app.py (CondaStoreServer), _internal/worker/app.py (CondaStoreWorker),
# server/auth.py (GenericOAuthAuthentication, AuthenticationBackend, RBACAuthorizationBackend),
# storage.py (LocalStorage).

import json
import logging
import os

import requests
from conda_store_server import api
from conda_store_server.server import schema as auth_schema
from conda_store_server.server.auth import GenericOAuthAuthentication
from conda_store_server.storage import LocalStorage

with open(os.path.join(os.path.dirname(__file__), "qhub.json")) as f:
    qhub = json.load(f)

# ==================================
#      conda-store settings
# ==================================
# Environments are built under the store directory on the platform's shared volume:
# `{store_directory}/{namespace}/envs/{name}` (conda-store's default `environment_directory`),
# which JupyterLab and Dask mount read-only at the same path.
c.CondaStore.store_directory = qhub["store_directory"]
# Build artifacts (logs, lockfiles, conda-pack archives) on the same volume, served by the
# server at `<url_prefix>/storage`; no object store to run.
c.CondaStore.storage_class = LocalStorage
c.LocalStorage.storage_path = qhub["artifacts_directory"]
db = qhub["database"]
c.CondaStore.database_url = "postgresql+psycopg2://{}:{}@{}:{}/{}".format(
    db["user"],
    os.environ["QHUB_CONDA_STORE_POSTGRES_PASSWORD"],
    db["host"],
    db["port"],
    db["name"],
)
redis = qhub["redis"]
c.CondaStore.redis_url = "redis://:{}@{}:{}/0".format(
    os.environ["QHUB_CONDA_STORE_REDIS_PASSWORD"], redis["host"], redis["port"]
)
# Every environment gets a kernel JupyterLab can offer (QHub 0.4.5 and nebari do the same).
c.CondaStore.conda_included_packages = ["ipykernel"]
# Users' environments default to `global`; the config's are registered by qhub in
# `qhub["default_namespace"]` (QHub 0.4.5's `filesystem_namespace`, kept for its UI's listing).
c.CondaStore.default_namespace = "global"
c.CondaStore.filesystem_namespace = qhub["default_namespace"]
c.CondaStore.conda_allowed_channels = []

# ==================================
#        server settings
# ==================================
c.CondaStoreServer.log_level = logging.INFO
c.CondaStoreServer.enable_ui = True
c.CondaStoreServer.enable_api = True
c.CondaStoreServer.enable_metrics = True
c.CondaStoreServer.address = "0.0.0.0"
c.CondaStoreServer.port = qhub["port"]
c.CondaStoreServer.behind_proxy = True
c.CondaStoreServer.url_prefix = qhub["url_prefix"]

# ==================================
#         auth settings
# ==================================
oidc = qhub["oidc"]
c.GenericOAuthAuthentication.authorize_url = oidc["authorize_url"]
c.GenericOAuthAuthentication.access_token_url = oidc["token_url"]
c.GenericOAuthAuthentication.user_data_url = oidc["userinfo_url"]
c.GenericOAuthAuthentication.oauth_callback_url = oidc["callback_url"]
c.GenericOAuthAuthentication.client_id = oidc["client_id"]
c.GenericOAuthAuthentication.access_scope = "openid profile email"
c.GenericOAuthAuthentication.user_data_key = "preferred_username"
# The worker authenticates nobody and is not given these two secrets.
if "QHUB_CONDA_STORE_CLIENT_SECRET" in os.environ:
    c.GenericOAuthAuthentication.client_secret = os.environ["QHUB_CONDA_STORE_CLIENT_SECRET"]
if "QHUB_CONDA_STORE_TOKEN_SECRET" in os.environ:
    # Signs conda-store's API tokens; upstream's default is random per process, which would
    # invalidate every token at each restart.
    c.AuthenticationBackend.secret = os.environ["QHUB_CONDA_STORE_TOKEN_SECRET"]

# Everyone signed in may read the config's environments.
c.RBACAuthorizationBackend.authenticated_role_bindings = {
    "{}/*".format(qhub["default_namespace"]): {"viewer"},
}


class QHubKeycloakAuthentication(GenericOAuthAuthentication):
    """GenericOAuthAuthentication against the platform's Keycloak realm, with QHub 0.4.5's role
    bindings (upstream's GenericOAuthAuthentication makes every user admin of everything)."""

    def role_bindings(self, user_data):
        """conda-store role bindings of a user from Keycloak's userinfo: the `roles` claim
        (this client's roles) mapped by `qhub.json` `role_mappings`, applied to the `global`
        namespace and to one namespace per Keycloak group; admin of their own namespace; viewer
        of the config's environments."""
        username = user_data[self.user_data_key]
        roles = {
            qhub["role_mappings"][r]
            for r in user_data.get("roles", [])
            if r in qhub["role_mappings"]
        }
        bindings = {
            "{}/*".format(username): {"admin"},
            "{}/*".format(qhub["default_namespace"]): {"viewer"},
            "global/*": set(roles),
        }
        for group in user_data.get("groups", []):
            bindings["{}/*".format(group.rsplit("/", 1)[-1])] = set(roles)
        return bindings

    async def authenticate(self, request):
        token = self._get_oauth_token(request)
        if token is None:
            return None
        response = requests.get(
            self.user_data_url,
            headers={"Authorization": "Bearer {}".format(token)},
            verify=self.tls_verify,
        )
        response.raise_for_status()
        user_data = response.json()
        bindings = self.role_bindings(user_data)
        conda_store = request.state.conda_store
        with conda_store.session_factory() as session:
            for arn in bindings:
                api.ensure_namespace(session, name=arn.split("/", 1)[0])
        return auth_schema.AuthenticationToken(
            primary_namespace=user_data[self.user_data_key],
            role_bindings=bindings,
        )


c.CondaStoreServer.authentication_class = QHubKeycloakAuthentication

# ==================================
#         worker settings
# ==================================
c.CondaStoreWorker.log_level = logging.INFO
# The config's `environments` are registered by qhub through the REST API (no watch_paths:
# one writer per environment).
c.CondaStoreWorker.concurrency = 4

# ==================================
#   conda_store.extra_settings, then conda_store.extra_config
# ==================================
for classname, attributes in qhub["extra_settings"].items():
    for attribute, value in attributes.items():
        setattr(getattr(c, classname), attribute, value)

exec(compile(qhub["extra_config"], "qhub-config.yaml:conda_store.extra_config", "exec"))
