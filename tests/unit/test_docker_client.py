# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of the one Docker client's connection options (docker/client.py): given values,
then community.docker's environment fallbacks, then defaults; the spec the modules use."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

from ansible_collections.persistent_volumes.docker.plugins.module_utils.common import PVError
from ansible_collections.persistent_volumes.docker.plugins.module_utils.docker import client


def test_defaults_without_environment():
    conn = client.resolve({}, env={})
    assert conn == {'docker_host': 'unix:///var/run/docker.sock', 'tls': False, 'validate_certs': False,
                    'ca_path': None, 'client_cert': None, 'client_key': None, 'docker_timeout': 60}


def test_environment_fallbacks():
    env = {'DOCKER_HOST': 'tcp://127.0.0.1:2376', 'DOCKER_TLS': '1', 'DOCKER_TLS_VERIFY': '1',
           'DOCKER_CERT_PATH': '/certs', 'DOCKER_TIMEOUT': '7'}
    conn = client.resolve({}, env=env)
    assert conn == {'docker_host': 'tcp://127.0.0.1:2376', 'tls': True, 'validate_certs': True,
                    'ca_path': '/certs/ca.pem', 'client_cert': '/certs/cert.pem', 'client_key': '/certs/key.pem',
                    'docker_timeout': 7}
    # given values win over the environment
    given = client.resolve({'docker_host': 'unix:///x.sock', 'validate_certs': False, 'docker_timeout': 3,
                            'ca_path': '/mine/ca.pem'}, env=env)
    assert given['docker_host'] == 'unix:///x.sock' and given['validate_certs'] is False
    assert given['docker_timeout'] == 3 and given['ca_path'] == '/mine/ca.pem' and given['client_cert'] == '/certs/cert.pem'
    assert client.resolve({}, env={'DOCKER_TLS_VERIFY': '0'})['validate_certs'] is False


@pytest.mark.parametrize('params,env,message', [
    ({}, {'DOCKER_TIMEOUT': 'soon'}, 'DOCKER_TIMEOUT'),
    ({'docker_timeout': 0}, {}, 'positive'),
    ({'client_cert': '/c.pem'}, {}, 'go together'),
])
def test_bad_settings(params, env, message):
    with pytest.raises(PVError, match=message):
        client.resolve(params, env=env)


def test_spec_names_follow_community_docker():
    spec = client.docker_argument_spec()
    assert sorted(spec) == sorted(client.CONNECTION_KEYS)
    assert spec['validate_certs']['aliases'] == ['tls_verify'] and spec['docker_host']['aliases'] == ['docker_url']
    assert 'ca_cert' in spec['ca_path']['aliases'] and 'tls_client_key' in spec['client_key']['aliases']
    assert all('default' not in opt for opt in spec.values())
    assert spec['client_key']['no_log'] is False      # None = not given: env fallback
    spec['tls']['type'] = 'str'
    assert client.CONNECTION_SPEC['tls']['type'] == 'bool'         # a copy


def test_missing_tls_file_is_refused(tmp_path):
    if not client.HAS_DOCKER:
        pytest.skip('the Docker SDK is not installed in this interpreter')
    with pytest.raises(PVError, match='no such file'):
        client.connect({'docker_host': 'tcp://127.0.0.1:1', 'validate_certs': True,
                        'ca_path': str(tmp_path / 'missing.pem')}, env={})


def test_volume_holders_reads_running_users():
    class Api(object):
        def containers(self, all=False):  # pylint: disable=redefined-builtin
            return [
                {'Id': 'c1', 'State': 'running', 'Mounts': [{'Type': 'volume', 'Driver': 'pv', 'Name': 'v1'}]},
                {'Id': 'c2', 'State': 'exited', 'Mounts': [{'Type': 'volume', 'Driver': 'pv', 'Name': 'v1'}]},
                {'Id': 'c3', 'State': 'paused', 'Mounts': [{'Type': 'volume', 'Driver': 'local', 'Name': 'v2'},
                                                           {'Type': 'volume', 'Driver': 'pv', 'Name': 'v2'}]},
            ]
    assert client.volume_holders(Api(), 'pv') == {'v1': ['c1'], 'v2': ['c3']}
