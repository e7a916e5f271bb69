# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The volume-plugin daemon (installed by its role) driven by a real dockerd:
docker volume create/ls/inspect/rm, data across containers, create options,
kill -9 between Mount and Unmount, dockerd restarts, 50 parallel users and
hostile requests on the socket. Loop backend: real loop devices, mkfs, mount.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import re
from concurrent.futures import ThreadPoolExecutor

import pytest

from pv_plugin_helpers import http, raw, wait_for

pytestmark = [pytest.mark.plugin]


def create(plugin, name, *opts):
    args = ['volume', 'create', '-d', plugin.driver]
    for opt in opts:
        args += ['--opt', opt]
    return plugin.cli(*(args + [name]), check=False)


def run(plugin, image, name, script, *extra):
    return plugin.cli('run', '--rm', '--network', 'none', '-v', '%s:/data' % name,
                      *(list(extra) + [image, 'sh', '-c', script]), check=False)


def assert_released(plugin, name, timeout=30):
    """No reference, not mounted, loop detached (after the release grace, see unmount_grace)."""
    wait_for(lambda: not plugin.refs(name) and plugin.mount_count(name) == 0 and not plugin.loops_of(name),
             timeout=timeout, what='%s released (refs %s, mounts %d, loops %s)' % (
                 name, plugin.refs(name), plugin.mount_count(name), plugin.loops_of(name)))


def test_data_survives_containers_and_cli(plugin, busybox_image, uid, pcleanup):
    name = pcleanup.docker_volume(uid + '-data')
    proc = create(plugin, name, 'size=64MiB')
    assert proc.returncode == 0, proc.stderr
    assert os.path.exists(plugin.image(name))
    assert_released(plugin, name)                      # created, formatted, left detached

    w = run(plugin, busybox_image, name, 'head -c 1048576 /dev/urandom > /data/blob && sha256sum /data/blob '
            '&& ls -A /data')
    assert w.returncode == 0, w.stderr
    digest = w.stdout.split()[0]
    assert w.stdout.split()[2:] == ['blob']            # data at the fs root; no lost+found
    assert_released(plugin, name)

    r = run(plugin, busybox_image, name, 'sha256sum /data/blob')
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[0] == digest
    # Docker mounts the volume while creating the container and again when starting it:
    # the second Mount finds it still mounted (release grace) instead of attaching again
    assert re.search(r'Mount name=%s id=\S+ ok kept' % re.escape(name), plugin.log_text())
    assert_released(plugin, name)

    listing = plugin.cli('volume', 'ls', '--filter', 'driver=' + plugin.driver, '--format', '{{.Name}}').stdout.split()
    assert name in listing
    info = json.loads(plugin.cli('volume', 'inspect', name).stdout)[0]
    assert info['Driver'] == plugin.driver
    assert info['Mountpoint'] == ''                    # reported only while mounted
    assert info['Status']['size'] == '64MiB' and info['Status']['state'] == 'detached'
    assert info['Status']['fstype'] == 'ext4'

    assert plugin.cli('volume', 'rm', name, check=False).returncode == 0
    assert not os.path.exists(plugin.image(name))
    assert name not in plugin.record()['volumes']
    assert not os.path.exists(plugin.mountpoint(name))


def test_mountpoint_while_in_use(plugin, busybox_image, uid, pcleanup):
    name = pcleanup.docker_volume(uid + '-inuse')
    assert create(plugin, name).returncode == 0
    cname = pcleanup.container(uid + '-c')
    plugin.cli('run', '-d', '--network', 'none', '--name', cname, '-v', name + ':/data', busybox_image, 'sleep', '600')
    info = json.loads(plugin.cli('volume', 'inspect', name).stdout)[0]
    assert info['Mountpoint'] == plugin.mountpoint(name)
    assert info['Status']['mounts'] == 1
    status, body = plugin.request('VolumeDriver.Path', {'Name': name})
    assert body == {'Mountpoint': plugin.mountpoint(name), 'Err': ''}
    rm = plugin.cli('volume', 'rm', name, check=False)
    assert rm.returncode != 0                          # Docker refuses; so would the plugin
    status, body = plugin.request('VolumeDriver.Remove', {'Name': name})
    assert 'mounted' in body['Err']
    plugin.cli('rm', '-f', cname)
    wait_for(lambda: plugin.mount_count(name) == 0, what='unmount after the container left')
    assert_released(plugin, name)


