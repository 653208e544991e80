"""Loads qhub-rs's rendered conda-store configuration with conda-store-server's own classes.

Usage: python check_config.py CONFIG_DIR ENVIRONMENTS_DIR EXPECT_JSON

- CONFIG_DIR holds `conda_store_config.py` and `qhub.json` as the ConfigMap mounts them;
- ENVIRONMENTS_DIR holds the environment spec files;
- EXPECT_JSON maps `Class.trait` to the value the loaded configuration must give it, and
  `environments` to the environment names conda-store must discover there.

Checks: every configured class and trait is one conda-store 2025.2.2 defines (no trait it would
ignore); the server (`CondaStoreServer`) and worker (`CondaStoreWorker`) applications load the
file; conda-store's own config classes take the values (`CondaStore`, its authentication class,
`LocalStorage`, `RBACAuthorizationBackend`); the role bindings a Keycloak user gets; each
environment file passes `CondaSpecification` and conda-store's discovery of watched paths finds
it. Prints one `ok:` line per check; exits 1 naming the first failure.

`conda` itself is not installable from PyPI (conda/conda#11715, which conda-store-server's
pyproject.toml cites), and conda-store-server imports it at module level for its build actions;
an import hook stands in for it here (the platform subdir `linux-64` is the only value read while
loading a configuration). Redis is not running here: `redis.Redis.ping`, which
`CondaStore.redis_url`'s validator calls, records the URL it was given instead.
"""

import importlib.abc
import importlib.machinery
import json
import os
import sys
import types


class _Anything:
    def __init__(self, *args, **kwargs):
        pass

    def __call__(self, *args, **kwargs):
        return _Anything()

    def __getattr__(self, name):
        return _Anything()


class _CondaModule(types.ModuleType):
    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _Anything


class _CondaStandIn(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path, target=None):
        if name == "conda" or name.startswith("conda."):
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
        return None

    def create_module(self, spec):
        return _CondaModule(spec.name)

    def exec_module(self, module):
        module.__path__ = []
        if module.__name__ == "conda.base.context":
            module.context = types.SimpleNamespace(subdir="linux-64")


sys.meta_path.insert(0, _CondaStandIn())

import redis  # noqa: E402
import yaml  # noqa: E402
from sqlalchemy.orm import sessionmaker  # noqa: E402
from traitlets.config.loader import PyFileConfigLoader  # noqa: E402

from conda_store_server import storage  # noqa: E402
from conda_store_server._internal import environment, schema  # noqa: E402
from conda_store_server._internal.server.app import CondaStoreServer  # noqa: E402
from conda_store_server._internal.worker.app import CondaStoreWorker  # noqa: E402
from conda_store_server.conda_store_config import CondaStore  # noqa: E402
from conda_store_server.server import auth  # noqa: E402

PINGED = []


def _ping(self, **kwargs):
    PINGED.append(dict(self.connection_pool.connection_kwargs))
    return True


redis.Redis.ping = _ping

SECRETS = {
    "QHUB_CONDA_STORE_POSTGRES_PASSWORD": "pg-secret",
    "QHUB_CONDA_STORE_REDIS_PASSWORD": "redis-secret",
    "QHUB_CONDA_STORE_CLIENT_SECRET": "oidc-secret",
    "QHUB_CONDA_STORE_TOKEN_SECRET": "token-secret",
}
# What the worker's pod gets (no login secrets).
WORKER_SECRETS = ["QHUB_CONDA_STORE_POSTGRES_PASSWORD", "QHUB_CONDA_STORE_REDIS_PASSWORD"]


def fail(message):
    print("FAIL: " + message)
    sys.exit(1)


def ok(message):
    print("ok: " + message)


def load(config_dir, env_names):
    for name in SECRETS:
        os.environ.pop(name, None)
    for name in env_names:
        os.environ[name] = SECRETS[name]
    loader = PyFileConfigLoader("conda_store_config.py", path=config_dir)
    return loader.load_config()


def configurable_classes(config):
    """conda-store's configurable classes, by the name a config section uses."""
    classes = {
        c.__name__: c
        for c in [
            CondaStoreServer,
            CondaStoreWorker,
            CondaStore,
            auth.Authentication,
            auth.GenericOAuthAuthentication,
            auth.AuthenticationBackend,
            auth.RBACAuthorizationBackend,
            storage.Storage,
            storage.LocalStorage,
            storage.S3Storage,
        ]
    }
    auth_class = config.CondaStoreServer.get("authentication_class")
    if isinstance(auth_class, type):
        classes[auth_class.__name__] = auth_class
    return classes


