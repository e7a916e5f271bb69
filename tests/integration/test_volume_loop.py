# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The loop backend end to end: real loop devices, mkfs, mount, fstab and dockerd."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os

import pytest

from pv_integration_helpers import ManagedRoot, fstab_lines, is_mountpoint, output  # pylint: disable=import-error
from pv_integration_helpers import run_container as container_output  # pylint: disable=import-error

MiB = 1024 ** 2


def fs_size(path):
    st = os.statvfs(path)
    return st.f_blocks * st.f_frsize


class PV(ManagedRoot):
    """Per-test managed root (cleaned up after the test) and helpers to build tasks."""

    def name(self, suffix='v'):
        return '%s-%s' % (self.uid, suffix)

    def task(self, tname='pv', check_mode=None, **args):
        args.setdefault('root', self.root)
        task = {'name': tname, 'persistent_volumes.docker.volume': args, 'register': 'out'}
        if check_mode is not None:
            task['check_mode'] = check_mode
        return task

    def info_task(self, **args):
        args.setdefault('root', self.root)
        return {'name': 'info', 'persistent_volumes.docker.volume_info': args}

    def image(self, name):
        return os.path.join(self.root, 'images', name + '.img')

    def state(self):
        try:
            with open(os.path.join(self.root, 'state.json')) as f:
                return json.load(f)
        except IOError:
            return None


@pytest.fixture
def pv(uid, cleanup, docker_client):
    return PV(uid, cleanup)


def run_container(client, image, volume, command, cleanup, name):
    cleanup.container(name)
    return container_output(client, image, ['sh', '-c', command], name=name,
                            volumes={volume: {'bind': '/data', 'mode': 'rw'}})


