# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""openstack/ volumes, attach and service logic with stubbed reads (the real cloud is in
tests/integration/cinder)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import time

import pytest

from ansible_collections.persistent_volumes.docker.plugins.module_utils.backends.base import VolumeRequest
from ansible_collections.persistent_volumes.docker.plugins.module_utils.backends.registry import get_backend
from ansible_collections.persistent_volumes.docker.plugins.module_utils.common import (
    Conflict, InUse, NotFound, PVError, Refused, TimedOut)
from ansible_collections.persistent_volumes.docker.plugins.module_utils.openstack import discovery
from ansible_collections.persistent_volumes.docker.plugins.module_utils.openstack import service
from ansible_collections.persistent_volumes.docker.plugins.module_utils.openstack import spec as osspec
from ansible_collections.persistent_volumes.docker.plugins.module_utils.openstack import volumes as osv
from ansible_collections.persistent_volumes.docker.tests.unit.plugins.module_utils.openstack.openstack_stubs import (
    GIB, VID, Raw, ours, stub_cinder)

openstack = pytest.importorskip('openstack')
from openstack import exceptions as os_exc  # noqa: E402


def test_locators_are_stable_ids_only():
    locs = osv.locators(VID)
    assert locs == [
        '/dev/disk/by-id/virtio-0b8ef2ad-0d7d-4c8d-a',
        '/dev/disk/by-id/virtio-' + VID,
        '/dev/disk/by-id/scsi-0QEMU_QEMU_HARDDISK_0b8ef2ad-0d7d-4c8d-a',
        '/dev/disk/by-id/scsi-0QEMU_QEMU_HARDDISK_' + VID,
        '/dev/disk/by-id/wwn-0x0b8ef2ad0d7d4c8da4a85f2a6b1c9e33',
    ]
    assert osv.locators(VID, '/tmp/x')[0] == '/tmp/x/disk/by-id/virtio-0b8ef2ad-0d7d-4c8d-a'


@pytest.mark.parametrize('text,expected', [('1', GIB), ('10', 10 * GIB), ('2GiB', 2 * GIB), ('1TiB', 1024 * GIB),
                                           (None, None)])
def test_parse_gib(text, expected):
    assert osv.parse_gib(text) == expected


@pytest.mark.parametrize('text,msg', [('1.5GiB', 'whole number of GiB'), ('1GB', 'whole number of GiB'),
                                      ('0', 'at least 1'), ('x', 'not a size')])
def test_parse_gib_errors(text, msg):
    with pytest.raises(PVError, match=msg):
        osv.parse_gib(text)


def test_create_body_tags_at_create_time():
    c = stub_cinder(metadata={'team': 'a'}, volume_type='ssd')
    body = c.volumes.create_body(VolumeRequest('data', 2 * GIB, {'availability_zone': 'az1', 'metadata': {'x': 1}}),
                                 'tok')
    assert body['size'] == 2 and body['name'] == 'data'
    assert body['volume_type'] == 'ssd' and body['availability_zone'] == 'az1'
    assert body['metadata'] == {'team': 'a', 'x': '1', osv.OWNER_KEY: osv.OWNER_VALUE, osv.NAME_KEY: 'data',
                                osv.TOKEN_KEY: 'tok'}
    with pytest.raises(PVError, match='reserved'):
        c.volumes.create_body(VolumeRequest('data', GIB, {'metadata': {osv.NAME_KEY: 'other'}}), 'tok')
    with pytest.raises(PVError, match='whole number of GiB'):
        c.volumes.create_body(VolumeRequest('data', GIB + 1), 'tok')
    with pytest.raises(PVError, match='unknown cinder option'):
        c.volumes.create_body(VolumeRequest('data', GIB, {'datastore': 'x'}), 'tok')
    with pytest.raises(PVError, match='reserved'):
        stub_cinder(metadata={osv.OWNER_KEY: 'x'})


