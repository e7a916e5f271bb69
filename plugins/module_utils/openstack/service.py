# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the ``cinder_volume`` and ``cinder_attachment`` modules do (no Ansible: plain dicts in/out).

Rules: plan every volume before changing anything (a refusal leaves the cloud untouched);
work through the PUBLIC methods of :class:`Cinder`'s parts (:mod:`.client`, :mod:`.volumes`,
:mod:`.attach`), never their private ones; results are the modules' documented records.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ..backends.base import VolumeRequest
from ..common import Conflict, InUse, NotFound, PVError, Refused, human_size, validate_name
from .attach import Attachments
from .client import Client
from .volumes import (GIB, NAME_KEY, OWNER_KEY, OWNER_VALUE, RESERVED_KEYS, TOKEN_KEY, VOLUME_OPTIONS, Volumes,
                      looks_like_id, size_to_gib)


class Cinder(object):
    """One cloud connection and its parts: ``client`` (calls, this host's server), ``volumes``
    (owned volumes), ``attachments`` (attach/detach, fencing)."""

    def __init__(self, params=None, conn=None):
        self.client = Client(params, conn)
        self.volumes = Volumes(self.client, params)
        self.attachments = Attachments(self.client, self.volumes, params)

    @property
    def warnings(self):
        return self.client.warnings

    def server(self):
        return self.client.server()

    def close(self):
        self.client.close()


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


def _requests(specs):
    seen = set()
    requests = []
    for spec in specs:
        validate_name(spec['name'])
        if spec['name'] in seen:
            raise Conflict('volume %s is listed twice' % spec['name'])
        seen.add(spec['name'])
        for key in RESERVED_KEYS:
            if key in (spec.get('metadata') or {}):
                raise PVError('volume %s: metadata key %s is reserved for ownership marks' % (spec['name'], key))
        if spec.get('size') is not None:
            size_to_gib(spec['size'], 'volume %s: size' % spec['name'])
        options = dict((k, spec.get(k)) for k in VOLUME_OPTIONS if spec.get(k) is not None)
        if spec.get('metadata'):
            options['metadata'] = spec['metadata']
        requests.append(VolumeRequest(spec['name'], spec.get('size'), options, spec.get('id')))
    return requests


