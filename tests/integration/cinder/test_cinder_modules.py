# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""cinder_volume / cinder_attachment against the real OpenStack test cloud."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json

import pytest

from cinder_helpers import wait_volume

# the first test may install and cold-start the test cloud (session fixture) within its timeout
pytestmark = [pytest.mark.cinder, pytest.mark.slow, pytest.mark.timeout(1800)]

CLOUD = {'cloud': 'pvtest'}
GIB = 1024 ** 3


def vol_task(**args):
    return {'name': 'cinder_volume', 'persistent_volumes.docker.cinder_volume': dict(CLOUD, **args),
            'register': 'out'}


def att_task(**args):
    return {'name': 'cinder_attachment', 'persistent_volumes.docker.cinder_attachment': dict(CLOUD, **args),
            'register': 'out'}


def ours(conn, name):
    return [v for v in conn.block_storage.volumes(details=True)
            if (v.metadata or {}).get('pv_name') == name]


def named(conn, name):
    return [v for v in conn.block_storage.volumes(details=True) if v.name == name]


def test_create_grow_delete_idempotent_check_mode(os_ansible, conn, uid, os_cleanup):
    name = uid + '-data'
    # check mode: reports the creation, creates nothing
    res = os_ansible.run([vol_task(name=name, size='1', description='pv test')], check=True, diff=True)
    res.assert_changed()
    rec = res.result('cinder_volume')
    assert rec['volume']['actions'] == ['create']
    assert ours(conn, name) == [] and named(conn, name) == []

    res = os_ansible.run([vol_task(name=name, size='1', description='pv test', metadata={'app': 'db'})])
    res.assert_changed()
    vol = res.result('cinder_volume')['volume']
    assert vol['status'] == 'available' and vol['size'] == 1 and vol['owned']
    raw = conn.block_storage.get_volume(vol['id'])
    assert raw.metadata['pv_managed'] == 'persistent_volumes.docker'
    assert raw.metadata['pv_name'] == name and raw.metadata['app'] == 'db'
    assert raw.description == 'pv test'
    assert '/dev/disk/by-id/virtio-%s' % raw.id[:20] in vol['locators']

    # re-run: nothing to do
    os_ansible.run([vol_task(name=name, size='1', description='pv test', metadata={'app': 'db'})]).assert_unchanged()
    os_ansible.run([vol_task(name=name)]).assert_unchanged()

    # grow: check mode changes nothing, then for real; a unit must be whole GiB
    res = os_ansible.run([vol_task(name=name, size='2GiB')], check=True)
    res.assert_changed()
    assert conn.block_storage.get_volume(raw.id).size == 1
    res = os_ansible.run([vol_task(name=name, size='2GiB')], diff=True)
    res.assert_changed()
    assert res.result('cinder_volume')['volume']['actions'] == ['grow']
    assert conn.block_storage.get_volume(raw.id).size == 2
    os_ansible.run([vol_task(name=name, size='2')]).assert_unchanged()

    # shrink and odd sizes: clear errors, nothing changed
    res = os_ansible.run([vol_task(name=name, size='1')])
    res.assert_failed()
    assert 'refusing to shrink' in res.result('cinder_volume')['msg']
    res = os_ansible.run([vol_task(name=name, size='2.5GiB')])
    res.assert_failed()
    assert 'whole number of GiB' in res.result('cinder_volume')['msg']
    assert conn.block_storage.get_volume(raw.id).size == 2

    # metadata / description update
    res = os_ansible.run([vol_task(name=name, description='changed', metadata={'tier': 'gold'})])
    res.assert_changed()
    raw = conn.block_storage.get_volume(raw.id)
    assert raw.description == 'changed' and raw.metadata['tier'] == 'gold' and raw.metadata['app'] == 'db'

    # delete: check mode keeps it; real run removes; re-run unchanged
    os_ansible.run([vol_task(name=name, state='absent')], check=True).assert_changed()
    assert len(ours(conn, name)) == 1
    os_ansible.run([vol_task(name=name, state='absent')]).assert_changed()
    assert ours(conn, name) == []
    os_ansible.run([vol_task(name=name, state='absent')]).assert_unchanged()


