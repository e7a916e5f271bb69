# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the volume-plugin daemon DOES on each call (Create, Remove, Mount, Unmount, Path,
Get, List, Capabilities) and at start-up (references checked against Docker).

Rule: the operations only; wire checks come from :mod:`.protocol`, bookkeeping
(records, references, timers, locks) from :mod:`.refs`; every storage and host change
goes through :class:`core.engine.Engine` (the same backend protocol and host chain as
the ``volume`` module) with the daemon's own root, ``docker_volume=False`` (Docker owns
the plugin's volume objects) and ``check_users=False``.

Lifecycle of a volume:

* ``Create`` makes the storage and the filesystem right away (so a bad size, an unknown
  volume type or a backend that is down fail ``docker volume create``, not the first
  ``docker run``), then leaves it *detached* (unmounted, storage detached but kept).
  For ext4 the empty ``lost+found`` mkfs makes is removed (``lost_found: keep`` keeps
  it): images such as postgres refuse a non-empty data directory. A volume that
  already exists on the backend (a ``global`` volume created from another host) is
  only recorded.
* ``Mount`` (per caller ID) attaches and mounts it for the first user (engine
  ``present``); later callers only add their ID. ``Unmount`` drops the ID; the last
  one unmounts and detaches (engine ``detached``) ``unmount_grace`` seconds later
  unless a Mount comes first (Docker mounts a volume at container create and again at
  start; a restart is Unmount + Mount). Remove and shutdown release at once.
  ``unmount_grace: auto`` (the default, :meth:`VolumeDriver.release_delay`): on an active
  Docker Swarm node (``GET /info``, cached :data:`SWARM_TTL` seconds) a ``global`` volume is
  released at once in the background (the Unmount answers first; a timer with no delay, so a
  Mount meanwhile cancels it or waits for it under the volume lock): Swarm mounts it on the
  task's new node right away. Elsewhere (not Swarm, ``local`` scope, Docker not answering)
  :data:`.config.AUTO_GRACE` seconds.
* Attached to another server/VM because that node is still releasing it (a Swarm task moved,
  ``docker service rm``): ``Mount`` and ``Remove`` wait for the release up to ``handover_wait``
  seconds, re-reading the volume afresh (:meth:`VolumeDriver._await_release`); a volume released
  meanwhile is attached as usual (no takeover). A Mount whose fence comes to hold meanwhile (the
  other server SHUTOFF / VM poweredOff) goes on with the takeover below; with the policies
  ``stop`` and ``off`` (the fence is the daemon's own doing) the wait comes first.
* Attached to another server/VM (its host died, Swarm moved the task here): ``Mount`` takes it
  over only through the backend's fenced force-detach (:meth:`VolumeDriver._take_over`): the
  refusal check first (reads only: the other server must be SHUTOFF / poweredOff, or be
  stoppable with the ``stop`` policy), then a mark ``takeover`` in the record, the backend's
  attach (stop through the cloud API if the policy says so, force-detach, attach), a
  filesystem check of the unclean filesystem (journal replay, then read-only ``e2fsck -n`` /
  ``xfs_repair -n``; errors refuse the Mount unless ``fsck_repair``), the mark removed, then
  the usual engine run mounts it. While refused, Mount answers a clear Err naming the other
  server, its state and the policy; nothing changed, and Docker's (Swarm's) next Mount tries
  again. A Mount that fails half way keeps the mark: the next one checks the filesystem
  before mounting, wherever the volume is attached by then.
* ``Remove`` refuses while mounted, else deletes storage and record (engine ``absent``).

