# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What this host has: every managed volume, cross-checked layer by layer.

backend id <-> device <-> filesystem <-> live mount <-> fstab <-> Docker volume,
with drift (layers that disagree) and orphans (a layer that exists without
a state record) flagged. Reads only.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import glob
import os

from ..host import chain as host
from ..backends.loop import devices_of, loop_devices
from ..common import MANAGED_LABEL, MANAGED_ROOT
from .state import StateStore


def collect(root=MANAGED_ROOT, docker=None, fstab_path=host.FSTAB, names=None):
    """Return {'volumes': [...], 'orphans': [...]} describing the host."""
    store = StateStore(root)
    records = store.load()['volumes']
    snapshot = host.HostSnapshot(fstab_path)
    loops = loop_devices()
    docker_vols = docker.volumes() if docker is not None else {}
    users = docker.users() if docker is not None else {}
    volumes = []
    for name in sorted(records):
        if names and name not in names:
            continue
        volumes.append(_one(name, records[name], snapshot, loops, docker_vols, users, docker is not None))
    orphans = [] if names else _orphans(root, records, snapshot, docker_vols)
    return {'volumes': volumes, 'orphans': orphans}


def _one(name, rec, snapshot, loops, docker_vols, users, have_docker):
    mountpoint = rec.get('mountpoint')
    mounted = snapshot.mounted_at(mountpoint) if mountpoint else None
    entry = snapshot.fstab.get(mountpoint) if mountpoint else None
    device = None
    if rec.get('backend') == 'loop' and rec.get('backend_id'):
        devs = devices_of(loops, rec['backend_id'])
        device = devs[0] if devs else None
    elif mounted is not None:
        device = mounted.source
    fs = None
    if device and os.path.exists(device):
        try:
            fs = host.read_superblock(device)
        except Exception:  # pylint: disable=broad-except
            fs = None
    dvol = docker_vols.get(name)
    drift = []
    status = rec.get('status', 'ready')
    if status == 'provisioning':
        drift.append('interrupted run: provisioning never completed')
    if status == 'ready':
        if mounted is None:
            drift.append('not mounted at %s' % mountpoint)
        if entry is None:
            drift.append('no fstab entry for %s' % mountpoint)
        elif entry.vfstype != rec.get('fstype'):
            drift.append('fstab says %s, record says %s' % (entry.vfstype, rec.get('fstype')))
        if mounted is not None and mounted.fstype != rec.get('fstype'):
            drift.append('mounted as %s, record says %s' % (mounted.fstype, rec.get('fstype')))
        if fs is not None and rec.get('fs_uuid') and fs[1] != rec['fs_uuid']:
            drift.append('filesystem UUID %s differs from the recorded %s' % (fs[1], rec['fs_uuid']))
        if rec.get('backend') == 'loop' and device is None:
            drift.append('image not attached to a loop device')
        if have_docker and rec.get('docker_volume'):
            if dvol is None:
                drift.append('Docker volume %s is missing' % name)
            elif (dvol.get('Options') or {}).get('device') != mountpoint:
                drift.append('Docker volume %s is not bound to %s' % (name, mountpoint))
    return {
        'name': name,
        'backend': rec.get('backend'),
        'backend_id': rec.get('backend_id'),
        'status': status,
        'device': device,
        'fstype': rec.get('fstype'),
        'fs_uuid': rec.get('fs_uuid'),
        'fs_size': fs[2] if fs else None,
        'size': rec.get('size'),
        'mountpoint': mountpoint,
        'mounted': mounted is not None,
        'mount_source': mounted.source if mounted else None,
        'fstab': entry.render() if entry else None,
        'docker_volume': name if dvol is not None else None,
        'docker_options': (dvol.get('Options') if dvol else None),
        'in_use_by': [u[0] for u in users.get(name, [])],
        'drift': drift,
        'healthy': not drift,
    }


def _orphans(root, records, snapshot, docker_vols):
    orphans = []
    known_images = set(r.get('backend_id') for r in records.values())
    for path in sorted(glob.glob(os.path.join(root, 'images', '*.img'))):
        if path not in known_images:
            orphans.append({'kind': 'loop_image', 'id': path})
    for name, vol in sorted(docker_vols.items()):
        if (vol.get('Labels') or {}).get(MANAGED_LABEL) == 'true' and name not in records:
            orphans.append({'kind': 'docker_volume', 'id': name})
    for i, line in enumerate(snapshot.fstab.lines):
        if line.startswith(host.Fstab.MARK):
            name = line[len(host.Fstab.MARK):].strip()
            if name not in records:
                orphans.append({'kind': 'fstab_entry', 'id': name})
    mounts_dir = os.path.join(root, 'mounts') + '/'
    recorded = set(r.get('mountpoint') for r in records.values())
    for mount in snapshot.mounts:
        if mount.target.startswith(mounts_dir) and mount.target not in recorded:
            orphans.append({'kind': 'mount', 'id': mount.target})
    return orphans
