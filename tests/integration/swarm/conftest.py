# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Docker Swarm on the multi-host lab with the collection's volume plugin on every node.

Rule: ONE session-scoped set-up (``swarm_plugins``) for every test module here: the lab hosts
(session, tests/integration/lab_fixtures.py) are Nova servers of the test cloud AND VMs of the
vSphere simulator, with both hypervisor emulations; the machine's cloud and vCenter endpoints are
relayed into the hosts (``Lab.expose_machine_ports``); each host gets what its admin would give
an air-gapped host (python3-venv and the wheels of openstacksdk and pyvmomi,
tests/harness/lab/offline.py); then ONE playbook applies the ``volume_plugin`` role to every host
over SSH (become), pidfile service mode (no systemd in the lab image), with the role's DEFAULTS
but the one a test must choose (``pv_plugin_handover_wait``, see ``HANDOVER_WAIT``):
``pv-cinder`` (each host its own Nova server) and ``pv-vsphere`` (each host its own VM) on every
host and ``pv-loop`` on host1. The role makes dockerd activate the plugins, and only then the
hosts form the Swarm (host1 manager; dispatcher heartbeat 2 s, so a dead node is noticed in ~6 s
instead of ~15 s). At the end (of the session): services and volumes removed (Cinder volumes and
VMDKs of the run deleted through the APIs if any remain), the Swarm left, and every host replaced
by a fresh one from the image.

Every test here is marked ``fleet``, ``plugin`` and ``swarm`` (and ``cinder`` / ``vsphere`` by its
module).
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
from vsphere_fixtures import vcsim  # noqa: F401 pylint: disable=unused-import,import-error
import pv_vsphere_support as support  # pylint: disable=import-error
# from tests/harness/lab (on the import path: tests/pytest.ini)
import offline  # pylint: disable=import-error
import swarm_scenario  # pylint: disable=import-error

CINDER_DRIVER = 'pv-cinder'
VSPHERE_DRIVER = 'pv-vsphere'
LOOP_DRIVER = 'pv-loop'
HOST_CLOUDS_YAML = '/etc/persistent-volumes/clouds.yaml'
# How long a Mount of a volume still attached to another node waits for its release before it
# refuses (role default 20 s). The node-death tests wait for that refusal 3 times per backend:
# a shorter wait keeps them short; the default is what bench/swarm runs.
HANDOVER_WAIT = 8


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


def plugin_playbook(clouds_yaml, pip_args, loop_host=None, vsphere=None, overrides=None,
                    handover_wait=HANDOVER_WAIT):
    """The ONE playbook: one play per plugin (one role instance per play, so each handler restarts
    its own daemon): cinder on every host, vsphere on every host (``vsphere``: the vcsim fixture's
    dict; none without), loop on ``loop_host`` (a loop volume cannot follow a task: its services
    are pinned to that host; none without). ``overrides``: {driver: {role var: value}} (the
    stop-policy tests); ``handover_wait`` None: the role default (bench/swarm)."""
    common = {'pv_plugin_install_dependencies': False, 'pv_plugin_pip_extra_args': pip_args,
              'pv_plugin_service_manager': 'pidfile'}
    if handover_wait is not None:
        common['pv_plugin_handover_wait'] = handover_wait
    creds = [{'name': 'Directory of the plugin configuration (root only)',
              'ansible.builtin.file': {'path': '/etc/persistent-volumes', 'state': 'directory',
                                       'owner': 'root', 'group': 'root', 'mode': '0700'}},
             {'name': 'Cloud credentials for the plugin (root only)',
              'ansible.builtin.copy': {'src': clouds_yaml, 'dest': HOST_CLOUDS_YAML, 'owner': 'root',
                                       'group': 'root', 'mode': '0600'}}]
    plays = [(CINDER_DRIVER, 'docker_hosts', creds, dict(
        common, pv_plugin_backend='cinder', pv_plugin_timeout=120,
        pv_plugin_backend_params={'cloud': 'pvtest', 'clouds_yaml': HOST_CLOUDS_YAML,
                                  'server': '{{ pvlab_container }}', 'timeout': 120}))]
    if vsphere:
        plays.append((VSPHERE_DRIVER, 'docker_hosts', [], dict(
            common, pv_plugin_backend='vsphere', pv_plugin_timeout=120,
            pv_plugin_backend_params={'hostname': '127.0.0.1', 'port': vsphere['port'],
                                      'username': vsphere['username'], 'password': vsphere['password'],
                                      'validate_certs': False, 'datastore': support.DATASTORE,
                                      'vm_name': '{{ pvlab_container }}'})))
    if loop_host:
        plays.append((LOOP_DRIVER, loop_host, [], dict(common, pv_plugin_backend='loop')))
    out = []
    for driver, hosts, pre_tasks, role_vars in plays:
        role_vars = dict(role_vars, pv_plugin_driver=driver, **(overrides or {}).get(driver, {}))
        where = 'every Swarm node' if hosts == 'docker_hosts' else hosts
        out.append({'name': 'Volume plugin %s on %s' % (driver, where),
                    'hosts': hosts, 'become': True, 'gather_facts': False, 'pre_tasks': pre_tasks,
                    'roles': [{'role': 'persistent_volumes.docker.volume_plugin', 'vars': role_vars}]})
    return out


