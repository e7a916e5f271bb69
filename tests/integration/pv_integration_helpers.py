# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Machinery behind the integration fixtures (tests/integration/conftest.py).

Import it as ``pv_integration_helpers`` (tests/pytest.ini puts tests/integration on the
import path; the ``pv_`` prefix keeps it apart from any other ``helpers`` module):

* :class:`AnsibleRunner` runs real ``ansible-playbook`` processes against
  localhost (``ansible_connection=local``, the venv's Python) and returns a
  :class:`PlayResult` with per-task, per-host module results (collected by a
  small notification callback written next to the inventory, so the normal
  human-readable output stays on ``.stdout``).
* :class:`Cleanup` tears registered resources down in reverse order and then
  sweeps everything whose name carries the test's unique prefix; :func:`cleanup_scope`
  is the body of the ``cleanup``-style fixtures.
* :class:`ManagedRoot` is a test's own
  product root; :func:`output`, :func:`fstab_lines` and :func:`is_mountpoint` are
  the host checks the tests share.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import warnings

import yaml

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HARNESS_DIR = os.path.join(REPO_ROOT, 'tests', 'harness')
#: where the product keeps its files by default; the safety net sweeps it for the test prefix
DEFAULT_SAFETY_ROOTS = ('/var/lib/persistent-volumes',)
#: extra ``fn(uid)`` callables run by every safety net sweep (e.g. to drop state records)
SAFETY_NET_HOOKS = []

CALLBACK_NAME = 'pv_results'
CALLBACK_SOURCE = r'''
# Collects per-task, per-host results as JSON into $PV_RESULTS_FILE (test harness only).
from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = """
    name: pv_results
    type: notification
    short_description: write task results as JSON for the test harness
    description: [Writes every task result of the run to the file named by PV_RESULTS_FILE.]
"""

import json
import os
import time
from collections.abc import Mapping

from ansible.plugins.callback import CallbackBase


def _native(result):
    data = getattr(result, 'result', None)
    if not isinstance(data, Mapping):
        data = result._result
    return data


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = 'notification'
    CALLBACK_NAME = 'pv_results'
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args, **kwargs):
        super(CallbackModule, self).__init__(*args, **kwargs)
        self._tasks = []
        self._by_uuid = {}
        self._play = None
        self._stats = {}

    def _start(self, task, handler=False):
        rec = {'name': task.get_name(), 'task_name': task.name or '', 'action': task.action,
               'play': self._play, 'handler': handler, 'hosts': {}, 'status': {},
               'started': time.time(), 'ended': {}}
        self._by_uuid[task._uuid] = rec
        self._tasks.append(rec)

    def v2_playbook_on_play_start(self, play):
        self._play = play.get_name()

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._start(task)

    def v2_playbook_on_handler_task_start(self, task):
        self._start(task, handler=True)

    def _record(self, result, status):
        task = result._task
        rec = self._by_uuid.get(task._uuid)
        if rec is None:
            self._start(task)
            rec = self._by_uuid[task._uuid]
        host = result._host.get_name()
        rec['hosts'][host] = dict(_native(result))
        rec['status'][host] = status
        rec['ended'][host] = time.time()

    def v2_runner_on_ok(self, result):
        self._record(result, 'ok')

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._record(result, 'ignored' if ignore_errors else 'failed')

    def v2_runner_on_skipped(self, result):
        self._record(result, 'skipped')

    def v2_runner_on_unreachable(self, result):
        self._record(result, 'unreachable')

    def v2_playbook_on_stats(self, stats):
        self._stats = dict((h, stats.summarize(h)) for h in sorted(stats.processed.keys()))
        self._write()

    def _write(self):
        path = os.environ.get('PV_RESULTS_FILE')
        if not path:
            return
        tmp = path + '.tmp'
        with open(tmp, 'w') as f:
            json.dump({'tasks': self._tasks, 'stats': self._stats}, f, default=repr)
        os.replace(tmp, path)
'''


# --------------------------------------------------------------------------- results

class TaskResult(dict):
    """One task of a play: a dict with attribute access.

    Keys: ``name`` (as ansible prints it, ``role : task`` for role tasks),
    ``task_name``, ``action``, ``play``, ``handler``, ``hosts`` ({host:
    module result dict incl. ``diff``}), ``status`` ({host: ok|failed|
    ignored|skipped|unreachable}), ``result`` (the result of the first host,
    normally ``localhost``; {} when the task ran on no host), ``changed``,
    ``failed``, ``skipped``.
    """

    def __getattr__(self, key):
        try:
            return self[key]
        except KeyError:
            raise AttributeError(key)


def _task_record(raw):
    rec = TaskResult(raw)
    hosts = rec.get('hosts') or {}
    status = rec.get('status') or {}
    first = sorted(hosts)[0] if hosts else None
    rec['result'] = hosts.get(first, {}) if first else {}
    rec['changed'] = any(bool(r.get('changed')) for r in hosts.values())
    rec['failed'] = any(s in ('failed', 'unreachable') for s in status.values())
    rec['skipped'] = bool(status) and all(s == 'skipped' for s in status.values())
    return rec


class PlayResult(object):
    """What one ``ansible-playbook`` process did. Never raises on a failed play."""

    def __init__(self, rc, stdout, stderr, data, cmd, playbook):
        self.rc = rc
        self.stdout = stdout
        self.stderr = stderr
        self.cmd = cmd
        self.playbook = playbook
        data = data or {}
        self.tasks = [_task_record(t) for t in data.get('tasks', [])]
        self.stats = data.get('stats', {})

    # -- queries
    @property
    def changed(self):
        """True when any task reported ``changed`` on any host."""
        return any(t['changed'] for t in self.tasks)

    @property
    def failed(self):
        """True when the process failed or any task failed (not ``ignore_errors`` ones)."""
        return self.rc != 0 or any(t['failed'] for t in self.tasks)

    @property
    def changed_tasks(self):
        return [t['name'] for t in self.tasks if t['changed']]

    @property
    def failed_tasks(self):
        return [t['name'] for t in self.tasks if t['failed']]

    def timings(self):
        """``[(task name, seconds)]``: each task from its start to its last host's result (the
        callback's clock), for the benches' breakdowns."""
        out = []
        for t in self.tasks:
            if t.get('started'):
                ended = list((t.get('ended') or {}).values()) or [t['started']]
                out.append((t['name'], max(ended) - t['started']))
        return out

    def task(self, name):
        """The LAST task whose name matches ``name`` (exactly, or the part after ``role : ``).

        Raises ``KeyError`` listing the known task names when there is none.
        """
        for rec in reversed(self.tasks):
            if name in (rec['name'], rec['task_name']) or rec['name'].endswith(' : ' + name):
                return rec
        raise KeyError('no task named %r; tasks: %r\n%s' % (name, [t['name'] for t in self.tasks],
                                                            self.summary()))

    def result(self, name, host=None):
        """Module result dict of task ``name`` (on ``host``, default the first host). With ``host``:
        the last task of that name that ran on it (a role may run one call on some hosts and the
        same-named call of another task file on others)."""
        rec = self.task(name)
        if not host:
            return rec['result']
        for other in reversed(self.tasks):
            if other['name'] == rec['name'] and host in other['hosts']:
                return other['hosts'][host]
        return rec['hosts'][host]

    # -- assertions with readable messages
    def summary(self):
        lines = ['$ %s' % ' '.join(self.cmd), 'rc=%s' % self.rc]
        for t in self.tasks:
            states = ','.join(sorted(set(t.get('status', {}).values()))) or 'no host'
            lines.append('  [%s] %s%s' % (states, t['name'], ' (changed)' if t['changed'] else ''))
            if t['failed']:
                lines.append('    msg: %s' % t['result'].get('msg'))
        lines.append('--- stdout (tail) ---')
        lines.append(self.stdout[-6000:])
        if self.stderr.strip():
            lines.append('--- stderr (tail) ---')
            lines.append(self.stderr[-3000:])
        return '\n'.join(lines)

    def assert_ok(self):
        assert not self.failed, 'play failed:\n' + self.summary()
        return self

    def assert_failed(self):
        assert self.failed, 'play unexpectedly succeeded:\n' + self.summary()
        return self

    def assert_changed(self, expected=True):
        self.assert_ok()
        assert self.changed is expected, 'expected changed=%s, changed tasks %r:\n%s' % (
            expected, self.changed_tasks, self.summary())
        return self

    def assert_unchanged(self):
        return self.assert_changed(False)

    def __repr__(self):
        return '<PlayResult rc=%s tasks=%d changed=%s failed=%s>' % (
            self.rc, len(self.tasks), self.changed, self.failed)


# --------------------------------------------------------------------------- runner

class AnsibleRunner(object):
    """Writes playbooks and runs ``ansible-playbook`` against localhost.

    ``workdir`` holds the config, inventory, callback plugin and one
    sub-directory per run (playbook, extra vars, results) kept for debugging.
    """

    def __init__(self, workdir, collections_root, python=None, env=None):
        self.workdir = workdir
        self.collections_root = collections_root
        self.python = python or sys.executable
        bindir = os.path.dirname(self.python)
        self.playbook_bin = os.path.join(bindir, 'ansible-playbook')
        if not os.path.exists(self.playbook_bin):
            self.playbook_bin = shutil.which('ansible-playbook') or 'ansible-playbook'
        self._count = 0
        os.makedirs(workdir, exist_ok=True)
        cb_dir = os.path.join(workdir, 'callback_plugins')
        os.makedirs(cb_dir, exist_ok=True)
        with open(os.path.join(cb_dir, CALLBACK_NAME + '.py'), 'w') as f:
            f.write(CALLBACK_SOURCE)
        self.inventory = os.path.join(workdir, 'inventory.ini')
        with open(self.inventory, 'w') as f:
            f.write('[docker_hosts]\nlocalhost ansible_connection=local ansible_python_interpreter=%s\n'
                    % self.python)
        self.config = os.path.join(workdir, 'ansible.cfg')
        with open(self.config, 'w') as f:
            f.write('[defaults]\n')
        self.env = dict(os.environ)
        # the venv's bin first: modules and ansible-config/ansible-galaxy helpers come from it
        self.env['PATH'] = bindir + os.pathsep + self.env.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')
        self.env.update({
            'ANSIBLE_CONFIG': self.config,
            'ANSIBLE_COLLECTIONS_PATH': collections_root,
            'ANSIBLE_COLLECTIONS_SCAN_SYS_PATH': 'False',
            'ANSIBLE_CALLBACK_PLUGINS': cb_dir,
            'ANSIBLE_CALLBACKS_ENABLED': CALLBACK_NAME,
            'ANSIBLE_STDOUT_CALLBACK': 'default',
            'ANSIBLE_CALLBACK_RESULT_FORMAT': 'yaml',
            'ANSIBLE_NOCOLOR': '1',
            'ANSIBLE_FORCE_COLOR': '0',
            'ANSIBLE_RETRY_FILES_ENABLED': 'False',
            'ANSIBLE_DEPRECATION_WARNINGS': 'False',
            'ANSIBLE_LOCALHOST_WARNING': 'False',
            'ANSIBLE_INVENTORY_UNPARSED_WARNING': 'False',
            'ANSIBLE_HOST_KEY_CHECKING': 'False',
            'ANSIBLE_LOCAL_TEMP': os.path.join(workdir, 'tmp'),
            'ANSIBLE_REMOTE_TEMP': os.path.join(workdir, 'remote_tmp'),
            'ANSIBLE_PYTHON_INTERPRETER': self.python,
            'PYTHONDONTWRITEBYTECODE': '1',
        })
        for key in ('ANSIBLE_COLLECTIONS_PATHS', 'ANSIBLE_INVENTORY'):
            self.env.pop(key, None)
        if env:
            self.env.update(env)

    # -- public API
    def run(self, tasks, extra_vars=None, check=False, diff=False, vars=None,
            hosts='localhost', gather_facts=False, inventory=None, env=None, timeout=900, args=()):
        """Run ``tasks`` in one play on localhost and return a :class:`PlayResult`.

        ``tasks``: a list of task dicts, a YAML string (a task list, or a whole
        playbook when it is a list of plays with ``hosts``), or the path of a
        playbook file (then ``vars``/``hosts``/``gather_facts`` are ignored).
        """
        rundir = self._rundir()
        if isinstance(tasks, str) and '\n' not in tasks and os.path.isfile(tasks):
            return self.run_playbook(tasks, inventory=inventory, extra_vars=extra_vars, check=check,
                                     diff=diff, env=env, timeout=timeout, args=args, _rundir=rundir)
        if isinstance(tasks, str):
            tasks = yaml.safe_load(tasks)
        if tasks and isinstance(tasks, list) and all(isinstance(p, dict) and 'hosts' in p for p in tasks):
            plays = tasks
        else:
            play = {'name': 'pv test', 'hosts': hosts, 'gather_facts': gather_facts, 'tasks': list(tasks or [])}
            if vars:
                play['vars'] = vars
            plays = [play]
        path = os.path.join(rundir, 'playbook.yml')
        with open(path, 'w') as f:
            yaml.safe_dump(plays, f, default_flow_style=False, sort_keys=False)
        return self.run_playbook(path, inventory=inventory, extra_vars=extra_vars, check=check, diff=diff,
                                 env=env, timeout=timeout, args=args, _rundir=rundir)

    def run_playbook(self, path, inventory=None, extra_vars=None, check=False, diff=False,
                     limit=None, tags=None, env=None, timeout=900, args=(), _rundir=None):
        """Run an existing playbook (e.g. ``playbooks/site.yml``); ``inventory`` defaults to localhost."""
        rundir = _rundir or self._rundir()
        results_file = os.path.join(rundir, 'results.json')
        cmd = [self.playbook_bin, '-i', inventory or self.inventory]
        if extra_vars:
            ev = os.path.join(rundir, 'extra_vars.json')
            with open(ev, 'w') as f:
                json.dump(extra_vars, f)
            cmd += ['-e', '@' + ev]
        if check:
            cmd.append('--check')
        if diff:
            cmd.append('--diff')
        if limit:
            cmd += ['--limit', limit]
        if tags:
            cmd += ['--tags', tags if isinstance(tags, str) else ','.join(tags)]
        cmd += list(args)
        cmd.append(os.path.abspath(path))
        run_env = dict(self.env, PV_RESULTS_FILE=results_file)
        if env:
            run_env.update(env)
        try:
            proc = subprocess.run(cmd, cwd=rundir, env=run_env, stdin=subprocess.DEVNULL,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  universal_newlines=True, timeout=timeout, check=False)
            rc, out, err = proc.returncode, proc.stdout, proc.stderr
        except subprocess.TimeoutExpired as exc:
            rc = -9
            out = _text(exc.stdout)
            err = _text(exc.stderr) + '\n[harness] ansible-playbook timed out after %ss' % timeout
        with open(os.path.join(rundir, 'stdout.txt'), 'w') as f:
            f.write(out)
        with open(os.path.join(rundir, 'stderr.txt'), 'w') as f:
            f.write(err)
        data = None
        if os.path.exists(results_file):
            with open(results_file) as f:
                data = json.load(f)
        return PlayResult(rc, out, err, data, cmd, path)

    def _rundir(self):
        self._count += 1
        d = os.path.join(self.workdir, 'run-%03d' % self._count)
        os.makedirs(d, exist_ok=True)
        return d


def _text(value):
    if value is None:
        return ''
    if isinstance(value, bytes):
        return value.decode('utf-8', 'replace')
    return value


# --------------------------------------------------------------------------- host helpers

def sh(cmd, check=True, **kwargs):
    """Run a command (list or shell string); return CompletedProcess with text output."""
    shell = isinstance(cmd, str)
    proc = subprocess.run(cmd, shell=shell, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, check=False, **kwargs)
    if check and proc.returncode != 0:
        raise RuntimeError('%s failed (rc=%s): %s%s' % (cmd, proc.returncode, proc.stdout, proc.stderr))
    return proc


def output(cmd, check=True):
    """stdout of :func:`sh` (a failure raises unless ``check=False``)."""
    return sh(cmd, check=check).stdout


def run_container(client, image, command, volumes=None, name=None, network_mode='none'):
    """Run ``command`` (a list) to completion and return its stdout (str); fail on a non-zero exit.

    dockerd 20.10 (Debian 12) can answer a logs request made right after the container exited
    with nothing yet (seen here in about one run in three), so an empty answer is asked again.
    """
    container = client.containers.run(image, command, name=name, volumes=volumes or {}, detach=True,
                                      network_mode=network_mode)
    try:
        status = container.wait(timeout=300)
        out = container.logs(stdout=True, stderr=False)
        deadline = time.monotonic() + 3
        while not out and time.monotonic() < deadline:
            time.sleep(0.1)
            out = container.logs(stdout=True, stderr=False)
        if status.get('StatusCode') != 0:
            raise AssertionError('container %s exited with %s: %s' % (
                command, status.get('StatusCode'), container.logs(stdout=False, stderr=True).decode()))
        return out.decode()
    finally:
        container.remove(force=True)


def fstab_lines(marker, fstab='/etc/fstab'):
    """The non-comment fstab lines containing ``marker``."""
    with open(fstab) as f:
        return [line for line in f.read().splitlines() if marker in line and not line.startswith('#')]


def _unescape_mount(path):
    return re.sub(r'\\([0-7]{3})', lambda m: chr(int(m.group(1), 8)), path)


def mountpoints():
    """Mount points of this mount namespace (from /proc/self/mountinfo), in mount order."""
    points = []
    with open('/proc/self/mountinfo') as f:
        for line in f:
            fields = line.split()
            if len(fields) > 4:
                points.append(_unescape_mount(fields[4]))
    return points


def is_mountpoint(path):
    return os.path.realpath(path) in mountpoints()


def loop_devices():
    """{'/dev/loopN': backing file} for every attached loop device."""
    devs = {}
    try:
        names = os.listdir('/sys/block')
    except OSError:
        return devs
    for name in names:
        if not name.startswith('loop'):
            continue
        try:
            with open('/sys/block/%s/loop/backing_file' % name) as f:
                devs['/dev/' + name] = f.read().strip()
        except OSError:
            continue
    return devs


def umount(path):
    path = os.path.realpath(path)
    for dummy in range(5):
        if path not in mountpoints():
            return
        if sh(['umount', path], check=False).returncode != 0:
            time.sleep(0.3)
            sh(['umount', '-l', path], check=False)
    if path in mountpoints():
        raise RuntimeError('could not unmount %s' % path)


def detach_loop(device):
    if device in loop_devices():
        sh(['losetup', '-d', device], check=False)
        for dummy in range(20):
            if device not in loop_devices():
                return
            time.sleep(0.1)
        raise RuntimeError('loop device %s still attached' % device)


def remove_fstab_lines(marker, fstab='/etc/fstab'):
    """Drop every fstab line containing ``marker`` (atomic rewrite); return how many."""
    if not marker or not os.path.exists(fstab):
        return 0
    with open(fstab) as f:
        lines = f.readlines()
    keep = [line for line in lines if marker not in line]
    removed = len(lines) - len(keep)
    if removed:
        st = os.stat(fstab)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(fstab), prefix='.fstab.pvt-')
        with os.fdopen(fd, 'w') as f:
            f.writelines(keep)
        os.chmod(tmp, st.st_mode & 0o7777)
        os.chown(tmp, st.st_uid, st.st_gid)
        os.replace(tmp, fstab)
    return removed


