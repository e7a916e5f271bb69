# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Swarm scenarios of issue 11, written once for both cloud backends (used by
test_swarm_cinder.py, test_swarm_node_death.py, test_swarm_vsphere.py and bench/swarm).

A *side* is one backend as the Swarm tests see it (:class:`CinderSide`, :class:`VSphereSide`): its
plugin driver, how the storage's holder is named (Nova server id / VM name), a reader for
attachment_watch.py, and the hypervisor's two words about a dead guest (:meth:`Side.fence`: the
server SHUTOFF / the VM poweredOff).

* :func:`drain_moves`: ``docker node update --availability drain`` moves the task N times; each new
  task reads every byte the earlier ones wrote; the storage never has two holders.
* :func:`node_deaths`: the node running the task is killed N times (the hypervisor still says the
  guest runs); odd repetitions: the new node's Mount waits ``handover_wait``, is refused with a
  clear Err, then the fence comes and Swarm's retry takes over; even repetitions: the fence comes
  while the Mount waits and the SAME Mount takes over (no refusal). Every fsync'ed byte is read
  back; the dead node comes back (a reboot) and rejoins without touching the storage.
* :func:`stop_policy`: policy ``stop``: the plugin fences through the API itself.

:class:`Guests` kills and reboots lab hosts for both emulations at once (every lab host is a Nova
server of the test cloud AND a VM of the vSphere simulator).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import time

from attachment_watch import AttachmentWatch, cinder_reader, vsphere_reader  # pylint: disable=import-error
import pv_plugin_helpers  # pylint: disable=import-error

HEARTBEAT = '2s'
CTL = '/opt/persistent-volumes/%s/bin/pv-plugin-ctl'


def wait_for(what, predicate, timeout, interval=0.2):
    return pv_plugin_helpers.wait_for(predicate, timeout, interval, what)


BOOT_HOOK = """#!/bin/sh
# the volume plugins the role installed (pidfile mode: no init system here) started before dockerd,
# as their systemd units' Before=docker.service does: dockerd looks up the plugins of the volumes it
# knows when it starts, and waits ~30 s for each one that is not there
for c in %s; do [ -x "$c" ] && "$c" start & done
wait
""" % (CTL % '*')


def install_boot_hook(lab, host):
    """What the admin of a pidfile-mode host does: the plugin daemons start at boot, before dockerd
    (tests/harness/lab/host/lab-init runs /etc/pvlab/boot.d/* then)."""
    lab.exec(host, ['sh', '-c', 'mkdir -p /etc/pvlab/boot.d && printf "%s" "$1" > /etc/pvlab/boot.d/50-pv-plugins && '
                                'chmod 755 /etc/pvlab/boot.d/50-pv-plugins', 'sh', BOOT_HOOK])


