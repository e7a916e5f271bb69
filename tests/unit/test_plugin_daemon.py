# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of the volume-plugin daemon: configuration, request validation,
reference counting, start-up reconciliation and the HTTP layer.

The engine, the mount table and the Docker probe are stubbed here (a small
in-memory world); tests/integration/plugin/ runs the real daemon against a
real dockerd, real loop devices, mkfs and mount.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import socket
import threading

import pytest

from ansible_collections.persistent_volumes.docker.plugins.module_utils.host import chain as host
from ansible_collections.persistent_volumes.docker.plugins.module_utils.plugin import driver as pdriver
from ansible_collections.persistent_volumes.docker.plugins.module_utils.plugin import server as pserver
from ansible_collections.persistent_volumes.docker.plugins.module_utils.plugin.protocol import RequestError
from ansible_collections.persistent_volumes.docker.plugins.module_utils.backends.base import BackendVolume
from ansible_collections.persistent_volumes.docker.plugins.module_utils.common import PVError, parse_size
from ansible_collections.persistent_volumes.docker.plugins.module_utils.plugin.config import PluginConfig


class World(object):
    """Storage, mounts and Docker as the stubs see them."""

    def __init__(self):
        self.sizes = {}
        self.mounted = set()
        self.calls = []
        self.holders = {}
        self.docker_up = True
        self.fail = None
        self.swarm = ''                  # Swarm.LocalNodeState of GET /info
        self.infos = 0                   # GET /info calls


class FakeBackend(object):
    def __init__(self, world):
        self.world = world

    def lookup(self, requests):
        return dict((r.name, BackendVolume(r.name, 'id-' + r.name, self.world.sizes[r.name]))
                    for r in requests if r.name in self.world.sizes)

    def list_volumes(self):
        return [BackendVolume(n, 'id-' + n, s) for n, s in self.world.sizes.items()]

    def close(self):
        return None


class FakeEngine(object):
    def __init__(self, world):
        self.world = world

    def backend(self, name):
        return FakeBackend(self.world)

    def apply(self, specs):
        results = []
        for spec in specs:
            name, state, path = spec['name'], spec['state'], spec['mount_path']
            if self.world.fail:
                raise PVError(self.world.fail)
            self.world.calls.append((name, state))
            actions = []
            if state == 'present':
                if name not in self.world.sizes:
                    self.world.sizes[name] = parse_size(spec['size'])
                    actions += ['create', 'attach', 'mkfs']
                if path not in self.world.mounted:
                    self.world.mounted.add(path)
                    actions.append('mount')
            else:
                if path in self.world.mounted:
                    self.world.mounted.discard(path)
                    actions += ['umount', 'detach']
                if state == 'absent' and name in self.world.sizes:
                    del self.world.sizes[name]
                    actions.append('delete')
            results.append({'name': name, 'size': self.world.sizes.get(name), 'backend_id': 'id-' + name,
                            'actions': actions})
        return results, {}

    def close(self):
        return None


class FakeProbe(object):
    def __init__(self, world):
        self.world = world

    def volume_holders(self, driver):
        if not self.world.docker_up:
            raise PVError('cannot reach the Docker engine')
        return dict((k, list(v)) for k, v in self.world.holders.items())

    def swarm_node_state(self):
        self.world.infos += 1
        if not self.world.docker_up:
            raise PVError('cannot reach the Docker engine')
        return self.world.swarm


def make_driver(tmp_path, world, **cfg):
    raw = {'driver': 'pv-unit', 'backend': 'loop', 'root': str(tmp_path / 'root'),
           'socket': str(tmp_path / 'p.sock'), 'defaults': {'size': '64MiB'}, 'unmount_grace': 0}
    raw.update(cfg)
    config = PluginConfig(raw)
    lines = []

    def mounts():
        return [host.Mount('0:1', p, 'ext4', '/dev/loop9', 'rw') for p in sorted(world.mounted)]

    driver = pdriver.VolumeDriver(config, engine_factory=lambda: FakeEngine(world), probe=FakeProbe(world),
                                  mounts=mounts, logger=lines.append)
    driver.lines = lines
    return driver


def saved(driver):
    with open(os.path.join(driver.root, 'plugin.json')) as handle:
        return json.load(handle)


@pytest.fixture
def world():
    return World()


