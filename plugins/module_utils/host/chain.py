# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The host-side chain, written once for every backend:

    block device -> filesystem -> mountpoint + fstab -> (Docker volume: docker/volumes.py)

Reads are batched: :class:`HostSnapshot` reads the mount table and fstab once
per run; our own ext4/xfs filesystems are recognised by reading their
superblock directly (no subprocess); only unknown devices are probed with
``blkid -p`` (every signature libblkid knows: filesystems, LUKS, swap,
partition tables).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import fcntl
import mmap
import os
import struct
import uuid as uuidlib

from ..common import PVError, atomic_write, run

FSTAB = '/etc/fstab'
SUPPORTED_FS = ('ext4', 'xfs')
LABEL_MAX = {'ext4': 16, 'xfs': 12}


def _unescape(field):
    return (field.replace('\\040', ' ').replace('\\011', '\t')
            .replace('\\012', '\n').replace('\\134', '\\'))


class Mount(object):
    __slots__ = ('devno', 'target', 'fstype', 'source', 'options')

    def __init__(self, devno, target, fstype, source, options):
        self.devno, self.target, self.fstype = devno, target, fstype
        self.source, self.options = source, options


def parse_mountinfo(text):
    mounts = []
    for line in text.splitlines():
        left, sep, right = line.partition(' - ')
        if not sep:
            continue
        fields = left.split()
        rfields = right.split()
        if len(fields) < 6 or len(rfields) < 2:
            continue
        mounts.append(Mount(fields[2], _unescape(fields[4]), rfields[0],
                            _unescape(rfields[1]), fields[5]))
    return mounts


def device_number(device):
    st = os.stat(device)
    return '%d:%d' % (os.major(st.st_rdev), os.minor(st.st_rdev))


class FstabEntry(object):
    __slots__ = ('spec', 'file', 'vfstype', 'mntops', 'freq', 'passno')

    def __init__(self, spec, file, vfstype, mntops, freq='0', passno='0'):
        self.spec, self.file, self.vfstype = spec, file, vfstype
        self.mntops, self.freq, self.passno = mntops, str(freq), str(passno)

    def render(self):
        return '%s %s %s %s %s %s' % (self.spec, self.file, self.vfstype, self.mntops,
                                      self.freq, self.passno)

    def __eq__(self, other):
        return isinstance(other, FstabEntry) and self.render() == other.render()

    def __ne__(self, other):
        return not self == other


class Fstab(object):
    """fstab that keeps every line it does not manage (comments included).

    Edits are recorded and, on :meth:`write`, replayed onto a fresh read of the
    file under a host-wide lock: fstab is shared by every tool on the host, and
    a plain read-modify-write would lose lines others wrote meanwhile.
    """

    MARK = '# persistent_volumes.docker: '
    LOCK = '/run/lock/persistent-volumes.fstab.lock'

    def __init__(self, path=FSTAB):
        self.path = path
        self._load()
        self._ops = []

    def _load(self):
        try:
            with open(self.path) as handle:
                self.original = handle.read()
        except (IOError, OSError):
            self.original = ''
        self.lines = self.original.splitlines()

    def _index(self, target):
        for i, line in enumerate(self.lines):
            fields = line.split()
            if len(fields) >= 2 and not fields[0].startswith('#') and _unescape(fields[1]) == target:
                return i
        return None

    def get(self, target):
        i = self._index(target)
        if i is None:
            return None
        fields = self.lines[i].split()
        fields += ['defaults', '0', '0'][len(fields) - 3:] if len(fields) < 6 else []
        return FstabEntry(*fields[:6])

    def set(self, name, entry):
        self._ops.append(('set', name, entry))
        self._set(name, entry)

    def _set(self, name, entry):
        i = self._index(entry.file)
        if i is None:
            self.lines.append(self.MARK + name)
            self.lines.append(entry.render())
        else:
            self.lines[i] = entry.render()

    def remove(self, target):
        self._ops.append(('remove', target, None))
        return self._remove(target)

    def _remove(self, target):
        i = self._index(target)
        if i is None:
            return False
        del self.lines[i]
        if i > 0 and self.lines[i - 1].startswith(self.MARK):
            del self.lines[i - 1]
        return True

    def render(self):
        return '\n'.join(self.lines) + ('\n' if self.lines else '')

    @property
    def changed(self):
        return self.render() != self.original and not (self.original == '' and not self.lines)

    def write(self):
        """Replay the recorded edits on the current file, under the lock; write if anything differs."""
        if not self._ops:
            return False
        lock = self.LOCK if self.path == FSTAB else self.path + '.pv-lock'
        if not os.path.isdir(os.path.dirname(lock)):
            os.makedirs(os.path.dirname(lock), 0o755, exist_ok=True)
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._load()
            for op, key, entry in self._ops:
                if op == 'set':
                    self._set(key, entry)
                else:
                    self._remove(key)
            self._ops = []
            if not self.changed:
                return False
            mode = 0o644
            try:
                mode = os.stat(self.path).st_mode & 0o7777
            except OSError:
                pass
            atomic_write(self.path, self.render(), mode)
            self.original = self.render()
            return True
        finally:
            os.close(fd)


