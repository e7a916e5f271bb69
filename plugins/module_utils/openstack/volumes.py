# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Cinder volumes this collection owns: find, create, grow, update, delete, wait for a status.

Rules: ownership is the metadata ``pv_managed=persistent_volumes.docker`` + ``pv_name=<name>``,
set in the create call itself (a crash mid-create leaves no untagged volume), plus a
``pv_token`` unique per create call so a retried create finds the first one. Lookups filter on
that metadata on the server. A volume without it is never modified or deleted (:meth:`ensure_ours`
raises :class:`common.Refused`) unless named by id (``adopt_id``), which then tags it. Cinder
sizes are whole GiB, never rounded silently. Every wait goes through :func:`common.poll`.
Attaching and detaching are in :mod:`.attach`.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import json
import os
import time
import uuid as uuidlib
from concurrent.futures import ThreadPoolExecutor

from ..backends.base import BackendVolume
from ..common import (AGAIN, Conflict, NotFound, PVError, Refused, TimedOut, human_size, parse_size,
                      poll, reworded, validate_name)

GIB = 1024 ** 3
OWNER_KEY = 'pv_managed'
OWNER_VALUE = 'persistent_volumes.docker'
NAME_KEY = 'pv_name'
TOKEN_KEY = 'pv_token'
RESERVED_KEYS = (OWNER_KEY, NAME_KEY, TOKEN_KEY)
VOLUME_OPTIONS = ('volume_type', 'availability_zone', 'description')
ERROR_STATUS = ('error', 'error_extending', 'error_deleting', 'error_restoring')
#: seconds between a create's answer and the look for a concurrent create of the same name (>= 1 s:
#: Cinder's created_at has whole seconds; see Volumes._settle_concurrent_creates)
SETTLE = 1.5
#: seconds during which a younger, unattached duplicate of a name is taken for a concurrent create being
#: given up (lookups use the oldest meanwhile); an older duplicate is a Conflict, as always
GIVE_UP_WINDOW = 120


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


def parse_gib(value, what='size'):
    """A Cinder size: a bare number means GiB (as in openstack.cloud); a unit must give whole GiB."""
    if value is None or value == '':
        return None
    text = str(value).strip()
    if text.isdigit():
        gib = int(text)
        if gib <= 0:
            raise PVError('%s must be at least 1 (GiB)' % what)
        return gib * GIB
    size = parse_size(text, what)
    size_to_gib(size, what)
    return size


def age_key(raw):
    """Oldest first: Cinder's created_at (whole seconds), then the id."""
    return (str(getattr(raw, 'created_at', None) or ''), raw.id)


def being_given_up(raw, window=GIVE_UP_WINDOW):
    """A volume a concurrent create made moments ago and its run deletes again (it is not the oldest
    of its name): never attached, available or still creating, younger than ``window`` seconds."""
    if raw.attachments or raw.status not in ('creating', 'available'):
        return False
    try:
        made = datetime.datetime.strptime(str(getattr(raw, 'created_at', None))[:19], '%Y-%m-%dT%H:%M:%S')
    except ValueError:
        return False
    return abs((datetime.datetime.utcnow() - made).total_seconds()) < window


def looks_like_id(ref):
    try:
        uuidlib.UUID(str(ref))
        return True
    except ValueError:
        return False


