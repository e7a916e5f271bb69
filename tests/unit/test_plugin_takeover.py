# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Node death (issue 11), unit level: the fencing policy of the plugin daemon's configuration
(``fencing: shutoff|stop|off`` -> the backend's force_detach / fencing / fence_stop), the
driver's takeover decisions on Mount (refuse with a clear Err and change nothing, or take
over, check the filesystem, then mount; a Mount retried after a half-done takeover checks
again), and the cinder backend's ``fence_stop``. The backend, the engine and the
filesystem check are stubbed; tests/integration/plugin/test_plugin_fencing.py runs the
same against the real test cloud, real loop devices and a real e2fsck.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

from ansible_collections.persistent_volumes.docker.plugins.module_utils.backends.base import BackendVolume
from ansible_collections.persistent_volumes.docker.plugins.module_utils.common import (
    PVError, Refused, TimedOut, parse_size)
from ansible_collections.persistent_volumes.docker.plugins.module_utils.host import chain as host
from ansible_collections.persistent_volumes.docker.plugins.module_utils.openstack.attach import Attachments
from ansible_collections.persistent_volumes.docker.plugins.module_utils.plugin import driver as pdriver
from ansible_collections.persistent_volumes.docker.plugins.module_utils.plugin.config import PluginConfig
from ansible_collections.persistent_volumes.docker.plugins.module_utils.plugin.protocol import RequestError


# -- the policy ---------------------------------------------------------------------------

@pytest.mark.parametrize('backend', ['cinder', 'vsphere'])
@pytest.mark.parametrize('policy, expected', [
    (None, {'force_detach': True, 'fencing': True, 'fence_stop': False}),
    ('shutoff', {'force_detach': True, 'fencing': True, 'fence_stop': False}),
    ('stop', {'force_detach': True, 'fencing': True, 'fence_stop': True}),
    ('off', {'force_detach': True, 'fencing': False, 'fence_stop': False}),
])
def test_policy_becomes_backend_params(backend, policy, expected):
    raw = {'backend': backend, 'backend_params': {'cloud': 'c1'}}
    if policy is not None:
        raw['fencing'] = policy
    cfg = PluginConfig(raw)
    assert dict((k, cfg.backend_params[k]) for k in expected) == expected
    assert cfg.backend_params['cloud'] == 'c1'
    assert cfg.fencing == (policy or 'shutoff')
    assert cfg.fsck_repair is False


def test_policy_explicit_backend_params_win():
    """Configurations older than the policy (fencing: false in backend_params) keep working."""
    cfg = PluginConfig({'backend': 'cinder', 'fencing': 'stop', 'backend_params': {'fencing': False}})
    assert cfg.backend_params['fencing'] is False and cfg.fencing == 'off'
    cfg = PluginConfig({'backend': 'cinder', 'backend_params': {'force_detach': False}})
    assert cfg.backend_params['force_detach'] is False and cfg.fencing == 'shutoff'


def test_policy_loop_and_validation():
    cfg = PluginConfig({'backend': 'loop', 'fencing': 'stop', 'fsck_repair': True})
    assert cfg.fencing is None and cfg.backend_params == {} and cfg.fsck_repair is True
    with pytest.raises(PVError, match='fencing must be one of off, shutoff, stop'):
        PluginConfig({'backend': 'cinder', 'fencing': 'sometimes'})
    with pytest.raises(PVError, match='fencing must be one of'):
        PluginConfig({'backend': 'cinder', 'fencing': False})
    with pytest.raises(PVError, match='fsck_repair must be true or false'):
        PluginConfig({'backend': 'cinder', 'fsck_repair': 'yes'})


# -- the driver's takeover decisions --------------------------------------------------------

