# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fixtures for the volume-plugin tests (real dockerd, real loop devices, mkfs, mount).

* ``plugin`` (module scope) -> :class:`pv_plugin_helpers.PluginInstance`: the daemon
  installed by the ``persistent_volumes.docker.volume_plugin`` role (pidfile service
  manager: PID 1 is not systemd here) with its own driver name, root, install dir and
  config under a temp dir. Torn down at the end: containers and Docker volumes of the
  driver are removed while the daemon still runs, then the role runs with
  ``state: absent, purge: true``, then a safety net kills the daemon by pid and removes
  mounts and loop devices under its base dir (and fails the test if there were any).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import importlib.util
import os
import secrets
import sys

import pytest

_HERE = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location('pv_plugin_helpers', os.path.join(_HERE, 'pv_plugin_helpers.py'))
ph = importlib.util.module_from_spec(_spec)
sys.modules['pv_plugin_helpers'] = ph
_spec.loader.exec_module(ph)


@pytest.fixture(scope='module')
def plugin(ansible_session, docker_client, busybox_image, tmp_path_factory):
    driver = 'pvtp-' + secrets.token_hex(3)
    base = str(tmp_path_factory.mktemp(driver))
    variables = ph.role_vars(driver, base)
    instance = ph.PluginInstance(driver, base, variables)
    try:
        result = ansible_session.run(ph.play(variables))
        result.assert_ok()
        assert instance.pid(), 'daemon not running after the role:\n' + instance.log_text()
        yield instance
    finally:
        if instance.pid():
            ph.remove_driver_objects(driver)
        absent = ansible_session.run(ph.play(dict(variables, pv_plugin_state='absent', pv_plugin_purge=True)))
        leftovers = ph.safety_net(instance)
        absent.assert_ok()
        assert not leftovers, 'left behind: %s' % leftovers
