# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""cinder backend logic with a stubbed connection (the real cloud is in tests/integration/cinder)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json

import pytest

from ansible_collections.persistent_volumes.docker.plugins.module_utils.backends import cinder as bc
from ansible_collections.persistent_volumes.docker.plugins.module_utils.backends.base import VolumeRequest, get_backend
from ansible_collections.persistent_volumes.docker.plugins.module_utils.common import PVError

openstack = pytest.importorskip('openstack')
from openstack import exceptions as os_exc  # noqa: E402
from keystoneauth1 import exceptions as ksa_exc  # noqa: E402

GIB = 1024 ** 3
VID = '0b8ef2ad-0d7d-4c8d-a4a8-5f2a6b1c9e33'


class Raw(object):
    def __init__(self, id=VID, name='v', size=1, status='available', metadata=None, attachments=None):
        self.id, self.name, self.size, self.status = id, name, size, status
        self.metadata = metadata if metadata is not None else {}
        self.attachments = attachments or []
        self.volume_type, self.availability_zone, self.description = '__DEFAULT__', 'nova', None
        self.is_multiattach = False


def ours(name, id=VID, **kw):
    return Raw(id=id, name=name, metadata={bc.OWNER_KEY: bc.OWNER_VALUE, bc.NAME_KEY: name}, **kw)


class Stub(bc.CinderBackend):
    """The backend with the listing stubbed."""

    def __init__(self, listed=(), by_id=None, **params):
        super(Stub, self).__init__(dict(params, retry_timeout=params.get('retry_timeout', 2)), conn=object())
        self.listed = list(listed)
        self.by_id = dict(by_id or {})

    def _list_owned(self, name=None):
        return [r for r in self.listed if name is None or r.metadata.get(bc.NAME_KEY) == name]

    def _get(self, volume_id):
        return self.by_id.get(volume_id)


def test_locators_are_stable_ids_only():
    locs = bc.locators(VID)
    assert locs == [
        '/dev/disk/by-id/virtio-0b8ef2ad-0d7d-4c8d-a',
        '/dev/disk/by-id/virtio-' + VID,
        '/dev/disk/by-id/scsi-0QEMU_QEMU_HARDDISK_0b8ef2ad-0d7d-4c8d-a',
        '/dev/disk/by-id/scsi-0QEMU_QEMU_HARDDISK_' + VID,
        '/dev/disk/by-id/wwn-0x0b8ef2ad0d7d4c8da4a85f2a6b1c9e33',
    ]
    assert bc.locators(VID, '/tmp/x')[0] == '/tmp/x/disk/by-id/virtio-0b8ef2ad-0d7d-4c8d-a'


@pytest.mark.parametrize('text,expected', [('1', GIB), ('10', 10 * GIB), ('2GiB', 2 * GIB), ('1TiB', 1024 * GIB),
                                           (None, None)])
def test_parse_gib(text, expected):
    assert bc.parse_gib(text) == expected


@pytest.mark.parametrize('text,msg', [('1.5GiB', 'whole number of GiB'), ('1GB', 'whole number of GiB'),
                                      ('0', 'at least 1'), ('x', 'not a size')])
def test_parse_gib_errors(text, msg):
    with pytest.raises(PVError, match=msg):
        bc.parse_gib(text)


def test_transient_errors():
    assert bc.is_transient(os_exc.HttpException(message='x', http_status=503))
    assert bc.is_transient(os_exc.HttpException(message='x', http_status=500))
    assert not bc.is_transient(os_exc.HttpException(message='x', http_status=400))
    assert not bc.is_transient(os_exc.NotFoundException(message='x', http_status=404))
    assert bc.is_transient(ksa_exc.ConnectFailure('refused'))
    assert bc.is_transient(ksa_exc.ConnectTimeout('slow'))
    assert bc.is_timeout(ksa_exc.ConnectTimeout('slow'))
    assert not bc.is_timeout(ksa_exc.ConnectFailure('refused'))
    assert not bc.is_transient(ValueError('x'))


