# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Node death (issue 11): the plugin on the new node gets Mount for a volume still attached to
the dead node's server, against the real OpenStack test cloud (tests/harness/openstack) with
the plugin daemon on this machine (pv-docker-host; the cinder tests' ``hypervisor`` plays KVM
+ udev for it).

The dead node is a Nova server of its own (booted per test, ACTIVE). Its guest is played on
this machine: the volume attached to it through Nova, its disk published as the guest would
see it (the same backing file the hypervisor emulation shows pv-docker-host: one "SAN"),
mounted, data written and fsync'ed, more data written without fsync, then the guest dies
mid-flight: ``xfs_io -x -c shutdown`` (ext4's GOINGDOWN ioctl: nothing more reaches the disk,
the journal is left unreplayed, as after a power cut) and its disk goes away.

* ``shutoff`` (the default policy): Mount while that server is ACTIVE -> a clear Err naming it,
  its state and the policy; nothing changed (still attached there only, not mounted, no
  reference). The server is then marked SHUTOFF as the hypervisor does when a guest dies (Nova
  stop, as tests/harness/openstack/lab_hypervisor.py ``guest_died``) -> the retried Mount takes
  it over: force-detach, journal replay + read-only e2fsck, attach, mount; the fsync'ed data is
  all there.
* ``stop``: ``docker run`` with the volume while the server is ACTIVE: the plugin stops it
  through the Nova API, waits for SHUTOFF, takes the volume over; the container reads the data.

``test_filesystem_check_after_unclean_detach`` (no cloud): the check itself on real loop
devices (ext4 with an unreplayed journal, a corrupted ext4 refused then repaired with
``repair``, xfs with a dirty log).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re
import secrets
import shutil
import subprocess
import tempfile
import time

import pytest

from pv_plugin_helpers import direct_daemon, wait_for  # pylint: disable=import-error

# the Cinder tests' fixtures (test cloud, connection, hypervisor emulation), reused as they are
from cinder_fixtures import (  # noqa: F401 pylint: disable=unused-import,import-error
    conn, docker_host, hypervisor, openstack_cloud, os_cleanup)
from cinder_helpers import guest_device  # pylint: disable=import-error

from ansible_collections.persistent_volumes.docker.plugins.module_utils.host import filesystems

GIB = 1024 ** 3


def run(*cmd):
    proc = subprocess.run(list(cmd), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, check=False)
    assert proc.returncode == 0, '%s: %s' % (' '.join(cmd), proc.stdout)
    return proc.stdout


def ours(connection, name):
    return [v for v in connection.block_storage.volumes(details=True) if (v.metadata or {}).get('pv_name') == name]


def servers_of(connection, vid):
    return [a['server_id'] for a in connection.block_storage.get_volume(vid).attachments or []]


