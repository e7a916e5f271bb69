#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: cinder_attachment
short_description: Attach Cinder volumes to a Nova server (the Docker host) and tell where they show up
version_added: 0.1.0
description:
  - Attaches (O(state=present)) or detaches (O(state=absent)) Cinder volumes to/from a Nova server, idempotently.
  - Returns the attachment and the B(stable device ids) under which the volume appears inside the guest
    (C(/dev/disk/by-id/virtio-<id[:20]>), C(virtio-<id>), C(scsi-0QEMU_QEMU_HARDDISK_<id[:20]>),
    C(scsi-0QEMU_QEMU_HARDDISK_<id>), C(wwn-0x<id without dashes>)). The device name Nova reports
    (RV(attachment.device_hint)) is only a hint that KVM ignores; never use it to find the disk.
  - A volume attached to ANOTHER server is refused, unless O(force_detach=true); even then only when that
    server is C(SHUTOFF) (fencing; a running server may still write to it), unless O(fencing=false), or
    O(fence_stop=true) asks to stop that server through the Nova API first.
  - Several volumes (O(volumes)) are attached in one call and waited for in one batch. Volumes still being
    created (for example by M(persistent_volumes.docker.cinder_volume) with O(persistent_volumes.docker.cinder_volume#module:wait=false))
    are waited for, and each is attached as soon as it is available, so creating and attaching overlap.
author:
  - persistent_volumes.docker contributors (@persistent-volumes)
extends_documentation_fragment:
  - persistent_volumes.docker.openstack
attributes:
  check_mode:
    support: full
    description: Nothing is changed; refusals (attached elsewhere, fencing) are reported as in a real run.
  diff_mode:
    support: full
    description: The servers each volume is attached to, before and after.
options:
  volume:
    description:
      - The volume, by name (only volumes this collection created, see M(persistent_volumes.docker.cinder_volume))
        or by id (any volume).
      - Required unless O(volumes) is given.
    type: str
  volumes:
    description: Several volumes (names or ids), attached or detached in one call.
    type: list
    elements: str
  server:
    description:
      - The Nova server, by name or id.
      - If not set, the server the module runs on is used, found in its instance metadata. First the config drive
        (a filesystem labelled C(config-2), file C(openstack/latest/meta_data.json)), then the metadata
        service at U(http://169.254.169.254/openstack/latest/meta_data.json); its C(uuid) field is the server id.
        See O(config_drive) and O(metadata_url).
    type: str
  config_drive:
    description:
      - Where the config drive is, read when O(server) is not set; a block device (mounted read-only for the
        time of the read) or a directory, holding C(openstack/latest/meta_data.json).
      - Skipped when it does not exist. V('') (empty) to not look for a config drive.
    type: path
    default: /dev/disk/by-label/config-2
  metadata_url:
    description:
      - URL of the metadata service's C(meta_data.json), asked when O(server) is not set and the config drive
        did not tell. V('') (empty) to not ask it.
    type: str
    default: http://169.254.169.254/openstack/latest/meta_data.json
  state:
    description: V(present) attaches, V(absent) detaches from O(server).
    type: str
    choices: [present, absent]
    default: present
  force_detach:
    description:
      - Take over a volume attached to another server by detaching it there first.
      - Only done when that server is C(SHUTOFF), unless O(fencing=false).
    type: bool
    default: false
  fencing:
    description:
      - With O(force_detach), refuse unless the other server is C(SHUTOFF). Disable only if you know the other
        server no longer writes to the volume (for example it is being rebuilt).
    type: bool
    default: true
  fence_stop:
    description:
      - With O(force_detach) and O(fencing), when the other server is not C(SHUTOFF) (for example a dead Docker
        host that Nova still reports C(ACTIVE)), B(stop it) through the Nova API first (C(stop), as
        C(openstack server stop) does), wait until Nova reports it C(SHUTOFF) (at most O(timeout) seconds;
        nothing is detached when it does not get there), then force-detach.
      - Without it such a volume is refused and nothing is changed. In check mode the servers that would be
        stopped are reported (RV(attachment.stopped_servers), and in the diff), nothing is stopped.
    type: bool
    default: false
  attached_elsewhere:
    description:
      - What O(state=present) does with a volume attached to ANOTHER server when O(force_detach) is not set.
      - V(fail) refuses it (the run fails, nothing is changed).
      - V(skip) leaves it where it is, attached to the other server; it is not attached here, its record
        tells where it lives (RV(attachment.attached_elsewhere)), and a warning says so. The
        C(persistent_volumes.docker.volumes) role uses it, so a host whose volumes were moved or failed
        over to another host never takes them back; it cleans up its own traces of them instead.
    type: str
    choices: [fail, skip]
    default: fail
  wait:
    description: Wait until the volumes are attached (C(in-use)) or detached.
    type: bool
    default: true
  timeout:
    description: Seconds to wait.
    type: int
    default: 300
seealso:
  - module: persistent_volumes.docker.cinder_volume
  - module: persistent_volumes.docker.volume
'''

EXAMPLES = r'''
- name: Attach pgdata to the Docker host's server
  persistent_volumes.docker.cinder_attachment:
    cloud: mycloud
    volume: pgdata
    server: docker-host-1
  delegate_to: localhost
  register: att

- name: Wait for the disk inside the guest by its stable id
  ansible.builtin.wait_for:
    path: "{{ att.attachments[0].locators[0] }}"

- name: Move a volume from a failed (stopped) host to this one
  persistent_volumes.docker.cinder_attachment:
    cloud: mycloud
    volume: pgdata
    server: docker-host-2
    force_detach: true

- name: Fail over from a dead host that the cloud still reports ACTIVE (stop it through Nova first)
  persistent_volumes.docker.cinder_attachment:
    cloud: mycloud
    volume: pgdata
    server: docker-host-2
    force_detach: true
    fence_stop: true

- name: Detach
  persistent_volumes.docker.cinder_attachment:
    cloud: mycloud
    volumes: [uploads, cache]
    server: docker-host-1
    state: absent
'''

RETURN = r'''
attachment:
  description: The attachment, when called with O(volume).
  returned: success, with O(volume)
  type: dict
  contains:
    volume_id:
      description: Cinder volume id.
      type: str
      sample: 0b8ef2ad-0d7d-4c8d-a4a8-5f2a6b1c9e33
    volume_name:
      description: Volume name (C(pv_name) mark, or the Cinder name).
      type: str
      sample: pgdata
    server_id:
      description: Nova server id.
      type: str
    server_name:
      description: Nova server name.
      type: str
      sample: docker-host-1
    attachment_id:
      description: Cinder attachment id (V(null) when detached).
      type: str
    device_hint:
      description: The device name Nova reports. NOT where the disk is in a KVM guest; use RV(attachment.locators).
      type: str
      sample: /dev/vdb
    status:
      description: Cinder status of the volume.
      type: str
      sample: in-use
    size:
      description: Size in GiB.
      type: int
    locators:
      description: Stable device paths to look for in the guest, most likely first.
      type: list
      elements: str
      sample: [/dev/disk/by-id/virtio-0b8ef2ad-0d7d-4c8d-a, /dev/disk/by-id/virtio-0b8ef2ad-0d7d-4c8d-a4a8-5f2a6b1c9e33]
    changed:
      description: Whether this volume was attached/detached by this run.
      type: bool
    attached_elsewhere:
      description:
        - With O(attached_elsewhere=skip), the names of the other servers the volume is attached to, where it
          was left (it is NOT attached to O(server)); empty otherwise.
      type: list
      elements: str
      sample: [docker-host-2]
    stopped_servers:
      description:
        - Names of the servers stopped through the Nova API (O(fence_stop)) to take this volume over
          (in check mode, those that would be stopped).
      type: list
      elements: str
      sample: [docker-host-1]
attachments:
  description: One record per volume (same keys as RV(attachment)).
  returned: always
  type: list
  elements: dict
'''

from ..module_utils.ansible_base import PVModule
from ..module_utils.openstack import client as osc
from ..module_utils.openstack import service
from ..module_utils.openstack import spec as osspec


class CinderAttachmentModule(PVModule):
    argument_spec = dict(
        osspec.connection_spec(),
        volume=dict(type='str'),
        volumes=dict(type='list', elements='str'),
        state=dict(type='str', default='present', choices=['present', 'absent']),
        wait=dict(type='bool', default=True),
        attached_elsewhere=dict(type='str', default='fail', choices=['fail', 'skip']),
    )
    argument_spec.update(osspec.server_spec())
    argument_spec.update(osspec.wait_spec())
    module_kwargs = dict(
        required_one_of=[('volume', 'volumes')],
        mutually_exclusive=[('volume', 'volumes')],
    )
    requirements = (('openstacksdk', osc.HAS_OPENSTACKSDK, osc.OPENSTACKSDK_IMPORT_ERROR),)

    def run(self):
        refs = [self.params['volume']] if self.params['volume'] else list(self.params['volumes'])
        with self.session(service.Cinder(dict(self.params))) as cinder:
            records, changed, diff = service.ensure_attachments(
                cinder, refs, self.params['state'], check_mode=self.check_mode,
                attached_elsewhere=self.params['attached_elsewhere'])
        return self.records_result('attachments', records, changed, diff,
                                   one='attachment' if self.params['volume'] else None)


def main():
    CinderAttachmentModule()()


if __name__ == '__main__':
    main()
