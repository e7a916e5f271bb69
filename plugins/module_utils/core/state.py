# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The host's record of the volumes this collection manages.

``<root>/state.json`` is written atomically (temp file + fsync + rename) and
guarded by an flock on ``<root>/.lock`` held for a whole run, so the modules and
the plugin daemon never interleave their changes. A volume is recorded as
``provisioning`` before its storage is created, so an interrupted run leaves
a trace that ``volume_info`` reports and the next run completes.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import fcntl
import json
import os
import time

from ..common import MANAGED_ROOT, PVError, atomic_write, read_json

VERSION = 1


class StateStore(object):
    def __init__(self, root=MANAGED_ROOT, lock_timeout=300):
        self.root = root
        self.path = os.path.join(root, 'state.json')
        self.lock_timeout = lock_timeout
        self._lock_fd = None
        self.data = None
        self._saved = None

    def __enter__(self):
        self.lock()
        return self

    def __exit__(self, *exc):
        self.unlock()

    def lock(self):
        if not os.path.isdir(self.root):
            os.makedirs(self.root, 0o755)
        self._lock_fd = os.open(os.path.join(self.root, '.lock'), os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.monotonic() + self.lock_timeout
        while True:
            try:
                fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except (IOError, OSError):
                if time.monotonic() > deadline:
                    raise PVError('another run holds %s/.lock for more than %ss'
                                  % (self.root, self.lock_timeout))
                time.sleep(0.1)
        self.load()

    def unlock(self):
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def load(self):
        self.data = read_json(self.path, {'version': VERSION, 'volumes': {}})
        self.data.setdefault('volumes', {})
        self._saved = json.dumps(self.data, sort_keys=True)
        return self.data

    @property
    def volumes(self):
        if self.data is None:
            self.load()
        return self.data['volumes']

    def save(self):
        text = json.dumps(self.data, sort_keys=True, indent=1)
        if json.dumps(self.data, sort_keys=True) != self._saved:
            atomic_write(self.path, text + '\n', 0o600)
            self._saved = json.dumps(self.data, sort_keys=True)
