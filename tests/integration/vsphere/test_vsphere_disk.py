# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""vsphere_disk against the govmomi simulator: every case checks vSphere's own view afterwards."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os

from pyVmomi import vim

from pv_vsphere_support import DATASTORE, FOLDER, create_vm, datastore_dir, destroy_vm, remove_files  # pylint: disable=import-error

MIB = 1024 * 1024
MOD = 'persistent_volumes.docker.vsphere_disk'


def disks_of(vm):
    out = {}
    for dev in vm.config.hardware.device:
        if isinstance(dev, vim.vm.device.VirtualDisk):
            ctrl = [c for c in vm.config.hardware.device if c.key == dev.controllerKey][0]
            out[dev.backing.fileName] = {
                'size': dev.capacityInBytes or dev.capacityInKB * 1024, 'unit': dev.unitNumber,
                'bus': ctrl.busNumber, 'ctype': type(ctrl).__name__, 'mode': dev.backing.diskMode}
    return out


def files(vs, uid):
    path = os.path.join(datastore_dir(vs), FOLDER)
    return sorted(f for f in os.listdir(path) if f.startswith(uid)) if os.path.isdir(path) else []


def task(args, name='disk', **extra):
    t = {'name': name, MOD: args}
    t.update(extra)
    return t


def test_lifecycle_add_rerun_check_grow_detach_reattach_destroy(ansible, vs, vsphere_auth, test_vm, uid):
    base = dict(vsphere_auth, vm_name=test_vm.name, disk_name=uid + '-d1', datastore=DATASTORE)
    path = '[%s] %s/%s-d1.vmdk' % (DATASTORE, FOLDER, uid)

    # check mode: reports the plan, changes nothing
    r = ansible.run([task(dict(base, size='64MiB'))], check=True, diff=True)
    r.assert_changed()
    res = r.result('disk')
    assert res['disk']['unit_number'] == 0 and res['disk']['controller_bus'] == 0
    assert res['diff']['before']['attached'] is False and res['diff']['after']['attached'] is True
    assert disks_of(test_vm) == {} and files(vs, uid) == []

    # add
    r = ansible.run([task(dict(base, size='64MiB'))], diff=True)
    r.assert_changed()
    res = r.result('disk')
    assert res['disk']['filename'] == path and res['disk']['size'] == 64 * MIB and res['disk']['owned']
    assert any('power' in w for w in res.get('warnings', [])), res.get('warnings')
    assert disks_of(test_vm) == {path: {'size': 64 * MIB, 'unit': 0, 'bus': 0,
                                        'ctype': 'vim.vm.device.ParaVirtualSCSIController',
                                        'mode': 'independent_persistent'}}
    assert files(vs, uid) == [uid + '-d1-flat.vmdk', uid + '-d1.pv.json', uid + '-d1.vmdk']
    marker = json.load(open(os.path.join(datastore_dir(vs), FOLDER, uid + '-d1.pv.json')))
    assert marker['managed_by'] == 'persistent_volumes.docker' and marker['size'] == 64 * MIB

    # re-run: no change; check mode of the same: no change
    ansible.run([task(dict(base, size='64MiB'))]).assert_unchanged()
    ansible.run([task(dict(base, size='64MiB'))], check=True).assert_unchanged()

    # grow: check mode first (nothing changes), then for real
    ansible.run([task(dict(base, size='128MiB'))], check=True).assert_changed()
    assert disks_of(test_vm)[path]['size'] == 64 * MIB
    r = ansible.run([task(dict(base, size='128MiB'))], diff=True)
    r.assert_changed()
    assert r.result('disk')['diff']['before']['size'] == 64 * MIB
    assert r.result('disk')['diff']['after']['size'] == 128 * MIB
    assert disks_of(test_vm)[path]['size'] == 128 * MIB
    ansible.run([task(dict(base, size='128MiB'))]).assert_unchanged()

    # shrink is refused by our code (the simulator would accept it), nothing changed
    r = ansible.run([task(dict(base, size='32MiB'))])
    r.assert_failed()
    assert 'refusing to shrink' in r.result('disk')['msg']
    assert disks_of(test_vm)[path]['size'] == 128 * MIB

    # detach keeps the VMDK (and its marker)
    r = ansible.run([task(dict(base, state='absent'))], diff=True)
    r.assert_changed()
    assert r.result('disk')['diff']['after']['attached'] is False
    assert r.result('disk')['diff']['after']['file_exists'] is True
    assert disks_of(test_vm) == {}
    assert files(vs, uid) == [uid + '-d1-flat.vmdk', uid + '-d1.pv.json', uid + '-d1.vmdk']
    ansible.run([task(dict(base, state='absent'))]).assert_unchanged()

    # reattach by path (filename), size known from the marker
    byfile = dict(vsphere_auth, vm_name=test_vm.name, filename=path)
    ansible.run([task(byfile)], check=True).assert_changed()
    assert disks_of(test_vm) == {}
    r = ansible.run([task(byfile)])
    r.assert_changed()
    assert disks_of(test_vm)[path]['size'] == 128 * MIB
    assert r.result('disk')['disk']['size'] == 128 * MIB
    ansible.run([task(byfile)]).assert_unchanged()

    # destroy: check mode keeps everything, then detach + destroy both files and the marker
    ansible.run([task(dict(base, state='absent', destroy=True))], check=True).assert_changed()
    assert path in disks_of(test_vm) and len(files(vs, uid)) == 3
    ansible.run([task(dict(base, state='absent', destroy=True))]).assert_changed()
    assert disks_of(test_vm) == {} and files(vs, uid) == []
    ansible.run([task(dict(base, state='absent', destroy=True))]).assert_unchanged()