class Guests(object):
    """Death and reboot of a lab host, seen by both hypervisor emulations."""

    def __init__(self, lab, hv, lv, conn):
        """``lv`` None: the hosts are Nova servers only (bench/swarm)."""
        self.lab, self.hv, self.lv, self.conn = lab, hv, lv, conn
        self.steps = {}

    def down(self):
        return sorted(set(self.hv.down) | set(self.lv.down if self.lv else ()))

    def kill(self, host):
        """The guest dies: its container is killed; Nova says ACTIVE, vSphere poweredOn."""
        self.hv.mark_down(host)
        if self.lv is None:
            self.hv.kill_guest(host)
        else:
            self.lv.kill_guest(host)

    def reboot(self, host):
        """The host boots again (server ACTIVE, VM poweredOn, the same container started), then
        what its boot does after dockerd: the relay of the machine's endpoints, the plugin
        daemons the role installed (``pv-plugin-ctl start``, in parallel as a boot starts its
        services) made known to dockerd. ``steps``: the seconds of each part, for the report."""
        steps, t0 = {}, time.monotonic()
        if self.lv is None:
            self.hv.guest_rebooted(host, self.conn)
        else:
            server = self.conn.compute.get_server(self.hv.servers[host])
            if server.status == 'SHUTOFF':
                self.conn.compute.start_server(server)
                self.conn.compute.wait_for_server(server, status='ACTIVE', wait=120, interval=0.2)
            steps['nova start'] = time.monotonic() - t0
            self.lv.guest_rebooted(host)            # VM on, container started, lab-init READY
            self.hv.down.discard(host)
        steps['boot'] = time.monotonic() - t0 - sum(steps.values())
        self.lab.forward_into(host)
        # every installed plugin running (the boot hook started them before dockerd; started here
        # when a host has none), then dockerd asked for each driver's volumes (activation)
        out = self.lab.exec(host, ['sh', '-c', 'for c in %s; do [ -x "$c" ] && "$c" start & done; wait; '
                                   'ls /opt/persistent-volumes' % (CTL % '*')]).stdout.split()
        drivers = [d for d in out if self.lab.exec(host, ['test', '-x', CTL % d], check=False).returncode == 0]
        assert drivers, 'no plugin daemon installed on %s' % host
        for driver in drivers:
            self.lab.exec(host, ['docker', 'volume', 'ls', '-q', '--filter', 'driver=' + driver])
        listed = json.loads(self.lab.exec(host, ['docker', 'info', '-f', '{{json .Plugins.Volume}}']).stdout)
        missing = [d for d in drivers if d not in listed]
        assert not missing, 'dockerd of %s does not list %s after the boot: %s' % (host, missing, listed)
        steps['plugins'] = time.monotonic() - t0 - sum(steps.values())
        self.steps = steps


def rejoin(swarm, host, timeout=60):
    """The rebooted host lost its Swarm state (tmpfs): drop its dead node entry, join it again."""
    ids = [line.split()[0] for line in swarm.docker('node', 'ls', '--format', '{{.ID}} {{.Hostname}} {{.Status}}')
           .splitlines() if line.split()[1:] == [host, 'Down']]
    for node_id in ids:
        swarm.docker('node', 'rm', '--force', node_id)
    swarm.init()
    wait_for('node %s Ready in the Swarm' % host,
             lambda: swarm.nodes().get(host, {}).get('status') == 'Ready', timeout)


def revive(sp, host):
    """``host`` comes back (a reboot) and rejoins the Swarm; returns the seconds it took."""
    t0 = time.monotonic()
    sp.guests.reboot(host)
    t1 = time.monotonic()
    rejoin(sp.swarm, host)
    sp.revive_steps = dict(sp.guests.steps, rejoin=time.monotonic() - t1)
    return time.monotonic() - t0


class Side(object):
    """One cloud backend on the Swarm."""
    driver = None
    label = None                # part of the service and volume names (Docker volume names are global)
    policy_word = None          # how the plugin's refusal names the guest's running state

    def __init__(self, sp):
        self.sp = sp

    def holder(self, host):
        raise NotImplementedError

    def reader(self, keys):
        raise NotImplementedError

    def fence(self, host):
        raise NotImplementedError

    def takeover_from(self, host):
        """How the plugin's log names the server/VM it took a volume over from."""
        raise NotImplementedError


class CinderSide(Side):
    driver = 'pv-cinder'
    label = 'cinder'
    policy_word = 'which is ACTIVE, not SHUTOFF'

    def holder(self, host):
        return self.sp.servers[host].id

    def takeover_from(self, host):
        return self.sp.servers[host].id

    def reader(self, keys):
        return cinder_reader(keys)

    def fence(self, host):
        """What the hypervisor reports for a dead guest: the server SHUTOFF (Nova stop)."""
        conn = self.sp.conn
        server = conn.compute.get_server(self.sp.servers[host].id)
        if server.status != 'SHUTOFF':
            conn.compute.stop_server(server)
            conn.compute.wait_for_server(server, status='SHUTOFF', wait=120, interval=0.3)

    def fenced(self, host):
        return self.sp.conn.compute.get_server(self.sp.servers[host].id).status == 'SHUTOFF'


