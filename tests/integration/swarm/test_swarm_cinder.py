# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The volume follows a rescheduled Swarm task: the collection's plugin on every node of a
Swarm of lab hosts (each a Nova server of the test cloud, see conftest.py).

* the role (one playbook over SSH) leaves both plugins listed by every node's dockerd, so the
  first task of a new service is placed at once (its delay is measured and printed);
* scope: ``global`` for cinder, ``local`` for loop (Docker's ``volume inspect``);
* drain with the cinder backend, 5 moves: the old node's plugin gets Unmount and unmounts +
  detaches, the new node's gets Mount and attaches + mounts; the new task reads back every
  byte every earlier task wrote and fsync'ed; Nova's attachments, polled all along, never
  name two servers.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import threading
import time

import pytest

import cinder_fixtures as _cinder  # pylint: disable=import-error
CINDER_DRIVER = 'pv-cinder'
LOOP_DRIVER = 'pv-loop'

pytestmark = [pytest.mark.timeout(900)]

MOVES = 5


class AttachmentWatch(object):
    """Polls one Cinder volume's attachments (own connection, every 0.1 s): the largest number of
    servers it was attached to at once and the sequence of attachment sets seen."""

    def __init__(self, volume_id):
        self.volume_id = volume_id
        self.max_servers = 0
        self.seen = []
        self.polls = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(30)

    def _run(self):
        c = _cinder.connect()
        try:
            while not self._stop.is_set():
                vol = c.block_storage.get_volume(self.volume_id)
                servers = tuple(sorted(a['server_id'] for a in vol.attachments or []))
                self.max_servers = max(self.max_servers, len(servers))
                if not self.seen or self.seen[-1] != servers:
                    self.seen.append(servers)
                self.polls += 1
                self._stop.wait(0.1)
        finally:
            c.close()


def test_role_makes_every_node_list_both_plugins(swarm_plugins):
    sp = swarm_plugins
    res = sp.role_result
    assert all(s.get('failures', 0) == 0 and s.get('unreachable', 0) == 0 for s in res.stats.values()), res.summary()
    for host in sp.hosts:
        # right after the role, before the Swarm existed: dockerd lists both (Swarm schedules on this)
        listed = json.loads(sp.drivers_after_role[host])
        assert CINDER_DRIVER in listed and LOOP_DRIVER in listed, (host, listed)
        # the daemons run in pidfile mode (no systemd in the lab image)
        for driver in (CINDER_DRIVER, LOOP_DRIVER):
            status = sp.lab.exec(host, ['/opt/persistent-volumes/%s/bin/pv-plugin-ctl' % driver, 'status'])
            assert status.stdout.startswith('running'), (host, driver, status.stdout)
    assert sorted(sp.swarm.nodes()) == sorted(sp.hosts)
    assert all(n['status'] == 'Ready' for n in sp.swarm.nodes().values())
    # loop volumes are host-local: Docker reports scope local
    name = sp.uid + '-scope'
    sp.docker(sp.hosts[1], 'volume', 'create', '-d', LOOP_DRIVER, '--opt', 'size=16MiB', name)
    try:
        assert sp.docker(sp.hosts[1], 'volume', 'inspect', '-f', '{{.Scope}}', name).strip() == 'local'
    finally:
        sp.docker(sp.hosts[1], 'volume', 'rm', name)
    print('volume_plugin role (cinder + loop) on %d hosts: %.1f s; swarm init+join %.1f s'
          % (len(sp.hosts), sp.role_seconds, sp.swarm_seconds))


def test_first_task_of_a_new_service_is_placed(swarm_plugins):
    """A fresh Swarm, a new service with a plugin volume: its first task runs without the 16-20 s
    wait for the node description (the plugins were activated by the role before the join)."""
    sp = swarm_plugins
    service, volume = sp.uid + '-first', sp.uid + '-first'
    t0 = time.monotonic()
    sp.swarm.create_service(service, 'echo hello > /data/hello && sync && exec sleep 100000',
                            mounts=['type=volume,source=%s,target=/data,volume-driver=%s' % (volume, LOOP_DRIVER)],
                            args=['--init'])
    sp.services.append(service)
    node = sp.swarm.wait_running(service)
    placed = time.monotonic() - t0
    sp.volumes.append((LOOP_DRIVER, volume, node))
    container = sp.swarm.container_of(service, node)
    assert sp.lab.exec(node, ['docker', 'exec', container, 'cat', '/data/hello']).stdout.strip() == 'hello'
    assert 'Mount name=%s' % volume in sp.plugin_log(node, LOOP_DRIVER)
    # the task was never rejected for want of the plugin on the node
    assert all('no suitable node' not in t['error'] for t in sp.swarm.tasks(service)), sp.swarm.tasks(service)
    print('first task of a new service placed and running in %.1f s (service create -> task Running)' % placed)
    sp.swarm.remove_service(service)


def test_drain_moves_the_cinder_volume_with_the_task(swarm_plugins):
    sp = swarm_plugins
    service, volume = sp.uid + '-svc', sp.uid + '-data'
    manager = sp.swarm.manager
    sp.docker(manager, 'volume', 'create', '-d', CINDER_DRIVER, '--opt', 'size=1GiB', volume)
    sp.volumes.append((CINDER_DRIVER, volume, manager))
    # a cloud volume can follow a task: Docker reports scope global
    assert sp.docker(manager, 'volume', 'inspect', '-f', '{{.Scope}}', volume).strip() == 'global'
    status = json.loads(sp.docker(manager, 'volume', 'inspect', '-f', '{{json .Status}}', volume))
    volume_id = status['backend_id']
    assert sp.conn.block_storage.get_volume(volume_id).status == 'available'

    t0 = time.monotonic()
    sp.swarm.create_service(service, 'exec sleep 100000', args=['--init', '--restart-delay', '0s'],
                            mounts=['type=volume,source=%s,target=/data,volume-driver=%s' % (volume, CINDER_DRIVER)])
    sp.services.append(service)
    node = sp.swarm.wait_running(service)
    first = time.monotonic() - t0
    written = {}            # block file -> md5 as the writing task saw it after fsync
    moves = []
    for i in range(MOVES + 1):
        vol = sp.conn.block_storage.get_volume(volume_id)
        assert [a['server_id'] for a in vol.attachments] == [sp.server_of(node)], (i, node, vol.attachments)
        container = sp.swarm.container_of(service, node)
        # every byte the earlier tasks wrote, read through this node's mount
        if written:
            out = sp.lab.exec(node, ['docker', 'exec', container, 'sh', '-c', 'md5sum /data/blk-*']).stdout
            seen = dict((line.split()[1], line.split()[0]) for line in out.splitlines())
            assert seen == written, (i, node, seen, written)
        if i == MOVES:
            break
        block = '/data/blk-%d' % i
        out = sp.lab.exec(node, ['docker', 'exec', container, 'sh', '-c',
                                 'dd if=/dev/urandom of=%s bs=1M count=4 2>/dev/null && sync && md5sum %s'
                                 % (block, block)]).stdout
        written[block] = out.split()[0]
        log_before = dict((h, len(sp.plugin_log(h, CINDER_DRIVER))) for h in sp.hosts)
        t0 = time.monotonic()
        with AttachmentWatch(volume_id) as watch:
            sp.swarm.availability(node, 'drain')
            new = sp.swarm.wait_running(service, not_on=node)
            took = time.monotonic() - t0
            time.sleep(0.3)
        sp.swarm.availability(node, 'active')
        assert watch.polls > 5 and watch.max_servers == 1, watch.seen
        assert watch.seen[-1] == (sp.server_of(new),), watch.seen
        assert () in watch.seen, watch.seen            # detached in between, never two at once
        old_log = sp.plugin_log(node, CINDER_DRIVER)[log_before[node]:]
        new_log = sp.plugin_log(new, CINDER_DRIVER)[log_before[new]:]
        assert 'Unmount name=%s' % volume in old_log and 'umount,detach' in old_log, old_log
        assert 'Mount name=%s' % volume in new_log and ' ok mounted' in new_log, new_log
        assert sp.lab.exec(node, ['findmnt', '-n', '/var/lib/persistent-volumes/plugin/%s/mounts/%s'
                                  % (CINDER_DRIVER, volume)], check=False).stdout.strip() == ''
        moves.append((node, new, took))
        node = new
    assert sp.hv.errors == [], sp.hv.errors
    print('first task with the cinder volume placed and running in %.1f s' % first)
    print('drain moves (node update --availability drain -> new task Running with the volume mounted): %s'
          % ', '.join('%s->%s %.1f s' % m for m in moves))
