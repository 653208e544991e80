"""Serves conda-store-server's REST API on loopback for qhub-rs's client test.

Usage: python serve_api.py --config CONFIG_PY

Runs conda-store-server 2025.2.2's own server application (`CondaStoreServer`, FastAPI under
uvicorn) with the configuration given: sqlite, no Redis (Celery falls back to the database
broker, so registering a build queues it in sqlite), no worker. Uvicorn prints the port it got
(`Uvicorn running on http://127.0.0.1:PORT`).

`conda` is not installable from PyPI (conda/conda#11715) and conda-store-server imports it at
module level; as in check_config.py, an import hook stands in for it (the platform subdir is the
only value read while serving the API calls the test makes).
"""

import importlib.abc
import importlib.machinery
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

from conda_store_server._internal.server.app import CondaStoreServer  # noqa: E402

CondaStoreServer.launch_instance()