class VSphereSide(Side):
    driver = 'pv-vsphere'
    label = 'vsphere'
    policy_word = 'which is poweredOn, not poweredOff'

    def holder(self, host):
        return self.sp.containers[host]          # the VM is named after the host's container

    def takeover_from(self, host):
        return self.sp.vms[host]._moId

    def reader(self, keys):
        return vsphere_reader(self.sp.vcsim, keys)

    def fence(self, host):
        """The hypervisor reports the guest dead: its VM poweredOff."""
        self.sp.lv.guest_died(host)

    def fenced(self, host):
        return self.sp.lv.power_state(host) == 'poweredOff'


class Service(object):
    """One replicated service with one plugin volume, and the bytes its tasks wrote."""

    def __init__(self, sp, side, tag):
        self.sp, self.side = sp, side
        self.service = self.volume = '%s-%s-%s' % (sp.uid, side.label, tag)
        self.written = {}           # block file -> md5 as the writing task saw it after fsync
        self.key = None             # Cinder volume id / VMDK path

    def start(self, workers_only=False):
        sp = self.sp
        manager = sp.swarm.manager
        sp.docker(manager, 'volume', 'create', '-d', self.side.driver, '--opt', 'size=1GiB', self.volume)
        sp.volumes.append((self.side.driver, self.volume, manager))
        assert sp.docker(manager, 'volume', 'inspect', '-f', '{{.Scope}}', self.volume).strip() == 'global'
        status = json.loads(sp.docker(manager, 'volume', 'inspect', '-f', '{{json .Status}}', self.volume))
        self.key = status['backend_id']
        args = ['--init', '--restart-delay', '0s'] + (['--constraint', 'node.role==worker'] if workers_only else [])
        sp.swarm.create_service(self.service, 'exec sleep 100000', args=args,
                                mounts=['type=volume,source=%s,target=/data,volume-driver=%s'
                                        % (self.volume, self.side.driver)])
        sp.services.append(self.service)
        return sp.swarm.wait_running(self.service)

    def write(self, node, i):
        container = self.sp.swarm.container_of(self.service, node)
        block = '/data/blk-%d' % i
        out = self.sp.lab.exec(node, ['docker', 'exec', container, 'sh', '-c',
                                      'dd if=/dev/urandom of=%s bs=1M count=4 conv=fsync 2>/dev/null && md5sum %s'
                                      % (block, block)]).stdout
        self.written[block] = out.split()[0]

    def read(self, node):
        container = self.sp.swarm.container_of(self.service, node)
        out = self.sp.lab.exec(node, ['docker', 'exec', container, 'sh', '-c', 'md5sum /data/blk-*']).stdout
        return dict((line.split()[1], line.split()[0]) for line in out.splitlines())

    def holders(self):
        with self.side.reader([self.key]) as read:
            return sorted(read()[self.key])

    def watch(self):
        return AttachmentWatch(self.side.reader([self.key]))

    def mounted_on(self, node):
        path = '/var/lib/persistent-volumes/plugin/%s/mounts/%s' % (self.side.driver, self.volume)
        return self.sp.lab.exec(node, ['findmnt', '-n', path], check=False).stdout.strip() != ''

    def remove(self):
        """The service gone and its storage released (the next test's kill must not move it)."""
        self.sp.swarm.remove_service(self.service)
        self.sp.services.remove(self.service)
        wait_for('%s released' % self.volume, lambda: self.holders() == [], 60)


