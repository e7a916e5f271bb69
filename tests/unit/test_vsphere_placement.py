# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""vSphere disk placement, paths, sizes, faults and auth resolution (pyvmomi data objects, no server)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

pytest.importorskip('pyVmomi')

from pyVmomi import vim, vmodl  # noqa: E402

from ansible_collections.persistent_volumes.docker.plugins.module_utils.vmware import client as vc  # noqa: E402
from ansible_collections.persistent_volumes.docker.plugins.module_utils.vmware import disk as vd  # noqa: E402
from ansible_collections.persistent_volumes.docker.plugins.module_utils.common import PVError  # noqa: E402

dev = vim.vm.device


def ctrl(key, bus, kind='pvscsi'):
    cls = {'pvscsi': dev.ParaVirtualSCSIController, 'lsilogic': dev.VirtualLsiLogicController,
           'lsilogicsas': dev.VirtualLsiLogicSASController, 'buslogic': dev.VirtualBusLogicController}[kind]
    return cls(key=key, busNumber=bus, scsiCtlrUnitNumber=7)


def disk(key, ctrl_key, unit, name=None, kb=1024):
    return dev.VirtualDisk(key=key, controllerKey=ctrl_key, unitNumber=unit, capacityInKB=kb,
                           backing=dev.VirtualDisk.FlatVer2BackingInfo(
                               fileName=name or '[ds] d%d.vmdk' % key, diskMode='persistent', thinProvisioned=True))


def vmdisks(devices):
    obj = vd.VmDisks.__new__(vd.VmDisks)
    obj.name = 'vm1'
    obj.devices = list(devices)
    obj.controllers = dict((d.key, d) for d in devices if isinstance(d, dev.VirtualSCSIController))
    obj.disks = [obj.describe(d) for d in devices if isinstance(d, dev.VirtualDisk)]
    obj.extra_config = []
    return obj


def test_first_free_unit_never_7():
    devices = [ctrl(1000, 0)] + [disk(2000 + u, 1000, u) for u in range(7)]
    slot = vmdisks(devices).plan_slot('pvscsi')
    assert slot == {'controller_key': 1000, 'controller_bus': 0, 'unit_number': 8, 'controller_type': 'pvscsi',
                    'new_controller': False}


def test_any_device_occupies_a_unit():
    cdrom = dev.VirtualCdrom(key=3000, controllerKey=1000, unitNumber=0)
    slot = vmdisks([ctrl(1000, 0), cdrom]).plan_slot('pvscsi')
    assert slot['unit_number'] == 1


def test_new_controller_when_full_on_lowest_free_bus():
    devices = [ctrl(1000, 0), ctrl(1001, 2, 'lsilogic')]
    devices += [disk(2000 + u, 1000, u) for u in range(16) if u != 7]
    slot = vmdisks(devices).plan_slot('pvscsi')
    assert (slot['new_controller'], slot['controller_bus'], slot['unit_number'], slot['controller_key']) == \
        (True, 1, 0, None)
    # the lsilogic controller on bus 2 has room for an lsilogic disk
    assert vmdisks(devices).plan_slot('lsilogic')['controller_bus'] == 2


def test_no_bus_left():
    devices = [ctrl(1000 + b, b) for b in range(4)]
    devices += [disk(2000 + b * 16 + u, 1000 + b, u) for b in range(4) for u in range(16) if u != 7]
    with pytest.raises(PVError, match='already has 4 SCSI controllers'):
        vmdisks(devices).plan_slot('pvscsi')


def test_explicit_choices_validated():
    devices = [ctrl(1000, 0), disk(2003, 1000, 3), ctrl(1001, 1, 'lsilogic')]
    v = vmdisks(devices)
    with pytest.raises(PVError, match='unit number 7 is reserved'):
        v.plan_slot('pvscsi', unit=7)
    with pytest.raises(PVError, match='out of range 0-15'):
        v.plan_slot('pvscsi', unit=16)
    with pytest.raises(PVError, match=r'SCSI\(0:3\) of VM vm1 is occupied by \[ds\] d2003.vmdk'):
        v.plan_slot('pvscsi', bus=0, unit=3)
    with pytest.raises(PVError, match='SCSI controller 1 is lsilogic, not pvscsi'):
        v.plan_slot('pvscsi', bus=1)
    with pytest.raises(PVError, match='out of range 0-3'):
        v.plan_slot('pvscsi', bus=4)
    with pytest.raises(PVError, match='controller_type must be one of'):
        v.plan_slot('ide')
    # unit 3 taken on bus 0, no other pvscsi controller: a new one on bus 2, same unit
    slot = v.plan_slot('pvscsi', unit=3)
    assert (slot['new_controller'], slot['controller_bus'], slot['unit_number']) == (True, 2, 3)
    slot = v.plan_slot('pvscsi', bus=3, unit=5)
    assert (slot['new_controller'], slot['controller_bus'], slot['unit_number']) == (True, 3, 5)


