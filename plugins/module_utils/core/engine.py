# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The engine: drives backend -> host chain -> Docker volume for a list of volumes.

One entry point, :meth:`Engine.apply`, used by the ``volume`` module and by the
volume-plugin daemon. A run:

1. validates every spec (nothing is touched if any is bad);
2. reads the world once: the state record (under its lock), the mount table
   and fstab, the backends (one batched lookup each), Docker volumes/containers;
3. plans every volume and refuses unsafe plans (shrink, in use, foreign
   signatures) before changing anything;
4. in check mode returns the plan; otherwise runs the per-volume work
   (storage, filesystem, mount) in a small thread pool, then writes fstab, the
   Docker volumes and the state record once.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import time
import uuid as uuidlib
from concurrent.futures import ThreadPoolExecutor

from ..host import chain as host
from ..backends.base import VolumeRequest, get_backend
from ..common import MANAGED_LABEL, MANAGED_ROOT, PVError, human_size, parse_size, validate_mount_path, validate_name
from .state import StateStore

STATES = ('present', 'detached', 'absent')
DEFAULT_MOUNT_OPTIONS = ('defaults', 'nofail')


class VolumeSpec(object):
    """A validated request for one volume."""

    FIELDS = ('name', 'state', 'backend', 'size', 'fstype', 'mount_path', 'owner', 'group',
              'mode', 'mount_options', 'labels', 'force_format', 'force', 'options',
              'adopt_id', 'docker_volume', 'check_users', 'timeout', 'mkfs_options')

    def __init__(self, **kwargs):
        for field in self.FIELDS:
            setattr(self, field, kwargs.get(field))

    @classmethod
    def from_dict(cls, raw, root=MANAGED_ROOT):
        name = raw.get('name')
        validate_name(name)
        try:
            state = raw.get('state') or 'present'
            if state not in STATES:
                raise PVError('state must be one of %s' % ', '.join(STATES))
            backend = raw.get('backend') or 'loop'
            size = raw.get('size')
            if size is not None:
                size = parse_size(size)
            elif state == 'present':
                raise PVError('size is required with state=present')
            fstype = raw.get('fstype') or 'ext4'
            if fstype not in host.SUPPORTED_FS:
                raise PVError('fstype %r is not supported (use %s)' % (fstype, ', '.join(host.SUPPORTED_FS)))
            if fstype == 'xfs' and size is not None and size < 300 * 1024 ** 2:
                raise PVError('xfs needs a volume of at least 300MiB, got %s' % human_size(size))
            if size is not None and size < 16 * 1024 ** 2:
                raise PVError('size %s is too small for a filesystem (minimum 16MiB)' % human_size(size))
            mount_path = raw.get('mount_path') or os.path.join(root, 'mounts', name)
            mount_path = validate_mount_path(mount_path)
            options = raw.get('mount_options') or list(DEFAULT_MOUNT_OPTIONS)
            if isinstance(options, str):
                options = [o.strip() for o in options.split(',') if o.strip()]
            for opt in options:
                if any(c.isspace() for c in opt) or ',' in opt:
                    raise PVError('mount option %r is invalid' % opt)
            host.resolve_uid(raw.get('owner'))
            host.resolve_gid(raw.get('group'))
            labels = raw.get('labels') or {}
            if not isinstance(labels, dict):
                raise PVError('labels must be a dict')
            timeout = raw.get('timeout') or 300
            return cls(name=name, state=state, backend=backend, size=size, fstype=fstype,
                       mount_path=mount_path, owner=raw.get('owner'), group=raw.get('group'),
                       mode=host.parse_mode(raw.get('mode')), mount_options=options,
                       labels=dict((str(k), str(v)) for k, v in labels.items()),
                       force_format=bool(raw.get('force_format')), force=bool(raw.get('force')),
                       options=dict(raw.get('backend_options') or {}),
                       adopt_id=raw.get('adopt_id'),
                       docker_volume=raw.get('docker_volume', True) is not False,
                       check_users=raw.get('check_users', True) is not False,
                       timeout=int(timeout), mkfs_options=list(raw.get('mkfs_options') or []))
        except PVError as exc:
            raise PVError('volume %s: %s' % (name, exc))

    def request(self):
        return VolumeRequest(self.name, self.size, self.options, self.adopt_id)