def check_known_traits(config):
    classes = configurable_classes(config)
    for section, values in config.items():
        if section not in classes:
            fail(f"c.{section} is not a conda-store class: conda-store would ignore it")
        known = set(classes[section].class_trait_names(config=True))
        for trait in values:
            if trait not in known:
                fail(f"c.{section}.{trait} is not a trait of {section}: conda-store would ignore it")
    ok(f"{sum(len(v) for v in config.values())} settings in {len(config)} classes, all known to conda-store")


def main():
    config_dir, environments_dir, expect_file = sys.argv[1:4]
    with open(expect_file) as f:
        expect = json.load(f)

    # --- the server, as `conda-store-server --config` loads it
    config = load(config_dir, SECRETS)
    check_known_traits(config)
    server = CondaStoreServer(config=config)
    store = CondaStore(parent=server, log=server.log)
    authentication = server.authentication_class(
        parent=store, log=server.log, authentication_db=sessionmaker()
    )
    objects = {
        "CondaStoreServer": server,
        "CondaStore": store,
        "GenericOAuthAuthentication": authentication,
        "AuthenticationBackend": authentication.authentication,
        "RBACAuthorizationBackend": authentication.authorization,
        "LocalStorage": storage.LocalStorage(parent=store, log=server.log),
    }
    if not isinstance(authentication, auth.GenericOAuthAuthentication):
        fail(f"the authentication class {type(authentication)} is not a GenericOAuthAuthentication")
    if not issubclass(store.storage_class, storage.LocalStorage):
        fail(f"storage class {store.storage_class}")
    if authentication.client_secret != SECRETS["QHUB_CONDA_STORE_CLIENT_SECRET"]:
        fail("the OIDC client secret is not the environment variable's")
    if authentication.authentication.secret != SECRETS["QHUB_CONDA_STORE_TOKEN_SECRET"]:
        fail("the token signing secret is not the environment variable's")
    if SECRETS["QHUB_CONDA_STORE_POSTGRES_PASSWORD"] not in store.database_url:
        fail(f"database_url {store.database_url!r} lacks the password")
    if not PINGED or PINGED[-1].get("password") != SECRETS["QHUB_CONDA_STORE_REDIS_PASSWORD"]:
        fail(f"redis_url was not validated with the password: {PINGED}")

    # --- the worker, as `conda-store-worker --config` loads it, without the login secrets
    worker_config = load(config_dir, WORKER_SECRETS)
    check_known_traits(worker_config)
    worker = CondaStoreWorker(config=worker_config)
    worker_store = CondaStore(parent=worker, log=worker.log)
    objects["CondaStoreWorker"] = worker
    if worker_store.database_url != store.database_url:
        fail("the worker's database_url differs from the server's")
    ok("server and worker applications load the file; database, Redis, OIDC and token secrets come from the environment")

    for key, want in expect.get("traits", {}).items():
        section, trait = key.split(".", 1)
        got = getattr(objects[section], trait)
        if isinstance(got, type):
            got = got.__name__
        if isinstance(got, (set, tuple)):
            got = sorted(got)
        if isinstance(got, dict):
            got = {k: sorted(v) if isinstance(v, (set, list)) else v for k, v in got.items()}
        if got != want:
            fail(f"{key} is {got!r}, expected {want!r}")
        ok(f"{key} = {got!r}")

    for case in expect.get("role_bindings", []):
        got = authentication.role_bindings(case["user"])
        got = {k: sorted(v) for k, v in got.items()}
        if got != case["bindings"]:
            fail(f"role bindings of {case['user']}: {got}, expected {case['bindings']}")
        for arn, roles in got.items():
            # Every role granted is one conda-store's RBAC knows.
            authentication.authorization.convert_roles_to_permissions(roles)
        ok(f"role bindings of {case['user']['preferred_username']}: {got}")

    # --- the environments, as the worker's watch finds and validates them
    found = environment.discover_environments([environments_dir])
    names = []
    for path in found:
        with open(path) as f:
            spec = schema.CondaSpecification.model_validate(yaml.safe_load(f))
        names.append(spec.name)
        ok(f"{os.path.basename(path)}: CondaSpecification {spec.name} with {len(spec.dependencies)} dependencies")
    if sorted(names) != sorted(expect["environments"]):
        fail(f"discovered environments {sorted(names)}, expected {sorted(expect['environments'])}")


if __name__ == "__main__":
    main()
