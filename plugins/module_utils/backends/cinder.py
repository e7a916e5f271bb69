# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ``cinder`` backend: Cinder volumes attached to the Nova server that is the Docker host.

Parameters (the ``cinder`` dict of the ``volume`` module, the options of the
``cinder_*`` modules, or the plugin daemon's config):

``cloud``, ``auth``, ``auth_type``, ``region_name``, ``interface``, ``validate_certs``,
``ca_cert``, ``client_cert``, ``client_key``, ``api_timeout``
    Connection, as in openstack.cloud: ``openstack.connect`` reads
    ``clouds.yaml`` (``cloud``), an ``auth`` dict, or the ``OS_*`` environment.
``server``
    The Docker host's Nova server (name or id). Without it, this machine's
    instance metadata is read: the config drive (a filesystem labelled
    ``config-2``, ``openstack/latest/meta_data.json``), then the metadata
    service ``http://169.254.169.254/openstack/latest/meta_data.json``; its
    ``uuid`` is the server id.
``config_drive``, ``metadata_url``
    Those two sources (defaults above; empty: not used). The config drive is
    a block device (mounted read-only for the read) or a directory.
``volume_type``, ``availability_zone``, ``description``, ``metadata``
    Defaults for new volumes; ``volume_type``, ``availability_zone`` and
    ``description`` may also be given per volume (``backend_options``).
``force_detach`` (false), ``fencing`` (true)
    A volume attached to ANOTHER server is refused, unless ``force_detach``;
    then only when that server is SHUTOFF, unless ``fencing`` is false.
``timeout`` (300), ``retry_timeout`` (60)
    Seconds to wait for Cinder/Nova state changes; seconds to keep retrying
    5xx answers and connection errors (exponential backoff).
``guest_dev_root``
    Where this host's ``/dev`` is (tests only).

Identity and ownership: volumes we create carry the metadata
``pv_managed=persistent_volumes.docker`` and ``pv_name=<name>``, set in the
create call itself (a crash mid-create leaves no untagged volume), plus a
``pv_token`` unique per create call so a retried create finds the first one.
Lookups filter on that metadata on the server. A volume without it is never
modified, attached or deleted, unless named by id (``adopt_id``), which then
tags it. The guest device is found only by stable ids
(``/dev/disk/by-id/virtio-<id[:20]>`` ...), never by the device name Nova
reports (a hint that KVM ignores).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import subprocess
import tempfile
import time
import traceback
import uuid as uuidlib
from concurrent.futures import ThreadPoolExecutor

from .base import Backend, BackendVolume, register
from ..common import PVError, human_size, validate_name
from ..host import devices
try:
    import openstack
    from openstack import exceptions as os_exc
    HAS_OPENSTACKSDK = True
    OPENSTACKSDK_IMPORT_ERROR = None
except ImportError:  # pragma: no cover - depends on the environment
    openstack = None
    os_exc = None
    HAS_OPENSTACKSDK = False
    OPENSTACKSDK_IMPORT_ERROR = traceback.format_exc()

try:
    from keystoneauth1 import exceptions as ksa_exc
except ImportError:  # pragma: no cover
    ksa_exc = None

GIB = 1024 ** 3
OWNER_KEY = 'pv_managed'
OWNER_VALUE = 'persistent_volumes.docker'
NAME_KEY = 'pv_name'
TOKEN_KEY = 'pv_token'
RESERVED_KEYS = (OWNER_KEY, NAME_KEY, TOKEN_KEY)
TRANSIENT_STATUS = (500, 502, 503, 504)
CONFIG_DRIVE_LABEL = '/dev/disk/by-label/config-2'
METADATA_URL = 'http://169.254.169.254/openstack/latest/meta_data.json'

#: connection keys, as in openstack.cloud (module option name -> openstack.connect kwarg)
AUTH_OPTIONS = {
    'cloud': 'cloud', 'auth': 'auth', 'auth_type': 'auth_type', 'region_name': 'region_name',
    'interface': 'interface', 'validate_certs': 'verify', 'ca_cert': 'cacert',
    'client_cert': 'cert', 'client_key': 'key', 'api_timeout': 'api_timeout',
}


def argument_spec():
    """The connection options of the cinder_* modules (plain dict: no Ansible import here)."""
    return dict(
        cloud=dict(type='raw'),
        auth=dict(type='dict', no_log=True),
        auth_type=dict(type='str'),
        region_name=dict(type='str'),
        interface=dict(type='str', default='public', choices=['admin', 'internal', 'public'],
                       aliases=['endpoint_type']),
        validate_certs=dict(type='bool', aliases=['verify']),
        ca_cert=dict(type='str', aliases=['cacert']),
        client_cert=dict(type='str', aliases=['cert']),
        client_key=dict(type='str', no_log=False, aliases=['key']),
        api_timeout=dict(type='int'),
        retry_timeout=dict(type='int', default=60),
    )


def locators(volume_id, dev_root='/dev'):
    """Stable links under which a guest may show the Cinder volume ``volume_id``.

    virtio-blk serials are the id cut to 20 characters; virtio-scsi shows the
    QEMU HARDDISK serial; some hypervisors give a WWN made of the id.
    """
    byid = os.path.join(dev_root, 'disk', 'by-id')
    short = volume_id[:20]
    names = ['virtio-%s' % short, 'virtio-%s' % volume_id,
             'scsi-0QEMU_QEMU_HARDDISK_%s' % short, 'scsi-0QEMU_QEMU_HARDDISK_%s' % volume_id,
             'wwn-0x%s' % volume_id.replace('-', '')]
    out = []
    for name in names:
        path = os.path.join(byid, name)
        if path not in out:
            out.append(path)
    return out


def size_to_gib(size, what='size'):
    """Bytes -> whole GiB; Cinder sizes are whole GiB and we never round silently."""
    if size is None:
        return None
    if size % GIB:
        raise PVError('%s %s is not a whole number of GiB (Cinder volumes are sized in GiB)'
                      % (what, human_size(size)))
    return size // GIB


def is_transient(exc):
    """5xx answers and connection-level failures are worth a retry."""
    if os_exc is not None and isinstance(exc, os_exc.HttpException):
        return getattr(exc, 'status_code', None) in TRANSIENT_STATUS
    if ksa_exc is not None and isinstance(exc, (ksa_exc.ConnectFailure, ksa_exc.ConnectTimeout,
                                                ksa_exc.RetriableConnectionFailure)):
        return True
    if ksa_exc is not None and isinstance(exc, ksa_exc.HttpError):
        return getattr(exc, 'http_status', None) in TRANSIENT_STATUS
    name = type(exc).__name__
    return name in ('ConnectionError', 'ConnectTimeout', 'ReadTimeout', 'ConnectFailure',
                    'ServiceDiscoveryException')


def is_timeout(exc):
    """A timed-out request may still be carried out by the server (ambiguous outcome)."""
    if ksa_exc is not None and isinstance(exc, ksa_exc.ConnectTimeout):
        return True
    return 'Timeout' in type(exc).__name__


def is_not_found(exc):
    return os_exc is not None and isinstance(exc, os_exc.NotFoundException)


def describe_error(exc):
    text = str(exc).strip() or type(exc).__name__
    details = getattr(exc, 'details', None)
    if details and details not in text:
        text = '%s (%s)' % (text, details)
    return text


def read_instance_uuid(config_drive=CONFIG_DRIVE_LABEL, metadata_url=METADATA_URL, timeout=3):
    """This machine's Nova server id from the config drive or the metadata service, or None."""
    if config_drive and os.path.exists(config_drive):
        if os.path.isdir(config_drive):
            found = _read_meta_json(os.path.join(config_drive, 'openstack', 'latest', 'meta_data.json'))
            if found:
                return found
        else:
            mnt = tempfile.mkdtemp(prefix='pv-config-drive-')
            try:
                proc = subprocess.run(['mount', '-o', 'ro', config_drive, mnt], stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, check=False)
                if proc.returncode == 0:
                    try:
                        found = _read_meta_json(os.path.join(mnt, 'openstack', 'latest', 'meta_data.json'))
                    finally:
                        subprocess.run(['umount', mnt], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                       check=False)
                    if found:
                        return found
            finally:
                try:
                    os.rmdir(mnt)
                except OSError:
                    pass
    if metadata_url:
        try:
            from urllib.parse import urlsplit
            import http.client
            parts = urlsplit(metadata_url)
            conn = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=timeout)
            try:
                conn.request('GET', parts.path or '/')
                resp = conn.getresponse()
                if resp.status != 200:
                    return None
                data = json.loads(resp.read().decode('utf-8'))
            finally:
                conn.close()
            return data.get('uuid')
        except Exception:  # pylint: disable=broad-except
            return None
    return None