class SwarmPlugins(object):
    """What the tests get: ``lab``, ``swarm`` (lab.Swarm), ``guests`` (swarm_scenario.Guests),
    ``conn`` / ``servers`` {host: Nova server} / ``hv``, ``vcsim`` / ``vms`` {host: VM} /
    ``containers`` {host: container name = VM name} / ``lv``, ``role_result`` / ``role_seconds`` /
    ``swarm_seconds``, ``services`` and ``volumes`` to remove at the end, and helpers."""

    def __init__(self, lab, connection, servers, hv, vcsim_info, vms, lv):
        self.lab = lab
        self.swarm = lab.swarm()
        self.conn, self.servers, self.hv = connection, servers, hv
        self.vcsim, self.vms, self.lv = vcsim_info, vms, lv
        self.guests = swarm_scenario.Guests(lab, hv, lv, connection)
        self.hosts = [h['name'] for h in lab.hosts]
        self.containers = dict((h['name'], h['container']) for h in lab.hosts)
        self.services = []
        self.volumes = []                  # (driver, name, host that has it)
        self.uid = 'pvs-%s' % os.urandom(3).hex()
        self.role_result = self.role_seconds = self.swarm_seconds = None
        self.revive_steps = {}
        self.fencing = {}                  # driver -> policy its plugins run with (default shutoff)
        self.runner = self.inventory = self.loop_host = None
        self._playbook_args = None

    def docker(self, host, *args, **kwargs):
        return self.lab.exec(host, ['docker'] + list(args), **kwargs).stdout

    def volume_drivers(self, host):
        return self.docker(host, 'info', '-f', '{{json .Plugins.Volume}}').strip()

    def plugin_log(self, host, driver):
        return self.lab.exec(host, ['cat', '/var/log/persistent-volumes/%s.log' % driver], check=False).stdout

    def server_of(self, host):
        return self.servers[host].id

    def playbook(self, overrides=None):
        clouds_yaml, pip_args, loop_host, vsphere = self._playbook_args
        return plugin_playbook(clouds_yaml, pip_args, loop_host, vsphere, overrides=overrides)

    def apply_role(self, driver, hosts, role_vars):
        """The role of ``driver`` again on ``hosts`` with ``role_vars`` over the set-up's (the
        daemon restarts when its configuration changes)."""
        (play,) = [p for p in self.playbook({driver: role_vars}) if p['name'].startswith('Volume plugin %s ' % driver)]
        self.runner.run([dict(play, pre_tasks=[])], inventory=self.inventory,
                        args=['--forks', '3', '--limit', ','.join(hosts)]).assert_ok()

    def use_policy(self, driver, policy):
        """The fencing policy ``driver``'s plugin has on the workers: the role applied again only
        when it changes (the stop-policy tests set ``stop``; the next test that needs ``shutoff``,
        the role's default, sets it back)."""
        if self.fencing.get(driver, 'shutoff') != policy:
            workers = [h for h in self.hosts if h != self.swarm.manager]
            self.fencing[driver] = None         # unknown until the role run succeeded
            self.apply_role(driver, workers, {} if policy == 'shutoff' else {'pv_plugin_fencing': policy})
            self.fencing[driver] = policy

    def cleanup(self):
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
            if proc.returncode != 0 and 'no such volume' not in proc.stderr.lower():
                errors.append('docker volume rm %s on %s: %s' % (name, host, proc.stderr.strip()))
        for vol in self.conn.block_storage.volumes(details=True):
            if (vol.name or '').startswith(self.uid) or (vol.metadata or {}).get('pv_name', '').startswith(self.uid):
                errors.append('left in Cinder: %s (%s)' % (vol.id, vol.name))
                _cinder.destroy_volume(self.conn, vol)
        return errors


