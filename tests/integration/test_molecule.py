# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The roles' Molecule scenarios (extensions/molecule/<scenario>), run for real.

Each test runs ``molecule test -s <scenario>`` from the repository root with the project
venv's ``bin`` first on PATH (molecule runs ``ansible-playbook``/``ansible-config`` from
there) and asserts that it succeeded and that molecule's idempotence step passed (the
second converge changed nothing). The target is this machine (delegated driver,
ansible_connection=local). The volumes scenario uses the machine's dockerd (the
``docker_client`` fixture starts one through tests/harness/dockerd.sh when none answers);
the volume_plugin scenario starts and stops a private engine of its own
(extensions/molecule/utils/engine.sh) so the shared one never caches its plugin.

The volumes_fleet scenario (marker ``fleet``) targets the three hosts of the multi-host lab
(tests/harness/lab) over SSH with become: its create brings the lab up, its destroy brings
it down. The lab instance is ``PV_LAB_INSTANCE`` unless this pytest session holds that lab
itself (the fleet tests' session fixture); then the first instance nobody uses, or
``PV_MOLECULE_LAB_INSTANCE``. Besides the sequence, the test asserts that converge changed
every host, idempotence and verify ran on every host, and the lab is gone afterwards.

Clean-up: the scenario's own cleanup/destroy steps remove everything (molecule runs them
after a failed step too). After any failure (molecule dead, timed out, destroy failed),
``molecule destroy`` is run again, then (plugin scenario) ``engine.sh stop`` and ``extensions/molecule/utils/sweep.sh`` on the
scenario's base directory; for volumes_fleet ``lab.py down`` of its lab instance.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re
import shutil
import subprocess
import sys
import time

import pytest
import yaml

pytestmark = pytest.mark.slow

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
UTILS = os.path.join(REPO_ROOT, 'extensions', 'molecule', 'utils')
TIMEOUT = int(os.environ.get('PV_MOLECULE_TIMEOUT', '900'))
ANSI = re.compile(r'\x1b\[[0-9;?]*[A-Za-z]')

# scenario -> the base directory its inventory/hosts.yml puts everything under on this machine
# (volumes_fleet: none, everything is in the lab's hosts)
SCENARIOS = {
    'volumes': '/var/lib/pv-molecule/volumes',
    'volume_plugin': '/var/lib/pv-molecule/volume_plugin',
    'volumes_fleet': None,
}
LAB_PY = os.path.join(REPO_ROOT, 'tests', 'harness', 'lab', 'lab.py')
FLEET_HOSTS = ['host1', 'host2', 'host3']
# what the last resort runs before the sweep (the plugin scenario's private engine and unit)
LAST_RESORT = {
    'volume_plugin': [
        ['bash', os.path.join(UTILS, 'engine.sh'), 'stop', SCENARIOS['volume_plugin'], 'pvmb-plugin'],
        ['rm', '-f', '/etc/systemd/system/pv-plugin-pvm-loop.service'],
    ],
}


def _venv_bin():
    """The bin directory holding molecule: the running interpreter's, else PATH's."""
    here = os.path.dirname(sys.executable)
    if os.path.exists(os.path.join(here, 'molecule')):
        return here
    found = shutil.which('molecule')
    return os.path.dirname(found) if found else None


def _env(venv_bin, extra=None):
    env = dict(os.environ)
    env.update(extra or {})
    env['PATH'] = venv_bin + os.pathsep + env.get('PATH', '')
    env['VIRTUAL_ENV'] = os.path.dirname(venv_bin)
    # plain output: the assertions read molecule's step lines
    env.update({'NO_COLOR': '1', 'PY_COLORS': '0', 'ANSIBLE_NOCOLOR': '1', 'ANSIBLE_FORCE_COLOR': '0'})
    env.pop('ANSIBLE_CONFIG', None)
    return env


def _molecule(venv_bin, *args, **kwargs):
    timeout = kwargs.pop('timeout', TIMEOUT)
    extra_env = kwargs.pop('env', None)
    started = time.monotonic()
    try:
        proc = subprocess.run([os.path.join(venv_bin, 'molecule')] + list(args), cwd=REPO_ROOT,
                              env=_env(venv_bin, extra_env), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, universal_newlines=True, timeout=timeout,
                              check=False)
        rc, output = proc.returncode, proc.stdout
    except subprocess.TimeoutExpired as exc:
        out = exc.output or ''
        rc, output = None, (out.decode('utf-8', 'replace') if isinstance(out, bytes) else out)
    return rc, ANSI.sub('', output), time.monotonic() - started