def test_destroy_detached_disk(ansible, vs, vsphere_auth, test_vm, uid):
    base = dict(vsphere_auth, vm_name=test_vm.name, disk_name=uid + '-d2', datastore=DATASTORE)
    ansible.run([task(dict(base, size='16MiB')), task(dict(base, state='absent'), name='detach')]).assert_ok()
    assert len(files(vs, uid)) == 3 and disks_of(test_vm) == {}
    ansible.run([task(dict(base, state='absent', destroy=True))]).assert_changed()
    assert files(vs, uid) == []


def test_occupied_unit_unit7_and_missing_path_are_refused(ansible, vs, vsphere_auth, test_vm, uid):
    base = dict(vsphere_auth, vm_name=test_vm.name, datastore=DATASTORE, size='16MiB')
    ansible.run([task(dict(base, disk_name=uid + '-a', controller_number=0, unit_number=3))]).assert_changed()
    before = disks_of(test_vm)

    r = ansible.run([task(dict(base, disk_name=uid + '-b', controller_number=0, unit_number=3))])
    r.assert_failed()
    assert 'SCSI(0:3)' in r.result('disk')['msg'] and 'occupied' in r.result('disk')['msg']

    r = ansible.run([task(dict(base, disk_name=uid + '-b', unit_number=7))])
    r.assert_failed()
    assert 'unit number 7 is reserved' in r.result('disk')['msg']

    missing = '[%s] %s/%s-nothere.vmdk' % (DATASTORE, FOLDER, uid)
    r = ansible.run([task(dict(vsphere_auth, vm_name=test_vm.name, filename=missing))])
    r.assert_failed()
    assert 'does not exist' in r.result('disk')['msg'] and missing in r.result('disk')['msg']

    r = ansible.run([task(dict(vsphere_auth, vm_name=test_vm.name, filename='not a path'))])
    r.assert_failed()
    assert 'datastore path' in r.result('disk')['msg']

    assert disks_of(test_vm) == before
    assert uid + '-b.vmdk' not in files(vs, uid)


