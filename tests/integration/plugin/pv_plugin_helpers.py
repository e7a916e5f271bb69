# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Helpers of the volume-plugin tests (imported as ``pv_plugin_helpers``; see conftest.py).

* :func:`role_vars` / :func:`play`: the ``volume_plugin`` role for a driver under a base dir.
* :class:`PluginInstance`: one installed daemon (pid, ctl, record, mounts, loop devices).
* :func:`http` / :func:`raw`: requests straight to the plugin socket.
* :class:`PrivateDockerd`: a second dockerd (own data root, exec root and socket,
  its own bridge) to restart without disturbing the shared engine; Docker discovers
  plugins in /run/docker/plugins for every engine on the host.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import shutil
import signal
import socket
import subprocess
import time

import pv_integration_helpers as helpers

ROLE = 'persistent_volumes.docker.volume_plugin'


def role_vars(driver, base, **extra):
    values = {
        'pv_plugin_driver': driver,
        'pv_plugin_backend': 'loop',
        'pv_plugin_install_dir': os.path.join(base, 'opt'),
        'pv_plugin_config_file': os.path.join(base, 'etc', 'plugin-%s.json' % driver),
        'pv_plugin_unit_dir': os.path.join(base, 'units'),
        'pv_plugin_root': os.path.join(base, 'root'),
        'pv_plugin_pidfile': os.path.join(base, 'run', 'plugin.pid'),
        'pv_plugin_log_file': os.path.join(base, 'log', 'plugin.log'),
        'pv_plugin_service_manager': 'pidfile',
        'pv_plugin_defaults': {'size': '64MiB'},
    }
    values.update(extra)
    return values


def play(variables):
    return [{'name': 'volume plugin', 'hosts': 'localhost', 'gather_facts': False,
             'vars': variables, 'roles': [ROLE]}]


def http(sock_path, endpoint, body=b'', method='POST', timeout=30):
    """One request to the plugin socket; returns (status, decoded JSON or raw text)."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = ('%s /%s HTTP/1.1\r\nHost: plugin\r\nContent-Type: application/json\r\n'
           'Content-Length: %d\r\nConnection: close\r\n\r\n' % (method, endpoint, len(data))).encode() + data
    return raw(sock_path, req, timeout)


def raw(sock_path, data, timeout=30):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    sock.connect(sock_path)
    try:
        sock.sendall(data)
        try:
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        sock.close()
    reply = b''.join(chunks)
    status = None
    if reply.startswith(b'HTTP/'):
        head, _sep, reply = reply.partition(b'\r\n\r\n')
        status = int(head.split(b' ')[1])
    text = reply.decode('utf-8', 'replace')
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


def sh(cmd, check=True, **kwargs):
    return helpers.sh(cmd, check=check, **kwargs)


def docker(*args, **kwargs):
    check = kwargs.pop('check', True)
    return helpers.sh(['docker'] + list(args), check=check, **kwargs)


class PluginInstance(object):
    def __init__(self, driver, base, variables):
        self.driver = driver
        self.base = base
        self.vars = variables
        self.root = variables['pv_plugin_root']
        self.socket = '/run/docker/plugins/%s.sock' % driver
        self.pidfile = variables['pv_plugin_pidfile']
        self.log = variables['pv_plugin_log_file']
        self.ctl = os.path.join(variables['pv_plugin_install_dir'], 'bin', 'pv-plugin-ctl')
        self.config = variables['pv_plugin_config_file']
        self.unit = os.path.join(variables['pv_plugin_unit_dir'], 'pv-plugin-%s.service' % driver)

    # -- process
    def pid(self):
        try:
            with open(self.pidfile) as handle:
                pid = int(handle.read().strip())
        except (IOError, OSError, ValueError):
            return None
        return pid if alive(pid) else None

    def ctl_run(self, action):
        return helpers.sh([self.ctl, action], check=False)

    def start(self):
        proc = self.ctl_run('start')
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return self.pid()

    def kill9(self):
        pid = self.pid()
        assert pid, 'daemon not running'
        os.kill(pid, signal.SIGKILL)
        wait_dead(pid)
        return pid

    # -- state
    def record(self):
        with open(os.path.join(self.root, 'plugin.json')) as handle:
            return json.load(handle)

    def refs(self, name):
        return self.record().get('refs', {}).get(name, [])

    def mountpoint(self, name):
        return os.path.join(self.root, 'mounts', name)

    def mount_count(self, name):
        return helpers.mountpoints().count(self.mountpoint(name))

    def image(self, name):
        return os.path.join(self.root, 'images', name + '.img')

    def loops_of(self, name):
        return [dev for dev, backing in helpers.loop_devices().items() if backing == self.image(name)]

    def request(self, endpoint, body=b'', method='POST'):
        return http(self.socket, endpoint, body, method)

    def log_text(self):
        try:
            with open(self.log) as handle:
                return handle.read()
        except (IOError, OSError):
            return ''


def alive(pid):
    try:
        with open('/proc/%d/cmdline' % pid, 'rb') as handle:
            return bool(handle.read())      # a zombie has an empty cmdline
    except (IOError, OSError):
        return False


def wait_dead(pid, timeout=15):
    deadline = time.monotonic() + timeout
    while alive(pid):
        if time.monotonic() > deadline:
            raise AssertionError('pid %d still alive after %ss' % (pid, timeout))
        time.sleep(0.05)


def wait_for(predicate, timeout=20, interval=0.1, what='condition'):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError('timed out after %ss waiting for %s' % (timeout, what))
        time.sleep(interval)


def remove_driver_objects(driver):
    """Containers using the driver's volumes, then the volumes (the daemon must run)."""
    vols = docker('volume', 'ls', '-q', '--filter', 'driver=' + driver, check=False).stdout.split()
    for vol in vols:
        ids = docker('ps', '-aq', '--filter', 'volume=' + vol, check=False).stdout.split()
        if ids:
            docker('rm', '-f', *ids, check=False)
    for vol in vols:
        docker('volume', 'rm', '-f', vol, check=False)