class HostSnapshot(object):
    """One read of the live mount table and fstab for a whole run."""

    def __init__(self, fstab_path=FSTAB):
        with open('/proc/self/mountinfo') as handle:
            self.mounts = parse_mountinfo(handle.read())
        self.by_target = {}
        for mount in self.mounts:
            self.by_target[mount.target] = mount   # last one wins: it is the visible one
        self.fstab = Fstab(fstab_path)

    def mounted_at(self, target):
        return self.by_target.get(target)

    def mounts_of(self, device):
        try:
            devno = device_number(device)
        except OSError:
            return []
        return [m for m in self.mounts if m.devno == devno]


# -- filesystem signatures ------------------------------------------------

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


def grow_filesystem_offline(device, mountpoint, fstype, options):
    """ext4 fallback where online resize is not permitted (a container
    without CAP_SYS_RESOURCE): unmount, check, resize, mount again."""
    umount(mountpoint)
    try:
        rc, out, err = run(['e2fsck', '-f', '-p', device], check=False)
        if rc not in (0, 1):
            raise PVError('e2fsck -f -p %s failed (rc=%s): %s' % (device, rc, (err or out).strip()))
        run(['resize2fs', device])
    finally:
        mount(device, mountpoint, fstype, options)


def mount(device, target, fstype, options):
    run(['mount', '-t', fstype, '-o', options, device, target])


def umount(target, lazy=False):
    run(['umount'] + (['-l'] if lazy else []) + [target])


def ensure_dir(path, owner=None, group=None, mode=None):
    """Create ``path`` and set owner/group/mode; return True when anything changed."""
    changed = False
    if not os.path.isdir(path):
        os.makedirs(path, 0o755, exist_ok=True)
        changed = True
    return apply_ownership(path, owner, group, mode) or changed


def ownership_diff(path, owner=None, group=None, mode=None):
    """What apply_ownership would change, as {field: (before, after)}."""
    try:
        st = os.stat(path)
    except OSError:
        return {'path': (None, path)}
    diff = {}
    uid = resolve_uid(owner)
    gid = resolve_gid(group)
    if uid is not None and st.st_uid != uid:
        diff['owner'] = (st.st_uid, uid)
    if gid is not None and st.st_gid != gid:
        diff['group'] = (st.st_gid, gid)
    if mode is not None and (st.st_mode & 0o7777) != mode:
        diff['mode'] = ('%04o' % (st.st_mode & 0o7777), '%04o' % mode)
    return diff


def apply_ownership(path, owner=None, group=None, mode=None):
    diff = ownership_diff(path, owner, group, mode)
    if 'owner' in diff or 'group' in diff:
        os.chown(path, resolve_uid(owner) if owner is not None else -1,
                 resolve_gid(group) if group is not None else -1)
    if 'mode' in diff:
        os.chmod(path, mode)
    return bool(diff)


def resolve_uid(owner):
    if owner is None or owner == '':
        return None
    if isinstance(owner, int) or str(owner).isdigit():
        return int(owner)
    import pwd
    try:
        return pwd.getpwnam(owner).pw_uid
    except KeyError:
        raise PVError('owner %r does not exist on this host' % owner)


def resolve_gid(group):
    if group is None or group == '':
        return None
    if isinstance(group, int) or str(group).isdigit():
        return int(group)
    import grp
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise PVError('group %r does not exist on this host' % group)


def parse_mode(mode):
    if mode is None or mode == '':
        return None
    if isinstance(mode, int):
        return mode
    text = str(mode)
    try:
        value = int(text, 8)
    except ValueError:
        raise PVError('mode %r must be octal, e.g. "0750"' % mode)
    if value < 0 or value > 0o7777:
        raise PVError('mode %r is out of range' % mode)
    return value
