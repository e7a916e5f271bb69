# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The volume follows a rescheduled Swarm task, vsphere backend (issue 11): every lab host is a VM
of the vSphere simulator (tests/harness/vcsim/lab_vsphere.py: a disk attached to VM X shows up in
host X only, under its SCSI by-path link; the disk's extent file in the datastore plays the SAN),
and ``pv-vsphere`` runs on every node (conftest.py: the role with the vCenter credentials in the
root-only daemon config; pyvmomi from the offline wheel house; the vCenter endpoint relayed into
the hosts). The same scenarios as cinder (swarm_scenario.py):

* the plugin is listed by every node's dockerd, its volumes are scope ``global``;
* drain x5: the VMs holding the VMDK, polled every 0.1 s, never two; every byte read back;
* node death x5: the dead node's VM left poweredOn -> the new node's Mount waits, then refuses with
  a clear Err naming the VMDK, the VM, its power state and the policy; the VM powered off (the
  hypervisor's report) -> takeover (force-detach, filesystem check, attach, mount), every fsync'ed
  byte there; the dead node comes back without touching the disk;
* policy ``stop``: the plugin powers the dead node's VM off through the API itself.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import time

import pytest

import swarm_scenario as scenario  # pylint: disable=import-error

pytestmark = [pytest.mark.vsphere, pytest.mark.timeout(1800)]

REPETITIONS = 5
MOVES = 5


def test_vsphere_plugin_on_every_node(swarm_plugins):
    sp = swarm_plugins
    for host in sp.hosts:
        assert 'pv-vsphere' in json.loads(sp.drivers_after_role[host]), (host, sp.drivers_after_role[host])
        status = sp.lab.exec(host, ['/opt/persistent-volumes/pv-vsphere/bin/pv-plugin-ctl', 'status'])
        assert status.stdout.startswith('running'), (host, status.stdout)
        # the credentials are in the root-only daemon config, nowhere else on the host
        mode = sp.lab.exec(host, ['stat', '-c', '%a %U', '/etc/persistent-volumes/plugin-pv-vsphere.json'],
                           check=False).stdout.split()
        assert mode in (['600', 'root'], ['400', 'root']), (host, mode)


def test_drain_moves_the_vsphere_disk_with_the_task(swarm_plugins):
    sp = swarm_plugins
    moves = scenario.drain_moves(sp, scenario.VSphereSide(sp), MOVES)
    assert sp.lv.errors == [], sp.lv.errors
    print('drain moves, vsphere (node update --availability drain -> new task Running with the disk mounted): %s'
          % ', '.join('%s->%s %.1f s' % m for m in moves))


def test_node_death_takeover_with_fencing_vsphere(swarm_plugins):
    sp = swarm_plugins
    t0 = time.monotonic()
    reps = scenario.node_deaths(sp, scenario.VSphereSide(sp), REPETITIONS)
    assert sp.lv.errors == [], sp.lv.errors
    print('vsphere node death x%d in %.1f s (service create to last revive)' % (REPETITIONS, time.monotonic() - t0))
    scenario.print_deaths('vsphere', reps)


def test_node_death_stop_policy_vsphere(swarm_plugins):
    sp = swarm_plugins
    took, revive = scenario.stop_policy(sp, scenario.VSphereSide(sp))
    print('policy stop, vsphere: node killed -> task running elsewhere with the disk in %.1f s (VM powered off '
          'by the plugin through the API); revive + rejoin %.1f s (%s)'
          % (took, revive, ', '.join('%s %.1f' % kv for kv in sp.revive_steps.items())))
