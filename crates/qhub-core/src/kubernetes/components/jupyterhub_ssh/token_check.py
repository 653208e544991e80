#!/usr/bin/python3
"""qhub's token check for jupyterhub-ssh's sftp server.

Mounted over the image's /usr/sbin/jupyterhub-token-verify.py, which PAM runs as root for
every sftp login (pam_exec with expose_authtok: the user name in PAM_USER, the password on
stdin). The image's own check accepts any token the hub accepts, whoever it belongs to; this
one lets a user in only with a token of their own: the hub's answer to GET /hub/api/user must
name exactly the user logging in. It then bind-mounts the user's home directory
(/mnt/home/<escaped name>, escapism's escape as KubeSpawner's {escaped_username}) at
/export/home/<name>/<name>, inside the chroot sshd confines the session to
(sshd_config: ChrootDirectory /export/home/%u, ForceCommand internal-sftp -d %u).

Everything from the user (the name, the token) is untrusted; this runs as root. The name must
be one path component, the token is only sent to the hub's URL from the mounted config file,
and nothing is read from the environment but PAM_USER.
"""

import os
import string
import subprocess
import sys

import requests
from escapism import escape

HUB_URL_FILE = "/etc/jupyterhub-sftp/config/hubUrl"
HOMES = "/mnt/home"
CHROOTS = "/export/home"
SAFE = set(string.ascii_lowercase + string.digits)


def token_owner(hub_url, token):
    """The name of the user `token` belongs to, or None (invalid, not a user's, hub down)."""
    if not token:
        return None
    try:
        answer = requests.get(
            f"{hub_url}/hub/api/user",
            headers={"Authorization": f"token {token}"},
            timeout=10,
        )
        model = answer.json() if answer.status_code == 200 else {}
    except (requests.RequestException, ValueError):
        return None
    if not isinstance(model, dict) or model.get("kind", "user") != "user":
        return None
    name = model.get("name")
    return name if isinstance(name, str) else None


def directory_name(name):
    """The user's home directory under HOMES: KubeSpawner's {escaped_username}."""
    return escape(name, safe=SAFE, escape_char="-").lower()


def acceptable(name):
    """Whether `name` can name the chroot: one path component, nothing special."""
    return bool(name) and "/" not in name and "\0" not in name and name not in (".", "..")


def mount_home(name):
    """Bind-mounts the user's home inside their chroot, once."""
    source = os.path.join(HOMES, directory_name(name))
    target = os.path.join(CHROOTS, name, name)
    if not os.path.isdir(source) or os.path.islink(source):
        return False
    if os.path.ismount(target):
        return True
    # Root-owned, 0755: sshd refuses a chroot others can write.
    os.makedirs(target, mode=0o755, exist_ok=True)
    subprocess.run(["mount", "--bind", source, target], check=True)
    return True


def main():
    name = os.environ.get("PAM_USER", "")
    token = sys.stdin.read().rstrip("\0")
    with open(HUB_URL_FILE) as f:
        hub_url = f.read().strip()
    if not acceptable(name) or token_owner(hub_url, token) != name:
        return 1
    return 0 if mount_home(name) else 1


if __name__ == "__main__":
    sys.exit(main())