def test_call_retries_then_succeeds_and_gives_up(monkeypatch):
    monkeypatch.setattr(bc.time, 'sleep', lambda s: None)
    b = Stub()
    answers = [os_exc.HttpException(message='busy', http_status=503)] * 2 + ['ok']

    def flaky():
        item = answers.pop(0)
        if isinstance(item, Exception):
            raise item
        return item
    assert b.call('x', flaky) == 'ok'

    def down():
        raise ksa_exc.ConnectFailure('Unable to establish connection')
    b.retry_timeout = 0.2
    with pytest.raises(PVError, match='gave up retrying'):
        b.call('listing volumes', down)

    def bad():
        raise os_exc.BadRequestException(message='Invalid input', http_status=400)
    with pytest.raises(PVError, match='listing volumes failed: .*Invalid input'):
        b.call('listing volumes', bad)


def test_create_body_tags_at_create_time():
    b = Stub(metadata={'team': 'a'}, volume_type='ssd')
    body = b._create_body(VolumeRequest('data', 2 * GIB, {'availability_zone': 'az1', 'metadata': {'x': 1}}), 'tok')
    assert body['size'] == 2 and body['name'] == 'data'
    assert body['volume_type'] == 'ssd' and body['availability_zone'] == 'az1'
    assert body['metadata'] == {'team': 'a', 'x': '1', bc.OWNER_KEY: bc.OWNER_VALUE, bc.NAME_KEY: 'data',
                                bc.TOKEN_KEY: 'tok'}
    with pytest.raises(PVError, match='reserved'):
        b._create_body(VolumeRequest('data', GIB, {'metadata': {bc.NAME_KEY: 'other'}}), 'tok')
    with pytest.raises(PVError, match='whole number of GiB'):
        b._create_body(VolumeRequest('data', GIB + 1), 'tok')
    with pytest.raises(PVError, match='unknown cinder option'):
        b._create_body(VolumeRequest('data', GIB, {'datastore': 'x'}), 'tok')
    with pytest.raises(PVError, match='reserved'):
        Stub(metadata={bc.OWNER_KEY: 'x'})


def test_lookup_matches_our_marks_only_and_refuses_ambiguity():
    b = Stub(listed=[ours('a', id='1' * 36), ours('b', id='2' * 36)])
    found = b.lookup([VolumeRequest('a', GIB), VolumeRequest('c', GIB)])
    assert list(found) == ['a'] and found['a'].id == '1' * 36 and found['a'].owned
    assert found['a'].size == GIB and found['a'].locators[0].endswith('virtio-' + '1' * 20)
    b.listed.append(ours('a', id='3' * 36))
    with pytest.raises(PVError, match='2 Cinder volumes carry our mark'):
        b.lookup([VolumeRequest('a', GIB)])


def test_adopt_by_id():
    foreign = Raw(id='9' * 36, name='legacy', metadata={'owner': 'x'})
    b = Stub(by_id={foreign.id: foreign})
    found = b.lookup([VolumeRequest('mine', None, adopt_id=foreign.id)])
    vol = found['mine']
    assert vol.owned and vol.extra['adopted']
    with pytest.raises(PVError, match='does not exist'):
        b.lookup([VolumeRequest('mine', None, adopt_id='8' * 36)])
    taken = ours('other', id='7' * 36)
    b.by_id[taken.id] = taken
    with pytest.raises(PVError, match='already belongs to volume other'):
        b.lookup([VolumeRequest('mine', None, adopt_id=taken.id)])


def test_not_ours_is_never_modified():
    b = Stub()
    foreign = b.to_backend_volume(Raw(metadata={'owner': 'x'}))
    assert not foreign.owned
    for action in ('grow', 'attach', 'detach', 'delete'):
        with pytest.raises(PVError, match='not created by this collection'):
            b._ensure_ours(foreign, action)


def test_shrink_refused_and_same_size_noop():
    b = Stub()
    vol = b.to_backend_volume(ours('a', size=2))
    with pytest.raises(PVError, match='refusing to shrink'):
        b.grow(vol, GIB)
    assert b.grow(vol, 2 * GIB) is vol


def test_post_create_finds_a_create_that_went_through(monkeypatch):
    monkeypatch.setattr(bc.time, 'sleep', lambda s: None)

    class Conn(object):
        class block_storage(object):
            calls = []

            @classmethod
            def create_volume(cls, **body):
                cls.calls.append(body)
                made.append(Raw(id='5' * 36, name=body['name'], metadata=body['metadata'], status='creating'))
                raise os_exc.HttpException(message='gateway', http_status=502)
    made = []
    b = Stub(retry_timeout=5)
    b._conn = Conn()
    b._list_owned = lambda name=None: made
    raw = b._post_create(VolumeRequest('a', GIB))
    assert raw.id == '5' * 36 and len(Conn.block_storage.calls) == 1