def _read_meta_json(path):
    try:
        with open(path) as handle:
            return json.load(handle).get('uuid')
    except (IOError, OSError, ValueError):
        return None


@register
class CinderBackend(Backend):
    name = 'cinder'
    scope = 'global'
    volume_options = ('volume_type', 'availability_zone', 'description')

    def __init__(self, params=None, conn=None):
        super(CinderBackend, self).__init__(params)
        if not HAS_OPENSTACKSDK and conn is None:
            raise PVError('the cinder backend needs the openstacksdk Python package (pip install openstacksdk)')
        p = self.params
        self.dev_root = p.get('guest_dev_root') or '/dev'
        self.timeout = int(p.get('timeout') or 300)
        self.retry_timeout = float(p.get('retry_timeout') if p.get('retry_timeout') is not None else 60)
        self.force_detach = bool(p.get('force_detach'))
        self.fencing = p.get('fencing', True) is not False
        self.wait = p.get('wait', True) is not False
        self.defaults = dict((k, p.get(k)) for k in ('volume_type', 'availability_zone', 'description'))
        self.extra_metadata = dict((str(k), str(v)) for k, v in (p.get('metadata') or {}).items())
        for key in RESERVED_KEYS:
            if key in self.extra_metadata:
                raise PVError('metadata key %s is reserved for ownership marks' % key)
        self._conn = conn
        self._server = None
        self._retried_tokens = set()
        self.warnings = []

    # -- connection ------------------------------------------------------------
    @property
    def conn(self):
        if self._conn is None:
            kwargs = {}
            for opt, kwarg in AUTH_OPTIONS.items():
                value = self.params.get(opt)
                if value is not None:
                    kwargs[kwarg] = value
            if isinstance(kwargs.get('cloud'), dict):
                # a whole cloud config given inline (as openstack.cloud allows)
                inline = kwargs.pop('cloud')
                for key, value in inline.items():
                    kwargs.setdefault(key, value)
            try:
                self._conn = openstack.connect(**kwargs)
            except Exception as exc:  # pylint: disable=broad-except
                raise PVError('cannot configure the OpenStack connection: %s' % describe_error(exc))
        return self._conn

    def close(self):
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:  # pylint: disable=broad-except
                pass
            self._conn = None

    def call(self, what, func, *args, **kwargs):
        """Run an API call; retry 5xx and connection errors with backoff, map errors to PVError."""
        deadline = time.monotonic() + self.retry_timeout
        delay = 0.5
        while True:
            try:
                return func(*args, **kwargs)
            except PVError:
                raise
            except Exception as exc:  # pylint: disable=broad-except
                if is_not_found(exc):
                    raise
                if is_transient(exc) and time.monotonic() + delay < deadline:
                    time.sleep(delay)
                    delay = min(delay * 2, 5.0)
                    continue
                hint = ' (gave up retrying after %ss)' % int(self.retry_timeout) if is_transient(exc) else ''
                raise PVError('OpenStack: %s failed: %s%s' % (what, describe_error(exc), hint))

    # -- the Docker host's server ------------------------------------------------
    def server(self):
        if self._server is None:
            ref = self.params.get('server')
            if not ref:
                config_drive = self.params.get('config_drive', CONFIG_DRIVE_LABEL)
                metadata_url = self.params.get('metadata_url', METADATA_URL)
                ref = read_instance_uuid(config_drive, metadata_url)
                if not ref:
                    raise PVError('cannot tell which Nova server this host is: set the server option '
                                  '(name or id); no config drive (%s) or metadata service (%s) answered'
                                  % (config_drive or 'none', metadata_url or 'none'))
            self._server = self.find_server(ref)
        return self._server

    def check_host(self):
        """The engine attaches to and detaches from this host: know which server it is before anything."""
        self.server()

    def find_server(self, ref):
        try:
            server = self.call('finding server %s' % ref, self.conn.compute.find_server, ref,
                               ignore_missing=True)
        except PVError:
            raise
        except Exception as exc:  # pylint: disable=broad-except
            if os_exc is not None and isinstance(exc, os_exc.DuplicateResource):
                raise PVError('more than one Nova server is named %s: give its id' % ref)
            raise
        if server is None:
            raise PVError('Nova server %s not found' % ref)
        return server

    def get_server(self, server_id):
        try:
            return self.call('reading server %s' % server_id, self.conn.compute.get_server, server_id)
        except Exception as exc:  # pylint: disable=broad-except
            if is_not_found(exc):
                return None
            raise

    # -- Cinder reads -------------------------------------------------------------
    def _list_owned(self, name=None):
        query = {OWNER_KEY: OWNER_VALUE}
        if name is not None:
            query[NAME_KEY] = name
        # the SDK sends ``metadata={...}`` as ``?metadata=k``; ``properties`` goes through as JSON
        return list(self.call('listing volumes', lambda: list(self.conn.block_storage.volumes(
            details=True, properties=json.dumps(query)))))

    def _get(self, volume_id):
        try:
            return self.call('reading volume %s' % volume_id, self.conn.block_storage.get_volume, volume_id)
        except Exception as exc:  # pylint: disable=broad-except
            if is_not_found(exc):
                return None
            raise

    def to_backend_volume(self, raw, name=None, adopted=False):
        meta = dict(raw.metadata or {})
        owned = meta.get(OWNER_KEY) == OWNER_VALUE
        attachments = list(raw.attachments or [])
        servers = [a.get('server_id') for a in attachments if a.get('server_id')]
        here = bool(servers) and self._server_id_or_none() in servers
        return BackendVolume(
            name=name or meta.get(NAME_KEY) or raw.name,
            id=raw.id,
            size=int(raw.size or 0) * GIB,
            attached_here=here,
            attached_to=servers[0] if servers else None,
            locators=locators(raw.id, self.dev_root),
            owned=owned or adopted,
            extra={
                'status': raw.status,
                'volume_type': raw.volume_type,
                'availability_zone': raw.availability_zone,
                'description': raw.description,
                'metadata': meta,
                'display_name': raw.name,
                'attachments': [dict(server_id=a.get('server_id'), attachment_id=a.get('attachment_id'),
                                     device=a.get('device')) for a in attachments],
                'attached_servers': servers,
                'adopted': bool(adopted and not owned),
                'multiattach': bool(getattr(raw, 'is_multiattach', False)),
            })

    def lookup(self, requests):
        out = {}
        by_name = {}
        need_list = [r for r in requests if not r.adopt_id]
        if need_list:
            for raw in self._list_owned():
                key = (raw.metadata or {}).get(NAME_KEY)
                by_name.setdefault(key, []).append(raw)
        for req in requests:
            if req.adopt_id:
                raw = self._get(req.adopt_id)
                if raw is None:
                    raise PVError('volume %s: Cinder volume %s (adopt_id) does not exist' % (req.name, req.adopt_id))
                meta = raw.metadata or {}
                if meta.get(OWNER_KEY) == OWNER_VALUE and meta.get(NAME_KEY) not in (None, req.name):
                    raise PVError('volume %s: Cinder volume %s already belongs to volume %s'
                                  % (req.name, req.adopt_id, meta.get(NAME_KEY)))
                out[req.name] = self.to_backend_volume(raw, req.name, adopted=True)
                continue
            found = by_name.get(req.name) or []
            found = [v for v in found if v.status not in ('deleting', 'error_deleting')]
            if len(found) > 1:
                raise PVError('volume %s: %d Cinder volumes carry our mark for this name (%s); '
                              'delete the extra ones or adopt one by id'
                              % (req.name, len(found), ', '.join(v.id for v in found)))
            if found:
                out[req.name] = self.to_backend_volume(found[0], req.name)
        return out

    def list_volumes(self):
        return [self.to_backend_volume(raw) for raw in self._list_owned()]

    # -- create ---------------------------------------------------------------------
    def _options(self, request):
        opts = dict(self.defaults)
        for key, value in (request.options or {}).items():
            if key not in self.volume_options and key != 'metadata':
                raise PVError('volume %s: unknown cinder option %r (known: %s)'
                              % (request.name, key, ', '.join(self.volume_options + ('metadata',))))
            if value is not None:
                opts[key] = value
        return opts

    def _create_body(self, request, token):
        validate_name(request.name)
        size_gb = size_to_gib(request.size, 'volume %s: size' % request.name)
        opts = self._options(request)
        meta = dict(self.extra_metadata)
        for key, value in (opts.pop('metadata', None) or {}).items():
            if key in RESERVED_KEYS:
                raise PVError('volume %s: metadata key %s is reserved' % (request.name, key))
            meta[str(key)] = str(value)
        meta.update({OWNER_KEY: OWNER_VALUE, NAME_KEY: request.name, TOKEN_KEY: token})
        body = dict(name=request.name, size=size_gb, metadata=meta)
        for key in ('volume_type', 'availability_zone', 'description'):
            if opts.get(key):
                body[key] = opts[key]
        return body

    def _post_create(self, request):
        """POST one create; a failed POST is checked by token before retrying (no duplicates)."""
        token = uuidlib.uuid4().hex
        body = self._create_body(request, token)
        deadline = time.monotonic() + self.retry_timeout
        delay = 0.5
        while True:
            try:
                return self.conn.block_storage.create_volume(**body)
            except Exception as exc:  # pylint: disable=broad-except
                self._retried_tokens.add(token)
                if not is_transient(exc):
                    raise PVError('volume %s: OpenStack: creating the Cinder volume failed: %s'
                                  % (request.name, describe_error(exc)))
                # did it go through anyway? (the answer may be what failed). After a timeout
                # the request may still be on its way: look for it a while before POSTing again.
                patience = 0
                if is_timeout(exc):
                    patience = max(5.0, 2.0 * float(self.params.get('api_timeout') or 0))
                    patience = min(patience, max(0.0, deadline - time.monotonic()))
                look_until = time.monotonic() + patience
                while True:
                    try:
                        for raw in self._list_owned(request.name):
                            if (raw.metadata or {}).get(TOKEN_KEY) == token:
                                return raw
                    except PVError:
                        pass
                    if time.monotonic() >= look_until:
                        break
                    time.sleep(0.5)
                if time.monotonic() + delay >= deadline:
                    raise PVError('volume %s: OpenStack: creating the Cinder volume failed: %s '
                                  '(gave up retrying after %ss)'
                                  % (request.name, describe_error(exc), int(self.retry_timeout)))
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

    def create(self, request):
        return self.create_many([request])[0]

    def create_many(self, requests):
        """POST every create (a few in parallel), then wait for all in one polling loop."""
        if not requests:
            return []
        for req in requests:
            self._create_body(req, 'check')          # validate everything before any POST
        with ThreadPoolExecutor(max_workers=min(8, len(requests))) as pool:
            futures = [pool.submit(self._post_create, req) for req in requests]
            created, errors = [], []
            for req, fut in zip(requests, futures):
                try:
                    created.append(fut.result())
                except PVError as exc:
                    created.append(None)
                    errors.append(str(exc))
        done = self.wait_status([r for r in created if r is not None], ('available',),
                                'to become available')
        self._drop_retry_duplicates(requests, created)
        if errors:
            raise PVError('; '.join(errors))
        out = []
        for req, raw in zip(requests, created):
            vol = self.to_backend_volume(done[raw.id], req.name)
            vol.extra['fresh'] = True
            out.append(vol)
        return out

    def _drop_retry_duplicates(self, requests, created):
        """A POST that timed out may still have been carried out after we retried it: two volumes
        with the same create token. Both are ours and brand new; keep the one we wait on."""
        for req, raw in zip(requests, created):
            if raw is None:
                continue
            token = (raw.metadata or {}).get(TOKEN_KEY)
            if token not in self._retried_tokens:
                continue
            for other in self._list_owned(req.name):
                if other.id != raw.id and (other.metadata or {}).get(TOKEN_KEY) == token \
                        and not other.attachments:
                    self.warnings.append('volume %s: removing duplicate %s made by a retried create'
                                         % (req.name, other.id))
                    try:
                        self.call('deleting duplicate volume %s' % other.id,
                                  self.conn.block_storage.delete_volume, other.id)
                    except Exception:  # pylint: disable=broad-except
                        pass

    def wait_status(self, raws, wanted, what, timeout=None, check=None, on_done=None):
        """Poll until every volume has a status in ``wanted`` (and ``check(raw)`` holds).

        One list call per round for all of them; returns ``{id: raw}``. ``on_done(raw)`` runs
        for each volume as soon as it gets there (pipelining: the next step need not wait for
        the slowest volume).
        """
        timeout = timeout or self.timeout
        if not self.wait:
            return dict((r.id, self._get(r.id) or r) for r in raws)
        pending = dict((r.id, r) for r in raws)
        done = {}
        deadline = time.monotonic() + timeout
        interval = 0.3
        while pending:
            if len(pending) > 1:
                # one call for all of ours (server-side filter), single reads for any other
                current = dict((r.id, r) for r in self._list_owned() if r.id in pending)
            else:
                current = {}
            for vid in pending:
                if vid not in current:
                    raw = self._get(vid)
                    if raw is not None:
                        current[vid] = raw
            for vid in list(pending):
                raw = current.get(vid)
                if raw is None:
                    raise PVError('Cinder volume %s disappeared while waiting for it %s' % (vid, what))
                status = raw.status
                if status in wanted and (check is None or check(raw)):
                    done[vid] = raw
                    del pending[vid]
                    if on_done is not None:
                        on_done(raw)
                elif status in ('error', 'error_extending', 'error_deleting', 'error_restoring'):
                    raise PVError('Cinder volume %s (%s) went to status %s while waiting for it %s'
                                  % (vid, (raw.metadata or {}).get(NAME_KEY) or raw.name, status, what))
            if not pending:
                break
            if time.monotonic() > deadline:
                raise PVError('timed out after %ss waiting for Cinder volume(s) %s %s (status: %s)'
                              % (int(timeout), ', '.join(sorted(pending)), what,
                                 ', '.join(sorted(set(current[v].status for v in pending if v in current)))))
            time.sleep(interval)
            # one list call a second at most: cheap for the API, and a batch of attaches (which
            # Nova carries out one after the other) is seen finished within a second
            interval = min(interval * 1.5, 1.0)
        return done

    # -- ownership / adoption ------------------------------------------------------------
    def _ensure_ours(self, volume, action):
        if volume.owned and not volume.extra.get('adopted'):
            return
        if volume.extra.get('adopted'):
            self.call('tagging volume %s' % volume.id, self.conn.block_storage.set_volume_metadata,
                      volume.id, **{OWNER_KEY: OWNER_VALUE, NAME_KEY: volume.name})
            volume.extra['adopted'] = False
            volume.owned = True
            return
        raise PVError('Cinder volume %s (%s) was not created by this collection; refusing to %s it '
                      '(adopt it explicitly by id)' % (volume.id, volume.extra.get('display_name'), action))

    # -- grow -----------------------------------------------------------------------------
    def grow(self, volume, new_size):
        new_gb = size_to_gib(new_size, 'volume %s: size' % volume.name)
        cur_gb = volume.size // GIB
        if new_gb < cur_gb:
            raise PVError('volume %s: refusing to shrink from %s to %s (Cinder volumes never shrink)'
                          % (volume.name, human_size(volume.size), human_size(new_size)))
        if new_gb == cur_gb:
            return volume
        self._ensure_ours(volume, 'grow')
        attached = volume.extra.get('attached_servers') or []
        before = {}
        for sid in attached:
            before[sid] = self._extend_actions(sid)
        status = volume.extra.get('status') or 'available'
        self.call('extending volume %s to %s GiB' % (volume.name, new_gb),
                  self.conn.block_storage.extend_volume, volume.id, new_gb)
        wanted = ('in-use',) if attached else ('available',)
        if status not in ('available', 'in-use'):
            wanted = ('available', 'in-use')

        raw = self._get(volume.id)
        done = self.wait_status([raw], wanted, 'to be extended to %s GiB' % new_gb,
                                check=lambda r: int(r.size) == new_gb)
        # Nova tells the guest through an instance action; wait for it (detaching before
        # it finished makes nova-compute fail with BDMNotFound)
        for sid in attached:
            self._wait_extend_action(sid, before[sid])
        return self.to_backend_volume(done[volume.id], volume.name)

    def _extend_actions(self, server_id):
        try:
            return set(a.request_id for a in self.call(
                'listing server actions', lambda: list(self.conn.compute.server_actions(server_id)))
                if a.action == 'extend_volume')
        except PVError:
            return set()

    def _wait_extend_action(self, server_id, seen, timeout=60):
        deadline = time.monotonic() + min(timeout, self.timeout)
        while time.monotonic() < deadline:
            new = self._extend_actions(server_id) - seen
            for request_id in new:
                action = self.call('reading server action', self.conn.compute.get_server_action,
                                   request_id, server_id)
                events = action.events or []
                if events and all(e.get('finish_time') for e in events):
                    failed = [e for e in events if (e.get('result') or '').lower() == 'error']
                    if failed:
                        self.warnings.append('Nova reported an error extending the volume on server %s: %s'
                                             % (server_id, failed[0].get('event')))
                    return True
            time.sleep(0.5)
        self.warnings.append('Nova did not report the extend_volume action on server %s within %ss; '
                             'the guest may see the new size late' % (server_id, int(min(timeout, self.timeout))))
        return False

    # -- attach / detach -----------------------------------------------------------------
    def _check_foreign_attachments(self, volume, server):
        others = [sid for sid in volume.extra.get('attached_servers') or [] if sid != server.id]
        if not others:
            return []
        if not self.force_detach:
            names = []
            for sid in others:
                srv = self.get_server(sid)
                names.append('%s (%s, %s)' % (srv.name if srv else '?', sid, srv.status if srv else 'gone'))
            raise PVError('volume %s (%s) is attached to another server: %s; refusing to attach it to %s '
                          '(set force_detach: true to take it over; the other server must be SHUTOFF)'
                          % (volume.name, volume.id, ', '.join(names), server.name))
        for sid in others:
            srv = self.get_server(sid)
            if srv is not None and self.fencing and srv.status != 'SHUTOFF':
                raise PVError('volume %s (%s) is attached to server %s (%s) which is %s, not SHUTOFF: '
                              'refusing to force-detach it from a running server (fencing); stop that '
                              'server first, or set fencing: false if you are sure it no longer writes'
                              % (volume.name, volume.id, srv.name, sid, srv.status))
        return others

    def attach(self, volume):
        return self.attach_many([volume])[0]

    def attach_many(self, volumes, server=None):
        """Attach several volumes to ``server`` (default: this host's); wait for all in one loop."""
        server = server or self.server()
        todo = []
        out = {}
        for vol in volumes:
            if server.id in (vol.extra.get('attached_servers') or []):
                vol.attached_here = server.id == self._server_id_or_none()
                out[vol.id] = vol
                continue
            self._ensure_ours(vol, 'attach')
            others = self._check_foreign_attachments(vol, server)
            todo.append((vol, others))
        # force-detach from SHUTOFF servers first, then wait for available
        detached = []
        for vol, others in todo:
            for sid in others:
                self._delete_attachment(sid, vol.id)
            if others:
                detached.append(vol)
        if detached:
            self.wait_status([self._get(v.id) for v in detached], ('available',), 'to be detached')
            for vol, others in todo:
                for sid in others:
                    self._wait_nova_detached(sid, [vol.id])
        # The POSTs go out in parallel: nova-compute carries out the attaches of one server one after
        # the other (instance lock) whatever we do, but with every request queued there it never idles
        # between two of them (measured here: 10 attaches 32-35 s instead of 36-40 s one POST after the
        # other); each POST still answers for itself, so a refused attach is reported. Volumes still
        # being created are attached each as soon as it is available (create and attach overlap). Then
        # ONE wait for all of them.
        pending_create = [v for v, _others in todo if v.extra.get('status') not in ('available', 'in-use')]
        errors = []
        if todo:
            # connect once, before the threads share the connection
            self.conn  # pylint: disable=pointless-statement
            with ThreadPoolExecutor(max_workers=min(8, len(todo))) as pool:
                futures = []
                for vol, _others in todo:
                    if vol not in pending_create:
                        futures.append(pool.submit(self._post_attachment, server, vol))
                if pending_create:
                    by_id = dict((v.id, v) for v in pending_create)
                    try:
                        self.wait_status([self._get(v.id) for v in pending_create], ('available',),
                                         'to become available',
                                         on_done=lambda raw: futures.append(
                                             pool.submit(self._post_attachment, server, by_id[raw.id])))
                    except PVError as exc:
                        errors.append(str(exc))
                for fut in futures:
                    try:
                        fut.result()
                    except PVError as exc:
                        errors.append(str(exc))
        if errors:
            raise PVError('; '.join(errors))
        if todo:
            done = self.wait_status(
                [self._get(v.id) for v, _others in todo], ('in-use',), 'to be attached to %s' % server.name,
                check=lambda r: server.id in [a.get('server_id') for a in (r.attachments or [])])
            for vol, _others in todo:
                new = self.to_backend_volume(done[vol.id], vol.name)
                new.attached_here = server.id == self._server_id_or_none()
                new.extra['fresh'] = vol.extra.get('fresh', False)
                out[vol.id] = new
        return [out[v.id] for v in volumes]

    def _server_id_or_none(self):
        if self._server is not None:
            return self._server.id
        if self.params.get('server') or self.params.get('config_drive') or self.params.get('metadata_url'):
            try:
                return self.server().id
            except PVError:
                return None
        return None

    def _post_attachment(self, server, vol):
        deadline = time.monotonic() + self.retry_timeout
        delay = 0.5
        while True:
            try:
                return self.conn.compute.create_volume_attachment(server, volume_id=vol.id)
            except Exception as exc:  # pylint: disable=broad-except
                # did it go through anyway? then it is reserved/attaching/in-use for this server
                raw = self._get(vol.id)
                if raw is not None and (raw.status in ('attaching', 'reserved') or server.id in [
                        a.get('server_id') for a in (raw.attachments or [])]):
                    return None
                if not is_transient(exc) or time.monotonic() + delay >= deadline:
                    raise PVError('volume %s: OpenStack: attaching Cinder volume %s to server %s failed: %s'
                                  % (vol.name, vol.id, server.name, describe_error(exc)))
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _delete_attachment(self, server_id, volume_id):
        try:
            self.call('detaching volume %s from server %s' % (volume_id, server_id),
                      self.conn.compute.delete_volume_attachment, server_id, volume_id)
        except Exception as exc:  # pylint: disable=broad-except
            if not is_not_found(exc):
                raise

    def locate(self, volume, timeout=60):
        link, real = devices.wait_for_device(volume.locators or locators(volume.id, self.dev_root),
                                             volume.size, timeout, what='Cinder volume %s (%s)'
                                             % (volume.name, volume.id))
        return real

    def refresh_device(self, volume, device):
        """virtio-blk guests see a new capacity by themselves; SCSI disks need a rescan."""
        if not device:
            return None
        base = os.path.basename(os.path.realpath(device))
        rescan = '/sys/class/block/%s/device/rescan' % base
        if os.path.exists(rescan):
            try:
                with open(rescan, 'w') as handle:
                    handle.write('1')
            except (IOError, OSError):
                pass
        return None

    def detach(self, volume, server=None):
        """Detach from ``server`` (default: this host's). No-op when not attached there."""
        return self.detach_many([volume], server)[0]

    def detach_many(self, volumes, server=None):
        server_id = server.id if server is not None else self.server().id
        todo = []
        for vol in volumes:
            if server_id in (vol.extra.get('attached_servers') or []):
                self._ensure_ours(vol, 'detach')
                self._delete_attachment(server_id, vol.id)
                todo.append(vol)
        out = dict((v.id, v) for v in volumes)
        if todo:
            done = self.wait_status(
                [self._get(v.id) for v in todo], ('available', 'in-use'), 'to be detached',
                check=lambda r: server_id not in [a.get('server_id') for a in (r.attachments or [])]
                and r.status != 'detaching')
            self._wait_nova_detached(server_id, [v.id for v in todo])
            for vol in todo:
                out[vol.id] = self.to_backend_volume(done[vol.id], vol.name)
        return [out[v.id] for v in volumes]

    def _wait_nova_detached(self, server_id, volume_ids):
        """Cinder says available a moment before Nova drops its block device mapping; a new
        attach in between is refused ("already attached"). Wait for Nova too."""
        if not self.wait:
            return
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                listed = set(a.volume_id for a in self.call(
                    'listing attachments of server %s' % server_id,
                    lambda: list(self.conn.compute.volume_attachments(server_id))))
            except Exception as exc:  # pylint: disable=broad-except
                if is_not_found(exc):
                    return
                raise
            if not listed.intersection(volume_ids):
                return
            if time.monotonic() > deadline:
                raise PVError('timed out after %ss waiting for Nova to detach volume(s) %s from server %s'
                              % (self.timeout, ', '.join(sorted(listed.intersection(volume_ids))), server_id))
            time.sleep(0.3)

    def detach_all(self, volume):
        """Detach from every server it is attached to (``state: absent`` with ``detach: true``)."""
        servers = list(volume.extra.get('attached_servers') or [])
        if not servers:
            return volume
        self._ensure_ours(volume, 'detach')
        for sid in servers:
            self._delete_attachment(sid, volume.id)
        done = self.wait_status([self._get(volume.id)], ('available',), 'to be detached')
        for sid in servers:
            self._wait_nova_detached(sid, [volume.id])
        return self.to_backend_volume(done[volume.id], volume.name)

    # -- delete ---------------------------------------------------------------------------
    def delete(self, volume):
        return self.delete_many([volume])

    def delete_many(self, volumes):
        fresh = []
        for vol in volumes:
            self._ensure_ours(vol, 'delete')
            raw = self._get(vol.id)            # the caller's copy may predate a detach
            if raw is None:
                continue
            vol = self.to_backend_volume(raw, vol.name)
            fresh.append(vol)
            if vol.extra.get('attached_servers'):
                raise PVError('volume %s (%s) is still attached to server(s) %s; detach it first'
                              % (vol.name, vol.id, ', '.join(vol.extra['attached_servers'])))
        volumes = fresh
        for vol in volumes:
            try:
                self.call('deleting volume %s' % vol.id, self.conn.block_storage.delete_volume, vol.id)
            except Exception as exc:  # pylint: disable=broad-except
                if not is_not_found(exc):
                    raise
        deadline = time.monotonic() + self.timeout
        pending = set(v.id for v in volumes)
        while pending:
            for vid in list(pending):
                raw = self._get(vid)
                if raw is None:
                    pending.discard(vid)
                elif raw.status in ('error_deleting',):
                    raise PVError('Cinder volume %s failed to delete (status error_deleting)' % vid)
            if not pending:
                break
            if time.monotonic() > deadline:
                raise PVError('timed out after %ss waiting for Cinder volume(s) %s to be deleted'
                              % (self.timeout, ', '.join(sorted(pending))))
            time.sleep(0.5)
        return None

    # -- updates (cinder_volume module) -------------------------------------------------
    def update(self, volume, description=None, metadata=None):
        """Set description / metadata keys on one of our volumes; returns what changed."""
        self._ensure_ours(volume, 'update')
        if description is not None and description != (volume.extra.get('description') or ''):
            self.call('updating volume %s' % volume.id, self.conn.block_storage.update_volume,
                      volume.id, description=description)
        if metadata:
            self.call('setting metadata on volume %s' % volume.id,
                      self.conn.block_storage.set_volume_metadata, volume.id, **metadata)
        raw = self._get(volume.id)
        return self.to_backend_volume(raw, volume.name)

    def fstab_source(self, volume, device, fs_uuid):
        return 'UUID=%s' % fs_uuid

    def fstab_options(self, volume):
        # the volume may be missing after a reboot (detached meanwhile): do not block the boot
        return ['nofail']


