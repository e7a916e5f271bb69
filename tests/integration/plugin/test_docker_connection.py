# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Docker connection options of ``volume`` and ``volume_info`` (doc fragment
``persistent_volumes.docker.docker``, spec ``docker/client.py``) against a SECOND real
dockerd on its own unix socket (the plugin tests' private engine): given as
``docker_host``, and through the ``DOCKER_HOST`` environment variable; the shared engine
is never touched. Also: a socket nobody serves and a missing CA file fail clearly with
nothing changed. (TLS against a real TLS engine is not exercised here: it would need a
dockerd listening on TCP with generated certificates; the option handling is unit-tested
in tests/unit/test_docker_client.py.)
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os

import pytest

from pv_integration_helpers import ManagedRoot  # pylint: disable=import-error

pytestmark = pytest.mark.plugin


def _task(module, register, **args):
    return {'name': register, 'persistent_volumes.docker.' + module: args, 'register': register}


def _private_volumes(engine):
    return set(engine.cli('volume', 'ls', '-q').stdout.split())


def test_volume_and_volume_info_on_a_second_engine(ansible, engine, uid, pcleanup, docker_client):
    pv = ManagedRoot(uid, pcleanup)
    name = uid + '-dh'
    pcleanup.docker_volume(name)
    vol_args = dict(name=name, size='32MiB', root=pv.root, docker_host=engine.host)

    ansible.run([_task('volume', 'out', **vol_args)]).assert_changed()
    assert name in _private_volumes(engine)
    assert name not in [v.name for v in docker_client.volumes.list()]        # not on the shared engine
    info = json.loads(engine.cli('volume', 'inspect', name).stdout)[0]
    assert info['Options']['device'] == pv.mountpoint(name)
    ansible.run([_task('volume', 'out', **vol_args)]).assert_unchanged()     # idempotent there too

    # volume_info: docker_host given, then DOCKER_HOST from the environment; both see the volume
    res = ansible.run([_task('volume_info', 'info', root=pv.root, docker_host=engine.host)]).assert_unchanged()
    (vol,) = res.result('info')['volumes']
    assert vol['docker_volume'] == name and vol['healthy'], vol
    res = ansible.run([_task('volume_info', 'info', root=pv.root)], env={'DOCKER_HOST': engine.host})
    res.assert_unchanged()
    (vol,) = res.result('info')['volumes']
    assert vol['docker_volume'] == name and vol['healthy'], vol
    # the alias, and a given value wins over the environment: the shared engine has no such volume
    res = ansible.run([_task('volume_info', 'info', root=pv.root, docker_url='unix:///var/run/docker.sock')],
                      env={'DOCKER_HOST': engine.host}).assert_unchanged()
    (vol,) = res.result('info')['volumes']
    assert vol['docker_volume'] is None and 'Docker volume %s is missing' % name in vol['drift'], vol

    # bad connections fail clearly, nothing changed
    missing_sock = 'unix://' + os.path.join(engine.base, 'nobody.sock')
    bad_args = dict(vol_args, state='absent')
    bad_args['docker_host'] = missing_sock
    res = ansible.run([_task('volume', 'out', **bad_args)])
    res.assert_failed()
    assert 'Docker' in res.result('out')['msg'], res.result('out')['msg']
    res = ansible.run([_task('volume_info', 'info', root=pv.root, validate_certs=True,
                             ca_path=os.path.join(engine.base, 'no-ca.pem'),
                             docker_host='tcp://127.0.0.1:2376')])
    res.assert_failed()
    assert 'no-ca.pem: no such file' in res.result('info')['msg']
    assert name in _private_volumes(engine)

    ansible.run([_task('volume', 'out', **dict(vol_args, state='absent'))], env={'DOCKER_HOST': engine.host}) \
        .assert_changed()
    assert name not in _private_volumes(engine)
