# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # vCenter / ESXi connection options (the same names and environment variables as community.vmware)
    DOCUMENTATION = r'''
options:
  hostname:
    description:
      - The hostname or IP address of the vCenter or ESXi server.
      - If not set in the task, the environment variable E(VMWARE_HOST) is used.
    type: str
  username:
    description:
      - The user name for the vCenter or ESXi server.
      - If not set in the task, the environment variable E(VMWARE_USER) is used.
    type: str
    aliases: [admin, user]
  password:
    description:
      - The password for the vCenter or ESXi server.
      - If not set in the task, the environment variable E(VMWARE_PASSWORD) is used.
    type: str
    aliases: [pass, pwd]
  port:
    description:
      - The HTTPS port of the vCenter or ESXi server.
      - If not set in the task, the environment variable E(VMWARE_PORT) is used.
    type: int
    default: 443
  validate_certs:
    description:
      - Verify the server's TLS certificate. Set to V(false) only for servers with self-signed certificates.
      - If not set in the task, the environment variable E(VMWARE_VALIDATE_CERTS) is used.
    type: bool
    default: true
notes:
  - >-
    The vSphere calls are made from the host the module runs on (often with C(delegate_to=localhost)); that
    host needs the C(pyvmomi) Python package.
  - >-
    The modules of the C(persistent_volumes.docker.vmware) action group take these options from
    C(module_defaults) for C(group/persistent_volumes.docker.vmware).
requirements:
  - pyvmomi >= 8.0
'''
