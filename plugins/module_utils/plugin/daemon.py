# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Docker volume-plugin daemon (legacy plugin protocol, ``VolumeDriver``).

Run it as::

    PYTHONPATH=<dir holding ansible_collections/> \\
    python -m ansible_collections.persistent_volumes.docker.plugins.module_utils.plugin.daemon \\
        --config /etc/persistent-volumes/plugin-pv-loop.json

It listens on ``/run/docker/plugins/<driver>.sock`` (directory 0700, socket
0600: root only) and answers ``/Plugin.Activate`` and ``/VolumeDriver.Create,
Remove, Mount, Unmount, Path, Get, List, Capabilities``. Standard library only.

One source of truth: every storage and host change goes through
:class:`engine.Engine` (the same backend protocol and host chain as the
``volume`` module), with the daemon's own root
(``/var/lib/persistent-volumes/plugin/<driver>``: state record, loop images,
mountpoints, a private fstab that nothing mounts from), ``docker_volume=False``
(Docker itself owns the plugin's volume objects) and ``check_users=False``.

Lifecycle of a volume:

* ``Create`` makes the storage and the filesystem right away (so a bad size,
  an unknown volume type or a backend that is down fail ``docker volume
  create``, not the first ``docker run``), then leaves it *detached* (state
  ``detached``: unmounted, storage detached but kept). For ext4 the empty
  ``lost+found`` directory mkfs makes is removed right after mkfs (setting
  ``lost_found: keep`` keeps it): the volume's data lives at the root of the
  filesystem, and images such as postgres or mysql refuse to initialise a
  non-empty data directory. e2fsck recreates it if it ever needs one.
  A volume that already exists on the backend (a ``global`` volume created
  from another host) is only recorded.
* ``Mount`` (per caller ID) attaches and mounts it on the first user (engine
  ``present``); later callers only add their ID. ``Unmount`` drops the ID; the
  last one unmounts it and detaches the storage (engine ``detached``), so a
  cloud volume can move to another host. Both are idempotent. That release
  happens ``unmount_grace`` seconds (default 3) after the last Unmount, unless
  a Mount comes first: Docker mounts a plugin volume once while it creates a
  container (to copy image content into it) and again when it starts it, and
  a container restart is an Unmount followed by a Mount; without the grace each
  would detach and re-attach the storage. Remove and shutdown release at once.
* Attached to another server/VM: the backend's fenced force-detach applies
  (only when that server/VM is stopped); per-volume backend options and the
  configured ``defaults.backend_options`` are passed to the backend.
* ``Remove`` refuses while mounted, else deletes storage and record (engine
  ``absent``).

Reference counts (caller IDs) are written atomically to ``<root>/plugin.json``
on every change. At start they are rebuilt: volumes nobody holds are
unmounted/detached (the mount table and the backend say what is left over),
and IDs read from disk stay *unverified* until the Docker API (running
containers that use the volume) confirms them; IDs Docker no longer backs are
dropped, and a volume nobody holds any more is unmounted. Docker may be down
when the daemon starts (the unit runs ``Before=docker.service``): the check
then runs as soon as Docker answers.

Every error is an ``{"Err": "..."}`` answer; credentials from the
configuration are never logged or returned. One log line per operation goes
to stderr (journald under systemd).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import argparse
import json
import os
import signal
import socket
import socketserver
import sys
import threading
import time
import traceback

from http.server import BaseHTTPRequestHandler

from ..host import chain as host
from ..backends.base import VolumeRequest, get_backend
from ..common import PVError, atomic_write, human_size, parse_size, read_json, validate_name
from ..core.engine import Engine, VolumeSpec
from .config import PluginConfig
from .docker_probe import DockerProbe

MIME = 'application/vnd.docker.plugins.v1.2+json'
MAX_BODY = 1024 * 1024
MAX_ID = 256
BASE_OPTS = ('size', 'fstype', 'mount_options', 'uid', 'gid', 'mode')
STATE_FILE = 'plugin.json'
METHODS = ('Plugin.Activate', 'VolumeDriver.Create', 'VolumeDriver.Remove', 'VolumeDriver.Mount',
           'VolumeDriver.Unmount', 'VolumeDriver.Path', 'VolumeDriver.Get', 'VolumeDriver.List',
           'VolumeDriver.Capabilities')


class RequestError(PVError):
    """A request the daemon refuses (bad input); answered with Err."""


def _now_iso():
    return time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())


