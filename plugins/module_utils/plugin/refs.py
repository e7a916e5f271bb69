# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The daemon's bookkeeping: volume records, mount references, release timers, locks.

Rule: nothing here calls a backend, the engine or Docker, and no lock taken here is
held across one. Three kinds of lock, always taken in this order:

* :class:`VolumeLocks` — one lock PER VOLUME, held by the driver for a whole
  operation on that volume (including its engine run: attach, mkfs, mount...), so
  two Mounts of the same volume never race, while another volume's calls go on;
* :class:`PluginStore` ``.mutex`` — short: guards the in-memory record; taken and
  released inside an operation, never held while the record is written to disk
  (``save`` serializes under it, then writes under a separate writer lock, so a read
  never waits on an fsync);
* :class:`ReleaseTimers` has its own internal lock (never held while a callback runs).

A thread waits for at most one volume lock at a time (the reference check takes
several, but only those free at that moment: it never waits), so no two threads can
wait on each other.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import contextlib
import json
import os
import threading

from ..common import atomic_write, read_json

STATE_FILE = 'plugin.json'


class PluginStore(object):
    """``<root>/plugin.json``: per-volume create options and the mount references (caller IDs).

    Read and change ``volumes``/``refs`` only while holding ``mutex``.
    """

    def __init__(self, root):
        self.path = os.path.join(root, STATE_FILE)
        self.data = {'version': 1, 'volumes': {}, 'refs': {}}
        self.mutex = threading.RLock()
        self._writer = threading.Lock()
        self._seq = 0                    # snapshots taken
        self._written = 0                # the newest snapshot on disk

    def load(self):
        with self.mutex:
            data = read_json(self.path, None)
            if isinstance(data, dict):
                self.data = data
            self.data.setdefault('volumes', {})
            self.data.setdefault('refs', {})
            self.data['refs'] = dict((k, list(v)) for k, v in self.data['refs'].items() if v)
        return self

    @property
    def volumes(self):
        return self.data['volumes']

    @property
    def refs(self):
        return self.data['refs']

    def save(self):
        """Write the record (atomically, fsync'd) as it is now; returns once it (or a newer one) is
        on disk. Call it WITHOUT holding ``mutex``."""
        with self.mutex:
            text = json.dumps(self.data, sort_keys=True, indent=1) + '\n'
            self._seq += 1
            seq = self._seq
        with self._writer:
            if seq <= self._written:
                return                   # a newer snapshot was written meanwhile
            atomic_write(self.path, text, 0o600)
            self._written = seq

    # -- references -------------------------------------------------------------
    def refs_of(self, name):
        with self.mutex:
            return list(self.refs.get(name) or [])

    def add_ref(self, name, caller):
        """Record ``caller`` as a user of ``name`` (saved); returns the reference count."""
        with self.mutex:
            refs = self.refs.setdefault(name, [])
            if caller not in refs:
                refs.append(caller)
            count = len(refs)
        self.save()
        return count

    def drop_ref(self, name, caller):
        """Forget ``caller`` (saved); returns (was it known, the references left)."""
        with self.mutex:
            refs = list(self.refs.get(name) or [])
            known = caller in refs
            if known:
                refs.remove(caller)
            if refs:
                self.refs[name] = refs
            else:
                self.refs.pop(name, None)
        self.save()
        return known, refs

    def snapshot(self):
        """(volumes, refs): copies, for answers built without the mutex."""
        with self.mutex:
            return (dict((k, dict(v)) for k, v in self.volumes.items()),
                    dict((k, list(v)) for k, v in self.refs.items()))


class VolumeLocks(object):
    """One re-entrant lock per volume name, made on first use and dropped when unused."""

    def __init__(self):
        self._mutex = threading.Lock()
        self._locks = {}                 # name -> [RLock, holders and waiters]

    @contextlib.contextmanager
    def hold(self, name):
        with self._mutex:
            entry = self._locks.setdefault(name, [threading.RLock(), 0])
            entry[1] += 1
        entry[0].acquire()
        try:
            yield
        finally:
            self._release(name, entry)

    @contextlib.contextmanager
    def try_hold(self, names):
        """The locks of those of ``names`` nobody holds now (never waits); yields their names.

        For the background reference check: a volume busy with a call is left to that call.
        """
        held = []
        with contextlib.ExitStack() as stack:
            for name in sorted(set(names)):
                with self._mutex:
                    entry = self._locks.setdefault(name, [threading.RLock(), 0])
                    entry[1] += 1
                if entry[0].acquire(False):
                    stack.callback(self._release, name, entry)
                    held.append(name)
                else:
                    self._forget(name, entry)
            yield held

    def _release(self, name, entry):
        entry[0].release()
        self._forget(name, entry)

    def _forget(self, name, entry):
        with self._mutex:
            entry[1] -= 1
            if entry[1] == 0:
                self._locks.pop(name, None)

    def busy(self):
        with self._mutex:
            return sorted(self._locks)


class ReleaseTimers(object):
    """Deferred releases (``unmount_grace``): at most one pending timer per volume."""

    def __init__(self):
        self._mutex = threading.Lock()
        self._timers = {}                # name -> Timer

    def schedule(self, name, delay, func):
        """Run ``func(name)`` after ``delay`` seconds unless cancelled (replaces a pending one)."""
        timer = threading.Timer(delay, func, args=(name,))
        timer.daemon = True
        with self._mutex:
            old = self._timers.pop(name, None)
            self._timers[name] = timer
        if old is not None:
            old.cancel()
        timer.start()
        return timer

    def cancel(self, name):
        """True if a release was pending (it will not run)."""
        with self._mutex:
            timer = self._timers.pop(name, None)
        if timer is not None:
            timer.cancel()
            return True
        return False

    def claim(self, name, timer):
        """Called by a firing timer: True (and forgotten) if it is still the pending one."""
        with self._mutex:
            if self._timers.get(name) is not timer:
                return False
            del self._timers[name]
            return True

    def pending(self):
        with self._mutex:
            return sorted(self._timers)

    def __contains__(self, name):
        with self._mutex:
            return name in self._timers