def test_auto_placement_skips_unit7_and_adds_a_controller_when_full(ansible, vs, vsphere_auth, test_vm, uid):
    # fill bus 0 (units 0-15 except 7) directly through the API
    ctrl = [d for d in test_vm.config.hardware.device if isinstance(d, vim.vm.device.ParaVirtualSCSIController)][0]
    specs = []
    for i, unit in enumerate(u for u in range(16) if u != 7):
        backing = vim.vm.device.VirtualDisk.FlatVer2BackingInfo(
            fileName='[%s] %s/%s-fill%d.vmdk' % (DATASTORE, FOLDER, uid, unit), diskMode='persistent',
            thinProvisioned=True)
        specs.append(vim.vm.device.VirtualDeviceSpec(
            operation='add', fileOperation='create', device=vim.vm.device.VirtualDisk(
                key=-100 - i, controllerKey=ctrl.key, unitNumber=unit, capacityInKB=1024, backing=backing)))
    vs.mkdir('[%s] %s' % (DATASTORE, FOLDER), vs.datacenter('DC0'))
    vs.wait(test_vm.ReconfigVM_Task(vim.vm.ConfigSpec(deviceChange=specs)), 'fill')
    assert sorted(d['unit'] for d in disks_of(test_vm).values()) == [u for u in range(16) if u != 7]

    base = dict(vsphere_auth, vm_name=test_vm.name, datastore=DATASTORE, size='16MiB')
    r = ansible.run([task(dict(base, disk_name=uid + '-x'))])
    r.assert_changed()
    assert 'add pvscsi SCSI controller 1' in r.result('disk')['actions']
    d = disks_of(test_vm)['[%s] %s/%s-x.vmdk' % (DATASTORE, FOLDER, uid)]
    assert (d['bus'], d['unit']) == (1, 0)
    # an lsilogic disk goes to a new lsilogic controller on the next free bus
    r = ansible.run([task(dict(base, disk_name=uid + '-y', controller_type='lsilogic'))])
    r.assert_changed()
    d = disks_of(test_vm)['[%s] %s/%s-y.vmdk' % (DATASTORE, FOLDER, uid)]
    assert (d['bus'], d['unit'], d['ctype']) == (2, 0, 'vim.vm.device.VirtualLsiLogicController')
    # the next pvscsi disk fills bus 1
    r = ansible.run([task(dict(base, disk_name=uid + '-z'))])
    d = disks_of(test_vm)['[%s] %s/%s-z.vmdk' % (DATASTORE, FOLDER, uid)]
    assert (d['bus'], d['unit']) == (1, 1)


def test_enable_uuid_set_once_without_duplicates(ansible, vs, vsphere_auth, uid):
    vm = create_vm(vs, uid + '-vmu', extra_config=[('disk.EnableUUID', 'FALSE')])
    try:
        base = dict(vsphere_auth, vm_name=vm.name, datastore=DATASTORE, size='16MiB')
        for i in range(3):
            ansible.run([task(dict(base, disk_name='%s-u%d' % (uid, i)))]).assert_changed()
        entries = [o.value for o in vm.config.extraConfig if o.key == 'disk.EnableUUID']
        # the simulator appends instead of replacing: FALSE (ours never) + one TRUE written once
        assert entries == ['FALSE', 'TRUE'], entries
        r = ansible.run([task(dict(base, disk_name=uid + '-u0'))])
        r.assert_unchanged()
        assert r.result('disk')['enable_uuid'] == 'TRUE'
        assert [o.value for o in vm.config.extraConfig if o.key == 'disk.EnableUUID'] == ['FALSE', 'TRUE']
        # enable_uuid: false leaves the VM alone
        vm2 = create_vm(vs, uid + '-vmv', power_on=False)
        try:
            r = ansible.run([task(dict(base, vm_name=vm2.name, disk_name=uid + '-v0', enable_uuid=False))])
            r.assert_changed()
            assert not [o for o in vm2.config.extraConfig if o.key == 'disk.EnableUUID']
            r = ansible.run([task(dict(base, vm_name=vm2.name, disk_name=uid + '-v0'))])
            r.assert_changed()
            assert [o.value for o in vm2.config.extraConfig if o.key == 'disk.EnableUUID'] == ['TRUE']
            assert not r.result('disk').get('warnings')     # powered off: no power-cycle warning
        finally:
            destroy_vm(vs, vm2)
    finally:
        destroy_vm(vs, vm)
        remove_files(vs, uid)


def test_detach_keeps_foreign_disk_and_refuses_to_destroy_it(ansible, vs, vsphere_auth, test_vm, uid):
    # a disk created outside this collection: no marker
    foreign = '[%s] %s/%s-foreign.vmdk' % (DATASTORE, FOLDER, uid)
    vs.mkdir('[%s] %s' % (DATASTORE, FOLDER), vs.datacenter('DC0'))
    ctrl = [d for d in test_vm.config.hardware.device if isinstance(d, vim.vm.device.ParaVirtualSCSIController)][0]
    disk = vim.vm.device.VirtualDisk(key=-1, controllerKey=ctrl.key, unitNumber=5, capacityInKB=1024,
                                     backing=vim.vm.device.VirtualDisk.FlatVer2BackingInfo(
                                         fileName=foreign, diskMode='persistent', thinProvisioned=True))
    vs.wait(test_vm.ReconfigVM_Task(vim.vm.ConfigSpec(deviceChange=[vim.vm.device.VirtualDeviceSpec(
        operation='add', fileOperation='create', device=disk)])), 'foreign disk')
    args = dict(vsphere_auth, vm_name=test_vm.name, filename=foreign, state='absent', destroy=True)
    r = ansible.run([task(args)])
    r.assert_failed()
    assert 'refusing to destroy' in r.result('disk')['msg'] and 'ownership marker' in r.result('disk')['msg']
    assert foreign in disks_of(test_vm)
    # plain detach is fine and keeps the file
    ansible.run([task(dict(args, destroy=False))]).assert_changed()
    assert foreign not in disks_of(test_vm)
    assert uid + '-foreign.vmdk' in files(vs, uid)