def mount_table():
    with open('/proc/self/mountinfo') as handle:
        return host.parse_mountinfo(handle.read())


class PluginStore(object):
    """``<root>/plugin.json``: per-volume create options and the mount references."""

    def __init__(self, root):
        self.path = os.path.join(root, STATE_FILE)
        self.data = {'version': 1, 'volumes': {}, 'refs': {}}

    def load(self):
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
        atomic_write(self.path, json.dumps(self.data, sort_keys=True, indent=1) + '\n', 0o600)


class VolumeDriver(object):
    """The protocol's operations; thread safe (one lock serialises changes)."""

    def __init__(self, config, engine_factory=None, probe=None, mounts=None, logger=None):
        self.cfg = config
        os.environ.update(getattr(config, 'environment', {}))
        self.root = config.root
        self.mounts_dir = os.path.join(self.root, 'mounts')
        self.lock = threading.RLock()
        self.store = PluginStore(self.root)
        self.unverified = set()            # (name, id) read from disk, not yet confirmed by Docker
        self.engine_factory = engine_factory or self._make_engine
        self.probe = probe if probe is not None else DockerProbe(config.docker_host)
        self.mount_table = mounts or mount_table
        self.logger = logger or (lambda line: None)
        self.wake = threading.Event()
        self.verified_once = False
        self.pending = {}                  # name -> Timer of a deferred release (unmount_grace)
        self.scope, self.volume_options = self._backend_traits()

    # -- plumbing ----------------------------------------------------------------
    def _backend_traits(self):
        try:
            backend = get_backend(self.cfg.backend, dict(self.cfg.backend_params, root=self.root))
        except Exception as exc:  # pylint: disable=broad-except
            self.logger('backend %s unavailable at start: %s' % (self.cfg.backend, self.cfg.scrub(exc)))
            return ('local' if self.cfg.backend == 'loop' else 'global'), ()
        try:
            return backend.scope, tuple(backend.volume_options or ())
        finally:
            try:
                backend.close()
            except Exception:  # pylint: disable=broad-except
                pass

    def _make_engine(self):
        return Engine(root=self.root, fstab_path=os.path.join(self.root, 'fstab'),
                      backend_params={self.cfg.backend: dict(self.cfg.backend_params)},
                      docker=None, workers=1,
                      log=(lambda msg: self.logger('engine: ' + msg)) if self.cfg.debug else None)

    def _apply(self, specs):
        engine = self.engine_factory()
        try:
            results, _diff = engine.apply(specs)
            return results
        finally:
            try:
                engine.close()
            except Exception:  # pylint: disable=broad-except
                pass

    def _lookup(self, name, size=None):
        engine = self.engine_factory()
        try:
            found = engine.backend(self.cfg.backend).lookup([VolumeRequest(name, size)])
            return found.get(name)
        finally:
            try:
                engine.close()
            except Exception:  # pylint: disable=broad-except
                pass

    def mountpoint(self, name):
        return os.path.join(self.mounts_dir, name)

    def mount_count(self, path, table=None):
        return sum(1 for m in (table if table is not None else self.mount_table()) if m.target == path)

    def is_mounted(self, name, table=None):
        return self.mount_count(self.mountpoint(name), table) > 0

    def spec(self, name, rec, state):
        fstype = rec.get('fstype') or self.cfg.defaults['fstype']
        spec = {
            'name': name, 'state': state, 'backend': self.cfg.backend, 'fstype': fstype,
            'mount_path': self.mountpoint(name),
            'owner': rec.get('uid'), 'group': rec.get('gid'), 'mode': rec.get('mode'),
            'mount_options': rec.get('mount_options') or self.cfg.defaults['mount_options'],
            'backend_options': dict(rec.get('backend_options') or {}),
            'docker_volume': False, 'check_users': False, 'timeout': self.cfg.timeout,
            'mkfs_options': self.cfg.mkfs_options.get(fstype, []),
        }
        if state == 'present':
            spec['size'] = rec.get('size')
        return spec

    # -- validation ----------------------------------------------------------------
    @staticmethod
    def check_name(body):
        name = body.get('Name')
        if name is None:
            raise RequestError('missing field "Name"')
        if not isinstance(name, str):
            raise RequestError('field "Name" must be a string')
        try:
            validate_name(name)
        except PVError as exc:
            raise RequestError(str(exc))
        return name

    @staticmethod
    def check_id(body):
        caller = body.get('ID')
        if caller is None:
            raise RequestError('missing field "ID"')
        if not isinstance(caller, str) or not caller or len(caller) > MAX_ID or not caller.isprintable():
            raise RequestError('field "ID" must be a non-empty printable string of at most %d characters' % MAX_ID)
        return caller

    def record_from_opts(self, name, opts):
        """Validate Create options; return the volume record (nothing is changed)."""
        if opts is None:
            opts = {}
        if not isinstance(opts, dict):
            raise RequestError('field "Opts" must be an object of strings')
        allowed = BASE_OPTS + tuple(self.volume_options)
        unknown = sorted(k for k in opts if k not in allowed)
        if unknown:
            raise RequestError('unknown option(s) %s (supported: %s)' % (', '.join(map(str, unknown)), ', '.join(allowed)))
        for key, value in opts.items():
            if not isinstance(value, (str, int)) or isinstance(value, bool):
                raise RequestError('option %s must be a string' % key)
            if len(str(value)) > 1024:
                raise RequestError('option %s is too long' % key)
        defaults = self.cfg.defaults
        size_text = str(opts.get('size') or defaults['size'])
        if len(size_text) > 32:
            raise RequestError('size %r is not a size such as 10GiB' % size_text[:40])
        try:
            size = parse_size(size_text)
        except (PVError, OverflowError, ValueError) as exc:
            raise RequestError(str(exc) if isinstance(exc, PVError) else 'size %r is out of range' % size_text)
        if size > self.cfg.max_size:
            raise RequestError('size %s is larger than the allowed maximum %s (max_size)'
                               % (human_size(size), human_size(self.cfg.max_size)))
        backend_options = dict(defaults['backend_options'])
        for key in self.volume_options:
            if key in opts:
                backend_options[key] = str(opts[key])
        rec = {
            'size': size,
            'fstype': str(opts.get('fstype') or defaults['fstype']),
            'mount_options': str(opts.get('mount_options') or defaults['mount_options']),
            'uid': _str_or_none(opts.get('uid', defaults['uid'])),
            'gid': _str_or_none(opts.get('gid', defaults['gid'])),
            'mode': _str_or_none(opts.get('mode', defaults['mode'])),
            'backend_options': backend_options,
        }
        try:
            VolumeSpec.from_dict(self.spec(name, rec, 'present'), self.root)
        except PVError as exc:
            raise RequestError(str(exc))
        return rec

    # -- the protocol ----------------------------------------------------------------
    def activate(self, body):
        return {'Implements': ['VolumeDriver']}

    def capabilities(self, body):
        return {'Capabilities': {'Scope': self.scope}}

    def create(self, body):
        name = self.check_name(body)
        with self.lock:
            rec = self.record_from_opts(name, body.get('Opts'))
            current = self.store.volumes.get(name)
            if current is not None:
                given = body.get('Opts') or {}
                diffs = [k for k in given if str(_rec_value(rec, k)) != str(_rec_value(current, k))]
                if diffs:
                    raise RequestError('volume %s exists with different %s' % (name, ', '.join(sorted(diffs))))
                return {'Err': ''}, 'exists'
            vol = self._lookup(name, rec['size'])
            if vol is not None:
                # exists on the backend (another host's global volume, or left by an
                # interrupted create): record it; Mount brings it here (and grows it)
                rec['size'] = max(rec['size'], vol.size)
                rec['backend_id'] = vol.id
                rec['created'] = _now_iso()
                self.store.volumes[name] = rec
                self.store.save()
                return {'Err': ''}, 'adopted %s' % vol.id
            results = self._apply([self.spec(name, rec, 'present')])
            result = results[0]
            rec['size'] = result.get('size') or rec['size']
            rec['backend_id'] = result.get('backend_id')
            rec['created'] = _now_iso()
            note = 'created %s (%s)' % (rec['backend_id'], human_size(rec['size']))
            if 'mkfs' in result.get('actions', ()) and rec['fstype'] == 'ext4' and self.cfg.lost_found == 'remove':
                try:
                    os.rmdir(os.path.join(self.mountpoint(name), 'lost+found'))
                except OSError:
                    pass
            self.store.volumes[name] = rec
            self.store.save()
            try:
                self._apply([self.spec(name, rec, 'detached')])
            except PVError as exc:
                self.logger('create %s: left mounted, detaching failed: %s' % (name, self.cfg.scrub(exc)))
            return {'Err': ''}, note

    def remove(self, body):
        name = self.check_name(body)
        with self.lock:
            refs = self.store.refs.get(name) or []
            if refs:
                raise RequestError('volume %s is mounted for %d container(s); not removed' % (name, len(refs)))
            self._cancel_release(name)
            rec = self.store.volumes.get(name)
            if rec is None:
                rec = self._remote_record(name)
                if rec is None:
                    return {'Err': ''}, 'unknown, nothing to do'
            self._apply([self.spec(name, rec, 'absent')])
            self.store.volumes.pop(name, None)
            self.store.refs.pop(name, None)
            self.store.save()
            return {'Err': ''}, 'deleted'

    def mount(self, body):
        name = self.check_name(body)
        caller = self.check_id(body)
        with self.lock:
            rec = self._record(name)
            path = self.mountpoint(name)
            note = 'ref'
            if self._cancel_release(name):
                note = 'kept'            # re-mounted within the grace period: no attach, no mount
            if not self.is_mounted(name):
                results = self._apply([self.spec(name, rec, 'present')])
                size = results[0].get('size')
                if size and size != rec.get('size'):
                    rec['size'] = size
                note = 'mounted'
            elif any(rec.get(k) is not None for k in ('uid', 'gid', 'mode')):
                # already mounted: owner and mode of the volume root as asked (Docker's copy of
                # the image's directory into a new volume, at container create, resets them)
                if host.apply_ownership(path, rec.get('uid'), rec.get('gid'), host.parse_mode(rec.get('mode'))):
                    note += ' ownership'
            refs = self.store.refs.setdefault(name, [])
            if caller not in refs:
                refs.append(caller)
            self.unverified.discard((name, caller))
            self.store.save()
            return {'Mountpoint': path, 'Err': ''}, '%s refs=%d' % (note, len(refs))

    def unmount(self, body):
        name = self.check_name(body)
        caller = self.check_id(body)
        with self.lock:
            if name not in self.store.volumes and name not in self.store.refs:
                raise RequestError('no such volume: %s' % name)
            refs = self.store.refs.get(name) or []
            known = caller in refs
            if known:
                refs.remove(caller)
            self.unverified.discard((name, caller))
            if refs:
                self.store.refs[name] = refs
            else:
                self.store.refs.pop(name, None)
            self.store.save()
            if refs:
                if any((name, r) in self.unverified for r in refs):
                    self.wake.set()      # let the verifier check them against Docker
                return {'Err': ''}, 'refs=%d%s' % (len(refs), '' if known else ' (unknown ID)')
            grace = self.cfg.unmount_grace
            if grace > 0:
                self._cancel_release(name)
                timer = threading.Timer(grace, self._release_later, args=(name,))
                timer.daemon = True
                self.pending[name] = timer
                timer.start()
                return {'Err': ''}, 'refs=0 release in %gs' % grace
            note = self._teardown(name)
            return {'Err': ''}, 'refs=0 %s' % note

    def _cancel_release(self, name):
        timer = self.pending.pop(name, None)
        if timer is not None:
            timer.cancel()
            return True
        return False

    def _release_later(self, name):
        """The deferred part of the last Unmount: unmount and detach unless a Mount came."""
        started = time.monotonic()
        with self.lock:
            if self.pending.get(name) is not threading.current_thread():
                return                   # cancelled or replaced meanwhile
            del self.pending[name]
            if self.store.refs.get(name):
                return
            try:
                note = self._teardown(name)
            except Exception as exc:  # pylint: disable=broad-except
                self.logger('Release name=%s err %s (%dms)' % (name, self.cfg.scrub(exc),
                                                               (time.monotonic() - started) * 1000))
                return
        self.logger('Release name=%s ok %s (%dms)' % (name, note, (time.monotonic() - started) * 1000))

    def flush(self):
        """Run the pending releases now (at shutdown)."""
        with self.lock:
            names = list(self.pending)
            for name in names:
                self._cancel_release(name)
                if not self.store.refs.get(name):
                    try:
                        self.logger('Release name=%s ok %s (shutdown)' % (name, self._teardown(name)))
                    except Exception as exc:  # pylint: disable=broad-except
                        self.logger('Release name=%s err %s (shutdown)' % (name, self.cfg.scrub(exc)))

    def _teardown(self, name):
        rec = self.store.volumes.get(name)
        if rec is None:
            return 'no record'
        results = self._apply([self.spec(name, rec, 'detached')])
        actions = results[0].get('actions') or []
        return ','.join(a for a in actions if a in ('umount', 'detach')) or 'already detached'

    def path(self, body):
        name = self.check_name(body)
        with self.lock:
            if name not in self.store.volumes:
                raise RequestError('no such volume: %s' % name)
            mounted = self.is_mounted(name)
        return {'Mountpoint': self.mountpoint(name) if mounted else '', 'Err': ''}, \
            'mounted' if mounted else 'not mounted'

    def get(self, body):
        name = self.check_name(body)
        table = self.mount_table()
        with self.lock:
            rec = self.store.volumes.get(name)
            if rec is None:
                rec = self._remote_record(name)
                if rec is None:
                    raise RequestError('no such volume: %s' % name)
            return {'Volume': self._describe(name, rec, table), 'Err': ''}, ''

    def list(self, body):
        table = self.mount_table()
        with self.lock:
            vols = dict(self.store.volumes)
        if self.scope == 'global':
            engine = self.engine_factory()
            try:
                for vol in engine.backend(self.cfg.backend).list_volumes():
                    if vol.name not in vols and _valid_name(vol.name):
                        vols[vol.name] = {'size': vol.size, 'backend_id': vol.id}
            finally:
                engine.close()
        with self.lock:
            listing = [self._describe(name, rec, table) for name, rec in sorted(vols.items())]
        return {'Volumes': listing, 'Err': ''}, '%d volumes' % len(listing)

    def _describe(self, name, rec, table):
        vol = {'Name': name}
        if self.is_mounted(name, table):
            vol['Mountpoint'] = self.mountpoint(name)
        if rec.get('created'):
            vol['CreatedAt'] = rec['created']
        refs = self.store.refs.get(name) or []
        vol['Status'] = {
            'backend': self.cfg.backend, 'backend_id': rec.get('backend_id'),
            'size': human_size(rec['size']) if rec.get('size') else None,
            'fstype': rec.get('fstype') or self.cfg.defaults['fstype'],
            'mounts': len(refs), 'state': 'mounted' if 'Mountpoint' in vol else 'detached',
        }
        return vol

    def _record(self, name):
        rec = self.store.volumes.get(name)
        if rec is None:
            rec = self._remote_record(name)
            if rec is None:
                raise RequestError('no such volume: %s' % name)
            rec['created'] = _now_iso()
            self.store.volumes[name] = rec
        return rec

    def _remote_record(self, name):
        """A global volume this host has no record of (made from another host)."""
        if self.scope != 'global':
            return None
        vol = self._lookup(name)
        if vol is None:
            return None
        rec = dict(self.record_from_opts(name, {}), size=vol.size, backend_id=vol.id)
        fstype = vol.extra.get('fstype') if vol.extra else None
        if fstype:
            rec['fstype'] = fstype
        return rec

    # -- start-up and verification ------------------------------------------------------
    def start(self):
        """Load the record; check references against Docker and release what nobody holds."""
        if not os.path.isdir(self.root):
            os.makedirs(self.root, 0o700)
        with self.lock:
            self.store.load()
            for name, ids in self.store.refs.items():
                for caller in ids:
                    self.unverified.add((name, caller))
            table = self.mount_table()
            held = [n for n in self.store.refs if not self.is_mounted(n, table)]
            if held:
                self.logger('start: %d volume(s) with references are not mounted (%s); '
                            'mounted again on the next Mount' % (len(held), ', '.join(held)))
        if not self.verify():
            self.logger('start: Docker not reachable; %d mount reference(s) are checked and unused '
                        'volumes released once it answers' % len(self.unverified))

    def verify(self):
        """Check references against Docker (the running containers that use our volumes).

        Only IDs read from disk at start (or made up for containers found
        running) are ever dropped; IDs Docker sent to this process are
        authoritative. The first check after start also adopts running users
        the record lost and releases every volume nobody holds (and stray
        mounts under ``<root>/mounts``). Returns False if Docker did not answer.
        """
        first = not self.verified_once
        if not first and not self.unverified:
            return True
        try:
            holders = self.probe.volume_holders(self.cfg.driver)
        except PVError:
            return False
        with self.lock:
            names = sorted(set(n for n, _i in self.unverified))
            changes = []
            for name in names:
                refs = list(self.store.refs.get(name) or [])
                unv = [r for r in refs if (name, r) in self.unverified]
                live = [r for r in refs if (name, r) not in self.unverified]
                keep = max(0, len(holders.get(name) or []) - len(live))
                for caller in unv[keep:]:
                    self.unverified.discard((name, caller))
                new = live + unv[:keep]
                if new != refs:
                    changes.append('%s %d->%d' % (name, len(refs), len(new)))
                if new:
                    self.store.refs[name] = new
                else:
                    self.store.refs.pop(name, None)
            if first:
                # references lost with the record: one per running container
                for name, cids in sorted(holders.items()):
                    if name in self.store.volumes and not self.store.refs.get(name):
                        self.store.refs[name] = ['docker:%s' % c for c in cids]
                        for cid in cids:
                            self.unverified.add((name, 'docker:%s' % cid))
                        changes.append('%s 0->%d (adopted)' % (name, len(cids)))
            if changes:
                self.store.save()
            if first:
                release = [n for n in sorted(self.store.volumes) if not self.store.refs.get(n)]
                specs = [self.spec(n, self.store.volumes[n], 'detached') for n in release]
                specs += self._stray_specs()
            else:
                release = [n for n in names if not self.store.refs.get(n) and n in self.store.volumes]
                specs = [self.spec(n, self.store.volumes[n], 'detached') for n in release]
            self.verified_once = True
            for spec in specs:
                self._cancel_release(spec['name'])
            done = []
            if specs:
                try:
                    results = self._apply(specs)
                    done = ['%s:%s' % (r['name'], ','.join(r['actions'])) for r in results if r['actions']]
                except PVError as exc:
                    self.logger('verify: releasing unused volumes failed: %s' % self.cfg.scrub(exc))
            if changes or done or first:
                self.logger('verify: references checked against Docker%s: %s%s'
                            % (' (start)' if first else '', ', '.join(changes) or 'unchanged',
                               ('; released ' + ' '.join(done)) if done else ''))
        return True

    def _stray_specs(self):
        """Mounts under <root>/mounts without a record (an interrupted Create)."""
        specs = []
        if not os.path.isdir(self.mounts_dir):
            return specs
        table = self.mount_table()
        engine_state = read_json(os.path.join(self.root, 'state.json'), {}).get('volumes') or {}
        for entry in sorted(os.listdir(self.mounts_dir)):
            if entry not in self.store.volumes and _valid_name(entry) and self.is_mounted(entry, table):
                specs.append(self.spec(entry, {'fstype': (engine_state.get(entry) or {}).get('fstype')},
                                       'detached'))
        return specs

    def verifier_loop(self, stop, settle=2.0, interval=10.0):
        """Background: re-check unverified references (after Unmounts, and periodically)."""
        while not stop.is_set():
            self.wake.wait(interval)
            if stop.is_set():
                return
            woke = self.wake.is_set()
            self.wake.clear()
            if self.unverified or not self.verified_once:
                if woke:
                    stop.wait(settle)      # Docker updates the container state around Unmount
                try:
                    self.verify()
                except Exception as exc:  # pylint: disable=broad-except
                    self.logger('verify failed: %s' % self.cfg.scrub(exc))