def test_lookup_matches_our_marks_only_and_refuses_ambiguity():
    c = stub_cinder(listed=[ours('a', id='1' * 36), ours('b', id='2' * 36)])
    found = c.volumes.lookup([VolumeRequest('a', GIB), VolumeRequest('c', GIB)])
    assert list(found) == ['a'] and found['a'].id == '1' * 36 and found['a'].owned
    assert found['a'].size == GIB and found['a'].locators[0].endswith('virtio-' + '1' * 20)
    c.volumes.listed.append(ours('a', id='3' * 36))
    with pytest.raises(Conflict, match='2 Cinder volumes carry our mark'):
        c.volumes.lookup([VolumeRequest('a', GIB)])


def test_adopt_by_id():
    foreign = Raw(id='9' * 36, name='legacy', metadata={'owner': 'x'})
    c = stub_cinder(by_id={foreign.id: foreign})
    vol = c.volumes.lookup([VolumeRequest('mine', None, adopt_id=foreign.id)])['mine']
    assert vol.owned and vol.extra['adopted']
    with pytest.raises(NotFound, match='does not exist'):
        c.volumes.lookup([VolumeRequest('mine', None, adopt_id='8' * 36)])
    taken = ours('other', id='7' * 36)
    c.volumes.by_id_map[taken.id] = taken
    with pytest.raises(Conflict, match='already belongs to volume other'):
        c.volumes.lookup([VolumeRequest('mine', None, adopt_id=taken.id)])


def test_not_ours_is_never_modified():
    c = stub_cinder()
    foreign = c.volumes.to_backend_volume(Raw(metadata={'owner': 'x'}))
    assert not foreign.owned
    for action in ('grow', 'attach', 'detach', 'delete'):
        with pytest.raises(Refused, match='not created by this collection'):
            c.volumes.ensure_ours(foreign, action)
    server = type('Server', (), {'id': 'srv', 'name': 'host'})()
    with pytest.raises(Refused, match='not created by this collection'):
        c.attachments.attach_many([foreign], server=server)


def test_shrink_refused_and_same_size_noop():
    c = stub_cinder()
    vol = c.volumes.to_backend_volume(ours('a', size=2))
    with pytest.raises(Refused, match='refusing to shrink'):
        c.volumes.grow(vol, GIB)
    assert c.volumes.grow(vol, 2 * GIB) is vol


def test_post_create_finds_a_create_that_went_through(monkeypatch):
    monkeypatch.setattr(time, 'sleep', lambda s: None)
    made = []

    class Conn(object):
        class block_storage(object):
            calls = []

            @classmethod
            def create_volume(cls, **body):
                cls.calls.append(body)
                made.append(Raw(id='5' * 36, name=body['name'], metadata=body['metadata'], status='creating'))
                raise os_exc.HttpException(message='gateway', http_status=502)
    c = stub_cinder(retry_timeout=5, conn=Conn())
    c.volumes.list_owned = lambda name=None: made
    raw = c.volumes.post_create(VolumeRequest('a', GIB))
    assert raw.id == '5' * 36 and len(Conn.block_storage.calls) == 1


def test_ensure_volumes_plans_before_changing(monkeypatch):
    c = stub_cinder(listed=[ours('a', size=2)])
    calls = []
    monkeypatch.setattr(c.volumes, 'create_many', lambda reqs: calls.append('create'))
    with pytest.raises(Refused, match='refusing to shrink'):
        service.ensure_volumes(c, [dict(name='new', size=GIB), dict(name='a', size=GIB)])
    assert calls == []
    records, changed, diff = service.ensure_volumes(c, [dict(name='new', size=GIB), dict(name='a', size=4 * GIB)],
                                                    check_mode=True)
    assert changed and [r['actions'] for r in records] == [['create'], ['grow']]
    assert diff['after']['a']['size'] == '4GiB' and diff['before']['new'] == {'state': 'absent'}
    assert calls == []
    attached = ours('b', attachments=[{'server_id': 's1', 'attachment_id': 'x'}], status='in-use')
    c.volumes.listed.append(attached)
    with pytest.raises(InUse, match='set detach: true'):
        service.ensure_volumes(c, [dict(name='b', state='absent')])


