#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: cinder_volume
short_description: Create, grow and delete OpenStack Cinder volumes owned by this collection
version_added: 0.1.0
description:
  - Creates a Cinder volume, or finds the one this collection created under that name, and makes it match
    the size (grown by re-running with a bigger O(size); shrinking is refused), description and metadata.
  - Cinder allows duplicate names, so volumes this collection creates carry the ownership metadata
    C(pv_managed=persistent_volumes.docker) and C(pv_name=<name>), set in the create call itself.
    Lookups filter on that metadata; a volume without it is never modified or deleted, even if it has
    the same name. Give O(id) to adopt such a volume explicitly (it is then tagged).
  - Handles one volume (O(name)) or several (O(volumes)) in one call; several new volumes are created in
    parallel and waited for in one batch.
  - O(state=absent) refuses to delete a volume that is attached to a server, unless O(detach=true).
author:
  - persistent_volumes.docker contributors (@persistent-volumes)
extends_documentation_fragment:
  - persistent_volumes.docker.openstack
attributes:
  check_mode:
    support: full
    description: Nothing is changed; RV(volume.actions) tells what a real run would do.
  diff_mode:
    support: full
    description: Size, description, metadata and attachments before and after, per volume.
options:
  name:
    description:
      - Volume name (also the C(pv_name) ownership mark). Letters, digits, C(_), C(.), C(-); at most 64 characters.
      - Required unless O(volumes) is given.
    type: str
  id:
    description:
      - Id of an existing Cinder volume to manage under O(name), even if this collection did not create it
        (adoption; the ownership metadata is added on the first change).
    type: str
    aliases: [adopt_id]
  volumes:
    description:
      - Several volumes in one call; each a dict with the keys O(name), O(id), O(state), O(size), O(volume_type),
        O(availability_zone), O(description), O(metadata), O(detach). Top-level values are the defaults.
    type: list
    elements: dict
  state:
    description: V(present) creates/updates; V(absent) deletes (only volumes this collection owns or adopted).
    type: str
    choices: [present, absent]
    default: present
  size:
    description:
      - Size. A bare number is GiB (as in openstack.cloud.volume); with a unit (V(10GiB), V(1TiB)) it must be a
        whole number of GiB. Required to create.
      - A bigger size than the current one extends the volume (online if attached; the module waits for Nova
        to pass the new size to the guest); a smaller one is refused.
    type: str
  volume_type:
    description: Volume type of a new volume. An existing volume of another type is refused (no retype).
    type: str
  availability_zone:
    description: Availability zone of a new volume.
    type: str
  description:
    description: Volume description.
    type: str
  metadata:
    description:
      - Metadata keys to set (other keys are left alone). The keys C(pv_managed), C(pv_name) and C(pv_token)
        are reserved.
    type: dict
  detach:
    description: With O(state=absent), detach the volume from every server first instead of failing.
    type: bool
    default: false
  wait:
    description:
      - Wait until new volumes are available, extended or deleted.
      - With V(false) the module returns as soon as Cinder accepted the requests (new volumes may still be
        C(creating)); M(persistent_volumes.docker.cinder_attachment) waits for such volumes and attaches each as
        soon as it is available.
    type: bool
    default: true
  timeout:
    description: Seconds to wait for Cinder.
    type: int
    default: 300
seealso:
  - module: persistent_volumes.docker.cinder_attachment
  - module: persistent_volumes.docker.volume
'''

EXAMPLES = r'''
- name: A 10 GiB volume for the database
  persistent_volumes.docker.cinder_volume:
    cloud: mycloud
    name: pgdata
    size: 10
    volume_type: ssd
    metadata:
      app: postgres
  delegate_to: localhost

- name: Grow it (never shrinks)
  persistent_volumes.docker.cinder_volume:
    cloud: mycloud
    name: pgdata
    size: 20GiB

- name: Several volumes created in parallel, with module_defaults for the connection
  module_defaults:
    group/persistent_volumes.docker.openstack:
      cloud: mycloud
  persistent_volumes.docker.cinder_volume:
    size: 5
    volumes:
      - name: uploads
      - name: cache
        size: 1

- name: Take over a volume made by hand
  persistent_volumes.docker.cinder_volume:
    cloud: mycloud
    name: legacy-data
    id: 4e0b4bfa-2b42-44d5-9d49-1f2d4b5b2a10

- name: Delete, detaching it first if needed
  persistent_volumes.docker.cinder_volume:
    cloud: mycloud
    name: cache
    state: absent
    detach: true
