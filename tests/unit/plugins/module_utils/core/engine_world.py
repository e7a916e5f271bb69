# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A world for the engine that needs no root: state store, host snapshot, Docker and a backend,
all in memory (unit tests only). Every mutating call is recorded, so a test can assert that a
refused run called nothing."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.persistent_volumes.docker.plugins.module_utils.backends.base import Backend, BackendVolume
from ansible_collections.persistent_volumes.docker.plugins.module_utils.common import MANAGED_LABEL, PVError
from ansible_collections.persistent_volumes.docker.plugins.module_utils.core.engine import Engine
from ansible_collections.persistent_volumes.docker.plugins.module_utils.host import chain as host

MIB = 1024 ** 2


class MemoryStore(object):
    def __init__(self, volumes=None):
        self.volumes = dict(volumes or {})
        self.locked = False
        self.saves = 0

    def lock(self):
        self.locked = True

    def load(self):
        """Check mode on a host where nothing ran yet reads without locking (no directory made)."""

    def unlock(self):
        self.locked = False

    def save(self):
        self.saves += 1


class FakeHost(host.HostSnapshot):
    """A host snapshot from mountinfo text and an fstab file, with canned device reads:
    ``devices`` = {device: {'devno': 'M:m', 'fs': (fstype, uuid, size) or None, 'signature': {...}}}."""

    def __init__(self, fstab_path, mountinfo='', devices=None, ownership=None):
        super(FakeHost, self).__init__(fstab_path, mountinfo=mountinfo)
        self.devices = dict(devices or {})
        self.ownership = ownership or {}

    def device_number(self, device):
        return self.devices[device]['devno']

    def read_superblock(self, device):
        return self.devices[device].get('fs')

    def probe_signatures(self, device):
        return self.devices[device].get('signature') or {}

    def ownership_diff(self, path, owner=None, group=None, mode=None):
        return dict(self.ownership.get(path) or {})


class FakeDocker(object):
    def __init__(self, volumes=None, users=None):
        self._volumes = dict(volumes or {})
        self._users = dict(users or {})     # volume name -> [(container, state)]
        self.calls = []

    def volumes(self):
        return self._volumes

    def users_of(self, name, mountpoint=None):
        return list(self._users.get(name, []))

    @staticmethod
    def wanted_labels(backend, labels):
        wanted = {MANAGED_LABEL: 'true', 'io.persistent-volumes.backend': backend}
        wanted.update(labels or {})
        return wanted

    def drift(self, name, path, labels):
        return None if name not in self._volumes else []

    def create(self, name, path, labels):
        self.calls.append(('create', name))
        self._volumes[name] = {'Labels': labels}

    def remove(self, name):
        self.calls.append(('remove', name))
        self._volumes.pop(name, None)

    def remove_containers(self, names):
        self.calls.append(('remove_containers', tuple(names)))


class StubBackend(Backend):
    """A backend over a dict of volumes; ``fail`` = {method: message} makes a call fail."""

    def __init__(self, name='loop', volumes=None, fail=None):
        super(StubBackend, self).__init__({})
        self.name = name
        self.volumes = dict(volumes or {})
        self.fail = dict(fail or {})
        self.calls = []

    def _maybe_fail(self, method):
        if method in self.fail:
            raise PVError(self.fail[method])

    def lookup(self, requests):
        return dict((r.name, self.volumes[r.name]) for r in requests if r.name in self.volumes)

    def create(self, request):
        self.calls.append(('create', request.name))
        self._maybe_fail('create')
        return BackendVolume(request.name, 'id-' + request.name, request.size, extra={'fresh': True})

    def create_many(self, requests):
        self.calls.append(('create_many', tuple(r.name for r in requests)))
        self._maybe_fail('create_many')
        return [BackendVolume(r.name, 'id-' + r.name, r.size, extra={'fresh': True}) for r in requests]

    def grow(self, volume, new_size):
        self.calls.append(('grow', volume.name))
        self._maybe_fail('grow')
        volume.size = new_size
        return volume

    def attach(self, volume):
        self.calls.append(('attach', volume.name))
        self._maybe_fail('attach')
        volume.attached_here = True
        return volume

    def attach_many(self, volumes):
        self.calls.append(('attach_many', tuple(v.name for v in volumes)))
        self._maybe_fail('attach_many')
        for vol in volumes:
            vol.attached_here = True
        return list(volumes)

    def locate(self, volume, timeout=60):
        self._maybe_fail('locate')
        return '/dev/fake-' + volume.name

    def detach(self, volume):
        self.calls.append(('detach', volume.name))
        self._maybe_fail('detach')
        volume.attached_here = False
        return volume

    def delete(self, volume):
        self.calls.append(('delete', volume.name))
        self._maybe_fail('delete')

    def fstab_source(self, volume, device, fs_uuid):
        return 'UUID=%s' % fs_uuid


def volume(name, size=64 * MIB, attached=True, owned=True, **extra):
    return BackendVolume(name, 'id-' + name, size, attached_here=attached, owned=owned, extra=extra)


def engine(tmp_path, backend, check_mode=True, host_snapshot=None, docker=None, store=None):
    """An Engine over the in-memory world; ``tmp_path`` holds its fstab and root. Only ``backend``
    exists: a spec naming another backend fails instead of reaching a real one."""
    fstab = tmp_path / 'fstab'
    if not fstab.exists():
        fstab.write_text('')
    snap = host_snapshot or FakeHost(str(fstab))
    return Engine(root=str(tmp_path / 'root'), fstab_path=str(fstab), check_mode=check_mode,
                  docker=docker if docker is not None else FakeDocker(),
                  state_store=store if store is not None else MemoryStore(),
                  host_snapshot=lambda: snap, backends={backend.name: backend}, only_backends=True)
