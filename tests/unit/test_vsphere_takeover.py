# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fenced takeover of a vSphere disk attached to another VM (force_detach, fencing, fence_stop),
and the device backend's ``scsi`` locator: a stub client (no server)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

import pytest

pytest.importorskip('pyVmomi')

from ansible_collections.persistent_volumes.docker.plugins.module_utils.vmware import disk as vd  # noqa: E402
from ansible_collections.persistent_volumes.docker.plugins.module_utils.backends import device as dev_backend  # noqa: E402
from ansible_collections.persistent_volumes.docker.plugins.module_utils.backends.base import VolumeRequest  # noqa: E402
from ansible_collections.persistent_volumes.docker.plugins.module_utils.common import (  # noqa: E402
    InUse, PVError, Refused, TimedOut)

PATH = '[ds] persistent-volumes/data.vmdk'


class FakeVM(object):
    def __init__(self, moid, state, disks=(PATH,)):
        self._moId = moid
        self.state = state
        self.disks = list(disks)
        self.power_offs = 0

    def PowerOffVM_Task(self):  # noqa: N802 (pyvmomi's name)
        self.power_offs += 1
        self.state = 'poweredOff'
        return 'task'


class FakeClient(object):
    """props() for runtime.powerState, wait() for tasks, and the disk removal through VmDisks."""

    def __init__(self, vms, stay_on=False):
        self.vms = dict((vm._moId, vm) for vm in vms)
        self.stay_on = stay_on
        self.calls = []

    def props(self, objs, _type, _paths):
        return dict((o._moId, {'runtime.powerState': self.vms[o._moId].state}) for o in objs)

    def wait(self, task, what, timeout=None):
        self.calls.append(what)


def others(*vms):
    return [(vm, 'vm-' + vm._moId) for vm in vms]


def test_refused_without_force_detach():
    vm = FakeVM('vm-1', 'poweredOff')
    with pytest.raises(InUse, match='force_detach: true'):
        vd.takeover_plan(FakeClient([vm]), PATH, others(vm), {})


def test_poweredoff_vm_is_taken_over():
    vm = FakeVM('vm-1', 'poweredOff')
    actions, stop = vd.takeover_plan(FakeClient([vm]), PATH, others(vm), {'force_detach': True})
    assert stop == [] and actions == ['force-detach %s from VM vm-vm-1 (vm-1, poweredOff)' % PATH]


def test_poweredon_vm_refused_with_fence_stop_hint():
    vm = FakeVM('vm-1', 'poweredOn')
    with pytest.raises(Refused) as err:
        vd.takeover_plan(FakeClient([vm]), PATH, others(vm), {'force_detach': True, 'fencing': True})
    msg = str(err.value)
    assert 'poweredOn, not poweredOff' in msg and 'fence_stop' in msg and 'nothing was changed' in msg
    assert vm.power_offs == 0


def test_fence_stop_plans_a_power_off():
    vm = FakeVM('vm-1', 'poweredOn')
    actions, stop = vd.takeover_plan(FakeClient([vm]), PATH, others(vm),
                                     {'force_detach': True, 'fence_stop': True})
    assert stop == others(vm)
    assert actions[0] == 'power off VM vm-vm-1 (vm-1) (fence_stop)'
    assert vm.power_offs == 0            # planning only reads


def test_fencing_false_takes_over_from_a_running_vm():
    vm = FakeVM('vm-1', 'poweredOn')
    actions, stop = vd.takeover_plan(FakeClient([vm]), PATH, others(vm), {'force_detach': True, 'fencing': False})
    assert stop == [] and 'poweredOn' in actions[0]


def test_power_off_waits_until_poweredoff():
    vm = FakeVM('vm-1', 'poweredOn')
    client = FakeClient([vm])
    vd.power_off(client, vm, 'vm-vm-1', timeout=5)
    assert vm.power_offs == 1 and vm.state == 'poweredOff' and client.calls == ['powering off VM vm-vm-1 (fence_stop)']
    vd.power_off(client, vm, 'vm-vm-1', timeout=5)        # already off: no second power-off
    assert vm.power_offs == 1


