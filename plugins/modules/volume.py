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
        and found by the stable links in O(backend_options) key C(locators) (with C(size) and C(id); for a vSphere
        disk also C(scsi), its C(controller_type), C(bus_rank), C(unit_number) and C(pci_slot), resolved to the
        C(/dev/disk/by-path) link through this host's sysfs), as returned by
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
  check_packages:
    description:
      - Debian packages this host must have, checked before anything else with one C(dpkg-query) (read-only, offline,
        also in check mode; a host without dpkg has none of them).
      - When one is missing the module fails having changed nothing, and returns the missing ones in
        RV(missing_packages) and the host's C(/etc/os-release) family in RV(os_family). The C(volumes) role passes
        its package list here when C(pv_install_dependencies) is true, installs what is missing (Debian family only)
        and calls the module again, so the common case (nothing missing) costs no extra task or round trip.
    type: list
    elements: str
    version_added: 1.1.0
  cinder:
    description:
      - >-
        Connection, server and placement settings for O(backend=cinder), with the same options, aliases and defaults as
        M(persistent_volumes.docker.cinder_volume) and M(persistent_volumes.docker.cinder_attachment) (one spec).
    type: dict
    suboptions:
      cloud:
        description:
          - Named cloud from C(clouds.yaml), or a dict with a whole cloud configuration.
          - Without O(cinder.cloud) and O(cinder.auth), the E(OS_CLOUD) or E(OS_AUTH_URL), E(OS_USERNAME), ...
            environment variables are used.
        type: raw
      auth:
        description: Authentication dict (C(auth_url), C(username), C(password), C(project_name), ...).
        type: dict
      auth_type:
        description: Keystone authentication plugin, such as V(password), V(token), V(v3applicationcredential).
        type: str
      region_name:
        description: Region of the cloud.
        type: str
      interface:
        description: Endpoint interface of the service catalog.
        type: str
        choices: [admin, internal, public]
        default: public
        aliases: [endpoint_type]
      validate_certs:
        description: Verify TLS certificates (default from the cloud config, else V(true)).
        type: bool
        aliases: [verify]
      ca_cert:
        description: CA bundle to verify the endpoints' certificates with.
        type: str
        aliases: [cacert]
      client_cert:
        description: Client certificate (PEM) for TLS client authentication.
        type: str
        aliases: [cert]
      client_key:
        description: Key of O(cinder.client_cert).
        type: str
        aliases: [key]
      api_timeout:
        description: Timeout in seconds of each API request.
        type: int
      retry_timeout:
        description: Seconds to keep retrying HTTP 500/502/503/504 answers and connection errors (backoff 0.5 s to 5 s).
        type: int
        default: 60
      sdk_log_path:
        description: Path of a file openstacksdk logs its requests to (as in openstack.cloud); none when not set.
        type: str
      sdk_log_level:
        description: Level of that log; V(DEBUG) adds the HTTP requests and answers (credentials included).
        type: str
        choices: [INFO, DEBUG]
        default: INFO
      server:
        description: The Docker host's Nova server (name or id). Without it the instance metadata (config drive, then the metadata service) names it.
        type: str
      config_drive:
        description:
          - The config drive read when O(cinder.server) is not set, a block device or a directory.
            V('') (empty) to not look for one.
        type: path
        default: /dev/disk/by-label/config-2
      metadata_url:
        description:
          - The metadata service's C(meta_data.json) URL, asked when O(cinder.server) is not set and the config drive did not tell.
            V('') (empty) to not ask it.
        type: str
        default: http://169.254.169.254/openstack/latest/meta_data.json
      force_detach:
        description: Detach a volume attached to another server (only when that server is SHUTOFF, unless O(cinder.fencing=false)).
        type: bool
        default: false
      fencing:
        description: Require the other server to be SHUTOFF before a force detach.
        type: bool
        default: true
      fence_stop:
        description:
          - With O(cinder.force_detach) and O(cinder.fencing), when the other server is not SHUTOFF, stop it through
            the Nova API first (C(stop)), wait until Nova reports it SHUTOFF (at most O(cinder.timeout) seconds),
            then force-detach. Without it such a volume is refused.
        type: bool
        default: false
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
      timeout:
        description: Seconds to wait for Cinder/Nova state changes.
        type: int
        default: 300
  vsphere:
    description:
      - >-
        Connection, VM and placement settings for O(backend=vsphere), with the same options, aliases, defaults and
        environment fallbacks as M(persistent_volumes.docker.vsphere_disk) (one spec).
    type: dict
    suboptions:
      hostname:
        description: vCenter or ESXi host; E(VMWARE_HOST) when not set.
        type: str
      username:
        description: User; E(VMWARE_USER) when not set.
        type: str
        aliases: [admin, user]
      password:
        description: Password; E(VMWARE_PASSWORD) when not set.
        type: str
        aliases: [pass, pwd]
      port:
        description: HTTPS port; E(VMWARE_PORT) when not set.
        type: int
        default: 443
      validate_certs:
        description: Verify the server's TLS certificate; E(VMWARE_VALIDATE_CERTS) when not set.
        type: bool
        default: true
      datacenter:
        description: Datacenter of the VM.
        type: str
      vm_name:
        description: The Docker host VM by name (without O(vsphere.vm_name), O(vsphere.vm_uuid) and O(vsphere.vm_moid), this machine's own VM).
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
        default: false
      datastore:
        description: Datastore for new disks.
        type: str
      volume_folder:
        description: Datastore folder for new disks.
        type: str
        default: persistent-volumes
      provisioning:
        description: Provisioning of new disks.
        type: str
        choices: [thin, thick, eagerzeroed]
        default: thin
      disk_mode:
        description: Disk mode (V(independent_persistent) when not set, so VM snapshots never roll back volume data).
        type: str
        choices: [independent_persistent, persistent, independent_nonpersistent]
      controller_type:
        description: SCSI controller type for new controllers.
        type: str
        choices: [pvscsi, lsilogic, lsilogicsas]
        default: pvscsi
      enable_uuid:
        description: Set C(disk.EnableUUID=TRUE) on the VM (stable disk ids in the guest).
        type: bool
        default: true
      force_detach:
        description: Take over a disk attached to another VM (only when that VM is poweredOff, unless O(vsphere.fencing=false)).
        type: bool
        default: false
      fencing:
        description: Require the other VM to be poweredOff before a force detach.
        type: bool
        default: true
      fence_stop:
        description:
          - With O(vsphere.force_detach) and O(vsphere.fencing), power a poweredOn other VM off through the vSphere API
            first, wait until it is poweredOff, then force-detach (without it such a VM is refused).
        type: bool
        default: false
notes:
  - The loop backend keeps sparse images in C(<root>/images) and writes fstab entries with the image path and the
    C(loop) option, so the volume comes back on boot; other backends mount by C(UUID=).
  - Which volumes are ours is recorded in C(<root>/state.json) (written atomically, under a lock) and in Docker labels.
extends_documentation_fragment:
  - persistent_volumes.docker.docker
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
missing_packages:
  description: The packages of O(check_packages) that are not installed (the module then changed nothing and failed).
  returned: failure, when O(check_packages) found missing packages
  type: list
  elements: str
  sample: [xfsprogs]
  version_added: 1.1.0
os_family:
  description: C(ID) followed by the words of C(ID_LIKE) from C(/etc/os-release) (C([unknown]) without the file).
  returned: failure, when O(check_packages) found missing packages
  type: list
  elements: str
  sample: [ubuntu, debian]
  version_added: 1.1.0
volume:
  description:
    - The volume's record when the module was called with O(name) (the same dict as the only element of RV(volumes)),
      so a single-volume task can use C(result.volume.mountpoint).
  returned: success, with O(name)
  type: dict
  sample:
    name: pgdata
    backend: loop
    device: /dev/loop3
    fstype: ext4
    size: 2147483648
    size_human: 2GiB
    mountpoint: /var/lib/persistent-volumes/mounts/pgdata
    docker_volume: pgdata
    actions: [create, attach, mkfs, mount, fstab, docker_volume]
    changed: true
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

from ansible.module_utils.basic import env_fallback

from ..module_utils.ansible_base import PVModule
from ..module_utils.backends import registry
from ..module_utils.common import MANAGED_ROOT
from ..module_utils.docker.client import docker_argument_spec
from ..module_utils.docker.volumes import DOCKER_IMPORT_ERROR, HAS_DOCKER, DockerVolumes
from ..module_utils.core.engine import Engine
from ..module_utils.host import packages
from ..module_utils.openstack import spec as osspec
from ..module_utils.vmware import spec as vspec

VOLUME_KEYS = ('state', 'backend', 'size', 'fstype', 'mount_path', 'owner', 'group', 'mode',
               'mount_options', 'mkfs_options', 'labels', 'docker_volume', 'force_format', 'force',
               'backend_options', 'adopt_id', 'timeout')


class VolumeModule(PVModule):
    argument_spec = dict(
        name=dict(type='str'),
        volumes=dict(type='list', elements='dict'),
        state=dict(type='str', default='present', choices=['present', 'detached', 'absent']),
        backend=dict(type='str', default='loop', choices=registry.names()),
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
        check_packages=dict(type='list', elements='str'),
        cinder=dict(type='dict', options=osspec.volume_dict_spec()),
        vsphere=dict(type='dict', options=vspec.volume_dict_spec(env_fallback)),
        **docker_argument_spec()
    )
    module_kwargs = dict(required_one_of=[('name', 'volumes')],
                         mutually_exclusive=[('name', 'volumes')])
    requirements = (('docker', HAS_DOCKER, DOCKER_IMPORT_ERROR),)

    def preflight(self):
        wanted = self.params['check_packages']
        if not wanted:
            return None
        absent = packages.missing(wanted)
        if not absent:
            return None
        return dict(msg='host packages missing: %s (nothing was changed; install them, or let the volumes role do it '
                        'with pv_install_dependencies: true)' % ', '.join(absent),
                    missing_packages=absent, os_family=packages.os_family(), changed=False)

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
        docker = DockerVolumes(dict((k, self.params[k]) for k in docker_argument_spec()))
        with self.session(Engine(root=self.params['root'], check_mode=self.check_mode,
                                 backend_params=backend_params, docker=docker)) as engine:
            records, diff = engine.apply(self.specs())
        return self.records_result('volumes', records, any(r['changed'] for r in records), diff,
                                   one='volume' if self.params['name'] is not None else None)


def main():
    VolumeModule()()


if __name__ == '__main__':
    main()
