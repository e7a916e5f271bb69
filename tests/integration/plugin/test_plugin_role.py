# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ``volume_plugin`` role: install, systemd unit (``systemd-analyze verify``),
idempotence, restart on configuration change, in-place upgrade, ``state: absent``.

PID 1 is not systemd here: the role runs with ``pv_plugin_service_manager: pidfile``,
which starts the unit's own ExecStart line (setsid, pid file) and stops it by pid.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import secrets
import shutil
import stat
import sys

import pytest

from pv_plugin_helpers import (MODULE, PluginInstance, alive, play, plugin_vars, remove_driver_objects, role_vars,
                               safety_net, sh, wait_dead)

pytestmark = [pytest.mark.plugin]


@pytest.fixture
def role_env(ansible, engine):
    driver = 'pvtr-' + secrets.token_hex(3)
    variables = plugin_vars(engine, driver, pv_plugin_install_dependencies=False)
    instance = PluginInstance(driver, os.path.dirname(variables['pv_plugin_root']), variables, engine.cli)
    yield instance
    if instance.pid():
        remove_driver_objects(driver, engine.cli)
    ansible.run(play(dict(variables, pv_plugin_state='absent', pv_plugin_purge=True)))
    leftovers = safety_net(instance)
    engine.restart()                # Docker caches a legacy plugin until it restarts
    assert not leftovers, 'left behind: %s' % leftovers


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def cmdline(pid):
    with open('/proc/%d/cmdline' % pid, 'rb') as handle:
        return handle.read().split(b'\0')[:-1]


def test_role_install_idempotence_restart_upgrade_absent(ansible, role_env, busybox_image, uid, pcleanup):
    inst = role_env
    variables = inst.vars

    # -- install
    first = ansible.run(play(variables))
    first.assert_changed()
    pid = inst.pid()
    assert pid, inst.log_text()
    assert mode(inst.socket) == 0o600 and mode(os.path.dirname(inst.socket)) & 0o077 == 0
    assert mode(inst.config) == 0o600 and mode(os.path.dirname(inst.config)) == 0o700
    assert mode(inst.root) == 0o700
    with open(inst.config) as handle:
        config = json.load(handle)
    assert config['driver'] == inst.driver and config['backend'] == 'loop'
    assert config['root'] == inst.root and config['defaults'] == {'size': '64MiB'}

    # the unit: ordered before docker.service, verified by systemd, and what pv-plugin-ctl runs
    with open(inst.unit) as handle:
        unit = handle.read()
    assert 'Before=docker.service' in unit.splitlines()
    exec_start = [l for l in unit.splitlines() if l.startswith('ExecStart=')][0][len('ExecStart='):]
    if shutil.which('systemd-analyze'):
        verify = sh(['systemd-analyze', 'verify', inst.unit], check=False)
        assert verify.returncode == 0, verify.stdout + verify.stderr
        assert inst.unit not in verify.stderr, verify.stderr      # no warning about our unit
    args = [a.decode() for a in cmdline(pid)]
    assert args[:len(exec_start.split())] == exec_start.split()
    assert args[-2:] == ['--pidfile', inst.pidfile]
    with open('/proc/%d/environ' % pid, 'rb') as handle:
        environ = handle.read().split(b'\0')
    assert ('PYTHONPATH=%s/opt/lib' % inst.base).encode() in environ
    code = os.path.join(inst.base, 'opt', 'lib', 'ansible_collections', 'persistent_volumes', 'docker',
                        'plugins', 'module_utils')
    assert os.path.isfile(os.path.join(code, 'plugin', 'daemon.py')) and os.path.isfile(os.path.join(code, 'core', 'engine.py'))

    # -- it works
    name = pcleanup.docker_volume(uid + '-r')
    assert inst.cli('volume', 'create', '-d', inst.driver, name).returncode == 0
    out = inst.cli('run', '--rm', '--network', 'none', '-v', name + ':/data', busybox_image, 'sh', '-c',
                   'echo hi > /data/x && cat /data/x').stdout
    assert out.strip() == 'hi'

    # -- idempotence: nothing changes, the daemon is not restarted
    second = ansible.run(play(variables))
    second.assert_unchanged()
    assert inst.pid() == pid

    # -- configuration change -> handler restarts the daemon
    changed = dict(variables, pv_plugin_defaults={'size': '128MiB'})
    third = ansible.run(play(changed))
    third.assert_changed()
    assert any('Restart the volume plugin' in t for t in third.changed_tasks), third.changed_tasks
    new_pid = inst.pid()
    assert new_pid and new_pid != pid and not alive(pid)
    with open(inst.config) as handle:
        assert json.load(handle)['defaults'] == {'size': '128MiB'}
    ansible.run(play(changed)).assert_unchanged()
    # the restarted daemon still knows the volume and its data
    out = inst.cli('run', '--rm', '--network', 'none', '-v', name + ':/data', busybox_image, 'cat', '/data/x').stdout
    assert out.strip() == 'hi'

    # -- in-place upgrade: an older version (different code, a file that no longer exists)
    with open(os.path.join(code, 'plugin', 'daemon.py'), 'a') as handle:
        handle.write('\n# older version\n')
    with open(os.path.join(code, 'removed_module.py'), 'w') as handle:
        handle.write('# gone upstream\n')
    # the previous release's flat layout (module_utils/plugin_daemon.py, engine.py, ...)
    for old in ('plugin_daemon.py', 'engine.py', 'backend_cinder.py'):
        with open(os.path.join(code, old), 'w') as handle:
            handle.write('# 0.1.0 flat layout\n')
    with open(os.path.join(inst.base, 'opt', 'code.sha256'), 'w') as handle:
        handle.write('older\n')
    upgrade = ansible.run(play(changed))
    upgrade.assert_changed()
    assert not os.path.exists(os.path.join(code, 'removed_module.py'))
    for old in ('plugin_daemon.py', 'engine.py', 'backend_cinder.py'):
        assert not os.path.exists(os.path.join(code, old)), old
    repo_daemon = os.path.join(os.environ['PV_REPO_ROOT'], 'plugins', 'module_utils', 'plugin', 'daemon.py')
    with open(repo_daemon) as a, open(os.path.join(code, 'plugin', 'daemon.py')) as b:
        assert a.read() == b.read()
    upgraded_pid = inst.pid()
    assert upgraded_pid and upgraded_pid != new_pid
    ansible.run(play(changed)).assert_unchanged()

    # -- a daemon that died is started again by the next run
    pid_before = inst.kill9()
    rerun = ansible.run(play(changed))
    rerun.assert_changed()
    assert inst.pid() and inst.pid() != pid_before

    # -- purge refuses while the plugin still has volumes (and leaves the daemon running)
    refused = ansible.run(play(dict(changed, pv_plugin_state='absent', pv_plugin_purge=True)))
    refused.assert_failed()
    assert name in refused.stdout
    assert inst.pid()
    assert inst.cli('volume', 'rm', name).returncode == 0

    # -- absent removes everything
    last_pid = inst.pid()
    absent = ansible.run(play(dict(changed, pv_plugin_state='absent', pv_plugin_purge=True)))
    absent.assert_changed()
    wait_dead(last_pid)
    for path in (inst.socket, inst.config, inst.unit, inst.pidfile, inst.log, inst.root,
                 os.path.join(inst.base, 'opt')):
        assert not os.path.exists(path), path
    ansible.run(play(dict(changed, pv_plugin_state='absent', pv_plugin_purge=True))).assert_unchanged()