def plan_volume(spec, vol):
    """``(actions, updates)`` for one volume spec against what exists (``vol`` or None);
    raises the refusal instead of planning something unsafe."""
    actions = []
    updates = {}
    if spec.get('state', 'present') == 'present':
        if vol is None:
            if spec.get('size') is None:
                raise NotFound('volume %s does not exist: size is required to create it' % spec['name'])
            return ['create'], updates
        if vol.extra.get('adopted'):
            actions.append('adopt')
        if spec.get('size') is not None:
            if spec['size'] < vol.size:
                raise Refused('volume %s: refusing to shrink from %s to %s (Cinder volumes never shrink)'
                              % (spec['name'], human_size(vol.size), human_size(spec['size'])))
            if spec['size'] > vol.size:
                actions.append('grow')
        for key in ('volume_type', 'availability_zone'):
            want = spec.get(key)
            if want and vol.extra.get(key) and want != vol.extra.get(key):
                raise Refused('volume %s exists with %s %s, not %s: changing it is not supported '
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
    elif vol is not None:
        attached = vol.extra.get('attached_servers') or []
        if attached:
            if not spec.get('detach'):
                raise InUse('volume %s (%s) is attached to server(s) %s; refusing to delete it '
                            '(set detach: true to detach it first)' % (spec['name'], vol.id, ', '.join(attached)))
            actions.append('detach')
        actions.append('delete')
    return actions, updates


def ensure_volumes(cinder, specs, check_mode=False):
    """Make Cinder volumes match ``specs`` (dicts: name, id, state, size (bytes), volume_type,
    availability_zone, description, metadata, detach). Plans everything before changing anything.

    Returns ``(records, changed, diff)``.
    """
    requests = _requests(specs)
    found = cinder.volumes.lookup(requests)
    plans = []
    for spec, req in zip(specs, requests):
        vol = found.get(spec['name'])
        actions, updates = plan_volume(spec, vol)
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
            created = cinder.volumes.create_many([item[1] for item in to_create])
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
                vol = cinder.volumes.adopt(vol)      # tags it with our metadata
            if 'grow' in actions:
                vol = cinder.volumes.grow(vol, spec['size'])
            if 'update' in actions:
                vol = cinder.volumes.update(vol, updates.get('description'), updates.get('metadata'))
            if 'detach' in actions:
                vol = cinder.attachments.detach_all(vol)
            if 'delete' in actions:
                to_delete.append(vol)
            else:
                results[spec['name']] = vol
        except PVError as exc:
            errors.append('volume %s: %s' % (spec['name'], exc) if spec['name'] not in str(exc) else str(exc))
    if to_delete:
        try:
            cinder.volumes.delete_many(to_delete)
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


def resolve_volumes(cinder, refs):
    """Volume references (our names, or ids of any volume) -> BackendVolumes, in order."""
    names = [r for r in refs if not looks_like_id(r)]
    for name in names:
        validate_name(name)
    found = cinder.volumes.lookup([VolumeRequest(n, None) for n in names]) if names else {}
    out = []
    for ref in refs:
        if ref in found:
            out.append(found[ref])
            continue
        if looks_like_id(ref):
            vol = cinder.volumes.by_id(ref)
            if vol is not None:
                out.append(vol)
                continue
        raise NotFound('volume %s not found (by name only volumes created by this collection are found; '
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


def ensure_attachments(cinder, refs, state='present', check_mode=False, attached_elsewhere='fail'):
    """Attach (or detach) the volumes ``refs`` to/from the configured server.

    Returns ``(records, changed, diff)``; refuses (before changing anything) a volume
    attached to another server unless force_detach, and then only if that server is
    SHUTOFF unless fencing is disabled (or fence_stop stops it first). With
    ``attached_elsewhere='skip'`` (and no force_detach) such a volume is left where it is
    instead: not attached, its record says where it lives (``attached_elsewhere``), and a
    warning says so (a host whose volumes were moved or failed over to another host).
    """
    server = cinder.server()
    vols = resolve_volumes(cinder, refs)
    seen = set()
    for vol in vols:
        if vol.id in seen:
            raise Conflict('volume %s is listed twice' % vol.name)
        seen.add(vol.id)
    todo = []
    elsewhere = {}                  # volume id -> names of the other servers it is attached to
    for vol in vols:
        here = cinder.attachments.is_attached(vol, server)
        if state == 'present':
            others = [s for s in vol.extra.get('attached_servers') or [] if s != server.id]
            if not here and others and attached_elsewhere == 'skip' and not cinder.attachments.force_detach:
                names = []
                for sid in others:
                    srv = cinder.client.get_server(sid)
                    names.append(srv.name if srv is not None else sid)
                elsewhere[vol.id] = names
                cinder.warnings.append(
                    'volume %s (Cinder volume %s) lives on server %s (attached there), not on %s: it is not '
                    'attached here (attached_elsewhere=skip); move its entry to that host, or take it over '
                    'with force_detach' % (vol.name, vol.id, ', '.join(names), server.name))
                continue
            if not here:
                cinder.attachments.check_foreign(vol, server)   # raises when refused (reads only)
                todo.append(vol)
        elif here:
            todo.append(vol)
    before = dict((v.name, {'attached_to': list(v.extra.get('attached_servers') or [])}) for v in todo)
    after = {}
    stop = {}                       # volume id -> names of the servers fence_stop stops for it
    for vol in todo:
        others = [s for s in vol.extra.get('attached_servers') or [] if s != server.id]
        after[vol.name] = {'attached_to': [server.id] if state == 'present' else others}
        if state == 'present' and others:
            after[vol.name]['detached_from'] = others
            stop[vol.id] = [srv.name for srv in cinder.attachments.to_stop(others)]
            if stop[vol.id]:
                after[vol.name]['stopped'] = stop[vol.id]
    diff = {'before': before, 'after': after}
    changed = bool(todo)
    if check_mode or not todo:
        records = []
        for vol in vols:
            rec = attachment_record(vol, server)
            rec['changed'] = vol in todo
            rec['stopped_servers'] = stop.get(vol.id, [])
            rec['attached_elsewhere'] = elsewhere.get(vol.id, [])
            records.append(rec)
        return records, changed, diff
    if state == 'present':
        done = cinder.attachments.attach_many(todo, server=server)
    else:
        done = cinder.attachments.detach_many(todo, server=server)
    for name in cinder.attachments.stopped:
        cinder.warnings.append('stopped Nova server %s through the Nova API (fence_stop) to force-detach '
                               'its volumes' % name)
    by_id = dict((v.id, v) for v in done)
    records = []
    for vol in vols:
        cur = by_id.get(vol.id, vol)
        rec = attachment_record(cur, server)
        rec['changed'] = vol.id in by_id
        rec['stopped_servers'] = [n for n in stop.get(vol.id, []) if n in cinder.attachments.stopped]
        rec['attached_elsewhere'] = elsewhere.get(vol.id, [])
        records.append(rec)
    return records, changed, diff
