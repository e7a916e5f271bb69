# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The engine's planning rules and refusals over an injected world (no root, no devices):
shrink, foreign signatures, mount-path conflicts, in use; check mode and the real run agree
(issue 9 item 8); batched create/attach for cinder; a failed volume reports only what was done."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

from ansible_collections.persistent_volumes.docker.plugins.module_utils.backends.device import DeviceBackend
from ansible_collections.persistent_volumes.docker.plugins.module_utils.common import (
    Conflict, InUse, PVError, Refused)
from ansible_collections.persistent_volumes.docker.tests.unit.plugins.module_utils.core.engine_world import (
    MIB, FakeDocker, FakeHost, MemoryStore, StubBackend, engine, volume)

MUTATING = ('create', 'create_many', 'grow', 'attach', 'attach_many', 'detach', 'delete')


def mutations(backend):
    return [c for c in backend.calls if c[0] in MUTATING]


def ext4(size=64 * MIB, uuid='11111111-2222-3333-4444-555555555555'):
    return {'devno': '254:1', 'fs': ('ext4', uuid, size)}


def test_new_volume_plan_is_the_full_chain(tmp_path):
    backend = StubBackend()
    results, diff = engine(tmp_path, backend).apply([{'name': 'a', 'size': '64MiB'}])
    assert results[0]['actions'] == ['create', 'attach', 'mkfs', 'mount', 'fstab', 'docker_volume']
    assert results[0]['changed'] and diff['before']['a']['storage'] is None
    assert mutations(backend) == []


@pytest.mark.parametrize('check_mode', [True, False])
def test_shrink_is_refused_before_anything(tmp_path, check_mode):
    backend = StubBackend(volumes={'a': volume('a', 128 * MIB)})
    snap = FakeHost(str(tmp_path / 'fstab'), devices={'/dev/fake-a': ext4(128 * MIB)})
    (tmp_path / 'fstab').write_text('')
    eng = engine(tmp_path, backend, check_mode=check_mode, host_snapshot=snap)
    with pytest.raises(Refused, match='refusing to shrink from 128MiB to 64MiB'):
        eng.apply([{'name': 'b', 'size': '64MiB'}, {'name': 'a', 'size': '64MiB'}])
    assert mutations(backend) == []


@pytest.mark.parametrize('check_mode', [True, False])
@pytest.mark.parametrize('found,what', [
    ({'fs': None, 'signature': {'TYPE': 'crypto_LUKS'}}, 'LUKS'),
    ({'fs': None, 'signature': {'PTTYPE': 'gpt'}}, 'partition table'),
    ({'fs': ('xfs', 'u', 64 * MIB)}, 'a xfs filesystem'),
])
def test_foreign_signature_is_never_formatted(tmp_path, check_mode, found, what):
    backend = StubBackend(volumes={'a': volume('a')})
    (tmp_path / 'fstab').write_text('')
    snap = FakeHost(str(tmp_path / 'fstab'), devices={'/dev/fake-a': dict(found, devno='254:1')})
    eng = engine(tmp_path, backend, check_mode=check_mode, host_snapshot=snap)
    with pytest.raises(Refused, match='carries .*%s.*refusing to format it as ext4' % what):
        eng.apply([{'name': 'a', 'size': '64MiB'}])
    assert mutations(backend) == []
    plan = engine(tmp_path, backend, host_snapshot=snap).apply([{'name': 'a', 'size': '64MiB', 'force_format': True}])
    assert plan[0][0]['actions'][:2] == ['wipe', 'mkfs']


def test_blank_device_is_formatted_and_own_filesystem_adopted(tmp_path):
    backend = StubBackend(volumes={'a': volume('a'), 'b': volume('b')})
    (tmp_path / 'fstab').write_text('')
    snap = FakeHost(str(tmp_path / 'fstab'), devices={'/dev/fake-a': {'devno': '254:1', 'fs': None},
                                                      '/dev/fake-b': ext4()})
    results, _diff = engine(tmp_path, backend, host_snapshot=snap).apply(
        [{'name': 'a', 'size': '64MiB'}, {'name': 'b', 'size': '64MiB'}])
    assert 'mkfs' in results[0]['actions'] and 'wipe' not in results[0]['actions']
    assert 'mkfs' not in results[1]['actions'] and results[1]['fs_uuid'] == ext4()['fs'][1]


def test_two_volumes_on_one_mount_path_are_refused(tmp_path):
    backend = StubBackend()
    with pytest.raises(Conflict, match='share the mount path /srv/x'):
        engine(tmp_path, backend).apply([{'name': 'a', 'size': '64MiB', 'mount_path': '/srv/x'},
                                        {'name': 'b', 'size': '64MiB', 'mount_path': '/srv/x'}])
    with pytest.raises(Conflict, match='listed twice'):
        engine(tmp_path, backend).apply([{'name': 'a', 'size': '64MiB'}, {'name': 'a', 'size': '64MiB'}])


