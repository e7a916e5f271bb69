# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""playbooks/site.yml and playbooks/move.yml with backend cinder on the lab: each lab host is a
Nova server of the shared test cloud.

Rule: the cloud calls run on the controller (``pv_cloud_delegate_to: localhost``; the hosts have
neither openstacksdk nor a route to the cloud); the hypervisor emulation
(tests/harness/openstack/lab_hypervisor.py) shows a volume attached to server X inside lab host X
only, over one shared backing store. Every test removes its volumes (hosts and cloud) afterwards;
the servers are booted once per session and deleted at the end.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import threading
import time

import pytest

import pv_integration_helpers as helpers  # pylint: disable=import-error
from attachment_watch import AttachmentWatch, cinder_reader  # pylint: disable=import-error

pytestmark = [pytest.mark.cinder, pytest.mark.timeout(1200)]

import cinder_fixtures as _cinder  # pylint: disable=import-error
from cinder_fixtures import conn, openstack_cloud  # noqa: F401 pylint: disable=unused-import,import-error

destroy_volume = _cinder.destroy_volume
CLOUDS_YAML = _cinder.CLOUDS_YAML

SITE_YML = os.path.join(helpers.REPO_ROOT, 'playbooks', 'site.yml')
MOVE_YML = os.path.join(helpers.REPO_ROOT, 'playbooks', 'move.yml')
# lab_servers and lab_hypervisor: tests/integration/lab_fixtures.py (session, shared with swarm/)


class CloudFleet(object):
    """The fleet with backend cinder: per-host volume lists, site/move runs with forks 3."""

    def __init__(self, fleet, conn, servers, hv, uid, openstack_cloud):
        self.fleet = fleet
        self.conn = conn
        self.servers = servers
        self.hv = hv
        self.uid = uid
        self.hosts = fleet.names
        fleet.runner.env.update(openstack_cloud['env'])
        self.created = {}                   # host -> {name: backend}
        self.foreign = []                   # Cinder volumes the test made through the SDK

    def hostvars(self, volumes):
        """{host: [volume dicts]} -> hostvars: the host's own server and volumes."""
        return dict((h, {'pv_cinder': {'cloud': 'pvtest', 'server': self.servers[h].name},
                         'pv_volumes': volumes.get(h, [])}) for h in self.hosts)

    groupvars = {'pv_cloud_delegate_to': 'localhost'}

    def site(self, volumes, check=False, limit=None):
        for host, vols in volumes.items():
            for v in vols:
                if v.get('state', 'present') == 'present':
                    self.created.setdefault(host, {})[v['name']] = v.get('backend', 'loop')
        inv = self.fleet.inventory(self.groupvars, self.hostvars(volumes))
        return self.fleet.runner.run_playbook(SITE_YML, inventory=inv, check=check, limit=limit,
                                              args=['--forks', '3'])

    def move(self, names, src, dst, volumes, force=False, check=False, extra=None):
        inv = self.fleet.inventory(self.groupvars, self.hostvars(volumes))
        ev = {'pv_move_volumes': names, 'pv_move_from': src, 'pv_move_to': dst, 'pv_move_force': force}
        ev.update(extra or {})
        return self.fleet.runner.run_playbook(MOVE_YML, inventory=inv, check=check, extra_vars=ev,
                                              args=['--forks', '3'])

    def ours(self):
        """{pv_name: volume} of this test's Cinder volumes."""
        out = {}
        for vol in self.conn.block_storage.volumes(details=True):
            name = (vol.metadata or {}).get('pv_name', '')
            if name.startswith(self.uid):
                assert name not in out, 'duplicate Cinder volume for %s' % name
                out[name] = vol
        return out

    def cloud_snapshot(self):
        return dict((n, (v.id, v.status, v.size, sorted(a['server_id'] for a in v.attachments or [])))
                    for n, v in self.ours().items())

    def cleanup(self):
        errors = []
        if self.created:
            absent = dict((h, [{'name': n, 'backend': b, 'state': 'absent', 'force': True} for n, b in names.items()])
                          for h, names in self.created.items())
            self.created = {}
            res = self.site(absent)
            if res.rc != 0:
                errors.append('site.yml state=absent: %s' % res.summary())
        for vol in self.ours().values():
            errors.append('left in Cinder after state=absent: %s' % vol.id)
            destroy_volume(self.conn, vol)
        for vid in self.foreign:
            destroy_volume(self.conn, vid)
        return errors

    def foreign_volume(self, name, host):
        """A Cinder volume NOT made by this collection (no pv_ marks), attached to ``host``'s server
        and used there through backend device (as a user could): what a move must refuse."""
        vol = self.conn.block_storage.create_volume(name=name, size=1)
        self.foreign.append(vol.id)
        self.conn.block_storage.wait_for_status(vol, 'available', interval=0.5, wait=120)
        self.conn.compute.create_volume_attachment(self.servers[host].id, volume_id=vol.id)
        self.conn.block_storage.wait_for_status(vol, 'in-use', interval=0.5, wait=120)
        self.hv.wait_published(vol.id, host)
        self.created.setdefault(host, {})[name] = 'device'
        task = {'persistent_volumes.docker.volume': {
            'name': name, 'backend': 'device', 'size': '1GiB',
            'backend_options': {'id': vol.id, 'locators': ['/dev/disk/by-id/virtio-' + vol.id[:20]]}}}
        play = {'hosts': host, 'gather_facts': False, 'become': True, 'tasks': [task]}
        self.fleet.runner.run([play], inventory=self.fleet.inventory()).assert_changed()
        return vol.id


