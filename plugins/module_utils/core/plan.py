# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The planning rules: functions over a snapshot of the world, reads only.

Rule: nothing here changes anything. Each rule gets a :class:`Plan` and a :class:`World`
(host snapshot, Docker or None, the state records, the backends) and either adds the
actions a real run will take or raises the refusal (:class:`common.Refused`,
:class:`common.InUse`) - every refusal a real run would make is made here, so check mode
and the real run agree and a refused list changes nothing. Unit-tested without root
(tests/unit/plugins/module_utils/core/test_engine_plan.py).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ..backends import registry
from ..common import MANAGED_LABEL, Conflict, InUse, PVError, Refused, human_size, reworded
from ..host import chain as host


class World(object):
    """What planning reads: ``host`` (a :class:`host.chain.HostSnapshot`), ``docker`` (a
    :class:`docker.volumes.DockerVolumes`, or None when no volume needs it), ``records`` (the
    state record's volumes) and ``backend(name)`` (the backend instance)."""

    def __init__(self, host_snapshot, docker, records, backend):
        self.host = host_snapshot
        self.docker = docker
        self.records = records
        self.backend = backend


class Plan(object):
    """What will happen (or happened) to one volume."""

    def __init__(self, spec):
        self.spec = spec
        self.actions = []        # planned, in order (plus what a real run found it had to do)
        self.done = []           # carried out (a real run)
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

    def did(self, action):
        """A real run carried ``action`` out."""
        self.add(action)
        if action not in self.done:
            self.done.append(action)

    def reported_actions(self):
        """What to report: the plan, except for a volume that failed, which reports only
        what was really done (a refused or failed volume never reports an action it did not do)."""
        if self.error:
            return [a for a in self.actions if a in self.done]
        return list(self.actions)

    def record(self):
        spec, vol = self.spec, self.vol
        actions = self.reported_actions()
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
            'changed': bool(actions),
            'actions': actions,
        }


class Placeholder(object):
    """Stands in for a BackendVolume that does not exist yet (check mode)."""

    def __init__(self, spec):
        self.id = '<new>'
        self.name = spec.name
        self.size = spec.size
        self.extra = {}


# -- the list as a whole -----------------------------------------------------------------

def check_list(specs):
    """Rules over the whole list: each name once, no two present volumes on one mount path."""
    seen = set()
    for spec in specs:
        if spec.name in seen:
            raise Conflict('volume %s is listed twice' % spec.name)
        seen.add(spec.name)
    targets = {}
    for spec in specs:
        if spec.state == 'present':
            if spec.mount_path in targets:
                raise Conflict('volumes %s and %s share the mount path %s'
                               % (targets[spec.mount_path], spec.name, spec.mount_path))
            targets[spec.mount_path] = spec.name


def _storage(spec):
    return registry.info(spec.backend).can('storage')


def _wrap(spec, exc):
    """Name the volume in a backend's refusal (keeping its type)."""
    if spec.name in str(exc):
        return exc
    return reworded(exc, 'volume %s: %s' % (spec.name, exc))


def _check(backend, plan, action, request=None):
    try:
        backend.check(plan.vol, action, request)
    except PVError as exc:
        raise _wrap(plan.spec, exc)


# -- one volume ------------------------------------------------------------------------

