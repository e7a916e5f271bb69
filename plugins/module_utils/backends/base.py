# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one backend protocol: loop, cinder and vsphere implement it.

Used by the ``volume`` module (through :mod:`engine`) and by the volume-plugin
daemon. A backend deals with the *storage* only: it creates/finds a volume,
attaches it to this host and says which block device it became. Everything
from the block device on (filesystem, mount, fstab, Docker volume) is the
host-side chain in :mod:`host`, written once for all backends.

Lifecycle the engine drives, per volume::

    lookup -> (create | grow) -> attach -> locate -> [host chain]
    [host chain teardown] -> detach -> delete

Rules every backend keeps:

* ``lookup`` and ``check`` only read. Check mode calls nothing else.
* Every refusal a mutating call would make is also made by ``check`` while planning, so a
  refused volume fails in check mode exactly as in a real run, before anything changed.
* Every mutating call is idempotent (calling it again when done is a no-op).
* Volumes a backend creates carry ownership marks (metadata, labels, a managed
  directory); a volume that is not ours is never modified or deleted unless the
  user adopted it explicitly (``adopt_id``).
* Errors are :class:`common.PVError` (typed: ``NotFound``, ``Refused``, ``InUse``, ...)
  with a message meant for the user.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ..common import Refused


class BackendVolume(object):
    """What a backend knows about one volume.

    ``attached_here``: attached to *this* Docker host.
    ``attached_to``: the id of the host/server/VM it is attached to, if any.
    ``locators``: stable device paths to look for on this host
    (e.g. ``/dev/disk/by-id/virtio-<id20>``), filled in by ``attach``/``lookup``.
    ``device``: the block device when the backend knows it directly (loop).
    """

    __slots__ = ('name', 'id', 'size', 'attached_here', 'attached_to', 'locators',
                 'device', 'owned', 'extra')

    def __init__(self, name, id, size, attached_here=False, attached_to=None,
                 locators=None, device=None, owned=True, extra=None):
        self.name = name
        self.id = id
        self.size = size
        self.attached_here = attached_here
        self.attached_to = attached_to
        self.locators = list(locators or [])
        self.device = device
        self.owned = owned
        self.extra = dict(extra or {})

    def as_dict(self):
        return dict((k, getattr(self, k)) for k in self.__slots__)

    def __repr__(self):
        return 'BackendVolume(%r)' % (self.as_dict(),)


class VolumeRequest(object):
    """What the user asked for, already validated (sizes in bytes)."""

    __slots__ = ('name', 'size', 'options', 'adopt_id')

    def __init__(self, name, size, options=None, adopt_id=None):
        self.name = name
        self.size = size
        self.options = dict(options or {})   # backend specific: volume_type, datastore, ...
        self.adopt_id = adopt_id


class Backend(object):
    """Base class. Subclasses set ``name`` and ``scope`` and implement the calls.

    ``params`` is the backend's connection/config dict (auth for clouds,
    image directory for loop); ``check_mode`` backends must not change anything.
    """

    name = None
    scope = 'local'          # 'global' for cloud backends: a volume can move between hosts (see registry)
    #: backend options a user may pass per volume (validated by the backend)
    volume_options = ()

    def __init__(self, params=None):
        self.params = dict(params or {})

    # -- reads ---------------------------------------------------------
    def check_host(self):
        """Called by the engine before it plans (in check mode too): raise PVError if this host
        cannot use the backend, so that a run that would fail changes nothing. Default: nothing."""

    def lookup(self, requests):
        """Return ``{name: BackendVolume}`` for the requests that exist.

        One batched read for the whole list where the API allows it.
        """
        raise NotImplementedError

    def list_volumes(self):
        """Every volume this collection owns on the backend, as BackendVolumes."""
        raise NotImplementedError

    def forget_reads(self):
        """Drop what this instance cached from earlier reads (attachments, the VM's disks, loop
        devices), so that the next :meth:`lookup`/:meth:`check` reads the backend afresh (the
        plugin daemon's wait for another node's release re-reads with it). Default: nothing
        cached."""
        return None

    def check(self, volume, action, request=None):
        """Read-only, called while planning (check mode too): raise :class:`common.Refused` (or
        :class:`common.InUse`) when ``action`` (``create``, ``grow``, ``attach``, ``detach``,
        ``delete``) on ``volume`` (None for ``create``; ``request`` is the user's) would be
        refused by the real call. Default: storage without our ownership mark is never grown
        or deleted."""
        if action in ('grow', 'delete') and volume is not None and not volume.owned:
            raise Refused('refusing to %s %s: it was not created by this collection (no ownership mark); '
                          'adopt it with adopt_id' % (action, volume.id))

    # -- writes (each idempotent) ---------------------------------------
    def create(self, request):
        raise NotImplementedError

    def grow(self, volume, new_size):
        """Grow to ``new_size`` bytes. Shrinking is refused by the engine before this."""
        raise NotImplementedError

    def attach(self, volume):
        """Attach to this host; return the updated BackendVolume with locators."""
        raise NotImplementedError

    # -- optional batch forms: cloud backends override them to send every request first and
    #    wait for all in one polling loop (cinder); the defaults just loop ------------------
    def create_many(self, requests):
        """Create several volumes; same result as ``[create(r) for r in requests]``."""
        return [self.create(request) for request in requests]

    def attach_many(self, volumes):
        """Attach several volumes; same result as ``[attach(v) for v in volumes]``."""
        return [self.attach(volume) for volume in volumes]

    def locate(self, volume, timeout=60):
        """Return the block device path of an attached volume, size verified."""
        raise NotImplementedError

    def refresh_device(self, volume, device):
        """After a grow: make the guest see the new size (loop capacity refresh,
        SCSI rescan). Default: nothing."""
        return None

    def detach(self, volume):
        raise NotImplementedError

    def delete(self, volume):
        raise NotImplementedError

    # -- host-side hints -------------------------------------------------
    def fstab_source(self, volume, device, fs_uuid):
        """The fstab ``spec`` field that brings the volume back after a reboot."""
        return 'UUID=%s' % fs_uuid

    def fstab_options(self, volume):
        """Extra mount options the backend needs in fstab (``loop`` for loop)."""
        return []

    def close(self):
        return None

    @classmethod
    def host_devices(cls, ids):
        """``{backend id: [block devices]}`` this host shows for the backend's volumes ``ids``
        without asking the backend (volume_info's cross-check). Default: nothing known."""
        return {}


def get_backend(name, params=None):
    """Instantiate a backend by name (see :mod:`.registry`, the single list of backends)."""
    from .registry import get_backend as _get
    return _get(name, params)