Concurrency (issue 9): no lock is held across the whole daemon. An operation that
changes a volume holds THAT volume's lock (:class:`.refs.VolumeLocks`) for its whole
run, so a second Mount of the same volume waits until it is mounted, while Path, Get,
List and Capabilities, and calls for other volumes, answer at once: they only take
the record's short mutex. Engine runs themselves stay serialized by the engine's
state-record flock (``<root>/.lock``, one run at a time per root): a Mount that must
attach waits for another volume's attach in progress; a Mount that only adds a
reference does not. The backend's volume listing (``global`` scope) is fetched by one
thread at a time and cached (:class:`RemoteListing`), so List never waits on the cloud
except the very first time.

Start-up: the record's references are rebuilt; volumes nobody holds are released,
and IDs read from disk stay *unverified* until the Docker API (running containers
using the volume, read through the collection's Docker client) confirms them.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import threading
import time

from ..backends import registry
from ..backends.base import VolumeRequest, get_backend
from ..common import AGAIN, PVError, Refused, human_size, parse_size, poll, read_json, validate_name
from ..core.engine import Engine, VolumeSpec
from ..core.state import StateStore
from ..docker import client as docker_client
from ..host import chain as host
from . import protocol
from .config import AUTO_GRACE
from .protocol import RequestError
from .refs import PluginStore, ReleaseTimers, VolumeLocks

BASE_OPTS = ('size', 'fstype', 'mount_options', 'uid', 'gid', 'mode')
LISTING_TTL = 10.0          # seconds a backend listing is answered from without a refresh
SWARM_TTL = 10.0            # seconds the Swarm state of this Docker host is answered from
#: the wait for another node's release: first re-read after 0.2 s, growing x1.25 up to 1 s
HANDOVER_POLL = (0.2, 1.25, 1.0)


def _now_iso():
    return time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())


def mount_table():
    with open('/proc/self/mountinfo') as handle:
        return host.parse_mountinfo(handle.read())


class DockerHolders(object):
    """Which running containers hold which of the driver's volumes, through the collection's
    Docker client (:mod:`..docker.client`); connects lazily and again after an error."""

    def __init__(self, docker_host, timeout=10):
        self.params = {'docker_host': docker_host, 'docker_timeout': timeout}
        self.api = None

    def volume_holders(self, driver):
        try:
            if self.api is None:
                self.api = docker_client.connect(self.params, env={})
            return docker_client.volume_holders(self.api, driver)
        except PVError:
            self.api = None
            raise

    def swarm_node_state(self):
        """``Swarm.LocalNodeState`` of this Docker host (``active`` on a Swarm node)."""
        try:
            if self.api is None:
                self.api = docker_client.connect(self.params, env={})
            return docker_client.swarm_node_state(self.api)
        except PVError:
            self.api = None
            raise


class SwarmState(object):
    """Is this Docker host an active Swarm node? Asked through the probe (:class:`DockerHolders`),
    the answer kept ``ttl`` seconds; Docker not answering (or a probe that cannot tell) counts
    as not Swarm."""

    def __init__(self, probe, ttl=SWARM_TTL):
        self.probe = probe
        self.ttl = ttl
        self._lock = threading.Lock()
        self._answer = None
        self._at = 0.0

    def active(self):
        with self._lock:
            if self._answer is not None and time.monotonic() - self._at < self.ttl:
                return self._answer
        ask = getattr(self.probe, 'swarm_node_state', None)
        try:
            answer = ask is not None and ask() == 'active'
        except Exception:  # pylint: disable=broad-except
            answer = False
        with self._lock:
            self._answer, self._at = answer, time.monotonic()
        return answer