def test_power_off_times_out_clearly():
    vm = FakeVM('vm-1', 'poweredOn')
    vm.PowerOffVM_Task = lambda: 'task'                       # the VM never goes down
    with pytest.raises(TimedOut, match='still poweredOn .* nothing was detached'):
        vd.power_off(FakeClient([vm]), vm, 'vm-vm-1', timeout=0.3)


def test_take_over_powers_off_then_detaches(monkeypatch):
    vm = FakeVM('vm-1', 'poweredOn')
    client = FakeClient([vm])
    order = []

    class Disks(object):
        def __init__(self, _client, target):
            self.vm = target
            self.power_state = target.state
            order.append(('look', target.state))

        def find(self, filename):
            return {'key': 1} if filename in self.vm.disks else None

        def remove_spec(self, disk):
            return disk

        def reconfigure(self, what, changes):
            order.append(('detach', self.vm.state))
            self.vm.disks.remove(PATH)

    monkeypatch.setattr(vd, 'VmDisks', Disks)
    monkeypatch.setattr(vd, 'vms_using', lambda c, f, exclude=None: [
        (v, v._moId) for v in client.vms.values() if f in v.disks])
    vd.take_over(client, PATH, others(vm), {'force_detach': True, 'fence_stop': True}, others(vm))
    assert vm.power_offs == 1 and order == [('look', 'poweredOff'), ('detach', 'poweredOff')]
    assert vm.disks == []


def test_take_over_refuses_a_vm_that_came_back(monkeypatch):
    vm = FakeVM('vm-1', 'poweredOn')

    class Disks(object):
        def __init__(self, _client, target):
            self.power_state = target.state

    monkeypatch.setattr(vd, 'VmDisks', Disks)
    with pytest.raises(Refused, match='poweredOn again'):
        vd.take_over(FakeClient([vm]), PATH, others(vm), {'force_detach': True}, [])


def test_device_backend_scsi_locator(tmp_path, monkeypatch):
    sys_root = tmp_path / 'sys'
    host = sys_root / 'class' / 'scsi_host' / 'host40'
    devdir = sys_root / 'devices' / 'pci0000:00' / '0000:00:15.0' / '0000:03:00.0' / 'host40'
    devdir.mkdir(parents=True)
    host.mkdir(parents=True)
    (host / 'proc_name').write_text('vmw_pvscsi\n')
    os.symlink(os.path.relpath(str(devdir), str(host)), str(host / 'device'))
    monkeypatch.setenv('PV_VSPHERE_GUEST_SYS_ROOT', str(sys_root))
    backend = dev_backend.DeviceBackend({})
    req = VolumeRequest(name='data', size=64 << 20, options={
        'id': PATH, 'scsi': {'controller_type': 'pvscsi', 'bus_rank': 0, 'unit_number': 3, 'pci_slot': None}})
    vol = backend.lookup([req])['data']
    assert vol.locators == ['/dev/disk/by-path/pci-0000:03:00.0-scsi-0:0:3:0'] and vol.id == PATH
    bad = VolumeRequest(name='data', size=1, options={'scsi': {'controller_type': 'ide', 'unit_number': 0}})
    with pytest.raises(PVError, match='controller_type must be one of'):
        backend.lookup([bad])
    bad = VolumeRequest(name='data', size=1, options={'scsi': {'controller_type': 'pvscsi'}})
    with pytest.raises(PVError, match='integer unit_number'):
        backend.lookup([bad])


class SkipDisks(object):
    """The VmDisks of a VM that does not have the disk (attached_elsewhere)."""
    name = 'docker-01'

    def __init__(self):
        self.reconfigured = []
        self.planned = 0

    def refresh(self):
        return self

    def find(self, filename):
        return None

    def enable_uuid(self):
        return 'TRUE'

    def vm_info(self):
        return {'name': self.name, 'moid': 'vm-1'}

    def plan_slot(self, *args):
        self.planned += 1
        return {'controller_type': 'pvscsi', 'controller_bus': 0, 'unit_number': 1, 'new_controller': False}

    def reconfigure(self, *args):
        self.reconfigured.append(args)


