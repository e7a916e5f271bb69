# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Small shared helpers with no Ansible dependency.

Everything under ``module_utils`` imports only the standard library (and
guarded third-party packages), so the volume-plugin daemon can run the same
code outside Ansible.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import re
import subprocess
import tempfile
import time

MANAGED_ROOT = '/var/lib/persistent-volumes'
MANAGED_LABEL = 'io.persistent-volumes.managed'
BACKEND_LABEL = 'io.persistent-volumes.backend'
NAME_MAX = 64

_NAME_RE = re.compile(r'^[A-Za-z0-9][A-Za-z0-9_.-]*$')
_SIZE_RE = re.compile(r'^\s*(?P<num>[0-9]+(?:\.[0-9]+)?)\s*(?P<unit>[A-Za-z]*)\s*$')
_UNITS = {
    '': 1, 'b': 1,
    'k': 1024, 'kb': 1000, 'kib': 1024,
    'm': 1024 ** 2, 'mb': 1000 ** 2, 'mib': 1024 ** 2,
    'g': 1024 ** 3, 'gb': 1000 ** 3, 'gib': 1024 ** 3,
    't': 1024 ** 4, 'tb': 1000 ** 4, 'tib': 1024 ** 4,
}
FORBIDDEN_MOUNT_ROOTS = ('/proc', '/sys', '/dev', '/run', '/boot')


class PVError(Exception):
    """An error meant for the user: its message is shown as is.

    The base of every error of the collection: ``except PVError`` (and the modules'
    ``fail_json``) catch all of the typed errors below. Callers decide on the TYPE,
    never on the text of the message.
    """


class NotFound(PVError):
    """The thing asked for does not exist (a volume, a server, a VM, a disk)."""


class Refused(PVError):
    """A safety rule refuses the operation (not ours, shrink, foreign signature, fencing...)."""


class InUse(Refused):
    """Refused because something uses it (a container, another server, a mount)."""


class Conflict(PVError):
    """The request contradicts what exists (ambiguous names, taken ids, duplicates)."""


class TimedOut(PVError):
    """Waiting for a state change (or retrying a call) ran out of time."""


class Unavailable(PVError):
    """A service answered with a transient error (5xx, connection refused): worth a retry.

    ``ambiguous`` is true when the request may still have been carried out (a timeout).
    """

    def __init__(self, msg, ambiguous=False):
        super(Unavailable, self).__init__(msg)
        self.ambiguous = ambiguous


def reworded(exc, msg):
    """An error of the same type as ``exc`` with the message ``msg`` (a typed error stays typed)."""
    try:
        new = type(exc)(msg)
    except TypeError:           # an error class with another constructor (CommandError, TaskError)
        new = PVError(msg)
    if isinstance(new, Unavailable) and isinstance(exc, Unavailable):
        new.ambiguous = exc.ambiguous
    return new


#: returned by a :func:`poll` attempt that wants another round
AGAIN = object()


def poll(attempt, timeout, on_timeout, interval=0.5, factor=1.0, max_interval=None):
    """THE retry/wait loop of the collection: every retry and every wait for a state goes here.

    ``attempt()`` returns a result (done) or :data:`AGAIN`; between attempts sleep ``interval``
    seconds, multiplied by ``factor`` each round up to ``max_interval``, never past the deadline.
    When ``timeout`` seconds have passed, ``on_timeout()`` is returned (it usually raises
    :class:`TimedOut` or the last error).
    """
    deadline = time.monotonic() + timeout
    delay = interval
    while True:
        result = attempt()
        if result is not AGAIN:
            return result
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return on_timeout()
        time.sleep(min(delay, remaining))
        delay = delay * factor
        if max_interval is not None:
            delay = min(delay, max_interval)


class CommandError(PVError):
    def __init__(self, cmd, rc, stdout, stderr):
        self.cmd, self.rc, self.stdout, self.stderr = cmd, rc, stdout, stderr
        msg = (stderr or stdout or '').strip()
        super(CommandError, self).__init__(
            '%s failed (rc=%s): %s' % (' '.join(cmd), rc, msg))