'''

RETURN = r'''
volume:
  description: The volume, when called with O(name).
  returned: success, with O(name)
  type: dict
  contains:
    id:
      description: Cinder volume id (V(null) in check mode for a volume to be created).
      type: str
      sample: 0b8ef2ad-0d7d-4c8d-a4a8-5f2a6b1c9e33
    name:
      description: Name (the C(pv_name) mark).
      type: str
      sample: pgdata
    size:
      description: Size in GiB.
      type: int
      sample: 10
    size_bytes:
      description: Size in bytes.
      type: int
      sample: 10737418240
    status:
      description: Cinder status (V(deleted) after deletion).
      type: str
      sample: available
    volume_type:
      description: Volume type.
      type: str
      sample: __DEFAULT__
    availability_zone:
      description: Availability zone.
      type: str
      sample: nova
    description:
      description: Description.
      type: str
    metadata:
      description: Metadata, including the ownership marks.
      type: dict
      sample: {pv_managed: persistent_volumes.docker, pv_name: pgdata}
    owned:
      description: Whether the volume carries this collection's ownership marks.
      type: bool
    attachments:
      description: Servers it is attached to (C(server_id), C(attachment_id), C(device) as Nova reports it).
      type: list
      elements: dict
    locators:
      description: Stable device paths under which an attached volume shows up in a guest.
      type: list
      elements: str
      sample: [/dev/disk/by-id/virtio-0b8ef2ad-0d7d-4c8d-a]
    actions:
      description: What was (or in check mode would be) done, from V(create), V(adopt), V(grow), V(update), V(detach), V(delete).
      type: list
      elements: str
      sample: [create]
volumes:
  description: One record per volume (same keys as RV(volume)).
  returned: always
  type: list
  elements: dict
'''

from ..module_utils.ansible_base import PVModule
from ..module_utils.common import PVError
from ..module_utils.backends import cinder as bc

VOLUME_KEYS = ('name', 'id', 'state', 'size', 'volume_type', 'availability_zone', 'description',
               'metadata', 'detach')


class CinderVolumeModule(PVModule):
    argument_spec = dict(
        bc.argument_spec(),
        name=dict(type='str'),
        id=dict(type='str', aliases=['adopt_id']),
        volumes=dict(type='list', elements='dict'),
        state=dict(type='str', default='present', choices=['present', 'absent']),
        size=dict(type='str'),
        volume_type=dict(type='str'),
        availability_zone=dict(type='str'),
        description=dict(type='str'),
        metadata=dict(type='dict'),
        detach=dict(type='bool', default=False),
        wait=dict(type='bool', default=True),
        timeout=dict(type='int', default=300),
    )
    module_kwargs = dict(
        required_one_of=[('name', 'volumes')],
        mutually_exclusive=[('name', 'volumes')],
    )
    requirements = (('openstacksdk', bc.HAS_OPENSTACKSDK, bc.OPENSTACKSDK_IMPORT_ERROR),)

    def specs(self):
        p = self.params
        raw = p['volumes'] if p['volumes'] is not None else [dict(name=p['name'])]
        specs = []
        for item in raw:
            unknown = set(item) - set(VOLUME_KEYS)
            if unknown:
                raise PVError('unknown key(s) in volumes: %s (known: %s)'
                              % (', '.join(sorted(unknown)), ', '.join(VOLUME_KEYS)))
            spec = dict((k, item.get(k, p.get(k))) for k in VOLUME_KEYS)
            if p['volumes'] is not None and 'id' not in item:
                spec['id'] = None           # an id never applies to every list entry
            if not spec['name']:
                raise PVError('every entry of volumes needs a name')
            if spec['state'] not in ('present', 'absent'):
                raise PVError('volume %s: state must be present or absent' % spec['name'])
            spec['size'] = bc.parse_gib(spec['size'], 'volume %s: size' % spec['name'])
            if spec['metadata'] is not None and not isinstance(spec['metadata'], dict):
                raise PVError('volume %s: metadata must be a dict' % spec['name'])
            specs.append(spec)
        return specs

    def run(self):
        specs = self.specs()
        with self.session(bc.CinderBackend(dict(self.params))) as backend:
            records, changed, diff = bc.ensure_volumes(backend, specs, check_mode=self.check_mode)
        return self.records_result('volumes', records, changed, diff,
                                   one='volume' if self.params['name'] else None)


def main():
    CinderVolumeModule()()


if __name__ == '__main__':
    main()
