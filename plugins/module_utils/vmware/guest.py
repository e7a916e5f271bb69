# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Guest side of a vSphere disk: which stable device path a VMDK gets inside the VM.

Two locators, best first:

1. **WWN from the disk uuid.** With ``disk.EnableUUID=TRUE`` on the VM (and a
   power cycle after setting it), a VMDK whose ``backing.uuid`` is
   ``6000C29d-45ef-3a5e-7c1f-9e31a12b8c2d`` shows up as
   ``/dev/disk/by-id/wwn-0x6000c29d45ef3a5e7c1f9e31a12b8c2d`` (and
   ``scsi-36000c29d…``); the kernel's ``/sys/block/sdX/device/wwid`` reads
   ``naa.6000c29d…``.
2. **SCSI address.** The disk sits on SCSI controller *bus* ``B`` at unit ``U``;
   in the guest it is target ``U`` (channel 0, LUN 0) on the SCSI host of that
   controller, i.e. ``/dev/disk/by-path/pci-<controller PCI address>-scsi-0:0:U:0``.
   The controller's PCI address comes from sysfs: through its PCI slot number
   (``/sys/bus/pci/slots/<slotInfo.pciSlotNumber>/address``) when vSphere reports
   one, else as the n-th SCSI host driven by the controller type's driver
   (``vmw_pvscsi``, ``mptspi``, ``mptsas``), ordered by PCI address, where n is
   the rank of bus ``B`` among the VM's controllers of that type.

The size check of :func:`devices.wait_for_device` refuses a device whose size
does not match the disk, so a wrong guess never yields another disk.
``sys_root`` and ``dev_root`` exist for tests (a fake sysfs tree) and for the
test harness; they default to ``/sys`` and ``/dev``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re

DRIVERS = {
    'pvscsi': ('vmw_pvscsi',),
    'lsilogic': ('mptspi',),
    'lsilogicsas': ('mptsas', 'mpt3sas', 'mpt2sas'),
}
_PCI_RE = re.compile(r'^[0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]$')
_HOST_RE = re.compile(r'^host([0-9]+)$')


def disk_wwn(disk_uuid):
    """``6000C29d-45ef-...`` -> ``6000c29d45ef...`` (32 hex digits), None if not one."""
    if not disk_uuid:
        return None
    hexid = re.sub(r'[\s-]', '', str(disk_uuid)).lower()
    if not re.match(r'^[0-9a-f]{32}$', hexid):
        return None
    return hexid


def wwn_locators(disk_uuid, dev_root='/dev'):
    hexid = disk_wwn(disk_uuid)
    if not hexid:
        return []
    base = os.path.join(dev_root, 'disk', 'by-id')
    return [os.path.join(base, 'wwn-0x' + hexid), os.path.join(base, 'scsi-3' + hexid)]


def _read(path):
    try:
        with open(path) as handle:
            return handle.read().strip()
    except (IOError, OSError):
        return None


def _pci_of(path):
    """The last PCI address component of a sysfs device path."""
    for part in reversed(os.path.realpath(path).split('/')):
        if _PCI_RE.match(part):
            return part.lower()
    return None


def scsi_hosts(driver_names, sys_root='/sys'):
    """SCSI hosts driven by one of ``driver_names``: ``[(pci_address, host_number)]`` by PCI address."""
    base = os.path.join(sys_root, 'class', 'scsi_host')
    out = []
    try:
        names = os.listdir(base)
    except OSError:
        return out
    for name in names:
        match = _HOST_RE.match(name)
        if not match:
            continue
        if _read(os.path.join(base, name, 'proc_name')) not in driver_names:
            continue
        pci = _pci_of(os.path.join(base, name, 'device'))
        if pci:
            out.append((pci, int(match.group(1))))
    out.sort()
    return out


def controller_pci_address(controller_type, bus_rank, pci_slot=None, sys_root='/sys'):
    """PCI address (``0000:03:00.0``) of a SCSI controller in the guest, or None if not visible.

    ``bus_rank``: index of the controller's bus number among the VM's
    controllers of the same type (0 for the lowest bus).
    """
    if pci_slot is not None:
        addr = _read(os.path.join(sys_root, 'bus', 'pci', 'slots', str(pci_slot), 'address'))
        if addr:
            addr = addr.lower()
            return addr if _PCI_RE.match(addr) else addr + '.0'
    hosts = scsi_hosts(DRIVERS.get(controller_type, ()), sys_root)
    if 0 <= bus_rank < len(hosts):
        return hosts[bus_rank][0]
    return None


