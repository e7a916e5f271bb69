# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""WHERE THE CINDER ATTACH HAPPENS: attach/detach of Cinder volumes to/from a Nova server.

Rules: only our (or adopted) volumes are attached or detached (:meth:`Volumes.ensure_ours`).
A volume attached to ANOTHER server is refused (:class:`common.InUse`), unless ``force_detach``;
then only when that server is SHUTOFF, unless ``fencing`` is false (:meth:`check_foreign`,
which only reads, so callers can refuse before changing anything), or ``fence_stop`` asks to
stop that server through the Nova API first (:meth:`fence`: ``stop``, wait for SHUTOFF). Attach POSTs go out in
parallel and ONE polling loop waits for all; Nova's view is waited for after a detach.
The guest device is found by stable ids only (``/dev/disk/by-id/virtio-<id[:20]>`` ...),
never by the device name Nova reports.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from concurrent.futures import ThreadPoolExecutor

from ..common import AGAIN, InUse, NotFound, PVError, Refused, TimedOut, poll, reworded


#: Cinder statuses of a volume that an attach or detach is under way for
BUSY_STATUSES = ('reserved', 'attaching', 'detaching')

#: Nova states fence_stop stops a server from; any other state (PAUSED, SUSPENDED, ERROR...) is refused
STOPPABLE = ('ACTIVE', 'RESCUED')