@pytest.fixture
def cloud_fleet(fleet, conn, lab_servers, lab_hypervisor, uid, openstack_cloud):
    cf = CloudFleet(fleet, conn, lab_servers, lab_hypervisor, uid, openstack_cloud)
    yield cf
    errors = cf.cleanup()
    if errors:
        pytest.fail('clean-up: ' + '; '.join(errors), pytrace=False)


def per_host(res, key):
    return dict((host, stats.get(key, 0)) for host, stats in res.stats.items() if host != 'localhost')


def write(fleet, host, volume, text):
    fleet.docker(host, ['run', '--rm', '--network', 'none', '-v', volume + ':/data', 'lab/busybox:latest',
                        'sh', '-c', 'echo %s > /data/who && sync' % text])


def read_back(fleet, host, volume):
    return fleet.docker(host, ['run', '--rm', '--network', 'none', '-v', volume + ':/data',
                               'lab/busybox:latest', 'cat', '/data/who']).strip()


def by_id_links(fleet, host):
    return sorted(fleet.sh(host, 'ls /dev/disk/by-id 2>/dev/null || true').split())


def test_site_yml_cinder_fleet(cloud_fleet, uid):
    cf, fleet = cloud_fleet, cloud_fleet.fleet
    hosts = cf.hosts
    assert len(hosts) == 3
    vols = dict((h, [{'name': '%s-%s' % (uid, h), 'backend': 'cinder', 'size': '1GiB'}]) for h in hosts)
    vols[hosts[0]].append({'name': '%s-%s-x' % (uid, hosts[0]), 'backend': 'cinder', 'size': '1GiB',
                           'fstype': 'xfs'})
    names = dict((h, [v['name'] for v in vols[h]]) for h in hosts)
    # the hosts cannot make cloud calls at all: no SDK, and the cloud's endpoints are the machine's 127.0.0.1
    for host in hosts:
        assert fleet.lab.exec(host, ['python3', '-c', 'import openstack'], check=False).returncode != 0
    before = dict((h, fleet.snapshot(h)) for h in hosts)

    # --check on a fresh fleet: nothing in the cloud, nothing on the hosts
    t0 = time.monotonic()
    res = cf.site(vols, check=True).assert_ok()
    t_check = time.monotonic() - t0
    assert cf.ours() == {}, 'check mode created Cinder volumes'
    for host in hosts:
        assert fleet.snapshot(host) == before[host], host

    t0 = time.monotonic()
    res = cf.site(vols).assert_ok()
    t_first = time.monotonic() - t0
    assert all(per_host(res, 'changed')[h] >= 1 for h in hosts), res.summary()
    # the cloud calls ran on the controller (delegated), the host chain on each host
    for task in ('Create or grow the Cinder volumes', 'Attach them to this host\'s Nova server'):
        for host in hosts:
            assert res.result(task, host).get('_ansible_delegated_vars', {}).get('ansible_host') == 'localhost', task
    ours = cf.ours()
    assert sorted(ours) == sorted(n for h in hosts for n in names[h])
    for host in hosts:
        for name in names[host]:
            vol = ours[name]
            assert vol.status == 'in-use'
            assert [a['server_id'] for a in vol.attachments] == [cf.servers[host].id], (name, vol.attachments)
            # published inside its own host only
            link = 'virtio-' + vol.id[:20]
            assert link in by_id_links(fleet, host)
            assert all(link not in by_id_links(fleet, other) for other in hosts if other != host)
            mp = '/var/lib/persistent-volumes/mounts/' + name
            assert fleet.sh(host, 'findmnt -n -o TARGET %s' % mp).strip() == mp
            assert mp in fleet.sh(host, 'cat /etc/fstab')
        assert set(names[host]) <= set(fleet.docker(host, ['volume', 'ls', '-q']).split())
        record = res.result('Manage the persistent volumes in one call', host)['volumes']
        assert sorted(v['name'] for v in record) == sorted(names[host])

    for host in hosts:
        for name in names[host]:
            write(fleet, host, name, '%s-%s' % (host, name))
    for host in hosts:
        for name in names[host]:
            assert read_back(fleet, host, name) == '%s-%s' % (host, name)

    t0 = time.monotonic()
    res = cf.site(vols).assert_ok()
    t_rerun = time.monotonic() - t0
    assert per_host(res, 'changed') == dict((h, 0) for h in hosts), res.summary()

    converged = dict((h, fleet.snapshot(h)) for h in hosts)
    cloud = cf.cloud_snapshot()
    res = cf.site(vols, check=True).assert_ok()
    assert per_host(res, 'changed') == dict((h, 0) for h in hosts), res.summary()
    assert cf.cloud_snapshot() == cloud
    for host in hosts:
        assert fleet.snapshot(host) == converged[host], host
    assert cf.hv.errors == [], cf.hv.errors
    print('cinder fleet: check %.1f s, first run %.1f s, re-run %.1f s' % (t_check, t_first, t_rerun))


