# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Where does the volume module's time go? Runs the engine (plugins/module_utils/core/engine.py)
directly in this process, without Ansible, for N loop volumes (first run, then the no-op
re-run) and prints the time per phase: imports, Docker client, spec validation, the
world read, planning, execution (create/attach, mkfs, mount, fstab, Docker volumes,
state record), with the subprocesses it started and their total wall time.
Everything is cleaned up afterwards (same sweep as bench_loop.py). The Docker engine is
chosen as in bench_loop.py (--dockerd auto|shared|private): a private dockerd is handed to the
engine as its Docker client (DockerVolumes(base_url=...)).

    .venv/bin/python bench/loop/profile_engine.py --n 20 [--workers 4] [--cprofile]
"""

from __future__ import absolute_import, division, print_function

import argparse
import collections
import functools
import os
import subprocess
import sys
import time
import types
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)

import bench_loop  # noqa: E402  (same directory)

T0 = time.perf_counter()


def load_engine():
    """Import plugins/module_utils as the package ``pvmu`` (relative imports work)."""
    pkg = types.ModuleType('pvmu')
    pkg.__path__ = [os.path.join(REPO, 'plugins', 'module_utils')]
    sys.modules['pvmu'] = pkg
    t = time.perf_counter()
    import importlib
    engine = importlib.import_module('pvmu.core.engine')
    host = importlib.import_module('pvmu.host.chain')
    common = importlib.import_module('pvmu.common')
    t_engine = time.perf_counter() - t
    t = time.perf_counter()
    docker_api = importlib.import_module('pvmu.docker.volumes')
    t_docker = time.perf_counter() - t
    importlib.import_module('pvmu.backends.loop')
    return engine, host, common, docker_api, t_engine, t_docker


class Timings(object):
    def __init__(self):
        self.calls = collections.defaultdict(lambda: [0, 0.0])
        self.cmds = collections.defaultdict(lambda: [0, 0.0])

    def wrap(self, owner, attr, label=None):
        func = getattr(owner, attr)
        label = label or attr

        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            t = time.perf_counter()
            try:
                return func(*args, **kwargs)
            finally:
                slot = self.calls[label]
                slot[0] += 1
                slot[1] += time.perf_counter() - t
        setattr(owner, attr, wrapper)

    def reset(self):
        self.calls.clear()
        self.cmds.clear()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n', maxsplit=1)[0])
    parser.add_argument('--n', type=int, default=20)
    parser.add_argument('--size', default='256MiB')
    parser.add_argument('--workers', type=int, default=None, help="the engine's thread pool size (default: its own)")
    parser.add_argument('--cprofile', action='store_true', help='also print the top cProfile entries per run')
    parser.add_argument('--dockerd', choices=('auto', 'shared', 'private'), default='auto',
                        help='Docker engine, as in bench_loop.py (auto)')
    args = parser.parse_args()

    engine_mod, host, common, docker_api, t_import_engine, t_import_docker = load_engine()
    timings = Timings()
    real_run = subprocess.run

    def counting_run(cmd, *a, **kw):
        t = time.perf_counter()
        try:
            return real_run(cmd, *a, **kw)  # pylint: disable=subprocess-run-check
        finally:
            slot = timings.cmds[os.path.basename(cmd[0]) if isinstance(cmd, (list, tuple)) else str(cmd)]
            slot[0] += 1
            slot[1] += time.perf_counter() - t
    subprocess.run = counting_run

    E = engine_mod.Engine
    for attr in ('_lookup', '_plan_present', '_execute', '_run_volume', '_results'):
        timings.wrap(E, attr)
    for attr in ('HostSnapshot', 'read_superblock', 'probe_signatures', 'mkfs', 'mount', 'ensure_dir',
                 'apply_ownership'):
        timings.wrap(host, attr)
    timings.wrap(host.Fstab, 'write', 'Fstab.write')
    loop_cls = sys.modules['pvmu.backends.loop'].LoopBackend
    for attr in ('lookup', 'create', 'attach', 'locate'):
        timings.wrap(loop_cls, attr, 'loop.' + attr)
    dv = docker_api.DockerVolumes
    for attr in ('__init__', 'volumes', 'users', 'create'):
        timings.wrap(dv, attr, 'docker.' + attr)
    timings.wrap(sys.modules['pvmu.core.state'].StateStore, 'save', 'state.save')
    timings.wrap(sys.modules['pvmu.core.state'].StateStore, 'lock', 'state.lock')

    run_id = uuid.uuid4().hex[:6]
    base = os.path.join(bench_loop.DEFAULT_BASE, 'profile-' + run_id)
    prefix = '%s%s-prof-' % (bench_loop.NAME_PREFIX, run_id)
    specs = [{'name': '%s%03d' % (prefix, i), 'size': args.size, 'fstype': 'ext4',
              'labels': {'pv-bench': 'loop'}} for i in range(1, args.n + 1)]
    print('imports: engine+host %.3f s, docker SDK %.3f s' % (t_import_engine, t_import_docker))
    logdir = os.path.join(bench_loop.STATE, 'profile-' + run_id)
    os.makedirs(logdir, exist_ok=True)
    dockerd, engine_desc = bench_loop.select_engine(args.dockerd, False, run_id, bench_loop.DEFAULT_BASE,
                                                    os.path.join(logdir, 'dockerd.log'))
    print('Docker engine: %s' % engine_desc)
    try:
        for phase in ('first', 'rerun'):
            timings.reset()
            kwargs = {'root': base}
            if args.workers:
                kwargs['workers'] = args.workers
            t = time.perf_counter()
            profiler = None
            if args.cprofile:
                import cProfile
                profiler = cProfile.Profile()
                profiler.enable()
            if dockerd is not None:
                kwargs['docker'] = dv(base_url=dockerd.url)
            eng = E(**kwargs)
            results, _diff = eng.apply(specs)
            eng.close()
            if profiler:
                profiler.disable()
            total = time.perf_counter() - t
            changed = sum(1 for r in results if r['changed'])
            print('\n== %s run, N=%d: %.3f s in the engine (%d volumes changed)' % (phase, args.n, total, changed))
            for label, (count, secs) in sorted(timings.calls.items(), key=lambda kv: -kv[1][1]):
                print('  %-24s %4d calls %8.3f s' % (label, count, secs))
            print('  subprocesses (wall, summed over threads):')
            for label, (count, secs) in sorted(timings.cmds.items(), key=lambda kv: -kv[1][1]):
                print('    %-22s %4d runs %8.3f s' % (label, count, secs))
            if profiler:
                import pstats
                pstats.Stats(profiler).sort_stats('cumulative').print_stats(25)
    finally:
        subprocess.run = real_run
        problems = bench_loop.sweep(base, prefix)
        for problem in problems:
            print('cleanup: %s' % problem)
        bench_loop.release_engine(dockerd)
        if os.path.isdir(bench_loop.DEFAULT_BASE) and not os.listdir(bench_loop.DEFAULT_BASE):
            os.rmdir(bench_loop.DEFAULT_BASE)


if __name__ == '__main__':
    main()
