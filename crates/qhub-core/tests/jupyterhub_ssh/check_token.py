"""Runs qhub's sftp token check (the rendered ConfigMap's file) against a stand-in hub on
loopback, with the packages of the sftp image (requests 2.26.0, escapism 1.0.1: its
`jupyterhub-sftp/requirements.txt`), and reports its decisions as JSON.

Usage: check_token.py TOKEN_CHECK_PY

The stand-in answers `GET /hub/api/user` as JupyterHub does: 200 with the token owner's model
for a known token (a user's, or a service's), 403 otherwise.
"""

import http.server
import importlib.util
import json
import sys
import threading

TOKENS = {
    "ada-token": {"kind": "user", "name": "ada@example.com"},
    "bob-token": {"kind": "user", "name": "bob"},
    "service-token": {"kind": "service", "name": "bob"},
}


class Hub(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        token = self.headers.get("Authorization", "").removeprefix("token ")
        model = TOKENS.get(token)
        if self.path != "/hub/api/user" or model is None:
            self.send_response(403)
            self.end_headers()
            return
        body = json.dumps(model).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


spec = importlib.util.spec_from_file_location("token_check", sys.argv[1])
check = importlib.util.module_from_spec(spec)
spec.loader.exec_module(check)

server = http.server.HTTPServer(("127.0.0.1", 0), Hub)
threading.Thread(target=server.serve_forever, daemon=True).start()
hub_url = f"http://127.0.0.1:{server.server_address[1]}"


def admitted(name, token):
    return check.acceptable(name) and check.token_owner(hub_url, token) == name


report = {
    "own token": admitted("ada@example.com", "ada-token"),
    "another user's token": admitted("bob", "ada-token"),
    "a service's token": admitted("bob", "service-token"),
    "an unknown token": admitted("bob", "nope"),
    "no token": admitted("bob", ""),
    "hub down": check.token_owner("http://127.0.0.1:9", "ada-token") is not None,
    "names refused": [n for n in ["", ".", "..", "a/b", "../x", "a\0b", "bob"] if not check.acceptable(n)],
    "home of ada@example.com": check.directory_name("ada@example.com"),
    "home of Bob.Smith": check.directory_name("Bob.Smith"),
}
server.shutdown()
json.dump(report, sys.stdout, indent=1, sort_keys=True)