def test_move_cinder_volume_between_hosts(cloud_fleet, uid):
    cf, fleet = cloud_fleet, cloud_fleet.fleet
    h1, h2, h3 = cf.hosts[:3]
    m1, m2, loop1 = uid + '-m1', uid + '-m2', uid + '-l1'
    vols = {h1: [{'name': m1, 'backend': 'cinder', 'size': '1GiB'},
                 {'name': m2, 'backend': 'cinder', 'size': '1GiB', 'fstype': 'xfs'},
                 {'name': loop1, 'size': '64MiB'}],
            # the target already has a volume called m2 (a loop volume of its own)
            h2: [{'name': m2, 'size': '64MiB'}]}
    cf.site(vols).assert_ok()
    ids = dict((n, v.id) for n, v in cf.ours().items())
    write(fleet, h1, m1, 'm1-from-' + h1)
    foreign = uid + '-foreign'
    cf.foreign_volume(foreign, h1)
    write(fleet, h1, m2, 'm2-from-' + h1)
    fleet.docker(h1, ['run', '-d', '--name', uid + '-app', '--network', 'none', '-v', m1 + ':/data',
                      'lab/busybox:latest', 'sleep', '3600'])

    def state():
        return dict((h, fleet.snapshot(h)) for h in cf.hosts), cf.cloud_snapshot()

    # bad input: each a clear error, nothing changed anywhere
    before = state()
    bad = [
        (([m1], h1, h1), 'are the same host (%s)' % h1),
        (([m1], h1, 'nohost'), "pv_move_to: unknown host 'nohost'"),
        (([m1], 'nohost', h2), "pv_move_from: unknown host 'nohost'"),
        (([loop1], h1, h2), 'a loop volume is an image file on %s' % h1),
        (([uid + '-nope'], h1, h2), 'manages no volume of that name'),
        (([foreign], h1, h2), 'is not a volume of this collection (no pv_name mark)'),
        (([m2], h1, h2), '%s already has a volume of that name' % h2),
        (([m1], h1, h2), 'in use by container(s) %s-app' % uid),       # refused without force
    ]
    for (names, src, dst), message in bad:
        res = cf.move(names, src, dst, vols).assert_failed()
        assert message in res.stdout + res.stderr, (names, src, dst, res.summary())
        assert state() == before, (names, src, dst)

    # --check: reports both sides, changes nothing
    res = cf.move([m1], h1, h2, vols, force=True, check=True).assert_ok()
    assert state() == before
    assert res.stats[h2]['changed'] == 1 and res.stats[h1]['changed'] >= 1, res.summary()

    # the move, with force (the container on A is removed); attachments polled all along
    t0 = time.monotonic()
    with AttachmentWatch(cinder_reader([ids[m1]])) as watch:
        res = cf.move([m1], h1, h2, vols, force=True).assert_ok()
    t_move = time.monotonic() - t0
    assert watch.polls > 10 and watch.max_attached == 1, watch.seen
    assert watch.seen[ids[m1]] == [(cf.servers[h1].id,), (), (cf.servers[h2].id,)], watch.seen
    cf.created[h1].pop(m1)
    cf.created[h2][m1] = 'cinder'
    cf.created.setdefault(h1, {})  # A keeps a 'detached' record: cleaned with backend device
    vol = cf.conn.block_storage.get_volume(ids[m1])
    assert vol.status == 'in-use' and [a['server_id'] for a in vol.attachments] == [cf.servers[h2].id]
    mp = '/var/lib/persistent-volumes/mounts/' + m1
    # A is empty: no container, Docker volume, mount, fstab line or device
    assert uid + '-app' not in fleet.docker(h1, ['ps', '-a', '--format', '{{.Names}}'])
    assert m1 not in fleet.docker(h1, ['volume', 'ls', '-q']).split()
    assert fleet.sh(h1, 'findmnt -n %s || true' % mp).strip() == ''
    assert mp not in fleet.sh(h1, 'cat /etc/fstab')
    assert 'virtio-' + ids[m1][:20] not in by_id_links(fleet, h1)
    # B has it, data intact
    assert fleet.sh(h2, 'findmnt -n -o TARGET %s' % mp).strip() == mp
    assert mp in fleet.sh(h2, 'cat /etc/fstab')
    assert read_back(fleet, h2, m1) == 'm1-from-' + h1
    # the other volumes of A are untouched
    assert read_back(fleet, h1, m2) == 'm2-from-' + h1

    # re-run: nothing to do anywhere
    after = state()
    res = cf.move([m1], h1, h2, vols, force=True).assert_ok()
    assert all(s.get('changed', 0) == 0 for s in res.stats.values()), res.summary()
    assert state() == after
    assert cf.hv.errors == [], cf.hv.errors
    print('move of 1 cinder volume: %.1f s' % t_move)
    # clean-up: A's detached record (host side only), then the rest as usual
    cf.site({h1: [{'name': m1, 'backend': 'device', 'state': 'absent'}]}).assert_ok()


