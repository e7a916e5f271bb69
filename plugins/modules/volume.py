#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: volume
short_description: Persistent block storage bound to a Docker volume, end to end
version_added: 0.1.0
description:
  - Provisions a volume on a storage backend (a loop-file image on this host, an OpenStack Cinder volume
    or a vSphere virtual disk), attaches it to the Docker host, finds its block device by a stable id,
    formats it (only when it carries no signature at all, unless O(force_format)), mounts it by
    filesystem UUID with an fstab entry, and creates a Docker C(local) volume bound to the mountpoint.
  - Data written by a container survives the container, the Docker volume's removal and a reboot.
  - Handles one volume (O(name) and the other top-level options) or a whole list (O(volumes)) in ONE call;
    top-level options are defaults for every list entry. Reads the mount table, fstab, the backend and
    Docker once per call; formats and mounts several volumes in parallel.
  - Growing is done by re-running with a bigger O(size) (storage, device capacity and the filesystem are
    grown online); shrinking is refused.
  - Idempotent; supports check mode (the plan is returned in RV(volumes[].actions)) and diff mode.
author:
  - persistent_volumes.docker contributors (@persistent-volumes)
attributes:
  check_mode:
    support: full
    description: Nothing is changed; RV(volumes[].actions) lists what a real run would do.
  diff_mode:
    support: full
    description: Shows storage, mount, fstab line and Docker volume before and after, per volume.