@pytest.mark.parametrize('check_mode', [True, False])
def test_attached_elsewhere_skip_leaves_the_disk_there(monkeypatch, check_mode):
    """attached_elsewhere=skip: a disk of ours on another VM is neither attached here nor detached there;
    the result names that VM and warns; with the default (fail) it is refused, and force_detach still
    takes the takeover path."""
    other = FakeVM('vm-2', 'poweredOn')

    class Client(FakeClient):
        def datacenter_of(self, vm):
            return 'dc'

        def find_datastore(self, name, dc):
            return 'ds'

    client = Client([other])
    monkeypatch.setattr(vd, 'datastore_vmdk', lambda c, p, d: {'exists': True, 'size': 1 << 26, 'marker': True})
    monkeypatch.setattr(vd, 'vms_using', lambda c, f, exclude=None: [(other, 'docker-02')])
    want = {'state': 'present', 'filename': PATH, 'create': True, 'name': 'data', 'size': 1 << 26,
            'attached_elsewhere': 'skip'}
    disks = SkipDisks()
    res = vd.ensure_disk(client, FakeVM('vm-1', 'poweredOn', disks=()), want, check_mode=check_mode, disks=disks)
    assert res['changed'] is False and res['actions'] == [] and disks.reconfigured == [] and disks.planned == 0
    assert res['attached_elsewhere'] == ['docker-02'] and res['disk']['attached'] is False
    assert res['warnings'] == ['disk data (%s) lives on VM docker-02 (attached there), not on VM docker-01: it is '
                               'not attached here (attached_elsewhere=skip); move its entry to that host, or '
                               'take it over with force_detach' % PATH]
    assert other.power_offs == 0 and client.calls == []
    with pytest.raises(InUse, match='force_detach: true'):
        vd.ensure_disk(client, FakeVM('vm-1', 'poweredOn', disks=()), dict(want, attached_elsewhere='fail'),
                       check_mode=check_mode, disks=disks)
    with pytest.raises(Refused, match='fencing'):      # force_detach: the (fenced) takeover path, not skip
        vd.ensure_disk(client, FakeVM('vm-1', 'poweredOn', disks=()), dict(want, force_detach=True),
                       check_mode=check_mode, disks=disks)


class RaceDisks(object):
    """A VM where another run attaches the disk (or another disk at the planned unit) while this run's
    reconfigure is in flight: that reconfigure fails like vSphere's (InvalidDeviceSpec)."""
    name = 'docker-01'

    def __init__(self, other_file):
        self.other_file = other_file          # what the other run attaches at unit 1
        self.attached = {}                    # filename -> disk record
        self.controllers = {1000: type('Ctrl', (), {'busNumber': 0})()}
        self.reconfigures = 0

    def refresh(self):
        return self

    def find(self, filename):
        return self.attached.get(filename)

    def enable_uuid(self):
        return 'TRUE'

    def vm_info(self):
        return {'name': self.name, 'moid': 'vm-1'}

    def _occupant(self, key, unit):
        return [d for d in self.attached.values() if d['unit_number'] == unit] or None

    def plan_slot(self, *args):
        unit = 1 + len(self.attached)
        return {'controller_key': 1000, 'controller_bus': 0, 'unit_number': unit, 'controller_type': 'pvscsi',
                'new_controller': False}

    def add_specs(self, filename, slot, **kwargs):
        return [(filename, slot['unit_number'])]

    def bus_rank(self, ctype, bus):
        return 0

    def _record(self, filename, unit):
        return {'filename': filename, 'attached': True, 'size': 1 << 26, 'uuid': '6000C29d-45ef-3a5e-7c1f-9e31a12b8c2d',
                'disk_mode': 'independent_persistent', 'controller_type': 'pvscsi', 'controller_bus': 0,
                'unit_number': unit, 'key': 2000 + unit}

    def reconfigure(self, what, changes=None, extra=None):
        self.reconfigures += 1
        filename, unit = changes[0]
        if self.reconfigures == 1:            # the other run was faster
            self.attached[self.other_file] = self._record(self.other_file, unit)
            raise vd.vc.TaskError(what, type('InvalidDeviceSpec', (), {'msg': ''})())
        self.attached[filename] = self._record(filename, unit)