def test_role_rejects_bad_arguments(ansible, tmp_path):
    variables = role_vars('pvtr-bad', str(tmp_path / 'bad'), pv_plugin_backend='nfs')
    result = ansible.run(play(variables))
    result.assert_failed()
    assert 'pv_plugin_backend' in result.stdout
    variables = role_vars('Bad/Name', str(tmp_path / 'bad'), pv_plugin_install_dependencies=False)
    result = ansible.run(play(variables))
    result.assert_failed()
    assert not os.path.exists(str(tmp_path / 'bad' / 'etc'))


def test_role_fencing_policy(ansible, tmp_path):
    """``pv_plugin_fencing`` / ``pv_plugin_fsck_repair`` pass the role's own argument validation and
    reach the daemon's configuration through the role's template, which the daemon accepts
    (``--check-config``); an unquoted YAML ``off`` (a boolean false) means ``off``; a bad policy is
    refused. (The role's validation and template alone, in one run: a whole role run costs ~45 s here.)"""
    role = os.path.join(os.environ['PV_REPO_ROOT'], 'roles', 'volume_plugin')
    spec = ("{{ (lookup('ansible.builtin.file', '%s/meta/argument_specs.yml') | from_yaml)"
            ".argument_specs.main.options }}" % role)
    cases = [(False, 'off'), ('stop', 'stop'), ('shutoff', 'shutoff')]
    tasks = [{'name': 'load the role defaults', 'ansible.builtin.include_vars': {'file': role + '/defaults/main.yml'}},
             {'name': 'a bad policy', 'ansible.builtin.validate_argument_spec': {
                 'argument_spec': spec, 'provided_arguments': {'pv_plugin_fencing': 'sometimes'}},
              'register': 'pv_bad', 'ignore_errors': True},
             {'name': 'refused', 'ansible.builtin.assert': {'that': [
                 'pv_bad is failed', "'pv_plugin_fencing' in pv_bad.msg"]}}]
    for i, (policy, _expected) in enumerate(cases):
        tasks += [
            {'name': 'policy %s' % i, 'ansible.builtin.set_fact': {'pv_plugin_fencing': policy}},
            {'name': 'validate %s as the role does' % i, 'ansible.builtin.validate_argument_spec': {
                'argument_spec': spec, 'provided_arguments': {'pv_plugin_fencing': policy}}},
            {'name': 'render %s' % i, 'ansible.builtin.template': {
                'src': role + '/templates/config.json.j2', 'dest': str(tmp_path / ('config%d.json' % i)),
                'mode': '0600'}}]
    extra = {'pv_plugin_fsck_repair': True, 'pv_plugin_backend': 'cinder', 'pv_plugin_driver': 'pvtr-fence',
             'pv_plugin_root': str(tmp_path / 'root'), 'pv_plugin_socket': str(tmp_path / 'p.sock')}
    ansible.run(tasks, extra_vars=extra).assert_ok()
    for i, (_policy, expected) in enumerate(cases):
        out = str(tmp_path / ('config%d.json' % i))
        with open(out) as handle:
            config = json.load(handle)
        assert config['fencing'] == expected and config['fsck_repair'] is True and config['backend'] == 'cinder'
        check = sh([sys.executable, '-m', MODULE, '--config', out, '--check-config'], check=False,
                   env=dict(os.environ, PYTHONPATH=os.environ['PV_COLLECTIONS_ROOT']))
        assert check.returncode == 0, check.stdout + check.stderr
