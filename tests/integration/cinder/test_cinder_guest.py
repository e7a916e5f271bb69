# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The guest side: the ``volume`` module with ``backend: cinder`` down to a Docker volume.

The ``hypervisor`` fixture publishes a loop device under /dev/disk/by-id/virtio-<id[:20]> while a
test volume is attached to pv-docker-host (what a KVM guest sees); decoys, wrong sizes and
links that never appear are made on purpose.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import subprocess

import pytest

from cinder_helpers import guest_device, wait_volume
from pv_integration_helpers import ManagedRoot, fstab_lines, is_mountpoint  # pylint: disable=import-error
from pv_integration_helpers import run_container as container_output  # pylint: disable=import-error

# the first test may install and cold-start the test cloud (session fixture) within its timeout
pytestmark = [pytest.mark.cinder, pytest.mark.slow, pytest.mark.timeout(1800)]

GIB = 1024 ** 3


def ours(conn, name):
    return [v for v in conn.block_storage.volumes(details=True) if (v.metadata or {}).get('pv_name') == name]


class PV(ManagedRoot):
    def task(self, name, check_mode=None, **args):
        args.setdefault('root', self.root)
        args.setdefault('backend', 'cinder')
        args.setdefault('cinder', {'cloud': 'pvtest', 'server': 'pv-docker-host'})
        args['name'] = name
        task = {'name': 'pv', 'persistent_volumes.docker.volume': args, 'register': 'out'}
        if check_mode is not None:
            task['check_mode'] = check_mode
        return task


@pytest.fixture
def pv(uid, cleanup):
    return PV(uid, cleanup)


def test_docker_volume_on_cinder_data_survives(os_ansible, conn, uid, cleanup, os_cleanup, hypervisor, pv,
                                               docker_client, busybox_image, docker_host):
    name = uid + '-e2e'
    cleanup.docker_volume(name)
    # check mode: a plan, nothing in Cinder
    res = os_ansible.run([pv.task(name, size='1GiB', check_mode=True)])
    res.assert_changed()
    assert ours(conn, name) == []

    res = os_ansible.run([pv.task(name, size='1GiB', timeout=120)], diff=True)
    res.assert_changed()
    rec = res.result('pv')['volumes'][0]
    (vol,) = ours(conn, name)
    assert vol.status == 'in-use' and vol.attachments[0]['server_id'] == docker_host.id
    assert rec['backend_id'] == vol.id
    link = '/dev/disk/by-id/virtio-%s' % vol.id[:20]
    assert os.path.realpath(rec['device']) == os.path.realpath(link)
    assert is_mountpoint(pv.mountpoint(name))
    (line,) = fstab_lines(uid)
    assert line.startswith('UUID=') and 'nofail' in line
    assert name in [v.name for v in docker_client.volumes.list()]

    # idempotent
    os_ansible.run([pv.task(name, size='1GiB', timeout=120)]).assert_unchanged()

    # a container's data survives the container
    cname = uid + '-writer'
    cleanup.container(cname)
    docker_client.containers.run(busybox_image, ['sh', '-c', 'echo cinder-data > /data/proof'], name=cname,
                                 volumes={name: {'bind': '/data', 'mode': 'rw'}}, remove=False, network_mode='none')
    docker_client.containers.get(cname).remove()
    out = container_output(docker_client, busybox_image, ['cat', '/data/proof'],
                           volumes={name: {'bind': '/data', 'mode': 'ro'}})
    assert out.strip() == 'cinder-data'

    # grow online: Cinder extend (+ Nova action), the guest sees it, resize2fs
    res = os_ansible.run([pv.task(name, size='2GiB', timeout=120)])
    res.assert_changed()
    assert conn.block_storage.get_volume(vol.id).size == 2
    st = os.statvfs(pv.mountpoint(name))
    assert st.f_blocks * st.f_frsize > 1.5 * GIB
    out = container_output(docker_client, busybox_image, ['cat', '/data/proof'],
                           volumes={name: {'bind': '/data', 'mode': 'ro'}})
    assert out.strip() == 'cinder-data'

    # detached: storage kept (available), everything on the host gone
    os_ansible.run([pv.task(name, state='detached')]).assert_changed()
    assert conn.block_storage.get_volume(vol.id).status == 'available'
    assert not is_mountpoint(pv.mountpoint(name)) and fstab_lines(uid) == []
    # back again: same data
    os_ansible.run([pv.task(name, size='2GiB', timeout=120)]).assert_changed()
    out = container_output(docker_client, busybox_image, ['cat', '/data/proof'],
                           volumes={name: {'bind': '/data', 'mode': 'ro'}})
    assert out.strip() == 'cinder-data'
    # absent: deleted in Cinder
    os_ansible.run([pv.task(name, state='absent')]).assert_changed()
    assert ours(conn, name) == []
    assert fstab_lines(uid) == []


