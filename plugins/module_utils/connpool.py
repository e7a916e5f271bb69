# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A process-wide pool of idle cloud connections (the volume-plugin daemon only).

OFF by default: a module is a one-shot process and closes its connections as it always did.
The daemon switches it on at start (:func:`enable`) and closes everything at shutdown
(:func:`disable`). While on, a client gives its SDK connection back (:meth:`Pool.give`)
instead of closing it, and the next client with the same connection parameters takes it
(:meth:`Pool.take`) instead of logging in again.

Rules:

* Only the SDK connection object is pooled (an ``openstack.connection.Connection``, a pyVmomi
  ``ServiceInstance``), never a client of this collection: their per-run caches (a server's
  status, a VM's devices) are read afresh by every run.
* A connection is used by one run at a time: ``take`` removes it from the pool, ``give`` puts it
  back. Two concurrent runs never share one.
* Keys are the frozen connection parameters (:func:`freeze`). They hold secrets: they are never
  logged, and :class:`Pool` never shows them.
* A connection idle longer than ``idle_seconds`` is closed (checked on every take and give).
* :meth:`remember`/:meth:`recall`: small process-wide facts derived from a connection (e.g. the
  id of this host's Nova server), kept only while the pool is on.

No Ansible imports.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import threading
import time

#: idle connections are closed after this many seconds (the daemon's default)
IDLE_SECONDS = 600
#: at most this many idle connections per key (more concurrent runs than this log in anew)
MAX_IDLE_PER_KEY = 4


def freeze(value):
    """A hashable, order-independent copy of ``value`` (dicts, lists, sets nested)."""
    if isinstance(value, dict):
        return tuple(sorted(((str(k), freeze(v)) for k, v in value.items()), key=lambda kv: kv[0]))
    if isinstance(value, (list, tuple)):
        return tuple(freeze(v) for v in value)
    if isinstance(value, (set, frozenset)):
        return tuple(sorted((freeze(v) for v in value), key=repr))
    return value


def _close_quietly(close, conn):
    try:
        close(conn)
    except Exception:  # pylint: disable=broad-except
        pass


class Pool(object):
    """Idle connections by key; thread safe. ``clock``: injectable for tests."""

    def __init__(self, clock=None, max_idle=MAX_IDLE_PER_KEY):
        self._clock = clock or getattr(time, 'monotonic', time.time)
        self._lock = threading.Lock()
        self._idle = {}          # key -> [(since, conn, close)], the most recently given last
        self._facts = {}
        self.max_idle = max_idle
        self.idle_seconds = None  # None: off

    def __repr__(self):
        return '<connpool.Pool %s, %d idle>' % ('on' if self.enabled else 'off', self.idle_count())

    @property
    def enabled(self):
        return self.idle_seconds is not None

    def enable(self, idle_seconds=IDLE_SECONDS):
        with self._lock:
            self.idle_seconds = float(idle_seconds)

    def disable(self):
        """Off, and every idle connection closed (daemon shutdown)."""
        with self._lock:
            self.idle_seconds = None
            self._facts.clear()
        self.close_all()

    def idle_count(self, key=None):
        with self._lock:
            if key is not None:
                return len(self._idle.get(key, ()))
            return sum(len(entries) for entries in self._idle.values())

    def _expired_locked(self, now):
        """Pop the entries idle too long (closed by the caller, outside the lock)."""
        out = []
        limit = self.idle_seconds
        for key in list(self._idle):
            keep = []
            for entry in self._idle[key]:
                if limit is None or now - entry[0] > limit:
                    out.append(entry)
                else:
                    keep.append(entry)
            if keep:
                self._idle[key] = keep
            else:
                del self._idle[key]
        return out

    def _close_entries(self, entries):
        for _since, conn, close in entries:
            _close_quietly(close, conn)

    def take(self, key, valid=None):
        """An idle connection for ``key`` (no longer in the pool), or None.

        ``valid(conn)`` (optional, run outside the lock, may do a round trip): False or an
        exception discards the connection (closed) and the next one is tried.
        """
        while True:
            with self._lock:
                if not self.enabled:
                    return None
                stale = self._expired_locked(self._clock())
                entries = self._idle.get(key)
                entry = entries.pop() if entries else None
                if entries is not None and not entries:
                    del self._idle[key]
            self._close_entries(stale)
            if entry is None:
                return None
            _since, conn, close = entry
            if valid is None:
                return conn
            try:
                ok = valid(conn)
            except Exception:  # pylint: disable=broad-except
                ok = False
            if ok:
                return conn
            _close_quietly(close, conn)

    def give(self, key, conn, close):
        """Put ``conn`` back for ``key`` (``close(conn)`` closes it for real later); when the pool
        is off (or full for ``key``) it is closed now. True when it was kept."""
        kept = False
        with self._lock:
            stale = []
            if self.enabled:
                now = self._clock()
                stale = self._expired_locked(now)
                entries = self._idle.setdefault(key, [])
                if len(entries) < self.max_idle:
                    entries.append((now, conn, close))
                    kept = True
                elif not entries:
                    del self._idle[key]
        self._close_entries(stale)
        if not kept:
            _close_quietly(close, conn)
        return kept

    def expire(self):
        """Close the connections idle too long now (also done by every take and give)."""
        with self._lock:
            stale = self._expired_locked(self._clock())
        self._close_entries(stale)
        return len(stale)

    def close_all(self):
        with self._lock:
            entries = [entry for per_key in self._idle.values() for entry in per_key]
            self._idle.clear()
        self._close_entries(entries)
        return len(entries)

    # -- facts derived from connections (only while on) --------------------------
    def remember(self, key, value):
        with self._lock:
            if self.enabled:
                self._facts[key] = value

    def recall(self, key, default=None):
        with self._lock:
            return self._facts.get(key, default) if self.enabled else default

    def forget(self, key):
        with self._lock:
            self._facts.pop(key, None)


#: the process-wide pool (off until :func:`enable`)
POOL = Pool()


def enable(idle_seconds=IDLE_SECONDS):
    POOL.enable(idle_seconds)


def disable():
    POOL.disable()


def enabled():
    return POOL.enabled