def test_lifecycle_check_create_rerun_data_grow_absent(ansible, pv, cleanup, docker_client, busybox_image):
    name = pv.name()
    mp = pv.mountpoint(name)
    want = dict(name=name, size='64MiB', owner='1000', group='1000', mode='0750', labels={'app': 'db'})

    # check mode predicts everything and touches nothing
    res = ansible.run([pv.task(check_mode=True, **want)], diff=True).assert_changed()
    predicted = res.result('pv')['volumes'][0]['actions']
    assert res.result('pv')['volume']['actions'] == predicted
    assert predicted == ['create', 'attach', 'mkfs', 'mount', 'ownership', 'fstab', 'docker_volume']
    assert not os.path.exists(pv.image(name)) and not fstab_lines(name) and not is_mountpoint(mp)
    assert name not in [v.name for v in docker_client.volumes.list()]

    # the real run does what check mode said, with a diff
    res = ansible.run([pv.task(**want)], diff=True).assert_changed()
    rec = res.result('pv')['volumes'][0]
    assert rec['actions'] == predicted
    # called with name: the single record too (as cinder_volume does), the same dict as volumes[0]
    assert res.result('pv')['volume'] == rec and rec['name'] == name
    assert res.result('pv')['diff']['after'][name]['docker_volume'] is True
    assert rec['device'].startswith('/dev/loop') and rec['size'] == 64 * MiB
    assert is_mountpoint(mp)
    st = os.stat(mp)
    assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (1000, 1000, 0o750)
    line, = fstab_lines(name)
    assert line.split()[:4] == [pv.image(name), mp, 'ext4', 'defaults,nofail,loop']
    vol = docker_client.volumes.get(name)
    assert vol.attrs['Options'] == {'type': 'none', 'o': 'bind', 'device': mp}
    assert vol.attrs['Labels']['app'] == 'db' and vol.attrs['Labels']['io.persistent-volumes.managed'] == 'true'
    assert output('blkid -p -o value -s UUID %s' % rec['device']).strip() == rec['fs_uuid']
    assert pv.state()['volumes'][name]['fs_uuid'] == rec['fs_uuid']

    # idempotent, in check mode too
    ansible.run([pv.task(**want)]).assert_unchanged()
    ansible.run([pv.task(check_mode=True, **want)]).assert_unchanged()

    # seed scenario: data outlives the container
    run_container(docker_client, busybox_image, name, 'echo hello-%s > /data/f && sync' % name,
                  cleanup, pv.uid + '-w')
    out = run_container(docker_client, busybox_image, name, 'cat /data/f', cleanup, pv.uid + '-r')
    assert out.strip() == 'hello-' + name

    # ... and the Docker volume's removal; a re-run brings it back with the data
    docker_client.volumes.get(name).remove()
    res = ansible.run([pv.task(**want)]).assert_changed()
    assert res.result('pv')['volumes'][0]['actions'] == ['docker_volume']
    out = run_container(docker_client, busybox_image, name, 'cat /data/f', cleanup, pv.uid + '-r2')
    assert out.strip() == 'hello-' + name

    # grow: check mode predicts, the real run grows storage and filesystem, data intact
    before = fs_size(mp)
    res = ansible.run([pv.task(check_mode=True, **dict(want, size='128MiB'))]).assert_changed()
    assert res.result('pv')['volumes'][0]['actions'] == ['grow', 'growfs']
    assert os.path.getsize(pv.image(name)) == 64 * MiB
    res = ansible.run([pv.task(**dict(want, size='128MiB'))]).assert_changed()
    assert os.path.getsize(pv.image(name)) == 128 * MiB
    assert fs_size(mp) > before * 1.8
    ansible.run([pv.task(**dict(want, size='128MiB'))]).assert_unchanged()
    out = run_container(docker_client, busybox_image, name, 'cat /data/f', cleanup, pv.uid + '-r3')
    assert out.strip() == 'hello-' + name

    # shrink is refused and changes nothing
    res = ansible.run([pv.task(**dict(want, size='64MiB'))]).assert_failed()
    assert 'refusing to shrink' in res.result('pv')['msg']
    assert os.path.getsize(pv.image(name)) == 128 * MiB

    # absent refused while a running container uses it
    cleanup.container(pv.uid + '-busy')
    docker_client.containers.run(busybox_image, ['sleep', '300'], name=pv.uid + '-busy', detach=True, network_mode='none',
                                 volumes={name: {'bind': '/data', 'mode': 'rw'}})
    res = ansible.run([pv.task(tname='rm', **dict(want, state='absent'))]).assert_failed()
    assert 'in use by container(s) %s-busy (running)' % pv.uid in res.result('rm')['msg']
    assert is_mountpoint(mp) and os.path.exists(pv.image(name)) and fstab_lines(name)
    docker_client.containers.get(pv.uid + '-busy').remove(force=True)

    # absent: check mode first, then real, then idempotent
    res = ansible.run([pv.task(tname='rm', check_mode=True, **dict(want, state='absent'))]).assert_changed()
    assert is_mountpoint(mp)
    res = ansible.run([pv.task(tname='rm', **dict(want, state='absent'))], diff=True).assert_changed()
    assert res.result('rm')['volumes'][0]['actions'] == [
        'docker_volume_remove', 'umount', 'fstab_remove', 'detach', 'delete', 'forget']
    assert not is_mountpoint(mp) and not os.path.exists(pv.image(name)) and not fstab_lines(name)
    assert name not in [v.name for v in docker_client.volumes.list()]
    assert name not in pv.state()['volumes']
    ansible.run([pv.task(tname='rm', **dict(want, state='absent'))]).assert_unchanged()


def test_xfs_list_in_one_call_and_online_grow(ansible, pv, cleanup, docker_client, busybox_image):
    names = [pv.name('x%d' % i) for i in range(3)]
    vols = [{'name': n} for n in names]
    res = ansible.run([pv.task(fstype='xfs', size='320MiB', volumes=vols)]).assert_changed()
    assert [v['fstype'] for v in res.result('pv')['volumes']] == ['xfs'] * 3
    assert 'volume' not in res.result('pv')   # a list call has no single record
    ansible.run([pv.task(fstype='xfs', size='320MiB', volumes=vols)]).assert_unchanged()
    mp = pv.mountpoint(names[0])
    with open(os.path.join(mp, 'keep'), 'w') as f:
        f.write('x' * 4096)
    before = fs_size(mp)
    # grow one of them online (xfs_growfs on the mounted fs; nothing unmounted)
    vols[0]['size'] = '400MiB'
    res = ansible.run([pv.task(fstype='xfs', size='320MiB', volumes=vols)]).assert_changed()
    assert res.result('pv')['volumes'][0]['actions'] == ['grow', 'growfs']
    assert [v['changed'] for v in res.result('pv')['volumes']] == [True, False, False]
    assert fs_size(mp) > before
    with open(os.path.join(mp, 'keep')) as f:
        assert f.read() == 'x' * 4096
    ansible.run([pv.task(fstype='xfs', size='320MiB', volumes=vols)]).assert_unchanged()
    ansible.run([pv.task(state='absent', volumes=vols)]).assert_changed()
    assert not any(fstab_lines(n) for n in names)