@pytest.mark.parametrize('check_mode', [True, False])
def test_mount_path_taken_by_another_filesystem_is_refused(tmp_path, check_mode):
    (tmp_path / 'fstab').write_text('')
    mountinfo = '40 22 8:1 / /srv/x rw - ext4 /dev/sdz1 rw\n'
    backend = StubBackend(volumes={'a': volume('a')})
    snap = FakeHost(str(tmp_path / 'fstab'), mountinfo, devices={'/dev/fake-a': ext4()})
    eng = engine(tmp_path, backend, check_mode=check_mode, host_snapshot=snap)
    with pytest.raises(InUse, match='/srv/x already has another filesystem mounted \\(/dev/sdz1\\)'):
        eng.apply([{'name': 'a', 'size': '64MiB', 'mount_path': '/srv/x'}])
    new = StubBackend()                 # not even created yet: the path is still taken
    with pytest.raises(InUse, match='another filesystem mounted'):
        engine(tmp_path, new, check_mode=check_mode, host_snapshot=snap).apply(
            [{'name': 'c', 'size': '64MiB', 'mount_path': '/srv/x'}])
    assert mutations(backend) == [] and mutations(new) == []


@pytest.mark.parametrize('state', ['detached', 'absent'])
@pytest.mark.parametrize('check_mode', [True, False])
def test_in_use_is_refused_unless_force(tmp_path, state, check_mode):
    backend = StubBackend(volumes={'a': volume('a')})
    docker = FakeDocker(users={'a': [('web', 'running')]})
    with pytest.raises(InUse, match=r'in use by container\(s\) web \(running\); refusing state=%s' % state):
        engine(tmp_path, backend, check_mode=check_mode, docker=docker).apply([{'name': 'a', 'state': state}])
    assert mutations(backend) == [] and docker.calls == []
    results, _diff = engine(tmp_path, backend, docker=docker).apply([{'name': 'a', 'state': state, 'force': True}])
    assert results[0]['actions'][0] == 'remove_containers'


@pytest.mark.parametrize('check_mode', [True, False])
def test_not_ours_is_refused_in_check_mode_as_in_the_real_run(tmp_path, check_mode):
    """Issue 9 item 8: state absent on storage without our ownership mark (the vSphere case):
    both modes refuse, before anything (not even the detach), and nothing is reported done."""
    backend = StubBackend(name='vsphere', volumes={'a': volume('a', owned=False)})
    (tmp_path / 'fstab').write_text('')
    snap = FakeHost(str(tmp_path / 'fstab'), devices={'/dev/fake-a': ext4()})
    eng = engine(tmp_path, backend, check_mode=check_mode, host_snapshot=snap)
    with pytest.raises(Refused, match='not created by this collection'):
        eng.apply([{'name': 'a', 'state': 'absent', 'backend': 'vsphere'}])
    assert mutations(backend) == []
    # detaching (keeping the data) is allowed, as the backend allows it
    results, _diff = engine(tmp_path, backend, host_snapshot=snap).apply([{'name': 'a', 'state': 'detached', 'backend': 'vsphere'}])
    assert results[0]['actions'] == ['detach']


def test_device_backend_never_reports_detach_or_delete_it_does_not_do(tmp_path):
    backend = DeviceBackend({})
    (tmp_path / 'fstab').write_text('')
    opts = {'locators': ['/dev/disk/by-id/virtio-x'], 'size': '64MiB'}
    eng = engine(tmp_path, backend)
    results, _diff = eng.apply([{'name': 'a', 'state': 'absent', 'backend': 'device', 'backend_options': opts}])
    assert results[0]['actions'] == [] and not results[0]['changed']
    with pytest.raises(Refused, match='the device backend attaches nothing'):
        engine(tmp_path, backend).apply([{'name': 'b', 'size': '64MiB', 'backend': 'device'}])


def test_real_run_failure_reports_only_what_was_done(tmp_path):
    backend = StubBackend(fail={'attach': 'attach refused by the cloud'})
    store = MemoryStore()
    eng = engine(tmp_path, backend, check_mode=False, store=store)
    with pytest.raises(PVError, match='attach refused') as info:
        eng.apply([{'name': 'a', 'size': '64MiB'}])
    rec = info.value.result['volumes'][0]
    assert rec['actions'] == ['create'] and rec['changed']
    assert 'a' in store.volumes and store.volumes['a']['status'] == 'provisioning'


def test_cinder_volumes_are_created_and_attached_in_one_batch(tmp_path):
    backend = StubBackend(name='cinder', fail={'locate': 'no device in this test'})
    eng = engine(tmp_path, backend, check_mode=False)
    with pytest.raises(PVError, match='no device in this test') as info:
        eng.apply([{'name': 'v%d' % i, 'size': '1GiB', 'backend': 'cinder'} for i in range(3)])
    assert backend.calls == [('create_many', ('v0', 'v1', 'v2')), ('attach_many', ('v0', 'v1', 'v2'))]
    assert [r['actions'] for r in info.value.result['volumes']] == [['create', 'attach']] * 3
    loop = StubBackend(name='loop', fail={'locate': 'no device in this test'})
    with pytest.raises(PVError):
        engine(tmp_path, loop, check_mode=False).apply([{'name': 'v0', 'size': '64MiB'}])
    assert loop.calls == [('create', 'v0'), ('attach', 'v0')]     # no batches: one by one as before
