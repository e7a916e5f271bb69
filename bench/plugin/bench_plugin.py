# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark of the volume-plugin daemon (loop backend) against a real dockerd.

Measures, and prints with the targets of issue 5:

* ``docker run --rm -v VOL:/data IMAGE true`` start-up with a plugin volume (created
  beforehand) against a Docker ``local`` bind volume; p50/p90 and the p50 overhead
  (target <= +100 ms), for three cases: ``unmount_grace`` 0 (each of Docker's two
  Mounts per run attaches and mounts, each Unmount unmounts and detaches, all inside
  ``docker run``), an idle volume with the default grace (one attach + mount in the
  run, the release after it), and a run within the grace of the previous one;
* ``docker volume create -d <driver> --opt size=...`` latency (sparse image, loop
  attach, mkfs, mount, lost+found handling, unmount, detach) for ext4 and xfs, and the
  daemon's own time for Create/Mount/Unmount from its log lines;
* the daemon's resident memory (VmRSS now and VmHWM peak; target <= 60 MB);
* (issue 9, when the OpenStack test cloud runs) a cinder plugin daemon with cinder-api
  behind the fault proxy (tests/integration/cinder/faultproxy.py) holding one volume's
  attach for 30 s: p50/p99 of List, Get, Path, Capabilities and another (mounted)
  volume's Mount/Unmount while that Mount waits, side by side with the same calls idle
  (target p99 <= 50 ms: nothing waits behind the slow attach). The test cloud's
  hypervisor emulation (tests/integration/cinder/conftest.py ``Hypervisor``) plays the
  guest's disks; ``--delayed-attach off`` skips it.

The daemon runs from this checkout (``python -m ...plugin.daemon`` with a temporary
``ansible_collections`` tree on PYTHONPATH) with its own driver name, root and
config under a temporary directory, for a private dockerd started here in its own
mount namespace (the shared engine would otherwise remember the plugin until it
restarts); everything is removed at the end (daemon and dockerd stopped by pid).
Needs root and a running dockerd to copy the test image from (built by
tests/harness/image.sh when missing).

    sudo .venv/bin/python bench/plugin/bench_plugin.py [--runs 15] [--creates 5] [--json out.json]
        [--delayed-attach auto|on|off] [--rounds 100]
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import argparse
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODULE = 'ansible_collections.persistent_volumes.docker.plugins.module_utils.plugin.daemon'


def sh(cmd, check=True, **kwargs):
    proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, check=False, **kwargs)
    if check and proc.returncode != 0:
        raise RuntimeError('%s failed (rc=%s): %s%s' % (' '.join(cmd), proc.returncode, proc.stdout, proc.stderr))
    return proc


def timed(cmd):
    t0 = time.perf_counter()
    sh(cmd)
    return (time.perf_counter() - t0) * 1000.0


