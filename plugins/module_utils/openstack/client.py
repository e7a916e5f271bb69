# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The OpenStack connection: the ONE place that touches openstacksdk's exceptions.

Rules: every SDK call goes through :meth:`Client.call` (transient errors retried through
:func:`common.poll`, the one retry/wait loop) or :meth:`Client.attempt` (one try); SDK and
keystoneauth exceptions leave this file only as typed errors (:class:`common.NotFound`,
:class:`common.Conflict`, :class:`common.Unavailable`, :class:`common.PVError`). Nobody else
catches an SDK exception or matches an error text. Also here: which Nova server is this host.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import traceback

from .. import connpool
from ..common import AGAIN, Conflict, NotFound, PVError, Unavailable, poll
from . import discovery

try:
    import openstack
    from openstack import exceptions as os_exc
    HAS_OPENSTACKSDK = True
    OPENSTACKSDK_IMPORT_ERROR = None
except ImportError:  # pragma: no cover - depends on the environment
    openstack = None
    os_exc = None
    HAS_OPENSTACKSDK = False
    OPENSTACKSDK_IMPORT_ERROR = traceback.format_exc()

try:
    from keystoneauth1 import exceptions as ksa_exc
except ImportError:  # pragma: no cover
    ksa_exc = None

TRANSIENT_STATUS = (500, 502, 503, 504)

#: connection keys, as in openstack.cloud (module option name -> openstack.connect kwarg)
AUTH_OPTIONS = {
    'cloud': 'cloud', 'auth': 'auth', 'auth_type': 'auth_type', 'region_name': 'region_name',
    'interface': 'interface', 'validate_certs': 'verify', 'ca_cert': 'cacert',
    'client_cert': 'cert', 'client_key': 'key', 'api_timeout': 'api_timeout',
}

#: backoff of retried calls: 0.5 s doubling up to 5 s
RETRY_INTERVAL, RETRY_FACTOR, RETRY_MAX_INTERVAL = 0.5, 2.0, 5.0


def is_transient(exc):
    """5xx answers and connection-level failures are worth a retry."""
    if os_exc is not None and isinstance(exc, os_exc.HttpException):
        return getattr(exc, 'status_code', None) in TRANSIENT_STATUS
    if ksa_exc is not None and isinstance(exc, (ksa_exc.ConnectFailure, ksa_exc.ConnectTimeout,
                                                ksa_exc.RetriableConnectionFailure)):
        return True
    if ksa_exc is not None and isinstance(exc, ksa_exc.HttpError):
        return getattr(exc, 'http_status', None) in TRANSIENT_STATUS
    name = type(exc).__name__
    return name in ('ConnectionError', 'ConnectTimeout', 'ReadTimeout', 'ConnectFailure',
                    'ServiceDiscoveryException')


def is_timeout(exc):
    """A timed-out request may still be carried out by the server (ambiguous outcome)."""
    if ksa_exc is not None and isinstance(exc, ksa_exc.ConnectTimeout):
        return True
    return 'Timeout' in type(exc).__name__


def describe_error(exc):
    text = str(exc).strip() or type(exc).__name__
    details = getattr(exc, 'details', None)
    if details and details not in text:
        text = '%s (%s)' % (text, details)
    return text


def translate(exc, what):
    """An SDK/keystoneauth exception -> the typed error (the only mapping of the collection)."""
    if isinstance(exc, PVError):
        return exc
    text = 'OpenStack: %s failed: %s' % (what, describe_error(exc))
    if os_exc is not None and isinstance(exc, os_exc.NotFoundException):
        return NotFound(text)
    if os_exc is not None and isinstance(exc, os_exc.DuplicateResource):
        return Conflict(text)
    if os_exc is not None and isinstance(exc, os_exc.ConflictException):
        return Conflict(text)
    if is_transient(exc):
        return Unavailable(text, ambiguous=is_timeout(exc))
    return PVError(text)


def enable_sdk_logging(path=None, level=None):
    """openstack.cloud's ``sdk_log_path``/``sdk_log_level``: openstacksdk's own log to the file
    ``path`` (``DEBUG`` adds the HTTP requests and answers); nothing when ``path`` is not set
    (never to stdout: a module's output is its JSON)."""
    if openstack is None or not path:
        return
    debug = (level or 'INFO').upper() == 'DEBUG'
    openstack.enable_logging(debug=debug, http_debug=debug, path=path)


def connect_kwargs(params):
    """The ``openstack.connect`` keyword arguments of the module/backend ``params``."""
    kwargs = {}
    for opt, kwarg in AUTH_OPTIONS.items():
        value = params.get(opt)
        if value is not None:
            kwargs[kwarg] = value
    if isinstance(kwargs.get('cloud'), dict):
        # a whole cloud config given inline (as openstack.cloud allows)
        inline = kwargs.pop('cloud')
        for key, value in inline.items():
            kwargs.setdefault(key, value)
    return kwargs


def pool_key(kwargs, environ=None):
    """The pool key of a connection: its ``openstack.connect`` arguments and the ``OS_*``
    environment (clouds.yaml path, env auth). Holds secrets: never log it."""
    environ = os.environ if environ is None else environ
    env = dict((k, v) for k, v in environ.items() if k.startswith('OS_'))
    return ('openstack', connpool.freeze(kwargs), connpool.freeze(env))


def _close_conn(conn):
    conn.close()


