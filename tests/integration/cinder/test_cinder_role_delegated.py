# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The volumes role with pv_cloud_delegate_to: Cinder calls on the controller, host chain on the host."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os

import pytest

pytestmark = [pytest.mark.cinder, pytest.mark.slow, pytest.mark.timeout(1800)]


def _mounted(path):
    with open('/proc/self/mountinfo') as f:
        return any(line.split()[4] == path for line in f)


def _ours(conn, name):
    return [v for v in conn.block_storage.volumes(details=True) if (v.metadata or {}).get('pv_name') == name]


def test_role_delegates_cloud_calls_and_runs_the_host_chain(
        os_ansible, conn, uid, cleanup, os_cleanup, hypervisor, docker_client, docker_host, repo_root, tmp_path):
    root = '/var/lib/persistent-volumes/%s' % uid
    cleanup.path(root)
    cleanup.fstab(uid)
    name = uid + '-role'
    cleanup.docker_volume(name)
    inventory = tmp_path / 'hosts.yml'

    def write_inventory(extra=None):
        host_vars = {'ansible_connection': 'local', 'ansible_python_interpreter': '{{ ansible_playbook_python }}'}
        group_vars = {'pv_root': root, 'pv_install_dependencies': False, 'pv_cloud_delegate_to': 'localhost',
                      'pv_cinder': {'cloud': 'pvtest'},
                      'pv_volumes': [dict({'name': name, 'backend': 'cinder', 'size': '1GiB'}, **(extra or {}))]}
        # the inventory name of the Docker host is its Nova server name
        inventory.write_text(json.dumps({'docker_hosts': {'hosts': {'pv-docker-host': host_vars},
                                                          'vars': group_vars}}))

    site = os.path.join(repo_root, 'playbooks', 'site.yml')
    write_inventory()
    os_ansible.run_playbook(site, inventory=str(inventory)).assert_changed()
    (vol,) = _ours(conn, name)
    assert vol.status == 'in-use' and vol.attachments[0]['server_id'] == docker_host.id
    mountpoint = os.path.join(root, 'mounts', name)
    assert _mounted(mountpoint)
    assert docker_client.volumes.get(name).attrs['Options']['device'] == mountpoint
    with open(os.path.join(root, 'state.json')) as f:
        record = json.load(f)['volumes'][name]
    assert record['backend'] == 'device' and record['backend_id'] == vol.id

    os_ansible.run_playbook(site, inventory=str(inventory)).assert_unchanged()

    write_inventory({'state': 'absent'})
    os_ansible.run_playbook(site, inventory=str(inventory)).assert_changed()
    assert not _mounted(mountpoint)
    assert _ours(conn, name) == []
    assert name not in [v.name for v in docker_client.volumes.list(filters={'driver': 'local'})]