def pct(values, q):
    values = sorted(values)
    if not values:
        return float('nan')
    k = (len(values) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def proc_status(pid, key):
    with open('/proc/%d/status' % pid) as handle:
        for line in handle:
            if line.startswith(key + ':'):
                return int(line.split()[1]) / 1024.0      # kB -> MiB
    return float('nan')


def mounts_under(path):
    with open('/proc/self/mountinfo') as handle:
        return [l.split()[4] for l in handle if l.split()[4].startswith(path + '/')]


def loops_under(path):
    out = sh(['losetup', '-l', '-n', '-O', 'NAME,BACK-FILE'], check=False).stdout
    return [l.split()[0] for l in out.splitlines() if len(l.split()) > 1 and l.split()[1].startswith(path + '/')]


class Engine(object):
    """A private dockerd in its own mount namespace with its own /run/docker/plugins.

    Docker keeps every legacy plugin it ever activated until it restarts (and then
    waits ~15 s on each vanished one in ``docker volume ls``), so the benchmark's
    plugin must never be seen by the machine's shared engine. ``<base>/shared`` is a
    shared bind mount made before the namespace, so the plugin's mounts (made in the
    host namespace) propagate to this engine as on a normal host.
    """

    def __init__(self, base, bridge):
        self.base = base
        self.bridge = bridge
        self.sock = os.path.join(base, 'docker.sock')
        self.plugin_dir = os.path.join(base, 'plugins')
        self.shared = os.path.join(base, 'shared')
        self.pid = None

    @property
    def host(self):
        return 'unix://' + self.sock

    def docker(self, *args):
        return ['docker', '-H', self.host] + list(args)

    def start(self, image):
        os.makedirs(self.plugin_dir)
        os.makedirs(self.shared)
        os.makedirs('/run/docker/plugins', exist_ok=True)
        sh(['mount', '--bind', self.shared, self.shared])
        sh(['mount', '--make-shared', self.shared])
        sh(['ip', 'link', 'add', self.bridge, 'type', 'bridge'])
        sh(['ip', 'addr', 'add', '172.31.252.1/24', 'dev', self.bridge])
        sh(['ip', 'link', 'set', self.bridge, 'up'])
        script = 'mount --bind "$1" /run/docker/plugins && shift && exec "$@"'
        with open(os.path.join(self.base, 'dockerd.log'), 'a') as log:
            proc = subprocess.Popen(
                ['setsid', 'unshare', '--mount', '--propagation', 'slave', '--', 'sh', '-c', script, 'sh',
                 self.plugin_dir, 'dockerd', '--data-root', os.path.join(self.base, 'data'), '--exec-root',
                 os.path.join(self.base, 'exec'), '-H', self.host, '--pidfile', os.path.join(self.base, 'dockerd.pid'),
                 '--bridge', self.bridge, '--iptables=false', '--ip-masq=false', '--ip6tables=false',
                 '--userland-proxy=false'], stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        self.pid = proc.pid
        deadline = time.monotonic() + 90
        while sh(self.docker('info'), check=False).returncode != 0:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError('private dockerd did not start')
            time.sleep(0.3)
        sh(['bash', '-c', 'set -o pipefail; docker save "$1" | docker -H "$2" load', 'load', image, self.host])

    def stop(self):
        if self.pid is not None:
            for cid in sh(self.docker('ps', '-aq'), check=False).stdout.split():
                sh(self.docker('rm', '-f', cid), check=False)
            try:
                os.kill(self.pid, signal.SIGTERM)
                deadline = time.monotonic() + 60
                while os.path.exists('/proc/%d' % self.pid) and time.monotonic() < deadline:
                    with open('/proc/%d/cmdline' % self.pid, 'rb') as handle:
                        if not handle.read():
                            break
                    time.sleep(0.1)
            except (OSError, IOError):
                pass
            self.pid = None
        for mp in sorted(mounts_under(self.shared), key=lambda m: -m.count('/')):
            sh(['umount', '-l', mp], check=False)
        sh(['umount', '-l', self.shared], check=False)
        sh(['ip', 'link', 'delete', self.bridge], check=False)


class Daemon(object):
    def __init__(self, python, base, driver, engine, grace, config=None):
        self.extra = dict(config or {})
        self.base = base
        self.driver = driver
        self.engine = engine
        self.grace = grace
        self.root = os.path.join(base, 'root')
        self.config = os.path.join(base, 'config.json')
        self.pidfile = os.path.join(base, 'plugin.pid')
        self.logfile = os.path.join(base, 'plugin.log')
        self.socket = os.path.join(engine.plugin_dir, driver + '.sock')
        self.python = python
        self.tree = os.path.join(base, 'tree')
        self.pid = None

    def start(self):
        ns = os.path.join(self.tree, 'ansible_collections', 'persistent_volumes')
        os.makedirs(ns)
        os.symlink(REPO, os.path.join(ns, 'docker'))
        with open(self.config, 'w') as handle:
            json.dump(dict({'driver': self.driver, 'backend': 'loop', 'root': self.root, 'socket': self.socket,
                            'docker_host': self.engine.host, 'defaults': {'size': '256MiB'},
                            'unmount_grace': self.grace}, **self.extra), handle)
        os.chmod(self.config, 0o600)
        env = dict(os.environ, PYTHONPATH=self.tree, PYTHONDONTWRITEBYTECODE='1', PYTHONUNBUFFERED='1')
        with open(self.logfile, 'a') as log:
            subprocess.Popen(['setsid', self.python, '-m', MODULE, '--config', self.config, '--pidfile', self.pidfile],
                             stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if os.path.exists(self.pidfile) and os.path.exists(self.socket):
                with open(self.pidfile) as handle:
                    self.pid = int(handle.read())
                return self.pid
            time.sleep(0.05)
        raise RuntimeError('daemon did not start:\n' + open(self.logfile).read())

    def stop(self):
        if self.pid is None:
            return
        try:
            os.kill(self.pid, signal.SIGTERM)
        except OSError:
            pass
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with open('/proc/%d/cmdline' % self.pid, 'rb') as handle:
                    if not handle.read():
                        break
            except (IOError, OSError):
                break
            time.sleep(0.05)
        else:
            os.kill(self.pid, signal.SIGKILL)
        self.pid = None
        if os.path.exists(self.socket):
            os.unlink(self.socket)

    def op_times(self, op, outcome):
        """Milliseconds of the daemon's own log lines ``<op> ... ok <outcome> ... (Nms)``."""
        pattern = re.compile(r': %s name=\S+(?: id=\S+)? ok %s.*\((\d+)ms\)$' % (op, outcome))
        with open(self.logfile) as handle:
            return [float(m.group(1)) for m in (pattern.search(l.rstrip()) for l in handle) if m]


def plugin_call(sock_path, endpoint, body, timeout=300):
    """One POST to the plugin socket (a new connection, as Docker makes); returns the JSON answer."""
    import socket
    data = json.dumps(body).encode()
    req = ('POST /%s HTTP/1.1\r\nHost: plugin\r\nContent-Type: application/json\r\nContent-Length: %d\r\n'
           'Connection: close\r\n\r\n' % (endpoint, len(data))).encode() + data
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    sock.connect(sock_path)
    try:
        sock.sendall(req)
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        sock.close()
    answer = json.loads(b''.join(chunks).partition(b'\r\n\r\n')[2].decode())
    if answer.get('Err'):
        raise RuntimeError('%s %s: %s' % (endpoint, body, answer['Err']))
    return answer


def call_rounds(sock_path, calls, rounds):
    """{label: [ms, ...]} for ``rounds`` interleaved rounds of ``calls`` ((label, endpoint, body or f(i)));
    endpoint None: time ``body(i)`` here (a control)."""
    out = dict((label, []) for label, _e, _b in calls)
    for index in range(rounds):
        for label, endpoint, body in calls:
            t0 = time.perf_counter()
            if endpoint is None:
                body(index)
            else:
                plugin_call(sock_path, endpoint, body(index) if callable(body) else body)
            out[label].append((time.perf_counter() - t0) * 1000.0)
    return out


def fsync_write(directory):
    """Control: the disk cost of the daemon's record write (temp file, fsync, rename, fsync of the dir)."""
    def write(_index):
        path = os.path.join(directory, '.bench-control')
        with open(path + '.tmp', 'w') as handle:
            handle.write('x' * 512)
            handle.flush()
            os.fsync(handle.fileno())
        os.rename(path + '.tmp', path)
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    return write


def cloud_running():
    clouds = os.path.join(REPO, '.state', 'openstack', 'clouds.yaml')
    status = os.path.join(REPO, 'tests', 'harness', 'openstack', 'status.sh')
    return os.path.exists(clouds) and sh(['bash', status], check=False).returncode == 0


DELAY = 30


def delayed_attach(engine, top, tag, rounds):
    """p50/p99 of the read calls and another volume's Mount/Unmount, idle and while one volume's
    Mount waits 30 s on its attach (cinder-api behind the fault proxy)."""
    import importlib.util
    import threading
    import openstack
    import yaml
    cinder_dir = os.path.join(REPO, 'tests', 'integration', 'cinder')
    if cinder_dir not in sys.path:
        sys.path.insert(0, cinder_dir)
    from faultproxy import FaultProxy  # pylint: disable=import-error
    spec = importlib.util.spec_from_file_location('pv_bench_cinder_conftest', os.path.join(cinder_dir, 'conftest.py'))
    fixtures = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fixtures)
    clouds = os.path.join(REPO, '.state', 'openstack', 'clouds.yaml')
    os.environ['OS_CLIENT_CONFIG_FILE'] = clouds
    conn = openstack.connect(cloud='pvtest')
    server = conn.compute.find_server('pv-docker-host', ignore_missing=False)
    prefix = 'pvbench-%s-c' % tag
    slow, fast = prefix + '-slow', prefix + '-fast'
    hypervisor = fixtures.Hypervisor(conn, server.id, prefix).start()
    base = os.path.join(engine.shared, 'cinder')
    os.makedirs(base)
    try:
        with open(clouds) as handle:
            cfg = yaml.safe_load(handle)
        with FaultProxy(8776) as proxy:
            cloud = dict(cfg['clouds']['pvtest'])
            cloud['block_storage_endpoint_override'] = 'http://127.0.0.1:%d/v3/%s' % (
                proxy.port, conn.current_project_id)
            proxy_yaml = os.path.join(top, 'clouds-proxy.yaml')
            with open(proxy_yaml, 'w') as handle:
                yaml.safe_dump({'clouds': {'pvproxy': cloud}}, handle)
            os.chmod(proxy_yaml, 0o600)
            daemon = Daemon(sys.executable, base, 'pvbench-%s-cinder' % tag, engine, 3, config={
                'backend': 'cinder', 'defaults': {'size': '1GiB'}, 'timeout': 120,
                'backend_params': {'cloud': 'pvproxy', 'clouds_yaml': proxy_yaml, 'server': 'pv-docker-host',
                                   'timeout': 120}})
            daemon.start()
            try:
                for name in (slow, fast):
                    plugin_call(daemon.socket, 'VolumeDriver.Create', {'Name': name, 'Opts': {'size': '1GiB'}})
                plugin_call(daemon.socket, 'VolumeDriver.Mount', {'Name': fast, 'ID': 'held'})
                calls = [
                    ('List', 'VolumeDriver.List', {}),
                    ('Get (the slow volume)', 'VolumeDriver.Get', {'Name': slow}),
                    ('Path (the slow volume)', 'VolumeDriver.Path', {'Name': slow}),
                    ('Capabilities', 'VolumeDriver.Capabilities', {}),
                    ('Get (another volume)', 'VolumeDriver.Get', {'Name': fast}),
                    ('Mount (another, mounted volume)', 'VolumeDriver.Mount', lambda i: {'Name': fast, 'ID': 'm%d' % i}),
                    ('Unmount (another volume)', 'VolumeDriver.Unmount', lambda i: {'Name': fast, 'ID': 'm%d' % i}),
                    ('control: fsync\'d 512 B write (no daemon)', None, fsync_write(daemon.root)),
                ]
                plugin_call(daemon.socket, 'VolumeDriver.List', {})     # the first List fetches the listing
                idle = call_rounds(daemon.socket, calls, rounds)
                vid = [v for v in conn.block_storage.volumes(details=True)
                       if (v.metadata or {}).get('pv_name') == slow][0].id
                proxy.add_rule('GET', r'/volumes/%s(\?|$)' % vid, 'delay', DELAY, count=1)
                done = {}

                def mount_slow():
                    t0 = time.perf_counter()
                    plugin_call(daemon.socket, 'VolumeDriver.Mount', {'Name': slow, 'ID': 'c1'})
                    done['s'] = time.perf_counter() - t0
                thread = threading.Thread(target=mount_slow, daemon=True)
                thread.start()
                deadline = time.monotonic() + 60
                while not any(entry[3] == 'delay' for entry in proxy.log):
                    if time.monotonic() > deadline:
                        raise RuntimeError('the slow attach never reached the delayed request')
                    time.sleep(0.05)
                busy = call_rounds(daemon.socket, calls, rounds)
                overlapped = thread.is_alive()
                thread.join(DELAY + 180)
                for name, caller in ((slow, 'c1'), (fast, 'held')):
                    plugin_call(daemon.socket, 'VolumeDriver.Unmount', {'Name': name, 'ID': caller})
                deadline = time.monotonic() + 120
                while mounts_under(daemon.root) and time.monotonic() < deadline:
                    time.sleep(0.2)
                for name in (slow, fast):
                    plugin_call(daemon.socket, 'VolumeDriver.Remove', {'Name': name})
            finally:
                daemon.stop()
    finally:
        hypervisor.stop()
        for vol in conn.block_storage.volumes(details=True):
            if ((vol.metadata or {}).get('pv_name') or vol.name or '').startswith(prefix):
                fixtures.destroy_volume(conn, vol)
        conn.close()
    return {'calls': [label for label, _e, _b in calls], 'idle': idle, 'busy': busy,
            'slow_mount_s': done.get('s'), 'overlapped': overlapped}


def row(label, values, unit='ms'):
    return '  %-56s p50 %7.1f %s  p90 %7.1f %s  min %7.1f  n=%d' % (
        label, pct(values, 0.5), unit, pct(values, 0.9), unit, min(values), len(values))


def print_delayed(da, args):
    if da is None:
        print('delayed attach (cinder): skipped (the OpenStack test cloud is not running, or --delayed-attach off)')
    else:
        print('calls while one volume\'s Mount waits %d s on its Cinder attach (fault proxy) vs idle, %d each%s'
              % (DELAY, args.rounds, '' if da['overlapped'] else ' (WARNING: the attach ended before the calls)'))
        worst = 0.0
        for label in da['calls']:
            idle, busy = da['idle'][label], da['busy'][label]
            if not label.startswith('control'):
                worst = max(worst, pct(busy, 0.99))
            print('  %-34s idle p50 %6.1f p99 %6.1f ms | during p50 %6.1f p99 %6.1f max %8.1f ms | p99 ratio %.2f'
                  % (label, pct(idle, 0.5), pct(idle, 0.99), pct(busy, 0.5), pct(busy, 0.99), max(busy),
                     pct(busy, 0.99) / max(pct(idle, 0.99), 0.001)))
        print('  slow Mount took %.1f s; worst p99 during it %.1f ms (target <= 50 ms: %s); Mount/Unmount write the '
              'reference record fsync\'d: compare with the control row' % (da['slow_mount_s'] or float('nan'), worst,
                                                                           'OK' if worst <= 50 else 'MISSED'))


def only_delayed_attach(args):
    """``--only-delayed-attach``: the cinder section alone (its own private dockerd)."""
    tag = secrets.token_hex(3)
    top = tempfile.mkdtemp(prefix='pvb-%s-' % tag, dir='/tmp')
    engine = Engine(top, 'pvb' + tag)
    try:
        engine.start(args.image)
        da = delayed_attach(engine, top, tag, args.rounds)
    finally:
        engine.stop()
        shutil.rmtree(top, ignore_errors=True)
    print_delayed(da, args)
    if args.json:
        with open(args.json, 'w') as handle:
            json.dump({'delayed_attach': da}, handle, indent=1)
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n', maxsplit=1)[0])
    parser.add_argument('--runs', type=int, default=15, help='docker run samples per volume kind')
    parser.add_argument('--creates', type=int, default=5, help='docker volume create samples per fstype')
    parser.add_argument('--size', default='1GiB', help='size of the created volumes (ext4)')
    parser.add_argument('--image', default='pv-test/busybox:latest')
    parser.add_argument('--python', default='/usr/bin/python3', help='interpreter that runs the daemon')
    parser.add_argument('--json', help='also write the numbers to this file')
    parser.add_argument('--delayed-attach', choices=('auto', 'on', 'off'), default='auto',
                        help='the cinder section (auto: when the OpenStack test cloud runs)')
    parser.add_argument('--rounds', type=int, default=100, help='calls of each kind in the cinder section')
    parser.add_argument('--only-delayed-attach', action='store_true', help='run the cinder section only')
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit('run as root (loop devices, mounts, /run/docker/plugins)')
    if sh(['docker', 'image', 'inspect', args.image], check=False).returncode != 0:
        sh(['bash', os.path.join(REPO, 'tests', 'harness', 'image.sh'), args.image])

    if args.only_delayed_attach:
        return only_delayed_attach(args)
    tag = secrets.token_hex(3)
    top = tempfile.mkdtemp(prefix='pvb-%s-' % tag, dir='/tmp')
    engine = Engine(top, 'pvb' + tag)
    # two daemons: the default release grace (3 s) and none (every Mount attaches + mounts,
    # every last Unmount unmounts + detaches, inside docker run)
    daemons = {'grace': Daemon(args.python, os.path.join(engine.shared, 'g3'), 'pvbench-%s-g3' % tag, engine, 3),
               'nograce': Daemon(args.python, os.path.join(engine.shared, 'g0'), 'pvbench-%s-g0' % tag, engine, 0)}
    vols = {'grace': 'pvbench-%s-g3vol' % tag, 'nograce': 'pvbench-%s-g0vol' % tag, 'local': 'pvbench-%s-local' % tag}
    bind_dir = os.path.join(engine.shared, 'bind')
    created = list(vols.values())
    results = {}
    docker = engine.docker
    try:
        engine.start(args.image)
        os.makedirs(bind_dir)
        docker_version = sh(docker('version', '--format', '{{.Server.Version}}')).stdout.strip()
        for key, daemon in daemons.items():
            os.makedirs(daemon.base)
            daemon.start()
            sh(docker('volume', 'create', '-d', daemon.driver, '--opt', 'size=256MiB', vols[key]))
        daemon = daemons['grace']
        rss_idle = proc_status(daemon.pid, 'VmRSS')
        sh(docker('volume', 'create', '--driver', 'local', '--opt', 'type=none', '--opt', 'o=bind',
                  '--opt', 'device=' + bind_dir, vols['local']))

        def run_cmd(key):
            return docker('run', '--rm', '--network', 'none', '-v', vols[key] + ':/data', args.image, 'true')

        for key in ('nograce', 'grace', 'local') * 2:                      # warm-up
            timed(run_cmd(key))
        samples = {'local': [], 'nograce': [], 'grace_warm': [], 'grace_idle': []}
        for _i in range(args.runs):                                       # interleaved
            samples['local'].append(timed(run_cmd('local')))
            samples['nograce'].append(timed(run_cmd('nograce')))
            samples['grace_warm'].append(timed(run_cmd('grace')))      # < 3 s after the last one
        for _i in range(args.runs):
            time.sleep(daemon.grace + 0.7)                                # the volume has been released
            samples['grace_idle'].append(timed(run_cmd('grace')))
        results['run_ms'] = samples

        # -- create with mkfs
        create_ms = {'ext4': [], 'xfs': []}
        for fstype, size in (('ext4', args.size), ('xfs', '512MiB')):
            for i in range(args.creates):
                name = 'pvbench-%s-%s-%d' % (tag, fstype, i)
                created.append(name)
                create_ms[fstype].append(timed(docker('volume', 'create', '-d', daemon.driver, '--opt',
                                                      'size=' + size, '--opt', 'fstype=' + fstype, name)))
        results['create_ms'] = create_ms
        remove_ms = []
        for name in created[3:]:
            remove_ms.append(timed(docker('volume', 'rm', name)))
        created = created[:3]
        results['remove_ms'] = remove_ms

        rss_now = proc_status(daemon.pid, 'VmRSS')
        rss_peak = max(proc_status(d.pid, 'VmHWM') for d in daemons.values())
        results['rss_mib'] = {'idle': rss_idle, 'after': rss_now, 'peak': rss_peak}
        nograce = daemons['nograce']
        results['daemon_ms'] = {
            'mount': nograce.op_times('Mount', 'mounted'),
            'unmount': nograce.op_times('Unmount', r'refs=0 umount'),
            'create': daemon.op_times('Create', 'created'),
            'remove': daemon.op_times('Remove', 'deleted'),
        }
        if args.delayed_attach == 'on' or (args.delayed_attach == 'auto' and cloud_running()):
            results['delayed_attach'] = delayed_attach(engine, top, tag, args.rounds)
    finally:
        if engine.pid is not None:
            for name in created:
                sh(docker('volume', 'rm', '-f', name), check=False)
        for d in daemons.values():
            d.stop()
        leftovers = mounts_under(engine.shared) + loops_under(top)
        for mp in sorted(mounts_under(engine.shared), key=lambda m: -m.count('/')):
            sh(['umount', '-l', mp], check=False)
        for dev in loops_under(top):
            sh(['losetup', '-d', dev], check=False)
        engine.stop()
        shutil.rmtree(top, ignore_errors=True)
        if leftovers:
            print('WARNING: cleaned up leftovers: %s' % leftovers, file=sys.stderr)

    run = results['run_ms']
    p_local = pct(run['local'], 0.5)
    d = results['daemon_ms']
    print('volume-plugin benchmark (loop backend, private dockerd %s, %d runs, daemon on %s)'
          % (docker_version, args.runs, args.python))
    print('docker run --rm -v VOL:/data %s true' % args.image)
    print(row('local bind volume', run['local']))
    rows = (('nograce', 'plugin, unmount_grace 0 (2x attach+mount+umount+detach)'),
            ('grace_idle', 'plugin, idle volume (1x attach+mount in the run)'),
            ('grace_warm', 'plugin, within the grace (no attach, no mount)'))
    for key, label in rows:
        print(row(label, run[key]))
    for key, label in rows:
        over = pct(run[key], 0.5) - p_local
        print('  p50 overhead %-12s %+7.1f ms (target <= +100 ms: %s); ratio to local p50 %.2f'
              % (key, over, 'OK' if over <= 100 else 'MISSED', pct(run[key], 0.5) / p_local))
    print('  daemon time (unmount_grace 0): Mount p50 %.0f ms, last Unmount p50 %.0f ms; Docker mounts a plugin '
          'volume twice per docker run (create: copy-up check, start)' % (pct(d['mount'], 0.5), pct(d['unmount'], 0.5)))
    print('docker volume create -d <driver> (storage + mkfs, left detached)')
    print(row('ext4 %s' % args.size, results['create_ms']['ext4']))
    print(row('xfs 512MiB', results['create_ms']['xfs']))
    print('  daemon time for Create: p50 %.0f ms; docker volume rm p50 %.0f ms (daemon Remove p50 %.0f ms)'
          % (pct(d['create'], 0.5), pct(results['remove_ms'], 0.5), pct(d['remove'], 0.5)))
    rss = results['rss_mib']
    print('daemon memory: VmRSS idle %.1f MiB, after the runs %.1f MiB, peak (VmHWM) %.1f MiB '
          '(target <= 60 MB: %s)' % (rss['idle'], rss['after'], rss['peak'],
                                     'OK' if rss['peak'] * 1.048576 <= 60 else 'MISSED'))
    print_delayed(results.get('delayed_attach'), args)
    if args.json:
        with open(args.json, 'w') as handle:
            json.dump(results, handle, indent=1)
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
