# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A small vSphere client on pyvmomi: connection, task waiting, inventory lookups.

No Ansible imports (the volume-plugin daemon runs this too). Auth parameters
are those of community.vmware (``hostname``, ``username``, ``password``,
``port``, ``validate_certs``) with the same ``VMWARE_*`` environment fallbacks
(the option spec is :mod:`.spec`).

Task waiting reads ``info.state`` / ``info.result`` / ``info.error`` through
the PropertyCollector with an explicit ``pathSet`` instead of ``task.info``:
pyvmomi raises ``TypeError`` on ``task.info`` of some tasks (VirtualDiskManager,
FileManager, VStorageObjectManager on the govmomi simulator), while the
operation itself succeeded. This way works for every task.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import socket
import ssl
import traceback

try:
    from http.client import HTTPSConnection, HTTPException
    from urllib.parse import quote
except ImportError:  # pragma: no cover - Python 2
    from httplib import HTTPSConnection, HTTPException  # pylint: disable=import-error
    from urllib import quote  # pylint: disable=no-name-in-module

from .. import connpool
from ..common import AGAIN, PVError, TimedOut, poll
from .spec import DEFAULT_PORT, ENV

PYVMOMI_IMP_ERR = None
try:
    from pyVim.connect import SmartConnect, Disconnect
    from pyVmomi import vim, vmodl
    HAS_PYVMOMI = True
except ImportError:
    PYVMOMI_IMP_ERR = traceback.format_exc()
    HAS_PYVMOMI = False
    vim = vmodl = None

AUTH_KEYS = tuple(ENV)


def _to_bool(value, what):
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ('1', 'true', 'yes', 'on', 'y', 't'):
        return True
    if text in ('0', 'false', 'no', 'off', 'n', 'f'):
        return False
    raise PVError('%s must be a boolean, got %r' % (what, value))


def connection_params(params, environ=None):
    """Resolve hostname/username/password/port/validate_certs: params, then VMWARE_* env."""
    environ = os.environ if environ is None else environ
    out = {}
    for key, env in ENV.items():
        value = params.get(key)
        if value is None or value == '':
            value = environ.get(env)
        out[key] = value
    if not out['hostname']:
        raise PVError('vSphere hostname is required (option hostname or VMWARE_HOST)')
    if not out['username'] or not out['password']:
        raise PVError('vSphere username and password are required '
                      '(options username/password or VMWARE_USER/VMWARE_PASSWORD)')
    try:
        out['port'] = int(out['port'] or DEFAULT_PORT)
    except (TypeError, ValueError):
        raise PVError('vSphere port must be a number, got %r' % (out['port'],))
    out['validate_certs'] = _to_bool(True if out['validate_certs'] is None else out['validate_certs'],
                                     'validate_certs')
    return out


def fault_name(fault):
    """``FileNotFound`` for vim.fault.FileNotFound, etc."""
    name = getattr(fault, '_wsdlName', None) or type(fault).__name__
    return name.split('.')[-1]


def fault_text(fault):
    """A readable message for a vSphere fault (the simulator's ``msg`` is a Go type name)."""
    name = fault_name(fault)
    msg = getattr(fault, 'msg', None) or ''
    if msg.startswith('*types.') or msg == name:
        msg = ''
    if not msg:
        for lm in getattr(fault, 'faultMessage', None) or []:
            if getattr(lm, 'message', None):
                msg = lm.message
                break
    detail = []
    for attr in ('file', 'name', 'property', 'invalidProperty', 'deviceIndex'):
        value = getattr(fault, attr, None)
        if value not in (None, ''):
            detail.append('%s=%s' % (attr, value))
    text = name
    if msg:
        text += ': ' + msg
    if detail:
        text += ' (%s)' % ', '.join(detail)
    return text


def is_method_not_found(exc):
    if not HAS_PYVMOMI:
        return False
    return isinstance(exc, (vmodl.fault.MethodNotFound, vmodl.fault.NotImplemented,
                            vmodl.fault.NotSupported)) or \
        fault_name(exc) in ('MethodNotFound', 'NotImplemented', 'NotSupported')


class TaskError(PVError):
    def __init__(self, what, fault):
        self.fault = fault
        super(TaskError, self).__init__('%s failed: %s' % (what, fault_text(fault)))


def pool_key(conn):
    """The pool key of a vSphere login (hostname, port, username, password, validate_certs):
    holds the password, never log it."""
    return ('vsphere', connpool.freeze(conn))


def _disconnect(si):
    Disconnect(si)