def test_create_options(plugin, busybox_image, uid, pcleanup):
    name = pcleanup.docker_volume(uid + '-xfs')
    proc = create(plugin, name, 'size=320MiB', 'fstype=xfs', 'uid=1234', 'gid=2345', 'mode=0750',
                  'mount_options=noatime,nodev')
    assert proc.returncode == 0, proc.stderr
    r = run(plugin, busybox_image, name, 'stat -c "%u %g %a" /data; grep " /data " /proc/mounts')
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == '1234 2345 750'
    fields = lines[1].split()
    assert fields[2] == 'xfs' and 'noatime' in fields[3] and 'nodev' in fields[3]
    info = json.loads(plugin.cli('volume', 'inspect', name).stdout)[0]
    assert info['Status']['size'] == '320MiB' and info['Status']['fstype'] == 'xfs'


@pytest.mark.parametrize('opt, message', [
    ('size=1PiB', 'unknown unit'),
    ('size=20TiB', 'allowed maximum'),
    ('size=1M', 'too small'),
    ('fstype=btrfs', 'not supported'),
    ('colour=red', 'unknown option'),
    ('mode=rwx', 'octal'),
    ('uid=no-such-user-pv', 'does not exist'),
])
def test_create_refuses_bad_options(plugin, uid, pcleanup, opt, message):
    name = pcleanup.docker_volume(uid + '-bad')
    proc = create(plugin, name, opt)
    assert proc.returncode != 0
    assert message in proc.stderr
    assert not os.path.exists(plugin.image(name))
    assert name not in plugin.record()['volumes']
    assert name not in plugin.cli('volume', 'ls', '-q').stdout.split()


def test_kill9_between_mount_and_unmount(plugin, busybox_image, uid, pcleanup):
    name = pcleanup.docker_volume(uid + '-k9')
    assert create(plugin, name).returncode == 0
    c1 = pcleanup.container(uid + '-c1')
    plugin.cli('run', '-d', '--network', 'none', '--name', c1, '--stop-timeout', '1', '-v', name + ':/data',
               busybox_image, 'sh', '-c', 'echo one > /data/one; exec sleep 600')
    wait_for(lambda: plugin.refs(name), what='the Mount reference')
    old = plugin.kill9()
    new = plugin.start()
    assert new and new != old
    assert len(plugin.refs(name)) == 1                 # the reference survived
    assert plugin.mount_count(name) == 1               # no stacked mount
    assert plugin.cli('exec', c1, 'sh', '-c', 'cat /data/one && echo more >> /data/one').returncode == 0

    c2 = pcleanup.container(uid + '-c2')
    plugin.cli('run', '-d', '--network', 'none', '--name', c2, '--stop-timeout', '1', '-v', name + ':/data', busybox_image, 'sleep', '600')
    assert len(plugin.refs(name)) == 2
    assert plugin.mount_count(name) == 1
    plugin.cli('rm', '-f', c1)
    assert len(plugin.refs(name)) == 1 and plugin.mount_count(name) == 1
    plugin.cli('rm', '-f', c2)
    wait_for(lambda: plugin.mount_count(name) == 0, what='unmount')
    assert_released(plugin, name)
    r = run(plugin, busybox_image, name, 'cat /data/one')
    assert r.stdout.split() == ['one', 'more']
    assert 'Traceback' not in plugin.log_text()


