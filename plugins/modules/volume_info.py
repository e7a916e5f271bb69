#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: volume_info
short_description: Every managed persistent volume on the Docker host, with drift and orphans
version_added: 0.1.0
description:
  - Lists the volumes this collection manages on the host and cross-checks every layer of each one
    (backend id, block device, filesystem, live mount, fstab entry, Docker volume, containers using it).
  - Layers that disagree are reported in RV(volumes[].drift); things that look like ours but have no state
    record (loop images, Docker volumes with our label, fstab entries with our marker, mounts under the managed
    mounts directory) are reported in RV(orphans).
  - An optional JMESPath O(query) reduces the result on the host, for example to the names of unhealthy volumes.
author:
  - persistent_volumes.docker contributors (@persistent-volumes)
attributes:
  check_mode:
    support: full
    description: Read-only; runs the same in check mode.
options:
  names:
    description: Only these volumes (orphans are then not listed).
    type: list
    elements: str
  root:
    description: Managed directory of the state record.
    type: path
    default: /var/lib/persistent-volumes
  docker:
    description: Also read Docker volumes and the containers that use them.
    type: bool
    default: true
  query:
    description:
      - A JMESPath expression applied to a dict with the keys C(volumes) and C(orphans) (as returned);
        its result is returned in RV(query_result).
    type: str
requirements:
  - docker (Docker SDK for Python), unless O(docker=false)
  - jmespath, with O(query)
'''

EXAMPLES = r'''
- name: Everything we manage
  persistent_volumes.docker.volume_info:
  register: pv

- name: Names of volumes whose layers disagree
  persistent_volumes.docker.volume_info:
    query: "volumes[?!healthy].name"
  register: broken

- name: Fail when anything drifted
  ansible.builtin.assert:
    that: broken.query_result | length == 0
'''

RETURN = r'''
volumes:
  description: One entry per managed volume.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Volume name.
      type: str
    backend:
      description: Backend.
      type: str
    backend_id:
      description: Backend id of the storage.
      type: str
    status:
      description: C(ready), C(detached), or C(provisioning) for a run that was interrupted.
      type: str
    device:
      description: Block device now backing the volume, if attached.
      type: str
    fstype:
      description: Filesystem type.
      type: str
    fs_uuid:
      description: Recorded filesystem UUID.
      type: str
    fs_size:
      description: Filesystem size in bytes read from the superblock.
      type: int
    size:
      description: Recorded storage size in bytes.
      type: int
    mountpoint:
      description: Mountpoint.
      type: str
    mounted:
      description: Whether it is mounted now.
      type: bool
    fstab:
      description: The fstab line for the mountpoint.
      type: str
    docker_volume:
      description: The Docker volume's name if it exists.
      type: str
    in_use_by:
      description: Containers that reference the Docker volume.
      type: list
      elements: str
    drift:
      description: Human-readable differences between the layers.
      type: list
      elements: str
    healthy:
      description: True when there is no drift.
      type: bool
orphans:
  description: Leftovers that look like ours but have no state record (C(kind) and C(id)).
  returned: always
  type: list
  elements: dict
query_result:
  description: The result of O(query).
  returned: when O(query) is set
  type: raw
'''

import traceback

from ..module_utils.ansible_base import PVModule
from ..module_utils.common import MANAGED_ROOT, PVError
from ..module_utils.docker.volumes import DOCKER_IMPORT_ERROR, HAS_DOCKER, DockerVolumes
from ..module_utils.core.inventory import collect

try:
    import jmespath
    HAS_JMESPATH = True
    JMESPATH_IMPORT_ERROR = None
except ImportError:
    HAS_JMESPATH = False
    JMESPATH_IMPORT_ERROR = traceback.format_exc()


class VolumeInfoModule(PVModule):
    argument_spec = dict(
        names=dict(type='list', elements='str'),
        root=dict(type='path', default=MANAGED_ROOT),
        docker=dict(type='bool', default=True),
        query=dict(type='str'),
    )

    def run(self):
        if self.params['docker'] and not HAS_DOCKER:
            self.requirements = (('docker', HAS_DOCKER, DOCKER_IMPORT_ERROR),)
            raise PVError('the Docker SDK for Python ("docker" package) is required unless docker=false')
        if self.params['query'] and not HAS_JMESPATH:
            raise PVError('the "jmespath" Python package is required for query')
        docker = DockerVolumes() if self.params['docker'] else None
        result = collect(self.params['root'], docker=docker, names=self.params['names'])
        if self.params['query']:
            try:
                result['query_result'] = jmespath.search(self.params['query'], result)
            except jmespath.exceptions.JMESPathError as exc:
                raise PVError('query %r is not valid JMESPath: %s' % (self.params['query'], exc))
        return result


def main():
    VolumeInfoModule()()


if __name__ == '__main__':
    main()
