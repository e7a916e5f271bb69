# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of the plugin daemon's lock design (issue 9): an engine run stuck in one
volume's Mount (a stub that blocks until released) does not hold up reads, calls for
other volumes, or the reference check; a second Mount of the SAME volume waits for the
first. Also the protocol table the server dispatches from. The real thing (a 30 s delayed
Cinder attach behind the fault proxy) is tests/integration/plugin/test_plugin_cinder.py.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import threading
import time

import pytest

from ansible_collections.persistent_volumes.docker.plugins.module_utils.plugin import protocol
from ansible_collections.persistent_volumes.docker.plugins.module_utils.plugin.driver import RemoteListing
from ansible_collections.persistent_volumes.docker.plugins.module_utils.plugin.refs import VolumeLocks

from ansible_collections.persistent_volumes.docker.tests.unit.test_plugin_daemon import FakeEngine, World, make_driver


class GatedEngine(FakeEngine):
    """FakeEngine whose runs for ``gate.names`` block until ``gate.release`` is set."""

    def __init__(self, world, gate):
        FakeEngine.__init__(self, world)
        self.gate = gate

    def apply(self, specs):
        if any(s['name'] in self.gate.names and s['state'] == 'present' for s in specs):
            self.gate.entered.set()
            assert self.gate.release.wait(10), 'test did not release the gate'
        return FakeEngine.apply(self, specs)


class Gate(object):
    def __init__(self):
        self.names = set()
        self.entered = threading.Event()
        self.release = threading.Event()


@pytest.fixture
def gated(tmp_path):
    world = World()
    gate = Gate()
    d = make_driver(tmp_path, world)
    d.engine_factory = lambda: GatedEngine(world, gate)
    d.start()
    for name in ('slow', 'fast'):
        d.create({'Name': name})
    d.mount({'Name': 'fast', 'ID': 'held'})
    yield d, world, gate
    gate.release.set()


def _in_thread(func, *args):
    out = {}

    def run():
        try:
            out['result'] = func(*args)
        except Exception as exc:  # pylint: disable=broad-except
            out['error'] = exc
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out


def _timed(func, *args):
    t0 = time.monotonic()
    func(*args)
    return time.monotonic() - t0


def test_a_stuck_mount_blocks_no_other_call(gated):
    d, world, gate = gated
    gate.names.add('slow')
    thread, out = _in_thread(d.mount, {'Name': 'slow', 'ID': 'c1'})
    assert gate.entered.wait(5)
    calls = [
        (d.path, {'Name': 'slow'}), (d.path, {'Name': 'fast'}),
        (d.get, {'Name': 'slow'}), (d.get, {'Name': 'fast'}),
        (d.list, {}), (d.capabilities, {}), (d.activate, {}),
        (d.mount, {'Name': 'fast', 'ID': 'c2'}), (d.unmount, {'Name': 'fast', 'ID': 'c2'}),
    ]
    for func, body in calls:
        assert _timed(func, body) < 1.0, func.__name__
    assert thread.is_alive() and d.store.refs_of('slow') == []      # still attaching
    assert d.get({'Name': 'fast'})[0]['Volume']['Status']['mounts'] == 1
    gate.release.set()
    thread.join(5)
    assert out['result'][0]['Mountpoint'] == d.mountpoint('slow')
    assert d.store.refs_of('slow') == ['c1']


def test_second_mount_of_the_same_volume_waits_for_the_first(gated):
    d, world, gate = gated
    gate.names.add('slow')
    world.calls[:] = []
    first, out1 = _in_thread(d.mount, {'Name': 'slow', 'ID': 'c1'})
    assert gate.entered.wait(5)
    second, out2 = _in_thread(d.mount, {'Name': 'slow', 'ID': 'c2'})
    time.sleep(0.3)
    assert second.is_alive()                   # waiting on the volume's lock
    gate.release.set()
    for thread in (first, second):
        thread.join(5)
    assert 'error' not in out1 and 'error' not in out2
    # one attach+mount only; the second Mount found it mounted
    assert [c for c in world.calls if c == ('slow', 'present')] == [('slow', 'present')]
    assert out2['result'][1].startswith('ref')
    assert sorted(d.store.refs_of('slow')) == ['c1', 'c2']


