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

Clean-up: the scenario's own cleanup/destroy steps remove everything (molecule runs them
after a failed step too). After any failure (molecule dead, timed out, destroy failed),
``molecule destroy`` is run again, then (plugin scenario) ``engine.sh stop`` and ``extensions/molecule/utils/sweep.sh`` on the
scenario's base directory.
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

pytestmark = pytest.mark.slow

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
UTILS = os.path.join(REPO_ROOT, 'extensions', 'molecule', 'utils')
TIMEOUT = int(os.environ.get('PV_MOLECULE_TIMEOUT', '900'))
ANSI = re.compile(r'\x1b\[[0-9;?]*[A-Za-z]')

# scenario -> the base directory its inventory/hosts.yml puts everything under
SCENARIOS = {
    'volumes': '/var/lib/pv-molecule/volumes',
    'volume_plugin': '/var/lib/pv-molecule/volume_plugin',
}
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


def _env(venv_bin):
    env = dict(os.environ)
    env['PATH'] = venv_bin + os.pathsep + env.get('PATH', '')
    env['VIRTUAL_ENV'] = os.path.dirname(venv_bin)
    # plain output: the assertions read molecule's step lines
    env.update({'NO_COLOR': '1', 'PY_COLORS': '0', 'ANSIBLE_NOCOLOR': '1', 'ANSIBLE_FORCE_COLOR': '0'})
    env.pop('ANSIBLE_CONFIG', None)
    return env


def _molecule(venv_bin, *args, **kwargs):
    timeout = kwargs.pop('timeout', TIMEOUT)
    started = time.monotonic()
    try:
        proc = subprocess.run([os.path.join(venv_bin, 'molecule')] + list(args), cwd=REPO_ROOT,
                              env=_env(venv_bin), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
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


def _last_resort(venv_bin, scenario):
    """molecule destroy, then the sweep; returns a description of what that took."""
    notes = []
    rc, output, _secs = _molecule(venv_bin, 'destroy', '-s', scenario, timeout=600)
    notes.append('molecule destroy rc=%s:\n%s' % (rc, output[-4000:]))
    for cmd in LAST_RESORT.get(scenario, []) + [['bash', os.path.join(UTILS, 'sweep.sh'), SCENARIOS[scenario]]]:
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              universal_newlines=True, check=False)
        notes.append('%s: rc=%s\n%s' % (' '.join(cmd), proc.returncode, proc.stdout))
    return '\n'.join(notes)


# molecule's own limit (TIMEOUT) comes first; pytest-timeout only backs it up
@pytest.mark.timeout(TIMEOUT + 700)
@pytest.mark.parametrize('scenario', [
    'volumes',
    pytest.param('volume_plugin', marks=pytest.mark.plugin),
])
def test_molecule_scenario(scenario, request):
    if scenario == 'volumes':
        # the machine's shared engine (started through tests/harness/dockerd.sh if none answers);
        # the plugin scenario starts its own private engine in its create step
        request.getfixturevalue('docker_client')
    venv_bin = _venv_bin()
    if venv_bin is None:
        pytest.fail('molecule is not installed: pip install -r tests/requirements.txt', pytrace=False)

    rc, output, seconds = _molecule(venv_bin, 'test', '-s', scenario)
    steps = _step_results(output, scenario)
    print('molecule test -s %s: rc=%s in %.1f s; steps: %s' % (scenario, rc, seconds, steps))

    if rc != 0:
        # molecule ran cleanup and destroy after the failed step; this covers its own death
        # (timeout, signal) and a failed destroy
        extra = _last_resort(venv_bin, scenario)
        pytest.fail('molecule test -s %s failed (rc=%s, %.0f s); steps: %s\n--- output (tail) ---\n%s\n%s'
                    % (scenario, rc, seconds, steps, output[-12000:], extra), pytrace=False)

    ran = [step for step, _result in steps]
    assert ran == ['dependency', 'cleanup', 'destroy', 'syntax', 'create', 'prepare', 'converge',
                   'idempotence', 'verify', 'cleanup', 'destroy'], 'unexpected sequence: %s' % steps
    assert all(result == 'Successful' for _step, result in steps), steps
    # the idempotence step: the second converge changed nothing
    assert ('idempotence', 'Successful') in steps
    assert 'Idempotence test failed' not in output
    assert not os.path.exists(SCENARIOS[scenario]), \
        '%s is still there after destroy' % SCENARIOS[scenario]
