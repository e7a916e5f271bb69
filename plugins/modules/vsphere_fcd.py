#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: vsphere_fcd
short_description: vSphere First Class Disks - create, list, extend, attach, detach, delete
version_added: 0.1.0
description:
  - Manages First Class Disks (FCDs, "improved virtual disks"), VMDKs with their own identity and life cycle,
    through the vCenter VStorageObjectManager (vSphere 6.5 and later).
  - O(state=present) creates the disk when missing and extends it when O(size) is bigger; shrinking is refused.
    O(attached) attaches it to, or detaches it from, the VM given by O(vm_name), O(vm_uuid) or O(vm_moid).
  - O(state=absent) deletes the disk named by O(name) or O(disk_id) (refused while it is attached).
  - Without O(name) and O(disk_id) the module only lists the FCDs of the datastore(s) (or of the datacenter)
    in RV(disks) and changes nothing.
  - A server that lacks a call (for example the govmomi simulator has no C(ExtendDisk_Task), C(AttachDisk_Task)
    or C(DetachDisk_Task)) makes the module fail with a message naming the missing vSphere API; nothing is changed.
author:
  - persistent_volumes.docker contributors (@persistent-volumes)
extends_documentation_fragment:
  - persistent_volumes.docker.vmware
attributes:
  check_mode:
    support: full
    description: Nothing is changed; RV(actions) lists what would be done.
  diff_mode:
    support: full
    description: Shows the disk before and after.
options:
  name:
    description: Name of the First Class Disk. FCD names need not be unique; with duplicates use O(disk_id).
    type: str
  disk_id:
    description: Id (uuid) of an existing First Class Disk.
    type: str
  datacenter:
    description: Datacenter. Needed when there are several and no VM is given.
    type: str
  datastore:
    description: Datastore to create the disk on; also limits the search for existing disks.
    type: str
  size:
    description: Size such as V(10GiB) or bytes, rounded up to whole MiB. Required to create; bigger extends.
    type: str
  provisioning:
    description: Provisioning of a new disk.
    type: str
    choices: [thin, thick, eagerzeroed]
    default: thin
  vm_name:
    description: VM to attach the disk to or detach it from (with O(attached)).
    type: str
  vm_uuid:
    description: BIOS uuid of that VM.
    type: str
  vm_moid:
    description: Managed object id of that VM.
    type: str
  attached:
    description: V(true) attaches the disk to the VM, V(false) detaches it from the VM; unset leaves it as it is.
    type: bool
  state:
    description: Desired state of the disk named by O(name) or O(disk_id).
    type: str
    choices: [present, absent]
    default: present
seealso:
  - module: persistent_volumes.docker.vsphere_disk
'''

EXAMPLES = r'''
- name: Create a First Class Disk
  persistent_volumes.docker.vsphere_fcd:
    name: shared-data
    datastore: vsan-01
    size: 50GiB
  delegate_to: localhost

- name: List the First Class Disks of a datastore (no name, no id)
  persistent_volumes.docker.vsphere_fcd:
    datastore: vsan-01
  register: fcds
  delegate_to: localhost

- name: Attach it to the Docker host
  persistent_volumes.docker.vsphere_fcd:
    name: shared-data
    vm_name: docker-01
    attached: true
  delegate_to: localhost

- name: Delete it
  persistent_volumes.docker.vsphere_fcd:
    name: shared-data
    state: absent
  delegate_to: localhost
'''

RETURN = r'''
disk:
  description: The First Class Disk after the run (empty when absent).
  returned: when O(name) or O(disk_id) is given
  type: dict
  sample: {id: 2b1e9c4e-..., name: shared-data, datastore: vsan-01, filename: "[vsan-01] fcd/2b1e....vmdk",
           size: 53687091200, size_human: 50GiB, provisioning: thin, attached_to: []}
disks:
  description: The First Class Disks found.
  returned: when neither O(name) nor O(disk_id) is given
  type: list
  elements: dict
actions:
  description: What was done (or would be done in check mode).
  returned: always
  type: list
  elements: str
'''

from ansible.module_utils.basic import env_fallback

from ..module_utils.ansible_base import PVModule
from ..module_utils.common import parse_size
from ..module_utils.vmware import client as vc
from ..module_utils.vmware import fcd


class VSphereFcdModule(PVModule):
    argument_spec = dict(
        vc.auth_argument_spec(env_fallback),
        name=dict(type='str'),
        disk_id=dict(type='str'),
        datacenter=dict(type='str'),
        datastore=dict(type='str'),
        size=dict(type='str'),
        provisioning=dict(type='str', default='thin', choices=['thin', 'thick', 'eagerzeroed']),
        vm_name=dict(type='str'),
        vm_uuid=dict(type='str'),
        vm_moid=dict(type='str'),
        attached=dict(type='bool'),
        state=dict(type='str', default='present', choices=['present', 'absent']),
    )
    module_kwargs = dict(
        mutually_exclusive=[('vm_name', 'vm_uuid', 'vm_moid'), ('name', 'disk_id')],
        required_if=[('state', 'absent', ('name', 'disk_id'), True)],
    )
    requirements = (('pyvmomi', vc.HAS_PYVMOMI, vc.PYVMOMI_IMP_ERR),)

    def run(self):
        p = self.params
        with self.session(vc.VSphere(p).connect()) as client:
            vm = None
            if p['vm_name'] or p['vm_uuid'] or p['vm_moid']:
                vm = client.find_vm(name=p['vm_name'], uuid=p['vm_uuid'], moid=p['vm_moid'],
                                    datacenter=p['datacenter'])
            listing = not (p['name'] or p['disk_id'])
            want = dict(state='list' if listing else p['state'], name=p['name'], disk_id=p['disk_id'],
                        datacenter=p['datacenter'],
                        datastore=p['datastore'], size=parse_size(p['size']) if p['size'] else None,
                        provisioning=p['provisioning'], vm=vm, attached=p['attached'])
            return fcd.ensure_fcd(client, want, check_mode=self.check_mode)


def main():
    VSphereFcdModule()()


if __name__ == '__main__':
    main()