def plan_present(plan, world):
    spec, vol = plan.spec, plan.vol
    backend = world.backend(spec.backend)
    rec = world.records.get(spec.name) or {}
    plan.before = describe(plan, world)
    if vol is None:
        _check(backend, plan, 'create', spec.request())
        plan.add('create')
        plan.add('attach')
        plan.add('mkfs')
    else:
        if spec.size < vol.size:
            raise Refused('volume %s: refusing to shrink from %s to %s (shrinking is never done)'
                          % (spec.name, human_size(vol.size), human_size(spec.size)))
        if spec.size > vol.size:
            _check(backend, plan, 'grow')
            plan.add('grow')
        if not vol.attached_here:
            _check(backend, plan, 'attach')
            plan.add('attach')
    mounted = world.host.mounted_at(spec.mount_path)
    device = vol.device if vol is not None else None
    if vol is not None and vol.attached_here and not device:
        device = find_device(backend, vol, spec)
    if device:
        plan.device = device
        plan_filesystem(plan, world, device)
        if mounted is not None and mounted.devno != world.host.device_number(device):
            raise InUse('volume %s: %s already has another filesystem mounted (%s)'
                        % (spec.name, spec.mount_path, mounted.source))
        if mounted is None:
            plan.add('mount')
        # a mounted filesystem's on-disk superblock can lag (xfs logs the change):
        # trust the size we recorded when we last grew it
        fs_size = (rec.get('fs_size') if mounted is not None else None) or (
            plan.fs[2] if plan.fs else vol.size)
        if plan.fs and ('grow' in plan.actions or fs_size < vol.size):
            plan.add('growfs')
            if world.docker is not None:
                plan.users = world.docker.users_of(spec.name, spec.mount_path)
    elif mounted is not None:
        raise InUse('volume %s: %s already has another filesystem mounted (%s)'
                    % (spec.name, spec.mount_path, mounted.source))
    else:
        plan.add('mount')
    if 'mount' in plan.actions and 'grow' in plan.actions:
        plan.add('growfs')
    if 'mount' not in plan.actions:
        if world.host.ownership_diff(spec.mount_path, spec.owner, spec.group, spec.mode):
            plan.add('ownership')
    elif 'mkfs' in plan.actions:
        # a new filesystem's root is root:root 0755
        if (host.resolve_uid(spec.owner) not in (None, 0) or host.resolve_gid(spec.group) not in (None, 0)
                or spec.mode not in (None, 0o755)):
            plan.add('ownership')
    elif spec.owner is not None or spec.group is not None or spec.mode is not None:
        plan.add('ownership')    # unknown until mounted: predicted, applied only if it differs
    fs_uuid = plan.fs_uuid or rec.get('fs_uuid')
    entry = fstab_entry(backend, plan, fs_uuid)
    current = world.host.fstab.get(spec.mount_path)
    if current is None or (entry is not None and current != entry):
        plan.add('fstab')
    if spec.docker_volume:
        docker = world.docker
        labels = docker.wanted_labels(spec.backend, spec.labels)
        drift = docker.drift(spec.name, spec.mount_path, labels)
        if drift is None:
            plan.add('docker_volume')
        elif drift:
            users = docker.users_of(spec.name)
            if users:
                raise InUse('volume %s: the Docker volume differs (%s) but containers use it (%s); '
                            'stop them or change the request back'
                            % (spec.name, '; '.join(drift), ', '.join(u[0] for u in users)))
            plan.add('docker_volume_recreate')
    plan.after = describe_wanted(plan, world, fs_uuid)


def find_device(backend, vol, spec):
    try:
        return backend.locate(vol, timeout=min(spec.timeout, 5))
    except PVError as exc:
        raise _wrap(spec, exc)


def plan_filesystem(plan, world, device):
    """Adopt a filesystem of the requested type; format only a device with no signature;
    anything else is refused unless force_format."""
    spec = plan.spec
    found = world.host.read_superblock(device)
    if found is not None and found[0] == spec.fstype:
        plan.fs = found
        plan.fs_uuid = found[1]
        return
    if found is None:
        if plan.vol is not None and plan.vol.extra.get('fresh'):
            signature = {}
        else:
            signature = world.host.probe_signatures(device)
        if not signature:
            plan.add('mkfs')
            return
        what = host.describe_signature(signature)
    else:
        what = 'a %s filesystem' % found[0]
    if not spec.force_format:
        raise Refused('volume %s: device %s carries %s; refusing to format it as %s '
                      '(set force_format: true to destroy what is there)'
                      % (spec.name, device, what, spec.fstype))
    plan.add('wipe')
    plan.add('mkfs')