@pytest.mark.parametrize('same_disk', [True, False])
def test_concurrent_attach_by_another_run(monkeypatch, same_disk):
    """Two runs (two controllers for one host) create the same disk at once: the slower one's reconfigure
    fails; it finds the disk attached and uses it (unchanged, a warning; the marker keeps the disk uuid),
    never a second VMDK. When the other run took the planned unit for ANOTHER disk, this one is placed again."""
    other = PATH if same_disk else '[ds] persistent-volumes/other.vmdk'
    disks = RaceDisks(other)
    markers = {PATH: {'managed_by': vd.MANAGED_BY, 'name': 'data', 'size': 1 << 26}}   # rewritten by this run

    class Client(FakeClient):
        def datacenter_of(self, vm):
            return 'dc'

        def find_datastore(self, name, dc):
            return 'ds'

        def mkdir(self, folder, dc):
            pass

    monkeypatch.setattr(vd, 'datastore_vmdk',
                        lambda c, p, d: {'exists': p in disks.attached, 'size': None, 'marker': p in markers})
    monkeypatch.setattr(vd, 'vms_using', lambda c, f, exclude=None: [])
    monkeypatch.setattr(vd, 'read_marker', lambda c, p, dc: markers.get(p))
    monkeypatch.setattr(vd, 'write_marker', lambda c, p, dc, name, size, extra=None: markers.__setitem__(
        p, dict({'managed_by': vd.MANAGED_BY, 'name': name, 'size': size}, **(extra or {}))))
    want = {'state': 'present', 'filename': PATH, 'create': True, 'name': 'data', 'size': 1 << 26}
    res = vd.ensure_disk(Client([]), FakeVM('vm-1', 'poweredOn', disks=()), want, disks=disks)
    assert disks.find(PATH)['filename'] == PATH and res['disk']['filename'] == PATH
    if same_disk:
        assert res['changed'] is False and disks.reconfigures == 1
        assert res['warnings'][0].startswith('another run attached %s to VM docker-01 at the same time' % PATH)
        assert markers[PATH]['uuid'] == disks.find(PATH)['uuid']
    else:
        assert res['changed'] is True and disks.reconfigures == 2 and disks.find(PATH)['unit_number'] == 2
        assert res['warnings'][0].startswith('another run took SCSI(0:1) of VM docker-01 at the same time')


def test_a_failed_attach_without_a_race_is_raised(monkeypatch):
    """The reconfigure fails and nothing else is attached: the error is the original one (no retry)."""
    disks = RaceDisks('[ds] persistent-volumes/other.vmdk')

    def fail(what, changes=None, extra=None):
        disks.reconfigures += 1
        raise vd.vc.TaskError(what, type('NoDiskSpace', (), {'msg': ''})())
    disks.reconfigure = fail

    class Client(FakeClient):
        def datacenter_of(self, vm):
            return 'dc'

        def find_datastore(self, name, dc):
            return 'ds'

        def mkdir(self, folder, dc):
            pass

    monkeypatch.setattr(vd, 'datastore_vmdk', lambda c, p, d: {'exists': False, 'size': None, 'marker': False})
    monkeypatch.setattr(vd, 'write_marker', lambda *a, **k: None)
    want = {'state': 'present', 'filename': PATH, 'create': True, 'name': 'data', 'size': 1 << 26}
    with pytest.raises(vd.vc.TaskError, match='NoDiskSpace'):
        vd.ensure_disk(Client([]), FakeVM('vm-1', 'poweredOn', disks=()), want, disks=disks)
    assert disks.reconfigures == 1
