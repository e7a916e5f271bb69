# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fleet benchmark of issue 10 (a benchmark, not a test: it prints numbers and ratios).

Rule: the contenders run side by side in one run against the SAME lab hosts, over SSH with
become, Ansible defaults (no pipelining, forks 5, no facts), and ours with the volumes
role's DEFAULTS (pv_install_dependencies: true, as a user runs it).

On the multi-host lab (tests/harness/lab: 3 offline Docker hosts, reached over SSH as the
``ansible`` user), per repetition and in rotating order:

* ``ping``      bench/loop/ping.yml (one ping per host), from both venvs: the floor;
* ``ours``      playbooks/site.yml, N (default 10) loop volumes per host, first run + no-op re-run;
* ``composed``  bench/loop/composed.yml (community.general.filesize/filesystem, ansible.posix.mount,
                community.docker.docker_volume looped over the names) from the ``ansible``
                package venv <repo>/.state/bench-venv (as bench/loop), first run + no-op re-run.

Every contender gets its own root /var/lib/pv-bench/<run>/<contender>-r<k> inside every host
and unique names; after the first run the work is checked on every host (untimed: N mounts,
N fstab lines, N Docker volumes bound to the mounts) and the re-run must report changed=0.
Each contender's volumes are removed from the hosts after it. The lab is brought up at the
start and always torn down at the end (also on failure or Ctrl-C).

    sudo .venv/bin/python bench/fleet/bench_fleet.py [--repeat 3] [--n 10] [--json FILE]
