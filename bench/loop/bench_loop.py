# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Loop-volume benchmark of issue 2 (a benchmark, not a test: it prints numbers).

In one run, side by side, it times N loop volumes (sparse image, ext4, fstab,
mount, Docker ``local`` volume bound to the mountpoint) built by

* ``ours``      playbooks/site.yml (role volumes -> ONE volume module call), first run
                and the no-op re-run, for N (default 20) and N-large (default 100);
* ``shell``     bench/loop/shell_volumes.sh, the same commands per volume in bash
                (truncate, mkfs.ext4, fstab line, mount -o loop, docker volume create);
* ``composed``  bench/loop/composed.yml, community.general.filesize + filesystem,
                ansible.posix.mount, community.docker.docker_volume looped over the
                volumes, from the ``ansible`` package in a separate venv
                (<repo>/.state/bench-venv, created on first use), first run and re-run;
* ``empty``     an ansible-playbook with one ping task (reference), from both venvs.

Every contender gets its own fresh root under /var/lib/pv-bench/<run id>/ and
unique volume names (``pvb<run id>-...``). After each contender, and again at
the end (also on failure, Ctrl-C or SIGTERM), everything is removed: Docker
volumes, mounts, loop devices, the fstab lines under the root, the files.
``--cleanup`` sweeps what an earlier, killed run may have left.

Run as root on a host with a running Docker engine:

    .venv/bin/python bench/loop/bench_loop.py            # full run (about 2 minutes)
    .venv/bin/python bench/loop/bench_loop.py --skip-composed --repeat 3

