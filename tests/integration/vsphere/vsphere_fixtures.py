# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fixtures for the vSphere tests (vsphere/conftest.py and tests of other folders import them), against the real govmomi simulator (tests/harness/vcsim).

* ``vcsim`` (session): builds and starts the simulator unless one already runs
  (``.state/vcsim/vcsim.pid``), and stops it by pid at the end only if it started it.
  A dict: ``hostname, port, username, password, validate_certs, url, env``.
* ``vsphere_auth``: the auth options for the modules (dict).
* ``vs``: a connected product client (``vmware_client.VSphere``) for assertions.
* ``test_vm``: a fresh, powered-on VM (one PVSCSI controller, bus 0) named after ``uid``,
  destroyed at the end together with every ``uid`` file left in the volume folder.
* ``guest``: factory for a :class:`GuestEmulator` on a VM (stopped at the end).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import subprocess

import pytest


pytest.importorskip('pyVmomi')


HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))
HARNESS = os.path.join(REPO, 'tests', 'harness', 'vcsim')
STATE = os.environ.get('VCSIM_STATE_DIR') or os.path.join(REPO, '.state', 'vcsim')


# from tests/harness/vcsim (on the import path: tests/pytest.ini)
import guest_emulator  # noqa: E402 pylint: disable=import-error,wrong-import-position
import pv_vsphere_support as support  # noqa: E402 pylint: disable=import-error,wrong-import-position


def _running():
    try:
        with open(os.path.join(STATE, 'vcsim.pid')) as f:
            pid = int(f.read().strip())
        os.kill(pid, 0)
        with open(os.path.join(STATE, 'url')) as f:
            return f.read().strip()
    except (OSError, ValueError):
        return None


def _read_env():
    env = {}
    with open(os.path.join(STATE, 'env')) as f:
        for line in f:
            key, _sep, value = line.strip().partition('=')
            if key:
                env[key] = value
    return env


@pytest.fixture(scope='session')
def vcsim():
    started = False
    if _running() is None:
        proc = subprocess.run([os.path.join(HARNESS, 'start.sh')], stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, check=False)
        if proc.returncode != 0:
            pytest.fail('tests/harness/vcsim/start.sh failed (rc=%s):\n%s%s'
                        % (proc.returncode, proc.stdout, proc.stderr))
        started = True
    env = _read_env()
    info = {'hostname': env['VMWARE_HOST'], 'port': int(env['VMWARE_PORT']), 'username': env['VMWARE_USER'],
            'password': env['VMWARE_PASSWORD'], 'validate_certs': False, 'url': _running(), 'env': env,
            'started': started}
    yield info
    if started:
        subprocess.run([os.path.join(HARNESS, 'stop.sh')], stdin=subprocess.DEVNULL, check=False)


@pytest.fixture
def vsphere_auth(vcsim):
    return dict((k, vcsim[k]) for k in ('hostname', 'port', 'username', 'password', 'validate_certs'))


@pytest.fixture
def vs(vcsim):
    # imported here: tests/conftest.py puts the collection on sys.path in pytest_configure
    from ansible_collections.persistent_volumes.docker.plugins.module_utils.vmware import client as vc
    client = vc.VSphere(dict((k, vcsim[k]) for k in ('hostname', 'port', 'username', 'password',
                                                     'validate_certs'))).connect()
    yield client
    client.close()


@pytest.fixture
def test_vm(vs, uid):
    vm = support.create_vm(vs, uid + '-vm')
    yield vm
    support.destroy_vm(vs, vm)
    support.remove_files(vs, uid)


@pytest.fixture
def guest(vcsim, tmp_path):
    emulators = []

    def make(vm, size_delta=0):
        emu = guest_emulator.GuestEmulator(vcsim['hostname'], vcsim['port'], vcsim['username'],
                                           vcsim['password'], vm._moId, str(tmp_path / ('sys%d' % len(emulators))),
                                           size_delta=size_delta)
        emulators.append(emu)
        return emu.start()
    yield make
    for emu in reversed(emulators):
        emu.stop()
    for emu in emulators:
        assert not emu.errors, emu.errors