def test_disk_attached_elsewhere_is_not_attached_twice(ansible, vs, vsphere_auth, test_vm, uid):
    other = create_vm(vs, uid + '-other')
    try:
        base = dict(vsphere_auth, datastore=DATASTORE, disk_name=uid + '-s', size='16MiB')
        ansible.run([task(dict(base, vm_name=other.name))]).assert_changed()
        r = ansible.run([task(dict(base, vm_name=test_vm.name))])
        r.assert_failed()
        assert 'is attached to VM %s' % other.name in r.result('disk')['msg']
        assert disks_of(test_vm) == {}
    finally:
        destroy_vm(vs, other)


def test_auth_from_environment_and_bad_password(ansible, vcsim, test_vm, uid):
    env = dict(vcsim['env'])
    args = {'vm_name': test_vm.name, 'datastore': DATASTORE, 'disk_name': uid + '-e', 'size': '16MiB'}
    r = ansible.run([task(args)], env=env)
    r.assert_changed()
    bad = dict(env, VMWARE_PASSWORD='not-the-pass')
    r = ansible.run([task(args)], env=bad)
    r.assert_failed()
    assert 'rejected the user name or password' in r.result('disk')['msg']
    r = ansible.run([task(dict(args, validate_certs=True))], env=env)
    r.assert_failed()
    assert 'validate_certs' in r.result('disk')['msg']      # self-signed: clear hint


def test_two_runs_create_the_same_disk_at_once(vcsim, vs, test_vm, uid):
    """Two runs (two controllers, each its own vSphere session) create one disk at the same instant, then
    two different disks (the same free SCSI unit planned by both): each name ends as ONE VMDK, attached
    once; the run that lost the race uses what the other attached (unchanged, a warning), or places its
    own disk again; nothing fails."""
    import threading
    from ansible_collections.persistent_volumes.docker.plugins.module_utils.vmware import client as vc
    from ansible_collections.persistent_volumes.docker.plugins.module_utils.vmware import disk as vd

    def want(name):
        return dict(state='present', filename='[%s] %s/%s.vmdk' % (DATASTORE, FOLDER, name), create=True,
                    name=name, size=64 * MIB, provisioning='thin', disk_mode=None, controller_type='pvscsi',
                    controller_bus=None, unit_number=None, destroy=False, enable_uuid=True, force_detach=False,
                    fencing=True, fence_stop=False)
    keys = ('hostname', 'port', 'username', 'password', 'validate_certs')
    base = len(test_vm.config.hardware.device)
    raced = 0
    made = []
    for names in ([uid + '-same'] * 2, [uid + '-one', uid + '-two']):
        clients = [vc.VSphere(dict((k, vcsim[k]) for k in keys)).connect() for _i in range(2)]
        out = [None, None]
        start = threading.Barrier(2)

        def run(i):
            start.wait()
            try:
                out[i] = vd.ensure_disk(clients[i], vim.VirtualMachine(test_vm._moId, clients[i].si._stub), want(names[i]))
            except Exception as exc:  # pylint: disable=broad-except
                out[i] = exc
        threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        for c in clients:
            c.close()
        assert all(isinstance(r, dict) for r in out), out
        raced += sum(1 for r in out if any('at the same time' in w for w in r['warnings']))
        created = [r['disk']['filename'] for r in out if any(a.startswith('create ') for a in r['actions'])]
        assert sorted(created) == sorted(set(want(n)['filename'] for n in names)), out
        made += created
        attached = [f for f in disks_of(test_vm) if uid in f]        # each once (a dict: one entry per file)
        assert sorted(attached) == sorted(made) and len(test_vm.config.hardware.device) == base + len(made), attached
    assert files(vs, uid) == sorted(uid + n + s for n in ('-one', '-same', '-two')
                                    for s in ('-flat.vmdk', '.pv.json', '.vmdk'))
    print('two runs at once: %d lost a race and settled' % raced)
