# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""THE OpenStack option specs (as openstack.cloud's ``openstack_full_argument_spec``).

Rule: written once here (plain dicts: no Ansible import); ``cinder_volume``,
``cinder_attachment`` and the ``cinder`` dict option of ``volume`` are built from these
pieces, so they take the same options, aliases and defaults. Documentation: the
``openstack`` doc fragment (connection) and the modules; unit tests check they agree.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from .discovery import CONFIG_DRIVE_LABEL, METADATA_URL

SDK_LOG_LEVELS = ['INFO', 'DEBUG']


def connection_spec():
    """How to reach and authenticate to the cloud (every OpenStack-facing option set has it)."""
    return dict(
        cloud=dict(type='raw'),
        auth=dict(type='dict', no_log=True),
        auth_type=dict(type='str'),
        region_name=dict(type='str'),
        interface=dict(type='str', default='public', choices=['admin', 'internal', 'public'],
                       aliases=['endpoint_type']),
        validate_certs=dict(type='bool', aliases=['verify']),
        ca_cert=dict(type='str', aliases=['cacert']),
        client_cert=dict(type='str', aliases=['cert']),
        client_key=dict(type='str', no_log=False, aliases=['key']),
        api_timeout=dict(type='int'),
        retry_timeout=dict(type='int', default=60),
        sdk_log_path=dict(type='str'),
        sdk_log_level=dict(type='str', default='INFO', choices=SDK_LOG_LEVELS),
    )


def argument_spec():
    """Kept name: the connection spec."""
    return connection_spec()


def server_spec():
    """Which server volumes are attached to, and the rules for taking one over."""
    return dict(
        server=dict(type='str'),
        config_drive=dict(type='path', default=CONFIG_DRIVE_LABEL),
        metadata_url=dict(type='str', default=METADATA_URL),
        force_detach=dict(type='bool', default=False),
        fencing=dict(type='bool', default=True),
        fence_stop=dict(type='bool', default=False),
    )


def placement_spec():
    """Defaults for new volumes."""
    return dict(
        volume_type=dict(type='str'),
        availability_zone=dict(type='str'),
        description=dict(type='str'),
        metadata=dict(type='dict'),
    )


def wait_spec():
    return dict(timeout=dict(type='int', default=300))


def volume_dict_spec():
    """The suboptions of ``volume``'s ``cinder`` dict: connection, server, placement, timeout."""
    spec = connection_spec()
    spec.update(server_spec())
    spec.update(placement_spec())
    spec.update(wait_spec())
    return spec
