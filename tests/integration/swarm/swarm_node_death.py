# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Helpers of the Swarm node-death test (test_swarm_node_death.py) and of bench/swarm: a lab
host dies and comes back, Cinder attachments are watched.

* :class:`AttachmentWatch` polls one Cinder volume's attachments (own connection, every
  0.1 s): the largest number of servers it was attached to at once, the sets seen.
* :func:`kill_node` kills a lab host's container as a crashed guest dies (dockerd, its
  containers and mount namespace go at once; nothing is unmounted or detached), WITHOUT telling
  Nova: the server stays ACTIVE until :func:`mark_shutoff` (what a hypervisor reports a moment
  later: Nova ``stop`` and wait for SHUTOFF, as ``LabHypervisor.guest_died``).
* :func:`revive_node` brings the dead host back as a reboot: Nova ``start``, the same container
  started again (``LabHypervisor.guest_rebooted``: rootfs, the installed plugin and its config
  kept; /run and dockerd's /var/lib/docker are tmpfs, so the Swarm state is gone), then what
  the host's boot does after dockerd: its relay of the cloud endpoints (the lab's network),
  the plugin daemons started (``pv-plugin-ctl start``: the enabled unit on a systemd host)
  and made known to dockerd (the role's activation request); then the Swarm: the dead node's
  entry removed and the host joined again (a worker).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import threading
import time

import cinder_fixtures as _cinder  # pylint: disable=import-error


class AttachmentWatch(object):
    """Polls one Cinder volume's attachments (own connection, every 0.1 s)."""

    def __init__(self, volume_id, interval=0.1):
        self.volume_id = volume_id
        self.interval = interval
        self.max_servers = 0
        self.seen = []
        self.polls = 0
        self.errors = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name='attachment-watch', daemon=True)

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
                try:
                    vol = c.block_storage.get_volume(self.volume_id)
                except Exception as exc:  # pylint: disable=broad-except
                    self.errors.append(repr(exc))
                    self._stop.wait(self.interval)
                    continue
                servers = tuple(sorted(a['server_id'] for a in vol.attachments or []))
                self.max_servers = max(self.max_servers, len(servers))
                if not self.seen or self.seen[-1] != servers:
                    self.seen.append(servers)
                self.polls += 1
                self._stop.wait(self.interval)
        finally:
            c.close()


def kill_node(hv, host):
    """The guest of ``host`` dies: its container is killed; Nova still says ACTIVE."""
    hv.kill_guest(host)


def mark_shutoff(conn, server_id, timeout=120):
    """What the hypervisor reports for a dead guest: the server SHUTOFF (Nova stop)."""
    server = conn.compute.get_server(server_id)
    if server.status != 'SHUTOFF':
        conn.compute.stop_server(server)
        conn.compute.wait_for_server(server, status='SHUTOFF', wait=timeout, interval=0.3)


def wait_for(what, predicate, timeout, interval=0.2):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError('%s: not after %d s' % (what, timeout))
        time.sleep(interval)


def boot_services(lab, host, drivers):
    """After the lab host's boot (lab-init: dockerd up): the relay of the cloud endpoints, the
    plugin daemons, and dockerd told about them (the volume_plugin role's activation request)."""
    lab.forward_into(host)
    ctl = '/opt/persistent-volumes/%s/bin/pv-plugin-ctl'
    # only the plugins the role installed on this host (pv-loop lives on the loop host only)
    drivers = [d for d in drivers if lab.exec(host, ['test', '-x', ctl % d], check=False).returncode == 0]
    assert drivers, 'no plugin daemon installed on %s' % host
    for driver in drivers:
        lab.exec(host, [ctl % driver, 'start'])
        lab.exec(host, ['docker', 'volume', 'ls', '-q', '--filter', 'driver=' + driver])
    listed = json.loads(lab.exec(host, ['docker', 'info', '-f', '{{json .Plugins.Volume}}']).stdout)
    missing = [d for d in drivers if d not in listed]
    assert not missing, 'dockerd of %s does not list %s after the boot: %s' % (host, missing, listed)


def rejoin(swarm, host, timeout=60):
    """The rebooted host lost its Swarm state (tmpfs): drop its dead node entry, join it again."""
    ids = [line.split()[0] for line in swarm.docker('node', 'ls', '--format', '{{.ID}} {{.Hostname}} {{.Status}}')
           .splitlines() if line.split()[1:] == [host, 'Down']]
    for node_id in ids:
        swarm.docker('node', 'rm', '--force', node_id)
    swarm.init()
    wait_for('node %s Ready in the Swarm' % host,
             lambda: swarm.nodes().get(host, {}).get('status') == 'Ready', timeout)


def revive_node(hv, conn, host, swarm, drivers):
    """``host`` comes back (a reboot) and rejoins the Swarm; returns the seconds it took."""
    t0 = time.monotonic()
    hv.guest_rebooted(host, conn)
    boot_services(hv.lab, host, drivers)
    rejoin(swarm, host)
    return time.monotonic() - t0