def _step_results(output, scenario):
    """[(step, result), ...] from the summary molecule prints at the end, one line per step:
    '<scenario> > <step>: Executed: <result>' (an arrow instead of '>' with colours)."""
    pattern = re.compile(r'^%s \S+ (\w+): Executed: (\w+)' % re.escape(scenario))
    return [m.groups() for m in (pattern.match(line.strip()) for line in output.splitlines()) if m]


def _step_output(output, scenario, step):
    """What molecule printed for the first run of ``step`` (between its Executing and Executed lines)."""
    start = re.compile(r'^INFO\s+\[?%s \S+ %s\]? Executing' % (re.escape(scenario), step))
    end = re.compile(r'\[?%s \S+ %s\]?:? Executed' % (re.escape(scenario), step))
    lines, inside = [], False
    for line in output.splitlines():
        if not inside and start.match(line.strip()):
            inside = True
        elif inside and end.search(line):
            break
        elif inside:
            lines.append(line)
    return '\n'.join(lines)


def _recap(text):
    """{host: {'ok': n, 'changed': n, 'unreachable': n, 'failed': n}} from a PLAY RECAP (molecule's
    box prefixes each line with a border)."""
    found = {}
    for match in re.finditer(r'(\S+)\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)', text):
        host, counts = match.group(1), [int(n) for n in match.groups()[1:]]
        found[host] = dict(zip(('ok', 'changed', 'unreachable', 'failed'), counts))
    return found


def _lab_paths(instance):
    """The state directory and network namespace of lab ``instance`` (tests/harness/lab/lab.py)."""
    return os.environ.get('PV_LAB_STATE', '/run/pv-lab' + instance), '/run/netns/pvlab' + instance


def _lab_owner(instance):
    """pid of a live process other than this one that holds lab ``instance`` (a test session, a
    bench; a finished `lab.py up`, as molecule's create runs it, holds nothing), else None."""
    try:
        with open(os.path.join(_lab_paths(instance)[0], 'owner.pid')) as handle:
            pid = int(handle.read().strip())
    except (OSError, ValueError):
        return None
    return pid if pid != os.getpid() and os.path.exists('/proc/%d' % pid) else None


def _fleet_lab_instance():
    """The lab instance for the volumes_fleet scenario: PV_MOLECULE_LAB_INSTANCE if set, else
    PV_LAB_INSTANCE unless this process holds that lab (the fleet tests' session fixture, which
    molecule's create and destroy must not take over), else the first instance nobody uses."""
    explicit = os.environ.get('PV_MOLECULE_LAB_INSTANCE')
    if explicit:
        return explicit
    own = os.environ.get('PV_LAB_INSTANCE', '')
    try:
        with open(os.path.join(_lab_paths(own)[0], 'owner.pid')) as handle:
            held = int(handle.read().strip()) == os.getpid()
    except (OSError, ValueError):
        held = False
    if not held:
        return own
    for instance in '123456789':
        if instance != own and not any(os.path.exists(p) for p in _lab_paths(instance)):
            return instance
    pytest.fail('no free lab instance for the volumes_fleet scenario: set PV_MOLECULE_LAB_INSTANCE', pytrace=False)
    return None


def _last_resort(venv_bin, scenario, env=None):
    """molecule destroy, then the sweep; returns a description of what that took."""
    notes = []
    rc, output, _secs = _molecule(venv_bin, 'destroy', '-s', scenario, timeout=600, env=env)
    notes.append('molecule destroy rc=%s:\n%s' % (rc, output[-4000:]))
    if SCENARIOS[scenario] is None:
        # never the lab of another live process (molecule's create fails on such a lab)
        owner = _lab_owner((env or {}).get('PV_LAB_INSTANCE', ''))
        sweep = [] if owner else [[sys.executable, LAB_PY, 'down']]
        if owner:
            notes.append('lab.py down skipped: the lab is held by process %d' % owner)
    else:
        sweep = [['bash', os.path.join(UTILS, 'sweep.sh'), SCENARIOS[scenario]]]
    for cmd in LAST_RESORT.get(scenario, []) + sweep:
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              universal_newlines=True, check=False, env=dict(os.environ, **(env or {})))
        notes.append('%s: rc=%s\n%s' % (' '.join(cmd), proc.returncode, proc.stdout))
    return '\n'.join(notes)