@pytest.fixture
def driver(tmp_path, world):
    d = make_driver(tmp_path, world)
    d.start()
    return d


# -- configuration -----------------------------------------------------------------------

def test_config_defaults():
    cfg = PluginConfig({})
    assert cfg.driver == 'pv-loop'
    assert cfg.socket == '/run/docker/plugins/pv-loop.sock'
    assert cfg.root == '/var/lib/persistent-volumes/plugin/pv-loop'
    assert cfg.defaults['fstype'] == 'ext4'


@pytest.mark.parametrize('raw, message', [
    ({'backend': 'nfs'}, 'backend must be'),
    ({'driver': 'Bad/Name'}, 'driver'),
    ({'root': 'relative'}, 'root must be'),
    ({'socket': '/run/../etc/x.sock'}, 'socket must be'),
    ({'max_size': 'lots'}, 'max_size'),
    ({'defaults': {'colour': 'red'}}, 'unknown key'),
    ({'surprise': 1}, 'unknown configuration key'),
    ({'lost_found': 'shred'}, 'lost_found'),
    ({'docker_host': 'tcp://1.2.3.4:2375'}, 'docker_host'),
])
def test_config_rejects(raw, message):
    with pytest.raises(PVError, match=message):
        PluginConfig(raw)


def test_config_scrubs_secrets(tmp_path):
    path = tmp_path / 'c.json'
    path.write_text(json.dumps({'backend': 'vsphere', 'backend_params': {
        'hostname': 'vc.example', 'username': 'admin', 'password': 'S3cr3t-pw',
        'auth': {'token': 'tok-123456'}}}))
    cfg = PluginConfig.load(str(path))
    text = cfg.scrub('login admin:S3cr3t-pw failed with tok-123456; password=other')
    assert 'S3cr3t-pw' not in text and 'tok-123456' not in text and 'other' not in text
    assert 'vc.example' in cfg.scrub('vc.example')


def test_config_load_errors(tmp_path):
    with pytest.raises(PVError, match='cannot read'):
        PluginConfig.load(str(tmp_path / 'missing.json'))
    bad = tmp_path / 'bad.json'
    bad.write_text('{nope')
    with pytest.raises(PVError, match='not valid JSON'):
        PluginConfig.load(str(bad))


# -- create options ------------------------------------------------------------------------

@pytest.mark.parametrize('opts, message', [
    ({'size': '9' * 40}, 'not a size'),
    ({'size': '20TiB'}, 'allowed maximum'),
    ({'size': '1M'}, 'too small'),
    ({'size': '-5'}, 'not a size'),
    ({'fstype': 'btrfs'}, 'not supported'),
    ({'fstype': 'xfs', 'size': '100MiB'}, '300MiB'),
    ({'mode': 'rwx'}, 'octal'),
    ({'uid': 'no-such-user-pv'}, 'does not exist'),
    ({'datastore': 'ds1'}, 'unknown option'),
    ({'size': ['1G']}, 'must be a string'),
    ({'mount_options': 'ro nodev'}, 'invalid'),
    ('size=1G', 'must be an object'),
])
def test_create_rejects_bad_options(driver, world, opts, message):
    with pytest.raises(RequestError, match=message):
        driver.create({'Name': 'v1', 'Opts': opts})
    assert world.calls == []


@pytest.mark.parametrize('name', ['../etc', 'a/b', '', '.hidden', 'x' * 65, 'sp ace', 'nul\x00'])
def test_bad_names(driver, world, name):
    for op in (driver.create, driver.remove, driver.path, driver.get):
        with pytest.raises(RequestError):
            op({'Name': name})
    with pytest.raises(RequestError):
        driver.mount({'Name': name, 'ID': 'abc'})
    assert world.calls == []


def test_create_makes_storage_then_detaches(driver, world):
    payload, _note = driver.create({'Name': 'v1', 'Opts': {'size': '100MiB', 'uid': '1000', 'mode': '0750'}})
    assert payload == {'Err': ''}
    assert world.calls == [('v1', 'present'), ('v1', 'detached')]
    assert world.mounted == set()
    rec = saved(driver)['volumes']['v1']
    assert rec['size'] == 100 * 1024 ** 2 and rec['uid'] == '1000' and rec['mode'] == '0750'
    # idempotent: same or no options -> nothing happens; different options -> Err
    world.calls[:] = []
    assert driver.create({'Name': 'v1', 'Opts': {'size': '100MiB'}})[0] == {'Err': ''}
    assert driver.create({'Name': 'v1'})[0] == {'Err': ''}
    with pytest.raises(RequestError, match='different size'):
        driver.create({'Name': 'v1', 'Opts': {'size': '200MiB'}})
    assert world.calls == []