def _str_or_none(value):
    if value is None or value == '':
        return None
    return str(value)


def _rec_value(rec, key):
    if key in rec:
        return rec[key]
    return (rec.get('backend_options') or {}).get(key)


def _valid_name(name):
    try:
        validate_name(name)
        return True
    except PVError:
        return False


# -- HTTP over the unix socket -------------------------------------------------------

class PluginServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    request_queue_size = 256
    allow_reuse_address = False

    def __init__(self, path, driver, log_line):
        self.driver = driver
        self.log_line = log_line
        socketserver.UnixStreamServer.__init__(self, path, PluginHandler)

    def handle_error(self, request, client_address):
        exc = sys.exc_info()[1]
        self.log_line('connection error: %s: %s' % (type(exc).__name__, self.driver.cfg.scrub(exc)))


class PluginHandler(BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    server_version = 'persistent-volumes-plugin'
    sys_version = ''
    timeout = 60

    def log_message(self, format, *args):  # pylint: disable=redefined-builtin
        return None

    def address_string(self):
        return 'unix'

    def _reply(self, code, payload):
        data = json.dumps(payload).encode('utf-8')
        try:
            self.send_response(code)
            self.send_header('Content-Type', MIME)
            self.send_header('Content-Length', str(len(data)))
            if self.close_connection:
                self.send_header('Connection', 'close')
            self.end_headers()
            self.wfile.write(data)
        except (OSError, IOError):
            self.close_connection = True

    def send_error(self, code, message=None, explain=None):
        # HTTP-level garbage (bad request line, headers too long...): still a JSON Err
        self.close_connection = True
        msg = 'bad request: %s' % (message or code)
        self.server.log_line('%s %s' % ('http', msg))
        self._reply(code, {'Err': msg})

    def do_GET(self):
        self._wrong_method()

    do_PUT = do_DELETE = do_HEAD = do_PATCH = do_OPTIONS = do_GET

    def _wrong_method(self):
        self.close_connection = True
        try:
            self._read_body(discard=True)
        except PVError:
            pass
        self.server.log_line('%s %s: err method not allowed' % (_printable(self.command[:16]), _printable(self.path[:80])))
        self._reply(405, {'Err': 'method %s not allowed: the plugin API uses POST' % self.command[:16]})

    def _read_body(self, discard=False):
        if 'chunked' in (self.headers.get('Transfer-Encoding') or '').lower():
            self.close_connection = True
            raise RequestError('chunked request bodies are not supported; send Content-Length')
        raw = self.headers.get('Content-Length')
        if raw is None:
            return b''
        try:
            length = int(raw)
        except ValueError:
            self.close_connection = True
            raise RequestError('invalid Content-Length %r' % raw[:32])
        if length < 0:
            self.close_connection = True
            raise RequestError('invalid Content-Length %r' % raw[:32])
        if length > MAX_BODY:
            self.close_connection = True
            raise RequestError('request body of %d bytes is larger than %d' % (length, MAX_BODY))
        data = self.rfile.read(length) if length else b''
        if len(data) != length:
            self.close_connection = True
            raise RequestError('request body truncated (%d of %d bytes)' % (len(data), length))
        return b'' if discard else data

    def do_POST(self):
        started = time.monotonic()
        driver = self.server.driver
        method = self.path.lstrip('/')
        name = '-'
        status = 200
        body = None
        try:
            if method not in METHODS:
                status = 404
                self._read_body(discard=True)
                raise RequestError('unknown endpoint %r' % self.path[:80])
            data = self._read_body()
            if data.strip():
                try:
                    body = json.loads(data.decode('utf-8'))
                except (ValueError, UnicodeDecodeError) as exc:
                    raise RequestError('malformed JSON: %s' % exc)
            else:
                body = {}
            if body is None:
                body = {}
            if not isinstance(body, dict):
                raise RequestError('request body must be a JSON object')
            raw_name = body.get('Name')
            if isinstance(raw_name, str):
                name = raw_name[:80]
            handler = {
                'Plugin.Activate': driver.activate,
                'VolumeDriver.Capabilities': driver.capabilities,
                'VolumeDriver.Create': driver.create,
                'VolumeDriver.Remove': driver.remove,
                'VolumeDriver.Mount': driver.mount,
                'VolumeDriver.Unmount': driver.unmount,
                'VolumeDriver.Path': driver.path,
                'VolumeDriver.Get': driver.get,
                'VolumeDriver.List': driver.list,
            }[method]
            result = handler(body)
            payload, note = result if isinstance(result, tuple) else (result, '')
            outcome = 'ok' + (' ' + note if note else '')
        except PVError as exc:
            payload = {'Err': driver.cfg.scrub(exc)}
            outcome = 'err ' + payload['Err']
        except Exception as exc:  # pylint: disable=broad-except
            payload = {'Err': driver.cfg.scrub('internal error: %s: %s' % (type(exc).__name__, exc))}
            outcome = 'err ' + payload['Err']
            if driver.cfg.debug:
                self.server.log_line(driver.cfg.scrub(traceback.format_exc()).replace('\n', ' | '))
        caller = ''
        if isinstance(body, dict) and isinstance(body.get('ID'), str):
            caller = ' id=%s' % body['ID'][:12]
        op = method.split('.')[-1] if method in METHODS else 'unknown'
        self.server.log_line('%s name=%s%s %s (%dms)' % (op, _printable(name), caller, _printable(outcome),
                                                         (time.monotonic() - started) * 1000))
        self._reply(status, payload)


def _printable(text):
    text = str(text)
    return ''.join(c if c.isprintable() else '?' for c in text)[:400]


# -- process ---------------------------------------------------------------------------

class LogLine(object):
    def __init__(self, config, stream=None):
        self.config = config
        self.stream = stream or sys.stderr
        self.lock = threading.Lock()

    def __call__(self, line):
        text = '%s %s: %s\n' % (time.strftime('%Y-%m-%dT%H:%M:%S'), self.config.driver,
                                self.config.scrub(line).replace('\n', ' '))
        with self.lock:
            try:
                self.stream.write(text)
                self.stream.flush()
            except (OSError, IOError, ValueError):
                pass


def bind(path, driver, log_line):
    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        os.makedirs(directory, 0o700)
    if os.stat(directory).st_mode & 0o077:
        os.chmod(directory, 0o700)          # the plugin sockets are root's only
        log_line('made %s root-only (0700)' % directory)
    if os.path.exists(path):
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.settimeout(2)
        try:
            probe.connect(path)
        except (OSError, IOError):
            os.unlink(path)            # stale socket of a dead daemon
        else:
            raise PVError('another process already serves %s' % path)
        finally:
            probe.close()
    old = os.umask(0o177)
    try:
        server = PluginServer(path, driver, log_line)
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    return server


def main(argv=None):
    parser = argparse.ArgumentParser(prog='pv-volume-plugin', description='Docker volume plugin daemon '
                                     '(persistent_volumes.docker)')
    parser.add_argument('--config', required=True, help='JSON configuration file (mode 0600)')
    parser.add_argument('--check-config', action='store_true', help='validate the configuration and exit')
    parser.add_argument('--pidfile', help='write the daemon pid here once it listens (removed on exit)')
    args = parser.parse_args(argv)
    try:
        config = PluginConfig.load(args.config)
    except PVError as exc:
        sys.stderr.write('pv-volume-plugin: %s\n' % exc)
        return 2
    log_line = LogLine(config)
    if args.check_config:
        log_line('configuration %s is valid (backend %s, socket %s)' % (args.config, config.backend, config.socket))
        return 0
    if config.mode is not None and config.mode & 0o077:
        log_line('warning: %s is readable by others (mode %04o); it should be 0600' % (args.config, config.mode))
    driver = VolumeDriver(config, logger=log_line)
    try:
        driver.start()
        server = bind(config.socket, driver, log_line)
    except PVError as exc:
        log_line('cannot start: %s' % exc)
        return 1
    stop = threading.Event()

    def _stop(signum, _frame):
        if not stop.is_set():
            stop.set()
            log_line('signal %d: stopping' % signum)
            threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    verifier = threading.Thread(target=driver.verifier_loop, args=(stop,), daemon=True)
    verifier.start()
    if driver.unverified or not driver.verified_once:
        driver.wake.set()
    if args.pidfile:
        atomic_write(args.pidfile, '%d\n' % os.getpid(), 0o644)
    log_line('listening on %s (backend %s, scope %s, root %s, pid %d)'
             % (config.socket, config.backend, driver.scope, config.root, os.getpid()))
    try:
        server.serve_forever(poll_interval=0.5)
    finally:
        stop.set()
        driver.wake.set()
        server.server_close()
        driver.flush()
        for path in (config.socket, args.pidfile):
            if path:
                try:
                    os.unlink(path)
                except OSError:
                    pass
        log_line('stopped')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