def test_duplicate_name_not_ours_is_never_touched(os_ansible, conn, uid, os_cleanup):
    name = uid + '-dup'
    foreign = conn.block_storage.create_volume(name=name, size=1, metadata={'owner': 'someone-else'})
    wait_volume(conn, foreign.id, 'available')

    # present: creates OUR volume next to it, the foreign one is left as it was
    res = os_ansible.run([vol_task(name=name, size='2')])
    res.assert_changed()
    mine = res.result('cinder_volume')['volume']
    assert mine['id'] != foreign.id
    again = conn.block_storage.get_volume(foreign.id)
    assert again.size == 1 and again.metadata == {'owner': 'someone-else'} and again.status == 'available'

    # attaching by name picks ours, never the foreign one
    res = os_ansible.run([att_task(volume=name, server='pv-docker-host')])
    res.assert_changed()
    assert res.result('cinder_attachment')['attachment']['volume_id'] == mine['id']
    assert conn.block_storage.get_volume(foreign.id).status == 'available'

    # absent: deletes ours only (detaching it), the foreign one survives
    os_ansible.run([vol_task(name=name, state='absent', detach=True)]).assert_changed()
    assert conn.block_storage.get_volume(foreign.id).status == 'available'
    # now only the foreign one carries the name: by name it is "not found", never modified
    res = os_ansible.run([vol_task(name=name, state='absent')])
    res.assert_unchanged()
    res = os_ansible.run([att_task(volume=name, server='pv-docker-host')])
    res.assert_failed()
    assert 'not found' in res.result('cinder_attachment')['msg']
    assert conn.block_storage.get_volume(foreign.id).metadata == {'owner': 'someone-else'}

    # an explicit id adopts it (tags it), after which it is ours
    res = os_ansible.run([vol_task(name=name, id=foreign.id)], check=True)
    res.assert_changed()
    assert 'pv_managed' not in conn.block_storage.get_volume(foreign.id).metadata
    res = os_ansible.run([vol_task(name=name, id=foreign.id)])
    res.assert_changed()
    assert res.result('cinder_volume')['volume']['actions'] == ['adopt']
    meta = conn.block_storage.get_volume(foreign.id).metadata
    assert meta['pv_managed'] == 'persistent_volumes.docker' and meta['owner'] == 'someone-else'
    os_ansible.run([vol_task(name=name)]).assert_unchanged()


def test_attach_detach_idempotent(os_ansible, conn, uid, os_cleanup, docker_host):
    name = uid + '-att'
    vid = os_ansible.run([vol_task(name=name, size='1')]).assert_ok().result('cinder_volume')['volume']['id']

    res = os_ansible.run([att_task(volume=name, server='pv-docker-host')], check=True, diff=True)
    res.assert_changed()
    assert conn.block_storage.get_volume(vid).status == 'available'

    res = os_ansible.run([att_task(volume=name, server='pv-docker-host')])
    res.assert_changed()
    att = res.result('cinder_attachment')['attachment']
    raw = conn.block_storage.get_volume(vid)
    assert raw.status == 'in-use' and raw.attachments[0]['server_id'] == docker_host.id
    assert att['server_id'] == docker_host.id and att['attachment_id']
    assert att['locators'][0] == '/dev/disk/by-id/virtio-%s' % vid[:20]
    assert '/dev/disk/by-id/wwn-0x%s' % vid.replace('-', '') in att['locators']
    assert att['device_hint']          # reported, never used

    os_ansible.run([att_task(volume=name, server=docker_host.id)]).assert_unchanged()

    # grow while attached: waits for Nova's extend_volume action
    res = os_ansible.run([vol_task(name=name, size='2')])
    res.assert_changed()
    assert conn.block_storage.get_volume(vid).size == 2
    actions = [a.action for a in conn.compute.server_actions(docker_host)]
    assert 'extend_volume' in actions

    os_ansible.run([att_task(volume=name, server='pv-docker-host', state='absent')], check=True).assert_changed()
    assert conn.block_storage.get_volume(vid).status == 'in-use'
    os_ansible.run([att_task(volume=name, server='pv-docker-host', state='absent')]).assert_changed()
    assert conn.block_storage.get_volume(vid).status == 'available'
    os_ansible.run([att_task(volume=name, server='pv-docker-host', state='absent')]).assert_unchanged()

    # by id works for any volume, including attach by id
    res = os_ansible.run([att_task(volume=vid, server='pv-docker-host')])
    res.assert_changed()


def test_attached_elsewhere_force_detach_and_fencing(os_ansible, conn, uid, os_cleanup, docker_host):
    image = conn.image.find_image('pv-test-image', ignore_missing=False)
    flavor = conn.compute.find_flavor('pv.tiny', ignore_missing=False)
    other = conn.compute.create_server(name=uid + '-other', image_id=image.id, flavor_id=flavor.id,
                                       networks='none')
    name = uid + '-fence'
    vid = os_ansible.run([vol_task(name=name, size='1')]).assert_ok().result('cinder_volume')['volume']['id']
    other = conn.compute.wait_for_server(other, status='ACTIVE', wait=180, interval=1)
    os_ansible.run([att_task(volume=name, server=other.name)]).assert_changed()

    # attached to another server: refused (also in check mode), nothing changes
    for check in (True, False):
        res = os_ansible.run([att_task(volume=name, server='pv-docker-host')], check=check)
        res.assert_failed()
        assert 'attached to another server' in res.result('cinder_attachment')['msg']
    # force_detach while the other server is ACTIVE: refused (fencing)
    res = os_ansible.run([att_task(volume=name, server='pv-docker-host', force_detach=True)])
    res.assert_failed()
    msg = res.result('cinder_attachment')['msg']
    assert 'ACTIVE' in msg and 'SHUTOFF' in msg
    raw = conn.block_storage.get_volume(vid)
    assert [a['server_id'] for a in raw.attachments] == [other.id]

    # SHUTOFF: taken over
    conn.compute.stop_server(other)
    conn.compute.wait_for_server(other, status='SHUTOFF', wait=120, interval=1)
    res = os_ansible.run([att_task(volume=name, server='pv-docker-host', force_detach=True)], diff=True)
    res.assert_changed()
    raw = conn.block_storage.get_volume(vid)
    assert raw.status == 'in-use' and [a['server_id'] for a in raw.attachments] == [docker_host.id]

    # fencing disabled: taken back from an ACTIVE server
    conn.compute.start_server(other)
    conn.compute.wait_for_server(other, status='ACTIVE', wait=120, interval=1)
    res = os_ansible.run([att_task(volume=name, server=other.name, force_detach=True, fencing=False)])
    res.assert_changed()
    raw = conn.block_storage.get_volume(vid)
    assert [a['server_id'] for a in raw.attachments] == [other.id]


