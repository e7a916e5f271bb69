# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ``device`` backend: storage that is already attached to this host.

For split runs where the cloud calls happen elsewhere (the controller, which
holds the credentials: ``cinder_volume``/``cinder_attachment`` or
``vsphere_disk`` with ``delegate_to``) and only the host-side chain runs on
the Docker host. Per volume, ``backend_options`` says where the device shows
up: ``locators`` (stable ``/dev/disk/by-id``/``by-path`` links, as those
modules return them), ``size`` (bytes, or a size string; verified), and an
optional ``id`` (the cloud's volume id, recorded for volume_info).
``scsi`` (a vSphere disk: ``controller_type``, ``bus_rank``, ``unit_number``,
``pci_slot`` as ``vsphere_disk`` returns them) adds the disk's SCSI address
link ``/dev/disk/by-path/pci-<controller>-scsi-0:0:<unit>:0``: the controller's
PCI address is only known inside the guest (its sysfs), not where the API
calls ran.

It never provisions, attaches, detaches or deletes anything: with
``state: detached``/``absent`` only the host side is undone, and the caller
detaches/deletes the storage where the credentials are.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

from ..host import devices
from ..vmware import guest
from .base import Backend, BackendVolume
from ..common import AGAIN, PVError, Refused, parse_size, poll

SCSI_KEYS = ('controller_type', 'bus_rank', 'unit_number', 'pci_slot')


class DeviceBackend(Backend):
    name = 'device'
    scope = 'local'
    volume_options = ('locators', 'size', 'id', 'scsi')

    def __init__(self, params=None):
        super(DeviceBackend, self).__init__(params)
        self.sys_root = os.environ.get('PV_VSPHERE_GUEST_SYS_ROOT') or '/sys'
        self.dev_root = os.environ.get('PV_VSPHERE_GUEST_DEV_ROOT') or '/dev'

    def _scsi(self, name, scsi):
        """Validated ``scsi`` option (a vSphere disk's SCSI address), or None."""
        if not scsi:
            return None
        if not isinstance(scsi, dict) or set(scsi) - set(SCSI_KEYS):
            raise PVError('volume %s: backend_options.scsi must be a mapping with keys %s'
                          % (name, ', '.join(SCSI_KEYS)))
        if scsi.get('controller_type') not in guest.DRIVERS:
            raise PVError('volume %s: backend_options.scsi.controller_type must be one of %s'
                          % (name, ', '.join(sorted(guest.DRIVERS))))
        try:
            out = {'controller_type': scsi['controller_type'], 'bus_rank': int(scsi.get('bus_rank') or 0),
                   'unit_number': int(scsi['unit_number']),
                   'pci_slot': int(scsi['pci_slot']) if scsi.get('pci_slot') is not None else None}
        except (KeyError, TypeError, ValueError):
            raise PVError('volume %s: backend_options.scsi needs an integer unit_number (and bus_rank)' % name)
        return out

    def _scsi_locators(self, scsi):
        return guest.scsi_locators(scsi['controller_type'], scsi['bus_rank'], scsi['unit_number'],
                                   scsi['pci_slot'], self.sys_root, self.dev_root)

    def lookup(self, requests):
        found = {}
        for req in requests:
            locators = req.options.get('locators') or []
            if isinstance(locators, str):
                locators = [locators]
            locators = list(locators)
            scsi = self._scsi(req.name, req.options.get('scsi'))
            if scsi is not None:
                locators += [loc for loc in self._scsi_locators(scsi) if loc not in locators]
            if not locators and scsi is None:
                continue
            for link in locators:
                if not str(link).startswith('/dev/'):
                    raise PVError('volume %s: locator %r is not a path under /dev' % (req.name, link))
            size = req.options.get('size')
            size = parse_size(size, 'backend_options.size') if size is not None else req.size
            vol = BackendVolume(name=req.name, id=req.options.get('id') or (locators or ['scsi'])[0],
                                size=size, attached_here=True, attached_to='localhost',
                                locators=locators)
            if scsi is not None:
                vol.extra['scsi'] = scsi
            found[req.name] = vol
        return found

    def list_volumes(self):
        return []

    def check(self, volume, action, request=None):
        if action == 'create':
            self.create(request)            # refuses: it creates nothing
        if action == 'grow':
            self.grow(volume, None)         # refuses: it grows nothing

    def create(self, request):
        raise Refused('volume %s: the device backend attaches nothing; give backend_options.locators '
                      '(the stable device links of storage already attached to this host)' % request.name)

    def grow(self, volume, new_size):
        raise Refused('volume %s: the device backend cannot grow storage; grow it where it is provisioned '
                      'and pass the new backend_options.size' % volume.name)

    def attach(self, volume):
        return volume

    def locate(self, volume, timeout=60):
        scsi = volume.extra.get('scsi')
        if scsi is not None and not volume.locators:
            # the controller is not visible in this guest (yet): wait for it
            def attempt():
                return self._scsi_locators(scsi) or AGAIN

            def late():
                raise PVError('volume %s: no %s SCSI controller of rank %d is visible in this guest after %ss'
                              % (volume.name, scsi['controller_type'], scsi['bus_rank'], timeout))
            volume.locators = poll(attempt, timeout, late, interval=0.2, max_interval=1.0)
        _link, real = devices.wait_for_device(volume.locators, volume.size, timeout, what=volume.name)
        volume.device = real
        return real

    def refresh_device(self, volume, device):
        return None

    def detach(self, volume):
        return volume

    def delete(self, volume):
        return None