def test_create_adopts_existing_storage(driver, world):
    world.sizes['old'] = 512 * 1024 ** 2
    driver.create({'Name': 'old', 'Opts': {'size': '100MiB'}})
    assert world.calls == []
    assert saved(driver)['volumes']['old']['size'] == 512 * 1024 ** 2


def test_backend_error_is_err(driver, world):
    world.fail = 'cloud is down'
    with pytest.raises(PVError, match='cloud is down'):
        driver.create({'Name': 'v2'})
    assert 'v2' not in driver.store.volumes


# -- reference counting ----------------------------------------------------------------------

def test_refcount(driver, world):
    driver.create({'Name': 'v1'})
    world.calls[:] = []
    mp = driver.mountpoint('v1')
    assert driver.path({'Name': 'v1'})[0]['Mountpoint'] == ''
    assert driver.mount({'Name': 'v1', 'ID': 'a'})[0] == {'Mountpoint': mp, 'Err': ''}
    assert driver.mount({'Name': 'v1', 'ID': 'b'})[0]['Mountpoint'] == mp
    assert driver.mount({'Name': 'v1', 'ID': 'a'})[0]['Mountpoint'] == mp     # idempotent
    assert world.calls == [('v1', 'present')]
    assert saved(driver)['refs'] == {'v1': ['a', 'b']}
    assert driver.get({'Name': 'v1'})[0]['Volume']['Mountpoint'] == mp
    assert driver.path({'Name': 'v1'})[0]['Mountpoint'] == mp
    with pytest.raises(RequestError, match='mounted for 2'):
        driver.remove({'Name': 'v1'})
    driver.unmount({'Name': 'v1', 'ID': 'a'})
    driver.unmount({'Name': 'v1', 'ID': 'a'})                                 # idempotent
    assert world.mounted == {mp}
    driver.unmount({'Name': 'v1', 'ID': 'b'})
    assert world.mounted == set()
    assert world.calls == [('v1', 'present'), ('v1', 'detached')]
    assert saved(driver)['refs'] == {}
    assert 'Mountpoint' not in driver.get({'Name': 'v1'})[0]['Volume']
    driver.remove({'Name': 'v1'})
    assert 'v1' not in world.sizes and saved(driver)['volumes'] == {}
    assert driver.remove({'Name': 'v1'})[0] == {'Err': ''}                     # idempotent


def test_mount_remounts_when_not_mounted(driver, world):
    driver.create({'Name': 'v1'})
    driver.mount({'Name': 'v1', 'ID': 'a'})
    world.mounted.clear()                      # e.g. after a reboot
    driver.mount({'Name': 'v1', 'ID': 'a'})
    assert world.mounted == {driver.mountpoint('v1')}


def test_unknown_volume(driver):
    for op in (driver.path, driver.get):
        with pytest.raises(RequestError, match='no such volume'):
            op({'Name': 'ghost'})
    with pytest.raises(RequestError, match='no such volume'):
        driver.mount({'Name': 'ghost', 'ID': 'a'})
    with pytest.raises(RequestError, match='no such volume'):
        driver.unmount({'Name': 'ghost', 'ID': 'a'})


@pytest.mark.parametrize('caller', [None, '', 5, 'x' * 300, 'bad\nid'])
def test_bad_ids(driver, caller):
    driver.create({'Name': 'v1'})
    body = {'Name': 'v1'}
    if caller is not None:
        body['ID'] = caller
    with pytest.raises(RequestError, match='ID'):
        driver.mount(body)


def test_list_and_capabilities(driver):
    driver.create({'Name': 'b'})
    driver.create({'Name': 'a'})
    names = [v['Name'] for v in driver.list({})[0]['Volumes']]
    assert names == ['a', 'b']
    assert driver.capabilities({}) == {'Capabilities': {'Scope': 'local'}}
    assert driver.activate({}) == {'Implements': ['VolumeDriver']}