def _blank(device):
    proc = subprocess.run(['blkid', '-p', device], stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
    return proc.returncode == 2      # no signature found


def test_decoy_never_picked_and_missing_link_times_out(os_ansible, conn, uid, cleanup, os_cleanup, hypervisor,
                                                       pv):
    name = uid + '-real'
    decoy_name = uid + '-decoy'
    decoy = os_ansible.run([{'name': 'd', 'persistent_volumes.docker.cinder_volume': {
        'cloud': 'pvtest', 'name': decoy_name, 'size': '1'}, 'register': 'out'}]).assert_ok()
    decoy_id = decoy.result('d')['volume']['id']
    # a link for ANOTHER volume, of the same size, is present; ours never appears
    decoy_dev = guest_device.publish(decoy_id, GIB)[1]
    cleanup.add(guest_device.unpublish, decoy_id)
    hypervisor.hide.add(name)
    res = os_ansible.run([pv.task(name, size='1GiB', timeout=4)])
    res.assert_failed()
    msg = res.result('pv')['msg']
    assert 'timed out after 4s' in msg and 'virtio-' in msg, msg
    assert decoy_id[:20] not in msg
    assert _blank(decoy_dev), 'the decoy device was touched'
    assert not is_mountpoint(pv.mountpoint(name))
    (vol,) = ours(conn, name)        # created and attached, kept for the re-run
    # the link appears: the re-run completes on the right device
    hypervisor.hide.discard(name)
    res = os_ansible.run([pv.task(name, size='1GiB', timeout=60)])
    res.assert_changed()
    dev = res.result('pv')['volumes'][0]['device']
    assert os.path.realpath(dev) == os.path.realpath('/dev/disk/by-id/virtio-%s' % vol.id[:20])
    assert os.path.realpath(dev) != os.path.realpath(decoy_dev)
    assert _blank(decoy_dev)
    os_ansible.run([pv.task(name, state='absent')]).assert_changed()


def test_wrong_size_refused(os_ansible, conn, uid, cleanup, os_cleanup, hypervisor, pv):
    name = uid + '-size'
    hypervisor.wrong_size[name] = 512 * 1024 ** 2
    res = os_ansible.run([pv.task(name, size='1GiB', timeout=30)])
    res.assert_failed()
    msg = res.result('pv')['msg']
    assert 'refusing a device that may be another disk' in msg, msg
    (vol,) = ours(conn, name)
    assert _blank(os.path.realpath('/dev/disk/by-id/virtio-%s' % vol.id[:20]))
    assert not is_mountpoint(pv.mountpoint(name)) and fstab_lines(uid) == []


def test_volume_attached_elsewhere_is_refused_alike_in_check_mode_and_real_run(os_ansible, conn, uid, os_cleanup,
                                                                               other_host, pv):
    """Issue 9 item 8 for cinder: our volume attached to ANOTHER server. ``state: absent`` and
    ``state: present`` (an attach that fencing refuses) fail the same way in check mode and in the
    real run, report no action, and leave the volume where it is."""
    name = uid + '-away'
    vol = conn.block_storage.create_volume(name=name, size=1, metadata={
        'pv_managed': 'persistent_volumes.docker', 'pv_name': name})
    # os_cleanup sweeps it by its name prefix (detached from pv-other-host and deleted)
    wait_volume(conn, vol.id, 'available')
    conn.compute.create_volume_attachment(other_host, volume_id=vol.id)
    wait_volume(conn, vol.id, 'in-use')
    for state, args, expect in (('absent', {}, 'is attached to server'),
                                ('present', {'size': '1GiB'}, 'is attached to another server'),
                                ('present', {'size': '1GiB', 'cinder': {'cloud': 'pvtest', 'server': 'pv-docker-host',
                                                                        'force_detach': True}}, 'fencing')):
        for check in (True, False):
            res = os_ansible.run([pv.task(name, state=state, check_mode=check, **args)])
            res.assert_failed()
            out = res.result('pv')
            assert expect in out['msg'], (state, check, out['msg'])
            assert not out.get('changed')
            assert not [a for v in out.get('volumes') or [] for a in v.get('actions') or []]
    cur = conn.block_storage.get_volume(vol.id)
    assert cur.status == 'in-use' and [a['server_id'] for a in cur.attachments] == [other_host.id]