def crash_write(device, proof):
    """Mount ``device``, write ``proof`` (fsync'ed: file and directory) and more without fsync, then
    die: GOINGDOWN without flushing the journal; unmount what is left. Returns what must survive."""
    where = tempfile.mkdtemp(prefix='pv-dead-guest-')
    try:
        run('mount', device, where)
        try:
            fd = os.open(os.path.join(where, 'proof'), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                os.write(fd, proof)
                os.fsync(fd)
            finally:
                os.close(fd)
            dfd = os.open(where, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
            with open(os.path.join(where, 'not-synced'), 'wb') as handle:
                handle.write(b'x' * 65536)
            run('xfs_io', '-x', '-c', 'shutdown', where)
        finally:
            run('umount', where)
    finally:
        os.rmdir(where)
    return proof


def dead_guest(conn, server, vid, proof):
    """The dead node: ``vid`` attached to ``server`` through Nova, its guest writes and dies."""
    link = os.path.join(guest_device.BYID, guest_device.link_name(vid))
    wait_for(lambda: not os.path.lexists(link), timeout=30, what='the emulation to drop the device after Create')
    conn.compute.create_volume_attachment(server, volume_id=vid)
    wait_for(lambda: conn.block_storage.get_volume(vid).status == 'in-use', timeout=120, what='in-use')
    _link, loop = guest_device.publish(vid, GIB)
    try:
        crash_write(loop, proof)
    finally:
        guest_device.unpublish(vid, keep_image=True)
    return proof


def boot(conn, name):
    image = conn.image.find_image('pv-test-image', ignore_missing=False)
    flavor = conn.compute.find_flavor('pv.tiny', ignore_missing=False)
    server = conn.compute.create_server(name=name, image_id=image.id, flavor_id=flavor.id, networks='none')
    return conn.compute.wait_for_server(server, status='ACTIVE', wait=180, interval=1)


def cinder_config(openstack_cloud, policy):
    params = {'cloud': openstack_cloud['cloud'], 'clouds_yaml': openstack_cloud['clouds_yaml'],
              'server': 'pv-docker-host', 'timeout': 120}
    return {'backend': 'cinder', 'backend_params': params, 'defaults': {'size': '1GiB'}, 'timeout': 120,
            'fencing': policy, 'unmount_grace': 0, 'handover_wait': HANDOVER_WAIT}


def call(plugin, endpoint, body, ok=True):
    status, answer = plugin.request(endpoint, body)
    assert status == 200 and isinstance(answer, dict), (status, answer)
    if ok:
        assert answer.get('Err') == '', (endpoint, answer, plugin.log_text()[-3000:])
    return answer


pytestmark = [pytest.mark.plugin]

# a Mount of a volume attached elsewhere waits this long for a release before it refuses (or, with
# policy stop, before it stops the other server); role default 20 s
HANDOVER_WAIT = 3


@pytest.mark.cinder
def test_dead_node_shutoff_policy(engine, conn, openstack_cloud, hypervisor, os_cleanup, docker_host, uid):
    dead = boot(conn, uid + '-dead')
    with direct_daemon(engine, 'pvtf-' + secrets.token_hex(3), cinder_config(openstack_cloud, 'shutoff')) as plugin:
        name = uid + '-fv'
        call(plugin, 'VolumeDriver.Create', {'Name': name, 'Opts': {'size': '1GiB'}})
        (vol,) = ours(conn, name)
        proof = dead_guest(conn, dead, vol.id, b'fsynced before the node died ' + secrets.token_hex(8).encode())

        # the dead node's server still ACTIVE: refused, nothing changed
        t0 = time.monotonic()
        answer = call(plugin, 'VolumeDriver.Mount', {'Name': name, 'ID': 'task1'}, ok=False)
        waited = time.monotonic() - t0
        err = answer['Err']
        assert waited >= HANDOVER_WAIT and re.search(r'refused after waiting \d+s for its release \(handover_wait\)',
                                                     err), (waited, err)
        print('\nMount while %s is ACTIVE -> Err: %s' % (dead.name, err))
        assert dead.name in err and dead.id in err and 'ACTIVE' in err and 'policy shutoff' in err, err
        assert 'pv_plugin_fencing: stop' in err, err
        assert servers_of(conn, vol.id) == [dead.id]
        assert plugin.mount_count(name) == 0 and plugin.refs(name) == []
        assert 'takeover' not in plugin.record()['volumes'][name]

        # the hypervisor reports the dead guest SHUTOFF (as lab_hypervisor.guest_died): Swarm's retry succeeds
        conn.compute.stop_server(dead)
        conn.compute.wait_for_server(dead, status='SHUTOFF', wait=120, interval=0.5)
        answer = call(plugin, 'VolumeDriver.Mount', {'Name': name, 'ID': 'task1'})
        assert answer['Mountpoint'] == plugin.mountpoint(name) and plugin.mount_count(name) == 1
        assert servers_of(conn, vol.id) == [docker_host.id]      # force-detached there, attached here only
        with open(os.path.join(answer['Mountpoint'], 'proof'), 'rb') as handle:
            assert handle.read() == proof
        log = plugin.log_text()
        assert 'taken over from %s (fsck: journal_replayed,checked)' % dead.id in log, log[-3000:]
        print('\n'.join(line for line in log.splitlines() if 'Mount' in line))
        assert 'takeover' not in plugin.record()['volumes'][name]

        call(plugin, 'VolumeDriver.Unmount', {'Name': name, 'ID': 'task1'})
        wait_for(lambda: plugin.mount_count(name) == 0 and servers_of(conn, vol.id) == [], timeout=120,
                 what='the release')
        call(plugin, 'VolumeDriver.Remove', {'Name': name})
        assert ours(conn, name) == []
        assert 'Traceback' not in plugin.log_text()


@pytest.mark.cinder
def test_dead_node_stop_policy_through_docker(engine, conn, openstack_cloud, hypervisor, os_cleanup, docker_host,
                                              busybox_image, uid):
    dead = boot(conn, uid + '-dead')
    driver = 'pvtf-' + secrets.token_hex(3)
    with direct_daemon(engine, driver, cinder_config(openstack_cloud, 'stop')) as plugin:
        name = uid + '-fs'
        call(plugin, 'VolumeDriver.Create', {'Name': name, 'Opts': {'size': '1GiB'}})
        (vol,) = ours(conn, name)
        proof = dead_guest(conn, dead, vol.id, b'written by the task on the dead node ' + secrets.token_hex(8).encode())
        assert conn.compute.get_server(dead.id).status == 'ACTIVE'

        # Docker's Mount: the plugin stops the server through Nova, then takes the volume over
        out = engine.cli('run', '--rm', '--network', 'none', '--mount',
                         'type=volume,src=%s,dst=/data,volume-driver=%s' % (name, driver),
                         busybox_image, 'cat', '/data/proof', check=False)
        assert out.returncode == 0, out.stderr + plugin.log_text()[-3000:]
        assert out.stdout.encode() == proof
        assert conn.compute.get_server(dead.id).status == 'SHUTOFF'
        log = plugin.log_text()
        assert 'scope global, root %s, pid %d, fencing stop)' % (plugin.root, plugin.pid()) in log
        assert 'fencing policy stop' in log and 'taken over from %s (fsck: journal_replayed,checked)' % dead.id in log
        wait_for(lambda: plugin.mount_count(name) == 0 and servers_of(conn, vol.id) == [], timeout=120,
                 what='the release after the container')
        assert 'Traceback' not in plugin.log_text()


# -- the filesystem check itself, on real loop devices (no cloud) --------------------------------

@pytest.fixture
def scratch():
    base = tempfile.mkdtemp(prefix='pv-fsck-')
    loops = []

    def device(size=256 * 1024 ** 2):
        image = os.path.join(base, 'disk%d.img' % len(loops))
        with open(image, 'wb') as handle:
            handle.truncate(size)
        loop = run('losetup', '--find', '--show', image).strip()
        loops.append(loop)
        return loop
    yield device
    for loop in loops:
        subprocess.run(['losetup', '-d', loop], check=False)
    shutil.rmtree(base, ignore_errors=True)


def test_filesystem_check_after_unclean_detach(scratch):
    ext4 = scratch()
    run('mkfs.ext4', '-q', ext4)
    proof = crash_write(ext4, b'ext4 proof')
    assert filesystems.ext4_needs_recovery(ext4)
    assert filesystems.check_filesystem(ext4, 'ext4') == ['journal_replayed', 'checked']
    assert not filesystems.ext4_needs_recovery(ext4)
    assert run('debugfs', '-R', 'cat /proof', ext4).endswith(proof.decode())
    assert filesystems.check_filesystem(ext4, 'ext4') == ['checked']

    # a corrupted filesystem: refused and left as it was; repaired only when asked
    run('debugfs', '-w', '-R', 'clri /proof', ext4)
    with pytest.raises(filesystems.FilesystemErrors, match=r'read-only check \(e2fsck -f -n\) found errors'):
        filesystems.check_filesystem(ext4, 'ext4')
    with pytest.raises(filesystems.FilesystemErrors):
        filesystems.check_filesystem(ext4, 'ext4')             # still there: nothing was repaired
    assert filesystems.check_filesystem(ext4, 'ext4', repair=True) == ['checked', 'repaired']
    assert filesystems.check_filesystem(ext4, 'ext4') == ['checked']

    xfs = scratch(320 * 1024 ** 2)
    run('mkfs.xfs', '-q', xfs)
    proof = crash_write(xfs, b'xfs proof')
    assert filesystems.check_filesystem(xfs, 'xfs') == ['journal_replayed', 'checked']
    assert filesystems.check_filesystem(xfs, 'xfs') == ['checked']
    where = tempfile.mkdtemp(prefix='pv-fsck-read-')
    try:
        run('mount', '-o', 'ro', xfs, where)
        try:
            with open(os.path.join(where, 'proof'), 'rb') as handle:
                assert handle.read() == proof
        finally:
            run('umount', where)
    finally:
        os.rmdir(where)
