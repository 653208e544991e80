"""Loads the hub's rendered configuration with the real JupyterHub, OAuthenticator and
KubeSpawner, and reports what they make of it as JSON on stdout.

Usage: check_config.py CONFIG_DIR CASES_JSON

CONFIG_DIR holds the ConfigMap's files (jupyterhub_config.py, values.json). CASES_JSON lists
users: {"name", "groups", "roles", "keycloak_profiles"}. For each, the report says whether the
authenticator lets them in and makes them admin, the profiles they are offered, and for each
offered profile the pod KubeSpawner would create. Every "not recognized" warning of traitlets
(a config key no class knows) is reported.
"""

import asyncio
import json
import logging
import os
import sys

os.environ.setdefault("QHUB_HUB_SECRET_SEED", "seed-for-tests")
os.environ.setdefault("CONFIGPROXY_AUTH_TOKEN", "proxy-token-for-tests")
os.environ.setdefault("QHUB_OAUTH_CLIENT_SECRET", "client-secret-for-tests")
os.environ.setdefault("QHUB_DASK_GATEWAY_API_TOKEN", "dask-token-for-tests")
os.environ.setdefault("QHUB_KBATCH_API_TOKEN", "kbatch-token-for-tests")
# KubeSpawner loads a cluster config when it is created, even in its `_mock` mode, which never
# calls the API: a kubeconfig naming an unused loopback port serves.
KUBECONFIG = os.path.join(sys.argv[1], "kubeconfig")
with open(KUBECONFIG, "w") as f:
    json.dump(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "none", "cluster": {"server": "http://127.0.0.1:9"}}],
            "users": [{"name": "none", "user": {"token": "unused"}}],
            "contexts": [{"name": "none", "context": {"cluster": "none", "user": "none"}}],
            "current-context": "none",
        },
        f,
    )
os.environ["KUBECONFIG"] = KUBECONFIG


class Collect(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


collected = Collect()
logging.getLogger().addHandler(collected)
logging.getLogger().setLevel(logging.DEBUG)

from jupyterhub.app import JupyterHub  # noqa: E402
from kubespawner import KubeSpawner  # noqa: E402
from oauthenticator.generic import GenericOAuthenticator  # noqa: E402


class Group:
    def __init__(self, name):
        self.name = name


class User:
    """What KubeSpawner and the profile callable read of a JupyterHub user."""

    def __init__(self, case):
        self.name = case["name"]
        self.escaped_name = case["name"]
        self.id = 1
        self.url = f"/user/{case['name']}/"
        self.groups = [Group(g) for g in case["groups"]]
        self._state = {
            "oauth_user": {
                "preferred_username": case["name"],
                "groups": case["groups"],
                "roles": case["roles"],
                "jupyterlab_profiles": case["keycloak_profiles"],
            }
        }

    async def get_auth_state(self):
        return self._state


def to_dict(obj):
    from kubernetes_asyncio.client import ApiClient

    return ApiClient().sanitize_for_serialization(obj)


async def main(config_dir, cases):
    app = JupyterHub()
    app.log.addHandler(collected)
    app.load_config_file(os.path.join(config_dir, "jupyterhub_config.py"))
    config = app.config
    # Instantiating each class checks its section of the config.
    app.update_config(config)
    report = {
        "authenticator_class": str(config.JupyterHub.authenticator_class),
        "spawner_class": str(config.JupyterHub.spawner_class),
        "services": [s["name"] for s in config.JupyterHub.services],
        "roles": config.JupyterHub.load_roles,
        "db_url": config.JupyterHub.db_url,
        "hub_connect_url": config.JupyterHub.hub_connect_url,
        "proxy_api_url": config.ConfigurableHTTPProxy.api_url,
        "template_vars": config.JupyterHub.template_vars,
        "users": {},
    }
    auth = GenericOAuthenticator(config=config)
    report["authenticator"] = {
        "authorize_url": auth.authorize_url,
        "token_url": auth.token_url,
        "userdata_url": auth.userdata_url,
        "oauth_callback_url": auth.oauth_callback_url,
        "client_id": auth.client_id,
        "client_secret_set": bool(auth.client_secret),
        "manage_groups": auth.manage_groups,
        "enable_auth_state": auth.enable_auth_state,
        "allowed_groups": sorted(auth.allowed_groups),
        "admin_groups": sorted(auth.admin_groups),
    }
    for case in cases:
        user = User(case)
        # What `_token_to_auth_model` makes of Keycloak's answer (`authenticate`).
        model = {"name": case["name"], "admin": None, "auth_state": user._state}
        model = await auth.update_auth_model(model)
        model = await auth._apply_managed_groups(model)
        # In JupyterHub's order (`Authenticator.get_authenticated_user`): the allowed check,
        # then the post-auth hook.
        allowed = await auth.check_allowed(case["name"], model)
        if allowed:
            model = await auth.run_post_auth_hook(None, model)
        spawner = KubeSpawner(_mock=True, config=config, user=user)
        offered = spawner.profile_list
        if callable(offered):
            offered = await offered(spawner)
        offered = spawner._get_initialized_profile_list(offered)
        pods = {}
        for profile in offered:
            one = KubeSpawner(_mock=True, config=config, user=user)
            one.user_options = {"profile": profile["slug"]}
            await one.load_user_options()
            pod = await one.get_pod_manifest()
            # What KubeSpawner does with the pod before creating it (`_start`).
            hook = one.modify_pod_hook
            if hook:
                pod = hook(one, pod)
                if asyncio.iscoroutine(pod):
                    pod = await pod
            pods[profile["display_name"]] = to_dict(pod)
        refused = []
        for profile in spawner._get_initialized_profile_list(
            json.loads(open(os.path.join(config_dir, "values.json")).read())["profiles"]
        ):
            if profile["display_name"] in pods:
                continue
            one = KubeSpawner(_mock=True, config=config, user=user)
            one.user_options = {"profile": profile["slug"]}
            try:
                await one.load_user_options()
            except Exception as e:  # a refused profile is an error, nothing else
                refused.append([profile["display_name"], type(e).__name__])
        report["users"][case["name"]] = {
            "allowed": bool(allowed),
            "admin": bool(model.get("admin")),
            "groups": sorted(model.get("groups") or []),
            "profiles": [p["display_name"] for p in offered],
            "refused": refused,
            "pods": pods,
        }
    homes_root = json.loads(open(os.path.join(config_dir, "values.json")).read())["homes"]["root"]
    report["homes"] = sorted(os.listdir(homes_root)) if os.path.isdir(homes_root) else None
    # The hub's own start-up of its services (`JupyterHub.init_services`, after the database,
    # the hub, the roles and the OAuth provider it needs), on an in-memory database: what
    # JupyterHub makes of each service entry (a key no `Service` has is an error there), and
    # the prefix its proxy routes to a service with a URL.
    app.db_url = "sqlite://"
    app.init_db()
    app.init_hub()
    await app.init_role_creation()
    app.init_oauth()
    app.init_services()
    report["registered_services"] = {
        name: {
            "prefix": service.prefix,
            "url": service.url,
            "proxy_spec": service.proxy_spec if service.url else None,
            "has_token": bool(service.api_token),
            "managed": service.managed,
        }
        for name, service in app._service_map.items()
    }
    report["warnings"] = [
        m for m in collected.messages if "not recognized" in m or "Config option" in m
    ]
    json.dump(report, sys.stdout, indent=1, sort_keys=True, default=str)


asyncio.run(main(sys.argv[1], json.loads(open(sys.argv[2]).read())))