class RemoteListing(object):
    """The backend's volumes (``global`` scope), fetched by one thread at a time.

    A listing younger than ``ttl`` is answered as is; an older one is answered too while
    ONE background thread refreshes it; only when there is none yet does the caller wait.
    Create and Remove correct it at once (:meth:`put`, :meth:`drop`).
    """

    def __init__(self, fetch, ttl=LISTING_TTL, logger=None):
        self.fetch = fetch
        self.ttl = ttl
        self.logger = logger or (lambda line: None)
        self._lock = threading.Lock()          # the cached listing
        self._fetching = threading.Lock()      # one fetch at a time
        self._vols = None
        self._at = 0.0

    def get(self):
        with self._lock:
            vols, age = self._vols, time.monotonic() - self._at
        if vols is None:
            with self._fetching:               # the first caller fetches, the others wait for it
                with self._lock:
                    if self._vols is not None:
                        return dict(self._vols)
                return dict(self._refresh())
        if age > self.ttl and self._fetching.acquire(False):
            threading.Thread(target=self._refresh_released, daemon=True).start()
        return dict(vols)

    def _refresh_released(self):
        try:
            self._refresh()
        except Exception as exc:  # pylint: disable=broad-except
            self.logger('List: refreshing the backend listing failed: %s' % exc)
        finally:
            self._fetching.release()

    def _refresh(self):
        started = time.monotonic()
        vols = self.fetch()
        with self._lock:
            self._vols, self._at = vols, started
        return vols

    def put(self, name, rec):
        with self._lock:
            if self._vols is not None:
                self._vols[name] = rec

    def drop(self, name):
        with self._lock:
            if self._vols is not None:
                self._vols.pop(name, None)


