# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""THE vSphere option specs: connection (community.vmware's names and ``VMWARE_*`` fallbacks),
the VM, the placement of new disks.

Rule: written once here (plain dicts: no Ansible import, no pyvmomi import; the module passes Ansible's
``env_fallback`` in); ``vsphere_disk``, ``vsphere_fcd`` and the ``vsphere`` dict option of
``volume`` are built from these pieces. Documentation: the ``vmware`` doc fragment
(connection) and the modules; unit tests check they agree.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

#: option -> environment variable read when the option is not set (as community.vmware)
ENV = {
    'hostname': 'VMWARE_HOST',
    'username': 'VMWARE_USER',
    'password': 'VMWARE_PASSWORD',
    'port': 'VMWARE_PORT',
    'validate_certs': 'VMWARE_VALIDATE_CERTS',
}
DEFAULT_PORT = 443
DEFAULT_FOLDER = 'persistent-volumes'
CONTROLLER_TYPES = ('pvscsi', 'lsilogic', 'lsilogicsas')
DISK_MODES = ('independent_persistent', 'persistent', 'independent_nonpersistent')
PROVISIONING = ('thin', 'thick', 'eagerzeroed')


def connection_spec(env_fallback=None):
    """The auth options. ``env_fallback`` is Ansible's (without it, :func:`client.connection_params`
    falls back to the environment itself)."""
    def fb(key):
        return {'fallback': (env_fallback, [ENV[key]])} if env_fallback else {}

    return dict(
        hostname=dict(type='str', **fb('hostname')),
        username=dict(type='str', aliases=['admin', 'user'], **fb('username')),
        password=dict(type='str', aliases=['pass', 'pwd'], no_log=True, **fb('password')),
        port=dict(type='int', default=DEFAULT_PORT, **fb('port')),
        validate_certs=dict(type='bool', default=True, **fb('validate_certs')),
    )


def vm_spec():
    """Which VM (the Docker host) disks are attached to."""
    return dict(
        datacenter=dict(type='str'),
        vm_name=dict(type='str'),
        vm_uuid=dict(type='str'),
        vm_moid=dict(type='str'),
        vm_folder=dict(type='str'),
        use_instance_uuid=dict(type='bool', default=False),
    )


def placement_spec():
    """Where and how new disks are made and attached."""
    return dict(
        datastore=dict(type='str'),
        volume_folder=dict(type='str', default=DEFAULT_FOLDER),
        provisioning=dict(type='str', default='thin', choices=list(PROVISIONING)),
        disk_mode=dict(type='str', choices=list(DISK_MODES)),
        controller_type=dict(type='str', default='pvscsi', choices=list(CONTROLLER_TYPES)),
        enable_uuid=dict(type='bool', default=True),
    )


def takeover_spec():
    """Taking a disk over from another VM (the fencing interface shared with the cinder backend)."""
    return dict(
        force_detach=dict(type='bool', default=False),
        fencing=dict(type='bool', default=True),
        fence_stop=dict(type='bool', default=False),
    )


def volume_dict_spec(env_fallback=None):
    """The suboptions of ``volume``'s ``vsphere`` dict: connection, VM, placement, takeover."""
    spec = connection_spec(env_fallback)
    spec.update(vm_spec())
    spec.update(placement_spec())
    spec.update(takeover_spec())
    return spec
