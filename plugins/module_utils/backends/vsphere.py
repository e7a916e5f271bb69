# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ``vsphere`` backend: VMDKs on a datastore, attached to the VM that is the Docker host.

Parameters (the ``vsphere`` dict of the ``volume`` module, or the plugin
daemon's config):

``hostname``, ``username``, ``password``, ``port``, ``validate_certs``
    vCenter/ESXi connection; each falls back to ``VMWARE_HOST``,
    ``VMWARE_USER``, ``VMWARE_PASSWORD``, ``VMWARE_PORT``,
    ``VMWARE_VALIDATE_CERTS``.
``vm_name`` / ``vm_uuid`` / ``vm_moid`` (+ ``datacenter``, ``vm_folder``, ``use_instance_uuid``)
    The Docker host VM. Without any of them, the VM is found by this
    machine's SMBIOS uuid (``/sys/class/dmi/id/product_uuid``).
``datastore``, ``volume_folder`` (``persistent-volumes``)
    Where new volumes go: ``[datastore] persistent-volumes/<name>.vmdk``.
``provisioning`` (``thin``), ``disk_mode`` (``independent_persistent``), ``controller_type`` (``pvscsi``)
    Defaults for new disks; ``datastore``, ``provisioning``, ``disk_mode`` and
    ``controller_type`` may also be given per volume (``backend_options``).
``enable_uuid`` (true)
    Set ``disk.EnableUUID=TRUE`` on the VM so the guest shows disk WWNs.
``force_detach`` (false), ``fencing`` (true), ``fence_stop`` (false)
    Take over a disk attached to ANOTHER VM: only when that VM is poweredOff (fencing), or,
    with ``fence_stop``, after powering it off through the API; refused otherwise, before
    anything changes (see :func:`vmware_disk.takeover_plan`).
``guest_sys_root`` / ``guest_dev_root``
    Where the guest's sysfs and ``/dev`` are (``/sys``, ``/dev``); for the test harness only,
    which sets them through ``PV_VSPHERE_GUEST_SYS_ROOT`` / ``PV_VSPHERE_GUEST_DEV_ROOT``
    (the ``volume`` module does not expose them).

Identity of a volume: its VMDK path (``BackendVolume.id``) plus the disk uuid
when the server reports one. Ownership: the ``<name>.pv.json`` marker next to
the VMDK (see :mod:`vmware_disk`); ``adopt_id`` (a VMDK path) adopts a foreign
VMDK by writing that marker when it is attached.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import threading
import time

from .base import Backend, BackendVolume
from ..common import AGAIN, InUse, PVError, Refused, TimedOut, human_size, poll, validate_name
from ..host import devices
from ..vmware import client as vc
from ..vmware import disk as vd
from ..vmware import guest
OPTION_CHOICES = {
    'provisioning': vd.PROVISIONING,
    'disk_mode': vd.DISK_MODES,
    'controller_type': vd.CONTROLLER_TYPES,
}


class VSphereBackend(Backend):
    name = 'vsphere'
    scope = 'global'
    volume_options = ('datastore', 'provisioning', 'disk_mode', 'controller_type')

    def __init__(self, params=None):
        super(VSphereBackend, self).__init__(params)
        if not vc.HAS_PYVMOMI:
            raise PVError('the vsphere backend needs the pyvmomi Python package (pip install pyvmomi)')
        p = self.params
        self.sys_root = p.get('guest_sys_root') or os.environ.get('PV_VSPHERE_GUEST_SYS_ROOT') or '/sys'
        self.dev_root = p.get('guest_dev_root') or os.environ.get('PV_VSPHERE_GUEST_DEV_ROOT') or '/dev'
        self.defaults = {
            'datastore': p.get('datastore'),
            'provisioning': p.get('provisioning') or 'thin',
            'disk_mode': p.get('disk_mode') or 'independent_persistent',
            'controller_type': p.get('controller_type') or 'pvscsi',
        }
        for key, choices in OPTION_CHOICES.items():
            if self.defaults[key] not in choices:
                raise PVError('vsphere %s must be one of %s' % (key, ', '.join(choices)))
        self.volume_folder = p.get('volume_folder', vd.DEFAULT_FOLDER) or ''
        self.enable_uuid = p.get('enable_uuid', True) is not False
        self.takeover = {'force_detach': bool(p.get('force_detach')),
                         'fencing': p.get('fencing', True) is not False,
                         'fence_stop': bool(p.get('fence_stop'))}
        if self.takeover['fence_stop'] and not (self.takeover['force_detach'] and self.takeover['fencing']):
            raise PVError('vsphere fence_stop: true needs force_detach: true and fencing: true')
        vc.connection_params(p)          # fail early on missing auth
        self._client = None
        self._vm = None
        self._dc = None
        self._disks = None
        self._ds = {}
        # the engine works on several volumes in threads; placement on the VM must be serial
        self._lock = threading.RLock()

    # -- connection / inventory ----------------------------------------------
    @property
    def client(self):
        if self._client is None:
            self._client = vc.VSphere(self.params).connect()
        return self._client

    def close(self):
        if self._client is not None:
            self._client.close()
            self._client = None

    @property
    def vm(self):
        if self._vm is None:
            p = self.params
            if p.get('vm_name') or p.get('vm_uuid') or p.get('vm_moid'):
                self._vm = self.client.find_vm(name=p.get('vm_name'), uuid=p.get('vm_uuid'),
                                               moid=p.get('vm_moid'), datacenter=p.get('datacenter'),
                                               folder=p.get('vm_folder'),
                                               use_instance_uuid=p.get('use_instance_uuid'))
            else:
                self._vm = self._find_self()
        return self._vm

    def _find_self(self):
        bios = guest.host_bios_uuid(self.sys_root)
        if not bios:
            raise PVError('set vm_name, vm_uuid or vm_moid: this machine\'s SMBIOS uuid '
                          '(/sys/class/dmi/id/product_uuid) is not readable')
        for candidate in (bios, guest.uuid_byte_swapped(bios)):
            try:
                return self.client.find_vm(uuid=candidate, datacenter=self.params.get('datacenter'))
            except PVError:
                continue
        raise PVError('no VM with this machine\'s BIOS uuid %s on %s; set vm_name, vm_uuid or vm_moid'
                      % (bios, self.client.conn['hostname']))

    @property
    def dc(self):
        if self._dc is None:
            self._dc = self.client.datacenter_of(self.vm)
        return self._dc

    @property
    def disks(self):
        if self._disks is None:
            self._disks = vd.VmDisks(self.client, self.vm)
        return self._disks

    def forget_reads(self):
        """This VM's disks are read again on next use (other VMs' disks are read on every lookup)."""
        with self._lock:
            self._disks = None

    def datastore(self, name):
        if name not in self._ds:
            self._ds[name] = self.client.find_datastore(name, self.dc)
        return self._ds[name]

    # -- helpers ---------------------------------------------------------------
    def _options(self, request_or_volume):
        raw = dict(getattr(request_or_volume, 'options', None) or {})
        unknown = set(raw) - set(self.volume_options)
        if unknown:
            raise PVError('unknown vsphere backend option(s) %s (known: %s)'
                          % (', '.join(sorted(unknown)), ', '.join(self.volume_options)))
        opts = dict(self.defaults)
        opts.update((k, v) for k, v in raw.items() if v is not None)
        for key, choices in OPTION_CHOICES.items():
            if opts[key] not in choices:
                raise PVError('vsphere %s must be one of %s, got %r' % (key, ', '.join(choices), opts[key]))
        return opts

    def path_for(self, request):
        if request.adopt_id:
            vd.check_vmdk_path(request.adopt_id)
            return request.adopt_id
        validate_name(request.name)
        opts = self._options(request)
        if not opts['datastore']:
            raise PVError('the vsphere backend needs a datastore (vsphere.datastore or '
                          'backend_options.datastore)')
        return vd.managed_path(opts['datastore'], request.name, self.volume_folder)

    def _bus_rank(self, disk):
        return self.disks.bus_rank(disk['controller_type'], disk['controller_bus'])

    def _volume(self, name, path, disk=None, size=None, owned=True, attached_to=None, adopted=False):
        extra = {'filename': path, 'datastore': vc.split_ds_path(path)[0]}
        if disk is not None:
            extra.update({
                'uuid': disk.get('uuid'), 'controller_type': disk['controller_type'],
                'controller_bus': disk['controller_bus'], 'unit_number': disk['unit_number'],
                'bus_rank': self._bus_rank(disk), 'pci_slot': disk.get('pci_slot'),
                'disk_mode': disk.get('disk_mode'), 'provisioning': disk.get('provisioning'),
                'key': disk['key'],
            })
            size = disk['size'] or size
        if adopted:
            extra['adopted'] = True
        vol = BackendVolume(name=name, id=path, size=int(size or 0), attached_here=disk is not None,
                            attached_to=self.vm._moId if disk is not None else attached_to,
                            owned=owned, extra=extra)
        vol.locators = self._locators(vol) if disk is not None else []
        return vol

    def _locators(self, vol):
        e = vol.extra
        out = guest.wwn_locators(e.get('uuid'), self.dev_root)
        node = guest.find_by_wwid(e.get('uuid'), self.sys_root, self.dev_root) if e.get('uuid') else None
        if node:
            out.append(node)
        if e.get('controller_type') in guest.DRIVERS and e.get('unit_number') is not None:
            out.extend(guest.scsi_locators(e['controller_type'], e['bus_rank'], e['unit_number'],
                                           e.get('pci_slot'), self.sys_root, self.dev_root))
        return out

    # -- reads -------------------------------------------------------------------
    def lookup(self, requests):
        found = {}
        pending = []
        for req in requests:
            path = self.path_for(req)
            disk = self.disks.find(path)
            if disk is not None:
                marker = vd.read_marker(self.client, path, self.dc)
                vd.check_identity(marker, disk)
                owned = marker is not None or bool(req.adopt_id)
                found[req.name] = self._volume(req.name, path, disk, owned=owned,
                                               size=(marker or {}).get('size'), adopted=bool(req.adopt_id))
            else:
                pending.append((req, path))
        # detached: look on the datastores, one search per folder
        by_folder = {}
        for req, path in pending:
            ds, rel = vc.split_ds_path(path)
            folder = rel.rpartition('/')[0]
            by_folder.setdefault((ds, folder), []).append((req, path))
        for (ds, folder), items in by_folder.items():
            patterns = []
            for _req, path in items:
                base = path.rpartition('/')[2] if '/' in path else vc.split_ds_path(path)[1]
                patterns += [base, base[:-len('.vmdk')] + vd.MARKER_SUFFIX]
            files = self.client.search(self.datastore(ds), folder, patterns, disk_details=True)
            for req, path in items:
                base = path.rpartition('/')[2] if '/' in path else vc.split_ds_path(path)[1]
                info = files.get(base)
                if info is None:
                    continue
                marker = None
                if (base[:-len('.vmdk')] + vd.MARKER_SUFFIX) in files:
                    marker = vd.read_marker(self.client, path, self.dc)
                size = (int(info.capacityKb) * 1024 if getattr(info, 'capacityKb', None)
                        else (marker or {}).get('size'))
                users = vd.vms_using(self.client, path, exclude=self.vm)
                found[req.name] = self._volume(
                    req.name, path, size=size, owned=marker is not None or bool(req.adopt_id),
                    attached_to=users[0][0]._moId if users else None, adopted=bool(req.adopt_id))
        return found

    def list_volumes(self):
        """Every VMDK with our marker in the volume folder of each datastore of the datacenter."""
        vols = []
        attached = dict((d['filename'], d) for d in self.disks.disks)
        for ds in self.dc.datastore:
            files = self.client.search(ds, self.volume_folder, ['*' + vd.MARKER_SUFFIX, '*.vmdk'],
                                       disk_details=True)
            for fname in sorted(files):
                if not fname.endswith(vd.MARKER_SUFFIX):
                    continue
                stem = fname[:-len(vd.MARKER_SUFFIX)]
                path = vd.managed_path(ds.name, stem, self.volume_folder)
                if stem + '.vmdk' not in files:
                    continue
                marker = vd.read_marker(self.client, path, self.dc)
                if marker is None:
                    continue
                name = marker.get('name') or stem
                vols.append(self._volume(name, path, attached.get(path), size=marker.get('size')))
        return vols

    # -- writes ------------------------------------------------------------------
    def _want(self, name, path, size=None, create=False, opts=None):
        opts = opts or self.defaults
        want = {'state': 'present', 'filename': path, 'create': create, 'name': name, 'size': size,
                'provisioning': opts['provisioning'], 'disk_mode': opts['disk_mode'],
                'controller_type': opts['controller_type'], 'enable_uuid': self.enable_uuid}
        want.update(self.takeover)
        return want

    def _apply(self, want):
        """Run one disk change on the VM (serialised); return the disk as attached now, or None."""
        with self._lock:
            vd.ensure_disk(self.client, self.vm, want, disks=self.disks)
            return self.disks.find(want['filename'])

    def create(self, request):
        path = self.path_for(request)
        if request.adopt_id:
            raise PVError('VMDK %s to adopt does not exist' % path)
        size = vd.round_size(request.size)
        if size != request.size:
            raise PVError('vsphere volume sizes are whole MiB; %s is not' % human_size(request.size))
        opts = self._options(request)
        disk = self._apply(self._want(request.name, path, size, create=True, opts=opts))
        vol = self._volume(request.name, path, disk, owned=True)
        vol.extra['fresh'] = True     # a new VMDK reads as zeros
        return vol

    def grow(self, volume, new_size):
        if new_size < volume.size:
            raise Refused('refusing to shrink %s from %s to %s'
                          % (volume.name, human_size(volume.size), human_size(new_size)))
        self._check_owned(volume, 'grow')
        if vd.round_size(new_size) != new_size:
            raise PVError('vsphere volume sizes are whole MiB; %s is not' % human_size(new_size))
        # grown through ReconfigVM (attaching it here first if needed: attach comes next anyway)
        disk = self._apply(self._want(volume.name, volume.id, new_size, opts=self._vol_opts(volume)))
        return self._volume(volume.name, volume.id, disk, owned=volume.owned,
                            adopted=volume.extra.get('adopted'))

    def _vol_opts(self, volume):
        opts = dict(self.defaults)
        for key in ('disk_mode', 'provisioning', 'controller_type'):
            if volume.extra.get(key):
                opts[key] = volume.extra[key]
        return opts

    def _check_owned(self, volume, what):
        if not volume.owned:
            raise Refused('refusing to %s %s: it was not created by this collection '
                          '(no ownership marker); adopt it with adopt_id' % (what, volume.id))

    def _check_not_elsewhere(self, volume, what):
        if volume.attached_to and volume.attached_to != self.vm._moId:
            if what == 'delete':
                raise InUse('refusing to delete %s: it is attached to VM %s' % (volume.id, volume.attached_to))
            if self.takeover['force_detach']:
                # a fenced takeover: refused here (reads only) unless that VM is poweredOff or fence_stop
                vd.takeover_plan(self.client, volume.id, vd.vms_using(self.client, volume.id, exclude=self.vm),
                                 self.takeover)
                return
            raise InUse('%s is attached to VM %s; detach it there first (state: detached on that host), '
                        'or set force_detach: true to take it over from a poweredOff VM'
                        % (volume.id, volume.attached_to))

    def check(self, volume, action, request=None):
        """The refusals of grow/attach/delete, made while planning (reads only)."""
        if action in ('grow', 'delete'):
            self._check_owned(volume, action)
        if action in ('attach', 'delete'):
            self._check_not_elsewhere(volume, action)

    def attach(self, volume):
        if volume.attached_here:
            return volume
        self._check_not_elsewhere(volume, 'attach')
        disk = self._apply(self._want(volume.name, volume.id, opts=self._vol_opts(volume)))
        if volume.extra.get('adopted') and not volume.owned:
            vd.write_marker(self.client, volume.id, self.dc, volume.name, volume.size, {'adopted': True})
            volume.owned = True
        vol = self._volume(volume.name, volume.id, disk, owned=volume.owned, size=volume.size, adopted=volume.extra.get('adopted'))
        vol.extra['fresh'] = volume.extra.get('fresh', False)
        return vol

    def locate(self, volume, timeout=60):
        """Wait for the disk in the guest (WWN link, else SCSI by-path); size checked."""
        if not volume.attached_here:
            raise PVError('%s is not attached to this VM' % volume.id)
        deadline = time.monotonic() + timeout
        scanned = []
        seen = {'locators': []}

        def attempt():
            locators = self._locators(volume)
            if not locators:
                return AGAIN
            seen['locators'] = volume.locators = locators
            remaining = max(deadline - time.monotonic(), 0.0)
            try:
                return devices.wait_for_device(locators, volume.size, what=volume.name,
                                               timeout=remaining if scanned else min(2.0, remaining))[1]
            except TimedOut:
                pass            # any other error (the size check refused the device) goes up
            if not scanned:
                # not there after 2 s: controllers without hot-plug events (LSI Logic) need a scan
                guest.scan_scsi_target(volume.extra.get('controller_type'), volume.extra.get('bus_rank', 0),
                                       volume.extra.get('unit_number', 0), volume.extra.get('pci_slot'),
                                       self.sys_root)
                scanned.append(True)
            return AGAIN

        def late():
            if seen['locators']:
                raise TimedOut('timed out after %ss waiting for %s (SCSI(%s:%s)%s) to appear at any of: %s'
                               % (timeout, volume.id, volume.extra.get('controller_bus'),
                                  volume.extra.get('unit_number'),
                                  ', uuid %s' % volume.extra['uuid'] if volume.extra.get('uuid') else '',
                                  ', '.join(seen['locators'])))
            raise TimedOut('timed out after %ss: the %s controller of %s (SCSI bus %s) is not visible '
                           'in this guest, and the disk has no uuid to find it by (set disk.EnableUUID '
                           'and power-cycle the VM)'
                           % (timeout, volume.extra.get('controller_type'), volume.id,
                              volume.extra.get('controller_bus')))
        return poll(attempt, timeout, late, interval=0.2, max_interval=0.2)

    def refresh_device(self, volume, device, timeout=10):
        """After a grow: SCSI rescan, then give the new capacity a moment to show."""
        guest.rescan_device(device, self.sys_root)

        def attempt():
            try:
                return None if devices.block_size(device) >= volume.size else AGAIN
            except OSError:
                return None
        poll(attempt, timeout, lambda: None, interval=0.1)

    def detach(self, volume):
        if not volume.attached_here:
            return volume
        self._apply({'state': 'absent', 'filename': volume.id, 'destroy': False, 'enable_uuid': False})
        volume.attached_here = False
        volume.attached_to = None
        volume.locators = []
        return volume

    def delete(self, volume):
        self._check_owned(volume, 'delete')
        self._check_not_elsewhere(volume, 'delete')
        if volume.extra.get('adopted') and vd.read_marker(self.client, volume.id, self.dc) is None:
            # adopted by id (adopt_id): mark it ours, as attach does, so the disk layer destroys it
            vd.write_marker(self.client, volume.id, self.dc, volume.name, volume.size, {'adopted': True})
        self._apply({'state': 'absent', 'filename': volume.id, 'destroy': True, 'enable_uuid': False})
