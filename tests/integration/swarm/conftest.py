# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Docker Swarm on the multi-host lab with the collection's volume plugin on every node.

Rule: one module-scoped set-up per test module (``swarm_plugins``): the lab hosts (session,
tests/integration/lab_fixtures.py) are Nova servers of the test cloud with the hypervisor
emulation; the machine's cloud endpoints are relayed into the hosts (``Lab.expose_machine_ports``);
each host gets what its admin would give an air-gapped host (python3-venv and the wheels of
openstacksdk, tests/harness/lab/offline.py); then ONE playbook applies the ``volume_plugin``
role to every host over SSH (become), pidfile service mode (no systemd in the lab image):
``pv-cinder`` (cinder, each host its own server) on every host and ``pv-loop`` on host1. The role makes dockerd
activate both plugins, and only then the hosts form the Swarm (host1 manager). At the end:
services and volumes removed (Cinder volumes of the test deleted through the SDK if any
remain), the Swarm left, and every host replaced by a fresh one from the image.

Every test here is marked ``fleet``, ``plugin`` and ``swarm`` (and ``cinder`` by its module when
it needs the test cloud).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import time

import pytest

try:
    from urllib.parse import urlparse
except ImportError:  # pragma: no cover
    from urlparse import urlparse  # type: ignore

import pv_integration_helpers as helpers  # pylint: disable=import-error
import cinder_fixtures as _cinder  # pylint: disable=import-error
from cinder_fixtures import conn, openstack_cloud  # noqa: F401 pylint: disable=unused-import,import-error
# from tests/harness/lab (on the import path: tests/pytest.ini)
import offline  # pylint: disable=import-error

CINDER_DRIVER = 'pv-cinder'
LOOP_DRIVER = 'pv-loop'
HOST_CLOUDS_YAML = '/etc/persistent-volumes/clouds.yaml'


def pytest_collection_modifyitems(config, items):
    here = os.path.dirname(os.path.abspath(__file__)) + os.sep
    for item in items:
        if str(item.fspath).startswith(here):
            for mark in ('fleet', 'plugin', 'swarm'):
                item.add_marker(getattr(pytest.mark, mark))


def cloud_ports(connection, clouds_yaml_auth_url):
    """TCP ports of the cloud's public endpoints (the catalog) and of its auth URL."""
    ports = set([urlparse(clouds_yaml_auth_url).port or 80])
    for service in connection.service_catalog:
        for endpoint in service.get('endpoints', []):
            if endpoint.get('interface', 'public') == 'public':
                ports.add(urlparse(endpoint['url']).port or 80)
    return sorted(ports)


def plugin_playbook(clouds_yaml, pip_args, loop_host):
    """The ONE playbook: the volume_plugin role with the cinder backend on every host, then with
    the loop backend on ``loop_host`` (a loop volume cannot follow a task: its services are pinned
    to that host). Two plays: one role instance per play, so each handler restarts its own daemon."""
    common = {'pv_plugin_install_dependencies': False, 'pv_plugin_pip_extra_args': pip_args,
              'pv_plugin_service_manager': 'pidfile'}
    cinder = dict(common, pv_plugin_backend='cinder', pv_plugin_driver=CINDER_DRIVER,
                  pv_plugin_backend_params={'cloud': 'pvtest', 'clouds_yaml': HOST_CLOUDS_YAML,
                                            'server': '{{ pvlab_container }}', 'timeout': 120},
                  # the role's defaults hand a volume over on Swarm (unmount_grace auto: released at
                  # once in the background; handover_wait: the new node's Mount waits for it)
                  pv_plugin_timeout=120)
    loop = dict(common, pv_plugin_backend='loop', pv_plugin_driver=LOOP_DRIVER)
    return [
        {'name': 'Volume plugin pv-cinder on every Swarm node', 'hosts': 'docker_hosts', 'become': True,
         'gather_facts': False,
         'pre_tasks': [{'name': 'Directory of the plugin configuration (root only)',
                        'ansible.builtin.file': {'path': '/etc/persistent-volumes', 'state': 'directory',
                                                 'owner': 'root', 'group': 'root', 'mode': '0700'}},
                       {'name': 'Cloud credentials for the plugin (root only)',
                        'ansible.builtin.copy': {'src': clouds_yaml, 'dest': HOST_CLOUDS_YAML, 'owner': 'root',
                                                 'group': 'root', 'mode': '0600'}}],
         'roles': [{'role': 'persistent_volumes.docker.volume_plugin', 'vars': cinder}]},
        {'name': 'Volume plugin pv-loop on one node', 'hosts': loop_host, 'become': True,
         'gather_facts': False,
         'roles': [{'role': 'persistent_volumes.docker.volume_plugin', 'vars': loop}]},
    ]