def safety_net(instance):
    """After the role removed the daemon: anything it left (by pid, by path) goes."""
    pid = instance.pid()
    if pid:
        os.kill(pid, signal.SIGKILL)
        wait_dead(pid)
    if os.path.exists(instance.socket):
        os.unlink(instance.socket)
    leftovers = []
    for mp in sorted((m for m in helpers.mountpoints() if m.startswith(instance.base + '/')),
                     key=lambda m: -m.count('/')):
        leftovers.append('mount ' + mp)
        helpers.umount(mp)
    for dev, backing in helpers.loop_devices().items():
        if backing.startswith(instance.base + '/'):
            leftovers.append('loop %s (%s)' % (dev, backing))
            helpers.detach_loop(dev)
    shutil.rmtree(instance.base, ignore_errors=True)
    return leftovers


class PrivateDockerd(object):
    """A second, private dockerd: own data root, exec root, socket and bridge.

    Never ``--bridge=none``: a dockerd started that way deletes the host's
    ``docker0`` interface, which the shared engine needs. The private engine
    gets its own bridge interface (created here, deleted by :meth:`cleanup`)
    and ``--iptables=false``, so it touches nothing the shared engine owns.
    """

    def __init__(self, base, bridge, subnet='172.31.254.1/24'):
        self.base = base
        self.bridge = bridge
        self.subnet = subnet
        self.sock = os.path.join(base, 'docker.sock')
        self.pidfile = os.path.join(base, 'dockerd.pid')
        self.logfile = os.path.join(base, 'dockerd.log')
        self.pid = None
        self._proc = None

    @property
    def host(self):
        return 'unix://' + self.sock

    def cli(self, *args, **kwargs):
        check = kwargs.pop('check', True)
        return helpers.sh(['docker', '-H', self.host] + list(args), check=check, **kwargs)

    def start(self, timeout=90):
        os.makedirs(self.base, exist_ok=True)
        if not os.path.exists('/sys/class/net/%s' % self.bridge):
            helpers.sh(['ip', 'link', 'add', self.bridge, 'type', 'bridge'])
            helpers.sh(['ip', 'addr', 'add', self.subnet, 'dev', self.bridge])
            helpers.sh(['ip', 'link', 'set', self.bridge, 'up'])
        with open(self.logfile, 'a') as log:
            proc = subprocess.Popen(
                ['setsid', 'dockerd', '--data-root', os.path.join(self.base, 'data'),
                 '--exec-root', os.path.join(self.base, 'exec'), '-H', self.host,
                 '--pidfile', self.pidfile, '--bridge', self.bridge, '--iptables=false', '--ip-masq=false',
                 '--ip6tables=false', '--userland-proxy=false'],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        self.pid = proc.pid
        self._proc = proc
        wait_for(lambda: self.cli('info', check=False).returncode == 0 or proc.poll() is not None,
                 timeout=timeout, interval=0.3, what='private dockerd')
        if proc.poll() is not None:
            raise AssertionError('private dockerd exited:\n' + open(self.logfile).read()[-3000:])
        return self.pid

    def stop(self, timeout=60):
        if self.pid is None:
            return
        if alive(self.pid):
            os.kill(self.pid, signal.SIGTERM)
            try:
                wait_dead(self.pid, timeout)
            except AssertionError:
                os.kill(self.pid, signal.SIGKILL)
                wait_dead(self.pid, 10)
        try:
            self._proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
        self.pid = None

    def restart(self):
        self.stop()
        return self.start()

    def cleanup(self):
        self.stop()
        if os.path.exists('/sys/class/net/%s' % self.bridge):
            helpers.sh(['ip', 'link', 'delete', self.bridge], check=False)
        shutil.rmtree(self.base, ignore_errors=True)
