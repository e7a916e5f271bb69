# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Self-test of the integration fixtures: ansible runs, results, dockerd, image, cleanup."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import subprocess

import pytest

import pv_integration_helpers as h


def test_ping_and_command(ansible):
    r = ansible.run([
        {'name': 'ping', 'ansible.builtin.ping': {}},
        {'name': 'echo', 'ansible.builtin.command': 'echo hello', 'changed_when': False},
        {'name': 'touch', 'ansible.builtin.command': 'true'},
        {'name': 'skipped one', 'ansible.builtin.command': 'false', 'when': 'never | default(false)'},
    ])
    r.assert_ok()
    assert r.task('ping').result['ping'] == 'pong'
    assert r.result('echo')['stdout'] == 'hello'
    assert not r.task('echo').changed
    assert r.task('touch').changed and r.changed
    assert r.task('skipped one').skipped
    assert r.stats['localhost']['ok'] == 3


def test_failure_is_reported_not_raised(ansible):
    r = ansible.run('- name: boom\n  ansible.builtin.fail:\n    msg: expected failure\n')
    assert r.failed and r.rc != 0
    assert r.task('boom').failed
    assert r.result('boom')['msg'] == 'expected failure'
    with pytest.raises(AssertionError):
        r.assert_ok()


def test_check_diff_vars_and_extra_vars(ansible, tmp_path):
    target = str(tmp_path / 'f.txt')
    tasks = [{'name': 'write', 'ansible.builtin.copy': {'dest': target, 'content': '{{ greeting }} {{ who }}\n'}}]
    r = ansible.run(tasks, vars={'greeting': 'hi'}, extra_vars={'who': 'there'}, check=True, diff=True)
    r.assert_changed()
    assert not os.path.exists(target)
    assert r.result('write')['diff'], r.summary()
    ansible.run(tasks, vars={'greeting': 'hi'}, extra_vars={'who': 'there'}).assert_changed()
    with open(target) as f:
        assert f.read() == 'hi there\n'
    ansible.run(tasks, vars={'greeting': 'hi'}, extra_vars={'who': 'there'}).assert_unchanged()


def test_collection_is_visible(ansible):
    r = ansible.run([{'name': 'list', 'ansible.builtin.command': 'ansible-galaxy collection list persistent_volumes.docker',
                      'changed_when': False}])
    r.assert_ok()
    assert 'persistent_volumes.docker' in r.result('list')['stdout']


def test_busybox_container_and_cleanup(docker_client, busybox_image, uid, cleanup, tmp_path):
    vol = cleanup.docker_volume(docker_client.volumes.create(name=uid + '-vol', driver='local').name)
    name = cleanup.container(uid + '-writer')
    out = h.run_container(docker_client, busybox_image, ['sh', '-c', 'echo data > /data/x && cat /data/x'],
                          name=name, volumes={vol: {'bind': '/data', 'mode': 'rw'}})
    assert out.strip() == 'data'
    # loop device + mount + fstab line, all swept by the prefix even without explicit registration
    img = str(tmp_path / (uid + '.img'))
    subprocess.run(['truncate', '-s', '32M', img], check=True)
    dev = subprocess.run(['losetup', '--find', '--show', img], check=True, stdout=subprocess.PIPE,
                         universal_newlines=True).stdout.strip()
    cleanup.loop(dev)
    subprocess.run(['mkfs.ext4', '-q', dev], check=True)
    mnt = str(tmp_path / (uid + '-mnt'))
    os.makedirs(mnt)
    subprocess.run(['mount', dev, mnt], check=True)
    with open('/etc/fstab', 'a') as f:
        f.write('%s %s ext4 defaults,nofail 0 2  # %s\n' % (dev, mnt, uid))
    assert mnt in h.mountpoints()
    # run the teardown now (the fixture runs it again at the end: must be a no-op)
    action_errors, leftovers = cleanup.run()
    assert not leftovers, leftovers
    assert mnt not in h.mountpoints()
    assert dev not in h.loop_devices()
    with open('/etc/fstab') as f:
        assert uid not in f.read()
    assert not docker_client.containers.list(all=True, filters={'name': uid})
    assert not docker_client.volumes.list(filters={'name': uid, 'driver': 'local'})
