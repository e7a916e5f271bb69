#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: vsphere_disk
short_description: A persistent VMDK attached to a vSphere VM (create, grow, detach keeping it, reattach, destroy)
version_added: 0.1.0
description:
  - Manages one virtual disk (VMDK) of a virtual machine for use as persistent storage, typically the
    Docker host VM.
  - A new disk is created in V([datastore] persistent-volumes/<disk_name>.vmdk) next to a small ownership
    marker C(<disk_name>.pv.json). Only disks with that marker are ever destroyed.
  - The disk is placed on a free unit of a SCSI controller of O(controller_type); unit 7 (the controller's
    own) is never used, and a new controller is added when all are full.
  - O(state=absent) detaches the disk and KEEPS the VMDK, unless O(destroy=true) (unlike
    C(community.vmware.vmware_guest_disk), which destroys it by default).
  - Re-running with a bigger O(size) grows the disk; a smaller one is refused (vSphere cannot shrink).
  - Ensures C(disk.EnableUUID=TRUE) on the VM, so the guest shows the disk as
    C(/dev/disk/by-id/wwn-0x6000c29...) (after a power cycle of the VM).
author:
  - persistent_volumes.docker contributors (@persistent-volumes)
extends_documentation_fragment:
  - persistent_volumes.docker.vmware
attributes:
  check_mode:
    support: full
    description: Nothing is changed; RV(actions) lists what would be done and RV(disk) the planned placement.
  diff_mode:
    support: full
    description: Shows the disk (attached, file, size, mode, SCSI address) and C(disk.EnableUUID) before and after.