def test_ensure_attachments_refuses_foreign_before_changing():
    """A volume attached to another (running) server is refused in check mode and in a real run alike."""
    attached = ours('b', id='2' * 36, attachments=[{'server_id': 'other'}], status='in-use')

    class Server(object):
        def __init__(self, id, status='ACTIVE'):
            self.id, self.name, self.status = id, id, status
    c = stub_cinder(listed=[attached], by_id={attached.id: attached})
    c.client._server = Server('srv')
    c.client.get_server = Server
    for check_mode in (True, False):
        with pytest.raises(InUse, match='attached to another server'):
            service.ensure_attachments(c, ['b'], check_mode=check_mode)
    c.attachments.force_detach = True
    for check_mode in (True, False):
        with pytest.raises(Refused, match='fencing'):
            service.ensure_attachments(c, ['b'], check_mode=check_mode)
    with pytest.raises(NotFound, match='volume nope not found'):
        service.ensure_attachments(c, ['nope'], check_mode=True)


def test_config_drive_directory(tmp_path):
    meta = tmp_path / 'openstack' / 'latest'
    meta.mkdir(parents=True)
    (meta / 'meta_data.json').write_text(json.dumps({'uuid': 'abc-123', 'name': 'host'}))
    assert discovery.read_instance_uuid(str(tmp_path), metadata_url=None) == 'abc-123'
    assert discovery.read_instance_uuid(str(tmp_path / 'missing'), metadata_url=None) is None


def test_argument_spec_hides_secrets():
    spec = osspec.argument_spec()
    assert spec['auth']['no_log'] is True
    assert spec['interface']['default'] == 'public'


def test_registered_backend():
    from ansible_collections.persistent_volumes.docker.plugins.module_utils.backends.cinder import CinderBackend
    b = get_backend('cinder', {'cloud': 'nowhere'})
    assert isinstance(b, CinderBackend) and b.scope == 'global'


def test_attach_many_attaches_each_volume_as_soon_as_it_is_available(monkeypatch):
    """Volumes still being created are attached one by one as they become available, not after the
    slowest one; an available volume is attached before any waiting."""
    ids = ['%d' % i * 36 for i in range(1, 4)]
    # polling rounds (sleeps) before each volume is available: ids[0] now, ids[1] after 1, ids[2] after 3
    ready_after = {ids[0]: 0, ids[1]: 1, ids[2]: 3}
    rounds = [0]
    events = []
    posted = []

    real_sleep = time.sleep

    def sleep(_seconds):
        real_sleep(0.05)            # the attach POSTs run in threads: let them go first
        rounds[0] += 1
        events.append('sleep')
    monkeypatch.setattr(time, 'sleep', sleep)

    class Server(object):
        id, name = 'srv', 'host'

    def raw(vid):
        if vid in posted:
            return ours('v' + vid[0], id=vid, status='in-use', attachments=[{'server_id': 'srv'}])
        status = 'available' if rounds[0] >= ready_after[vid] else 'creating'
        return ours('v' + vid[0], id=vid, status=status)
    c = stub_cinder(server='host')
    c.client._server = Server()
    c.volumes.get = raw
    c.volumes.list_owned = lambda name=None: [raw(v) for v in ids]

    def post(server, vol):
        if vol.id == ids[2]:
            raise PVError('refused')
        events.append('attach ' + vol.id[0])
        posted.append(vol.id)
    c.attachments.post_attachment = post
    vols = [c.volumes.to_backend_volume(ours('v' + v[0], id=v, status='available' if v == ids[0] else 'creating'))
            for v in ids]
    with pytest.raises(PVError, match='refused'):
        c.attachments.attach_many(vols)     # one POST refused: reported, after the others went out
    assert events == ['attach 1', 'sleep', 'attach 2', 'sleep', 'sleep']
    del events[:], posted[:]
    rounds[0] = 0
    c.attachments.post_attachment = lambda server, vol: (events.append('attach ' + vol.id[0]), posted.append(vol.id))
    done = c.attachments.attach_many(vols)
    assert [v.id for v in done] == ids
    assert [v.extra['status'] for v in done] == ['in-use'] * 3
    assert events == ['attach 1', 'sleep', 'attach 2', 'sleep', 'sleep', 'attach 3']