options:
  name:
    description: Volume name; also the Docker volume name. Letters, digits, C(_), C(.), C(-); at most 64 characters.
    type: str
  volumes:
    description:
      - A list of volumes, each a dict with the same keys as the top-level options (V(name) required).
      - Top-level options other than O(name) serve as defaults for every entry.
    type: list
    elements: dict
  state:
    description:
      - V(present) provisions, attaches, formats, mounts and binds the Docker volume.
      - V(detached) removes the Docker volume, unmounts, removes the fstab entry and detaches the storage, but KEEPS
        the storage and its data (move a cloud volume to another host this way).
      - V(absent) does the same and then deletes the storage and its data.
      - V(detached) and V(absent) are refused while any container (running or stopped) uses the volume, unless O(force).
    type: str
    choices: [present, detached, absent]
    default: present
  backend:
    description:
      - Storage backend.
      - V(device) provisions nothing; it runs the host-side chain on storage already attached to this host
        and found by the stable links in O(backend_options) key C(locators) (with C(size) and C(id)), as returned by
        M(persistent_volumes.docker.cinder_attachment) or M(persistent_volumes.docker.vsphere_disk) run where the
        cloud credentials are (see the C(volumes) role's C(pv_cloud_delegate_to)).
    type: str
    choices: [loop, cinder, vsphere, device]
    default: loop
  size:
    description:
      - Size with a unit, such as V(2GiB), V(512MiB), V(10G) (binary) or V(1GB) (decimal); or bytes. Required with O(state=present).
      - A bigger size than the current one grows the volume and its filesystem online; a smaller one is refused.
    type: str
  fstype:
    description: Filesystem to create. V(xfs) needs at least 300MiB.
    type: str
    choices: [ext4, xfs]
    default: ext4
  mount_path:
    description:
      - Absolute mountpoint. Defaults to C(<root>/mounts/<name>). Must not be C(/), nor under C(/proc), C(/sys), C(/dev), C(/run), C(/boot).
    type: path
  owner:
    description: Owner (name or uid) of the volume's root directory.
    type: str
  group:
    description: Group (name or gid) of the volume's root directory.
    type: str
  mode:
    description: Mode of the volume's root directory, as an octal string such as V('0750').
    type: str
  mount_options:
    description: Mount options written to fstab. V(nofail) keeps a missing volume from blocking the boot.
    type: list
    elements: str
    default: [defaults, nofail]
  mkfs_options:
    description: Extra arguments for C(mkfs.ext4)/C(mkfs.xfs).
    type: list
    elements: str
  labels:
    description: Docker volume labels (the collection adds its own C(io.persistent-volumes.*) labels).
    type: dict
  docker_volume:
    description: Create the Docker volume. V(false) stops the chain at the mount.
    type: bool
    default: true
  force_format:
    description:
      - Format a device that already carries a signature (another filesystem, a partition table, swap, LUKS).
        DESTROYS what is on it. Without it such a device is never formatted.
    type: bool
    default: false
  force:
    description:
      - With O(state=detached) or O(state=absent), stop and remove the containers that use the volume first.
    type: bool
    default: false
  backend_options:
    description:
      - Per-volume backend options, such as C(volume_type) and C(availability_zone) for V(cinder), or
        C(datastore), C(provisioning), C(controller_type) for V(vsphere). See the C(cinder_volume) and C(vsphere_disk) modules.
    type: dict
  adopt_id:
    description: Adopt an existing backend volume that this collection did not create (Cinder volume id, VMDK path).
    type: str
  timeout:
    description: Seconds to wait for the backend and for the device to appear.
    type: int
    default: 300
  root:
    description: Managed directory for the state record, loop images and default mountpoints.
    type: path
    default: /var/lib/persistent-volumes
  cinder:
    description:
      - Connection and placement settings for O(backend=cinder) (as in M(persistent_volumes.docker.cinder_volume)).
    type: dict
    suboptions:
      cloud:
        description: Name of a cloud in C(clouds.yaml) (or a dict of cloud settings); the C(OS_*) environment otherwise.
        type: raw
      auth:
        description: Authentication dict (auth_url, username, password, project_name, ...).
        type: dict
      auth_type:
        description: Keystone auth plugin name.
        type: str
      region_name:
        description: Region.
        type: str
      interface:
        description: Endpoint interface (public, internal, admin).
        type: str
      validate_certs:
        description: Verify TLS certificates.
        type: bool
      ca_cert:
        description: CA bundle.
        type: path
      client_cert:
        description: Client certificate.
        type: path
      client_key:
        description: Client key.
        type: path
      api_timeout:
        description: HTTP timeout in seconds.
        type: int
      server:
        description: The Docker host's Nova server (name or id). Without it the instance metadata (config drive, then the metadata service) names it.
        type: str
      config_drive:
        description:
          - The config drive read when O(cinder.server) is not set, a block device or a directory
            (default C(/dev/disk/by-label/config-2)). V('') (empty) to not look for one.
        type: path
      metadata_url:
        description:
          - The metadata service's C(meta_data.json) URL, asked when O(cinder.server) is not set and the config drive did not tell
            (default U(http://169.254.169.254/openstack/latest/meta_data.json)). V('') (empty) to not ask it.
        type: str
      volume_type:
        description: Volume type for new volumes.
        type: str
      availability_zone:
        description: Availability zone for new volumes.
        type: str
      description:
        description: Description for new volumes.
        type: str
      metadata:
        description: Extra metadata for new volumes.
        type: dict
      force_detach:
        description: Detach a volume attached to another server (only when that server is SHUTOFF, unless O(cinder.fencing=false)).
        type: bool
      fencing:
        description: Require the other server to be SHUTOFF before a force detach (default true).
        type: bool
      timeout:
        description: Seconds to wait for Cinder/Nova state changes.
        type: int
      retry_timeout:
        description: Seconds to keep retrying 5xx answers and connection errors.
        type: int
  vsphere:
    description:
      - Connection and VM settings for O(backend=vsphere) (as in M(persistent_volumes.docker.vsphere_disk)).
    type: dict
    suboptions:
      hostname:
        description: vCenter or ESXi host (C(VMWARE_HOST)).
        type: str
      username:
        description: User (C(VMWARE_USER)).
        type: str
      password:
        description: Password (C(VMWARE_PASSWORD)).
        type: str
      port:
        description: Port (C(VMWARE_PORT)), 443 by default.
        type: int
      validate_certs:
        description: Verify TLS certificates (C(VMWARE_VALIDATE_CERTS)).
        type: bool
      datacenter:
        description: Datacenter of the VM.
        type: str
      vm_name:
        description: The Docker host VM by name.
        type: str
      vm_uuid:
        description: The Docker host VM by BIOS (or instance) uuid.
        type: str
      vm_moid:
        description: The Docker host VM by managed object id.
        type: str
      vm_folder:
        description: VM folder, to tell VMs of the same name apart.
        type: str
      use_instance_uuid:
        description: O(vsphere.vm_uuid) is the instance uuid.
        type: bool
      datastore:
        description: Datastore for new disks.
        type: str
      volume_folder:
        description: Datastore folder for new disks (C(persistent-volumes)).
        type: str
      provisioning:
        description: thin, thick or eagerzeroed.
        type: str
      disk_mode:
        description: Disk mode (C(independent_persistent) by default, so VM snapshots never roll back volume data).
        type: str
      controller_type:
        description: pvscsi, lsilogic or lsilogicsas.
        type: str
      enable_uuid:
        description: Set C(disk.EnableUUID=TRUE) on the VM.
        type: bool
notes:
  - The loop backend keeps sparse images in C(<root>/images) and writes fstab entries with the image path and the
    C(loop) option, so the volume comes back on boot; other backends mount by C(UUID=).
  - Which volumes are ours is recorded in C(<root>/state.json) (written atomically, under a lock) and in Docker labels.
requirements:
  - docker (Docker SDK for Python)
  - e2fsprogs, xfsprogs, util-linux on the Docker host
seealso:
  - module: persistent_volumes.docker.volume_info
'''

EXAMPLES = r'''
- name: One loop-backed volume for a database
  persistent_volumes.docker.volume:
    name: pgdata
    size: 2GiB
    owner: "999"
    mode: "0700"

- name: Several volumes in one call (defaults at the top)
  persistent_volumes.docker.volume:
    fstype: xfs
    size: 1GiB
    volumes:
      - name: app-uploads
      - name: app-cache
        size: 512MiB
        fstype: ext4
        labels:
          app: web

- name: Grow a volume online
  persistent_volumes.docker.volume:
    name: pgdata
    size: 4GiB

- name: Remove a volume and its data (refused while a container uses it)
  persistent_volumes.docker.volume:
    name: app-cache
    state: absent
'''

RETURN = r'''
volumes:
  description: One record per requested volume.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Volume (and Docker volume) name.
      type: str
      sample: pgdata
    backend:
      description: Backend name.
      type: str
      sample: loop
    backend_id:
      description: The backend's id of the storage (image path, Cinder volume id, VMDK path).
      type: str
      sample: /var/lib/persistent-volumes/images/pgdata.img
    device:
      description: Block device on the Docker host.
      type: str
      sample: /dev/loop3
    fstype:
      description: Filesystem type.
      type: str
      sample: ext4
    fs_uuid:
      description: Filesystem UUID.
      type: str
      sample: 6f1d9c1e-3a51-4a47-9d2b-0c5f4b7c2e11
    size:
      description: Size in bytes.
      type: int
      sample: 2147483648
    size_human:
      description: Size with a unit.
      type: str
      sample: 2GiB
    mountpoint:
      description: Where the filesystem is mounted (null unless O(state=present)).
      type: str
      sample: /var/lib/persistent-volumes/mounts/pgdata
    docker_volume:
      description: The Docker volume bound to the mountpoint.
      type: str
      sample: pgdata
    actions:
      description: What was done (or would be done in check mode), in order.
      type: list
      elements: str
      sample: [create, attach, mkfs, mount, fstab, docker_volume]
    changed:
      description: Whether this volume changed.
      type: bool
'''

from ..module_utils.ansible_base import PVModule
from ..module_utils.common import MANAGED_ROOT
from ..module_utils.docker.volumes import DOCKER_IMPORT_ERROR, HAS_DOCKER
from ..module_utils.core.engine import Engine

VOLUME_KEYS = ('state', 'backend', 'size', 'fstype', 'mount_path', 'owner', 'group', 'mode',
               'mount_options', 'mkfs_options', 'labels', 'docker_volume', 'force_format', 'force',
               'backend_options', 'adopt_id', 'timeout')


class VolumeModule(PVModule):
    argument_spec = dict(
        name=dict(type='str'),
        volumes=dict(type='list', elements='dict'),
        state=dict(type='str', default='present', choices=['present', 'detached', 'absent']),
        backend=dict(type='str', default='loop', choices=['loop', 'cinder', 'vsphere', 'device']),
        size=dict(type='str'),
        fstype=dict(type='str', default='ext4', choices=['ext4', 'xfs']),
        mount_path=dict(type='path'),
        owner=dict(type='str'),
        group=dict(type='str'),
        mode=dict(type='str'),
        mount_options=dict(type='list', elements='str', default=['defaults', 'nofail']),
        mkfs_options=dict(type='list', elements='str'),
        labels=dict(type='dict'),
        docker_volume=dict(type='bool', default=True),
        force_format=dict(type='bool', default=False),
        force=dict(type='bool', default=False),
        backend_options=dict(type='dict'),
        adopt_id=dict(type='str'),
        timeout=dict(type='int', default=300),
        root=dict(type='path', default=MANAGED_ROOT),
        cinder=dict(type='dict', options=dict(
            cloud=dict(type='raw'), auth=dict(type='dict', no_log=True), auth_type=dict(type='str'),
            region_name=dict(type='str'), interface=dict(type='str'), validate_certs=dict(type='bool'),
            ca_cert=dict(type='path'), client_cert=dict(type='path'), client_key=dict(type='path', no_log=False),
            api_timeout=dict(type='int'), server=dict(type='str'), config_drive=dict(type='path'),
            metadata_url=dict(type='str'), volume_type=dict(type='str'),
            availability_zone=dict(type='str'), description=dict(type='str'), metadata=dict(type='dict'),
            force_detach=dict(type='bool'), fencing=dict(type='bool'), timeout=dict(type='int'),
            retry_timeout=dict(type='int'))),
        vsphere=dict(type='dict', options=dict(
            hostname=dict(type='str'), username=dict(type='str'), password=dict(type='str', no_log=True),
            port=dict(type='int'), validate_certs=dict(type='bool'), datacenter=dict(type='str'),
            vm_name=dict(type='str'), vm_uuid=dict(type='str'), vm_moid=dict(type='str'),
            vm_folder=dict(type='str'), use_instance_uuid=dict(type='bool'), datastore=dict(type='str'),
            volume_folder=dict(type='str'), provisioning=dict(type='str'), disk_mode=dict(type='str'),
            controller_type=dict(type='str'), enable_uuid=dict(type='bool'))),
    )
    module_kwargs = dict(required_one_of=[('name', 'volumes')],
                         mutually_exclusive=[('name', 'volumes')])
    requirements = (('docker', HAS_DOCKER, DOCKER_IMPORT_ERROR),)

    def specs(self):
        defaults = dict((k, self.params[k]) for k in VOLUME_KEYS)
        if self.params['name'] is not None:
            return [dict(defaults, name=self.params['name'])]
        specs = []
        for index, entry in enumerate(self.params['volumes']):
            unknown = set(entry) - set(VOLUME_KEYS) - {'name'}
            if unknown:
                self.ansible.fail_json(msg='volumes[%d]: unknown key(s) %s' % (index, ', '.join(sorted(unknown))))
            specs.append(dict(defaults, **entry))
        return specs

    def run(self):
        backend_params = {}
        for backend in ('cinder', 'vsphere'):
            given = self.params[backend] or {}
            backend_params[backend] = dict((k, v) for k, v in given.items() if v is not None)
        with self.session(Engine(root=self.params['root'], check_mode=self.check_mode,
                                 backend_params=backend_params)) as engine:
            records, diff = engine.apply(self.specs())
        return self.records_result('volumes', records, any(r['changed'] for r in records), diff)


def main():
    VolumeModule()()


if __name__ == '__main__':
    main()
