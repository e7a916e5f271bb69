# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filesystems and signatures: what is on a block device (superblocks read directly, ``blkid -p``
for anything else), mkfs, wipe, grow.

Rule: a device is formatted only by :func:`mkfs`, which callers run only after the planner saw no
signature (or the user set force_format); nothing here decides that.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import mmap
import os
import struct
import uuid as uuidlib

from ..common import AGAIN, PVError, poll, run
from .mounts import mount, umount

SUPPORTED_FS = ('ext4', 'xfs')
LABEL_MAX = {'ext4': 16, 'xfs': 12}


def _read_head(device, length):
    """Read the first bytes with O_DIRECT: a mounted filesystem updates its
    superblock behind the block device's page cache, so a buffered read can be stale."""
    try:
        fd = os.open(device, os.O_RDONLY | getattr(os, 'O_DIRECT', 0))
        direct = True
    except OSError:
        direct = False
    try:
        if not direct:
            fd = os.open(device, os.O_RDONLY)
    except OSError as exc:
        raise PVError('cannot open %s: %s' % (device, exc))
    try:
        if direct:
            buf = mmap.mmap(-1, length)       # page aligned, as O_DIRECT needs
            try:
                got = os.preadv(fd, [buf], 0)
                return bytes(buf[:got])
            except OSError:
                pass
            finally:
                buf.close()
        return os.pread(fd, length, 0)
    finally:
        os.close(fd)


def read_superblock(device):
    """Recognise our ext4/xfs by reading the superblock: (fstype, uuid, size) or None."""
    head = _read_head(device, 4096)
    if len(head) >= 40 and head[:4] == b'XFSB':
        blocksize = struct.unpack('>I', head[4:8])[0]
        dblocks = struct.unpack('>Q', head[8:16])[0]
        return 'xfs', str(uuidlib.UUID(bytes=head[32:48])), blocksize * dblocks
    if len(head) >= 2048 and head[1024 + 0x38:1024 + 0x3A] == b'\x53\xef':
        sb = head[1024:]
        blocks_lo, = struct.unpack('<I', sb[4:8])
        log_bs, = struct.unpack('<I', sb[24:28])
        incompat, = struct.unpack('<I', sb[0x60:0x64])
        blocks_hi = struct.unpack('<I', sb[0x150:0x154])[0] if incompat & 0x80 else 0
        compat_ro = struct.unpack('<I', sb[0x64:0x68])[0]
        has_journal = struct.unpack('<I', sb[0x5C:0x60])[0] & 0x4
        fstype = 'ext4' if (incompat & 0x2C0 or compat_ro & 0x78) else ('ext3' if has_journal else 'ext2')
        size = ((blocks_hi << 32) | blocks_lo) * (1024 << log_bs)
        return fstype, str(uuidlib.UUID(bytes=sb[0x68:0x78])), size
    return None


def probe_signatures(device):
    """Every signature libblkid finds (low-level probe, cache bypassed).

    Returns a dict like ``{'TYPE': 'swap'}`` or ``{'PTTYPE': 'dos'}``; ``{}``
    when the device is blank.
    """
    rc, out, err = run(['blkid', '-p', '-o', 'export', device], check=False)
    if rc == 2 and not out.strip():
        return {}
    if rc not in (0, 2):
        # libblkid reports ambivalent results (two signatures) with rc 8
        if rc == 8:
            return {'TYPE': 'ambivalent', 'detail': (err or out).strip()}
        raise PVError('blkid -p %s failed (rc=%s): %s' % (device, rc, (err or out).strip()))
    info = {}
    for line in out.splitlines():
        key, sep, value = line.partition('=')
        if sep:
            info[key] = value
    return info


def describe_signature(info):
    if 'PTTYPE' in info and 'TYPE' not in info:
        return 'a %s partition table' % info['PTTYPE']
    kind = info.get('TYPE', 'unknown')
    if kind == 'crypto_LUKS':
        return 'a LUKS header'
    if kind == 'swap':
        return 'a swap signature'
    if kind == 'ambivalent':
        return 'several signatures (%s)' % info.get('detail', '')
    return 'a %s filesystem' % kind


