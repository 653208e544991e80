# JupyterHub's configuration, written by qhub-rs. This file is the same for every deployment:
# what varies is in values.json beside it (rendered from qhub-config.yaml), and secrets come
# only from environment variables set from Kubernetes Secrets. JupyterHub loads this file as it
# is (`jupyterhub --config .../jupyterhub_config.py`); `c` is its config object.
import copy
import hashlib
import json
import os
import sys

with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "values.json")) as f:
    values = json.load(f)


def secret(name):
    """A secret from the environment; empty when the variable is unset."""
    return os.environ.get(name, "")


def derived_key(purpose):
    """A 32-byte key derived from a generated password (hex, as JupyterHub reads keys)."""
    seed = secret("QHUB_HUB_SECRET_SEED")
    return hashlib.sha256(f"{purpose}:{seed}".encode()).hexdigest()


# The hub: listens for the proxy and users' servers on 8081 (the `hub` Service); its database
# is sqlite on its own volume; the proxy runs in its own pod, so the hub only talks to its API.
hub = values["hub"]
c.JupyterHub.hub_bind_url = hub["bind_url"]
c.JupyterHub.hub_connect_url = hub["connect_url"]
c.JupyterHub.public_url = hub["public_url"]
c.JupyterHub.db_url = hub["db_url"]
c.JupyterHub.cleanup_servers = False
c.JupyterHub.cookie_secret = bytes.fromhex(derived_key("cookie"))
c.ConfigurableHTTPProxy.should_start = False
c.ConfigurableHTTPProxy.api_url = hub["proxy_api_url"]
# CONFIGPROXY_AUTH_TOKEN (the proxy's API token) is read from the environment by JupyterHub
# and by the proxy themselves.
# auth_state (the user's token claims, for `access: keycloak` profiles) is encrypted with it.
os.environ["JUPYTERHUB_CRYPT_KEY"] = derived_key("crypt")
c.JupyterHub.template_vars = values["template_vars"]

# Login through Keycloak (OpenID Connect); JupyterHub's groups follow the token's `groups`.
auth = values["authenticator"]
c.JupyterHub.authenticator_class = "generic-oauth"
c.GenericOAuthenticator.login_service = auth["login_service"]
c.GenericOAuthenticator.client_id = auth["client_id"]
c.GenericOAuthenticator.client_secret = secret("QHUB_OAUTH_CLIENT_SECRET")
c.GenericOAuthenticator.oauth_callback_url = auth["oauth_callback_url"]
c.GenericOAuthenticator.authorize_url = auth["authorize_url"]
c.GenericOAuthenticator.token_url = auth["token_url"]
c.GenericOAuthenticator.userdata_url = auth["userdata_url"]
c.GenericOAuthenticator.scope = auth["scope"]
c.GenericOAuthenticator.username_claim = auth["username_claim"]
c.GenericOAuthenticator.validate_server_cert = auth["validate_server_cert"]
c.GenericOAuthenticator.enable_auth_state = True
c.GenericOAuthenticator.manage_groups = True
c.GenericOAuthenticator.auth_state_groups_key = "oauth_user.groups"
c.GenericOAuthenticator.allowed_groups = set(auth["allowed_groups"])
c.GenericOAuthenticator.admin_groups = set(auth["admin_groups"])


def admin_by_role(authenticator, handler, auth_model):
    """Admins are also whoever holds one of the admin client roles (`roles` claim)."""
    user = ((auth_model or {}).get("auth_state") or {}).get("oauth_user") or {}
    if set(user.get("roles") or []) & set(auth["admin_roles"]):
        auth_model["admin"] = True
    return auth_model


c.GenericOAuthenticator.post_auth_hook = admin_by_role

# Users' servers: KubeSpawner, in the platform namespace.
spawner = values["spawner"]
c.JupyterHub.spawner_class = "kubespawner.KubeSpawner"
c.KubeSpawner.namespace = spawner["namespace"]
c.KubeSpawner.image = spawner["image"]
c.KubeSpawner.node_selector = spawner["node_selector"]
c.KubeSpawner.uid = spawner["uid"]
c.KubeSpawner.gid = spawner["gid"]
c.KubeSpawner.fs_gid = spawner["fs_gid"]
c.KubeSpawner.pod_security_context = spawner["pod_security_context"]
c.KubeSpawner.container_security_context = spawner["container_security_context"]
c.KubeSpawner.environment = spawner["environment"]
c.KubeSpawner.volumes = spawner["volumes"]
c.KubeSpawner.volume_mounts = spawner["volume_mounts"]
c.KubeSpawner.default_url = spawner["default_url"]
c.KubeSpawner.start_timeout = spawner["start_timeout"]
c.KubeSpawner.http_timeout = spawner["http_timeout"]