def test_batch_list_and_module_defaults(os_ansible, conn, uid, os_cleanup, docker_host):
    names = ['%s-b%d' % (uid, i) for i in range(4)]
    play = [{
        'hosts': 'localhost', 'gather_facts': False,
        'module_defaults': {'group/persistent_volumes.docker.openstack': {'cloud': 'pvtest'}},
        'tasks': [
            {'name': 'vols', 'persistent_volumes.docker.cinder_volume': {
                'size': '1', 'volumes': [{'name': n} for n in names[:3]] + [{'name': names[3], 'size': '2'}]}},
            {'name': 'atts', 'persistent_volumes.docker.cinder_attachment': {
                'server': 'pv-docker-host', 'volumes': names}},
        ]}]
    res = os_ansible.run(play)
    res.assert_changed()
    recs = res.result('atts')['attachments']
    assert [r['volume_name'] for r in recs] == names
    for n in names:
        (raw,) = ours(conn, n)
        assert raw.status == 'in-use' and raw.attachments[0]['server_id'] == docker_host.id
    assert ours(conn, names[3])[0].size == 2
    os_ansible.run(play).assert_unchanged()
    play[0]['tasks'] = [
        {'name': 'detach', 'persistent_volumes.docker.cinder_attachment': {
            'server': 'pv-docker-host', 'volumes': names, 'state': 'absent'}},
        {'name': 'delete', 'persistent_volumes.docker.cinder_volume': {
            'state': 'absent', 'volumes': [{'name': n} for n in names]}},
    ]
    os_ansible.run(play).assert_changed()
    assert all(ours(conn, n) == [] for n in names)


def test_bad_input_changes_nothing(os_ansible, conn, uid, os_cleanup):
    name = uid + '-bad'
    res = os_ansible.run([vol_task(name=name)])
    res.assert_failed()
    assert 'size is required' in res.result('cinder_volume')['msg']
    res = os_ansible.run([vol_task(name=name, size='1', metadata={'pv_managed': 'x'})])
    res.assert_failed()
    assert 'reserved' in res.result('cinder_volume')['msg']
    res = os_ansible.run([vol_task(name='bad/name', size='1')])
    res.assert_failed()
    res = os_ansible.run([att_task(volume=name, server='no-such-server-' + uid)])
    res.assert_failed()
    assert 'not found' in res.result('cinder_attachment')['msg']
    assert named(conn, name) == []


def test_auth_dict_and_env(os_ansible, conn, uid, os_cleanup, openstack_cloud):
    """auth dict instead of clouds.yaml, and OS_* environment only."""
    import yaml
    with open(openstack_cloud['clouds_yaml']) as handle:
        cfg = yaml.safe_load(handle)['clouds']['pvtest']
    name = uid + '-auth'
    task = {'name': 'cinder_volume', 'persistent_volumes.docker.cinder_volume': {
        'auth': cfg['auth'], 'region_name': 'RegionOne', 'interface': 'public', 'name': name, 'size': '1'},
        'register': 'out'}
    res = os_ansible.run([task], env={'OS_CLIENT_CONFIG_FILE': '/nonexistent'})
    res.assert_changed()
    a = cfg['auth']
    env = {'OS_CLIENT_CONFIG_FILE': '/nonexistent', 'OS_AUTH_URL': a['auth_url'], 'OS_USERNAME': a['username'],
           'OS_PASSWORD': a['password'], 'OS_PROJECT_NAME': a['project_name'],
           'OS_USER_DOMAIN_NAME': 'Default', 'OS_PROJECT_DOMAIN_NAME': 'Default', 'OS_REGION_NAME': 'RegionOne'}
    task = {'name': 'cinder_volume', 'persistent_volumes.docker.cinder_volume': {'name': name, 'size': '1'},
            'register': 'out'}
    res = os_ansible.run([task], env=env)
    res.assert_unchanged()
    # the password never shows up in the results
    assert a['password'] not in json.dumps(res.result('cinder_volume'))
