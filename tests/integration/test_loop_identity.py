# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Loop devices are matched by the image's identity (st_dev + inode), never by the path string.

A decoy: another mount namespace (as another container has) holds a DIFFERENT file at exactly
our image path and attaches it to a loop device, so sysfs ``loop/backing_file`` shows our path
string for it. The volume module must never adopt, mount or detach that device.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import signal
import subprocess
import time

from pv_integration_helpers import ManagedRoot, detach_loop, is_mountpoint, output  # pylint: disable=import-error


def _sysfs_backing(dev):
    with open('/sys/block/%s/loop/backing_file' % os.path.basename(dev)) as handle:
        return handle.read().strip()


def _start_decoy(images_dir, image, size_mib, cleanup):
    """A process in its own mount namespace with a tmpfs over ``images_dir`` and a different
    ext4 image at ``image``, attached to a loop device; returns the device."""
    script = (
        'set -e; mount --make-rprivate /; mount -t tmpfs -o size=%dm pvt-decoy %s; '
        'truncate -s %dM %s; mkfs.ext4 -q -L decoy %s; '
        'dev=$(losetup -f --show %s); mkdir -p /tmp/pvt-decoy-mnt.$$; '
        'mount $dev /tmp/pvt-decoy-mnt.$$; echo decoy-data > /tmp/pvt-decoy-mnt.$$/secret; '
        'umount /tmp/pvt-decoy-mnt.$$; echo $dev; exec sleep 600'
    ) % (size_mib + 16, images_dir, size_mib, image, image, image)
    proc = subprocess.Popen(['unshare', '-m', 'sh', '-c', script], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, universal_newlines=True)

    def stop():
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    cleanup.add(stop)
    dev = proc.stdout.readline().strip()
    assert dev.startswith('/dev/loop'), 'decoy failed: %r %s' % (dev, proc.stderr.read() if proc.poll() else '')
    cleanup.loop(dev)            # teardown detaches the decoy device (ours to remove: we made it)
    return dev


def test_decoy_loop_with_same_path_from_other_namespace_is_never_used(ansible, uid, cleanup, docker_client):
    pv = ManagedRoot(uid, cleanup)
    name = uid + '-v'
    images = os.path.join(pv.root, 'images')
    image = os.path.join(images, name + '.img')
    os.makedirs(images, 0o700)
    decoy = _start_decoy(images, image, 64, cleanup)
    # the premise: the path string in sysfs is our image path; the file does not exist here
    assert _sysfs_backing(decoy) == image
    assert not os.path.exists(image)
    cleanup.docker_volume(name)
    task = {'name': 'pv', 'persistent_volumes.docker.volume': {'name': name, 'size': '64MiB', 'root': pv.root}}

    res = ansible.run([task]).assert_changed()
    vol = res.result('pv')['volumes'][0]
    assert 'create' in vol['actions'] and 'attach' in vol['actions'] and 'mkfs' in vol['actions'], vol
    ours = output(['losetup', '-j', image, '-O', 'NAME', '-n']).split()
    assert len(ours) == 1 and ours[0] != decoy, (ours, decoy)
    mp = pv.mountpoint(name)
    assert is_mountpoint(mp)
    mounted = output(['findmnt', '-n', '-o', 'SOURCE', mp]).strip()
    assert mounted == ours[0], (mounted, ours, decoy)
    assert not os.path.exists(os.path.join(mp, 'secret'))      # not the decoy's filesystem

    # re-run: still ours, nothing changed, the decoy untouched
    ansible.run([task]).assert_unchanged()
    assert output(['losetup', '-j', image, '-O', 'NAME', '-n']).split() == ours
    assert _sysfs_backing(decoy) == image

    # volume_info reports our device
    info = ansible.run([{'name': 'info', 'persistent_volumes.docker.volume_info': {'root': pv.root}}]).assert_ok()
    (rec,) = [v for v in info.result('info')['volumes'] if v['name'] == name]
    assert rec.get('device') == ours[0], rec

    # absent detaches ours only; the decoy stays attached with its data
    ansible.run([{'name': 'rm', 'persistent_volumes.docker.volume': {
        'name': name, 'state': 'absent', 'root': pv.root}}]).assert_changed()
    assert not os.path.exists(image)
    deadline = time.monotonic() + 5
    while os.path.exists('/sys/block/%s/loop' % os.path.basename(ours[0])) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not os.path.exists('/sys/block/%s/loop' % os.path.basename(ours[0])), 'our loop device still attached'
    assert _sysfs_backing(decoy) == image, 'the decoy loop device was detached'
    label = output(['blkid', '-p', '-s', 'LABEL', '-o', 'value', decoy]).strip()
    assert label == 'decoy'
    detach_loop(decoy)