# Users' home directories. Kubelet would create a missing one itself, as root, and the user
# could not write to it (NFS gets no fsGroup); QHub ran a root init container for this, which
# the namespace's Pod Security level refuses. The hub runs as the user's uid and owns the
# directory holding the homes: it creates the user's one before KubeSpawner creates the pod.
homes = values["homes"]


def make_home(spawner, pod):
    """Creates the home directory the pod mounts (its subPath, as KubeSpawner expanded it)."""
    for container in pod.spec.containers:
        for mount in container.volume_mounts or []:
            if mount.name != homes["volume"] or mount.mount_path != homes["mount_path"]:
                continue
            name = (mount.sub_path or "").removeprefix(homes["prefix"])
            if not name or "/" in name or name in (".", ".."):
                raise ValueError(f"unexpected home directory subPath {mount.sub_path!r}")
            os.makedirs(os.path.join(homes["root"], name), mode=0o755, exist_ok=True)
    return pod


c.KubeSpawner.modify_pod_hook = make_home

PROFILES = values["profiles"]
WHO = ("access", "users", "groups")


async def keycloak_profiles(user):
    """The profiles Keycloak grants `user`: the `jupyterlab_profiles` claim (the attribute of
    the user and of their groups)."""
    state = await user.get_auth_state() or {}
    claim = (state.get("oauth_user") or {}).get(values["keycloak_profiles_claim"]) or []
    return {claim} if isinstance(claim, str) else set(claim)


def may_use(profile, name, groups, granted):
    access = profile["access"]
    if access == "all":
        return True
    if access == "yaml":
        return name in profile["users"] or bool(groups & set(profile["groups"]))
    if access == "keycloak":
        return profile["display_name"] in granted
    return False


async def profile_list(spawner):
    """The profiles this user may use, and no other."""
    user = spawner.user
    groups = {g.name for g in user.groups}
    granted = set()
    if any(p["access"] == "keycloak" for p in PROFILES):
        granted = await keycloak_profiles(user)
    return [
        {k: copy.deepcopy(v) for k, v in p.items() if k not in WHO}
        for p in PROFILES
        if may_use(p, user.name, groups, granted)
    ]


if PROFILES:
    c.KubeSpawner.profile_list = profile_list

# Hub services: the idle culler (its scopes as z2jh 4.4.0's `jupyterhub_config.py` grants
# them), Dask Gateway, monitoring (Prometheus) and kbatch, whose API tokens come from their
# Secrets; a service with a `url` (kbatch) is routed by the hub's proxy at /services/<name>/.
culler = values["culler"]
c.JupyterHub.services = [
    {
        "name": "jupyterhub-idle-culler",
        "command": [
            sys.executable,
            "-m",
            "jupyterhub_idle_culler",
            f"--timeout={culler['timeout']}",
            f"--cull-every={culler['every']}",
        ],
    }
]
c.JupyterHub.load_roles = [
    {
        "name": "jupyterhub-idle-culler",
        "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"],
        "services": ["jupyterhub-idle-culler"],
    }
]
for service in values["services"]:
    token = secret(service["token_env"])
    if token:
        entry = {"name": service["name"], "api_token": token}
        if service.get("url"):
            entry["url"] = service["url"]
        c.JupyterHub.services.append(entry)
        # A service with scopes gets a role of its own (monitoring: `read:metrics`).
        if service.get("scopes"):
            c.JupyterHub.load_roles.append(
                {
                    "name": f"{service['name']}-service",
                    "scopes": service["scopes"],
                    "services": [service["name"]],
                }
            )

# `jupyterhub.overrides.hub.config`, last: {Class: {trait: value}}, as z2jh's `hub.config`.
for cls, traits in values["config"].items():
    for trait, value in traits.items():
        setattr(c[cls], trait, value)