Results: a table of seconds (median of --repeat runs, min in brackets) and the
ratios checked against the issue's targets; --json writes them to a file.
"""

from __future__ import absolute_import, division, print_function

import argparse
import glob
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
PROJECT_VENV = os.path.join(REPO, '.venv')
BENCH_VENV = os.path.join(REPO, '.state', 'bench-venv')
STATE = os.path.join(REPO, '.state', 'bench', 'loop')
SHIM = os.path.join(HERE, 'shim')
DEFAULT_BASE = '/var/lib/pv-bench'
NAME_PREFIX = 'pvb'
FSTAB = '/etc/fstab'
FSTAB_MARK = '# persistent_volumes.docker: '

TARGETS = (
    # key, numerator, denominator, limit, text
    ('first_vs_composed', ('ours', 'first', 'n'), ('composed', 'first', 'n'), 0.10,
     'N={n} first run: ours / composed'),
    ('rerun_vs_composed', ('ours', 'rerun', 'n'), ('composed', 'rerun', 'n'), 0.06,
     'N={n} no-op re-run: ours / composed re-run'),
    ('large_vs_shell', ('ours', 'first', 'n_large'), ('shell', 'first', 'n_large'), 1.5,
     'N={n_large} first run: ours / shell'),
)


class Interrupted(Exception):
    pass


# a child that was interrupted: killed by SIGINT/SIGTERM, bash's 128+n, ansible-playbook's 99
INTERRUPTED_RCS = (-signal.SIGINT, -signal.SIGTERM, 128 + signal.SIGINT, 128 + signal.SIGTERM, 99)


def log(msg):
    sys.stderr.write('bench: %s\n' % msg)
    sys.stderr.flush()


# -- subprocesses ---------------------------------------------------------------

def run(cmd, check=True, env=None, quiet=False):
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, env=env, check=False)
    if check and proc.returncode != 0:
        raise RuntimeError('%s failed (rc=%s): %s' % (' '.join(cmd), proc.returncode,
                                                      (proc.stderr or proc.stdout).strip()[-2000:]))
    if not quiet and proc.returncode != 0:
        log('%s: rc=%s %s' % (' '.join(cmd), proc.returncode, (proc.stderr or '').strip()[-300:]))
    return proc


def timed(cmd, logfile, env=None):
    """Run cmd with output to logfile; return (seconds, rc). Kills the child on interrupt."""
    with open(logfile, 'w') as out:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
        try:
            rc = proc.wait()
        except BaseException:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            raise
        if rc in INTERRUPTED_RCS:
            raise Interrupted('%s was interrupted (rc=%s)' % (os.path.basename(cmd[0]), rc))
        return time.perf_counter() - start, rc


def recap(logfile):
    """(ok, changed, failed) summed over the PLAY RECAP of an ansible-playbook log."""
    with open(logfile) as handle:
        text = handle.read()
    ok = changed = failed = 0
    found = False
    for match in re.finditer(r'ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)', text):
        found = True
        ok += int(match.group(1))
        changed += int(match.group(2))
        failed += int(match.group(3)) + int(match.group(4))
    return (ok, changed, failed) if found else None


# -- environment --------------------------------------------------------------------

def ensure_bench_venv():
    """The separate venv with the `ansible` package (bundles the community collections) + docker SDK."""
    playbook = os.path.join(BENCH_VENV, 'bin', 'ansible-playbook')
    python = os.path.join(BENCH_VENV, 'bin', 'python')
    if os.path.exists(playbook):
        probe = run([python, '-c', 'import docker, ansible_collections.community.general, '
                     'ansible_collections.ansible.posix, ansible_collections.community.docker'],
                    check=False, quiet=True)
        if probe.returncode == 0:
            return
    log('creating %s (pip install ansible docker; takes a few minutes the first time)' % BENCH_VENV)
    if not os.path.exists(python):
        run([_base_python(), '-m', 'venv', BENCH_VENV])
    run([python, '-m', 'pip', 'install', '-q', 'ansible', 'docker'])


def _base_python():
    return os.path.join(sys.base_prefix, 'bin', 'python3')


def ansible_env(collections_path):
    env = dict((k, v) for k, v in os.environ.items() if not k.startswith('ANSIBLE_'))
    if env.get('PV_BENCH_DOCKER_HOST'):
        # every contender the same: the shim only matters to the Docker SDK (our module)
        env['PYTHONPATH'] = os.pathsep.join([SHIM] + ([env['PYTHONPATH']] if env.get('PYTHONPATH') else []))
    env.update({
        'ANSIBLE_COLLECTIONS_PATH': collections_path,
        'ANSIBLE_NOCOLOR': '1',
        'ANSIBLE_RETRY_FILES_ENABLED': '0',
        'ANSIBLE_LOCALHOST_WARNING': '0',
        'ANSIBLE_INVENTORY_UNPARSED_WARNING': '0',
        # keep the controller's own ansible.cfg lookups out of the comparison
        'ANSIBLE_CONFIG': os.path.join(STATE, 'ansible.cfg'),
    })
    return env


def prepare_state():
    os.makedirs(STATE, exist_ok=True)
    with open(os.path.join(STATE, 'ansible.cfg'), 'w') as handle:
        handle.write('[defaults]\n')
    # the working tree importable as persistent_volumes.docker (as scripts/demo.sh does)
    coll = os.path.join(STATE, 'collections', 'ansible_collections', 'persistent_volumes')
    os.makedirs(coll, exist_ok=True)
    link = os.path.join(coll, 'docker')
    if os.path.realpath(link) != REPO:
        if os.path.lexists(link):
            os.unlink(link)
        os.symlink(REPO, link)
    empty = os.path.join(STATE, 'no-collections')
    os.makedirs(empty, exist_ok=True)
    return os.path.join(STATE, 'collections'), empty


def inventory(path, python, hostvars):
    data = {'docker_hosts': {'hosts': {'localhost': {
        'ansible_connection': 'local', 'ansible_python_interpreter': python}},
        'vars': hostvars}}
    with open(path, 'w') as handle:
        json.dump(data, handle, indent=1)
    return path


# -- what is on the host ---------------------------------------------------------------

def docker_preflight(limit=2.0):
    """Problems that would distort the timings, as a list of strings.

    dockerd asks every volume driver it knows (also legacy plugins found as sockets or
    spec files in /run/docker/plugins, /etc/docker/plugins, /usr/lib/docker/plugins) when
    a client lists all volumes or inspects a volume it does not have; a plugin that does
    not answer makes each of those calls wait (15 s and 45 s measured here with a dead
    socket left by a test), which no contender should be charged for.
    """
    problems = []
    probes = (
        ('docker volume ls', ['docker', 'volume', 'ls', '-q']),
        ('docker volume inspect <missing>', ['docker', 'volume', 'inspect', 'pvb-preflight-missing-' + uuid.uuid4().hex[:6]]),
    )
    for label, cmd in probes:
        start = time.perf_counter()
        try:
            subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=limit * 3, check=False)
            took = time.perf_counter() - start
        except subprocess.TimeoutExpired:
            took = None
        if took is None or took > limit:
            problems.append('%s takes %s' % (label, '> %.0f s' % (limit * 3) if took is None else '%.1f s' % took))
    if problems:
        plugins = []
        for folder in ('/run/docker/plugins', '/etc/docker/plugins', '/usr/lib/docker/plugins'):
            try:
                plugins.extend(os.path.join(folder, f) for f in sorted(os.listdir(folder)))
            except OSError:
                pass
        problems.append('plugin sockets/specs present now: %s (dockerd also keeps legacy plugins it has '
                        'used whose sockets are gone, and retries them for 15 s per call)'
                        % (', '.join(plugins) or 'none'))
    return problems


def _unescape(field):
    return field.replace('\\040', ' ').replace('\\011', '\t').replace('\\012', '\n').replace('\\134', '\\')


def mounts_under(base):
    found = []
    with open('/proc/self/mountinfo') as handle:
        for line in handle:
            fields = line.split()
            if len(fields) > 4:
                target = _unescape(fields[4])
                if target == base or target.startswith(base + '/'):
                    found.append(target)
    return found


def loops_under(base):
    found = []
    for name in os.listdir('/sys/block'):
        path = '/sys/block/%s/loop/backing_file' % name
        try:
            with open(path) as handle:
                backing = handle.read().strip()
        except (IOError, OSError):
            continue
        if backing.endswith(' (deleted)'):
            backing = backing[:-len(' (deleted)')]
        if backing.startswith(base + '/'):
            found.append('/dev/' + name)
    return found


def docker_volumes(prefix):
    proc = run(['docker', 'volume', 'ls', '-q', '--filter', 'name=' + prefix], check=False)
    return [n for n in proc.stdout.split() if n.startswith(prefix)]


def fstab_lines_under(base):
    with open(FSTAB) as handle:
        lines = handle.read().splitlines()
    return [line for line in lines if _fstab_refers(line, base)]


def _fstab_refers(line, base):
    fields = line.split()
    if len(fields) < 2 or fields[0].startswith('#'):
        return False
    return any(_unescape(f).startswith(base + '/') for f in fields[:2])


def sweep(base, prefix):
    """Remove everything under ``base`` and every Docker volume named ``prefix*``."""
    problems = []
    names = docker_volumes(prefix)
    if names:
        proc = run(['docker', 'volume', 'rm', '-f'] + names, check=False)
        if proc.returncode != 0:
            problems.append('docker volume rm: %s' % proc.stderr.strip())
    for target in sorted(set(mounts_under(base)), key=lambda t: -t.count('/')):
        if run(['umount', target], check=False, quiet=True).returncode != 0:
            if run(['umount', '-l', target], check=False).returncode != 0:
                problems.append('cannot unmount %s' % target)
    for dev in loops_under(base):
        if run(['losetup', '-d', dev], check=False).returncode != 0:
            problems.append('cannot detach %s' % dev)
    _fstab_remove(base, prefix)
    if os.path.isdir(base):
        shutil.rmtree(base, ignore_errors=True)
        if os.path.exists(base):
            problems.append('cannot remove %s' % base)
    return problems


def _fstab_remove(base, prefix):
    with open(FSTAB) as handle:
        original = handle.read()
    kept = []
    for line in original.splitlines():
        if _fstab_refers(line, base):
            continue
        if line.startswith(FSTAB_MARK) and line[len(FSTAB_MARK):].strip().startswith(prefix):
            continue
        kept.append(line)
    text = '\n'.join(kept) + ('\n' if kept else '')
    if text == original:
        return
    mode = os.stat(FSTAB).st_mode & 0o7777
    fd, tmp = tempfile.mkstemp(prefix='.fstab.pv-bench.', dir=os.path.dirname(FSTAB))
    try:
        with os.fdopen(fd, 'w') as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.rename(tmp, FSTAB)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def verify(root, prefix, count, note):
    """The work was really done (not timed): mounts, fstab lines, Docker volumes bound to them.

    Missing fstab lines are only noted: on a shared machine another program that rewrites
    /etc/fstab from a copy it read earlier (a concurrent run of the volume module with
    another root, for one) can drop lines a contender added.
    """
    mounts = [m for m in mounts_under(os.path.join(root, 'mounts')) if m != os.path.join(root, 'mounts')]
    fstab = fstab_lines_under(root)
    vols = docker_volumes(prefix)
    issues = []
    if len(mounts) != count:
        issues.append('%d mounts (want %d)' % (len(mounts), count))
    if len(fstab) != count:
        note('%s: %d fstab lines right after the run (want %d): /etc/fstab was rewritten by another '
             'process meanwhile?' % (os.path.basename(root), len(fstab), count))
    if len(vols) != count:
        issues.append('%d Docker volumes (want %d)' % (len(vols), count))
    elif vols:
        info = json.loads(run(['docker', 'volume', 'inspect', vols[0]]).stdout)[0]
        opts = info.get('Options') or {}
        if opts.get('o') != 'bind' or not opts.get('device', '').startswith(root + '/mounts/'):
            issues.append('Docker volume %s is not a bind of the mount: %s' % (vols[0], opts))
    return issues


class PrivateDockerd(object):
    """A dockerd of the benchmark's own (own socket, data and exec root, own bridge).

    Used when the host's engine is slow to list volumes (see docker_preflight). All
    contenders are pointed at it with DOCKER_HOST; the volume module, which always
    uses /var/run/docker.sock, through bench/loop/shim/sitecustomize.py.

    Never ``--bridge none``: a dockerd started that way deletes the host's ``docker0``
    (it shares the host's network namespace). It gets a bridge of its own,
    ``pvbl<run id>`` on BRIDGE_SUBNET (the other private engines use 172.31.252-254),
    with ``--iptables=false``; the bridge is deleted when it stops, or by ``leftovers()``
    after a killed run (its name is kept in ``<exec root>/bridge``).
    """

    RUN_PREFIX = '/run/pv-bench-dockerd-'
    BRIDGE_PREFIX = 'pvbl'
    BRIDGE_SUBNET = '172.31.251.1/24'

    def __init__(self, run_id, base):
        self.exec_root = self.RUN_PREFIX + run_id
        self.data_root = os.path.join(base, 'dockerd-' + run_id)
        self.sock = os.path.join(self.exec_root, 'docker.sock')
        self.pidfile = os.path.join(self.exec_root, 'dockerd.pid')
        self.url = 'unix://' + self.sock
        self.bridge = self.BRIDGE_PREFIX + run_id
        if len(self.bridge) > 15 or self.bridge == 'docker0':
            raise ValueError('bad bridge name %r' % self.bridge)
        self.proc = None

    @classmethod
    def _delete_bridge(cls, name):
        if name.startswith(cls.BRIDGE_PREFIX) and os.path.exists('/sys/class/net/' + name):
            run(['ip', 'link', 'delete', name], check=False)

    def _add_bridge(self):
        with open(os.path.join(self.exec_root, 'bridge'), 'w') as handle:
            handle.write(self.bridge + '\n')
        if not os.path.exists('/sys/class/net/' + self.bridge):
            run(['ip', 'link', 'add', self.bridge, 'type', 'bridge'], quiet=True)
            run(['ip', 'addr', 'add', self.BRIDGE_SUBNET, 'dev', self.bridge], quiet=True)
            run(['ip', 'link', 'set', self.bridge, 'up'], quiet=True)

    def start(self, logfile, timeout=90):
        os.makedirs(self.exec_root, exist_ok=True)
        os.makedirs(self.data_root, exist_ok=True)
        self._add_bridge()
        dockerd = ['dockerd', '-H', self.url, '--data-root', self.data_root,
                   '--exec-root', os.path.join(self.exec_root, 'exec'), '--pidfile', self.pidfile,
                   '--bridge', self.bridge, '--iptables=false', '--ip-masq=false', '--ip-forward=false']
        # In a mount namespace of its own, with empty legacy-plugin directories: the volume
        # plugins other programs start and stop on this host (the plugin daemon's tests) stay
        # invisible to it, so it never learns one that later dies (15 s per listing after).
        # Mounts made by the contenders are not visible in there: it never starts containers.
        hide = ('mkdir -p /run/docker/plugins && '
                'mount -t tmpfs -o mode=0700,size=1m pv-bench-no-plugins /run/docker/plugins && '
                'for d in /etc/docker/plugins /usr/lib/docker/plugins; do '
                'if [ -d "$d" ]; then mount -t tmpfs -o size=1m pv-bench-no-plugins "$d" || exit 1; fi; done && '
                'exec "$@"')
        with open(logfile, 'w') as out:
            self.proc = subprocess.Popen(
                ['unshare', '--mount', '--propagation', 'private', 'sh', '-c', hide, 'sh'] + dockerd,
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError('private dockerd exited (rc=%s), see %s' % (self.proc.returncode, logfile))
            if run(['docker', '-H', self.url, 'version'], check=False, quiet=True).returncode == 0:
                return
            time.sleep(0.5)
        raise RuntimeError('private dockerd did not answer within %ss, see %s' % (timeout, logfile))

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        for path in (self.data_root, self.exec_root):
            for target in sorted(set(mounts_under(path)), key=lambda t: -t.count('/')):
                run(['umount', '-l', target], check=False)
            shutil.rmtree(path, ignore_errors=True)
        self._delete_bridge(self.bridge)

    @classmethod
    def leftovers(cls):
        """Stop private dockerds of killed runs (their pid files name them) and remove their roots."""
        for pidfile in sorted(glob.glob(cls.RUN_PREFIX + '*/dockerd.pid')):
            exec_root = os.path.dirname(pidfile)
            try:
                with open(pidfile) as handle:
                    pid = int(handle.read().strip())
                with open('/proc/%d/cmdline' % pid, 'rb') as handle:
                    cmdline = handle.read().decode('utf-8', 'replace')
            except (IOError, OSError, ValueError):
                continue
            if 'dockerd' in cmdline and exec_root in cmdline:
                log('stopping leftover private dockerd %d (%s)' % (pid, exec_root))
                os.kill(pid, signal.SIGTERM)
                for _attempt in range(60):
                    if not os.path.exists('/proc/%d' % pid):
                        break
                    time.sleep(0.5)
        for exec_root in glob.glob(cls.RUN_PREFIX + '*'):
            try:
                with open(os.path.join(exec_root, 'bridge')) as handle:
                    cls._delete_bridge(handle.read().strip())
            except (IOError, OSError):
                pass
            shutil.rmtree(exec_root, ignore_errors=True)


def select_engine(mode, ignore_slow, run_id, base, logfile, note=log):
    """The Docker engine for a run: (PrivateDockerd or None, description). With a private
    dockerd, DOCKER_HOST and PV_BENCH_DOCKER_HOST point at it in os.environ."""
    engine = 'host engine (%s)' % os.environ.get('DOCKER_HOST', 'unix:///var/run/docker.sock')
    if mode in ('auto', 'shared'):
        run(['docker', 'info'], quiet=True)
        slow = docker_preflight()
        if not slow:
            return None, engine
        msg = 'the host Docker engine is slow to list/inspect volumes (%s)' % '; '.join(slow)
        if mode == 'shared':
            if not ignore_slow:
                raise RuntimeError(msg + '. The timings would measure that, not the contenders '
                                   '(use --dockerd private, or pass --ignore-slow-docker)')
            note(msg + '; timings include it (--ignore-slow-docker)')
            return None, engine
        note(msg + '; using a private dockerd instead')
    dockerd = PrivateDockerd(run_id, base)
    log('starting a private dockerd on %s' % dockerd.url)
    try:
        dockerd.start(logfile)
    except BaseException:
        dockerd.stop()
        raise
    os.environ['DOCKER_HOST'] = dockerd.url
    os.environ['PV_BENCH_DOCKER_HOST'] = dockerd.url
    slow = docker_preflight()
    if slow:
        msg = 'the private dockerd is slow to list/inspect volumes too (%s)' % '; '.join(slow)
        if not ignore_slow:
            dockerd.stop()
            raise RuntimeError(msg + ': a dead socket in /run/docker/plugins? (or pass --ignore-slow-docker)')
        note(msg)
    return dockerd, 'private dockerd (%s)' % dockerd.url


def release_engine(dockerd):
    if dockerd is not None:
        dockerd.stop()
        os.environ.pop('DOCKER_HOST', None)
        os.environ.pop('PV_BENCH_DOCKER_HOST', None)


# -- the benchmark ----------------------------------------------------------------------

class Bench(object):
    def __init__(self, args):
        self.args = args
        self.run_id = uuid.uuid4().hex[:6]
        self.base = os.path.join(args.base, self.run_id)
        self.prefix = '%s%s-' % (NAME_PREFIX, self.run_id)
        self.logs = os.path.join(STATE, 'run-' + self.run_id)
        self.results = {}       # (contender, phase, size_key) -> [seconds]
        self.notes = []
        self.sizes = {'n': args.n, 'n_large': args.n_large}
        self.dockerd = None
        self.engine = None
        self.load_before = self.load_after = None
        self.failures = 0

    def record(self, key, seconds):
        self.results.setdefault(key, []).append(seconds)

    def note(self, msg):
        log(msg)
        self.notes.append(msg)

    def slot(self, contender, size_key, rep):
        count = self.sizes[size_key]
        tag = '%s-n%d-r%d' % (contender, count, rep)
        root = os.path.join(self.base, tag)
        prefix = '%s%s-' % (self.prefix, tag)
        names = ['%s%03d' % (prefix, i) for i in range(1, count + 1)]
        return tag, root, prefix, names

    # contenders ------------------------------------------------------------------------
    def empty(self, venv, coll, label, rep):
        inv = inventory(os.path.join(self.logs, 'inv-empty-%s.json' % label),
                        os.path.join(venv, 'bin', 'python'), {})
        cmd = [os.path.join(venv, 'bin', 'ansible-playbook'), '-i', inv, os.path.join(HERE, 'ping.yml')]
        seconds, rc = timed(cmd, os.path.join(self.logs, 'empty-%s-r%d.log' % (label, rep)), ansible_env(coll))
        if rc != 0:
            raise RuntimeError('empty playbook (%s) failed, see %s' % (label, self.logs))
        self.record(('empty_' + label, 'first', 'n'), seconds)

    def ours(self, size_key, rep):
        tag, root, prefix, names = self.slot('ours', size_key, rep)
        python = os.path.join(PROJECT_VENV, 'bin', 'python')
        hostvars = {'pv_root': root,      # role defaults otherwise (pv_install_dependencies: true)
                    'pv_volumes': [{'name': n, 'size': self.args.size, 'fstype': 'ext4',
                                    'labels': {'pv-bench': 'loop'}} for n in names]}
        inv = inventory(os.path.join(self.logs, 'inv-%s.json' % tag), python, hostvars)
        cmd = [os.path.join(PROJECT_VENV, 'bin', 'ansible-playbook'), '-i', inv,
               os.path.join(REPO, 'playbooks', 'site.yml')]
        self._ansible_pair('ours', size_key, tag, root, prefix, names, cmd, self.coll_ours)

    def composed(self, size_key, rep):
        tag, root, prefix, names = self.slot('composed', size_key, rep)
        python = os.path.join(BENCH_VENV, 'bin', 'python')
        hostvars = {'bench_root': root, 'bench_names': names, 'bench_size': self.args.size}
        inv = inventory(os.path.join(self.logs, 'inv-%s.json' % tag), python, hostvars)
        cmd = [os.path.join(BENCH_VENV, 'bin', 'ansible-playbook'), '-i', inv,
               os.path.join(HERE, 'composed.yml')]
        self._ansible_pair('composed', size_key, tag, root, prefix, names, cmd, self.coll_none)

    def _ansible_pair(self, contender, size_key, tag, root, prefix, names, cmd, coll):
        env = ansible_env(coll)
        try:
            for phase in ('first', 'rerun'):
                logfile = os.path.join(self.logs, '%s-%s.log' % (tag, phase))
                lines_before = len(fstab_lines_under(root))
                log('%s N=%d %s ...' % (contender, len(names), phase))
                seconds, rc = timed(cmd, logfile, env)
                summary = recap(logfile)
                if rc != 0 or summary is None or summary[2]:
                    raise RuntimeError('%s %s failed (rc=%s), see %s' % (tag, phase, rc, logfile))
                if phase == 'first':
                    issues = verify(root, prefix, len(names), self.note)
                    if issues:
                        raise RuntimeError('%s first run did not build the volumes: %s (see %s)'
                                           % (tag, '; '.join(issues), logfile))
                elif summary[1]:
                    why = ''
                    if lines_before != len(names):
                        why = ('; %d of its %d fstab lines had been dropped by another process before it, '
                               'so it put them back' % (len(names) - lines_before, len(names)))
                    self.note('%s re-run reported changed=%d: not a no-op (see %s)%s'
                              % (tag, summary[1], logfile, why))
                self.record((contender, phase, size_key), seconds)
                log('  %.2f s' % seconds)
        finally:
            self._clean(root, prefix)

    def shell(self, size_key, rep):
        tag, root, prefix, names = self.slot('shell', size_key, rep)
        logfile = os.path.join(self.logs, '%s.log' % tag)
        log('shell N=%d ...' % len(names))
        try:
            seconds, rc = timed(['bash', os.path.join(HERE, 'shell_volumes.sh'), root, prefix,
                                 str(len(names)), self.args.size], logfile)
            if rc != 0:
                raise RuntimeError('%s failed (rc=%s), see %s' % (tag, rc, logfile))
            issues = verify(root, prefix, len(names), self.note)
            if issues:
                raise RuntimeError('%s did not build the volumes: %s' % (tag, '; '.join(issues)))
            self.record(('shell', 'first', size_key), seconds)
            log('  %.2f s' % seconds)
        finally:
            self._clean(root, prefix)

    def _clean(self, root, prefix):
        problems = sweep(root, prefix)
        for problem in problems:
            self.note('cleanup: %s' % problem)

    # driver ------------------------------------------------------------------------------
    def choose_engine(self):
        self.dockerd, self.engine = select_engine(self.args.dockerd, self.args.ignore_slow_docker, self.run_id,
                                                  self.args.base, os.path.join(self.logs, 'dockerd.log'), self.note)

    def check_engine(self, before):
        """Between contenders: the engine must still list volumes promptly (a plugin may have died)."""
        slow = docker_preflight()
        if slow and not self.args.ignore_slow_docker:
            raise RuntimeError('the Docker engine became slow before %s (%s); stopping, the numbers would '
                               'not be comparable' % (before, '; '.join(slow)))

    def run(self):
        os.makedirs(self.logs, exist_ok=True)
        self.coll_ours, self.coll_none = prepare_state()
        if not self.args.skip_composed:
            ensure_bench_venv()
        self.choose_engine()
        log('run %s: roots under %s, names %s*, logs in %s' % (self.run_id, self.base, self.prefix, self.logs))
        # warm-up (not timed): page cache, .pyc files, the Docker connection
        self.empty(PROJECT_VENV, self.coll_ours, 'core', 0)
        if not self.args.skip_composed:
            self.empty(BENCH_VENV, self.coll_none, 'ansible', 0)
        self.results.clear()
        self.started = time.time()
        self.load_before = os.getloadavg()
        for rep in range(1, self.args.repeat + 1):
            log('--- repetition %d/%d' % (rep, self.args.repeat))
            self.empty(PROJECT_VENV, self.coll_ours, 'core', rep)
            if not self.args.skip_composed:
                self.empty(BENCH_VENV, self.coll_none, 'ansible', rep)
            steps = [('ours', 'n'), ('shell', 'n')]
            if not self.args.skip_composed:
                steps.append(('composed', 'n'))
            if self.args.n_large:
                steps.extend([('ours', 'n_large'), ('shell', 'n_large')])
            for contender, size_key in steps:
                self.check_engine('%s N=%d' % (contender, self.sizes[size_key]))
                try:
                    getattr(self, contender)(size_key, rep)
                except RuntimeError as exc:
                    # its own cleanup has run; with several repetitions the others still count
                    self.failures += 1
                    self.note('%s N=%d, repetition %d FAILED (left out of the table): %s'
                              % (contender, self.sizes[size_key], rep, exc))
        self.load_after = os.getloadavg()

    def cleanup(self, linger=6.0):
        problems = sweep(self.base, self.prefix)
        for problem in problems:
            self.note('final cleanup: %s' % problem)
        # a program that rewrites /etc/fstab from a copy it read before our sweep (a volume
        # module run of someone else, with another root) can put our lines back: watch a bit
        deadline = time.monotonic() + linger
        while time.monotonic() < deadline:
            back = fstab_lines_under(self.base)
            if back:
                self.note('%d fstab lines of this run came back after the cleanup (another process '
                          'rewrote /etc/fstab from an older copy); removed again' % len(back))
                _fstab_remove(self.base, self.prefix)
            time.sleep(1)
        release_engine(self.dockerd)
        self.dockerd = None
        if os.path.isdir(self.args.base) and not os.listdir(self.args.base):
            os.rmdir(self.args.base)

    # report ------------------------------------------------------------------------------
    def value(self, key):
        values = self.results.get(key)
        return statistics.median(values) if values else None

    def report(self):
        rows = [
            ('empty playbook, one ping (ansible-core venv)', ('empty_core', 'first', 'n'), None),
            ('empty playbook, one ping (ansible 12 bench venv)', ('empty_ansible', 'first', 'n'), None),
        ]
        for size_key in ('n', 'n_large'):
            count = self.sizes[size_key]
            if not count:
                continue
            rows.extend([
                ('ours (site.yml) N=%d first run' % count, ('ours', 'first', size_key), count),
                ('ours (site.yml) N=%d no-op re-run' % count, ('ours', 'rerun', size_key), count),
                ('shell script N=%d' % count, ('shell', 'first', size_key), count),
                ('composed community modules N=%d first run' % count, ('composed', 'first', size_key), count),
                ('composed community modules N=%d no-op re-run' % count, ('composed', 'rerun', size_key), count),
            ])
        lines = ['', 'Loop volumes (%s ext4 + fstab + Docker local volume), %d repetition(s): '
                 'median seconds [min]' % (self.args.size, self.args.repeat), '']
        lines.append('%-52s %10s %10s %11s' % ('contender', 'seconds', '[min]', 's/volume'))
        data = {'run_id': self.run_id, 'size': self.args.size, 'repeat': self.args.repeat,
                'n': self.args.n, 'n_large': self.args.n_large, 'seconds': {}, 'ratios': {},
                'docker_engine': self.engine,
                'load_before': self.load_before, 'load_after': self.load_after, 'notes': self.notes}
        for text, key, count in rows:
            values = self.results.get(key)
            if not values:
                continue
            med = statistics.median(values)
            per = ('%11.3f' % (med / count)) if count else '%11s' % '-'
            lines.append('%-52s %10.2f %10.2f %s' % (text, med, min(values), per))
            data['seconds']['/'.join(key)] = values
        lines.extend(['', '%-52s %10s %10s %11s' % ('ratio', 'measured', 'target', '')])
        for name, num, den, limit, text in TARGETS:
            a, b = self.value(num), self.value(den)
            label = text.format(**self.sizes)
            if a is None or b is None:
                lines.append('%-52s %10s %10s %11s' % (label, 'n/a', '<= %.2f' % limit, 'not run'))
                continue
            ratio = a / b
            ok = ratio <= limit
            data['ratios'][name] = {'ratio': ratio, 'target': limit, 'met': ok}
            verdict = 'met' if ok else 'MISSED'
            lines.append('%-52s %10.3f %10s %11s' % (label, ratio, '<= %.2f' % limit, verdict))
        extra = []
        ours_n, shell_n = self.value(('ours', 'first', 'n')), self.value(('shell', 'first', 'n'))
        if ours_n and shell_n:
            extra.append('N=%d first run: ours / shell = %.2f' % (self.args.n, ours_n / shell_n))
        empty = self.results.get(('empty_core', 'first', 'n'))
        rerun = self.results.get(('ours', 'rerun', 'n'))
        if empty and rerun:
            extra.append('N=%d no-op re-run minus the empty playbook: %.2f s (medians), %.2f s (minimums)'
                         % (self.args.n, statistics.median(rerun) - statistics.median(empty),
                            min(rerun) - min(empty)))
        if extra:
            lines.append('')
            lines.extend('info: ' + e for e in extra)
        lines.append('info: Docker engine: %s' % self.engine)
        if self.load_before and self.load_after:
            lines.append('info: load average (1 min) before/after: %.2f / %.2f (%d CPUs)'
                         % (self.load_before[0], self.load_after[0], os.cpu_count() or 0))
        for note in self.notes:
            lines.append('note: ' + note)
        print('\n'.join(lines))
        if self.args.json:
            with open(self.args.json, 'w') as handle:
                json.dump(data, handle, indent=1, sort_keys=True)
        return data


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n', maxsplit=1)[0])
    parser.add_argument('--n', type=int, default=20, help='volumes for the ours/shell/composed comparison (20)')
    parser.add_argument('--n-large', type=int, default=100,
                        help='volumes for the ours/shell scale comparison (100; 0 skips it)')
    parser.add_argument('--skip-composed', action='store_true',
                        help='skip the community-module playbook (the slow part) and its venv')
    parser.add_argument('--repeat', type=int, default=1, help='repetitions; the table shows the median (1)')
    parser.add_argument('--size', default='256MiB', help='volume size (256MiB)')
    parser.add_argument('--base', default=DEFAULT_BASE, help='parent of the per-contender roots (%s)' % DEFAULT_BASE)
    parser.add_argument('--json', help='also write the results to this JSON file')
    parser.add_argument('--dockerd', choices=('auto', 'shared', 'private'), default='auto',
                        help='Docker engine for all contenders: the host one (shared), one started for '
                             'the benchmark (private), or the host one unless it is slow to list volumes (auto)')
    parser.add_argument('--ignore-slow-docker', action='store_true',
                        help='run even if the Docker engine answers volume listings slowly (noted in the report)')
    parser.add_argument('--cleanup', action='store_true',
                        help='only sweep what earlier (killed) runs left under --base and exit')
    args = parser.parse_args(argv)
    if args.n < 1 or args.n_large < 0 or args.repeat < 1:
        parser.error('--n and --repeat must be >= 1, --n-large >= 0')
    if os.geteuid() != 0:
        parser.error('run as root (it mounts, attaches loop devices and edits /etc/fstab)')
    if not os.path.isabs(args.base) or os.path.normpath(args.base) in ('/', '/var', '/var/lib'):
        parser.error('--base must be a dedicated absolute directory')
    args.base = os.path.normpath(args.base)

    if args.cleanup:
        PrivateDockerd.leftovers()
        problems = sweep(args.base, NAME_PREFIX)
        for path in glob.glob(os.path.join(args.base, 'dockerd-*')):
            shutil.rmtree(path, ignore_errors=True)
        if os.path.isdir(args.base) and not os.listdir(args.base):
            os.rmdir(args.base)
        for problem in problems:
            log(problem)
        return 1 if problems else 0

    def on_signal(signum, _frame):
        raise Interrupted('signal %d' % signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    signal.signal(signal.SIGINT, signal.default_int_handler)   # even if started with SIGINT ignored
    bench = Bench(args)
    status = 0
    try:
        bench.run()
    except (KeyboardInterrupt, Interrupted) as exc:
        log('interrupted (%s); cleaning up' % (str(exc) or 'Ctrl-C'))
        status = 130
    except Exception as exc:  # pylint: disable=broad-except
        log('FAILED: %s' % exc)
        status = 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        bench.cleanup()
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if bench.results:
        bench.report()
    if status == 0 and bench.failures:
        status = 1
    return status


if __name__ == '__main__':
    sys.exit(main())
