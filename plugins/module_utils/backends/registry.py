# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""THE list of backends: names, scope and capabilities, and where each implementation lives.

Rule: the single source of backend names. Everything that needs a name, a scope or a
capability asks here (the ``volume`` module's choices, the plugin config, the engine, the
inventory); the roles' argument specs (YAML) are checked against :func:`names` by a unit test.
Implementations are imported lazily (cloud SDKs are optional) by static ``from . import``
statements, so Ansible's module packer ships them. Adding a backend = one entry here + its file.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ..common import PVError

#: what a backend can do, beyond the base protocol
#:   plugin   the volume-plugin daemon can serve it
#:   move     a volume can be detached here and attached to another host (scope global)
#:   batch    create_many/attach_many are real batches (one wait for all), not loops
#:   grow     storage can be grown in place
#:   storage  the backend creates/deletes and attaches/detaches the storage itself (device: neither,
#:            so those actions are never planned nor reported for it)
CAPABILITIES = ('plugin', 'move', 'batch', 'grow', 'storage')


class BackendInfo(object):
    __slots__ = ('name', 'scope', 'capabilities', 'summary')

    def __init__(self, name, scope, capabilities, summary):
        self.name = name
        self.scope = scope
        self.capabilities = frozenset(capabilities)
        self.summary = summary

    def can(self, capability):
        return capability in self.capabilities


BACKENDS = (
    BackendInfo('loop', 'local', ('plugin', 'grow', 'storage'), 'a loop-file image on the Docker host'),
    BackendInfo('cinder', 'global', ('plugin', 'move', 'batch', 'grow', 'storage'), 'an OpenStack Cinder volume'),
    BackendInfo('vsphere', 'global', ('plugin', 'move', 'grow', 'storage'), 'a VMware vSphere virtual disk'),
    BackendInfo('device', 'local', (), 'a block device attached by someone else (found by stable links)'),
)
_BY_NAME = dict((b.name, b) for b in BACKENDS)


def names(capability=None):
    """Backend names (in the documented order), optionally only those with ``capability``."""
    return [b.name for b in BACKENDS if capability is None or b.can(capability)]


def info(name):
    try:
        return _BY_NAME[name]
    except KeyError:
        raise PVError('unknown backend %r (known: %s)' % (name, ', '.join(names())))


def scope(name):
    return info(name).scope


def _load_loop():
    from .loop import LoopBackend
    return LoopBackend


def _load_cinder():
    from .cinder import CinderBackend
    return CinderBackend


def _load_vsphere():
    from .vsphere import VSphereBackend
    return VSphereBackend


def _load_device():
    from .device import DeviceBackend
    return DeviceBackend


_LOADERS = {'loop': _load_loop, 'cinder': _load_cinder, 'vsphere': _load_vsphere, 'device': _load_device}


def backend_class(name):
    """The implementation class of backend ``name`` (imported on first use)."""
    info(name)
    return _LOADERS[name]()


def get_backend(name, params=None):
    """Instantiate backend ``name`` with its connection/config dict."""
    return backend_class(name)(params)