_PROTECTED = {'/', '/bin', '/boot', '/dev', '/etc', '/home', '/lib', '/lib64', '/opt', '/proc', '/root',
              '/run', '/sbin', '/srv', '/sys', '/tmp', '/usr', '/var', '/var/lib', '/var/tmp', '/mnt',
              '/media', '/var/lib/docker', '/var/lib/persistent-volumes', REPO_ROOT}


def remove_path(path):
    """rm -rf ``path`` (a file, symlink or directory), refusing system directories and live mounts."""
    if not path or not os.path.isabs(path):
        raise ValueError('refusing to remove non-absolute path %r' % (path,))
    norm = os.path.normpath(path)
    if norm in _PROTECTED or os.path.realpath(norm) in _PROTECTED:
        raise ValueError('refusing to remove protected path %r' % (path,))
    if os.path.islink(norm) or os.path.isfile(norm):
        os.unlink(norm)
    elif os.path.isdir(norm):
        real = os.path.realpath(norm)
        if any(m == real or m.startswith(real + '/') for m in mountpoints()):
            raise RuntimeError('refusing to remove %s: something is mounted in it' % norm)
        shutil.rmtree(norm)


# --------------------------------------------------------------------------- cleanup

class ManagedRoot(object):
    """A test's own product root ``<base>/<uid>``, torn down after the test by ``cleanup``:
    mounts below it unmounted (deepest first), loop devices backed by files below it
    detached, then fstab lines naming ``uid`` and the directory removed."""

    def __init__(self, uid, cleanup, base='/var/lib/persistent-volumes'):
        self.uid = uid
        self.root = os.path.join(base, uid)
        cleanup.path(self.root)
        cleanup.fstab(uid)
        cleanup.add(self.teardown)   # runs before the two above (reverse order)

    def teardown(self):
        """Unmount and detach whatever a failed test left under the root."""
        below = self.root + '/'
        for target in sorted((m for m in mountpoints() if m.startswith(below)), key=len, reverse=True):
            sh(['umount', '-l', target], check=False)
        for device, backing in loop_devices().items():
            if backing.startswith(below):
                sh(['losetup', '-d', device], check=False)

    def mountpoint(self, name):
        return os.path.join(self.root, 'mounts', name)


