"""Loads jupyterhub-ssh's rendered settings and a generated host key the way the ssh image
does, and serves SSH with that key through the real asyncssh; reports what it saw as JSON.

Usage: check_ssh.py DIR

DIR holds `values.yaml` (the ConfigMap's file) and `hostKey` (a key as qhub generates it).

jupyterhub-ssh itself is not on PyPI (the name `jupyterhub-ssh` there is an unrelated project,
"SSH access and VS Code integration for JupyterHub"), so its `JupyterHubSSH` application is
not importable here. What the image runs is reproduced from its sources at the pinned commit
(yuvipanda/jupyterhub-ssh he5107a4): `helm-chart/images/jupyterhub-ssh/jupyterhub_ssh_config.py`
reads `values.yaml` with ruamel.yaml's `YAML()` and applies `hubUrl` and `ssh.config`
class by class; `jupyterhub_ssh/__init__.py` declares the traits of `JupyterHubSSH` (below,
the same names and types) and passes `host_key_path` to `asyncssh.listen(server_host_keys=...)`
with password authentication. A key the real ruamel.yaml, traitlets or asyncssh refuse fails
here.
"""

import asyncio
import json
import os
import sys

import asyncssh
from ruamel.yaml import YAML
from traitlets import Any, Bool, Integer, Unicode
from traitlets.config import Application, Config


class JupyterHubSSH(Application):
    """The configurable traits of upstream's `JupyterHubSSH` (names and types)."""

    config_file = Unicode("jupyterhub_ssh_config.py", config=True)
    port = Integer(8022, config=True)
    debug = Bool(True, config=True)
    hub_url = Any("", config=True)
    host_key_path = Unicode("", config=True)
    start_timeout = Integer(30, config=True)


class Server(asyncssh.SSHServer):
    """Accepts one user with one token, as the ssh server accepts a JupyterHub token."""

    def password_auth_supported(self):
        return True

    def validate_password(self, username, password):
        return username == "ada" and password == "a-jupyterhub-token"


async def serve(key_path):
    server = await asyncssh.listen(
        host="127.0.0.1",
        port=0,
        server_factory=Server,
        server_host_keys=[key_path],
        password_auth=True,
        agent_forwarding=False,
    )
    port = server.sockets[0].getsockname()[1]
    try:
        async with asyncssh.connect(
            "127.0.0.1",
            port,
            username="ada",
            password="a-jupyterhub-token",
            known_hosts=None,
            client_keys=None,
        ) as conn:
            seen = conn.get_server_host_key()
            return {
                "algorithm": seen.get_algorithm(),
                "public_key": seen.export_public_key("openssh").decode().split()[1],
            }
    finally:
        server.close()
        await server.wait_closed()


def main(directory):
    with open(os.path.join(directory, "values.yaml")) as f:
        values = YAML().load(f)
    c = Config()
    c.JupyterHubSSH.hub_url = values["hubUrl"]
    for app, cfg in values.get("ssh", {}).get("config", {}).items():
        c[app].update(cfg)
    unknown = sorted(set(c.JupyterHubSSH) - set(JupyterHubSSH.class_trait_names(config=True)))
    app = JupyterHubSSH(config=c)
    report = {
        "unknown": unknown,
        "hub_url": str(app.hub_url),
        "port": app.port,
        "debug": app.debug,
        "start_timeout": app.start_timeout,
        "host_key_path": app.host_key_path,
    }
    # The key where the pod mounts it is read here from DIR.
    report["served"] = asyncio.run(serve(os.path.join(directory, "hostKey")))
    json.dump(report, sys.stdout, indent=1, sort_keys=True)


main(sys.argv[1])
