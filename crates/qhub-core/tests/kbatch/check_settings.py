"""Starts the real kbatch-proxy (PyPI `kbatch-proxy`) with the settings qhub renders, and
reports what it makes of them as JSON on stdout.

Usage: check_settings.py INPUT_JSON

INPUT_JSON: {"env": {NAME: VALUE}, the kbatch-proxy container's environment as rendered (the
API token's Secret replaced by a test value), "files": {PATH: CONTENT}, the files its volumes
mount (the job template), and "hub_token": a token the stand-in hub knows}.

kbatch-proxy reads its settings at import (`kbatch_proxy.main`, pydantic `Settings` from the
environment, the job template from `KBATCH_JOB_TEMPLATE_FILE`), so the environment is set and
the files written (under a temporary root, the path rewritten) before the import. The hub's
API, which JupyterHub's `HubAuth` asks who a token belongs to, is stood in for by a server on
loopback answering `GET /hub/api/user` for `hub_token`, as JupyterHub does
(`jupyterhub/apihandlers/users.py` `SelfAPIHandler`: the name and groups of the token's owner).
The app is then driven with FastAPI's TestClient.
"""

import json
import os
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

spec = json.load(open(sys.argv[1]))
root = tempfile.mkdtemp()
rendered_env = dict(spec["env"])
env = dict(rendered_env)
for path, content in spec["files"].items():
    local = os.path.join(root, path.lstrip("/"))
    os.makedirs(os.path.dirname(local), exist_ok=True)
    with open(local, "w") as f:
        f.write(content)
    for k, v in env.items():
        if v == path:
            env[k] = local

USER = {"kind": "user", "name": "ada", "groups": ["developer"], "admin": False}
seen = []


class Hub(BaseHTTPRequestHandler):
    def do_GET(self):
        seen.append(self.path)
        if self.path == "/hub/api/user" and self.headers.get("Authorization") == f"token {spec['hub_token']}":
            body = json.dumps(USER).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        else:
            self.send_response(403)
            self.send_header("Content-Length", "0")
            self.end_headers()

    def log_message(self, *args):
        pass


hub = HTTPServer(("127.0.0.1", 0), Hub)
threading.Thread(target=hub.serve_forever, daemon=True).start()
# The rendered URL names the hub's Service; the stand-in answers on loopback at the same path.
api_url = env["JUPYTERHUB_API_URL"]
env["JUPYTERHUB_API_URL"] = f"http://127.0.0.1:{hub.server_port}/hub/api"
env["KBATCH_INIT_LOGGING"] = "false"
os.environ.update(env)

from fastapi.testclient import TestClient  # noqa: E402

import kbatch_proxy.main as main  # noqa: E402

client = TestClient(main.app)


def get(path, token=None):
    headers = {"Authorization": f"token {token}"} if token else {}
    r = client.get(path, headers=headers)
    try:
        body = r.json()
    except ValueError:
        body = r.text
    return {"status": r.status_code, "body": body}


prefix = main.settings.kbatch_prefix
report = {
    "settings": json.loads(main.settings.json()),
    "job_template": main.job_template,
    "hub_api_url_rendered": api_url,
    "hub_auth_api_url": main.auth.api_url,
    "probe": get("/"),
    "listing": get(f"{prefix}/"),
    "authorized": get(f"{prefix}/authorized", spec["hub_token"]),
    "refused": get(f"{prefix}/authorized", "not-a-token"),
    "no_token": get(f"{prefix}/jobs/"),
    "unprefixed": get("/jobs/", spec["hub_token"]),
    "profiles": get(f"{prefix}/profiles/"),
    "hub_requests": seen,
}
json.dump(report, sys.stdout, indent=1, sort_keys=True, default=str)
hub.shutdown()
