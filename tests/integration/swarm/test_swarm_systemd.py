# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The volume_plugin role in systemd mode: a lab host of the systemd variant (systemd as PID 1,
tests/harness/lab ``add_host(..., variant='systemd')``) joins the lab's Swarm; the role (service
manager ``auto``) picks systemd there, the unit runs, dockerd lists the plugin, and a Swarm
service pinned to that node gets its loop volume (written, then read back by a second task).
The host is removed at the end.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import time

import pytest

import pv_integration_helpers as helpers  # pylint: disable=import-error
# from tests/harness/lab (on the import path: tests/pytest.ini)
import offline  # pylint: disable=import-error

pytestmark = [pytest.mark.timeout(900)]

DRIVER = 'pv-loop'
SD_HOST = 'sd1'


@pytest.fixture
def systemd_node(lab, tmp_path, collections_root):
    swarm = lab.swarm()
    # the session's Swarm (conftest.py) when it exists: this test joins it and leaves it as it was
    existed = swarm.docker('info', '-f', '{{.Swarm.LocalNodeState}}').strip() == 'active'
    try:
        t0 = time.monotonic()
        lab.add_host(SD_HOST, variant='systemd')
        started = time.monotonic() - t0
        # what the role would install with apt (the host is offline): python3-venv
        offline.provision(lab, SD_HOST, offline.bundle(lab, SD_HOST, debs=offline.VENV_DEBS))
        yield swarm, started, helpers.AnsibleRunner(str(tmp_path / 'ansible'), collections_root, env={
            'ANSIBLE_PYTHON_INTERPRETER': '/usr/bin/python3', 'ANSIBLE_REMOTE_TEMP': '~/.ansible/tmp',
            'ANSIBLE_PIPELINING': 'True'}), lab.inventory(str(tmp_path / 'inventory.yml'), hosts=[SD_HOST])
    finally:
        if any(h['name'] == SD_HOST for h in lab.hosts):
            lab.exec(SD_HOST, ['docker', 'swarm', 'leave', '--force'], check=False)
            lab.remove_host(SD_HOST)
        if swarm.manager in [h['name'] for h in lab.hosts]:
            lab.exec(swarm.manager, ['docker', 'node', 'rm', '--force', SD_HOST], check=False)
        if not existed:
            swarm.leave()


def test_role_in_systemd_mode_on_a_swarm_node(systemd_node, lab, uid):
    swarm, started, runner, inventory = systemd_node
    assert lab.exec(SD_HOST, ['systemctl', 'is-system-running', '--wait']).stdout.strip() in ('running', 'degraded')
    assert lab.exec(SD_HOST, ['readlink', '/proc/1/exe']).stdout.strip().endswith('systemd')
    play = [{'name': 'Volume plugin on a systemd node', 'hosts': 'docker_hosts', 'become': True,
             'gather_facts': False,
             'roles': [{'role': 'persistent_volumes.docker.volume_plugin',
                        'vars': {'pv_plugin_backend': 'loop', 'pv_plugin_driver': DRIVER,
                                 'pv_plugin_install_dependencies': False}}]}]
    t0 = time.monotonic()
    res = runner.run(play, inventory=inventory).assert_ok()
    took = time.monotonic() - t0
    assert res.result('Choose how the daemon is run', SD_HOST)['ansible_facts']['pv_plugin_manager'] == 'systemd'
    unit = 'pv-plugin-%s.service' % DRIVER
    assert lab.exec(SD_HOST, ['systemctl', 'is-active', unit]).stdout.strip() == 'active'
    assert lab.exec(SD_HOST, ['systemctl', 'is-enabled', unit]).stdout.strip() == 'enabled'
    # systemd runs it, not pv-plugin-ctl (no pid file)
    assert lab.exec(SD_HOST, ['test', '-e', '/run/persistent-volumes/%s.pid' % DRIVER], check=False).returncode != 0
    assert DRIVER in lab.exec(SD_HOST, ['docker', 'info', '-f', '{{json .Plugins.Volume}}']).stdout
    # re-run: nothing to do
    res = runner.run(play, inventory=inventory).assert_ok()
    assert res.stats[SD_HOST].get('changed', 0) == 0, res.summary()

    # the node joins the Swarm; a service pinned to it gets the loop volume, twice
    hosts = [h['name'] for h in lab.hosts]
    swarm.init(hosts=hosts)
    assert swarm.nodes()[SD_HOST]['status'] == 'Ready'
    service, volume = uid + '-sd', uid + '-sd'
    try:
        for text in ('first', 'second'):
            swarm.create_service(service, 'echo %s >> /data/log && sync && exec sleep 100000' % text,
                                 mounts=['type=volume,source=%s,target=/data,volume-driver=%s' % (volume, DRIVER)],
                                 args=['--init', '--constraint', 'node.hostname==' + SD_HOST])
            assert swarm.wait_running(service) == SD_HOST
            container = swarm.container_of(service, SD_HOST)
            log = lab.exec(SD_HOST, ['docker', 'exec', container, 'cat', '/data/log']).stdout.split()
            assert log == {'first': ['first'], 'second': ['first', 'second']}[text], log
            swarm.remove_service(service)
            deadline = time.monotonic() + 60
            argv = ['docker', 'ps', '-aq', '--filter', 'label=com.docker.swarm.service.name=' + service]
            while time.monotonic() < deadline and lab.exec(SD_HOST, argv).stdout.strip():
                time.sleep(0.2)
    finally:
        swarm.remove_service(service)
        time.sleep(1)
        lab.exec(SD_HOST, ['docker', 'volume', 'rm', volume], check=False)
    assert volume not in lab.exec(SD_HOST, ['docker', 'volume', 'ls', '-q']).stdout.split()
    # the daemon restarts through systemd (the handler's path)
    lab.exec(SD_HOST, ['systemctl', 'restart', unit])
    assert lab.exec(SD_HOST, ['systemctl', 'is-active', unit]).stdout.strip() == 'active'
    print('systemd variant host up in %.1f s; volume_plugin role in systemd mode: %.1f s' % (started, took))
