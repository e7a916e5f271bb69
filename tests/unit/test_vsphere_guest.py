# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Guest-side discovery of vSphere disks on a sysfs/udev-shaped tree (tests/unit/fixtures/vsphere).

The simulator never reports a disk uuid, so the WWN path (disk.EnableUUID) is covered here: by-id links,
the kernel's ``wwid`` attribute, SCSI hosts by driver and PCI address, PCI slots, the size check,
the rescan after a grow and the scan of a target.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

import pytest

from ansible_collections.persistent_volumes.docker.plugins.module_utils.host import devices
from ansible_collections.persistent_volumes.docker.plugins.module_utils.vmware import guest
from ansible_collections.persistent_volumes.docker.plugins.module_utils.backends.base import BackendVolume
from ansible_collections.persistent_volumes.docker.plugins.module_utils.common import PVError

FIXTURE = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'fixtures', 'vsphere', 'guest_sysfs.txt')
UUID_SDB = '6000C29d-45ef-3a5e-7c1f-9e31a12b8c2d'
UUID_SDC = '6000C293-0aa1-b2c3-d4e5-f60718293a4b'
GIB = 1024 ** 3


def build_tree(root):
    with open(FIXTURE) as f:
        for raw in f:
            line = raw.strip()
            if not line or line.startswith('#'):
                continue
            kind, rest = line.split(None, 1)
            parts = rest.split(None, 1)
            path = os.path.join(root, parts[0])
            arg = parts[1] if len(parts) > 1 else ''
            if kind == 'dir':
                os.makedirs(path, exist_ok=True)
                continue
            os.makedirs(os.path.dirname(path), exist_ok=True)
            if kind == 'file':
                with open(path, 'w') as out:
                    out.write(arg + '\n' if arg else '')
            elif kind == 'link':
                os.symlink(arg, path)
            elif kind == 'node':
                with open(path, 'wb') as out:
                    out.truncate(int(arg))
            else:
                raise ValueError(line)


@pytest.fixture
def tree(tmp_path, monkeypatch):
    root = str(tmp_path)
    build_tree(root)
    sys_root, dev_root = os.path.join(root, 'sys'), os.path.join(root, 'dev')

    def fake_block_size(device):
        # the real devices.block_size reads /sys/class/block/<dev>/size: read the fake sysfs instead
        base = os.path.basename(os.path.realpath(device))
        with open(os.path.join(sys_root, 'class', 'block', base, 'size')) as f:
            return int(f.read()) * 512

    monkeypatch.setattr(devices, 'block_size', fake_block_size)
    return sys_root, dev_root


def test_wwn_from_disk_uuid():
    assert guest.disk_wwn(UUID_SDB) == '6000c29d45ef3a5e7c1f9e31a12b8c2d'
    assert guest.disk_wwn('60 00 C2 9d 45 ef 3a 5e-7c 1f 9e 31 a1 2b 8c 2d') == '6000c29d45ef3a5e7c1f9e31a12b8c2d'
    assert guest.disk_wwn(None) is None and guest.disk_wwn('not-a-uuid') is None
    assert guest.wwn_locators(UUID_SDB, '/dev') == [
        '/dev/disk/by-id/wwn-0x6000c29d45ef3a5e7c1f9e31a12b8c2d',
        '/dev/disk/by-id/scsi-36000c29d45ef3a5e7c1f9e31a12b8c2d']


def test_wwn_locator_resolves_and_size_is_checked(tree):
    sys_root, dev_root = tree
    link, real = devices.wait_for_device(guest.wwn_locators(UUID_SDB, dev_root), GIB, timeout=0)
    assert link.endswith('wwn-0x6000c29d45ef3a5e7c1f9e31a12b8c2d') and real == os.path.join(dev_root, 'sdb')
    with pytest.raises(PVError, match='refusing a device that may be another disk'):
        devices.wait_for_device(guest.wwn_locators(UUID_SDB, dev_root), 2 * GIB, timeout=0)


def test_find_by_wwid_without_udev(tree):
    sys_root, dev_root = tree
    assert guest.find_by_wwid(UUID_SDB, sys_root, dev_root) == os.path.join(dev_root, 'sdb')
    assert guest.find_by_wwid(UUID_SDC, sys_root, dev_root) == os.path.join(dev_root, 'sdc')
    assert guest.find_by_wwid('6000C299-0000-0000-0000-000000000000', sys_root, dev_root) is None


def test_scsi_hosts_by_driver_in_pci_order(tree):
    sys_root, _dev = tree
    assert guest.scsi_hosts(('vmw_pvscsi',), sys_root) == [('0000:03:00.0', 2), ('0000:1b:00.0', 3)]
    assert guest.scsi_hosts(('mptspi',), sys_root) == [('0000:13:00.0', 4)]
    assert guest.scsi_hosts(('mptsas',), sys_root) == []
    assert guest.scsi_host_number('0000:1b:00.0', sys_root) == 3


def test_controller_pci_address_from_slot_or_rank(tree):
    sys_root, _dev = tree
    assert guest.controller_pci_address('pvscsi', 0, None, sys_root) == '0000:03:00.0'
    assert guest.controller_pci_address('pvscsi', 1, None, sys_root) == '0000:1b:00.0'
    assert guest.controller_pci_address('pvscsi', 1, 224, sys_root) == '0000:1b:00.0'
    # the slot wins over the rank when vSphere reports it
    assert guest.controller_pci_address('pvscsi', 0, 224, sys_root) == '0000:1b:00.0'
    # an unknown slot falls back to the rank
    assert guest.controller_pci_address('pvscsi', 0, 999, sys_root) == '0000:03:00.0'
    assert guest.controller_pci_address('lsilogic', 0, None, sys_root) == '0000:13:00.0'
    assert guest.controller_pci_address('pvscsi', 2, None, sys_root) is None     # not (yet) in the guest


