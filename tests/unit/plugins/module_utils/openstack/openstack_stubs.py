# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Stubs of openstacksdk's volumes and a Cinder whose reads are stubbed (unit tests only)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.persistent_volumes.docker.plugins.module_utils.openstack import service
from ansible_collections.persistent_volumes.docker.plugins.module_utils.openstack import volumes as osv

GIB = 1024 ** 3
VID = '0b8ef2ad-0d7d-4c8d-a4a8-5f2a6b1c9e33'


class Raw(object):
    def __init__(self, id=VID, name='v', size=1, status='available', metadata=None, attachments=None,
                 created_at='2020-01-01T00:00:00.000000'):
        self.id, self.name, self.size, self.status = id, name, size, status
        self.created_at = created_at
        self.metadata = metadata if metadata is not None else {}
        self.attachments = attachments or []
        self.volume_type, self.availability_zone, self.description = '__DEFAULT__', 'nova', None
        self.is_multiattach = False


def ours(name, id=VID, **kw):
    return Raw(id=id, name=name, metadata={osv.OWNER_KEY: osv.OWNER_VALUE, osv.NAME_KEY: name}, **kw)


class StubVolumes(osv.Volumes):
    """Volumes with the two reads stubbed: ``listed`` (our marked volumes) and ``by_id``."""

    listed = ()
    by_id_map = {}

    def list_owned(self, name=None):
        return [r for r in self.listed if name is None or r.metadata.get(osv.NAME_KEY) == name]

    def get(self, volume_id):
        return self.by_id_map.get(volume_id)


def stub_cinder(listed=(), by_id=None, conn=None, **params):
    """A :class:`service.Cinder` over a fake connection whose reads return ``listed``/``by_id``."""
    params = dict(params, retry_timeout=params.get('retry_timeout', 2))
    cinder = service.Cinder(params, conn=conn if conn is not None else object())
    vols = StubVolumes(cinder.client, params)
    vols.listed = list(listed)
    vols.by_id_map = dict(by_id or {})
    cinder.volumes = vols
    cinder.attachments.volumes = vols
    return cinder
