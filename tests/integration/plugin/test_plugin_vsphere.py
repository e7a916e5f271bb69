# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The plugin daemon with the vsphere backend, against the govmomi simulator and its
guest emulator (tests/harness/vcsim; fixtures of tests/integration/vsphere/conftest.py):
``docker volume create`` makes a VMDK and leaves it detached, a container's Mount
attaches and mounts it, the last Unmount detaches it, ``docker volume rm`` destroys it.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import secrets

import pytest

from pv_plugin_helpers import DirectDaemon, direct_daemon, wait_for  # pylint: disable=import-error

# the vSphere tests' fixtures (simulator, VM, guest emulator), reused as they are
from vsphere_fixtures import (  # noqa: F401 pylint: disable=unused-import,import-error
    guest, support, test_vm, vcsim, vs, vsphere_auth)

pytestmark = [pytest.mark.plugin, pytest.mark.vsphere]


def vmdisk_files(vm):
    from pyVmomi import vim
    return [d.backing.fileName for d in vm.config.hardware.device if isinstance(d, vim.vm.device.VirtualDisk)]


@pytest.fixture
def vsphere_plugin(engine, vcsim, vsphere_auth, test_vm, guest):
    emu = guest(test_vm)
    driver = 'pvtv-' + secrets.token_hex(3)
    params = dict(vsphere_auth, vm_name=test_vm.name, datastore=support.DATASTORE, guest_sys_root=emu.sys_root)
    with direct_daemon(engine, driver, {'backend': 'vsphere', 'backend_params': params,
                                        'defaults': {'size': '64MiB'}, 'timeout': 30}) as daemon:
        daemon.emu = emu
        yield daemon


def test_vsphere_volume_through_the_plugin(vsphere_plugin, engine, vs, vcsim, test_vm, busybox_image, uid,
                                           pcleanup):
    plugin = vsphere_plugin
    name = pcleanup.docker_volume(uid + '-vs')
    path = '[%s] %s/%s.vmdk' % (support.DATASTORE, support.FOLDER, name)
    flat = os.path.join(support.datastore_dir(vs), support.FOLDER, name + '-flat.vmdk')
    assert plugin.request('VolumeDriver.Capabilities')[1] == {'Capabilities': {'Scope': 'global'}}

    proc = engine.cli('volume', 'create', '-d', plugin.driver, '--opt', 'size=64MiB', name, check=False)
    assert proc.returncode == 0, proc.stderr + plugin.log_text()
    assert os.path.exists(flat)
    test_vm_disks = vmdisk_files(test_vm)
    assert path not in test_vm_disks                   # made, formatted, detached again
    info = json.loads(engine.cli('volume', 'inspect', name).stdout)[0]
    assert info['Scope'] == 'global' and info['Status']['backend_id'] == path and info['Mountpoint'] == ''

    cname = pcleanup.container(uid + '-w')
    engine.cli('run', '-d', '--network', 'none', '--name', cname, '--stop-timeout', '1', '-v', name + ':/data',
               busybox_image, 'sh', '-c', 'echo hello-vsphere-plugin > /data/f && ls -A /data && exec sleep 600')
    wait_for(lambda: plugin.refs(name), what='the Mount reference')
    assert path in vmdisk_files(test_vm)               # attached while a container uses it
    assert plugin.mount_count(name) == 1
    info = json.loads(engine.cli('volume', 'inspect', name).stdout)[0]
    assert info['Mountpoint'] == plugin.mountpoint(name)
    wait_for(lambda: engine.cli('logs', cname).stdout.split() == ['f'], what='the container output')
    engine.cli('rm', '-f', cname)
    wait_for(lambda: path not in vmdisk_files(test_vm), what='detach after the last Unmount')
    assert plugin.mount_count(name) == 0
    assert os.path.exists(flat)

    out = engine.cli('run', '--rm', '--network', 'none', '-v', name + ':/data', busybox_image, 'cat', '/data/f')
    assert out.stdout.strip() == 'hello-vsphere-plugin'
    wait_for(lambda: path not in vmdisk_files(test_vm), what='detach after the last Unmount')

    assert engine.cli('volume', 'rm', name).returncode == 0
    assert not os.path.exists(flat)
    log = plugin.log_text()
    assert vcsim['password'] not in log.replace('********', '') or len(vcsim['password']) < 3
    assert 'Traceback' not in log


def test_vsphere_backend_down_is_err(engine, uid, pcleanup):
    """vCenter unreachable: every call that needs it answers Err (no crash, no secret in
    the answer or the log), and the daemon keeps serving."""
    driver = 'pvtd-' + secrets.token_hex(3)
    secret = 'pv-Secret-%s' % secrets.token_hex(4)
    params = {'hostname': '127.0.0.1', 'port': 9, 'username': 'admin', 'password': secret,
              'validate_certs': False, 'vm_name': 'nowhere', 'datastore': 'ds'}
    daemon = DirectDaemon(engine, driver, {'backend': 'vsphere', 'backend_params': params, 'timeout': 5})
    daemon.start()
    try:
        pid = daemon.pid()
        name = pcleanup.docker_volume(uid + '-down')
        proc = engine.cli('volume', 'create', '-d', driver, '--opt', 'size=64MiB', name, check=False)
        assert proc.returncode != 0 and proc.stderr.strip()
        for endpoint in ('VolumeDriver.Create', 'VolumeDriver.Get', 'VolumeDriver.Mount', 'VolumeDriver.Remove'):
            _status, body = daemon.request(endpoint, {'Name': name, 'ID': 'x'})
            if endpoint != 'VolumeDriver.Remove':
                assert body.get('Err'), (endpoint, body)
            assert secret not in json.dumps(body)
        _status, body = daemon.request('VolumeDriver.List')
        assert body.get('Err')                      # a global backend lists from vCenter
        assert daemon.pid() == pid
        assert daemon.request('VolumeDriver.Capabilities')[1] == {'Capabilities': {'Scope': 'global'}}
        assert secret not in daemon.log_text() and 'Traceback' not in daemon.log_text()
        assert not os.path.exists(daemon.mountpoint(name))
    finally:
        daemon.stop()
        engine.restart()             # Docker caches a legacy plugin until it restarts