class Volumes(object):
    """The volume side of Cinder, over a :class:`.client.Client`."""

    def __init__(self, client, params=None):
        p = dict(params or {})
        self.client = client
        self.dev_root = p.get('guest_dev_root') or '/dev'
        self.defaults = dict((k, p.get(k)) for k in VOLUME_OPTIONS)
        self.extra_metadata = dict((str(k), str(v)) for k, v in (p.get('metadata') or {}).items())
        for key in RESERVED_KEYS:
            if key in self.extra_metadata:
                raise PVError('metadata key %s is reserved for ownership marks' % key)
        self._retried_tokens = set()
        self._answered = 0.0                    # monotonic time the last create POST was answered

    @property
    def api(self):
        return self.client.conn.block_storage

    # -- reads -----------------------------------------------------------------------------
    def list_owned(self, name=None):
        """Raw SDK volumes carrying our mark (and ``pv_name=name`` when given)."""
        query = {OWNER_KEY: OWNER_VALUE}
        if name is not None:
            query[NAME_KEY] = name
        # the SDK sends ``metadata={...}`` as ``?metadata=k``; ``properties`` goes through as JSON
        return list(self.client.call('listing volumes', lambda: list(self.api.volumes(
            details=True, properties=json.dumps(query)))))

    def get(self, volume_id):
        """The raw SDK volume ``volume_id``, or None when it does not exist."""
        return self.client.get_or_none('reading volume %s' % volume_id, lambda: self.api.get_volume(volume_id))

    def to_backend_volume(self, raw, name=None, adopted=False):
        meta = dict(raw.metadata or {})
        owned = meta.get(OWNER_KEY) == OWNER_VALUE
        attachments = list(raw.attachments or [])
        servers = [a.get('server_id') for a in attachments if a.get('server_id')]
        here = bool(servers) and self.client.server_id_or_none() in servers
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

    def current(self, volume):
        """A fresh BackendVolume for ``volume`` (None when it is gone)."""
        raw = self.get(volume.id)
        return None if raw is None else self.to_backend_volume(raw, volume.name)

    def lookup(self, requests):
        out = {}
        by_name = {}
        if [r for r in requests if not r.adopt_id]:
            for raw in self.list_owned():
                by_name.setdefault((raw.metadata or {}).get(NAME_KEY), []).append(raw)
        for req in requests:
            if req.adopt_id:
                raw = self.get(req.adopt_id)
                if raw is None:
                    raise NotFound('volume %s: Cinder volume %s (adopt_id) does not exist' % (req.name, req.adopt_id))
                meta = raw.metadata or {}
                if meta.get(OWNER_KEY) == OWNER_VALUE and meta.get(NAME_KEY) not in (None, req.name):
                    raise Conflict('volume %s: Cinder volume %s already belongs to volume %s'
                                   % (req.name, req.adopt_id, meta.get(NAME_KEY)))
                out[req.name] = self.to_backend_volume(raw, req.name, adopted=True)
                continue
            found = [v for v in by_name.get(req.name) or [] if v.status not in ('deleting', 'error_deleting')]
            if len(found) > 1 and all(being_given_up(v) for v in sorted(found, key=age_key)[1:]):
                # a concurrent create that its run is about to give up (see _settle_concurrent_creates)
                found = sorted(found, key=age_key)[:1]
            if len(found) > 1:
                raise Conflict('volume %s: %d Cinder volumes carry our mark for this name (%s); '
                               'delete the extra ones or adopt one by id'
                               % (req.name, len(found), ', '.join(v.id for v in found)))
            if found:
                out[req.name] = self.to_backend_volume(found[0], req.name)
        return out

    def by_id(self, volume_id):
        """Any volume named by its id (the user chose it: treated as ours), or None."""
        raw = self.get(volume_id)
        if raw is None:
            return None
        vol = self.to_backend_volume(raw)
        vol.owned = True
        vol.extra['adopted'] = False
        return vol

    def list_volumes(self):
        return [self.to_backend_volume(raw) for raw in self.list_owned()]

    # -- waiting -------------------------------------------------------------------------------
    def wait_status(self, raws, wanted, what, timeout=None, check=None, on_done=None):
        """Poll until every volume has a status in ``wanted`` (and ``check(raw)`` holds).

        One list call per round for all of them; returns ``{id: raw}``. ``on_done(raw)`` runs
        for each volume as soon as it gets there (pipelining: the next step need not wait for
        the slowest volume).
        """
        timeout = timeout or self.client.timeout
        if not self.client.wait:
            return dict((r.id, self.get(r.id) or r) for r in raws)
        pending = dict((r.id, r) for r in raws)
        done = {}
        current = {}

        def round_():
            current.clear()
            if len(pending) > 1:
                # one call for all of ours (server-side filter), single reads for any other
                current.update((r.id, r) for r in self.list_owned() if r.id in pending)
            for vid in pending:
                if vid not in current:
                    raw = self.get(vid)
                    if raw is not None:
                        current[vid] = raw
            for vid in list(pending):
                raw = current.get(vid)
                if raw is None:
                    raise NotFound('Cinder volume %s disappeared while waiting for it %s' % (vid, what))
                if raw.status in wanted and (check is None or check(raw)):
                    done[vid] = raw
                    del pending[vid]
                    if on_done is not None:
                        on_done(raw)
                elif raw.status in ERROR_STATUS:
                    raise PVError('Cinder volume %s (%s) went to status %s while waiting for it %s'
                                  % (vid, (raw.metadata or {}).get(NAME_KEY) or raw.name, raw.status, what))
            return done if not pending else AGAIN

        def timed_out():
            raise TimedOut('timed out after %ss waiting for Cinder volume(s) %s %s (status: %s)'
                           % (int(timeout), ', '.join(sorted(pending)), what,
                              ', '.join(sorted(set(current[v].status for v in pending if v in current)))))
        # the first reads come quickly (an attach or detach often completes within a second), then one
        # list call a second at most: cheap for the API, and a batch of attaches (which Nova carries
        # out one after the other) is seen finished within a second
        return poll(round_, timeout, timed_out, interval=0.1, factor=1.5, max_interval=1.0)

    def wait_gone(self, volume_ids):
        """Poll until the volumes no longer exist (after a delete)."""
        pending = set(volume_ids)

        def round_():
            for vid in list(pending):
                raw = self.get(vid)
                if raw is None:
                    pending.discard(vid)
                elif raw.status in ('error_deleting',):
                    raise PVError('Cinder volume %s failed to delete (status error_deleting)' % vid)
            return None if not pending else AGAIN

        def timed_out():
            raise TimedOut('timed out after %ss waiting for Cinder volume(s) %s to be deleted'
                           % (self.client.timeout, ', '.join(sorted(pending))))
        return poll(round_, self.client.timeout, timed_out, interval=0.5)

    # -- ownership / adoption ------------------------------------------------------------------
    def ensure_ours(self, volume, action):
        """Refuse to ``action`` a volume that is not ours; tag an adopted one (then it is)."""
        if volume.owned and not volume.extra.get('adopted'):
            return
        if volume.extra.get('adopted'):
            self.client.call('tagging volume %s' % volume.id, self.api.set_volume_metadata,
                             volume.id, **{OWNER_KEY: OWNER_VALUE, NAME_KEY: volume.name})
            volume.extra['adopted'] = False
            volume.owned = True
            return
        raise Refused('Cinder volume %s (%s) was not created by this collection; refusing to %s it '
                      '(adopt it explicitly by id)' % (volume.id, volume.extra.get('display_name'), action))

    def adopt(self, volume):
        """Tag an adopted volume with our marks."""
        self.ensure_ours(volume, 'adopt')
        return volume

    # -- create ------------------------------------------------------------------------------
    def _options(self, request):
        opts = dict(self.defaults)
        for key, value in (request.options or {}).items():
            if key not in VOLUME_OPTIONS and key != 'metadata':
                raise PVError('volume %s: unknown cinder option %r (known: %s)'
                              % (request.name, key, ', '.join(VOLUME_OPTIONS + ('metadata',))))
            if value is not None:
                opts[key] = value
        return opts

    def create_body(self, request, token):
        """The create request of ``request`` (validated), tagged with our marks and ``token``."""
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
        for key in VOLUME_OPTIONS:
            if opts.get(key):
                body[key] = opts[key]
        return body

    def post_create(self, request):
        """POST one create; a failed POST is checked by token before retrying (no duplicates)."""
        token = uuidlib.uuid4().hex
        body = self.create_body(request, token)

        def went_through(err):
            """Did it go through anyway? (the answer may be what failed). After a timeout the
            request may still be on its way: look for it a while before POSTing again."""
            self._retried_tokens.add(token)
            patience = 0
            if err.ambiguous:
                patience = max(5.0, 2.0 * float(self.client.params.get('api_timeout') or 0))

            def look():
                try:
                    for raw in self.list_owned(request.name):
                        if (raw.metadata or {}).get(TOKEN_KEY) == token:
                            return raw
                except PVError:
                    pass
                return AGAIN
            return poll(look, patience, lambda: AGAIN, interval=0.5)

        try:
            raw = self.client.retry(
                lambda: self.client.attempt('creating the Cinder volume', self.api.create_volume, **body),
                on_unavailable=went_through)
            self._answered = time.monotonic()
            return raw
        except PVError as exc:
            self._retried_tokens.add(token)
            raise reworded(exc, 'volume %s: %s' % (request.name, exc))

    def create_many(self, requests):
        """POST every create (a few in parallel), then wait for all in one polling loop."""
        if not requests:
            return []
        for req in requests:
            self.create_body(req, 'check')          # validate everything before any POST
        with ThreadPoolExecutor(max_workers=min(8, len(requests))) as pool:
            futures = [pool.submit(self.post_create, req) for req in requests]
            created, errors = [], []
            for fut in futures:
                try:
                    created.append(fut.result())
                except PVError as exc:
                    created.append(None)
                    errors.append(str(exc))
        done = self.wait_status([r for r in created if r is not None], ('available',), 'to become available')
        self._drop_retry_duplicates(requests, created)
        if errors:
            raise PVError('; '.join(errors))
        winners = self._settle_concurrent_creates(requests, created)
        out = []
        for req, raw in zip(requests, created):
            if raw.id in winners:
                vol = self.to_backend_volume(winners[raw.id], req.name)
                vol.extra['fresh'] = False
            else:
                vol = self.to_backend_volume(done[raw.id], req.name)
                vol.extra['fresh'] = True
            out.append(vol)
        return out

    def _settle_concurrent_creates(self, requests, created):
        """Another run (a second controller, or a second ansible-playbook for the same host) may have
        created a volume of the same name at the same time: both looked it up before either existed.

        Rule, applied by every creator: of the live volumes carrying the name, the OLDEST (Cinder's
        ``created_at``, then the id) is THE volume; a creator whose new volume is not it deletes its own
        (brand new, never attached: nothing is lost) and uses that one. Each creator looks at least
        :data:`SETTLE` seconds after its create was answered, so a competing volume it cannot see yet
        was made later (its ``created_at``, in whole seconds, strictly greater): that creator sees ours
        as the oldest and gives its own up. Returns ``{our new id: raw volume to use instead}``."""
        mine = dict((raw.id, req) for req, raw in zip(requests, created) if raw is not None)
        if not mine or not self.client.wait:
            return {}
        late = SETTLE - (time.monotonic() - self._answered)
        if late > 0:
            time.sleep(late)
        by_name = {}
        for raw in self.list_owned():
            if raw.status not in ('deleting', 'error_deleting'):
                by_name.setdefault((raw.metadata or {}).get(NAME_KEY), []).append(raw)
        out = {}
        losers = []
        for vid, req in mine.items():
            live = by_name.get(req.name) or []
            if len(live) < 2 or vid not in [r.id for r in live]:
                continue
            oldest = min(live, key=lambda r: (str(r.created_at or ''), r.id))
            if oldest.id != vid:
                out[vid] = oldest
                losers.append(vid)
                self.client.warnings.append(
                    'volume %s: another run created it at the same time (Cinder volume %s, older); using that '
                    'one and deleting the duplicate %s this run made' % (req.name, oldest.id, vid))
        for vid in losers:
            try:
                self.client.call('deleting duplicate volume %s' % vid, self.api.delete_volume, vid)
            except NotFound:
                pass
        if losers:
            self.wait_gone(losers)
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
            for other in self.list_owned(req.name):
                if other.id != raw.id and (other.metadata or {}).get(TOKEN_KEY) == token \
                        and not other.attachments:
                    self.client.warnings.append('volume %s: removing duplicate %s made by a retried create'
                                                % (req.name, other.id))
                    try:
                        self.client.call('deleting duplicate volume %s' % other.id, self.api.delete_volume,
                                         other.id)
                    except PVError:
                        pass

    # -- grow --------------------------------------------------------------------------------
    def grow(self, volume, new_size):
        new_gb = size_to_gib(new_size, 'volume %s: size' % volume.name)
        cur_gb = volume.size // GIB
        if new_gb < cur_gb:
            raise Refused('volume %s: refusing to shrink from %s to %s (Cinder volumes never shrink)'
                          % (volume.name, human_size(volume.size), human_size(new_size)))
        if new_gb == cur_gb:
            return volume
        self.ensure_ours(volume, 'grow')
        attached = volume.extra.get('attached_servers') or []
        before = dict((sid, self._extend_actions(sid)) for sid in attached)
        status = volume.extra.get('status') or 'available'
        self.client.call('extending volume %s to %s GiB' % (volume.name, new_gb),
                         self.api.extend_volume, volume.id, new_gb)
        wanted = ('in-use',) if attached else ('available',)
        if status not in ('available', 'in-use'):
            wanted = ('available', 'in-use')
        raw = self.get(volume.id)
        done = self.wait_status([raw], wanted, 'to be extended to %s GiB' % new_gb,
                                check=lambda r: int(r.size) == new_gb)
        # Nova tells the guest through an instance action; wait for it (detaching before
        # it finished makes nova-compute fail with BDMNotFound)
        for sid in attached:
            self._wait_extend_action(sid, before[sid])
        return self.to_backend_volume(done[volume.id], volume.name)

    def _extend_actions(self, server_id):
        compute = self.client.conn.compute
        try:
            return set(a.request_id for a in self.client.call(
                'listing server actions', lambda: list(compute.server_actions(server_id)))
                if a.action == 'extend_volume')
        except PVError:
            return set()

    def _wait_extend_action(self, server_id, seen, timeout=60):
        compute = self.client.conn.compute
        timeout = min(timeout, self.client.timeout)

        def round_():
            for request_id in self._extend_actions(server_id) - seen:
                action = self.client.call('reading server action', compute.get_server_action,
                                          request_id, server_id)
                events = action.events or []
                if events and all(e.get('finish_time') for e in events):
                    failed = [e for e in events if (e.get('result') or '').lower() == 'error']
                    if failed:
                        self.client.warnings.append('Nova reported an error extending the volume on server %s: %s'
                                                    % (server_id, failed[0].get('event')))
                    return True
            return AGAIN

        def late():
            self.client.warnings.append('Nova did not report the extend_volume action on server %s within %ss; '
                                        'the guest may see the new size late' % (server_id, int(timeout)))
            return False
        return poll(round_, timeout, late, interval=0.5)

    # -- update / delete ---------------------------------------------------------------------
    def update(self, volume, description=None, metadata=None):
        """Set description / metadata keys on one of our volumes; returns it as it is now."""
        self.ensure_ours(volume, 'update')
        if description is not None and description != (volume.extra.get('description') or ''):
            self.client.call('updating volume %s' % volume.id, self.api.update_volume,
                             volume.id, description=description)
        if metadata:
            self.client.call('setting metadata on volume %s' % volume.id, self.api.set_volume_metadata,
                             volume.id, **metadata)
        return self.current(volume)

    def delete_many(self, volumes):
        """Delete our volumes (refused while attached anywhere); wait until they are gone."""
        fresh = []
        for vol in volumes:
            self.ensure_ours(vol, 'delete')
            cur = self.current(vol)            # the caller's copy may predate a detach
            if cur is None:
                continue
            fresh.append(cur)
            if cur.extra.get('attached_servers'):
                raise Refused('volume %s (%s) is still attached to server(s) %s; detach it first'
                              % (cur.name, cur.id, ', '.join(cur.extra['attached_servers'])))
        for vol in fresh:
            try:
                self.client.call('deleting volume %s' % vol.id, self.api.delete_volume, vol.id)
            except NotFound:
                pass
        self.wait_gone([v.id for v in fresh])