class Plan(object):
    """What will happen (or happened) to one volume."""

    def __init__(self, spec):
        self.spec = spec
        self.actions = []
        self.vol = None          # BackendVolume
        self.device = None
        self.fs = None           # (fstype, uuid, size) as found/made
        self.fs_uuid = None
        self.error = None
        self.before = {}
        self.after = {}
        self.warnings = []
        self.users = []

    def add(self, action):
        if action not in self.actions:
            self.actions.append(action)

    def record(self):
        spec, vol = self.spec, self.vol
        return {
            'name': spec.name,
            'state': spec.state,
            'backend': spec.backend,
            'backend_id': vol.id if vol else None,
            'device': self.device,
            'fstype': spec.fstype,
            'fs_uuid': self.fs_uuid,
            'size': vol.size if vol else spec.size,
            'size_human': human_size(vol.size if vol else spec.size) if (vol or spec.size) else None,
            'mountpoint': spec.mount_path if spec.state == 'present' else None,
            'docker_volume': spec.name if (spec.state == 'present' and spec.docker_volume) else None,
            'changed': bool(self.actions),
            'actions': list(self.actions),
        }


class Engine(object):
    def __init__(self, root=MANAGED_ROOT, fstab_path=host.FSTAB, check_mode=False,
                 backend_params=None, docker=None, workers=4, log=None):
        self.root = root
        self.fstab_path = fstab_path
        self.check_mode = check_mode
        self.backend_params = dict(backend_params or {})
        self._docker = docker
        self.workers = workers
        self.log = log or (lambda msg: None)
        self.backends = {}
        self.warnings = []

    # -- helpers -------------------------------------------------------------
    def backend(self, name):
        if name not in self.backends:
            params = dict(self.backend_params.get(name) or {})
            params.setdefault('root', self.root)
            self.backends[name] = get_backend(name, params)
        return self.backends[name]

    @property
    def docker(self):
        if self._docker is None:
            from ..docker.volumes import DockerVolumes
            self._docker = DockerVolumes()
        return self._docker

    def close(self):
        for backend in self.backends.values():
            backend.close()

    # -- the one entry point -------------------------------------------------
    def apply(self, raw_specs):
        specs = [s if isinstance(s, VolumeSpec) else VolumeSpec.from_dict(s, self.root) for s in raw_specs]
        seen = {}
        for spec in specs:
            if spec.name in seen:
                raise PVError('volume %s is listed twice' % spec.name)
            seen[spec.name] = spec
        targets = {}
        for spec in specs:
            if spec.state == 'present':
                if spec.mount_path in targets:
                    raise PVError('volumes %s and %s share the mount path %s'
                                  % (targets[spec.mount_path], spec.name, spec.mount_path))
                targets[spec.mount_path] = spec.name
        for spec in specs:
            self.backend(spec.backend)       # unknown backend or missing SDK fails here
        for name in sorted(set(spec.backend for spec in specs)):
            self.backend(name).check_host()  # e.g. which Nova server this is: fails before any change

        store = StateStore(self.root)
        if self.check_mode and not os.path.isdir(self.root):
            store.load()      # check mode where nothing ran yet: nothing to lock, no directory created
        else:
            store.lock()
        try:
            snapshot = host.HostSnapshot(self.fstab_path)
            plans = [Plan(spec) for spec in specs]
            self._lookup(plans)
            need_docker = any(p.spec.docker_volume or (p.spec.state != 'present' and p.spec.check_users)
                              for p in plans)
            docker = self.docker if need_docker else None
            for plan in plans:
                if plan.spec.state == 'present':
                    self._plan_present(plan, snapshot, docker, store)
                else:
                    self._plan_remove(plan, snapshot, docker, store)
            if self.check_mode:
                return self._results(plans)
            self._execute(plans, snapshot, docker, store)
            return self._results(plans)
        finally:
            store.unlock()

    def _results(self, plans):
        results = [p.record() for p in plans]
        errors = [(p.spec.name, p.error) for p in plans if p.error]
        diff = {'before': dict((p.spec.name, p.before) for p in plans if p.actions),
                'after': dict((p.spec.name, p.after) for p in plans if p.actions)}
        for plan in plans:
            self.warnings.extend(plan.warnings)
        if errors:
            exc = PVError('; '.join('%s: %s' % (name, err) for name, err in errors))
            exc.result = {'volumes': results, 'changed': any(r['changed'] for r in results)}
            raise exc
        return results, diff

    def _lookup(self, plans):
        by_backend = {}
        for plan in plans:
            by_backend.setdefault(plan.spec.backend, []).append(plan)
        for name, group in by_backend.items():
            found = self.backend(name).lookup([p.spec.request() for p in group])
            for plan in group:
                plan.vol = found.get(plan.spec.name)

    # -- planning (reads only) -----------------------------------------------
    def _plan_present(self, plan, snapshot, docker, store):
        spec, vol = plan.spec, plan.vol
        backend = self.backend(spec.backend)
        rec = store.volumes.get(spec.name) or {}
        plan.before = self._describe(plan, snapshot, docker, rec)
        if vol is None:
            plan.add('create')
            plan.add('attach')
            plan.add('mkfs')
        else:
            if spec.size < vol.size:
                raise PVError('volume %s: refusing to shrink from %s to %s (shrinking is never done)'
                              % (spec.name, human_size(vol.size), human_size(spec.size)))
            if spec.size > vol.size:
                plan.add('grow')
            if not vol.attached_here:
                plan.add('attach')
        mounted = snapshot.mounted_at(spec.mount_path)
        device = vol.device if vol is not None else None
        if vol is not None and vol.attached_here and not device:
            device = self._find_device(backend, vol, spec)
        if device:
            plan.device = device
            self._plan_filesystem(plan, device)
            if mounted is not None and mounted.devno != host.device_number(device):
                raise PVError('volume %s: %s already has another filesystem mounted (%s)'
                              % (spec.name, spec.mount_path, mounted.source))
            if mounted is None:
                plan.add('mount')
            # a mounted filesystem's on-disk superblock can lag (xfs logs the change):
            # trust the size we recorded when we last grew it
            fs_size = (rec.get('fs_size') if mounted is not None else None) or (
                plan.fs[2] if plan.fs else vol.size)
            if plan.fs and ('grow' in plan.actions or fs_size < vol.size):
                plan.add('growfs')
                if docker is not None:
                    plan.users = docker.users_of(spec.name, spec.mount_path)
        elif mounted is not None:
            raise PVError('volume %s: %s already has another filesystem mounted (%s)'
                          % (spec.name, spec.mount_path, mounted.source))
        else:
            plan.add('mount')
        if 'mount' in plan.actions and 'grow' in plan.actions:
            plan.add('growfs')
        if 'mount' not in plan.actions:
            if host.ownership_diff(spec.mount_path, spec.owner, spec.group, spec.mode):
                plan.add('ownership')
        elif 'mkfs' in plan.actions:
            # a new filesystem's root is root:root 0755
            if (host.resolve_uid(spec.owner) not in (None, 0) or host.resolve_gid(spec.group) not in (None, 0)
                    or spec.mode not in (None, 0o755)):
                plan.add('ownership')
        elif spec.owner is not None or spec.group is not None or spec.mode is not None:
            plan.add('ownership')    # unknown until mounted: predicted, applied only if it differs
        fs_uuid = plan.fs_uuid or rec.get('fs_uuid')
        entry = self._fstab_entry(backend, plan, fs_uuid)
        current = snapshot.fstab.get(spec.mount_path)
        if current is None or (entry is not None and current != entry):
            plan.add('fstab')
        if spec.docker_volume:
            labels = docker.wanted_labels(spec.backend, spec.labels)
            drift = docker.drift(spec.name, spec.mount_path, labels)
            if drift is None:
                plan.add('docker_volume')
            elif drift:
                users = docker.users_of(spec.name)
                if users:
                    raise PVError('volume %s: the Docker volume differs (%s) but containers use it (%s); '
                                  'stop them or change the request back'
                                  % (spec.name, '; '.join(drift), ', '.join(u[0] for u in users)))
                plan.add('docker_volume_recreate')
        plan.after = self._describe_wanted(plan, fs_uuid)

    def _find_device(self, backend, vol, spec):
        try:
            return backend.locate(vol, timeout=min(spec.timeout, 5))
        except PVError as exc:
            raise PVError('volume %s: %s' % (spec.name, exc))

    def _plan_filesystem(self, plan, device):
        spec = plan.spec
        found = host.read_superblock(device)
        if found is not None and found[0] == spec.fstype:
            plan.fs = found
            plan.fs_uuid = found[1]
            return
        if found is None:
            if plan.vol is not None and plan.vol.extra.get('fresh'):
                signature = {}
            else:
                signature = host.probe_signatures(device)
            if not signature:
                plan.add('mkfs')
                return
            what = host.describe_signature(signature)
        else:
            what = 'a %s filesystem' % found[0]
        if not spec.force_format:
            raise PVError('volume %s: device %s carries %s; refusing to format it as %s '
                          '(set force_format: true to destroy what is there)'
                          % (spec.name, device, what, spec.fstype))
        plan.add('wipe')
        plan.add('mkfs')

    def _fstab_entry(self, backend, plan, fs_uuid):
        spec = plan.spec
        vol = plan.vol or _Placeholder(spec)
        if fs_uuid is None and backend.fstab_source(vol, plan.device, 'X') == 'UUID=X':
            return None
        source = backend.fstab_source(vol, plan.device, fs_uuid)
        opts = list(spec.mount_options)
        for extra in backend.fstab_options(vol):
            if extra not in opts:
                opts.append(extra)
        return host.FstabEntry(source, spec.mount_path, spec.fstype, ','.join(opts), 0,
                               2 if spec.fstype == 'ext4' else 0)

    def _describe(self, plan, snapshot, docker, rec):
        spec, vol = plan.spec, plan.vol
        entry = snapshot.fstab.get(spec.mount_path)
        mounted = snapshot.mounted_at(spec.mount_path)
        desc = {
            'storage': ('%s (%s)' % (vol.id, human_size(vol.size))) if vol else None,
            'mounted': mounted.source if mounted else None,
            'fstab': entry.render() if entry else None,
        }
        if docker is not None:
            desc['docker_volume'] = spec.name in docker.volumes()
        return desc

    def _describe_wanted(self, plan, fs_uuid):
        spec = plan.spec
        backend = self.backend(spec.backend)
        entry = self._fstab_entry(backend, plan, fs_uuid or '<new uuid>')
        after = {
            'storage': '%s (%s)' % (plan.vol.id if plan.vol else '<new %s volume>' % spec.backend,
                                    human_size(spec.size)),
            'mounted': spec.mount_path and (plan.device or '<device>'),
            'fstab': entry.render() if entry else None,
        }
        if spec.docker_volume:
            after['docker_volume'] = True
        return after

    def _plan_remove(self, plan, snapshot, docker, store):
        spec, vol = plan.spec, plan.vol
        rec = store.volumes.get(spec.name) or {}
        mount_path = rec.get('mountpoint') or spec.mount_path
        spec.mount_path = mount_path
        plan.before = self._describe(plan, snapshot, docker, rec)
        users = docker.users_of(spec.name, mount_path) if (spec.check_users and docker is not None) else []
        if users:
            if not spec.force:
                raise PVError('volume %s is in use by container(s) %s; refusing state=%s '
                              '(stop and remove them, or set force: true to remove them)'
                              % (spec.name, ', '.join('%s (%s)' % u for u in users), spec.state))
            plan.add('remove_containers')
            plan.users = [u[0] for u in users]
        existing = docker.volumes().get(spec.name) if docker is not None else None
        if existing is not None and spec.docker_volume:
            labels = existing.get('Labels') or {}
            if labels.get(MANAGED_LABEL) == 'true':
                plan.add('docker_volume_remove')
            else:
                plan.warnings.append('Docker volume %s is not managed by this collection; left alone'
                                     % spec.name)
        if snapshot.mounted_at(mount_path) is not None:
            plan.add('umount')
        if snapshot.fstab.get(mount_path) is not None:
            plan.add('fstab_remove')
        if vol is not None and vol.attached_here:
            plan.add('detach')
        if spec.state == 'absent' and vol is not None:
            plan.add('delete')
        if spec.state == 'absent' and rec:
            plan.add('forget')
        plan.after = {'storage': ('%s (%s)' % (vol.id, human_size(vol.size)))
                      if (vol and spec.state == 'detached') else None,
                      'mounted': None, 'fstab': None, 'docker_volume': False}

    # -- execution ---------------------------------------------------------------
    def _execute(self, plans, snapshot, docker, store):
        creating = [p for p in plans if 'create' in p.actions]
        for plan in creating:
            store.volumes[plan.spec.name] = {'backend': plan.spec.backend, 'status': 'provisioning',
                                             'mountpoint': plan.spec.mount_path,
                                             'updated': int(time.time())}
        if creating:
            store.save()
        # Docker-side teardown first (it may be what keeps a mount busy)
        for plan in plans:
            if plan.spec.state != 'present' and plan.actions:
                try:
                    if 'remove_containers' in plan.actions:
                        docker.remove_containers(plan.users)
                    if 'docker_volume_remove' in plan.actions:
                        docker.remove(plan.spec.name)
                except PVError as exc:
                    plan.error = str(exc)

        work = [p for p in plans if p.actions and not p.error]
        if work:
            with ThreadPoolExecutor(max_workers=max(1, min(self.workers, len(work)))) as pool:
                list(pool.map(lambda p: self._run_volume(p, snapshot), work))

        for plan in plans:
            if plan.error:
                continue
            spec = plan.spec
            if spec.state == 'present':
                entry = self._fstab_entry(self.backend(spec.backend), plan, plan.fs_uuid)
                if entry is not None and snapshot.fstab.get(spec.mount_path) != entry:
                    snapshot.fstab.set(spec.name, entry)
                    plan.add('fstab')
            elif 'fstab_remove' in plan.actions:
                snapshot.fstab.remove(spec.mount_path)
        snapshot.fstab.write()

        for plan in plans:
            spec = plan.spec
            if plan.error or spec.state != 'present' or not spec.docker_volume:
                continue
            try:
                labels = docker.wanted_labels(spec.backend, spec.labels)
                if 'docker_volume_recreate' in plan.actions:
                    docker.remove(spec.name)
                    docker.create(spec.name, spec.mount_path, labels)
                elif 'docker_volume' in plan.actions:
                    docker.create(spec.name, spec.mount_path, labels)
            except PVError as exc:
                plan.error = str(exc)

        now = int(time.time())
        for plan in plans:
            spec = plan.spec
            if plan.error and spec.name in store.volumes and store.volumes[spec.name].get('status') == 'provisioning':
                if plan.vol is None:
                    del store.volumes[spec.name]
                continue
            if plan.error:
                continue
            if spec.state == 'present':
                store.volumes[spec.name] = {
                    'backend': spec.backend, 'backend_id': plan.vol.id, 'status': 'ready',
                    'fstype': spec.fstype, 'fs_uuid': plan.fs_uuid, 'size': plan.vol.size,
                    'fs_size': plan.vol.size if ('mkfs' in plan.actions or 'growfs' in plan.actions)
                    else (store.volumes.get(spec.name) or {}).get('fs_size', plan.vol.size),
                    'mountpoint': spec.mount_path, 'docker_volume': spec.name if spec.docker_volume else None,
                    'updated': now if plan.actions else (store.volumes.get(spec.name) or {}).get('updated', now),
                }
            elif spec.state == 'detached':
                if spec.name in store.volumes:
                    store.volumes[spec.name].update({'status': 'detached', 'updated': now})
            else:
                store.volumes.pop(spec.name, None)
        store.save()

    def _run_volume(self, plan, snapshot):
        try:
            if plan.spec.state == 'present':
                self._run_present(plan, snapshot)
            else:
                self._run_remove(plan, snapshot)
        except PVError as exc:
            plan.error = str(exc)
        except (OSError, IOError) as exc:
            plan.error = '%s: %s' % (type(exc).__name__, exc)

    def _run_present(self, plan, snapshot):
        spec = plan.spec
        backend = self.backend(spec.backend)
        if plan.vol is None:
            self.log('create %s %s (%s)' % (spec.backend, spec.name, human_size(spec.size)))
            plan.vol = backend.create(spec.request())
        elif 'grow' in plan.actions:
            self.log('grow %s %s -> %s' % (spec.backend, spec.name, human_size(spec.size)))
            plan.vol = backend.grow(plan.vol, spec.size)
        if not plan.vol.attached_here:
            plan.vol = backend.attach(plan.vol)
        if 'grow' in plan.actions:
            stale = plan.vol.device or _first_existing(plan.vol.locators)[1]
            backend.refresh_device(plan.vol, stale)
        device = backend.locate(plan.vol, timeout=spec.timeout)
        plan.device = device
        if plan.fs is None and not plan.vol.extra.get('fresh'):
            # the device was not visible while planning (a new cloud volume, a detached
            # image): decide now with the same rules; raises on any foreign signature
            if 'mkfs' in plan.actions:
                plan.actions.remove('mkfs')
            self._plan_filesystem(plan, device)
            if plan.fs is not None and plan.fs[2] < plan.vol.size:
                plan.add('growfs')
        if 'mkfs' in plan.actions:
            if 'wipe' in plan.actions:
                host.wipe(device)
            fs_uuid = str(uuidlib.uuid4())
            self.log('mkfs.%s %s' % (spec.fstype, device))
            host.mkfs(device, spec.fstype, spec.name, fs_uuid, force='wipe' in plan.actions,
                      extra_args=spec.mkfs_options)
            plan.fs_uuid = fs_uuid
            plan.fs = (spec.fstype, fs_uuid, plan.vol.size)
        if snapshot.mounted_at(spec.mount_path) is None:
            host.ensure_dir(spec.mount_path)
            host.mount(device, spec.mount_path, spec.fstype, _live_options(spec))
            plan.add('mount')
        if 'growfs' in plan.actions and 'mkfs' not in plan.actions:
            self._grow_fs(plan, device)
        if host.apply_ownership(spec.mount_path, spec.owner, spec.group, spec.mode):
            plan.add('ownership')

    def _grow_fs(self, plan, device):
        spec = plan.spec
        plan.add('growfs')
        try:
            host.grow_filesystem(spec.fstype, device, spec.mount_path)
        except host.OnlineResizeDenied as exc:
            if plan.users:
                raise PVError('%s; the filesystem cannot be grown offline either while containers use it (%s): '
                              'stop them and re-run' % (exc, ', '.join(u[0] for u in plan.users)))
            plan.warnings.append('%s: online resize not permitted here (%s); grown offline (unmount, e2fsck, '
                                 'resize2fs, mount)' % (spec.name, exc))
            host.grow_filesystem_offline(device, spec.mount_path, spec.fstype, _live_options(spec))

    def _run_remove(self, plan, snapshot):
        spec = plan.spec
        backend = self.backend(spec.backend)
        if 'umount' in plan.actions:
            try:
                host.umount(spec.mount_path)
            except PVError as exc:
                raise PVError('cannot unmount %s (still busy?): %s' % (spec.mount_path, exc))
        if 'detach' in plan.actions:
            backend.detach(plan.vol)
        if 'delete' in plan.actions:
            backend.delete(plan.vol)
        if spec.state == 'absent' and os.path.isdir(spec.mount_path) and not os.path.ismount(spec.mount_path):
            try:
                os.rmdir(spec.mount_path)
            except OSError:
                pass


def _live_options(spec):
    """fstab-only options dropped for a mount(8) call."""
    opts = [o for o in spec.mount_options if o not in ('nofail', 'noauto', 'auto', '_netdev')]
    return ','.join(opts) or 'defaults'


class _Placeholder(object):
    """Stands in for a BackendVolume that does not exist yet (check mode)."""

    def __init__(self, spec):
        self.id = '<new>'
        self.name = spec.name
        self.size = spec.size
        self.extra = {}


def _first_existing(paths):
    for path in paths:
        if os.path.exists(path):
            return path, os.path.realpath(path)
    raise PVError('none of %s exists' % ', '.join(paths))
