# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""connpool: the plugin daemon's idle cloud connections (off by default), the OpenStack and
vSphere clients' wiring (only the SDK connection is pooled), and the daemon switching it on/off."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import threading

import pytest

from ansible_collections.persistent_volumes.docker.plugins.module_utils import connpool
from ansible_collections.persistent_volumes.docker.plugins.module_utils.common import NotFound, PVError


@pytest.fixture(autouse=True)
def pool_off():
    connpool.disable()
    yield
    connpool.disable()


class Clock(object):
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


class Conn(object):
    def __init__(self, name='c'):
        self.name = name
        self.closed = 0

    def close(self):
        self.closed += 1


def close(conn):
    conn.close()


# -- the pool ---------------------------------------------------------------------------------

def test_off_by_default_closes_what_is_given():
    pool = connpool.Pool()
    assert not pool.enabled and not connpool.enabled()
    c = Conn()
    assert pool.give('k', c, close) is False
    assert c.closed == 1 and pool.take('k') is None and pool.idle_count() == 0
    pool.remember('f', 1)
    assert pool.recall('f') is None


def test_take_give_and_keying():
    pool = connpool.Pool()
    pool.enable(60)
    a, b = Conn('a'), Conn('b')
    assert pool.take('k1') is None
    assert pool.give('k1', a, close) and pool.give('k2', b, close)
    assert pool.idle_count() == 2 and pool.idle_count('k1') == 1
    assert pool.take('k2') is b
    assert pool.take('k2') is None          # taken: one user at a time
    assert pool.take('k1') is a and pool.idle_count() == 0
    assert a.closed == b.closed == 0


