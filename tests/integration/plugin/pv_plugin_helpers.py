# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Helpers of the volume-plugin tests (imported as ``pv_plugin_helpers``; see conftest.py).

* :func:`role_vars` / :func:`play`: the ``volume_plugin`` role for a driver under a base dir.
* :class:`PluginInstance`: one installed daemon (pid, ctl, record, mounts, loop devices).
* :func:`http` / :func:`raw`: requests straight to the plugin socket.
* :class:`PrivateDockerd`: the engine the plugin tests use (own data root, exec root,
  socket, bridge, and a private /run/docker/plugins in its own mount namespace), so the
  shared engine never sees (and never caches) a test plugin; restartable at will.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
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
        'pv_plugin_unmount_grace': 1,
    }
    values.update(extra)
    return values


def plugin_vars(engine, driver, **extra):
    """Role variables for a test plugin: files under the engine's shared dir, socket in its
    private plugin directory, reference checks against it."""
    base = os.path.join(engine.shared, driver)
    return role_vars(driver, base, pv_plugin_socket=os.path.join(engine.plugin_dir, driver + '.sock'),
                     pv_plugin_docker_host=engine.host, **extra)


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
    def __init__(self, driver, base, variables, cli=None):
        self.cli = cli or docker
        self.driver = driver
        self.base = base
        self.vars = variables
        self.root = variables['pv_plugin_root']
        self.socket = variables.get('pv_plugin_socket') or '/run/docker/plugins/%s.sock' % driver
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


MODULE = 'ansible_collections.persistent_volumes.docker.plugins.module_utils.plugin.daemon'


class DirectDaemon(PluginInstance):
    """The daemon started straight from this checkout (``python -m``; the collection
    tree of the test session on PYTHONPATH) with a given configuration: for the cloud
    backends, whose SDKs the test venv already has. Socket in the engine's private
    plugin directory, files under its shared directory; stopped by pid."""

    def __init__(self, engine, driver, config, python=None):
        base = os.path.join(engine.shared, driver)
        variables = {
            'pv_plugin_root': os.path.join(base, 'root'),
            'pv_plugin_pidfile': os.path.join(base, 'plugin.pid'),
            'pv_plugin_log_file': os.path.join(base, 'plugin.log'),
            'pv_plugin_install_dir': base,
            'pv_plugin_config_file': os.path.join(base, 'config.json'),
            'pv_plugin_unit_dir': base,
            'pv_plugin_socket': os.path.join(engine.plugin_dir, driver + '.sock'),
        }
        PluginInstance.__init__(self, driver, base, variables, engine.cli)
        self.python = python or sys.executable
        self.config_data = dict(config, driver=driver, root=self.root, socket=self.socket,
                                docker_host=engine.host)

    def start(self, timeout=60):
        os.makedirs(self.base, exist_ok=True)
        if not os.path.exists(self.config):
            fd = os.open(self.config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, 'w') as handle:
                json.dump(self.config_data, handle)
        env = dict(os.environ, PYTHONPATH=os.environ['PV_COLLECTIONS_ROOT'], PYTHONDONTWRITEBYTECODE='1',
                   PYTHONUNBUFFERED='1')
        with open(self.log, 'a') as log:
            subprocess.Popen(['setsid', self.python, '-m', MODULE, '--config', self.config, '--pidfile', self.pidfile],
                             stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env)
        wait_for(lambda: self.pid() and os.path.exists(self.socket), timeout=timeout,
                 what='the plugin daemon (log: %s)' % self.log_text()[-2000:])
        return self.pid()

    def stop(self):
        pid = self.pid()
        if pid:
            os.kill(pid, signal.SIGTERM)
            try:
                wait_dead(pid, 30)
            except AssertionError:
                os.kill(pid, signal.SIGKILL)
                wait_dead(pid)
        if os.path.exists(self.socket):
            os.unlink(self.socket)


@contextlib.contextmanager
def direct_daemon(engine, driver, config):
    """A started :class:`DirectDaemon`; afterwards the driver's containers and volumes are
    removed (while it still runs), it is stopped and the engine restarted (Docker caches
    a legacy plugin until it restarts)."""
    daemon = DirectDaemon(engine, driver, config)
    daemon.start()
    try:
        yield daemon
    finally:
        if daemon.pid():
            remove_driver_objects(driver, engine.cli)
        daemon.stop()
        engine.restart()


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