class Cloud(object):
    """One volume, this host ``here`` and the dead host's server ``dead`` (state ``status``)."""

    def __init__(self):
        self.attached_to = 'dead'
        self.status = 'ACTIVE'
        self.policy = 'shutoff'
        self.calls = []
        self.mounted = set()
        self.fs = ('ext4', 'uuid', 1 << 30)
        self.fsck = ['checked']
        self.fsck_error = None           # an exception the check raises instead
        self.lookups = 0
        self.forgets = 0
        self.on_lookup = None            # called with the lookup count (the other node's progress)
        self.gone = False                # deleted on the backend
        self.on_check = None             # called with the number of calls so far, before a check
        self.check_reads_live = False    # the check reads the holder afresh (as vsphere's does)


class Backend(object):
    def __init__(self, cloud):
        self.cloud = cloud

    def forget_reads(self):
        self.cloud.forgets += 1

    def lookup(self, requests):
        c = self.cloud
        c.lookups += 1
        if c.on_lookup is not None:
            c.on_lookup(c.lookups)
        if c.gone:
            return {}
        return dict((r.name, BackendVolume(r.name, 'vid', 1 << 30, attached_here=c.attached_to == 'here',
                                           attached_to=c.attached_to)) for r in requests)

    def check(self, vol, action):
        self.cloud.calls.append(('check', action))
        c = self.cloud
        if c.on_check is not None:
            c.on_check(len(c.calls))
        if c.check_reads_live and c.attached_to is None:
            return                       # the check looks at the holder as it is now: nobody
        if vol.attached_to == 'dead' and c.status != 'SHUTOFF' and not (c.policy == 'stop' and c.status == 'ACTIVE'):
            raise Refused('volume %s (vid) is attached to server dead-host (dead) which is %s, not SHUTOFF: '
                          'refusing to force-detach it (fencing)' % (vol.name, c.status))

    def attach(self, vol):
        c = self.cloud
        if c.attached_to == 'dead' and c.policy == 'stop':
            c.calls.append(('stop', 'dead'))
            c.status = 'SHUTOFF'
        c.calls.append(('attach', c.attached_to))
        c.attached_to = 'here'
        return BackendVolume(vol.name, vol.id, vol.size, attached_here=True, attached_to='here')

    def locate(self, vol, timeout=60):
        return '/dev/fake-vid'

    def close(self):
        return None


class Engine(object):
    def __init__(self, cloud):
        self.cloud = cloud

    def backend(self, name):
        return Backend(self.cloud)

    def apply(self, specs):
        out = []
        for spec in specs:
            self.cloud.calls.append(('apply', spec['state']))
            if spec['state'] == 'absent' and self.cloud.attached_to == 'dead':
                raise PVError('engine: volume v1 (vid) is attached to server(s) dead; refusing to delete it')
            if spec['state'] == 'present':
                if self.cloud.attached_to == 'dead':
                    raise PVError('engine: attach refused')
                self.cloud.attached_to = 'here'
                self.cloud.mounted.add(spec['mount_path'])
            out.append({'name': spec['name'], 'size': parse_size('1GiB'), 'backend_id': 'vid', 'actions': ['mount']})
        return out, {}

    def close(self):
        return None


class NoDocker(object):
    @staticmethod
    def volume_holders(driver):
        raise PVError('no docker here')


@pytest.fixture
def cloud(monkeypatch):
    c = Cloud()

    def check(device, fstype, repair=False, timeout=10):
        c.calls.append(('fsck', device, fstype, repair))
        if c.fsck_error is not None:
            raise c.fsck_error
        return list(c.fsck)
    monkeypatch.setattr(host, 'check_filesystem', check)
    monkeypatch.setattr(host, 'read_superblock', lambda device: c.fs)
    return c


def make(tmp_path, cloud, policy='shutoff', backend='cinder', **extra):
    cloud.policy = policy
    raw = dict({'driver': 'pv-unit', 'backend': backend, 'root': str(tmp_path / 'root'),
                'socket': str(tmp_path / 'p.sock'), 'unmount_grace': 0, 'fencing': policy, 'handover_wait': 0,
                'backend_params': {'cloud': 'nowhere'}}, **extra)
    lines = []

    def mounts():
        return [host.Mount('0:1', p, 'ext4', '/dev/fake', 'rw') for p in sorted(cloud.mounted)]
    drv = pdriver.VolumeDriver(PluginConfig(raw), engine_factory=lambda: Engine(cloud), probe=NoDocker(),
                               mounts=mounts, logger=lines.append)
    drv.lines = lines
    drv.start()
    with drv.store.mutex:
        drv.store.volumes['v1'] = {'size': 1 << 30, 'fstype': 'ext4', 'backend_id': 'vid'}
    return drv