@contextlib.contextmanager
def cleanup_scope(uid, docker_client_factory=None):
    """The body of a ``cleanup`` fixture: yields a :class:`Cleanup` for ``uid``; afterwards
    runs it, turns failed actions into warnings and fails the test on leftovers."""
    import pytest
    c = Cleanup(uid, docker_client_factory=docker_client_factory)
    yield c
    action_errors, leftovers = c.run()
    for err in action_errors:
        warnings.warn('cleanup: %s' % err)
    if leftovers:
        pytest.fail('cleanup could not remove resources named %s:\n  %s' % (uid, '\n  '.join(leftovers)),
                    pytrace=False)


class Cleanup(object):
    """Registry of teardown actions, run in reverse order by :meth:`run` (even when a test fails).

    Every ``add``/typed helper returns its argument so it can wrap creation:
    ``name = cleanup.docker_volume(uid + '-data')``. After the registered
    actions, :meth:`sweep` removes anything carrying ``prefix`` in its name:
    containers, Docker volumes, mounts, loop devices (by backing file), fstab
    lines, ``/dev/disk/by-id|by-path`` links, and entries under ``roots``.
    """

    def __init__(self, prefix, docker_client_factory=None, roots=DEFAULT_SAFETY_ROOTS):
        self.prefix = prefix
        self.roots = list(roots)
        self._actions = []
        self._docker_factory = docker_client_factory
        self._docker = None
        self._volume_names = {}     # driver (or '*') -> names, listed once per teardown (see _volumes)
        self._swept_kinds = set()
        self.errors = []

    # -- registration
    def add(self, func, *args, **kwargs):
        """Register ``func(*args, **kwargs)``; returns ``func``."""
        self._actions.append((getattr(func, '__name__', repr(func)), func, args, kwargs))
        return func

    def container(self, name_or_id):
        self._actions.append(('container %s' % name_or_id, self._rm_container, (name_or_id,), {}))
        return name_or_id

    def docker_volume(self, name, driver=None):
        """A Docker volume; ``driver`` (e.g. a plugin's name) makes the teardown lookup cheaper."""
        self._actions.append(('docker volume %s' % name, self._rm_volume, (name, driver), {}))
        return name

    def mount(self, path):
        self._actions.append(('mount %s' % path, umount, (path,), {}))
        return path

    def loop(self, device):
        self._actions.append(('loop %s' % device, detach_loop, (device,), {}))
        return device

    def loop_file(self, path):
        """A loop image file: detach every loop device backed by it, then delete it."""
        self._actions.append(('loop file %s' % path, self._rm_loop_file, (path,), {}))
        return path

    def fstab(self, marker):
        self._actions.append(('fstab lines with %s' % marker, remove_fstab_lines, (marker,), {}))
        return marker

    def path(self, path):
        self._actions.append(('path %s' % path, self._rm_path, (path,), {}))
        return path

    file = path

    # -- execution
    def run(self):
        """Run the registered actions (newest first), then :meth:`sweep`.

        Returns ``(action_errors, leftovers)``: failures of registered actions
        (the sweep may still have removed the resource) and failures of the
        sweep itself (something carrying the prefix could not be removed).
        """
        while self._actions:
            what, func, args, kwargs = self._actions.pop()
            self._try(what, func, *args, **kwargs)
        action_errors, self.errors = self.errors, []
        self._swept_kinds = set(self._volume_names)
        self.sweep()
        leftovers, self.errors = self.errors, []
        return action_errors, leftovers

    def sweep(self):
        """Remove everything named with the prefix (safety net; no-op when tests cleaned up)."""
        p = self.prefix
        if not p or len(p) < 6:
            return
        client = self._client()
        if client is not None:
            self._try('sweep containers', self._sweep_containers, client)
            self._try('sweep volumes', self._sweep_volumes, client)
        for mp in sorted((m for m in mountpoints() if p in m), key=lambda m: -m.count('/')):
            self._try('sweep mount %s' % mp, umount, mp)
        for dev, backing in sorted(loop_devices().items()):
            if p in backing:
                self._try('sweep loop %s' % dev, detach_loop, dev)
        self._try('sweep fstab', remove_fstab_lines, p)
        for d in ('/dev/disk/by-id', '/dev/disk/by-path', '/dev/disk/by-uuid'):
            if os.path.isdir(d):
                for name in os.listdir(d):
                    if p in name:
                        self._try('sweep link %s' % name, os.unlink, os.path.join(d, name))
        for root in self.roots:
            self._sweep_root(root, p, depth=3)
        for hook in SAFETY_NET_HOOKS:
            self._try('sweep hook %r' % hook, hook, p)

    # -- internals
    def _try(self, what, func, *args, **kwargs):
        try:
            func(*args, **kwargs)
        except Exception as exc:  # pylint: disable=broad-except
            self.errors.append('%s: %s: %s' % (what, type(exc).__name__, exc))

    def _client(self):
        if self._docker is None and self._docker_factory is not None:
            try:
                self._docker = self._docker_factory()
            except Exception as exc:  # pylint: disable=broad-except
                self.errors.append('docker client: %s' % exc)
                self._docker_factory = None
        return self._docker

    def _rm_container(self, name):
        import docker.errors
        client = self._client()
        if client is None:
            sh(['docker', 'rm', '-f', '-v', name], check=False)
            return
        try:
            client.containers.get(name).remove(force=True, v=True)
        except docker.errors.NotFound:
            pass

    def _volumes(self, client, driver=None):
        """Names of the Docker volumes of ``driver`` (None: all drivers), listed once per teardown.

        Listing all drivers, or looking up a name that does not exist, makes dockerd ask every
        volume driver it ever loaded; a plugin driver whose daemon is gone costs ~15 s per call.
        A ``driver`` filter only asks that driver.
        """
        key = driver or '*'
        if key not in self._volume_names:
            filters = {'driver': driver} if driver else None
            vols = client.api.volumes(filters=filters).get('Volumes') or []
            self._volume_names[key] = set(v['Name'] for v in vols)
        return self._volume_names[key]

    def _rm_volume(self, name, driver=None):
        import docker.errors
        client = self._client()
        if client is None:
            sh(['docker', 'volume', 'rm', '-f', name], check=False)
            return
        if name not in self._volumes(client, 'local') and \
                not (driver and name in self._volumes(client, driver)) and \
                name not in self._volumes(client):
            return
        try:
            client.api.remove_volume(name, force=True)
        except docker.errors.NotFound:
            pass
        for names in self._volume_names.values():
            names.discard(name)

    def _rm_loop_file(self, path):
        real = os.path.realpath(path)
        for dev, backing in loop_devices().items():
            if backing in (path, real) or backing.startswith(real + ' '):
                detach_loop(dev)
        if os.path.lexists(path):
            remove_path(path)

    def _rm_path(self, path):
        if os.path.lexists(path):
            if os.path.isdir(path) and not os.path.islink(path) and is_mountpoint(path):
                umount(path)
            remove_path(path)

    def _sweep_containers(self, client):
        for c in client.containers.list(all=True, filters={'name': self.prefix}):
            self._try('sweep container %s' % c.name, c.remove, force=True, v=True)

    def _sweep_volumes(self, client):
        # local volumes always (cheap); all drivers only when this teardown already needed it
        drivers = ['local'] + ([None] if '*' in self._swept_kinds else [])
        self._volume_names = {}
        for driver in drivers:
            for name in sorted(self._volumes(client, driver)):
                if self.prefix in name:
                    self._try('sweep volume %s' % name, client.api.remove_volume, name, force=True)

    def _sweep_root(self, root, p, depth):
        if depth <= 0 or not os.path.isdir(root) or os.path.islink(root):
            return
        try:
            entries = os.listdir(root)
        except OSError:
            return
        for name in entries:
            full = os.path.join(root, name)
            if p in name:
                self._try('sweep path %s' % full, self._rm_path, full)
            elif os.path.isdir(full) and not os.path.islink(full):
                self._sweep_root(full, p, depth - 1)