class _Compute(object):
    """Nova's servers for the fence_stop tests: ``stop_server`` turns a server SHUTOFF after
    ``rounds`` reads (0: never)."""

    def __init__(self, statuses, rounds=2):
        self.statuses = dict(statuses)
        self.rounds = rounds
        self.stopped = []
        self.reads = {}
        self.detached = []

    def server(self, sid):
        class Server(object):
            pass
        srv = Server()
        srv.id, srv.name, srv.status, srv.task_state = sid, 'name-' + sid, self.statuses[sid], None
        return srv

    def get_server(self, sid):
        if sid in self.stopped and self.rounds:
            self.reads[sid] = self.reads.get(sid, 0) + 1
            if self.reads[sid] >= self.rounds:
                self.statuses[sid] = 'SHUTOFF'
        return self.server(sid)

    def stop_server(self, srv):
        self.stopped.append(srv.id)


def _fence_cinder(monkeypatch, status, rounds=2, **params):
    monkeypatch.setattr(time, 'sleep', lambda _s: None)
    attached = ours('b', id='2' * 36, attachments=[{'server_id': 'other'}], status='in-use')
    compute = _Compute({'other': status, 'srv': 'ACTIVE'}, rounds)
    c = stub_cinder(listed=[attached], by_id={attached.id: attached}, force_detach=True, timeout=3, **params)
    c.client._server = compute.server('srv')
    c.client.get_server = compute.get_server
    c.attachments.__class__ = type('A', (c.attachments.__class__,), {'compute': property(lambda self: compute)})
    return c, compute, attached


def test_fence_stop_refused_without_it_and_nothing_stopped(monkeypatch):
    """ACTIVE other server, no fence_stop: refused (message names fence_stop), in check mode and in a run."""
    c, compute, _vol = _fence_cinder(monkeypatch, 'ACTIVE')
    for check_mode in (True, False):
        with pytest.raises(Refused, match='fence_stop: true'):
            service.ensure_attachments(c, ['b'], check_mode=check_mode)
    assert compute.stopped == []


def test_fence_stop_check_mode_reports_and_stops_nothing(monkeypatch):
    c, compute, _vol = _fence_cinder(monkeypatch, 'ACTIVE', fence_stop=True)
    records, changed, diff = service.ensure_attachments(c, ['b'], check_mode=True)
    assert changed and records[0]['stopped_servers'] == ['name-other']
    assert diff['after']['b']['stopped'] == ['name-other']
    assert compute.stopped == []


def test_fence_stop_stops_waits_then_detaches(monkeypatch):
    """The stop goes out first; the force-detach only once Nova reports SHUTOFF."""
    c, compute, vol = _fence_cinder(monkeypatch, 'ACTIVE', fence_stop=True)
    order = []

    def delete_attachment(sid, vid):
        order.append(('detach', sid, compute.statuses[sid]))
    c.attachments.delete_attachment = delete_attachment
    c.attachments.wait_nova_detached = lambda sid, ids: None
    c.volumes.wait_status = lambda raws, *a, **kw: dict((r.id, r) for r in raws)
    c.attachments.post_attachment = lambda server, v: order.append(('attach', server.id))
    done = []

    def attached(raws, wanted, what, **kw):
        done.append(what)
        return dict((r.id, ours('b', id=r.id, status='in-use', attachments=[{'server_id': 'srv'}])) for r in raws)
    c.volumes.wait_status = attached
    records, changed, _diff = service.ensure_attachments(c, ['b'])
    assert compute.stopped == ['other']
    assert order[0] == ('detach', 'other', 'SHUTOFF') and order[1] == ('attach', 'srv')
    assert changed and records[0]['stopped_servers'] == ['name-other']
    assert any('fence_stop' in w for w in c.warnings)
    assert vol.id == records[0]['volume_id']


def test_fence_stop_timeout_detaches_nothing(monkeypatch):
    """The server never gets SHUTOFF: TimedOut naming fence_stop, no detach."""
    c, compute, _vol = _fence_cinder(monkeypatch, 'ACTIVE', rounds=0, fence_stop=True)
    c.client.timeout = 0.2
    detached = []
    c.attachments.delete_attachment = lambda sid, vid: detached.append(sid)
    with pytest.raises(TimedOut, match='SHUTOFF after a Nova stop'):
        service.ensure_attachments(c, ['b'])
    assert compute.stopped == ['other'] and detached == []