FAILOVER_YML = os.path.join(helpers.REPO_ROOT, 'playbooks', 'failover.yml')


def test_failover_from_a_dead_host(cloud_fleet, uid):
    """Host A dies (container killed, server SHUTOFF): failover.yml takes its 5 volumes over on B,
    fenced; refused while A's server is ACTIVE. Timed next to the floor (bare SDK detach+attach)."""
    cf, fleet = cloud_fleet, cloud_fleet.fleet
    h1, h2, h3 = cf.hosts[:3]
    names = ['%s-f%d' % (uid, i) for i in range(5)]
    vols = {h1: [{'name': n, 'backend': 'cinder', 'size': '1GiB'} for n in names] + [{'name': uid + '-fl', 'size': '64MiB'}]}
    cf.site(vols).assert_ok()
    ids = dict((n, v.id) for n, v in cf.ours().items())
    for n in names:
        # written and fsync'ed on A
        write(fleet, h1, n, 'fsynced-on-A-' + n)

    def failover(extra=None, check=False):
        inv = fleet.inventory(cf.groupvars, cf.hostvars(vols))
        ev = {'pv_failover_from': h1, 'pv_failover_to': h2}
        ev.update(extra or {})
        return fleet.runner.run_playbook(FAILOVER_YML, inventory=inv, check=check, extra_vars=ev,
                                         args=['--forks', '3'])

    # A is up (ACTIVE): refused, nothing changed; loop volumes cannot be taken over
    before = (dict((h, fleet.snapshot(h)) for h in (h2, h3)), cf.cloud_snapshot())
    res = failover().assert_failed()
    assert 'not SHUTOFF' in res.stdout and 'fencing' in res.stdout, res.summary()
    res = failover({'pv_failover_volumes': [uid + '-fl']}).assert_failed()
    assert 'is a loop volume' in res.stdout and 'host-local' in res.stdout, res.summary()
    res = failover({'pv_failover_to': h1}).assert_failed()
    assert 'are the same host' in res.stdout, res.summary()
    assert (dict((h, fleet.snapshot(h)) for h in (h2, h3)), cf.cloud_snapshot()) == before

    try:
        cf.hv.guest_died(h1, cf.conn)
        t0 = time.monotonic()
        with AttachmentWatch(cinder_reader([ids[n] for n in names])) as watch:
            res = failover().assert_ok()
        t_failover = time.monotonic() - t0
        breakdown = res.timings()
        assert watch.max_attached == 1, watch.seen
        for n in names:
            vol = cf.conn.block_storage.get_volume(ids[n])
            assert [a['server_id'] for a in vol.attachments] == [cf.servers[h2].id]
            assert read_back(fleet, h2, n) == 'fsynced-on-A-' + n
            cf.created[h1].pop(n)
            cf.created.setdefault(h2, {})[n] = 'cinder'
        fsck = res.result('Filesystem check before mounting (read-only unless pv_failover_fsck_repair)', h2)
        verdicts = [line for line in fsck['stdout_lines'] if line.startswith(('CLEAN ', 'ERRORS '))]
        assert fsck['rc'] == 0 and sorted(verdicts) == sorted('CLEAN ' + n for n in names), fsck
        assert 'e2fsck -f -n' in fsck['cmd']

        # re-run: nothing to do anywhere
        res = failover().assert_ok()
        assert all(s.get('changed', 0) == 0 for s in res.stats.values()), res.summary()

        # the floor: bare SDK detach + attach of the same 5 volumes (B -> C), unmounted first
        detached = {h2: [{'name': n, 'backend': 'cinder', 'state': 'detached'} for n in names]}
        cf.site(detached).assert_ok()
        t0 = time.monotonic()
        for n in names:
            cf.conn.compute.create_volume_attachment(cf.servers[h3].id, volume_id=ids[n])
        for n in names:
            cf.conn.block_storage.wait_for_status(cf.conn.block_storage.get_volume(ids[n]), 'in-use', interval=0.2, wait=120)
        t_attach = time.monotonic() - t0
        t0 = time.monotonic()
        for n in names:
            cf.conn.compute.delete_volume_attachment(cf.servers[h3].id, ids[n])
        for n in names:
            cf.conn.block_storage.wait_for_status(cf.conn.block_storage.get_volume(ids[n]), 'available', interval=0.2, wait=120)
        for n in names:
            cf.conn.compute.create_volume_attachment(cf.servers[h2].id, volume_id=ids[n])
        for n in names:
            cf.conn.block_storage.wait_for_status(cf.conn.block_storage.get_volume(ids[n]), 'in-use', interval=0.2, wait=120)
        t_floor = time.monotonic() - t0
        print('failover of 5 cinder volumes: %.1f s; floor (SDK detach+attach): %.1f s; ratio %.2f '
              '(SDK attach alone %.1f s)' % (t_failover, t_floor, t_failover / t_floor, t_attach))
        print('failover breakdown: %s; outside the tasks (ansible-playbook start, plays, connections): %.1f s'
              % ('; '.join('%s %.1f s' % (name.split(' : ')[-1][:40], secs) for name, secs in breakdown if secs >= 0.3),
                 t_failover - sum(secs for _name, secs in breakdown)))
    finally:
        cf.created.get(h1, {}).clear()       # A is replaced by a fresh host: nothing of it to clean
        cf.hv.guest_replaced(h1, cf.conn)
    assert cf.hv.errors == [], cf.hv.errors