# -- start-up reconciliation ----------------------------------------------------------------

def _restart(tmp_path, world):
    d = make_driver(tmp_path, world)
    d.start()
    return d


def test_restart_keeps_references_docker_confirms(tmp_path, world, driver):
    driver.create({'Name': 'v1'})
    driver.mount({'Name': 'v1', 'ID': 'a'})
    world.holders = {'v1': ['c1']}
    d2 = _restart(tmp_path, world)
    assert d2.store.refs == {'v1': ['a']}
    assert world.mounted == {d2.mountpoint('v1')}
    world.calls[:] = []
    d2.mount({'Name': 'v1', 'ID': 'a'})
    assert world.calls == []                    # no second (stacked) mount
    d2.unmount({'Name': 'v1', 'ID': 'a'})
    assert world.mounted == set()


def test_restart_drops_references_docker_does_not_back(tmp_path, world, driver):
    driver.create({'Name': 'v1'})
    driver.mount({'Name': 'v1', 'ID': 'a'})
    driver.mount({'Name': 'v1', 'ID': 'b'})
    world.holders = {'v1': ['c1']}               # one of the two containers died meanwhile
    d2 = _restart(tmp_path, world)
    assert len(d2.store.refs['v1']) == 1
    world.holders = {}
    d2.unmount({'Name': 'v1', 'ID': 'zzz'})      # an ID we do not know: verification follows
    assert d2.verify()
    assert d2.store.refs == {} and world.mounted == set()


def test_restart_releases_unheld_mounts(tmp_path, world, driver):
    driver.create({'Name': 'v1'})
    driver.mount({'Name': 'v1', 'ID': 'a'})
    driver.store.refs.clear()                    # killed between mount and saving the reference
    driver.store.save()
    d2 = _restart(tmp_path, world)
    assert world.mounted == set() and d2.store.refs == {}


def test_restart_adopts_running_users_when_record_lost(tmp_path, world, driver):
    driver.create({'Name': 'v1'})
    driver.mount({'Name': 'v1', 'ID': 'a'})
    driver.store.refs.clear()
    driver.store.save()
    world.holders = {'v1': ['c1', 'c2']}
    d2 = _restart(tmp_path, world)
    assert d2.store.refs == {'v1': ['docker:c1', 'docker:c2']}
    assert world.mounted == {d2.mountpoint('v1')}


def test_restart_without_docker_defers(tmp_path, world, driver):
    driver.create({'Name': 'v1'})
    driver.mount({'Name': 'v1', 'ID': 'a'})
    world.docker_up = False
    world.holders = {}
    d2 = _restart(tmp_path, world)
    assert d2.store.refs == {'v1': ['a']} and world.mounted
    assert any('not reachable' in line for line in d2.lines)
    world.docker_up = True
    assert d2.verify()
    assert d2.store.refs == {} and world.mounted == set()


# -- HTTP layer ---------------------------------------------------------------------------------

@pytest.fixture
def server(tmp_path, world):
    d = make_driver(tmp_path, world)
    d.start()
    lines = []
    srv = pserver.bind(d.cfg.socket, d, lines.append)
    thread = threading.Thread(target=srv.serve_forever, kwargs={'poll_interval': 0.05}, daemon=True)
    thread.start()
    srv.lines = lines
    yield srv
    srv.shutdown()
    srv.server_close()


def raw_request(path, data, timeout=5):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    sock.connect(path)
    sock.sendall(data)
    sock.shutdown(socket.SHUT_WR)
    chunks = []
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
            if b'\r\n\r\n' in b''.join(chunks):
                head, _sep, body = b''.join(chunks).partition(b'\r\n\r\n')
                length = [int(l.split(b':')[1]) for l in head.split(b'\r\n') if l.lower().startswith(b'content-length')]
                if length and len(body) >= length[0]:
                    break
    finally:
        sock.close()
    data = b''.join(chunks)
    if not data.startswith(b'HTTP/'):
        return b'', data              # an HTTP/0.9-style request gets a bare body
    head, _sep, body = data.partition(b'\r\n\r\n')
    return head, body


