# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ``cinder`` backend: Cinder volumes attached to the Nova server that is the Docker host.

Rule: a thin layer implementing :mod:`.base`'s protocol on top of :mod:`..openstack`
(no SDK call here): volumes in :mod:`..openstack.volumes`, attach/detach and fencing in
:mod:`..openstack.attach`, connection and errors in :mod:`..openstack.client`.

Parameters (the ``cinder`` dict of the ``volume`` module, the options of the
``cinder_*`` modules, or the plugin daemon's config):

``cloud``, ``auth``, ``auth_type``, ``region_name``, ``interface``, ``validate_certs``,
``ca_cert``, ``client_cert``, ``client_key``, ``api_timeout``
    Connection, as in openstack.cloud: ``openstack.connect`` reads
    ``clouds.yaml`` (``cloud``), an ``auth`` dict, or the ``OS_*`` environment.
``server``
    The Docker host's Nova server (name or id). Without it, this machine's
    instance metadata is read: the config drive (a filesystem labelled
    ``config-2``, ``openstack/latest/meta_data.json``), then the metadata
    service ``http://169.254.169.254/openstack/latest/meta_data.json``; its
    ``uuid`` is the server id.
``config_drive``, ``metadata_url``
    Those two sources (defaults above; empty: not used). The config drive is
    a block device (mounted read-only for the read) or a directory.
``volume_type``, ``availability_zone``, ``description``, ``metadata``
    Defaults for new volumes; ``volume_type``, ``availability_zone`` and
    ``description`` may also be given per volume (``backend_options``).
``force_detach`` (false), ``fencing`` (true), ``fence_stop`` (false)
    A volume attached to ANOTHER server is refused, unless ``force_detach``;
    then only when that server is SHUTOFF, unless ``fencing`` is false or ``fence_stop``
    stops it through the Nova API first.
``timeout`` (300), ``retry_timeout`` (60)
    Seconds to wait for Cinder/Nova state changes; seconds to keep retrying
    5xx answers and connection errors (exponential backoff).
``guest_dev_root``
    Where this host's ``/dev`` is (tests only).

Identity and ownership: see :mod:`..openstack.volumes`; the guest device is found only by
stable ids (``/dev/disk/by-id/virtio-<id[:20]>`` ...), never by the device name Nova reports.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

from .base import Backend
from ..common import InUse, Refused
from ..host import devices
from ..openstack.service import Cinder
from ..openstack.volumes import VOLUME_OPTIONS, locators


class CinderBackend(Backend):
    name = 'cinder'
    scope = 'global'
    volume_options = VOLUME_OPTIONS

    def __init__(self, params=None, conn=None):
        super(CinderBackend, self).__init__(params)
        self.cloud = Cinder(self.params, conn)

    @property
    def warnings(self):
        return self.cloud.warnings

    def close(self):
        self.cloud.close()

    def check_host(self):
        """The engine attaches to and detaches from this host: know which server it is before anything."""
        self.cloud.server()

    def lookup(self, requests):
        return self.cloud.volumes.lookup(requests)

    def forget_reads(self):
        """The other servers' states read once per check round (lookups list the volumes afresh)."""
        self.cloud.attachments.forget_reads()

    def check(self, volume, action, request=None):
        """The refusals of grow/attach/detach/delete, made while planning (reads only): not ours,
        attached to another server (fencing rules for attach; always for delete)."""
        if action in ('grow', 'attach', 'detach', 'delete') and not volume.owned:
            raise Refused('Cinder volume %s (%s) was not created by this collection; refusing to %s it '
                          '(adopt it explicitly by id)' % (volume.id, volume.extra.get('display_name'), action))
        if action == 'attach':
            self.cloud.attachments.check_foreign(volume, self.cloud.server())
        if action == 'delete':
            here = self.cloud.client.server_id_or_none()
            others = [s for s in volume.extra.get('attached_servers') or [] if s != here]
            if others:
                raise InUse('volume %s (%s) is attached to server(s) %s; refusing to delete it (detach it there '
                            'first)' % (volume.name, volume.id, ', '.join(others)))

    def list_volumes(self):
        return self.cloud.volumes.list_volumes()

    def create(self, request):
        return self.create_many([request])[0]

    def create_many(self, requests):
        return self.cloud.volumes.create_many(requests)

    def grow(self, volume, new_size):
        return self.cloud.volumes.grow(volume, new_size)

    def attach(self, volume):
        return self.attach_many([volume])[0]

    def attach_many(self, volumes):
        return self.cloud.attachments.attach_many(volumes)

    def locate(self, volume, timeout=60):
        _link, real = devices.wait_for_device(volume.locators or locators(volume.id, self.cloud.volumes.dev_root),
                                              volume.size, timeout,
                                              what='Cinder volume %s (%s)' % (volume.name, volume.id))
        return real

    def refresh_device(self, volume, device):
        """virtio-blk guests see a new capacity by themselves; SCSI disks need a rescan."""
        if not device:
            return None
        base = os.path.basename(os.path.realpath(device))
        rescan = '/sys/class/block/%s/device/rescan' % base
        if os.path.exists(rescan):
            try:
                with open(rescan, 'w') as handle:
                    handle.write('1')
            except (IOError, OSError):
                pass
        return None

    def detach(self, volume):
        """Detach from this host. No-op when not attached here."""
        return self.cloud.attachments.detach_many([volume])[0]

    def delete(self, volume):
        self.cloud.volumes.delete_many([volume])

    def fstab_source(self, volume, device, fs_uuid):
        return 'UUID=%s' % fs_uuid

    def fstab_options(self, volume):
        # the volume may be missing after a reboot (detached meanwhile): do not block the boot
        return ['nofail']