def test_failover_fence_stop_then_the_old_host_comes_back(cloud_fleet, uid):
    """Host A is still ACTIVE (it writes): failover.yml with pv_failover_fence_stop stops A's server through
    Nova (the emulation kills A's guest when Nova powers it off), force-detaches, checks and mounts on B;
    A writes nothing afterwards. Then A comes back (same container restarted: a reboot): its boot mounts
    nothing of the moved volumes, and site.yml on A (its inventory still lists them) reports where they
    live, cleans A's stale fstab lines and Docker volumes, never attaches them back; re-run changed=0."""
    cf, fleet = cloud_fleet, cloud_fleet.fleet
    h1, h2 = cf.hosts[:2]
    names = ['%s-s%d' % (uid, i) for i in range(2)]
    vols = {h1: [{'name': n, 'backend': 'cinder', 'size': '1GiB'} for n in names]}
    cf.site(vols).assert_ok()
    ids = dict((n, v.id) for n, v in cf.ours().items())
    for n in names:
        write(fleet, h1, n, 'fsynced-on-A-' + n)
    # A keeps writing (a counter, fsync'ed every 0.1 s) until it is stopped
    fleet.docker(h1, ['run', '-d', '--name', uid + '-writer', '--network', 'none', '-v', names[0] + ':/data',
                      'lab/busybox:latest', 'sh', '-c',
                      'i=0; while :; do i=$((i+1)); echo $i >> /data/counter; sync; sleep 0.1; done'])
    mps = ['/var/lib/persistent-volumes/mounts/' + n for n in names]
    fstab_a = fleet.sh(h1, 'cat /etc/fstab')
    assert all(mp in fstab_a for mp in mps) and 'nofail' in fstab_a

    def failover(extra=None):
        inv = fleet.inventory(cf.groupvars, cf.hostvars(vols))
        ev = {'pv_failover_from': h1, 'pv_failover_to': h2}
        ev.update(extra or {})
        return fleet.runner.run_playbook(FAILOVER_YML, inventory=inv, extra_vars=ev, args=['--forks', '3'])

    try:
        # ACTIVE and no fence_stop: refused, the message names the option, nothing changed, A still up
        before = (fleet.snapshot(h2), cf.cloud_snapshot())
        res = failover().assert_failed()
        assert 'not SHUTOFF' in res.stdout and 'fence_stop: true' in res.stdout, res.summary()
        assert (fleet.snapshot(h2), cf.cloud_snapshot()) == before
        assert cf.conn.compute.get_server(cf.servers[h1].id).status == 'ACTIVE'

        res = failover({'pv_failover_fence_stop': True}).assert_ok()
        assert cf.conn.compute.get_server(cf.servers[h1].id).status == 'SHUTOFF'
        rec = res.result('Attach here, force-detaching from the SHUTOFF source server (fenced)', h2)
        assert all(a['stopped_servers'] == [cf.servers[h1].name] for a in rec['attachments']), rec
        # the guest was stopped (container killed) before any of its disks showed up on B
        stopped = [t for t, what, _sid, host in cf.hv.events if what == 'guest-stopped' and host == h1]
        published = [t for t, what, vid, host in cf.hv.events if what == 'publish' and host == h2
                     and vid in ids.values()]
        assert stopped and published and max(stopped) < min(published), cf.hv.events
        container = cf.hv.container(h1)
        assert fleet.lab.docker('inspect', '-f', '{{.State.Running}}', container).stdout.strip() == 'false'
        for n in names:
            vol = cf.conn.block_storage.get_volume(ids[n])
            assert [a['server_id'] for a in vol.attachments] == [cf.servers[h2].id]
            assert read_back(fleet, h2, n) == 'fsynced-on-A-' + n
            cf.created[h1].pop(n)
            cf.created.setdefault(h2, {})[n] = 'cinder'
        # A wrote its counter until it was stopped, and nothing after that
        count = fleet.docker(h2, ['run', '--rm', '--network', 'none', '-v', names[0] + ':/data',
                                  'lab/busybox:latest', 'sh', '-c', 'wc -l < /data/counter; tail -n 1 /data/counter'])
        time.sleep(1.0)
        again = fleet.docker(h2, ['run', '--rm', '--network', 'none', '-v', names[0] + ':/data',
                                  'lab/busybox:latest', 'sh', '-c', 'wc -l < /data/counter; tail -n 1 /data/counter'])
        assert int(count.split()[0]) > 0 and again == count, (count, again)

        # A comes back: same rootfs and /etc/fstab (its stale lines), Docker's volume records kept
        boot = cf.hv.guest_rebooted(h1, cf.conn)
        assert fleet.sh(h1, 'cat /etc/fstab') == fstab_a
        for mp in mps:
            assert fleet.sh(h1, 'findmnt -n %s || true' % mp).strip() == '', (mp, boot)
        assert set(names) <= set(fleet.docker(h1, ['volume', 'ls', '-q']).split())
        # honest lab: B's disks were hidden from A's boot. Without that, A's `mount -a` would have found
        # them by UUID (loop devices are kernel-global: after the boot libblkid in A does find B's disk)
        hidden = ' '.join(line for line in boot if 'not visible here' in line)
        for n in names:
            dev = fleet.sh(h2, 'readlink -f /dev/disk/by-id/virtio-%s' % ids[n][:20]).strip()
            uuid = fleet.sh(h2, 'blkid -o value -s UUID %s' % dev).strip()
            assert uuid and ' %s ' % os.path.basename(dev) in hidden + ' ', (n, dev, boot)
            assert fleet.sh(h1, 'blkid -U %s || true' % uuid).strip() == dev, (n, uuid)
        assert 'virtio-' + ids[names[0]][:20] not in by_id_links(fleet, h1)

        # site.yml on A with its inventory still listing them: reported as living on B's server,
        # A's traces cleaned, never attached back; the writer container on A is gone with the reboot
        before_b = fleet.snapshot(h2)
        res = cf.site(vols)
        cf.created[h1] = dict((n, 'device') for n in names)   # A keeps 'detached' records
        res.assert_ok()
        assert per_host(res, 'changed')[h1] >= 1, res.summary()
        said = ' '.join((res.stdout + res.stderr).split())        # the warning, wrapped by Ansible
        for n in names:
            assert 'volume %s (Cinder volume %s) lives on server %s (attached there), not on %s' % (
                n, ids[n], cf.servers[h2].name, cf.servers[h1].name) in said, said[-3000:]
        att = res.result('Attach them to this host\'s Nova server', h1)
        assert sorted((a['volume_name'], a['attached_elsewhere'], a['changed']) for a in att['attachments']) == \
            sorted((n, [cf.servers[h2].name], False) for n in names), att
        fstab = fleet.sh(h1, 'cat /etc/fstab')
        assert not any(mp in fstab for mp in mps), fstab
        assert not set(names) & set(fleet.docker(h1, ['volume', 'ls', '-q']).split())
        for n in names:
            vol = cf.conn.block_storage.get_volume(ids[n])
            assert [a['server_id'] for a in vol.attachments] == [cf.servers[h2].id], vol.attachments
            assert read_back(fleet, h2, n) == 'fsynced-on-A-' + n
        assert fleet.snapshot(h2) == before_b
        # re-run: nothing to do, still reported
        res = cf.site(vols)
        cf.created[h1] = dict((n, 'device') for n in names)
        res.assert_ok()
        assert per_host(res, 'changed')[h1] == 0, res.summary()
        assert 'lives on server %s' % cf.servers[h2].name in ' '.join((res.stdout + res.stderr).split())
        assert [a['server_id'] for a in cf.conn.block_storage.get_volume(ids[names[0]]).attachments] == \
            [cf.servers[h2].id]
    finally:
        if h1 in cf.hv.down:
            cf.created.get(h1, {}).clear()
            cf.hv.guest_replaced(h1, cf.conn)
    assert cf.hv.errors == [], cf.hv.errors