class SwarmPlugins(object):
    """What the tests get: ``lab``, ``swarm`` (lab.Swarm), ``conn``, ``servers`` {host: server},
    ``hv`` (hypervisor emulation), ``role_result`` / ``role_seconds`` / ``swarm_seconds``,
    ``services`` and ``cinder_names`` to remove at the end, and helpers."""

    def __init__(self, lab, connection, servers, hv):
        self.lab = lab
        self.swarm = lab.swarm()
        self.conn = connection
        self.servers = servers
        self.hv = hv
        self.hosts = [h['name'] for h in lab.hosts]
        self.services = []
        self.volumes = []                  # (driver, name, host that has it)
        self.role_result = None
        self.role_seconds = None
        self.swarm_seconds = None

    def docker(self, host, *args, **kwargs):
        return self.lab.exec(host, ['docker'] + list(args), **kwargs).stdout

    def volume_drivers(self, host):
        return self.docker(host, 'info', '-f', '{{json .Plugins.Volume}}').strip()

    def plugin_log(self, host, driver):
        return self.lab.exec(host, ['cat', '/var/log/persistent-volumes/%s.log' % driver], check=False).stdout

    def server_of(self, host):
        return self.servers[host].id

    def cleanup(self, uid):
        errors = []
        for name in self.services:
            self.swarm.remove_service(name)
        deadline = time.monotonic() + 60
        for name in self.services:      # the tasks' containers gone (their volumes unmounted)
            while time.monotonic() < deadline and any(
                    self.docker(h, 'ps', '-aq', '--filter', 'label=com.docker.swarm.service.name=' + name,
                                check=False).strip() for h in self.hosts):
                time.sleep(0.2)
        for driver, name, host in self.volumes:
            proc = self.lab.exec(host, ['docker', 'volume', 'rm', name], check=False)
            if proc.returncode != 0:
                errors.append('docker volume rm %s on %s: %s' % (name, host, proc.stderr.strip()))
        for vol in self.conn.block_storage.volumes(details=True):
            if (vol.name or '').startswith(uid) or (vol.metadata or {}).get('pv_name', '').startswith(uid):
                errors.append('left in Cinder: %s (%s)' % (vol.id, vol.name))
                _cinder.destroy_volume(self.conn, vol)
        return errors


@pytest.fixture(scope='module')
def swarm_plugins(lab, lab_servers, lab_hypervisor, conn, openstack_cloud, tmp_path_factory,  # noqa: F811
                  collections_root):
    sp = SwarmPlugins(lab, conn, lab_servers, lab_hypervisor)
    uid = 'pvs-%s' % os.urandom(3).hex()
    sp.uid = uid
    try:
        auth_url = conn.config.config['auth']['auth_url']
        lab.expose_machine_ports(cloud_ports(conn, auth_url))
        folder = offline.bundle(lab, sp.hosts[0], debs=offline.VENV_DEBS, wheels=['openstacksdk>=1.0'])
        for host in sp.hosts:
            offline.provision(lab, host, folder)
        workdir = str(tmp_path_factory.mktemp('swarm-ansible'))
        runner = helpers.AnsibleRunner(workdir, collections_root, env={
            'ANSIBLE_PYTHON_INTERPRETER': '/usr/bin/python3', 'ANSIBLE_REMOTE_TEMP': '~/.ansible/tmp',
            'ANSIBLE_PIPELINING': 'True'})
        sp.runner = runner
        sp.inventory = lab.inventory(os.path.join(workdir, 'inventory.yml'))
        sp.loop_host = sp.hosts[0]
        sp.playbook = plugin_playbook(openstack_cloud['clouds_yaml'], offline.pip_args(), sp.loop_host)
        t0 = time.monotonic()
        sp.role_result = runner.run(sp.playbook, inventory=sp.inventory, args=['--forks', '3'])
        sp.role_seconds = time.monotonic() - t0
        sp.role_result.assert_ok()
        # what each node's dockerd lists right after the role, before any Swarm exists
        sp.drivers_after_role = dict((h, sp.volume_drivers(h)) for h in sp.hosts)
        t0 = time.monotonic()
        sp.swarm.init()
        sp.swarm_seconds = time.monotonic() - t0
        yield sp
    finally:
        errors = sp.cleanup(uid)
        sp.swarm.leave()
        for host in sp.hosts:
            lab.reset_host(host)            # a fresh host: no plugin daemons, no Swarm state
        if errors:
            pytest.fail('swarm clean-up: ' + '; '.join(errors), pytrace=False)