def mount(drv, caller='c1'):
    return drv.mount({'Name': 'v1', 'ID': caller})


def test_active_server_is_refused_and_nothing_changes(tmp_path, cloud):
    drv = make(tmp_path, cloud)
    with pytest.raises(RequestError) as err:
        mount(drv)
    msg = str(err.value)
    assert 'dead-host' in msg and 'ACTIVE' in msg and 'policy shutoff' in msg and 'pv_plugin_fencing: stop' in msg
    assert cloud.calls == [('check', 'attach')]              # read only: no attach, no engine run
    assert cloud.attached_to == 'dead' and not cloud.mounted
    assert 'takeover' not in drv.store.volumes['v1'] and drv.store.refs_of('v1') == []
    # Swarm's retry once the fence holds (the dead host's server is SHUTOFF now)
    cloud.status = 'SHUTOFF'
    answer, note = mount(drv)
    assert answer['Mountpoint'] == drv.mountpoint('v1') and 'taken over from dead' in note
    assert cloud.calls[1:] == [('check', 'attach'), ('attach', 'dead'), ('fsck', '/dev/fake-vid', 'ext4', False),
                               ('apply', 'present')]
    assert 'takeover' not in drv.store.volumes['v1'] and drv.store.refs_of('v1') == ['c1']
    assert any('taking over vid from dead (fencing policy shutoff)' in line for line in drv.lines)


def test_policy_stop_stops_the_server_first(tmp_path, cloud):
    drv = make(tmp_path, cloud, policy='stop')
    answer, note = mount(drv)
    assert answer['Mountpoint'] and 'fsck: checked' in note
    assert [c[0] for c in cloud.calls] == ['check', 'stop', 'attach', 'fsck', 'apply']


def test_refusal_under_policy_stop_says_so(tmp_path, cloud):
    drv = make(tmp_path, cloud, policy='stop')
    cloud.status = 'PAUSED'
    with pytest.raises(RequestError, match='PAUSED.*policy stop .*cannot be stopped'):
        mount(drv)
    assert cloud.calls == [('check', 'attach')]


def test_fsck_errors_refuse_and_the_retry_checks_again(tmp_path, cloud):
    drv = make(tmp_path, cloud)
    cloud.status = 'SHUTOFF'
    cloud.fsck_error = host.FilesystemErrors('the read-only check (e2fsck -f -n) found errors on /dev/fake-vid: x')
    with pytest.raises(RequestError, match='found errors.*stays attached to this host.*fsck_repair'):
        mount(drv)
    assert cloud.attached_to == 'here' and not cloud.mounted
    assert drv.store.volumes['v1']['takeover'] == 'dead'      # remembered (on disk) for the next Mount
    with open(drv.store.path) as handle:
        assert '"takeover": "dead"' in handle.read()
    # repaired by hand meanwhile: the retried Mount checks again (attached here now), then mounts
    cloud.fsck_error = None
    del cloud.calls[:]
    answer, note = mount(drv)
    assert answer['Mountpoint'] and 'taken over from dead' in note
    assert [c[0] for c in cloud.calls] == ['fsck', 'apply']
    assert 'takeover' not in drv.store.volumes['v1']


def test_fsck_repair_is_passed_on(tmp_path, cloud):
    drv = make(tmp_path, cloud, fsck_repair=True)
    cloud.status = 'SHUTOFF'
    mount(drv)
    assert ('fsck', '/dev/fake-vid', 'ext4', True) in cloud.calls


