# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The collection's ONE Docker client: the Docker SDK for Python's low-level ``APIClient``.

Rule: every Docker Engine API call of the collection (the modules' ``local`` volumes,
the plugin daemon's reference check) goes through :func:`connect`; its connection
options are :data:`CONNECTION_SPEC` (names, aliases and environment fallbacks as in
community.docker (but ``docker_timeout`` for its ``timeout``): ``DOCKER_HOST``, ``DOCKER_TLS``, ``DOCKER_TLS_VERIFY``,
``DOCKER_CERT_PATH``, ``DOCKER_TIMEOUT``), documented once in
``plugins/doc_fragments/docker.py``. No Ansible import: the fallbacks are resolved
here (:func:`resolve`), so the daemon reads them the same way.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import traceback

from ..common import PVError

try:
    import docker
    from docker.errors import APIError, DockerException, NotFound  # noqa: F401 pylint: disable=unused-import
    HAS_DOCKER = True
    DOCKER_IMPORT_ERROR = None
except ImportError:
    docker = None
    HAS_DOCKER = False
    DOCKER_IMPORT_ERROR = traceback.format_exc()
    APIError = DockerException = NotFound = Exception

DEFAULT_HOST = 'unix:///var/run/docker.sock'
DEFAULT_TIMEOUT = 60
CONNECTION_KEYS = ('docker_host', 'tls', 'validate_certs', 'ca_path', 'client_cert', 'client_key', 'docker_timeout')

#: the modules' Docker connection options (an Ansible argument spec without fallbacks:
#: ``None`` means "not given" and :func:`resolve` applies the environment, then the default)
CONNECTION_SPEC = dict(
    docker_host=dict(type='str', aliases=['docker_url']),
    tls=dict(type='bool'),
    validate_certs=dict(type='bool', aliases=['tls_verify']),
    ca_path=dict(type='path', aliases=['ca_cert', 'tls_ca_cert', 'cacert_path']),
    client_cert=dict(type='path', aliases=['tls_client_cert', 'cert_path']),
    client_key=dict(type='path', aliases=['tls_client_key', 'key_path'], no_log=False),
    # community.docker calls it ``timeout``; ``volume`` already has a ``timeout`` (the device wait)
    docker_timeout=dict(type='int'),
)

# what the plugin daemon's holders check reads: running, paused and restarting containers
# hold their mounts
HOLDING_STATES = ('running', 'paused', 'restarting')


def docker_argument_spec():
    """A fresh copy of :data:`CONNECTION_SPEC` for a module's ``argument_spec``."""
    return dict((k, dict(v, aliases=list(v['aliases'])) if 'aliases' in v else dict(v))
                for k, v in CONNECTION_SPEC.items())


def _env_bool(env, key):
    value = env.get(key)
    if value is None or value == '':
        return None
    return value.strip().lower() not in ('0', 'false', 'no', 'off')


def resolve(params=None, env=None):
    """The connection settings: given values, else the environment, else the defaults.

    As the docker CLI and community.docker: ``DOCKER_TLS_VERIFY`` (any non-empty value
    but 0/false) turns verification on, ``DOCKER_CERT_PATH`` supplies ``ca.pem``,
    ``cert.pem`` and ``key.pem`` for paths not given.
    """
    params = dict(params or {})
    env = os.environ if env is None else env
    out = dict((k, params.get(k)) for k in CONNECTION_KEYS)
    if not out['docker_host']:
        out['docker_host'] = env.get('DOCKER_HOST') or DEFAULT_HOST
    if out['tls'] is None:
        out['tls'] = bool(_env_bool(env, 'DOCKER_TLS'))
    if out['validate_certs'] is None:
        out['validate_certs'] = bool(_env_bool(env, 'DOCKER_TLS_VERIFY'))
    cert_dir = env.get('DOCKER_CERT_PATH')
    if cert_dir:
        for key, filename in (('ca_path', 'ca.pem'), ('client_cert', 'cert.pem'), ('client_key', 'key.pem')):
            if not out[key]:
                out[key] = os.path.join(cert_dir, filename)
    if out['docker_timeout'] is None:
        raw = env.get('DOCKER_TIMEOUT')
        try:
            out['docker_timeout'] = int(raw) if raw else DEFAULT_TIMEOUT
        except ValueError:
            raise PVError('DOCKER_TIMEOUT must be a number of seconds, got %r' % raw)
    if out['docker_timeout'] <= 0:
        raise PVError('docker_timeout must be a positive number of seconds')
    if bool(out['client_cert']) != bool(out['client_key']):
        raise PVError('client_cert and client_key go together (give both or neither)')
    return out


def _tls_config(conn):
    if not (conn['tls'] or conn['validate_certs']):
        return None
    for key in ('ca_path', 'client_cert', 'client_key'):
        if conn[key] and not os.path.isfile(conn[key]):
            raise PVError('%s %s: no such file' % (key, conn[key]))
    kwargs = {}
    if conn['client_cert']:
        kwargs['client_cert'] = (conn['client_cert'], conn['client_key'])
    if conn['validate_certs']:
        kwargs['verify'] = True
        if conn['ca_path']:
            kwargs['ca_cert'] = conn['ca_path']
    else:
        kwargs['verify'] = False
    try:
        return docker.tls.TLSConfig(**kwargs)
    except DockerException as exc:
        raise PVError('invalid TLS settings for the Docker engine: %s' % exc)


def connect(params=None, env=None):
    """A low-level ``docker.APIClient`` for ``params`` (see :func:`resolve`); PVError if unusable."""
    if not HAS_DOCKER:
        raise PVError('the Docker SDK for Python ("docker" package) is required on the Docker host')
    conn = resolve(params, env)
    base_url = conn['docker_host']
    tls = _tls_config(conn)
    if tls is not None and base_url.startswith('tcp://'):
        base_url = 'https://' + base_url[len('tcp://'):]
    try:
        return docker.APIClient(base_url=base_url, version='auto', timeout=conn['docker_timeout'], tls=tls)
    except DockerException as exc:
        raise PVError('cannot reach the Docker engine at %s: %s' % (conn['docker_host'], exc))


def volume_holders(api, driver):
    """{volume name: [container id, ...]} of ``driver``'s volumes mounted by a running, paused or
    restarting container. One container listing (it does not call volume plugins, so asking while
    Docker waits on the plugin is safe)."""
    try:
        containers = api.containers(all=True)
    except (APIError, DockerException) as exc:
        raise PVError('cannot list Docker containers: %s' % exc)
    except Exception as exc:  # pylint: disable=broad-except
        # connection errors of requests/urllib3 when the engine is down
        raise PVError('cannot reach the Docker engine: %s' % exc)
    holders = {}
    for container in containers or []:
        if container.get('State') not in HOLDING_STATES:
            continue
        for mount in container.get('Mounts') or []:
            if mount.get('Type') == 'volume' and mount.get('Driver') == driver and mount.get('Name'):
                holders.setdefault(mount['Name'], []).append(container.get('Id'))
    return holders


def swarm_node_state(api):
    """This engine's Swarm state (``GET /info`` -> ``Swarm.LocalNodeState``: ``active``,
    ``inactive``, ``pending``, ``error``, ``locked``; ``''`` when not reported). Does not call
    volume plugins (safe while Docker waits on the plugin)."""
    try:
        info = api.info()
    except (APIError, DockerException) as exc:
        raise PVError('cannot read the Docker engine info: %s' % exc)
    except Exception as exc:  # pylint: disable=broad-except
        raise PVError('cannot reach the Docker engine: %s' % exc)
    return str(((info or {}).get('Swarm') or {}).get('LocalNodeState') or '')