def test_fence_stop_spec():
    spec = osspec.server_spec()
    assert spec['fence_stop'] == dict(type='bool', default=False)
    assert 'fence_stop' in osspec.volume_dict_spec()


def test_attached_elsewhere_skip_leaves_the_volume_there(monkeypatch):
    """attached_elsewhere=skip: a volume of ours on another server is not attached, not detached; its record
    says where it lives, a warning too; fail (the default) still refuses; force_detach still takes it over."""
    c, compute, vol = _fence_cinder(monkeypatch, 'ACTIVE')
    c.attachments.force_detach = False
    touched = []
    c.attachments.delete_attachment = lambda sid, vid: touched.append(('detach', sid))
    c.attachments.post_attachment = lambda server, v: touched.append(('attach', server.id))
    for check_mode in (True, False):
        records, changed, diff = service.ensure_attachments(c, ['b'], check_mode=check_mode, attached_elsewhere='skip')
        assert not changed and diff == {'before': {}, 'after': {}}
        assert records[0]['attached_elsewhere'] == ['name-other'] and records[0]['changed'] is False
        assert records[0]['volume_id'] == vol.id
    assert touched == [] and compute.stopped == []
    assert any('lives on server name-other (attached there), not on name-srv' in w for w in c.warnings)
    with pytest.raises(InUse, match='attached to another server'):
        service.ensure_attachments(c, ['b'], attached_elsewhere='fail')
    c.attachments.force_detach = True
    with pytest.raises(Refused, match='fencing'):       # force_detach: the usual takeover rules apply
        service.ensure_attachments(c, ['b'], attached_elsewhere='skip')


def _now(seconds_ago=0):
    import datetime
    return (datetime.datetime.utcnow() - datetime.timedelta(seconds=seconds_ago)).strftime('%Y-%m-%dT%H:%M:%S.000000')


def test_lookup_takes_the_oldest_while_a_concurrent_create_is_given_up():
    """A younger, unattached, just-made duplicate is a concurrent create being given up: the oldest is used;
    an older duplicate (or an attached one) is still a Conflict."""
    c = stub_cinder(listed=[ours('a', id='1' * 36, created_at=_now(5), status='in-use', attachments=[{'server_id': 's'}]),
                            ours('a', id='0' * 36, created_at=_now(1))])
    assert c.volumes.lookup([VolumeRequest('a', GIB)])['a'].id == '1' * 36
    c.volumes.listed[1] = ours('a', id='0' * 36, created_at=_now(600))     # old: not a concurrent create
    with pytest.raises(Conflict, match='2 Cinder volumes carry our mark'):
        c.volumes.lookup([VolumeRequest('a', GIB)])


def test_concurrent_create_the_younger_gives_its_own_up(monkeypatch):
    """Two runs created 'a' at once: the one whose volume is younger deletes its own and uses the oldest;
    the one whose volume is the oldest keeps it."""
    monkeypatch.setattr(time, 'sleep', lambda _s: None)
    older = ours('a', id='9' * 36, created_at=_now(2))
    mine = ours('a', id='1' * 36, created_at=_now(1))
    c = stub_cinder(listed=[older, mine])
    deleted = []

    class Api(object):
        def delete_volume(self, vid):
            deleted.append(vid)
            c.volumes.listed = [r for r in c.volumes.listed if r.id != vid]
    monkeypatch.setattr(type(c.volumes), 'api', property(lambda self: Api()))
    c.volumes.get = lambda vid: None if vid in deleted else ([r for r in c.volumes.listed if r.id == vid] or [None])[0]
    out = c.volumes._settle_concurrent_creates([VolumeRequest('a', GIB)], [mine])
    assert out == {mine.id: older} and deleted == [mine.id]
    assert any('another run created it at the same time' in w for w in c.warnings)
    # the other run (its volume is the oldest): keeps it, deletes nothing
    c2 = stub_cinder(listed=[older, ours('a', id='1' * 36, created_at=_now(1))])
    monkeypatch.setattr(type(c2.volumes), 'api', property(lambda self: Api()))
    assert c2.volumes._settle_concurrent_creates([VolumeRequest('a', GIB)], [older]) == {}
    assert deleted == [mine.id]