def test_two_controllers_run_site_for_the_same_host_at_once(cloud_fleet, uid):
    """Two ansible-playbook processes (two controllers) run site.yml for the same host, started together:
    never a duplicate Cinder volume (a concurrent create of the same name is given up by the run whose
    volume is younger), the host side is serialized (the host's state lock), nothing lost."""
    cf, fleet = cloud_fleet, cloud_fleet.fleet
    h1 = cf.hosts[0]
    names = ['%s-c%d' % (uid, i) for i in range(2)]
    vols = {h1: [{'name': n, 'backend': 'cinder', 'size': '1GiB'} for n in names]}
    cf.created[h1] = dict((n, 'cinder') for n in names)
    invs = [fleet.inventory(cf.groupvars, cf.hostvars(vols)) for _i in range(2)]
    dirs = [fleet.runner._rundir() for _i in range(2)]   # pylint: disable=protected-access
    results = [None, None]
    start = threading.Barrier(2)

    def controller(i):
        start.wait()
        results[i] = fleet.runner.run_playbook(SITE_YML, inventory=invs[i], limit=h1, args=['--forks', '3'],
                                               _rundir=dirs[i])
    threads = [threading.Thread(target=controller, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    for res in results:
        res.assert_ok()
    said = ' '.join(' '.join(r.stdout + r.stderr for r in results).split())
    given_up = said.count('another run created it at the same time')
    # exactly one Cinder volume per name (cf.ours() fails on a second one), none left being deleted
    ours = cf.ours()
    assert sorted(ours) == sorted(names), sorted(ours)
    leftovers = [v.id for v in cf.conn.block_storage.volumes(details=True)
                 if (v.metadata or {}).get('pv_name', '') in names and v.id not in [o.id for o in ours.values()]]
    assert leftovers == []
    fstab = fleet.sh(h1, 'cat /etc/fstab')
    for n in names:
        assert [a['server_id'] for a in ours[n].attachments] == [cf.servers[h1].id]
        mp = '/var/lib/persistent-volumes/mounts/' + n
        assert fstab.count(' %s ' % mp) == 1, fstab
        assert fleet.sh(h1, 'findmnt -n -o TARGET %s' % mp).strip() == mp
        write(fleet, h1, n, 'two-controllers-' + n)
        assert read_back(fleet, h1, n) == 'two-controllers-' + n
    res = cf.site(vols, limit=h1).assert_ok()
    assert per_host(res, 'changed')[h1] == 0, res.summary()
    print('two controllers at once: %d concurrent create(s) given up' % given_up)