@pytest.mark.slow
def test_kill9_cycles(plugin, busybox_image, uid, pcleanup):
    """20 cycles: Mount, kill -9, restart, Unmount -- the volume stays consistent and usable."""
    name = pcleanup.docker_volume(uid + '-cyc')
    assert create(plugin, name).returncode == 0
    for i in range(20):
        cname = pcleanup.container('%s-c%d' % (uid, i))
        plugin.cli('run', '-d', '--network', 'none', '--name', cname, '--stop-timeout', '1', '-v', name + ':/data',
                   busybox_image, 'sh', '-c', 'echo %d >> /data/log; exec sleep 600' % i)
        wait_for(lambda: plugin.refs(name), what='reference in cycle %d' % i)
        plugin.kill9()
        plugin.start()
        assert len(plugin.refs(name)) == 1, 'cycle %d' % i
        assert plugin.mount_count(name) == 1, 'cycle %d' % i
        plugin.cli('rm', '-f', cname)
        wait_for(lambda: plugin.mount_count(name) == 0, what='unmount in cycle %d' % i)
        assert_released(plugin, name)
    r = run(plugin, busybox_image, name, 'cat /data/log')
    assert r.stdout.split() == [str(i) for i in range(20)]
    assert_released(plugin, name)


def test_references_rebuilt_when_record_lost(plugin, busybox_image, uid, pcleanup):
    """The record's references are gone (kill -9 + lost file): rebuilt from the Docker API."""
    name = pcleanup.docker_volume(uid + '-lost')
    assert create(plugin, name).returncode == 0
    cname = pcleanup.container(uid + '-c')
    plugin.cli('run', '-d', '--network', 'none', '--name', cname, '--stop-timeout', '1', '-v', name + ':/data', busybox_image, 'sleep', '600')
    plugin.kill9()
    path = os.path.join(plugin.root, 'plugin.json')
    with open(path) as handle:
        data = json.load(handle)
    data['refs'] = {}
    with open(path, 'w') as handle:
        json.dump(data, handle)
    plugin.start()
    assert plugin.mount_count(name) == 1               # still held by the running container
    assert len(plugin.refs(name)) == 1
    plugin.cli('rm', '-f', cname)                          # Unmount with an ID the record lost
    wait_for(lambda: plugin.mount_count(name) == 0, timeout=30, what='release after verification')
    assert_released(plugin, name)


@pytest.mark.slow
def test_fifty_parallel_containers(plugin, engine, busybox_image, uid, pcleanup):
    docker_client = engine.client()
    name = pcleanup.docker_volume(uid + '-par')
    assert create(plugin, name).returncode == 0
    names = [pcleanup.container('%s-p%02d' % (uid, i)) for i in range(50)]

    def start(cname):
        docker_client.containers.run(busybox_image, ['sleep', '600'], name=cname, detach=True, network_mode='none',
                                     stop_signal='SIGKILL', volumes={name: {'bind': '/data', 'mode': 'rw'}})

    with ThreadPoolExecutor(max_workers=50) as pool:
        list(pool.map(start, names))
    running = docker_client.containers.list(filters={'volume': name})
    assert len(running) == 50
    assert len(plugin.refs(name)) == 50
    assert plugin.mount_count(name) == 1

    def stop(cname):
        docker_client.containers.get(cname).remove(force=True)

    with ThreadPoolExecutor(max_workers=50) as pool:
        list(pool.map(stop, names))
    wait_for(lambda: plugin.mount_count(name) == 0, what='unmount after 50 containers')
    assert_released(plugin, name)
    assert plugin.record()['refs'] == {} or name not in plugin.record()['refs']