class Attachments(object):
    """Attach/detach over a :class:`.client.Client` and its :class:`.volumes.Volumes`."""

    def __init__(self, client, volumes, params=None):
        p = dict(params or {})
        self.client = client
        self.volumes = volumes
        self.force_detach = bool(p.get('force_detach'))
        self.fencing = p.get('fencing', True) is not False
        self.fence_stop = bool(p.get('fence_stop'))
        self.stopped = []                       # names of the servers :meth:`fence` stopped
        self._seen = {}                         # server id -> server, read once per check round

    @property
    def compute(self):
        return self.client.conn.compute

    # -- checks (reads only) -------------------------------------------------------------
    def check_foreign(self, volume, server):
        """Servers other than ``server`` that ``volume`` is attached to and that we may take it
        from (force_detach, fencing); raises :class:`common.InUse`/:class:`common.Refused` otherwise."""
        others = [sid for sid in volume.extra.get('attached_servers') or [] if sid != server.id]
        if not others:
            return []
        if not self.force_detach:
            names = []
            for sid in others:
                srv = self.server_once(sid)
                names.append('%s (%s, %s)' % (srv.name if srv else '?', sid, srv.status if srv else 'gone'))
            raise InUse('volume %s (%s) is attached to another server: %s; refusing to attach it to %s '
                        '(set force_detach: true to take it over; the other server must be SHUTOFF)'
                        % (volume.name, volume.id, ', '.join(names), server.name))
        for sid in others:
            srv = self.server_once(sid)
            if srv is not None and self.fencing and srv.status != 'SHUTOFF' and not (
                    self.fence_stop and srv.status in STOPPABLE):
                raise Refused('volume %s (%s) is attached to server %s (%s) which is %s, not SHUTOFF: '
                              'refusing to force-detach it from a running server (fencing); stop that '
                              'server first (or set fence_stop: true to stop it through the Nova API), '
                              'or set fencing: false if you are sure it no longer writes'
                              % (volume.name, volume.id, srv.name, sid, srv.status))
        return others

    def forget_reads(self):
        """The next checks read the other servers again (see :meth:`server_once`)."""
        self._seen.clear()

    def server_once(self, server_id):
        """The server ``server_id`` (None when gone), read once for the checks of one call (several
        volumes attached to one other server: one read, not one per volume)."""
        if server_id not in self._seen:
            self._seen[server_id] = self.client.get_server(server_id)
        return self._seen[server_id]

    def to_stop(self, server_ids):
        """The servers among ``server_ids`` that :meth:`fence` would stop (reads only)."""
        if not (self.fencing and self.fence_stop):
            return []
        out = []
        for sid in server_ids:
            srv = self.server_once(sid)
            if srv is not None and srv.status != 'SHUTOFF':
                out.append(srv)
        return out

    def fence(self, server_ids):
        """``fence_stop``: stop (Nova ``stop``) the servers among ``server_ids`` that are not
        SHUTOFF, and wait until Nova reports every one SHUTOFF (bounded by ``timeout``): only then
        may their volumes be force-detached. Returns the stopped servers' names."""
        for sid in server_ids:
            self._seen.pop(sid, None)           # fresh reads: the decision to stop is taken now
        servers = self.to_stop(server_ids)
        for srv in servers:
            if srv.status != 'SHUTOFF' and getattr(srv, 'task_state', None) != 'powering-off':
                try:
                    self.client.call('stopping server %s (%s) to fence it' % (srv.name, srv.id),
                                     self.compute.stop_server, srv)
                except NotFound:
                    continue
        pending = dict((srv.id, srv) for srv in servers)
        last = {}

        def round_():
            for sid in list(pending):
                srv = self.client.get_server(sid)
                if srv is None or srv.status == 'SHUTOFF':
                    del pending[sid]
                else:
                    last[sid] = srv.status
            return None if not pending else AGAIN

        def timed_out():
            left = ', '.join('%s (%s, %s)' % (s.name, s.id, last.get(s.id, '?')) for s in pending.values())
            raise TimedOut('timed out after %ss waiting for server(s) %s to be SHUTOFF after a Nova stop '
                           '(fence_stop); their volumes were not detached' % (self.client.timeout, left))
        if servers:
            poll(round_, self.client.timeout, timed_out, interval=0.3, factor=1.5, max_interval=1.0)
        names = [srv.name for srv in servers]
        self.stopped.extend(n for n in names if n not in self.stopped)
        return names

    def is_attached(self, volume, server):
        return server.id in (volume.extra.get('attached_servers') or [])

    # -- attach ------------------------------------------------------------------------------
    def attach_many(self, volumes, server=None):
        """Attach several volumes to ``server`` (default: this host's); wait for all in one loop."""
        server = server or self.client.server()
        here_id = self.client.server_id_or_none()
        volumes = self._settled(volumes)
        self._seen.clear()                      # the other servers' states read again, right before acting
        todo = []
        out = {}
        for vol in volumes:
            if self.is_attached(vol, server):
                vol.attached_here = server.id == here_id
                out[vol.id] = vol
                continue
            self.volumes.ensure_ours(vol, 'attach')
            todo.append((vol, self.check_foreign(vol, server)))
        # fenced takeover: stop the other servers first (fence_stop), force-detach from the SHUTOFF
        # servers, then wait for available
        detached = [vol for vol, others in todo if others]
        if detached and self.fencing:
            self.fence(sorted(set(sid for _vol, others in todo for sid in others)))
        for vol, others in todo:
            for sid in others:
                self.delete_attachment(sid, vol.id)
        if detached:
            self.volumes.wait_status([self.volumes.get(v.id) for v in detached], ('available',), 'to be detached')
            by_server = {}
            for vol, others in todo:
                for sid in others:
                    by_server.setdefault(sid, []).append(vol.id)
            for sid, ids in sorted(by_server.items()):
                self.wait_nova_detached(sid, ids)       # one wait per server for all of its volumes
        # The POSTs go out in parallel: nova-compute carries out the attaches of one server one after
        # the other (instance lock) whatever we do, but with every request queued there it never idles
        # between two of them (measured here: 10 attaches 32-35 s instead of 36-40 s one POST after the
        # other); each POST still answers for itself, so a refused attach is reported. Volumes still
        # being created are attached each as soon as it is available (create and attach overlap). Then
        # ONE wait for all of them.
        pending_create = [v for v, _others in todo if v.extra.get('status') not in ('available', 'in-use')]
        errors = []
        if todo:
            self.client.conn  # pylint: disable=pointless-statement  # connect once, before the threads share it
            with ThreadPoolExecutor(max_workers=min(8, len(todo))) as pool:
                futures = [pool.submit(self.post_attachment, server, vol)
                           for vol, _others in todo if vol not in pending_create]
                if pending_create:
                    by_id = dict((v.id, v) for v in pending_create)
                    try:
                        self.volumes.wait_status(
                            [self.volumes.get(v.id) for v in pending_create], ('available',), 'to become available',
                            on_done=lambda raw: futures.append(pool.submit(self.post_attachment, server,
                                                                           by_id[raw.id])))
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
            done = self.volumes.wait_status(
                [self.volumes.get(v.id) for v, _others in todo], ('in-use',), 'to be attached to %s' % server.name,
                check=lambda r: server.id in [a.get('server_id') for a in (r.attachments or [])])
            for vol, _others in todo:
                new = self.volumes.to_backend_volume(done[vol.id], vol.name)
                new.attached_here = server.id == here_id
                new.extra['fresh'] = vol.extra.get('fresh', False)
                out[vol.id] = new
        return [out[v.id] for v in volumes]

    def _settled(self, volumes):
        """Volumes another run is attaching or detaching right now (reserved, attaching, detaching:
        e.g. a second controller running for the same host) are waited for until that is over, then
        looked at again (attached here already: nothing to do; elsewhere: the usual rules)."""
        busy = [v for v in volumes if v.extra.get('status') in BUSY_STATUSES]
        if not busy or not self.client.wait:
            return volumes
        done = self.volumes.wait_status([self.volumes.get(v.id) for v in busy], ('available', 'in-use'),
                                        'to finish an attach or detach in progress')
        out = []
        for vol in volumes:
            if vol in busy:
                new = self.volumes.to_backend_volume(done[vol.id], vol.name)
                new.extra['fresh'] = vol.extra.get('fresh', False)
                vol = new
            out.append(vol)
        return out

    def post_attachment(self, server, vol):
        """POST one attach; retried while the answer is transient, unless it went through anyway."""
        def went_through(_err):
            raw = self.volumes.get(vol.id)
            if raw is not None and (raw.status in ('attaching', 'reserved') or server.id in [
                    a.get('server_id') for a in (raw.attachments or [])]):
                return None
            return AGAIN
        try:
            return self.client.retry(
                lambda: self.client.attempt('attaching Cinder volume %s to server %s' % (vol.id, server.name),
                                            self.compute.create_volume_attachment, server, volume_id=vol.id),
                on_unavailable=went_through)
        except PVError as exc:
            if went_through(exc) is None:
                return None
            raise reworded(exc, 'volume %s: %s' % (vol.name, exc))

    # -- detach ------------------------------------------------------------------------------
    def delete_attachment(self, server_id, volume_id):
        try:
            self.client.call('detaching volume %s from server %s' % (volume_id, server_id),
                             self.compute.delete_volume_attachment, server_id, volume_id)
        except NotFound:
            pass

    def detach_many(self, volumes, server=None):
        """Detach from ``server`` (default: this host's). No-op for a volume not attached there."""
        server_id = server.id if server is not None else self.client.server().id
        todo = []
        for vol in volumes:
            if server_id in (vol.extra.get('attached_servers') or []):
                self.volumes.ensure_ours(vol, 'detach')
                self.delete_attachment(server_id, vol.id)
                todo.append(vol)
        out = dict((v.id, v) for v in volumes)
        if todo:
            done = self.volumes.wait_status(
                [self.volumes.get(v.id) for v in todo], ('available', 'in-use'), 'to be detached',
                check=lambda r: server_id not in [a.get('server_id') for a in (r.attachments or [])]
                and r.status != 'detaching')
            self.wait_nova_detached(server_id, [v.id for v in todo])
            for vol in todo:
                out[vol.id] = self.volumes.to_backend_volume(done[vol.id], vol.name)
        return [out[v.id] for v in volumes]

    def detach_all(self, volume):
        """Detach from every server it is attached to (``state: absent`` with ``detach: true``)."""
        servers = list(volume.extra.get('attached_servers') or [])
        if not servers:
            return volume
        self.volumes.ensure_ours(volume, 'detach')
        for sid in servers:
            self.delete_attachment(sid, volume.id)
        done = self.volumes.wait_status([self.volumes.get(volume.id)], ('available',), 'to be detached')
        for sid in servers:
            self.wait_nova_detached(sid, [volume.id])
        return self.volumes.to_backend_volume(done[volume.id], volume.name)

    def wait_nova_detached(self, server_id, volume_ids):
        """Cinder says available a moment before Nova drops its block device mapping; a new
        attach in between is refused ("already attached"). Wait for Nova too."""
        if not self.client.wait:
            return None
        left = set()

        def round_():
            try:
                listed = set(a.volume_id for a in self.client.call(
                    'listing attachments of server %s' % server_id,
                    lambda: list(self.compute.volume_attachments(server_id))))
            except NotFound:
                return None             # the server is gone: nothing attached to it
            left.clear()
            left.update(listed.intersection(volume_ids))
            return None if not left else AGAIN

        def timed_out():
            raise TimedOut('timed out after %ss waiting for Nova to detach volume(s) %s from server %s'
                           % (self.client.timeout, ', '.join(sorted(left)), server_id))
        return poll(round_, self.client.timeout, timed_out, interval=0.1, factor=1.5, max_interval=1.0)
