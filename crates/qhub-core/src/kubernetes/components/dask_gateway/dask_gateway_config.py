# Dask Gateway's configuration, written by qhub-rs and loaded as it is by both
# `dask-gateway-server` (the API server) and `dask-gateway-server kube-controller`.
#
# This file never changes with the deployment: everything that does (namespace, addresses,
# worker profiles, conda environments, placement) is in `qhub.json` beside it, in the same
# ConfigMap. Secrets are not in either: the JupyterHub API token comes from the environment
# (JUPYTERHUB_API_TOKEN, from the Secret `dask-gateway-hub-token`).
import copy
import json
import os

from dask_gateway_server.options import Options, Select

with open(os.path.join(os.path.dirname(os.path.realpath(__file__)), "qhub.json")) as f:
    QHUB = json.load(f)

# The API server: Kubernetes backend, users authenticated by JupyterHub.
c.DaskGateway.log_level = "INFO"
c.DaskGateway.address = ":8000"
c.DaskGateway.backend_class = "dask_gateway_server.backends.kubernetes.KubeBackend"
c.DaskGateway.authenticator_class = "dask_gateway_server.auth.JupyterHubAuthenticator"
c.JupyterHubAuthenticator.jupyterhub_api_url = QHUB["jupyterhub_api_url"]
c.KubeBackend.api_url = QHUB["api_url"]
c.KubeBackend.gateway_instance = QHUB["gateway_instance"]

# The controller: the same instance, and Traefik routes on the platform's ingress.
c.KubeController.address = ":8000"
c.KubeController.log_level = "INFO"
c.KubeController.api_url = QHUB["api_url"]
c.KubeController.gateway_instance = QHUB["gateway_instance"]
c.KubeController.proxy_prefix = QHUB["proxy_prefix"]
c.KubeController.proxy_web_entrypoint = QHUB["proxy_web_entrypoint"]
c.KubeController.proxy_tcp_entrypoint = QHUB["proxy_tcp_entrypoint"]
c.KubeController.proxy_web_middlewares = QHUB["proxy_web_middlewares"]

# What every cluster gets unless its profile says otherwise.
for _key, _value in QHUB["cluster"].items():
    setattr(c.KubeClusterConfig, _key, _value)

_PROFILES = {p["name"]: p["config"] for p in QHUB["profiles"]}
_ENVIRONMENTS = {e["name"]: e["config"] for e in QHUB["environments"]}


def _merge(a, b):
    """Objects merged key by key (b wins), lists appended: the rule dask-gateway-server uses
    for extra pod and container config (backends/kubernetes/utils.py, merge_json_objects)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = dict(a)
        for k, v in b.items():
            out[k] = _merge(a[k], v) if k in a else v
        return out
    if isinstance(a, list) and isinstance(b, list):
        return a + b
    return b


def qhub_cluster_options(options, user):
    """The KubeClusterConfig of a cluster: its worker profile, then its conda environment."""
    config = copy.deepcopy(_PROFILES[options.profile])
    environment = options.get("conda_environment")
    if environment:
        config = _merge(config, _ENVIRONMENTS[environment])
    return config


_fields = [
    Select(
        "profile",
        list(_PROFILES),
        default=QHUB["default_profile"],
        label="Worker profile",
    )
]
if _ENVIRONMENTS:
    _fields.append(
        Select(
            "conda_environment",
            list(_ENVIRONMENTS),
            default=list(_ENVIRONMENTS)[0],
            label="Conda environment",
        )
    )
c.KubeBackend.cluster_options = Options(*_fields, handler=qhub_cluster_options)