def test_reference_check_skips_a_busy_volume(gated):
    d, world, gate = gated
    gate.names.add('slow')
    d.unverified.add(('fast', 'held'))
    world.holders = {}                         # Docker backs nobody: 'fast' is released
    thread, _out = _in_thread(d.mount, {'Name': 'slow', 'ID': 'c1'})
    assert gate.entered.wait(5)
    assert _timed(d.verify) < 1.0
    assert d.store.refs_of('fast') == [] and d.mountpoint('fast') not in world.mounted
    gate.release.set()
    thread.join(5)
    assert d.store.refs_of('slow') == ['c1'] and d.mountpoint('slow') in world.mounted


def test_volume_locks_are_per_name_and_dropped_when_unused():
    locks = VolumeLocks()
    held = threading.Event()
    done = threading.Event()

    def holder():
        with locks.hold('a'):
            held.set()
            done.wait(5)
    thread = threading.Thread(target=holder, daemon=True)
    thread.start()
    assert held.wait(5)
    with locks.hold('b'):                      # another name: free
        pass
    with locks.try_hold(['a', 'b']) as got:
        assert got == ['b']
    done.set()
    thread.join(5)
    assert locks.busy() == []


def test_remote_listing_fetches_once_and_refreshes_in_the_background():
    calls = []
    gate = threading.Event()

    def fetch():
        calls.append(time.monotonic())
        if len(calls) > 1:
            gate.wait(5)
        return {'v%d' % len(calls): {'size': 1}}
    listing = RemoteListing(fetch, ttl=0.05)
    assert listing.get() == {'v1': {'size': 1}}
    time.sleep(0.1)
    t0 = time.monotonic()
    assert listing.get() == {'v1': {'size': 1}}          # stale: answered, refresh started
    assert listing.get() == {'v1': {'size': 1}}          # one refresh at a time
    assert time.monotonic() - t0 < 1.0
    gate.set()
    deadline = time.monotonic() + 5
    while listing.get() != {'v2': {'size': 1}} and time.monotonic() < deadline:
        time.sleep(0.01)
    assert listing.get() == {'v2': {'size': 1}} and len(calls) == 2
    listing.drop('v2')
    listing.put('v3', {'size': 2})
    assert listing.get() == {'v3': {'size': 2}}


def test_dispatch_table_is_built_from_the_protocol(gated):
    d, _world, _gate = gated
    table = protocol.dispatch_table(d)
    assert sorted(table) == sorted(protocol.METHODS) and len(protocol.METHODS) == 9
    assert all(m.startswith('VolumeDriver.') for m in protocol.METHODS[1:])

    class Half(object):
        def activate(self, body):
            return {}
    with pytest.raises(TypeError, match='VolumeDriver.Create'):
        protocol.dispatch_table(Half())


@pytest.mark.parametrize('data,message', [
    (b'[]', 'JSON object'), (b'{"a"', 'malformed JSON'), (b'\xff', 'malformed JSON'),
])
def test_protocol_decode_body_refuses(data, message):
    with pytest.raises(protocol.RequestError, match=message):
        protocol.decode_body(data)


def test_protocol_checks():
    assert protocol.decode_body(b'') == {} and protocol.decode_body(b'null') == {}
    assert protocol.check_length(None) == 0 and protocol.check_length('12') == 12
    for raw in ('abc', '-1', str(protocol.MAX_BODY + 1)):
        with pytest.raises(protocol.RequestError):
            protocol.check_length(raw)
    assert protocol.short_name('VolumeDriver.Mount') == 'Mount' and protocol.short_name('x') == 'unknown'
    assert protocol.ok(Mountpoint='/m') == {'Mountpoint': '/m', 'Err': ''}