def post(path, endpoint, body):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = (b'POST /' + endpoint.encode() + b' HTTP/1.1\r\nHost: plugin\r\nContent-Type: application/json\r\n'
           b'Content-Length: ' + str(len(data)).encode() + b'\r\nConnection: close\r\n\r\n' + data)
    head, body = raw_request(path, req)
    return head, json.loads(body.decode())


def test_socket_is_root_only(server):
    assert os.stat(server.server_address).st_mode & 0o777 == 0o600


def test_http_roundtrip(server):
    sock = server.server_address
    assert post(sock, 'Plugin.Activate', b'')[1] == {'Implements': ['VolumeDriver']}
    assert post(sock, 'VolumeDriver.Create', {'Name': 'h1', 'Opts': {'size': '32MiB'}})[1] == {'Err': ''}
    head, body = post(sock, 'VolumeDriver.Mount', {'Name': 'h1', 'ID': 'abc'})
    assert b'200' in head.split(b'\r\n')[0] and body['Mountpoint'].endswith('/mounts/h1')
    assert [v['Name'] for v in post(sock, 'VolumeDriver.List', {})[1]['Volumes']] == ['h1']
    assert any(line.startswith('Mount name=h1 id=abc ok') for line in server.lines)


HOSTILE = [
    b'GARBAGE\r\n\r\n',
    b'POST /VolumeDriver.Create HTTP/1.1\r\nContent-Length: 5\r\n\r\n{"Na',
    b'POST /VolumeDriver.Create HTTP/1.1\r\nContent-Length: abc\r\n\r\n',
    b'POST /VolumeDriver.Create HTTP/1.1\r\nContent-Length: -4\r\n\r\n',
    b'POST /VolumeDriver.Create HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\n',
    b'POST /VolumeDriver.Create HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n',
    b'GET /VolumeDriver.List HTTP/1.1\r\n\r\n',
    b'POST /../../etc/passwd HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}',
    b'POST /VolumeDriver.Mount HTTP/1.1\r\nContent-Length: 4\r\n\r\n\xff\xfe\x00\x01',
    b'POST /VolumeDriver.Mount HTTP/1.1\r\nContent-Length: 2\r\n\r\n[]',
    b'POST /VolumeDriver.Mount HTTP/1.1\r\nContent-Length: 4\r\n\r\nnull',
    b'POST /VolumeDriver.Create HTTP/1.1\r\n' + b'X-Long: ' + b'a' * 70000 + b'\r\n\r\n',
]


@pytest.mark.parametrize('data', HOSTILE, ids=range(len(HOSTILE)))
def test_http_hostile_requests_get_err(server, data):
    _head, body = raw_request(server.server_address, data)
    assert 'Err' in json.loads(body.decode()) and json.loads(body.decode())['Err']
    # still alive
    assert post(server.server_address, 'VolumeDriver.Capabilities', b'')[1] == {'Capabilities': {'Scope': 'local'}}


def test_bind_refuses_live_socket(server, tmp_path, world):
    with pytest.raises(PVError, match='already serves'):
        pserver.bind(server.server_address, server.driver, lambda line: None)


def test_bind_replaces_stale_socket(tmp_path, world):
    path = str(tmp_path / 'stale.sock')
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    s.close()                                     # a socket file nobody listens on
    d = make_driver(tmp_path, world)
    srv = pserver.bind(path, d, lambda line: None)
    srv.server_close()


def test_config_cinder_enables_fenced_force_detach():
    assert PluginConfig({'backend': 'cinder'}).backend_params['force_detach'] is True
    assert PluginConfig({'backend': 'cinder', 'backend_params': {'force_detach': False}}) \
        .backend_params['force_detach'] is False
    # the fencing policy (default shutoff) applies to vsphere too (shared interface, issue 11)
    assert PluginConfig({'backend': 'vsphere'}).backend_params['force_detach'] is True
    assert 'force_detach' not in PluginConfig({'backend': 'loop'}).backend_params


def test_config_cinder_clouds_yaml_becomes_environment():
    cfg = PluginConfig({'backend': 'cinder', 'backend_params': {'cloud': 'c1', 'clouds_yaml': '/etc/pv/clouds.yaml'}})
    assert cfg.environment == {'OS_CLIENT_CONFIG_FILE': '/etc/pv/clouds.yaml'}
    assert 'clouds_yaml' not in cfg.backend_params and cfg.backend_params['cloud'] == 'c1'
    with pytest.raises(PVError, match='clouds_yaml'):
        PluginConfig({'backend': 'cinder', 'backend_params': {'clouds_yaml': 'relative.yaml'}})


