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
* the daemon's resident memory (VmRSS now and VmHWM peak; target <= 60 MB).

The daemon runs from this checkout (``python -m ...plugin.daemon`` with a temporary
``ansible_collections`` tree on PYTHONPATH) with its own driver name, root and
config under a temporary directory, for a private dockerd started here in its own
mount namespace (the shared engine would otherwise remember the plugin until it
restarts); everything is removed at the end (daemon and dockerd stopped by pid).
Needs root and a running dockerd to copy the test image from (built by
tests/harness/image.sh when missing).

    sudo .venv/bin/python bench/plugin/bench_plugin.py [--runs 15] [--creates 5] [--json out.json]
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
    def __init__(self, python, base, driver, engine, grace):
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
            json.dump({'driver': self.driver, 'backend': 'loop', 'root': self.root, 'socket': self.socket,
                       'docker_host': self.engine.host, 'defaults': {'size': '256MiB'},
                       'unmount_grace': self.grace}, handle)
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


def row(label, values, unit='ms'):
    return '  %-56s p50 %7.1f %s  p90 %7.1f %s  min %7.1f  n=%d' % (
        label, pct(values, 0.5), unit, pct(values, 0.9), unit, min(values), len(values))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n', maxsplit=1)[0])
    parser.add_argument('--runs', type=int, default=15, help='docker run samples per volume kind')
    parser.add_argument('--creates', type=int, default=5, help='docker volume create samples per fstype')
    parser.add_argument('--size', default='1GiB', help='size of the created volumes (ext4)')
    parser.add_argument('--image', default='pv-test/busybox:latest')
    parser.add_argument('--python', default='/usr/bin/python3', help='interpreter that runs the daemon')
    parser.add_argument('--json', help='also write the numbers to this file')
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit('run as root (loop devices, mounts, /run/docker/plugins)')
    if sh(['docker', 'image', 'inspect', args.image], check=False).returncode != 0:
        sh(['bash', os.path.join(REPO, 'tests', 'harness', 'image.sh'), args.image])

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
    if args.json:
        with open(args.json, 'w') as handle:
            json.dump(results, handle, indent=1)
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
