# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""vsphere_fcd against the govmomi simulator (which implements create/list/retrieve/delete only)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from pv_vsphere_support import DATASTORE  # pylint: disable=import-error

MOD = 'persistent_volumes.docker.vsphere_fcd'
MIB = 1024 * 1024


def task(args, name='fcd'):
    return {'name': name, MOD: args}


def fcds(vs, name):
    mgr = vs.content.vStorageObjectManager
    ds = vs.find_datastore(DATASTORE, vs.datacenter('DC0'))
    out = []
    for fid in mgr.ListVStorageObject(ds) or []:
        obj = mgr.RetrieveVStorageObject(fid, ds)
        if obj.config.name == name:
            out.append(obj)
    return out


def test_create_list_delete(ansible, vs, vsphere_auth, uid):
    name = uid + '-fcd'
    args = dict(vsphere_auth, name=name, datastore=DATASTORE, size='32MiB')
    try:
        r = ansible.run([task(args)], check=True, diff=True)
        r.assert_changed()
        assert fcds(vs, name) == []

        r = ansible.run([task(args)], diff=True)
        r.assert_changed()
        disk = r.result('fcd')['disk']
        assert disk['name'] == name and disk['size'] == 32 * MIB and disk['provisioning'] == 'thin'
        assert disk['filename'].startswith('[%s] ' % DATASTORE)
        objs = fcds(vs, name)
        assert len(objs) == 1 and objs[0].config.id.id == disk['id'] and objs[0].config.capacityInMB == 32

        ansible.run([task(args)]).assert_unchanged()
        ansible.run([task(dict(args, size=None))]).assert_unchanged()

        r = ansible.run([task(dict(vsphere_auth, datastore=DATASTORE))])
        r.assert_unchanged()
        assert disk['id'] in [d['id'] for d in r.result('fcd')['disks']]
        assert [d for d in r.result('fcd')['disks'] if d['id'] == disk['id']][0]['name'] == name
        r = ansible.run([task(dict(vsphere_auth, datacenter='DC0'))])
        assert disk['id'] in [d['id'] for d in r.result('fcd')['disks']]

        r = ansible.run([task(dict(args, size='16MiB'))])
        r.assert_failed()
        assert 'refusing to shrink' in r.result('fcd')['msg']

        ansible.run([task(dict(vsphere_auth, disk_id=disk['id'], state='absent'))], check=True).assert_changed()
        assert len(fcds(vs, name)) == 1
        ansible.run([task(dict(vsphere_auth, disk_id=disk['id'], state='absent'))]).assert_changed()
        assert fcds(vs, name) == []
        ansible.run([task(dict(vsphere_auth, name=name, state='absent'))]).assert_unchanged()
    finally:
        for obj in fcds(vs, name):
            ds = vs.find_datastore(DATASTORE, vs.datacenter('DC0'))
            vs.wait(vs.content.vStorageObjectManager.DeleteVStorageObject_Task(obj.config.id, ds), 'cleanup')


def test_unimplemented_calls_fail_clearly_and_change_nothing(ansible, vs, vsphere_auth, test_vm, uid):
    name = uid + '-fcd2'
    args = dict(vsphere_auth, name=name, datastore=DATASTORE, size='16MiB')
    try:
        ansible.run([task(args)]).assert_changed()

        r = ansible.run([task(dict(args, vm_name=test_vm.name, attached=True))])
        r.assert_failed()
        msg = r.result('fcd')['msg']
        assert 'does not implement VirtualMachine.AttachDisk_Task' in msg and 'nothing was changed' in msg
        assert not [d for d in test_vm.config.hardware.device if getattr(d, 'vDiskId', None)]

        r = ansible.run([task(dict(args, size='64MiB'))])
        r.assert_failed()
        assert 'does not implement VStorageObjectManager.ExtendDisk_Task' in r.result('fcd')['msg']
        assert fcds(vs, name)[0].config.capacityInMB == 16

        # detaching a disk that is not attached is a no-op (no API call needed)
        ansible.run([task(dict(args, vm_name=test_vm.name, attached=False))]).assert_unchanged()
        # check mode plans the attach without calling the server
        ansible.run([task(dict(args, vm_name=test_vm.name, attached=True))], check=True).assert_changed()

        r = ansible.run([task(dict(vsphere_auth, name=name + '-missing', state='present'))])
        r.assert_failed()
        assert 'datastore and size are required' in r.result('fcd')['msg']
    finally:
        for obj in fcds(vs, name):
            ds = vs.find_datastore(DATASTORE, vs.datacenter('DC0'))
            vs.wait(vs.content.vStorageObjectManager.DeleteVStorageObject_Task(obj.config.id, ds), 'cleanup')


def test_duplicate_names_need_an_id(ansible, vs, vsphere_auth, uid):
    name = uid + '-dup'
    ds = vs.find_datastore(DATASTORE, vs.datacenter('DC0'))
    from pyVmomi import vim
    for _i in range(2):
        spec = vim.vslm.CreateSpec(name=name, capacityInMB=8, backingSpec=vim.vslm.CreateSpec.DiskFileBackingSpec(
            datastore=ds, provisioningType='thin'))
        vs.wait(vs.content.vStorageObjectManager.CreateDisk_Task(spec), 'create')
    try:
        r = ansible.run([task(dict(vsphere_auth, name=name, state='absent'))])
        r.assert_failed()
        assert 'use disk_id' in r.result('fcd')['msg']
        assert len(fcds(vs, name)) == 2
    finally:
        for obj in fcds(vs, name):
            vs.wait(vs.content.vStorageObjectManager.DeleteVStorageObject_Task(obj.config.id, ds), 'cleanup')
