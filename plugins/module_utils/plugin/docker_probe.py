# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one Docker API read the plugin daemon needs: which running containers use
which of its volumes (to rebuild mount reference counts after a restart).

Standard library only (``http.client`` over the Engine's unix socket) so the
daemon stays small; it never changes anything in Docker. Listing containers
does not call volume plugins, so asking while Docker waits on us is safe.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import socket

try:
    from http.client import HTTPConnection
except ImportError:  # pragma: no cover - Python 2 is not supported by the daemon
    HTTPConnection = object

from ..common import PVError

HOLDING_STATES = ('running', 'paused', 'restarting')


class _UnixConnection(HTTPConnection):
    def __init__(self, path, timeout):
        HTTPConnection.__init__(self, 'localhost', timeout=timeout)
        self._path = path

    def connect(self):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except (OSError, IOError):
            sock.close()
            raise
        self.sock = sock


class DockerProbe(object):
    def __init__(self, host='unix:///var/run/docker.sock', timeout=5):
        if not host.startswith('unix://'):
            raise PVError('only unix:// Docker hosts are supported, got %r' % host)
        self.path = host[len('unix://'):]
        self.timeout = timeout

    def get(self, url):
        conn = _UnixConnection(self.path, self.timeout)
        try:
            conn.request('GET', url, headers={'Host': 'docker', 'Accept': 'application/json'})
            resp = conn.getresponse()
            body = resp.read()
        except (OSError, IOError, ValueError) as exc:
            raise PVError('cannot reach the Docker engine at %s: %s' % (self.path, exc))
        finally:
            conn.close()
        if resp.status != 200:
            raise PVError('Docker engine answered %s to GET %s: %s'
                          % (resp.status, url, body[:200].decode('utf-8', 'replace')))
        try:
            return json.loads(body.decode('utf-8'))
        except ValueError as exc:
            raise PVError('Docker engine sent invalid JSON for %s: %s' % (url, exc))

    def ping(self):
        try:
            conn = _UnixConnection(self.path, self.timeout)
            try:
                conn.request('GET', '/_ping', headers={'Host': 'docker'})
                return conn.getresponse().status == 200
            finally:
                conn.close()
        except (OSError, IOError, ValueError):
            return False

    def volume_holders(self, driver):
        """{volume name: [container id, ...]} for containers that hold a mount of one of
        ``driver``'s volumes (running, paused or restarting)."""
        holders = {}
        for container in self.get('/containers/json?all=1') or []:
            if container.get('State') not in HOLDING_STATES:
                continue
            for mount in container.get('Mounts') or []:
                if mount.get('Type') == 'volume' and mount.get('Driver') == driver and mount.get('Name'):
                    holders.setdefault(mount['Name'], []).append(container.get('Id'))
        return holders
