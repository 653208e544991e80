"""Loads a rendered Dask Gateway ConfigMap with dask-gateway-server's own classes and prints
what they make of it, as JSON, for tests/dask_gateway_config.rs to check.

Usage: check_config.py DIR NAMESPACE, where DIR holds the ConfigMap's files.
"""
import json
import logging
import os
import sys

from dask_gateway_server.app import DaskGateway
from dask_gateway_server.auth import JupyterHubAuthenticator
from dask_gateway_server.backends.kubernetes.backend import KubeBackend, KubeClusterConfig
from dask_gateway_server.backends.kubernetes.controller import KubeController
from dask_gateway_server.models import User

directory, namespace = sys.argv[1], sys.argv[2]
path = os.path.join(directory, "dask_gateway_config.py")
warnings = []


class Catch(logging.Handler):
    def emit(self, record):
        if record.levelno >= logging.WARNING:
            warnings.append(record.getMessage())


for name in ("", "traitlets", "DaskGateway", "KubeController"):
    logging.getLogger(name).addHandler(Catch())

# The API server, as `dask-gateway-server --config PATH` loads it.
gateway = DaskGateway()
gateway.log.addHandler(Catch())
gateway.load_config_file(path)
backend = gateway.backend_class(parent=gateway, log=gateway.log)
auth = gateway.authenticator_class(parent=gateway, log=gateway.log)
assert isinstance(backend, KubeBackend), type(backend)
assert isinstance(auth, JupyterHubAuthenticator), type(auth)

report = {
    "backend": {"api_url": backend.api_url, "gateway_instance": backend.gateway_instance},
    "auth": {
        "jupyterhub_api_url": auth.jupyterhub_api_url,
        "token_from_env": auth.jupyterhub_api_token == os.environ["JUPYTERHUB_API_TOKEN"],
    },
    "options": backend.cluster_options.get_specification(),
    "profiles": {},
}

# Each worker profile (and each conda environment with the first profile), through the
# options handler, into the KubeClusterConfig the backend would start the cluster with.
TRAITS = [
    "namespace", "image", "worker_cores", "worker_cores_limit", "worker_memory",
    "worker_memory_limit", "worker_threads", "worker_extra_pod_config",
    "worker_extra_container_config", "worker_extra_pod_annotations",
    "scheduler_extra_pod_config", "scheduler_extra_container_config",
    "worker_cmd", "scheduler_cmd", "environment",
]
user = User("alice", groups=["developer"])
fields = {f["field"]: f for f in report["options"]}
requests = [{"profile": p} for p in fields["profile"]["spec"]["options"]]
for env in fields.get("conda_environment", {}).get("spec", {}).get("options", []):
    requests.append({"profile": fields["profile"]["default"], "conda_environment": env})
for request in requests:
    options = backend.cluster_options.parse_options(request)
    overrides = backend.cluster_options.get_configuration(options, user)
    config = backend.cluster_config_class(parent=backend, **overrides)
    assert isinstance(config, KubeClusterConfig), type(config)
    key = request["profile"] + (" / " + request["conda_environment"] if "conda_environment" in request else "")
    report["profiles"][key] = {t: getattr(config, t) for t in TRAITS}

# The controller, as `dask-gateway-server kube-controller --config PATH` loads it, and the
# routes it would write for a cluster.
controller = KubeController()
controller.log.addHandler(Catch())
controller.load_config_file(path)
# The scheduler and worker pods the controller makes for a cluster of each profile.
report["pods"] = {}
for request in requests:
    options = backend.cluster_options.parse_options(request)
    overrides = backend.cluster_options.get_configuration(options, user)
    config = backend.cluster_config_class(parent=backend, **overrides)
    key = request["profile"] + (" / " + request["conda_environment"] if "conda_environment" in request else "")
    report["pods"][key] = {
        "scheduler": controller.make_pod(namespace, "abc123", config, is_worker=False),
        "worker": controller.make_pod(namespace, "abc123", config, is_worker=True),
    }
report["controller"] = {
    "api_url": controller.api_url,
    "gateway_instance": controller.gateway_instance,
    "ingressroute": controller.make_ingressroute("abc123", namespace),
    "ingressroutetcp": controller.make_ingressroutetcp("abc123", namespace),
}
report["warnings"] = warnings
json.dump(report, sys.stdout, indent=1, sort_keys=True)
