# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Session fixtures of the multi-host lab, shared by tests/integration/fleet and
tests/integration/swarm: defined once here and imported by tests/integration/conftest.py only,
so a session has ONE lab, ONE set of Nova servers and ONE hypervisor emulation whichever
folders run (a fixture imported into two conftests would be two session instances of it).

* ``lab`` -> ``Lab`` of tests/harness/lab/lab.py, up with ``PV_LAB_HOSTS`` (default 3) hosts;
  always torn down at the end (also when a test or the start fails).
* ``lab_servers`` -> {host: Nova server} of the test cloud, one per lab host, named after the
  host's container (needs ``conn``: tests that use it import cinder_fixtures' fixtures).
* ``lab_hypervisor`` -> tests/harness/openstack/lab_hypervisor.py's ``LabHypervisor`` over them.
* ``lab_vclient`` / ``lab_vms`` / ``lab_vsphere``: the same hosts as VMs of the vSphere simulator
  (a session ``vSphere`` client; one powered-on VM per host, named after its container; the
  emulation tests/harness/vcsim/lab_vsphere.py over them). They need the ``vcsim`` fixture
  (tests that use them import it from vsphere_fixtures) and pyVmomi (imported when used).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

import pytest

# from tests/harness/lab and tests/harness/openstack (on the import path: tests/pytest.ini)
import lab as lab_mod  # pylint: disable=import-error
import lab_hypervisor as _hv_mod  # pylint: disable=import-error
import cinder_fixtures as _cinder  # pylint: disable=import-error

IMAGE = 'pv-test-image'
FLAVOR = 'pv.tiny'


@pytest.fixture(scope='session')
def lab():
    the_lab = lab_mod.Lab()
    try:
        the_lab.up(int(os.environ.get('PV_LAB_HOSTS', '3')))
        yield the_lab
    finally:
        the_lab.down()


@pytest.fixture(scope='session')
def lab_servers(lab, conn):
    """One Nova server per lab host, named after the host's container (e.g. pvlab-host1)."""
    image = conn.image.find_image(IMAGE, ignore_missing=False)
    flavor = conn.compute.find_flavor(FLAVOR, ignore_missing=False)
    names = dict((h['name'], h['container']) for h in lab.hosts)
    servers = {}
    try:
        for host, name in names.items():
            for old in conn.compute.servers(name=name):
                if old.name == name:                       # a killed run's leftover
                    conn.compute.delete_server(old)
                    conn.compute.wait_for_delete(old, interval=1, wait=120)
            servers[host] = conn.compute.create_server(name=name, image_id=image.id, flavor_id=flavor.id,
                                                       networks='none')
        for host in list(servers):
            servers[host] = conn.compute.wait_for_server(servers[host], status='ACTIVE', wait=240, interval=1)
        yield servers
    finally:
        for server in servers.values():
            try:
                conn.compute.delete_server(server)
            except Exception:  # pylint: disable=broad-except
                pass
        for server in servers.values():
            try:
                conn.compute.wait_for_delete(server, interval=1, wait=120)
            except Exception:  # pylint: disable=broad-except
                pass


@pytest.fixture(scope='session')
def lab_hypervisor(lab, lab_servers, tmp_path_factory):
    hv = _hv_mod.LabHypervisor(lab, dict((h, s.id) for h, s in lab_servers.items()),
                               str(tmp_path_factory.mktemp('san')), clouds_yaml=_cinder.CLOUDS_YAML).start()
    yield hv
    hv.stop()


@pytest.fixture(scope='session')
def lab_vclient(vcsim):
    from ansible_collections.persistent_volumes.docker.plugins.module_utils.vmware import client as vc
    client = vc.VSphere(dict((k, vcsim[k]) for k in ('hostname', 'port', 'username', 'password',
                                                     'validate_certs'))).connect()
    yield client
    client.close()


@pytest.fixture(scope='session')
def lab_vms(lab, lab_vclient):
    """One powered-on VM (one PVSCSI controller) per lab host, named after its container."""
    from pyVmomi import vim
    import pv_vsphere_support as support  # pylint: disable=import-error
    vms = {}
    try:
        for host in lab.hosts:
            for old, props in lab_vclient.all_props(vim.VirtualMachine, ['name']):
                if props['name'] == host['container']:           # a killed run's leftover
                    support.destroy_vm(lab_vclient, old)
            vms[host['name']] = support.create_vm(lab_vclient, host['container'])
        yield vms
    finally:
        for vm in vms.values():
            support.destroy_vm(lab_vclient, vm)


@pytest.fixture(scope='session')
def lab_vsphere(lab, lab_vms, vcsim):
    # tests/harness/vcsim (needs pyVmomi: imported here, when used)
    import lab_vsphere as _lv_mod  # pylint: disable=import-error
    lv = _lv_mod.LabVSphere(lab, {'host': vcsim['hostname'], 'port': vcsim['port'], 'user': vcsim['username'],
                                  'pwd': vcsim['password']},
                            dict((h, vm._moId) for h, vm in lab_vms.items())).start()
    yield lv
    lv.stop()
