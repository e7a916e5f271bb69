# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The host-side chain, written once for every backend:

    block device -> filesystem -> mountpoint + fstab -> (Docker volume: docker/volumes.py)

Split by concern: :mod:`.mounts` (mount table, fstab, mount/umount), :mod:`.filesystems`
(signatures, mkfs, grow), :mod:`.ownership` (owner/group/mode). This file holds
:class:`HostSnapshot` - the one read of the host per run that the planner works on - and
re-exports the three so callers keep one import (``from ..host import chain as host``).
Rule: host commands only; no cloud SDK call anywhere under host/.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from .filesystems import (LABEL_MAX, SUPPORTED_FS, FilesystemErrors, OnlineResizeDenied, check_filesystem,
                          describe_signature, grow_filesystem, grow_filesystem_offline, mkfs, probe_signatures,
                          read_superblock, wipe)
from .mounts import FSTAB, Fstab, FstabEntry, Mount, device_number, mount, parse_mountinfo, umount
from .ownership import apply_ownership, ensure_dir, ownership_diff, parse_mode, resolve_gid, resolve_uid

__all__ = ['FSTAB', 'LABEL_MAX', 'SUPPORTED_FS', 'FilesystemErrors', 'Fstab', 'FstabEntry', 'HostSnapshot', 'Mount',
           'OnlineResizeDenied', 'apply_ownership', 'check_filesystem', 'describe_signature', 'device_number', 'ensure_dir',
           'grow_filesystem', 'grow_filesystem_offline', 'mkfs', 'mount', 'ownership_diff', 'parse_mode',
           'parse_mountinfo', 'probe_signatures', 'read_superblock', 'resolve_gid', 'resolve_uid', 'umount', 'wipe']


class HostSnapshot(object):
    """One read of the live mount table and fstab for a whole run, and the other reads the
    planner makes of this host (superblocks, signatures, device numbers, ownership).

    The engine plans over this object only, so a test can hand it a snapshot of a host
    that does not exist (``mountinfo`` text, an fstab file, a subclass for the device reads).
    """

    def __init__(self, fstab_path=FSTAB, mountinfo=None):
        if mountinfo is None:
            with open('/proc/self/mountinfo') as handle:
                mountinfo = handle.read()
        self.mounts = parse_mountinfo(mountinfo)
        self.by_target = {}
        for mount in self.mounts:
            self.by_target[mount.target] = mount   # last one wins: it is the visible one
        self.fstab = Fstab(fstab_path)

    def mounted_at(self, target):
        return self.by_target.get(target)

    def mounts_of(self, device):
        try:
            devno = self.device_number(device)
        except OSError:
            return []
        return [m for m in self.mounts if m.devno == devno]

    # -- device and path reads (live; overridden by tests) -----------------------------
    def device_number(self, device):
        return device_number(device)

    def read_superblock(self, device):
        return read_superblock(device)

    def probe_signatures(self, device):
        return probe_signatures(device)

    def ownership_diff(self, path, owner=None, group=None, mode=None):
        return ownership_diff(path, owner, group, mode)