options:
  vm_name:
    description: Name of the virtual machine. With several VMs of that name, add O(vm_folder) or use O(vm_uuid)/O(vm_moid).
    type: str
  vm_uuid:
    description: BIOS uuid of the VM (or its instance uuid with O(use_instance_uuid=true)).
    type: str
  vm_moid:
    description: Managed object id of the VM, such as V(vm-42).
    type: str
  use_instance_uuid:
    description: O(vm_uuid) is the VM's instance uuid (vCenter) rather than its BIOS uuid.
    type: bool
    default: false
  vm_folder:
    description: VM folder, such as V(/DC1/vm/docker) or V(docker) (relative to the datacenter's VM folder).
    type: str
  datacenter:
    description: Datacenter of the VM. Needed with O(vm_folder) when there are several datacenters.
    type: str
  disk_name:
    description:
      - Name of a disk managed by this collection; its VMDK is V([datastore] <volume_folder>/<disk_name>.vmdk).
        Created when missing (needs O(size)), reattached when it exists detached.
      - Letters, digits, C(_), C(.), C(-).
    type: str
  filename:
    description:
      - Datastore path of an existing VMDK, such as V([datastore1] data/disk1.vmdk), to attach (or detach).
        Never created; a missing file is an error.
    type: str
  datastore:
    description: Datastore for O(disk_name).
    type: str
  volume_folder:
    description: Datastore folder for disks named by O(disk_name).
    type: str
    default: persistent-volumes
  size:
    description:
      - Disk size such as V(10GiB), V(512MiB), V(1TB), or bytes; rounded up to whole MiB.
      - Required to create a disk. A bigger size grows the disk; a smaller one is refused.
    type: str
  provisioning:
    description: Provisioning of a new disk (V(thick) is lazy-zeroed thick).
    type: str
    choices: [thin, thick, eagerzeroed]
    default: thin
  disk_mode:
    description:
      - Disk mode. New disks default to V(independent_persistent), so VM snapshots never roll back volume data.
      - For an attached disk the mode is changed only when this option is given.
    type: str
    choices: [independent_persistent, persistent, independent_nonpersistent]
  controller_type:
    description: SCSI controller type for a newly attached disk (and a new controller when one is needed).
    type: str
    choices: [pvscsi, lsilogic, lsilogicsas]
    default: pvscsi
  controller_number:
    description: SCSI bus number (0-3) to attach to. Default is the first controller of O(controller_type) with a free unit.
    type: int
  unit_number:
    description: Unit number (0-15, never 7) on the controller. Default is the first free one. An occupied unit is an error.
    type: int
  state:
    description:
      - V(present) - the disk exists and is attached to the VM.
      - V(absent) - the disk is not attached to the VM; the VMDK is kept unless O(destroy=true).
    type: str
    choices: [present, absent]
    default: present
  destroy:
    description:
      - With O(state=absent), delete the VMDK as well. Refused for a disk without this collection's
        ownership marker, and for a disk attached to another VM.
    type: bool
    default: false
  force_detach:
    description:
      - With O(state=present), take over a disk that is attached to ANOTHER VM (it is detached there, the file
        is kept, then attached to this one). Without it such a disk is refused.
      - Only done when that VM is C(poweredOff), unless O(fencing=false) (or O(fence_stop=true)).
      - The disk is never attached to two VMs at once.
    type: bool
    default: false
  fencing:
    description:
      - With O(force_detach), refuse unless the other VM is C(poweredOff) (a running VM may still write to the
        disk). Nothing is changed when refused. Disable only if you know the other VM no longer writes.
    type: bool
    default: true
  fence_stop:
    description:
      - With O(force_detach) and O(fencing), when the other VM is still C(poweredOn), power it off through the
        vSphere API first (C(PowerOffVM_Task), a hard power-off), wait until it is C(poweredOff), then force-detach.
      - Without it a C(poweredOn) VM is refused.
    type: bool
    default: false
  attached_elsewhere:
    description:
      - What O(state=present) does with an existing disk attached to ANOTHER VM (and not to this one) when
        O(force_detach) is not set.
      - V(fail) refuses it (the run fails, nothing is changed).
      - V(skip) leaves it where it is, attached to the other VM; it is not attached here, nothing is
        changed (not even C(disk.EnableUUID)), RV(attached_elsewhere) names the VMs it lives on, and a
        warning says so. The C(persistent_volumes.docker.volumes) role uses it, so a host whose disks
        were moved or failed over to another host never takes them back; it cleans up its own traces
        of them instead.
    type: str
    choices: [fail, skip]
    default: fail
  enable_uuid:
    description:
      - With O(state=present), make sure C(disk.EnableUUID=TRUE) is set on the VM (set once; never duplicated).
        The guest sees disk uuids only after the VM is powered off and on again; the module warns when it sets it
        on a running VM.
    type: bool
    default: true
notes:
  - The disk uuid is the stable identity inside the guest (C(/dev/disk/by-id/wwn-0x<uuid>)). Without it the disk is
    found by its SCSI address (the controller's PCI address and the unit number, C(/dev/disk/by-path/...)).
seealso:
  - module: persistent_volumes.docker.vsphere_fcd
  - module: persistent_volumes.docker.volume
'''

EXAMPLES = r'''
- name: A 20 GiB persistent disk for the Docker host
  persistent_volumes.docker.vsphere_disk:
    hostname: vcenter.example.com
    username: automation@vsphere.local
    password: "{{ vcenter_password }}"
    vm_name: docker-01
    disk_name: pgdata
    datastore: ssd-01
    size: 20GiB
  delegate_to: localhost

- name: Grow it (re-run with a bigger size)
  persistent_volumes.docker.vsphere_disk:
    vm_name: docker-01
    disk_name: pgdata
    datastore: ssd-01
    size: 40GiB
  delegate_to: localhost

- name: Move it to another VM - detach here (the VMDK is kept) ...
  persistent_volumes.docker.vsphere_disk:
    vm_name: docker-01
    filename: "[ssd-01] persistent-volumes/pgdata.vmdk"
    state: absent
  delegate_to: localhost

- name: ... and attach it there, on the second SCSI controller
  persistent_volumes.docker.vsphere_disk:
    vm_name: docker-02
    filename: "[ssd-01] persistent-volumes/pgdata.vmdk"
    controller_number: 1
  delegate_to: localhost

- name: Fenced takeover - attach it here although docker-01 still has it; docker-01 is powered off first
  persistent_volumes.docker.vsphere_disk:
    vm_name: docker-02
    filename: "[ssd-01] persistent-volumes/pgdata.vmdk"
    force_detach: true
    fence_stop: true
  delegate_to: localhost

- name: Delete the disk and its data
  persistent_volumes.docker.vsphere_disk:
    vm_name: docker-02
    disk_name: pgdata
    datastore: ssd-01
    state: absent
    destroy: true
  delegate_to: localhost
'''

RETURN = r'''
disk:
  description: The disk after the run (the planned disk in check mode).
  returned: always
  type: dict
  contains:
    filename:
      description: Datastore path of the VMDK.
      type: str
      sample: "[ssd-01] persistent-volumes/pgdata.vmdk"
    attached:
      description: Whether the disk is attached to the VM.
      type: bool
    size:
      description: Capacity in bytes.
      type: int
      sample: 21474836480
    size_human:
      description: Capacity with a unit.
      type: str
      sample: 20GiB
    uuid:
      description: Disk uuid, when the server reports one.
      type: str
      sample: 6000C29d-45ef-3a5e-7c1f-9e31a12b8c2d
    disk_mode:
      description: Disk mode.
      type: str
      sample: independent_persistent
    controller_type:
      description: SCSI controller type.
      type: str
      sample: pvscsi
    controller_bus:
      description: SCSI bus number of the controller.
      type: int
      sample: 0
    unit_number:
      description: Unit number on the controller.
      type: int
      sample: 1
    bus_rank:
      description:
        - Rank of the disk's controller bus among the VM's controllers of its type (0 = the lowest bus); with
          RV(disk.controller_type) and RV(disk.unit_number) it gives the disk's SCSI address in the guest (the
          O(persistent_volumes.docker.volume#module:backend_options) key C(scsi) of backend V(device)).
      type: int
      sample: 0
    locators:
      description: Guest device links derived from the disk uuid (empty without a uuid).
      type: list
      elements: str
      sample: [/dev/disk/by-id/wwn-0x6000c29d45ef3a5e7c1f9e31a12b8c2d]
    owned:
      description: Whether the VMDK carries this collection's ownership marker.
      type: bool
vm:
  description: The virtual machine.
  returned: always
  type: dict
  sample: {name: docker-01, moid: vm-42, uuid: 4213d1a2-..., instance_uuid: 5013..., power_state: poweredOn}
actions:
  description: What was done (or would be done in check mode).
  returned: always
  type: list
  elements: str
  sample: ["create 20GiB thin disk [ssd-01] persistent-volumes/pgdata.vmdk at SCSI(0:1)", "set disk.EnableUUID=TRUE on VM docker-01"]
attached_elsewhere:
  description:
    - With O(attached_elsewhere=skip), the names of the other VMs the disk is attached to, where it was left
      (it is NOT attached to this VM); empty otherwise.
  returned: always
  type: list
  elements: str
  sample: [docker-02]
enable_uuid:
  description: The VM's C(disk.EnableUUID) value after the run.
  returned: always
  type: str
  sample: "TRUE"
'''

from ansible.module_utils.basic import env_fallback

from ..module_utils.ansible_base import PVModule
from ..module_utils.common import PVError, parse_size, validate_name
from ..module_utils.vmware import client as vc
from ..module_utils.vmware import spec as vspec
from ..module_utils.vmware import disk as vd


class VSphereDiskModule(PVModule):
    argument_spec = dict(
        vspec.connection_spec(env_fallback),
        disk_name=dict(type='str'),
        filename=dict(type='str'),
        size=dict(type='str'),
        controller_number=dict(type='int'),
        unit_number=dict(type='int'),
        state=dict(type='str', default='present', choices=['present', 'absent']),
        destroy=dict(type='bool', default=False),
        attached_elsewhere=dict(type='str', default='fail', choices=['fail', 'skip']),
    )
    argument_spec.update(vspec.vm_spec())
    argument_spec.update(vspec.placement_spec())
    argument_spec.update(vspec.takeover_spec())
    module_kwargs = dict(
        required_one_of=[('vm_name', 'vm_uuid', 'vm_moid'), ('disk_name', 'filename')],
        mutually_exclusive=[('vm_name', 'vm_uuid', 'vm_moid'), ('disk_name', 'filename')],
        required_by={'disk_name': 'datastore'},
    )
    requirements = (('pyvmomi', vc.HAS_PYVMOMI, vc.PYVMOMI_IMP_ERR),)

    def run(self):
        p = self.params
        if p['disk_name']:
            validate_name(p['disk_name'])
            filename = vd.managed_path(p['datastore'], p['disk_name'], p['volume_folder'])
        else:
            filename = p['filename'].strip()
            vd.check_vmdk_path(filename)
        size = parse_size(p['size']) if p['size'] else None
        if p['destroy'] and p['state'] != 'absent':
            raise PVError('destroy: true needs state: absent')
        want = {
            'state': p['state'], 'filename': filename, 'create': bool(p['disk_name']),
            'name': p['disk_name'] or filename, 'size': size, 'provisioning': p['provisioning'],
            'disk_mode': p['disk_mode'], 'controller_type': p['controller_type'],
            'controller_bus': p['controller_number'], 'unit_number': p['unit_number'],
            'destroy': p['destroy'], 'enable_uuid': p['enable_uuid'],
            'force_detach': p['force_detach'], 'fencing': p['fencing'], 'fence_stop': p['fence_stop'],
            'attached_elsewhere': p['attached_elsewhere'],
        }
        if p['fence_stop'] and not (p['force_detach'] and p['fencing']):
            raise PVError('fence_stop: true needs force_detach: true and fencing: true')
        with self.session(vc.VSphere(p).connect()) as client:
            vm = client.find_vm(name=p['vm_name'], uuid=p['vm_uuid'], moid=p['vm_moid'],
                                datacenter=p['datacenter'], folder=p['vm_folder'],
                                use_instance_uuid=p['use_instance_uuid'])
            return vd.ensure_disk(client, vm, want, check_mode=self.check_mode)


def main():
    VSphereDiskModule()()


if __name__ == '__main__':
    main()