def mkfs(device, fstype, label, fs_uuid, force=False, extra_args=None):
    label = label[:LABEL_MAX[fstype]]
    if fstype == 'ext4':
        cmd = ['mkfs.ext4', '-q', '-L', label, '-U', fs_uuid]
        if force:
            cmd.append('-F')
    elif fstype == 'xfs':
        cmd = ['mkfs.xfs', '-q', '-L', label, '-m', 'uuid=%s' % fs_uuid]
        if force:
            cmd.append('-f')
    else:
        raise PVError('unsupported fstype %r' % fstype)
    cmd.extend(extra_args or [])
    cmd.append(device)
    run(cmd)


def wipe(device):
    run(['wipefs', '--all', '--quiet', device])


class OnlineResizeDenied(PVError):
    """The kernel refused an online ext4 resize (no CAP_SYS_RESOURCE)."""


def grow_filesystem(fstype, device, mountpoint):
    """Grow a mounted filesystem to fill its device, online."""
    if fstype == 'xfs':
        run(['xfs_growfs', mountpoint])
        return
    rc, out, err = run(['resize2fs', device], check=False)
    if rc != 0:
        text = (err or out).strip()
        if 'Permission denied' in text or 'Operation not permitted' in text:
            raise OnlineResizeDenied('online resize of %s was refused by the kernel: %s' % (device, text))
        raise PVError('resize2fs %s failed (rc=%s): %s' % (device, rc, text))


def e2fsck_after_umount(device, timeout=10):
    """``e2fsck -f -p`` right after an unmount. e2fsck opens the device exclusively and aborts
    (rc 8, "Cannot continue, aborting") while another process still has it open, which a
    scanner (blkid, udev) may do for a moment after the unmount: retried until ``timeout``."""
    last = {}

    def attempt():
        rc, out, err = run(['e2fsck', '-f', '-p', device], check=False)
        if rc in (0, 1):
            return rc
        last.update(rc=rc, msg=(err or out).strip())
        return AGAIN if rc == 8 else fail()

    def fail():
        raise PVError('e2fsck -f -p %s failed (rc=%s): %s' % (device, last['rc'], last['msg']))
    return poll(attempt, timeout, fail, interval=0.2, factor=2, max_interval=2)


def grow_filesystem_offline(device, mountpoint, fstype, options):
    """ext4 fallback where online resize is not permitted (a container
    without CAP_SYS_RESOURCE): unmount, check, resize, mount again."""
    umount(mountpoint)
    try:
        e2fsck_after_umount(device)
        run(['resize2fs', device])
    finally:
        mount(device, mountpoint, fstype, options)


class FilesystemErrors(PVError):
    """A read-only check found errors on a filesystem (nothing was repaired)."""


EXT4_INCOMPAT_RECOVER = 0x4


def ext4_needs_recovery(device):
    """True when an ext4/ext3 journal holds transactions not yet replayed (the filesystem was in use
    when its host died; the ``needs_recovery`` feature flag in the superblock)."""
    head = _read_head(device, 4096)
    if len(head) < 2048 or head[1024 + 0x38:1024 + 0x3A] != b'\x53\xef':
        return False
    incompat, = struct.unpack('<I', head[1024 + 0x60:1024 + 0x64])
    return bool(incompat & EXT4_INCOMPAT_RECOVER)


def _fsck_run(cmd, ok, timeout=10):
    """``cmd`` until it answers with a return code other than ``busy`` (8 for e2fsck: another
    process has the device open for a moment, as right after an attach or unmount)."""
    last = {}

    def attempt():
        rc, out, err = run(cmd, check=False)
        last.update(rc=rc, out=out, err=err)
        if rc == 8 and cmd[0] == 'e2fsck':
            return AGAIN
        return rc

    def busy():
        return last['rc']
    rc = poll(attempt, timeout, busy, interval=0.2, factor=2, max_interval=2)
    return rc, (last.get('out') or '') + (last.get('err') or ''), rc in ok


