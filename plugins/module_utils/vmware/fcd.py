# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""First Class Disks (vSphere 6.5+ VStorageObjectManager): create, list, delete, extend,
attach, detach.

Servers that lack one of the calls (the govmomi simulator has no ExtendDisk_Task,
AttachDisk_Task, DetachDisk_Task) answer with ``MethodNotFound``; that becomes a
:class:`common.PVError` naming the missing vSphere API, with nothing changed.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ..common import PVError, human_size
from . import client as vc
from . import disk as vd
MIB = 1024 * 1024
PROVISIONING = {'thin': 'thin', 'thick': 'lazyZeroedThick', 'eagerzeroed': 'eagerZeroedThick'}
_PROVISIONING_BACK = dict((v, k) for k, v in PROVISIONING.items())


def _missing(client, api, purpose):
    return PVError('this vSphere server (%s) does not implement %s, which is needed to %s; '
                   'nothing was changed' % (client.server_name, api, purpose))


def describe(obj, datastore_name):
    cfg = obj.config
    backing = cfg.backing
    return {
        'id': cfg.id.id,
        'name': cfg.name,
        'datastore': datastore_name,
        'filename': getattr(backing, 'filePath', None),
        'size': int(cfg.capacityInMB or 0) * MIB,
        'size_human': human_size(int(cfg.capacityInMB or 0) * MIB) if cfg.capacityInMB else '0B',
        'provisioning': _PROVISIONING_BACK.get(getattr(backing, 'provisioningType', None),
                                               getattr(backing, 'provisioningType', None)),
        'attached_to': [c.id for c in (getattr(cfg, 'consumerId', None) or [])],
        'keep_after_delete_vm': bool(getattr(cfg, 'keepAfterDeleteVm', False)),
        'created': cfg.createTime.isoformat() if getattr(cfg, 'createTime', None) else None,
    }