# ---------------------------------------------------------------------------------------------
# What the cinder_volume and cinder_attachment modules do (no Ansible here: plain dicts in/out)
# ---------------------------------------------------------------------------------------------

def parse_gib(value, what='size'):
    """A Cinder size: a bare number means GiB (as in openstack.cloud); a unit must give whole GiB."""
    if value is None or value == '':
        return None
    from ..common import parse_size
    text = str(value).strip()
    if text.isdigit():
        gib = int(text)
        if gib <= 0:
            raise PVError('%s must be at least 1 (GiB)' % what)
        return gib * GIB
    size = parse_size(text, what)
    size_to_gib(size, what)
    return size


def volume_result(vol, actions=None):
    """The public record of one volume (sizes in GiB as Cinder shows them, plus bytes)."""
    if vol is None:
        return None
    extra = vol.extra
    return {
        'id': vol.id,
        'name': vol.name,
        'display_name': extra.get('display_name'),
        'size': vol.size // GIB,
        'size_bytes': vol.size,
        'status': extra.get('status'),
        'volume_type': extra.get('volume_type'),
        'availability_zone': extra.get('availability_zone'),
        'description': extra.get('description'),
        'metadata': extra.get('metadata') or {},
        'owned': bool(vol.owned and not extra.get('adopted')),
        'attachments': extra.get('attachments') or [],
        'locators': list(vol.locators),
        'actions': list(actions or []),
    }


