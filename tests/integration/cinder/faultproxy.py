# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A small HTTP proxy on 127.0.0.1 in front of cinder-api that injects faults (stdlib only).

Rules are checked in order; the first that matches a request (method + path regex) and
still has a count left applies:

* ``('fail', status)``        answer ``status`` without forwarding;
* ``('forward_fail', status)`` forward, then answer ``status`` instead of the real answer
  (the request took effect; the client cannot know);
* ``('delay', seconds)``      forward after sleeping.

Everything else is forwarded untouched. ``hits`` counts requests per (method, path).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import http.client
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FaultProxy(object):
    def __init__(self, upstream_port, upstream_host='127.0.0.1'):
        self.upstream = (upstream_host, upstream_port)
        self.rules = []
        self.log = []
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = 'HTTP/1.1'

            def log_message(self, *args):  # quiet
                return None

            def _handle(self):
                length = int(self.headers.get('Content-Length') or 0)
                body = self.rfile.read(length) if length else None
                rule = proxy._match(self.command, self.path)
                proxy.log.append((time.time(), self.command, self.path, rule and rule['action']))
                if rule and rule['action'] == 'fail':
                    return self._send(rule['arg'], b'{"error": "injected by faultproxy"}',
                                      {'Content-Type': 'application/json'})
                if rule and rule['action'] == 'delay':
                    time.sleep(rule['arg'])
                try:
                    status, headers, data = proxy._forward(self.command, self.path, self.headers, body)
                except OSError as exc:
                    return self._send(502, ('{"error": "upstream: %s"}' % exc).encode(),
                                      {'Content-Type': 'application/json'})
                if rule and rule['action'] == 'forward_fail':
                    return self._send(rule['arg'], b'{"error": "injected after forwarding"}',
                                      {'Content-Type': 'application/json'})
                return self._send(status, data, headers)

            def _send(self, status, data, headers):
                self.send_response(status)
                for key, value in headers.items():
                    if key.lower() not in ('content-length', 'transfer-encoding', 'connection'):
                        self.send_header(key, value)
                self.send_header('Content-Length', str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _handle

        self.server = ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def add_rule(self, method, path_regex, action, arg, count=1):
        with self.lock:
            self.rules.append({'method': method, 'path': re.compile(path_regex), 'action': action,
                               'arg': arg, 'count': count})

    def clear(self):
        with self.lock:
            self.rules = []

    def _match(self, method, path):
        with self.lock:
            for rule in self.rules:
                if rule['count'] != 0 and rule['method'] in (method, '*') and rule['path'].search(path):
                    if rule['count'] > 0:
                        rule['count'] -= 1
                    return dict(rule)
        return None

    def _forward(self, method, path, headers, body):
        conn = http.client.HTTPConnection(*self.upstream, timeout=120)
        try:
            hdrs = dict((k, v) for k, v in headers.items() if k.lower() not in ('host', 'connection'))
            conn.request(method, path, body=body, headers=hdrs)
            resp = conn.getresponse()
            return resp.status, dict(resp.getheaders()), resp.read()
        finally:
            conn.close()

    def hits(self, method, path_regex):
        rx = re.compile(path_regex)
        return sum(1 for entry in self.log if entry[1] == method and rx.search(entry[2]))

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
