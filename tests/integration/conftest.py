# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fixtures for integration tests: real ansible-playbook runs as root against localhost,
a real dockerd, a locally imported busybox image and reliable cleanup.

Fixtures (see tests/integration/pv_integration_helpers.py for the classes):

* ``ansible`` -> :class:`AnsibleRunner` (function scope; ``ansible_session`` is the
  session-scoped twin for session/module fixtures):
  ``ansible.run(tasks, extra_vars=None, check=False, diff=False, vars=None, hosts='localhost',
  gather_facts=False, inventory=None, env=None, timeout=900, args=())`` and
  ``ansible.run_playbook(path, inventory=None, extra_vars=None, check=False, diff=False,
  limit=None, tags=None, env=None, timeout=900, args=())`` -> :class:`PlayResult`
  (``.rc .stdout .stderr .tasks .stats .changed .failed .changed_tasks .failed_tasks
  .task(name) .result(name, host=None) .assert_ok() .assert_failed() .assert_changed()
  .assert_unchanged() .summary()``). ``ansible.inventory`` is the localhost inventory
  file (group ``docker_hosts``), ``ansible.env`` the environment used.
* ``docker_client`` (session) -> ``docker.DockerClient``; starts dockerd through
  ``tests/harness/dockerd.sh start`` when none answers and stops it at the end only then.
* ``busybox_image`` (session) -> ``'pv-test/busybox:latest'`` built by ``tests/harness/image.sh``.
* ``uid`` -> unique prefix ``pvt-<6 hex>`` for names of everything a test creates.
* ``cleanup`` -> :class:`Cleanup` (``add(func, *a, **kw)``, ``container(name)``,
  ``docker_volume(name, driver=None)``, ``mount(path)``, ``loop(dev)``, ``loop_file(path)``,
  ``fstab(marker)``, ``path(path)``); reverse order, even on failure, then a sweep of
  everything whose name contains ``uid``.
* ``repo_root``, ``collections_root`` (session) -> paths.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import secrets
import subprocess

import pytest

import pv_integration_helpers as helpers  # pylint: disable=import-error
# the lab's session fixtures (one lab per session for fleet/ and swarm/)
from lab_fixtures import lab, lab_hypervisor, lab_servers  # noqa: F401 pylint: disable=unused-import,import-error
from lab_fixtures import lab_vclient, lab_vms, lab_vsphere  # noqa: F401 pylint: disable=unused-import,import-error

_HERE = os.path.dirname(os.path.abspath(__file__))

REPO_ROOT = helpers.REPO_ROOT
DOCKERD_SH = os.path.join(REPO_ROOT, 'tests', 'harness', 'dockerd.sh')
IMAGE_SH = os.path.join(REPO_ROOT, 'tests', 'harness', 'image.sh')


def pytest_collection_modifyitems(config, items):
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason='integration tests need root (loop devices, mounts, dockerd)')
    for item in items:
        if str(item.fspath).startswith(_HERE + os.sep):
            item.add_marker(skip)


@pytest.fixture(scope='session')
def repo_root():
    return REPO_ROOT


@pytest.fixture(scope='session')
def collections_root():
    # created by tests/conftest.py (also on sys.path for imports)
    return os.environ['PV_COLLECTIONS_ROOT']


@pytest.fixture(scope='session')
def ansible_session(tmp_path_factory, collections_root):
    return helpers.AnsibleRunner(str(tmp_path_factory.mktemp('ansible-session')), collections_root)


@pytest.fixture
def ansible(tmp_path, collections_root):
    return helpers.AnsibleRunner(str(tmp_path / 'ansible'), collections_root)


def _docker_ping():
    import docker
    try:
        client = docker.from_env(timeout=120)
        client.ping()
        return client
    except Exception:  # pylint: disable=broad-except
        return None


@pytest.fixture(scope='session')
def docker_client():
    pytest.importorskip('docker')
    client = _docker_ping()
    started = False
    if client is None:
        proc = subprocess.run(['bash', DOCKERD_SH, 'start'], stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
                              check=False)
        if proc.returncode != 0:
            pytest.fail('tests/harness/dockerd.sh start failed (rc=%s):\n%s' % (proc.returncode, proc.stdout))
        started = True
        client = _docker_ping()
        if client is None:
            pytest.fail('dockerd started but does not answer:\n%s' % proc.stdout)
    yield client
    client.close()
    if started:
        subprocess.run(['bash', DOCKERD_SH, 'stop'], stdin=subprocess.DEVNULL, check=False)


@pytest.fixture(scope='session')
def busybox_image(docker_client):
    proc = subprocess.run(['bash', IMAGE_SH], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, check=False)
    if proc.returncode != 0:
        pytest.fail('tests/harness/image.sh failed (rc=%s):\n%s%s' % (proc.returncode, proc.stdout, proc.stderr))
    tag = proc.stdout.strip().splitlines()[-1].strip()
    docker_client.images.get(tag)
    return tag


@pytest.fixture
def uid():
    return 'pvt-' + secrets.token_hex(3)


def _docker_factory():
    import docker
    if not os.path.exists('/var/run/docker.sock') and not os.environ.get('DOCKER_HOST'):
        raise RuntimeError('no docker socket')
    client = docker.from_env(timeout=120)
    client.ping()
    return client


@pytest.fixture
def cleanup(uid):
    with helpers.cleanup_scope(uid, _docker_factory) as c:  # pylint: disable=contextmanager-generator-missing-cleanup
        yield c