def test_reboot_simulation(ansible, pv, cleanup, docker_client, busybox_image):
    names = [pv.name('r%d' % i) for i in range(2)]
    vols = [{'name': n} for n in names]
    ansible.run([pv.task(size='64MiB', volumes=vols)]).assert_changed()
    for n in names:
        with open(os.path.join(pv.mountpoint(n), 'data'), 'w') as f:
            f.write('before reboot ' + n)
    # "reboot": unmount everything, detach the loops
    for n in names:
        output('umount %s' % pv.mountpoint(n))
    for dev in output('losetup -j %s -O NAME -n; losetup -j %s -O NAME -n'
                      % (pv.image(names[0]), pv.image(names[1]))).split():
        output('losetup -d %s' % dev)
    res = ansible.run([pv.info_task(query='volumes[?!healthy].name')]).assert_ok()
    assert sorted(res.result('info')['query_result']) == sorted(names)
    # boot: the fstab entry alone brings the first back (what mount -a does for that line)
    output('mount %s' % pv.mountpoint(names[0]))
    # a re-run brings back the rest and accepts what fstab mounted
    res = ansible.run([pv.task(size='64MiB', volumes=vols)]).assert_changed()
    assert [v['actions'] for v in res.result('pv')['volumes']] == [[], ['attach', 'mount']]
    ansible.run([pv.task(size='64MiB', volumes=vols)]).assert_unchanged()
    for n in names:
        with open(os.path.join(pv.mountpoint(n), 'data')) as f:
            assert f.read() == 'before reboot ' + n
        out = run_container(docker_client, busybox_image, n, 'cat /data/data', cleanup, n + '-c')
        assert out == 'before reboot ' + n
    res = ansible.run([pv.info_task()]).assert_ok()
    assert all(v['healthy'] for v in res.result('info')['volumes'])
    ansible.run([pv.task(state='absent', volumes=vols)]).assert_changed()


SIGNATURES = {
    'ext4': 'mkfs.ext4 -q -F {img}',
    'xfs': 'mkfs.xfs -q -f {img}',
    'dos-partition-table': 'echo "start=2048, type=83" | sfdisk -q {img}',
    'gpt-partition-table': 'echo "label: gpt" | sfdisk -q {img}',
    'swap': 'mkswap {img}',
    'luks': 'echo -n pw-for-test | cryptsetup luksFormat -q --type luks2 --pbkdf pbkdf2 '
            '--pbkdf-force-iterations 1000 {img} -',
}


@pytest.mark.parametrize('kind', sorted(SIGNATURES))
def test_never_formats_a_device_with_a_signature(ansible, pv, kind):
    name = pv.name(kind[:4])
    img = pv.image(name)
    os.makedirs(os.path.dirname(img))
    output('truncate -s 400M %s' % img)
    output(SIGNATURES[kind].format(img=img))
    marker = b'precious-' + kind.encode()
    with open(img, 'r+b') as f:
        f.seek(200 * MiB)
        f.write(marker)
    with open(img, 'rb') as f:
        before = f.read(64 * 1024)
    fstype = 'xfs' if kind == 'ext4' else 'ext4'   # a same-type fs would be adopted as is
    res = ansible.run([pv.task(name=name, size='400MiB', fstype=fstype)]).assert_failed()
    msg = res.result('pv')['msg']
    assert 'refusing to format' in msg and 'force_format' in msg, msg
    with open(img, 'rb') as f:
        assert f.read(64 * 1024) == before
        f.seek(200 * MiB)
        assert f.read(len(marker)) == marker
    assert not fstab_lines(name)
    # with force_format it is formatted (the user asked to destroy it)
    res = ansible.run([pv.task(name=name, size='400MiB', fstype=fstype, force_format=True,
                               docker_volume=False)]).assert_changed()
    assert 'mkfs' in res.result('pv')['volumes'][0]['actions']
    assert output('blkid -p -o value -s TYPE %s' % img).strip() == fstype
    ansible.run([pv.task(name=name, size='400MiB', fstype=fstype, docker_volume=False)]).assert_unchanged()
    ansible.run([pv.task(name=name, state='absent', docker_volume=False)]).assert_changed()


