# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Helpers for the vSphere tests (import as ``pv_vsphere_support``; conftest registers it)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from pyVmomi import vim

DATASTORE = 'LocalDS_0'
FOLDER = 'persistent-volumes'


def create_vm(client, name, controllers=(('pvscsi', 0),), power_on=True, extra_config=None):
    dc = client.datacenter('DC0')
    host = [o for o, p in client.all_props(vim.HostSystem, ['name'], root=dc.hostFolder)
            if p['name'] == 'DC0_H0'][0]
    pool = host.parent.resourcePool
    changes = []
    for i, (ctype, bus) in enumerate(controllers):
        cls = {'pvscsi': vim.vm.device.ParaVirtualSCSIController,
               'lsilogic': vim.vm.device.VirtualLsiLogicController}[ctype]
        changes.append(vim.vm.device.VirtualDeviceSpec(
            operation='add', device=cls(key=-10 - i, busNumber=bus, sharedBus='noSharing')))
    spec = vim.vm.ConfigSpec(name=name, guestId='otherLinux64Guest', numCPUs=1, memoryMB=128,
                             files=vim.vm.FileInfo(vmPathName='[%s]' % DATASTORE), deviceChange=changes)
    if extra_config:
        spec.extraConfig = [vim.option.OptionValue(key=k, value=v) for k, v in extra_config]
    vm = client.wait(dc.vmFolder.CreateVM_Task(config=spec, pool=pool), 'creating VM %s' % name)
    if power_on:
        client.wait(vm.PowerOnVM_Task(), 'powering on %s' % name)
    return vm


def destroy_vm(client, vm):
    try:
        if vm.runtime.powerState == 'poweredOn':
            client.wait(vm.PowerOffVM_Task(), 'powering off')
        # detach our disks first so destroying the VM never deletes more than the test's files
        removes = [vim.vm.device.VirtualDeviceSpec(operation='remove', device=d)
                   for d in vm.config.hardware.device if isinstance(d, vim.vm.device.VirtualDisk)]
        if removes:
            client.wait(vm.ReconfigVM_Task(vim.vm.ConfigSpec(deviceChange=removes)), 'detaching disks')
        client.wait(vm.Destroy_Task(), 'destroying VM')
    except vim.fault.NotFound:
        pass


def remove_files(client, prefix):
    """Delete every file named ``prefix*`` in the volume folder (VMDKs through the disk manager)."""
    dc = client.datacenter('DC0')
    ds = client.find_datastore(DATASTORE, dc)
    files = client.search(ds, FOLDER, [prefix + '*'])
    for name in sorted(files):
        path = '[%s] %s/%s' % (DATASTORE, FOLDER, name)
        if name.endswith('.vmdk') and not name.endswith('-flat.vmdk'):
            client.wait(client.content.virtualDiskManager.DeleteVirtualDisk_Task(name=path, datacenter=dc),
                        'deleting %s' % path)
    for name in sorted(client.search(ds, FOLDER, [prefix + '*'])):
        client.delete_file('[%s] %s/%s' % (DATASTORE, FOLDER, name), dc)


def datastore_dir(client):
    dc = client.datacenter('DC0')
    return client.find_datastore(DATASTORE, dc).summary.url
