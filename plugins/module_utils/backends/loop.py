# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ``loop`` backend: a sparse image file in a managed directory, attached
as a loop device. Ownership = living in the managed image directory.

After a reboot the fstab entry (image path with the ``loop`` option) attaches
and mounts it again; a re-run of the module finds the loop device by the image's
identity (st_dev + inode, never by the path string: loop devices are kernel-global).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import fcntl
import glob
import os
import struct

from .base import Backend, BackendVolume
from ..common import MANAGED_ROOT, PVError, Refused, human_size, run
from ..host.devices import block_size


LOOP_GET_STATUS64 = 0x4C05
# struct loop_info64: lo_device, lo_inode, lo_rdevice, lo_offset, lo_sizelimit, then fields not used here
_LOOP_INFO64 = struct.Struct('=QQQQQIIII64s64s32sQQ')


def loop_devices():
    """{(st_dev, st_ino) of the backing file: [/dev/loopN, ...]} for every attached loop device.

    Loop devices are kernel-global and sysfs ``loop/backing_file`` is the path as seen in the
    mount namespace that attached it (another container's file can have our path string), so a
    device is identified by what the kernel holds: LOOP_GET_STATUS64 gives the backing file's
    device and inode (as ``losetup -j`` compares). sysfs only lists the bound devices.
    """
    found = {}
    for sysdir in glob.glob('/sys/block/loop*/loop'):
        dev = '/dev/' + sysdir.split('/')[3]
        try:
            fd = os.open(dev, os.O_RDONLY)
        except OSError:
            continue                     # no node here (or no access): cannot be one we attached
        try:
            buf = bytearray(_LOOP_INFO64.size)
            fcntl.ioctl(fd, LOOP_GET_STATUS64, buf, True)
        except (IOError, OSError):
            continue                     # unbound since the glob
        finally:
            os.close(fd)
        lo_device, lo_inode = _LOOP_INFO64.unpack(bytes(buf))[:2]
        found.setdefault((lo_device, lo_inode), []).append(dev)
    return found


def devices_of(loops, path):
    """The loop devices in ``loops`` (from :func:`loop_devices`) backed by the file at ``path``."""
    try:
        st = os.stat(path)
    except OSError:
        return []
    return sorted(loops.get((st.st_dev, st.st_ino)) or [])


class LoopBackend(Backend):
    name = 'loop'
    scope = 'local'
    volume_options = ()

    @classmethod
    def host_devices(cls, ids):
        """Image path -> the loop devices backed by that very file (device + inode)."""
        loops = loop_devices()
        found = dict((path, devices_of(loops, path)) for path in ids)
        return dict((path, devs) for path, devs in found.items() if devs)

    def __init__(self, params=None):
        super(LoopBackend, self).__init__(params)
        root = self.params.get('root') or MANAGED_ROOT
        self.image_dir = self.params.get('image_dir') or os.path.join(root, 'images')
        self._loops = None

    def forget_reads(self):
        """The loop devices are listed again on next use."""
        self._loops = None

    def image_path(self, name):
        return os.path.join(self.image_dir, name + '.img')

    def _attached(self, path):
        if self._loops is None:
            self._loops = loop_devices()
        devs = devices_of(self._loops, path)
        return devs[0] if devs else None

    def _volume(self, name, path, size):
        dev = self._attached(path)
        return BackendVolume(name=name, id=path, size=size, attached_here=dev is not None,
                             attached_to='localhost' if dev else None, device=dev,
                             locators=[dev] if dev else [])

    def lookup(self, requests):
        found = {}
        for req in requests:
            path = self.image_path(req.name)
            try:
                size = os.stat(path).st_size
            except OSError:
                continue
            found[req.name] = self._volume(req.name, path, size)
        return found

    def list_volumes(self):
        vols = []
        for path in sorted(glob.glob(os.path.join(self.image_dir, '*.img'))):
            name = os.path.basename(path)[:-4]
            vols.append(self._volume(name, path, os.stat(path).st_size))
        return vols

    def create(self, request):
        if not os.path.isdir(self.image_dir):
            os.makedirs(self.image_dir, 0o700, exist_ok=True)
        path = self.image_path(request.name)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as exc:
            raise PVError('cannot create image %s: %s' % (path, exc))
        try:
            os.ftruncate(fd, request.size)
        except OSError as exc:
            os.close(fd)
            os.unlink(path)
            raise PVError('cannot size image %s to %s: %s' % (path, human_size(request.size), exc))
        os.close(fd)
        vol = BackendVolume(name=request.name, id=path, size=request.size)
        vol.extra['fresh'] = True    # all zeros: nothing to probe for
        return vol

    def grow(self, volume, new_size):
        if new_size < volume.size:
            raise Refused('refusing to shrink %s from %s to %s'
                          % (volume.name, human_size(volume.size), human_size(new_size)))
        with open(volume.id, 'r+b') as handle:
            os.ftruncate(handle.fileno(), new_size)
        volume.size = new_size
        return volume

    def attach(self, volume):
        if volume.device:
            return volume
        _rc, out, _err = run(['losetup', '--find', '--show', volume.id])
        volume.device = out.strip()
        volume.attached_here = True
        volume.attached_to = 'localhost'
        volume.locators = [volume.device]
        if self._loops is not None:
            st = os.stat(volume.id)
            self._loops.setdefault((st.st_dev, st.st_ino), []).append(volume.device)
        return volume

    def locate(self, volume, timeout=60):
        if not volume.device:
            raise PVError('%s is not attached' % volume.name)
        actual = block_size(volume.device)
        if actual != volume.size:
            raise PVError('loop device %s of %s is %s, image is %s'
                          % (volume.device, volume.name, human_size(actual), human_size(volume.size)))
        return volume.device

    def refresh_device(self, volume, device):
        run(['losetup', '--set-capacity', device])

    def detach(self, volume):
        if volume.device:
            rc, _out, err = run(['losetup', '--detach', volume.device], check=False)
            if rc != 0 and os.path.exists('/sys/block/%s/loop' % os.path.basename(volume.device)):
                raise PVError('cannot detach %s: %s' % (volume.device, err.strip()))
        volume.device = None
        volume.attached_here = False
        volume.attached_to = None
        return volume

    def delete(self, volume):
        try:
            os.unlink(volume.id)
        except OSError as exc:
            if os.path.exists(volume.id):
                raise PVError('cannot delete image %s: %s' % (volume.id, exc))

    def fstab_source(self, volume, device, fs_uuid):
        return self.image_path(volume.name)

    def fstab_options(self, volume):
        return ['loop']
