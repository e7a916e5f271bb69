# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A legacy Docker volume plugin that does nothing (bench/swarm's floor): scope ``global`` like a
cloud volume, every call answered at once, a volume is a directory under /var/lib/pv-noop/<name>.

Rule: no storage, no cloud, no waiting: what Swarm and dockerd cost around a plugin volume.

    python3 noop_plugin.py [--driver pv-noop]     # serves /run/docker/plugins/<driver>.sock
"""

from __future__ import absolute_import, division, print_function

import json
import os
import socketserver
import sys
from http.server import BaseHTTPRequestHandler

DRIVER = sys.argv[sys.argv.index('--driver') + 1] if '--driver' in sys.argv else 'pv-noop'
SOCK = '/run/docker/plugins/%s.sock' % DRIVER
BASE = '/var/lib/pv-noop'
KNOWN = set(os.listdir(BASE)) if os.path.isdir(BASE) else set()


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):  # pylint: disable=arguments-differ
        pass

    def do_POST(self):  # pylint: disable=invalid-name
        body = self.rfile.read(int(self.headers.get('Content-Length') or 0)) or b'{}'
        req = json.loads(body.decode('utf-8') or '{}')
        call = self.path.rsplit('.', 1)[-1]
        name = req.get('Name', '')
        path = os.path.join(BASE, name)
        out = {'Err': ''}
        if self.path == '/Plugin.Activate':
            out = {'Implements': ['VolumeDriver']}
        elif call == 'Capabilities':
            out = {'Capabilities': {'Scope': 'global'}}
        elif call == 'Create':
            os.makedirs(path, exist_ok=True)
            KNOWN.add(name)
        elif call == 'Remove':
            KNOWN.discard(name)
        elif call in ('Mount', 'Path'):
            os.makedirs(path, exist_ok=True)
            out['Mountpoint'] = path
        elif call == 'Get':
            out = {'Volume': {'Name': name, 'Mountpoint': path}, 'Err': ''} if name in KNOWN else {'Err': 'no such volume'}
        elif call == 'List':
            out['Volumes'] = [{'Name': n, 'Mountpoint': os.path.join(BASE, n)} for n in sorted(KNOWN)]
        data = json.dumps(out).encode()
        self.send_response(200)
        self.send_header('Content-Type', 'application/vnd.docker.plugins.v1.2+json')
        self.send_header('Content-Length', str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def get_request(self):
        conn, _addr = self.socket.accept()
        return conn, ('noop', 0)


def main():
    os.makedirs(os.path.dirname(SOCK), exist_ok=True)
    os.makedirs(BASE, exist_ok=True)
    if os.path.exists(SOCK):
        os.unlink(SOCK)
    Server(SOCK, Handler).serve_forever()


if __name__ == '__main__':
    main()
