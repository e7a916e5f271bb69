# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Classic VMDKs on a VM: find, add, grow, detach, reattach, destroy (pyvmomi).

Used by the ``vsphere_disk`` module and the ``vsphere`` backend.

Ownership
    A VMDK is *ours* when an ownership marker sits next to it: for
    ``[ds] persistent-volumes/data1.vmdk`` the small JSON file
    ``[ds] persistent-volumes/data1.pv.json`` with
    ``{"managed_by": "persistent_volumes.docker", ...}``. The marker is written
    *before* the disk is created (an interrupted create leaves a marker
    without a disk, which the next run completes), and removed after the disk.
    It also records the size, which the govmomi simulator does not report for a
    detached disk. Only disks with a marker are ever destroyed.
    Named volumes live in ``[datastore] persistent-volumes/<name>.vmdk``.

Validation on our side (the simulator accepts all of these, vSphere does not):
no unit 7 (the controller's own), no shrinking, no zero size, no occupied unit.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import time

from ..common import AGAIN, InUse, PVError, Refused, TimedOut, human_size, poll
from . import client as vc
from .spec import CONTROLLER_TYPES, DEFAULT_FOLDER, DISK_MODES, PROVISIONING  # noqa: F401 pylint: disable=unused-import
from . import guest
MANAGED_BY = 'persistent_volumes.docker'
MARKER_SUFFIX = '.pv.json'
MIB = 1024 * 1024
MAX_BUS = 4            # SCSI controllers 0..3
MAX_UNIT = 16          # units 0..15 (7 is the controller's own)
CONTROLLER_UNIT = 7
ENABLE_UUID = 'disk.EnableUUID'


def _controller_classes():
    return {
        'pvscsi': vc.vim.vm.device.ParaVirtualSCSIController,
        'lsilogic': vc.vim.vm.device.VirtualLsiLogicController,
        'lsilogicsas': vc.vim.vm.device.VirtualLsiLogicSASController,
    }


def controller_type_of(device):
    for name, cls in _controller_classes().items():
        if isinstance(device, cls):
            return name
    if isinstance(device, vc.vim.vm.device.VirtualSCSIController):
        return 'scsi'       # BusLogic or another SCSI type we never create
    return None


def round_size(size):
    """Bytes -> bytes rounded up to whole MiB (VMDK and FCD capacities are in MiB)."""
    if size is None:
        return None
    size = int(size)
    if size <= 0:
        raise PVError('disk size must be greater than zero')
    return ((size + MIB - 1) // MIB) * MIB


def managed_path(datastore, name, folder=DEFAULT_FOLDER):
    folder = (folder or '').strip('/')
    return vc.ds_path(datastore, '%s/%s.vmdk' % (folder, name) if folder else '%s.vmdk' % name)


def check_vmdk_path(path):
    ds, rel = vc.split_ds_path(path)
    if not rel.endswith('.vmdk') or rel.endswith('-flat.vmdk'):
        raise PVError('%r is not a VMDK descriptor path ("[ds] folder/name.vmdk")' % path)
    return ds, rel


def marker_path(vmdk_path):
    return vmdk_path[:-len('.vmdk')] + MARKER_SUFFIX


def read_marker(client, vmdk_path, datacenter):
    """The ownership marker of a VMDK as a dict, or None when there is none (= not ours)."""
    raw = client.read_file(marker_path(vmdk_path), datacenter)
    if not raw:
        return None
    try:
        data = json.loads(raw.decode('utf-8'))
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(data, dict) or data.get('managed_by') != MANAGED_BY:
        return None
    return data


def write_marker(client, vmdk_path, datacenter, name, size, extra=None):
    data = {'managed_by': MANAGED_BY, 'name': name, 'filename': vmdk_path, 'size': size,
            'updated': int(time.time())}
    data.update(extra or {})
    client.write_file(marker_path(vmdk_path), datacenter,
                      json.dumps(data, sort_keys=True).encode('utf-8'))
    return data


def check_identity(marker, disk):
    """Refuse a VMDK whose disk uuid differs from the one its marker recorded (file replaced)."""
    want = guest.disk_wwn((marker or {}).get('uuid'))
    have = guest.disk_wwn((disk or {}).get('uuid'))
    if want and have and want != have:
        raise PVError('the disk at %s has uuid %s but its ownership marker records %s: the VMDK was '
                      'replaced; refusing to use it' % (disk.get('filename'), disk.get('uuid'), marker.get('uuid')))


def disk_size(device):
    size = getattr(device, 'capacityInBytes', None)
    if not size:
        size = (getattr(device, 'capacityInKB', None) or 0) * 1024
    return int(size)


def provisioning_of(backing):
    if getattr(backing, 'thinProvisioned', None):
        return 'thin'
    if getattr(backing, 'eagerlyScrub', None):
        return 'eagerzeroed'
    return 'thick'


class VmDisks(object):
    """The disks and SCSI controllers of one VM, and the reconfigure calls on them."""

    def __init__(self, client, vm):
        self.client = client
        self.vm = vm
        self.refresh()

    def refresh(self):
        props = self.client.props([self.vm], vc.vim.VirtualMachine, [
            'name', 'config.hardware.device', 'config.extraConfig', 'config.uuid',
            'config.instanceUuid', 'runtime.powerState'])[self.vm._moId]
        self.name = props.get('name')
        self.uuid = props.get('config.uuid')
        self.instance_uuid = props.get('config.instanceUuid')
        self.power_state = str(props.get('runtime.powerState'))
        self.devices = list(props.get('config.hardware.device') or [])
        self.extra_config = list(props.get('config.extraConfig') or [])
        self.controllers = dict((d.key, d) for d in self.devices
                                if isinstance(d, vc.vim.vm.device.VirtualSCSIController))
        self.disks = [self.describe(d) for d in self.devices
                      if isinstance(d, vc.vim.vm.device.VirtualDisk)]
        return self

    # -- reading ---------------------------------------------------------------
    def vm_info(self):
        return {'name': self.name, 'moid': self.vm._moId, 'uuid': self.uuid,
                'instance_uuid': self.instance_uuid, 'power_state': self.power_state}

    def describe(self, device):
        backing = device.backing
        ctrl = self.controllers.get(device.controllerKey)
        filename = getattr(backing, 'fileName', None)
        info = {
            'key': device.key,
            'filename': filename,
            'datastore': vc.split_ds_path(filename)[0] if filename and filename.startswith('[') else None,
            'uuid': getattr(backing, 'uuid', None) or None,
            'size': disk_size(device),
            'disk_mode': getattr(backing, 'diskMode', None),
            'provisioning': provisioning_of(backing),
            'controller_key': device.controllerKey,
            'controller_type': controller_type_of(ctrl) if ctrl else None,
            'controller_bus': ctrl.busNumber if ctrl else None,
            'unit_number': device.unitNumber,
            'pci_slot': self._pci_slot(ctrl),
            'label': device.deviceInfo.label if device.deviceInfo else None,
            'attached': True,
        }
        info['size_human'] = human_size(info['size']) if info['size'] else '0B'
        return info

    @staticmethod
    def _pci_slot(ctrl):
        slot = getattr(ctrl, 'slotInfo', None) if ctrl is not None else None
        return getattr(slot, 'pciSlotNumber', None)

    def find(self, filename):
        for disk in self.disks:
            if disk['filename'] == filename:
                return disk
        return None

    def device(self, key):
        for dev in self.devices:
            if dev.key == key:
                return dev
        raise PVError('device %s is no longer on VM %s' % (key, self.name))

    def enable_uuid(self):
        """The effective ``disk.EnableUUID`` value (the last entry wins), or None."""
        value = None
        for opt in self.extra_config:
            if opt.key == ENABLE_UUID:
                value = opt.value
        return value

    def enable_uuid_entries(self):
        return len([o for o in self.extra_config if o.key == ENABLE_UUID])

    def bus_rank(self, controller_type, bus):
        buses = sorted(c.busNumber for c in self.controllers.values()
                       if controller_type_of(c) == controller_type)
        return buses.index(bus) if bus in buses else len([b for b in buses if b < bus])

    def locators(self, disk, sys_root='/sys', dev_root='/dev'):
        """Stable guest device paths for ``disk`` (best first); may be [] before the
        controller shows up in the guest."""
        out = guest.wwn_locators(disk.get('uuid'), dev_root)
        node = guest.find_by_wwid(disk.get('uuid'), sys_root, dev_root) if disk.get('uuid') else None
        if node:
            out.append(node)
        if disk.get('controller_type') in guest.DRIVERS and disk.get('unit_number') is not None:
            out.extend(guest.scsi_locators(
                disk['controller_type'], self.bus_rank(disk['controller_type'], disk['controller_bus']),
                disk['unit_number'], disk.get('pci_slot'), sys_root, dev_root))
        return out

    # -- placement ---------------------------------------------------------------
    def _occupant(self, ctrl_key, unit):
        for dev in self.devices:
            if getattr(dev, 'controllerKey', None) == ctrl_key and dev.unitNumber == unit:
                return dev
        return None

    def plan_slot(self, controller_type='pvscsi', bus=None, unit=None):
        """Where a new disk goes: ``{'controller_key', 'controller_bus', 'unit_number',
        'controller_type', 'new_controller'}``. Validates explicit choices."""
        if controller_type not in CONTROLLER_TYPES:
            raise PVError('controller_type must be one of %s' % ', '.join(CONTROLLER_TYPES))
        if unit is not None:
            if unit == CONTROLLER_UNIT:
                raise PVError('unit number 7 is reserved for the SCSI controller itself; '
                              'choose 0-6 or 8-15')
            if not 0 <= unit < MAX_UNIT:
                raise PVError('unit number %s is out of range 0-15' % unit)
        if bus is not None and not 0 <= bus < MAX_BUS:
            raise PVError('controller number %s is out of range 0-3' % bus)
        by_bus = dict((c.busNumber, c) for c in self.controllers.values())
        if bus is not None:
            ctrl = by_bus.get(bus)
            if ctrl is not None and controller_type_of(ctrl) != controller_type:
                raise PVError('SCSI controller %d is %s, not %s'
                              % (bus, controller_type_of(ctrl), controller_type))
            candidates = [ctrl] if ctrl is not None else []
        else:
            candidates = sorted((c for c in self.controllers.values()
                                 if controller_type_of(c) == controller_type),
                                key=lambda c: c.busNumber)
        for ctrl in candidates:
            own = getattr(ctrl, 'scsiCtlrUnitNumber', None)
            if unit is not None:
                occupant = self._occupant(ctrl.key, unit)
                if occupant is None and own != unit:
                    return self._slot(ctrl.key, ctrl.busNumber, unit, controller_type, False)
                if bus is not None:
                    what = 'the controller itself' if occupant is None else (
                        getattr(occupant.backing, 'fileName', None)
                        or (occupant.deviceInfo.label if occupant.deviceInfo else type(occupant).__name__))
                    raise PVError('SCSI(%d:%d) of VM %s is occupied by %s'
                                  % (ctrl.busNumber, unit, self.name, what))
                continue
            for candidate in range(MAX_UNIT):
                if candidate in (CONTROLLER_UNIT, own):
                    continue
                if self._occupant(ctrl.key, candidate) is None:
                    return self._slot(ctrl.key, ctrl.busNumber, candidate, controller_type, False)
        # a new controller
        if bus is None:
            free = [b for b in range(MAX_BUS) if b not in by_bus]
            if not free:
                raise PVError('VM %s has no free unit on its %s controllers and already has %d '
                              'SCSI controllers' % (self.name, controller_type, MAX_BUS))
            bus = free[0]
        elif bus in by_bus:
            raise PVError('SCSI controller %d of VM %s has no free unit' % (bus, self.name))
        return self._slot(None, bus, 0 if unit is None else unit, controller_type, True)

    @staticmethod
    def _slot(key, bus, unit, ctype, new):
        return {'controller_key': key, 'controller_bus': bus, 'unit_number': unit,
                'controller_type': ctype, 'new_controller': new}

    # -- changes -------------------------------------------------------------------
    def reconfigure(self, what, device_changes=None, extra_config=None):
        spec = vc.vim.vm.ConfigSpec()
        if device_changes:
            spec.deviceChange = device_changes
        if extra_config:
            spec.extraConfig = [vc.vim.option.OptionValue(key=k, value=v) for k, v in extra_config]
        self.client.call('%s on VM %s' % (what, self.name), self.vm.ReconfigVM_Task, spec)
        self.refresh()

    def add_specs(self, filename, slot, size=None, create=False, provisioning='thin',
                  disk_mode='independent_persistent', datastore=None):
        """Device specs that put ``filename`` at ``slot`` (creating it when ``create``)."""
        dev = vc.vim.vm.device
        specs = []
        ctrl_key = slot['controller_key']
        if slot['new_controller']:
            cls = _controller_classes()[slot['controller_type']]
            ctrl = cls(key=-200 - slot['controller_bus'], busNumber=slot['controller_bus'],
                       sharedBus='noSharing')
            specs.append(dev.VirtualDeviceSpec(operation='add', device=ctrl))
            ctrl_key = ctrl.key
        backing = dev.VirtualDisk.FlatVer2BackingInfo(fileName=filename, diskMode=disk_mode)
        if datastore is not None:
            backing.datastore = datastore
        disk = dev.VirtualDisk(key=-300, controllerKey=ctrl_key, unitNumber=slot['unit_number'],
                               backing=backing)
        if create:
            backing.thinProvisioned = provisioning == 'thin'
            backing.eagerlyScrub = provisioning == 'eagerzeroed'
        if size:
            disk.capacityInKB = size // 1024
            disk.capacityInBytes = size
        spec = dev.VirtualDeviceSpec(operation='add', device=disk)
        if create:
            spec.fileOperation = 'create'
        specs.append(spec)
        return specs

    def edit_spec(self, disk, size=None, disk_mode=None):
        device = self.device(disk['key'])
        if size is not None:
            device.capacityInKB = size // 1024
            device.capacityInBytes = size
        if disk_mode is not None:
            device.backing.diskMode = disk_mode
        return vc.vim.vm.device.VirtualDeviceSpec(operation='edit', device=device)

    def remove_spec(self, disk, destroy=False):
        spec = vc.vim.vm.device.VirtualDeviceSpec(operation='remove', device=self.device(disk['key']))
        if destroy:
            spec.fileOperation = 'destroy'
        return spec


def vms_using(client, filename, exclude=None):
    """``[(vm, name)]`` of the VMs (other than ``exclude``) that have ``filename`` attached."""
    out = []
    for vm, props in client.all_props(vc.vim.VirtualMachine, ['name', 'config.hardware.device']):
        if exclude is not None and vm._moId == exclude._moId:
            continue
        for dev in props.get('config.hardware.device') or []:
            if isinstance(dev, vc.vim.vm.device.VirtualDisk) and \
                    getattr(dev.backing, 'fileName', None) == filename:
                out.append((vm, props.get('name')))
    return out


# -- taking a disk over from another VM (fenced force-detach) ------------------------------

FENCE_TIMEOUT = 300


def takeover_plan(client, filename, others, want):
    """The refusals of a takeover of ``filename`` from the VMs ``others`` (``[(vm, name)]``),
    made before anything changes (reads only). Returns ``(actions, to_power_off)``.

    ``want`` keys: ``force_detach`` (take it over at all), ``fencing`` (default true: only from a
    VM that is poweredOff), ``fence_stop`` (with fencing: power a poweredOn VM off through the API
    first)."""
    names = ', '.join('%s (%s)' % (n, v._moId) for v, n in others)
    if not want.get('force_detach'):
        raise InUse('%s is attached to VM %s; detach it there first, or set force_detach: true to '
                    'take it over (that VM must be poweredOff)' % (filename, names))
    states = client.props([v for v, _n in others], vc.vim.VirtualMachine, ['runtime.powerState'])
    actions, stop = [], []
    for vm, name in others:
        state = str(states.get(vm._moId, {}).get('runtime.powerState'))
        if want.get('fencing', True) is not False and state != 'poweredOff':
            if not want.get('fence_stop'):
                raise Refused('%s is attached to VM %s (%s) which is %s, not poweredOff: refusing to '
                              'force-detach it from a running VM (fencing); power that VM off first, set '
                              'fence_stop: true to power it off through the vSphere API before the '
                              'detach, or fencing: false if you are sure it no longer writes; nothing '
                              'was changed' % (filename, name, vm._moId, state))
            stop.append((vm, name))
            actions.append('power off VM %s (%s) (fence_stop)' % (name, vm._moId))
        actions.append('force-detach %s from VM %s (%s, %s)'
                       % (filename, name, vm._moId, 'poweredOff' if (vm, name) in stop else state))
    return actions, stop


def power_off(client, vm, name, timeout=FENCE_TIMEOUT):
    """Power ``vm`` off (fencing) and wait until vSphere reports it poweredOff."""
    def state():
        return str(client.props([vm], vc.vim.VirtualMachine, ['runtime.powerState'])
                   .get(vm._moId, {}).get('runtime.powerState'))
    if state() != 'poweredOff':
        try:
            client.wait(vm.PowerOffVM_Task(), 'powering off VM %s (fence_stop)' % name, timeout=timeout)
        except vc.TaskError:
            if state() != 'poweredOff':       # InvalidPowerState: it went off meanwhile
                raise

    def late():
        raise TimedOut('VM %s (%s) is still %s %ss after the power-off (fence_stop); nothing was '
                       'detached' % (name, vm._moId, state(), timeout))
    poll(lambda: None if state() == 'poweredOff' else AGAIN, timeout, late, interval=0.2, max_interval=1.0)


def take_over(client, filename, others, want, stop):
    """Power off ``stop`` (fence_stop), then detach ``filename`` from each of ``others`` (the file
    is kept); afterwards no VM but the caller's has it."""
    timeout = want.get('timeout') or FENCE_TIMEOUT
    for vm, name in stop:
        power_off(client, vm, name, timeout)
    for vm, name in others:
        theirs = VmDisks(client, vm)
        if want.get('fencing', True) is not False and theirs.power_state != 'poweredOff':
            raise Refused('VM %s (%s) is %s again: refusing to force-detach %s from it (fencing)'
                          % (name, vm._moId, theirs.power_state, filename))
        disk = theirs.find(filename)
        if disk is not None:
            theirs.reconfigure('force-detaching %s' % filename, [theirs.remove_spec(disk)])
    left = vms_using(client, filename)
    if left:
        raise PVError('%s is still attached to VM %s after the force-detach; nothing was attached'
                      % (filename, ', '.join('%s (%s)' % (n, v._moId) for v, n in left)))


def datastore_vmdk(client, path, datastore_obj):
    """``{'exists', 'size' (bytes or None)}`` for a VMDK on a datastore, with its marker name."""
    ds, rel = vc.split_ds_path(path)
    folder, _sep, base = rel.rpartition('/')
    stem = base[:-len('.vmdk')]
    files = client.search(datastore_obj, folder, [base, stem + MARKER_SUFFIX], disk_details=True)
    info = files.get(base)
    size = None
    if info is not None and getattr(info, 'capacityKb', None):
        size = int(info.capacityKb) * 1024
    return {'exists': info is not None, 'size': size, 'marker': (stem + MARKER_SUFFIX) in files}


def delete_vmdk(client, path, datacenter):
    """Delete a detached VMDK (descriptor and extents)."""
    try:
        client.call('deleting %s' % path, client.content.virtualDiskManager.DeleteVirtualDisk_Task,
                    name=path, datacenter=datacenter)
    except vc.TaskError as exc:
        if vc.fault_name(exc.fault) != 'FileNotFound':
            raise


# -- the vsphere_disk module's logic ------------------------------------------------

def _truthy(value):
    return str(value or '').strip().upper() == 'TRUE'


def _view(disk, exists, enable_uuid):
    """What the diff shows about a disk."""
    view = {'attached': bool(disk and disk.get('attached')), 'file_exists': bool(exists),
            ENABLE_UUID: enable_uuid}
    if disk:
        for key in ('filename', 'size', 'disk_mode', 'controller_type', 'controller_bus', 'unit_number'):
            if disk.get(key) is not None:
                view[key] = disk[key]
        if disk.get('size'):
            view['size_human'] = human_size(disk['size'])
    return view


def _after_a_race(client, vm, want, check_mode, disks, slot, dc, exc):
    """The reconfigure that attached (or created) the disk failed: when another run (a second controller
    for the same host) attached this disk, or took the planned SCSI unit, at the same time, bring the
    disk to ``want`` once more from what the VM has now; any other failure is raised as it was."""
    filename = want['filename']
    disks.refresh()
    now = disks.find(filename)
    taken = any(c.busNumber == slot['controller_bus'] for c in disks.controllers.values()) \
        if slot['new_controller'] else disks._occupant(slot['controller_key'], slot['unit_number']) is not None
    if now is None and not taken:
        raise exc
    if now is not None and now.get('uuid'):
        # this run may have rewritten the marker (before its create) after the other run recorded the uuid
        marker = read_marker(client, filename, dc)
        if marker is not None and not marker.get('uuid'):
            write_marker(client, filename, dc, marker.get('name') or filename, marker.get('size') or now['size'],
                         {'uuid': now['uuid']})
    result = ensure_disk(client, vm, dict(want, _raced=True), check_mode=check_mode, disks=disks)
    if now is not None:
        result['warnings'].insert(0, 'another run attached %s to VM %s at the same time (%s); this run uses it'
                                  % (filename, disks.name, exc))
    else:
        result['warnings'].insert(0, 'another run took SCSI(%s:%s) of VM %s at the same time (%s); %s was placed '
                                  'again' % (slot['controller_bus'], slot['unit_number'], disks.name, exc, filename))
    return result


def _lives_elsewhere(disks, filename, want, others, file_info, enable_uuid):
    """The result for a disk attached to other VMs only, left there (attached_elsewhere=skip)."""
    names = [n for _v, n in others]
    view = _view(None, True, enable_uuid)
    warning = ('disk %s (%s) lives on VM %s (attached there), not on VM %s: it is not attached here '
               '(attached_elsewhere=skip); move its entry to that host, or take it over with force_detach'
               % (want.get('name') or filename, filename, ', '.join(names), disks.name))
    return {'changed': False, 'actions': [], 'warnings': [warning], 'vm': disks.vm_info(),
            'diff': {'before': view, 'after': view}, 'attached_elsewhere': names,
            'disk': {'filename': filename, 'attached': False, 'file_exists': True,
                     'owned': bool(file_info.get('marker'))},
            'enable_uuid': enable_uuid}


def ensure_disk(client, vm, want, check_mode=False, disks=None):
    """Bring one disk of ``vm`` to ``want``; return the module result (without ``changed`` warnings
    handling beyond the ``warnings`` list).

    ``want`` keys: state (present/absent), filename, create (bool: may create a new VMDK at
    filename), name (volume name for the marker), size (bytes or None), provisioning,
    disk_mode (or None = keep), controller_type, controller_bus, unit_number, destroy,
    enable_uuid, force_detach/fencing/fence_stop (takeover), attached_elsewhere (``fail``, the
    default: a disk attached to another VM is refused unless force_detach; ``skip``: it is left
    there, reported in ``attached_elsewhere`` and a warning, nothing changed).
    """
    disks = VmDisks(client, vm) if disks is None else disks.refresh()
    dc = client.datacenter_of(vm)
    filename = want['filename']
    ds_name, _rel = check_vmdk_path(filename)
    ds_obj = client.find_datastore(ds_name, dc)
    size = round_size(want.get('size'))
    actions, warnings = [], []
    attached = disks.find(filename)
    file_info = None
    if attached is None:
        file_info = datastore_vmdk(client, filename, ds_obj)
    exists = attached is not None or file_info['exists']
    uuid_before = disks.enable_uuid()
    before = _view(attached, exists, uuid_before)
    after_disk = dict(attached) if attached else None
    marker = None
    owned = None
    takeover = None
    slot = None

    def load_marker():
        return read_marker(client, filename, dc)

    if want['state'] == 'present':
        device_changes, extra = [], []
        grow_to = None
        if attached is not None:
            cur = attached['size']
            if size is not None and cur and size < cur:
                raise PVError('refusing to shrink %s from %s to %s: vSphere disks only grow'
                              % (filename, human_size(cur), human_size(size)))
            if size is not None and size > cur:
                grow_to = size
            if want.get('disk_mode') and attached['disk_mode'] != want['disk_mode']:
                actions.append('change disk mode of %s from %s to %s'
                               % (filename, attached['disk_mode'], want['disk_mode']))
                after_disk['disk_mode'] = want['disk_mode']
            for key in ('controller_bus', 'unit_number'):
                if want.get(key) is not None and want[key] != attached[key]:
                    warnings.append('%s is attached at SCSI(%s:%s); not moving it to the requested %s %s '
                                    '(detach it first to move it)'
                                    % (filename, attached['controller_bus'], attached['unit_number'],
                                       key, want[key]))
        else:
            if file_info['exists'] and want.get('attached_elsewhere') == 'skip' and not want.get('force_detach'):
                others = vms_using(client, filename, exclude=vm)
                if others:
                    return _lives_elsewhere(disks, filename, want, others, file_info, uuid_before)
            slot = disks.plan_slot(want.get('controller_type') or 'pvscsi', want.get('controller_bus'),
                                   want.get('unit_number'))
            mode = want.get('disk_mode') or 'independent_persistent'
            after_disk = {'filename': filename, 'datastore': ds_name, 'uuid': None, 'disk_mode': mode,
                          'attached': True, 'key': None, 'pci_slot': None}
            after_disk.update((k, slot[k]) for k in ('controller_type', 'controller_bus', 'unit_number'))
            if slot['new_controller']:
                actions.append('add %s SCSI controller %d' % (slot['controller_type'], slot['controller_bus']))
            if file_info['exists']:
                others = vms_using(client, filename, exclude=vm)
                if others:
                    more, stop = takeover_plan(client, filename, others, want)
                    actions.extend(more)
                    takeover = (others, stop)
                marker = load_marker() if file_info['marker'] else None
                known = file_info['size'] or (marker or {}).get('size')
                if size is not None and known and size < known:
                    raise PVError('refusing to shrink %s from %s to %s: vSphere disks only grow'
                                  % (filename, human_size(known), human_size(size)))
                # The simulator reports no capacity for a detached disk: tell it what the marker says.
                attach_size = known if not file_info['size'] and known else None
                device_changes = disks.add_specs(filename, slot, size=attach_size, disk_mode=mode)
                actions.append('attach existing %s at SCSI(%d:%d)'
                               % (filename, slot['controller_bus'], slot['unit_number']))
                after_disk['size'] = known or 0
                if size is not None and size > (known or 0):
                    grow_to = size
            else:
                if not want.get('create'):
                    raise PVError('VMDK %s does not exist on datastore %s; nothing was changed '
                                  '(to create a new disk, give disk_name and datastore instead of filename)'
                                  % (filename, ds_name))
                if size is None:
                    raise PVError('size is required to create the new disk %s' % filename)
                device_changes = disks.add_specs(filename, slot, size=size, create=True,
                                                 provisioning=want.get('provisioning') or 'thin',
                                                 disk_mode=mode, datastore=ds_obj)
                actions.append('create %s %s disk %s at SCSI(%d:%d)'
                               % (human_size(size), want.get('provisioning') or 'thin', filename,
                                  slot['controller_bus'], slot['unit_number']))
                after_disk['size'] = size
                after_disk['provisioning'] = want.get('provisioning') or 'thin'
                owned = True
        if grow_to is not None:
            actions.append('grow %s from %s to %s' % (filename, human_size(after_disk.get('size') or 0),
                                                      human_size(grow_to)))
            after_disk['size'] = grow_to
        if want.get('enable_uuid', True) and not _truthy(uuid_before):
            extra.append((ENABLE_UUID, 'TRUE'))
            actions.append('set %s=TRUE on VM %s' % (ENABLE_UUID, disks.name))
            if disks.power_state == 'poweredOn':
                warnings.append('%s was set on VM %s: the guest shows disk uuids (by-id wwn-0x6000c29... '
                                'links) only after the VM is powered off and on again'
                                % (ENABLE_UUID, disks.name))

        if actions and not check_mode:
            if takeover is not None:
                take_over(client, filename, takeover[0], want, takeover[1])
            if attached is None and not file_info['exists']:
                folder = filename.rsplit('/', 1)[0] if '/' in filename else None
                if folder:
                    client.mkdir(folder, dc)
                write_marker(client, filename, dc, want.get('name') or filename, size)
            mode_change = attached is not None and want.get('disk_mode') and \
                attached['disk_mode'] != want['disk_mode']
            if attached is not None and (grow_to is not None or mode_change):
                device_changes = [disks.edit_spec(attached, size=grow_to,
                                                  disk_mode=want['disk_mode'] if mode_change else None)]
                grow_to = None
            if device_changes or extra:
                try:
                    disks.reconfigure('reconfiguring disks', device_changes, extra)
                except vc.TaskError as exc:
                    if attached is not None or slot is None or want.get('_raced'):
                        raise
                    return _after_a_race(client, vm, want, check_mode, disks, slot, dc, exc)
            if grow_to is not None:          # after a reattach
                disks.reconfigure('growing %s' % filename,
                                  [disks.edit_spec(disks.find(filename), size=grow_to)])
            after_disk = disks.find(filename)
            if after_disk is None:
                raise PVError('VM %s reports no disk %s after reconfiguring it' % (disks.name, filename))
            if owned and after_disk.get('uuid'):
                # created now: record the disk uuid the server gave it (identity = path + uuid)
                write_marker(client, filename, dc, want.get('name') or filename, after_disk['size'],
                             {'uuid': after_disk['uuid']})
            elif grow_to is not None or any(a.startswith('grow ') for a in actions):
                if marker is None:
                    marker = load_marker()
                if marker is not None:
                    check_identity(marker, after_disk)
                    write_marker(client, filename, dc, marker.get('name') or filename, after_disk['size'],
                                 {'uuid': marker['uuid']} if marker.get('uuid') else None)
    else:   # absent
        destroy = bool(want.get('destroy'))
        if destroy and exists:
            marker = load_marker()
            if marker is None:
                raise PVError('refusing to destroy %s: it has no ownership marker %s, so it was not '
                              'created by %s; nothing was changed' % (filename, marker_path(filename), MANAGED_BY))
            owned = True
            check_identity(marker, attached)
            if attached is None:
                others = vms_using(client, filename, exclude=vm)
                if others:
                    raise PVError('refusing to destroy %s: it is attached to VM %s'
                                  % (filename, ', '.join('%s (%s)' % (n, v._moId) for v, n in others)))
        if attached is not None:
            verb = 'detach and destroy' if destroy else 'detach (keeping the file)'
            actions.append('%s %s from SCSI(%s:%s)'
                           % (verb, filename, attached['controller_bus'], attached['unit_number']))
        elif destroy and exists:
            actions.append('destroy detached %s' % filename)
        after_disk = None
        if actions and not check_mode:
            if attached is not None:
                disks.reconfigure('detaching %s' % filename, [disks.remove_spec(attached, destroy=destroy)])
            elif destroy:
                delete_vmdk(client, filename, dc)
            if destroy:
                client.delete_file(marker_path(filename), dc)
        exists = exists and not (destroy and exists)

    enable_after = disks.enable_uuid() if not check_mode else (
        'TRUE' if want['state'] == 'present' and want.get('enable_uuid', True) else uuid_before)
    after = _view(after_disk, exists, enable_after)
    result = {'changed': bool(actions), 'actions': actions, 'warnings': warnings,
              'vm': disks.vm_info(), 'diff': {'before': before, 'after': after}}
    if after_disk is not None:
        disk = dict(after_disk)
        disk['size_human'] = human_size(disk.get('size') or 0)
        disk['locators'] = guest.wwn_locators(disk.get('uuid'))
        if disk.get('controller_type') and disk.get('controller_bus') is not None:
            disk['bus_rank'] = disks.bus_rank(disk['controller_type'], disk['controller_bus'])
        if owned is None:
            owned = (marker is not None) or (attached is None and file_info and file_info['marker']) \
                or bool(read_marker(client, filename, dc))
        disk['owned'] = bool(owned)
        result['disk'] = disk
    else:
        result['disk'] = {'filename': filename, 'attached': False, 'file_exists': exists}
    result['enable_uuid'] = enable_after
    result['attached_elsewhere'] = []
    return result