def drain_moves(sp, side, moves=5):
    """``moves`` drains back and forth; returns [(from, to, seconds)]."""
    sp.use_policy(side.driver, 'shutoff')
    svc = Service(sp, side, 'drain')
    node = svc.start()
    done = []
    for i in range(moves + 1):
        assert svc.holders() == [side.holder(node)], (i, node, svc.holders())
        if svc.written:                     # every byte the earlier tasks wrote, through this node's mount
            seen = svc.read(node)
            assert seen == svc.written, (i, node, seen, svc.written)
        if i == moves:
            break
        svc.write(node, i)
        marks = dict((h, len(sp.plugin_log(h, side.driver))) for h in sp.hosts)
        t0 = time.monotonic()
        with svc.watch() as watch:
            sp.swarm.availability(node, 'drain')
            new = sp.swarm.wait_running(svc.service, not_on=node)
            took = time.monotonic() - t0
            wait_for('released on %s' % node, lambda: not svc.mounted_on(node), 30)
            time.sleep(0.3)
        sp.swarm.availability(node, 'active')
        seq = watch.only()
        assert watch.polls > 5 and not watch.errors and watch.max_attached == 1, (seq, watch.errors[-3:])
        assert seq[-1] == (side.holder(new),) and () in seq, seq      # detached in between, never two
        old_log = sp.plugin_log(node, side.driver)[marks[node]:]
        new_log = sp.plugin_log(new, side.driver)[marks[new]:]
        assert 'Unmount name=%s' % svc.volume in old_log and 'detach' in old_log, old_log
        assert 'Mount name=%s' % svc.volume in new_log and 'mounted' in new_log, new_log
        assert 'taking over' not in new_log, new_log                  # a released volume is no takeover
        done.append((node, new, took))
        node = new
    svc.remove()
    return done


def _refusals(sp, side, host, volume, since):
    log = sp.plugin_log(host, side.driver)[since:]
    return [line for line in log.splitlines() if 'Mount of %s refused' % volume in line]


def _other_worker(sp, node):
    workers = [h for h, n in sp.swarm.nodes().items() if h != sp.swarm.manager and n['status'] == 'Ready']
    (other,) = [h for h in workers if h != node]
    return other


def _placed_on(sp, service, node):
    return any(t['node'] == node and t['desired'] == 'Running' for t in sp.swarm.tasks(service))