def test_ensure_volumes_plans_before_changing(monkeypatch):
    b = Stub(listed=[ours('a', size=2)])
    calls = []
    monkeypatch.setattr(b, 'create_many', lambda reqs: calls.append('create'))
    with pytest.raises(PVError, match='refusing to shrink'):
        bc.ensure_volumes(b, [dict(name='new', size=GIB), dict(name='a', size=GIB)])
    assert calls == []
    records, changed, diff = bc.ensure_volumes(b, [dict(name='new', size=GIB), dict(name='a', size=4 * GIB)],
                                               check_mode=True)
    assert changed and [r['actions'] for r in records] == [['create'], ['grow']]
    assert diff['after']['a']['size'] == '4GiB' and diff['before']['new'] == {'state': 'absent'}
    assert calls == []
    attached = ours('b', attachments=[{'server_id': 's1', 'attachment_id': 'x'}], status='in-use')
    b.listed.append(attached)
    with pytest.raises(PVError, match='set detach: true'):
        bc.ensure_volumes(b, [dict(name='b', state='absent')])


def test_config_drive_directory(tmp_path):
    meta = tmp_path / 'openstack' / 'latest'
    meta.mkdir(parents=True)
    (meta / 'meta_data.json').write_text(json.dumps({'uuid': 'abc-123', 'name': 'host'}))
    assert bc.read_instance_uuid(str(tmp_path), metadata_url=None) == 'abc-123'
    assert bc.read_instance_uuid(str(tmp_path / 'missing'), metadata_url=None) is None


def test_argument_spec_hides_secrets():
    spec = bc.argument_spec()
    assert spec['auth']['no_log'] is True
    assert spec['interface']['default'] == 'public'


def test_registered_backend():
    b = get_backend('cinder', {'cloud': 'nowhere'})
    assert isinstance(b, bc.CinderBackend) and b.scope == 'global'


def test_attach_many_attaches_each_volume_as_soon_as_it_is_available(monkeypatch):
    """Volumes still being created are attached one by one as they become available, not after the
    slowest one; an available volume is attached before any waiting."""
    ids = ['%d' % i * 36 for i in range(1, 4)]
    # polling rounds (sleeps) before each volume is available: ids[0] now, ids[1] after 1, ids[2] after 3
    ready_after = {ids[0]: 0, ids[1]: 1, ids[2]: 3}
    rounds = [0]
    events = []
    posted = []

    real_sleep = bc.time.sleep

    def sleep(_seconds):
        real_sleep(0.05)            # the attach POSTs run in threads: let them go first
        rounds[0] += 1
        events.append('sleep')
    monkeypatch.setattr(bc.time, 'sleep', sleep)

    class Server(object):
        id, name = 'srv', 'host'

    def raw(vid):
        if vid in posted:
            return ours('v' + vid[0], id=vid, status='in-use', attachments=[{'server_id': 'srv'}])
        status = 'available' if rounds[0] >= ready_after[vid] else 'creating'
        return ours('v' + vid[0], id=vid, status=status)
    b = Stub(server='host')
    b._server = Server()
    b._get = raw
    b._list_owned = lambda name=None: [raw(v) for v in ids]

    def post(server, vol):
        if vol.id == ids[2]:
            raise PVError('refused')
        events.append('attach ' + vol.id[0])
        posted.append(vol.id)
    b._post_attachment = post
    vols = [b.to_backend_volume(ours('v' + v[0], id=v, status='available' if v == ids[0] else 'creating'))
            for v in ids]
    with pytest.raises(PVError, match='refused'):
        b.attach_many(vols)         # one POST refused: reported, after the others went out
    assert events == ['attach 1', 'sleep', 'attach 2', 'sleep', 'sleep']
    del events[:], posted[:]
    rounds[0] = 0
    b._post_attachment = lambda server, vol: (events.append('attach ' + vol.id[0]), posted.append(vol.id))
    done = b.attach_many(vols)
    assert [v.id for v in done] == ids
    assert [v.extra['status'] for v in done] == ['in-use'] * 3
    assert events == ['attach 1', 'sleep', 'attach 2', 'sleep', 'sleep', 'attach 3']
