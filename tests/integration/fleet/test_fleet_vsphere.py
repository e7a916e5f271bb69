# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""playbooks/site.yml, move.yml and failover.yml with backend vsphere on the lab: each lab host is
a VM of the vSphere simulator (tests/harness/vcsim).

Rule: the vSphere calls run on the controller (``pv_cloud_delegate_to: localhost``, credentials in
the controller's VMWARE_* environment only; the hosts have no pyvmomi); the emulation
(tests/harness/vcsim/lab_vsphere.py) shows a disk attached to VM X inside lab host X only, under its
SCSI by-path link, over the disk's extent file in the simulator's datastore (the SAN); a VM powered
off (by the emulation or through the API) kills its lab host's container. Every test removes its
disks (hosts and datastore) afterwards; the VMs are made once per session and destroyed at the end.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import secrets
import threading
import time

import pytest

import pv_integration_helpers as helpers  # pylint: disable=import-error
from attachment_watch import AttachmentWatch, vsphere_reader  # pylint: disable=import-error

pytest.importorskip('pyVmomi')

from vsphere_fixtures import vcsim  # noqa: F401,E402 pylint: disable=unused-import,import-error,wrong-import-position
import pv_vsphere_support as support  # noqa: E402 pylint: disable=import-error,wrong-import-position

pytestmark = [pytest.mark.vsphere, pytest.mark.timeout(900)]

SITE_YML = os.path.join(helpers.REPO_ROOT, 'playbooks', 'site.yml')
MOVE_YML = os.path.join(helpers.REPO_ROOT, 'playbooks', 'move.yml')
FAILOVER_YML = os.path.join(helpers.REPO_ROOT, 'playbooks', 'failover.yml')
DS = support.DATASTORE
MNT = '/var/lib/persistent-volumes/mounts/'


def vmdk(name):
    return '[%s] %s/%s.vmdk' % (DS, support.FOLDER, name)


class VsFleet(object):
    """The fleet with backend vsphere: per-host volume lists, site/move/failover runs with forks 3."""

    groupvars = {'pv_cloud_delegate_to': 'localhost', 'pv_install_dependencies': False}

    def __init__(self, fleet, client, vms, lv, uid, vcsim):  # noqa: F811
        self.fleet = fleet
        self.client = client
        self.vms = vms
        self.lv = lv
        self.uid = uid
        self.vcsim = vcsim
        self.hosts = fleet.names
        fleet.runner.env.update(vcsim['env'])          # the controller's credentials (VMWARE_*)
        self.created = {}                   # host -> {name: backend}
        self.foreign = []                   # VMDKs the test made without the collection
        self.abandoned = []                 # VMDKs left on a dead host's VM (its host was replaced)

    def hostvars(self, volumes, extra=None):
        out = dict((h, {'pv_vsphere': {'vm_name': self.vms[h].name, 'datastore': DS},
                        'pv_volumes': volumes.get(h, [])}) for h in self.hosts)
        for h, hv in (extra or {}).items():
            out[h].update(hv)
        return out

    def inventory(self, volumes):
        return self.fleet.inventory(self.groupvars, self.hostvars(volumes))

    def site(self, volumes, check=False, limit=None):
        for host, vols in volumes.items():
            if limit is not None and host != limit:
                continue
            for v in vols:
                if v.get('state', 'present') == 'present':
                    self.created.setdefault(host, {})[v['name']] = v.get('backend', 'loop')
        return self.fleet.runner.run_playbook(SITE_YML, inventory=self.inventory(volumes), check=check,
                                              limit=limit, args=['--forks', '3'])

    def move(self, names, src, dst, volumes, force=False, check=False):
        ev = {'pv_move_volumes': names, 'pv_move_from': src, 'pv_move_to': dst, 'pv_move_force': force}
        return self.fleet.runner.run_playbook(MOVE_YML, inventory=self.inventory(volumes), check=check,
                                              extra_vars=ev, args=['--forks', '3'])

    def failover(self, src, dst, volumes, extra=None, check=False):
        ev = {'pv_failover_from': src, 'pv_failover_to': dst}
        ev.update(extra or {})
        return self.fleet.runner.run_playbook(FAILOVER_YML, inventory=self.inventory(volumes), check=check,
                                              extra_vars=ev, args=['--forks', '3'])

    def disks(self):
        """{vmdk path: sorted VM names it is attached to} of this test's disks."""
        from pyVmomi import vim
        out = {}
        for _vm, props in self.client.all_props(vim.VirtualMachine, ['name', 'config.hardware.device']):
            for dev in props.get('config.hardware.device') or []:
                name = getattr(getattr(dev, 'backing', None), 'fileName', '') or ''
                if isinstance(dev, vim.vm.device.VirtualDisk) and self.uid in name:
                    out.setdefault(name, []).append(props['name'])
        return dict((k, sorted(v)) for k, v in out.items())

    def files(self):
        dc = self.client.datacenter('DC0')
        return sorted(self.client.search(self.client.find_datastore(DS, dc), support.FOLDER, [self.uid + '*']))

    def state(self, hosts=None):
        return (dict((h, self.fleet.snapshot(h)) for h in (hosts or self.hosts)), self.disks(), self.files())

    def cleanup(self):
        errors = []
        up = [h for h in self.created if h not in self.lv.down]
        if up:
            absent = dict((h, [{'name': n, 'backend': b, 'state': 'absent', 'force': True}
                               for n, b in self.created[h].items()]) for h in up)
            self.created = {}
            res = self.site(absent)
            if res.rc != 0:
                errors.append('site.yml state=absent: %s' % res.summary())
        left = self.disks()
        for vm in self.vms.values():          # what a failed test left attached
            from pyVmomi import vim
            removes = [vim.vm.device.VirtualDeviceSpec(operation='remove', device=d)
                       for d in vm.config.hardware.device
                       if isinstance(d, vim.vm.device.VirtualDisk) and self.uid in (d.backing.fileName or '')]
            if removes:
                self.client.wait(vm.ReconfigVM_Task(vim.vm.ConfigSpec(deviceChange=removes)), 'detaching')
        left = dict((k, v) for k, v in left.items() if k not in self.foreign + self.abandoned)
        if left:
            errors.append('left attached after state=absent: %s' % left)
        if self.files():
            support.remove_files(self.client, self.uid)
        return errors


@pytest.fixture(scope='module')
def world(lab_vsphere):
    """ONE set of disks for every scenario of this module (the CPU budget), made by the first test
    that asks for it (:func:`vs_fleet`) and removed at the end of the module."""
    state = {'uid': 'pvt-' + secrets.token_hex(3), 'made': None, 'fleet': None}
    yield state
    if state['fleet'] is not None:
        errors = state['fleet'].cleanup()
        if errors:
            pytest.fail('clean-up: ' + '; '.join(errors), pytrace=False)


def world_volumes(uid, hosts):
    """host1: m1, m2 (move), f0..f4 (failover, 5 disks), fl (loop); host2: m2 (a loop volume: the
    name is taken there); host3: s1 (failover with fence_stop)."""
    h1, h2, h3 = hosts[:3]

    def disk(n):
        return {'name': uid + '-' + n, 'backend': 'vsphere', 'size': '64MiB'}
    return {h1: [disk('m1'), disk('m2')] + [disk('f%d' % i) for i in range(5)] + [{'name': uid + '-fl', 'size': '32MiB'}],
            h2: [{'name': uid + '-m2', 'size': '32MiB'}],
            h3: [disk('s1')]}


@pytest.fixture
def vs_fleet(world, fleet, lab_vclient, lab_vms, lab_vsphere, vcsim):  # noqa: F811
    """The fleet on the module's world; the first user makes the world: site.yml --check on the fresh
    fleet, then site.yml (both kept in ``world['made']`` for test_site_yml_vsphere_fleet)."""
    vf = VsFleet(fleet, lab_vclient, lab_vms, lab_vsphere, world['uid'], vcsim)
    if world['fleet'] is not None:
        vf.created, vf.foreign, vf.abandoned = world['fleet'].created, world['fleet'].foreign, world['fleet'].abandoned
    world['fleet'] = vf
    vf.vols = world.setdefault('vols', world_volumes(world['uid'], vf.hosts))
    if world['made'] is None:
        before = vf.state()
        t0 = time.monotonic()
        check = vf.site(vf.vols, check=True)
        t_check = time.monotonic() - t0
        vf.created = {}                     # nothing made yet
        after_check = vf.state()
        t0 = time.monotonic()
        first = vf.site(vf.vols)
        world['made'] = {'before': before, 'check': check, 'after_check': after_check, 'first': first,
                         't_check': t_check, 't_first': time.monotonic() - t0}
        first.assert_ok()
    return vf


def per_host(res, key):
    return dict((host, stats.get(key, 0)) for host, stats in res.stats.items() if host != 'localhost')


def write(fleet, host, volume, text):
    fleet.docker(host, ['run', '--rm', '--network', 'none', '-v', volume + ':/data', 'lab/busybox:latest',
                        'sh', '-c', 'echo %s > /data/who && sync' % text])


def read_back(fleet, host, volume):
    return fleet.docker(host, ['run', '--rm', '--network', 'none', '-v', volume + ':/data',
                               'lab/busybox:latest', 'cat', '/data/who']).strip()


def by_path_links(fleet, host):
    return sorted(fleet.sh(host, 'ls /dev/disk/by-path 2>/dev/null || true').split())


def test_site_yml_vsphere_fleet(vs_fleet, world):
    vf, fleet, uid = vs_fleet, vs_fleet.fleet, vs_fleet.uid
    hosts = vf.hosts
    made = world['made']
    disks = dict((h, [v['name'] for v in vf.vols[h] if v.get('backend') == 'vsphere']) for h in hosts)
    # the hosts cannot make vSphere calls at all: no pyvmomi (and no credentials)
    for host in hosts:
        assert fleet.lab.exec(host, ['python3', '-c', 'import pyVmomi'], check=False).returncode != 0

    # --check on the fresh fleet: it planned, and changed nothing in vSphere or on the hosts
    made['check'].assert_ok()
    assert all(per_host(made['check'], 'changed')[h] >= 1 for h in hosts), made['check'].summary()
    assert made['after_check'] == made['before'], 'check mode changed something'

    res = made['first']
    assert all(per_host(res, 'changed')[h] >= 1 for h in hosts), res.summary()
    for host in [h for h in hosts if disks[h]]:
        # the vSphere calls ran on the controller (the hosts have no pyvmomi: they could not run
        # there), for the host's own VM; the host chain on each host
        rec = res.result('Create, grow or attach the vSphere disks to this host\'s VM', host)
        assert [(r['vm']['name'], r['disk']['filename']) for r in rec['results']] == \
            [(vf.vms[host].name, vmdk(n)) for n in disks[host]], rec
    assert vf.disks() == dict((vmdk(n), [vf.vms[h].name]) for h in hosts for n in disks[h])
    for host in hosts:
        record = dict((v['name'], v) for v in res.result('Manage the persistent volumes in one call', host)['volumes'])
        assert sorted(record) == sorted(v['name'] for v in vf.vols[host])
        for name in disks[host]:
            vf.lv.wait_published(name + '-flat.vmdk', host)
            assert vf.lv.where(name + '-flat.vmdk') == [host]        # published inside its own host only
            assert record[name]['backend_id'] == vmdk(name)
            mp = MNT + name
            assert fleet.sh(host, 'findmnt -n -o TARGET %s' % mp).strip() == mp
            assert mp in fleet.sh(host, 'cat /etc/fstab')
            assert name in fleet.docker(host, ['volume', 'ls', '-q']).split()
        assert len(by_path_links(fleet, host)) == len(disks[host])

    # data survives its container (written by one, read back by another)
    for host in hosts:
        for name in disks[host]:
            write(fleet, host, name, 'data-of-%s-%s' % (host, name))
    for host in hosts:
        for name in disks[host]:
            assert read_back(fleet, host, name) == 'data-of-%s-%s' % (host, name)

    t0 = time.monotonic()
    res = vf.site(vf.vols).assert_ok()
    t_rerun = time.monotonic() - t0
    assert per_host(res, 'changed') == dict((h, 0) for h in hosts), res.summary()

    converged = vf.state()
    res = vf.site(vf.vols, check=True).assert_ok()
    assert per_host(res, 'changed') == dict((h, 0) for h in hosts), res.summary()
    assert vf.state() == converged
    assert vf.lv.errors == [], vf.lv.errors
    print('vsphere fleet (9 disks, 3 hosts): check %.1f s, first run %.1f s, re-run %.1f s'
          % (made['t_check'], made['t_first'], t_rerun))


def foreign_disk(vf, name, host):
    """A VMDK NOT made by this collection (no ownership marker), attached to ``host``'s VM and used
    there through backend device (as a user could): what a move or failover must refuse."""
    from ansible_collections.persistent_volumes.docker.plugins.module_utils.vmware import disk as vd
    if vmdk(name) in vf.foreign:
        return
    dc = vf.client.datacenter('DC0')
    disks = vd.VmDisks(vf.client, vf.vms[host])
    slot = disks.plan_slot('pvscsi')
    disks.reconfigure('creating a foreign disk', disks.add_specs(
        vmdk(name), slot, size=64 * 1024 * 1024, create=True, datastore=vf.client.find_datastore(DS, dc)))
    vf.foreign.append(vmdk(name))
    vf.lv.wait_published(name + '-flat.vmdk', host)
    vf.created.setdefault(host, {})[name] = 'device'
    task = {'persistent_volumes.docker.volume': {
        'name': name, 'backend': 'device', 'size': '64MiB',
        'backend_options': {'id': vmdk(name), 'scsi': {'controller_type': 'pvscsi', 'bus_rank': 0,
                                                       'unit_number': slot['unit_number']}}}}
    play = {'hosts': host, 'gather_facts': False, 'become': True, 'tasks': [task]}
    vf.fleet.runner.run([play], inventory=vf.fleet.inventory()).assert_changed()


def test_move_vsphere_disk_between_hosts(vs_fleet):
    vf, fleet, uid = vs_fleet, vs_fleet.fleet, vs_fleet.uid
    vols = vf.vols
    h1, h2 = vf.hosts[:2]
    m1, m2, foreign = uid + '-m1', uid + '-m2', uid + '-foreign'
    write(fleet, h1, m1, 'm1-from-' + h1)
    write(fleet, h1, m2, 'm2-from-' + h1)
    foreign_disk(vf, foreign, h1)
    fleet.docker(h1, ['run', '-d', '--name', uid + '-app', '--network', 'none', '-v', m1 + ':/data',
                      'lab/busybox:latest', 'sleep', '3600'])

    # bad input: each a clear error, nothing changed anywhere (loop volumes and a container in use
    # are refused by the same checks for every backend: test_fleet_cinder)
    before = vf.state()
    bad = [
        (([m1], h1, h1), 'are the same host (%s)' % h1),
        (([m1], h1, 'nohost'), "pv_move_to: unknown host 'nohost'"),
        (([foreign], h1, h2), 'is not a volume of this collection (no ownership marker)'),
        (([m2], h1, h2), '%s already has a volume of that name' % h2),
    ]
    for (names, src, dst), message in bad:
        res = vf.move(names, src, dst, vols).assert_failed()
        assert message in res.stdout + res.stderr, (names, src, dst, res.summary())
        assert vf.state() == before, (names, src, dst)

    # --check: reports both sides, changes nothing
    res = vf.move([m1], h1, h2, vols, force=True, check=True).assert_ok()
    assert vf.state() == before
    assert res.stats[h2]['changed'] == 1 and res.stats[h1]['changed'] >= 1, res.summary()

    # the move, with force (the container on A is removed); attachments polled all along
    t0 = time.monotonic()
    with AttachmentWatch(vsphere_reader(vf.vcsim, [vmdk(m1)])) as watch:
        res = vf.move([m1], h1, h2, vols, force=True).assert_ok()
    t_move = time.monotonic() - t0
    assert watch.polls > 10 and watch.max_attached == 1, watch.seen
    assert watch.seen[vmdk(m1)] == [(vf.vms[h1].name,), (), (vf.vms[h2].name,)], watch.seen
    vf.created[h1].pop(m1)
    vf.created.setdefault(h2, {})[m1] = 'vsphere'
    vf.created[h1][m1] = 'device'        # A keeps a 'detached' record: cleaned on the host side only
    mp = MNT + m1
    # A is empty: no container, Docker volume, mount, fstab line or device
    assert uid + '-app' not in fleet.docker(h1, ['ps', '-a', '--format', '{{.Names}}'])
    assert m1 not in fleet.docker(h1, ['volume', 'ls', '-q']).split()
    assert fleet.sh(h1, 'findmnt -n %s || true' % mp).strip() == ''
    assert mp not in fleet.sh(h1, 'cat /etc/fstab')
    assert vf.lv.where(m1 + '-flat.vmdk') == [h2]
    # B has it, data intact
    assert fleet.sh(h2, 'findmnt -n -o TARGET %s' % mp).strip() == mp
    assert mp in fleet.sh(h2, 'cat /etc/fstab')
    assert read_back(fleet, h2, m1) == 'm1-from-' + h1
    # the other volumes of A are untouched
    assert read_back(fleet, h1, m2) == 'm2-from-' + h1

    # re-run: nothing to do anywhere
    after = vf.state()
    res = vf.move([m1], h1, h2, vols, force=True).assert_ok()
    assert all(s.get('changed', 0) == 0 for s in res.stats.values()), res.summary()
    assert vf.state() == after
    assert vf.lv.errors == [], vf.lv.errors
    print('move of 1 vsphere disk: %.1f s' % t_move)


def container_running(lab, host):
    container = [h for h in lab.hosts if h['name'] == host][0]['container']
    out = lab.docker('inspect', '-f', '{{.State.Running}}', container, check=False)
    return out.stdout.strip() == 'true'


def old_host_comes_back(vf, names):
    """After the failover of ``names`` from A (dead) to B: A comes back (its VM powered on, the same
    container started again: a reboot). Its boot mounts none of the moved disks (their devices are not
    there; B's were hidden from A's boot); site.yml on A, whose inventory still lists them, warns where
    each lives (B's VM), cleans A's stale fstab lines and Docker volumes, never attaches them back
    (B unchanged, data intact); re-run changed=0."""
    fleet, vols = vf.fleet, vf.vols
    h1, h2 = vf.hosts[:2]
    vm_a, vm_b = vf.vms[h1].name, vf.vms[h2].name
    ours_a = [v['name'] for v in vols[h1] if v.get('backend') == 'vsphere']
    moved = [n for n in ours_a if vf.disks().get(vmdk(n)) == [vm_b]]     # the failover's (and the move's)
    assert set(names) <= set(moved), (moved, vf.disks())
    mps = [MNT + n for n in moved]

    boot = vf.lv.guest_rebooted(h1)
    fstab_a = fleet.sh(h1, 'cat /etc/fstab')
    assert all(MNT + n in fstab_a for n in names) and 'nofail' in fstab_a, fstab_a   # A's stale lines
    for mp in mps:
        assert fleet.sh(h1, 'findmnt -n %s || true' % mp).strip() == '', (mp, boot)
    assert set(names) <= set(fleet.docker(h1, ['volume', 'ls', '-q']).split())       # Docker's records kept
    # B's disks (loop devices over the extent files, kernel-global) were hidden from A's boot
    hidden = ' '.join(line for line in boot if 'not visible here' in line) + ' '
    for n in names:
        dev = fleet.sh(h2, 'findmnt -n -o SOURCE %s' % (MNT + n)).strip()
        assert dev.startswith('/dev/loop') and ' %s ' % os.path.basename(dev) in hidden, (n, dev, boot)
        assert vf.lv.where(n + '-flat.vmdk') == [h2]

    # site.yml on A, its inventory still listing them: reported as living on B's VM, A's traces
    # cleaned, never attached back
    before_b = (fleet.snapshot(h2), vf.disks())
    res = vf.site(vols, limit=h1)
    for n in moved:
        vf.created[h1][n] = 'device'                # A keeps 'detached' records (host side only)
    res.assert_ok()
    assert per_host(res, 'changed')[h1] >= 1, res.summary()
    said = ' '.join((res.stdout + res.stderr).split())            # the warnings, wrapped by Ansible
    for n in moved:
        assert 'disk %s (%s) lives on VM %s (attached there), not on VM %s' % (n, vmdk(n), vm_b, vm_a) in said, \
            said[-3000:]
    rec = res.result('Create, grow or attach the vSphere disks to this host\'s VM', h1)
    left = sorted((r['item']['name'], r['attached_elsewhere'], r['changed']) for r in rec['results']
                  if r['item']['name'] in moved)
    assert left == sorted((n, [vm_b], False) for n in moved), rec
    fstab = fleet.sh(h1, 'cat /etc/fstab')
    assert not any(mp in fstab for mp in mps), fstab
    assert not set(moved) & set(fleet.docker(h1, ['volume', 'ls', '-q']).split())
    assert (fleet.snapshot(h2), vf.disks()) == before_b
    for n in moved:
        assert vf.disks()[vmdk(n)] == [vm_b] and vf.lv.where(n + '-flat.vmdk') == [h2]
    for n in names:
        assert read_back(fleet, h2, n) == 'fsynced-on-A-' + n

    # re-run: nothing to do, still reported
    after = vf.state([h1, h2])
    res = vf.site(vols, limit=h1)
    for n in moved:
        vf.created[h1][n] = 'device'
    res.assert_ok()
    assert per_host(res, 'changed')[h1] == 0, res.summary()
    assert 'lives on VM %s' % vm_b in ' '.join((res.stdout + res.stderr).split())
    assert vf.state([h1, h2]) == after


def test_failover_vsphere(vs_fleet):
    """Host A dies (container killed, VM poweredOff): failover.yml takes its 5 disks over on B, fenced;
    refused while A's VM is poweredOn. A comes back (:func:`old_host_comes_back`). Then host C, still up, is fenced by failover.yml itself
    (pv_failover_fence_stop: its VM powered off through the API, which kills its guest). Timed next to
    the floor (bare pyvmomi detach+attach of the same 5 disks between the same VMs)."""
    from ansible_collections.persistent_volumes.docker.plugins.module_utils.vmware import disk as vd
    vf, fleet, uid = vs_fleet, vs_fleet.fleet, vs_fleet.uid
    vols = vf.vols
    h1, h2, h3 = vf.hosts[:3]
    names = ['%s-f%d' % (uid, i) for i in range(5)]
    m2, s1, foreign = uid + '-m2', uid + '-s1', uid + '-foreign'
    for n in names:
        write(fleet, h1, n, 'fsynced-on-A-' + n)      # written and fsync'ed on A
    write(fleet, h3, s1, 'fsynced-on-C')
    foreign_disk(vf, foreign, h1)
    with_foreign = dict(vols, **{h1: vols[h1] + [{'name': foreign, 'backend': 'vsphere'}]})

    # A is up (poweredOn): refused, nothing changed
    before = vf.state([h2, h3])
    for extra, messages in [({'pv_failover_volumes': names}, ['is poweredOn, not poweredOff', 'fence_stop']),
                            ({'pv_failover_to': h1}, ['are the same host'])]:
        res = vf.failover(h1, h2, vols, extra).assert_failed()
        for message in messages:
            assert message in res.stdout, (extra, message, res.summary())
        assert vf.state([h2, h3]) == before, extra

    try:
        vf.lv.guest_died(h1)
        assert not container_running(fleet.lab, h1) and vf.lv.power_state(h1) == 'poweredOff'
        # A is down, fencing would allow a takeover: a disk that is not ours, and a name the target
        # already has, are still refused
        for extra, message in [({'pv_failover_volumes': [foreign]}, 'is not a volume of this collection (no ownership marker)'),
                               ({'pv_failover_volumes': [m2]}, '%s already has another volume named %s' % (h2, m2))]:
            res = vf.failover(h1, h2, with_foreign, extra).assert_failed()
            assert message in res.stdout, (extra, res.summary())
            assert vf.state([h2, h3]) == before, extra

        # the floor: bare pyvmomi detach + attach of the same 5 disks, A's VM -> C's VM (what the
        # failover does between A and B), then back (untimed)
        def shift(src, dst):
            for n in names:
                d = vd.VmDisks(vf.client, vf.vms[src])
                d.reconfigure('detach', [d.remove_spec(d.find(vmdk(n)))])
                d = vd.VmDisks(vf.client, vf.vms[dst])
                d.reconfigure('attach', d.add_specs(vmdk(n), d.plan_slot('pvscsi'), disk_mode='independent_persistent'))
        t0 = time.monotonic()
        shift(h1, h3)
        t_floor = time.monotonic() - t0
        shift(h3, h1)

        t0 = time.monotonic()
        with AttachmentWatch(vsphere_reader(vf.vcsim, [vmdk(n) for n in names])) as watch:
            res = vf.failover(h1, h2, vols, {'pv_failover_volumes': names}).assert_ok()
        t_failover = time.monotonic() - t0
        # never on two VMs (the detached moment between two polls may be too short to see)
        assert watch.polls > 10 and watch.max_attached == 1, watch.seen
        for n in names:
            seen = [vms for vms in watch.seen[vmdk(n)] if vms]
            assert seen == [(vf.vms[h1].name,), (vf.vms[h2].name,)], watch.seen
            assert read_back(fleet, h2, n) == 'fsynced-on-A-' + n
            vf.created[h1].pop(n)
            vf.created.setdefault(h2, {})[n] = 'vsphere'
        fsck = res.result('Filesystem check before mounting (read-only unless pv_failover_fsck_repair)', h2)
        verdicts = [line for line in fsck['stdout_lines'] if line.startswith(('CLEAN ', 'ERRORS '))]
        assert fsck['rc'] == 0 and sorted(verdicts) == sorted('CLEAN ' + n for n in names), fsck
        assert 'e2fsck -f -n' in fsck['cmd']

        # re-run: nothing to do anywhere
        after = vf.state([h2, h3])
        res = vf.failover(h1, h2, vols, {'pv_failover_volumes': names}).assert_ok()
        assert all(s.get('changed', 0) == 0 for s in res.stats.values()), res.summary()
        assert vf.state([h2, h3]) == after

        t0 = time.monotonic()
        old_host_comes_back(vf, names)
        t_back = time.monotonic() - t0

        # C is up: refused without pv_failover_fence_stop; with it, C's VM is powered off through the
        # API (the emulation then kills C's guest), and only then the disk is detached from it
        c_vols = {h3: vols[h3]}
        res = vf.failover(h3, h2, c_vols).assert_failed()
        assert 'fence_stop' in res.stdout and container_running(fleet.lab, h3), res.summary()
        t0 = time.monotonic()
        with AttachmentWatch(vsphere_reader(vf.vcsim, [vmdk(s1)])) as watch:
            res = vf.failover(h3, h2, c_vols, {'pv_failover_fence_stop': True}).assert_ok()
        t_fence = time.monotonic() - t0
        assert watch.max_attached == 1 and watch.seen[vmdk(s1)][-1] == (vf.vms[h2].name,), watch.seen
        vf.created[h3].pop(s1)
        vf.created[h2][s1] = 'vsphere'
        assert vf.lv.power_state(h3) == 'poweredOff' and not container_running(fleet.lab, h3)
        killed = [t for t, ev, _f, h in vf.lv.events if ev == 'killed' and h == h3]
        left_c = [t for t, ev, f, h in vf.lv.events if ev == 'unpublish' and h == h3 and f == s1 + '-flat.vmdk']
        assert killed and left_c and killed[0] <= left_c[0], vf.lv.events   # C was dead before the detach
        assert read_back(fleet, h2, s1) == 'fsynced-on-C'
        print('failover of 5 vsphere disks: %.1f s; floor (pyvmomi detach+attach of the same disks): %.2f s; '
              'ratio %.0f; fence_stop failover of 1 disk: %.1f s; A back (reboot, site.yml, re-run): %.1f s'
              % (t_failover, t_floor, t_failover / t_floor, t_fence, t_back))
    finally:
        for host in (h1, h3):                # A and C are replaced by fresh hosts: nothing of them to clean
            if host == h1 and host not in vf.lv.down and 'booted' in [ev for _t, ev, _f, h in vf.lv.events if h == h1]:
                continue                     # A came back: its records are cleaned by the module's clean-up
            vf.abandoned += [vmdk(n) for n, b in vf.created.pop(host, {}).items() if b == 'vsphere']
            vf.abandoned += [vmdk(foreign)] if host == h1 else []
            if host in vf.lv.down:
                vf.lv.guest_replaced(host)
    assert vf.lv.errors == [], vf.lv.errors


def test_two_controllers_run_site_for_the_same_host_at_once_vsphere(vs_fleet):
    """Two ansible-playbook processes (two controllers) run site.yml for the same host with new vSphere
    disks, started together: never a duplicate VMDK or a disk attached twice, the host side is
    serialized (the host's state lock), nothing lost; re-run changed=0."""
    vf, fleet, uid = vs_fleet, vs_fleet.fleet, vs_fleet.uid
    h2 = vf.hosts[1]
    names = ['%s-c%d' % (uid, i) for i in range(2)]
    vols = {h2: [{'name': n, 'backend': 'vsphere', 'size': '64MiB'} for n in names]}
    vf.created.setdefault(h2, {}).update((n, 'vsphere') for n in names)
    invs = [vf.inventory(vols) for _i in range(2)]
    dirs = [fleet.runner._rundir() for _i in range(2)]   # pylint: disable=protected-access
    results = [None, None]
    start = threading.Barrier(2)

    def controller(i):
        start.wait()
        results[i] = fleet.runner.run_playbook(SITE_YML, inventory=invs[i], limit=h2, args=['--forks', '3'],
                                               _rundir=dirs[i])
    threads = [threading.Thread(target=controller, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    for res in results:
        res.assert_ok()
    said = ' '.join(' '.join(r.stdout + r.stderr for r in results).split())
    raced = said.count('at the same time')
    # one VMDK per name (descriptor, extent, marker), attached to B's VM only, once
    disks = vf.disks()
    for n in names:
        assert disks.get(vmdk(n)) == [vf.vms[h2].name], disks
    files = [f for f in vf.files() if f.startswith(tuple(names))]
    assert sorted(files) == sorted(n + suffix for n in names for suffix in ('.vmdk', '-flat.vmdk', '.pv.json')), files
    # the vSphere calls of both runs: each disk created by one run only
    made = [r['item']['name'] for res in results
            for r in res.result('Create, grow or attach the vSphere disks to this host\'s VM', h2)['results']
            if any(a.startswith('create ') for a in r['actions'])]
    assert sorted(made) == sorted(names), made
    fstab = fleet.sh(h2, 'cat /etc/fstab')
    for n in names:
        mp = MNT + n
        assert fstab.count(' %s ' % mp) == 1, fstab
        assert fleet.sh(h2, 'findmnt -n -o TARGET %s' % mp).strip() == mp
        write(fleet, h2, n, 'two-controllers-' + n)
        assert read_back(fleet, h2, n) == 'two-controllers-' + n
    res = vf.site(vols, limit=h2).assert_ok()
    assert per_host(res, 'changed')[h2] == 0, res.summary()
    assert vf.lv.errors == [], vf.lv.errors
    print('two controllers at once (vsphere): %d concurrent attach(es) settled' % raced)