def test_no_takeover_without_a_foreign_attachment(tmp_path, cloud):
    drv = make(tmp_path, cloud)
    cloud.attached_to = None
    answer, note = mount(drv)
    assert note.startswith('mounted') and [c[0] for c in cloud.calls] == ['apply']
    drv.unmount({'Name': 'v1', 'ID': 'c1'})


def test_loop_never_takes_over(tmp_path, cloud):
    drv = make(tmp_path, cloud, policy='shutoff', backend='loop', backend_params={})
    cloud.attached_to = 'here'
    mount(drv)
    assert [c[0] for c in cloud.calls] == ['apply']


# -- the cinder backend's fence_stop --------------------------------------------------------

class Server(object):
    def __init__(self, id, status):
        self.id, self.name, self.status = id, id + '-name', status


class FakeCompute(object):
    def __init__(self, states, stops_after=2):
        self.states = states           # server id -> status
        self.stopped = []
        self.stops_after = stops_after
        self.polls = 0

    def stop_server(self, server):
        self.stopped.append(getattr(server, 'id', server))

    def get(self, server_id):
        if server_id in self.stopped:
            self.polls += 1
            if self.stops_after is not None and self.polls >= self.stops_after:
                self.states[server_id] = 'SHUTOFF'
        return Server(server_id, self.states[server_id])


class FakeClient(object):
    timeout = 1
    wait = True

    def __init__(self, compute):
        self.compute = compute
        self.conn = self

    def get_server(self, server_id):
        return self.compute.get(server_id)

    def call(self, what, func, *args, **kwargs):
        return func(*args, **kwargs)


def vol_on(*servers):
    return BackendVolume('v', 'vid', 1 << 30, attached_to=servers[0], extra={'attached_servers': list(servers)})


def test_fence_stop_lets_check_pass_and_stops_the_server():
    compute = FakeCompute({'dead': 'ACTIVE'})
    att = Attachments(FakeClient(compute), None, {'force_detach': True, 'fence_stop': True})
    assert att.check_foreign(vol_on('dead'), Server('here', 'ACTIVE')) == ['dead']
    assert compute.stopped == []                             # the check only reads
    assert att.fence(['dead']) == ['dead-name'] and compute.stopped == ['dead']


def test_without_fence_stop_the_refusal_mentions_it():
    att = Attachments(FakeClient(FakeCompute({'dead': 'ACTIVE'})), None, {'force_detach': True})
    with pytest.raises(Refused, match='ACTIVE, not SHUTOFF.*fence_stop: true'):
        att.check_foreign(vol_on('dead'), Server('here', 'ACTIVE'))
    assert att.fence(['dead']) == []                          # no fence_stop: never stops anything


def test_fence_stop_refuses_a_paused_server_and_times_out_clearly():
    att = Attachments(FakeClient(FakeCompute({'dead': 'PAUSED'})), None, {'force_detach': True, 'fence_stop': True})
    with pytest.raises(Refused, match='PAUSED'):
        att.check_foreign(vol_on('dead'), Server('here', 'ACTIVE'))
    compute = FakeCompute({'dead': 'ACTIVE'}, stops_after=None)          # never gets to SHUTOFF
    att = Attachments(FakeClient(compute), None, {'force_detach': True, 'fence_stop': True})
    with pytest.raises(TimedOut, match='dead-name .dead, ACTIVE. to be SHUTOFF after a Nova stop .fence_stop.*not detached'):
        att.fence(['dead'])


def test_explicit_force_detach_false_never_takes_over(tmp_path, cloud, monkeypatch):
    drv = make(tmp_path, cloud, backend_params={'cloud': 'nowhere', 'force_detach': False})
    cloud.status = 'SHUTOFF'

    def in_use(vol, action):
        cloud.calls.append(('check', action))
        raise Refused('volume v1 (vid) is attached to another server: dead-host (dead, SHUTOFF)')
    monkeypatch.setattr(Backend, 'check', staticmethod(in_use))
    with pytest.raises(RequestError, match='SHUTOFF.*force_detach: false in pv_plugin_backend_params'):
        mount(drv)
    assert cloud.calls == [('check', 'attach')] and cloud.attached_to == 'dead'