# molecule's own limit (TIMEOUT) comes first; pytest-timeout only backs it up
@pytest.mark.timeout(TIMEOUT + 700)
@pytest.mark.parametrize('scenario', [
    'volumes',
    pytest.param('volume_plugin', marks=pytest.mark.plugin),
    pytest.param('volumes_fleet', marks=pytest.mark.fleet),
])
def test_molecule_scenario(scenario, request):
    if scenario == 'volumes':
        # the machine's shared engine (started through tests/harness/dockerd.sh if none answers);
        # the plugin scenario starts its own private engine in its create step
        request.getfixturevalue('docker_client')
    venv_bin = _venv_bin()
    if venv_bin is None:
        pytest.fail('molecule is not installed: pip install -r tests/requirements.txt', pytrace=False)
    env = None
    if scenario == 'volumes_fleet':
        env = {'PV_LAB_INSTANCE': _fleet_lab_instance()}
        owner = _lab_owner(env['PV_LAB_INSTANCE'])
        if owner:
            pytest.fail('lab instance %r is held by process %d: set PV_MOLECULE_LAB_INSTANCE to a free one'
                        % (env['PV_LAB_INSTANCE'], owner), pytrace=False)

    rc, output, seconds = _molecule(venv_bin, 'test', '-s', scenario, env=env)
    steps = _step_results(output, scenario)
    print('molecule test -s %s: rc=%s in %.1f s; steps: %s' % (scenario, rc, seconds, steps))

    if rc != 0:
        # molecule ran cleanup and destroy after the failed step; this covers its own death
        # (timeout, signal) and a failed destroy
        extra = _last_resort(venv_bin, scenario, env)
        pytest.fail('molecule test -s %s failed (rc=%s, %.0f s); steps: %s\n--- output (tail) ---\n%s\n%s'
                    % (scenario, rc, seconds, steps, output[-12000:], extra), pytrace=False)

    ran = [step for step, _result in steps]
    assert ran == ['dependency', 'cleanup', 'destroy', 'syntax', 'create', 'prepare', 'converge',
                   'idempotence', 'verify', 'cleanup', 'destroy'], 'unexpected sequence: %s' % steps
    assert all(result == 'Successful' for _step, result in steps), steps
    # the idempotence step: the second converge changed nothing
    assert ('idempotence', 'Successful') in steps
    assert 'Idempotence test failed' not in output
    if SCENARIOS[scenario] is not None:
        assert not os.path.exists(SCENARIOS[scenario]), \
            '%s is still there after destroy' % SCENARIOS[scenario]
    else:
        _assert_fleet_run(output, scenario, env['PV_LAB_INSTANCE'])


def _assert_fleet_run(output, scenario, instance):
    """volumes_fleet: the role ran on every lab host over SSH, changed each on the first converge
    and nothing on the second, verify passed on each, and the lab is gone."""
    create = _recap(_step_output(output, scenario, 'create'))
    converge = _recap(_step_output(output, scenario, 'converge'))
    idempotence = _recap(_step_output(output, scenario, 'idempotence'))
    verify = _recap(_step_output(output, scenario, 'verify'))
    assert sorted(h for h in create if h != 'localhost') == FLEET_HOSTS, create
    assert sorted(converge) == FLEET_HOSTS, converge
    assert all(c['changed'] >= 1 and c['failed'] == 0 and c['unreachable'] == 0 for c in converge.values()), converge
    assert sorted(idempotence) == FLEET_HOSTS, idempotence
    assert all(c['changed'] == 0 and c['failed'] == 0 for c in idempotence.values()), idempotence
    # every task of verify.yml ran ok on every host (the run_once ones on the first host only)
    with open(os.path.join(REPO_ROOT, 'extensions', 'molecule', scenario, 'verify.yml')) as handle:
        tasks = [task for play in yaml.safe_load(handle) for task in play['tasks']]
    per_host = len([task for task in tasks if not task.get('run_once')])
    expected = dict((host, per_host) for host in FLEET_HOSTS)
    expected[FLEET_HOSTS[0]] += len(tasks) - per_host
    assert dict((host, counts['ok']) for host, counts in verify.items()) == expected, verify
    assert all(counts['failed'] == 0 and counts['unreachable'] == 0 for counts in verify.values()), verify
    for path in _lab_paths(instance):
        assert not os.path.exists(path), 'lab %r: %s is still there after destroy' % (instance, path)
