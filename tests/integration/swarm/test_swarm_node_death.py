# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Node death on a real Swarm (issue 11), cinder backend: the node running a task with a Cinder
volume dies, Swarm reschedules the task, and the plugin on the new node takes the volume over only
with fencing (swarm_scenario.node_deaths, 5 repetitions):

1. the task's container writes 4 MiB and fsyncs (``dd conv=fsync``), the md5 is kept;
2. the node dies: its lab host container is killed (dockerd, the task, the mount namespace go at
   once; nothing unmounted or detached); Nova still says ACTIVE;
3. Swarm marks the node Down (dispatcher heartbeat 2 s) and starts a new task on the other worker;
   its plugin gets Mount for a volume attached to the dead node's ACTIVE server and waits for a
   release (``pv_plugin_handover_wait``). Repetitions 1, 3, 5: none comes; a clear Err (volume,
   server, its state, the policy, how long it waited), nothing changed; then the hypervisor reports
   the guest dead (server SHUTOFF) and Swarm's next Mount takes over. Repetitions 2 and 4: the
   SHUTOFF comes while the Mount waits, and the same Mount takes over (no refusal);
4. a takeover is force-detach, filesystem check, attach, mount; the task reads every fsync'ed
   byte of every repetition so far;
5. the dead node comes back (a reboot) and rejoins the Swarm; its plugin leaves the volume alone.

All along, Nova's attachments of the volume are polled (every 0.1 s): never two servers.

``test_node_death_stop_policy``: the role re-applied to the workers with ``pv_plugin_fencing:
stop``; a node dies and nobody marks its server SHUTOFF: the new node's plugin stops it through
Nova, takes the volume over, and the task moves.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import time

import pytest

import swarm_scenario as scenario  # pylint: disable=import-error

REPETITIONS = 5

pytestmark = [pytest.mark.cinder, pytest.mark.timeout(1800)]


def test_node_death_takeover_with_fencing(swarm_plugins):
    sp = swarm_plugins
    t0 = time.monotonic()
    reps = scenario.node_deaths(sp, scenario.CinderSide(sp), REPETITIONS)
    assert sp.hv.errors == [], sp.hv.errors
    print('cinder node death x%d in %.1f s (service create to last revive)' % (REPETITIONS, time.monotonic() - t0))
    scenario.print_deaths('cinder', reps)


def test_node_death_stop_policy(swarm_plugins):
    """Policy ``stop``: nobody marks the dead node's server SHUTOFF; the plugin stops it through Nova."""
    sp = swarm_plugins
    took, revive = scenario.stop_policy(sp, scenario.CinderSide(sp))
    print('policy stop, cinder: node killed -> task running elsewhere with the volume in %.1f s (server '
          'stopped by the plugin through Nova); revive + rejoin %.1f s (%s)'
          % (took, revive, ', '.join('%s %.1f' % kv for kv in sp.revive_steps.items())))