def _diff_view(vol):
    if vol is None:
        return {'state': 'absent'}
    return {'state': 'present', 'id': vol.id, 'size': '%dGiB' % (vol.size // GIB),
            'description': vol.extra.get('description') or '',
            'metadata': dict((k, v) for k, v in (vol.extra.get('metadata') or {}).items()
                             if k != TOKEN_KEY),
            'attached_to': list(vol.extra.get('attached_servers') or [])}


def ensure_volumes(backend, specs, check_mode=False):
    """Make Cinder volumes match ``specs`` (dicts: name, id, state, size (bytes), volume_type,
    availability_zone, description, metadata, detach). Plans everything before changing anything.

    Returns ``(records, changed, diff)``.
    """
    from .base import VolumeRequest
    seen = set()
    requests = []
    for spec in specs:
        validate_name(spec['name'])
        if spec['name'] in seen:
            raise PVError('volume %s is listed twice' % spec['name'])
        seen.add(spec['name'])
        for key in RESERVED_KEYS:
            if key in (spec.get('metadata') or {}):
                raise PVError('volume %s: metadata key %s is reserved for ownership marks' % (spec['name'], key))
        if spec.get('size') is not None:
            size_to_gib(spec['size'], 'volume %s: size' % spec['name'])
        options = dict((k, spec.get(k)) for k in ('volume_type', 'availability_zone', 'description')
                       if spec.get(k) is not None)
        if spec.get('metadata'):
            options['metadata'] = spec['metadata']
        requests.append(VolumeRequest(spec['name'], spec.get('size'), options, spec.get('id')))
    found = backend.lookup(requests)

    plans = []
    for spec, req in zip(specs, requests):
        vol = found.get(spec['name'])
        actions = []
        updates = {}
        if spec.get('state', 'present') == 'present':
            if vol is None:
                if spec.get('size') is None:
                    raise PVError('volume %s does not exist: size is required to create it' % spec['name'])
                actions.append('create')
            else:
                if vol.extra.get('adopted'):
                    actions.append('adopt')
                if spec.get('size') is not None:
                    if spec['size'] < vol.size:
                        raise PVError('volume %s: refusing to shrink from %s to %s (Cinder volumes never shrink)'
                                      % (spec['name'], human_size(vol.size), human_size(spec['size'])))
                    if spec['size'] > vol.size:
                        actions.append('grow')
                for key in ('volume_type', 'availability_zone'):
                    want = spec.get(key)
                    if want and vol.extra.get(key) and want != vol.extra.get(key):
                        raise PVError('volume %s exists with %s %s, not %s: changing it is not supported '
                                      '(retype or migrate it yourself)' % (spec['name'], key, vol.extra.get(key), want))
                if spec.get('description') is not None and spec['description'] != (vol.extra.get('description') or ''):
                    updates['description'] = spec['description']
                meta = dict((str(k), str(v)) for k, v in (spec.get('metadata') or {}).items())
                current = vol.extra.get('metadata') or {}
                changed_meta = dict((k, v) for k, v in meta.items() if current.get(k) != v)
                if changed_meta:
                    updates['metadata'] = changed_meta
                if updates:
                    actions.append('update')
        else:
            if vol is not None:
                attached = vol.extra.get('attached_servers') or []
                if attached:
                    if not spec.get('detach'):
                        raise PVError('volume %s (%s) is attached to server(s) %s; refusing to delete it '
                                      '(set detach: true to detach it first)'
                                      % (spec['name'], vol.id, ', '.join(attached)))
                    actions.append('detach')
                actions.append('delete')
        plans.append((spec, req, vol, actions, updates))

    records, diff_before, diff_after = [], {}, {}
    changed = any(p[3] for p in plans)
    if check_mode:
        for spec, req, vol, actions, updates in plans:
            records.append(_planned_record(spec, vol, actions, updates))
            if actions:
                diff_before[spec['name']] = _diff_view(vol)
                diff_after[spec['name']] = _planned_view(spec, vol, actions, updates)
        return records, changed, {'before': diff_before, 'after': diff_after}

    results = {}
    errors = []
    to_create = [(p[0], p[1]) for p in plans if 'create' in p[3]]
    if to_create:
        try:
            created = backend.create_many([item[1] for item in to_create])
            for (spec, _req), vol in zip(to_create, created):
                results[spec['name']] = vol
        except PVError as exc:
            errors.append(str(exc))
    to_delete = []
    for spec, req, vol, actions, updates in plans:
        if not actions or 'create' in actions:
            continue
        try:
            if 'adopt' in actions:
                backend._ensure_ours(vol, 'adopt')      # tags it with our metadata
            if 'grow' in actions:
                vol = backend.grow(vol, spec['size'])
            if 'update' in actions:
                vol = backend.update(vol, updates.get('description'), updates.get('metadata'))
            if 'detach' in actions:
                vol = backend.detach_all(vol)
            if 'delete' in actions:
                to_delete.append(vol)
            else:
                results[spec['name']] = vol
        except PVError as exc:
            errors.append('volume %s: %s' % (spec['name'], exc) if spec['name'] not in str(exc) else str(exc))
    if to_delete:
        try:
            backend.delete_many(to_delete)
        except PVError as exc:
            errors.append(str(exc))
    for spec, req, vol, actions, updates in plans:
        after = results.get(spec['name'], vol if 'delete' not in actions else None)
        rec = volume_result(after, actions) if after is not None else {
            'name': spec['name'], 'id': vol.id if vol else None, 'status': 'deleted' if vol else None,
            'actions': actions}
        records.append(rec)
        if actions:
            diff_before[spec['name']] = _diff_view(vol)
            diff_after[spec['name']] = _diff_view(after)
    if errors:
        exc = PVError('; '.join(errors))
        exc.result = {'volumes': records, 'changed': changed}
        raise exc
    return records, changed, {'before': diff_before, 'after': diff_after}


def _planned_record(spec, vol, actions, updates):
    if vol is None:
        if 'create' not in actions:
            return {'name': spec['name'], 'id': None, 'status': None, 'actions': actions}
        return {'name': spec['name'], 'id': None, 'status': 'creating', 'size': spec['size'] // GIB,
                'size_bytes': spec['size'], 'volume_type': spec.get('volume_type'),
                'availability_zone': spec.get('availability_zone'), 'description': spec.get('description'),
                'metadata': dict(spec.get('metadata') or {}), 'owned': True, 'attachments': [],
                'locators': [], 'actions': actions}
    rec = volume_result(vol, actions)
    if 'grow' in actions:
        rec['size'], rec['size_bytes'] = spec['size'] // GIB, spec['size']
    if 'description' in updates:
        rec['description'] = updates['description']
    if updates.get('metadata'):
        rec['metadata'] = dict(rec['metadata'], **updates['metadata'])
    if 'delete' in actions:
        rec['status'] = 'deleted'
    return rec


def _planned_view(spec, vol, actions, updates):
    if 'delete' in actions:
        return {'state': 'absent'}
    if vol is None:
        return {'state': 'present', 'id': '<new>', 'size': '%dGiB' % (spec['size'] // GIB),
                'description': spec.get('description') or '',
                'metadata': dict(spec.get('metadata') or {}, **{OWNER_KEY: OWNER_VALUE, NAME_KEY: spec['name']}),
                'attached_to': []}
    view = _diff_view(vol)
    if 'grow' in actions:
        view['size'] = '%dGiB' % (spec['size'] // GIB)
    if 'description' in updates:
        view['description'] = updates['description']
    if updates.get('metadata'):
        view['metadata'] = dict(view['metadata'], **updates['metadata'])
    if 'adopt' in actions:
        view['metadata'] = dict(view['metadata'], **{OWNER_KEY: OWNER_VALUE, NAME_KEY: spec['name']})
    return view


def _looks_like_id(ref):
    try:
        uuidlib.UUID(str(ref))
        return True
    except ValueError:
        return False


def resolve_volumes(backend, refs):
    """Volume references (our names, or ids of any volume) -> BackendVolumes, in order."""
    from .base import VolumeRequest
    names = [r for r in refs if not _looks_like_id(r)]
    for name in names:
        validate_name(name)
    found = backend.lookup([VolumeRequest(n, None) for n in names]) if names else {}
    out = []
    for ref in refs:
        if ref in found:
            out.append(found[ref])
            continue
        if _looks_like_id(ref):
            raw = backend._get(ref)
            if raw is not None:
                vol = backend.to_backend_volume(raw)
                vol.owned = True            # named explicitly by id: the user chose it
                vol.extra['adopted'] = False
                out.append(vol)
                continue
        raise PVError('volume %s not found (by name only volumes created by this collection are found; '
                      'give the id of any other volume)' % ref)
    return out


def attachment_record(vol, server):
    att = None
    for item in vol.extra.get('attachments') or []:
        if item.get('server_id') == server.id:
            att = item
    return {
        'volume_id': vol.id,
        'volume_name': vol.name,
        'server_id': server.id,
        'server_name': server.name,
        'attachment_id': att.get('attachment_id') if att else None,
        'device_hint': att.get('device') if att else None,
        'status': vol.extra.get('status'),
        'size': vol.size // GIB,
        'locators': list(vol.locators),
    }


def ensure_attachments(backend, refs, state='present', check_mode=False):
    """Attach (or detach) the volumes ``refs`` to/from the backend's server.

    Returns ``(records, changed, diff)``; refuses (before changing anything) a volume
    attached to another server unless force_detach, and then only if that server is
    SHUTOFF unless fencing is disabled.
    """
    server = backend.server()
    vols = resolve_volumes(backend, refs)
    seen = set()
    for vol in vols:
        if vol.id in seen:
            raise PVError('volume %s is listed twice' % vol.name)
        seen.add(vol.id)
    todo = []
    for vol in vols:
        here = server.id in (vol.extra.get('attached_servers') or [])
        if state == 'present':
            if not here:
                backend._check_foreign_attachments(vol, server)   # raises when refused (reads only)
                todo.append(vol)
        elif here:
            todo.append(vol)
    before = dict((v.name, {'attached_to': list(v.extra.get('attached_servers') or [])}) for v in todo)
    after = {}
    for vol in todo:
        others = [s for s in vol.extra.get('attached_servers') or [] if s != server.id]
        after[vol.name] = {'attached_to': [server.id] if state == 'present'
                           else [s for s in vol.extra.get('attached_servers') or [] if s != server.id]}
        if state == 'present' and others:
            after[vol.name]['detached_from'] = others
    diff = {'before': before, 'after': after}
    changed = bool(todo)
    if check_mode or not todo:
        records = []
        for vol in vols:
            rec = attachment_record(vol, server)
            rec['changed'] = vol in todo
            records.append(rec)
        return records, changed, diff
    if state == 'present':
        done = backend.attach_many(todo, server=server)
    else:
        done = backend.detach_many(todo, server=server)
    by_id = dict((v.id, v) for v in done)
    records = []
    for vol in vols:
        cur = by_id.get(vol.id, vol)
        rec = attachment_record(cur, server)
        rec['changed'] = vol.id in by_id
        records.append(rec)
    return records, changed, diff
