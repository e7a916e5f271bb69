# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The engine: drives backend -> host chain -> Docker volume for a list of volumes.

One entry point, :meth:`Engine.apply`, used by the ``volume`` module and by the
volume-plugin daemon. A run:

1. validates every spec (nothing is touched if any is bad);
2. reads the world once: the state record (under its lock), the mount table
   and fstab, the backends (one batched lookup each), Docker volumes/containers;
3. plans every volume with the rules of :mod:`.plan` (functions over that snapshot) and
   refuses unsafe plans (shrink, in use, foreign signatures, the backends' own refusals)
   before changing anything;
4. in check mode returns the plan; otherwise creates and attaches storage in one batch per
   backend that has real batches (cinder: ``create_many``/``attach_many``), runs the
   per-volume work (storage, filesystem, mount) in a small thread pool, then writes fstab,
   the Docker volumes and the state record once. A volume that fails reports only what
   was really done.

Rule: orchestration only. The world (state store, host snapshot, backends, Docker) can be
handed in (``Engine(..., state_store=, host_snapshot=, backends=, docker=)``); the defaults
read the real host.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import time
import uuid as uuidlib
from concurrent.futures import ThreadPoolExecutor

from ..host import chain as host
from ..backends import registry
from ..backends.base import VolumeRequest
from ..backends.registry import get_backend
from ..common import MANAGED_ROOT, PVError, human_size, parse_size, validate_mount_path, validate_name
from .plan import Plan, World, check_list, fstab_entry, plan_filesystem, plan_present, plan_remove
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


class Engine(object):
    """``Engine(root, fstab_path, check_mode, backend_params)`` as the module and the daemon call it;
    the world can be injected: ``state_store`` (a :class:`StateStore`), ``host_snapshot`` (a callable
    returning a :class:`host.chain.HostSnapshot`, called once per run under the state lock),
    ``backends`` (``{name: Backend}``), ``docker`` (a :class:`docker.volumes.DockerVolumes`)."""

    def __init__(self, root=MANAGED_ROOT, fstab_path=host.FSTAB, check_mode=False,
                 backend_params=None, docker=None, workers=4, log=None,
                 state_store=None, host_snapshot=None, backends=None, only_backends=False):
        self.root = root
        self.fstab_path = fstab_path
        self.check_mode = check_mode
        self.backend_params = dict(backend_params or {})
        self._docker = docker
        self.workers = workers
        self.log = log or (lambda msg: None)
        self.backends = dict(backends or {})
        self.only_backends = only_backends     # True: no backend but the injected ones (tests)
        self.warnings = []
        self._store = state_store
        self._snapshot = host_snapshot or (lambda: host.HostSnapshot(self.fstab_path))

    # -- helpers -------------------------------------------------------------
    def backend(self, name):
        if name not in self.backends:
            if self.only_backends:
                raise PVError('backend %s is not available here (known: %s)' % (name, ', '.join(sorted(self.backends))))
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
        check_list(specs)
        for spec in specs:
            self.backend(spec.backend)       # unknown backend or missing SDK fails here
        for name in sorted(set(spec.backend for spec in specs)):
            self.backend(name).check_host()  # e.g. which Nova server this is: fails before any change

        store = self._store if self._store is not None else StateStore(self.root)
        if self.check_mode and not os.path.isdir(self.root):
            store.load()      # check mode where nothing ran yet: nothing to lock, no directory created
        else:
            store.lock()
        try:
            snapshot = self._snapshot()
            plans = [Plan(spec) for spec in specs]
            self._lookup(plans)
            need_docker = any(p.spec.docker_volume or (p.spec.state != 'present' and p.spec.check_users)
                              for p in plans)
            docker = self.docker if need_docker else None
            world = World(snapshot, docker, store.volumes, self.backend)
            for plan in plans:
                if plan.spec.state == 'present':
                    plan_present(plan, world)
                else:
                    plan_remove(plan, world)
            if self.check_mode:
                return self._results(plans)
            self._execute(plans, world, store)
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

    # -- execution ---------------------------------------------------------------
    def _execute(self, plans, world, store):
        snapshot, docker = world.host, world.docker
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
                        plan.did('remove_containers')
                    if 'docker_volume_remove' in plan.actions:
                        docker.remove(plan.spec.name)
                        plan.did('docker_volume_remove')
                except PVError as exc:
                    plan.error = str(exc)

        work = [p for p in plans if p.actions and not p.error]
        self._provision_batches(work)
        work = [p for p in work if not p.error]
        if work:
            with ThreadPoolExecutor(max_workers=max(1, min(self.workers, len(work)))) as pool:
                list(pool.map(lambda p: self._run_volume(p, world), work))

        for plan in plans:
            if plan.error:
                continue
            spec = plan.spec
            if spec.state == 'present':
                entry = fstab_entry(self.backend(spec.backend), plan, plan.fs_uuid)
                if entry is not None and snapshot.fstab.get(spec.mount_path) != entry:
                    snapshot.fstab.set(spec.name, entry)
                    plan.did('fstab')
            elif 'fstab_remove' in plan.actions:
                snapshot.fstab.remove(spec.mount_path)
                plan.did('fstab_remove')
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
                    plan.did('docker_volume_recreate')
                elif 'docker_volume' in plan.actions:
                    docker.create(spec.name, spec.mount_path, labels)
                    plan.did('docker_volume')
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
                if store.volumes.pop(spec.name, None) is not None:
                    plan.did('forget')
        store.save()

    def _provision_batches(self, plans):
        """For backends with real batches (registry capability ``batch``: cinder), create every new
        volume with one ``create_many`` and attach with one ``attach_many`` (requests sent in
        parallel, ONE wait for all), instead of one volume at a time in the per-volume workers.
        A volume that also grows keeps the per-volume order (grow, then attach)."""
        by_backend = {}
        for plan in plans:
            if plan.spec.state == 'present' and registry.info(plan.spec.backend).can('batch'):
                by_backend.setdefault(plan.spec.backend, []).append(plan)
        for name, group in sorted(by_backend.items()):
            backend = self.backend(name)
            creates = [p for p in group if p.vol is None]
            if creates:
                self.log('create %s %s' % (name, ', '.join(
                    '%s (%s)' % (p.spec.name, human_size(p.spec.size)) for p in creates)))
                try:
                    made = backend.create_many([p.spec.request() for p in creates])
                except PVError as exc:
                    for plan in creates:
                        plan.error = str(exc)
                else:
                    for plan, vol in zip(creates, made):
                        plan.vol = vol
                        plan.did('create')
            attach = [p for p in group if not p.error and p.vol is not None and not p.vol.attached_here
                      and 'grow' not in p.actions]
            if attach:
                self.log('attach %s %s' % (name, ', '.join(p.spec.name for p in attach)))
                try:
                    done = backend.attach_many([p.vol for p in attach])
                except PVError as exc:
                    for plan in attach:
                        plan.error = str(exc)
                else:
                    for plan, vol in zip(attach, done):
                        plan.vol = vol
                        plan.did('attach')

    def _run_volume(self, plan, world):
        try:
            if plan.spec.state == 'present':
                self._run_present(plan, world)
            else:
                self._run_remove(plan)
        except PVError as exc:
            plan.error = str(exc)
        except (OSError, IOError) as exc:
            plan.error = '%s: %s' % (type(exc).__name__, exc)

    def _run_present(self, plan, world):
        spec = plan.spec
        backend = self.backend(spec.backend)
        if plan.vol is None:
            self.log('create %s %s (%s)' % (spec.backend, spec.name, human_size(spec.size)))
            plan.vol = backend.create(spec.request())
            plan.did('create')
        elif 'grow' in plan.actions:
            self.log('grow %s %s -> %s' % (spec.backend, spec.name, human_size(spec.size)))
            plan.vol = backend.grow(plan.vol, spec.size)
            plan.did('grow')
        if not plan.vol.attached_here:
            plan.vol = backend.attach(plan.vol)
            plan.did('attach')
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
            plan_filesystem(plan, world, device)
            if plan.fs is not None and plan.fs[2] < plan.vol.size:
                plan.add('growfs')
        if 'mkfs' in plan.actions:
            if 'wipe' in plan.actions:
                host.wipe(device)
                plan.did('wipe')
            fs_uuid = str(uuidlib.uuid4())
            self.log('mkfs.%s %s' % (spec.fstype, device))
            host.mkfs(device, spec.fstype, spec.name, fs_uuid, force='wipe' in plan.actions,
                      extra_args=spec.mkfs_options)
            plan.fs_uuid = fs_uuid
            plan.fs = (spec.fstype, fs_uuid, plan.vol.size)
            plan.did('mkfs')
        if world.host.mounted_at(spec.mount_path) is None:
            host.ensure_dir(spec.mount_path)
            host.mount(device, spec.mount_path, spec.fstype, _live_options(spec))
            plan.did('mount')
        if 'growfs' in plan.actions and 'mkfs' not in plan.actions:
            self._grow_fs(plan, device)
        if host.apply_ownership(spec.mount_path, spec.owner, spec.group, spec.mode):
            plan.did('ownership')

    def _grow_fs(self, plan, device):
        spec = plan.spec
        try:
            host.grow_filesystem(spec.fstype, device, spec.mount_path)
        except host.OnlineResizeDenied as exc:
            if plan.users:
                raise PVError('%s; the filesystem cannot be grown offline either while containers use it (%s): '
                              'stop them and re-run' % (exc, ', '.join(u[0] for u in plan.users)))
            plan.warnings.append('%s: online resize not permitted here (%s); grown offline (unmount, e2fsck, '
                                 'resize2fs, mount)' % (spec.name, exc))
            host.grow_filesystem_offline(device, spec.mount_path, spec.fstype, _live_options(spec))
        plan.did('growfs')

    def _run_remove(self, plan):
        spec = plan.spec
        backend = self.backend(spec.backend)
        if 'umount' in plan.actions:
            try:
                host.umount(spec.mount_path)
            except PVError as exc:
                raise PVError('cannot unmount %s (still busy?): %s' % (spec.mount_path, exc))
            plan.did('umount')
        if 'detach' in plan.actions:
            backend.detach(plan.vol)
            plan.did('detach')
        if 'delete' in plan.actions:
            backend.delete(plan.vol)
            plan.did('delete')
        if spec.state == 'absent' and os.path.isdir(spec.mount_path) and not os.path.ismount(spec.mount_path):
            try:
                os.rmdir(spec.mount_path)
            except OSError:
                pass


def _live_options(spec):
    """fstab-only options dropped for a mount(8) call."""
    opts = [o for o in spec.mount_options if o not in ('nofail', 'noauto', 'auto', '_netdev')]
    return ','.join(opts) or 'defaults'


def _first_existing(paths):
    for path in paths:
        if os.path.exists(path):
            return path, os.path.realpath(path)
    raise PVError('none of %s exists' % ', '.join(paths))
