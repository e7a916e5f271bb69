# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Docker side of the chain: a ``local`` volume bound to our mountpoint.

Uses the Docker SDK for Python's low-level client; two API calls read the
whole picture (volumes, and containers with their mounts) for a run.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import traceback

from ..common import BACKEND_LABEL, MANAGED_LABEL, PVError

try:
    import docker
    from docker.errors import APIError, DockerException, NotFound
    HAS_DOCKER = True
    DOCKER_IMPORT_ERROR = None
except ImportError:
    HAS_DOCKER = False
    DOCKER_IMPORT_ERROR = traceback.format_exc()
    APIError = DockerException = NotFound = Exception


def bind_options(path):
    return {'type': 'none', 'o': 'bind', 'device': path}


class DockerVolumes(object):
    def __init__(self, base_url=None, timeout=60):
        if not HAS_DOCKER:
            raise PVError('the Docker SDK for Python ("docker" package) is required on the Docker host')
        try:
            self.api = docker.APIClient(base_url=base_url or os.environ.get('DOCKER_HOST') or 'unix:///var/run/docker.sock',
                                        version='auto', timeout=timeout)
        except DockerException as exc:
            raise PVError('cannot reach the Docker engine: %s' % exc)
        self._volumes = None
        self._users = None

    # -- one read per run ----------------------------------------------
    def volumes(self):
        if self._volumes is None:
            try:
                # only the local driver: an unfiltered list asks every volume plugin too,
                # and a dead plugin stalls it for ~15 s
                listing = self.api.volumes(filters={'driver': 'local'}) or {}
            except (APIError, DockerException) as exc:
                raise PVError('cannot list Docker volumes: %s' % exc)
            self._volumes = dict((v['Name'], v) for v in listing.get('Volumes') or [])
        return self._volumes

    def users(self):
        """{volume name: [(container name, state)]} from one container listing."""
        if self._users is None:
            users = {}
            try:
                containers = self.api.containers(all=True)
            except (APIError, DockerException) as exc:
                raise PVError('cannot list Docker containers: %s' % exc)
            for container in containers:
                cname = (container.get('Names') or ['?'])[0].lstrip('/')
                for mount in container.get('Mounts') or []:
                    if mount.get('Type') == 'volume' and mount.get('Name'):
                        users.setdefault(mount['Name'], []).append((cname, container.get('State')))
                    elif mount.get('Type') == 'bind' and mount.get('Source'):
                        users.setdefault('bind:' + mount['Source'], []).append(
                            (cname, container.get('State')))
            self._users = users
        return self._users

    def users_of(self, volume_name, mountpoint=None):
        users = list(self.users().get(volume_name, []))
        if mountpoint:
            for key, value in self.users().items():
                if key.startswith('bind:') and (key[5:] == mountpoint or key[5:].startswith(mountpoint + '/')):
                    users.extend(value)
        return users

    # -- the volume ------------------------------------------------------
    @staticmethod
    def wanted_labels(backend, labels):
        wanted = {MANAGED_LABEL: 'true', BACKEND_LABEL: backend}
        wanted.update(dict((str(k), str(v)) for k, v in (labels or {}).items()))
        return wanted

    def drift(self, name, path, labels):
        """None if absent, [] if as wanted, else the list of differences."""
        current = self.volumes().get(name)
        if current is None:
            return None
        diffs = []
        if current.get('Driver') != 'local':
            diffs.append('driver is %s, not local' % current.get('Driver'))
        opts = current.get('Options') or {}
        if opts != bind_options(path):
            diffs.append('options are %s, not a bind of %s' % (opts, path))
        have = current.get('Labels') or {}
        for key, value in labels.items():
            if have.get(key) != value:
                diffs.append('label %s is %r, not %r' % (key, have.get(key), value))
        return diffs

    def create(self, name, path, labels):
        try:
            vol = self.api.create_volume(name=name, driver='local',
                                         driver_opts=bind_options(path), labels=labels)
        except (APIError, DockerException) as exc:
            raise PVError('cannot create Docker volume %s: %s' % (name, exc))
        self.volumes()[name] = vol
        return vol

    def remove(self, name):
        try:
            self.api.remove_volume(name)
        except NotFound:
            pass
        except (APIError, DockerException) as exc:
            raise PVError('cannot remove Docker volume %s: %s' % (name, exc))
        self.volumes().pop(name, None)

    def remove_containers(self, names):
        for cname in names:
            try:
                self.api.remove_container(cname, force=True)
            except NotFound:
                pass
            except (APIError, DockerException) as exc:
                raise PVError('cannot remove container %s: %s' % (cname, exc))
        self._users = None