# -- handover: a Mount/Remove waits for the other node's release (handover_wait) -------------

def released_after(cloud, lookups):
    def progress(count):
        if count >= lookups:
            cloud.attached_to = None     # the other node's background detach finished
    return progress


def test_handover_released_during_the_wait_is_a_plain_attach(tmp_path, cloud):
    drv = make(tmp_path, cloud, handover_wait=5)
    cloud.on_lookup = released_after(cloud, 3)
    answer, note = mount(drv)
    assert answer['Mountpoint'] == drv.mountpoint('v1')
    assert note.startswith('released by dead after ') and note.endswith('mounted refs=1') and 'taken over' not in note
    assert ('attach', 'dead') not in cloud.calls and not [c for c in cloud.calls if c[0] == 'fsck']
    assert cloud.calls[-1] == ('apply', 'present') and cloud.forgets >= 2
    assert 'takeover' not in drv.store.volumes['v1'] and drv.store.refs_of('v1') == ['c1']
    assert not any('taking over' in line or 'takeover' in line for line in drv.lines)
    assert any('dead released it after' in line and 'plain attach' in line for line in drv.lines)


def test_handover_released_between_the_read_and_the_check_is_a_plain_attach(tmp_path, cloud):
    """The other node's detach finishes after the lookup and before the check, which reads the
    holder afresh and passes: the volume is read once more, and the Mount is an ordinary attach
    (the lab's vSphere drains hit this: "taking over ... from" a VM that had let go)."""
    drv = make(tmp_path, cloud, handover_wait=5)
    cloud.check_reads_live = True

    def release(count):
        if count >= 2:
            cloud.attached_to = None
    cloud.on_check = release
    answer, note = mount(drv)
    assert answer['Mountpoint'] == drv.mountpoint('v1')
    assert note.startswith('released by dead after ') and 'taken over' not in note, note
    assert not [c for c in cloud.calls if c[0] in ('fsck', 'stop')] and ('attach', 'dead') not in cloud.calls
    assert not any('taking over' in line for line in drv.lines), drv.lines
    assert 'takeover' not in drv.store.volumes['v1']


def test_handover_fence_holds_during_the_wait_takes_over_in_the_same_mount(tmp_path, cloud):
    drv = make(tmp_path, cloud, handover_wait=5)

    def progress(count):
        if count >= 3:
            cloud.status = 'SHUTOFF'     # the dead node's server is off now
    cloud.on_lookup = progress
    answer, note = mount(drv)
    assert answer['Mountpoint'] and 'taken over from dead' in note
    assert [c[0] for c in cloud.calls][-4:] == ['check', 'attach', 'fsck', 'apply']
    assert ('attach', 'dead') in cloud.calls and 'takeover' not in drv.store.volumes['v1']


def test_handover_nothing_happens_refuses_after_handover_wait(tmp_path, cloud):
    import time
    drv = make(tmp_path, cloud, handover_wait=0.5)
    started = time.monotonic()
    with pytest.raises(RequestError) as err:
        mount(drv)
    elapsed = time.monotonic() - started
    assert 0.4 <= elapsed < 10
    msg = str(err.value)
    assert msg.startswith('Mount of v1 refused after waiting ') and 's for its release (handover_wait): ' in msg
    assert 'ACTIVE' in msg and 'policy shutoff' in msg
    assert set(cloud.calls) == set([('check', 'attach')]) and len(cloud.calls) >= 2   # reads only
    assert cloud.forgets >= 1 and cloud.attached_to == 'dead' and not cloud.mounted
    assert 'takeover' not in drv.store.volumes['v1'] and drv.store.refs_of('v1') == []


def test_handover_zero_refuses_at_once_as_before(tmp_path, cloud):
    drv = make(tmp_path, cloud, handover_wait=0)
    with pytest.raises(RequestError, match='^Mount of v1 refused: '):
        mount(drv)
    assert cloud.calls == [('check', 'attach')] and cloud.forgets == 0