def test_concurrent_users_get_different_connections():
    pool = connpool.Pool()
    pool.enable(60)
    a, b = Conn('a'), Conn('b')
    pool.give('k', a, close)
    pool.give('k', b, close)
    got = []
    lock = threading.Lock()

    def user():
        conn = pool.take('k')
        with lock:
            got.append(conn)
    threads = [threading.Thread(target=user) for dummy in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(got, key=lambda c: c.name if c else '') == [None, a, b]


def test_idle_expiry_on_take_and_give():
    clock = Clock()
    pool = connpool.Pool(clock=clock)
    pool.enable(600)
    old, other = Conn('old'), Conn('other')
    pool.give('k', old, close)
    pool.give('j', other, close)
    clock.now += 599
    assert pool.take('k') is old                # not yet idle too long
    pool.give('k', old, close)
    clock.now += 601
    assert pool.take('k') is None               # both expired: closed on this take
    assert old.closed == 1 and other.closed == 1 and pool.idle_count() == 0
    fresh, later = Conn('fresh'), Conn('later')
    pool.give('k', fresh, close)
    clock.now += 700
    pool.give('j', later, close)                # a give expires the others too
    assert fresh.closed == 1 and later.closed == 0 and pool.idle_count() == 1
    clock.now += 700
    assert pool.expire() == 1 and later.closed == 1


def test_invalid_connections_are_discarded():
    pool = connpool.Pool()
    pool.enable(60)
    dead, alive, boom = Conn('dead'), Conn('alive'), Conn('boom')
    pool.give('k', alive, close)
    pool.give('k', dead, close)
    pool.give('k', boom, close)

    def valid(conn):
        if conn is boom:
            raise IOError('session gone')
        return conn is alive
    assert pool.take('k', valid=valid) is alive
    assert dead.closed == 1 and boom.closed == 1 and alive.closed == 0


def test_max_idle_per_key_and_close_all():
    pool = connpool.Pool(max_idle=2)
    pool.enable(60)
    conns = [Conn(str(i)) for i in range(3)]
    assert [pool.give('k', c, close) for c in conns] == [True, True, False]
    assert conns[2].closed == 1
    assert pool.close_all() == 2 and [c.closed for c in conns] == [1, 1, 1]


def test_disable_closes_everything_and_forgets_facts():
    connpool.enable(60)
    c = Conn()
    connpool.POOL.give('k', c, close)
    connpool.POOL.remember('server', 'id1')
    assert connpool.POOL.recall('server') == 'id1'
    connpool.disable()
    assert c.closed == 1 and not connpool.enabled()
    connpool.enable(60)
    assert connpool.POOL.recall('server') is None


def test_close_errors_are_swallowed_and_key_not_shown():
    pool = connpool.Pool()
    pool.enable(60)

    def bad_close(conn):
        raise RuntimeError('x')
    pool.give(('openstack', (('password', 's3cret'),)), Conn(), bad_close)
    assert 's3cret' not in repr(pool)
    assert pool.close_all() == 1


def test_freeze_is_hashable_and_order_independent():
    a = connpool.freeze({'auth': {'password': 'p', 'username': 'u'}, 'regions': ['r1', 'r2'], 'x': None})
    b = connpool.freeze({'regions': ['r1', 'r2'], 'x': None, 'auth': {'username': 'u', 'password': 'p'}})
    assert a == b and hash(a) == hash(b)
    assert a != connpool.freeze({'auth': {'password': 'q', 'username': 'u'}, 'regions': ['r1', 'r2'], 'x': None})


# -- OpenStack: only the SDK Connection is pooled ---------------------------------------------

osc = pytest.importorskip(
    'ansible_collections.persistent_volumes.docker.plugins.module_utils.openstack.client')


class FakeServer(object):
    def __init__(self, id, name):
        self.id, self.name = id, name


class FakeCompute(object):
    def __init__(self, log, servers):
        self.log, self.servers = log, servers

    def find_server(self, ref, ignore_missing=True):
        self.log.append(('find', ref))
        for s in self.servers:
            if ref in (s.id, s.name):
                return s
        return None

    def get_server(self, server_id):
        self.log.append(('get', server_id))
        for s in self.servers:
            if s.id == server_id:
                return s
        from openstack import exceptions as os_exc
        raise os_exc.NotFoundException(message='No Server found')


class FakeConnection(object):
    def __init__(self, kwargs, log, servers):
        self.kwargs = kwargs
        self.closed = 0
        self.compute = FakeCompute(log, servers)

    def close(self):
        self.closed += 1


@pytest.fixture
def sdk(monkeypatch):
    pytest.importorskip('openstack')
    made, log = [], []
    servers = [FakeServer('id-1', 'node1')]

    def connect(**kwargs):
        conn = FakeConnection(kwargs, log, servers)
        made.append(conn)
        return conn
    monkeypatch.setattr(osc.openstack, 'connect', connect)
    monkeypatch.delenv('OS_CLIENT_CONFIG_FILE', raising=False)
    return made, log, servers


PARAMS = {'cloud': 'pvtest', 'server': 'node1', 'retry_timeout': 0}


def test_openstack_pool_off_connects_and_closes_every_time(sdk):
    made, _log, _servers = sdk
    for dummy in range(2):
        c = osc.Client(PARAMS)
        c.server()
        c.close()
    assert len(made) == 2 and [m.closed for m in made] == [1, 1]


def test_openstack_pool_on_reuses_the_connection_not_the_client(sdk):
    made, log, servers = sdk
    connpool.enable(600)
    c1 = osc.Client(PARAMS)
    assert c1.server().id == 'id-1'
    c1.close()
    assert c1._conn is None and made[0].closed == 0
    c2 = osc.Client(PARAMS)
    assert c2.conn is made[0] and len(made) == 1   # the same SDK connection, a new Client
    assert c2._server is None                       # per-run state is not carried over
    servers[0] = FakeServer('id-1', 'node1')       # fresh status read by this run
    assert c2.server() is servers[0]
    c3 = osc.Client(PARAMS)                         # concurrent run: its own connection
    assert c3.conn is not made[0] and len(made) == 2
    c3.close()
    c2.close()
    assert connpool.POOL.idle_count() == 2
    c4 = osc.Client(dict(PARAMS, region_name='other'))   # other parameters: other key
    assert c4.conn is made[2]
    c4.close()
    connpool.disable()
    assert [m.closed for m in made] == [1, 1, 1]
    # server lookups: a search the first time, then one GET by the remembered id
    assert log == [('find', 'node1'), ('get', 'id-1')]


def test_openstack_environment_is_part_of_the_key(sdk, monkeypatch):
    made, _log, _servers = sdk
    connpool.enable(600)
    monkeypatch.setenv('OS_CLIENT_CONFIG_FILE', '/a/clouds.yaml')
    assert osc.Client(PARAMS).conn is made[0]
    c = osc.Client(PARAMS)
    c.conn  # pylint: disable=pointless-statement
    c.close()
    monkeypatch.setenv('OS_CLIENT_CONFIG_FILE', '/b/clouds.yaml')
    c = osc.Client(PARAMS)
    assert c.conn is not made[1]


def test_openstack_unexpected_error_closes_for_real(sdk):
    made, _log, _servers = sdk
    from openstack import exceptions as os_exc
    connpool.enable(600)
    c = osc.Client(PARAMS)
    c.conn  # pylint: disable=pointless-statement

    def missing():
        raise os_exc.NotFoundException(message='gone')
    with pytest.raises(NotFound):
        c.call('reading x', missing)                 # an expected answer: still reusable
    c.close()
    assert made[0].closed == 0 and connpool.POOL.idle_count() == 1
    c = osc.Client(PARAMS)
    assert c.conn is made[0]

    def bad():
        raise os_exc.HttpException(message='boom')
    with pytest.raises(PVError):
        c.call('reading x', bad)
    c.close()
    assert made[0].closed == 1 and connpool.POOL.idle_count() == 0


def test_openstack_remembered_server_gone_falls_back_to_search(sdk):
    made, log, servers = sdk
    connpool.enable(600)
    c = osc.Client(PARAMS)
    c.server()
    c.close()
    servers[0] = FakeServer('id-2', 'node1')        # rebuilt under the same name
    c = osc.Client(PARAMS)
    assert c.server().id == 'id-2'
    c.close()
    assert log == [('find', 'node1'), ('get', 'id-1'), ('find', 'node1')]
    assert made[0].closed == 0                      # a 404 is an expected answer
    c = osc.Client(PARAMS)
    assert c.server().id == 'id-2' and log[-1] == ('get', 'id-2')


def test_openstack_given_connection_is_never_pooled(sdk):
    connpool.enable(600)
    conn = FakeConnection({}, [], [])
    c = osc.Client(PARAMS, conn=conn)
    c.close()
    assert conn.closed == 1 and connpool.POOL.idle_count() == 0


# -- vSphere: only the ServiceInstance is pooled ---------------------------------------------

class Obj(object):
    def __init__(self, **kw):
        self.__dict__.update(kw)


class FakeSI(object):
    def __init__(self, n):
        self.n = n
        self.session = Obj(key='s%d' % n)
        self.retrieved = 0
        self.disconnected = 0

    def RetrieveContent(self):
        self.retrieved += 1
        return Obj(sessionManager=Obj(currentSession=self.session), about=Obj(apiVersion='8.0'))


@pytest.fixture
def pyvmomi(monkeypatch):
    pytest.importorskip('pyVmomi')
    from ansible_collections.persistent_volumes.docker.plugins.module_utils.vmware import client as vc
    made = []

    def smart_connect(**kwargs):
        si = FakeSI(len(made))
        si.kwargs = kwargs
        made.append(si)
        return si

    def disconnect(si):
        si.disconnected += 1
    monkeypatch.setattr(vc, 'SmartConnect', smart_connect)
    monkeypatch.setattr(vc, 'Disconnect', disconnect)
    return vc, made


VC = {'hostname': 'vc', 'username': 'u', 'password': 'p', 'validate_certs': False}


def test_vsphere_pool_off_logs_in_and_out_every_time(pyvmomi):
    vc, made = pyvmomi
    for dummy in range(2):
        vc.VSphere(VC).connect().close()
    assert len(made) == 2 and [si.disconnected for si in made] == [1, 1]


def test_vsphere_pool_on_reuses_a_valid_session(pyvmomi):
    vc, made = pyvmomi
    connpool.enable(600)
    v1 = vc.VSphere(VC).connect()
    v1._dc_cache['x'] = 'dc'
    v1.close()
    assert made[0].disconnected == 0
    v2 = vc.VSphere(VC).connect()
    assert v2.si is made[0] and len(made) == 1 and v2._dc_cache == {} and v2.content is not None
    v3 = vc.VSphere(VC).connect()                  # concurrent run: its own login
    assert v3.si is made[1]
    v3.close()
    v2.close()
    vc.VSphere(dict(VC, username='other')).connect().close()
    assert len(made) == 3
    made[0].session = None                          # session expired on the server
    made[1].session = None
    v4 = vc.VSphere(VC).connect()
    assert v4.si is made[3] and made[0].disconnected == 1 and made[1].disconnected == 1
    v4.broken = True                                # the connection failed during the run
    v4.close()
    assert made[3].disconnected == 1
    connpool.disable()
    assert made[2].disconnected == 1


# -- the daemon switches it on, and closes everything at shutdown -----------------------------

def test_daemon_enables_the_pool_and_closes_it_at_stop(monkeypatch, tmp_path):
    from ansible_collections.persistent_volumes.docker.plugins.module_utils.plugin import daemon
    seen = {}
    idle = Conn('idle')

    class Cfg(object):
        driver = 'pv-test'
        mode = 0o600
        socket = str(tmp_path / 'pv.sock')
        backend = 'loop'
        root = str(tmp_path)
        fencing = None
        fsck_repair = False

        def scrub(self, text):
            return str(text)

    class Driver(object):
        unverified = ()
        verified_once = True
        scope = 'local'

        def __init__(self, config, logger=None):
            seen['enabled_at_init'] = connpool.enabled()
            self.wake = threading.Event()

        def start(self):
            pass

        def verifier_loop(self, stop):
            pass

        def flush(self):
            pass

        def close(self):
            seen['closed'] = True

    class Server(object):
        def serve_forever(self, poll_interval=None):
            seen['enabled_while_serving'] = connpool.enabled()
            connpool.POOL.give('k', idle, close)

        def server_close(self):
            pass

    monkeypatch.setattr(daemon.PluginConfig, 'load', staticmethod(lambda path: Cfg()))
    monkeypatch.setattr(daemon, 'VolumeDriver', Driver)
    monkeypatch.setattr(daemon, 'bind', lambda sock, driver, log: Server())
    monkeypatch.setattr(daemon.signal, 'signal', lambda *a: None)
    assert daemon.main(['--config', str(tmp_path / 'cfg.json')]) == 0
    assert seen == {'enabled_at_init': True, 'enabled_while_serving': True, 'closed': True}
    assert not connpool.enabled() and idle.closed == 1
