# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Root pytest configuration shared by tests/unit and tests/integration.

* registers the markers (``cinder``, ``vsphere``, ``slow``, ``plugin``, ``fleet``);
* puts the collection on ``sys.path`` as
  ``ansible_collections.persistent_volumes.docker`` (a per-session temp tree
  whose last component is a symlink to the repository root), so tests import
  ``from ansible_collections.persistent_volumes.docker.plugins.module_utils
  import common`` exactly like ansible-test does. The same tree is used as
  ``ANSIBLE_COLLECTIONS_PATH`` by the integration fixtures.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import shutil
import sys
import tempfile

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAMESPACE = 'persistent_volumes'
COLLECTION = 'docker'

MARKERS = (
    'cinder: needs the test OpenStack cloud (tests/harness/openstack)',
    'vsphere: needs the govmomi vSphere simulator (tests/harness/vcsim)',
    'plugin: exercises the Docker volume-plugin daemon',
    'slow: takes more than a few seconds (deselect with -m "not slow")',
    'fleet: needs the multi-host lab (tests/harness/lab: private dockerd, Docker hosts reached over SSH)',
    'swarm: Docker Swarm on the multi-host lab with the volume plugin on every node',
)

_STATE = {}


def collections_root():
    """Directory that holds ``ansible_collections/persistent_volumes/docker`` (created once)."""
    root = _STATE.get('root')
    if root is None:
        root = tempfile.mkdtemp(prefix='pv-collections-')
        ns_dir = os.path.join(root, 'ansible_collections', NAMESPACE)
        os.makedirs(ns_dir)
        os.symlink(REPO_ROOT, os.path.join(ns_dir, COLLECTION))
        _STATE['root'] = root
    return root


def pytest_configure(config):
    for marker in MARKERS:
        config.addinivalue_line('markers', marker)
    root = collections_root()
    if root not in sys.path:
        sys.path.insert(0, root)
    os.environ['PV_COLLECTIONS_ROOT'] = root
    os.environ.setdefault('PV_REPO_ROOT', REPO_ROOT)


def pytest_collection_modifyitems(session, config, items):
    """Unit tests first, then integration tests, the volume-plugin ones last (stable otherwise).

    Once dockerd has used a legacy volume plugin it keeps the driver and asks it on every
    volume listing or lookup of an unknown name; after the plugin's daemon is gone each
    such call waits ~15 s for it, which would slow down every later Docker volume test.
    """
    def is_plugin(item):
        return item.get_closest_marker('plugin') is not None or \
            os.sep + os.path.join('integration', 'plugin') + os.sep in str(item.fspath)

    def rank(item):
        if os.sep + 'unit' + os.sep in str(item.fspath):
            return 0
        return 2 if is_plugin(item) else 1
    items.sort(key=rank)


def pytest_unconfigure(config):
    root = _STATE.pop('root', None)
    if root:
        shutil.rmtree(root, ignore_errors=True)