def test_existing_same_filesystem_is_adopted_not_reformatted(ansible, pv):
    name = pv.name('same')
    img = pv.image(name)
    os.makedirs(os.path.dirname(img))
    output('truncate -s 64M %s && mkfs.ext4 -q %s' % (img, img))
    output('mkdir -p /tmp/{u} && mount -o loop {img} /tmp/{u} && echo kept > /tmp/{u}/old && umount /tmp/{u} '
           '&& rmdir /tmp/{u}'.format(u=pv.uid, img=img))
    res = ansible.run([pv.task(name=name, size='64MiB', docker_volume=False)]).assert_changed()
    assert 'mkfs' not in res.result('pv')['volumes'][0]['actions']
    with open(os.path.join(pv.mountpoint(name), 'old')) as f:
        assert f.read() == 'kept\n'
    ansible.run([pv.task(name=name, state='absent', docker_volume=False)]).assert_changed()


BAD = [
    (dict(name='a/b', size='64MiB'), 'invalid'),
    (dict(name='..', size='64MiB'), 'invalid'),
    (dict(name='a..b', size='64MiB'), 'invalid'),
    (dict(name='has space', size='64MiB'), 'invalid'),
    (dict(name='', size='64MiB'), 'non-empty'),
    (dict(name='x' * 65, size='64MiB'), 'longer than 64'),
    (dict(name='ok', size='0'), 'greater than zero'),
    (dict(name='ok', size='-1GiB'), 'not a size'),
    (dict(name='ok', size='12parsecs'), 'unknown unit'),
    (dict(name='ok', size='1MiB'), 'too small'),
    (dict(name='ok', size='64MiB', fstype='btrfs'), 'is not supported'),
    (dict(name='ok', size='100MiB', fstype='xfs'), 'at least 300MiB'),
    (dict(name='ok', size='64MiB', mount_path='relative/dir'), 'must be absolute'),
    (dict(name='ok', size='64MiB', mount_path='/proc/pv'), 'under /proc'),
    (dict(name='ok', size='64MiB', mount_path='/sys/pv'), 'under /sys'),
    (dict(name='ok', size='64MiB', mount_path='/dev/pv'), 'under /dev'),
    (dict(name='ok', size='64MiB', mount_path='/'), 'must not be "/"'),
    (dict(name='ok', size='64MiB', mount_path='/srv/../etc'), 'normalised'),
    (dict(name='ok', size='64MiB', owner='no-such-user-pv'), 'does not exist'),
    (dict(name='ok', size='64MiB', mode='rwx'), 'octal'),
]


@pytest.mark.parametrize('args,message', BAD, ids=[str(i) for i in range(len(BAD))])
def test_bad_input_fails_clearly_and_changes_nothing(ansible, pv, args, message):
    # a good volume in the same list must not be created either
    good = {'name': pv.name('good'), 'size': '64MiB'}
    res = ansible.run([pv.task(volumes=[good, args])]).assert_failed()
    assert message in res.result('pv')['msg'], res.result('pv')['msg']
    assert not res.changed
    with open('/etc/fstab') as f:
        assert not [line for line in f if pv.root in line or '/mounts/ok ' in line]
    assert not os.path.exists(os.path.join(pv.root, 'images'))
    assert not os.path.exists(os.path.join(pv.root, 'mounts'))


def test_volume_info_reports_drift_and_orphans(ansible, pv, docker_client):
    a, b = pv.name('a'), pv.name('b')
    ansible.run([pv.task(size='64MiB', volumes=[{'name': a}, {'name': b}])]).assert_changed()
    output('umount %s' % pv.mountpoint(a))
    docker_client.volumes.get(b).remove()
    output('truncate -s 16M %s' % pv.image(pv.name('stray')))
    res = ansible.run([pv.info_task()]).assert_unchanged()
    info = dict((v['name'], v) for v in res.result('info')['volumes'])
    assert info[a]['drift'] == ['not mounted at %s' % pv.mountpoint(a)]
    assert info[b]['drift'] == ['Docker volume %s is missing' % b]
    assert {'kind': 'loop_image', 'id': pv.image(pv.name('stray'))} in res.result('info')['orphans']
    # the fix is a re-run
    ansible.run([pv.task(size='64MiB', volumes=[{'name': a}, {'name': b}])]).assert_changed()
    res = ansible.run([pv.info_task(query='volumes[?!healthy].name')]).assert_ok()
    assert res.result('info')['query_result'] == []
    ansible.run([pv.task(state='absent', volumes=[{'name': a}, {'name': b}])]).assert_changed()