class VolumeDriver(object):
    """The protocol's operations; thread safe (per-volume locks, see the module docstring)."""

    def __init__(self, config, engine_factory=None, probe=None, mounts=None, logger=None):
        self.cfg = config
        os.environ.update(getattr(config, 'environment', {}))
        self.root = config.root
        self.mounts_dir = os.path.join(self.root, 'mounts')
        self.store = PluginStore(self.root)
        self.locks = VolumeLocks()
        self.timers = ReleaseTimers()
        self.unverified = set()            # (name, id) read from disk, not yet confirmed by Docker
        self.engine_factory = engine_factory or self._make_engine
        self.probe = probe if probe is not None else DockerHolders(config.docker_host)
        self.swarm = SwarmState(self.probe)
        self.mount_table = mounts or mount_table
        self.logger = logger or (lambda line: None)
        self.wake = threading.Event()
        self.verified_once = False
        self.scope, self.volume_options = self._backend_traits()
        self._list_engine = None           # used by the one listing fetch at a time only
        self.listing = RemoteListing(self._fetch_remote, logger=self.logger)

    # -- plumbing ----------------------------------------------------------------
    def _backend_traits(self):
        try:
            backend = get_backend(self.cfg.backend, dict(self.cfg.backend_params, root=self.root))
        except Exception as exc:  # pylint: disable=broad-except
            self.logger('backend %s unavailable at start: %s' % (self.cfg.backend, self.cfg.scrub(exc)))
            return registry.scope(self.cfg.backend), ()
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

    def _apply(self, specs, engine=None):
        """One engine run (serialized with every other run on this root by the engine's flock);
        ``engine``: one the caller made and closes (its cloud session reused)."""
        if engine is not None:
            return engine.apply(specs)[0]
        engine = self.engine_factory()
        try:
            results, _diff = engine.apply(specs)
            return results
        finally:
            _close(engine)

    def _lookup(self, name, size=None):
        engine = self.engine_factory()
        try:
            found = engine.backend(self.cfg.backend).lookup([VolumeRequest(name, size)])
            return found.get(name)
        finally:
            _close(engine)

    def _fetch_remote(self):
        """The backend's volumes, through one engine kept for listing (one fetch at a time, see
        :class:`RemoteListing`: its cloud session is reused instead of a new login per refresh)."""
        if self._list_engine is None:
            self._list_engine = self.engine_factory()
        try:
            return dict((vol.name, {'size': vol.size, 'backend_id': vol.id})
                        for vol in self._list_engine.backend(self.cfg.backend).list_volumes()
                        if _valid_name(vol.name))
        except Exception:
            engine, self._list_engine = self._list_engine, None
            _close(engine)
            raise

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
    check_name = staticmethod(protocol.check_name)
    check_id = staticmethod(protocol.check_id)

    def record_from_opts(self, name, opts):
        """Validate Create options; return the volume record (nothing is changed)."""
        allowed = BASE_OPTS + tuple(self.volume_options)
        opts = protocol.check_opts(opts, allowed)
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

    # -- the protocol: calls that change a volume (its lock held throughout) ----------
    def activate(self, body):
        return {'Implements': ['VolumeDriver']}

    def capabilities(self, body):
        return {'Capabilities': {'Scope': self.scope}}

    def create(self, body):
        name = self.check_name(body)
        rec = self.record_from_opts(name, body.get('Opts'))
        with self.locks.hold(name):
            with self.store.mutex:
                current = self.store.volumes.get(name)
                current = dict(current) if current is not None else None
            if current is not None:
                given = body.get('Opts') or {}
                diffs = [k for k in given if str(_rec_value(rec, k)) != str(_rec_value(current, k))]
                if diffs:
                    raise RequestError('volume %s exists with different %s' % (name, ', '.join(sorted(diffs))))
                return protocol.ok(), 'exists'
            vol = self._lookup(name, rec['size'])
            if vol is not None:
                # exists on the backend (another host's global volume, or left by an
                # interrupted create): record it; Mount brings it here (and grows it)
                rec['size'] = max(rec['size'], vol.size)
                rec['backend_id'] = vol.id
                rec['created'] = _now_iso()
                self._put_record(name, rec)
                return protocol.ok(), 'adopted %s' % vol.id
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
            self._put_record(name, rec)
            try:
                self._apply([self.spec(name, rec, 'detached')])
            except PVError as exc:
                self.logger('create %s: left mounted, detaching failed: %s' % (name, self.cfg.scrub(exc)))
            return protocol.ok(), note

    def _put_record(self, name, rec):
        with self.store.mutex:
            self.store.volumes[name] = rec
        self.store.save()
        self.listing.put(name, {'size': rec.get('size'), 'backend_id': rec.get('backend_id')})

    def remove(self, body):
        name = self.check_name(body)
        with self.locks.hold(name):
            refs = self.store.refs_of(name)
            if refs:
                raise RequestError('volume %s is mounted for %d container(s); not removed' % (name, len(refs)))
            self.timers.cancel(name)
            with self.store.mutex:
                rec = self.store.volumes.get(name)
            if rec is None:
                rec = self._remote_record(name)
                if rec is None:
                    return protocol.ok(), 'unknown, nothing to do'
            engine = self.engine_factory()
            try:
                waited = self._released_for_remove(name, engine)
                self._apply([self.spec(name, rec, 'absent')], engine)
            finally:
                _close(engine)
            with self.store.mutex:
                self.store.volumes.pop(name, None)
                self.store.refs.pop(name, None)
            self.store.save()
            self.listing.drop(name)
            return protocol.ok(), 'deleted' + waited

    def _released_for_remove(self, name, engine):
        """Remove of a volume still attached to another server/VM (that node's background release
        after ``docker service rm``): wait for the release up to ``handover_wait`` (volume lock held
        by the caller). Returns a note; raises :class:`RequestError` when it stays attached there."""
        if self.scope != 'global':
            return ''
        backend = engine.backend(self.cfg.backend)
        vol = backend.lookup([VolumeRequest(name, None)]).get(name)
        if vol is None or not _elsewhere(vol):
            return ''
        other, started = vol.attached_to, time.monotonic()
        vol = self._await_release(name, backend, vol)
        waited = time.monotonic() - started
        if vol is not None and _elsewhere(vol):
            raise RequestError('volume %s is still attached to %s after waiting %.0fs for its release '
                               '(handover_wait); not removed. Remove it once that node released it (or '
                               'detach it there)' % (name, vol.attached_to, waited))
        self.logger('Remove name=%s: %s released it after %.1fs' % (name, other, waited))
        return ' (released by %s after %.1fs)' % (other, waited)

    def _await_release(self, name, backend, vol, settled=None):
        """THE wait for another node's release of ``name`` (volume lock held by the caller): re-read
        the volume afresh (:meth:`Backend.forget_reads`) every 0.2 s, growing x1.25 up to 1 s, until it
        is gone, no longer attached to another server/VM, or ``settled(vol)`` holds; at most
        ``handover_wait`` seconds. ``vol`` is the read made just before (the first round uses it).
        Returns the last read (None: gone)."""
        state = {'vol': vol, 'first': True}

        def fresh():
            backend.forget_reads()
            state['vol'] = backend.lookup([VolumeRequest(name, None)]).get(name)
            return state['vol']

        def attempt():
            current = state['vol'] if state.pop('first', False) else fresh()
            if current is None or not _elsewhere(current):
                return current
            if settled is not None and settled(current):
                # the check passed: the fence holds, or the other node let go after this read (the
                # check reads the holder again): one more fresh read, so that a release is an
                # ordinary attach, never labelled (and checked) as a takeover
                return fresh()
            return AGAIN
        interval, factor, most = HANDOVER_POLL
        return poll(attempt, self.cfg.handover_wait, lambda: state['vol'],
                    interval=interval, factor=factor, max_interval=most)

    def mount(self, body):
        name = self.check_name(body)
        caller = self.check_id(body)
        with self.locks.hold(name):
            rec = self._record(name)
            path = self.mountpoint(name)
            note = 'ref'
            if self.timers.cancel(name):
                note = 'kept'            # re-mounted within the grace period: no attach, no mount
            if not self.is_mounted(name):
                engine = self.engine_factory()
                try:
                    taken = self._take_over(name, rec, engine)
                    results = self._apply([self.spec(name, rec, 'present')], engine)
                finally:
                    _close(engine)
                size = results[0].get('size')
                if size and size != rec.get('size'):
                    with self.store.mutex:
                        rec['size'] = size
                note = (taken + ', ' if taken else '') + 'mounted'
            elif any(rec.get(k) is not None for k in ('uid', 'gid', 'mode')):
                # already mounted: owner and mode of the volume root as asked (Docker's copy of
                # the image's directory into a new volume, at container create, resets them)
                if host.apply_ownership(path, rec.get('uid'), rec.get('gid'), host.parse_mode(rec.get('mode'))):
                    note += ' ownership'
            with self.store.mutex:
                self.unverified.discard((name, caller))
            count = self.store.add_ref(name, caller)
            return protocol.ok(Mountpoint=path), '%s refs=%d' % (note, count)

    def _take_over(self, name, rec, engine):
        """A volume still attached to another server/VM (its host died): take it over through the
        backend's fenced force-detach, then check the unclean filesystem, before the engine run
        mounts it (volume lock held by the caller). Returns a note for the log line, or None
        when there was nothing to take over. Raises :class:`RequestError` when refused."""
        if self.cfg.fencing is None:
            return None                 # loop: a volume never leaves its host
        pending = rec.get('takeover')
        backend = engine.backend(self.cfg.backend)
        vol = backend.lookup([VolumeRequest(name, None)]).get(name)
        if vol is None:
            return None                 # gone: the engine run says so
        foreign = _elsewhere(vol)
        if not foreign and not pending:
            return None
        handed = None
        if foreign:
            vol, handed = self._handover(name, backend, vol)
            if vol is None:
                return None             # gone meanwhile: the engine run says so
            foreign = _elsewhere(vol)
            if not foreign and not pending:
                return handed           # released by the other node: a plain attach follows
        if foreign:
            pending = vol.attached_to
            self._mark_takeover(name, rec, pending)
        store = StateStore(self.root)
        store.lock()                    # serialized with the engine runs on this root
        try:
            self.logger('Mount name=%s: taking over %s from %s (fencing policy %s)'
                        % (name, vol.id, pending, self.cfg.fencing))
            if not vol.attached_here:
                vol = backend.attach(vol)               # fence_stop, force-detach, attach
            device = backend.locate(vol, timeout=self.cfg.timeout)
            found = host.read_superblock(device)
            done = []
            if found is not None:
                try:
                    done = host.check_filesystem(device, found[0], repair=self.cfg.fsck_repair,
                                                 timeout=min(60, self.cfg.timeout))
                except host.FilesystemErrors as exc:
                    raise RequestError(
                        'volume %s was taken over from %s after an unclean detach, and %s; not mounted '
                        '(it stays attached to this host, unmounted). Repair it by hand, or set '
                        'pv_plugin_fsck_repair: true (daemon config fsck_repair) to let the plugin '
                        'repair it' % (name, pending, exc))
        finally:
            store.unlock()
        self._mark_takeover(name, rec, None)
        return 'taken over from %s (fsck: %s)' % (pending, ','.join(done) or 'no filesystem')

    def _handover(self, name, backend, vol):
        """``vol`` is attached to another server/VM: wait (:meth:`_await_release`) until that node
        releases it, or (policy ``shutoff``) until the backend's takeover check passes (the fence
        holds: SHUTOFF / poweredOff). Returns (the volume as read last, a note when it was released
        meanwhile); raises :class:`RequestError` (the refusal) when still refused at the end. With the
        policies ``stop`` and ``off`` the check passes at once (the daemon makes the fence): the
        release is waited for first, the takeover comes after ``handover_wait`` only."""
        other, started = vol.attached_to, time.monotonic()
        last = {}

        def fence_holds(current):
            if self.cfg.fencing != 'shutoff':
                return False
            try:
                backend.check(current, 'attach')        # reads only: refused -> nothing changed
            except Refused as exc:
                last['refused'] = exc
                return False
            last.pop('refused', None)
            return True
        vol = self._await_release(name, backend, vol, fence_holds)
        waited = time.monotonic() - started
        if vol is None:
            return None, None
        if not _elsewhere(vol):
            self.logger('Mount name=%s: %s released it after %.1fs (handover: plain attach)' % (name, other, waited))
            return vol, 'released by %s after %.1fs' % (other, waited)
        refused = last.get('refused')
        if self.cfg.fencing != 'shutoff':
            try:
                backend.check(vol, 'attach')
            except Refused as exc:
                refused = exc
        if refused is not None:
            raise RequestError(self._refusal(name, refused, waited if self.cfg.handover_wait > 0 else None))
        return vol, None

    def _mark_takeover(self, name, rec, server):
        """Remember (fsync'd) that ``name`` was taken over and not yet checked, or forget it."""
        with self.store.mutex:
            if server:
                rec['takeover'] = server
            else:
                rec.pop('takeover', None)
            self.store.volumes[name] = rec
        self.store.save()

    def _refusal(self, name, exc, waited=None):
        policy = self.cfg.fencing
        if self.cfg.backend_params.get('force_detach') is False:
            how = ('force_detach: false in pv_plugin_backend_params: a volume attached to another server '
                   'is never taken over; detach it there first')
        elif policy == 'shutoff':
            how = ('policy shutoff (pv_plugin_fencing) takes a volume over only from a server that is '
                   'SHUTOFF (a VM that is poweredOff); Docker retries the Mount and it succeeds once that '
                   'server is stopped. pv_plugin_fencing: stop would stop it through the cloud API first')
        elif policy == 'stop':
            how = ('policy stop (pv_plugin_fencing): that server is in a state it cannot be stopped from '
                   'through the cloud API; stop it by hand')
        else:
            how = 'policy %s (pv_plugin_fencing)' % policy
        when = '' if waited is None else ' after waiting %.0fs for its release (handover_wait)' % waited
        return 'Mount of %s refused%s: %s [fencing %s]' % (name, when, self.cfg.scrub(exc), how)

    def unmount(self, body):
        name = self.check_name(body)
        caller = self.check_id(body)
        with self.locks.hold(name):
            with self.store.mutex:
                if name not in self.store.volumes and name not in self.store.refs:
                    raise RequestError('no such volume: %s' % name)
                self.unverified.discard((name, caller))
            known, refs = self.store.drop_ref(name, caller)
            if refs:
                if any((name, r) in self.unverified for r in refs):
                    self.wake.set()      # let the verifier check them against Docker
                return protocol.ok(), 'refs=%d%s' % (len(refs), '' if known else ' (unknown ID)')
            grace, why = self.release_delay()
            if why:
                # answered at once, released in the background right away (Mount: see the timers)
                self.timers.schedule(name, 0, self._release_later)
                return protocol.ok(), 'refs=0 release now (%s)' % why
            if grace > 0:
                self.timers.schedule(name, grace, self._release_later)
                return protocol.ok(), 'refs=0 release in %gs' % grace
            note = self._teardown(name)
            return protocol.ok(), 'refs=0 %s' % note

    def release_delay(self):
        """(seconds, why) between the last Unmount and the release. ``why`` set: release at once in
        the background (``unmount_grace: auto`` on an active Swarm node, ``global`` backend);
        else ``unmount_grace`` seconds (0: inside the Unmount), :data:`AUTO_GRACE` for ``auto``."""
        grace = self.cfg.unmount_grace
        if grace != 'auto':
            return grace, None
        if self.scope == 'global' and self.swarm.active():
            return 0, 'swarm'
        return AUTO_GRACE, None

    def _release_later(self, name):
        """The deferred part of the last Unmount: unmount and detach unless a Mount came."""
        me = threading.current_thread()
        started = time.monotonic()
        with self.locks.hold(name):
            if not self.timers.claim(name, me):
                return                   # cancelled or replaced meanwhile
            if self.store.refs_of(name):
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
        for name in self.timers.pending():
            with self.locks.hold(name):
                if not self.timers.cancel(name) or self.store.refs_of(name):
                    continue
                try:
                    self.logger('Release name=%s ok %s (shutdown)' % (name, self._teardown(name)))
                except Exception as exc:  # pylint: disable=broad-except
                    self.logger('Release name=%s err %s (shutdown)' % (name, self.cfg.scrub(exc)))

    def close(self):
        """Close the listing's engine (at shutdown, after :meth:`flush`; its cloud connection goes
        back to the pool, which the daemon closes next)."""
        engine, self._list_engine = self._list_engine, None
        if engine is not None:
            _close(engine)

    def _teardown(self, name):
        """Unmount and detach ``name`` (its lock held by the caller)."""
        with self.store.mutex:
            rec = self.store.volumes.get(name)
        if rec is None:
            return 'no record'
        results = self._apply([self.spec(name, rec, 'detached')])
        actions = results[0].get('actions') or []
        return ','.join(a for a in actions if a in ('umount', 'detach')) or 'already detached'

    # -- the protocol: reads (no volume lock: they never wait on an engine run) --------
    def path(self, body):
        name = self.check_name(body)
        with self.store.mutex:
            known = name in self.store.volumes
        if not known:
            raise RequestError('no such volume: %s' % name)
        mounted = self.is_mounted(name)
        return protocol.ok(Mountpoint=self.mountpoint(name) if mounted else ''), \
            'mounted' if mounted else 'not mounted'

    def get(self, body):
        name = self.check_name(body)
        table = self.mount_table()
        with self.store.mutex:
            rec = self.store.volumes.get(name)
            rec = dict(rec) if rec is not None else None
            refs = self.store.refs_of(name)
        if rec is None:
            rec = self._remote_record(name)
            if rec is None:
                raise RequestError('no such volume: %s' % name)
        return protocol.ok(Volume=self._describe(name, rec, refs, table)), ''

    def list(self, body):
        table = self.mount_table()
        vols = self.listing.get() if self.scope == 'global' else {}
        local, refs = self.store.snapshot()
        vols.update(local)
        listing = [self._describe(name, rec, refs.get(name) or [], table) for name, rec in sorted(vols.items())]
        return protocol.ok(Volumes=listing), '%d volumes' % len(listing)

    def _describe(self, name, rec, refs, table):
        vol = {'Name': name}
        if self.is_mounted(name, table):
            vol['Mountpoint'] = self.mountpoint(name)
        if rec.get('created'):
            vol['CreatedAt'] = rec['created']
        vol['Status'] = {
            'backend': self.cfg.backend, 'backend_id': rec.get('backend_id'),
            'size': human_size(rec['size']) if rec.get('size') else None,
            'fstype': rec.get('fstype') or self.cfg.defaults['fstype'],
            'mounts': len(refs), 'state': 'mounted' if 'Mountpoint' in vol else 'detached',
        }
        return vol

    def _record(self, name):
        """The record of ``name`` (its lock held by the caller); a global volume made from another
        host is recorded on first use."""
        with self.store.mutex:
            rec = self.store.volumes.get(name)
        if rec is None:
            rec = self._remote_record(name)
            if rec is None:
                raise RequestError('no such volume: %s' % name)
            rec['created'] = _now_iso()
            with self.store.mutex:
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
        with self.store.mutex:
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

        Only IDs read from disk at start (or made up for containers found running) are
        ever dropped; IDs Docker sent to this process are authoritative. The first check
        after start also adopts running users the record lost and releases every volume
        nobody holds (and stray mounts under ``<root>/mounts``). Returns False if Docker
        did not answer.
        """
        first = not self.verified_once
        if not first and not self.unverified:
            return True
        try:
            holders = self.probe.volume_holders(self.cfg.driver)
        except PVError:
            return False
        with self.store.mutex:
            names = sorted(set(n for n, _i in self.unverified))
            changes = self._reconcile(names, holders, first)
            candidates = sorted(self.store.volumes) if first else names
        if changes:
            self.store.save()
        # release what nobody holds; a volume busy with a call (its lock taken) is left to that call
        with self.locks.try_hold(candidates) as held:
            with self.store.mutex:
                release = [n for n in held if n in self.store.volumes and not self.store.refs.get(n)]
                specs = [self.spec(n, self.store.volumes[n], 'detached') for n in release]
            if first:
                specs += self._stray_specs()
            self.verified_once = True
            for spec in specs:
                self.timers.cancel(spec['name'])
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

    def _reconcile(self, names, holders, first):
        """Drop unverified IDs Docker does not back; at the first check adopt running users
        the record lost. Store mutex held by the caller (who saves); returns the change notes."""
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
        return changes

    def _stray_specs(self):
        """Mounts under <root>/mounts without a record (an interrupted Create)."""
        specs = []
        if not os.path.isdir(self.mounts_dir):
            return specs
        table = self.mount_table()
        engine_state = read_json(os.path.join(self.root, 'state.json'), {}).get('volumes') or {}
        with self.store.mutex:
            known = set(self.store.volumes)
        for entry in sorted(os.listdir(self.mounts_dir)):
            if entry not in known and _valid_name(entry) and self.is_mounted(entry, table):
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


def _close(engine):
    try:
        engine.close()
    except Exception:  # pylint: disable=broad-except
        pass


def _str_or_none(value):
    if value is None or value == '':
        return None
    return str(value)


def _rec_value(rec, key):
    if key in rec:
        return rec[key]
    return (rec.get('backend_options') or {}).get(key)


def _elsewhere(vol):
    """Attached to another server/VM (not only to this host)."""
    return bool(vol.attached_to) and not vol.attached_here


def _valid_name(name):
    try:
        validate_name(name)
        return True
    except PVError:
        return False
