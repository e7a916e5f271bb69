# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The plugin daemon with the cinder backend, against the real OpenStack test cloud
(tests/harness/openstack; fixtures of tests/integration/cinder/conftest.py, whose
``hypervisor`` plays KVM + udev for pv-docker-host): ``docker volume create`` makes a
Cinder volume and leaves it available, a container's Mount attaches it to this server
and mounts it, the last Unmount detaches it (available again, free to move), a volume
attached to another running server is refused (fencing), ``docker volume rm`` deletes it.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import secrets
import time

import pytest

from pv_plugin_helpers import direct_daemon, load_sibling_conftest, wait_for

# the Cinder tests' fixtures (test cloud, connection, hypervisor emulation), reused as they are
load_sibling_conftest('cinder')
from pv_cinder_conftest import (  # noqa: E402,F401 pylint: disable=unused-import,import-error
    conn, docker_host, hypervisor, openstack_cloud, os_cleanup, other_host)

pytestmark = [pytest.mark.plugin, pytest.mark.cinder]


def ours(connection, name):
    return [v for v in connection.block_storage.volumes(details=True) if (v.metadata or {}).get('pv_name') == name]


def wait_status(connection, vid, status, timeout=120):
    deadline = time.monotonic() + timeout
    while True:
        vol = connection.block_storage.get_volume(vid)
        if vol.status == status and (status != 'available' or not vol.attachments):
            return vol
        if time.monotonic() > deadline:
            raise AssertionError('volume %s is %s, not %s after %ss' % (vid, vol.status, status, timeout))
        time.sleep(0.5)


@pytest.fixture
def cinder_plugin(engine, openstack_cloud, hypervisor, os_cleanup):
    driver = 'pvtc-' + secrets.token_hex(3)
    params = {'cloud': openstack_cloud['cloud'], 'clouds_yaml': openstack_cloud['clouds_yaml'],
              'server': 'pv-docker-host', 'timeout': 120}
    with direct_daemon(engine, driver, {'backend': 'cinder', 'backend_params': params,
                                        'defaults': {'size': '1GiB'}, 'timeout': 120}) as daemon:
        yield daemon


def test_cinder_volume_through_the_plugin(cinder_plugin, engine, conn, docker_host, other_host, busybox_image,
                                          uid, pcleanup):
    plugin = cinder_plugin
    name = pcleanup.docker_volume(uid + '-cv')
    assert plugin.request('VolumeDriver.Capabilities')[1] == {'Capabilities': {'Scope': 'global'}}

    proc = engine.cli('volume', 'create', '-d', plugin.driver, '--opt', 'size=1GiB', name, check=False)
    assert proc.returncode == 0, proc.stderr + plugin.log_text()[-3000:]
    (vol,) = ours(conn, name)
    assert vol.status == 'available' and vol.size == 1      # formatted, then detached again
    info = json.loads(engine.cli('volume', 'inspect', name).stdout)[0]
    assert info['Scope'] == 'global' and info['Status']['backend_id'] == vol.id and info['Mountpoint'] == ''

    cname = pcleanup.container(uid + '-w')
    engine.cli('run', '-d', '--network', 'none', '--name', cname, '--stop-timeout', '1', '-v', name + ':/data',
               busybox_image, 'sh', '-c', 'echo cinder-plugin > /data/proof && exec sleep 600')
    wait_for(lambda: plugin.refs(name), timeout=60, what='the Mount reference')
    vol = conn.block_storage.get_volume(vol.id)
    assert vol.status == 'in-use' and vol.attachments[0]['server_id'] == docker_host.id
    assert plugin.mount_count(name) == 1
    engine.cli('rm', '-f', cname)
    wait_for(lambda: plugin.mount_count(name) == 0, timeout=120, what='unmount')
    wait_status(conn, vol.id, 'available')                 # last Unmount detached it

    out = engine.cli('run', '--rm', '--network', 'none', '-v', name + ':/data', busybox_image, 'cat', '/data/proof')
    assert out.stdout.strip() == 'cinder-plugin'
    wait_status(conn, vol.id, 'available')

    # attached to another server that is running: the fenced force-detach refuses
    wait_for(lambda: vol.id not in [a.volume_id for a in conn.compute.volume_attachments(docker_host)],
             timeout=120, what='Nova to drop the attachment to pv-docker-host')
    conn.compute.create_volume_attachment(other_host, volume_id=vol.id)
    wait_status(conn, vol.id, 'in-use')
    try:
        refused = engine.cli('run', '--rm', '--network', 'none', '-v', name + ':/data', busybox_image, 'true',
                             check=False)
        assert refused.returncode != 0
        assert 'running' in refused.stderr or 'fenc' in refused.stderr, refused.stderr
        assert plugin.refs(name) == [] and plugin.mount_count(name) == 0
        vol = conn.block_storage.get_volume(vol.id)
        assert [a['server_id'] for a in vol.attachments] == [other_host.id]
    finally:
        conn.compute.delete_volume_attachment(other_host, vol.id)
        wait_status(conn, vol.id, 'available')

    assert engine.cli('volume', 'rm', name).returncode == 0
    assert ours(conn, name) == []
    assert 'Traceback' not in plugin.log_text()
