# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""THE OpenStack connection spec (as openstack.cloud's ``openstack_full_argument_spec``).

Rule: written once; ``cinder_volume``, ``cinder_attachment`` and the ``cinder`` dict option
of ``volume`` all use it (plain dicts: no Ansible import here). Its documentation is the
``openstack`` doc fragment; a unit test checks both stay the same.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


def argument_spec():
    """The connection options of the cinder_* modules (plain dict: no Ansible import here)."""
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
    )
