# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""HTTP/1.1 over the plugin's unix socket (``/run/docker/plugins/<driver>.sock``).

Rule: transport only, no volume logic. A thread per connection; each POST is decoded
and checked with :mod:`.protocol`, dispatched through the table built from
:data:`.protocol.CALLS` (:func:`.protocol.dispatch_table`), and answered with JSON;
every error, including HTTP-level garbage, is an ``{"Err": "..."}`` answer and one log
line (credentials scrubbed by the configuration). The socket directory is made 0700
and the socket 0600: root only.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import socket
import socketserver
import sys
import time
import traceback

from http.server import BaseHTTPRequestHandler

from ..common import PVError
from . import protocol
from .protocol import RequestError


class PluginServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    request_queue_size = 256
    allow_reuse_address = False

    def __init__(self, path, driver, log_line):
        self.driver = driver
        self.table = protocol.dispatch_table(driver)
        self.log_line = log_line
        socketserver.UnixStreamServer.__init__(self, path, PluginHandler)

    def scrub(self, text):
        return self.driver.cfg.scrub(text)

    def handle_error(self, request, client_address):
        exc = sys.exc_info()[1]
        self.log_line('connection error: %s: %s' % (type(exc).__name__, self.scrub(exc)))


class PluginHandler(BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    server_version = 'persistent-volumes-plugin'
    sys_version = ''
    timeout = 60

    def log_message(self, format, *args):  # pylint: disable=redefined-builtin
        return None

    def address_string(self):
        return 'unix'

    def _reply(self, code, payload):
        data = protocol.encode(payload)
        try:
            self.send_response(code)
            self.send_header('Content-Type', protocol.MIME)
            self.send_header('Content-Length', str(len(data)))
            if self.close_connection:
                self.send_header('Connection', 'close')
            self.end_headers()
            self.wfile.write(data)
        except (OSError, IOError):
            self.close_connection = True

    def send_error(self, code, message=None, explain=None):
        # HTTP-level garbage (bad request line, headers too long...): still a JSON Err
        self.close_connection = True
        msg = 'bad request: %s' % (message or code)
        self.server.log_line('%s %s' % ('http', msg))
        self._reply(code, protocol.error(msg))

    def do_GET(self):
        self._wrong_method()

    do_PUT = do_DELETE = do_HEAD = do_PATCH = do_OPTIONS = do_GET

    def _wrong_method(self):
        self.close_connection = True
        try:
            self._read_body(discard=True)
        except PVError:
            pass
        self.server.log_line('%s %s: err method not allowed' % (protocol.printable(self.command[:16]),
                                                                protocol.printable(self.path[:80])))
        self._reply(405, protocol.error('method %s not allowed: the plugin API uses POST' % self.command[:16]))

    def _read_body(self, discard=False):
        if 'chunked' in (self.headers.get('Transfer-Encoding') or '').lower():
            self.close_connection = True
            raise RequestError('chunked request bodies are not supported; send Content-Length')
        try:
            length = protocol.check_length(self.headers.get('Content-Length'))
        except RequestError:
            self.close_connection = True
            raise
        data = self.rfile.read(length) if length else b''
        if len(data) != length:
            self.close_connection = True
            raise RequestError('request body truncated (%d of %d bytes)' % (len(data), length))
        return b'' if discard else data

    def do_POST(self):
        started = time.monotonic()
        method = self.path.lstrip('/')
        name = '-'
        status = 200
        body = None
        try:
            handler = self.server.table.get(method)
            if handler is None:
                status = 404
                self._read_body(discard=True)
                raise RequestError('unknown endpoint %r' % self.path[:80])
            body = protocol.decode_body(self._read_body())
            raw_name = body.get('Name')
            if isinstance(raw_name, str):
                name = raw_name[:80]
            result = handler(body)
            payload, note = result if isinstance(result, tuple) else (result, '')
            outcome = 'ok' + (' ' + note if note else '')
        except PVError as exc:
            payload = protocol.error(self.server.scrub(exc))
            outcome = 'err ' + payload['Err']
        except Exception as exc:  # pylint: disable=broad-except
            payload = protocol.error(self.server.scrub('internal error: %s: %s' % (type(exc).__name__, exc)))
            outcome = 'err ' + payload['Err']
            if self.server.driver.cfg.debug:
                self.server.log_line(self.server.scrub(traceback.format_exc()).replace('\n', ' | '))
        caller = ''
        if isinstance(body, dict) and isinstance(body.get('ID'), str):
            caller = ' id=%s' % body['ID'][:12]
        self.server.log_line('%s name=%s%s %s (%dms)' % (protocol.short_name(method), protocol.printable(name),
                                                         caller, protocol.printable(outcome),
                                                         (time.monotonic() - started) * 1000))
        self._reply(status, payload)


def bind(path, driver, log_line):
    """A :class:`PluginServer` listening on ``path`` (a stale socket of a dead daemon is
    replaced; a live one is refused)."""
    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        os.makedirs(directory, 0o700)
    if os.stat(directory).st_mode & 0o077:
        os.chmod(directory, 0o700)          # the plugin sockets are root's only
        log_line('made %s root-only (0700)' % directory)
    if os.path.exists(path):
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.settimeout(2)
        try:
            probe.connect(path)
        except (OSError, IOError):
            os.unlink(path)            # stale socket of a dead daemon
        else:
            raise PVError('another process already serves %s' % path)
        finally:
            probe.close()
    old = os.umask(0o177)
    try:
        server = PluginServer(path, driver, log_line)
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    return server
