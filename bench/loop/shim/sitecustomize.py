# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark-only shim (bench/loop/bench_loop.py --dockerd private).

The volume module talks to ``unix:///var/run/docker.sock`` (it has no docker_host
option and ignores DOCKER_HOST), so to point it at the benchmark's private dockerd
this file, put first on PYTHONPATH, rewrites that default socket URL to
$PV_BENCH_DOCKER_HOST when the Docker SDK's ``APIClient`` is constructed. The shell
script and community.docker follow DOCKER_HOST on their own. Then it runs the
sitecustomize it shadows (Debian ships one).
"""

import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
_TARGET = os.environ.get('PV_BENCH_DOCKER_HOST')
_DEFAULTS = ('unix:///var/run/docker.sock', 'unix://var/run/docker.sock', 'unix:///run/docker.sock')


def _patch(module):
    cls = module.APIClient
    original = cls.__init__

    def __init__(self, base_url=None, *args, **kwargs):
        if base_url is None or base_url in _DEFAULTS:
            base_url = _TARGET
        original(self, base_url, *args, **kwargs)
    cls.__init__ = __init__


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        if fullname != 'docker.api.client':
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return spec
        loader = spec.loader
        exec_module = loader.exec_module

        def patched_exec(module):
            exec_module(module)
            _patch(module)
        loader.exec_module = patched_exec
        return spec


if _TARGET:
    sys.meta_path.insert(0, _Finder())

# chain to the sitecustomize this one shadows
_spec = importlib.machinery.PathFinder.find_spec(
    'sitecustomize', [p for p in sys.path if os.path.abspath(p or '.') != _HERE])
if _spec is not None and _spec.loader is not None:
    _mod = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(_mod)