def hostile_requests(uid):
    """(label, raw bytes) of at least 200 requests that must each be answered with Err."""
    reqs = []

    def post(endpoint, body, label):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        reqs.append((label, ('POST /%s HTTP/1.1\r\nHost: p\r\nContent-Length: %d\r\n\r\n'
                             % (endpoint, len(data))).encode() + data))

    endpoints = ['Plugin.Activate', 'VolumeDriver.Create', 'VolumeDriver.Remove', 'VolumeDriver.Mount',
                 'VolumeDriver.Unmount', 'VolumeDriver.Path', 'VolumeDriver.Get', 'VolumeDriver.List',
                 'VolumeDriver.Capabilities']
    named = endpoints[1:7]
    malformed = [b'{', b'{"Name": }', b'not json', b'{"Name": "a"', b'\xff\xfe\xfd', b'{"Name": "a"}}',
                 b'[', b'{"Name": NaN', b'"\\ud800"']
    for ep in endpoints:
        for i, body in enumerate(malformed):
            post(ep, body, '%s malformed %d' % (ep, i))
        for i, body in enumerate([b'[]', b'[1,2]', b'"text"', b'42', b'true']):
            post(ep, body, '%s non-object %d' % (ep, i))
        for method in ('GET', 'PUT', 'DELETE'):
            reqs.append(('%s %s' % (method, ep), ('%s /%s HTTP/1.1\r\nHost: p\r\n\r\n' % (method, ep)).encode()))
    bad_names = ['', '../etc', 'a/b', '/abs', '..', '.', '.hidden', '-dash', 'x' * 65, 'sp ace',
                 'tab\tname', 'new\nline', 'nul\x00', 'uni\u00e9', '*', 'a;rm -rf /', '$(id)']
    for ep in named:
        post(ep, {}, '%s no Name' % ep)
        for i, value in enumerate([None, 5, 1.5, [], {}, True]):
            post(ep, {'Name': value, 'ID': 'x'}, '%s Name type %d' % (ep, i))
        for i, value in enumerate(bad_names):
            post(ep, {'Name': value, 'ID': 'x'}, '%s bad name %d' % (ep, i))
    for ep in ('VolumeDriver.Mount', 'VolumeDriver.Unmount', 'VolumeDriver.Path', 'VolumeDriver.Get'):
        post(ep, {'Name': uid + '-ghost', 'ID': 'abc'}, '%s unknown volume' % ep)
    for ep in ('VolumeDriver.Mount', 'VolumeDriver.Unmount'):
        for i, value in enumerate([None, '', 7, [], 'x' * 300, 'a\nb']):
            body = {'Name': uid + '-ghost'}
            if value is not None:
                body['ID'] = value
            post(ep, body, '%s bad ID %d' % (ep, i))
    opts = [{'size': 'huge'}, {'size': '1' * 40}, {'size': '9' * 30 + 'T'}, {'size': '1e9'}, {'size': '-1G'},
            {'size': '0'}, {'size': '1PiB'}, {'size': '99TiB'}, {'size': '100'}, {'fstype': 'ntfs'},
            {'fstype': 'xfs', 'size': '100M'}, {'uid': 'nobody-pv-x'}, {'gid': 'nogroup-pv-x'}, {'mode': '99999'},
            {'mode': 'u+rwx'}, {'mount_options': 'ro bind'}, {'volume_type': 'ssd'}, {'colour': 'red'},
            {'size': {'a': 1}}, {'size': [1]}, 'size=1G', ['size', '1G'], {'size': True}]
    for i, opt in enumerate(opts):
        post('VolumeDriver.Create', {'Name': '%s-h%d' % (uid, i), 'Opts': opt}, 'Create bad opts %d' % i)
    for path in ('/', '/VolumeDriver', '/VolumeDriver.Format', '/../../etc/passwd', '/Plugin.Deactivate',
                 '/volumedriver.create', '/VolumeDriver.Create/extra', '/%00'):
        reqs.append(('POST %s' % path, ('POST %s HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}' % path).encode()))
    garbage = [b'GARBAGE\r\n\r\n', b'\x00\x01\x02\x03\r\n\r\n', b'POST\r\n\r\n', b'POST / HTTP/9.9\r\n\r\n',
               b'POST /VolumeDriver.Get HTTP/1.1\r\nContent-Length: abc\r\n\r\n',
               b'POST /VolumeDriver.Get HTTP/1.1\r\nContent-Length: -5\r\n\r\n',
               b'POST /VolumeDriver.Get HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\n',
               b'POST /VolumeDriver.Get HTTP/1.1\r\nContent-Length: 50\r\n\r\n{"Name"',
               b'POST /VolumeDriver.Get HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n',
               b'POST /VolumeDriver.Get HTTP/1.1\r\nX-Big: ' + b'a' * 70000 + b'\r\n\r\n',
               b'POST /' + b'A' * 70000 + b' HTTP/1.1\r\n\r\n']
    for i, data in enumerate(garbage):
        reqs.append(('garbage %d' % i, data))
    return reqs