def remove_driver_objects(driver, cli=None):
    """Containers using the driver's volumes, then the volumes (the daemon must run)."""
    cli = cli or docker
    vols = cli('volume', 'ls', '-q', '--filter', 'driver=' + driver, check=False).stdout.split()
    for vol in vols:
        ids = cli('ps', '-aq', '--filter', 'volume=' + vol, check=False).stdout.split()
        if ids:
            cli('rm', '-f', *ids, check=False)
    for vol in vols:
        cli('volume', 'rm', '-f', vol, check=False)


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
    """A private dockerd for the plugin tests: own data root, exec root, socket, bridge,
    and its own view of ``/run/docker/plugins``.

    Docker (20.10 at least) keeps every legacy plugin it has activated until it
    restarts, and ``docker volume ls`` then waits ~15 s for each one whose socket
    is gone. A test plugin seen by the shared engine would slow every later
    ``docker volume ls`` on it. So this engine runs in its own mount namespace
    (``unshare --mount --propagation slave``) where ``<base>/plugins`` is bind
    mounted over ``/run/docker/plugins``: test plugins put their socket there and
    only this engine ever sees them. ``<base>/shared`` is a shared bind mount made
    before the namespace: mounts the plugin makes under it (in the host namespace)
    propagate into the engine's namespace, as they would on a normal host.

    Never ``--bridge=none`` (a dockerd started that way deletes the host's
    ``docker0``); the engine gets its own bridge interface and ``--iptables=false``.
    """

    def __init__(self, base, bridge, subnet='172.31.254.1/24'):
        self.base = base
        self.bridge = bridge
        self.subnet = subnet
        self.sock = os.path.join(base, 'docker.sock')
        self.pidfile = os.path.join(base, 'dockerd.pid')
        self.logfile = os.path.join(base, 'dockerd.log')
        self.plugin_dir = os.path.join(base, 'plugins')
        self.shared = os.path.join(base, 'shared')
        self.pid = None
        self._proc = None
        self._client = None

    @property
    def host(self):
        return 'unix://' + self.sock

    def cli(self, *args, **kwargs):
        check = kwargs.pop('check', True)
        return helpers.sh(['docker', '-H', self.host] + list(args), check=check, **kwargs)

    def client(self):
        if self._client is None:
            import docker as docker_sdk
            self._client = docker_sdk.DockerClient(base_url=self.host, timeout=120)
        return self._client

    def _prepare(self):
        os.makedirs(self.plugin_dir, exist_ok=True)
        os.makedirs(self.shared, exist_ok=True)
        os.makedirs('/run/docker/plugins', exist_ok=True)
        if not helpers.is_mountpoint(self.shared):
            helpers.sh(['mount', '--bind', self.shared, self.shared])
            helpers.sh(['mount', '--make-shared', self.shared])
        if not os.path.exists('/sys/class/net/%s' % self.bridge):
            helpers.sh(['ip', 'link', 'add', self.bridge, 'type', 'bridge'])
            helpers.sh(['ip', 'addr', 'add', self.subnet, 'dev', self.bridge])
            helpers.sh(['ip', 'link', 'set', self.bridge, 'up'])

    def start(self, timeout=90):
        self._prepare()
        script = 'mount --bind "$1" /run/docker/plugins && shift && exec "$@"'
        cmd = ['setsid', 'unshare', '--mount', '--propagation', 'slave', '--', 'sh', '-c', script, 'sh',
               self.plugin_dir, 'dockerd', '--data-root', os.path.join(self.base, 'data'),
               '--exec-root', os.path.join(self.base, 'exec'), '-H', self.host, '--pidfile', self.pidfile,
               '--bridge', self.bridge, '--iptables=false', '--ip-masq=false', '--ip6tables=false',
               '--userland-proxy=false']
        with open(self.logfile, 'a') as log:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        self.pid = proc.pid
        self._proc = proc
        wait_for(lambda: self.cli('info', check=False).returncode == 0 or proc.poll() is not None,
                 timeout=timeout, interval=0.3, what='private dockerd')
        if proc.poll() is not None:
            raise AssertionError('private dockerd exited:\n' + open(self.logfile).read()[-3000:])
        return self.pid

    def load_image(self, image):
        helpers.sh(['bash', '-c', 'set -o pipefail; docker save "$1" | docker -H "$2" load', 'load', image, self.host])

    def stop(self, timeout=60):
        if self._client is not None:
            self._client.close()
            self._client = None
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
        """Stop the engine and remove what it and the tests left (containers, volumes first)."""
        if self.pid is not None:
            ids = self.cli('ps', '-aq', check=False).stdout.split()
            if ids:
                self.cli('rm', '-f', *ids, check=False)
            for vol in self.cli('volume', 'ls', '-q', check=False).stdout.split():
                self.cli('volume', 'rm', '-f', vol, check=False)
        self.stop()
        for mp in sorted((m for m in helpers.mountpoints() if m.startswith(self.shared + '/')),
                         key=lambda m: -m.count('/')):
            helpers.umount(mp)
        for dev, backing in helpers.loop_devices().items():
            if backing.startswith(self.base + '/'):
                helpers.detach_loop(dev)
        while helpers.is_mountpoint(self.shared):
            helpers.sh(['umount', self.shared])
        if os.path.exists('/sys/class/net/%s' % self.bridge):
            helpers.sh(['ip', 'link', 'delete', self.bridge], check=False)
        shutil.rmtree(self.base, ignore_errors=True)


def percentile(values, q):
    """The ``q`` quantile (0..1) of ``values``, nearest rank (p99 of 100 samples = the 99th smallest)."""
    ordered = sorted(values)
    if not ordered:
        return float('nan')
    rank = max(1, int(-(-q * len(ordered) // 1)))       # ceil(q * n)
    return ordered[min(rank, len(ordered)) - 1]


def fsync_write(directory, size=512):
    """A control sample for :func:`latency_round`: what the daemon's record write costs on this
    disk right now (temp file, write, fsync, rename, fsync of the directory)."""
    def write(_index):
        path = os.path.join(directory, '.latency-control')
        with open(path + '.tmp', 'w') as handle:
            handle.write('x' * size)
            handle.flush()
            os.fsync(handle.fileno())
        os.rename(path + '.tmp', path)
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    return write


def latency_round(sock_path, calls, rounds):
    """Time ``rounds`` rounds of ``calls`` (a list of (label, endpoint, body)) against the plugin
    socket, interleaved; returns {label: [milliseconds, ...]} and fails on any Err answer. An
    entry with endpoint None times ``body(index)`` run here (a control measurement)."""
    samples = dict((label, []) for label, _endpoint, _body in calls)
    for index in range(rounds):
        for label, endpoint, body in calls:
            if endpoint is None:
                started = time.monotonic()
                body(index)
                samples[label].append((time.monotonic() - started) * 1000.0)
                continue
            body = body(index) if callable(body) else body
            started = time.monotonic()
            status, answer = http(sock_path, endpoint, body)
            samples[label].append((time.monotonic() - started) * 1000.0)
            assert status == 200 and isinstance(answer, dict) and not answer.get('Err'), (label, status, answer)
    return samples