def test_role_and_site_playbook(ansible, pv, repo_root, tmp_path, docker_client):
    names = [pv.name('s1'), pv.name('s2')]
    inventory = tmp_path / 'hosts.yml'
    inventory.write_text(json.dumps({'docker_hosts': {
        'hosts': {'localhost': {'ansible_connection': 'local',
                                'ansible_python_interpreter': '{{ ansible_playbook_python }}'}},
        'vars': {'pv_root': pv.root, 'pv_install_dependencies': False,
                 'pv_volume_defaults': {'size': '64MiB', 'labels': {'tier': 'test'}},
                 'pv_volumes': [{'name': names[0]}, {'name': names[1], 'fstype': 'ext4', 'mode': '0700'}]}}}))
    site = os.path.join(repo_root, 'playbooks', 'site.yml')
    res = ansible.run_playbook(site, inventory=str(inventory), check=True).assert_changed()
    assert not os.path.exists(pv.mountpoint(names[0]))
    ansible.run_playbook(site, inventory=str(inventory)).assert_changed()
    for n in names:
        assert is_mountpoint(pv.mountpoint(n))
        assert docker_client.volumes.get(n).attrs['Labels']['tier'] == 'test'
    assert os.stat(pv.mountpoint(names[1])).st_mode & 0o7777 == 0o700
    ansible.run_playbook(site, inventory=str(inventory)).assert_unchanged()
    # the role validates its arguments
    res = ansible.run_playbook(site, inventory=str(inventory),
                               extra_vars={'pv_volumes': [{'size': '1GiB'}]}).assert_failed()
    assert 'name' in res.stdout + res.stderr
    ansible.run_playbook(site, inventory=str(inventory),
                         extra_vars={'pv_volume_defaults': {'state': 'absent'}}).assert_changed()
    assert not any(is_mountpoint(pv.mountpoint(n)) for n in names)


def test_drift_repair_docker_options_fstab_and_detached(ansible, pv, cleanup, docker_client, busybox_image):
    name = pv.name('d')
    mp = pv.mountpoint(name)
    ansible.run([pv.task(name=name, size='64MiB')]).assert_changed()
    with open(os.path.join(mp, 'f'), 'w') as f:
        f.write('kept')

    # fstab drift (someone edited our line) is repaired; the live mount is left alone
    output("sed -i 's|%s ext4 defaults,nofail,loop|%s ext4 defaults,loop|' /etc/fstab" % (mp, mp))
    res = ansible.run([pv.task(name=name, size='64MiB')]).assert_changed()
    assert res.result('pv')['volumes'][0]['actions'] == ['fstab']
    assert fstab_lines(name)[0].split()[3] == 'defaults,nofail,loop'

    # Docker volume with other options: recreated when nobody uses it ...
    docker_client.volumes.get(name).remove()
    docker_client.volumes.create(name, driver='local', driver_opts={'type': 'tmpfs', 'device': 'tmpfs'})
    res = ansible.run([pv.task(name=name, size='64MiB')]).assert_changed()
    assert res.result('pv')['volumes'][0]['actions'] == ['docker_volume_recreate']
    assert docker_client.volumes.get(name).attrs['Options']['device'] == mp
    # ... and refused while a container uses it
    cleanup.container(pv.uid + '-u')
    docker_client.containers.run(busybox_image, ['sleep', '300'], name=pv.uid + '-u', detach=True, network_mode='none',
                                 volumes={name: {'bind': '/data', 'mode': 'rw'}})
    res = ansible.run([pv.task(name=name, size='64MiB', labels={'new': 'label'})]).assert_failed()
    assert 'containers use it (%s-u)' % pv.uid in res.result('pv')['msg']

    # detached: refused while used; with force the container goes, the data stays
    res = ansible.run([pv.task(name=name, state='detached')]).assert_failed()
    assert 'in use by container(s)' in res.result('pv')['msg']
    res = ansible.run([pv.task(name=name, state='detached', force=True)]).assert_changed()
    assert res.result('pv')['volumes'][0]['actions'] == [
        'remove_containers', 'docker_volume_remove', 'umount', 'fstab_remove', 'detach']
    assert not is_mountpoint(mp) and os.path.exists(pv.image(name)) and not fstab_lines(name)
    ansible.run([pv.task(name=name, state='detached')]).assert_unchanged()
    # present again: same filesystem, same data
    res = ansible.run([pv.task(name=name, size='64MiB')]).assert_changed()
    assert 'mkfs' not in res.result('pv')['volumes'][0]['actions']
    with open(os.path.join(mp, 'f')) as f:
        assert f.read() == 'kept'
    ansible.run([pv.task(name=name, state='absent')]).assert_changed()