def test_hostile_requests_answered_with_err(plugin, busybox_image, uid, pcleanup):
    pid = plugin.pid()
    reqs = hostile_requests(uid)
    assert len(reqs) >= 200
    failures = []
    for label, data in reqs:
        try:
            _status, body = raw(plugin.socket, data, timeout=20)
        except Exception as exc:  # pylint: disable=broad-except
            failures.append('%s: %s' % (label, exc))
            continue
        if not isinstance(body, dict) or not body.get('Err'):
            failures.append('%s: %r' % (label, body))
        elif 'internal error' in body['Err']:
            failures.append('%s: unexpected exception: %s' % (label, body['Err']))
    assert not failures, '%d of %d hostile requests not answered with Err:\n%s' % (
        len(failures), len(reqs), '\n'.join(failures[:40]))
    assert plugin.pid() == pid                         # never crashed or restarted
    for i in range(30):
        assert not os.path.exists(plugin.image('%s-h%d' % (uid, i)))
    assert not [n for n in plugin.record()['volumes'] if n.startswith(uid)]
    # still fully working
    name = pcleanup.docker_volume(uid + '-after')
    assert create(plugin, name).returncode == 0
    assert run(plugin, busybox_image, name, 'echo ok > /data/ok && cat /data/ok').stdout.strip() == 'ok'
    assert http(plugin.socket, 'VolumeDriver.Capabilities')[1] == {'Capabilities': {'Scope': 'local'}}
    assert 'Traceback' not in plugin.log_text()


def test_dockerd_restart(plugin, engine, busybox_image, uid, pcleanup):
    """A dockerd restart (of the tests' private engine, so the shared one is not disturbed):
    the plugin answers the new engine, the volume and its data are there, mounts balance."""
    name = pcleanup.docker_volume(uid + '-dr')
    pcleanup.container(uid + '-c')
    assert engine.cli('volume', 'create', '-d', plugin.driver, '--opt', 'size=64MiB', name).returncode == 0
    engine.cli('run', '-d', '--network', 'none', '--name', uid + '-c', '--stop-timeout', '1',
               '-v', name + ':/data', busybox_image, 'sh', '-c', 'echo before > /data/f; exec sleep 600')
    wait_for(lambda: plugin.refs(name), what='the Mount reference')
    assert plugin.mount_count(name) == 1
    engine.restart()                                   # containers stop -> Unmount; a new engine starts
    wait_for(lambda: plugin.mount_count(name) == 0, what='unmount on engine shutdown')
    assert plugin.refs(name) == []
    assert name in engine.cli('volume', 'ls', '-q').stdout.split()       # List answered
    info = json.loads(engine.cli('volume', 'inspect', name).stdout)[0]   # Get answered
    assert info['Driver'] == plugin.driver
    engine.cli('start', uid + '-c')                    # Mount again through the new engine
    assert engine.cli('exec', uid + '-c', 'cat', '/data/f').stdout.strip() == 'before'
    assert plugin.mount_count(name) == 1
    engine.cli('rm', '-f', uid + '-c')
    wait_for(lambda: plugin.mount_count(name) == 0, what='unmount')
    assert engine.cli('volume', 'rm', name).returncode == 0
    assert not os.path.exists(plugin.image(name))