def run(cmd, check=True, input_data=None, env=None):
    """Run ``cmd`` (a list), return (rc, stdout, stderr) as text."""
    proc = subprocess.run(
        cmd, input=input_data, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        universal_newlines=True, env=env, check=False)
    if check and proc.returncode != 0:
        raise CommandError(cmd, proc.returncode, proc.stdout, proc.stderr)
    return proc.returncode, proc.stdout, proc.stderr


def parse_size(value, what='size'):
    """Parse ``2GiB``, ``512M``, ``1.5G`` or a plain byte count into bytes.

    Bare ``K/M/G/T`` are binary (as in docker, truncate and most CLIs);
    ``KB/MB/GB/TB`` are decimal, ``KiB/MiB/GiB/TiB`` binary.
    """
    if isinstance(value, bool):
        raise PVError('%s must be a size such as 2GiB, got %r' % (what, value))
    if isinstance(value, int):
        num, unit = value, ''
    elif isinstance(value, float):
        num, unit = value, ''
    else:
        text = str(value)
        match = _SIZE_RE.match(text)
        if not match:
            raise PVError('%s %r is not a size such as 2GiB, 512MiB or 1073741824' % (what, value))
        num, unit = float(match.group('num')), match.group('unit').lower()
        if unit not in _UNITS:
            raise PVError('%s %r has an unknown unit %r (use B, KiB, MiB, GiB, TiB, KB, MB, GB, TB)'
                          % (what, value, match.group('unit')))
    size = int(num * _UNITS[unit])
    if size <= 0:
        raise PVError('%s must be greater than zero, got %r' % (what, value))
    return size


def human_size(nbytes):
    for unit, factor in (('TiB', 1024 ** 4), ('GiB', 1024 ** 3), ('MiB', 1024 ** 2), ('KiB', 1024)):
        if nbytes >= factor and nbytes % factor == 0:
            return '%d%s' % (nbytes // factor, unit)
    return '%dB' % nbytes


def validate_name(name):
    """Volume names are also Docker volume names, file names and fstab paths."""
    if not isinstance(name, str) or not name:
        raise PVError('volume name must be a non-empty string')
    if len(name) > NAME_MAX:
        raise PVError('volume name %r is longer than %d characters' % (name, NAME_MAX))
    if '/' in name or '..' in name or not _NAME_RE.match(name):
        raise PVError('volume name %r is invalid: use letters, digits, "_", "." and "-", '
                      'starting with a letter or digit, no "/" or ".."' % name)
    return name


def validate_mount_path(path):
    if not isinstance(path, str) or not path:
        raise PVError('mount path must be a non-empty absolute path')
    if not path.startswith('/'):
        raise PVError('mount path %r must be absolute' % path)
    if path.strip('/') == '':
        raise PVError('mount path must not be "/" itself')
    norm = os.path.normpath(path)
    if norm != path.rstrip('/') or '//' in path:
        raise PVError('mount path %r must be normalised (no "..", "." or "//")' % path)
    if norm == '/':
        raise PVError('mount path must not be "/" itself')
    for root in FORBIDDEN_MOUNT_ROOTS:
        if norm == root or norm.startswith(root + '/'):
            raise PVError('mount path %r is under %s, which is not allowed' % (path, root))
    if any(c.isspace() for c in norm):
        raise PVError('mount path %r must not contain white space' % path)
    return norm


def atomic_write(path, data, mode=0o644):
    """Write ``data`` (text) to ``path`` atomically: temp file, fsync, rename."""
    directory = os.path.dirname(path) or '.'
    if not os.path.isdir(directory):
        os.makedirs(directory, 0o755, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix='.%s.' % os.path.basename(path), dir=directory)
    try:
        with os.fdopen(fd, 'w') as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.rename(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    try:
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def read_json(path, default):
    try:
        with open(path) as handle:
            return json.load(handle)
    except (IOError, OSError):
        return default
    except ValueError:
        raise PVError('%s is not valid JSON; fix or remove it' % path)
