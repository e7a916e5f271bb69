# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Faults: 503s and delays injected by a local proxy in front of cinder-api, and cinder-api
stopped during a run. Expected: a retry that succeeds, or a clear error; never a volume
left without our ownership metadata, never a duplicate."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import subprocess
import threading
import time

import pytest
import yaml

from faultproxy import FaultProxy

# the first test may install and cold-start the test cloud (session fixture) within its timeout
pytestmark = [pytest.mark.cinder, pytest.mark.slow, pytest.mark.timeout(1800)]

POST_VOLUMES = r'/volumes$'
GET_VOLUMES = r'/volumes/detail'


@pytest.fixture
def proxy_cloud(openstack_cloud, conn, tmp_path):
    """A clouds.yaml with cloud ``pvproxy``: pvtest with block-storage through the fault proxy."""
    with open(openstack_cloud['clouds_yaml']) as handle:
        cfg = yaml.safe_load(handle)
    with FaultProxy(8776) as proxy:
        cloud = dict(cfg['clouds']['pvtest'])
        cloud['block_storage_endpoint_override'] = 'http://127.0.0.1:%d/v3/%s' % (
            proxy.port, conn.current_project_id)
        path = str(tmp_path / 'clouds.yaml')
        with open(path, 'w') as handle:
            yaml.safe_dump({'clouds': {'pvproxy': cloud}}, handle)
        yield proxy, {'OS_CLIENT_CONFIG_FILE': path}


def task(name, **extra):
    args = dict({'cloud': 'pvproxy', 'name': name, 'size': '1'}, **extra)
    return [{'name': 'v', 'persistent_volumes.docker.cinder_volume': args, 'register': 'out'}]


def named(conn, name):
    return [v for v in conn.block_storage.volumes(details=True) if v.name == name]


def assert_all_tagged(conn, name, count):
    vols = named(conn, name)
    assert len(vols) == count, [(v.id, v.metadata) for v in vols]
    for vol in vols:
        assert vol.metadata.get('pv_managed') == 'persistent_volumes.docker', vol.metadata
        assert vol.metadata.get('pv_name') == name
    return vols


def test_503_on_create_is_retried(os_ansible, conn, uid, os_cleanup, proxy_cloud):
    proxy, env = proxy_cloud
    proxy.add_rule('POST', POST_VOLUMES, 'fail', 503, count=2)
    name = uid + '-r503'
    res = os_ansible.run(task(name), env=env)
    res.assert_changed()
    assert proxy.hits('POST', POST_VOLUMES) == 3
    (vol,) = assert_all_tagged(conn, name, 1)
    assert vol.status == 'available'


def test_503_after_the_create_went_through_makes_no_duplicate(os_ansible, conn, uid, os_cleanup, proxy_cloud):
    proxy, env = proxy_cloud
    proxy.add_rule('POST', POST_VOLUMES, 'forward_fail', 503, count=1)
    name = uid + '-fwd'
    res = os_ansible.run(task(name), env=env)
    res.assert_changed()
    # found by its create token instead of POSTing again
    assert proxy.hits('POST', POST_VOLUMES) == 1
    assert_all_tagged(conn, name, 1)
    os_ansible.run(task(name), env=env).assert_unchanged()


def test_persistent_503_clear_error_and_no_orphan(os_ansible, conn, uid, os_cleanup, proxy_cloud):
    proxy, env = proxy_cloud
    proxy.add_rule('POST', POST_VOLUMES, 'fail', 503, count=-1)
    name = uid + '-dead'
    t0 = time.monotonic()
    res = os_ansible.run(task(name, retry_timeout=4), env=env)
    res.assert_failed()
    msg = res.result('v')['msg']
    assert '503' in msg and 'gave up retrying after 4s' in msg, msg
    assert time.monotonic() - t0 < 60
    assert proxy.hits('POST', POST_VOLUMES) >= 2
    assert named(conn, name) == []


def test_500_on_reads_and_delays_are_survived(os_ansible, conn, uid, os_cleanup, proxy_cloud):
    proxy, env = proxy_cloud
    proxy.add_rule('GET', GET_VOLUMES, 'fail', 500, count=2)
    proxy.add_rule('GET', GET_VOLUMES, 'delay', 3, count=1)      # beyond api_timeout: a timeout, retried
    proxy.add_rule('POST', POST_VOLUMES, 'delay', 1, count=1)    # slow but within api_timeout
    proxy.add_rule('GET', r'/volumes/[0-9a-f-]{36}$', 'fail', 502, count=2)
    name = uid + '-slow'
    res = os_ansible.run(task(name, api_timeout=2), env=env)
    res.assert_changed()
    assert_all_tagged(conn, name, 1)
    os_ansible.run(task(name, api_timeout=2), env=env).assert_unchanged()


def test_timeout_on_create_then_retry_leaves_one_volume(os_ansible, conn, uid, os_cleanup, proxy_cloud):
    """The POST is carried out late (after our read timeout): the retry must not leave two."""
    proxy, env = proxy_cloud
    proxy.add_rule('POST', POST_VOLUMES, 'delay', 3, count=1)
    name = uid + '-late'
    res = os_ansible.run(task(name, api_timeout=1), env=env)
    res.assert_ok()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:      # the late one may still be deleting
        vols = [v for v in named(conn, name) if v.status not in ('deleting',)]
        if len(vols) == 1:
            break
        time.sleep(0.5)
    assert_all_tagged(conn, name, len(named(conn, name)))
    assert len([v for v in named(conn, name) if v.status != 'deleting']) == 1


def _harness(openstack_cloud, *args):
    return subprocess.run(['bash', os.path.join(openstack_cloud['harness'], args[0])] + list(args[1:]),
                          stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, check=False)


@pytest.fixture
def cinder_api_down(openstack_cloud):
    proc = _harness(openstack_cloud, 'stop.sh', 'cinder-api')
    assert proc.returncode == 0, proc.stdout
    yield
    proc = _harness(openstack_cloud, 'start.sh')
    assert proc.returncode == 0, proc.stdout


def test_cinder_api_stopped_clear_error(os_ansible, conn, uid, os_cleanup, cinder_api_down):
    name = uid + '-down'
    res = os_ansible.run([{'name': 'v', 'persistent_volumes.docker.cinder_volume': {
        'cloud': 'pvtest', 'name': name, 'size': '1', 'retry_timeout': 3}}])
    res.assert_failed()
    msg = res.result('v')['msg']
    assert 'Unable to establish connection' in msg and 'gave up retrying' in msg, msg


def test_cinder_api_back_during_the_run(os_ansible, conn, uid, os_cleanup, openstack_cloud, cinder_api_down):
    """cinder-api is down when the run starts and comes back while the module retries."""
    name = uid + '-back'
    out = {}

    def run():
        out['res'] = os_ansible.run([{'name': 'v', 'persistent_volumes.docker.cinder_volume': {
            'cloud': 'pvtest', 'name': name, 'size': '1', 'retry_timeout': 120}}])

    worker = threading.Thread(target=run)
    worker.start()
    time.sleep(6)
    proc = _harness(openstack_cloud, 'start.sh')
    assert proc.returncode == 0, proc.stdout
    worker.join(300)
    out['res'].assert_changed()
    assert_all_tagged(conn, name, 1)