@pytest.fixture(scope='session')
def swarm_plugins(lab, lab_servers, lab_hypervisor, conn, openstack_cloud, vcsim, lab_vclient,  # noqa: F811
                  lab_vms, lab_vsphere, tmp_path_factory, collections_root):
    sp = SwarmPlugins(lab, conn, lab_servers, lab_hypervisor, vcsim, lab_vms, lab_vsphere)
    try:
        auth_url = conn.config.config['auth']['auth_url']
        lab.expose_machine_ports(cloud_ports(conn, auth_url) + [vcsim['port']])
        folder = offline.bundle(lab, sp.hosts[0], debs=offline.VENV_DEBS, wheels=['openstacksdk>=1.0', 'pyvmomi'])
        for host in sp.hosts:
            offline.provision(lab, host, folder)
        workdir = str(tmp_path_factory.mktemp('swarm-ansible'))
        sp.runner = helpers.AnsibleRunner(workdir, collections_root, env={
            'ANSIBLE_PYTHON_INTERPRETER': '/usr/bin/python3', 'ANSIBLE_REMOTE_TEMP': '~/.ansible/tmp',
            'ANSIBLE_PIPELINING': 'True'})
        sp.inventory = lab.inventory(os.path.join(workdir, 'inventory.yml'))
        sp.loop_host = sp.hosts[0]
        sp._playbook_args = (openstack_cloud['clouds_yaml'], offline.pip_args(), sp.loop_host, vcsim)
        t0 = time.monotonic()
        sp.role_result = sp.runner.run(sp.playbook(), inventory=sp.inventory, args=['--forks', '3'])
        sp.role_seconds = time.monotonic() - t0
        sp.role_result.assert_ok()
        for host in sp.hosts:
            swarm_scenario.install_boot_hook(lab, host)
        # what each node's dockerd lists right after the role, before any Swarm exists
        sp.drivers_after_role = dict((h, sp.volume_drivers(h)) for h in sp.hosts)
        t0 = time.monotonic()
        sp.swarm.init()
        sp.swarm.docker('swarm', 'update', '--dispatcher-heartbeat', swarm_scenario.HEARTBEAT)
        sp.swarm_seconds = time.monotonic() - t0
        yield sp
    finally:
        errors = []
        for host in sp.guests.down():       # a test failed with its node dead: bring it back
            try:
                sp.guests.reboot(host)
            except Exception as exc:  # pylint: disable=broad-except
                errors.append('reboot %s: %r' % (host, exc))
        errors += sp.cleanup()
        sp.swarm.leave()
        for host in sp.hosts:
            lab.reset_host(host)            # a fresh host: no plugin daemons, no Swarm state
        try:
            support.remove_files(lab_vclient, sp.uid)
        except Exception as exc:  # pylint: disable=broad-except
            errors.append('VMDKs of %s: %r' % (sp.uid, exc))
        if errors:
            pytest.fail('swarm clean-up: ' + '; '.join(errors), pytrace=False)