class FcdManager(object):
    def __init__(self, client, datacenter):
        self.client = client
        self.dc = datacenter
        self.mgr = client.content.vStorageObjectManager
        if self.mgr is None:
            raise _missing(client, 'VcenterVStorageObjectManager', 'manage First Class Disks')

    def datastores(self, name=None):
        if name:
            return [self.client.find_datastore(name, self.dc)]
        return list(self.dc.datastore)

    def list(self, datastore=None):
        """Every FCD on the datastore(s): ``[(dict, datastore_obj)]``."""
        out = []
        for ds in self.datastores(datastore):
            try:
                ids = self.mgr.ListVStorageObject(ds) or []
            except vc.vmodl.MethodFault as exc:
                if vc.is_method_not_found(exc):
                    raise _missing(self.client, 'VStorageObjectManager.ListVStorageObject',
                                   'list First Class Disks')
                raise PVError('listing First Class Disks on %s failed: %s' % (ds.name, vc.fault_text(exc)))
            for fid in ids:
                try:
                    obj = self.mgr.RetrieveVStorageObject(fid, ds)
                except vc.vim.fault.NotFound:
                    continue
                out.append((describe(obj, ds.name), ds))
        return out

    def find(self, name=None, disk_id=None, datastore=None):
        """The one FCD with that id or name, ``(dict, datastore_obj)``, or None."""
        found = [(d, ds) for d, ds in self.list(datastore)
                 if (disk_id and d['id'] == disk_id) or (not disk_id and d['name'] == name)]
        if len(found) > 1:
            raise PVError('%d First Class Disks are named %r (%s): use disk_id'
                          % (len(found), name, ', '.join(d['id'] for d, _ds in found)))
        return found[0] if found else None

    def create(self, name, size, datastore, provisioning='thin'):
        ds = self.client.find_datastore(datastore, self.dc)
        spec = vc.vim.vslm.CreateSpec(
            name=name, capacityInMB=size // MIB, keepAfterDeleteVm=True,
            backingSpec=vc.vim.vslm.CreateSpec.DiskFileBackingSpec(
                datastore=ds, provisioningType=PROVISIONING[provisioning]))
        try:
            obj = self.client.call('creating First Class Disk %s' % name, self.mgr.CreateDisk_Task, spec)
        except vc.vmodl.MethodFault as exc:
            if vc.is_method_not_found(exc):
                raise _missing(self.client, 'VStorageObjectManager.CreateDisk_Task', 'create a First Class Disk')
            raise
        return describe(obj, ds.name)

    def delete(self, disk, ds):
        try:
            self.client.call('deleting First Class Disk %s' % disk['id'], self.mgr.DeleteVStorageObject_Task,
                             vc.vim.vslm.ID(id=disk['id']), ds)
        except vc.vmodl.MethodFault as exc:
            if vc.is_method_not_found(exc):
                raise _missing(self.client, 'VStorageObjectManager.DeleteVStorageObject_Task',
                               'delete a First Class Disk')
            raise

    def extend(self, disk, ds, size):
        try:
            self.client.call('extending First Class Disk %s' % disk['id'], self.mgr.ExtendDisk_Task,
                             vc.vim.vslm.ID(id=disk['id']), ds, size // MIB)
        except vc.vmodl.MethodFault as exc:
            if vc.is_method_not_found(exc):
                raise _missing(self.client, 'VStorageObjectManager.ExtendDisk_Task', 'grow a First Class Disk')
            raise

    def attach(self, disk, ds, vm, controller_key=None, unit_number=None):
        kwargs = {'diskId': vc.vim.vslm.ID(id=disk['id']), 'datastore': ds}
        if controller_key is not None:
            kwargs['controllerKey'] = controller_key
        if unit_number is not None:
            kwargs['unitNumber'] = unit_number
        try:
            self.client.call('attaching First Class Disk %s' % disk['id'], vm.AttachDisk_Task, **kwargs)
        except vc.vmodl.MethodFault as exc:
            if vc.is_method_not_found(exc):
                raise _missing(self.client, 'VirtualMachine.AttachDisk_Task', 'attach a First Class Disk')
            raise

    def detach(self, disk, vm):
        try:
            self.client.call('detaching First Class Disk %s' % disk['id'], vm.DetachDisk_Task,
                             vc.vim.vslm.ID(id=disk['id']))
        except vc.vmodl.MethodFault as exc:
            if vc.is_method_not_found(exc):
                raise _missing(self.client, 'VirtualMachine.DetachDisk_Task', 'detach a First Class Disk')
            raise


def attached_vm_fcds(client, vm):
    """FCD ids attached to ``vm`` (disks whose ``vDiskId`` is set)."""
    ids = set()
    props = client.props([vm], vc.vim.VirtualMachine, ['config.hardware.device'])[vm._moId]
    for dev in props.get('config.hardware.device') or []:
        vdisk = getattr(dev, 'vDiskId', None)
        if isinstance(dev, vc.vim.vm.device.VirtualDisk) and vdisk is not None:
            ids.add(vdisk.id)
    return ids


def ensure_fcd(client, want, check_mode=False):
    """The vsphere_fcd module's logic. ``want``: state (present/absent/list), name, disk_id,
    datacenter, datastore, size (bytes), provisioning, vm (VirtualMachine or None),
    attached (None/True/False)."""
    dc = client.datacenter_of(want['vm']) if want.get('vm') is not None else client.datacenter(want.get('datacenter'))
    mgr = FcdManager(client, dc)
    if want['state'] == 'list':
        disks = [d for d, _ds in mgr.list(want.get('datastore'))
                 if not want.get('name') or d['name'] == want['name']]
        return {'changed': False, 'disks': disks, 'actions': []}
    size = vd.round_size(want.get('size')) if want.get('size') else None
    found = mgr.find(want.get('name'), want.get('disk_id'), want.get('datastore'))
    disk, ds = found if found else (None, None)
    before = dict(disk) if disk else {}
    actions = []
    vm = want.get('vm')
    attached_here = False
    if disk is not None and vm is not None:
        attached_here = disk['id'] in attached_vm_fcds(client, vm)
    if want['state'] == 'present':
        if disk is None:
            if want.get('disk_id'):
                raise PVError('First Class Disk %s not found' % want['disk_id'])
            if not want.get('datastore') or not size:
                raise PVError('datastore and size are required to create First Class Disk %s' % want['name'])
            actions.append('create %s First Class Disk %s on %s' % (human_size(size), want['name'], want['datastore']))
            if not check_mode:
                disk = mgr.create(want['name'], size, want['datastore'], want.get('provisioning') or 'thin')
                ds = client.find_datastore(want['datastore'], dc)
            else:
                disk = {'id': None, 'name': want['name'], 'datastore': want['datastore'], 'size': size,
                        'size_human': human_size(size), 'provisioning': want.get('provisioning') or 'thin',
                        'attached_to': []}
        elif size is not None:
            if size < disk['size']:
                raise PVError('refusing to shrink First Class Disk %s from %s to %s'
                              % (disk['name'], disk['size_human'], human_size(size)))
            if size > disk['size']:
                actions.append('extend First Class Disk %s from %s to %s'
                               % (disk['name'], disk['size_human'], human_size(size)))
                if not check_mode:
                    mgr.extend(disk, ds, size)
                disk = dict(disk, size=size, size_human=human_size(size))
        if want.get('attached') is not None:
            if vm is None:
                raise PVError('attached needs vm_name, vm_uuid or vm_moid')
            if want['attached'] and not attached_here:
                others = disk.get('attached_to') or []
                if others:
                    raise PVError('First Class Disk %s is attached to %s; detach it there first'
                                  % (disk['name'], ', '.join(others)))
                actions.append('attach First Class Disk %s to VM %s' % (disk['name'], vm.name))
                if not check_mode:
                    mgr.attach(disk, ds, vm)
                    disk = mgr.find(disk_id=disk['id'])[0]
            elif not want['attached'] and attached_here:
                actions.append('detach First Class Disk %s from VM %s' % (disk['name'], vm.name))
                if not check_mode:
                    mgr.detach(disk, vm)
                    disk = mgr.find(disk_id=disk['id'])[0]
    else:   # absent
        if disk is not None:
            users = list(disk.get('attached_to') or [])
            if attached_here or users:
                raise PVError('refusing to delete First Class Disk %s: it is attached to %s; detach it first'
                              % (disk['name'], ', '.join(users or [vm.name])))
            actions.append('delete First Class Disk %s (%s)' % (disk['name'], disk['id']))
            if not check_mode:
                mgr.delete(disk, ds)
            disk = None
    return {'changed': bool(actions), 'actions': actions, 'disk': disk or {},
            'diff': {'before': before, 'after': dict(disk) if disk else {}}}
