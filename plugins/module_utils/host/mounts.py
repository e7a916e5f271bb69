# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Mounts and fstab: the live mount table (``/proc/self/mountinfo``), the fstab file, mount(8)/umount(8).

Rule: only the mount table and fstab here (no filesystem contents, no ownership, no cloud);
fstab is rewritten atomically and only when it changed.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import fcntl
import os

from ..common import atomic_write, run

FSTAB = '/etc/fstab'


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


def mount(device, target, fstype, options):
    run(['mount', '-t', fstype, '-o', options, device, target])


def umount(target, lazy=False):
    run(['umount'] + (['-l'] if lazy else []) + [target])