def test_unmount_grace(tmp_path, world):
    import time
    d = make_driver(tmp_path, world, unmount_grace=0.3)
    d.start()
    d.create({'Name': 'g1'})
    world.calls[:] = []
    mp = d.mountpoint('g1')
    d.mount({'Name': 'g1', 'ID': 'create'})
    assert d.unmount({'Name': 'g1', 'ID': 'create'})[1] == 'refs=0 release in 0.3s'
    assert world.mounted == {mp}                  # still mounted during the grace
    assert d.mount({'Name': 'g1', 'ID': 'start'})[1].startswith('kept')
    time.sleep(0.5)
    assert world.mounted == {mp}                  # the Mount cancelled the release
    d.unmount({'Name': 'g1', 'ID': 'start'})
    time.sleep(0.6)
    assert world.mounted == set()
    assert world.calls == [('g1', 'present'), ('g1', 'detached')]
    assert any(line.startswith('Release name=g1 ok') for line in d.lines)
    # Remove during the grace releases at once; shutdown flushes pending releases
    d.mount({'Name': 'g1', 'ID': 'x'})
    d.unmount({'Name': 'g1', 'ID': 'x'})
    d.remove({'Name': 'g1'})
    assert world.mounted == set() and 'g1' not in world.sizes and d.timers.pending() == []
    d.create({'Name': 'g2'})
    d.mount({'Name': 'g2', 'ID': 'y'})
    d.unmount({'Name': 'g2', 'ID': 'y'})
    d.flush()
    assert world.mounted == set() and d.timers.pending() == []


def test_config_unmount_grace():
    assert PluginConfig({}).unmount_grace == 'auto'
    assert PluginConfig({'unmount_grace': None}).unmount_grace == 'auto'
    assert PluginConfig({'unmount_grace': ' Auto '}).unmount_grace == 'auto'
    assert PluginConfig({'unmount_grace': 0}).unmount_grace == 0
    assert PluginConfig({'unmount_grace': '2.5'}).unmount_grace == 2.5
    assert PluginConfig({'unmount_grace': 3600}).unmount_grace == 3600
    for bad in ('soon', '', 'auto-ish', True, [], {}):
        with pytest.raises(PVError, match='unmount_grace must be a number of seconds or auto'):
            PluginConfig({'unmount_grace': bad})
    for bad in (-1, 3601, '-0.5', 'nan', 'inf'):
        with pytest.raises(PVError, match='unmount_grace must be between 0 and 3600 seconds or auto'):
            PluginConfig({'unmount_grace': bad})


def test_config_handover_wait():
    assert PluginConfig({}).handover_wait == 20
    assert PluginConfig({'handover_wait': 0}).handover_wait == 0
    assert PluginConfig({'handover_wait': '0.5'}).handover_wait == 0.5
    with pytest.raises(PVError, match='handover_wait must be a number of seconds, got'):
        PluginConfig({'handover_wait': 'auto'})
    with pytest.raises(PVError, match='handover_wait must be a number of seconds'):
        PluginConfig({'handover_wait': False})
    for bad in (-1, 3601):
        with pytest.raises(PVError, match='handover_wait must be between 0 and 3600 seconds'):
            PluginConfig({'handover_wait': bad})


def _until(cond, timeout=5.0):
    import time
    deadline = time.monotonic() + timeout
    while not cond() and time.monotonic() < deadline:
        time.sleep(0.02)
    return cond()


def _mounted_once(tmp_path, world, scope='global', **cfg):
    d = make_driver(tmp_path, world, **cfg)
    d.scope = scope                      # the stub engine serves either scope
    d.start()
    d.create({'Name': 'g1'})
    d.mount({'Name': 'g1', 'ID': 'c1'})
    world.calls[:] = []
    return d