def scsi_host_number(pci_address, sys_root='/sys'):
    """The SCSI host number under a controller's PCI device, or None."""
    base = os.path.join(sys_root, 'class', 'scsi_host')
    try:
        names = os.listdir(base)
    except OSError:
        return None
    for name in sorted(names):
        match = _HOST_RE.match(name)
        if match and _pci_of(os.path.join(base, name, 'device')) == pci_address:
            return int(match.group(1))
    return None


def by_path_locator(pci_address, unit, dev_root='/dev'):
    return os.path.join(dev_root, 'disk', 'by-path',
                        'pci-%s-scsi-0:0:%d:0' % (pci_address, int(unit)))


def scsi_locators(controller_type, bus_rank, unit, pci_slot=None, sys_root='/sys', dev_root='/dev'):
    """``[by-path link]`` for a disk at ``unit`` on the controller, or [] if the controller
    is not visible in the guest (yet)."""
    pci = controller_pci_address(controller_type, bus_rank, pci_slot, sys_root)
    if not pci:
        return []
    return [by_path_locator(pci, unit, dev_root)]


def scan_scsi_target(controller_type, bus_rank, unit, pci_slot=None, sys_root='/sys'):
    """Ask the kernel to scan target ``unit`` of the controller (for controllers without
    hot-plug notification, e.g. LSI Logic). Best effort; returns True if written."""
    pci = controller_pci_address(controller_type, bus_rank, pci_slot, sys_root)
    host = scsi_host_number(pci, sys_root) if pci else None
    if host is None:
        return False
    try:
        with open(os.path.join(sys_root, 'class', 'scsi_host', 'host%d' % host, 'scan'), 'w') as handle:
            handle.write('0 %d 0\n' % int(unit))
        return True
    except (IOError, OSError):
        return False


def rescan_device(device, sys_root='/sys'):
    """After a grow: make the kernel re-read the capacity of a SCSI disk. Best effort."""
    base = os.path.basename(os.path.realpath(device))
    path = os.path.join(sys_root, 'class', 'block', base, 'device', 'rescan')
    if not os.path.exists(path):
        return False
    try:
        with open(path, 'w') as handle:
            handle.write('1\n')
        return True
    except (IOError, OSError):
        return False


def find_by_wwid(disk_uuid, sys_root='/sys', dev_root='/dev'):
    """Device node of the disk whose sysfs ``wwid`` is ``naa.<wwn>`` (no udev needed), or None."""
    hexid = disk_wwn(disk_uuid)
    if not hexid:
        return None
    base = os.path.join(sys_root, 'class', 'block')
    try:
        names = sorted(os.listdir(base))
    except OSError:
        return None
    for name in names:
        wwid = _read(os.path.join(base, name, 'device', 'wwid'))
        if wwid and wwid.lower().replace(' ', '') in ('naa.' + hexid, 't10.' + hexid):
            return os.path.join(dev_root, name)
    return None


def host_bios_uuid(sys_root='/sys'):
    """This machine's SMBIOS uuid (``/sys/class/dmi/id/product_uuid``, root only) or None."""
    value = _read(os.path.join(sys_root, 'class', 'dmi', 'id', 'product_uuid'))
    return value.lower() if value else None


def uuid_byte_swapped(value):
    """The SMBIOS uuid with its first three fields byte-swapped (older VMware guests
    report it that way); None if ``value`` is not a uuid."""
    match = re.match(r'^([0-9a-f]{8})-([0-9a-f]{4})-([0-9a-f]{4})-(.*)$', (value or '').lower())
    if not match:
        return None

    def swap(text):
        return ''.join(reversed([text[i:i + 2] for i in range(0, len(text), 2)]))
    return '%s-%s-%s-%s' % (swap(match.group(1)), swap(match.group(2)), swap(match.group(3)),
                            match.group(4))