def test_handover_policy_stop_waits_for_the_release_before_stopping(tmp_path, cloud):
    drv = make(tmp_path, cloud, policy='stop', handover_wait=5)
    cloud.on_lookup = released_after(cloud, 2)
    answer, note = mount(drv)
    assert note.startswith('released by dead') and ('stop', 'dead') not in cloud.calls
    assert [c[0] for c in cloud.calls] == ['apply']
    # nobody releases it: stopped (the fence) only after handover_wait
    drv.unmount({'Name': 'v1', 'ID': 'c1'})
    cloud.attached_to, cloud.status, cloud.on_lookup = 'dead', 'ACTIVE', None
    cloud.mounted.clear()
    drv2 = make(tmp_path / 'b', cloud, policy='stop', handover_wait=0.3)
    del cloud.calls[:]
    answer, note = mount(drv2)
    assert 'taken over from dead' in note
    assert [c[0] for c in cloud.calls] == ['check', 'stop', 'attach', 'fsck', 'apply']


def test_handover_gone_during_the_wait(tmp_path, cloud):
    drv = make(tmp_path, cloud, handover_wait=5)

    def gone(count):
        if count >= 2:
            cloud.gone, cloud.attached_to = True, None
    cloud.on_lookup = gone
    answer, note = mount(drv)
    assert note == 'mounted refs=1'                  # the engine run deals with it (here: makes it)
    assert [c[0] for c in cloud.calls] == ['check', 'apply']


def test_remove_waits_for_the_other_nodes_release(tmp_path, cloud):
    drv = make(tmp_path, cloud, handover_wait=5)
    cloud.on_lookup = released_after(cloud, 3)
    answer, note = drv.remove({'Name': 'v1'})
    assert note.startswith('deleted (released by dead after ')
    assert cloud.calls == [('apply', 'absent')] and 'v1' not in drv.store.volumes
    assert cloud.forgets >= 2


def test_remove_still_attached_elsewhere_fails_clearly(tmp_path, cloud):
    import time
    drv = make(tmp_path, cloud, handover_wait=0.5)
    started = time.monotonic()
    with pytest.raises(RequestError, match=r'volume v1 is still attached to dead after waiting \d+s for its '
                                           r'release \(handover_wait\); not removed'):
        drv.remove({'Name': 'v1'})
    assert 0.4 <= time.monotonic() - started < 10
    assert cloud.calls == [] and 'v1' in drv.store.volumes


def test_remove_not_attached_anywhere_does_not_wait(tmp_path, cloud):
    drv = make(tmp_path, cloud, handover_wait=30)
    cloud.attached_to = None
    assert drv.remove({'Name': 'v1'})[1] == 'deleted' and cloud.forgets == 0


def test_forget_reads_makes_the_next_reads_fresh(tmp_path):
    import threading
    from ansible_collections.persistent_volumes.docker.plugins.module_utils.backends import base, loop, vsphere
    compute = FakeCompute({'dead': 'ACTIVE'})
    att = Attachments(FakeClient(compute), None, {'force_detach': True})
    with pytest.raises(Refused, match='ACTIVE'):
        att.check_foreign(vol_on('dead'), Server('here', 'ACTIVE'))
    compute.states['dead'] = 'SHUTOFF'
    with pytest.raises(Refused, match='ACTIVE'):                 # read once per check round
        att.check_foreign(vol_on('dead'), Server('here', 'ACTIVE'))
    att.forget_reads()
    assert att.check_foreign(vol_on('dead'), Server('here', 'ACTIVE')) == ['dead']
    assert base.Backend().forget_reads() is None
    lb = loop.LoopBackend({'root': str(tmp_path)})
    lb._loops = {}
    lb.forget_reads()
    assert lb._loops is None
    vb = vsphere.VSphereBackend.__new__(vsphere.VSphereBackend)
    vb._lock, vb._disks = threading.RLock(), object()
    vb.forget_reads()
    assert vb._disks is None