def test_unmount_grace_auto_on_swarm_releases_at_once_in_the_background(tmp_path, world):
    world.swarm = 'active'
    d = _mounted_once(tmp_path, world, unmount_grace='auto')
    assert d.release_delay() == (0, 'swarm')
    assert d.unmount({'Name': 'g1', 'ID': 'c1'})[1] == 'refs=0 release now (swarm)'
    assert _until(lambda: not world.mounted and d.timers.pending() == [])
    assert world.calls == [('g1', 'detached')]
    assert _until(lambda: any(line.startswith('Release name=g1 ok umount,detach') for line in d.lines))
    assert world.infos == 1              # cached (SWARM_TTL)
    d.mount({'Name': 'g1', 'ID': 'c2'})
    d.unmount({'Name': 'g1', 'ID': 'c2'})
    assert world.infos == 1
    assert _until(lambda: not world.mounted)


def test_unmount_grace_auto_mount_meanwhile_keeps_the_volume(tmp_path, world):
    """The background release is a timer: a Mount before it holds the volume lock cancels it."""
    import time
    world.swarm = 'active'
    d = _mounted_once(tmp_path, world, unmount_grace='auto')
    mp = d.mountpoint('g1')
    with d.locks.hold('g1'):             # the release's timer fires and waits for the lock
        assert d.unmount({'Name': 'g1', 'ID': 'c1'})[1] == 'refs=0 release now (swarm)'
        time.sleep(0.1)
        assert d.mount({'Name': 'g1', 'ID': 'c2'})[1].startswith('kept')
    time.sleep(0.2)
    assert world.mounted == {mp} and world.calls == [] and d.store.refs_of('g1') == ['c2']


@pytest.mark.parametrize('state, up', [('inactive', True), ('pending', True), ('locked', True), ('', True),
                                       ('active', False)])
def test_unmount_grace_auto_off_swarm_is_3s(tmp_path, world, state, up):
    world.swarm, world.docker_up = state, up
    d = _mounted_once(tmp_path, world, unmount_grace='auto')
    assert d.unmount({'Name': 'g1', 'ID': 'c1'})[1] == 'refs=0 release in 3s'
    assert world.mounted == {d.mountpoint('g1')} and d.timers.pending() == ['g1']
    d.flush()
    assert not world.mounted


def test_unmount_grace_auto_loop_is_3s_without_asking_docker(tmp_path, world):
    world.swarm = 'active'
    d = _mounted_once(tmp_path, world, scope='local', unmount_grace='auto')
    assert d.unmount({'Name': 'g1', 'ID': 'c1'})[1] == 'refs=0 release in 3s'
    assert world.infos == 0
    d.flush()


@pytest.mark.parametrize('grace', [0, '0'])
def test_unmount_grace_zero_releases_inside_the_unmount_even_on_swarm(tmp_path, world, grace):
    world.swarm = 'active'
    d = _mounted_once(tmp_path, world, unmount_grace=grace)
    assert d.unmount({'Name': 'g1', 'ID': 'c1'})[1] == 'refs=0 umount,detach'
    assert not world.mounted and world.infos == 0


def test_unmount_grace_number_on_swarm_is_kept(tmp_path, world):
    world.swarm = 'active'
    d = _mounted_once(tmp_path, world, unmount_grace=7)
    assert d.unmount({'Name': 'g1', 'ID': 'c1'})[1] == 'refs=0 release in 7s'
    d.flush()
    assert not world.mounted


def test_swarm_state_probe():
    class Probe(object):
        def __init__(self):
            self.answers = ['active', PVError('down'), 'inactive']

        def swarm_node_state(self):
            answer = self.answers.pop(0)
            if isinstance(answer, Exception):
                raise answer
            return answer
    state = pdriver.SwarmState(Probe(), ttl=0)
    assert [state.active(), state.active(), state.active()] == [True, False, False]
    assert pdriver.SwarmState(object()).active() is False     # a probe that cannot tell


def test_docker_client_swarm_node_state():
    from ansible_collections.persistent_volumes.docker.plugins.module_utils.docker import client

    class Api(object):
        def __init__(self, info):
            self._info = info

        def info(self):
            if isinstance(self._info, Exception):
                raise self._info
            return self._info
    assert client.swarm_node_state(Api({'Swarm': {'LocalNodeState': 'active'}})) == 'active'
    assert client.swarm_node_state(Api({'Swarm': {}})) == ''
    assert client.swarm_node_state(Api({})) == ''
    with pytest.raises(PVError, match='cannot reach the Docker engine'):
        client.swarm_node_state(Api(OSError('refused')))
