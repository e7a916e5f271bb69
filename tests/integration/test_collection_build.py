# -*- coding: utf-8 -*-
# Copyright: persistent_volumes.docker contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The collection builds into a tarball that installs and works from the installed copy."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import glob
import json
import os
import subprocess
import sys
import tarfile

import pytest
import yaml

import pv_integration_helpers as h

REPO = h.REPO_ROOT
BIN = os.path.dirname(sys.executable)
FORBIDDEN_TOP = ('tests', 'bench', '.ci', 'scripts', '.state', '.venv', '.git')


def _galaxy():
    with open(os.path.join(REPO, 'galaxy.yml')) as f:
        return yaml.safe_load(f)


def _modules():
    return sorted(os.path.splitext(os.path.basename(p))[0]
                  for p in glob.glob(os.path.join(REPO, 'plugins', 'modules', '*.py'))
                  if not os.path.basename(p).startswith('_'))


def _run(cmd, env, cwd):
    return subprocess.run(cmd, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, check=False)


@pytest.fixture(scope='module')
def installed(tmp_path_factory):
    """Build the tarball and install it; returns (tarball, collections path, env)."""
    tmp = tmp_path_factory.mktemp('collection-build')
    env = dict(os.environ, ANSIBLE_NOCOLOR='1', ANSIBLE_DEPRECATION_WARNINGS='False',
               ANSIBLE_COLLECTIONS_SCAN_SYS_PATH='False', PATH=BIN + os.pathsep + os.environ.get('PATH', ''))
    env.pop('ANSIBLE_COLLECTIONS_PATHS', None)
    out = str(tmp / 'dist')
    build = _run([os.path.join(BIN, 'ansible-galaxy'), 'collection', 'build', REPO, '--output-path', out,
                  '--force'], env, str(tmp))
    assert build.returncode == 0, build.stdout + build.stderr
    g = _galaxy()
    tarball = os.path.join(out, '%s-%s-%s.tar.gz' % (g['namespace'], g['name'], g['version']))
    assert os.path.isfile(tarball), os.listdir(out)
    inst = str(tmp / 'installed')
    install = _run([os.path.join(BIN, 'ansible-galaxy'), 'collection', 'install', tarball, '-p', inst,
                    '--force', '--no-deps'], env, str(tmp))
    assert install.returncode == 0, install.stdout + install.stderr
    env['ANSIBLE_COLLECTIONS_PATH'] = inst
    return tarball, inst, env


def test_tarball_contents(installed):
    tarball = installed[0]
    with tarfile.open(tarball) as tf:
        names = tf.getnames()
        manifest = json.load(tf.extractfile('MANIFEST.json'))
    leaked = [n for n in names if n.split('/')[0] in FORBIDDEN_TOP or '__pycache__' in n]
    assert not leaked, 'files that build_ignore should keep out: %r' % leaked[:20]
    g = _galaxy()
    info = manifest['collection_info']
    assert (info['namespace'], info['name'], info['version']) == (g['namespace'], g['name'], g['version'])
    required = ['MANIFEST.json', 'FILES.json', 'meta/runtime.yml'] + ['plugins/modules/%s.py' % m for m in _modules()]
    required += [f for f in ('README.md', 'requirements.txt', 'bindep.txt') if os.path.exists(os.path.join(REPO, f))]
    missing = [f for f in required if f not in names]
    assert not missing, 'missing from the tarball: %r' % missing


def test_installed_copy_is_listed(installed):
    inst, env = installed[1], installed[2]
    r = _run([os.path.join(BIN, 'ansible-galaxy'), 'collection', 'list', 'persistent_volumes.docker',
              '--format', 'json'], env, inst)
    assert r.returncode == 0, r.stdout + r.stderr
    data = json.loads(r.stdout)
    assert any(os.path.realpath(path).startswith(os.path.realpath(inst)) for path in data), data


@pytest.mark.parametrize('module', _modules() or ['volume'])
def test_ansible_doc_renders_from_installed_copy(installed, module):
    if module not in _modules():
        pytest.skip('plugins/modules/%s.py does not exist yet' % module)
    inst, env = installed[1], installed[2]
    fqcn = 'persistent_volumes.docker.' + module
    r = _run([os.path.join(BIN, 'ansible-doc'), '--json', fqcn], env, inst)
    assert r.returncode == 0, r.stdout + r.stderr
    doc = json.loads(r.stdout)[fqcn]['doc']
    assert os.path.realpath(doc['filename']).startswith(os.path.realpath(inst)), doc['filename']
    assert doc.get('short_description') and doc.get('options') is not None
    text = _run([os.path.join(BIN, 'ansible-doc'), fqcn], env, inst)
    assert text.returncode == 0, text.stdout + text.stderr
    assert 'EXAMPLES' in text.stdout and 'RETURN VALUES' in text.stdout, text.stdout[:2000]
    assert '[WARNING]' not in text.stderr, text.stderr


def test_role_argument_spec_renders_from_installed_copy(installed):
    roles = sorted(os.path.basename(os.path.dirname(os.path.dirname(p)))
                   for p in glob.glob(os.path.join(REPO, 'roles', '*', 'meta', 'argument_specs.yml')))
    if not roles:
        pytest.skip('no role with meta/argument_specs.yml yet')
    inst, env = installed[1], installed[2]
    for role in roles:
        r = _run([os.path.join(BIN, 'ansible-doc'), '-t', 'role', 'persistent_volumes.docker.' + role], env, inst)
        assert r.returncode == 0, r.stdout + r.stderr


def test_module_runs_from_installed_copy(installed, tmp_path):
    """volume_info is read-only: run it from the installed collection, not the checkout."""
    if 'volume_info' not in _modules():
        pytest.skip('plugins/modules/volume_info.py does not exist yet')
    inst = installed[1]
    runner = h.AnsibleRunner(str(tmp_path / 'ansible'), inst)
    r = runner.run([{'name': 'info', 'persistent_volumes.docker.volume_info': {}}])
    r.assert_ok()
    assert not r.changed
    assert 'volumes' in r.result('info'), r.result('info')