"""

from __future__ import absolute_import, division, print_function

import argparse
import importlib.util
import json
import os
import signal
import statistics
import sys
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
STATE = os.path.join(REPO, '.state', 'bench', 'fleet')
BASE = '/var/lib/pv-bench'

TARGETS = (
    ('first_vs_composed', ('ours', 'first'), ('composed', 'first'), 0.10, 'first run: ours / composed'),
    ('rerun_vs_composed', ('ours', 'rerun'), ('composed', 'rerun'), 0.06, 'no-op re-run: ours / composed re-run'),
)


def _load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


bench_loop = _load('pv_bench_loop', os.path.join(REPO, 'bench', 'loop', 'bench_loop.py'))
lab_mod = _load('pv_lab', os.path.join(REPO, 'tests', 'harness', 'lab', 'lab.py'))
log = bench_loop.log

CHECK_SCRIPT = r'''
root=$1; prefix=$2
m=$(findmnt -rn -o TARGET | grep -c "^$root/mounts/")
f=$(grep -v '^#' /etc/fstab | grep -c " $root/mounts/")
b=0
for v in $(docker volume ls -q | grep "^$prefix"); do
  d=$(docker volume inspect -f '{{index .Options "device"}}' "$v")
  case "$d" in "$root/mounts/"*) b=$((b+1));; esac
done
echo "$m $f $b"
'''

CLEAN_SCRIPT = r'''
root=$1; prefix=$2
for v in $(docker volume ls -q | grep "^$prefix"); do docker volume rm -f "$v" >/dev/null; done
for m in $(findmnt -rn -o TARGET | grep "^$root/" | sort -r); do umount "$m" || umount -l "$m"; done
/opt/pvlab/lab-loop-cleanup >/dev/null
grep -v -F "$root/" /etc/fstab | grep -v -F "persistent_volumes.docker: $prefix" > /etc/fstab.pvb || true
cat /etc/fstab.pvb > /etc/fstab; rm -f /etc/fstab.pvb
rm -rf "$root"
'''


class FleetBench(object):
    def __init__(self, args):
        self.args = args
        self.run_id = uuid.uuid4().hex[:6]
        self.logs = os.path.join(STATE, 'run-' + self.run_id)
        self.lab = lab_mod.Lab()
        self.results = {}
        self.notes = []
        self.failures = 0
        self.load = []

    def note(self, msg):
        log(msg)
        self.notes.append(msg)

    def record(self, key, seconds):
        self.results.setdefault(key, []).append(seconds)

    # -- contenders
    def ping(self, venv, coll, label, rep):
        inv = self.lab.inventory(os.path.join(self.logs, 'inv-ping.json'))
        cmd = [os.path.join(venv, 'bin', 'ansible-playbook'), '-i', inv,
               os.path.join(REPO, 'bench', 'loop', 'ping.yml')]
        seconds, rc = bench_loop.timed(cmd, os.path.join(self.logs, 'ping-%s-r%d.log' % (label, rep)),
                                       bench_loop.ansible_env(coll))
        if rc != 0:
            raise RuntimeError('ping playbook (%s) failed, see %s' % (label, self.logs))
        if rep:
            self.record(('ping_' + label, 'first'), seconds)

    def slot(self, contender, rep):
        tag = '%s-r%d' % (contender, rep)
        root = '%s/%s/%s' % (BASE, self.run_id, tag)
        prefix = 'pvb%s-%s-' % (self.run_id, tag)
        return tag, root, prefix, ['%s%03d' % (prefix, i) for i in range(1, self.args.n + 1)]

    def ours(self, rep):
        tag, root, prefix, names = self.slot('ours', rep)
        groupvars = {'pv_root': root,       # role defaults otherwise: pv_install_dependencies true
                     'pv_volumes': [{'name': n, 'size': self.args.size, 'fstype': 'ext4',
                                     'labels': {'pv-bench': 'loop'}} for n in names]}
        inv = self.lab.inventory(os.path.join(self.logs, 'inv-%s.json' % tag), groupvars=groupvars)
        cmd = [os.path.join(bench_loop.PROJECT_VENV, 'bin', 'ansible-playbook'), '-i', inv,
               os.path.join(REPO, 'playbooks', 'site.yml')]
        self._pair('ours', tag, root, prefix, cmd, self.coll_ours)

    def composed(self, rep):
        tag, root, prefix, names = self.slot('composed', rep)
        groupvars = {'bench_root': root, 'bench_names': names, 'bench_size': self.args.size}
        inv = self.lab.inventory(os.path.join(self.logs, 'inv-%s.json' % tag), groupvars=groupvars)
        cmd = [os.path.join(bench_loop.BENCH_VENV, 'bin', 'ansible-playbook'), '-i', inv,
               os.path.join(REPO, 'bench', 'loop', 'composed.yml')]
        self._pair('composed', tag, root, prefix, cmd, self.coll_none)

    def _pair(self, contender, tag, root, prefix, cmd, coll):
        env = bench_loop.ansible_env(coll)
        try:
            for phase in ('first', 'rerun'):
                logfile = os.path.join(self.logs, '%s-%s.log' % (tag, phase))
                log('%s %d hosts x %d volumes, %s ...' % (contender, len(self.lab.hosts), self.args.n, phase))
                seconds, rc = bench_loop.timed(cmd, logfile, env)
                summary = bench_loop.recap(logfile)
                if rc != 0 or summary is None or summary[2]:
                    raise RuntimeError('%s %s failed (rc=%s), see %s' % (tag, phase, rc, logfile))
                if phase == 'first':
                    self.verify(root, prefix, logfile)
                elif summary[1]:
                    self.note('%s re-run reported changed=%d: not a no-op (see %s)' % (tag, summary[1], logfile))
                self.record((contender, phase), seconds)
                log('  %.2f s' % seconds)
        finally:
            self.clean(root, prefix)

    def verify(self, root, prefix, logfile):
        for host in self.lab.hosts:
            got = self.lab.exec(host['name'], ['sh', '-c', CHECK_SCRIPT, 'check', root, prefix]).stdout.split()
            want = [str(self.args.n)] * 3
            if got != want:
                raise RuntimeError('%s on %s: mounts/fstab lines/bound Docker volumes = %s, want %s (see %s)'
                                   % (os.path.basename(root), host['name'], got, want, logfile))

    def clean(self, root, prefix):
        for host in self.lab.hosts:
            proc = self.lab.exec(host['name'], ['sh', '-c', CLEAN_SCRIPT, 'clean', root, prefix], check=False)
            if proc.returncode != 0:
                self.note('cleanup on %s: %s' % (host['name'], proc.stderr.strip()[-300:]))

    # -- driver
    def run(self):
        os.makedirs(self.logs, exist_ok=True)
        self.coll_ours, self.coll_none = bench_loop.prepare_state()
        bench_loop.ensure_bench_venv()
        log('lab up (%d hosts)' % self.args.hosts)
        self.lab.up(self.args.hosts)
        self.timings = dict(self.lab.timings)
        # warm-up (untimed): SSH control sockets, .pyc files
        self.ping(bench_loop.PROJECT_VENV, self.coll_ours, 'core', 0)
        self.ping(bench_loop.BENCH_VENV, self.coll_none, 'ansible', 0)
        self.load.append(os.getloadavg()[0])
        order = ['ours', 'composed']
        for rep in range(1, self.args.repeat + 1):
            log('--- repetition %d/%d' % (rep, self.args.repeat))
            self.ping(bench_loop.PROJECT_VENV, self.coll_ours, 'core', rep)
            self.ping(bench_loop.BENCH_VENV, self.coll_none, 'ansible', rep)
            for contender in (order if rep % 2 else order[::-1]):
                try:
                    getattr(self, contender)(rep)
                except RuntimeError as exc:
                    self.failures += 1
                    self.note('%s repetition %d FAILED (left out): %s' % (contender, rep, exc))
        self.load.append(os.getloadavg()[0])

    def value(self, key):
        values = self.results.get(key)
        return statistics.median(values) if values else None

    def report(self):
        hosts = len(self.lab.hosts) or self.args.hosts
        rows = [
            ('ping-only play (ansible-core venv): the floor', ('ping_core', 'first')),
            ('ping-only play (ansible bench venv)', ('ping_ansible', 'first')),
            ('ours: site.yml, role defaults, first run', ('ours', 'first')),
            ('ours: no-op re-run', ('ours', 'rerun')),
            ('composed community modules, first run', ('composed', 'first')),
            ('composed: no-op re-run', ('composed', 'rerun')),
        ]
        lines = ['', 'Fleet: %d lab hosts x %d loop volumes (%s ext4, fstab, Docker volume) over SSH with become, '
                 '%d repetition(s): median seconds [min]' % (hosts, self.args.n, self.args.size, self.args.repeat), '']
        lines.append('%-50s %9s %9s' % ('contender', 'seconds', '[min]'))
        data = {'run_id': self.run_id, 'hosts': hosts, 'n': self.args.n, 'size': self.args.size,
                'repeat': self.args.repeat, 'seconds': {}, 'ratios': {}, 'notes': self.notes,
                'load': self.load, 'lab_timings': getattr(self, 'timings', {})}
        for text, key in rows:
            values = self.results.get(key)
            if values:
                lines.append('%-50s %9.2f %9.2f' % (text, statistics.median(values), min(values)))
                data['seconds']['/'.join(key)] = values
        lines.extend(['', '%-50s %9s %9s' % ('ratio', 'measured', 'target')])
        for name, num, den, limit, text in TARGETS:
            a, b = self.value(num), self.value(den)
            if a is None or b is None:
                lines.append('%-50s %9s %9s not run' % (text, 'n/a', '<= %.2f' % limit))
                continue
            data['ratios'][name] = {'ratio': a / b, 'target': limit, 'met': a / b <= limit}
            lines.append('%-50s %9.3f %9s %s' % (text, a / b, '<= %.2f' % limit, 'met' if a / b <= limit else 'MISSED'))
        # the same ratios per repetition (ours and composed ran back to back): robust to load that
        # changes during the run, which a ratio of medians over the whole run is not
        for name, num, den, limit, text in TARGETS:
            pairs = list(zip(self.results.get(num, []), self.results.get(den, [])))
            if len(pairs) > 1:
                ratios = [a / b for a, b in pairs]
                data['ratios'][name + '_per_repetition'] = ratios
                lines.append('%-50s %9.3f %9s %s   (per repetition: %s)' % (
                    text.replace(':', ', median per repetition:', 1), statistics.median(ratios), '<= %.2f' % limit,
                    'met' if statistics.median(ratios) <= limit else 'MISSED', ' '.join('%.3f' % r for r in ratios)))
        ping, rerun = self.value(('ping_core', 'first')), self.value(('ours', 'rerun'))
        if ping and rerun:
            lines.append('')
            lines.append('info: ours no-op re-run minus the ping-only play: %.2f s (medians)' % (rerun - ping))
        if len(self.load) == 2:
            lines.append('info: load average (1 min) before/after: %.2f / %.2f (%d CPUs)'
                         % (self.load[0], self.load[1], os.cpu_count() or 0))
        for note in self.notes:
            lines.append('note: ' + note)
        print('\n'.join(lines))
        if self.args.json:
            with open(self.args.json, 'w') as handle:
                json.dump(data, handle, indent=1, sort_keys=True)
        return data


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n', maxsplit=1)[0])
    parser.add_argument('--hosts', type=int, default=3, help='lab hosts (3)')
    parser.add_argument('--n', type=int, default=10, help='loop volumes per host (10)')
    parser.add_argument('--size', default='256MiB', help='volume size (256MiB)')
    parser.add_argument('--repeat', type=int, default=3, help='repetitions, alternating the order (3)')
    parser.add_argument('--json', help='also write the results to this JSON file')
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        parser.error('run as root (the lab needs a network namespace, a dockerd and loop devices)')
    if args.n < 1 or args.repeat < 1 or args.hosts < 1:
        parser.error('--n, --repeat and --hosts must be >= 1')

    def on_signal(signum, _frame):
        raise bench_loop.Interrupted('signal %d' % signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    bench = FleetBench(args)
    status = 0
    started = time.monotonic()
    try:
        bench.run()
    except (KeyboardInterrupt, bench_loop.Interrupted) as exc:
        log('interrupted (%s); cleaning up' % (str(exc) or 'Ctrl-C'))
        status = 130
    except Exception as exc:  # pylint: disable=broad-except
        log('FAILED: %s' % exc)
        status = 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        bench.lab.down()
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if bench.results:
        bench.report()
    log('finished in %.0f s' % (time.monotonic() - started))
    if status == 0 and bench.failures:
        status = 1
    return status


if __name__ == '__main__':
    sys.exit(main())