def test_describe_and_bus_rank():
    devices = [ctrl(1000, 0), ctrl(1001, 1, 'lsilogic'), ctrl(1002, 3), disk(2000, 1002, 4, kb=2048)]
    v = vmdisks(devices)
    d = v.find('[ds] d2000.vmdk')
    assert (d['controller_type'], d['controller_bus'], d['unit_number'], d['size'], d['datastore']) == \
        ('pvscsi', 3, 4, 2 * 1024 * 1024, 'ds')
    assert v.bus_rank('pvscsi', 3) == 1 and v.bus_rank('pvscsi', 0) == 0 and v.bus_rank('lsilogic', 1) == 0
    assert v.bus_rank('pvscsi', 2) == 1      # a controller still to be added on bus 2


def test_enable_uuid_last_entry_wins():
    v = vmdisks([])
    assert v.enable_uuid() is None
    v.extra_config = [vim.option.OptionValue(key='disk.EnableUUID', value='FALSE'),
                      vim.option.OptionValue(key='disk.EnableUUID', value='TRUE')]
    assert v.enable_uuid() == 'TRUE' and v.enable_uuid_entries() == 2


def test_paths_and_sizes():
    assert vd.managed_path('ds 1', 'pg') == '[ds 1] persistent-volumes/pg.vmdk'
    assert vd.managed_path('ds', 'pg', '') == '[ds] pg.vmdk'
    assert vd.marker_path('[ds] a/b.vmdk') == '[ds] a/b.pv.json'
    assert vc.split_ds_path('[ds1]  a/b.vmdk') == ('ds1', 'a/b.vmdk')
    for bad in ('a/b.vmdk', '[] x.vmdk'):
        with pytest.raises(PVError):
            vc.split_ds_path(bad)
    for bad in ('[ds] a/b-flat.vmdk', '[ds] a/b.img'):
        with pytest.raises(PVError, match='not a VMDK descriptor path'):
            vd.check_vmdk_path(bad)
    assert vd.round_size(1) == 1024 * 1024 and vd.round_size(3 * 1024 * 1024) == 3 * 1024 * 1024
    with pytest.raises(PVError):
        vd.round_size(0)


def test_fault_text_hides_go_type_names():
    fault = vim.fault.FileNotFound(msg='*types.FileNotFound', file='/tmp/x-flat.vmdk')
    assert vc.fault_text(fault) == 'FileNotFound (file=/tmp/x-flat.vmdk)'
    fault = vim.fault.InvalidDeviceSpec(msg='Invalid configuration for device 0.', deviceIndex=0)
    assert vc.fault_text(fault) == 'InvalidDeviceSpec: Invalid configuration for device 0. (deviceIndex=0)'
    assert vc.is_method_not_found(vmodl.fault.MethodNotFound(msg='x'))
    assert not vc.is_method_not_found(vim.fault.FileNotFound())


def test_connection_params_env_fallback():
    env = {'VMWARE_HOST': 'vc', 'VMWARE_USER': 'u', 'VMWARE_PASSWORD': 'p', 'VMWARE_PORT': '8443',
           'VMWARE_VALIDATE_CERTS': 'no'}
    assert vc.connection_params({}, env) == {
        'hostname': 'vc', 'username': 'u', 'password': 'p', 'port': 8443, 'validate_certs': False}
    assert vc.connection_params({'hostname': 'h', 'port': 443, 'validate_certs': True}, env)['hostname'] == 'h'
    assert vc.connection_params({'username': 'a', 'password': 'b', 'hostname': 'h'}, {})['validate_certs'] is True
    with pytest.raises(PVError, match='hostname is required'):
        vc.connection_params({}, {})
    with pytest.raises(PVError, match='username and password'):
        vc.connection_params({'hostname': 'h'}, {})
    with pytest.raises(PVError, match='must be a boolean'):
        vc.connection_params({}, dict(env, VMWARE_VALIDATE_CERTS='maybe'))


def test_auth_spec_shapes():
    spec = vc.auth_argument_spec()
    assert spec['password']['no_log'] is True and 'fallback' not in spec['hostname']
    marker = object()
    spec = vc.auth_argument_spec(marker)
    assert spec['hostname']['fallback'] == (marker, ['VMWARE_HOST'])
    assert spec['validate_certs']['fallback'] == (marker, ['VMWARE_VALIDATE_CERTS'])


def test_identity_is_path_plus_uuid():
    marker = {'uuid': '6000C29d-45ef-3a5e-7c1f-9e31a12b8c2d'}
    vd.check_identity(marker, {'filename': '[ds] a.vmdk', 'uuid': '6000c29d-45ef-3a5e-7c1f-9e31a12b8c2d'})
    vd.check_identity(marker, {'filename': '[ds] a.vmdk', 'uuid': None})        # server gives none
    vd.check_identity({}, {'filename': '[ds] a.vmdk', 'uuid': '6000C29d-45ef-3a5e-7c1f-9e31a12b8c2d'})
    with pytest.raises(PVError, match='the VMDK was replaced'):
        vd.check_identity(marker, {'filename': '[ds] a.vmdk', 'uuid': '6000C291-0000-0000-0000-000000000000'})
