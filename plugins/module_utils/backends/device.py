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

It never provisions, attaches, detaches or deletes anything: with
``state: detached``/``absent`` only the host side is undone, and the caller
detaches/deletes the storage where the credentials are.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ..host import devices
from .base import Backend, BackendVolume, register
from ..common import PVError, parse_size


@register
class DeviceBackend(Backend):
    name = 'device'
    scope = 'local'
    volume_options = ('locators', 'size', 'id')

    def lookup(self, requests):
        found = {}
        for req in requests:
            locators = req.options.get('locators') or []
            if isinstance(locators, str):
                locators = [locators]
            if not locators:
                continue
            for link in locators:
                if not str(link).startswith('/dev/'):
                    raise PVError('volume %s: locator %r is not a path under /dev' % (req.name, link))
            size = req.options.get('size')
            size = parse_size(size, 'backend_options.size') if size is not None else req.size
            found[req.name] = BackendVolume(name=req.name, id=req.options.get('id') or locators[0],
                                            size=size, attached_here=True, attached_to='localhost',
                                            locators=locators)
        return found

    def list_volumes(self):
        return []

    def create(self, request):
        raise PVError('volume %s: the device backend attaches nothing; give backend_options.locators '
                      '(the stable device links of storage already attached to this host)' % request.name)

    def grow(self, volume, new_size):
        raise PVError('volume %s: the device backend cannot grow storage; grow it where it is provisioned '
                      'and pass the new backend_options.size' % volume.name)

    def attach(self, volume):
        return volume

    def locate(self, volume, timeout=60):
        _link, real = devices.wait_for_device(volume.locators, volume.size, timeout, what=volume.name)
        volume.device = real
        return real

    def refresh_device(self, volume, device):
        return None

    def detach(self, volume):
        return volume

    def delete(self, volume):
        return None