def test_scsi_by_path_locators(tree):
    sys_root, dev_root = tree
    locs = guest.scsi_locators('pvscsi', 0, 1, None, sys_root, dev_root)
    assert locs == [os.path.join(dev_root, 'disk/by-path/pci-0000:03:00.0-scsi-0:0:1:0')]
    assert devices.wait_for_device(locs, GIB, timeout=0)[1] == os.path.join(dev_root, 'sdb')
    locs = guest.scsi_locators('lsilogic', 0, 0, 192, sys_root, dev_root)
    assert devices.wait_for_device(locs, 512 * 1024 ** 2, timeout=0)[1] == os.path.join(dev_root, 'sdd')
    assert guest.scsi_locators('lsilogicsas', 0, 0, None, sys_root, dev_root) == []


def test_scan_and_rescan(tree):
    sys_root, dev_root = tree
    assert guest.scan_scsi_target('pvscsi', 1, 5, None, sys_root)
    with open(os.path.join(sys_root, 'class/scsi_host/host3/scan')) as f:
        assert f.read() == '0 5 0\n'
    assert guest.rescan_device(os.path.join(dev_root, 'disk/by-id/wwn-0x6000c29d45ef3a5e7c1f9e31a12b8c2d'), sys_root)
    with open(os.path.join(sys_root, 'class/block/sdb/device/rescan')) as f:
        assert f.read() == '1\n'
    assert not guest.rescan_device(os.path.join(dev_root, 'sdd'), sys_root)     # no rescan attribute


def test_bios_uuid_and_byte_swap(tree):
    sys_root, _dev = tree
    assert guest.host_bios_uuid(sys_root) == '4213d1a2-9c3b-8e7f-1a2b-3c4d5e6f7a8b'
    assert guest.uuid_byte_swapped('4213d1a2-9c3b-8e7f-1a2b-3c4d5e6f7a8b') == 'a2d11342-3b9c-7f8e-1a2b-3c4d5e6f7a8b'
    assert guest.uuid_byte_swapped('nope') is None


# -- the backend's locate on the same tree (no vSphere connection is made) ----------------------

@pytest.fixture
def backend(tree):
    pytest.importorskip('pyVmomi')
    from ansible_collections.persistent_volumes.docker.plugins.module_utils.backends.vsphere import VSphereBackend
    sys_root, dev_root = tree
    return VSphereBackend({'hostname': 'vc.invalid', 'username': 'u', 'password': 'p', 'datastore': 'ds1',
                           'guest_sys_root': sys_root, 'guest_dev_root': dev_root})


def volume(size, uuid=None, ctype='pvscsi', bus=0, rank=0, unit=1, slot=None):
    return BackendVolume('v', '[ds1] persistent-volumes/v.vmdk', size, attached_here=True, extra={
        'uuid': uuid, 'controller_type': ctype, 'controller_bus': bus, 'bus_rank': rank, 'unit_number': unit,
        'pci_slot': slot})


def test_backend_locate_by_wwn_first(backend, tree):
    _sys, dev_root = tree
    vol = volume(GIB, uuid=UUID_SDB)
    assert backend.locate(vol, timeout=1) == os.path.join(dev_root, 'sdb')
    assert vol.locators[0] == os.path.join(dev_root, 'disk/by-id/wwn-0x6000c29d45ef3a5e7c1f9e31a12b8c2d')
    assert os.path.join(dev_root, 'disk/by-path/pci-0000:03:00.0-scsi-0:0:1:0') in vol.locators


def test_backend_locate_by_scsi_address_without_uuid(backend, tree):
    _sys, dev_root = tree
    vol = volume(2 * GIB, bus=1, rank=1, unit=2, slot=224)
    assert backend.locate(vol, timeout=1) == os.path.join(dev_root, 'sdc')
    assert vol.locators == [os.path.join(dev_root, 'disk/by-path/pci-0000:1b:00.0-scsi-0:0:2:0')]


def test_backend_locate_refuses_wrong_size(backend):
    with pytest.raises(PVError, match='refusing a device that may be another disk'):
        backend.locate(volume(3 * GIB, uuid=UUID_SDB), timeout=1)


def test_backend_locate_times_out_clearly(backend, tree):
    sys_root, _dev = tree
    with pytest.raises(PVError, match='not visible in this guest'):
        backend.locate(volume(GIB, ctype='pvscsi', bus=3, rank=2, unit=0), timeout=0.3)
    with pytest.raises(PVError, match='timed out after 2.5s'):
        backend.locate(volume(GIB, bus=0, rank=0, unit=9), timeout=2.5)
    with open(os.path.join(sys_root, 'class/scsi_host/host2/scan')) as f:
        assert f.read() == '0 9 0\n'      # asked the kernel to scan the target before giving up


def test_backend_refresh_device_rescans(backend, tree):
    sys_root, dev_root = tree
    backend.refresh_device(volume(GIB, uuid=UUID_SDB), os.path.join(dev_root, 'sdb'), timeout=0)
    with open(os.path.join(sys_root, 'class/block/sdb/device/rescan')) as f:
        assert f.read() == '1\n'
