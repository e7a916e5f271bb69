# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The volume follows a rescheduled Swarm task: the collection's plugin on every node of a
Swarm of lab hosts (each a Nova server of the test cloud, see conftest.py).

* the role (one playbook over SSH) leaves its plugins listed by every node's dockerd, so the
  first task of a new service is placed at once (its delay is measured and printed);
* scope: ``global`` for cinder, ``local`` for loop (Docker's ``volume inspect``);
* drain with the cinder backend, 5 moves (swarm_scenario.drain_moves): the old node's plugin gets
  Unmount and unmounts + detaches, the new node's gets Mount and attaches + mounts; the new task
  reads back every byte every earlier task wrote and fsync'ed; Nova's attachments, polled all
  along, never name two servers.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import time

import pytest

import swarm_scenario as scenario  # pylint: disable=import-error

CINDER_DRIVER = 'pv-cinder'
VSPHERE_DRIVER = 'pv-vsphere'
LOOP_DRIVER = 'pv-loop'

pytestmark = [pytest.mark.cinder, pytest.mark.timeout(1200)]

MOVES = 5


def test_role_makes_every_node_list_its_plugins(swarm_plugins):
    sp = swarm_plugins
    res = sp.role_result
    assert all(s.get('failures', 0) == 0 and s.get('unreachable', 0) == 0 for s in res.stats.values()), res.summary()
    for host in sp.hosts:
        # right after the role, before the Swarm existed: dockerd lists the plugins (Swarm schedules on this)
        listed = json.loads(sp.drivers_after_role[host])
        drivers = [CINDER_DRIVER, VSPHERE_DRIVER] + ([LOOP_DRIVER] if host == sp.loop_host else [])
        assert set(drivers) <= set(listed) and (LOOP_DRIVER in listed) == (host == sp.loop_host), (host, listed)
        # the daemons run in pidfile mode (no systemd in the lab image)
        for driver in drivers:
            status = sp.lab.exec(host, ['/opt/persistent-volumes/%s/bin/pv-plugin-ctl' % driver, 'status'])
            assert status.stdout.startswith('running'), (host, driver, status.stdout)
    assert sorted(sp.swarm.nodes()) == sorted(sp.hosts)
    assert all(n['status'] == 'Ready' for n in sp.swarm.nodes().values())
    # loop volumes are host-local: Docker reports scope local
    name = sp.uid + '-scope'
    sp.docker(sp.loop_host, 'volume', 'create', '-d', LOOP_DRIVER, '--opt', 'size=16MiB', name)
    try:
        assert sp.docker(sp.loop_host, 'volume', 'inspect', '-f', '{{.Scope}}', name).strip() == 'local'
    finally:
        sp.docker(sp.loop_host, 'volume', 'rm', name)
    print('volume_plugin role (cinder and vsphere on %d hosts, loop on one): %.1f s; swarm init+join %.1f s'
          % (len(sp.hosts), sp.role_seconds, sp.swarm_seconds))


def test_first_task_of_a_new_service_is_placed(swarm_plugins):
    """A fresh Swarm, a new service with a plugin volume (loop: pinned to the node that has the
    plugin, as the README says): its first task runs without the 16-20 s wait for the node
    description (the role activated the plugin before the join). The delay is printed."""
    sp = swarm_plugins
    service, volume = sp.uid + '-first', sp.uid + '-first'
    t0 = time.monotonic()
    sp.swarm.create_service(service, 'echo hello > /data/hello && sync && exec sleep 100000',
                            mounts=['type=volume,source=%s,target=/data,volume-driver=%s' % (volume, LOOP_DRIVER)],
                            args=['--init', '--constraint', 'node.hostname==' + sp.loop_host])
    sp.services.append(service)
    node = sp.swarm.wait_running(service)
    placed = time.monotonic() - t0
    sp.volumes.append((LOOP_DRIVER, volume, node))
    assert node == sp.loop_host
    container = sp.swarm.container_of(service, node)
    assert sp.lab.exec(node, ['docker', 'exec', container, 'cat', '/data/hello']).stdout.strip() == 'hello'
    assert 'Mount name=%s' % volume in sp.plugin_log(node, LOOP_DRIVER)
    # the task was never rejected for want of the plugin on the node
    assert all('no suitable node' not in t['error'] for t in sp.swarm.tasks(service)), sp.swarm.tasks(service)
    print('first task of a new service placed and running in %.1f s (service create -> task Running)' % placed)
    sp.swarm.remove_service(service)


def test_drain_moves_the_cinder_volume_with_the_task(swarm_plugins):
    sp = swarm_plugins
    moves = scenario.drain_moves(sp, scenario.CinderSide(sp), MOVES)
    assert sp.hv.errors == [], sp.hv.errors
    print('drain moves, cinder (node update --availability drain -> new task Running with the volume mounted): %s'
          % ', '.join('%s->%s %.1f s' % m for m in moves))