def _replay_log_by_mount(device, fstype):
    """xfs replays its log only when mounted: mount it in a private directory and unmount it."""
    import tempfile
    where = tempfile.mkdtemp(prefix='pv-replay-')
    try:
        mount(device, where, fstype, 'defaults')
        umount(where)
    finally:
        os.rmdir(where)


def _tail(text, lines=12):
    keep = [line for line in text.splitlines() if line.strip()]
    return ' | '.join(keep[-lines:])


def check_filesystem(device, fstype, repair=False, timeout=10):
    """Check the (unmounted) filesystem on ``device`` before mounting it after an unclean detach
    (its host died, or it was force-detached from a server that was stopped).

    * ext4: a journal that still holds transactions is replayed first
      (``e2fsck -p -E journal_only``: exactly what a mount does, no repair), then
      ``e2fsck -f -n`` (read-only).
    * xfs: ``xfs_repair -n`` (read-only); when it reports a dirty log it cannot check past, the
      log is replayed by mounting and unmounting the filesystem in a private directory, then
      ``xfs_repair -n`` again.

    Errors raise :class:`FilesystemErrors` (nothing repaired) unless ``repair``: then
    ``e2fsck -f -y`` / ``xfs_repair`` (never ``-L``, which would throw the log away) repair it,
    and a repair that fails raises. Returns a list of what was done (``journal_replayed``,
    ``checked``, ``repaired``) for the caller's log line.
    """
    done = []
    if fstype in ('ext4', 'ext3', 'ext2'):
        if ext4_needs_recovery(device):
            rc, out, _ok = _fsck_run(['e2fsck', '-p', '-E', 'journal_only', device], (0, 1, 2), timeout)
            if rc not in (0, 1, 2):
                raise PVError('replaying the journal of %s failed (e2fsck -E journal_only, rc=%s): %s'
                              % (device, rc, _tail(out)))
            done.append('journal_replayed')
        rc, out, ok = _fsck_run(['e2fsck', '-f', '-n', device], (0,), timeout)
        if rc not in (0, 4):
            raise PVError('e2fsck -f -n %s could not check the filesystem (rc=%s): %s' % (device, rc, _tail(out)))
        done.append('checked')
        if ok:
            return done
        if not repair:
            raise FilesystemErrors('the read-only check (e2fsck -f -n) found errors on %s: %s'
                                   % (device, _tail(out, 6)))
        rc, out, ok = _fsck_run(['e2fsck', '-f', '-y', device], (0, 1, 2), timeout)
        if not ok:
            raise FilesystemErrors('e2fsck -f -y %s could not repair the filesystem (rc=%s): %s'
                                   % (device, rc, _tail(out, 6)))
        done.append('repaired')
        return done
    if fstype == 'xfs':
        rc, out, ok = _fsck_run(['xfs_repair', '-n', device], (0,), timeout)
        if not ok and 'log' in out and ('being ignored' in out or 'replay' in out):
            _replay_log_by_mount(device, fstype)
            done.append('journal_replayed')
            rc, out, ok = _fsck_run(['xfs_repair', '-n', device], (0,), timeout)
        if rc not in (0, 1):
            raise PVError('xfs_repair -n %s could not check the filesystem (rc=%s): %s' % (device, rc, _tail(out)))
        done.append('checked')
        if ok:
            return done
        if not repair:
            raise FilesystemErrors('the read-only check (xfs_repair -n) found errors on %s: %s'
                                   % (device, _tail(out, 6)))
        rc, out, ok = _fsck_run(['xfs_repair', device], (0,), timeout)
        if not ok:
            raise FilesystemErrors('xfs_repair %s could not repair the filesystem (rc=%s): %s'
                                   % (device, rc, _tail(out, 6)))
        done.append('repaired')
        return done
    raise PVError('no filesystem check for fstype %r' % fstype)
