# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""End to end: ``volume`` with ``backend: vsphere`` -> VMDK on the simulated VM -> the device the
guest shows for its SCSI address (published by the guest emulator from the VMDK's real extent file)
-> ext4 -> mount + fstab -> Docker volume -> container data that survives the container, a
detach/reattach of the VMDK, and nothing of it after ``state: absent``."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

import pytest

from pv_vsphere_support import DATASTORE, FOLDER, create_vm, datastore_dir, destroy_vm  # pylint: disable=import-error
from pv_integration_helpers import mountpoints  # pylint: disable=import-error
from pv_integration_helpers import run_container as container_output  # pylint: disable=import-error

MIB = 1024 * 1024


def vmdisks(vm):
    from pyVmomi import vim
    return dict((d.backing.fileName, d) for d in vm.config.hardware.device if isinstance(d, vim.vm.device.VirtualDisk))


def volume_task(name, vsphere, root, **kw):
    args = {'name': name, 'backend': 'vsphere', 'size': '64MiB', 'root': root, 'timeout': 30, 'vsphere': vsphere}
    args.update(kw)
    return {'name': 'volume', 'persistent_volumes.docker.volume': args}


def run_in_container(docker_client, image, cleanup, name, volume, script):
    cname = cleanup.container(name)
    return container_output(docker_client, image, ['sh', '-c', script], name=cname,
                            volumes={volume: {'bind': '/data', 'mode': 'rw'}}).strip()


@pytest.fixture
def setup(ansible, vs, vsphere_auth, test_vm, uid, guest, tmp_path, cleanup, docker_client, busybox_image):
    emu = guest(test_vm)
    root = str(tmp_path / (uid + '-root'))
    name = uid + '-data'
    vsphere = dict(vsphere_auth, vm_name=test_vm.name, datastore=DATASTORE)
    cleanup.path(root)              # last: after the prefix sweep has unmounted what is left
    cleanup.fstab(uid)
    cleanup.docker_volume(name)
    ansible.env['PV_VSPHERE_GUEST_SYS_ROOT'] = emu.sys_root     # the emulated guest's sysfs
    return emu, root, name, vsphere


def test_volume_on_vsphere_end_to_end(ansible, vs, test_vm, uid, setup, docker_client, busybox_image, cleanup):
    emu, root, name, vsphere = setup
    path = '[%s] %s/%s.vmdk' % (DATASTORE, FOLDER, name)
    flat = os.path.join(datastore_dir(vs), FOLDER, name + '-flat.vmdk')

    # check mode: nothing happens anywhere
    r = ansible.run([volume_task(name, vsphere, root)], check=True, diff=True)
    r.assert_changed()
    assert r.result('volume')['volumes'][0]['actions'][:2] == ['create', 'attach']
    assert path not in vmdisks(test_vm) and not os.path.exists(flat)

    # the whole chain
    r = ansible.run([volume_task(name, vsphere, root)])
    r.assert_changed()
    rec = r.result('volume')['volumes'][0]
    assert rec['backend_id'] == path and rec['size'] == 64 * MIB
    disk = vmdisks(test_vm)[path]
    assert disk.backing.diskMode == 'independent_persistent'
    link = '/dev/disk/by-path/pci-00fe:03:00.0-scsi-0:0:%d:0' % disk.unitNumber
    assert link in emu.published
    assert rec['device'] == os.path.realpath(link) == emu.published[link]['loop']
    mountpoint = rec['mountpoint']
    assert mountpoint in mountpoints()
    with open('/etc/fstab') as f:
        assert any(line.split()[1:2] == [mountpoint] and line.startswith('UUID=') for line in f)
    assert docker_client.volumes.get(name).attrs['Options']['device'] == mountpoint

    # idempotent
    ansible.run([volume_task(name, vsphere, root)]).assert_unchanged()

    # container data survives the container
    run_in_container(docker_client, busybox_image, cleanup, uid + '-w', name, 'echo hello-vsphere > /data/f && sync')
    assert run_in_container(docker_client, busybox_image, cleanup, uid + '-r', name, 'cat /data/f') == 'hello-vsphere'

    # grow: VMDK capacity in vSphere, the device (rescan) and the filesystem, online
    r = ansible.run([volume_task(name, vsphere, root, size='96MiB')])
    r.assert_changed()
    assert 'grow' in r.result('volume')['volumes'][0]['actions']
    assert (vmdisks(test_vm)[path].capacityInBytes or vmdisks(test_vm)[path].capacityInKB * 1024) == 96 * MIB
    st = os.statvfs(mountpoint)
    assert st.f_blocks * st.f_frsize > 80 * MIB
    ansible.run([volume_task(name, vsphere, root, size='96MiB')]).assert_unchanged()
    r = ansible.run([volume_task(name, vsphere, root, size='64MiB')])
    r.assert_failed()
    assert 'shrink' in r.result('volume')['msg']
    assert run_in_container(docker_client, busybox_image, cleanup, uid + '-r1', name, 'cat /data/f') == 'hello-vsphere'

    # detached: Docker volume gone, unmounted, VMDK detached in vSphere (file kept), device gone
    r = ansible.run([volume_task(name, vsphere, root, state='detached')])
    r.assert_changed()
    assert path not in vmdisks(test_vm)
    assert os.path.exists(flat)
    assert mountpoint not in mountpoints()
    emu.sync()
    assert link not in emu.published and not os.path.lexists(link)
    assert name not in [v.name for v in docker_client.volumes.list()]

    # present again: the same VMDK comes back with its data
    r = ansible.run([volume_task(name, vsphere, root, size='96MiB')])
    r.assert_changed()
    assert 'create' not in r.result('volume')['volumes'][0]['actions']
    assert 'mkfs' not in r.result('volume')['volumes'][0]['actions']
    assert path in vmdisks(test_vm)
    assert run_in_container(docker_client, busybox_image, cleanup, uid + '-r2', name, 'cat /data/f') == 'hello-vsphere'

    # absent: everything goes, including the VMDK
    r = ansible.run([volume_task(name, vsphere, root, state='absent', size=None)])
    r.assert_changed()
    assert path not in vmdisks(test_vm)
    assert not os.path.exists(flat)
    assert not [f for f in os.listdir(os.path.join(datastore_dir(vs), FOLDER)) if f.startswith(name)]
    assert mountpoint not in mountpoints()
    with open('/etc/fstab') as f:
        assert mountpoint not in f.read()
    ansible.run([volume_task(name, vsphere, root, state='absent', size=None)]).assert_unchanged()


def test_volume_refuses_a_device_of_the_wrong_size(ansible, vs, vsphere_auth, test_vm, uid, guest, tmp_path, cleanup):
    emu = guest(test_vm, size_delta=-MIB)
    root = str(tmp_path / (uid + '-root'))
    name = uid + '-bad'
    cleanup.fstab(uid)
    cleanup.docker_volume(name)
    vsphere = dict(vsphere_auth, vm_name=test_vm.name, datastore=DATASTORE)
    ansible.env['PV_VSPHERE_GUEST_SYS_ROOT'] = emu.sys_root
    r = ansible.run([volume_task(name, vsphere, root)])
    r.assert_failed()
    msg = r.result('volume')['msg']
    assert 'refusing a device that may be another disk' in msg and '63MiB' in msg and '64MiB' in msg
    assert not [m for m in mountpoints() if uid in m]


def test_absent_on_a_vmdk_without_our_marker_is_refused_alike_in_check_mode_and_real_run(
        ansible, vs, test_vm, uid, setup):
    """Issue 9 item 8: the VMDK at our path lost its ownership marker. Check mode used to plan
    ["delete"] (changed) while the real run refused but still reported changed and ["delete"]:
    now both refuse, report no action, and the VMDK is left alone."""
    emu, root, name, vsphere = setup
    path = '[%s] %s/%s.vmdk' % (DATASTORE, FOLDER, name)
    folder = os.path.join(datastore_dir(vs), FOLDER)
    ansible.run([volume_task(name, vsphere, root)]).assert_changed()
    ansible.run([volume_task(name, vsphere, root, state='detached')]).assert_changed()
    marker = os.path.join(folder, name + '.pv.json')
    assert os.path.exists(marker)
    os.unlink(marker)
    for check in (True, False):
        r = ansible.run([volume_task(name, vsphere, root, state='absent', size=None)], check=check)
        r.assert_failed()
        res = r.result('volume')
        assert 'not created by this collection' in res['msg'], res
        assert not res.get('changed')
        assert not [a for v in res.get('volumes') or [] for a in v.get('actions') or []]
    assert os.path.exists(os.path.join(folder, name + '.vmdk'))
    assert path not in vmdisks(test_vm)
    # cleanup: adopting it back by id lets the collection delete it
    ansible.run([volume_task(name, vsphere, root, state='absent', size=None, adopt_id=path)]).assert_changed()
    assert not os.path.exists(os.path.join(folder, name + '.vmdk'))


def test_volume_takes_a_disk_over_from_another_vm_fenced(ansible, vs, vsphere_auth, test_vm, uid, setup, cleanup):
    """backend vsphere with force_detach: a disk attached to another, poweredOn VM is refused (nothing
    changed) unless fence_stop, which powers that VM off through the API first; then the disk is
    detached there and attached, formatted-or-kept and mounted here."""
    _emu, root, name, vsphere = setup
    path = '[%s] %s/%s.vmdk' % (DATASTORE, FOLDER, name)
    other = create_vm(vs, uid + '-other')
    try:
        ansible.run([{'persistent_volumes.docker.vsphere_disk': dict(
            vsphere_auth, vm_name=other.name, disk_name=name, datastore=DATASTORE, size='64MiB')}]).assert_changed()
        for extra, message in [({}, 'set force_detach: true to take it over'),
                               ({'force_detach': True}, 'is poweredOn, not poweredOff')]:
            for check in (True, False):
                r = ansible.run([volume_task(name, dict(vsphere, **extra), root)], check=check)
                assert r.failed and message in r.result('volume')['msg'], r.result('volume')
                assert 'fence_stop' in r.result('volume')['msg'] or not extra
                assert path in vmdisks(other) and path not in vmdisks(test_vm)
                assert other.runtime.powerState == 'poweredOn'
        r = ansible.run([volume_task(name, dict(vsphere, force_detach=True, fence_stop=True), root)])
        r.assert_changed()
        assert other.runtime.powerState == 'poweredOff'
        assert path not in vmdisks(other) and path in vmdisks(test_vm)
        assert os.path.join(root, 'mounts', name) in mountpoints()
        ansible.run([volume_task(name, dict(vsphere, force_detach=True, fence_stop=True), root)]).assert_unchanged()
    finally:
        ansible.run([volume_task(name, vsphere, root, state='absent', size=None, force=True)])
        destroy_vm(vs, other)