def node_deaths(sp, side, reps=5):
    """The worker running the task dies ``reps`` times; returns one dict per repetition.

    The service is pinned to the workers: a Swarm whose only manager dies has no control plane
    left to reschedule anything."""
    sp.use_policy(side.driver, 'shutoff')
    svc = Service(sp, side, 'death')
    node = svc.start(workers_only=True)
    assert node != sp.swarm.manager
    out = []
    for i in range(reps):
        refuse = i % 2 == 0                 # repetitions 1, 3, 5: the refusal path
        assert svc.holders() == [side.holder(node)], (i, node, svc.holders())
        svc.write(node, i)
        survivor = _other_worker(sp, node)
        mark = len(sp.plugin_log(survivor, side.driver))
        task_ids = set(t['id'] for t in sp.swarm.tasks(svc.service))
        with svc.watch() as watch:
            t_kill = time.monotonic()
            sp.guests.kill(node)
            if refuse:
                # Swarm reschedules; the survivor's plugin waits for a release, then refuses
                lines = wait_for('Mount refused on %s' % survivor,
                                 lambda: _refusals(sp, side, survivor, svc.volume, mark), 120)
                assert not side.fenced(node)
                assert all(s == (side.holder(node),) for s in watch.only()), watch.only()    # nothing changed
                assert side.takeover_from(node) in lines[0] and side.policy_word in lines[0], lines[0]
                assert 'after waiting' in lines[0], lines[0]
            else:
                # the fence arrives while the survivor's Mount waits for a release
                wait_for('task placed on %s' % survivor, lambda: _placed_on(sp, svc.service, survivor), 60, 0.1)
                time.sleep(1.0)
            t_answer = time.monotonic()
            side.fence(node)
            t_fenced = time.monotonic()
            new = sp.swarm.wait_running(svc.service, not_on=node, timeout=120)
            t_running = time.monotonic()
            assert new == survivor
            new_tasks = [t for t in sp.swarm.tasks(svc.service) if t['id'] not in task_ids]
            errors = [t['error'] for t in new_tasks if 'refused' in t['error']]
            if refuse:      # Swarm shows the whole Err on the rejected task: volume, holder, state, policy
                assert errors and 'policy shutoff (pv_plugin_fencing)' in errors[0], new_tasks
            else:
                assert not errors and not _refusals(sp, side, survivor, svc.volume, mark), new_tasks
            seen = svc.read(new)
            assert seen == svc.written, (i, new, seen, svc.written)
            took_back = revive(sp, node)        # the dead node comes back; its plugin leaves the storage alone
            time.sleep(0.5)
        seq = watch.only()
        assert watch.polls > 10 and not watch.errors, (watch.polls, watch.errors[-3:])
        assert watch.max_attached == 1, seq                                   # never two holders
        assert seq[0] == (side.holder(node),) and seq[-1] == (side.holder(new),), seq
        log = sp.plugin_log(new, side.driver)[mark:]
        assert 'taking over %s from %s (fencing policy shutoff)' % (svc.key, side.takeover_from(node)) in log, log
        assert 'taken over from %s (fsck:' % side.takeover_from(node) in log, log
        assert not svc.mounted_on(node)
        assert svc.holders() == [side.holder(new)]
        out.append({'from': node, 'to': new, 'path': 'refused, then fenced' if refuse else 'fenced while waiting',
                    'answer': t_answer - t_kill, 'fenced': t_fenced - t_kill, 'running': t_running - t_kill,
                    'after_fence': t_running - t_fenced, 'revive': took_back, 'steps': sp.revive_steps,
                    'error': errors[0] if errors else ''})
        node = new
    assert svc.read(node) == svc.written            # once more, after the last revive
    svc.remove()
    return out


def print_deaths(label, reps):
    for r in reps:
        print('  %s %s died -> %s (%s): answer/fence at %.1f s, task running %.1f s after the kill '
              '(%.1f s after the fence); revive + rejoin %.1f s (%s)'
              % (label, r['from'], r['to'], r['path'], r['fenced'], r['running'], r['after_fence'], r['revive'],
                 ', '.join('%s %.1f' % kv for kv in r['steps'].items())))
    errors = [r['error'] for r in reps if r['error']]
    if errors:
        print('  the rejected task\'s error: %s' % errors[0])


def stop_policy(sp, side):
    """The role re-applied to the workers with ``pv_plugin_fencing: stop``; a worker dies and
    nobody fences it: the new node's plugin fences through the API, takes over, the task moves.
    (The next scenario that needs ``shutoff`` sets it back: ``sp.use_policy``.)"""
    sp.use_policy(side.driver, 'stop')
    svc = Service(sp, side, 'stop')
    node = svc.start(workers_only=True)
    svc.write(node, 0)
    survivor = _other_worker(sp, node)
    mark = len(sp.plugin_log(survivor, side.driver))
    with svc.watch() as watch:
        t_kill = time.monotonic()
        sp.guests.kill(node)
        new = sp.swarm.wait_running(svc.service, not_on=node, timeout=120)
        took = time.monotonic() - t_kill
        assert new == survivor
        assert svc.read(new) == svc.written
        assert side.fenced(node)                    # fenced by the plugin through the API
        took_back = revive(sp, node)
        time.sleep(0.5)
    seq = watch.only()
    assert watch.max_attached == 1 and seq[-1] == (side.holder(new),), seq
    log = sp.plugin_log(new, side.driver)[mark:]
    assert 'taking over %s from %s (fencing policy stop)' % (svc.key, side.takeover_from(node)) in log, log
    assert not _refusals(sp, side, survivor, svc.volume, mark), log
    svc.remove()
    return took, took_back