class Client(object):
    """One connection (made lazily), the calls, and this host's Nova server.

    With the connection pool on (the plugin daemon, see :mod:`..connpool`), the SDK connection
    is taken from the pool and :meth:`close` gives it back, unless a call of this run failed
    with an unexpected error (then it is closed for real). Only the SDK connection is pooled:
    this object's caches (``_server``) are per run.
    """

    def __init__(self, params=None, conn=None):
        p = self.params = dict(params or {})
        if not HAS_OPENSTACKSDK and conn is None:
            raise PVError('the cinder backend needs the openstacksdk Python package (pip install openstacksdk)')
        self.timeout = int(p.get('timeout') or 300)
        self.retry_timeout = float(p.get('retry_timeout') if p.get('retry_timeout') is not None else 60)
        self.wait = p.get('wait', True) is not False
        self._conn = conn
        self._pool_key = None      # set when the connection is ours to give back to the pool
        self._tainted = False      # an unexpected error: do not give the connection back
        self._server = None
        self.warnings = []

    # -- connection ------------------------------------------------------------
    @property
    def conn(self):
        if self._conn is None:
            kwargs = connect_kwargs(self.params)
            enable_sdk_logging(self.params.get('sdk_log_path'), self.params.get('sdk_log_level'))
            key = pool_key(kwargs) if connpool.enabled() else None
            conn = connpool.POOL.take(key) if key is not None else None
            if conn is None:
                try:
                    conn = openstack.connect(**kwargs)
                except Exception as exc:  # pylint: disable=broad-except
                    raise PVError('cannot configure the OpenStack connection: %s' % describe_error(exc))
            self._conn, self._pool_key, self._tainted = conn, key, False
        return self._conn

    def close(self):
        conn, key = self._conn, self._pool_key
        self._conn = self._pool_key = None
        if conn is None:
            return
        if key is not None and not self._tainted:
            connpool.POOL.give(key, conn, _close_conn)
            return
        try:
            conn.close()
        except Exception:  # pylint: disable=broad-except
            pass

    # -- calls -----------------------------------------------------------------
    def attempt(self, what, func, *args, **kwargs):
        """One try of an API call; SDK errors come out typed (see :func:`translate`)."""
        try:
            return func(*args, **kwargs)
        except Exception as exc:  # pylint: disable=broad-except
            err = translate(exc, what)
            if not isinstance(exc, PVError) and not isinstance(err, (NotFound, Conflict)):
                self._tainted = True   # not an expected answer: no reuse of this connection
            raise err

    def call(self, what, func, *args, **kwargs):
        """An API call; :class:`Unavailable` answers are retried with backoff for ``retry_timeout``."""
        return self.retry(lambda: self.attempt(what, func, *args, **kwargs))

    def retry(self, attempt, on_unavailable=None):
        """Run ``attempt()`` until it does not raise :class:`Unavailable`, for ``retry_timeout``
        seconds. ``on_unavailable(err)`` (optional) runs after each such error and may return
        a result that ends the retries (the request went through after all) or :data:`AGAIN`."""
        last = []

        def once():
            try:
                return attempt()
            except Unavailable as err:
                del last[:]
                last.append(err)
                if on_unavailable is not None:
                    return on_unavailable(err)
                return AGAIN

        def give_up():
            raise Unavailable('%s (gave up retrying after %ss)' % (last[0], int(self.retry_timeout)),
                              ambiguous=last[0].ambiguous)
        return poll(once, self.retry_timeout, give_up, RETRY_INTERVAL, RETRY_FACTOR, RETRY_MAX_INTERVAL)

    def get_or_none(self, what, func, *args, **kwargs):
        """A read that answers None for "not found"."""
        try:
            return self.call(what, func, *args, **kwargs)
        except NotFound:
            return None

    # -- the Docker host's server ----------------------------------------------
    def server(self):
        if self._server is None:
            ref = self.params.get('server')
            if not ref:
                config_drive = self.params.get('config_drive', discovery.CONFIG_DRIVE_LABEL)
                metadata_url = self.params.get('metadata_url', discovery.METADATA_URL)
                ref = discovery.read_instance_uuid(config_drive, metadata_url)
                if not ref:
                    raise NotFound('cannot tell which Nova server this host is: set the server option '
                                   '(name or id); no config drive (%s) or metadata service (%s) answered'
                                   % (config_drive or 'none', metadata_url or 'none'))
            self._server = self._find_this_server(ref)
        return self._server

    def _find_this_server(self, ref):
        """With the pool on, the id found for ``ref`` is remembered: later runs do one GET by id
        (and search again when that server is gone or no longer answers to ``ref``)."""
        fact = None
        if connpool.enabled():
            self.conn  # pylint: disable=pointless-statement
            if self._pool_key is not None:
                fact = ('openstack-server', self._pool_key, ref)
        known = connpool.POOL.recall(fact) if fact is not None else None
        if known:
            server = self.get_server(known)
            if server is not None and ref in (server.id, getattr(server, 'name', None)):
                return server
            connpool.POOL.forget(fact)
        server = self.find_server(ref)
        if fact is not None:
            connpool.POOL.remember(fact, server.id)
        return server

    def server_id_or_none(self):
        """This host's server id when it can be known (without failing), else None."""
        if self._server is not None:
            return self._server.id
        if self.params.get('server') or self.params.get('config_drive') or self.params.get('metadata_url'):
            try:
                return self.server().id
            except PVError:
                return None
        return None

    def find_server(self, ref):
        try:
            server = self.call('finding server %s' % ref, self.conn.compute.find_server, ref,
                               ignore_missing=True)
        except Conflict:
            raise Conflict('more than one Nova server is named %s: give its id' % ref)
        if server is None:
            raise NotFound('Nova server %s not found' % ref)
        return server

    def get_server(self, server_id):
        """The server ``server_id``, or None when it is gone."""
        return self.get_or_none('reading server %s' % server_id, self.conn.compute.get_server, server_id)