class VSphere(object):
    """One connection to vCenter/ESXi.

    With the connection pool on (the plugin daemon, see :mod:`..connpool`), the pyVmomi
    ServiceInstance is taken from the pool when its session is still valid and :meth:`close`
    gives it back (unless the connection failed during the run). Only the ServiceInstance is
    pooled: this object's caches (datacenters, content) are per run.
    """

    def __init__(self, params, task_timeout=3600):
        if not HAS_PYVMOMI:
            raise PVError('the vsphere backend needs the pyvmomi Python package '
                          '(pip install pyvmomi)')
        self.conn = connection_params(params)
        self.task_timeout = task_timeout
        self.si = None
        self.content = None
        self._dc_cache = {}
        self._pool_key = None      # set when ``si`` is ours to give back to the pool
        self.broken = False        # the connection failed: do not give it back

    # -- connection --------------------------------------------------------
    def connect(self):
        if self.si is not None:
            return self
        if connpool.enabled():
            key = pool_key(self.conn)
            fresh = []

            def alive(si):
                content = si.RetrieveContent()
                if content.sessionManager.currentSession is None:
                    return False
                fresh.append(content)
                return True
            si = connpool.POOL.take(key, valid=alive)
            if si is not None:
                self.si, self.content, self._pool_key, self.broken = si, fresh[-1], key, False
                return self
            self._login()
            self._pool_key = key
            return self
        return self._login()

    def _login(self):
        c = self.conn
        where = '%s:%s' % (c['hostname'], c['port'])
        kwargs = {'disableSslCertValidation': True}
        if c['validate_certs']:
            # explicit: pyvmomi skips verification for localhost when given no context
            kwargs = {'sslContext': ssl.create_default_context()}
        try:
            self.si = SmartConnect(host=c['hostname'], user=c['username'], pwd=c['password'],
                                   port=c['port'], **kwargs)
        except vim.fault.InvalidLogin:
            raise PVError('login to vSphere at %s failed: the server rejected the user name or password (InvalidLogin)' % where)
        except ssl.SSLError as exc:
            hint = ''
            if 'CERTIFICATE_VERIFY_FAILED' in str(exc):
                hint = ' (set validate_certs: false or VMWARE_VALIDATE_CERTS=false to accept a ' \
                       'certificate that cannot be verified)'
            raise PVError('TLS error talking to vSphere at %s: %s%s' % (where, exc, hint))
        except (socket.error, OSError) as exc:
            raise PVError('cannot connect to vSphere at %s: %s' % (where, exc))
        except vmodl.MethodFault as exc:
            raise PVError('connecting to vSphere at %s failed: %s' % (where, fault_text(exc)))
        self.content = self.si.RetrieveContent()
        self.broken = False
        return self

    def close(self):
        si, key = self.si, self._pool_key
        self.si = self.content = self._pool_key = None
        self._dc_cache = {}
        if si is None:
            return
        if key is not None and not self.broken:
            connpool.POOL.give(key, si, _disconnect)
            return
        try:
            Disconnect(si)
        except Exception:  # pylint: disable=broad-except
            pass

    @property
    def api_version(self):
        return self.content.about.apiVersion

    @property
    def server_name(self):
        about = self.content.about
        return '%s %s (API %s)' % (about.name or about.fullName, about.version, about.apiVersion)

    # -- property collector --------------------------------------------------
    def props(self, objs, obj_type, paths):
        """Read ``paths`` of ``objs`` in one round trip: ``{moid: {path: value}}``."""
        if not objs:
            return {}
        pc = vmodl.query.PropertyCollector
        spec = pc.FilterSpec(
            objectSet=[pc.ObjectSpec(obj=o) for o in objs],
            propSet=[pc.PropertySpec(type=obj_type, pathSet=list(paths))])
        out = {}
        try:
            contents = self.content.propertyCollector.RetrieveContents([spec])
        except (HTTPException, socket.error, OSError):
            self.broken = True
            raise
        for oc in contents:
            out[oc.obj._moId] = dict((p.name, p.val) for p in (oc.propSet or []))
        return out

    def all_props(self, obj_type, paths, root=None):
        """Every object of ``obj_type`` under ``root`` with ``paths``: ``[(obj, {path: value})]``."""
        view = self.content.viewManager.CreateContainerView(root or self.content.rootFolder,
                                                            [obj_type], True)
        try:
            pc = vmodl.query.PropertyCollector
            spec = pc.FilterSpec(
                objectSet=[pc.ObjectSpec(obj=view, skip=True, selectSet=[
                    pc.TraversalSpec(name='v', path='view', skip=False, type=view.__class__)])],
                propSet=[pc.PropertySpec(type=obj_type, pathSet=list(paths))])
            out = []
            for oc in self.content.propertyCollector.RetrieveContents([spec]):
                out.append((oc.obj, dict((p.name, p.val) for p in (oc.propSet or []))))
            return out
        finally:
            view.DestroyView()

    # -- tasks ---------------------------------------------------------------
    def wait(self, task, what, timeout=None):
        """Wait for ``task``; return its result or raise :class:`TaskError`."""
        timeout = self.task_timeout if timeout is None else timeout
        last = [None]

        def attempt():
            info = self.props([task], vim.Task, ['info.state', 'info.error', 'info.result'])
            info = info.get(task._moId, {})
            state = last[0] = info.get('info.state')
            if state == 'success':
                return info.get('info.result')
            if state == 'error':
                raise TaskError(what, info.get('info.error'))
            return AGAIN

        def late():
            raise TimedOut('%s: vSphere task %s still %s after %ss' % (what, task._moId, last[0], timeout))
        return poll(attempt, timeout, late, interval=0.05, factor=2, max_interval=1.0)

    def call(self, what, method, *args, **kwargs):
        """Call a method that returns a task and wait for it; faults become PVError."""
        try:
            task = method(*args, **kwargs)
        except vmodl.MethodFault as exc:
            if is_method_not_found(exc):
                raise
            raise TaskError(what, exc)
        except (HTTPException, socket.error, OSError):
            self.broken = True
            raise
        return self.wait(task, what)

    # -- inventory -----------------------------------------------------------
    def datacenter(self, name=None):
        """The named datacenter, or the only one when ``name`` is empty."""
        key = name or ''
        if key in self._dc_cache:
            return self._dc_cache[key]
        dcs = self.all_props(vim.Datacenter, ['name'])
        if name:
            found = [o for o, p in dcs if p.get('name') == name]
            if not found:
                raise PVError('datacenter %r not found (have: %s)'
                              % (name, ', '.join(sorted(p.get('name') for o, p in dcs)) or 'none'))
            dc = found[0]
        else:
            if len(dcs) != 1:
                raise PVError('there are %d datacenters (%s): set datacenter'
                              % (len(dcs), ', '.join(sorted(p.get('name') for o, p in dcs))))
            dc = dcs[0][0]
        self._dc_cache[key] = dc
        return dc

    def inventory_path(self, obj):
        """``DC0`` or ``folder/DC1``: the path under the root folder."""
        parts = []
        root = self.content.rootFolder._moId
        while obj is not None and obj._moId != root:
            parts.append(obj.name)
            obj = obj.parent
        return '/'.join(reversed(parts))

    def datacenter_of(self, entity):
        obj = entity
        while obj is not None and not isinstance(obj, vim.Datacenter):
            obj = obj.parent
        if obj is None:
            raise PVError('cannot find the datacenter of %s' % entity._moId)
        return obj

    def find_vm(self, name=None, uuid=None, moid=None, datacenter=None, folder=None,
                use_instance_uuid=False):
        """Find one VM; PVError when it is missing or ambiguous."""
        if moid:
            vm = vim.VirtualMachine(moid, self.si._stub)
            try:
                vm.name  # pylint: disable=pointless-statement
            except vmodl.fault.ManagedObjectNotFound:
                raise PVError('virtual machine with moid %r not found' % moid)
            return vm
        dc = self.datacenter(datacenter) if datacenter else None
        if uuid:
            vm = self.content.searchIndex.FindByUuid(dc, uuid, True, bool(use_instance_uuid))
            if vm is None:
                raise PVError('virtual machine with %s %r not found'
                              % ('instance uuid' if use_instance_uuid else 'BIOS uuid', uuid))
            return vm
        if not name:
            raise PVError('one of VM name, uuid or moid is required')
        if folder:
            dc = dc or self.datacenter(None)
            path = folder.strip('/')
            dc_path = self.inventory_path(dc)
            if not path.startswith(dc_path + '/'):
                path = '%s/vm/%s' % (dc_path, path)
            vm = self.content.searchIndex.FindByInventoryPath('%s/%s' % (path, name))
            if vm is None or not isinstance(vm, vim.VirtualMachine):
                raise PVError('virtual machine %r not found in folder %r' % (name, path))
            return vm
        found = [o for o, p in self.all_props(vim.VirtualMachine, ['name'],
                                              root=dc.vmFolder if dc else None)
                 if p.get('name') == name]
        if not found:
            raise PVError('virtual machine %r not found%s'
                          % (name, ' in datacenter %r' % datacenter if datacenter else ''))
        if len(found) > 1:
            raise PVError('%d virtual machines are named %r (%s): set folder, uuid or moid'
                          % (len(found), name, ', '.join(o._moId for o in found)))
        return found[0]

    def find_datastore(self, name, datacenter):
        for ds in datacenter.datastore:
            if ds.name == name:
                return ds
        raise PVError('datastore %r not found in datacenter %r (have: %s)'
                      % (name, datacenter.name, ', '.join(sorted(d.name for d in datacenter.datastore))))

    # -- datastore files -----------------------------------------------------
    def search(self, datastore, folder, patterns, disk_details=False):
        """Files in ``[datastore] folder`` matching ``patterns``: ``{name: FileInfo}``.

        A missing folder is an empty result.
        """
        browser = datastore.browser
        spec = vim.host.DatastoreBrowser.SearchSpec(
            matchPattern=list(patterns),
            details=vim.host.DatastoreBrowser.FileInfo.Details(
                fileSize=True, fileType=True, modification=True))
        if disk_details:
            spec.query = [vim.host.DatastoreBrowser.VmDiskQuery(
                details=vim.host.DatastoreBrowser.VmDiskQuery.Details(
                    capacityKb=True, diskType=True, thin=True)),
                vim.host.DatastoreBrowser.Query()]
        path = '[%s] %s' % (datastore.name, folder.strip('/')) if folder else '[%s]' % datastore.name
        try:
            result = self.call('searching %s' % path, browser.SearchDatastore_Task, path, spec)
        except TaskError as exc:
            if fault_name(exc.fault) == 'FileNotFound':
                return {}
            raise
        return dict((f.path, f) for f in (result.file or []))

    def mkdir(self, path, datacenter):
        try:
            self.content.fileManager.MakeDirectory(path, datacenter, True)
        except vim.fault.FileAlreadyExists:
            pass
        except vmodl.MethodFault as exc:
            raise PVError('creating folder %s failed: %s' % (path, fault_text(exc)))

    def delete_file(self, path, datacenter):
        try:
            self.call('deleting %s' % path, self.content.fileManager.DeleteDatastoreFile_Task,
                      path, datacenter)
        except TaskError as exc:
            if fault_name(exc.fault) != 'FileNotFound':
                raise

    def _folder_path(self, path, datacenter):
        """The ``/folder`` URL path of a datastore file (vCenter/ESXi datastore HTTP access)."""
        ds, rel = split_ds_path(path)
        return '/folder/%s?dcPath=%s&dsName=%s' % (quote(rel), quote(self.inventory_path(datacenter)), quote(ds))

    def _http(self, method, path, datacenter, data=None):
        ctx = ssl.create_default_context()
        if not self.conn['validate_certs']:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        headers = {}
        cookie = getattr(self.si._stub, 'cookie', None)
        if cookie:
            headers['Cookie'] = cookie
        if data is not None:
            headers['Content-Type'] = 'application/octet-stream'
            headers['Content-Length'] = str(len(data))
        conn = HTTPSConnection(self.conn['hostname'], self.conn['port'], context=ctx, timeout=60)
        try:
            conn.request(method, self._folder_path(path, datacenter), body=data, headers=headers)
            resp = conn.getresponse()
            body = resp.read()
        except (HTTPException, socket.error, OSError) as exc:
            raise PVError('%s %s on the datastore failed: %s' % (method, path, exc))
        finally:
            conn.close()
        if resp.status == 404 and method == 'GET':
            return None
        if resp.status >= 300:
            raise PVError('%s %s on the datastore failed: HTTP %s %s' % (method, path, resp.status, resp.reason))
        return body

    def read_file(self, path, datacenter):
        """Contents of a small datastore file (bytes), None when missing."""
        return self._http('GET', path, datacenter)

    def write_file(self, path, datacenter, data):
        self._http('PUT', path, datacenter, data=data)


def split_ds_path(path):
    """``'[ds1] a/b.vmdk'`` -> ``('ds1', 'a/b.vmdk')``."""
    text = (path or '').strip()
    if not text.startswith('[') or ']' not in text:
        raise PVError('%r is not a datastore path like "[datastore1] folder/disk.vmdk"' % (path,))
    ds, rest = text[1:].split(']', 1)
    if not ds:
        raise PVError('%r names no datastore' % (path,))
    return ds, rest.strip().lstrip('/')


def ds_path(datastore, rel):
    return '[%s] %s' % (datastore, rel.strip('/'))