def fstab_entry(backend, plan, fs_uuid):
    spec = plan.spec
    vol = plan.vol or Placeholder(spec)
    if fs_uuid is None and backend.fstab_source(vol, plan.device, 'X') == 'UUID=X':
        return None
    source = backend.fstab_source(vol, plan.device, fs_uuid)
    opts = list(spec.mount_options)
    for extra in backend.fstab_options(vol):
        if extra not in opts:
            opts.append(extra)
    return host.FstabEntry(source, spec.mount_path, spec.fstype, ','.join(opts), 0,
                           2 if spec.fstype == 'ext4' else 0)


def describe(plan, world):
    spec, vol = plan.spec, plan.vol
    entry = world.host.fstab.get(spec.mount_path)
    mounted = world.host.mounted_at(spec.mount_path)
    desc = {
        'storage': ('%s (%s)' % (vol.id, human_size(vol.size))) if vol else None,
        'mounted': mounted.source if mounted else None,
        'fstab': entry.render() if entry else None,
    }
    if world.docker is not None:
        desc['docker_volume'] = spec.name in world.docker.volumes()
    return desc


def describe_wanted(plan, world, fs_uuid):
    spec = plan.spec
    entry = fstab_entry(world.backend(spec.backend), plan, fs_uuid or '<new uuid>')
    after = {
        'storage': '%s (%s)' % (plan.vol.id if plan.vol else '<new %s volume>' % spec.backend,
                                human_size(spec.size)),
        'mounted': spec.mount_path and (plan.device or '<device>'),
        'fstab': entry.render() if entry else None,
    }
    if spec.docker_volume:
        after['docker_volume'] = True
    return after


def plan_remove(plan, world):
    """``detached`` / ``absent``: refused while containers use the volume unless force; the
    backend's refusals (not ours, attached elsewhere) come here too, before anything changes."""
    spec, vol = plan.spec, plan.vol
    backend = world.backend(spec.backend)
    rec = world.records.get(spec.name) or {}
    mount_path = rec.get('mountpoint') or spec.mount_path
    spec.mount_path = mount_path
    plan.before = describe(plan, world)
    docker = world.docker
    users = docker.users_of(spec.name, mount_path) if (spec.check_users and docker is not None) else []
    if users and not spec.force:
        raise InUse('volume %s is in use by container(s) %s; refusing state=%s '
                    '(stop and remove them, or set force: true to remove them)'
                    % (spec.name, ', '.join('%s (%s)' % u for u in users), spec.state))
    detach = vol is not None and vol.attached_here and _storage(spec)
    delete = spec.state == 'absent' and vol is not None and _storage(spec)
    if detach:
        _check(backend, plan, 'detach')
    if delete:
        _check(backend, plan, 'delete')
    if users:
        plan.add('remove_containers')
        plan.users = [u[0] for u in users]
    existing = docker.volumes().get(spec.name) if docker is not None else None
    if existing is not None and spec.docker_volume:
        labels = existing.get('Labels') or {}
        if labels.get(MANAGED_LABEL) == 'true':
            plan.add('docker_volume_remove')
        else:
            plan.warnings.append('Docker volume %s is not managed by this collection; left alone' % spec.name)
    if world.host.mounted_at(mount_path) is not None:
        plan.add('umount')
    if world.host.fstab.get(mount_path) is not None:
        plan.add('fstab_remove')
    if detach:
        plan.add('detach')
    if delete:
        plan.add('delete')
    if spec.state == 'absent' and rec:
        plan.add('forget')
    plan.after = {'storage': ('%s (%s)' % (vol.id, human_size(vol.size)))
                  if (vol and spec.state == 'detached') else None,
                  'mounted': None, 'fstab': None, 'docker_volume': False}
