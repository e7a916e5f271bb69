# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fixtures for the volume-plugin tests (real dockerd, real loop devices, mkfs, mount).

* ``engine`` (session) -> :class:`pv_plugin_helpers.PrivateDockerd`: the private dockerd
  the plugin tests use (its own mount namespace and /run/docker/plugins), so that the
  shared engine never activates, and then forever caches, a test plugin.
* ``pcleanup`` -> the shared :class:`Cleanup` sweeping the private engine and the host.
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

import os
import secrets
import tempfile

import pytest

import pv_integration_helpers as helpers  # pylint: disable=import-error
import pv_plugin_helpers as ph  # pylint: disable=import-error


@pytest.fixture(scope='session')
def engine(docker_client, busybox_image):
    """The private dockerd every plugin test talks to (see :class:`pv_plugin_helpers.PrivateDockerd`)."""
    base = tempfile.mkdtemp(prefix='pvd-', dir='/tmp')
    eng = ph.PrivateDockerd(base, 'pvd' + secrets.token_hex(3))
    try:
        eng.start()
        eng.load_image(busybox_image)
        yield eng
    finally:
        eng.cleanup()


@pytest.fixture
def pcleanup(uid, engine):
    """The shared Cleanup, sweeping the private engine (containers, volumes) and the host
    (mounts, loop devices) for everything named with ``uid``."""
    with helpers.cleanup_scope(uid, engine.client) as c:  # pylint: disable=contextmanager-generator-missing-cleanup
        yield c


@pytest.fixture(scope='module')
def plugin(ansible_session, engine):
    driver = 'pvtp-' + secrets.token_hex(3)
    variables = ph.plugin_vars(engine, driver)
    instance = ph.PluginInstance(driver, os.path.dirname(variables['pv_plugin_root']), variables, engine.cli)
    try:
        result = ansible_session.run(ph.play(variables))
        result.assert_ok()
        assert instance.pid(), 'daemon not running after the role:\n' + instance.log_text()
        yield instance
    finally:
        if instance.pid():
            ph.remove_driver_objects(driver, engine.cli)
        absent = ansible_session.run(ph.play(dict(variables, pv_plugin_state='absent', pv_plugin_purge=True)))
        leftovers = ph.safety_net(instance)
        engine.restart()            # Docker caches a legacy plugin until it restarts
        absent.assert_ok()
        assert not leftovers, 'left behind: %s' % leftovers
